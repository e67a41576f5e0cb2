/*
 * test_p8.c: .p8 parsing and validation, public key forms.
 *
 * - Wycheproof ecdh_secp256r1_pem_test.json: its 34 distinct PKCS#8 keys
 *   parse; the derived public point equals OpenSSL's own parse of the same
 *   PEM; ECDH with the parsed key gives the expected shared secret for every
 *   "valid" test (the file's `public` field is the peer's key, not the
 *   private key's, so the shared secret is what ties the two together).
 * - Wycheproof P-256 public keys: PEM, JWK and fingerprint of the ECDSA
 *   groups; p8_public_check against the ECDH file's off-curve points.
 * - A corpus made at test time by tests/p8_corpus.py with the `openssl`
 *   command: every refusal has its exact error code, every accepted variant
 *   has openssl's fingerprint of the same key; parsing writes nothing to
 *   stderr (no logging) and error messages hold no input bytes.
 * - Round trips through p8_key_export_scalar / p8_key_from_scalar, signing
 *   with the key's EVP_PKEY and verifying with openssl's parse of
 *   p8_public_pem, truncations and byte flips of a valid key.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sodium.h>

#include "crypto/p8.h"
#include "crypto/p8_internal.h"
#include "crypto/secmem.h"
#include "tests/check.h"
#include "tests/testutil.h"

/* The README of the Wycheproof copy counts them. */
#define WYCHEPROOF_DISTINCT_PRIVATE_KEYS 34
/* Upper bound for the de-duplication array (612 tests share 34 keys). */
#define WYCHEPROOF_MAX_KEYS 64
/* Shortest run of input bytes we look for in an error message. */
#define ECHO_WINDOW 12
#define SHA256_BYTES 32
/* Room for a path under the temporary directory. */
#define PATH_BYTES 4096

/* Base point G of P-256 (SEC 2), uncompressed: the public key of scalar 1. */
static const char p256_g_hex[] =
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
/* -G: the public key of scalar n - 1. */
static const char p256_minus_g_hex[] =
    "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "b01cbd1c01e58065711814b583f061e9d431cca994cea1313449bf97c840ae0a";
/* Order n of P-256. */
static const char p256_n_hex[] =
    "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

static char *scratch_dir;

/* ---- helpers ---------------------------------------------------------------- */

static uint8_t *
hex_or_die(const char *hex, size_t want_len)
{
	uint8_t *b = NULL;
	size_t n = 0;

	REQUIRE(tu_hex_decode(hex, &b, &n) == 0);
	REQUIRE(want_len == 0 || n == want_len);
	return b;
}

/* p8_parse with stderr sent to scratch_dir/stderr.log: the parser must not
 * log (log lines go to stderr), which main() checks at the end. */
