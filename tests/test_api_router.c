/* test_api_router.c: strict decoding of paths and queries, route matching,
 * and the one table of HTTP statuses (api/router.h, api/errors.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/errors.h"
#include "api/router.h"
#include "common/err.h"
#include "tests/check.h"

/* -- percent decoding -------------------------------------------------- */

struct decode_case {
	const char *in;
	int plus_is_space;
	const char *want;          /* NULL: an error */
};

static const struct decode_case decode_cases[] = {
	{ "", 0, "" },
	{ "abc", 0, "abc" },
	{ "a%20b", 0, "a b" },
	{ "%41%62%7e", 0, "Ab~" },
	{ "%2F", 0, "/" },
	{ "%2f", 0, "/" },
	{ "a+b", 0, "a+b" },
	{ "a+b", 1, "a b" },
	{ "%2B", 1, "+" },
	{ "%", 0, NULL },
	{ "%4", 0, NULL },
	{ "a%", 0, NULL },
	{ "%zz", 0, NULL },
	{ "%4g", 0, NULL },
	{ "%g4", 0, NULL },
	{ "%00", 0, NULL },
	{ "a%00b", 1, NULL },
	{ "%%41", 0, NULL },
	{ "%ff", 0, "\xff" },
};

static void
test_percent_decode(void)
{
	char out[64];
	size_t i, len;
	int r;

	for (i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		const struct decode_case *c = &decode_cases[i];

		memset(out, 'X', sizeof(out));
		r = api_percent_decode(c->in, strlen(c->in), c->plus_is_space,
		    out, &len);
		if (c->want == NULL) {
			CHECKF(r == P8V_ERR_BAD_REQUEST, "\"%s\": %d", c->in, r);
			continue;
		}
		CHECKF(r == 0, "\"%s\": %d", c->in, r);
		CHECK_STR(out, c->want);
		CHECK_INT(len, strlen(c->want));
	}
}

/* -- paths ------------------------------------------------------------- */

struct path_case {
	const char *raw;
	int err;
	size_t nseg;
	const char *seg[4];
};

static const struct path_case path_cases[] = {
	{ "/", 0, 1, { "" } },
	{ "/healthz", 0, 1, { "healthz" } },
	{ "/a/b/c", 0, 3, { "a", "b", "c" } },
	{ "/a/", 0, 2, { "a", "" } },
	{ "//", 0, 2, { "", "" } },
	{ "/a%2Fb/c", 0, 2, { "a/b", "c" } },
	{ "/x%20y", 0, 1, { "x y" } },
	{ "/a+b", 0, 1, { "a+b" } },          /* '+' is literal in paths */
	{ "", P8V_ERR_BAD_REQUEST, 0, { NULL } },
	{ "healthz", P8V_ERR_BAD_REQUEST, 0, { NULL } },
	{ "/a%zz", P8V_ERR_BAD_REQUEST, 0, { NULL } },
	{ "/a/%00", P8V_ERR_BAD_REQUEST, 0, { NULL } },
	{ "/a/b%", P8V_ERR_BAD_REQUEST, 0, { NULL } },
	/* 16 segments is the most, 17 too many. */
	{ "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", 0, 16, { "1", "2", "3",
	    "4" } },
	{ "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", P8V_ERR_BAD_REQUEST,
	    0, { NULL } },
};

