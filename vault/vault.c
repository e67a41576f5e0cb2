/*
 * vault.c: the vault's life cycle, finding an app's active key, and the one
 * place where a sealed key is opened to sign (vault_sign_record). Key
 * management is in keys.c, APNs tokens in apns.c and tokcache.c.
 */
#include "vault/vault.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/jwt.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "store/audit.h"
#include "store/ids.h"
#include "store/masterkeys.h"
#include "vault/tokcache.h"
#include "vault/vault_internal.h"

/* vault_find_active's cache: direct-mapped by app and environment. A slot
 * holds the answer for one (app, env) as of one store generation; 4096
 * slots of about 1 KiB cover the apps that send at any one time. */
#define VAULT_ACTIVE_SLOTS 4096
/* Envelopes known to hold the scalar of their record's point, direct-mapped
 * by a hash of the envelope. */
#define VAULT_CHECKED_SLOTS 1024
/* The largest envelope the memo holds: a 32-byte scalar's. */
#define VAULT_CHECKED_ENV_MAX (ENVELOPE_OVERHEAD + P8_SCALAR_BYTES)

struct active_slot {
	pthread_mutex_t lock;
	int used;
	uint64_t store_gen;             /* the answer's store generation */
	char app[IDS_APP_MAX + 1];
	enum key_env env;
	int result;                     /* 0, P8V_ERR_APP_NOT_FOUND or
	                                   P8V_ERR_NO_ACTIVE_KEY */
	struct key_record best;         /* result 0: the active key */
	uint8_t *aad;                   /* best's, computed when first asked */
	size_t aad_len;
	int vouched;                    /* best opens under its AAD (checked
	                                   by vault_record_vouch_aad) */
};

struct checked_env {
	size_t env_len;                 /* 0: empty */
	uint8_t env[VAULT_CHECKED_ENV_MAX];
	uint8_t *aad;                   /* malloc'd */
	size_t aad_len;
};

static const char *const mint_reason_names[VAULT_MINT_REASONS] = {
	[VAULT_MINT_COLD] = "cold",
	[VAULT_MINT_EXPIRED] = "expired",
	[VAULT_MINT_KEY_CHANGED] = "key_changed",
	[VAULT_MINT_REJECTED_EXPIRED] = "rejected_expired",
	[VAULT_MINT_REJECTED_INVALID] = "rejected_invalid",
};

const char *
vault_mint_reason_name(enum vault_mint_reason why)
{
	if ((unsigned int)why >= VAULT_MINT_REASONS)
		return NULL;
	return mint_reason_names[why];
}

static int
caches_create(struct vault *v)
{
	size_t i;

	if ((v->active = calloc(VAULT_ACTIVE_SLOTS, sizeof(*v->active))) ==
	    NULL ||
	    (v->checked = calloc(VAULT_CHECKED_SLOTS, sizeof(*v->checked))) ==
	    NULL)
		return P8V_ERR_ALLOC;
	for (i = 0; i < VAULT_ACTIVE_SLOTS; i++)
		if (pthread_mutex_init(&v->active[i].lock, NULL) != 0)
			return P8V_ERR_INTERNAL;
	if (pthread_mutex_init(&v->checked_lock, NULL) != 0)
		return P8V_ERR_INTERNAL;
	return 0;
}

static void
caches_destroy(struct vault *v)
{
	size_t i;

	if (v->active != NULL) {
		for (i = 0; i < VAULT_ACTIVE_SLOTS; i++) {
			key_record_free(&v->active[i].best);
			free(v->active[i].aad);
			pthread_mutex_destroy(&v->active[i].lock);
		}
		free(v->active);
		v->active = NULL;
	}
	if (v->checked != NULL) {
		for (i = 0; i < VAULT_CHECKED_SLOTS; i++)
			free(v->checked[i].aad);
		free(v->checked);
		v->checked = NULL;
		pthread_mutex_destroy(&v->checked_lock);
	}
}

