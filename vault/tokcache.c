/*
 * tokcache.c: the in-memory APNs provider token cache; see tokcache.h.
 *
 * Which clock measures a token's age. Apple refuses a token whose iat is
 * more than an hour old (ExpiredProviderToken) and a new token more often
 * than every 20 minutes (TooManyProviderTokenUpdates). Both are limits on
 * real elapsed time between our mint and our use. The obvious code, "age =
 * time(NULL) - iat", measures it on the wall clock, which NTP, an operator
 * or a VM resume can step at any moment:
 *
 *   - stepped forward (or running ahead, node-apn #590), every cached token
 *     looks expired, so every request mints: a new token per request, the
 *     429 storm the cache exists to prevent;
 *   - stepped backward, "now - iat" shrinks or turns negative, so a token
 *     keeps being served long after the hour: ExpiredProviderToken on
 *     every push until the clock catches up.
 *
 * So the age is measured on CLOCK_BOOTTIME: monotonic (never stepped, only
 * slewed), and unlike CLOCK_MONOTONIC it keeps counting while the machine
 * is suspended, so a laptop or VM that sleeps for two hours does not wake
 * up believing its 50-minute-old token is 50 minutes old. Whatever the wall
 * clock does, a token is served only while less than the reuse period (at
 * most 55 minutes) of real time has passed since its mint, and a second
 * mint for the same key never happens sooner than 20 real minutes after the
 * first, except when the key itself changes (a different cache entry) or
 * the reuse period runs out. The wall clock is read only for iat, which is
 * what Apple compares with its own clock: if ours is wrong, the token is
 * wrong no matter when we mint it, and the caller's rejection report (at
 * most one re-mint per 20 minutes) is the way out.
 *
 * The clocks are function pointers so that the unit tests can step them
 * (vault_test_set_clocks, declared only in vault_internal.h); production
 * code never sets them.
 */
#include "vault/tokcache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/jwt.h"
#include "crypto/secmem.h"
#include "common/clock.h"
#include "common/ids.h"

/* A vault holds at most some thousands of keys; 256 chains keep a lookup
 * to a few compares and the table to 2 KiB. Power of two. */
#define TOKCACHE_BUCKETS 256

struct tok_entry {
	struct tok_entry *next;         /* hash chain; set before the entry is
	                                   published, never changed */
	struct tokcache_id id;
	uint32_t hash;

	pthread_mutex_t lock;           /* everything below but has_minted */
	pthread_cond_t mint_done;
	int minting;                    /* a mint is running (single flight) */
	uint64_t generation;            /* +1 after each mint attempt ends */
	int last_error;                 /* result of the last mint attempt */
	char *token;                    /* guarded memory, NUL-terminated */
	size_t token_len;
	int64_t issued_at;
	int64_t minted_boot_ns;         /* CLOCK_BOOTTIME of the mint */
	atomic_int has_minted;          /* ever held a token ("key_changed") */
	/* For /metrics (tokcache_oldest_age_ns), written under lock and
	 * read without one: when a caller last asked for this entry's token
	 * (CLOCK_BOOTTIME, 0: never) and the token's age then (-1: none;
	 * 0 once a mint for that caller succeeded). */
	_Atomic int64_t asked_ns;
	_Atomic int64_t asked_age_ns;
};

/*
 * Entries are added, never removed before tokcache_destroy: a reader walks
 * a chain without a lock, from its head loaded with acquire ordering; a
 * writer (under add_lock) fills an entry, then publishes it as the new head
 * with release ordering.
 */
struct tokcache {
	pthread_mutex_t add_lock;       /* adding entries */
	struct tok_entry *buckets[TOKCACHE_BUCKETS];
	int64_t reuse_ns;
};

/* --- ids and keys --- */

void
tokcache_id_of(const struct key_record *rec, struct tokcache_id *id)
{
	memset(id, 0, sizeof(*id));
	memcpy(id->team_id, rec->team_id, sizeof(id->team_id) - 1);
	memcpy(id->key_id, rec->key_id, sizeof(id->key_id) - 1);
	memcpy(id->fingerprint, rec->fingerprint, sizeof(id->fingerprint) - 1);
}

