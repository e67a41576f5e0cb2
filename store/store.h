/*
 * store.h: p8vault's state, behind one interface and a table of backends.
 *
 * A store holds five databases of byte keys and byte values, sorted by key:
 *
 *   keys   sealed key records            (store/records.h)
 *   creds  API credentials               (store/creds.h)
 *   cache  sealed token cache            (store/cache.h)
 *   audit  hash-chained audit log        (store/audit.h)
 *   meta   schema version, master-key check values, audit head
 *
 * The store only ever sees ciphertext (envelopes) and clear metadata.
 * store.c is a thin dispatch over a backend chosen by name at store_open
 * (store_options.backend, or by the location: store/backend.h is the
 * table). "lmdb" (store/backend_lmdb.c, the one file that calls LMDB)
 * keeps one environment per state directory (files data.mdb and lock.mdb,
 * mode 0600, directory 0700); "etcd" (store/backend_etcd.c) keeps the
 * store in an etcd cluster under a prefix, shared by every node
 * (docs/cluster.md). The store's modules (records, creds, cache, audit,
 * master keys) use only the functions below, so the backend changes
 * nothing above store/.
 *
 * Transactions. Every access runs inside store_write() or store_read(), which
 * call the caller's function with a transaction:
 *
 *   static int add(struct store_txn *txn, void *arg) { ... return 0; }
 *   r = store_write(store, add, &args);
 *
 * A write function may run more than once: when the backend asks for it
 * (LMDB: the map is full, so the map is doubled; a networked backend: a
 * compare failed because another node committed first) store_write drops
 * the transaction and runs the function again from the start. It must
 * therefore have no effect outside the transaction (no logging of success,
 * no freeing of its inputs, no counters that are not reset at its start).
 * A function returns 0 to commit or a negative P8V_ERR_* to abort; the
 * error is returned by store_write. Transactions do not nest: calling
 * store_read/store_write from inside a function fails with
 * P8V_ERR_INTERNAL (with LMDB it would deadlock with map growth).
 *
 * What a backend promises (store/backend.h says how it plugs in):
 *
 * - Atomicity and isolation: a write transaction's changes become visible
 *   all together at its commit, or not at all; a read transaction sees one
 *   consistent snapshot (the state after some commit) from start to end,
 *   whatever other threads, processes or nodes commit meanwhile. Writes are
 *   serialisable: a backend that runs writers optimistically (etcd: a
 *   transaction that compares the revisions of what it read) retries the
 *   whole function on a conflict, never commits on a stale read.
 * - Values: a pointer that store_get, store_last or store_scan hands out
 *   is read-only, owned by the store and valid until the transaction ends;
 *   in a write transaction only until that transaction's next store_put,
 *   store_del or store_clear (LMDB may reuse a dirty page; an in-memory
 *   mirror may replace the value it points to). Copy what must outlive
 *   that. scan's pointers are valid during the callback only.
 * - The generation (store_generation): a number that changes with every
 *   commit, by any thread, process or node, and never goes back while the
 *   store is open. Caches (api/auth.c, vault/) compare it on every use to
 *   see a change made elsewhere; a backend that cannot tell (a mirror
 *   that lost its watch) must make it change rather than stay.
 * - Durability: when store_write returns 0 the transaction survives a
 *   crash of the process and of the machine (LMDB: fdatasync before the
 *   commit returns; a replicated backend: a quorum has it on disk).
 * - Errors: P8V_ERR_NO_SPACE when the backend is full (nothing written),
 *   P8V_ERR_STORE for a failure, and for a networked backend the retryable
 *   P8V_ERR_STORE_UNAVAILABLE (HTTP 503: nothing written, or a read that
 *   could not run; the caller may try again later). A write whose outcome
 *   the backend cannot learn (the connection dropped during the commit)
 *   must never be applied twice: the backend finds out whether it landed
 *   (e.g. from a transaction id it wrote along) before it runs the function
 *   again, or returns P8V_ERR_STORE_UNAVAILABLE, documented as "may have
 *   been applied"; it never re-runs a function blindly.
 * - Limits: a backend may cap one transaction (etcd's defaults: 128
 *   operations and a 1.5 MiB request; store_limits says, LMDB has none)
 *   and refuses a transaction above its cap with P8V_ERR_TOO_LARGE,
 *   nothing written. Most transactions write a handful of small entries
 *   (an upload: the record, an audit event and the audit head). Those that
 *   write many split their work into transactions within store_limits:
 *   store_import does, and so does master-key rotation (vault/rotate.c:
 *   256 records per transaction by default, fewer under a cap) and the
 *   start-up drop of stale cached tokens (vault/apns.c);
 *   store_cache_purge still writes all in one (etcd: one range delete
 *   when it empties the whole cache, else one operation per entry). Keys are 1..STORE_MAX_KEY_BYTES bytes.
 *
 * Durability (LMDB). LMDB's default synchronous commits (no NOSYNC,
 * NOMETASYNC, WRITEMAP or NOMEMINIT flag): when store_write returns 0,
 * the transaction is on disk (fdatasync) and survives kill -9 and a power
 * cut, as far as the disk honours the flush.
 *
 * Threads and processes. A store may be used from many threads at once
 * (LMDB: MDB_NOTLS, read transactions are not tied to a thread; LMDB
 * serialises writers). Several processes may open the same directory (the
 * daemon and the CLI), but one process opens a directory only once (LMDB's
 * locks are per process: closing a second handle would drop the first
 * one's). A store must NOT be used across fork(): every call made from a
 * process other than the one that opened it fails with P8V_ERR_STORE, and
 * store_close() in such a child only frees the handle's memory, leaving the
 * parent's environment (and its reader slots) alone. A child opens its own
 * store.
 */
