/*
 * vault_internal.h: what the files of vault/ share, and nothing else may use.
 *
 * Only the .c files of vault/ include this header (vault/profiles.c builds the other
 * Apple JWTs on vault_sign_app). api/, server/ and cli/ use vault/vault.h.
 */
#ifndef P8V_VAULT_VAULT_INTERNAL_H
#define P8V_VAULT_VAULT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crypto/masterkey.h"
#include "store/records.h"
#include "store/store.h"
#include "vault/vault.h"

/* /proc/sys/kernel/random/boot_id is a UUID: 16 bytes. */
#define VAULT_BOOT_ID_BYTES 16
/* "2026-11-23T22:50:01Z" and a NUL; years past 9999 do not fit and fail. */
#define VAULT_TIME_RFC3339_BYTES 21

struct tokcache;
struct active_slot;
struct checked_env;

/*
 * A counted reference to a keyring. vault_set_keyring (the daemon's
 * SIGHUP) swaps the vault's keyring while operations run, so an operation
 * takes the ring once (vault_ring_get), uses that ring from start to end
 * (never a mix of two), and drops it (vault_ring_put); the last reference
 * to a replaced ring destroys it, wiping its keys. keys is read-only.
 */
struct vault_ring {
	struct master_keyring *keys;    /* owned */
	unsigned long refs;             /* under struct vault's ring_lock */
};

/* The vault's current keyring, with a reference; never NULL. */
struct vault_ring *vault_ring_get(struct vault *v);
/* Drop a reference from vault_ring_get. NULL-safe. */
void vault_ring_put(struct vault *v, struct vault_ring *ring);

struct vault {
	struct store *store;            /* the caller's */
	pthread_mutex_t ring_lock;      /* guards ring and every refs */
	struct vault_ring *ring;        /* current (holds one reference);
	                                   swapped by vault_set_keyring */
	struct tokcache *tokens;        /* the APNs token cache */
	/* vault_find_active's answers, each valid for one store generation
	 * (vault.c). */
	struct active_slot *active;
	/* Envelopes whose scalar has been checked against its record's
	 * public point in this process (vault.c, vault_sign_record). */
	struct checked_env *checked;
	pthread_mutex_t checked_lock;
	int64_t apns_reuse_s;
	uint8_t boot_id[VAULT_BOOT_ID_BYTES]; /* all zero: unknown */

	/* Counters for vault_stats (relaxed atomics: metrics only). */
	_Atomic uint64_t apns_mints[VAULT_MINT_REASONS];
	_Atomic uint64_t apns_cache_hits;
	_Atomic uint64_t apns_rejections;
	_Atomic uint64_t apns_failures;
	_Atomic uint64_t app_signs;
	_Atomic uint64_t app_sign_failures;
};

/* Add one to a counter of struct vault. */
#define VAULT_COUNT(counter) \
	atomic_fetch_add_explicit(&(counter), 1, memory_order_relaxed)

/*
 * Sign another Apple JWT (App Store Connect, Sign in with Apple, MusicKit,
 * WeatherKit, DeviceCheck, Maps) with the app's active key for env (chosen
 * as vault_apns_token chooses). The key must carry service_bit (one
 * KEY_SERVICE_* bit). build makes the JOSE header and the claims from the
 * record's validated fields (rec is valid during the call only) and now
 * (CLOCK_REALTIME seconds, the iat to use); it returns 0 with two new JSON
 * objects (their references pass to the caller; "alg" must be "ES256", a
 * "kid", if present, must equal rec->key_id) or a P8V_ERR_* that is
 * returned as is. The key is unsealed, used once and wiped; nothing is
 * cached and nothing audited (per-request tokens), but every call counts in
 * vault_stats. out->issued_at is now; out->expires_at the integer "exp"
 * claim if build set one, else now + VAULT_APNS_LIFETIME_S; out->minted 1.
 * out is zeroed on failure.
 * Returns 0, build's error, P8V_ERR_BAD_APP_ID, P8V_ERR_APP_NOT_FOUND,
 * P8V_ERR_NO_ACTIVE_KEY, P8V_ERR_SERVICE_NOT_ALLOWED, P8V_ERR_INTEGRITY,
 * P8V_ERR_MASTER_KEY_MISSING, P8V_ERR_INVALID_ARGUMENT (NULL pointers, bad
 * env, service_bit not one known bit, bad actor, header without "alg":
 * "ES256" or with another "kid"), P8V_ERR_TOO_LARGE, P8V_ERR_SECMEM,
 * P8V_ERR_ALLOC, P8V_ERR_CRYPTO, P8V_ERR_STORE.
 */
