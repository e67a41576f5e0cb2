/*
 * test_tokcache.c: what the token cache takes in. A token it hands out is
 * copied into JSON answers as it is (api/sign.c), so the cache refuses,
 * from a mint and from the store alike, anything but base64url characters
 * and exactly two dots. And the age /metrics reports
 * (tokcache_oldest_age_ns), on a clock the test steps.
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "crypto/secmem.h"
#include "tests/check.h"
#include "vault/tokcache.h"

static const struct {
	const char *token;
	int want;
} cases[] = {
	{ "eyJh.eyJp.c2ln", 0 },
	{ "aZ09-_.AZaz09-_.-_", 0 },
	{ "..", 0 },
	{ "eyJh.eyJp", P8V_ERR_INTEGRITY },             /* one dot */
	{ "eyJh.eyJp.c2ln.x", P8V_ERR_INTEGRITY },      /* three */
	{ "eyJh.eyJp.c2ln\"", P8V_ERR_INTEGRITY },      /* a quote */
	{ "eyJh.eyJp.c2\\ln", P8V_ERR_INTEGRITY },      /* a backslash */
	{ "eyJh.eyJp.c2ln=", P8V_ERR_INTEGRITY },       /* padding */
	{ "eyJh.eyJp.c2l+", P8V_ERR_INTEGRITY },        /* base64, not url */
	{ "eyJh.eyJp.c2l\n", P8V_ERR_INTEGRITY },       /* control */
	{ "eyJh.eyJp.c2l\xc3\xa9", P8V_ERR_INTEGRITY }, /* not ASCII */
	{ "eyJh eyJp.c2ln.", P8V_ERR_INTEGRITY },       /* a space */
	{ "", P8V_ERR_INTEGRITY },
};

static const char *mint_with;

static int
mint(void *arg, enum vault_mint_reason why, struct tokcache_minted *m)
{
	(void)arg;
	(void)why;
	if ((m->token = strdup(mint_with)) == NULL)
		return P8V_ERR_ALLOC;
	m->issued_at = 1700000000;
	m->boot_ns = clock_boot_now_ns();
	return 0;
}

static void
set_id(struct tokcache_id *id, size_t i)
{
	memset(id, 0, sizeof(*id));
	memcpy(id->team_id, "DEF1234567", 10);
	memcpy(id->key_id, "ABC1234567", 10);
	memset(id->fingerprint, 'a', KEY_RECORD_FINGERPRINT_HEX);
	id->fingerprint[0] = (char)('a' + i % 6);
	id->fingerprint[1] = (char)('0' + i / 6);
}

static void
test_token_chars(void)
{
	struct tokcache *tc = NULL;
	struct tokcache_id id;
	struct vault_token out;
	size_t i;
	int r;

	REQUIRE(tokcache_create(3000, &tc) == 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Minted. */
		set_id(&id, 2 * i);
		memset(&out, 0, sizeof(out));
		mint_with = cases[i].token;
		r = tokcache_get(tc, &id, NULL, VAULT_REJECT_NONE, mint, NULL,
		    &out, NULL);
		CHECKF(r == cases[i].want, "mint %zu: %s", i, p8v_errname(r));
		if (r == 0)
			CHECKF(strcmp(out.token, cases[i].token) == 0,
			    "mint %zu: token", i);
		vault_token_finish(&out);
		/* Loaded from the store: refused the same way, and then the
		 * entry has no token, so a request mints. */
		set_id(&id, 2 * i + 1);
		r = tokcache_seed(tc, &id, cases[i].token, 1700000000,
		    clock_boot_now_ns());
		CHECKF(r == cases[i].want, "seed %zu: %s", i, p8v_errname(r));
		mint_with = "new.token.x";
		memset(&out, 0, sizeof(out));
		CHECK_OK(tokcache_get(tc, &id, NULL, VAULT_REJECT_NONE, mint,
		    NULL, &out, NULL));
		CHECKF(out.minted == (r != 0), "seed %zu: minted %d", i,
		    out.minted);
		vault_token_finish(&out);
	}
	tokcache_destroy(tc);
}

/* Entries whose fingerprints are the same (the chain is chosen from the
 * fingerprint alone) but whose Key ID or Team ID differ are different
 * entries, each with its own token. */
