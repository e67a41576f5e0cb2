/*
 * cmd_token.c: p8vault token create|list|revoke: API bearer tokens.
 *
 * Tokens are credentials, not key material: these commands need only the
 * state directory, never the master key. They write to the store while the
 * daemon runs (LMDB is multi-process), and the daemon checks the store's
 * generation on every request (its credential cache, api/auth.h), so a new
 * or revoked token takes effect at once.
 *
 * The token is shown once, by `create`, and exists in this process only in
 * guarded memory; the store keeps SHA-256 of its secret (store/apitoken.h).
 * Creating and revoking append an audit event ("who": "cli").
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "common/err.h"
#include "crypto/secmem.h"
#include "store/apitoken.h"
#include "store/audit.h"
#include "store/creds.h"
#include "store/store.h"

/* A fresh id collides with a stored one with probability n / 2^64; a few
 * tries make a failure from that cause impossible in practice. */
#define TOKEN_ID_TRIES 4
/* The actor of audit events the CLI writes. */
#define TOKEN_AUDIT_WHO "cli"

static const char token_usage_text[] =
    "Usage: p8vault token create --state DIR --role portal|signer|admin\n"
    "                            [--app APP]... [--name NAME] [--json]\n"
    "       p8vault token list --state DIR [--json]\n"
    "       p8vault token revoke --state DIR [--json] ID\n"
    "\n"
    "API bearer tokens (Authorization: Bearer TOKEN).\n"
    "\n"
    "  create  issue a new token and print it once: it is not stored and\n"
    "          cannot be shown again. Roles: portal (the upload API),\n"
    "          signer (the signing API), admin (both). Each --app limits\n"
    "          the token to that app (repeat it for several); without\n"
    "          --app the token may act on every app.\n"
    "  list    every token: id, role, apps, name, created, revoked (never\n"
    "          the secret, which is not stored).\n"
    "  revoke  revoke the token with this id (as 'list' shows it; the\n"
    "          whole token is accepted too). The daemon refuses it from\n"
    "          its next request on.\n"
    "\n"
    "Options:\n"
    "  --state DIR    the state directory ('p8vault init' made it); the\n"
    "                 master key is not needed\n"
    "  --role ROLE    create: portal, signer or admin\n"
    "  --app APP      create: an app the token may act on (repeatable)\n"
    "  --name NAME    create: a label, 1-128 printable ASCII characters\n"
    "                 (default: the role)\n"
    "  --json         print JSON: create {\"token\",\"id\",\"role\",\"apps\","
    "\"name\"},\n"
    "                 list an array, revoke {\"id\",\"revoked_at\","
    "\"already_revoked\"}\n"
    "  -h, --help     show this help\n"
    "\n"
    "Exit status: 0 done, 1 failed, 2 usage error.\n";

static void
usage(FILE *f)
{
	fputs(token_usage_text, f);
}

enum opt {
	OPT_STATE = 's',
	OPT_ROLE = 'r',
	OPT_APP = 'a',
	OPT_NAME = 'n',
	OPT_JSON = 'j',
	OPT_HELP = 'h',
};

struct token_args {
	const char *cmd;        /* "token create", for messages */
	const char *dir;
	const char *role;
	const char **apps;      /* argv pointers */
	size_t n_apps;
	const char *name;
	int json;
	int help;
};

/* Parse the options every subcommand shares; allowed: OPT_* bits it takes.
 * Returns CLI_EXIT_OK or CLI_EXIT_USAGE (printed). */
