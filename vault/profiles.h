/*
 * profiles.h: the Apple JWTs other than the APNs provider token.
 *
 * One kind of .p8 key can be enabled at Apple for several services, each
 * with its own token shape (../shared/APPLE-TOKENS.md). A profile is one
 * such shape: a name, the KEY_SERVICE_* bit the key must carry, rules for
 * the caller's fields, and how the JOSE header and the claims are made
 * from the validated fields, the key record's authenticated Key ID and
 * Team ID, and the keeper's clock (keeper/profile.h holds the rules, the
 * keeper builds and signs). This file parses the client's JSON into the
 * keeper's fixed struct keeper_profile; the keeper checks it all again.
 * Nothing a caller sends is copied into a token as given: every member is
 * checked against its own rule first, and the caller never supplies iat
 * nor any header member.
 *
 * A request is a JSON object: {"profile": NAME, ...fields}. The members a
 * profile takes (all others are refused with P8V_ERR_UNKNOWN_FIELD, so a
 * misspelt "expires_in" never silently yields a default lifetime; null is
 * not "absent" but a wrong type):
 *
 *   every profile     "environment": "development" | "production"
 *                     (optional: which of the app's active keys, for an
 *                     app with one active key per environment)
 *   app_store_connect "issuer_id" (required, UUID 8-4-4-4-12 hex, either
 *                     case, signed as given), "expires_in" (1..1200,
 *                     default 1200), "scope" (optional, 1..32 strings
 *                     "METHOD /path", printable ASCII, at most 256 each,
 *                     at most PROFILE_LIST_BYTES_MAX as JSON in all)
 *     header {"alg":"ES256","kid":KID,"typ":"JWT"}
 *     claims {"iss":ISSUER,"iat":NOW,"exp":NOW+E,"aud":"appstoreconnect-v1"
 *             [,"scope":[...]]}
 *   sign_in_with_apple "client_id" (required, 1..255 of [A-Za-z0-9._-]),
 *                     "expires_in" (1..15777000, default 86400)
 *     header {"alg":"ES256","kid":KID}
 *     claims {"iss":TEAM,"iat":NOW,"exp":NOW+E,
 *             "aud":"https://appleid.apple.com","sub":CLIENT_ID}
 *   musickit          "expires_in" (1..15777000, default 3600), "origin"
 *                     (optional, 1..16 https origins, at most
 *                     PROFILE_LIST_BYTES_MAX as JSON in all)
 *     header {"alg":"ES256","kid":KID}
 *     claims {"iss":TEAM,"iat":NOW,"exp":NOW+E[,"origin":[...]]}
 *   weatherkit        "service_id" (required, 1..255 of [A-Za-z0-9.-]),
 *                     "expires_in" (1..86400, default 3600)
 *     header {"alg":"ES256","kid":KID,"id":"TEAM.SERVICE_ID"}
 *     claims {"iss":TEAM,"iat":NOW,"exp":NOW+E,"sub":SERVICE_ID}
 *   devicecheck       no fields
 *     header {"alg":"ES256","kid":KID}
 *     claims {"iss":TEAM,"iat":NOW}
 *   maps              "expires_in" (1..15777000, default 3600), "origin"
 *                     (optional, 1..16 https origins)
 *     header {"alg":"ES256","kid":KID,"typ":"JWT"}
 *     claims {"iss":TEAM,"iat":NOW,"exp":NOW+E[,"origin":[...]]}
 *
 * Members appear in the token in exactly the order listed. The limits and
 * the reasons for them are next to their macros below.
 *
 * These tokens are signed afresh on every request: unlike APNs, Apple does
 * not throttle them, and their lifetimes are the caller's choice, so callers
 * cache them as they need.
 */
#ifndef P8V_VAULT_PROFILES_H
#define P8V_VAULT_PROFILES_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keeper/keeper.h"
#include "store/records.h"
#include "vault/vault.h"

/* The limits (PROFILE_*) are in keeper/keeper.h, the reasons for them in
 * keeper/profile.h. */

/* Longest profile name, with its NUL. */
#define PROFILE_NAME_MAX 32

/* A validated request, ready for the keeper. Holds no secret and no
 * reference to the request's JSON. */
struct profile_request {
	const char *profile;             /* static name ("musickit") */
	uint32_t service;                /* KEY_SERVICE_* bit it needs */
	enum key_env environment;        /* KEY_ENV_BOTH: any active key */
	struct keeper_profile f;         /* the token's fields */
};

