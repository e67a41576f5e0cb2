/*
 * store.c: the LMDB environment, transactions, map growth, raw access.
 *
 * Map growth. mdb_env_set_mapsize() may only run while this process has no
 * transaction open. Every transaction therefore holds grow_lock for reading
 * from begin to commit/abort, and growing takes it for writing. A writer
 * that hits MDB_MAP_FULL aborts, releases its read lock, grows (unless
 * another thread grew the map meanwhile) and runs its function again. The
 * lock prefers writers, so a steady stream of readers cannot starve a
 * growth; for the same reason transactions must not nest (a nested read lock
 * behind a waiting writer would deadlock), which a per-thread flag enforces.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "common/err.h"
#include "common/log.h"

/* A transaction restarts after a growth or a map resize by another process;
 * each growth doubles the map, so this bound is never reached by a working
 * store and only stops a loop on a broken one. */
#define STORE_MAX_ATTEMPTS 64
/* store_write clears reader slots of dead processes at most this often
 * (seconds), so a crashed CLI or worker cannot pin old pages for long even
 * if nobody calls store_maintain. */
#define STORE_READER_CHECK_INTERVAL 60
/* LMDB writes a commit's pages with writev, at most MDB_COMMIT_PAGES (64)
 * pages at a time, and reports a write that stops short as EIO ("short
 * write, filesystem full?"), not ENOSPC. A commit that fails with EIO while
 * the file system has less free space than one such write (counted in
 * pages of this size) ran out of room: see disk_full(). */
#define STORE_COMMIT_WRITE_PAGES 64
/* Names of the databases, in enum store_db order. */
static const char *const db_names[STORE_DB_COUNT] = {
	"keys", "creds", "cache", "audit", "meta",
};
#define META_SCHEMA "schema"
/* The data files inside the state directory, named by LMDB. */
static const char *const data_files[] = { "data.mdb", "lock.mdb" };

struct store {
	MDB_env *env;
	MDB_dbi dbi[STORE_DB_COUNT];
	pid_t pid;              /* the process that opened the environment */
	char *dir;
	uint64_t max_map;       /* growth stops here */
	pthread_rwlock_t grow_lock;
	int lock_ready;
	int64_t readers_checked; /* CLOCK_MONOTONIC seconds; atomic access */
	uint64_t instance;      /* store_instance */
};

/* The last store_instance handed out (atomic). */
static uint64_t last_instance;

struct store_txn {
	struct store *store;
	MDB_txn *txn;
	int writable;
	int map_full;           /* a put or delete hit MDB_MAP_FULL */
};

/* Set while this thread runs a transaction function: no nesting. */
static __thread int txn_running;

static int
mdb_error(int rc, const char *what)
{
	switch (rc) {
	case MDB_NOTFOUND:
		return P8V_ERR_NOT_FOUND;
	case MDB_KEYEXIST:
		return P8V_ERR_EXISTS;
	case MDB_MAP_FULL:
		return P8V_ERR_NO_SPACE;
	case ENOSPC:
	case EDQUOT:
		log_errorf("store_no_space", "%s: %s", what, mdb_strerror(rc));
		return P8V_ERR_NO_SPACE;
	default:
		log_errorf("store_error", "%s: %s", what, mdb_strerror(rc));
		return P8V_ERR_STORE;
	}
}

/*
 * 1 if the file system of the data file has less room than one of LMDB's
 * commit writes: an EIO from the commit was then a short write on a full
 * disk, which must be P8V_ERR_NO_SPACE (HTTP 507, retry once space
 * returns) like the ENOSPC that a write starting on a full disk gets, not
 * a store failure (500). tests/integration/test_full_disk.py got a 500 for
 * every upload of a long run without this.
 */
static int
disk_full(struct store *store)
{
	struct statvfs st;
	long page = sysconf(_SC_PAGESIZE);
	int fd;

	if (mdb_env_get_fd(store->env, &fd) != 0 || fstatvfs(fd, &st) != 0 ||
	    page <= 0)
		return 0;
	return (uint64_t)st.f_bavail * st.f_frsize <
	    (uint64_t)STORE_COMMIT_WRITE_PAGES * (uint64_t)page;
}

/* Refuse use from a forked child (LMDB forbids it) and nested txns. */
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

