/*
 * apns.c: APNs provider tokens: choosing the key, minting (unseal, sign,
 * wipe), and the sealed copy of each token in the store's cache database
 * that lets a restarted daemon serve the same token instead of minting a
 * new one (which APNs would count as a token update).
 *
 * Persisted blob, under "apns/<team>/<key id>/<fingerprint>":
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
 * changed, fails to open and is dropped.
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/jwt.h"
#include "crypto/secmem.h"
#include "store/audit.h"
#include "store/cache.h"
#include "vault/tokcache.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"

#define APNS_BLOB_FORMAT 1
#define APNS_BLOB_HEADER_BYTES (1 + 8 + VAULT_BOOT_ID_BYTES + 8)
#define APNS_BLOB_AAD_LABEL "p8vault apns token v1"
/* Label, NUL, store key, NUL, blob header. */
#define APNS_BLOB_AAD_BYTES (sizeof(APNS_BLOB_AAD_LABEL) + \
    TOKCACHE_KEY_BYTES + APNS_BLOB_HEADER_BYTES)

static const char *const reject_names[] = {
	[VAULT_REJECT_NONE] = "none",
	[VAULT_REJECT_EXPIRED] = "ExpiredProviderToken",
	[VAULT_REJECT_INVALID] = "InvalidProviderToken",
};

/* The AAD of a blob stored under key with header hdr; returns its length. */
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

/* --- minting --- */

struct mint {
	struct vault *v;
	/* the key the token is cached under, and how it was found */
	const char *app;
	enum key_env env;
	const struct tokcache_id *id;
	/* its record, read by the mint (a cached token needs none of it),
	 * into the caller's struct: set up only if a mint runs */
	struct key_record *loaded;
	int tried;                      /* *loaded is set up: free it */
	const struct key_record *rec;   /* loaded once read */
	const char *actor;
	/* for the persisting transaction */
	const char *key;
	const uint8_t *blob;
	size_t blob_len;
	int64_t issued_at;
	enum vault_mint_reason why;
};

/*
 * Store the sealed token and the audit event in one transaction. The
 * record is read again: a key revoked (or replaced) since it was chosen
 * must not get a token, and LMDB serialises this against the revocation.
 */
