/*
 * keeper.h: key custody. The whole contract of the keeper.
 *
 * The keeper is the only code that holds a master key, a data key or a
 * plaintext Apple key. It loads the master keyring from master-key files
 * or the systemd credential, seals an uploaded .p8 (which it parses and
 * validates itself), re-seals a record whose metadata changed, signs APNs
 * provider tokens and the other Apple JWTs, seals and opens the persisted
 * copy of an APNs token, re-wraps envelopes under another master key and
 * vouches that a record opens under its identity. It touches no store, no
 * HTTP and no file other than the master-key files.
 *
 * Everything crosses this interface as bytes and fixed structs, so that the
 * keeper can become a separate process (a socketpair and typed messages)
 * without changing a caller:
 * - A stored record is given as its authenticated data and its envelope
 *   (struct keeper_record): the AAD is key_record_aad's (or
 *   key_record_raw_aad's) bytes, which name the record's identity and hold
 *   its whole clear metadata. The keeper trusts nothing in them until the
 *   envelope opens under exactly those bytes; the Key ID, Team ID, services
 *   and public point it signs with come from them, never from the caller.
 * - A record's new clear fields (seal, re-seal) are a struct key_record
 *   (common/keyrecord.h), whose canonical metadata encoding is its wire
 *   form; the keeper validates every field (key_record_check's rules).
 * - A profile token's fields are a fixed struct (struct keeper_profile):
 *   no JSON. The keeper checks every limit again and builds every header
 *   member and every claim itself.
 * No function takes JOSE header or claims bytes, and none returns a key:
 * results are envelopes, signed tokens and public facts.
 *
 * The keyring is replaced as a whole (keeper_replace, the daemon's SIGHUP):
 * a call that is running finishes with the ring it started with (a counted
 * reference) and the replaced ring is wiped when the last of them ends.
 *
 * All functions are thread-safe once the keeper's keys are loaded (load
 * keys before sharing a keeper, or load into another one and
 * keeper_replace). Every int function returns 0 or a P8V_ERR_*. Buffers
 * returned through pointers are malloc'd and belong to the caller; tokens
 * are wiped by keeper_token_finish.
 */
#ifndef P8V_KEEPER_KEEPER_H
#define P8V_KEEPER_KEEPER_H

#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/keyrecord.h"
#include "crypto/masterkey.h"

/* At most this many master keys at once (old + new + spare). */
#define KEEPER_KEYS_MAX MASTER_KEYRING_MAX

/* --- master keys --- */

/* What the keeper tells about one master key: never the key. */
struct keeper_key_info {
	uint8_t id[MASTER_KEY_ID_BYTES];
	char id_hex[MASTER_KEY_ID_HEX + 1];
	uint8_t check[MASTER_KEY_CHECK_BYTES]; /* the store records it */
};

/* The keyring: its keys in the order loaded, and which one seals. */
struct keeper_status {
	size_t n;                       /* 0: no key loaded */
	size_t primary;                 /* index into keys; valid if n > 0 */
	struct keeper_key_info keys[KEEPER_KEYS_MAX];
};

struct keeper;

/* An empty keeper (no master key: every operation on keys fails with
 * P8V_ERR_NO_MASTER_KEY). Initialises guarded memory (secmem_init).
 * 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, P8V_ERR_SECMEM. */
int keeper_create(struct keeper **out);

/* Wipe every key and free the keeper. No call may be running. NULL-safe. */
void keeper_destroy(struct keeper *k);

/*
 * Load a master key into k's keyring: from a master-key file
 * (master_key_load_file's rules: mode, owner, size), or from the systemd
 * credential MASTER_KEY_CREDENTIAL in $CREDENTIALS_DIRECTORY. The key
 * loaded last is the primary unless keeper_set_primary chose one. *info
 * (may be NULL) describes it; a key already held is held once (0).
 * Returns 0, P8V_ERR_NOT_FOUND (no such file; no credential),
 * P8V_ERR_TOO_LARGE (already KEEPER_KEYS_MAX keys), the errors of
 * master_key_load_file, P8V_ERR_ALLOC, P8V_ERR_INVALID_ARGUMENT.
 */
