/*
 * test_store_audit.c: the hash-chained audit log. Appends, iteration, the
 * chain re-computed independently (OpenSSL's SHA-256, not the store's), and
 * verification catching a removed, altered, reordered or truncated event
 * with the sequence number where the chain breaks.
 */
#include "store/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include <openssl/sha.h>

#include "crypto/secmem.h"
#include "tests/check.h"
#include "tests/test_store_util.h"
#include "tests/testutil.h"

#define EVENTS 10

struct app {
	const json_t *event;
	uint64_t seq;
};

static int
append_txn(struct store_txn *txn, void *arg)
{
	struct app *a = arg;

	return store_audit_append(txn, a->event, &a->seq);
}

static json_t *
event(unsigned i)
{
	json_t *e = json_pack("{s:s, s:s, s:s, s:I, s:b}",
	    "action", i % 2 ? "key.upload" : "token.mint",
	    "actor", "tok_portal-1", "app", "com.example.push",
	    "ts", (json_int_t)(1790000000 + i), "ok", 1);

	REQUIRE(e != NULL);
	return e;
}

static struct store *
filled_store(const char *dir)
{
	struct store *s = tsu_store(dir, 0);
	struct app a;
	unsigned i;

	for (i = 1; i <= EVENTS; i++) {
		json_t *e = event(i);
		a.event = e;
		REQUIRE(store_write(s, append_txn, &a) == 0);
		REQUIRE(a.seq == i);
		json_decref(e);
	}
	return s;
}

struct result {
	uint64_t events, bad;
};

static int
verify_txn(struct store_txn *txn, void *arg)
{
	struct result *r = arg;

	return store_audit_verify(txn, &r->events, &r->bad);
}

/* An independent walk: OpenSSL SHA-256 over the bytes foreach hands out. */
struct walk {
	uint8_t prev[SHA256_DIGEST_LENGTH];
	uint64_t n, first;
	int ok;
};

