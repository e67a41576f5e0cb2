/*
 * test_store_export.c: the backend dispatch of store.c, and the logical
 * export/import of store/export.h: a round trip of all five databases byte
 * for byte (over several import batches), refusal of a non-empty target,
 * and refusal of every kind of damaged file (each truncation, each flipped
 * byte, trailing data, another format or schema version, a wrong count or
 * order under a valid checksum) with nothing written. Checksums the test
 * makes itself are computed with OpenSSL, not the store's libsodium.
 */
#include "store/export.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "common/err.h"
#include "crypto/secmem.h"
#include "store/audit.h"
#include "tests/check.h"
#include "tests/test_store_util.h"
#include "tests/testutil.h"

/* Enough entries for several import batches (STORE_IMPORT_BATCH_OPS). */
#define FILL_ENTRIES 300
/* A value above STORE_IMPORT_BATCH_BYTES: a batch of its own. */
#define BIG_VALUE_BYTES (STORE_IMPORT_BATCH_BYTES + 4096)

static char *base;

static char *
path_in(const char *name)
{
	char *p = malloc(strlen(base) + strlen(name) + 2);

	REQUIRE(p != NULL);
	sprintf(p, "%s/%s", base, name);
	return p;
}

/* --- the dispatch --- */

struct runs {
	unsigned n;
	size_t bytes;
};

/* Writes more than the first map holds: the backend asks for a retry. */
static int
big_write(struct store_txn *txn, void *arg)
{
	struct runs *runs = arg;
	uint8_t key[8], *val;
	size_t i;
	int r = 0;

	runs->n++;
	if ((val = calloc(1, 4096)) == NULL)
		return P8V_ERR_ALLOC;
	for (i = 0; r == 0 && i < runs->bytes / 4096; i++) {
		store_put_u64(key, i);
		r = store_put(txn, STORE_DB_CACHE, key, sizeof(key), val,
		    4096, 0);
	}
	free(val);
	return r;
}

static int
put_ascending_out_of_order(struct store_txn *txn, void *arg)
{
	uint8_t key[8];
	int r;

	(void)arg;
	store_put_u64(key, 9);
	if ((r = store_put(txn, STORE_DB_AUDIT, key, 8, "9", 1,
	    STORE_PUT_NO_OVERWRITE)) != 0)
		return r;
	store_put_u64(key, 3);
	return store_put(txn, STORE_DB_AUDIT, key, 8, "3", 1,
	    STORE_PUT_NO_OVERWRITE);
}

