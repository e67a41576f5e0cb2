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
struct kremote;

struct keeper {
	struct kremote *remote;         /* set: the keeper is a process
	                                   (client.c); nothing else is used */
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

/* The operations over a keeper process (client.c): keeper.h's, for a
 * keeper made by keeper_start. */
void keeper_remote_destroy(struct kremote *rm);
int keeper_remote_ready(struct kremote *rm);
int keeper_remote_pid(struct kremote *rm);
uint64_t keeper_remote_restarts(struct kremote *rm);
int keeper_remote_replace(struct kremote *rm, struct kremote *fresh);
int keeper_remote_status(struct kremote *rm, struct keeper_status *st);
int keeper_remote_set_primary(struct kremote *rm,
    const uint8_t id[MASTER_KEY_ID_BYTES]);
int keeper_remote_seal(struct kremote *rm, const uint8_t *p8, size_t p8_len,
    struct key_record *rec, uint8_t mk_id[MASTER_KEY_ID_BYTES]);
int keeper_remote_reseal(struct kremote *rm, const struct keeper_record *old,
    const struct key_record *rec, uint8_t **env, size_t *env_len,
    uint8_t mk_id[MASTER_KEY_ID_BYTES]);
int keeper_remote_vouch(struct kremote *rm, const struct keeper_record *rec,
    enum keeper_step *step);
int keeper_remote_rewrap(struct kremote *rm, const struct keeper_record *rec,
    const uint8_t *target, uint8_t **env, size_t *env_len);
int keeper_remote_sign_apns(struct kremote *rm,
    const struct keeper_record *rec,
    const uint8_t boot_id[CLOCK_BOOT_ID_BYTES],
    struct keeper_apns_token *out, enum keeper_step *step);
int keeper_remote_blob_open(struct kremote *rm, const char *cache_key,
    const uint8_t *blob, size_t len, struct keeper_apns_blob *out);
int keeper_remote_blob_rewrap(struct kremote *rm, const char *cache_key,
    const uint8_t *blob, size_t len, const uint8_t *target, uint8_t **out,
    size_t *out_len);
int keeper_remote_pipe_open(struct kremote *rm, struct keeper_pipe **out);
int keeper_remote_sign_profile(struct kremote *rm,
    const struct keeper_record *rec, const struct keeper_profile *p,
    struct keeper_token *out, enum keeper_step *step);

#endif /* P8V_KEEPER_KEEPER_INTERNAL_H */
