/*
 * cmd_audit.c: p8vault audit list|verify|export: the hash-chained audit
 * log (store/audit.h). list and verify only read; export writes the events
 * out and records how far it got, which lets retention (p8vaultd
 * --audit-retention) prune them. None needs a master key; all are safe
 * while p8vaultd runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <unistd.h>
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
    "       p8vault audit export --state DIR --out FILE [--json]\n"
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
    "  verify  walk the chain from its checkpoint (where retention pruned\n"
    "          older events) and the stored head; names the first event\n"
    "          where it breaks.\n"
    "  export  write the events not exported before to FILE (created,\n"
    "          mode 0600, one stored event per line, as stored), then\n"
    "          record them as exported: only exported events are ever\n"
    "          pruned (p8vaultd --audit-retention).\n"
    "\n"
    "Options:\n"
    "  --state DIR    the state directory\n"
    "  --since TIME   list: only events at or after TIME\n"
    "  --out FILE     export: the file to write (must not exist)\n"
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
	const char *out;
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
		{ "out", required_argument, NULL, 'o' },
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
		case 'o':
			a->out = optarg;
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

struct export {
	int fd;
	uint64_t from, last, n;
	int io_error;
};

static int
export_one(uint64_t seq, const char *text, size_t len, void *arg)
{
	struct export *e = arg;
	size_t off = 0;
	ssize_t w;

	while (off < len + 1) {
		/* The event as stored, and a newline. */
		if (off < len)
			w = write(e->fd, text + off, len - off);
		else
			w = write(e->fd, "\n", 1);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			e->io_error = errno != 0 ? errno : EIO;
			return P8V_ERR_IO;
		}
		off += (size_t)w;
	}
	e->last = seq;
	e->n++;
	return 0;
}

static int
export_txn(struct store_txn *txn, void *arg)
{
	struct export *e = arg;
	uint8_t prev[AUDIT_HASH_BYTES];
	uint64_t first, done;
	int r;

	if ((r = store_audit_checkpoint(txn, &first, prev)) != 0 ||
	    (r = store_audit_exported(txn, &done)) != 0)
		return r;
	e->from = done + 1 > first ? done + 1 : first;
	return store_audit_foreach(txn, e->from, export_one, e);
}

static int
exported_txn(struct store_txn *txn, void *arg)
{
	return store_audit_set_exported(txn, *(uint64_t *)arg);
}

static int
audit_export(int argc, char **argv)
{
	struct audit_args a;
	struct export e;
	struct store *store = NULL;
	int r, ret;

	memset(&a, 0, sizeof(a));
	memset(&e, 0, sizeof(e));
	e.fd = -1;
	a.cmd = "audit export";
	if ((ret = parse(argc, argv, "sojh", &a)) != CLI_EXIT_OK)
		return ret;
	if (a.help) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (a.out == NULL || *a.out == '\0')
		return cli_usage_error("audit", "audit export: --out FILE is "
		    "required");
	admin_quiet_logs();
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	if ((e.fd = open(a.out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC |
	    O_NOFOLLOW, 0600)) < 0) {
		cli_fail("audit export: cannot create %s: %s", a.out,
		    strerror(errno));
		goto out;
	}
	r = store_read(store, export_txn, &e);
	if (r == P8V_ERR_IO) {
		cli_fail("audit export: writing %s: %s", a.out,
		    strerror(e.io_error));
		goto out;
	}
	if (r != 0) {
		cli_store_fail(a.dir, "reading the audit log", r);
		goto out;
	}
	/* On disk before the events count as exported (and may go). */
	if (fsync(e.fd) != 0 || close(e.fd) != 0) {
		e.fd = -1;
		cli_fail("audit export: writing %s: %s", a.out,
		    strerror(errno));
		goto out;
	}
	e.fd = -1;
	if (e.n > 0 && (r = store_write(store, exported_txn, &e.last)) != 0) {
		cli_store_fail(a.dir, "recording the export", r);
		goto out;
	}
	if (a.json)
		ret = admin_print_json(json_pack("{s:s, s:s, s:I, s:I, s:I}",
		    "state_dir", a.dir, "file", a.out, "events",
		    (json_int_t)e.n, "first_seq", (json_int_t)(e.n ? e.from : 0),
		    "last_seq", (json_int_t)e.last));
	else {
		printf("audit log of state directory %s: %llu event(s) "
		    "written to %s\n", a.dir, (unsigned long long)e.n, a.out);
		ret = admin_flush();
	}
 out:
	if (e.fd >= 0)
		close(e.fd);
	store_close(store);
	return ret;
}

static const struct cli_command subcommands[] = {
	{ "list", "", "list events", audit_list },
	{ "verify", "", "check the hash chain", audit_verify },
	{ "export", "", "write events out (before retention prunes them)",
	    audit_export },
};

int
cmd_audit(int argc, char **argv)
{
	return cli_dispatch("audit", subcommands,
	    sizeof(subcommands) / sizeof(subcommands[0]), usage, argc, argv);
}
