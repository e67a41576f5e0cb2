/*
 * upload_fields.h: an upload as parsed from a request (struct
 * upload_fields), and what every body form shares: the field rules and
 * the syntax of header parameters. The parsers (upload.c for the raw form,
 * upload_json.c, upload_multipart.c) call these; nothing here calls a
 * parser. Not for modules outside the upload: they use api/upload.h.
 *
 * Every function that fails sets f->detail (through upload_fail) unless it
 * returns P8V_ERR_ALLOC or P8V_ERR_SECMEM, and never puts input bytes in
 * it: only our own field names and fixed text.
 */
#ifndef P8V_API_UPLOAD_FIELDS_H
#define P8V_API_UPLOAD_FIELDS_H

#include <stddef.h>
#include <stdint.h>

#include "store/records.h"

/* Room for a detail message (no input bytes ever go into it). */
#define UPLOAD_DETAIL_MAX 160

/* An upload as parsed from a request. */
struct upload_fields {
	char *key_id;               /* malloc'd, NUL-terminated, or NULL */
	char *team_id;              /* malloc'd, or NULL */
	uint8_t *p8;                /* guarded (secmem_alloc), or NULL */
	size_t p8_len;              /* may be 0 with p8 != NULL (JSON "") */
	enum key_env environment;   /* default KEY_ENV_BOTH */
	uint32_t services;          /* KEY_SERVICE_* bits; default APNs */
	char **topics;              /* n_topics malloc'd strings */
	size_t n_topics;
	int activate;               /* default 1 */
	int check;                  /* default 0: check with Apple first */
	/* The Key ID a file name AuthKey_<ID>.p8 carries, "" if none. */
	char filename_key_id[IDS_APPLE_ID_LEN + 1];
	/* Why parsing failed, for the error message; "" if it did not. */
	char detail[UPLOAD_DETAIL_MAX];
};

/* Free everything *f holds (the .p8 wiped) and zero it. NULL-safe. */
void upload_fields_finish(struct upload_fields *f);

/* The fields of an upload, in every form. */
enum field {
	FIELD_KEY_ID = 0,
	FIELD_TEAM_ID,
	FIELD_P8,
	FIELD_ENVIRONMENT,
	FIELD_SERVICES,
	FIELD_TOPICS,
	FIELD_ACTIVATE,
	FIELD_CHECK,
	FIELD_COUNT,
};

/* "key_id", "team_id", ...: the names of the fields in every form. */
extern const char *const upload_field_names[FIELD_COUNT];

/* Set f->detail from fmt (our own text and field names only) and return
 * err. */
int upload_fail(struct upload_fields *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The field named name[0..len), or FIELD_COUNT if none is. */
enum field upload_field_lookup(const char *name, size_t len);

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
 * topics as comma-separated lists (adding to what is there), activate and
 * check as true/false/1/0, p8 copied into guarded memory. An empty optional value
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

#endif /* P8V_API_UPLOAD_FIELDS_H */
