/* routes.c: every endpoint of p8vaultd, one line each. */
#include "api/routes.h"

#include "api/auth.h"
#include "api/health.h"
#include "api/http.h"
#include "api/keys.h"
#include "api/metrics_route.h"
#include "api/sign.h"
#include "api/upload.h"

const struct api_route api_routes[] = {
	/* method, pattern, handler, listeners, role, body cap, flags */
	{ API_METHOD_GET, "/healthz", api_health_live, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, 0 },
	{ API_METHOD_GET, "/readyz", api_health_ready, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, 0 },
	/* Any valid token: who it is (api/auth.h). API_ROLE_NONE because the
	 * handler authenticates every role itself (401 still applies). */
	{ API_METHOD_GET, "/v1/whoami", api_auth_whoami, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, API_ROUTE_NEEDS_READY },
	/* Upload API (api/upload.h, api/keys.h): the portal's backend. */
	{ API_METHOD_POST, "/v1/apps/{app}/keys", api_upload_handle,
	    API_LISTENER_PORTAL, API_ROLE_PORTAL, API_BODY_MAX_UPLOAD,
	    API_ROUTE_NEEDS_READY },
	{ API_METHOD_GET, "/v1/apps/{app}/keys", api_keys_handle_list,
	    API_LISTENER_PORTAL, API_ROLE_PORTAL, 0, API_ROUTE_NEEDS_READY },
	{ API_METHOD_GET, "/v1/apps/{app}/keys/{key_id}", api_keys_handle_get,
	    API_LISTENER_PORTAL, API_ROLE_PORTAL, 0, API_ROUTE_NEEDS_READY },
	{ API_METHOD_DELETE, "/v1/apps/{app}/keys/{key_id}",
	    api_keys_handle_revoke, API_LISTENER_PORTAL, API_ROLE_PORTAL, 0,
	    API_ROUTE_NEEDS_READY },
	{ API_METHOD_POST, "/v1/apps/{app}/keys/{key_id}/activate",
	    api_keys_handle_activate, API_LISTENER_PORTAL, API_ROLE_PORTAL, 0,
	    API_ROUTE_NEEDS_READY },
	/* The key check with Apple: an outbound request to APNs. */
	{ API_METHOD_POST, "/v1/apps/{app}/keys/{key_id}/check",
	    api_keys_handle_check, API_LISTENER_PORTAL, API_ROLE_PORTAL,
	    API_BODY_MAX_SIGN, API_ROUTE_NEEDS_READY },
	/* Incident response (api/keys.h): every copy of a key, across
	 * apps; operators only. */
	{ API_METHOD_GET, "/v1/keys", api_keys_handle_find,
	    API_LISTENER_PORTAL, API_ROLE_ADMIN, 0, API_ROUTE_NEEDS_READY },
	/* Signing API (api/sign.h): provider daemons, signing listeners. */
	{ API_METHOD_POST, "/v1/apps/{app}/apns-token",
	    api_sign_handle_apns_token, API_LISTENER_SIGN, API_ROLE_SIGNER,
	    API_BODY_MAX_SIGN, API_ROUTE_NEEDS_READY },
	{ API_METHOD_POST, "/v1/apps/{app}/jwt", api_sign_handle_jwt,
	    API_LISTENER_SIGN, API_ROLE_SIGNER, API_BODY_MAX_SIGN,
	    API_ROUTE_NEEDS_READY },
	/* Prometheus scrape (api/metrics_route.h), beside the signing API. */
	{ API_METHOD_GET, "/metrics", api_metrics_handle, API_LISTENER_SIGN,
	    API_ROLE_SIGNER, 0, 0 },
};

const size_t api_routes_count = sizeof(api_routes) / sizeof(api_routes[0]);
