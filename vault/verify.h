/*
 * verify.h: open every sealed key record and check the audit chain, as
 * `p8vault verify` and `p8vault restore` do.
 *
 * Read-only: one snapshot (a read transaction), nothing is written, not
 * even the master keys' check values. Each record is decoded, its envelope
 * opened with the loaded keys (its AAD: identity and metadata), and the
 * private scalar multiplied out and compared with the stored public point
 * (p8_key_from_scalar), so a record that would not sign, or would sign
 * with another key than the one it advertises, is found now rather than
 * at the first request. The scalar lives in guarded memory and is wiped at
 * once.
 */
#ifndef P8V_VAULT_VERIFY_H
#define P8V_VAULT_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "common/ids.h"
#include "keeper/keeper.h"
#include "store/store.h"

/* What was checked, and what failed. */
struct vault_verify_result {
	uint64_t records;       /* key records (tombstones included) */
	uint64_t tombstones;    /* revoked: nothing sealed to open */
	uint64_t opened;        /* opened and matching their public point */
	uint64_t bad;           /* reported to the callback */
	uint64_t audit_events;  /* events checked */
	uint64_t audit_bad_seq; /* where the chain breaks; 0 if it holds */
	int audit_err;          /* 0, or why the chain is broken
	                           (P8V_ERR_INTEGRITY) */
};

/* Why a record is bad: the step that failed. */
enum vault_verify_step {
	VAULT_VERIFY_DECODE = 0,  /* "decode": the stored bytes */
	VAULT_VERIFY_OPEN,        /* "open": the envelope (or AAD) */
	VAULT_VERIFY_PUBLIC_POINT /* "public_point": scalar vs. stored point,
	                             or the fingerprint */
};

/* "decode", "open", "public_point"; NULL for an unknown value. */
const char *vault_verify_step_name(enum vault_verify_step step);

/*
 * Check every key record of store with the keys keeper holds
 * (keeper_vouch), and the audit chain (store_audit_verify). bad (may be NULL) is called for each record
 * that fails, with its app and Key ID ("?" where the stored key does not
 * hold a valid identifier), the step and the error (P8V_ERR_INTEGRITY,
 * P8V_ERR_MASTER_KEY_MISSING, ...); never with key bytes. out is filled
 * as far as it got.
 * Returns 0 when the walk completed (the findings are in out: bad records,
 * audit_err), P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, P8V_ERR_SECMEM,
 * P8V_ERR_STORE (the store could not be read at all).
 */
int vault_verify(struct store *store, struct keeper *keeper,
    void (*bad)(const char *app, const char *key_id,
        enum vault_verify_step step, int err, void *arg),
    void *arg, struct vault_verify_result *out);

/*
 * The (app, Key ID) an LMDB key of the keys database names, for messages
 * about a record that may not decode: each part is copied only if it is a
 * valid identifier, else "?".
 */
void vault_record_ids(const uint8_t *key, size_t klen,
    char app[IDS_APP_MAX + 1], char key_id[IDS_APPLE_ID_LEN + 1]);

#endif /* P8V_VAULT_VERIFY_H */