int
vault_create(struct store *store, struct master_keyring *ring,
    const struct vault_options *opts, struct vault **out)
{
	struct vault *v = NULL;
	int64_t reuse = VAULT_APNS_REUSE_DEFAULT_S;
	size_t i;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		*out = NULL;
	if (store == NULL || ring == NULL || out == NULL)
		goto out;
	if (opts != NULL && opts->apns_reuse_seconds != 0)
		reuse = opts->apns_reuse_seconds;
	if (reuse < VAULT_APNS_REUSE_MIN_S || reuse > VAULT_APNS_REUSE_MAX_S) {
		log_errorf("vault_options", "APNs token reuse period %lld s "
		    "is outside %d..%d s", (long long)reuse,
		    VAULT_APNS_REUSE_MIN_S, VAULT_APNS_REUSE_MAX_S);
		goto out;
	}
	if ((r = secmem_init()) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		goto out;
	for (i = 0; i < VAULT_MINT_REASONS; i++)
		atomic_init(&v->apns_mints[i], 0);
	atomic_init(&v->apns_cache_hits, 0);
	atomic_init(&v->apns_rejections, 0);
	atomic_init(&v->apns_failures, 0);
	atomic_init(&v->app_signs, 0);
	atomic_init(&v->app_sign_failures, 0);
	v->store = store;
	r = P8V_ERR_INTERNAL;
	if (pthread_mutex_init(&v->ring_lock, NULL) != 0)
		goto out;
	if ((r = caches_create(v)) != 0)
		goto out;
	r = P8V_ERR_INTERNAL;
	r = P8V_ERR_ALLOC;
	if ((v->ring = calloc(1, sizeof(*v->ring))) == NULL)
		goto out;
	v->ring->keys = ring;
	v->ring->refs = 1;
	ring = NULL;
	v->apns_reuse_s = reuse;
	if ((r = store_master_keys_check(store, v->ring->keys)) != 0)
		goto out;
	if ((r = tokcache_create(reuse, &v->tokens)) != 0)
		goto out;
	if (tokcache_boot_id(v->boot_id) != 0)
		log_warnf("vault_boot_id", "cannot read the boot id; persisted "
		    "APNs tokens will be aged on the wall clock");
	if ((r = vault_apns_load(v)) != 0)
		goto out;
	*out = v;
	v = NULL;
	r = 0;
 out:
	master_keyring_destroy(ring);
	vault_destroy(v);
	return r;
}

void
vault_destroy(struct vault *v)
{
	if (v == NULL)
		return;
	caches_destroy(v);
	tokcache_destroy(v->tokens);
	if (v->ring != NULL) {
		/* No call may be running: this is the last reference. */
		master_keyring_destroy(v->ring->keys);
		free(v->ring);
		pthread_mutex_destroy(&v->ring_lock);
	}
	free(v);
}

/* --- the keyring and its replacement --- */

struct vault_ring *
vault_ring_get(struct vault *v)
{
	struct vault_ring *ring;

	pthread_mutex_lock(&v->ring_lock);
	ring = v->ring;
	ring->refs++;
	pthread_mutex_unlock(&v->ring_lock);
	return ring;
}

void
vault_ring_put(struct vault *v, struct vault_ring *ring)
{
	unsigned long left;

	if (ring == NULL)
		return;
	pthread_mutex_lock(&v->ring_lock);
	left = --ring->refs;
	pthread_mutex_unlock(&v->ring_lock);
	if (left == 0) {
		/* Replaced, and its last user is done: wipe it, outside the
		 * lock (sodium_free is slow-ish). */
		master_keyring_destroy(ring->keys);
		free(ring);
	}
}

struct keyring_usage {
	const struct master_keyring *ring;
	/* Results; reset at the start (store_read does not re-run, but a
	 * function must not depend on that). */
	char missing_id[MASTER_KEY_ID_HEX + 1];
	uint64_t missing_records;
	size_t missing_keys;
};

static int
keyring_usage_txn(struct store_txn *txn, void *arg)
{
	struct keyring_usage *k = arg;
	struct store_master_key_usage *u = NULL;
	size_t i, n = 0;
	int r;

	k->missing_id[0] = '\0';
	k->missing_records = 0;
	k->missing_keys = 0;
	if ((r = store_master_key_usage(txn, &u, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (u[i].records == 0 ||
		    master_keyring_find(k->ring, u[i].id) != NULL)
			continue;
		if (k->missing_keys++ == 0)
			memcpy(k->missing_id, u[i].id_hex,
			    sizeof(k->missing_id));
		k->missing_records += u[i].records;
	}
	free(u);
	return 0;
}

int
vault_set_keyring(struct vault *v, struct master_keyring *ring)
{
	struct vault_ring *next = NULL, *prev = NULL;
	struct keyring_usage k;
	const struct master_key *primary;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&k, 0, sizeof(k));
	if (v == NULL || ring == NULL)
		goto out;
	r = P8V_ERR_NO_MASTER_KEY;
	if ((primary = master_keyring_primary(ring)) == NULL)
		goto out;
	/* First the records: a ring that cannot open all of them would turn
	 * a reload into failed requests. */
	k.ring = ring;
	if ((r = store_read(v->store, keyring_usage_txn, &k)) != 0)
		goto out;
	if (k.missing_keys > 0) {
		r = P8V_ERR_MASTER_KEY_MISSING;
		log_fields(LOG_LEVEL_ERROR, "master_key_reload",
		    json_pack("{s:s, s:I, s:I}", "missing_master_key_id",
		    k.missing_id, "missing_keys", (json_int_t)k.missing_keys,
		    "records", (json_int_t)k.missing_records),
		    "new keyring refused: %llu key record(s) are sealed under "
		    "%zu master key(s) it lacks (first: %s); finish the "
		    "rotation (p8vault master rotate) before dropping a key",
		    (unsigned long long)k.missing_records, k.missing_keys,
		    k.missing_id);
		goto out;
	}
	if ((r = store_master_keys_check(v->store, ring)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((next = calloc(1, sizeof(*next))) == NULL)
		goto out;
	next->keys = ring;
	next->refs = 1;
	ring = NULL;
	pthread_mutex_lock(&v->ring_lock);
	prev = v->ring;
	v->ring = next;
	pthread_mutex_unlock(&v->ring_lock);
	log_fields(LOG_LEVEL_INFO, "master_key_reload",
	    json_pack("{s:s, s:i}", "primary_master_key_id",
	    master_key_id_hex(primary), "master_keys",
	    (int)master_keyring_count(next->keys)),
	    "keyring replaced: %zu master key(s), new seals under %s",
	    master_keyring_count(next->keys), master_key_id_hex(primary));
	/* Operations still using prev keep it until they end. */
	vault_ring_put(v, prev);
	r = 0;
 out:
	master_keyring_destroy(ring);
	return r;
}

void
vault_stats(struct vault *v, struct vault_stats *st)
{
	size_t i;

	if (v == NULL || st == NULL)
		return;
	memset(st, 0, sizeof(*st));
	for (i = 0; i < VAULT_MINT_REASONS; i++)
		st->apns_mints[i] = atomic_load_explicit(&v->apns_mints[i],
		    memory_order_relaxed);
#define VAULT_LOAD(f) st->f = atomic_load_explicit(&v->f, memory_order_relaxed)
	VAULT_LOAD(apns_cache_hits);
	VAULT_LOAD(apns_rejections);
	VAULT_LOAD(apns_failures);
	VAULT_LOAD(app_signs);
	VAULT_LOAD(app_sign_failures);
#undef VAULT_LOAD
}

void
vault_token_finish(struct vault_token *t)
{
	if (t == NULL)
		return;
	if (t->token != NULL) {
		secmem_wipe(t->token, strlen(t->token));
		free(t->token);
	}
	memset(t, 0, sizeof(*t));
}

int
vault_env_overlap(enum key_env a, enum key_env b)
{
	return a == b || a == KEY_ENV_BOTH || b == KEY_ENV_BOTH;
}

int
vault_actor_valid(const char *actor)
{
	return ids_name_ok(actor, KEY_RECORD_ACTOR_MAX) ? 0 :
	    P8V_ERR_INVALID_ARGUMENT;
}

int
vault_time_rfc3339(int64_t t, char out[VAULT_TIME_RFC3339_BYTES])
{
	struct tm tm;
	time_t tt = (time_t)t;

	out[0] = '\0';
	if ((int64_t)tt != t || gmtime_r(&tt, &tm) == NULL ||
	    tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
		return P8V_ERR_INTERNAL;
	if (strftime(out, VAULT_TIME_RFC3339_BYTES, "%Y-%m-%dT%H:%M:%SZ",
	    &tm) == 0)
		return P8V_ERR_INTERNAL;
	return 0;
}

json_t *
vault_audit_event(int64_t now, const char *actor, const char *what,
    const struct key_record *rec, const char *result)
{
	char when[VAULT_TIME_RFC3339_BYTES];

	if (vault_time_rfc3339(now, when) != 0)
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
	    "time", when, "who", actor, "what", what, "app", rec->app,
	    "key_id", rec->key_id, "team_id", rec->team_id,
	    "fingerprint", rec->fingerprint, "result", result);
}

/* --- finding the active key --- */

struct find {
	const char *app;
	enum key_env env;
	uint64_t records;
	int rank;                       /* of best: 0 none yet */
	struct key_record best;
	uint64_t store_gen;             /* of the snapshot read */
};

/* How well rec serves env: 2 exact (or "both" for a request of any),
 * 1 usable, 0 not at all. */
static int
rank_key(const struct key_record *rec, enum key_env env)
{
	if (rec->state != KEY_STATE_ACTIVE)
		return 0;
	if (env == KEY_ENV_BOTH)
		return rec->environment == KEY_ENV_BOTH ? 2 : 1;
	if (rec->environment == env)
		return 2;
	return rec->environment == KEY_ENV_BOTH ? 1 : 0;
}

static int
find_one(const struct key_record *rec, void *arg)
{
	struct find *f = arg;
	int rank = rank_key(rec, f->env);
	int r;

	f->records++;
	if (rank <= f->rank)
		return 0; /* the first in Key ID order wins a tie */
	key_record_free(&f->best);
	if ((r = key_record_copy(&f->best, rec)) != 0)
		return r;
	f->rank = rank;
	return 0;
}

static int
find_txn(struct store_txn *txn, void *arg)
{
	struct find *f = arg;

	f->records = 0;
	f->rank = 0;
	key_record_free(&f->best);
	f->store_gen = store_txn_generation(txn);
	return key_record_list(txn, f->app, find_one, f);
}

/* FNV-1a of app and env: the slot of (app, env). */
static struct active_slot *
active_slot_of(struct vault *v, const char *app, enum key_env env)
{
	uint32_t h = 2166136261u;

	for (; *app != '\0'; app++)
		h = (h ^ (uint8_t)*app) * 16777619u;
	h = (h ^ (uint8_t)env) * 16777619u;
	return &v->active[h & (VAULT_ACTIVE_SLOTS - 1)];
}

/*
 * The answer in a slot (locked, holding app and env at the current
 * generation): rc, and on 0 a copy of the record (rec) or only its ids
 * (ids) and, if asked, of its AAD (computed into the slot the first time).
 */
static int
active_answer(struct vault *v, struct active_slot *a, uint32_t service_bit,
    struct key_record *rec, struct tokcache_id *ids, uint8_t **aad,
    size_t *aad_len, int vouch, int *found)
{
	int r;

	if (a->result != 0)
		return a->result;
	if ((a->best.services & service_bit) == 0)
		return P8V_ERR_SERVICE_NOT_ALLOWED;
	*found = 1;
	if ((aad != NULL || (vouch && !a->vouched)) && a->aad == NULL &&
	    (r = key_record_aad(&a->best, &a->aad, &a->aad_len)) != 0)
		return r;
	/* Once per slot: the same bytes open the same way every time. */
	if (vouch && !a->vouched) {
		if ((r = vault_record_vouch_aad(v, &a->best, a->aad,
		    a->aad_len)) != 0)
			return r;
		a->vouched = 1;
	}
	if (ids != NULL)
		tokcache_id_of(&a->best, ids);
	if (rec != NULL && (r = key_record_copy(rec, &a->best)) != 0)
		return r;
	if (aad != NULL) {
		if ((*aad = malloc(a->aad_len)) == NULL) {
			if (rec != NULL)
				key_record_free(rec);
			return P8V_ERR_ALLOC;
		}
		memcpy(*aad, a->aad, a->aad_len);
		*aad_len = a->aad_len;
	}
	return 0;
}

/* vault_find_active_aad, vault_find_active_vouched and
 * vault_find_active_ids: with vouch, the record is vouched for
 * (vault_record_vouch_aad) before it is handed out, as a copy (rec) or its
 * ids (ids, when rec is NULL); *found is set once the app's active key is
 * known. */
static int
find_active(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit, struct key_record *rec, struct tokcache_id *ids,
    uint8_t **aad, size_t *aad_len, int vouch, int *found)
{
	struct active_slot *a;
	struct find f;
	uint64_t gen = 0;
	int have_gen, did_read = 0, r = P8V_ERR_INVALID_ARGUMENT;

	/* f (a whole record) is set up only when the store is read: not on
	 * the cached answers of most requests. */
	if (rec != NULL)
		memset(rec, 0, sizeof(*rec));
	if (ids != NULL)
		memset(ids, 0, sizeof(*ids));
	if (aad != NULL)
		*aad = NULL;
	if (aad_len != NULL)
		*aad_len = 0;
	if (v == NULL || (rec == NULL) == (ids == NULL) ||
	    (unsigned int)env > KEY_ENV_BOTH ||
	    (aad != NULL && aad_len == NULL))
		goto out;
	if ((r = ids_app_valid(app)) != 0)
		goto out;
	/* The cached answer, if nothing was committed since it was read:
	 * then the store holds what it was read from, whoever writes. */
	a = active_slot_of(v, app, env);
	have_gen = store_generation(v->store, &gen) == 0;
	if (have_gen) {
		pthread_mutex_lock(&a->lock);
		if (a->used && a->store_gen == gen && a->env == env &&
		    strcmp(a->app, app) == 0) {
			r = active_answer(v, a, service_bit, rec, ids, aad,
			    aad_len, vouch, found);
			pthread_mutex_unlock(&a->lock);
			goto out;
		}
		pthread_mutex_unlock(&a->lock);
	}
	memset(&f, 0, sizeof(f));
	did_read = 1;
	f.app = app;
	f.env = env;
	if ((r = store_read(v->store, find_txn, &f)) != 0)
		goto out;
	/* Keep what this read saw, as of its own snapshot. */
	pthread_mutex_lock(&a->lock);
	key_record_free(&a->best);
	free(a->aad);
	a->aad = NULL;
	a->aad_len = 0;
	a->used = 0;
	a->vouched = 0;
	a->result = f.records == 0 ? P8V_ERR_APP_NOT_FOUND :
	    f.rank == 0 ? P8V_ERR_NO_ACTIVE_KEY : 0;
	if (a->result != 0 || key_record_copy(&a->best, &f.best) == 0) {
		a->used = 1;
		a->store_gen = f.store_gen;
		a->env = env;
		memcpy(a->app, app, strlen(app) + 1);
		r = active_answer(v, a, service_bit, rec, ids, aad, aad_len,
		    vouch, found);
	} else {
		/* Out of memory for the cache: answer from the read. */
		r = a->result != 0 ? a->result :
		    (f.best.services & service_bit) == 0 ?
		    P8V_ERR_SERVICE_NOT_ALLOWED : 0;
		if (r == 0) {
			*found = 1;
			if (vouch)
				r = vault_record_vouch(v, &f.best);
		}
		if (r == 0 && aad != NULL)
			r = key_record_aad(&f.best, aad, aad_len);
		if (r == 0 && ids != NULL)
			tokcache_id_of(&f.best, ids);
		if (r == 0 && rec != NULL) {
			*rec = f.best;          /* moved: not freed below */
			memset(&f.best, 0, sizeof(f.best));
		}
	}
	pthread_mutex_unlock(&a->lock);
 out:
	if (did_read)
		key_record_free(&f.best);
	return r;
}

int
vault_find_active_aad(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit, struct key_record *rec, uint8_t **aad,
    size_t *aad_len)
{
	int found = 0;

	return find_active(v, app, env, service_bit, rec, NULL, aad, aad_len,
	    0, &found);
}

int
vault_find_active_vouched(struct vault *v, const char *app,
    enum key_env env, uint32_t service_bit, struct key_record *rec,
    int *found)
{
	int dummy = 0;

	if (found == NULL)
		found = &dummy;
	*found = 0;
	return find_active(v, app, env, service_bit, rec, NULL, NULL, NULL,
	    1, found);
}

int
vault_find_active_ids(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit, struct tokcache_id *ids, int *found)
{
	int dummy = 0;

	if (found == NULL)
		found = &dummy;
	*found = 0;
	if (ids == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return find_active(v, app, env, service_bit, NULL, ids, NULL, NULL,
	    1, found);
}

int
vault_find_active(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit, struct key_record *rec)
{
	return vault_find_active_aad(v, app, env, service_bit, rec, NULL,
	    NULL);
}

/* --- signing --- */

static void
log_unopenable(const struct key_record *rec, const char *step, int err)
{
	log_fields(LOG_LEVEL_ERROR, "vault_record_unusable",
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "app", rec->app,
	    "key_id", rec->key_id, "team_id", rec->team_id, "step", step,
	    "error", p8v_errname(err)),
	    "key record %s/%s cannot be used to sign (%s: %s); not signing",
	    rec->app, rec->key_id, step, p8v_strerror(err));
}

/* The memo slot of an envelope (FNV-1a of its bytes). */
static struct checked_env *
checked_slot_of(struct vault *v, const uint8_t *env, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ env[i]) * 16777619u;
	return &v->checked[h & (VAULT_CHECKED_SLOTS - 1)];
}

/*
 * 1 if this exact envelope was opened before in this process under exactly
 * this AAD and its scalar checked against the record's point (which the
 * AAD holds, in the record's metadata). AES-GCM makes an envelope that
 * opens under an AAD always yield the same scalar, so neither the open (to
 * vouch for a record) nor the comparison of scalar*G with the point (to
 * sign) need be made again for the same bytes: a changed, moved or
 * relabelled record, a re-seal or another master key are other bytes.
 */
static int
checked_has(struct vault *v, const struct key_record *rec,
    const uint8_t *aad, size_t aad_len)
{
	struct checked_env *c;
	int found;

	if (rec->envelope_len > VAULT_CHECKED_ENV_MAX)
		return 0;
	c = checked_slot_of(v, rec->envelope, rec->envelope_len);
	pthread_mutex_lock(&v->checked_lock);
	found = c->env_len == rec->envelope_len &&
	    memcmp(c->env, rec->envelope, rec->envelope_len) == 0 &&
	    c->aad_len == aad_len && memcmp(c->aad, aad, aad_len) == 0;
	pthread_mutex_unlock(&v->checked_lock);
	return found;
}

static void
checked_add(struct vault *v, const struct key_record *rec,
    const uint8_t *aad, size_t aad_len)
{
	struct checked_env *c;
	uint8_t *copy;

	if (rec->envelope_len > VAULT_CHECKED_ENV_MAX ||
	    (copy = malloc(aad_len > 0 ? aad_len : 1)) == NULL)
		return;
	memcpy(copy, aad, aad_len);
	c = checked_slot_of(v, rec->envelope, rec->envelope_len);
	pthread_mutex_lock(&v->checked_lock);
	free(c->aad);
	memcpy(c->env, rec->envelope, rec->envelope_len);
	c->env_len = rec->envelope_len;
	c->aad = copy;
	c->aad_len = aad_len;
	pthread_mutex_unlock(&v->checked_lock);
}

/*
 * Open rec's envelope under aad into *scalar (locked memory, the caller
 * frees it) and check it against rec's point unless checked_has already
 * knows these bytes; remember them once checked. Logs a record that does
 * not open or whose scalar is not its point's.
 */
static int
open_checked(struct vault *v, const struct key_record *rec,
    const uint8_t *aad, size_t aad_len, uint8_t **scalar)
{
	struct vault_ring *ring;
	size_t scalar_len = 0;
	int r;

	*scalar = NULL;
	ring = vault_ring_get(v);
	r = envelope_open(ring->keys, aad, aad_len, rec->envelope,
	    rec->envelope_len, scalar, &scalar_len);
	vault_ring_put(v, ring);
	if (r != 0) {
		log_unopenable(rec, "open", r);
		return r;
	}
	if (scalar_len != P8_SCALAR_BYTES) {
		r = P8V_ERR_INTEGRITY;
		log_unopenable(rec, "scalar_length", r);
		goto fail;
	}
	if (checked_has(v, rec, aad, aad_len))
		return 0;
	r = p8_scalar_check(*scalar, rec->public_point);
	if (r == P8V_ERR_P8_BAD_SCALAR || r == P8V_ERR_P8_PUBKEY_MISMATCH) {
		r = P8V_ERR_INTEGRITY;
		log_unopenable(rec, "public_point", r);
		goto fail;
	}
	if (r != 0)
		goto fail;
	checked_add(v, rec, aad, aad_len);
	return 0;
 fail:
	secmem_free(*scalar); /* wipes */
	*scalar = NULL;
	return r;
}

int
vault_sign_record_aad(struct vault *v, const struct key_record *rec,
    const uint8_t *aad, size_t aad_len, const json_t *header,
    const json_t *claims, char **token)
{
	uint8_t *scalar = NULL;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (token != NULL)
		*token = NULL;
	if (v == NULL || rec == NULL || token == NULL || aad == NULL ||
	    rec->envelope == NULL)
		goto out;
	if ((r = open_checked(v, rec, aad, aad_len, &scalar)) != 0)
		goto out;
	r = jwt_sign_es256_scalar(scalar, header, claims, token);
 out:
	secmem_free(scalar); /* wipes */
	return r;
}

int
vault_sign_record(struct vault *v, const struct key_record *rec,
    const json_t *header, const json_t *claims, char **token)
{
	uint8_t *aad = NULL;
	size_t aad_len = 0;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (token != NULL)
		*token = NULL;
	if (v == NULL || rec == NULL || token == NULL ||
	    rec->envelope == NULL)
		goto out;
	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0) {
		log_unopenable(rec, "aad", r);
		goto out;
	}
	r = vault_sign_record_aad(v, rec, aad, aad_len, header, claims, token);
 out:
	free(aad);
	return r;
}

int
vault_record_vouch_aad(struct vault *v, const struct key_record *rec,
    const uint8_t *aad, size_t aad_len)
{
	uint8_t *scalar = NULL;
	int r;

	if (v == NULL || rec == NULL || aad == NULL || rec->envelope == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* Known bytes: they opened before, and open the same way now. */
	if (checked_has(v, rec, aad, aad_len))
		return 0;
	r = open_checked(v, rec, aad, aad_len, &scalar);
	secmem_free(scalar); /* wipes */
	return r;
}

int
vault_record_vouch(struct vault *v, const struct key_record *rec)
{
	uint8_t *aad = NULL;
	size_t aad_len = 0;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (v == NULL || rec == NULL || rec->envelope == NULL)
		goto out;
	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0) {
		log_unopenable(rec, "aad", r);
		goto out;
	}
	r = vault_record_vouch_aad(v, rec, aad, aad_len);
 out:
	free(aad);
	return r;
}

int
vault_sign_app(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit,
    int (*build)(const struct key_record *, int64_t, json_t **, json_t **,
        void *),
    void *arg, const char *actor, struct vault_token *out)
{
	struct key_record rec = { 0 };
	json_t *header = NULL, *claims = NULL, *kid, *exp;
	uint8_t *aad = NULL;
	size_t aad_len = 0;
	char *token = NULL;
	int64_t now;
	int found = 0, r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || build == NULL || out == NULL ||
	    key_service_name(service_bit) == NULL ||
	    vault_actor_valid(actor) != 0)
		goto out;
	if ((r = vault_find_active_aad(v, app, env, service_bit, &rec, &aad,
	    &aad_len)) != 0)
		goto out;
	found = 1;
	now = tokcache_wall_now();
	if ((r = build(&rec, now, &header, &claims, arg)) != 0)
		goto out;
	r = P8V_ERR_INVALID_ARGUMENT;
	if (!json_is_object(header) || !json_is_object(claims))
		goto out;
	/* The builder makes the header from rec; a kid naming another key
	 * would be a token APNs-style verifiers check against the wrong key. */
	kid = json_object_get(header, "kid");
	if (kid != NULL && (!json_is_string(kid) ||
	    strcmp(json_string_value(kid), rec.key_id) != 0))
		goto out;
	if ((r = vault_sign_record_aad(v, &rec, aad, aad_len, header, claims,
	    &token)) != 0)
		goto out;
	exp = json_object_get(claims, "exp");
	out->token = token;
	token = NULL;
	memcpy(out->key_id, rec.key_id, sizeof(out->key_id));
	memcpy(out->team_id, rec.team_id, sizeof(out->team_id));
	out->issued_at = now;
	out->expires_at = json_is_integer(exp) ?
	    (int64_t)json_integer_value(exp) : now + VAULT_APNS_LIFETIME_S;
	out->minted = 1;
	r = 0;
 out:
	if (found && r == 0)
		VAULT_COUNT(v->app_signs);
	else if (found)
		VAULT_COUNT(v->app_sign_failures);
	json_decref(header);
	json_decref(claims);
	key_record_free(&rec);
	free(aad);
	free(token);
	return r;
}
