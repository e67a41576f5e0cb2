/*
 * cmd_backup.c: p8vault backup and p8vault restore.
 *
 * backup writes one file: a compacted copy of the state directory's LMDB
 * data file, taken from one consistent snapshot while p8vaultd goes on
 * serving (store/backup.h). It holds only what the store holds: sealed
 * envelopes and clear metadata. It needs no master key, and is useless
 * without the master key(s) its records are sealed under.
 *
 * restore puts a backup into a new (or empty) state directory and checks
 * it with the master key: the key must match the backup's recorded keys,
 * every record must open (vault_verify) and the audit chain must hold.
 * A backup that does not match the key is removed again; one that restores
 * with damaged records is kept, the records named (exit 3).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "cli/admin.h"
#include "cli/cli.h"
#include "common/err.h"
#include "store/backup.h"
#include "store/masterkeys.h"
#include "store/store.h"
#include "vault/rotate.h"
#include "vault/vault.h"
#include "vault/verify.h"

/* Read buffer of the backup's checksum. */
#define BACKUP_HASH_CHUNK (64 * 1024)
#define BACKUP_SHA256_BYTES 32

static const char backup_usage_text[] =
    "Usage: p8vault backup --state DIR [--json] OUT\n"
    "\n"
    "Write a backup of the state directory DIR to the new file OUT (mode\n"
    "0600; an existing file is never replaced): a compacted copy of the\n"
    "store taken from one consistent snapshot, safe while p8vaultd runs.\n"
    "It holds only sealed keys and metadata, never a key in the clear, and\n"
    "needs no master key; restoring it does (the key(s) its records are\n"
    "sealed under when the backup is taken: keep retired master keys as\n"
    "long as backups that need them). Prints the size and SHA-256 of OUT.\n"
    "\n"
    "Options:\n"
    "  --state DIR   the state directory\n"
    "  --json        print {\"state_dir\",\"backup\",\"bytes\",\"sha256\"}\n"
    "  -h, --help    show this help\n"
    "\n"
    "Exit status: 0 done, 1 failed, 2 usage error.\n";

static const char restore_usage_text[] =
    "Usage: p8vault restore --state NEWDIR --master-key-file FILE... "
    "[--json] BACKUP\n"
    "\n"
    "Restore the backup file BACKUP (from 'p8vault backup') into the state\n"
    "directory NEWDIR, which must not exist or be empty, and check it with\n"
    "the master key: the key must be one the backup has recorded, every\n"
    "key record must open and match its public key, and the audit chain\n"
    "must hold. Then start p8vaultd on NEWDIR with the same key.\n"
    "If the key does not match, nothing is left behind. If some records\n"
    "are damaged, the restore is kept and each bad record is named.\n"
    "\n"
    "Options:\n"
    "  --state NEWDIR          the new state directory\n"
    "  --master-key-file FILE  a master key (repeat for several)\n"
    "  --json                  print one JSON object\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: 0 restored and checked; 1 failed (nothing restored);\n"
    "2 usage error; 3 restored, but the check found problems (named on\n"
    "stderr).\n";

enum opt {
	OPT_STATE = 's',
	OPT_KEY = 'k',
	OPT_JSON = 'j',
	OPT_HELP = 'h',
};

struct backup_args {
	const char *cmd;
	const char *dir;
	struct admin_keys keys;
	int json;
	int help;
	const char *operand;
};

static int
parse(int argc, char **argv, const char *allowed, struct backup_args *a)
{
	static const struct option options[] = {
		{ "state", required_argument, NULL, OPT_STATE },
		{ "master-key-file", required_argument, NULL, OPT_KEY },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		if (c == '?' || strchr(allowed, c) == NULL)
			return cli_usage_error(a->cmd, "bad option");
		switch (c) {
		case OPT_STATE:
			a->dir = optarg;
			break;
		case OPT_KEY:
			if ((r = admin_keys_add(&a->keys, a->cmd, optarg)) !=
			    CLI_EXIT_OK)
				return r;
			break;
		case OPT_JSON:
			a->json = 1;
			break;
		case OPT_HELP:
			a->help = 1;
			break;
		default:
			return cli_usage_error(a->cmd, "bad option");
		}
	}
	if (a->help)
		return CLI_EXIT_OK;
	if (a->dir == NULL || *a->dir == '\0')
		return cli_usage_error(a->cmd, "--state DIR is required");
	/* LMDB's hot copy: an etcd store moves with export and import. */
	if (store_location_is_etcd(a->dir))
		return cli_usage_error(a->cmd, "%s works on an LMDB state "
		    "directory; for an etcd store use 'p8vault export' and "
		    "'p8vault import'", a->cmd);
	if (argc - optind != 1)
		return cli_usage_error(a->cmd, "give one %s", strcmp(a->cmd,
		    "backup") == 0 ? "OUT file" : "BACKUP file");
	a->operand = argv[optind];
	return CLI_EXIT_OK;
}

