/*
 * test_store.c: the LMDB environment. Directory and file modes, schema
 * version, the raw operations and their errors, aborts, nesting, fork
 * refusal, map growth past MDB_MAP_FULL (in one transaction and across
 * many, from several threads), the configured maximum, a map grown by
 * another process, stale reader slots, and master-key check values.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto/secmem.h"
#include "store/masterkeys.h"
#include "tests/check.h"
#include "tests/test_store_util.h"
#include "tests/testutil.h"

static char *
path_in(const char *dir, const char *name)
{
	char *p;

	REQUIRE(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static int
mode_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* ---- small transactions ---- */

struct kv {
	enum store_db db;
	const char *key;
	const char *val;
	unsigned flags;
	int ret;            /* what fn returns after its put */
	char got[64];
};

static int
put_kv(struct store_txn *txn, void *arg)
{
	struct kv *kv = arg;
	int r;

	if ((r = store_put(txn, kv->db, kv->key, strlen(kv->key), kv->val,
	    strlen(kv->val), kv->flags)) != 0)
		return r;
	return kv->ret;
}

static int
get_kv(struct store_txn *txn, void *arg)
{
	struct kv *kv = arg;
	const uint8_t *v;
	size_t n;
	int r;

	if ((r = store_get(txn, kv->db, kv->key, strlen(kv->key), &v, &n)) != 0)
		return r;
	if (n >= sizeof(kv->got))
		return P8V_ERR_TOO_LARGE;
	memcpy(kv->got, v, n);
	kv->got[n] = '\0';
	return 0;
}

static int
del_kv(struct store_txn *txn, void *arg)
{
	struct kv *kv = arg;

	return store_del(txn, kv->db, kv->key, strlen(kv->key));
}

static int
put(struct store *s, enum store_db db, const char *k, const char *v)
{
	struct kv kv = { .db = db, .key = k, .val = v };

	return store_write(s, put_kv, &kv);
}

/* Value of k into buf, or the error. */
static int
get(struct store *s, enum store_db db, const char *k, char *buf, size_t size)
{
	struct kv kv = { .db = db, .key = k };
	int r;

	if ((r = store_read(s, get_kv, &kv)) != 0)
		return r;
	if (strlen(kv.got) >= size)
		return P8V_ERR_TOO_LARGE;
	memcpy(buf, kv.got, strlen(kv.got) + 1);
	return 0;
}

/* ---- open: directory, modes, options, schema ---- */

static void
test_open(void)
{
	char *base = tu_mkdtemp("p8v-store"), *d, *data, *lock, *file;
	struct store_options o = { 0 };
	struct store *s = NULL;
	char buf[16];
	mode_t old;

	REQUIRE(base != NULL);
	d = path_in(base, "state");
	data = path_in(d, "data.mdb");
	lock = path_in(d, "lock.mdb");

	CHECK_ERR(store_open(NULL, NULL, &s), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_open("", NULL, &s), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_open(d, NULL, NULL), P8V_ERR_INVALID_ARGUMENT);
	o.initial_map_bytes = 2 << 20;
	o.max_map_bytes = 1 << 20;
	CHECK_ERR(store_open(d, &o, &s), P8V_ERR_INVALID_ARGUMENT);
	CHECK(s == NULL);

	/* Created 0700 with files 0600, even under a lax umask. */
	old = umask(0);
	CHECK_OK(store_open(d, NULL, &s));
	umask(old);
	CHECK_INT(mode_of(d), 0700);
	CHECK_INT(mode_of(data), 0600);
	CHECK_INT(mode_of(lock), 0600);
	CHECK_STR(store_dir(s), d);
	CHECK_OK(put(s, STORE_DB_META, "test", "value"));
	store_close(s);
	s = NULL;

	/* Reopened: the data is there. */
	CHECK_OK(store_open(d, NULL, &s));
	CHECK_OK(get(s, STORE_DB_META, "test", buf, sizeof(buf)));
	CHECK_STR(buf, "value");
	store_close(s);
	s = NULL;

	/* Unsafe modes are refused. */
	REQUIRE(chmod(d, 0770) == 0);
	CHECK_ERR(store_open(d, NULL, &s), P8V_ERR_IO);
	REQUIRE(chmod(d, 0702) == 0);
	CHECK_ERR(store_open(d, NULL, &s), P8V_ERR_IO);
	REQUIRE(chmod(d, 0755) == 0); /* readable is fine: files are 0600 */
	CHECK_OK(store_open(d, NULL, &s));
	store_close(s);
	s = NULL;
	REQUIRE(chmod(d, 0700) == 0);
	REQUIRE(chmod(data, 0644) == 0);
	CHECK_ERR(store_open(d, NULL, &s), P8V_ERR_IO);
	REQUIRE(chmod(data, 0600) == 0);
	REQUIRE(chmod(lock, 0660) == 0);
	CHECK_ERR(store_open(d, NULL, &s), P8V_ERR_IO);
	REQUIRE(chmod(lock, 0600) == 0);
	CHECK(s == NULL);
	/* Not a directory. */
	file = path_in(base, "file");
	REQUIRE(tu_write_file(file, "x", 1, 0600) == 0);
	CHECK_ERR(store_open(file, NULL, &s), P8V_ERR_IO);
	free(file);
	/* A parent that does not exist. */
	file = path_in(base, "no/such/dir");
	CHECK_ERR(store_open(file, NULL, &s), P8V_ERR_IO);
	free(file);
	CHECK_OK(store_open(d, NULL, &s));
	store_close(s);
	store_close(NULL);

	free(data);
	free(lock);
	free(d);
	tu_rmtree(base);
	free(base);
}

