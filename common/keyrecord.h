/*
 * keyrecord.h: the key record: its fields, their rules, its encoding and
 * its authenticated data. Pure code (no store, no keys): the store keeps
 * records in this encoding (store/records.h), the keeper (keeper/) seals
 * and opens their envelopes under this AAD, the vault reads them.
 *
 * A key record is one Apple signing key of one app: its identity (app id,
 * Key ID), its clear metadata, and the envelope (crypto/envelope.h) that
 * holds the sealed private scalar. Only the keeper sees the scalar.
 *
 * Stored value (under the key app || 0x00 || key_id, key_record_db_key):
 *
 *   0x01 (format version)
 *   || u32 big-endian length m
 *   || m bytes of metadata: canonical JSON (compact, sorted keys)
 *   || envelope bytes (none for a revoked tombstone)
 *
 * The metadata JSON holds every field of struct key_record except the
 * envelope: {"app","created_at","created_by","environment","fingerprint",
 * "key_id","public_point" (hex),"services" [names],"state","team_id",
 * "topics","updated_at","version"}.
 *
 * Authenticated data. The envelope of a record is sealed with
 *
 *   AAD = "p8vault key record v1" || 0x00 || db key || 0x00 || metadata
 *
 * (key_record_aad), so a record moved to another key, swapped with another
 * record, or with any clear field changed (even its state or version) fails
 * to open with P8V_ERR_INTEGRITY. Whoever changes a record's metadata must
 * therefore have it re-sealed in the same transaction (the keeper's
 * keeper_reseal; vault/ does it through key_record_update's callback).
 *
 * Decoding is strict: an unknown format version, a length that overruns,
 * invalid or non-canonical JSON, an unknown or missing member, an invalid
 * identifier, or an identity that differs from the db key all fail with
 * P8V_ERR_INTEGRITY, as tampering would; running out of memory is
 * P8V_ERR_ALLOC, never P8V_ERR_INTEGRITY.
 */
#ifndef P8V_COMMON_KEYRECORD_H
#define P8V_COMMON_KEYRECORD_H

#include <stddef.h>
#include <stdint.h>

#include "common/ids.h"

#define KEY_RECORD_FORMAT 1
/* Uncompressed P-256 point: 0x04 || X || Y (same as P8_PUBLIC_BYTES). */
#define KEY_RECORD_PUBLIC_BYTES 65
/* Lowercase hex SHA-256 of the SubjectPublicKeyInfo. */
#define KEY_RECORD_FINGERPRINT_HEX 64
/* A bundle id is at most 155 characters at Apple; APNs topics append
 * suffixes such as ".voip" or ".complication"; 255 leaves room. */
#define KEY_RECORD_TOPIC_MAX 255
/* Apple: a topic-specific key covers up to 400 topics
 * (../shared/APPLE-TOKENS.md). Bounds a record (KEY_RECORD_META_MAX). */
#define KEY_RECORD_MAX_TOPICS 400
/* "created_by": an API token id or "cli". */
#define KEY_RECORD_ACTOR_MAX 64
/* Largest db key: app, separator, Key ID. */
#define KEY_RECORD_DB_KEY_MAX (IDS_APP_MAX + 1 + IDS_APPLE_ID_LEN)
/* Largest metadata JSON of a record: every topic at its longest, quoted
 * with a comma (400 * 258 = 103 200 bytes), and 8 KiB for the other
 * members (well under 1 KiB today). */
#define KEY_RECORD_META_MAX \
	(KEY_RECORD_MAX_TOPICS * (KEY_RECORD_TOPIC_MAX + 3) + 8 * 1024)
/* Largest authenticated data: label and NUL, db key, NUL, metadata
 * (crypto/envelope.h's ENVELOPE_MAX_AAD must hold it; keeper/keeper.c
 * checks). */
#define KEY_RECORD_AAD_MAX (sizeof(KEY_RECORD_AAD_LABEL) + \
	KEY_RECORD_DB_KEY_MAX + 1 + KEY_RECORD_META_MAX)
/* Largest envelope a record holds: ENVELOPE_OVERHEAD + ENVELOPE_MAX_PAYLOAD
 * (crypto/envelope.h; keeper/keeper.c checks that they agree). */
#define KEY_RECORD_ENVELOPE_MAX (97 + 64 * 1024)
/* Prefix of every record's authenticated data (with its NUL). */
#define KEY_RECORD_AAD_LABEL "p8vault key record v1"

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
 * [A-Za-z0-9._-], more than KEY_RECORD_MAX_TOPICS topics, a fingerprint that is not 64
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

/* Encode / decode the db key and stored value.
 * key_record_decode: strict (see above); 0, P8V_ERR_INTEGRITY, P8V_ERR_ALLOC
 * (out of memory: never reported as P8V_ERR_INTEGRITY).
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
 * The clear fields of a record from its authenticated data (the AAD as
 * key_record_aad or key_record_raw_aad make it), decoded as strictly as
 * key_record_decode decodes a stored value; rec->envelope stays NULL.
 * This is how the keeper learns a record's identity from bytes its
 * envelope authenticates. Returns 0, P8V_ERR_INTEGRITY, P8V_ERR_ALLOC,
 * P8V_ERR_INVALID_ARGUMENT.
 */
int key_record_from_aad(const uint8_t *aad, size_t aad_len,
    struct key_record *rec);

/* The db key of (app, key_id) into buf (KEY_RECORD_DB_KEY_MAX bytes);
 * *klen gets its length. 0, P8V_ERR_BAD_APP_ID, P8V_ERR_BAD_KEY_ID. */
int key_record_db_key(const char *app, const char *key_id,
    uint8_t buf[KEY_RECORD_DB_KEY_MAX], size_t *klen);

/* Free and forget the envelope (only a revoked record may lack one). */
void key_record_drop_envelope(struct key_record *rec);

#endif /* P8V_COMMON_KEYRECORD_H */
