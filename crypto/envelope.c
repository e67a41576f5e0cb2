/*
 * envelope.c: envelope encryption, format version 1 (see envelope.h for the
 * byte layout and the two AADs).
 *
 * The data key exists in plaintext only in locked memory (secmem_alloc_short:
 * OpenSSL's secure heap) for the length of one call and is wiped with it. Every check that can tell a bad envelope
 * from a good one answers P8V_ERR_INTEGRITY, the same answer a failed tag
 * gives, except a master key id that names no loaded key.
 */
#include "crypto/envelope.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/aead.h"
#include "crypto/secmem.h"

/* Offsets of the version 1 fields. */
#define OFF_VERSION 0
#define OFF_MKID (OFF_VERSION + 1)
#define OFF_WRAP_NONCE (OFF_MKID + MASTER_KEY_ID_BYTES)
#define OFF_WRAP_KEY (OFF_WRAP_NONCE + AEAD_NONCE_BYTES)
#define OFF_WRAP_TAG (OFF_WRAP_KEY + DATA_KEY_BYTES)
#define OFF_NONCE (OFF_WRAP_TAG + AEAD_TAG_BYTES)
#define OFF_PAYLOAD (OFF_NONCE + AEAD_NONCE_BYTES)

/* One AES-256 data key per envelope. */
#define DATA_KEY_BYTES AEAD_KEY_BYTES
/* Domain-separation prefixes of the two AADs (5 bytes each, no NUL). */
#define AAD_LABEL_WRAP "p8v1K"
#define AAD_LABEL_PAYLOAD "p8v1P"
#define AAD_LABEL_BYTES 5

_Static_assert(OFF_PAYLOAD + AEAD_TAG_BYTES == ENVELOPE_OVERHEAD,
    "envelope.h's ENVELOPE_OVERHEAD does not match the field layout");
_Static_assert(sizeof(AAD_LABEL_WRAP) - 1 == AAD_LABEL_BYTES &&
    sizeof(AAD_LABEL_PAYLOAD) - 1 == AAD_LABEL_BYTES, "AAD label length");

/*
 * label || version || [master key id] || aad, malloc'd (it holds only
 * public data). mkid may be NULL (the payload's AAD has none).
 */
