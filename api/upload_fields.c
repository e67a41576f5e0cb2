/*
 * upload_fields.c: what every body form of an upload shares: the field
 * rules (one setter per field, the same for JSON, multipart and a raw
 * body's query) and the syntax of header parameters. Below the parsers:
 * upload_json.c, upload_multipart.c and upload.c call it, it calls none
 * of them.
 */
#include "api/upload_fields.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "crypto/secmem.h"

const char *const upload_field_names[FIELD_COUNT] = {
	[FIELD_KEY_ID] = "key_id",
	[FIELD_TEAM_ID] = "team_id",
	[FIELD_P8] = "p8",
	[FIELD_ENVIRONMENT] = "environment",
	[FIELD_SERVICES] = "services",
	[FIELD_TOPICS] = "topics",
	[FIELD_ACTIVATE] = "activate",
	[FIELD_CHECK] = "check",
};

/* The file name Apple gives a key: "AuthKey_" + Key ID + ".p8". */
#define AUTHKEY_PREFIX "AuthKey_"
#define AUTHKEY_SUFFIX ".p8"
#define AUTHKEY_NAME_LEN (sizeof(AUTHKEY_PREFIX) - 1 + IDS_APPLE_ID_LEN + \
    sizeof(AUTHKEY_SUFFIX) - 1)

int
upload_fail(struct upload_fields *f, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
	return err;
}

enum field
upload_field_lookup(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < FIELD_COUNT; i++)
		if (strlen(upload_field_names[i]) == len &&
		    memcmp(upload_field_names[i], name, len) == 0)
			return (enum field)i;
	return FIELD_COUNT;
}

void
upload_fields_finish(struct upload_fields *f)
{
	size_t i;

	if (f == NULL)
		return;
	free(f->key_id);
	free(f->team_id);
	secmem_free(f->p8);
	for (i = 0; i < f->n_topics; i++)
		free(f->topics[i]);
	free(f->topics);
	memset(f, 0, sizeof(*f));
}

/* -- field values ------------------------------------------------------ */

