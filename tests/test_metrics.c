/*
 * test_metrics.c: request counters and the Prometheus text (api/metrics.c).
 *
 * - Exact sample lines for requests by route and status, for unmatched
 *   requests, and for statuses and durations out of range (not counted,
 *   counted as 0).
 * - The histogram: each observation in the right bucket, buckets
 *   cumulative, +Inf equal to _count, the sum.
 * - Upload rejections by code name, codes without a name of their own
 *   under internal_error (one series, never two with one label).
 * - The vault's series: every mint reason, zeros included; left out when
 *   there are no vault stats. The keeper's and the store's (the alert
 *   rules'): the record count only when counted, LMDB's bytes only when
 *   known.
 * - Label escaping; more route patterns than slots fall into
 *   route="other"; exact totals from 8 threads counting at once.
 * Every family has # HELP and # TYPE before its samples.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/metrics.h"
#include "common/err.h"
#include "tests/check.h"

#define THREADS 8
#define PER_THREAD 20000

static const char route_a[] = "/v1/apps/{app}/apns-token";
static const char route_b[] = "/v1/apps/{app}/jwt";
/* A pattern no route has, for the label escaping. */
static const char route_odd[] = "/a\"b\\c\nd";
/* Patterns the tests before test_overflow give slots to. */
#define SLOTS_TAKEN 3

static char *
render(const struct vault_stats *vs)
{
	char *text = NULL;
	size_t len = 0;

	CHECK_OK(metrics_render(vs, &text, &len));
	REQUIRE(text != NULL);
	CHECK_INT(strlen(text), len);
	return text;
}

/* 1 if text has line as one whole line. */
static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
		p += n;
	}
	return 0;
}

#define CHECK_LINE(text, line) \
	CHECKF(has_line((text), (line)), "missing line: %s", (line))
#define CHECK_NO_LINE(text, line) \
	CHECKF(!has_line((text), (line)), "unexpected line: %s", (line))

/* Every sample's family has HELP and TYPE lines earlier in the text. */
static void
check_families(const char *text)
{
	char *copy = strdup(text), *save = NULL, *line, *p, fam[128];
	char want[160];
	size_t n;

	REQUIRE(copy != NULL);
	for (line = strtok_r(copy, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			continue;
		n = strcspn(line, "{ ");
		REQUIRE(n < sizeof(fam));
		memcpy(fam, line, n);
		fam[n] = '\0';
		/* A histogram's series share the family's HELP and TYPE:
		 * cut "_bucket", "_sum", "_count" after "_seconds". */
		if ((p = strstr(fam, "_seconds_")) != NULL)
			p[sizeof("_seconds") - 1] = '\0';
		snprintf(want, sizeof(want), "# HELP %s ", fam);
		CHECKF(strstr(text, want) != NULL &&
		    strstr(text, want) < strstr(text, line), "no HELP for %s",
		    fam);
		snprintf(want, sizeof(want), "# TYPE %s ", fam);
		CHECKF(strstr(text, want) != NULL &&
		    strstr(text, want) < strstr(text, line), "no TYPE for %s",
		    fam);
	}
	free(copy);
}

static void
test_requests_and_histogram(void)
{
	char *t;

	metrics_observe_request(route_a, 200, 0.0002);
	metrics_observe_request(route_a, 200, 0.0001);   /* on a bound: le */
	metrics_observe_request(route_a, 200, 0.0002);
	metrics_observe_request(route_a, 404, 2.0);
	metrics_observe_request(NULL, 404, 0.001);
	metrics_observe_request(route_odd, 200, 0.001);
	/* Not counted: no status, or not an HTTP status. */
	metrics_observe_request(route_b, 0, 0.1);
	metrics_observe_request(route_b, 99, 0.1);
	metrics_observe_request(route_b, 600, 0.1);
	t = render(NULL);
	CHECK_LINE(t, "# TYPE p8vault_http_requests_total counter");
	CHECK_LINE(t, "# TYPE p8vault_http_request_duration_seconds histogram");
	CHECK_LINE(t, "p8vault_http_requests_total{route=\"/v1/apps/{app}/"
	    "apns-token\",code=\"200\"} 3");
	CHECK_LINE(t, "p8vault_http_requests_total{route=\"/v1/apps/{app}/"
	    "apns-token\",code=\"404\"} 1");
	CHECK_LINE(t, "p8vault_http_requests_total{route=\"unmatched\","
	    "code=\"404\"} 1");
	/* Backslash, quote and newline escaped as the text format says. */
	CHECK_LINE(t, "p8vault_http_requests_total{route=\"/a\\\"b\\\\c\\nd\","
	    "code=\"200\"} 1");
	CHECKF(strstr(t, "/v1/apps/{app}/jwt") == NULL,
	    "uncounted statuses made a series");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"/v1/apps/{app}/apns-token\",le=\"0.0001\"} 1");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"/v1/apps/{app}/apns-token\",le=\"0.00025\"} 3");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"/v1/apps/{app}/apns-token\",le=\"1\"} 3");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"/v1/apps/{app}/apns-token\",le=\"2.5\"} 4");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"/v1/apps/{app}/apns-token\",le=\"+Inf\"} 4");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_count{route="
	    "\"/v1/apps/{app}/apns-token\"} 4");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_sum{route="
	    "\"/v1/apps/{app}/apns-token\"} 2.000500");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"unmatched\",le=\"0.001\"} 1");
	/* No vault, no vault series. */
	CHECKF(strstr(t, "p8vault_apns_token") == NULL, "vault series without "
	    "vault stats");
	check_families(t);
	free(t);

	/* Durations that make no sense count as 0 (the first bucket); a
	 * huge one lands in +Inf only. */
	metrics_observe_request(route_b, 200, -1.0);
	metrics_observe_request(route_b, 200, NAN);
	metrics_observe_request(route_b, 200, 1e300);
	t = render(NULL);
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"/v1/apps/{app}/jwt\",le=\"0.0001\"} 2");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"/v1/apps/{app}/jwt\",le=\"10\"} 2");
	CHECK_LINE(t, "p8vault_http_request_duration_seconds_bucket{route="
	    "\"/v1/apps/{app}/jwt\",le=\"+Inf\"} 3");
	free(t);
}

