/*
 * test_keeper.c: the keeper (keeper/keeper.h), alone: no store, no vault.
 *
 * - keys: status, primary, replace, files; an empty keeper seals nothing.
 * - seal: the .p8 is parsed by the keeper (bad ones refused as p8_parse
 *   refuses them), point and fingerprint filled, the envelope opens under
 *   the record's AAD (vouch), names the primary key.
 * - vouch: a record with altered metadata, moved to another app or Key ID,
 *   or with its envelope swapped for another record's fails with
 *   P8V_ERR_INTEGRITY (step "open"); a record sealed under a key not
 *   loaded is P8V_ERR_MASTER_KEY_MISSING.
 * - re-seal: state, environment, services, topics, version, updated_at
 *   may change (the new envelope opens under the new AAD, not the old);
 *   app, Key ID, Team ID, fingerprint, point, created_at, created_by may
 *   not (P8V_ERR_INVALID_ARGUMENT).
 * - rewrap: under another loaded key, the payload and AAD unchanged.
 * - APNs: the token's exact header and claims (kid, iss from the record,
 *   iat from the keeper's clock), its signature, the sealed copy opens
 *   under its key, not under another, and survives a rewrap; a record
 *   without "apns" is refused.
 * - profiles: the keeper builds header and claims (weatherkit's "id"),
 *   refuses every field past its limit even when no parser ran.
 */
#include "keeper/keeper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/jwt.h"
#include "crypto/masterkey.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "keeper/keeper_test.h"
#include "keeper/profile.h"
#include "tests/check.h"

#define NOW 1800000000

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int64_t
fake_wall(void)
{
	return NOW;
}

static int64_t
fake_boot(void)
{
	return INT64_C(5000000000);
}

/* A fresh P-256 .p8 (guarded) and its point. */
static uint8_t *
gen_p8(size_t *len, uint8_t pub[P8_PUBLIC_BYTES])
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	BIO *bio = BIO_new(BIO_s_secmem());
	struct p8_key *key = NULL;
	uint8_t *pem;
	char *data;
	long n;

	REQUIRE(pkey != NULL && bio != NULL);
	REQUIRE(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL,
	    NULL) == 1);
	n = BIO_get_mem_data(bio, &data);
	REQUIRE(n > 0 && (pem = secmem_alloc((size_t)n)) != NULL);
	memcpy(pem, data, (size_t)n);
	*len = (size_t)n;
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	REQUIRE(p8_parse(pem, *len, &key) == 0);
	REQUIRE(p8_key_public_point(key, pub) == 0);
	p8_key_destroy(key);
	return pem;
}

static struct keeper *
keeper_with(const uint8_t *const *raws, size_t n)
{
	struct keeper *k = NULL;
	size_t i;

	REQUIRE(keeper_create(&k) == 0);
	for (i = 0; i < n; i++)
		REQUIRE(keeper_test_add_raw(k, raws[i], MASTER_KEY_BYTES,
		    NULL) == 0);
	return k;
}

/* The clear fields of a record, not yet sealed. */
static void
record(struct key_record *rec, const char *app, const char *kid)
{
	static const char *const topics[] = { "com.example.app" };

	memset(rec, 0, sizeof(*rec));
	snprintf(rec->app, sizeof(rec->app), "%s", app);
	snprintf(rec->key_id, sizeof(rec->key_id), "%s", kid);
	snprintf(rec->team_id, sizeof(rec->team_id), "%s", "TEAM000001");
	snprintf(rec->created_by, sizeof(rec->created_by), "%s", "test");
	rec->environment = KEY_ENV_PRODUCTION;
	rec->services = KEY_SERVICE_APNS | KEY_SERVICE_WEATHERKIT;
	rec->state = KEY_STATE_ACTIVE;
	rec->created_at = rec->updated_at = NOW - 100;
	rec->version = 1;
	REQUIRE(key_record_set_topics(rec, topics, 1) == 0);
}

/* rec's bytes as the keeper takes them; *aad malloc'd. */
static void
kr_of(const struct key_record *rec, uint8_t **aad,
    struct keeper_record *kr)
{
	size_t len = 0;

	REQUIRE(key_record_aad(rec, aad, &len) == 0);
	kr->aad = *aad;
	kr->aad_len = len;
	kr->env = rec->envelope;
	kr->env_len = rec->envelope_len;
}

