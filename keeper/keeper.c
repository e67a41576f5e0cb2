/*
 * keeper.c: the keyring, and sealing, opening, re-sealing, re-wrapping and
 * signing with key records; see keeper.h. APNs tokens and their persisted
 * copies are in keeper_apns.c, the profile rules in profile.c.
 *
 * The record memo. Signing needs the Key ID, Team ID, services and public
 * point from the record's authenticated metadata, and the first open of a
 * record also compares its scalar with that point. Decoding the metadata
 * (strict JSON, re-encoded to prove it canonical) and the point check
 * would cost more than the signature on every request, so the facts of a
 * record whose exact bytes (envelope and AAD) opened and passed the point
 * check are kept, direct-mapped by a hash of the envelope. AES-GCM makes an
 * envelope that opens under an AAD always yield the same scalar, so the
 * same bytes need neither again: a changed, moved or relabelled record, a
 * re-seal or another master key are other bytes. Every signature still
 * opens the envelope (under the AAD given), so a remembered entry never
 * lets bytes sign that do not open.
 */
#include "keeper/keeper_internal.h"
#include "keeper/keeper_test.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/envelope.h"
#include "crypto/jwt.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "keeper/profile.h"

_Static_assert(KEY_RECORD_ENVELOPE_MAX ==
    ENVELOPE_OVERHEAD + ENVELOPE_MAX_PAYLOAD,
    "common/keyrecord.h's envelope bound is crypto/envelope.h's");
_Static_assert(KEY_RECORD_AAD_MAX <= ENVELOPE_MAX_AAD,
    "a record's largest AAD fits an envelope's");
_Static_assert(KEY_RECORD_PUBLIC_BYTES == P8_PUBLIC_BYTES,
    "a record's point is a P-256 point");

/* Memo slots (power of two), and the largest envelope a slot holds: a
 * 32-byte scalar's. */
#define KEEPER_MEMO_SLOTS 1024
#define KEEPER_MEMO_ENV_MAX (ENVELOPE_OVERHEAD + P8_SCALAR_BYTES)

struct kmemo {
	size_t env_len;                 /* 0: empty */
	uint8_t env[KEEPER_MEMO_ENV_MAX];
	uint8_t *aad;                   /* malloc'd */
	size_t aad_len;
	struct keeper_facts facts;
};

static const char *const step_names[] = {
	[KEEPER_STEP_NONE] = NULL,
	[KEEPER_STEP_AAD] = "aad",
	[KEEPER_STEP_OPEN] = "open",
	[KEEPER_STEP_LENGTH] = "scalar_length",
	[KEEPER_STEP_SCALAR] = "public_point",
};

const char *
keeper_step_name(enum keeper_step step)
{
	return (unsigned int)step < sizeof(step_names) / sizeof(step_names[0]) ?
	    step_names[step] : NULL;
}

/* --- life cycle and the keyring --- */

int
keeper_ready(struct keeper *k)
{
	if (k == NULL)
		return 0;
	return k->remote != NULL ? keeper_remote_ready(k->remote) : 1;
}

int
keeper_pid(struct keeper *k)
{
	return k != NULL && k->remote != NULL ? keeper_remote_pid(k->remote) :
	    0;
}

uint64_t
keeper_restarts(struct keeper *k)
{
	return k != NULL && k->remote != NULL ?
	    keeper_remote_restarts(k->remote) : 0;
}

