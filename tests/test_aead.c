/*
 * test_aead.c: AES-256-GCM against Wycheproof's aes_gcm_test.json, the
 * refusal of every other size, and the contract's edges (wiping on failure,
 * in-place operation, empty messages, random nonces).
 */
#include "crypto/aead.h"

#include <limits.h>

#include "crypto/secmem.h"
#include "tests/check.h"
#include "tests/testutil.h"

/* What ../shared/testdata/wycheproof/README.md counts in aes_gcm_test.json:
 * the vault's sizes (key 256, iv 96, tag 128 bits) and all the others. */
#define WP_TOTAL 316
#define WP_OURS_VALID 39
#define WP_OURS_INVALID 27

struct wp_counts {
	int ours_valid, ours_invalid, other, total;
};

static int
all_zero(const uint8_t *p, size_t n)
{
	while (n > 0 && p[n - 1] == 0)
		n--;
	return n == 0;
}

static uint8_t *
hex_field(const json_t *t, const char *name, size_t *len)
{
	uint8_t *b = NULL;

	*len = 0;
	if (tu_hex_decode(json_string_value(json_object_get(t, name)), &b,
	    len) != 0)
		return NULL;
	return b;
}

/* One test whose sizes are the vault's: the expected answer exactly. */
static void
wp_ours(int id, int valid, const uint8_t *key, const uint8_t *iv,
    const uint8_t *aad, size_t aad_len, const uint8_t *msg, size_t msg_len,
    const uint8_t *ct, size_t ct_len, const uint8_t *tag)
{
	/* +1: a non-NULL buffer also for empty messages. */
	uint8_t *out = malloc(ct_len + 1), *zero = calloc(1, ct_len + 1);
	uint8_t got_tag[AEAD_TAG_BYTES];

	REQUIRE(out != NULL && zero != NULL);
	if (valid) {
		CHECKF(msg_len == ct_len, "tcId %d", id);
		CHECK_OK(aead_seal(key, AEAD_KEY_BYTES, iv, AEAD_NONCE_BYTES,
		    aad, aad_len, msg, msg_len, out, got_tag, AEAD_TAG_BYTES));
		CHECKF(memcmp(out, ct, ct_len) == 0, "tcId %d: ciphertext", id);
		CHECKF(memcmp(got_tag, tag, AEAD_TAG_BYTES) == 0,
		    "tcId %d: tag", id);
		memset(out, 0xee, ct_len);
		CHECK_OK(aead_open(key, AEAD_KEY_BYTES, iv, AEAD_NONCE_BYTES,
		    aad, aad_len, ct, ct_len, tag, AEAD_TAG_BYTES, out));
		CHECKF(memcmp(out, msg, msg_len) == 0, "tcId %d: plaintext", id);
	} else {
		memset(out, 0xee, ct_len);
		CHECK_ERR(aead_open(key, AEAD_KEY_BYTES, iv, AEAD_NONCE_BYTES,
		    aad, aad_len, ct, ct_len, tag, AEAD_TAG_BYTES, out),
		    P8V_ERR_INTEGRITY);
		CHECKF(memcmp(out, zero, ct_len) == 0,
		    "tcId %d: output not wiped", id);
	}
	free(out);
	free(zero);
}

/* One test with any other size: both directions refuse, touching nothing. */
static void
wp_other(int id, const uint8_t *key, size_t key_len, const uint8_t *iv,
    size_t iv_len, const uint8_t *aad, size_t aad_len, const uint8_t *msg,
    size_t msg_len, const uint8_t *ct, size_t ct_len, const uint8_t *tag,
    size_t tag_len)
{
	uint8_t *out = malloc(ct_len + msg_len + 1);
	uint8_t got_tag[64];
	size_t i;

	REQUIRE(out != NULL);
	memset(out, 0xee, ct_len + msg_len + 1);
	memset(got_tag, 0xee, sizeof(got_tag));
	CHECK_ERR(aead_seal(key, key_len, iv, iv_len, aad, aad_len, msg,
	    msg_len, out, got_tag, tag_len), P8V_ERR_UNSUPPORTED);
	CHECK_ERR(aead_open(key, key_len, iv, iv_len, aad, aad_len, ct, ct_len,
	    tag, tag_len, out), P8V_ERR_UNSUPPORTED);
	for (i = 0; i < ct_len + msg_len + 1 && out[i] == 0xee; i++)
		;
	CHECKF(i == ct_len + msg_len + 1, "tcId %d: output touched", id);
	for (i = 0; i < sizeof(got_tag) && got_tag[i] == 0xee; i++)
		;
	CHECKF(i == sizeof(got_tag), "tcId %d: tag touched", id);
	free(out);
}