static void
test_path_decode(void)
{
	struct api_path p;
	char *long_path;
	size_t i, j;
	int r;

	for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];

		r = api_path_decode(c->raw, strlen(c->raw), &p);
		CHECKF(r == c->err, "\"%s\": got %d want %d", c->raw, r,
		    c->err);
		if (r == 0) {
			CHECKF(p.nseg == c->nseg, "\"%s\": %zu segments",
			    c->raw, p.nseg);
			for (j = 0; j < 4 && c->seg[j] != NULL; j++)
				CHECK_STR(p.seg[j], c->seg[j]);
		} else {
			CHECK(p.buf == NULL && p.nseg == 0);
		}
		api_path_finish(&p);
	}
	/* Longer than API_PATH_MAX: refused before any work. */
	long_path = malloc(API_PATH_MAX + 2);
	REQUIRE(long_path != NULL);
	long_path[0] = '/';
	memset(long_path + 1, 'a', API_PATH_MAX);
	long_path[API_PATH_MAX + 1] = '\0';
	CHECK_ERR(api_path_decode(long_path, API_PATH_MAX + 1, &p),
	    P8V_ERR_BAD_REQUEST);
	CHECK_OK(api_path_decode(long_path, API_PATH_MAX, &p));
	api_path_finish(&p);
	/* Around the end of the inline buffer, plain and escaped: segments
	 * of 12 characters ("aaaaaaaaaaaa", or "%41%41%41%41" for "AAAA"),
	 * then one of 'b's up to the length. */
	for (i = API_PATH_INLINE - 3; i <= API_PATH_INLINE + 2; i++) {
		for (j = 0; j < 2; j++) {
			size_t k = 0, n = 0;

			while (i - k >= 2 * 13) {
				long_path[k++] = '/';
				memcpy(long_path + k, j == 0 ? "aaaaaaaaaaaa" :
				    "%41%41%41%41", 12);
				k += 12;
				n++;
			}
			long_path[k++] = '/';
			memset(long_path + k, 'b', i - k);
			CHECKF(api_path_decode(long_path, i, &p) == 0,
			    "length %zu", i);
			CHECKF(p.nseg == n + 1, "length %zu: %zu segments", i,
			    p.nseg);
			for (k = 0; k < n && k < p.nseg; k++)
				CHECK_STR(p.seg[k], j == 0 ? "aaaaaaaaaaaa" :
				    "AAAA");
			if (p.nseg == n + 1)
				CHECKF(strspn(p.seg[n], "b") == strlen(p.seg[n]) &&
				    strlen(p.seg[n]) == i - 13 * n - 1,
				    "length %zu: last segment", i);
			api_path_finish(&p);
		}
	}
	free(long_path);
}

/* -- queries ----------------------------------------------------------- */

struct query_case {
	const char *raw;
	int err;
	const char *name[3];
	const char *value[3];
};

static const struct query_case query_cases[] = {
	{ "", 0, { NULL }, { NULL } },
	{ "a=1", 0, { "a" }, { "1" } },
	{ "a=1&b=x%20y&c", 0, { "a", "b", "c" }, { "1", "x y", "" } },
	{ "a=&b=2", 0, { "a", "b" }, { "", "2" } },
	{ "a=1&&b=2&", 0, { "a", "b" }, { "1", "2" } },
	{ "q=a+b%2Bc", 0, { "q" }, { "a b+c" } },
	{ "x%41=1", 0, { "xA" }, { "1" } },
	{ "a=1=2", 0, { "a" }, { "1=2" } },
	{ "a=1&a=2", P8V_ERR_BAD_REQUEST, { NULL }, { NULL } },
	{ "a=1&%61=2", P8V_ERR_BAD_REQUEST, { NULL }, { NULL } },
	{ "=1", P8V_ERR_BAD_REQUEST, { NULL }, { NULL } },
	{ "a=%zz", P8V_ERR_BAD_REQUEST, { NULL }, { NULL } },
	{ "a%=1", P8V_ERR_BAD_REQUEST, { NULL }, { NULL } },
	{ "a=%00", P8V_ERR_BAD_REQUEST, { NULL }, { NULL } },
	{ "a&b&c&d&e&f&g&h&i&j&k&l&m&n&o&p", 0, { "a", "b", "p" },
	    { "", "", "" } },
	{ "a&b&c&d&e&f&g&h&i&j&k&l&m&n&o&p&q", P8V_ERR_BAD_REQUEST, { NULL },
	    { NULL } },
};

