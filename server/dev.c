/* dev.c: development defaults: a state directory and a master key in it. */
#include "server/dev.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/err.h"
#include "common/log.h"

int
dev_prepare(const struct config *cfg, const char **generate)
{
	struct stat st;
	int r = P8V_ERR_INTERNAL;

	*generate = NULL;
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
	/* The keeper creates it (no other process holds a master key):
	 * state_load_keys passes it on. */
	if (lstat(CONFIG_DEV_MASTER_KEY, &st) != 0 && errno == ENOENT) {
		*generate = CONFIG_DEV_MASTER_KEY;
		r = 0;
		goto out;
	}
	log_warnf("dev_master_key", "using the DEVELOPMENT master key "
	    "%s: it is stored next to the data it protects; never use "
	    "it in production", CONFIG_DEV_MASTER_KEY);
	r = 0;
 out:
	return r;
}

void
dev_report_created(const char *path)
{
	log_warnf("dev_master_key", "CREATED A DEVELOPMENT MASTER KEY at %s. "
	    "It is stored next to the data it protects and is NOT FOR "
	    "PRODUCTION: anyone who can read %s can open every key sealed "
	    "under it", path, CONFIG_DEV_STATE);
	fprintf(stderr, "p8vaultd: WARNING: created a DEVELOPMENT master key "
	    "at %s, next to the data it protects. NOT FOR PRODUCTION.\n",
	    path);
}