static int
vouch(struct keeper *k, const struct key_record *rec, enum keeper_step *step)
{
	struct keeper_record kr;
	uint8_t *aad = NULL;
	int r;

	kr_of(rec, &aad, &kr);
	r = keeper_vouch(k, &kr, step);
	free(aad);
	return r;
}

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

		REQUIRE(p != NULL && s[i] != '\0');
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

static void
parts(const char *token, char **header, char **claims)
{
	const char *d1 = strchr(token, '.'), *d2;

	REQUIRE(d1 != NULL && (d2 = strchr(d1 + 1, '.')) != NULL);
	*header = b64_text(token, (size_t)(d1 - token));
	*claims = b64_text(d1 + 1, (size_t)(d2 - d1 - 1));
}

static uint8_t raw1[MASTER_KEY_BYTES], raw2[MASTER_KEY_BYTES];

static void
test_keys(void)
{
	const uint8_t *both[] = { raw1, raw2 };
	struct keeper *k = keeper_with(both, 2), *e = NULL, *f;
	struct keeper_status st;
	struct keeper_key_info info;
	struct key_record rec;
	uint8_t pub[P8_PUBLIC_BYTES];
	uint8_t *p8;
	size_t len;

	CHECK_OK(keeper_status(k, &st));
	CHECK_INT(st.n, 2);
	CHECK_INT(st.primary, 1);       /* the last one loaded */
	CHECK_INT(strlen(st.keys[0].id_hex), MASTER_KEY_ID_HEX);
	CHECK(keeper_has_key(k, st.keys[0].id));
	CHECK_OK(keeper_set_primary(k, st.keys[0].id));
	CHECK_OK(keeper_status(k, &st));
	CHECK_INT(st.primary, 0);
	/* The same key twice is held once. */
	CHECK_OK(keeper_test_add_raw(k, raw1, sizeof(raw1), &info));
	CHECK_MEM(info.id, st.keys[0].id, MASTER_KEY_ID_BYTES);
	CHECK_OK(keeper_status(k, &st));
	CHECK_INT(st.n, 2);
	/* No such file. */
	CHECK_ERR(keeper_load_file(k, "/nonexistent/p8v.key", &info),
	    P8V_ERR_NOT_FOUND);

	/* An empty keeper seals nothing and cannot replace a ring. */
	REQUIRE(keeper_create(&e) == 0);
	p8 = gen_p8(&len, pub);
	record(&rec, "app", "KEY0000001");
	CHECK_ERR(keeper_seal(e, p8, len, &rec, NULL), P8V_ERR_NO_MASTER_KEY);
	CHECK(rec.envelope == NULL);
	REQUIRE(keeper_create(&f) == 0);
	CHECK_ERR(keeper_replace(k, f), P8V_ERR_NO_MASTER_KEY);
	/* Replacing: the fresh keeper's keys, and only those. */
	f = keeper_with(both + 1, 1);
	CHECK_OK(keeper_replace(k, f));
	CHECK_OK(keeper_status(k, &st));
	CHECK_INT(st.n, 1);
	key_record_free(&rec);
	secmem_free(p8);
	keeper_destroy(e);
	keeper_destroy(k);
}

