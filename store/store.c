/*
 * store.c: the store's public API: a thin dispatch over the backend chosen
 * at store_open (store/backend.h), plus the rules every backend shares: no
 * nested transactions, no use from a forked child, the retry loop of
 * store_write, argument checks, and the schema version in meta.
 */
#include "store/reserve.h"
#include "store/store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "store/records.h"
#include "common/log.h"
#include "store/backend.h"

/* A transaction restarts when its backend asks (LMDB: map growth or a map
 * resize by another process; a networked backend: a failed compare). Each
 * LMDB growth doubles the map, so this bound is never reached by a working
 * store and only stops a loop on a broken one. */
#define STORE_MAX_ATTEMPTS 64
#define META_SCHEMA "schema"
/* Longest lock name (store_lock_take). */
#define STORE_LOCK_NAME_MAX 128

/* The backends store_open can choose from, by name
 * (STORE_DEFAULT_BACKEND when none is given). */
static const struct store_backend *const backends[] = {
	&store_backend_lmdb,
	&store_backend_etcd,
};

/* store_set_default_options */
static struct store_options default_options;
static int have_default_options;

struct store {
	const struct store_backend *be;
	struct store_impl *impl;
	pid_t pid;              /* the process that opened the store */
	char *dir;
	uint64_t instance;      /* store_instance */
	struct store_reserve *reserve; /* room for mints; NULL: none */
};

/* The last store_instance handed out (atomic). */
static uint64_t last_instance;

/* Set while this thread runs a transaction function: no nesting. */
static __thread int txn_running;

/* Refuse use from a forked child and nested txns. */
static int
check_caller(const struct store *store)
{
	if (store == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (getpid() != store->pid) {
		log_errorf("store_fork", "store used in a forked child; "
		    "open a new store in the child");
		return P8V_ERR_STORE;
	}
	if (txn_running) {
		log_errorf("store_nested", "nested store transaction");
		return P8V_ERR_INTERNAL;
	}
	return 0;
}

const char *
store_backend_name(const struct store *store)
{
	return store == NULL ? NULL : store->be->name;
}

int
store_backend_known(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strcmp(backends[i]->name, name) == 0)
			return 1;
	return 0;
}

void
store_limits(const struct store *store, size_t *max_ops, size_t *max_bytes)
{
	*max_ops = store == NULL ? 0 : store->be->max_txn_ops;
	*max_bytes = store == NULL ? 0 : store->be->max_txn_bytes;
}

static int write_txn(struct store *store,
    int (*fn)(struct store_txn *, void *), void *arg);

