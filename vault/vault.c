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
	return key_record_list(txn, f->app, find_one, f);
}

int
vault_find_active(struct vault *v, const char *app, enum key_env env,
    uint32_t service_bit, struct key_record *rec)
{
	struct find f;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&f, 0, sizeof(f));
	if (rec != NULL)
		memset(rec, 0, sizeof(*rec));
	if (v == NULL || rec == NULL || (unsigned int)env > KEY_ENV_BOTH)
		goto out;
	if ((r = ids_app_valid(app)) != 0)
		goto out;
	f.app = app;
	f.env = env;
	if ((r = store_read(v->store, find_txn, &f)) != 0)
		goto out;
	r = P8V_ERR_APP_NOT_FOUND;
	if (f.records == 0)
		goto out;
	r = P8V_ERR_NO_ACTIVE_KEY;
	if (f.rank == 0)
		goto out;
	r = P8V_ERR_SERVICE_NOT_ALLOWED;
	if ((f.best.services & service_bit) == 0)
		goto out;
	*rec = f.best;
	memset(&f.best, 0, sizeof(f.best));
	r = 0;
 out:
	key_record_free(&f.best);
	return r;
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

int
vault_sign_record(struct vault *v, const struct key_record *rec,
    const json_t *header, const json_t *claims, char **token)
{
	struct p8_key *key = NULL;
	struct vault_ring *ring = NULL;
	uint8_t *aad = NULL, *scalar = NULL;
	size_t aad_len = 0, scalar_len = 0;
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
	ring = vault_ring_get(v);
	r = envelope_open(ring->keys, aad, aad_len, rec->envelope,
	    rec->envelope_len, &scalar, &scalar_len);
	vault_ring_put(v, ring);
	if (r != 0) {
		log_unopenable(rec, "open", r);
		goto out;
	}
	if (scalar_len != P8_SCALAR_BYTES) {
		r = P8V_ERR_INTEGRITY;
		log_unopenable(rec, "scalar_length", r);
		goto out;
	}
	/* Recomputes scalar*G and compares it with the stored point. */
	r = p8_key_from_scalar(scalar, rec->public_point, &key);
	secmem_free(scalar); /* wipes: the key holds its own copy now */
	scalar = NULL;
	if (r == P8V_ERR_P8_BAD_SCALAR || r == P8V_ERR_P8_PUBKEY_MISMATCH) {
		r = P8V_ERR_INTEGRITY;
		log_unopenable(rec, "public_point", r);
		goto out;
	}
	if (r != 0)
		goto out;
	r = jwt_sign_es256(key, header, claims, token);
 out:
	p8_key_destroy(key);
	secmem_free(scalar);
	free(aad);
	return r;
}

int
vault_record_vouch(struct vault *v, const struct key_record *rec)
{
	struct vault_ring *ring;
	uint8_t *aad = NULL, *pt = NULL;
	size_t aad_len = 0, pt_len = 0;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (v == NULL || rec == NULL || rec->envelope == NULL)
		goto out;
	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0) {
		log_unopenable(rec, "aad", r);
		goto out;
	}
	ring = vault_ring_get(v);
	r = envelope_open(ring->keys, aad, aad_len, rec->envelope,
	    rec->envelope_len, &pt, &pt_len);
	vault_ring_put(v, ring);
	if (r != 0)
		log_unopenable(rec, "open", r);
 out:
	secmem_free(pt); /* wipes */
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
	char *token = NULL;
	int64_t now;
	int found = 0, r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || build == NULL || out == NULL ||
	    key_service_name(service_bit) == NULL ||
	    vault_actor_valid(actor) != 0)
		goto out;
	if ((r = vault_find_active(v, app, env, service_bit, &rec)) != 0)
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
	if ((r = vault_sign_record(v, &rec, header, claims, &token)) != 0)
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
	free(token);
	return r;
}