static void
test_seal_vouch(void)
{
	const uint8_t *one[] = { raw1 }, *two[] = { raw2 };
	struct keeper *k = keeper_with(one, 1), *other = keeper_with(two, 1);
	struct keeper_status st;
	struct key_record rec, moved;
	enum keeper_step step;
	uint8_t pub[P8_PUBLIC_BYTES], id[MASTER_KEY_ID_BYTES];
	uint8_t bad[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n"
	    "-----END PRIVATE KEY-----\n";
	uint8_t *p8;
	size_t len;

	p8 = gen_p8(&len, pub);
	record(&rec, "app", "KEY0000001");
	/* The keeper parses the .p8 itself. */
	CHECK(keeper_seal(k, bad, sizeof(bad) - 1, &rec, id) != 0);
	CHECK(rec.envelope == NULL);
	CHECK_OK(keeper_seal(k, p8, len, &rec, id));
	CHECK_MEM(rec.public_point, pub, P8_PUBLIC_BYTES);
	CHECK_INT(strlen(rec.fingerprint), KEY_RECORD_FINGERPRINT_HEX);
	CHECK_OK(keeper_status(k, &st));
	CHECK_MEM(id, st.keys[0].id, MASTER_KEY_ID_BYTES);
	REQUIRE(rec.envelope != NULL);
	/* Vouch: twice (the second from the memo), same answer. */
	CHECK_OK(vouch(k, &rec, &step));
	CHECK_INT(step, KEEPER_STEP_NONE);
	CHECK_OK(vouch(k, &rec, &step));
	/* Another master key: missing. */
	CHECK_ERR(vouch(other, &rec, &step), P8V_ERR_MASTER_KEY_MISSING);
	/* Altered metadata: every clear field is authenticated. */
	REQUIRE(key_record_copy(&moved, &rec) == 0);
	moved.state = KEY_STATE_STANDBY;
	CHECK_ERR(vouch(k, &moved, &step), P8V_ERR_INTEGRITY);
	CHECK_INT(step, KEEPER_STEP_OPEN);
	moved.state = rec.state;
	moved.version++;
	CHECK_ERR(vouch(k, &moved, &step), P8V_ERR_INTEGRITY);
	moved.version--;
	moved.services |= KEY_SERVICE_MUSICKIT;
	CHECK_ERR(vouch(k, &moved, &step), P8V_ERR_INTEGRITY);
	moved.services = rec.services;
	/* Moved to another app, another Key ID. */
	snprintf(moved.app, sizeof(moved.app), "%s", "other");
	CHECK_ERR(vouch(k, &moved, &step), P8V_ERR_INTEGRITY);
	snprintf(moved.app, sizeof(moved.app), "%s", rec.app);
	snprintf(moved.key_id, sizeof(moved.key_id), "%s", "KEY0000002");
	CHECK_ERR(vouch(k, &moved, &step), P8V_ERR_INTEGRITY);
	snprintf(moved.key_id, sizeof(moved.key_id), "%s", rec.key_id);
	CHECK_OK(vouch(k, &moved, &step));
	/* One flipped bit of the envelope. */
	moved.envelope[moved.envelope_len - 1] ^= 1;
	CHECK_ERR(vouch(k, &moved, &step), P8V_ERR_INTEGRITY);
	key_record_free(&moved);
	/* A record whose sealed scalar is not its point's (sealed here
	 * with the master key directly): caught by the scalar check. */
	{
		struct key_record wrong;
		struct master_key *mk = NULL;
		uint8_t scalar[P8_SCALAR_BYTES], *waad = NULL;
		size_t waad_len = 0;

		REQUIRE(master_key_create(raw1, sizeof(raw1), &mk) == 0);
		REQUIRE(key_record_copy(&wrong, &rec) == 0);
		snprintf(wrong.key_id, sizeof(wrong.key_id), "%s", "KEY0000003");
		free(wrong.envelope);
		memset(scalar, 0, sizeof(scalar));
		scalar[31] = 7;         /* a valid scalar, of another point */
		REQUIRE(key_record_aad(&wrong, &waad, &waad_len) == 0);
		REQUIRE(envelope_seal(mk, waad, waad_len, scalar,
		    sizeof(scalar), &wrong.envelope, &wrong.envelope_len) == 0);
		CHECK_ERR(vouch(k, &wrong, &step), P8V_ERR_INTEGRITY);
		CHECK_INT(step, KEEPER_STEP_SCALAR);
		/* Not remembered as good: refused again. */
		CHECK_ERR(vouch(k, &wrong, &step), P8V_ERR_INTEGRITY);
		free(waad);
		key_record_free(&wrong);
		master_key_destroy(mk);
	}
	/* Not a record: AAD garbage, NULLs. */
	{
		struct keeper_record kr = { (const uint8_t *)"junk", 4,
		    rec.envelope, rec.envelope_len };

		CHECK_ERR(keeper_vouch(k, &kr, &step), P8V_ERR_INTEGRITY);
		CHECK_INT(step, KEEPER_STEP_AAD);
		CHECK_ERR(keeper_vouch(k, NULL, &step),
		    P8V_ERR_INVALID_ARGUMENT);
	}
	key_record_free(&rec);
	secmem_free(p8);
	keeper_destroy(k);
	keeper_destroy(other);
}

static void
test_reseal_rewrap(void)
{
	const uint8_t *one[] = { raw1 }, *both[] = { raw1, raw2 };
	struct keeper *k = keeper_with(one, 1), *k2 = keeper_with(both, 2);
	struct keeper_status st;
	struct key_record rec, next, bad;
	struct keeper_record kr;
	enum keeper_step step;
	static const char *const topics[] = { "a.b", "c.d" };
	uint8_t pub[P8_PUBLIC_BYTES], id[MASTER_KEY_ID_BYTES];
	uint8_t *p8, *aad = NULL, *env = NULL;
	size_t len, env_len = 0;

	p8 = gen_p8(&len, pub);
	record(&rec, "app", "KEY0000001");
	REQUIRE(keeper_seal(k, p8, len, &rec, NULL) == 0);
	kr_of(&rec, &aad, &kr);

	/* What a metadata change may change. */
	REQUIRE(key_record_copy(&next, &rec) == 0);
	next.state = KEY_STATE_STANDBY;
	next.environment = KEY_ENV_BOTH;
	next.services = KEY_SERVICE_APNS;
	REQUIRE(key_record_set_topics(&next, topics, 2) == 0);
	next.version = 2;
	next.updated_at = NOW;
	CHECK_OK(keeper_reseal(k2, &kr, &next, &env, &env_len, id));
	CHECK_OK(keeper_status(k2, &st));
	CHECK_MEM(id, st.keys[1].id, MASTER_KEY_ID_BYTES); /* the primary */
	free(next.envelope);
	next.envelope = env;
	next.envelope_len = env_len;
	env = NULL;
	CHECK_OK(vouch(k2, &next, &step));
	/* The new envelope is bound to the new metadata... */
	{
		struct key_record old_meta;

		REQUIRE(key_record_copy(&old_meta, &next) == 0);
		old_meta.state = rec.state;
		old_meta.version = rec.version;
		CHECK_ERR(vouch(k2, &old_meta, &step), P8V_ERR_INTEGRITY);
		key_record_free(&old_meta);
	}
	/* ...and needs the new primary. */
	CHECK_ERR(vouch(k, &next, &step), P8V_ERR_MASTER_KEY_MISSING);

	/* What it may not change: each refused, nothing opened. */
#define REFUSED(change) do { \
	REQUIRE(key_record_copy(&bad, &rec) == 0); \
	bad.version = 2; \
	change; \
	CHECK_ERR(keeper_reseal(k2, &kr, &bad, &env, &env_len, NULL), \
	    P8V_ERR_INVALID_ARGUMENT); \
	CHECK(env == NULL); \
	key_record_free(&bad); \
} while (0)
	REFUSED(snprintf(bad.app, sizeof(bad.app), "%s", "other"));
	REFUSED(snprintf(bad.key_id, sizeof(bad.key_id), "%s", "KEY0000009"));
	REFUSED(snprintf(bad.team_id, sizeof(bad.team_id), "%s",
	    "TEAM000002"));
	REFUSED(bad.fingerprint[0] = bad.fingerprint[0] == 'a' ? 'b' : 'a');
	REFUSED(bad.public_point[10] ^= 1);
	REFUSED(bad.created_at--);
	REFUSED(snprintf(bad.created_by, sizeof(bad.created_by), "%s",
	    "tok_other"));
#undef REFUSED
	/* An old record that does not open; an empty keeper. */
	{
		struct keeper *e = NULL;
		struct keeper_record tampered = kr;
		uint8_t *copy = malloc(kr.env_len);

		REQUIRE(copy != NULL);
		memcpy(copy, kr.env, kr.env_len);
		copy[20] ^= 1;
		tampered.env = copy;
		CHECK_ERR(keeper_reseal(k2, &tampered, &next, &env, &env_len,
		    NULL), P8V_ERR_INTEGRITY);
		free(copy);
		REQUIRE(keeper_create(&e) == 0);
		CHECK_ERR(keeper_reseal(e, &kr, &next, &env, &env_len, NULL),
		    P8V_ERR_NO_MASTER_KEY);
		keeper_destroy(e);
	}

	/* Rewrap under raw2's key: same AAD, opens with raw2 alone. */
	CHECK_OK(keeper_status(k2, &st));
	CHECK_OK(keeper_rewrap(k2, &kr, st.keys[1].id, &env, &env_len));
	CHECK_OK(envelope_master_key_id(env, env_len, id));
	CHECK_MEM(id, st.keys[1].id, MASTER_KEY_ID_BYTES);
	free(rec.envelope);
	rec.envelope = env;
	rec.envelope_len = env_len;
	env = NULL;
	{
		const uint8_t *only2[] = { raw2 };
		struct keeper *k3 = keeper_with(only2, 1);

		CHECK_OK(vouch(k3, &rec, &step));
		keeper_destroy(k3);
	}
	/* Not a record's AAD; a target not loaded. */
	{
		struct keeper_record junk = { (const uint8_t *)"junk", 4,
		    rec.envelope, rec.envelope_len };
		uint8_t none[MASTER_KEY_ID_BYTES] = { 0 };

		CHECK_ERR(keeper_rewrap(k2, &junk, NULL, &env, &env_len),
		    P8V_ERR_INTEGRITY);
		CHECK_ERR(keeper_rewrap(k2, &kr, none, &env, &env_len),
		    P8V_ERR_NOT_FOUND);
	}
	free(aad);
	key_record_free(&rec);
	key_record_free(&next);
	secmem_free(p8);
	keeper_destroy(k);
	keeper_destroy(k2);
}