void
tokcache_key(const struct tokcache_id *id, char key[TOKCACHE_KEY_BYTES])
{
	size_t o = 0, n;

#define TOKCACHE_APPEND(s) do { \
	n = strlen(s); \
	memcpy(key + o, (s), n); \
	o += n; \
} while (0)
	TOKCACHE_APPEND(TOKCACHE_KEY_PREFIX);
	TOKCACHE_APPEND(id->team_id);
	key[o++] = '/';
	TOKCACHE_APPEND(id->key_id);
	key[o++] = '/';
	TOKCACHE_APPEND(id->fingerprint);
	key[o] = '\0';
#undef TOKCACHE_APPEND
}

int
tokcache_parse_key(const char *key, struct tokcache_id *id)
{
	const size_t plen = strlen(TOKCACHE_KEY_PREFIX);
	const char *p;
	size_t i;

	memset(id, 0, sizeof(*id));
	if (strlen(key) != TOKCACHE_KEY_BYTES - 1 ||
	    strncmp(key, TOKCACHE_KEY_PREFIX, plen) != 0)
		return P8V_ERR_BAD_FIELD;
	p = key + plen;
	memcpy(id->team_id, p, IDS_APPLE_ID_LEN);
	p += IDS_APPLE_ID_LEN;
	if (*p++ != '/')
		return P8V_ERR_BAD_FIELD;
	memcpy(id->key_id, p, IDS_APPLE_ID_LEN);
	p += IDS_APPLE_ID_LEN;
	if (*p++ != '/')
		return P8V_ERR_BAD_FIELD;
	memcpy(id->fingerprint, p, KEY_RECORD_FINGERPRINT_HEX);
	if (ids_team_id_valid(id->team_id) != 0 ||
	    ids_key_id_valid(id->key_id) != 0)
		return P8V_ERR_BAD_FIELD;
	for (i = 0; i < KEY_RECORD_FINGERPRINT_HEX; i++) {
		char c = id->fingerprint[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return P8V_ERR_BAD_FIELD;
	}
	return 0;
}

/* --- the table --- */

/*
 * The chain of id: from the first 16 characters of its fingerprint, the hex
 * SHA-256 of the public key, already as spread as a hash of the whole id
 * would make them (FNV-1a over the 92 bytes of the store key, byte by
 * byte, was 1.4% of the daemon's CPU per cached apns-token request).
 */
static uint32_t
hash_id(const struct tokcache_id *id)
{
	uint64_t a, b;

	memcpy(&a, id->fingerprint, sizeof(a));
	memcpy(&b, id->fingerprint + sizeof(a), sizeof(b));
	a ^= b * UINT64_C(0x9e3779b97f4a7c15);
	a *= UINT64_C(0xff51afd7ed558ccd);
	return (uint32_t)(a >> 32);
}

static int
same_id(const struct tokcache_id *a, const struct tokcache_id *b)
{
	return memcmp(a->fingerprint, b->fingerprint,
	    sizeof(a->fingerprint)) == 0 &&
	    strcmp(a->key_id, b->key_id) == 0 &&
	    strcmp(a->team_id, b->team_id) == 0;
}

int
tokcache_create(int64_t reuse_s, struct tokcache **out)
{
	struct tokcache *tc;

	if (out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*out = NULL;
	if (reuse_s <= 0 || reuse_s > INT64_MAX / TOKCACHE_NS_PER_S)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((tc = calloc(1, sizeof(*tc))) == NULL)
		return P8V_ERR_ALLOC;
	if (pthread_mutex_init(&tc->add_lock, NULL) != 0) {
		free(tc);
		return P8V_ERR_ALLOC;
	}
	tc->reuse_ns = reuse_s * TOKCACHE_NS_PER_S;
	*out = tc;
	return 0;
}

static void
drop_token(struct tok_entry *e)
{
	secmem_free(e->token); /* wipes */
	e->token = NULL;
	e->token_len = 0;
	e->issued_at = 0;
}

void
tokcache_destroy(struct tokcache *tc)
{
	struct tok_entry *e, *next;
	size_t i;

	if (tc == NULL)
		return;
	for (i = 0; i < TOKCACHE_BUCKETS; i++) {
		for (e = tc->buckets[i]; e != NULL; e = next) {
			next = e->next;
			drop_token(e);
			pthread_mutex_destroy(&e->lock);
			pthread_cond_destroy(&e->mint_done);
			free(e);
		}
	}
	pthread_mutex_destroy(&tc->add_lock);
	free(tc);
}

static struct tok_entry *
find_entry(struct tokcache *tc, const struct tokcache_id *id, uint32_t h)
{
	struct tok_entry *e;

	for (e = __atomic_load_n(&tc->buckets[h & (TOKCACHE_BUCKETS - 1)],
	    __ATOMIC_ACQUIRE); e != NULL; e = e->next)
		if (e->hash == h && same_id(&e->id, id))
			return e;
	return NULL;
}

/* Find id's entry, adding it if missing. NULL when out of memory. */
static struct tok_entry *
find_or_add(struct tokcache *tc, const struct tokcache_id *id, int add)
{
	struct tok_entry *e;
	uint32_t h;

	h = hash_id(id);
	e = find_entry(tc, id, h);
	if (e != NULL || !add)
		return e;

	pthread_mutex_lock(&tc->add_lock);
	if ((e = find_entry(tc, id, h)) != NULL)
		goto out; /* another thread added it meanwhile */
	if ((e = calloc(1, sizeof(*e))) == NULL)
		goto out;
	if (pthread_mutex_init(&e->lock, NULL) != 0) {
		free(e);
		e = NULL;
		goto out;
	}
	if (pthread_cond_init(&e->mint_done, NULL) != 0) {
		pthread_mutex_destroy(&e->lock);
		free(e);
		e = NULL;
		goto out;
	}
	e->id = *id;
	e->hash = h;
	atomic_init(&e->has_minted, 0);
	atomic_init(&e->asked_ns, 0);
	atomic_init(&e->asked_age_ns, -1);
	e->next = tc->buckets[h & (TOKCACHE_BUCKETS - 1)];
	__atomic_store_n(&tc->buckets[h & (TOKCACHE_BUCKETS - 1)], e,
	    __ATOMIC_RELEASE);
 out:
	pthread_mutex_unlock(&tc->add_lock);
	return e;
}

/* 1 if another key of e's team has held a token in this process. */
static int
team_had_other_key(struct tokcache *tc, const struct tok_entry *e)
{
	const struct tok_entry *o;
	size_t i;
	int found = 0;

	for (i = 0; i < TOKCACHE_BUCKETS && !found; i++)
		for (o = __atomic_load_n(&tc->buckets[i], __ATOMIC_ACQUIRE);
		    o != NULL && !found; o = o->next)
			found = o != e &&
			    strcmp(o->id.team_id, e->id.team_id) == 0 &&
			    atomic_load(&o->has_minted);
	return found;
}

/* Copy e's token into out (e locked and holding a token). */
static int
copy_out(const struct tok_entry *e, int minted, struct vault_token *out)
{
	if ((out->token = malloc(e->token_len + 1)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(out->token, e->token, e->token_len + 1);
	memcpy(out->key_id, e->id.key_id, sizeof(out->key_id));
	memcpy(out->team_id, e->id.team_id, sizeof(out->team_id));
	out->issued_at = e->issued_at;
	out->expires_at = e->issued_at + VAULT_APNS_LIFETIME_S;
	out->minted = minted;
	return 0;
}

/* Store a token in e (e locked): into guarded memory, wiping the old one.
 * P8V_ERR_INTEGRITY if it is not made of a compact JWS's characters. */
static int
set_token(struct tok_entry *e, const char *token, int64_t issued_at,
    int64_t boot_ns)
{
	size_t len = strlen(token);
	char *copy;

	/* What vault_token promises its readers, who copy it into JSON as
	 * it is. */
	if (!jwt_compact_chars_ok(token, len))
		return P8V_ERR_INTEGRITY;
	if ((copy = secmem_alloc(len + 1)) == NULL)
		return P8V_ERR_SECMEM;
	memcpy(copy, token, len + 1);
	drop_token(e);
	e->token = copy;
	e->token_len = len;
	e->issued_at = issued_at;
	e->minted_boot_ns = boot_ns;
	atomic_store(&e->has_minted, 1);
	return 0;
}

/* A caller asks for e's token at now_ns (e locked): two relaxed stores
 * for tokcache_oldest_age_ns, on a cache line the lock dirtied already. */
static void
note_asked(struct tok_entry *e, int64_t now_ns)
{
	atomic_store_explicit(&e->asked_ns, now_ns, memory_order_relaxed);
	atomic_store_explicit(&e->asked_age_ns, e->token == NULL ? -1 :
	    now_ns - e->minted_boot_ns, memory_order_relaxed);
}

enum decision {
	DECIDE_HIT,
	DECIDE_MINT,
};

/*
 * The rules, for an entry not being minted (e locked):
 *   - no token: mint ("cold", or "key_changed" when another key of the team
 *     had one; decided by the caller, outside the lock);
 *   - a rejection of exactly the current token (constant-time compare),
 *     and the current token at least VAULT_APNS_REJECT_MIN_INTERVAL_S old
 *     on CLOCK_BOOTTIME: mint ("rejected_expired"/"rejected_invalid");
 *   - younger than the reuse period: the cached token (also for a
 *     rejection of another token, or of the current one within 20 minutes:
 *     a second mint so soon would only earn TooManyProviderTokenUpdates);
 *   - else: mint ("expired").
 * A negative age cannot happen on CLOCK_BOOTTIME; were the clock broken,
 * re-minting is the choice that never serves a token past the hour.
 */
static enum decision
decide(const struct tok_entry *e, int64_t now_ns, int64_t reuse_ns,
    const char *rejected, size_t rejected_len,
    enum vault_reject_reason reject, enum vault_mint_reason *why)
{
	int64_t age;
	int current;

	if (e->token == NULL) {
		*why = VAULT_MINT_COLD;
		return DECIDE_MINT;
	}
	age = now_ns - e->minted_boot_ns;
	if (rejected != NULL) {
		/* The length of a token is no secret; its bytes are. */
		current = rejected_len == e->token_len &&
		    secmem_equal(rejected, e->token, e->token_len);
		if (current && age >= VAULT_APNS_REJECT_MIN_INTERVAL_S *
		    TOKCACHE_NS_PER_S) {
			*why = reject == VAULT_REJECT_EXPIRED ?
			    VAULT_MINT_REJECTED_EXPIRED :
			    VAULT_MINT_REJECTED_INVALID;
			return DECIDE_MINT;
		}
	}
	if (age >= 0 && age < reuse_ns)
		return DECIDE_HIT;
	*why = VAULT_MINT_EXPIRED;
	return DECIDE_MINT;
}

int
tokcache_get(struct tokcache *tc, const struct tokcache_id *id,
    const char *rejected, enum vault_reject_reason reject,
    tokcache_mint_fn mint, void *arg, struct vault_token *out,
    enum vault_mint_reason *why)
{
	struct tokcache_minted m = { 0 };
	enum vault_mint_reason reason = VAULT_MINT_COLD;
	struct tok_entry *e;
	size_t rejected_len = 0;
	uint64_t gen;
	int64_t now;
	int r = P8V_ERR_INTERNAL;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (tc == NULL || id == NULL || mint == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (rejected != NULL) {
		if (reject != VAULT_REJECT_EXPIRED &&
		    reject != VAULT_REJECT_INVALID)
			return P8V_ERR_INVALID_ARGUMENT;
		/* Longer than any token we mint: not ours, no need to read
		 * further. */
		rejected_len = strnlen(rejected, JWT_MAX_TOKEN_BYTES + 1);
	}
	if ((e = find_or_add(tc, id, 1)) == NULL)
		return P8V_ERR_ALLOC;

	pthread_mutex_lock(&e->lock);
	for (;;) {
		if (e->minting) {
			/* Single flight: wait for the running mint and share
			 * its outcome, success or failure. */
			gen = e->generation;
			while (e->minting && e->generation == gen)
				pthread_cond_wait(&e->mint_done, &e->lock);
			if (e->generation != gen && e->last_error != 0) {
				r = e->last_error;
				goto unlock;
			}
			continue;
		}
		now = clock_boot_now_ns();
		note_asked(e, now);
		if (decide(e, now, tc->reuse_ns, rejected,
		    rejected_len, reject, &reason) == DECIDE_HIT) {
			r = copy_out(e, 0, out);
			goto unlock;
		}
		break;
	}

	/* Mint, with no lock held; others wait on mint_done. */
	e->minting = 1;
	pthread_mutex_unlock(&e->lock);
	if (reason == VAULT_MINT_COLD && team_had_other_key(tc, e))
		reason = VAULT_MINT_KEY_CHANGED;
	r = mint(arg, reason, &m);
	pthread_mutex_lock(&e->lock);
	if (r == 0)
		r = set_token(e, m.token, m.issued_at, m.boot_ns);
	if (r == 0)
		atomic_store_explicit(&e->asked_age_ns, 0,
		    memory_order_relaxed);
	e->minting = 0;
	e->generation++;
	e->last_error = r;
	pthread_cond_broadcast(&e->mint_done);
	if (r == 0) {
		r = copy_out(e, 1, out);
		if (why != NULL)
			*why = reason;
	}
 unlock:
	pthread_mutex_unlock(&e->lock);
	if (m.token != NULL) {
		secmem_wipe(m.token, strlen(m.token));
		free(m.token);
	}
	return r;
}

int
tokcache_peek(struct tokcache *tc, const struct tokcache_id *id,
    struct vault_token *out)
{
	enum vault_mint_reason reason;
	struct tok_entry *e;
	int64_t now;
	int r = P8V_ERR_WOULD_BLOCK;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (tc == NULL || id == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((e = find_or_add(tc, id, 0)) == NULL)
		return P8V_ERR_WOULD_BLOCK; /* never minted: a mint is due */
	/* The entry's lock is never held across a mint (tokcache_get drops
	 * it first), so this waits for a few compares at most. */
	pthread_mutex_lock(&e->lock);
	now = clock_boot_now_ns();
	note_asked(e, now);
	if (!e->minting && decide(e, now, tc->reuse_ns, NULL,
	    0, VAULT_REJECT_NONE, &reason) == DECIDE_HIT)
		r = copy_out(e, 0, out);
	pthread_mutex_unlock(&e->lock);
	return r;
}

int
tokcache_seed(struct tokcache *tc, const struct tokcache_id *id,
    const char *token, int64_t issued_at, int64_t boot_ns)
{
	struct tok_entry *e;
	int r = 0;

	if (tc == NULL || id == NULL || token == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((e = find_or_add(tc, id, 1)) == NULL)
		return P8V_ERR_ALLOC;
	pthread_mutex_lock(&e->lock);
	if (e->token == NULL && !e->minting)
		r = set_token(e, token, issued_at, boot_ns);
	pthread_mutex_unlock(&e->lock);
	return r;
}

void
tokcache_invalidate(struct tokcache *tc, const struct tokcache_id *id)
{
	struct tok_entry *e;

	if (tc == NULL || id == NULL || (e = find_or_add(tc, id, 0)) == NULL)
		return;
	pthread_mutex_lock(&e->lock);
	drop_token(e);
	pthread_mutex_unlock(&e->lock);
}

int64_t
tokcache_oldest_age_ns(struct tokcache *tc, int64_t now_ns)
{
	const struct tok_entry *e;
	int64_t asked, age, oldest = 0;
	size_t i;

	if (tc == NULL)
		return 0;
	/* Entries are never freed before tokcache_destroy: walk the chains
	 * as find_entry does, reading only the atomics. */
	for (i = 0; i < TOKCACHE_BUCKETS; i++)
		for (e = __atomic_load_n(&tc->buckets[i], __ATOMIC_ACQUIRE);
		    e != NULL; e = e->next) {
			asked = atomic_load_explicit(&e->asked_ns,
			    memory_order_relaxed);
			if (asked == 0 || now_ns - asked >
			    TOKCACHE_ASKED_WINDOW_S * TOKCACHE_NS_PER_S)
				continue;
			age = atomic_load_explicit(&e->asked_age_ns,
			    memory_order_relaxed);
			if (age > oldest)
				oldest = age;
		}
	return oldest;
}
