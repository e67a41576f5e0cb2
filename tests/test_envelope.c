/*
 * test_envelope.c: envelope encryption. Round trips, every single-byte
 * alteration and every truncation refused, identities bound through the
 * AAD, master-key lookup, re-wrapping that leaves the payload alone, and the
 * byte format of envelope.h checked both ways by an independent
 * implementation (python3-cryptography).
 */
#include "crypto/envelope.h"

#include <stdio.h>

#include "crypto/aead.h"
#include "crypto/secmem.h"
#include "tests/check.h"
#include "tests/testutil.h"

/* Where envelope.h puts things (version 1). */
#define OFF_MKID 1
#define OFF_WRAP 9      /* wrap nonce, wrapped key, wrap tag: 60 bytes */
#define OFF_NONCE 69    /* payload nonce, ciphertext, tag */
#define OFF_PAYLOAD 81

static const uint8_t aad1[] = "app=com.example.one|kid=ABCDEFGHIJ|team=TEAM123456";
static const uint8_t aad2[] = "app=com.example.two|kid=ABCDEFGHIJ|team=TEAM123456";
#define AAD1_LEN (sizeof(aad1) - 1)
#define AAD2_LEN (sizeof(aad2) - 1)
static const uint8_t secret1[32] = "thirty-two bytes of P-256 scalar";
static const uint8_t secret2[32] = "another customer's secret scalar";

static uint8_t raw_a[MASTER_KEY_BYTES], raw_b[MASTER_KEY_BYTES];
static struct master_keyring *ring_a, *ring_b, *ring_ab, *ring_empty;
static const struct master_key *key_a, *key_b; /* owned by ring_a, ring_b */

static struct master_key *
make_key(const uint8_t *raw)
{
	struct master_key *mk = NULL;

	REQUIRE(master_key_create(raw, MASTER_KEY_BYTES, &mk) == 0);
	return mk;
}

static struct master_keyring *
make_ring(const uint8_t *r1, const uint8_t *r2)
{
	struct master_keyring *ring = NULL;

	REQUIRE(master_keyring_create(&ring) == 0);
	if (r1 != NULL)
		REQUIRE(master_keyring_add(ring, make_key(r1)) == 0);
	if (r2 != NULL)
		REQUIRE(master_keyring_add(ring, make_key(r2)) == 0);
	return ring;
}

static void
setup(void)
{
	size_t i;

	for (i = 0; i < MASTER_KEY_BYTES; i++) {
		raw_a[i] = (uint8_t)(0xa0 ^ (i * 5));
		raw_b[i] = (uint8_t)(0xb0 ^ (i * 7));
	}
	ring_a = make_ring(raw_a, NULL);
	ring_b = make_ring(raw_b, NULL);
	ring_ab = make_ring(raw_a, raw_b);
	ring_empty = make_ring(NULL, NULL);
	key_a = master_keyring_get(ring_a, 0);
	key_b = master_keyring_get(ring_b, 0);
}

static void
teardown(void)
{
	master_keyring_destroy(ring_a);
	master_keyring_destroy(ring_b);
	master_keyring_destroy(ring_ab);
	master_keyring_destroy(ring_empty);
}

/* Seal or stop: the tests below need the envelope. */
static uint8_t *
seal(const struct master_key *mk, const uint8_t *aad, size_t aad_len,
    const uint8_t *pt, size_t pt_len, size_t *len)
{
	uint8_t *env = NULL;

	REQUIRE(envelope_seal(mk, aad, aad_len, pt, pt_len, &env, len) == 0);
	return env;
}

/* Open and expect err; on success also expect exactly want/want_len. On
 * failure the output must be NULL/0. */