int keeper_load_file(struct keeper *k, const char *path,
    struct keeper_key_info *info);
int keeper_load_credential(struct keeper *k, struct keeper_key_info *info);

/* New seals use the key with this id from now on. 0, P8V_ERR_NOT_FOUND,
 * P8V_ERR_INVALID_ARGUMENT. */
int keeper_set_primary(struct keeper *k,
    const uint8_t id[MASTER_KEY_ID_BYTES]);

/* The keyring's key ids and check values. 0 or P8V_ERR_INVALID_ARGUMENT. */
int keeper_status(struct keeper *k, struct keeper_status *st);

/* 1 if k holds the master key with this id, else 0. */
int keeper_has_key(struct keeper *k, const uint8_t id[MASTER_KEY_ID_BYTES]);

/*
 * Replace k's keyring with fresh's (the daemon's SIGHUP: the new files
 * are loaded into a fresh keeper, checked by the caller, then swapped in).
 * Takes fresh (destroyed, also on failure). Calls already running on k
 * finish with the old ring. Returns 0, P8V_ERR_NO_MASTER_KEY (fresh holds
 * no key; k unchanged), P8V_ERR_INVALID_ARGUMENT.
 */
int keeper_replace(struct keeper *k, struct keeper *fresh);

/* --- key records --- */

/* A stored record as the keeper takes it: bytes owned by the caller. */
struct keeper_record {
	const uint8_t *aad;     /* key_record_aad / key_record_raw_aad */
	size_t aad_len;
	const uint8_t *env;     /* the record's envelope */
	size_t env_len;
};

/*
 * Seal an uploaded .p8 for rec: parse and validate p8 (p8_parse: every
 * P8V_ERR_P8_* unchanged), fill rec->public_point and rec->fingerprint
 * from the key, check every clear field (key_record_check's rules, the
 * envelope aside), and seal the scalar under the primary master key with
 * rec's AAD into rec->envelope (malloc'd; any previous one is freed).
 * *mk_id (may be NULL) gets the id of the sealing key (wrap counting).
 * Returns 0, any P8V_ERR_P8_*, the errors of key_record_aad (bad ids:
 * P8V_ERR_BAD_APP_ID, ...; P8V_ERR_BAD_FIELD), P8V_ERR_NO_MASTER_KEY,
 * P8V_ERR_SECMEM, P8V_ERR_ALLOC, P8V_ERR_CRYPTO, P8V_ERR_RANDOM,
 * P8V_ERR_INVALID_ARGUMENT. On failure rec's point, fingerprint and
 * envelope are cleared.
 */
int keeper_seal(struct keeper *k, const uint8_t *p8, size_t p8_len,
    struct key_record *rec, uint8_t mk_id[MASTER_KEY_ID_BYTES]);

/*
 * Re-seal for changed metadata: open old under its AAD (any loaded key)
 * and seal its scalar under the AAD of rec's clear fields with the primary
 * key. Only state, environment, services, topics, version and updated_at
 * may differ between old and rec: a change of app, Key ID, Team ID,
 * fingerprint, public point, created_at or created_by is refused with
 * P8V_ERR_INVALID_ARGUMENT before anything is opened. *env is malloc'd
 * (the new envelope); *mk_id (may be NULL) as for keeper_seal.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_INTEGRITY (old does not
 * open, or its AAD does not decode), P8V_ERR_MASTER_KEY_MISSING,
 * P8V_ERR_NO_MASTER_KEY, the errors of key_record_aad for rec,
 * P8V_ERR_SECMEM, P8V_ERR_ALLOC, P8V_ERR_CRYPTO, P8V_ERR_RANDOM.
 */
