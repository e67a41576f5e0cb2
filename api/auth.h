/*
 * auth.h: bearer tokens: their format, how they are issued, and the
 * authentication hook every route with a role passes through.
 *
 * A token is 64 characters:
 *
 *   p8v_<id>_<secret>
 *   id      16 lowercase hex characters (8 random bytes): the credential's
 *           id in the store (store/creds.h), not secret; it is the "actor"
 *           recorded in audit events and logs;
 *   secret  43 characters of base64url without padding (32 random bytes).
 *
 * The store keeps only SHA-256 of the secret's 43 characters (no stretching
 * is needed: the secret has 256 random bits). A request is checked with one
 * read transaction and one SHA-256: the id is parsed out of the token, the
 * credential read by id, the hashes compared in constant time. Nothing is
 * cached, so a token created or revoked by the CLI in another process takes
 * effect on the next request (LMDB is multi-process).
 *
 * Roles (stored by name in the credential):
 *   portal  routes that require API_ROLE_PORTAL (the upload API);
 *   signer  routes that require API_ROLE_SIGNER (the signing API);
 *   admin   both, and routes that require API_ROLE_ADMIN.
 * A credential may be scoped to apps (store/creds.h; "*" means every app).
 * A scoped token may only act on its apps: routes with an {app} path
 * parameter are checked here. A handler that takes the app from anywhere
 * else (the body, a query) MUST check it with api_auth_allows_app().
 *
 * Outcomes: no, malformed, unknown, revoked or wrong token: 401
 * "unauthorized", one code and one message for all of them (a client never
 * learns which); a valid token whose role or apps do not cover the request:
 * 403 "forbidden".
 *
 * Tokens are never logged, not even their id together with the secret; the
 * Authorization header is never copied.
 */
#ifndef P8V_API_AUTH_H
#define P8V_API_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "api/router.h"
#include "store/creds.h"
#include "store/store.h"

#define API_AUTH_TOKEN_PREFIX "p8v_"
#define API_AUTH_TOKEN_PREFIX_LEN 4
/* 8 random bytes: ids only need to be unique (collisions are retried), and
 * 16 characters stay readable in logs and `p8vault token list`. */
#define API_AUTH_ID_BYTES 8
#define API_AUTH_ID_LEN (2 * API_AUTH_ID_BYTES)
/* 32 random bytes: 256 bits, beyond any guessing, so a plain hash stores
 * it safely. */
#define API_AUTH_SECRET_BYTES 32
/* base64url without padding of API_AUTH_SECRET_BYTES. */
#define API_AUTH_SECRET_LEN 43
#define API_AUTH_TOKEN_LEN (API_AUTH_TOKEN_PREFIX_LEN + API_AUTH_ID_LEN + 1 + \
    API_AUTH_SECRET_LEN)

/* Required role meaning "any valid token", for api_auth_verify only (e.g.
 * GET /v1/whoami); api_authenticate never takes it. */
#define API_AUTH_ANY_ROLE API_ROLE_NONE

struct api_request;
struct api_principal;

/* The stored name of a role ("portal", "signer", "admin"), or NULL for
 * API_ROLE_NONE and unknown values. */
const char *api_auth_role_name(enum api_role role);

/* The role named name. 0 or P8V_ERR_INVALID_ARGUMENT (NULL, unknown). */
int api_auth_role_parse(const char *name, enum api_role *out);

/*
 * Issue a new token: fills token (API_AUTH_TOKEN_LEN characters and a NUL;
 * token_size must be at least API_AUTH_TOKEN_LEN + 1; the caller should
 * pass guarded memory, secmem_alloc, and wipe it after showing it once),
 * id (its id) and secret_hash (what the store keeps). The random secret
 * passes only through guarded memory.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_SECMEM, P8V_ERR_RANDOM.
 * On failure token is wiped.
 */
int api_auth_token_new(char *token, size_t token_size,
    char id[API_AUTH_ID_LEN + 1],
    uint8_t secret_hash[CRED_SECRET_HASH_BYTES]);

