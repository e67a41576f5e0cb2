/*
 * secmem.c: guarded memory (libsodium), OpenSSL's secure heap, wiping,
 * constant-time comparison and randomness.
 *
 * Randomness comes from OpenSSL's RAND_bytes (its CTR-DRBG, seeded and
 * reseeded from the kernel's getrandom(2), reseeded after fork): it is the
 * generator OpenSSL already uses for EC keys and ECDSA nonces, and unlike
 * libsodium's randombytes_buf it reports failure instead of aborting the
 * process, so P8V_ERR_RANDOM reaches the caller.
 */
#include "crypto/secmem.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <sodium.h>

#include "common/err.h"
#include "common/log.h"

/* Size of the block secmem_init allocates to prove guarded memory works:
 * small, it only has to span the canary and one locked page. */
#define SECMEM_PROBE_BYTES 64

/* Largest request passed to RAND_bytes at once (it takes an int). */
#define SECMEM_RANDOM_CHUNK ((size_t)INT_MAX)

/* Bytes before each guarded block's data: the locked size it is counted
 * at, so that secmem_free can give it back, and that size masked with a
 * random word, checked by secmem_free as libsodium checks its canary
 * just before (a write just before the block aborts there). 16 keeps the
 * data's alignment what sodium_malloc's would be. */
#define SECMEM_GUARDED_HEADER 16
/* libsodium's canary before a guarded block (crypto_... CANARY_SIZE). */
#define SECMEM_SODIUM_CANARY 16

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
/*
 * The locked budget. sodium_malloc locks each block's pages and ignores a
 * failed mlock: past RLIMIT_MEMLOCK, "guarded" blocks would quietly be
 * swappable. So the locked pages of guarded blocks are counted here, and
 * a block that would take them past what RLIMIT_MEMLOCK leaves after
 * OpenSSL's secure heap is refused (NULL) instead. Set by secmem_init;
 * SIZE_MAX when the limit is infinite.
 */
static size_t guarded_budget = SIZE_MAX;
static size_t guarded_locked;  /* atomic */
static size_t header_mask;     /* random, set once by secmem_init */
static size_t page_bytes = 4096;
/* Set (release) once secmem_init has succeeded; read (acquire) lock-free. */
static int initialised;

/*
 * Allocate a guarded block, lock it, protect it no-access and back, write and
 * read it, free it. sodium_malloc ignores an mlock failure, so the lock is
 * asked for again here to learn whether it holds. (Under ASan mlock is
 * intercepted and does nothing, so this check is blind there; OpenSSL's heap
 * locks through the mlock2 syscall and is still checked.)
 */
static int
probe_guarded_memory(void)
{
	volatile uint8_t *v;
	uint8_t *p = NULL;
	int r = P8V_ERR_SECMEM;

	if ((p = sodium_malloc(SECMEM_PROBE_BYTES)) == NULL) {
		log_errorf("secmem_init", "sodium_malloc failed: %s",
		    strerror(errno));
		goto out;
	}
	if (sodium_mlock(p, SECMEM_PROBE_BYTES) != 0) {
		log_errorf("secmem_init", "mlock of guarded memory failed "
		    "(raise RLIMIT_MEMLOCK / LimitMEMLOCK=): %s", strerror(errno));
		goto out;
	}
	if (sodium_mprotect_noaccess(p) != 0 ||
	    sodium_mprotect_readwrite(p) != 0) {
		log_errorf("secmem_init", "mprotect of guarded memory failed: %s",
		    strerror(errno));
		goto out;
	}
	v = p;
	v[0] = 0xa5;
	v[SECMEM_PROBE_BYTES - 1] = 0x5a;
	if (v[0] != 0xa5 || v[SECMEM_PROBE_BYTES - 1] != 0x5a)
		goto out;
	r = 0;
 out:
	sodium_free(p);
	return r;
}

/*
 * OpenSSL's secure heap: 1 from CRYPTO_secure_malloc_init means locked and
 * excluded from core dumps; 2 means it exists but mlock or MADV_DONTDUMP
 * failed, which breaks the promise, so the heap is torn down again (and a
 * later secmem_init fails the same way instead of finding it initialised).
 */