static int
parse_quietly(const uint8_t *in, size_t len, struct p8_key **key)
{
	char path[PATH_BYTES];
	int saved, fd, r;

	snprintf(path, sizeof(path), "%s/stderr.log", scratch_dir);
	fflush(stderr);
	REQUIRE((saved = dup(STDERR_FILENO)) >= 0);
	REQUIRE((fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0);
	REQUIRE(dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
	r = p8_parse(in, len, key);
	fflush(stderr);
	REQUIRE(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	return r;
}

/* Lowercase hex SHA-256 of the DER SPKI OpenSSL writes for pkey. */
static void
openssl_fingerprint(EVP_PKEY *pkey, char hex[P8_FINGERPRINT_HEX + 1])
{
	uint8_t *der = NULL, digest[SHA256_BYTES];
	int n;

	REQUIRE((n = i2d_PUBKEY(pkey, &der)) > 0);
	REQUIRE(EVP_Digest(der, (size_t)n, digest, NULL, EVP_sha256(), NULL));
	sodium_bin2hex(hex, P8_FINGERPRINT_HEX + 1, digest, sizeof(digest));
	OPENSSL_free(der);
}

/* The uncompressed public point OpenSSL holds for pkey. */
static void
openssl_point(EVP_PKEY *pkey, uint8_t out[P8_PUBLIC_BYTES])
{
	size_t n = 0;

	REQUIRE(EVP_PKEY_get_octet_string_param(pkey,
	    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out, P8_PUBLIC_BYTES, &n) == 1);
	REQUIRE(n == P8_PUBLIC_BYTES);
}

static EVP_PKEY *
openssl_read_pem(const char *pem, int private)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *pkey;

	REQUIRE(bio != NULL);
	pkey = private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) :
	    PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	return pkey;
}

/* PEM of der as p8_parse would see it from a tool with 64-column lines. */
static size_t
make_pem(const uint8_t *der, size_t der_len, char *out, size_t cap)
{
	char b64[4096];
	size_t i, n, w = 0;

	REQUIRE(sodium_base64_ENCODED_LEN(der_len,
	    sodium_base64_VARIANT_ORIGINAL) <= sizeof(b64));
	sodium_bin2base64(b64, sizeof(b64), der, der_len,
	    sodium_base64_VARIANT_ORIGINAL);
	n = strlen(b64);
	w += (size_t)snprintf(out + w, cap - w, "-----BEGIN PRIVATE KEY-----\n");
	for (i = 0; i < n; i += 64)
		w += (size_t)snprintf(out + w, cap - w, "%.*s\n",
		    (int)(n - i < 64 ? n - i : 64), b64 + i);
	w += (size_t)snprintf(out + w, cap - w, "-----END PRIVATE KEY-----\n");
	REQUIRE(w < cap);
	return w;
}

/*
 * Everything a parsed key must satisfy: its public point is the one
 * expected, its fingerprint is expected_fpr (if given), the scalar round
 * trip gives the same key, and its EVP_PKEY signs what openssl's parse of
 * p8_public_pem verifies.
 */
static void
check_key(const struct p8_key *key, const char *expected_fpr,
    const char *what)
{
	uint8_t pub[P8_PUBLIC_BYTES], pub2[P8_PUBLIC_BYTES], *scalar;
	uint8_t sig[80], msg[] = "p8vault";
	char fpr[P8_FINGERPRINT_HEX + 1], fpr2[P8_FINGERPRINT_HEX + 1];
	char *pem = NULL;
	struct p8_key *again = NULL, *computed = NULL;
	EVP_PKEY *verifier = NULL;
	EVP_MD_CTX *md = NULL;
	size_t sig_len = sizeof(sig);

	REQUIRE((scalar = secmem_alloc(P8_SCALAR_BYTES)) != NULL);
	CHECK_OK(p8_key_public_point(key, pub));
	CHECK_OK(p8_public_check(pub));
	CHECK_OK(p8_public_fingerprint(pub, fpr));
	CHECKF(strlen(fpr) == P8_FINGERPRINT_HEX, "%s", what);
	if (expected_fpr != NULL)
		CHECKF(strcmp(fpr, expected_fpr) == 0, "%s: %s != %s", what,
		    fpr, expected_fpr);

	/* Scalar round trip, with and without the public point. */
	CHECK_OK(p8_key_export_scalar(key, scalar));
	CHECK_OK(p8_key_from_scalar(scalar, pub, &again));
	CHECK_OK(p8_key_from_scalar(scalar, NULL, &computed));
	if (again != NULL && computed != NULL) {
		CHECK_OK(p8_key_public_point(again, pub2));
		CHECKF(memcmp(pub, pub2, sizeof(pub)) == 0, "%s", what);
		CHECK_OK(p8_key_public_point(computed, pub2));
		CHECKF(memcmp(pub, pub2, sizeof(pub)) == 0, "%s", what);
		CHECK_OK(p8_public_fingerprint(pub2, fpr2));
		CHECK_STR(fpr2, fpr);
		CHECKF(EVP_PKEY_eq(p8_key_evp(key), p8_key_evp(computed)) == 1,
		    "%s", what);
	}

	/* The EVP_PKEY is a usable private key for this public key. */
	CHECK_OK(p8_public_pem(pub, &pem));
	if (pem != NULL && (verifier = openssl_read_pem(pem, 0)) != NULL) {
		openssl_fingerprint(verifier, fpr2);
		CHECK_STR(fpr2, fpr);
		REQUIRE((md = EVP_MD_CTX_new()) != NULL);
		CHECKF(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL,
		    p8_key_evp(key)) == 1 && EVP_DigestSign(md, sig, &sig_len,
		    msg, sizeof(msg)) == 1, "%s: sign", what);
		EVP_MD_CTX_free(md);
		REQUIRE((md = EVP_MD_CTX_new()) != NULL);
		CHECKF(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
		    verifier) == 1 && EVP_DigestVerify(md, sig, sig_len, msg,
		    sizeof(msg)) == 1, "%s: verify", what);
	} else {
		CHECKF(0, "%s: openssl cannot read p8_public_pem", what);
	}
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(verifier);
	free(pem);
	p8_key_destroy(again);
	p8_key_destroy(computed);
	secmem_free(scalar);
}

/* dir/name+ext into path (PATH_BYTES); a path that does not fit stops the
 * test rather than naming another file. */
static void
corpus_path(char path[PATH_BYTES], const char *dir, const char *name,
    const char *ext)
{
	int n = snprintf(path, PATH_BYTES, "%s/%s%s", dir, name, ext);

	REQUIRE(n > 0 && n < PATH_BYTES);
}

/* The message for err holds no run of ECHO_WINDOW bytes of the input. */
static void
check_no_echo(int err, const uint8_t *in, size_t len, const char *what)
{
	const char *msg = p8v_strerror(err);
	size_t i, n = strlen(msg);

	for (i = 0; i + ECHO_WINDOW <= n; i++)
		CHECKF(memmem(in, len, msg + i, ECHO_WINDOW) == NULL,
		    "%s: message echoes input", what);
}

/* ---- Wycheproof ---------------------------------------------------------- */

