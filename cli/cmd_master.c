/*
 * cmd_master.c: p8vault master generate|rotate|status|retire: master keys.
 *
 * rotate re-wraps every sealed data key of a state directory under a new
 * master key (vault/rotate.h): in batches, one transaction each, safe while
 * p8vaultd serves with both keys loaded, safe to kill at any point and to
 * run again. status says which master keys the stored data depends on, so
 * the operator knows when an old key can be retired.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli/admin.h"
#include "cli/cli.h"
#include "common/err.h"
#include "crypto/masterkey.h"
#include "store/records.h"
#include "store/store.h"
#include "vault/rotate.h"

static const char master_usage_text[] =
    "Usage: p8vault master generate [--json] FILE\n"
    "       p8vault master rotate --state DIR --master-key-file OLD\n"
    "                             --new-master-key-file NEW [--batch N] "
    "[--json]\n"
    "       p8vault master status --state DIR [--master-key-file FILE]... "
    "[--json]\n"
    "       p8vault master retire --state DIR [--json] KEYID\n"
    "\n"
    "Master keys: 32 random bytes that seal every stored key's data key.\n"
    "\n"
    "  generate  create a new random master key in FILE (mode 0600; an\n"
    "            existing file is never overwritten) and print its id.\n"
    "  rotate    re-wrap every sealed data key (key records and persisted\n"
    "            APNs tokens) under NEW. Records keep their metadata; only\n"
    "            the wrap of each 32-byte data key changes. Runs in batches\n"
    "            of N records (default 256), one transaction each: safe\n"
    "            while p8vaultd serves with OLD and NEW loaded (list NEW\n"
    "            last, so that it seals new records), safe to interrupt\n"
    "            (even kill -9) at any point; run it again to finish. On a\n"
    "            terminal a progress line is drawn on stderr.\n"
    "            --master-key-file may be repeated for several old keys.\n"
    "  status    every master key the state directory knows, with how many\n"
    "            key records and persisted APNs tokens each seals. A key\n"
    "            that seals nothing can be retired (once no backup you keep\n"
    "            needs it). With --master-key-file, says which file holds\n"
    "            which key; no key is needed otherwise.\n"
    "  retire    retire master key KEYID (16 hex digits) from the state\n"
    "            directory once nothing is sealed under it: its check value\n"
    "            is removed, and a p8vaultd start or SIGHUP that loads it\n"
    "            is refused from then on. Refused while a key record or a\n"
    "            persisted APNs token is sealed under it (finish 'master\n"
    "            rotate'), or if it is the only key the directory records.\n"
    "            Reload the daemon without the key first. No key needed.\n"
    "\n"
    "Options:\n"
    "  --state DIR                 the state directory\n"
    "  --master-key-file FILE      an old (or, for status, any) master key\n"
    "  --new-master-key-file FILE  rotate: the key to rotate to\n"
    "  --batch N                   rotate: records per transaction "
    "(1-65536)\n"
    "  --json                      print one JSON object on stdout\n"
    "  -h, --help                  show this help\n"
    "\n"
    "Exit status: 0 done; 1 failed (rotate: some records could not be\n"
    "re-wrapped, each named on stderr; run 'p8vault verify'); 2 usage "
    "error.\n";

enum opt {
	OPT_STATE = 's',
	OPT_KEY = 'k',
	OPT_NEW_KEY = 'n',
	OPT_BATCH = 'b',
	OPT_JSON = 'j',
	OPT_HELP = 'h',
};

struct master_args {
	const char *cmd;        /* "master rotate", for messages */
	const char *dir;
	struct admin_keys keys; /* --master-key-file, in order */
	const char *new_file;
	size_t batch;
	int json;
	int help;
	char **rest;            /* operands */
	int n_rest;
};

static void
usage(FILE *f)
{
	fputs(master_usage_text, f);
}

