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

/*
 * Initialise libsodium and OpenSSL's secure heap, then check that guarded
 * memory really works (an allocation succeeds, is locked, can be protected
 * and freed). Call once at start-up before any thread is created; calling it
 * again is harmless.
 * Returns 0, or P8V_ERR_SECMEM if guarded memory cannot be had (for example
 * RLIMIT_MEMLOCK too low), or P8V_ERR_CRYPTO if libsodium fails to start.
 */
int secmem_init(void);

/* Guarded allocation of n bytes (n > 0). NULL on failure (also for n == 0,
 * or when secmem_init, called here if it was not yet, fails). Contents are
 * not zeroed. The block ends at a guard page: a write past its end faults.
 * Free with secmem_free. */
void *secmem_alloc(size_t n);

/* Wipe and free a block from secmem_alloc. NULL-safe. */
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