static int
bad_args(struct store_txn *txn, void *arg)
{
	uint8_t key[STORE_MAX_KEY_BYTES + 1] = { 0 };

	(void)arg;
	CHECK_ERR(store_put(txn, STORE_DB_META, key, sizeof(key), "x", 1, 0),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_OK(store_put(txn, STORE_DB_META, key, STORE_MAX_KEY_BYTES, "x",
	    1, 0));
	CHECK_ERR(store_put(txn, STORE_DB_META, key, 1, "x", 1, 0x2),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_put(txn, STORE_DB_COUNT, key, 1, "x", 1, 0),
	    P8V_ERR_INVALID_ARGUMENT);
	return 0;
}

static int
count_audit(struct store_txn *txn, void *arg)
{
	return store_count(txn, STORE_DB_AUDIT, arg);
}

static void
test_dispatch(void)
{
	struct store_options o = { .backend = "nosuch" };
	struct store_stats st;
	struct runs runs = { 0, 1 << 20 };
	struct store *s = NULL;
	char *dir = path_in("dispatch"), *dir2 = path_in("unknown");
	size_t ops = 1, bytes = 1;
	uint64_t n = 0, g1 = 0, g2 = 0;
	int cleared = -1;

	/* Backends are chosen by name: "lmdb" and "etcd". */
	CHECK_ERR(store_open(dir2, &o, &s), P8V_ERR_UNSUPPORTED);
	CHECK(s == NULL);
	CHECK(store_backend_known("lmdb"));
	CHECK(store_backend_known("etcd"));
	CHECK(!store_backend_known("nosuch"));
	/* etcd's location is a URL: a directory is no etcd store. */
	o.backend = "etcd";
	CHECK_ERR(store_open(dir2, &o, &s), P8V_ERR_INVALID_ARGUMENT);
	CHECK(s == NULL);
	CHECK(store_location_is_etcd("etcd://127.0.0.1:1/p"));
	CHECK(!store_location_is_etcd(dir2));
	o.backend = "lmdb";
	o.initial_map_bytes = 256 << 10;
	CHECK_OK(store_open(dir, &o, &s));
	REQUIRE(s != NULL);
	CHECK_STR(store_backend_name(s), "lmdb");
	store_limits(s, &ops, &bytes);
	CHECK_INT(ops, 0);
	CHECK_INT(bytes, 0);

	/* The retry loop: a write that does not fit the map runs again in
	 * a grown one, and the generation moves with the commit. */
	CHECK_OK(store_generation(s, &g1));
	CHECK_OK(store_write(s, big_write, &runs));
	CHECK(runs.n > 1);
	CHECK_OK(store_generation(s, &g2));
	CHECK(g2 > g1);
	CHECK_OK(store_stats(s, &st));
	CHECK(st.map_bytes > (256u << 10));

	/* No append flag any more: audit keys out of order go in. */
	CHECK_OK(store_write(s, put_ascending_out_of_order, NULL));
	CHECK_OK(store_read(s, count_audit, &n));
	CHECK_INT(n, 2);
	CHECK_OK(store_write(s, bad_args, NULL));
	CHECK_OK(store_maintain(s, &cleared));
	CHECK_INT(cleared, 0);
	store_close(s);
	free(dir);
	free(dir2);
}

/* --- a store with something in every database --- */

struct fill {
	uint8_t *big;
};

static int
fill_txn(struct store_txn *txn, void *arg)
{
	struct fill *f = arg;
	uint8_t key[STORE_MAX_KEY_BYTES], val[300];
	size_t i, klen, vlen;
	int r;

	for (i = 0; i < FILL_ENTRIES; i++) {
		enum store_db db = (enum store_db)(i % STORE_DB_COUNT);

		/* Binary keys of every length class, values from empty on. */
		klen = 1 + (i * 37) % (i % 7 == 0 ? STORE_MAX_KEY_BYTES : 40);
		memset(key, (int)(i & 0xff), klen);
		key[0] = (uint8_t)(i >> 8);
		vlen = (i * 13) % sizeof(val);
		memset(val, (int)(0xff - (i & 0xff)), vlen);
		if (vlen > 0)
			val[0] = 0;
		if ((r = store_put(txn, db, key, klen, val, vlen, 0)) != 0)
			return r;
	}
	return store_put(txn, STORE_DB_KEYS, "big", 3, f->big,
	    BIG_VALUE_BYTES, 0);
}

static int
audit_txn(struct store_txn *txn, void *arg)
{
	return store_audit_append(txn, arg, NULL);
}

static struct store *
filled_store(const char *dir)
{
	struct store *s = tsu_store(dir, 0);
	struct fill f;
	json_t *e;
	size_t i;

	REQUIRE((f.big = malloc(BIG_VALUE_BYTES)) != NULL);
	for (i = 0; i < BIG_VALUE_BYTES; i++)
		f.big[i] = (uint8_t)(i * 7 + 1);
	/* Real audit events (their chain head lands in meta), then raw
	 * entries everywhere. */
	for (i = 0; i < 5; i++) {
		REQUIRE((e = json_pack("{s:s, s:I}", "what", "test.event",
		    "i", (json_int_t)i)) != NULL);
		REQUIRE(store_write(s, audit_txn, e) == 0);
		json_decref(e);
	}
	REQUIRE(store_write(s, fill_txn, &f) == 0);
	free(f.big);
	return s;
}

/* Every entry of every database, as one byte string per database. */
struct dump {
	uint8_t *buf[STORE_DB_COUNT];
	size_t len[STORE_DB_COUNT];
	uint64_t n[STORE_DB_COUNT];
	int db;
};

static int
dump_entry(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct dump *d = arg;
	size_t add = 16 + klen + vlen;
	uint8_t *p;

	if ((p = realloc(d->buf[d->db], d->len[d->db] + add)) == NULL)
		return P8V_ERR_ALLOC;
	d->buf[d->db] = p;
	p += d->len[d->db];
	store_put_u64(p, klen);
	store_put_u64(p + 8, vlen);
	memcpy(p + 16, key, klen);
	memcpy(p + 16 + klen, val, vlen);
	d->len[d->db] += add;
	d->n[d->db]++;
	return 0;
}

static int
dump_txn(struct store_txn *txn, void *arg)
{
	struct dump *d = arg;
	int r;

	for (d->db = 0; d->db < STORE_DB_COUNT; d->db++)
		if ((r = store_scan(txn, (enum store_db)d->db, NULL, 0,
		    dump_entry, d)) != 0)
			return r;
	return 0;
}

static void
dump_free(struct dump *d)
{
	int i;

	for (i = 0; i < STORE_DB_COUNT; i++)
		free(d->buf[i]);
	memset(d, 0, sizeof(*d));
}

/* 1 if the store holds nothing but the schema entry of a new one. */
static int
is_new(struct store *s)
{
	struct dump d;
	int i, ok;

	memset(&d, 0, sizeof(d));
	REQUIRE(store_read(s, dump_txn, &d) == 0);
	ok = d.n[STORE_DB_META] == 1;
	for (i = 0; i < STORE_DB_META; i++)
		ok &= d.n[i] == 0;
	dump_free(&d);
	return ok;
}

static int
no_temp_files(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int ok = 1;

	REQUIRE(d != NULL);
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".tmp-") != NULL)
			ok = 0;
	closedir(d);
	return ok;
}

