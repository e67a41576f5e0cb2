/*
 * apns.c: APNs provider tokens: choosing the key, having the keeper mint
 * one (it signs and seals the token's persisted copy: the blob format is
 * in keeper/keeper_apns.c), storing that copy in the store's cache
 * database, and loading the copies at start-up, so that a restarted daemon
 * serves the same token instead of minting a new one (which APNs would
 * count as a token update).
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/jwt.h"
#include "crypto/secmem.h"
#include "keeper/keeper.h"
#include "store/audit.h"
#include "store/cache.h"
#include "vault/tokcache.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"

_Static_assert(TOKCACHE_KEY_BYTES == KEEPER_APNS_KEY_BYTES,
    "the keeper files a token's copy where the cache looks for it");

static const char *const reject_names[] = {
	[VAULT_REJECT_NONE] = "none",
	[VAULT_REJECT_EXPIRED] = "ExpiredProviderToken",
	[VAULT_REJECT_INVALID] = "InvalidProviderToken",
};

/* --- minting --- */

/* The fleet's mint lock (store_lock_take): its lease, kept alive while
 * the mint runs; a node that dies mid-mint holds it this long at most. */
#define VAULT_MINT_LOCK_TTL_S 5
/* A waiter looks for the other node's token this often (and on every
 * change of the store). */
#define VAULT_MINT_LOCK_POLL_MS 100
/* A waiter gives up (503) after this long: a dead holder's lease has
 * ended twice over by then. */
#define VAULT_MINT_LOCK_WAIT_MS (3 * VAULT_MINT_LOCK_TTL_S * 1000)