static void
test_query_parse(void)
{
	struct api_query q;
	size_t i, j;
	int r;

	for (i = 0; i < sizeof(query_cases) / sizeof(query_cases[0]); i++) {
		const struct query_case *c = &query_cases[i];

		r = api_query_parse(c->raw, strlen(c->raw), &q);
		CHECKF(r == c->err, "\"%s\": got %d want %d", c->raw, r,
		    c->err);
		for (j = 0; r == 0 && j < 3 && c->name[j] != NULL; j++) {
			const char *v = api_query_get(&q, c->name[j]);

			CHECKF(v != NULL && strcmp(v, c->value[j]) == 0,
			    "\"%s\": %s=%s", c->raw, c->name[j],
			    v != NULL ? v : "(absent)");
		}
		if (r == 0)
			CHECK(api_query_get(&q, "absent") == NULL);
		api_query_finish(&q);
	}
}

/* -- matching ---------------------------------------------------------- */

static int
handler(struct api_request *req)
{
	(void)req;
	return 0;
}

static const struct api_route routes[] = {
	{ API_METHOD_GET, "/healthz", handler, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, 0 },
	{ API_METHOD_GET, "/v1/apps/{app}/keys", handler, API_LISTENER_PORTAL,
	    API_ROLE_PORTAL, 0, 0 },
	{ API_METHOD_POST, "/v1/apps/{app}/keys", handler, API_LISTENER_PORTAL,
	    API_ROLE_PORTAL, 1024, 0 },
	{ API_METHOD_GET, "/v1/apps/{app}/keys/{key_id}", handler,
	    API_LISTENER_PORTAL, API_ROLE_PORTAL, 0, 0 },
	{ API_METHOD_DELETE, "/v1/apps/{app}/keys/{key_id}", handler,
	    API_LISTENER_PORTAL, API_ROLE_PORTAL, 0, 0 },
	{ API_METHOD_POST, "/v1/apps/{app}/apns-token", handler,
	    API_LISTENER_SIGN, API_ROLE_SIGNER, 512, 0 },
	{ API_METHOD_GET, "/v1/apps/list", handler, API_LISTENER_PORTAL,
	    API_ROLE_PORTAL, 0, 0 },
};

#define P API_LISTENER_PORTAL
#define S API_LISTENER_SIGN
#define GET API_METHOD_GET
#define HEAD API_METHOD_HEAD
#define POST API_METHOD_POST
#define DELETE API_METHOD_DELETE

struct match_case {
	unsigned int method;
	const char *path;
	unsigned int listener;
	int err;
	int route;                 /* index into routes, -1 for none */
	const char *app, *key_id;  /* expected parameters */
	unsigned int allowed;
};

