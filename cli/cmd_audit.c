/*
 * cmd_audit.c: p8vault audit list|verify: the hash-chained audit log
 * (store/audit.h). Both only read, need no master key and are safe while
 * p8vaultd runs.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/admin.h"
#include "cli/cli.h"
#include "common/err.h"
#include "store/audit.h"
#include "store/store.h"

static const char audit_usage_text[] =
    "Usage: p8vault audit list --state DIR [--since TIME] [--json]\n"
    "       p8vault audit verify --state DIR [--json]\n"
    "\n"
    "The audit log: every key upload, activation, revocation, APNs token\n"
    "mint, API token change, master-key rotation, backup and restore, each\n"
    "event chained to the one before by a SHA-256 hash, so that removing,\n"
    "changing or reordering an event is detected.\n"
    "\n"
    "  list    the events in order: sequence number, time, who, what, and\n"
    "          the rest of the event. --since TIME keeps events at or after\n"
    "          TIME (2026-11-23T22:50:01Z, 2026-11-23, or seconds since the\n"
    "          epoch). --json prints a JSON array of the events as stored\n"
    "          (with \"seq\" and \"prev\", the hash of the event before).\n"
    "  verify  walk the whole chain and the stored head; names the first\n"
    "          event where it breaks.\n"
    "\n"
    "Options:\n"
    "  --state DIR    the state directory\n"
    "  --since TIME   list: only events at or after TIME\n"
    "  --json         print JSON\n"
    "  -h, --help     show this help\n"
    "\n"
    "Exit status: 0 done (verify: the chain holds); 1 failed; 2 usage "
    "error;\n"
    "3 verify: the chain is broken.\n";

struct audit_args {
	const char *cmd;
	const char *dir;
	const char *since;
	int json;
	int help;
};

static void
usage(FILE *f)
{
	fputs(audit_usage_text, f);
}

static int
parse(int argc, char **argv, const char *allowed, struct audit_args *a)
{
	static const struct option options[] = {
		{ "state", required_argument, NULL, 's' },
		{ "since", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		if (c == '?' || strchr(allowed, c) == NULL)
			return cli_usage_error("audit", "%s: bad option",
			    a->cmd);
		switch (c) {
		case 's':
			a->dir = optarg;
			break;
		case 'S':
			a->since = optarg;
			break;
		case 'j':
			a->json = 1;
			break;
		case 'h':
			a->help = 1;
			break;
		default:
			return cli_usage_error("audit", "%s: bad option",
			    a->cmd);
		}
	}
	if (a->help)
		return CLI_EXIT_OK;
	if (optind < argc)
		return cli_usage_error("audit", "%s: unexpected argument '%s'",
		    a->cmd, argv[optind]);
	if (a->dir == NULL || *a->dir == '\0')
		return cli_usage_error("audit", "%s: --state DIR is required",
		    a->cmd);
	return CLI_EXIT_OK;
}

/* Print s with anything but printable ASCII as '?': event fields such as
 * file names come from whoever ran a command, and must not drive the
 * terminal. */
static void
put_clean(const char *s)
{
	for (; *s != '\0'; s++)
		putchar(*s >= 0x20 && *s < 0x7f ? *s : '?');
}

static void
put_field(const char *key, const json_t *v)
{
	char *text;

	putchar(' ');
	put_clean(key);
	putchar('=');
	if (json_is_string(v)) {
		put_clean(json_string_value(v));
		return;
	}
	if ((text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) != NULL) {
		put_clean(text);
		free(text);
	}
}

struct listing {
	const char *since;      /* RFC 3339, or NULL */
	int json;
	uint64_t shown;
	int bad;                /* an event that is not a JSON object */
};

