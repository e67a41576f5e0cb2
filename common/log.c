/* log.c: JSON lines on stderr. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_LEVEL_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_set_level(enum log_level level)
{
	min_level = level;
}

enum log_level
log_get_level(void)
{
	return min_level;
}

void
log_emit(enum log_level level, const char *file, int line, const char *func,
    const char *event, json_t *fields, const char *fmt, ...)
{
	char msg[1024], ts[64], src[256];
	struct timespec now;
	struct tm tm;
	const char *base;
	json_t *obj = NULL;
	char *text = NULL;
	va_list ap;
	size_t len;

	if (level < min_level || level > LOG_LEVEL_ERROR)
		goto out;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000L);
	base = strrchr(file, '/');
	snprintf(src, sizeof(src), "%s:%d", base != NULL ? base + 1 : file, line);

	obj = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "ts", ts,
	    "level", level_names[level], "event", event, "msg", msg,
	    "src", src, "func", func);
	if (obj == NULL)
		goto out;
	if (fields != NULL && json_is_object(fields))
		json_object_update_missing(obj, fields);
	text = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (text == NULL)
		goto out;
	len = strlen(text);
	text[len] = '\n'; /* replaces the NUL: write exactly len + 1 bytes */
	(void)!write(STDERR_FILENO, text, len + 1);
 out:
	free(text);
	json_decref(obj);
	json_decref(fields);
}
