/* audit.c: the hash-chained audit log; see audit.h. */
#include "store/audit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/codec.h"
#include "common/err.h"

#define AUDIT_HEAD_KEY "audit/head"
#define AUDIT_HEAD_LEN (sizeof(AUDIT_HEAD_KEY) - 1)
#define AUDIT_HEAD_VALUE (8 + AUDIT_HASH_BYTES)
#define AUDIT_SEQ_BYTES 8
/* Where the kept chain starts (retention): u64 first kept seq || the hash
 * of the last pruned event, which the first kept event's "prev" names. */
#define AUDIT_CHECKPOINT_KEY "audit/checkpoint"
#define AUDIT_CHECKPOINT_VALUE (8 + AUDIT_HASH_BYTES)
/* The last event written out by p8vault audit export (u64). */
#define AUDIT_EXPORTED_KEY "audit/exported"
/* Events pruned per transaction: deletes, the checkpoint, within
 * store_limits' 128 operations. */
#define AUDIT_PRUNE_BATCH 100

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

int
store_audit_checkpoint(struct store_txn *txn, uint64_t *first_seq,
    uint8_t prev[AUDIT_HASH_BYTES])
{
	const uint8_t *v;
	size_t vlen;
	int r;

	*first_seq = 1;
	memset(prev, 0, AUDIT_HASH_BYTES);
	r = store_get(txn, STORE_DB_META, AUDIT_CHECKPOINT_KEY,
	    strlen(AUDIT_CHECKPOINT_KEY), &v, &vlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	if (vlen != AUDIT_CHECKPOINT_VALUE || store_get_u64(v) == 0)
		return P8V_ERR_INTEGRITY;
	*first_seq = store_get_u64(v);
	memcpy(prev, v + 8, AUDIT_HASH_BYTES);
	return 0;
}

int
store_audit_exported(struct store_txn *txn, uint64_t *seq)
{
	const uint8_t *v;
	size_t vlen;
	int r;

	*seq = 0;
	r = store_get(txn, STORE_DB_META, AUDIT_EXPORTED_KEY,
	    strlen(AUDIT_EXPORTED_KEY), &v, &vlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	if (vlen != 8)
		return P8V_ERR_INTEGRITY;
	*seq = store_get_u64(v);
	return 0;
}

int
store_audit_set_exported(struct store_txn *txn, uint64_t seq)
{
	uint8_t v[8];
	uint64_t cur;
	int r;

	if ((r = store_audit_exported(txn, &cur)) != 0 && r != P8V_ERR_INTEGRITY)
		return r;
	if (r == 0 && seq <= cur)
		return 0;       /* never moves back */
	store_put_u64(v, seq);
	return store_put(txn, STORE_DB_META, AUDIT_EXPORTED_KEY,
	    strlen(AUDIT_EXPORTED_KEY), v, sizeof(v), 0);
}

/* "2026-12-06T21:22:22Z" (the events' "time") to seconds since the epoch;
 * -1 if it is not that. */
static int64_t
event_time(const json_t *ev)
{
	const char *s = json_string_value(json_object_get(ev, "time"));
	struct tm tm;
	const char *end;

	if (s == NULL)
		return -1;
	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) == NULL ||
	    *end != '\0')
		return -1;
	return (int64_t)timegm(&tm);
}

struct prune {
	int64_t cutoff;         /* events before this time go */
	uint64_t limit;         /* ... up to this seq (exported, not last) */
	uint64_t first;         /* the checkpoint's first seq */
	uint64_t next;          /* first seq kept after this batch */
	uint8_t prev[AUDIT_HASH_BYTES];
	uint64_t n;
	uint8_t keys[AUDIT_PRUNE_BATCH][AUDIT_SEQ_BYTES];
};