static int
list_one(uint64_t seq, const char *text, size_t len, void *arg)
{
	struct listing *l = arg;
	const char *k;
	json_t *ev, *v;
	const json_t *t;

	if ((ev = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
	    !json_is_object(ev)) {
		json_decref(ev);
		l->bad = 1;
		return P8V_ERR_INTEGRITY;
	}
	t = json_object_get(ev, "time");
	/* RFC 3339 UTC strings of one width compare as times. */
	if (l->since != NULL && (!json_is_string(t) ||
	    strcmp(json_string_value(t), l->since) < 0)) {
		json_decref(ev);
		return 0;
	}
	if (l->json) {
		/* The event as stored (canonical JSON), verbatim. */
		fputs(l->shown == 0 ? "[" : ",", stdout);
		fwrite(text, 1, len, stdout);
	} else {
		printf("%llu ", (unsigned long long)seq);
		put_clean(json_is_string(t) ? json_string_value(t) : "-");
		v = json_object_get(ev, "who");
		putchar(' ');
		put_clean(json_is_string(v) ? json_string_value(v) : "-");
		v = json_object_get(ev, "what");
		putchar(' ');
		put_clean(json_is_string(v) ? json_string_value(v) : "-");
		json_object_foreach(ev, k, v) {
			if (strcmp(k, "seq") == 0 || strcmp(k, "prev") == 0 ||
			    strcmp(k, "time") == 0 || strcmp(k, "who") == 0 ||
			    strcmp(k, "what") == 0)
				continue;
			put_field(k, v);
		}
		putchar('\n');
	}
	l->shown++;
	json_decref(ev);
	return 0;
}

static int
list_txn(struct store_txn *txn, void *arg)
{
	return store_audit_foreach(txn, 1, list_one, arg);
}

static int
audit_list(int argc, char **argv)
{
	struct audit_args a;
	struct listing l;
	struct store *store = NULL;
	char since[CLI_TIME_BYTES];
	int64_t t;
	int r, ret;

	memset(&a, 0, sizeof(a));
	memset(&l, 0, sizeof(l));
	a.cmd = "audit list";
	if ((ret = parse(argc, argv, "sSjh", &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (a.since != NULL) {
		if (admin_parse_time(a.since, &t) != 0 ||
		    strcmp(cli_time(t, since), "-") == 0)
			return cli_usage_error("audit", "audit list: --since: "
			    "not a time (2026-11-23T22:50:01Z, 2026-11-23 or "
			    "seconds since the epoch)");
		l.since = since;
	}
	admin_quiet_logs();
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	l.json = a.json;
	r = store_read(store, list_txn, &l);
	if (a.json)
		fputs(l.shown == 0 ? "[]\n" : "]\n", stdout);
	if (r != 0) {
		if (r == P8V_ERR_INTEGRITY)
			cli_fail("audit list: the audit log of state directory "
			    "%s holds a malformed event; run 'p8vault audit "
			    "verify'", a.dir);
		else
			cli_store_fail(a.dir, "reading the audit log", r);
		goto out;
	}
	ret = admin_flush();
 out:
	store_close(store);
	return ret;
}

struct check {
	uint64_t events, bad_seq;
	int err;
};

static int
verify_txn(struct store_txn *txn, void *arg)
{
	struct check *c = arg;

	c->err = store_audit_verify(txn, &c->events, &c->bad_seq);
	return c->err == P8V_ERR_INTEGRITY ? 0 : c->err;
}

static int
audit_verify(int argc, char **argv)
{
	struct audit_args a;
	struct check c = { 0, 0, 0 };
	struct store *store = NULL;
	int r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "audit verify";
	if ((ret = parse(argc, argv, "sjh", &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	admin_quiet_logs();
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	if ((r = store_read(store, verify_txn, &c)) != 0) {
		cli_store_fail(a.dir, "reading the audit log", r);
		goto out;
	}
	if (c.err != 0)
		cli_fail("audit verify: the audit log of state directory %s is "
		    "broken at event %llu (that event or the one before it "
		    "was changed or removed; at the end: events are missing)",
		    a.dir, (unsigned long long)c.bad_seq);
	if (a.json)
		ret = admin_print_json(json_pack("{s:s, s:I, s:b, s:I}",
		    "state_dir", a.dir, "events", (json_int_t)c.events,
		    "intact", c.err == 0, "bad_seq", (json_int_t)c.bad_seq));
	else {
		if (c.err == 0)
			printf("audit log of state directory %s: %llu events, "
			    "chain intact\n", a.dir,
			    (unsigned long long)c.events);
		ret = admin_flush();
	}
	if (ret == CLI_EXIT_OK && c.err != 0)
		ret = CLI_EXIT_PROBLEMS;
 out:
	store_close(store);
	return ret;
}

static const struct cli_command subcommands[] = {
	{ "list", "", "list events", audit_list },
	{ "verify", "", "check the hash chain", audit_verify },
};

int
cmd_audit(int argc, char **argv)
{
	return cli_dispatch("audit", subcommands,
	    sizeof(subcommands) / sizeof(subcommands[0]), usage, argc, argv);
}
