/*
 * appindex.h: the per-app key index (issue 15, tenant isolation), kept in
 * the meta database beside the key records, so that an upload or an
 * activation, under the store's single writer, finds what it needs
 * without decoding every record of the app:
 *
 *   "appidx/fp/" APP "\0" FINGERPRINT  -> Key ID   (every record of APP)
 *   "appidx/active/" APP "\0" KEY_ID   -> environment, one byte
 *                                         (ACTIVE records of APP)
 *   "appidx/live/" APP "\0" KEY_ID     -> empty (records of APP that are
 *                                         not revoked)
 *   "appidx/ready"                     -> "1" once the index covers every
 *                                         record
 *
 * (A cross-app fingerprint index, for key identity, is another module's.)
 * key_record_put and key_record_delete keep it up to date in the same
 * transaction as the record. A state directory written before it (or by
 * an older release) has no "appidx/ready": appindex_build, called by
 * vault_create, builds it in transactions within store_limits; until
 * then callers fall back to scanning the app. An entry is a hint: callers
 * read the record it names and ignore entries whose record is gone or
 * changed (a record edited by hand, an older release's write).
 */
#ifndef P8V_STORE_APPINDEX_H
#define P8V_STORE_APPINDEX_H

#include <stdint.h>

#include "common/keyrecord.h"
#include "store/store.h"

/* Update the index for rec, replacing old (NULL: a new record). Called by
 * key_record_put. 0 or a store error. */
int appindex_on_put(struct store_txn *txn, const struct key_record *old,
    const struct key_record *rec);

/* Remove old's entries (key_record_delete). 0 or a store error. */
int appindex_on_delete(struct store_txn *txn, const struct key_record *old);

/* 1 if the index covers every record, 0 if not (build it), or a store
 * error. */
int appindex_ready(struct store_txn *txn);

/* The Key ID filed under fingerprint in app: 0 (key_id filled, NUL
 * ended), P8V_ERR_NOT_FOUND, or a store error. */
int appindex_fingerprint(struct store_txn *txn, const char *app,
    const char *fingerprint, char key_id[IDS_APPLE_ID_LEN + 1]);

/* Call cb for every ACTIVE key of app, in Key ID order, with its
 * environment. cb returns 0 to go on or an error to stop with. */
typedef int (*appindex_active_cb)(const char *key_id, enum key_env env,
    void *arg);
int appindex_active(struct store_txn *txn, const char *app,
    appindex_active_cb cb, void *arg);

/* Records of app that are not revoked (a scan of their entries: bounded
 * by the keys-per-app quota, not by the app's revoked history). 0 or a
 * store error. */
int appindex_live(struct store_txn *txn, const char *app, uint64_t *n);

/*
 * Build the index if it is missing: walks every record in transactions of
 * at most APPINDEX_BUILD_BATCH records (within store_limits), then marks
 * it ready. Safe against writers in between (theirs keep the index as
 * they go). 0, or a store error (the index stays not ready: callers scan).
 */
#define APPINDEX_BUILD_BATCH 24
int appindex_build(struct store *store);

#endif /* P8V_STORE_APPINDEX_H */