int keeper_reseal(struct keeper *k, const struct keeper_record *old,
    const struct key_record *rec, uint8_t **env, size_t *env_len,
    uint8_t mk_id[MASTER_KEY_ID_BYTES]);

/* Which check of a record failed (keeper_vouch, keeper_sign_*), and its
 * name for logs ("aad", "open", "scalar_length", "public_point"; NULL for
 * KEEPER_STEP_NONE). */
enum keeper_step {
	KEEPER_STEP_NONE = 0,
	KEEPER_STEP_AAD,        /* the AAD does not decode to a record */
	KEEPER_STEP_OPEN,       /* the envelope does not open under it */
	KEEPER_STEP_LENGTH,     /* the payload is not 32 bytes */
	KEEPER_STEP_SCALAR,     /* the payload is not a scalar of the
	                           record's public point */
};

const char *keeper_step_name(enum keeper_step step);

/*
 * Vouch that rec opens under its own identity and metadata, and that the
 * sealed scalar is the private key of the public point its metadata
 * names; the scalar is wiped at once. *step (may be NULL) gets the check
 * that failed. A record's exact bytes that passed once are remembered
 * (see keeper.c): later calls for them skip the scalar check, never the
 * open. Returns 0, P8V_ERR_INTEGRITY, P8V_ERR_MASTER_KEY_MISSING,
 * P8V_ERR_INVALID_ARGUMENT, P8V_ERR_SECMEM, P8V_ERR_ALLOC.
 */
int keeper_vouch(struct keeper *k, const struct keeper_record *rec,
    enum keeper_step *step);

/*
 * Re-wrap rec's envelope (a record's: its AAD must start with the record
 * label) under the master key target (NULL: the primary), without
 * changing the payload or the AAD. *env is malloc'd. Returns 0,
 * P8V_ERR_INTEGRITY, P8V_ERR_MASTER_KEY_MISSING, P8V_ERR_NOT_FOUND (no
 * key target), P8V_ERR_NO_MASTER_KEY, P8V_ERR_ALLOC, P8V_ERR_CRYPTO,
 * P8V_ERR_RANDOM, P8V_ERR_INVALID_ARGUMENT.
 */
int keeper_rewrap(struct keeper *k, const struct keeper_record *rec,
    const uint8_t *target, uint8_t **env, size_t *env_len);

/* --- tokens --- */

/* A signed token. */
struct keeper_token {
	char *token;            /* compact JWS, malloc'd */
	char key_id[IDS_APPLE_ID_LEN + 1];      /* from the record's metadata */
	char team_id[IDS_APPLE_ID_LEN + 1];
	int64_t issued_at;      /* iat: the keeper's CLOCK_REALTIME */
	int64_t expires_at;     /* exp, or issued_at + KEEPER_DEFAULT_LIFETIME_S */
};

/* Apple takes an APNs token (and a DeviceCheck one) for an hour. */
#define KEEPER_DEFAULT_LIFETIME_S (60 * 60)

/* Wipe and free t->token and zero t. NULL-safe. */
void keeper_token_finish(struct keeper_token *t);

/* The persisted copy of an APNs token (see keeper_apns.c for its format),
 * stored by the caller under "apns/<team>/<key id>/<fingerprint>". */
#define KEEPER_APNS_KEY_PREFIX "apns/"
#define KEEPER_APNS_KEY_BYTES (5 + IDS_APPLE_ID_LEN + 1 + IDS_APPLE_ID_LEN + \
    1 + KEY_RECORD_FINGERPRINT_HEX + 1)

struct keeper_apns_token {
	struct keeper_token t;
	int64_t boot_ns;        /* CLOCK_BOOTTIME of the mint */
	char cache_key[KEEPER_APNS_KEY_BYTES];  /* where the blob belongs */
	uint8_t *blob;          /* the sealed copy, malloc'd */
	size_t blob_len;
	uint8_t mk_id[MASTER_KEY_ID_BYTES];     /* sealed the blob */
};