static void
test_wycheproof(void)
{
	json_t *doc, *groups, *g, *tests, *t;
	struct wp_counts c = { 0, 0, 0, 0 };
	size_t gi, ti;

	REQUIRE((doc = tu_wycheproof_load("aes_gcm_test.json")) != NULL);
	CHECK_INT(json_integer_value(json_object_get(doc, "numberOfTests")),
	    WP_TOTAL);
	groups = json_object_get(doc, "testGroups");
	json_array_foreach(groups, gi, g) {
		json_int_t ks = json_integer_value(json_object_get(g, "keySize"));
		json_int_t is = json_integer_value(json_object_get(g, "ivSize"));
		json_int_t ts = json_integer_value(json_object_get(g, "tagSize"));

		tests = json_object_get(g, "tests");
		json_array_foreach(tests, ti, t) {
			uint8_t *key, *iv, *aad, *msg, *ct, *tag;
			size_t key_len, iv_len, aad_len, msg_len, ct_len,
			    tag_len;
			const char *result =
			    json_string_value(json_object_get(t, "result"));
			int id = (int)json_integer_value(
			    json_object_get(t, "tcId"));
			int ours = ks == 256 && is == 96 && ts == 128;

			key = hex_field(t, "key", &key_len);
			iv = hex_field(t, "iv", &iv_len);
			aad = hex_field(t, "aad", &aad_len);
			msg = hex_field(t, "msg", &msg_len);
			ct = hex_field(t, "ct", &ct_len);
			tag = hex_field(t, "tag", &tag_len);
			REQUIRE(key && iv && aad && msg && ct && tag && result);
			/* The group's sizes describe each test's fields. */
			CHECKF(key_len * 8 == (size_t)ks &&
			    iv_len * 8 == (size_t)is &&
			    tag_len * 8 == (size_t)ts, "tcId %d sizes", id);
			c.total++;
			if (ours && strcmp(result, "valid") == 0) {
				c.ours_valid++;
				wp_ours(id, 1, key, iv, aad, aad_len, msg,
				    msg_len, ct, ct_len, tag);
			} else if (ours && strcmp(result, "invalid") == 0) {
				c.ours_invalid++;
				wp_ours(id, 0, key, iv, aad, aad_len, msg,
				    msg_len, ct, ct_len, tag);
			} else {
				CHECKF(!ours, "tcId %d: result %s", id, result);
				c.other++;
				wp_other(id, key, key_len, iv, iv_len, aad,
				    aad_len, msg, msg_len, ct, ct_len, tag,
				    tag_len);
			}
			free(key);
			free(iv);
			free(aad);
			free(msg);
			free(ct);
			free(tag);
		}
	}
	json_decref(doc);
	printf("wycheproof aes_gcm: %d tests: %d valid and %d invalid of "
	    "256/96/128, %d of other sizes refused\n", c.total, c.ours_valid,
	    c.ours_invalid, c.other);
	CHECK_INT(c.total, WP_TOTAL);
	CHECK_INT(c.ours_valid, WP_OURS_VALID);
	CHECK_INT(c.ours_invalid, WP_OURS_INVALID);
	CHECK_INT(c.other, WP_TOTAL - WP_OURS_VALID - WP_OURS_INVALID);
}

/* A fixed message for the tests below. */
static uint8_t k_key[AEAD_KEY_BYTES], k_nonce[AEAD_NONCE_BYTES];
static const uint8_t k_aad[] = "app=com.example;kid=ABCDEFGHIJ";
static const uint8_t k_msg[] = "a secret scalar of some 32 bytes!";
#define K_MSG_LEN (sizeof(k_msg) - 1)