int
keeper_pipe_open(struct keeper *k, struct keeper_pipe **out)
{
	if (out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*out = NULL;
	if (k == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (k->remote == NULL)
		return P8V_ERR_UNSUPPORTED;
	return keeper_remote_pipe_open(k->remote, out);
}

int
keeper_create(struct keeper **out)
{
	struct keeper *k = NULL;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (out == NULL)
		goto out;
	*out = NULL;
	if ((r = secmem_init()) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->memo = calloc(KEEPER_MEMO_SLOTS, sizeof(*k->memo))) == NULL ||
	    (k->ring = calloc(1, sizeof(*k->ring))) == NULL)
		goto out;
	r = P8V_ERR_INTERNAL;
	if (pthread_mutex_init(&k->lock, NULL) != 0)
		goto out;
	k->have_lock = 1;
	if (pthread_mutex_init(&k->memo_lock, NULL) != 0)
		goto out;
	k->have_memo_lock = 1;
	if ((r = master_keyring_create(&k->ring->keys)) != 0)
		goto out;
	k->ring->refs = 1;
	*out = k;
	k = NULL;
	r = 0;
 out:
	keeper_destroy(k);
	return r;
}

static void
memo_clear(struct keeper *k)
{
	size_t i;

	for (i = 0; i < KEEPER_MEMO_SLOTS; i++) {
		free(k->memo[i].aad);
		memset(&k->memo[i], 0, sizeof(k->memo[i]));
	}
}

void
keeper_destroy(struct keeper *k)
{
	if (k != NULL && k->remote != NULL) {
		keeper_remote_destroy(k->remote);
		free(k);
		return;
	}
	if (k == NULL)
		return;
	if (k->memo != NULL) {
		memo_clear(k);
		free(k->memo);
	}
	if (k->ring != NULL) {
		/* No call may be running: this is the last reference. */
		master_keyring_destroy(k->ring->keys);
		free(k->ring);
	}
	if (k->have_memo_lock)
		pthread_mutex_destroy(&k->memo_lock);
	if (k->have_lock)
		pthread_mutex_destroy(&k->lock);
	free(k);
}

struct keeper_ring *
keeper_ring_get(struct keeper *k)
{
	struct keeper_ring *ring;

	pthread_mutex_lock(&k->lock);
	ring = k->ring;
	ring->refs++;
	pthread_mutex_unlock(&k->lock);
	return ring;
}

void
keeper_ring_put(struct keeper *k, struct keeper_ring *ring)
{
	unsigned long left;

	if (ring == NULL)
		return;
	pthread_mutex_lock(&k->lock);
	left = --ring->refs;
	pthread_mutex_unlock(&k->lock);
	if (left == 0) {
		/* Replaced, and its last user is done: wipe it, outside the
		 * lock (sodium_free is slow-ish). */
		master_keyring_destroy(ring->keys);
		free(ring);
	}
}

static void
info_of(const struct master_key *mk, struct keeper_key_info *info)
{
	memset(info, 0, sizeof(*info));
	memcpy(info->id, master_key_id(mk), MASTER_KEY_ID_BYTES);
	memcpy(info->id_hex, master_key_id_hex(mk), MASTER_KEY_ID_HEX);
	memcpy(info->check, master_key_check(mk), MASTER_KEY_CHECK_BYTES);
}

/* Add mk (owned, also on failure) to k's current ring. */
static int
add_key(struct keeper *k, struct master_key *mk, struct keeper_key_info *info)
{
	struct keeper_key_info tmp;
	int r;

	info_of(mk, &tmp);
	pthread_mutex_lock(&k->lock);
	r = master_keyring_add(k->ring->keys, mk);
	pthread_mutex_unlock(&k->lock);
	if (r == 0 && info != NULL)
		*info = tmp;
	return r;
}

int
keeper_load_file(struct keeper *k, const char *path,
    struct keeper_key_info *info)
{
	struct master_key *mk = NULL;
	int r;
	/* A keeper process loads its own files (keeper_start). */
	if (k != NULL && k->remote != NULL)
		return P8V_ERR_INVALID_ARGUMENT;

	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (k == NULL || path == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = master_key_load_file(path, &mk)) != 0)
		return r;
	return add_key(k, mk, info);
}

int
keeper_load_credential(struct keeper *k, struct keeper_key_info *info)
{
	struct master_key *mk = NULL;
	int r;
	if (k != NULL && k->remote != NULL)
		return P8V_ERR_INVALID_ARGUMENT;

	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (k == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = master_key_load_credential(&mk)) != 0)
		return r;
	return add_key(k, mk, info);
}

int
keeper_test_add_raw(struct keeper *k, const uint8_t *raw, size_t len,
    struct keeper_key_info *info)
{
	struct master_key *mk = NULL;
	int r;

	if (k == NULL || raw == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = master_key_create(raw, len, &mk)) != 0)
		return r;
	return add_key(k, mk, info);
}

