/* records.c: key records in the store's "keys" database; see records.h. */
#include "store/records.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/err.h"
#include "common/log.h"
#include "store/appindex.h"

/*
 * Name a stored record that does not decode (damaged, or altered by hand),
 * shown as "app/key_id" from its LMDB key, with any byte outside the id
 * alphabet as '?'. Callers only get P8V_ERR_INTEGRITY, and an operator
 * must learn which record to restore: without this, the daemon answered
 * 500 and logged only the error code
 * (tests/integration/test_faults.py, damaged records).
 */
static void
log_undecodable(const uint8_t *key, size_t klen)
{
	char name[KEY_RECORD_DB_KEY_MAX + 1];
	size_t i, sep = 0, n = klen < KEY_RECORD_DB_KEY_MAX ? klen :
	    KEY_RECORD_DB_KEY_MAX;

	for (i = 0; i < n; i++) {
		char c = (char)key[i];

		if (c == '\0' && sep == 0)
			sep = i;
		if (c == '\0')
			c = '/';
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			c = '?';
		name[i] = c;
	}
	name[n] = '\0';
	log_fields(LOG_LEVEL_ERROR, "key_record_damaged",
	    json_pack("{s:s, s:s#, s:s}", "record", name, "app", name,
	    (int)(sep > 0 ? sep : n), "key_id", sep > 0 ? name + sep + 1 : ""),
	    "key record %s does not decode (damaged or altered); not used",
	    name);
}

