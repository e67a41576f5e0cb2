/*
 * cmd_keys.c: p8vault keys list|show|import|activate|revoke: the signing
 * keys of a state directory, with the meaning and the validation of the
 * upload API (api/upload.h): the same defaults (environment "both",
 * services APNs only, activate), the same checks (the vault runs them), the
 * same error names.
 *
 * list and show read metadata only and need no master key. import,
 * activate and revoke go through the vault (vault/vault.h) with the master
 * key(s), like the daemon, and write while the daemon runs (LMDB is
 * multi-process; the daemon looks the key up on every request). Each
 * change is one transaction with its audit event, "who": "cli".
 *
 * import reads the .p8 into guarded memory with read(2) (no stdio buffer),
 * hands it to the vault, and wipes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/admin.h"
#include "cli/cli.h"
#include "common/err.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "common/ids.h"
#include "store/records.h"
#include "store/store.h"
#include "vault/vault.h"

/* Apple's file name for a key: "AuthKey_" + Key ID + ".p8". */
#define KEYS_AUTHKEY_PREFIX "AuthKey_"
#define KEYS_AUTHKEY_SUFFIX ".p8"

static const char keys_usage_text[] =
    "Usage: p8vault keys list --state DIR [--app APP | --fingerprint FP] "
    "[--json]\n"
    "       p8vault keys show --state DIR [--json] APP KEY_ID\n"
    "       p8vault keys import --state DIR --master-key-file FILE "
    "--app APP\n"
    "                           --team-id TEAM_ID [--key-id KEY_ID]\n"
    "                           [--environment development|production|"
    "both]\n"
    "                           [--services LIST] [--topic TOPIC]... "
    "[--no-activate]\n"
    "                           [--json] FILE.p8\n"
    "       p8vault keys activate --state DIR --master-key-file FILE "
    "[--json] APP KEY_ID\n"
    "       p8vault keys revoke --state DIR --master-key-file FILE "
    "[--json] APP KEY_ID\n"
    "       p8vault keys check --state DIR --master-key-file FILE "
    "--app APP --key-id ID\n"
    "                          [--environment development|production] "
    "[--topic TOPIC]\n"
    "                          [--apns-sandbox-url URL] "
    "[--apns-production-url URL]\n"
    "                          [--apns-ca-file FILE] [--apns-proxy URL] "
    "[--json]\n"
    "       p8vault keys revoke --state DIR --master-key-file FILE "
    "[--json]\n"
    "                           --fingerprint FP\n"
    "\n"
    "Apple signing keys (.p8), as the upload API manages them.\n"
    "\n"
    "  list      every key (of one app with --app; every copy of one key,\n"
    "            in every app, with --fingerprint): app, Key ID, Team ID,\n"
    "            environment, state, master key, services, fingerprint.\n"
    "  show      one key's metadata and public key (never the private "
    "key).\n"
    "  import    validate, seal and store a .p8 file from Apple, for an\n"
    "            operator without the portal. The Key ID defaults to the\n"
    "            one in Apple's file name AuthKey_<KEYID>.p8 (a --key-id\n"
    "            that differs from it is refused: key_id_mismatch). The\n"
    "            new key becomes the app's active key for its environment\n"
    "            (others become standby) unless --no-activate. Importing\n"
    "            the same key again changes nothing. FILE '-' reads stdin.\n"
    "  activate  make a standby key the app's active key.\n"
    "  revoke    destroy the sealed key for good and keep its metadata\n"
    "            (a tombstone); its Key ID can never be imported again.\n"
    "  check     check the key with Apple: one push to a device token\n"
    "            that cannot exist, with the key's shared APNs token, per\n"
    "            environment (default: the key's own; both for \"both\")\n"
    "            and topic (default: the key's first, else the app id);\n"
    "            the results are kept as the key's \"checks\" (keys\n"
    "            show). Exit 1 unless APNs accepted the key everywhere.\n"
    "            The --apns-* options (or P8VAULT_APNS_SANDBOX_URL,\n"
    "            _PRODUCTION_URL, _CA_FILE, _PROXY) as for p8vaultd.\n"
    "            With --fingerprint: every copy of a key that leaked, in\n"
    "            every app, in one transaction (an audit event each).\n"
    "\n"
    "Options:\n"
    "  --state DIR             the state directory\n"
    "  --master-key-file FILE  import, activate, revoke: the master key\n"
    "                          (repeat for old and new during a rotation;\n"
    "                          the last one seals)\n"
    "  --app APP               1-64 characters of [A-Za-z0-9._-]\n"
    "  --team-id ID            Apple Team ID: 10 characters of [A-Z0-9]\n"
    "  --key-id ID             Apple Key ID: 10 characters of [A-Z0-9]\n"
    "  --environment ENV       development, production or both (default)\n"
    "  --services LIST         comma-separated: apns (default),\n"
    "                          app_store_connect, sign_in_with_apple,\n"
    "                          musickit, weatherkit, devicecheck, maps\n"
    "  --topic TOPIC           an APNs topic (bundle id); repeatable, or\n"
    "                          --topics A,B\n"
    "  --no-activate           import as standby\n"
    "  --fingerprint FP        list, revoke: a key's fingerprint (64 hex\n"
    "                          digits, the SHA-256 of its public key)\n"
    "  --json                  print JSON (the API's key metadata object;\n"
    "                          import: {\"created\",\"key\"}; list: an "
    "array)\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: 0 done; 1 failed (one line names the file or key and "
    "the\n"
    "error code); 2 usage error (including an invalid app, Key ID, Team "
    "ID,\n"
    "environment, service or topic).\n";