#ifndef P8V_STORE_STORE_H
#define P8V_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

/* First map size of a new environment: room for ~50 000 key records before
 * the first growth, small enough to be harmless on a laptop. */
#define STORE_DEFAULT_MAP_BYTES ((uint64_t)64 << 20)
/* LMDB's own default reader table size (126) is too small for a daemon with
 * many worker threads plus CLI invocations; 1022 fills whole lock pages. */
#define STORE_DEFAULT_MAX_READERS 1022
/* Growth stops here even when no maximum is configured: far beyond any
 * plausible key store, and well inside a 64-bit address space. */
#define STORE_MAP_HARD_MAX ((uint64_t)1 << 40)
/* The on-disk schema this code reads and writes (meta "schema"). */
#define STORE_SCHEMA_VERSION 1
/* Longest key any backend must take: LMDB's default maximum. */
#define STORE_MAX_KEY_BYTES 511
/* The backend store_open uses when store_options.backend is NULL. */
#define STORE_DEFAULT_BACKEND "lmdb"

struct store_options {
	const char *backend;        /* NULL: STORE_DEFAULT_BACKEND */
	/* LMDB only (other backends ignore them): */
	uint64_t initial_map_bytes; /* 0: STORE_DEFAULT_MAP_BYTES */
	uint64_t max_map_bytes;     /* 0: grow until STORE_MAP_HARD_MAX or
	                               the disk is full */
	unsigned int max_readers;   /* 0: STORE_DEFAULT_MAX_READERS */
	/* etcd only (NULL: not used): TLS to etcd (a CA or client
	 * certificate makes the endpoints https) and etcd auth. */
	const char *etcd_cacert;
	const char *etcd_cert;
	const char *etcd_key;
	const char *etcd_user;
	const char *etcd_password_file;
};

/* A store location starting with this names an etcd store:
 * etcd://HOST:PORT[,HOST:PORT...]/PREFIX (backend "etcd"); anything else
 * is a state directory (backend "lmdb"). */
#define STORE_ETCD_SCHEME "etcd://"

/* 1 if location names an etcd store (STORE_ETCD_SCHEME), else 0. */
int store_location_is_etcd(const char *location);

/*
 * The options store_open uses when it is given none (opts NULL): the
 * daemon and the CLI set the etcd options once from their command line,
 * so that every store_open of the process reaches etcd the same way. The
 * strings are not copied: they must outlive every store_open. NULL
 * resets to the defaults.
 */