static void
test_same_chain(void)
{
	static const struct {
		const char *team, *key, *token;
	} ids[] = {
		{ "DEF1234567", "ABC1234567", "a.a.a" },
		{ "DEF1234567", "ABC1234568", "b.b.b" },
		{ "DEF1234568", "ABC1234567", "c.c.c" },
		{ "DEF1234568", "ABC1234568", "d.d.d" },
	};
	struct tokcache *tc = NULL;
	struct tokcache_id id;
	struct vault_token out;
	size_t i, round;

	REQUIRE(tokcache_create(3000, &tc) == 0);
	/* First round: each mints its own; second: each gets its own back. */
	for (round = 0; round < 2; round++) {
		for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
			set_id(&id, 0);
			memcpy(id.team_id, ids[i].team, 10);
			memcpy(id.key_id, ids[i].key, 10);
			mint_with = round == 0 ? ids[i].token : "x.x.x";
			memset(&out, 0, sizeof(out));
			CHECK_OK(tokcache_get(tc, &id, NULL, VAULT_REJECT_NONE,
			    mint, NULL, &out, NULL));
			CHECKF(out.token != NULL &&
			    strcmp(out.token, ids[i].token) == 0,
			    "round %zu id %zu: %s", round, i,
			    out.token != NULL ? out.token : "(null)");
			CHECKF(out.minted == (round == 0), "round %zu id %zu",
			    round, i);
			vault_token_finish(&out);
		}
	}
	tokcache_destroy(tc);
}

static int64_t fake_boot_ns;

static int64_t
fake_boot(void)
{
	return fake_boot_ns;
}

static int
mint_fails(void *arg, enum vault_mint_reason why, struct tokcache_minted *m)
{
	(void)arg;
	(void)why;
	(void)m;
	return P8V_ERR_KEEPER_UNAVAILABLE;
}

#define S ((int64_t)TOKCACHE_NS_PER_S)

/* Get id's token at the fake clock's now; fn mints. */
static int
get_at(struct tokcache *tc, const struct tokcache_id *id, tokcache_mint_fn fn)
{
	struct vault_token out;
	int r;

	memset(&out, 0, sizeof(out));
	mint_with = "a.b.c";
	r = tokcache_get(tc, id, NULL, VAULT_REJECT_NONE, fn, NULL, &out,
	    NULL);
	vault_token_finish(&out);
	return r;
}

/* The oldest age a token had when asked for, over the entries asked for
 * in the last TOKCACHE_ASKED_WINDOW_S: under the reuse period while
 * renewals work, past it when one fails, gone once nobody asks. */
static void
test_oldest_age(void)
{
	struct tokcache *tc = NULL;
	struct tokcache_id a, b, idle;
	struct vault_token out;

	fake_boot_ns = 1000 * S;
	clock_test_set(NULL, fake_boot);
	REQUIRE(tokcache_create(1200, &tc) == 0);
	set_id(&a, 0);
	set_id(&b, 1);
	set_id(&idle, 2);
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 0);
	/* Loaded from the store long ago, never asked for: not counted. */
	CHECK_OK(tokcache_seed(tc, &idle, "x.y.z", 1700000000, 1));
	CHECK_OK(get_at(tc, &a, mint));         /* cold: minted now */
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 0);
	fake_boot_ns += 600 * S;
	CHECK_OK(get_at(tc, &a, mint));         /* a hit, 600 s old */
	CHECK_OK(get_at(tc, &b, mint));         /* b: minted, 0 s */
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 600 * S);
	/* Unchanged until asked again, within the window. */
	fake_boot_ns += 200 * S;
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 600 * S);
	/* peek counts as asking: a is 800 s old now. */
	memset(&out, 0, sizeof(out));
	CHECK_OK(tokcache_peek(tc, &a, &out));
	vault_token_finish(&out);
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 800 * S);
	/* a due (1300 s) and its renewal fails: past the reuse period. */
	fake_boot_ns += 500 * S;
	CHECK_ERR(get_at(tc, &a, mint_fails), P8V_ERR_KEEPER_UNAVAILABLE);
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 1300 * S);
	fake_boot_ns += 100 * S;
	CHECK_ERR(get_at(tc, &a, mint_fails), P8V_ERR_KEEPER_UNAVAILABLE);
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 1400 * S);
	/* Renewed: 0 again (b, asked 800 s ago, is out of the window). */
	CHECK_OK(get_at(tc, &a, mint));
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 0);
	/* Failing again, then nobody asks for 5 minutes: gone. */
	fake_boot_ns += 1300 * S;
	CHECK_ERR(get_at(tc, &a, mint_fails), P8V_ERR_KEEPER_UNAVAILABLE);
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns), 1300 * S);
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns +
	    TOKCACHE_ASKED_WINDOW_S * S), 1300 * S);
	CHECK_INT(tokcache_oldest_age_ns(tc, fake_boot_ns +
	    TOKCACHE_ASKED_WINDOW_S * S + 1), 0);
	CHECK_INT(tokcache_oldest_age_ns(NULL, fake_boot_ns), 0);
	tokcache_destroy(tc);
	clock_test_set(NULL, NULL);
}

int
main(void)
{
	REQUIRE(secmem_init() == 0);
	test_token_chars();
	test_same_chain();
	test_oldest_age();
	return check_finish();
}