struct mint {
	struct vault *v;
	/* the key the token is cached under, and how it was found */
	const char *app;
	enum key_env env;
	uint32_t service;       /* KEY_SERVICE_* bits the key must have */
	const struct tokcache_id *id;
	/* its record, read by the mint (a cached token needs none of it),
	 * into the caller's struct: set up only if a mint runs */
	struct key_record *loaded;
	int tried;                      /* *loaded is set up: free it */
	/* A given record (vault_apns_token_key) instead of the app's
	 * active key: the caller read it and had it vouched for. */
	const struct key_record *fixed;
	/* The "mint" adopted a token another process (the CLI's key check,
	 * or another daemon on the same store) persisted: not a mint. */
	int adopted;
	const struct key_record *rec;   /* loaded once read */
	const char *actor;
	/* for the persisting transaction */
	const struct keeper_apns_token *minted;
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
	if ((r = store_cache_put(txn, m->minted->cache_key,
	    m->minted->t.issued_at + VAULT_APNS_LIFETIME_S, m->minted->blob,
	    m->minted->blob_len)) != 0 ||
	    (r = vault_count_wraps(txn, m->minted->mk_id, 1)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((ev = vault_audit_event(m->minted->t.issued_at, m->actor,
	    "apns.mint", m->rec, "ok")) == NULL ||
	    json_object_set_new(ev, "reason",
	    json_string(vault_mint_reason_name(m->why))) != 0 ||
	    json_object_set_new(ev, "issued_at",
	    json_integer((json_int_t)m->minted->t.issued_at)) != 0)
		goto out;
	if ((m->service & KEY_SERVICE_DEVICECHECK) != 0 &&
	    json_object_set_new(ev, "service", json_string("devicecheck")) != 0)
		goto out;
	r = store_audit_append(txn, ev, NULL);
 out:
	json_decref(ev);
	key_record_free(&cur);
	return r;
}

struct adopt {
	const char *key;
	uint8_t *blob;
	size_t len;
};

static int
adopt_txn(struct store_txn *txn, void *arg)
{
	struct adopt *a = arg;
	int64_t expires_at;

	free(a->blob);
	a->blob = NULL;
	return store_cache_get(txn, a->key, &expires_at, &a->blob, &a->len);
}

/*
 * A token of this key that another process persisted since this one
 * loaded the cache (the CLI's `keys check` beside a running daemon): take
 * it instead of minting a second one, which APNs would count as a token
 * update of the team. Only when no rejection asked for the mint and the
 * token is younger than the reuse period. 0 (out filled) or non-zero
 * (mint).
 */
static int
adopt_persisted(struct mint *m, enum vault_mint_reason why, const char *key,
    struct tokcache_minted *out)
{
	static const uint8_t unknown[VAULT_BOOT_ID_BYTES];
	struct keeper_apns_blob b;
	struct adopt a = { key, NULL, 0 };
	int64_t age_ns, now_boot;
	int r = P8V_ERR_NOT_FOUND;

	memset(&b, 0, sizeof(b));
	if (why == VAULT_MINT_REJECTED_EXPIRED ||
	    why == VAULT_MINT_REJECTED_INVALID)
		goto out;
	if ((r = store_read(m->v->store, adopt_txn, &a)) != 0 ||
	    (r = keeper_apns_blob_open(m->v->keeper, key, a.blob, a.len,
	    &b)) != 0)
		goto out;
	/* Aged as load_token ages a token at start-up: on CLOCK_BOOTTIME
	 * when minted in this boot, else by the wall clock. */
	now_boot = clock_boot_now_ns();
	if (memcmp(m->v->boot_id, unknown, VAULT_BOOT_ID_BYTES) != 0 &&
	    memcmp(b.boot_id, m->v->boot_id, VAULT_BOOT_ID_BYTES) == 0)
		age_ns = now_boot - b.boot_ns;
	else
		age_ns = (clock_wall_now() - b.issued_at) * TOKCACHE_NS_PER_S;
	r = P8V_ERR_NOT_FOUND;
	if (age_ns < 0 || age_ns >= m->v->apns_reuse_s * TOKCACHE_NS_PER_S)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((out->token = strdup(b.token)) == NULL)
		goto out;
	out->issued_at = b.issued_at;
	out->boot_ns = now_boot - age_ns;
	r = 0;
 out:
	keeper_apns_blob_finish(&b);
	free(a.blob);
	return r;
}

/*
 * The fleet's mint lock of one cache key ("mint/apns/<team>/<key id>/
 * <fingerprint>"): taken, or another node's token adopted while waiting
 * for it (m->adopted set, out filled, *lock NULL). A holder that dies
 * loses the lock when its lease ends (VAULT_MINT_LOCK_TTL_S) and a
 * waiter takes it. Without a lock in the store (LMDB) granted at once.
 * 0, P8V_ERR_STORE_UNAVAILABLE (etcd unreachable, or still held after
 * VAULT_MINT_LOCK_WAIT_MS) or another store error.
 */
static int
take_mint_lock(struct mint *m, enum vault_mint_reason why, const char *key,
    struct tokcache_minted *out, struct store_lock **lock)
{
	char name[8 + TOKCACHE_KEY_BYTES];
	struct timespec t0, now;
	uint64_t gen = 0;
	int r, waited = 0;

	*lock = NULL;
	snprintf(name, sizeof(name), "mint/%s", key);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		(void)store_generation(m->v->store, &gen);
		r = store_lock_take(m->v->store, name, VAULT_MINT_LOCK_TTL_S,
		    lock);
		if (r == 0) {
			/* Minted and released between our look and our
			 * lock: take that one. */
			if (*lock != NULL && adopt_persisted(m, why, key,
			    out) == 0) {
				store_lock_release(m->v->store, *lock);
				*lock = NULL;
				m->adopted = 1;
			}
			return 0;
		}
		if (r != P8V_ERR_BUSY)
			return r;
		if (!waited++)
			VAULT_COUNT(m->v->apns_mint_lock_waits);
		(void)store_wait_change(m->v->store, gen,
		    VAULT_MINT_LOCK_POLL_MS);
		if (adopt_persisted(m, why, key, out) == 0) {
			m->adopted = 1;
			return 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec -
		    t0.tv_nsec) / 1000000 > VAULT_MINT_LOCK_WAIT_MS) {
			log_warnf("store_unavailable", "the mint lock %s is "
			    "still held elsewhere", name);
			return P8V_ERR_STORE_UNAVAILABLE;
		}
	}
}

/* tokcache_mint_fn: have the keeper sign a new token for m->rec and seal
 * its copy; persist it, audit it. */
