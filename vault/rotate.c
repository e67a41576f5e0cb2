/*
 * rotate.c: master-key rotation (see rotate.h) and the master keys the
 * stored data depends on.
 *
 * A pass: one read transaction lists what is not yet under the new key
 * (key records, then persisted APNs tokens); then write transactions of at
 * most `batch` objects each read every listed object again, re-wrap it if
 * it still needs it, and put it back. Reading again inside the write
 * transaction matters: the daemon may have changed, re-sealed or revoked a
 * record since the list was made, and LMDB's single writer makes the read
 * and the put one step.
 */
#include "vault/rotate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "store/audit.h"
#include "store/cache.h"
#include "store/masterkeys.h"
#include "store/records.h"
#include "vault/tokcache.h"
#include "vault/vault_internal.h"
#include "vault/verify.h"

/* Operations of a rotation transaction besides its records: the wrap
 * counters of the keys it re-wraps to and from (vault_count_wraps), with
 * room to spare. */
#define ROTATE_TXN_EXTRA_OPS 16

/* The audit actor when the caller names none. */
#define ROTATE_ACTOR_DEFAULT "cli"
/* The audit event lists at most this many distinct old key ids. */
#define ROTATE_FROM_MAX (2 * MASTER_KEYRING_MAX)

/* One key record, by identity. */
struct rid {
	char app[IDS_APP_MAX + 1];
	char key_id[IDS_APPLE_ID_LEN + 1];
};

struct ridlist {
	struct rid *v;
	int *err;               /* failures only: why each one failed */
	size_t n, cap;
};

struct strlist {
	char **v;
	size_t n, cap;
};

static int
ridlist_add(struct ridlist *l, const char *app, const char *key_id, int err)
{
	struct rid *grown;
	int *egrown;
	size_t cap;

	if (l->n == l->cap) {
		cap = l->cap == 0 ? 64 : l->cap * 2;
		if ((grown = realloc(l->v, cap * sizeof(*grown))) == NULL)
			return P8V_ERR_ALLOC;
		l->v = grown;
		if ((egrown = realloc(l->err, cap * sizeof(*egrown))) == NULL)
			return P8V_ERR_ALLOC;
		l->err = egrown;
		l->cap = cap;
	}
	snprintf(l->v[l->n].app, sizeof(l->v[l->n].app), "%s", app);
	snprintf(l->v[l->n].key_id, sizeof(l->v[l->n].key_id), "%s", key_id);
	l->err[l->n] = err;
	l->n++;
	return 0;
}

static int
ridlist_has(const struct ridlist *l, const char *app, const char *key_id)
{
	size_t i;

	/* Failures are few (each is a damaged record): a linear search. */
	for (i = 0; i < l->n; i++)
		if (strcmp(l->v[i].app, app) == 0 &&
		    strcmp(l->v[i].key_id, key_id) == 0)
			return 1;
	return 0;
}

static void
ridlist_free(struct ridlist *l)
{
	free(l->v);
	free(l->err);
	memset(l, 0, sizeof(*l));
}

static int
strlist_add(struct strlist *l, const char *s)
{
	char **grown;
	size_t cap;

	if (l->n == l->cap) {
		cap = l->cap == 0 ? 16 : l->cap * 2;
		if ((grown = realloc(l->v, cap * sizeof(*grown))) == NULL)
			return P8V_ERR_ALLOC;
		l->v = grown;
		l->cap = cap;
	}
	if ((l->v[l->n] = strdup(s)) == NULL)
		return P8V_ERR_ALLOC;
	l->n++;
	return 0;
}

