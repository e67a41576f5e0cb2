/*
 * apitoken.h: the API bearer token's format and the role vocabulary of
 * credentials: what the daemon (api/auth.h) checks and the CLI (`p8vault
 * token`) issues, so that neither depends on the other.
 *
 * It lives in store/ because it is the outside form of a stored credential
 * (store/creds.h): the token carries the credential's id, its secret
 * hashes to what the credential keeps (store_cred_hash_secret), and the
 * role names are what the credential's role field holds. Nothing here
 * touches the store itself.
 *
 * A token is 64 characters:
 *
 *   p8v_<id>_<secret>
 *   id      16 lowercase hex characters (8 random bytes): the credential's
 *           id in the store, not secret; it is the "actor" recorded in
 *           audit events and logs;
 *   secret  43 characters of base64url without padding (32 random bytes).
 *
 * The store keeps only SHA-256 of the secret's 43 characters (no
 * stretching is needed: the secret has 256 random bits).
 *
 * Roles, stored by name in the credential:
 *   portal  the upload API (the developer portal's backend);
 *   signer  the signing API (provider daemons);
 *   admin   both, and the admin routes.
 */
#ifndef P8V_STORE_APITOKEN_H
#define P8V_STORE_APITOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "store/creds.h"

#define APITOKEN_PREFIX "p8v_"
#define APITOKEN_PREFIX_LEN 4
/* 8 random bytes: ids only need to be unique (collisions are retried), and
 * 16 characters stay readable in logs and `p8vault token list`. */
#define APITOKEN_ID_BYTES 8
#define APITOKEN_ID_LEN (2 * APITOKEN_ID_BYTES)
/* 32 random bytes: 256 bits, beyond any guessing, so a plain hash stores
 * it safely. */
#define APITOKEN_SECRET_BYTES 32
/* base64url without padding of APITOKEN_SECRET_BYTES. */
#define APITOKEN_SECRET_LEN 43
#define APITOKEN_LEN (APITOKEN_PREFIX_LEN + APITOKEN_ID_LEN + 1 + \
    APITOKEN_SECRET_LEN)

/* The roles a credential may hold. The values are api/router.h's enum
 * api_role (asserted in api/auth.c). */
enum apitoken_role {
	APITOKEN_ROLE_NONE = 0,        /* no role: grants nothing */
	APITOKEN_ROLE_PORTAL,
	APITOKEN_ROLE_SIGNER,
	APITOKEN_ROLE_ADMIN,
};

/* The stored name of a role ("portal", "signer", "admin"), or NULL for
 * APITOKEN_ROLE_NONE and unknown values. */
const char *apitoken_role_name(enum apitoken_role role);

/* The role named name (exact, case-sensitive). 0 or
 * P8V_ERR_INVALID_ARGUMENT (NULL, unknown). */
int apitoken_role_parse(const char *name, enum apitoken_role *out);

/*
 * Issue a new token: fills token (APITOKEN_LEN characters and a NUL;
 * token_size must be at least APITOKEN_LEN + 1; the caller should pass
 * guarded memory, secmem_alloc, and wipe it after showing it once), id
 * (its id) and secret_hash (what the store keeps). The random secret
 * passes only through guarded memory.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_SECMEM, P8V_ERR_RANDOM.
 * On failure token is wiped.
 */
int apitoken_new(char *token, size_t token_size, char id[APITOKEN_ID_LEN + 1],
    uint8_t secret_hash[CRED_SECRET_HASH_BYTES]);

/*
 * Split token (len bytes, not necessarily NUL-terminated) strictly: the
 * prefix, 16 lowercase hex, '_', 43 base64url characters whose last one
 * carries no stray bits (the canonical encoding of 32 bytes). id gets the
 * id, *secret points at the secret inside token (APITOKEN_SECRET_LEN
 * bytes). Runs on every authenticated request: no allocation, no branch
 * per character.
 * Returns 0 or P8V_ERR_UNAUTHORIZED (anything else).
 */
int apitoken_parse(const char *token, size_t len, char id[APITOKEN_ID_LEN + 1],
    const char **secret);

#endif /* P8V_STORE_APITOKEN_H */
