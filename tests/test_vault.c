/*
 * test_vault.c: the key-material boundary (vault/).
 *
 * Each test runs on its own temporary store with a random master key; .p8
 * texts are generated here with OpenSSL (EVP_EC_gen + PKCS#8 PEM), never
 * read from files. The clocks are replaced through the test-only hook of
 * vault/vault_internal.h, so the 20/50/60-minute rules run without waiting.
 *
 * - upload: 201, 200 (same again), 409 (other material, other team, same
 *   material under another Key ID), revoked Key ID reuse; every field
 *   refusal and .p8 refusals pass through unchanged; nothing stored on error;
 *   the metadata object exactly.
 * - activation and revocation: overlap rules, versions, tombstones (no
 *   envelope in the stored record), audit events and their chain.
 * - APNs tokens: exact header and claims, verified against the uploaded
 *   public key; one token per team+key shared by apps; restart (same boot,
 *   other boot, stale); key change mints at once; wall clock steps change
 *   nothing; boottime past the reuse period mints once; rejections; 1024
 *   concurrent callers on a cold key mint once; a tampered record gives
 *   P8V_ERR_INTEGRITY and no token; persisted tokens are sealed.
 * - master keys: changes re-seal under the primary key (rotation); a
 *   record sealed under a key no longer loaded is master_key_missing.
 * - vault_sign_app: builder, service bit, kid guard, counters.
 * - no guarded block outlives the vaults (VmLck balance).
 */
#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/jwt.h"
#include "crypto/masterkey.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "keeper/keeper.h"
#include "keeper/keeper_test.h"
#include "store/audit.h"
#include "store/cache.h"
#include "store/masterkeys.h"
#include "store/records.h"
#include "store/store.h"
#include "tests/check.h"
#include "tests/testutil.h"
#include "vault/profiles.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"

#define NS_PER_S INT64_C(1000000000)
#define MINUTES(m) ((int64_t)(m) * 60)
/* Single flight: THREADS x CALLS callers on one cold key. */
#define FLIGHT_THREADS 64
#define FLIGHT_CALLS 16
/* Fake wall clock start: 2027-01-15T08:00:00Z. */
#define WALL_START INT64_C(1800000000)

/* Tokens are compared without being printed (bearer credentials). */
#define CHECK_SAME_TOKEN(a, b) CHECK((a) != NULL && (b) != NULL && \
	strcmp((a), (b)) == 0)

static const char team_a[] = "TEAM000001";
static const char team_b[] = "TEAM000002";

/* --- fake clocks --- */

static int64_t fake_wall_s = WALL_START;
static int64_t fake_boot_ns = 1000 * NS_PER_S;

static int64_t
t_wall(void)
{
	return fake_wall_s;
}

static int64_t
t_boot(void)
{
	return fake_boot_ns;
}

static void
advance_boot(int64_t seconds)
{
	fake_boot_ns += seconds * NS_PER_S;
}

/* --- keys --- */

struct tkey {
	uint8_t *pem;            /* guarded */
	size_t len;
	uint8_t pub[P8_PUBLIC_BYTES];
	char fp[P8_FINGERPRINT_HEX + 1];
};

static void
pem_of(EVP_PKEY *pkey, struct tkey *k)
{
	BIO *bio = BIO_new(BIO_s_secmem());
	char *data;
	long n;

	REQUIRE(bio != NULL && pkey != NULL);
	REQUIRE(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL,
	    NULL) == 1);
	n = BIO_get_mem_data(bio, &data);
	REQUIRE(n > 0);
	k->pem = secmem_alloc((size_t)n);
	REQUIRE(k->pem != NULL);
	memcpy(k->pem, data, (size_t)n);
	k->len = (size_t)n;
	BIO_free(bio);
	EVP_PKEY_free(pkey);
}

/* A fresh P-256 .p8 and its public forms (from p8_parse). */
static void
gen_ec(struct tkey *k)
{
	struct p8_key *key = NULL;

	memset(k, 0, sizeof(*k));
	pem_of(EVP_EC_gen("P-256"), k);
	REQUIRE(p8_parse(k->pem, k->len, &key) == 0);
	REQUIRE(p8_key_public_point(key, k->pub) == 0);
	REQUIRE(p8_public_fingerprint(k->pub, k->fp) == 0);
	p8_key_destroy(key);
}

static void
gen_rsa(struct tkey *k)
{
	memset(k, 0, sizeof(*k));
	pem_of(EVP_RSA_gen(2048), k);
}

static void
tkey_free(struct tkey *k)
{
	secmem_free(k->pem);
	memset(k, 0, sizeof(*k));
}

/* --- a vault on a temporary store --- */

struct tv {
	char *dir;
	struct store *store;
	struct vault *v;
	uint8_t mk[MASTER_KEY_BYTES];
};

/* A keeper holding the master key of raw. */
static struct keeper *
keeper_of(const uint8_t raw[MASTER_KEY_BYTES])
{
	struct keeper *k = NULL;

	REQUIRE(keeper_create(&k) == 0);
	REQUIRE(keeper_test_add_raw(k, raw, MASTER_KEY_BYTES, NULL) == 0);
	return k;
}

/* The id of k's primary master key (static buffer). */
static const char *
primary_hex(struct keeper *k)
{
	static struct keeper_status st;

	REQUIRE(keeper_status(k, &st) == 0 && st.n > 0);
	return st.keys[st.primary].id_hex;
}

static int
tv_reopen(struct tv *t, const struct vault_options *opts)
{
	vault_destroy(t->v);
	t->v = NULL;
	return vault_create(t->store, keeper_of(t->mk), opts, &t->v);
}

static void
tv_open(struct tv *t)
{
	memset(t, 0, sizeof(*t));
	REQUIRE((t->dir = tu_mkdtemp("p8v-vault")) != NULL);
	REQUIRE(store_open(t->dir, NULL, &t->store) == 0);
	REQUIRE(secmem_random(t->mk, sizeof(t->mk)) == 0);
	REQUIRE(tv_reopen(t, NULL) == 0);
}

static void
tv_close(struct tv *t)
{
	vault_destroy(t->v);
	store_close(t->store);
	tu_rmtree(t->dir);
	free(t->dir);
	memset(t, 0, sizeof(*t));
}

static int
upload(struct tv *t, const char *app, const char *kid, const char *team,
    const struct tkey *k, enum key_env env, uint32_t services, int activate,
    json_t **meta, int *created)
{
	struct vault_upload up = {
		.app = app, .key_id = kid, .team_id = team,
		.p8 = k->pem, .p8_len = k->len, .environment = env,
		.services = services, .activate = activate, .actor = "portal",
	};
	json_t *m = NULL;
	int c = -1, r;

	r = vault_key_upload(t->v, &up, &m, &c);
	if (r != 0)
		CHECKF(m == NULL, "meta left on error %s", p8v_errname(r));
	if (meta != NULL)
		*meta = m;
	else
		json_decref(m);
	if (created != NULL)
		*created = c;
	return r;
}

/* Upload that must succeed as new. */
static void
upload_ok(struct tv *t, const char *app, const char *kid, const char *team,
    const struct tkey *k, enum key_env env, int activate)
{
	int created = -1;

	CHECK_OK(upload(t, app, kid, team, k, env, 0, activate, NULL,
	    &created));
	CHECK_INT(created, 1);
}

static const char *
meta_str(const json_t *meta, const char *name)
{
	return json_string_value(json_object_get(meta, name));
}

/* The state of app/kid as vault_key_get reports it. */
static const char *
state_of(struct tv *t, const char *app, const char *kid)
{
	static char state[16];
	json_t *meta = NULL;

	state[0] = '\0';
	if (vault_key_get(t->v, app, kid, &meta) == 0 &&
	    meta_str(meta, "state") != NULL)
		snprintf(state, sizeof(state), "%s", meta_str(meta, "state"));
	json_decref(meta);
	return state;
}

/* --- raw store access --- */

struct raw {
	const char *app, *kid;
	struct key_record rec;
	int flip_last;
};

static int
raw_get_txn(struct store_txn *txn, void *arg)
{
	struct raw *w = arg;

	key_record_free(&w->rec);
	return key_record_get(txn, w->app, w->kid, &w->rec);
}