static void
setup_fixed(void)
{
	size_t i;

	for (i = 0; i < sizeof(k_key); i++)
		k_key[i] = (uint8_t)(0x40 + i);
	for (i = 0; i < sizeof(k_nonce); i++)
		k_nonce[i] = (uint8_t)(0x90 + i);
}

/* Alter each input of a good message in turn: every one is caught, and the
 * output is wiped each time. */
static void
test_tamper(void)
{
	enum { T_KEY, T_NONCE, T_AAD, T_CT, T_TAG, T_AAD_SHORT, T_CT_SHORT };
	static const struct {
		int what;
		size_t pos;
		const char *name;
	} cases[] = {
		{ T_KEY, 0, "key[0]" },
		{ T_KEY, 31, "key[31]" },
		{ T_NONCE, 0, "nonce[0]" },
		{ T_NONCE, 11, "nonce[11]" },
		{ T_AAD, 0, "aad[0]" },
		{ T_AAD, sizeof(k_aad) - 2, "aad[last]" },
		{ T_CT, 0, "ct[0]" },
		{ T_CT, K_MSG_LEN - 1, "ct[last]" },
		{ T_TAG, 0, "tag[0]" },
		{ T_TAG, 15, "tag[15]" },
		{ T_AAD_SHORT, 0, "aad one byte short" },
		{ T_CT_SHORT, 0, "ciphertext one byte short" },
	};
	uint8_t key[AEAD_KEY_BYTES], nonce[AEAD_NONCE_BYTES], aad[sizeof(k_aad)];
	uint8_t ct[K_MSG_LEN], tag[AEAD_TAG_BYTES], out[K_MSG_LEN];
	uint8_t zero[K_MSG_LEN];
	size_t i, aad_len, ct_len;

	memset(zero, 0, sizeof(zero));
	REQUIRE(aead_seal(k_key, sizeof(k_key), k_nonce, sizeof(k_nonce),
	    k_aad, sizeof(k_aad) - 1, k_msg, K_MSG_LEN, ct, tag,
	    sizeof(tag)) == 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t ct2[K_MSG_LEN], tag2[AEAD_TAG_BYTES];

		memcpy(key, k_key, sizeof(key));
		memcpy(nonce, k_nonce, sizeof(nonce));
		memcpy(aad, k_aad, sizeof(aad));
		memcpy(ct2, ct, sizeof(ct2));
		memcpy(tag2, tag, sizeof(tag2));
		aad_len = sizeof(k_aad) - 1;
		ct_len = K_MSG_LEN;
		switch (cases[i].what) {
		case T_KEY: key[cases[i].pos] ^= 0x01; break;
		case T_NONCE: nonce[cases[i].pos] ^= 0x01; break;
		case T_AAD: aad[cases[i].pos] ^= 0x01; break;
		case T_CT: ct2[cases[i].pos] ^= 0x01; break;
		case T_TAG: tag2[cases[i].pos] ^= 0x80; break;
		case T_AAD_SHORT: aad_len--; break;
		case T_CT_SHORT: ct_len--; break;
		}
		memset(out, 0xee, sizeof(out));
		CHECK_ERR(aead_open(key, sizeof(key), nonce, sizeof(nonce), aad,
		    aad_len, ct2, ct_len, tag2, sizeof(tag2), out),
		    P8V_ERR_INTEGRITY);
		CHECKF(memcmp(out, zero, ct_len) == 0, "%s: output not wiped",
		    cases[i].name);
	}
	/* And untouched, it opens. */
	CHECK_OK(aead_open(k_key, sizeof(k_key), k_nonce, sizeof(k_nonce),
	    k_aad, sizeof(k_aad) - 1, ct, K_MSG_LEN, tag, sizeof(tag), out));
	CHECK_MEM(out, k_msg, K_MSG_LEN);
}