static void
test_upload_rejections(void)
{
	char *t;

	metrics_count_upload_rejection(P8V_ERR_P8_CERTIFICATE);
	metrics_count_upload_rejection(P8V_ERR_P8_CERTIFICATE);
	metrics_count_upload_rejection(P8V_ERR_BAD_KEY_ID);
	metrics_count_upload_rejection(P8V_ERR_INTERNAL);
	metrics_count_upload_rejection(-999);       /* no such code */
	metrics_count_upload_rejection(-120);       /* in range, unnamed */
	metrics_count_upload_rejection(5);          /* not an error */
	t = render(NULL);
	CHECK_LINE(t, "# TYPE p8vault_upload_rejections_total counter");
	CHECK_LINE(t, "p8vault_upload_rejections_total{code=\"p8_certificate\"}"
	    " 2");
	CHECK_LINE(t, "p8vault_upload_rejections_total{code=\"invalid_key_id\"}"
	    " 1");
	CHECK_LINE(t, "p8vault_upload_rejections_total{code=\"internal_error\"}"
	    " 4");
	check_families(t);
	free(t);
}

static void
test_vault_series(void)
{
	struct vault_stats vs;
	char *t;

	memset(&vs, 0, sizeof(vs));
	vs.apns_mints[VAULT_MINT_COLD] = 7;
	vs.apns_mints[VAULT_MINT_KEY_CHANGED] = 2;
	vs.apns_cache_hits = 12345;
	vs.apns_rejections = 3;
	vs.apns_failures = 1;
	vs.app_signs = 9;
	vs.app_sign_failures = 4;
	t = render(&vs);
	CHECK_LINE(t, "# TYPE p8vault_apns_token_mints_total counter");
	CHECK_LINE(t, "p8vault_apns_token_mints_total{reason=\"cold\"} 7");
	CHECK_LINE(t, "p8vault_apns_token_mints_total{reason=\"expired\"} 0");
	CHECK_LINE(t, "p8vault_apns_token_mints_total{reason=\"key_changed\"} "
	    "2");
	CHECK_LINE(t, "p8vault_apns_token_mints_total{reason="
	    "\"rejected_expired\"} 0");
	CHECK_LINE(t, "p8vault_apns_token_mints_total{reason="
	    "\"rejected_invalid\"} 0");
	CHECK_LINE(t, "p8vault_apns_token_cache_hits_total 12345");
	CHECK_LINE(t, "p8vault_apns_token_rejection_reports_total 3");
	CHECK_LINE(t, "p8vault_apns_token_failures_total 1");
	CHECK_LINE(t, "p8vault_app_tokens_signed_total 9");
	CHECK_LINE(t, "p8vault_app_token_failures_total 4");
	/* The alert rules' series (dist/prometheus/p8vault-alerts.yml):
	 * keeper and store down, no count of records, no LMDB figures. */
	CHECK_LINE(t, "# TYPE p8vault_keeper_up gauge");
	CHECK_LINE(t, "p8vault_keeper_up 0");
	CHECK_LINE(t, "# TYPE p8vault_keeper_restarts_total counter");
	CHECK_LINE(t, "p8vault_keeper_restarts_total 0");
	CHECK_LINE(t, "p8vault_store_up 0");
	CHECK_LINE(t, "p8vault_store_max_records 0");
	CHECK_LINE(t, "p8vault_apns_token_oldest_age_seconds 0.000");
	CHECK(strstr(t, "p8vault_store_records ") == NULL);
	CHECK(strstr(t, "p8vault_store_used_bytes") == NULL);
	CHECK(strstr(t, "p8vault_store_max_bytes") == NULL);
	check_families(t);
	free(t);
	CHECK_ERR(metrics_render(&vs, NULL, NULL), P8V_ERR_INVALID_ARGUMENT);

	vs.keeper_up = 1;
	vs.keeper_restarts = 3;
	vs.store_up = 1;
	vs.records_known = 1;
	vs.records = 42;
	vs.records_max = 1000000;
	vs.store_used_bytes = 73728;
	vs.store_max_bytes = (uint64_t)1 << 40;
	vs.apns_reuse_s = 3000;
	vs.apns_oldest_age_ns = 3001500000000LL;
	t = render(&vs);
	CHECK_LINE(t, "p8vault_keeper_up 1");
	CHECK_LINE(t, "p8vault_keeper_restarts_total 3");
	CHECK_LINE(t, "p8vault_store_up 1");
	CHECK_LINE(t, "# TYPE p8vault_store_records gauge");
	CHECK_LINE(t, "p8vault_store_records 42");
	CHECK_LINE(t, "p8vault_store_max_records 1000000");
	CHECK_LINE(t, "# TYPE p8vault_store_used_bytes gauge");
	CHECK_LINE(t, "p8vault_store_used_bytes 73728");
	CHECK_LINE(t, "p8vault_store_max_bytes 1099511627776");
	CHECK_LINE(t, "p8vault_apns_token_reuse_period_seconds 3000");
	CHECK_LINE(t, "p8vault_apns_token_oldest_age_seconds 3001.500");
	check_families(t);
	free(t);
}

