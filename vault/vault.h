/*
 * vault.h: the key-material boundary.
 *
 * Every operation on key material passes through this interface: sealing an
 * uploaded .p8, signing, re-sealing on a metadata change. It takes
 * validated fields and returns results (metadata as JSON, signed tokens),
 * never raw keys. The vault holds no key itself: it owns a keeper
 * (keeper/keeper.h), the one component that holds master keys and opens
 * envelopes, and a store (store/), and runs every operation as calls to
 * the two: it chooses records, keeps caches and the audit log, and asks
 * the keeper to seal, sign, re-seal and vouch.
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
 *    "updated_at", "version", "checks"}
 * Times are RFC 3339 UTC strings ("2026-11-23T22:50:01Z").
 * "checks": the last check with Apple per environment (vault_key_check),
 * {} when there was none; vault_key_meta_json alone leaves it out (it
 * reads no store). Kept beside the sealed record (store/checks.h), not in
 * its authenticated data; audit events do not carry it.
 */
#ifndef P8V_VAULT_VAULT_H
#define P8V_VAULT_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keeper/keeper.h"
#include "store/records.h"
#include "vault/apns_client.h"
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

/*
 * Clocks (common/clock.h). Token ages are measured on CLOCK_BOOTTIME
 * (monotonic, counts time spent suspended); iat and record times come from
 * CLOCK_REALTIME. Neither is an option: no API, option or environment
 * variable changes them. (The unit tests swap them through a hook declared
 * only in vault/vault_internal.h; integration tests run the daemon under
 * libfaketime.)
 */
struct vault_options {
	/* 0 = VAULT_APNS_REUSE_DEFAULT_S; otherwise VAULT_APNS_REUSE_MIN_S ..
	 * VAULT_APNS_REUSE_MAX_S, else vault_create fails with
	 * P8V_ERR_INVALID_ARGUMENT. */
	int64_t apns_reuse_seconds;
};

/*
 * Quotas of one tenant (issue 15, tenant isolation); 0 for no limit.
 * vault_create sets the defaults; the daemon takes its configuration
 * (vault_set_quotas). Checked on uploads only: a key already stored keeps
 * working whatever the quotas become.
 */
struct vault_quotas {
	unsigned int keys_per_app;       /* keys of one app, not revoked:
	                                    P8V_ERR_TOO_MANY_KEYS */
	unsigned int apps_per_token;     /* apps in which one token created
	                                    keys: P8V_ERR_TOO_MANY_APPS */
	unsigned int uploads_per_minute; /* uploads by one token per minute:
	                                    P8V_ERR_RATE_LIMITED */
	uint64_t records;                /* key records in the vault,
	                                    revoked ones too: P8V_ERR_VAULT_FULL */
};
/* A few keys an app rotates through (Apple allows two APNs keys per team
 * at once), with room for many topic-specific ones. */
#define VAULT_QUOTA_KEYS_PER_APP_DEFAULT 100
/* A portal backend creates one app per customer app it onboards. */
#define VAULT_QUOTA_APPS_PER_TOKEN_DEFAULT 10000
/* A hundred a second: a portal onboarding a batch of apps goes through,
 * a token hammering the single writer does not. */
#define VAULT_QUOTA_UPLOADS_PER_MINUTE_DEFAULT 6000
/* A million records: LMDB holds them in about 1 GiB. */
#define VAULT_QUOTA_RECORDS_DEFAULT 1000000

struct vault;

/* Replace the vault's quotas (copied). Call before serving: not
 * synchronised with uploads running. NULL-safe. */
void vault_set_quotas(struct vault *v, const struct vault_quotas *q);

