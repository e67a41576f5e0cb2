/*
 * auth.h: bearer-token authentication: the hook the HTTP layer calls for
 * every route with a role (api_authenticate; server/ installs it as
 * api_options.authenticate, api/http.h), the decision, and GET /v1/whoami.
 *
 * The token format (p8v_<id>_<secret>) and the role names are
 * store/apitoken.h's, shared with the CLI that issues tokens. A request is
 * checked against the credential its token's id names (store/creds.h):
 * the token is parsed, the credential read by id, SHA-256 of the secret
 * compared in constant time with the stored hash, then role and apps
 * decided.
 *
 * Credential cache. Reading and decoding a credential on every request
 * would dominate a cached signing request, so api_auth_verify keeps what
 * it read in a process-wide table of 64 slots (AUTH_CACHE_SLOTS, auth.c),
 * direct-mapped by a hash of the token id (two ids on one slot evict each
 * other). A slot holds, for one token id:
 *   - the store it was read from (store_instance) and the store generation
 *     of the snapshot it was read in (store_txn_generation);
 *   - whether the credential exists and, if so, the decoded credential:
 *     id, role, apps, name, times and the stored SHA-256 of the secret;
 *   - a keyed hash of the last secret that matched that SHA-256:
 *     SipHash-2-4 with 128-bit output (crypto_shorthash_siphashx24) under
 *     a key drawn at random once per process, which never leaves it.
 *     A request whose secret has this tag is that same secret, already
 *     checked, and skips SHA-256; any other secret is hashed and compared
 *     as without the cache. The cache holds hashes, never a secret.
 * A slot answers only while its store and generation are the store's
 * current ones (store_generation, checked on every request). Every commit
 * changes the generation, in this process or another: a token created or
 * revoked by `p8vault token` (the CLI writes to the same store, LMDB is
 * multi-process), or any other write, and the next request reads the
 * credential from the store again. So a revocation takes effect from the
 * very next request, as without a cache. An unknown id is remembered as
 * absent under the same rule. api_auth_whoami does not use the cache.
 *
 * Roles: portal, signer and admin (store/apitoken.h); a route requires one
 * (api/router.h, enum api_role, the same values as enum apitoken_role):
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
#include "store/apitoken.h"
#include "store/creds.h"
#include "store/store.h"

/* Required role meaning "any valid token", for api_auth_verify only (e.g.
 * GET /v1/whoami); api_authenticate never takes it. */
#define API_AUTH_ANY_ROLE API_ROLE_NONE

struct api_request;
struct api_principal;

/* apitoken_role_name and apitoken_role_parse (store/apitoken.h) for the
 * route's enum api_role: the stored name of a role ("portal", "signer",
 * "admin"), or NULL for API_ROLE_NONE and unknown values; the role named
 * name, 0 or P8V_ERR_INVALID_ARGUMENT (NULL, unknown). */
const char *api_auth_role_name(enum api_role role);
int api_auth_role_parse(const char *name, enum api_role *out);

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
 *   differs (compared in constant time; without a credential the hash is
 *   compared with a dummy one, so that an unknown token id costs the same
 *   work as a wrong secret, here and in api_auth_verify, cached or not);
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
 * be NULL), take the credential from the cache or read it in one read
 * transaction of store (see "Credential cache" above), decide.
 * On 0 fills who (role and actor = token id).
 * Returns 0, P8V_ERR_UNAUTHORIZED, P8V_ERR_FORBIDDEN, P8V_ERR_STORE (the
 * store failed, or the credential fails to decode: logged with its id),
 * P8V_ERR_STORE_UNAVAILABLE (a networked store cannot be reached: logged,
 * answered 503 with Retry-After), P8V_ERR_INVALID_ARGUMENT.
 */
int api_auth_verify(struct store *store, const char *authorization,
    enum api_role required, const char *app, struct api_principal *who);

/*
 * The authentication hook (api_auth_hook_fn, api/http.h) the daemon gives
 * the framework, called for a route that requires role `required`
 * (never API_ROLE_NONE: those routes are not authenticated): api_auth_verify
 * on the request's Authorization header, with the {app} path parameter if
 * the route has one. On success fills api_request_principal(req). The
 * framework answers P8V_ERR_UNAUTHORIZED with WWW-Authenticate: Bearer.
 * Returns 0, P8V_ERR_UNAUTHORIZED, P8V_ERR_FORBIDDEN, P8V_ERR_NOT_READY
 * (no backend yet), P8V_ERR_STORE, P8V_ERR_STORE_UNAVAILABLE,
 * P8V_ERR_INTERNAL (API_ROLE_NONE).
 */
int api_authenticate(struct api_request *req, enum api_role required);

/*
 * For handlers that take an app from the body or a query: 0 if the request's
 * (already authenticated) token may act on app, else P8V_ERR_FORBIDDEN.
 * Checks the token again (cache or store, as api_auth_verify): a token
 * revoked in between is refused with P8V_ERR_UNAUTHORIZED.
 * Returns 0, P8V_ERR_FORBIDDEN, P8V_ERR_UNAUTHORIZED, P8V_ERR_NOT_READY,
 * P8V_ERR_STORE, P8V_ERR_STORE_UNAVAILABLE.
 */
int api_auth_allows_app(struct api_request *req, const char *app);

/*
 * The request's credential, verified again (any role), into *cred (the
 * caller frees it with store_cred_free): for a handler whose answer spans
 * apps and must leave out those the token is not for. Returns as
 * api_auth_allows_app.
 */
int api_auth_credential(struct api_request *req, struct store_cred *cred);

/*
 * Handler of GET /v1/whoami (both listeners; the route has API_ROLE_NONE and
 * the handler authenticates any valid token itself): 200
 * {"id", "role", "apps"} (apps ["*"] when not scoped), or 401.
 */
int api_auth_whoami(struct api_request *req);

/* 0: tokens are checked (1 was the allow-everything stub). */
int api_auth_is_stub(void);

#endif /* P8V_API_AUTH_H */
