/*
 * test_auth_work.c: an unknown token id costs the same work as a wrong
 * secret of a known one (docs/security.md: one answer for every cause,
 * and no timing that tells which ids exist).
 *
 * The work is counted, not timed: the linker routes api/auth.c's calls of
 * store_cred_hash_secret (SHA-256) and secmem_equal (constant-time
 * compares) through the counters below (-Wl,--wrap, tests/meson.build),
 * and each kind of refusal must make the same calls with the same sizes,
 * on a cold credential cache and on a warm one.
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

/* Counts of the calls, per size compared. */
struct work {
	unsigned int hashes;
	unsigned int equal_16;
	unsigned int equal_32;
	unsigned int equal_other;
};

static struct work counted;

int __real_store_cred_hash_secret(const void *secret, size_t len,
    uint8_t out[CRED_SECRET_HASH_BYTES]);
int __wrap_store_cred_hash_secret(const void *secret, size_t len,
    uint8_t out[CRED_SECRET_HASH_BYTES]);
int __real_secmem_equal(const void *a, const void *b, size_t n);
int __wrap_secmem_equal(const void *a, const void *b, size_t n);

int
__wrap_store_cred_hash_secret(const void *secret, size_t len,
    uint8_t out[CRED_SECRET_HASH_BYTES])
{
	counted.hashes++;
	return __real_store_cred_hash_secret(secret, len, out);
}

int
__wrap_secmem_equal(const void *a, const void *b, size_t n)
{
	if (n == 16)
		counted.equal_16++;
	else if (n == 32)
		counted.equal_32++;
	else
		counted.equal_other++;
	return __real_secmem_equal(a, b, n);
}

struct put_ctx {
	struct store_cred *cred;
};

static int
put_txn(struct store_txn *txn, void *arg)
{
	return store_cred_create(txn, ((struct put_ctx *)arg)->cred);
}

/* A stored credential whose token is in header (as "Bearer <token>"). */
static void
issue(struct store *store, char *header, size_t header_size)
{
	struct store_cred cred;
	struct put_ctx ctx = { &cred };
	char *token;
	const char *apps = CRED_ALL_APPS;

	memset(&cred, 0, sizeof(cred));
	REQUIRE((token = secmem_alloc(APITOKEN_LEN + 1)) != NULL);
	REQUIRE(apitoken_new(token, APITOKEN_LEN + 1, cred.id,
	    cred.secret_hash) == 0);
	snprintf(cred.role, sizeof(cred.role), "%s", "signer");
	snprintf(cred.name, sizeof(cred.name), "%s", "signer");
	REQUIRE(store_cred_set_apps(&cred, &apps, 1) == 0);
	cred.created_at = 1700000000;
	REQUIRE(store_write(store, put_txn, &ctx) == 0);
	snprintf(header, header_size, "Bearer %s", token);
	secmem_free(token);
	store_cred_free(&cred);
}

/* The work of one refused request. */
static struct work
work_of(struct store *store, const char *header)
{
	struct api_principal who;

	memset(&counted, 0, sizeof(counted));
	memset(&who, 0, sizeof(who));
	CHECK_ERR(api_auth_verify(store, header, API_ROLE_SIGNER, NULL, &who),
	    P8V_ERR_UNAUTHORIZED);
	return counted;
}

static void
check_same(struct work a, struct work b, const char *what)
{
	CHECKF(a.hashes == b.hashes && a.equal_16 == b.equal_16 &&
	    a.equal_32 == b.equal_32 && a.equal_other == b.equal_other,
	    "%s: unknown id: %u SHA-256, %u+%u+%u compares; wrong secret: "
	    "%u SHA-256, %u+%u+%u compares", what, a.hashes, a.equal_16,
	    a.equal_32, a.equal_other, b.hashes, b.equal_16, b.equal_32,
	    b.equal_other);
	CHECKF(b.hashes == 1, "%s: a wrong secret is hashed once (%u)", what,
	    b.hashes);
}

static void
test_unknown_id_costs_a_wrong_secret(void)
{
	struct store *store = NULL;
	struct api_principal who;
	char good[128], wrong[128], unknown[128], *dir;
	struct work w_unknown, w_wrong;
	size_t n, i;

	REQUIRE((dir = tu_mkdtemp("p8v-auth-work")) != NULL);
	REQUIRE(store_open(dir, NULL, &store) == 0);
	issue(store, good, sizeof(good));
	n = strlen(good);
	/* The same id with another secret (the last character stays
	 * canonical), and another id with the right secret. */
	snprintf(wrong, sizeof(wrong), "%s", good);
	wrong[n - 2] = wrong[n - 2] == 'A' ? 'B' : 'A';
	snprintf(unknown, sizeof(unknown), "%s", good);
	i = strlen("Bearer p8v_");
	unknown[i] = unknown[i] == 'a' ? 'b' : 'a';

	/* Cold: each id's first request reads the store. */
	w_unknown = work_of(store, unknown);
	w_wrong = work_of(store, wrong);
	check_same(w_unknown, w_wrong, "cold cache");
	/* Warm: the second request of each is answered from the cache. */
	w_unknown = work_of(store, unknown);
	w_wrong = work_of(store, wrong);
	check_same(w_unknown, w_wrong, "warm cache");
	/* Warm, once the right secret has been seen (its tag remembered). */
	CHECK_OK(api_auth_verify(store, good, API_ROLE_SIGNER, NULL, &who));
	w_unknown = work_of(store, unknown);
	w_wrong = work_of(store, wrong);
	check_same(w_unknown, w_wrong, "warm cache, secret remembered");
	/* The decision alone, as the CLI and tests call it. */
	{
		uint8_t hash[CRED_SECRET_HASH_BYTES];

		memset(hash, 1, sizeof(hash));
		memset(&counted, 0, sizeof(counted));
		CHECK_ERR(api_auth_decide(NULL, hash, API_ROLE_SIGNER, NULL,
		    NULL), P8V_ERR_UNAUTHORIZED);
		CHECK_INT(counted.equal_32, 1);
	}
	store_close(store);
	tu_rmtree(dir);
	free(dir);
}

int
main(void)
{
	REQUIRE(secmem_init() == 0);
	test_unknown_id_costs_a_wrong_secret();
	return check_finish();
}
