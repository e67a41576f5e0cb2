/*
 * aead.c: AES-256-GCM through OpenSSL's EVP interface.
 *
 * The cipher is fetched from the default provider once per process
 * (pthread_once); each call gets its own EVP_CIPHER_CTX, which
 * EVP_CIPHER_CTX_free cleanses (key schedule and GHASH key included).
 */
#include "crypto/aead.h"

#include <limits.h>
#include <pthread.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/err.h"
#include "crypto/secmem.h"

/* EVP_*Update take an int length; p8vault's messages are far smaller (an
 * envelope payload is at most ENVELOPE_MAX_PAYLOAD). */
#define AEAD_MAX_INPUT_BYTES ((size_t)INT_MAX)

static pthread_once_t cipher_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *cipher;

static void
fetch_cipher(void)
{
	cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *
gcm(void)
{
	if (pthread_once(&cipher_once, fetch_cipher) != 0)
		return NULL;
	return cipher;
}

/* The size and pointer checks shared by seal and open; 0 if the call may
 * proceed. Sizes are checked first: an unsupported size is refused before
 * anything else is looked at. */
static int
check_args(const uint8_t *key, size_t key_len, const uint8_t *nonce,
    size_t nonce_len, const uint8_t *aad, size_t aad_len, const uint8_t *in,
    const uint8_t *out, size_t len, const uint8_t *tag, size_t tag_len)
{
	if (key_len != AEAD_KEY_BYTES || nonce_len != AEAD_NONCE_BYTES ||
	    tag_len != AEAD_TAG_BYTES)
		return P8V_ERR_UNSUPPORTED;
	if (len > AEAD_MAX_INPUT_BYTES || aad_len > AEAD_MAX_INPUT_BYTES)
		return P8V_ERR_TOO_LARGE;
	if (key == NULL || nonce == NULL || tag == NULL ||
	    (aad == NULL && aad_len > 0) ||
	    (len > 0 && (in == NULL || out == NULL)))
		return P8V_ERR_INVALID_ARGUMENT;
	return 0;
}

int
aead_seal(const uint8_t *key, size_t key_len,
    const uint8_t *nonce, size_t nonce_len,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *pt, size_t pt_len,
    uint8_t *ct, uint8_t *tag, size_t tag_len)
{
	const EVP_CIPHER *c;
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t scratch[16];
	int r = P8V_ERR_INTERNAL, n;

	if ((r = check_args(key, key_len, nonce, nonce_len, aad, aad_len, pt,
	    ct, pt_len, tag, tag_len)) != 0)
		return r;
	r = P8V_ERR_CRYPTO;
	if ((c = gcm()) == NULL || (ctx = EVP_CIPHER_CTX_new()) == NULL)
		goto out;
	/* GCM's default IV length is 12 bytes, so no IVLEN parameter. */
	if (EVP_EncryptInit_ex2(ctx, c, key, nonce, NULL) != 1)
		goto out;
	if (aad_len > 0 &&
	    EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
		goto out;
	if (pt_len > 0 &&
	    (EVP_EncryptUpdate(ctx, ct, &n, pt, (int)pt_len) != 1 ||
	    (size_t)n != pt_len))
		goto out;
	/* GCM writes nothing at final; scratch only gives it somewhere to. */
	if (EVP_EncryptFinal_ex(ctx, scratch, &n) != 1 || n != 0)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_BYTES,
	    tag) != 1)
		goto out;
	r = 0;
 out:
	if (r != 0) {
		ERR_clear_error();
		/* Never hand back a ciphertext without its tag, or half of one. */
		secmem_wipe(ct, pt_len);
		secmem_wipe(tag, AEAD_TAG_BYTES);
	}
	EVP_CIPHER_CTX_free(ctx);
	return r;
}

int
aead_open(const uint8_t *key, size_t key_len,
    const uint8_t *nonce, size_t nonce_len,
    const uint8_t *aad, size_t aad_len,
    const uint8_t *ct, size_t ct_len,
    const uint8_t *tag, size_t tag_len,
    uint8_t *pt)
{
	const EVP_CIPHER *c;
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t scratch[16];
	int r = P8V_ERR_INTERNAL, n;

	if ((r = check_args(key, key_len, nonce, nonce_len, aad, aad_len, ct,
	    pt, ct_len, tag, tag_len)) != 0)
		return r;
	r = P8V_ERR_CRYPTO;
	if ((c = gcm()) == NULL || (ctx = EVP_CIPHER_CTX_new()) == NULL)
		goto out;
	if (EVP_DecryptInit_ex2(ctx, c, key, nonce, NULL) != 1)
		goto out;
	/* OpenSSL takes the expected tag through a non-const pointer but only
	 * copies it. */
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_BYTES,
	    (void *)tag) != 1)
		goto out;
	if (aad_len > 0 &&
	    EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)
		goto out;
	if (ct_len > 0 &&
	    (EVP_DecryptUpdate(ctx, pt, &n, ct, (int)ct_len) != 1 ||
	    (size_t)n != ct_len))
		goto out;
	/* Final compares the tag in constant time (CRYPTO_memcmp). */
	if (EVP_DecryptFinal_ex(ctx, scratch, &n) != 1) {
		r = P8V_ERR_INTEGRITY;
		goto out;
	}
	r = 0;
 out:
	if (r != 0) {
		ERR_clear_error();
		/* Unauthenticated plaintext must not survive a failed open. */
		secmem_wipe(pt, ct_len);
	}
	EVP_CIPHER_CTX_free(ctx);
	return r;
}

int
aead_seal_random(const uint8_t key[AEAD_KEY_BYTES],
    const uint8_t *aad, size_t aad_len,
    const uint8_t *pt, size_t pt_len,
    uint8_t nonce_out[AEAD_NONCE_BYTES], uint8_t *ct,
    uint8_t tag_out[AEAD_TAG_BYTES])
{
	int r;

	if (nonce_out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = secmem_random(nonce_out, AEAD_NONCE_BYTES)) != 0)
		return r;
	return aead_seal(key, AEAD_KEY_BYTES, nonce_out, AEAD_NONCE_BYTES,
	    aad, aad_len, pt, pt_len, ct, tag_out, AEAD_TAG_BYTES);
}
