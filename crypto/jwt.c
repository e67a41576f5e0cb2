/*
 * jwt.c: ES256 JWS compact serialization. See jwt.h for the contract.
 *
 * Signing is on the path of every push, so the per-call work is kept to what
 * cannot be shared: the SHA-256 EVP_MD is fetched once per process, each
 * thread hashes with its own EVP_MD_CTX (reset, not reallocated, between
 * calls; freed by a pthread key destructor when the thread exits), and the
 * private key never leaves OpenSSL: we hash the signing input ourselves and
 * hand only the digest to EVP_PKEY_sign. The one per-call OpenSSL object is
 * the EVP_PKEY_CTX, which is bound to the key; caching it would keep a
 * reference to the private key alive after p8_key_destroy, so we do not.
 *
 * jwt_sign_es256_scalar signs with a scalar the vault has just unsealed,
 * without building an EVP_PKEY: EVP_PKEY_fromdata costs 12-14 us per key
 * (the provider builds the EC group again and decodes the point), almost
 * as much as the signature, and OpenSSL 3.0's EVP layer has no way to put
 * a private scalar into a prepared key object. An EC_KEY on the
 * process-wide group (p8_group), one per thread, signs through the same
 * ECDSA code and the same hedged nonce (random, private key and digest) as
 * the provider; its scalar is loaded for one signature and wiped after
 * it. EC_KEY is deprecated in OpenSSL 3.0 but kept in
 * every 3.x release; hence OPENSSL_SUPPRESS_DEPRECATED in this file only.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "crypto/jwt.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include "common/charclass.h"
#include "common/err.h"
#include "common/jsonflat.h"
#include "common/log.h"
#include "crypto/p8_internal.h"

/* SHA-256 output: the ES256 hash. */
#define JWT_DIGEST_BYTES 32
/* r and s are each one P-256 scalar (RFC 7518 section 3.4). */
#define JWT_SCALAR_BYTES (JWT_ES256_SIG_BYTES / 2)
/* Largest DER ECDSA-Sig-Value for P-256: SEQUENCE header (2) + two INTEGERs
 * of tag, length and up to 33 content bytes (a leading 0x00 when the top bit
 * is set): 2 + 2 * (2 + 33). */
#define JWT_DER_MAX_BYTES 72
/* Header and claims up to this size are written on the stack
 * (jsonflat_dump); larger or nested ones by json_dumps. */
#define JWT_FLAT_BYTES 512
/* base64url of the 64-byte signature, without padding. */
#define JWT_SIG_B64_CHARS 86
#define JWT_B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* Number of characters base64url (no padding) makes of n bytes, without the
 * NUL libsodium's macro counts. */
#define JWT_B64_LEN(n) (sodium_base64_ENCODED_LEN((n), JWT_B64_VARIANT) - 1)
/* Largest input jwt_b64url_encode takes: keeps 4 * ceil(n / 3) + 1 inside
 * size_t. */
#define JWT_B64_MAX_INPUT ((SIZE_MAX / 4 - 1) * 3)
/* The P-256 group order n, big-endian: r and s must lie in [1, n - 1]. */
static const uint8_t p256_order[JWT_SCALAR_BYTES] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};
/* floor(n / 2), big-endian: the largest s a low-S signature has. */
static const uint8_t p256_half_order[JWT_SCALAR_BYTES] = {
	0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00,
	0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42,
	0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
};

/*
 * Process-wide SHA-256 implementation, and per thread a digest context and
 * an EC_KEY on the P-256 group that holds a private scalar only during a
 * signature (sign_digest_scalar). A one-shot EC_KEY cost a copy of the
 * group and two scalars in the secure heap (each allocation and free under
 * OpenSSL's one lock for that heap) per signature.
 */
struct jwt_thread {
	EVP_MD_CTX *md;
	EC_KEY *ec;             /* no private key between signatures */
};