static void
test_wycheproof_private_keys(void)
{
	json_t *root = tu_wycheproof_load("ecdh_secp256r1_pem_test.json");
	json_t *groups, *group, *tests, *t;
	const char *seen[WYCHEPROOF_MAX_KEYS];
	size_t gi, ti, k, nseen = 0, nvalid = 0;

	REQUIRE(root != NULL);
	groups = json_object_get(root, "testGroups");
	json_array_foreach(groups, gi, group) {
		tests = json_object_get(group, "tests");
		json_array_foreach(tests, ti, t) {
			const char *priv = json_string_value(
			    json_object_get(t, "private"));
			const char *peer = json_string_value(
			    json_object_get(t, "public"));
			const char *result = json_string_value(
			    json_object_get(t, "result"));
			int id = (int)json_integer_value(
			    json_object_get(t, "tcId"));
			struct p8_key *key = NULL;
			uint8_t pub[P8_PUBLIC_BYTES], ossl_pub[P8_PUBLIC_BYTES];
			char fpr[P8_FINGERPRINT_HEX + 1];
			char ossl_fpr[P8_FINGERPRINT_HEX + 1];
			EVP_PKEY *ossl = NULL, *peer_key = NULL;

			REQUIRE(priv != NULL && peer != NULL && result != NULL);
			CHECKF(p8_parse((const uint8_t *)priv, strlen(priv),
			    &key) == 0, "tcId %d", id);
			if (key == NULL)
				continue;
			for (k = 0; k < nseen && strcmp(seen[k], priv) != 0; k++)
				;
			if (k == nseen) {
				/* New key: compare with OpenSSL's own parse. */
				REQUIRE(nseen < WYCHEPROOF_MAX_KEYS);
				seen[nseen++] = priv;
				REQUIRE((ossl = openssl_read_pem(priv, 1)) != NULL);
				openssl_point(ossl, ossl_pub);
				openssl_fingerprint(ossl, ossl_fpr);
				CHECK_OK(p8_key_public_point(key, pub));
				CHECKF(memcmp(pub, ossl_pub, sizeof(pub)) == 0,
				    "tcId %d: public point", id);
				CHECK_OK(p8_public_fingerprint(pub, fpr));
				CHECK_STR(fpr, ossl_fpr);
				check_key(key, ossl_fpr, "wycheproof");
				EVP_PKEY_free(ossl);
			}
			if (strcmp(result, "valid") == 0 &&
			    (peer_key = openssl_read_pem(peer, 0)) != NULL) {
				EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(
				    NULL, p8_key_evp(key), NULL);
				uint8_t shared[32], *want;
				size_t shared_len = sizeof(shared);

				want = hex_or_die(json_string_value(
				    json_object_get(t, "shared")), 32);
				CHECKF(ctx != NULL &&
				    EVP_PKEY_derive_init(ctx) == 1 &&
				    EVP_PKEY_derive_set_peer(ctx, peer_key) == 1 &&
				    EVP_PKEY_derive(ctx, shared,
				    &shared_len) == 1 && shared_len == 32 &&
				    memcmp(shared, want, 32) == 0,
				    "tcId %d: shared secret", id);
				nvalid++;
				free(want);
				EVP_PKEY_CTX_free(ctx);
				EVP_PKEY_free(peer_key);
			}
			p8_key_destroy(key);
		}
	}
	CHECK_INT(nseen, WYCHEPROOF_DISTINCT_PRIVATE_KEYS);
	/* Every "valid" test's peer key is one OpenSSL reads (README: 330). */
	CHECK_INT(nvalid, 330);
	json_decref(root);
}

/* PEM, JWK and fingerprint against the ECDSA groups' own forms. */
static void
test_wycheproof_public_forms(void)
{
	json_t *root = tu_wycheproof_load(
	    "ecdsa_secp256r1_sha256_p1363_test.json");
	json_t *group;
	size_t gi, ngroups = 0, njwk = 0;

	REQUIRE(root != NULL);
	json_array_foreach(json_object_get(root, "testGroups"), gi, group) {
		json_t *pk = json_object_get(group, "publicKey");
		json_t *jwk = json_object_get(group, "publicKeyJwk");
		const char *want_pem = json_string_value(
		    json_object_get(group, "publicKeyPem"));
		uint8_t *pub, *der, digest[SHA256_BYTES];
		size_t der_len;
		char fpr[P8_FINGERPRINT_HEX + 1];
		char want_fpr[P8_FINGERPRINT_HEX + 1], want_jwk[512];
		char *pem = NULL, *json = NULL;

		pub = hex_or_die(json_string_value(
		    json_object_get(pk, "uncompressed")), P8_PUBLIC_BYTES);
		REQUIRE(tu_hex_decode(json_string_value(json_object_get(group,
		    "publicKeyDer")), &der, &der_len) == 0);
		REQUIRE(EVP_Digest(der, der_len, digest, NULL, EVP_sha256(),
		    NULL));
		sodium_bin2hex(want_fpr, sizeof(want_fpr), digest,
		    sizeof(digest));

		CHECK_OK(p8_public_check(pub));
		CHECK_OK(p8_public_fingerprint(pub, fpr));
		CHECK_STR(fpr, want_fpr);
		CHECK_OK(p8_public_pem(pub, &pem));
		CHECK_STR(pem, want_pem);
		if (jwk != NULL) {
			snprintf(want_jwk, sizeof(want_jwk), "{\"kty\":\"EC\","
			    "\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
			    "\"kid\":\"ABC123DEFG\",\"use\":\"sig\","
			    "\"alg\":\"ES256\"}",
			    json_string_value(json_object_get(jwk, "x")),
			    json_string_value(json_object_get(jwk, "y")));
			CHECK_OK(p8_public_jwk(pub, "ABC123DEFG", &json));
			CHECK_STR(json, want_jwk);
			free(json);
			json = NULL;
			/* Without kid the member is left out, the order kept. */
			snprintf(want_jwk, sizeof(want_jwk), "{\"kty\":\"EC\","
			    "\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
			    "\"use\":\"sig\",\"alg\":\"ES256\"}",
			    json_string_value(json_object_get(jwk, "x")),
			    json_string_value(json_object_get(jwk, "y")));
			CHECK_OK(p8_public_jwk(pub, NULL, &json));
			CHECK_STR(json, want_jwk);
			free(json);
			njwk++;
		}
		free(pem);
		free(der);
		free(pub);
		ngroups++;
	}
	CHECK_INT(ngroups, 112);
	CHECK_INT(njwk, 103); /* 9 groups carry no publicKeyJwk */
	json_decref(root);
}

