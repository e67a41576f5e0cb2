/* appindex.c: the per-app key index in the meta database; see appindex.h. */
#include "store/appindex.h"

#include <string.h>

#include "common/err.h"
#include "common/log.h"

#define AI_FP "appidx/fp/"
#define AI_ACTIVE "appidx/active/"
#define AI_LIVE "appidx/live/"
#define AI_READY "appidx/ready"
/* The longest key: prefix, app, NUL and a fingerprint. */
#define AI_KEY_MAX (sizeof(AI_ACTIVE) + IDS_APP_MAX + 1 + \
    KEY_RECORD_FINGERPRINT_HEX + 1)

/* prefix app "\0" tail (tail NULL: prefix app only). */
static size_t
ai_key(uint8_t out[AI_KEY_MAX], const char *prefix, const char *app,
    const char *tail)
{
	size_t n = 0, l;

	l = strlen(prefix);
	memcpy(out, prefix, l);
	n += l;
	l = strnlen(app, IDS_APP_MAX);
	memcpy(out + n, app, l);
	n += l;
	if (tail != NULL) {
		out[n++] = '\0';
		/* A Key ID or a fingerprint, NUL-terminated in its own
		 * (shorter or longer) array: counted by hand, as strnlen's
		 * fixed bound would read past a Key ID's array for the
		 * compiler (-Wstringop-overread in release builds). */
		for (l = 0; l < KEY_RECORD_FINGERPRINT_HEX && tail[l] != '\0';
		    l++)
			;
		memcpy(out + n, tail, l);
		n += l;
	}
	return n;
}

int
appindex_on_put(struct store_txn *txn, const struct key_record *old,
    const struct key_record *rec)
{
	uint8_t key[AI_KEY_MAX], env = (uint8_t)rec->environment;
	size_t klen;
	int old_live, new_live, r;

	if (old != NULL && strcmp(old->fingerprint, rec->fingerprint) != 0) {
		klen = ai_key(key, AI_FP, old->app, old->fingerprint);
		r = store_del(txn, STORE_DB_META, key, klen);
		if (r != 0 && r != P8V_ERR_NOT_FOUND)
			return r;
	}
	klen = ai_key(key, AI_FP, rec->app, rec->fingerprint);
	if ((r = store_put(txn, STORE_DB_META, key, klen, rec->key_id,
	    strlen(rec->key_id), 0)) != 0)
		return r;
	klen = ai_key(key, AI_ACTIVE, rec->app, rec->key_id);
	if (rec->state == KEY_STATE_ACTIVE) {
		if ((r = store_put(txn, STORE_DB_META, key, klen, &env,
		    sizeof(env), 0)) != 0)
			return r;
	} else if (old == NULL || old->state == KEY_STATE_ACTIVE) {
		r = store_del(txn, STORE_DB_META, key, klen);
		if (r != 0 && r != P8V_ERR_NOT_FOUND)
			return r;
	}
	old_live = old != NULL && old->state != KEY_STATE_REVOKED;
	new_live = rec->state != KEY_STATE_REVOKED;
	if (old != NULL && old_live == new_live)
		return 0;
	klen = ai_key(key, AI_LIVE, rec->app, rec->key_id);
	if (new_live)
		return store_put(txn, STORE_DB_META, key, klen, "", 0, 0);
	r = store_del(txn, STORE_DB_META, key, klen);
	return r == P8V_ERR_NOT_FOUND ? 0 : r;
}

int
appindex_on_delete(struct store_txn *txn, const struct key_record *old)
{
	uint8_t key[AI_KEY_MAX];
	size_t klen;
	int r;

	klen = ai_key(key, AI_FP, old->app, old->fingerprint);
	r = store_del(txn, STORE_DB_META, key, klen);
	if (r != 0 && r != P8V_ERR_NOT_FOUND)
		return r;
	klen = ai_key(key, AI_ACTIVE, old->app, old->key_id);
	r = store_del(txn, STORE_DB_META, key, klen);
	if (r != 0 && r != P8V_ERR_NOT_FOUND)
		return r;
	klen = ai_key(key, AI_LIVE, old->app, old->key_id);
	r = store_del(txn, STORE_DB_META, key, klen);
	return r == P8V_ERR_NOT_FOUND ? 0 : r;
}

