/* profiles.c: parsing the requests of the non-APNs Apple JWTs into the
 * keeper's fixed struct (the rules are keeper/profile.c's). */
#include "vault/profiles.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/charclass.h"
#include "common/err.h"
#include "common/ids.h"
#include "keeper/profile.h"
#include "vault/vault_internal.h"

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
 * PROFILE_LIST_BYTES_MAX as compact JSON (as the token will carry it),
 * copied into f's list. Duplicates are refused: a list of permissions or
 * origins with a repeated entry is a caller's mistake, not a wish.
 */
static int
parse_list(const json_t *v, size_t max, size_t item_max,
    int (*ok)(const char *, size_t), struct keeper_profile *f)
{
	const char *s;
	size_t i, j, len;
	int r = P8V_ERR_BAD_FIELD;

	f->n_list = 0;
	if (!json_is_array(v) || json_array_size(v) == 0 ||
	    json_array_size(v) > max || max > PROFILE_LIST_MAX ||
	    item_max > PROFILE_LIST_ITEM_MAX)
		goto out;
	for (i = 0; i < json_array_size(v); i++) {
		if (!get_string(json_array_get(v, i), item_max, &s, &len) ||
		    !ok(s, len))
			goto out;
		for (j = 0; j < i; j++)
			if (json_equal(json_array_get(v, j),
			    json_array_get(v, i)))
				goto out;
		memcpy(f->list[i], s, len + 1);
		f->n_list = i + 1;
	}
	if (json_dumpb(v, NULL, 0, JSON_COMPACT) > PROFILE_LIST_BYTES_MAX)
		goto out;
	r = 0;
 out:
	if (r != 0)
		f->n_list = 0;
	return r;
}

/*
 * Zero req up to its list: the list's items past n_list are never read,
 * and the 8.6 KiB of them zeroed three times per request were 8% of a
 * /jwt request's instructions (callgrind).
 */
static void
request_clear(struct profile_request *req)
{
	memset(req, 0, offsetof(struct profile_request, f) +
	    offsetof(struct keeper_profile, list));
}

void
profile_request_finish(struct profile_request *req)
{
	if (req == NULL)
		return;
	request_clear(req);
}