/*
 * Create the vault over an open store, taking ownership of keeper (also on
 * failure), whose master keys are loaded. The store stays the caller's:
 * close it after vault_destroy. opts may be NULL (defaults). Checks the
 * keeper's keys against the store (vault_keys_check) and loads the
 * persisted APNs token cache: a token minted in this boot is aged on CLOCK_BOOTTIME, one from an earlier
 * boot by the wall clock (now - iat); tokens past the reuse period, from the
 * future, or that fail to open are dropped (and deleted from the store).
 * Returns 0, P8V_ERR_NO_MASTER_KEY, P8V_ERR_MASTER_KEY_MISMATCH,
 * P8V_ERR_INVALID_ARGUMENT (NULL store, keeper or out; reuse period out of
 * range), P8V_ERR_ALLOC, P8V_ERR_INTEGRITY (malformed master-key entries),
 * P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int vault_create(struct store *store, struct keeper *keeper,
    const struct vault_options *opts, struct vault **out);

/* 1 if the vault's keeper can serve keys now, 0 while a keeper process
 * is being started again (requests that need a key get 503
 * keeper_unavailable; /readyz says not ready). */
int vault_keeper_ready(struct vault *v);

/* The vault's keeper, for keeper pipes (keeper.h; api/http.c's event
 * loops): the same object for the vault's life, whatever keeper process
 * serves it after a SIGHUP or a restart. NULL for NULL. */
struct keeper *vault_keeper(struct vault *v);

/* Destroy the keeper (wiping its keys) and the in-memory token cache. No
 * call may be running. NULL-safe. */
void vault_destroy(struct vault *v);

/*
 * Replace the master keyring while the vault serves (the daemon does it on
 * SIGHUP, having read its master-key files again into a new keeper, fresh),
 * taking ownership of fresh (also on failure): its keyring replaces the
 * vault keeper's (keeper_replace). The new ring must hold every master key
 * a key record is sealed under (store_master_key_usage), so that a reload
 * never turns into failed requests, and must pass store_master_keys_check (keys it has not
 * seen are recorded). On any refusal nothing changes: the vault keeps its
 * ring, and the reason is logged (key ids only). New seals use the new
 * ring's primary key. Calls already running finish with the ring they
 * started with (a counted reference); the replaced ring is wiped when the
 * last of them ends. Thread-safe.
 * The new ring must also hold the current ring's primary key: a call that
 * began before the swap seals under it, and what it seals must stay
 * openable. A primary is dropped in two reloads (another key last, then
 * without it), as the rotation runbook (docs/operations.md) does.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (NULL), P8V_ERR_NO_MASTER_KEY (empty
 * ring), P8V_ERR_MASTER_KEY_PRIMARY_MISSING (the ring lacks the current
 * primary), P8V_ERR_MASTER_KEY_MISSING (records sealed under a key the
 * ring lacks), P8V_ERR_MASTER_KEY_RETIRED (it holds a retired key),
 * P8V_ERR_MASTER_KEY_MISMATCH, P8V_ERR_INTEGRITY, P8V_ERR_ALLOC,
 * P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int vault_set_keyring(struct vault *v, struct keeper *fresh);

/*
 * The keeper's master keys checked against the store's record of them
 * (store_master_keys_check with the keeper's ids and check values: keys
 * the store has not seen are recorded). The CLI calls it before it works
 * on a state directory; vault_create and vault_set_keyring call it too.
 * Returns as store_master_keys_check; P8V_ERR_INVALID_ARGUMENT for NULL.
 */
int vault_keys_check(struct store *store, struct keeper *keeper);

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
	int check;              /* 1: check with Apple first (vault_key_check's
	                         * defaults); store only if every check is ok */
	char *exists_key_id;    /* NULL, or IDS_APPLE_ID_LEN + 1 bytes: on
	                         * P8V_ERR_KEY_EXISTS, the Key ID of the app's
	                         * record in the way (key_id itself: other
	                         * material under it; another: this material
	                         * under that Key ID). Only ids of up->app */
};

