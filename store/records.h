/*
 * records.h: sealed key records in the store's "keys" database.
 *
 * The record itself (struct key_record, its enums, rules, encoding and
 * authenticated data) is common/keyrecord.h; this header is only how the
 * store keeps records: under key_record_db_key (app || 0x00 || key_id, so
 * a cursor range lists one app), the value key_record_encode makes. The
 * store never sees a scalar and never holds a master key: it stores and
 * returns envelopes as opaque bytes, and a metadata change that needs a
 * re-seal asks its caller (vault/, through the keeper) for the new envelope.
 */
#ifndef P8V_STORE_RECORDS_H
#define P8V_STORE_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "common/ids.h"
#include "common/keyrecord.h"
#include "store/store.h"

/*
 * Store, under key, the value val with its envelope replaced by env (a
 * re-wrap: the format byte and metadata bytes are kept as they are, so the
 * AAD does not change). val must be a value key_record_raw_parts accepts
 * and not a tombstone. Write transactions. Returns 0,
 * P8V_ERR_INTEGRITY, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, and
 * store_put's errors.
 */
int key_record_put_envelope(struct store_txn *txn, const uint8_t *key,
    size_t klen, const uint8_t *val, size_t vlen, const uint8_t *env,
    size_t env_len);
/*
 * Insert or replace rec (write transaction), and its index entries
 * (dropping an old one if the replaced record had another fingerprint or
 * team). Does not open the envelope:
 * the caller sealed it with key_record_aad(rec). Returns 0, the errors of
 * key_record_check, P8V_ERR_ALLOC, P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int key_record_put(struct store_txn *txn, const struct key_record *rec);

/* Read one record into *rec (caller frees with key_record_free).
 * 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_NOT_FOUND,
 * P8V_ERR_INTEGRITY (stored bytes fail to decode), P8V_ERR_ALLOC,
 * P8V_ERR_STORE. */
int key_record_get(struct store_txn *txn, const char *app,
    const char *key_id, struct key_record *rec);

/* Delete one record and its index entries. 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID,
 * P8V_ERR_NOT_FOUND, P8V_ERR_NO_SPACE, P8V_ERR_STORE. */
int key_record_delete(struct store_txn *txn, const char *app,
    const char *key_id);

/*
 * Call cb for each record of app (key_record_list) or of the whole store
 * (key_record_foreach), in key order. rec is valid only during the call
 * (freed after). cb returns 0 to go on, STORE_SCAN_STOP to stop, or a
 * negative P8V_ERR_* to stop with it. A stored value that fails to decode
 * stops the walk with P8V_ERR_INTEGRITY. Returns 0, cb's error,
 * P8V_ERR_BAD_APP_ID, P8V_ERR_INTEGRITY, P8V_ERR_ALLOC, P8V_ERR_STORE.
 */
typedef int (*key_record_cb)(const struct key_record *rec, void *arg);
int key_record_list(struct store_txn *txn, const char *app,
    key_record_cb cb, void *arg);
int key_record_foreach(struct store_txn *txn, key_record_cb cb, void *arg);

/*
 * Two indexes over the records, in the meta database, so that a key's
 * copies and a team's keys are found across apps without decoding every
 * record (key identity at upload, incident response by fingerprint, the
 * warning about a team's active APNs keys). One entry per record in each:
 *
 *   KEY_FP_INDEX_PREFIX || fingerprint (64 hex) || "/" || Team ID ||
 *       Key ID || "/" || db key -> Team ID
 *   KEY_TEAM_INDEX_PREFIX || Team ID || "/" || db key -> fingerprint
 *
 * A fingerprint's entries are grouped by Team ID and Key ID, so that the
 * identity check at upload seeks past the copies under the uploader's own
 * ids (a key in thousands of apps) instead of walking them.
 * (db key = app || 0x00 || key_id). key_record_put and key_record_delete
 * keep both in the caller's transaction; tombstones keep their entries.
 * These are about key identity (material and team), not the per-app
 * indexes of uploads and activations.
 */
#define KEY_FP_INDEX_PREFIX "fpid/"
/* Team ID || Key ID in a fingerprint index entry. */
#define KEY_FP_INDEX_MID (2 * IDS_APPLE_ID_LEN)
#define KEY_TEAM_INDEX_PREFIX "teamidx/"
/* In the meta database: the number of records (u64, big-endian) the
 * indexes were last known to cover. key_record_put and key_record_delete
 * set it whenever the number changes, so that opening a store in step
 * costs two lookups, not a walk over every entry. A release before it
 * leaves it behind when it adds or deletes records: the number then
 * differs, and key_record_index_sync checks the indexes. */
