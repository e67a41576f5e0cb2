/*
 * keys.c: key management at the vault boundary: upload (validate, seal,
 * store), metadata, activation and revocation. Every change is one store
 * transaction together with its audit event.
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "store/audit.h"
#include "common/ids.h"
#include "store/appindex.h"
#include "vault/quota.h"
#include "vault/tokcache.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"

/* --- the metadata object --- */

static json_t *
services_array(uint32_t services)
{
	json_t *a = json_array();
	uint32_t bit;

	if (a == NULL)
		return NULL;
	for (bit = 1; bit != 0 && bit <= KEY_SERVICE_ALL; bit <<= 1) {
		if ((services & bit) == 0)
			continue;
		if (json_array_append_new(a,
		    json_string(key_service_name(bit))) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *
topics_array(const struct key_record *rec)
{
	json_t *a = json_array();
	size_t i;

	if (a == NULL)
		return NULL;
	for (i = 0; i < rec->n_topics; i++) {
		if (json_array_append_new(a, json_string(rec->topics[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int
vault_key_meta_json(const struct key_record *rec, json_t **out)
{
	char created[VAULT_TIME_RFC3339_BYTES], updated[VAULT_TIME_RFC3339_BYTES];
	char mk_hex[MASTER_KEY_ID_HEX + 1];
	uint8_t mk_id[MASTER_KEY_ID_BYTES];
	char *pem = NULL, *jwk_text = NULL;
	json_t *o = NULL, *jwk = NULL, *mk = NULL;
	size_t i;
	int bad = 0, r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		*out = NULL;
	if (rec == NULL || out == NULL)
		goto out;
	if ((r = vault_time_rfc3339(rec->created_at, created)) != 0 ||
	    (r = vault_time_rfc3339(rec->updated_at, updated)) != 0)
		goto out;
	if (rec->envelope != NULL) {
		if ((r = envelope_master_key_id(rec->envelope,
		    rec->envelope_len, mk_id)) != 0)
			goto out;
		for (i = 0; i < MASTER_KEY_ID_BYTES; i++) {
			mk_hex[2 * i] = "0123456789abcdef"[mk_id[i] >> 4];
			mk_hex[2 * i + 1] = "0123456789abcdef"[mk_id[i] & 15];
		}
		mk_hex[MASTER_KEY_ID_HEX] = '\0';
	}
	if ((r = p8_public_pem(rec->public_point, &pem)) != 0 ||
	    (r = p8_public_jwk(rec->public_point, rec->key_id, &jwk_text)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((jwk = json_loads(jwk_text, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		goto out;
	mk = rec->envelope != NULL ? json_string(mk_hex) : json_null();
	if ((o = json_object()) == NULL)
		goto out;
	/* json_object_set_new steals the value, also when it fails, and fails
	 * on a NULL value (an allocation that failed). */
	bad |= json_object_set_new(o, "app", json_string(rec->app));
	bad |= json_object_set_new(o, "key_id", json_string(rec->key_id));
	bad |= json_object_set_new(o, "team_id", json_string(rec->team_id));
	bad |= json_object_set_new(o, "environment",
	    json_string(key_env_name(rec->environment)));
	bad |= json_object_set_new(o, "services", services_array(rec->services));
	bad |= json_object_set_new(o, "topics", topics_array(rec));
	bad |= json_object_set_new(o, "state",
	    json_string(key_state_name(rec->state)));
	bad |= json_object_set_new(o, "fingerprint",
	    json_string(rec->fingerprint));
	bad |= json_object_set_new(o, "public_key_pem", json_string(pem));
	bad |= json_object_set_new(o, "public_key_jwk", jwk);
	jwk = NULL;
	bad |= json_object_set_new(o, "master_key_id", mk);
	mk = NULL;
	bad |= json_object_set_new(o, "created_at", json_string(created));
	bad |= json_object_set_new(o, "created_by",
	    json_string(rec->created_by));
	bad |= json_object_set_new(o, "updated_at", json_string(updated));
	bad |= json_object_set_new(o, "version",
	    json_integer((json_int_t)rec->version));
	if (bad)
		goto out;
	*out = o;
	o = NULL;
	r = 0;
 out:
	json_decref(o);
	json_decref(jwk);
	json_decref(mk);
	free(pem);
	free(jwk_text);
	return r;
}

/* --- lists of Key IDs (the keys a change demotes) --- */

struct keylist {
	char (*ids)[IDS_APPLE_ID_LEN + 1];
	size_t n, cap;
};

static int
keylist_add(struct keylist *l, const char *key_id)
{
	char (*grown)[IDS_APPLE_ID_LEN + 1];
	size_t cap;

	if (l->n == l->cap) {
		cap = l->cap == 0 ? 4 : l->cap * 2;
		if ((grown = realloc(l->ids, cap * sizeof(*l->ids))) == NULL)
			return P8V_ERR_ALLOC;
		l->ids = grown;
		l->cap = cap;
	}
	memcpy(l->ids[l->n], key_id, IDS_APPLE_ID_LEN + 1);
	l->n++;
	return 0;
}

static void
keylist_free(struct keylist *l)
{
	free(l->ids);
	memset(l, 0, sizeof(*l));
}

static json_t *
keylist_json(const struct keylist *l)
{
	json_t *a = json_array();
	size_t i;

	if (a == NULL)
		return NULL;
	for (i = 0; i < l->n; i++) {
		if (json_array_append_new(a, json_string(l->ids[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* Copy a validated id (its length checked) into a record field. */
static void
copy_id(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	memcpy(dst, src, n < size ? n : size - 1);
	dst[n < size ? n : size - 1] = '\0';
}

/* --- scanning an app for a change --- */

struct scan {
	const struct key_record *subject; /* the key being added/activated */
	int check_material;               /* refuse its fingerprint elsewhere */
	struct keylist demote;            /* ACTIVE keys that overlap */
	uint64_t live;                    /* other keys, not revoked */
	struct store_txn *txn;            /* for scan_active */
	char holder[IDS_APPLE_ID_LEN + 1]; /* KEY_EXISTS: the Key ID with
	                                     this material */
};

static int
scan_one(const struct key_record *rec, void *arg)
{
	struct scan *s = arg;

	if (strcmp(rec->key_id, s->subject->key_id) == 0)
		return 0;
	if (rec->state != KEY_STATE_REVOKED)
		s->live++;
	/* One key has one Key ID at Apple: the same material under another
	 * Key ID would sign tokens with a kid that does not match. */
	if (s->check_material &&
	    strcmp(rec->fingerprint, s->subject->fingerprint) == 0) {
		copy_id(s->holder, sizeof(s->holder), rec->key_id);
		return P8V_ERR_KEY_EXISTS;
	}
	if (rec->state == KEY_STATE_ACTIVE &&
	    vault_env_overlap(rec->environment, s->subject->environment))
		return keylist_add(&s->demote, rec->key_id);
	return 0;
}

/* appindex_active_cb: an ACTIVE key the index names, demoted if its
 * environment overlaps the subject's; read first, so that a stale entry
 * (the record gone, or no longer active) changes nothing. */
static int
scan_active(const char *key_id, enum key_env env, void *arg)
{
	struct scan *s = arg;
	struct key_record rec;
	int r;

	(void)env;
	if (strcmp(key_id, s->subject->key_id) == 0)
		return 0;
	r = key_record_get(s->txn, s->subject->app, key_id, &rec);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	if (rec.state == KEY_STATE_ACTIVE &&
	    vault_env_overlap(rec.environment, s->subject->environment))
		r = keylist_add(&s->demote, rec.key_id);
	key_record_free(&rec);
	return r;
}

/*
 * What a change of s->subject in app must know: its fingerprint under
 * another Key ID of the app (check_material: P8V_ERR_KEY_EXISTS), the
 * ACTIVE keys it overlaps (s->demote) and the keys that are not revoked
 * (s->live). Under the single writer, so from the per-app index
 * (store/appindex.h), reading only the records it names: the work does
 * not grow with the app's history. Before the index is built (a vault of
 * an earlier release, between start and appindex_build): every record of
 * the app, decoded.
 */
static int
scan_app(struct store_txn *txn, const char *app, struct scan *s)
{
	char other_id[IDS_APPLE_ID_LEN + 1];
	struct key_record other;
	int r;

	if ((r = appindex_ready(txn)) < 0)
		return r;
	if (r == 0)
		return key_record_list(txn, app, scan_one, s);
	s->txn = txn;
	if (s->check_material) {
		r = appindex_fingerprint(txn, app, s->subject->fingerprint,
		    other_id);
		if (r == 0 && strcmp(other_id, s->subject->key_id) != 0) {
			r = key_record_get(txn, app, other_id, &other);
			if (r == 0 && strcmp(other.fingerprint,
			    s->subject->fingerprint) == 0) {
				copy_id(s->holder, sizeof(s->holder),
				    other.key_id);
				r = P8V_ERR_KEY_EXISTS;
			}
			key_record_free(&other);
		}
		if (r != 0 && r != P8V_ERR_NOT_FOUND)
			return r;
	}
	if ((r = appindex_active(txn, app, scan_active, s)) != 0)
		return r;
	return appindex_live(txn, app, &s->live);
}

static int
set_standby(struct key_record *rec, void *arg)
{
	(void)arg;
	rec->state = KEY_STATE_STANDBY;
	return 0;
}

static int
set_active(struct key_record *rec, void *arg)
{
	(void)arg;
	rec->state = KEY_STATE_ACTIVE;
	return 0;
}

static int
set_revoked(struct key_record *rec, void *arg)
{
	(void)arg;
	rec->state = KEY_STATE_REVOKED;
	key_record_drop_envelope(rec);
	return 0;
}

/* Change a record in txn (key_record_update), re-sealed by the keeper. */
static int
update(struct store_txn *txn, struct keeper *keeper, const char *app,
    const char *key_id, int64_t now, int (*mutate)(struct key_record *,
    void *), struct key_record *out)
{
	struct vault_reseal rs = { keeper, txn };

	return key_record_update(txn, vault_reseal, &rs, app, key_id, now,
	    mutate, NULL, out);
}

/* Demote every key in l to STANDBY (each re-sealed by the keeper). */
static int
demote_all(struct store_txn *txn, struct keeper *keeper, const char *app,
    const struct keylist *l, int64_t now)
{
	size_t i;
	int r;

	for (i = 0; i < l->n; i++)
		if ((r = update(txn, keeper, app, l->ids[i], now, set_standby,
		    NULL)) != 0)
			return r;
	return 0;
}

/* Append the audit event of a change: what, the record, the keys it
 * demoted. */
static int
audit_change(struct store_txn *txn, int64_t now, const char *actor,
    const char *what, const struct key_record *rec, const char *result,
    const struct keylist *demoted)
{
	json_t *ev;
	int r = P8V_ERR_ALLOC;

	if ((ev = vault_audit_event(now, actor, what, rec, result)) == NULL)
		return P8V_ERR_ALLOC;
	if (json_object_set_new(ev, "state",
	    json_string(key_state_name(rec->state))) != 0)
		goto out;
	if (demoted != NULL &&
	    json_object_set_new(ev, "demoted", keylist_json(demoted)) != 0)
		goto out;
	r = store_audit_append(txn, ev, NULL);
 out:
	json_decref(ev);
	return r;
}

/* --- upload --- */

struct upload {
	struct vault *v;
	const struct key_record *rec;   /* sealed, ready to store */
	uint8_t mk_id[MASTER_KEY_ID_BYTES]; /* sealed rec's envelope */
	const char *actor;
	int64_t now;
	struct vault_upload_check *check; /* results to keep with the key */
	/* Results; reset at the start of every run (store_write may re-run). */
	int existed;
	struct key_record stored;
	struct scan scan;
};

static int
upload_txn(struct store_txn *txn, void *arg)
{
	struct upload *u = arg;
	const struct key_record *rec = u->rec;
	struct key_record old = { 0 };
	int conflict = 0, r;

	u->existed = 0;
	key_record_free(&u->stored);
	keylist_free(&u->scan.demote);
	u->scan.subject = rec;
	u->scan.check_material = 1;
	u->scan.live = 0;
	u->scan.holder[0] = '\0';

	r = key_record_get(txn, rec->app, rec->key_id, &old);
	if (r == 0) {
		if (old.state == KEY_STATE_REVOKED)
			r = P8V_ERR_KEY_REVOKED; /* a Key ID is never reused */
		else if (strcmp(old.fingerprint, rec->fingerprint) != 0) {
			copy_id(u->scan.holder, sizeof(u->scan.holder),
			    old.key_id);
			r = P8V_ERR_KEY_EXISTS;
		}
		else if (strcmp(old.team_id, rec->team_id) != 0)
			r = P8V_ERR_KEY_IDENTITY_CONFLICT; /* same key */
		else {
			/* The same upload again: nothing changes. */
			u->existed = 1;
			u->stored = old;
			memset(&old, 0, sizeof(old));
		}
		goto out;
	}
	if (r != P8V_ERR_NOT_FOUND)
		goto out;
	/* Apple issues a key to one team under one Key ID: the same material
	 * under other ids, in any app, would sign tokens whose kid or iss
	 * does not belong to it. Found through the fingerprint index. */
	if ((r = key_record_identity_conflict(txn, rec->fingerprint,
	    rec->key_id, rec->team_id, &conflict)) != 0)
		goto out;
	r = P8V_ERR_KEY_IDENTITY_CONFLICT;
	if (conflict)
		goto out;
	if ((r = scan_app(txn, rec->app, &u->scan)) != 0)
		goto out;
	if ((r = vault_quota_new_record(u->v, txn, u->scan.live)) != 0)
		goto out;
	if (rec->state != KEY_STATE_ACTIVE)
		keylist_free(&u->scan.demote);
	if ((r = demote_all(txn, u->v->keeper, rec->app, &u->scan.demote,
	    u->now)) != 0)
		goto out;
	if ((r = key_record_put(txn, rec)) != 0 ||
	    (r = vault_count_wraps(txn, u->mk_id, 1)) != 0)
		goto out;
	if ((r = audit_change(txn, u->now, u->actor, "key.upload", rec,
	    "created", &u->scan.demote)) != 0)
		goto out;
	if ((r = vault_check_upload_txn(txn, u->v, rec, u->actor,
	    u->check)) != 0)
		goto out;
	r = key_record_copy(&u->stored, rec);
 out:
	key_record_free(&old);
	return r;
}

int
vault_key_upload(struct vault *v, const struct vault_upload *up,
    json_t **meta, int *created)
{
	struct key_record rec = { 0 };
	struct vault_upload_check check;
	struct upload u;
	uint32_t services;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&u, 0, sizeof(u));
	memset(&check, 0, sizeof(check));
	u.check = &check;
	if (meta != NULL)
		*meta = NULL;
	if (created != NULL)
		*created = 0;
	if (v == NULL || up == NULL || meta == NULL || created == NULL)
		goto out;
	if ((r = ids_app_valid(up->app)) != 0 ||
	    (r = ids_key_id_valid(up->key_id)) != 0 ||
	    (r = ids_team_id_valid(up->team_id)) != 0)
		goto out;
	r = P8V_ERR_BAD_FIELD;
	if ((unsigned int)up->environment > KEY_ENV_BOTH)
		goto out;
	services = up->services == 0 ? KEY_SERVICE_APNS : up->services;
	if ((services & ~KEY_SERVICE_ALL) != 0)
		goto out;
	r = P8V_ERR_INVALID_ARGUMENT;
	if (up->n_topics > 0 && up->topics == NULL)
		goto out;
	if ((r = key_record_set_topics(&rec, up->topics, up->n_topics)) != 0)
		goto out;
	if ((r = vault_actor_valid(up->actor)) != 0)
		goto out;
	/* Quotas first: what a tenant may not do costs no seal. */
	if ((r = vault_quota_upload_rate(v, up->actor)) != 0 ||
	    (r = vault_quota_new_app(v, up->app, up->actor)) != 0)
		goto out;

	copy_id(rec.app, sizeof(rec.app), up->app);
	copy_id(rec.key_id, sizeof(rec.key_id), up->key_id);
	copy_id(rec.team_id, sizeof(rec.team_id), up->team_id);
	copy_id(rec.created_by, sizeof(rec.created_by), up->actor);
	rec.environment = up->environment;
	rec.services = services;
	rec.state = up->activate ? KEY_STATE_ACTIVE : KEY_STATE_STANDBY;
	rec.created_at = rec.updated_at = clock_wall_now();
	rec.version = 1;

	/* The key itself, parsed, validated and sealed by the keeper (every
	 * P8V_ERR_P8_* goes back unchanged), which fills in its public point
	 * and fingerprint. Sealed before the transaction: store_write may run
	 * its function more than once, and a seal draws fresh randomness
	 * each time. */
	if ((r = keeper_seal(v->keeper, up->p8, up->p8_len, &rec,
	    u.mk_id)) != 0)
		goto out;

	/* The check with Apple, before anything is stored. */
	if (up->check && (r = vault_check_upload(v, &rec, up->actor,
	    &check)) != 0) {
		if (r == P8V_ERR_APPLE_CHECK_FAILED ||
		    r == P8V_ERR_APPLE_UNREACHABLE ||
		    r == P8V_ERR_APPLE_TIMEOUT) {
			*meta = check.answer;
			check.answer = NULL;
		}
		goto out;
	}

	u.v = v;
	u.rec = &rec;
	u.actor = up->actor;
	u.now = rec.created_at;
	if ((r = store_write(v->store, upload_txn, &u)) != 0) {
		if (r == P8V_ERR_KEY_EXISTS && up->exists_key_id != NULL)
			copy_id(up->exists_key_id, IDS_APPLE_ID_LEN + 1,
			    u.scan.holder);
		goto out;
	}
	if (!u.existed)
		vault_check_upload_done(v, &rec, &check);
	if ((r = vault_key_meta_json(&u.stored, meta)) != 0)
		goto out;
	if ((r = vault_checks_attach_read(v, &u.stored, *meta)) != 0) {
		json_decref(*meta);
		*meta = NULL;
		goto out;
	}
	*created = !u.existed;
	/* Advisory, after the commit: a failure to say it fails nothing. */
	if (!u.existed)
		(void)vault_team_warnings(v, &u.stored, *meta);
	if (!u.existed)
		log_fields(LOG_LEVEL_INFO, "key_uploaded",
		    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "app", rec.app,
		    "key_id", rec.key_id, "team_id", rec.team_id,
		    "fingerprint", rec.fingerprint, "state",
		    key_state_name(rec.state), "actor", up->actor),
		    "key %s/%s stored (%s)", rec.app, rec.key_id,
		    key_state_name(rec.state));
	r = 0;
 out:
	key_record_free(&rec);
	key_record_free(&u.stored);
	keylist_free(&u.scan.demote);
	vault_check_upload_finish(&check);
	return r;
}

/* --- reading --- */

struct get {
	const char *app, *key_id;
	struct key_record rec;
	json_t *meta;
};

static int
get_txn(struct store_txn *txn, void *arg)
{
	struct get *g = arg;
	int r;

	key_record_free(&g->rec);
	json_decref(g->meta);
	g->meta = NULL;
	if ((r = key_record_get(txn, g->app, g->key_id, &g->rec)) != 0 ||
	    (r = vault_key_meta_json(&g->rec, &g->meta)) != 0)
		return r;
	return vault_checks_attach(txn, &g->rec, g->meta);
}

int
vault_key_get(struct vault *v, const char *app, const char *key_id,
    json_t **meta)
{
	struct get g;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&g, 0, sizeof(g));
	if (meta != NULL)
		*meta = NULL;
	if (v == NULL || meta == NULL)
		goto out;
	if ((r = ids_app_valid(app)) != 0 ||
	    (r = ids_key_id_valid(key_id)) != 0)
		goto out;
	g.app = app;
	g.key_id = key_id;
	r = store_read(v->store, get_txn, &g);
	if (r == P8V_ERR_NOT_FOUND)
		r = P8V_ERR_KEY_NOT_FOUND;
	if (r != 0)
		goto out;
	*meta = g.meta;
	g.meta = NULL;
 out:
	json_decref(g.meta);
	key_record_free(&g.rec);
	return r;
}

struct list {
	const char *app;
	json_t *array;
	struct store_txn *txn;
};

static int
list_one(const struct key_record *rec, void *arg)
{
	struct list *l = arg;
	json_t *meta;
	int r;

	if ((r = vault_key_meta_json(rec, &meta)) != 0)
		return r;
	if ((r = vault_checks_attach(l->txn, rec, meta)) != 0) {
		json_decref(meta);
		return r;
	}
	return json_array_append_new(l->array, meta) == 0 ? 0 : P8V_ERR_ALLOC;
}

static int
list_txn(struct store_txn *txn, void *arg)
{
	struct list *l = arg;

	l->txn = txn;
	json_array_clear(l->array);
	return key_record_list(txn, l->app, list_one, l);
}

int
vault_key_list(struct vault *v, const char *app, json_t **array)
{
	struct list l = { app, NULL, NULL };
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (array != NULL)
		*array = NULL;
	if (v == NULL || array == NULL)
		goto out;
	if ((r = ids_app_valid(app)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((l.array = json_array()) == NULL)
		goto out;
	if ((r = store_read(v->store, list_txn, &l)) != 0)
		goto out;
	*array = l.array;
	l.array = NULL;
	r = 0;
 out:
	json_decref(l.array);
	return r;
}

/* --- activation and revocation --- */

struct change {
	struct vault *v;
	const char *app, *key_id, *actor;
	int64_t now;
	/* Results; reset at the start of every run. */
	int noop;
	struct key_record result;
	struct scan scan;
};

static void
change_reset(struct change *c)
{
	c->noop = 0;
	key_record_free(&c->result);
	keylist_free(&c->scan.demote);
}

/* Read the key a change is about: KEY_NOT_FOUND, KEY_REVOKED. */
static int
change_get(struct store_txn *txn, struct change *c, struct key_record *cur)
{
	int r;

	r = key_record_get(txn, c->app, c->key_id, cur);
	if (r == P8V_ERR_NOT_FOUND)
		return P8V_ERR_KEY_NOT_FOUND;
	if (r == 0 && cur->state == KEY_STATE_REVOKED)
		return P8V_ERR_KEY_REVOKED;
	return r;
}

static int
activate_txn(struct store_txn *txn, void *arg)
{
	struct change *c = arg;
	struct key_record cur = { 0 };
	int r;

	change_reset(c);
	if ((r = change_get(txn, c, &cur)) != 0)
		goto out;
	if (cur.state == KEY_STATE_ACTIVE) {
		c->noop = 1;
		c->result = cur;
		memset(&cur, 0, sizeof(cur));
		goto out;
	}
	c->scan.subject = &cur;
	c->scan.check_material = 0;
	if ((r = scan_app(txn, c->app, &c->scan)) != 0 ||
	    (r = demote_all(txn, c->v->keeper, c->app, &c->scan.demote,
	    c->now)) != 0 ||
	    (r = update(txn, c->v->keeper, c->app, c->key_id, c->now,
	    set_active, &c->result)) != 0)
		goto out;
	r = audit_change(txn, c->now, c->actor, "key.activate", &c->result,
	    "ok", &c->scan.demote);
 out:
	c->scan.subject = NULL;
	key_record_free(&cur);
	return r;
}

static int
revoke_txn(struct store_txn *txn, void *arg)
{
	struct change *c = arg;
	struct key_record cur = { 0 };
	int r;

	change_reset(c);
	if ((r = change_get(txn, c, &cur)) != 0)
		goto out;
	/* The tombstone keeps the metadata; the sealed scalar is gone. No
	 * re-seal is needed (nothing sealed is left), so a record whose
	 * envelope no longer opens can be revoked too. */
	if ((r = update(txn, c->v->keeper, c->app, c->key_id, c->now,
	    set_revoked, &c->result)) != 0)
		goto out;
	if ((r = vault_apns_forget_txn(txn, &c->result)) != 0)
		goto out;
	r = audit_change(txn, c->now, c->actor, "key.revoke", &c->result,
	    "ok", NULL);
 out:
	key_record_free(&cur);
	return r;
}

static int
run_change(struct vault *v, const char *app, const char *key_id,
    const char *actor, json_t **meta,
    int (*fn)(struct store_txn *, void *), const char *event)
{
	struct change c;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&c, 0, sizeof(c));
	if (meta != NULL)
		*meta = NULL;
	if (v == NULL || meta == NULL)
		goto out;
	if ((r = ids_app_valid(app)) != 0 ||
	    (r = ids_key_id_valid(key_id)) != 0 ||
	    (r = vault_actor_valid(actor)) != 0)
		goto out;
	c.v = v;
	c.app = app;
	c.key_id = key_id;
	c.actor = actor;
	c.now = clock_wall_now();
	if ((r = store_write(v->store, fn, &c)) != 0)
		goto out;
	/* After the commit, outside any transaction (lock order). */
	if (fn == revoke_txn)
		vault_apns_forget_memory(v, &c.result);
	if (!c.noop)
		log_fields(LOG_LEVEL_INFO, event,
		    json_pack("{s:s, s:s, s:s, s:s, s:s}", "app", app,
		    "key_id", key_id, "team_id", c.result.team_id,
		    "fingerprint", c.result.fingerprint, "actor", actor),
		    "key %s/%s: %s", app, key_id,
		    key_state_name(c.result.state));
	if ((r = vault_key_meta_json(&c.result, meta)) != 0)
		goto out;
	if ((r = vault_checks_attach_read(v, &c.result, *meta)) != 0) {
		json_decref(*meta);
		*meta = NULL;
		goto out;
	}
	if (fn == activate_txn && !c.noop)
		(void)vault_team_warnings(v, &c.result, *meta);
 out:
	change_reset(&c);
	return r;
}

int
vault_key_activate(struct vault *v, const char *app, const char *key_id,
    const char *actor, json_t **meta)
{
	return run_change(v, app, key_id, actor, meta, activate_txn,
	    "key_activated");
}

int
vault_key_revoke(struct vault *v, const char *app, const char *key_id,
    const char *actor, json_t **meta)
{
	return run_change(v, app, key_id, actor, meta, revoke_txn,
	    "key_revoked");
}

/* --- revoking every copy of a key --- */

struct fp_revoke {
	struct vault *v;
	const char *fingerprint, *actor;
	int64_t now;
	/* Results; reset at the start of every run. */
	struct fp_copy {
		char app[IDS_APP_MAX + 1];
		char key_id[IDS_APPLE_ID_LEN + 1];
		int revoked;    /* already revoked before this change */
	} *copies;
	size_t n, cap;
	struct key_record *done;        /* the tombstones made, n_done */
	size_t n_done;
};

static void
fp_revoke_reset(struct fp_revoke *f)
{
	size_t i;

	for (i = 0; i < f->n_done; i++)
		key_record_free(&f->done[i]);
	free(f->done);
	free(f->copies);
	f->done = NULL;
	f->copies = NULL;
	f->n = f->cap = f->n_done = 0;
}

static int
fp_copy_one(const struct key_record *rec, void *arg)
{
	struct fp_revoke *f = arg;
	struct fp_copy *grown;
	size_t cap;

	if (f->n == f->cap) {
		cap = f->cap == 0 ? 4 : f->cap * 2;
		if ((grown = realloc(f->copies, cap * sizeof(*grown))) == NULL)
			return P8V_ERR_ALLOC;
		f->copies = grown;
		f->cap = cap;
	}
	copy_id(f->copies[f->n].app, sizeof(f->copies[f->n].app), rec->app);
	copy_id(f->copies[f->n].key_id, sizeof(f->copies[f->n].key_id),
	    rec->key_id);
	f->copies[f->n].revoked = rec->state == KEY_STATE_REVOKED;
	f->n++;
	return 0;
}

static int
fp_revoke_txn(struct store_txn *txn, void *arg)
{
	struct fp_revoke *f = arg;
	struct key_record *rec;
	json_t *ev = NULL;
	size_t i, live = 0;
	int r;

	fp_revoke_reset(f);
	if ((r = key_record_by_fingerprint(txn, f->fingerprint, fp_copy_one,
	    f)) != 0)
		return r;
	if (f->n == 0)
		return P8V_ERR_KEY_NOT_FOUND;
	for (i = 0; i < f->n; i++)
		live += !f->copies[i].revoked;
	if (live == 0)
		return P8V_ERR_KEY_REVOKED;
	if ((f->done = calloc(live, sizeof(*f->done))) == NULL)
		return P8V_ERR_ALLOC;
	for (i = 0; i < f->n; i++) {
		if (f->copies[i].revoked)
			continue;
		rec = &f->done[f->n_done];
		if ((r = update(txn, f->v->keeper, f->copies[i].app,
		    f->copies[i].key_id, f->now, set_revoked, rec)) != 0)
			return r;
		f->n_done++;
		if ((r = vault_apns_forget_txn(txn, rec)) != 0)
			return r;
		if ((ev = vault_audit_event(f->now, f->actor, "key.revoke", rec,
		    "ok")) == NULL ||
		    json_object_set_new(ev, "state",
		    json_string(key_state_name(rec->state))) != 0 ||
		    json_object_set_new(ev, "by",
		    json_string("fingerprint")) != 0) {
			json_decref(ev);
			return P8V_ERR_ALLOC;
		}
		r = store_audit_append(txn, ev, NULL);
		json_decref(ev);
		if (r != 0)
			return r;
	}
	return 0;
}

int
vault_key_revoke_fingerprint(struct vault *v, const char *fingerprint,
    const char *actor, json_t **array)
{
	char fp[KEY_RECORD_FINGERPRINT_HEX + 1];
	struct fp_revoke f;
	size_t i;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&f, 0, sizeof(f));
	if (array != NULL)
		*array = NULL;
	if (v == NULL || array == NULL)
		goto out;
	if ((r = vault_fingerprint_parse(fingerprint, fp)) != 0 ||
	    (r = vault_actor_valid(actor)) != 0)
		goto out;
	f.v = v;
	f.fingerprint = fp;
	f.actor = actor;
	f.now = clock_wall_now();
	if ((r = store_write(v->store, fp_revoke_txn, &f)) != 0)
		goto out;
	/* After the commit, outside any transaction (lock order). */
	for (i = 0; i < f.n_done; i++) {
		vault_apns_forget_memory(v, &f.done[i]);
		log_fields(LOG_LEVEL_WARN, "key_revoked",
		    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "app",
		    f.done[i].app, "key_id", f.done[i].key_id, "team_id",
		    f.done[i].team_id, "fingerprint", fp, "actor", actor,
		    "by", "fingerprint"),
		    "key %s/%s: revoked with every copy of fingerprint %s",
		    f.done[i].app, f.done[i].key_id, fp);
	}
	r = vault_key_find(v, fp, array);
 out:
	fp_revoke_reset(&f);
	return r;
}
