/*
 * sign.c: the signing API, served on the signing listeners only
 * (--sign-socket, --sign-listen) to signer and admin tokens:
 *
 *   POST /v1/apps/{app}/apns-token   the shared APNs provider token
 *   POST /v1/apps/{app}/jwt          another Apple JWT, by profile
 *
 * The handlers parse and check the request's shape, hand validated fields
 * to the vault (vault_apns_token, vault_profile_token) and turn the result
 * into JSON. They never see key material, never log a token (neither the
 * one returned nor a rejected one reported by the caller), and keep no
 * state: the token cache, its rules and the audit events live in vault/.
 * docs/api.md ("Signing API") is the reference for callers.
 */
#include "api/sign.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/http.h"
#include "common/charclass.h"
#include "common/err.h"
#include "crypto/jwt.h"
#include "crypto/secmem.h"
#include "vault/profiles.h"
#include "vault/vault.h"

/* The members an apns-token body may hold. */
#define APNS_MEMBER_ENVIRONMENT "environment"
#define APNS_MEMBER_REJECTED "rejected_token"
#define APNS_MEMBER_REASON "reason"

/* Answer err with detail (a static message, never input bytes): 0 once
 * the answer is set, else the framework's error. */
static int
refuse(struct api_request *req, int err, const char *detail)
{
	return api_respond_error(req, err, detail);
}

/* The vault, or NULL (then answered 503 not_ready by the caller). */
static struct vault *
backend_vault(const struct api_request *req)
{
	const struct api_backend *b = api_request_backend(req);

	return b != NULL ? b->vault : NULL;
}

/* 1 if s is a plausible compact JWS: base64url parts and dots, no more
 * than a token of ours can be. The vault compares it with the token it
 * holds; this only keeps junk out of that comparison. */
static int
token_shaped(const char *s, size_t len)
{
	return len > 0 && len < JWT_MAX_TOKEN_BYTES && strlen(s) == len &&
	    jwt_compact_chars_ok(s, len);
}

int
api_sign_apns_body_parse(const json_t *body, enum key_env *env,
    const char **rejected, enum vault_reject_reason *reason,
    const char **detail)
{
	const char *member, *s;
	json_t *v;

	*detail = NULL;
	*env = KEY_ENV_BOTH;
	*rejected = NULL;
	*reason = VAULT_REJECT_NONE;
	json_object_foreach((json_t *)body, member, v) {
		if (strcmp(member, APNS_MEMBER_ENVIRONMENT) == 0) {
			if (!json_is_string(v) ||
			    key_env_from_name(json_string_value(v), env) != 0 ||
			    *env == KEY_ENV_BOTH) {
				*detail = "\"environment\" must be "
				    "\"development\" or \"production\"";
				return P8V_ERR_BAD_FIELD;
			}
		} else if (strcmp(member, APNS_MEMBER_REJECTED) == 0) {
			if (!json_is_string(v) ||
			    !token_shaped(json_string_value(v),
			    json_string_length(v))) {
				*detail = "\"rejected_token\" must be the "
				    "compact token APNs refused";
				return P8V_ERR_BAD_FIELD;
			}
			*rejected = json_string_value(v);
		} else if (strcmp(member, APNS_MEMBER_REASON) == 0) {
			s = json_is_string(v) ? json_string_value(v) : "";
			if (strcmp(s, "ExpiredProviderToken") == 0) {
				*reason = VAULT_REJECT_EXPIRED;
			} else if (strcmp(s, "InvalidProviderToken") == 0) {
				*reason = VAULT_REJECT_INVALID;
			} else {
				*detail = "\"reason\" must be "
				    "\"ExpiredProviderToken\" or "
				    "\"InvalidProviderToken\"";
				return P8V_ERR_BAD_FIELD;
			}
		} else {
			*detail = "unknown member: an apns-token body takes "
			    "only environment, rejected_token and reason";
			return P8V_ERR_UNKNOWN_FIELD;
		}
	}
	if ((*rejected != NULL) != (*reason != VAULT_REJECT_NONE)) {
		*detail = "\"rejected_token\" and \"reason\" go together";
		return P8V_ERR_BAD_FIELD;
	}
	return 0;
}

/* The first member of an apns-token body that is not one of its three,
 * if its name is plain enough to repeat (PROFILE_MEMBER_SHOWN_MAX
 * characters of [A-Za-z0-9_-]); else NULL. */
