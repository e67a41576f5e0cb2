/*
 * cmd_init.c: p8vault init: create a state directory and, if it does not
 * exist, a random master key; record the key in the store.
 *
 * Safe to run again: an existing directory and key file are used as they
 * are (a key file is never overwritten), and a key that does not match the
 * directory is refused.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli/cli.h"
#include "common/err.h"
#include "crypto/masterkey.h"
#include "cli/admin.h"
#include "keeper/keeper.h"
#include "store/masterkeys.h"
#include "store/store.h"
#include "vault/vault.h"

static void
usage(FILE *f)
{
	fputs("Usage: p8vault init --state DIR --master-key-file FILE [--json]\n"
	    "       p8vault init --store etcd://HOST:PORT[,...]/PREFIX\n"
	    "           --master-key-file FILE [--etcd-* ...] [--json]\n"
	    "\n"
	    "With --store, prepare the etcd prefix (docs/cluster.md) as DIR\n"
	    "below; the --etcd-* options are listed by 'p8vault --help'.\n"
	    "\n"
	    "Create the state directory DIR (mode 0700) if it does not exist,\n"
	    "create a new random master key in FILE (mode 0600) if FILE does\n"
	    "not exist, and record the key's check value in DIR, so that the\n"
	    "daemon refuses any other key. An existing FILE is never\n"
	    "overwritten; running init again only checks.\n"
	    "\n"
	    "As root on an existing DIR owned by another user (the service\n"
	    "user of a packaged install), init reads or creates FILE as root\n"
	    "(in its keeper process) and then works in DIR as DIR's owner.\n"
	    "\n"
	    "Keep FILE outside DIR in production: a key next to the data it\n"
	    "protects is for development only (init warns).\n"
	    "\n"
	    "Options:\n"
	    "  --state DIR             the state directory\n"
	    "  --store LOCATION        an etcd store, or a state directory\n"
	    "  --master-key-file FILE  the master key file\n"
	    "  --json                  print the result as one JSON object\n"
	    "  -h, --help              show this help\n"
	    "\n"
	    "Exit status: 0 done, 1 failed, 2 usage error.\n", f);
}

/* 1 if path lies inside dir (both resolved), else 0. */
static int
inside(const char *dir, const char *path)
{
	char rdir[PATH_MAX], rpath[PATH_MAX];
	size_t n;

	if (realpath(dir, rdir) == NULL || realpath(path, rpath) == NULL)
		return 0;
	n = strlen(rdir);
	if (n == 1) /* "/" */
		return 1;
	return strncmp(rdir, rpath, n) == 0 && rpath[n] == '/';
}

struct recorded {
	const uint8_t *id;
	int found;
};

static int
find_recorded(struct store_txn *txn, void *arg)
{
	struct recorded *rec = arg;
	struct store_master_key_usage *u = NULL;
	size_t i, n = 0;
	int r;

	rec->found = 0;
	if ((r = store_master_key_usage(txn, &u, &n)) != 0)
		return r;
	for (i = 0; i < n; i++)
		if (u[i].recorded &&
		    memcmp(u[i].id, rec->id, MASTER_KEY_ID_BYTES) == 0)
			rec->found = 1;
	free(u);
	return 0;
}

