/*
 * upload.c: POST /v1/apps/{app}/keys: the three body forms (JSON,
 * multipart/form-data, a raw PEM) parsed into one struct upload_fields and
 * handed to the vault.
 *
 * Why a small multipart parser of our own rather than libmicrohttpd's
 * MHD_PostProcessor: the framework (api/http.h) hands handlers the body
 * already accumulated in guarded memory and no MHD_Connection, which
 * MHD_create_post_processor needs (it reads Content-Type from it); and the
 * PostProcessor copies part data through its own malloc'd buffer, which
 * would put the .p8 on the ordinary heap. It is also lenient where this
 * API wants to be strict (duplicate parts, unterminated bodies). The parser
 * below reads the guarded body in place and copies only the p8 part, into
 * guarded memory.
 */
#include "api/upload.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/http.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/secmem.h"
#include "vault/vault.h"

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

static const char *const field_names[FIELD_COUNT] = {
	[FIELD_KEY_ID] = "key_id",
	[FIELD_TEAM_ID] = "team_id",
	[FIELD_P8] = "p8",
	[FIELD_ENVIRONMENT] = "environment",
	[FIELD_SERVICES] = "services",
	[FIELD_TOPICS] = "topics",
	[FIELD_ACTIVATE] = "activate",
};

/* The file name Apple gives a key: "AuthKey_" + Key ID + ".p8". */
#define AUTHKEY_PREFIX "AuthKey_"
#define AUTHKEY_SUFFIX ".p8"
#define AUTHKEY_NAME_LEN (sizeof(AUTHKEY_PREFIX) - 1 + IDS_APPLE_ID_LEN + \
    sizeof(AUTHKEY_SUFFIX) - 1)
/* Longest media type we compare ("application/x-pem-file" and the like). */
#define MEDIA_TYPE_MAX 64
/* Longest JSON member name that can still decode to "p8": two characters
 * written as a surrogate-free \uXXXX escape each. */
#define JSON_P8_KEY_RAW_MAX 12

/* The query parameter that may carry the uploaded file's name. */
#define QUERY_FILENAME "filename"

/* Set the detail message and return err. Arguments are our own strings
 * (field names), never input bytes. */
