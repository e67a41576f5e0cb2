/*
 * quota.c: per-tenant quotas; see quota.h.
 *
 * The upload rate is counted in memory, per token, in fixed windows of a
 * minute on CLOCK_MONOTONIC: a restart forgets it, which costs a tenant
 * at most one more minute's uploads. The counts (keys of an app, apps of
 * a token, records) are read from the store, so that the CLI's uploads
 * count too.
 */
#include "vault/quota.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/ids.h"
#include "common/keyrecord.h"
#include "store/records.h"
#include "store/store.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"

/* Buckets of the rate table: tokens are created by an administrator, a
 * few hundred at most. Power of two. */
#define QUOTA_RATE_BUCKETS 256
/* The rate window. */
#define QUOTA_RATE_WINDOW_NS (60 * CLOCK_NS_PER_S)
/* How long a token's count of apps is taken from memory before it is
 * counted again from the store (a walk of every record): a token's new
 * apps made by another process (the CLI) count from then on. */
#define QUOTA_APPS_RECOUNT_NS (60 * CLOCK_NS_PER_S)

struct rate_entry {
	struct rate_entry *next;
	char actor[KEY_RECORD_ACTOR_MAX + 1];
	int64_t window_start_ns;
	unsigned int count;
	/* The token's apps (vault_quota_new_app): counted from the store at
	 * most every QUOTA_APPS_RECOUNT_NS, plus the new apps this process
	 * let it create since. */
	int apps_known;
	int64_t apps_counted_ns;
	uint64_t apps;
};

struct vault_rates {
	pthread_mutex_t lock;
	struct rate_entry *bucket[QUOTA_RATE_BUCKETS];
};

int
vault_quota_create(struct vault *v)
{
	struct vault_rates *rt;

	if ((rt = calloc(1, sizeof(*rt))) == NULL)
		return P8V_ERR_ALLOC;
	if (pthread_mutex_init(&rt->lock, NULL) != 0) {
		free(rt);
		return P8V_ERR_ALLOC;
	}
	v->rates = rt;
	return 0;
}