#define KEY_INDEX_RECORDS "idx/records"
/* Longest index entry key: the longer prefix (8), a fingerprint, "/",
 * Team ID || Key ID, "/", a db key. */
#define KEY_IDX_KEY_MAX \
	(8 + KEY_RECORD_FINGERPRINT_HEX + 1 + KEY_FP_INDEX_MID + 1 + \
	KEY_RECORD_DB_KEY_MAX)

/*
 * Call cb for every record whose fingerprint is fingerprint (64 lowercase
 * hex characters) / whose Team ID is team_id, tombstones included, in
 * (app, Key ID) order. cb as for key_record_list. Returns 0, cb's error,
 * P8V_ERR_BAD_FIELD (not a fingerprint), P8V_ERR_BAD_TEAM_ID,
 * P8V_ERR_INTEGRITY (a listed record fails to decode), P8V_ERR_ALLOC,
 * P8V_ERR_STORE.
 */
int key_record_by_fingerprint(struct store_txn *txn, const char *fingerprint,
    key_record_cb cb, void *arg);
int key_record_by_team(struct store_txn *txn, const char *team_id,
    key_record_cb cb, void *arg);
/* key_record_by_team without the copies of the key with this fingerprint,
 * which the index lists with their fingerprint and which are not read: a
 * team's other keys, at a cost that does not grow with the copies of one
 * key (a key in many apps). */
int key_record_by_team_other(struct store_txn *txn, const char *team_id,
    const char *fingerprint, key_record_cb cb, void *arg);

/*
 * *conflict = 1 if a copy of the key with this fingerprint, not revoked,
 * is stored under another Key ID or Team ID (in any app), else 0. From
 * the fingerprint index: copies under the same ids are skipped by a seek,
 * unread (the upload of a key already in many apps stays cheap); a record listed
 * under other ids is read, and counts only if it decodes, is not revoked
 * and still has this fingerprint (a damaged copy signs nothing and does
 * not stop another app's upload). Returns 0, P8V_ERR_BAD_FIELD,
 * P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, P8V_ERR_STORE.
 */
int key_record_identity_conflict(struct store_txn *txn,
    const char *fingerprint, const char *key_id, const char *team_id,
    int *conflict);

/*
 * Bring both indexes in step with the records (write transaction). When
 * KEY_INDEX_RECORDS holds the number of records, they are. Otherwise
 * (missing: a vault written before it; another number: records added or
 * deleted by such a release) the entries are counted, and when either
 * index's number of entries differs from the number of records, every
 * entry is dropped and every record that decodes indexed again; then
 * KEY_INDEX_RECORDS is set. store_open runs it. *rebuilt (may be NULL) is
 * 1 if it rebuilt. Returns 0, P8V_ERR_ALLOC, P8V_ERR_NO_SPACE,
 * P8V_ERR_STORE.
 */
int key_record_index_sync(struct store_txn *txn, int *rebuilt);

/* Number of records (tombstones included). 0 or P8V_ERR_STORE. */
int key_record_count(struct store_txn *txn, uint64_t *n);

/*
 * The new envelope of rec, a record whose metadata changed from old's:
 * reseal opens old->envelope under old's AAD and seals its payload under
 * rec's (the keeper's keeper_reseal does it), replacing rec->envelope
 * (malloc'd; the previous buffer is old's, not freed). 0 or a P8V_ERR_*.
 */
typedef int (*key_record_reseal_fn)(const struct key_record *old,
    struct key_record *rec, void *arg);

/*
 * Change a stored record's metadata in one step (write transaction):
 * read (app, key_id), let mutate change a copy, then set version to the old
 * version + 1 and updated_at to now, have it re-sealed (reseal, with
 * reseal_arg) and write it back. mutate may change any field except app,
 * key_id, version, updated_at and the envelope; to destroy the sealed key (a revoked
 * tombstone) it sets state to KEY_STATE_REVOKED and calls
 * key_record_drop_envelope. mutate returns 0 or a P8V_ERR_* (which aborts
 * the change). *out (may be NULL) gets the new record (caller frees).
 * Returns 0, the errors of key_record_get, key_record_check and reseal,
 * mutate's error, P8V_ERR_INVALID_ARGUMENT (mutate changed a field it may
 * not change; reseal NULL while the record keeps its envelope).
 */
int key_record_update(struct store_txn *txn, key_record_reseal_fn reseal,
    void *reseal_arg, const char *app, const char *key_id, int64_t now,
    int (*mutate)(struct key_record *rec, void *arg), void *arg,
    struct key_record *out);

#endif /* P8V_STORE_RECORDS_H */