void store_set_default_options(const struct store_options *opts);

struct store;
struct store_txn;

/*
 * Open (creating if needed) the store in dir with the backend named by
 * opts->backend (P8V_ERR_UNSUPPORTED: no such backend), and write or check
 * the schema version. LMDB: opens (creating if needed) the environment in
 * dir. The directory is created with mode 0700 if missing; an existing one
 * must be a directory owned by this user and not writable by group or
 * others, and existing data files must not be accessible by group or
 * others. Creates the named databases, and clears stale reader slots left
 * by dead processes. opts may be NULL (defaults).
 * *out owns the environment; close it with store_close.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, P8V_ERR_IO (directory
 * missing and not creatable, or unsafe ownership or mode: logged),
 * P8V_ERR_STORE_VERSION (schema written by another version), P8V_ERR_NO_SPACE,
 * P8V_ERR_UNSUPPORTED, P8V_ERR_STORE (LMDB failed: logged).
 */
int store_open(const char *dir, const struct store_options *opts,
    struct store **out);
/* dir may also be an etcd location (STORE_ETCD_SCHEME): the backend is
 * then "etcd" unless opts->backend names another. The etcd backend loads
 * the prefix into its mirror and starts its watch before returning; it
 * returns P8V_ERR_STORE_UNAVAILABLE when no endpoint answers. */

/* Close the environment. No transaction may be running. NULL-safe. */
void store_close(struct store *store);

/* The name of the store's backend ("lmdb"); NULL for NULL. */
const char *store_backend_name(const struct store *store);

/* 1 if store_open knows a backend of this name, else 0. */
int store_backend_known(const char *name);

/* The backend's cap on one write transaction: operations (puts and
 * deletes) and bytes of keys and values; 0 means no cap. */
void store_limits(const struct store *store, size_t *max_ops,
    size_t *max_bytes);

/*
 * Run fn in a write transaction and commit it (see above: fn may run several
 * times). Returns 0 once committed and durable, fn's error (nothing
 * written), P8V_ERR_NO_SPACE (the map reached its maximum or the disk is
 * full; nothing written), P8V_ERR_INTERNAL (nested call, or fn returned a
 * positive value), P8V_ERR_STORE (the backend failed, or called from a
 * forked child); a networked backend also P8V_ERR_STORE_UNAVAILABLE
 * (retryable, nothing written).
 */
int store_write(struct store *store,
    int (*fn)(struct store_txn *txn, void *arg), void *arg);

/*
 * Run fn in a read-only transaction (a consistent snapshot). Calls that
 * write inside it fail with P8V_ERR_INVALID_ARGUMENT. Returns 0 or fn's
 * error, P8V_ERR_INTERNAL, P8V_ERR_STORE (a networked backend also
 * P8V_ERR_STORE_UNAVAILABLE).
 */
/*
 * store_write for the writes of an APNs token mint (its sealed token and
 * audit event): when the file system is full, it frees room kept for
 * mints (store/reserve.h) and runs fn again, so that renewals go on after
 * uploads get P8V_ERR_NO_SPACE. Returns as store_write.
 */
int store_write_reserved(struct store *store,
    int (*fn)(struct store_txn *, void *), void *arg);

int store_read(struct store *store,
    int (*fn)(struct store_txn *txn, void *arg), void *arg);

/*
 * Housekeeping the daemon calls from time to time (e.g. every minute).
 * A backend with nothing to do returns 0 (*cleared 0). LMDB: clears reader
 * slots of dead processes (a crashed CLI or worker would
 * otherwise pin old pages and make the file grow). store_open does it too,
 * and store_write at most once a minute, so a process that never calls
 * this is still covered. *cleared (may be NULL) gets the number of slots
 * cleared. 0, P8V_ERR_INTERNAL (inside a transaction), P8V_ERR_STORE.
 */
int store_maintain(struct store *store, int *cleared);

/* Current map size, the most it may grow to (store_options.max_map_bytes
 * as store_open settled it) and the bytes the data actually uses (last
 * page). LMDB's figures; another backend leaves what it lacks 0. */
