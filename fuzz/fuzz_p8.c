/*
 * fuzz_p8.c: the .p8 parser (crypto/p8.h, p8_parse): the bytes a customer
 * uploads, whole.
 *
 * Properties beyond "no memory error, no leak":
 *   - the result is 0 or one of the codes p8.h lists for input
 *     (never P8V_ERR_INVALID_ARGUMENT for valid arguments); *out is set
 *     exactly on success;
 *   - an accepted key is consistent: its public point passes
 *     p8_public_check, has a fingerprint, and the key rebuilt from its
 *     exported scalar and point (p8_key_from_scalar, which the vault uses
 *     when it unseals) has the same point.
 *
 * Seeds: fuzz/corpus/fuzz_p8/ holds no private key (the tree must not);
 * fuzz/gen_seeds.sh adds valid and invalid keys made by tests/p8_corpus.py
 * with the openssl command at run time.
 */
#include <string.h>

#include "common/err.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "fuzz/fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct p8_key *key = (struct p8_key *)1, *again = NULL;
	uint8_t scalar[P8_SCALAR_BYTES], pub[P8_PUBLIC_BYTES];
	uint8_t pub2[P8_PUBLIC_BYTES];
	char fpr[P8_FINGERPRINT_HEX + 1];
	int r;

	r = p8_parse(data, size, &key);
	if (r != 0) {
		FUZZ_CHECK(key == NULL);
		FUZZ_CHECK(FUZZ_ERR_IN(r, P8V_ERR_P8_TOO_LARGE,
		    P8V_ERR_P8_NOT_PEM, P8V_ERR_P8_BAD_BASE64,
		    P8V_ERR_P8_CERTIFICATE, P8V_ERR_P8_PUBLIC_KEY,
		    P8V_ERR_P8_ENCRYPTED, P8V_ERR_P8_NOT_PKCS8,
		    P8V_ERR_P8_WRONG_KEY_TYPE, P8V_ERR_P8_WRONG_CURVE,
		    P8V_ERR_P8_EXPLICIT_CURVE, P8V_ERR_P8_BAD_SCALAR,
		    P8V_ERR_P8_PUBKEY_MISMATCH, P8V_ERR_P8_TRAILING_DATA,
		    P8V_ERR_P8_MULTIPLE_KEYS, P8V_ERR_P8_MALFORMED,
		    P8V_ERR_SECMEM, P8V_ERR_ALLOC, P8V_ERR_CRYPTO));
		FUZZ_CHECK(size <= P8_MAX_INPUT_BYTES ||
		    r == P8V_ERR_P8_TOO_LARGE);
		return 0;
	}
	FUZZ_CHECK(key != NULL);
	FUZZ_CHECK(size <= P8_MAX_INPUT_BYTES);
	FUZZ_CHECK(p8_key_public_point(key, pub) == 0);
	FUZZ_CHECK(p8_public_check(pub) == 0);
	FUZZ_CHECK(p8_public_fingerprint(pub, fpr) == 0);
	FUZZ_CHECK(strlen(fpr) == P8_FINGERPRINT_HEX);
	FUZZ_CHECK(p8_key_export_scalar(key, scalar) == 0);
	FUZZ_CHECK(p8_key_from_scalar(scalar, pub, &again) == 0);
	FUZZ_CHECK(p8_key_public_point(again, pub2) == 0);
	FUZZ_CHECK(memcmp(pub, pub2, sizeof(pub)) == 0);
	secmem_wipe(scalar, sizeof(scalar));
	p8_key_destroy(again);
	p8_key_destroy(key);
	return 0;
}