enum opt {
	OPT_STATE = 's',
	OPT_KEY = 'k',
	OPT_APP = 'a',
	OPT_TEAM = 't',
	OPT_KEY_ID = 'i',
	OPT_ENV = 'e',
	OPT_SERVICES = 'S',
	OPT_TOPIC = 'T',
	OPT_TOPICS = 'L',
	OPT_NO_ACTIVATE = 'N',
	OPT_JSON = 'j',
	OPT_FINGERPRINT = 'F',
	OPT_HELP = 'h',
	OPT_APNS_SANDBOX = 'D',
	OPT_APNS_PRODUCTION = 'P',
	OPT_APNS_CA = 'C',
	OPT_APNS_PROXY = 'X',
};

struct keys_args {
	const char *cmd;
	const char *dir;
	struct admin_keys keys;
	const char *app, *team_id, *key_id;
	const char *fingerprint;
	enum key_env environment;
	uint32_t services;
	char **topics;          /* malloc'd copies */
	size_t n_topics;
	int no_activate;
	int env_set;            /* --environment given */
	struct apns_client_config apns; /* keys check: strings from argv */
	int json;
	int help;
	char **rest;
	int n_rest;
};

static void
usage(FILE *f)
{
	fputs(keys_usage_text, f);
}

static void
args_finish(struct keys_args *a)
{
	size_t i;

	for (i = 0; i < a->n_topics; i++)
		free(a->topics[i]);
	free(a->topics);
	admin_keys_finish(&a->keys);
}

static int
add_topic(struct keys_args *a, const char *t, size_t len)
{
	char **grown;

	if (a->n_topics == KEY_RECORD_MAX_TOPICS)
		return cli_usage_error("keys", "%s: at most %d topics", a->cmd,
		    KEY_RECORD_MAX_TOPICS);
	if ((grown = realloc(a->topics, (a->n_topics + 1) *
	    sizeof(*grown))) == NULL)
		return cli_fail("out of memory");
	a->topics = grown;
	if ((a->topics[a->n_topics] = strndup(t, len)) == NULL)
		return cli_fail("out of memory");
	a->n_topics++;
	return CLI_EXIT_OK;
}

/* "a,b,c": each item to fn. */
static int
each_item(struct keys_args *a, const char *list, const char *what,
    int (*fn)(struct keys_args *, const char *, size_t))
{
	const char *p = list, *comma;
	size_t len;
	int r;

	for (;;) {
		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (len == 0)
			return cli_usage_error("keys", "%s: empty item in %s",
			    a->cmd, what);
		if ((r = fn(a, p, len)) != CLI_EXIT_OK)
			return r;
		if (comma == NULL)
			return CLI_EXIT_OK;
		p = comma + 1;
	}
}

static int
add_service(struct keys_args *a, const char *s, size_t len)
{
	char name[32];
	uint32_t bit;

	if (len < sizeof(name)) {
		memcpy(name, s, len);
		name[len] = '\0';
	}
	if (len >= sizeof(name) || key_service_from_name(name, &bit) != 0)
		return cli_usage_error("keys", "%s: unknown service in "
		    "--services (known: apns, app_store_connect, "
		    "sign_in_with_apple, musickit, weatherkit, devicecheck, "
		    "maps)", a->cmd);
	if ((a->services & bit) != 0)
		return cli_usage_error("keys", "%s: a service is named twice "
		    "in --services", a->cmd);
	a->services |= bit;
	return CLI_EXIT_OK;
}

