/*
 * main.c: p8vault, the admin CLI: global options and the command table.
 *
 * Add a command with one line in `commands` (and its cmd_* in cli/cli.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/log.h"

#ifndef P8V_VERSION
#define P8V_VERSION "unknown"
#endif

static const struct cli_command commands[] = {
	{ "init", "--state DIR --master-key-file FILE [--json]",
	    "create a state directory and, if missing, a master key", cmd_init },
	{ "token", "create|list|revoke ...",
	    "issue, list and revoke API bearer tokens", cmd_token },
	{ "keys", "list|show|import|activate|revoke ...",
	    "Apple signing keys: list, show, import a .p8, activate, revoke",
	    cmd_keys },
	{ "master", "generate|rotate|status ...",
	    "master keys: create one, rotate to it, see which ones are used",
	    cmd_master },
	{ "backup", "--state DIR OUT",
	    "write a consistent backup (ciphertext only) while the daemon runs",
	    cmd_backup },
	{ "restore", "--state NEWDIR --master-key-file FILE BACKUP",
	    "restore a backup into a new state directory and check it",
	    cmd_restore },
	{ "export", "--state DIR OUT",
	    "export the whole store to a file (ciphertext only), any backend",
	    cmd_export },
	{ "import", "--state NEWDIR IN",
	    "load an export into a new state directory", cmd_import },
	{ "verify", "--state DIR --master-key-file FILE",
	    "open every key record and check the audit chain", cmd_verify },
	{ "audit", "list|verify ...",
	    "list the audit log, check its hash chain", cmd_audit },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
usage(FILE *f)
{
	size_t i;

	fputs("Usage: p8vault [--help] [--version] COMMAND [ARGS...]\n"
	    "\n"
	    "The admin CLI of p8vault, the vault for Apple .p8 signing keys.\n"
	    "\n"
	    "Commands:\n", f);
	for (i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-8s %s\n           %s\n", commands[i].name,
		    commands[i].args, commands[i].summary);
	fputs("\n"
	    "Run 'p8vault COMMAND --help' for a command's options.\n"
	    "\n"
	    "Every command that takes --state DIR also takes --store LOCATION:\n"
	    "a state directory (LMDB) or etcd://HOST:PORT[,HOST:PORT...]/PREFIX,\n"
	    "with --etcd-cacert FILE, --etcd-cert FILE, --etcd-key FILE (TLS to\n"
	    "etcd), --etcd-user NAME and --etcd-password-file FILE (etcd auth);\n"
	    "the same as P8VAULT_ETCD_CACERT, P8VAULT_ETCD_CERT, ... variables.\n"
	    "\n"
	    "Exit status:\n"
	    "  0  success\n"
	    "  1  the command failed (one line on stderr says why and names\n"
	    "     the file or record at fault)\n"
	    "  2  usage error (unknown command or option, missing argument)\n"
	    "  3  verify, audit verify, restore: the check ran and found\n"
	    "     problems (each bad record or event named on stderr)\n",
	    f);
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	size_t i;
	int c;

	/* The libraries' JSON log lines are for the daemon; the CLI prints
	 * its own messages and shows only their warnings and errors. */
	log_set_level(LOG_LEVEL_WARN);

	/* '+': stop at the command, whose options are its own. */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+hV", options, NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'V':
			printf("p8vault %s\n", P8V_VERSION);
			return CLI_EXIT_OK;
		default:
			return cli_usage_error(NULL, "unknown option '%s'",
			    argv[optind - 1]);
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	for (i = 0; i < N_COMMANDS; i++) {
		if (strcmp(argv[optind], commands[i].name) == 0) {
			argv += optind;
			argc -= optind;
			/* --store and the etcd options, for every
			 * command that opens a store. */
			if ((c = cli_store_args(&argc, argv)) != CLI_EXIT_OK)
				return c;
			/* The command's own getopt_long starts afresh. */
			optind = 0;
			opterr = 1;
			return commands[i].run(argc, argv);
		}
	}
	return cli_usage_error(NULL, "unknown command '%s'", argv[optind]);
}