static int
put_schema(struct store_txn *txn, void *arg)
{
	return store_put(txn, STORE_DB_META, "schema", 6, arg,
	    arg == NULL ? 0 : 4, 0);
}

static void
test_schema(void)
{
	static const uint32_t versions[] = { 0, 2, 1000 };
	char *d = tu_mkdtemp("p8v-schema");
	struct store *s;
	uint8_t ver[4];
	size_t i;

	REQUIRE(d != NULL);
	for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		s = tsu_store(d, 0);
		store_put_u32(ver, versions[i]);
		CHECK_OK(store_write(s, put_schema, ver));
		store_close(s);
		s = NULL;
		CHECKF(store_open(d, NULL, &s) == P8V_ERR_STORE_VERSION,
		    "version %u", versions[i]);
		CHECK(s == NULL);
		/* Put version 1 back through a fresh directory each time. */
		tu_rmtree(d);
		REQUIRE(mkdir(d, 0700) == 0);
	}
	/* A malformed value (wrong length). */
	s = tsu_store(d, 0);
	CHECK_OK(store_write(s, put_schema, NULL));
	store_close(s);
	s = NULL;
	CHECK_ERR(store_open(d, NULL, &s), P8V_ERR_STORE_VERSION);
	tu_rmtree(d);
	free(d);
}

/* ---- raw operations ---- */

struct scan_acc {
	char keys[256];
	unsigned n, stop_at;
};

static int
scan_cb(const uint8_t *k, size_t klen, const uint8_t *v, size_t vlen,
    void *arg)
{
	struct scan_acc *a = arg;
	size_t len = strlen(a->keys);

	(void)v;
	(void)vlen;
	snprintf(a->keys + len, sizeof(a->keys) - len, "%s%.*s",
	    len ? "," : "", (int)klen, (const char *)k);
	if (++a->n == a->stop_at)
		return STORE_SCAN_STOP;
	return 0;
}

