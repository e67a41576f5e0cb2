/*
 * http.c: libmicrohttpd glue: listeners, limits, the request life cycle and
 * JSON responses.
 *
 * Life cycle of a request, in libmicrohttpd's callbacks:
 *   request_begin      (URI log callback) request line read: allocate the
 *                      request, keep the raw target, count it in flight;
 *   handle_request     first call (headers read): decode, route, check
 *                      readiness, auth, Content-Length; later calls: body
 *                      chunks; last call: run the handler and respond;
 *   request_completed  response sent or connection gone: log, free.
 * and per connection, notify_connection: count it against the listener's
 * limits (api/connlimit.h) or refuse it.
 *
 * Threading. TCP listeners get one daemon (one thread, epoll) per socket,
 * N sockets bound with SO_REUSEPORT by server/listen.c. A libmicrohttpd
 * thread pool on one shared listening socket lets the worker that wakes
 * accept a burst of connections in a row (libmicrohttpd's accept series)
 * and keep them: with keep-alive clients, some workers sat idle. The
 * kernel spreads connections over SO_REUSEPORT sockets by a hash of the
 * addresses: unevenly for few connections, but never all on one. Unix
 * sockets have no SO_REUSEPORT: the signing socket is one fd shared by a
 * pool of N threads using poll, which spread best of the pool's modes.
 * Throughput was the same in every model; only the spread differed
 * (docs/benchmarks.md, "Listener threading"). An acceptor thread handing
 * connections to the least-loaded daemon (MHD_add_connection) would
 * balance both exactly; not needed so far.
 * The price of independent daemons: libmicrohttpd's connection limits are
 * per daemon, so the total and per-address limits are counted here across
 * the daemons of a listener (api/connlimit.c), which also keeps the portal
 * and the signing API on separate budgets.
 *
 * The signing API's TCP daemons run in libmicrohttpd's external epoll
 * mode, each on a loop of ours (struct loop): it batches the keeper calls
 * of a turn's handlers (a /jwt signature) into one round trip to the
 * keeper process. The portal's daemons and the signing socket's pool run
 * libmicrohttpd's own threads, whose handlers call the keeper one call at
 * a time.
 *
 * No handler waits on an event loop. A thread serves every connection it
 * accepted, so a handler sleeping in pthread_cond_wait until another
 * caller's mint is done stalls the cached answers of every other team on
 * that thread. A handler that would wait returns P8V_ERR_WOULD_BLOCK
 * instead; its connection is suspended (MHD_suspend_connection), the
 * request goes to a small pool of defer threads that run the handler
 * again, allowed to wait, and the connection is resumed when its answer
 * is ready (MHD_resume_connection, from the defer thread: libmicrohttpd
 * wakes the event loop through its inter-thread channel). libmicrohttpd
 * then calls handle_request once more, which sends the answer.
 */
#include "api/http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api/connlimit.h"
#include "api/errors.h"
#include "api/metrics.h"
#include "common/err.h"
#include "common/jsonflat.h"
#include "common/log.h"
#include "crypto/secmem.h"
#include "keeper/keeper.h"

/* GnuTLS priorities for HTTPS listeners: TLS 1.2 and 1.3 only, GnuTLS's
 * NORMAL cipher choice within them. */
#define API_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/* Longest message api_request_error_detail keeps (longer ones are cut):
 * a sentence naming an app id (at most 64 characters) or a member. */
#define API_ERROR_DETAIL_MAX 192
/* Longest line libmicrohttpd's own log messages are cut to. */
#define MHD_LOG_LINE_MAX 512
/* A flat JSON answer up to this size is written into a stack buffer by
 * jsonflat_dump: every signing answer fits. */
#define API_JSON_STACK_BYTES 1024

/* The body of a response when even building the error body failed. Every
 * JSON answer ends with a newline (a terminal prompt after curl's output
 * starts on its own line; line-oriented tools see one complete line). */
static const char fallback_body[] =
    "{\"error\":{\"code\":\"internal_error\",\"message\":\"internal error\"}}\n";

/* A connection refused by the limits when no refusal slot was free: its
 * socket context. It is shut at once, without an answer. */
static char conn_refused;
/* Seconds a connection over a limit has to send its request (headers and
 * a body up to the route's cap, which it sends anyway): it gets its 503
 * answer once the request is in, or is shut this long after it was
 * accepted, however it trickles. Short, so that slow senders over the
 * limit hold nothing for long. */
#define API_REFUSED_TIMEOUT_S 2
/* Connections over a limit waiting for their 503, per server, at once:
 * a burst far larger than the per-address limit (a client's 150 uploads
 * at once, 86 over) is answered; past this many, a connection is shut
 * without an answer, as libmicrohttpd's own backstop limit would. */
#define API_REFUSED_MAX 1024
/* How often the refusal reaper looks for connections past their time. */
#define API_REFUSED_SWEEP_US 250000

/* One per listener kind: what its daemons' callbacks need. */
struct listener {
	struct api_server *srv;
	enum api_listener kind;
	struct connlimit *limit;
};

/*
 * An event loop of our own around a TCP signing daemon (libmicrohttpd in
 * external epoll mode). A turn: run libmicrohttpd, whose handlers may
 * queue keeper calls on the loop's pipe (keeper.h) and return
 * P8V_ERR_PENDING; send the calls queued in one batch; wait for their
 * answers, which set the requests' answers; then run libmicrohttpd again,
 * which sends them (finish_request). With nothing in flight the loop
 * waits in libmicrohttpd (MHD_run_wait: one epoll_wait, as its own
 * threads do), or, while some of its requests run on defer threads, in
 * an epoll of ours over libmicrohttpd's epoll fd and an eventfd the defer
 * threads write once they resume a connection (libmicrohttpd 0.9.75 in
 * external mode does not wake MHD_run_wait for a resumption: measured,
 * a deferred answer then waited for LOOP_WAIT_MS). A batch costs
 * the keeper one wake-up each way, where a call per request cost two
 * process switches and four system calls (docs/benchmarks.md, issue 13).
 */
struct loop {
	struct api_server *srv;
	struct MHD_Daemon *d;
	pthread_t thread;
	int running;                    /* thread started */
	int ep;                         /* our epoll fd: libmicrohttpd's and
	                                   wake */
	int wake;                       /* eventfd: a defer thread resumed a
	                                   connection; stop; quiesce */
	unsigned int deferred;          /* atomic: its requests on defer
	                                   threads */
	int resumed;                    /* atomic: a defer thread resumed one
	                                   of its connections */
	struct keeper_pipe *pipe;
	int no_pipe;                    /* the keeper runs in this process */
	int stop;                       /* atomic */
	int quiesce;                    /* atomic: 1 asked, 2 done */
};

/* The loop of the thread running it (NULL on libmicrohttpd's threads and
 * the defer threads). */
static __thread struct loop *this_loop;

/* Requests deferred off the event loops, and the threads that run them. */
struct defer_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct api_request *head, *tail;
	pthread_t threads[API_DEFER_THREADS];
	size_t n_threads;
	int ready;                      /* lock and work initialised */
	int stopping;
};

/* A connection over a limit, until it is answered or shut. */
struct refused_conn {
	int used;
	int shut;                       /* shut by the reaper */
	MHD_socket fd;
	int64_t deadline_us;            /* CLOCK_MONOTONIC */
};

/* The refused connections of the server and the thread that shuts those
 * past their time (libmicrohttpd's timeout is an idle timeout, which a
 * sender of a byte a second never reaches). */
struct refusals {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t reaper;
	int ready;                      /* lock and wake initialised */
	int running;                    /* reaper started */
	int stopping;
	size_t n_used;
	struct refused_conn conn[API_REFUSED_MAX];
};

