/*
 * vault.h: the key-material boundary.
 *
 * Every operation on key material passes through this interface: sealing an
 * uploaded .p8, unsealing to sign, re-sealing on a metadata change. It takes
 * validated fields and returns results (metadata as JSON, signed tokens),
 * never raw keys. Only this module holds the master keyring. The interface is
 * shaped so that it can become a separate, locked-down process that alone
 * holds the master key (as ssh-agent and OpenSSH's privilege separation do)
 * without touching api/: every argument and result is plain data that
 * serialises to JSON.
 *
 * All functions are thread-safe. Every function returns 0 or a P8V_ERR_*.
 * Returned json_t objects belong to the caller (json_decref); returned
 * strings are malloc'd and belong to the caller.
 *
 * Key metadata object (the same everywhere: API, CLI, audit):
 *   {"app", "key_id", "team_id", "environment": "development"|"production"|
 *    "both", "services": [..], "topics": [..], "state": "active"|"standby"|
 *    "revoked", "fingerprint": hex SHA-256 of the SPKI, "public_key_pem",
 *    "public_key_jwk": {...}, "master_key_id", "created_at", "created_by",
 *    "updated_at", "version"}
 * Times are RFC 3339 UTC strings ("2026-11-23T22:50:01Z").
 */
#ifndef P8V_VAULT_VAULT_H
#define P8V_VAULT_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crypto/masterkey.h"
#include "store/records.h"
#include "store/store.h"

/* APNs provider tokens are reused for this long by default (50 minutes:
 * Apple wants a refresh no more often than every 20 and no less often than
 * every 60 minutes; 50 leaves 10 minutes of slack for clock skew and
 * in-flight requests). */
#define VAULT_APNS_REUSE_DEFAULT_S (50 * 60)
#define VAULT_APNS_REUSE_MIN_S (20 * 60)
#define VAULT_APNS_REUSE_MAX_S (55 * 60)
/* Apple rejects a provider token whose iat is more than an hour old. */
#define VAULT_APNS_LIFETIME_S (60 * 60)
/* A reported rejection re-mints at most this often per team and key. */
#define VAULT_APNS_REJECT_MIN_INTERVAL_S (20 * 60)

/* Which clocks the vault reads; tests of the clock rules replace none of
 * these in production code: they run the daemon under libfaketime. */
struct vault_options {
	int64_t apns_reuse_seconds; /* 0 = VAULT_APNS_REUSE_DEFAULT_S */
};

struct vault;

/*
 * Create the vault over an open store, taking ownership of ring (also on
 * failure). Checks the ring against the store (store_master_keys_check) and
 * loads the persisted token cache.
 * Returns 0, P8V_ERR_NO_MASTER_KEY, P8V_ERR_MASTER_KEY_MISMATCH,
 * P8V_ERR_INVALID_ARGUMENT (reuse period out of range), P8V_ERR_STORE.
 */
int vault_create(struct store *store, struct master_keyring *ring,
    const struct vault_options *opts, struct vault **out);

/* Wipe the keyring and the in-memory token cache. NULL-safe. */
void vault_destroy(struct vault *v);

/* An upload, with fields the caller has parsed but not necessarily validated:
 * the vault validates every one of them again. */
struct vault_upload {
	const char *app;
	const char *key_id;
	const char *team_id;
	const uint8_t *p8;      /* the .p8 text, in the caller's guarded memory */
	size_t p8_len;
	enum key_env environment;
	uint32_t services;      /* KEY_SERVICE_* bits; 0 = APNs only */
	const char *const *topics;
	size_t n_topics;
	int activate;           /* 1: becomes the app's active key */
	const char *actor;      /* API token id, or "cli" */
};

/*
 * Validate, seal and store a .p8. *created is 1 for a new record (201), 0 when
 * the same key material was already stored under the same ids (200, nothing
 * changes). *meta gets the key metadata object.
 * Returns 0, any P8V_ERR_P8_* (from p8_parse), P8V_ERR_BAD_APP_ID,
 * P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID, P8V_ERR_BAD_FIELD (topics,
 * services), P8V_ERR_KEY_EXISTS (different material or ids under this app
 * and Key ID), P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int vault_key_upload(struct vault *v, const struct vault_upload *up,
    json_t **meta, int *created);

/* Metadata of one key / all keys of an app (array, possibly empty).
 * P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_KEY_NOT_FOUND. */
int vault_key_get(struct vault *v, const char *app, const char *key_id,
    json_t **meta);
int vault_key_list(struct vault *v, const char *app, json_t **array);

/*
 * Make a standby key the app's active key (the previously active key whose
 * environment overlaps becomes standby). Re-seals the records whose metadata
 * changes. Activating the active key is a no-op.
 * P8V_ERR_KEY_NOT_FOUND, P8V_ERR_KEY_REVOKED.
 */
int vault_key_activate(struct vault *v, const char *app, const char *key_id,
    const char *actor, json_t **meta);

/*
 * Revoke: destroy the sealed key and keep a tombstone with its metadata.
 * Revoking a revoked key returns P8V_ERR_KEY_REVOKED.
 */
int vault_key_revoke(struct vault *v, const char *app, const char *key_id,
    const char *actor, json_t **meta);

/* A signed token. */
struct vault_token {
	char *token;            /* compact JWS, malloc'd */
	char key_id[11];
	char team_id[11];
	int64_t issued_at;      /* iat, seconds since the epoch */
	int64_t expires_at;     /* issued_at + lifetime */
	int minted;             /* 1: minted for this call, 0: from the cache */
};

void vault_token_finish(struct vault_token *t); /* frees and wipes token */

/* Why the caller reports a token rejected by APNs. */
enum vault_reject_reason {
	VAULT_REJECT_NONE = 0,
	VAULT_REJECT_EXPIRED,   /* ExpiredProviderToken */
	VAULT_REJECT_INVALID,   /* InvalidProviderToken */
};

/*
 * The APNs provider token for the app's active key (for `environment`, or
 * any when KEY_ENV_BOTH). One token per (team, key id, fingerprint) for the
 * whole vault, reused for the reuse period, minted when older, when the key
 * changed, or when a rejection of exactly the current token is reported and
 * the last mint is at least 20 minutes old. Concurrent callers for a cold
 * team share one mint.
 * P8V_ERR_BAD_APP_ID, P8V_ERR_APP_NOT_FOUND, P8V_ERR_NO_ACTIVE_KEY,
 * P8V_ERR_KEY_REVOKED, P8V_ERR_SERVICE_NOT_ALLOWED, P8V_ERR_INTEGRITY (the
 * record fails to open: reported, never signed from).
 */
int vault_apns_token(struct vault *v, const char *app, enum key_env env,
    const char *rejected_token, enum vault_reject_reason reason,
    const char *actor, struct vault_token *out);

#endif /* P8V_VAULT_VAULT_H */