static uint64_t
map_size(struct store *store)
{
	MDB_envinfo info;

	if (mdb_env_info(store->env, &info) != 0)
		return 0;
	return (uint64_t)info.me_mapsize;
}

/*
 * Double the map, unless it has already grown past seen (another thread
 * did it while we waited for the lock). Runs with no transaction open in
 * this thread, and takes grow_lock for writing so none is open in the
 * process either.
 */
static int
grow(struct store *store, uint64_t seen)
{
	uint64_t cur, next;
	int rc, r = P8V_ERR_INTERNAL;

	if (pthread_rwlock_wrlock(&store->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	cur = map_size(store);
	if (cur > seen) {
		r = 0;
		goto out;
	}
	if (cur >= store->max_map) {
		log_errorf("store_no_space", "the map is full at its maximum "
		    "of %" PRIu64 " bytes", store->max_map);
		r = P8V_ERR_NO_SPACE;
		goto out;
	}
	next = cur > store->max_map / 2 ? store->max_map : cur * 2;
	if ((rc = mdb_env_set_mapsize(store->env, (size_t)next)) != 0) {
		r = mdb_error(rc, "growing the map");
		goto out;
	}
	log_infof("store_grow", "map grown from %" PRIu64 " to %" PRIu64
	    " bytes", cur, next);
	r = 0;
 out:
	pthread_rwlock_unlock(&store->grow_lock);
	return r;
}

/* Another process grew the map (MDB_MAP_RESIZED): adopt its size. */
static int
adopt_map_size(struct store *store)
{
	int rc;

	if (pthread_rwlock_wrlock(&store->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	rc = mdb_env_set_mapsize(store->env, 0);
	pthread_rwlock_unlock(&store->grow_lock);
	return rc == 0 ? 0 : mdb_error(rc, "adopting the map size");
}

static int64_t
monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static int
check_readers(struct store *store, int *cleared)
{
	int rc, dead = 0;

	__atomic_store_n(&store->readers_checked, monotonic_seconds(),
	    __ATOMIC_RELAXED);
	if ((rc = mdb_reader_check(store->env, &dead)) != 0)
		return mdb_error(rc, "clearing stale readers");
	if (dead > 0)
		log_infof("store_readers", "cleared %d stale reader slots",
		    dead);
	if (cleared != NULL)
		*cleared = dead;
	return 0;
}

/* One attempt of a write transaction. *retry: grow and run again. */
static int
write_once(struct store *store, int (*fn)(struct store_txn *, void *),
    void *arg, int *retry, uint64_t *seen)
{
	struct store_txn t = { .store = store, .writable = 1 };
	int rc, r = P8V_ERR_INTERNAL;

	*retry = 0;
	if (pthread_rwlock_rdlock(&store->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	*seen = map_size(store);
	if ((rc = mdb_txn_begin(store->env, NULL, 0, &t.txn)) != 0) {
		t.txn = NULL;
		if (rc == MDB_MAP_RESIZED) {
			*seen = UINT64_MAX; /* adopt, do not double */
			*retry = 1;
			r = 0;
		} else
			r = mdb_error(rc, "beginning a write transaction");
		goto out;
	}
	txn_running = 1;
	r = fn(&t, arg);
	txn_running = 0;
	if (t.map_full) {
		*retry = 1;
		r = 0;
		goto out;
	}
	if (r > 0)
		r = P8V_ERR_INTERNAL;
	if (r != 0)
		goto out;
	rc = mdb_txn_commit(t.txn);
	t.txn = NULL; /* freed by commit, also on failure */
	if (rc == MDB_MAP_FULL) {
		*retry = 1;
		r = 0;
	} else if (rc == EIO && disk_full(store))
		r = mdb_error(ENOSPC, "committing (a short write)");
	else if (rc != 0)
		r = mdb_error(rc, "committing");
	else
		r = 0;
 out:
	if (t.txn != NULL)
		mdb_txn_abort(t.txn);
	pthread_rwlock_unlock(&store->grow_lock);
	return r;
}

int
store_write(struct store *store, int (*fn)(struct store_txn *, void *),
    void *arg)
{
	uint64_t seen;
	int attempt, retry, r;

	if (fn == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	/* Stale readers make the file grow: clear them now and then. Best
	 * effort; a failure here is logged and the write goes on. */
	if (monotonic_seconds() - __atomic_load_n(&store->readers_checked,
	    __ATOMIC_RELAXED) >= STORE_READER_CHECK_INTERVAL)
		(void)check_readers(store, NULL);
	for (attempt = 0; attempt < STORE_MAX_ATTEMPTS; attempt++) {
		if ((r = write_once(store, fn, arg, &retry, &seen)) != 0)
			return r;
		if (!retry)
			return 0;
		r = seen == UINT64_MAX ? adopt_map_size(store) :
		    grow(store, seen);
		if (r != 0)
			return r;
	}
	log_errorf("store_error", "write gave up after %d attempts", attempt);
	return P8V_ERR_STORE;
}

int
store_read(struct store *store, int (*fn)(struct store_txn *, void *),
    void *arg)
{
	struct store_txn t = { .store = store, .writable = 0 };
	int attempt, rc, r;

	if (fn == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	for (attempt = 0; attempt < STORE_MAX_ATTEMPTS; attempt++) {
		if (pthread_rwlock_rdlock(&store->grow_lock) != 0)
			return P8V_ERR_INTERNAL;
		rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &t.txn);
		if (rc == MDB_MAP_RESIZED) {
			pthread_rwlock_unlock(&store->grow_lock);
			if ((r = adopt_map_size(store)) != 0)
				return r;
			continue;
		}
		if (rc != 0) {
			pthread_rwlock_unlock(&store->grow_lock);
			return mdb_error(rc, "beginning a read transaction");
		}
		txn_running = 1;
		r = fn(&t, arg);
		txn_running = 0;
		mdb_txn_abort(t.txn);
		pthread_rwlock_unlock(&store->grow_lock);
		return r > 0 ? P8V_ERR_INTERNAL : r;
	}
	log_errorf("store_error", "read gave up after %d attempts", attempt);
	return P8V_ERR_STORE;
}

/* Refuse a state directory (or data file) others could tamper with. */
static int
check_dir(const char *dir)
{
	char path[4096];
	struct stat st;
	size_t i;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_errorf("store_dir", "cannot create the state directory %s: "
		    "%s", dir, strerror(errno));
		return P8V_ERR_IO;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		log_errorf("store_dir", "%s is not a directory", dir);
		return P8V_ERR_IO;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
		log_errorf("store_dir", "the state directory %s must be owned "
		    "by this user and not writable by group or others", dir);
		return P8V_ERR_IO;
	}
	for (i = 0; i < sizeof(data_files) / sizeof(data_files[0]); i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    data_files[i]) >= sizeof(path))
			return P8V_ERR_INVALID_ARGUMENT;
		if (stat(path, &st) != 0) {
			if (errno == ENOENT)
				continue;
			log_errorf("store_dir", "%s: %s", path, strerror(errno));
			return P8V_ERR_IO;
		}
		if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
		    (st.st_mode & 077) != 0) {
			log_errorf("store_dir", "%s must be a regular file owned "
			    "by this user with mode 0600", path);
			return P8V_ERR_IO;
		}
	}
	return 0;
}

/* Make the new files' directory entries durable along with their data. */
static int
sync_dir(const char *dir)
{
	int fd, r = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return P8V_ERR_IO;
	if (fsync(fd) != 0)
		r = P8V_ERR_IO;
	close(fd);
	return r;
}

/* Runs in the first write transaction: databases and schema version. */
static int
setup(struct store_txn *txn, void *arg)
{
	struct store *store = txn->store;
	uint8_t ver[4];
	MDB_val k, v;
	size_t i;
	int rc;

	(void)arg;
	for (i = 0; i < STORE_DB_COUNT; i++) {
		rc = mdb_dbi_open(txn->txn, db_names[i], MDB_CREATE,
		    &store->dbi[i]);
		if (rc == MDB_MAP_FULL) {
			txn->map_full = 1;
			return P8V_ERR_NO_SPACE;
		}
		if (rc != 0)
			return mdb_error(rc, "opening a database");
	}
	k.mv_data = (void *)META_SCHEMA;
	k.mv_size = strlen(META_SCHEMA);
	rc = mdb_get(txn->txn, store->dbi[STORE_DB_META], &k, &v);
	if (rc == MDB_NOTFOUND) {
		store_put_u32(ver, STORE_SCHEMA_VERSION);
		return store_put(txn, STORE_DB_META, META_SCHEMA,
		    strlen(META_SCHEMA), ver, sizeof(ver), 0);
	}
	if (rc != 0)
		return mdb_error(rc, "reading the schema version");
	if (v.mv_size != sizeof(ver) ||
	    store_get_u32(v.mv_data) != STORE_SCHEMA_VERSION) {
		log_errorf("store_version", "the state directory has schema "
		    "version %" PRIu32 "; this p8vault reads version %d",
		    v.mv_size == sizeof(ver) ? store_get_u32(v.mv_data) : 0,
		    STORE_SCHEMA_VERSION);
		return P8V_ERR_STORE_VERSION;
	}
	return 0;
}

int
store_open(const char *dir, const struct store_options *opts,
    struct store **out)
{
	struct store_options o = { 0 };
	pthread_rwlockattr_t attr;
	struct store *s = NULL;
	int rc, r = P8V_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (dir == NULL || *dir == '\0' || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (opts != NULL)
		o = *opts;
	if (o.initial_map_bytes == 0)
		o.initial_map_bytes = STORE_DEFAULT_MAP_BYTES;
	if (o.max_map_bytes == 0 || o.max_map_bytes > STORE_MAP_HARD_MAX)
		o.max_map_bytes = STORE_MAP_HARD_MAX;
	if (o.max_readers == 0)
		o.max_readers = STORE_DEFAULT_MAX_READERS;
	if (o.initial_map_bytes > o.max_map_bytes)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_dir(dir)) != 0)
		return r;

	r = P8V_ERR_ALLOC;
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->dir = strdup(dir)) == NULL)
		goto out;
	s->pid = getpid();
	s->instance = __atomic_add_fetch(&last_instance, 1, __ATOMIC_RELAXED);
	s->max_map = o.max_map_bytes;
	r = P8V_ERR_INTERNAL;
	if (pthread_rwlockattr_init(&attr) != 0)
		goto out;
	pthread_rwlockattr_setkind_np(&attr,
	    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	rc = pthread_rwlock_init(&s->grow_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (rc != 0)
		goto out;
	s->lock_ready = 1;

	if ((rc = mdb_env_create(&s->env)) != 0) {
		s->env = NULL;
		r = mdb_error(rc, "creating the environment");
		goto out;
	}
	if ((rc = mdb_env_set_maxdbs(s->env, STORE_DB_COUNT)) != 0 ||
	    (rc = mdb_env_set_maxreaders(s->env, o.max_readers)) != 0 ||
	    (rc = mdb_env_set_mapsize(s->env,
	    (size_t)o.initial_map_bytes)) != 0) {
		r = mdb_error(rc, "configuring the environment");
		goto out;
	}
	/* MDB_NOTLS: read transactions move between libmicrohttpd's worker
	 * threads. Nothing weakens durability. */
	if ((rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0) {
		r = mdb_error(rc, "opening the environment");
		goto out;
	}
	if ((r = check_readers(s, NULL)) != 0)
		goto out;
	if ((r = store_write(s, setup, NULL)) != 0)
		goto out;
	if ((r = sync_dir(dir)) != 0) {
		log_errorf("store_dir", "cannot sync the state directory %s",
		    dir);
		goto out;
	}
	*out = s;
	s = NULL;
	r = 0;
 out:
	store_close(s);
	return r;
}

void
store_close(struct store *store)
{
	if (store == NULL)
		return;
	/* In a forked child the environment (and the reader slots it would
	 * clear on close) belongs to the parent: only free our memory. */
	if (store->env != NULL && getpid() == store->pid)
		mdb_env_close(store->env);
	if (store->lock_ready)
		pthread_rwlock_destroy(&store->grow_lock);
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
	return check_readers(store, cleared);
}

int
store_stats(struct store *store, struct store_stats *st)
{
	MDB_envinfo info;
	MDB_stat ms;
	int rc, r;

	if (st == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	/* The map size changes under grow_lock held for writing. */
	if (pthread_rwlock_rdlock(&store->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	if ((rc = mdb_env_info(store->env, &info)) != 0 ||
	    (rc = mdb_env_stat(store->env, &ms)) != 0) {
		pthread_rwlock_unlock(&store->grow_lock);
		return mdb_error(rc, "reading statistics");
	}
	pthread_rwlock_unlock(&store->grow_lock);
	st->map_bytes = info.me_mapsize;
	st->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
	st->max_readers = info.me_maxreaders;
	st->readers_used = info.me_numreaders;
	return 0;
}

int
store_copy_fd(struct store *store, int fd)
{
	int attempt, rc, r;

	if (fd < 0)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_caller(store)) != 0)
		return r;
	for (attempt = 0; attempt < STORE_MAX_ATTEMPTS; attempt++) {
		/* The copy runs a read transaction: hold grow_lock as every
		 * transaction does, so the map is not resized under it. */
		if (pthread_rwlock_rdlock(&store->grow_lock) != 0)
			return P8V_ERR_INTERNAL;
		rc = mdb_env_copyfd2(store->env, fd, MDB_CP_COMPACT);
		pthread_rwlock_unlock(&store->grow_lock);
		if (rc != MDB_MAP_RESIZED)
			return rc == 0 ? 0 : mdb_error(rc, "copying the store");
		/* Another process grew the map before the copy began: adopt
		 * its size and start again on an empty file. */
		if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
			return mdb_error(errno, "rewinding the copy");
		if ((r = adopt_map_size(store)) != 0)
			return r;
	}
	log_errorf("store_error", "copy gave up after %d attempts", attempt);
	return P8V_ERR_STORE;
}

int
store_generation(struct store *store, uint64_t *gen)
{
	MDB_envinfo info;
	int rc;

	if (store == NULL || gen == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* Not check_caller: its getpid() is a system call, and reading the
	 * meta pages is harmless even in a forked child. A nested call would
	 * wait on grow_lock behind a writer that waits on this thread. */
	if (txn_running)
		return P8V_ERR_INTERNAL;
	/* The meta pages move when the map is resized under grow_lock. */
	if (pthread_rwlock_rdlock(&store->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	rc = mdb_env_info(store->env, &info);
	pthread_rwlock_unlock(&store->grow_lock);
	if (rc != 0)
		return mdb_error(rc, "reading the last transaction id");
	*gen = (uint64_t)info.me_last_txnid;
	return 0;
}

uint64_t
store_txn_generation(const struct store_txn *txn)
{
	return txn == NULL || txn->txn == NULL ? 0 :
	    (uint64_t)mdb_txn_id(txn->txn);
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
	if (txn == NULL || txn->txn == NULL || (unsigned)db >= STORE_DB_COUNT)
		return P8V_ERR_INVALID_ARGUMENT;
	if (write && !txn->writable)
		return P8V_ERR_INVALID_ARGUMENT;
	if (key != NULL && (klen == 0 ||
	    klen > (size_t)mdb_env_get_maxkeysize(txn->store->env)))
		return P8V_ERR_INVALID_ARGUMENT;
	return 0;
}

/* A failed change: remember a full map so store_write grows and retries. */
static int
write_error(struct store_txn *txn, int rc, const char *what)
{
	if (rc == MDB_MAP_FULL)
		txn->map_full = 1;
	else if (rc == MDB_TXN_FULL)
		log_errorf("store_error", "%s: too many changes in one "
		    "transaction", what);
	return mdb_error(rc, what);
}

int
store_get(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const uint8_t **val, size_t *vlen)
{
	MDB_val k = { klen, (void *)key }, v;
	int rc, r;

	if (key == NULL || val == NULL || vlen == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, key, klen, 0)) != 0)
		return r;
	if ((rc = mdb_get(txn->txn, txn->store->dbi[db], &k, &v)) != 0)
		return mdb_error(rc, "reading");
	*val = v.mv_data;
	*vlen = v.mv_size;
	return 0;
}

int
store_put(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const void *val, size_t vlen, unsigned int flags)
{
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
	unsigned int mflags = 0;
	int rc, r;

	if (key == NULL || (val == NULL && vlen != 0) ||
	    (flags & ~(unsigned)(STORE_PUT_NO_OVERWRITE | STORE_PUT_APPEND)))
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, key, klen, 1)) != 0)
		return r;
	if (flags & STORE_PUT_NO_OVERWRITE)
		mflags |= MDB_NOOVERWRITE;
	if (flags & STORE_PUT_APPEND)
		mflags |= MDB_APPEND;
	rc = mdb_put(txn->txn, txn->store->dbi[db], &k, &v, mflags);
	/* MDB_APPEND reports a key out of order as MDB_KEYEXIST. */
	if (rc == MDB_KEYEXIST && (flags & STORE_PUT_APPEND) &&
	    !(flags & STORE_PUT_NO_OVERWRITE))
		return P8V_ERR_INVALID_ARGUMENT;
	return rc == 0 ? 0 : write_error(txn, rc, "writing");
}

int
store_del(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen)
{
	MDB_val k = { klen, (void *)key };
	int rc, r;

	if (key == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, key, klen, 1)) != 0)
		return r;
	rc = mdb_del(txn->txn, txn->store->dbi[db], &k, NULL);
	return rc == 0 ? 0 : write_error(txn, rc, "deleting");
}

