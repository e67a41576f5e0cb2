/*
 * fuzz_bearer.c: the Authorization header (api/auth.h), without the
 * store: api_auth_bearer (scheme and token), apitoken_parse (the strict
 * p8v_<id>_<secret> form, store/apitoken.h) and api_auth_decide against
 * one fixed credential, as api_auth_verify chains them. The raw input also
 * goes to apitoken_parse directly, as a token that is not NUL-terminated.
 *
 * Input: the header value; a C string (cut at a NUL byte) as
 * libmicrohttpd passes it.
 *
 * Properties beyond "no memory error, no leak":
 *   - every refusal is P8V_ERR_UNAUTHORIZED;
 *   - a parsed token is exactly APITOKEN_LEN bytes, its id 16
 *     lowercase hex characters, its secret the 43 characters after it;
 *   - the decision admits exactly the one token whose secret hashes to the
 *     credential's (a portal token scoped to app "app1"), and refuses it
 *     another role (admin) or another app with P8V_ERR_FORBIDDEN.
 */
#include <string.h>

#include "api/auth.h"
#include "common/err.h"
#include "fuzz/fuzz.h"

/* The one token the credential admits; a seed in
 * fuzz/corpus/fuzz_bearer/ carries it. Its secret: bytes 0..31. */
static const char good_token[] = "p8v_0123456789abcdef_"
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/* Where the secret starts in a token. */
#define SECRET_AT (APITOKEN_LEN - APITOKEN_SECRET_LEN)

static struct store_cred cred;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const apps[] = { "app1" };

	fuzz_init();
	memcpy(cred.id, "0123456789abcdef", APITOKEN_ID_LEN);
	strcpy(cred.role, "portal");
	strcpy(cred.name, "fuzz");
	cred.created_at = 1700000000;
	if (store_cred_set_apps(&cred, apps, 1) != 0 ||
	    store_cred_hash_secret(&good_token[SECRET_AT],
	    APITOKEN_SECRET_LEN, cred.secret_hash) != 0)
		abort();
	return 0;
}

/* The checks on one parsed token. */
static void
check_token(const char *token, size_t len)
{
	uint8_t hash[CRED_SECRET_HASH_BYTES];
	char id[APITOKEN_ID_LEN + 1];
	const char *secret = NULL;
	enum api_role granted = API_ROLE_NONE;
	size_t i;
	int r, good;

	r = apitoken_parse(token, len, id, &secret);
	if (r != 0) {
		FUZZ_CHECK(r == P8V_ERR_UNAUTHORIZED);
		return;
	}
	FUZZ_CHECK(len == APITOKEN_LEN);
	FUZZ_CHECK(memcmp(token, APITOKEN_PREFIX,
	    APITOKEN_PREFIX_LEN) == 0);
	FUZZ_CHECK(strlen(id) == APITOKEN_ID_LEN);
	for (i = 0; i < APITOKEN_ID_LEN; i++)
		FUZZ_CHECK((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'a' && id[i] <= 'f'));
	FUZZ_CHECK(secret == token + SECRET_AT);

	FUZZ_CHECK(store_cred_hash_secret(secret, APITOKEN_SECRET_LEN,
	    hash) == 0);
	/* The id is the store's lookup key, not part of the decision. */
	good = memcmp(secret, &good_token[SECRET_AT],
	    APITOKEN_SECRET_LEN) == 0;
	r = api_auth_decide(&cred, hash, API_ROLE_PORTAL, "app1", &granted);
	FUZZ_CHECK(good ? r == 0 && granted == API_ROLE_PORTAL :
	    r == P8V_ERR_UNAUTHORIZED);
	r = api_auth_decide(&cred, hash, API_ROLE_ADMIN, NULL, NULL);
	FUZZ_CHECK(r == (good ? P8V_ERR_FORBIDDEN : P8V_ERR_UNAUTHORIZED));
	r = api_auth_decide(&cred, hash, API_ROLE_PORTAL, "app2", NULL);
	FUZZ_CHECK(r == (good ? P8V_ERR_FORBIDDEN : P8V_ERR_UNAUTHORIZED));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *token = NULL;
	char *header;
	size_t len = 0;
	int r;

	/* The raw bytes as a token of exactly that length. */
	check_token((const char *)data, size);

	if ((header = malloc(size + 1)) == NULL)
		abort();
	memcpy(header, data, size);
	header[size] = '\0';
	r = api_auth_bearer(header, &token, &len);
	if (r != 0) {
		FUZZ_CHECK(r == P8V_ERR_UNAUTHORIZED);
	} else {
		FUZZ_CHECK(len > 0 && token > header &&
		    token + len <= header + strlen(header));
		FUZZ_CHECK(token[0] != ' ' && token[len - 1] != ' ' &&
		    token[len - 1] != '\t');
		check_token(token, len);
	}
	free(header);
	return 0;
}
