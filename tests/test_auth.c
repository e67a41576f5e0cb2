/*
 * test_auth.c: bearer tokens (api/auth.h): the format, the Authorization
 * header, the role and app decision as a table, and the whole check against
 * a real store (unknown, revoked, wrong secret).
 */
#include <stdio.h>
#include <string.h>

#include "api/auth.h"
#include "api/http.h"
#include "common/err.h"
#include "crypto/secmem.h"
#include "store/creds.h"
#include "store/store.h"
#include "tests/check.h"
#include "tests/testutil.h"

/* A well-formed token (not issued by anyone): the last secret character
 * 'A' carries no stray bits. */
#define GOOD "p8v_0123456789abcdef_" \
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234"

struct parse_case {
	const char *what;
	const char *token;
	int want;
};

static const struct parse_case parse_cases[] = {
	{ "good", GOOD, 0 },
	{ "wrong prefix", "p8x_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234", P8V_ERR_UNAUTHORIZED },
	{ "upper-case prefix", "P8V_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234", P8V_ERR_UNAUTHORIZED },
	{ "no prefix", "0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234", P8V_ERR_UNAUTHORIZED },
	{ "id too short", "p8v_0123456789abcde_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_012345", P8V_ERR_UNAUTHORIZED },
	{ "id too long", "p8v_0123456789abcdef0_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123", P8V_ERR_UNAUTHORIZED },
	{ "id upper-case hex", "p8v_0123456789ABCDEF_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234", P8V_ERR_UNAUTHORIZED },
	{ "id not hex", "p8v_0123456789abcdeg_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234", P8V_ERR_UNAUTHORIZED },
	{ "no separator", "p8v_0123456789abcdef-"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01234", P8V_ERR_UNAUTHORIZED },
	{ "secret too short", "p8v_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123", P8V_ERR_UNAUTHORIZED },
	{ "secret too long", "p8v_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_012340", P8V_ERR_UNAUTHORIZED },
	{ "secret with +", "p8v_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ+_01234", P8V_ERR_UNAUTHORIZED },
	{ "secret with /", "p8v_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ/_01234", P8V_ERR_UNAUTHORIZED },
	{ "secret with padding", "p8v_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0123=", P8V_ERR_UNAUTHORIZED },
	{ "secret with space", "p8v_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_0 234", P8V_ERR_UNAUTHORIZED },
	{ "non-canonical last character", "p8v_0123456789abcdef_"
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ-_01235", P8V_ERR_UNAUTHORIZED },
	{ "empty", "", P8V_ERR_UNAUTHORIZED },
};

static void
test_parse(void)
{
	char id[APITOKEN_ID_LEN + 1];
	const char *secret;
	size_t i;

	CHECK_INT(strlen(GOOD), APITOKEN_LEN);
	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];

		secret = NULL;
		CHECKF(apitoken_parse(c->token, strlen(c->token), id,
		    &secret) == c->want, "%s", c->what);
		if (c->want == 0) {
			CHECK_STR(id, "0123456789abcdef");
			CHECK(secret == c->token + 21);
		}
	}
	/* The length is what counts, not a NUL: a good token followed by
	 * more bytes is refused, its first 64 bytes accepted. */
	{
		const char *longer = GOOD "x";

		CHECK_ERR(apitoken_parse(longer, strlen(longer), id,
		    &secret), P8V_ERR_UNAUTHORIZED);
		CHECK_OK(apitoken_parse(longer, APITOKEN_LEN, id,
		    &secret));
	}
	CHECK_ERR(apitoken_parse(NULL, 64, id, &secret),
	    P8V_ERR_UNAUTHORIZED);
}

struct bearer_case {
	const char *header;
	const char *token;      /* NULL: refused */
};

static const struct bearer_case bearer_cases[] = {
	{ "Bearer abc", "abc" },
	{ "bearer abc", "abc" },
	{ "BEARER abc", "abc" },
	{ "Bearer   abc  \t", "abc" },
	{ "Bearer", NULL },
	{ "Bearer ", NULL },
	{ "Bearer    ", NULL },
	{ "Bearerabc", NULL },
	{ "Bearer\tabc", NULL },
	{ "Basic YWJjOmRlZg==", NULL },
	{ "", NULL },
	{ "abc", NULL },
};

