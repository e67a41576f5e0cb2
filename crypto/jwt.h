/*
 * jwt.h: ES256 JWS compact serialization (RFC 7515, RFC 7518 section 3.4).
 *
 * token = b64url(header) "." b64url(claims) "." b64url(r || s)
 *
 * header and claims are serialized compactly (no white space) in the order
 * their members were added; r and s are 32 bytes each, big-endian,
 * zero-padded; base64url has no padding. DER signatures are not JWS.
 * Every signature made here is low-S (s <= n / 2; s := n - s otherwise),
 * so strict verifiers such as @noble/curves (lowS: true) accept it.
 *
 * The JSON objects come from vault/'s token builders, which make every
 * member from validated fields; nothing here takes caller bytes to sign.
 * Signing keeps a per-thread digest context so a signature costs one ECDSA
 * operation and no per-call setup.
 */
#ifndef P8V_CRYPTO_JWT_H
#define P8V_CRYPTO_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crypto/p8.h"

#define JWT_ES256_SIG_BYTES 64
/* Upper bound on a token this module emits. */
#define JWT_MAX_TOKEN_BYTES 4096

/*
 * Sign header and claims (JSON objects) with key. *token is malloc'd and
 * NUL-terminated; the caller frees it with free(). On failure *token is NULL.
 * header must carry "alg":"ES256" (the only algorithm this signs with), so a
 * token never claims an algorithm it was not signed with. Thread-safe: key
 * may be used by several threads at once.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (NULL key or token, header or claims
 * not objects, header "alg" not "ES256"), P8V_ERR_TOO_LARGE (the token and
 * its NUL would exceed JWT_MAX_TOKEN_BYTES), P8V_ERR_CRYPTO, P8V_ERR_ALLOC.
 */
int jwt_sign_es256(const struct p8_key *key, const json_t *header,
    const json_t *claims, char **token);

/*
 * jwt_sign_es256 with a bare private scalar (32 bytes, big-endian, in
 * [1, n - 1]: the caller checked it, e.g. with p8_scalar_check) instead of
 * a key object: for the vault, which unseals a scalar per token and would
 * otherwise spend more on building an EVP_PKEY than on the signature. The
 * scalar is copied only into OpenSSL's secure heap (this thread's EC_KEY),
 * and wiped there once the signature is made; the caller keeps its own in
 * locked memory and wipes it. Thread-safe.
 * Returns as jwt_sign_es256 (P8V_ERR_INVALID_ARGUMENT for a NULL scalar).
 */
int jwt_sign_es256_scalar(const uint8_t scalar[P8_SCALAR_BYTES],
    const json_t *header, const json_t *claims, char **token);

/*
 * 1 if the r || s signature's s is at most floor(n / 2) (low-S), else 0.
 * Says nothing about validity. Every signature jwt_sign_es256* make is.
 */
int jwt_es256_is_low_s(const uint8_t sig[JWT_ES256_SIG_BYTES]);

/*
 * Verify a compact ES256 token against a public point (uncompressed,
 * 0x04 || X || Y). Used by self-checks and tests; the independent check of
 * what the vault emits is done outside this code. token need not be
 * NUL-terminated. Strict: exactly two dots; each part base64url alphabet
 * only, no padding, canonical; header and claims JSON objects without
 * duplicate members; header "alg" exactly "ES256" and no "crit"; signature
 * exactly 64 bytes with r and s in [1, n-1]; token shorter than
 * JWT_MAX_TOKEN_BYTES.
 * Returns 0 or P8V_ERR_INTEGRITY (any malformation or a bad signature),
 * P8V_ERR_INVALID_ARGUMENT (NULL pub or token, or pub not a point on
 * P-256), P8V_ERR_ALLOC, P8V_ERR_CRYPTO.
 */
int jwt_verify_es256(const uint8_t pub[P8_PUBLIC_BYTES], const char *token,
    size_t token_len);

/*
 * The primitive under jwt_verify_es256: verify a raw ES256 signature
 * (r || s) over msg with pub. Exposed so the Wycheproof vectors exercise the
 * exact code path tokens go through. Verifying signs nothing, so this is no
 * signing oracle.
 * Returns 0, P8V_ERR_INTEGRITY (sig_len not 64, r or s not in [1, n-1], bad
 * signature), P8V_ERR_INVALID_ARGUMENT (NULL pointers with non-zero
 * lengths, pub not a point on P-256), P8V_ERR_ALLOC, P8V_ERR_CRYPTO.
 */
int jwt_verify_es256_raw(const uint8_t pub[P8_PUBLIC_BYTES], const void *msg,
    size_t msg_len, const uint8_t *sig, size_t sig_len);

/* DER ECDSA-Sig-Value -> raw r || s (each big-endian, left-padded to 32
 * bytes). Strict DER only: no BER length forms, no superfluous leading
 * zero or negative INTEGERs, no trailing bytes. Returns 0, or
 * P8V_ERR_INVALID_ARGUMENT for anything else (including r or s wider than
 * 32 bytes), P8V_ERR_CRYPTO. A format conversion only: r or s of zero or
 * >= n convert; verification refuses them. */
int jwt_der_to_p1363(const uint8_t *der, size_t der_len,
    uint8_t sig[JWT_ES256_SIG_BYTES]);

/* Raw r || s (sig_len must be 64, else P8V_ERR_INVALID_ARGUMENT) -> DER,
 * *der malloc'd (caller frees with free()), *der_len its length (at most 72).
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, P8V_ERR_CRYPTO. */
int jwt_p1363_to_der(const uint8_t *sig, size_t sig_len, uint8_t **der,
    size_t *der_len);

/* base64url without padding; *out malloc'd (caller frees with free()),
 * NUL-terminated; in may be NULL when in_len is 0. Returns 0,
 * P8V_ERR_INVALID_ARGUMENT, P8V_ERR_TOO_LARGE (in_len beyond what size_t can
 * encode), P8V_ERR_ALLOC. */
int jwt_b64url_encode(const uint8_t *in, size_t in_len, char **out);

/* 1 if the len bytes at s are made of a compact JWS's characters:
 * base64url and exactly two dots (so nothing a JSON string escapes), else
 * 0. Says nothing of what the parts hold. */
int jwt_compact_chars_ok(const char *s, size_t len);

#endif /* P8V_CRYPTO_JWT_H */
