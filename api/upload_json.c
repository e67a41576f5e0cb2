/*
 * upload_json.c: the JSON form of an upload.
 *
 * The "p8" member is cut out of the document by a small scanner before
 * jansson parses the rest, so that the key lands only in guarded memory:
 * jansson copies strings to the ordinary heap, and its lexer frees its
 * buffers without wiping them (wiping jansson's result afterwards would
 * come too late). The scanner validates the p8 string exactly as jansson
 * would (jansson never sees it); jansson validates everything else.
 *
 * A key sent anywhere else ({"P8": ...}, {"p8": [...]}, nested) would go
 * to jansson's heap; so the scanner also decodes every other string of the
 * document, member names included, and refuses the whole body
 * (P8V_ERR_P8_MISPLACED) before jansson sees any of it if one holds PEM
 * armour ("-----BEGIN" or "-----END", in any letter case, however
 * escaped).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/upload_json.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/secmem.h"

/* Longest JSON member name that can still decode to "p8": two characters
 * written as a \uXXXX escape each. */
#define JSON_P8_KEY_RAW_MAX 12

/* A PEM boundary starts with one of these (RFC 7468 section 2); both
 * are looked for, so that a key cut into lines is caught by either end. */
#define PEM_ARMOUR_BEGIN "-----BEGIN"
#define PEM_ARMOUR_END "-----END"
/* The longer of the two. */
#define PEM_ARMOUR_MAX (sizeof(PEM_ARMOUR_BEGIN) - 1)

/* A cursor over JSON text. */
struct jscan {
	const uint8_t *s;
	size_t len;
	size_t pos;
	int armour;     /* a string scanned for it held PEM armour */
};

/* The last PEM_ARMOUR_MAX decoded bytes of a string, to find armour in
 * it whatever escapes spelled it. */
struct armour_watch {
	uint8_t tail[PEM_ARMOUR_MAX];
	size_t n;
	int found;
};

static int
tail_is(const struct armour_watch *w, const char *word)
{
	size_t len = strlen(word), i;
	uint8_t c;

	if (w->n < len)
		return 0;
	for (i = 0; i < len; i++) {
		c = w->tail[PEM_ARMOUR_MAX - len + i];
		if (c >= 'a' && c <= 'z')
			c = (uint8_t)(c - 'a' + 'A');
		if (c != (uint8_t)word[i])
			return 0;
	}
	return 1;
}

static void
armour_push(struct armour_watch *w, const uint8_t *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		memmove(w->tail, w->tail + 1, PEM_ARMOUR_MAX - 1);
		w->tail[PEM_ARMOUR_MAX - 1] = b[i];
		if (w->n < PEM_ARMOUR_MAX)
			w->n++;
		/* BEGIN ends in N, END in D: compare only there. */
		if (((b[i] | 0x20) == 'n' && tail_is(w, PEM_ARMOUR_BEGIN)) ||
		    ((b[i] | 0x20) == 'd' && tail_is(w, PEM_ARMOUR_END)))
			w->found = 1;
	}
}

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
 * grows). Without out, the decoded text is searched for PEM armour, and
 * sc->armour set if it holds some. On return sc->pos is past the closing
 * quote.
 * Returns 0 or P8V_ERR_BAD_REQUEST.
 */
static int
scan_string(struct jscan *sc, uint8_t *out, size_t *out_len,
    struct armour_watch *w)
{
	uint8_t one[4];
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
			else
				armour_push(w, sc->s + sc->pos, n);
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
		if (out != NULL) {
			o += utf8_put(out + o, cp);
		} else {
			armour_push(w, one, utf8_put(one, cp));
			o++;
		}
	}
	sc->pos++;
	if (w->found)
		sc->armour = 1;
	if (out_len != NULL)
		*out_len = o;
	return 0;
}

/* scan_string with its watch, wiped after (it holds the last bytes of a
 * string that may be a misplaced key). */
