/*
 * dev.h: the --dev set-up behind ./run.sh.
 */
#ifndef P8V_SERVER_DEV_H
#define P8V_SERVER_DEV_H

#include "server/config.h"

/*
 * When cfg->dev and the master key is the development default
 * (CONFIG_DEV_MASTER_KEY, not overridden): create CONFIG_DEV_STATE (mode
 * 0700) if missing; if the development master key is missing, *generate
 * gets its path, for the keeper to create (master_key_generate_file: 0600,
 * never overwritten; no process but the keeper holds a master key), and
 * the caller reports it with dev_report_created. Every --dev start logs a
 * warning; creating the key logs a loud one and prints a plain line on
 * stderr too, since it is easy to miss in JSON: the key lies next to the
 * data it protects and is for development only.
 * Does nothing when cfg->dev is 0 (*generate NULL).
 * Returns 0 or P8V_ERR_IO (the directory cannot be made: logged).
 */
int dev_prepare(const struct config *cfg, const char **generate);

/* The loud warning for a development master key just created at path. */
void dev_report_created(const char *path);

#endif /* P8V_SERVER_DEV_H */
