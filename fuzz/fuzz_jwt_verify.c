/*
 * fuzz_jwt_verify.c: the ES256 token verifier and signature format
 * conversions (crypto/jwt.h): jwt_verify_es256 parses a compact JWS
 * (base64url, two JSON objects, a raw signature) that the self-checks and
 * tests read back; jwt_der_to_p1363 parses DER signatures.
 *
 * Input: the token, verified against the fixed test key of fuzz.h; the
 * same bytes as a DER ECDSA-Sig-Value.
 *
 * Properties beyond "no memory error, no leak":
 *   - verification gives 0 or P8V_ERR_INTEGRITY (or ALLOC/CRYPTO), and 0
 *     only for a token whose signature parts check (a seed holds one
 *     signed by the test key);
 *   - a DER signature that converts converts back to the same bytes (DER
 *     is strict: one encoding only), and r || s survives the round trip.
 */
#include <string.h>

#include "common/err.h"
#include "crypto/jwt.h"
#include "fuzz/fuzz.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	(void)fuzz_test_key(NULL);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t pub[P8_PUBLIC_BYTES], sig[JWT_ES256_SIG_BYTES];
	uint8_t sig2[JWT_ES256_SIG_BYTES], *der = NULL;
	size_t der_len = 0;
	int r;

	(void)fuzz_test_key(pub);
	r = jwt_verify_es256(pub, (const char *)data, size);
	FUZZ_CHECK(r == 0 || r == P8V_ERR_INTEGRITY || r == P8V_ERR_ALLOC ||
	    r == P8V_ERR_CRYPTO);
	FUZZ_CHECK(r != 0 || (size > 0 && size < JWT_MAX_TOKEN_BYTES));

	r = jwt_der_to_p1363(data, size, sig);
	FUZZ_CHECK(r == 0 || r == P8V_ERR_INVALID_ARGUMENT ||
	    r == P8V_ERR_CRYPTO);
	if (r == 0) {
		FUZZ_CHECK(jwt_p1363_to_der(sig, sizeof(sig), &der,
		    &der_len) == 0);
		FUZZ_CHECK(der_len == size && memcmp(der, data, size) == 0);
		FUZZ_CHECK(jwt_der_to_p1363(der, der_len, sig2) == 0);
		FUZZ_CHECK(memcmp(sig, sig2, sizeof(sig)) == 0);
		free(der);
	}
	return 0;
}
