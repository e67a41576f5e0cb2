/*
 * http.h: the HTTP server (libmicrohttpd) that serves the route table, and
 * the request interface handlers use.
 *
 * What every request gets, before any handler runs:
 * - the request target is taken raw (libmicrohttpd's lenient unescaping is
 *   not used), the path decoded strictly and matched (api/router.h): 400
 *   bad_request, 404 not_found, 405 method_not_allowed with Allow;
 * - routes flagged API_ROUTE_NEEDS_READY are answered 503 not_ready until
 *   the server has a backend (api_server_set_backend);
 * - routes with a role pass the server's authentication hook
 *   (api_options.authenticate; the daemon installs api_authenticate of
 *   api/auth.h, which this layer does not know): 401, 403;
 * - the body is accumulated, in guarded memory (secmem_alloc), up to the
 *   route's body_max: a Content-Length above it is answered 413 at once,
 *   a chunked body that grows past it is read and discarded up to
 *   API_BODY_DISCARD_BYTES more and then answered 413 (a client that
 *   sends even more is disconnected). The body is wiped and freed right
 *   after the handler returns;
 * - exactly one response, JSON (Content-Type: application/json,
 *   Cache-Control: no-store) unless a handler answers with
 *   api_respond_text (metrics); errors always as JSON
 *   {"error":{"code","message"}} with the status (and, for a
 *   retryable error, the Retry-After header) from api/errors.h;
 * - one debug log line: method, route pattern (never the raw path, which
 *   may hold ids a client mistyped), status, duration in microseconds.
 *
 * libmicrohttpd answers a few malformed requests itself, before p8vault
 * sees them, with its own short HTML body: a request line or header section
 * larger than the connection's memory (API_HEADER_MEMORY_BYTES) gets 431
 * (414 when the request line alone is too long), a malformed request line
 * or header 400, HTTP/1.1 without Host 400, a chunk-size line too long 413.
 *
 * Threads: handlers run on the listeners' threads, many at once; anything
 * they share must be thread-safe (store, vault are).
 */
#ifndef P8V_API_HTTP_H
#define P8V_API_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api/router.h"

/* The body cap of upload routes: a .p8 is ~250 bytes and its metadata a few
 * hundred more; a topic-specific key's 400 topics of up to 255 characters
 * add ~102 KiB (KEY_RECORD_META_MAX), so 128 KiB. */
#define API_BODY_MAX_UPLOAD (128 * 1024)
/* The body cap of signing routes: a few ids and a rejected token (~500
 * bytes); 4 KiB keeps the hot path's per-request memory small. */
#define API_BODY_MAX_SIGN (4 * 1024)
/* A chunked body past its cap is read and thrown away up to this many more
 * bytes, so the client that stopped in time still reads the 413; beyond
 * it the connection is closed without an answer. */
#define API_BODY_DISCARD_BYTES (256 * 1024)
/* First guarded buffer for a body of unknown length (chunked); it doubles
 * up to the route's cap. */
#define API_BODY_INITIAL_BYTES 4096

/* Per-connection memory for the request line, headers and read buffer
 * (MHD_OPTION_CONNECTION_MEMORY_LIMIT). Requests carry a bearer token and
 * a few short headers, well under 2 KiB (a path is at most API_PATH_MAX);
 * 8 KiB leaves room, is what nginx and Apache allow a header line, and
 * makes an oversized header section a cheap 431. Bodies pass through it
 * in pieces and live outside it. Not larger: libmicrohttpd zeroes this
 * memory after every request of a connection, so its size is paid on the
 * hot path (docs/benchmarks.md, "Costs behind limits and fast paths"). */
#define API_HEADER_MEMORY_BYTES (8 * 1024)
/* A connection idle this long is closed (MHD_OPTION_CONNECTION_TIMEOUT):
 * long enough for a keep-alive client between two requests, short enough
 * that idle or stalled clients cannot hold slots for long. */
#define API_CONNECTION_TIMEOUT_DEFAULT_S 15
/* Connections per listener (portal, signing) at once, all addresses.
 * Separate budgets, so that a flood of one API does not starve the other. */
#define API_CONNECTIONS_MAX_DEFAULT 1024
/* Connections per client address (an IPv6 /64 counts as one address) on a
 * TCP listener: a portal backend or a provider host pools a few dozen. */
#define API_CONNECTIONS_PER_ADDRESS_DEFAULT 64
/* Threads per listener: more rarely help, signing is fast. */
#define API_THREADS_MAX 64
/* Threads that run handlers deferred off the event loops (a request
 * waiting for another caller's mint): each waits on one stalled mint at
 * most, so a few cover every team minting at once; more queue. */
#define API_DEFER_THREADS 4
/* Most extra headers one response may carry (Allow, Retry-After, ...). */
#define API_RESPONSE_HEADERS_MAX 8

/* Who a request is from, as far as the auth hook established it. */
struct api_principal {
	enum api_role role;        /* the role granted; API_ROLE_NONE if none */
	char actor[64];            /* token id for the audit log, or "" */
};