static int
parse(int argc, char **argv, const char *allowed, struct token_args *a)
{
	static const struct option options[] = {
		{ "state", required_argument, NULL, OPT_STATE },
		{ "role", required_argument, NULL, OPT_ROLE },
		{ "app", required_argument, NULL, OPT_APP },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		if (c == '?' || strchr(allowed, c) == NULL)
			return cli_usage_error("token", "%s: bad option",
			    a->cmd);
		switch (c) {
		case OPT_STATE:
			a->dir = optarg;
			break;
		case OPT_ROLE:
			a->role = optarg;
			break;
		case OPT_APP:
			/* At most argc of them: the array cannot overflow. */
			if (a->apps == NULL &&
			    (a->apps = calloc((size_t)argc, sizeof(char *))) ==
			    NULL)
				return cli_fail("out of memory");
			a->apps[a->n_apps++] = optarg;
			break;
		case OPT_NAME:
			a->name = optarg;
			break;
		case OPT_JSON:
			a->json = 1;
			break;
		case OPT_HELP:
			a->help = 1;
			break;
		default:
			return cli_usage_error("token", "%s: bad option",
			    a->cmd);
		}
	}
	if (a->help)
		return CLI_EXIT_OK;
	if (a->dir == NULL || *a->dir == '\0')
		return cli_usage_error("token", "%s: --state DIR is required",
		    a->cmd);
	return CLI_EXIT_OK;
}

static int
name_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= CRED_NAME_MAX || s[i] < 0x20 || s[i] > 0x7e)
			return 0;
	return i > 0;
}

static json_t *
apps_json(const struct store_cred *cred)
{
	json_t *apps;
	size_t i;

	if ((apps = json_array()) == NULL)
		return NULL;
	for (i = 0; i < cred->n_apps; i++) {
		if (json_array_append_new(apps,
		    json_string(cred->apps[i])) != 0) {
			json_decref(apps);
			return NULL;
		}
	}
	return apps;
}

/* An audit event about cred; NULL when out of memory. */
static json_t *
audit_event(const char *what, const struct store_cred *cred, int64_t now)
{
	char when[CLI_TIME_BYTES];
	json_t *apps;

	if ((apps = apps_json(cred)) == NULL)
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s}",
	    "time", cli_time(now, when), "who", TOKEN_AUDIT_WHO, "what", what,
	    "token_id", cred->id, "role", cred->role, "apps", apps,
	    "name", cred->name, "result", "ok");
}

struct create_ctx {
	const struct store_cred *cred;
	int64_t now;
};

static int
create_txn(struct store_txn *txn, void *arg)
{
	struct create_ctx *c = arg;
	json_t *ev = NULL;
	int r;

	if ((r = store_cred_create(txn, c->cred)) != 0)
		return r;
	if ((ev = audit_event("token_create", c->cred, c->now)) == NULL)
		return P8V_ERR_ALLOC;
	r = store_audit_append(txn, ev, NULL);
	json_decref(ev);
	return r;
}

/* Print the new token: it goes straight from guarded memory to fd 1 with
 * write(2), never through stdio's (ordinary heap) buffer. */
static int
print_created(const struct store_cred *cred, const char *token, int json)
{
	static const char open[] = "{\"token\":\"";
	json_t *rest = NULL, *apps = NULL;
	char *text = NULL;
	int r = -1;

	if (fflush(stdout) != 0)
		goto out;
	if (!json) {
		/* The token alone on stdout, so that scripts can capture it;
		 * the note on stderr. */
		if (cli_write_all(1, token, strlen(token)) != 0 ||
		    cli_write_all(1, "\n", 1) != 0)
			goto out;
		fprintf(stderr, "p8vault: created %s token %s (\"%s\"); it is "
		    "shown only this once: store it now\n", cred->role,
		    cred->id, cred->name);
		r = 0;
		goto out;
	}
	/* {"token":"...", then the other members, which jansson may format
	 * (the token's characters need no escaping). */
	if ((apps = apps_json(cred)) == NULL ||
	    (rest = json_pack("{s:s, s:s, s:O, s:s}", "id", cred->id, "role",
	    cred->role, "apps", apps, "name", cred->name)) == NULL ||
	    (text = json_dumps(rest, JSON_COMPACT | JSON_PRESERVE_ORDER)) ==
	    NULL || text[0] != '{')
		goto out;
	if (cli_write_all(1, open, sizeof(open) - 1) != 0 ||
	    cli_write_all(1, token, strlen(token)) != 0 ||
	    cli_write_all(1, "\",", 2) != 0 ||
	    cli_write_all(1, text + 1, strlen(text + 1)) != 0 ||
	    cli_write_all(1, "\n", 1) != 0)
		goto out;
	r = 0;
 out:
	json_decref(apps);
	json_decref(rest);
	free(text);
	return r;
}