static int
raw_reads(struct store_txn *txn, void *arg)
{
	struct scan_acc a = { .n = 0 };
	const uint8_t *k, *v;
	size_t klen, vlen;
	uint64_t n;
	uint8_t big[600];

	(void)arg;
	CHECK_OK(store_scan(txn, STORE_DB_CACHE, "ab", 2, scan_cb, &a));
	CHECK_STR(a.keys, "ab,ab/1,ab/2,abc");
	memset(&a, 0, sizeof(a));
	a.stop_at = 2;
	CHECK_OK(store_scan(txn, STORE_DB_CACHE, "ab/", 3, scan_cb, &a));
	CHECK_STR(a.keys, "ab/1,ab/2");
	memset(&a, 0, sizeof(a));
	CHECK_OK(store_scan(txn, STORE_DB_CACHE, NULL, 0, scan_cb, &a));
	CHECK_STR(a.keys, "a,ab,ab/1,ab/2,abc,b");
	memset(&a, 0, sizeof(a));
	CHECK_OK(store_scan_from(txn, STORE_DB_CACHE, "ab/2", 4, scan_cb, &a));
	CHECK_STR(a.keys, "ab/2,abc,b");
	memset(&a, 0, sizeof(a));
	CHECK_OK(store_scan(txn, STORE_DB_CACHE, "zz", 2, scan_cb, &a));
	CHECK_INT(a.n, 0);
	CHECK_OK(store_last(txn, STORE_DB_CACHE, &k, &klen, &v, &vlen));
	CHECK(klen == 1 && k[0] == 'b' && vlen == 2 && memcmp(v, "vb", 2) == 0);
	CHECK_ERR(store_last(txn, STORE_DB_AUDIT, &k, &klen, &v, &vlen),
	    P8V_ERR_NOT_FOUND);
	CHECK_OK(store_count(txn, STORE_DB_CACHE, &n));
	CHECK_INT(n, 6);
	/* Writes in a read transaction, bad sizes, bad databases. */
	CHECK_ERR(store_put(txn, STORE_DB_CACHE, "x", 1, "y", 1, 0),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_del(txn, STORE_DB_CACHE, "a", 1),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_clear(txn, STORE_DB_CACHE), P8V_ERR_INVALID_ARGUMENT);
	memset(big, 'k', sizeof(big));
	CHECK_ERR(store_get(txn, STORE_DB_CACHE, big, 512, &v, &vlen),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_get(txn, STORE_DB_CACHE, big, 511, &v, &vlen),
	    P8V_ERR_NOT_FOUND);
	CHECK_ERR(store_get(txn, STORE_DB_CACHE, "", 0, &v, &vlen),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_get(txn, STORE_DB_COUNT, "a", 1, &v, &vlen),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK(store_txn_store(txn) == arg || arg == NULL);
	return 0;
}

static int
raw_writes(struct store_txn *txn, void *arg)
{
	static const char *const keys[] = { "b", "a", "abc", "ab", "ab/2", "ab/1" };
	uint8_t seq[8];
	size_t i;
	int r;

	(void)arg;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char v[8];
		snprintf(v, sizeof(v), "v%s", keys[i]);
		if ((r = store_put(txn, STORE_DB_CACHE, keys[i], strlen(keys[i]),
		    v, strlen(v), 0)) != 0)
			return r;
	}
	CHECK_ERR(store_put(txn, STORE_DB_CACHE, "a", 1, "x", 1,
	    STORE_PUT_NO_OVERWRITE), P8V_ERR_EXISTS);
	CHECK_ERR(store_put(txn, STORE_DB_CACHE, "a", 1, "x", 1, 0x80),
	    P8V_ERR_INVALID_ARGUMENT);
	/* The append flag is gone from the API (0x2 is an unknown flag):
	 * audit keys out of order go in, an existing one is refused. */
	store_put_u64(seq, 2);
	CHECK_OK(store_put(txn, STORE_DB_AUDIT, seq, 8, "2", 1,
	    STORE_PUT_NO_OVERWRITE));
	store_put_u64(seq, 1);
	CHECK_ERR(store_put(txn, STORE_DB_AUDIT, seq, 8, "1", 1, 0x2),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_OK(store_put(txn, STORE_DB_AUDIT, seq, 8, "1", 1,
	    STORE_PUT_NO_OVERWRITE));
	store_put_u64(seq, 2);
	CHECK_ERR(store_put(txn, STORE_DB_AUDIT, seq, 8, "x", 1,
	    STORE_PUT_NO_OVERWRITE), P8V_ERR_EXISTS);
	CHECK_OK(store_clear(txn, STORE_DB_AUDIT));
	CHECK_ERR(store_del(txn, STORE_DB_CACHE, "nope", 4), P8V_ERR_NOT_FOUND);
	/* An empty value is a value. */
	return store_put(txn, STORE_DB_CREDS, "empty", 5, NULL, 0, 0);
}

static int
nested(struct store_txn *txn, void *arg)
{
	struct store *s = arg;
	int m;

	(void)txn;
	CHECK_ERR(store_read(s, raw_reads, NULL), P8V_ERR_INTERNAL);
	CHECK_ERR(store_write(s, raw_writes, NULL), P8V_ERR_INTERNAL);
	CHECK_ERR(store_maintain(s, &m), P8V_ERR_INTERNAL);
	return 0;
}

static int
positive(struct store_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	return 1;
}

static void
test_raw(void)
{
	char *d = tu_mkdtemp("p8v-raw"), buf[32];
	struct store *s;
	struct kv kv = { .db = STORE_DB_META, .key = "k", .val = "v1" };

	REQUIRE(d != NULL);
	s = tsu_store(d, 0);
	CHECK_OK(store_write(s, raw_writes, NULL));
	CHECK_OK(store_read(s, raw_reads, s));
	CHECK_OK(get(s, STORE_DB_CREDS, "empty", buf, sizeof(buf)));
	CHECK_STR(buf, "");
	CHECK_ERR(get(s, STORE_DB_CREDS, "absent", buf, sizeof(buf)),
	    P8V_ERR_NOT_FOUND);

	/* A function's error aborts the whole transaction. */
	kv.ret = P8V_ERR_BUSY;
	CHECK_ERR(store_write(s, put_kv, &kv), P8V_ERR_BUSY);
	CHECK_ERR(get(s, STORE_DB_META, "k", buf, sizeof(buf)),
	    P8V_ERR_NOT_FOUND);
	kv.ret = 0;
	CHECK_OK(store_write(s, put_kv, &kv));
	CHECK_OK(get(s, STORE_DB_META, "k", buf, sizeof(buf)));
	CHECK_STR(buf, "v1");
	CHECK_OK(store_write(s, del_kv, &kv));
	CHECK_ERR(store_write(s, del_kv, &kv), P8V_ERR_NOT_FOUND);
	CHECK_ERR(store_write(s, positive, NULL), P8V_ERR_INTERNAL);
	CHECK_ERR(store_read(s, positive, NULL), P8V_ERR_INTERNAL);
	CHECK_ERR(store_write(s, NULL, NULL), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_write(NULL, positive, NULL), P8V_ERR_INVALID_ARGUMENT);

	/* No nesting, in either kind of transaction. */
	CHECK_OK(store_write(s, nested, s));
	CHECK_OK(store_read(s, nested, s));
	/* And the thread is usable again afterwards. */
	CHECK_OK(get(s, STORE_DB_CACHE, "a", buf, sizeof(buf)));
	CHECK_STR(buf, "va");
	store_close(s);
	tu_rmtree(d);
	free(d);
}

/* ---- fork ---- */

static void
test_fork(void)
{
	char *d = tu_mkdtemp("p8v-fork"), buf[16];
	struct store *s;
	pid_t pid;
	int st;

	REQUIRE(d != NULL);
	s = tsu_store(d, 0);
	CHECK_OK(put(s, STORE_DB_META, "parent", "1"));
	if ((pid = fork()) == 0) {
		struct store *own = NULL;
		int bad = 0, m;

		/* The parent's handle refuses every call in the child. */
		bad |= get(s, STORE_DB_META, "parent", buf, sizeof(buf)) !=
		    P8V_ERR_STORE;
		bad |= put(s, STORE_DB_META, "child", "1") != P8V_ERR_STORE;
		bad |= store_maintain(s, &m) != P8V_ERR_STORE;
		/* Closing it in the child leaves the parent's env alone. */
		store_close(s);
		/* The child's own store works. */
		bad |= store_open(d, NULL, &own) != 0;
		bad |= put(own, STORE_DB_META, "child", "2") != 0;
		store_close(own);
		_exit(bad ? 1 : 0);
	}
	REQUIRE(pid > 0);
	REQUIRE(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* The parent goes on with its environment, and sees the child's
	 * write. */
	CHECK_OK(get(s, STORE_DB_META, "child", buf, sizeof(buf)));
	CHECK_STR(buf, "2");
	CHECK_OK(put(s, STORE_DB_META, "parent", "3"));
	store_close(s);
	tu_rmtree(d);
	free(d);
}

/* ---- growth ---- */

#define GROW_VALUE 1000

struct batch {
	unsigned first, count;
	unsigned runs;          /* how often fn ran: > 1 after a growth */
	char tag;
};

static void
fill_value(char *v, unsigned i, char tag)
{
	memset(v, tag, GROW_VALUE);
	snprintf(v, GROW_VALUE, "%c%08u", tag, i);
	v[9] = tag;
}

static int
put_batch(struct store_txn *txn, void *arg)
{
	struct batch *b = arg;
	char k[32], v[GROW_VALUE];
	unsigned i;
	int r;

	b->runs++;
	for (i = b->first; i < b->first + b->count; i++) {
		snprintf(k, sizeof(k), "%c/%08u", b->tag, i);
		fill_value(v, i, b->tag);
		if ((r = store_put(txn, STORE_DB_CACHE, k, strlen(k), v,
		    GROW_VALUE, 0)) != 0)
			return r;
	}
	return 0;
}

static int
check_batch(struct store_txn *txn, void *arg)
{
	struct batch *b = arg;
	const uint8_t *v;
	char k[32], want[GROW_VALUE];
	unsigned i, bad = 0;
	size_t n;

	for (i = b->first; i < b->first + b->count; i++) {
		snprintf(k, sizeof(k), "%c/%08u", b->tag, i);
		fill_value(want, i, b->tag);
		if (store_get(txn, STORE_DB_CACHE, k, strlen(k), &v, &n) != 0 ||
		    n != GROW_VALUE || memcmp(v, want, n) != 0)
			bad++;
	}
	CHECKF(bad == 0, "%u of %u entries %c missing or wrong", bad, b->count,
	    b->tag);
	return 0;
}

static void
test_growth(void)
{
	char *d = tu_mkdtemp("p8v-grow");
	struct store_stats st0, st;
	struct store *s;
	struct batch b = { .tag = 'a' };
	unsigned i;

	REQUIRE(d != NULL);
	s = tsu_store(d, 256 << 10);
	CHECK_OK(store_stats(s, &st0));
	CHECK(st0.map_bytes >= 256 << 10 && st0.map_bytes < 512 << 10);
	CHECK_INT(st0.max_readers, STORE_DEFAULT_MAX_READERS);
	/* One transaction of 4 MB: MAP_FULL several times inside it; it is
	 * run again from the start each time and commits whole. */
	b.first = 0;
	b.count = 4000;
	CHECK_OK(store_write(s, put_batch, &b));
	CHECK(b.runs >= 4);
	CHECK_OK(store_read(s, check_batch, &b));
	CHECK_OK(store_stats(s, &st));
	CHECK(st.map_bytes >= 8 * st0.map_bytes);
	CHECK(st.used_bytes <= st.map_bytes && st.used_bytes > 4000 * 1000);
	/* Many small transactions crossing MAP_FULL at commit time too. */
	for (i = 0; i < 3000; i++) {
		struct batch one = { .first = i, .count = 1, .tag = 'b' };
		REQUIRE(store_write(s, put_batch, &one) == 0);
	}
	b.tag = 'b';
	b.count = 3000;
	CHECK_OK(store_read(s, check_batch, &b));
	b.tag = 'a';
	b.count = 4000;
	CHECK_OK(store_read(s, check_batch, &b));
	store_close(s);
	/* Reopened with a small initial size: the grown size is kept. */
	s = tsu_store(d, 256 << 10);
	CHECK_OK(store_stats(s, &st0));
	CHECK(st0.map_bytes >= st.map_bytes);
	CHECK_OK(store_read(s, check_batch, &b));
	store_close(s);
	tu_rmtree(d);
	free(d);
}

static void
test_max_map(void)
{
	char *d = tu_mkdtemp("p8v-max");
	struct store_options o = { .initial_map_bytes = 256 << 10,
	    .max_map_bytes = 1 << 20 };
	struct store_stats st;
	struct store *s = NULL;
	struct batch b = { .tag = 'm', .count = 50 };
	unsigned done = 0;
	int r = 0;
	char buf[8];

	REQUIRE(d != NULL);
	REQUIRE(store_open(d, &o, &s) == 0);
	for (b.first = 0; b.first < 10000; b.first += b.count) {
		b.runs = 0;
		if ((r = store_write(s, put_batch, &b)) != 0)
			break;
		done = b.first + b.count;
	}
	CHECK_ERR(r, P8V_ERR_NO_SPACE);
	CHECK(done > 500 && done < 1100);
	CHECK_OK(store_stats(s, &st));
	CHECK_INT(st.map_bytes, 1 << 20);
	CHECK_INT(st.max_map_bytes, 1 << 20);       /* /metrics' limit */
	CHECK(st.used_bytes > 0 && st.used_bytes <= st.max_map_bytes);
	/* Everything acknowledged is there; the failed batch is not. */
	b.first = 0;
	b.count = done;
	CHECK_OK(store_read(s, check_batch, &b));
	{
		char k[32];
		snprintf(k, sizeof(k), "m/%08u", done);
		CHECK_ERR(get(s, STORE_DB_CACHE, k, buf, sizeof(buf)),
		    P8V_ERR_NOT_FOUND);
	}
	/* Small writes still fit where big ones do not; deleting frees. */
	CHECK_OK(put(s, STORE_DB_META, "small", "1"));
	store_close(s);
	tu_rmtree(d);
	free(d);
}

/* Another process grows the map past ours: we adopt its size. */
static void
test_resized_elsewhere(void)
{
	char *d = tu_mkdtemp("p8v-resize");
	struct store_stats st0, st;
	struct store *s;
	struct batch b = { .tag = 'r', .first = 0, .count = 3000 };
	pid_t pid;
	int status;

	REQUIRE(d != NULL);
	s = tsu_store(d, 256 << 10);
	CHECK_OK(store_stats(s, &st0));
	if ((pid = fork()) == 0) {
		struct store *own = NULL;
		int ok = store_open(d, NULL, &own) == 0 &&
		    store_write(own, put_batch, &b) == 0;
		store_close(own);
		_exit(ok ? 0 : 1);
	}
	REQUIRE(pid > 0 && waitpid(pid, &status, 0) == pid);
	REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Reads and writes here see the larger file. */
	CHECK_OK(store_read(s, check_batch, &b));
	CHECK_OK(store_stats(s, &st));
	CHECK(st.map_bytes > st0.map_bytes);
	CHECK_OK(put(s, STORE_DB_META, "after", "1"));
	store_close(s);
	tu_rmtree(d);
	free(d);
}

/* store_generation: what a read transaction saw, until a commit from this
 * process or another one changes it; a failed write changes nothing. */
struct gen_read {
	uint64_t gen;
	int inside;
};

static int
read_gen(struct store_txn *txn, void *arg)
{
	struct gen_read *g = arg;
	uint64_t dummy;

	g->gen = store_txn_generation(txn);
	/* Not from inside a transaction: it would wait on the map lock. */
	g->inside = store_generation(store_txn_store(txn), &dummy);
	return 0;
}

static void
test_generation(void)
{
	char *d = tu_mkdtemp("p8v-gen");
	struct kv fail = { .db = STORE_DB_META, .key = "x", .val = "1",
	    .ret = P8V_ERR_BAD_FIELD };
	struct gen_read g = { 0 };
	struct store *s;
	uint64_t g0, g1, g2, instance;
	pid_t pid;
	int status;

	REQUIRE(d != NULL);
	s = tsu_store(d, 0);
	instance = store_instance(s);
	CHECK(instance != 0);
	CHECK_OK(store_generation(s, &g0));
	CHECK_OK(store_read(s, read_gen, &g));
	CHECK(g.gen == g0);
	CHECK_INT(g.inside, P8V_ERR_INTERNAL);
	CHECK_OK(store_generation(s, &g1));
	CHECK(g1 == g0);
	CHECK_INT(store_write(s, put_kv, &fail), P8V_ERR_BAD_FIELD);
	CHECK_OK(store_generation(s, &g1));
	CHECK(g1 == g0);
	CHECK_OK(put(s, STORE_DB_META, "a", "1"));
	CHECK_OK(store_generation(s, &g1));
	CHECK(g1 > g0);
	/* A commit by another process shows at once. */
	if ((pid = fork()) == 0) {
		struct store *own = NULL;
		int ok = store_open(d, NULL, &own) == 0 &&
		    put(own, STORE_DB_META, "b", "2") == 0;
		store_close(own);
		_exit(ok ? 0 : 1);
	}
	REQUIRE(pid > 0 && waitpid(pid, &status, 0) == pid);
	REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_OK(store_generation(s, &g2));
	CHECK(g2 > g1);
	CHECK_OK(store_read(s, read_gen, &g));
	CHECK(g.gen == g2);
	CHECK_INT(store_generation(NULL, &g2), P8V_ERR_INVALID_ARGUMENT);
	/* Another handle, even at the same address, is another instance. */
	store_close(s);
	s = tsu_store(d, 0);
	CHECK(store_instance(s) != instance);
	store_close(s);
	tu_rmtree(d);
	free(d);
}

/* Several threads write and read while the map grows under them. */
#define THREADS 4
#define PER_THREAD 400

struct worker {
	struct store *s;
	char tag;
	int err;
	int reader;
	volatile int *stop;
};

static void *
work(void *arg)
{
	struct worker *w = arg;
	struct batch b = { .tag = w->tag, .count = 1 };
	unsigned i;

	if (w->reader) {
		while (!*w->stop) {
			struct batch r = { .tag = 'a', .count = 0 };
			if (store_read(w->s, check_batch, &r) != 0)
				w->err++;
		}
		return NULL;
	}
	for (i = 0; i < PER_THREAD; i++) {
		b.first = i;
		if (store_write(w->s, put_batch, &b) != 0)
			w->err++;
	}
	return NULL;
}

static void
test_threads(void)
{
	char *d = tu_mkdtemp("p8v-threads");
	struct worker w[THREADS + 2];
	pthread_t t[THREADS + 2];
	volatile int stop = 0;
	struct store *s;
	size_t i;

	REQUIRE(d != NULL);
	s = tsu_store(d, 256 << 10);
	for (i = 0; i < THREADS + 2; i++) {
		w[i] = (struct worker){ .s = s, .tag = (char)('A' + i),
		    .reader = i >= THREADS, .stop = &stop };
		REQUIRE(pthread_create(&t[i], NULL, work, &w[i]) == 0);
	}
	for (i = 0; i < THREADS; i++)
		REQUIRE(pthread_join(t[i], NULL) == 0);
	stop = 1;
	for (i = THREADS; i < THREADS + 2; i++)
		REQUIRE(pthread_join(t[i], NULL) == 0);
	for (i = 0; i < THREADS + 2; i++)
		CHECKF(w[i].err == 0, "thread %zu: %d errors", i, w[i].err);
	for (i = 0; i < THREADS; i++) {
		struct batch b = { .tag = (char)('A' + i), .first = 0,
		    .count = PER_THREAD };
		CHECK_OK(store_read(s, check_batch, &b));
	}
	store_close(s);
	tu_rmtree(d);
	free(d);
}

/* ---- stale readers ---- */

static int
hold_reader(struct store_txn *txn, void *arg)
{
	int fd = *(int *)arg;

	(void)txn;
	if (write(fd, "r", 1) != 1)
		return P8V_ERR_IO;
	for (;;)
		pause();
	return 0;
}

static void
test_stale_readers(void)
{
	char *d = tu_mkdtemp("p8v-readers");
	struct store_stats st;
	struct store *s;
	int p[2], cleared = -1, i;
	pid_t pids[3];
	char c;

	REQUIRE(d != NULL);
	s = tsu_store(d, 0);
	CHECK_OK(store_maintain(s, &cleared));
	CHECK_INT(cleared, 0);
	/* Children that die inside a read transaction leave their slots. */
	for (i = 0; i < 3; i++) {
		REQUIRE(pipe(p) == 0);
		if ((pids[i] = fork()) == 0) {
			struct store *own = NULL;
			close(p[0]);
			if (store_open(d, NULL, &own) == 0)
				store_read(own, hold_reader, &p[1]);
			_exit(1);
		}
		REQUIRE(pids[i] > 0);
		close(p[1]);
		REQUIRE(read(p[0], &c, 1) == 1);
		close(p[0]);
	}
	for (i = 0; i < 3; i++) {
		kill(pids[i], SIGKILL);
		REQUIRE(waitpid(pids[i], NULL, 0) == pids[i]);
	}
	CHECK_OK(store_stats(s, &st));
	CHECK(st.readers_used >= 3);
	CHECK_OK(store_maintain(s, &cleared));
	CHECK_INT(cleared, 3);
	CHECK_OK(store_maintain(s, &cleared));
	CHECK_INT(cleared, 0);
	CHECK_OK(store_maintain(s, NULL));
	store_close(s);
	tu_rmtree(d);
	free(d);
}

/* ---- master keys ---- */

/* Run store_master_keys_check with stderr captured into *log (malloc'd). */
static int
check_keys(struct store *s, const struct master_keyring *ring, char **log)
{
	char *d = tu_mkdtemp("p8v-log"), *path = path_in(d, "log");
	size_t len;
	int fd, saved, r;

	fflush(stderr);
	REQUIRE((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
	REQUIRE((saved = dup(2)) >= 0);
	REQUIRE(dup2(fd, 2) == 2);
	r = tsu_keys_check(s, ring);
	fflush(stderr);
	REQUIRE(dup2(saved, 2) == 2);
	close(saved);
	close(fd);
	REQUIRE(tu_read_file(path, (uint8_t **)log, &len) == 0);
	fputs(*log, stderr);
	free(path);
	tu_rmtree(d);
	free(d);
	return r;
}

static int
forge_mk(struct store_txn *txn, void *arg)
{
	const struct master_key *mk = arg;
	uint8_t v[MASTER_KEY_CHECK_BYTES + 8];
	char k[64];

	snprintf(k, sizeof(k), "mk/%s", master_key_id_hex(mk));
	memcpy(v, master_key_check(mk), MASTER_KEY_CHECK_BYTES);
	v[0] ^= 1;
	memset(v + MASTER_KEY_CHECK_BYTES, 0, 8);
	return store_put(txn, STORE_DB_META, k, strlen(k), v, sizeof(v), 0);
}

static int
short_mk(struct store_txn *txn, void *arg)
{
	(void)arg;
	return store_put(txn, STORE_DB_META, "mk/00", 5, "x", 1, 0);
}

static int
del_short_mk(struct store_txn *txn, void *arg)
{
	(void)arg;
	return store_del(txn, STORE_DB_META, "mk/00", 5);
}

static void
test_master_keys(void)
{
	static const unsigned k1[] = { 1 }, k2[] = { 2 }, k3[] = { 3 };
	static const unsigned k12[] = { 1, 2 }, k34[] = { 3, 4 };
	static const unsigned k14[] = { 1, 4 };
	struct master_keyring *r1 = tsu_ring(k1, 1), *r2 = tsu_ring(k2, 1);
	struct master_keyring *r3 = tsu_ring(k3, 1), *r12 = tsu_ring(k12, 2);
	struct master_keyring *r34 = tsu_ring(k34, 2), *r14 = tsu_ring(k14, 2);
	struct master_keyring *empty = tsu_ring(NULL, 0);
	const char *id1 = master_key_id_hex(master_keyring_get(r1, 0));
	const char *id2 = master_key_id_hex(master_keyring_get(r2, 0));
	const char *id3 = master_key_id_hex(master_keyring_get(r3, 0));
	char *d = tu_mkdtemp("p8v-mk"), *log = NULL, rawhex[65];
	uint8_t raw[MASTER_KEY_BYTES];
	struct store *s;
	size_t i;

	REQUIRE(d != NULL);
	s = tsu_store(d, 0);
	CHECK_ERR(tsu_keys_check(s, empty), P8V_ERR_NO_MASTER_KEY);
	CHECK_ERR(tsu_keys_check(s, NULL), P8V_ERR_INVALID_ARGUMENT);
	/* A fresh store records the key. */
	CHECK_OK(check_keys(s, r1, &log));
	CHECK(strstr(log, id1) != NULL);
	free(log);
	CHECK_OK(tsu_keys_check(s, r1));
	store_close(s);

	/* Reopened with a wrong key: refused at once, with both ids named
	 * and no key bytes. */
	s = tsu_store(d, 0);
	CHECK_ERR(check_keys(s, r3, &log), P8V_ERR_MASTER_KEY_MISMATCH);
	CHECK(strstr(log, "master_key_mismatch") != NULL);
	CHECK(strstr(log, id3) != NULL);
	CHECK(strstr(log, id1) != NULL);
	tsu_raw_key(raw, 3);
	for (i = 0; i < sizeof(raw); i++)
		snprintf(rawhex + 2 * i, 3, "%02x", raw[i]);
	CHECK(strstr(log, rawhex) == NULL);
	free(log);
	/* ... and it was not recorded by the refusal. */
	CHECK_ERR(tsu_keys_check(s, r3), P8V_ERR_MASTER_KEY_MISMATCH);
	CHECK_ERR(tsu_keys_check(s, r34), P8V_ERR_MASTER_KEY_MISMATCH);

	/* The right key with a new one: the new one is accepted. */
	CHECK_OK(check_keys(s, r12, &log));
	CHECK(strstr(log, "new master key") != NULL);
	CHECK(strstr(log, id2) != NULL);
	CHECK(strstr(log, "rotation") != NULL);
	free(log);
	/* Now key 2 alone is enough, key 1 alone too. */
	CHECK_OK(tsu_keys_check(s, r2));
	CHECK_OK(tsu_keys_check(s, r1));
	CHECK_ERR(tsu_keys_check(s, r3), P8V_ERR_MASTER_KEY_MISMATCH);

	/* A recorded id whose check value differs: refused even next to a
	 * matching key. */
	CHECK_OK(store_write(s, forge_mk,
	    (void *)master_keyring_get(r14, 1)));
	CHECK_ERR(tsu_keys_check(s, r14), P8V_ERR_MASTER_KEY_MISMATCH);
	/* A malformed entry. */
	CHECK_OK(store_write(s, short_mk, NULL));
	CHECK_ERR(tsu_keys_check(s, r1), P8V_ERR_INTEGRITY);
	CHECK_OK(store_write(s, del_short_mk, NULL));
	CHECK_OK(tsu_keys_check(s, r1));
	store_close(s);

	tu_rmtree(d);
	free(d);
	master_keyring_destroy(r1);
	master_keyring_destroy(r2);
	master_keyring_destroy(r3);
	master_keyring_destroy(r12);
	master_keyring_destroy(r34);
	master_keyring_destroy(r14);
	master_keyring_destroy(empty);
}

struct retire_ctx {
	const uint8_t *id;
	uint64_t wraps_n;       /* 0: retire; else add this many wraps */
};

static int
retire_txn(struct store_txn *txn, void *arg)
{
	struct retire_ctx *c = arg;

	if (c->wraps_n > 0)
		return store_master_key_wraps_add(txn, c->id, c->wraps_n, NULL);
	return store_master_key_retire(txn, c->id, 1700000000);
}

/* Retiring: the check value goes, the id is refused from then on (check
 * and wraps), the last recorded key stays. */
static void
test_master_key_retire(void)
{
	static const unsigned k1[] = { 1 }, k2[] = { 2 }, k12[] = { 1, 2 };
	struct master_keyring *r1 = tsu_ring(k1, 1), *r2 = tsu_ring(k2, 1);
	struct master_keyring *r12 = tsu_ring(k12, 2);
	const struct master_key *m1 = master_keyring_get(r1, 0);
	const struct master_key *m2 = master_keyring_get(r2, 0);
	struct retire_ctx c1 = { master_key_id(m1), 0 };
	struct retire_ctx c2 = { master_key_id(m2), 0 };
	struct retire_ctx w1 = { master_key_id(m1), 1 };
	struct retire_ctx w2 = { master_key_id(m2), 1 };
	char *d = tu_mkdtemp("p8v-mkr"), *log = NULL;
	struct store *s;

	REQUIRE(d != NULL);
	s = tsu_store(d, 0);
	CHECK_OK(tsu_keys_check(s, r1));
	/* Not recorded; the only recorded one. */
	CHECK_ERR(store_write(s, retire_txn, &c2), P8V_ERR_NOT_FOUND);
	CHECK_ERR(store_write(s, retire_txn, &c1), P8V_ERR_MASTER_KEY_IN_USE);
	CHECK_OK(tsu_keys_check(s, r12));
	CHECK_OK(store_write(s, retire_txn, &w1));
	CHECK_OK(store_write(s, retire_txn, &c1));
	CHECK_ERR(store_write(s, retire_txn, &c1),
	    P8V_ERR_MASTER_KEY_RETIRED);
	/* Refused when loaded, alone or next to a good key, named in the
	 * log; never recorded again as a new key. */
	CHECK_ERR(check_keys(s, r1, &log), P8V_ERR_MASTER_KEY_RETIRED);
	CHECK(strstr(log, master_key_id_hex(m1)) != NULL);
	CHECK(strstr(log, "retired") != NULL);
	free(log);
	CHECK_ERR(tsu_keys_check(s, r12), P8V_ERR_MASTER_KEY_RETIRED);
	CHECK_OK(tsu_keys_check(s, r2));
	/* Nothing is counted (hence sealed) under it any more. */
	CHECK_ERR(store_write(s, retire_txn, &w1),
	    P8V_ERR_MASTER_KEY_RETIRED);
	CHECK_OK(store_write(s, retire_txn, &w2));
	/* Key 2 is now the only recorded key. */
	CHECK_ERR(store_write(s, retire_txn, &c2), P8V_ERR_MASTER_KEY_IN_USE);
	store_close(s);
	tu_rmtree(d);
	free(d);
	master_keyring_destroy(r1);
	master_keyring_destroy(r2);
	master_keyring_destroy(r12);
}

int
main(void)
{
	REQUIRE(secmem_init() == 0);
	test_open();
	test_schema();
	test_raw();
	test_fork();
	test_growth();
	test_max_map();
	test_resized_elsewhere();
	test_generation();
	test_threads();
	test_stale_readers();
	test_master_keys();
	test_master_key_retire();
	return check_finish();
}