static void
test_round_trip(void)
{
	struct store_export_info info, info2, info3;
	char *src_dir = path_in("src"), *dst_dir = path_in("dst");
	char *file = path_in("vault.export"), *file2 = path_in("again.export");
	struct store *src = filled_store(src_dir), *dst;
	struct dump a, b;
	uint64_t g1 = 0, g2 = 0;
	uint8_t *f1, *f2;
	size_t l1, l2;
	struct stat st;
	int i;

	CHECK_OK(store_export(src, file, &info));
	CHECK_OK(stat(file, &st));
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(st.st_size, info.bytes);
	CHECK(info.total > FILL_ENTRIES / 2);
	/* Never replaces a file. */
	CHECK_ERR(store_export(src, file, &info2), P8V_ERR_EXISTS);
	CHECK(no_temp_files(base));
	CHECK_OK(store_export_check(file, &info2));
	CHECK_MEM(info2.sha256, info.sha256, sizeof(info.sha256));
	CHECK_INT(info2.total, info.total);

	/* A non-empty target is refused, and left as it was. */
	memset(&a, 0, sizeof(a));
	REQUIRE(store_read(src, dump_txn, &a) == 0);
	CHECK_ERR(store_import(src, file, &info2), P8V_ERR_EXISTS);
	CHECK(strstr(info2.why, "not empty") != NULL);
	memset(&b, 0, sizeof(b));
	REQUIRE(store_read(src, dump_txn, &b) == 0);
	for (i = 0; i < STORE_DB_COUNT; i++) {
		CHECK_INT(a.len[i], b.len[i]);
		CHECK(a.len[i] == b.len[i] &&
		    memcmp(a.buf[i], b.buf[i], a.len[i]) == 0);
	}
	dump_free(&b);

	/* Into a new store: every database byte for byte. */
	dst = tsu_store(dst_dir, 0);
	CHECK_OK(store_generation(dst, &g1));
	CHECK_OK(store_import(dst, file, &info3));
	CHECK_OK(store_generation(dst, &g2));
	/* In batches: > FILL_ENTRIES / STORE_IMPORT_BATCH_OPS commits, one
	 * more for the value above STORE_IMPORT_BATCH_BYTES (LMDB's
	 * generation counts commits). */
	CHECKF(g2 - g1 >= FILL_ENTRIES / STORE_IMPORT_BATCH_OPS + 1,
	    "%llu commits", (unsigned long long)(g2 - g1));
	CHECK_INT(info3.total, info.total);
	REQUIRE(store_read(dst, dump_txn, &b) == 0);
	for (i = 0; i < STORE_DB_COUNT; i++) {
		CHECKF(a.n[i] == b.n[i] && a.len[i] == b.len[i] &&
		    memcmp(a.buf[i], b.buf[i], a.len[i]) == 0,
		    "database %d differs after the round trip", i);
		CHECK_INT(info.entries[i], a.n[i]);
	}
	/* The same store exports to the same bytes. */
	CHECK_OK(store_export(dst, file2, &info2));
	REQUIRE(tu_read_file(file, &f1, &l1) == 0);
	REQUIRE(tu_read_file(file2, &f2, &l2) == 0);
	CHECK(l1 == l2 && memcmp(f1, f2, l1) == 0);
	free(f1);
	free(f2);
	/* And the imported store is not empty any more. */
	CHECK_ERR(store_import(dst, file, NULL), P8V_ERR_EXISTS);
	dump_free(&a);
	dump_free(&b);
	store_close(dst);
	store_close(src);
	free(src_dir);
	free(dst_dir);
	free(file);
	free(file2);
}

/* --- damaged files --- */

/* Write buf as a file, import it into s (a new store), expect want (or any
 * failure if want is 0) and nothing written. */
static void
import_bad(struct store *s, const char *path, const uint8_t *buf, size_t len,
    int want, const char *what)
{
	struct store_export_info info;
	int r;

	unlink(path);
	REQUIRE(tu_write_file(path, buf, len, 0600) == 0);
	r = store_import(s, path, &info);
	if (want != 0)
		CHECKF(r == want, "%s: got %s, want %s", what, p8v_errname(r),
		    p8v_errname(want));
	else
		CHECKF(r < 0, "%s: accepted", what);
	CHECKF(info.why[0] != '\0' && strchr(info.why, '\n') == NULL,
	    "%s: no one-line reason", what);
	CHECKF(is_new(s), "%s: something was written", what);
	r = store_export_check(path, &info);
	CHECKF(r < 0, "%s: store_export_check accepted it", what);
}

