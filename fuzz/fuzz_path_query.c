/*
 * fuzz_path_query.c: the request line as the router sees it
 * (api/router.h): the method, the path (api_path_decode: split on '/',
 * then strict percent-decoding per segment), the match against the
 * daemon's real route table (api_route_match over api_routes, on each
 * listener) and the query string (api_query_parse), as
 * api/http.c hands them over.
 *
 * Input: "METHOD TARGET", e.g. "GET /v1/apps/my%2Eapp/keys?x=1" (a target
 * alone is a GET); the target is a C string (cut at a NUL byte) as
 * libmicrohttpd passes it.
 *
 * Properties beyond "no memory error, no leak":
 *   - a decoded path has exactly as many segments as the raw path has
 *     '/' ("%2F" inside a segment never makes a new one);
 *   - a match is a route of that listener and method (GET for HEAD) whose
 *     parameters are the non-empty segments its braces stand on;
 *     METHOD_NOT_ALLOWED comes with a non-empty Allow set, NOT_FOUND with
 *     an empty one;
 *   - a parsed query has non-empty, distinct names and api_query_get
 *     finds each;
 *   - every error is one router.h lists.
 */
#include <string.h>

#include "api/router.h"
#include "api/routes.h"
#include "common/err.h"
#include "fuzz/fuzz.h"

/* Check one match of path on listener. */
static void
check_match(const struct api_path *path, unsigned int method,
    unsigned int listener)
{
	const struct api_route *route = NULL;
	struct api_params params;
	char allow[API_ALLOW_MAX];
	unsigned int allowed = 0;
	const char *p;
	size_t braces = 0, i, j;
	int r;

	r = api_route_match(api_routes, api_routes_count, method, path,
	    listener, &route, &params, &allowed);
	FUZZ_CHECK(strlen(api_allow_format(allowed, allow)) < API_ALLOW_MAX);
	if (r == P8V_ERR_NOT_FOUND) {
		FUZZ_CHECK(route == NULL && allowed == 0);
		return;
	}
	if (r == P8V_ERR_METHOD_NOT_ALLOWED) {
		FUZZ_CHECK(route == NULL && allowed != 0);
		return;
	}
	FUZZ_CHECK(r == 0 && route != NULL);
	FUZZ_CHECK((route->listeners & listener) != 0);
	FUZZ_CHECK(route->method == (method == API_METHOD_HEAD ?
	    API_METHOD_GET : method));
	FUZZ_CHECK((allowed & route->method) != 0);
	for (p = route->pattern; *p != '\0'; p++)
		braces += *p == '{';
	FUZZ_CHECK(params.count == braces);
	for (i = 0; i < params.count; i++) {
		FUZZ_CHECK(params.item[i].value[0] != '\0');
		for (j = 0; j < path->nseg; j++)
			if (params.item[i].value == path->seg[j])
				break;
		FUZZ_CHECK(j < path->nseg);
	}
	/* The names handlers ask for, present or not. */
	(void)api_params_get(&params, "app");
	(void)api_params_get(&params, "key_id");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct api_path path;
	struct api_query query;
	char *buf, *target, *q;
	size_t path_len, slashes = 0, i, j;
	unsigned int method;
	int r;

	/* The whole input as one C string: "METHOD TARGET", or a target
	 * alone for GET. */
	if ((buf = malloc(size + 1)) == NULL)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';
	if ((target = strchr(buf, ' ')) != NULL) {
		*target++ = '\0';
		method = api_method_parse(buf);
	} else {
		target = buf;
		method = API_METHOD_GET;
	}

	q = strchr(target, '?');
	path_len = q != NULL ? (size_t)(q - target) : strlen(target);
	r = api_path_decode(target, path_len, &path);
	if (r != 0) {
		FUZZ_CHECK(r == P8V_ERR_BAD_REQUEST || r == P8V_ERR_ALLOC);
		FUZZ_CHECK(path.buf == NULL && path.nseg == 0);
	} else {
		for (i = 0; i < path_len; i++)
			slashes += target[i] == '/';
		FUZZ_CHECK(path.nseg == slashes);
		FUZZ_CHECK(path.nseg <= API_PATH_SEGMENTS_MAX);
		check_match(&path, method, API_LISTENER_PORTAL);
		check_match(&path, method, API_LISTENER_SIGN);
		api_path_finish(&path);
	}

	if (q != NULL) {
		r = api_query_parse(q + 1, strlen(q + 1), &query);
		if (r != 0) {
			FUZZ_CHECK(r == P8V_ERR_BAD_REQUEST ||
			    r == P8V_ERR_ALLOC);
			FUZZ_CHECK(query.buf == NULL && query.count == 0);
		} else {
			FUZZ_CHECK(query.count <= API_QUERY_MAX);
			for (i = 0; i < query.count; i++) {
				FUZZ_CHECK(query.item[i].name[0] != '\0');
				for (j = 0; j < i; j++)
					FUZZ_CHECK(strcmp(query.item[i].name,
					    query.item[j].name) != 0);
				FUZZ_CHECK(api_query_get(&query,
				    query.item[i].name) ==
				    query.item[i].value);
			}
			api_query_finish(&query);
		}
	}
	free(buf);
	return 0;
}
