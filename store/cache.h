/*
 * cache.h: the persisted token cache, in the "cache" database.
 *
 * Opaque blobs under string keys, each with an expiry time. The store does
 * not know what a blob holds: vault/ seals each token (an envelope under a
 * master key) before putting it here, so the data file never holds a usable
 * bearer token. Entries past their expiry are removed by store_cache_purge.
 *
 * Value: 0x01 (format) || u64 big-endian expires_at || blob.
 */
#ifndef P8V_STORE_CACHE_H
#define P8V_STORE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Keys like "apns/<team>/<key id>/<fingerprint>" stay well under this, and
 * under LMDB's 511-byte key limit. */
#define CACHE_KEY_MAX 256
/* A sealed JWT is well under 1 KiB; anything near this is a bug. */
#define CACHE_BLOB_MAX (16 * 1024)

/*
 * Insert or replace the blob under key (1..CACHE_KEY_MAX printable ASCII
 * characters without space). blob may be empty. Returns 0,
 * P8V_ERR_INVALID_ARGUMENT (bad key), P8V_ERR_TOO_LARGE, P8V_ERR_NO_SPACE,
 * P8V_ERR_STORE.
 */
int store_cache_put(struct store_txn *txn, const char *key,
    int64_t expires_at, const uint8_t *blob, size_t len);

/*
 * Read the entry under key: *blob is malloc'd (caller frees; non-NULL even
 * for an empty blob), *expires_at its expiry. Expired entries are returned
 * too: the caller decides. Returns 0, P8V_ERR_INVALID_ARGUMENT,
 * P8V_ERR_NOT_FOUND, P8V_ERR_INTEGRITY (malformed value), P8V_ERR_ALLOC,
 * P8V_ERR_STORE.
 */
int store_cache_get(struct store_txn *txn, const char *key,
    int64_t *expires_at, uint8_t **blob, size_t *len);

/* Remove one entry. 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_NOT_FOUND,
 * P8V_ERR_STORE. */
int store_cache_delete(struct store_txn *txn, const char *key);

/*
 * Every entry in key order (to load the cache at start-up). key is
 * NUL-terminated, blob valid during the call. cb returns 0, STORE_SCAN_STOP
 * or a negative error (as store_scan). Returns 0, cb's error,
 * P8V_ERR_INTEGRITY, P8V_ERR_STORE.
 */
int store_cache_foreach(struct store_txn *txn,
    int (*cb)(const char *key, int64_t expires_at, const uint8_t *blob,
        size_t len, void *arg),
    void *arg);

/* Remove every entry with expires_at <= now (and malformed ones). *removed
 * (may be NULL) gets how many. 0, P8V_ERR_ALLOC, P8V_ERR_NO_SPACE,
 * P8V_ERR_STORE. */
int store_cache_purge(struct store_txn *txn, int64_t now, uint64_t *removed);

/* Remove every entry. 0 or P8V_ERR_STORE. */
int store_cache_clear(struct store_txn *txn);

#endif /* P8V_STORE_CACHE_H */
