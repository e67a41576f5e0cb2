/*
 * cmd_export.c: p8vault export and p8vault import.
 *
 * export writes every entry of every database of a state directory (sealed
 * keys, credentials, token cache, audit log, metadata: exactly the stored
 * bytes) to one file in p8vault's own backend-independent format, with a
 * SHA-256 checksum (store/export.h). import checks such a file whole, then
 * loads it into a new, empty state directory. This is the way from one
 * store backend to another; the LMDB hot backup (cmd_backup.c) stays the
 * way to back up. Neither needs a master key: the file holds only what the
 * store holds.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/admin.h"
#include "cli/cli.h"
#include "common/err.h"
#include "store/backup.h"
#include "store/export.h"
#include "store/store.h"

static const char export_usage_text[] =
    "Usage: p8vault export --state DIR [--json] OUT\n"
    "\n"
    "Export the whole store of the state directory DIR to the new file OUT\n"
    "(mode 0600; an existing file is never replaced): every key record,\n"
    "API credential, cached token, audit event and metadata entry, exactly\n"
    "as stored, from one consistent snapshot (safe while p8vaultd runs),\n"
    "with a SHA-256 checksum. The file's format does not depend on the\n"
    "store's backend: 'p8vault import' loads it into a new store, of this\n"
    "backend or another. It holds only sealed keys and metadata, never a\n"
    "key in the clear, and is as sensitive as a backup.\n"
    "\n"
    "Options:\n"
    "  --state DIR   the state directory\n"
    "  --json        print {\"state_dir\",\"export\",\"entries\",\"bytes\","
    "\"sha256\"}\n"
    "  -h, --help    show this help\n"
    "\n"
    "Exit status: 0 done, 1 failed, 2 usage error.\n";

static const char import_usage_text[] =
    "Usage: p8vault import --state NEWDIR [--json] IN\n"
    "\n"
    "Load the export file IN (from 'p8vault export') into the new state\n"
    "directory NEWDIR, which must not exist or be empty. The whole file is\n"
    "checked first (format, version, checksum): a truncated, damaged,\n"
    "altered or unknown file is refused and nothing is created. Then run\n"
    "'p8vault verify' with the master key and start p8vaultd on NEWDIR\n"
    "with the master key(s) the exported vault used.\n"
    "\n"
    "Options:\n"
    "  --state NEWDIR  the new state directory\n"
    "  --json          print {\"state_dir\",\"import\",\"entries\","
    "\"sha256\"}\n"
    "  -h, --help      show this help\n"
    "\n"
    "Exit status: 0 imported, 1 failed (nothing imported), 2 usage error.\n";

struct export_args {
	const char *cmd;
	const char *dir;
	int json;
	int help;
	const char *operand;
};

static int
parse(int argc, char **argv, struct export_args *a)
{
	static const struct option options[] = {
		{ "state", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 's':
			a->dir = optarg;
			break;
		case 'j':
			a->json = 1;
			break;
		case 'h':
			a->help = 1;
			break;
		default:
			return cli_usage_error(a->cmd, "bad option");
		}
	}
	if (a->help)
		return CLI_EXIT_OK;
	if (a->dir == NULL || *a->dir == '\0')
		return cli_usage_error(a->cmd, "--state %s is required",
		    strcmp(a->cmd, "export") == 0 ? "DIR" : "NEWDIR");
	if (argc - optind != 1)
		return cli_usage_error(a->cmd, "give one %s file",
		    strcmp(a->cmd, "export") == 0 ? "OUT" : "IN");
	a->operand = argv[optind];
	return CLI_EXIT_OK;
}



int
cmd_export(int argc, char **argv)
{
	struct store_export_info info;
	struct export_args a;
	struct store *store = NULL;
	char hex[2 * STORE_EXPORT_SHA256_BYTES + 1], dir[4096];
	struct stat st;
	int r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "export";
	if ((ret = parse(argc, argv, &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		fputs(export_usage_text, stdout);
		return CLI_EXIT_OK;
	}
	admin_quiet_logs();
	if (lstat(a.operand, &st) == 0)
		return cli_fail("export: %s exists; an export never replaces "
		    "a file", a.operand);
	snprintf(dir, sizeof(dir), "%s", a.operand);
	if (access(dirname(dir), W_OK) != 0)
		return cli_fail("export: cannot write %s: %s", a.operand,
		    strerror(errno));
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	/* Again as the state directory's owner, if root became it. */
	snprintf(dir, sizeof(dir), "%s", a.operand);
	if (access(dirname(dir), W_OK) != 0) {
		cli_fail("export: cannot write %s as uid %lu, the owner of state "
		    "directory %s: %s", a.operand, (unsigned long)geteuid(),
		    a.dir, strerror(errno));
		goto out;
	}
	if ((r = store_export(store, a.operand, &info)) != 0) {
		if (r == P8V_ERR_EXISTS)
			cli_fail("export: %s exists; an export never replaces "
			    "a file", a.operand);
		else
			cli_fail("export of state directory %s to %s: %s",
			    a.dir, a.operand, p8v_strerror(r));
		goto out;
	}
	admin_hex(info.sha256, sizeof(info.sha256), hex);
	if ((r = admin_audit(store, "store.export", json_pack("{s:s, s:I, s:s}",
	    "file", a.operand, "entries", (json_int_t)info.total,
	    "sha256", hex))) != 0)
		cli_warn("export written, but its audit event was not: %s",
		    p8v_strerror(r));
	if (a.json)
		ret = admin_print_json(json_pack("{s:s, s:s, s:I, s:I, s:s}",
		    "state_dir", a.dir, "export", a.operand,
		    "entries", (json_int_t)info.total,
		    "bytes", (json_int_t)info.bytes, "sha256", hex));
	else {
		printf("state directory %s exported to %s (%llu entries, "
		    "%llu bytes, mode 0600)\nsha256 %s\n", a.dir, a.operand,
		    (unsigned long long)info.total,
		    (unsigned long long)info.bytes, hex);
		ret = admin_flush();
	}
 out:
	store_close(store);
	return ret;
}

