/*
 * router.h: route tables, strict path and query decoding, and matching.
 *
 * A route is one line of a table (api/routes.c): method, path pattern,
 * handler, the listeners that serve it, the role it needs and its body
 * cap. Patterns are absolute paths whose segments are either literal
 * ("keys") or a parameter in braces ("{key_id}") that matches exactly one
 * non-empty segment:
 *
 *   { API_METHOD_GET, "/v1/apps/{app}/keys/{key_id}", handle_key_get,
 *     API_LISTENER_PORTAL, API_ROLE_PORTAL, 0, API_ROUTE_NEEDS_READY },
 *
 * The raw path is split on '/' first and each segment is percent-decoded
 * afterwards, so "%2F" inside a segment never creates a new segment. The
 * decoding is strict: '%' must be followed by two hex digits and may not
 * decode to NUL; anything else is P8V_ERR_BAD_REQUEST. Decoded parameters
 * are otherwise unchecked: each handler validates its own (app ids, Key IDs
 * and so on have their own rules and their own error codes).
 *
 * Nothing here allocates per route; everything a match produces points
 * into the caller's struct api_path and the (static) route table.
 */
#ifndef P8V_API_ROUTER_H
#define P8V_API_ROUTER_H

#include <stddef.h>

/* Methods, as bits so that a 405 can list every allowed one. HEAD is served
 * by GET routes (libmicrohttpd drops the body). */
enum api_method {
	API_METHOD_GET = 1u << 0,
	API_METHOD_HEAD = 1u << 1,
	API_METHOD_POST = 1u << 2,
	API_METHOD_PUT = 1u << 3,
	API_METHOD_DELETE = 1u << 4,
	API_METHOD_PATCH = 1u << 5,
};

/* Which listener a request came in on, and which a route is served on. */
enum api_listener {
	API_LISTENER_PORTAL = 1u << 0, /* --listen: the upload (portal) API */
	API_LISTENER_SIGN = 1u << 1,   /* --sign-socket, --sign-listen */
	API_LISTENER_BOTH = API_LISTENER_PORTAL | API_LISTENER_SIGN,
};

/*
 * The role a route requires of the caller's bearer token. API_ROLE_NONE
 * routes (health checks) skip authentication altogether; every other route
 * goes through api_authenticate() (api/auth.h) before its handler runs.
 */
enum api_role {
	API_ROLE_NONE = 0,
	API_ROLE_PORTAL,   /* the developer portal's backend: uploads */
	API_ROLE_SIGNER,   /* provider daemons: signing */
	API_ROLE_ADMIN,    /* operators */
};

/* Route flags. */
/* The handler needs the store and the vault: answered 503 not_ready
 * before they are open, without calling the handler. */
#define API_ROUTE_NEEDS_READY 0x1u

struct api_request;

/*
 * A handler answers one request. It either calls api_respond() (or
 * api_respond_error()) once and returns 0, or returns a P8V_ERR_* code and
 * the framework answers with that error (any response it set is dropped).
 * Returning 0 without responding is a bug, answered 500 and logged.
 * A handler that would have to wait for another request's work (a mint
 * another caller runs) returns P8V_ERR_WOULD_BLOCK while
 * api_request_can_wait(req) is 0: the framework then suspends the
 * connection and runs the handler again, from the start, on a thread
 * off the event loop, where api_request_can_wait(req) is 1 (api/http.h).
 */
typedef int (*api_handler_fn)(struct api_request *req);

struct api_route {
	unsigned int method;       /* exactly one API_METHOD_* (not HEAD) */
	const char *pattern;       /* "/v1/apps/{app}/keys" */
	api_handler_fn handler;
	unsigned int listeners;    /* API_LISTENER_* bits */
	enum api_role role;        /* checked by api_authenticate() */
	size_t body_max;           /* largest body accepted, bytes; 0: none */
	unsigned int flags;        /* API_ROUTE_* */
};

/* Longest raw path (before '?') the router looks at; libmicrohttpd's header
 * memory limit caps the request line anyway, this keeps decoding cheap. */
#define API_PATH_MAX 2048
/* Most segments a path may have: the deepest route has 6. */
#define API_PATH_SEGMENTS_MAX 16
/* Most {parameters} in one pattern. */
#define API_PARAMS_MAX 4
/* Most name=value pairs in a query string: no route takes more than a few. */
#define API_QUERY_MAX 16

/* A decoded path: segment i is seg[i] (NUL-terminated, may be ""). */
/* Paths up to this long are decoded into the struct itself, without an
 * allocation: every route's path with a bundle ID of 80 characters. */
