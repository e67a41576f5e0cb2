/* metrics_route.c: GET /metrics; see metrics_route.h. */
#include "api/metrics_route.h"

#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "api/metrics.h"
#include "common/err.h"
#include "vault/vault.h"

int
api_metrics_handle(struct api_request *req)
{
	const struct api_backend *b;
	struct vault_stats vs;
	struct vault *v;
	char *text = NULL;
	size_t len = 0;
	int r = P8V_ERR_INTERNAL;

	memset(&vs, 0, sizeof(vs));
	/* Served before the vault is open too (without its series), so a
	 * scrape shows a starting daemon rather than failing. */
	b = api_request_backend(req);
	if ((v = b != NULL ? b->vault : NULL) != NULL)
		vault_stats(v, &vs);
	if ((r = metrics_render(v != NULL ? &vs : NULL, &text, &len)) != 0)
		goto out;
	r = api_respond_text(req, 200, METRICS_CONTENT_TYPE, text, len);
	text = NULL;                    /* taken, also on failure */
 out:
	free(text);
	return r;
}
