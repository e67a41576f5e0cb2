/*
 * tokcache.h: the in-memory APNs provider token cache. Internal to vault/.
 * (The clocks are in common/clock.h.)
 *
 * One entry per (Team ID, Key ID, key fingerprint) for the whole process,
 * whichever apps use that key. An entry holds at most one token (in guarded
 * memory), its iat and the CLOCK_BOOTTIME instant of its mint. Entries live
 * until tokcache_destroy, so a pointer to one stays valid without a lock.
 *
 * Locking: a read-write lock over the hash chains (held only to find or
 * add an entry), and per entry a mutex and a condition variable. A mint
 * runs with no lock held, marked by the entry's "minting" flag: other
 * callers for the same entry wait on the condition variable and take the
 * minted token (single flight). The mint callback may open store
 * transactions; no tokcache lock is ever taken inside one.
 */
#ifndef P8V_VAULT_TOKCACHE_H
#define P8V_VAULT_TOKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/keyrecord.h"
#include "vault/vault_internal.h"

/* "apns/<team>/<key id>/<fingerprint>": 5 + 10 + 1 + 10 + 1 + 64 and a NUL;
 * well under CACHE_KEY_MAX. */
#define TOKCACHE_KEY_BYTES (5 + IDS_APPLE_ID_LEN + 1 + IDS_APPLE_ID_LEN + 1 + \
    KEY_RECORD_FINGERPRINT_HEX + 1)
#define TOKCACHE_KEY_PREFIX "apns/"

#define TOKCACHE_NS_PER_S CLOCK_NS_PER_S

/* What a token is cached under. */
struct tokcache_id {
	char team_id[IDS_APPLE_ID_LEN + 1];
	char key_id[IDS_APPLE_ID_LEN + 1];
	char fingerprint[KEY_RECORD_FINGERPRINT_HEX + 1];
};

/* Fill id from rec's Team ID, Key ID and fingerprint. */
void tokcache_id_of(const struct key_record *rec, struct tokcache_id *id);

/* The store key of id ("apns/TEAM/KEY/fp") into key. */
void tokcache_key(const struct tokcache_id *id, char key[TOKCACHE_KEY_BYTES]);

/* Parse a store key back; 0, or P8V_ERR_BAD_FIELD if it is not exactly of
 * that form (valid ids, 64 lowercase hex). */
int tokcache_parse_key(const char *key, struct tokcache_id *id);

/* What a mint callback returns. */
struct tokcache_minted {
	char *token;            /* malloc'd, NUL-terminated; tokcache wipes
	                           and frees it */
	int64_t issued_at;      /* iat (CLOCK_REALTIME seconds) */
	int64_t boot_ns;        /* CLOCK_BOOTTIME of the mint */
};

/* Sign a new token for the entry; 0 (m filled) or a P8V_ERR_*. Runs with no
 * tokcache lock held. */
typedef int (*tokcache_mint_fn)(void *arg, enum vault_mint_reason why,
    struct tokcache_minted *m);

struct tokcache;

/* reuse_s: the reuse period in seconds (> 0). 0, P8V_ERR_ALLOC,
 * P8V_ERR_INVALID_ARGUMENT. */
int tokcache_create(int64_t reuse_s, struct tokcache **out);

/* Wipe every token and free everything. No call may be running.
 * NULL-safe. */
void tokcache_destroy(struct tokcache *tc);

/*
 * The token for id: the cached one while it is younger than the reuse
 * period, else a new one from mint (see vault.h, vault_apns_token, and the
 * comment in tokcache.c for the rules). rejected (may be NULL) is a token
 * APNs refused, with reject its reason (VAULT_REJECT_EXPIRED or
 * VAULT_REJECT_INVALID). out gets a malloc'd copy with minted 1 if this
 * call minted it; *why (may be NULL) the mint's reason.
 * Returns 0, mint's error (also to the callers that waited for that mint),
 * P8V_ERR_INTEGRITY (the minted token is not made of base64url characters
 * and exactly two dots: vault_token promises that), P8V_ERR_ALLOC,
 * P8V_ERR_SECMEM, P8V_ERR_INVALID_ARGUMENT.
 */
int tokcache_get(struct tokcache *tc, const struct tokcache_id *id,
    const char *rejected, enum vault_reject_reason reject,
    tokcache_mint_fn mint, void *arg, struct vault_token *out,
    enum vault_mint_reason *why);

/*
 * The cached token for id if tokcache_get would hand it out without a
 * mint and without waiting for one: 0 (out as for tokcache_get, minted 0),
 * P8V_ERR_WOULD_BLOCK (no token, a mint is running, or one is due: call
 * tokcache_get from a thread that may wait), P8V_ERR_ALLOC,
 * P8V_ERR_INVALID_ARGUMENT. Never mints, never waits for a mint.
 */
int tokcache_peek(struct tokcache *tc, const struct tokcache_id *id,
    struct vault_token *out);

/*
 * Put a token loaded from the store (minted at boot_ns on this boot's
 * CLOCK_BOOTTIME, or an estimate of it). An entry that holds a token
 * already keeps it. 0, P8V_ERR_INTEGRITY (not a compact JWS's characters,
 * as for tokcache_get), P8V_ERR_ALLOC, P8V_ERR_SECMEM,
 * P8V_ERR_INVALID_ARGUMENT.
 */
int tokcache_seed(struct tokcache *tc, const struct tokcache_id *id,
    const char *token, int64_t issued_at, int64_t boot_ns);

/* Wipe the token cached for id (key revoked); the next call mints. */
void tokcache_invalidate(struct tokcache *tc, const struct tokcache_id *id);

/* Callers asked for a token within this long count in
 * tokcache_oldest_age_ns: a provider asks at least every 5-10 minutes
 * while it sends (docs/api.md), a scrape comes every 15-60 s. */
#define TOKCACHE_ASKED_WINDOW_S 300

/*
 * For /metrics: the largest age (ns) a token had when a caller asked for
 * it (tokcache_get, tokcache_peek), over the entries asked for within
 * TOKCACHE_ASKED_WINDOW_S before now_ns (CLOCK_BOOTTIME); 0 when none, or
 * none had a token. A token is handed out only while younger than the
 * reuse period, so the value passes the reuse period only when a caller
 * found the token due and its renewal failed (the caller got the error,
 * not the token). Takes no lock: relaxed reads of each entry.
 */
int64_t tokcache_oldest_age_ns(struct tokcache *tc, int64_t now_ns);

#endif /* P8V_VAULT_TOKCACHE_H */