static int
build_aad(const char *label, const uint8_t *mkid, const uint8_t *aad,
    size_t aad_len, uint8_t **out, size_t *out_len)
{
	size_t n = AAD_LABEL_BYTES + 1 + (mkid ? MASTER_KEY_ID_BYTES : 0);
	uint8_t *b;

	/* aad_len <= ENVELOPE_MAX_AAD was checked: the sum cannot wrap. */
	if ((b = malloc(n + aad_len)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(b, label, AAD_LABEL_BYTES);
	b[AAD_LABEL_BYTES] = ENVELOPE_VERSION;
	if (mkid != NULL)
		memcpy(b + AAD_LABEL_BYTES + 1, mkid, MASTER_KEY_ID_BYTES);
	if (aad_len > 0)
		memcpy(b + n, aad, aad_len);
	*out = b;
	*out_len = n + aad_len;
	return 0;
}

/* The argument checks every entry point shares. */
static int
check_aad(const uint8_t *aad, size_t aad_len)
{
	if (aad == NULL && aad_len > 0)
		return P8V_ERR_INVALID_ARGUMENT;
	if (aad_len > ENVELOPE_MAX_AAD)
		return P8V_ERR_TOO_LARGE;
	return 0;
}

/* Length and version of a version 1 envelope; its payload length in *n. */
static int
check_envelope(const uint8_t *env, size_t env_len, size_t *n)
{
	if (env_len < ENVELOPE_OVERHEAD ||
	    env_len - ENVELOPE_OVERHEAD > ENVELOPE_MAX_PAYLOAD ||
	    env[OFF_VERSION] != ENVELOPE_VERSION)
		return P8V_ERR_INTEGRITY;
	*n = env_len - ENVELOPE_OVERHEAD;
	return 0;
}

/* Write version, mk's id and dk sealed under mk to env[0..OFF_NONCE). */
static int
wrap_data_key(const struct master_key *mk, const uint8_t *aad,
    size_t aad_len, const uint8_t *dk, uint8_t *env)
{
	uint8_t *wrap_aad = NULL;
	size_t wrap_aad_len = 0;
	int r = P8V_ERR_INTERNAL;

	env[OFF_VERSION] = ENVELOPE_VERSION;
	memcpy(env + OFF_MKID, master_key_id(mk), MASTER_KEY_ID_BYTES);
	if ((r = build_aad(AAD_LABEL_WRAP, env + OFF_MKID, aad, aad_len,
	    &wrap_aad, &wrap_aad_len)) != 0)
		goto out;
	if ((r = aead_seal_random(master_key_bytes(mk), wrap_aad, wrap_aad_len,
	    dk, DATA_KEY_BYTES, env + OFF_WRAP_NONCE, env + OFF_WRAP_KEY,
	    env + OFF_WRAP_TAG)) != 0)
		goto out;
	r = 0;
 out:
	free(wrap_aad);
	return r;
}

/*
 * Find the master key env names in ring and unwrap the data key into dk
 * (DATA_KEY_BYTES of locked memory; wiped by aead_open on failure).
 */
static int
unwrap_data_key(const struct master_keyring *ring, const uint8_t *aad,
    size_t aad_len, const uint8_t *env, uint8_t *dk)
{
	const struct master_key *mk;
	uint8_t *wrap_aad = NULL;
	size_t wrap_aad_len = 0;
	int r = P8V_ERR_INTERNAL;

	if ((mk = master_keyring_find(ring, env + OFF_MKID)) == NULL) {
		r = P8V_ERR_MASTER_KEY_MISSING;
		goto out;
	}
	if ((r = build_aad(AAD_LABEL_WRAP, env + OFF_MKID, aad, aad_len,
	    &wrap_aad, &wrap_aad_len)) != 0)
		goto out;
	if ((r = aead_open(master_key_bytes(mk), MASTER_KEY_BYTES,
	    env + OFF_WRAP_NONCE, AEAD_NONCE_BYTES, wrap_aad, wrap_aad_len,
	    env + OFF_WRAP_KEY, DATA_KEY_BYTES, env + OFF_WRAP_TAG,
	    AEAD_TAG_BYTES, dk)) != 0)
		goto out;
	r = 0;
 out:
	free(wrap_aad);
	return r;
}

/*
 * Decrypt and verify the payload (n bytes) of env with data key dk into a
 * new locked block *pt (at least one byte, so that n == 0 works too).
 */
static int
open_payload(const uint8_t *dk, const uint8_t *aad, size_t aad_len,
    const uint8_t *env, size_t n, uint8_t **pt)
{
	uint8_t *payload_aad = NULL, *p = NULL;
	size_t payload_aad_len = 0;
	int r = P8V_ERR_INTERNAL;

	*pt = NULL;
	if ((r = build_aad(AAD_LABEL_PAYLOAD, NULL, aad, aad_len,
	    &payload_aad, &payload_aad_len)) != 0)
		goto out;
	if ((p = secmem_alloc_short(n > 0 ? n : 1)) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	if ((r = aead_open(dk, DATA_KEY_BYTES, env + OFF_NONCE,
	    AEAD_NONCE_BYTES, payload_aad, payload_aad_len, env + OFF_PAYLOAD,
	    n, env + OFF_PAYLOAD + n, AEAD_TAG_BYTES, p)) != 0)
		goto out;
	*pt = p;
	p = NULL;
	r = 0;
 out:
	secmem_free(p);
	free(payload_aad);
	return r;
}

int
envelope_seal(const struct master_key *mk,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *pt, size_t pt_len,
    uint8_t **out, size_t *out_len)
{
	uint8_t *dk = NULL, *env = NULL, *payload_aad = NULL;
	size_t payload_aad_len = 0;
	int r = P8V_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (mk == NULL || out == NULL || out_len == NULL ||
	    (pt == NULL && pt_len > 0)) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if ((r = check_aad(aad, aad_len)) != 0)
		goto out;
	if (pt_len > ENVELOPE_MAX_PAYLOAD) {
		r = P8V_ERR_TOO_LARGE;
		goto out;
	}
	if ((dk = secmem_alloc_short(DATA_KEY_BYTES)) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	if ((env = malloc(ENVELOPE_OVERHEAD + pt_len)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	if ((r = secmem_random(dk, DATA_KEY_BYTES)) != 0)
		goto out;
	if ((r = wrap_data_key(mk, aad, aad_len, dk, env)) != 0)
		goto out;
	if ((r = build_aad(AAD_LABEL_PAYLOAD, NULL, aad, aad_len,
	    &payload_aad, &payload_aad_len)) != 0)
		goto out;
	if ((r = aead_seal_random(dk, payload_aad, payload_aad_len, pt, pt_len,
	    env + OFF_NONCE, env + OFF_PAYLOAD,
	    env + OFF_PAYLOAD + pt_len)) != 0)
		goto out;
	*out = env;
	*out_len = ENVELOPE_OVERHEAD + pt_len;
	env = NULL;
	r = 0;
 out:
	secmem_free(dk);
	free(env);
	free(payload_aad);
	return r;
}

int
envelope_master_key_id(const uint8_t *env, size_t env_len,
    uint8_t id[MASTER_KEY_ID_BYTES])
{
	size_t n;
	int r;

	if (env == NULL || id == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_envelope(env, env_len, &n)) != 0)
		return r;
	memcpy(id, env + OFF_MKID, MASTER_KEY_ID_BYTES);
	return 0;
}

int
envelope_open(const struct master_keyring *ring,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *env, size_t env_len,
    uint8_t **pt, size_t *pt_len)
{
	uint8_t *dk = NULL, *p = NULL;
	size_t n = 0;
	int r = P8V_ERR_INTERNAL;

	if (pt != NULL)
		*pt = NULL;
	if (pt_len != NULL)
		*pt_len = 0;
	if (ring == NULL || env == NULL || pt == NULL || pt_len == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if ((r = check_aad(aad, aad_len)) != 0)
		goto out;
	if ((r = check_envelope(env, env_len, &n)) != 0)
		goto out;
	if ((dk = secmem_alloc_short(DATA_KEY_BYTES)) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	if ((r = unwrap_data_key(ring, aad, aad_len, env, dk)) != 0)
		goto out;
	if ((r = open_payload(dk, aad, aad_len, env, n, &p)) != 0)
		goto out;
	*pt = p;
	*pt_len = n;
	p = NULL;
	r = 0;
 out:
	secmem_free(dk);
	secmem_free(p);
	return r;
}

int
envelope_rewrap(const struct master_keyring *ring,
    const struct master_key *new_mk,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *env, size_t env_len,
    uint8_t **out, size_t *out_len)
{
	uint8_t *dk = NULL, *p = NULL, *renv = NULL;
	size_t n = 0;
	int r = P8V_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (ring == NULL || new_mk == NULL || env == NULL || out == NULL ||
	    out_len == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if ((r = check_aad(aad, aad_len)) != 0)
		goto out;
	if ((r = check_envelope(env, env_len, &n)) != 0)
		goto out;
	if ((dk = secmem_alloc_short(DATA_KEY_BYTES)) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	if ((r = unwrap_data_key(ring, aad, aad_len, env, dk)) != 0)
		goto out;
	/* Verify the payload too: a rotation must not carry a damaged record
	 * forward under a fresh wrap that would hide where it broke. The
	 * plaintext is wiped at once. */
	if ((r = open_payload(dk, aad, aad_len, env, n, &p)) != 0)
		goto out;
	secmem_free(p);
	p = NULL;
	if ((renv = malloc(env_len)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	/* The payload's nonce, ciphertext and tag are kept byte for byte. */
	memcpy(renv + OFF_NONCE, env + OFF_NONCE, env_len - OFF_NONCE);
	if ((r = wrap_data_key(new_mk, aad, aad_len, dk, renv)) != 0)
		goto out;
	*out = renv;
	*out_len = env_len;
	renv = NULL;
	r = 0;
 out:
	secmem_free(dk);
	secmem_free(p);
	free(renv);
	return r;
}