static int
json_scan_string(struct jscan *sc, uint8_t *out, size_t *out_len)
{
	struct armour_watch watch = { { 0 }, 0, 0 };
	int r;

	r = scan_string(sc, out, out_len, &watch);
	secmem_wipe(&watch, sizeof(watch));
	return r;
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
 * is left to jansson, unless a string of it holds PEM armour.
 * Returns 0, P8V_ERR_BAD_REQUEST, P8V_ERR_P8_MISPLACED, P8V_ERR_SECMEM,
 * P8V_ERR_ALLOC.
 */
static int
json_cut_p8(struct upload_fields *f, const uint8_t *s, size_t len,
    char **rest, size_t *rest_len)
{
	struct jscan sc = { s, len, 0, 0 };
	size_t key_start, vstart = 0, vend = 0, klen, raw;
	uint8_t key[JSON_P8_KEY_RAW_MAX];
	int is_p8, armour, r;

	*rest = NULL;
	json_skip_ws(&sc);
	if (sc.pos >= len || s[sc.pos] != '{')
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s",
		    "the body is not a JSON object");
	sc.pos++;
	json_skip_ws(&sc);
	if (sc.pos < len && s[sc.pos] == '}')
		goto end;
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
				return upload_fail(f, P8V_ERR_BAD_REQUEST,
				    "member %s appears twice", "p8");
			vstart = sc.pos;
			armour = sc.armour;     /* the one place for it */
			if ((r = json_scan_string(&sc, NULL, NULL)) != 0)
				goto bad;
			sc.armour = armour;
			vend = sc.pos;
			raw = vend - vstart - 2;
			if ((f->p8 = secmem_alloc_short(raw > 0 ? raw :
			    1)) == NULL)
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
 end:
	/* jansson would lex what follows the object (into its heap) before
	 * it refused it: refuse it here. */
	sc.pos++;
	json_skip_ws(&sc);
	if (sc.pos != len)
		goto bad;
	if (sc.armour)
		return upload_fail(f, P8V_ERR_P8_MISPLACED, "%s", "PEM text "
		    "was found outside the string member p8 of the top-level "
		    "object; refused unread");
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
	return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "the body is not "
	    "valid JSON");
}

/* A boolean member: true or false, or the integers 1 and 0 (as forms
 * take "1" and "0"). Another type is 400, another integer 422. */
static int
json_bool(struct upload_fields *f, enum field which, const json_t *v,
    int *out)
{
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return 0;
	}
	if (!json_is_integer(v))
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s has the wrong "
		    "JSON type: true, false, 1 or 0", upload_field_names[which]);
	if (json_integer_value(v) != 0 && json_integer_value(v) != 1)
		return upload_fail(f, P8V_ERR_BAD_FIELD, "%s must be true, "
		    "false, 1 or 0", upload_field_names[which]);
	*out = json_integer_value(v) == 1;
	return 0;
}

static int
json_string_list(struct upload_fields *f, enum field which, json_t *v,
    int (*add)(struct upload_fields *, const char *, size_t))
{
	json_t *item;
	size_t i;
	int r;

	if (!json_is_array(v))
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s must be an "
		    "array of strings", upload_field_names[which]);
	json_array_foreach(v, i, item) {
		if (!json_is_string(item))
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s must be "
			    "an array of strings", upload_field_names[which]);
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
		return upload_dup_text(f, which, json_string_value(v),
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
		return upload_set_environment(f, json_string_value(v),
		    json_string_length(v));
	case FIELD_SERVICES:
		if (json_is_array(v) && json_array_size(v) == 0)
			return upload_fail(f, P8V_ERR_BAD_FIELD, "%s must name "
			    "at least one service", "services");
		return json_string_list(f, which, v, upload_add_service);
	case FIELD_TOPICS:
		return json_string_list(f, which, v, upload_add_topic);
	case FIELD_ACTIVATE:
		return json_bool(f, which, v, &f->activate);
	case FIELD_CHECK:
		return json_bool(f, which, v, &f->check);
	case FIELD_COUNT:
		return P8V_ERR_INTERNAL;
	}
	return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s has the wrong JSON type",
	    upload_field_names[which]);
}

int
upload_parse_json(struct upload_fields *f, const uint8_t *body, size_t len)
{
	json_error_t jerr;
	json_t *obj = NULL, *v;
	const char *name;
	char *rest = NULL;
	size_t rest_len = 0;
	int which, r = P8V_ERR_INTERNAL;

	if (len == 0) {
		r = upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "the body is "
		    "empty");
		goto out;
	}
	if ((r = json_cut_p8(f, body, len, &rest, &rest_len)) != 0)
		goto out;
	/* Duplicate members are ambiguous (which did the portal mean?). */
	if ((obj = json_loadb(rest, rest_len, JSON_REJECT_DUPLICATES,
	    &jerr)) == NULL) {
		/* jerr.text may quote input: not for the client. */
		r = upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "the body is not "
		    "valid JSON, or holds a member twice");
		goto out;
	}
	if (!json_is_object(obj)) {
		r = upload_fail(f, P8V_ERR_BAD_REQUEST, "%s",
		    "the body is not a JSON object");
		goto out;
	}
	json_object_foreach(obj, name, v) {
		if ((which = upload_field_lookup(name, strlen(name))) ==
		    FIELD_COUNT) {
			r = upload_fail(f, P8V_ERR_UNKNOWN_FIELD, "%s",
			    "unknown member; known: key_id, team_id, p8, "
			    "environment, services, topics, activate, check");
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