#define API_PATH_INLINE 128

/* Points into itself: not to be copied. */
struct api_path {
	char *buf;                          /* inline, or malloc'd: owns the
	                                       segments */
	size_t nseg;
	const char *seg[API_PATH_SEGMENTS_MAX];
	char inline_buf[API_PATH_INLINE];
};

struct api_param {
	const char *name;          /* points into the pattern, not terminated */
	size_t name_len;
	const char *value;         /* points into struct api_path */
};

struct api_params {
	size_t count;
	struct api_param item[API_PARAMS_MAX];
};

struct api_query_item {
	const char *name;          /* decoded, NUL-terminated */
	const char *value;         /* decoded, "" for "name" or "name=" */
};

/* Empty (all zero) until a query is parsed: most requests have none, and
 * this is part of every request's state. */
struct api_query {
	struct api_query_item *item;  /* malloc'd: API_QUERY_MAX items, then
	                                 the names and values (buf) */
	char *buf;
	size_t count;
};

/* The API_METHOD_* bit for a method name ("GET"; case-sensitive as HTTP
 * says), or 0 for any other method. */
unsigned int api_method_parse(const char *name);

/*
 * Decode in[0..len) into out (room for len + 1 bytes: decoding never grows
 * the text) and NUL-terminate it; *out_len gets the decoded length. '%XX'
 * (two hex digits, either case) becomes one byte; with plus_is_space, '+'
 * becomes ' ' (application/x-www-form-urlencoded, used for query strings).
 * Returns 0, or P8V_ERR_BAD_REQUEST for a '%' not followed by two hex
 * digits or an escape that decodes to NUL.
 */
int api_percent_decode(const char *in, size_t len, int plus_is_space,
    char *out, size_t *out_len);

/*
 * Split raw (the path part of the request target, up to but excluding any
 * '?') into decoded segments. raw must start with '/'; "/" is one empty
 * segment, "/a/" is "a" and "". On failure *out is left empty
 * (api_path_finish is still safe).
 * Returns 0, P8V_ERR_BAD_REQUEST (no leading '/', longer than
 * API_PATH_MAX, more than API_PATH_SEGMENTS_MAX segments, bad escape),
 * P8V_ERR_ALLOC.
 */
int api_path_decode(const char *raw, size_t len, struct api_path *out);
void api_path_finish(struct api_path *path);

/*
 * Parse a query string (after '?', may be empty) into decoded pairs:
 * "a=1&b=x%20y&c" -> a="1", b="x y", c="". Empty pairs ("a=1&&b=2", a
 * trailing '&') are skipped. On failure *out is left empty.
 * Returns 0, P8V_ERR_BAD_REQUEST (bad escape, empty name, a name given
 * twice, more than API_QUERY_MAX pairs), P8V_ERR_ALLOC.
 */
int api_query_parse(const char *raw, size_t len, struct api_query *out);
void api_query_finish(struct api_query *query);
/* The decoded value of name, or NULL if absent. */
const char *api_query_get(const struct api_query *query, const char *name);

/*
 * Find the route for method on path among those served on listener.
 * On 0, *route is the route and *params its parameters in pattern order.
 * *allowed (may be NULL) gets the API_METHOD_* bits of every route whose
 * pattern matches path on this listener (GET implies HEAD), for the Allow
 * header of a 405. Without it, a request that has a route is matched
 * against the patterns of its method only: a caller asks again with it for
 * the Allow header of a 405.
 * Returns 0, P8V_ERR_NOT_FOUND (no pattern matches the path on this
 * listener; routes of other listeners do not exist here),
 * P8V_ERR_METHOD_NOT_ALLOWED (the path matches, the method does not; also
 * for a method api_method_parse does not know, method == 0).
 */
int api_route_match(const struct api_route *routes, size_t n_routes,
    unsigned int method, const struct api_path *path, unsigned int listener,
    const struct api_route **route, struct api_params *params,
    unsigned int *allowed);

/* The value of parameter name ("app", no braces), or NULL. */
const char *api_params_get(const struct api_params *params, const char *name);

/* Longest text api_allow_format writes: every method, comma-separated. */
#define API_ALLOW_MAX sizeof("GET, HEAD, POST, PUT, DELETE, PATCH")

/* Format allowed (API_METHOD_* bits) as an Allow header value
 * ("GET, HEAD") into out (API_ALLOW_MAX bytes). Returns out. */
char *api_allow_format(unsigned int allowed, char out[API_ALLOW_MAX]);

#endif /* P8V_API_ROUTER_H */
