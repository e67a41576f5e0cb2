/*
 * test_store_creds.c: API credentials and the token cache. Round trips,
 * every field refused when invalid, only a hash of the secret on disk,
 * constant-time matching, revocation, strict decoding of tampered values;
 * cache expiry, purge, limits.
 */
#include "store/creds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "crypto/secmem.h"
#include "store/cache.h"
#include "tests/check.h"
#include "tests/test_store_util.h"
#include "tests/testutil.h"

static struct store *store;

static const char secret[] = "p8v_s3cr3t_0123456789abcdefghijklmnopqrstuv";

static void
make_cred(struct store_cred *c, const char *id)
{
	static const char *const apps[] = { "com.example.one", "com.example.two" };

	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	strcpy(c->role, "upload");
	strcpy(c->name, "Portal backend (prod) #1");
	REQUIRE(store_cred_set_apps(c, apps, 2) == 0);
	REQUIRE(store_cred_hash_secret(secret, strlen(secret),
	    c->secret_hash) == 0);
	c->created_at = 1790000000;
}

struct op {
	struct store_cred *cred;
	const char *id;
	int64_t now;
	const void *raw;
	size_t raw_len;
};

static int
create_txn(struct store_txn *txn, void *arg)
{
	return store_cred_create(txn, ((struct op *)arg)->cred);
}

static int
get_txn(struct store_txn *txn, void *arg)
{
	struct op *o = arg;

	return store_cred_get(txn, o->id, o->cred);
}

static int
revoke_txn(struct store_txn *txn, void *arg)
{
	struct op *o = arg;

	return store_cred_revoke(txn, o->id, o->now);
}

static int
delete_txn(struct store_txn *txn, void *arg)
{
	return store_cred_delete(txn, ((struct op *)arg)->id);
}

static int
raw_put_txn(struct store_txn *txn, void *arg)
{
	struct op *o = arg;

	return store_put(txn, STORE_DB_CREDS, o->id, strlen(o->id), o->raw,
	    o->raw_len, 0);
}

static int
raw_get_txn(struct store_txn *txn, void *arg)
{
	struct op *o = arg;
	const uint8_t *v;
	size_t n;
	int r;

	if ((r = store_get(txn, STORE_DB_CREDS, o->id, strlen(o->id), &v,
	    &n)) != 0)
		return r;
	REQUIRE((o->raw = malloc(n)) != NULL);
	memcpy((void *)o->raw, v, n);
	o->raw_len = n;
	return 0;
}

static int
count_cb(const struct store_cred *c, void *arg)
{
	(void)c;
	(*(unsigned *)arg)++;
	return 0;
}

static int
foreach_txn(struct store_txn *txn, void *arg)
{
	return store_cred_foreach(txn, count_cb, arg);
}