/* Walk from the first key >= start; stop at the first key that does not
 * begin with the first plen bytes of start. */
static int
scan(struct store_txn *txn, enum store_db db, const void *start, size_t slen,
    size_t plen,
    int (*cb)(const uint8_t *, size_t, const uint8_t *, size_t, void *),
    void *arg)
{
	MDB_cursor *cur = NULL;
	MDB_val k = { slen, (void *)start }, v;
	int rc, r;

	if (cb == NULL || (start == NULL && slen != 0))
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, NULL, 0, 0)) != 0)
		return r;
	if ((rc = mdb_cursor_open(txn->txn, txn->store->dbi[db], &cur)) != 0)
		return mdb_error(rc, "opening a cursor");
	rc = mdb_cursor_get(cur, &k, &v, slen > 0 ? MDB_SET_RANGE : MDB_FIRST);
	r = 0;
	while (rc == 0) {
		if (plen > 0 && (k.mv_size < plen ||
		    memcmp(k.mv_data, start, plen) != 0))
			break;
		if ((r = cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size,
		    arg)) != 0)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (r == 0 && rc != 0 && rc != MDB_NOTFOUND)
		r = mdb_error(rc, "scanning");
	if (r == STORE_SCAN_STOP)
		r = 0;
	else if (r > 0)
		r = P8V_ERR_INTERNAL;
	mdb_cursor_close(cur);
	return r;
}

