/*
 * profile.h: the rules of the Apple JWTs other than the APNs provider
 * token: which service each profile needs, which fields it takes, their
 * limits, and how its header and claims are built. Pure code, no key: the
 * keeper checks a struct keeper_profile with it and builds the token's
 * JSON from it (keeper_sign_profile); vault/profiles.c parses the client's
 * JSON into a struct keeper_profile with the same validators, so that both
 * sides apply one rule.
 *
 * The limits (keeper/keeper.h) and the reasons for them:
 * - PROFILE_ASC_EXPIRES_MAX_S: App Store Connect refuses a token whose exp
 *   is more than 20 minutes ahead; the default is that limit.
 * - PROFILE_APPLE_EXPIRES_MAX_S: Sign in with Apple and MusicKit: Apple's
 *   limit, 15777000 s (six months). Sign in with Apple defaults to a day
 *   (PROFILE_SIWA_EXPIRES_DEFAULT_S): servers cache client secrets.
 * - PROFILE_PUBLIC_EXPIRES_DEFAULT_S: MusicKit and Maps developer tokens
 *   are shipped to browsers and apps, so a leaked one should die soon: one
 *   hour unless the caller asks for more.
 * - PROFILE_WEATHERKIT_EXPIRES_MAX_S: Apple documents no limit; WeatherKit
 *   tokens are bearer credentials for a paid quota, so a leak should not
 *   outlive a day.
 * - PROFILE_MAPS_EXPIRES_MAX_S: no documented limit either; the same kind
 *   of token as MusicKit's, so the same six months.
 * - PROFILE_UUID_LEN: a UUID in its 8-4-4-4-12 text form.
 * - PROFILE_ID_MAX: client ids and service ids are reverse-DNS names;
 *   Apple's bundle ids are at most 155 characters, 255 leaves room.
 * - PROFILE_SCOPE_MAX, PROFILE_SCOPE_ITEM_MAX: App Store Connect scope, a
 *   token for a handful of operations, each "METHOD /path" of at most 256.
 * - PROFILE_ORIGIN_MAX, PROFILE_ORIGIN_ITEM_MAX: "https://", a DNS name
 *   (253) and a port.
 * - PROFILE_LIST_BYTES_MAX: a scope or origin list as the token carries it
 *   (compact JSON, escapes included), so that the token stays under
 *   JWT_MAX_TOKEN_BYTES: with the largest header (45 bytes) and other
 *   claims (128), 60 + 1 + 4/3 * 2176 + 1 + 86 = 3050 characters. The
 *   counts and lengths alone do not bound it: 32 scopes of 256 characters
 *   are 8 KB, twice that with JSON escapes, and would fail at signing,
 *   after the key was unsealed.
 */
#ifndef P8V_KEEPER_PROFILE_H
#define P8V_KEEPER_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keeper/keeper.h"

/* What a profile takes beyond "profile" and "environment". */
#define PROFILE_F_EXPIRES  0x01u   /* "expires_in" */
#define PROFILE_F_ISSUER   0x02u   /* "issuer_id" (required) */
#define PROFILE_F_CLIENT   0x04u   /* "client_id" (required) */
#define PROFILE_F_SERVICE  0x08u   /* "service_id" (required) */
#define PROFILE_F_SCOPE    0x10u   /* "scope" (optional) */
#define PROFILE_F_ORIGIN   0x20u   /* "origin" (optional) */

/* Header and claim members a builder adds beyond alg, kid, iss, iat. */
#define PROFILE_B_TYP_JWT  0x01u   /* header "typ":"JWT" */
#define PROFILE_B_HDR_ID   0x02u   /* header "id":"TEAM.SERVICE_ID" */
#define PROFILE_B_EXP      0x04u   /* claim "exp" */
#define PROFILE_B_AUD_ASC  0x08u   /* claim "aud":"appstoreconnect-v1" */
#define PROFILE_B_AUD_SIWA 0x10u   /* claim "aud":"https://appleid.apple.com" */
#define PROFILE_B_SUB      0x20u   /* claim "sub": client or service id */
#define PROFILE_B_ISS_UUID 0x40u   /* claim "iss" is the issuer id, not the
                                      team */

struct profile_rule {
	const char *name;
	uint32_t service;          /* KEY_SERVICE_* bit */
	unsigned int fields;       /* PROFILE_F_* */
	unsigned int build;        /* PROFILE_B_* */
	int64_t expires_default;   /* seconds; 0 when there is no exp */
	int64_t expires_max;
};

/* The rule of kind; NULL for an unknown kind. */
const struct profile_rule *profile_rule_of(enum keeper_profile_kind kind);
/* The rule named name; NULL if none. */
const struct profile_rule *profile_find(const char *name);
/* Number of profiles, and the name of the i-th (NULL past the end). */
size_t profile_count(void);
const char *profile_name(size_t i);

/* Validators, each of len bytes at s (1 if acceptable):
 * a UUID 8-4-4-4-12 (hex, either case); 1..PROFILE_ID_MAX of
 * [A-Za-z0-9.-] (and '_' with allow_us); "METHOD /path" (GET, POST, PATCH,
 * PUT, DELETE; printable ASCII, no space in the path, at most
 * PROFILE_SCOPE_ITEM_MAX); "https://" DNS-name [":" port] (labels of
 * 1..63 [A-Za-z0-9-] not starting or ending with '-', at most 253, port
 * 1..65535 without leading zeros, at most PROFILE_ORIGIN_ITEM_MAX). */
int profile_uuid_ok(const char *s, size_t len);
int profile_id_ok(const char *s, size_t len, int allow_us);
int profile_scope_ok(const char *s, size_t len);
int profile_origin_ok(const char *s, size_t len);

/*
 * Check every field of p against its profile's rules: a known kind;
 * expires_in within 1..max (0 exactly when the profile has no exp); the
 * required id valid and the ids it does not take empty; the list (only
 * for a profile that takes one) of 1..max distinct valid items, NUL
 * terminated within their buffers, at most PROFILE_LIST_BYTES_MAX as
 * compact JSON. 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC.
 */
int keeper_profile_check(const struct keeper_profile *p);

/*
 * The header and claims of p's token for key_id and team_id at now
 * (seconds since the epoch), member by member in the documented order
 * (vault/profiles.h). p is checked first (keeper_profile_check), the ids
 * too (they become token text). *header and *claims are new references,
 * NULL on failure. 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC.
 * Internal to the keeper (keeper_sign_profile); tests and the fuzzer look
 * at its output through vault/profiles.h's profile_build.
 */
int keeper_profile_build(const struct keeper_profile *p, const char *key_id,
    const char *team_id, int64_t now, json_t **header, json_t **claims);

#endif /* P8V_KEEPER_PROFILE_H */
