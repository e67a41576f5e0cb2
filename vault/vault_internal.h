/*
 * vault_internal.h: what the files of vault/ share, and nothing else may use.
 *
 * Only the .c files of vault/ (and the unit tests of vault/) include this
 * header. api/, server/ and cli/ use vault/vault.h.
 */
#ifndef P8V_VAULT_VAULT_INTERNAL_H
#define P8V_VAULT_VAULT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/clock.h"
#include "crypto/masterkey.h"
#include "keeper/keeper.h"
#include "store/records.h"
#include "store/store.h"
#include "vault/vault.h"

/* This boot's id: common/clock.h's. */
#define VAULT_BOOT_ID_BYTES CLOCK_BOOT_ID_BYTES
/* "2026-11-23T22:50:01Z" and a NUL; years past 9999 do not fit and fail. */
#define VAULT_TIME_RFC3339_BYTES 21

struct tokcache;
struct active_slot;
struct checked_env;

struct vault {
	struct store *store;            /* the caller's */
	struct keeper *keeper;          /* owned: holds every key; its ring
	                                   is swapped by vault_set_keyring */
	struct tokcache *tokens;        /* the APNs token cache */
	/* vault_find_active's answers, each valid for one store generation
	 * (vault.c). */
	struct active_slot *active;
	/* Records (envelope and AAD) the keeper vouched for in this process
	 * (vault.c, checked_has): a cached token is handed out for them
	 * without asking the keeper again. */
	struct checked_env *checked;
	pthread_mutex_t checked_lock;
	int64_t apns_reuse_s;
	uint8_t boot_id[VAULT_BOOT_ID_BYTES]; /* all zero: unknown */
	/* Where the key check reaches APNs (vault_set_apns_check; NULL:
	 * the defaults); strings owned. */
	struct apns_client_config *apns_check;
	struct vault_quotas quotas;     /* vault_set_quotas */
	struct vault_rates *rates;      /* uploads per token (quota.c) */

	/* Counters for vault_stats (relaxed atomics: metrics only). */
	_Atomic uint64_t apns_mints[VAULT_MINT_REASONS];
	_Atomic uint64_t apns_cache_hits;
	_Atomic uint64_t apns_mint_lock_waits;
	_Atomic uint64_t apns_rejections;
	_Atomic uint64_t apns_failures;
	_Atomic uint64_t app_signs;
	_Atomic uint64_t app_sign_failures;
};

/* The caches of vault.c (find_active's answers, the vouched memo): set up
 * in vault_create, freed in vault_destroy (life.c). 0, P8V_ERR_ALLOC,
 * P8V_ERR_INTERNAL; destroy is safe on what a failed create left. */
int vault_caches_create(struct vault *v);
void vault_caches_destroy(struct vault *v);

/* Add one to a counter of struct vault. */
#define VAULT_COUNT(counter) \
	atomic_fetch_add_explicit(&(counter), 1, memory_order_relaxed)

/*
 * Sign another Apple JWT (App Store Connect, Sign in with Apple, MusicKit,
 * WeatherKit, DeviceCheck, Maps) with the app's active key for env (chosen
 * as vault_apns_token chooses). The key must carry the profile's service.
 * The keeper checks the fields again, builds the header and the claims
 * from them and the record's authenticated Key ID and Team ID, takes iat
 * from its clock and signs (keeper_sign_profile); nothing is cached and
 * nothing audited (per-request tokens), but every call counts in
 * vault_stats. out->issued_at is iat; out->expires_at the "exp" claim if
 * the profile has one, else iat + VAULT_APNS_LIFETIME_S; out->minted 1.
 * out is zeroed on failure.
 * Returns 0, P8V_ERR_BAD_APP_ID, P8V_ERR_APP_NOT_FOUND,
 * P8V_ERR_NO_ACTIVE_KEY, P8V_ERR_SERVICE_NOT_ALLOWED, P8V_ERR_INTEGRITY,
 * P8V_ERR_MASTER_KEY_MISSING, P8V_ERR_INVALID_ARGUMENT (NULL pointers, bad
 * env, fields the keeper refuses, bad actor), P8V_ERR_TOO_LARGE,
 * P8V_ERR_SECMEM, P8V_ERR_ALLOC, P8V_ERR_CRYPTO, P8V_ERR_STORE.
 */
