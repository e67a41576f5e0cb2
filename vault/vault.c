/*
 * vault.c: finding an app's active key, and asking the keeper to vouch for
 * a record or to sign with it. The life cycle is in life.c, key management
 * in keys.c, APNs tokens in apns.c and tokcache.c. Nothing here calls into
 * apns.c or life.c: they build on this file, not the other way round.
 */
#include "vault/vault.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "store/audit.h"
#include "common/ids.h"
#include "keeper/profile.h"
#include "store/masterkeys.h"
#include "vault/tokcache.h"
#include "vault/vault_internal.h"

/* vault_find_active's cache: direct-mapped by app and environment. A slot
 * holds the answer for one (app, env) as of one store generation; 4096
 * slots of about 1 KiB cover the apps that send at any one time. */
#define VAULT_ACTIVE_SLOTS 4096
/* Records the keeper vouched for, direct-mapped by a hash of the envelope. */
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

int
vault_caches_create(struct vault *v)
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

void
vault_caches_destroy(struct vault *v)
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
	if ((a->best.services & service_bit) != service_bit)
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
		    (f.best.services & service_bit) != service_bit ?
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

/* --- vouching and signing through the keeper --- */

void
vault_log_unusable(const struct key_record *rec, const char *step, int err)
{
	log_fields(LOG_LEVEL_ERROR, "vault_record_unusable",
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "app", rec->app,
	    "key_id", rec->key_id, "team_id", rec->team_id, "step", step,
	    "error", p8v_errname(err)),
	    "key record %s/%s cannot be used to sign (%s: %s); not signing",
	    rec->app, rec->key_id, step, p8v_strerror(err));
}

/* Log a keeper refusal of rec unless it is not about the record. */
static void
log_refusal(const struct key_record *rec, enum keeper_step step, int err)
{
	if (step != KEEPER_STEP_NONE)
		vault_log_unusable(rec, keeper_step_name(step), err);
	else if (err == P8V_ERR_MASTER_KEY_MISSING || err == P8V_ERR_INTEGRITY)
		vault_log_unusable(rec, "open", err);
}

