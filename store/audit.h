/*
 * audit.h: the append-only audit log, in the "audit" database.
 *
 * Each event is stored under its sequence number (u64 big-endian, from 1)
 * as canonical JSON (compact, sorted members) holding the caller's fields
 * plus
 *   "seq":  the sequence number, and
 *   "prev": lowercase hex SHA-256 of the previous event's stored bytes
 *           (64 zeros for the first event),
 * so each event commits to the whole history before it. The meta database
 * keeps the head ("audit/head" -> u64 last seq || SHA-256 of the last
 * event), updated in the same transaction, so removing or changing the last
 * events is detected too.
 *
 * What this detects: an event removed, changed or reordered by anyone who
 * edits the data file without rewriting every later event and the head
 * (for instance a restore of an old file mixed with a new one, a bit flip, a
 * careless edit with the LMDB tools). What it does not: an attacker who can write
 * the file can rebuild the whole chain, since no secret goes into it; ship
 * events off the host if that matters.
 */
#ifndef P8V_STORE_AUDIT_H
#define P8V_STORE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store/store.h"

/* One event is a few hundred bytes; this bounds a runaway field. */
#define AUDIT_EVENT_MAX (16 * 1024)
#define AUDIT_HASH_BYTES 32
#define AUDIT_HASH_HEX (2 * AUDIT_HASH_BYTES)

/*
 * Append event (a JSON object with the caller's fields, which must not
 * include "seq" or "prev"; not modified) as the next sequence number, in a
 * write transaction. *seq (may be NULL) gets the number.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (not an object, or "seq"/"prev"
 * present), P8V_ERR_TOO_LARGE, P8V_ERR_INTEGRITY (the last stored event is
 * malformed), P8V_ERR_ALLOC, P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int store_audit_append(struct store_txn *txn, const json_t *event,
    uint64_t *seq);

/*
 * Call cb for each event with seq >= from_seq, in order; json (len bytes,
 * NUL-terminated) is valid during the call. cb returns 0, STORE_SCAN_STOP
 * or a negative error (as store_scan). Returns 0, cb's error,
 * P8V_ERR_INTEGRITY (a key that is not a sequence number), P8V_ERR_ALLOC,
 * P8V_ERR_STORE.
 */
int store_audit_foreach(struct store_txn *txn, uint64_t from_seq,
    int (*cb)(uint64_t seq, const char *json, size_t len, void *arg),
    void *arg);

/*
 * Walk the whole chain: sequence numbers 1, 2, 3... without gaps, each
 * event canonical JSON whose "seq" matches its key and whose "prev" is the
 * hash of the event before, and the head in meta naming the last event.
 * *events (may be NULL) gets the number of events checked; *bad_seq (may
 * be NULL) the sequence number where the chain breaks (0 if it holds): the
 * event stored there, or the one before it, was changed or removed, or (for
 * the head) events at the end are missing.
 * Returns 0 (intact), P8V_ERR_INTEGRITY (broken), P8V_ERR_ALLOC,
 * P8V_ERR_STORE.
 */
int store_audit_verify(struct store_txn *txn, uint64_t *events,
    uint64_t *bad_seq);

/*
 * Retention. Old events may be pruned behind a checkpoint in meta
 * ("audit/checkpoint": the first kept sequence number and the SHA-256 of
 * the last pruned event, which the first kept event's "prev" names), so
 * that store_audit_verify checks the kept chain from there: sequence
 * numbers from the checkpoint on, without gaps, the first chained to the
 * checkpoint's hash. (*events then counts the kept events.) Nothing is
 * pruned that p8vault audit export has not written out
 * ("audit/exported", store_audit_set_exported), nor the newest event.
 */

/* The checkpoint: *first_seq 1 and prev all zero when nothing was pruned.
 * 0, P8V_ERR_INTEGRITY (malformed), P8V_ERR_STORE. */
int store_audit_checkpoint(struct store_txn *txn, uint64_t *first_seq,
    uint8_t prev[AUDIT_HASH_BYTES]);

/* The last event written out by an export (0: none), and recording it
 * (write transactions; it never moves back). 0 or a store error. */
int store_audit_exported(struct store_txn *txn, uint64_t *seq);
int store_audit_set_exported(struct store_txn *txn, uint64_t seq);

/*
 * Delete the events whose "time" is before cutoff (seconds since the
 * epoch), oldest first, up to the last exported one and never the newest,
 * in transactions of at most 100 (within store_limits), moving the
 * checkpoint with each. *pruned gets how many went, *first_seq the first
 * kept. 0, P8V_ERR_INTEGRITY (a malformed event or checkpoint),
 * P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int store_audit_prune(struct store *store, int64_t cutoff, uint64_t *pruned,
    uint64_t *first_seq);

#endif /* P8V_STORE_AUDIT_H */
