/*
 * records.h: sealed key records.
 *
 * A key record is one Apple signing key of one app: its identity (app id,
 * Key ID), its clear metadata, and the envelope (crypto/envelope.h) that
 * holds the sealed private scalar. The store never sees the scalar; vault/
 * seals and opens it.
 *
 * Stored in the "keys" database:
 *
 *   LMDB key:   app || 0x00 || key_id          (a cursor range lists one app)
 *   LMDB value: 0x01 (format version)
 *               || u32 big-endian length m
 *               || m bytes of metadata: canonical JSON (compact, sorted keys)
 *               || envelope bytes (none for a revoked tombstone)
 *
 * The metadata JSON holds every field of struct key_record except the
 * envelope: {"app","created_at","created_by","environment","fingerprint",
 * "key_id","public_point" (hex),"services" [names],"state","team_id",
 * "topics","updated_at","version"}.
 *
 * Authenticated data. The envelope of a record is sealed with
 *
 *   AAD = "p8vault key record v1" || 0x00 || LMDB key || 0x00 || metadata
 *
 * (key_record_aad), so a record moved to another key, swapped with another
 * record, or with any clear field changed (even its state or version) fails
 * to open with P8V_ERR_INTEGRITY. Whoever changes a record's metadata must
 * therefore re-seal it in the same transaction: key_record_update does that.
 *
 * Decoding is strict: an unknown format version, a length that overruns,
 * invalid or non-canonical JSON, an unknown or missing member, an invalid
 * identifier, or an identity that differs from the LMDB key all fail with
 * P8V_ERR_INTEGRITY, as tampering would.
 */
#ifndef P8V_STORE_RECORDS_H
#define P8V_STORE_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/masterkey.h"
#include "store/ids.h"
#include "store/store.h"

#define KEY_RECORD_FORMAT 1
/* Uncompressed P-256 point: 0x04 || X || Y (same as P8_PUBLIC_BYTES). */
#define KEY_RECORD_PUBLIC_BYTES 65
/* Lowercase hex SHA-256 of the SubjectPublicKeyInfo. */
#define KEY_RECORD_FINGERPRINT_HEX 64
/* A bundle id is at most 155 characters at Apple; APNs topics append
 * suffixes such as ".voip" or ".complication"; 255 leaves room. */
#define KEY_RECORD_TOPIC_MAX 255
/* A topic key covers "many" bundle ids; 64 is generous and bounds a record. */
#define KEY_RECORD_MAX_TOPICS 64
/* "created_by": an API token id or "cli". */
#define KEY_RECORD_ACTOR_MAX 64
/* Largest LMDB key: app, separator, Key ID. */
#define KEY_RECORD_DB_KEY_MAX (IDS_APP_MAX + 1 + IDS_APPLE_ID_LEN)

enum key_env {
	KEY_ENV_DEVELOPMENT = 0,   /* "development" (APNs sandbox) */
	KEY_ENV_PRODUCTION,        /* "production" */
	KEY_ENV_BOTH,              /* "both" */
};

enum key_state {
	KEY_STATE_ACTIVE = 0,      /* "active": signs for the app */
	KEY_STATE_STANDBY,         /* "standby": stored, not used */
	KEY_STATE_REVOKED,         /* "revoked": never signs again */
};

/* The Apple services a key was uploaded for (a bit set). */
#define KEY_SERVICE_APNS               0x01u /* "apns" */
#define KEY_SERVICE_APP_STORE_CONNECT  0x02u /* "app_store_connect" */
#define KEY_SERVICE_SIGN_IN_WITH_APPLE 0x04u /* "sign_in_with_apple" */
#define KEY_SERVICE_MUSICKIT           0x08u /* "musickit" */
#define KEY_SERVICE_WEATHERKIT         0x10u /* "weatherkit" */
#define KEY_SERVICE_DEVICECHECK        0x20u /* "devicecheck" */
#define KEY_SERVICE_MAPS               0x40u /* "maps" */
#define KEY_SERVICE_ALL                0x7fu