int
key_record_put_envelope(struct store_txn *txn, const uint8_t *key,
    size_t klen, const uint8_t *val, size_t vlen, const uint8_t *env,
    size_t env_len)
{
	const uint8_t *meta, *old;
	size_t mlen, old_len, head, n;
	uint8_t *v;
	int r;

	if (env == NULL || env_len == 0 ||
	    env_len > KEY_RECORD_ENVELOPE_MAX)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = key_record_raw_parts(val, vlen, &meta, &mlen, &old,
	    &old_len)) != 0)
		return r;
	if (old == NULL)
		return P8V_ERR_INVALID_ARGUMENT; /* a tombstone stays one */
	/* Everything before the envelope (format byte, length, metadata)
	 * stays as it is. */
	head = (size_t)(meta - val) + mlen;
	n = head + env_len;
	if ((v = malloc(n)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(v, val, head);
	memcpy(v + head, env, env_len);
	r = store_put(txn, STORE_DB_KEYS, key, klen, v, n, 0);
	free(v);
	return r;
}

/* --- the fingerprint and team indexes (records.h) --- */

/*
 * The entry of one record in one index: prefix || ident || "/" || db key,
 * with the record's Team ID and Key ID (mid, 2 x IDS_APPLE_ID_LEN bytes)
 * and a "/" after ident in the fingerprint index (mid may be NULL
 * otherwise).
 */
static size_t
entry_key(const char *prefix, const char *ident, const char *mid,
    const uint8_t *dbkey, size_t klen, uint8_t buf[KEY_IDX_KEY_MAX])
{
	size_t n = strlen(prefix), m = strlen(ident);

	memcpy(buf, prefix, n);
	memcpy(buf + n, ident, m);
	n += m;
	buf[n++] = '/';
	if (mid != NULL) {
		memcpy(buf + n, mid, KEY_FP_INDEX_MID);
		n += KEY_FP_INDEX_MID;
		buf[n++] = '/';
	}
	memcpy(buf + n, dbkey, klen);
	return n + klen;
}

/* mid for the fingerprint index: Team ID || Key ID (both validated). */
static const char *
fp_mid(const char *team_id, const char *key_id, char mid[KEY_FP_INDEX_MID + 1])
{
	if (ids_team_id_valid(team_id) != 0 || ids_key_id_valid(key_id) != 0)
		return NULL;
	memcpy(mid, team_id, IDS_APPLE_ID_LEN);
	memcpy(mid + IDS_APPLE_ID_LEN, key_id, IDS_APPLE_ID_LEN);
	mid[KEY_FP_INDEX_MID] = '\0';
	return mid;
}

/* 1 if fp is 64 lowercase hex characters (what records hold). */
static int
fp_valid(const char *fp)
{
	size_t i;

	if (fp == NULL || strlen(fp) != KEY_RECORD_FINGERPRINT_HEX)
		return 0;
	for (i = 0; i < KEY_RECORD_FINGERPRINT_HEX; i++)
		if (!((fp[i] >= '0' && fp[i] <= '9') ||
		    (fp[i] >= 'a' && fp[i] <= 'f')))
			return 0;
	return 1;
}

/* Both entries of rec (stored under dbkey). */
static int
index_put(struct store_txn *txn, const struct key_record *rec,
    const uint8_t *dbkey, size_t klen)
{
	uint8_t ek[KEY_IDX_KEY_MAX];
	char mid[KEY_FP_INDEX_MID + 1];
	size_t elen;
	int r;

	if (!fp_valid(rec->fingerprint) ||
	    fp_mid(rec->team_id, rec->key_id, mid) == NULL)
		return P8V_ERR_BAD_FIELD;
	elen = entry_key(KEY_FP_INDEX_PREFIX, rec->fingerprint, mid, dbkey,
	    klen, ek);
	if ((r = store_put(txn, STORE_DB_META, ek, elen, rec->team_id,
	    strlen(rec->team_id), 0)) != 0)
		return r;
	elen = entry_key(KEY_TEAM_INDEX_PREFIX, rec->team_id, NULL, dbkey, klen,
	    ek);
	return store_put(txn, STORE_DB_META, ek, elen, rec->fingerprint,
	    strlen(rec->fingerprint), 0);
}

/* The indexes cover every record: KEY_INDEX_RECORDS gets their number
 * (after a write that changed it). */
static int
index_mark(struct store_txn *txn)
{
	uint8_t v[8];
	uint64_t n;
	int r;

	if ((r = key_record_count(txn, &n)) != 0)
		return r;
	store_put_u64(v, n);
	return store_put(txn, STORE_DB_META, KEY_INDEX_RECORDS,
	    strlen(KEY_INDEX_RECORDS), v, sizeof(v), 0);
}

static int
entry_del(struct store_txn *txn, const char *prefix, const char *ident,
    const char *mid, const uint8_t *dbkey, size_t klen)
{
	uint8_t ek[KEY_IDX_KEY_MAX];
	size_t elen;
	int r;

	elen = entry_key(prefix, ident, mid, dbkey, klen, ek);
	r = store_del(txn, STORE_DB_META, ek, elen);
	return r == P8V_ERR_NOT_FOUND ? 0 : r;
}

/*
 * The record stored under dbkey now, decoded into *old (zeroed, *found 0,
 * if there is none or if it does not decode: its index entries, if any,
 * are left behind, and readers skip entries whose record says otherwise).
 */
static int
stored_record(struct store_txn *txn, const uint8_t *dbkey, size_t klen,
    struct key_record *old, int *found)
{
	const uint8_t *val;
	size_t vlen;
	int r;

	memset(old, 0, sizeof(*old));
	*found = 0;
	r = store_get(txn, STORE_DB_KEYS, dbkey, klen, &val, &vlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	r = key_record_decode(dbkey, klen, val, vlen, old);
	if (r == P8V_ERR_INTEGRITY)
		return 0;
	if (r == 0)
		*found = 1;
	return r;
}

int
key_record_put(struct store_txn *txn, const struct key_record *rec)
{
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX], *val = NULL;
	struct key_record old = { 0 };
	char mid[KEY_FP_INDEX_MID + 1];
	size_t klen, vlen;
	int found = 0, r;

	if ((r = key_record_encode(rec, &val, &vlen)) != 0 ||
	    (r = key_record_db_key(rec->app, rec->key_id, dbkey, &klen)) != 0)
		goto out;
	/* The indexes follow the record in the same transaction: a record
	 * replaced under another fingerprint or team loses its old entry. */
	if ((r = stored_record(txn, dbkey, klen, &old, &found)) != 0)
		goto out;
	if (found && (strcmp(old.fingerprint, rec->fingerprint) != 0 ||
	    strcmp(old.team_id, rec->team_id) != 0) &&
	    fp_mid(old.team_id, old.key_id, mid) != NULL &&
	    (r = entry_del(txn, KEY_FP_INDEX_PREFIX, old.fingerprint, mid,
	    dbkey, klen)) != 0)
		goto out;
	if (found && strcmp(old.team_id, rec->team_id) != 0 &&
	    (r = entry_del(txn, KEY_TEAM_INDEX_PREFIX, old.team_id, NULL,
	    dbkey, klen)) != 0)
		goto out;
	if ((r = store_put(txn, STORE_DB_KEYS, dbkey, klen, val, vlen, 0)) != 0)
		goto out;
	if ((r = index_put(txn, rec, dbkey, klen)) != 0)
		goto out;
	/* A new record (or one in the place of a record that did not
	 * decode): the number the indexes cover. */
	if (!found && (r = index_mark(txn)) != 0)
		goto out;
	/* The per-app index (store/appindex.h) changes with the record. */
	r = appindex_on_put(txn, found ? &old : NULL, rec);
 out:
	key_record_free(&old);
	free(val);
	return r;
}

int
key_record_get(struct store_txn *txn, const char *app, const char *key_id,
    struct key_record *rec)
{
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX];
	const uint8_t *val;
	size_t klen, vlen;
	int r;

	if (rec == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	memset(rec, 0, sizeof(*rec));
	if ((r = key_record_db_key(app, key_id, dbkey, &klen)) != 0 ||
	    (r = store_get(txn, STORE_DB_KEYS, dbkey, klen, &val, &vlen)) != 0)
		return r;
	if ((r = key_record_decode(dbkey, klen, val, vlen, rec)) ==
	    P8V_ERR_INTEGRITY)
		log_undecodable(dbkey, klen);
	return r;
}

int
key_record_delete(struct store_txn *txn, const char *app, const char *key_id)
{
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX];
	struct key_record old;
	char mid[KEY_FP_INDEX_MID + 1];
	size_t klen;
	int found = 0, r;

	if ((r = key_record_db_key(app, key_id, dbkey, &klen)) != 0 ||
	    (r = stored_record(txn, dbkey, klen, &old, &found)) != 0)
		return r;
	if ((r = store_del(txn, STORE_DB_KEYS, dbkey, klen)) == 0 && found &&
	    (fp_mid(old.team_id, old.key_id, mid) == NULL ||
	    (r = entry_del(txn, KEY_FP_INDEX_PREFIX, old.fingerprint, mid,
	    dbkey, klen)) == 0) &&
	    (r = entry_del(txn, KEY_TEAM_INDEX_PREFIX, old.team_id, NULL,
	    dbkey, klen)) == 0)
		r = appindex_on_delete(txn, &old);
	if (r == 0)
		r = index_mark(txn);
	key_record_free(&old);
	return r;
}

