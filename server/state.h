/*
 * state.h: what the daemon holds behind its APIs: the keeper (the master
 * keys), the
 * store, and the vault over them (vault/vault.h: the only holder of the
 * keyring once it is open).
 */
#ifndef P8V_SERVER_STATE_H
#define P8V_SERVER_STATE_H

#include "keeper/keeper.h"
#include "server/config.h"
#include "store/store.h"
#include "vault/vault.h"

struct state {
	struct keeper *keeper;         /* the master keys, until state_open
	                                  hands them to the vault */
	size_t n_master_keys;          /* keys loaded, for the logs */
	struct store *store;
	struct vault *vault;
};

/*
 * Start the keeper process (p8vault-keeper, keeper_start: restarted when
 * it dies), which loads the master keys: every --master-key-file in order,
 * or, when none is configured, the systemd credential
 * ($CREDENTIALS_DIRECTORY/p8vault-master-key); generate (or NULL) is a
 * master-key file it creates first (the development key). This process
 * never reads a master key. Logs each key's id and where it came from,
 * never the key. The last file given is the primary key (seals new
 * records).
 * Returns 0, P8V_ERR_NO_MASTER_KEY (none configured and no credential:
 * logged, a configuration error), the errors of master_key_load_file
 * (P8V_ERR_NOT_FOUND, P8V_ERR_MASTER_KEY_FILE, ...: logged with the path),
 * P8V_ERR_TOO_LARGE (more than MASTER_KEYRING_MAX keys), P8V_ERR_ALLOC,
 * P8V_ERR_KEEPER_UNAVAILABLE (the keeper did not start).
 */
int state_load_keys(struct state *st, const struct config *cfg,
    const char *generate);

/*
 * Open the store in dir and the vault over it, handing it the keeper
 * (st->keeper is NULL afterwards, also on failure). vault_create checks the
 * keys against the store (a first start records them) and loads the token
 * cache, with APNs tokens reused for apns_token_reuse_s seconds
 * (VAULT_APNS_REUSE_MIN_S..MAX_S). On failure the store is closed again.
 * Returns 0, the errors of store_open (P8V_ERR_IO, P8V_ERR_STORE_VERSION,
 * P8V_ERR_STORE, ...) and of vault_create (P8V_ERR_MASTER_KEY_MISMATCH,
 * P8V_ERR_NO_MASTER_KEY, ...). All are logged.
 */
int state_open(struct state *st, const char *dir,
    unsigned int apns_token_reuse_s);

/*
 * SIGHUP: load the master keys cfg names (as state_load_keys: files in
 * order, the last the primary, or the systemd credential) into a new
 * keyring and hand it to the vault (vault_set_keyring), which refuses a
 * ring that cannot open every record or does not match the store. On any
 * failure the vault keeps the keys it has. Every step is logged (key ids
 * and file names, never keys).
 * Returns 0, P8V_ERR_NOT_READY (no vault yet), the errors of
 * state_load_keys and of vault_set_keyring (P8V_ERR_MASTER_KEY_MISSING,
 * P8V_ERR_MASTER_KEY_MISMATCH, ...).
 */
int state_reload_keys(struct state *st, const struct config *cfg);

/* Periodic housekeeping (store_maintain); logs what it did. */
void state_maintain(struct state *st);

/* Destroy the vault (wipes the keys), close the store. NULL-safe. */
void state_finish(struct state *st);

#endif /* P8V_SERVER_STATE_H */