int
profile_parse(const json_t *request, struct profile_request *out,
    const char **detail)
{
	const struct profile_rule *p;
	const char *name, *s, *member, *why = NULL;
	const json_t *v;
	json_t *val;
	size_t len;
	json_int_t n;
	enum key_env env;
	unsigned int want = 0;
	int e, r = P8V_ERR_BAD_FIELD;

	if (out != NULL)
		request_clear(out);
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
	    (p = profile_find(name)) == NULL) {
		why = "\"profile\" must be one of app_store_connect, "
		    "sign_in_with_apple, musickit, weatherkit, devicecheck, "
		    "maps";
		goto out;
	}
	out->profile = p->name;
	out->service = p->service;
	out->environment = KEY_ENV_BOTH;
	out->f.kind = (enum keeper_profile_kind)(p - profile_rule_of(0));
	out->f.expires_in = p->expires_default;

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
		    (p->fields & PROFILE_F_EXPIRES)) {
			/* An integer, not 60.0 or "60" or true. */
			if (!json_is_integer(val) ||
			    (n = json_integer_value(val)) < 1 ||
			    n > p->expires_max) {
				why = "\"expires_in\" must be an integer "
				    "number of seconds within this profile's "
				    "limit";
				goto out;
			}
			out->f.expires_in = n;
		} else if (strcmp(member, "issuer_id") == 0 &&
		    (p->fields & PROFILE_F_ISSUER)) {
			if (!get_string(val, PROFILE_UUID_LEN, &s, &len) ||
			    !profile_uuid_ok(s, len)) {
				why = "\"issuer_id\" must be a UUID "
				    "(8-4-4-4-12 hex digits)";
				goto out;
			}
			memcpy(out->f.issuer_id, s, len + 1);
			want |= PROFILE_F_ISSUER;
		} else if (strcmp(member, "client_id") == 0 &&
		    (p->fields & PROFILE_F_CLIENT)) {
			if (!get_string(val, PROFILE_ID_MAX, &s, &len) ||
			    !profile_id_ok(s, len, 1)) {
				why = "\"client_id\" must be 1-255 characters "
				    "of [A-Za-z0-9._-]";
				goto out;
			}
			memcpy(out->f.subject, s, len + 1);
			want |= PROFILE_F_CLIENT;
		} else if (strcmp(member, "service_id") == 0 &&
		    (p->fields & PROFILE_F_SERVICE)) {
			if (!get_string(val, PROFILE_ID_MAX, &s, &len) ||
			    !profile_id_ok(s, len, 0)) {
				why = "\"service_id\" must be 1-255 characters "
				    "of [A-Za-z0-9.-]";
				goto out;
			}
			memcpy(out->f.subject, s, len + 1);
			want |= PROFILE_F_SERVICE;
		} else if (strcmp(member, "scope") == 0 &&
		    (p->fields & PROFILE_F_SCOPE)) {
			if ((e = parse_list(val, PROFILE_SCOPE_MAX,
			    PROFILE_SCOPE_ITEM_MAX, profile_scope_ok,
			    &out->f)) != 0) {
				r = e;
				why = "\"scope\" must be an array of 1-32 "
				    "distinct \"METHOD /path\" strings of at "
				    "most 256 printable characters, at most "
				    "2048 bytes as JSON in all";
				goto out;
			}
		} else if (strcmp(member, "origin") == 0 &&
		    (p->fields & PROFILE_F_ORIGIN)) {
			if ((e = parse_list(val, PROFILE_ORIGIN_MAX,
			    PROFILE_ORIGIN_ITEM_MAX, profile_origin_ok,
			    &out->f)) != 0) {
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
	if ((p->fields & PROFILE_F_ISSUER) && !(want & PROFILE_F_ISSUER)) {
		why = "\"issuer_id\" is required";
		goto out;
	}
	if ((p->fields & PROFILE_F_CLIENT) && !(want & PROFILE_F_CLIENT)) {
		why = "\"client_id\" is required";
		goto out;
	}
	if ((p->fields & PROFILE_F_SERVICE) && !(want & PROFILE_F_SERVICE)) {
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

int
profile_build(const struct profile_request *req,
    const struct key_record *rec, int64_t now, json_t **header,
    json_t **claims)
{
	const struct profile_rule *p;

	if (header != NULL)
		*header = NULL;
	if (claims != NULL)
		*claims = NULL;
	/* Only a request profile_parse made: its name is the table's. */
	if (req == NULL || rec == NULL || req->profile == NULL ||
	    (p = profile_rule_of(req->f.kind)) == NULL ||
	    p->name != req->profile)
		return P8V_ERR_INVALID_ARGUMENT;
	return keeper_profile_build(&req->f, rec->key_id, rec->team_id, now,
	    header, claims);
}

static int
profile_token(struct vault *v, const char *app, const json_t *request,
    const char *actor, struct vault_token *out, const char **detail,
    int may_wait, struct keeper_pipe *pipe, vault_token_done done, void *arg)
{
	struct profile_request req;
	int r = P8V_ERR_INTERNAL;

	request_clear(&req);
	if (detail != NULL)
		*detail = NULL;
	if (v == NULL || app == NULL || out == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	memset(out, 0, sizeof(*out));
	if ((r = profile_parse(request, &req, detail)) != 0)
		goto out;
	/* A DeviceCheck token is an APNs provider token, header and claims:
	 * signing one afresh per request would hand out new APNs tokens
	 * outside the shared cache, unaudited, and burn the team's token
	 * updates. It is the shared APNs token instead. */
	if (req.service == KEY_SERVICE_DEVICECHECK && !may_wait)
		r = vault_devicecheck_token_cached(v, app, req.environment,
		    out);
	else if (req.service == KEY_SERVICE_DEVICECHECK)
		r = vault_devicecheck_token(v, app, req.environment, actor,
		    out);
	else if (pipe != NULL)
		r = vault_sign_app_start(v, app, req.environment, &req.f,
		    actor, pipe, done, arg, out);
	else
		r = vault_sign_app(v, app, req.environment, &req.f, actor,
		    out);
	if (r != 0)
		goto out;
	r = 0;
 out:
	profile_request_finish(&req);
	return r;
}

int
vault_profile_token(struct vault *v, const char *app, const json_t *request,
    const char *actor, struct vault_token *out, const char **detail)
{
	return profile_token(v, app, request, actor, out, detail, 1, NULL,
	    NULL, NULL);
}

int
vault_profile_token_nowait(struct vault *v, const char *app,
    const json_t *request, const char *actor, struct vault_token *out,
    const char **detail)
{
	return profile_token(v, app, request, actor, out, detail, 0, NULL,
	    NULL, NULL);
}

int
vault_profile_token_start(struct vault *v, const char *app,
    const json_t *request, const char *actor, struct keeper_pipe *pipe,
    vault_token_done done, void *arg, struct vault_token *out,
    const char **detail)
{
	if (pipe == NULL || done == NULL)
		return vault_profile_token_nowait(v, app, request, actor, out,
		    detail);
	return profile_token(v, app, request, actor, out, detail, 0, pipe,
	    done, arg);
}

/* The members a profile takes besides "profile", in docs/api.md's order. */
static const struct {
	const char *name;
	unsigned int field;             /* PROFILE_F_*; 0: every profile */
} profile_members[] = {
	{ "issuer_id", PROFILE_F_ISSUER },
	{ "client_id", PROFILE_F_CLIENT },
	{ "service_id", PROFILE_F_SERVICE },
	{ "expires_in", PROFILE_F_EXPIRES },
	{ "scope", PROFILE_F_SCOPE },
	{ "origin", PROFILE_F_ORIGIN },
	{ "environment", 0 },
};

/* 1 if name may be repeated in a message: a short plain name, not bytes
 * that could be anything (the message never echoes arbitrary input). */
static int
plain_member_name(const char *name)
{
	size_t i, n = strlen(name);

	if (n == 0 || n > PROFILE_MEMBER_SHOWN_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!cc_is((unsigned char)name[i], CC_B64URL))
			return 0;
	return 1;
}

int
profile_unknown_member(const json_t *request, char *buf, size_t size)
{
	const struct profile_rule *p;
	const char *member, *name;
	json_t *val;
	size_t i, o;
	int known, w;

	if (buf == NULL || size == 0 || !json_is_object(request))
		return 0;
	name = json_string_value(json_object_get(request, "profile"));
	if (name == NULL || (p = profile_find(name)) == NULL)
		return 0;
	json_object_foreach((json_t *)request, member, val) {
		known = strcmp(member, "profile") == 0;
		for (i = 0; !known && i < sizeof(profile_members) /
		    sizeof(profile_members[0]); i++)
			known = strcmp(member, profile_members[i].name) == 0 &&
			    (profile_members[i].field == 0 ||
			    (p->fields & profile_members[i].field) != 0);
		if (known)
			continue;
		if (plain_member_name(member))
			w = snprintf(buf, size, "unknown member \"%s\": the %s "
			    "profile takes", member, p->name);
		else
			w = snprintf(buf, size, "unknown member (its name is "
			    "not shown): the %s profile takes", p->name);
		if (w < 0 || (size_t)w >= size)
			return 0;
		o = (size_t)w;
		for (i = 0; i < sizeof(profile_members) /
		    sizeof(profile_members[0]); i++) {
			if (profile_members[i].field != 0 &&
			    (p->fields & profile_members[i].field) == 0)
				continue;
			w = snprintf(buf + o, size - o, " %s,",
			    profile_members[i].name);
			if (w < 0 || (size_t)w >= size - o)
				return 0;
			o += (size_t)w;
		}
		buf[o - 1] = '\0';     /* the last comma */
		return 1;
	}
	return 0;
}
