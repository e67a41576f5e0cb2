/* connlimit.c: per-listener connection counts, total and per address. */
#include "api/connlimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/err.h"
#include "crypto/secmem.h"

/* Hash buckets for addresses: a power of two, comfortably above the number
 * of distinct clients a listener sees at once. */
#define CONNLIMIT_BUCKETS 1024
/* Bytes of an address key: an IPv6 /64 or an IPv4 address, and a family. */
#define ADDR_KEY_BYTES 9

struct addr_node {
	uint8_t key[ADDR_KEY_BYTES];
	unsigned int count;
	struct addr_node *next;
};

struct connlimit {
	pthread_mutex_t lock;
	unsigned int max_total;
	unsigned int max_per_address;
	unsigned int total;
	/* The slot handed out for connections that have no address key. */
	struct addr_node anonymous;
	/* SipHash key: clients cannot aim many addresses at one bucket. */
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct addr_node *bucket[CONNLIMIT_BUCKETS];
};

int
connlimit_create(unsigned int max_total, unsigned int max_per_address,
    struct connlimit **out)
{
	struct connlimit *cl = NULL;
	int r = P8V_ERR_INTERNAL;

	if (out == NULL || max_total == 0) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*out = NULL;
	if ((cl = calloc(1, sizeof(*cl))) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	if ((r = secmem_random(cl->hash_key, sizeof(cl->hash_key))) != 0)
		goto out;
	if (pthread_mutex_init(&cl->lock, NULL) != 0) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	cl->max_total = max_total;
	cl->max_per_address = max_per_address;
	*out = cl;
	cl = NULL;
	r = 0;
 out:
	free(cl);
	return r;
}

void
connlimit_destroy(struct connlimit *cl)
{
	struct addr_node *n, *next;
	size_t i;

	if (cl == NULL)
		return;
	for (i = 0; i < CONNLIMIT_BUCKETS; i++) {
		for (n = cl->bucket[i]; n != NULL; n = next) {
			next = n->next;
			free(n);
		}
	}
	pthread_mutex_destroy(&cl->lock);
	free(cl);
}

/* The address key of addr; 0 if it has none (not IPv4/IPv6). */
static int
addr_key(const struct sockaddr *addr, uint8_t key[ADDR_KEY_BYTES])
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;

	memset(key, 0, ADDR_KEY_BYTES);
	if (addr == NULL)
		return 0;
	if (addr->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)addr;
		key[0] = 4;
		memcpy(key + 1, &sin->sin_addr, 4);
		return 1;
	}
	if (addr->sa_family == AF_INET6) {
		sin6 = (const struct sockaddr_in6 *)(const void *)addr;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			key[0] = 4;
			memcpy(key + 1, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			key[0] = 6;
			memcpy(key + 1, sin6->sin6_addr.s6_addr, 8); /* /64 */
		}
		return 1;
	}
	return 0;
}

static size_t
bucket_of(const struct connlimit *cl, const uint8_t key[ADDR_KEY_BYTES])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, key, ADDR_KEY_BYTES, cl->hash_key);
	memcpy(&v, h, sizeof(v));
	return (size_t)(v & (CONNLIMIT_BUCKETS - 1));
}

void *
connlimit_acquire(struct connlimit *cl, const struct sockaddr *addr)
{
	uint8_t key[ADDR_KEY_BYTES];
	struct addr_node *n = NULL, **head;
	void *slot = NULL;

	if (cl == NULL)
		return NULL;
	pthread_mutex_lock(&cl->lock);
	if (cl->total >= cl->max_total)
		goto out;
	if (cl->max_per_address == 0 || !addr_key(addr, key)) {
		slot = &cl->anonymous;
		cl->anonymous.count++;
		cl->total++;
		goto out;
	}
	head = &cl->bucket[bucket_of(cl, key)];
	for (n = *head; n != NULL; n = n->next)
		if (memcmp(n->key, key, ADDR_KEY_BYTES) == 0)
			break;
	if (n == NULL) {
		if ((n = calloc(1, sizeof(*n))) == NULL)
			goto out;
		memcpy(n->key, key, ADDR_KEY_BYTES);
		n->next = *head;
		*head = n;
	}
	if (n->count >= cl->max_per_address)
		goto out;
	n->count++;
	cl->total++;
	slot = n;
 out:
	pthread_mutex_unlock(&cl->lock);
	return slot;
}

void
connlimit_release(struct connlimit *cl, void *slot)
{
	struct addr_node *node = slot, **pp;

	if (cl == NULL || node == NULL)
		return;
	pthread_mutex_lock(&cl->lock);
	if (node->count > 0)
		node->count--;
	if (cl->total > 0)
		cl->total--;
	/* Forget an address once its last connection is gone, so that the
	 * table holds only current clients. */
	if (node != &cl->anonymous && node->count == 0) {
		for (pp = &cl->bucket[bucket_of(cl, node->key)]; *pp != NULL;
		    pp = &(*pp)->next) {
			if (*pp == node) {
				*pp = node->next;
				free(node);
				break;
			}
		}
	}
	pthread_mutex_unlock(&cl->lock);
}

unsigned int
connlimit_current(struct connlimit *cl)
{
	unsigned int n;

	pthread_mutex_lock(&cl->lock);
	n = cl->total;
	pthread_mutex_unlock(&cl->lock);
	return n;
}
