/* profiles.c: validators and builders of the non-APNs Apple JWTs. */
#include "vault/profiles.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "store/ids.h"
#include "vault/vault_internal.h"

/* JSON integers are exact up to 2^53 (RFC 8259 section 6, I-JSON). */
#define JSON_INT_MAX ((int64_t)1 << 53)
/* Longest HTTP method in a scope entry ("DELETE"). */
#define SCOPE_METHOD_MAX 6

/* What a profile takes beyond "profile" and "environment". */
#define F_EXPIRES  0x01u   /* "expires_in" */
#define F_ISSUER   0x02u   /* "issuer_id" (required) */
#define F_CLIENT   0x04u   /* "client_id" (required) */
#define F_SERVICE  0x08u   /* "service_id" (required) */
#define F_SCOPE    0x10u   /* "scope" (optional) */
#define F_ORIGIN   0x20u   /* "origin" (optional) */

/* Header and claim members a builder adds beyond alg, kid, iss, iat. */
#define B_TYP_JWT  0x01u   /* header "typ":"JWT" */
#define B_HDR_ID   0x02u   /* header "id":"TEAM.SERVICE_ID" */
#define B_EXP      0x04u   /* claim "exp" */
#define B_AUD_ASC  0x08u   /* claim "aud":"appstoreconnect-v1" */
#define B_AUD_SIWA 0x10u   /* claim "aud":"https://appleid.apple.com" */
#define B_SUB      0x20u   /* claim "sub": client or service id */
#define B_ISS_UUID 0x40u   /* claim "iss" is the issuer id, not the team */

struct profile {
	const char *name;
	uint32_t service;          /* KEY_SERVICE_* bit */
	unsigned int fields;       /* F_* */
	unsigned int build;        /* B_* */
	int64_t expires_default;   /* seconds; 0 when there is no exp */
	int64_t expires_max;
};

static const struct profile profiles[] = {
	{ "app_store_connect", KEY_SERVICE_APP_STORE_CONNECT,
	    F_EXPIRES | F_ISSUER | F_SCOPE,
	    B_TYP_JWT | B_ISS_UUID | B_EXP | B_AUD_ASC,
	    PROFILE_ASC_EXPIRES_MAX_S, PROFILE_ASC_EXPIRES_MAX_S },
	{ "sign_in_with_apple", KEY_SERVICE_SIGN_IN_WITH_APPLE,
	    F_EXPIRES | F_CLIENT,
	    B_EXP | B_AUD_SIWA | B_SUB,
	    PROFILE_SIWA_EXPIRES_DEFAULT_S, PROFILE_APPLE_EXPIRES_MAX_S },
	{ "musickit", KEY_SERVICE_MUSICKIT,
	    F_EXPIRES | F_ORIGIN,
	    B_EXP,
	    PROFILE_PUBLIC_EXPIRES_DEFAULT_S, PROFILE_APPLE_EXPIRES_MAX_S },
	{ "weatherkit", KEY_SERVICE_WEATHERKIT,
	    F_EXPIRES | F_SERVICE,
	    B_HDR_ID | B_EXP | B_SUB,
	    PROFILE_WEATHERKIT_EXPIRES_DEFAULT_S,
	    PROFILE_WEATHERKIT_EXPIRES_MAX_S },
	{ "devicecheck", KEY_SERVICE_DEVICECHECK,
	    0,
	    0,
	    0, 0 },
	{ "maps", KEY_SERVICE_MAPS,
	    F_EXPIRES | F_ORIGIN,
	    B_TYP_JWT | B_EXP,
	    PROFILE_PUBLIC_EXPIRES_DEFAULT_S, PROFILE_MAPS_EXPIRES_MAX_S },
};

#define N_PROFILES (sizeof(profiles) / sizeof(profiles[0]))

size_t
profile_count(void)
{
	return N_PROFILES;
}

const char *
profile_name(size_t i)
{
	return i < N_PROFILES ? profiles[i].name : NULL;
}

static const struct profile *
find_profile(const char *name)
{
	size_t i;

	for (i = 0; i < N_PROFILES; i++)
		if (strcmp(profiles[i].name, name) == 0)
			return &profiles[i];
	return NULL;
}

static int
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

static int
is_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z');
}

/* 8-4-4-4-12 hex digits. */
static int
uuid_ok(const char *s, size_t len)
{
	size_t i;

	if (len != PROFILE_UUID_LEN)
		return 0;
	for (i = 0; i < len; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!is_hex(s[i])) {
			return 0;
		}
	}
	return 1;
}

/* 1..PROFILE_ID_MAX characters of [A-Za-z0-9.-], plus '_' if allow_us. */
static int
id_ok(const char *s, size_t len, int allow_us)
{
	size_t i;

	if (len == 0 || len > PROFILE_ID_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '-' &&
		    !(allow_us && s[i] == '_'))
			return 0;
	return 1;
}

