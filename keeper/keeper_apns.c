/*
 * keeper_apns.c: APNs provider tokens: minting (open, sign, wipe) and the
 * sealed copy of each token that vault/ keeps in the store's cache
 * database, so that a restarted daemon serves the same token instead of
 * minting a new one (which APNs would count as a token update).
 *
 * Persisted blob, under "apns/<team>/<key id>/<fingerprint>" (the format
 * of every state directory since the cache was persisted; unchanged):
 *
 *   off  len  field
 *   0    1    format = 0x01
 *   1    8    iat (u64 big-endian, seconds since the epoch)
 *   9    16   boot id of the mint (/proc/sys/kernel/random/boot_id)
 *   25   8    CLOCK_BOOTTIME of the mint (u64 big-endian, nanoseconds)
 *   33   n    envelope (crypto/envelope.h) of the token's bytes
 *
 *   AAD = "p8vault apns token v1" || 0x00 || store key || 0x00 || bytes 0..33
 *
 * so a blob copied under another key, or with its iat or boot fields
 * changed, fails to open and is dropped. docs/security.md ("Cached APNs
 * tokens") is the reference for outside readers, with the store's header
 * around the blob; test_sign.py decodes an entry from that text.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/codec.h"
#include "common/err.h"
#include "crypto/envelope.h"
#include "crypto/jwt.h"
#include "crypto/secmem.h"
#include "keeper/keeper_internal.h"

#define APNS_BLOB_FORMAT 1
#define APNS_BLOB_HEADER_BYTES (1 + 8 + CLOCK_BOOT_ID_BYTES + 8)
#define APNS_BLOB_AAD_LABEL "p8vault apns token v1"
/* Label, NUL, store key, NUL, blob header. */
#define APNS_BLOB_AAD_BYTES (sizeof(APNS_BLOB_AAD_LABEL) + \
    KEEPER_APNS_KEY_BYTES + APNS_BLOB_HEADER_BYTES)