struct api_server {
	const struct api_route *routes;
	size_t n_routes;
	struct api_options opts;
	struct listener portal;
	struct listener sign;
	struct MHD_Daemon **daemons;
	size_t n_daemons;
	struct loop **loops;            /* the daemons with a loop of ours */
	size_t n_loops;
	pthread_mutex_t quiesce_lock;
	pthread_cond_t quiesced;
	int have_quiesce_lock;
	/* Set once, then read by every thread (release/acquire). */
	struct api_backend backend;
	int has_backend;
	const char *not_ready_reason;
	int stopping;
	unsigned int in_flight;
	/* 1 while a daemon starts: libmicrohttpd's messages then say why a
	 * start fails, so they are warnings, not debug noise. */
	int mhd_starting;
	struct defer_pool defer;
	struct refusals refusals;
};

/* Where a request stands with the defer pool. */
enum defer_state {
	DEFER_NONE = 0,         /* handled on its event loop */
	DEFER_QUEUED,           /* suspended, queued or running on the pool */
	DEFER_DONE,             /* answer set, connection resumed */
};

struct api_request {
	struct listener *lst;
	struct loop *loop;              /* the loop it came in on, or NULL */
	struct MHD_Connection *conn;
	char *target;                   /* raw request target, allocated
	                                   right after the struct */
	const char *method_name;
	unsigned int method;
	const struct api_route *route;
	struct api_path path;
	struct api_params params;
	struct api_query query;
	struct api_principal principal;
	uint8_t *body;                  /* secmem_alloc_short: locked memory */
	size_t body_len;
	size_t body_cap;
	size_t discarded;
	int body_error;                 /* P8V_ERR_TOO_LARGE past the cap,
	                                   P8V_ERR_SECMEM */
	int early_error;                /* decided from the headers */
	/* From one pass over the headers (scan_header); NULL if absent. */
	const char *content_length;     /* the first Content-Length */
	const char *transfer_encoding;  /* the first Transfer-Encoding */
	const char *authorization;      /* the first Authorization */
	unsigned int n_content_length;
	unsigned int n_transfer_encoding;
	unsigned int allowed;           /* for the Allow header of a 405 */
	int headers_done;
	int refused;                    /* over a connection limit: 503 */
	int can_wait;                   /* runs on a defer thread */
	int on_pipe;                    /* its keeper call is in flight */
	int orphaned;                   /* closed while on_pipe: freed by
	                                   api_request_finish_pending */
	int defer_state;                /* enum defer_state, atomic */
	struct api_request *defer_next; /* the defer queue */
	int64_t start_us;
	/* The response. */
	unsigned int status;
	json_t *resp_body;
	char *resp_text;                /* api_respond_text, instead of JSON */
	size_t resp_text_len;
	const char *resp_type;          /* static: api_respond_text */
	int resp_secret;                /* resp_text holds a secret: wiped
	                                   when it is freed */
	int err;                        /* the error behind an error response */
	/* api_request_error_detail: the message for an error a hook or
	 * handler returns as a code (err_detail_for), instead of the code's
	 * general text. */
	int err_detail_for;
	char err_detail[API_ERROR_DETAIL_MAX];
	size_t n_headers;
	char *header_name[API_RESPONSE_HEADERS_MAX];
	char *header_value[API_RESPONSE_HEADERS_MAX];
};

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* 1 if ctx, a connection's socket context, marks it over a limit. */
static int
is_refused(struct api_server *srv, const void *ctx)
{
	uintptr_t p = (uintptr_t)ctx;
	uintptr_t lo = (uintptr_t)&srv->refusals.conn[0];
	uintptr_t hi = (uintptr_t)&srv->refusals.conn[API_REFUSED_MAX];

	return ctx == &conn_refused || (p >= lo && p < hi);
}

static const char *
listener_name(enum api_listener kind)
{
	return kind == API_LISTENER_SIGN ? "sign" : "portal";
}

/* -- responses --------------------------------------------------------- */

static void
clear_response(struct api_request *req)
{
	size_t i;

	json_decref(req->resp_body);
	req->resp_body = NULL;
	if (req->resp_text != NULL && req->resp_secret)
		secmem_wipe(req->resp_text, req->resp_text_len);
	free(req->resp_text);
	req->resp_text = NULL;
	req->resp_secret = 0;
	req->resp_type = NULL;
	req->resp_text_len = 0;
	req->status = 0;
	for (i = 0; i < req->n_headers; i++) {
		free(req->header_name[i]);
		free(req->header_value[i]);
		req->header_name[i] = req->header_value[i] = NULL;
	}
	req->n_headers = 0;
}

static int
header_ok(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") == NULL;
}

int
api_respond(struct api_request *req, unsigned int status, json_t *body)
{
	if (req == NULL || body == NULL || status < 100 || status > 599) {
		json_decref(body);
		return P8V_ERR_INVALID_ARGUMENT;
	}
	if (req->resp_body != NULL || req->resp_text != NULL) {
		json_decref(body);
		return P8V_ERR_INTERNAL;
	}
	req->status = status;
	req->resp_body = body;
	return 0;
}

int
api_respond_text(struct api_request *req, unsigned int status,
    const char *content_type, char *text, size_t len)
{
	int r = P8V_ERR_INTERNAL;

	if (req == NULL || text == NULL || !header_ok(content_type) ||
	    status < 100 || status > 599) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if (req->resp_body != NULL || req->resp_text != NULL)
		goto out;
	req->resp_type = content_type;
	req->status = status;
	req->resp_text = text;
	req->resp_text_len = len;
	text = NULL;
	r = 0;
 out:
	free(text);
	return r;
}

