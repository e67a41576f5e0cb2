/*
 * retire.c: retiring a master key from a state directory (see rotate.h,
 * vault_master_retire): the end of its life cycle, after a rotation moved
 * everything it sealed under another key.
 */
#include "vault/rotate.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/codec.h"
#include "common/err.h"
#include "store/audit.h"
#include "store/cache.h"
#include "store/masterkeys.h"
#include "vault/tokcache.h"
#include "vault/vault_internal.h"

/* Audit "who" when the caller names nobody. */
#define RETIRE_ACTOR_DEFAULT "cli"

struct retire {
	const uint8_t *id;
	const char *actor;
	int64_t now;
	struct vault_retire_result *out;        /* reset at each run */
};

/* store_cache_foreach callback: count the persisted tokens sealed under
 * the key being retired. */
static int
count_token(const char *key, int64_t expires_at, const uint8_t *blob,
    size_t len, void *arg)
{
	struct retire *rt = arg;
	uint8_t id[MASTER_KEY_ID_BYTES];

	(void)expires_at;
	if (strncmp(key, TOKCACHE_KEY_PREFIX, strlen(TOKCACHE_KEY_PREFIX)) ==
	    0 && keeper_apns_blob_master_key_id(blob, len, id) == 0 &&
	    memcmp(id, rt->id, MASTER_KEY_ID_BYTES) == 0)
		rt->out->tokens++;
	return 0;
}

/* The records sealed under rt->id, into rt->out->records. */
static int
count_records(struct store_txn *txn, struct retire *rt)
{
	struct store_master_key_usage *u = NULL;
	size_t i, n = 0;
	int r;

	if ((r = store_master_key_usage(txn, &u, &n)) != 0)
		return r;
	for (i = 0; i < n; i++)
		if (memcmp(u[i].id, rt->id, MASTER_KEY_ID_BYTES) == 0)
			rt->out->records = u[i].records;
	free(u);
	return 0;
}

/* One transaction: nothing sealed under the key (records, tokens), then
 * its check value gone, its id listed as retired, and the audit event. A
 * daemon sealing under the key meanwhile is serialised against this: its
 * envelope is either counted here or refused by the store afterwards
 * (store_master_key_wraps_add). */
static int
retire_txn(struct store_txn *txn, void *arg)
{
	struct retire *rt = arg;
	char when[VAULT_TIME_RFC3339_BYTES];
	json_t *ev = NULL;
	int r;

	rt->out->records = 0;
	rt->out->tokens = 0;
	if ((r = count_records(txn, rt)) != 0 ||
	    (r = store_cache_foreach(txn, count_token, rt)) != 0)
		return r;
	if (rt->out->records > 0 || rt->out->tokens > 0)
		return P8V_ERR_MASTER_KEY_IN_USE;
	if ((r = store_master_key_retire(txn, rt->id, rt->now)) != 0)
		return r;
	if ((r = vault_time_rfc3339(rt->now, when)) != 0)
		return r;
	if ((ev = json_pack("{s:s, s:s, s:s, s:s, s:s}", "time", when,
	    "who", rt->actor, "what", "master.retire", "master_key_id",
	    rt->out->id_hex, "result", "ok")) == NULL)
		return P8V_ERR_ALLOC;
	r = store_audit_append(txn, ev, NULL);
	json_decref(ev);
	return r;
}

int
vault_master_retire(struct store *store,
    const uint8_t id[MASTER_KEY_ID_BYTES], const char *actor,
    struct vault_retire_result *out)
{
	struct retire rt;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (store == NULL || id == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	codec_hex_encode(id, MASTER_KEY_ID_BYTES, out->id_hex);
	rt.id = id;
	rt.actor = actor != NULL ? actor : RETIRE_ACTOR_DEFAULT;
	rt.now = clock_wall_now();
	rt.out = out;
	return store_write(store, retire_txn, &rt);
}