/* A malloc'd NUL-terminated copy of text[0..len); NULL-byte text refused. */
int
upload_dup_text(struct upload_fields *f, enum field which, const char *text,
    size_t len, char **out)
{
	if (memchr(text, '\0', len) != NULL)
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s holds a NUL "
		    "byte", upload_field_names[which]);
	if ((*out = malloc(len + 1)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(*out, text, len);
	(*out)[len] = '\0';
	return 0;
}

static int
set_p8(struct upload_fields *f, const uint8_t *data, size_t len)
{
	/* secmem_alloc_short refuses 0 bytes; an empty .p8 still needs a
	 * non-NULL pointer to be "present" (and then refused by p8_parse).
	 * Locked heap, not guarded pages: see crypto/secmem.h. */
	if ((f->p8 = secmem_alloc_short(len > 0 ? len : 1)) == NULL)
		return P8V_ERR_SECMEM;
	if (len > 0)
		memcpy(f->p8, data, len);
	f->p8_len = len;
	return 0;
}

int
upload_set_environment(struct upload_fields *f, const char *text, size_t len)
{
	char name[16];

	if (len >= sizeof(name) || memchr(text, '\0', len) != NULL)
		return upload_fail(f, P8V_ERR_BAD_FIELD, "%s must be "
		    "development, production or both", "environment");
	memcpy(name, text, len);
	name[len] = '\0';
	if (key_env_from_name(name, &f->environment) != 0)
		return upload_fail(f, P8V_ERR_BAD_FIELD, "%s must be "
		    "development, production or both", "environment");
	return 0;
}

int
upload_add_service(struct upload_fields *f, const char *text, size_t len)
{
	char name[32];
	uint32_t bit;

	if (len == 0 || len >= sizeof(name) ||
	    memchr(text, '\0', len) != NULL)
		goto bad;
	memcpy(name, text, len);
	name[len] = '\0';
	if (key_service_from_name(name, &bit) != 0)
		goto bad;
	if ((f->services & bit) != 0)
		return upload_fail(f, P8V_ERR_BAD_FIELD, "%s names a service "
		    "twice", "services");
	f->services |= bit;
	return 0;
 bad:
	return upload_fail(f, P8V_ERR_BAD_FIELD, "%s: each must be one of "
	    "apns, app_store_connect, sign_in_with_apple, musickit, "
	    "weatherkit, devicecheck, maps", "services");
}

/* Append one topic (the vault checks its syntax). */
int
upload_add_topic(struct upload_fields *f, const char *text, size_t len)
{
	char **grown;
	int r;

	if (f->n_topics == KEY_RECORD_MAX_TOPICS)
		return upload_fail(f, P8V_ERR_BAD_FIELD, "%s: at most %d",
		    "topics", KEY_RECORD_MAX_TOPICS);
	if ((grown = realloc(f->topics, (f->n_topics + 1) *
	    sizeof(*f->topics))) == NULL)
		return P8V_ERR_ALLOC;
	f->topics = grown;
	if ((r = upload_dup_text(f, FIELD_TOPICS, text, len,
	    &f->topics[f->n_topics])) != 0)
		return r;
	f->n_topics++;
	return 0;
}

/* "a, b,c" -> add(a), add(b), add(c). An empty item is the add's to judge. */
static int
add_list(struct upload_fields *f, const char *text, size_t len,
    int (*add)(struct upload_fields *, const char *, size_t))
{
	size_t start = 0, end, a, b;
	int r;

	for (;;) {
		end = start;
		while (end < len && text[end] != ',')
			end++;
		a = start;
		b = end;
		while (a < b && (text[a] == ' ' || text[a] == '\t'))
			a++;
		while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t'))
			b--;
		if ((r = add(f, text + a, b - a)) != 0)
			return r;
		if (end >= len)
			return 0;
		start = end + 1;
	}
}

/* A boolean field given as text: true/false/1/0. */
static int
set_bool(struct upload_fields *f, enum field which, const char *text,
    size_t len, int *out)
{
	if ((len == 4 && memcmp(text, "true", 4) == 0) ||
	    (len == 1 && text[0] == '1'))
		*out = 1;
	else if ((len == 5 && memcmp(text, "false", 5) == 0) ||
	    (len == 1 && text[0] == '0'))
		*out = 0;
	else
		return upload_fail(f, P8V_ERR_BAD_FIELD, "%s must be true, "
		    "false, 1 or 0", upload_field_names[which]);
	return 0;
}

/*
 * A field given as text (a form part or a query parameter). Empty optional
 * values count as absent: that is what a browser sends for an empty input.
 */
int
upload_set_text_field(struct upload_fields *f, enum field which,
    const char *text, size_t len)
{
	switch (which) {
	case FIELD_KEY_ID:
		return upload_dup_text(f, which, text, len, &f->key_id);
	case FIELD_TEAM_ID:
		return upload_dup_text(f, which, text, len, &f->team_id);
	case FIELD_P8:
		return set_p8(f, (const uint8_t *)text, len);
	case FIELD_ENVIRONMENT:
		return len == 0 ? 0 : upload_set_environment(f, text, len);
	case FIELD_SERVICES:
		return len == 0 ? 0 : add_list(f, text, len,
		    upload_add_service);
	case FIELD_TOPICS:
		return len == 0 ? 0 : add_list(f, text, len, upload_add_topic);
	case FIELD_ACTIVATE:
		return len == 0 ? 0 : set_bool(f, which, text, len,
		    &f->activate);
	case FIELD_CHECK:
		return len == 0 ? 0 : set_bool(f, which, text, len, &f->check);
	case FIELD_COUNT:
		break;
	}
	return P8V_ERR_INTERNAL;
}

/*
 * Note a file name. Only the exact form AuthKey_<10 characters>.p8 (after
 * any directory part an old browser may send) is looked at; two such names
 * that differ cannot both match key_id.
 */
int
upload_note_filename(struct upload_fields *f, const char *name, size_t len)
{
	const char *id;
	size_t i;

	for (i = len; i > 0; i--) {
		if (name[i - 1] == '/' || name[i - 1] == '\\') {
			name += i;
			len -= i;
			break;
		}
	}
	if (len != AUTHKEY_NAME_LEN ||
	    memcmp(name, AUTHKEY_PREFIX, sizeof(AUTHKEY_PREFIX) - 1) != 0 ||
	    memcmp(name + len - (sizeof(AUTHKEY_SUFFIX) - 1), AUTHKEY_SUFFIX,
	    sizeof(AUTHKEY_SUFFIX) - 1) != 0)
		return 0;
	id = name + sizeof(AUTHKEY_PREFIX) - 1;
	if (f->filename_key_id[0] != '\0' &&
	    memcmp(f->filename_key_id, id, IDS_APPLE_ID_LEN) != 0)
		return upload_fail(f, P8V_ERR_KEY_ID_MISMATCH, "%s", "two file "
		    "names AuthKey_<KEYID>.p8 name different Key IDs");
	memcpy(f->filename_key_id, id, IDS_APPLE_ID_LEN);
	f->filename_key_id[IDS_APPLE_ID_LEN] = '\0';
	return 0;
}

/* -- header values: parameters ---------------------------------------- */

int
upload_is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' &&
	    strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

size_t
upload_skip_ows(const char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i;
}

/*
 * Find parameter `want` (case-insensitive) in "; a=b; c="d"" (RFC 9110
 * section 5.6.6: token or quoted-string values) in p[0..len), and copy its
 * value, unquoted, into out (outsz bytes, NUL-terminated). Every parameter
 * is checked for syntax, whichever is wanted. With escapes, a backslash in
 * a quoted string escapes the next character (HTTP headers); without, it
 * is a character like any other: browsers do not escape inside multipart
 * headers (they percent-encode '"', CR and LF, WHATWG HTML "multipart/
 * form-data encoding"), and an old browser's "C:\keys\AuthKey_X.p8" must
 * keep its backslashes.
 * Returns 1 (found), 0 (absent), or P8V_ERR_BAD_REQUEST (malformed, value
 * too long, or `want` given twice).
 */
int
upload_param_find(const char *p, size_t len, const char *want, int escapes,
    char *out, size_t outsz)
{
	size_t i = 0, name, name_len, o;
	int found = 0, match;
	unsigned char c;

	for (;;) {
		i = upload_skip_ows(p, len, i);
		if (i == len)
			break;
		if (p[i] != ';')
			return P8V_ERR_BAD_REQUEST;
		i = upload_skip_ows(p, len, i + 1);
		if (i == len)
			break;                  /* a trailing ';' is harmless */
		name = i;
		while (i < len && upload_is_tchar((unsigned char)p[i]))
			i++;
		name_len = i - name;
		if (name_len == 0 || i == len || p[i] != '=')
			return P8V_ERR_BAD_REQUEST;
		i++;
		match = strlen(want) == name_len &&
		    strncasecmp(p + name, want, name_len) == 0;
		if (match && found++)
			return P8V_ERR_BAD_REQUEST;
		o = 0;
		if (i < len && p[i] == '"') {
			for (i++;; i++) {
				if (i == len)
					return P8V_ERR_BAD_REQUEST;
				c = (unsigned char)p[i];
				if (c == '"')
					break;
				if (c == '\\' && escapes) {
					if (++i == len)
						return P8V_ERR_BAD_REQUEST;
					c = (unsigned char)p[i];
				}
				/* qdtext: HTAB, SP, VCHAR, obs-text */
				if ((c < 0x20 && c != '\t') || c == 0x7f)
					return P8V_ERR_BAD_REQUEST;
				if (match) {
					if (o + 1 >= outsz)
						return P8V_ERR_BAD_REQUEST;
					out[o++] = (char)c;
				}
			}
			i++;
		} else {
			if (i == len || !upload_is_tchar((unsigned char)p[i]))
				return P8V_ERR_BAD_REQUEST;
			for (; i < len &&
			    upload_is_tchar((unsigned char)p[i]); i++) {
				if (match) {
					if (o + 1 >= outsz)
						return P8V_ERR_BAD_REQUEST;
					out[o++] = p[i];
				}
			}
		}
		if (match)
			out[o] = '\0';
	}
	return found;
}
