/*
 * cli.h: the admin CLI `p8vault`: its command table and what commands share.
 *
 * Adding a command is one line in the table of cli/main.c and one function
 * declared here:
 *
 *   int cmd_NAME(int argc, char **argv);
 *
 * argv[0] is the command's name and the rest its arguments; the command
 * parses them with getopt_long (optind is reset for it), answers --help on
 * stdout with CLI_EXIT_OK, and returns a CLI_EXIT_* code. On failure it
 * prints one line on stderr (cli_fail) that names the file or record at
 * fault; it never prints a secret except the one it was asked to issue.
 */
#ifndef P8V_CLI_CLI_H
#define P8V_CLI_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, documented in `p8vault --help`. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILURE 1  /* the command failed (message on stderr) */
#define CLI_EXIT_USAGE 2    /* bad options or arguments */
#define CLI_EXIT_PROBLEMS 3 /* verify, audit verify, restore: the check ran
                               and found problems (each named on stderr) */

/* Room for an RFC 3339 UTC time ("2026-11-23T22:50:01Z") and its NUL. */
#define CLI_TIME_BYTES 32

struct store;

struct cli_command {
	const char *name;       /* "init" */
	const char *args;       /* synopsis after the name, for --help */
	const char *summary;    /* one line */
	int (*run)(int argc, char **argv);
};

int cmd_init(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_master(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_audit(int argc, char **argv);

/* "p8vault: <message>" on stderr; returns CLI_EXIT_FAILURE. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "p8vault: <message>" and "Try 'p8vault <cmd> --help'." on stderr; returns
 * CLI_EXIT_USAGE. cmd may be NULL. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Run the subcommand argv[1] of group (e.g. "keys") from table: no
 * subcommand prints usage on stderr (CLI_EXIT_USAGE), --help or -h prints it
 * on stdout (CLI_EXIT_OK), an unknown one is a usage error. The subcommand
 * gets argv from its own name on. Returns its exit code.
 */
int cli_dispatch(const char *group, const struct cli_command *table,
    size_t n, void (*usage)(FILE *f), int argc, char **argv);

/* "p8vault: warning: <message>" on stderr. */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Set up guarded memory (crypto/secmem.h); on failure prints why (and the
 * usual remedy) and returns CLI_EXIT_FAILURE, else CLI_EXIT_OK. */
int cli_secmem_init(void);

/*
 * Open the store of an existing state directory (one `p8vault init` made):
 * refuses, with one line naming dir, a directory that does not exist or
 * holds no data file, instead of creating an empty one on a typo. As root
 * on a directory owned by another user, becomes that user first
 * (cli_state_dir_enter).
 * Returns CLI_EXIT_OK with *out set, or CLI_EXIT_FAILURE (printed).
 */
int cli_store_open_existing(const char *dir, struct store **out);

/*
 * Before a command opens the store of state directory dir: when this
 * process runs as root and dir (existing) is owned by another user (the
 * service user of a packaged install), switch to that user for good
 * (its groups, its gid, its uid; root cannot be regained), so that the
 * files the store writes stay that user's. Commands load their master
 * keys into the keeper process before: the keeper keeps reading them as
 * root. Refuses, on one line naming the cause, a directory or data file
 * the (new) user cannot use: owned by someone else, writable by group or
 * others, a data file not 0600 or not its owner's. An etcd location or
 * a directory that does not exist yet: nothing to do (no switch).
 * CLI_EXIT_OK or CLI_EXIT_FAILURE (printed).
 *
 * cli_store_open_existing calls it; cli_state_dir_check only checks, as
 * the user cli_state_dir_enter would switch to.
 */
int cli_state_dir_enter(const char *dir);
int cli_state_dir_check(const char *dir);

/*
 * Take the store options every command shares out of argv (argv[0] is
 * the command; *argc updated, argv NULL-terminated again): --store
 * LOCATION becomes --state LOCATION (an etcd://HOST:PORT[,...]/PREFIX
 * location or a state directory), and --etcd-cacert, --etcd-cert,
 * --etcd-key, --etcd-user, --etcd-password-file (or P8VAULT_ETCD_*
 * variables) become the options of every store_open of this process
 * (store_set_default_options). Arguments after "--" are left alone.
 * CLI_EXIT_OK or CLI_EXIT_USAGE (printed).
 */
int cli_store_args(int *argc, char **argv);

/* Print a store error for dir on one line: "<what> in state directory
 * <dir>: <message>". Returns CLI_EXIT_FAILURE. */
int cli_store_fail(const char *dir, const char *what, int err);

/* RFC 3339 UTC of t (seconds since the epoch) into out; "-" if t cannot be
 * represented. Returns out. */
char *cli_time(int64_t t, char out[CLI_TIME_BYTES]);

/* Write all of buf to fd (retrying short writes and EINTR): 0 or
 * P8V_ERR_IO. Used for secrets, which must not pass through stdio's heap
 * buffers. */
int cli_write_all(int fd, const void *buf, size_t len);

#endif /* P8V_CLI_CLI_H */
