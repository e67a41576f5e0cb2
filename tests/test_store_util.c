/* test_store_util.c: see test_store_util.h. */
#include "tests/test_store_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/err.h"
#include "crypto/envelope.h"
#include "crypto/secmem.h"
#include "store/masterkeys.h"

void
tsu_raw_key(uint8_t raw[MASTER_KEY_BYTES], unsigned seed)
{
	uint8_t in[4] = { (uint8_t)(seed >> 24), (uint8_t)(seed >> 16),
	    (uint8_t)(seed >> 8), (uint8_t)seed };

	crypto_hash_sha256(raw, in, sizeof(in));
}

static void
die(const char *what)
{
	fprintf(stderr, "test setup failed: %s\n", what);
	exit(1);
}

struct master_keyring *
tsu_ring(const unsigned *seeds, size_t n)
{
	struct master_keyring *ring = NULL;
	struct master_key *mk = NULL;
	uint8_t raw[MASTER_KEY_BYTES];
	size_t i;

	if (master_keyring_create(&ring) != 0)
		die("master_keyring_create");
	for (i = 0; i < n; i++) {
		tsu_raw_key(raw, seeds[i]);
		if (master_key_create(raw, sizeof(raw), &mk) != 0 ||
		    master_keyring_add(ring, mk) != 0)
			die("master key");
	}
	sodium_memzero(raw, sizeof(raw));
	return ring;
}

void
tsu_key_id(char out[IDS_APPLE_ID_LEN + 1], unsigned n)
{
	static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	int i;

	out[0] = 'K';
	for (i = IDS_APPLE_ID_LEN - 1; i >= 1; i--, n /= 36)
		out[i] = digits[n % 36];
	out[IDS_APPLE_ID_LEN] = '\0';
}

void
tsu_payload(uint8_t out[TSU_PAYLOAD_BYTES], unsigned n)
{
	uint8_t in[8] = { 'p', 'a', 'y', 'l', (uint8_t)(n >> 24),
	    (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };

	crypto_hash_sha256(out, in, sizeof(in));
}

void
tsu_record(struct key_record *rec, const char *app, unsigned n)
{
	static const char *const topics[] = {
		"com.example.app", "com.example.app.voip",
		"com.example.app.complication",
	};
	uint8_t h[32];
	size_t i;

	memset(rec, 0, sizeof(*rec));
	snprintf(rec->app, sizeof(rec->app), "%s", app);
	tsu_key_id(rec->key_id, n);
	memcpy(rec->team_id, "TEAM4567AB", IDS_APPLE_ID_LEN + 1);
	rec->environment = (enum key_env)(n % 3);
	rec->services = KEY_SERVICE_APNS |
	    (n % 2 ? KEY_SERVICE_SIGN_IN_WITH_APPLE | KEY_SERVICE_MAPS : 0);
	if (key_record_set_topics(rec, topics, 1 + n % 3) != 0)
		die("topics");
	rec->state = n % 4 == 1 ? KEY_STATE_STANDBY : KEY_STATE_ACTIVE;
	tsu_payload(h, n ^ 0x5a5a5a5au);
	for (i = 0; i < 32; i++)
		snprintf(rec->fingerprint + 2 * i, 3, "%02x", h[i]);
	rec->public_point[0] = 0x04;
	for (i = 1; i < KEY_RECORD_PUBLIC_BYTES; i++)
		rec->public_point[i] = (uint8_t)(h[i % 32] + i);
	rec->created_at = 1790000000 + (int64_t)n;
	snprintf(rec->created_by, sizeof(rec->created_by), "%s",
	    n % 2 ? "cli" : "tok_portal-1");
	rec->updated_at = rec->created_at + 60;
	rec->version = 1 + n % 5;
}

int
tsu_seal(struct key_record *rec, const struct master_key *mk,
    const uint8_t *pt, size_t pt_len)
{
	uint8_t *aad = NULL, *env = NULL;
	size_t aad_len, env_len;
	int r;

	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0)
		return r;
	r = envelope_seal(mk, aad, aad_len, pt, pt_len, &env, &env_len);
	free(aad);
	if (r != 0)
		return r;
	free(rec->envelope);
	rec->envelope = env;
	rec->envelope_len = env_len;
	return 0;
}

int
tsu_open(const struct key_record *rec, const struct master_keyring *ring,
    const uint8_t *want)
{
	uint8_t *aad = NULL, *pt = NULL;
	size_t aad_len, pt_len;
	int r;

	if (rec->envelope == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0)
		return r;
	r = envelope_open(ring, aad, aad_len, rec->envelope, rec->envelope_len,
	    &pt, &pt_len);
	free(aad);
	if (r != 0)
		return r;
	if (want != NULL && (pt_len != TSU_PAYLOAD_BYTES ||
	    !secmem_equal(pt, want, TSU_PAYLOAD_BYTES)))
		r = P8V_ERR_INTEGRITY;
	secmem_free(pt);
	return r;
}

struct store *
tsu_store(const char *dir, uint64_t initial_map)
{
	struct store_options o = { .initial_map_bytes = initial_map };
	struct store *s = NULL;
	int r;

	if ((r = store_open(dir, &o, &s)) != 0) {
		fprintf(stderr, "store_open(%s): %s\n", dir, p8v_errname(r));
		exit(1);
	}
	return s;
}

int
tsu_keys_check(struct store *s, const struct master_keyring *ring)
{
	struct store_master_key_check keys[MASTER_KEYRING_MAX];
	size_t i, n = ring != NULL ? master_keyring_count(ring) : 0;

	memset(keys, 0, sizeof(keys));
	for (i = 0; i < n && i < MASTER_KEYRING_MAX; i++) {
		const struct master_key *mk = master_keyring_get(ring, i);

		memcpy(keys[i].id_hex, master_key_id_hex(mk), MASTER_KEY_ID_HEX);
		memcpy(keys[i].check, master_key_check(mk),
		    MASTER_KEY_CHECK_BYTES);
	}
	return store_master_keys_check(s, ring != NULL ? keys : NULL, n);
}