static int
parse(int argc, char **argv, const char *allowed, struct keys_args *a)
{
	static const struct option options[] = {
		{ "state", required_argument, NULL, OPT_STATE },
		{ "master-key-file", required_argument, NULL, OPT_KEY },
		{ "app", required_argument, NULL, OPT_APP },
		{ "team-id", required_argument, NULL, OPT_TEAM },
		{ "key-id", required_argument, NULL, OPT_KEY_ID },
		{ "environment", required_argument, NULL, OPT_ENV },
		{ "services", required_argument, NULL, OPT_SERVICES },
		{ "topic", required_argument, NULL, OPT_TOPIC },
		{ "topics", required_argument, NULL, OPT_TOPICS },
		{ "no-activate", no_argument, NULL, OPT_NO_ACTIVATE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "fingerprint", required_argument, NULL, OPT_FINGERPRINT },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "apns-sandbox-url", required_argument, NULL,
		    OPT_APNS_SANDBOX },
		{ "apns-production-url", required_argument, NULL,
		    OPT_APNS_PRODUCTION },
		{ "apns-ca-file", required_argument, NULL, OPT_APNS_CA },
		{ "apns-proxy", required_argument, NULL, OPT_APNS_PROXY },
		{ NULL, 0, NULL, 0 },
	};
	int env_set = 0, c, r;

	optind = 0;
	a->environment = KEY_ENV_BOTH;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		if (c == '?' || strchr(allowed, c) == NULL)
			return cli_usage_error("keys", "%s: bad option",
			    a->cmd);
		switch (c) {
		case OPT_STATE:
			a->dir = optarg;
			break;
		case OPT_KEY:
			if ((r = admin_keys_add(&a->keys, "keys",
			    optarg)) != CLI_EXIT_OK)
				return r;
			break;
		case OPT_APP:
			a->app = optarg;
			break;
		case OPT_TEAM:
			a->team_id = optarg;
			break;
		case OPT_KEY_ID:
			a->key_id = optarg;
			break;
		case OPT_ENV:
			if (env_set++ ||
			    key_env_from_name(optarg, &a->environment) != 0)
				return cli_usage_error("keys", "%s: "
				    "--environment is development, production "
				    "or both (once)", a->cmd);
			break;
		case OPT_SERVICES:
			if ((r = each_item(a, optarg, "--services",
			    add_service)) != CLI_EXIT_OK)
				return r;
			break;
		case OPT_TOPIC:
			if ((r = add_topic(a, optarg, strlen(optarg))) !=
			    CLI_EXIT_OK)
				return r;
			break;
		case OPT_TOPICS:
			if ((r = each_item(a, optarg, "--topics",
			    add_topic)) != CLI_EXIT_OK)
				return r;
			break;
		case OPT_NO_ACTIVATE:
			a->no_activate = 1;
			break;
		case OPT_JSON:
			a->json = 1;
			break;
		case OPT_FINGERPRINT:
			a->fingerprint = optarg;
			break;
		case OPT_HELP:
			a->help = 1;
			break;
		case OPT_APNS_SANDBOX:
			a->apns.sandbox_url = optarg;
			break;
		case OPT_APNS_PRODUCTION:
			a->apns.production_url = optarg;
			break;
		case OPT_APNS_CA:
			a->apns.ca_file = optarg;
			break;
		case OPT_APNS_PROXY:
			a->apns.proxy = optarg;
			break;
		default:
			return cli_usage_error("keys", "%s: bad option",
			    a->cmd);
		}
	}
	a->env_set = env_set;
	a->rest = argv + optind;
	a->n_rest = argc - optind;
	if (a->help)
		return CLI_EXIT_OK;
	if (a->dir == NULL || *a->dir == '\0')
		return cli_usage_error("keys", "%s: --state DIR is required",
		    a->cmd);
	return CLI_EXIT_OK;
}

/* An identifier from the command line, checked as the vault will. */
static int
check_id(const struct keys_args *a, const char *what, int (*valid)(const
    char *), const char *v)
{
	int r;

	if (v == NULL)
		return cli_usage_error("keys", "%s: %s is required", a->cmd,
		    what);
	if ((r = valid(v)) != 0)
		return cli_usage_error("keys", "%s: %s: %s (%s)", a->cmd, what,
		    p8v_strerror(r), p8v_errname(r));
	return CLI_EXIT_OK;
}

/* --fingerprint, checked and lowercased into fp. */
static int
check_fingerprint(const struct keys_args *a,
    char fp[KEY_RECORD_FINGERPRINT_HEX + 1])
{
	if (vault_fingerprint_parse(a->fingerprint, fp) != 0)
		return cli_usage_error("keys", "%s: --fingerprint must be 64 "
		    "hex digits (the SHA-256 of the key's public key, as "
		    "'keys list' shows it) (invalid_field)", a->cmd);
	return CLI_EXIT_OK;
}

/* APP KEY_ID operands. */
static int
app_and_key(struct keys_args *a)
{
	int r;

	if (a->n_rest != 2)
		return cli_usage_error("keys", "%s: give APP and KEY_ID",
		    a->cmd);
	a->app = a->rest[0];
	a->key_id = a->rest[1];
	if ((r = check_id(a, "APP", ids_app_valid, a->app)) != CLI_EXIT_OK)
		return r;
	return check_id(a, "KEY_ID", ids_key_id_valid, a->key_id);
}