int
api_respond_text_secret(struct api_request *req, unsigned int status,
    const char *content_type, char *text, size_t len)
{
	int r = P8V_ERR_INTERNAL;

	/* The wipe after sending measures the text with strlen (libmicrohttpd
	 * hands the free callback the buffer alone). */
	if (req == NULL || text == NULL || !header_ok(content_type) ||
	    status < 100 || status > 599 || text[len] != '\0' ||
	    memchr(text, '\0', len) != NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if (req->resp_body != NULL || req->resp_text != NULL)
		goto out;
	req->resp_type = content_type;
	req->status = status;
	req->resp_text = text;
	req->resp_text_len = len;
	req->resp_secret = 1;
	text = NULL;
	r = 0;
 out:
	if (text != NULL) {
		secmem_wipe(text, len);
		free(text);
	}
	return r;
}

int
api_respond_error(struct api_request *req, int err, const char *detail)
{
	json_t *body;
	char seconds[16];
	unsigned int retry;
	int r;

	if (req == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((body = api_error_body(err, detail)) == NULL)
		return P8V_ERR_ALLOC;
	req->err = err;
	if ((r = api_respond(req, api_error_status(err), body)) != 0)
		return r;
	/* The error table's Retry-After (api/errors.h); without it the
	 * answer is still right, so a failure to add it is not one. */
	if ((retry = api_error_retry_after(err)) != 0) {
		snprintf(seconds, sizeof(seconds), "%u", retry);
		(void)api_respond_header(req, "Retry-After", seconds);
	}
	return 0;
}

int
api_respond_header(struct api_request *req, const char *name,
    const char *value)
{
	size_t i;

	if (req == NULL || !header_ok(name) || !header_ok(value) ||
	    name[0] == '\0')
		return P8V_ERR_INVALID_ARGUMENT;
	if (req->n_headers == API_RESPONSE_HEADERS_MAX)
		return P8V_ERR_TOO_LARGE;
	i = req->n_headers;
	req->header_name[i] = strdup(name);
	req->header_value[i] = strdup(value);
	if (req->header_name[i] == NULL || req->header_value[i] == NULL) {
		free(req->header_name[i]);
		free(req->header_value[i]);
		req->header_name[i] = req->header_value[i] = NULL;
		return P8V_ERR_ALLOC;
	}
	req->n_headers++;
	return 0;
}

/*
 * Replace whatever response is set with the error response for err. The
 * Allow header of a 405 is added here, so that it survives. Guarded
 * memory that cannot be had (P8V_ERR_SECMEM) is the locked budget spent
 * by the requests in flight (secmem_init proved at start that guarded
 * memory works): answered 503 busy with Retry-After, and logged.
 */
static void
set_error(struct api_request *req, int err, unsigned int allowed)
{
	char allow[API_ALLOW_MAX];

	if (err == P8V_ERR_SECMEM) {
		log_warnf("secmem_busy", "%s %s: the locked-memory budget "
		    "(RLIMIT_MEMLOCK, LimitMEMLOCK=) is spent: answered 503 "
		    "busy", req->method_name != NULL ? req->method_name : "-",
		    req->route != NULL ? req->route->pattern : "-");
		err = P8V_ERR_BUSY;
	}
	clear_response(req);
	if (api_respond_error(req, err, err == req->err_detail_for &&
	    req->err_detail[0] != '\0' ? req->err_detail : NULL) != 0) {
		req->status = 500;
		req->err = P8V_ERR_ALLOC;
	}
	if (err == P8V_ERR_METHOD_NOT_ALLOWED)
		(void)api_respond_header(req, "Allow",
		    api_allow_format(allowed, allow));
	if (err == P8V_ERR_UNAUTHORIZED)
		(void)api_respond_header(req, "WWW-Authenticate", "Bearer");
}

/* libmicrohttpd's free callback of a secret answer's text (NUL-terminated,
 * without a NUL inside: api_respond_text_secret): wiped, then freed, once
 * the last response using it is destroyed, that is after it was sent. */
static void
wipe_free_text(void *cls)
{
	char *text = cls;

	secmem_wipe(text, strlen(text));
	free(text);
}

/* Queue the response set on req (or the fallback 500) on its connection. */
static enum MHD_Result
send_response(struct api_request *req)
{
	struct MHD_Response *resp = NULL;
	enum MHD_Result ret = MHD_NO;
	const char *ctype = "application/json";
	char *text = NULL, small[API_JSON_STACK_BYTES];
	size_t i, n;

	if (req->resp_text != NULL) {
		if (req->resp_secret)
			resp = MHD_create_response_from_buffer_with_free_callback(
			    req->resp_text_len, req->resp_text, wipe_free_text);
		else
			resp = MHD_create_response_from_buffer(
			    req->resp_text_len, req->resp_text,
			    MHD_RESPMEM_MUST_FREE);
		if (resp != NULL) {
			req->resp_text = NULL;      /* MHD frees it */
			req->resp_secret = 0;
			ctype = req->resp_type;
		}
	} else if (req->resp_body != NULL) {
		/* One byte kept for the newline every JSON answer ends with. */
		n = jsonflat_dump(req->resp_body, small, sizeof(small) - 1);
		if (n > 0) {
			small[n++] = '\n';
			resp = MHD_create_response_from_buffer(n, small,
			    MHD_RESPMEM_MUST_COPY);
		} else if ((n = json_dumpb(req->resp_body, NULL, 0,
		    JSON_COMPACT)) > 0 && (text = malloc(n + 1)) != NULL &&
		    json_dumpb(req->resp_body, text, n, JSON_COMPACT) == n) {
			text[n++] = '\n';
			resp = MHD_create_response_from_buffer(n, text,
			    MHD_RESPMEM_MUST_FREE);
			if (resp == NULL)
				free(text);
		} else {
			free(text);
		}
	}
	if (resp == NULL) {
		req->status = 500;
		req->err = P8V_ERR_ALLOC;
		resp = MHD_create_response_from_buffer(
		    sizeof(fallback_body) - 1, (void *)fallback_body,
		    MHD_RESPMEM_PERSISTENT);
		if (resp == NULL)
			goto out;
	} else {
		for (i = 0; i < req->n_headers; i++)
			MHD_add_response_header(resp, req->header_name[i],
			    req->header_value[i]);
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
	    "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (__atomic_load_n(&req->lst->srv->stopping, __ATOMIC_ACQUIRE))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
		    "close");
	/* 500 is a failure of ours; 503 and 507 are states an operator
	 * should see, but not errors of the code. */
	if (req->status >= 500)
		log_fields(req->status == 500 ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN,
		    "request_failed",
		    json_pack("{s:s, s:s, s:i, s:s}", "method",
		    req->method_name != NULL ? req->method_name : "",
		    "route", req->route != NULL ? req->route->pattern : "",
		    "status", (int)req->status, "error",
		    p8v_errname(req->err)),
		    "request failed: %s", p8v_strerror(req->err));
	ret = MHD_queue_response(req->conn, req->status, resp);
 out:
	MHD_destroy_response(resp);
	return ret;
}

/* -- the request life cycle -------------------------------------------- */

static void *
request_begin(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct listener *lst = cls;
	struct api_request *req;
	size_t len;

	/* One allocation for the state and the raw target (which fits in
	 * the connection's memory: the sum cannot overflow). */
	if (uri == NULL)
		uri = "";
	len = strlen(uri);
	if (len > API_HEADER_MEMORY_BYTES ||
	    (req = malloc(sizeof(*req) + len + 1)) == NULL)
		return NULL;
	memset(req, 0, sizeof(*req));
	req->target = (char *)(req + 1);
	memcpy(req->target, uri, len + 1);
	req->lst = lst;
	req->loop = this_loop;
	req->conn = conn;
	req->start_us = now_us();
	__atomic_add_fetch(&lst->srv->in_flight, 1, __ATOMIC_ACQ_REL);
	return req;
}

static void
request_free(struct api_request *req)
{
	if (req == NULL)
		return;
	clear_response(req);
	secmem_free(req->body);
	api_path_finish(&req->path);
	api_query_finish(&req->query);
	free(req);
}

static const char *
termination_name(enum MHD_RequestTerminationCode toe)
{
	switch (toe) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK:
		return "completed";
	case MHD_REQUEST_TERMINATED_WITH_ERROR:
		return "error";
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
		return "timeout";
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
		return "shutdown";
	case MHD_REQUEST_TERMINATED_READ_ERROR:
		return "read_error";
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
		return "client_abort";
	}
	return "unknown";
}

static void
request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct listener *lst = cls;
	struct api_request *req = *req_cls;

	(void)conn;
	if (req == NULL)
		return;
	*req_cls = NULL;
	if (lst->srv->opts.log_requests)
		log_fields(LOG_LEVEL_DEBUG, "request",
		    json_pack("{s:s, s:s?, s:s, s:i, s:I, s:s}",
		    "method", req->method_name != NULL ? req->method_name : "",
		    "route", req->route != NULL ? req->route->pattern : NULL,
		    "listener", listener_name(lst->kind),
		    "status", (int)req->status,
		    "duration_us", (json_int_t)(now_us() - req->start_us),
		    "termination", termination_name(toe)),
		    "%s %s %u", req->method_name != NULL ? req->method_name : "-",
		    req->route != NULL ? req->route->pattern : "-",
		    req->status);
	metrics_observe_request(req->route != NULL ? req->route->pattern : NULL,
	    req->status, (double)(now_us() - req->start_us) / 1e6);
	if (req->on_pipe)
		req->orphaned = 1;      /* the keeper's answer frees it */
	else
		request_free(req);
	__atomic_sub_fetch(&lst->srv->in_flight, 1, __ATOMIC_ACQ_REL);
}

/* Parse a Content-Length value MHD already accepted; UINT64_MAX if odd. */
static uint64_t
content_length(const char *v)
{
	uint64_t n = 0;

	if (v == NULL || *v == '\0')
		return UINT64_MAX;
	for (; *v >= '0' && *v <= '9'; v++) {
		if (n > (UINT64_MAX - 9) / 10)
			return UINT64_MAX;
		n = n * 10 + (uint64_t)(*v - '0');
	}
	return *v == '\0' ? n : UINT64_MAX;
}

/* MHD_KeyValueIterator: count Content-Length and Transfer-Encoding
 * headers (libmicrohttpd keeps each one given) and keep the first of each
 * and of Authorization: one pass instead of a lookup per header. */
