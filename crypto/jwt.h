/*
 * jwt.h: ES256 JWS compact serialization (RFC 7515, RFC 7518 section 3.4).
 *
 * token = b64url(header) "." b64url(claims) "." b64url(r || s)
 *
 * header and claims are serialized compactly (no white space) in the order
 * their members were added; r and s are 32 bytes each, big-endian,
 * zero-padded; base64url has no padding. DER signatures are not JWS.
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
 * NUL-terminated. Returns 0, P8V_ERR_INVALID_ARGUMENT (not objects),
 * P8V_ERR_TOO_LARGE, P8V_ERR_CRYPTO, P8V_ERR_ALLOC.
 */
int jwt_sign_es256(const struct p8_key *key, const json_t *header,
    const json_t *claims, char **token);

/*
 * Verify a compact ES256 token against a public point. Used by self-checks
 * and tests; the independent check of what the vault emits is done outside
 * this code. Returns 0 or P8V_ERR_INTEGRITY (any malformation or a bad
 * signature), P8V_ERR_CRYPTO.
 */
int jwt_verify_es256(const uint8_t pub[P8_PUBLIC_BYTES], const char *token,
    size_t token_len);

/* DER ECDSA-Sig-Value -> raw r || s. Strict DER only; P8V_ERR_INVALID_ARGUMENT
 * otherwise (including r or s wider than 32 bytes). */
int jwt_der_to_p1363(const uint8_t *der, size_t der_len,
    uint8_t sig[JWT_ES256_SIG_BYTES]);

/* Raw r || s (sig_len must be 64, else P8V_ERR_INVALID_ARGUMENT) -> DER,
 * malloc'd. */
int jwt_p1363_to_der(const uint8_t *sig, size_t sig_len, uint8_t **der,
    size_t *der_len);

/* base64url without padding; *out malloc'd, NUL-terminated. */
int jwt_b64url_encode(const uint8_t *in, size_t in_len, char **out);

#endif /* P8V_CRYPTO_JWT_H */
