/* test_server_config.c: p8vaultd's configuration (server/config.h) and
 * listener addresses (server/listen.h): precedence of command line,
 * environment, config file, --dev and defaults; every refusal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http.h"
#include "common/err.h"
#include "server/config.h"
#include "server/listen.h"
#include "tests/check.h"
#include "tests/testutil.h"
#include "vault/vault.h"

/* Most arguments and environment variables in one case. */
#define ARGS_MAX 12
#define ENVS_MAX 4

static char *tmpdir;
static char conf_path[512];

struct config_case {
	const char *name;
	const char *argv[ARGS_MAX];        /* after argv[0]; NULL-terminated */
	const char *env[ENVS_MAX][2];      /* name, value */
	const char *file;                  /* config file text, or NULL */
	int err;
	/* Expected on success (NULL / 0: not checked). */
	const char *state;
	const char *listen;
	const char *sign_socket;
	const char *master_key0;
	size_t n_master_keys;
	unsigned int threads;
	unsigned int timeout;
	int dev;
	int insecure;
	int level;                         /* -1: not checked */
};

/* The tail of a case that config_load refuses. */
#define REFUSED P8V_ERR_INVALID_ARGUMENT, NULL, NULL, NULL, NULL, 0, 0, 0, 0, \
	0, -1

