/* masterkeys.c: master-key check values in meta; see masterkeys.h. */
#include "store/masterkeys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/codec.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/secmem.h"
#include "store/records.h"

#define MK_PREFIX "mk/"
#define MK_PREFIX_LEN (sizeof(MK_PREFIX) - 1)
#define MK_KEY_LEN (MK_PREFIX_LEN + MASTER_KEY_ID_HEX)
#define MK_VALUE_LEN (MASTER_KEY_CHECK_BYTES + 8)
/* A retired key: "mkr/<id hex>" -> u64 big-endian retired_at. */
#define MKR_PREFIX "mkr/"
#define MKR_PREFIX_LEN (sizeof(MKR_PREFIX) - 1)
#define MKR_KEY_LEN (MKR_PREFIX_LEN + MASTER_KEY_ID_HEX)
/* The mismatch log line names at most this many recorded ids. */
#define MK_LOG_IDS 16
/* "id, id, ..." of MK_LOG_IDS ids. */
#define MK_LOG_BUF (MK_LOG_IDS * (MASTER_KEY_ID_HEX + 2) + 8)

enum mk_status { MK_NEW = 0, MK_MATCH, MK_DIFFERS, MK_RETIRED };

struct check {
	const struct store_master_key_check *keys;
	size_t n;
	int64_t now;
	/* Results of the last run (reset at its start: fn may run twice). */
	enum mk_status status[MASTER_KEYRING_MAX];
	size_t n_recorded;
	char recorded[MK_LOG_BUF];
};

