/* metrics.c: lock-free request counters and the Prometheus text format. */
#include "api/metrics.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* HTTP statuses 100..599 are counted, one counter each. */
#define STATUS_MIN 100
#define STATUS_COUNT 500
/* Error codes are small negative numbers (common/err.h): -1..-127. */
#define ERR_CODES_MAX 128
#define NS_PER_S 1e9

/* Slot 0 is "unmatched", the last slot "other" (the table is full). */
#define SLOT_UNMATCHED 0
#define SLOT_OTHER (METRICS_ROUTES_MAX + 1)
#define SLOTS (METRICS_ROUTES_MAX + 2)

static const double latency_bounds[] = { METRICS_LATENCY_BUCKETS };
#define N_BUCKETS (sizeof(latency_bounds) / sizeof(latency_bounds[0]))

struct route_counters {
	_Atomic(const char *) pattern;  /* NULL: slot free */
	_Atomic uint64_t by_status[STATUS_COUNT];
	/* Non-cumulative: bucket[i] counts observations in
	 * (bound[i-1], bound[i]]; bucket[N_BUCKETS] those above the last
	 * bound. The text format's cumulative counts are summed on render. */
	_Atomic uint64_t bucket[N_BUCKETS + 1];
	_Atomic uint64_t count;
	_Atomic uint64_t sum_ns;
};

static struct route_counters routes[SLOTS];
static _Atomic uint64_t upload_rejections[ERR_CODES_MAX];

