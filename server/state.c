/* state.c: master keys and the store, opened in order and checked. */
#include "server/state.h"

#include <string.h>

#include "common/err.h"
#include "common/log.h"

static void
log_loaded(const struct keeper_key_info *info, const char *from)
{
	log_fields(LOG_LEVEL_INFO, "master_key",
	    json_pack("{s:s, s:s}", "master_key_id", info->id_hex,
	    "source", from),
	    "loaded master key %s from %s", info->id_hex, from);
}

/* Channels to the keeper: a call at a time each; the handler threads of
 * every listener share them (a call waits while all are busy). */
static unsigned int
keeper_channels(const struct config *cfg)
{
	unsigned int n = 2 * cfg->threads + 2;

	return n > KEEPER_CHANNELS_MAX ? KEEPER_CHANNELS_MAX : n;
}

/* The keeper of st, restarted when it dies if restart (the running
 * daemon's; not a SIGHUP's candidate, which the running one takes over). */
static int
load_keys(struct state *st, const struct config *cfg, const char *generate,
    int restart)
{
	struct keeper_process_options o;
	struct keeper_status ks;
	size_t i, bad = SIZE_MAX;
	int r = P8V_ERR_INTERNAL;

	memset(&o, 0, sizeof(o));
	o.key_files = (const char *const *)cfg->master_key_files;
	o.n_key_files = cfg->n_master_key_files;
	o.generate = generate;
	o.channels = keeper_channels(cfg);
	o.restart = restart;
	if ((r = keeper_start(&o, &st->keeper, &bad)) != 0) {
		if (bad < cfg->n_master_key_files)
			log_errorf("master_key", "cannot load the master key "
			    "file %s: %s", cfg->master_key_files[bad],
			    p8v_strerror(r));
		else if (generate != NULL && bad == cfg->n_master_key_files)
			log_errorf("master_key", "cannot create the master key "
			    "file %s: %s", generate, p8v_strerror(r));
		else if (cfg->n_master_key_files == 0 && r == P8V_ERR_NOT_FOUND)
			log_errorf("master_key", "no master key: give "
			    "--master-key-file FILE (or P8VAULT_MASTER_KEY_FILE),"
			    " or the systemd credential %s",
			    MASTER_KEY_CREDENTIAL);
		else if (cfg->n_master_key_files == 0)
			log_errorf("master_key", "cannot load the systemd "
			    "credential %s: %s", MASTER_KEY_CREDENTIAL,
			    p8v_strerror(r));
		else
			log_errorf("keeper", "cannot start the keeper: %s",
			    p8v_strerror(r));
		if (cfg->n_master_key_files == 0 && r == P8V_ERR_NOT_FOUND)
			r = P8V_ERR_NO_MASTER_KEY;
		goto out;
	}
	if ((r = keeper_status(st->keeper, &ks)) != 0)
		goto out;
	for (i = 0; i < ks.n; i++)
		log_loaded(&ks.keys[i], i < cfg->n_master_key_files ?
		    cfg->master_key_files[i] : "systemd credential "
		    MASTER_KEY_CREDENTIAL);
	st->n_master_keys = ks.n;
	log_fields(LOG_LEVEL_INFO, "keeper_started",
	    json_pack("{s:i, s:i}", "pid", keeper_pid(st->keeper),
	    "channels", (int)o.channels),
	    "keeper process %d holds %zu master key(s)",
	    keeper_pid(st->keeper), ks.n);
	r = 0;
 out:
	return r;
}

int
state_load_keys(struct state *st, const struct config *cfg,
    const char *generate)
{
	return load_keys(st, cfg, generate, 1);
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
	r = vault_create(st->store, st->keeper, &vopts, &st->vault);
	st->keeper = NULL;      /* the vault's now, also on failure */
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
	if ((r = load_keys(&next, cfg, NULL, 0)) != 0)
		goto out;
	r = vault_set_keyring(st->vault, next.keeper);
	next.keeper = NULL;     /* the vault's now, also on failure */
	if (r != 0)
		goto out;
	st->n_master_keys = next.n_master_keys;
	r = 0;
 out:
	keeper_destroy(next.keeper);
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
	keeper_destroy(st->keeper);
	memset(st, 0, sizeof(*st));
}