static void
test_creds_round_trip(void)
{
	struct store_cred c, got;
	struct op o = { .cred = &c };
	unsigned n = 0;

	make_cred(&c, "tok_portal-1");
	CHECK_OK(store_write(store, create_txn, &o));
	CHECK_ERR(store_write(store, create_txn, &o), P8V_ERR_EXISTS);
	o.cred = &got;
	o.id = "tok_portal-1";
	CHECK_OK(store_read(store, get_txn, &o));
	CHECK_STR(got.id, c.id);
	CHECK_STR(got.role, "upload");
	CHECK_STR(got.name, c.name);
	CHECK_INT(got.n_apps, 2);
	CHECK_STR(got.apps[1], "com.example.two");
	CHECK_MEM(got.secret_hash, c.secret_hash, CRED_SECRET_HASH_BYTES);
	CHECK_INT(got.created_at, 1790000000);
	CHECK_INT(got.revoked_at, 0);
	CHECK(store_cred_secret_matches(&got, secret, strlen(secret)));
	CHECK(!store_cred_secret_matches(&got, secret, strlen(secret) - 1));
	CHECK(!store_cred_secret_matches(&got, "p8v_s3cr3t_0123456789abcdefghijklmnopqrstuw",
	    strlen(secret)));
	CHECK(!store_cred_secret_matches(&got, "", 0));
	CHECK(!store_cred_secret_matches(NULL, secret, strlen(secret)));
	CHECK(store_cred_allows_app(&got, "com.example.one"));
	CHECK(!store_cred_allows_app(&got, "com.example.three"));
	CHECK(!store_cred_allows_app(&got, "com.example"));
	store_cred_free(&got);

	/* "*" alone allows every app. */
	{
		const char *all[] = { CRED_ALL_APPS };
		const char *mixed[] = { CRED_ALL_APPS, "a" };
		CHECK_OK(store_cred_set_apps(&c, all, 1));
		CHECK(store_cred_allows_app(&c, "anything"));
		CHECK_ERR(store_cred_set_apps(&c, mixed, 2), P8V_ERR_BAD_FIELD);
	}
	store_cred_free(&c);

	/* Revocation keeps the first time. */
	o.id = "tok_portal-1";
	o.now = 1790000500;
	CHECK_OK(store_write(store, revoke_txn, &o));
	o.now = 1790009999;
	CHECK_OK(store_write(store, revoke_txn, &o));
	o.cred = &got;
	CHECK_OK(store_read(store, get_txn, &o));
	CHECK_INT(got.revoked_at, 1790000500);
	store_cred_free(&got);
	o.id = "tok_absent";
	CHECK_ERR(store_write(store, revoke_txn, &o), P8V_ERR_NOT_FOUND);
	CHECK_ERR(store_read(store, get_txn, &o), P8V_ERR_NOT_FOUND);
	o.id = "bad id";
	CHECK_ERR(store_read(store, get_txn, &o), P8V_ERR_BAD_FIELD);

	/* Listing and deleting. */
	make_cred(&c, "tok_b");
	o.cred = &c;
	CHECK_OK(store_write(store, create_txn, &o));
	store_cred_free(&c);
	CHECK_OK(store_read(store, foreach_txn, &n));
	CHECK_INT(n, 2);
	o.id = "tok_b";
	CHECK_OK(store_write(store, delete_txn, &o));
	CHECK_ERR(store_write(store, delete_txn, &o), P8V_ERR_NOT_FOUND);
	n = 0;
	CHECK_OK(store_read(store, foreach_txn, &n));
	CHECK_INT(n, 1);
}