struct api_request;

/*
 * The authentication hook (api_options.authenticate): called for every
 * request whose route requires a role (never API_ROLE_NONE), after routing
 * and the readiness check, before the body is read, with the route's role
 * as `required`. It returns 0 after filling api_request_principal(req),
 * or the P8V_ERR_* to answer with instead of running the handler (the
 * framework adds WWW-Authenticate: Bearer to P8V_ERR_UNAUTHORIZED).
 * Called on the listeners' threads, many at once: it must be thread-safe.
 * The daemon's is api_authenticate (api/auth.h).
 */
typedef int (*api_auth_hook_fn)(struct api_request *req,
    enum api_role required);

/*
 * What handlers work on, set by server/ once the store is open and the
 * master keys checked. Pointers stay valid until api_server_destroy.
 */
struct store;
struct vault;
struct keeper;
struct keeper_pipe;
struct api_backend {
	struct store *store;
	struct vault *vault;
	struct keeper *keeper;  /* may be NULL: no keeper pipes */
};

struct api_options {
	unsigned int connection_timeout_s;        /* 0: default */
	unsigned int max_connections;             /* per listener; 0: default */
	unsigned int max_connections_per_address; /* 0: default */
	int log_requests;          /* 1: a debug line per request */
	/* Required when a route has a role; NULL: the route table has none. */
	api_auth_hook_fn authenticate;
};

/* A TLS certificate chain and key, PEM, NUL-terminated. key_pem should be
 * in guarded memory; it is read only during api_server_listen (libgnutls
 * keeps its own parsed copy), so the caller wipes it right after. */
struct api_tls {
	const char *cert_pem;
	const char *key_pem;
};

struct api_server;

/*
 * Create a server for the route table routes[0..n_routes) (kept by
 * reference: a static table). opts may be NULL (defaults, no
 * authentication hook). No listener yet; add them with api_server_listen.
 * /readyz says "starting" until api_server_set_backend.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (also: a route requires a role and
 * there is no authentication hook), P8V_ERR_ALLOC, P8V_ERR_RANDOM.
 */
int api_server_create(const struct api_route *routes, size_t n_routes,
    const struct api_options *opts, struct api_server **out);

/*
 * Serve kind (API_LISTENER_PORTAL or API_LISTENER_SIGN) on fd, a bound,
 * listening, non-blocking stream socket (TCP or unix), with `threads`
 * threads (1..API_THREADS_MAX): one thread is one libmicrohttpd daemon
 * with its own epoll loop; several threads on one fd form a pool that
 * polls it (see the comment on threading in http.c: TCP listeners should
 * rather get one fd per thread, SO_REUSEPORT). tls (may be NULL) serves
 * HTTPS on this fd. Every fd of one kind shares that kind's connection
 * limits. The server takes fd (also on failure: it is closed).
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, P8V_ERR_UNSUPPORTED
 * (TLS asked but libmicrohttpd built without it), P8V_ERR_INTERNAL
 * (libmicrohttpd refused to start: logged).
 */
int api_server_listen(struct api_server *srv, enum api_listener kind, int fd,
    unsigned int threads, const struct api_tls *tls);

/* The server is ready: routes that need the backend are served. backend
 * is copied. Thread-safe. */
void api_server_set_backend(struct api_server *srv,
    const struct api_backend *backend);

/* The server is not ready, for reason (a static string, e.g. "starting",
 * or p8v_errname of the failure): /readyz answers 503 with it. */
void api_server_set_not_ready(struct api_server *srv, const char *reason);

/*
 * Stop accepting on every listener (their sockets are closed) and mark the
 * server stopping: /readyz answers 503 "stopping", every response carries
 * Connection: close. Requests in flight and requests already arriving on
 * open connections are still served. Call from the thread that owns srv.
 */
void api_server_quiesce(struct api_server *srv);

/* Requests started (request line read) and not yet answered. */
unsigned int api_server_in_flight(struct api_server *srv);

/* Stop every listener (open connections are closed, handlers that run are
 * waited for) and free the server. NULL-safe. */
void api_server_destroy(struct api_server *srv);

/* -- for handlers ------------------------------------------------------ */

/* The request method as sent ("GET"), and its API_METHOD_* bit. */
const char *api_request_method(const struct api_request *req);
/* The listener the request came in on. */
enum api_listener api_request_listener(const struct api_request *req);
/* The matched route. */
const struct api_route *api_request_route(const struct api_request *req);
/* A decoded path parameter ("app" for {app}), or NULL. */
const char *api_request_param(const struct api_request *req, const char *name);
/* A decoded query parameter, or NULL. */
const char *api_request_query(const struct api_request *req, const char *name);
/* A request header (case-insensitive name), or NULL. Owned by the
 * connection, valid until the handler returns. Never log Authorization. */
const char *api_request_header(const struct api_request *req, const char *name);
/* The first Authorization header, or NULL: api_request_header(req,
 * "Authorization") without a lookup (read with the framing headers). */