/* Name a vault error about app/key_id on one line. */
static int
key_fail(const struct keys_args *a, const char *app, const char *key_id,
    int r)
{
	switch (r) {
	case P8V_ERR_KEY_NOT_FOUND:
		return cli_fail("%s: no key %s for app %s in state directory "
		    "%s (key_not_found)", a->cmd, key_id, app, a->dir);
	case P8V_ERR_KEY_REVOKED:
		return cli_fail("%s: key %s/%s is revoked: it never signs "
		    "again and its Key ID cannot be reused (key_revoked)",
		    a->cmd, app, key_id);
	case P8V_ERR_KEY_EXISTS:
		return cli_fail("%s: app %s already holds other key material "
		    "under Key ID %s, or this key under another Key ID "
		    "(key_exists)", a->cmd, app, key_id);
	case P8V_ERR_KEY_IDENTITY_CONFLICT:
		return cli_fail("%s: this key is already stored under another "
		    "Key ID or Team ID than %s/%s (key_identity_conflict; "
		    "'keys list --fingerprint' shows where)", a->cmd, app,
		    key_id);
	case P8V_ERR_MASTER_KEY_MISMATCH:
		return cli_fail("%s: the master key file(s) given do not match "
		    "state directory %s (master_key_mismatch)", a->cmd, a->dir);
	case P8V_ERR_MASTER_KEY_MISSING:
	case P8V_ERR_INTEGRITY:
		return cli_fail("%s: key record %s/%s in state directory %s: "
		    "%s (%s)", a->cmd, app, key_id, a->dir, p8v_strerror(r),
		    p8v_errname(r));
	default:
		return cli_fail("%s: key %s/%s in state directory %s: %s (%s)",
		    a->cmd, app, key_id, a->dir, p8v_strerror(r),
		    p8v_errname(r));
	}
}

/* Open the store and a vault over it with the loaded keys. */
static int
open_vault(struct keys_args *a, struct store **store, struct vault **v)
{
	int r, ret;

	if (a->keys.n == 0)
		return cli_usage_error("keys", "%s: --master-key-file FILE is "
		    "required", a->cmd);
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK)
		return ret;
	admin_quiet_logs();
	if ((ret = admin_keys_load(&a->keys)) != CLI_EXIT_OK)
		return ret;
	if ((ret = cli_store_open_existing(a->dir, store)) != CLI_EXIT_OK)
		return ret;
	r = vault_create(*store, a->keys.keeper, NULL, v);
	a->keys.keeper = NULL; /* the vault's, also on failure */
	if (r == P8V_ERR_MASTER_KEY_MISMATCH)
		return cli_fail("%s: the master key file(s) given (%s%s) do not "
		    "match state directory %s", a->cmd, a->keys.files[0],
		    a->keys.n > 1 ? ", ..." : "", a->dir);
	if (r != 0)
		return cli_store_fail(a->dir, "opening the vault", r);
	return CLI_EXIT_OK;
}

/* --- printing metadata --- */

/* One line of the list; a macro so that the format stays a literal. */
#define KEYS_LIST_FORMAT "%-20s %-10s %-10s %-11s %-8s %-16s %-40s %s\n"

static void
print_list(const json_t *arr)
{
	const json_t *m, *svc;
	size_t i, j;
	char services[256];

	printf(KEYS_LIST_FORMAT, "APP", "KEY_ID", "TEAM_ID", "ENVIRONMENT", "STATE",
	    "MASTER_KEY", "SERVICES", "FINGERPRINT");
	json_array_foreach(arr, i, m) {
		services[0] = '\0';
		json_array_foreach(json_object_get(m, "services"), j, svc) {
			if (j > 0)
				strncat(services, ",", sizeof(services) -
				    strlen(services) - 1);
			strncat(services, json_string_value(svc),
			    sizeof(services) - strlen(services) - 1);
		}
		printf(KEYS_LIST_FORMAT, json_string_value(json_object_get(m, "app")),
		    json_string_value(json_object_get(m, "key_id")),
		    json_string_value(json_object_get(m, "team_id")),
		    json_string_value(json_object_get(m, "environment")),
		    json_string_value(json_object_get(m, "state")),
		    json_is_string(json_object_get(m, "master_key_id")) ?
		    json_string_value(json_object_get(m, "master_key_id")) :
		    "-", services,
		    json_string_value(json_object_get(m, "fingerprint")));
	}
}

/* "check <env>  ok|refused: <status> <reason> at <time>" per
 * environment, and the meaning of a refusal. */
static void
print_checks(const json_t *checks)
{
	const char *env;
	const json_t *c;

	json_object_foreach((json_t *)checks, env, c) {
		printf("%-14s %s: %lld %s at %s\n", env,
		    json_is_true(json_object_get(c, "ok")) ? "ok" : "refused",
		    (long long)json_integer_value(json_object_get(c,
		    "apns_status")),
		    json_string_value(json_object_get(c, "apns_reason")),
		    json_string_value(json_object_get(c, "checked_at")));
		if (!json_is_true(json_object_get(c, "ok")))
			printf("%-14s %s\n", "", json_string_value(
			    json_object_get(c, "meaning")));
	}
}

static void
print_meta(const json_t *m)
{
	static const char *const fields[] = { "app", "key_id", "team_id",
	    "environment", "state", "fingerprint", "master_key_id",
	    "created_at", "created_by", "updated_at" };
	const json_t *v, *item;
	size_t i, j;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		v = json_object_get(m, fields[i]);
		printf("%-14s %s\n", fields[i], json_is_string(v) ?
		    json_string_value(v) : "-");
	}
	printf("%-14s %lld\n", "version",
	    (long long)json_integer_value(json_object_get(m, "version")));
	printf("%-14s", "services");
	json_array_foreach(json_object_get(m, "services"), j, item)
		printf(" %s", json_string_value(item));
	printf("\n%-14s", "topics");
	if (json_array_size(json_object_get(m, "topics")) == 0)
		printf(" -");
	json_array_foreach(json_object_get(m, "topics"), j, item)
		printf(" %s", json_string_value(item));
	printf("\n");
	print_checks(json_object_get(m, "checks"));
	printf("public key:\n%s", json_string_value(json_object_get(m,
	    "public_key_pem")));
}