int
appindex_ready(struct store_txn *txn)
{
	const uint8_t *v;
	size_t vlen;
	int r;

	r = store_get(txn, STORE_DB_META, AI_READY, strlen(AI_READY), &v,
	    &vlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	return r == 0 ? 1 : r;
}

int
appindex_fingerprint(struct store_txn *txn, const char *app,
    const char *fingerprint, char key_id[IDS_APPLE_ID_LEN + 1])
{
	uint8_t key[AI_KEY_MAX];
	const uint8_t *v;
	size_t klen = ai_key(key, AI_FP, app, fingerprint), vlen;
	int r;

	if ((r = store_get(txn, STORE_DB_META, key, klen, &v, &vlen)) != 0)
		return r;
	if (vlen != IDS_APPLE_ID_LEN)
		return P8V_ERR_NOT_FOUND;       /* not ours: ignored */
	memcpy(key_id, v, vlen);
	key_id[vlen] = '\0';
	return 0;
}

struct active_walk {
	size_t plen;
	appindex_active_cb cb;
	void *arg;
};

static int
active_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct active_walk *w = arg;
	char key_id[IDS_APPLE_ID_LEN + 1];

	if (klen != w->plen + IDS_APPLE_ID_LEN || vlen != 1 ||
	    val[0] > KEY_ENV_BOTH)
		return 0;       /* not an entry of ours: ignored */
	memcpy(key_id, key + w->plen, IDS_APPLE_ID_LEN);
	key_id[IDS_APPLE_ID_LEN] = '\0';
	return w->cb(key_id, (enum key_env)val[0], w->arg);
}

int
appindex_active(struct store_txn *txn, const char *app,
    appindex_active_cb cb, void *arg)
{
	uint8_t prefix[AI_KEY_MAX];
	struct active_walk w;
	size_t plen = ai_key(prefix, AI_ACTIVE, app, "");

	w.plen = plen;
	w.cb = cb;
	w.arg = arg;
	return store_scan(txn, STORE_DB_META, prefix, plen, active_one, &w);
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
appindex_live(struct store_txn *txn, const char *app, uint64_t *n)
{
	uint8_t prefix[AI_KEY_MAX];
	size_t plen = ai_key(prefix, AI_LIVE, app, "");

	/* One entry per key that is not revoked: as many as the keys-per-app
	 * quota allows, whatever the app's revoked history. */
	*n = 0;
	return store_scan(txn, STORE_DB_META, prefix, plen, count_one, n);
}

/* --- building --- */

struct build {
	uint8_t start[KEY_RECORD_DB_KEY_MAX]; /* first db key of the batch */
	size_t start_len;                     /* 0: from the beginning */
	/* Set by a run (store_write may run build_txn again: each run starts
	 * from start and sets these afresh). */
	uint8_t next[KEY_RECORD_DB_KEY_MAX];
	size_t next_len;
	size_t done;            /* records indexed in this batch */
	int more;               /* records are left after the batch */
	int ready;              /* built already */
	struct store_txn *txn;
};

static int
build_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct build *b = arg;
	struct key_record rec;
	int r;

	if (b->done == APPINDEX_BUILD_BATCH) {
		if (klen > sizeof(b->next))
			return P8V_ERR_INTEGRITY;
		memcpy(b->next, key, klen);
		b->next_len = klen;
		b->more = 1;
		return STORE_SCAN_STOP;
	}
	b->done++;
	/* A record that does not decode is named by key_record_get when it
	 * is used; the index leaves it out. */
	if (key_record_decode(key, klen, val, vlen, &rec) != 0)
		return 0;
	/* Idempotent: entries are put or deleted, never counted up. */
	r = appindex_on_put(b->txn, NULL, &rec);
	key_record_free(&rec);
	return r;
}

static int
build_txn(struct store_txn *txn, void *arg)
{
	struct build *b = arg;
	int r;

	b->done = 0;
	b->more = 0;
	b->next_len = 0;
	b->ready = 0;
	b->txn = txn;
	if ((r = appindex_ready(txn)) < 0)
		return r;
	if (r == 1) {
		b->ready = 1;   /* built by another process meanwhile */
		return 0;
	}
	/* The callback writes to meta, not to the keys it walks. */
	if (b->start_len == 0)
		r = store_scan(txn, STORE_DB_KEYS, NULL, 0, build_one, b);
	else
		r = store_scan_from(txn, STORE_DB_KEYS, b->start,
		    b->start_len, build_one, b);
	if (r != 0)
		return r;
	if (!b->more)
		return store_put(txn, STORE_DB_META, AI_READY,
		    strlen(AI_READY), "1", 1, 0);
	return 0;
}

int
appindex_build(struct store *store)
{
	struct build b;
	uint64_t total = 0;
	int r;

	memset(&b, 0, sizeof(b));
	for (;;) {
		if ((r = store_write(store, build_txn, &b)) != 0)
			return r;
		if (b.ready)
			return 0;
		total += b.done;
		if (!b.more)
			break;
		memcpy(b.start, b.next, b.next_len);
		b.start_len = b.next_len;
	}
	log_infof("appindex_built", "per-app key index built over %llu "
	    "record(s)", (unsigned long long)total);
	return 0;
}
