/*
 * sign.h: the signing API's handlers (api/router.h contract), served on the
 * signing listeners to signer (and admin) tokens. docs/api.md, "Signing
 * API", documents requests, responses and errors for callers.
 *
 *   POST /v1/apps/{app}/apns-token   body optional: {} or
 *       {"environment": "development"|"production",
 *        "rejected_token": TOKEN, "reason": "ExpiredProviderToken"|
 *        "InvalidProviderToken"} (the last two together or not at all).
 *     200 {"token","key_id","team_id","issued_at","expires_at"}: the
 *     vault-wide shared token of the app's active key (vault_apns_token).
 *     400 bad_request: not a JSON object, Content-Type not JSON, or a
 *     member not listed above. 422 invalid_field: a listed member with a
 *     wrong type or value, or a rejected_token without reason or the
 *     reverse. Then the vault's errors (404 app_not_found, no_active_key,
 *     410 key_revoked, 403 service_not_allowed, 422 invalid_app_id);
 *     no_active_key becomes 410 key_revoked when every key of the app for
 *     the environment is revoked (nothing left to activate).
 *
 *   POST /v1/apps/{app}/jwt   body {"profile": NAME, ...} (vault/profiles.h)
 *     200 {"token","key_id","team_id","issued_at","expires_at","profile"},
 *     signed for this request. 400 bad_request: no body, not a JSON object;
 *     422: the profile's fields (vault/profiles.h); then the vault's errors
 *     as above.
 *
 * Each returns 0 after responding, or a P8V_ERR_* for the framework to
 * answer.
 */
#ifndef P8V_API_SIGN_H
#define P8V_API_SIGN_H

#include <jansson.h>

#include "store/records.h"
#include "vault/vault.h"

struct api_request;

int api_sign_handle_apns_token(struct api_request *req);
int api_sign_handle_jwt(struct api_request *req);

/*
 * The apns-token body check, without HTTP (the handler calls it; public so
 * that fuzz/fuzz_apns_body.c reaches it): body is the request's JSON object
 * (as api_request_json returns it). *env gets the environment
 * (KEY_ENV_BOTH when absent), *rejected the rejected_token (pointing into
 * body, valid while body lives; NULL when absent: else a compact JWS shape
 * shorter than JWT_MAX_TOKEN_BYTES, no NUL), *reason its reason
 * (VAULT_REJECT_NONE when absent). On failure *detail gets a static
 * message for the error response (never input bytes), else NULL.
 * Returns 0, P8V_ERR_BAD_FIELD (a member with a wrong type or value,
 * rejected_token without reason or the reverse), P8V_ERR_UNKNOWN_FIELD.
 */
int api_sign_apns_body_parse(const json_t *body, enum key_env *env,
    const char **rejected, enum vault_reject_reason *reason,
    const char **detail);

#endif /* P8V_API_SIGN_H */