static void
expect_open(const char *what, const struct master_keyring *ring,
    const uint8_t *aad, size_t aad_len, const uint8_t *env, size_t env_len,
    int err, const uint8_t *want, size_t want_len)
{
	uint8_t *pt = (uint8_t *)&pt; /* not NULL, to see it reset */
	size_t pt_len = 12345;
	int r;

	r = envelope_open(ring, aad, aad_len, env, env_len, &pt, &pt_len);
	CHECKF(r == err, "%s: got %s, want %s", what, p8v_errname(r),
	    p8v_errname(err));
	if (r == 0) {
		CHECKF(pt != NULL && pt_len == want_len &&
		    (want_len == 0 || memcmp(pt, want, want_len) == 0),
		    "%s: wrong plaintext", what);
	} else {
		CHECKF(pt == NULL && pt_len == 0, "%s: output left on failure",
		    what);
		pt = NULL;
	}
	secmem_free(pt);
}

static void
test_round_trip(void)
{
	static const size_t lens[] = { 0, 1, 31, 32, 33, 1000,
	    ENVELOPE_MAX_PAYLOAD };
	uint8_t *pt, *env, *env2, id[MASTER_KEY_ID_BYTES];
	size_t i, env_len, env2_len;
	char what[64];

	REQUIRE((pt = malloc(ENVELOPE_MAX_PAYLOAD + 1)) != NULL);
	for (i = 0; i < ENVELOPE_MAX_PAYLOAD + 1; i++)
		pt[i] = (uint8_t)(i * 13 + 7);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		snprintf(what, sizeof(what), "payload of %zu", lens[i]);
		env = seal(key_a, aad1, AAD1_LEN, pt, lens[i], &env_len);
		CHECKF(env_len == ENVELOPE_OVERHEAD + lens[i], "%s", what);
		CHECKF(env[0] == ENVELOPE_VERSION, "%s", what);
		CHECKF(memcmp(env + OFF_MKID, master_key_id(key_a),
		    MASTER_KEY_ID_BYTES) == 0, "%s", what);
		CHECK_OK(envelope_master_key_id(env, env_len, id));
		CHECK_MEM(id, master_key_id(key_a), MASTER_KEY_ID_BYTES);
		/* Only ciphertext: the payload is not there in the clear. */
		if (lens[i] >= 8)
			CHECKF(memcmp(env + OFF_PAYLOAD, pt, lens[i]) != 0,
			    "%s", what);
		expect_open(what, ring_a, aad1, AAD1_LEN, env, env_len, 0, pt,
		    lens[i]);
		expect_open(what, ring_ab, aad1, AAD1_LEN, env, env_len, 0, pt,
		    lens[i]);
		/* A second seal of the same input shares nothing random. */
		env2 = seal(key_a, aad1, AAD1_LEN, pt, lens[i], &env2_len);
		CHECKF(memcmp(env + OFF_WRAP, env2 + OFF_WRAP, 12) != 0 &&
		    memcmp(env + OFF_WRAP + 12, env2 + OFF_WRAP + 12, 32) != 0 &&
		    memcmp(env + OFF_NONCE, env2 + OFF_NONCE, 12) != 0,
		    "%s: second seal repeats a nonce or data key", what);
		free(env);
		free(env2);
	}
	/* No aad at all works too, and then no aad must be given to open. */
	env = seal(key_b, NULL, 0, secret1, sizeof(secret1), &env_len);
	expect_open("no aad", ring_b, NULL, 0, env, env_len, 0, secret1,
	    sizeof(secret1));
	expect_open("no aad, opened with one", ring_b, aad1, AAD1_LEN, env,
	    env_len, P8V_ERR_INTEGRITY, NULL, 0);
	free(env);

	env = (uint8_t *)&env;
	env_len = 1;
	CHECK_ERR(envelope_seal(key_a, aad1, AAD1_LEN, pt,
	    ENVELOPE_MAX_PAYLOAD + 1, &env, &env_len), P8V_ERR_TOO_LARGE);
	CHECK(env == NULL && env_len == 0);
	CHECK_ERR(envelope_seal(key_a, pt, ENVELOPE_MAX_AAD + 1, pt, 1, &env,
	    &env_len), P8V_ERR_TOO_LARGE);
	free(pt);
}