/* The secret never reaches the store; only its hash does. */
static void
test_creds_no_secret(void)
{
	struct store_cred c;
	struct op o = { .cred = &c, .id = "tok_hash" };
	uint8_t h[CRED_SECRET_HASH_BYTES];
	char hex[2 * CRED_SECRET_HASH_BYTES + 1];
	size_t i;

	make_cred(&c, "tok_hash");
	CHECK_OK(store_write(store, create_txn, &o));
	store_cred_free(&c);
	CHECK_OK(store_read(store, raw_get_txn, &o));
	CHECK(memmem(o.raw, o.raw_len, secret, strlen(secret)) == NULL);
	CHECK(memmem(o.raw, o.raw_len, secret, 16) == NULL);
	/* The hash is SHA-256 (checked against a known answer below). */
	CHECK_OK(store_cred_hash_secret("abc", 3, h));
	for (i = 0; i < sizeof(h); i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CHECK_OK(store_cred_hash_secret(secret, strlen(secret), h));
	for (i = 0; i < sizeof(h); i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	CHECK(memmem(o.raw, o.raw_len, hex, 64) != NULL);
	CHECK_ERR(store_cred_hash_secret(secret, 0, h), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_cred_hash_secret(NULL, 3, h), P8V_ERR_INVALID_ARGUMENT);
	free((void *)o.raw);
}

/* Fields refused by store_cred_check (and so by create). */
static void f_id(struct store_cred *c) { strcpy(c->id, "a/b"); }
static void f_id0(struct store_cred *c) { c->id[0] = '\0'; }
static void f_role(struct store_cred *c) { strcpy(c->role, "Admin"); }
static void f_role0(struct store_cred *c) { c->role[0] = '\0'; }
static void f_name(struct store_cred *c) { c->name[2] = '\n'; }
static void f_name0(struct store_cred *c) { c->name[0] = '\0'; }
static void f_app(struct store_cred *c) { c->apps[0][0] = ' '; }
static void f_dup(struct store_cred *c) { strcpy(c->apps[1], c->apps[0]); }
static void f_time(struct store_cred *c) { c->created_at = -5; }
static void f_rev(struct store_cred *c) { c->revoked_at = c->created_at - 1; }

static const struct {
	const char *what;
	void (*spoil)(struct store_cred *);
	int want;
} cred_cases[] = {
	{ "id", f_id, P8V_ERR_BAD_FIELD },
	{ "empty id", f_id0, P8V_ERR_BAD_FIELD },
	{ "role", f_role, P8V_ERR_BAD_FIELD },
	{ "empty role", f_role0, P8V_ERR_BAD_FIELD },
	{ "name", f_name, P8V_ERR_BAD_FIELD },
	{ "empty name", f_name0, P8V_ERR_BAD_FIELD },
	{ "app", f_app, P8V_ERR_BAD_APP_ID },
	{ "duplicate app", f_dup, P8V_ERR_BAD_FIELD },
	{ "time", f_time, P8V_ERR_BAD_FIELD },
	{ "revoked before created", f_rev, P8V_ERR_BAD_FIELD },
};

static void
test_creds_refused(void)
{
	struct store_cred c;
	struct op o = { .cred = &c };
	size_t i;

	for (i = 0; i < sizeof(cred_cases) / sizeof(cred_cases[0]); i++) {
		make_cred(&c, "tok_refused");
		CHECK_OK(store_cred_check(&c));
		cred_cases[i].spoil(&c);
		CHECKF(store_cred_check(&c) == cred_cases[i].want, "%s",
		    cred_cases[i].what);
		CHECKF(store_write(store, create_txn, &o) == cred_cases[i].want,
		    "%s: create", cred_cases[i].what);
		store_cred_free(&c);
	}
	o.id = "tok_refused";
	o.cred = &c;
	CHECK_ERR(store_read(store, get_txn, &o), P8V_ERR_NOT_FOUND);
}

/* Tampered values: every byte flipped, moved under another id. */
static int
same_cred(const struct store_cred *a, const struct store_cred *b)
{
	size_t i;

	if (strcmp(a->id, b->id) || strcmp(a->role, b->role) ||
	    strcmp(a->name, b->name) || a->n_apps != b->n_apps ||
	    memcmp(a->secret_hash, b->secret_hash, CRED_SECRET_HASH_BYTES) ||
	    a->created_at != b->created_at || a->revoked_at != b->revoked_at)
		return 0;
	for (i = 0; i < a->n_apps; i++)
		if (strcmp(a->apps[i], b->apps[i]))
			return 0;
	return 1;
}

static void
test_creds_tamper(void)
{
	struct store_cred c, got, want;
	struct op o = { .cred = &c, .id = "tok_tamper" };
	uint8_t *orig, *v;
	size_t len, i;
	int r;

	make_cred(&c, "tok_tamper");
	CHECK_OK(store_write(store, create_txn, &o));
	store_cred_free(&c);
	make_cred(&want, "tok_tamper");
	CHECK_OK(store_read(store, raw_get_txn, &o));
	orig = (uint8_t *)o.raw;
	len = o.raw_len;
	REQUIRE((v = malloc(len)) != NULL);
	o.cred = &got;
	for (i = 0; i < len; i++) {
		memcpy(v, orig, len);
		v[i] ^= (uint8_t)(1u << (i % 8));
		o.raw = v;
		o.raw_len = len;
		CHECK_OK(store_write(store, raw_put_txn, &o));
		r = store_read(store, get_txn, &o);
		/* Credentials carry no MAC (see docs/security.md): a flip that
		 * leaves valid JSON (a digit, a letter of the name) decodes,
		 * but never to the same credential, since each has exactly one
		 * encoding. */
		if (r == 0) {
			CHECKF(!same_cred(&got, &want), "byte %zu", i);
			store_cred_free(&got);
		} else
			CHECKF(r == P8V_ERR_INTEGRITY, "byte %zu: %s", i,
			    p8v_errname(r));
	}
	/* Under another id. */
	o.id = "tok_other";
	o.raw = orig;
	o.raw_len = len;
	CHECK_OK(store_write(store, raw_put_txn, &o));
	CHECK_ERR(store_read(store, get_txn, &o), P8V_ERR_INTEGRITY);
	CHECK_OK(store_write(store, delete_txn, &o));
	o.id = "tok_tamper";
	CHECK_OK(store_write(store, raw_put_txn, &o));
	CHECK_OK(store_read(store, get_txn, &o));
	CHECK(store_cred_secret_matches(&got, secret, strlen(secret)));
	CHECK(same_cred(&got, &want));
	store_cred_free(&got);
	store_cred_free(&want);
	free(v);
	free(orig);
}

/* ---- cache ---- */

struct cop {
	const char *key;
	int64_t exp, now;
	const uint8_t *blob;
	size_t len;
	uint8_t *got;
	size_t got_len;
	int64_t got_exp;
	uint64_t removed;
	unsigned n;
};

static int
cput(struct store_txn *txn, void *arg)
{
	struct cop *c = arg;

	return store_cache_put(txn, c->key, c->exp, c->blob, c->len);
}

static int
cget(struct store_txn *txn, void *arg)
{
	struct cop *c = arg;

	free(c->got);
	c->got = NULL;
	return store_cache_get(txn, c->key, &c->got_exp, &c->got, &c->got_len);
}

static int
cpurge(struct store_txn *txn, void *arg)
{
	struct cop *c = arg;

	return store_cache_purge(txn, c->now, &c->removed);
}

static int
ccount_cb(const char *key, int64_t exp, const uint8_t *blob, size_t len,
    void *arg)
{
	(void)key;
	(void)exp;
	(void)blob;
	(void)len;
	((struct cop *)arg)->n++;
	return 0;
}

static int
cforeach(struct store_txn *txn, void *arg)
{
	((struct cop *)arg)->n = 0;
	return store_cache_foreach(txn, ccount_cb, arg);
}

static int
cdel(struct store_txn *txn, void *arg)
{
	return store_cache_delete(txn, ((struct cop *)arg)->key);
}

static int
cclear(struct store_txn *txn, void *arg)
{
	(void)arg;
	return store_cache_clear(txn);
}

static int
craw(struct store_txn *txn, void *arg)
{
	struct cop *c = arg;

	return store_put(txn, STORE_DB_CACHE, c->key, strlen(c->key), c->blob,
	    c->len, 0);
}

static void
test_cache(void)
{
	static const uint8_t blob[] = "sealed-token-bytes";
	uint8_t big[CACHE_BLOB_MAX + 1];
	char longkey[CACHE_KEY_MAX + 2];
	struct cop c = { .key = "apns/TEAM4567AB/K000000001/ab12", .exp = 100,
	    .blob = blob, .len = sizeof(blob) };
	char k[32];
	int i;

	CHECK_OK(store_write(store, cput, &c));
	CHECK_OK(store_read(store, cget, &c));
	CHECK_INT(c.got_exp, 100);
	CHECK_INT(c.got_len, sizeof(blob));
	CHECK_MEM(c.got, blob, sizeof(blob));
	/* Replace. */
	c.exp = 200;
	c.len = 3;
	CHECK_OK(store_write(store, cput, &c));
	CHECK_OK(store_read(store, cget, &c));
	CHECK_INT(c.got_exp, 200);
	CHECK_INT(c.got_len, 3);
	/* An empty blob. */
	c.len = 0;
	CHECK_OK(store_write(store, cput, &c));
	CHECK_OK(store_read(store, cget, &c));
	CHECK(c.got != NULL && c.got_len == 0);
	/* Limits and bad keys. */
	memset(big, 'b', sizeof(big));
	c.blob = big;
	c.len = sizeof(big);
	CHECK_ERR(store_write(store, cput, &c), P8V_ERR_TOO_LARGE);
	c.len = CACHE_BLOB_MAX;
	CHECK_OK(store_write(store, cput, &c));
	memset(longkey, 'k', sizeof(longkey));
	longkey[CACHE_KEY_MAX] = '\0';
	c.key = longkey;
	c.len = 1;
	CHECK_OK(store_write(store, cput, &c));
	longkey[CACHE_KEY_MAX] = 'k';
	longkey[CACHE_KEY_MAX + 1] = '\0';
	CHECK_ERR(store_write(store, cput, &c), P8V_ERR_INVALID_ARGUMENT);
	c.key = "has space";
	CHECK_ERR(store_write(store, cput, &c), P8V_ERR_INVALID_ARGUMENT);
	c.key = "";
	CHECK_ERR(store_write(store, cput, &c), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(store_read(store, cget, &c), P8V_ERR_INVALID_ARGUMENT);
	c.key = "absent";
	CHECK_ERR(store_read(store, cget, &c), P8V_ERR_NOT_FOUND);
	CHECK_ERR(store_write(store, cdel, &c), P8V_ERR_NOT_FOUND);
	/* Malformed stored values. */
	c.key = "raw/1";
	c.blob = (const uint8_t *)"\x02" "00000000";
	c.len = 9;
	CHECK_OK(store_write(store, craw, &c));
	CHECK_ERR(store_read(store, cget, &c), P8V_ERR_INTEGRITY);
	c.blob = (const uint8_t *)"\x01" "0000";
	c.len = 5;
	CHECK_OK(store_write(store, craw, &c));
	CHECK_ERR(store_read(store, cget, &c), P8V_ERR_INTEGRITY);
	CHECK_ERR(store_read(store, cforeach, &c), P8V_ERR_INTEGRITY);

	/* Purge: expired and malformed entries go, the rest stay. */
	CHECK_OK(store_write(store, cclear, &c));
	c.blob = blob;
	c.len = 4;
	for (i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "t/%d", i);
		c.key = k;
		c.exp = 1000 + i;
		CHECK_OK(store_write(store, cput, &c));
	}
	c.key = "raw/2";
	c.blob = (const uint8_t *)"x";
	c.len = 1;
	CHECK_OK(store_write(store, craw, &c));
	c.now = 1004;
	CHECK_OK(store_write(store, cpurge, &c));
	CHECK_INT(c.removed, 6); /* t/0..t/4 and raw/2 */
	CHECK_OK(store_read(store, cforeach, &c));
	CHECK_INT(c.n, 5);
	c.key = "t/4";
	CHECK_ERR(store_read(store, cget, &c), P8V_ERR_NOT_FOUND);
	c.key = "t/5";
	CHECK_OK(store_read(store, cget, &c));
	CHECK_INT(c.got_exp, 1005);
	CHECK_OK(store_write(store, cdel, &c));
	CHECK_OK(store_read(store, cforeach, &c));
	CHECK_INT(c.n, 4);
	CHECK_OK(store_write(store, cclear, &c));
	CHECK_OK(store_read(store, cforeach, &c));
	CHECK_INT(c.n, 0);
	free(c.got);
}

/* jansson's allocator while memory has run out. */
static void *
no_memory(size_t n)
{
	(void)n;
	return NULL;
}

/* Memory pressure while decoding is P8V_ERR_ALLOC, never
 * P8V_ERR_INTEGRITY (which an operator reads as tampering). */
static void
test_creds_alloc_failure(void)
{
	static const uint8_t canonical[] = "{\"a\":1}";
	static const uint8_t spaced[] = "{\"a\": 1}";
	struct store_cred c, got;
	struct op o = { 0 };
	json_t *obj = NULL;

	CHECK_OK(codec_json_decode(canonical, sizeof(canonical) - 1, &obj));
	CHECK(json_is_object(obj));
	json_decref(obj);
	CHECK_ERR(codec_json_decode(spaced, sizeof(spaced) - 1, &obj),
	    P8V_ERR_INTEGRITY);
	CHECK(obj == NULL);

	make_cred(&c, "nomem-1");
	o.cred = &c;
	REQUIRE(store_write(store, create_txn, &o) == 0);
	memset(&got, 0, sizeof(got));
	o.cred = &got;
	o.id = "nomem-1";
	json_set_alloc_funcs(no_memory, free);
	CHECK_ERR(codec_json_decode(canonical, sizeof(canonical) - 1, &obj),
	    P8V_ERR_ALLOC);
	CHECK(obj == NULL);
	CHECK_ERR(store_read(store, get_txn, &o), P8V_ERR_ALLOC);
	json_set_alloc_funcs(malloc, free);
	CHECK_OK(store_read(store, get_txn, &o));
	CHECK_STR(got.id, "nomem-1");
	store_cred_free(&got);
	store_cred_free(&c);
}

int
main(void)
{
	char *dir;

	REQUIRE(secmem_init() == 0);
	REQUIRE((dir = tu_mkdtemp("p8v-creds")) != NULL);
	store = tsu_store(dir, 0);
	test_creds_round_trip();
	test_creds_no_secret();
	test_creds_refused();
	test_creds_tamper();
	test_creds_alloc_failure();
	test_cache();
	store_close(store);
	tu_rmtree(dir);
	free(dir);
	return check_finish();
}
