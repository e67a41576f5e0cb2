/*
 * test_jwt.c: ES256 JWS (crypto/jwt.c).
 *
 * - base64url: RFC 4648 section 10 vectors and the URL-safe alphabet.
 * - DER <-> r||s: a table of strict-DER cases (BER forms, negative and
 *   over-wide integers, trailing bytes) and the Wycheproof ECDSA P-256
 *   vectors, DER and P1363, each verdict checked against the expected result.
 * - Signing: exact header/claims text, 86-character signature, acceptance by
 *   jwt_verify_es256 and by two independent verifiers (the openssl command,
 *   tests/verify_jwt.py on python3-cryptography), rejection of every
 *   single-character change, truncation and extension, strict parsing of
 *   malformed tokens (made by this file's own signer), the token size limit,
 *   distinct signatures per call, and concurrent signing on 4 threads.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "common/err.h"
#include "crypto/jwt.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "tests/check.h"
#include "tests/testutil.h"

/* Signatures per thread and threads in the concurrency test. */
#define SIGNS_PER_THREAD 200
#define SIGN_THREADS 4
/* Tokens from one key in the distinct-signature test. */
#define DISTINCT_TOKENS 200
/* Number of vectors in the Wycheproof files (and how many are valid), so a
 * silently shortened loop fails. */
#define WP_P1363_TESTS 262
#define WP_P1363_VALID 173
#define WP_DER_TESTS 484
#define WP_DER_VALID 174

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* P-256 group order n. */
static const uint8_t order_n[32] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

/*
 * Test-local base64url, written independently of crypto/jwt.c so that a
 * decoding bug there cannot confirm itself.
 */
static int
b64val(char c)
{
	const char *p = strchr(b64url_alphabet, c);

	return c != '\0' && p != NULL ? (int)(p - b64url_alphabet) : -1;
}

