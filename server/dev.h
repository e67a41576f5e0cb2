/*
 * dev.h: the --dev set-up behind ./run.sh.
 */
#ifndef P8V_SERVER_DEV_H
#define P8V_SERVER_DEV_H

#include "server/config.h"

/*
 * When cfg->dev and the master key is the development default
 * (CONFIG_DEV_MASTER_KEY, not overridden): create CONFIG_DEV_STATE (mode
 * 0700) if missing, and the development master key in it if missing
 * (master_key_generate_file: 0600, never overwritten). Every --dev start
 * logs a warning; creating the key logs a loud one and prints a plain line
 * on stderr too, since it is easy to miss in JSON: the key lies next to the
 * data it protects and is for development only.
 * Does nothing when cfg->dev is 0.
 * Returns 0, P8V_ERR_IO (the directory cannot be made: logged), or the
 * error of master_key_generate_file.
 */
int dev_prepare(const struct config *cfg);

#endif /* P8V_SERVER_DEV_H */