static void
test_apns(void)
{
	const uint8_t *one[] = { raw1 }, *both[] = { raw1, raw2 };
	struct keeper *k = keeper_with(one, 1), *k2 = keeper_with(both, 2);
	static const uint8_t boot[CLOCK_BOOT_ID_BYTES] = { 1, 2, 3 };
	struct keeper_apns_token t;
	struct keeper_apns_blob b;
	struct keeper_status st;
	struct keeper_record kr;
	struct key_record rec;
	enum keeper_step step;
	uint8_t pub[P8_PUBLIC_BYTES], id[MASTER_KEY_ID_BYTES];
	uint8_t *p8, *aad = NULL, *nb = NULL;
	char *h = NULL, *c = NULL, want[128], other_key[KEEPER_APNS_KEY_BYTES];
	size_t len, nlen = 0;

	p8 = gen_p8(&len, pub);
	record(&rec, "app", "KEY0000001");
	REQUIRE(keeper_seal(k, p8, len, &rec, NULL) == 0);
	kr_of(&rec, &aad, &kr);
	CHECK_OK(keeper_sign_apns(k, &kr, boot, &t, &step));
	REQUIRE(t.t.token != NULL);
	CHECK_OK(jwt_verify_es256(pub, t.t.token, strlen(t.t.token)));
	parts(t.t.token, &h, &c);
	CHECK_STR(h, "{\"alg\":\"ES256\",\"kid\":\"KEY0000001\"}");
	snprintf(want, sizeof(want), "{\"iss\":\"TEAM000001\",\"iat\":%d}",
	    NOW);
	CHECK_STR(c, want);
	CHECK_INT(t.t.issued_at, NOW);
	CHECK_INT(t.boot_ns, fake_boot());
	CHECK_STR(t.t.key_id, "KEY0000001");
	CHECK_STR(t.t.team_id, "TEAM000001");
	snprintf(want, sizeof(want), "apns/TEAM000001/KEY0000001/%s",
	    rec.fingerprint);
	CHECK_STR(t.cache_key, want);
	CHECK_OK(keeper_status(k, &st));
	CHECK_MEM(t.mk_id, st.keys[0].id, MASTER_KEY_ID_BYTES);

	/* The sealed copy opens under its key, with its header. */
	CHECK_OK(keeper_apns_blob_open(k, t.cache_key, t.blob, t.blob_len,
	    &b));
	CHECK_STR(b.token, t.t.token);
	CHECK_INT(b.issued_at, NOW);
	CHECK_MEM(b.boot_id, boot, CLOCK_BOOT_ID_BYTES);
	CHECK_INT(b.boot_ns, fake_boot());
	keeper_apns_blob_finish(&b);
	/* Not under another key; not altered; not with another master key. */
	snprintf(other_key, sizeof(other_key), "%s", t.cache_key);
	other_key[6] = other_key[6] == '1' ? '2' : '1';
	CHECK_ERR(keeper_apns_blob_open(k, other_key, t.blob, t.blob_len, &b),
	    P8V_ERR_INTEGRITY);
	CHECK_ERR(keeper_apns_blob_open(k, "apns/x", t.blob, t.blob_len, &b),
	    P8V_ERR_INTEGRITY);
	t.blob[3] ^= 1;         /* the iat */
	CHECK_ERR(keeper_apns_blob_open(k, t.cache_key, t.blob, t.blob_len,
	    &b), P8V_ERR_INTEGRITY);
	t.blob[3] ^= 1;
	/* Rewrapped under raw2's key: opens with it alone, header kept. */
	CHECK_OK(keeper_status(k2, &st));
	CHECK_OK(keeper_apns_blob_rewrap(k2, t.cache_key, t.blob, t.blob_len,
	    st.keys[1].id, &nb, &nlen));
	CHECK_OK(keeper_apns_blob_master_key_id(nb, nlen, id));
	CHECK_MEM(id, st.keys[1].id, MASTER_KEY_ID_BYTES);
	CHECK_MEM(nb, t.blob, 33);
	CHECK_ERR(keeper_apns_blob_open(k, t.cache_key, nb, nlen, &b),
	    P8V_ERR_MASTER_KEY_MISSING);
	CHECK_OK(keeper_apns_blob_open(k2, t.cache_key, nb, nlen, &b));
	CHECK_STR(b.token, t.t.token);
	keeper_apns_blob_finish(&b);
	free(nb);
	keeper_apns_token_finish(&t);
	free(h);
	free(c);
	free(aad);

	/* A record without "apns"; one that does not open. */
	rec.services = KEY_SERVICE_WEATHERKIT;
	CHECK_ERR(vouch(k, &rec, &step), P8V_ERR_INTEGRITY);
	{
		struct key_record w;

		record(&w, "app", "KEY0000002");
		w.services = KEY_SERVICE_WEATHERKIT;
		REQUIRE(keeper_seal(k, p8, len, &w, NULL) == 0);
		kr_of(&w, &aad, &kr);
		CHECK_ERR(keeper_sign_apns(k, &kr, boot, &t, &step),
		    P8V_ERR_SERVICE_NOT_ALLOWED);
		CHECK(t.t.token == NULL && t.blob == NULL);
		free(aad);
		kr_of(&rec, &aad, &kr);  /* rec's AAD, altered services */
		CHECK_ERR(keeper_sign_apns(k, &kr, boot, &t, &step),
		    P8V_ERR_INTEGRITY);
		CHECK_INT(step, KEEPER_STEP_OPEN);
		free(aad);
		key_record_free(&w);
	}
	key_record_free(&rec);
	secmem_free(p8);
	keeper_destroy(k);
	keeper_destroy(k2);
}

