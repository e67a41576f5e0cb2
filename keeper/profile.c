/* profile.c: the rules of the other Apple JWTs; see profile.h. */
#include "keeper/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/ids.h"

/* JSON integers are exact up to 2^53 (RFC 8259 section 6, I-JSON). */
#define JSON_INT_MAX ((int64_t)1 << 53)

static const struct profile_rule profiles[KEEPER_PROFILES] = {
	[KEEPER_PROFILE_APP_STORE_CONNECT] = { "app_store_connect",
	    KEY_SERVICE_APP_STORE_CONNECT,
	    PROFILE_F_EXPIRES | PROFILE_F_ISSUER | PROFILE_F_SCOPE,
	    PROFILE_B_TYP_JWT | PROFILE_B_ISS_UUID | PROFILE_B_EXP | PROFILE_B_AUD_ASC,
	    PROFILE_ASC_EXPIRES_MAX_S, PROFILE_ASC_EXPIRES_MAX_S },
	[KEEPER_PROFILE_SIGN_IN_WITH_APPLE] = { "sign_in_with_apple",
	    KEY_SERVICE_SIGN_IN_WITH_APPLE,
	    PROFILE_F_EXPIRES | PROFILE_F_CLIENT,
	    PROFILE_B_EXP | PROFILE_B_AUD_SIWA | PROFILE_B_SUB,
	    PROFILE_SIWA_EXPIRES_DEFAULT_S, PROFILE_APPLE_EXPIRES_MAX_S },
	[KEEPER_PROFILE_MUSICKIT] = { "musickit", KEY_SERVICE_MUSICKIT,
	    PROFILE_F_EXPIRES | PROFILE_F_ORIGIN,
	    PROFILE_B_EXP,
	    PROFILE_PUBLIC_EXPIRES_DEFAULT_S, PROFILE_APPLE_EXPIRES_MAX_S },
	[KEEPER_PROFILE_WEATHERKIT] = { "weatherkit", KEY_SERVICE_WEATHERKIT,
	    PROFILE_F_EXPIRES | PROFILE_F_SERVICE,
	    PROFILE_B_HDR_ID | PROFILE_B_EXP | PROFILE_B_SUB,
	    PROFILE_WEATHERKIT_EXPIRES_DEFAULT_S,
	    PROFILE_WEATHERKIT_EXPIRES_MAX_S },
	[KEEPER_PROFILE_DEVICECHECK] = { "devicecheck", KEY_SERVICE_DEVICECHECK,
	    0,
	    0,
	    0, 0 },
	[KEEPER_PROFILE_MAPS] = { "maps", KEY_SERVICE_MAPS,
	    PROFILE_F_EXPIRES | PROFILE_F_ORIGIN,
	    PROFILE_B_TYP_JWT | PROFILE_B_EXP,
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

const struct profile_rule *
profile_rule_of(enum keeper_profile_kind kind)
{
	return (unsigned int)kind < N_PROFILES ? &profiles[kind] : NULL;
}

const struct profile_rule *
profile_find(const char *name)
{
	size_t i;

	for (i = 0; i < N_PROFILES; i++)
		if (name != NULL && strcmp(profiles[i].name, name) == 0)
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
int
profile_uuid_ok(const char *s, size_t len)
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
int
profile_id_ok(const char *s, size_t len, int allow_us)
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
int
profile_scope_ok(const char *s, size_t len)
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
int
profile_origin_ok(const char *s, size_t len)
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


/* 1 if buf (size bytes) holds a NUL-terminated string; *len its length. */
static int
bounded(const char *buf, size_t size, size_t *len)
{
	const char *nul = memchr(buf, '\0', size);

	if (nul == NULL)
		return 0;
	*len = (size_t)(nul - buf);
	return 1;
}

/* p's list as a fresh JSON array of copies (NULL when empty). */
static int
list_json(const struct keeper_profile *p, json_t **out)
{
	json_t *a;
	size_t i;

	*out = NULL;
	if (p->n_list == 0)
		return 0;
	if ((a = json_array()) == NULL)
		return P8V_ERR_ALLOC;
	for (i = 0; i < p->n_list; i++) {
		if (json_array_append_new(a, json_string(p->list[i])) != 0) {
			json_decref(a);
			return P8V_ERR_ALLOC;
		}
	}
	*out = a;
	return 0;
}

int
keeper_profile_check(const struct keeper_profile *p)
{
	const struct profile_rule *rule;
	size_t len, i, j, max, item_max;
	int (*ok)(const char *, size_t);
	json_t *list = NULL;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (p == NULL || (rule = profile_rule_of(p->kind)) == NULL)
		goto out;
	if (rule->build & PROFILE_B_EXP) {
		if (p->expires_in < 1 || p->expires_in > rule->expires_max)
			goto out;
	} else if (p->expires_in != 0) {
		goto out;
	}
	if (!bounded(p->issuer_id, sizeof(p->issuer_id), &len))
		goto out;
	if ((rule->fields & PROFILE_F_ISSUER) ?
	    !profile_uuid_ok(p->issuer_id, len) : len != 0)
		goto out;
	if (!bounded(p->subject, sizeof(p->subject), &len))
		goto out;
	if ((rule->fields & (PROFILE_F_CLIENT | PROFILE_F_SERVICE)) ?
	    !profile_id_ok(p->subject, len,
	    (rule->fields & PROFILE_F_CLIENT) != 0) : len != 0)
		goto out;
	if (rule->fields & PROFILE_F_SCOPE) {
		max = PROFILE_SCOPE_MAX;
		item_max = PROFILE_SCOPE_ITEM_MAX;
		ok = profile_scope_ok;
	} else if (rule->fields & PROFILE_F_ORIGIN) {
		max = PROFILE_ORIGIN_MAX;
		item_max = PROFILE_ORIGIN_ITEM_MAX;
		ok = profile_origin_ok;
	} else {
		max = 0;
		item_max = 0;
		ok = NULL;
	}
	if (p->n_list > max)
		goto out;
	for (i = 0; i < p->n_list; i++) {
		if (!bounded(p->list[i], sizeof(p->list[i]), &len) ||
		    len > item_max || !ok(p->list[i], len))
			goto out;
		for (j = 0; j < i; j++)
			if (strcmp(p->list[i], p->list[j]) == 0)
				goto out;
	}
	if (p->n_list > 0) {
		if ((r = list_json(p, &list)) != 0)
			goto out;
		r = P8V_ERR_INVALID_ARGUMENT;
		if (json_dumpb(list, NULL, 0, JSON_COMPACT) >
		    PROFILE_LIST_BYTES_MAX)
			goto out;
	}
	r = 0;
 out:
	json_decref(list);
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
keeper_profile_build(const struct keeper_profile *p, const char *key_id,
    const char *team_id, int64_t now, json_t **header, json_t **claims)
{
	const struct profile_rule *rule;
	json_t *h = NULL, *c = NULL, *list = NULL;
	char id[IDS_APPLE_ID_LEN + 1 + PROFILE_ID_MAX + 1];
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (header != NULL)
		*header = NULL;
	if (claims != NULL)
		*claims = NULL;
	if (p == NULL || key_id == NULL || team_id == NULL || header == NULL ||
	    claims == NULL || (rule = profile_rule_of(p->kind)) == NULL)
		goto out;
	if ((r = keeper_profile_check(p)) != 0)
		goto out;
	r = P8V_ERR_INVALID_ARGUMENT;
	if (now < 0 || now >= JSON_INT_MAX ||
	    now + p->expires_in >= JSON_INT_MAX)
		goto out;
	/* Ids come from a record's authenticated metadata; check again
	 * anyway, since they become token text. */
	if (ids_key_id_valid(key_id) != 0 || ids_team_id_valid(team_id) != 0)
		goto out;

	r = P8V_ERR_ALLOC;
	if ((h = json_object()) == NULL || (c = json_object()) == NULL)
		goto out;
	if ((r = add(h, "alg", json_string("ES256"))) != 0 ||
	    (r = add(h, "kid", json_string(key_id))) != 0)
		goto out;
	if ((rule->build & PROFILE_B_TYP_JWT) &&
	    (r = add(h, "typ", json_string("JWT"))) != 0)
		goto out;
	if (rule->build & PROFILE_B_HDR_ID) {
		/* "TEAMID.SERVICEID": both checked, the buffer fits both. */
		snprintf(id, sizeof(id), "%s.%s", team_id, p->subject);
		if ((r = add(h, "id", json_string(id))) != 0)
			goto out;
	}

	if ((r = add(c, "iss", json_string((rule->build & PROFILE_B_ISS_UUID) ?
	    p->issuer_id : team_id))) != 0 ||
	    (r = add(c, "iat", json_integer(now))) != 0)
		goto out;
	if ((rule->build & PROFILE_B_EXP) &&
	    (r = add(c, "exp", json_integer(now + p->expires_in))) != 0)
		goto out;
	if ((rule->build & PROFILE_B_AUD_ASC) &&
	    (r = add(c, "aud", json_string("appstoreconnect-v1"))) != 0)
		goto out;
	if ((rule->build & PROFILE_B_AUD_SIWA) &&
	    (r = add(c, "aud", json_string("https://appleid.apple.com"))) != 0)
		goto out;
	if ((rule->build & PROFILE_B_SUB) &&
	    (r = add(c, "sub", json_string(p->subject))) != 0)
		goto out;
	if (p->n_list > 0) {
		if ((r = list_json(p, &list)) != 0)
			goto out;
		r = add(c, (rule->fields & PROFILE_F_SCOPE) ? "scope" : "origin",
		    list);
		list = NULL;
		if (r != 0)
			goto out;
	}
	*header = h;
	*claims = c;
	h = c = NULL;
	r = 0;
 out:
	json_decref(h);
	json_decref(c);
	json_decref(list);
	return r;
}
