/* health.c: /healthz and /readyz. */
#include "api/health.h"

#include <jansson.h>

#include "api/http.h"
#include "common/err.h"
#include "store/store.h"
#include "vault/vault.h"

int
api_health_live(struct api_request *req)
{
	json_t *body;

	if ((body = json_pack("{s:s}", "status", "ok")) == NULL)
		return P8V_ERR_ALLOC;
	return api_respond(req, 200, body);
}

int
api_health_ready(struct api_request *req)
{
	const char *reason = NULL;
	json_t *body;
	int ready;

	ready = api_request_server_ready(req, &reason);
	/* A keeper process being started again: not ready until it runs. */
	if (ready && !vault_keeper_ready(api_request_backend(req)->vault)) {
		ready = 0;
		reason = "keeper_unavailable";
	}
	/* An etcd store whose watch has been down for a while: this node's
	 * mirror may be stale and it refuses writes. */
	if (ready && !store_ready(api_request_backend(req)->store)) {
		ready = 0;
		reason = "store_unavailable";
	}
	if (ready) {
		if ((body = json_pack("{s:s}", "status", "ready")) == NULL)
			return P8V_ERR_ALLOC;
		return api_respond(req, 200, body);
	}
	if ((body = json_pack("{s:s, s:s}", "status", "not_ready", "reason",
	    reason != NULL ? reason : "unknown")) == NULL)
		return P8V_ERR_ALLOC;
	return api_respond(req, 503, body);
}