void
vault_quota_destroy(struct vault *v)
{
	struct vault_rates *rt = v != NULL ? v->rates : NULL;
	struct rate_entry *e, *next;
	size_t i;

	if (rt == NULL)
		return;
	for (i = 0; i < QUOTA_RATE_BUCKETS; i++)
		for (e = rt->bucket[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	pthread_mutex_destroy(&rt->lock);
	free(rt);
	v->rates = NULL;
}

static uint32_t
hash_actor(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* The entry of actor (created), under rt->lock. NULL: out of memory. */
static struct rate_entry *
entry_of(struct vault_rates *rt, const char *actor, int64_t now)
{
	struct rate_entry *e;
	uint32_t b = hash_actor(actor) & (QUOTA_RATE_BUCKETS - 1);

	for (e = rt->bucket[b]; e != NULL; e = e->next)
		if (strcmp(e->actor, actor) == 0)
			return e;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	strncpy(e->actor, actor, sizeof(e->actor) - 1);
	e->window_start_ns = now;
	e->next = rt->bucket[b];
	rt->bucket[b] = e;
	return e;
}

int
vault_quota_upload_rate(struct vault *v, const char *actor)
{
	struct vault_rates *rt = v->rates;
	struct rate_entry *e;
	unsigned int max = v->quotas.uploads_per_minute;
	int64_t now = clock_boot_now_ns();
	int r = 0;

	if (max == 0 || rt == NULL)
		return 0;
	pthread_mutex_lock(&rt->lock);
	if ((e = entry_of(rt, actor, now)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	if (now - e->window_start_ns >= QUOTA_RATE_WINDOW_NS) {
		e->window_start_ns = now;
		e->count = 0;
	}
	if (e->count >= max) {
		r = P8V_ERR_RATE_LIMITED;
		goto out;
	}
	e->count++;
 out:
	pthread_mutex_unlock(&rt->lock);
	return r;
}

/* --- apps of a token --- */

struct apps_of {
	const char *app, *actor;
	int count;                  /* 0: whether app exists; 1: count */
	int app_exists;
	char last[IDS_APP_MAX + 1]; /* the last app counted */
	uint64_t n;
};

/* Records come in key order, so an app's records are together: an app is
 * counted once, at its first record by actor. */
static int
count_app(const struct key_record *rec, void *arg)
{
	struct apps_of *a = arg;

	if (strcmp(rec->created_by, a->actor) != 0 ||
	    strcmp(rec->app, a->last) == 0)
		return 0;
	memcpy(a->last, rec->app, sizeof(a->last));
	a->n++;
	return 0;
}

/* The app has a record (any bytes under "app" 0x00: nothing decoded). */
static int
app_key_seen(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	(void)key;
	(void)klen;
	(void)val;
	(void)vlen;
	((struct apps_of *)arg)->app_exists = 1;
	return STORE_SCAN_STOP;
}

/* count_app over every record that decodes: a damaged record (logged
 * where it is used) is one tenant's problem and must not stop another
 * tenant's uploads. */
static int
count_decodable(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, void *arg)
{
	struct key_record rec;
	int r;

	if ((r = key_record_decode(key, klen, val, vlen, &rec)) != 0)
		return r == P8V_ERR_INTEGRITY ? 0 : r;
	r = count_app(&rec, arg);
	key_record_free(&rec);
	return r;
}

static int
apps_txn(struct store_txn *txn, void *arg)
{
	struct apps_of *a = arg;
	char prefix[IDS_APP_MAX + 1];
	size_t n;
	int r;

	a->app_exists = 0;
	a->last[0] = '\0';
	a->n = 0;
	if (a->count)
		return store_scan(txn, STORE_DB_KEYS, NULL, 0, count_decodable,
		    a);
	if ((r = ids_app_valid(a->app)) != 0)
		return r;
	n = strlen(a->app);
	memcpy(prefix, a->app, n + 1);  /* the NUL ends the prefix */
	return store_scan(txn, STORE_DB_KEYS, prefix, n + 1, app_key_seen, a);
}

int
vault_quota_new_app(struct vault *v, const char *app, const char *actor)
{
	struct vault_rates *rt = v->rates;
	struct rate_entry *e;
	struct apps_of a;
	int64_t now = clock_boot_now_ns();
	uint64_t n;
	int known, r;

	if (v->quotas.apps_per_token == 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.app = app;
	a.actor = actor;
	/* Does the app exist? Its keys' bytes, one seek. */
	a.count = 0;
	if ((r = store_read(v->store, apps_txn, &a)) != 0)
		return r;
	if (a.app_exists)
		return 0;
	/* The token's apps: from memory while the count is fresh; else a
	 * read transaction walks the vault (without holding the writer).
	 * Every upload to a new app, the first of many in a bulk import,
	 * used to walk it: O(records) each. Uploads racing to new apps may
	 * both pass, and another process's new apps count once recounted:
	 * the quota bounds a tenant's growth, it is not an exact count. */
	if (rt == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	pthread_mutex_lock(&rt->lock);
	e = entry_of(rt, actor, now);
	known = e != NULL && e->apps_known &&
	    now - e->apps_counted_ns < QUOTA_APPS_RECOUNT_NS;
	n = known ? e->apps : 0;
	pthread_mutex_unlock(&rt->lock);
	if (e == NULL)
		return P8V_ERR_ALLOC;
	if (!known) {
		a.count = 1;
		if ((r = store_read(v->store, apps_txn, &a)) != 0)
			return r;
		n = a.n;
	}
	if (n >= v->quotas.apps_per_token)
		return P8V_ERR_TOO_MANY_APPS;
	/* This upload makes one more (if it fails, the next recount mends
	 * the count). */
	pthread_mutex_lock(&rt->lock);
	if (!known) {
		e->apps_known = 1;
		e->apps_counted_ns = now;
		e->apps = n;
	}
	e->apps++;
	pthread_mutex_unlock(&rt->lock);
	return 0;
}

int
vault_quota_new_record(struct vault *v, struct store_txn *txn,
    uint64_t app_keys)
{
	uint64_t n;
	int r;

	if (v->quotas.records != 0) {
		if ((r = key_record_count(txn, &n)) != 0)
			return r;
		if (n >= v->quotas.records)
			return P8V_ERR_VAULT_FULL;
	}
	if (v->quotas.keys_per_app != 0 &&
	    app_keys >= v->quotas.keys_per_app)
		return P8V_ERR_TOO_MANY_KEYS;
	return 0;
}
