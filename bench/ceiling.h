/*
 * ceiling.h: the bare libmicrohttpd server the two ceiling programs share
 * (bench/ceiling_fixed.c, bench/ceiling_sign.c). Not part of p8vault: a
 * yardstick for it, built with the same library and the same threading as
 * p8vaultd's TCP listeners (api/http.c): N sockets bound to one port with
 * SO_REUSEPORT, one libmicrohttpd daemon (one internal thread, epoll) on
 * each. --pool N instead runs libmicrohttpd's own thread pool on one
 * socket, for comparison.
 */
#ifndef P8V_BENCH_CEILING_H
#define P8V_BENCH_CEILING_H

#include <stddef.h>

/* Fill out (at most out_size bytes, NUL-terminated) with the JSON body to
 * answer one request; return its length, or 0 to answer 500. Called from
 * the daemons' threads. */
typedef size_t (*ceiling_body_fn)(char *out, size_t out_size);

/*
 * Parse --port P (default 0: any), --threads N (default: CPUs, at most 8,
 * as p8vaultd) and --pool; serve every request to any URL and method with
 * 200 and body(), with p8vaultd's response headers (Content-Type,
 * Cache-Control, X-Content-Type-Options); print "listening PORT" on stdout
 * and serve until SIGTERM or SIGINT. extra_opt, if not NULL, is offered
 * every argument the server does not know (it returns how many it took,
 * 0 for none). Returns the process's exit status.
 */
int ceiling_main(int argc, char **argv, ceiling_body_fn body,
    int (*extra_opt)(int argc, char **argv, int i));

#endif /* P8V_BENCH_CEILING_H */