/*
 * Validate, seal and store a .p8. *created is 1 for a new record (201), 0 when
 * the same key material was already stored under the same ids (200, nothing
 * changes, not even the state: *meta is the stored record's). *meta gets the
 * key metadata object, with a "warnings" array when a new active APNs key
 * leaves its team with more than one for an environment (vault_key_activate
 * adds it the same way). Checks run in this order: ids, environment, services,
 * topics, actor, then the .p8 itself; the first failure decides.
 * With activate, the new key is ACTIVE and every other ACTIVE key of the app
 * whose environment overlaps (equal, or either is "both") becomes STANDBY,
 * in the same transaction as the insert and its audit event ("key.upload").
 * Returns 0, any P8V_ERR_P8_* (from p8_parse, unchanged), P8V_ERR_BAD_APP_ID,
 * P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID, P8V_ERR_BAD_FIELD (environment,
 * services, topics), P8V_ERR_KEY_EXISTS (different material or Team ID under
 * this app and Key ID, or this material stored under another Key ID of the
 * app and revoked), P8V_ERR_KEY_IDENTITY_CONFLICT (this material is stored,
 * not revoked, under another Key ID or Team ID in any app: found through
 * the store's fingerprint index), P8V_ERR_KEY_REVOKED (this app and Key ID were revoked: a
 * revoked Key ID is never reused), P8V_ERR_INVALID_ARGUMENT (NULL pointers,
 * a missing or invalid actor), P8V_ERR_NO_MASTER_KEY, P8V_ERR_SECMEM,
 * P8V_ERR_ALLOC, P8V_ERR_CRYPTO, P8V_ERR_INTEGRITY (a stored record of the
 * app fails to decode or to re-seal), P8V_ERR_NO_SPACE, P8V_ERR_STORE,
 * and the quotas (struct vault_quotas): P8V_ERR_RATE_LIMITED,
 * P8V_ERR_TOO_MANY_APPS, P8V_ERR_TOO_MANY_KEYS, P8V_ERR_VAULT_FULL.
 * On any error nothing is stored and *meta is NULL.
 * With up->check, after the .p8 is sealed and before anything is stored,
 * the key is checked with Apple as vault_key_check does: a new key with a
 * token the keeper signs for it, which becomes the key's shared APNs token
 * (persisted and cached with the record, so the check costs no extra
 * token update); a key stored already with the same material, with its
 * shared token. *meta's "checks" then holds the results. If a check is not ok nothing
 * is stored (but the "key.check" audit event) and the call returns
 * P8V_ERR_APPLE_CHECK_FAILED with *meta set to the check answer
 * ({"ok": false, "checks": {...}}); P8V_ERR_APPLE_UNREACHABLE and
 * P8V_ERR_APPLE_TIMEOUT with *meta {"cause": "..."}; also
 * P8V_ERR_MISSING_FIELD (no topic to check with).
 */
int vault_key_upload(struct vault *v, const struct vault_upload *up,
    json_t **meta, int *created);

/*
 * Where the key check reaches APNs (vault_key_check). cfg's strings are
 * copied; NULL members keep the defaults (Apple's hosts, the system's CA
 * store, no proxy, APNS_CLIENT_TIMEOUT_DEFAULT_MS). Call before serving
 * (not thread-safe against running checks). A vault never given one uses
 * the defaults.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (apns_client_config_check refused
 * cfg: logged with the field), P8V_ERR_ALLOC.
 */
int vault_set_apns_check(struct vault *v, const struct apns_client_config *cfg);

/*
 * Check a stored key with Apple: for each environment (environment NULL:
 * the key's own, both for "both"; else "development" or "production"),
 * one POST /3/device/<VAULT_CHECK_DEVICE_TOKEN> to APNs with the key's
 * shared provider token (vault_apns_token_key: the token the signing API
 * hands out; minted, audited and persisted as any, if there is none) and
 * the topic (NULL: the key's first topic, else the app id when it looks
 * like a bundle id). The answer (*out, caller's) is
 *   {"app", "key_id", "ok": every check ok, "checks": {"<environment>":
 *    {"ok", "environment", "topic", "apns_status", "apns_reason",
 *     "meaning", "checked_at"}}}
 * and the results are kept as the key's "checks" (store/checks.h), with
 * a "key.check" audit event, in one transaction. APNs's answer
 * 400 BadDeviceToken is ok; every other answer is not (its "meaning" says
 * why). Only the token leaves the vault; no key is opened but by the
 * keeper's mint.
 * Returns 0 (APNs answered: see "ok"), P8V_ERR_BAD_APP_ID,
 * P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_FIELD (environment or topic),
 * P8V_ERR_MISSING_FIELD (no topic to use), P8V_ERR_KEY_NOT_FOUND,
 * P8V_ERR_KEY_REVOKED, P8V_ERR_SERVICE_NOT_ALLOWED (the key lacks
 * "apns"), P8V_ERR_APPLE_UNREACHABLE, P8V_ERR_APPLE_TIMEOUT (*out then
 * {"cause": "...", "environment": "..."}: an audit event, no result kept),
 * vault_apns_token's errors, P8V_ERR_INVALID_ARGUMENT (NULL, bad actor),
 * P8V_ERR_ALLOC, P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int vault_key_check(struct vault *v, const char *app, const char *key_id,
    const char *environment, const char *topic, const char *actor,
    json_t **out);

/* The device token every check sends to: 64 hex digits, all zero; no
 * device has it, so APNs answers BadDeviceToken once it accepted the rest. */