static int
init_openssl_heap(void)
{
	int rc;

	if (CRYPTO_secure_malloc_initialized())
		return 0;
	rc = CRYPTO_secure_malloc_init(SECMEM_OPENSSL_HEAP_BYTES,
	    SECMEM_OPENSSL_MIN_BYTES);
	if (rc == 1)
		return 0;
	if (rc == 2) {
		CRYPTO_secure_malloc_done();
		log_errorf("secmem_init", "OpenSSL secure heap could not be "
		    "locked (raise RLIMIT_MEMLOCK / LimitMEMLOCK=)");
	} else {
		log_errorf("secmem_init", "OpenSSL secure heap unavailable");
	}
	ERR_clear_error();
	return P8V_ERR_SECMEM;
}

/* The locked budget from RLIMIT_MEMLOCK (the soft limit mlock obeys for
 * a process without CAP_IPC_LOCK; counted the same with it, so that the
 * daemon's limit is the operator's setting, not its privileges). */
static void
set_budget(void)
{
	struct rlimit rl;
	long pg = sysconf(_SC_PAGESIZE);

	if (pg > 0)
		page_bytes = (size_t)pg;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 ||
	    rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > SIZE_MAX) {
		guarded_budget = SIZE_MAX;
		return;
	}
	guarded_budget = rl.rlim_cur > SECMEM_OPENSSL_HEAP_BYTES ?
	    (size_t)rl.rlim_cur - SECMEM_OPENSSL_HEAP_BYTES : 0;
}

