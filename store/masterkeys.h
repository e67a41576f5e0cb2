/*
 * masterkeys.h: which master keys a state directory has used.
 *
 * The meta database keeps, for every master key the store has ever been
 * opened with, "mk/<key id hex>" -> check value (MASTER_KEY_CHECK_BYTES,
 * crypto/masterkey.h) || u64 big-endian first_seen (seconds since the
 * epoch). The check value is an HMAC of a fixed label under the key: it
 * names the key without revealing it, and lets start-up refuse a wrong key
 * at once instead of failing later to decrypt. A retired key loses its
 * check value and is listed instead as "mkr/<key id hex>" -> u64
 * big-endian retired_at (store_master_key_retire).
 */
#ifndef P8V_STORE_MASTERKEYS_H
#define P8V_STORE_MASTERKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/masterkey.h"
#include "store/store.h"

/* A loaded master key as the store sees it: its id and check value, never
 * the key (the keeper's struct keeper_key_info holds the same). */
struct store_master_key_check {
	char id_hex[MASTER_KEY_ID_HEX + 1];
	uint8_t check[MASTER_KEY_CHECK_BYTES];
};

/*
 * Check the loaded keys (n of them) against the store, in one write
 * transaction:
 * - a store that has recorded no master key yet records every key;
 * - otherwise at least one key must be recorded with a matching
 *   check value (constant-time compare), else P8V_ERR_MASTER_KEY_MISMATCH
 *   with a log line naming the loaded and the recorded key ids (ids only);
 * - a loaded key whose id is recorded with a different check value is
 *   refused with P8V_ERR_MASTER_KEY_MISMATCH (a forged or corrupt entry);
 * - a loaded key that was retired (store_master_key_retire) is refused
 *   with P8V_ERR_MASTER_KEY_RETIRED, logged with its id;
 * - a loaded key the store has not seen is recorded and logged as
 *   "new master key <id> accepted (rotation)".
 * The time of the check is recorded as first_seen.
 * Returns 0, P8V_ERR_NO_MASTER_KEY (n is 0), P8V_ERR_MASTER_KEY_RETIRED,
 * P8V_ERR_MASTER_KEY_MISMATCH,
 * P8V_ERR_INTEGRITY (a malformed meta entry), P8V_ERR_INVALID_ARGUMENT
 * (more than MASTER_KEYRING_MAX keys, an id that is not 16 lowercase hex),
 * P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int store_master_keys_check(struct store *store,
    const struct store_master_key_check *keys, size_t n);

/*
 * The wrap budget (crypto/envelope.h): every envelope sealed under a master
 * key draws a random 96-bit nonce for its data key's wrap, so a key must
 * stay far below 2^32 wraps. The meta database counts them per key,
 * "mkw/<key id hex>" -> u64 big-endian; whoever stores a new envelope adds
 * to its key's count in the same write transaction.
 * store_master_key_wraps_add: add n to the count of key id; *total (may be
 * NULL) gets the new count (saturating at UINT64_MAX). A retired key
 * (store_master_key_retire) is refused: no envelope sealed under one is
 * ever committed. 0, P8V_ERR_MASTER_KEY_RETIRED, P8V_ERR_INTEGRITY (a
 * malformed entry), P8V_ERR_NO_SPACE, P8V_ERR_STORE,
 * P8V_ERR_INVALID_ARGUMENT.
 * store_master_key_wraps: the count of key id (0 if none). 0,
 * P8V_ERR_INTEGRITY, P8V_ERR_STORE, P8V_ERR_INVALID_ARGUMENT.
 */
int store_master_key_wraps_add(struct store_txn *txn,
    const uint8_t id[MASTER_KEY_ID_BYTES], uint64_t n, uint64_t *total);
int store_master_key_wraps(struct store_txn *txn,
    const uint8_t id[MASTER_KEY_ID_BYTES], uint64_t *total);

/*
 * Retire master key id: its check value ("mk/<id>") is removed and the id
 * listed as retired ("mkr/<id hex>" -> u64 big-endian retired_at = now),
 * so that a start or a reload that loads it is refused
 * (store_master_keys_check) and nothing is sealed under it again
 * (store_master_key_wraps_add). Whether records or tokens still use it is
 * the caller's check, in the same transaction (vault_master_retire).
 * Returns 0, P8V_ERR_NOT_FOUND (no recorded key with this id),
 * P8V_ERR_MASTER_KEY_RETIRED (already retired), P8V_ERR_MASTER_KEY_IN_USE
 * (the only recorded key: without one, any key would be recorded as for a
 * new state directory), P8V_ERR_INTEGRITY, P8V_ERR_NO_SPACE,
 * P8V_ERR_STORE, P8V_ERR_INVALID_ARGUMENT.
 */
int store_master_key_retire(struct store_txn *txn,
    const uint8_t id[MASTER_KEY_ID_BYTES], int64_t now);

/* One master key the store knows of, and how many records it seals. */
struct store_master_key_usage {
	uint8_t id[MASTER_KEY_ID_BYTES];
	char id_hex[MASTER_KEY_ID_HEX + 1];
	int recorded;          /* 1: has a check value in meta */
	int64_t first_seen;    /* 0 when not recorded */
	uint64_t records;      /* key records whose envelope names this key */
};

/*
 * Every recorded master key, plus any key named by an envelope but not
 * recorded (recorded = 0: data sealed under a key this store never checked),
 * with the number of key records each seals (a full scan; tombstones have no
 * envelope and count for none). Ordered by id. *out is malloc'd (free());
 * *n may be 0. The records are not decoded: each envelope's key id is read
 * from the stored bytes (key_record_raw_parts). Returns 0,
 * P8V_ERR_INTEGRITY (a record's value or envelope header, or a meta entry,
 * is malformed), P8V_ERR_ALLOC, P8V_ERR_STORE.
 */
int store_master_key_usage(struct store_txn *txn,
    struct store_master_key_usage **out, size_t *n);

#endif /* P8V_STORE_MASTERKEYS_H */
