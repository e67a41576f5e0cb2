/*
 * keeper_internal.h: what the files of keeper/ share, and nothing else may
 * use.
 */
#ifndef P8V_KEEPER_KEEPER_INTERNAL_H
#define P8V_KEEPER_KEEPER_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/masterkey.h"
#include "keeper/keeper.h"

/*
 * A counted reference to a keyring. keeper_replace swaps the keeper's ring
 * while operations run, so an operation takes the ring once
 * (keeper_ring_get), uses that ring from start to end (never a mix of
 * two), and drops it (keeper_ring_put); the last reference to a replaced
 * ring destroys it, wiping its keys. keys is read-only once shared.
 */
struct keeper_ring {
	struct master_keyring *keys;    /* owned */
	unsigned long refs;             /* under struct keeper's lock */
};

struct kmemo;

struct keeper {
	pthread_mutex_t lock;           /* guards ring and every refs */
	struct keeper_ring *ring;       /* current (holds one reference) */
	pthread_mutex_t memo_lock;
	struct kmemo *memo;             /* see keeper.c */
	int have_lock, have_memo_lock;
};

/* What a record's authenticated metadata says, as the keeper uses it. */
struct keeper_facts {
	char app[IDS_APP_MAX + 1];
	char key_id[IDS_APPLE_ID_LEN + 1];
	char team_id[IDS_APPLE_ID_LEN + 1];
	char fingerprint[KEY_RECORD_FINGERPRINT_HEX + 1];
	uint8_t point[KEY_RECORD_PUBLIC_BYTES];
	uint32_t services;
};

struct keeper_ring *keeper_ring_get(struct keeper *k);
void keeper_ring_put(struct keeper *k, struct keeper_ring *ring);

/*
 * Open rec with ring: its facts (*f, from the memo or decoded from its
 * AAD), its scalar (*scalar, guarded memory, 32 bytes; the caller frees
 * it with secmem_free) checked against the point unless the memo knows
 * these bytes. *step names the check that failed. Returns 0,
 * P8V_ERR_INTEGRITY, P8V_ERR_MASTER_KEY_MISSING, P8V_ERR_ALLOC, ...
 */
int keeper_open_record(struct keeper *k, struct keeper_ring *ring,
    const struct keeper_record *rec, struct keeper_facts *f,
    uint8_t **scalar, enum keeper_step *step);

/* The key a rewrap seals under: target's (P8V_ERR_NOT_FOUND in *err when
 * absent) or, for NULL, the primary (P8V_ERR_NO_MASTER_KEY). */
const struct master_key *keeper_target(const struct master_keyring *ring,
    const uint8_t *target, int *err);

#endif /* P8V_KEEPER_KEEPER_INTERNAL_H */