static const struct match_case match_cases[] = {
	{ GET, "/healthz", P, 0, 0, NULL, NULL, GET | HEAD },
	{ GET, "/healthz", S, 0, 0, NULL, NULL, GET | HEAD },
	{ HEAD, "/healthz", P, 0, 0, NULL, NULL, GET | HEAD },
	{ POST, "/healthz", P, P8V_ERR_METHOD_NOT_ALLOWED, -1, NULL, NULL,
	    GET | HEAD },
	{ 0, "/healthz", P, P8V_ERR_METHOD_NOT_ALLOWED, -1, NULL, NULL,
	    GET | HEAD },
	{ GET, "/healthz/", P, P8V_ERR_NOT_FOUND, -1, NULL, NULL, 0 },
	{ GET, "/", P, P8V_ERR_NOT_FOUND, -1, NULL, NULL, 0 },
	{ GET, "/v1/apps/com.example/keys", P, 0, 1, "com.example", NULL,
	    GET | HEAD | POST },
	{ POST, "/v1/apps/com.example/keys", P, 0, 2, "com.example", NULL,
	    GET | HEAD | POST },
	{ DELETE, "/v1/apps/a/keys", P, P8V_ERR_METHOD_NOT_ALLOWED, -1, NULL,
	    NULL, GET | HEAD | POST },
	{ GET, "/v1/apps/a/keys/ABCDE12345", P, 0, 3, "a", "ABCDE12345",
	    GET | HEAD | DELETE },
	{ DELETE, "/v1/apps/a/keys/ABCDE12345", P, 0, 4, "a", "ABCDE12345",
	    GET | HEAD | DELETE },
	/* An empty segment never fills a parameter. */
	{ GET, "/v1/apps//keys", P, P8V_ERR_NOT_FOUND, -1, NULL, NULL, 0 },
	{ GET, "/v1/apps/a/keys/", P, P8V_ERR_NOT_FOUND, -1, NULL, NULL, 0 },
	/* A parameter that decodes to "a/b" stays one segment. */
	{ GET, "/v1/apps/a%2Fb/keys", P, 0, 1, "a/b", NULL,
	    GET | HEAD | POST },
	/* Routes of the other listener do not exist here. */
	{ POST, "/v1/apps/a/apns-token", P, P8V_ERR_NOT_FOUND, -1, NULL, NULL,
	    0 },
	{ POST, "/v1/apps/a/apns-token", S, 0, 5, "a", NULL, POST },
	{ GET, "/v1/apps/a/keys", S, P8V_ERR_NOT_FOUND, -1, NULL, NULL, 0 },
	/* Literal and parameter patterns of the same shape: the first line in
	 * the table wins, every shape counts for Allow. */
	{ GET, "/v1/apps/list", P, 0, 6, NULL, NULL, GET | HEAD },
	{ GET, "/v1/apps/list/keys", P, 0, 1, "list", NULL,
	    GET | HEAD | POST },
	{ GET, "/v1/apps/a/keys/b/c", P, P8V_ERR_NOT_FOUND, -1, NULL, NULL, 0 },
	{ GET, "/V1/apps/a/keys", P, P8V_ERR_NOT_FOUND, -1, NULL, NULL, 0 },
};

/* One case, with allowed (every pattern tried) or without (the method's
 * patterns first): the same answer either way. */
static void
check_route_case(size_t i, int with_allowed)
{
	const struct match_case *c = &match_cases[i];
	const struct api_route *route;
	struct api_params params;
	struct api_path path;
	unsigned int allowed = 0;
	int r;

	REQUIRE(api_path_decode(c->path, strlen(c->path), &path) == 0);
	r = api_route_match(routes, sizeof(routes) / sizeof(routes[0]),
	    c->method, &path, c->listener, &route, &params,
	    with_allowed ? &allowed : NULL);
	CHECKF(r == c->err, "case %zu %s (allowed %d): got %d want %d", i,
	    c->path, with_allowed, r, c->err);
	if (with_allowed)
		CHECKF(allowed == c->allowed, "case %zu %s: allowed %#x want "
		    "%#x", i, c->path, allowed, c->allowed);
	if (c->route < 0) {
		CHECKF(route == NULL, "case %zu: a route", i);
	} else {
		CHECKF(route == &routes[c->route], "case %zu %s: route %td "
		    "want %d", i, c->path,
		    route != NULL ? route - routes : -1, c->route);
		if (c->app != NULL)
			CHECK_STR(api_params_get(&params, "app"), c->app);
		else
			CHECK(api_params_get(&params, "app") == NULL);
		if (c->key_id != NULL)
			CHECK_STR(api_params_get(&params, "key_id"),
			    c->key_id);
		CHECK(api_params_get(&params, "ap") == NULL);
		CHECK(api_params_get(&params, "appx") == NULL);
	}
	api_path_finish(&path);
}

static void
test_route_match(void)
{
	size_t i;

	for (i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		check_route_case(i, 1);
		check_route_case(i, 0);
	}
}