/*
 * Validate request (a JSON object {"profile": ..., ...}) into *out (zeroed
 * first; release with profile_request_finish, also on failure).
 * *detail (may be NULL) gets a static message naming the member at fault,
 * without its value, for the error response (NULL for errors that are not
 * about a member).
 * Returns 0, P8V_ERR_MISSING_FIELD ("profile" or a member the profile
 * requires is absent), P8V_ERR_UNKNOWN_FIELD (a member the profile does
 * not take), P8V_ERR_BAD_FIELD (unknown profile; a member of the wrong
 * type, out of range or malformed), P8V_ERR_INVALID_ARGUMENT (request NULL
 * or not an object, out NULL), P8V_ERR_ALLOC.
 */
int profile_parse(const json_t *request, struct profile_request *out,
    const char **detail);

/* Clear req (nothing is allocated; kept for callers): its fields are zero,
 * its list empty. NULL-safe. */
void profile_request_finish(struct profile_request *req);

/* Longest member name profile_unknown_member repeats; longer ones, or
 * names with other characters than [A-Za-z0-9_-], are not shown. */
#define PROFILE_MEMBER_SHOWN_MAX 40
/* Room for profile_unknown_member's message. */
#define PROFILE_UNKNOWN_DETAIL_BYTES 192

/*
 * For a request profile_parse refused with P8V_ERR_UNKNOWN_FIELD: write
 * into buf a message naming the first member its profile does not take
 * (when the name is plain, see PROFILE_MEMBER_SHOWN_MAX) and the members
 * the profile takes. Returns 1 if written, 0 if request names no known
 * profile or has no unknown member (or buf is too small).
 */
int profile_unknown_member(const json_t *request, char *buf, size_t size);

/*
 * The header and claims the keeper signs for req's profile with rec (its
 * key_id and team_id) at now (seconds since the epoch): what
 * keeper_profile_build makes, for tests and the fuzzer. *header and
 * *claims are new references (caller's), NULL on failure. Checks nothing
 * about rec's services or state (the vault and the keeper do).
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (NULL arguments, req not from
 * profile_parse, a field the keeper refuses, now + expires_in beyond what
 * a JSON integer holds), P8V_ERR_ALLOC.
 */
int profile_build(const struct profile_request *req,
    const struct key_record *rec, int64_t now, json_t **header,
    json_t **claims);

/*
 * The boundary call: validate request into the keeper's fixed struct,
 * then sign the profile's token with the app's active key (for the
 * request's environment) through vault_sign_app, which checks the key's
 * services and has the keeper check the fields again, build and sign.
 * Signed afresh on every call (out->minted is 1); nothing is cached.
 * out->expires_at is the exp claim.
 * Except devicecheck: its token is exactly an APNs provider token, so the
 * answer is the shared APNs token of the app's active key uploaded for
 * both "apns" and "devicecheck" (vault_devicecheck_token: cached, minted and audited as
 * APNs tokens are; out->minted 0 for a cached one; out->expires_at is
 * issued_at + VAULT_APNS_LIFETIME_S).
 * *detail as for profile_parse (NULL when the error is not about a field).
 * Returns 0, the errors of profile_parse, and those of vault_sign_app:
 * P8V_ERR_BAD_APP_ID, P8V_ERR_APP_NOT_FOUND, P8V_ERR_NO_ACTIVE_KEY,
 * P8V_ERR_KEY_REVOKED, P8V_ERR_SERVICE_NOT_ALLOWED, P8V_ERR_INTEGRITY, ...
 */
int vault_profile_token(struct vault *v, const char *app,
    const json_t *request, const char *actor, struct vault_token *out,
    const char **detail);

/* vault_profile_token for a thread that may not wait (a libmicrohttpd
 * event loop): a DeviceCheck request is answered only with a cached
 * token (vault_devicecheck_token_cached), else P8V_ERR_WOULD_BLOCK and
 * the caller calls vault_profile_token where it may wait for a mint; the
 * other profiles sign at once, as vault_profile_token does. */
int vault_profile_token_nowait(struct vault *v, const char *app,
    const json_t *request, const char *actor, struct vault_token *out,
    const char **detail);

/* vault_profile_token_nowait, for an event loop with a keeper pipe
 * (keeper.h): a signature is queued on pipe and P8V_ERR_PENDING returned;
 * done(arg, result, token) runs when keeper_pipe_run reads its answer,
 * with what vault_profile_token would have returned (the profile's
 * fields were validated before the call was queued: *detail is set only
 * on an answer given at once). Every other return is the answer, given
 * at once, as by vault_profile_token_nowait, and done is not called.
 * pipe or done NULL: vault_profile_token_nowait. */
int vault_profile_token_start(struct vault *v, const char *app,
    const json_t *request, const char *actor, struct keeper_pipe *pipe,
    vault_token_done done, void *arg, struct vault_token *out,
    const char **detail);

/* The names of every profile, in table order, for docs and errors:
 * names[i] for i < profile_count(). */
size_t profile_count(void);
const char *profile_name(size_t i);

#endif /* P8V_VAULT_PROFILES_H */