int vault_sign_app(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit,
    int (*build)(const struct key_record *rec, int64_t now, json_t **header,
        json_t **claims, void *arg),
    void *arg, const char *actor, struct vault_token *out);

/*
 * Find the app's active key for env (see vault_apns_token) in one read
 * transaction and check it carries service_bit. *rec gets a copy (caller
 * frees with key_record_free; zeroed on failure).
 * Returns 0, P8V_ERR_BAD_APP_ID, P8V_ERR_APP_NOT_FOUND,
 * P8V_ERR_NO_ACTIVE_KEY, P8V_ERR_SERVICE_NOT_ALLOWED, P8V_ERR_INTEGRITY,
 * P8V_ERR_ALLOC, P8V_ERR_STORE.
 */
int vault_find_active(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit, struct key_record *rec);

/*
 * vault_find_active, also handing back the record's authenticated data
 * (key_record_aad; *aad malloc'd, the caller frees it; NULL on failure).
 * Answers come from a cache of earlier answers while the store's
 * generation (store_generation: any commit by any process changes it) is
 * the one they were read at: no store transaction, no record decoding.
 * Same returns as vault_find_active.
 */
int vault_find_active_aad(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit, struct key_record *rec, uint8_t **aad,
    size_t *aad_len);

/*
 * vault_find_active, and the record vouched for (vault_record_vouch_aad):
 * for answers that sign nothing (a cached APNs token). A cached answer
 * remembers that it was vouched for, so a request neither copies the AAD
 * nor takes the memo's lock. *found (may be NULL) is 1 once the app's
 * active key was found, also when vouching for it then failed. Returns as
 * vault_find_active and vault_record_vouch.
 */
int vault_find_active_vouched(struct vault *v, const char *app,
    enum key_env env, uint32_t service_bit, struct key_record *rec,
    int *found);

/*
 * vault_find_active_vouched handing back only who the key is (Team ID, Key
 * ID, fingerprint: what its APNs tokens are cached under), not a copy of
 * the record: a cached APNs token needs nothing else (copying and freeing
 * the record, its envelope and topics was 2% of the daemon's CPU per
 * cached apns-token request). Same returns.
 */
struct tokcache_id;
int vault_find_active_ids(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit, struct tokcache_id *ids, int *found);

/*
 * Unseal rec's scalar (envelope_open with key_record_aad(rec)), rebuild the
 * key against rec's public point, sign header and claims, and wipe the
 * scalar and destroy the key before returning. *token is malloc'd (the
 * caller wipes and frees it); NULL on failure. A record that fails to open
 * is logged with app, Key ID and the reason.
 * Returns 0, P8V_ERR_INTEGRITY (fails to open, or the scalar does not match
 * the stored public point), P8V_ERR_MASTER_KEY_MISSING,
 * P8V_ERR_INVALID_ARGUMENT (a tombstone, NULL pointers, a bad header),
 * P8V_ERR_TOO_LARGE, P8V_ERR_SECMEM, P8V_ERR_ALLOC, P8V_ERR_CRYPTO.
 */
int vault_sign_record(struct vault *v, const struct key_record *rec,
    const json_t *header, const json_t *claims, char **token);

/* vault_sign_record with rec's authenticated data already computed (from
 * vault_find_active_aad). */
int vault_sign_record_aad(struct vault *v, const struct key_record *rec,
    const uint8_t *aad, size_t aad_len, const json_t *header,
    const json_t *claims, char **token);

/*
 * Check that rec's sealed key opens under rec's own identity and metadata
 * (envelope_open with key_record_aad(rec)), without using the key: the
 * plaintext is wiped at once. For answers that sign nothing, such as an
 * APNs token handed out from the cache: without it, a record copied under
 * another app (same Team ID, Key ID and key) got that app's cached token
 * although its sealed key is bound to the other app
 * (tests/integration/test_faults.py, damaged records). A record that fails
 * to open is logged as by vault_sign_record.
 * Returns 0, P8V_ERR_INTEGRITY, P8V_ERR_MASTER_KEY_MISSING,
 * P8V_ERR_INVALID_ARGUMENT (a tombstone, NULL pointers), P8V_ERR_SECMEM,
 * P8V_ERR_ALLOC.
 */
