/* test_api_http.c: the HTTP framework (api/http.h) with a route table of
 * its own, over a real loopback socket: body caps at their exact edges,
 * chunked bodies, handler errors and the status table, one JSON answer on
 * every path, readiness, the authentication hook; and the connection
 * budgets (api/connlimit.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "api/connlimit.h"
#include "api/http.h"
#include "common/err.h"
#include "crypto/secmem.h"
#include "tests/check.h"

/* The cap of the test's /echo route. */
#define ECHO_MAX 16
/* Largest response the raw client reads. */
#define RESPONSE_MAX 8192

/* -- handlers ---------------------------------------------------------- */

/* {"len": n, "sum": byte sum}: proves what reached the handler. */
static int
handle_echo(struct api_request *req)
{
	const uint8_t *body;
	size_t len, i;
	long sum = 0;

	body = api_request_body(req, &len);
	for (i = 0; i < len; i++)
		sum += body[i];
	return api_respond(req, 200, json_pack("{s:i, s:i}", "len", (int)len,
	    "sum", (int)sum));
}

/* Returns the error code in the path: how every code is answered. */
static int
handle_fail(struct api_request *req)
{
	return atoi(api_request_param(req, "code"));
}

/* A handler bug: returns 0 and never responds. */
static int
handle_silent(struct api_request *req)
{
	(void)req;
	return 0;
}

/* Sets a response, then fails: the error wins. */
static int
handle_respond_then_fail(struct api_request *req)
{
	(void)api_respond(req, 200, json_pack("{s:s}", "leak", "no"));
	return P8V_ERR_KEY_REVOKED;
}

static int
handle_params(struct api_request *req)
{
	const char *q = api_request_query(req, "q");

	(void)api_respond_header(req, "X-Test", "yes");
	return api_respond(req, 201, json_pack("{s:s, s:s, s:s?, s:s}",
	    "a", api_request_param(req, "a"), "b", api_request_param(req, "b"),
	    "q", q, "listener",
	    api_request_listener(req) == API_LISTENER_PORTAL ? "portal" :
	    "sign"));
}

static int
handle_json(struct api_request *req)
{
	json_t *in = NULL;
	int r;

	if ((r = api_request_json(req, &in)) != 0)
		return r;
	return api_respond(req, 200, in);
}

static int
handle_ready(struct api_request *req)
{
	const struct api_backend *b = api_request_backend(req);

	return api_respond(req, 200, json_pack("{s:b}", "backend", b != NULL));
}

static int
handle_detail(struct api_request *req)
{
	return api_respond_error(req, P8V_ERR_BAD_FIELD, "topics[2] is empty");
}

/* A Prometheus-style text answer, or (?fail) one that then fails. */
static int
handle_text(struct api_request *req)
{
	char *text = strdup("p8v_up 1\n");
	int r;

	if (text == NULL)
		return P8V_ERR_ALLOC;
	r = api_respond_text(req, 200, "text/plain; version=0.0.4", text,
	    strlen("p8v_up 1\n"));
	if (r != 0)
		return r;
	if (api_request_query(req, "fail") != NULL)
		return P8V_ERR_KEY_NOT_FOUND;
	/* A second answer is refused (and its text freed). */
	CHECK_ERR(api_respond(req, 200, json_pack("{}")), P8V_ERR_INTERNAL);
	CHECK_ERR(api_respond_text(req, 200, "text/plain", strdup("x"), 1),
	    P8V_ERR_INTERNAL);
	CHECK_ERR(api_respond_text(req, 200, "text/plain\r\nX: y",
	    strdup("x"), 1), P8V_ERR_INVALID_ARGUMENT);
	return 0;
}

/* The authentication hook of the test's server: lets in a request with
 * "X-Let-In: yes" as the route's role, refuses any other. */
static int
let_in_hook(struct api_request *req, enum api_role required)
{
	const char *v = api_request_header(req, "X-Let-In");
	struct api_principal *who = api_request_principal(req);

	if (v == NULL || strcmp(v, "yes") != 0)
		return P8V_ERR_UNAUTHORIZED;
	who->role = required;
	snprintf(who->actor, sizeof(who->actor), "%s", "tester");
	return 0;
}