struct walk {
	key_record_cb cb;
	void *arg;
};

static int
walk_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct walk *w = arg;
	struct key_record rec;
	int r;

	if ((r = key_record_decode(key, klen, val, vlen, &rec)) != 0) {
		if (r == P8V_ERR_INTEGRITY)
			log_undecodable(key, klen);
		return r;
	}
	r = w->cb(&rec, w->arg);
	key_record_free(&rec);
	return r;
}

int
key_record_list(struct store_txn *txn, const char *app, key_record_cb cb,
    void *arg)
{
	struct walk w = { cb, arg };
	char prefix[IDS_APP_MAX + 1];
	size_t n;
	int r;

	if (cb == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = ids_app_valid(app)) != 0)
		return r;
	n = strlen(app);
	memcpy(prefix, app, n + 1); /* the NUL ends the prefix: app "\0" */
	return store_scan(txn, STORE_DB_KEYS, prefix, n + 1, walk_one, &w);
}

int
key_record_foreach(struct store_txn *txn, key_record_cb cb, void *arg)
{
	struct walk w = { cb, arg };

	if (cb == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return store_scan(txn, STORE_DB_KEYS, NULL, 0, walk_one, &w);
}

int
key_record_count(struct store_txn *txn, uint64_t *n)
{
	return store_count(txn, STORE_DB_KEYS, n);
}

int
key_record_update(struct store_txn *txn, key_record_reseal_fn reseal,
    void *reseal_arg, const char *app, const char *key_id, int64_t now,
    int (*mutate)(struct key_record *, void *), void *arg,
    struct key_record *out)
{
	struct key_record old = { 0 }, rec = { 0 };
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (mutate == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = key_record_get(txn, app, key_id, &old)) != 0 ||
	    (r = key_record_copy(&rec, &old)) != 0 ||
	    (r = mutate(&rec, arg)) != 0)
		goto out;
	r = P8V_ERR_INVALID_ARGUMENT;
	if (strcmp(rec.app, old.app) != 0 ||
	    strcmp(rec.key_id, old.key_id) != 0 ||
	    rec.version != old.version || rec.updated_at != old.updated_at)
		goto out;
	/* The envelope may only stay as it was or be dropped. */
	if (rec.envelope != NULL && (old.envelope == NULL ||
	    rec.envelope_len != old.envelope_len ||
	    memcmp(rec.envelope, old.envelope, old.envelope_len) != 0))
		goto out;
	rec.version = old.version + 1;
	rec.updated_at = now;
	if ((r = key_record_check(&rec)) != 0)
		goto out;
	if (rec.envelope != NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		if (reseal == NULL)
			goto out;
		/* rec.envelope is its own copy of old's: the callback puts the
		 * new one in its place. */
		free(rec.envelope);
		rec.envelope = old.envelope;
		rec.envelope_len = old.envelope_len;
		r = reseal(&old, &rec, reseal_arg);
		if (rec.envelope == old.envelope) {
			/* not replaced: never free old's buffer twice */
			rec.envelope = NULL;
			rec.envelope_len = 0;
			if (r == 0)
				r = P8V_ERR_INTERNAL;
		}
		if (r != 0)
			goto out;
	}
	if ((r = key_record_put(txn, &rec)) != 0)
		goto out;
	if (out != NULL) {
		*out = rec;
		memset(&rec, 0, sizeof(rec));
	}
	r = 0;
 out:
	key_record_free(&old);
	key_record_free(&rec);
	return r;
}

