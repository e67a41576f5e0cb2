/* keys.c: list, read, activate and revoke keys: metadata in, metadata out. */
#include "api/keys.h"

#include <string.h>

#include <jansson.h>

#include "api/auth.h"
#include "api/errors.h"
#include "api/http.h"
#include "common/err.h"
#include "common/log.h"
#include "store/creds.h"
#include "vault/vault.h"

static struct vault *
request_vault(const struct api_request *req)
{
	const struct api_backend *backend = api_request_backend(req);

	return backend != NULL ? backend->vault : NULL;
}

/* 200 {"keys": keys}; keys is stolen, also on error. */
static int
respond_keys(struct api_request *req, json_t *keys)
{
	json_t *body;

	if ((body = json_pack("{s:o}", "keys", keys)) == NULL)
		return P8V_ERR_ALLOC;   /* "o" stole keys */
	return api_respond(req, 200, body);
}

int
api_keys_handle_list(struct api_request *req)
{
	struct vault *v;
	json_t *keys = NULL;
	int r = P8V_ERR_INTERNAL;

	if ((v = request_vault(req)) == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	if ((r = vault_key_list(v, api_request_param(req, "app"),
	    &keys)) != 0)
		goto out;
	r = respond_keys(req, keys);
	keys = NULL;                            /* stolen */
 out:
	json_decref(keys);
	return r;
}

int
api_keys_handle_get(struct api_request *req)
{
	struct vault *v;
	json_t *meta = NULL;
	int r = P8V_ERR_INTERNAL;

	if ((v = request_vault(req)) == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	if ((r = vault_key_get(v, api_request_param(req, "app"),
	    api_request_param(req, "key_id"), &meta)) != 0)
		goto out;
	r = api_respond(req, 200, meta);
	meta = NULL;                            /* stolen */
 out:
	json_decref(meta);
	return r;
}

/* Activate or revoke: the same shape, a different vault call. */
static int
change_state(struct api_request *req, const char *event,
    int (*change)(struct vault *, const char *, const char *, const char *,
    json_t **))
{
	struct vault *v;
	const char *app, *key_id, *actor;
	json_t *meta = NULL;
	int r = P8V_ERR_INTERNAL;

	if ((v = request_vault(req)) == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	app = api_request_param(req, "app");
	key_id = api_request_param(req, "key_id");
	actor = api_request_principal(req)->actor;
	if ((r = change(v, app, key_id, actor, &meta)) != 0)
		goto out;
	/* The vault validated app and key_id: safe to log. */
	log_fields(LOG_LEVEL_INFO, event, json_pack("{s:s,s:s,s:s}", "app",
	    app, "key_id", key_id, "actor", actor), "%s", event);
	r = api_respond(req, 200, meta);
	meta = NULL;                            /* stolen */
 out:
	json_decref(meta);
	return r;
}

int
api_keys_handle_activate(struct api_request *req)
{
	return change_state(req, "key_activate", vault_key_activate);
}

int
api_keys_handle_revoke(struct api_request *req)
{
	return change_state(req, "key_revoke", vault_key_revoke);
}

int
api_keys_respond_check_error(struct api_request *req, int err,
    json_t *answer)
{
	static const char *const keep[] = { "ok", "checks", "environment" };
	const char *cause;
	json_t *body = NULL;
	size_t i;
	int r = P8V_ERR_ALLOC;

	cause = json_string_value(json_object_get(answer, "cause"));
	if ((body = api_error_body(err, cause)) == NULL)
		goto out;
	for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		json_t *v = json_object_get(answer, keep[i]);

		if (v != NULL && json_object_set(body, keep[i], v) != 0)
			goto out;
	}
	r = api_respond(req, api_error_status(err), body);
	body = NULL;                            /* stolen */
 out:
	json_decref(body);
	json_decref(answer);
	return r;
}

/* The check's optional body: {"environment", "topic"}, strings. */
static int
check_options(struct api_request *req, json_t **opts, const char **env,
    const char **topic)
{
	const char *name;
	json_t *v;
	size_t len = 0;
	int r;

	*opts = NULL;
	*env = *topic = NULL;
	(void)api_request_body(req, &len);
	if (len == 0)
		return 0;
	if ((r = api_request_json(req, opts)) != 0)
		return api_respond_json_error(req, r) == 0 ? 1 : r;
	json_object_foreach(*opts, name, v) {
		if (strcmp(name, "environment") == 0 && json_is_string(v))
			*env = json_string_value(v);
		else if (strcmp(name, "topic") == 0 && json_is_string(v))
			*topic = json_string_value(v);
		else if (strcmp(name, "environment") == 0 ||
		    strcmp(name, "topic") == 0)
			return api_respond_error(req, P8V_ERR_BAD_FIELD,
			    "environment and topic are strings") == 0 ?
			    1 : P8V_ERR_BAD_FIELD;
		else
			return api_respond_error(req, P8V_ERR_UNKNOWN_FIELD,
			    "unknown member; known: environment, topic") == 0 ?
			    1 : P8V_ERR_UNKNOWN_FIELD;
	}
	return 0;
}

int
api_keys_handle_check(struct api_request *req)
{
	struct vault *v;
	const char *app, *key_id, *actor, *env, *topic;
	json_t *opts = NULL, *answer = NULL;
	int r = P8V_ERR_INTERNAL;

	if ((v = request_vault(req)) == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	if ((r = check_options(req, &opts, &env, &topic)) != 0) {
		if (r == 1)                     /* answered */
			r = 0;
		goto out;
	}
	app = api_request_param(req, "app");
	key_id = api_request_param(req, "key_id");
	actor = api_request_principal(req)->actor;
	r = vault_key_check(v, app, key_id, env, topic, actor, &answer);
	if (r == P8V_ERR_APPLE_UNREACHABLE || r == P8V_ERR_APPLE_TIMEOUT) {
		r = api_keys_respond_check_error(req, r, answer);
		answer = NULL;                  /* stolen */
		goto out;
	}
	if (r == P8V_ERR_MISSING_FIELD) {
		r = api_respond_error(req, r, "no topic to check with: the key "
		    "has no topics and the app id is not a bundle id; give "
		    "\"topic\"");
		goto out;
	}
	if (r != 0)
		goto out;
	r = api_respond(req, 200, answer);
	answer = NULL;                          /* stolen */
 out:
	json_decref(opts);
	json_decref(answer);
	return r;
}

int
api_keys_handle_find(struct api_request *req)
{
	struct store_cred cred;
	struct vault *v;
	const char *fp, *app;
	json_t *keys = NULL;
	size_t i;
	int r = P8V_ERR_INTERNAL;

	memset(&cred, 0, sizeof(cred));
	if ((v = request_vault(req)) == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	if ((fp = api_request_query(req, "fingerprint")) == NULL) {
		r = api_respond_error(req, P8V_ERR_MISSING_FIELD,
		    "the query parameter \"fingerprint\" is required");
		goto out;
	}
	if ((r = vault_key_find(v, fp, &keys)) != 0) {
		if (r == P8V_ERR_BAD_FIELD)
			r = api_respond_error(req, r, "\"fingerprint\" must be "
			    "64 hex digits (the SHA-256 of the public key)");
		goto out;
	}
	/* An admin token scoped to some apps sees the copies in those apps
	 * only: the route names no app, so the router could not check. */
	if ((r = api_auth_credential(req, &cred)) != 0)
		goto out;
	for (i = json_array_size(keys); i-- > 0; ) {
		app = json_string_value(json_object_get(json_array_get(keys, i),
		    "app"));
		if ((app == NULL || !store_cred_allows_app(&cred, app)) &&
		    json_array_remove(keys, i) != 0) {
			r = P8V_ERR_ALLOC;
			goto out;
		}
	}
	r = respond_keys(req, keys);
	keys = NULL;                            /* stolen */
 out:
	store_cred_free(&cred);
	json_decref(keys);
	return r;
}