int
secmem_init(void)
{
	int r = P8V_ERR_INTERNAL;

	pthread_mutex_lock(&init_lock);
	if (__atomic_load_n(&initialised, __ATOMIC_ACQUIRE)) {
		r = 0;
		goto out;
	}
	if (sodium_init() < 0) {
		log_errorf("secmem_init", "libsodium failed to initialise");
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	if ((r = init_openssl_heap()) != 0)
		goto out;
	if ((r = probe_guarded_memory()) != 0)
		goto out;
	set_budget();
	if (RAND_bytes((unsigned char *)&header_mask, sizeof(header_mask)) != 1) {
		ERR_clear_error();
		r = P8V_ERR_RANDOM;
		goto out;
	}
	__atomic_store_n(&initialised, 1, __ATOMIC_RELEASE);
	r = 0;
 out:
	pthread_mutex_unlock(&init_lock);
	return r;
}

/* A guarded block of n bytes within the locked budget, or NULL. */
static void *
guarded_alloc(size_t n)
{
	size_t locked, total;
	uint8_t *p;

	if (n > SIZE_MAX - SECMEM_GUARDED_HEADER - SECMEM_SODIUM_CANARY -
	    page_bytes)
		return NULL;
	/* The pages sodium_malloc locks: canary, header and data, rounded
	 * up to whole pages. */
	total = n + SECMEM_GUARDED_HEADER + SECMEM_SODIUM_CANARY;
	locked = (total + page_bytes - 1) / page_bytes * page_bytes;
	if (__atomic_add_fetch(&guarded_locked, locked, __ATOMIC_RELAXED) >
	    guarded_budget) {
		__atomic_sub_fetch(&guarded_locked, locked, __ATOMIC_RELAXED);
		errno = ENOMEM;
		return NULL;
	}
	if ((p = sodium_malloc(n + SECMEM_GUARDED_HEADER)) == NULL) {
		__atomic_sub_fetch(&guarded_locked, locked, __ATOMIC_RELAXED);
		return NULL;
	}
	memcpy(p, &locked, sizeof(locked));
	total = locked ^ header_mask;
	memcpy(p + sizeof(locked), &total, sizeof(total));
	return p + SECMEM_GUARDED_HEADER;
}

void *
secmem_alloc(size_t n)
{
	if (n == 0)
		return NULL;
	/* sodium_malloc needs sodium_init (page size, canary); a caller that
	 * forgot secmem_init gets it here rather than undefined behaviour. */
	if (!__atomic_load_n(&initialised, __ATOMIC_ACQUIRE) &&
	    secmem_init() != 0)
		return NULL;
	return guarded_alloc(n);
}

size_t
secmem_guarded_bytes(void)
{
	return __atomic_load_n(&guarded_locked, __ATOMIC_RELAXED);
}

/* Bytes of the secure heap secmem_alloc_short holds (atomic). */
static size_t short_used;

/* What the secure heap's buddy allocator hands out for n bytes: the next
 * power of two, at least SECMEM_OPENSSL_MIN_BYTES. */
static size_t
heap_block(size_t n)
{
	size_t b = SECMEM_OPENSSL_MIN_BYTES;

	while (b < n)
		b <<= 1;
	return b;
}

void *
secmem_alloc_short(size_t n)
{
	size_t want;
	void *p;

	if (n == 0)
		return NULL;
	if (!__atomic_load_n(&initialised, __ATOMIC_ACQUIRE) &&
	    secmem_init() != 0)
		return NULL;
	if (n > SECMEM_SHORT_MAX_BYTES)
		return guarded_alloc(n);
	want = heap_block(n);
	if (__atomic_add_fetch(&short_used, want, __ATOMIC_RELAXED) >
	    SECMEM_SHORT_BUDGET_BYTES) {
		__atomic_sub_fetch(&short_used, want, __ATOMIC_RELAXED);
		return guarded_alloc(n);
	}
	/* secmem_init made sure the heap exists and is locked: this never
	 * falls back to OpenSSL's ordinary malloc. */
	if ((p = OPENSSL_secure_malloc(n)) == NULL) {
		__atomic_sub_fetch(&short_used, want, __ATOMIC_RELAXED);
		ERR_clear_error();
		return guarded_alloc(n);
	}
	return p;
}

size_t
secmem_short_bytes(void)
{
	return __atomic_load_n(&short_used, __ATOMIC_RELAXED);
}

void
secmem_free(void *p)
{
	size_t n, check;

	if (p == NULL)
		return;
	if (CRYPTO_secure_allocated(p)) {
		n = CRYPTO_secure_actual_size(p);
		/* Wipes the whole block, then returns it to the heap. */
		OPENSSL_secure_clear_free(p, n);
		__atomic_sub_fetch(&short_used, n, __ATOMIC_RELAXED);
		return;
	}
	/* sodium_free checks the canary, wipes the whole block (the header
	 * too) and unlocks it. */
	memcpy(&n, (uint8_t *)p - SECMEM_GUARDED_HEADER, sizeof(n));
	memcpy(&check, (uint8_t *)p - SECMEM_GUARDED_HEADER + sizeof(n),
	    sizeof(check));
	if ((n ^ header_mask) != check) {
		/* Written before the block: as libsodium does on a damaged
		 * canary, stop rather than go on with corrupted memory. */
		log_errorf("secmem_free", "guarded block header damaged");
		abort();
	}
	sodium_free((uint8_t *)p - SECMEM_GUARDED_HEADER);
	__atomic_sub_fetch(&guarded_locked, n, __ATOMIC_RELAXED);
}

void
secmem_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		sodium_memzero(p, n);
}

int
secmem_equal(const void *a, const void *b, size_t n)
{
	if (n == 0)
		return 1;
	/* OpenSSL's constant-time compare, in assembly: 11 ns for 32 bytes
	 * where sodium_memcmp takes 33 (bearer secrets and tags are compared
	 * on every request). */
	return CRYPTO_memcmp(a, b, n) == 0;
}

int
secmem_random(void *buf, size_t n)
{
	uint8_t *p = buf;
	size_t chunk;

	if (n == 0)
		return 0;
	if (buf == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	while (n > 0) {
		chunk = n < SECMEM_RANDOM_CHUNK ? n : SECMEM_RANDOM_CHUNK;
		if (RAND_bytes(p, (int)chunk) != 1) {
			ERR_clear_error();
			secmem_wipe(buf, (size_t)(p - (uint8_t *)buf));
			return P8V_ERR_RANDOM;
		}
		p += chunk;
		n -= chunk;
	}
	return 0;
}
