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

/* The record stored under dbkey, decoded into old: 1, 0 if there is none
 * or it does not decode (the index then only adds), or a store error. */
static int
get_old(struct store_txn *txn, const uint8_t *dbkey, size_t klen,
    struct key_record *old)
{
	const uint8_t *v;
	size_t vlen;
	int r;

	memset(old, 0, sizeof(*old));
	r = store_get(txn, STORE_DB_KEYS, dbkey, klen, &v, &vlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	return key_record_decode(dbkey, klen, v, vlen, old) == 0 ? 1 : 0;
}

int
key_record_put(struct store_txn *txn, const struct key_record *rec)
{
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX], *val = NULL;
	struct key_record old = { 0 };
	size_t klen;
	size_t vlen;
	int had, r;

	if ((r = key_record_encode(rec, &val, &vlen)) != 0 ||
	    (r = key_record_db_key(rec->app, rec->key_id, dbkey, &klen)) != 0)
		goto out;
	/* The per-app index (store/appindex.h) changes with the record. */
	if ((had = r = get_old(txn, dbkey, klen, &old)) < 0)
		goto out;
	if ((r = store_put(txn, STORE_DB_KEYS, dbkey, klen, val, vlen,
	    0)) != 0)
		goto out;
	r = appindex_on_put(txn, had ? &old : NULL, rec);
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
	size_t klen;
	int r;

	struct key_record old;
	int had;

	if ((r = key_record_db_key(app, key_id, dbkey, &klen)) != 0)
		return r;
	if ((had = r = get_old(txn, dbkey, klen, &old)) < 0)
		return r;
	if ((r = store_del(txn, STORE_DB_KEYS, dbkey, klen)) == 0 && had)
		r = appindex_on_delete(txn, &old);
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