void
vault_keeper_record(const struct key_record *rec, const uint8_t *aad,
    size_t aad_len, struct keeper_record *out)
{
	out->aad = aad;
	out->aad_len = aad_len;
	out->env = rec->envelope;
	out->env_len = rec->envelope_len;
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
 * 1 if the keeper vouched for this exact envelope under exactly this AAD
 * before in this process (it opened, and its scalar is the key of the
 * point the AAD's metadata names). AES-GCM makes an envelope that opens
 * under an AAD always open the same way, so a cached token (which signs
 * nothing) need not ask the keeper again for the same bytes: a changed,
 * moved or relabelled record, a re-seal or another master key are other
 * bytes.
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

int
vault_record_vouch_aad(struct vault *v, const struct key_record *rec,
    const uint8_t *aad, size_t aad_len)
{
	struct keeper_record kr;
	enum keeper_step step = KEEPER_STEP_NONE;
	int r;

	if (v == NULL || rec == NULL || aad == NULL || rec->envelope == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* Known bytes: they opened before, and open the same way now. */
	if (checked_has(v, rec, aad, aad_len))
		return 0;
	vault_keeper_record(rec, aad, aad_len, &kr);
	if ((r = keeper_vouch(v->keeper, &kr, &step)) != 0) {
		log_refusal(rec, step, r);
		return r;
	}
	checked_add(v, rec, aad, aad_len);
	return 0;
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
		vault_log_unusable(rec, "aad", r);
		goto out;
	}
	r = vault_record_vouch_aad(v, rec, aad, aad_len);
 out:
	free(aad);
	return r;
}

/* vault_sign_app's checks and its record: out zeroed; the active record
 * of app for env and the profile's service, with its AAD. */
static int
sign_app_find(struct vault *v, const char *app, enum key_env env,
    const struct keeper_profile *fields, const char *actor,
    struct vault_token *out, struct key_record *rec, uint8_t **aad,
    size_t *aad_len)
{
	const struct profile_rule *rule;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (v == NULL || fields == NULL || out == NULL ||
	    (rule = profile_rule_of(fields->kind)) == NULL ||
	    vault_actor_valid(actor) != 0)
		return P8V_ERR_INVALID_ARGUMENT;
	return vault_find_active_aad(v, app, env, rule->service, rec, aad,
	    aad_len);
}

/* The keeper's fresh token into out (kt->token taken). */
static void
token_from_keeper(struct vault_token *out, struct keeper_token *kt)
{
	out->token = kt->token;
	kt->token = NULL;
	memcpy(out->key_id, kt->key_id, sizeof(out->key_id));
	memcpy(out->team_id, kt->team_id, sizeof(out->team_id));
	out->issued_at = kt->issued_at;
	out->expires_at = kt->expires_at;
	out->minted = 1;
}

int
vault_sign_app(struct vault *v, const char *app, enum key_env env,
    const struct keeper_profile *fields, const char *actor,
    struct vault_token *out)
{
	struct key_record rec = { 0 };
	struct keeper_record kr;
	struct keeper_token kt = { 0 };
	enum keeper_step step = KEEPER_STEP_NONE;
	uint8_t *aad = NULL;
	size_t aad_len = 0;
	int found = 0, r = P8V_ERR_INVALID_ARGUMENT;

	if ((r = sign_app_find(v, app, env, fields, actor, out, &rec, &aad,
	    &aad_len)) != 0)
		goto out;
	found = 1;
	vault_keeper_record(&rec, aad, aad_len, &kr);
	if ((r = keeper_sign_profile(v->keeper, &kr, fields, &kt,
	    &step)) != 0) {
		log_refusal(&rec, step, r);
		goto out;
	}
	token_from_keeper(out, &kt);
	r = 0;
 out:
	if (found && r == 0)
		VAULT_COUNT(v->app_signs);
	else if (found)
		VAULT_COUNT(v->app_sign_failures);
	keeper_token_finish(&kt);
	key_record_free(&rec);
	free(aad);
	return r;
}

/* A signature queued on a keeper pipe: what its answer needs. */
struct pending_sign {
	struct vault *v;
	struct key_record ids;  /* app, Key ID, Team ID: for the log */
	vault_token_done done;
	void *arg;
};

static void
sign_app_done(void *arg, int result, struct keeper_token *kt,
    enum keeper_step step)
{
	struct pending_sign *ps = arg;
	struct vault_token out = { 0 };

	if (result == 0 && kt != NULL) {
		token_from_keeper(&out, kt);
		VAULT_COUNT(ps->v->app_signs);
	} else {
		if (result == 0)
			result = P8V_ERR_INTERNAL;
		log_refusal(&ps->ids, step, result);
		VAULT_COUNT(ps->v->app_sign_failures);
	}
	ps->done(ps->arg, result, result == 0 ? &out : NULL);
	vault_token_finish(&out);
	free(ps);
}

int
vault_sign_app_start(struct vault *v, const char *app, enum key_env env,
    const struct keeper_profile *fields, const char *actor,
    struct keeper_pipe *pipe, vault_token_done done, void *arg,
    struct vault_token *out)
{
	struct key_record rec = { 0 };
	struct keeper_record kr;
	struct pending_sign *ps = NULL;
	uint8_t *aad = NULL;
	size_t aad_len = 0;
	int r;

	if (pipe == NULL || done == NULL)
		return vault_sign_app(v, app, env, fields, actor, out);
	/* Not counted, as vault_sign_app does not count it. */
	if ((r = sign_app_find(v, app, env, fields, actor, out, &rec, &aad,
	    &aad_len)) != 0)
		goto out;
	if ((ps = calloc(1, sizeof(*ps))) == NULL) {
		r = P8V_ERR_ALLOC;
		VAULT_COUNT(v->app_sign_failures);
		goto out;
	}
	ps->v = v;
	memcpy(ps->ids.app, rec.app, sizeof(ps->ids.app));
	memcpy(ps->ids.key_id, rec.key_id, sizeof(ps->ids.key_id));
	memcpy(ps->ids.team_id, rec.team_id, sizeof(ps->ids.team_id));
	ps->done = done;
	ps->arg = arg;
	vault_keeper_record(&rec, aad, aad_len, &kr);
	r = keeper_pipe_sign_profile(pipe, &kr, fields, sign_app_done, ps);
	if (r == 0) {
		ps = NULL;
		r = P8V_ERR_PENDING;
	} else if (r == P8V_ERR_BUSY) {
		r = vault_sign_app(v, app, env, fields, actor, out);
	} else {
		log_refusal(&rec, KEEPER_STEP_NONE, r);
		VAULT_COUNT(v->app_sign_failures);
	}
 out:
	free(ps);
	key_record_free(&rec);
	free(aad);
	return r;
}

/* --- the wrap budget and re-seals --- */

int
vault_count_wraps(struct store_txn *txn,
    const uint8_t mk_id[MASTER_KEY_ID_BYTES], uint64_t n)
{
	char hex[MASTER_KEY_ID_HEX + 1];
	uint64_t total = 0;
	size_t i;
	int r;

	if (n == 0)
		return 0;
	if ((r = store_master_key_wraps_add(txn, mk_id, n, &total)) != 0)
		return r;
	/* Once, as the count passes the mark (and again whenever it passes
	 * another 2^20 beyond it, so that a busy key is not forgotten). */
	if (total >= ENVELOPE_WRAPS_WARN &&
	    (total - n < ENVELOPE_WRAPS_WARN ||
	    (total >> 20) != ((total - n) >> 20))) {
		for (i = 0; i < MASTER_KEY_ID_BYTES; i++) {
			hex[2 * i] = "0123456789abcdef"[mk_id[i] >> 4];
			hex[2 * i + 1] = "0123456789abcdef"[mk_id[i] & 15];
		}
		hex[MASTER_KEY_ID_HEX] = '\0';
		log_fields(LOG_LEVEL_WARN, "master_key_wrap_budget",
		    json_pack("{s:s, s:I}", "master_key_id", hex,
		    "wraps", (json_int_t)total),
		    "master key %s has sealed %llu envelopes, past 2^30 of "
		    "its budget (random 96-bit nonces: stay far below 2^32); "
		    "rotate to a new master key (p8vault master rotate)", hex,
		    (unsigned long long)total);
	}
	return 0;
}

int
vault_reseal(const struct key_record *old, struct key_record *rec,
    void *arg)
{
	struct vault_reseal *rs = arg;
	struct keeper_record kr;
	uint8_t mk_id[MASTER_KEY_ID_BYTES];
	uint8_t *aad = NULL, *env = NULL;
	size_t aad_len = 0, env_len = 0;
	int r;

	if ((r = key_record_aad(old, &aad, &aad_len)) != 0)
		goto out;
	vault_keeper_record(old, aad, aad_len, &kr);
	if ((r = keeper_reseal(rs->keeper, &kr, rec, &env, &env_len,
	    mk_id)) != 0)
		goto out;
	if ((r = vault_count_wraps(rs->txn, mk_id, 1)) != 0)
		goto out;
	/* rec->envelope is old's buffer (key_record_update): replaced, not
	 * freed. */
	rec->envelope = env;
	rec->envelope_len = env_len;
	env = NULL;
 out:
	free(aad);
	free(env);
	return r;
}

/* --- the clocks, for the unit tests --- */

void
vault_test_set_clocks(int64_t (*wall_s)(void), int64_t (*boot_ns)(void))
{
	clock_test_set(wall_s, boot_ns);
}

void
vault_test_set_boot_id(const uint8_t *boot_id)
{
	clock_test_set_boot_id(boot_id);
}