/* Recompute the checksum of a file changed on purpose (OpenSSL). */
static void
reseal(uint8_t *buf, size_t len)
{
	SHA256(buf, len - STORE_EXPORT_SHA256_BYTES,
	    buf + len - STORE_EXPORT_SHA256_BYTES);
}

static int
small_fill(struct store_txn *txn, void *arg)
{
	int r;

	(void)arg;
	if ((r = store_put(txn, STORE_DB_KEYS, "k1", 2, "sealed-1", 8, 0)) ||
	    (r = store_put(txn, STORE_DB_KEYS, "k2", 2, "sealed-2", 8, 0)) ||
	    (r = store_put(txn, STORE_DB_CREDS, "c", 1, "", 0, 0)) ||
	    (r = store_put(txn, STORE_DB_CACHE, "t", 1, "tok", 3, 0)))
		return r;
	return store_put(txn, STORE_DB_META, "x", 1, "y", 1, 0);
}

static void
test_damage(void)
{
	char *src_dir = path_in("dsrc"), *dst_dir = path_in("ddst");
	char *file = path_in("small.export"), *bad = path_in("bad.export");
	struct store *src = tsu_store(src_dir, 0), *dst;
	uint8_t *f, *g;
	size_t len, i, first;
	char what[64];

	REQUIRE(store_write(src, small_fill, NULL) == 0);
	REQUIRE(store_export(src, file, NULL) == 0);
	REQUIRE(tu_read_file(file, &f, &len) == 0);
	REQUIRE((g = malloc(len + 1)) != NULL);
	dst = tsu_store(dst_dir, 0);

	CHECK_ERR(store_import(dst, bad, NULL), P8V_ERR_NOT_FOUND);
	/* Every truncation, including the empty file. */
	for (i = 0; i < len; i++) {
		snprintf(what, sizeof(what), "truncated to %zu bytes", i);
		import_bad(dst, bad, f, i, P8V_ERR_INTEGRITY, what);
	}
	/* Every flipped bit of every byte position (one bit each). */
	for (i = 0; i < len; i++) {
		memcpy(g, f, len);
		g[i] ^= (uint8_t)(1u << (i % 8));
		snprintf(what, sizeof(what), "bit flipped at byte %zu", i);
		import_bad(dst, bad, g, len, 0, what);
	}
	/* Trailing data. */
	memcpy(g, f, len);
	g[len] = 0;
	import_bad(dst, bad, g, len + 1, P8V_ERR_INTEGRITY, "trailing byte");
	/* Another format version, another schema, under valid checksums. */
	memcpy(g, f, len);
	store_put_u32(g + 8, STORE_EXPORT_VERSION + 1);
	reseal(g, len);
	import_bad(dst, bad, g, len, P8V_ERR_UNSUPPORTED, "format version");
	memcpy(g, f, len);
	store_put_u32(g + 12, STORE_SCHEMA_VERSION + 1);
	reseal(g, len);
	import_bad(dst, bad, g, len, P8V_ERR_STORE_VERSION, "schema version");
	/* A count that disagrees, under a valid checksum. */
	memcpy(g, f, len);
	first = len - STORE_EXPORT_SHA256_BYTES - 8;
	store_put_u64(g + first, store_get_u64(g + first) + 1);
	reseal(g, len);
	import_bad(dst, bad, g, len, P8V_ERR_INTEGRITY, "wrong count");
	/* Two keys swapped ("k2" before "k1"), under a valid checksum: the
	 * first entry's key is at 16 + 7. */
	memcpy(g, f, len);
	REQUIRE(memcmp(g + 16 + 7, "k1", 2) == 0);
	g[16 + 7 + 1] = '3';
	reseal(g, len);
	import_bad(dst, bad, g, len, P8V_ERR_INTEGRITY, "out of order");
	/* Not an export at all. */
	import_bad(dst, bad, (const uint8_t *)"SQLite format 3", 15,
	    P8V_ERR_INTEGRITY, "another file");
	/* And the good file still goes in. */
	CHECK_OK(store_import(dst, file, NULL));
	CHECK(!is_new(dst));
	free(f);
	free(g);
	store_close(dst);
	store_close(src);
	free(src_dir);
	free(dst_dir);
	free(file);
	free(bad);
}

int
main(void)
{
	REQUIRE(secmem_init() == 0);
	REQUIRE((base = tu_mkdtemp("p8v-export")) != NULL);
	test_dispatch();
	test_round_trip();
	test_damage();
	tu_rmtree(base);
	free(base);
	return check_finish();
}
