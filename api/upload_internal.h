/*
 * upload_internal.h: what the three body forms of an upload share
 * (api/upload.c, upload_json.c, upload_multipart.c). Not for other modules:
 * they use api/upload.h.
 *
 * Every function that fails sets f->detail (through upload_fail) unless it
 * returns P8V_ERR_ALLOC or P8V_ERR_SECMEM, and never puts input bytes in
 * it: only our own field names and fixed text.
 */
#ifndef P8V_API_UPLOAD_INTERNAL_H
#define P8V_API_UPLOAD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "api/upload.h"

/* The fields of an upload, in every form. */
enum field {
	FIELD_KEY_ID = 0,
	FIELD_TEAM_ID,
	FIELD_P8,
	FIELD_ENVIRONMENT,
	FIELD_SERVICES,
	FIELD_TOPICS,
	FIELD_ACTIVATE,
	FIELD_COUNT,
};

/* "key_id", "team_id", ...: the names of the fields in every form. */
extern const char *const upload_field_names[FIELD_COUNT];

/* Set f->detail from fmt (our own text and field names only) and return
 * err. */
int upload_fail(struct upload_fields *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The field named name[0..len), or -1. */
int upload_field_lookup(const char *name, size_t len);

/* Store a malloc'd NUL-terminated copy of text[0..len) in *out.
 * 0, P8V_ERR_BAD_REQUEST (text holds a NUL byte), P8V_ERR_ALLOC. */
int upload_dup_text(struct upload_fields *f, enum field which,
    const char *text, size_t len, char **out);

/* Set f->environment from its name. 0 or P8V_ERR_BAD_FIELD. */
int upload_set_environment(struct upload_fields *f, const char *text,
    size_t len);

/* Add one service by name. 0, P8V_ERR_BAD_FIELD (unknown, or named
 * twice). */
int upload_add_service(struct upload_fields *f, const char *text,
    size_t len);

/* Append one topic (the vault checks its syntax). 0, P8V_ERR_BAD_FIELD
 * (more than KEY_RECORD_MAX_TOPICS), P8V_ERR_BAD_REQUEST (a NUL byte),
 * P8V_ERR_ALLOC. */
int upload_add_topic(struct upload_fields *f, const char *text, size_t len);

/*
 * Set a field given as text (a form part, a query parameter): services and
 * topics as comma-separated lists (adding to what is there), activate as
 * true/false/1/0, p8 copied into guarded memory. An empty optional value
 * counts as absent. Returns 0 or the errors of the setters above,
 * P8V_ERR_SECMEM.
 */
int upload_set_text_field(struct upload_fields *f, enum field which,
    const char *text, size_t len);

/* Note a file name; only the exact form AuthKey_<10 characters>.p8 (after
 * any directory part) counts. 0, or P8V_ERR_KEY_ID_MISMATCH when two such
 * names differ. */
int upload_note_filename(struct upload_fields *f, const char *name,
    size_t len);

/* RFC 9110 token characters, and optional white space. */
int upload_is_tchar(unsigned char c);
size_t upload_skip_ows(const char *s, size_t len, size_t i);

/*
 * Find parameter `want` (case-insensitive) in "; a=b; c="d"" of
 * p[0..len) and copy its value, unquoted, into out (outsz bytes,
 * NUL-terminated); escapes: whether a backslash in a quoted string escapes
 * the next character (HTTP headers: yes; multipart part headers as
 * browsers write them: no). Every parameter is checked for syntax.
 * Returns 1 (found), 0 (absent), P8V_ERR_BAD_REQUEST (malformed, too long,
 * or `want` twice).
 */
int upload_param_find(const char *p, size_t len, const char *want,
    int escapes, char *out, size_t outsz);

/* The JSON and multipart forms: fill f from body[0..len). Return 0 or the
 * errors listed for upload_parse (api/upload.h), except
 * P8V_ERR_UNSUPPORTED_MEDIA_TYPE. */
int upload_parse_json(struct upload_fields *f, const uint8_t *body,
    size_t len);
int upload_parse_multipart(struct upload_fields *f, const char *boundary,
    const uint8_t *body, size_t len);

#endif /* P8V_API_UPLOAD_INTERNAL_H */