static int
print_result(const struct keys_args *a, json_t *meta)
{
	if (a->json)
		return admin_print_json(json_incref(meta));
	print_meta(meta);
	return admin_flush();
}

/* --- list and show: metadata only, no master key --- */

struct listing {
	const char *app;        /* NULL: every app */
	const char *fingerprint; /* set: every copy of this key */
	json_t *array;
	struct store_txn *txn;
};

static int
list_one(const struct key_record *rec, void *arg)
{
	struct listing *l = arg;
	json_t *meta;
	int r;

	if ((r = vault_key_meta_json(rec, &meta)) != 0)
		return r;
	if ((r = vault_checks_attach(l->txn, rec, meta)) != 0) {
		json_decref(meta);
		return r;
	}
	return json_array_append_new(l->array, meta) == 0 ? 0 : P8V_ERR_ALLOC;
}

static int
list_txn(struct store_txn *txn, void *arg)
{
	struct listing *l = arg;

	l->txn = txn;
	json_array_clear(l->array);
	if (l->fingerprint != NULL)
		return key_record_by_fingerprint(txn, l->fingerprint, list_one,
		    l);
	if (l->app != NULL)
		return key_record_list(txn, l->app, list_one, l);
	return key_record_foreach(txn, list_one, l);
}

static int
keys_list(int argc, char **argv)
{
	struct keys_args a;
	struct listing l = { NULL, NULL, NULL, NULL };
	struct store *store = NULL;
	char fp[KEY_RECORD_FINGERPRINT_HEX + 1];
	int r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "keys list";
	if ((ret = parse(argc, argv, "sajFh", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		usage(stdout);
		goto out;
	}
	if (a.n_rest != 0) {
		ret = cli_usage_error("keys", "keys list: unexpected argument "
		    "'%s'", a.rest[0]);
		goto out;
	}
	if (a.app != NULL &&
	    (ret = check_id(&a, "--app", ids_app_valid, a.app)) != CLI_EXIT_OK)
		goto out;
	if (a.fingerprint != NULL && (ret = check_fingerprint(&a, fp)) !=
	    CLI_EXIT_OK)
		goto out;
	if (a.fingerprint != NULL && a.app != NULL) {
		ret = cli_usage_error("keys", "keys list: --app and "
		    "--fingerprint do not go together");
		goto out;
	}
	admin_quiet_logs();
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	l.app = a.app;
	l.fingerprint = a.fingerprint != NULL ? fp : NULL;
	if ((l.array = json_array()) == NULL) {
		cli_fail("out of memory");
		goto out;
	}
	if ((r = store_read(store, list_txn, &l)) != 0) {
		if (r == P8V_ERR_INTEGRITY)
			cli_fail("keys list: a key record in state directory "
			    "%s fails to decode; 'p8vault verify' names it",
			    a.dir);
		else
			cli_store_fail(a.dir, "listing the keys", r);
		goto out;
	}
	if (a.json)
		ret = admin_print_json(json_incref(l.array));
	else {
		print_list(l.array);
		ret = admin_flush();
	}
 out:
	json_decref(l.array);
	store_close(store);
	args_finish(&a);
	return ret;
}

struct getter {
	const char *app, *key_id;
	struct key_record rec;
	json_t **meta;
};

static int
get_txn(struct store_txn *txn, void *arg)
{
	struct getter *g = arg;
	int r;

	key_record_free(&g->rec);
	json_decref(*g->meta);
	*g->meta = NULL;
	if ((r = key_record_get(txn, g->app, g->key_id, &g->rec)) != 0 ||
	    (r = vault_key_meta_json(&g->rec, g->meta)) != 0)
		return r;
	return vault_checks_attach(txn, &g->rec, *g->meta);
}

static int
keys_show(int argc, char **argv)
{
	struct keys_args a;
	struct getter g;
	struct store *store = NULL;
	json_t *meta = NULL;
	int r, ret;

	memset(&a, 0, sizeof(a));
	memset(&g, 0, sizeof(g));
	a.cmd = "keys show";
	if ((ret = parse(argc, argv, "sjh", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		usage(stdout);
		goto out;
	}
	if ((ret = app_and_key(&a)) != CLI_EXIT_OK)
		goto out;
	admin_quiet_logs();
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	g.app = a.app;
	g.key_id = a.key_id;
	g.meta = &meta;
	r = store_read(store, get_txn, &g);
	if (r != 0) {
		ret = key_fail(&a, a.app, a.key_id,
		    r == P8V_ERR_NOT_FOUND ? P8V_ERR_KEY_NOT_FOUND : r);
		goto out;
	}
	ret = print_result(&a, meta);
 out:
	json_decref(meta);
	key_record_free(&g.rec);
	store_close(store);
	args_finish(&a);
	return ret;
}

/* --- import --- */

/* The Key ID in Apple's file name AuthKey_<KEYID>.p8, into id (empty if
 * the name is not of that exact form). */
static void
key_id_of_name(const char *path, char id[IDS_APPLE_ID_LEN + 1])
{
	const char *base = strrchr(path, '/');
	size_t pre = strlen(KEYS_AUTHKEY_PREFIX), suf = strlen(
	    KEYS_AUTHKEY_SUFFIX);

	id[0] = '\0';
	base = base != NULL ? base + 1 : path;
	if (strlen(base) != pre + IDS_APPLE_ID_LEN + suf ||
	    strncmp(base, KEYS_AUTHKEY_PREFIX, pre) != 0 ||
	    strcmp(base + pre + IDS_APPLE_ID_LEN, KEYS_AUTHKEY_SUFFIX) != 0)
		return;
	memcpy(id, base + pre, IDS_APPLE_ID_LEN);
	id[IDS_APPLE_ID_LEN] = '\0';
}

/*
 * Read the .p8 at path ("-": stdin) into guarded memory: *buf from
 * secmem_alloc (the caller frees it with secmem_free, which wipes).
 * read(2) goes straight into it; no stdio buffer holds the key.
 * CLI_EXIT_OK or CLI_EXIT_FAILURE (printed, naming the file).
 */
static int
read_p8(const char *path, uint8_t **buf, size_t *len)
{
	int fd = -1, ret = CLI_EXIT_FAILURE;
	size_t cap = P8_MAX_INPUT_BYTES + 1;
	ssize_t n;

	*buf = NULL;
	*len = 0;
	if (strcmp(path, "-") == 0)
		fd = STDIN_FILENO;
	else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return cli_fail("keys import: %s: %s", path, strerror(errno));
	if ((*buf = secmem_alloc(cap)) == NULL) {
		cli_fail("keys import: guarded memory is unavailable");
		goto out;
	}
	while (*len < cap) {
		n = read(fd, *buf + *len, cap - *len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_fail("keys import: reading %s: %s", path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		*len += (size_t)n;
	}
	if (*len == cap) {
		cli_fail("keys import: %s: %s (p8_too_large)", path,
		    p8v_strerror(P8V_ERR_P8_TOO_LARGE));
		goto out;
	}
	ret = CLI_EXIT_OK;
 out:
	if (fd > STDIN_FILENO)
		close(fd);
	if (ret != CLI_EXIT_OK) {
		secmem_free(*buf);
		*buf = NULL;
		*len = 0;
	}
	return ret;
}

static int
keys_import(int argc, char **argv)
{
	struct keys_args a;
	struct vault_upload up;
	struct store *store = NULL;
	struct vault *v = NULL;
	char name_id[IDS_APPLE_ID_LEN + 1], exists[IDS_APPLE_ID_LEN + 1] = "";
	const char *file;
	uint8_t *p8 = NULL;
	size_t p8_len = 0;
	json_t *meta = NULL;
	int created = 0, r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "keys import";
	if ((ret = parse(argc, argv, "skatieSTLNjh", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		usage(stdout);
		goto out;
	}
	if (a.n_rest != 1) {
		ret = cli_usage_error("keys", "keys import: give one .p8 FILE");
		goto out;
	}
	file = a.rest[0];
	/* As the API: a file name AuthKey_<KEYID>.p8 must name key_id. */
	key_id_of_name(file, name_id);
	if (a.key_id == NULL && name_id[0] != '\0')
		a.key_id = name_id;
	if (a.key_id == NULL) {
		ret = cli_usage_error("keys", "keys import: --key-id is "
		    "required (the file is not named AuthKey_<KEYID>.p8)");
		goto out;
	}
	if ((ret = check_id(&a, "--app", ids_app_valid, a.app)) !=
	    CLI_EXIT_OK ||
	    (ret = check_id(&a, "--key-id", ids_key_id_valid, a.key_id)) !=
	    CLI_EXIT_OK ||
	    (ret = check_id(&a, "--team-id", ids_team_id_valid, a.team_id)) !=
	    CLI_EXIT_OK)
		goto out;
	if (name_id[0] != '\0' && strcmp(name_id, a.key_id) != 0) {
		ret = cli_usage_error("keys", "keys import: %s names Key ID %s, "
		    "not %s (key_id_mismatch)", file, name_id, a.key_id);
		goto out;
	}
	/* The .p8 is read before the store is opened: as root, that may
	 * switch to the state directory's owner (cli_state_dir_enter), who
	 * need not be able to read it. */
	if ((ret = cli_secmem_init()) != CLI_EXIT_OK ||
	    (ret = read_p8(file, &p8, &p8_len)) != CLI_EXIT_OK)
		goto out;
	if ((ret = open_vault(&a, &store, &v)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	memset(&up, 0, sizeof(up));
	up.app = a.app;
	up.key_id = a.key_id;
	up.team_id = a.team_id;
	up.p8 = p8;
	up.p8_len = p8_len;
	up.environment = a.environment;
	up.services = a.services;
	up.topics = (const char *const *)a.topics;
	up.n_topics = a.n_topics;
	up.activate = !a.no_activate;
	up.actor = ADMIN_ACTOR;
	up.exists_key_id = exists;
	r = vault_key_upload(v, &up, &meta, &created);
	secmem_free(p8);
	p8 = NULL;
	if (r == P8V_ERR_BAD_FIELD) {
		ret = cli_usage_error("keys", "keys import: a topic is not "
		    "1-%d characters of [A-Za-z0-9._-] (invalid_field)",
		    KEY_RECORD_TOPIC_MAX);
		goto out;
	}
	if (r <= P8V_ERR_P8_TOO_LARGE && r >= P8V_ERR_P8_NOT_PKCS8) {
		ret = cli_fail("keys import: %s: %s (%s)", file,
		    p8v_strerror(r), p8v_errname(r));
		goto out;
	}
	if (r == P8V_ERR_KEY_EXISTS && exists[0] != '\0') {
		/* As the upload route: the Key ID in the way. */
		if (strcmp(exists, a.key_id) == 0)
			ret = cli_fail("keys import: another key is stored in "
			    "app %s under Key ID %s: a Key ID names one key "
			    "(key_exists)", a.app, exists);
		else
			ret = cli_fail("keys import: this key is stored in app "
			    "%s under Key ID %s (revoked): a key keeps its one "
			    "Key ID (key_exists)", a.app, exists);
		goto out;
	}
	if (r != 0) {
		ret = key_fail(&a, a.app, a.key_id, r);
		goto out;
	}
	if (a.json) {
		ret = admin_print_json(json_pack("{s:b, s:O}", "created",
		    created, "key", meta));
		goto out;
	}
	printf("key %s/%s: %s (%s)\n", a.app, a.key_id, created ?
	    "imported" : "already stored, nothing changed",
	    json_string_value(json_object_get(meta, "state")));
	print_meta(meta);
	ret = admin_flush();
 out:
	secmem_free(p8);
	json_decref(meta);
	vault_destroy(v);
	store_close(store);
	args_finish(&a);
	return ret;
}

/* --- activate and revoke --- */

static int
keys_change(int argc, char **argv, const char *cmd,
    int (*change)(struct vault *, const char *, const char *, const char *,
        json_t **))
{
	struct keys_args a;
	struct store *store = NULL;
	struct vault *v = NULL;
	json_t *meta = NULL;
	int r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = cmd;
	if ((ret = parse(argc, argv, "skjh", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		usage(stdout);
		goto out;
	}
	if ((ret = app_and_key(&a)) != CLI_EXIT_OK)
		goto out;
	if ((ret = open_vault(&a, &store, &v)) != CLI_EXIT_OK)
		goto out;
	if ((r = change(v, a.app, a.key_id, ADMIN_ACTOR, &meta)) != 0) {
		ret = key_fail(&a, a.app, a.key_id, r);
		goto out;
	}
	if (!a.json)
		printf("key %s/%s: %s\n", a.app, a.key_id,
		    json_string_value(json_object_get(meta, "state")));
	ret = print_result(&a, meta);
 out:
	json_decref(meta);
	vault_destroy(v);
	store_close(store);
	args_finish(&a);
	return ret;
}

static int
keys_activate(int argc, char **argv)
{
	return keys_change(argc, argv, "keys activate", vault_key_activate);
}

/* keys revoke --fingerprint FP: every copy of a key, in every app. */
static int
keys_revoke_fingerprint(struct keys_args *a)
{
	char fp[KEY_RECORD_FINGERPRINT_HEX + 1];
	struct store *store = NULL;
	struct vault *v = NULL;
	json_t *arr = NULL;
	int r, ret;

	if (a->n_rest != 0) {
		ret = cli_usage_error("keys", "keys revoke: --fingerprint "
		    "takes no APP KEY_ID");
		goto out;
	}
	if ((ret = check_fingerprint(a, fp)) != CLI_EXIT_OK ||
	    (ret = open_vault(a, &store, &v)) != CLI_EXIT_OK)
		goto out;
	if ((r = vault_key_revoke_fingerprint(v, fp, ADMIN_ACTOR,
	    &arr)) != 0) {
		if (r == P8V_ERR_KEY_NOT_FOUND)
			ret = cli_fail("keys revoke: no key with fingerprint %s "
			    "in state directory %s (key_not_found)", fp,
			    a->dir);
		else if (r == P8V_ERR_KEY_REVOKED)
			ret = cli_fail("keys revoke: every copy of key %s is "
			    "already revoked (key_revoked)", fp);
		else
			ret = cli_fail("keys revoke: fingerprint %s in state "
			    "directory %s: %s (%s)", fp, a->dir,
			    p8v_strerror(r), p8v_errname(r));
		goto out;
	}
	if (a->json) {
		ret = admin_print_json(json_incref(arr));
		goto out;
	}
	print_list(arr);
	ret = admin_flush();
 out:
	json_decref(arr);
	vault_destroy(v);
	store_close(store);
	return ret;
}

static int
keys_revoke(int argc, char **argv)
{
	struct keys_args a;
	int i, ret;

	/* With --fingerprint: every copy; else APP KEY_ID. */
	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--fingerprint") == 0 ||
		    strncmp(argv[i], "--fingerprint=", 14) == 0)
			break;
	if (i == argc)
		return keys_change(argc, argv, "keys revoke", vault_key_revoke);
	memset(&a, 0, sizeof(a));
	a.cmd = "keys revoke";
	if ((ret = parse(argc, argv, "skjFh", &a)) == CLI_EXIT_OK) {
		if (a.help)
			usage(stdout);
		else
			ret = keys_revoke_fingerprint(&a);
	}
	args_finish(&a);
	return ret;
}

/* --- check with Apple --- */

/* An --apns-* option, else its P8VAULT_ variable. */
static void
apns_default(const char **opt, const char *var)
{
	const char *v;

	if (*opt == NULL && (v = getenv(var)) != NULL && *v != '\0')
		*opt = v;
}

static int
keys_check(int argc, char **argv)
{
	struct keys_args a;
	struct store *store = NULL;
	struct vault *v = NULL;
	json_t *answer = NULL, *c;
	const char *env;
	int r, ret;

	memset(&a, 0, sizeof(a));
	a.cmd = "keys check";
	if ((ret = parse(argc, argv, "skaieTjhDPCX", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		usage(stdout);
		goto out;
	}
	if (a.n_rest != 0) {
		ret = cli_usage_error("keys", "keys check: unexpected argument "
		    "'%s'", a.rest[0]);
		goto out;
	}
	if ((ret = check_id(&a, "--app", ids_app_valid, a.app)) !=
	    CLI_EXIT_OK || (ret = check_id(&a, "--key-id", ids_key_id_valid,
	    a.key_id)) != CLI_EXIT_OK)
		goto out;
	if (a.n_topics > 1 || (a.env_set && a.environment == KEY_ENV_BOTH)) {
		ret = cli_usage_error("keys", "keys check: one --topic, and "
		    "--environment development or production");
		goto out;
	}
	apns_default(&a.apns.sandbox_url, "P8VAULT_APNS_SANDBOX_URL");
	apns_default(&a.apns.production_url, "P8VAULT_APNS_PRODUCTION_URL");
	apns_default(&a.apns.ca_file, "P8VAULT_APNS_CA_FILE");
	apns_default(&a.apns.proxy, "P8VAULT_APNS_PROXY");
	if (apns_client_config_check(&a.apns, &env) != 0) {
		ret = cli_usage_error("keys", "keys check: --%s is not usable "
		    "(an https://HOST[:PORT] URL, a readable file)", env);
		goto out;
	}
	if ((ret = open_vault(&a, &store, &v)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	if ((r = vault_set_apns_check(v, &a.apns)) != 0) {
		cli_fail("keys check: %s (%s)", p8v_strerror(r),
		    p8v_errname(r));
		goto out;
	}
	r = vault_key_check(v, a.app, a.key_id, a.env_set ?
	    key_env_name(a.environment) : NULL, a.n_topics == 1 ?
	    a.topics[0] : NULL, ADMIN_ACTOR, &answer);
	if (r == P8V_ERR_APPLE_UNREACHABLE || r == P8V_ERR_APPLE_TIMEOUT) {
		cli_fail("keys check: %s/%s: %s: %s (%s)", a.app, a.key_id,
		    p8v_strerror(r), json_string_value(json_object_get(answer,
		    "cause")), p8v_errname(r));
		goto out;
	}
	if (r == P8V_ERR_MISSING_FIELD) {
		cli_fail("keys check: %s/%s: no topic to check with: give "
		    "--topic (missing_field)", a.app, a.key_id);
		goto out;
	}
	if (r != 0) {
		ret = key_fail(&a, a.app, a.key_id, r);
		goto out;
	}
	if (a.json) {
		ret = admin_print_json(json_incref(answer));
	} else {
		json_object_foreach(json_object_get(answer, "checks"), env, c)
			printf("key %s/%s %s (topic %s): %s: %lld %s\n%s\n",
			    a.app, a.key_id, env, json_string_value(
			    json_object_get(c, "topic")),
			    json_is_true(json_object_get(c, "ok")) ? "ok" :
			    "refused", (long long)json_integer_value(
			    json_object_get(c, "apns_status")),
			    json_string_value(json_object_get(c,
			    "apns_reason")), json_string_value(
			    json_object_get(c, "meaning")));
		ret = admin_flush();
	}
	if (ret == CLI_EXIT_OK && !json_is_true(json_object_get(answer, "ok")))
		ret = CLI_EXIT_FAILURE;
 out:
	json_decref(answer);
	vault_destroy(v);
	store_close(store);
	args_finish(&a);
	return ret;
}

static const struct cli_command subcommands[] = {
	{ "list", "", "list keys", keys_list },
	{ "show", "", "show one key", keys_show },
	{ "import", "", "import a .p8 file", keys_import },
	{ "activate", "", "make a key active", keys_activate },
	{ "revoke", "", "revoke a key", keys_revoke },
	{ "check", "", "check a key with Apple", keys_check },
};

int
cmd_keys(int argc, char **argv)
{
	return cli_dispatch("keys", subcommands,
	    sizeof(subcommands) / sizeof(subcommands[0]), usage, argc, argv);
}
