/*
 * backend_lmdb.c: the LMDB backend, the only file that calls LMDB.
 *
 * One environment per state directory (data.mdb and lock.mdb, mode 0600,
 * directory 0700), one named database per enum store_db.
 *
 * Map growth. mdb_env_set_mapsize() may only run while this process has no
 * transaction open. Every transaction therefore holds grow_lock for reading
 * from begin to commit/end, and growing takes it for writing. A writer
 * that hits MDB_MAP_FULL asks store.c to run its function again
 * (txn->retry), and end() grows the map (unless another thread grew it
 * meanwhile) after releasing its read lock. The lock prefers writers, so a
 * steady stream of readers cannot starve a growth; for the same reason
 * transactions must not nest (a nested read lock behind a waiting writer
 * would deadlock), which store.c enforces.
 *
 * Values handed out point into the map: valid until the transaction ends,
 * and in a write transaction only until its next put/del/clear (LMDB may
 * move or reuse a dirty page). store.h promises no more than that.
 */
#include "store/backend.h"

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

/* store_write clears reader slots of dead processes at most this often
 * (seconds), so a crashed CLI or worker cannot pin old pages for long even
 * if nobody calls store_maintain. */
#define LMDB_READER_CHECK_INTERVAL 60
/* store_copy_fd restarts when another process resized the map; a working
 * store never needs more than a few. */
#define LMDB_COPY_ATTEMPTS 64
/* LMDB writes a commit's pages with writev, at most MDB_COMMIT_PAGES (64)
 * pages at a time, and reports a write that stops short as EIO ("short
 * write, filesystem full?"), not ENOSPC. A commit that fails with EIO while
 * the file system has less free space than one such write (counted in
 * pages of this size) ran out of room: see disk_full(). */
#define LMDB_COMMIT_WRITE_PAGES 64
/* Names of the databases, in enum store_db order. */
static const char *const db_names[STORE_DB_COUNT] = {
	"keys", "creds", "cache", "audit", "meta",
};
/* The data files inside the state directory, named by LMDB. */
static const char *const data_files[] = { "data.mdb", "lock.mdb" };

struct store_impl {
	MDB_env *env;
	MDB_dbi dbi[STORE_DB_COUNT];
	uint64_t max_map;       /* growth stops here */
	pthread_rwlock_t grow_lock;
	int lock_ready;
	int64_t readers_checked; /* CLOCK_MONOTONIC seconds; atomic access */
};

/* txn->scratch: the map size seen at begin; this value means "another
 * process resized the map: adopt its size, do not double". */
#define LMDB_ADOPT UINT64_MAX

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
disk_full(struct store_impl *s)
{
	struct statvfs st;
	long page = sysconf(_SC_PAGESIZE);
	int fd;

	if (mdb_env_get_fd(s->env, &fd) != 0 || fstatvfs(fd, &st) != 0 ||
	    page <= 0)
		return 0;
	return (uint64_t)st.f_bavail * st.f_frsize <
	    (uint64_t)LMDB_COMMIT_WRITE_PAGES * (uint64_t)page;
}