static int
prune_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct prune *p = arg;
	json_t *ev = NULL;
	uint64_t seq;
	int64_t t;

	if (klen != AUDIT_SEQ_BYTES)
		return P8V_ERR_INTEGRITY;
	seq = store_get_u64(key);
	if (p->n == AUDIT_PRUNE_BATCH || seq > p->limit)
		return STORE_SCAN_STOP;
	if (codec_json_decode(val, vlen, &ev) != 0)
		return P8V_ERR_INTEGRITY;
	t = event_time(ev);
	json_decref(ev);
	/* Events are in time order: the first young enough ends it. */
	if (t < 0 || t >= p->cutoff)
		return STORE_SCAN_STOP;
	memcpy(p->keys[p->n++], key, AUDIT_SEQ_BYTES);
	hash(val, vlen, p->prev);
	p->next = seq + 1;
	return 0;
}

static int
prune_txn(struct store_txn *txn, void *arg)
{
	struct prune *p = arg;
	uint8_t start[AUDIT_SEQ_BYTES], cp[AUDIT_CHECKPOINT_VALUE];
	const uint8_t *key, *val;
	size_t klen, vlen, i;
	uint64_t exported;
	int r;

	p->n = 0;
	if ((r = store_audit_checkpoint(txn, &p->first, p->prev)) != 0 ||
	    (r = store_audit_exported(txn, &exported)) != 0)
		return r;
	/* Never the last event (the chain's end is the newest stored one),
	 * never one not yet written out by p8vault audit export. */
	r = store_last(txn, STORE_DB_AUDIT, &key, &klen, &val, &vlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	if (klen != AUDIT_SEQ_BYTES)
		return P8V_ERR_INTEGRITY;
	p->limit = store_get_u64(key) - 1;
	if (exported < p->limit)
		p->limit = exported;
	store_put_u64(start, p->first);
	if ((r = store_scan_from(txn, STORE_DB_AUDIT, start, sizeof(start),
	    prune_one, p)) != 0)
		return r;
	if (p->n == 0)
		return 0;
	for (i = 0; i < p->n; i++)
		if ((r = store_del(txn, STORE_DB_AUDIT, p->keys[i],
		    AUDIT_SEQ_BYTES)) != 0)
			return r;
	store_put_u64(cp, p->next);
	memcpy(cp + 8, p->prev, AUDIT_HASH_BYTES);
	return store_put(txn, STORE_DB_META, AUDIT_CHECKPOINT_KEY,
	    strlen(AUDIT_CHECKPOINT_KEY), cp, sizeof(cp), 0);
}

int
store_audit_prune(struct store *store, int64_t cutoff, uint64_t *pruned,
    uint64_t *first_seq)
{
	struct prune p;
	int r;

	*pruned = 0;
	*first_seq = 0;
	if (sodium_init() < 0)
		return P8V_ERR_CRYPTO;
	memset(&p, 0, sizeof(p));
	p.cutoff = cutoff;
	do {
		if ((r = store_write(store, prune_txn, &p)) != 0)
			return r;
		*pruned += p.n;
		*first_seq = p.n > 0 ? p.next : p.first;
	} while (p.n == AUDIT_PRUNE_BATCH);
	return 0;
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
	/* An event before the checkpoint: pruning left it, or it was put
	 * back by hand. */
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
	uint64_t last, first;
	size_t hlen;
	int r;

	if (events != NULL)
		*events = 0;
	if (bad_seq != NULL)
		*bad_seq = 0;
	if (sodium_init() < 0)
		return P8V_ERR_CRYPTO;
	/* From the checkpoint: the first kept event must chain to the hash
	 * of the last pruned one, and none may come before it. */
	if ((r = store_audit_checkpoint(txn, &first, v.prev)) != 0) {
		if (bad_seq != NULL && r == P8V_ERR_INTEGRITY)
			*bad_seq = 1;
		return r;
	}
	v.expect = first;
	r = store_scan(txn, STORE_DB_AUDIT, NULL, 0, verify_one, &v);
	last = v.expect - 1;
	if (r == 0 && last + 1 == first && first > 1) {
		/* Everything after the checkpoint is gone: the head says what
		 * the last one was. */
		v.bad = first;
		r = P8V_ERR_INTEGRITY;
	}
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
		*events = last >= first ? last - first + 1 : 0;
	if (bad_seq != NULL)
		*bad_seq = v.bad;
	return r;
}
