/*
 * rotate.h: master-key rotation at the key-material boundary, which
 * master keys the stored data depends on, and retiring one that nothing
 * depends on any more.
 *
 * A rotation re-wraps the 32-byte data key of every sealed object under a
 * new master key (the keeper's keeper_rewrap and keeper_apns_blob_rewrap):
 * every key record and every persisted
 * APNs token. The payloads, their AAD and the records' metadata (version,
 * updated_at) stay exactly as they are, so nothing but the wrap changes and
 * nobody reading a record can tell a rotation happened except by its
 * "master_key_id".
 *
 * Safety while the daemon serves. Records are re-wrapped in batches, each
 * one store transaction: a record is either wholly under its old key or
 * wholly under the new one, and a reader sees one or the other. A daemon
 * with both keys loaded opens either (envelope_open picks the key by the id
 * the envelope names), so it keeps answering throughout.
 *
 * Crash safety. Killed at any point (SIGKILL, power cut), the store holds
 * the batches committed so far and nothing of the one in flight: every
 * record is under the old or the new key, and opens with both loaded.
 * Running the rotation again skips what is already under the new key and
 * finishes the rest: the operation converges, whatever the interruptions.
 */
#ifndef P8V_VAULT_ROTATE_H
#define P8V_VAULT_ROTATE_H

#include <stddef.h>
#include <stdint.h>

#include "keeper/keeper.h"
#include "store/store.h"

/* Records per transaction by default: a batch holds LMDB's single writer
 * for a few milliseconds (one rewrap is two AES-GCM opens and a seal of 32
 * bytes), so the daemon's own writes (token mints) wait at most that long,
 * and 100 000 records take ~400 commits. */
#define VAULT_ROTATE_BATCH_DEFAULT 256
/* Upper bound of a batch: keeps one transaction (and its dirty pages)
 * small whatever the caller asks. */
#define VAULT_ROTATE_BATCH_MAX 65536
/* Passes over the store: a record sealed under another key while the
 * rotation ran (by a daemon whose primary key is still the old one) is
 * picked up by the next pass; more passes than this means something keeps
 * sealing under the old key, which only the operator can stop. */
#define VAULT_ROTATE_PASSES 3

struct vault_rotate_options {
	size_t batch;           /* records per transaction; 0: the default */
	const char *actor;      /* audit "who" ("cli"); NULL: "cli" */
	/* After each committed batch: objects done of total so far (total
	 * may grow when a later pass finds more). May be NULL. */
	void (*progress)(uint64_t done, uint64_t total, void *arg);
	/* For each key record that cannot be re-wrapped (err: why, e.g.
	 * P8V_ERR_INTEGRITY, P8V_ERR_MASTER_KEY_MISSING); app and key_id
	 * are "?" when the stored key does not name a valid identifier.
	 * Called once per record per run. May be NULL. */
	void (*failure)(const char *app, const char *key_id, int err,
	    void *arg);
	void *arg;
};

struct vault_rotate_result {
	char new_key_id[MASTER_KEY_ID_HEX + 1];
	/* When vault_master_rotate refuses the ring with
	 * P8V_ERR_MASTER_KEY_MISMATCH: the id of a loaded key (not the new
	 * one) that the store has never recorded. */
	char unknown_key_id[MASTER_KEY_ID_HEX + 1];
	uint64_t records;       /* key records at the start (tombstones too) */
	uint64_t tombstones;    /* revoked: nothing sealed, nothing to do */
	uint64_t already;       /* under the new key before this run */
	uint64_t rewrapped;     /* re-wrapped by this run */
	uint64_t failed;        /* could not be re-wrapped (see failure) */
	uint64_t tokens_rewrapped;
	uint64_t tokens_dropped; /* persisted APNs tokens that did not open:
	                           deleted (a cache; the daemon re-mints) */
	uint64_t batches;       /* transactions committed */
	uint64_t passes;
	uint64_t remaining;     /* records not under the new key at the end
	                           (the failed ones among them): 0 = done */
};

