/*
 * p8_internal.h: crypto-internal access to a parsed .p8 key.
 *
 * Only for code inside crypto/ (the ES256 signer in crypto/jwt.c). Nothing
 * outside crypto/ may include this header: the rest of the service handles
 * keys through struct p8_key and the functions in crypto/p8.h only.
 */
#ifndef P8V_CRYPTO_P8_INTERNAL_H
#define P8V_CRYPTO_P8_INTERNAL_H

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "crypto/p8.h"

/*
 * The key as an OpenSSL EVP_PKEY (EC, group prime256v1, private scalar in
 * OpenSSL's secure heap, public point set).
 * key: a key from p8_parse or p8_key_from_scalar; must not be NULL.
 * Returns a pointer owned by the key, valid until p8_key_destroy(key); the
 * caller must not free it, must not modify it, and must not keep it past
 * the key's lifetime (use EVP_PKEY_up_ref if it truly must). Never NULL for
 * a valid key.
 */
EVP_PKEY *p8_key_evp(const struct p8_key *key);

/*
 * The P-256 group, built once per process (read-only: share it, never free
 * it); NULL if OpenSSL could not build it.
 */
const EC_GROUP *p8_group(void);

#endif /* P8V_CRYPTO_P8_INTERNAL_H */