static void
test_bearer(void)
{
	const char *tok;
	size_t i, len;
	int r;

	for (i = 0; i < sizeof(bearer_cases) / sizeof(bearer_cases[0]); i++) {
		const struct bearer_case *c = &bearer_cases[i];

		r = api_auth_bearer(c->header, &tok, &len);
		if (c->token == NULL) {
			CHECKF(r == P8V_ERR_UNAUTHORIZED, "\"%s\"", c->header);
			continue;
		}
		CHECKF(r == 0, "\"%s\"", c->header);
		if (r == 0)
			CHECKF(len == strlen(c->token) &&
			    memcmp(tok, c->token, len) == 0, "\"%s\"",
			    c->header);
	}
	CHECK_ERR(api_auth_bearer(NULL, &tok, &len), P8V_ERR_UNAUTHORIZED);
}

static void
test_roles(void)
{
	static const enum api_role all[] = { API_ROLE_PORTAL, API_ROLE_SIGNER,
	    API_ROLE_ADMIN };
	enum api_role r;
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		REQUIRE(api_auth_role_name(all[i]) != NULL);
		CHECK_OK(api_auth_role_parse(api_auth_role_name(all[i]), &r));
		CHECK_INT(r, all[i]);
	}
	CHECK_STR(api_auth_role_name(API_ROLE_PORTAL), "portal");
	CHECK_STR(api_auth_role_name(API_ROLE_SIGNER), "signer");
	CHECK_STR(api_auth_role_name(API_ROLE_ADMIN), "admin");
	CHECK(api_auth_role_name(API_ROLE_NONE) == NULL);
	CHECK_ERR(api_auth_role_parse("Admin", &r), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(api_auth_role_parse("", &r), P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(api_auth_role_parse("upload", &r), P8V_ERR_INVALID_ARGUMENT);
	CHECK_INT(api_auth_is_stub(), 0);
}

static void
test_token_new(void)
{
	uint8_t hash[CRED_SECRET_HASH_BYTES], again[CRED_SECRET_HASH_BYTES];
	char id[APITOKEN_ID_LEN + 1], id2[APITOKEN_ID_LEN + 1];
	char *token, *token2;
	const char *secret;

	token = secmem_alloc(APITOKEN_LEN + 1);
	token2 = secmem_alloc(APITOKEN_LEN + 1);
	REQUIRE(token != NULL && token2 != NULL);
	CHECK_OK(apitoken_new(token, APITOKEN_LEN + 1, id, hash));
	CHECK_INT(strlen(token), APITOKEN_LEN);
	CHECK(strncmp(token, "p8v_", 4) == 0);
	CHECK_OK(apitoken_parse(token, strlen(token), id2, &secret));
	CHECK_STR(id2, id);
	CHECK_OK(store_cred_hash_secret(secret, APITOKEN_SECRET_LEN, again));
	CHECK_MEM(again, hash, sizeof(hash));
	/* Two tokens share neither id nor secret. */
	CHECK_OK(apitoken_new(token2, APITOKEN_LEN + 1, id2,
	    again));
	CHECK(strcmp(id, id2) != 0);
	CHECK(memcmp(hash, again, sizeof(hash)) != 0);
	CHECK_ERR(apitoken_new(token, APITOKEN_LEN, id, hash),
	    P8V_ERR_INVALID_ARGUMENT);
	secmem_free(token);
	secmem_free(token2);
}

/* A credential: role, scoped to "app-a" or every app, secret "s3cret". */
static void
make_cred(struct store_cred *cred, const char *id, const char *role,
    int scoped)
{
	const char *app = scoped ? "app-a" : CRED_ALL_APPS;

	memset(cred, 0, sizeof(*cred));
	snprintf(cred->id, sizeof(cred->id), "%s", id);
	snprintf(cred->role, sizeof(cred->role), "%s", role);
	snprintf(cred->name, sizeof(cred->name), "test %s", role);
	REQUIRE(store_cred_set_apps(cred, &app, 1) == 0);
	REQUIRE(store_cred_hash_secret("s3cret", 6, cred->secret_hash) == 0);
	cred->created_at = 1700000000;
}

/* The role and app matrix: every role, on a portal and a signing route,
 * scoped and not, on its own app, another app, and no app. */
struct decide_case {
	const char *role;
	enum api_role route;
	int scoped;
	const char *app;        /* the {app} of the request, or NULL */
	int want;
};

#define P API_ROLE_PORTAL
#define S API_ROLE_SIGNER
#define A API_ROLE_ADMIN
#define E403 P8V_ERR_FORBIDDEN

static const struct decide_case decide_cases[] = {
	/* role      route scoped app       want */
	{ "portal",  P, 0, "app-a",  0 },
	{ "portal",  P, 0, "app-b",  0 },
	{ "portal",  P, 0, NULL,     0 },
	{ "portal",  P, 1, "app-a",  0 },
	{ "portal",  P, 1, "app-b",  E403 },
	{ "portal",  P, 1, NULL,     0 },
	{ "portal",  S, 0, "app-a",  E403 },
	{ "portal",  S, 0, NULL,     E403 },
	{ "portal",  S, 1, "app-a",  E403 },
	{ "portal",  S, 1, "app-b",  E403 },
	{ "portal",  A, 0, NULL,     E403 },
	{ "signer",  S, 0, "app-a",  0 },
	{ "signer",  S, 0, "app-b",  0 },
	{ "signer",  S, 0, NULL,     0 },
	{ "signer",  S, 1, "app-a",  0 },
	{ "signer",  S, 1, "app-b",  E403 },
	{ "signer",  P, 0, "app-a",  E403 },
	{ "signer",  P, 0, NULL,     E403 },
	{ "signer",  P, 1, "app-a",  E403 },
	{ "signer",  P, 1, "app-b",  E403 },
	{ "signer",  A, 0, NULL,     E403 },
	{ "admin",   P, 0, "app-a",  0 },
	{ "admin",   P, 0, "app-b",  0 },
	{ "admin",   P, 1, "app-a",  0 },
	{ "admin",   P, 1, "app-b",  E403 },
	{ "admin",   S, 0, "app-a",  0 },
	{ "admin",   S, 0, "app-b",  0 },
	{ "admin",   S, 1, "app-a",  0 },
	{ "admin",   S, 1, "app-b",  E403 },
	{ "admin",   A, 0, NULL,     0 },
	{ "admin",   A, 1, "app-b",  E403 },
	/* Any valid token (GET /v1/whoami). */
	{ "portal",  API_AUTH_ANY_ROLE, 1, NULL, 0 },
	{ "signer",  API_AUTH_ANY_ROLE, 0, NULL, 0 },
	{ "admin",   API_AUTH_ANY_ROLE, 0, NULL, 0 },
	/* A role this version does not know grants nothing. */
	{ "auditor", P, 0, NULL,     E403 },
	{ "auditor", API_AUTH_ANY_ROLE, 0, NULL, E403 },
};

static void
test_decide(void)
{
	struct store_cred cred;
	uint8_t good[CRED_SECRET_HASH_BYTES], bad[CRED_SECRET_HASH_BYTES];
	enum api_role granted, want_role;
	size_t i;
	int r;

	REQUIRE(store_cred_hash_secret("s3cret", 6, good) == 0);
	REQUIRE(store_cred_hash_secret("s3creT", 6, bad) == 0);
	for (i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
		const struct decide_case *c = &decide_cases[i];

		make_cred(&cred, "0123456789abcdef", c->role, c->scoped);
		granted = API_ROLE_NONE;
		r = api_auth_decide(&cred, good, c->route, c->app, &granted);
		CHECKF(r == c->want, "case %zu: %s token, route role %d, "
		    "%s, app %s: got %s", i, c->role, (int)c->route,
		    c->scoped ? "scoped" : "unscoped",
		    c->app ? c->app : "(none)", p8v_errname(r));
		if (r == 0 && api_auth_role_parse(c->role, &want_role) == 0)
			CHECKF(granted == want_role, "case %zu", i);
		/* Whatever the role and app: a wrong secret or a revoked
		 * token is 401, never 403 (a client learns nothing). */
		CHECKF(api_auth_decide(&cred, bad, c->route, c->app, NULL) ==
		    P8V_ERR_UNAUTHORIZED, "case %zu, wrong secret", i);
		cred.revoked_at = cred.created_at + 1;
		CHECKF(api_auth_decide(&cred, good, c->route, c->app, NULL) ==
		    P8V_ERR_UNAUTHORIZED, "case %zu, revoked", i);
		store_cred_free(&cred);
	}
	CHECK_ERR(api_auth_decide(NULL, good, P, NULL, NULL),
	    P8V_ERR_UNAUTHORIZED);
}

#undef P
#undef S
#undef A
#undef E403

struct put_ctx {
	const struct store_cred *cred;
};

static int
put_txn(struct store_txn *txn, void *arg)
{
	return store_cred_create(txn, ((struct put_ctx *)arg)->cred);
}

static int
revoke_txn(struct store_txn *txn, void *arg)
{
	return store_cred_revoke(txn, arg, 1700000100);
}

/* A stored credential whose token is in header (as "Bearer <token>"). */
static void
issue(struct store *store, const char *role, const char *app, char *header,
    size_t header_size, char id[APITOKEN_ID_LEN + 1])
{
	struct store_cred cred;
	struct put_ctx ctx = { &cred };
	char *token;
	const char *apps = app != NULL ? app : CRED_ALL_APPS;

	memset(&cred, 0, sizeof(cred));
	REQUIRE((token = secmem_alloc(APITOKEN_LEN + 1)) != NULL);
	REQUIRE(apitoken_new(token, APITOKEN_LEN + 1, cred.id,
	    cred.secret_hash) == 0);
	snprintf(cred.role, sizeof(cred.role), "%s", role);
	snprintf(cred.name, sizeof(cred.name), "%s", role);
	REQUIRE(store_cred_set_apps(&cred, &apps, 1) == 0);
	cred.created_at = 1700000000;
	REQUIRE(store_write(store, put_txn, &ctx) == 0);
	snprintf(header, header_size, "Bearer %s", token);
	memcpy(id, cred.id, APITOKEN_ID_LEN + 1);
	secmem_free(token);
	store_cred_free(&cred);
}

static void
test_verify(void)
{
	struct api_principal who;
	struct store *store = NULL;
	char portal[128], signer[128], scoped[128], garbled[128];
	char pid[APITOKEN_ID_LEN + 1], sid[APITOKEN_ID_LEN + 1];
	char cid[APITOKEN_ID_LEN + 1];
	char *dir;
	size_t n;

	REQUIRE((dir = tu_mkdtemp("p8v-auth")) != NULL);
	REQUIRE(store_open(dir, NULL, &store) == 0);
	issue(store, "portal", NULL, portal, sizeof(portal), pid);
	issue(store, "signer", NULL, signer, sizeof(signer), sid);
	issue(store, "portal", "app-a", scoped, sizeof(scoped), cid);

	memset(&who, 0, sizeof(who));
	CHECK_OK(api_auth_verify(store, portal, API_ROLE_PORTAL, "app-x",
	    &who));
	CHECK_INT(who.role, API_ROLE_PORTAL);
	CHECK_STR(who.actor, pid);
	CHECK_OK(api_auth_verify(store, signer, API_ROLE_SIGNER, NULL, &who));
	CHECK_INT(who.role, API_ROLE_SIGNER);
	CHECK_STR(who.actor, sid);
	CHECK_ERR(api_auth_verify(store, signer, API_ROLE_PORTAL, NULL, &who),
	    P8V_ERR_FORBIDDEN);
	CHECK_OK(api_auth_verify(store, scoped, API_ROLE_PORTAL, "app-a",
	    &who));
	CHECK_ERR(api_auth_verify(store, scoped, API_ROLE_PORTAL, "app-b",
	    &who), P8V_ERR_FORBIDDEN);

	/* Missing, other scheme, garbled, unknown id, wrong secret: 401. */
	CHECK_ERR(api_auth_verify(store, NULL, API_ROLE_PORTAL, NULL, &who),
	    P8V_ERR_UNAUTHORIZED);
	CHECK_ERR(api_auth_verify(store, "Basic eDp5", API_ROLE_PORTAL, NULL,
	    &who), P8V_ERR_UNAUTHORIZED);
	CHECK_ERR(api_auth_verify(store, "Bearer nonsense", API_ROLE_PORTAL,
	    NULL, &who), P8V_ERR_UNAUTHORIZED);
	CHECK_ERR(api_auth_verify(store, "Bearer " GOOD, API_ROLE_PORTAL,
	    NULL, &who), P8V_ERR_UNAUTHORIZED);
	/* The right id with another secret: flip one secret character
	 * (staying canonical: the last one is left alone). */
	n = strlen(portal);
	snprintf(garbled, sizeof(garbled), "%s", portal);
	garbled[n - 2] = garbled[n - 2] == 'A' ? 'B' : 'A';
	CHECK_ERR(api_auth_verify(store, garbled, API_ROLE_PORTAL, NULL, &who),
	    P8V_ERR_UNAUTHORIZED);
	/* Truncated by one character. */
	garbled[n - 1] = '\0';
	CHECK_ERR(api_auth_verify(store, garbled, API_ROLE_PORTAL, NULL, &who),
	    P8V_ERR_UNAUTHORIZED);

	/* Revoked: 401 at once, whatever the route. */
	REQUIRE(store_write(store, revoke_txn, pid) == 0);
	CHECK_ERR(api_auth_verify(store, portal, API_ROLE_PORTAL, NULL, &who),
	    P8V_ERR_UNAUTHORIZED);
	CHECK_ERR(api_auth_verify(store, portal, API_ROLE_SIGNER, NULL, &who),
	    P8V_ERR_UNAUTHORIZED);
	/* The others are untouched. */
	CHECK_OK(api_auth_verify(store, signer, API_ROLE_SIGNER, NULL, &who));

	CHECK_ERR(api_auth_verify(NULL, portal, API_ROLE_PORTAL, NULL, &who),
	    P8V_ERR_INVALID_ARGUMENT);
	store_close(store);
	tu_rmtree(dir);
	free(dir);
}

/*
 * The credential cache remembers the last secret that matched each token
 * id (a keyed hash): every other secret must still be refused, however
 * the requests interleave, and a revocation must still win over it.
 */
static void
test_verify_cached(void)
{
	struct api_principal who;
	struct store *store = NULL;
	char good[128], other[128], wrong[128], wrong2[128];
	char gid[APITOKEN_ID_LEN + 1], oid[APITOKEN_ID_LEN + 1];
	const char *seq[] = { good, good, wrong, good, wrong2, wrong, good,
	    other, wrong, good };
	int want[] = { 0, 0, P8V_ERR_UNAUTHORIZED, 0, P8V_ERR_UNAUTHORIZED,
	    P8V_ERR_UNAUTHORIZED, 0, 0, P8V_ERR_UNAUTHORIZED, 0 };
	char *dir;
	size_t i, n;

	REQUIRE((dir = tu_mkdtemp("p8v-auth-cache")) != NULL);
	REQUIRE(store_open(dir, NULL, &store) == 0);
	issue(store, "signer", NULL, good, sizeof(good), gid);
	issue(store, "signer", NULL, other, sizeof(other), oid);
	/* The same id, secrets differing in the first and in the next to
	 * last character (the last one stays canonical). */
	n = strlen(good);
	snprintf(wrong, sizeof(wrong), "%s", good);
	wrong[n - 2] = wrong[n - 2] == 'A' ? 'B' : 'A';
	snprintf(wrong2, sizeof(wrong2), "%s", good);
	i = strlen("Bearer p8v_") + APITOKEN_ID_LEN + 1;
	wrong2[i] = wrong2[i] == 'A' ? 'B' : 'A';

	for (i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		memset(&who, 0, sizeof(who));
		CHECKF(api_auth_verify(store, seq[i], API_ROLE_SIGNER, NULL,
		    &who) == want[i], "request %zu", i);
		if (want[i] == 0)
			CHECKF(strcmp(who.actor, seq[i] == other ? oid : gid) ==
			    0, "request %zu: actor", i);
	}
	/* Revoked after its secret was remembered: refused at once. */
	REQUIRE(store_write(store, revoke_txn, gid) == 0);
	CHECK_ERR(api_auth_verify(store, good, API_ROLE_SIGNER, NULL, &who),
	    P8V_ERR_UNAUTHORIZED);
	CHECK_ERR(api_auth_verify(store, good, API_ROLE_SIGNER, NULL, &who),
	    P8V_ERR_UNAUTHORIZED);
	CHECK_OK(api_auth_verify(store, other, API_ROLE_SIGNER, NULL, &who));
	store_close(store);
	tu_rmtree(dir);
	free(dir);
}

int
main(void)
{
	REQUIRE(secmem_init() == 0);
	test_parse();
	test_bearer();
	test_roles();
	test_token_new();
	test_decide();
	test_verify();
	test_verify_cached();
	return check_finish();
}
