/*
 * secmem.h: guarded memory for secrets, constant-time comparison, wiping,
 * randomness.
 *
 * Secrets (master keys, data keys, private scalars, PEM text of an upload)
 * live in memory from secmem_alloc(): libsodium's sodium_malloc, which puts
 * guard pages around the block, a canary before it, mlock()s it and marks it
 * MADV_DONTDUMP. OpenSSL's secure heap is also initialised so that the
 * private bignums inside EVP_PKEY objects are allocated from locked,
 * non-dumpable memory.
 */
#ifndef P8V_CRYPTO_SECMEM_H
#define P8V_CRYPTO_SECMEM_H

#include <stddef.h>
#include <stdint.h>

/* Size of OpenSSL's secure heap (must be a power of two). */
#define SECMEM_OPENSSL_HEAP_BYTES (256 * 1024)
/* Smallest block OpenSSL's secure heap hands out. */
#define SECMEM_OPENSSL_MIN_BYTES 16
/* Largest block secmem_alloc_short takes from the secure heap: a signing
 * request's body (4 KiB at most) fits; larger ones get guarded pages. */
#define SECMEM_SHORT_MAX_BYTES 4096
/* The part of the secure heap secmem_alloc_short may hold at once: half,
 * so that the private bignums OpenSSL allocates there always find room. */
#define SECMEM_SHORT_BUDGET_BYTES (SECMEM_OPENSSL_HEAP_BYTES / 2)

/*
 * Initialise libsodium and OpenSSL's secure heap, then check that guarded
 * memory really works (an allocation succeeds, is locked, can be protected
 * and freed). Call once at start-up before any thread is created; calling it
 * again is harmless.
 * Reads the locked budget (secmem_alloc) from RLIMIT_MEMLOCK.
 * Returns 0, or P8V_ERR_SECMEM if guarded memory cannot be had (for example
 * RLIMIT_MEMLOCK too low), P8V_ERR_CRYPTO if libsodium fails to start, or
 * P8V_ERR_RANDOM.
 */
int secmem_init(void);

/*
 * A caller reports a NULL from secmem_alloc or secmem_alloc_short as
 * P8V_ERR_SECMEM, whatever the cause (no locked memory left, a size of 0,
 * guarded memory unavailable): one code for a failed guarded allocation,
 * never P8V_ERR_ALLOC (ordinary heap) nor P8V_ERR_INTEGRITY (tampering).
 */

/* Guarded allocation of n bytes (n > 0). NULL on failure (also for n == 0,
 * or when secmem_init, called here if it was not yet, fails), and when the
 * block's locked pages would take the guarded blocks past the locked
 * budget: RLIMIT_MEMLOCK less SECMEM_OPENSSL_HEAP_BYTES, as read by
 * secmem_init (sodium_malloc alone would hand out unlocked memory past the
 * limit, silently). Contents are not zeroed. The block ends at a guard
 * page: a write past its end faults. Free with secmem_free. */
void *secmem_alloc(size_t n);

/* Locked bytes the guarded blocks of secmem_alloc (and the larger ones of
 * secmem_alloc_short) hold now, counted against the locked budget. */
size_t secmem_guarded_bytes(void);

/*
 * Locked allocation of n bytes (n > 0) for a secret that lives for one
 * operation (a data key, an unsealed scalar, a request body): from
 * OpenSSL's secure heap (mlock'ed, MADV_DONTDUMP, guard pages around the
 * heap, wiped on free) while n <= SECMEM_SHORT_MAX_BYTES and the share of
 * the heap set aside for it has room, else from secmem_alloc. Unlike
 * secmem_alloc the block has no guard page and canary of its own; what it
 * saves is sodium_malloc's mmap, mprotect, mlock, munmap per call, which
 * under concurrent requests serialise every thread on the process's
 * memory map (measured in docs/benchmarks.md). NULL on failure (also past
 * the locked budget, as secmem_alloc). Contents are not zeroed. Free with
 * secmem_free.
 */
void *secmem_alloc_short(size_t n);

/* Bytes of OpenSSL's secure heap that secmem_alloc_short blocks hold now
 * (they are locked with the heap, so they do not show in VmLck: tests that
 * prove no block leaks add this). */
size_t secmem_short_bytes(void);

/* Wipe and free a block from secmem_alloc or secmem_alloc_short.
 * NULL-safe. */
void secmem_free(void *p);

/* Wipe n bytes in a way the compiler cannot elide. */
void secmem_wipe(void *p, size_t n);

/* Constant-time comparison of two n-byte buffers: 1 if equal, 0 if not. */
int secmem_equal(const void *a, const void *b, size_t n);

/* Fill buf with n cryptographically secure random bytes (OpenSSL's
 * RAND_bytes: its DRBG, seeded from getrandom(2)). n == 0 does nothing.
 * 0, P8V_ERR_INVALID_ARGUMENT (buf NULL), or P8V_ERR_RANDOM (the generator
 * failed; whatever was written to buf is wiped). */
int secmem_random(void *buf, size_t n);

#endif /* P8V_CRYPTO_SECMEM_H */