/* Patterns beyond the table's slots are counted under "other". Static
 * storage: the counters keep the pointers. */
#define MANY (METRICS_ROUTES_MAX + 8)
static char many[MANY][32];

static void
test_overflow(void)
{
	size_t i, own = METRICS_ROUTES_MAX - SLOTS_TAKEN;
	char line[128], *t;

	for (i = 0; i < MANY; i++) {
		snprintf(many[i], sizeof(many[i]), "/route/%zu", i);
		metrics_observe_request(many[i], 201, 0.001);
	}
	t = render(NULL);
	snprintf(line, sizeof(line), "p8vault_http_requests_total{route="
	    "\"/route/%zu\",code=\"201\"} 1", own - 1);
	CHECK_LINE(t, line);
	snprintf(line, sizeof(line), "p8vault_http_requests_total{route="
	    "\"/route/%zu\",code=\"201\"} 1", own);
	CHECK_NO_LINE(t, line);
	snprintf(line, sizeof(line), "p8vault_http_requests_total{route="
	    "\"other\",code=\"201\"} %zu", MANY - own);
	CHECK_LINE(t, line);
	/* A pattern seen before keeps its slot when the table is full. */
	metrics_observe_request(route_a, 201, 0.001);
	free(t);
	t = render(NULL);
	snprintf(line, sizeof(line), "p8vault_http_requests_total{route="
	    "\"%s\",code=\"201\"} 1", route_a);
	CHECK_LINE(t, line);
	check_families(t);
	free(t);
}

struct worker {
	const char *pattern;
};

static void *
count_many(void *arg)
{
	const struct worker *w = arg;
	int i;

	for (i = 0; i < PER_THREAD; i++)
		metrics_observe_request(w->pattern, 202, 0.003);
	return NULL;
}

static void
test_threads(void)
{
	pthread_t th[THREADS];
	struct worker w[THREADS];
	char line[160], *t;
	int i;

	for (i = 0; i < THREADS; i++) {
		w[i].pattern = (i % 2) ? route_a : route_b;
		REQUIRE(pthread_create(&th[i], NULL, count_many, &w[i]) == 0);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	t = render(NULL);
	snprintf(line, sizeof(line), "p8vault_http_requests_total{route="
	    "\"%s\",code=\"202\"} %d", route_a, THREADS / 2 * PER_THREAD);
	CHECK_LINE(t, line);
	snprintf(line, sizeof(line), "p8vault_http_requests_total{route="
	    "\"%s\",code=\"202\"} %d", route_b, THREADS / 2 * PER_THREAD);
	CHECK_LINE(t, line);
	free(t);
}

int
main(void)
{
	test_requests_and_histogram();
	test_upload_rejections();
	test_vault_series();
	test_overflow();
	test_threads();
	return check_finish();
}