int vault_record_vouch(struct vault *v, const struct key_record *rec);

/*
 * vault_record_vouch with rec's authenticated data already computed (from
 * vault_find_active_aad). A record whose exact bytes (envelope and AAD)
 * this process has opened before is vouched for without opening it again
 * (see checked_has in vault.c); the first time, its scalar is also checked
 * against its public point (a mismatch is P8V_ERR_INTEGRITY, as signing
 * with it would be). Same returns as vault_record_vouch.
 */
int vault_record_vouch_aad(struct vault *v, const struct key_record *rec,
    const uint8_t *aad, size_t aad_len);

/* 1 if two key environments overlap (equal, or either is "both"). */
int vault_env_overlap(enum key_env a, enum key_env b);

/* 0 if actor is a valid "created_by"/audit actor, else
 * P8V_ERR_INVALID_ARGUMENT. */
int vault_actor_valid(const char *actor);

/* RFC 3339 UTC ("2026-11-23T22:50:01Z") of t seconds since the epoch.
 * 0 or P8V_ERR_INTERNAL (gmtime cannot represent t, or the year has more
 * than four digits). */
int vault_time_rfc3339(int64_t t, char out[VAULT_TIME_RFC3339_BYTES]);

/*
 * A new audit event {"time", "who", "what", "app", "key_id", "team_id",
 * "fingerprint", "result"} for rec (a new reference; NULL when out of
 * memory). The caller may add members, then appends it with
 * store_audit_append inside its write transaction.
 */
json_t *vault_audit_event(int64_t now, const char *actor, const char *what,
    const struct key_record *rec, const char *result);

/*
 * APNs token cache persistence (vault/apns.c).
 * vault_apns_load: read every persisted token into the in-memory cache at
 * vault_create (rules in vault.h) and delete the dropped ones. 0,
 * P8V_ERR_ALLOC, P8V_ERR_NO_SPACE, P8V_ERR_STORE; a blob that fails to
 * parse or open is dropped and logged, not an error.
 * vault_apns_forget_txn: delete rec's persisted token inside a write
 * transaction (none stored is fine). 0, P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 * vault_apns_forget_memory: drop rec's token from the in-memory cache; call
 * after the transaction that revoked rec committed, never inside one.
 */
int vault_apns_load(struct vault *v);
int vault_apns_forget_txn(struct store_txn *txn, const struct key_record *rec);
void vault_apns_forget_memory(struct vault *v, const struct key_record *rec);

/*
 * Persisted APNs tokens under a master-key rotation (vault/rotate.c); the
 * blob format and its AAD stay in apns.c.
 * vault_apns_blob_master_key_id: the master key id the blob's envelope
 * names. 0 or P8V_ERR_INTEGRITY (malformed blob).
 * vault_apns_blob_rewrap: the blob stored under key, with its token's data
 * key re-wrapped under new_mk (envelope_rewrap; the header and the sealed
 * token unchanged). *out is malloc'd (ciphertext only), as long as blob.
 * Returns 0, P8V_ERR_INTEGRITY (malformed blob or key, altered),
 * P8V_ERR_MASTER_KEY_MISSING, P8V_ERR_ALLOC, P8V_ERR_CRYPTO,
 * P8V_ERR_INVALID_ARGUMENT.
 */
int vault_apns_blob_master_key_id(const uint8_t *blob, size_t len,
    uint8_t id[MASTER_KEY_ID_BYTES]);
int vault_apns_blob_rewrap(const struct master_keyring *ring,
    const struct master_key *new_mk, const char *key, const uint8_t *blob,
    size_t len, uint8_t **out, size_t *out_len);

/*
 * TEST ONLY: replace the clocks the vault reads. wall_s returns
 * CLOCK_REALTIME seconds (iat, record and audit times), boot_ns returns
 * CLOCK_BOOTTIME nanoseconds (token ages); NULL restores the real clock.
 * boot_id (16 bytes, or NULL for the real /proc/sys/kernel/random/boot_id)
 * is what the next vault_create takes as this boot's id.
 * Not reachable from any API, option, configuration file or environment
 * variable: only the unit tests of vault/ call it, before starting threads.
 * Declared here and only here on purpose.
 */
void vault_test_set_clocks(int64_t (*wall_s)(void), int64_t (*boot_ns)(void));
void vault_test_set_boot_id(const uint8_t *boot_id);

#endif /* P8V_VAULT_VAULT_INTERNAL_H */
