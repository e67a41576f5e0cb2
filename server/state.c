/* state.c: master keys and the store, opened in order and checked. */
#include "server/state.h"

#include <string.h>

#include "common/err.h"
#include "common/log.h"

static int
add_key(struct state *st, struct master_key *mk, const char *from)
{
	char id[MASTER_KEY_ID_HEX + 1];
	int r;

	/* Copy the id first: the ring owns (and may drop) the key. */
	memcpy(id, master_key_id_hex(mk), MASTER_KEY_ID_HEX);
	id[MASTER_KEY_ID_HEX] = '\0';
	if ((r = master_keyring_add(st->ring, mk)) != 0) {
		log_errorf("master_key", "cannot add master key %s from %s: %s",
		    id, from, p8v_strerror(r));
		return r;
	}
	st->n_master_keys = master_keyring_count(st->ring);
	log_fields(LOG_LEVEL_INFO, "master_key",
	    json_pack("{s:s, s:s}", "master_key_id", id, "source", from),
	    "loaded master key %s from %s", id, from);
	return 0;
}

int
state_load_keys(struct state *st, const struct config *cfg)
{
	struct master_key *mk = NULL;
	size_t i;
	int r = P8V_ERR_INTERNAL;

	if (st->ring == NULL && (r = master_keyring_create(&st->ring)) != 0)
		goto out;
	for (i = 0; i < cfg->n_master_key_files; i++) {
		if ((r = master_key_load_file(cfg->master_key_files[i],
		    &mk)) != 0) {
			log_errorf("master_key", "cannot load the master key "
			    "file %s: %s", cfg->master_key_files[i],
			    p8v_strerror(r));
			goto out;
		}
		r = add_key(st, mk, cfg->master_key_files[i]);
		mk = NULL;
		if (r != 0)
			goto out;
	}
	if (cfg->n_master_key_files == 0) {
		r = master_key_load_credential(&mk);
		if (r == P8V_ERR_NOT_FOUND) {
			log_errorf("master_key", "no master key: give "
			    "--master-key-file FILE (or P8VAULT_MASTER_KEY_FILE),"
			    " or the systemd credential %s",
			    MASTER_KEY_CREDENTIAL);
			r = P8V_ERR_NO_MASTER_KEY;
			goto out;
		}
		if (r != 0) {
			log_errorf("master_key", "cannot load the systemd "
			    "credential %s: %s", MASTER_KEY_CREDENTIAL,
			    p8v_strerror(r));
			goto out;
		}
		r = add_key(st, mk, "systemd credential " MASTER_KEY_CREDENTIAL);
		mk = NULL;
		if (r != 0)
			goto out;
	}
	r = 0;
 out:
	master_key_destroy(mk);
	return r;
}

int
state_open(struct state *st, const char *dir, unsigned int apns_token_reuse_s)
{
	struct vault_options vopts = { .apns_reuse_seconds = apns_token_reuse_s };
	int r = P8V_ERR_INTERNAL;

	if ((r = store_open(dir, NULL, &st->store)) != 0) {
		log_errorf("store", "cannot open the state directory %s: %s",
		    dir, p8v_strerror(r));
		goto out;
	}
	r = vault_create(st->store, st->ring, &vopts, &st->vault);
	st->ring = NULL;        /* the vault's now, also on failure */
	if (r != 0) {
		log_errorf("store", "cannot open the vault over %s: %s", dir,
		    p8v_strerror(r));
		goto out;
	}
	r = 0;
 out:
	if (r != 0) {
		store_close(st->store);
		st->store = NULL;
	}
	return r;
}

int
state_reload_keys(struct state *st, const struct config *cfg)
{
	struct state next;
	int r = P8V_ERR_NOT_READY;

	memset(&next, 0, sizeof(next));
	if (st == NULL || st->vault == NULL)
		goto out;
	if ((r = state_load_keys(&next, cfg)) != 0)
		goto out;
	r = vault_set_keyring(st->vault, next.ring);
	next.ring = NULL;       /* the vault's now, also on failure */
	if (r != 0)
		goto out;
	st->n_master_keys = next.n_master_keys;
	r = 0;
 out:
	master_keyring_destroy(next.ring);
	return r;
}

void
state_maintain(struct state *st)
{
	int cleared = 0, r;

	if (st == NULL || st->store == NULL)
		return;
	if ((r = store_maintain(st->store, &cleared)) != 0)
		log_warnf("store", "maintenance failed: %s", p8v_strerror(r));
	else if (cleared > 0)
		log_infof("store", "cleared %d stale reader slot(s)", cleared);
}

void
state_finish(struct state *st)
{
	if (st == NULL)
		return;
	vault_destroy(st->vault);
	store_close(st->store);
	master_keyring_destroy(st->ring);
	memset(st, 0, sizeof(*st));
}