#define VAULT_CHECK_DEVICE_TOKEN \
	"0000000000000000000000000000000000000000000000000000000000000000"

/* Metadata of one key / all keys of an app in Key ID order (an array,
 * empty for an unknown app; tombstones included).
 * Returns 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_KEY_NOT_FOUND,
 * P8V_ERR_INVALID_ARGUMENT, P8V_ERR_INTEGRITY (a stored record fails to
 * decode), P8V_ERR_ALLOC, P8V_ERR_STORE. */
int vault_key_get(struct vault *v, const char *app, const char *key_id,
    json_t **meta);
int vault_key_list(struct vault *v, const char *app, json_t **array);

/*
 * Make a standby key the app's active key (the previously active keys whose
 * environment overlaps become standby). Re-seals the records whose metadata
 * changes; one transaction with its audit event ("key.activate").
 * Activating the active key is a no-op (no audit event). The new key's APNs
 * token is minted on the next request (the cache is keyed on the key).
 * Returns 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_KEY_NOT_FOUND,
 * P8V_ERR_KEY_REVOKED, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_INTEGRITY (a record
 * fails to open for re-sealing), P8V_ERR_MASTER_KEY_MISSING,
 * P8V_ERR_NO_MASTER_KEY, P8V_ERR_ALLOC, P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int vault_key_activate(struct vault *v, const char *app, const char *key_id,
    const char *actor, json_t **meta);

/*
 * Revoke: destroy the sealed key and keep a tombstone with its metadata
 * (state "revoked", no envelope, "master_key_id" null), drop the key's
 * cached APNs token (memory and store) and append an audit event
 * ("key.revoke"), in one transaction. Works on a record whose envelope no
 * longer opens. Revoking a revoked key returns P8V_ERR_KEY_REVOKED.
 * Returns 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_KEY_NOT_FOUND,
 * P8V_ERR_KEY_REVOKED, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC,
 * P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int vault_key_revoke(struct vault *v, const char *app, const char *key_id,
    const char *actor, json_t **meta);

/*
 * Incident response for a key that leaked: every copy of the key whose
 * fingerprint (hex SHA-256 of its SPKI, 64 characters, either case) is
 * given, in every app, found through the store's fingerprint index.
 * vault_key_find: *array gets their metadata objects in (app, Key ID)
 * order, tombstones included (empty if none).
 * vault_key_revoke_fingerprint: revoke every copy that is not revoked yet,
 * as vault_key_revoke does one (tombstone, cached APNs token dropped, a
 * "key.revoke" audit event each, with "by":"fingerprint"), all in one
 * transaction; *array gets the metadata of every copy afterwards.
 * Returns 0, P8V_ERR_BAD_FIELD (not a fingerprint), P8V_ERR_KEY_NOT_FOUND
 * (revoke: no copy), P8V_ERR_KEY_REVOKED (revoke: every copy already
 * revoked), P8V_ERR_INVALID_ARGUMENT, P8V_ERR_INTEGRITY (a copy fails to
 * decode), P8V_ERR_ALLOC, P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int vault_key_find(struct vault *v, const char *fingerprint, json_t **array);
/* A fingerprint as these take it: 64 hex characters (either case) into
 * out, lowercased. 0 or P8V_ERR_BAD_FIELD. */
