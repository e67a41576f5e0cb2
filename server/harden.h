/*
 * harden.h: what the daemon does to itself before it holds any secret or
 * starts any thread.
 */
#ifndef P8V_SERVER_HARDEN_H
#define P8V_SERVER_HARDEN_H

#include <sys/resource.h>

/*
 * Harden the process, in this order:
 * - file descriptors 0, 1 and 2 are opened on /dev/null if closed, so that
 *   no socket or key file can become stderr and receive log lines;
 * - refuse to run set-user-ID or set-group-ID (real and effective ids
 *   differ): the environment and options come from the caller;
 * - RLIMIT_CORE 0 (soft and hard), prctl(PR_SET_DUMPABLE, 0): no core
 *   dump, no ptrace by other processes of the same user, /proc/PID/mem,
 *   environ and maps readable by root only;
 * - prctl(PR_SET_NO_NEW_PRIVS, 1): nothing exec'd later gains privileges;
 * - umask 077: every file the daemon creates is private unless it sets a
 *   mode explicitly (the signing socket does);
 * - SIGPIPE ignored: a client that goes away is a write error, not death.
 * Logs a warning when running as root (it works, but needs no privilege).
 * Returns 0, or P8V_ERR_INTERNAL (a step failed: logged with the step).
 */
int harden_process(void);

/*
 * Raise the soft RLIMIT_NOFILE towards `want` (at most the hard limit), so
 * that the connection limits, not the fd limit, decide what is refused.
 * Logs a warning if the hard limit is below want. Never fails.
 */
void harden_fd_limit(rlim_t want);

#endif /* P8V_SERVER_HARDEN_H */