static const char *
apns_unknown_member(const json_t *body)
{
	const char *member;
	json_t *v;
	size_t i, n;

	json_object_foreach((json_t *)body, member, v) {
		if (strcmp(member, APNS_MEMBER_ENVIRONMENT) == 0 ||
		    strcmp(member, APNS_MEMBER_REJECTED) == 0 ||
		    strcmp(member, APNS_MEMBER_REASON) == 0)
			continue;
		n = strlen(member);
		if (n == 0 || n > PROFILE_MEMBER_SHOWN_MAX)
			return NULL;
		for (i = 0; i < n; i++)
			if (!cc_is((unsigned char)member[i], CC_B64URL))
				return NULL;
		return member;
	}
	return NULL;
}

/*
 * The vault answers no_active_key when no key of the app is active for
 * env. When every key of the app that serves env is revoked, the caller
 * should rather learn that (410 key_revoked: stop sending for the app)
 * than wait for an activation that cannot come; with a standby key left,
 * or on any doubt, 404 no_active_key stands. Only on this error path.
 */
static int
refine_no_active_key(struct vault *v, const char *app, enum key_env env)
{
	json_t *keys = NULL, *k;
	const char *s;
	enum key_env kenv;
	size_t i, revoked = 0, other = 0;

	if (vault_key_list(v, app, &keys) != 0)
		return P8V_ERR_NO_ACTIVE_KEY;
	json_array_foreach(keys, i, k) {
		s = json_string_value(json_object_get(k, "environment"));
		if (s == NULL || key_env_from_name(s, &kenv) != 0) {
			other++;
			continue;
		}
		/* The keys vault_apns_token would consider for env. */
		if (env != KEY_ENV_BOTH && kenv != KEY_ENV_BOTH && kenv != env)
			continue;
		s = json_string_value(json_object_get(k, "state"));
		if (s != NULL && strcmp(s, "revoked") == 0)
			revoked++;
		else
			other++;
	}
	json_decref(keys);
	return revoked > 0 && other == 0 ? P8V_ERR_KEY_REVOKED :
	    P8V_ERR_NO_ACTIVE_KEY;
}

/*
 * The length of s if it can stand between JSON quotes as it is (printable
 * ASCII, no '"' or backslash: ids are [A-Z0-9], profiles names from a
 * table), else SIZE_MAX.
 */
static size_t
plain_len(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned int plain = CC_JSON_PLAIN;

	for (; *p != '\0'; p++)
		plain &= charclass_table[*p];
	return plain == 0 ? SIZE_MAX : (size_t)(p - (const unsigned char *)s);
}