static int
raw_flip_txn(struct store_txn *txn, void *arg)
{
	struct raw *w = arg;
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX], *copy;
	const uint8_t *val;
	size_t klen, vlen;
	int r;

	if ((r = key_record_db_key(w->app, w->kid, dbkey, &klen)) != 0 ||
	    (r = store_get(txn, STORE_DB_KEYS, dbkey, klen, &val, &vlen)) != 0)
		return r;
	if ((copy = malloc(vlen)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(copy, val, vlen);
	copy[vlen - 1 - 20] ^= 0x01; /* inside the envelope's ciphertext/tag */
	r = store_put(txn, STORE_DB_KEYS, dbkey, klen, copy, vlen, 0);
	free(copy);
	return r;
}

struct cache_peek {
	const char *key;
	uint8_t *blob;
	size_t len;
	int64_t expires_at;
};

static int
cache_get_txn(struct store_txn *txn, void *arg)
{
	struct cache_peek *c = arg;

	free(c->blob);
	c->blob = NULL;
	return store_cache_get(txn, c->key, &c->expires_at, &c->blob, &c->len);
}

static void
cache_key_of(const char *team, const char *kid, const char *fp, char *buf,
    size_t size)
{
	snprintf(buf, size, "apns/%s/%s/%s", team, kid, fp);
}

/* Audit events: their "what" (and "reason") joined by spaces. */
struct audit_walk {
	char text[4096];
};

static int
audit_one(uint64_t seq, const char *json, size_t len, void *arg)
{
	struct audit_walk *w = arg;
	json_t *ev = json_loadb(json, len, 0, NULL);
	const char *what, *reason;
	size_t n = strlen(w->text);

	(void)seq;
	if (ev == NULL)
		return P8V_ERR_INTEGRITY;
	what = json_string_value(json_object_get(ev, "what"));
	reason = json_string_value(json_object_get(ev, "reason"));
	snprintf(w->text + n, sizeof(w->text) - n, "%s%s%s%s", n ? " " : "",
	    what ? what : "?", reason ? ":" : "", reason ? reason : "");
	json_decref(ev);
	return 0;
}

static int
audit_txn(struct store_txn *txn, void *arg)
{
	struct audit_walk *w = arg;
	uint64_t events = 0, bad = 0;
	int r;

	w->text[0] = '\0';
	if ((r = store_audit_foreach(txn, 1, audit_one, w)) != 0)
		return r;
	return store_audit_verify(txn, &events, &bad);
}

static void
check_audit(struct tv *t, const char *want)
{
	struct audit_walk w;

	CHECK_OK(store_read(t->store, audit_txn, &w));
	CHECK_STR(w.text, want);
}

/* --- JWT parts --- */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Decode n base64url characters into a NUL-terminated malloc'd string. */
static char *
b64_text(const char *s, size_t n)
{
	char *out = malloc(n + 1);
	unsigned int acc = 0;
	size_t i, o = 0;
	int bits = 0;

	REQUIRE(out != NULL);
	for (i = 0; i < n; i++) {
		const char *p = strchr(b64url, s[i]);

		if (p == NULL || s[i] == '\0') {
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (unsigned int)(p - b64url);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	return out;
}

/* Header and claims text of a compact JWS (malloc'd); 0 or -1. */
static int
jwt_parts(const char *token, char **header, char **claims)
{
	const char *d1 = strchr(token, '.'), *d2;

	*header = *claims = NULL;
	if (d1 == NULL || (d2 = strchr(d1 + 1, '.')) == NULL ||
	    strchr(d2 + 1, '.') != NULL)
		return -1;
	*header = b64_text(token, (size_t)(d1 - token));
	*claims = b64_text(d1 + 1, (size_t)(d2 - d1 - 1));
	return *header != NULL && *claims != NULL ? 0 : -1;
}

static int
apns(struct tv *t, const char *app, enum key_env env, struct vault_token *tok)
{
	return vault_apns_token(t->v, app, env, NULL, VAULT_REJECT_NONE,
	    "sender", tok);
}

static int
apns_reject(struct tv *t, const char *app, const char *rejected,
    enum vault_reject_reason why, struct vault_token *tok)
{
	return vault_apns_token(t->v, app, KEY_ENV_PRODUCTION, rejected, why,
	    "sender", tok);
}

static uint64_t
total_mints(struct tv *t)
{
	struct vault_stats st;
	uint64_t n = 0;
	size_t i;

	vault_stats(t->v, &st);
	for (i = 0; i < VAULT_MINT_REASONS; i++)
		n += st.apns_mints[i];
	return n;
}

static uint64_t
mints_for(struct tv *t, enum vault_mint_reason why)
{
	struct vault_stats st;

	vault_stats(t->v, &st);
	return st.apns_mints[why];
}

/* ===================================================================== */

static void
test_options(void)
{
	static const struct {
		int64_t reuse;
		int want;
	} cases[] = {
		{ 0, 0 },
		{ MINUTES(20), 0 },
		{ MINUTES(55), 0 },
		{ MINUTES(20) - 1, P8V_ERR_INVALID_ARGUMENT },
		{ MINUTES(55) + 1, P8V_ERR_INVALID_ARGUMENT },
		{ MINUTES(60), P8V_ERR_INVALID_ARGUMENT },
		{ -1, P8V_ERR_INVALID_ARGUMENT },
	};
	struct vault_options opts;
	struct tv t;
	size_t i;

	tv_open(&t);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		opts.apns_reuse_seconds = cases[i].reuse;
		CHECK_ERR(tv_reopen(&t, &opts), cases[i].want);
		CHECKF((t.v != NULL) == (cases[i].want == 0), "case %zu", i);
	}
	CHECK_ERR(vault_create(NULL, keeper_of(t.mk), NULL, &t.v),
	    P8V_ERR_INVALID_ARGUMENT);
	/* A ring whose key the store has never seen. */
	{
		uint8_t other[MASTER_KEY_BYTES];
		struct vault *v = NULL;

		REQUIRE(secmem_random(other, sizeof(other)) == 0);
		CHECK_ERR(vault_create(t.store, keeper_of(other), NULL, &v),
		    P8V_ERR_MASTER_KEY_MISMATCH);
		CHECK(v == NULL);
	}
	tv_close(&t);
}

static void
test_upload_meta(void)
{
	const char *topics[] = { "com.example.app", "com.example.app.voip" };
	struct vault_upload up;
	struct tkey k;
	struct tv t;
	json_t *meta = NULL, *jwk, *svc, *arr = NULL;
	char *pem = NULL, want_time[VAULT_TIME_RFC3339_BYTES];
	int created = -1;

	tv_open(&t);
	gen_ec(&k);
	memset(&up, 0, sizeof(up));
	up.app = "shop";
	up.key_id = "KEY0000001";
	up.team_id = team_a;
	up.p8 = k.pem;
	up.p8_len = k.len;
	up.environment = KEY_ENV_PRODUCTION;
	up.services = KEY_SERVICE_APNS | KEY_SERVICE_DEVICECHECK;
	up.topics = topics;
	up.n_topics = 2;
	up.activate = 1;
	up.actor = "tok_portal";
	CHECK_OK(vault_key_upload(t.v, &up, &meta, &created));
	CHECK_INT(created, 1);
	REQUIRE(meta != NULL);
	/* The record's 15 members and "checks" (none yet). */
	CHECK_INT(json_object_size(meta), 16);
	CHECK(json_is_object(json_object_get(meta, "checks")) &&
	    json_object_size(json_object_get(meta, "checks")) == 0);
	CHECK_STR(meta_str(meta, "app"), "shop");
	CHECK_STR(meta_str(meta, "key_id"), "KEY0000001");
	CHECK_STR(meta_str(meta, "team_id"), team_a);
	CHECK_STR(meta_str(meta, "environment"), "production");
	svc = json_object_get(meta, "services");
	CHECK(json_array_size(svc) == 2);
	CHECK_STR(json_string_value(json_array_get(svc, 0)), "apns");
	CHECK_STR(json_string_value(json_array_get(svc, 1)), "devicecheck");
	CHECK_INT(json_array_size(json_object_get(meta, "topics")), 2);
	CHECK_STR(json_string_value(json_array_get(json_object_get(meta,
	    "topics"), 1)), "com.example.app.voip");
	CHECK_STR(meta_str(meta, "state"), "active");
	CHECK_STR(meta_str(meta, "fingerprint"), k.fp);
	REQUIRE(p8_public_pem(k.pub, &pem) == 0);
	CHECK_STR(meta_str(meta, "public_key_pem"), pem);
	jwk = json_object_get(meta, "public_key_jwk");
	CHECK_STR(json_string_value(json_object_get(jwk, "kid")), "KEY0000001");
	CHECK_STR(json_string_value(json_object_get(jwk, "crv")), "P-256");
	CHECK_STR(meta_str(meta, "master_key_id"),
	    primary_hex(t.v->keeper));
	REQUIRE(vault_time_rfc3339(WALL_START, want_time) == 0);
	CHECK_STR(want_time, "2027-01-15T08:00:00Z");
	CHECK_STR(meta_str(meta, "created_at"), want_time);
	CHECK_STR(meta_str(meta, "updated_at"), want_time);
	CHECK_STR(meta_str(meta, "created_by"), "tok_portal");
	CHECK_INT(json_integer_value(json_object_get(meta, "version")), 1);
	json_decref(meta);

	/* get and list say the same. */
	CHECK_OK(vault_key_get(t.v, "shop", "KEY0000001", &meta));
	CHECK_STR(meta_str(meta, "fingerprint"), k.fp);
	json_decref(meta);
	CHECK_OK(vault_key_list(t.v, "shop", &arr));
	CHECK_INT(json_array_size(arr), 1);
	json_decref(arr);
	CHECK_OK(vault_key_list(t.v, "nobody", &arr));
	CHECK_INT(json_array_size(arr), 0);
	json_decref(arr);
	CHECK_ERR(vault_key_get(t.v, "shop", "KEY0000009", &meta),
	    P8V_ERR_KEY_NOT_FOUND);
	CHECK(meta == NULL);
	CHECK_ERR(vault_key_get(t.v, "shop", "key0000001", &meta),
	    P8V_ERR_BAD_KEY_ID);
	CHECK_ERR(vault_key_get(t.v, "../x", "KEY0000001", &meta),
	    P8V_ERR_BAD_APP_ID);
	check_audit(&t, "key.upload");
	free(pem);
	tkey_free(&k);
	tv_close(&t);
}

static void
test_upload_idempotence(void)
{
	struct tkey k1, k2;
	struct tv t;
	json_t *meta = NULL;
	int created = -1;

	tv_open(&t);
	gen_ec(&k1);
	gen_ec(&k2);
	upload_ok(&t, "shop", "KEY0000001", team_a, &k1, KEY_ENV_PRODUCTION, 1);

	/* Same again, even asking for other settings: 200, nothing changes. */
	fake_wall_s += 60;
	CHECK_OK(upload(&t, "shop", "KEY0000001", team_a, &k1,
	    KEY_ENV_DEVELOPMENT, KEY_SERVICE_MAPS, 0, &meta, &created));
	CHECK_INT(created, 0);
	CHECK_STR(meta_str(meta, "environment"), "production");
	CHECK_STR(meta_str(meta, "state"), "active");
	CHECK_INT(json_integer_value(json_object_get(meta, "version")), 1);
	json_decref(meta);

	/* Other material under the same Key ID: 409 key_exists; the same
	 * key under another team: 409 key_identity_conflict. */
	CHECK_ERR(upload(&t, "shop", "KEY0000001", team_a, &k2,
	    KEY_ENV_PRODUCTION, 0, 1, NULL, &created), P8V_ERR_KEY_EXISTS);
	CHECK_ERR(upload(&t, "shop", "KEY0000001", team_b, &k1,
	    KEY_ENV_PRODUCTION, 0, 1, NULL, &created),
	    P8V_ERR_KEY_IDENTITY_CONFLICT);
	/* The same material under another Key ID of the app: 409 (another
	 * identity for the key: test_key_identity has the rest). */
	CHECK_ERR(upload(&t, "shop", "KEY0000002", team_a, &k1,
	    KEY_ENV_PRODUCTION, 0, 1, NULL, &created),
	    P8V_ERR_KEY_IDENTITY_CONFLICT);
	CHECK_STR(state_of(&t, "shop", "KEY0000002"), "");
	/* Another app may hold the same key (a team-scoped key). */
	upload_ok(&t, "shop2", "KEY0000001", team_a, &k1, KEY_ENV_PRODUCTION, 1);

	/* A revoked Key ID is never reused, with any material. */
	CHECK_OK(vault_key_revoke(t.v, "shop", "KEY0000001", "cli", &meta));
	json_decref(meta);
	CHECK_ERR(upload(&t, "shop", "KEY0000001", team_a, &k1,
	    KEY_ENV_PRODUCTION, 0, 1, NULL, &created), P8V_ERR_KEY_REVOKED);
	CHECK_ERR(upload(&t, "shop", "KEY0000001", team_a, &k2,
	    KEY_ENV_PRODUCTION, 0, 1, NULL, &created), P8V_ERR_KEY_REVOKED);
	check_audit(&t, "key.upload key.upload key.revoke");
	fake_wall_s = WALL_START;
	tkey_free(&k1);
	tkey_free(&k2);
	tv_close(&t);
}

static void
test_upload_refusals(void)
{
	static const char *const bad_topic[] = { "com.example app" };
	static const char *const good_topic[] = { "com.example.app" };
	struct tkey ec, rsa, garbage, empty;
	struct {
		const char *name;
		struct vault_upload up;
		int want;
	} cases[] = {
		{ "empty app", { .app = "" }, P8V_ERR_BAD_APP_ID },
		{ "app with slash", { .app = "a/b" }, P8V_ERR_BAD_APP_ID },
		{ "app ..", { .app = ".." }, P8V_ERR_BAD_APP_ID },
		{ "NULL app", { .app = NULL }, P8V_ERR_BAD_APP_ID },
		{ "short key id", { .key_id = "KEY00001" }, P8V_ERR_BAD_KEY_ID },
		{ "lower key id", { .key_id = "key0000001" }, P8V_ERR_BAD_KEY_ID },
		{ "long team id", { .team_id = "TEAM0000011" },
		    P8V_ERR_BAD_TEAM_ID },
		{ "bad environment", { .environment = (enum key_env)7 },
		    P8V_ERR_BAD_FIELD },
		{ "unknown service", { .services = 0x80 }, P8V_ERR_BAD_FIELD },
		{ "bad topic", { .topics = bad_topic, .n_topics = 1 },
		    P8V_ERR_BAD_FIELD },
		{ "no actor", { .actor = NULL }, P8V_ERR_INVALID_ARGUMENT },
		{ "bad actor", { .actor = "a b" }, P8V_ERR_INVALID_ARGUMENT },
		{ "RSA key", { .p8 = NULL }, P8V_ERR_P8_WRONG_KEY_TYPE },
		{ "not PEM", { .p8 = NULL }, P8V_ERR_P8_NOT_PEM },
		{ "empty", { .p8 = NULL }, P8V_ERR_P8_NOT_PEM },
	};
	struct tv t;
	json_t *meta, *arr = NULL;
	size_t i, n = sizeof(cases) / sizeof(cases[0]);
	int created;

	tv_open(&t);
	gen_ec(&ec);
	gen_rsa(&rsa);
	memset(&garbage, 0, sizeof(garbage));
	garbage.pem = (uint8_t *)"this is not a key\n";
	garbage.len = strlen((const char *)garbage.pem);
	memset(&empty, 0, sizeof(empty));
	empty.pem = (uint8_t *)"";
	for (i = 0; i < n; i++) {
		struct vault_upload up = cases[i].up;
		const struct tkey *k = &ec;

		if (strcmp(cases[i].name, "RSA key") == 0)
			k = &rsa;
		else if (strcmp(cases[i].name, "not PEM") == 0)
			k = &garbage;
		else if (strcmp(cases[i].name, "empty") == 0)
			k = &empty;
		/* Every other field valid. */
		if (strstr(cases[i].name, "app") == NULL)
			up.app = "refused";
		if (up.key_id == NULL)
			up.key_id = "KEY0000001";
		if (up.team_id == NULL)
			up.team_id = team_a;
		if (up.topics == NULL) {
			up.topics = good_topic;
			up.n_topics = 1;
		}
		if (strstr(cases[i].name, "actor") == NULL)
			up.actor = "portal";
		up.p8 = k->pem;
		up.p8_len = k->len;
		up.activate = 1;
		meta = NULL;
		created = -1;
		CHECKF(vault_key_upload(t.v, &up, &meta, &created) ==
		    cases[i].want, "case %s", cases[i].name);
		CHECKF(meta == NULL && created == 0, "case %s", cases[i].name);
	}
	CHECK_ERR(vault_key_upload(t.v, NULL, &meta, &created),
	    P8V_ERR_INVALID_ARGUMENT);
	/* Nothing was stored, nothing audited. */
	CHECK_OK(vault_key_list(t.v, "refused", &arr));
	CHECK_INT(json_array_size(arr), 0);
	json_decref(arr);
	check_audit(&t, "");
	tkey_free(&ec);
	tkey_free(&rsa);
	tv_close(&t);
}

static void
test_activation(void)
{
	struct tkey a, b, c, d;
	struct tv t;
	json_t *meta = NULL;

	tv_open(&t);
	gen_ec(&a);
	gen_ec(&b);
	gen_ec(&c);
	gen_ec(&d);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	/* A standby upload changes nothing else. */
	upload_ok(&t, "app", "KEYBBBBBBB", team_a, &b, KEY_ENV_PRODUCTION, 0);
	CHECK_STR(state_of(&t, "app", "KEYAAAAAAA"), "active");
	CHECK_STR(state_of(&t, "app", "KEYBBBBBBB"), "standby");

	/* Activating B: B active, A standby (re-sealed: version 2). */
	CHECK_OK(vault_key_activate(t.v, "app", "KEYBBBBBBB", "cli", &meta));
	CHECK_STR(meta_str(meta, "state"), "active");
	CHECK_INT(json_integer_value(json_object_get(meta, "version")), 2);
	json_decref(meta);
	CHECK_STR(state_of(&t, "app", "KEYAAAAAAA"), "standby");
	CHECK_OK(vault_key_get(t.v, "app", "KEYAAAAAAA", &meta));
	CHECK_INT(json_integer_value(json_object_get(meta, "version")), 2);
	json_decref(meta);

	/* Activating the active key: a no-op, no audit event. */
	CHECK_OK(vault_key_activate(t.v, "app", "KEYBBBBBBB", "cli", &meta));
	CHECK_INT(json_integer_value(json_object_get(meta, "version")), 2);
	json_decref(meta);

	/* A development key does not overlap production. */
	upload_ok(&t, "app", "KEYCCCCCCC", team_a, &c, KEY_ENV_DEVELOPMENT, 1);
	CHECK_STR(state_of(&t, "app", "KEYBBBBBBB"), "active");
	CHECK_STR(state_of(&t, "app", "KEYCCCCCCC"), "active");
	/* "both" overlaps both. */
	upload_ok(&t, "app", "KEYDDDDDDD", team_a, &d, KEY_ENV_BOTH, 1);
	CHECK_STR(state_of(&t, "app", "KEYBBBBBBB"), "standby");
	CHECK_STR(state_of(&t, "app", "KEYCCCCCCC"), "standby");
	CHECK_STR(state_of(&t, "app", "KEYDDDDDDD"), "active");
	/* Back to C (development): D ("both") overlaps and steps down, B
	 * (production) stays standby. */
	CHECK_OK(vault_key_activate(t.v, "app", "KEYCCCCCCC", "cli", &meta));
	json_decref(meta);
	CHECK_STR(state_of(&t, "app", "KEYDDDDDDD"), "standby");
	CHECK_STR(state_of(&t, "app", "KEYBBBBBBB"), "standby");
	CHECK_STR(state_of(&t, "app", "KEYCCCCCCC"), "active");

	CHECK_ERR(vault_key_activate(t.v, "app", "KEYZZZZZZZ", "cli", &meta),
	    P8V_ERR_KEY_NOT_FOUND);
	CHECK(meta == NULL);
	CHECK_ERR(vault_key_activate(t.v, "app", "KEYAAAAAAA", NULL, &meta),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_OK(vault_key_revoke(t.v, "app", "KEYAAAAAAA", "cli", &meta));
	json_decref(meta);
	CHECK_ERR(vault_key_activate(t.v, "app", "KEYAAAAAAA", "cli", &meta),
	    P8V_ERR_KEY_REVOKED);
	check_audit(&t, "key.upload key.upload key.activate key.upload "
	    "key.upload key.activate key.revoke");
	tkey_free(&a);
	tkey_free(&b);
	tkey_free(&c);
	tkey_free(&d);
	tv_close(&t);
}

static void
test_revoke(void)
{
	struct raw w = { .app = "app", .kid = "KEYAAAAAAA" };
	struct vault_token tok;
	struct tkey a;
	struct tv t;
	json_t *meta = NULL;

	tv_open(&t);
	gen_ec(&a);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(store_read(t.store, raw_get_txn, &w));
	CHECK(w.rec.envelope != NULL);

	CHECK_OK(vault_key_revoke(t.v, "app", "KEYAAAAAAA", "cli", &meta));
	CHECK_STR(meta_str(meta, "state"), "revoked");
	CHECK(json_is_null(json_object_get(meta, "master_key_id")));
	CHECK_STR(meta_str(meta, "fingerprint"), a.fp);
	CHECK(meta_str(meta, "public_key_pem") != NULL);
	CHECK_INT(json_integer_value(json_object_get(meta, "version")), 2);
	json_decref(meta);

	/* The stored tombstone: metadata kept, envelope gone. */
	CHECK_OK(store_read(t.store, raw_get_txn, &w));
	CHECK(w.rec.envelope == NULL && w.rec.envelope_len == 0);
	CHECK_INT(w.rec.state, KEY_STATE_REVOKED);
	CHECK_STR(w.rec.fingerprint, a.fp);
	CHECK_STR(w.rec.team_id, team_a);
	key_record_free(&w.rec);

	CHECK_ERR(vault_key_revoke(t.v, "app", "KEYAAAAAAA", "cli", &meta),
	    P8V_ERR_KEY_REVOKED);
	CHECK_ERR(vault_key_revoke(t.v, "app", "KEYZZZZZZZ", "cli", &meta),
	    P8V_ERR_KEY_NOT_FOUND);
	CHECK_ERR(apns(&t, "app", KEY_ENV_PRODUCTION, &tok),
	    P8V_ERR_NO_ACTIVE_KEY);
	CHECK(tok.token == NULL);
	CHECK_ERR(apns(&t, "nobody", KEY_ENV_PRODUCTION, &tok),
	    P8V_ERR_APP_NOT_FOUND);
	CHECK_ERR(apns(&t, "bad app!", KEY_ENV_PRODUCTION, &tok),
	    P8V_ERR_BAD_APP_ID);
	tkey_free(&a);
	tv_close(&t);
}

static void
test_apns_token(void)
{
	struct vault_token tok, again;
	struct tkey a;
	struct tv t;
	struct vault_stats st;
	char *header = NULL, *claims = NULL, want[128];

	tv_open(&t);
	gen_ec(&a);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	REQUIRE(tok.token != NULL);
	CHECK_INT(tok.minted, 1);
	CHECK_STR(tok.key_id, "KEYAAAAAAA");
	CHECK_STR(tok.team_id, team_a);
	CHECK_INT(tok.issued_at, WALL_START);
	CHECK_INT(tok.expires_at, WALL_START + 3600);
	REQUIRE(jwt_parts(tok.token, &header, &claims) == 0);
	CHECK_STR(header, "{\"alg\":\"ES256\",\"kid\":\"KEYAAAAAAA\"}");
	snprintf(want, sizeof(want), "{\"iss\":\"%s\",\"iat\":%lld}", team_a,
	    (long long)WALL_START);
	CHECK_STR(claims, want);
	CHECK_OK(jwt_verify_es256(a.pub, tok.token, strlen(tok.token)));
	free(header);
	free(claims);

	/* Cached: the same token, no mint; "both" finds the same key. */
	CHECK_OK(apns(&t, "app", KEY_ENV_BOTH, &again));
	CHECK_INT(again.minted, 0);
	CHECK_SAME_TOKEN(again.token, tok.token);
	CHECK_INT(again.issued_at, tok.issued_at);
	vault_token_finish(&again);
	/* No development key, and this one is bound to production. */
	CHECK_ERR(apns(&t, "app", KEY_ENV_DEVELOPMENT, &again),
	    P8V_ERR_NO_ACTIVE_KEY);
	vault_stats(t.v, &st);
	CHECK_INT(st.apns_mints[VAULT_MINT_COLD], 1);
	CHECK_INT(st.apns_cache_hits, 1);
	check_audit(&t, "key.upload apns.mint:cold");

	/* Argument checks. */
	CHECK_ERR(vault_apns_token(t.v, "app", KEY_ENV_PRODUCTION, NULL,
	    VAULT_REJECT_EXPIRED, "sender", &again), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(vault_apns_token(t.v, "app", KEY_ENV_PRODUCTION, tok.token,
	    VAULT_REJECT_NONE, "sender", &again), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(vault_apns_token(t.v, "app", (enum key_env)9, NULL,
	    VAULT_REJECT_NONE, "sender", &again), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(vault_apns_token(t.v, "app", KEY_ENV_PRODUCTION, NULL,
	    VAULT_REJECT_NONE, "", &again), P8V_ERR_INVALID_ARGUMENT);
	CHECK(again.token == NULL);
	vault_token_finish(&tok);
	vault_token_finish(NULL);
	tkey_free(&a);
	tv_close(&t);
}

static void
test_apns_environments(void)
{
	struct vault_token tok;
	struct tkey dev, prod, both, siwa;
	struct tv t;

	tv_open(&t);
	gen_ec(&dev);
	gen_ec(&prod);
	gen_ec(&both);
	gen_ec(&siwa);
	upload_ok(&t, "app", "KEYPROD001", team_a, &prod, KEY_ENV_PRODUCTION, 1);
	upload_ok(&t, "app", "KEYDEV0001", team_a, &dev, KEY_ENV_DEVELOPMENT, 1);
	CHECK_OK(apns(&t, "app", KEY_ENV_DEVELOPMENT, &tok));
	CHECK_STR(tok.key_id, "KEYDEV0001");
	vault_token_finish(&tok);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	CHECK_STR(tok.key_id, "KEYPROD001");
	vault_token_finish(&tok);
	/* Any: no "both" key, so the first in Key ID order. */
	CHECK_OK(apns(&t, "app", KEY_ENV_BOTH, &tok));
	CHECK_STR(tok.key_id, "KEYDEV0001");
	vault_token_finish(&tok);

	/* A "both" key serves an environment without a key of its own. */
	upload_ok(&t, "app2", "KEYBOTH001", team_a, &both, KEY_ENV_BOTH, 1);
	CHECK_OK(apns(&t, "app2", KEY_ENV_DEVELOPMENT, &tok));
	CHECK_STR(tok.key_id, "KEYBOTH001");
	vault_token_finish(&tok);

	/* A key not uploaded for APNs never signs an APNs token. */
	CHECK_OK(upload(&t, "app3", "KEYSIWA001", team_a, &siwa,
	    KEY_ENV_BOTH, KEY_SERVICE_SIGN_IN_WITH_APPLE, 1, NULL, NULL));
	CHECK_ERR(apns(&t, "app3", KEY_ENV_PRODUCTION, &tok),
	    P8V_ERR_SERVICE_NOT_ALLOWED);
	CHECK(tok.token == NULL);
	tkey_free(&dev);
	tkey_free(&prod);
	tkey_free(&both);
	tkey_free(&siwa);
	tv_close(&t);
}

static void
test_apns_shared_and_restart(void)
{
	static const uint8_t other_boot[VAULT_BOOT_ID_BYTES] = { 0x42, 1, 2 };
	struct vault_token t1, t2;
	struct tkey a;
	struct tv t;

	tv_open(&t);
	gen_ec(&a);
	/* Two apps, one team-scoped key. */
	upload_ok(&t, "app1", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	upload_ok(&t, "app2", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(apns(&t, "app1", KEY_ENV_PRODUCTION, &t1));
	CHECK_INT(t1.minted, 1);
	CHECK_OK(apns(&t, "app2", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);
	CHECK_INT(total_mints(&t), 1);

	/* Restart on the same boot, 10 minutes later: the same token. */
	advance_boot(MINUTES(10));
	fake_wall_s += MINUTES(10);
	CHECK_OK(tv_reopen(&t, NULL));
	CHECK_OK(apns(&t, "app2", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);
	CHECK_INT(total_mints(&t), 0);
	/* Same boot, the wall clock stepped two hours back meanwhile: the
	 * age comes from CLOCK_BOOTTIME, so the token is still served. */
	fake_wall_s -= MINUTES(120);
	CHECK_OK(tv_reopen(&t, NULL));
	CHECK_OK(apns(&t, "app2", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);
	fake_wall_s += MINUTES(120);
	/* The loaded token still ages from its mint: at 50 minutes, a new
	 * one. */
	advance_boot(MINUTES(40));
	CHECK_OK(apns(&t, "app1", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 1);
	CHECK(strcmp(t2.token, t1.token) != 0);
	CHECK_INT(mints_for(&t, VAULT_MINT_EXPIRED), 1);
	vault_token_finish(&t1);
	t1 = t2;

	/* Another boot (CLOCK_BOOTTIME restarted): aged by the wall clock. */
	vault_test_set_boot_id(other_boot);
	fake_boot_ns = 5 * NS_PER_S;
	fake_wall_s += MINUTES(30); /* issued 30 minutes ago */
	CHECK_OK(tv_reopen(&t, NULL));
	CHECK_OK(apns(&t, "app1", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);
	/* ...and keeps aging from there: 20 more minutes make 50. */
	advance_boot(MINUTES(20) - 1);
	CHECK_OK(apns(&t, "app1", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	vault_token_finish(&t2);
	advance_boot(1);
	CHECK_OK(apns(&t, "app1", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 1);
	vault_token_finish(&t1);
	t1 = t2;

	/* Another boot, the wall clock now before the token's iat: dropped. */
	vault_test_set_boot_id(NULL);
	fake_wall_s -= MINUTES(5);
	CHECK_OK(tv_reopen(&t, NULL));
	CHECK_OK(apns(&t, "app1", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 1);
	CHECK_INT(mints_for(&t, VAULT_MINT_COLD), 1);
	vault_token_finish(&t1);
	vault_token_finish(&t2);

	/* Another boot, older than the reuse period: dropped. */
	vault_test_set_boot_id(other_boot);
	fake_wall_s += MINUTES(51);
	CHECK_OK(tv_reopen(&t, NULL));
	CHECK_OK(apns(&t, "app1", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 1);
	vault_token_finish(&t2);
	vault_test_set_boot_id(NULL);
	fake_wall_s = WALL_START;
	tkey_free(&a);
	tv_close(&t);
}

static void
test_apns_key_change(void)
{
	struct vault_token t1, t2;
	struct tkey a, b;
	struct tv t;
	json_t *meta = NULL;

	tv_open(&t);
	gen_ec(&a);
	gen_ec(&b);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t1));
	CHECK_INT(t1.minted, 1);
	/* A new active key one minute later: its token at once. */
	advance_boot(60);
	upload_ok(&t, "app", "KEYBBBBBBB", team_a, &b, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 1);
	CHECK_STR(t2.key_id, "KEYBBBBBBB");
	CHECK_OK(jwt_verify_es256(b.pub, t2.token, strlen(t2.token)));
	CHECK_INT(mints_for(&t, VAULT_MINT_KEY_CHANGED), 1);
	vault_token_finish(&t2);

	/* Back to A within its reuse period: A's token, still cached. */
	CHECK_OK(vault_key_activate(t.v, "app", "KEYAAAAAAA", "cli", &meta));
	json_decref(meta);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);

	/* Revoking A drops its token (memory and store); B mints at once. */
	CHECK_OK(vault_key_revoke(t.v, "app", "KEYAAAAAAA", "cli", &meta));
	json_decref(meta);
	{
		struct cache_peek c = { 0 };
		char key[CACHE_KEY_MAX + 1];

		cache_key_of(team_a, "KEYAAAAAAA", a.fp, key, sizeof(key));
		c.key = key;
		CHECK_ERR(store_read(t.store, cache_get_txn, &c),
		    P8V_ERR_NOT_FOUND);
		free(c.blob);
	}
	CHECK_ERR(apns(&t, "app", KEY_ENV_PRODUCTION, &t2),
	    P8V_ERR_NO_ACTIVE_KEY);
	CHECK_OK(vault_key_activate(t.v, "app", "KEYBBBBBBB", "cli", &meta));
	json_decref(meta);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t2));
	CHECK_STR(t2.key_id, "KEYBBBBBBB");
	vault_token_finish(&t1);
	vault_token_finish(&t2);
	check_audit(&t, "key.upload apns.mint:cold key.upload "
	    "apns.mint:key_changed key.activate key.revoke key.activate");
	tkey_free(&a);
	tkey_free(&b);
	tv_close(&t);
}

static void
test_apns_clocks(void)
{
	struct vault_token t1, t2;
	struct tkey a;
	struct tv t;
	int64_t wall0 = fake_wall_s;

	tv_open(&t);
	gen_ec(&a);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t1));
	CHECK_INT(t1.minted, 1);

	/* The wall clock jumps two hours ahead, then two hours behind: the
	 * token's real age is what counts (node-apn #590). */
	advance_boot(1);
	fake_wall_s = wall0 + MINUTES(120);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);
	fake_wall_s = wall0 - MINUTES(120);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);
	CHECK_INT(total_mints(&t), 1);

	/* Real time: one second short of 50 minutes, still the same. */
	fake_wall_s = wall0;
	advance_boot(MINUTES(50) - 2);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	vault_token_finish(&t2);
	/* At 50 minutes: exactly one new mint, then reuse again. */
	advance_boot(1);
	fake_wall_s = wall0 + MINUTES(50);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 1);
	CHECK_INT(t2.issued_at, wall0 + MINUTES(50));
	CHECK(strcmp(t2.token, t1.token) != 0);
	vault_token_finish(&t2);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t2));
	CHECK_INT(t2.minted, 0);
	vault_token_finish(&t2);
	CHECK_INT(total_mints(&t), 2);
	CHECK_INT(mints_for(&t, VAULT_MINT_EXPIRED), 1);
	vault_token_finish(&t1);

	/* A shorter configured reuse period is honoured. */
	{
		struct vault_options opts = { .apns_reuse_seconds = MINUTES(20) };

		CHECK_OK(tv_reopen(&t, &opts));
		CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t1));
		CHECK_INT(t1.minted, 0); /* loaded: 0 minutes old */
		vault_token_finish(&t1);
		advance_boot(MINUTES(20));
		CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t1));
		CHECK_INT(t1.minted, 1);
		vault_token_finish(&t1);
	}
	fake_wall_s = WALL_START;
	tkey_free(&a);
	tv_close(&t);
}

static void
test_apns_rejections(void)
{
	struct vault_token t1, t2, t3, t1b;
	struct vault_stats st;
	struct tkey a;
	struct tv t;
	char *other;

	tv_open(&t);
	gen_ec(&a);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &t1));

	/* The current token rejected 5 minutes after its mint: too soon to
	 * mint again; the same token. */
	advance_boot(MINUTES(5));
	CHECK_OK(apns_reject(&t, "app", t1.token, VAULT_REJECT_EXPIRED, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);
	/* A token that is not the current one (one byte off): the current. */
	other = strdup(t1.token);
	REQUIRE(other != NULL);
	other[strlen(other) - 1] ^= 0x01;
	CHECK_OK(apns_reject(&t, "app", other, VAULT_REJECT_INVALID, &t2));
	CHECK_INT(t2.minted, 0);
	CHECK_SAME_TOKEN(t2.token, t1.token);
	vault_token_finish(&t2);
	CHECK_OK(apns_reject(&t, "app", "x", VAULT_REJECT_INVALID, &t2));
	CHECK_INT(t2.minted, 0);
	vault_token_finish(&t2);
	CHECK_INT(total_mints(&t), 1);

	/* 20 minutes after the mint: a rejection of the current token mints. */
	advance_boot(MINUTES(15));
	CHECK_OK(apns_reject(&t, "app", t1.token, VAULT_REJECT_INVALID, &t2));
	CHECK_INT(t2.minted, 1);
	CHECK(strcmp(t2.token, t1.token) != 0);
	CHECK_INT(mints_for(&t, VAULT_MINT_REJECTED_INVALID), 1);
	/* Late reports of the old token change nothing. */
	CHECK_OK(apns_reject(&t, "app", t1.token, VAULT_REJECT_EXPIRED, &t3));
	CHECK_INT(t3.minted, 0);
	CHECK_SAME_TOKEN(t3.token, t2.token);
	vault_token_finish(&t3);
	/* The new one rejected at once: no new mint within 20 minutes... */
	CHECK_OK(apns_reject(&t, "app", t2.token, VAULT_REJECT_EXPIRED, &t3));
	CHECK_INT(t3.minted, 0);
	vault_token_finish(&t3);
	/* ...and at 20: "rejected_expired". */
	advance_boot(MINUTES(20));
	CHECK_OK(apns_reject(&t, "app", t2.token, VAULT_REJECT_EXPIRED, &t3));
	CHECK_INT(t3.minted, 1);
	CHECK_INT(mints_for(&t, VAULT_MINT_REJECTED_EXPIRED), 1);
	/* Past the 20 minutes, a report of a token that is not the current
	 * one (an old one, or garbage) still mints nothing. */
	advance_boot(MINUTES(25));
	CHECK_OK(apns_reject(&t, "app", t2.token, VAULT_REJECT_EXPIRED, &t1b));
	CHECK_INT(t1b.minted, 0);
	CHECK_SAME_TOKEN(t1b.token, t3.token);
	vault_token_finish(&t1b);
	CHECK_OK(apns_reject(&t, "app", other, VAULT_REJECT_INVALID, &t1b));
	CHECK_INT(t1b.minted, 0);
	vault_token_finish(&t1b);
	vault_token_finish(&t3);
	vault_stats(t.v, &st);
	CHECK_INT(st.apns_rejections, 9);
	CHECK_INT(total_mints(&t), 3);
	check_audit(&t, "key.upload apns.mint:cold apns.mint:rejected_invalid "
	    "apns.mint:rejected_expired");
	free(other);
	vault_token_finish(&t1);
	vault_token_finish(&t2);
	tkey_free(&a);
	tv_close(&t);
}

struct flight {
	struct tv *t;
	pthread_barrier_t *start;
	char *tokens[FLIGHT_CALLS];
	int errors;
};

static void *
flight_thread(void *arg)
{
	struct flight *f = arg;
	struct vault_token tok;
	int i;

	pthread_barrier_wait(f->start);
	for (i = 0; i < FLIGHT_CALLS; i++) {
		if (apns(f->t, "busy", KEY_ENV_PRODUCTION, &tok) != 0) {
			f->errors++;
			continue;
		}
		f->tokens[i] = tok.token;
		tok.token = NULL;
	}
	return NULL;
}

static void
test_apns_single_flight(void)
{
	static struct flight flights[FLIGHT_THREADS];
	pthread_t threads[FLIGHT_THREADS];
	pthread_barrier_t start;
	struct vault_stats st;
	struct tkey a;
	struct tv t;
	int i, j, same = 1, errors = 0;

	tv_open(&t);
	gen_ec(&a);
	upload_ok(&t, "busy", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	REQUIRE(pthread_barrier_init(&start, NULL, FLIGHT_THREADS) == 0);
	for (i = 0; i < FLIGHT_THREADS; i++) {
		memset(&flights[i], 0, sizeof(flights[i]));
		flights[i].t = &t;
		flights[i].start = &start;
		REQUIRE(pthread_create(&threads[i], NULL, flight_thread,
		    &flights[i]) == 0);
	}
	for (i = 0; i < FLIGHT_THREADS; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(&start);

	vault_stats(t.v, &st);
	CHECK_INT(total_mints(&t), 1);
	CHECK_INT(st.apns_mints[VAULT_MINT_COLD], 1);
	CHECK_INT(st.apns_cache_hits, FLIGHT_THREADS * FLIGHT_CALLS - 1);
	for (i = 0; i < FLIGHT_THREADS; i++) {
		errors += flights[i].errors;
		for (j = 0; j < FLIGHT_CALLS; j++)
			if (flights[i].tokens[j] == NULL ||
			    flights[0].tokens[0] == NULL ||
			    strcmp(flights[i].tokens[j],
			    flights[0].tokens[0]) != 0)
				same = 0;
	}
	for (i = 0; i < FLIGHT_THREADS; i++)
		for (j = 0; j < FLIGHT_CALLS; j++)
			free(flights[i].tokens[j]);
	CHECK_INT(errors, 0);
	CHECK(same);
	check_audit(&t, "key.upload apns.mint:cold");
	tkey_free(&a);
	tv_close(&t);
}

static void
test_apns_tampered(void)
{
	struct raw w = { .app = "app", .kid = "KEYAAAAAAA" };
	struct vault_token tok;
	struct vault_stats st;
	struct tkey a, b;
	struct tv t;
	json_t *meta = NULL;

	tv_open(&t);
	gen_ec(&a);
	gen_ec(&b);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	upload_ok(&t, "app", "KEYBBBBBBB", team_a, &b, KEY_ENV_PRODUCTION, 0);
	CHECK_OK(store_write(t.store, raw_flip_txn, &w));
	CHECK_ERR(apns(&t, "app", KEY_ENV_PRODUCTION, &tok),
	    P8V_ERR_INTEGRITY);
	CHECK(tok.token == NULL);
	/* Every caller fails alike; none is ever signed from. */
	CHECK_ERR(apns(&t, "app", KEY_ENV_PRODUCTION, &tok),
	    P8V_ERR_INTEGRITY);
	vault_stats(t.v, &st);
	CHECK_INT(total_mints(&t), 0);
	CHECK_INT(st.apns_failures, 2);
	/* Activating B would re-seal A as standby: refused, nothing changes. */
	CHECK_ERR(vault_key_activate(t.v, "app", "KEYBBBBBBB", "cli", &meta),
	    P8V_ERR_INTEGRITY);
	CHECK_STR(state_of(&t, "app", "KEYBBBBBBB"), "standby");
	/* Revoking needs no opening: the way out for a damaged record. */
	CHECK_OK(vault_key_revoke(t.v, "app", "KEYAAAAAAA", "cli", &meta));
	json_decref(meta);
	CHECK_OK(vault_key_activate(t.v, "app", "KEYBBBBBBB", "cli", &meta));
	json_decref(meta);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	CHECK_STR(tok.key_id, "KEYBBBBBBB");
	vault_token_finish(&tok);
	check_audit(&t, "key.upload key.upload key.revoke key.activate "
	    "apns.mint:cold");
	tkey_free(&a);
	tkey_free(&b);
	tv_close(&t);
}

static void
test_apns_persisted_sealed(void)
{
	struct cache_peek c = { 0 };
	struct vault_token tok;
	struct tkey a;
	struct tv t;
	char key[CACHE_KEY_MAX + 1];
	const char *sig;

	tv_open(&t);
	gen_ec(&a);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	cache_key_of(team_a, "KEYAAAAAAA", a.fp, key, sizeof(key));
	c.key = key;
	CHECK_OK(store_read(t.store, cache_get_txn, &c));
	CHECK_INT(c.expires_at, tok.issued_at + 3600);
	/* Neither the token nor its signature appears in the clear. */
	sig = strrchr(tok.token, '.');
	REQUIRE(sig != NULL && c.blob != NULL);
	CHECK(memmem(c.blob, c.len, tok.token, strlen(tok.token)) == NULL);
	CHECK(memmem(c.blob, c.len, sig + 1, 20) == NULL);
	CHECK(c.len > 33 + ENVELOPE_OVERHEAD);
	free(c.blob);
	vault_token_finish(&tok);
	tkey_free(&a);
	tv_close(&t);
}

/*
 * Master keys: a record sealed under a key that is no longer loaded is
 * master_key_missing and never signed from; a change re-seals under the
 * ring's primary key (what a master-key rotation relies on).
 */
static void
test_master_keys(void)
{
	struct keeper *ring;
	struct vault_token tok;
	struct tkey a, b;
	struct tv t;
	json_t *meta = NULL;
	uint8_t second[MASTER_KEY_BYTES];
	char first_id[MASTER_KEY_ID_HEX + 1], second_id[MASTER_KEY_ID_HEX + 1];

	tv_open(&t);
	gen_ec(&a);
	gen_ec(&b);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	upload_ok(&t, "app", "KEYBBBBBBB", team_a, &b, KEY_ENV_PRODUCTION, 0);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	vault_token_finish(&tok);
	snprintf(first_id, sizeof(first_id), "%s",
	    primary_hex(t.v->keeper));

	/* Rotation: old and new key loaded, the new one primary. */
	REQUIRE(secmem_random(second, sizeof(second)) == 0);
	ring = keeper_of(t.mk);
	REQUIRE(keeper_test_add_raw(ring, second, sizeof(second), NULL) == 0);
	snprintf(second_id, sizeof(second_id), "%s",
	    primary_hex(ring));
	CHECK(strcmp(first_id, second_id) != 0);
	vault_destroy(t.v);
	CHECK_OK(vault_create(t.store, ring, NULL, &t.v));
	/* Activating B re-seals A and B under the new primary. */
	CHECK_OK(vault_key_activate(t.v, "app", "KEYBBBBBBB", "cli", &meta));
	CHECK_STR(meta_str(meta, "master_key_id"), second_id);
	json_decref(meta);
	CHECK_OK(vault_key_get(t.v, "app", "KEYAAAAAAA", &meta));
	CHECK_STR(meta_str(meta, "master_key_id"), second_id);
	json_decref(meta);

	/* Only the new key loaded: B (re-sealed) signs. */
	memcpy(t.mk, second, sizeof(second));
	CHECK_OK(tv_reopen(&t, NULL));
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	CHECK_STR(tok.key_id, "KEYBBBBBBB");
	vault_token_finish(&tok);
	{
		struct tkey c;
		uint8_t first[MASTER_KEY_BYTES];

		gen_ec(&c);
		/* A third key added as primary: C is sealed under it. */
		REQUIRE(secmem_random(first, sizeof(first)) == 0);
		ring = keeper_of(second);
		REQUIRE(keeper_test_add_raw(ring, first, sizeof(first),
		    NULL) == 0);
		vault_destroy(t.v);
		CHECK_OK(vault_create(t.store, ring, NULL, &t.v));
		upload_ok(&t, "app2", "KEYCCCCCCC", team_b, &c,
		    KEY_ENV_PRODUCTION, 1);
		/* Now only the second key: C's master key is missing. */
		CHECK_OK(tv_reopen(&t, NULL));
		CHECK_ERR(apns(&t, "app2", KEY_ENV_PRODUCTION, &tok),
		    P8V_ERR_MASTER_KEY_MISSING);
		CHECK(tok.token == NULL);
		CHECK_INT(total_mints(&t), 0);
		tkey_free(&c);
	}
	tkey_free(&a);
	tkey_free(&b);
	tv_close(&t);
}

/* --- vault_sign_app --- */

/* The fields of a devicecheck token (no fields: iss and iat only). */
static void
devicecheck(struct keeper_profile *f)
{
	memset(f, 0, sizeof(*f));
	f->kind = KEEPER_PROFILE_DEVICECHECK;
}

static void
test_sign_app(void)
{
	struct keeper_profile f;
	struct vault_token tok;
	struct vault_stats st;
	struct tkey a, b;
	struct tv t;
	char *header = NULL, *claims = NULL;

	tv_open(&t);
	gen_ec(&a);
	gen_ec(&b);
	CHECK_OK(upload(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_BOTH,
	    KEY_SERVICE_APNS | KEY_SERVICE_DEVICECHECK, 1, NULL, NULL));
	devicecheck(&f);
	CHECK_OK(vault_sign_app(t.v, "app", KEY_ENV_BOTH, &f, "svc", &tok));
	REQUIRE(tok.token != NULL);
	CHECK_OK(jwt_verify_es256(a.pub, tok.token, strlen(tok.token)));
	REQUIRE(jwt_parts(tok.token, &header, &claims) == 0);
	CHECK_STR(header, "{\"alg\":\"ES256\",\"kid\":\"KEYAAAAAAA\"}");
	CHECK_INT(tok.issued_at, fake_wall_s);
	/* No exp: Apple takes it for an hour. */
	CHECK_INT(tok.expires_at, fake_wall_s + VAULT_APNS_LIFETIME_S);
	CHECK_INT(tok.minted, 1);
	free(header);
	free(claims);
	vault_token_finish(&tok);

	/* Not uploaded for the service; fields the keeper refuses (a
	 * lifetime devicecheck does not take, a subject it does not take);
	 * an unknown profile; an unknown app. */
	f.kind = KEEPER_PROFILE_MUSICKIT;
	f.expires_in = 3600;
	CHECK_ERR(vault_sign_app(t.v, "app", KEY_ENV_BOTH, &f, "svc", &tok),
	    P8V_ERR_SERVICE_NOT_ALLOWED);
	devicecheck(&f);
	f.expires_in = 600;
	CHECK_ERR(vault_sign_app(t.v, "app", KEY_ENV_BOTH, &f, "svc", &tok),
	    P8V_ERR_INVALID_ARGUMENT);
	devicecheck(&f);
	snprintf(f.subject, sizeof(f.subject), "%s", "com.example");
	CHECK_ERR(vault_sign_app(t.v, "app", KEY_ENV_BOTH, &f, "svc", &tok),
	    P8V_ERR_INVALID_ARGUMENT);
	devicecheck(&f);
	f.kind = KEEPER_PROFILES;
	CHECK_ERR(vault_sign_app(t.v, "app", KEY_ENV_BOTH, &f, "svc", &tok),
	    P8V_ERR_INVALID_ARGUMENT);
	devicecheck(&f);
	CHECK_ERR(vault_sign_app(t.v, "none", KEY_ENV_BOTH, &f, "svc", &tok),
	    P8V_ERR_APP_NOT_FOUND);
	CHECK(tok.token == NULL);
	vault_stats(t.v, &st);
	CHECK_INT(st.app_signs, 1);
	CHECK_INT(st.app_sign_failures, 2);
	CHECK_INT(total_mints(&t), 0);
	/* Audit-free. */
	check_audit(&t, "key.upload");
	tkey_free(&a);
	tkey_free(&b);
	tv_close(&t);
}

/* --- the wrap budget --- */

struct wraps {
	const uint8_t *id;
	uint64_t set, got;
};

static int
wraps_get_txn(struct store_txn *txn, void *arg)
{
	struct wraps *w = arg;

	return store_master_key_wraps(txn, w->id, &w->got);
}

static int
wraps_set_txn(struct store_txn *txn, void *arg)
{
	struct wraps *w = arg;
	uint64_t now = 0;
	int r;

	if ((r = store_master_key_wraps(txn, w->id, &now)) != 0)
		return r;
	return store_master_key_wraps_add(txn, w->id, w->set - now, NULL);
}

static uint64_t
wraps_of(struct tv *t, const uint8_t *id)
{
	struct wraps w = { id, 0, 0 };

	REQUIRE(store_read(t->store, wraps_get_txn, &w) == 0);
	return w.got;
}

/* Run fn with stderr (the log) in a file; the file's text (malloc'd). */
static char *
logged(void (*fn)(struct tv *, void *), struct tv *t, void *arg)
{
	char path[4096];
	uint8_t *text = NULL;
	size_t len = 0;
	int fd, saved;

	snprintf(path, sizeof(path), "%s/log", t->dir);
	fflush(stderr);
	REQUIRE((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
	REQUIRE((saved = dup(2)) >= 0);
	REQUIRE(dup2(fd, 2) == 2);
	close(fd);
	log_set_level(LOG_LEVEL_WARN);
	fn(t, arg);
	log_set_level(LOG_LEVEL_ERROR);
	fflush(stderr);
	REQUIRE(dup2(saved, 2) == 2);
	close(saved);
	REQUIRE(tu_read_file(path, &text, &len) == 0);
	text = realloc(text, len + 1);
	REQUIRE(text != NULL);
	text[len] = '\0';
	return (char *)text;
}

static void
upload_c(struct tv *t, void *arg)
{
	upload_ok(t, "app", "KEYCCCCCCC", team_a, arg, KEY_ENV_PRODUCTION, 0);
}

static void
activate_c(struct tv *t, void *arg)
{
	json_t *meta = NULL;

	(void)arg;
	CHECK_OK(vault_key_activate(t->v, "app", "KEYCCCCCCC", "cli", &meta));
	json_decref(meta);
}

/*
 * Every new envelope counts against its master key, in the transaction
 * that stores it: an upload, the re-seals of a change (the key and the
 * one it demotes), an APNs token's copy. Past 2^30 a warning names the
 * key.
 */
static void
test_wrap_budget(void)
{
	struct keeper_status st;
	struct vault_token tok;
	struct tkey a, b, c;
	struct wraps w;
	struct tv t;
	json_t *meta = NULL;
	char *log;
	const uint8_t *id;

	tv_open(&t);
	REQUIRE(keeper_status(t.v->keeper, &st) == 0);
	id = st.keys[st.primary].id;
	CHECK_INT(wraps_of(&t, id), 0);
	gen_ec(&a);
	gen_ec(&b);
	gen_ec(&c);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_INT(wraps_of(&t, id), 1);
	/* B active: A demoted, re-sealed; B's own seal. */
	upload_ok(&t, "app", "KEYBBBBBBB", team_a, &b, KEY_ENV_PRODUCTION, 1);
	CHECK_INT(wraps_of(&t, id), 3);
	/* An APNs token's sealed copy. */
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	vault_token_finish(&tok);
	CHECK_INT(wraps_of(&t, id), 4);
	/* A revocation seals nothing. */
	CHECK_OK(vault_key_revoke(t.v, "app", "KEYAAAAAAA", "cli", &meta));
	json_decref(meta);
	CHECK_INT(wraps_of(&t, id), 4);

	/* Just below the mark: the upload that passes it warns. */
	w.id = id;
	w.set = ENVELOPE_WRAPS_WARN - 1;
	REQUIRE(store_write(t.store, wraps_set_txn, &w) == 0);
	log = logged(upload_c, &t, &c);
	CHECK_INT(wraps_of(&t, id), ENVELOPE_WRAPS_WARN);
	CHECKF(strstr(log, "master_key_wrap_budget") != NULL &&
	    strstr(log, st.keys[st.primary].id_hex) != NULL,
	    "no wrap budget warning: %s", log);
	free(log);
	/* Past it, the next wraps do not warn again (until 2^20 more). */
	log = logged(activate_c, &t, NULL);
	CHECK_INT(wraps_of(&t, id), ENVELOPE_WRAPS_WARN + 2);
	CHECKF(strstr(log, "master_key_wrap_budget") == NULL,
	    "warned twice: %s", log);
	free(log);
	tkey_free(&a);
	tkey_free(&b);
	tkey_free(&c);
	tv_close(&t);
}

/* With the real clocks: iat is now. */
static void
test_real_clocks(void)
{
	struct vault_token tok;
	struct tkey a;
	struct tv t;
	time_t before = time(NULL);

	vault_test_set_clocks(NULL, NULL);
	tv_open(&t);
	gen_ec(&a);
	upload_ok(&t, "app", "KEYAAAAAAA", team_a, &a, KEY_ENV_PRODUCTION, 1);
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	CHECK(tok.issued_at >= before && tok.issued_at <= time(NULL));
	vault_token_finish(&tok);
	CHECK_OK(tv_reopen(&t, NULL));
	CHECK_OK(apns(&t, "app", KEY_ENV_PRODUCTION, &tok));
	CHECK_INT(tok.minted, 0);
	vault_token_finish(&tok);
	tkey_free(&a);
	tv_close(&t);
	vault_test_set_clocks(t_wall, t_boot);
}

/*
 * Locked memory of this process in kB (VmLck), or -1. Guarded blocks are
 * mlock'd, so an unchanged VmLck after every vault is destroyed shows that
 * no scalar, token or master key was left behind. ASan's mlock interceptor
 * does nothing, so the balance is checked only without it.
 */
#ifdef __SANITIZE_ADDRESS__
#define LOCKED_KB_WORKS 0
#else
#define LOCKED_KB_WORKS 1
#endif

static long
locked_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	fclose(f);
	/* Blocks from secmem_alloc_short are locked inside OpenSSL's secure
	 * heap, which VmLck counted once at secmem_init: add them, in kB
	 * rounded up, so that one left behind still shows. */
	return kb < 0 ? kb : kb + (long)((secmem_short_bytes() + 1023) / 1024);
}

/* --- key identity across apps (issue 15) --- */

static size_t
warnings_of(const json_t *meta)
{
	return json_array_size(json_object_get(meta, "warnings"));
}

static void
test_key_identity(void)
{
	static const char team_c[] = "TEAMCCCCC3";
	struct tkey k1, k2, w1, w2, w3;
	struct vault_token a, b;
	struct tv t;
	json_t *meta = NULL, *arr = NULL, *req;
	char fp[KEY_RECORD_FINGERPRINT_HEX + 1], upper[sizeof(fp)];
	const char *detail;
	size_t i;
	int created = -1;

	tv_open(&t);
	gen_ec(&k1);
	gen_ec(&k2);
	CHECK_OK(upload(&t, "id.one", "KEY0000001", team_a, &k1,
	    KEY_ENV_PRODUCTION, 0, 1, &meta, &created));
	snprintf(fp, sizeof(fp), "%s", meta_str(meta, "fingerprint"));
	json_decref(meta);
	/* The same key under the same ids in another app: allowed. */
	upload_ok(&t, "id.two", "KEY0000001", team_a, &k1, KEY_ENV_PRODUCTION,
	    1);
	/* Under another Key ID or Team ID, in any app: refused. */
	CHECK_ERR(upload(&t, "id.three", "KEY0000009", team_a, &k1,
	    KEY_ENV_PRODUCTION, 0, 1, NULL, &created),
	    P8V_ERR_KEY_IDENTITY_CONFLICT);
	CHECK_ERR(upload(&t, "id.three", "KEY0000001", team_b, &k1,
	    KEY_ENV_PRODUCTION, 0, 1, NULL, &created),
	    P8V_ERR_KEY_IDENTITY_CONFLICT);
	CHECK_STR(state_of(&t, "id.three", "KEY0000001"), "");
	/* Other material under the same ids elsewhere is another key. */
	upload_ok(&t, "id.three", "KEY0000002", team_a, &k2,
	    KEY_ENV_PRODUCTION, 1);

	/* Every copy, by fingerprint, in either case. */
	CHECK_OK(vault_key_find(t.v, fp, &arr));
	CHECK_INT(json_array_size(arr), 2);
	CHECK_STR(meta_str(json_array_get(arr, 0), "app"), "id.one");
	CHECK_STR(meta_str(json_array_get(arr, 1), "app"), "id.two");
	json_decref(arr);
	for (i = 0; i < sizeof(upper); i++)
		upper[i] = (char)toupper((unsigned char)fp[i]);
	CHECK_OK(vault_key_find(t.v, upper, &arr));
	CHECK_INT(json_array_size(arr), 2);
	json_decref(arr);
	CHECK_ERR(vault_key_find(t.v, "abc", &arr), P8V_ERR_BAD_FIELD);
	CHECK(arr == NULL);

	/* Revoke every copy in one go; audited, tokens dropped. */
	CHECK_OK(vault_apns_token(t.v, "id.two", KEY_ENV_BOTH, NULL,
	    VAULT_REJECT_NONE, "svc", &a));
	vault_token_finish(&a);
	CHECK_OK(vault_key_revoke_fingerprint(t.v, fp, "cli", &arr));
	CHECK_INT(json_array_size(arr), 2);
	for (i = 0; i < json_array_size(arr); i++)
		CHECK_STR(meta_str(json_array_get(arr, i), "state"), "revoked");
	json_decref(arr);
	CHECK_STR(state_of(&t, "id.three", "KEY0000002"), "active");
	CHECK_ERR(vault_apns_token(t.v, "id.two", KEY_ENV_BOTH, NULL,
	    VAULT_REJECT_NONE, "svc", &a), P8V_ERR_NO_ACTIVE_KEY);
	CHECK_ERR(vault_key_revoke_fingerprint(t.v, fp, "cli", &arr),
	    P8V_ERR_KEY_REVOKED);
	CHECK_ERR(vault_key_revoke_fingerprint(t.v,
	    "00000000000000000000000000000000"
	    "00000000000000000000000000000000", "cli", &arr),
	    P8V_ERR_KEY_NOT_FOUND);
	check_audit(&t, "key.upload key.upload key.upload apns.mint:cold "
	    "key.revoke key.revoke");
	/* A revoked copy signs nothing: the key may come back under the
	 * right ids (the way to correct swapped ones). */
	upload_ok(&t, "id.four", "KEY0000005", team_b, &k1,
	    KEY_ENV_PRODUCTION, 1);

	/* A team with a second active APNs key for an environment: a
	 * warning; for another environment, or standby, none. */
	gen_ec(&w1);
	gen_ec(&w2);
	gen_ec(&w3);
	CHECK_OK(upload(&t, "w.one", "WKEY000001", team_c, &w1,
	    KEY_ENV_PRODUCTION, 0, 1, &meta, &created));
	CHECK_INT(warnings_of(meta), 0);
	json_decref(meta);
	CHECK_OK(upload(&t, "w.two", "WKEY000002", team_c, &w2,
	    KEY_ENV_DEVELOPMENT, 0, 1, &meta, &created));
	CHECK_INT(warnings_of(meta), 0);
	json_decref(meta);
	CHECK_OK(upload(&t, "w.two", "WKEY000003", team_c, &w3,
	    KEY_ENV_PRODUCTION, 0, 0, &meta, &created));
	CHECK_INT(warnings_of(meta), 0);
	json_decref(meta);
	CHECK_OK(vault_key_activate(t.v, "w.two", "WKEY000003", "portal",
	    &meta));
	CHECK_INT(warnings_of(meta), 1);
	{
		const json_t *w = json_array_get(json_object_get(meta,
		    "warnings"), 0), *o;

		CHECK_STR(meta_str(w, "code"), "multiple_active_apns_keys");
		CHECK_STR(meta_str(w, "team_id"), team_c);
		CHECK_STR(meta_str(w, "environment"), "production");
		CHECK(strstr(meta_str(w, "message"), "connection") != NULL);
		o = json_object_get(w, "other_keys");
		CHECK_INT(json_array_size(o), 1);
		CHECK_STR(meta_str(json_array_get(o, 0), "key_id"),
		    "WKEY000001");
	}
	json_decref(meta);
	/* The same key in another app is not a second key. */
	CHECK_OK(upload(&t, "w.three", "WKEY000001", team_c, &w1,
	    KEY_ENV_PRODUCTION, 0, 1, &meta, &created));
	CHECK_INT(warnings_of(meta), 1);
	CHECK_INT(json_array_size(json_object_get(json_array_get(
	    json_object_get(meta, "warnings"), 0), "other_keys")), 1);
	json_decref(meta);

	/* DeviceCheck: the shared APNs token of a key allowed devicecheck. */
	tkey_free(&k2);
	gen_ec(&k2);
	upload_ok(&t, "dc.app", "DCKEY00001", team_a, &k2, KEY_ENV_BOTH, 1);
	REQUIRE((req = json_pack("{s:s}", "profile", "devicecheck")) != NULL);
	CHECK_ERR(vault_profile_token(t.v, "dc.app", req, "svc", &b, &detail),
	    P8V_ERR_SERVICE_NOT_ALLOWED);
	/* Without apns: none either (the token is one APNs takes). */
	tkey_free(&k2);
	gen_ec(&k2);
	CHECK_OK(upload(&t, "dc.only", "DCKEY00003", team_a, &k2,
	    KEY_ENV_BOTH, KEY_SERVICE_DEVICECHECK, 1, NULL, &created));
	CHECK_ERR(vault_profile_token(t.v, "dc.only", req, "svc", &b,
	    &detail), P8V_ERR_SERVICE_NOT_ALLOWED);
	json_decref(req);
	tkey_free(&k2);
	gen_ec(&k2);
	CHECK_OK(upload(&t, "dc.both", "DCKEY00002", team_a, &k2,
	    KEY_ENV_BOTH, KEY_SERVICE_APNS | KEY_SERVICE_DEVICECHECK, 1, NULL,
	    &created));
	REQUIRE((req = json_pack("{s:s}", "profile", "devicecheck")) != NULL);
	CHECK_OK(vault_profile_token(t.v, "dc.both", req, "svc", &b, &detail));
	CHECK_INT(b.minted, 1);
	CHECK_INT(b.expires_at, b.issued_at + VAULT_APNS_LIFETIME_S);
	CHECK_OK(vault_apns_token(t.v, "dc.both", KEY_ENV_BOTH, NULL,
	    VAULT_REJECT_NONE, "svc", &a));
	CHECK_INT(a.minted, 0);
	CHECK_STR(a.token, b.token);
	vault_token_finish(&a);
	vault_token_finish(&b);
	CHECK_OK(vault_profile_token(t.v, "dc.both", req, "svc", &b, &detail));
	CHECK_INT(b.minted, 0);
	vault_token_finish(&b);
	json_decref(req);

	tkey_free(&k1);
	tkey_free(&k2);
	tkey_free(&w1);
	tkey_free(&w2);
	tkey_free(&w3);
	tv_close(&t);
}

int
main(void)
{
	long locked_before;

	REQUIRE(secmem_init() == 0);
	log_set_level(LOG_LEVEL_ERROR);
	vault_test_set_clocks(t_wall, t_boot);
	locked_before = locked_kb();

	test_options();
	test_upload_meta();
	test_upload_idempotence();
	test_key_identity();
	test_upload_refusals();
	test_activation();
	test_revoke();
	test_apns_token();
	test_apns_environments();
	test_apns_shared_and_restart();
	test_apns_key_change();
	test_apns_clocks();
	test_apns_rejections();
	test_apns_single_flight();
	test_apns_tampered();
	test_apns_persisted_sealed();
	test_master_keys();
	test_sign_app();
	test_wrap_budget();
	test_real_clocks();

	if (LOCKED_KB_WORKS)
		CHECK_INT(locked_kb(), locked_before);
	return check_finish();
}