struct key_record {
	char app[IDS_APP_MAX + 1];
	char key_id[IDS_APPLE_ID_LEN + 1];
	char team_id[IDS_APPLE_ID_LEN + 1];
	enum key_env environment;
	uint32_t services;                 /* KEY_SERVICE_* bits */
	char **topics;                     /* n_topics malloc'd strings */
	size_t n_topics;
	enum key_state state;
	char fingerprint[KEY_RECORD_FINGERPRINT_HEX + 1];
	uint8_t public_point[KEY_RECORD_PUBLIC_BYTES];
	int64_t created_at;                /* seconds since the epoch */
	char created_by[KEY_RECORD_ACTOR_MAX + 1];
	int64_t updated_at;
	uint64_t version;                  /* +1 on every change */
	uint8_t *envelope;                 /* malloc'd; NULL for a tombstone */
	size_t envelope_len;
};

/* Names <-> values. The *_name functions return NULL for unknown values;
 * the *_from_name functions return 0 or P8V_ERR_BAD_FIELD. */
const char *key_env_name(enum key_env env);
int key_env_from_name(const char *name, enum key_env *env);
const char *key_state_name(enum key_state state);
int key_state_from_name(const char *name, enum key_state *state);
/* Name of one KEY_SERVICE_* bit ("apns"); NULL if bit is not exactly one
 * known bit. */
const char *key_service_name(uint32_t bit);
int key_service_from_name(const char *name, uint32_t *bit);

/* Free the topics and envelope and zero the struct. NULL-safe. */
void key_record_free(struct key_record *rec);

/* Deep copy of src into dst (dst is overwritten, not freed first).
 * 0 or P8V_ERR_ALLOC (dst then zeroed). */
int key_record_copy(struct key_record *dst, const struct key_record *src);

/* Set the topics (copied; replaces any). 0, P8V_ERR_BAD_FIELD (more than
 * KEY_RECORD_MAX_TOPICS, or one invalid), P8V_ERR_ALLOC. */
int key_record_set_topics(struct key_record *rec, const char *const *topics,
    size_t n);

/*
 * Check every field: ids (P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID,
 * P8V_ERR_BAD_TEAM_ID); then P8V_ERR_BAD_FIELD for an unknown environment,
 * state or service bit, a topic that is not 1-255 characters of
 * [A-Za-z0-9._-], more than 64 topics, a fingerprint that is not 64
 * lowercase hex characters, a public point that does not start with 0x04,
 * a bad created_by, negative times, a version of 0 or above 2^53 (JSON
 * integers), or a missing envelope on a record that is not revoked.
 */
int key_record_check(const struct key_record *rec);

/*
 * The authenticated data of rec's envelope (see above), from its clear
 * fields: compute it before sealing (rec->envelope is not looked at).
 * *aad is malloc'd (not secret). Returns 0, any error of key_record_check
 * except those about the envelope, P8V_ERR_ALLOC.
 */
int key_record_aad(const struct key_record *rec, uint8_t **aad,
    size_t *aad_len);

/* Encode / decode the LMDB key and value (exposed for tests and tools).
 * key_record_decode: strict (see above); 0, P8V_ERR_INTEGRITY, P8V_ERR_ALLOC.
 * The decoded record owns copies; free with key_record_free. */
int key_record_encode(const struct key_record *rec, uint8_t **val,
    size_t *val_len);
int key_record_decode(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, struct key_record *rec);

/*
 * A stored value taken apart without decoding it: its metadata bytes (the
 * canonical JSON, exactly as key_record_aad puts them in the AAD) and its
 * envelope (NULL and 0 for a tombstone). Only the format byte and the
 * lengths are checked: for work that the envelope's authentication covers
 * anyway (an envelope opens under the AAD built from these bytes only if
 * they are the bytes it was sealed with), such as re-wrapping it under a
 * new master key or reading which master key seals it. Pointers into val.
 * Returns 0 or P8V_ERR_INTEGRITY.
 */
int key_record_raw_parts(const uint8_t *val, size_t vlen,
    const uint8_t **meta, size_t *meta_len, const uint8_t **env,
    size_t *env_len);

/*
 * The AAD of the record stored under key (klen bytes) with value val, from
 * the raw bytes: what key_record_aad gives for its decoding. *aad is
 * malloc'd. Returns 0, P8V_ERR_INTEGRITY (see key_record_raw_parts),
 * P8V_ERR_ALLOC.
 */
int key_record_raw_aad(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, uint8_t **aad, size_t *aad_len);

/*
 * Store, under key, the value val with its envelope replaced by env (a
 * re-wrap: the format byte and metadata bytes are kept as they are, so the
 * AAD does not change). val must be a value key_record_raw_parts accepts
 * and not a tombstone. Write transactions. Returns 0,
 * P8V_ERR_INTEGRITY, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, and
 * store_put's errors.
 */