static void
test_methods_and_allow(void)
{
	char buf[API_ALLOW_MAX];

	CHECK_INT(api_method_parse("GET"), API_METHOD_GET);
	CHECK_INT(api_method_parse("DELETE"), API_METHOD_DELETE);
	CHECK_INT(api_method_parse("get"), 0);
	CHECK_INT(api_method_parse("OPTIONS"), 0);
	CHECK_INT(api_method_parse(""), 0);
	CHECK_INT(api_method_parse(NULL), 0);
	CHECK_STR(api_allow_format(0, buf), "");
	CHECK_STR(api_allow_format(API_METHOD_GET | API_METHOD_HEAD, buf),
	    "GET, HEAD");
	CHECK_STR(api_allow_format(0x3f, buf),
	    "GET, HEAD, POST, PUT, DELETE, PATCH");
	CHECK_INT(strlen(buf) + 1, API_ALLOW_MAX);
}

/* -- the status table -------------------------------------------------- */

struct status_case {
	int err;
	unsigned int status;
};

/* What clients rely on; the mapping. */
static const struct status_case status_cases[] = {
	{ 0, 200 },
	{ P8V_ERR_P8_NOT_PEM, 400 },
	{ P8V_ERR_P8_WRONG_CURVE, 400 },
	{ P8V_ERR_P8_CERTIFICATE, 400 },
	{ P8V_ERR_BAD_APP_ID, 422 },
	{ P8V_ERR_BAD_KEY_ID, 422 },
	{ P8V_ERR_BAD_TEAM_ID, 422 },
	{ P8V_ERR_BAD_FIELD, 422 },
	{ P8V_ERR_KEY_EXISTS, 409 },
	{ P8V_ERR_KEY_IDENTITY_CONFLICT, 409 },
	{ P8V_ERR_NOT_FOUND, 404 },
	{ P8V_ERR_APP_NOT_FOUND, 404 },
	{ P8V_ERR_KEY_NOT_FOUND, 404 },
	{ P8V_ERR_NO_ACTIVE_KEY, 404 },
	{ P8V_ERR_KEY_REVOKED, 410 },
	{ P8V_ERR_SERVICE_NOT_ALLOWED, 403 },
	{ P8V_ERR_TOO_LARGE, 413 },
	{ P8V_ERR_NO_SPACE, 507 },
	{ P8V_ERR_BAD_REQUEST, 400 },
	{ P8V_ERR_METHOD_NOT_ALLOWED, 405 },
	{ P8V_ERR_NOT_READY, 503 },
	{ P8V_ERR_STORE_UNAVAILABLE, 503 },
	{ P8V_ERR_KEEPER_UNAVAILABLE, 503 },
	{ P8V_ERR_UNAUTHORIZED, 401 },
	{ P8V_ERR_FORBIDDEN, 403 },
	{ P8V_ERR_INTERNAL, 500 },
	{ P8V_ERR_ALLOC, 500 },
	{ P8V_ERR_INVALID_ARGUMENT, 500 },
	{ P8V_ERR_INTEGRITY, 500 },
	{ P8V_ERR_SECMEM, 500 },
	{ P8V_ERR_CRYPTO, 500 },
	{ P8V_ERR_STORE, 500 },
	{ P8V_ERR_MASTER_KEY_MISMATCH, 500 },
	{ -9999, 500 },
	{ 42, 500 },
};

#define X_ALL(sym, val, nm, msg) (val),
static const int all_codes[] = { P8V_ERRORS(X_ALL) };
#undef X_ALL

