/*
 * life.c: the vault's life cycle (create, destroy), replacing its keyring,
 * checking the keeper's keys against the store, and its counters. Built
 * on vault.c (the caches) and apns.c (loading persisted tokens); neither
 * calls back into this file.
 */
#include "store/appindex.h"
#include "vault/quota.h"
#include "vault/vault.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/secmem.h"
#include "store/masterkeys.h"
#include "vault/tokcache.h"
#include "vault/vault_internal.h"

int
vault_create(struct store *store, struct keeper *keeper,
    const struct vault_options *opts, struct vault **out)
{
	struct vault *v = NULL;
	int64_t reuse = VAULT_APNS_REUSE_DEFAULT_S;
	size_t i;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		*out = NULL;
	if (store == NULL || keeper == NULL || out == NULL)
		goto out;
	if (opts != NULL && opts->apns_reuse_seconds != 0)
		reuse = opts->apns_reuse_seconds;
	if (reuse < VAULT_APNS_REUSE_MIN_S || reuse > VAULT_APNS_REUSE_MAX_S) {
		log_errorf("vault_options", "APNs token reuse period %lld s "
		    "is outside %d..%d s", (long long)reuse,
		    VAULT_APNS_REUSE_MIN_S, VAULT_APNS_REUSE_MAX_S);
		goto out;
	}
	if ((r = secmem_init()) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		goto out;
	for (i = 0; i < VAULT_MINT_REASONS; i++)
		atomic_init(&v->apns_mints[i], 0);
	atomic_init(&v->apns_cache_hits, 0);
	atomic_init(&v->apns_mint_lock_waits, 0);
	atomic_init(&v->apns_rejections, 0);
	atomic_init(&v->apns_failures, 0);
	atomic_init(&v->app_signs, 0);
	atomic_init(&v->app_sign_failures, 0);
	v->store = store;
	v->keeper = keeper;
	keeper = NULL;
	if ((r = vault_caches_create(v)) != 0 ||
	    (r = vault_quota_create(v)) != 0)
		goto out;
	v->apns_reuse_s = reuse;
	v->quotas.keys_per_app = VAULT_QUOTA_KEYS_PER_APP_DEFAULT;
	v->quotas.apps_per_token = VAULT_QUOTA_APPS_PER_TOKEN_DEFAULT;
	v->quotas.uploads_per_minute = VAULT_QUOTA_UPLOADS_PER_MINUTE_DEFAULT;
	v->quotas.records = VAULT_QUOTA_RECORDS_DEFAULT;
	if ((r = vault_keys_check(store, v->keeper)) != 0)
		goto out;
	if ((r = tokcache_create(reuse, &v->tokens)) != 0)
		goto out;
	if (clock_boot_id(v->boot_id) != 0)
		log_warnf("vault_boot_id", "cannot read the boot id; persisted "
		    "APNs tokens will be aged on the wall clock");
	if ((r = vault_apns_load(v)) != 0)
		goto out;
	/* A vault of an earlier release has no per-app index: built now, in
	 * transactions within store_limits. Without it uploads scan their
	 * app, as before: a failure here costs speed, not correctness. */
	if ((r = appindex_build(store)) != 0)
		log_warnf("appindex", "cannot build the per-app key index (%s): "
		    "uploads scan their app", p8v_strerror(r));
	*out = v;
	v = NULL;
	r = 0;
 out:
	keeper_destroy(keeper);
	vault_destroy(v);
	return r;
}

void
vault_set_quotas(struct vault *v, const struct vault_quotas *q)
{
	if (v != NULL && q != NULL)
		v->quotas = *q;
}

struct keeper *
vault_keeper(struct vault *v)
{
	return v != NULL ? v->keeper : NULL;
}

void
vault_destroy(struct vault *v)
{
	if (v == NULL)
		return;
	vault_caches_destroy(v);
	vault_quota_destroy(v);
	tokcache_destroy(v->tokens);
	vault_check_config_free(v->apns_check);
	/* No call may be running: the keeper wipes its keys. */
	keeper_destroy(v->keeper);
	free(v);
}

/* --- the keyring and its replacement --- */

int
vault_keys_check(struct store *store, struct keeper *keeper)
{
	struct store_master_key_check keys[KEEPER_KEYS_MAX];
	struct keeper_status st;
	size_t i;
	int r;

	if (store == NULL || keeper == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = keeper_status(keeper, &st)) != 0)
		return r;
	memset(keys, 0, sizeof(keys));
	for (i = 0; i < st.n; i++) {
		memcpy(keys[i].id_hex, st.keys[i].id_hex,
		    sizeof(keys[i].id_hex));
		memcpy(keys[i].check, st.keys[i].check,
		    sizeof(keys[i].check));
	}
	r = store_master_keys_check(store, keys, st.n);
	secmem_wipe(keys, sizeof(keys));
	return r;
}