static void
strlist_free(struct strlist *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* Record-level failures: the record is damaged or sealed under a key that
 * is not loaded; the rotation reports it and goes on. Anything else
 * (memory, the store, the RNG) stops the run. */
static int
record_level(int err)
{
	switch (err) {
	case P8V_ERR_INTEGRITY:
	case P8V_ERR_MASTER_KEY_MISSING:
	case P8V_ERR_TOO_LARGE:
	case P8V_ERR_BAD_APP_ID:
	case P8V_ERR_BAD_KEY_ID:
	case P8V_ERR_BAD_TEAM_ID:
	case P8V_ERR_BAD_FIELD:
		return 1;
	default:
		return 0;
	}
}

struct rotation {
	struct store *store;
	struct keeper *keeper;
	const uint8_t *new_id;
	size_t batch;
	const struct vault_rotate_options *opts;
	struct vault_rotate_result *out;
	uint64_t done, total;
	struct ridlist failed;          /* reported, not retried */
	uint8_t from[ROTATE_FROM_MAX][MASTER_KEY_ID_BYTES];
	size_t n_from;
};

static void
note_from(struct rotation *rot, const uint8_t id[MASTER_KEY_ID_BYTES])
{
	size_t i;

	for (i = 0; i < rot->n_from; i++)
		if (memcmp(rot->from[i], id, MASTER_KEY_ID_BYTES) == 0)
			return;
	if (rot->n_from < ROTATE_FROM_MAX)
		memcpy(rot->from[rot->n_from++], id, MASTER_KEY_ID_BYTES);
}

/* --- listing what is left --- */

struct listing {
	struct rotation *rot;
	/* Results; reset at the start. */
	struct ridlist recs;            /* not under the new key */
	struct ridlist undecodable;     /* named from the LMDB key */
	struct strlist toks;            /* cache keys not under the new key */
	uint64_t records, tombstones, already, not_new;
};

static void
listing_reset(struct listing *l)
{
	ridlist_free(&l->recs);
	ridlist_free(&l->undecodable);
	strlist_free(&l->toks);
	l->records = l->tombstones = l->already = l->not_new = 0;
}

static int
list_record(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct listing *l = arg;
	struct key_record rec = { 0 };
	uint8_t id[MASTER_KEY_ID_BYTES];
	char app[IDS_APP_MAX + 1], key_id[IDS_APPLE_ID_LEN + 1];
	int r;

	l->records++;
	r = key_record_decode(key, klen, val, vlen, &rec);
	if (r == P8V_ERR_INTEGRITY) {
		l->not_new++;
		vault_record_ids(key, klen, app, key_id);
		if (ridlist_has(&l->rot->failed, app, key_id))
			return 0;
		return ridlist_add(&l->undecodable, app, key_id, r);
	}
	if (r != 0)
		return r;
	if (rec.envelope == NULL) {
		l->tombstones++;
		goto out;
	}
	if (envelope_master_key_id(rec.envelope, rec.envelope_len, id) == 0 &&
	    memcmp(id, l->rot->new_id, MASTER_KEY_ID_BYTES) == 0) {
		l->already++;
		goto out;
	}
	l->not_new++;
	if (ridlist_has(&l->rot->failed, rec.app, rec.key_id))
		goto out;
	r = ridlist_add(&l->recs, rec.app, rec.key_id, 0);
 out:
	key_record_free(&rec);
	return r;
}

static int
list_token(const char *key, int64_t expires_at, const uint8_t *blob,
    size_t len, void *arg)
{
	struct listing *l = arg;
	uint8_t id[MASTER_KEY_ID_BYTES];

	(void)expires_at;
	if (strncmp(key, TOKCACHE_KEY_PREFIX, strlen(TOKCACHE_KEY_PREFIX)) != 0)
		return 0; /* not a token this vault seals */
	if (keeper_apns_blob_master_key_id(blob, len, id) == 0 &&
	    memcmp(id, l->rot->new_id, MASTER_KEY_ID_BYTES) == 0)
		return 0;
	return strlist_add(&l->toks, key);
}

static int
list_txn(struct store_txn *txn, void *arg)
{
	struct listing *l = arg;
	int r;

	listing_reset(l);
	if ((r = store_scan(txn, STORE_DB_KEYS, NULL, 0, list_record, l)) != 0)
		return r;
	return store_cache_foreach(txn, list_token, l);
}

/* --- one batch of key records --- */

struct batch {
	struct rotation *rot;
	const struct rid *ids;
	size_t n;
	/* Results; reset at the start (store_write may run it again). */
	uint64_t rewrapped;
	struct ridlist failed;
	uint8_t from[ROTATE_FROM_MAX][MASTER_KEY_ID_BYTES];
	size_t n_from;
};

static void
batch_note_from(struct batch *b, const uint8_t id[MASTER_KEY_ID_BYTES])
{
	size_t i;

	for (i = 0; i < b->n_from; i++)
		if (memcmp(b->from[i], id, MASTER_KEY_ID_BYTES) == 0)
			return;
	if (b->n_from < ROTATE_FROM_MAX)
		memcpy(b->from[b->n_from++], id, MASTER_KEY_ID_BYTES);
}

/* Re-wrap one record if it still needs it. 0 (done, or nothing to do),
 * 1 (re-wrapped), a record-level error (reported by the caller), or an
 * error that stops the batch.
 * Works on the stored bytes (key_record_raw_parts, key_record_raw_aad,
 * key_record_put_envelope): the metadata is kept byte for byte, so the AAD
 * is the same, and the keeper's rewrap opens the payload under it, which
 * authenticates every byte a decoding would have checked. Decoding and
 * encoding the record again cost three quarters of a rotation's time. */
static int
rewrap_record(struct store_txn *txn, struct batch *b, const struct rid *id)
{
	struct rotation *rot = b->rot;
	struct keeper_record kr;
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX];
	uint8_t *aad = NULL, *env = NULL;
	uint8_t mk_id[MASTER_KEY_ID_BYTES];
	const uint8_t *val, *meta, *old;
	size_t klen, vlen, mlen, old_len, aad_len = 0, env_len = 0;
	int r;

	if ((r = key_record_db_key(id->app, id->key_id, dbkey, &klen)) != 0)
		goto out;
	r = store_get(txn, STORE_DB_KEYS, dbkey, klen, &val, &vlen);
	if (r == P8V_ERR_NOT_FOUND) {
		r = 0;          /* deleted since the listing */
		goto out;
	}
	if (r != 0)
		goto out;
	if ((r = key_record_raw_parts(val, vlen, &meta, &mlen, &old,
	    &old_len)) != 0)
		goto out;
	if (old == NULL) {
		r = 0;          /* revoked since the listing */
		goto out;
	}
	if ((r = envelope_master_key_id(old, old_len, mk_id)) != 0)
		goto out;
	if (memcmp(mk_id, rot->new_id, MASTER_KEY_ID_BYTES) == 0) {
		r = 0;          /* re-sealed under the new key meanwhile */
		goto out;
	}
	/* The AAD from the record as stored: metadata, version and
	 * updated_at unchanged, so the payload's AAD still matches. */
	if ((r = key_record_raw_aad(dbkey, klen, val, vlen, &aad,
	    &aad_len)) != 0)
		goto out;
	kr.aad = aad;
	kr.aad_len = aad_len;
	kr.env = old;
	kr.env_len = old_len;
	if ((r = keeper_rewrap(rot->keeper, &kr, rot->new_id, &env,
	    &env_len)) != 0)
		goto out;
	/* val points into the map: put copies it before writing. */
	if ((r = key_record_put_envelope(txn, dbkey, klen, val, vlen, env,
	    env_len)) != 0)
		goto out;
	batch_note_from(b, mk_id);
	r = 1;
 out:
	free(env);
	free(aad);
	return r;
}