/* keeper_token_finish for it, and the blob. NULL-safe. */
void keeper_apns_token_finish(struct keeper_apns_token *t);

/*
 * Mint an APNs provider token with rec: header {"alg":"ES256","kid":KID},
 * claims {"iss":TEAM,"iat":NOW}, KID and TEAM from rec's authenticated
 * metadata, NOW the keeper's wall clock; and its sealed copy (blob) for
 * the store, with boot_id (this boot's, CLOCK_BOOT_ID_BYTES) and the
 * CLOCK_BOOTTIME of the mint in its header. The record must carry the
 * "apns" service. Returns 0, P8V_ERR_SERVICE_NOT_ALLOWED, P8V_ERR_INTEGRITY
 * (does not open, or not its point's scalar: logged by the caller),
 * P8V_ERR_MASTER_KEY_MISSING, P8V_ERR_NO_MASTER_KEY, P8V_ERR_SECMEM,
 * P8V_ERR_ALLOC, P8V_ERR_CRYPTO, P8V_ERR_RANDOM, P8V_ERR_INVALID_ARGUMENT;
 * *step as for keeper_vouch. out is zeroed on failure.
 */
int keeper_sign_apns(struct keeper *k, const struct keeper_record *rec,
    const uint8_t boot_id[CLOCK_BOOT_ID_BYTES],
    struct keeper_apns_token *out, enum keeper_step *step);

/* A persisted APNs token, opened. */
struct keeper_apns_blob {
	char *token;            /* malloc'd; wiped by keeper_apns_blob_finish */
	int64_t issued_at;
	uint8_t boot_id[CLOCK_BOOT_ID_BYTES];
	int64_t boot_ns;
};

void keeper_apns_blob_finish(struct keeper_apns_blob *b);

/*
 * Open a persisted APNs token stored under cache_key: the blob must be
 * well formed, open under its AAD (its key and header), and hold a token
 * of 1..JWT_MAX_TOKEN_BYTES-1 printable characters. Returns 0,
 * P8V_ERR_INTEGRITY (malformed, altered, moved), P8V_ERR_MASTER_KEY_MISSING,
 * P8V_ERR_SECMEM, P8V_ERR_ALLOC, P8V_ERR_INVALID_ARGUMENT.
 */
int keeper_apns_blob_open(struct keeper *k, const char *cache_key,
    const uint8_t *blob, size_t len, struct keeper_apns_blob *out);

/* A blob re-wrapped under target (NULL: the primary), as keeper_rewrap.
 * *out is malloc'd, as long as blob. */
int keeper_apns_blob_rewrap(struct keeper *k, const char *cache_key,
    const uint8_t *blob, size_t len, const uint8_t *target, uint8_t **out,
    size_t *out_len);

/* Pure (no key): the master key id a blob's envelope names. 0 or
 * P8V_ERR_INTEGRITY. */
int keeper_apns_blob_master_key_id(const uint8_t *blob, size_t len,
    uint8_t id[MASTER_KEY_ID_BYTES]);

/* --- the other Apple JWTs --- */

enum keeper_profile_kind {
	KEEPER_PROFILE_APP_STORE_CONNECT = 0,
	KEEPER_PROFILE_SIGN_IN_WITH_APPLE,
	KEEPER_PROFILE_MUSICKIT,
	KEEPER_PROFILE_WEATHERKIT,
	KEEPER_PROFILE_DEVICECHECK,
	KEEPER_PROFILE_MAPS,
	KEEPER_PROFILES
};

