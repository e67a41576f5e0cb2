/*
 * quota.h: the quotas of one tenant (issue 15, tenant isolation), so that
 * one portal token cannot fill the vault for the others. Internal to
 * vault/; the limits are struct vault_quotas (vault.h).
 */
#ifndef P8V_VAULT_QUOTA_H
#define P8V_VAULT_QUOTA_H

#include <stdint.h>

#include "store/store.h"

struct vault;
struct key_record;

/* The rate table: uploads per token in the current minute. 0 or
 * P8V_ERR_ALLOC; destroy is NULL-safe and safe on what create left. */
int vault_quota_create(struct vault *v);
void vault_quota_destroy(struct vault *v);

/*
 * Count one upload by actor in the current minute: 0, or
 * P8V_ERR_RATE_LIMITED when actor made uploads_per_minute already (the
 * refused one is not counted). Thread-safe; memory only.
 */
int vault_quota_upload_rate(struct vault *v, const char *actor);

/*
 * Before an upload of a new record to app by actor, in a read
 * transaction: if app holds no record yet and actor created the records
 * of apps_per_token apps already, P8V_ERR_TOO_MANY_APPS. 0, that,
 * or a store error.
 */
int vault_quota_new_app(struct vault *v, const char *app, const char *actor);

/*
 * In the upload's write transaction, for a new record: the vault already
 * holds the records quota (P8V_ERR_VAULT_FULL), or app_keys (the app's
 * records that are not revoked, counted by the caller) reaches
 * keys_per_app (P8V_ERR_TOO_MANY_KEYS). 0 otherwise, or a store error.
 */
int vault_quota_new_record(struct vault *v, struct store_txn *txn,
    uint64_t app_keys);

#endif /* P8V_VAULT_QUOTA_H */