static int
batch_txn(struct store_txn *txn, void *arg)
{
	struct batch *b = arg;
	size_t i;
	int r;

	b->rewrapped = 0;
	b->n_from = 0;
	ridlist_free(&b->failed);
	for (i = 0; i < b->n; i++) {
		r = rewrap_record(txn, b, &b->ids[i]);
		if (r == 1) {
			b->rewrapped++;
			continue;
		}
		if (r != 0 && record_level(r))
			r = ridlist_add(&b->failed, b->ids[i].app,
			    b->ids[i].key_id, r);
		if (r != 0)
			return r;
	}
	/* Every new envelope counts against the new key's wrap budget. */
	return vault_count_wraps(txn, b->rot->new_id, b->rewrapped);
}

static void
report_failure(struct rotation *rot, const char *app, const char *key_id,
    int err)
{
	rot->out->failed++;
	log_fields(LOG_LEVEL_WARN, "master_rotate_record",
	    json_pack("{s:s, s:s, s:s}", "app", app, "key_id", key_id,
	    "error", p8v_errname(err)),
	    "key record %s/%s cannot be re-wrapped: %s", app, key_id,
	    p8v_strerror(err));
	if (rot->opts->failure != NULL)
		rot->opts->failure(app, key_id, err, rot->opts->arg);
}