static int
token_create(int argc, char **argv)
{
	struct token_args a = { .cmd = "token create" };
	struct store_cred cred;
	struct store *store = NULL;
	struct create_ctx ctx;
	enum apitoken_role role;
	char *token = NULL;
	size_t i;
	int r, tries, ret;

	memset(&cred, 0, sizeof(cred));
	if ((ret = parse(argc, argv, "sranjh", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		usage(stdout);
		goto out;
	}
	ret = CLI_EXIT_USAGE;
	if (optind < argc) {
		cli_usage_error("token", "token create: unexpected argument "
		    "'%s'", argv[optind]);
		goto out;
	}
	if (a.role == NULL || apitoken_role_parse(a.role, &role) != 0) {
		cli_usage_error("token", "token create: --role must be portal, "
		    "signer or admin");
		goto out;
	}
	if (a.name != NULL && !name_ok(a.name)) {
		cli_usage_error("token", "token create: --name must be 1-%d "
		    "printable ASCII characters", CRED_NAME_MAX);
		goto out;
	}
	for (i = 0; i < a.n_apps; i++) {
		if (strcmp(a.apps[i], CRED_ALL_APPS) == 0 && a.n_apps == 1)
			continue;
		if (strcmp(a.apps[i], CRED_ALL_APPS) == 0) {
			cli_usage_error("token", "token create: --app '*' (every "
			    "app) cannot be combined with other apps");
			goto out;
		}
		if ((r = store_cred_set_apps(&cred, &a.apps[i], 1)) != 0) {
			cli_usage_error("token", "token create: --app '%s': %s",
			    a.apps[i], p8v_strerror(r));
			goto out;
		}
	}
	/* Unscoped: every app, stored as "*". */
	if (a.n_apps == 0)
		r = store_cred_set_apps(&cred,
		    (const char *const []){ CRED_ALL_APPS }, 1);
	else
		r = store_cred_set_apps(&cred, a.apps, a.n_apps);
	if (r == P8V_ERR_BAD_FIELD) {
		cli_usage_error("token", "token create: an --app is given twice, "
		    "or more than %d apps", CRED_MAX_APPS);
		goto out;
	}
	ret = CLI_EXIT_FAILURE;
	if (r != 0) {
		cli_fail("token create: %s", p8v_strerror(r));
		goto out;
	}
	snprintf(cred.role, sizeof(cred.role), "%s", apitoken_role_name(role));
	snprintf(cred.name, sizeof(cred.name), "%s",
	    a.name != NULL ? a.name : cred.role);

	if ((ret = cli_secmem_init()) != CLI_EXIT_OK ||
	    (ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	if ((token = secmem_alloc(APITOKEN_LEN + 1)) == NULL) {
		cli_fail("token create: guarded memory: %s",
		    p8v_strerror(P8V_ERR_SECMEM));
		goto out;
	}
	cred.created_at = (int64_t)time(NULL);
	cred.revoked_at = 0;
	ctx.cred = &cred;
	ctx.now = cred.created_at;
	r = P8V_ERR_EXISTS;
	for (tries = 0; tries < TOKEN_ID_TRIES && r == P8V_ERR_EXISTS;
	    tries++) {
		if ((r = apitoken_new(token, APITOKEN_LEN + 1,
		    cred.id, cred.secret_hash)) != 0) {
			cli_fail("token create: %s", p8v_strerror(r));
			goto out;
		}
		r = store_write(store, create_txn, &ctx);
	}
	if (r != 0) {
		cli_store_fail(a.dir, "storing the new token", r);
		goto out;
	}
	if (print_created(&cred, token, a.json) != 0) {
		/* Stored but not shown: revoke it by hand. */
		cli_fail("token create: writing the token to stdout failed; "
		    "revoke it: p8vault token revoke --state %s %s", a.dir,
		    cred.id);
		goto out;
	}
	ret = CLI_EXIT_OK;
 out:
	secmem_free(token);
	secmem_wipe(cred.secret_hash, sizeof(cred.secret_hash));
	store_cred_free(&cred);
	store_close(store);
	free(a.apps);
	return ret;
}

struct list_ctx {
	json_t *array;
};

static int
list_one(const struct store_cred *cred, void *arg)
{
	struct list_ctx *l = arg;
	char created[CLI_TIME_BYTES], revoked[CLI_TIME_BYTES];
	json_t *apps, *o;

	if ((apps = apps_json(cred)) == NULL)
		return P8V_ERR_ALLOC;
	cli_time(cred->created_at, created);
	cli_time(cred->revoked_at, revoked);
	if ((o = json_pack("{s:s, s:s, s:o, s:s, s:s, s:s?}", "id", cred->id,
	    "role", cred->role, "apps", apps, "name", cred->name,
	    "created_at", created, "revoked_at",
	    cred->revoked_at != 0 ? revoked : NULL)) == NULL)
		return P8V_ERR_ALLOC;
	if (json_array_append_new(l->array, o) != 0)
		return P8V_ERR_ALLOC;
	return 0;
}

static int
list_txn(struct store_txn *txn, void *arg)
{
	struct list_ctx *l = arg;

	json_array_clear(l->array);
	return store_cred_foreach(txn, list_one, l);
}

static int
token_list(int argc, char **argv)
{
	struct token_args a = { .cmd = "token list" };
	struct list_ctx l = { NULL };
	struct store *store = NULL;
	json_t *o;
	size_t i;
	int r, ret;

	if ((ret = parse(argc, argv, "sjh", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		usage(stdout);
		goto out;
	}
	if (optind < argc) {
		ret = cli_usage_error("token", "token list: unexpected argument "
		    "'%s'", argv[optind]);
		goto out;
	}
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	if ((l.array = json_array()) == NULL) {
		cli_fail("out of memory");
		goto out;
	}
	if ((r = store_read(store, list_txn, &l)) != 0) {
		cli_store_fail(a.dir, "reading the tokens", r);
		goto out;
	}
	if (a.json) {
		if (json_dumpf(l.array, stdout, JSON_COMPACT |
		    JSON_PRESERVE_ORDER) != 0)
			goto out;
		putchar('\n');
	} else {
		printf("%-16s  %-6s  %-20s  %-20s  %s  %s\n", "ID", "ROLE",
		    "CREATED", "REVOKED", "APPS", "NAME");
		json_array_foreach(l.array, i, o) {
			json_t *apps = json_object_get(o, "apps"), *v;
			const char *revoked = json_string_value(
			    json_object_get(o, "revoked_at"));
			size_t j;

			printf("%-16s  %-6s  %-20s  %-20s  ",
			    json_string_value(json_object_get(o, "id")),
			    json_string_value(json_object_get(o, "role")),
			    json_string_value(json_object_get(o, "created_at")),
			    revoked != NULL ? revoked : "-");
			json_array_foreach(apps, j, v)
				printf("%s%s", j > 0 ? "," : "",
				    json_string_value(v));
			printf("  %s\n",
			    json_string_value(json_object_get(o, "name")));
		}
	}
	if (fflush(stdout) != 0) {
		cli_fail("token list: writing to stdout failed");
		goto out;
	}
	ret = CLI_EXIT_OK;
 out:
	json_decref(l.array);
	store_close(store);
	return ret;
}

struct revoke_ctx {
	const char *id;
	int64_t now;
	int64_t revoked_at;     /* out */
	int already;            /* out */
};

static int
revoke_txn(struct store_txn *txn, void *arg)
{
	struct revoke_ctx *c = arg;
	struct store_cred cred;
	json_t *ev = NULL;
	int r;

	c->already = 0;
	c->revoked_at = 0;
	if ((r = store_cred_get(txn, c->id, &cred)) != 0)
		return r;
	if (cred.revoked_at != 0) {
		c->already = 1;
		c->revoked_at = cred.revoked_at;
		r = 0;
		goto out;
	}
	if ((r = store_cred_revoke(txn, c->id, c->now)) != 0)
		goto out;
	/* store_cred_revoke never dates a revocation before the creation. */
	c->revoked_at = c->now < cred.created_at ? cred.created_at : c->now;
	r = P8V_ERR_ALLOC;
	if ((ev = audit_event("token_revoke", &cred, c->now)) == NULL)
		goto out;
	r = store_audit_append(txn, ev, NULL);
 out:
	json_decref(ev);
	store_cred_free(&cred);
	return r;
}

static int
token_revoke(int argc, char **argv)
{
	struct token_args a = { .cmd = "token revoke" };
	struct revoke_ctx c;
	struct store *store = NULL;
	char id[APITOKEN_ID_LEN + 1], when[CLI_TIME_BYTES];
	const char *arg, *secret;
	json_t *o = NULL;
	size_t i;
	int r, ret;

	memset(&c, 0, sizeof(c));
	if ((ret = parse(argc, argv, "sjh", &a)) != CLI_EXIT_OK)
		goto out;
	if (a.help) {
		usage(stdout);
		goto out;
	}
	if (optind + 1 != argc) {
		ret = cli_usage_error("token", "token revoke: give exactly one "
		    "token id");
		goto out;
	}
	arg = argv[optind];
	/* The whole token names its id too (a leaked token found in a log).
	 * Never echo the argument: it may be that token. */
	if (apitoken_parse(arg, strlen(arg), id, &secret) != 0) {
		for (i = 0; arg[i] != '\0'; i++)
			if (!((arg[i] >= '0' && arg[i] <= '9') ||
			    (arg[i] >= 'a' && arg[i] <= 'f')))
				break;
		if (i != APITOKEN_ID_LEN || arg[i] != '\0') {
			ret = cli_usage_error("token", "token revoke: a token id "
			    "is %d lowercase hex characters, as 'p8vault token "
			    "list' shows", APITOKEN_ID_LEN);
			goto out;
		}
		memcpy(id, arg, sizeof(id));
	}
	if ((ret = cli_store_open_existing(a.dir, &store)) != CLI_EXIT_OK)
		goto out;
	ret = CLI_EXIT_FAILURE;
	c.id = id;
	c.now = (int64_t)time(NULL);
	if ((r = store_write(store, revoke_txn, &c)) != 0) {
		if (r == P8V_ERR_NOT_FOUND)
			cli_fail("token revoke: no token with id %s in state "
			    "directory %s", id, a.dir);
		else
			cli_store_fail(a.dir, "revoking the token", r);
		goto out;
	}
	cli_time(c.revoked_at, when);
	if (a.json) {
		if ((o = json_pack("{s:s, s:s, s:b}", "id", id, "revoked_at",
		    when, "already_revoked", c.already)) == NULL ||
		    json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) !=
		    0)
			goto out;
		putchar('\n');
	} else if (c.already) {
		printf("token %s was already revoked at %s\n", id, when);
	} else {
		printf("token %s revoked at %s\n", id, when);
	}
	if (fflush(stdout) != 0) {
		cli_fail("token revoke: writing to stdout failed");
		goto out;
	}
	ret = CLI_EXIT_OK;
 out:
	json_decref(o);
	store_close(store);
	return ret;
}

static const struct cli_command subcommands[] = {
	{ "create", "", "issue a token", token_create },
	{ "list", "", "list tokens", token_list },
	{ "revoke", "", "revoke a token", token_revoke },
};

int
cmd_token(int argc, char **argv)
{
	return cli_dispatch("token", subcommands,
	    sizeof(subcommands) / sizeof(subcommands[0]), usage, argc, argv);
}