struct store_stats {
	uint64_t map_bytes;
	uint64_t max_map_bytes;
	uint64_t used_bytes;
	unsigned int max_readers;
	unsigned int readers_used;
	/* A networked backend's (etcd): */
	int remote;                 /* 1: the figures below mean something */
	uint64_t round_trips;       /* requests sent to it since open */
	uint64_t revision;          /* the revision the mirror applied */
	uint64_t watch_down_ms;     /* how long the watch has been down
	                               (0: it is up) */
};

/* The store can serve writes as far as it knows: 1, or 0 while a
 * networked backend has lost its watch for more than
 * STORE_UNREADY_AFTER_MS (reads are then served from a mirror that may
 * be stale: /readyz says not ready so that a load balancer prefers other
 * nodes). LMDB: always 1. */
#define STORE_UNREADY_AFTER_MS 5000
int store_ready(struct store *store);
int store_stats(struct store *store, struct store_stats *st);

/*
 * LMDB only (another backend returns P8V_ERR_UNSUPPORTED, logged: its way
 * out is store_export, store/export.h).
 * Write a compacted copy of the environment to fd (a regular file, empty,
 * at offset 0): one consistent snapshot taken in a read transaction, so
 * other threads and processes (the daemon) go on reading and writing
 * meanwhile. The copy is a complete LMDB data file (free pages left out)
 * holding exactly what the data file holds: ciphertext and metadata. The
 * caller creates, syncs and names the file (store/backup.h does).
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_UNSUPPORTED, P8V_ERR_INTERNAL
 * (inside a transaction), P8V_ERR_NO_SPACE (the disk is full),
 * P8V_ERR_STORE (LMDB or a write failed: logged).
 */
int store_copy_fd(struct store *store, int fd);

/*
 * The generation: for LMDB the id of the last write transaction committed
 * to the environment, by any process (me_last_txnid, read from the meta
 * pages without opening a transaction: tens of nanoseconds). Every commit changes it, so whatever a
 * read transaction saw is still what the store holds while this equals
 * that transaction's store_txn_generation: a cache checks it on every use
 * and so sees a change made by the CLI in another process from its next
 * call on. May lag a commit that is finishing at that very moment, never
 * report a state older than the last read transaction saw. 0,
 * P8V_ERR_INVALID_ARGUMENT, P8V_ERR_INTERNAL (inside a transaction),
 * P8V_ERR_STORE.
 */
int store_generation(struct store *store, uint64_t *gen);

/* The generation of a transaction's snapshot (for a write transaction, the
 * one its commit makes). */
uint64_t store_txn_generation(const struct store_txn *txn);

/* A number unique to this open store within the process, never reused (a
 * process-wide cache keys on it, as a closed store's address may come back
 * for another). */
uint64_t store_instance(const struct store *store);

/* The state directory the store was opened on (owned by the store). */
const char *store_dir(const struct store *store);

/* The store a transaction belongs to. */
struct store *store_txn_store(struct store_txn *txn);

/*
 * Raw access: the building blocks of the store's modules (records, creds,
 * cache, audit, master keys). Other components use those modules, never
 * these directly; tests use them to tamper with stored bytes.
 */
enum store_db {
	STORE_DB_KEYS = 0,
	STORE_DB_CREDS,
	STORE_DB_CACHE,
	STORE_DB_AUDIT,
	STORE_DB_META,
	STORE_DB_COUNT
};

/* Insert only: an existing key is left as it is and P8V_ERR_EXISTS returned.
 * The only flag (there is no append flag: LMDB's MDB_APPEND made the audit
 * db 5 % smaller, not worth a flag every backend must understand). */
#define STORE_PUT_NO_OVERWRITE 0x1

/*
 * Look up key (klen bytes, 1..STORE_MAX_KEY_BYTES). On success *val points
 * to the stored value: read-only, valid until the transaction ends or (in a
 * write transaction) its next put, delete or clear, whichever comes first
 * (see "Values" above). Returns 0, P8V_ERR_NOT_FOUND,
 * P8V_ERR_INVALID_ARGUMENT, P8V_ERR_STORE.
 */