/* --- reading and keeping the fingerprint index --- */

/* Keys collected during a scan (whose callback may not read or write),
 * each at most stride bytes, to work on after it. */
struct keybuf {
	uint8_t *buf;
	size_t *lens;
	size_t n, cap, stride, skip;    /* skip: leading bytes not kept */
	const char *skip_val;           /* entries with this value: not kept */
};

static void
keybuf_free(struct keybuf *k)
{
	free(k->buf);
	free(k->lens);
	k->buf = NULL;
	k->lens = NULL;
	k->n = k->cap = 0;
}

static const uint8_t *
keybuf_at(const struct keybuf *k, size_t i)
{
	return k->buf + i * k->stride;
}

/* store_scan_cb: keep key (from byte k->skip on). */
static int
keybuf_add(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct keybuf *k = arg;
	void *grown;
	size_t cap;

	if (klen <= k->skip || klen - k->skip > k->stride)
		return 0; /* not an entry this code writes: ignored */
	if (k->skip_val != NULL && vlen == strlen(k->skip_val) &&
	    memcmp(val, k->skip_val, vlen) == 0)
		return 0;
	if (k->n == k->cap) {
		cap = k->cap == 0 ? 8 : k->cap * 2;
		if ((grown = realloc(k->buf, cap * k->stride)) == NULL)
			return P8V_ERR_ALLOC;
		k->buf = grown;
		if ((grown = realloc(k->lens, cap * sizeof(*k->lens))) == NULL)
			return P8V_ERR_ALLOC;
		k->lens = grown;
		k->cap = cap;
	}
	memcpy(k->buf + k->n * k->stride, key + k->skip, klen - k->skip);
	k->lens[k->n++] = klen - k->skip;
	return 0;
}

