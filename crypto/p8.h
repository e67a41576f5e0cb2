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
 * Error messages never echo input bytes. The input buffer is the caller's
 * (keep it in guarded memory); p8_parse copies the DER into guarded memory
 * and wipes it, and the resulting private bignum lives in OpenSSL's secure
 * heap.
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

/* Parse and validate a .p8 (see above). On success *out owns the key. */
int p8_parse(const uint8_t *input, size_t input_len, struct p8_key **out);

/*
 * Rebuild a key from its 32-byte big-endian scalar (as exported below) and
 * its public point (P8_PUBLIC_BYTES, uncompressed). pub may be NULL, then it
 * is computed. The scalar and point are validated as in p8_parse.
 */
int p8_key_from_scalar(const uint8_t scalar[P8_SCALAR_BYTES],
    const uint8_t *pub, struct p8_key **out);

/* Write the private scalar, big-endian, zero-padded, to out (which the
 * caller keeps in guarded memory and wipes). */
int p8_key_export_scalar(const struct p8_key *key, uint8_t out[P8_SCALAR_BYTES]);

/* Write the public point, uncompressed, to out. */
int p8_key_public_point(const struct p8_key *key, uint8_t out[P8_PUBLIC_BYTES]);

/* Free the key, wiping its private part. NULL-safe. */
void p8_key_destroy(struct p8_key *key);

/*
 * Public forms, computed from a public point alone (records keep the point in
 * the clear, so these need no unsealing).
 */
/* Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo; hex gets 64 chars
 * and a NUL. */
int p8_public_fingerprint(const uint8_t pub[P8_PUBLIC_BYTES],
    char hex[P8_FINGERPRINT_HEX + 1]);
/* "-----BEGIN PUBLIC KEY-----\n...-----END PUBLIC KEY-----\n", malloc'd. */
int p8_public_pem(const uint8_t pub[P8_PUBLIC_BYTES], char **pem);
/* RFC 7517 JWK as compact JSON, malloc'd:
 * {"kty":"EC","crv":"P-256","x":"..","y":"..","kid":kid,"use":"sig","alg":"ES256"}
 * kid may be NULL (then omitted). */
int p8_public_jwk(const uint8_t pub[P8_PUBLIC_BYTES], const char *kid, char **json);
/* Validate that pub is an uncompressed point on P-256 (not infinity). */
int p8_public_check(const uint8_t pub[P8_PUBLIC_BYTES]);

#endif /* P8V_CRYPTO_P8_H */