static void
test_error_statuses(void)
{
	json_t *body;
	const char *code, *msg;
	unsigned int st;
	size_t i;

	for (i = 0; i < sizeof(status_cases) / sizeof(status_cases[0]); i++)
		CHECKF(api_error_status(status_cases[i].err) ==
		    status_cases[i].status, "%s: %u, want %u",
		    p8v_errname(status_cases[i].err),
		    api_error_status(status_cases[i].err),
		    status_cases[i].status);
	/* Retry-After: the store that cannot be reached, the keeper being
	 * started again, a connection over a limit, the locked budget spent,
	 * an upload rate, and no other code (a 500 is not worth retrying
	 * blindly; not_ready has none). */
	CHECK_INT(api_error_retry_after(P8V_ERR_STORE_UNAVAILABLE), 1);
	CHECK_STR(api_error_code(P8V_ERR_STORE_UNAVAILABLE),
	    "store_unavailable");
	CHECK_INT(api_error_retry_after(P8V_ERR_KEEPER_UNAVAILABLE), 1);
	CHECK_STR(api_error_code(P8V_ERR_KEEPER_UNAVAILABLE),
	    "keeper_unavailable");
	CHECK_INT(api_error_retry_after(P8V_ERR_TOO_MANY_CONNECTIONS), 1);
	CHECK_INT(api_error_status(P8V_ERR_TOO_MANY_CONNECTIONS), 503);
	CHECK_STR(api_error_code(P8V_ERR_TOO_MANY_CONNECTIONS),
	    "too_many_connections");
	CHECK_INT(api_error_retry_after(P8V_ERR_BUSY), 1);
	CHECK_STR(api_error_code(P8V_ERR_BUSY), "busy");
	CHECK_INT(api_error_retry_after(P8V_ERR_RATE_LIMITED), 60);
	CHECK_INT(api_error_status(P8V_ERR_RATE_LIMITED), 429);
	CHECK_INT(api_error_status(P8V_ERR_TOO_MANY_KEYS), 422);
	CHECK_INT(api_error_status(P8V_ERR_TOO_MANY_APPS), 422);
	CHECK_INT(api_error_status(P8V_ERR_VAULT_FULL), 422);
	for (i = 0; i < sizeof(all_codes) / sizeof(all_codes[0]); i++)
		if (all_codes[i] != P8V_ERR_STORE_UNAVAILABLE &&
		    all_codes[i] != P8V_ERR_KEEPER_UNAVAILABLE &&
		    all_codes[i] != P8V_ERR_TOO_MANY_CONNECTIONS &&
		    all_codes[i] != P8V_ERR_BUSY &&
		    all_codes[i] != P8V_ERR_RATE_LIMITED)
			CHECKF(api_error_retry_after(all_codes[i]) == 0, "%s",
			    p8v_errname(all_codes[i]));
	CHECK_INT(api_error_retry_after(0), 0);
	CHECK_INT(api_error_retry_after(-9999), 0);
	/* Every code: an error status, a body with its name (or
	 * internal_error and no detail for 500s). */
	for (i = 0; i < sizeof(all_codes) / sizeof(all_codes[0]); i++) {
		st = api_error_status(all_codes[i]);
		CHECKF(st >= 400 && st <= 599, "%s: %u",
		    p8v_errname(all_codes[i]), st);
		body = api_error_body(all_codes[i], "detail for the client");
		REQUIRE(body != NULL);
		REQUIRE(json_unpack(body, "{s:{s:s, s:s}}", "error", "code",
		    &code, "message", &msg) == 0);
		CHECK_INT(json_object_size(body), 1);
		CHECK_INT(json_object_size(json_object_get(body, "error")), 2);
		if (st == 500) {
			CHECK_STR(code, "internal_error");
			CHECK_STR(msg, "internal error");
			CHECK_STR(api_error_code(all_codes[i]),
			    "internal_error");
		} else {
			CHECK_STR(code, p8v_errname(all_codes[i]));
			CHECK_STR(msg, "detail for the client");
		}
		json_decref(body);
		body = api_error_body(all_codes[i], NULL);
		REQUIRE(body != NULL);
		REQUIRE(json_unpack(body, "{s:{s:s}}", "error", "message",
		    &msg) == 0);
		if (st != 500)
			CHECK_STR(msg, p8v_strerror(all_codes[i]));
		json_decref(body);
	}
}

int
main(void)
{
	test_percent_decode();
	test_path_decode();
	test_query_parse();
	test_route_match();
	test_methods_and_allow();
	test_error_statuses();
	return check_finish();
}