static int
hex_ok(const uint8_t *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* Validate a meta "mk/" entry; 0 or P8V_ERR_INTEGRITY. */
static int
check_entry(const uint8_t *key, size_t klen, size_t vlen)
{
	if (klen != MK_KEY_LEN || vlen != MK_VALUE_LEN ||
	    !hex_ok(key + MK_PREFIX_LEN, MASTER_KEY_ID_HEX))
		return P8V_ERR_INTEGRITY;
	return 0;
}

static int
note_recorded(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct check *c = arg;
	size_t len;
	int r;

	(void)val;
	if ((r = check_entry(key, klen, vlen)) != 0)
		return r;
	if (c->n_recorded < MK_LOG_IDS) {
		len = strlen(c->recorded);
		if (len > 0) {
			memcpy(c->recorded + len, ", ", 2);
			len += 2;
		}
		memcpy(c->recorded + len, key + MK_PREFIX_LEN, MASTER_KEY_ID_HEX);
		c->recorded[len + MASTER_KEY_ID_HEX] = '\0';
	}
	c->n_recorded++;
	return 0;
}

/* The meta key "mkr/<id_hex>" of a retired key. */
static void
retired_key(const char *id_hex, char key[MKR_KEY_LEN + 1])
{
	memcpy(key, MKR_PREFIX, MKR_PREFIX_LEN);
	memcpy(key + MKR_PREFIX_LEN, id_hex, MASTER_KEY_ID_HEX);
	key[MKR_KEY_LEN] = '\0';
}

/* 1 if the key id_hex was retired, 0 if not, or a P8V_ERR_*. */
static int
is_retired(struct store_txn *txn, const char *id_hex)
{
	char key[MKR_KEY_LEN + 1];
	const uint8_t *v;
	size_t vlen;
	int r;

	retired_key(id_hex, key);
	r = store_get(txn, STORE_DB_META, key, MKR_KEY_LEN, &v, &vlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	return vlen == 8 ? 1 : P8V_ERR_INTEGRITY;
}

static int
check_txn(struct store_txn *txn, void *arg)
{
	struct check *c = arg;
	const struct store_master_key_check *mk;
	uint8_t val[MK_VALUE_LEN];
	const uint8_t *v;
	char key[MK_KEY_LEN + 1];
	size_t i, n = c->n, vlen;
	int r, any_match = 0;

	c->n_recorded = 0;
	c->recorded[0] = '\0';
	if ((r = store_scan(txn, STORE_DB_META, MK_PREFIX, MK_PREFIX_LEN,
	    note_recorded, c)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		mk = &c->keys[i];
		/* Retired (p8vault master retire): never loaded again, and
		 * never recorded again as a new key. */
		if ((r = is_retired(txn, mk->id_hex)) < 0)
			return r;
		if (r == 1) {
			c->status[i] = MK_RETIRED;
			continue;
		}
		memcpy(key, MK_PREFIX, MK_PREFIX_LEN);
		memcpy(key + MK_PREFIX_LEN, mk->id_hex, MASTER_KEY_ID_HEX);
		r = store_get(txn, STORE_DB_META, key, MK_KEY_LEN, &v, &vlen);
		if (r == P8V_ERR_NOT_FOUND) {
			c->status[i] = MK_NEW;
			continue;
		}
		if (r != 0)
			return r;
		if (vlen != MK_VALUE_LEN)
			return P8V_ERR_INTEGRITY;
		if (secmem_equal(v, mk->check,
		    MASTER_KEY_CHECK_BYTES)) {
			c->status[i] = MK_MATCH;
			any_match = 1;
		} else
			c->status[i] = MK_DIFFERS;
	}
	for (i = 0; i < n; i++)
		if (c->status[i] == MK_RETIRED)
			return P8V_ERR_MASTER_KEY_RETIRED;
	for (i = 0; i < n; i++)
		if (c->status[i] == MK_DIFFERS)
			return P8V_ERR_MASTER_KEY_MISMATCH;
	if (c->n_recorded > 0 && !any_match)
		return P8V_ERR_MASTER_KEY_MISMATCH;
	for (i = 0; i < n; i++) {
		if (c->status[i] != MK_NEW)
			continue;
		mk = &c->keys[i];
		memcpy(key, MK_PREFIX, MK_PREFIX_LEN);
		memcpy(key + MK_PREFIX_LEN, mk->id_hex, MASTER_KEY_ID_HEX);
		memcpy(val, mk->check, MASTER_KEY_CHECK_BYTES);
		store_put_u64(val + MASTER_KEY_CHECK_BYTES, (uint64_t)c->now);
		if ((r = store_put(txn, STORE_DB_META, key, MK_KEY_LEN, val,
		    sizeof(val), STORE_PUT_NO_OVERWRITE)) != 0)
			return r;
	}
	return 0;
}

int
store_master_keys_check(struct store *store,
    const struct store_master_key_check *keys, size_t n)
{
	struct check c = { 0 };
	char loaded[MK_LOG_BUF] = "";
	size_t i, len;
	int r;

	if (store == NULL || keys == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (n == 0)
		return P8V_ERR_NO_MASTER_KEY;
	if (n > MASTER_KEYRING_MAX)
		return P8V_ERR_INVALID_ARGUMENT;
	for (i = 0; i < n; i++)
		if (strnlen(keys[i].id_hex, sizeof(keys[i].id_hex)) !=
		    MASTER_KEY_ID_HEX ||
		    !hex_ok((const uint8_t *)keys[i].id_hex, MASTER_KEY_ID_HEX))
			return P8V_ERR_INVALID_ARGUMENT;
	c.keys = keys;
	c.n = n;
	c.now = (int64_t)time(NULL);
	r = store_write(store, check_txn, &c);
	for (i = 0; i < n; i++) {
		len = strlen(loaded);
		snprintf(loaded + len, sizeof(loaded) - len, "%s%s",
		    len > 0 ? ", " : "",
		    keys[i].id_hex);
	}
	for (i = 0; r == P8V_ERR_MASTER_KEY_RETIRED && i < n; i++) {
		if (c.status[i] == MK_RETIRED) {
			log_errorf("master_key_retired", "master key %s was "
			    "retired from this state directory (p8vault master "
			    "retire): it may not be loaded again; remove its "
			    "file from the configuration", keys[i].id_hex);
			return r;
		}
	}
	for (i = 0; r == P8V_ERR_MASTER_KEY_MISMATCH && i < n; i++) {
		if (c.status[i] == MK_DIFFERS) {
			log_errorf("master_key_mismatch", "master key %s does not "
			    "match the check value this state directory "
			    "recorded under its id (a corrupt or forged entry)",
			    keys[i].id_hex);
			return r;
		}
	}
	if (r == P8V_ERR_MASTER_KEY_MISMATCH) {
		log_errorf("master_key_mismatch", "no loaded master key "
		    "matches this state directory: loaded %s; the store "
		    "expects one of %s%s", loaded, c.recorded,
		    c.n_recorded > MK_LOG_IDS ? ", ..." : "");
		return r;
	}
	if (r != 0)
		return r;
	for (i = 0; i < n; i++) {
		if (c.status[i] != MK_NEW)
			continue;
		if (c.n_recorded == 0)
			log_infof("master_key_recorded", "master key %s recorded "
			    "for a new state directory",
			    keys[i].id_hex);
		else
			log_infof("master_key_new", "new master key %s accepted "
			    "(rotation)",
			    keys[i].id_hex);
	}
	return 0;
}

struct usage {
	struct store_master_key_usage *keys;
	size_t n, cap;
};

static struct store_master_key_usage *
usage_find(struct usage *u, const uint8_t id[MASTER_KEY_ID_BYTES])
{
	size_t i;

	for (i = 0; i < u->n; i++)
		if (memcmp(u->keys[i].id, id, MASTER_KEY_ID_BYTES) == 0)
			return &u->keys[i];
	return NULL;
}

static struct store_master_key_usage *
usage_add(struct usage *u, const uint8_t id[MASTER_KEY_ID_BYTES])
{
	struct store_master_key_usage *k;

	if (u->n == u->cap) {
		size_t cap = u->cap == 0 ? 8 : u->cap * 2;
		if ((k = reallocarray(u->keys, cap, sizeof(*k))) == NULL)
			return NULL;
		u->keys = k;
		u->cap = cap;
	}
	k = &u->keys[u->n++];
	memset(k, 0, sizeof(*k));
	memcpy(k->id, id, MASTER_KEY_ID_BYTES);
	codec_hex_encode(id, MASTER_KEY_ID_BYTES, k->id_hex);
	return k;
}

static int
usage_recorded(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct store_master_key_usage *k;
	uint8_t id[MASTER_KEY_ID_BYTES];
	char hex[MASTER_KEY_ID_HEX + 1];
	int r;

	if ((r = check_entry(key, klen, vlen)) != 0)
		return r;
	memcpy(hex, key + MK_PREFIX_LEN, MASTER_KEY_ID_HEX);
	hex[MASTER_KEY_ID_HEX] = '\0';
	if (codec_hex_decode(hex, id, MASTER_KEY_ID_BYTES) != 0)
		return P8V_ERR_INTEGRITY;
	if ((k = usage_add(arg, id)) == NULL)
		return P8V_ERR_ALLOC;
	k->recorded = 1;
	k->first_seen = (int64_t)store_get_u64(val + MASTER_KEY_CHECK_BYTES);
	return 0;
}

/*
 * The envelope's master key id read from the stored bytes, without decoding
 * the record (key_record_raw_parts): this runs over every record at each
 * rotation and SIGHUP, and decoding was 20% of a rotation's time. Which key
 * an envelope names is not a matter of trust: opening it checks that.
 */
static int
usage_record(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct store_master_key_usage *k;
	uint8_t id[MASTER_KEY_ID_BYTES];
	const uint8_t *meta, *env;
	size_t mlen, env_len;
	int r;

	(void)key;
	(void)klen;
	if ((r = key_record_raw_parts(val, vlen, &meta, &mlen, &env,
	    &env_len)) != 0)
		return r;
	if (env == NULL)
		return 0;
	if ((r = envelope_master_key_id(env, env_len, id)) != 0)
		return r;
	if ((k = usage_find(arg, id)) == NULL && (k = usage_add(arg, id)) == NULL)
		return P8V_ERR_ALLOC;
	k->records++;
	return 0;
}

static int
by_id(const void *a, const void *b)
{
	return memcmp(((const struct store_master_key_usage *)a)->id,
	    ((const struct store_master_key_usage *)b)->id, MASTER_KEY_ID_BYTES);
}

int
store_master_key_usage(struct store_txn *txn,
    struct store_master_key_usage **out, size_t *n)
{
	struct usage u = { 0 };
	int r;

	if (out == NULL || n == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*out = NULL;
	*n = 0;
	if ((r = store_scan(txn, STORE_DB_META, MK_PREFIX, MK_PREFIX_LEN,
	    usage_recorded, &u)) != 0 ||
	    (r = store_scan(txn, STORE_DB_KEYS, NULL, 0, usage_record,
	    &u)) != 0) {
		free(u.keys);
		return r;
	}
	if (u.n > 1)
		qsort(u.keys, u.n, sizeof(*u.keys), by_id);
	*out = u.keys;
	*n = u.n;
	return 0;
}

/* --- the wrap budget --- */

#define MKW_PREFIX "mkw/"
#define MKW_PREFIX_LEN (sizeof(MKW_PREFIX) - 1)
#define MKW_KEY_LEN (MKW_PREFIX_LEN + MASTER_KEY_ID_HEX)

static void
wraps_key(const uint8_t id[MASTER_KEY_ID_BYTES], char key[MKW_KEY_LEN + 1])
{
	memcpy(key, MKW_PREFIX, MKW_PREFIX_LEN);
	codec_hex_encode(id, MASTER_KEY_ID_BYTES, key + MKW_PREFIX_LEN);
}

int
store_master_key_wraps(struct store_txn *txn,
    const uint8_t id[MASTER_KEY_ID_BYTES], uint64_t *total)
{
	char key[MKW_KEY_LEN + 1];
	const uint8_t *v;
	size_t vlen;
	int r;

	if (total != NULL)
		*total = 0;
	if (txn == NULL || id == NULL || total == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	wraps_key(id, key);
	r = store_get(txn, STORE_DB_META, key, MKW_KEY_LEN, &v, &vlen);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r != 0)
		return r;
	if (vlen != 8)
		return P8V_ERR_INTEGRITY;
	*total = codec_get_u64(v);
	return 0;
}

int
store_master_key_wraps_add(struct store_txn *txn,
    const uint8_t id[MASTER_KEY_ID_BYTES], uint64_t n, uint64_t *total)
{
	char key[MKW_KEY_LEN + 1], id_hex[MASTER_KEY_ID_HEX + 1];
	uint8_t val[8];
	uint64_t count = 0;
	int r;

	if (total != NULL)
		*total = 0;
	if (txn == NULL || id == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* Every new envelope is counted here, in the transaction that
	 * stores it: refusing a retired key here means none is ever
	 * committed under one, whatever a running daemon still holds. */
	codec_hex_encode(id, MASTER_KEY_ID_BYTES, id_hex);
	if ((r = is_retired(txn, id_hex)) < 0)
		return r;
	if (r == 1)
		return P8V_ERR_MASTER_KEY_RETIRED;
	if ((r = store_master_key_wraps(txn, id, &count)) != 0)
		return r;
	count = count > UINT64_MAX - n ? UINT64_MAX : count + n;
	wraps_key(id, key);
	codec_put_u64(val, count);
	if ((r = store_put(txn, STORE_DB_META, key, MKW_KEY_LEN, val,
	    sizeof(val), 0)) != 0)
		return r;
	if (total != NULL)
		*total = count;
	return 0;
}

/* store_scan callback: counts the recorded keys ("mk/" entries). */
static int
count_recorded(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	int r;

	(void)val;
	if ((r = check_entry(key, klen, vlen)) != 0)
		return r;
	(*(size_t *)arg)++;
	return 0;
}

int
store_master_key_retire(struct store_txn *txn,
    const uint8_t id[MASTER_KEY_ID_BYTES], int64_t now)
{
	char key[MK_KEY_LEN + 1], rkey[MKR_KEY_LEN + 1];
	char id_hex[MASTER_KEY_ID_HEX + 1];
	const uint8_t *v;
	uint8_t val[8];
	size_t vlen, recorded = 0;
	int r;

	if (txn == NULL || id == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	codec_hex_encode(id, MASTER_KEY_ID_BYTES, id_hex);
	if ((r = is_retired(txn, id_hex)) < 0)
		return r;
	if (r == 1)
		return P8V_ERR_MASTER_KEY_RETIRED;
	memcpy(key, MK_PREFIX, MK_PREFIX_LEN);
	memcpy(key + MK_PREFIX_LEN, id_hex, MASTER_KEY_ID_HEX);
	if ((r = store_get(txn, STORE_DB_META, key, MK_KEY_LEN, &v,
	    &vlen)) != 0)
		return r;
	if (vlen != MK_VALUE_LEN)
		return P8V_ERR_INTEGRITY;
	/* Without any recorded key the next start would record whatever
	 * key it is given, as for a new state directory. */
	if ((r = store_scan(txn, STORE_DB_META, MK_PREFIX, MK_PREFIX_LEN,
	    count_recorded, &recorded)) != 0)
		return r;
	if (recorded < 2)
		return P8V_ERR_MASTER_KEY_IN_USE;
	if ((r = store_del(txn, STORE_DB_META, key, MK_KEY_LEN)) != 0)
		return r;
	retired_key(id_hex, rkey);
	codec_put_u64(val, (uint64_t)now);
	return store_put(txn, STORE_DB_META, rkey, MKR_KEY_LEN, val,
	    sizeof(val), STORE_PUT_NO_OVERWRITE);
}