static int fail(struct upload_fields *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(struct upload_fields *f, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
	va_end(ap);
	return err;
}

static int
field_lookup(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < FIELD_COUNT; i++)
		if (strlen(field_names[i]) == len &&
		    memcmp(field_names[i], name, len) == 0)
			return (int)i;
	return -1;
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
static int
dup_text(struct upload_fields *f, enum field which, const char *text,
    size_t len, char **out)
{
	if (memchr(text, '\0', len) != NULL)
		return fail(f, P8V_ERR_BAD_REQUEST, "%s holds a NUL byte",
		    field_names[which]);
	if ((*out = malloc(len + 1)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(*out, text, len);
	(*out)[len] = '\0';
	return 0;
}

static int
set_p8(struct upload_fields *f, const uint8_t *data, size_t len)
{
	/* secmem_alloc refuses 0 bytes; an empty .p8 still needs a non-NULL
	 * pointer to be "present" (and then refused by p8_parse). */
	if ((f->p8 = secmem_alloc(len > 0 ? len : 1)) == NULL)
		return P8V_ERR_SECMEM;
	if (len > 0)
		memcpy(f->p8, data, len);
	f->p8_len = len;
	return 0;
}

static int
set_environment(struct upload_fields *f, const char *text, size_t len)
{
	char name[16];

	if (len >= sizeof(name) || memchr(text, '\0', len) != NULL)
		return fail(f, P8V_ERR_BAD_FIELD, "%s must be development, "
		    "production or both", "environment");
	memcpy(name, text, len);
	name[len] = '\0';
	if (key_env_from_name(name, &f->environment) != 0)
		return fail(f, P8V_ERR_BAD_FIELD, "%s must be development, "
		    "production or both", "environment");
	return 0;
}

static int
add_service(struct upload_fields *f, const char *text, size_t len)
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
		return fail(f, P8V_ERR_BAD_FIELD, "%s names a service twice",
		    "services");
	f->services |= bit;
	return 0;
 bad:
	return fail(f, P8V_ERR_BAD_FIELD, "%s: each must be one of apns, "
	    "app_store_connect, sign_in_with_apple, musickit, weatherkit, "
	    "devicecheck, maps", "services");
}

/* Append one topic (the vault checks its syntax). */
static int
add_topic(struct upload_fields *f, const char *text, size_t len)
{
	char **grown;
	int r;

	if (f->n_topics == KEY_RECORD_MAX_TOPICS)
		return fail(f, P8V_ERR_BAD_FIELD, "%s: at most 64", "topics");
	if ((grown = realloc(f->topics, (f->n_topics + 1) *
	    sizeof(*f->topics))) == NULL)
		return P8V_ERR_ALLOC;
	f->topics = grown;
	if ((r = dup_text(f, FIELD_TOPICS, text, len,
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

static int
set_activate(struct upload_fields *f, const char *text, size_t len)
{
	if ((len == 4 && memcmp(text, "true", 4) == 0) ||
	    (len == 1 && text[0] == '1'))
		f->activate = 1;
	else if ((len == 5 && memcmp(text, "false", 5) == 0) ||
	    (len == 1 && text[0] == '0'))
		f->activate = 0;
	else
		return fail(f, P8V_ERR_BAD_FIELD, "%s must be true or false",
		    "activate");
	return 0;
}

/*
 * A field given as text (a form part or a query parameter). Empty optional
 * values count as absent: that is what a browser sends for an empty input.
 */
static int
set_text_field(struct upload_fields *f, enum field which, const char *text,
    size_t len)
{
	switch (which) {
	case FIELD_KEY_ID:
		return dup_text(f, which, text, len, &f->key_id);
	case FIELD_TEAM_ID:
		return dup_text(f, which, text, len, &f->team_id);
	case FIELD_P8:
		return set_p8(f, (const uint8_t *)text, len);
	case FIELD_ENVIRONMENT:
		return len == 0 ? 0 : set_environment(f, text, len);
	case FIELD_SERVICES:
		return len == 0 ? 0 : add_list(f, text, len, add_service);
	case FIELD_TOPICS:
		return len == 0 ? 0 : add_list(f, text, len, add_topic);
	case FIELD_ACTIVATE:
		return len == 0 ? 0 : set_activate(f, text, len);
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
static int
note_filename(struct upload_fields *f, const char *name, size_t len)
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
		return fail(f, P8V_ERR_KEY_ID_MISMATCH, "%s", "two file names "
		    "AuthKey_<KEYID>.p8 name different Key IDs");
	memcpy(f->filename_key_id, id, IDS_APPLE_ID_LEN);
	f->filename_key_id[IDS_APPLE_ID_LEN] = '\0';
	return 0;
}

/* -- header values: media types and parameters ------------------------ */

static int
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' &&
	    strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t
skip_ows(const char *s, size_t len, size_t i)
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
static int
param_find(const char *p, size_t len, const char *want, int escapes,
    char *out, size_t outsz)
{
	size_t i = 0, name, name_len, o;
	int found = 0, match;
	unsigned char c;

	for (;;) {
		i = skip_ows(p, len, i);
		if (i == len)
			break;
		if (p[i] != ';')
			return P8V_ERR_BAD_REQUEST;
		i = skip_ows(p, len, i + 1);
		if (i == len)
			break;                  /* a trailing ';' is harmless */
		name = i;
		while (i < len && is_tchar((unsigned char)p[i]))
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
			if (i == len || !is_tchar((unsigned char)p[i]))
				return P8V_ERR_BAD_REQUEST;
			for (; i < len && is_tchar((unsigned char)p[i]); i++) {
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

/*
 * Split "Type/Sub; params" into the lowercased media type and where its
 * parameters start. Returns 0, or -1 if there is no token/token.
 */
static int
media_type_split(const char *ct, char type[MEDIA_TYPE_MAX],
    const char **params)
{
	size_t len = strlen(ct), i, o = 0, slash = 0;

	i = skip_ows(ct, len, 0);
	for (; i < len && (is_tchar((unsigned char)ct[i]) || ct[i] == '/');
	    i++) {
		if (ct[i] == '/') {
			if (slash++ != 0)
				return -1;
			if (o == 0)
				return -1;
		}
		if (o + 1 >= MEDIA_TYPE_MAX)
			return -1;
		type[o++] = (char)((ct[i] >= 'A' && ct[i] <= 'Z') ?
		    ct[i] - 'A' + 'a' : ct[i]);
	}
	type[o] = '\0';
	if (slash != 1 || type[o - 1] == '/')
		return -1;
	*params = ct + i;
	return 0;
}

/* -- JSON -------------------------------------------------------------- */

/* A cursor over JSON text. */
struct jscan {
	const uint8_t *s;
	size_t len;
	size_t pos;
};

static void
json_skip_ws(struct jscan *sc)
{
	while (sc->pos < sc->len && (sc->s[sc->pos] == ' ' ||
	    sc->s[sc->pos] == '\t' || sc->s[sc->pos] == '\n' ||
	    sc->s[sc->pos] == '\r'))
		sc->pos++;
}

static int
json_hex4(struct jscan *sc, uint32_t *out)
{
	uint32_t v = 0;
	size_t i;
	uint8_t c;

	if (sc->len - sc->pos < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		c = sc->s[sc->pos + i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	sc->pos += 4;
	*out = v;
	return 0;
}

/* Length of the valid UTF-8 sequence at s[0..avail) (no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0. */
static size_t
utf8_seq(const uint8_t *s, size_t avail)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1fu;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0fu;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07u;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static size_t
utf8_put(uint8_t *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xc0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xe0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (uint8_t)(0xf0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Scan the JSON string at sc->pos (its opening quote), validating it as
 * RFC 8259 and jansson (without JSON_ALLOW_NUL) do, and, if out is not
 * NULL, decode it into out (room for the raw length: decoding never
 * grows). On return sc->pos is past the closing quote.
 * Returns 0 or P8V_ERR_BAD_REQUEST.
 */
static int
json_scan_string(struct jscan *sc, uint8_t *out, size_t *out_len)
{
	size_t o = 0, n;
	uint32_t cp, lo;
	uint8_t c;

	if (sc->pos >= sc->len || sc->s[sc->pos] != '"')
		return P8V_ERR_BAD_REQUEST;
	sc->pos++;
	for (;;) {
		if (sc->pos >= sc->len)
			return P8V_ERR_BAD_REQUEST;
		c = sc->s[sc->pos];
		if (c == '"')
			break;
		if (c < 0x20)
			return P8V_ERR_BAD_REQUEST;
		if (c != '\\') {
			if ((n = utf8_seq(sc->s + sc->pos,
			    sc->len - sc->pos)) == 0)
				return P8V_ERR_BAD_REQUEST;
			if (out != NULL)
				memcpy(out + o, sc->s + sc->pos, n);
			o += n;
			sc->pos += n;
			continue;
		}
		if (sc->pos + 1 >= sc->len)
			return P8V_ERR_BAD_REQUEST;
		c = sc->s[sc->pos + 1];
		sc->pos += 2;
		switch (c) {
		case '"': case '\\': case '/':
			cp = c;
			break;
		case 'b':
			cp = '\b';
			break;
		case 'f':
			cp = '\f';
			break;
		case 'n':
			cp = '\n';
			break;
		case 'r':
			cp = '\r';
			break;
		case 't':
			cp = '\t';
			break;
		case 'u':
			if (json_hex4(sc, &cp) != 0)
				return P8V_ERR_BAD_REQUEST;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (sc->len - sc->pos < 2 ||
				    sc->s[sc->pos] != '\\' ||
				    sc->s[sc->pos + 1] != 'u')
					return P8V_ERR_BAD_REQUEST;
				sc->pos += 2;
				if (json_hex4(sc, &lo) != 0 || lo < 0xdc00 ||
				    lo > 0xdfff)
					return P8V_ERR_BAD_REQUEST;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				    (lo - 0xdc00);
			} else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
				return P8V_ERR_BAD_REQUEST;
			}
			break;
		default:
			return P8V_ERR_BAD_REQUEST;
		}
		if (out != NULL)
			o += utf8_put(out + o, cp);
		else
			o++;
	}
	sc->pos++;
	if (out_len != NULL)
		*out_len = o;
	return 0;
}

/*
 * Skip one JSON value of any kind at sc->pos, as far as needed to find
 * where it ends; strings are validated, everything else is left to jansson,
 * which parses the whole document afterwards.
 */
static int
json_skip_value(struct jscan *sc)
{
	size_t depth = 0;
	uint8_t c;
	int r;

	for (;;) {
		json_skip_ws(sc);
		if (sc->pos >= sc->len)
			return P8V_ERR_BAD_REQUEST;
		c = sc->s[sc->pos];
		if (c == '"') {
			if ((r = json_scan_string(sc, NULL, NULL)) != 0)
				return r;
			if (depth == 0)
				return 0;
		} else if (c == '{' || c == '[') {
			depth++;
			sc->pos++;
		} else if (c == '}' || c == ']' || c == ',') {
			if (depth == 0)
				return 0;       /* the end of a scalar */
			if (c != ',' && --depth == 0) {
				sc->pos++;
				return 0;
			}
			sc->pos++;
		} else {
			sc->pos++;              /* numbers, literals, ':' */
		}
	}
}

/*
 * Cut the top-level "p8" member's string value out of the JSON text
 * s[0..len): decode it into guarded memory (f->p8) and return in *rest
 * (malloc'd, *rest_len bytes) the same document with that value replaced
 * by "". Without such a member f->p8 stays NULL and *rest is a copy. The
 * p8 string is validated here as jansson would (it never sees it); the rest
 * is left to jansson.
 * Returns 0, P8V_ERR_BAD_REQUEST, P8V_ERR_SECMEM, P8V_ERR_ALLOC.
 */
static int
json_cut_p8(struct upload_fields *f, const uint8_t *s, size_t len,
    char **rest, size_t *rest_len)
{
	struct jscan sc = { s, len, 0 };
	size_t key_start, vstart = 0, vend = 0, klen, raw;
	uint8_t key[JSON_P8_KEY_RAW_MAX];
	int is_p8, r;

	*rest = NULL;
	json_skip_ws(&sc);
	if (sc.pos >= len || s[sc.pos] != '{')
		return fail(f, P8V_ERR_BAD_REQUEST, "%s",
		    "the body is not a JSON object");
	sc.pos++;
	json_skip_ws(&sc);
	if (sc.pos < len && s[sc.pos] == '}')
		goto cut;
	for (;;) {
		json_skip_ws(&sc);
		key_start = sc.pos;
		if ((r = json_scan_string(&sc, NULL, NULL)) != 0)
			goto bad;
		is_p8 = 0;
		if (sc.pos - key_start - 2 <= JSON_P8_KEY_RAW_MAX) {
			sc.pos = key_start;
			if ((r = json_scan_string(&sc, key, &klen)) != 0)
				goto bad;
			is_p8 = klen == 2 && memcmp(key, "p8", 2) == 0;
		}
		json_skip_ws(&sc);
		if (sc.pos >= len || s[sc.pos] != ':')
			goto bad;
		sc.pos++;
		json_skip_ws(&sc);
		if (is_p8 && sc.pos < len && s[sc.pos] == '"') {
			if (f->p8 != NULL)
				return fail(f, P8V_ERR_BAD_REQUEST,
				    "member %s appears twice", "p8");
			vstart = sc.pos;
			if ((r = json_scan_string(&sc, NULL, NULL)) != 0)
				goto bad;
			vend = sc.pos;
			raw = vend - vstart - 2;
			if ((f->p8 = secmem_alloc(raw > 0 ? raw : 1)) == NULL)
				return P8V_ERR_SECMEM;
			sc.pos = vstart;
			if ((r = json_scan_string(&sc, f->p8,
			    &f->p8_len)) != 0)
				goto bad;
		} else if ((r = json_skip_value(&sc)) != 0) {
			goto bad;
		}
		json_skip_ws(&sc);
		if (sc.pos >= len)
			goto bad;
		if (s[sc.pos] == '}')
			break;
		if (s[sc.pos] != ',')
			goto bad;
		sc.pos++;
	}
 cut:
	*rest_len = len - (vend - vstart) + (f->p8 != NULL ? 2 : 0);
	if ((*rest = malloc(*rest_len > 0 ? *rest_len : 1)) == NULL)
		return P8V_ERR_ALLOC;
	if (f->p8 == NULL) {
		memcpy(*rest, s, len);
	} else {
		memcpy(*rest, s, vstart);
		memcpy(*rest + vstart, "\"\"", 2);
		memcpy(*rest + vstart + 2, s + vend, len - vend);
	}
	return 0;
 bad:
	return fail(f, P8V_ERR_BAD_REQUEST, "%s", "the body is not valid JSON");
}

static int
json_string_list(struct upload_fields *f, enum field which, json_t *v,
    int (*add)(struct upload_fields *, const char *, size_t))
{
	json_t *item;
	size_t i;
	int r;

	if (!json_is_array(v))
		return fail(f, P8V_ERR_BAD_REQUEST, "%s must be an array of "
		    "strings", field_names[which]);
	json_array_foreach(v, i, item) {
		if (!json_is_string(item))
			return fail(f, P8V_ERR_BAD_REQUEST, "%s must be an "
			    "array of strings", field_names[which]);
		if ((r = add(f, json_string_value(item),
		    json_string_length(item))) != 0)
			return r;
	}
	return 0;
}

static int
json_member(struct upload_fields *f, enum field which, json_t *v)
{
	/* null stands for an absent member; required ones are then
	 * reported missing. */
	if (json_is_null(v))
		return 0;
	switch (which) {
	case FIELD_KEY_ID:
	case FIELD_TEAM_ID:
		if (!json_is_string(v))
			break;
		return dup_text(f, which, json_string_value(v),
		    json_string_length(v),
		    which == FIELD_KEY_ID ? &f->key_id : &f->team_id);
	case FIELD_P8:
		if (!json_is_string(v))
			break;
		/* json_cut_p8 replaced the value by "": anything else
		 * means the two parsers disagree about the document. */
		if (f->p8 == NULL || json_string_length(v) != 0) {
			secmem_wipe((void *)json_string_value(v),
			    json_string_length(v));
			log_errorf("upload_json", "the p8 member escaped the "
			    "cut; refused");
			return P8V_ERR_INTERNAL;
		}
		return 0;
	case FIELD_ENVIRONMENT:
		if (!json_is_string(v))
			break;
		return set_environment(f, json_string_value(v),
		    json_string_length(v));
	case FIELD_SERVICES:
		if (json_is_array(v) && json_array_size(v) == 0)
			return fail(f, P8V_ERR_BAD_FIELD, "%s must name at "
			    "least one service", "services");
		return json_string_list(f, which, v, add_service);
	case FIELD_TOPICS:
		return json_string_list(f, which, v, add_topic);
	case FIELD_ACTIVATE:
		if (!json_is_boolean(v))
			break;
		f->activate = json_is_true(v);
		return 0;
	case FIELD_COUNT:
		return P8V_ERR_INTERNAL;
	}
	return fail(f, P8V_ERR_BAD_REQUEST, "%s has the wrong JSON type",
	    field_names[which]);
}

static int
parse_json(struct upload_fields *f, const uint8_t *body, size_t len)
{
	json_error_t jerr;
	json_t *obj = NULL, *v;
	const char *name;
	char *rest = NULL;
	size_t rest_len = 0;
	int which, r = P8V_ERR_INTERNAL;

	if (len == 0) {
		r = fail(f, P8V_ERR_BAD_REQUEST, "%s", "the body is empty");
		goto out;
	}
	if ((r = json_cut_p8(f, body, len, &rest, &rest_len)) != 0)
		goto out;
	/* Duplicate members are ambiguous (which did the portal mean?). */
	if ((obj = json_loadb(rest, rest_len, JSON_REJECT_DUPLICATES,
	    &jerr)) == NULL) {
		/* jerr.text may quote input: not for the client. */
		r = fail(f, P8V_ERR_BAD_REQUEST, "%s", "the body is not valid "
		    "JSON, or holds a member twice");
		goto out;
	}
	if (!json_is_object(obj)) {
		r = fail(f, P8V_ERR_BAD_REQUEST, "%s",
		    "the body is not a JSON object");
		goto out;
	}
	json_object_foreach(obj, name, v) {
		if ((which = field_lookup(name, strlen(name))) < 0) {
			r = fail(f, P8V_ERR_UNKNOWN_FIELD, "%s", "unknown "
			    "member; known: key_id, team_id, p8, environment, "
			    "services, topics, activate");
			goto out;
		}
		if ((r = json_member(f, (enum field)which, v)) != 0)
			goto out;
	}
	r = 0;
 out:
	free(rest);
	json_decref(obj);
	return r;
}

/* -- multipart/form-data ---------------------------------------------- */

/* One part's headers, as far as this API looks at them. */
struct part_head {
	int has_disposition;
	char name[UPLOAD_PART_HEADER_MAX];
	int has_filename;
	char filename[UPLOAD_PART_HEADER_MAX];
};

/*
 * Content-Disposition of a part (RFC 7578 section 4.2): form-data with a
 * name and an optional filename. filename* (RFC 5987) is not used by
 * browsers and RFC 7578 says not to send it: refused rather than ignored,
 * so that a file name is never overlooked.
 */
static int
part_disposition(struct upload_fields *f, const char *v, size_t len,
    struct part_head *h)
{
	char scratch[2];
	size_t i = 0;
	int r;

	if (h->has_disposition)
		return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part has two "
		    "Content-Disposition headers");
	h->has_disposition = 1;
	while (i < len && is_tchar((unsigned char)v[i]))
		i++;
	if (i != sizeof("form-data") - 1 ||
	    strncasecmp(v, "form-data", i) != 0)
		return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part is not "
		    "form-data");
	if ((r = param_find(v + i, len - i, "name", 0, h->name,
	    sizeof(h->name))) < 0)
		return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part's "
		    "Content-Disposition is malformed, or its name unknown");
	if (r == 0)
		return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part has no name");
	if ((r = param_find(v + i, len - i, "filename", 0, h->filename,
	    sizeof(h->filename))) < 0)
		return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part's "
		    "Content-Disposition is malformed");
	h->has_filename = r;
	if ((r = param_find(v + i, len - i, "filename*", 0, scratch,
	    sizeof(scratch))) != 0)
		return fail(f, P8V_ERR_BAD_REQUEST, "%s", "filename* is not "
		    "supported: send filename");
	return 0;
}

/* Read the header lines of a part from body[*pos..len), up to and past the
 * empty line. */
static int
part_headers(struct upload_fields *f, const uint8_t *body, size_t len,
    size_t *pos, struct part_head *h)
{
	char line[UPLOAD_PART_HEADER_MAX + 1];
	const uint8_t *eol;
	size_t p = *pos, llen, n = 0, colon, vs, ve;
	int r;

	memset(h, 0, sizeof(*h));
	for (;;) {
		if ((eol = memmem(body + p, len - p, "\r\n", 2)) == NULL)
			return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part's "
			    "headers are not terminated");
		llen = (size_t)(eol - (body + p));
		if (llen == 0)
			break;
		if (++n > UPLOAD_PART_HEADERS_MAX ||
		    llen > UPLOAD_PART_HEADER_MAX)
			return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part's "
			    "headers are too large");
		memcpy(line, body + p, llen);
		line[llen] = '\0';
		p += llen + 2;
		/* No NUL, no obsolete line folding, a token before ':'. */
		for (colon = 0; colon < llen && is_tchar((unsigned char)
		    line[colon]); colon++)
			;
		if (memchr(line, '\0', llen) != NULL || colon == 0 ||
		    colon == llen || line[colon] != ':')
			return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part "
			    "has a malformed header");
		vs = skip_ows(line, llen, colon + 1);
		ve = llen;
		while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
			ve--;
		line[ve] = '\0';
		if (colon == sizeof("Content-Disposition") - 1 &&
		    strncasecmp(line, "Content-Disposition", colon) == 0) {
			if ((r = part_disposition(f, line + vs, ve - vs,
			    h)) != 0)
				return r;
		} else if (colon == sizeof("Content-Transfer-Encoding") - 1 &&
		    strncasecmp(line, "Content-Transfer-Encoding",
		    colon) == 0) {
			/* RFC 7578 4.7: deprecated; only identities. */
			if (strcasecmp(line + vs, "binary") != 0 &&
			    strcasecmp(line + vs, "8bit") != 0 &&
			    strcasecmp(line + vs, "7bit") != 0)
				return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a "
				    "part has a Content-Transfer-Encoding "
				    "other than binary");
		}
		/* Content-Type and others: nothing to act on. */
	}
	if (!h->has_disposition)
		return fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part has no "
		    "Content-Disposition");
	*pos = p + 2;
	return 0;
}

static int
parse_multipart(struct upload_fields *f, const char *boundary,
    const uint8_t *body, size_t len)
{
	char delim[4 + UPLOAD_BOUNDARY_MAX + 1];
	struct part_head h;
	const uint8_t *q;
	size_t dlen, p, dsz;
	unsigned int seen = 0;
	int which, r;

	/* A delimiter is CRLF "--" boundary; the first may open the body. */
	dlen = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
		p = dlen - 2;
	} else if (len > 0 && (q = memmem(body, len, delim, dlen)) != NULL) {
		p = (size_t)(q - body) + dlen;  /* after a preamble */
	} else {
		return fail(f, P8V_ERR_BAD_REQUEST, "%s", "the multipart body "
		    "does not hold its boundary");
	}
	for (;;) {
		if (len - p >= 2 && body[p] == '-' && body[p + 1] == '-')
			break;                  /* the close delimiter */
		while (p < len && (body[p] == ' ' || body[p] == '\t'))
			p++;
		if (len - p < 2 || body[p] != '\r' || body[p + 1] != '\n')
			return fail(f, P8V_ERR_BAD_REQUEST, "%s", "the "
			    "multipart body is malformed");
		p += 2;
		if ((r = part_headers(f, body, len, &p, &h)) != 0)
			return r;
		if ((q = memmem(body + p, len - p, delim, dlen)) == NULL)
			return fail(f, P8V_ERR_BAD_REQUEST, "%s", "the "
			    "multipart body is truncated");
		dsz = (size_t)(q - (body + p));
		if ((which = field_lookup(h.name, strlen(h.name))) < 0)
			return fail(f, P8V_ERR_UNKNOWN_FIELD, "%s", "unknown "
			    "part; known: key_id, team_id, p8, environment, "
			    "services, topics, activate");
		/* Lists may repeat (checkboxes, a multi-select). */
		if ((seen & 1u << which) != 0 && which != FIELD_SERVICES &&
		    which != FIELD_TOPICS)
			return fail(f, P8V_ERR_BAD_REQUEST, "part %s appears "
			    "twice", field_names[which]);
		seen |= 1u << which;
		if (which == FIELD_P8 && h.has_filename &&
		    (r = note_filename(f, h.filename,
		    strlen(h.filename))) != 0)
			return r;
		/* An empty file input sends an empty p8 part: absent. */
		if (!(which == FIELD_P8 && dsz == 0) &&
		    (r = set_text_field(f, (enum field)which,
		    (const char *)body + p, dsz)) != 0)
			return r;
		p = (size_t)(q - body) + dlen;
	}
	return 0;
}

/* -- raw PEM ------------------------------------------------------------ */

static int
parse_raw(struct upload_fields *f, const char *disposition,
    const uint8_t *body, size_t len, upload_query_fn query, void *arg)
{
	char filename[UPLOAD_PART_HEADER_MAX];
	const char *v;
	size_t i;
	int r;

	if (len == 0)
		return fail(f, P8V_ERR_MISSING_FIELD, "%s", "the body (the "
		    ".p8) is empty");
	if ((r = set_p8(f, body, len)) != 0)
		return r;
	for (i = 0; i < FIELD_COUNT; i++) {
		if (i == FIELD_P8 || (v = query(arg, field_names[i])) == NULL)
			continue;
		if ((r = set_text_field(f, (enum field)i, v, strlen(v))) != 0)
			return r;
	}
	if (disposition != NULL) {
		/* attachment; filename="AuthKey_ABC.p8" (any disposition
		 * type: only the file name matters here). */
		i = 0;
		while (disposition[i] != '\0' &&
		    is_tchar((unsigned char)disposition[i]))
			i++;
		if (i == 0 || (r = param_find(disposition + i,
		    strlen(disposition + i), "filename", 1, filename,
		    sizeof(filename))) < 0)
			return fail(f, P8V_ERR_BAD_REQUEST, "%s", "the "
			    "Content-Disposition header is malformed");
		if (r == 1 && (r = note_filename(f, filename,
		    strlen(filename))) != 0)
			return r;
		if (param_find(disposition + i, strlen(disposition + i),
		    "filename*", 1, filename, sizeof(filename)) != 0)
			return fail(f, P8V_ERR_BAD_REQUEST, "%s", "filename* "
			    "is not supported: send filename");
	}
	return 0;
}

/* -- all forms ------------------------------------------------------- */

enum body_form {
	FORM_JSON,
	FORM_MULTIPART,
	FORM_RAW,
};

static int
choose_form(struct upload_fields *f, const char *content_type,
    enum body_form *form, char boundary[UPLOAD_BOUNDARY_MAX + 1])
{
	char type[MEDIA_TYPE_MAX], charset[32];
	const char *params;
	int r;

	if (content_type == NULL)
		return fail(f, P8V_ERR_UNSUPPORTED_MEDIA_TYPE, "%s", "a "
		    "Content-Type is required: application/json, "
		    "multipart/form-data, application/x-pem-file or "
		    "application/pkcs8");
	if (media_type_split(content_type, type, &params) != 0)
		goto unsupported;
	if (strcmp(type, "application/json") == 0) {
		*form = FORM_JSON;
		/* RFC 8259: JSON between systems is UTF-8. */
		r = param_find(params, strlen(params), "charset", 1, charset,
		    sizeof(charset));
		if (r < 0)
			goto malformed;
		if (r == 1 && strcasecmp(charset, "utf-8") != 0)
			goto unsupported;
	} else if (strcmp(type, "multipart/form-data") == 0) {
		*form = FORM_MULTIPART;
		r = param_find(params, strlen(params), "boundary", 1, boundary,
		    UPLOAD_BOUNDARY_MAX + 1);
		if (r < 0)
			goto malformed;
		if (r == 0 || boundary[0] == '\0')
			return fail(f, P8V_ERR_BAD_REQUEST, "%s",
			    "multipart/form-data needs a boundary of 1-70 "
			    "characters");
	} else if (strcmp(type, "application/x-pem-file") == 0 ||
	    strcmp(type, "application/pkcs8") == 0) {
		*form = FORM_RAW;
		if (param_find(params, strlen(params), "charset", 1, charset,
		    sizeof(charset)) < 0)
			goto malformed;
	} else {
		goto unsupported;
	}
	return 0;
 malformed:
	return fail(f, P8V_ERR_BAD_REQUEST, "%s", "the Content-Type "
	    "parameters are malformed (or a boundary is longer than 70)");
 unsupported:
	return fail(f, P8V_ERR_UNSUPPORTED_MEDIA_TYPE, "%s", "Content-Type "
	    "must be application/json (UTF-8), multipart/form-data, "
	    "application/x-pem-file or application/pkcs8");
}

int
upload_parse(const char *content_type, const char *content_disposition,
    const uint8_t *body, size_t len, upload_query_fn query, void *query_arg,
    struct upload_fields *out)
{
	char boundary[UPLOAD_BOUNDARY_MAX + 1], detail[UPLOAD_DETAIL_MAX];
	enum body_form form = FORM_JSON;
	const char *v;
	size_t i;
	int r = P8V_ERR_INTERNAL;

	if (out == NULL || query == NULL || (body == NULL && len > 0))
		return P8V_ERR_INVALID_ARGUMENT;
	memset(out, 0, sizeof(*out));
	out->environment = KEY_ENV_BOTH;
	out->activate = 1;
	if ((r = choose_form(out, content_type, &form, boundary)) != 0)
		goto out;
	if (form != FORM_RAW) {
		/* Fields belong in the body; a query parameter named like
		 * one would otherwise be silently ignored. */
		for (i = 0; i < FIELD_COUNT; i++) {
			if (query(query_arg, field_names[i]) != NULL) {
				r = fail(out, P8V_ERR_BAD_REQUEST, "%s belongs "
				    "in the body, not in the query string",
				    field_names[i]);
				goto out;
			}
		}
	}
	switch (form) {
	case FORM_JSON:
		r = parse_json(out, body, len);
		break;
	case FORM_MULTIPART:
		r = parse_multipart(out, boundary, body, len);
		break;
	case FORM_RAW:
		r = parse_raw(out, content_disposition, body, len, query,
		    query_arg);
		break;
	}
	if (r != 0)
		goto out;
	if ((v = query(query_arg, QUERY_FILENAME)) != NULL &&
	    (r = note_filename(out, v, strlen(v))) != 0)
		goto out;
	for (i = 0; i < FIELD_COUNT; i++) {
		if ((i == FIELD_KEY_ID && out->key_id == NULL) ||
		    (i == FIELD_TEAM_ID && out->team_id == NULL) ||
		    (i == FIELD_P8 && out->p8 == NULL)) {
			r = fail(out, P8V_ERR_MISSING_FIELD, "%s is required",
			    field_names[i]);
			goto out;
		}
	}
	if (out->filename_key_id[0] != '\0' &&
	    strcmp(out->filename_key_id, out->key_id) != 0) {
		r = fail(out, P8V_ERR_KEY_ID_MISMATCH, "%s", "the file name "
		    "AuthKey_<KEYID>.p8 names another Key ID than key_id");
		goto out;
	}
	if (out->services == 0)
		out->services = KEY_SERVICE_APNS;
	r = 0;
 out:
	if (r != 0) {
		memcpy(detail, out->detail, sizeof(detail));
		upload_fields_finish(out);
		memcpy(out->detail, detail, sizeof(detail));
	}
	return r;
}

/* -- the handler -------------------------------------------------------- */

static const char *
request_query(void *arg, const char *name)
{
	return api_request_query(arg, name);
}

int
api_upload_handle(struct api_request *req)
{
	struct upload_fields f;
	struct vault_upload up;
	const struct api_backend *backend;
	const uint8_t *body;
	json_t *meta = NULL;
	size_t len = 0;
	int created = 0, r = P8V_ERR_INTERNAL;

	memset(&f, 0, sizeof(f));
	memset(&up, 0, sizeof(up));
	backend = api_request_backend(req);
	if (backend == NULL || backend->vault == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	body = api_request_body(req, &len);
	if ((r = upload_parse(api_request_header(req, "Content-Type"),
	    api_request_header(req, "Content-Disposition"), body, len,
	    request_query, req, &f)) != 0) {
		if (api_respond_error(req, r, f.detail[0] != '\0' ?
		    f.detail : NULL) == 0)
			r = 0;
		goto out;
	}
	up.app = api_request_param(req, "app");
	up.key_id = f.key_id;
	up.team_id = f.team_id;
	up.p8 = f.p8;
	up.p8_len = f.p8_len;
	up.environment = f.environment;
	up.services = f.services;
	up.topics = (const char *const *)f.topics;
	up.n_topics = f.n_topics;
	up.activate = f.activate;
	up.actor = api_request_principal(req)->actor;
	if ((r = vault_key_upload(backend->vault, &up, &meta, &created)) != 0)
		goto out;
	/* Names and a fingerprint only: never the body. */
	log_fields(LOG_LEVEL_INFO, "key_upload", json_pack("{s:O?,s:O?,s:O?,"
	    "s:s,s:b}", "app", json_object_get(meta, "app"), "key_id",
	    json_object_get(meta, "key_id"), "fingerprint",
	    json_object_get(meta, "fingerprint"), "actor", up.actor,
	    "created", created), "key %s", created ? "stored" : "already "
	    "stored");
	r = api_respond(req, created ? 201 : 200, meta);
	meta = NULL;                            /* stolen */
 out:
	json_decref(meta);
	upload_fields_finish(&f);
	return r;
}