int key_record_put_envelope(struct store_txn *txn, const uint8_t *key,
    size_t klen, const uint8_t *val, size_t vlen, const uint8_t *env,
    size_t env_len);
/* The LMDB key of (app, key_id) into buf (KEY_RECORD_DB_KEY_MAX bytes);
 * *klen gets its length. 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID. */
int key_record_db_key(const char *app, const char *key_id,
    uint8_t buf[KEY_RECORD_DB_KEY_MAX], size_t *klen);

/*
 * Insert or replace rec (write transaction). Does not open the envelope:
 * the caller sealed it with key_record_aad(rec). Returns 0, the errors of
 * key_record_check, P8V_ERR_ALLOC, P8V_ERR_NO_SPACE, P8V_ERR_STORE.
 */
int key_record_put(struct store_txn *txn, const struct key_record *rec);

/* Read one record into *rec (caller frees with key_record_free).
 * 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID, P8V_ERR_NOT_FOUND,
 * P8V_ERR_INTEGRITY (stored bytes fail to decode), P8V_ERR_ALLOC,
 * P8V_ERR_STORE. */
int key_record_get(struct store_txn *txn, const char *app,
    const char *key_id, struct key_record *rec);

/* Delete one record. 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID,
 * P8V_ERR_NOT_FOUND, P8V_ERR_NO_SPACE, P8V_ERR_STORE. */
int key_record_delete(struct store_txn *txn, const char *app,
    const char *key_id);

/*
 * Call cb for each record of app (key_record_list) or of the whole store
 * (key_record_foreach), in key order. rec is valid only during the call
 * (freed after). cb returns 0 to go on, STORE_SCAN_STOP to stop, or a
 * negative P8V_ERR_* to stop with it. A stored value that fails to decode
 * stops the walk with P8V_ERR_INTEGRITY. Returns 0, cb's error,
 * P8V_ERR_BAD_APP_ID, P8V_ERR_INTEGRITY, P8V_ERR_ALLOC, P8V_ERR_STORE.
 */
typedef int (*key_record_cb)(const struct key_record *rec, void *arg);
int key_record_list(struct store_txn *txn, const char *app,
    key_record_cb cb, void *arg);
int key_record_foreach(struct store_txn *txn, key_record_cb cb, void *arg);

/* Number of records (tombstones included). 0 or P8V_ERR_STORE. */
int key_record_count(struct store_txn *txn, uint64_t *n);

/*
 * Re-seal for changed metadata: open old->envelope with old's AAD (any key
 * of ring), seal its payload with rec's AAD under the ring's primary key,
 * and store the new envelope in rec. rec->envelope is replaced; the previous
 * buffer is freed unless it is old->envelope. The plaintext exists only in
 * guarded memory and is wiped. Returns 0, P8V_ERR_NO_MASTER_KEY (empty
 * ring), P8V_ERR_INVALID_ARGUMENT (old is a tombstone), the errors of
 * key_record_aad and of envelope_open/envelope_seal (P8V_ERR_INTEGRITY,
 * P8V_ERR_MASTER_KEY_MISSING, ...).
 */
int key_record_reseal(const struct master_keyring *ring,
    const struct key_record *old, struct key_record *rec);

/*
 * Change a stored record's metadata in one step (write transaction):
 * read (app, key_id), let mutate change a copy, then set version to the old
 * version + 1 and updated_at to now, re-seal (key_record_reseal) and write
 * it back. mutate may change any field except app, key_id, version,
 * updated_at and the envelope; to destroy the sealed key (a revoked
 * tombstone) it sets state to KEY_STATE_REVOKED and calls
 * key_record_drop_envelope. mutate returns 0 or a P8V_ERR_* (which aborts
 * the change). *out (may be NULL) gets the new record (caller frees).
 * Returns 0, the errors of key_record_get, key_record_check and
 * key_record_reseal, mutate's error, P8V_ERR_INVALID_ARGUMENT (mutate
 * changed a field it may not change).
 */
int key_record_update(struct store_txn *txn, const struct master_keyring *ring,
    const char *app, const char *key_id, int64_t now,
    int (*mutate)(struct key_record *rec, void *arg), void *arg,
    struct key_record *out);

/* Free and forget the envelope (only a revoked record may lack one). */
void key_record_drop_envelope(struct key_record *rec);

#endif /* P8V_STORE_RECORDS_H */
