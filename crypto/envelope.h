/*
 * envelope.h: envelope encryption of one secret object.
 *
 * Each object gets its own random 256-bit data key. The payload is sealed
 * with AES-256-GCM under the data key; the data key is sealed with
 * AES-256-GCM under a master key named by its id. The caller's authenticated
 * data (the object's identity, e.g. app id, Key ID, Team ID, fingerprint and
 * metadata) is bound into both seals, so an envelope copied under another
 * identity fails to open with P8V_ERR_INTEGRITY.
 *
 * Format, version 1 (all sizes in bytes; total ENVELOPE_OVERHEAD + n):
 *
 *   off  len  field
 *   0    1    version = 0x01
 *   1    8    master key id
 *   9    12   nonce of the wrapped data key
 *   21   32   wrapped data key  (AES-256-GCM under the master key)
 *   53   16   tag of the wrapped data key
 *   69   12   nonce of the payload
 *   81   n    payload ciphertext (AES-256-GCM under the data key)
 *   81+n 16   tag of the payload
 *
 *   AAD of the key wrap: "p8v1K" || version || master key id || caller aad
 *   AAD of the payload:  "p8v1P" || version || caller aad
 *
 * The payload's AAD leaves out the master key id, so a master-key rotation
 * re-wraps only the 32-byte data key (envelope_rewrap) and never touches the
 * payload.
 *
 * WARNING, the master key's wrap budget. Every envelope_seal and every
 * envelope_rewrap onto a master key is one AES-256-GCM encryption under
 * that key with a random 96-bit nonce. Random nonces collide by the
 * birthday bound: after n wraps the chance is about n^2 / 2^97 (2^-37 at
 * 2^30 wraps, 2^-33 at 2^32), and one collision under the master key
 * gives away the XOR of two wrapped data keys and GCM's authentication
 * key, so tags can be forged. NIST SP 800-38D (section 8.3) caps random-
 * nonce GCM at 2^32 encryptions per key. A master key must stay far below
 * ENVELOPE_WRAPS_MAX wraps: whoever calls these counts the wraps per
 * master key durably (the vault does, in the store) and warns from
 * ENVELOPE_WRAPS_WARN on, when a new master key should become primary.
 * Nothing here counts: this module keeps no state. A data key seals one
 * payload once, so payloads have no such budget.
 */
#ifndef P8V_CRYPTO_ENVELOPE_H
#define P8V_CRYPTO_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/masterkey.h"

#define ENVELOPE_VERSION 1
#define ENVELOPE_OVERHEAD 97
/* Wraps (seals and re-wraps) under one master key: never ENVELOPE_WRAPS_MAX
 * (NIST SP 800-38D's limit for random 96-bit nonces), a warning from
 * ENVELOPE_WRAPS_WARN on (see the warning above). A vault seals one
 * envelope per uploaded key and re-wraps each once per rotation: 2^30 is
 * far beyond any real vault, and still four times below the limit. */
#define ENVELOPE_WRAPS_MAX ((uint64_t)1 << 32)
#define ENVELOPE_WRAPS_WARN ((uint64_t)1 << 30)
/* Largest payload an envelope holds; a sealed .p8 scalar is 32 bytes. */
#define ENVELOPE_MAX_PAYLOAD (64 * 1024)
/* Largest caller aad: an identity with its metadata is a few hundred bytes,
 * a topic-specific key's with 400 long topics ~102 KiB
 * (common/keyrecord.h's KEY_RECORD_AAD_MAX); the bound keeps the AAD
 * buffers' sizes from overflowing. */
#define ENVELOPE_MAX_AAD (128 * 1024)

/*
 * Seal pt under a fresh data key wrapped by mk. *out is malloc'd (it holds
 * only ciphertext) and *out_len is ENVELOPE_OVERHEAD + pt_len; both are
 * NULL/0 on failure. aad may be NULL when aad_len is 0.
 * Returns 0, P8V_ERR_TOO_LARGE (pt_len > ENVELOPE_MAX_PAYLOAD or
 * aad_len > ENVELOPE_MAX_AAD), P8V_ERR_RANDOM, P8V_ERR_CRYPTO,
 * P8V_ERR_SECMEM (the data key's guarded memory), P8V_ERR_ALLOC,
 * P8V_ERR_INVALID_ARGUMENT (a NULL pointer).
 */
int envelope_seal(const struct master_key *mk,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *pt, size_t pt_len,
    uint8_t **out, size_t *out_len);

/*
 * Read the master key id an envelope names, without opening it.
 * Returns 0, P8V_ERR_INTEGRITY (shorter than ENVELOPE_OVERHEAD, longer than
 * ENVELOPE_OVERHEAD + ENVELOPE_MAX_PAYLOAD, unknown version),
 * P8V_ERR_INVALID_ARGUMENT.
 */
int envelope_master_key_id(const uint8_t *env, size_t env_len,
    uint8_t id[MASTER_KEY_ID_BYTES]);

/*
 * Open an envelope with the key from ring that it names. *pt is locked
 * memory from secmem_alloc_short (free with secmem_free) holding *pt_len
 * bytes;
 * nothing is returned on failure (*pt NULL, *pt_len 0) and every
 * intermediate buffer is wiped. An empty payload gives *pt_len 0 and a
 * non-NULL *pt.
 * Returns 0, P8V_ERR_MASTER_KEY_MISSING (named key not in ring),
 * P8V_ERR_INTEGRITY (altered, truncated, extended, unknown version, wrong
 * aad), P8V_ERR_SECMEM (guarded memory for the data key or *pt),
 * P8V_ERR_ALLOC, P8V_ERR_CRYPTO, P8V_ERR_TOO_LARGE (aad_len >
 * ENVELOPE_MAX_AAD), P8V_ERR_INVALID_ARGUMENT.
 */
int envelope_open(const struct master_keyring *ring,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *env, size_t env_len,
    uint8_t **pt, size_t *pt_len);

/*
 * Re-wrap the data key of env under new_mk with a fresh nonce, leaving the
 * payload as it is: what a master-key rotation does. aad must be the one the
 * envelope was sealed with; the old wrap and the payload are verified first
 * with the key from ring that env names. *out is malloc'd and as long as
 * env; bytes [69, env_len) (payload nonce, ciphertext, tag) are env's own.
 * Returns as envelope_open; *out is NULL on failure.
 */
int envelope_rewrap(const struct master_keyring *ring,
    const struct master_key *new_mk,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *env, size_t env_len,
    uint8_t **out, size_t *out_len);

#endif /* P8V_CRYPTO_ENVELOPE_H */