static int
mint_token(void *arg, enum vault_mint_reason why, struct tokcache_minted *out)
{
	struct mint *m = arg;
	struct keeper_apns_token kt;
	struct keeper_record kr;
	enum keeper_step step = KEEPER_STEP_NONE;
	struct tokcache_id id;
	char key[TOKCACHE_KEY_BYTES];
	uint8_t *aad = NULL;
	size_t aad_len = 0;
	struct store_lock *lock = NULL;
	int found = 0;
	int r = P8V_ERR_ALLOC;

	memset(out, 0, sizeof(*out));
	memset(&kt, 0, sizeof(kt));
	if (m->fixed != NULL) {
		/* persist_txn reads it again: a revocation since still wins. */
		m->rec = m->fixed;
		goto sign;
	}
	/* The record, vouched for: still the key the token is filed under
	 * (else a commit moved the app to another key in between: refused as
	 * persist_txn refuses a key replaced during the mint). */
	if (m->tried)
		key_record_free(m->loaded);
	m->rec = NULL;
	m->tried = 1;
	if ((r = vault_find_active_vouched(m->v, m->app, m->env,
	    m->service, m->loaded, &found)) != 0)
		goto out;
	m->rec = m->loaded;
 sign:
	tokcache_id_of(m->rec, &id);
	r = P8V_ERR_KEY_NOT_FOUND;
	if (strcmp(id.fingerprint, m->id->fingerprint) != 0 ||
	    strcmp(id.key_id, m->id->key_id) != 0 ||
	    strcmp(id.team_id, m->id->team_id) != 0)
		goto out;
	tokcache_key(&id, key);
	m->adopted = 0;
	if (adopt_persisted(m, why, key, out) == 0) {
		m->adopted = 1;
		r = 0;
		goto out;
	}
	/* One mint for the whole fleet: the store's lock (etcd), or the
	 * token another node minted while this one waited for it. */
	if ((r = take_mint_lock(m, why, key, out, &lock)) != 0)
		goto out;
	if (m->adopted)
		goto out;
	if ((r = key_record_aad(m->rec, &aad, &aad_len)) != 0) {
		vault_log_unusable(m->rec, "aad", r);
		goto out;
	}
	/* The keeper builds exactly Apple's header and claims from the
	 * record's authenticated fields and its own clock; nothing from the
	 * caller. */
	vault_keeper_record(m->rec, aad, aad_len, &kr);
	if ((r = keeper_sign_apns(m->v->keeper, &kr, m->v->boot_id, &kt,
	    &step)) != 0) {
		if (step != KEEPER_STEP_NONE)
			vault_log_unusable(m->rec, keeper_step_name(step), r);
		goto out;
	}
	/* Filed where the cache files it: the same record, the same key. */
	tokcache_key(&id, key);
	r = P8V_ERR_INTEGRITY;
	if (strcmp(key, kt.cache_key) != 0)
		goto out;
	m->minted = &kt;
	m->why = why;
	/* No token leaves the vault unless its mint is on record. A full
	 * disk does not stop renewals: a mint may use the room reserved
	 * for it, which uploads cannot (store/reserve.h). */
	if ((r = store_write_reserved(m->v->store, persist_txn, m)) != 0)
		goto out;
	out->token = kt.t.token;
	kt.t.token = NULL;
	out->issued_at = kt.t.issued_at;
	out->boot_ns = kt.boot_ns;
	r = 0;
 out:
	store_lock_release(m->v->store, lock);
	m->minted = NULL;
	keeper_apns_token_finish(&kt);
	free(aad);
	return r;
}

static void
adopted_log(const char *app, const struct tokcache_id *id)
{
	log_fields(LOG_LEVEL_INFO, "apns_token_adopted",
	    json_pack("{s:s, s:s, s:s}", "app", app, "key_id", id->key_id,
	    "team_id", id->team_id), "APNs provider token for key %s (team "
	    "%s) taken from the store (persisted by another process)",
	    id->key_id, id->team_id);
}

/* What a token request came to, counted and logged: a mint (why), a
 * token another process persisted (adopted), or the cached token. */
static void
count_outcome(struct vault *v, const char *app, const struct tokcache_id *id,
    const struct vault_token *out, int adopted, enum vault_mint_reason why)
{
	if (out->minted && adopted) {
		adopted_log(app, id);
	} else if (out->minted) {
		VAULT_COUNT(v->apns_mints[why]);
		log_fields(LOG_LEVEL_INFO, "apns_token_minted",
		    json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "app", app,
		    "key_id", id->key_id, "team_id", id->team_id,
		    "fingerprint", id->fingerprint,
		    "reason", vault_mint_reason_name(why),
		    "issued_at", (json_int_t)out->issued_at),
		    "new APNs provider token for key %s (team %s): %s",
		    id->key_id, id->team_id, vault_mint_reason_name(why));
	} else {
		VAULT_COUNT(v->apns_cache_hits);
	}
}

