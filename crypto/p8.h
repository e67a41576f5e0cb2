/*
 * p8.h: Apple .p8 keys: parsing, validation, public forms.
 *
 * Input accepted by p8_parse: one PKCS#8 PEM block ("-----BEGIN PRIVATE
 * KEY-----") holding an EC private key on the named curve P-256
 * (prime256v1), with or without the public key inside the ECPrivateKey,
 * with LF or CRLF line ends, white space around the block, and an optional
 * UTF-8 byte-order mark. Everything else is refused with its own error:
 *
 *   P8V_ERR_P8_TOO_LARGE       input over P8_MAX_INPUT_BYTES
 *   P8V_ERR_P8_NOT_PEM         no PEM armour
 *   P8V_ERR_P8_BAD_BASE64      broken base64 inside the armour
 *   P8V_ERR_P8_CERTIFICATE     "CERTIFICATE" (and PKCS#7/PKCS#12-ish) blocks
 *   P8V_ERR_P8_PUBLIC_KEY      "PUBLIC KEY" / "EC PUBLIC KEY" blocks
 *   P8V_ERR_P8_ENCRYPTED       "ENCRYPTED PRIVATE KEY" (or Proc-Type encrypted)
 *   P8V_ERR_P8_NOT_PKCS8       another private key armour ("EC PRIVATE KEY",
 *                              "RSA PRIVATE KEY": not what Apple issues)
 *   P8V_ERR_P8_WRONG_KEY_TYPE  PKCS#8 of RSA, Ed25519, DSA, X25519, ...
 *   P8V_ERR_P8_WRONG_CURVE     EC on P-384, P-521, secp256k1, ...
 *   P8V_ERR_P8_EXPLICIT_CURVE  EC with explicit (unnamed) curve parameters
 *   P8V_ERR_P8_BAD_SCALAR      private scalar 0 or >= n
 *   P8V_ERR_P8_PUBKEY_MISMATCH embedded public key is not scalar * G
 *   P8V_ERR_P8_TRAILING_DATA   bytes after the block, or after the DER
 *   P8V_ERR_P8_MULTIPLE_KEYS   more than one PEM block
 *   P8V_ERR_P8_MALFORMED       DER that does not parse as PKCS#8/ECPrivateKey
 *
 * The first matching rule decides, in this order: size; armour (the label
 * of the first BEGIN line decides CERTIFICATE / PUBLIC_KEY / ENCRYPTED /
 * NOT_PKCS8 even if more blocks follow; a "Proc-Type: 4,ENCRYPTED" header
 * under any private-key label is ENCRYPTED); then for a PKCS#8 block:
 * text before it (RFC 7468 "explanatory text", which a .p8 never has) is
 * NOT_PEM, no matching END line is NOT_PEM, anything but white space after
 * the END line is MULTIPLE_KEYS if it holds a BEGIN line, else
 * TRAILING_DATA; then base64; then DER.
 *
 * Strictness, beyond the list above (all MALFORMED unless said):
 *   - DER only: definite, minimal lengths; single-byte tags.
 *   - PrivateKeyInfo version 0 with exactly { version, algorithm,
 *     privateKey }: no attributes, no RFC 5958 v2 public key (Apple's keys
 *     have neither). The algorithm is judged before the version, so a v2
 *     Ed25519 key is WRONG_KEY_TYPE, not MALFORMED.
 *   - id-ecPublicKey must carry parameters (RFC 5480). A named curve other
 *     than prime256v1 is WRONG_CURVE; specifiedCurve or implicitCurve (NULL)
 *     is EXPLICIT_CURVE. Optional [0] parameters inside the ECPrivateKey
 *     follow the same rules (so they must name prime256v1).
 *   - ECPrivateKey version 1; privateKey exactly 32 bytes (RFC 5915).
 *   - The optional [1] public key: a BIT STRING with 0 unused bits holding
 *     an uncompressed (65 bytes) or compressed (33 bytes) point; anything
 *     else, infinity, X9.62 "hybrid" form, a point off the curve or other
 *     than scalar*G is PUBKEY_MISMATCH. The key always keeps the point it
 *     computed itself.
 *
 * Error messages never echo input bytes, and nothing in p8.c logs. The input
 * buffer is the caller's (keep it in guarded memory); p8_parse decodes the
 * DER into guarded memory (secmem_alloc) and wipes it, and the private
 * scalar lives only in OpenSSL's secure heap (BN_secure_new, and the EC
 * provider's own copy, which keeps the secure flag).
 *
 * A struct p8_key does not change after it is made: several threads may use
 * one at the same time (export, public point, signing through
 * p8_key_evp()), as long as none destroys it meanwhile.
 */
#ifndef P8V_CRYPTO_P8_H
#define P8V_CRYPTO_P8_H

#include <stddef.h>
#include <stdint.h>

/* A .p8 is about 250 bytes; anything much larger is not one. */
#define P8_MAX_INPUT_BYTES 4096
#define P8_SCALAR_BYTES 32
#define P8_PUBLIC_BYTES 65  /* uncompressed point: 0x04 || X || Y */
#define P8_FINGERPRINT_HEX 64 /* SHA-256 of the DER SubjectPublicKeyInfo */

