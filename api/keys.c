/* keys.c: list, read, activate and revoke keys: metadata in, metadata out. */
#include "api/keys.h"

#include <jansson.h>

#include "api/http.h"
#include "common/err.h"
#include "common/log.h"
#include "vault/vault.h"

static struct vault *
request_vault(const struct api_request *req)
{
	const struct api_backend *backend = api_request_backend(req);

	return backend != NULL ? backend->vault : NULL;
}

int
api_keys_handle_list(struct api_request *req)
{
	struct vault *v;
	json_t *keys = NULL, *body = NULL;
	int r = P8V_ERR_INTERNAL;

	if ((v = request_vault(req)) == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	if ((r = vault_key_list(v, api_request_param(req, "app"),
	    &keys)) != 0)
		goto out;
	if ((body = json_pack("{s:o}", "keys", keys)) == NULL) {
		keys = NULL;                    /* "o" steals, also on error */
		r = P8V_ERR_ALLOC;
		goto out;
	}
	keys = NULL;
	r = api_respond(req, 200, body);
	body = NULL;                            /* stolen */
 out:
	json_decref(keys);
	json_decref(body);
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
api_keys_handle_find(struct api_request *req)
{
	struct vault *v;
	const char *fp;
	json_t *keys = NULL, *body = NULL;
	int r = P8V_ERR_INTERNAL;

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
	if ((body = json_pack("{s:o}", "keys", keys)) == NULL) {
		keys = NULL;                    /* "o" steals, also on error */
		r = P8V_ERR_ALLOC;
		goto out;
	}
	keys = NULL;
	r = api_respond(req, 200, body);
	body = NULL;                            /* stolen */
 out:
	json_decref(keys);
	json_decref(body);
	return r;
}