/* 0 if dir is missing (*missing = 1) or an empty directory; else -1 with
 * errno (ENOTEMPTY for anything that is not an empty directory). */
static int
target_ok(const char *dir, int *missing)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int r = 0;

	*missing = 0;
	if (lstat(dir, &st) != 0) {
		if (errno != ENOENT)
			return -1;
		*missing = 1;
		return 0;
	}
	errno = ENOTEMPTY;
	if (!S_ISDIR(st.st_mode))
		return -1;
	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0) {
			errno = ENOTEMPTY;
			r = -1;
			break;
		}
	closedir(d);
	return r;
}

int
cmd_import(int argc, char **argv)
{
	struct store_export_info info;
	struct export_args a;
	struct store *store = NULL;
	char hex[2 * STORE_EXPORT_SHA256_BYTES + 1];
	int created = 0, opened = 0, done = 0, r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "import";
	if ((ret = parse(argc, argv, &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		fputs(import_usage_text, stdout);
		return CLI_EXIT_OK;
	}
	admin_quiet_logs();
	/* An etcd prefix: store_import refuses one that is not empty. */
	if (!store_location_is_etcd(a.dir) && target_ok(a.dir, &created) != 0)
		return errno == ENOTEMPTY ? cli_fail("import: %s is not an "
		    "empty directory; import only into a new or empty state "
		    "directory", a.dir) : cli_fail("import: %s: %s", a.dir,
		    strerror(errno));
	/* The file is checked whole before the new directory is made. */
	if ((r = store_export_check(a.operand, &info)) != 0)
		return cli_fail("import: %s refused: %s", a.operand, info.why);
	ret = CLI_EXIT_FAILURE;
	if ((r = store_open(a.dir, NULL, &store)) != 0) {
		cli_store_fail(a.dir, "import: creating the store", r);
		goto out;
	}
	opened = 1;
	if ((r = store_import(store, a.operand, &info)) != 0) {
		cli_fail("import: %s into %s %s: %s", a.operand, a.dir,
		    r == P8V_ERR_INTEGRITY || r == P8V_ERR_UNSUPPORTED ||
		    r == P8V_ERR_STORE_VERSION || r == P8V_ERR_EXISTS ?
		    "refused" : "failed", info.why);
		goto out;
	}
	done = 1;
	admin_hex(info.sha256, sizeof(info.sha256), hex);
	if ((r = admin_audit(store, "store.import", json_pack("{s:s, s:I, s:s}",
	    "file", a.operand, "entries", (json_int_t)info.total,
	    "sha256", hex))) != 0)
		cli_warn("imported, but the audit event was not written: %s",
		    p8v_strerror(r));
	if (a.json)
		ret = admin_print_json(json_pack("{s:s, s:s, s:I, s:s}",
		    "state_dir", a.dir, "import", a.operand,
		    "entries", (json_int_t)info.total, "sha256", hex));
	else {
		printf("%s imported into state directory %s (%llu entries)\n"
		    "sha256 %s\n", a.operand, a.dir,
		    (unsigned long long)info.total, hex);
		ret = admin_flush();
	}
 out:
	store_close(store);
	/* Leave nothing of a failed import: the directory was new or
	 * empty. */
	if (opened && !done && !store_location_is_etcd(a.dir))
		store_restore_discard(a.dir, created);
	return ret;
}