static enum MHD_Result
scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct api_request *req = cls;

	(void)kind;
	if (key == NULL)
		return MHD_YES;
	switch (key[0]) {
	case 'C':
	case 'c':
		if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0 &&
		    req->n_content_length++ == 0)
			req->content_length = value;
		break;
	case 'T':
	case 't':
		if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0 &&
		    req->n_transfer_encoding++ == 0)
			req->transfer_encoding = value;
		break;
	case 'A':
	case 'a':
		if (req->authorization == NULL &&
		    strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0)
			req->authorization = value;
		break;
	default:
		break;
	}
	return MHD_YES;
}

/*
 * 0 if the body's length is known without doubt: at most one
 * Content-Length, or one Transfer-Encoding that is exactly "chunked" and
 * no Content-Length; else P8V_ERR_BAD_REQUEST (RFC 9112, 6.1 and 6.3).
 * libmicrohttpd 0.9.75 waits for the body of a coding it does not know
 * ("gzip", "chunked, gzip") until the idle timeout without an answer, and
 * reads one of two lengths where a proxy in front may have read the other
 * (request smuggling). tests/integration/test_hostile.py found both.
 * Scans the headers (scan_header) first.
 */
static int
check_framing(struct api_request *req)
{
	const char *te;

	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, scan_header,
	    req);
	te = req->transfer_encoding;
	if (req->n_content_length > 1 || req->n_transfer_encoding > 1 ||
	    (te != NULL && (req->n_content_length > 0 ||
	    strcasecmp(te, "chunked") != 0)))
		return P8V_ERR_BAD_REQUEST;
	return 0;
}

/*
 * First call: everything that can be decided from the request line and the
 * headers. Returns 0 (go on reading the body), or the error to answer with
 * (*allowed set for a 405).
 */
static int
begin_request(struct api_request *req, const char *method,
    unsigned int *allowed)
{
	struct api_server *srv = req->lst->srv;
	const char *q;
	size_t path_len;
	uint64_t clen;
	int r;

	req->method_name = method;
	req->method = api_method_parse(method);
	/* First: a body of unknown length cannot even be skipped. */
	if ((r = check_framing(req)) != 0)
		return r;
	q = strchr(req->target, '?');
	path_len = q != NULL ? (size_t)(q - req->target) : strlen(req->target);
	if ((r = api_path_decode(req->target, path_len, &req->path)) != 0)
		return r;
	r = api_route_match(srv->routes, srv->n_routes, req->method,
	    &req->path, req->lst->kind, &req->route, &req->params, NULL);
	if (r == P8V_ERR_METHOD_NOT_ALLOWED)    /* again, for the Allow bits */
		r = api_route_match(srv->routes, srv->n_routes, req->method,
		    &req->path, req->lst->kind, &req->route, &req->params,
		    allowed);
	if (r != 0)
		return r;
	if (q != NULL && (r = api_query_parse(q + 1, strlen(q + 1),
	    &req->query)) != 0)
		return r;
	if ((req->route->flags & API_ROUTE_NEEDS_READY) &&
	    api_request_backend(req) == NULL)
		return P8V_ERR_NOT_READY;
	if (req->route->role != API_ROLE_NONE &&
	    (r = srv->opts.authenticate(req, req->route->role)) != 0)
		return r;
	/* A body announced larger than the cap is refused before it is read;
	 * libmicrohttpd then closes the connection instead of reading it. */
	clen = content_length(req->content_length);
	if (clen != UINT64_MAX && clen > req->route->body_max)
		return P8V_ERR_TOO_LARGE;
	if (clen != UINT64_MAX && clen > 0)
		req->body_cap = (size_t)clen;  /* exact: one allocation */
	return 0;
}

/* 1 if the request announces a body (chunked, or Content-Length > 0). */
static int
has_body(const struct api_request *req)
{
	return req->transfer_encoding != NULL ||
	    (req->content_length != NULL &&
	    content_length(req->content_length) != 0);
}

/* Append a chunk of body; past the route's cap, note the error and drop
 * what was kept (wiped). */
static void
append_body(struct api_request *req, const char *data, size_t len)
{
	size_t max = req->route->body_max, want;
	uint8_t *grown;

	if (req->body_error != 0) {
		req->discarded += len;  /* the first error stands */
		return;
	}
	if (len > max - req->body_len) {
		req->body_error = P8V_ERR_TOO_LARGE;
		req->discarded += len;
		secmem_free(req->body);
		req->body = NULL;
		req->body_len = 0;
		return;
	}
	if (req->body == NULL || req->body_len + len > req->body_cap) {
		want = req->body_cap != 0 ? req->body_cap :
		    API_BODY_INITIAL_BYTES;
		while (want < req->body_len + len)
			want = want > max / 2 ? max : want * 2;
		if (want > max)
			want = max;
		/* Up to 4 KiB (every signing request's body, most
		 * uploads') from the locked heap, without an mmap and mlock
		 * per request; larger from guarded pages. */
		if ((grown = secmem_alloc_short(want)) == NULL) {
			/* The locked budget is spent (crypto/secmem.h):
			 * 503 busy, never a body in unlocked memory. */
			req->body_error = P8V_ERR_SECMEM;
			secmem_free(req->body);
			req->body = NULL;
			req->body_len = 0;
			return;
		}
		if (req->body_len > 0)
			memcpy(grown, req->body, req->body_len);
		secmem_free(req->body);
		req->body = grown;
		req->body_cap = want;
	}
	memcpy(req->body + req->body_len, data, len);
	req->body_len += len;
}

/*
 * Run the handler and settle its answer (set, or the error's). 1 if it
 * would wait and may not (P8V_ERR_WOULD_BLOCK on an event loop): nothing
 * is set, the body is kept for the deferred run. 2 if it queued a keeper
 * call on its loop's pipe (P8V_ERR_PENDING): the answer comes with
 * api_request_finish_pending.
 */
static int
run_handler(struct api_request *req)
{
	int r;

	r = req->route->handler(req);
	if (r == P8V_ERR_WOULD_BLOCK && !req->can_wait) {
		clear_response(req);
		return 1;
	}
	/* The body may have held a .p8: wiped as soon as it has been used. */
	secmem_free(req->body);
	req->body = NULL;
	req->body_len = 0;
	if (r == P8V_ERR_PENDING && req->loop != NULL && !req->can_wait) {
		/* Queued on the loop's keeper pipe: answered by
		 * api_request_finish_pending. */
		clear_response(req);
		return 2;
	}
	if (r == 0 && req->resp_body == NULL && req->resp_text == NULL) {
		log_errorf("request_failed", "handler for %s %s set no response",
		    req->method_name, req->route->pattern);
		r = P8V_ERR_INTERNAL;
	}
	if (r != 0)
		set_error(req, r, 0);
	return 0;
}

static void loop_wake(struct loop *l);

/* A defer thread: run queued handlers, allowed to wait, then resume their
 * connections. Drains the queue before it stops. */