/* Limits (the reasons are in keeper/profile.h). */
#define PROFILE_ASC_EXPIRES_MAX_S (20 * 60)
#define PROFILE_APPLE_EXPIRES_MAX_S 15777000
#define PROFILE_SIWA_EXPIRES_DEFAULT_S 86400
#define PROFILE_PUBLIC_EXPIRES_DEFAULT_S 3600
#define PROFILE_WEATHERKIT_EXPIRES_MAX_S 86400
#define PROFILE_WEATHERKIT_EXPIRES_DEFAULT_S 3600
#define PROFILE_MAPS_EXPIRES_MAX_S PROFILE_APPLE_EXPIRES_MAX_S
#define PROFILE_UUID_LEN 36
#define PROFILE_ID_MAX 255
#define PROFILE_SCOPE_MAX 32
#define PROFILE_SCOPE_ITEM_MAX 256
#define PROFILE_ORIGIN_MAX 16
#define PROFILE_ORIGIN_ITEM_MAX (8 + 253 + 6)
#define PROFILE_LIST_BYTES_MAX 2048
/* The struct's list holds the longer of the two lists and items. */
#define PROFILE_LIST_MAX PROFILE_SCOPE_MAX
#define PROFILE_LIST_ITEM_MAX PROFILE_ORIGIN_ITEM_MAX

/*
 * The fields of a profile token (vault/profiles.h documents each profile's
 * members, limits and token shape). Fields a profile does not take must be
 * empty: "" and n_list 0.
 */
struct keeper_profile {
	enum keeper_profile_kind kind;
	int64_t expires_in;             /* 0 for devicecheck (no exp) */
	char issuer_id[PROFILE_UUID_LEN + 1];   /* app_store_connect */
	char subject[PROFILE_ID_MAX + 1];       /* client_id, service_id */
	size_t n_list;                  /* scope (app_store_connect) or
	                                   origin (musickit, maps) */
	char list[PROFILE_LIST_MAX][PROFILE_LIST_ITEM_MAX + 1];
};

/*
 * Sign a profile token with rec: p is checked again in full
 * (keeper_profile_check), then the header and the claims are built from p,
 * rec's authenticated Key ID and Team ID and the keeper's wall clock. The
 * record must carry the profile's service. out->expires_at is the exp
 * claim, or issued_at + KEEPER_DEFAULT_LIFETIME_S without one.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (p refused), P8V_ERR_SERVICE_NOT_ALLOWED,
 * P8V_ERR_TOO_LARGE, and keeper_sign_apns's errors. out zeroed on failure.
 */
int keeper_sign_profile(struct keeper *k, const struct keeper_record *rec,
    const struct keeper_profile *p, struct keeper_token *out,
    enum keeper_step *step);

/* --- the keeper as its own process (keeper/client.c) --- */

/*
 * p8vaultd and p8vault hold no master key, data key or plaintext key:
 * they start the program p8vault-keeper (keeper/main.c), which loads the
 * master keys, locks itself into a sandbox and answers the operations
 * above over socketpairs (keeper/proto.h). A keeper made by keeper_start
 * is used through every function of this header exactly as one made by
 * keeper_create, except that keeper_load_file, keeper_load_credential and
 * keeper_has_key's callers learn about keys only through keeper_status,
 * and any call may fail with P8V_ERR_KEEPER_UNAVAILABLE (the process
 * died or does not answer; nothing was done).
 */
#define KEEPER_PROGRAM "p8vault-keeper"
#define KEEPER_CHANNELS_MAX 64

struct keeper_process_options {
	const char *program;            /* NULL: keeper_program_path() */
	const char *const *key_files;   /* master-key files, loaded in order */
	size_t n_key_files;             /* 0: the systemd credential */
	const char *generate;           /* NULL, or a master-key file the
	                                   keeper creates first (it must not
	                                   exist; list it in key_files too) */
	unsigned int channels;          /* calls at once; 0: 2 */
	int restart;                    /* start a new keeper when it dies
	                                   (the daemon) */
};