/* {"role": n, "actor": s}: what the hook established. */
static int
handle_guarded(struct api_request *req)
{
	const struct api_principal *who = api_request_principal(req);

	return api_respond(req, 200, json_pack("{s:i, s:s}", "role",
	    (int)who->role, "actor", who->actor));
}

static const struct api_route routes[] = {
	{ API_METHOD_POST, "/echo", handle_echo, API_LISTENER_BOTH,
	    API_ROLE_NONE, ECHO_MAX, 0 },
	{ API_METHOD_GET, "/fail/{code}", handle_fail, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, 0 },
	{ API_METHOD_GET, "/silent", handle_silent, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, 0 },
	{ API_METHOD_GET, "/both", handle_respond_then_fail,
	    API_LISTENER_BOTH, API_ROLE_NONE, 0, 0 },
	{ API_METHOD_GET, "/p/{a}/{b}", handle_params, API_LISTENER_PORTAL,
	    API_ROLE_NONE, 0, 0 },
	{ API_METHOD_POST, "/json", handle_json, API_LISTENER_BOTH,
	    API_ROLE_NONE, 256, 0 },
	{ API_METHOD_GET, "/needs-ready", handle_ready, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, API_ROUTE_NEEDS_READY },
	{ API_METHOD_GET, "/detail", handle_detail, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, 0 },
	{ API_METHOD_GET, "/text", handle_text, API_LISTENER_BOTH,
	    API_ROLE_NONE, 0, 0 },
	{ API_METHOD_GET, "/guarded", handle_guarded, API_LISTENER_BOTH,
	    API_ROLE_SIGNER, 0, 0 },
};

/* -- a raw client ------------------------------------------------------ */

static uint16_t port;

/* Send req (len bytes) on a new connection and read until the server
 * closes it; the response is NUL-terminated in out. */