/* 1 if key is exactly "apns/<team>/<key id>/<64 lowercase hex>". */
static int
cache_key_ok(const char *key)
{
	const size_t plen = strlen(KEEPER_APNS_KEY_PREFIX);
	char id[IDS_APPLE_ID_LEN + 1];
	const char *p;
	size_t i;

	if (key == NULL || strnlen(key, KEEPER_APNS_KEY_BYTES) !=
	    KEEPER_APNS_KEY_BYTES - 1 ||
	    strncmp(key, KEEPER_APNS_KEY_PREFIX, plen) != 0)
		return 0;
	p = key + plen;
	memcpy(id, p, IDS_APPLE_ID_LEN);
	id[IDS_APPLE_ID_LEN] = '\0';
	if (ids_team_id_valid(id) != 0 || p[IDS_APPLE_ID_LEN] != '/')
		return 0;
	p += IDS_APPLE_ID_LEN + 1;
	memcpy(id, p, IDS_APPLE_ID_LEN);
	if (ids_key_id_valid(id) != 0 || p[IDS_APPLE_ID_LEN] != '/')
		return 0;
	p += IDS_APPLE_ID_LEN + 1;
	for (i = 0; i < KEY_RECORD_FINGERPRINT_HEX; i++)
		if (!((p[i] >= '0' && p[i] <= '9') ||
		    (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	return 1;
}

/* The AAD of a blob stored under key (checked by cache_key_ok) with header
 * hdr; returns its length. */
static size_t
blob_aad(const char *key, const uint8_t hdr[APNS_BLOB_HEADER_BYTES],
    uint8_t aad[APNS_BLOB_AAD_BYTES])
{
	size_t o = 0, n;

	memcpy(aad, APNS_BLOB_AAD_LABEL, sizeof(APNS_BLOB_AAD_LABEL));
	o += sizeof(APNS_BLOB_AAD_LABEL); /* with its NUL */
	n = strlen(key) + 1;
	memcpy(aad + o, key, n);
	o += n;
	memcpy(aad + o, hdr, APNS_BLOB_HEADER_BYTES);
	return o + APNS_BLOB_HEADER_BYTES;
}

void
keeper_apns_token_finish(struct keeper_apns_token *t)
{
	if (t == NULL)
		return;
	keeper_token_finish(&t->t);
	free(t->blob);
	memset(t, 0, sizeof(*t));
}

void
keeper_apns_blob_finish(struct keeper_apns_blob *b)
{
	if (b == NULL)
		return;
	secmem_free(b->token); /* wipes */
	memset(b, 0, sizeof(*b));
}

int
keeper_sign_apns(struct keeper *k, const struct keeper_record *rec,
    const uint8_t boot_id[CLOCK_BOOT_ID_BYTES],
    struct keeper_apns_token *out, enum keeper_step *step)
{
	struct keeper_ring *ring = NULL;
	const struct master_key *mk;
	struct keeper_facts f;
	enum keeper_step s = KEEPER_STEP_NONE;
	uint8_t aad[APNS_BLOB_AAD_BYTES];
	uint8_t *scalar = NULL, *env = NULL;
	size_t env_len = 0, aad_len, n;
	json_t *header = NULL, *claims = NULL;
	int64_t now, boot_ns;
	int r = P8V_ERR_INVALID_ARGUMENT;
	if (k != NULL && k->remote != NULL && rec != NULL && boot_id != NULL &&
	    out != NULL)
		return keeper_remote_sign_apns(k->remote, rec, boot_id, out,
		    step);

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (k == NULL || rec == NULL || rec->aad == NULL || rec->env == NULL ||
	    rec->env_len == 0 || boot_id == NULL || out == NULL)
		goto out;
	ring = keeper_ring_get(k);
	if ((r = keeper_open_record(k, ring, rec, &f, &scalar, &s)) != 0)
		goto out;
	r = P8V_ERR_SERVICE_NOT_ALLOWED;
	if ((f.services & KEY_SERVICE_APNS) == 0)
		goto out;
	r = P8V_ERR_NO_MASTER_KEY;
	if ((mk = master_keyring_primary(ring->keys)) == NULL)
		goto out;
	/* Both clocks at the same moment: iat for Apple, boottime for age. */
	now = clock_wall_now();
	boot_ns = clock_boot_now_ns();
	/* Exactly Apple's header and claims, from the record's authenticated
	 * fields; nothing from the caller. */
	r = P8V_ERR_ALLOC;
	if ((header = json_pack("{s:s, s:s}", "alg", "ES256",
	    "kid", f.key_id)) == NULL ||
	    (claims = json_pack("{s:s, s:I}", "iss", f.team_id,
	    "iat", (json_int_t)now)) == NULL)
		goto out;
	if ((r = jwt_sign_es256_scalar(scalar, header, claims,
	    &out->t.token)) != 0)
		goto out;
	secmem_free(scalar);
	scalar = NULL;

	/* The sealed copy, under the key the token is cached under. */
	n = 0;
	memcpy(out->cache_key, KEEPER_APNS_KEY_PREFIX,
	    strlen(KEEPER_APNS_KEY_PREFIX));
	n += strlen(KEEPER_APNS_KEY_PREFIX);
	memcpy(out->cache_key + n, f.team_id, IDS_APPLE_ID_LEN);
	n += IDS_APPLE_ID_LEN;
	out->cache_key[n++] = '/';
	memcpy(out->cache_key + n, f.key_id, IDS_APPLE_ID_LEN);
	n += IDS_APPLE_ID_LEN;
	out->cache_key[n++] = '/';
	memcpy(out->cache_key + n, f.fingerprint, KEY_RECORD_FINGERPRINT_HEX);
	n += KEY_RECORD_FINGERPRINT_HEX;
	out->cache_key[n] = '\0';
	r = P8V_ERR_ALLOC;
	if ((out->blob = malloc(APNS_BLOB_HEADER_BYTES)) == NULL)
		goto out;
	out->blob[0] = APNS_BLOB_FORMAT;
	codec_put_u64(out->blob + 1, (uint64_t)now);
	memcpy(out->blob + 9, boot_id, CLOCK_BOOT_ID_BYTES);
	codec_put_u64(out->blob + 9 + CLOCK_BOOT_ID_BYTES, (uint64_t)boot_ns);
	aad_len = blob_aad(out->cache_key, out->blob, aad);
	if ((r = envelope_seal(mk, aad, aad_len,
	    (const uint8_t *)out->t.token, strlen(out->t.token), &env,
	    &env_len)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	{
		uint8_t *grown = realloc(out->blob,
		    APNS_BLOB_HEADER_BYTES + env_len);

		if (grown == NULL)
			goto out;
		out->blob = grown;
	}
	memcpy(out->blob + APNS_BLOB_HEADER_BYTES, env, env_len);
	out->blob_len = APNS_BLOB_HEADER_BYTES + env_len;
	memcpy(out->mk_id, master_key_id(mk), MASTER_KEY_ID_BYTES);
	memcpy(out->t.key_id, f.key_id, sizeof(out->t.key_id));
	memcpy(out->t.team_id, f.team_id, sizeof(out->t.team_id));
	out->t.issued_at = now;
	out->t.expires_at = now + KEEPER_DEFAULT_LIFETIME_S;
	out->boot_ns = boot_ns;
	r = 0;
 out:
	if (ring != NULL)
		keeper_ring_put(k, ring);
	secmem_free(scalar); /* wipes */
	json_decref(header);
	json_decref(claims);
	free(env);
	if (r != 0)
		keeper_apns_token_finish(out);
	if (step != NULL)
		*step = r == 0 ? KEEPER_STEP_NONE : s;
	return r;
}

int
keeper_apns_blob_open(struct keeper *k, const char *cache_key,
    const uint8_t *blob, size_t len, struct keeper_apns_blob *out)
{
	struct keeper_ring *ring;
	uint8_t aad[APNS_BLOB_AAD_BYTES];
	uint8_t *pt = NULL;
	size_t pt_len = 0, aad_len, i;
	int r = P8V_ERR_INVALID_ARGUMENT;
	if (k != NULL && k->remote != NULL && cache_key != NULL &&
	    blob != NULL && out != NULL)
		return keeper_remote_blob_open(k->remote, cache_key, blob, len,
		    out);

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (k == NULL || cache_key == NULL || blob == NULL || out == NULL)
		goto out;
	r = P8V_ERR_INTEGRITY;
	if (!cache_key_ok(cache_key) || len < APNS_BLOB_HEADER_BYTES ||
	    blob[0] != APNS_BLOB_FORMAT)
		goto out;
	aad_len = blob_aad(cache_key, blob, aad);
	ring = keeper_ring_get(k);
	r = envelope_open(ring->keys, aad, aad_len,
	    blob + APNS_BLOB_HEADER_BYTES, len - APNS_BLOB_HEADER_BYTES,
	    &pt, &pt_len);
	keeper_ring_put(k, ring);
	if (r != 0)
		goto out;
	r = P8V_ERR_INTEGRITY;
	if (pt_len == 0 || pt_len >= JWT_MAX_TOKEN_BYTES)
		goto out;
	for (i = 0; i < pt_len; i++)
		if (pt[i] < 0x21 || pt[i] > 0x7e)
			goto out;
	r = P8V_ERR_SECMEM;
	if ((out->token = secmem_alloc(pt_len + 1)) == NULL)
		goto out;
	memcpy(out->token, pt, pt_len);
	out->token[pt_len] = '\0';
	out->issued_at = (int64_t)codec_get_u64(blob + 1);
	memcpy(out->boot_id, blob + 9, CLOCK_BOOT_ID_BYTES);
	out->boot_ns = (int64_t)codec_get_u64(blob + 9 + CLOCK_BOOT_ID_BYTES);
	r = 0;
 out:
	secmem_free(pt); /* wipes */
	if (r != 0)
		keeper_apns_blob_finish(out);
	return r;
}

int
keeper_apns_blob_master_key_id(const uint8_t *blob, size_t len,
    uint8_t id[MASTER_KEY_ID_BYTES])
{
	if (blob == NULL || id == NULL || len < APNS_BLOB_HEADER_BYTES ||
	    blob[0] != APNS_BLOB_FORMAT)
		return P8V_ERR_INTEGRITY;
	return envelope_master_key_id(blob + APNS_BLOB_HEADER_BYTES,
	    len - APNS_BLOB_HEADER_BYTES, id);
}

int
keeper_apns_blob_rewrap(struct keeper *k, const char *cache_key,
    const uint8_t *blob, size_t len, const uint8_t *target, uint8_t **out,
    size_t *out_len)
{
	struct keeper_ring *ring = NULL;
	const struct master_key *mk;
	uint8_t aad[APNS_BLOB_AAD_BYTES];
	uint8_t *env = NULL, *res = NULL;
	size_t env_len = 0, aad_len;
	int r = P8V_ERR_INVALID_ARGUMENT;
	if (k != NULL && k->remote != NULL && cache_key != NULL &&
	    blob != NULL && out != NULL && out_len != NULL)
		return keeper_remote_blob_rewrap(k->remote, cache_key, blob,
		    len, target, out, out_len);

	if (out != NULL)
		*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (k == NULL || cache_key == NULL || blob == NULL || out == NULL ||
	    out_len == NULL)
		goto out;
	/* The key is part of the AAD: only a well-formed one fits the
	 * buffer (and only a well-formed one was ever sealed). */
	r = P8V_ERR_INTEGRITY;
	if (!cache_key_ok(cache_key) || len < APNS_BLOB_HEADER_BYTES ||
	    blob[0] != APNS_BLOB_FORMAT)
		goto out;
	aad_len = blob_aad(cache_key, blob, aad);
	ring = keeper_ring_get(k);
	if ((mk = keeper_target(ring->keys, target, &r)) == NULL)
		goto out;
	if ((r = envelope_rewrap(ring->keys, mk, aad, aad_len,
	    blob + APNS_BLOB_HEADER_BYTES, len - APNS_BLOB_HEADER_BYTES,
	    &env, &env_len)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((res = malloc(APNS_BLOB_HEADER_BYTES + env_len)) == NULL)
		goto out;
	/* The header (iat, boot id, boot time) is bound by the AAD and
	 * stays as it is. */
	memcpy(res, blob, APNS_BLOB_HEADER_BYTES);
	memcpy(res + APNS_BLOB_HEADER_BYTES, env, env_len);
	*out = res;
	*out_len = APNS_BLOB_HEADER_BYTES + env_len;
	res = NULL;
	r = 0;
 out:
	if (ring != NULL)
		keeper_ring_put(k, ring);
	free(res);
	free(env);
	return r;
}