static int
walk_cb(uint64_t seq, const char *json, size_t len, void *arg)
{
	struct walk *w = arg;
	char hex[2 * SHA256_DIGEST_LENGTH + 1];
	json_t *obj = json_loadb(json, len, 0, NULL);
	size_t i;

	for (i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", w->prev[i]);
	if (obj == NULL || json_integer_value(json_object_get(obj, "seq")) !=
	    (json_int_t)seq || strlen(json) != len ||
	    (w->n > 0 || seq == 1 ? strcmp(json_string_value(json_object_get(
	    obj, "prev")), hex) != 0 : 0) ||
	    strcmp(json_string_value(json_object_get(obj, "actor")),
	    "tok_portal-1") != 0)
		w->ok = 0;
	if (w->n == 0)
		w->first = seq;
	SHA256((const unsigned char *)json, len, w->prev);
	w->n++;
	json_decref(obj);
	return 0;
}

struct walk_args {
	uint64_t from;
	struct walk w;
};

static int
walk_txn(struct store_txn *txn, void *arg)
{
	struct walk_args *a = arg;

	return store_audit_foreach(txn, a->from, walk_cb, &a->w);
}

static void
test_append_and_walk(void)
{
	char *d = tu_mkdtemp("p8v-audit");
	struct store *s;
	struct result res;
	struct walk_args wa = { .from = 0 };
	struct app a;
	json_t *bad;
	char big[AUDIT_EVENT_MAX + 1];

	REQUIRE(d != NULL);
	s = tsu_store(d, 0);
	/* An empty log verifies. */
	CHECK_OK(store_read(s, verify_txn, &res));
	CHECK_INT(res.events, 0);
	store_close(s);
	tu_rmtree(d);
	REQUIRE(mkdir(d, 0700) == 0);

	s = filled_store(d);
	CHECK_OK(store_read(s, verify_txn, &res));
	CHECK_INT(res.events, EVENTS);
	CHECK_INT(res.bad, 0);
	/* Genesis is 64 zeros: the walk starts from a zero "prev". */
	wa.w.ok = 1;
	CHECK_OK(store_read(s, walk_txn, &wa));
	CHECK(wa.w.ok);
	CHECK_INT(wa.w.n, EVENTS);
	CHECK_INT(wa.w.first, 1);
	memset(&wa, 0, sizeof(wa));
	wa.from = 7;
	wa.w.ok = 1;
	CHECK_OK(store_read(s, walk_txn, &wa));
	CHECK_INT(wa.w.n, EVENTS - 6);
	CHECK_INT(wa.w.first, 7);

	/* Refused events. */
	bad = json_pack("{s:i}", "seq", 5);
	a.event = bad;
	CHECK_ERR(store_write(s, append_txn, &a), P8V_ERR_INVALID_ARGUMENT);
	json_decref(bad);
	bad = json_pack("{s:s}", "prev", "x");
	a.event = bad;
	CHECK_ERR(store_write(s, append_txn, &a), P8V_ERR_INVALID_ARGUMENT);
	json_decref(bad);
	bad = json_pack("[i]", 1);
	a.event = bad;
	CHECK_ERR(store_write(s, append_txn, &a), P8V_ERR_INVALID_ARGUMENT);
	json_decref(bad);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	bad = json_pack("{s:s}", "note", big);
	a.event = bad;
	CHECK_ERR(store_write(s, append_txn, &a), P8V_ERR_TOO_LARGE);
	json_decref(bad);
	/* None of them was stored. */
	CHECK_OK(store_read(s, verify_txn, &res));
	CHECK_INT(res.events, EVENTS);
	store_close(s);
	tu_rmtree(d);
	free(d);
}

/* ---- tampering ---- */

static int
raw_get(struct store_txn *txn, uint64_t seq, uint8_t **v, size_t *n)
{
	uint8_t k[8];
	const uint8_t *p;
	int r;

	store_put_u64(k, seq);
	if ((r = store_get(txn, STORE_DB_AUDIT, k, 8, &p, n)) != 0)
		return r;
	REQUIRE((*v = malloc(*n + 1)) != NULL);
	memcpy(*v, p, *n);
	return 0;
}

static int
raw_put(struct store_txn *txn, uint64_t seq, const uint8_t *v, size_t n)
{
	uint8_t k[8];

	store_put_u64(k, seq);
	return store_put(txn, STORE_DB_AUDIT, k, 8, v, n, 0);
}

static int
raw_del(struct store_txn *txn, uint64_t seq)
{
	uint8_t k[8];

	store_put_u64(k, seq);
	return store_del(txn, STORE_DB_AUDIT, k, 8);
}

static int t_del5(struct store_txn *t, void *a) { (void)a; return raw_del(t, 5); }
static int t_del1(struct store_txn *t, void *a) { (void)a; return raw_del(t, 1); }
static int t_del_last(struct store_txn *t, void *a) { (void)a; return raw_del(t, EVENTS); }

static int
t_truncate(struct store_txn *t, void *a)
{
	uint64_t i;
	int r;

	(void)a;
	for (i = 8; i <= EVENTS; i++)
		if ((r = raw_del(t, i)) != 0)
			return r;
	return 0;
}

/* Change one letter of "tok_portal-1": still valid, canonical JSON. */
static int
alter_actor(struct store_txn *t, uint64_t seq)
{
	uint8_t *v, *p;
	size_t n;
	int r;

	if ((r = raw_get(t, seq, &v, &n)) != 0)
		return r;
	v[n] = '\0';
	REQUIRE((p = (uint8_t *)strstr((char *)v, "tok_portal")) != NULL);
	p[4] = 'P';
	r = raw_put(t, seq, v, n);
	free(v);
	return r;
}

static int t_alter5(struct store_txn *t, void *a) { (void)a; return alter_actor(t, 5); }
static int t_alter_last(struct store_txn *t, void *a) { (void)a; return alter_actor(t, EVENTS); }

static int
t_break3(struct store_txn *t, void *a)
{
	uint8_t *v;
	size_t n;
	int r;

	(void)a;
	if ((r = raw_get(t, 3, &v, &n)) != 0)
		return r;
	v[0] = '[';
	r = raw_put(t, 3, v, n);
	free(v);
	return r;
}

static int
t_swap34(struct store_txn *t, void *a)
{
	uint8_t *v3, *v4;
	size_t n3, n4;
	int r;

	(void)a;
	if ((r = raw_get(t, 3, &v3, &n3)) != 0 ||
	    (r = raw_get(t, 4, &v4, &n4)) != 0)
		return r;
	if ((r = raw_put(t, 3, v4, n4)) == 0)
		r = raw_put(t, 4, v3, n3);
	free(v3);
	free(v4);
	return r;
}

static int
t_del_head(struct store_txn *t, void *a)
{
	(void)a;
	return store_del(t, STORE_DB_META, "audit/head", 10);
}

static int
t_extra_key(struct store_txn *t, void *a)
{
	(void)a;
	return store_put(t, STORE_DB_AUDIT, "zzz", 3, "{}", 2, 0);
}

static const struct {
	const char *what;
	int (*tamper)(struct store_txn *, void *);
	uint64_t bad;               /* where verify must say it broke */
} tamper_cases[] = {
	{ "event 5 removed", t_del5, 6 },
	{ "first event removed", t_del1, 2 },
	{ "last event removed", t_del_last, EVENTS },
	{ "last three removed", t_truncate, 8 },
	{ "event 5 altered", t_alter5, 6 },
	{ "last event altered", t_alter_last, EVENTS },
	{ "event 3 not JSON", t_break3, 3 },
	{ "events 3 and 4 swapped", t_swap34, 3 },
	{ "head removed", t_del_head, EVENTS },
	{ "a key that is no sequence number", t_extra_key, EVENTS + 1 },
};

static void
test_tamper(void)
{
	struct result res;
	struct store *s;
	size_t i;
	char *d;

	for (i = 0; i < sizeof(tamper_cases) / sizeof(tamper_cases[0]); i++) {
		REQUIRE((d = tu_mkdtemp("p8v-audit-t")) != NULL);
		s = filled_store(d);
		REQUIRE(store_write(s, tamper_cases[i].tamper, NULL) == 0);
		memset(&res, 0xff, sizeof(res));
		CHECKF(store_read(s, verify_txn, &res) == P8V_ERR_INTEGRITY,
		    "%s", tamper_cases[i].what);
		CHECKF(res.bad == tamper_cases[i].bad, "%s: bad at %llu",
		    tamper_cases[i].what, (unsigned long long)res.bad);
		store_close(s);
		tu_rmtree(d);
		free(d);
	}
}

/* Every bit position of one event: verify always notices. */
struct flip {
	size_t i;
	uint8_t *orig;
	size_t n;
};

static int
t_flip(struct store_txn *t, void *arg)
{
	struct flip *f = arg;
	uint8_t *v = malloc(f->n);
	int r;

	REQUIRE(v != NULL);
	memcpy(v, f->orig, f->n);
	v[f->i] ^= (uint8_t)(1u << (f->i % 8));
	r = raw_put(t, 5, v, f->n);
	free(v);
	return r;
}

static int
get5(struct store_txn *t, void *arg)
{
	struct flip *f = arg;

	return raw_get(t, 5, &f->orig, &f->n);
}

static int
restore5(struct store_txn *t, void *arg)
{
	struct flip *f = arg;

	return raw_put(t, 5, f->orig, f->n);
}

static void
test_every_byte(void)
{
	char *d = tu_mkdtemp("p8v-audit-b");
	struct flip f = { 0 };
	struct result res;
	struct store *s;

	REQUIRE(d != NULL);
	s = filled_store(d);
	REQUIRE(store_read(s, get5, &f) == 0);
	for (f.i = 0; f.i < f.n; f.i++) {
		REQUIRE(store_write(s, t_flip, &f) == 0);
		CHECKF(store_read(s, verify_txn, &res) == P8V_ERR_INTEGRITY &&
		    (res.bad == 5 || res.bad == 6), "byte %zu: bad at %llu",
		    f.i, (unsigned long long)res.bad);
	}
	REQUIRE(store_write(s, restore5, &f) == 0);
	CHECK_OK(store_read(s, verify_txn, &res));
	free(f.orig);
	store_close(s);
	tu_rmtree(d);
	free(d);
}

int
main(void)
{
	REQUIRE(secmem_init() == 0);
	test_append_and_walk();
	test_tamper();
	test_every_byte();
	return check_finish();
}
