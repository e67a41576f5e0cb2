/*
 * keys.h: the key routes of the upload API besides the upload itself
 * (api/upload.h), on the portal listener:
 *
 *   GET    /v1/apps/{app}/keys                   200 {"keys": [meta...]}
 *   GET    /v1/apps/{app}/keys/{key_id}          200 meta
 *   POST   /v1/apps/{app}/keys/{key_id}/activate 200 meta (state "active")
 *   DELETE /v1/apps/{app}/keys/{key_id}          200 meta (state "revoked")
 *   POST   /v1/apps/{app}/keys/{key_id}/check    200 the check answer
 *
 * The check (vault_key_check) takes an optional JSON body {"environment":
 * "development"|"production", "topic": "..."}; when APNs cannot be reached
 * it answers 502 apple_unreachable or 504 apple_timeout with the cause as
 * the error's message and "environment".
 *   GET    /v1/keys?fingerprint=FP               200 {"keys": [meta...]}:
 *          every copy of one key, across apps (admin tokens only)
 *
 * meta is the vault's key metadata object (vault/vault.h): public key,
 * fingerprint, state and the rest, never private key material. Activation
 * and revocation name the caller's token id as the actor of their audit
 * event (the vault appends it). Path parameters are validated by the vault
 * (422 invalid_app_id / invalid_key_id); every error is mapped by
 * api/errors.c.
 */
#ifndef P8V_API_KEYS_H
#define P8V_API_KEYS_H

struct api_request;

/* Handlers (api/router.h contract): 0 after responding, or a P8V_ERR_*
 * for the framework to answer (those of vault_key_list, vault_key_get,
 * vault_key_activate, vault_key_revoke; P8V_ERR_NOT_READY without a vault;
 * P8V_ERR_ALLOC). */
int api_keys_handle_list(struct api_request *req);
int api_keys_handle_get(struct api_request *req);
int api_keys_handle_activate(struct api_request *req);
int api_keys_handle_revoke(struct api_request *req);
int api_keys_handle_check(struct api_request *req);

#include <jansson.h>

/*
 * Answer a failed check (err P8V_ERR_APPLE_CHECK_FAILED, _UNREACHABLE or
 * _TIMEOUT) with its answer from the vault (stolen, may be NULL): the
 * error body of api/errors.c ({"error": {"code", "message"}}), the cause
 * as the message, and the answer's "ok", "checks" and "environment"
 * members beside "error". For the check route and the upload with a check.
 * Returns as api_respond; P8V_ERR_ALLOC.
 */
int api_keys_respond_check_error(struct api_request *req, int err,
    json_t *answer);
/* GET /v1/keys?fingerprint=FP (vault_key_find): 422 missing_field without
 * the parameter, 422 invalid_field for one that is not 64 hex digits. */
int api_keys_handle_find(struct api_request *req);

#endif /* P8V_API_KEYS_H */