int
cmd_init(int argc, char **argv)
{
	static const struct option options[] = {
		{ "state", required_argument, NULL, 's' },
		{ "master-key-file", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *key_file = NULL;
	struct store *store = NULL;
	struct admin_keys keys = { 0 };
	struct keeper_status ks;
	struct keeper *keeper = NULL;
	struct keeper_key_info info;
	struct recorded rec = { NULL, 0 };
	struct stat st;
	char id_hex[MASTER_KEY_ID_HEX + 1];
	json_t *out = NULL;
	int json = 0, local, dir_created, key_created = 0, key_inside;
	int c, r, ret = CLI_EXIT_FAILURE;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 's':
			dir = optarg;
			break;
		case 'k':
			key_file = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		default:
			return cli_usage_error("init", "bad option");
		}
	}
	if (optind < argc)
		return cli_usage_error("init", "unexpected argument '%s'",
		    argv[optind]);
	if (dir == NULL || *dir == '\0')
		return cli_usage_error("init", "--state DIR is required");
	if (key_file == NULL || *key_file == '\0')
		return cli_usage_error("init",
		    "--master-key-file FILE is required");
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;

	local = !store_location_is_etcd(dir);
	dir_created = local && stat(dir, &st) != 0 && errno == ENOENT;
	if (!local && (r = store_open(dir, NULL, &store)) != 0) {
		cli_store_fail(dir, "opening the store", r);
		goto out;
	}
	/* A state directory: made (by this user) or checked (as the user
	 * that will open it) before a key is made, opened after the keeper
	 * has loaded the key: as root on a directory of the service user,
	 * the keeper reads root's key file and this process then becomes
	 * that user (cli_state_dir_enter). */
	if (dir_created && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		cli_fail("state directory %s: cannot create it: %s", dir,
		    strerror(errno));
		goto out;
	}
	if (local && cli_state_dir_check(dir) != CLI_EXIT_OK)
		goto out;
	/* After the directory exists: the key file may be inside it (the
	 * development layout). */
	/* lstat first: master_key_generate_file logs an existing file as an
	 * error, and here it is the normal case. A file that appears in
	 * between is still never overwritten (O_EXCL). */
	/* The keeper process creates the key file if it is missing, and
	 * loads it: this process never holds the key. */
	key_created = lstat(key_file, &st) != 0;
	keys.files[keys.n++] = key_file;
	if (admin_keys_start(&keys, NULL, key_created ? key_file : NULL,
	    NULL) != CLI_EXIT_OK)
		goto out;
	keeper = keys.keeper;
	if (local) {
		if (cli_state_dir_enter(dir) != CLI_EXIT_OK)
			goto out;
		if ((r = store_open(dir, NULL, &store)) != 0) {
			cli_store_fail(dir, "opening the store", r);
			goto out;
		}
	}
	if ((r = keeper_status(keeper, &ks)) != 0 || ks.n == 0) {
		cli_fail("the keeper does not answer: %s", p8v_strerror(r));
		goto out;
	}
	info = ks.keys[ks.primary];
	snprintf(id_hex, sizeof(id_hex), "%s", info.id_hex);
	rec.id = info.id;
	if ((r = store_read(store, find_recorded, &rec)) != 0) {
		cli_store_fail(dir, "reading the recorded master keys", r);
		goto out;
	}
	rec.id = NULL;
	if ((r = vault_keys_check(store, keeper)) != 0) {
		if (r == P8V_ERR_MASTER_KEY_MISMATCH)
			cli_fail("master key file %s (key %s) does not match "
			    "the master keys recorded in state directory %s",
			    key_file, id_hex, dir);
		else
			cli_store_fail(dir, "recording the master key", r);
		goto out;
	}
	key_inside = inside(dir, key_file);
	if (key_inside)
		cli_warn("the master key file %s is inside the state directory "
		    "%s: a key next to the data it protects is for development "
		    "only; keep it elsewhere in production", key_file, dir);

	if (json) {
		if ((out = json_pack("{s:s, s:b, s:s, s:b, s:s, s:b, s:b}",
		    "state_dir", dir, "state_dir_created", dir_created,
		    "master_key_file", key_file,
		    "master_key_created", key_created,
		    "master_key_id", id_hex,
		    "master_key_newly_recorded", !rec.found,
		    "master_key_inside_state_dir", key_inside)) == NULL ||
		    json_dumpf(out, stdout, JSON_COMPACT) != 0) {
			cli_fail("writing the result failed");
			goto out;
		}
		putchar('\n');
	} else {
		if (store_location_is_etcd(dir))
			printf("store %s: %s\n", dir, rec.found ?
			    "prepared before" : "prepared");
		else
			printf("state directory %s: %s\n", dir,
			    dir_created ? "created" : "exists");
		printf("master key file %s: %s (key id %s)\n", key_file,
		    key_created ? "created, mode 0600" : "exists", id_hex);
		printf("master key %s: %s\n", id_hex, rec.found ?
		    "already recorded in the state directory" :
		    "recorded in the state directory");
		if (dir_created || key_created || (!rec.found &&
		    store_location_is_etcd(dir)))
			printf("next: p8vault token create --%s %s "
			    "--role portal|signer|admin\n",
			    store_location_is_etcd(dir) ? "store" : "state", dir);
	}
	if (fflush(stdout) != 0) {
		cli_fail("writing to stdout failed");
		goto out;
	}
	ret = CLI_EXIT_OK;
 out:
	json_decref(out);
	admin_keys_finish(&keys);
	store_close(store);
	return ret;
}