static int
persist_txn(struct store_txn *txn, void *arg)
{
	struct mint *m = arg;
	struct key_record cur = { 0 };
	json_t *ev = NULL;
	int r;

	r = key_record_get(txn, m->rec->app, m->rec->key_id, &cur);
	if (r == P8V_ERR_NOT_FOUND)
		r = P8V_ERR_KEY_NOT_FOUND;
	if (r != 0)
		goto out;
	r = P8V_ERR_KEY_REVOKED;
	if (cur.state == KEY_STATE_REVOKED)
		goto out;
	r = P8V_ERR_KEY_NOT_FOUND;
	if (strcmp(cur.fingerprint, m->rec->fingerprint) != 0 ||
	    strcmp(cur.team_id, m->rec->team_id) != 0)
		goto out;
	if ((r = store_cache_put(txn, m->key,
	    m->issued_at + VAULT_APNS_LIFETIME_S, m->blob, m->blob_len)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((ev = vault_audit_event(m->issued_at, m->actor, "apns.mint",
	    m->rec, "ok")) == NULL ||
	    json_object_set_new(ev, "reason",
	    json_string(vault_mint_reason_name(m->why))) != 0 ||
	    json_object_set_new(ev, "issued_at",
	    json_integer((json_int_t)m->issued_at)) != 0)
		goto out;
	r = store_audit_append(txn, ev, NULL);
 out:
	json_decref(ev);
	key_record_free(&cur);
	return r;
}

/* tokcache_mint_fn: sign a new token for m->rec, persist it, audit it. */
static int
mint_token(void *arg, enum vault_mint_reason why, struct tokcache_minted *out)
{
	struct mint *m = arg;
	struct vault_ring *ring = NULL;
	const struct master_key *mk;
	struct tokcache_id id;
	char key[TOKCACHE_KEY_BYTES];
	int found = 0;
	uint8_t aad[APNS_BLOB_AAD_BYTES];
	uint8_t *env = NULL, *blob = NULL;
	size_t env_len = 0, aad_len;
	json_t *header = NULL, *claims = NULL;
	char *token = NULL;
	int64_t now, boot_ns;
	int r = P8V_ERR_ALLOC;

	memset(out, 0, sizeof(*out));
	/* The record, vouched for: still the key the token is filed under
	 * (else a commit moved the app to another key in between: refused as
	 * persist_txn refuses a key replaced during the mint). */
	if (m->tried)
		key_record_free(m->loaded);
	m->rec = NULL;
	m->tried = 1;
	if ((r = vault_find_active_vouched(m->v, m->app, m->env,
	    KEY_SERVICE_APNS, m->loaded, &found)) != 0)
		goto out;
	m->rec = m->loaded;
	tokcache_id_of(m->rec, &id);
	r = P8V_ERR_KEY_NOT_FOUND;
	if (strcmp(id.fingerprint, m->id->fingerprint) != 0 ||
	    strcmp(id.key_id, m->id->key_id) != 0 ||
	    strcmp(id.team_id, m->id->team_id) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	/* Both clocks at the same moment: iat for Apple, boottime for age. */
	now = tokcache_wall_now();
	boot_ns = tokcache_boot_now_ns();
	/* Exactly Apple's header and claims, from the record's validated
	 * fields; nothing from the caller. */
	if ((header = json_pack("{s:s, s:s}", "alg", "ES256",
	    "kid", m->rec->key_id)) == NULL ||
	    (claims = json_pack("{s:s, s:I}", "iss", m->rec->team_id,
	    "iat", (json_int_t)now)) == NULL)
		goto out;
	if ((r = vault_sign_record(m->v, m->rec, header, claims, &token)) != 0)
		goto out;

	r = P8V_ERR_NO_MASTER_KEY;
	ring = vault_ring_get(m->v);
	if ((mk = master_keyring_primary(ring->keys)) == NULL)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((blob = malloc(APNS_BLOB_HEADER_BYTES)) == NULL)
		goto out;
	blob[0] = APNS_BLOB_FORMAT;
	store_put_u64(blob + 1, (uint64_t)now);
	memcpy(blob + 9, m->v->boot_id, VAULT_BOOT_ID_BYTES);
	store_put_u64(blob + 9 + VAULT_BOOT_ID_BYTES, (uint64_t)boot_ns);
	tokcache_key(&id, key);
	aad_len = blob_aad(key, blob, aad);
	if ((r = envelope_seal(mk, aad, aad_len, (const uint8_t *)token,
	    strlen(token), &env, &env_len)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	{
		uint8_t *grown = realloc(blob, APNS_BLOB_HEADER_BYTES + env_len);

		if (grown == NULL)
			goto out;
		blob = grown;
	}
	memcpy(blob + APNS_BLOB_HEADER_BYTES, env, env_len);

	m->key = key;
	m->blob = blob;
	m->blob_len = APNS_BLOB_HEADER_BYTES + env_len;
	m->issued_at = now;
	m->why = why;
	/* No token leaves the vault unless its mint is on record. */
	if ((r = store_write(m->v->store, persist_txn, m)) != 0)
		goto out;
	out->token = token;
	token = NULL;
	out->issued_at = now;
	out->boot_ns = boot_ns;
	r = 0;
 out:
	m->key = NULL;
	m->blob = NULL;
	vault_ring_put(m->v, ring);
	if (token != NULL) {
		secmem_wipe(token, strlen(token));
		free(token);
	}
	json_decref(header);
	json_decref(claims);
	free(env);
	free(blob);
	return r;
}

int
vault_apns_token(struct vault *v, const char *app, enum key_env env,
    const char *rejected_token, enum vault_reject_reason reason,
    const char *actor, struct vault_token *out)
{
	struct tokcache_id id;
	struct key_record loaded;       /* for a mint only: not set up here */
	struct mint m;
	enum vault_mint_reason why = VAULT_MINT_COLD;
	int found = 0, r = P8V_ERR_INVALID_ARGUMENT;

	memset(&m, 0, sizeof(m));
	m.loaded = &loaded;
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || out == NULL || (unsigned int)env > KEY_ENV_BOTH ||
	    (unsigned int)reason > VAULT_REJECT_INVALID ||
	    (rejected_token == NULL) != (reason == VAULT_REJECT_NONE) ||
	    vault_actor_valid(actor) != 0)
		goto out;
	/* The CLI may change keys from another process while the daemon
	 * runs: the answer is read from the store, or from the cache while
	 * no commit (from any process) has happened since it was read. */
	/* A cached token is handed out without signing: the record it is
	 * handed out for must still open under its own identity. */
	if ((r = vault_find_active_ids(v, app, env, KEY_SERVICE_APNS, &id,
	    &found)) != 0)
		goto out;
	if (rejected_token != NULL) {
		VAULT_COUNT(v->apns_rejections);
		log_fields(LOG_LEVEL_WARN, "apns_token_rejected",
		    json_pack("{s:s, s:s, s:s, s:s}", "app", app,
		    "key_id", id.key_id, "team_id", id.team_id,
		    "reason", reject_names[reason]),
		    "APNs refused a provider token of key %s (team %s): %s",
		    id.key_id, id.team_id, reject_names[reason]);
	}
	m.v = v;
	m.app = app;
	m.env = env;
	m.id = &id;
	m.actor = actor;
	if ((r = tokcache_get(v->tokens, &id, rejected_token, reason,
	    mint_token, &m, out, &why)) != 0)
		goto out;
	if (out->minted) {
		VAULT_COUNT(v->apns_mints[why]);
		log_fields(LOG_LEVEL_INFO, "apns_token_minted",
		    json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "app", app,
		    "key_id", id.key_id, "team_id", id.team_id,
		    "fingerprint", id.fingerprint,
		    "reason", vault_mint_reason_name(why),
		    "issued_at", (json_int_t)out->issued_at),
		    "new APNs provider token for key %s (team %s): %s",
		    id.key_id, id.team_id, vault_mint_reason_name(why));
	} else {
		VAULT_COUNT(v->apns_cache_hits);
	}
	r = 0;
 out:
	if (r != 0 && found)
		VAULT_COUNT(v->apns_failures);
	if (m.tried)
		key_record_free(&loaded);
	return r;
}

/* --- revocation --- */

int
vault_apns_forget_txn(struct store_txn *txn, const struct key_record *rec)
{
	struct tokcache_id id;
	char key[TOKCACHE_KEY_BYTES];
	int r;

	tokcache_id_of(rec, &id);
	tokcache_key(&id, key);
	r = store_cache_delete(txn, key);
	return r == P8V_ERR_NOT_FOUND ? 0 : r;
}

void
vault_apns_forget_memory(struct vault *v, const struct key_record *rec)
{
	struct tokcache_id id;

	tokcache_id_of(rec, &id);
	tokcache_invalidate(v->tokens, &id);
}

/* --- master-key rotation (vault/rotate.c) --- */

int
vault_apns_blob_master_key_id(const uint8_t *blob, size_t len,
    uint8_t id[MASTER_KEY_ID_BYTES])
{
	if (blob == NULL || id == NULL || len < APNS_BLOB_HEADER_BYTES ||
	    blob[0] != APNS_BLOB_FORMAT)
		return P8V_ERR_INTEGRITY;
	return envelope_master_key_id(blob + APNS_BLOB_HEADER_BYTES,
	    len - APNS_BLOB_HEADER_BYTES, id);
}

int
vault_apns_blob_rewrap(const struct master_keyring *ring,
    const struct master_key *new_mk, const char *key, const uint8_t *blob,
    size_t len, uint8_t **out, size_t *out_len)
{
	struct tokcache_id id;
	uint8_t aad[APNS_BLOB_AAD_BYTES];
	uint8_t *env = NULL, *res = NULL;
	size_t env_len = 0, aad_len;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (ring == NULL || new_mk == NULL || key == NULL || blob == NULL ||
	    out == NULL || out_len == NULL)
		goto out;
	/* The key is part of the AAD: only a well-formed one fits the
	 * buffer (and only a well-formed one was ever sealed). */
	r = P8V_ERR_INTEGRITY;
	if (tokcache_parse_key(key, &id) != 0 ||
	    len < APNS_BLOB_HEADER_BYTES || blob[0] != APNS_BLOB_FORMAT)
		goto out;
	aad_len = blob_aad(key, blob, aad);
	if ((r = envelope_rewrap(ring, new_mk, aad, aad_len,
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
	free(res);
	free(env);
	return r;
}

/* --- loading at start-up --- */

struct loaded {
	char key[CACHE_KEY_MAX + 1];
	uint8_t *blob;
	size_t len;
	int drop;
};

struct load {
	struct loaded *items;
	size_t n, cap;
};

static void
load_free(struct load *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->items[i].blob);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

static int
load_one(const char *key, int64_t expires_at, const uint8_t *blob,
    size_t len, void *arg)
{
	struct load *l = arg;
	struct loaded *it, *grown;
	size_t cap;

	(void)expires_at; /* the blob's own iat, bound by the AAD, decides */
	if (strncmp(key, TOKCACHE_KEY_PREFIX, strlen(TOKCACHE_KEY_PREFIX)) != 0)
		return 0; /* another kind of cached token */
	if (strlen(key) > CACHE_KEY_MAX)
		return P8V_ERR_INTEGRITY;
	if (l->n == l->cap) {
		cap = l->cap == 0 ? 16 : l->cap * 2;
		if ((grown = realloc(l->items, cap * sizeof(*grown))) == NULL)
			return P8V_ERR_ALLOC;
		l->items = grown;
		l->cap = cap;
	}
	it = &l->items[l->n];
	memset(it, 0, sizeof(*it));
	if ((it->blob = malloc(len > 0 ? len : 1)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(it->key, key, strlen(key) + 1);
	if (len > 0)
		memcpy(it->blob, blob, len);
	it->len = len;
	l->n++;
	return 0;
}

static int
load_txn(struct store_txn *txn, void *arg)
{
	load_free(arg);
	return store_cache_foreach(txn, load_one, arg);
}

static int
delete_txn(struct store_txn *txn, void *arg)
{
	struct load *l = arg;
	size_t i;
	int r;

	for (i = 0; i < l->n; i++) {
		if (!l->items[i].drop)
			continue;
		r = store_cache_delete(txn, l->items[i].key);
		if (r != 0 && r != P8V_ERR_NOT_FOUND)
			return r;
	}
	return 0;
}

/*
 * Decide about one persisted token: 0 to keep (seeded into the cache),
 * 1 to drop. Same boot: its age is CLOCK_BOOTTIME now minus at mint.
 * Another boot (or an unknown boot id): CLOCK_BOOTTIME restarted, so the
 * wall clock is all there is: now - iat; negative (the clock went back, or
 * the blob is from the future) or at least the reuse period: drop.
 */
static int
load_token(struct vault *v, const struct loaded *it)
{
	static const uint8_t unknown[VAULT_BOOT_ID_BYTES];
	struct vault_ring *ring;
	struct tokcache_id id;
	uint8_t aad[APNS_BLOB_AAD_BYTES];
	uint8_t *pt = NULL;
	char *token = NULL;
	size_t pt_len = 0, aad_len, i;
	int64_t iat, boot_ns, now_boot, age_ns;
	const char *why = "malformed";
	int r, drop = 1;

	if (tokcache_parse_key(it->key, &id) != 0 ||
	    it->len < APNS_BLOB_HEADER_BYTES || it->blob[0] != APNS_BLOB_FORMAT)
		goto out;
	aad_len = blob_aad(it->key, it->blob, aad);
	ring = vault_ring_get(v);
	r = envelope_open(ring->keys, aad, aad_len,
	    it->blob + APNS_BLOB_HEADER_BYTES,
	    it->len - APNS_BLOB_HEADER_BYTES, &pt, &pt_len);
	vault_ring_put(v, ring);
	if (r != 0) {
		why = p8v_errname(r);
		goto out;
	}
	if (pt_len == 0 || pt_len >= JWT_MAX_TOKEN_BYTES)
		goto out;
	for (i = 0; i < pt_len; i++)
		if (pt[i] < 0x21 || pt[i] > 0x7e)
			goto out;
	iat = (int64_t)store_get_u64(it->blob + 1);
	boot_ns = (int64_t)store_get_u64(it->blob + 9 + VAULT_BOOT_ID_BYTES);
	now_boot = tokcache_boot_now_ns();
	if (memcmp(v->boot_id, unknown, VAULT_BOOT_ID_BYTES) != 0 &&
	    memcmp(it->blob + 9, v->boot_id, VAULT_BOOT_ID_BYTES) == 0) {
		age_ns = now_boot - boot_ns;
	} else {
		int64_t age_s = tokcache_wall_now() - iat;

		if (age_s < 0 || age_s > v->apns_reuse_s) {
			why = "stale";
			goto out;
		}
		age_ns = age_s * TOKCACHE_NS_PER_S;
		boot_ns = now_boot - age_ns;
	}
	if (age_ns < 0 || age_ns >= v->apns_reuse_s * TOKCACHE_NS_PER_S) {
		why = "stale";
		goto out;
	}
	why = "no memory";
	if ((token = secmem_alloc(pt_len + 1)) == NULL)
		goto out;
	memcpy(token, pt, pt_len);
	token[pt_len] = '\0';
	if (tokcache_seed(v->tokens, &id, token, iat, boot_ns) != 0)
		goto out;
	drop = 0;
 out:
	if (drop && strcmp(why, "stale") != 0)
		log_fields(LOG_LEVEL_WARN, "apns_cache_dropped",
		    json_pack("{s:s, s:s}", "entry", it->key, "reason", why),
		    "persisted APNs token %s dropped: %s", it->key, why);
	secmem_free(token);
	secmem_free(pt);
	return drop;
}

int
vault_apns_load(struct vault *v)
{
	struct load l = { 0 };
	size_t i, kept = 0, dropped = 0;
	int r;

	if ((r = store_read(v->store, load_txn, &l)) != 0)
		goto out;
	for (i = 0; i < l.n; i++) {
		l.items[i].drop = load_token(v, &l.items[i]);
		if (l.items[i].drop)
			dropped++;
		else
			kept++;
	}
	if (dropped > 0 && (r = store_write(v->store, delete_txn, &l)) != 0)
		goto out;
	if (l.n > 0)
		log_infof("apns_cache_loaded", "APNs token cache: %zu kept, "
		    "%zu dropped", kept, dropped);
	r = 0;
 out:
	load_free(&l);
	return r;
}