/*
 * Re-wrap every sealed object in store under the master key new_id, which
 * keeper must hold (loaded from its file, usually as the primary). Every
 * other key of the keeper must be one the store has recorded (a mistyped
 * old key file is refused instead of being recorded as a new key). The
 * keys are checked and new_id recorded with vault_keys_check before
 * anything is re-wrapped. Every new envelope counts against new_id's wrap
 * budget (vault_count_wraps). Records that cannot be re-wrapped are left
 * as they are and reported (opts->failure); the rest goes on. The run
 * ends with one audit event ("master.rotate"). opts may be NULL; out is
 * filled as far as it got, also on failure.
 * Returns 0 when the run completed (it may still have out->failed or
 * out->remaining > 0: the caller decides), P8V_ERR_INVALID_ARGUMENT (NULL
 * pointers, new_id not in the keeper, batch above VAULT_ROTATE_BATCH_MAX),
 * P8V_ERR_MASTER_KEY_MISMATCH (see unknown_key_id; or the keys do not
 * match the store), P8V_ERR_NO_MASTER_KEY, P8V_ERR_ALLOC, P8V_ERR_RANDOM,
 * P8V_ERR_CRYPTO, P8V_ERR_NO_SPACE, P8V_ERR_STORE, P8V_ERR_INTEGRITY (a
 * malformed master-key entry). Whatever batches committed before an error
 * stay committed (that is the point); run again to finish.
 */
int vault_master_rotate(struct store *store, struct keeper *keeper,
    const uint8_t new_id[MASTER_KEY_ID_BYTES],
    const struct vault_rotate_options *opts,
    struct vault_rotate_result *out);

/* One master key the stored data knows of. */
struct vault_master_key_use {
	uint8_t id[MASTER_KEY_ID_BYTES];
	char id_hex[MASTER_KEY_ID_HEX + 1];
	int recorded;           /* has a check value in the store */
	int64_t first_seen;     /* when recorded (0 if not) */
	uint64_t records;       /* key records sealed under it */
	uint64_t tokens;        /* persisted APNs tokens sealed under it */
};

/*
 * Every master key the store has recorded or that a sealed object names,
 * ordered by id, with how many records and persisted APNs tokens each
 * seals, in one snapshot. A key with records == 0 and tokens == 0 seals
 * nothing: the store no longer needs it (backups taken before may).
 * *out is malloc'd (free()); *n may be 0.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_INTEGRITY (a record or meta
 * entry fails to decode), P8V_ERR_ALLOC, P8V_ERR_STORE.
 */
int vault_master_usage(struct store *store,
    struct vault_master_key_use **out, size_t *n);

/* What vault_master_retire found. */
struct vault_retire_result {
	char id_hex[MASTER_KEY_ID_HEX + 1];
	uint64_t records;       /* key records still sealed under the key */
	uint64_t tokens;        /* persisted APNs tokens still sealed under it */
};

/*
 * Retire master key id from the state directory (vault/retire.c), the end
 * of its life after a rotation: in one write transaction, refuse if any
 * key record or persisted APNs token is still sealed under it (out->records
 * and out->tokens say how many), else remove its check value, list it as
 * retired (store_master_key_retire) and append a "master.retire" audit
 * event (who: actor, NULL for "cli"). From then on a start or SIGHUP that
 * loads the key is refused (P8V_ERR_MASTER_KEY_RETIRED) and no envelope is
 * committed under it. Needs no key: ids only.
 * Returns 0, P8V_ERR_MASTER_KEY_IN_USE (still in use, or the only key the
 * store records), P8V_ERR_NOT_FOUND (the store records no such key),
 * P8V_ERR_MASTER_KEY_RETIRED (already retired), P8V_ERR_INTEGRITY,
 * P8V_ERR_ALLOC, P8V_ERR_NO_SPACE, P8V_ERR_STORE, P8V_ERR_INVALID_ARGUMENT.
 */
int vault_master_retire(struct store *store,
    const uint8_t id[MASTER_KEY_ID_BYTES], const char *actor,
    struct vault_retire_result *out);

#endif /* P8V_VAULT_ROTATE_H */