static pthread_once_t jwt_once = PTHREAD_ONCE_INIT;
static EVP_MD *jwt_sha256;
static pthread_key_t jwt_thread_key;
static int jwt_ready;

static void
free_thread(void *arg)
{
	struct jwt_thread *t = arg;

	EVP_MD_CTX_free(t->md);
	EC_KEY_free(t->ec);
	free(t);
}

/*
 * At exit, before OpenSSL's own atexit clean-up (registered earlier, so it
 * runs later): free the exiting thread's state, whose destructor does not
 * run for the main thread, and our reference to the EVP_MD.
 */
static void
release_at_exit(void)
{
	struct jwt_thread *t = pthread_getspecific(jwt_thread_key);

	if (t != NULL) {
		(void)pthread_setspecific(jwt_thread_key, NULL);
		free_thread(t);
	}
	EVP_MD_free(jwt_sha256);
	jwt_sha256 = NULL;
}

static void
init_once(void)
{
	if ((jwt_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		return;
	if (pthread_key_create(&jwt_thread_key, free_thread) != 0) {
		EVP_MD_free(jwt_sha256);
		jwt_sha256 = NULL;
		return;
	}
	(void)atexit(release_at_exit);
	jwt_ready = 1;
}

/* This thread's state, its digest context created on first use. NULL on
 * failure. */
static struct jwt_thread *
thread_state(void)
{
	struct jwt_thread *t;

	if (pthread_once(&jwt_once, init_once) != 0 || !jwt_ready)
		return NULL;
	if ((t = pthread_getspecific(jwt_thread_key)) != NULL)
		return t;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	if ((t->md = EVP_MD_CTX_new()) == NULL ||
	    pthread_setspecific(jwt_thread_key, t) != 0) {
		free_thread(t);
		return NULL;
	}
	return t;
}

/* SHA-256 of msg into out with this thread's context. 0 or P8V_ERR_CRYPTO. */
static int
digest(const void *msg, size_t msg_len, uint8_t out[JWT_DIGEST_BYTES])
{
	struct jwt_thread *t;
	EVP_MD_CTX *ctx;
	unsigned int out_len = 0;

	if ((t = thread_state()) == NULL)
		return P8V_ERR_CRYPTO;
	ctx = t->md;
	if (EVP_DigestInit_ex2(ctx, jwt_sha256, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, msg, msg_len) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &out_len) != 1 ||
	    out_len != JWT_DIGEST_BYTES)
		return P8V_ERR_CRYPTO;
	return 0;
}

/* Encode n bytes at in as base64url into out (room for JWT_B64_LEN(n) + 1,
 * NUL-terminated); returns the number of characters written (the NUL not
 * counted). A table lookup per character: what a JWS encodes (header,
 * claims, signature) is public, and libsodium's constant-time encoder,
 * made for secrets, cost about 0.8 us per token in the keeper. */
static size_t
encode(char *out, const uint8_t *in, size_t n)
{
	static const char tab[64] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; n - i >= 3; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = tab[v >> 18];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
		out[o++] = tab[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = tab[v >> 18];
		out[o++] = tab[v >> 12 & 63];
	} else if (n - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = tab[v >> 18];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
	}
	out[o] = '\0';
	return o;
}

/* 1 if every character is in the base64url alphabet (no padding). */
static int
is_b64url(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

/*
 * Strict base64url decode of n characters into a malloc'd *out: alphabet
 * only, no padding, no white space, canonical (unused trailing bits zero,
 * which libsodium checks), so each byte string has exactly one encoding.
 * 0, P8V_ERR_INTEGRITY or P8V_ERR_ALLOC.
 */
static int
decode(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
	uint8_t *buf = NULL;
	const char *end = NULL;
	size_t len = 0;
	int r = P8V_ERR_INTEGRITY;

	*out = NULL;
	*out_len = 0;
	if (!is_b64url(s, n) || n % 4 == 1)
		goto out;
	/* At most 3 bytes per 4 characters; +1 so malloc never sees 0. */
	if ((buf = malloc(n / 4 * 3 + 3)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	if (sodium_base642bin(buf, n / 4 * 3 + 3, s, n, NULL, &len, &end,
	    JWT_B64_VARIANT) != 0 || end != s + n)
		goto out;
	*out = buf;
	*out_len = len;
	buf = NULL;
	r = 0;
 out:
	free(buf);
	return r;
}

/* 1 if the 32-byte big-endian x lies in [1, n - 1]. x is public (part of a
 * signature), so an early-exit comparison is fine. */
static int
scalar_in_range(const uint8_t *x)
{
	size_t i;
	int nonzero = 0;

	for (i = 0; i < JWT_SCALAR_BYTES; i++)
		nonzero |= x[i];
	if (!nonzero)
		return 0;
	for (i = 0; i < JWT_SCALAR_BYTES; i++) {
		if (x[i] != p256_order[i])
			return x[i] < p256_order[i];
	}
	return 0; /* x == n */
}

int
jwt_es256_is_low_s(const uint8_t sig[JWT_ES256_SIG_BYTES])
{
	const uint8_t *s = sig + JWT_SCALAR_BYTES;
	size_t i;

	/* s is public (part of a signature): an early exit is fine. */
	for (i = 0; i < JWT_SCALAR_BYTES; i++) {
		if (s[i] != p256_half_order[i])
			return s[i] < p256_half_order[i];
	}
	return 1; /* s == floor(n / 2) */
}

/*
 * Replace s by n - s when s > n / 2. (r, s) and (r, n - s) are both valid
 * signatures of the same digest; strict verifiers (@noble/curves' default
 * lowS, Bitcoin's BIP 62/146 rules) accept only the low one, OpenSSL both,
 * so the vault emits only low-S (../shared/APPLE-TOKENS.md).
 */
static void
normalise_low_s(uint8_t sig[JWT_ES256_SIG_BYTES])
{
	uint8_t *s = sig + JWT_SCALAR_BYTES;
	unsigned int borrow = 0, d;
	size_t i;

	if (jwt_es256_is_low_s(sig))
		return;
	for (i = JWT_SCALAR_BYTES; i-- > 0;) {
		d = (unsigned int)p256_order[i] - s[i] - borrow;
		s[i] = (uint8_t)d;
		borrow = (d >> 8) & 1;
	}
}

/* The public point as an EVP_PKEY on prime256v1. Only the uncompressed form
 * (0x04) is taken; OpenSSL checks the point is on the curve.
 * 0, P8V_ERR_INVALID_ARGUMENT (not a P-256 point) or P8V_ERR_CRYPTO. */
static int
public_pkey(const uint8_t pub[P8_PUBLIC_BYTES], EVP_PKEY **out)
{
	EVP_PKEY_CTX *pctx = NULL;
	OSSL_PARAM params[3];
	char group[] = "prime256v1";
	int r = P8V_ERR_INTERNAL;

	*out = NULL;
	if (pub[0] != 0x04) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(
	    OSSL_PKEY_PARAM_PUB_KEY, (void *)pub, P8_PUBLIC_BYTES);
	params[2] = OSSL_PARAM_construct_end();
	if ((pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) != 1) {
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	if (EVP_PKEY_fromdata(pctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	r = 0;
 out:
	EVP_PKEY_CTX_free(pctx);
	return r;
}

int
jwt_b64url_encode(const uint8_t *in, size_t in_len, char **out)
{
	char *buf = NULL;
	int r = P8V_ERR_INTERNAL;

	if (out == NULL || (in == NULL && in_len > 0)) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*out = NULL;
	if (in_len > JWT_B64_MAX_INPUT) {
		r = P8V_ERR_TOO_LARGE;
		goto out;
	}
	if ((buf = malloc(JWT_B64_LEN(in_len) + 1)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	encode(buf, in, in_len);
	*out = buf;
	buf = NULL;
	r = 0;
 out:
	free(buf);
	return r;
}

int
jwt_der_to_p1363(const uint8_t *der, size_t der_len,
    uint8_t sig[JWT_ES256_SIG_BYTES])
{
	ECDSA_SIG *esig = NULL;
	const BIGNUM *br, *bs;
	const unsigned char *p = der;
	unsigned char *again = NULL;
	int again_len, r = P8V_ERR_INVALID_ARGUMENT;

	if (der == NULL || sig == NULL || der_len == 0 ||
	    der_len > JWT_DER_MAX_BYTES)
		goto out;
	if ((esig = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) == NULL ||
	    p != der + der_len)
		goto out;
	ECDSA_SIG_get0(esig, &br, &bs);
	if (BN_is_negative(br) || BN_is_negative(bs) ||
	    BN_num_bytes(br) > JWT_SCALAR_BYTES ||
	    BN_num_bytes(bs) > JWT_SCALAR_BYTES)
		goto out;
	/*
	 * d2i accepts some BER (long-form lengths, superfluous leading 0x00 or
	 * 0xff in INTEGERs); DER has exactly one encoding per value, so the
	 * input is DER iff re-encoding gives back the same bytes.
	 */
	if ((again_len = i2d_ECDSA_SIG(esig, &again)) < 0) {
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	if ((size_t)again_len != der_len || memcmp(again, der, der_len) != 0)
		goto out;
	if (BN_bn2binpad(br, sig, JWT_SCALAR_BYTES) != JWT_SCALAR_BYTES ||
	    BN_bn2binpad(bs, sig + JWT_SCALAR_BYTES, JWT_SCALAR_BYTES) !=
	    JWT_SCALAR_BYTES) {
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	r = 0;
 out:
	OPENSSL_free(again);
	ECDSA_SIG_free(esig);
	if (r != 0)
		ERR_clear_error();
	return r;
}

int
jwt_p1363_to_der(const uint8_t *sig, size_t sig_len, uint8_t **der,
    size_t *der_len)
{
	ECDSA_SIG *esig = NULL;
	BIGNUM *br = NULL, *bs = NULL;
	uint8_t *buf = NULL, *p;
	int len, r = P8V_ERR_INTERNAL;

	if (sig == NULL || sig_len != JWT_ES256_SIG_BYTES || der == NULL ||
	    der_len == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*der = NULL;
	*der_len = 0;
	if ((esig = ECDSA_SIG_new()) == NULL ||
	    (br = BN_bin2bn(sig, JWT_SCALAR_BYTES, NULL)) == NULL ||
	    (bs = BN_bin2bn(sig + JWT_SCALAR_BYTES, JWT_SCALAR_BYTES,
	    NULL)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	if (ECDSA_SIG_set0(esig, br, bs) != 1) {
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	br = bs = NULL; /* owned by esig now */
	if ((len = i2d_ECDSA_SIG(esig, NULL)) <= 0 ||
	    len > JWT_DER_MAX_BYTES) {
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	if ((buf = malloc((size_t)len)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	p = buf;
	if (i2d_ECDSA_SIG(esig, &p) != len) {
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	*der = buf;
	*der_len = (size_t)len;
	buf = NULL;
	r = 0;
 out:
	free(buf);
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(esig);
	if (r != 0)
		ERR_clear_error();
	return r;
}

/* 1 if header is an object whose "alg" is exactly the string "ES256". */
static int
alg_is_es256(const json_t *header)
{
	const json_t *alg = json_object_get(header, "alg");

	return json_is_string(alg) && json_string_length(alg) == 5 &&
	    memcmp(json_string_value(alg), "ES256", 5) == 0;
}

/* Sign md with a bare P-256 scalar (this thread's EC_KEY; see the top of
 * this file) into r || s. 0 or P8V_ERR_CRYPTO. */
static int
sign_digest_scalar(const uint8_t scalar[P8_SCALAR_BYTES],
    const uint8_t md[JWT_DIGEST_BYTES], uint8_t sig[JWT_ES256_SIG_BYTES])
{
	const EC_GROUP *group;
	const BIGNUM *sr, *ss;
	struct jwt_thread *t;
	ECDSA_SIG *es = NULL;
	BIGNUM *priv;
	int r = P8V_ERR_CRYPTO;

	if ((t = thread_state()) == NULL)
		return P8V_ERR_CRYPTO;
	if (t->ec == NULL) {
		if ((group = p8_group()) == NULL ||
		    (t->ec = EC_KEY_new()) == NULL)
			return P8V_ERR_CRYPTO;
		if (EC_KEY_set_group(t->ec, group) != 1) {
			EC_KEY_free(t->ec);
			t->ec = NULL;
			return P8V_ERR_CRYPTO;
		}
	}
	/* EC_KEY_oct2priv, as d2i_ECPrivateKey does: the scalar goes into
	 * the key's own BIGNUM, in the secure heap (made by the first call,
	 * reused after), with no copy of ours. The key is ours alone, so
	 * its BIGNUM may be changed through get0. */
	if (EC_KEY_oct2priv(t->ec, scalar, P8_SCALAR_BYTES) != 1 ||
	    (priv = (BIGNUM *)EC_KEY_get0_private_key(t->ec)) == NULL)
		goto out;
	BN_set_flags(priv, BN_FLG_CONSTTIME);
	if ((es = ECDSA_do_sign(md, JWT_DIGEST_BYTES, t->ec)) == NULL)
		goto out;
	ECDSA_SIG_get0(es, &sr, &ss);
	if (BN_bn2binpad(sr, sig, JWT_SCALAR_BYTES) != JWT_SCALAR_BYTES ||
	    BN_bn2binpad(ss, sig + JWT_SCALAR_BYTES, JWT_SCALAR_BYTES) !=
	    JWT_SCALAR_BYTES)
		goto out;
	r = 0;
 out:
	ECDSA_SIG_free(es);
	/* The scalar leaves the key at once: BN_clear wipes every word. */
	if ((priv = (BIGNUM *)EC_KEY_get0_private_key(t->ec)) != NULL)
		BN_clear(priv);
	return r;
}

/* Sign md with an EVP_PKEY into r || s. 0 or P8V_ERR_CRYPTO. */
static int
sign_digest_pkey(EVP_PKEY *pkey, const uint8_t md[JWT_DIGEST_BYTES],
    uint8_t sig[JWT_ES256_SIG_BYTES])
{
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t der[JWT_DER_MAX_BYTES];
	size_t der_len = sizeof(der);
	int r = P8V_ERR_CRYPTO;

	if ((pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_sign_init(pctx) != 1 ||
	    EVP_PKEY_sign(pctx, der, &der_len, md, JWT_DIGEST_BYTES) != 1 ||
	    jwt_der_to_p1363(der, der_len, sig) != 0)
		goto out;
	r = 0;
 out:
	EVP_PKEY_CTX_free(pctx);
	return r;
}

/*
 * The compact JSON of o: written into small by jsonflat_dump when o is flat
 * (JOSE headers, most claims; a third of the cost of json_dumps), else by
 * json_dumps into *heap (the caller frees it). NULL when out of memory.
 */
static const char *
compact(const json_t *o, char *small, size_t size, char **heap)
{
	*heap = NULL;
	if (jsonflat_dump(o, small, size) > 0)
		return small;
	return *heap = json_dumps(o, JSON_COMPACT);
}

/* jwt_sign_es256 with either pkey or scalar (exactly one set). */
static int
sign_jws(EVP_PKEY *pkey, const uint8_t *scalar, const json_t *header,
    const json_t *claims, char **token)
{
	char hsmall[JWT_FLAT_BYTES], csmall[JWT_FLAT_BYTES];
	char *hheap = NULL, *cheap = NULL, *buf = NULL;
	const char *hjson, *cjson;
	uint8_t md[JWT_DIGEST_BYTES];
	uint8_t sig[JWT_ES256_SIG_BYTES];
	size_t hlen, clen, input_len, total, pos;
	int r = P8V_ERR_INTERNAL;

	if (token == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*token = NULL;
	if ((pkey == NULL && scalar == NULL) || !json_is_object(header) ||
	    !json_is_object(claims) || !alg_is_es256(header)) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	/* jansson keeps insertion order; JSON_COMPACT drops all white space. */
	if ((hjson = compact(header, hsmall, sizeof(hsmall), &hheap)) == NULL ||
	    (cjson = compact(claims, csmall, sizeof(csmall), &cheap)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	hlen = strlen(hjson);
	clen = strlen(cjson);
	/* Bound each part first so that the sum below cannot overflow. */
	if (hlen >= JWT_MAX_TOKEN_BYTES || clen >= JWT_MAX_TOKEN_BYTES) {
		r = P8V_ERR_TOO_LARGE;
		goto out;
	}
	input_len = JWT_B64_LEN(hlen) + 1 + JWT_B64_LEN(clen);
	total = input_len + 1 + JWT_SIG_B64_CHARS;
	if (total + 1 > JWT_MAX_TOKEN_BYTES) {
		r = P8V_ERR_TOO_LARGE;
		goto out;
	}
	if ((buf = malloc(total + 1)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	pos = encode(buf, (const uint8_t *)hjson, hlen);
	buf[pos++] = '.';
	pos += encode(buf + pos, (const uint8_t *)cjson, clen);
	if ((r = digest(buf, input_len, md)) != 0)
		goto out;
	/* The private key stays inside OpenSSL (or the caller's locked
	 * buffer): only the digest goes in. */
	r = pkey != NULL ? sign_digest_pkey(pkey, md, sig) :
	    sign_digest_scalar(scalar, md, sig);
	if (r != 0)
		goto out;
	normalise_low_s(sig);
	buf[pos++] = '.';
	pos += encode(buf + pos, sig, sizeof(sig));
	if (pos != total) {
		r = P8V_ERR_INTERNAL;
		goto out;
	}
	*token = buf;
	buf = NULL;
	r = 0;
 out:
	if (r == P8V_ERR_CRYPTO)
		log_errorf("jwt_sign", "ES256 signing failed in OpenSSL");
	if (r != 0)
		ERR_clear_error();
	free(hheap);
	free(cheap);
	free(buf);
	return r;
}

int
jwt_sign_es256(const struct p8_key *key, const json_t *header,
    const json_t *claims, char **token)
{
	EVP_PKEY *pkey = key != NULL ? p8_key_evp(key) : NULL;

	if (token != NULL)
		*token = NULL;
	if (pkey == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return sign_jws(pkey, NULL, header, claims, token);
}

int
jwt_sign_es256_scalar(const uint8_t scalar[P8_SCALAR_BYTES],
    const json_t *header, const json_t *claims, char **token)
{
	if (token != NULL)
		*token = NULL;
	if (scalar == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return sign_jws(NULL, scalar, header, claims, token);
}

int
jwt_verify_es256_raw(const uint8_t pub[P8_PUBLIC_BYTES], const void *msg,
    size_t msg_len, const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t md[JWT_DIGEST_BYTES], *der = NULL;
	size_t der_len = 0;
	int ok, r = P8V_ERR_INTERNAL;

	if (pub == NULL || (msg == NULL && msg_len > 0) ||
	    (sig == NULL && sig_len > 0)) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if (sig_len != JWT_ES256_SIG_BYTES || !scalar_in_range(sig) ||
	    !scalar_in_range(sig + JWT_SCALAR_BYTES)) {
		r = P8V_ERR_INTEGRITY;
		goto out;
	}
	if ((r = public_pkey(pub, &pkey)) != 0)
		goto out;
	if ((r = jwt_p1363_to_der(sig, sig_len, &der, &der_len)) != 0)
		goto out;
	if ((r = digest(msg_len > 0 ? msg : "", msg_len, md)) != 0)
		goto out;
	if ((pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_verify_init(pctx) != 1) {
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	/* 1: valid; 0: bad signature; < 0: a failure, also treated as "not
	 * valid" since nothing is ever accepted without a 1. */
	ok = EVP_PKEY_verify(pctx, der, der_len, md, sizeof(md));
	r = ok == 1 ? 0 : P8V_ERR_INTEGRITY;
 out:
	if (r != 0)
		ERR_clear_error();
	EVP_PKEY_CTX_free(pctx);
	EVP_PKEY_free(pkey);
	free(der);
	return r;
}

/*
 * Decode a base64url JSON object part strictly: duplicate members refused
 * (they make "which alg?" ambiguous), nothing after the object.
 * 0, P8V_ERR_INTEGRITY or P8V_ERR_ALLOC; *out owned by the caller.
 */
static int
decode_object(const char *s, size_t n, json_t **out)
{
	uint8_t *raw = NULL;
	size_t raw_len;
	json_error_t jerr;
	int r;

	*out = NULL;
	if ((r = decode(s, n, &raw, &raw_len)) != 0)
		goto out;
	*out = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES,
	    &jerr);
	/* Memory pressure, not a bad token: jansson says so, or gives no
	 * message at all (common/codec.h, codec_json_decode, has the limit). */
	if (*out == NULL &&
	    (json_error_code(&jerr) == json_error_out_of_memory ||
	    jerr.text[0] == '\0')) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		r = P8V_ERR_INTEGRITY;
		goto out;
	}
	r = 0;
 out:
	free(raw);
	return r;
}

int
jwt_verify_es256(const uint8_t pub[P8_PUBLIC_BYTES], const char *token,
    size_t token_len)
{
	const char *dot1, *dot2, *sig_b64;
	json_t *header = NULL, *claims = NULL;
	uint8_t *sig = NULL;
	size_t sig_len, input_len;
	int r = P8V_ERR_INTERNAL;

	if (pub == NULL || (token == NULL && token_len > 0)) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	r = P8V_ERR_INTEGRITY;
	if (token_len == 0 || token_len >= JWT_MAX_TOKEN_BYTES)
		goto out;
	/* Exactly two dots: header "." claims "." signature. */
	if ((dot1 = memchr(token, '.', token_len)) == NULL)
		goto out;
	input_len = token_len - (size_t)(dot1 + 1 - token);
	if ((dot2 = memchr(dot1 + 1, '.', input_len)) == NULL)
		goto out;
	sig_b64 = dot2 + 1;
	if (memchr(sig_b64, '.', token_len - (size_t)(sig_b64 - token)) != NULL)
		goto out;
	input_len = (size_t)(dot2 - token);
	if ((r = decode_object(token, (size_t)(dot1 - token), &header)) != 0)
		goto out;
	r = P8V_ERR_INTEGRITY;
	/* Only ES256, and no critical extensions, which we understand none of
	 * (RFC 7515 section 4.1.11). */
	if (!alg_is_es256(header) || json_object_get(header, "crit") != NULL)
		goto out;
	if ((r = decode_object(dot1 + 1, (size_t)(dot2 - dot1 - 1),
	    &claims)) != 0)
		goto out;
	if ((r = decode(sig_b64, token_len - (size_t)(sig_b64 - token), &sig,
	    &sig_len)) != 0)
		goto out;
	r = jwt_verify_es256_raw(pub, token, input_len, sig, sig_len);
 out:
	json_decref(header);
	json_decref(claims);
	free(sig);
	return r;
}

int
jwt_compact_chars_ok(const char *s, size_t len)
{
	size_t i, dots = 0;

	if (s == NULL)
		return 0;
	for (i = 0; i < len; i++) {
		if (s[i] == '.')
			dots++;
		else if (!cc_is((unsigned char)s[i], CC_B64URL))
			return 0;
	}
	return dots == 2;
}