/*
 * APNs refused the current token (not an older one) as invalid: the
 * signature is ours, so the usual causes are on the key's side: the key
 * revoked at Apple, Key ID and Team ID swapped or not a pair. A new token
 * rarely helps (the 20-minute rule stays), so the log names the key for an
 * operator, whether or not this report minted. The rejected token is the
 * current one when this report minted a new one for it, or, inside 20
 * minutes, when it is the token handed back.
 */
static void
warn_invalid(const char *app, const struct tokcache_id *id,
    const char *rejected, const struct vault_token *out,
    enum vault_mint_reason why)
{
	size_t n = strnlen(rejected, JWT_MAX_TOKEN_BYTES + 1);
	int renewed = out->minted && why == VAULT_MINT_REJECTED_INVALID;

	if (!renewed && (out->minted || n != strlen(out->token) ||
	    !secmem_equal(rejected, out->token, n)))
		return;
	log_fields(LOG_LEVEL_WARN, "apns_token_invalid",
	    json_pack("{s:s, s:s, s:s, s:s, s:b}", "app", app,
	    "key_id", id->key_id, "team_id", id->team_id,
	    "fingerprint", id->fingerprint, "renewed", renewed),
	    "APNs refused the current token of key %s (team %s, fingerprint "
	    "%s) as InvalidProviderToken: the key may be revoked at Apple, or "
	    "Key ID and Team ID swapped or not a pair; %s", id->key_id,
	    id->team_id, id->fingerprint, renewed ? "a new token was minted" :
	    "the same token is kept (at most one new token per 20 minutes)");
}

/* vault_apns_token for a key chosen by service (APNs or DeviceCheck). */
static int
shared_token(struct vault *v, const char *app, enum key_env env,
    uint32_t service, const char *rejected_token,
    enum vault_reject_reason reason, const char *actor,
    struct vault_token *out)
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
	if ((r = vault_find_active_ids(v, app, env, service, &id,
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
	m.service = service;
	m.id = &id;
	m.actor = actor;
	if ((r = tokcache_get(v->tokens, &id, rejected_token, reason,
	    mint_token, &m, out, &why)) != 0)
		goto out;
	if (reason == VAULT_REJECT_INVALID)
		warn_invalid(app, &id, rejected_token, out, why);
	count_outcome(v, app, &id, out, m.adopted, why);
	r = 0;
 out:
	if (r != 0 && found)
		VAULT_COUNT(v->apns_failures);
	if (m.tried)
		key_record_free(&loaded);
	return r;
}

int
vault_apns_token_key(struct vault *v, const struct key_record *rec,
    const char *actor, struct vault_token *out)
{
	struct tokcache_id id;
	struct mint m;
	enum vault_mint_reason why = VAULT_MINT_COLD;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&m, 0, sizeof(m));
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || rec == NULL || out == NULL ||
	    vault_actor_valid(actor) != 0)
		goto out;
	r = P8V_ERR_KEY_REVOKED;
	if (rec->state == KEY_STATE_REVOKED || rec->envelope == NULL)
		goto out;
	r = P8V_ERR_SERVICE_NOT_ALLOWED;
	if ((rec->services & KEY_SERVICE_APNS) == 0)
		goto out;
	tokcache_id_of(rec, &id);
	m.v = v;
	m.app = rec->app;
	m.env = rec->environment;
	m.service = KEY_SERVICE_APNS;
	m.id = &id;
	m.actor = actor;
	m.fixed = rec;
	if ((r = tokcache_get(v->tokens, &id, NULL, VAULT_REJECT_NONE,
	    mint_token, &m, out, &why)) != 0) {
		VAULT_COUNT(v->apns_failures);
		goto out;
	}
	count_outcome(v, rec->app, &id, out, m.adopted, why);
	r = 0;
 out:
	return r;
}