static size_t
exchange(const char *req, size_t len, char out[RESPONSE_MAX])
{
	struct sockaddr_in sa;
	struct pollfd pfd;
	size_t got = 0;
	ssize_t n;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE((fd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	(void)!send(fd, req, len, MSG_NOSIGNAL);
	pfd.fd = fd;
	pfd.events = POLLIN;
	while (got < RESPONSE_MAX - 1 && poll(&pfd, 1, 5000) == 1) {
		n = recv(fd, out + got, RESPONSE_MAX - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	out[got] = '\0';
	close(fd);
	return got;
}

static unsigned int
status_of(const char *resp)
{
	unsigned int st = 0;

	if (sscanf(resp, "HTTP/1.1 %u", &st) != 1)
		return 0;
	return st;
}

static json_t *
body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");

	return b != NULL ? json_loads(b + 4, 0, NULL) : NULL;
}

struct http_case {
	const char *request;       /* Connection: close is in each */
	unsigned int status;
	const char *body;          /* exact JSON body (compared as JSON), or
	                            * NULL: not checked */
	const char *header;        /* a header line the response must hold */
};

#define H "Host: t\r\nConnection: close\r\n"

static const struct http_case http_cases[] = {
	/* Bodies at the edges of the cap. */
	{ "POST /echo HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", 200,
	    "{\"len\":0,\"sum\":0}", NULL },
	{ "POST /echo HTTP/1.1\r\n" H "Content-Length: 3\r\n\r\nabc", 200,
	    "{\"len\":3,\"sum\":294}", NULL },
	{ "POST /echo HTTP/1.1\r\n" H "Content-Length: 16\r\n\r\n"
	    "AAAAAAAAAAAAAAAA", 200, "{\"len\":16,\"sum\":1040}", NULL },
	{ "POST /echo HTTP/1.1\r\n" H "Content-Length: 17\r\n\r\n"
	    "AAAAAAAAAAAAAAAAA", 413,
	    "{\"error\":{\"code\":\"too_large\",\"message\":\"input exceeds its "
	    "size limit\"}}", NULL },
	{ "POST /echo HTTP/1.1\r\n" H "Content-Length: 99999999999\r\n\r\n",
	    413, NULL, NULL },
	{ "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
	    "8\r\nAAAAAAAA\r\n8\r\nAAAAAAAA\r\n0\r\n\r\n", 200,
	    "{\"len\":16,\"sum\":1040}", NULL },
	{ "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
	    "1\r\nA\r\n2\r\nAA\r\n0\r\n\r\n", 200, "{\"len\":3,\"sum\":195}",
	    NULL },
	{ "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
	    "8\r\nAAAAAAAA\r\n9\r\nAAAAAAAAA\r\n0\r\n\r\n", 413, NULL, NULL },
	{ "POST /echo HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
	    "11\r\nAAAAAAAAAAAAAAAAA\r\n0\r\n\r\n", 413, NULL, NULL },
	/* Handler errors through the one table. */
	{ "GET /fail/-64 HTTP/1.1\r\n" H "\r\n", 404,
	    "{\"error\":{\"code\":\"key_not_found\",\"message\":\"no such "
	    "key\"}}", NULL },
	{ "GET /fail/-41 HTTP/1.1\r\n" H "\r\n", 422, NULL, NULL },
	{ "GET /fail/-61 HTTP/1.1\r\n" H "\r\n", 410, NULL, NULL },
	{ "GET /fail/-51 HTTP/1.1\r\n" H "\r\n", 507, NULL, NULL },
	{ "GET /fail/-1 HTTP/1.1\r\n" H "\r\n", 500,
	    "{\"error\":{\"code\":\"internal_error\",\"message\":\"internal "
	    "error\"}}", NULL },
	{ "GET /fail/-5 HTTP/1.1\r\n" H "\r\n", 500,
	    "{\"error\":{\"code\":\"internal_error\",\"message\":\"internal "
	    "error\"}}", NULL },
	{ "GET /fail/-73 HTTP/1.1\r\n" H "\r\n", 401, NULL,
	    "WWW-Authenticate: Bearer" },
	/* A store that cannot be reached: retryable, and says when. */
	{ "GET /fail/-57 HTTP/1.1\r\n" H "\r\n", 503,
	    "{\"error\":{\"code\":\"store_unavailable\",\"message\":\"the "
	    "key store cannot be reached; retry later\"}}",
	    "\r\nRetry-After: 1\r\n" },
	{ "GET /silent HTTP/1.1\r\n" H "\r\n", 500, NULL, NULL },
	{ "GET /both HTTP/1.1\r\n" H "\r\n", 410, NULL, NULL },
	{ "GET /detail HTTP/1.1\r\n" H "\r\n", 422,
	    "{\"error\":{\"code\":\"invalid_field\",\"message\":\"topics[2] is "
	    "empty\"}}", NULL },
	/* Parameters and queries, decoded. */
	{ "GET /p/x%20y/%C3%A9?q=a+b HTTP/1.1\r\n" H "\r\n", 201,
	    "{\"a\":\"x y\",\"b\":\"\xc3\xa9\",\"q\":\"a b\","
	    "\"listener\":\"portal\"}", "X-Test: yes" },
	{ "GET /p/1/2 HTTP/1.1\r\n" H "\r\n", 201,
	    "{\"a\":\"1\",\"b\":\"2\",\"q\":null,\"listener\":\"portal\"}",
	    NULL },
	{ "GET /p/1/%zz HTTP/1.1\r\n" H "\r\n", 400, NULL, NULL },
	{ "GET /p/1/2?q=1&q=2 HTTP/1.1\r\n" H "\r\n", 400, NULL, NULL },
	/* JSON bodies. */
	{ "POST /json HTTP/1.1\r\n" H "Content-Type: application/json\r\n"
	    "Content-Length: 7\r\n\r\n{\"a\":1}", 200, "{\"a\":1}", NULL },
	{ "POST /json HTTP/1.1\r\n" H "Content-Type: application/json; "
	    "charset=utf-8\r\nContent-Length: 7\r\n\r\n{\"a\":1}", 200,
	    "{\"a\":1}", NULL },
	{ "POST /json HTTP/1.1\r\n" H "Content-Type: text/plain\r\n"
	    "Content-Length: 7\r\n\r\n{\"a\":1}", 415, NULL, NULL },
	{ "POST /json HTTP/1.1\r\n" H "Content-Type: application/jsonx\r\n"
	    "Content-Length: 7\r\n\r\n{\"a\":1}", 415, NULL, NULL },
	{ "POST /json HTTP/1.1\r\n" H
	    "Content-Length: 7\r\n\r\n{\"a\":1}", 415, NULL, NULL },
	{ "POST /json HTTP/1.1\r\n" H "Content-Type: application/json\r\n"
	    "Content-Length: 6\r\n\r\n{\"a\":1", 400, NULL, NULL },
	{ "POST /json HTTP/1.1\r\n" H "Content-Type: application/json\r\n"
	    "Content-Length: 13\r\n\r\n{\"a\":1,\"a\":2}", 400, NULL, NULL },
	{ "POST /json HTTP/1.1\r\n" H "Content-Type: application/json\r\n"
	    "Content-Length: 3\r\n\r\n[1]", 400, NULL, NULL },
	/* Routing. */
	{ "GET /nope HTTP/1.1\r\n" H "\r\n", 404,
	    "{\"error\":{\"code\":\"not_found\",\"message\":\"not found\"}}",
	    NULL },
	{ "DELETE /echo HTTP/1.1\r\n" H "\r\n", 405, NULL, "Allow: POST" },
	{ "GET /fail/-1/x HTTP/1.1\r\n" H "\r\n", 404, NULL, NULL },
	/* A route with a role passes the server's authentication hook. */
	{ "GET /guarded HTTP/1.1\r\n" H "\r\n", 401,
	    "{\"error\":{\"code\":\"unauthorized\",\"message\":\"a valid "
	    "bearer token is required\"}}", "WWW-Authenticate: Bearer" },
	{ "GET /guarded HTTP/1.1\r\n" H "X-Let-In: yes\r\n\r\n", 200,
	    "{\"role\":2,\"actor\":\"tester\"}", NULL },
	{ "GET /needs-ready HTTP/1.1\r\n" H "\r\n", 503,
	    "{\"error\":{\"code\":\"not_ready\",\"message\":\"the vault is not "
	    "ready: the store is not open or no master key has been "
	    "checked\"}}", NULL },
};

static void
run_cases(void)
{
	char resp[RESPONSE_MAX];
	json_t *got, *want;
	size_t i;

	for (i = 0; i < sizeof(http_cases) / sizeof(http_cases[0]); i++) {
		const struct http_case *c = &http_cases[i];

		exchange(c->request, strlen(c->request), resp);
		CHECKF(status_of(resp) == c->status, "case %zu: status %u, "
		    "want %u: %.200s", i, status_of(resp), c->status, resp);
		CHECKF(strstr(resp, "Content-Type: application/json\r\n") !=
		    NULL, "case %zu: not JSON: %.200s", i, resp);
		got = body_of(resp);
		CHECKF(got != NULL, "case %zu: body is not JSON", i);
		/* Every JSON answer, errors too, ends with one newline. */
		CHECKF(strlen(resp) > 2 && strcmp(resp + strlen(resp) - 2,
		    "}\n") == 0, "case %zu: no newline at the end", i);
		if (c->body != NULL) {
			want = json_loads(c->body, 0, NULL);
			REQUIRE(want != NULL);
			CHECKF(json_equal(got, want), "case %zu: body %.300s", i,
			    resp);
			json_decref(want);
		}
		if (c->header != NULL)
			CHECKF(strstr(resp, c->header) != NULL, "case %zu: no "
			    "\"%s\"", i, c->header);
		json_decref(got);
	}
}

/*
 * JSON answers are written byte for byte as json_dumps(JSON_COMPACT) writes
 * them, and a newline, whichever way api/http.c serialises them (flat
 * objects of integers and plain ASCII strings by hand, the rest by
 * jansson): /json echoes what it is sent.
 */
static void
test_json_bytes(void)
{
	static const char *const bodies[] = {
		("{\"token\":\"eyJ.eyJ.sig-_\",\"key_id\":\"ABC1234567\","
		    "\"issued_at\":1795475338,\"expires_at\":-1}"),
		"{\"a\":9223372036854775807,\"b\":-9223372036854775808}",
		"{\"s\":\"a/b ~!#$%&'()*+,-.:;<=>?@[]^`{|}\"}",
		"{}",
		"{\"q\":\"a\\\"b\"}",              /* escapes: jansson */
		"{\"q\":\"a\\\\b\"}",
		"{\"q\":\"\\u00e9\"}",
		"{\"q\":\"\\u0001\"}",
		"{\"q\":\"\\u007f\"}",
		"{\"q\":null,\"r\":true,\"s\":1.5}",
		"{\"o\":{\"a\":1},\"l\":[1,\"x\"]}",
		"{\"k\\\"\":1}",
	};
	char req[1024], resp[RESPONSE_MAX];
	const char *b;
	json_t *in;
	char *want;
	size_t i;
	int n;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		n = snprintf(req, sizeof(req), "POST /json HTTP/1.1\r\n" H
		    "Content-Type: application/json\r\nContent-Length: "
		    "%zu\r\n\r\n%s", strlen(bodies[i]), bodies[i]);
		REQUIRE(n > 0 && (size_t)n < sizeof(req));
		REQUIRE((in = json_loads(bodies[i], 0, NULL)) != NULL);
		REQUIRE((want = json_dumps(in, JSON_COMPACT)) != NULL);
		exchange(req, (size_t)n, resp);
		CHECKF(status_of(resp) == 200, "json %zu: %.200s", i, resp);
		b = strstr(resp, "\r\n\r\n");
		CHECKF(b != NULL && strncmp(b + 4, want, strlen(want)) == 0 &&
		    strcmp(b + 4 + strlen(want), "\n") == 0,
		    "json %zu: body %s, want %s and a newline", i,
		    b != NULL ? b + 4 : "-", want);
		free(want);
		json_decref(in);
	}
}

static void
test_text(void)
{
	static const char ok_req[] = "GET /text HTTP/1.1\r\n" H "\r\n";
	static const char fail_req[] = "GET /text?fail=1 HTTP/1.1\r\n" H
	    "\r\n";
	char resp[RESPONSE_MAX];
	const char *body;

	exchange(ok_req, strlen(ok_req), resp);
	CHECK_INT(status_of(resp), 200);
	CHECK(strstr(resp, "Content-Type: text/plain; version=0.0.4\r\n") !=
	    NULL);
	CHECK(strstr(resp, "Cache-Control: no-store\r\n") != NULL);
	body = strstr(resp, "\r\n\r\n");
	CHECK(body != NULL && strcmp(body + 4, "p8v_up 1\n") == 0);
	/* An error after a text answer: the error, as JSON. */
	exchange(fail_req, strlen(fail_req), resp);
	CHECK_INT(status_of(resp), 404);
	CHECK(strstr(resp, "Content-Type: application/json\r\n") != NULL);
	CHECK(strstr(resp, "key_not_found") != NULL);
}

static int
listen_loopback(void)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) >= 0);
	REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	REQUIRE(listen(fd, 64) == 0);
	REQUIRE(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	port = ntohs(sa.sin_port);
	return fd;
}

