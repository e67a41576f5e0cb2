/*
 * creds.h: API credentials (bearer tokens) in the "creds" database.
 *
 * A credential is stored under its id with its role, the apps it may act
 * on, a human name, and SHA-256 of its secret: the secret itself is never
 * stored, so the data file does not let anyone call the API. Secrets are
 * long random strings chosen by the issuer (api/ or cli/), so a plain hash
 * suffices (no password stretching); a bearer token carries the credential
 * id next to the secret so the lookup is by id (see api/).
 *
 * Value: 0x01 (format) || canonical JSON {"apps":[..],"created_at":n,"id":s,
 * "name":s,"revoked_at":n,"role":s,"secret_sha256":hex}. Decoding is strict
 * (P8V_ERR_INTEGRITY on anything else, including an id that differs from
 * the LMDB key; P8V_ERR_ALLOC when memory runs out, never
 * P8V_ERR_INTEGRITY).
 */
#ifndef P8V_STORE_CREDS_H
#define P8V_STORE_CREDS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Credential ids share the app-id alphabet; 64 keeps them loggable. */
#define CRED_ID_MAX 64
/* Roles are short lowercase words defined by api/ ("admin", "upload",
 * "sign"); the store only checks their shape: 1-32 of [a-z_]. */
#define CRED_ROLE_MAX 32
/* A human label: 1-128 printable ASCII characters. */
#define CRED_NAME_MAX 128
/* One credential may name at most this many apps; "*" alone means all. */
#define CRED_MAX_APPS 256
#define CRED_ALL_APPS "*"
#define CRED_SECRET_HASH_BYTES 32 /* SHA-256 */
/* Secrets longer than this are not tokens anyone issued. */
#define CRED_SECRET_MAX 1024

struct store_cred {
	char id[CRED_ID_MAX + 1];
	char role[CRED_ROLE_MAX + 1];
	char **apps;            /* n_apps malloc'd app ids, or one "*" */
	size_t n_apps;
	char name[CRED_NAME_MAX + 1];
	uint8_t secret_hash[CRED_SECRET_HASH_BYTES];
	int64_t created_at;     /* seconds since the epoch */
	int64_t revoked_at;     /* 0: not revoked */
};

/* SHA-256 of a secret (1..CRED_SECRET_MAX bytes). 0 or
 * P8V_ERR_INVALID_ARGUMENT. */
int store_cred_hash_secret(const void *secret, size_t len,
    uint8_t out[CRED_SECRET_HASH_BYTES]);

/* 1 if secret hashes to cred->secret_hash (constant-time compare), else 0.
 * Does not look at revoked_at: the caller refuses revoked credentials. */
int store_cred_secret_matches(const struct store_cred *cred,
    const void *secret, size_t len);

/* 1 if cred may act on app (listed, or "*"), else 0. */
int store_cred_allows_app(const struct store_cred *cred, const char *app);

/* Set the apps (copied; replaces any). 0, P8V_ERR_BAD_APP_ID,
 * P8V_ERR_BAD_FIELD (too many, or "*" together with others), P8V_ERR_ALLOC. */
int store_cred_set_apps(struct store_cred *cred, const char *const *apps,
    size_t n);

/* Free the apps and zero the struct. NULL-safe. */
void store_cred_free(struct store_cred *cred);

/*
 * Check every field: P8V_ERR_BAD_FIELD for a bad id, role, name, app list,
 * negative times, or revoked_at before created_at; P8V_ERR_BAD_APP_ID for
 * an invalid app id.
 */
int store_cred_check(const struct store_cred *cred);

/* Store a new credential (write transaction). 0, the errors of
 * store_cred_check, P8V_ERR_EXISTS (the id is taken), P8V_ERR_ALLOC,
 * P8V_ERR_NO_SPACE, P8V_ERR_STORE. */
int store_cred_create(struct store_txn *txn, const struct store_cred *cred);

/* Read one credential (caller frees with store_cred_free). 0,
 * P8V_ERR_BAD_FIELD (bad id), P8V_ERR_NOT_FOUND, P8V_ERR_INTEGRITY,
 * P8V_ERR_ALLOC, P8V_ERR_STORE. */
int store_cred_get(struct store_txn *txn, const char *id,
    struct store_cred *cred);

/* Mark revoked at `now` (a revoked credential keeps its first revoked_at
 * and 0 is returned). 0, the errors of store_cred_get, P8V_ERR_NO_SPACE. */
int store_cred_revoke(struct store_txn *txn, const char *id, int64_t now);

/* Remove for good. 0, P8V_ERR_BAD_FIELD, P8V_ERR_NOT_FOUND, P8V_ERR_STORE. */
int store_cred_delete(struct store_txn *txn, const char *id);

/* Every credential in id order; cred valid during the call. cb returns 0,
 * STORE_SCAN_STOP or a negative error (as store_scan). */
int store_cred_foreach(struct store_txn *txn,
    int (*cb)(const struct store_cred *cred, void *arg), void *arg);

#endif /* P8V_STORE_CREDS_H */