/*
 * Every byte of an envelope, altered three ways: the open fails with
 * P8V_ERR_INTEGRITY, or P8V_ERR_MASTER_KEY_MISSING where the byte is part of
 * the master key id (the altered id names no key in the ring), and leaves
 * nothing behind. Re-wrapping the altered envelope fails the same way.
 */
static void
test_every_byte(void)
{
	static const uint8_t masks[] = { 0x01, 0x80, 0xff };
	uint8_t *env, *bad, *out;
	size_t env_len, pos, m, out_len;
	char what[64];
	int r;

	env = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &env_len);
	REQUIRE((bad = malloc(env_len)) != NULL);
	for (pos = 0; pos < env_len; pos++) {
		for (m = 0; m < sizeof(masks); m++) {
			int in_id = pos >= OFF_MKID &&
			    pos < OFF_MKID + MASTER_KEY_ID_BYTES;
			int want = in_id ? P8V_ERR_MASTER_KEY_MISSING :
			    P8V_ERR_INTEGRITY;

			memcpy(bad, env, env_len);
			bad[pos] ^= masks[m];
			snprintf(what, sizeof(what), "byte %zu ^ 0x%02x", pos,
			    masks[m]);
			/* ring_ab: an id altered into the other key's id
			 * would still fail its tag. */
			expect_open(what, ring_ab, aad1, AAD1_LEN, bad, env_len,
			    want, NULL, 0);
			out = (uint8_t *)&out;
			out_len = 1;
			r = envelope_rewrap(ring_ab, key_b, aad1, AAD1_LEN, bad,
			    env_len, &out, &out_len);
			CHECKF(r == want && out == NULL && out_len == 0,
			    "rewrap %s: %s", what, p8v_errname(r));
		}
	}
	/* Untouched, it still opens: the loop did not pass by accident. */
	expect_open("original", ring_ab, aad1, AAD1_LEN, env, env_len, 0,
	    secret1, sizeof(secret1));
	free(bad);
	free(env);
}

/* Every shorter prefix fails, and so does any extension. */
static void
test_lengths(void)
{
	uint8_t *env, *longer, id[MASTER_KEY_ID_BYTES];
	size_t env_len, len;
	char what[64];

	env = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &env_len);
	for (len = 0; len < env_len; len++) {
		snprintf(what, sizeof(what), "truncated to %zu", len);
		expect_open(what, ring_a, aad1, AAD1_LEN, env, len,
		    P8V_ERR_INTEGRITY, NULL, 0);
		if (len < ENVELOPE_OVERHEAD)
			CHECK_ERR(envelope_master_key_id(env, len, id),
			    P8V_ERR_INTEGRITY);
	}
	REQUIRE((longer = malloc(env_len + 16)) != NULL);
	memcpy(longer, env, env_len);
	memset(longer + env_len, 0, 16);
	expect_open("one byte more", ring_a, aad1, AAD1_LEN, longer,
	    env_len + 1, P8V_ERR_INTEGRITY, NULL, 0);
	expect_open("16 bytes more", ring_a, aad1, AAD1_LEN, longer,
	    env_len + 16, P8V_ERR_INTEGRITY, NULL, 0);
	/* Longer than any envelope can be: refused before anything else. */
	expect_open("over the payload limit", ring_a, aad1, AAD1_LEN, env,
	    ENVELOPE_OVERHEAD + ENVELOPE_MAX_PAYLOAD + 1, P8V_ERR_INTEGRITY,
	    NULL, 0);
	CHECK_ERR(envelope_master_key_id(env,
	    ENVELOPE_OVERHEAD + ENVELOPE_MAX_PAYLOAD + 1, id),
	    P8V_ERR_INTEGRITY);
	free(longer);
	free(env);
}

