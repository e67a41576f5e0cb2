/*
 * metrics.h: counters for GET /metrics, in the Prometheus text format
 * (version 0.0.4).
 *
 * Every counter is a relaxed atomic in static storage: counting costs one
 * atomic add, takes no lock and cannot fail, so it is safe on the hot path
 * of every request and from any thread. Counters start at zero with the
 * process (Prometheus handles restarts through its rate functions).
 *
 * Series, all with bounded label sets (route patterns, never raw paths;
 * status codes; error code names; mint reasons):
 *
 *   p8vault_http_requests_total{route,code}         counter
 *   p8vault_http_request_duration_seconds{route}    histogram
 *   p8vault_upload_rejections_total{code}            counter
 *   p8vault_apns_token_mints_total{reason}           counter (vault)
 *   p8vault_apns_token_cache_hits_total              counter (vault)
 *   p8vault_apns_token_rejection_reports_total       counter (vault)
 *   p8vault_apns_token_failures_total                counter (vault)
 *   p8vault_app_tokens_signed_total                  counter (vault)
 *   p8vault_app_token_failures_total                 counter (vault)
 *   p8vault_apns_mint_lock_waits_total               counter (vault)
 *   p8vault_apns_token_reuse_period_seconds          gauge (vault)
 *   p8vault_apns_token_oldest_age_seconds            gauge (vault)
 *   p8vault_keeper_up, p8vault_store_up              gauge (vault)
 *   p8vault_keeper_restarts_total                    counter (vault)
 *   p8vault_store_records, p8vault_store_max_records gauge (vault)
 *   p8vault_store_used_bytes, p8vault_store_max_bytes gauge (vault, LMDB)
 *   p8vault_store_round_trips_total                  counter (vault, etcd)
 *   p8vault_store_revision                           gauge (vault, etcd)
 *   p8vault_store_watch_down_seconds                 gauge (vault, etcd)
 *
 * Names follow Prometheus' conventions (`promtool check metrics` is
 * clean: tests/integration/test_metrics.py); the alert rules in
 * dist/prometheus/p8vault-alerts.yml read them, so renaming one breaks
 * alerts and dashboards.
 *
 * The "route" label is the matched route's pattern ("/v1/apps/{app}/jwt"),
 * or "unmatched" for a request that matched no route (404, 405, or a target
 * that did not decode).
 */
#ifndef P8V_API_METRICS_H
#define P8V_API_METRICS_H

#include <stddef.h>

#include "vault/vault.h"

/* Distinct route patterns counted; the daemon has a few dozen routes at
 * most. Patterns beyond this are counted under route="other". */
#define METRICS_ROUTES_MAX 64
/* Upper bounds of the latency buckets, in seconds: from a cache hit
 * (tens of microseconds) to a mint waiting on the disk (milliseconds) to
 * a stalled request (seconds). */
#define METRICS_LATENCY_BUCKETS \
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, \
	0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
/* The Content-Type of the text format. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Count one answered request: route_pattern is the matched route's pattern
 * (kept by pointer: it must be static, as the route table is) or NULL for an
 * unmatched request; status the HTTP status sent (100..599; anything else
 * is not counted); seconds the time from the request line to the response
 * (negative or NaN counts as 0). Called by the HTTP framework when a
 * request completes (api/http.c). Thread-safe, lock-free.
 */
void metrics_observe_request(const char *route_pattern, unsigned int status,
    double seconds);

/*
 * Count one refused upload by its error (a P8V_ERR_* code; the label is
 * p8v_errname(err); codes without a name of their own count as
 * "internal_error"). For the upload handler (api/upload.c), once per
 * refused upload. Thread-safe, lock-free.
 */
void metrics_count_upload_rejection(int err);

/*
 * Render every series as Prometheus text into *text (malloc'd,
 * NUL-terminated, *len bytes without the NUL; the caller frees it). vs are
 * the vault's counters, or NULL when the vault is not open (its series
 * are left out).
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC.
 */
int metrics_render(const struct vault_stats *vs, char **text, size_t *len);

#endif /* P8V_API_METRICS_H */