int vault_fingerprint_parse(const char *in,
    char out[KEY_RECORD_FINGERPRINT_HEX + 1]);
int vault_key_revoke_fingerprint(struct vault *v, const char *fingerprint,
    const char *actor, json_t **array);

/* A signed token. */
struct vault_token {
	char *token;            /* compact JWS, malloc'd: base64url characters
	                         * and two dots only, nothing JSON escapes */
	char key_id[11];
	char team_id[11];
	int64_t issued_at;      /* iat, seconds since the epoch */
	int64_t expires_at;     /* issued_at + lifetime */
	int minted;             /* 1: minted for this call, 0: from the cache */
};

void vault_token_finish(struct vault_token *t); /* frees and wipes token */

/* The end of a signature queued on a keeper pipe (vault_profile_token_
 * start): its result and, for 0, the token (done may take tok->token,
 * setting it to NULL; the rest is finished after it returns). */
typedef void (*vault_token_done)(void *arg, int result,
    struct vault_token *tok);

/* Why the caller reports a token rejected by APNs. */
enum vault_reject_reason {
	VAULT_REJECT_NONE = 0,
	VAULT_REJECT_EXPIRED,   /* ExpiredProviderToken */
	VAULT_REJECT_INVALID,   /* InvalidProviderToken */
};

/*
 * The APNs provider token for the app's active key for env: with
 * KEY_ENV_BOTH any active key (one bound to "both" first, else the first in
 * Key ID order); with a specific environment an active key bound to it,
 * else an active "both" key. One token per (team, key id, fingerprint) for
 * the whole vault, reused while younger than the reuse period (age on
 * CLOCK_BOOTTIME), minted when older, when the key changed, or when a
 * rejection of exactly the current token is reported and the last mint is
 * at least VAULT_APNS_REJECT_MIN_INTERVAL_S old. Concurrent callers for a
 * cold key share one mint (a failed mint fails them all alike).
 * rejected_token and reason go together: both NULL/VAULT_REJECT_NONE, or
 * both set (a token APNs refused, and why); each report is logged (ids and
 * reason, never the token). Every mint is audited ("apns.mint", with its
 * reason) and persisted sealed; a token is handed out only once both are
 * committed. out is filled on success (free with vault_token_finish) and
 * zeroed on failure. actor names the caller in the audit event.
 * Returns 0, P8V_ERR_BAD_APP_ID, P8V_ERR_APP_NOT_FOUND (no record at all),
 * P8V_ERR_NO_ACTIVE_KEY (records, none active for env),
 * P8V_ERR_SERVICE_NOT_ALLOWED (the key lacks "apns"), P8V_ERR_INTEGRITY (the
 * record fails to decode, to open or to match its public point: logged with
 * app and Key ID, never signed from), P8V_ERR_MASTER_KEY_MISSING (sealed
 * under a master key that is not loaded), P8V_ERR_KEY_REVOKED (revoked while
 * the token was being minted), P8V_ERR_INVALID_ARGUMENT (NULL pointers, bad
 * env, reason without token or token without reason, bad actor),
 * P8V_ERR_SECMEM, P8V_ERR_ALLOC, P8V_ERR_CRYPTO, P8V_ERR_NO_SPACE,
 * P8V_ERR_STORE.
 */
int vault_apns_token(struct vault *v, const char *app, enum key_env env,
    const char *rejected_token, enum vault_reject_reason reason,
    const char *actor, struct vault_token *out);

/*
 * vault_apns_token without a rejection report, for a caller that must not
 * wait (a libmicrohttpd event-loop thread): the cached token of the app's
 * active key if vault_apns_token would hand it out as it is; else
 * P8V_ERR_WOULD_BLOCK (no token yet, too old, or a mint is running),
 * and the caller calls vault_apns_token where waiting for a mint stalls no
 * one else. Never mints, never waits for a mint, audits nothing (a cached
 * token is not audited either way). The other errors are those of
 * vault_apns_token's key choice.
 */
int vault_apns_token_cached(struct vault *v, const char *app,
    enum key_env env, struct vault_token *out);