static void
test_server(void)
{
	struct api_server *srv = NULL;
	struct api_backend backend;
	char resp[RESPONSE_MAX];
	struct api_options opts;
	json_t *body;
	static const char ready_req[] = "GET /needs-ready HTTP/1.1\r\n" H
	    "\r\n";

	/* A route with a role and no hook to check it: refused up front. */
	CHECK_ERR(api_server_create(routes, sizeof(routes) / sizeof(routes[0]),
	    NULL, &srv), P8V_ERR_INVALID_ARGUMENT);
	CHECK(srv == NULL);
	memset(&opts, 0, sizeof(opts));
	CHECK_ERR(api_server_create(routes, sizeof(routes) / sizeof(routes[0]),
	    &opts, &srv), P8V_ERR_INVALID_ARGUMENT);
	opts.authenticate = let_in_hook;
	REQUIRE(api_server_create(routes, sizeof(routes) / sizeof(routes[0]),
	    &opts, &srv) == 0);
	CHECK_ERR(api_server_listen(srv, API_LISTENER_PORTAL, -1, 1, NULL),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(api_server_listen(srv, API_LISTENER_PORTAL,
	    listen_loopback(), 0, NULL), P8V_ERR_INVALID_ARGUMENT);
	REQUIRE(api_server_listen(srv, API_LISTENER_PORTAL, listen_loopback(),
	    2, NULL) == 0);
	run_cases();
	test_json_bytes();
	test_text();

	/* Readiness: the same route answers once a backend is set. */
	memset(&backend, 0, sizeof(backend));
	api_server_set_backend(srv, &backend);
	exchange(ready_req, strlen(ready_req), resp);
	CHECK_INT(status_of(resp), 200);
	body = body_of(resp);
	CHECK(body != NULL && json_is_true(json_object_get(body, "backend")));
	json_decref(body);

	/* Quiesced: stopping, no more connections. */
	CHECK_INT(api_server_in_flight(srv), 0);
	api_server_quiesce(srv);
	api_server_destroy(srv);
}

/* -- connection budgets ------------------------------------------------ */

static struct sockaddr_storage
addr4(const char *s)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	REQUIRE(inet_pton(AF_INET, s, &sin->sin_addr) == 1);
	return ss;
}