int
store_write(struct store *store, int (*fn)(struct store_txn *, void *),
    void *arg)
{
	struct store_reserve *rs = store != NULL ? store->reserve : NULL;
	int r;

	if (fn == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* Room given to mints is taken back before anything else writes:
	 * nothing runs while the disk cannot give it (reserve.h). */
	if ((r = store_reserve_refill(rs)) != 0)
		return r;
	return write_txn(store, fn, arg);
}

int
store_write_reserved(struct store *store,
    int (*fn)(struct store_txn *, void *), void *arg)
{
	struct store_reserve *rs = store != NULL ? store->reserve : NULL;
	int r;

	if (fn == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	(void)store_reserve_refill(rs);
	while ((r = write_txn(store, fn, arg)) == P8V_ERR_NO_SPACE &&
	    store_reserve_release(rs) == 0)
		;
	return r;
}

static int
write_txn(struct store *store, int (*fn)(struct store_txn *, void *),
    void *arg)
{
	struct store_txn t;
	int attempt, e, r;

	if (fn == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	for (attempt = 0; attempt < STORE_MAX_ATTEMPTS; attempt++) {
		memset(&t, 0, sizeof(t));
		t.store = store;
		t.impl = store->impl;
		t.writable = 1;
		if ((r = store->be->begin(store->impl, &t)) ==
		    STORE_BACKEND_RETRY)
			continue;
		if (r != 0)
			return r;
		txn_running = 1;
		r = fn(&t, arg);
		txn_running = 0;
		if (r > 0)
			r = P8V_ERR_INTERNAL;
		if (t.retry || r != 0) {
			e = store->be->end(&t);
			if (e == STORE_BACKEND_RETRY)
				continue;
			return t.retry && e != 0 ? e : r;
		}
		if ((r = store->be->commit(&t)) != STORE_BACKEND_RETRY)
			return r;
	}
	log_errorf("store_error", "write gave up after %d attempts", attempt);
	return P8V_ERR_STORE;
}

int
store_read(struct store *store, int (*fn)(struct store_txn *, void *),
    void *arg)
{
	struct store_txn t;
	int attempt, e, r;

	if (fn == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	for (attempt = 0; attempt < STORE_MAX_ATTEMPTS; attempt++) {
		memset(&t, 0, sizeof(t));
		t.store = store;
		t.impl = store->impl;
		if ((r = store->be->begin(store->impl, &t)) ==
		    STORE_BACKEND_RETRY)
			continue;
		if (r != 0)
			return r;
		txn_running = 1;
		r = fn(&t, arg);
		txn_running = 0;
		if ((e = store->be->end(&t)) == STORE_BACKEND_RETRY)
			continue;
		if (r == 0 && e != 0)
			r = e;
		return r > 0 ? P8V_ERR_INTERNAL : r;
	}
	log_errorf("store_error", "read gave up after %d attempts", attempt);
	return P8V_ERR_STORE;
}

/* Runs in the first write transaction: the schema version. */
static int
setup(struct store_txn *txn, void *arg)
{
	const uint8_t *v;
	uint8_t ver[4];
	size_t vlen;
	int r;

	(void)arg;
	r = store_get(txn, STORE_DB_META, META_SCHEMA, strlen(META_SCHEMA),
	    &v, &vlen);
	if (r == P8V_ERR_NOT_FOUND) {
		store_put_u32(ver, STORE_SCHEMA_VERSION);
		return store_put(txn, STORE_DB_META, META_SCHEMA,
		    strlen(META_SCHEMA), ver, sizeof(ver), 0);
	}
	if (r != 0)
		return r;
	if (vlen != sizeof(ver) || store_get_u32(v) != STORE_SCHEMA_VERSION) {
		log_errorf("store_version", "the state directory has schema "
		    "version %" PRIu32 "; this p8vault reads version %d",
		    vlen == sizeof(ver) ? store_get_u32(v) : 0,
		    STORE_SCHEMA_VERSION);
		return P8V_ERR_STORE_VERSION;
	}
	/* A vault written by a release without the record indexes gets
	 * them here (indexes, not a new schema: older releases ignore them). */
	return key_record_index_sync(txn, NULL);
}

int
store_open(const char *dir, const struct store_options *opts,
    struct store **out)
{
	struct store_options o = { 0 };
	struct store *s = NULL;
	size_t i;
	int r = P8V_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (dir == NULL || *dir == '\0' || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (opts != NULL)
		o = *opts;
	else if (have_default_options)
		o = default_options;
	if (o.initial_map_bytes == 0)
		o.initial_map_bytes = STORE_DEFAULT_MAP_BYTES;
	if (o.max_map_bytes == 0 || o.max_map_bytes > STORE_MAP_HARD_MAX)
		o.max_map_bytes = STORE_MAP_HARD_MAX;
	if (o.max_readers == 0)
		o.max_readers = STORE_DEFAULT_MAX_READERS;
	if (o.initial_map_bytes > o.max_map_bytes)
		return P8V_ERR_INVALID_ARGUMENT;

	r = P8V_ERR_ALLOC;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->dir = strdup(dir)) == NULL)
		goto out;
	if (o.backend == NULL)
		o.backend = store_location_is_etcd(dir) ? "etcd" :
		    STORE_DEFAULT_BACKEND;
	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strcmp(o.backend, backends[i]->name) == 0) {
			s->be = backends[i];
			break;
		}
	if (s->be == NULL) {
		log_errorf("store_backend", "no store backend is named %s",
		    o.backend);
		r = P8V_ERR_UNSUPPORTED;
		goto out;
	}
	s->pid = getpid();
	s->instance = __atomic_add_fetch(&last_instance, 1, __ATOMIC_RELAXED);
	if ((r = s->be->open(dir, &o, &s->impl)) != 0)
		goto out;
	/* Room for mints on a full disk: a state directory's file system
	 * (LMDB). etcd keeps its own quota; a prefix has no directory. */
	if (strcmp(s->be->name, "lmdb") == 0)
		s->reserve = store_reserve_open(dir);
	if ((r = write_txn(s, setup, NULL)) != 0)
		goto out;
	*out = s;
	s = NULL;
	r = 0;
 out:
	store_close(s);
	return r;
}

int
store_location_is_etcd(const char *location)
{
	return location != NULL && strncmp(location, STORE_ETCD_SCHEME,
	    strlen(STORE_ETCD_SCHEME)) == 0;
}

void
store_set_default_options(const struct store_options *opts)
{
	if (opts == NULL) {
		memset(&default_options, 0, sizeof(default_options));
		have_default_options = 0;
		return;
	}
	default_options = *opts;
	have_default_options = 1;
}

void
store_close(struct store *store)
{
	if (store == NULL)
		return;
	if (store->impl != NULL)
		store->be->close(store->impl, getpid() != store->pid);
	store_reserve_close(store->reserve);
	free(store->dir);
	free(store);
}

int
store_maintain(struct store *store, int *cleared)
{
	int r;

	if (cleared != NULL)
		*cleared = 0;
	if ((r = check_caller(store)) != 0)
		return r;
	if (store->be->maintain == NULL)
		return 0;
	return store->be->maintain(store->impl, cleared);
}

int
store_stats(struct store *store, struct store_stats *st)
{
	int r;

	if (st == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	memset(st, 0, sizeof(*st));
	return store->be->stats(store->impl, st);
}

int
store_ready(struct store *store)
{
	if (store == NULL)
		return 0;
	return store->be->ready == NULL ? 1 : store->be->ready(store->impl);
}

int
store_copy_fd(struct store *store, int fd)
{
	int r;

	if (fd < 0)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	if (store->be->copy_fd == NULL) {
		log_errorf("store_backend", "the %s store has no hot copy; "
		    "use p8vault export", store->be->name);
		return P8V_ERR_UNSUPPORTED;
	}
	return store->be->copy_fd(store->impl, fd);
}

int
store_lock_take(struct store *store, const char *name, unsigned int ttl_s,
    struct store_lock **out)
{
	size_t i, n;
	int r;

	if (out != NULL)
		*out = NULL;
	if (name == NULL || out == NULL || ttl_s == 0)
		return P8V_ERR_INVALID_ARGUMENT;
	n = strlen(name);
	if (n == 0 || n > STORE_LOCK_NAME_MAX)
		return P8V_ERR_INVALID_ARGUMENT;
	for (i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		    (name[i] >= 'A' && name[i] <= 'Z') ||
		    (name[i] >= '0' && name[i] <= '9') ||
		    strchr("._/-", name[i]) != NULL))
			return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	if (store->be->lock_take == NULL)
		return 0;
	return store->be->lock_take(store->impl, name, ttl_s, out);
}

void
store_lock_release(struct store *store, struct store_lock *lock)
{
	if (store == NULL || lock == NULL || store->be->lock_release == NULL)
		return;
	store->be->lock_release(store->impl, lock);
}

int
store_wait_change(struct store *store, uint64_t gen, int ms)
{
	struct timespec ts;

	if (store == NULL || ms < 0)
		return P8V_ERR_INVALID_ARGUMENT;
	if (txn_running)
		return P8V_ERR_INTERNAL;
	if (store->be->wait_change != NULL)
		return store->be->wait_change(store->impl, gen, ms);
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
	return 0;
}

int
store_generation(struct store *store, uint64_t *gen)
{
	if (store == NULL || gen == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* Not check_caller: its getpid() is a system call, and reading the
	 * generation is harmless even in a forked child. A nested call would
	 * wait on LMDB's grow_lock behind a writer that waits on this
	 * thread. */
	if (txn_running)
		return P8V_ERR_INTERNAL;
	return store->be->generation(store->impl, gen);
}

uint64_t
store_txn_generation(const struct store_txn *txn)
{
	return txn == NULL || txn->handle == NULL ? 0 :
	    txn->store->be->txn_generation(txn);
}

uint64_t
store_instance(const struct store *store)
{
	return store == NULL ? 0 : store->instance;
}

const char *
store_dir(const struct store *store)
{
	return store == NULL ? NULL : store->dir;
}

struct store *
store_txn_store(struct store_txn *txn)
{
	return txn == NULL ? NULL : txn->store;
}

/* Common argument checks of the raw functions. */
static int
check_raw(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, int write)
{
	if (txn == NULL || txn->handle == NULL ||
	    (unsigned)db >= STORE_DB_COUNT)
		return P8V_ERR_INVALID_ARGUMENT;
	if (write && !txn->writable)
		return P8V_ERR_INVALID_ARGUMENT;
	if (key != NULL && (klen == 0 || klen > STORE_MAX_KEY_BYTES))
		return P8V_ERR_INVALID_ARGUMENT;
	return 0;
}

int
store_get(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const uint8_t **val, size_t *vlen)
{
	int r;

	if (key == NULL || val == NULL || vlen == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, key, klen, 0)) != 0)
		return r;
	return txn->store->be->get(txn, db, key, klen, val, vlen);
}

int
store_put(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const void *val, size_t vlen, unsigned int flags)
{
	int r;

	if (key == NULL || (val == NULL && vlen != 0) ||
	    (flags & ~(unsigned)STORE_PUT_NO_OVERWRITE))
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, key, klen, 1)) != 0)
		return r;
	return txn->store->be->put(txn, db, key, klen, val, vlen, flags);
}