int store_get(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const uint8_t **val, size_t *vlen);

/*
 * Store val under key (write transactions only; the bytes are copied).
 * flags: 0 or STORE_PUT_NO_OVERWRITE. Returns 0, P8V_ERR_EXISTS,
 * P8V_ERR_INVALID_ARGUMENT (read transaction, bad size, unknown flag),
 * P8V_ERR_NO_SPACE (LMDB's map full: store_write grows the map and runs
 * the function again), P8V_ERR_STORE.
 */
int store_put(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const void *val, size_t vlen, unsigned int flags);

/* Delete key. 0, P8V_ERR_NOT_FOUND, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_STORE
 * (and P8V_ERR_NO_SPACE as store_put). */
int store_del(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen);

/*
 * Call cb for every entry whose key starts with prefix (plen bytes; 0: all
 * entries), in key order. key and val point to the stored bytes, valid
 * during the call. cb returns 0 to go on, STORE_SCAN_STOP to stop (store_scan then
 * returns 0), or a negative P8V_ERR_* to stop with that error. cb must not
 * write to db. Returns 0, cb's error, P8V_ERR_STORE.
 */
#define STORE_SCAN_STOP 1
typedef int (*store_scan_cb)(const uint8_t *key, size_t klen,
    const uint8_t *val, size_t vlen, void *arg);
int store_scan(struct store_txn *txn, enum store_db db, const void *prefix,
    size_t plen, store_scan_cb cb, void *arg);

/* Like store_scan over every entry whose key is >= start (slen bytes), to
 * the end of db. */
int store_scan_from(struct store_txn *txn, enum store_db db,
    const void *start, size_t slen, store_scan_cb cb, void *arg);

/* The entry with the greatest key. 0, P8V_ERR_NOT_FOUND (empty),
 * P8V_ERR_STORE. Pointers as store_get. */
int store_last(struct store_txn *txn, enum store_db db,
    const uint8_t **key, size_t *klen, const uint8_t **val, size_t *vlen);

/* Number of entries. 0 or P8V_ERR_STORE. */
int store_count(struct store_txn *txn, enum store_db db, uint64_t *n);

/* Delete every entry of db (write transactions). 0, P8V_ERR_INVALID_ARGUMENT,
 * P8V_ERR_STORE. */
int store_clear(struct store_txn *txn, enum store_db db);

/*
 * Locks shared by every process and node on the store, for work that must
 * not run twice at once anywhere (one APNs mint per key for the whole
 * fleet). A lock lives as long as its holder: with etcd it is a key
 * created only if absent, attached to a lease of ttl_s seconds that a
 * thread keeps alive until store_lock_release; a holder that dies or
 * loses etcd loses it when the lease runs out. A backend without locks
 * (LMDB: one host, and the callers already single-flight in process)
 * grants every lock at once with *out NULL.
 * name: 1..128 bytes of [A-Za-z0-9._/-]. Not inside a transaction.
 * Returns 0 (held; release it), P8V_ERR_BUSY (another holds it),
 * P8V_ERR_STORE_UNAVAILABLE, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC,
 * P8V_ERR_STORE.
 */
struct store_lock;
int store_lock_take(struct store *store, const char *name,
    unsigned int ttl_s, struct store_lock **out);
/* Release (NULL-safe): the lock is gone at once for everyone. */
void store_lock_release(struct store *store, struct store_lock *lock);

/*
 * Wait until the generation differs from gen or ms milliseconds passed
 * (a backend without a watch: just waits). For a caller that waits on
 * another node's work (a mint lock held elsewhere). 0; P8V_ERR_INTERNAL
 * inside a transaction.
 */
int store_wait_change(struct store *store, uint64_t gen, int ms);

/* Big-endian integers in keys and values (so that keys sort numerically). */
void store_put_u64(uint8_t out[8], uint64_t v);
uint64_t store_get_u64(const uint8_t in[8]);
void store_put_u32(uint8_t out[4], uint32_t v);
uint32_t store_get_u32(const uint8_t in[4]);

#endif /* P8V_STORE_STORE_H */