const char *api_request_authorization(const struct api_request *req);
/* The body (guarded memory, owned by the framework, wiped after the
 * handler returns; NULL and 0 when empty). Not NUL-terminated. */
const uint8_t *api_request_body(const struct api_request *req, size_t *len);
/* The backend, or NULL when the server is not ready (never NULL in a
 * handler of an API_ROUTE_NEEDS_READY route). */
const struct api_backend *api_request_backend(const struct api_request *req);
/* 1 if the server is ready (a backend is set and it is not stopping), else
 * 0 with *reason (may be NULL) set to why: "starting", "stopping", or the
 * reason given to api_server_set_not_ready. For /readyz. */
int api_request_server_ready(const struct api_request *req,
    const char **reason);
/* 1 when the handler runs off the listeners' event loops (a deferred run,
 * see api_handler_fn) and may wait for other requests' work; 0 on an event
 * loop, where waiting stalls every connection of that thread. */
int api_request_can_wait(const struct api_request *req);
/*
 * The keeper pipe (keeper/keeper.h) of the event loop the handler runs on,
 * or NULL: the request is not on one of our loops (a signing-socket
 * thread, a defer thread), or the keeper runs in this process. A handler
 * that queues a call on it returns P8V_ERR_PENDING: its connection waits,
 * and the call's completion (on the same thread, before the loop runs
 * libmicrohttpd again) sets the answer and calls
 * api_request_finish_pending. The request's body is freed by then.
 */
struct keeper_pipe *api_request_keeper_pipe(struct api_request *req);
/* The end of a P8V_ERR_PENDING handler: r as a handler's return (0 with
 * an answer set, or the error to answer); the answer is sent. */
void api_request_finish_pending(struct api_request *req, int r);
/* The caller as established by the authentication hook, which fills it
 * (mutable for the hook). */
struct api_principal *api_request_principal(struct api_request *req);

/*
 * Parse the body as a JSON object into *out (caller's reference).
 * WARNING: jansson copies strings into ordinary heap memory; never use this
 * for a body that holds key material (a .p8): read api_request_body
 * instead. Requires Content-Type application/json (parameters allowed).
 * Returns 0, P8V_ERR_BAD_REQUEST (no body, not JSON, not an object),
 * P8V_ERR_UNSUPPORTED_MEDIA_TYPE (a body without Content-Type or with
 * another one), P8V_ERR_ALLOC.
 */
int api_request_json(const struct api_request *req, json_t **out);
/*
 * The message for the error err when the hook or handler returns it as a
 * code (the framework then answers it with this text instead of the
 * code's general one). printf-style; never put the request's bytes in it
 * unless they were validated (an app id, a member name).
 */
void api_request_error_detail(struct api_request *req, int err,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/*
 * Answer the error api_request_json returned, with a message saying what
 * was wrong with the body (never its bytes). Returns as api_respond_error.
 */
int api_respond_json_error(struct api_request *req, int err);

/*
 * Set the response: status and body (a JSON object or array; the reference
 * is stolen, also on failure). Once per request.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (NULL body, status outside
 * 100..599), P8V_ERR_INTERNAL (a response was already set).
 */
int api_respond(struct api_request *req, unsigned int status, json_t *body);

/*
 * Set a response of text the handler wrote (GET /metrics: Prometheus
 * text; the token answers): status, the Content-Type to send (CR and LF
 * refused; kept, not copied: a string literal, or one that outlives the
 * request) and len bytes of text, malloc'd and taken by the framework also
 * on failure. The same Cache-Control and
 * nosniff headers as JSON answers. Errors stay JSON: a handler that returns
 * an error after this still answers with the error. Once per request.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (NULL text or content type, status
 * outside 100..599), P8V_ERR_INTERNAL (a response was already set).
 */
int api_respond_text(struct api_request *req, unsigned int status,
    const char *content_type, char *text, size_t len);

/*
 * api_respond_text for an answer that holds a secret (a signed token): the
 * text is wiped when it is freed, after libmicrohttpd sent it (a response
 * with a free callback) or when the response is replaced. text must be
 * NUL-terminated at len and hold no NUL before (JSON text does not); it is
 * taken, wiped and freed, also on failure. Same returns as
 * api_respond_text, and P8V_ERR_INVALID_ARGUMENT for a text that is not
 * NUL-terminated at len. Copies libmicrohttpd or TLS make while sending
 * (a TLS record buffer) are theirs: out of reach.
 */
int api_respond_text_secret(struct api_request *req, unsigned int status,
    const char *content_type, char *text, size_t len);

/* Set an error response for err with a more precise message (detail may be
 * NULL; see api_error_body): the table's status, and its Retry-After header
 * when it has one (api_error_retry_after). Same returns as api_respond. */
int api_respond_error(struct api_request *req, int err, const char *detail);

/* Add a response header (name and value are copied; CR and LF refused).
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_TOO_LARGE (more than
 * API_RESPONSE_HEADERS_MAX), P8V_ERR_ALLOC. */
int api_respond_header(struct api_request *req, const char *name,
    const char *value);

#endif /* P8V_API_HTTP_H */