/* SHA-256 (hex) and size of the file at path. 0 or -1. */
static int
file_digest(const char *path, char hex[2 * BACKUP_SHA256_BYTES + 1],
    uint64_t *size)
{
	uint8_t md[BACKUP_SHA256_BYTES];
	unsigned int md_len = 0;
	EVP_MD_CTX *ctx = NULL;
	uint8_t *buf = NULL;
	ssize_t n;
	int fd = -1, r = -1;

	*size = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
	    (buf = malloc(BACKUP_HASH_CHUNK)) == NULL ||
	    (ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	while ((n = read(fd, buf, BACKUP_HASH_CHUNK)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			goto out;
		*size += (uint64_t)n;
	}
	if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 ||
	    md_len != BACKUP_SHA256_BYTES)
		goto out;
	admin_hex(md, md_len, hex);
	r = 0;
 out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}


/* --- backup --- */

int
cmd_backup(int argc, char **argv)
{
	struct backup_args a;
	struct store *store = NULL;
	char hex[2 * BACKUP_SHA256_BYTES + 1], dir[4096];
	uint64_t size = 0;
	struct stat st;
	int r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "backup";
	if ((ret = parse(argc, argv, "sjh", &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		fputs(backup_usage_text, stdout);
		return CLI_EXIT_OK;
	}
	admin_quiet_logs();
	if (lstat(a.operand, &st) == 0)
		return cli_fail("backup: %s exists; a backup never replaces a "
		    "file", a.operand);
	/* Say why, rather than "input/output error", for the usual case. */
	snprintf(dir, sizeof(dir), "%s", a.operand);
	if (access(dirname(dir), W_OK) != 0)
		return cli_fail("backup: cannot write %s: %s", a.operand,
		    strerror(errno));
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	/* Again as the state directory's owner, if root became it. */
	snprintf(dir, sizeof(dir), "%s", a.operand);
	if (access(dirname(dir), W_OK) != 0) {
		cli_fail("backup: cannot write %s as uid %lu, the owner of state "
		    "directory %s: %s", a.operand, (unsigned long)geteuid(),
		    a.dir, strerror(errno));
		goto out;
	}
	if ((r = store_backup(store, a.operand)) != 0) {
		if (r == P8V_ERR_EXISTS)
			cli_fail("backup: %s exists; a backup never replaces a "
			    "file", a.operand);
		else
			cli_fail("backup of state directory %s to %s: %s",
			    a.dir, a.operand, p8v_strerror(r));
		goto out;
	}
	if (file_digest(a.operand, hex, &size) != 0) {
		cli_fail("backup: reading back %s: %s", a.operand,
		    strerror(errno));
		goto out;
	}
	if ((r = admin_audit(store, "store.backup", json_pack("{s:s, s:I, s:s}",
	    "file", a.operand, "bytes", (json_int_t)size, "sha256",
	    hex))) != 0)
		cli_warn("backup written, but its audit event was not: %s",
		    p8v_strerror(r));
	if (a.json)
		ret = admin_print_json(json_pack("{s:s, s:s, s:I, s:s}",
		    "state_dir", a.dir, "backup", a.operand,
		    "bytes", (json_int_t)size, "sha256", hex));
	else {
		printf("backup of state directory %s written to %s (%llu "
		    "bytes, mode 0600)\nsha256 %s\n", a.dir, a.operand,
		    (unsigned long long)size, hex);
		ret = admin_flush();
	}
 out:
	store_close(store);
	return ret;
}

/* --- restore --- */

struct restore_ui {
	json_t *bad;            /* [{app, key_id, step, error}] */
	const char *dir;
};

static void
restore_bad(const char *app, const char *key_id, enum vault_verify_step step,
    int err, void *arg)
{
	struct restore_ui *ui = arg;

	cli_fail("restore: key record %s/%s in state directory %s: %s: %s "
	    "(%s)", app, key_id, ui->dir, vault_verify_step_name(step),
	    p8v_strerror(err), p8v_errname(err));
	json_array_append_new(ui->bad, json_pack("{s:s, s:s, s:s, s:s}",
	    "app", app, "key_id", key_id, "step", vault_verify_step_name(step),
	    "error", p8v_errname(err)));
}

int
cmd_restore(int argc, char **argv)
{
	struct backup_args a;
	struct restore_ui ui = { NULL, NULL };
	struct vault_verify_result vr;
	struct vault_master_key_use *u = NULL;
	struct store *store = NULL;
	size_t i, n = 0, recorded = 0;
	int created = 0, restored = 0, problems, r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "restore";
	if ((ret = parse(argc, argv, "skjh", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		fputs(restore_usage_text, stdout);
		goto out;
	}
	if (a.keys.n == 0) {
		ret = cli_usage_error("restore", "--master-key-file FILE is "
		    "required: a restore is checked with the master key");
		goto out;
	}
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK)
		goto out;
	admin_quiet_logs();
	if ((ret = admin_keys_load(&a.keys)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	ui.dir = a.dir;
	if ((ui.bad = json_array()) == NULL) {
		cli_fail("out of memory");
		goto out;
	}
	r = store_restore(a.operand, a.dir, &created);
	switch (r) {
	case 0:
		restored = 1;
		break;
	case P8V_ERR_NOT_FOUND:
		cli_fail("restore: backup file %s: no such file", a.operand);
		goto out;
	case P8V_ERR_INTEGRITY:
		cli_fail("restore: %s is not a p8vault backup (not an LMDB data "
		    "file)", a.operand);
		goto out;
	case P8V_ERR_EXISTS:
		cli_fail("restore: %s is not an empty directory; restore only "
		    "into a new or empty state directory", a.dir);
		goto out;
	default:
		cli_fail("restore: %s into %s: %s", a.operand, a.dir,
		    p8v_strerror(r));
		goto out;
	}
	if ((r = store_open(a.dir, NULL, &store)) != 0) {
		cli_fail("restore: %s does not open as a p8vault store: %s",
		    a.operand, p8v_strerror(r));
		goto out;
	}
	if ((r = vault_master_usage(store, &u, &n)) != 0 &&
	    r != P8V_ERR_INTEGRITY) {
		cli_fail("restore: reading %s: %s", a.operand, p8v_strerror(r));
		goto out;
	}
	for (i = 0; i < n; i++)
		recorded += u[i].recorded;
	/* A store that has recorded no master key would accept any key:
	 * that is not a backup of a vault that ever ran. (A record that
	 * fails to decode makes the count fail; verify names it below.) */
	if (r == 0 && recorded == 0) {
		cli_fail("restore: %s holds no p8vault state (no master key "
		    "recorded)", a.operand);
		goto out;
	}
	if ((r = vault_keys_check(store, a.keys.keeper)) != 0) {
		if (r == P8V_ERR_MASTER_KEY_MISMATCH)
			cli_fail("restore: master key file %s%s does not match "
			    "backup %s (its records are sealed under another "
			    "master key)", a.keys.files[0],
			    a.keys.n > 1 ? " (or the others given)" : "",
			    a.operand);
		else
			cli_fail("restore: checking the master key against %s: "
			    "%s", a.operand, p8v_strerror(r));
		goto out;
	}
	if ((r = vault_verify(store, a.keys.keeper, restore_bad, &ui,
	    &vr)) != 0) {
		cli_fail("restore: checking the records of %s: %s", a.operand,
		    p8v_strerror(r));
		goto out;
	}
	if (vr.audit_err != 0)
		cli_fail("restore: the audit log of %s is broken at event %llu "
		    "(an event changed or removed)", a.operand,
		    (unsigned long long)vr.audit_bad_seq);
	problems = vr.bad > 0 || vr.audit_err != 0;
	/* From here on the restore stays: it opened with the key. */
	restored = 0;
	if ((r = admin_audit(store, "store.restore", json_pack("{s:s, s:I, s:I}",
	    "file", a.operand, "records", (json_int_t)vr.records,
	    "bad_records", (json_int_t)vr.bad))) != 0)
		cli_warn("restored, but the audit event was not written: %s",
		    p8v_strerror(r));
	if (a.json)
		ret = admin_print_json(json_pack("{s:s, s:s, s:I, s:I, s:I, "
		    "s:O, s:I, s:b, s:b}",
		    "state_dir", a.dir, "backup", a.operand,
		    "records", (json_int_t)vr.records,
		    "tombstones", (json_int_t)vr.tombstones,
		    "opened", (json_int_t)vr.opened,
		    "bad", ui.bad,
		    "audit_events", (json_int_t)vr.audit_events,
		    "audit_intact", vr.audit_err == 0,
		    "ok", !problems));
	else {
		printf("restored %s into state directory %s: %llu key records "
		    "(%llu revoked), %llu opened, %llu bad; audit log: %llu "
		    "events, %s\n", a.operand, a.dir,
		    (unsigned long long)vr.records,
		    (unsigned long long)vr.tombstones,
		    (unsigned long long)vr.opened,
		    (unsigned long long)vr.bad,
		    (unsigned long long)vr.audit_events,
		    vr.audit_err == 0 ? "intact" : "BROKEN");
		ret = admin_flush();
	}
	if (ret == CLI_EXIT_OK && problems)
		ret = CLI_EXIT_PROBLEMS;
 out:
	free(u);
	json_decref(ui.bad);
	store_close(store);
	if (restored)
		store_restore_discard(a.dir, created);
	admin_keys_finish(&a.keys);
	return ret;
}