int
store_del(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen)
{
	int r;

	if (key == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, key, klen, 1)) != 0)
		return r;
	return txn->store->be->del(txn, db, key, klen);
}

static int
scan(struct store_txn *txn, enum store_db db, const void *start, size_t slen,
    size_t plen, store_scan_cb cb, void *arg)
{
	int r;

	if (cb == NULL || (start == NULL && slen != 0))
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, NULL, 0, 0)) != 0)
		return r;
	r = txn->store->be->scan(txn, db, start, slen, plen, cb, arg);
	if (r == STORE_SCAN_STOP)
		r = 0;
	else if (r > 0)
		r = P8V_ERR_INTERNAL;
	return r;
}

int
store_scan(struct store_txn *txn, enum store_db db, const void *prefix,
    size_t plen, store_scan_cb cb, void *arg)
{
	return scan(txn, db, prefix, plen, plen, cb, arg);
}

int
store_scan_from(struct store_txn *txn, enum store_db db, const void *start,
    size_t slen, store_scan_cb cb, void *arg)
{
	return scan(txn, db, start, slen, 0, cb, arg);
}

int
store_last(struct store_txn *txn, enum store_db db, const uint8_t **key,
    size_t *klen, const uint8_t **val, size_t *vlen)
{
	int r;

	if (key == NULL || klen == NULL || val == NULL || vlen == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, NULL, 0, 0)) != 0)
		return r;
	return txn->store->be->last(txn, db, key, klen, val, vlen);
}

int
store_count(struct store_txn *txn, enum store_db db, uint64_t *n)
{
	int r;

	if (n == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, NULL, 0, 0)) != 0)
		return r;
	return txn->store->be->count(txn, db, n);
}

int
store_clear(struct store_txn *txn, enum store_db db)
{
	int r;

	if ((r = check_raw(txn, db, NULL, 0, 1)) != 0)
		return r;
	return txn->store->be->clear(txn, db);
}

void
store_put_u64(uint8_t out[8], uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
}

uint64_t
store_get_u64(const uint8_t in[8])
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | in[i];
	return v;
}

void
store_put_u32(uint8_t out[4], uint32_t v)
{
	int i;

	for (i = 3; i >= 0; i--, v >>= 8)
		out[i] = (uint8_t)v;
}

uint32_t
store_get_u32(const uint8_t in[4])
{
	uint32_t v = 0;
	int i;

	for (i = 0; i < 4; i++)
		v = v << 8 | in[i];
	return v;
}
