/*
 * fuzz_apns_body.c: the body of POST /v1/apps/{app}/apns-token, with the
 * token-rejection report (rejected_token + reason), from the bytes to the
 * token cache's decision:
 *
 *   bytes -> json_loadb(JSON_REJECT_DUPLICATES), as api_request_json does
 *         -> api_sign_apns_body_parse (api/sign.h)
 *         -> tokcache_get (vault/tokcache.h) with what it returned, on a
 *            cache that holds one token, minted 30 minutes ago.
 *
 * Properties beyond "no memory error, no leak":
 *   - the parse gives 0, P8V_ERR_BAD_FIELD or P8V_ERR_UNKNOWN_FIELD, with a
 *     detail message exactly on failure; on success rejected_token and
 *     reason come together, the token has the compact JWS shape (two dots,
 *     base64url, shorter than JWT_MAX_TOKEN_BYTES) and the environment is
 *     never "both";
 *   - the cache mints (reason rejected_expired / rejected_invalid, as
 *     reported) exactly when the report names its current token, and
 *     serves the cached one otherwise.
 */
#include <string.h>

#include <jansson.h>

#include "api/sign.h"
#include "common/clock.h"
#include "common/err.h"
#include "crypto/jwt.h"
#include "fuzz/fuzz.h"
#include "vault/tokcache.h"

/* The token the cache holds (a JWS shape; its bytes are arbitrary). Seeds
 * in fuzz/corpus/fuzz_apns_body/ report it rejected. */
#define CACHED_TOKEN "eyJhbGciOiJFUzI1NiIsImtpZCI6IktFWTEyMzQ1NjcifQ." \
    "eyJpc3MiOiJURUFNMTIzNDU2IiwiaWF0IjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJl"
#define MINTED_TOKEN "bWludGVk.bWludGVk.bWludGVk"
/* Reuse period, and the cached token's age: past the 20 minutes before a
 * rejection may mint, inside the reuse period. */
#define REUSE_S (50 * 60)
#define AGE_S (30 * 60)

static int
mint(void *arg, enum vault_mint_reason why, struct tokcache_minted *m)
{
	*(enum vault_mint_reason *)arg = why;
	if ((m->token = strdup(MINTED_TOKEN)) == NULL)
		return P8V_ERR_ALLOC;
	m->issued_at = clock_wall_now();
	m->boot_ns = clock_boot_now_ns();
	return 0;
}

/* What the cache makes of a report (or of none). */
static void
check_cache(const char *rejected, enum vault_reject_reason reason)
{
	struct tokcache *tc = NULL;
	struct tokcache_id id;
	struct vault_token tok;
	enum vault_mint_reason why = VAULT_MINT_REASONS, minted_for = why;
	int current;

	memset(&id, 0, sizeof(id));
	memcpy(id.team_id, "TEAM123456", IDS_APPLE_ID_LEN);
	memcpy(id.key_id, "KEY1234567", IDS_APPLE_ID_LEN);
	memset(id.fingerprint, 'a', KEY_RECORD_FINGERPRINT_HEX);
	FUZZ_CHECK(tokcache_create(REUSE_S, &tc) == 0);
	FUZZ_CHECK(tokcache_seed(tc, &id, CACHED_TOKEN, clock_wall_now() -
	    AGE_S, clock_boot_now_ns() - AGE_S * TOKCACHE_NS_PER_S) == 0);
	FUZZ_CHECK(tokcache_get(tc, &id, rejected, reason, mint, &minted_for,
	    &tok, &why) == 0);
	current = rejected != NULL && strcmp(rejected, CACHED_TOKEN) == 0;
	if (current) {
		FUZZ_CHECK(tok.minted == 1);
		FUZZ_CHECK(strcmp(tok.token, MINTED_TOKEN) == 0);
		FUZZ_CHECK(why == minted_for);
		FUZZ_CHECK(why == (reason == VAULT_REJECT_EXPIRED ?
		    VAULT_MINT_REJECTED_EXPIRED :
		    VAULT_MINT_REJECTED_INVALID));
	} else {
		FUZZ_CHECK(tok.minted == 0);
		FUZZ_CHECK(strcmp(tok.token, CACHED_TOKEN) == 0);
		FUZZ_CHECK(minted_for == VAULT_MINT_REASONS);
	}
	vault_token_finish(&tok);
	tokcache_destroy(tc);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *body;
	const char *rejected = NULL, *detail = NULL, *p;
	enum key_env env = KEY_ENV_BOTH;
	enum vault_reject_reason reason = VAULT_REJECT_NONE;
	size_t dots = 0;
	int r;

	/* api_request_json: a JSON object, or 400 before this parser. */
	body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
	    &jerr);
	if (body == NULL || !json_is_object(body)) {
		json_decref(body);
		return 0;
	}
	r = api_sign_apns_body_parse(body, &env, &rejected, &reason, &detail);
	if (r != 0) {
		FUZZ_CHECK(r == P8V_ERR_BAD_FIELD ||
		    r == P8V_ERR_UNKNOWN_FIELD);
		FUZZ_CHECK(detail != NULL);
		json_decref(body);
		return 0;
	}
	FUZZ_CHECK(detail == NULL);
	FUZZ_CHECK(env == KEY_ENV_DEVELOPMENT || env == KEY_ENV_PRODUCTION ||
	    (env == KEY_ENV_BOTH && json_object_get(body, "environment") ==
	    NULL));
	FUZZ_CHECK((rejected == NULL) == (reason == VAULT_REJECT_NONE));
	if (rejected != NULL) {
		FUZZ_CHECK(reason == VAULT_REJECT_EXPIRED ||
		    reason == VAULT_REJECT_INVALID);
		FUZZ_CHECK(strlen(rejected) > 0 &&
		    strlen(rejected) < JWT_MAX_TOKEN_BYTES);
		for (p = rejected; *p != '\0'; p++) {
			FUZZ_CHECK(*p == '.' || *p == '-' || *p == '_' ||
			    (*p >= '0' && *p <= '9') ||
			    (*p >= 'A' && *p <= 'Z') ||
			    (*p >= 'a' && *p <= 'z'));
			dots += *p == '.';
		}
		FUZZ_CHECK(dots == 2);
	}
	check_cache(rejected, reason);
	json_decref(body);
	return 0;
}