int
keeper_set_primary(struct keeper *k, const uint8_t id[MASTER_KEY_ID_BYTES])
{
	int r;
	if (k != NULL && k->remote != NULL)
		return id != NULL ? keeper_remote_set_primary(k->remote, id) :
		    P8V_ERR_INVALID_ARGUMENT;

	if (k == NULL || id == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	pthread_mutex_lock(&k->lock);
	r = master_keyring_set_primary(k->ring->keys, id);
	pthread_mutex_unlock(&k->lock);
	return r;
}

int
keeper_status(struct keeper *k, struct keeper_status *st)
{
	struct keeper_ring *ring;
	const struct master_key *primary;
	size_t i;
	if (k != NULL && k->remote != NULL)
		return st != NULL ? keeper_remote_status(k->remote, st) :
		    P8V_ERR_INVALID_ARGUMENT;

	if (st != NULL)
		memset(st, 0, sizeof(*st));
	if (k == NULL || st == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	ring = keeper_ring_get(k);
	primary = master_keyring_primary(ring->keys);
	for (i = 0; i < master_keyring_count(ring->keys) &&
	    i < KEEPER_KEYS_MAX; i++) {
		const struct master_key *mk = master_keyring_get(ring->keys, i);

		info_of(mk, &st->keys[i]);
		if (mk == primary)
			st->primary = i;
	}
	st->n = i;
	keeper_ring_put(k, ring);
	return 0;
}

int
keeper_has_key(struct keeper *k, const uint8_t id[MASTER_KEY_ID_BYTES])
{
	struct keeper_ring *ring;
	int found;

	if (k == NULL || id == NULL)
		return 0;
	if (k->remote != NULL) {
		struct keeper_status st;
		size_t i;

		if (keeper_remote_status(k->remote, &st) != 0)
			return 0;
		for (i = 0; i < st.n; i++)
			if (memcmp(st.keys[i].id, id, MASTER_KEY_ID_BYTES) == 0)
				return 1;
		return 0;
	}
	ring = keeper_ring_get(k);
	found = master_keyring_find(ring->keys, id) != NULL;
	keeper_ring_put(k, ring);
	return found;
}

int
keeper_replace(struct keeper *k, struct keeper *fresh)
{
	struct keeper_ring *next, *prev;
	int r = P8V_ERR_INVALID_ARGUMENT;
	if (k != NULL && fresh != NULL && (k->remote != NULL ||
	    fresh->remote != NULL)) {
		int rr = P8V_ERR_INVALID_ARGUMENT;

		if (k->remote != NULL && fresh->remote != NULL)
			rr = keeper_remote_replace(k->remote, fresh->remote);
		keeper_destroy(fresh);
		return rr;
	}

	if (k == NULL || fresh == NULL || k == fresh)
		goto out;
	r = P8V_ERR_NO_MASTER_KEY;
	if (master_keyring_primary(fresh->ring->keys) == NULL)
		goto out;
	/* fresh is not shared: its ring moves as it is. */
	next = fresh->ring;
	fresh->ring = NULL;
	pthread_mutex_lock(&k->lock);
	prev = k->ring;
	k->ring = next;
	pthread_mutex_unlock(&k->lock);
	/* Calls still using prev keep it until they end. */
	keeper_ring_put(k, prev);
	r = 0;
 out:
	keeper_destroy(fresh);
	return r;
}

/* --- the record memo --- */

static struct kmemo *
memo_slot_of(struct keeper *k, const uint8_t *env, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ env[i]) * 16777619u;
	return &k->memo[h & (KEEPER_MEMO_SLOTS - 1)];
}

/* 1 and *f filled if these exact bytes passed before. */
static int
memo_has(struct keeper *k, const struct keeper_record *rec,
    struct keeper_facts *f)
{
	struct kmemo *m;
	int found;

	if (rec->env_len > KEEPER_MEMO_ENV_MAX)
		return 0;
	m = memo_slot_of(k, rec->env, rec->env_len);
	pthread_mutex_lock(&k->memo_lock);
	found = m->env_len == rec->env_len &&
	    memcmp(m->env, rec->env, rec->env_len) == 0 &&
	    m->aad_len == rec->aad_len &&
	    memcmp(m->aad, rec->aad, rec->aad_len) == 0;
	if (found)
		*f = m->facts;
	pthread_mutex_unlock(&k->memo_lock);
	return found;
}

static void
memo_add(struct keeper *k, const struct keeper_record *rec,
    const struct keeper_facts *f)
{
	struct kmemo *m;
	uint8_t *copy;

	if (rec->env_len > KEEPER_MEMO_ENV_MAX ||
	    (copy = malloc(rec->aad_len > 0 ? rec->aad_len : 1)) == NULL)
		return;
	memcpy(copy, rec->aad, rec->aad_len);
	m = memo_slot_of(k, rec->env, rec->env_len);
	pthread_mutex_lock(&k->memo_lock);
	free(m->aad);
	memcpy(m->env, rec->env, rec->env_len);
	m->env_len = rec->env_len;
	m->aad = copy;
	m->aad_len = rec->aad_len;
	m->facts = *f;
	pthread_mutex_unlock(&k->memo_lock);
}

/* The facts a record's AAD states (not yet authenticated). */
static int
facts_of_aad(const struct keeper_record *rec, struct keeper_facts *f)
{
	struct key_record clear;
	int r;

	if ((r = key_record_from_aad(rec->aad, rec->aad_len, &clear)) != 0)
		return r;
	memset(f, 0, sizeof(*f));
	memcpy(f->app, clear.app, sizeof(f->app));
	memcpy(f->key_id, clear.key_id, sizeof(f->key_id));
	memcpy(f->team_id, clear.team_id, sizeof(f->team_id));
	memcpy(f->fingerprint, clear.fingerprint, sizeof(f->fingerprint));
	memcpy(f->point, clear.public_point, sizeof(f->point));
	f->services = clear.services;
	key_record_free(&clear);
	return 0;
}

static int
record_ok(const struct keeper_record *rec)
{
	return rec != NULL && rec->aad != NULL && rec->env != NULL &&
	    rec->env_len > 0 && rec->aad_len > 0;
}

int
keeper_open_record(struct keeper *k, struct keeper_ring *ring,
    const struct keeper_record *rec, struct keeper_facts *f,
    uint8_t **scalar, enum keeper_step *step)
{
	size_t len = 0;
	int known, r;

	*scalar = NULL;
	*step = KEEPER_STEP_AAD;
	if (!(known = memo_has(k, rec, f)) &&
	    (r = facts_of_aad(rec, f)) != 0) {
		if (r != P8V_ERR_ALLOC)
			r = P8V_ERR_INTEGRITY;
		return r;
	}
	*step = KEEPER_STEP_OPEN;
	if ((r = envelope_open(ring->keys, rec->aad, rec->aad_len, rec->env,
	    rec->env_len, scalar, &len)) != 0)
		return r;
	*step = KEEPER_STEP_LENGTH;
	r = P8V_ERR_INTEGRITY;
	if (len != P8_SCALAR_BYTES)
		goto fail;
	*step = KEEPER_STEP_NONE;
	if (known)
		return 0;
	*step = KEEPER_STEP_SCALAR;
	r = p8_scalar_check(*scalar, f->point);
	if (r == P8V_ERR_P8_BAD_SCALAR || r == P8V_ERR_P8_PUBKEY_MISMATCH)
		r = P8V_ERR_INTEGRITY;
	if (r != 0)
		goto fail;
	*step = KEEPER_STEP_NONE;
	memo_add(k, rec, f);
	return 0;
 fail:
	secmem_free(*scalar); /* wipes */
	*scalar = NULL;
	return r;
}

/* --- records --- */

int
keeper_vouch(struct keeper *k, const struct keeper_record *rec,
    enum keeper_step *step)
{
	struct keeper_ring *ring;
	struct keeper_facts f;
	enum keeper_step s = KEEPER_STEP_NONE;
	uint8_t *scalar = NULL;
	int r;
	if (k != NULL && k->remote != NULL && rec != NULL)
		return keeper_remote_vouch(k->remote, rec, step);

	if (k == NULL || !record_ok(rec)) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	ring = keeper_ring_get(k);
	r = keeper_open_record(k, ring, rec, &f, &scalar, &s);
	keeper_ring_put(k, ring);
	secmem_free(scalar); /* wipes */
 out:
	if (step != NULL)
		*step = r == 0 ? KEEPER_STEP_NONE : s;
	return r;
}

int
keeper_seal(struct keeper *k, const uint8_t *p8, size_t p8_len,
    struct key_record *rec, uint8_t mk_id[MASTER_KEY_ID_BYTES])
{
	struct keeper_ring *ring = NULL;
	const struct master_key *mk;
	struct p8_key *key = NULL;
	uint8_t *scalar = NULL, *aad = NULL, *env = NULL;
	size_t aad_len = 0, env_len = 0;
	int r = P8V_ERR_INVALID_ARGUMENT;
	if (k != NULL && k->remote != NULL && rec != NULL &&
	    (p8 != NULL || p8_len == 0))
		return keeper_remote_seal(k->remote, p8, p8_len, rec, mk_id);

	if (k == NULL || p8 == NULL || rec == NULL)
		goto out;
	/* The key itself: every P8V_ERR_P8_* goes back unchanged. */
	if ((r = p8_parse(p8, p8_len, &key)) != 0)
		goto out;
	if ((r = p8_key_public_point(key, rec->public_point)) != 0 ||
	    (r = p8_public_fingerprint(rec->public_point,
	    rec->fingerprint)) != 0)
		goto out;
	r = P8V_ERR_SECMEM;
	if ((scalar = secmem_alloc_short(P8_SCALAR_BYTES)) == NULL)
		goto out;
	if ((r = p8_key_export_scalar(key, scalar)) != 0)
		goto out;
	p8_key_destroy(key);
	key = NULL;
	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0)
		goto out;
	r = P8V_ERR_NO_MASTER_KEY;
	ring = keeper_ring_get(k);
	if ((mk = master_keyring_primary(ring->keys)) == NULL)
		goto out;
	if ((r = envelope_seal(mk, aad, aad_len, scalar, P8_SCALAR_BYTES,
	    &env, &env_len)) != 0)
		goto out;
	if (mk_id != NULL)
		memcpy(mk_id, master_key_id(mk), MASTER_KEY_ID_BYTES);
	free(rec->envelope);
	rec->envelope = env;
	rec->envelope_len = env_len;
	env = NULL;
	r = 0;
 out:
	if (r != 0 && rec != NULL) {
		memset(rec->public_point, 0, sizeof(rec->public_point));
		memset(rec->fingerprint, 0, sizeof(rec->fingerprint));
		free(rec->envelope);
		rec->envelope = NULL;
		rec->envelope_len = 0;
	}
	if (k != NULL)
		keeper_ring_put(k, ring);
	p8_key_destroy(key);
	secmem_free(scalar);
	free(aad);
	free(env);
	return r;
}