/* Any version but 1 is refused by every reader. */
static void
test_versions(void)
{
	static const uint8_t versions[] = { 0x00, 0x02, 0x7f, 0x81, 0xff };
	uint8_t *env, *out = NULL, id[MASTER_KEY_ID_BYTES];
	size_t env_len, i, out_len = 0;

	env = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &env_len);
	for (i = 0; i < sizeof(versions); i++) {
		env[0] = versions[i];
		expect_open("version", ring_a, aad1, AAD1_LEN, env, env_len,
		    P8V_ERR_INTEGRITY, NULL, 0);
		CHECK_ERR(envelope_master_key_id(env, env_len, id),
		    P8V_ERR_INTEGRITY);
		CHECK_ERR(envelope_rewrap(ring_a, key_b, aad1, AAD1_LEN, env,
		    env_len, &out, &out_len), P8V_ERR_INTEGRITY);
		CHECK(out == NULL);
	}
	free(env);
}

/* The identity in the AAD binds: any other aad fails. */
static void
test_aad(void)
{
	uint8_t longer[sizeof(aad1) + 1];
	uint8_t *env;
	size_t env_len;
	const struct {
		const char *what;
		const uint8_t *aad;
		size_t aad_len;
		int want;
	} cases[] = {
		{ "same identity", aad1, AAD1_LEN, 0 },
		{ "another identity", aad2, AAD2_LEN, P8V_ERR_INTEGRITY },
		{ "no aad", NULL, 0, P8V_ERR_INTEGRITY },
		{ "aad one byte short", aad1, AAD1_LEN - 1, P8V_ERR_INTEGRITY },
		{ "aad one byte long", longer, AAD1_LEN + 1, P8V_ERR_INTEGRITY },
		{ "aad's first byte only", aad1, 1, P8V_ERR_INTEGRITY },
	};
	size_t i;

	memcpy(longer, aad1, AAD1_LEN);
	longer[AAD1_LEN] = '|';
	env = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &env_len);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_open(cases[i].what, ring_a, cases[i].aad,
		    cases[i].aad_len, env, env_len, cases[i].want, secret1,
		    sizeof(secret1));
	expect_open("aad too large", ring_a, longer, ENVELOPE_MAX_AAD + 1, env,
	    env_len, P8V_ERR_TOO_LARGE, NULL, 0);
	free(env);
}

/* Envelopes moved between identities, or cut and pasted together. */
static void
test_swaps(void)
{
	uint8_t *e1, *e2, *e1b, *mix;
	size_t e1_len, e2_len, e1b_len;

	e1 = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &e1_len);
	e2 = seal(key_a, aad2, AAD2_LEN, secret2, sizeof(secret2), &e2_len);
	e1b = seal(key_a, aad1, AAD1_LEN, secret2, sizeof(secret2), &e1b_len);
	REQUIRE(e1_len == e2_len && e1_len == e1b_len);
	REQUIRE((mix = malloc(e1_len)) != NULL);

	/* Identity 1's record stored under identity 2, and back. */
	expect_open("e1 as identity 2", ring_a, aad2, AAD2_LEN, e1, e1_len,
	    P8V_ERR_INTEGRITY, NULL, 0);
	expect_open("e2 as identity 1", ring_a, aad1, AAD1_LEN, e2, e2_len,
	    P8V_ERR_INTEGRITY, NULL, 0);
	/* Key wrap of one, payload of the other, under either identity. */
	memcpy(mix, e1, OFF_NONCE);
	memcpy(mix + OFF_NONCE, e2 + OFF_NONCE, e1_len - OFF_NONCE);
	expect_open("wrap 1 + payload 2 as 1", ring_a, aad1, AAD1_LEN, mix,
	    e1_len, P8V_ERR_INTEGRITY, NULL, 0);
	expect_open("wrap 1 + payload 2 as 2", ring_a, aad2, AAD2_LEN, mix,
	    e1_len, P8V_ERR_INTEGRITY, NULL, 0);
	/* Even two seals for the same identity do not mix: each payload
	 * needs its own data key. */
	memcpy(mix, e1, OFF_NONCE);
	memcpy(mix + OFF_NONCE, e1b + OFF_NONCE, e1_len - OFF_NONCE);
	expect_open("two seals of identity 1 mixed", ring_a, aad1, AAD1_LEN,
	    mix, e1_len, P8V_ERR_INTEGRITY, NULL, 0);
	free(e1);
	free(e2);
	free(e1b);
	free(mix);
}