static void
count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t
load(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/*
 * The slot of a pattern: found by pointer or text among the taken slots,
 * else claimed with a compare-and-swap on the first free one. Patterns
 * come from a static table, so each is claimed once and slots are never
 * freed.
 */
static struct route_counters *
route_slot(const char *pattern)
{
	const char *cur, *expected;
	size_t i;

	if (pattern == NULL)
		return &routes[SLOT_UNMATCHED];
	for (i = 1; i <= METRICS_ROUTES_MAX; i++) {
		cur = atomic_load_explicit(&routes[i].pattern,
		    memory_order_acquire);
		if (cur == NULL) {
			expected = NULL;
			if (atomic_compare_exchange_strong_explicit(
			    &routes[i].pattern, &expected, pattern,
			    memory_order_acq_rel, memory_order_acquire))
				return &routes[i];
			cur = expected;         /* another thread took it */
		}
		if (cur == pattern || strcmp(cur, pattern) == 0)
			return &routes[i];
	}
	return &routes[SLOT_OTHER];
}

void
metrics_observe_request(const char *route_pattern, unsigned int status,
    double seconds)
{
	struct route_counters *rc;
	size_t b;

	if (status < STATUS_MIN || status >= STATUS_MIN + STATUS_COUNT)
		return;
	if (!(seconds > 0))             /* negative or NaN */
		seconds = 0;
	if (seconds > 1e9)              /* decades: keep the cast defined */
		seconds = 1e9;
	rc = route_slot(route_pattern);
	count(&rc->by_status[status - STATUS_MIN], 1);
	for (b = 0; b < N_BUCKETS && seconds > latency_bounds[b]; b++)
		;
	count(&rc->bucket[b], 1);
	count(&rc->count, 1);
	count(&rc->sum_ns, (uint64_t)(seconds * NS_PER_S + 0.5));
}

/* The counter index of err: its own, or INTERNAL's for codes without a
 * name of their own (so that no two series share a label). */
static size_t
err_index(int err)
{
	if (err < 0 && err > -ERR_CODES_MAX &&
	    (err == P8V_ERR_INTERNAL ||
	    strcmp(p8v_errname(err), "internal_error") != 0))
		return (size_t)-err;
	return (size_t)-P8V_ERR_INTERNAL;
}

void
metrics_count_upload_rejection(int err)
{
	count(&upload_rejections[err_index(err)], 1);
}

/* A label value: route patterns are printable ASCII from the route table;
 * escape what the format requires anyway (backslash, quote, newline). */
static void
put_label(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static const char *
slot_name(size_t i)
{
	if (i == SLOT_UNMATCHED)
		return "unmatched";
	if (i == SLOT_OTHER)
		return "other";
	return atomic_load_explicit(&routes[i].pattern, memory_order_acquire);
}

static void
render_requests(FILE *f)
{
	const char *name;
	uint64_t n, cum;
	size_t i, s, b;

	fputs("# HELP p8vault_http_requests_total HTTP requests answered, "
	    "by route pattern and status code.\n"
	    "# TYPE p8vault_http_requests_total counter\n", f);
	for (i = 0; i < SLOTS; i++) {
		if ((name = slot_name(i)) == NULL)
			continue;
		for (s = 0; s < STATUS_COUNT; s++) {
			if ((n = load(&routes[i].by_status[s])) == 0)
				continue;
			fputs("p8vault_http_requests_total{route=\"", f);
			put_label(f, name);
			fprintf(f, "\",code=\"%zu\"} %llu\n", s + STATUS_MIN,
			    (unsigned long long)n);
		}
	}

	fputs("# HELP p8vault_http_request_duration_seconds Time from the "
	    "request line to the response, by route pattern.\n"
	    "# TYPE p8vault_http_request_duration_seconds histogram\n", f);
	for (i = 0; i < SLOTS; i++) {
		if ((name = slot_name(i)) == NULL ||
		    load(&routes[i].count) == 0)
			continue;
		cum = 0;
		for (b = 0; b <= N_BUCKETS; b++) {
			cum += load(&routes[i].bucket[b]);
			fputs("p8vault_http_request_duration_seconds_bucket"
			    "{route=\"", f);
			put_label(f, name);
			if (b < N_BUCKETS)
				fprintf(f, "\",le=\"%g\"} %llu\n",
				    latency_bounds[b], (unsigned long long)cum);
			else
				fprintf(f, "\",le=\"+Inf\"} %llu\n",
				    (unsigned long long)cum);
		}
		/* _count is the +Inf bucket, so the two always agree even
		 * while other threads count. */
		fputs("p8vault_http_request_duration_seconds_sum{route=\"", f);
		put_label(f, name);
		fprintf(f, "\"} %.6f\n",
		    (double)load(&routes[i].sum_ns) / NS_PER_S);
		fputs("p8vault_http_request_duration_seconds_count"
		    "{route=\"", f);
		put_label(f, name);
		fprintf(f, "\"} %llu\n", (unsigned long long)cum);
	}
}

static void
render_uploads(FILE *f)
{
	uint64_t n;
	size_t i;

	fputs("# HELP p8vault_upload_rejections_total Uploads refused, by "
	    "error code.\n"
	    "# TYPE p8vault_upload_rejections_total counter\n", f);
	for (i = 1; i < ERR_CODES_MAX; i++) {
		if ((n = load(&upload_rejections[i])) == 0)
			continue;
		fprintf(f, "p8vault_upload_rejections_total{code=\"%s\"} "
		    "%llu\n", p8v_errname(-(int)i), (unsigned long long)n);
	}
}

static void
render_vault(FILE *f, const struct vault_stats *vs)
{
	const char *name;
	size_t i;

	fputs("# HELP p8vault_apns_token_mints_total APNs provider tokens "
	    "minted (signed), by reason.\n"
	    "# TYPE p8vault_apns_token_mints_total counter\n", f);
	/* Every reason, zeros included: a series that appears only after
	 * its first event hides that event from rate(). */
	for (i = 0; i < VAULT_MINT_REASONS; i++) {
		name = vault_mint_reason_name((enum vault_mint_reason)i);
		if (name == NULL)
			continue;
		fprintf(f, "p8vault_apns_token_mints_total{reason=\"%s\"} "
		    "%llu\n", name, (unsigned long long)vs->apns_mints[i]);
	}
	fprintf(f,
	    "# HELP p8vault_apns_token_cache_hits_total APNs provider tokens "
	    "served from the cache.\n"
	    "# TYPE p8vault_apns_token_cache_hits_total counter\n"
	    "p8vault_apns_token_cache_hits_total %llu\n"
	    "# HELP p8vault_apns_token_rejection_reports_total Rejections of "
	    "a token reported by callers.\n"
	    "# TYPE p8vault_apns_token_rejection_reports_total counter\n"
	    "p8vault_apns_token_rejection_reports_total %llu\n"
	    "# HELP p8vault_apns_token_failures_total APNs token requests that "
	    "failed after the key was found.\n"
	    "# TYPE p8vault_apns_token_failures_total counter\n"
	    "p8vault_apns_token_failures_total %llu\n"
	    "# HELP p8vault_app_tokens_signed_total Other Apple JWTs signed "
	    "(App Store Connect, Sign in with Apple, MusicKit, ...).\n"
	    "# TYPE p8vault_app_tokens_signed_total counter\n"
	    "p8vault_app_tokens_signed_total %llu\n"
	    "# HELP p8vault_app_token_failures_total Other Apple JWTs that "
	    "failed to sign.\n"
	    "# TYPE p8vault_app_token_failures_total counter\n"
	    "p8vault_app_token_failures_total %llu\n"
	    "# HELP p8vault_apns_mint_lock_waits_total APNs mints that waited "
	    "for the fleet's mint lock (another node was minting).\n"
	    "# TYPE p8vault_apns_mint_lock_waits_total counter\n"
	    "p8vault_apns_mint_lock_waits_total %llu\n",
	    (unsigned long long)vs->apns_cache_hits,
	    (unsigned long long)vs->apns_rejections,
	    (unsigned long long)vs->apns_failures,
	    (unsigned long long)vs->app_signs,
	    (unsigned long long)vs->app_sign_failures,
	    (unsigned long long)vs->apns_mint_lock_waits);
	fprintf(f,
	    "# HELP p8vault_apns_token_reuse_period_seconds How long a shared "
	    "APNs token is handed out before a new one is minted "
	    "(--apns-token-reuse).\n"
	    "# TYPE p8vault_apns_token_reuse_period_seconds gauge\n"
	    "p8vault_apns_token_reuse_period_seconds %lld\n"
	    "# HELP p8vault_apns_token_oldest_age_seconds The oldest age a "
	    "shared APNs token had when a caller asked for it, over the tokens "
	    "asked for in the last 5 minutes (0: none). Above the reuse period "
	    "only when its renewal failed.\n"
	    "# TYPE p8vault_apns_token_oldest_age_seconds gauge\n"
	    "p8vault_apns_token_oldest_age_seconds %.3f\n",
	    (long long)vs->apns_reuse_s,
	    (double)vs->apns_oldest_age_ns / NS_PER_S);
}

/* The keeper process and the store: what the alert rules watch
 * (dist/prometheus/p8vault-alerts.yml). */
static void
render_health(FILE *f, const struct vault_stats *vs)
{
	fprintf(f,
	    "# HELP p8vault_keeper_up Whether a keeper process serves keys: "
	    "1, or 0 while none runs (requests that need a key get 503).\n"
	    "# TYPE p8vault_keeper_up gauge\n"
	    "p8vault_keeper_up %d\n"
	    "# HELP p8vault_keeper_restarts_total Keeper processes started "
	    "again after one ended.\n"
	    "# TYPE p8vault_keeper_restarts_total counter\n"
	    "p8vault_keeper_restarts_total %llu\n"
	    "# HELP p8vault_store_up Whether the store can serve writes: 1, "
	    "or 0 while an etcd store's watch or probe is down.\n"
	    "# TYPE p8vault_store_up gauge\n"
	    "p8vault_store_up %d\n"
	    "# HELP p8vault_store_max_records The quota of key records in the "
	    "vault (--max-records; 0: none).\n"
	    "# TYPE p8vault_store_max_records gauge\n"
	    "p8vault_store_max_records %llu\n",
	    vs->keeper_up ? 1 : 0,
	    (unsigned long long)vs->keeper_restarts,
	    vs->store_up ? 1 : 0,
	    (unsigned long long)vs->records_max);
	if (vs->records_known)
		fprintf(f, "# HELP p8vault_store_records Key records in the "
		    "vault, tombstones of revoked keys too.\n"
		    "# TYPE p8vault_store_records gauge\n"
		    "p8vault_store_records %llu\n",
		    (unsigned long long)vs->records);
	if (vs->store_max_bytes != 0)
		fprintf(f, "# HELP p8vault_store_used_bytes Bytes of the LMDB "
		    "map in use (up to its last page).\n"
		    "# TYPE p8vault_store_used_bytes gauge\n"
		    "p8vault_store_used_bytes %llu\n"
		    "# HELP p8vault_store_max_bytes The most the LMDB map may "
		    "grow to.\n"
		    "# TYPE p8vault_store_max_bytes gauge\n"
		    "p8vault_store_max_bytes %llu\n",
		    (unsigned long long)vs->store_used_bytes,
		    (unsigned long long)vs->store_max_bytes);
}

int
metrics_render(const struct vault_stats *vs, char **text, size_t *len)
{
	FILE *f = NULL;
	char *buf = NULL;
	size_t n = 0;
	int r = P8V_ERR_INTERNAL;

	if (text == NULL || len == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*text = NULL;
	*len = 0;
	if ((f = open_memstream(&buf, &n)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	render_requests(f);
	render_uploads(f);
	if (vs != NULL) {
		render_vault(f, vs);
		render_health(f, vs);
	}
	if (vs != NULL && vs->store_remote)
		fprintf(f, "# HELP p8vault_store_round_trips_total Requests "
		    "sent to etcd.\n"
		    "# TYPE p8vault_store_round_trips_total counter\n"
		    "p8vault_store_round_trips_total %llu\n"
		    "# HELP p8vault_store_revision The etcd revision this "
		    "node's mirror has applied.\n"
		    "# TYPE p8vault_store_revision gauge\n"
		    "p8vault_store_revision %llu\n"
		    "# HELP p8vault_store_watch_down_seconds How long this "
		    "node's etcd watch has been down (0: up).\n"
		    "# TYPE p8vault_store_watch_down_seconds gauge\n"
		    "p8vault_store_watch_down_seconds %.3f\n",
		    (unsigned long long)vs->store_round_trips,
		    (unsigned long long)vs->store_revision,
		    (double)vs->store_watch_down_ms / 1000.0);
	/* A memory stream fails only when it cannot grow. */
	if (ferror(f) || fclose(f) != 0) {
		f = NULL;
		r = P8V_ERR_ALLOC;
		goto out;
	}
	f = NULL;
	*text = buf;
	*len = n;
	buf = NULL;
	r = 0;
 out:
	if (f != NULL)
		fclose(f);
	free(buf);
	return r;
}