static int
parse(int argc, char **argv, const char *allowed, struct master_args *a)
{
	static const struct option options[] = {
		{ "state", required_argument, NULL, OPT_STATE },
		{ "master-key-file", required_argument, NULL, OPT_KEY },
		{ "new-master-key-file", required_argument, NULL, OPT_NEW_KEY },
		{ "batch", required_argument, NULL, OPT_BATCH },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	unsigned long v;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		if (c == '?' || strchr(allowed, c) == NULL)
			return cli_usage_error("master", "%s: bad option",
			    a->cmd);
		switch (c) {
		case OPT_STATE:
			a->dir = optarg;
			break;
		case OPT_KEY:
			if ((r = admin_keys_add(&a->keys, "master",
			    optarg)) != CLI_EXIT_OK)
				return r;
			break;
		case OPT_NEW_KEY:
			if (a->new_file != NULL)
				return cli_usage_error("master", "%s: "
				    "--new-master-key-file given twice",
				    a->cmd);
			a->new_file = optarg;
			break;
		case OPT_BATCH:
			v = strtoul(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end != '\0' ||
			    v < 1 || v > VAULT_ROTATE_BATCH_MAX)
				return cli_usage_error("master", "%s: --batch "
				    "must be 1-%d", a->cmd,
				    VAULT_ROTATE_BATCH_MAX);
			a->batch = (size_t)v;
			break;
		case OPT_JSON:
			a->json = 1;
			break;
		case OPT_HELP:
			a->help = 1;
			break;
		default:
			return cli_usage_error("master", "%s: bad option",
			    a->cmd);
		}
	}
	a->rest = argv + optind;
	a->n_rest = argc - optind;
	return CLI_EXIT_OK;
}

/* --- generate --- */