static void
progress(struct rotation *rot)
{
	if (rot->opts->progress != NULL)
		rot->opts->progress(rot->done, rot->total, rot->opts->arg);
}

static int
rotate_records(struct rotation *rot, const struct ridlist *todo)
{
	struct batch b;
	size_t i, j;
	int r = 0;

	memset(&b, 0, sizeof(b));
	b.rot = rot;
	for (i = 0; i < todo->n; i += b.n) {
		b.ids = &todo->v[i];
		b.n = todo->n - i < rot->batch ? todo->n - i : rot->batch;
		if ((r = store_write(rot->store, batch_txn, &b)) != 0)
			goto out;
		/* Committed: only now does anything count. */
		rot->out->batches++;
		rot->out->rewrapped += b.rewrapped;
		for (j = 0; j < b.n_from; j++)
			note_from(rot, b.from[j]);
		for (j = 0; j < b.failed.n; j++) {
			if ((r = ridlist_add(&rot->failed, b.failed.v[j].app,
			    b.failed.v[j].key_id, b.failed.err[j])) != 0)
				goto out;
			report_failure(rot, b.failed.v[j].app,
			    b.failed.v[j].key_id, b.failed.err[j]);
		}
		rot->done += b.n;
		progress(rot);
	}
 out:
	ridlist_free(&b.failed);
	return r;
}

/* --- one batch of persisted APNs tokens --- */

struct tbatch {
	struct rotation *rot;
	char *const *keys;
	size_t n;
	/* Results; reset at the start. */
	uint64_t rewrapped, dropped;
};

static int
rewrap_token(struct store_txn *txn, struct tbatch *t, const char *key)
{
	struct rotation *rot = t->rot;
	uint8_t *blob = NULL, *nblob = NULL;
	uint8_t mk_id[MASTER_KEY_ID_BYTES];
	size_t len = 0, nlen = 0;
	int64_t expires_at;
	int r;

	r = store_cache_get(txn, key, &expires_at, &blob, &len);
	if (r == P8V_ERR_NOT_FOUND) {
		r = 0;
		goto out;
	}
	if (r == P8V_ERR_INTEGRITY)
		goto drop;
	if (r != 0)
		goto out;
	if (keeper_apns_blob_master_key_id(blob, len, mk_id) == 0 &&
	    memcmp(mk_id, rot->new_id, MASTER_KEY_ID_BYTES) == 0) {
		r = 0;
		goto out;
	}
	r = keeper_apns_blob_rewrap(rot->keeper, key, blob, len, rot->new_id,
	    &nblob, &nlen);
	if (r != 0 && record_level(r))
		goto drop;
	if (r != 0)
		goto out;
	if ((r = store_cache_put(txn, key, expires_at, nblob, nlen)) != 0)
		goto out;
	t->rewrapped++;
	r = 0;
	goto out;
 drop:
	/* A token that does not open is useless to every daemon (it drops
	 * it at start-up too): delete it rather than keep the old key
	 * needed for nothing. */
	r = store_cache_delete(txn, key);
	if (r == 0)
		t->dropped++;
	else if (r == P8V_ERR_NOT_FOUND)
		r = 0;
 out:
	free(nblob);
	free(blob);
	return r;
}

static int
tbatch_txn(struct store_txn *txn, void *arg)
{
	struct tbatch *t = arg;
	size_t i;
	int r;

	t->rewrapped = t->dropped = 0;
	for (i = 0; i < t->n; i++)
		if ((r = rewrap_token(txn, t, t->keys[i])) != 0)
			return r;
	return vault_count_wraps(txn, t->rot->new_id, t->rewrapped);
}

