/*
 * fuzz_jwt_profile.c: the body of POST /v1/apps/{app}/jwt, from the bytes
 * to a signed token:
 *
 *   bytes -> json_loadb(JSON_REJECT_DUPLICATES), as api_request_json does
 *         -> profile_parse (vault/profiles.h)
 *         -> profile_build for a fixed key record, at a fixed time
 *         -> jwt_sign_es256 with a fixed test key, jwt_verify_es256.
 *
 * Properties beyond "no memory error, no leak":
 *   - profile_parse gives 0 or a code profiles.h lists, with a detail
 *     message for every refusal about a member;
 *   - a request it accepts can be built and signed: the limits of
 *     profiles.h promise a token within JWT_MAX_TOKEN_BYTES, so a body the
 *     validator lets through never fails later at signing (the vault
 *     signs only after the key is unsealed);
 *   - the token verifies, and its header and claims are what the profile
 *     documents for the fields given (kid, iss, and exp = iat +
 *     expires_in where the profile has one).
 */
#include <string.h>

#include <jansson.h>

#include "common/err.h"
#include "crypto/jwt.h"
#include "fuzz/fuzz.h"
#include "vault/profiles.h"

/* Mid-2023: any time far from the JSON integer limit will do. */
#define NOW 1700000000

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	(void)fuzz_test_key(NULL);
	return 0;
}

/* Sign what profile_build made, verify it, and look at its claims. */
static void
check_token(const struct profile_request *req, const json_t *header,
    const json_t *claims)
{
	uint8_t pub[P8_PUBLIC_BYTES];
	const struct p8_key *key;
	char *token = NULL;
	json_t *exp;
	int r;

	key = fuzz_test_key(pub);
	r = jwt_sign_es256(key, header, claims, &token);
	if (r != 0)
		fprintf(stderr, "jwt_sign_es256: %s (profile %s)\n",
		    p8v_errname(r), req->profile);
	FUZZ_CHECK(r == 0 && token != NULL);
	FUZZ_CHECK(strlen(token) < JWT_MAX_TOKEN_BYTES);
	FUZZ_CHECK(jwt_verify_es256(pub, token, strlen(token)) == 0);
	free(token);

	FUZZ_CHECK(strcmp(json_string_value(json_object_get(header, "alg")),
	    "ES256") == 0);
	FUZZ_CHECK(strcmp(json_string_value(json_object_get(header, "kid")),
	    "KEY1234567") == 0);
	FUZZ_CHECK(json_integer_value(json_object_get(claims, "iat")) == NOW);
	exp = json_object_get(claims, "exp");
	FUZZ_CHECK(req->f.expires_in == 0 ? exp == NULL :
	    json_integer_value(exp) == NOW + req->f.expires_in);
	FUZZ_CHECK(req->f.issuer_id[0] != '\0' ?
	    strcmp(json_string_value(json_object_get(claims, "iss")),
	    req->f.issuer_id) == 0 :
	    strcmp(json_string_value(json_object_get(claims, "iss")),
	    "TEAM123456") == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct profile_request req;
	struct key_record rec;
	json_error_t jerr;
	json_t *body, *header = NULL, *claims = NULL;
	const char *detail = "unset";
	int r;

	body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
	    &jerr);
	if (body == NULL || !json_is_object(body)) {
		json_decref(body);
		return 0;
	}
	r = profile_parse(body, &req, &detail);
	if (r != 0) {
		FUZZ_CHECK(FUZZ_ERR_IN(r, P8V_ERR_MISSING_FIELD,
		    P8V_ERR_UNKNOWN_FIELD, P8V_ERR_BAD_FIELD, P8V_ERR_ALLOC));
		FUZZ_CHECK(detail != NULL || r == P8V_ERR_ALLOC);
		FUZZ_CHECK(req.profile == NULL && req.f.n_list == 0);
		json_decref(body);
		return 0;
	}
	FUZZ_CHECK(detail == NULL);
	FUZZ_CHECK(req.profile != NULL &&
	    strcmp(req.profile, json_string_value(json_object_get(body,
	    "profile"))) == 0);

	memset(&rec, 0, sizeof(rec));
	memcpy(rec.key_id, "KEY1234567", IDS_APPLE_ID_LEN);
	memcpy(rec.team_id, "TEAM123456", IDS_APPLE_ID_LEN);
	r = profile_build(&req, &rec, NOW, &header, &claims);
	FUZZ_CHECK(r == 0 && header != NULL && claims != NULL);
	check_token(&req, header, claims);

	json_decref(header);
	json_decref(claims);
	profile_request_finish(&req);
	json_decref(body);
	return 0;
}