/* qsort_r: two kept keys of a keybuf (arg), by index, in key order. */
static int
keybuf_cmp(const void *a, const void *b, void *arg)
{
	const struct keybuf *k = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	size_t n = k->lens[i] < k->lens[j] ? k->lens[i] : k->lens[j];
	int c;

	if ((c = memcmp(keybuf_at(k, i), keybuf_at(k, j), n)) != 0)
		return c;
	return (k->lens[i] > k->lens[j]) - (k->lens[i] < k->lens[j]);
}

/*
 * Call cb for every record an index lists under ident, reading each
 * record; only those whose field (per field()) is still ident are passed
 * on: the record is the truth, and an entry left behind by a record that
 * did not decode when it was replaced is skipped.
 */
static int
by_index(struct store_txn *txn, const char *prefix, const char *ident,
    size_t mid_len, const char *skip_val,
    const char *(*field)(const struct key_record *), key_record_cb cb,
    void *arg)
{
	uint8_t pfx[KEY_IDX_KEY_MAX];
	struct keybuf k = { .stride = KEY_RECORD_DB_KEY_MAX };
	struct key_record rec;
	const uint8_t *val;
	size_t plen, vlen, i, o, *order = NULL;
	int r;

	if (cb == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	plen = strlen(prefix);
	memcpy(pfx, prefix, plen);
	memcpy(pfx + plen, ident, strlen(ident));
	plen += strlen(ident);
	pfx[plen++] = '/';
	/* The entries' tails, after mid_len bytes, are the records' db
	 * keys. */
	k.skip = plen + mid_len;
	k.skip_val = skip_val;
	if ((r = store_scan(txn, STORE_DB_META, pfx, plen, keybuf_add,
	    &k)) != 0)
		goto out;
	/* The records in (app, Key ID) order, whatever comes between ident
	 * and the db key in the entries. */
	if (k.n > 0 && (order = calloc(k.n, sizeof(*order))) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < k.n; i++)
		order[i] = i;
	if (mid_len > 0 && k.n > 1)
		qsort_r(order, k.n, sizeof(*order), keybuf_cmp, &k);
	for (o = 0; o < k.n; o++) {
		i = order[o];
		r = store_get(txn, STORE_DB_KEYS, keybuf_at(&k, i), k.lens[i],
		    &val, &vlen);
		if (r == P8V_ERR_NOT_FOUND)
			continue; /* a stale entry: the record is gone */
		if (r != 0)
			goto out;
		if ((r = key_record_decode(keybuf_at(&k, i), k.lens[i], val,
		    vlen, &rec)) != 0) {
			if (r == P8V_ERR_INTEGRITY)
				log_undecodable(keybuf_at(&k, i), k.lens[i]);
			goto out;
		}
		r = strcmp(field(&rec), ident) == 0 ? cb(&rec, arg) : 0;
		key_record_free(&rec);
		if (r == STORE_SCAN_STOP) {
			r = 0;
			goto out;
		}
		if (r != 0)
			goto out;
	}
	r = 0;
 out:
	free(order);
	keybuf_free(&k);
	return r;
}

static const char *
fingerprint_of(const struct key_record *rec)
{
	return rec->fingerprint;
}

static const char *
team_of(const struct key_record *rec)
{
	return rec->team_id;
}

int
key_record_by_fingerprint(struct store_txn *txn, const char *fingerprint,
    key_record_cb cb, void *arg)
{
	if (!fp_valid(fingerprint))
		return P8V_ERR_BAD_FIELD;
	return by_index(txn, KEY_FP_INDEX_PREFIX, fingerprint,
	    KEY_FP_INDEX_MID + 1, NULL, fingerprint_of, cb, arg);
}

int
key_record_by_team(struct store_txn *txn, const char *team_id,
    key_record_cb cb, void *arg)
{
	int r;

	if ((r = ids_team_id_valid(team_id)) != 0)
		return r;
	return by_index(txn, KEY_TEAM_INDEX_PREFIX, team_id, 0, NULL, team_of,
	    cb, arg);
}

int
key_record_by_team_other(struct store_txn *txn, const char *team_id,
    const char *fingerprint, key_record_cb cb, void *arg)
{
	int r;

	if ((r = ids_team_id_valid(team_id)) != 0)
		return r;
	if (!fp_valid(fingerprint))
		return P8V_ERR_BAD_FIELD;
	return by_index(txn, KEY_TEAM_INDEX_PREFIX, team_id, 0, fingerprint,
	    team_of, cb, arg);
}

/*
 * key_record_identity_conflict's walk over the fingerprint index entries
 * of copies under other ids (the entries of one fingerprint are grouped
 * by Team ID and Key ID: the copies under the caller's ids are skipped by
 * seeking past them).
 */
struct identity_walk {
	struct store_txn *txn;
	const uint8_t *pfx;             /* the fingerprint's entries' prefix */
	size_t plen;
	const char *mid;                /* the caller's Team ID || Key ID */
	const char *fingerprint, *key_id, *team_id;
	int conflict;
};

static int
identity_entry(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct identity_walk *w = arg;
	size_t skip = w->plen + KEY_FP_INDEX_MID + 1, dlen, rlen;
	const uint8_t *dbkey, *rval;
	struct key_record rec;
	int r;

	(void)val;
	(void)vlen;
	if (klen < w->plen || memcmp(key, w->pfx, w->plen) != 0)
		return STORE_SCAN_STOP; /* past this fingerprint's entries */
	if (klen <= skip || key[skip - 1] != '/' ||
	    (dlen = klen - skip) > KEY_RECORD_DB_KEY_MAX ||
	    memchr(key + skip, '\0', dlen) == NULL)
		return 0;       /* not an entry this code writes */
	/* The first copy under the caller's ids: the walk before them is
	 * done (the caller seeks past them for the rest). */
	if (memcmp(key + w->plen, w->mid, KEY_FP_INDEX_MID) == 0)
		return STORE_SCAN_STOP;
	/* Another id, by the entry: the record is the truth. Gone, damaged
	 * (it signs nothing; logged where it is used), revoked, or under
	 * another fingerprint now: no conflict. */
	dbkey = key + skip;
	r = store_get(w->txn, STORE_DB_KEYS, dbkey, dlen, &rval, &rlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	if ((r = key_record_decode(dbkey, dlen, rval, rlen, &rec)) != 0)
		return r == P8V_ERR_INTEGRITY ? 0 : r;
	if (rec.state != KEY_STATE_REVOKED &&
	    strcmp(rec.fingerprint, w->fingerprint) == 0 &&
	    (strcmp(rec.key_id, w->key_id) != 0 ||
	    strcmp(rec.team_id, w->team_id) != 0))
		w->conflict = 1;
	key_record_free(&rec);
	return w->conflict ? STORE_SCAN_STOP : 0;
}

int
key_record_identity_conflict(struct store_txn *txn, const char *fingerprint,
    const char *key_id, const char *team_id, int *conflict)
{
	struct identity_walk w;
	uint8_t pfx[KEY_IDX_KEY_MAX], start[KEY_IDX_KEY_MAX];
	char mid[KEY_FP_INDEX_MID + 1];
	size_t plen;
	int r;

	if (conflict == NULL || key_id == NULL || team_id == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*conflict = 0;
	if (!fp_valid(fingerprint) || fp_mid(team_id, key_id, mid) == NULL)
		return P8V_ERR_BAD_FIELD;
	plen = strlen(KEY_FP_INDEX_PREFIX);
	memcpy(pfx, KEY_FP_INDEX_PREFIX, plen);
	memcpy(pfx + plen, fingerprint, KEY_RECORD_FINGERPRINT_HEX);
	plen += KEY_RECORD_FINGERPRINT_HEX;
	pfx[plen++] = '/';
	memset(&w, 0, sizeof(w));
	w.txn = txn;
	w.pfx = pfx;
	w.plen = plen;
	w.mid = mid;
	w.fingerprint = fingerprint;
	w.key_id = key_id;
	w.team_id = team_id;
	/* Two short walks, however many copies there are under the caller's
	 * ids: the entries before those copies, then the entries after them,
	 * from the first key past "mid/" ("/" + 1 is "0"). */
	if ((r = store_scan(txn, STORE_DB_META, pfx, plen, identity_entry,
	    &w)) != 0)
		return r;
	if (!w.conflict) {
		memcpy(start, pfx, plen);
		memcpy(start + plen, mid, KEY_FP_INDEX_MID);
		start[plen + KEY_FP_INDEX_MID] = '/' + 1;
		if ((r = store_scan_from(txn, STORE_DB_META, start,
		    plen + KEY_FP_INDEX_MID + 1, identity_entry, &w)) != 0)
			return r;
	}
	*conflict = w.conflict;
	return 0;
}

static int
count_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	(*(uint64_t *)arg)++;
	return 0;
}

int
key_record_index_sync(struct store_txn *txn, int *rebuilt)
{
	static const char *const prefixes[] = {
		KEY_FP_INDEX_PREFIX, KEY_TEAM_INDEX_PREFIX,
	};
	struct keybuf old = { .stride = KEY_IDX_KEY_MAX };
	struct keybuf recs = { .stride = KEY_RECORD_DB_KEY_MAX };
	struct key_record rec;
	const uint8_t *val;
	uint64_t records = 0, entries;
	size_t i, p, vlen;
	int stale = 0, r;

	if (rebuilt != NULL)
		*rebuilt = 0;
	if ((r = key_record_count(txn, &records)) != 0)
		return r;
	/* In step as this release left it: two lookups. */
	r = store_get(txn, STORE_DB_META, KEY_INDEX_RECORDS,
	    strlen(KEY_INDEX_RECORDS), &val, &vlen);
	if (r == 0 && vlen == 8 && store_get_u64(val) == records)
		return 0;
	if (r != 0 && r != P8V_ERR_NOT_FOUND)
		return r;
	/* Else a count and a walk over the entries' keys. */
	for (p = 0; p < 2; p++) {
		entries = 0;
		if ((r = store_scan(txn, STORE_DB_META, prefixes[p],
		    strlen(prefixes[p]), count_one, &entries)) != 0)
			return r;
		stale |= entries != records;
	}
	if (!stale)
		return index_mark(txn);
	/* Written by a release without the indexes (or holding a record
	 * that does not decode, which gets no entry): build them again. */
	for (p = 0; p < 2; p++)
		if ((r = store_scan(txn, STORE_DB_META, prefixes[p],
		    strlen(prefixes[p]), keybuf_add, &old)) != 0)
			goto out;
	if ((r = store_scan(txn, STORE_DB_KEYS, NULL, 0, keybuf_add,
	    &recs)) != 0)
		goto out;
	for (i = 0; i < old.n; i++)
		if ((r = store_del(txn, STORE_DB_META, keybuf_at(&old, i),
		    old.lens[i])) != 0)
			goto out;
	for (i = 0; i < recs.n; i++) {
		if ((r = store_get(txn, STORE_DB_KEYS, keybuf_at(&recs, i),
		    recs.lens[i], &val, &vlen)) != 0)
			goto out;
		r = key_record_decode(keybuf_at(&recs, i), recs.lens[i], val,
		    vlen, &rec);
		if (r == P8V_ERR_INTEGRITY)
			continue; /* damaged: logged where it is read */
		if (r != 0)
			goto out;
		r = index_put(txn, &rec, keybuf_at(&recs, i), recs.lens[i]);
		key_record_free(&rec);
		if (r != 0)
			goto out;
	}
	if ((r = index_mark(txn)) != 0)
		goto out;
	if (rebuilt != NULL)
		*rebuilt = 1;
 out:
	keybuf_free(&old);
	keybuf_free(&recs);
	return r;
}