/* p8_public_check against the ECDH file's P-256 SPKIs (valid and invalid). */
static void
test_wycheproof_public_check(void)
{
	static const char prefix[] =
	    "3059301306072a8648ce3d020106082a8648ce3d030107034200";
	json_t *root = tu_wycheproof_load("ecdh_secp256r1_test.json");
	json_t *group, *t;
	size_t gi, ti, nvalid = 0, ninvalid = 0;

	REQUIRE(root != NULL);
	json_array_foreach(json_object_get(root, "testGroups"), gi, group) {
		json_array_foreach(json_object_get(group, "tests"), ti, t) {
			const char *spki = json_string_value(
			    json_object_get(t, "public"));
			const char *result = json_string_value(
			    json_object_get(t, "result"));
			int id = (int)json_integer_value(
			    json_object_get(t, "tcId"));
			uint8_t *pub;

			/* Only uncompressed points in the standard SPKI. */
			if (strncmp(spki, prefix, strlen(prefix)) != 0 ||
			    strlen(spki) != strlen(prefix) +
			    2 * P8_PUBLIC_BYTES)
				continue;
			pub = hex_or_die(spki + strlen(prefix), P8_PUBLIC_BYTES);
			if (strcmp(result, "valid") == 0) {
				CHECKF(p8_public_check(pub) == 0, "tcId %d", id);
				nvalid++;
			} else if (strcmp(result, "invalid") == 0) {
				CHECKF(p8_public_check(pub) ==
				    P8V_ERR_INVALID_ARGUMENT, "tcId %d", id);
				ninvalid++;
			}
			free(pub);
		}
	}
	/* Counted when the file was copied (InvalidCurveAttack and
	 * ModifiedPublicPoint among the invalid ones). */
	CHECK_INT(nvalid, 330);
	CHECK_INT(ninvalid, 18);
	json_decref(root);
}

/* ---- corpus made by tests/p8_corpus.py ------------------------------------ */

struct corpus_case {
	const char *name;
	int err;
};