static int
rotate_tokens(struct rotation *rot, const struct strlist *todo)
{
	struct tbatch t;
	size_t i;
	int r;

	memset(&t, 0, sizeof(t));
	t.rot = rot;
	for (i = 0; i < todo->n; i += t.n) {
		t.keys = &todo->v[i];
		t.n = todo->n - i < rot->batch ? todo->n - i : rot->batch;
		if ((r = store_write(rot->store, tbatch_txn, &t)) != 0)
			return r;
		rot->out->batches++;
		rot->out->tokens_rewrapped += t.rewrapped;
		rot->out->tokens_dropped += t.dropped;
		rot->done += t.n;
		progress(rot);
	}
	return 0;
}

/* --- checks before anything is written --- */

struct precheck {
	const struct keeper_status *ring;
	const uint8_t *new_id;
	/* Results; reset at the start. */
	char unknown[MASTER_KEY_ID_HEX + 1];
};

static int
precheck_txn(struct store_txn *txn, void *arg)
{
	struct precheck *p = arg;
	struct store_master_key_usage *u = NULL;
	const struct keeper_key_info *mk;
	size_t i, j, n = 0;
	int found, r;

	p->unknown[0] = '\0';
	if ((r = store_master_key_usage(txn, &u, &n)) != 0)
		return r;
	for (i = 0; i < p->ring->n; i++) {
		mk = &p->ring->keys[i];
		if (memcmp(mk->id, p->new_id, MASTER_KEY_ID_BYTES) == 0)
			continue;
		for (found = 0, j = 0; j < n && !found; j++)
			found = u[j].recorded && memcmp(u[j].id,
			    mk->id, MASTER_KEY_ID_BYTES) == 0;
		if (!found) {
			snprintf(p->unknown, sizeof(p->unknown), "%s",
			    mk->id_hex);
			r = P8V_ERR_MASTER_KEY_MISMATCH;
			break;
		}
	}
	free(u);
	return r;
}

/* --- the audit event --- */

struct audit {
	json_t *event;
};

static int
audit_txn(struct store_txn *txn, void *arg)
{
	struct audit *a = arg;

	return store_audit_append(txn, a->event, NULL);
}