/* 1 if rec changes only what a re-seal may change of was. */
static int
same_identity(const struct key_record *was, const struct key_record *rec)
{
	return strcmp(was->app, rec->app) == 0 &&
	    strcmp(was->key_id, rec->key_id) == 0 &&
	    strcmp(was->team_id, rec->team_id) == 0 &&
	    strcmp(was->fingerprint, rec->fingerprint) == 0 &&
	    memcmp(was->public_point, rec->public_point,
	    KEY_RECORD_PUBLIC_BYTES) == 0 &&
	    was->created_at == rec->created_at &&
	    strcmp(was->created_by, rec->created_by) == 0;
}

int
keeper_reseal(struct keeper *k, const struct keeper_record *old,
    const struct key_record *rec, uint8_t **env, size_t *env_len,
    uint8_t mk_id[MASTER_KEY_ID_BYTES])
{
	struct keeper_ring *ring = NULL;
	struct key_record was = { 0 };
	const struct master_key *mk;
	uint8_t *pt = NULL, *aad = NULL;
	size_t pt_len = 0, aad_len = 0;
	int r = P8V_ERR_INVALID_ARGUMENT;
	if (k != NULL && k->remote != NULL && old != NULL && rec != NULL &&
	    env != NULL && env_len != NULL) {
		*env = NULL;
		*env_len = 0;
		return keeper_remote_reseal(k->remote, old, rec, env, env_len,
		    mk_id);
	}

	if (env != NULL)
		*env = NULL;
	if (env_len != NULL)
		*env_len = 0;
	if (k == NULL || !record_ok(old) || rec == NULL || env == NULL ||
	    env_len == NULL)
		goto out;
	/* What the old record says it is; authenticated by the open below. */
	if ((r = key_record_from_aad(old->aad, old->aad_len, &was)) != 0) {
		if (r != P8V_ERR_ALLOC)
			r = P8V_ERR_INTEGRITY;
		goto out;
	}
	r = P8V_ERR_INVALID_ARGUMENT;
	if (!same_identity(&was, rec))
		goto out;
	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0)
		goto out;
	ring = keeper_ring_get(k);
	r = P8V_ERR_NO_MASTER_KEY;
	if ((mk = master_keyring_primary(ring->keys)) == NULL)
		goto out;
	if ((r = envelope_open(ring->keys, old->aad, old->aad_len, old->env,
	    old->env_len, &pt, &pt_len)) != 0)
		goto out;
	if ((r = envelope_seal(mk, aad, aad_len, pt, pt_len, env,
	    env_len)) != 0)
		goto out;
	if (mk_id != NULL)
		memcpy(mk_id, master_key_id(mk), MASTER_KEY_ID_BYTES);
	r = 0;
 out:
	if (ring != NULL)
		keeper_ring_put(k, ring);
	secmem_free(pt); /* wipes */
	key_record_free(&was);
	free(aad);
	return r;
}

