/*
 * health.h: liveness and readiness, on every listener, without auth.
 *
 *   GET /healthz  200 {"status":"ok"}: the process answers HTTP.
 *   GET /readyz   200 {"status":"ready"} when the store is open and a
 *                 master key is loaded and checked against it;
 *                 503 {"status":"not_ready","reason":"..."} otherwise
 *                 ("starting", "stopping", or the error name of the
 *                 failure).
 */
#ifndef P8V_API_HEALTH_H
#define P8V_API_HEALTH_H

struct api_request;

/* Handlers (api/router.h contract): 0 or P8V_ERR_ALLOC. */
int api_health_live(struct api_request *req);
int api_health_ready(struct api_request *req);

#endif /* P8V_API_HEALTH_H */
