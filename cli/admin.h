/*
 * admin.h: what the admin commands (master, keys, backup, restore, verify,
 * audit) share beyond cli/cli.h: master-key files into a keeper, naming a
 * key by the file it came from, JSON on stdout, a progress line on a
 * terminal, and times given on the command line.
 *
 * Like cli.h's helpers, each prints its own one-line failure (naming the
 * file at fault) and returns a CLI_EXIT_* code; none ever prints a key.
 */
#ifndef P8V_CLI_ADMIN_H
#define P8V_CLI_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "keeper/keeper.h"

/* At most this many --master-key-file options (the keyring's size). */
#define ADMIN_KEY_FILES_MAX MASTER_KEYRING_MAX
/* The actor the CLI writes into records ("created_by") and audit events. */
#define ADMIN_ACTOR "cli"

/* Master-key files as given on the command line, and the ids they hold. */
struct admin_keys {
	const char *files[ADMIN_KEY_FILES_MAX];
	char ids[ADMIN_KEY_FILES_MAX][MASTER_KEY_ID_HEX + 1];
	size_t n;
	struct keeper *keeper;         /* owned; NULL until loaded */
};

/* Note one more --master-key-file for command cmd. CLI_EXIT_OK or
 * CLI_EXIT_USAGE (too many; printed). */
int admin_keys_add(struct admin_keys *k, const char *cmd, const char *file);

/*
 * Start a keeper process (keeper_start) that loads every file (the last
 * one loaded is the primary, as in p8vaultd): this process never holds a
 * master key. A file that cannot be loaded is named on one line with the
 * reason. Returns CLI_EXIT_OK or CLI_EXIT_FAILURE (printed).
 */
int admin_keys_load(struct admin_keys *k);

/*
 * admin_keys_load with one more file loaded last (extra, or NULL; its
 * key's id and check value in *extra_info), and generate (or NULL) created
 * by the keeper first (it must be extra too). Errors name the file as
 * "new master key file" (extra) or "creating master key file" (generate).
 */
int admin_keys_start(struct admin_keys *k, const char *extra,
    const char *generate, struct keeper_key_info *extra_info);

/* The file a key id came from, or NULL. */
const char *admin_keys_file_of(const struct admin_keys *k, const char *id_hex);

/* Wipe the keys (destroy the keeper, if not handed over). */
void admin_keys_finish(struct admin_keys *k);

/* Print o as one line of compact JSON on stdout and flush. Steals o.
 * CLI_EXIT_OK or CLI_EXIT_FAILURE (printed). */
int admin_print_json(json_t *o);

/* Flush stdout; CLI_EXIT_OK or CLI_EXIT_FAILURE (printed). */
int admin_flush(void);

/*
 * A progress line on stderr, redrawn in place, only when stderr is a
 * terminal: "what: done/total (pct%)". admin_progress_end ends the line
 * (if one was drawn).
 */
void admin_progress(const char *what, uint64_t done, uint64_t total);
void admin_progress_end(void);

/*
 * A time from the command line: RFC 3339 UTC ("2026-11-23T22:50:01Z", or
 * a date alone "2026-11-23" for its midnight) or seconds since the epoch.
 * Returns 0 with *t, or P8V_ERR_INVALID_ARGUMENT (NULL, empty, or not such
 * a time).
 */
int admin_parse_time(const char *s, int64_t *t);

/*
 * Silence the libraries' JSON log lines (they are the daemon's): an admin
 * command prints its own single line per failure, naming the file or
 * record, and a log line beside it would say the same thing twice.
 */
void admin_quiet_logs(void);

/* Hex of n bytes into out (2n + 1 bytes). */
void admin_hex(const uint8_t *in, size_t n, char *out);

struct store;

/*
 * Append the audit event {"time", "who": "cli", "what", ...fields,
 * "result": "ok"} to store in its own write transaction; steals fields
 * (NULL: P8V_ERR_ALLOC). 0 or a P8V_ERR_* of store_write.
 */
int admin_audit(struct store *store, const char *what, json_t *fields);

#endif /* P8V_CLI_ADMIN_H */