int
vault_apns_token(struct vault *v, const char *app, enum key_env env,
    const char *rejected_token, enum vault_reject_reason reason,
    const char *actor, struct vault_token *out)
{
	return shared_token(v, app, env, KEY_SERVICE_APNS, rejected_token,
	    reason, actor, out);
}

int
vault_devicecheck_token(struct vault *v, const char *app, enum key_env env,
    const char *actor, struct vault_token *out)
{
	/* Both: the answer is a token APNs takes, and the key's owner said
	 * which of the two services it is for. */
	return shared_token(v, app, env,
	    KEY_SERVICE_APNS | KEY_SERVICE_DEVICECHECK, NULL, VAULT_REJECT_NONE,
	    actor, out);
}

/* The cached token of the app's active key with service, never a mint
 * nor a wait (P8V_ERR_WOULD_BLOCK: the caller goes where it may wait). */
static int
cached_token(struct vault *v, const char *app, enum key_env env,
    uint32_t service, struct vault_token *out)
{
	struct tokcache_id id;
	int found = 0, r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || out == NULL || (unsigned int)env > KEY_ENV_BOTH)
		goto out;
	if ((r = vault_find_active_ids(v, app, env, service, &id,
	    &found)) != 0)
		goto out;
	if ((r = tokcache_peek(v->tokens, &id, out)) != 0)
		goto out;
	VAULT_COUNT(v->apns_cache_hits);
 out:
	if (r != 0 && r != P8V_ERR_WOULD_BLOCK && found)
		VAULT_COUNT(v->apns_failures);
	return r;
}

int
vault_apns_token_cached(struct vault *v, const char *app, enum key_env env,
    struct vault_token *out)
{
	return cached_token(v, app, env, KEY_SERVICE_APNS, out);
}

int
vault_devicecheck_token_cached(struct vault *v, const char *app,
    enum key_env env, struct vault_token *out)
{
	return cached_token(v, app, env,
	    KEY_SERVICE_APNS | KEY_SERVICE_DEVICECHECK, out);
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
	size_t from, to;        /* delete_txn: this window of items */
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

	for (i = l->from; i < l->to; i++) {
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
	struct keeper_apns_blob b;
	struct tokcache_id id;
	int64_t boot_ns, now_boot, age_ns;
	const char *why = "malformed";
	int r, drop = 1;

	memset(&b, 0, sizeof(b));
	if (tokcache_parse_key(it->key, &id) != 0)
		goto out;
	if ((r = keeper_apns_blob_open(v->keeper, it->key, it->blob, it->len,
	    &b)) != 0) {
		why = p8v_errname(r);
		goto out;
	}
	boot_ns = b.boot_ns;
	now_boot = clock_boot_now_ns();
	if (memcmp(v->boot_id, unknown, VAULT_BOOT_ID_BYTES) != 0 &&
	    memcmp(b.boot_id, v->boot_id, VAULT_BOOT_ID_BYTES) == 0) {
		age_ns = now_boot - boot_ns;
	} else {
		int64_t age_s = clock_wall_now() - b.issued_at;

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
	if (tokcache_seed(v->tokens, &id, b.token, b.issued_at, boot_ns) != 0)
		goto out;
	drop = 0;
 out:
	if (drop && strcmp(why, "stale") != 0)
		log_fields(LOG_LEVEL_WARN, "apns_cache_dropped",
		    json_pack("{s:s, s:s}", "entry", it->key, "reason", why),
		    "persisted APNs token %s dropped: %s", it->key, why);
	keeper_apns_blob_finish(&b);
	return drop;
}

int
vault_apns_load(struct vault *v)
{
	struct load l = { 0 };
	size_t i, kept = 0, dropped = 0, max_ops, max_bytes;
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
	/* In windows of at most the store's cap per transaction (etcd). */
	store_limits(v->store, &max_ops, &max_bytes);
	for (l.from = 0; dropped > 0 && l.from < l.n; l.from = l.to) {
		l.to = max_ops == 0 || l.n - l.from <= max_ops ? l.n :
		    l.from + max_ops;
		if ((r = store_write(v->store, delete_txn, &l)) != 0)
			goto out;
	}
	if (l.n > 0)
		log_infof("apns_cache_loaded", "APNs token cache: %zu kept, "
		    "%zu dropped", kept, dropped);
	r = 0;
 out:
	load_free(&l);
	return r;
}