/*
 * Split token (len bytes, not necessarily NUL-terminated) strictly: the
 * prefix, 16 lowercase hex, '_', 43 base64url characters whose last one
 * carries no stray bits (the canonical encoding of 32 bytes). id gets the
 * id, *secret points at the secret inside token (API_AUTH_SECRET_LEN bytes).
 * Returns 0 or P8V_ERR_UNAUTHORIZED (anything else).
 */
int api_auth_token_parse(const char *token, size_t len,
    char id[API_AUTH_ID_LEN + 1], const char **secret);

/*
 * The token of an Authorization header value: scheme "Bearer" (any case),
 * one or more spaces, the token, optional trailing spaces or tabs. *token
 * points into authorization, *len is its length (> 0).
 * Returns 0 or P8V_ERR_UNAUTHORIZED (NULL, another scheme, no token).
 */
int api_auth_bearer(const char *authorization, const char **token,
    size_t *len);

/*
 * The decision, given the credential the token's id names (NULL: none) and
 * SHA-256 of the token's secret:
 * - P8V_ERR_UNAUTHORIZED: no credential, a revoked one, or a hash that
 *   differs (compared in constant time);
 * - P8V_ERR_FORBIDDEN: the credential's role does not cover `required`
 *   (admin covers every role; an unknown stored role covers none), or app
 *   (may be NULL: no app involved) is not among its apps;
 * - 0: allowed; *granted (may be NULL) gets the credential's own role.
 * `required` may be API_AUTH_ANY_ROLE (any known role).
 */
int api_auth_decide(const struct store_cred *cred,
    const uint8_t secret_hash[CRED_SECRET_HASH_BYTES], enum api_role required,
    const char *app, enum api_role *granted);

/*
 * The whole check without HTTP: parse authorization (the header value, may
 * be NULL), read the credential in one read transaction of store, decide.
 * On 0 fills who (role and actor = token id).
 * Returns 0, P8V_ERR_UNAUTHORIZED, P8V_ERR_FORBIDDEN, P8V_ERR_STORE (the
 * store failed, or the credential fails to decode: logged with its id),
 * P8V_ERR_INVALID_ARGUMENT.
 */
int api_auth_verify(struct store *store, const char *authorization,
    enum api_role required, const char *app, struct api_principal *who);

/*
 * The hook the framework calls for a route that requires role `required`
 * (never API_ROLE_NONE: those routes are not authenticated): api_auth_verify
 * on the request's Authorization header, with the {app} path parameter if
 * the route has one. On success fills api_request_principal(req). The
 * framework answers P8V_ERR_UNAUTHORIZED with WWW-Authenticate: Bearer.
 * Returns 0, P8V_ERR_UNAUTHORIZED, P8V_ERR_FORBIDDEN, P8V_ERR_NOT_READY
 * (no backend yet), P8V_ERR_STORE, P8V_ERR_INTERNAL (API_ROLE_NONE).
 */
int api_authenticate(struct api_request *req, enum api_role required);

/*
 * For handlers that take an app from the body or a query: 0 if the request's
 * (already authenticated) token may act on app, else P8V_ERR_FORBIDDEN.
 * Reads the credential again (one read transaction): a token revoked in
 * between is refused with P8V_ERR_UNAUTHORIZED.
 * Returns 0, P8V_ERR_FORBIDDEN, P8V_ERR_UNAUTHORIZED, P8V_ERR_NOT_READY,
 * P8V_ERR_STORE.
 */
int api_auth_allows_app(struct api_request *req, const char *app);

/*
 * Handler of GET /v1/whoami (both listeners; the route has API_ROLE_NONE and
 * the handler authenticates any valid token itself): 200
 * {"id", "role", "apps"} (apps ["*"] when not scoped), or 401.
 */
int api_auth_whoami(struct api_request *req);

/* 0: tokens are checked (1 was the allow-everything stub). */
int api_auth_is_stub(void);

#endif /* P8V_API_AUTH_H */