static void
profile(struct keeper_profile *p, enum keeper_profile_kind kind)
{
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	if (kind != KEEPER_PROFILE_DEVICECHECK)
		p->expires_in = 600;
}

static void
test_profiles(void)
{
	const uint8_t *one[] = { raw1 };
	struct keeper *k = keeper_with(one, 1);
	struct keeper_profile p;
	struct keeper_token t;
	struct keeper_record kr;
	struct key_record rec;
	enum keeper_step step;
	uint8_t pub[P8_PUBLIC_BYTES];
	uint8_t *p8, *aad = NULL;
	char *h = NULL, *c = NULL, want[256];
	size_t len, i;

	p8 = gen_p8(&len, pub);
	record(&rec, "app", "KEY0000001");
	REQUIRE(keeper_seal(k, p8, len, &rec, NULL) == 0);
	kr_of(&rec, &aad, &kr);

	profile(&p, KEEPER_PROFILE_WEATHERKIT);
	snprintf(p.subject, sizeof(p.subject), "%s", "com.example.weather");
	CHECK_OK(keeper_sign_profile(k, &kr, &p, &t, &step));
	CHECK_OK(jwt_verify_es256(pub, t.token, strlen(t.token)));
	parts(t.token, &h, &c);
	CHECK_STR(h, "{\"alg\":\"ES256\",\"kid\":\"KEY0000001\","
	    "\"id\":\"TEAM000001.com.example.weather\"}");
	snprintf(want, sizeof(want), "{\"iss\":\"TEAM000001\",\"iat\":%d,"
	    "\"exp\":%d,\"sub\":\"com.example.weather\"}", NOW, NOW + 600);
	CHECK_STR(c, want);
	CHECK_INT(t.issued_at, NOW);
	CHECK_INT(t.expires_at, NOW + 600);
	free(h);
	free(c);
	keeper_token_finish(&t);

	/* A service the record was not uploaded for. */
	profile(&p, KEEPER_PROFILE_DEVICECHECK);
	CHECK_ERR(keeper_sign_profile(k, &kr, &p, &t, &step),
	    P8V_ERR_SERVICE_NOT_ALLOWED);

	/* Fields past their limits, with no parser in front: each refused,
	 * nothing signed. */
#define REFUSED(kind, change) do { \
	profile(&p, kind); \
	change; \
	CHECK_ERR(keeper_sign_profile(k, &kr, &p, &t, &step), \
	    P8V_ERR_INVALID_ARGUMENT); \
	CHECK(t.token == NULL); \
} while (0)
	REFUSED(KEEPER_PROFILE_WEATHERKIT, p.expires_in =
	    PROFILE_WEATHERKIT_EXPIRES_MAX_S + 1;
	    snprintf(p.subject, sizeof(p.subject), "%s", "com.x"));
	REFUSED(KEEPER_PROFILE_WEATHERKIT, p.expires_in = 0;
	    snprintf(p.subject, sizeof(p.subject), "%s", "com.x"));
	REFUSED(KEEPER_PROFILE_WEATHERKIT, (void)0);       /* no service id */
	REFUSED(KEEPER_PROFILE_WEATHERKIT,
	    snprintf(p.subject, sizeof(p.subject), "%s", "a\"b"));
	REFUSED(KEEPER_PROFILE_WEATHERKIT,
	    memset(p.subject, 'a', sizeof(p.subject)));  /* no NUL */
	REFUSED(KEEPER_PROFILE_DEVICECHECK, p.expires_in = 60);
	REFUSED(KEEPER_PROFILES, (void)0);
	REFUSED(KEEPER_PROFILE_APP_STORE_CONNECT,
	    snprintf(p.issuer_id, sizeof(p.issuer_id), "%s",
	    "not-a-uuid-at-all-not-a-uuid-at-all"));
	REFUSED(KEEPER_PROFILE_APP_STORE_CONNECT,
	    snprintf(p.issuer_id, sizeof(p.issuer_id), "%s",
	    "12345678-1234-1234-1234-123456789abc");
	    p.n_list = 1;
	    snprintf(p.list[0], sizeof(p.list[0]), "%s", "FETCH /v1"));
	REFUSED(KEEPER_PROFILE_APP_STORE_CONNECT,
	    snprintf(p.issuer_id, sizeof(p.issuer_id), "%s",
	    "12345678-1234-1234-1234-123456789abc");
	    p.n_list = PROFILE_SCOPE_MAX + 1;
	    for (i = 0; i < p.n_list; i++)
		snprintf(p.list[i < PROFILE_LIST_MAX ? i : 0],
		    sizeof(p.list[0]), "GET /v1/%zu", i));
	REFUSED(KEEPER_PROFILE_MUSICKIT, p.n_list = 2;
	    snprintf(p.list[0], sizeof(p.list[0]), "%s", "https://a.example");
	    snprintf(p.list[1], sizeof(p.list[1]), "%s", "https://a.example"));
	REFUSED(KEEPER_PROFILE_MUSICKIT, p.n_list = 1;
	    snprintf(p.list[0], sizeof(p.list[0]), "%s",
	    "javascript:alert(1)"));
	REFUSED(KEEPER_PROFILE_MUSICKIT, p.n_list = PROFILE_ORIGIN_MAX + 1;
	    for (i = 0; i < p.n_list; i++)
		snprintf(p.list[i], sizeof(p.list[i]), "https://a%zu.example",
		    i));
	/* Origins each valid, together past PROFILE_LIST_BYTES_MAX. */
	REFUSED(KEEPER_PROFILE_MUSICKIT, p.n_list = PROFILE_ORIGIN_MAX;
	    for (i = 0; i < p.n_list; i++) {
		memset(p.list[i], 'a', 200);
		memcpy(p.list[i], "https://", 8);
		p.list[i][200] = '.';
		p.list[i][201] = (char)('a' + i);
		p.list[i][202] = '\0';
	    });
	REFUSED(KEEPER_PROFILE_DEVICECHECK, p.n_list = 1;
	    snprintf(p.list[0], sizeof(p.list[0]), "%s", "https://a.example"));
#undef REFUSED
	free(aad);
	key_record_free(&rec);
	secmem_free(p8);
	keeper_destroy(k);
}

int
main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	REQUIRE(secmem_init() == 0);
	REQUIRE(secmem_random(raw1, sizeof(raw1)) == 0);
	REQUIRE(secmem_random(raw2, sizeof(raw2)) == 0);
	clock_test_set(fake_wall, fake_boot);
	test_keys();
	test_seal_vouch();
	test_reseal_rewrap();
	test_apns();
	test_profiles();
	return check_finish();
}