int vault_sign_app(struct vault *v, const char *app, enum key_env env,
    const struct keeper_profile *fields, const char *actor,
    struct vault_token *out);

/*
 * vault_sign_app on a keeper pipe (keeper.h): the signature is queued and
 * P8V_ERR_PENDING returned; done(arg, result, token) runs when its answer
 * is read, as vault_sign_app would have returned (the token's out filled
 * as by it). Any other return is vault_sign_app's answer, given at once
 * (a pipe that cannot take the call, P8V_ERR_BUSY, is bypassed: the call
 * is made synchronously), and done is not called.
 */
int vault_sign_app_start(struct vault *v, const char *app, enum key_env env,
    const struct keeper_profile *fields, const char *actor,
    struct keeper_pipe *pipe, vault_token_done done, void *arg,
    struct vault_token *out);

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

/* rec's bytes as the keeper takes them (pointers into rec and aad). */
void vault_keeper_record(const struct key_record *rec, const uint8_t *aad,
    size_t aad_len, struct keeper_record *out);

/* Log that rec cannot be used to sign (step: the keeper's check that
 * failed, or "aad"), with app, Key ID and the error. */
void vault_log_unusable(const struct key_record *rec, const char *step,
    int err);

/*
 * Check that rec's sealed key opens under rec's own identity and metadata
 * and is the key of its public point (keeper_vouch), without using it.
 * For answers that sign nothing, such as an APNs token handed out from the
 * cache: without it, a record copied under another app (same Team ID, Key
 * ID and key) got that app's cached token although its sealed key is
 * bound to the other app (tests/integration/test_faults.py, damaged
 * records). A record that fails is logged (vault_log_unusable).
 * Returns 0, P8V_ERR_INTEGRITY, P8V_ERR_MASTER_KEY_MISSING,
 * P8V_ERR_INVALID_ARGUMENT (a tombstone, NULL pointers), P8V_ERR_SECMEM,
 * P8V_ERR_ALLOC.
 */
int vault_record_vouch(struct vault *v, const struct key_record *rec);

/*
 * vault_record_vouch with rec's authenticated data already computed (from
 * vault_find_active_aad). A record whose exact bytes (envelope and AAD)
 * the keeper vouched for before in this process is vouched for without
 * asking the keeper again (see checked_has in vault.c). Same returns as
 * vault_record_vouch.
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

/*
 * Key identity across apps (vault/identity.c).
 * vault_team_warnings: if rec (just committed) is an active APNs key and
 * its team has other active APNs keys for an overlapping environment (in
 * any app), add a warning {"code":"multiple_active_apns_keys","message",
 * "team_id","environment","other_keys":[{"app","key_id","environment"}]}
 * to meta's "warnings" array (made if absent) and log why it matters.
 * Reads the team index in its own read transaction. 0, P8V_ERR_ALLOC,
 * P8V_ERR_STORE (the caller's change is committed either way).
 */
int vault_team_warnings(struct vault *v, const struct key_record *rec,
    json_t *meta);
/*
 * The DeviceCheck token of the app's active key for env: Apple's
 * DeviceCheck token is exactly an APNs provider token, so this is the
 * shared per-(team, Key ID, fingerprint) APNs token (vault_apns_token's
 * cache and rules; a mint is audited as "apns.mint" with
 * "service":"devicecheck"). The key must have been uploaded for both
 * "apns" and "devicecheck": the token is one APNs takes, so a key not
 * allowed APNs gets none. Returns as vault_apns_token
 * (P8V_ERR_SERVICE_NOT_ALLOWED: the key lacks either service).
 */
int vault_devicecheck_token(struct vault *v, const char *app,
    enum key_env env, const char *actor, struct vault_token *out);
int vault_apns_forget_txn(struct store_txn *txn, const struct key_record *rec);
void vault_apns_forget_memory(struct vault *v, const struct key_record *rec);

/*
 * vault_apns_token for one given record (the key check): the shared token
 * of rec's (Team ID, Key ID, fingerprint), from the cache or minted (the
 * mint reads the record again in its transaction: a revocation wins).
 * The caller read rec and had it vouched for (vault_record_vouch).
 * Returns as vault_apns_token; P8V_ERR_KEY_REVOKED for a tombstone.
 */