/* vault_apns_token_cached for DeviceCheck (vault_devicecheck_token's key:
 * "apns" and "devicecheck"). */
int vault_devicecheck_token_cached(struct vault *v, const char *app,
    enum key_env env, struct vault_token *out);

/*
 * The key metadata object (see the top of this file) of rec, as the API and
 * the CLI print it: "public_key_pem" and "public_key_jwk" (kid = Key ID)
 * from the public point, "master_key_id" the hex id the envelope names (null
 * for a tombstone). *out belongs to the caller (json_decref).
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (NULL, or a public point not on
 * P-256), P8V_ERR_INTEGRITY (malformed envelope), P8V_ERR_ALLOC,
 * P8V_ERR_CRYPTO, P8V_ERR_INTERNAL (a time gmtime cannot represent).
 */
int vault_key_meta_json(const struct key_record *rec, json_t **out);

/* Add rec's last check results (store/checks.h) to meta (a key metadata
 * object) as "checks" ({} when none), inside a transaction: for readers
 * of the store such as `p8vault keys show`. 0, P8V_ERR_ALLOC,
 * P8V_ERR_STORE; unreadable results are logged and shown as {}. */
int vault_checks_attach(struct store_txn *txn, const struct key_record *rec,
    json_t *meta);

/* Why an APNs token was minted (audit "reason" and metrics label). */
enum vault_mint_reason {
	VAULT_MINT_COLD = 0,          /* "cold": first token of this team */
	VAULT_MINT_EXPIRED,           /* "expired": older than the reuse period */
	VAULT_MINT_KEY_CHANGED,       /* "key_changed": first token of a key of
	                                 a team that had one from another key */
	VAULT_MINT_REJECTED_EXPIRED,  /* "rejected_expired" */
	VAULT_MINT_REJECTED_INVALID,  /* "rejected_invalid" */
	VAULT_MINT_REASONS
};

/* "cold", "expired", ...; NULL for an unknown value. */
const char *vault_mint_reason_name(enum vault_mint_reason why);

/* Counters since vault_create, for metrics (each read atomically; the set
 * is not one snapshot). */
struct vault_stats {
	uint64_t apns_mints[VAULT_MINT_REASONS]; /* tokens minted, by reason */
	uint64_t apns_cache_hits;     /* tokens served from the cache */
	uint64_t apns_mint_lock_waits; /* mints that waited for the fleet's
	                                  mint lock (etcd store) */
	uint64_t apns_rejections;     /* rejection reports received */
	uint64_t apns_failures;       /* vault_apns_token calls that failed
	                                 after finding the key (open, sign,
	                                 store) */
	/* The store, when it is networked (etcd): */
	int store_remote;
	uint64_t store_round_trips;   /* requests sent to etcd */
	uint64_t store_revision;      /* the revision the mirror applied */
	uint64_t store_watch_down_ms; /* how long the watch has been down */
	uint64_t app_signs;           /* other Apple JWTs signed */
	uint64_t app_sign_failures;
	/* The keeper: */
	int keeper_up;                /* vault_keeper_ready */
	uint64_t keeper_restarts;     /* keeper_restarts */
	/* The store: */
	int store_up;                 /* store_ready */
	uint64_t store_used_bytes;    /* LMDB: the map's pages in use */
	uint64_t store_max_bytes;     /* LMDB: the most the map may grow to
	                                 (0: not known, etcd) */
	int records_known;            /* 1: records was counted */
	uint64_t records;             /* key records, revoked ones too */
	uint64_t records_max;         /* the quota (vault_quotas.records;
	                                 0: none) */
	/* The APNs token cache: */
	int64_t apns_reuse_s;         /* the reuse period */
	int64_t apns_oldest_age_ns;   /* tokcache_oldest_age_ns: the oldest
	                                 age a token asked for in the last
	                                 5 minutes had when asked */
};

/* Fill st. v and st must not be NULL. Not for a hot path: besides relaxed
 * loads it takes the keeper's and the store's locks briefly, opens a
 * read transaction (the record count) and walks the token cache. */
void vault_stats(struct vault *v, struct vault_stats *st);

#endif /* P8V_VAULT_VAULT_H */
