/*
 * test_store_records.c: key records. Identifiers refused; every field
 * survives a round trip; strict decoding; tampering with the stored bytes
 * (every byte of a value, swapped values, moved values, changed clear
 * metadata, a transplanted envelope) always fails to open; re-sealing on a
 * metadata change; listing; and the bytes of a real key never reach the
 * state directory.
 */
#include "store/records.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "crypto/envelope.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "common/ids.h"
#include "store/masterkeys.h"
#include "tests/check.h"
#include "tests/test_store_util.h"
#include "tests/testutil.h"

#define APP "com.example.push"

static char *dir;
static struct store *store;
static struct master_keyring *ring;     /* key 1 */
static struct master_keyring *ring12;   /* keys 1 and 2, primary 2 */
static struct master_keyring *ring3;    /* key 3 only */

/* ---- identifiers ---- */

struct id_case {
	const char *s;
	int app, key_id, team_id; /* expected results */
};

static const struct id_case id_cases[] = {
	{ "com.example.app", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "A", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "a_b-c.d", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "ABCDE12345", 0, 0, 0 },
	{ "0123456789", 0, 0, 0 },
	{ "", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "a/b", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "a b", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "..", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ ".", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "caf\xc3\xa9", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "\xd0\x90" "pp", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "a\tb", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "a\nb", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "a:b", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "a\\b", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "ABCDE1234", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },   /* 9 */
	{ "ABCDE123456", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID }, /* 11 */
	{ "abcde12345", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "ABCDe12345", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "ABCDE-1234", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "ABCDE.1234", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "ABCDE 1234", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "ABCDE_1234", 0, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
	{ "ABCD\xc3\x89" "1234", P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_BAD_TEAM_ID },
};

static void
test_ids(void)
{
	char app64[IDS_APP_MAX + 2];
	size_t i;

	for (i = 0; i < sizeof(id_cases) / sizeof(id_cases[0]); i++) {
		const struct id_case *c = &id_cases[i];
		CHECKF(ids_app_valid(c->s) == c->app, "app case %zu", i);
		CHECKF(ids_key_id_valid(c->s) == c->key_id, "key case %zu", i);
		CHECKF(ids_team_id_valid(c->s) == c->team_id, "team case %zu", i);
	}
	CHECK_ERR(ids_app_valid(NULL), P8V_ERR_BAD_APP_ID);
	CHECK_ERR(ids_key_id_valid(NULL), P8V_ERR_BAD_KEY_ID);
	CHECK_ERR(ids_team_id_valid(NULL), P8V_ERR_BAD_TEAM_ID);
	memset(app64, 'a', sizeof(app64));
	app64[IDS_APP_MAX] = '\0';
	CHECK_OK(ids_app_valid(app64));
	app64[IDS_APP_MAX] = 'a';
	app64[IDS_APP_MAX + 1] = '\0';
	CHECK_ERR(ids_app_valid(app64), P8V_ERR_BAD_APP_ID);
}

/* ---- names ---- */

static void
test_names(void)
{
	static const struct { const char *name; uint32_t bit; } svc[] = {
		{ "apns", KEY_SERVICE_APNS },
		{ "app_store_connect", KEY_SERVICE_APP_STORE_CONNECT },
		{ "sign_in_with_apple", KEY_SERVICE_SIGN_IN_WITH_APPLE },
		{ "musickit", KEY_SERVICE_MUSICKIT },
		{ "weatherkit", KEY_SERVICE_WEATHERKIT },
		{ "devicecheck", KEY_SERVICE_DEVICECHECK },
		{ "maps", KEY_SERVICE_MAPS },
	};
	enum key_env env;
	enum key_state st;
	uint32_t bit, all = 0;
	size_t i;

	for (i = 0; i < sizeof(svc) / sizeof(svc[0]); i++) {
		CHECK_STR(key_service_name(svc[i].bit), svc[i].name);
		CHECK_OK(key_service_from_name(svc[i].name, &bit));
		CHECK_INT(bit, svc[i].bit);
		all |= bit;
	}
	CHECK_INT(all, KEY_SERVICE_ALL);
	CHECK(key_service_name(0) == NULL);
	CHECK(key_service_name(KEY_SERVICE_APNS | KEY_SERVICE_MAPS) == NULL);
	CHECK_ERR(key_service_from_name("APNS", &bit), P8V_ERR_BAD_FIELD);
	CHECK_ERR(key_service_from_name(NULL, &bit), P8V_ERR_BAD_FIELD);
	CHECK_OK(key_env_from_name("production", &env));
	CHECK_INT(env, KEY_ENV_PRODUCTION);
	CHECK_STR(key_env_name(KEY_ENV_BOTH), "both");
	CHECK_ERR(key_env_from_name("sandbox", &env), P8V_ERR_BAD_FIELD);
	CHECK_OK(key_state_from_name("standby", &st));
	CHECK_INT(st, KEY_STATE_STANDBY);
	CHECK_STR(key_state_name(KEY_STATE_REVOKED), "revoked");
	CHECK(key_state_name((enum key_state)7) == NULL);
}

/* ---- transactions used below ---- */

static int count_cb(const struct key_record *rec, void *arg);

struct one {
	struct key_record *rec;     /* put, or get into */
	const char *app, *key_id;
	const uint8_t *raw;         /* raw value to write */
	size_t raw_len;
	uint8_t *copy;              /* raw value read (malloc'd) */
	size_t copy_len;
};

static int
put_rec(struct store_txn *txn, void *arg)
{
	return key_record_put(txn, ((struct one *)arg)->rec);
}

static int
get_rec(struct store_txn *txn, void *arg)
{
	struct one *o = arg;

	return key_record_get(txn, o->app, o->key_id, o->rec);
}

static int
put_raw(struct store_txn *txn, void *arg)
{
	struct one *o = arg;
	uint8_t k[KEY_RECORD_DB_KEY_MAX];
	size_t klen;
	int r;

	if ((r = key_record_db_key(o->app, o->key_id, k, &klen)) != 0)
		return r;
	return store_put(txn, STORE_DB_KEYS, k, klen, o->raw, o->raw_len, 0);
}

static int
get_raw(struct store_txn *txn, void *arg)
{
	struct one *o = arg;
	uint8_t k[KEY_RECORD_DB_KEY_MAX];
	const uint8_t *v;
	size_t klen, vlen;
	int r;

	if ((r = key_record_db_key(o->app, o->key_id, k, &klen)) != 0 ||
	    (r = store_get(txn, STORE_DB_KEYS, k, klen, &v, &vlen)) != 0)
		return r;
	if ((o->copy = malloc(vlen)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(o->copy, v, vlen);
	o->copy_len = vlen;
	return 0;
}

static int
del_rec(struct store_txn *txn, void *arg)
{
	struct one *o = arg;

	return key_record_delete(txn, o->app, o->key_id);
}

static int
foreach_all(struct store_txn *txn, void *arg)
{
	return key_record_foreach(txn, count_cb, arg);
}

static void
store_record(struct key_record *rec)
{
	struct one o = { .rec = rec };

	REQUIRE(store_write(store, put_rec, &o) == 0);
}

static uint8_t *
read_raw(const char *app, const char *key_id, size_t *len)
{
	struct one o = { .app = app, .key_id = key_id };

	REQUIRE(store_read(store, get_raw, &o) == 0);
	*len = o.copy_len;
	return o.copy;
}

static void
write_raw(const char *app, const char *key_id, const uint8_t *v, size_t len)
{
	struct one o = { .app = app, .key_id = key_id, .raw = v, .raw_len = len };

	REQUIRE(store_write(store, put_raw, &o) == 0);
}

/* Read the record back through the store and open it: 0 or the first error
 * (of key_record_get, then of opening). */
static int
get_and_open(const char *app, const char *key_id,
    const struct master_keyring *r, const uint8_t *payload)
{
	struct key_record rec;
	struct one o = { .rec = &rec, .app = app, .key_id = key_id };
	int err;

	if ((err = store_read(store, get_rec, &o)) != 0)
		return err;
	err = tsu_open(&rec, r, payload);
	key_record_free(&rec);
	return err;
}

/* ---- round trip ---- */

static int
same_record(const struct key_record *a, const struct key_record *b)
{
	size_t i;

	if (strcmp(a->app, b->app) || strcmp(a->key_id, b->key_id) ||
	    strcmp(a->team_id, b->team_id) || a->environment != b->environment ||
	    a->services != b->services || a->n_topics != b->n_topics ||
	    a->state != b->state || strcmp(a->fingerprint, b->fingerprint) ||
	    memcmp(a->public_point, b->public_point, KEY_RECORD_PUBLIC_BYTES) ||
	    a->created_at != b->created_at ||
	    strcmp(a->created_by, b->created_by) ||
	    a->updated_at != b->updated_at || a->version != b->version ||
	    a->envelope_len != b->envelope_len ||
	    (a->envelope_len > 0 &&
	    memcmp(a->envelope, b->envelope, a->envelope_len)))
		return 0;
	for (i = 0; i < a->n_topics; i++)
		if (strcmp(a->topics[i], b->topics[i]))
			return 0;
	return 1;
}

static void
test_round_trip(void)
{
	struct key_record rec, got;
	struct one o = { .rec = &got, .app = APP };
	uint8_t payload[TSU_PAYLOAD_BYTES];
	char kid[IDS_APPLE_ID_LEN + 1];
	unsigned n;

	/* Every combination of environment, state, services, topics. */
	for (n = 0; n < 12; n++) {
		tsu_record(&rec, APP, n);
		if (n == 7) {
			rec.services = KEY_SERVICE_ALL;
			rec.version = (uint64_t)1 << 53;
			rec.created_at = 0;
		}
		tsu_payload(payload, n);
		CHECK_OK(tsu_seal(&rec, master_keyring_primary(ring), payload,
		    sizeof(payload)));
		store_record(&rec);
		tsu_key_id(kid, n);
		o.key_id = kid;
		CHECK_OK(store_read(store, get_rec, &o));
		CHECKF(same_record(&rec, &got), "record %u", n);
		CHECK_OK(tsu_open(&got, ring, payload));
		/* The right payload only: another record's does not match. */
		tsu_payload(payload, n + 1);
		CHECK_ERR(tsu_open(&got, ring, payload), P8V_ERR_INTEGRITY);
		/* A ring without the sealing key. */
		CHECK_ERR(tsu_open(&got, ring3, NULL), P8V_ERR_MASTER_KEY_MISSING);
		key_record_free(&got);
		key_record_free(&rec);
	}
	/* A revoked tombstone has no envelope and round-trips too. */
	tsu_record(&rec, APP, 20);
	rec.state = KEY_STATE_REVOKED;
	store_record(&rec);
	tsu_key_id(kid, 20);
	o.key_id = kid;
	CHECK_OK(store_read(store, get_rec, &o));
	CHECK(same_record(&rec, &got));
	CHECK(got.envelope == NULL && got.envelope_len == 0);
	key_record_free(&got);
	key_record_free(&rec);
	/* Missing. */
	tsu_key_id(kid, 999);
	o.key_id = kid;
	CHECK_ERR(store_read(store, get_rec, &o), P8V_ERR_NOT_FOUND);
	o.key_id = "bad";
	CHECK_ERR(store_read(store, get_rec, &o), P8V_ERR_BAD_KEY_ID);
	o.key_id = kid;
	o.app = "no/app";
	CHECK_ERR(store_read(store, get_rec, &o), P8V_ERR_BAD_APP_ID);
}

static int
count_cb(const struct key_record *rec, void *arg)
{
	(void)rec;
	(*(unsigned *)arg)++;
	return 0;
}

struct list_args {
	const char *app;
	unsigned n;
};

static int
list_txn(struct store_txn *txn, void *arg)
{
	struct list_args *l = arg;

	return key_record_list(txn, l->app, count_cb, &l->n);
}

/* How many records key_record_list finds for app (-1 on error). */
static int
count_app(const char *app)
{
	struct list_args l = { app, 0 };

	return store_read(store, list_txn, &l) == 0 ? (int)l.n : -1;
}

/* ---- key_record_check: what put refuses ---- */

struct bad_case {
	const char *what;
	void (*spoil)(struct key_record *);
	int want;
};

static void sp_app(struct key_record *r) { strcpy(r->app, "a b"); }
static void sp_kid(struct key_record *r) { strcpy(r->key_id, "abcde12345"); }
static void sp_team(struct key_record *r) { strcpy(r->team_id, "TEAM"); }
static void sp_env(struct key_record *r) { r->environment = (enum key_env)3; }
static void sp_state(struct key_record *r) { r->state = (enum key_state)-1; }
static void sp_svc0(struct key_record *r) { r->services = 0; }
static void sp_svcx(struct key_record *r) { r->services |= 0x80; }
static void sp_topic(struct key_record *r) { r->topics[0][3] = '/'; }
static void sp_topic0(struct key_record *r) { r->topics[0][0] = '\0'; }
static void sp_dup(struct key_record *r)
{
	const char *t[] = { "a.b", "a.b" };
	/* set_topics refuses nothing about duplicates; check does. */
	REQUIRE(key_record_set_topics(r, t, 2) == 0);
}
static void sp_fp(struct key_record *r) { r->fingerprint[5] = 'A'; }
static void sp_fplen(struct key_record *r) { r->fingerprint[63] = '\0'; }
static void sp_point(struct key_record *r) { r->public_point[0] = 0x02; }
static void sp_by(struct key_record *r) { strcpy(r->created_by, "x y"); }
static void sp_neg(struct key_record *r) { r->created_at = -1; }
static void sp_v0(struct key_record *r) { r->version = 0; }
static void sp_vbig(struct key_record *r) { r->version = ((uint64_t)1 << 53) + 1; }
static void sp_noenv(struct key_record *r) { key_record_drop_envelope(r); }
static void sp_len(struct key_record *r) { r->envelope_len = 0; }

static const struct bad_case bad_cases[] = {
	{ "app", sp_app, P8V_ERR_BAD_APP_ID },
	{ "key id", sp_kid, P8V_ERR_BAD_KEY_ID },
	{ "team id", sp_team, P8V_ERR_BAD_TEAM_ID },
	{ "environment", sp_env, P8V_ERR_BAD_FIELD },
	{ "state", sp_state, P8V_ERR_BAD_FIELD },
	{ "no service", sp_svc0, P8V_ERR_BAD_FIELD },
	{ "unknown service", sp_svcx, P8V_ERR_BAD_FIELD },
	{ "topic char", sp_topic, P8V_ERR_BAD_FIELD },
	{ "empty topic", sp_topic0, P8V_ERR_BAD_FIELD },
	{ "duplicate topic", sp_dup, P8V_ERR_BAD_FIELD },
	{ "fingerprint case", sp_fp, P8V_ERR_BAD_FIELD },
	{ "fingerprint length", sp_fplen, P8V_ERR_BAD_FIELD },
	{ "point", sp_point, P8V_ERR_BAD_FIELD },
	{ "created_by", sp_by, P8V_ERR_BAD_FIELD },
	{ "negative time", sp_neg, P8V_ERR_BAD_FIELD },
	{ "version 0", sp_v0, P8V_ERR_BAD_FIELD },
	{ "version > 2^53", sp_vbig, P8V_ERR_BAD_FIELD },
	{ "active without envelope", sp_noenv, P8V_ERR_BAD_FIELD },
	{ "envelope length 0", sp_len, P8V_ERR_BAD_FIELD },
};

static void
test_check(void)
{
	struct key_record rec;
	struct one o = { .rec = &rec };
	uint8_t payload[TSU_PAYLOAD_BYTES];
	char *many[KEY_RECORD_MAX_TOPICS + 1], longt[KEY_RECORD_TOPIC_MAX + 2];
	size_t i;

	tsu_payload(payload, 0);
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		tsu_record(&rec, "check.app", (unsigned)i);
		REQUIRE(tsu_seal(&rec, master_keyring_primary(ring), payload,
		    sizeof(payload)) == 0);
		CHECKF(key_record_check(&rec) == 0, "%s: base", bad_cases[i].what);
		bad_cases[i].spoil(&rec);
		CHECKF(key_record_check(&rec) == bad_cases[i].want, "%s",
		    bad_cases[i].what);
		CHECKF(store_write(store, put_rec, &o) == bad_cases[i].want,
		    "%s: put", bad_cases[i].what);
		if (bad_cases[i].spoil == sp_len)
			rec.envelope_len = 1; /* so that free frees it */
		key_record_free(&rec);
	}
	/* Nothing of it was stored. */
	CHECK_INT(count_app("check.app"), 0);
	/* Topic limits through key_record_set_topics. */
	tsu_record(&rec, "check.app", 0);
	for (i = 0; i <= KEY_RECORD_MAX_TOPICS; i++) {
		REQUIRE((many[i] = malloc(16)) != NULL);
		snprintf(many[i], 16, "t%zu", i);
	}
	CHECK_OK(key_record_set_topics(&rec, (const char *const *)many,
	    KEY_RECORD_MAX_TOPICS));
	CHECK_INT(rec.n_topics, KEY_RECORD_MAX_TOPICS);
	CHECK_ERR(key_record_set_topics(&rec, (const char *const *)many,
	    KEY_RECORD_MAX_TOPICS + 1), P8V_ERR_BAD_FIELD);
	CHECK_INT(rec.n_topics, KEY_RECORD_MAX_TOPICS); /* unchanged */
	memset(longt, 'x', sizeof(longt));
	longt[KEY_RECORD_TOPIC_MAX] = '\0';
	many[0][0] = '\0';
	{
		const char *t1[] = { longt };
		CHECK_OK(key_record_set_topics(&rec, t1, 1));
		longt[KEY_RECORD_TOPIC_MAX] = 'x';
		longt[KEY_RECORD_TOPIC_MAX + 1] = '\0';
		CHECK_ERR(key_record_set_topics(&rec, t1, 1), P8V_ERR_BAD_FIELD);
	}
	for (i = 0; i <= KEY_RECORD_MAX_TOPICS; i++)
		free(many[i]);
	key_record_free(&rec);
}

/* ---- tampering ---- */

/* Decode value under (app, key_id) and open it: 0 or the first error. */
static int
decode_and_open(const char *app, const char *key_id, const uint8_t *v,
    size_t vlen, const uint8_t *payload)
{
	uint8_t k[KEY_RECORD_DB_KEY_MAX];
	struct key_record rec;
	size_t klen;
	int r;

	REQUIRE(key_record_db_key(app, key_id, k, &klen) == 0);
	if ((r = key_record_decode(k, klen, v, vlen, &rec)) != 0)
		return r;
	r = tsu_open(&rec, ring12, payload);
	key_record_free(&rec);
	return r;
}

static void
test_tamper_every_byte(void)
{
	struct key_record rec;
	uint8_t payload[TSU_PAYLOAD_BYTES], *orig, *v;
	size_t vlen, i, mk_lo, mk_hi;
	unsigned bit, via_store = 0;
	int r, want;

	tsu_record(&rec, "tamper.app", 1);
	tsu_payload(payload, 1);
	REQUIRE(tsu_seal(&rec, master_keyring_primary(ring12), payload,
	    sizeof(payload)) == 0);
	store_record(&rec);
	orig = read_raw(rec.app, rec.key_id, &vlen);
	CHECK_OK(decode_and_open(rec.app, rec.key_id, orig, vlen, payload));
	/* Where the envelope's master key id lies in the value. */
	REQUIRE(vlen > 5 + rec.envelope_len);
	mk_lo = vlen - rec.envelope_len + 1;
	mk_hi = mk_lo + MASTER_KEY_ID_BYTES;
	REQUIRE((v = malloc(vlen + 1)) != NULL);
	for (i = 0; i < vlen; i++) {
		want = i >= mk_lo && i < mk_hi ? P8V_ERR_MASTER_KEY_MISSING :
		    P8V_ERR_INTEGRITY;
		/* Every bit of every byte, decoded and opened in memory. */
		for (bit = 0; bit < 8; bit++) {
			memcpy(v, orig, vlen);
			v[i] ^= (uint8_t)(1u << bit);
			r = decode_and_open(rec.app, rec.key_id, v, vlen, payload);
			CHECKF(r == want, "byte %zu bit %u: %s", i, bit,
			    p8v_errname(r));
		}
		/* One bit of every byte, written to the store and read back
		 * through key_record_get. */
		memcpy(v, orig, vlen);
		v[i] ^= (uint8_t)(1u << (i % 8));
		write_raw(rec.app, rec.key_id, v, vlen);
		r = get_and_open(rec.app, rec.key_id, ring12, payload);
		CHECKF(r == want, "stored byte %zu: %s", i, p8v_errname(r));
		via_store++;
	}
	CHECK_INT(via_store, vlen);
	/* Every truncation, and one byte more. */
	for (i = 0; i < vlen; i++)
		CHECKF(decode_and_open(rec.app, rec.key_id, orig, i, payload) ==
		    P8V_ERR_INTEGRITY, "truncated to %zu", i);
	memcpy(v, orig, vlen);
	v[vlen] = 0;
	CHECK_ERR(decode_and_open(rec.app, rec.key_id, v, vlen + 1, payload),
	    P8V_ERR_INTEGRITY);
	/* Put back, it opens again. */
	write_raw(rec.app, rec.key_id, orig, vlen);
	CHECK_OK(get_and_open(rec.app, rec.key_id, ring12, payload));
	free(v);
	free(orig);
	key_record_free(&rec);
}

static void
test_swap_and_move(void)
{
	struct key_record a, b, got;
	struct one o = { .rec = &got };
	uint8_t pa[TSU_PAYLOAD_BYTES], pb[TSU_PAYLOAD_BYTES], *va, *vb, *vt;
	size_t la, lb, lt;
	char kid[IDS_APPLE_ID_LEN + 1];

	tsu_record(&a, "swap.app", 2);
	tsu_record(&b, "swap.app", 3);
	tsu_payload(pa, 2);
	tsu_payload(pb, 3);
	REQUIRE(tsu_seal(&a, master_keyring_primary(ring12), pa, 32) == 0);
	REQUIRE(tsu_seal(&b, master_keyring_primary(ring12), pb, 32) == 0);
	store_record(&a);
	store_record(&b);
	va = read_raw(a.app, a.key_id, &la);
	vb = read_raw(b.app, b.key_id, &lb);

	/* Swapped values. */
	write_raw(a.app, a.key_id, vb, lb);
	write_raw(b.app, b.key_id, va, la);
	CHECK_ERR(get_and_open(a.app, a.key_id, ring12, pb), P8V_ERR_INTEGRITY);
	CHECK_ERR(get_and_open(b.app, b.key_id, ring12, pa), P8V_ERR_INTEGRITY);
	CHECK_ERR(get_and_open(a.app, a.key_id, ring12, pa), P8V_ERR_INTEGRITY);
	write_raw(a.app, a.key_id, va, la);
	write_raw(b.app, b.key_id, vb, lb);
	CHECK_OK(get_and_open(a.app, a.key_id, ring12, pa));
	CHECK_OK(get_and_open(b.app, b.key_id, ring12, pb));

	/* Moved (copied) under another app, and under another Key ID. */
	write_raw("other.app", a.key_id, va, la);
	CHECK_ERR(get_and_open("other.app", a.key_id, ring12, pa),
	    P8V_ERR_INTEGRITY);
	tsu_key_id(kid, 77);
	write_raw(a.app, kid, va, la);
	CHECK_ERR(get_and_open(a.app, kid, ring12, pa), P8V_ERR_INTEGRITY);
	/* A full walk stops at such a record; without them it completes. */
	{
		struct one d1 = { .app = "other.app", .key_id = a.key_id };
		struct one d2 = { .app = a.app, .key_id = kid };
		unsigned n = 0;

		CHECK_ERR(store_read(store, foreach_all, &n), P8V_ERR_INTEGRITY);
		CHECK_OK(store_write(store, del_rec, &d1));
		CHECK_OK(store_write(store, del_rec, &d2));
		CHECK_ERR(store_write(store, del_rec, &d2), P8V_ERR_NOT_FOUND);
		n = 0;
		CHECK_OK(store_read(store, foreach_all, &n));
		CHECK(n > 0);
	}

	/* B's envelope under A's (valid, canonical) metadata: decodes, but the
	 * AAD does not match. */
	free(a.envelope);
	REQUIRE((a.envelope = malloc(b.envelope_len)) != NULL);
	memcpy(a.envelope, b.envelope, b.envelope_len);
	a.envelope_len = b.envelope_len;
	REQUIRE(key_record_encode(&a, &vt, &lt) == 0);
	write_raw(a.app, a.key_id, vt, lt);
	o.app = a.app;
	o.key_id = a.key_id;
	CHECK_OK(store_read(store, get_rec, &o));
	CHECK_ERR(tsu_open(&got, ring12, pb), P8V_ERR_INTEGRITY);
	CHECK_ERR(tsu_open(&got, ring12, pa), P8V_ERR_INTEGRITY);
	key_record_free(&got);
	write_raw(a.app, a.key_id, va, la);
	CHECK_OK(get_and_open(a.app, a.key_id, ring12, pa));
	free(vt);
	free(va);
	free(vb);
	key_record_free(&a);
	key_record_free(&b);
}

/* Changes to the clear metadata that keep the record valid. */
static void ch_state(struct key_record *r) { r->state = KEY_STATE_ACTIVE; }
static void ch_team(struct key_record *r) { strcpy(r->team_id, "EVILTEAM00"); }
static void ch_env(struct key_record *r)
{
	r->environment = (enum key_env)((r->environment + 1) % 3);
}
static void ch_svc(struct key_record *r) { r->services |= KEY_SERVICE_MUSICKIT; }
static void ch_topic(struct key_record *r)
{
	const char *t[] = { "com.evil.app" };
	REQUIRE(key_record_set_topics(r, t, 1) == 0);
}
static void ch_fp(struct key_record *r)
{
	r->fingerprint[0] = r->fingerprint[0] == '0' ? '1' : '0';
}
static void ch_point(struct key_record *r) { r->public_point[64] ^= 1; }
static void ch_created(struct key_record *r) { r->created_at++; }
static void ch_by(struct key_record *r) { strcpy(r->created_by, "attacker"); }
static void ch_updated(struct key_record *r) { r->updated_at--; }
static void ch_version(struct key_record *r) { r->version++; }

static const struct {
	const char *what;
	void (*change)(struct key_record *);
} meta_changes[] = {
	{ "state standby->active", ch_state },
	{ "team id", ch_team },
	{ "environment", ch_env },
	{ "services", ch_svc },
	{ "topics", ch_topic },
	{ "fingerprint", ch_fp },
	{ "public point", ch_point },
	{ "created_at", ch_created },
	{ "created_by", ch_by },
	{ "updated_at", ch_updated },
	{ "version", ch_version },
};

static void
test_metadata_changes(void)
{
	struct key_record rec, got;
	struct one o = { .rec = &got };
	uint8_t payload[TSU_PAYLOAD_BYTES], *orig, *v;
	size_t olen, vlen, i;

	tsu_record(&rec, "meta.app", 5); /* 5 % 4 == 1: standby */
	REQUIRE(rec.state == KEY_STATE_STANDBY);
	tsu_payload(payload, 5);
	REQUIRE(tsu_seal(&rec, master_keyring_primary(ring12), payload, 32) == 0);
	store_record(&rec);
	orig = read_raw(rec.app, rec.key_id, &olen);
	o.app = rec.app;
	o.key_id = rec.key_id;
	for (i = 0; i < sizeof(meta_changes) / sizeof(meta_changes[0]); i++) {
		REQUIRE(store_read(store, get_rec, &o) == 0);
		meta_changes[i].change(&got);
		REQUIRE(key_record_encode(&got, &v, &vlen) == 0);
		key_record_free(&got);
		write_raw(rec.app, rec.key_id, v, vlen);
		free(v);
		/* It decodes (the change is well-formed) but does not open. */
		CHECKF(store_read(store, get_rec, &o) == 0, "%s: get",
		    meta_changes[i].what);
		CHECKF(tsu_open(&got, ring12, payload) == P8V_ERR_INTEGRITY,
		    "%s", meta_changes[i].what);
		key_record_free(&got);
		write_raw(rec.app, rec.key_id, orig, olen);
		CHECKF(get_and_open(rec.app, rec.key_id, ring12, payload) == 0,
		    "%s: restored", meta_changes[i].what);
	}
	free(orig);
	key_record_free(&rec);
}

/* Hand-made values that must not decode. */
static void
test_strict_decode(void)
{
	static const char *const bad_json[] = {
		"",
		"{}",
		"[]",
		"null",
		/* whitespace: not canonical */
		"{ }",
		/* valid JSON but unknown members or missing ones */
		"{\"app\":\"strict.app\"}",
	};
	struct key_record rec, got;
	uint8_t k[KEY_RECORD_DB_KEY_MAX], *v, *w;
	size_t klen, vlen, i, mlen;
	char *meta;

	tsu_record(&rec, "strict.app", 9);
	REQUIRE(tsu_seal(&rec, master_keyring_primary(ring12),
	    (const uint8_t *)"0123456789abcdef0123456789abcdef", 32) == 0);
	REQUIRE(key_record_db_key(rec.app, rec.key_id, k, &klen) == 0);
	REQUIRE(key_record_encode(&rec, &v, &vlen) == 0);
	CHECK_OK(key_record_decode(k, klen, v, vlen, &got));
	key_record_free(&got);
	mlen = ((size_t)v[1] << 24) | ((size_t)v[2] << 16) |
	    ((size_t)v[3] << 8) | v[4];
	CHECK_INT(vlen, 5 + mlen + rec.envelope_len);
	/* Format version 2. */
	v[0] = 2;
	CHECK_ERR(key_record_decode(k, klen, v, vlen, &got), P8V_ERR_INTEGRITY);
	v[0] = 1;
	/* Length overruns. */
	v[1] = 0xff;
	CHECK_ERR(key_record_decode(k, klen, v, vlen, &got), P8V_ERR_INTEGRITY);
	v[1] = 0;
	/* Non-canonical: the same object with a space, and with members in
	 * another order. */
	REQUIRE((meta = malloc(mlen + 2)) != NULL);
	memcpy(meta, v + 5, mlen);
	meta[mlen] = '\0';
	{
		uint8_t *x = malloc(vlen + 1);
		REQUIRE(x != NULL);
		x[0] = 1;
		x[1] = (uint8_t)((mlen + 1) >> 24);
		x[2] = (uint8_t)((mlen + 1) >> 16);
		x[3] = (uint8_t)((mlen + 1) >> 8);
		x[4] = (uint8_t)(mlen + 1);
		x[5] = '{';
		x[6] = ' ';
		memcpy(x + 7, v + 6, vlen - 6);
		CHECK_ERR(key_record_decode(k, klen, x, vlen + 1, &got),
		    P8V_ERR_INTEGRITY);
		free(x);
	}
	free(meta);
	for (i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
		size_t n = strlen(bad_json[i]);
		REQUIRE((w = malloc(5 + n + rec.envelope_len)) != NULL);
		w[0] = 1;
		w[1] = 0;
		w[2] = 0;
		w[3] = (uint8_t)(n >> 8);
		w[4] = (uint8_t)n;
		memcpy(w + 5, bad_json[i], n);
		memcpy(w + 5 + n, rec.envelope, rec.envelope_len);
		CHECKF(key_record_decode(k, klen, w, 5 + n + rec.envelope_len,
		    &got) == P8V_ERR_INTEGRITY, "json case %zu", i);
		free(w);
	}
	/* An active record without its envelope. */
	CHECK_ERR(key_record_decode(k, klen, v, 5 + mlen, &got),
	    P8V_ERR_INTEGRITY);
	free(v);
	key_record_free(&rec);
}

/* ---- re-sealing on a metadata change ---- */

static int
mut_activate(struct key_record *rec, void *arg)
{
	(void)arg;
	rec->state = KEY_STATE_ACTIVE;
	return 0;
}

static int
mut_rename(struct key_record *rec, void *arg)
{
	(void)arg;
	rec->key_id[0] = 'Z';
	return 0;
}

static int
mut_version(struct key_record *rec, void *arg)
{
	(void)arg;
	rec->version += 10;
	return 0;
}

static int
mut_fail(struct key_record *rec, void *arg)
{
	(void)arg;
	rec->state = KEY_STATE_ACTIVE;
	return P8V_ERR_KEY_REVOKED;
}

static int
mut_revoke(struct key_record *rec, void *arg)
{
	(void)arg;
	rec->state = KEY_STATE_REVOKED;
	key_record_drop_envelope(rec);
	return 0;
}

static int
mut_bad_team(struct key_record *rec, void *arg)
{
	(void)arg;
	strcpy(rec->team_id, "lower");
	return 0;
}

struct upd {
	const struct master_keyring *ring;
	const char *app, *key_id;
	int (*mutate)(struct key_record *, void *);
	struct key_record *out;
};

/*
 * The re-seal the vault hands key_record_update (there through the
 * keeper: vault_reseal), done here with the ring: open old under its AAD,
 * seal under rec's with the ring's primary key.
 */
static int
ring_reseal(const struct key_record *old, struct key_record *rec, void *arg)
{
	const struct master_keyring *keys = arg;
	const struct master_key *mk;
	uint8_t *old_aad = NULL, *new_aad = NULL, *pt = NULL, *env = NULL;
	size_t old_len, new_len, pt_len, env_len;
	int r;

	if ((mk = master_keyring_primary(keys)) == NULL)
		return P8V_ERR_NO_MASTER_KEY;
	if ((r = key_record_aad(old, &old_aad, &old_len)) != 0 ||
	    (r = key_record_aad(rec, &new_aad, &new_len)) != 0 ||
	    (r = envelope_open(keys, old_aad, old_len, old->envelope,
	    old->envelope_len, &pt, &pt_len)) != 0 ||
	    (r = envelope_seal(mk, new_aad, new_len, pt, pt_len, &env,
	    &env_len)) != 0)
		goto out;
	rec->envelope = env;
	rec->envelope_len = env_len;
	env = NULL;
 out:
	secmem_free(pt);
	free(old_aad);
	free(new_aad);
	free(env);
	return r;
}

static int
upd_txn(struct store_txn *txn, void *arg)
{
	struct upd *u = arg;

	return key_record_update(txn, ring_reseal, (void *)u->ring, u->app,
	    u->key_id, 1800000000, u->mutate, NULL, u->out);
}

static void
test_update(void)
{
	struct key_record rec, got, out;
	struct one o = { .rec = &got };
	struct upd u = { .ring = ring12, .out = &out };
	uint8_t payload[TSU_PAYLOAD_BYTES], id[MASTER_KEY_ID_BYTES];
	uint8_t *before, *after;
	size_t blen, alen;
	char missing[IDS_APPLE_ID_LEN + 1];

	/* Sealed under key 1; the update re-seals under the primary, key 2. */
	tsu_record(&rec, "update.app", 1);
	tsu_payload(payload, 1);
	REQUIRE(tsu_seal(&rec, master_keyring_primary(ring), payload, 32) == 0);
	store_record(&rec);
	u.app = o.app = rec.app;
	u.key_id = o.key_id = rec.key_id;
	before = read_raw(rec.app, rec.key_id, &blen);

	/* Refused changes leave the stored bytes alone. */
	u.mutate = mut_rename;
	CHECK_ERR(store_write(store, upd_txn, &u), P8V_ERR_INVALID_ARGUMENT);
	u.mutate = mut_version;
	CHECK_ERR(store_write(store, upd_txn, &u), P8V_ERR_INVALID_ARGUMENT);
	u.mutate = mut_fail;
	CHECK_ERR(store_write(store, upd_txn, &u), P8V_ERR_KEY_REVOKED);
	u.mutate = mut_bad_team;
	CHECK_ERR(store_write(store, upd_txn, &u), P8V_ERR_BAD_TEAM_ID);
	u.mutate = mut_activate;
	u.ring = ring3; /* cannot open the old envelope */
	CHECK_ERR(store_write(store, upd_txn, &u), P8V_ERR_MASTER_KEY_MISSING);
	u.ring = ring12;
	after = read_raw(rec.app, rec.key_id, &alen);
	CHECK(alen == blen && memcmp(after, before, blen) == 0);
	free(after);
	tsu_key_id(missing, 4242);
	u.key_id = missing;
	CHECK_ERR(store_write(store, upd_txn, &u), P8V_ERR_NOT_FOUND);
	u.key_id = rec.key_id;

	/* Activate: new version, new time, re-sealed, opens. */
	CHECK_OK(store_write(store, upd_txn, &u));
	CHECK_INT(out.version, rec.version + 1);
	CHECK_INT(out.updated_at, 1800000000);
	CHECK_INT(out.state, KEY_STATE_ACTIVE);
	key_record_free(&out);
	CHECK_OK(store_read(store, get_rec, &o));
	CHECK_INT(got.state, KEY_STATE_ACTIVE);
	CHECK_INT(got.version, rec.version + 1);
	CHECK_STR(got.team_id, rec.team_id);
	CHECK_OK(tsu_open(&got, ring12, payload));
	CHECK_OK(envelope_master_key_id(got.envelope, got.envelope_len, id));
	CHECK_MEM(id, master_key_id(master_keyring_get(ring12, 1)),
	    MASTER_KEY_ID_BYTES);
	CHECK_ERR(tsu_open(&got, ring, payload), P8V_ERR_MASTER_KEY_MISSING);
	/* The old envelope does not open under the new metadata. */
	free(got.envelope);
	got.envelope = malloc(rec.envelope_len);
	REQUIRE(got.envelope != NULL);
	memcpy(got.envelope, rec.envelope, rec.envelope_len);
	got.envelope_len = rec.envelope_len;
	CHECK_ERR(tsu_open(&got, ring12, payload), P8V_ERR_INTEGRITY);
	/* The re-seal's own refusals (no master key, a tombstone, a change
	 * of identity) are the keeper's: tests/test_keeper.c. */
	key_record_free(&got);

	/* Revoke to a tombstone: the sealed key is gone. */
	u.mutate = mut_revoke;
	u.out = NULL;
	CHECK_OK(store_write(store, upd_txn, &u));
	CHECK_OK(store_read(store, get_rec, &o));
	CHECK_INT(got.state, KEY_STATE_REVOKED);
	CHECK(got.envelope == NULL);
	CHECK_INT(got.version, rec.version + 2);
	key_record_free(&got);
	/* A tombstone does not come back to life: no envelope, not revoked. */
	u.mutate = mut_activate;
	CHECK_ERR(store_write(store, upd_txn, &u), P8V_ERR_BAD_FIELD);
	free(before);
	key_record_free(&rec);
}

/* ---- listing ---- */

static int
stop_after_two(const struct key_record *rec, void *arg)
{
	(void)rec;
	return ++*(unsigned *)arg == 2 ? STORE_SCAN_STOP : 0;
}

static int
fail_cb(const struct key_record *rec, void *arg)
{
	(void)rec;
	(void)arg;
	return P8V_ERR_BUSY;
}

struct order {
	char last[IDS_APPLE_ID_LEN + 1];
	int sorted;
	unsigned n;
};

static int
order_cb(const struct key_record *rec, void *arg)
{
	struct order *o = arg;

	if (strcmp(rec->app, "list.app") != 0 ||
	    (o->n > 0 && strcmp(rec->key_id, o->last) <= 0))
		o->sorted = 0;
	memcpy(o->last, rec->key_id, sizeof(o->last));
	o->n++;
	return 0;
}

static int
list_misc(struct store_txn *txn, void *arg)
{
	struct order ord = { .sorted = 1 };
	uint64_t total;
	unsigned n = 0, all = 0;
	int r;

	(void)arg;
	CHECK_OK(key_record_list(txn, "list.app", order_cb, &ord));
	CHECK_INT(ord.n, 5);
	CHECK(ord.sorted);
	CHECK_OK(key_record_list(txn, "list.app", stop_after_two, &n));
	CHECK_INT(n, 2);
	CHECK_ERR(key_record_list(txn, "list.app", fail_cb, NULL), P8V_ERR_BUSY);
	CHECK_ERR(key_record_list(txn, "bad app", count_cb, &n),
	    P8V_ERR_BAD_APP_ID);
	CHECK_OK(key_record_count(txn, &total));
	if ((r = key_record_foreach(txn, count_cb, &all)) != 0)
		return r;
	CHECK_INT(all, total);
	return 0;
}

static void
test_list(void)
{
	static const struct { const char *app; unsigned n; } apps[] = {
		{ "list.app", 5 }, { "list.ap", 1 }, { "list.app2", 2 },
		{ "list.app-", 1 },
	};
	struct key_record rec;
	uint8_t payload[TSU_PAYLOAD_BYTES];
	size_t i;
	unsigned j;

	tsu_payload(payload, 0);
	for (i = 0; i < sizeof(apps) / sizeof(apps[0]); i++) {
		for (j = 0; j < apps[i].n; j++) {
			/* Out of order on purpose: the listing sorts. */
			tsu_record(&rec, apps[i].app, (j * 7) % 5 + 100);
			REQUIRE(tsu_seal(&rec, master_keyring_primary(ring),
			    payload, 32) == 0);
			store_record(&rec);
			key_record_free(&rec);
		}
	}
	for (i = 0; i < sizeof(apps) / sizeof(apps[0]); i++)
		CHECKF(count_app(apps[i].app) == (int)apps[i].n, "%s",
		    apps[i].app);
	CHECK_INT(count_app("list"), 0);
	CHECK_INT(count_app("nothing"), 0);
	CHECK_OK(store_read(store, list_misc, NULL));
}

/* ---- master-key usage ---- */

struct usage_args {
	struct store_master_key_usage *u;
	size_t n;
};

static int
usage_txn(struct store_txn *txn, void *arg)
{
	struct usage_args *a = arg;

	return store_master_key_usage(txn, &a->u, &a->n);
}

static void
test_usage(void)
{
	static const unsigned k1[] = { 1 }, k2[] = { 2 }, k3[] = { 3 };
	static const unsigned k12[] = { 1, 2 };
	struct master_keyring *r1 = tsu_ring(k1, 1), *r2 = tsu_ring(k2, 1);
	struct master_keyring *r3 = tsu_ring(k3, 1), *r12 = tsu_ring(k12, 2);
	struct store *saved = store;
	struct usage_args a = { 0 };
	struct key_record rec;
	uint8_t payload[TSU_PAYLOAD_BYTES];
	char *d = tu_mkdtemp("p8v-usage");
	const struct master_keyring *by[] = { r1, r1, r1, r2, r2, r3, NULL };
	size_t i, seen = 0;

	REQUIRE(d != NULL);
	store = tsu_store(d, 0);
	CHECK_OK(tsu_keys_check(store, r12));
	tsu_payload(payload, 0);
	for (i = 0; i < sizeof(by) / sizeof(by[0]); i++) {
		tsu_record(&rec, "usage.app", (unsigned)i);
		if (by[i] == NULL)
			rec.state = KEY_STATE_REVOKED; /* tombstone */
		else
			REQUIRE(tsu_seal(&rec, master_keyring_primary(by[i]),
			    payload, 32) == 0);
		store_record(&rec);
		key_record_free(&rec);
	}
	CHECK_OK(store_read(store, usage_txn, &a));
	CHECK_INT(a.n, 3);
	for (i = 0; i < a.n; i++) {
		const struct store_master_key_usage *u = &a.u[i];
		if (i > 0)
			CHECK(memcmp(a.u[i - 1].id, u->id, MASTER_KEY_ID_BYTES) < 0);
		if (memcmp(u->id, master_key_id(master_keyring_get(r1, 0)),
		    MASTER_KEY_ID_BYTES) == 0) {
			CHECK_INT(u->records, 3);
			CHECK_INT(u->recorded, 1);
			CHECK(u->first_seen > 0);
			CHECK_STR(u->id_hex,
			    master_key_id_hex(master_keyring_get(r1, 0)));
			seen |= 1;
		} else if (memcmp(u->id, master_key_id(master_keyring_get(r2,
		    0)), MASTER_KEY_ID_BYTES) == 0) {
			CHECK_INT(u->records, 2);
			CHECK_INT(u->recorded, 1);
			seen |= 2;
		} else if (memcmp(u->id, master_key_id(master_keyring_get(r3,
		    0)), MASTER_KEY_ID_BYTES) == 0) {
			CHECK_INT(u->records, 1);
			CHECK_INT(u->recorded, 0); /* never checked in */
			CHECK_INT(u->first_seen, 0);
			seen |= 4;
		}
	}
	CHECK_INT(seen, 7);
	free(a.u);
	store_close(store);
	store = saved;
	tu_rmtree(d);
	free(d);
	master_keyring_destroy(r1);
	master_keyring_destroy(r2);
	master_keyring_destroy(r3);
	master_keyring_destroy(r12);
}

/* ---- the bytes of a real key never reach the state directory ---- */

struct needle {
	const char *what;
	const uint8_t *bytes;
	size_t len;
	int must_find; /* positive controls: the search does see the files */
	int found;
};

static void
search_dir(const char *d, struct needle *needles, size_t n)
{
	struct dirent *e;
	DIR *dh;
	char path[4096];
	uint8_t *buf;
	size_t len, i;

	REQUIRE((dh = opendir(d)) != NULL);
	while ((e = readdir(dh)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", d, e->d_name);
		REQUIRE(tu_read_file(path, &buf, &len) == 0);
		for (i = 0; i < n; i++)
			if (needles[i].len > 0 &&
			    memmem(buf, len, needles[i].bytes, needles[i].len))
				needles[i].found = 1;
		free(buf);
	}
	closedir(dh);
}

static void
test_no_secret_on_disk(void)
{
	struct store *saved = store;
	struct key_record rec;
	struct upd u = { .ring = ring12, .mutate = mut_activate };
	struct p8_key *key = NULL;
	EVP_PKEY *pkey = NULL;
	BIGNUM *priv = NULL;
	BIO *bio = NULL;
	char *d = tu_mkdtemp("p8v-secret"), *pem_text = NULL, *line, *save;
	char scalar_hex[65], scalar_HEX[65], point_hex[131];
	uint8_t *der = NULL, *scalar, exported[P8_SCALAR_BYTES];
	uint8_t raw_mk[MASTER_KEY_BYTES];
	unsigned char *p;
	struct needle needles[64];
	size_t n = 0, i, pem_len;
	int der_len;
	long blen;
	char *bptr;

	REQUIRE(d != NULL);
	REQUIRE((scalar = secmem_alloc(P8_SCALAR_BYTES)) != NULL);
	/* A real P-256 key, made by OpenSSL, as Apple would hand it out. */
	REQUIRE((pkey = EVP_EC_gen("P-256")) != NULL);
	REQUIRE((bio = BIO_new(BIO_s_mem())) != NULL);
	REQUIRE(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL,
	    NULL) == 1);
	blen = BIO_get_mem_data(bio, &bptr);
	REQUIRE(blen > 0 && (pem_text = malloc((size_t)blen + 1)) != NULL);
	memcpy(pem_text, bptr, (size_t)blen);
	pem_text[blen] = '\0';
	pem_len = (size_t)blen;
	REQUIRE((der_len = i2d_PrivateKey(pkey, NULL)) > 0);
	REQUIRE((der = malloc((size_t)der_len)) != NULL);
	p = der;
	REQUIRE(i2d_PrivateKey(pkey, &p) == der_len);
	REQUIRE(EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &priv));
	REQUIRE(BN_bn2binpad(priv, scalar, P8_SCALAR_BYTES) == P8_SCALAR_BYTES);

	/* Through the real parser, as vault/ will do. */
	REQUIRE(p8_parse((const uint8_t *)pem_text, pem_len, &key) == 0);
	REQUIRE(p8_key_export_scalar(key, exported) == 0);
	CHECK(secmem_equal(exported, scalar, P8_SCALAR_BYTES));
	tsu_record(&rec, "secret.app", 1);
	REQUIRE(p8_key_public_point(key, rec.public_point) == 0);
	REQUIRE(p8_public_fingerprint(rec.public_point, rec.fingerprint) == 0);
	REQUIRE(tsu_seal(&rec, master_keyring_primary(ring12), exported,
	    P8_SCALAR_BYTES) == 0);
	secmem_wipe(exported, sizeof(exported));

	store = tsu_store(d, 0);
	CHECK_OK(tsu_keys_check(store, ring12));
	store_record(&rec);
	/* A re-seal too: old pages of the file hold the older envelope. */
	u.app = rec.app;
	u.key_id = rec.key_id;
	CHECK_OK(store_write(store, upd_txn, &u));
	CHECK_OK(get_and_open(rec.app, rec.key_id, ring12, scalar));
	store_close(store);
	store = saved;

	for (i = 0; i < P8_SCALAR_BYTES; i++) {
		snprintf(scalar_hex + 2 * i, 3, "%02x", scalar[i]);
		snprintf(scalar_HEX + 2 * i, 3, "%02X", scalar[i]);
	}
	for (i = 0; i < KEY_RECORD_PUBLIC_BYTES; i++)
		snprintf(point_hex + 2 * i, 3, "%02x", rec.public_point[i]);
#define NEEDLE(w, b, l, m) do { \
	REQUIRE(n < sizeof(needles) / sizeof(needles[0])); \
	needles[n++] = (struct needle){ (w), (const uint8_t *)(b), (l), (m), 0 }; \
} while (0)
	NEEDLE("PEM text", pem_text, pem_len, 0);
	NEEDLE("DER", der, (size_t)der_len, 0);
	NEEDLE("scalar", scalar, P8_SCALAR_BYTES, 0);
	/* Half the scalar: no partial copy either. */
	NEEDLE("scalar, first half", scalar, P8_SCALAR_BYTES / 2, 0);
	NEEDLE("scalar, second half", scalar + 16, P8_SCALAR_BYTES / 2, 0);
	NEEDLE("scalar hex", scalar_hex, 64, 0);
	NEEDLE("scalar HEX", scalar_HEX, 64, 0);
	tsu_raw_key(raw_mk, 1);
	NEEDLE("master key 1", raw_mk, 16, 0);
	/* Each base64 line of the PEM body. */
	for (line = strtok_r(pem_text, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		if (line[0] != '-' && strlen(line) >= 16)
			NEEDLE("PEM line", line, strlen(line), 0);
	/* Positive controls: what is meant to be there is found. */
	NEEDLE("public point (hex)", point_hex, 130, 1);
	NEEDLE("fingerprint", rec.fingerprint, 64, 1);
	NEEDLE("app id", "secret.app", 10, 1);
	search_dir(d, needles, n);
	for (i = 0; i < n; i++)
		CHECKF(needles[i].found == needles[i].must_find, "%s %s",
		    needles[i].what, needles[i].found ? "found" : "not found");
	/* pem_text was cut by strtok_r; the needles pointing into it were
	 * only used above. */
	secmem_free(scalar);
	p8_key_destroy(key);
	BN_clear_free(priv);
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	OPENSSL_cleanse(der, (size_t)der_len);
	free(der);
	free(pem_text);
	key_record_free(&rec);
	tu_rmtree(d);
	free(d);
}

/* ---- the fingerprint and team indexes ---- */

static int
count_txn(struct store_txn *txn, void *arg)
{
	return key_record_count(txn, arg);
}

static int
idx_sync(struct store_txn *txn, void *arg)
{
	return key_record_index_sync(txn, arg);
}

struct idx_q {
	const char *fp, *team;
	char seen[8][IDS_APP_MAX + 1 + IDS_APPLE_ID_LEN + 1];
	size_t n;
};

static int
idx_seen(const struct key_record *rec, void *arg)
{
	struct idx_q *q = arg;

	if (q->n < 8)
		snprintf(q->seen[q->n], sizeof(q->seen[0]), "%s/%s", rec->app,
		    rec->key_id);
	q->n++;
	return 0;
}

static int
idx_query(struct store_txn *txn, void *arg)
{
	struct idx_q *q = arg;

	q->n = 0;
	return q->fp != NULL ? key_record_by_fingerprint(txn, q->fp, idx_seen,
	    q) : key_record_by_team(txn, q->team, idx_seen, q);
}

static int
idx_entries(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
    void *arg)
{
	(void)k;
	(void)kl;
	(void)v;
	(void)vl;
	(*(size_t *)arg)++;
	return 0;
}

static int
idx_drop(struct store_txn *txn, void *arg)
{
	struct { uint8_t k[8][KEY_IDX_KEY_MAX]; size_t l[8], n; } *d = arg;
	size_t i;
	int r;

	for (i = 0; i < d->n; i++)
		if ((r = store_del(txn, STORE_DB_META, d->k[i], d->l[i])) != 0)
			return r;
	return 0;
}

/* KEY_INDEX_RECORDS set to *arg, or removed when arg is NULL (a vault of
 * a release before it). */
static int
idx_mark_set(struct store_txn *txn, void *arg)
{
	uint8_t v[8];
	int r;

	if (arg == NULL) {
		r = store_del(txn, STORE_DB_META, KEY_INDEX_RECORDS,
		    strlen(KEY_INDEX_RECORDS));
		return r == P8V_ERR_NOT_FOUND ? 0 : r;
	}
	store_put_u64(v, *(uint64_t *)arg);
	return store_put(txn, STORE_DB_META, KEY_INDEX_RECORDS,
	    strlen(KEY_INDEX_RECORDS), v, sizeof(v), 0);
}

static int
idx_mark_get(struct store_txn *txn, void *arg)
{
	const uint8_t *v;
	size_t vlen;
	int r;

	*(uint64_t *)arg = UINT64_MAX;
	if ((r = store_get(txn, STORE_DB_META, KEY_INDEX_RECORDS,
	    strlen(KEY_INDEX_RECORDS), &v, &vlen)) != 0)
		return r;
	if (vlen == 8)
		*(uint64_t *)arg = store_get_u64(v);
	return 0;
}

static int
idx_collect(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl,
    void *arg)
{
	struct { uint8_t k[8][KEY_IDX_KEY_MAX]; size_t l[8], n; } *d = arg;

	(void)v;
	(void)vl;
	if (d->n < 8 && kl <= KEY_IDX_KEY_MAX) {
		memcpy(d->k[d->n], k, kl);
		d->l[d->n++] = kl;
	}
	return 0;
}

struct idx_scan {
	const char *prefix;
	size_t n;
	struct { uint8_t k[8][KEY_IDX_KEY_MAX]; size_t l[8], n; } all;
};

static int
idx_count_txn(struct store_txn *txn, void *arg)
{
	struct idx_scan *s = arg;

	int r;

	s->n = 0;
	s->all.n = 0;
	if ((r = store_scan(txn, STORE_DB_META, s->prefix, strlen(s->prefix),
	    idx_entries, &s->n)) != 0)
		return r;
	return store_scan(txn, STORE_DB_META, s->prefix, strlen(s->prefix),
	    idx_collect, &s->all);
}

static size_t
idx_count(const char *prefix)
{
	struct idx_scan s = { .prefix = prefix };

	REQUIRE(store_read(store, idx_count_txn, &s) == 0);
	return s.n;
}

/*
 * One key in three apps (two under the same ids, one under another Team
 * ID), another key beside it: the fingerprint index lists exactly the
 * copies, the team index exactly the team's records; a record replaced
 * under another fingerprint moves; a deleted one leaves; and a store
 * whose indexes were lost (a vault from before them) gets them back when
 * it is opened.
 */
static void
test_indexes(void)
{
	struct key_record a, b, c, other, moved;
	struct idx_q q;
	char want[3][IDS_APP_MAX + 1 + IDS_APPLE_ID_LEN + 1];
	char dir2_fp[KEY_RECORD_FINGERPRINT_HEX + 1];
	struct idx_scan drop = { .prefix = KEY_FP_INDEX_PREFIX };
	int rebuilt = -1;

	tsu_record(&a, "idx.one", 77700);
	tsu_record(&b, "idx.two", 77700);
	tsu_record(&c, "idx.three", 77700);
	memcpy(a.team_id, "IDXTEAM001", IDS_APPLE_ID_LEN + 1);
	memcpy(b.team_id, "IDXTEAM001", IDS_APPLE_ID_LEN + 1);
	memcpy(c.team_id, "OTHERTEAM1", IDS_APPLE_ID_LEN + 1);
	tsu_record(&other, "idx.one", 77701);
	memcpy(other.team_id, "OTHERTEAM1", IDS_APPLE_ID_LEN + 1);
	REQUIRE(tsu_seal(&a, master_keyring_primary(ring), (const uint8_t *)
	    "0123456789abcdef0123456789abcdef", 32) == 0);
	REQUIRE(tsu_seal(&b, master_keyring_primary(ring), (const uint8_t *)
	    "0123456789abcdef0123456789abcdef", 32) == 0);
	REQUIRE(tsu_seal(&c, master_keyring_primary(ring), (const uint8_t *)
	    "0123456789abcdef0123456789abcdef", 32) == 0);
	REQUIRE(tsu_seal(&other, master_keyring_primary(ring), (const uint8_t *)
	    "0123456789abcdef0123456789abcdef", 32) == 0);
	store_record(&a);
	store_record(&b);
	store_record(&c);
	store_record(&other);
	CHECK(strcmp(a.fingerprint, other.fingerprint) != 0);
	snprintf(want[0], sizeof(want[0]), "idx.one/%s", a.key_id);
	snprintf(want[1], sizeof(want[1]), "idx.three/%s", a.key_id);
	snprintf(want[2], sizeof(want[2]), "idx.two/%s", a.key_id);

	memset(&q, 0, sizeof(q));
	q.fp = a.fingerprint;
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 3);
	CHECK_STR(q.seen[0], want[0]);
	CHECK_STR(q.seen[1], want[1]);
	CHECK_STR(q.seen[2], want[2]);
	q.fp = other.fingerprint;
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 1);
	q.fp = NULL;
	q.team = "OTHERTEAM1";
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 2);
	CHECK(strncmp(q.seen[0], "idx.one/", 8) == 0 &&
	    strcmp(q.seen[0], want[0]) != 0);
	CHECK_STR(q.seen[1], want[1]);
	q.team = NULL;
	q.fp = "not a fingerprint";
	CHECK_ERR(store_read(store, idx_query, &q), P8V_ERR_BAD_FIELD);

	/* Replaced under another fingerprint and team: moves in both. */
	REQUIRE(key_record_copy(&moved, &b) == 0);
	memcpy(moved.fingerprint, other.fingerprint, sizeof(moved.fingerprint));
	memcpy(moved.team_id, "OTHERTEAM1", IDS_APPLE_ID_LEN + 1);
	store_record(&moved);
	q.fp = a.fingerprint;
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 2);
	q.fp = other.fingerprint;
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 2);
	q.fp = NULL;
	q.team = "OTHERTEAM1";
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 3);
	q.team = "IDXTEAM001";
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 1);

	/* Deleted: gone from both. */
	{
		struct one o = { .app = "idx.three", .key_id = c.key_id };

		CHECK_OK(store_write(store, del_rec, &o));
	}
	q.team = NULL;
	q.fp = a.fingerprint;
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 1);
	CHECK_STR(q.seen[0], want[0]);
	{
		uint64_t n = 0, mark = 0;

		/* Puts and deletes kept the number the indexes cover. */
		REQUIRE(store_read(store, count_txn, &n) == 0);
		CHECK_OK(store_read(store, idx_mark_get, &mark));
		CHECK_INT(mark, n);
	}

	/* Lost (the vault of an earlier release): rebuilt at open. */
	memcpy(dir2_fp, a.fingerprint, sizeof(dir2_fp));
	REQUIRE(store_read(store, idx_count_txn, &drop) == 0);
	CHECK(drop.n > 0);
	CHECK_OK(store_write(store, idx_drop, &drop.all));
	CHECK_OK(store_write(store, idx_mark_set, NULL));
	CHECK_INT(idx_count(KEY_FP_INDEX_PREFIX), drop.n - drop.all.n);
	store_close(store);
	store = tsu_store(dir, 0);
	q.fp = dir2_fp;
	CHECK_OK(store_read(store, idx_query, &q));
	CHECK_INT(q.n, 1);
	CHECK_STR(q.seen[0], want[0]);
	{
		uint64_t n = 0;

		REQUIRE(store_read(store, count_txn, &n) == 0);
		CHECK_INT(idx_count(KEY_FP_INDEX_PREFIX), n);
		CHECK_INT(idx_count(KEY_TEAM_INDEX_PREFIX), n);
	}
	/* In step: nothing to do, and the number of records is noted. */
	CHECK_OK(store_write(store, idx_sync, &rebuilt));
	CHECK_INT(rebuilt, 0);
	{
		uint64_t n = 0, mark = 0, other_n;

		REQUIRE(store_read(store, count_txn, &n) == 0);
		CHECK_OK(store_read(store, idx_mark_get, &mark));
		CHECK_INT(mark, n);
		/* Another number (records an earlier release added or
		 * deleted): the entries are counted, found in step, and the
		 * number set again. */
		other_n = n + 5;
		CHECK_OK(store_write(store, idx_mark_set, &other_n));
		CHECK_OK(store_write(store, idx_sync, &rebuilt));
		CHECK_INT(rebuilt, 0);
		CHECK_OK(store_read(store, idx_mark_get, &mark));
		CHECK_INT(mark, n);
		/* Another number and entries missing: rebuilt. */
		REQUIRE(store_read(store, idx_count_txn, &drop) == 0);
		CHECK_OK(store_write(store, idx_drop, &drop.all));
		CHECK_OK(store_write(store, idx_mark_set, &other_n));
		CHECK_OK(store_write(store, idx_sync, &rebuilt));
		CHECK_INT(rebuilt, 1);
		CHECK_INT(idx_count(KEY_FP_INDEX_PREFIX), n);
		CHECK_OK(store_read(store, idx_mark_get, &mark));
		CHECK_INT(mark, n);
	}

	key_record_free(&a);
	key_record_free(&b);
	key_record_free(&c);
	key_record_free(&other);
	key_record_free(&moved);
}