struct p8_key;

/*
 * Parse and validate a .p8 (see above).
 * input: input_len bytes, not NUL-terminated; not kept.
 * On success *out owns the key (free with p8_key_destroy); on failure *out
 * is NULL (unless out itself is NULL).
 * Returns 0, one of the P8V_ERR_P8_* codes listed above,
 * P8V_ERR_INVALID_ARGUMENT (out NULL, or input NULL with input_len > 0;
 * an empty input is P8V_ERR_P8_NOT_PEM), P8V_ERR_SECMEM (no guarded
 * memory), P8V_ERR_ALLOC, or P8V_ERR_CRYPTO (OpenSSL failed).
 */
int p8_parse(const uint8_t *input, size_t input_len, struct p8_key **out);

/*
 * Rebuild a key from its 32-byte big-endian scalar (as exported below) and
 * its public point (P8_PUBLIC_BYTES, uncompressed). pub may be NULL, then it
 * is computed. The scalar and point are validated as in p8_parse: scalar*G
 * is always recomputed and compared with pub (about 5 us of the ~30 us this
 * call takes; cheap enough not to trust a stored point blindly).
 * On success *out owns the key; on failure *out is NULL.
 * Returns 0, P8V_ERR_P8_BAD_SCALAR (0 or >= n), P8V_ERR_P8_PUBKEY_MISMATCH
 * (pub not an uncompressed point on P-256, or not scalar*G),
 * P8V_ERR_INVALID_ARGUMENT (scalar or out NULL), P8V_ERR_ALLOC, or
 * P8V_ERR_CRYPTO.
 */
int p8_key_from_scalar(const uint8_t scalar[P8_SCALAR_BYTES],
    const uint8_t *pub, struct p8_key **out);

/*
 * Check an unsealed scalar against its record's public point without
 * building a key: the scalar is in [1, n - 1] and scalar*G, uncompressed,
 * is exactly pub. About 10 us (one fixed-base multiplication with a
 * process-wide group), a third of p8_key_from_scalar.
 * Returns 0, P8V_ERR_P8_BAD_SCALAR, P8V_ERR_P8_PUBKEY_MISMATCH,
 * P8V_ERR_INVALID_ARGUMENT (NULL argument), P8V_ERR_CRYPTO.
 */
int p8_scalar_check(const uint8_t scalar[P8_SCALAR_BYTES],
    const uint8_t pub[P8_PUBLIC_BYTES]);

/* Write the private scalar, big-endian, zero-padded, to out (which the
 * caller keeps in guarded memory and wipes). No other copy is made.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (NULL argument) or P8V_ERR_CRYPTO
 * (then out is wiped). */
int p8_key_export_scalar(const struct p8_key *key, uint8_t out[P8_SCALAR_BYTES]);

/* Write the public point, uncompressed, to out.
 * Returns 0 or P8V_ERR_INVALID_ARGUMENT (NULL argument). */
int p8_key_public_point(const struct p8_key *key, uint8_t out[P8_PUBLIC_BYTES]);

/* Free the key, wiping its private part. NULL-safe. */
void p8_key_destroy(struct p8_key *key);

/*
 * Public forms, computed from a public point alone (records keep the point in
 * the clear, so these need no unsealing). Each first checks the point as
 * p8_public_check does and returns P8V_ERR_INVALID_ARGUMENT for a bad
 * point or a NULL argument; P8V_ERR_ALLOC or P8V_ERR_CRYPTO on failure of
 * the allocator or OpenSSL.
 */
/* Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo; hex gets 64 chars
 * and a NUL. */
int p8_public_fingerprint(const uint8_t pub[P8_PUBLIC_BYTES],
    char hex[P8_FINGERPRINT_HEX + 1]);
/* "-----BEGIN PUBLIC KEY-----\n...-----END PUBLIC KEY-----\n" with 64-column
 * base64 lines (what `openssl pkey -pubout` writes), malloc'd: free() it.
 * *pem is NULL on failure. */
int p8_public_pem(const uint8_t pub[P8_PUBLIC_BYTES], char **pem);
/* RFC 7517 JWK as compact JSON, malloc'd:
 * {"kty":"EC","crv":"P-256","x":"..","y":"..","kid":kid,"use":"sig","alg":"ES256"}
 * x and y are exactly 32 bytes each, base64url without padding. kid may be
 * NULL (then omitted); it must be valid UTF-8 (else INVALID_ARGUMENT) and is
 * JSON-escaped. *json is malloc'd by jansson's default allocator: free() it;
 * NULL on failure. */
int p8_public_jwk(const uint8_t pub[P8_PUBLIC_BYTES], const char *kid, char **json);
/* Validate that pub is an uncompressed point on P-256 (0x04 prefix,
 * coordinates below p, on the curve, hence not infinity and, the cofactor
 * being 1, of order n). Returns 0 or P8V_ERR_INVALID_ARGUMENT (NULL or not
 * such a point), P8V_ERR_CRYPTO. About 8 us. */
int p8_public_check(const uint8_t pub[P8_PUBLIC_BYTES]);

#endif /* P8V_CRYPTO_P8_H */