static const struct corpus_case corpus[] = {
	{ "ok-genpkey", 0 },
	{ "ok-other-key", 0 },
	{ "ok-no-public", 0 },
	{ "ok-compressed-public", 0 },
	{ "ok-inner-params", 0 },
	{ "ok-crlf", 0 },
	{ "ok-bom", 0 },
	{ "ok-surrounding-space", 0 },
	{ "ok-bom-crlf-space", 0 },
	{ "ok-no-final-newline", 0 },
	{ "ok-64-columns", 0 },
	{ "ok-76-columns", 0 },
	{ "ok-one-line", 0 },
	{ "ok-blanks-after-dashes", 0 },
	{ "ok-exactly-max", 0 },
	{ "too-large", P8V_ERR_P8_TOO_LARGE },
	{ "not-pem-empty", P8V_ERR_P8_NOT_PEM },
	{ "not-pem-text", P8V_ERR_P8_NOT_PEM },
	{ "not-pem-der", P8V_ERR_P8_NOT_PEM },
	{ "not-pem-no-end", P8V_ERR_P8_NOT_PEM },
	{ "not-pem-leading-text", P8V_ERR_P8_NOT_PEM },
	{ "not-pem-end-label", P8V_ERR_P8_NOT_PEM },
	{ "not-pem-begin-line-junk", P8V_ERR_P8_NOT_PEM },
	{ "bad-base64-char", P8V_ERR_P8_BAD_BASE64 },
	{ "bad-base64-space", P8V_ERR_P8_BAD_BASE64 },
	{ "bad-base64-padding", P8V_ERR_P8_BAD_BASE64 },
	{ "bad-base64-length", P8V_ERR_P8_BAD_BASE64 },
	{ "bad-base64-trailing-bits", P8V_ERR_P8_BAD_BASE64 },
	{ "certificate", P8V_ERR_P8_CERTIFICATE },
	{ "certificate-request", P8V_ERR_P8_CERTIFICATE },
	{ "certificate-pkcs7", P8V_ERR_P8_CERTIFICATE },
	{ "certificate-then-key", P8V_ERR_P8_CERTIFICATE },
	{ "public-key", P8V_ERR_P8_PUBLIC_KEY },
	{ "public-key-ec", P8V_ERR_P8_PUBLIC_KEY },
	{ "public-key-rsa", P8V_ERR_P8_PUBLIC_KEY },
	{ "encrypted-pkcs8", P8V_ERR_P8_ENCRYPTED },
	{ "encrypted-legacy", P8V_ERR_P8_ENCRYPTED },
	{ "not-pkcs8-ec", P8V_ERR_P8_NOT_PKCS8 },
	{ "not-pkcs8-rsa", P8V_ERR_P8_NOT_PKCS8 },
	{ "not-pkcs8-ecparam-genkey", P8V_ERR_P8_NOT_PKCS8 },
	{ "wrong-key-type-rsa", P8V_ERR_P8_WRONG_KEY_TYPE },
	{ "wrong-key-type-rsa-pss", P8V_ERR_P8_WRONG_KEY_TYPE },
	{ "wrong-key-type-ed25519", P8V_ERR_P8_WRONG_KEY_TYPE },
	{ "wrong-key-type-x25519", P8V_ERR_P8_WRONG_KEY_TYPE },
	{ "wrong-key-type-ed448", P8V_ERR_P8_WRONG_KEY_TYPE },
	{ "wrong-key-type-x448", P8V_ERR_P8_WRONG_KEY_TYPE },
	{ "wrong-key-type-dsa", P8V_ERR_P8_WRONG_KEY_TYPE },
	{ "wrong-key-type-dh", P8V_ERR_P8_WRONG_KEY_TYPE },
	{ "wrong-curve-p-384", P8V_ERR_P8_WRONG_CURVE },
	{ "wrong-curve-p-521", P8V_ERR_P8_WRONG_CURVE },
	{ "wrong-curve-secp256k1", P8V_ERR_P8_WRONG_CURVE },
	{ "wrong-curve-brainpoolp256r1", P8V_ERR_P8_WRONG_CURVE },
	{ "wrong-curve-secp224r1", P8V_ERR_P8_WRONG_CURVE },
	{ "wrong-curve-sm2", P8V_ERR_P8_WRONG_CURVE },
	{ "wrong-curve-inner-params", P8V_ERR_P8_WRONG_CURVE },
	{ "explicit-curve", P8V_ERR_P8_EXPLICIT_CURVE },
	{ "explicit-curve-p384", P8V_ERR_P8_EXPLICIT_CURVE },
	{ "explicit-curve-inner", P8V_ERR_P8_EXPLICIT_CURVE },
	{ "explicit-curve-implicit-ca", P8V_ERR_P8_EXPLICIT_CURVE },
	{ "bad-scalar-zero", P8V_ERR_P8_BAD_SCALAR },
	{ "bad-scalar-n", P8V_ERR_P8_BAD_SCALAR },
	{ "bad-scalar-n-plus-1", P8V_ERR_P8_BAD_SCALAR },
	{ "bad-scalar-all-ones", P8V_ERR_P8_BAD_SCALAR },
	{ "pubkey-mismatch-other-key", P8V_ERR_P8_PUBKEY_MISMATCH },
	{ "pubkey-mismatch-off-curve", P8V_ERR_P8_PUBKEY_MISMATCH },
	{ "pubkey-mismatch-infinity", P8V_ERR_P8_PUBKEY_MISMATCH },
	{ "pubkey-mismatch-compressed-other", P8V_ERR_P8_PUBKEY_MISMATCH },
	{ "pubkey-mismatch-hybrid", P8V_ERR_P8_PUBKEY_MISMATCH },
	{ "pubkey-mismatch-x-only", P8V_ERR_P8_PUBKEY_MISMATCH },
	{ "trailing-text", P8V_ERR_P8_TRAILING_DATA },
	{ "trailing-nul", P8V_ERR_P8_TRAILING_DATA },
	{ "trailing-der-bytes", P8V_ERR_P8_TRAILING_DATA },
	{ "trailing-der-sequence", P8V_ERR_P8_TRAILING_DATA },
	{ "multiple-keys", P8V_ERR_P8_MULTIPLE_KEYS },
	{ "multiple-keys-key-then-cert", P8V_ERR_P8_MULTIPLE_KEYS },
	{ "malformed-truncated", P8V_ERR_P8_MALFORMED },
	{ "malformed-random", P8V_ERR_P8_MALFORMED },
	{ "malformed-empty-body", P8V_ERR_P8_MALFORMED },
	{ "malformed-pkcs8-version-1", P8V_ERR_P8_MALFORMED },
	{ "malformed-ec-version-2", P8V_ERR_P8_MALFORMED },
	{ "malformed-short-scalar", P8V_ERR_P8_MALFORMED },
	{ "malformed-long-scalar", P8V_ERR_P8_MALFORMED },
	{ "malformed-long-form-length", P8V_ERR_P8_MALFORMED },
	{ "malformed-length-leading-zero", P8V_ERR_P8_MALFORMED },
	{ "malformed-indefinite-length", P8V_ERR_P8_MALFORMED },
	{ "malformed-attributes", P8V_ERR_P8_MALFORMED },
	{ "malformed-ec-extra-element", P8V_ERR_P8_MALFORMED },
	{ "malformed-no-alg-params", P8V_ERR_P8_MALFORMED },
	{ "malformed-pub-unused-bits", P8V_ERR_P8_MALFORMED },
	{ "malformed-not-sequence", P8V_ERR_P8_MALFORMED },
};

