/* audit.c: the hash-chained audit log; see audit.h. */
#include "store/audit.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/codec.h"
#include "common/err.h"

#define AUDIT_HEAD_KEY "audit/head"
#define AUDIT_HEAD_LEN (sizeof(AUDIT_HEAD_KEY) - 1)
#define AUDIT_HEAD_VALUE (8 + AUDIT_HASH_BYTES)
#define AUDIT_SEQ_BYTES 8

static void
hash(const uint8_t *buf, size_t len, uint8_t out[AUDIT_HASH_BYTES])
{
	crypto_hash_sha256(out, buf, len);
}

struct append {
	uint64_t seq;
	uint8_t prev[AUDIT_HASH_BYTES];
};

/* Where the chain ends: the next sequence number and the hash to chain to. */
static int
chain_end(struct store_txn *txn, struct append *a)
{
	const uint8_t *key, *val;
	size_t klen, vlen;
	int r;

	r = store_last(txn, STORE_DB_AUDIT, &key, &klen, &val, &vlen);
	if (r == P8V_ERR_NOT_FOUND) {
		a->seq = 1;
		memset(a->prev, 0, sizeof(a->prev));
		return 0;
	}
	if (r != 0)
		return r;
	if (klen != AUDIT_SEQ_BYTES)
		return P8V_ERR_INTEGRITY;
	a->seq = store_get_u64(key) + 1;
	if (a->seq > (uint64_t)CODEC_JSON_INT_MAX)
		return P8V_ERR_INTEGRITY;
	hash(val, vlen, a->prev);
	return 0;
}

int
store_audit_append(struct store_txn *txn, const json_t *event, uint64_t *seq)
{
	char prev_hex[AUDIT_HASH_HEX + 1], *json = NULL;
	uint8_t key[AUDIT_SEQ_BYTES], head[AUDIT_HEAD_VALUE];
	struct append a;
	json_t *obj = NULL;
	size_t len;
	int r;

	if (!json_is_object(event) || json_object_get(event, "seq") != NULL ||
	    json_object_get(event, "prev") != NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (sodium_init() < 0)
		return P8V_ERR_CRYPTO;
	if ((r = chain_end(txn, &a)) != 0)
		return r;
	codec_hex_encode(a.prev, AUDIT_HASH_BYTES, prev_hex);
	r = P8V_ERR_ALLOC;
	/* A shallow copy: only top-level members are added. */
	if ((obj = json_copy((json_t *)event)) == NULL ||
	    json_object_set_new(obj, "seq", json_integer((json_int_t)a.seq)) ||
	    json_object_set_new(obj, "prev", json_string(prev_hex)))
		goto out;
	if ((r = codec_json_dump(obj, AUDIT_EVENT_MAX, &json, &len)) != 0)
		goto out;
	store_put_u64(key, a.seq);
	if ((r = store_put(txn, STORE_DB_AUDIT, key, sizeof(key), json, len,
	    STORE_PUT_NO_OVERWRITE)) != 0)
		goto out;
	store_put_u64(head, a.seq);
	hash((const uint8_t *)json, len, head + 8);
	if ((r = store_put(txn, STORE_DB_META, AUDIT_HEAD_KEY, AUDIT_HEAD_LEN,
	    head, sizeof(head), 0)) != 0)
		goto out;
	if (seq != NULL)
		*seq = a.seq;
	r = 0;
 out:
	json_decref(obj);
	free(json);
	return r;
}

struct walk {
	int (*cb)(uint64_t, const char *, size_t, void *);
	void *arg;
};

static int
walk_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct walk *w = arg;
	char *json;
	int r;

	if (klen != AUDIT_SEQ_BYTES)
		return P8V_ERR_INTEGRITY;
	/* A NUL-terminated copy: map memory has no terminator. */
	if ((json = malloc(vlen + 1)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(json, val, vlen);
	json[vlen] = '\0';
	r = w->cb(store_get_u64(key), json, vlen, w->arg);
	free(json);
	return r;
}

int
store_audit_foreach(struct store_txn *txn, uint64_t from_seq,
    int (*cb)(uint64_t, const char *, size_t, void *), void *arg)
{
	struct walk w = { cb, arg };
	uint8_t start[AUDIT_SEQ_BYTES];

	if (cb == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	store_put_u64(start, from_seq);
	return store_scan_from(txn, STORE_DB_AUDIT, start, sizeof(start),
	    walk_one, &w);
}

struct verify {
	uint64_t expect;        /* next sequence number */
	uint8_t prev[AUDIT_HASH_BYTES];
	uint64_t bad;           /* where it broke, 0 if not */
};

static int
verify_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct verify *v = arg;
	char prev_hex[AUDIT_HASH_HEX + 1], got[AUDIT_HASH_HEX + 1];
	json_t *obj = NULL;
	uint64_t seq;
	int64_t n;
	int ok;

	if (klen != AUDIT_SEQ_BYTES) {
		v->bad = v->expect;
		return P8V_ERR_INTEGRITY;
	}
	seq = store_get_u64(key);
	codec_hex_encode(v->prev, AUDIT_HASH_BYTES, prev_hex);
	if (seq == v->expect && vlen <= AUDIT_EVENT_MAX &&
	    codec_json_decode(val, vlen, &obj) == P8V_ERR_ALLOC)
		return P8V_ERR_ALLOC;   /* memory pressure, not a broken chain */
	ok = seq == v->expect && vlen <= AUDIT_EVENT_MAX && obj != NULL &&
	    codec_json_int(obj, "seq", 1, CODEC_JSON_INT_MAX, &n) == 0 &&
	    (uint64_t)n == seq &&
	    codec_json_str(obj, "prev", got, sizeof(got)) == 0 &&
	    strcmp(got, prev_hex) == 0;
	json_decref(obj);
	if (!ok) {
		v->bad = seq;
		return P8V_ERR_INTEGRITY;
	}
	hash(val, vlen, v->prev);
	v->expect++;
	return 0;
}

int
store_audit_verify(struct store_txn *txn, uint64_t *events, uint64_t *bad_seq)
{
	struct verify v = { .expect = 1 };
	const uint8_t *head;
	uint64_t last;
	size_t hlen;
	int r;

	if (events != NULL)
		*events = 0;
	if (bad_seq != NULL)
		*bad_seq = 0;
	if (sodium_init() < 0)
		return P8V_ERR_CRYPTO;
	r = store_scan(txn, STORE_DB_AUDIT, NULL, 0, verify_one, &v);
	last = v.expect - 1;
	if (r == 0) {
		r = store_get(txn, STORE_DB_META, AUDIT_HEAD_KEY,
		    AUDIT_HEAD_LEN, &head, &hlen);
		if (r == P8V_ERR_NOT_FOUND && last == 0)
			r = 0;
		else if (r == P8V_ERR_NOT_FOUND ||
		    (r == 0 && hlen != AUDIT_HEAD_VALUE)) {
			v.bad = last;
			r = P8V_ERR_INTEGRITY;
		} else if (r == 0 && store_get_u64(head) != last) {
			/* Events past the end were removed (or the head
			 * moved back): the first missing one is last + 1. */
			v.bad = store_get_u64(head) > last ? last + 1 :
			    store_get_u64(head) + 1;
			r = P8V_ERR_INTEGRITY;
		} else if (r == 0 && memcmp(head + 8, v.prev,
		    AUDIT_HASH_BYTES) != 0) {
			v.bad = last;
			r = P8V_ERR_INTEGRITY;
		}
	}
	if (events != NULL)
		*events = last;
	if (bad_seq != NULL)
		*bad_seq = v.bad;
	return r;
}