static void *
defer_main(void *arg)
{
	struct defer_pool *p = arg;
	struct api_request *req;
	struct loop *l;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->head == NULL && !p->stopping)
			pthread_cond_wait(&p->work, &p->lock);
		if ((req = p->head) == NULL)
			break;  /* stopping, nothing left */
		if ((p->head = req->defer_next) == NULL)
			p->tail = NULL;
		req->defer_next = NULL;
		pthread_mutex_unlock(&p->lock);
		req->can_wait = 1;
		(void)run_handler(req);
		/* Once resumed, the request may be answered and freed by its
		 * event loop at any moment: not touched after this. */
		l = req->loop;
		__atomic_store_n(&req->defer_state, DEFER_DONE,
		    __ATOMIC_RELEASE);
		MHD_resume_connection(req->conn);
		if (l != NULL) {
			/* In this order: a loop that sees the count drop
			 * sees resumed set (loop_main). */
			__atomic_store_n(&l->resumed, 1, __ATOMIC_RELEASE);
			loop_wake(l);
			__atomic_sub_fetch(&l->deferred, 1, __ATOMIC_RELEASE);
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Suspend req's connection and queue it for a defer thread. Called from
 * the access handler, as libmicrohttpd requires of a suspension. */
static void
defer_request(struct api_request *req)
{
	struct defer_pool *p = &req->lst->srv->defer;

	__atomic_store_n(&req->defer_state, DEFER_QUEUED, __ATOMIC_RELEASE);
	MHD_suspend_connection(req->conn);
	if (req->loop != NULL)
		__atomic_add_fetch(&req->loop->deferred, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&p->lock);
	if (p->tail != NULL)
		p->tail->defer_next = req;
	else
		p->head = req;
	p->tail = req;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

/* Last call: the whole body is here. Run the handler, respond. */
static enum MHD_Result
finish_request(struct api_request *req)
{
	if (req->early_error != 0) {
		set_error(req, req->early_error, req->allowed);
		return send_response(req);
	}
	if (req->body_error != 0) {
		set_error(req, req->body_error, 0);
		return send_response(req);
	}
	switch (run_handler(req)) {
	case 0:
		return send_response(req);
	case 1:
		defer_request(req);
		return MHD_YES;
	default:
		/* Not suspended (a suspension costs two epoll_ctl and an
		 * inter-thread wake-up per request): the connection waits in
		 * libmicrohttpd's ready list with its request read and no
		 * answer, and this loop, which waits for the keeper's answers
		 * before it runs libmicrohttpd again (loop_main), has it call
		 * handle_request once more then. */
		__atomic_store_n(&req->defer_state, DEFER_QUEUED,
		    __ATOMIC_RELEASE);
		req->on_pipe = 1;
		return MHD_YES;
	}
}

void
api_request_finish_pending(struct api_request *req, int r)
{
	if (r == 0 && req->resp_body == NULL && req->resp_text == NULL) {
		log_errorf("request_failed", "handler for %s %s set no response",
		    req->method_name, req->route->pattern);
		r = P8V_ERR_INTERNAL;
	}
	req->on_pipe = 0;
	if (req->orphaned) {
		/* Its connection closed meanwhile (request_completed). */
		request_free(req);
		return;
	}
	if (r != 0)
		set_error(req, r, 0);
	__atomic_store_n(&req->defer_state, DEFER_DONE, __ATOMIC_RELEASE);
}

struct keeper_pipe *
api_request_keeper_pipe(struct api_request *req)
{
	struct loop *l = req->loop;
	const struct api_backend *b;

	if (l == NULL || req->can_wait || l != this_loop || l->no_pipe)
		return NULL;
	if (l->pipe == NULL) {
		b = api_request_backend(req);
		if (b == NULL || b->keeper == NULL ||
		    keeper_pipe_open(b->keeper, &l->pipe) != 0) {
			/* A keeper in this process (tests), or no memory: the
			 * loop's handlers call the keeper directly. */
			l->no_pipe = 1;
			l->pipe = NULL;
			return NULL;
		}
	}
	return l->pipe;
}

static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct api_request *req = *req_cls;
	const union MHD_ConnectionInfo *info;
	unsigned int allowed = 0;
	int r;

	(void)cls;
	(void)url;       /* unescaped leniently by MHD: req->target instead */
	(void)version;
	if (req == NULL)
		return MHD_NO;  /* request_begin ran out of memory */
	if (!req->headers_done) {
		req->headers_done = 1;
		info = MHD_get_connection_info(conn,
		    MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		if (info != NULL && is_refused(req->lst->srv,
		    info->socket_context)) {
			/* Over a connection limit: nothing of the request is
			 * looked at; its body is read and dropped, then it is
			 * answered 503 too_many_connections (the client can
			 * tell a limit from a crash, as nginx's limit_conn
			 * lets it) and the connection closed. */
			req->method_name = method;
			req->refused = 1;
			return MHD_YES;
		}
		if ((r = begin_request(req, method, &allowed)) != 0) {
			/* With a body coming, answer now: libmicrohttpd then
			 * closes the connection instead of reading a body
			 * nobody wants. Without one, answer on the last call,
			 * which keeps the connection alive. */
			if (has_body(req)) {
				set_error(req, r, allowed);
				return send_response(req);
			}
			req->early_error = r;
			req->allowed = allowed;
		}
		return MHD_YES;
	}
	if (*upload_data_size != 0 && req->refused) {
		req->discarded += *upload_data_size;
		*upload_data_size = 0;
		/* More than any route takes: not a request to answer. */
		return req->discarded > API_BODY_DISCARD_BYTES ? MHD_NO :
		    MHD_YES;
	}
	if (req->refused) {
		set_error(req, P8V_ERR_TOO_MANY_CONNECTIONS, 0);
		(void)api_respond_header(req, MHD_HTTP_HEADER_CONNECTION,
		    "close");
		return send_response(req);
	}
	if (*upload_data_size != 0) {
		append_body(req, upload_data, *upload_data_size);
		*upload_data_size = 0;
		if (req->discarded > API_BODY_DISCARD_BYTES) {
			log_debugf("request_too_large", "%s %s: body still "
			    "growing %zu bytes past its cap: disconnecting",
			    req->method_name, req->route->pattern,
			    req->discarded);
			return MHD_NO;
		}
		return MHD_YES;
	}
	switch (__atomic_load_n(&req->defer_state, __ATOMIC_ACQUIRE)) {
	case DEFER_DONE:        /* resumed: the defer thread set the answer */
		return send_response(req);
	case DEFER_QUEUED:      /* not resumed yet (cannot happen) */
		return MHD_YES;
	default:
		return finish_request(req);
	}
}

/* -- connections ------------------------------------------------------- */

/* A refusal slot for fd, or NULL if all are taken. */
static struct refused_conn *
refusal_add(struct refusals *rf, MHD_socket fd)
{
	struct refused_conn *c = NULL;
	size_t i;

	pthread_mutex_lock(&rf->lock);
	for (i = 0; i < API_REFUSED_MAX && rf->n_used < API_REFUSED_MAX; i++) {
		if (rf->conn[i].used)
			continue;
		c = &rf->conn[i];
		c->used = 1;
		c->shut = 0;
		c->fd = fd;
		c->deadline_us = now_us() +
		    (int64_t)API_REFUSED_TIMEOUT_S * 1000000;
		rf->n_used++;
		break;
	}
	pthread_mutex_unlock(&rf->lock);
	return c;
}

/* The connection is closed (libmicrohttpd closes its fd after this). */
static void
refusal_remove(struct refusals *rf, struct refused_conn *c)
{
	pthread_mutex_lock(&rf->lock);
	c->used = 0;
	rf->n_used--;
	pthread_mutex_unlock(&rf->lock);
}

/* The reaper: shut refused connections past their deadline, so that
 * libmicrohttpd reads EOF and closes them. Under the lock, so that an fd
 * is never shut after its connection was closed (and the number reused). */
static void *
refusal_reaper(void *arg)
{
	struct refusals *rf = arg;
	struct timespec until;
	int64_t now;
	size_t i;

	pthread_mutex_lock(&rf->lock);
	while (!rf->stopping) {
		now = now_us();
		for (i = 0; i < API_REFUSED_MAX && rf->n_used > 0; i++) {
			struct refused_conn *c = &rf->conn[i];

			if (c->used && !c->shut && now >= c->deadline_us) {
				(void)shutdown(c->fd, SHUT_RDWR);
				c->shut = 1;
			}
		}
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += API_REFUSED_SWEEP_US * 1000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		(void)pthread_cond_timedwait(&rf->wake, &rf->lock, &until);
	}
	pthread_mutex_unlock(&rf->lock);
	return NULL;
}

/* 0, or P8V_ERR_ALLOC. */
static int
refusals_start(struct refusals *rf)
{
	pthread_condattr_t attr;

	if (pthread_mutex_init(&rf->lock, NULL) != 0)
		return P8V_ERR_ALLOC;
	if (pthread_condattr_init(&attr) != 0 ||
	    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&rf->wake, &attr) != 0) {
		pthread_mutex_destroy(&rf->lock);
		return P8V_ERR_ALLOC;
	}
	pthread_condattr_destroy(&attr);
	rf->ready = 1;
	if (pthread_create(&rf->reaper, NULL, refusal_reaper, rf) != 0)
		return P8V_ERR_ALLOC;
	rf->running = 1;
	return 0;
}

/* Stop the reaper (the lock stays for the daemons' last notifications). */
static void
refusals_stop(struct refusals *rf)
{
	if (!rf->running)
		return;
	pthread_mutex_lock(&rf->lock);
	rf->stopping = 1;
	pthread_cond_signal(&rf->wake);
	pthread_mutex_unlock(&rf->lock);
	pthread_join(rf->reaper, NULL);
	rf->running = 0;
}

static void
notify_connection(void *cls, struct MHD_Connection *conn,
    void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
	struct listener *lst = cls;
	const union MHD_ConnectionInfo *info;
	const struct sockaddr *addr = NULL;
	void *slot;

	struct refused_conn *refused;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (*socket_context == &conn_refused)
			;
		else if (is_refused(lst->srv, *socket_context))
			refusal_remove(&lst->srv->refusals, *socket_context);
		else if (*socket_context != NULL)
			connlimit_release(lst->limit, *socket_context);
		*socket_context = NULL;
		return;
	}
	info = MHD_get_connection_info(conn,
	    MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (info != NULL)
		addr = info->client_addr;
	if ((slot = connlimit_acquire(lst->limit, addr)) != NULL) {
		*socket_context = slot;
		return;
	}
	/* Refused: marked so that its request is answered 503 and not
	 * served (handle_request), with API_REFUSED_TIMEOUT_S to send it.
	 * With every refusal slot taken, or no fd to watch: shut at once, so
	 * that libmicrohttpd reads EOF and closes it. */
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	refused = info != NULL ?
	    refusal_add(&lst->srv->refusals, info->connect_fd) : NULL;
	if (refused != NULL) {
		*socket_context = refused;
	} else {
		*socket_context = &conn_refused;
		if (info != NULL)
			(void)shutdown(info->connect_fd, SHUT_RDWR);
	}
	log_debugf("connection_refused", "%s listener: connection limit "
	    "reached", listener_name(lst->kind));
}

__attribute__((format(printf, 2, 0)))
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct api_server *srv = cls;
	char line[MHD_LOG_LINE_MAX];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_emit(__atomic_load_n(&srv->mhd_starting, __ATOMIC_ACQUIRE) ?
	    LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, __FILE__, __LINE__, __func__,
	    "libmicrohttpd", NULL, "%s", line);
}