static int
master_generate(int argc, char **argv)
{
	struct master_args a;
	struct admin_keys keys;
	struct keeper_key_info info;
	char id[MASTER_KEY_ID_HEX + 1];
	struct stat st;
	const char *file;
	int ret;

	memset(&a, 0, sizeof(a));
	memset(&keys, 0, sizeof(keys));
	a.cmd = "master generate";
	if ((ret = parse(argc, argv, "jh", &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (a.n_rest != 1)
		return cli_usage_error("master", "master generate: give one "
		    "FILE");
	file = a.rest[0];
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK)
		return ret;
	admin_quiet_logs();
	ret = CLI_EXIT_FAILURE;
	if (lstat(file, &st) == 0) {
		cli_fail("master key file %s exists; a key file is never "
		    "overwritten", file);
		goto out;
	}
	/* The keeper creates the file and loads it: this process never
	 * holds the key. */
	if ((ret = admin_keys_start(&keys, file, file, &info)) !=
	    CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	snprintf(id, sizeof(id), "%s", info.id_hex);
	if (a.json)
		ret = admin_print_json(json_pack("{s:s, s:s}",
		    "master_key_file", file, "master_key_id", id));
	else {
		printf("master key file %s: created, mode 0600 (key id %s)\n",
		    file, id);
		ret = admin_flush();
	}
 out:
	admin_keys_finish(&keys);
	return ret;
}

/* --- rotate --- */

struct rotate_ui {
	const char *dir;
	json_t *failed;         /* --json: [{app, key_id, error}] */
};

static void
rotate_progress(uint64_t done, uint64_t total, void *arg)
{
	(void)arg;
	admin_progress("re-wrapping", done, total);
}

static void
rotate_failure(const char *app, const char *key_id, int err, void *arg)
{
	struct rotate_ui *ui = arg;

	admin_progress_end();
	cli_fail("key record %s/%s in state directory %s cannot be "
	    "re-wrapped: %s (%s)", app, key_id, ui->dir, p8v_strerror(err),
	    p8v_errname(err));
	if (ui->failed != NULL)
		json_array_append_new(ui->failed, json_pack("{s:s, s:s, s:s}",
		    "app", app, "key_id", key_id, "error", p8v_errname(err)));
}

static int
master_rotate(int argc, char **argv)
{
	struct master_args a;
	struct vault_rotate_options opts;
	struct vault_rotate_result res;
	struct rotate_ui ui = { NULL, NULL };
	struct store *store = NULL;
	struct keeper_key_info info;
	uint8_t new_id[MASTER_KEY_ID_BYTES];
	const char *file;
	int r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "master rotate";
	if ((ret = parse(argc, argv, "sknbjh", &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (a.n_rest != 0)
		return cli_usage_error("master", "master rotate: unexpected "
		    "argument '%s'", a.rest[0]);
	if (a.dir == NULL || *a.dir == '\0')
		return cli_usage_error("master", "master rotate: --state DIR "
		    "is required");
	if (a.keys.n == 0)
		return cli_usage_error("master", "master rotate: "
		    "--master-key-file OLD is required");
	if (a.new_file == NULL || *a.new_file == '\0')
		return cli_usage_error("master", "master rotate: "
		    "--new-master-key-file NEW is required (create one with "
		    "'p8vault master generate NEW')");
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK)
		return ret;
	admin_quiet_logs();
	ret = CLI_EXIT_FAILURE;
	if ((ret = admin_keys_start(&a.keys, a.new_file, NULL, &info)) !=
	    CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	memcpy(new_id, info.id, sizeof(new_id));
	if ((r = keeper_set_primary(a.keys.keeper, new_id)) != 0) {
		cli_fail("new master key file %s: %s", a.new_file,
		    p8v_strerror(r));
		goto out;
	}
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;

	ui.dir = a.dir;
	if (a.json && (ui.failed = json_array()) == NULL) {
		cli_fail("out of memory");
		goto out;
	}
	memset(&opts, 0, sizeof(opts));
	opts.batch = a.batch;
	opts.actor = ADMIN_ACTOR;
	opts.progress = rotate_progress;
	opts.failure = rotate_failure;
	opts.arg = &ui;
	r = vault_master_rotate(store, a.keys.keeper, new_id, &opts, &res);
	admin_progress_end();
	if (r == P8V_ERR_MASTER_KEY_MISMATCH && res.unknown_key_id[0] != '\0') {
		file = admin_keys_file_of(&a.keys, res.unknown_key_id);
		cli_fail("master key file %s (key %s) is not a key state "
		    "directory %s has recorded: give the key its records are "
		    "sealed under now", file != NULL ? file : "?",
		    res.unknown_key_id, a.dir);
		goto out;
	}
	if (r == P8V_ERR_MASTER_KEY_MISMATCH) {
		cli_fail("no master key given matches state directory %s "
		    "(a key that fails its recorded check value, or none "
		    "recorded)", a.dir);
		goto out;
	}
	if (r == P8V_ERR_INTEGRITY) {
		cli_fail("state directory %s: a key record or master-key "
		    "entry fails to decode; 'p8vault verify' names it", a.dir);
		goto out;
	}
	if (r != 0) {
		cli_store_fail(a.dir, "rotating the master key", r);
		if (res.batches > 0)
			cli_warn("%llu batch(es) committed before the failure "
			    "stay committed: run the rotation again to finish",
			    (unsigned long long)res.batches);
		goto out;
	}
	if (a.json) {
		ret = admin_print_json(json_pack("{s:s, s:s, s:I, s:I, s:I, "
		    "s:I, s:O, s:I, s:I, s:I, s:I, s:I, s:b}",
		    "state_dir", a.dir,
		    "master_key_id", res.new_key_id,
		    "records", (json_int_t)res.records,
		    "tombstones", (json_int_t)res.tombstones,
		    "already", (json_int_t)res.already,
		    "rewrapped", (json_int_t)res.rewrapped,
		    "failed", ui.failed,
		    "tokens_rewrapped", (json_int_t)res.tokens_rewrapped,
		    "tokens_dropped", (json_int_t)res.tokens_dropped,
		    "batches", (json_int_t)res.batches,
		    "passes", (json_int_t)res.passes,
		    "remaining", (json_int_t)res.remaining,
		    "complete", res.remaining == 0));
	} else {
		printf("state directory %s: rotation to master key %s\n",
		    a.dir, res.new_key_id);
		printf("  key records: %llu (%llu revoked), %llu already under "
		    "it, %llu re-wrapped now, %llu failed\n",
		    (unsigned long long)res.records,
		    (unsigned long long)res.tombstones,
		    (unsigned long long)res.already,
		    (unsigned long long)res.rewrapped,
		    (unsigned long long)res.failed);
		printf("  APNs tokens: %llu re-wrapped, %llu dropped\n",
		    (unsigned long long)res.tokens_rewrapped,
		    (unsigned long long)res.tokens_dropped);
		if (res.remaining == 0)
			printf("every key record is sealed under %s; check with "
			    "'p8vault master status', then run p8vaultd with "
			    "%s alone\n", res.new_key_id, a.new_file);
		ret = admin_flush();
	}
	if (ret == CLI_EXIT_OK && res.remaining > 0)
		ret = cli_fail("rotation incomplete: %llu key record(s) in "
		    "state directory %s are not under master key %s (named "
		    "above%s); keep the old key loaded",
		    (unsigned long long)res.remaining, a.dir, res.new_key_id,
		    res.failed < res.remaining ? ", or sealed meanwhile "
		    "under another key: run again" : "");
 out:
	json_decref(ui.failed);
	admin_keys_finish(&a.keys);
	store_close(store);
	return ret;
}

/* --- status --- */

struct count {
	uint64_t n;
};

static int
count_txn(struct store_txn *txn, void *arg)
{
	return key_record_count(txn, &((struct count *)arg)->n);
}

static int
master_status(int argc, char **argv)
{
	struct master_args a;
	struct vault_master_key_use *u = NULL;
	struct store *store = NULL;
	struct count total = { 0 };
	char when[CLI_TIME_BYTES];
	json_t *keys = NULL, *in_use = NULL, *retirable = NULL, *o;
	uint64_t sealed = 0, tokens = 0;
	const char *file;
	size_t i, j, n = 0;
	int r, ret, found;

	memset(&a, 0, sizeof(a));
	a.cmd = "master status";
	if ((ret = parse(argc, argv, "skjh", &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (a.n_rest != 0)
		return cli_usage_error("master", "master status: unexpected "
		    "argument '%s'", a.rest[0]);
	if (a.dir == NULL || *a.dir == '\0')
		return cli_usage_error("master", "master status: --state DIR "
		    "is required");
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK)
		return ret;
	admin_quiet_logs();
	if ((ret = admin_keys_load(&a.keys)) != CLI_EXIT_OK)
		goto out;
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	if ((r = vault_master_usage(store, &u, &n)) != 0 ||
	    (r = store_read(store, count_txn, &total)) != 0) {
		if (r == P8V_ERR_INTEGRITY)
			cli_fail("master status: a key record or master-key "
			    "entry in state directory %s fails to decode; "
			    "'p8vault verify' names it", a.dir);
		else
			cli_store_fail(a.dir, "reading which master keys seal "
			    "the records", r);
		goto out;
	}
	if ((keys = json_array()) == NULL || (in_use = json_array()) == NULL ||
	    (retirable = json_array()) == NULL) {
		cli_fail("out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		file = admin_keys_file_of(&a.keys, u[i].id_hex);
		sealed += u[i].records;
		tokens += u[i].tokens;
		o = json_pack("{s:s, s:b, s:s?, s:I, s:I, s:s?, s:b}",
		    "master_key_id", u[i].id_hex,
		    "recorded", u[i].recorded,
		    "first_seen", u[i].recorded ?
		    cli_time(u[i].first_seen, when) : NULL,
		    "records", (json_int_t)u[i].records,
		    "tokens", (json_int_t)u[i].tokens,
		    "file", file,
		    "in_use", u[i].records > 0 || u[i].tokens > 0);
		if (o == NULL || json_array_append_new(keys, o) != 0 ||
		    json_array_append_new(u[i].records > 0 || u[i].tokens > 0 ?
		    in_use : retirable, json_string(u[i].id_hex)) != 0) {
			cli_fail("out of memory");
			goto out;
		}
	}
	/* Given key files the store has never seen. */
	for (j = 0; j < a.keys.n; j++) {
		for (found = 0, i = 0; i < n && !found; i++)
			found = strcmp(u[i].id_hex, a.keys.ids[j]) == 0;
		if (found)
			continue;
		cli_warn("master key file %s (key %s) is not known to state "
		    "directory %s", a.keys.files[j], a.keys.ids[j], a.dir);
	}
	if (a.json) {
		ret = admin_print_json(json_pack("{s:s, s:I, s:I, s:I, s:O, "
		    "s:O, s:O}",
		    "state_dir", a.dir,
		    "records", (json_int_t)total.n,
		    "tombstones", (json_int_t)(total.n - sealed),
		    "tokens", (json_int_t)tokens,
		    "master_keys", keys,
		    "in_use", in_use,
		    "retirable", retirable));
		goto out;
	}
	printf("state directory %s: %llu key records (%llu revoked), %llu "
	    "persisted APNs tokens\n", a.dir, (unsigned long long)total.n,
	    (unsigned long long)(total.n - sealed),
	    (unsigned long long)tokens);
	for (i = 0; i < n; i++) {
		file = admin_keys_file_of(&a.keys, u[i].id_hex);
		printf("master key %s: %llu records, %llu tokens, %s%s%s%s; "
		    "%s\n", u[i].id_hex,
		    (unsigned long long)u[i].records,
		    (unsigned long long)u[i].tokens,
		    u[i].recorded ? "recorded " : "NOT recorded",
		    u[i].recorded ? cli_time(u[i].first_seen, when) : "",
		    file != NULL ? ", file " : "", file != NULL ? file : "",
		    u[i].records > 0 ? "in use: records depend on it" :
		    u[i].tokens > 0 ? "in use by cached tokens only (a "
		    "rotation re-wraps them)" :
		    "seals nothing: can be retired once no backup you keep "
		    "needs it");
	}
	if (json_array_size(in_use) == 1)
		printf("all sealed data depends on master key %s alone\n",
		    json_string_value(json_array_get(in_use, 0)));
	else if (json_array_size(in_use) > 1)
		printf("sealed data depends on %zu master keys: finish the "
		    "rotation ('p8vault master rotate') before retiring one\n",
		    json_array_size(in_use));
	ret = admin_flush();
 out:
	json_decref(keys);
	json_decref(in_use);
	json_decref(retirable);
	free(u);
	admin_keys_finish(&a.keys);
	store_close(store);
	return ret;
}

/* --- retire --- */

/* id_hex: exactly 16 lowercase hex digits, into id. 0 or -1. */
static int
parse_key_id(const char *id_hex, uint8_t id[MASTER_KEY_ID_BYTES])
{
	size_t i;
	int hi, lo;

	if (strlen(id_hex) != MASTER_KEY_ID_HEX)
		return -1;
	for (i = 0; i < MASTER_KEY_ID_BYTES; i++) {
		hi = id_hex[2 * i];
		lo = id_hex[2 * i + 1];
		if (!((hi >= '0' && hi <= '9') || (hi >= 'a' && hi <= 'f')) ||
		    !((lo >= '0' && lo <= '9') || (lo >= 'a' && lo <= 'f')))
			return -1;
		hi = hi <= '9' ? hi - '0' : hi - 'a' + 10;
		lo = lo <= '9' ? lo - '0' : lo - 'a' + 10;
		id[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static int
master_retire(int argc, char **argv)
{
	struct master_args a;
	struct vault_retire_result res;
	struct store *store = NULL;
	uint8_t id[MASTER_KEY_ID_BYTES];
	int r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "master retire";
	if ((ret = parse(argc, argv, "sjh", &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (a.dir == NULL || *a.dir == '\0')
		return cli_usage_error("master", "master retire: --state DIR "
		    "is required");
	if (a.n_rest != 1)
		return cli_usage_error("master", "master retire: give one "
		    "master key id");
	if (parse_key_id(a.rest[0], id) != 0)
		return cli_usage_error("master", "master retire: '%s' is not "
		    "a master key id (16 lowercase hex digits, as 'p8vault "
		    "master status' prints)", a.rest[0]);
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK)
		return ret;
	admin_quiet_logs();
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	r = vault_master_retire(store, id, "cli", &res);
	if (r == P8V_ERR_MASTER_KEY_IN_USE && (res.records > 0 ||
	    res.tokens > 0)) {
		cli_fail("master key %s is still in use in state directory %s: "
		    "%llu key records and %llu persisted APNs tokens are sealed "
		    "under it; finish 'p8vault master rotate' first",
		    res.id_hex, a.dir, (unsigned long long)res.records,
		    (unsigned long long)res.tokens);
		goto out;
	}
	if (r == P8V_ERR_MASTER_KEY_IN_USE) {
		cli_fail("master key %s is the only master key state directory "
		    "%s records: not retired", res.id_hex, a.dir);
		goto out;
	}
	if (r == P8V_ERR_MASTER_KEY_RETIRED) {
		cli_fail("master key %s is already retired from state "
		    "directory %s", res.id_hex, a.dir);
		goto out;
	}
	if (r == P8V_ERR_NOT_FOUND) {
		cli_fail("state directory %s records no master key %s ('p8vault "
		    "master status' lists them)", a.dir, res.id_hex);
		goto out;
	}
	if (r != 0) {
		cli_store_fail(a.dir, "retiring the master key", r);
		goto out;
	}
	if (a.json) {
		ret = admin_print_json(json_pack("{s:s, s:s, s:b}", "state_dir",
		    a.dir, "master_key_id", res.id_hex, "retired", 1));
		goto out;
	}
	printf("state directory %s: master key %s retired; a daemon or "
	    "command that loads it is refused from now on\n", a.dir,
	    res.id_hex);
	ret = admin_flush();
 out:
	store_close(store);
	return ret;
}

static const struct cli_command subcommands[] = {
	{ "generate", "", "create a new master key file", master_generate },
	{ "rotate", "", "re-wrap every data key under a new master key",
	    master_rotate },
	{ "status", "", "which master keys the records depend on",
	    master_status },
	{ "retire", "", "retire a master key nothing is sealed under",
	    master_retire },
};

int
cmd_master(int argc, char **argv)
{
	return cli_dispatch("master", subcommands,
	    sizeof(subcommands) / sizeof(subcommands[0]), usage, argc, argv);
}
