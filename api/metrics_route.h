/*
 * metrics_route.h: GET /metrics, the Prometheus scrape (api/metrics.h has
 * the series). Served on the signing listeners to signer and admin tokens
 * (api/routes.c), also before the vault is open: then without the vault's
 * series, so that a scrape shows a starting daemon rather than failing.
 *
 * Its own module, apart from the counters (api/metrics.c), which the HTTP
 * layer calls for every request: the handler calls the HTTP layer, and
 * the counters must not.
 */
#ifndef P8V_API_METRICS_ROUTE_H
#define P8V_API_METRICS_ROUTE_H

struct api_request;

/* The handler (api/router.h contract): 200 text/plain; version=0.0.4, or
 * P8V_ERR_ALLOC for the framework to answer. */
int api_metrics_handle(struct api_request *req);

#endif /* P8V_API_METRICS_ROUTE_H */
