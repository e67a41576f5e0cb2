/* cache.c: the persisted token cache; see cache.h. */
#include "store/cache.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define CACHE_FORMAT 1
#define CACHE_HEADER_BYTES 9 /* format || u64 expires_at */

static int
key_ok(const char *key, size_t *len)
{
	size_t i;

	if (key == NULL)
		return 0;
	for (i = 0; key[i] != '\0'; i++)
		if (i >= CACHE_KEY_MAX || key[i] <= 0x20 || key[i] > 0x7e)
			return 0;
	*len = i;
	return i > 0;
}

static int
parse(const uint8_t *val, size_t vlen, int64_t *expires_at)
{
	if (vlen < CACHE_HEADER_BYTES || val[0] != CACHE_FORMAT ||
	    vlen - CACHE_HEADER_BYTES > CACHE_BLOB_MAX)
		return P8V_ERR_INTEGRITY;
	*expires_at = (int64_t)store_get_u64(val + 1);
	return 0;
}

int
store_cache_put(struct store_txn *txn, const char *key, int64_t expires_at,
    const uint8_t *blob, size_t len)
{
	uint8_t *val;
	size_t klen;
	int r;

	if (!key_ok(key, &klen) || (blob == NULL && len > 0))
		return P8V_ERR_INVALID_ARGUMENT;
	if (len > CACHE_BLOB_MAX)
		return P8V_ERR_TOO_LARGE;
	if ((val = malloc(CACHE_HEADER_BYTES + len)) == NULL)
		return P8V_ERR_ALLOC;
	val[0] = CACHE_FORMAT;
	store_put_u64(val + 1, (uint64_t)expires_at);
	if (len > 0)
		memcpy(val + CACHE_HEADER_BYTES, blob, len);
	r = store_put(txn, STORE_DB_CACHE, key, klen, val,
	    CACHE_HEADER_BYTES + len, 0);
	free(val);
	return r;
}

int
store_cache_get(struct store_txn *txn, const char *key, int64_t *expires_at,
    uint8_t **blob, size_t *len)
{
	const uint8_t *val;
	size_t klen, vlen, n;
	int64_t exp;
	int r;

	if (blob == NULL || len == NULL || expires_at == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*blob = NULL;
	if (!key_ok(key, &klen))
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = store_get(txn, STORE_DB_CACHE, key, klen, &val, &vlen)) != 0 ||
	    (r = parse(val, vlen, &exp)) != 0)
		return r;
	n = vlen - CACHE_HEADER_BYTES;
	if ((*blob = malloc(n > 0 ? n : 1)) == NULL)
		return P8V_ERR_ALLOC;
	if (n > 0)
		memcpy(*blob, val + CACHE_HEADER_BYTES, n);
	*len = n;
	*expires_at = exp;
	return 0;
}

int
store_cache_delete(struct store_txn *txn, const char *key)
{
	size_t klen;

	if (!key_ok(key, &klen))
		return P8V_ERR_INVALID_ARGUMENT;
	return store_del(txn, STORE_DB_CACHE, key, klen);
}

struct walk {
	int (*cb)(const char *, int64_t, const uint8_t *, size_t, void *);
	void *arg;
};

static int
walk_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct walk *w = arg;
	char k[CACHE_KEY_MAX + 1];
	int64_t exp;
	int r;

	if (klen > CACHE_KEY_MAX || memchr(key, '\0', klen) != NULL)
		return P8V_ERR_INTEGRITY;
	if ((r = parse(val, vlen, &exp)) != 0)
		return r;
	memcpy(k, key, klen);
	k[klen] = '\0';
	return w->cb(k, exp, val + CACHE_HEADER_BYTES,
	    vlen - CACHE_HEADER_BYTES, w->arg);
}

int
store_cache_foreach(struct store_txn *txn,
    int (*cb)(const char *, int64_t, const uint8_t *, size_t, void *),
    void *arg)
{
	struct walk w = { cb, arg };

	if (cb == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return store_scan(txn, STORE_DB_CACHE, NULL, 0, walk_one, &w);
}

/* Keys to delete, collected first: a cursor walk must not write. */
struct purge {
	int64_t now;
	char **keys;
	size_t *lens;
	size_t n, cap;
};

static int
note_expired(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct purge *p = arg;
	int64_t exp;

	if (parse(val, vlen, &exp) == 0 && exp > p->now)
		return 0;
	if (p->n == p->cap) {
		size_t cap = p->cap == 0 ? 16 : p->cap * 2;
		char **k = reallocarray(p->keys, cap, sizeof(*k));
		size_t *l;

		if (k == NULL)
			return P8V_ERR_ALLOC;
		p->keys = k;
		if ((l = reallocarray(p->lens, cap, sizeof(*l))) == NULL)
			return P8V_ERR_ALLOC;
		p->lens = l;
		p->cap = cap;
	}
	if ((p->keys[p->n] = malloc(klen)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(p->keys[p->n], key, klen);
	p->lens[p->n++] = klen;
	return 0;
}

int
store_cache_purge(struct store_txn *txn, int64_t now, uint64_t *removed)
{
	struct purge p = { .now = now };
	size_t i;
	int r;

	if (removed != NULL)
		*removed = 0;
	if ((r = store_scan(txn, STORE_DB_CACHE, NULL, 0, note_expired,
	    &p)) != 0)
		goto out;
	for (i = 0; i < p.n; i++)
		if ((r = store_del(txn, STORE_DB_CACHE, p.keys[i],
		    p.lens[i])) != 0)
			goto out;
	if (removed != NULL)
		*removed = p.n;
	r = 0;
 out:
	for (i = 0; i < p.n; i++)
		free(p.keys[i]);
	free(p.keys);
	free(p.lens);
	return r;
}

int
store_cache_clear(struct store_txn *txn)
{
	return store_clear(txn, STORE_DB_CACHE);
}