static const struct config_case cases[] = {
	{ "minimal", { "--state", "/s", NULL }, { { NULL, NULL } }, NULL, 0,
	    "/s", CONFIG_DEFAULT_LISTEN, NULL, NULL, 0, 0,
	    API_CONNECTION_TIMEOUT_DEFAULT_S, 0, 0, LOG_LEVEL_INFO },
	{ "no state", { "--listen", "127.0.0.1:1", NULL }, { { NULL, NULL } },
	    NULL, P8V_ERR_INVALID_ARGUMENT, NULL, NULL, NULL, NULL, 0, 0, 0, 0,
	    0, -1 },
	{ "env only", { NULL }, { { "P8VAULT_STATE", "/e" },
	    { "P8VAULT_THREADS", "3" }, { "P8VAULT_LOG_LEVEL", "debug" },
	    { "P8VAULT_MASTER_KEY_FILE", "/k1::/k2:" } }, NULL, 0, "/e", NULL,
	    NULL, "/k1", 2, 3, 0, 0, 0, LOG_LEVEL_DEBUG },
	{ "cli beats env", { "--state", "/c", "--threads", "2", NULL },
	    { { "P8VAULT_STATE", "/e" }, { "P8VAULT_THREADS", "5" } }, NULL, 0,
	    "/c", NULL, NULL, NULL, 0, 2, 0, 0, 0, -1 },
	{ "file", { "--config", "@", NULL }, { { NULL, NULL } },
	    "# comment\n\n  state = /f  \nlisten=127.0.0.1:9\r\n"
	    "master-key-file = /fk1\nmaster-key-file = /fk2\n"
	    "connection-timeout = 7\ninsecure-http = yes\n", 0, "/f",
	    "127.0.0.1:9", NULL, "/fk1", 2, 0, 7, 0, 1, -1 },
	{ "env beats file, cli beats env", { "--config", "@", "--listen",
	    "127.0.0.1:3", NULL }, { { "P8VAULT_STATE", "/e" },
	    { "P8VAULT_LISTEN", "127.0.0.1:2" } },
	    "state = /f\nlisten = 127.0.0.1:1\nthreads = 4\n", 0, "/e",
	    "127.0.0.1:3", NULL, NULL, 0, 4, 0, 0, 0, -1 },
	{ "config from env", { NULL }, { { "P8VAULT_CONFIG", "@" } },
	    "state = /fe\n", 0, "/fe", NULL, NULL, NULL, 0, 0, 0, 0, 0, -1 },
	{ "list from the highest source only", { "--config", "@",
	    "--master-key-file", "/c1", NULL },
	    { { "P8VAULT_MASTER_KEY_FILE", "/e1:/e2" } },
	    "state = /f\nmaster-key-file = /f1\n", 0, "/f", NULL, NULL, "/c1",
	    1, 0, 0, 0, 0, -1 },
	{ "dev defaults", { "--dev", NULL }, { { NULL, NULL } }, NULL, 0,
	    CONFIG_DEV_STATE, CONFIG_DEV_LISTEN, CONFIG_DEV_SIGN_SOCKET,
	    CONFIG_DEV_MASTER_KEY, 1, 0, 0, 1, 0, -1 },
	{ "dev overridden", { "--dev", "--listen", "127.0.0.1:0", "--state",
	    "/d", "--master-key-file", "/dk", NULL }, { { NULL, NULL } }, NULL,
	    0, "/d", "127.0.0.1:0", CONFIG_DEV_SIGN_SOCKET, "/dk", 1, 0, 0, 1, 0,
	    -1 },
	{ "dev from env", { NULL }, { { "P8VAULT_DEV", "true" } }, NULL, 0,
	    CONFIG_DEV_STATE, NULL, NULL, NULL, 0, 0, 0, 1, 0, -1 },
	{ "listen none", { "--state", "/s", "--listen", "none",
	    "--sign-socket", "/s.sock", NULL }, { { NULL, NULL } }, NULL, 0,
	    "/s", NULL, "/s.sock", NULL, 0, 0, 0, 0, 0, -1 },
	{ "nothing to serve", { "--state", "/s", "--listen", "none", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "public plain http", { "--state", "/s", "--listen", "0.0.0.0:80",
	    NULL }, { { NULL, NULL } }, NULL, REFUSED },
	{ "public sign plain http", { "--state", "/s", "--sign-listen",
	    "192.0.2.1:80", NULL }, { { NULL, NULL } }, NULL,
	    REFUSED },
	{ "public with insecure-http", { "--state", "/s", "--listen",
	    "0.0.0.0:80", "--insecure-http", NULL }, { { NULL, NULL } }, NULL,
	    0, "/s", "0.0.0.0:80", NULL, NULL, 0, 0, 0, 0, 1, -1 },
	{ "public with tls", { "--state", "/s", "--listen", "[::]:443",
	    "--tls-cert", "/c", "--tls-key", "/k", NULL }, { { NULL, NULL } },
	    NULL, 0, "/s", "[::]:443", NULL, NULL, 0, 0, 0, 0, 0, -1 },
	{ "tls half", { "--state", "/s", "--tls-cert", "/c", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "bad threads", { "--state", "/s", "--threads", "65", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "bad threads env", { "--state", "/s", NULL },
	    { { "P8VAULT_THREADS", "1x" } }, NULL, REFUSED },
	{ "bad timeout", { "--state", "/s", "--connection-timeout", "0", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "reuse too short", { "--state", "/s", "--apns-token-reuse", "1199",
	    NULL }, { { NULL, NULL } }, NULL, REFUSED },
	{ "reuse too long", { "--state", "/s", "--apns-token-reuse", "3301",
	    NULL }, { { NULL, NULL } }, NULL, REFUSED },
	{ "bad level", { "--state", "/s", "--log-level", "INFO", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "bad bool env", { "--state", "/s", NULL },
	    { { "P8VAULT_INSECURE_HTTP", "maybe" } }, NULL,
	    REFUSED },
	{ "bad listen", { "--state", "/s", "--listen", "127.0.0.1:99999",
	    NULL }, { { NULL, NULL } }, NULL, REFUSED },
	{ "twice", { "--state", "/s", "--state", "/t", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "unknown option", { "--state", "/s", "--nope", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "missing value", { "--state", NULL }, { { NULL, NULL } }, NULL,
	    REFUSED },
	{ "stray argument", { "--state", "/s", "x", NULL }, { { NULL, NULL } },
	    NULL, REFUSED },
	{ "file unknown key", { "--config", "@", NULL }, { { NULL, NULL } },
	    "state = /f\nstat = /g\n", REFUSED },
	{ "file no equals", { "--config", "@", NULL }, { { NULL, NULL } },
	    "state /f\n", REFUSED },
	{ "file config key", { "--config", "@", NULL }, { { NULL, NULL } },
	    "state = /f\nconfig = /other\n", REFUSED },
	{ "file twice", { "--config", "@", NULL }, { { NULL, NULL } },
	    "state = /f\nstate = /g\n", REFUSED },
	{ "file missing", { "--config", "/nonexistent/p8v.conf", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "store etcd", { "--store", "etcd://127.0.0.1:2379,127.0.0.1:22379/pv",
	    NULL }, { { NULL, NULL } }, NULL, 0,
	    "etcd://127.0.0.1:2379,127.0.0.1:22379/pv", NULL, NULL, NULL, 0, 0,
	    0, 0, 0, -1 },
	{ "store env", { NULL }, { { "P8VAULT_STORE", "etcd://h:1/p" } }, NULL,
	    0, "etcd://h:1/p", NULL, NULL, NULL, 0, 0, 0, 0, 0, -1 },
	{ "store file", { "--config", "@", NULL }, { { NULL, NULL } },
	    "store = etcd://h:1/f\n", 0, "etcd://h:1/f", NULL, NULL, NULL, 0,
	    0, 0, 0, 0, -1 },
	{ "store dir", { "--store", "/d", NULL }, { { NULL, NULL } }, NULL, 0,
	    "/d", NULL, NULL, NULL, 0, 0, 0, 0, 0, -1 },
	{ "store and state", { "--store", "etcd://h:1/p", NULL },
	    { { "P8VAULT_STATE", "/e" } }, NULL, REFUSED },
	{ "store no prefix", { "--store", "etcd://h:1", NULL },
	    { { NULL, NULL } }, NULL, REFUSED },
	{ "etcd cert alone", { "--store", "etcd://h:1/p", "--etcd-cert", "/c",
	    NULL }, { { NULL, NULL } }, NULL, REFUSED },
	{ "etcd user alone", { "--store", "etcd://h:1/p", "--etcd-user", "u",
	    NULL }, { { NULL, NULL } }, NULL, REFUSED },
	{ "too many keys", { "--state", "/s", NULL },
	    { { "P8VAULT_MASTER_KEY_FILE", "1:2:3:4:5:6:7:8:9" } }, NULL,
	    REFUSED },
};

static void
clear_env(void)
{
	static const char *const names[] = { "P8VAULT_STATE",
	    "P8VAULT_THREADS", "P8VAULT_LOG_LEVEL", "P8VAULT_MASTER_KEY_FILE",
	    "P8VAULT_LISTEN", "P8VAULT_CONFIG", "P8VAULT_DEV",
	    "P8VAULT_INSECURE_HTTP", "P8VAULT_STORE", "P8VAULT_ETCD_CACERT",
	    "P8VAULT_ETCD_CERT", "P8VAULT_ETCD_KEY", "P8VAULT_ETCD_USER",
	    "P8VAULT_ETCD_PASSWORD_FILE" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unsetenv(names[i]);
}

static void
run_case(const struct config_case *c)
{
	char *argv[ARGS_MAX + 2];
	struct config cfg;
	enum config_action action;
	int argc = 0, r;
	size_t i;

	clear_env();
	if (c->file != NULL)
		REQUIRE(tu_write_file(conf_path, c->file, strlen(c->file),
		    0600) == 0);
	argv[argc++] = (char *)"p8vaultd";
	for (i = 0; i < ARGS_MAX && c->argv[i] != NULL; i++)
		argv[argc++] = strcmp(c->argv[i], "@") == 0 ? conf_path :
		    (char *)c->argv[i];
	argv[argc] = NULL;
	for (i = 0; i < ENVS_MAX && c->env[i][0] != NULL; i++)
		setenv(c->env[i][0], strcmp(c->env[i][1], "@") == 0 ?
		    conf_path : c->env[i][1], 1);

	r = config_load(argc, argv, &cfg, &action);
	CHECKF(r == c->err, "%s: got %d (%s), want %d", c->name, r,
	    p8v_errname(r), c->err);
	if (r == 0 && c->err == 0) {
		CHECK_INT(action, CONFIG_RUN);
		if (c->state != NULL)
			CHECK_STR(cfg.state_dir, c->state);
		if (c->listen != NULL)
			CHECK_STR(cfg.listen, c->listen);
		if (strcmp(c->name, "listen none") == 0)
			CHECK(cfg.listen == NULL);
		if (c->sign_socket != NULL)
			CHECK_STR(cfg.sign_socket, c->sign_socket);
		if (c->n_master_keys != 0) {
			CHECKF(cfg.n_master_key_files == c->n_master_keys,
			    "%s: %zu keys", c->name, cfg.n_master_key_files);
			CHECK_STR(cfg.master_key_files[0], c->master_key0);
		}
		if (c->threads != 0)
			CHECK_INT(cfg.threads, c->threads);
		if (c->timeout != 0)
			CHECK_INT(cfg.connection_timeout_s, c->timeout);
		CHECKF(cfg.dev == c->dev, "%s: dev %d", c->name, cfg.dev);
		CHECKF(cfg.insecure_http == c->insecure, "%s: insecure %d",
		    c->name, cfg.insecure_http);
		if (c->level >= 0)
			CHECK_INT(cfg.log_level, c->level);
		CHECK(cfg.threads >= 1 && cfg.threads <= API_THREADS_MAX);
	}
	config_finish(&cfg);
	clear_env();
}

/* The APNs token reuse period: default, both bounds, the environment. */
static void
test_apns_reuse(void)
{
	static const struct {
		const char *arg;        /* NULL: not given */
		const char *env;        /* NULL: not set */
		unsigned int want;
	} rows[] = {
		{ NULL, NULL, VAULT_APNS_REUSE_DEFAULT_S },
		{ "1200", NULL, 1200 },
		{ "3300", NULL, 3300 },
		{ NULL, "2400", 2400 },
		{ "1800", "2400", 1800 },
	};
	struct config cfg;
	enum config_action action;
	char *argv[5];
	size_t i;
	int argc;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		clear_env();
		argc = 0;
		argv[argc++] = (char *)"p8vaultd";
		argv[argc++] = (char *)"--state=/s";
		if (rows[i].arg != NULL) {
			argv[argc++] = (char *)"--apns-token-reuse";
			argv[argc++] = (char *)rows[i].arg;
		}
		argv[argc] = NULL;
		if (rows[i].env != NULL)
			setenv("P8VAULT_APNS_TOKEN_REUSE", rows[i].env, 1);
		CHECK_OK(config_load(argc, argv, &cfg, &action));
		CHECKF(cfg.apns_token_reuse_s == rows[i].want, "row %zu: %u",
		    i, cfg.apns_token_reuse_s);
		config_finish(&cfg);
		unsetenv("P8VAULT_APNS_TOKEN_REUSE");
	}
}

/* The key check's options: command line, environment, config file,
 * defaults, and each refusal. */
static void
test_apns_check(void)
{
	static const struct {
		const char *opt, *value;
		int ok;
	} rows[] = {
		{ "--apns-sandbox-url", "https://127.0.0.1:8443", 1 },
		{ "--apns-sandbox-url", "https://[::1]:1", 1 },
		{ "--apns-sandbox-url", "http://127.0.0.1:8443", 0 },
		{ "--apns-sandbox-url", "https://h/3/device", 0 },
		{ "--apns-sandbox-url", "https://user@h", 0 },
		{ "--apns-sandbox-url", "", 0 },
		{ "--apns-production-url", "https://api.example", 1 },
		{ "--apns-production-url", "ftp://x", 0 },
		{ "--apns-proxy", "http://proxy:3128", 1 },
		{ "--apns-proxy", "https://proxy:3128", 1 },
		{ "--apns-proxy", "socks5://proxy", 0 },
		{ "--apns-ca-file", "@", 1 },
		{ "--apns-ca-file", "/nonexistent/ca.pem", 0 },
	};
	char *argv[6], file[1024];
	struct config cfg;
	enum config_action action;
	size_t i;

	/* Defaults: none set, the vault uses Apple's hosts. */
	clear_env();
	argv[0] = (char *)"p8vaultd";
	argv[1] = (char *)"--state=/s";
	argv[2] = NULL;
	CHECK_OK(config_load(2, argv, &cfg, &action));
	CHECK(cfg.apns_sandbox_url == NULL && cfg.apns_production_url == NULL &&
	    cfg.apns_ca_file == NULL && cfg.apns_proxy == NULL);
	config_finish(&cfg);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		argv[2] = (char *)rows[i].opt;
		/* "@": a file that exists (the config file itself). */
		if (strcmp(rows[i].value, "@") == 0)
			REQUIRE(tu_write_file(conf_path, "# ca\n", 5,
			    0600) == 0);
		argv[3] = (char *)(strcmp(rows[i].value, "@") == 0 ?
		    conf_path : rows[i].value);
		argv[4] = NULL;
		CHECKF((config_load(4, argv, &cfg, &action) == 0) ==
		    rows[i].ok, "%s %s", rows[i].opt, rows[i].value);
		config_finish(&cfg);
	}
	/* The environment and the config file, and their precedence. */
	setenv("P8VAULT_APNS_SANDBOX_URL", "https://env.example", 1);
	setenv("P8VAULT_APNS_PROXY", "http://envproxy:1", 1);
	snprintf(file, sizeof(file), "apns-sandbox-url = https://file.example\n"
	    "apns-production-url = https://prod.example:2197\n"
	    "apns-ca-file = %s\n", conf_path);
	REQUIRE(tu_write_file(conf_path, file, strlen(file), 0600) == 0);
	argv[2] = (char *)"--config";
	argv[3] = conf_path;
	argv[4] = (char *)"--apns-proxy=http://cli:2";
	argv[5] = NULL;
	CHECK_OK(config_load(5, argv, &cfg, &action));
	CHECK_STR(cfg.apns_sandbox_url, "https://env.example");
	CHECK_STR(cfg.apns_production_url, "https://prod.example:2197");
	CHECK_STR(cfg.apns_ca_file, conf_path);
	CHECK_STR(cfg.apns_proxy, "http://cli:2");
	config_finish(&cfg);
	unsetenv("P8VAULT_APNS_SANDBOX_URL");
	unsetenv("P8VAULT_APNS_PROXY");
}

static void
test_help_and_version(void)
{
	char *argv[3] = { (char *)"p8vaultd", (char *)"--version", NULL };
	struct config cfg;
	enum config_action action;

	CHECK_OK(config_load(2, argv, &cfg, &action));
	CHECK_INT(action, CONFIG_EXIT);
	config_finish(&cfg);
	argv[1] = (char *)"-h";
	CHECK_OK(config_load(2, argv, &cfg, &action));
	CHECK_INT(action, CONFIG_EXIT);
	config_finish(&cfg);
}

struct addr_case {
	const char *spec;
	int ok;
	const char *host;
	unsigned int port;
	int loopback;
};

static const struct addr_case addr_cases[] = {
	{ "127.0.0.1:8470", 1, "127.0.0.1", 8470, 1 },
	{ "127.255.0.9:0", 1, "127.255.0.9", 0, 1 },
	{ "0.0.0.0:65535", 1, "0.0.0.0", 65535, 0 },
	{ "192.0.2.7:443", 1, "192.0.2.7", 443, 0 },
	{ "128.0.0.1:1", 1, "128.0.0.1", 1, 0 },
	{ "[::1]:8470", 1, "::1", 8470, 1 },
	{ "[::]:1", 1, "::", 1, 0 },
	{ "[::ffff:127.0.0.1]:1", 1, "::ffff:127.0.0.1", 1, 1 },
	{ "[::ffff:10.0.0.1]:1", 1, "::ffff:10.0.0.1", 1, 0 },
	{ "[2001:db8::1]:80", 1, "2001:db8::1", 80, 0 },
	{ "127.0.0.1:65536", 0, NULL, 0, 0 },
	{ "127.0.0.1:", 0, NULL, 0, 0 },
	{ "127.0.0.1:-1", 0, NULL, 0, 0 },
	{ "127.0.0.1:0x50", 0, NULL, 0, 0 },
	{ "127.0.0.1:000080", 0, NULL, 0, 0 },
	{ "127.0.0.1", 0, NULL, 0, 0 },
	{ "127.1:80", 0, NULL, 0, 0 },
	{ "localhost:80", 0, NULL, 0, 0 },
	{ ":80", 0, NULL, 0, 0 },
	{ "::1:80", 0, NULL, 0, 0 },
	{ "[::1]80", 0, NULL, 0, 0 },
	{ "[::1]:", 0, NULL, 0, 0 },
	{ "[]:80", 0, NULL, 0, 0 },
	{ "[127.0.0.1]:80", 0, NULL, 0, 0 },
	{ "", 0, NULL, 0, 0 },
};

static void
test_listen_addr(void)
{
	struct listen_addr a;
	size_t i;
	int r;

	for (i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		const struct addr_case *c = &addr_cases[i];

		r = listen_addr_parse(c->spec, &a);
		CHECKF((r == 0) == c->ok, "\"%s\": %d", c->spec, r);
		if (r != 0 || !c->ok)
			continue;
		CHECK_STR(a.host, c->host);
		CHECK_INT(a.port, c->port);
		CHECKF(listen_addr_is_loopback(&a) == c->loopback,
		    "\"%s\": loopback", c->spec);
	}
}

/* The etcd options, from each layer: command line, environment, file. */
static void
test_etcd_options(void)
{
	static const char conf[] = "store = etcd://f:1/p\n"
	    "etcd-cacert = /f/ca\netcd-cert = /f/c\netcd-key = /f/k\n"
	    "etcd-user = fu\netcd-password-file = /f/pw\n";
	char *argv[16];
	struct config cfg;
	enum config_action action;

	clear_env();
	argv[0] = (char *)"p8vaultd";
	argv[1] = (char *)"--store";
	argv[2] = (char *)"etcd://a:1,b:2/p";
	argv[3] = (char *)"--etcd-cacert";
	argv[4] = (char *)"/ca";
	argv[5] = (char *)"--etcd-cert";
	argv[6] = (char *)"/c";
	argv[7] = (char *)"--etcd-key";
	argv[8] = (char *)"/k";
	argv[9] = (char *)"--etcd-user";
	argv[10] = (char *)"u";
	argv[11] = (char *)"--etcd-password-file";
	argv[12] = (char *)"/pw";
	argv[13] = NULL;
	REQUIRE(config_load(13, argv, &cfg, &action) == 0);
	CHECK_STR(cfg.state_dir, "etcd://a:1,b:2/p");
	CHECK_STR(cfg.etcd_cacert, "/ca");
	CHECK_STR(cfg.etcd_cert, "/c");
	CHECK_STR(cfg.etcd_key, "/k");
	CHECK_STR(cfg.etcd_user, "u");
	CHECK_STR(cfg.etcd_password_file, "/pw");
	config_finish(&cfg);

	setenv("P8VAULT_STORE", "etcd://e:1/p", 1);
	setenv("P8VAULT_ETCD_CACERT", "/e/ca", 1);
	setenv("P8VAULT_ETCD_USER", "eu", 1);
	setenv("P8VAULT_ETCD_PASSWORD_FILE", "/e/pw", 1);
	REQUIRE(config_load(1, argv, &cfg, &action) == 0);
	CHECK_STR(cfg.state_dir, "etcd://e:1/p");
	CHECK_STR(cfg.etcd_cacert, "/e/ca");
	CHECK_STR(cfg.etcd_user, "eu");
	CHECK_STR(cfg.etcd_password_file, "/e/pw");
	CHECK(cfg.etcd_cert == NULL && cfg.etcd_key == NULL);
	config_finish(&cfg);

	clear_env();
	REQUIRE(tu_write_file(conf_path, conf, strlen(conf), 0600) == 0);
	argv[1] = (char *)"--config";
	argv[2] = conf_path;
	argv[3] = NULL;
	REQUIRE(config_load(3, argv, &cfg, &action) == 0);
	CHECK_STR(cfg.state_dir, "etcd://f:1/p");
	CHECK_STR(cfg.etcd_cacert, "/f/ca");
	CHECK_STR(cfg.etcd_cert, "/f/c");
	CHECK_STR(cfg.etcd_key, "/f/k");
	CHECK_STR(cfg.etcd_user, "fu");
	CHECK_STR(cfg.etcd_password_file, "/f/pw");
	config_finish(&cfg);
}

int
main(void)
{
	size_t i;

	tmpdir = tu_mkdtemp("p8v-config-");
	REQUIRE(tmpdir != NULL);
	snprintf(conf_path, sizeof(conf_path), "%s/p8vault.conf", tmpdir);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	test_etcd_options();
	test_apns_reuse();
	test_apns_check();
	test_help_and_version();
	test_listen_addr();
	tu_rmtree(tmpdir);
	free(tmpdir);
	return check_finish();
}