/* The key a rewrap seals under: target's, or the primary. */
const struct master_key *
keeper_target(const struct master_keyring *ring, const uint8_t *target,
    int *err)
{
	const struct master_key *mk;

	if (target == NULL) {
		mk = master_keyring_primary(ring);
		*err = P8V_ERR_NO_MASTER_KEY;
	} else {
		mk = master_keyring_find(ring, target);
		*err = P8V_ERR_NOT_FOUND;
	}
	return mk;
}

int
keeper_rewrap(struct keeper *k, const struct keeper_record *rec,
    const uint8_t *target, uint8_t **env, size_t *env_len)
{
	struct keeper_ring *ring = NULL;
	const struct master_key *mk;
	int r = P8V_ERR_INVALID_ARGUMENT;
	if (k != NULL && k->remote != NULL && rec != NULL && env != NULL &&
	    env_len != NULL)
		return keeper_remote_rewrap(k->remote, rec, target, env,
		    env_len);

	if (env != NULL)
		*env = NULL;
	if (env_len != NULL)
		*env_len = 0;
	if (k == NULL || !record_ok(rec) || env == NULL || env_len == NULL)
		goto out;
	/* Only a record's envelope: its AAD names it one. */
	r = P8V_ERR_INTEGRITY;
	if (rec->aad_len < sizeof(KEY_RECORD_AAD_LABEL) ||
	    memcmp(rec->aad, KEY_RECORD_AAD_LABEL,
	    sizeof(KEY_RECORD_AAD_LABEL)) != 0)
		goto out;
	ring = keeper_ring_get(k);
	if ((mk = keeper_target(ring->keys, target, &r)) == NULL)
		goto out;
	r = envelope_rewrap(ring->keys, mk, rec->aad, rec->aad_len, rec->env,
	    rec->env_len, env, env_len);
 out:
	if (ring != NULL)
		keeper_ring_put(k, ring);
	return r;
}

