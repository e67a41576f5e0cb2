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
 *   GET /metrics   200 text/plain; version=0.0.4 (api/metrics.h).
 *
 * Each returns 0 after responding, or a P8V_ERR_* for the framework to
 * answer.
 */
#ifndef P8V_API_SIGN_H
#define P8V_API_SIGN_H

struct api_request;

int api_sign_handle_apns_token(struct api_request *req);
int api_sign_handle_jwt(struct api_request *req);
int api_sign_handle_metrics(struct api_request *req);

#endif /* P8V_API_SIGN_H */
