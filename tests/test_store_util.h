/*
 * test_store_util.h: fixtures shared by the store tests: master keys, sample
 * key records sealed the way vault/ seals them, opening them again.
 */
#ifndef P8V_TESTS_TEST_STORE_UTIL_H
#define P8V_TESTS_TEST_STORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/masterkey.h"
#include "store/records.h"
#include "store/store.h"

/* The payload vault/ seals: a P-256 scalar. */
#define TSU_PAYLOAD_BYTES 32

/* 32 deterministic key bytes from a seed (distinct seeds, distinct keys). */
void tsu_raw_key(uint8_t raw[MASTER_KEY_BYTES], unsigned seed);

/* A ring holding the keys of the given seeds (n of them); exits on failure. */
struct master_keyring *tsu_ring(const unsigned *seeds, size_t n);

/* A Key ID for n: 10 characters of [A-Z0-9] ("K" and n in base 36). */
void tsu_key_id(char out[IDS_APPLE_ID_LEN + 1], unsigned n);

/* The payload of record n (stands in for its private scalar). */
void tsu_payload(uint8_t out[TSU_PAYLOAD_BYTES], unsigned n);

/* Fill rec with every field set (app, Key ID from n, topics, services...),
 * not yet sealed. Exits on allocation failure. */
void tsu_record(struct key_record *rec, const char *app, unsigned n);

/* Seal pt into rec->envelope with key_record_aad(rec) under mk.
 * Returns the P8V_ERR_* of key_record_aad / envelope_seal. */
int tsu_seal(struct key_record *rec, const struct master_key *mk,
    const uint8_t *pt, size_t pt_len);

/* Open rec's envelope with ring and compare with want (TSU_PAYLOAD_BYTES).
 * Returns 0, the error of envelope_open, or P8V_ERR_INTEGRITY if the
 * payload differs. */
int tsu_open(const struct key_record *rec, const struct master_keyring *ring,
    const uint8_t *want);

/* Open a store in dir with the given initial map size (0: default);
 * exits on failure. */
struct store *tsu_store(const char *dir, uint64_t initial_map);

/* store_master_keys_check with the ids and check values of ring's keys
 * (what the vault passes from its keeper's status). */
int tsu_keys_check(struct store *s, const struct master_keyring *ring);

#endif /* P8V_TESTS_TEST_STORE_UTIL_H */