/*
 * Start a keeper process and wait for it to load its keys. *bad_file (may
 * be NULL) gets the index into key_files of the file that failed (or
 * n_key_files for generate), SIZE_MAX when no file is to blame.
 * Returns 0, the errors of keeper_load_file / keeper_load_credential /
 * master_key_generate_file for that file, P8V_ERR_NOT_FOUND (no
 * p8vault-keeper program), P8V_ERR_KEEPER_UNAVAILABLE (it did not start or
 * answer), P8V_ERR_IO, P8V_ERR_ALLOC, P8V_ERR_INVALID_ARGUMENT.
 */
int keeper_start(const struct keeper_process_options *o, struct keeper **out,
    size_t *bad_file);

/* Where p8vault-keeper is: beside the running program, in the build
 * tree's keeper/ directory beside its directory, or in the libexec
 * directory it was built for. 0 or P8V_ERR_NOT_FOUND. */
int keeper_program_path(char *buf, size_t size);

/* 1 if k can serve keys now (a local keeper, or a keeper process that
 * runs), else 0. */
int keeper_ready(struct keeper *k);

/* The keeper process's pid, 0 for a local keeper or while none runs. */
int keeper_pid(struct keeper *k);

/* How many times the supervisor started a keeper process again after one
 * ended (keeper_process_options.restart), since keeper_start; 0 for a
 * local keeper. A replacement by keeper_replace (SIGHUP) is not one. */
uint64_t keeper_restarts(struct keeper *k);

/*
 * Pipelined calls, for an event loop (api/http.c). A pipe belongs to one
 * thread. A call is queued without waiting; keeper_pipe_flush sends what
 * is queued in one go; keeper_pipe_wait reads the answers and calls each
 * call's done, oldest first, exactly once: result 0 with the token (done
 * may take tok->token, setting it to NULL; the rest is finished after it
 * returns), else the call's error (P8V_ERR_KEEPER_UNAVAILABLE when the
 * keeper died or did not answer within the channel's timeout) and no
 * token. done must not call the pipe. The keeper answers a batch with one
 * wake-up each way, where synchronous calls cost two per call.
 */
struct keeper_pipe;
typedef void (*keeper_pipe_done)(void *arg, int result,
    struct keeper_token *tok, enum keeper_step step);

/* A pipe to k's keeper process. 0, P8V_ERR_UNSUPPORTED (k runs in this
 * process: call it directly), P8V_ERR_ALLOC, P8V_ERR_INVALID_ARGUMENT. */
int keeper_pipe_open(struct keeper *k, struct keeper_pipe **out);
/* Wait for the calls in flight (their done run), answer the queued ones
 * P8V_ERR_KEEPER_UNAVAILABLE, free the pipe. NULL-safe. */
void keeper_pipe_close(struct keeper_pipe *pp);
/* Queue keeper_sign_profile(rec, p): 0, then done is called later.
 * P8V_ERR_BUSY: not queued, call keeper_sign_profile instead (the pipe is
 * full, the request larger than a pipe's slot, KPROTO_SLOT_BYTES, or the
 * pipe's keeper was replaced while calls are in flight);
 * P8V_ERR_KEEPER_UNAVAILABLE, P8V_ERR_INVALID_ARGUMENT. rec and p are
 * copied. */
int keeper_pipe_sign_profile(struct keeper_pipe *pp,
    const struct keeper_record *rec, const struct keeper_profile *p,
    keeper_pipe_done done, void *arg);
/* Send the queued calls. 0, or P8V_ERR_KEEPER_UNAVAILABLE (then every
 * call was answered so). */
int keeper_pipe_flush(struct keeper_pipe *pp);
/* Wait for the first answer of the calls in flight (up to the channel's
 * timeout), read those there are and run their done. */
void keeper_pipe_wait(struct keeper_pipe *pp);
/* Calls queued or in flight. */
size_t keeper_pipe_pending(const struct keeper_pipe *pp);
/* Give the channel back if nothing is queued or in flight (the end of an
 * event loop's turn: a busy loop keeps its channel). */
void keeper_pipe_idle(struct keeper_pipe *pp);

#endif /* P8V_KEEPER_KEEPER_H */