#define N_CORPUS (sizeof(corpus) / sizeof(corpus[0]))

static const struct corpus_case *
corpus_find(const char *name)
{
	size_t i;

	for (i = 0; i < N_CORPUS; i++)
		if (strcmp(corpus[i].name, name) == 0)
			return &corpus[i];
	return NULL;
}

static void
test_corpus(const char *dir)
{
	char path[PATH_BYTES];
	size_t i;
	DIR *d;
	struct dirent *e;
	int errors_seen[64] = { 0 };

	for (i = 0; i < N_CORPUS; i++) {
		const struct corpus_case *c = &corpus[i];
		uint8_t *in = NULL;
		size_t len = 0;
		struct p8_key *key = NULL;
		int r;

		corpus_path(path, dir, c->name, ".p8");
		if (tu_read_file(path, &in, &len) != 0) {
			CHECKF(0, "%s: not generated", c->name);
			continue;
		}
		r = parse_quietly(in, len, &key);
		CHECKF(r == c->err, "%s: got %s, want %s", c->name,
		    p8v_errname(r), p8v_errname(c->err));
		CHECKF((r == 0) == (key != NULL), "%s: key iff success",
		    c->name);
		if (r < 0 && -r < 64)
			errors_seen[-r] = 1;
		if (c->err == 0 && key != NULL) {
			uint8_t *fpr = NULL;
			size_t fpr_len = 0;

			corpus_path(path, dir, c->name, ".fpr");
			REQUIRE(tu_read_file(path, &fpr, &fpr_len) == 0);
			CHECKF(fpr_len == P8_FINGERPRINT_HEX, "%s", c->name);
			check_key(key, (const char *)fpr, c->name);
			free(fpr);
		}
		if (r != 0)
			check_no_echo(r, in, len, c->name);
		p8_key_destroy(key);
		free(in);
	}

	/* Every refusal p8.h names is exercised at least once. */
	for (i = (size_t)-P8V_ERR_P8_TOO_LARGE;
	    i <= (size_t)-P8V_ERR_P8_NOT_PKCS8; i++)
		CHECKF(errors_seen[i], "no corpus case for %s",
		    p8v_errname(-(int)i));

	/* And every file the script made is in the table. */
	REQUIRE((d = opendir(dir)) != NULL);
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);

		if (n > 3 && strcmp(e->d_name + n - 3, ".p8") == 0) {
			snprintf(path, sizeof(path), "%.*s", (int)(n - 3),
			    e->d_name);
			CHECKF(corpus_find(path) != NULL,
			    "%s: generated but not in the table", e->d_name);
		}
	}
	closedir(d);
}

/*
 * Every truncation of a valid key's DER and every flip of one of its bytes
 * is refused (never accepted, never a crash: this is the ASan run's fuzz).
 */
static void
test_mutations(const char *dir)
{
	char path[PATH_BYTES], pem[4096];
	uint8_t *in = NULL, *der = NULL, mutated[512];
	const char *b, *e;
	size_t len, der_len = 0, i, pem_len;
	static const uint8_t masks[] = { 0x01, 0x80, 0xff };
	size_t m;
	struct p8_key *key = NULL;

	corpus_path(path, dir, "ok-genpkey", ".p8");
	REQUIRE(tu_read_file(path, &in, &len) == 0);
	REQUIRE((b = strchr((char *)in, '\n')) != NULL);
	REQUIRE((e = strstr(b, "-----END")) != NULL);
	REQUIRE((der = malloc(len)) != NULL);
	REQUIRE(sodium_base642bin(der, len, b + 1, (size_t)(e - b - 1), "\n",
	    &der_len, NULL, sodium_base64_VARIANT_ORIGINAL) == 0);
	REQUIRE(der_len <= sizeof(mutated));

	pem_len = make_pem(der, der_len, pem, sizeof(pem));
	CHECK_OK(p8_parse((const uint8_t *)pem, pem_len, &key));
	p8_key_destroy(key);
	key = NULL;

	for (i = 0; i < der_len; i++) {
		pem_len = make_pem(der, i, pem, sizeof(pem));
		CHECKF(p8_parse((const uint8_t *)pem, pem_len, &key) != 0,
		    "DER truncated to %zu bytes accepted", i);
		p8_key_destroy(key);
		key = NULL;
	}
	for (i = 0; i < der_len; i++) {
		for (m = 0; m < sizeof(masks); m++) {
			memcpy(mutated, der, der_len);
			mutated[i] ^= masks[m];
			pem_len = make_pem(mutated, der_len, pem, sizeof(pem));
			CHECKF(p8_parse((const uint8_t *)pem, pem_len,
			    &key) != 0, "byte %zu ^ 0x%02x accepted", i,
			    masks[m]);
			p8_key_destroy(key);
			key = NULL;
		}
	}
	/* Every prefix of the PEM text short of a whole END line fails. */
	e = strstr((char *)in, "-----END PRIVATE KEY-----");
	for (i = 0; i < len; i++) {
		int r = p8_parse(in, i, &key);
		int whole = i >= (size_t)(e - (char *)in) +
		    strlen("-----END PRIVATE KEY-----");

		CHECKF((r == 0) == whole, "PEM prefix of %zu bytes: %s", i,
		    p8v_errname(r));
		p8_key_destroy(key);
		key = NULL;
	}
	free(der);
	free(in);
}