static int
audit_rotation(struct rotation *rot)
{
	char when[VAULT_TIME_RFC3339_BYTES], hex[MASTER_KEY_ID_HEX + 1];
	const struct vault_rotate_result *o = rot->out;
	struct audit a = { NULL };
	json_t *from = NULL;
	size_t i, k;
	int r = P8V_ERR_ALLOC;

	if ((r = vault_time_rfc3339(clock_wall_now(), when)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((from = json_array()) == NULL)
		goto out;
	for (i = 0; i < rot->n_from; i++) {
		for (k = 0; k < MASTER_KEY_ID_BYTES; k++) {
			hex[2 * k] = "0123456789abcdef"[rot->from[i][k] >> 4];
			hex[2 * k + 1] = "0123456789abcdef"[rot->from[i][k] & 15];
		}
		hex[MASTER_KEY_ID_HEX] = '\0';
		if (json_array_append_new(from, json_string(hex)) != 0)
			goto out;
	}
	if ((a.event = json_pack("{s:s, s:s, s:s, s:s, s:O, s:I, s:I, s:I, "
	    "s:I, s:I, s:s}",
	    "time", when,
	    "who", rot->opts->actor != NULL ? rot->opts->actor :
	    ROTATE_ACTOR_DEFAULT,
	    "what", "master.rotate",
	    "master_key_id", o->new_key_id,
	    "from", from,
	    "rewrapped", (json_int_t)o->rewrapped,
	    "failed", (json_int_t)o->failed,
	    "tokens_rewrapped", (json_int_t)o->tokens_rewrapped,
	    "tokens_dropped", (json_int_t)o->tokens_dropped,
	    "remaining", (json_int_t)o->remaining,
	    "result", o->remaining == 0 ? "ok" : "incomplete")) == NULL)
		goto out;
	r = store_write(rot->store, audit_txn, &a);
 out:
	json_decref(a.event);
	json_decref(from);
	return r;
}

/* --- the rotation --- */

int
vault_master_rotate(struct store *store, struct keeper *keeper,
    const uint8_t new_id[MASTER_KEY_ID_BYTES],
    const struct vault_rotate_options *opts, struct vault_rotate_result *out)
{
	static const struct vault_rotate_options defaults;
	struct keeper_status st;
	struct rotation rot;
	struct listing l;
	struct precheck pc;
	size_t i;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&rot, 0, sizeof(rot));
	memset(&l, 0, sizeof(l));
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (opts == NULL)
		opts = &defaults;
	if (store == NULL || keeper == NULL || new_id == NULL || out == NULL ||
	    opts->batch > VAULT_ROTATE_BATCH_MAX ||
	    !keeper_has_key(keeper, new_id) ||
	    keeper_status(keeper, &st) != 0 ||
	    (opts->actor != NULL && vault_actor_valid(opts->actor) != 0))
		goto out;
	for (i = 0; i < MASTER_KEY_ID_BYTES; i++) {
		out->new_key_id[2 * i] = "0123456789abcdef"[new_id[i] >> 4];
		out->new_key_id[2 * i + 1] = "0123456789abcdef"[new_id[i] & 15];
	}
	out->new_key_id[MASTER_KEY_ID_HEX] = '\0';
	rot.store = store;
	rot.keeper = keeper;
	rot.new_id = new_id;
	rot.batch = opts->batch == 0 ? VAULT_ROTATE_BATCH_DEFAULT : opts->batch;
	/* A store with a cap on one transaction (etcd: 127 operations): a
	 * batch's records plus the wrap counters written along. */
	{
		size_t max_ops, max_bytes;

		store_limits(store, &max_ops, &max_bytes);
		if (max_ops > ROTATE_TXN_EXTRA_OPS &&
		    rot.batch > max_ops - ROTATE_TXN_EXTRA_OPS)
			rot.batch = max_ops - ROTATE_TXN_EXTRA_OPS;
	}
	rot.opts = opts;
	rot.out = out;
	l.rot = &rot;

	pc.ring = &st;
	pc.new_id = rot.new_id;
	if ((r = store_read(store, precheck_txn, &pc)) != 0) {
		if (r == P8V_ERR_MASTER_KEY_MISMATCH)
			memcpy(out->unknown_key_id, pc.unknown,
			    sizeof(out->unknown_key_id));
		goto out;
	}
	/* Records the new key's check value (and refuses a forged entry). */
	if ((r = vault_keys_check(store, keeper)) != 0)
		goto out;

	for (;;) {
		if ((r = store_read(store, list_txn, &l)) != 0)
			goto out;
		if (out->passes == 0) {
			out->records = l.records;
			out->tombstones = l.tombstones;
			out->already = l.already;
		}
		/* Records that do not even decode are reported once and
		 * never retried. */
		for (i = 0; i < l.undecodable.n; i++) {
			if ((r = ridlist_add(&rot.failed, l.undecodable.v[i].app,
			    l.undecodable.v[i].key_id, P8V_ERR_INTEGRITY)) != 0)
				goto out;
			report_failure(&rot, l.undecodable.v[i].app,
			    l.undecodable.v[i].key_id, P8V_ERR_INTEGRITY);
		}
		out->remaining = l.not_new;
		if ((l.recs.n == 0 && l.toks.n == 0) ||
		    out->passes == VAULT_ROTATE_PASSES)
			break;
		out->passes++;
		rot.total += l.recs.n + l.toks.n;
		progress(&rot);
		if ((r = rotate_records(&rot, &l.recs)) != 0 ||
		    (r = rotate_tokens(&rot, &l.toks)) != 0)
			goto out;
	}
	if ((r = audit_rotation(&rot)) != 0)
		goto out;
	log_fields(LOG_LEVEL_INFO, "master_rotate",
	    json_pack("{s:s, s:I, s:I, s:I, s:I}", "master_key_id",
	    out->new_key_id, "rewrapped", (json_int_t)out->rewrapped,
	    "failed", (json_int_t)out->failed, "tokens_rewrapped",
	    (json_int_t)out->tokens_rewrapped, "remaining",
	    (json_int_t)out->remaining),
	    "master-key rotation to %s: %llu re-wrapped, %llu failed, "
	    "%llu remaining", out->new_key_id,
	    (unsigned long long)out->rewrapped,
	    (unsigned long long)out->failed,
	    (unsigned long long)out->remaining);
	r = 0;
 out:
	listing_reset(&l);
	ridlist_free(&rot.failed);
	return r;
}

/* --- usage --- */

struct usage {
	/* Results; reset at the start. */
	struct vault_master_key_use *v;
	size_t n;
};

static struct vault_master_key_use *
usage_find(struct usage *u, const uint8_t id[MASTER_KEY_ID_BYTES])
{
	size_t i;

	for (i = 0; i < u->n; i++)
		if (memcmp(u->v[i].id, id, MASTER_KEY_ID_BYTES) == 0)
			return &u->v[i];
	return NULL;
}

static int
usage_token(const char *key, int64_t expires_at, const uint8_t *blob,
    size_t len, void *arg)
{
	struct usage *u = arg;
	struct vault_master_key_use *e, *grown;
	uint8_t id[MASTER_KEY_ID_BYTES];
	size_t k;

	(void)expires_at;
	if (strncmp(key, TOKCACHE_KEY_PREFIX, strlen(TOKCACHE_KEY_PREFIX)) != 0 ||
	    keeper_apns_blob_master_key_id(blob, len, id) != 0)
		return 0; /* a malformed token names no key; it is dropped */
	if ((e = usage_find(u, id)) == NULL) {
		if ((grown = realloc(u->v, (u->n + 1) * sizeof(*grown))) == NULL)
			return P8V_ERR_ALLOC;
		u->v = grown;
		e = &u->v[u->n++];
		memset(e, 0, sizeof(*e));
		memcpy(e->id, id, MASTER_KEY_ID_BYTES);
		for (k = 0; k < MASTER_KEY_ID_BYTES; k++) {
			e->id_hex[2 * k] = "0123456789abcdef"[id[k] >> 4];
			e->id_hex[2 * k + 1] = "0123456789abcdef"[id[k] & 15];
		}
	}
	e->tokens++;
	return 0;
}

static int
usage_cmp(const void *a, const void *b)
{
	return memcmp(((const struct vault_master_key_use *)a)->id,
	    ((const struct vault_master_key_use *)b)->id, MASTER_KEY_ID_BYTES);
}

static int
usage_txn(struct store_txn *txn, void *arg)
{
	struct usage *u = arg;
	struct store_master_key_usage *s = NULL;
	size_t i, n = 0;
	int r;

	free(u->v);
	u->v = NULL;
	u->n = 0;
	if ((r = store_master_key_usage(txn, &s, &n)) != 0)
		return r;
	r = P8V_ERR_ALLOC;
	if (n > 0 && (u->v = calloc(n, sizeof(*u->v))) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		memcpy(u->v[i].id, s[i].id, MASTER_KEY_ID_BYTES);
		memcpy(u->v[i].id_hex, s[i].id_hex, sizeof(u->v[i].id_hex));
		u->v[i].recorded = s[i].recorded;
		u->v[i].first_seen = s[i].first_seen;
		u->v[i].records = s[i].records;
	}
	u->n = n;
	r = store_cache_foreach(txn, usage_token, u);
 out:
	free(s);
	return r;
}

int
vault_master_usage(struct store *store, struct vault_master_key_use **out,
    size_t *n)
{
	struct usage u = { NULL, 0 };
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		*out = NULL;
	if (n != NULL)
		*n = 0;
	if (store == NULL || out == NULL || n == NULL)
		goto out;
	if ((r = store_read(store, usage_txn, &u)) != 0)
		goto out;
	if (u.n > 1)
		qsort(u.v, u.n, sizeof(*u.v), usage_cmp);
	*out = u.v;
	*n = u.n;
	u.v = NULL;
	r = 0;
 out:
	free(u.v);
	return r;
}
