/* dev.c: development defaults: a state directory and a master key in it. */
#include "server/dev.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/masterkey.h"

int
dev_prepare(const struct config *cfg)
{
	int r = P8V_ERR_INTERNAL;

	if (cfg == NULL || !cfg->dev) {
		r = 0;
		goto out;
	}
	log_warnf("dev_mode", "development mode (--dev): state %s, portal %s, "
	    "signing socket %s; not for production", cfg->state_dir,
	    cfg->listen != NULL ? cfg->listen : "none",
	    cfg->sign_socket != NULL ? cfg->sign_socket : "none");
	if (cfg->n_master_key_files != 1 ||
	    strcmp(cfg->master_key_files[0], CONFIG_DEV_MASTER_KEY) != 0) {
		r = 0;      /* the master key was chosen explicitly */
		goto out;
	}
	if (mkdir(CONFIG_DEV_STATE, 0700) != 0 && errno != EEXIST) {
		log_errorf("dev_mode", "cannot create %s: %s", CONFIG_DEV_STATE,
		    strerror(errno));
		r = P8V_ERR_IO;
		goto out;
	}
	r = master_key_generate_file(CONFIG_DEV_MASTER_KEY);
	if (r == P8V_ERR_EXISTS) {
		log_warnf("dev_master_key", "using the DEVELOPMENT master key "
		    "%s: it is stored next to the data it protects; never use "
		    "it in production", CONFIG_DEV_MASTER_KEY);
		r = 0;
		goto out;
	}
	if (r != 0) {
		log_errorf("dev_master_key", "cannot create the development "
		    "master key %s: %s", CONFIG_DEV_MASTER_KEY,
		    p8v_strerror(r));
		goto out;
	}
	log_warnf("dev_master_key", "CREATED A DEVELOPMENT MASTER KEY at %s. "
	    "It is stored next to the data it protects and is NOT FOR "
	    "PRODUCTION: anyone who can read %s can open every key sealed "
	    "under it", CONFIG_DEV_MASTER_KEY, CONFIG_DEV_STATE);
	fprintf(stderr, "p8vaultd: WARNING: created a DEVELOPMENT master key "
	    "at %s, next to the data it protects. NOT FOR PRODUCTION.\n",
	    CONFIG_DEV_MASTER_KEY);
	r = 0;
 out:
	return r;
}
