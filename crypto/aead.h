/*
 * aead.h: AES-256-GCM, the one authenticated cipher of p8vault (OpenSSL EVP).
 *
 * Only 256-bit keys, 96-bit nonces and 128-bit tags are supported; any other
 * size is refused with P8V_ERR_UNSUPPORTED before any work is done.
 *
 * WARNING: a (key, nonce) pair must never be used twice. Callers use
 * aead_seal_random(), which draws a fresh random nonce; with random 96-bit
 * nonces, one key may seal at most 2^32 messages (NIST SP 800-38D 8.3).
 * p8vault gives every sealed object its own data key (see envelope.h), so a
 * data key seals exactly one message.
 */
#ifndef P8V_CRYPTO_AEAD_H
#define P8V_CRYPTO_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_BYTES 32   /* AES-256 */
#define AEAD_NONCE_BYTES 12 /* 96-bit nonce: GCM's native IV size */
#define AEAD_TAG_BYTES 16   /* 128-bit tag: no truncation */

/*
 * Encrypt pt (pt_len bytes, may be 0) under key and nonce, authenticating
 * aad (may be NULL when aad_len is 0). Writes pt_len bytes of ciphertext to
 * ct (may equal pt) and the tag to tag.
 * Returns 0, P8V_ERR_UNSUPPORTED (a size other than 32/12/16; checked first,
 * nothing is read or written), P8V_ERR_TOO_LARGE (pt_len or aad_len above
 * INT_MAX, EVP's limit), P8V_ERR_INVALID_ARGUMENT (a NULL pointer with a
 * non-zero length), or P8V_ERR_CRYPTO (OpenSSL failed; ct and tag are then
 * wiped).
 */
int aead_seal(const uint8_t *key, size_t key_len,
    const uint8_t *nonce, size_t nonce_len,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *pt, size_t pt_len,
    uint8_t *ct, uint8_t *tag, size_t tag_len);

/*
 * Decrypt and verify. Writes ct_len bytes of plaintext to pt (may equal ct)
 * only if the tag verifies; when decryption fails (P8V_ERR_INTEGRITY,
 * P8V_ERR_CRYPTO) pt is wiped (ct_len bytes) before returning. The argument
 * errors (P8V_ERR_UNSUPPORTED, P8V_ERR_TOO_LARGE, P8V_ERR_INVALID_ARGUMENT,
 * as for aead_seal) return before pt is written.
 * Returns 0, P8V_ERR_INTEGRITY (tag mismatch: wrong key, nonce, aad or
 * altered ciphertext), P8V_ERR_UNSUPPORTED, P8V_ERR_TOO_LARGE,
 * P8V_ERR_INVALID_ARGUMENT or P8V_ERR_CRYPTO.
 */
int aead_open(const uint8_t *key, size_t key_len,
    const uint8_t *nonce, size_t nonce_len,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *ct, size_t ct_len,
    const uint8_t *tag, size_t tag_len,
    uint8_t *pt);

/*
 * aead_seal with a fresh random 96-bit nonce, written to nonce_out.
 * key is AEAD_KEY_BYTES, tag_out AEAD_TAG_BYTES.
 * Returns as aead_seal, or P8V_ERR_RANDOM.
 */
int aead_seal_random(const uint8_t key[AEAD_KEY_BYTES],
    const uint8_t *aad, size_t aad_len,
    const uint8_t *pt, size_t pt_len,
    uint8_t nonce_out[AEAD_NONCE_BYTES], uint8_t *ct,
    uint8_t tag_out[AEAD_TAG_BYTES]);

#endif /* P8V_CRYPTO_AEAD_H */