/* -- our event loops ---------------------------------------------------- */

/* How long an idle loop sleeps in libmicrohttpd before it looks at its
 * stop and quiesce flags again (a stop waits at most this long). */
#define LOOP_WAIT_MS 200

/* epoll data of the loop's fds. */
enum { LOOP_EV_MHD = 1, LOOP_EV_WAKE };

static void
loop_wake(struct loop *l)
{
	uint64_t one = 1;

	(void)!write(l->wake, &one, sizeof(one));
}

/* Wait on libmicrohttpd's epoll fd and the wake eventfd, up to
 * libmicrohttpd's next timeout (none when it has work ready). */
static void
loop_wait_deferred(struct loop *l)
{
	struct epoll_event ev[2];
	MHD_UNSIGNED_LONG_LONG mhd;
	uint64_t drained;
	int i, n, t = LOOP_WAIT_MS;

	if (MHD_get_timeout(l->d, &mhd) == MHD_YES && mhd < (unsigned)t)
		t = (int)mhd;
	if (t == 0)
		return;
	n = epoll_wait(l->ep, ev, 2, t);
	for (i = 0; i < n; i++)
		if (ev[i].data.u32 == LOOP_EV_WAKE)
			(void)!read(l->wake, &drained, sizeof(drained));
}

static void
loop_quiesce(struct loop *l)
{
	struct api_server *srv = l->srv;
	MHD_socket fd;

	fd = MHD_quiesce_daemon(l->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	pthread_mutex_lock(&srv->quiesce_lock);
	__atomic_store_n(&l->quiesce, 2, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&srv->quiesced);
	pthread_mutex_unlock(&srv->quiesce_lock);
}

static void *
loop_main(void *arg)
{
	struct loop *l = arg;
	unsigned int deferred;

	this_loop = l;
	for (;;) {
		if (__atomic_load_n(&l->quiesce, __ATOMIC_ACQUIRE) == 1)
			loop_quiesce(l);
		/* Stopping: the calls in flight are answered first (their
		 * requests are freed by MHD_stop_daemon after this). */
		if (__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE) &&
		    keeper_pipe_pending(l->pipe) == 0)
			break;
		/* Calls in flight: their connections wait in libmicrohttpd's
		 * ready list (finish_request), so the loop waits for the
		 * keeper's answers first (the keeper's thread runs on this
		 * CPU meanwhile, proto.h). The run of libmicrohttpd that
		 * follows sends the answers, reads the next requests and
		 * runs their handlers, whose keeper calls leave together.
		 * A connection a defer thread resumed: run at once. While
		 * requests run on defer threads: wait for their wake-up too.
		 * Otherwise libmicrohttpd waits for its events itself, one
		 * epoll_wait as in its own threads; stop and quiesce are seen
		 * within LOOP_WAIT_MS. The count is read before the flag:
		 * a defer thread sets the flag before it lowers the count. */
		deferred = __atomic_load_n(&l->deferred, __ATOMIC_ACQUIRE);
		if (keeper_pipe_pending(l->pipe) > 0) {
			keeper_pipe_wait(l->pipe);
			(void)MHD_run(l->d);
		} else if (__atomic_exchange_n(&l->resumed, 0,
		    __ATOMIC_ACQ_REL)) {
			(void)MHD_run(l->d);
		} else if (deferred > 0) {
			loop_wait_deferred(l);
			(void)MHD_run(l->d);
		} else {
			(void)MHD_run_wait(l->d, LOOP_WAIT_MS);
		}
		if (l->pipe != NULL) {
			(void)keeper_pipe_flush(l->pipe);
			keeper_pipe_idle(l->pipe);
		}
	}
	keeper_pipe_close(l->pipe);
	l->pipe = NULL;
	/* A quiesce that asks from now on does not wait for this thread. */
	loop_quiesce(l);
	return NULL;
}

static void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	if (l->ep >= 0)
		close(l->ep);
	if (l->wake >= 0)
		close(l->wake);
	free(l);
}

/* Start the thread of a loop around d (external epoll mode). */
static int
loop_start(struct api_server *srv, struct MHD_Daemon *d, struct loop **out)
{
	struct loop *l;

	const union MHD_DaemonInfo *info;
	struct epoll_event ev = { .events = EPOLLIN };
	int r = P8V_ERR_INTERNAL;

	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return P8V_ERR_ALLOC;
	l->srv = srv;
	l->d = d;
	l->ep = l->wake = -1;
	if ((info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD)) ==
	    NULL || (l->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
	    (l->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		log_errorf("listen", "event loop: %s", strerror(errno));
		goto fail;
	}
	ev.data.u32 = LOOP_EV_MHD;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, info->epoll_fd, &ev) != 0)
		goto fail;
	ev.data.u32 = LOOP_EV_WAKE;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake, &ev) != 0)
		goto fail;
	if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
		r = P8V_ERR_ALLOC;
		goto fail;
	}
	l->running = 1;
	*out = l;
	return 0;
 fail:
	loop_free(l);
	return r;
}

/* Stop a loop's thread (its keeper calls answered first). */
static void
loop_stop(struct loop *l)
{
	if (l == NULL || !l->running)
		return;
	__atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
	loop_wake(l);
	pthread_join(l->thread, NULL);
	l->running = 0;
}

