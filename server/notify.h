/*
 * notify.h: p8vaultd's state for its service manager (systemd's
 * sd_notify protocol, Type=notify units).
 *
 * Every call sends one datagram to $NOTIFY_SOCKET and does nothing when
 * the variable is unset (not started by systemd, or by a unit of another
 * type) or when p8vaultd was built without libsystemd. Failures are not
 * errors: the daemon serves whether or not anyone listens.
 *
 *   notify_ready      READY=1 and a STATUS: the keeper is up, the master
 *                     keys are loaded and checked against the store, every
 *                     listener is open (systemd then starts what is
 *                     ordered after the unit);
 *   notify_reloading  RELOADING=1 and MONOTONIC_USEC= (the clock systemd
 *                     253 asks for; older managers ignore it) at SIGHUP,
 *                     followed by notify_ready once the reload is done,
 *                     whether the keys changed or not;
 *   notify_stopping   STOPPING=1 at SIGTERM/SIGINT;
 *   notify_status     STATUS=<text> alone: what the daemon is doing.
 * None of them unsets $NOTIFY_SOCKET: a SIGHUP's notify_reloading and the
 * STATUS updates come later.
 */
#ifndef P8V_SERVER_NOTIFY_H
#define P8V_SERVER_NOTIFY_H

#define NOTIFY_PRINTF __attribute__((format(printf, 1, 2)))

/* 1 if built with libsystemd and $NOTIFY_SOCKET is set: someone listens,
 * so a STATUS is worth working out. */
int notify_enabled(void);

void notify_ready(const char *fmt, ...) NOTIFY_PRINTF;
void notify_reloading(const char *fmt, ...) NOTIFY_PRINTF;
void notify_stopping(const char *fmt, ...) NOTIFY_PRINTF;
void notify_status(const char *fmt, ...) NOTIFY_PRINTF;

#endif /* P8V_SERVER_NOTIFY_H */
