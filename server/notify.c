/* notify.c: sd_notify messages for the service manager (see notify.h). */
#include "server/notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* A STATUS line: a few words, a store location, some counts. */
#define STATUS_MAX 512

int
notify_enabled(void)
{
#ifdef HAVE_LIBSYSTEMD
	const char *e = getenv("NOTIFY_SOCKET");

	return e != NULL && *e != '\0';
#else
	return 0;
#endif
}

#ifdef HAVE_LIBSYSTEMD
/* Send state (one or more "NAME=value" lines) and STATUS=<fmt...>. */
__attribute__((format(printf, 2, 0)))
static void
send_state(const char *state, const char *fmt, va_list ap)
{
	char status[STATUS_MAX];
	char *p;

	vsnprintf(status, sizeof(status), fmt, ap);
	/* One line: a newline would start another assignment. */
	for (p = status; *p != '\0'; p++)
		if (*p == '\n')
			*p = ' ';
	/* Nothing to do about a failure: nobody may be listening. */
	(void)sd_notifyf(0, "%s%sSTATUS=%s", state, *state != '\0' ? "\n" : "",
	    status);
}
#else
static void
send_state(const char *state, const char *fmt, va_list ap)
{
	(void)state;
	(void)fmt;
	(void)ap;
}
#endif

void
notify_ready(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_state("READY=1", fmt, ap);
	va_end(ap);
}

void
notify_reloading(const char *fmt, ...)
{
	char state[64];
	struct timespec ts;
	va_list ap;

	/* systemd 253's Type=notify-reload wants the time of the reload
	 * on CLOCK_MONOTONIC, to tell this reload from an earlier one. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	va_start(ap, fmt);
	send_state(state, fmt, ap);
	va_end(ap);
}

void
notify_stopping(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_state("STOPPING=1", fmt, ap);
	va_end(ap);
}

void
notify_status(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_state("", fmt, ap);
	va_end(ap);
}