/* key_record_identity_conflict's question, in a read transaction. */
struct ic_q {
	const char *fp, *key_id, *team_id;
	int conflict;
};

static int
ic_query(struct store_txn *txn, void *arg)
{
	struct ic_q *q = arg;

	return key_record_identity_conflict(txn, q->fp, q->key_id, q->team_id,
	    &q->conflict);
}

static int
ic(const char *fp, const char *key_id, const char *team_id)
{
	struct ic_q q = { fp, key_id, team_id, -1 };

	REQUIRE(store_read(store, ic_query, &q) == 0);
	return q.conflict;
}

/* One key's copy in app under (team_id, key_id), in state. */
static void
ic_copy(const char *app, const char *team_id, const char *key_id,
    enum key_state state)
{
	struct key_record rec;

	tsu_record(&rec, app, 88800);
	memcpy(rec.team_id, team_id, IDS_APPLE_ID_LEN + 1);
	memcpy(rec.key_id, key_id, IDS_APPLE_ID_LEN + 1);
	rec.state = state;
	REQUIRE(tsu_seal(&rec, master_keyring_primary(ring), (const uint8_t *)
	    "0123456789abcdef0123456789abcdef", 32) == 0);
	store_record(&rec);
	key_record_free(&rec);
}

/*
 * Key identity from the fingerprint index: many copies under the same ids
 * are no conflict; a live copy under another Team ID or Key ID is,
 * whether its entries sort before or after the asker's (the check seeks
 * past the asker's copies and looks on both sides); a revoked one is not.
 */