/* -- the server -------------------------------------------------------- */

static int
listener_init(struct listener *lst, struct api_server *srv,
    enum api_listener kind)
{
	lst->srv = srv;
	lst->kind = kind;
	return connlimit_create(srv->opts.max_connections,
	    srv->opts.max_connections_per_address, &lst->limit);
}

/* Start the defer threads. 0 or P8V_ERR_ALLOC. */
static int
defer_start(struct defer_pool *p)
{
	if (pthread_mutex_init(&p->lock, NULL) != 0)
		return P8V_ERR_ALLOC;
	if (pthread_cond_init(&p->work, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		return P8V_ERR_ALLOC;
	}
	/* From here on defer_stop cleans up, however few threads started. */
	p->ready = 1;
	p->n_threads = 0;
	while (p->n_threads < API_DEFER_THREADS) {
		if (pthread_create(&p->threads[p->n_threads], NULL, defer_main,
		    p) != 0)
			return P8V_ERR_ALLOC;
		p->n_threads++;
	}
	return 0;
}

/* Run what is queued, stop the defer threads. Before the daemons stop:
 * every suspended connection is resumed by then. */
static void
defer_stop(struct defer_pool *p)
{
	size_t i;

	if (!p->ready)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	p->n_threads = 0;
	p->ready = 0;
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
}

int
api_server_create(const struct api_route *routes, size_t n_routes,
    const struct api_options *opts, struct api_server **out)
{
	struct api_server *srv = NULL;
	size_t i;
	int r = P8V_ERR_INTERNAL;

	if (out == NULL || (routes == NULL && n_routes != 0)) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*out = NULL;
	/* A route with a role and nobody to check it would be served to
	 * anyone: refused here rather than on the first request. */
	for (i = 0; i < n_routes; i++) {
		if (routes[i].role != API_ROLE_NONE &&
		    (opts == NULL || opts->authenticate == NULL)) {
			r = P8V_ERR_INVALID_ARGUMENT;
			goto out;
		}
	}
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	srv->routes = routes;
	srv->n_routes = n_routes;
	if (opts != NULL)
		srv->opts = *opts;
	if (srv->opts.connection_timeout_s == 0)
		srv->opts.connection_timeout_s =
		    API_CONNECTION_TIMEOUT_DEFAULT_S;
	if (srv->opts.max_connections == 0)
		srv->opts.max_connections = API_CONNECTIONS_MAX_DEFAULT;
	if (srv->opts.max_connections_per_address == 0)
		srv->opts.max_connections_per_address =
		    API_CONNECTIONS_PER_ADDRESS_DEFAULT;
	srv->not_ready_reason = "starting";
	if (pthread_mutex_init(&srv->quiesce_lock, NULL) != 0) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	if (pthread_cond_init(&srv->quiesced, NULL) != 0) {
		pthread_mutex_destroy(&srv->quiesce_lock);
		r = P8V_ERR_ALLOC;
		goto out;
	}
	srv->have_quiesce_lock = 1;
	if ((r = listener_init(&srv->portal, srv, API_LISTENER_PORTAL)) != 0 ||
	    (r = listener_init(&srv->sign, srv, API_LISTENER_SIGN)) != 0 ||
	    (r = defer_start(&srv->defer)) != 0 ||
	    (r = refusals_start(&srv->refusals)) != 0)
		goto out;
	*out = srv;
	srv = NULL;
	r = 0;
 out:
	api_server_destroy(srv);
	return r;
}

int
api_server_listen(struct api_server *srv, enum api_listener kind, int fd,
    unsigned int threads, const struct api_tls *tls)
{
	struct MHD_OptionItem extra[5];
	struct MHD_Daemon **grown, *d = NULL;
	struct listener *lst;
	unsigned int flags;
	size_t n = 0;
	int mhd_fd = -1, own_loop, r = P8V_ERR_INTERNAL;

	if (srv == NULL || fd < 0 || threads == 0 || threads > API_THREADS_MAX ||
	    (kind != API_LISTENER_PORTAL && kind != API_LISTENER_SIGN) ||
	    (tls != NULL && (tls->cert_pem == NULL || tls->key_pem == NULL))) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	lst = kind == API_LISTENER_SIGN ? &srv->sign : &srv->portal;
	if (tls != NULL && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		log_errorf("listen", "libmicrohttpd has no TLS support");
		r = P8V_ERR_UNSUPPORTED;
		goto out;
	}
	grown = realloc(srv->daemons, (srv->n_daemons + 1) * sizeof(*grown));
	if (grown == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	srv->daemons = grown;
	/* libmicrohttpd closes the listening socket on some start failures
	 * and not on others: it gets a duplicate, so that fd stays ours to
	 * close either way. */
	if ((mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		log_errorf("listen", "dup: %s", strerror(errno));
		goto out;
	}
	/* A TCP signing daemon (one thread): a loop of ours (struct loop)
	 * around it, libmicrohttpd in external epoll mode. The portal's
	 * daemons (no signatures to batch) and the signing socket's pool:
	 * libmicrohttpd's own threads, whose handlers call the keeper
	 * directly. */
	own_loop = threads == 1 && kind == API_LISTENER_SIGN;
	flags = MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
	    (own_loop ? MHD_USE_EPOLL : MHD_USE_INTERNAL_POLLING_THREAD |
	    (threads > 1 ? MHD_USE_POLL : MHD_USE_EPOLL));
	if (threads > 1)
		extra[n++] = (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE,
		    (intptr_t)threads, NULL };
	if (tls != NULL) {
		flags |= MHD_USE_TLS;
		extra[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT,
		    0, (void *)tls->cert_pem };
		extra[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY,
		    0, (void *)tls->key_pem };
		extra[n++] = (struct MHD_OptionItem){
		    MHD_OPTION_HTTPS_PRIORITIES, 0,
		    (void *)API_TLS_PRIORITIES };
	}
	extra[n++] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
	__atomic_store_n(&srv->mhd_starting, 1, __ATOMIC_RELEASE);
	d = MHD_start_daemon(flags, 0, NULL, NULL, handle_request, lst,
	    /* First, or libmicrohttpd prints some messages itself. */
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
	    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)mhd_fd,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_HEADER_MEMORY_BYTES,
	    MHD_OPTION_CONNECTION_TIMEOUT, srv->opts.connection_timeout_s,
	    /* The real limits are counted in notify_connection, across the
	     * daemons of this listener; this is only a backstop, above them
	     * by the refusals waiting for their 503 (else the connection
	     * past the limit is closed by libmicrohttpd, unanswered). */
	    MHD_OPTION_CONNECTION_LIMIT,
	    srv->opts.max_connections + (unsigned int)API_REFUSED_MAX,
	    MHD_OPTION_NOTIFY_CONNECTION, notify_connection, lst,
	    MHD_OPTION_URI_LOG_CALLBACK, request_begin, lst,
	    MHD_OPTION_NOTIFY_COMPLETED, request_completed, lst,
	    MHD_OPTION_STRICT_FOR_CLIENT, 1,
	    MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
	    MHD_OPTION_ARRAY, extra,
	    MHD_OPTION_END);
	__atomic_store_n(&srv->mhd_starting, 0, __ATOMIC_RELEASE);
	if (d == NULL) {
		log_errorf("listen", "libmicrohttpd failed to start the %s "
		    "listener (see its messages above%s)", listener_name(kind),
		    tls != NULL ? "; is the TLS key the certificate's?" : "");
		goto out;
	}
	if (own_loop) {
		struct loop **lgrown, *l;

		lgrown = realloc(srv->loops, (srv->n_loops + 1) *
		    sizeof(*lgrown));
		if (lgrown == NULL) {
			MHD_stop_daemon(d);
			r = P8V_ERR_ALLOC;
			goto out;
		}
		srv->loops = lgrown;
		if ((r = loop_start(srv, d, &l)) != 0) {
			MHD_stop_daemon(d);
			goto out;
		}
		srv->loops[srv->n_loops++] = l;
	}
	srv->daemons[srv->n_daemons++] = d;
	r = 0;
 out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* The loop around d, or NULL (a daemon with its own threads). */
static struct loop *
loop_of(struct api_server *srv, struct MHD_Daemon *d)
{
	size_t i;

	for (i = 0; i < srv->n_loops; i++)
		if (srv->loops[i]->d == d)
			return srv->loops[i];
	return NULL;
}

void
api_server_set_backend(struct api_server *srv,
    const struct api_backend *backend)
{
	if (srv == NULL || backend == NULL)
		return;
	srv->backend = *backend;
	__atomic_store_n(&srv->has_backend, 1, __ATOMIC_RELEASE);
}

void
api_server_set_not_ready(struct api_server *srv, const char *reason)
{
	if (srv == NULL)
		return;
	__atomic_store_n(&srv->not_ready_reason,
	    reason != NULL ? reason : "unknown", __ATOMIC_RELEASE);
}

void
api_server_quiesce(struct api_server *srv)
{
	MHD_socket fd;
	size_t i;

	if (srv == NULL)
		return;
	__atomic_store_n(&srv->stopping, 1, __ATOMIC_RELEASE);
	/* A loop's daemon is quiesced by its own thread, which may be
	 * inside libmicrohttpd's epoll code (the listening socket's entry
	 * in the epoll set is not guarded). */
	for (i = 0; i < srv->n_loops; i++)
		__atomic_store_n(&srv->loops[i]->quiesce, 1,
		    __ATOMIC_RELEASE);
	for (i = 0; i < srv->n_daemons; i++) {
		if (loop_of(srv, srv->daemons[i]) != NULL)
			continue;
		fd = MHD_quiesce_daemon(srv->daemons[i]);
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
	}
	pthread_mutex_lock(&srv->quiesce_lock);
	for (i = 0; i < srv->n_loops; i++)
		while (srv->loops[i]->running &&
		    __atomic_load_n(&srv->loops[i]->quiesce,
		    __ATOMIC_ACQUIRE) != 2)
			pthread_cond_wait(&srv->quiesced, &srv->quiesce_lock);
	pthread_mutex_unlock(&srv->quiesce_lock);
}

unsigned int
api_server_in_flight(struct api_server *srv)
{
	return srv != NULL ?
	    __atomic_load_n(&srv->in_flight, __ATOMIC_ACQUIRE) : 0;
}

void
api_server_destroy(struct api_server *srv)
{
	size_t i;

	if (srv == NULL)
		return;
	/* Handlers still running on the defer threads resume their
	 * connections on the daemons: they finish first. */
	defer_stop(&srv->defer);
	refusals_stop(&srv->refusals);
	/* The loops' threads first: libmicrohttpd in external mode is
	 * stopped from another thread only once nobody runs it. */
	for (i = 0; i < srv->n_loops; i++)
		loop_stop(srv->loops[i]);
	for (i = 0; i < srv->n_daemons; i++)
		MHD_stop_daemon(srv->daemons[i]);
	for (i = 0; i < srv->n_loops; i++)
		loop_free(srv->loops[i]);
	free(srv->loops);
	free(srv->daemons);
	if (srv->have_quiesce_lock) {
		pthread_cond_destroy(&srv->quiesced);
		pthread_mutex_destroy(&srv->quiesce_lock);
	}
	if (srv->refusals.ready) {
		pthread_cond_destroy(&srv->refusals.wake);
		pthread_mutex_destroy(&srv->refusals.lock);
	}
	connlimit_destroy(srv->portal.limit);
	connlimit_destroy(srv->sign.limit);
	free(srv);
}

/* -- for handlers ------------------------------------------------------ */

const char *
api_request_method(const struct api_request *req)
{
	return req->method_name;
}

enum api_listener
api_request_listener(const struct api_request *req)
{
	return req->lst->kind;
}

const struct api_route *
api_request_route(const struct api_request *req)
{
	return req->route;
}

const char *
api_request_param(const struct api_request *req, const char *name)
{
	return api_params_get(&req->params, name);
}

const char *
api_request_query(const struct api_request *req, const char *name)
{
	return api_query_get(&req->query, name);
}

const char *
api_request_header(const struct api_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *
api_request_authorization(const struct api_request *req)
{
	return req->authorization;
}

const uint8_t *
api_request_body(const struct api_request *req, size_t *len)
{
	if (len != NULL)
		*len = req->body_len;
	return req->body_len > 0 ? req->body : NULL;
}

const struct api_backend *
api_request_backend(const struct api_request *req)
{
	struct api_server *srv = req->lst->srv;

	if (!__atomic_load_n(&srv->has_backend, __ATOMIC_ACQUIRE))
		return NULL;
	return &srv->backend;
}

int
api_request_server_ready(const struct api_request *req, const char **reason)
{
	struct api_server *srv = req->lst->srv;
	const char *why;

	if (__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE))
		why = "stopping";
	else if (__atomic_load_n(&srv->has_backend, __ATOMIC_ACQUIRE))
		return 1;
	else
		why = __atomic_load_n(&srv->not_ready_reason, __ATOMIC_ACQUIRE);
	if (reason != NULL)
		*reason = why;
	return 0;
}

int
api_request_can_wait(const struct api_request *req)
{
	return req->can_wait;
}

struct api_principal *
api_request_principal(struct api_request *req)
{
	return &req->principal;
}

/* 1 if the Content-Type is application/json, parameters allowed. */
static int
is_json_type(const char *ct)
{
	static const char json_type[] = "application/json";
	size_t n = sizeof(json_type) - 1;

	if (ct == NULL || strncasecmp(ct, json_type, n) != 0)
		return 0;
	return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

int
api_request_json(const struct api_request *req, json_t **out)
{
	json_error_t jerr;
	json_t *v = NULL;
	int r = P8V_ERR_INTERNAL;

	if (req == NULL || out == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*out = NULL;
	if (req->body_len == 0) {
		r = P8V_ERR_BAD_REQUEST;
		goto out;
	}
	/* As the upload route: a body of another media type (curl -d sends
	 * application/x-www-form-urlencoded), or of none, is 415. Releases
	 * before this answered 400 bad_request to both, so no client relied
	 * on a body without a Content-Type. */
	if (!is_json_type(api_request_header(req, "Content-Type"))) {
		r = P8V_ERR_UNSUPPORTED_MEDIA_TYPE;
		goto out;
	}
	v = json_loadb((const char *)req->body, req->body_len,
	    JSON_REJECT_DUPLICATES, &jerr);
	if (v == NULL || !json_is_object(v)) {
		r = P8V_ERR_BAD_REQUEST;
		goto out;
	}
	*out = v;
	v = NULL;
	r = 0;
 out:
	json_decref(v);
	return r;
}

int
api_respond_json_error(struct api_request *req, int err)
{
	const char *detail = NULL;

	if (err == P8V_ERR_UNSUPPORTED_MEDIA_TYPE)
		detail = api_request_header(req, "Content-Type") == NULL ?
		    "a body needs Content-Type: application/json" :
		    "the body must be JSON with Content-Type: application/json"
		    " (curl -d sends application/x-www-form-urlencoded: add "
		    "-H 'Content-Type: application/json')";
	else if (err == P8V_ERR_BAD_REQUEST && req->body_len == 0)
		detail = "a JSON object body is required";
	else if (err == P8V_ERR_BAD_REQUEST)
		detail = "the body is not a JSON object (malformed JSON, a "
		    "member given twice, or another JSON value)";
	return api_respond_error(req, err, detail);
}

void
api_request_error_detail(struct api_request *req, int err, const char *fmt,
    ...)
{
	va_list ap;

	if (req == NULL || fmt == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(req->err_detail, sizeof(req->err_detail), fmt, ap);
	va_end(ap);
	req->err_detail_for = err;
}