int vault_apns_token_key(struct vault *v, const struct key_record *rec,
    const char *actor, struct vault_token *out);

/*
 * The check of an upload (vault_key_upload with check; vault/check.c).
 * vault_check_upload runs it for rec, sealed and not stored: a stored
 * record of the same app and Key ID with the same Team ID and material is
 * checked as vault_key_check does (c->answer set, nothing left to store);
 * another stored record: nothing is checked (the upload's transaction
 * refuses it); no record: the keeper signs rec's first token (c->minted),
 * the check runs with it, and c->answer and c->token wait for
 * vault_check_upload_txn. Returns 0 (every check ok, or none run),
 * P8V_ERR_APPLE_CHECK_FAILED, _UNREACHABLE, _TIMEOUT (c->answer set: the
 * answer the caller hands on), vault_key_check's errors.
 * vault_check_upload_txn: in the upload's transaction, once rec is put:
 * the results, the "key.check" and "apns.mint" events and the token's
 * sealed copy. vault_check_upload_done: after the commit, the token into
 * the cache. vault_check_upload_finish frees c (NULL-safe members).
 */
struct vault_upload_check {
	json_t *answer;                 /* the check answer, or NULL */
	int pending;                    /* results for vault_check_upload_txn */
	struct keeper_apns_token token; /* with pending: rec's first token */
	char *results;                  /* with pending: the "checks" text */
};
int vault_check_upload(struct vault *v, const struct key_record *rec,
    const char *actor, struct vault_upload_check *c);
int vault_check_upload_txn(struct store_txn *txn, struct vault *v,
    const struct key_record *rec, const char *actor,
    struct vault_upload_check *c);
void vault_check_upload_done(struct vault *v, const struct key_record *rec,
    struct vault_upload_check *c);
void vault_check_upload_finish(struct vault_upload_check *c);

/* vault_checks_attach from results text read before (NULL: none). */
int vault_checks_attach_text(const char *text, json_t *meta);
/* vault_checks_attach in a read transaction of its own: for the answers
 * of a change (upload, activate, revoke), after its commit. */
int vault_checks_attach_read(struct vault *v, const struct key_record *rec,
    json_t *meta);
/* Free the check configuration (life.c's vault_destroy). NULL-safe. */
void vault_check_config_free(struct apns_client_config *cfg);

/*
 * The wrap budget (crypto/envelope.h, store/masterkeys.h): add n new
 * envelopes sealed under master key mk_id to its count, inside the write
 * transaction that stores them, and log a warning when the count passes
 * ENVELOPE_WRAPS_WARN (2^30). Returns store_master_key_wraps_add's
 * errors.
 */
int vault_count_wraps(struct store_txn *txn,
    const uint8_t mk_id[MASTER_KEY_ID_BYTES], uint64_t n);

/*
 * key_record_update's re-seal (store/records.h) through the keeper, the
 * new envelope counted in txn (vault_count_wraps): arg is a struct
 * vault_reseal.
 */
struct vault_reseal {
	struct keeper *keeper;
	struct store_txn *txn;
};
int vault_reseal(const struct key_record *old, struct key_record *rec,
    void *arg);

/*
 * TEST ONLY: replace the clocks the vault and the keeper read
 * (common/clock.h's clock_test_set). wall_s returns CLOCK_REALTIME seconds
 * (iat, record and audit times), boot_ns returns CLOCK_BOOTTIME
 * nanoseconds (token ages); NULL restores the real clock.
 * boot_id (16 bytes, or NULL for the real /proc/sys/kernel/random/boot_id)
 * is what the next vault_create takes as this boot's id.
 * Not reachable from any API, option, configuration file or environment
 * variable: only the unit tests of vault/ call it, before starting threads.
 * Declared here and only here on purpose.
 */
void vault_test_set_clocks(int64_t (*wall_s)(void), int64_t (*boot_ns)(void));
void vault_test_set_boot_id(const uint8_t *boot_id);

#endif /* P8V_VAULT_VAULT_INTERNAL_H */