/* Append the n bytes of s at p; the new end. */
static char *
put_mem(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

/* Append the string literal s at p; the new end. */
#define PUT_LIT(p, s) put_mem((p), (s), sizeof(s) - 1)

/* Append v in decimal at p (at most TOKEN_INT_CHARS); the new end. */
#define TOKEN_INT_CHARS 20
static char *
put_int(char *p, int64_t v)
{
	char tmp[TOKEN_INT_CHARS];
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	size_t i = 0;

	if (v < 0)
		*p++ = '-';
	do {
		tmp[i++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	while (i > 0)
		*p++ = tmp[--i];
	return p;
}

/* The members' names, punctuation and two integers around the strings. */
#define TOKEN_ANSWER_FIXED_BYTES 128

/* {"token","key_id","team_id","issued_at","expires_at"} [+ "profile"]. */
static int
respond_token(struct api_request *req, const struct vault_token *tok,
    const char *profile)
{
	json_t *body, *v;
	char *text = NULL, *p;
	size_t n_token, n_kid, n_team, n_profile, n;

	/* On the path of every push: written directly instead of building a
	 * jansson object to serialise, or printf (docs/benchmarks.md, "Costs
	 * behind limits and fast paths"). The same bytes
	 * json_dumps(JSON_COMPACT) gives for the object below, and the
	 * newline every JSON answer ends with. */
	/* The token is a compact JWS, base64url and dots only (vault/vault.h;
	 * the vault checks it where it takes one in): measured, not scanned. */
	n_token = strlen(tok->token);
	n_kid = plain_len(tok->key_id);
	n_team = plain_len(tok->team_id);
	n_profile = profile != NULL ? plain_len(profile) : 0;
	if (n_kid != SIZE_MAX && n_team != SIZE_MAX && n_profile != SIZE_MAX &&
	    n_token <= JWT_MAX_TOKEN_BYTES) {
		/* NUL-terminated for api_respond_text_secret. */
		if ((text = malloc(TOKEN_ANSWER_FIXED_BYTES + n_token + n_kid +
		    n_team + n_profile + 1)) == NULL)
			return P8V_ERR_ALLOC;
		p = PUT_LIT(text, "{\"token\":\"");
		p = put_mem(p, tok->token, n_token);
		p = PUT_LIT(p, "\",\"key_id\":\"");
		p = put_mem(p, tok->key_id, n_kid);
		p = PUT_LIT(p, "\",\"team_id\":\"");
		p = put_mem(p, tok->team_id, n_team);
		p = PUT_LIT(p, "\",\"issued_at\":");
		p = put_int(p, tok->issued_at);
		p = PUT_LIT(p, ",\"expires_at\":");
		p = put_int(p, tok->expires_at);
		if (profile != NULL) {
			p = PUT_LIT(p, ",\"profile\":\"");
			p = put_mem(p, profile, n_profile);
			p = PUT_LIT(p, "\"");
		}
		p = PUT_LIT(p, "}\n");     /* every JSON answer ends so */
		*p = '\0';
		/* Wiped once sent: the token is kept nowhere but in the
		 * vault's guarded cache (APNs tokens). */
		return api_respond_text_secret(req, 200, "application/json",
		    text, (size_t)(p - text));
	}

	/* Ids that need escaping (validated ids never do): jansson, whose
	 * own buffers are not wiped; the text it gives is. */

	body = json_pack("{s:s, s:s, s:s, s:I, s:I}",
	    "token", tok->token,
	    "key_id", tok->key_id,
	    "team_id", tok->team_id,
	    "issued_at", (json_int_t)tok->issued_at,
	    "expires_at", (json_int_t)tok->expires_at);
	if (body == NULL)
		return P8V_ERR_ALLOC;
	if (profile != NULL &&
	    json_object_set_new(body, "profile", json_string(profile)) != 0)
		goto out;
	/* Measured first, so that the text and its newline are written
	 * once, into the buffer that is wiped after sending. */
	if ((n = json_dumpb(body, NULL, 0, JSON_COMPACT)) > 0 &&
	    (text = malloc(n + 2)) != NULL) {
		if (json_dumpb(body, text, n, JSON_COMPACT) == n) {
			text[n] = '\n';
			text[n + 1] = '\0';
		} else {
			secmem_wipe(text, n);
			free(text);
			text = NULL;
		}
	}
 out:
	v = json_object_get(body, "token");
	if (v != NULL)
		secmem_wipe((void *)json_string_value(v),
		    json_string_length(v));
	json_decref(body);
	if (text == NULL)
		return P8V_ERR_ALLOC;
	return api_respond_text_secret(req, 200, "application/json", text,
	    strlen(text));
}

int
api_sign_handle_apns_token(struct api_request *req)
{
	struct vault_token tok;
	struct vault *v;
	json_t *body = NULL;
	const char *app, *rejected = NULL, *detail = NULL, *s;
	char unknown[PROFILE_UNKNOWN_DETAIL_BYTES];
	enum key_env env = KEY_ENV_BOTH;
	enum vault_reject_reason reason = VAULT_REJECT_NONE;
	size_t body_len = 0;
	int r = P8V_ERR_INTERNAL;

	memset(&tok, 0, sizeof(tok));
	app = api_request_param(req, "app");
	if ((v = backend_vault(req)) == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	/* The body is optional: none at all means {}. */
	(void)api_request_body(req, &body_len);
	if (body_len != 0) {
		if ((r = api_request_json(req, &body)) != 0) {
			r = api_respond_json_error(req, r);
			goto out;
		}
		if ((r = api_sign_apns_body_parse(body, &env, &rejected,
		    &reason, &detail)) != 0) {
			if (r == P8V_ERR_UNKNOWN_FIELD &&
			    (s = apns_unknown_member(body)) != NULL) {
				snprintf(unknown, sizeof(unknown), "unknown "
				    "member \"%s\": an apns-token body takes "
				    "only environment, rejected_token and "
				    "reason", s);
				detail = unknown;
			}
			r = refuse(req, r, detail);
			goto out;
		}
	}
	/* On an event loop only a cached token is answered: a mint, or
	 * waiting for another caller's, runs on a defer thread (api/http.h),
	 * so that the cached answers of other teams never wait for it. */
	if (!api_request_can_wait(req)) {
		if (rejected != NULL) {
			r = P8V_ERR_WOULD_BLOCK;
			goto out;
		}
		r = vault_apns_token_cached(v, app, env, &tok);
		if (r == 0)
			goto respond;
		if (r == P8V_ERR_WOULD_BLOCK)
			goto out;
		if (r == P8V_ERR_NO_ACTIVE_KEY)
			r = refine_no_active_key(v, app, env);
		goto out;
	}
	if ((r = vault_apns_token(v, app, env, rejected, reason,
	    api_request_principal(req)->actor, &tok)) != 0) {
		if (r == P8V_ERR_NO_ACTIVE_KEY)
			r = refine_no_active_key(v, app, env);
		goto out;
	}
 respond:
	r = respond_token(req, &tok, NULL);
 out:
	vault_token_finish(&tok);
	json_decref(body);
	return r;
}

/* A /jwt signature queued on the loop's keeper pipe. */
struct jwt_pending {
	struct api_request *req;
	char profile[32];       /* the request's, validated before queueing */
};

static void
jwt_done(void *arg, int result, struct vault_token *tok)
{
	struct jwt_pending *pj = arg;

	if (result == 0 && tok != NULL)
		result = respond_token(pj->req, tok, pj->profile);
	else if (result == 0)
		result = P8V_ERR_INTERNAL;
	api_request_finish_pending(pj->req, result);
	free(pj);
}

/* The loop's keeper pipe and a context for req's signature on it, or
 * NULL (the signature is made at once). */
static struct keeper_pipe *
jwt_pipe(struct api_request *req, const json_t *body,
    struct jwt_pending **out)
{
	struct keeper_pipe *pipe;
	const json_t *name;

	*out = NULL;
	if (api_request_can_wait(req) ||
	    (pipe = api_request_keeper_pipe(req)) == NULL)
		return NULL;
	name = json_object_get(body, "profile");
	if (!json_is_string(name) ||
	    json_string_length(name) >= sizeof((*out)->profile) ||
	    (*out = calloc(1, sizeof(**out))) == NULL)
		return NULL;
	(*out)->req = req;
	memcpy((*out)->profile, json_string_value(name),
	    json_string_length(name));
	return pipe;
}

int
api_sign_handle_jwt(struct api_request *req)
{
	struct vault_token tok;
	struct vault *v;
	struct keeper_pipe *pipe;
	struct jwt_pending *pj = NULL;
	json_t *body = NULL;
	const char *app, *detail = NULL, *profile, *s;
	char unknown[PROFILE_UNKNOWN_DETAIL_BYTES];
	enum key_env env = KEY_ENV_BOTH;
	int r = P8V_ERR_INTERNAL;

	memset(&tok, 0, sizeof(tok));
	app = api_request_param(req, "app");
	if ((v = backend_vault(req)) == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	if ((r = api_request_json(req, &body)) != 0) {
		r = api_respond_json_error(req, r);
		goto out;
	}
	/* On an event loop a DeviceCheck request (the shared APNs token) is
	 * answered only from the cache; a mint, or waiting for another
	 * caller's, runs on a defer thread (api/http.h), as for apns-token. */
	/* On one of our event loops a fresh signature is queued on the
	 * loop's keeper pipe and answered by jwt_done (api/http.h). */
	if ((pipe = jwt_pipe(req, body, &pj)) != NULL)
		r = vault_profile_token_start(v, app, body,
		    api_request_principal(req)->actor, pipe, jwt_done, pj,
		    &tok, &detail);
	else if (!api_request_can_wait(req))
		r = vault_profile_token_nowait(v, app, body,
		    api_request_principal(req)->actor, &tok, &detail);
	else
		r = vault_profile_token(v, app, body,
		    api_request_principal(req)->actor, &tok, &detail);
	if (r == P8V_ERR_PENDING) {
		pj = NULL;      /* jwt_done's */
		goto out;
	}
	if (r == P8V_ERR_WOULD_BLOCK)
		goto out;
	if (r != 0) {
		if (r == P8V_ERR_UNKNOWN_FIELD && profile_unknown_member(body,
		    unknown, sizeof(unknown))) {
			r = refuse(req, r, unknown);
		} else if (detail != NULL) {
			r = refuse(req, r, detail);
		} else if (r == P8V_ERR_NO_ACTIVE_KEY) {
			/* The body passed validation: any environment in it
			 * is "development" or "production". */
			s = json_string_value(json_object_get(body,
			    "environment"));
			if (s == NULL || key_env_from_name(s, &env) != 0)
				env = KEY_ENV_BOTH;
			r = refine_no_active_key(v, app, env);
		}
		goto out;
	}
	/* The profile was validated: its name is one of the table's. */
	profile = json_string_value(json_object_get(body, "profile"));
	r = respond_token(req, &tok, profile);
 out:
	free(pj);
	vault_token_finish(&tok);
	json_decref(body);
	return r;
}