/* ---- direct calls ---------------------------------------------------------- */

struct scalar_case {
	const char *scalar_hex;
	const char *pub_hex; /* NULL: let p8_key_from_scalar compute it */
	int err;
	const char *want_pub_hex; /* expected public point on success */
};

static void
test_from_scalar(void)
{
	static char n_minus_1[65], n_plus_1[65];
	static const char g_times_2[] =
	    "047cf27b188d034f7e8a52380304b51ac3c08969e277f21b35a60b48fc4766997"
	    "807775510db8ed040293d9ac69f7430dbba7dade63ce982299e04b79d227873d1";
	const char *one =
	    "0000000000000000000000000000000000000000000000000000000000000001";
	const char *zero =
	    "0000000000000000000000000000000000000000000000000000000000000000";
	char g_off_curve[131], g_compressed_prefix[131];
	size_t i;

	memcpy(n_minus_1, p256_n_hex, sizeof(n_minus_1));
	n_minus_1[63] = '0';                  /* ...51 -> ...50 */
	memcpy(n_plus_1, p256_n_hex, sizeof(n_plus_1));
	n_plus_1[63] = '2';                   /* ...51 -> ...52 */
	memcpy(g_off_curve, p256_g_hex, sizeof(g_off_curve));
	g_off_curve[129] = '4';               /* ...f5 -> ...f4 */
	memcpy(g_compressed_prefix, p256_g_hex, sizeof(g_compressed_prefix));
	g_compressed_prefix[1] = '2';         /* 04 -> 02, 65 bytes */

	const struct scalar_case cases[] = {
		{ one, NULL, 0, p256_g_hex },
		{ one, p256_g_hex, 0, p256_g_hex },
		{ n_minus_1, NULL, 0, p256_minus_g_hex },
		{ n_minus_1, p256_minus_g_hex, 0, p256_minus_g_hex },
		{ zero, NULL, P8V_ERR_P8_BAD_SCALAR, NULL },
		{ p256_n_hex, NULL, P8V_ERR_P8_BAD_SCALAR, NULL },
		{ n_plus_1, NULL, P8V_ERR_P8_BAD_SCALAR, NULL },
		{ zero, p256_g_hex, P8V_ERR_P8_BAD_SCALAR, NULL },
		{ one, g_times_2, P8V_ERR_P8_PUBKEY_MISMATCH, NULL },
		{ one, p256_minus_g_hex, P8V_ERR_P8_PUBKEY_MISMATCH, NULL },
		{ one, g_off_curve, P8V_ERR_P8_PUBKEY_MISMATCH, NULL },
		{ one, g_compressed_prefix, P8V_ERR_P8_PUBKEY_MISMATCH, NULL },
	};

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *s = hex_or_die(cases[i].scalar_hex, P8_SCALAR_BYTES);
		uint8_t *pub = cases[i].pub_hex == NULL ? NULL :
		    hex_or_die(cases[i].pub_hex, P8_PUBLIC_BYTES);
		uint8_t got[P8_PUBLIC_BYTES], back[P8_SCALAR_BYTES];
		struct p8_key *key = NULL;
		int r = p8_key_from_scalar(s, pub, &key);

		CHECKF(r == cases[i].err, "case %zu: got %s, want %s", i,
		    p8v_errname(r), p8v_errname(cases[i].err));
		CHECKF((r == 0) == (key != NULL), "case %zu", i);
		if (key != NULL && cases[i].want_pub_hex != NULL) {
			uint8_t *want = hex_or_die(cases[i].want_pub_hex,
			    P8_PUBLIC_BYTES);

			CHECK_OK(p8_key_public_point(key, got));
			CHECKF(memcmp(got, want, sizeof(got)) == 0, "case %zu",
			    i);
			CHECK_OK(p8_key_export_scalar(key, back));
			CHECKF(memcmp(back, s, sizeof(back)) == 0,
			    "case %zu: exported scalar", i);
			free(want);
		}
		p8_key_destroy(key);
		free(pub);
		free(s);
	}
}