static void
test_missing_key(void)
{
	uint8_t *env;
	size_t env_len;

	env = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &env_len);
	expect_open("ring without the key", ring_b, aad1, AAD1_LEN, env,
	    env_len, P8V_ERR_MASTER_KEY_MISSING, NULL, 0);
	expect_open("empty ring", ring_empty, aad1, AAD1_LEN, env, env_len,
	    P8V_ERR_MASTER_KEY_MISSING, NULL, 0);
	/* The same id with other key bytes cannot exist (the id is a hash
	 * of the key), so a wrong key shows up as a missing one. */
	free(env);
}

/* Master-key rotation: only the 69-byte head changes. */
static void
test_rewrap(void)
{
	uint8_t *env, *re = NULL, *back = NULL, *bad;
	size_t env_len, re_len = 0, back_len = 0;

	env = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &env_len);
	CHECK_OK(envelope_rewrap(ring_a, key_b, aad1, AAD1_LEN, env, env_len,
	    &re, &re_len));
	REQUIRE(re != NULL);
	CHECK_INT(re_len, env_len);
	CHECK_INT(re[0], ENVELOPE_VERSION);
	CHECK_MEM(re + OFF_MKID, master_key_id(key_b), MASTER_KEY_ID_BYTES);
	/* Payload nonce, ciphertext and tag: byte for byte the same. */
	CHECK_MEM(re + OFF_NONCE, env + OFF_NONCE, env_len - OFF_NONCE);
	/* A fresh wrap nonce and a new wrap. */
	CHECK(memcmp(re + OFF_WRAP, env + OFF_WRAP, 12) != 0);
	CHECK(memcmp(re + OFF_WRAP + 12, env + OFF_WRAP + 12, 48) != 0);
	expect_open("rewrapped, new key only", ring_b, aad1, AAD1_LEN, re,
	    re_len, 0, secret1, sizeof(secret1));
	expect_open("rewrapped, old key only", ring_a, aad1, AAD1_LEN, re,
	    re_len, P8V_ERR_MASTER_KEY_MISSING, NULL, 0);
	expect_open("rewrapped, other identity", ring_b, aad2, AAD2_LEN, re,
	    re_len, P8V_ERR_INTEGRITY, NULL, 0);

	/* And back again: still the same payload bytes. */
	CHECK_OK(envelope_rewrap(ring_b, key_a, aad1, AAD1_LEN, re, re_len,
	    &back, &back_len));
	REQUIRE(back != NULL);
	CHECK_MEM(back + OFF_NONCE, env + OFF_NONCE, env_len - OFF_NONCE);
	expect_open("rewrapped back", ring_a, aad1, AAD1_LEN, back, back_len,
	    0, secret1, sizeof(secret1));
	free(back);
	back = NULL;

	/* Refusals leave *out NULL. */
	CHECK_ERR(envelope_rewrap(ring_a, key_b, aad2, AAD2_LEN, env, env_len,
	    &back, &back_len), P8V_ERR_INTEGRITY);
	CHECK(back == NULL && back_len == 0);
	CHECK_ERR(envelope_rewrap(ring_b, key_b, aad1, AAD1_LEN, env, env_len,
	    &back, &back_len), P8V_ERR_MASTER_KEY_MISSING);
	CHECK(back == NULL);
	/* The payload is verified too, not only the wrap. */
	REQUIRE((bad = malloc(env_len)) != NULL);
	memcpy(bad, env, env_len);
	bad[env_len - 1] ^= 0x01;
	CHECK_ERR(envelope_rewrap(ring_a, key_b, aad1, AAD1_LEN, bad, env_len,
	    &back, &back_len), P8V_ERR_INTEGRITY);
	CHECK(back == NULL);
	free(bad);
	free(re);
	free(env);
}