/*
 * "METHOD /path": an HTTP method App Store Connect's API uses, one space,
 * then a path (with an optional query) of printable ASCII without spaces,
 * e.g. "GET /v1/apps?filter[platform]=IOS".
 */
static int
scope_ok(const char *s, size_t len)
{
	static const char *const methods[] = {
		"GET", "POST", "PATCH", "PUT", "DELETE",
	};
	size_t i, m;

	if (len == 0 || len > PROFILE_SCOPE_ITEM_MAX)
		return 0;
	for (m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
		size_t n = strlen(methods[m]);

		if (len > n + 1 && memcmp(s, methods[m], n) == 0 &&
		    s[n] == ' ' && s[n + 1] == '/')
			break;
	}
	if (m == sizeof(methods) / sizeof(methods[0]))
		return 0;
	for (i = strlen(methods[m]) + 1; i < len; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return 0;
	return 1;
}

/*
 * "https://" DNS-name [":" port]: labels of 1..63 [A-Za-z0-9-] not starting
 * or ending with '-', at most 253 characters; port 1..65535 without leading
 * zeros; no path, query, user info or trailing dot.
 */
static int
origin_ok(const char *s, size_t len)
{
	static const char scheme[] = "https://";
	size_t i, host_end, label = 0;
	unsigned long port = 0;

	if (len <= sizeof(scheme) - 1 || len > PROFILE_ORIGIN_ITEM_MAX ||
	    memcmp(s, scheme, sizeof(scheme) - 1) != 0)
		return 0;
	s += sizeof(scheme) - 1;
	len -= sizeof(scheme) - 1;
	for (host_end = 0; host_end < len && s[host_end] != ':'; host_end++)
		;
	if (host_end == 0 || host_end > 253)
		return 0;
	for (i = 0; i < host_end; i++) {
		if (s[i] == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
		} else if (is_alnum(s[i]) || s[i] == '-') {
			if (label == 0 && s[i] == '-')
				return 0;
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	if (label == 0 || s[host_end - 1] == '-')
		return 0;                       /* empty last label, "a-" */
	if (host_end == len)
		return 1;
	/* ":" port */
	if (len - host_end < 2 || len - host_end > 6 || s[host_end + 1] == '0')
		return 0;
	for (i = host_end + 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		port = port * 10 + (unsigned long)(s[i] - '0');
	}
	return port >= 1 && port <= 65535;
}

/* A JSON string of at most max bytes without NUL: its text and length. */
static int
get_string(const json_t *v, size_t max, const char **s, size_t *len)
{
	if (!json_is_string(v))
		return 0;
	*s = json_string_value(v);
	*len = json_string_length(v);
	/* jansson allows an embedded NUL ("\u0000"); nothing here may. */
	return *len <= max && strlen(*s) == *len;
}

/*
 * A JSON array of 1..max strings, each accepted by ok, of at most
 * PROFILE_LIST_BYTES_MAX as compact JSON (as the token will carry it);
 * *out gets a fresh array of copies. Duplicates are refused: a list of
 * permissions or origins with a repeated entry is a caller's mistake, not
 * a wish.
 */
static int
parse_list(const json_t *v, size_t max, size_t item_max,
    int (*ok)(const char *, size_t), json_t **out)
{
	json_t *list = NULL;
	const char *s;
	size_t i, j, len;
	int r = P8V_ERR_BAD_FIELD;

	*out = NULL;
	if (!json_is_array(v) || json_array_size(v) == 0 ||
	    json_array_size(v) > max)
		goto out;
	if ((list = json_array()) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < json_array_size(v); i++) {
		if (!get_string(json_array_get(v, i), item_max, &s, &len) ||
		    !ok(s, len))
			goto out;
		for (j = 0; j < i; j++)
			if (json_equal(json_array_get(v, j),
			    json_array_get(v, i)))
				goto out;
		if (json_array_append_new(list, json_stringn(s, len)) != 0) {
			r = P8V_ERR_ALLOC;
			goto out;
		}
	}
	if (json_dumpb(list, NULL, 0, JSON_COMPACT) > PROFILE_LIST_BYTES_MAX)
		goto out;
	*out = list;
	list = NULL;
	r = 0;
 out:
	json_decref(list);
	return r;
}

void
profile_request_finish(struct profile_request *req)
{
	if (req == NULL)
		return;
	json_decref(req->list);
	memset(req, 0, sizeof(*req));
}

int
profile_parse(const json_t *request, struct profile_request *out,
    const char **detail)
{
	const struct profile *p;
	const char *name, *s, *member, *why = NULL;
	const json_t *v;
	json_t *val;
	size_t len;
	json_int_t n;
	enum key_env env;
	unsigned int want = 0;
	int e, r = P8V_ERR_BAD_FIELD;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (request == NULL || !json_is_object(request) || out == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	v = json_object_get(request, "profile");
	if (v == NULL) {
		r = P8V_ERR_MISSING_FIELD;
		why = "\"profile\" is required";
		goto out;
	}
	if (!get_string(v, PROFILE_NAME_MAX, &name, &len) ||
	    (p = find_profile(name)) == NULL) {
		why = "\"profile\" must be one of app_store_connect, "
		    "sign_in_with_apple, musickit, weatherkit, devicecheck, "
		    "maps";
		goto out;
	}
	out->profile = p->name;
	out->service = p->service;
	out->environment = KEY_ENV_BOTH;
	out->expires_in = p->expires_default;

	/* Every member must be one this profile takes. */
	json_object_foreach((json_t *)request, member, val) {
		if (strcmp(member, "profile") == 0)
			continue;
		if (strcmp(member, "environment") == 0) {
			if (!get_string(val, PROFILE_NAME_MAX, &s, &len) ||
			    key_env_from_name(s, &env) != 0 ||
			    env == KEY_ENV_BOTH) {
				why = "\"environment\" must be \"development\" "
				    "or \"production\"";
				goto out;
			}
			out->environment = env;
		} else if (strcmp(member, "expires_in") == 0 &&
		    (p->fields & F_EXPIRES)) {
			/* An integer, not 60.0 or "60" or true. */
			if (!json_is_integer(val) ||
			    (n = json_integer_value(val)) < 1 ||
			    n > p->expires_max) {
				why = "\"expires_in\" must be an integer "
				    "number of seconds within this profile's "
				    "limit";
				goto out;
			}
			out->expires_in = n;
		} else if (strcmp(member, "issuer_id") == 0 &&
		    (p->fields & F_ISSUER)) {
			if (!get_string(val, PROFILE_UUID_LEN, &s, &len) ||
			    !uuid_ok(s, len)) {
				why = "\"issuer_id\" must be a UUID "
				    "(8-4-4-4-12 hex digits)";
				goto out;
			}
			memcpy(out->issuer_id, s, len + 1);
			want |= F_ISSUER;
		} else if (strcmp(member, "client_id") == 0 &&
		    (p->fields & F_CLIENT)) {
			if (!get_string(val, PROFILE_ID_MAX, &s, &len) ||
			    !id_ok(s, len, 1)) {
				why = "\"client_id\" must be 1-255 characters "
				    "of [A-Za-z0-9._-]";
				goto out;
			}
			memcpy(out->subject, s, len + 1);
			want |= F_CLIENT;
		} else if (strcmp(member, "service_id") == 0 &&
		    (p->fields & F_SERVICE)) {
			if (!get_string(val, PROFILE_ID_MAX, &s, &len) ||
			    !id_ok(s, len, 0)) {
				why = "\"service_id\" must be 1-255 characters "
				    "of [A-Za-z0-9.-]";
				goto out;
			}
			memcpy(out->subject, s, len + 1);
			want |= F_SERVICE;
		} else if (strcmp(member, "scope") == 0 &&
		    (p->fields & F_SCOPE)) {
			if ((e = parse_list(val, PROFILE_SCOPE_MAX,
			    PROFILE_SCOPE_ITEM_MAX, scope_ok,
			    &out->list)) != 0) {
				r = e;
				why = "\"scope\" must be an array of 1-32 "
				    "distinct \"METHOD /path\" strings of at "
				    "most 256 printable characters, at most "
				    "2048 bytes as JSON in all";
				goto out;
			}
		} else if (strcmp(member, "origin") == 0 &&
		    (p->fields & F_ORIGIN)) {
			if ((e = parse_list(val, PROFILE_ORIGIN_MAX,
			    PROFILE_ORIGIN_ITEM_MAX, origin_ok,
			    &out->list)) != 0) {
				r = e;
				why = "\"origin\" must be an array of 1-16 "
				    "distinct https origins "
				    "(\"https://host[:port]\"), at most 2048 "
				    "bytes as JSON in all";
				goto out;
			}
		} else {
			r = P8V_ERR_UNKNOWN_FIELD;
			why = "a member is not known for this profile "
			    "(see docs/api.md for each profile's fields)";
			goto out;
		}
	}
	r = P8V_ERR_MISSING_FIELD;
	if ((p->fields & F_ISSUER) && !(want & F_ISSUER)) {
		why = "\"issuer_id\" is required";
		goto out;
	}
	if ((p->fields & F_CLIENT) && !(want & F_CLIENT)) {
		why = "\"client_id\" is required";
		goto out;
	}
	if ((p->fields & F_SERVICE) && !(want & F_SERVICE)) {
		why = "\"service_id\" is required";
		goto out;
	}
	r = 0;
 out:
	if (r == 0 || r == P8V_ERR_ALLOC || r == P8V_ERR_INVALID_ARGUMENT)
		why = NULL;
	if (r != 0 && out != NULL)
		profile_request_finish(out);
	if (detail != NULL)
		*detail = why;
	return r;
}

/* Member by member, in the documented order; steals v. */
static int
add(json_t *obj, const char *name, json_t *v)
{
	return v == NULL || json_object_set_new(obj, name, v) != 0 ?
	    P8V_ERR_ALLOC : 0;
}

int
profile_build(const struct profile_request *req, const struct key_record *rec,
    int64_t now, json_t **header, json_t **claims)
{
	const struct profile *p;
	json_t *h = NULL, *c = NULL;
	char id[IDS_APPLE_ID_LEN + 1 + PROFILE_ID_MAX + 1];
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (header != NULL)
		*header = NULL;
	if (claims != NULL)
		*claims = NULL;
	if (req == NULL || rec == NULL || header == NULL || claims == NULL ||
	    req->profile == NULL || (p = find_profile(req->profile)) == NULL ||
	    p->name != req->profile)
		goto out;
	if (now < 0 || now >= JSON_INT_MAX ||
	    req->expires_in < 0 || req->expires_in > p->expires_max ||
	    ((p->build & B_EXP) && req->expires_in == 0) ||
	    now + req->expires_in >= JSON_INT_MAX)
		goto out;
	/* Ids come from a record the vault read and checked; check again
	 * anyway, since they become token text. */
	if (ids_key_id_valid(rec->key_id) != 0 ||
	    ids_team_id_valid(rec->team_id) != 0)
		goto out;
	if (((p->build & B_ISS_UUID) &&
	    !uuid_ok(req->issuer_id, strlen(req->issuer_id))) ||
	    ((p->build & (B_SUB | B_HDR_ID)) &&
	    !id_ok(req->subject, strlen(req->subject), !(p->build & B_HDR_ID))))
		goto out;

	r = P8V_ERR_ALLOC;
	if ((h = json_object()) == NULL || (c = json_object()) == NULL)
		goto out;
	if ((r = add(h, "alg", json_string("ES256"))) != 0 ||
	    (r = add(h, "kid", json_string(rec->key_id))) != 0)
		goto out;
	if ((p->build & B_TYP_JWT) &&
	    (r = add(h, "typ", json_string("JWT"))) != 0)
		goto out;
	if (p->build & B_HDR_ID) {
		/* "TEAMID.SERVICEID": both checked, the buffer fits both. */
		snprintf(id, sizeof(id), "%s.%s", rec->team_id, req->subject);
		if ((r = add(h, "id", json_string(id))) != 0)
			goto out;
	}

	if ((r = add(c, "iss", json_string((p->build & B_ISS_UUID) ?
	    req->issuer_id : rec->team_id))) != 0 ||
	    (r = add(c, "iat", json_integer(now))) != 0)
		goto out;
	if ((p->build & B_EXP) &&
	    (r = add(c, "exp", json_integer(now + req->expires_in))) != 0)
		goto out;
	if ((p->build & B_AUD_ASC) &&
	    (r = add(c, "aud", json_string("appstoreconnect-v1"))) != 0)
		goto out;
	if ((p->build & B_AUD_SIWA) &&
	    (r = add(c, "aud", json_string("https://appleid.apple.com"))) != 0)
		goto out;
	if ((p->build & B_SUB) &&
	    (r = add(c, "sub", json_string(req->subject))) != 0)
		goto out;
	if (req->list != NULL) {
		/* A deep copy: the token never shares the request's objects. */
		if ((r = add(c, (p->fields & F_SCOPE) ? "scope" : "origin",
		    json_deep_copy(req->list))) != 0)
			goto out;
	}
	*header = h;
	*claims = c;
	h = c = NULL;
	r = 0;
 out:
	json_decref(h);
	json_decref(c);
	return r;
}

/* vault_sign_app's builder: arg is the validated request. */
static int
build_cb(const struct key_record *rec, int64_t now, json_t **header,
    json_t **claims, void *arg)
{
	return profile_build(arg, rec, now, header, claims);
}

int
vault_profile_token(struct vault *v, const char *app, const json_t *request,
    const char *actor, struct vault_token *out, const char **detail)
{
	struct profile_request req;
	int r = P8V_ERR_INTERNAL;

	memset(&req, 0, sizeof(req));
	if (detail != NULL)
		*detail = NULL;
	if (v == NULL || app == NULL || out == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	memset(out, 0, sizeof(*out));
	if ((r = profile_parse(request, &req, detail)) != 0)
		goto out;
	if ((r = vault_sign_app(v, app, req.environment, req.service,
	    build_cb, &req, actor, out)) != 0)
		goto out;
	r = 0;
 out:
	profile_request_finish(&req);
	return r;
}
