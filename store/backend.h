/*
 * backend.h: the table a storage backend fills in (private to store/).
 *
 * store.c is a thin dispatch: it checks arguments, keeps the rules every
 * backend shares (no nested transactions, no use across fork, the retry
 * loop of store_write) and calls one `const struct store_backend` chosen
 * by name at store_open. A backend keeps the promises written in
 * store/store.h ("What a backend promises"); this header says how it
 * plugs in. Only the store's own files include it.
 *
 * A transaction, as store.c drives it:
 *
 *   begin(impl, txn)        0, STORE_BACKEND_RETRY (begin again) or an error
 *   fn(txn, arg)            the caller's function; get/put/del/... dispatch
 *                           to the backend with the same txn
 *   commit(txn)             write transactions whose fn returned 0 and did
 *                           not set txn->retry: 0 (durable),
 *                           STORE_BACKEND_RETRY (nothing written; run fn
 *                           again from begin) or an error (nothing written)
 *   end(txn)                every other case (reads, fn failed, retry
 *                           asked): releases the transaction; returns 0,
 *                           STORE_BACKEND_RETRY if txn->retry was set and
 *                           the backend made room to try again, or the
 *                           error that stops the retry (e.g. NO_SPACE)
 *
 * After commit or end the transaction is over, whatever they return.
 */
#ifndef P8V_STORE_BACKEND_H
#define P8V_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* begin/commit/end: the transaction must run again from the start (map
 * grown, snapshot moved, compare failed). Positive: never a P8V_ERR_*. */
#define STORE_BACKEND_RETRY 1

/* A backend's open store (its own struct, opaque to store.c). */
struct store_impl;

/* One transaction. store.c owns it (on its stack); the backend fills
 * handle (and scratch) in begin and may set retry from any operation. */
struct store_txn {
	struct store *store;
	struct store_impl *impl;
	void *handle;           /* the backend's transaction (MDB_txn *) */
	uint64_t scratch;       /* the backend's, per transaction */
	int writable;
	int retry;              /* the backend wants fn run again: its result
	                           is dropped and end() decides */
};

struct store_backend {
	const char *name;       /* "lmdb": store_options.backend */
	/* Per-transaction limits (0: none), for callers that write many
	 * entries (store_import splits its batches by them). */
	size_t max_txn_ops;
	size_t max_txn_bytes;

	/* location: a directory (lmdb) or whatever the backend names its
	 * store by. Returns 0 or a P8V_ERR_* (see store_open). */
	int (*open)(const char *location, const struct store_options *opts,
	    struct store_impl **out);
	/* forked: called in a child of the process that opened it; free
	 * only memory, leave shared state (locks, sessions) alone. */
	void (*close)(struct store_impl *impl, int forked);

	int (*begin)(struct store_impl *impl, struct store_txn *txn);
	int (*commit)(struct store_txn *txn);
	int (*end)(struct store_txn *txn);

	/* The raw operations of store.h, arguments already checked (txn
	 * live, db in range, key 1..STORE_MAX_KEY_BYTES, writes only in a
	 * write transaction). scan walks from the first key >= start and
	 * stops at the first key that does not begin with start's first plen
	 * bytes (plen 0: to the end). */
	int (*get)(struct store_txn *txn, enum store_db db, const void *key,
	    size_t klen, const uint8_t **val, size_t *vlen);
	int (*put)(struct store_txn *txn, enum store_db db, const void *key,
	    size_t klen, const void *val, size_t vlen, unsigned int flags);
	int (*del)(struct store_txn *txn, enum store_db db, const void *key,
	    size_t klen);
	int (*scan)(struct store_txn *txn, enum store_db db,
	    const void *start, size_t slen, size_t plen, store_scan_cb cb,
	    void *arg);
	int (*last)(struct store_txn *txn, enum store_db db,
	    const uint8_t **key, size_t *klen, const uint8_t **val,
	    size_t *vlen);
	int (*count)(struct store_txn *txn, enum store_db db, uint64_t *n);
	int (*clear)(struct store_txn *txn, enum store_db db);

	int (*generation)(struct store_impl *impl, uint64_t *gen);
	uint64_t (*txn_generation)(const struct store_txn *txn);
	int (*stats)(struct store_impl *impl, struct store_stats *st);

	/* Optional (NULL: the backend has no such thing). maintain absent:
	 * store_maintain does nothing. copy_fd absent: store_copy_fd returns
	 * P8V_ERR_UNSUPPORTED. */
	int (*maintain)(struct store_impl *impl, int *cleared);
	int (*copy_fd)(struct store_impl *impl, int fd);
	/* Optional: locks (store_lock_take; absent: granted at once, *out
	 * NULL) and waiting for a change (absent: a sleep). */
	int (*lock_take)(struct store_impl *impl, const char *name,
	    unsigned int ttl_s, struct store_lock **out);
	void (*lock_release)(struct store_impl *impl, struct store_lock *lock);
	int (*wait_change)(struct store_impl *impl, uint64_t gen, int ms);
	/* Optional: store_ready (absent: always ready). */
	int (*ready)(struct store_impl *impl);
};

/* The LMDB backend (store/backend_lmdb.c). */
extern const struct store_backend store_backend_lmdb;
/* The etcd backend (store/backend_etcd.c). */
extern const struct store_backend store_backend_etcd;

#endif /* P8V_STORE_BACKEND_H */