static void
test_arguments(void)
{
	uint8_t *env, *out = NULL, *pt = NULL, id[MASTER_KEY_ID_BYTES];
	size_t env_len, out_len = 0, pt_len = 0;

	env = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &env_len);
	CHECK_ERR(envelope_seal(NULL, aad1, AAD1_LEN, secret1, 32, &out,
	    &out_len), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(envelope_seal(key_a, NULL, 1, secret1, 32, &out, &out_len),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(envelope_seal(key_a, aad1, AAD1_LEN, NULL, 32, &out,
	    &out_len), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(envelope_seal(key_a, aad1, AAD1_LEN, secret1, 32, NULL,
	    &out_len), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(envelope_open(NULL, aad1, AAD1_LEN, env, env_len, &pt,
	    &pt_len), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(envelope_open(ring_a, aad1, AAD1_LEN, NULL, env_len, &pt,
	    &pt_len), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(envelope_open(ring_a, aad1, AAD1_LEN, env, env_len, NULL,
	    &pt_len), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(envelope_rewrap(ring_a, NULL, aad1, AAD1_LEN, env, env_len,
	    &out, &out_len), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(envelope_master_key_id(NULL, env_len, id),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK(out == NULL && pt == NULL);
	free(env);
}

/*
 * The format as envelope.h writes it down, implemented again in Python
 * (python3-cryptography's AESGCM), independently of crypto/:
 *   open MK AAD ENV  -> prints the payload (hex)
 *   seal MK AAD PT   -> prints an envelope (hex)
 * All arguments are hex.
 */
static const char envelope_py[] =
    "import hashlib, os, sys\n"
    "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
    "op, mk, aad, data = sys.argv[1], *map(bytes.fromhex, sys.argv[2:5])\n"
    "mkid = hashlib.sha256(b'p8vault master key id v1' + mk).digest()[:8]\n"
    "wrap_aad = b'p8v1K' + bytes([1]) + mkid + aad\n"
    "payload_aad = b'p8v1P' + bytes([1]) + aad\n"
    "if op == 'open':\n"
    "    env = data\n"
    "    assert len(env) >= 97 and env[0] == 1 and env[1:9] == mkid\n"
    "    dk = AESGCM(mk).decrypt(env[9:21], env[21:69], wrap_aad)\n"
    "    assert len(dk) == 32\n"
    "    print(AESGCM(dk).decrypt(env[69:81], env[81:], payload_aad).hex())\n"
    "else:\n"
    "    dk, n1, n2 = os.urandom(32), os.urandom(12), os.urandom(12)\n"
    "    env = (bytes([1]) + mkid + n1 + AESGCM(mk).encrypt(n1, dk, wrap_aad)\n"
    "           + n2 + AESGCM(dk).encrypt(n2, data, payload_aad))\n"
    "    assert len(env) == 97 + len(data)\n"
    "    print(env.hex())\n";

static char *
to_hex(const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *h = malloc(2 * n + 1);
	size_t i;

	REQUIRE(h != NULL);
	for (i = 0; i < n; i++) {
		h[2 * i] = digits[b[i] >> 4];
		h[2 * i + 1] = digits[b[i] & 15];
	}
	h[2 * n] = '\0';
	return h;
}

/* Run the script; its output decoded from hex, or NULL if it failed.
 * quiet: a failure is expected, keep its traceback out of the log. */
static uint8_t *
run_py(const char *script, const char *op, const uint8_t *aad,
    size_t aad_len, const uint8_t *data, size_t data_len, int quiet,
    size_t *out_len)
{
	char *mk_hex = to_hex(raw_a, sizeof(raw_a)), *aad_hex = to_hex(aad,
	    aad_len), *data_hex = to_hex(data, data_len), *cmd = NULL;
	char line[4096];
	uint8_t *out = NULL;
	FILE *p;
	size_t n;

	REQUIRE(asprintf(&cmd, "/usr/bin/python3 '%s' %s '%s' '%s' '%s'%s",
	    script, op, mk_hex, aad_hex, data_hex,
	    quiet ? " 2>/dev/null" : "") > 0);
	if ((p = popen(cmd, "r")) == NULL)
		goto out;
	if (fgets(line, sizeof(line), p) == NULL) {
		pclose(p);
		goto out;
	}
	if (pclose(p) != 0)
		goto out;
	n = strcspn(line, "\n");
	line[n] = '\0';
	if (tu_hex_decode(line, &out, out_len) != 0)
		out = NULL;
 out:
	free(mk_hex);
	free(aad_hex);
	free(data_hex);
	free(cmd);
	return out;
}

static void
test_independent(void)
{
	static const size_t lens[] = { 0, 32, 200 };
	char *dir, *script;
	uint8_t pt[200], *env, *got;
	size_t i, env_len, got_len;
	char what[64];

	for (i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)(255 - i);
	REQUIRE((dir = tu_mkdtemp("p8v-envelope")) != NULL);
	REQUIRE(asprintf(&script, "%s/envelope.py", dir) > 0);
	REQUIRE(tu_write_file(script, envelope_py, sizeof(envelope_py) - 1,
	    0600) == 0);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		/* Sealed here, opened by Python. */
		env = seal(key_a, aad1, AAD1_LEN, pt, lens[i], &env_len);
		got = run_py(script, "open", aad1, AAD1_LEN, env, env_len, 0,
		    &got_len);
		CHECKF(got != NULL && got_len == lens[i] &&
		    memcmp(got, pt, lens[i]) == 0,
		    "python cannot open a %zu-byte envelope", lens[i]);
		free(got);
		free(env);
		/* Sealed by Python, opened here (and bound to its aad). */
		env = run_py(script, "seal", aad1, AAD1_LEN, pt, lens[i], 0,
		    &env_len);
		CHECKF(env != NULL, "python seal of %zu bytes", lens[i]);
		if (env == NULL)
			continue;
		snprintf(what, sizeof(what), "python's %zu-byte envelope",
		    lens[i]);
		expect_open(what, ring_a, aad1, AAD1_LEN, env, env_len, 0, pt,
		    lens[i]);
		expect_open(what, ring_a, aad2, AAD2_LEN, env, env_len,
		    P8V_ERR_INTEGRITY, NULL, 0);
		free(env);
	}
	/* The checker can fail: an envelope under another aad is refused. */
	env = seal(key_a, aad2, AAD2_LEN, pt, 32, &env_len);
	got = run_py(script, "open", aad1, AAD1_LEN, env, env_len, 1,
	    &got_len);
	CHECK(got == NULL);
	free(got);
	free(env);
	tu_rmtree(dir);
	free(dir);
	free(script);
}

/*
 * Locked memory of this process in kB (VmLck), or -1. Every guarded block
 * is mlock'd, and ASan cannot see guarded blocks (they are mmap'd, not
 * malloc'd), so an unchanged VmLck is how a test shows that no data key or
 * plaintext block was leaked on any path.
 */
#ifdef __SANITIZE_ADDRESS__
/* ASan's mlock interceptor does nothing, so VmLck cannot see blocks. */
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

/* The balance can see a guarded block: a returned plaintext shows. */
static void
test_locked_balance_sees(long before)
{
	uint8_t *env, *pt = NULL;
	size_t env_len, pt_len = 0;

	env = seal(key_a, aad1, AAD1_LEN, secret1, sizeof(secret1), &env_len);
	CHECK_OK(envelope_open(ring_a, aad1, AAD1_LEN, env, env_len, &pt,
	    &pt_len));
	if (LOCKED_KB_WORKS)
		CHECK(before >= 0 && locked_kb() > before);
	secmem_free(pt);
	free(env);
}

int
main(void)
{
	long locked_before;

	REQUIRE(secmem_init() == 0);
	setup();
	locked_before = locked_kb();
	test_locked_balance_sees(locked_before);
	test_round_trip();
	test_every_byte();
	test_lengths();
	test_versions();
	test_aad();
	test_swaps();
	test_missing_key();
	test_rewrap();
	test_arguments();
	test_independent();
	/* Nothing guarded outlives its call, on any path above. */
	if (LOCKED_KB_WORKS)
		CHECK_INT(locked_kb(), locked_before);
	else
		printf("note: ASan build, guarded-block balance not checked\n");
	teardown();
	return check_finish();
}
