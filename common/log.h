/*
 * log.h: structured logs, one JSON object per line on stderr.
 *
 * Each line: {"ts":"2026-11-23T22:50:01.123Z","level":"info","event":"...",
 * "msg":"...","src":"file.c:42","func":"fn", ...fields}.
 *
 * Never pass key bytes, PEM text, bearer tokens, JWTs or master-key material
 * to these functions, not even in debug builds. Name key ids, team ids and
 * fingerprints instead.
 */
#ifndef P8V_COMMON_LOG_H
#define P8V_COMMON_LOG_H

#include <jansson.h>

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

/* Lines below this level are dropped (default LOG_LEVEL_INFO). */
void log_set_level(enum log_level level);
/* The level set (a child process started with the same one). */
enum log_level log_get_level(void);

/*
 * Emit one line. `fields` (may be NULL) is a JSON object whose members are
 * added to the line; its reference is stolen. `fmt` builds "msg".
 * Thread-safe: each line is written with a single write(2).
 */
void log_emit(enum log_level level, const char *file, int line,
    const char *func, const char *event, json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#define log_debugf(event, ...) \
	log_emit(LOG_LEVEL_DEBUG, __FILE__, __LINE__, __func__, event, NULL, __VA_ARGS__)
#define log_infof(event, ...) \
	log_emit(LOG_LEVEL_INFO, __FILE__, __LINE__, __func__, event, NULL, __VA_ARGS__)
#define log_warnf(event, ...) \
	log_emit(LOG_LEVEL_WARN, __FILE__, __LINE__, __func__, event, NULL, __VA_ARGS__)
#define log_errorf(event, ...) \
	log_emit(LOG_LEVEL_ERROR, __FILE__, __LINE__, __func__, event, NULL, __VA_ARGS__)
/* With structured fields: log_fields(LOG_LEVEL_INFO, "upload", json_pack(...), "msg") */
#define log_fields(level, event, fields, ...) \
	log_emit(level, __FILE__, __LINE__, __func__, event, fields, __VA_ARGS__)

#endif /* P8V_COMMON_LOG_H */
