/*
 * connlimit.h: connection budgets of one listener, shared by all its
 * threads: a total, and a cap per client address.
 *
 * libmicrohttpd has both limits, but keeps them per daemon; p8vault runs
 * one daemon per thread (api/http.c), so they are counted here instead,
 * across the daemons of a listener. An IPv4-mapped IPv6 address counts as
 * its IPv4 address; an IPv6 address counts by its /64, the block one host
 * or customer usually controls. Peers without an IP address (unix sockets)
 * count only towards the total.
 *
 * Thread-safe.
 */
#ifndef P8V_API_CONNLIMIT_H
#define P8V_API_CONNLIMIT_H

#include <sys/socket.h>

struct connlimit;

/*
 * max_total: connections at once (> 0); max_per_address: per address
 * (0: no per-address cap). Returns 0, P8V_ERR_INVALID_ARGUMENT,
 * P8V_ERR_ALLOC, P8V_ERR_RANDOM (no key for the address hash).
 */
int connlimit_create(unsigned int max_total, unsigned int max_per_address,
    struct connlimit **out);

/* Free. Every acquired slot must have been released. NULL-safe. */
void connlimit_destroy(struct connlimit *cl);

/*
 * Count a new connection from addr (NULL, or a non-IP family: total only).
 * Returns a slot to hand back to connlimit_release when the connection
 * closes, or NULL when a limit is reached (or memory is short): nothing
 * was counted, close the connection.
 */
void *connlimit_acquire(struct connlimit *cl, const struct sockaddr *addr);

/* Release a slot from connlimit_acquire. NULL-safe. */
void connlimit_release(struct connlimit *cl, void *slot);

/* Connections counted now (for tests and stats). */
unsigned int connlimit_current(struct connlimit *cl);

#endif /* P8V_API_CONNLIMIT_H */