static void
test_public_check(void)
{
	uint8_t *g = hex_or_die(p256_g_hex, P8_PUBLIC_BYTES);
	uint8_t bad[P8_PUBLIC_BYTES];
	size_t i;
	static const struct {
		size_t pos;
		uint8_t value;
		int err;
	} cases[] = {
		{ 0, 0x04, 0 },                         /* G itself */
		{ 0, 0x02, P8V_ERR_INVALID_ARGUMENT },  /* not uncompressed */
		{ 0, 0x03, P8V_ERR_INVALID_ARGUMENT },
		{ 0, 0x06, P8V_ERR_INVALID_ARGUMENT },  /* hybrid */
		{ 0, 0x00, P8V_ERR_INVALID_ARGUMENT },  /* infinity */
		{ 64, 0xf4, P8V_ERR_INVALID_ARGUMENT }, /* y + (-1): off curve */
		{ 1, 0x6a, P8V_ERR_INVALID_ARGUMENT },  /* x changed */
	};

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(bad, g, sizeof(bad));
		bad[cases[i].pos] = cases[i].value;
		CHECKF(p8_public_check(bad) == cases[i].err, "case %zu", i);
	}
	/* x = p (not reduced), y = 0: coordinates must be < p. */
	memset(bad, 0xff, sizeof(bad));
	bad[0] = 0x04;
	CHECK_ERR(p8_public_check(bad), P8V_ERR_INVALID_ARGUMENT);
	memset(bad, 0, sizeof(bad));
	bad[0] = 0x04;
	CHECK_ERR(p8_public_check(bad), P8V_ERR_INVALID_ARGUMENT);
	free(g);
}

static void
test_arguments(void)
{
	static const uint8_t big[P8_MAX_INPUT_BYTES + 1];
	uint8_t pub[P8_PUBLIC_BYTES], scalar[P8_SCALAR_BYTES] = { 1 };
	char fpr[P8_FINGERPRINT_HEX + 1], *s = NULL;
	struct p8_key *key = (struct p8_key *)&key; /* must be reset */
	uint8_t *g = hex_or_die(p256_g_hex, P8_PUBLIC_BYTES);

	CHECK_ERR(p8_parse(NULL, 10, &key), P8V_ERR_INVALID_ARGUMENT);
	CHECK(key == NULL);
	key = (struct p8_key *)&key;
	CHECK_ERR(p8_key_from_scalar(NULL, NULL, &key),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK(key == NULL);
	CHECK_ERR(p8_parse((const uint8_t *)"x", 1, NULL),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_parse(NULL, 0, &key), P8V_ERR_P8_NOT_PEM);
	/* The size limit comes first: a too-large input is not even armour. */
	CHECK_ERR(p8_parse(big, sizeof(big), &key), P8V_ERR_P8_TOO_LARGE);
	CHECK_ERR(p8_parse(big, sizeof(big) - 1, &key), P8V_ERR_P8_NOT_PEM);
	CHECK_ERR(p8_key_from_scalar(scalar, NULL, NULL),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_key_export_scalar(NULL, scalar),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_key_public_point(NULL, pub), P8V_ERR_INVALID_ARGUMENT);
	CHECK(p8_key_evp(NULL) == NULL);
	p8_key_destroy(NULL);
	CHECK_ERR(p8_public_check(NULL), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_public_fingerprint(NULL, fpr), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_public_fingerprint(g, NULL), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_public_pem(NULL, &s), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_public_pem(g, NULL), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_public_jwk(NULL, NULL, &s), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(p8_public_jwk(g, NULL, NULL), P8V_ERR_INVALID_ARGUMENT);
	CHECK(s == NULL);
	/* jansson refuses a kid that is not UTF-8. */
	CHECK_ERR(p8_public_jwk(g, "\xff\xfe", &s), P8V_ERR_INVALID_ARGUMENT);
	CHECK(s == NULL);
	free(g);
}

/* The private scalar lands in OpenSSL's secure heap. */
static void
test_secure_heap(const char *dir)
{
	char path[PATH_BYTES];
	uint8_t *in = NULL;
	size_t len, before;
	struct p8_key *key = NULL;

	REQUIRE(CRYPTO_secure_malloc_initialized());
	corpus_path(path, dir, "ok-genpkey", ".p8");
	REQUIRE(tu_read_file(path, &in, &len) == 0);
	before = CRYPTO_secure_used();
	CHECK_OK(p8_parse(in, len, &key));
	CHECK(CRYPTO_secure_used() > before);
	p8_key_destroy(key);
	CHECK_INT(CRYPTO_secure_used(), before);
	free(in);
}

int
main(void)
{
	const char *src = getenv("P8V_SOURCE_ROOT");
	const char *python = getenv("P8V_PYTHON");
	char path[PATH_BYTES];
	struct stat st;

	REQUIRE(secmem_init() == 0);
	REQUIRE(src != NULL);
	if (python == NULL)
		python = "/usr/bin/python3";
	REQUIRE((scratch_dir = tu_mkdtemp("test_p8")) != NULL);
	snprintf(path, sizeof(path), "%s/corpus", scratch_dir);
	REQUIRE(mkdir(path, 0700) == 0);
	REQUIRE(tu_system("'%s' '%s/tests/p8_corpus.py' '%s'", python, src,
	    path) == 0);

	test_arguments();
	test_public_check();
	test_from_scalar();
	test_wycheproof_private_keys();
	test_wycheproof_public_forms();
	test_wycheproof_public_check();
	test_corpus(path);
	test_mutations(path);
	test_secure_heap(path);

	/* Nothing was logged while parsing. */
	snprintf(path, sizeof(path), "%s/stderr.log", scratch_dir);
	CHECK(stat(path, &st) == 0 && st.st_size == 0);

	tu_rmtree(scratch_dir);
	free(scratch_dir);
	return check_finish();
}