/* Decode n characters (no padding) into a malloc'd buffer; -1 if invalid. */
static int
t_b64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
	uint8_t *b = malloc(n * 3 / 4 + 1);
	unsigned acc = 0;
	size_t i, len = 0;
	int bits = 0;

	if (b == NULL || n % 4 == 1) {
		free(b);
		return -1;
	}
	for (i = 0; i < n; i++) {
		int v = b64val(s[i]);

		if (v < 0) {
			free(b);
			return -1;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			b[len++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*out = b;
	*out_len = len;
	return 0;
}

static char *
t_b64_encode(const uint8_t *in, size_t n)
{
	char *o = malloc(n * 4 / 3 + 4);
	unsigned acc = 0;
	size_t i, len = 0;
	int bits = 0;

	REQUIRE(o != NULL);
	for (i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			o[len++] = b64url_alphabet[(acc >> bits) & 63];
		}
		acc &= (1u << bits) - 1;
	}
	if (bits > 0)
		o[len++] = b64url_alphabet[(acc << (6 - bits)) & 63];
	o[len] = '\0';
	return o;
}

static uint8_t *
hex(const char *h, size_t *len)
{
	uint8_t *b = NULL;

	REQUIRE(tu_hex_decode(h, &b, len) == 0);
	return b;
}

/* ---------------------------------------------------------------------- */
/* base64url known answers                                                  */

struct b64_case {
	const char *in_hex;
	const char *want;
};

static const struct b64_case b64_cases[] = {
	/* RFC 4648 section 10, without padding. */
	{ "", "" },
	{ "66", "Zg" },
	{ "666f", "Zm8" },
	{ "666f6f", "Zm9v" },
	{ "666f6f62", "Zm9vYg" },
	{ "666f6f6261", "Zm9vYmE" },
	{ "666f6f626172", "Zm9vYmFy" },
	/* '+' and '/' of standard base64 become '-' and '_'. */
	{ "fbff", "-_8" },
	{ "fbefbe", "----" },
	{ "ffffff", "____" },
	{ "000000", "AAAA" },
};

static void
test_b64url(void)
{
	size_t i, len;
	char *out;

	for (i = 0; i < sizeof(b64_cases) / sizeof(b64_cases[0]); i++) {
		uint8_t *in = hex(b64_cases[i].in_hex, &len);

		out = NULL;
		CHECK_OK(jwt_b64url_encode(in, len, &out));
		CHECK_STR(out, b64_cases[i].want);
		free(out);
		free(in);
	}
	/* Every length up to 300 bytes, of varied bytes, against
	 * libsodium's encoder. */
	for (len = 0; len <= 300; len++) {
		uint8_t in[300];
		char want[sizeof(in) * 2];

		for (i = 0; i < len; i++)
			in[i] = (uint8_t)(i * 151 + len * 7 + (i >> 3));
		sodium_bin2base64(want, sizeof(want), in, len,
		    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		out = NULL;
		CHECK_OK(jwt_b64url_encode(len > 0 ? in : NULL, len, &out));
		CHECKF(out != NULL && strcmp(out, want) == 0,
		    "base64url of %zu bytes", len);
		free(out);
	}
	out = NULL;
	CHECK_OK(jwt_b64url_encode(NULL, 0, &out));
	CHECK_STR(out, "");
	free(out);
	CHECK_ERR(jwt_b64url_encode(NULL, 1, &out), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(jwt_b64url_encode((const uint8_t *)"x", 1, NULL),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(jwt_b64url_encode((const uint8_t *)"x", SIZE_MAX, &out),
	    P8V_ERR_TOO_LARGE);
}

/* ---------------------------------------------------------------------- */
/* DER <-> r || s                                                           */

#define R1 "0000000000000000000000000000000000000000000000000000000000000001"
#define R80 "0000000000000000000000000000000000000000000000000000000000000080"
#define RFF "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
#define R0 "0000000000000000000000000000000000000000000000000000000000000000"
#define FF32 "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
#define Z32 "0000000000000000000000000000000000000000000000000000000000000000"

struct der_case {
	const char *name;
	const char *der;
	int want;
	const char *p1363; /* r || s when want == 0 */
};

static const struct der_case der_cases[] = {
	{ "r=1 s=1", "3006020101020101", 0, R1 R1 },
	{ "top bit set needs 0x00", "30070202008002010 1", 0, R80 R1 },
	{ "r=0 converts (verify refuses)", "3006020100020101", 0, R0 R1 },
	{ "32-byte r with 0x00 prefix", "3026022100" FF32 "020101", 0, RFF R1 },
	{ "r 33 bytes wide", "3026022101" Z32 "020101",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "long-form SEQUENCE length", "308106020101020101",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "long-form INTEGER length", "30070281010102010 1",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "indefinite length", "30800201010201010000",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "superfluous leading zero", "300702020001020101",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "superfluous leading 0xff", "30070202ff81020101",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "negative r", "3006020181020101", P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "negative s", "30060201010201ff", P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "empty INTEGER", "30050200020101", P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "trailing byte", "300602010102010100", P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "third element", "3008020101020101 0500", P8V_ERR_INVALID_ARGUMENT,
	  NULL },
	{ "SEQUENCE length short", "3005020101020101",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "SEQUENCE length long", "3007020101020101",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "one INTEGER", "3003020101", P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "SET not SEQUENCE", "3106020101020101", P8V_ERR_INVALID_ARGUMENT,
	  NULL },
	{ "BIT STRING not INTEGER", "3006030101020101",
	  P8V_ERR_INVALID_ARGUMENT, NULL },
	{ "empty", "", P8V_ERR_INVALID_ARGUMENT, NULL },
};

/* Remove the spaces the table uses for readability. */
static uint8_t *
hex_nospace(const char *h, size_t *len)
{
	char buf[512];
	size_t i, n = 0;

	for (i = 0; h[i] != '\0' && n + 1 < sizeof(buf); i++)
		if (h[i] != ' ')
			buf[n++] = h[i];
	buf[n] = '\0';
	return hex(buf, len);
}

static void
test_der_table(void)
{
	size_t i, der_len, want_len, again_len;
	uint8_t sig[JWT_ES256_SIG_BYTES], *der, *want, *again;

	for (i = 0; i < sizeof(der_cases) / sizeof(der_cases[0]); i++) {
		const struct der_case *c = &der_cases[i];
		int rc;

		der = hex_nospace(c->der, &der_len);
		memset(sig, 0xaa, sizeof(sig));
		rc = jwt_der_to_p1363(der, der_len, sig);
		CHECKF(rc == c->want, "%s: got %s", c->name, p8v_errname(rc));
		if (c->want == 0 && rc == 0) {
			want = hex(c->p1363, &want_len);
			REQUIRE(want_len == sizeof(sig));
			CHECKF(memcmp(sig, want, sizeof(sig)) == 0, "%s",
			    c->name);
			/* And back to the same DER. */
			again = NULL;
			CHECK_OK(jwt_p1363_to_der(sig, sizeof(sig), &again,
			    &again_len));
			CHECKF(again != NULL && again_len == der_len &&
			    memcmp(again, der, der_len) == 0, "%s", c->name);
			free(again);
			free(want);
		}
		free(der);
	}
	CHECK_ERR(jwt_der_to_p1363(NULL, 8, sig), P8V_ERR_INVALID_ARGUMENT);

	/* r || s must be exactly 64 bytes. */
	{
		static const size_t bad_lens[] = { 0, 1, 32, 63, 65, 66, 128 };
		uint8_t big[128] = { 1 };

		for (i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++) {
			der = (uint8_t *)"untouched";
			CHECKF(jwt_p1363_to_der(big, bad_lens[i], &der,
			    &der_len) == P8V_ERR_INVALID_ARGUMENT, "len %zu",
			    bad_lens[i]);
		}
		CHECK_ERR(jwt_p1363_to_der(NULL, 64, &der, &der_len),
		    P8V_ERR_INVALID_ARGUMENT);
		CHECK_ERR(jwt_p1363_to_der(big, 64, NULL, &der_len),
		    P8V_ERR_INVALID_ARGUMENT);
	}
	/* The widest case: both with the top bit set, 72 bytes. */
	memset(sig, 0xff, sizeof(sig));
	der = NULL;
	CHECK_OK(jwt_p1363_to_der(sig, sizeof(sig), &der, &der_len));
	CHECK_INT(der_len, 72);
	free(der);
}

/* ---------------------------------------------------------------------- */
/* Wycheproof                                                               */

/* OpenSSL's own verdict on a DER signature (EVP_DigestVerify). */
static int
openssl_verify_der(EVP_PKEY *pkey, const uint8_t *msg, size_t msg_len,
    const uint8_t *der, size_t der_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok;

	REQUIRE(ctx != NULL);
	REQUIRE(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1);
	ok = EVP_DigestVerify(ctx, der, der_len, msg, msg_len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

struct wp_group {
	EVP_PKEY *pkey;             /* from publicKeyDer */
	uint8_t pub[P8_PUBLIC_BYTES]; /* from publicKey.uncompressed */
};

static void
wp_group_load(const json_t *group, struct wp_group *g)
{
	const json_t *key = json_object_get(group, "publicKey");
	const char *der_hex = json_string_value(json_object_get(group,
	    "publicKeyDer"));
	const char *unc = json_string_value(json_object_get(key,
	    "uncompressed"));
	const unsigned char *p;
	uint8_t *der, *pt;
	size_t der_len, pt_len;

	REQUIRE(der_hex != NULL && unc != NULL);
	der = hex(der_hex, &der_len);
	p = der;
	g->pkey = d2i_PUBKEY(NULL, &p, (long)der_len);
	REQUIRE(g->pkey != NULL);
	pt = hex(unc, &pt_len);
	REQUIRE(pt_len == P8_PUBLIC_BYTES);
	memcpy(g->pub, pt, P8_PUBLIC_BYTES);
	free(pt);
	free(der);
}

static int
wp_expected_valid(const json_t *t)
{
	const char *res = json_string_value(json_object_get(t, "result"));

	REQUIRE(res != NULL);
	/* These two files hold only "valid" and "invalid". */
	REQUIRE(strcmp(res, "valid") == 0 || strcmp(res, "invalid") == 0);
	return strcmp(res, "valid") == 0;
}

static void
test_wycheproof_p1363(void)
{
	json_t *doc = tu_wycheproof_load("ecdsa_secp256r1_sha256_p1363_test.json");
	const json_t *groups, *group, *tests, *t;
	size_t gi, ti, total = 0, valid = 0;

	REQUIRE(doc != NULL);
	groups = json_object_get(doc, "testGroups");
	json_array_foreach(groups, gi, group) {
		struct wp_group g;

		wp_group_load(group, &g);
		tests = json_object_get(group, "tests");
		json_array_foreach(tests, ti, t) {
			int tc = (int)json_integer_value(json_object_get(t,
			    "tcId"));
			int want = wp_expected_valid(t), got, rc;
			uint8_t *msg, *sig, *der = NULL;
			size_t msg_len, sig_len, der_len = 0;

			msg = hex(json_string_value(json_object_get(t, "msg")),
			    &msg_len);
			sig = hex(json_string_value(json_object_get(t, "sig")),
			    &sig_len);
			rc = jwt_p1363_to_der(sig, sig_len, &der, &der_len);
			if (sig_len != JWT_ES256_SIG_BYTES) {
				CHECKF(rc == P8V_ERR_INVALID_ARGUMENT,
				    "tcId %d: %s", tc, p8v_errname(rc));
				got = 0; /* refused: counts as invalid */
			} else {
				CHECKF(rc == 0, "tcId %d: %s", tc,
				    p8v_errname(rc));
				got = rc == 0 && openssl_verify_der(g.pkey,
				    msg, msg_len, der, der_len);
			}
			CHECKF(got == want, "tcId %d (%s): converted+OpenSSL "
			    "says %d, want %d", tc, json_string_value(
			    json_object_get(t, "comment")), got, want);
			/* The verifier jwt_verify_es256 is built on. */
			rc = jwt_verify_es256_raw(g.pub, msg, msg_len, sig,
			    sig_len);
			CHECKF(rc == (want ? 0 : P8V_ERR_INTEGRITY),
			    "tcId %d (%s): jwt_verify_es256_raw %s", tc,
			    json_string_value(json_object_get(t, "comment")),
			    p8v_errname(rc));
			total++;
			valid += (size_t)want;
			free(der);
			free(msg);
			free(sig);
		}
		EVP_PKEY_free(g.pkey);
	}
	CHECK_INT(total, WP_P1363_TESTS);
	CHECK_INT(valid, WP_P1363_VALID);
	json_decref(doc);
}

static void
test_wycheproof_der(void)
{
	json_t *doc = tu_wycheproof_load("ecdsa_secp256r1_sha256_test.json");
	const json_t *groups, *group, *tests, *t;
	size_t gi, ti, total = 0, valid = 0;

	REQUIRE(doc != NULL);
	groups = json_object_get(doc, "testGroups");
	json_array_foreach(groups, gi, group) {
		struct wp_group g;

		wp_group_load(group, &g);
		tests = json_object_get(group, "tests");
		json_array_foreach(tests, ti, t) {
			int tc = (int)json_integer_value(json_object_get(t,
			    "tcId"));
			const char *comment = json_string_value(
			    json_object_get(t, "comment"));
			int want = wp_expected_valid(t), parsed, got;
			uint8_t *msg, *der, *again = NULL;
			uint8_t sig[JWT_ES256_SIG_BYTES];
			size_t msg_len, der_len, again_len = 0;

			msg = hex(json_string_value(json_object_get(t, "msg")),
			    &msg_len);
			der = hex(json_string_value(json_object_get(t, "sig")),
			    &der_len);
			parsed = jwt_der_to_p1363(der, der_len, sig) == 0;
			if (parsed) {
				/* Strict DER: the round trip gives back the
				 * exact input, for every vector that parses. */
				CHECKF(jwt_p1363_to_der(sig, sizeof(sig),
				    &again, &again_len) == 0 &&
				    again_len == der_len &&
				    memcmp(again, der, der_len) == 0,
				    "tcId %d (%s): round trip", tc, comment);
			}
			if (want)
				CHECKF(parsed, "tcId %d (%s): valid DER refused",
				    tc, comment);
			got = parsed && openssl_verify_der(g.pkey, msg,
			    msg_len, der, der_len);
			CHECKF(got == want, "tcId %d (%s): parse+OpenSSL says "
			    "%d, want %d", tc, comment, got, want);
			got = parsed && jwt_verify_es256_raw(g.pub, msg,
			    msg_len, sig, sizeof(sig)) == 0;
			CHECKF(got == want, "tcId %d (%s): parse+"
			    "jwt_verify_es256_raw says %d, want %d", tc,
			    comment, got, want);
			total++;
			valid += (size_t)want;
			free(again);
			free(der);
			free(msg);
		}
		EVP_PKEY_free(g.pkey);
	}
	CHECK_INT(total, WP_DER_TESTS);
	CHECK_INT(valid, WP_DER_VALID);
	json_decref(doc);
}

/* ---------------------------------------------------------------------- */
/* Keys                                                                     */

struct test_key {
	EVP_PKEY *evp;       /* this file's copy, for its own signer */
	struct p8_key *key;  /* the vault's key */
	uint8_t pub[P8_PUBLIC_BYTES];
	char *pub_pem_path;  /* SubjectPublicKeyInfo PEM, for the verifiers */
};

static char *tmpdir;
static unsigned file_seq;

static char *
tmp_path(const char *name)
{
	char *p;

	REQUIRE(asprintf(&p, "%s/%u-%s", tmpdir, file_seq++, name) > 0);
	return p;
}

static void
write_pub_pem(struct test_key *k)
{
	FILE *f;

	k->pub_pem_path = tmp_path("pub.pem");
	REQUIRE((f = fopen(k->pub_pem_path, "w")) != NULL);
	REQUIRE(PEM_write_PUBKEY(f, k->evp) == 1);
	REQUIRE(fclose(f) == 0);
}

/* A fresh key from OpenSSL, handed to the vault as scalar + point. */
static void
key_from_openssl(struct test_key *k)
{
	BIGNUM *d = NULL;
	uint8_t *scalar = secmem_alloc(P8_SCALAR_BYTES);
	size_t pub_len = 0;

	memset(k, 0, sizeof(*k));
	REQUIRE(scalar != NULL);
	REQUIRE((k->evp = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) != NULL);
	REQUIRE(EVP_PKEY_get_bn_param(k->evp, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1);
	REQUIRE(BN_bn2binpad(d, scalar, P8_SCALAR_BYTES) == P8_SCALAR_BYTES);
	BN_clear_free(d);
	REQUIRE(EVP_PKEY_get_octet_string_param(k->evp,
	    OSSL_PKEY_PARAM_PUB_KEY, k->pub, sizeof(k->pub), &pub_len) == 1);
	REQUIRE(pub_len == P8_PUBLIC_BYTES && k->pub[0] == 0x04);
	CHECK_OK(p8_key_from_scalar(scalar, k->pub, &k->key));
	REQUIRE(k->key != NULL);
	secmem_free(scalar);
	write_pub_pem(k);
}

/* A key as Apple hands it out: a PKCS#8 PEM made by the openssl command,
 * read through p8_parse. */
static void
key_from_p8_file(struct test_key *k)
{
	char *p8 = tmp_path("AuthKey.p8");
	uint8_t *file = NULL, *input;
	size_t len = 0;
	FILE *f;

	memset(k, 0, sizeof(*k));
	REQUIRE(tu_system("openssl genpkey -algorithm EC -pkeyopt "
	    "ec_paramgen_curve:P-256 -out '%s' 2>/dev/null", p8) == 0);
	REQUIRE(tu_read_file(p8, &file, &len) == 0);
	REQUIRE((input = secmem_alloc(len + 1)) != NULL);
	memcpy(input, file, len);
	secmem_wipe(file, len);
	free(file);
	CHECK_OK(p8_parse(input, len, &k->key));
	REQUIRE(k->key != NULL);
	CHECK_OK(p8_key_public_point(k->key, k->pub));
	/* The test's own EVP_PKEY of the same key, read by OpenSSL. */
	REQUIRE((f = fopen(p8, "r")) != NULL);
	REQUIRE((k->evp = PEM_read_PrivateKey(f, NULL, NULL, NULL)) != NULL);
	fclose(f);
	secmem_free(input);
	REQUIRE(tu_system("rm -f -- '%s'", p8) == 0);
	free(p8);
	write_pub_pem(k);
	/* The point p8_parse reports is the one OpenSSL reads. */
	{
		uint8_t pub[P8_PUBLIC_BYTES];
		size_t pub_len = 0;

		REQUIRE(EVP_PKEY_get_octet_string_param(k->evp,
		    OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &pub_len) == 1);
		CHECK(pub_len == P8_PUBLIC_BYTES &&
		    memcmp(pub, k->pub, P8_PUBLIC_BYTES) == 0);
	}
}

static void
key_free(struct test_key *k)
{
	p8_key_destroy(k->key);
	EVP_PKEY_free(k->evp);
	free(k->pub_pem_path);
	memset(k, 0, sizeof(*k));
}

/* ---------------------------------------------------------------------- */
/* Independent verifiers                                                    */

/* tests/verify_jwt.py (python3-cryptography): its exit status. Tokens only
 * hold [A-Za-z0-9._-] (tampered ones too), so they are safe to quote. */
static int
python_verify(const struct test_key *k, const char *token)
{
	const char *root = getenv("P8V_SOURCE_ROOT");

	REQUIRE(root != NULL);
	return tu_system("/usr/bin/python3 '%s/tests/verify_jwt.py' '%s' '%s' "
	    "2>/dev/null", root, k->pub_pem_path, token);
}

/* `openssl dgst -sha256 -verify`: the signing input goes to a file, r || s
 * becomes DER with jwt_p1363_to_der. Its exit status, or -1 if the token
 * does not even split into three parts with a 64-byte signature. */
static int
openssl_cmd_verify(const struct test_key *k, const char *token)
{
	const char *dot2 = strrchr(token, '.');
	uint8_t *sig = NULL, *der = NULL;
	size_t sig_len = 0, der_len = 0;
	char *input_path = tmp_path("input.txt"), *sig_path = tmp_path("sig.der");
	int st = -1;

	if (dot2 == NULL || t_b64_decode(dot2 + 1, strlen(dot2 + 1), &sig,
	    &sig_len) != 0 || jwt_p1363_to_der(sig, sig_len, &der,
	    &der_len) != 0)
		goto out;
	REQUIRE(tu_write_file(input_path, token, (size_t)(dot2 - token),
	    0600) == 0);
	REQUIRE(tu_write_file(sig_path, der, der_len, 0600) == 0);
	st = tu_system("openssl dgst -sha256 -verify '%s' -signature '%s' "
	    "'%s' >/dev/null 2>&1", k->pub_pem_path, sig_path, input_path);
 out:
	free(sig);
	free(der);
	free(input_path);
	free(sig_path);
	return st;
}

/* ---------------------------------------------------------------------- */
/* Signing                                                                  */

struct sign_case {
	const char *name;
	const char *header; /* compact JSON, in the order we insert */
	const char *claims;
};

/* Each header/claims text is both how the objects are built (json_loads
 * inserts members in document order) and what the token must carry. */
static const struct sign_case sign_cases[] = {
	{ "APNs provider token",
	  "{\"alg\":\"ES256\",\"kid\":\"ABC123DEFG\"}",
	  "{\"iss\":\"DEF123GHIJ\",\"iat\":1700000000}" },
	{ "App Store Connect",
	  "{\"alg\":\"ES256\",\"kid\":\"2X9R4HXF34\",\"typ\":\"JWT\"}",
	  "{\"iss\":\"57246542-96fe-1a63-e053-0824d011072a\","
	  "\"iat\":1700000000,\"exp\":1700001200,"
	  "\"aud\":\"appstoreconnect-v1\"}" },
	{ "Sign in with Apple, unsorted members",
	  "{\"kid\":\"ZZZZZZZZZZ\",\"alg\":\"ES256\"}",
	  "{\"sub\":\"com.example.app\",\"iss\":\"DEF123GHIJ\","
	  "\"iat\":1700000000,\"exp\":1715777000,"
	  "\"aud\":\"https://appleid.apple.com\"}" },
	{ "WeatherKit, escapes and UTF-8",
	  "{\"alg\":\"ES256\",\"kid\":\"ABC123DEFG\","
	  "\"id\":\"DEF123GHIJ.com.example.weather\"}",
	  "{\"iss\":\"DEF123GHIJ\",\"iat\":0,\"exp\":9007199254740991,"
	  "\"sub\":\"q\\\"uote\\\\ \\u00e9t\\u00e9\",\"origin\":\"\\u2603\"}" },
	{ "empty claims", "{\"alg\":\"ES256\"}", "{}" },
};

/* Split at the two dots; parts point into token. 0 or -1. */
static int
split(const char *token, const char **p1, const char **p2)
{
	const char *d1 = strchr(token, '.'), *d2;

	if (d1 == NULL || (d2 = strchr(d1 + 1, '.')) == NULL ||
	    strchr(d2 + 1, '.') != NULL)
		return -1;
	*p1 = d1 + 1;
	*p2 = d2 + 1;
	return 0;
}

/* Decode a part and compare it with the text json_dumps would write;
 * jansson writes non-ASCII as raw UTF-8 and \" and \\ as escapes. */
static int
part_is(const char *part, size_t n, const json_t *want_obj)
{
	char *want = json_dumps(want_obj, JSON_COMPACT);
	uint8_t *raw = NULL;
	size_t raw_len = 0;
	int ok;

	REQUIRE(want != NULL);
	ok = t_b64_decode(part, n, &raw, &raw_len) == 0 &&
	    raw_len == strlen(want) && memcmp(raw, want, raw_len) == 0;
	free(raw);
	free(want);
	return ok;
}

static json_t *
load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);

	if (j == NULL)
		fprintf(stderr, "bad test JSON %s: %s\n", text, e.text);
	REQUIRE(j != NULL);
	return j;
}

static void
test_sign_cases(const struct test_key *k, const struct test_key *other)
{
	size_t i;

	for (i = 0; i < sizeof(sign_cases) / sizeof(sign_cases[0]); i++) {
		const struct sign_case *c = &sign_cases[i];
		json_t *h = load(c->header), *cl = load(c->claims);
		char *token = NULL, *bad;
		const char *p1, *p2;
		size_t j;

		CHECK_OK(jwt_sign_es256(k->key, h, cl, &token));
		REQUIRE(token != NULL);
		REQUIRE(split(token, &p1, &p2) == 0);
		/* Exact text: the header has no spaces, keeps its order. */
		{
			uint8_t *raw = NULL;
			size_t raw_len = 0;

			CHECKF(t_b64_decode(token, (size_t)(p1 - 1 - token),
			    &raw, &raw_len) == 0 &&
			    raw_len == strlen(c->header) &&
			    memcmp(raw, c->header, raw_len) == 0, "%s: header",
			    c->name);
			free(raw);
		}
		CHECKF(part_is(p1, (size_t)(p2 - 1 - p1), cl), "%s: claims",
		    c->name);
		CHECKF(strlen(p2) == 86, "%s: signature is %zu chars",
		    c->name, strlen(p2));
		for (j = 0; p2[j] != '\0'; j++)
			CHECKF(b64val(p2[j]) >= 0, "%s: sig char %zu", c->name,
			    j);
		CHECK(strlen(token) < JWT_MAX_TOKEN_BYTES);

		CHECKF(jwt_verify_es256(k->pub, token, strlen(token)) == 0,
		    "%s", c->name);
		CHECKF(jwt_verify_es256(other->pub, token, strlen(token)) ==
		    P8V_ERR_INTEGRITY, "%s: other key", c->name);
		CHECKF(python_verify(k, token) == 0, "%s: verify_jwt.py",
		    c->name);
		CHECKF(openssl_cmd_verify(k, token) == 0, "%s: openssl dgst",
		    c->name);
		CHECKF(python_verify(other, token) == 1,
		    "%s: verify_jwt.py other key", c->name);
		CHECKF(openssl_cmd_verify(other, token) == 1,
		    "%s: openssl dgst other key", c->name);

		/* Tamper with the claims: every verifier must refuse. */
		bad = strdup(token);
		REQUIRE(bad != NULL);
		bad[p1 - token] = bad[p1 - token] == 'A' ? 'B' : 'A';
		CHECKF(jwt_verify_es256(k->pub, bad, strlen(bad)) ==
		    P8V_ERR_INTEGRITY, "%s: tampered", c->name);
		CHECKF(python_verify(k, bad) == 1, "%s: verify_jwt.py tampered",
		    c->name);
		CHECKF(openssl_cmd_verify(k, bad) == 1,
		    "%s: openssl dgst tampered", c->name);
		/* And the signature. */
		strcpy(bad, token);
		bad[strlen(bad) - 10] = bad[strlen(bad) - 10] == 'A' ? 'B' : 'A';
		CHECKF(python_verify(k, bad) == 1, "%s: verify_jwt.py bad sig",
		    c->name);
		CHECKF(openssl_cmd_verify(k, bad) == 1,
		    "%s: openssl dgst bad sig", c->name);
		free(bad);
		free(token);
		json_decref(h);
		json_decref(cl);
	}
}

/* Insertion order, not sorted order, and integers as integers. */
static void
test_sign_order(const struct test_key *k)
{
	json_t *h = json_pack("{s:s, s:s, s:s}", "typ", "JWT", "kid",
	    "ABC123DEFG", "alg", "ES256");
	json_t *cl = json_pack("{s:I, s:s}", "iat", (json_int_t)1700000000,
	    "iss", "DEF123GHIJ");
	char *token = NULL;
	const char *p1, *p2;
	uint8_t *raw = NULL;
	size_t raw_len = 0;
	static const char want_h[] =
	    "{\"typ\":\"JWT\",\"kid\":\"ABC123DEFG\",\"alg\":\"ES256\"}";
	static const char want_c[] = "{\"iat\":1700000000,\"iss\":\"DEF123GHIJ\"}";

	REQUIRE(h != NULL && cl != NULL);
	CHECK_OK(jwt_sign_es256(k->key, h, cl, &token));
	REQUIRE(token != NULL && split(token, &p1, &p2) == 0);
	CHECK(t_b64_decode(token, (size_t)(p1 - 1 - token), &raw, &raw_len) ==
	    0 && raw_len == strlen(want_h) && memcmp(raw, want_h, raw_len) == 0);
	free(raw);
	raw = NULL;
	CHECK(t_b64_decode(p1, (size_t)(p2 - 1 - p1), &raw, &raw_len) == 0 &&
	    raw_len == strlen(want_c) && memcmp(raw, want_c, raw_len) == 0);
	free(raw);
	CHECK_OK(jwt_verify_es256(k->pub, token, strlen(token)));
	free(token);
	json_decref(h);
	json_decref(cl);
}

struct sign_arg_case {
	const char *name;
	int null_key;
	const char *header; /* NULL: pass a NULL header */
	const char *claims;
	int want;
};

static const struct sign_arg_case sign_arg_cases[] = {
	{ "NULL key", 1, "{\"alg\":\"ES256\"}", "{}", P8V_ERR_INVALID_ARGUMENT },
	{ "NULL header", 0, NULL, "{}", P8V_ERR_INVALID_ARGUMENT },
	{ "NULL claims", 0, "{\"alg\":\"ES256\"}", NULL,
	  P8V_ERR_INVALID_ARGUMENT },
	{ "header array", 0, "[\"ES256\"]", "{}", P8V_ERR_INVALID_ARGUMENT },
	{ "claims string", 0, "{\"alg\":\"ES256\"}", "\"x\"",
	  P8V_ERR_INVALID_ARGUMENT },
	{ "claims array", 0, "{\"alg\":\"ES256\"}", "[]",
	  P8V_ERR_INVALID_ARGUMENT },
	{ "no alg", 0, "{\"kid\":\"ABC123DEFG\"}", "{}",
	  P8V_ERR_INVALID_ARGUMENT },
	{ "alg none", 0, "{\"alg\":\"none\"}", "{}", P8V_ERR_INVALID_ARGUMENT },
	{ "alg ES384", 0, "{\"alg\":\"ES384\"}", "{}", P8V_ERR_INVALID_ARGUMENT },
	{ "alg lowercase", 0, "{\"alg\":\"es256\"}", "{}",
	  P8V_ERR_INVALID_ARGUMENT },
	{ "alg not a string", 0, "{\"alg\":256}", "{}",
	  P8V_ERR_INVALID_ARGUMENT },
	{ "alg with suffix", 0, "{\"alg\":\"ES256 \"}", "{}",
	  P8V_ERR_INVALID_ARGUMENT },
};

static void
test_sign_args(const struct test_key *k)
{
	size_t i;

	for (i = 0; i < sizeof(sign_arg_cases) / sizeof(sign_arg_cases[0]);
	    i++) {
		const struct sign_arg_case *c = &sign_arg_cases[i];
		json_t *h = c->header ? load(c->header) : NULL;
		json_t *cl = c->claims ? load(c->claims) : NULL;
		char *token = (char *)"untouched";
		int rc;

		rc = jwt_sign_es256(c->null_key ? NULL : k->key, h, cl, &token);
		CHECKF(rc == c->want, "%s: got %s", c->name, p8v_errname(rc));
		CHECKF(token == NULL, "%s: token not cleared", c->name);
		json_decref(h);
		json_decref(cl);
	}
	{
		json_t *h = load("{\"alg\":\"ES256\"}"), *cl = load("{}");

		CHECK_ERR(jwt_sign_es256(k->key, h, cl, NULL),
		    P8V_ERR_INVALID_ARGUMENT);
		json_decref(h);
		json_decref(cl);
	}
}

/* Token length (no NUL) for header and claims texts of these lengths. */
static size_t
expected_token_len(size_t hlen, size_t clen)
{
	return (hlen * 4 + 2) / 3 + 1 + (clen * 4 + 2) / 3 + 1 + 86;
}

/* The size limit is exact: a token and its NUL fit in JWT_MAX_TOKEN_BYTES,
 * one more character is refused, and everything emitted verifies. */
static void
test_sign_limit(const struct test_key *k)
{
	json_t *h = load("{\"alg\":\"ES256\",\"kid\":\"ABC123DEFG\"}");
	char *hjson = json_dumps(h, JSON_COMPACT);
	size_t hlen = strlen(hjson), pad, ok_count = 0, big_count = 0;
	/* claims {"p":"xxx..."}: 8 characters of JSON around the padding. */
	size_t base = 8, last_ok = 0;
	char *filler = malloc(JWT_MAX_TOKEN_BYTES * 2);

	REQUIRE(filler != NULL);
	memset(filler, 'x', JWT_MAX_TOKEN_BYTES * 2);
	/* The longest padding whose token still fits, by the formula. */
	for (pad = 0; expected_token_len(hlen, base + pad) + 1 <=
	    JWT_MAX_TOKEN_BYTES; pad++)
		last_ok = pad;
	REQUIRE(last_ok > 8);
	for (pad = last_ok - 8; pad < last_ok + 8; pad++) {
		json_t *cl = json_pack("{s:s%}", "p", filler, pad);
		size_t want_len = expected_token_len(hlen, base + pad);
		char *token = NULL;
		int rc;

		REQUIRE(cl != NULL);
		rc = jwt_sign_es256(k->key, h, cl, &token);
		if (want_len + 1 <= JWT_MAX_TOKEN_BYTES) {
			CHECKF(rc == 0, "pad %zu: %s", pad, p8v_errname(rc));
			CHECKF(token != NULL && strlen(token) == want_len,
			    "pad %zu", pad);
			CHECKF(token != NULL && jwt_verify_es256(k->pub, token,
			    strlen(token)) == 0, "pad %zu: verify", pad);
			ok_count++;
		} else {
			CHECKF(rc == P8V_ERR_TOO_LARGE, "pad %zu: %s", pad,
			    p8v_errname(rc));
			CHECK(token == NULL);
			big_count++;
		}
		free(token);
		json_decref(cl);
	}
	/* The window straddles the limit. */
	CHECK(ok_count > 0 && big_count > 0);
	/* Far over the limit. */
	{
		json_t *cl = json_pack("{s:s%}", "p", filler,
		    (size_t)JWT_MAX_TOKEN_BYTES * 2);
		char *token = NULL;

		CHECK_ERR(jwt_sign_es256(k->key, h, cl, &token),
		    P8V_ERR_TOO_LARGE);
		json_decref(cl);
	}
	free(filler);
	free(hjson);
	json_decref(h);
}

/* Every single-character change anywhere in a token is refused, as are
 * all truncations and extensions. */
static void
test_tamper_sweep(const struct test_key *k)
{
	json_t *h = load(sign_cases[0].header), *cl = load(sign_cases[0].claims);
	static const char extra[] = ".=+/ \n\t~";
	char *token = NULL, *bad;
	size_t len, i, j, changes = 0;

	CHECK_OK(jwt_sign_es256(k->key, h, cl, &token));
	REQUIRE(token != NULL);
	len = strlen(token);
	REQUIRE((bad = malloc(len + 4)) != NULL);
	for (i = 0; i < len; i++) {
		for (j = 0; j < sizeof(b64url_alphabet) - 1 + sizeof(extra) - 1;
		    j++) {
			char c = j < sizeof(b64url_alphabet) - 1 ?
			    b64url_alphabet[j] :
			    extra[j - (sizeof(b64url_alphabet) - 1)];

			if (c == token[i])
				continue;
			memcpy(bad, token, len + 1);
			bad[i] = c;
			CHECKF(jwt_verify_es256(k->pub, bad, len) ==
			    P8V_ERR_INTEGRITY, "position %zu -> '%c'", i, c);
			changes++;
		}
		/* NUL inside the counted length. */
		memcpy(bad, token, len + 1);
		bad[i] = '\0';
		CHECKF(jwt_verify_es256(k->pub, bad, len) == P8V_ERR_INTEGRITY,
		    "position %zu -> NUL", i);
	}
	CHECK(changes > len * 60);
	for (i = 0; i < len; i++)
		CHECKF(jwt_verify_es256(k->pub, token, i) == P8V_ERR_INTEGRITY,
		    "truncated to %zu", i);
	for (j = 0; j < sizeof(b64url_alphabet) - 1; j += 7) {
		memcpy(bad, token, len);
		bad[len] = b64url_alphabet[j];
		CHECKF(jwt_verify_es256(k->pub, bad, len + 1) ==
		    P8V_ERR_INTEGRITY, "extended by '%c'", bad[len]);
	}
	CHECK_OK(jwt_verify_es256(k->pub, token, len));
	free(bad);
	free(token);
	json_decref(h);
	json_decref(cl);
}

/* ---------------------------------------------------------------------- */
/* Malformed tokens, made by this file's own signer                        */

/* r || s over input by OpenSSL directly (not through crypto/jwt.c). */
static void
own_sign(EVP_PKEY *pkey, const char *input, uint8_t sig[64])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t der[80];
	size_t der_len = sizeof(der);
	const unsigned char *p = der;
	ECDSA_SIG *es;
	const BIGNUM *r, *s;

	REQUIRE(ctx != NULL);
	REQUIRE(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1);
	REQUIRE(EVP_DigestSign(ctx, der, &der_len, (const uint8_t *)input,
	    strlen(input)) == 1);
	REQUIRE((es = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) != NULL);
	ECDSA_SIG_get0(es, &r, &s);
	REQUIRE(BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32,
	    32) == 32);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(ctx);
}

/* x = n - x (32 bytes, big-endian), for the high-s twin of a signature. */
static void
negate_mod_n(uint8_t x[32])
{
	int i, borrow = 0;

	for (i = 31; i >= 0; i--) {
		int d = order_n[i] - x[i] - borrow;

		borrow = d < 0;
		x[i] = (uint8_t)(d + (borrow ? 256 : 0));
	}
}

enum sig_edit {
	SIG_AS_IS,
	SIG_R_ZERO,
	SIG_S_ZERO,
	SIG_R_N,
	SIG_S_N,
	SIG_R_MAX,
	SIG_HIGH_S,  /* (r, n - s): also valid, JWS has no low-s rule */
	SIG_SHORT,   /* 63 bytes */
	SIG_LONG,    /* 65 bytes */
	SIG_PADDED,  /* base64 "=" padding appended */
	SIG_DER,     /* the DER form instead of r || s */
};

struct malformed_case {
	const char *name;
	const char *header;  /* raw text, not necessarily JSON */
	const char *claims;
	enum sig_edit edit;
	int want;
};

static const struct malformed_case malformed_cases[] = {
	/* Controls: this file's signer makes tokens jwt_verify_es256 takes. */
	{ "control", "{\"alg\":\"ES256\"}", "{}", SIG_AS_IS, 0 },
	{ "control, typ first", "{\"typ\":\"JWT\",\"alg\":\"ES256\"}",
	  "{\"iss\":\"DEF123GHIJ\"}", SIG_AS_IS, 0 },
	{ "high s", "{\"alg\":\"ES256\"}", "{}", SIG_HIGH_S, 0 },
	{ "alg none", "{\"alg\":\"none\"}", "{}", SIG_AS_IS, P8V_ERR_INTEGRITY },
	{ "alg ES384", "{\"alg\":\"ES384\"}", "{}", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "alg HS256", "{\"alg\":\"HS256\"}", "{}", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "alg lowercase", "{\"alg\":\"es256\"}", "{}", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "alg missing", "{\"kid\":\"ABC123DEFG\"}", "{}", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "alg array", "{\"alg\":[\"ES256\"]}", "{}", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "alg twice", "{\"alg\":\"ES256\",\"alg\":\"ES256\"}", "{}",
	  SIG_AS_IS, P8V_ERR_INTEGRITY },
	{ "alg none then ES256", "{\"alg\":\"none\",\"alg\":\"ES256\"}", "{}",
	  SIG_AS_IS, P8V_ERR_INTEGRITY },
	{ "crit", "{\"alg\":\"ES256\",\"crit\":[\"exp\"]}", "{}", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "header not JSON", "ES256", "{}", SIG_AS_IS, P8V_ERR_INTEGRITY },
	{ "header array", "[\"ES256\"]", "{}", SIG_AS_IS, P8V_ERR_INTEGRITY },
	{ "header trailing bytes", "{\"alg\":\"ES256\"}x", "{}", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "header empty", "", "{}", SIG_AS_IS, P8V_ERR_INTEGRITY },
	{ "claims not JSON", "{\"alg\":\"ES256\"}", "hello", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "claims array", "{\"alg\":\"ES256\"}", "[1]", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "claims duplicate", "{\"alg\":\"ES256\"}",
	  "{\"iss\":\"A\",\"iss\":\"B\"}", SIG_AS_IS, P8V_ERR_INTEGRITY },
	{ "claims empty", "{\"alg\":\"ES256\"}", "", SIG_AS_IS,
	  P8V_ERR_INTEGRITY },
	{ "r = 0", "{\"alg\":\"ES256\"}", "{}", SIG_R_ZERO, P8V_ERR_INTEGRITY },
	{ "s = 0", "{\"alg\":\"ES256\"}", "{}", SIG_S_ZERO, P8V_ERR_INTEGRITY },
	{ "r = n", "{\"alg\":\"ES256\"}", "{}", SIG_R_N, P8V_ERR_INTEGRITY },
	{ "s = n", "{\"alg\":\"ES256\"}", "{}", SIG_S_N, P8V_ERR_INTEGRITY },
	{ "r = 2^256-1", "{\"alg\":\"ES256\"}", "{}", SIG_R_MAX,
	  P8V_ERR_INTEGRITY },
	{ "63-byte signature", "{\"alg\":\"ES256\"}", "{}", SIG_SHORT,
	  P8V_ERR_INTEGRITY },
	{ "65-byte signature", "{\"alg\":\"ES256\"}", "{}", SIG_LONG,
	  P8V_ERR_INTEGRITY },
	{ "padded signature", "{\"alg\":\"ES256\"}", "{}", SIG_PADDED,
	  P8V_ERR_INTEGRITY },
	{ "DER signature", "{\"alg\":\"ES256\"}", "{}", SIG_DER,
	  P8V_ERR_INTEGRITY },
};

/* Build b64(header) "." b64(claims) "." b64(edited signature). */
static char *
make_token(EVP_PKEY *pkey, const char *header, const char *claims,
    enum sig_edit edit)
{
	char *h = t_b64_encode((const uint8_t *)header, strlen(header));
	char *c = t_b64_encode((const uint8_t *)claims, strlen(claims));
	char *input, *s, *token;
	uint8_t sig[65], *der = NULL;
	size_t sig_len = 64, der_len = 0;

	REQUIRE(asprintf(&input, "%s.%s", h, c) > 0);
	own_sign(pkey, input, sig);
	switch (edit) {
	case SIG_AS_IS:
	case SIG_PADDED:
		break;
	case SIG_R_ZERO:
		memset(sig, 0, 32);
		break;
	case SIG_S_ZERO:
		memset(sig + 32, 0, 32);
		break;
	case SIG_R_N:
		memcpy(sig, order_n, 32);
		break;
	case SIG_S_N:
		memcpy(sig + 32, order_n, 32);
		break;
	case SIG_R_MAX:
		memset(sig, 0xff, 32);
		break;
	case SIG_HIGH_S:
		negate_mod_n(sig + 32);
		break;
	case SIG_SHORT:
		sig_len = 63;
		break;
	case SIG_LONG:
		sig[64] = 0;
		sig_len = 65;
		break;
	case SIG_DER:
		REQUIRE(jwt_p1363_to_der(sig, 64, &der, &der_len) == 0);
		break;
	}
	s = der != NULL ? t_b64_encode(der, der_len) : t_b64_encode(sig,
	    sig_len);
	REQUIRE(asprintf(&token, "%s.%s%s", input, s,
	    edit == SIG_PADDED ? "==" : "") > 0);
	free(der);
	free(s);
	free(input);
	free(h);
	free(c);
	return token;
}

struct shape_case {
	const char *name;
	const char *prefix; /* put around a valid token */
	const char *suffix;
};

static const struct shape_case shape_cases[] = {
	{ "fourth part", "", ".AAAA" },
	{ "trailing dot", "", "." },
	{ "leading dot", ".", "" },
	{ "leading space", " ", "" },
	{ "trailing newline", "", "\n" },
	{ "bearer prefix", "bearer ", "" },
};

static void
test_malformed(const struct test_key *k)
{
	size_t i;

	for (i = 0; i < sizeof(malformed_cases) / sizeof(malformed_cases[0]);
	    i++) {
		const struct malformed_case *c = &malformed_cases[i];
		char *token = make_token(k->evp, c->header, c->claims, c->edit);
		int rc = jwt_verify_es256(k->pub, token, strlen(token));

		CHECKF(rc == c->want, "%s: got %s", c->name, p8v_errname(rc));
		/* The independent verifier agrees where it checks the same
		 * thing (it does not refuse crit, duplicates are checked). */
		if (c->edit == SIG_AS_IS && strcmp(c->name, "crit") != 0)
			CHECKF(python_verify(k, token) == (c->want == 0 ? 0 : 1),
			    "%s: verify_jwt.py", c->name);
		free(token);
	}
	/* Token shapes around a valid token. */
	{
		char *valid = make_token(k->evp, "{\"alg\":\"ES256\"}", "{}",
		    SIG_AS_IS);
		static const char *const bare[] = { "", ".", "..", "...",
		    "a.b.c", "e30.e30.", ".e30." };

		for (i = 0; i < sizeof(shape_cases) / sizeof(shape_cases[0]);
		    i++) {
			char *t;

			REQUIRE(asprintf(&t, "%s%s%s", shape_cases[i].prefix,
			    valid, shape_cases[i].suffix) > 0);
			CHECKF(jwt_verify_es256(k->pub, t, strlen(t)) ==
			    P8V_ERR_INTEGRITY, "%s", shape_cases[i].name);
			free(t);
		}
		for (i = 0; i < sizeof(bare) / sizeof(bare[0]); i++)
			CHECKF(jwt_verify_es256(k->pub, bare[i],
			    strlen(bare[i])) == P8V_ERR_INTEGRITY, "\"%s\"",
			    bare[i]);
		/* Over the size limit, even if properly signed. */
		{
			char *claims = malloc(JWT_MAX_TOKEN_BYTES + 16), *big;

			REQUIRE(claims != NULL);
			memset(claims, ' ', JWT_MAX_TOKEN_BYTES);
			memcpy(claims, "{}", 2);
			claims[JWT_MAX_TOKEN_BYTES] = '\0';
			big = make_token(k->evp, "{\"alg\":\"ES256\"}", claims,
			    SIG_AS_IS);
			CHECK_ERR(jwt_verify_es256(k->pub, big, strlen(big)),
			    P8V_ERR_INTEGRITY);
			free(big);
			free(claims);
		}
		/* Bad arguments and public points. */
		{
			uint8_t pub[P8_PUBLIC_BYTES];

			CHECK_ERR(jwt_verify_es256(NULL, valid, strlen(valid)),
			    P8V_ERR_INVALID_ARGUMENT);
			CHECK_ERR(jwt_verify_es256(k->pub, NULL, 5),
			    P8V_ERR_INVALID_ARGUMENT);
			memcpy(pub, k->pub, sizeof(pub));
			pub[0] = 0x06; /* hybrid form */
			CHECK_ERR(jwt_verify_es256(pub, valid, strlen(valid)),
			    P8V_ERR_INVALID_ARGUMENT);
			memcpy(pub, k->pub, sizeof(pub));
			pub[64] ^= 1; /* off the curve */
			CHECK_ERR(jwt_verify_es256(pub, valid, strlen(valid)),
			    P8V_ERR_INVALID_ARGUMENT);
			memset(pub, 0, sizeof(pub));
			pub[0] = 0x04;
			CHECK_ERR(jwt_verify_es256(pub, valid, strlen(valid)),
			    P8V_ERR_INVALID_ARGUMENT);
			CHECK_OK(jwt_verify_es256(k->pub, valid, strlen(valid)));
		}
		free(valid);
	}
}

/* ---------------------------------------------------------------------- */
/* Randomness and threads                                                   */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
test_distinct(const struct test_key *k)
{
	json_t *h = load(sign_cases[0].header), *cl = load(sign_cases[0].claims);
	char *tokens[DISTINCT_TOKENS];
	size_t i, dupes = 0, bad = 0;

	for (i = 0; i < DISTINCT_TOKENS; i++) {
		tokens[i] = NULL;
		CHECK_OK(jwt_sign_es256(k->key, h, cl, &tokens[i]));
		REQUIRE(tokens[i] != NULL);
		bad += jwt_verify_es256(k->pub, tokens[i],
		    strlen(tokens[i])) != 0;
	}
	/* Same input, so the tokens differ only in the signature. */
	qsort(tokens, DISTINCT_TOKENS, sizeof(tokens[0]), cmp_str);
	for (i = 1; i < DISTINCT_TOKENS; i++)
		dupes += strcmp(tokens[i - 1], tokens[i]) == 0;
	CHECK_INT(dupes, 0);
	CHECK_INT(bad, 0);
	/* A few through the independent verifier too. */
	for (i = 0; i < DISTINCT_TOKENS; i += DISTINCT_TOKENS / 4)
		CHECKF(python_verify(k, tokens[i]) == 0, "token %zu", i);
	for (i = 0; i < DISTINCT_TOKENS; i++)
		free(tokens[i]);
	json_decref(h);
	json_decref(cl);
}

struct thread_arg {
	const struct test_key *k;
	int id;
	char *sigs[SIGNS_PER_THREAD]; /* signature parts, for uniqueness */
	int failures;
};

static void *
sign_thread(void *p)
{
	struct thread_arg *a = p;
	json_t *h = json_pack("{s:s, s:s}", "alg", "ES256", "kid", "ABC123DEFG");
	int i;

	if (h == NULL) {
		a->failures++;
		return NULL;
	}
	for (i = 0; i < SIGNS_PER_THREAD; i++) {
		/* A different input each time, so a digest context that kept
		 * state from the previous call would show. */
		json_t *cl = json_pack("{s:s, s:I}", "iss", "DEF123GHIJ", "iat",
		    (json_int_t)(1700000000 + a->id * 1000 + i));
		char *token = NULL;
		const char *p1, *p2;

		if (cl == NULL || jwt_sign_es256(a->k->key, h, cl, &token) != 0 ||
		    jwt_verify_es256(a->k->pub, token, strlen(token)) != 0 ||
		    split(token, &p1, &p2) != 0 ||
		    (a->sigs[i] = strdup(p2)) == NULL)
			a->failures++;
		free(token);
		json_decref(cl);
	}
	json_decref(h);
	return NULL;
}

static void
test_threads(const struct test_key *k)
{
	static struct thread_arg args[SIGN_THREADS];
	pthread_t tids[SIGN_THREADS];
	char *all[SIGN_THREADS * SIGNS_PER_THREAD];
	size_t n = 0, i, dupes = 0;
	int t, failures = 0;

	for (t = 0; t < SIGN_THREADS; t++) {
		memset(&args[t], 0, sizeof(args[t]));
		args[t].k = k;
		args[t].id = t;
		REQUIRE(pthread_create(&tids[t], NULL, sign_thread,
		    &args[t]) == 0);
	}
	for (t = 0; t < SIGN_THREADS; t++) {
		REQUIRE(pthread_join(tids[t], NULL) == 0);
		failures += args[t].failures;
		for (i = 0; i < SIGNS_PER_THREAD; i++)
			if (args[t].sigs[i] != NULL)
				all[n++] = args[t].sigs[i];
	}
	CHECK_INT(failures, 0);
	CHECK_INT(n, SIGN_THREADS * SIGNS_PER_THREAD);
	qsort(all, n, sizeof(all[0]), cmp_str);
	for (i = 1; i < n; i++)
		dupes += strcmp(all[i - 1], all[i]) == 0;
	CHECK_INT(dupes, 0);
	for (i = 0; i < n; i++)
		free(all[i]);
}

/*
 * jwt_sign_es256_scalar (the vault's path: a bare unsealed scalar, no
 * EVP_PKEY) makes the same header and claims as jwt_sign_es256 and a
 * signature every verifier accepts for k's point only; p8_scalar_check
 * accepts exactly the scalar's own point.
 */
static void
test_sign_scalar(const struct test_key *k, const struct test_key *other)
{
	uint8_t scalar[P8_SCALAR_BYTES], bad[P8_SCALAR_BYTES];
	BIGNUM *d = NULL;
	size_t i;

	REQUIRE(EVP_PKEY_get_bn_param(k->evp, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1);
	REQUIRE(BN_bn2binpad(d, scalar, P8_SCALAR_BYTES) == P8_SCALAR_BYTES);
	BN_clear_free(d);

	CHECK_OK(p8_scalar_check(scalar, k->pub));
	CHECK_INT(p8_scalar_check(scalar, other->pub),
	    P8V_ERR_P8_PUBKEY_MISMATCH);
	memset(bad, 0, sizeof(bad));
	CHECK_INT(p8_scalar_check(bad, k->pub), P8V_ERR_P8_BAD_SCALAR);
	memcpy(bad, order_n, sizeof(bad));
	CHECK_INT(p8_scalar_check(bad, k->pub), P8V_ERR_P8_BAD_SCALAR);
	CHECK_INT(p8_scalar_check(NULL, k->pub), P8V_ERR_INVALID_ARGUMENT);

	for (i = 0; i < sizeof(sign_cases) / sizeof(sign_cases[0]); i++) {
		const struct sign_case *c = &sign_cases[i];
		json_t *h = load(c->header), *cl = load(c->claims);
		char *token = NULL, *ref = NULL;
		const char *p1, *p2, *r1, *r2;

		CHECK_OK(jwt_sign_es256_scalar(scalar, h, cl, &token));
		CHECK_OK(jwt_sign_es256(k->key, h, cl, &ref));
		REQUIRE(token != NULL && ref != NULL);
		REQUIRE(split(token, &p1, &p2) == 0 && split(ref, &r1, &r2) == 0);
		CHECKF(p2 - token == r2 - ref &&
		    memcmp(token, ref, (size_t)(p2 - token)) == 0,
		    "%s: same signing input", c->name);
		CHECKF(strlen(p2) == 86, "%s: signature is %zu chars", c->name,
		    strlen(p2));
		CHECKF(jwt_verify_es256(k->pub, token, strlen(token)) == 0,
		    "%s", c->name);
		CHECKF(jwt_verify_es256(other->pub, token, strlen(token)) ==
		    P8V_ERR_INTEGRITY, "%s: other key", c->name);
		CHECKF(openssl_cmd_verify(k, token) == 0, "%s: openssl dgst",
		    c->name);
		CHECKF(openssl_cmd_verify(other, token) == 1,
		    "%s: openssl dgst other key", c->name);
		free(token);
		free(ref);
		json_decref(h);
		json_decref(cl);
	}
	{
		json_t *h = load("{\"alg\":\"ES384\",\"kid\":\"ABC123DEFG\"}");
		json_t *cl = load("{\"iss\":\"DEF123GHIJ\",\"iat\":1}");
		char *token = (char *)"x";

		CHECK_INT(jwt_sign_es256_scalar(NULL, h, cl, &token),
		    P8V_ERR_INVALID_ARGUMENT);
		CHECK(token == NULL);
		token = (char *)"x";
		CHECK_INT(jwt_sign_es256_scalar(scalar, h, cl, &token),
		    P8V_ERR_INVALID_ARGUMENT);
		CHECK(token == NULL);
		json_decref(h);
		json_decref(cl);
	}
	secmem_wipe(scalar, sizeof(scalar));
}

/*
 * Low-S: every signature, from a key object and from a bare scalar, has
 * s <= floor(n / 2), checked with BIGNUMs (not jwt.c's byte arithmetic),
 * and still verifies. Before normalisation about half had s > n / 2, so
 * 2 * LOW_S_SIGNATURES signatures all low by chance is 2^-800.
 */
#define LOW_S_SIGNATURES 400
static void
test_low_s(const struct test_key *k)
{
	json_t *h = load("{\"alg\":\"ES256\",\"kid\":\"ABC123DEFG\"}");
	uint8_t scalar[P8_SCALAR_BYTES], sig[JWT_ES256_SIG_BYTES];
	BIGNUM *d = NULL, *n = NULL, *half = NULL, *bs = NULL;
	size_t i, high = 0, bad = 0, notlow = 0;
	int pass;

	REQUIRE(EVP_PKEY_get_bn_param(k->evp, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1);
	REQUIRE(BN_bn2binpad(d, scalar, P8_SCALAR_BYTES) == P8_SCALAR_BYTES);
	BN_clear_free(d);
	REQUIRE((n = BN_bin2bn(order_n, 32, NULL)) != NULL &&
	    (half = BN_new()) != NULL && BN_rshift1(half, n) == 1 &&
	    (bs = BN_new()) != NULL);

	/* The predicate at its edges: floor(n/2) is low, one more is not. */
	memset(sig, 0x11, sizeof(sig));
	REQUIRE(BN_bn2binpad(half, sig + 32, 32) == 32);
	CHECK(jwt_es256_is_low_s(sig) == 1);
	REQUIRE(BN_add_word(half, 1) == 1 &&
	    BN_bn2binpad(half, sig + 32, 32) == 32 && BN_sub_word(half, 1) == 1);
	CHECK(jwt_es256_is_low_s(sig) == 0);
	memcpy(sig + 32, order_n, 32);
	sig[63]--;
	CHECK(jwt_es256_is_low_s(sig) == 0);
	memset(sig + 32, 0, 32);
	sig[63] = 1;
	CHECK(jwt_es256_is_low_s(sig) == 1);

	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < LOW_S_SIGNATURES; i++) {
			json_t *cl = json_pack("{s:s, s:I}", "iss",
			    "DEF123GHIJ", "iat", (json_int_t)(1700000000 + i));
			char *token = NULL;
			const char *p1, *p2;
			uint8_t *raw = NULL;
			size_t raw_len = 0;

			REQUIRE(cl != NULL);
			CHECK_OK(pass == 0 ? jwt_sign_es256(k->key, h, cl, &token) :
			    jwt_sign_es256_scalar(scalar, h, cl, &token));
			REQUIRE(token != NULL && split(token, &p1, &p2) == 0);
			REQUIRE(t_b64_decode(p2, strlen(p2), &raw, &raw_len) == 0 &&
			    raw_len == JWT_ES256_SIG_BYTES);
			REQUIRE(BN_bin2bn(raw + 32, 32, bs) != NULL);
			if (BN_cmp(bs, half) > 0)
				high++;
			if (!jwt_es256_is_low_s(raw))
				notlow++;
			if (jwt_verify_es256(k->pub, token, strlen(token)) != 0)
				bad++;
			/* A few through the openssl command too (a process each). */
			if (i < 4)
				CHECKF(openssl_cmd_verify(k, token) == 0,
				    "low-S token %zu: openssl dgst", i);
			free(raw);
			free(token);
			json_decref(cl);
		}
	}
	CHECKF(high == 0, "%zu of %d signatures have s > n/2", high,
	    2 * LOW_S_SIGNATURES);
	CHECK(notlow == 0);
	CHECK(bad == 0);
	secmem_wipe(scalar, sizeof(scalar));
	BN_free(n);
	BN_free(half);
	BN_free(bs);
	json_decref(h);
}

/*
 * Where n bytes equal to needle lie in this process's readable mappings,
 * other than at skip: how many. Read from /proc/self/maps; mappings of the
 * kernel's ([vvar], [vsyscall]) are left out.
 */
static size_t
count_in_memory(const uint8_t *needle, size_t n, const void *skip)
{
	char line[512], perms[8];
	unsigned long lo, hi;
	const uint8_t *p, *end;
	size_t found = 0;
	FILE *f;

	REQUIRE((f = fopen("/proc/self/maps", "r")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 ||
		    perms[0] != 'r' || perms[1] != 'w' ||
		    strstr(line, "[v") != NULL)
			continue;
		end = (const uint8_t *)hi;
		for (p = (const uint8_t *)lo; p + n <= end; p++) {
			p = memchr(p, needle[0], (size_t)(end - p));
			if (p == NULL || p + n > end)
				break;
			if (memcmp(p, needle, n) == 0 && p != skip)
				found++;
		}
	}
	fclose(f);
	return found;
}

/*
 * The signer's EC_KEY, kept per thread, holds a scalar only during a
 * signature: after jwt_sign_es256_scalar, no readable page of the process
 * holds the scalar as OpenSSL's BIGNUM stores it (its 64-bit words least
 * significant first: the big-endian bytes reversed). The scan is shown to
 * find such a BIGNUM first.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SCAN_OWN_MEMORY 0       /* its shadow and redzones are not ours */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SCAN_OWN_MEMORY 0
#endif
#endif
#ifndef SCAN_OWN_MEMORY
#define SCAN_OWN_MEMORY 1
#endif

static void
test_scalar_wiped(void)
{
	uint8_t scalar[P8_SCALAR_BYTES], limbs[P8_SCALAR_BYTES];
	json_t *h = json_pack("{s:s}", "alg", "ES256");
	json_t *cl = json_pack("{s:i}", "iat", 1);
	char *token = NULL;
	BIGNUM *bn;
	size_t i;

	if (!SCAN_OWN_MEMORY) {
		/* The plain build runs it. */
		json_decref(h);
		json_decref(cl);
		return;
	}
	REQUIRE(h != NULL && cl != NULL);
	/* Below the group order: the top byte is under 0xff. */
	for (i = 0; i < sizeof(scalar); i++)
		scalar[i] = (uint8_t)(0x5a ^ (i * 37));
	scalar[0] = 0x3c;
	for (i = 0; i < sizeof(scalar); i++)
		limbs[i] = scalar[sizeof(scalar) - 1 - i];

	REQUIRE((bn = BN_bin2bn(scalar, sizeof(scalar), NULL)) != NULL);
	CHECKF(count_in_memory(limbs, sizeof(limbs), limbs) >= 1,
	    "the scan finds a live BIGNUM of the scalar");
	BN_clear_free(bn);
	CHECK_INT((int)count_in_memory(limbs, sizeof(limbs), limbs), 0);

	for (i = 0; i < 3; i++) {
		CHECK_OK(jwt_sign_es256_scalar(scalar, h, cl, &token));
		free(token);
		token = NULL;
		CHECKF(count_in_memory(limbs, sizeof(limbs), limbs) == 0,
		    "signature %zu: the scalar left in memory", i);
	}
	json_decref(h);
	json_decref(cl);
}

int
main(void)
{
	struct test_key k1, k2, k3;

	REQUIRE(secmem_init() == 0);
	REQUIRE((tmpdir = tu_mkdtemp("p8v-test-jwt")) != NULL);

	test_b64url();
	test_der_table();
	test_wycheproof_p1363();
	test_wycheproof_der();

	key_from_openssl(&k1);
	key_from_openssl(&k2);
	key_from_p8_file(&k3);

	test_sign_cases(&k1, &k2);
	test_sign_cases(&k3, &k1);
	test_sign_order(&k1);
	test_sign_args(&k1);
	test_sign_limit(&k1);
	test_tamper_sweep(&k3);
	test_malformed(&k1);
	test_distinct(&k1);
	test_threads(&k1);
	test_sign_scalar(&k1, &k2);
	test_sign_scalar(&k2, &k1);
	test_scalar_wiped();
	test_low_s(&k1);
	test_low_s(&k3);

	key_free(&k1);
	key_free(&k2);
	key_free(&k3);
	tu_rmtree(tmpdir);
	free(tmpdir);
	return check_finish();
}