struct keyring_usage {
	const struct keeper_status *ring;
	/* Results; reset at the start (store_read does not re-run, but a
	 * function must not depend on that). */
	char missing_id[MASTER_KEY_ID_HEX + 1];
	uint64_t missing_records;
	size_t missing_keys;
};

static int
keyring_usage_txn(struct store_txn *txn, void *arg)
{
	struct keyring_usage *k = arg;
	struct store_master_key_usage *u = NULL;
	size_t i, n = 0;
	int r;

	k->missing_id[0] = '\0';
	k->missing_records = 0;
	k->missing_keys = 0;
	if ((r = store_master_key_usage(txn, &u, &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		size_t j;

		for (j = 0; j < k->ring->n; j++)
			if (memcmp(k->ring->keys[j].id, u[i].id,
			    MASTER_KEY_ID_BYTES) == 0)
				break;
		if (u[i].records == 0 || j < k->ring->n)
			continue;
		if (k->missing_keys++ == 0)
			memcpy(k->missing_id, u[i].id_hex,
			    sizeof(k->missing_id));
		k->missing_records += u[i].records;
	}
	free(u);
	return 0;
}

/*
 * 1 if the ring fresh holds the key cur seals new records under (cur's
 * primary), else 0 with its id in missing. A reload that drops that key
 * would strand what is being sealed under it while the reload runs (a
 * record, a token's persisted copy): the key is dropped in two reloads,
 * first making another key primary, then leaving it out.
 */
static int
ring_keeps_primary(const struct keeper_status *cur,
    const struct keeper_status *fresh, char missing[MASTER_KEY_ID_HEX + 1])
{
	const struct keeper_key_info *p;
	size_t i;

	missing[0] = '\0';
	if (cur->n == 0)
		return 1;
	p = &cur->keys[cur->primary];
	for (i = 0; i < fresh->n; i++)
		if (memcmp(fresh->keys[i].id, p->id, MASTER_KEY_ID_BYTES) == 0)
			return 1;
	memcpy(missing, p->id_hex, MASTER_KEY_ID_HEX + 1);
	return 0;
}

int
vault_set_keyring(struct vault *v, struct keeper *fresh)
{
	struct keyring_usage k;
	struct keeper_status st, cur;
	char missing[MASTER_KEY_ID_HEX + 1];
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&k, 0, sizeof(k));
	if (v == NULL || fresh == NULL)
		goto out;
	if ((r = keeper_status(fresh, &st)) != 0 ||
	    (r = keeper_status(v->keeper, &cur)) != 0)
		goto out;
	r = P8V_ERR_NO_MASTER_KEY;
	if (st.n == 0)
		goto out;
	/* First the records: a ring that cannot open all of them would turn
	 * a reload into failed requests. */
	k.ring = &st;
	if ((r = store_read(v->store, keyring_usage_txn, &k)) != 0)
		goto out;
	if (k.missing_keys > 0) {
		r = P8V_ERR_MASTER_KEY_MISSING;
		log_fields(LOG_LEVEL_ERROR, "master_key_reload",
		    json_pack("{s:s, s:I, s:I}", "missing_master_key_id",
		    k.missing_id, "missing_keys", (json_int_t)k.missing_keys,
		    "records", (json_int_t)k.missing_records),
		    "new keyring refused: %llu key record(s) are sealed under "
		    "%zu master key(s) it lacks (first: %s); finish the "
		    "rotation (p8vault master rotate) before dropping a key",
		    (unsigned long long)k.missing_records, k.missing_keys,
		    k.missing_id);
		goto out;
	}
	if (!ring_keeps_primary(&cur, &st, missing)) {
		r = P8V_ERR_MASTER_KEY_PRIMARY_MISSING;
		log_fields(LOG_LEVEL_ERROR, "master_key_reload",
		    json_pack("{s:s}", "missing_master_key_id", missing),
		    "new keyring refused: it lacks master key %s, which new "
		    "records are being sealed under; first reload with another "
		    "key last (the new primary) and %s still loaded, then "
		    "without it", missing, missing);
		goto out;
	}
	if ((r = vault_keys_check(v->store, fresh)) != 0)
		goto out;
	/* Operations still using the old ring keep it until they end. */
	r = keeper_replace(v->keeper, fresh);
	fresh = NULL;
	if (r != 0)
		goto out;
	log_fields(LOG_LEVEL_INFO, "master_key_reload",
	    json_pack("{s:s, s:i}", "primary_master_key_id",
	    st.keys[st.primary].id_hex, "master_keys", (int)st.n),
	    "keyring replaced: %zu master key(s), new seals under %s",
	    st.n, st.keys[st.primary].id_hex);
	r = 0;
 out:
	keeper_destroy(fresh);
	return r;
}

static int
count_records(struct store_txn *txn, void *arg)
{
	return key_record_count(txn, arg);
}

void
vault_stats(struct vault *v, struct vault_stats *st)
{
	size_t i;

	if (v == NULL || st == NULL)
		return;
	memset(st, 0, sizeof(*st));
	for (i = 0; i < VAULT_MINT_REASONS; i++)
		st->apns_mints[i] = atomic_load_explicit(&v->apns_mints[i],
		    memory_order_relaxed);
#define VAULT_LOAD(f) st->f = atomic_load_explicit(&v->f, memory_order_relaxed)
	VAULT_LOAD(apns_cache_hits);
	VAULT_LOAD(apns_mint_lock_waits);
	VAULT_LOAD(apns_rejections);
	VAULT_LOAD(apns_failures);
	VAULT_LOAD(app_signs);
	VAULT_LOAD(app_sign_failures);
#undef VAULT_LOAD
	{
		struct store_stats ss;
		int have = store_stats(v->store, &ss) == 0;

		if (have && ss.remote) {
			st->store_remote = 1;
			st->store_round_trips = ss.round_trips;
			st->store_revision = ss.revision;
			st->store_watch_down_ms = ss.watch_down_ms;
		} else if (have) {
			st->store_used_bytes = ss.used_bytes;
			st->store_max_bytes = ss.max_map_bytes;
		}
	}
	st->keeper_up = keeper_ready(v->keeper);
	st->keeper_restarts = keeper_restarts(v->keeper);
	st->store_up = store_ready(v->store);
	/* O(1) in both backends (LMDB's page header, etcd's mirror). */
	st->records_known = store_read(v->store, count_records,
	    &st->records) == 0;
	st->records_max = v->quotas.records;
	st->apns_reuse_s = v->apns_reuse_s;
	st->apns_oldest_age_ns = tokcache_oldest_age_ns(v->tokens,
	    clock_boot_now_ns());
}


int
vault_keeper_ready(struct vault *v)
{
	return v != NULL && keeper_ready(v->keeper);
}