/* Sizes other than 32/12/16 are refused, whatever else is wrong. */
static void
test_sizes(void)
{
	static const struct {
		size_t key_len, nonce_len, tag_len;
		int want;
	} cases[] = {
		{ 32, 12, 16, 0 },
		{ 16, 12, 16, P8V_ERR_UNSUPPORTED },
		{ 24, 12, 16, P8V_ERR_UNSUPPORTED },
		{ 33, 12, 16, P8V_ERR_UNSUPPORTED },
		{ 0, 12, 16, P8V_ERR_UNSUPPORTED },
		{ 32, 8, 16, P8V_ERR_UNSUPPORTED },
		{ 32, 16, 16, P8V_ERR_UNSUPPORTED },
		{ 32, 0, 16, P8V_ERR_UNSUPPORTED },
		{ 32, 12, 12, P8V_ERR_UNSUPPORTED },
		{ 32, 12, 8, P8V_ERR_UNSUPPORTED },
		{ 32, 12, 0, P8V_ERR_UNSUPPORTED },
	};
	uint8_t key[64], nonce[64], tag[64], buf[K_MSG_LEN], ct[K_MSG_LEN];
	uint8_t good_tag[AEAD_TAG_BYTES];
	size_t i;

	memset(key, 0x11, sizeof(key));
	memset(nonce, 0x22, sizeof(nonce));
	REQUIRE(aead_seal(key, 32, nonce, 12, NULL, 0, k_msg, K_MSG_LEN, ct,
	    good_tag, 16) == 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_ERR(aead_seal(key, cases[i].key_len, nonce,
		    cases[i].nonce_len, NULL, 0, k_msg, K_MSG_LEN, buf, tag,
		    cases[i].tag_len), cases[i].want);
		memcpy(tag, good_tag, sizeof(good_tag));
		CHECK_ERR(aead_open(key, cases[i].key_len, nonce,
		    cases[i].nonce_len, NULL, 0, ct, K_MSG_LEN, tag,
		    cases[i].tag_len, buf), cases[i].want);
		/* An unsupported size wins over a NULL pointer. */
		if (cases[i].want != 0)
			CHECK_ERR(aead_open(NULL, cases[i].key_len, NULL,
			    cases[i].nonce_len, NULL, 0, NULL, 1, NULL,
			    cases[i].tag_len, NULL), P8V_ERR_UNSUPPORTED);
	}
}

