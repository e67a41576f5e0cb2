/* ceiling.c: the bare server of the ceiling programs; see ceiling.h. */
#include "bench/ceiling.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api/http.h"           /* API_HEADER_MEMORY_BYTES */

/* As p8vaultd: threads per listener default to the CPUs, at most 8. */
#define CEILING_THREADS_MAX 64
#define CEILING_THREADS_DEFAULT_MAX 8
/* A response body: a signed token and a few fields fit many times. */
#define CEILING_BODY_MAX 2048
/* A request's body is read and dropped, as a handler that ignores it. */
#define CEILING_LISTEN_BACKLOG 1024

static ceiling_body_fn body_fn;
/* Any non-NULL request context: "headers seen". */
static char seen;

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char buf[CEILING_BODY_MAX];
	size_t n;

	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload_data;
	/* As p8vaultd (api/http.c): the first call only sees the headers,
	 * body chunks are consumed, the answer is queued on the last call. */
	if (*req_cls == NULL) {
		*req_cls = &seen;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	/* The body is made on the stack and copied by libmicrohttpd into
	 * an allocation of its exact size, as p8vaultd allocates its
	 * answers (a 2 KiB malloc per request, as this did at first, is a
	 * large chunk to glibc and runs malloc_consolidate each time). */
	if ((n = body_fn(buf, sizeof(buf))) == 0) {
		resp = MHD_create_response_from_buffer(0, (void *)"",
		    MHD_RESPMEM_PERSISTENT);
		ret = MHD_queue_response(conn, 500, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	resp = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	    "application/json");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
	    "no-store");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static int
bind_one(uint16_t port, uint16_t *bound)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    listen(fd, CEILING_LISTEN_BACKLOG) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
		perror("ceiling: bind 127.0.0.1");
		close(fd);
		return -1;
	}
	*bound = ntohs(sin.sin_port);
	return fd;
}

static struct MHD_Daemon *
start(int fd, unsigned int pool)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
	    MHD_USE_ERROR_LOG;

	/* p8vaultd's connection memory (libmicrohttpd zeroes it after every
	 * request, and a smaller one stays in the caches): the ceiling is
	 * p8vaultd's HTTP layer without its work, not libmicrohttpd's
	 * defaults (32 KiB, measured 10-20% slower with 32 connections). */
	if (pool > 1)
		return MHD_start_daemon(flags | MHD_USE_POLL, 0, NULL, NULL,
		    handle, NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		    MHD_OPTION_THREAD_POOL_SIZE, pool,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		    (size_t)API_HEADER_MEMORY_BYTES,
		    MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
	return MHD_start_daemon(flags | MHD_USE_EPOLL, 0, NULL, NULL, handle,
	    NULL, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)API_HEADER_MEMORY_BYTES,
	    MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
}

int
ceiling_main(int argc, char **argv, ceiling_body_fn body,
    int (*extra_opt)(int, char **, int))
{
	struct MHD_Daemon *d[CEILING_THREADS_MAX];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned int threads, n = 0, i;
	uint16_t port = 0, bound = 0;
	sigset_t set;
	int fd, sig, pool = 0, a, took;

	threads = cpus < 1 ? 1 : cpus > CEILING_THREADS_DEFAULT_MAX ?
	    CEILING_THREADS_DEFAULT_MAX : (unsigned int)cpus;
	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--port") == 0 && a + 1 < argc)
			port = (uint16_t)atoi(argv[++a]);
		else if (strcmp(argv[a], "--threads") == 0 && a + 1 < argc)
			threads = (unsigned int)atoi(argv[++a]);
		else if (strcmp(argv[a], "--pool") == 0)
			pool = 1;
		else if (extra_opt != NULL &&
		    (took = extra_opt(argc, argv, a)) > 0)
			a += took - 1;
		else {
			fprintf(stderr, "usage: %s [--port P] [--threads N] "
			    "[--pool] ...\n", argv[0]);
			return 2;
		}
	}
	if (threads < 1 || threads > CEILING_THREADS_MAX) {
		fprintf(stderr, "ceiling: --threads 1..%d\n",
		    CEILING_THREADS_MAX);
		return 2;
	}
	body_fn = body;
	/* Taken by sigwait below; the daemons' threads inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < (pool ? 1u : threads); i++) {
		if ((fd = bind_one(i == 0 ? port : bound, &bound)) < 0)
			return 1;
		if ((d[n] = start(fd, pool ? threads : 1)) == NULL) {
			fprintf(stderr, "ceiling: MHD_start_daemon failed\n");
			return 1;
		}
		n++;
	}
	printf("listening %u\n", (unsigned int)bound);
	fflush(stdout);
	do {
		if (sigwait(&set, &sig) != 0)
			break;
	} while (sig != SIGTERM && sig != SIGINT);
	for (i = 0; i < n; i++)
		MHD_stop_daemon(d[i]);
	return 0;
}