static void
test_identity_conflict(void)
{
	struct key_record probe;
	char app[IDS_APP_MAX + 1];
	const char *fp;
	int i;

	tsu_record(&probe, "ic.probe", 88800);
	fp = probe.fingerprint;
	CHECK_INT(ic(fp, "MIDKEY0001", "MIDTEAM001"), 0);
	for (i = 0; i < 40; i++) {
		snprintf(app, sizeof(app), "ic.copy%02d", i);
		ic_copy(app, "MIDTEAM001", "MIDKEY0001", KEY_STATE_ACTIVE);
	}
	CHECK_INT(ic(fp, "MIDKEY0001", "MIDTEAM001"), 0);
	CHECK_INT(ic(fp, "MIDKEY0002", "MIDTEAM001"), 1);
	CHECK_INT(ic(fp, "MIDKEY0001", "MIDTEAM002"), 1);
	CHECK_INT(ic(fp, "AAAKEY0001", "AAATEAM001"), 1);
	CHECK_INT(ic(fp, "ZZZKEY0001", "ZZZTEAM001"), 1);

	/* Revoked copies under other ids, on both sides: no conflict. */
	ic_copy("ic.before", "AAATEAM001", "AAAKEY0001", KEY_STATE_REVOKED);
	ic_copy("ic.after", "ZZZTEAM001", "ZZZKEY0001", KEY_STATE_REVOKED);
	CHECK_INT(ic(fp, "MIDKEY0001", "MIDTEAM001"), 0);
	/* A live one after the asker's copies (same team, later Key ID). */
	ic_copy("ic.later", "MIDTEAM001", "MIDKEY0009", KEY_STATE_ACTIVE);
	CHECK_INT(ic(fp, "MIDKEY0001", "MIDTEAM001"), 1);
	CHECK_INT(ic(fp, "MIDKEY0009", "MIDTEAM001"), 1);
	ic_copy("ic.later", "MIDTEAM001", "MIDKEY0009", KEY_STATE_REVOKED);
	CHECK_INT(ic(fp, "MIDKEY0001", "MIDTEAM001"), 0);
	/* A live one before them (an earlier Team ID). */
	ic_copy("ic.before", "AAATEAM001", "AAAKEY0001", KEY_STATE_STANDBY);
	CHECK_INT(ic(fp, "MIDKEY0001", "MIDTEAM001"), 1);
	/* Not a fingerprint or not ids: refused. */
	{
		struct ic_q q = { "not a fingerprint", "MIDKEY0001",
		    "MIDTEAM001", -1 };

		CHECK_ERR(store_read(store, ic_query, &q), P8V_ERR_BAD_FIELD);
	}
	key_record_free(&probe);
}

int
main(void)
{
	static const unsigned k1[] = { 1 }, k12[] = { 1, 2 }, k3[] = { 3 };

	REQUIRE(secmem_init() == 0);
	ring = tsu_ring(k1, 1);
	ring12 = tsu_ring(k12, 2);
	ring3 = tsu_ring(k3, 1);
	REQUIRE((dir = tu_mkdtemp("p8v-records")) != NULL);
	store = tsu_store(dir, 0);
	CHECK_OK(tsu_keys_check(store, ring12));

	test_ids();
	test_names();
	test_round_trip();
	test_check();
	test_tamper_every_byte();
	test_swap_and_move();
	test_metadata_changes();
	test_strict_decode();
	test_update();
	test_list();
	test_usage();
	test_no_secret_on_disk();
	test_indexes();
	test_identity_conflict();

	store_close(store);
	tu_rmtree(dir);
	free(dir);
	master_keyring_destroy(ring);
	master_keyring_destroy(ring12);
	master_keyring_destroy(ring3);
	return check_finish();
}