static void
test_arguments(void)
{
	uint8_t ct[K_MSG_LEN], tag[AEAD_TAG_BYTES], out[K_MSG_LEN];

	CHECK_ERR(aead_seal(NULL, 32, k_nonce, 12, NULL, 0, k_msg, K_MSG_LEN,
	    ct, tag, 16), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(aead_seal(k_key, 32, NULL, 12, NULL, 0, k_msg, K_MSG_LEN,
	    ct, tag, 16), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(aead_seal(k_key, 32, k_nonce, 12, NULL, 1, k_msg, K_MSG_LEN,
	    ct, tag, 16), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(aead_seal(k_key, 32, k_nonce, 12, NULL, 0, NULL, K_MSG_LEN,
	    ct, tag, 16), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(aead_seal(k_key, 32, k_nonce, 12, NULL, 0, k_msg, K_MSG_LEN,
	    NULL, tag, 16), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(aead_seal(k_key, 32, k_nonce, 12, NULL, 0, k_msg, K_MSG_LEN,
	    ct, NULL, 16), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(aead_open(k_key, 32, k_nonce, 12, NULL, 0, ct, K_MSG_LEN,
	    tag, 16, NULL), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(aead_open(k_key, 32, k_nonce, 12, NULL, 0, ct, K_MSG_LEN,
	    NULL, 16, out), P8V_ERR_INVALID_ARGUMENT);
	/* Above EVP's int lengths: refused before a byte is read. */
	CHECK_ERR(aead_seal(k_key, 32, k_nonce, 12, NULL, 0, k_msg,
	    (size_t)INT_MAX + 1, ct, tag, 16), P8V_ERR_TOO_LARGE);
	CHECK_ERR(aead_open(k_key, 32, k_nonce, 12, k_aad, (size_t)INT_MAX + 1,
	    ct, K_MSG_LEN, tag, 16, out), P8V_ERR_TOO_LARGE);
	CHECK_ERR(aead_seal_random(k_key, NULL, 0, k_msg, K_MSG_LEN, NULL, ct,
	    tag), P8V_ERR_INVALID_ARGUMENT);
}

/* ct may equal pt, in both directions. */
static void
test_in_place(void)
{
	uint8_t buf[K_MSG_LEN], ct[K_MSG_LEN], tag[AEAD_TAG_BYTES];
	uint8_t tag2[AEAD_TAG_BYTES];

	REQUIRE(aead_seal(k_key, 32, k_nonce, 12, k_aad, sizeof(k_aad) - 1,
	    k_msg, K_MSG_LEN, ct, tag, 16) == 0);
	memcpy(buf, k_msg, K_MSG_LEN);
	CHECK_OK(aead_seal(k_key, 32, k_nonce, 12, k_aad, sizeof(k_aad) - 1,
	    buf, K_MSG_LEN, buf, tag2, 16));
	CHECK_MEM(buf, ct, K_MSG_LEN);
	CHECK_MEM(tag2, tag, AEAD_TAG_BYTES);
	CHECK_OK(aead_open(k_key, 32, k_nonce, 12, k_aad, sizeof(k_aad) - 1,
	    buf, K_MSG_LEN, tag, 16, buf));
	CHECK_MEM(buf, k_msg, K_MSG_LEN);
	/* In place, a failed open wipes the buffer: no unauthenticated
	 * plaintext is left behind. */
	memcpy(buf, ct, K_MSG_LEN);
	tag2[0] ^= 1;
	CHECK_ERR(aead_open(k_key, 32, k_nonce, 12, k_aad, sizeof(k_aad) - 1,
	    buf, K_MSG_LEN, tag2, 16, buf), P8V_ERR_INTEGRITY);
	CHECK(all_zero(buf, K_MSG_LEN));
}

/* Empty plaintext (NULL pointers allowed), with and without aad: the tag
 * alone authenticates. */
static void
test_empty(void)
{
	uint8_t tag[AEAD_TAG_BYTES], tag2[AEAD_TAG_BYTES];

	CHECK_OK(aead_seal(k_key, 32, k_nonce, 12, NULL, 0, NULL, 0, NULL, tag,
	    16));
	CHECK_OK(aead_open(k_key, 32, k_nonce, 12, NULL, 0, NULL, 0, tag, 16,
	    NULL));
	CHECK_OK(aead_seal(k_key, 32, k_nonce, 12, k_aad, sizeof(k_aad) - 1,
	    NULL, 0, NULL, tag2, 16));
	CHECK(memcmp(tag, tag2, sizeof(tag)) != 0);
	CHECK_ERR(aead_open(k_key, 32, k_nonce, 12, NULL, 0, NULL, 0, tag2, 16,
	    NULL), P8V_ERR_INTEGRITY);
	CHECK_OK(aead_open(k_key, 32, k_nonce, 12, k_aad, sizeof(k_aad) - 1,
	    NULL, 0, tag2, 16, NULL));
	tag[5] ^= 0x10;
	CHECK_ERR(aead_open(k_key, 32, k_nonce, 12, NULL, 0, NULL, 0, tag, 16,
	    NULL), P8V_ERR_INTEGRITY);
}

/* Fresh nonces every call, and each message opens with its own. */
#define RANDOM_SEALS 64
static void
test_seal_random(void)
{
	uint8_t nonces[RANDOM_SEALS][AEAD_NONCE_BYTES];
	uint8_t ct[K_MSG_LEN], tag[AEAD_TAG_BYTES], out[K_MSG_LEN];
	size_t i, j;

	for (i = 0; i < RANDOM_SEALS; i++) {
		CHECK_OK(aead_seal_random(k_key, k_aad, sizeof(k_aad) - 1,
		    k_msg, K_MSG_LEN, nonces[i], ct, tag));
		CHECK_OK(aead_open(k_key, 32, nonces[i], 12, k_aad,
		    sizeof(k_aad) - 1, ct, K_MSG_LEN, tag, 16, out));
		CHECK_MEM(out, k_msg, K_MSG_LEN);
	}
	for (i = 0; i < RANDOM_SEALS; i++)
		for (j = i + 1; j < RANDOM_SEALS; j++)
			CHECKF(memcmp(nonces[i], nonces[j], 12) != 0,
			    "nonces %zu and %zu repeat", i, j);
}

int
main(void)
{
	REQUIRE(secmem_init() == 0);
	setup_fixed();
	test_wycheproof();
	test_tamper();
	test_sizes();
	test_arguments();
	test_in_place();
	test_empty();
	test_seal_random();
	return check_finish();
}