static struct sockaddr_storage
addr6(const char *s)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	REQUIRE(inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1);
	return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void
test_connlimit(void)
{
	struct sockaddr_storage a = addr4("192.0.2.1"), b = addr4("192.0.2.2"),
	    a_mapped = addr6("::ffff:192.0.2.1"),
	    v6a = addr6("2001:db8:1:2::1"), v6b = addr6("2001:db8:1:2:ffff::9"),
	    v6c = addr6("2001:db8:1:3::1");
	struct connlimit *cl;
	void *s1, *s2, *s3, *s4, *s5;

	CHECK_ERR(connlimit_create(0, 1, &cl), P8V_ERR_INVALID_ARGUMENT);
	REQUIRE(connlimit_create(3, 1, &cl) == 0);
	/* One per address. */
	CHECK((s1 = connlimit_acquire(cl, SA(a))) != NULL);
	CHECK(connlimit_acquire(cl, SA(a)) == NULL);
	CHECK(connlimit_acquire(cl, SA(a_mapped)) == NULL);  /* same host */
	CHECK((s2 = connlimit_acquire(cl, SA(b))) != NULL);
	CHECK_INT(connlimit_current(cl), 2);
	/* An IPv6 /64 is one address. */
	CHECK((s3 = connlimit_acquire(cl, SA(v6a))) != NULL);
	CHECK_INT(connlimit_current(cl), 3);
	/* The total is reached: even a new address waits. */
	CHECK(connlimit_acquire(cl, SA(v6c)) == NULL);
	CHECK(connlimit_acquire(cl, NULL) == NULL);
	connlimit_release(cl, s2);
	CHECK(connlimit_acquire(cl, SA(v6b)) == NULL);       /* same /64 */
	CHECK((s4 = connlimit_acquire(cl, SA(v6c))) != NULL);
	connlimit_release(cl, s1);
	/* Released: the address may come back. */
	CHECK((s1 = connlimit_acquire(cl, SA(a_mapped))) != NULL);
	connlimit_release(cl, s1);
	connlimit_release(cl, s3);
	connlimit_release(cl, s4);
	CHECK_INT(connlimit_current(cl), 0);
	/* Peers without an address count only towards the total. */
	CHECK((s1 = connlimit_acquire(cl, NULL)) != NULL);
	CHECK((s2 = connlimit_acquire(cl, NULL)) != NULL);
	CHECK((s5 = connlimit_acquire(cl, NULL)) != NULL);
	CHECK(connlimit_acquire(cl, NULL) == NULL);
	connlimit_release(cl, s1);
	connlimit_release(cl, s2);
	connlimit_release(cl, s5);
	connlimit_release(cl, NULL);
	CHECK_INT(connlimit_current(cl), 0);
	connlimit_destroy(cl);
}

int
main(void)
{
	REQUIRE(secmem_init() == 0);
	test_connlimit();
	test_server();
	return check_finish();
}