static uint64_t
map_size(struct store_impl *s)
{
	MDB_envinfo info;

	if (mdb_env_info(s->env, &info) != 0)
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
grow(struct store_impl *s, uint64_t seen)
{
	uint64_t cur, next;
	int rc, r = P8V_ERR_INTERNAL;

	if (pthread_rwlock_wrlock(&s->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	cur = map_size(s);
	if (cur > seen) {
		r = 0;
		goto out;
	}
	if (cur >= s->max_map) {
		log_errorf("store_no_space", "the map is full at its maximum "
		    "of %" PRIu64 " bytes", s->max_map);
		r = P8V_ERR_NO_SPACE;
		goto out;
	}
	next = cur > s->max_map / 2 ? s->max_map : cur * 2;
	if ((rc = mdb_env_set_mapsize(s->env, (size_t)next)) != 0) {
		r = mdb_error(rc, "growing the map");
		goto out;
	}
	log_infof("store_grow", "map grown from %" PRIu64 " to %" PRIu64
	    " bytes", cur, next);
	r = 0;
 out:
	pthread_rwlock_unlock(&s->grow_lock);
	return r;
}

/* Another process grew the map (MDB_MAP_RESIZED): adopt its size. */
static int
adopt_map_size(struct store_impl *s)
{
	int rc;

	if (pthread_rwlock_wrlock(&s->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	rc = mdb_env_set_mapsize(s->env, 0);
	pthread_rwlock_unlock(&s->grow_lock);
	return rc == 0 ? 0 : mdb_error(rc, "adopting the map size");
}

/* After a transaction asked for a retry: make room, then run again. */
static int
make_room(struct store_impl *s, uint64_t seen)
{
	int r;

	r = seen == LMDB_ADOPT ? adopt_map_size(s) : grow(s, seen);
	return r == 0 ? STORE_BACKEND_RETRY : r;
}

static int64_t
monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static int
check_readers(struct store_impl *s, int *cleared)
{
	int rc, dead = 0;

	__atomic_store_n(&s->readers_checked, monotonic_seconds(),
	    __ATOMIC_RELAXED);
	if ((rc = mdb_reader_check(s->env, &dead)) != 0)
		return mdb_error(rc, "clearing stale readers");
	if (dead > 0)
		log_infof("store_readers", "cleared %d stale reader slots",
		    dead);
	if (cleared != NULL)
		*cleared = dead;
	return 0;
}

static int
lmdb_begin(struct store_impl *s, struct store_txn *txn)
{
	MDB_txn *t = NULL;
	int rc;

	/* Stale readers make the file grow: clear them now and then. Best
	 * effort; a failure here is logged and the write goes on. */
	if (txn->writable && monotonic_seconds() -
	    __atomic_load_n(&s->readers_checked, __ATOMIC_RELAXED) >=
	    LMDB_READER_CHECK_INTERVAL)
		(void)check_readers(s, NULL);
	if (pthread_rwlock_rdlock(&s->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	if (txn->writable)
		txn->scratch = map_size(s);
	rc = mdb_txn_begin(s->env, NULL, txn->writable ? 0 : MDB_RDONLY, &t);
	if (rc != 0) {
		pthread_rwlock_unlock(&s->grow_lock);
		if (rc == MDB_MAP_RESIZED)
			return make_room(s, LMDB_ADOPT);
		return mdb_error(rc, txn->writable ?
		    "beginning a write transaction" :
		    "beginning a read transaction");
	}
	txn->handle = t;
	return 0;
}

static int
lmdb_commit(struct store_txn *txn)
{
	struct store_impl *s = txn->impl;
	int rc;

	rc = mdb_txn_commit(txn->handle);
	txn->handle = NULL; /* freed by commit, also on failure */
	pthread_rwlock_unlock(&s->grow_lock);
	if (rc == 0)
		return 0;
	if (rc == MDB_MAP_FULL)
		return make_room(s, txn->scratch);
	if (rc == EIO && disk_full(s))
		return mdb_error(ENOSPC, "committing (a short write)");
	return mdb_error(rc, "committing");
}

static int
lmdb_end(struct store_txn *txn)
{
	struct store_impl *s = txn->impl;

	if (txn->handle != NULL)
		mdb_txn_abort(txn->handle);
	txn->handle = NULL;
	pthread_rwlock_unlock(&s->grow_lock);
	return txn->retry ? make_room(s, txn->scratch) : 0;
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
		log_errorf("store_dir", "the state directory %s (owner uid %lu, "
		    "mode %04o) must be owned by this user (uid %lu) and not "
		    "writable by group or others", dir,
		    (unsigned long)st.st_uid, (unsigned)(st.st_mode & 07777),
		    (unsigned long)geteuid());
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
			log_errorf("store_dir", "%s (owner uid %lu, mode %04o) "
			    "must be a regular file owned by this user (uid "
			    "%lu) with mode 0600", path,
			    (unsigned long)st.st_uid,
			    (unsigned)(st.st_mode & 07777),
			    (unsigned long)geteuid());
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

/* Open (creating) the named databases; their handles live as long as the
 * environment. A write transaction that creates nothing writes nothing. */
static int
open_dbs(struct store_impl *s)
{
	MDB_txn *t = NULL;
	size_t i;
	int rc;

	if ((rc = mdb_txn_begin(s->env, NULL, 0, &t)) != 0)
		return mdb_error(rc, "beginning a write transaction");
	for (i = 0; i < STORE_DB_COUNT; i++) {
		if ((rc = mdb_dbi_open(t, db_names[i], MDB_CREATE,
		    &s->dbi[i])) != 0) {
			mdb_txn_abort(t);
			return mdb_error(rc, "opening a database");
		}
	}
	if ((rc = mdb_txn_commit(t)) != 0)
		return mdb_error(rc, "creating the databases");
	return 0;
}

static void
lmdb_close(struct store_impl *s, int forked)
{
	if (s == NULL)
		return;
	/* In a forked child the environment (and the reader slots it would
	 * clear on close) belongs to the parent: only free our memory. */
	if (s->env != NULL && !forked)
		mdb_env_close(s->env);
	if (s->lock_ready)
		pthread_rwlock_destroy(&s->grow_lock);
	free(s);
}

static int
lmdb_open(const char *dir, const struct store_options *o,
    struct store_impl **out)
{
	pthread_rwlockattr_t attr;
	struct store_impl *s = NULL;
	int rc, r;

	*out = NULL;
	if ((r = check_dir(dir)) != 0)
		return r;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return P8V_ERR_ALLOC;
	s->max_map = o->max_map_bytes;
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
	    (rc = mdb_env_set_maxreaders(s->env, o->max_readers)) != 0 ||
	    (rc = mdb_env_set_mapsize(s->env,
	    (size_t)o->initial_map_bytes)) != 0) {
		r = mdb_error(rc, "configuring the environment");
		goto out;
	}
	/* MDB_NOTLS: read transactions move between libmicrohttpd's worker
	 * threads. Nothing weakens durability. */
	if ((rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0) {
		r = mdb_error(rc, "opening the environment");
		goto out;
	}
	if (mdb_env_get_maxkeysize(s->env) < STORE_MAX_KEY_BYTES) {
		log_errorf("store_error", "this LMDB takes keys of at most %d "
		    "bytes; p8vault needs %d", mdb_env_get_maxkeysize(s->env),
		    STORE_MAX_KEY_BYTES);
		r = P8V_ERR_STORE;
		goto out;
	}
	if ((r = check_readers(s, NULL)) != 0)
		goto out;
	if ((r = open_dbs(s)) != 0)
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
	lmdb_close(s, 0);
	return r;
}

static int
lmdb_maintain(struct store_impl *s, int *cleared)
{
	return check_readers(s, cleared);
}

static int
lmdb_stats(struct store_impl *s, struct store_stats *st)
{
	MDB_envinfo info;
	MDB_stat ms;
	int rc;

	/* The map size changes under grow_lock held for writing. */
	if (pthread_rwlock_rdlock(&s->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	if ((rc = mdb_env_info(s->env, &info)) != 0 ||
	    (rc = mdb_env_stat(s->env, &ms)) != 0) {
		pthread_rwlock_unlock(&s->grow_lock);
		return mdb_error(rc, "reading statistics");
	}
	pthread_rwlock_unlock(&s->grow_lock);
	st->map_bytes = info.me_mapsize;
	st->max_map_bytes = s->max_map;
	st->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
	st->max_readers = info.me_maxreaders;
	st->readers_used = info.me_numreaders;
	return 0;
}

static int
lmdb_copy_fd(struct store_impl *s, int fd)
{
	int attempt, rc, r;

	for (attempt = 0; attempt < LMDB_COPY_ATTEMPTS; attempt++) {
		/* The copy runs a read transaction: hold grow_lock as every
		 * transaction does, so the map is not resized under it. */
		if (pthread_rwlock_rdlock(&s->grow_lock) != 0)
			return P8V_ERR_INTERNAL;
		rc = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
		pthread_rwlock_unlock(&s->grow_lock);
		if (rc != MDB_MAP_RESIZED)
			return rc == 0 ? 0 : mdb_error(rc, "copying the store");
		/* Another process grew the map before the copy began: adopt
		 * its size and start again on an empty file. */
		if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
			return mdb_error(errno, "rewinding the copy");
		if ((r = adopt_map_size(s)) != 0)
			return r;
	}
	log_errorf("store_error", "copy gave up after %d attempts", attempt);
	return P8V_ERR_STORE;
}

static int
lmdb_generation(struct store_impl *s, uint64_t *gen)
{
	MDB_envinfo info;
	int rc;

	/* The meta pages move when the map is resized under grow_lock. */
	if (pthread_rwlock_rdlock(&s->grow_lock) != 0)
		return P8V_ERR_INTERNAL;
	rc = mdb_env_info(s->env, &info);
	pthread_rwlock_unlock(&s->grow_lock);
	if (rc != 0)
		return mdb_error(rc, "reading the last transaction id");
	*gen = (uint64_t)info.me_last_txnid;
	return 0;
}

static uint64_t
lmdb_txn_generation(const struct store_txn *txn)
{
	return txn->handle == NULL ? 0 : (uint64_t)mdb_txn_id(txn->handle);
}

/* A failed change: remember a full map so the transaction runs again in a
 * grown one. */
static int
write_error(struct store_txn *txn, int rc, const char *what)
{
	if (rc == MDB_MAP_FULL)
		txn->retry = 1;
	else if (rc == MDB_TXN_FULL)
		log_errorf("store_error", "%s: too many changes in one "
		    "transaction", what);
	return mdb_error(rc, what);
}

static int
lmdb_get(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const uint8_t **val, size_t *vlen)
{
	MDB_val k = { klen, (void *)key }, v;
	int rc;

	if ((rc = mdb_get(txn->handle, txn->impl->dbi[db], &k, &v)) != 0)
		return mdb_error(rc, "reading");
	*val = v.mv_data;
	*vlen = v.mv_size;
	return 0;
}

static int
lmdb_put(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen, const void *val, size_t vlen, unsigned int flags)
{
	MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
	unsigned int mflags = 0;
	int rc;

	if (flags & STORE_PUT_NO_OVERWRITE)
		mflags |= MDB_NOOVERWRITE;
	rc = mdb_put(txn->handle, txn->impl->dbi[db], &k, &v, mflags);
	return rc == 0 ? 0 : write_error(txn, rc, "writing");
}

static int
lmdb_del(struct store_txn *txn, enum store_db db, const void *key,
    size_t klen)
{
	MDB_val k = { klen, (void *)key };
	int rc;

	rc = mdb_del(txn->handle, txn->impl->dbi[db], &k, NULL);
	return rc == 0 ? 0 : write_error(txn, rc, "deleting");
}

static int
lmdb_scan(struct store_txn *txn, enum store_db db, const void *start,
    size_t slen, size_t plen, store_scan_cb cb, void *arg)
{
	MDB_cursor *cur = NULL;
	MDB_val k = { slen, (void *)start }, v;
	int rc, r;

	if ((rc = mdb_cursor_open(txn->handle, txn->impl->dbi[db],
	    &cur)) != 0)
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
	mdb_cursor_close(cur);
	return r;
}

static int
lmdb_last(struct store_txn *txn, enum store_db db, const uint8_t **key,
    size_t *klen, const uint8_t **val, size_t *vlen)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn->handle, txn->impl->dbi[db],
	    &cur)) != 0)
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

static int
lmdb_count(struct store_txn *txn, enum store_db db, uint64_t *n)
{
	MDB_stat ms;
	int rc;

	if ((rc = mdb_stat(txn->handle, txn->impl->dbi[db], &ms)) != 0)
		return mdb_error(rc, "counting");
	*n = ms.ms_entries;
	return 0;
}

static int
lmdb_clear(struct store_txn *txn, enum store_db db)
{
	int rc;

	rc = mdb_drop(txn->handle, txn->impl->dbi[db], 0);
	return rc == 0 ? 0 : write_error(txn, rc, "clearing");
}

const struct store_backend store_backend_lmdb = {
	.name = "lmdb",
	/* One transaction holds as many changes as the map has room for
	 * (MDB_TXN_FULL is far beyond what p8vault writes at once). */
	.max_txn_ops = 0,
	.max_txn_bytes = 0,
	.open = lmdb_open,
	.close = lmdb_close,
	.begin = lmdb_begin,
	.commit = lmdb_commit,
	.end = lmdb_end,
	.get = lmdb_get,
	.put = lmdb_put,
	.del = lmdb_del,
	.scan = lmdb_scan,
	.last = lmdb_last,
	.count = lmdb_count,
	.clear = lmdb_clear,
	.generation = lmdb_generation,
	.txn_generation = lmdb_txn_generation,
	.stats = lmdb_stats,
	.maintain = lmdb_maintain,
	.copy_fd = lmdb_copy_fd,
};
