/*
 * cmd_verify.c: p8vault verify: open every key record with the master
 * key(s) and check the audit chain (vault/verify.h). Read-only: safe while
 * p8vaultd runs, and it writes nothing, not even the keys' check values.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/admin.h"
#include "cli/cli.h"
#include "common/err.h"
#include "store/store.h"
#include "vault/verify.h"

static const char verify_usage_text[] =
    "Usage: p8vault verify --state DIR --master-key-file FILE... [--json]\n"
    "\n"
    "Check a state directory: decode every key record, open its sealed key\n"
    "with the master key(s) given (its authenticated data binds identity\n"
    "and metadata), and check that the key matches the stored public key;\n"
    "then walk the hash-chained audit log. Each bad record is named on\n"
    "stderr with the step and the error (master_key_missing: sealed under\n"
    "a key not given; integrity_error: altered or damaged). Read-only and\n"
    "safe while p8vaultd runs. During a rotation give both keys.\n"
    "\n"
    "Options:\n"
    "  --state DIR             the state directory\n"
    "  --master-key-file FILE  a master key (repeat for several)\n"
    "  --json                  print {\"records\",\"tombstones\",\"opened\","
    "\"bad\":[...],\n"
    "                          \"audit_events\",\"audit_intact\","
    "\"audit_bad_seq\",\"ok\"}\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: 0 every record opens and the audit chain holds; 1 the\n"
    "check could not run (named on stderr); 2 usage error; 3 problems\n"
    "found (each named on stderr).\n";

struct verify_ui {
	const char *dir;
	json_t *bad;
};

static void
on_bad(const char *app, const char *key_id, enum vault_verify_step step,
    int err, void *arg)
{
	struct verify_ui *ui = arg;

	cli_fail("verify: key record %s/%s in state directory %s: %s: %s (%s)",
	    app, key_id, ui->dir, vault_verify_step_name(step),
	    p8v_strerror(err), p8v_errname(err));
	json_array_append_new(ui->bad, json_pack("{s:s, s:s, s:s, s:s}",
	    "app", app, "key_id", key_id, "step", vault_verify_step_name(step),
	    "error", p8v_errname(err)));
}

int
cmd_verify(int argc, char **argv)
{
	static const struct option options[] = {
		{ "state", required_argument, NULL, 's' },
		{ "master-key-file", required_argument, NULL, 'k' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct admin_keys keys;
	struct verify_ui ui = { NULL, NULL };
	struct vault_verify_result vr;
	struct store *store = NULL;
	const char *dir = NULL;
	int json = 0, problems, c, r, ret = CLI_EXIT_FAILURE;

	memset(&keys, 0, sizeof(keys));
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 's':
			dir = optarg;
			break;
		case 'k':
			if ((ret = admin_keys_add(&keys, "verify", optarg)) !=
			    CLI_EXIT_OK)
				return ret;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			fputs(verify_usage_text, stdout);
			return CLI_EXIT_OK;
		default:
			return cli_usage_error("verify", "bad option");
		}
	}
	if (optind < argc)
		return cli_usage_error("verify", "unexpected argument '%s'",
		    argv[optind]);
	if (dir == NULL || *dir == '\0')
		return cli_usage_error("verify", "--state DIR is required");
	if (keys.n == 0)
		return cli_usage_error("verify", "--master-key-file FILE is "
		    "required");
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK)
		return ret;
	admin_quiet_logs();
	if ((ret = admin_keys_load(&keys)) != CLI_EXIT_OK)
		goto out;
	if ((ret = cli_store_open_existing(dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	ui.dir = dir;
	if ((ui.bad = json_array()) == NULL) {
		cli_fail("out of memory");
		goto out;
	}
	if ((r = vault_verify(store, keys.keeper, on_bad, &ui, &vr)) != 0) {
		cli_store_fail(dir, "verify: reading the key records", r);
		goto out;
	}
	if (vr.audit_err != 0)
		cli_fail("verify: the audit log of state directory %s is broken "
		    "at event %llu (that event or the one before it was "
		    "changed or removed)", dir,
		    (unsigned long long)vr.audit_bad_seq);
	problems = vr.bad > 0 || vr.audit_err != 0;
	if (json)
		ret = admin_print_json(json_pack("{s:s, s:I, s:I, s:I, s:O, "
		    "s:I, s:b, s:I, s:b}",
		    "state_dir", dir,
		    "records", (json_int_t)vr.records,
		    "tombstones", (json_int_t)vr.tombstones,
		    "opened", (json_int_t)vr.opened,
		    "bad", ui.bad,
		    "audit_events", (json_int_t)vr.audit_events,
		    "audit_intact", vr.audit_err == 0,
		    "audit_bad_seq", (json_int_t)vr.audit_bad_seq,
		    "ok", !problems));
	else {
		printf("state directory %s: %llu key records: %llu opened, "
		    "%llu revoked, %llu bad; audit log: %llu events, %s\n",
		    dir, (unsigned long long)vr.records,
		    (unsigned long long)vr.opened,
		    (unsigned long long)vr.tombstones,
		    (unsigned long long)vr.bad,
		    (unsigned long long)vr.audit_events,
		    vr.audit_err == 0 ? "intact" : "BROKEN");
		ret = admin_flush();
	}
	if (ret == CLI_EXIT_OK && problems)
		ret = CLI_EXIT_PROBLEMS;
 out:
	json_decref(ui.bad);
	store_close(store);
	admin_keys_finish(&keys);
	return ret;
}