int
store_scan(struct store_txn *txn, enum store_db db, const void *prefix,
    size_t plen,
    int (*cb)(const uint8_t *, size_t, const uint8_t *, size_t, void *),
    void *arg)
{
	return scan(txn, db, prefix, plen, plen, cb, arg);
}

int
store_scan_from(struct store_txn *txn, enum store_db db, const void *start,
    size_t slen,
    int (*cb)(const uint8_t *, size_t, const uint8_t *, size_t, void *),
    void *arg)
{
	return scan(txn, db, start, slen, 0, cb, arg);
}

int
store_last(struct store_txn *txn, enum store_db db, const uint8_t **key,
    size_t *klen, const uint8_t **val, size_t *vlen)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, r;

	if (key == NULL || klen == NULL || val == NULL || vlen == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, NULL, 0, 0)) != 0)
		return r;
	if ((rc = mdb_cursor_open(txn->txn, txn->store->dbi[db], &cur)) != 0)
		return mdb_error(rc, "opening a cursor");
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	mdb_cursor_close(cur);
	if (rc != 0)
		return mdb_error(rc, "reading the last entry");
	*key = k.mv_data;
	*klen = k.mv_size;
	*val = v.mv_data;
	*vlen = v.mv_size;
	return 0;
}

int
store_count(struct store_txn *txn, enum store_db db, uint64_t *n)
{
	MDB_stat ms;
	int rc, r;

	if (n == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_raw(txn, db, NULL, 0, 0)) != 0)
		return r;
	if ((rc = mdb_stat(txn->txn, txn->store->dbi[db], &ms)) != 0)
		return mdb_error(rc, "counting");
	*n = ms.ms_entries;
	return 0;
}

int
store_clear(struct store_txn *txn, enum store_db db)
{
	int rc, r;

	if ((r = check_raw(txn, db, NULL, 0, 1)) != 0)
		return r;
	rc = mdb_drop(txn->txn, txn->store->dbi[db], 0);
	return rc == 0 ? 0 : write_error(txn, rc, "clearing");
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