/* --- signing --- */

void
keeper_token_finish(struct keeper_token *t)
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
keeper_sign_profile(struct keeper *k, const struct keeper_record *rec,
    const struct keeper_profile *p, struct keeper_token *out,
    enum keeper_step *step)
{
	const struct profile_rule *rule;
	struct keeper_ring *ring = NULL;
	struct keeper_facts f;
	enum keeper_step s = KEEPER_STEP_NONE;
	json_t *header = NULL, *claims = NULL, *exp;
	uint8_t *scalar = NULL;
	int64_t now;
	int r = P8V_ERR_INVALID_ARGUMENT;
	if (k != NULL && k->remote != NULL && rec != NULL && p != NULL &&
	    out != NULL)
		return keeper_remote_sign_profile(k->remote, rec, p, out, step);

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (k == NULL || !record_ok(rec) || p == NULL || out == NULL)
		goto out;
	/* The fields first: nothing is opened for a request refused. */
	if ((r = keeper_profile_check(p)) != 0)
		goto out;
	rule = profile_rule_of(p->kind);
	ring = keeper_ring_get(k);
	if ((r = keeper_open_record(k, ring, rec, &f, &scalar, &s)) != 0)
		goto out;
	r = P8V_ERR_SERVICE_NOT_ALLOWED;
	if ((f.services & rule->service) == 0)
		goto out;
	now = clock_wall_now();
	if ((r = keeper_profile_build(p, f.key_id, f.team_id, now, &header,
	    &claims)) != 0)
		goto out;
	if ((r = jwt_sign_es256_scalar(scalar, header, claims,
	    &out->token)) != 0)
		goto out;
	exp = json_object_get(claims, "exp");
	memcpy(out->key_id, f.key_id, sizeof(out->key_id));
	memcpy(out->team_id, f.team_id, sizeof(out->team_id));
	out->issued_at = now;
	out->expires_at = json_is_integer(exp) ?
	    (int64_t)json_integer_value(exp) : now + KEEPER_DEFAULT_LIFETIME_S;
	r = 0;
 out:
	if (ring != NULL)
		keeper_ring_put(k, ring);
	secmem_free(scalar); /* wipes */
	json_decref(header);
	json_decref(claims);
	if (r != 0)
		keeper_token_finish(out);
	if (step != NULL)
		*step = r == 0 ? KEEPER_STEP_NONE : s;
	return r;
}
