/* config.c: options from the command line, environment and config file. */
#include "server/config.h"
#include "vault/vault.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/http.h"
#include "common/err.h"
#include "server/listen.h"
#include "store/store.h"

#ifndef P8V_VERSION
#define P8V_VERSION "unknown"
#endif

/* Prefix of the environment variables. */
#define ENV_PREFIX "P8VAULT_"
/* Longest option name, as an environment variable name with its prefix. */
#define ENV_NAME_MAX 64
/* Bounds of the numeric options. */
#define TIMEOUT_MAX_S 3600
#define CONNECTIONS_MAX 1000000
/* Longest audit retention: a hundred years, in seconds. */
#define AUDIT_RETENTION_MAX_S 3153600000u
/* Largest value of a quota option (0 is no limit). */
#define QUOTA_MAX 1000000000

enum opt_id {
	OPT_CONFIG = 0,
	OPT_DEV,
	OPT_STATE,
	OPT_MASTER_KEY_FILE,
	OPT_LISTEN,
	OPT_SIGN_SOCKET,
	OPT_SIGN_LISTEN,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_INSECURE_HTTP,
	OPT_LOG_LEVEL,
	OPT_THREADS,
	OPT_CONNECTION_TIMEOUT,
	OPT_MAX_CONNECTIONS,
	OPT_MAX_CONNECTIONS_PER_ADDRESS,
	OPT_APNS_TOKEN_REUSE,
	OPT_APNS_SANDBOX_URL,
	OPT_APNS_PRODUCTION_URL,
	OPT_APNS_CA_FILE,
	OPT_APNS_PROXY,
	OPT_MAX_KEYS_PER_APP,
	OPT_MAX_APPS_PER_TOKEN,
	OPT_MAX_UPLOADS_PER_MINUTE,
	OPT_MAX_RECORDS,
	OPT_AUDIT_RETENTION,
	OPT_STORE,
	OPT_ETCD_CACERT,
	OPT_ETCD_CERT,
	OPT_ETCD_KEY,
	OPT_ETCD_USER,
	OPT_ETCD_PASSWORD_FILE,
	OPT_COUNT,
	/* Command line only. */
	OPT_HELP = 'h',
	OPT_VERSION = 'V',
};

enum opt_kind {
	KIND_STRING,
	KIND_BOOL,                 /* a flag on the command line */
	KIND_LIST,                 /* repeatable; ':'-separated in env */
};

static const struct opt_def {
	const char *name;
	enum opt_kind kind;
	const char *arg;           /* for --help */
	const char *help;
} opt_defs[OPT_COUNT] = {
	[OPT_CONFIG] = { "config", KIND_STRING, "FILE",
	    "read options from FILE (key = value lines)" },
	[OPT_DEV] = { "dev", KIND_BOOL, NULL,
	    "development defaults: state " CONFIG_DEV_STATE ", master key "
	    CONFIG_DEV_MASTER_KEY " (created, NOT for production), portal "
	    CONFIG_DEV_LISTEN ", signing socket " CONFIG_DEV_SIGN_SOCKET },
	[OPT_STATE] = { "state", KIND_STRING, "DIR",
	    "state directory (LMDB); required" },
	[OPT_MASTER_KEY_FILE] = { "master-key-file", KIND_LIST, "FILE",
	    "master key file (64 hex digits or 32 bytes, mode 0600); "
	    "repeatable; default $CREDENTIALS_DIRECTORY/"
	    "p8vault-master-key" },
	[OPT_LISTEN] = { "listen", KIND_STRING, "HOST:PORT",
	    "portal (upload) API address, IPv4 or [IPv6], port 0 = any free; "
	    "\"none\" to disable; default " CONFIG_DEFAULT_LISTEN },
	[OPT_SIGN_SOCKET] = { "sign-socket", KIND_STRING, "PATH",
	    "signing API unix socket (mode 0660)" },
	[OPT_SIGN_LISTEN] = { "sign-listen", KIND_STRING, "HOST:PORT",
	    "signing API TCP address" },
	[OPT_TLS_CERT] = { "tls-cert", KIND_STRING, "FILE",
	    "TLS certificate chain (PEM) for the TCP listeners" },
	[OPT_TLS_KEY] = { "tls-key", KIND_STRING, "FILE",
	    "TLS private key (PEM, not readable by others)" },
	[OPT_INSECURE_HTTP] = { "insecure-http", KIND_BOOL, NULL,
	    "allow plain HTTP on a non-loopback address" },
	[OPT_LOG_LEVEL] = { "log-level", KIND_STRING, "LEVEL",
	    "debug, info (default), warn or error" },
	[OPT_THREADS] = { "threads", KIND_STRING, "N",
	    "threads per listener (default: CPUs, at most 8)" },
	[OPT_CONNECTION_TIMEOUT] = { "connection-timeout", KIND_STRING,
	    "SECONDS", "close connections idle this long (default 15)" },
	[OPT_MAX_CONNECTIONS] = { "max-connections", KIND_STRING, "N",
	    "connections per listener (default 1024)" },
	[OPT_MAX_CONNECTIONS_PER_ADDRESS] = { "max-connections-per-address",
	    KIND_STRING, "N",
	    "connections per client address (IPv6: per /64; default 64)" },
	[OPT_APNS_TOKEN_REUSE] = { "apns-token-reuse", KIND_STRING, "SECONDS",
	    "reuse an APNs provider token this long, 1200-3300 (default 3000)" },
	[OPT_APNS_SANDBOX_URL] = { "apns-sandbox-url", KIND_STRING, "URL",
	    "where the key check reaches APNs's sandbox (default "
	    APNS_CLIENT_SANDBOX_URL ")" },
	[OPT_APNS_PRODUCTION_URL] = { "apns-production-url", KIND_STRING, "URL",
	    "where the key check reaches APNs's production (default "
	    APNS_CLIENT_PRODUCTION_URL ")" },
	[OPT_APNS_CA_FILE] = { "apns-ca-file", KIND_STRING, "FILE",
	    "CA certificates (PEM) the key check verifies APNs with (default: "
	    "the system's store)" },
	[OPT_APNS_PROXY] = { "apns-proxy", KIND_STRING, "URL",
	    "HTTP CONNECT proxy for the key check (http://HOST:PORT; default: "
	    "none, proxy variables ignored)" },
	[OPT_MAX_KEYS_PER_APP] = { "max-keys-per-app", KIND_STRING, "N",
	    "keys (not revoked) per app; 0: no limit (default 100)" },
	[OPT_MAX_APPS_PER_TOKEN] = { "max-apps-per-token", KIND_STRING, "N",
	    "apps one API token may create keys in; 0: no limit "
	    "(default 10000)" },
	[OPT_MAX_UPLOADS_PER_MINUTE] = { "max-uploads-per-minute",
	    KIND_STRING, "N",
	    "uploads per API token per minute; 0: no limit (default 6000)" },
	[OPT_MAX_RECORDS] = { "max-records", KIND_STRING, "N",
	    "key records in the vault, revoked ones too; 0: no limit "
	    "(default 1000000)" },
	[OPT_AUDIT_RETENTION] = { "audit-retention", KIND_STRING, "SECONDS",
	    "prune audit events older than this once exported (p8vault "
	    "audit export); 0: keep all (default)" },
	[OPT_STORE] = { "store", KIND_STRING, "LOCATION",
	    "instead of --state: etcd://HOST:PORT[,HOST:PORT...]/PREFIX (a "
	    "cluster's shared store) or a state directory" },
	[OPT_ETCD_CACERT] = { "etcd-cacert", KIND_STRING, "FILE",
	    "CA certificates (PEM) etcd's certificate is checked with "
	    "(makes the etcd endpoints https)" },
	[OPT_ETCD_CERT] = { "etcd-cert", KIND_STRING, "FILE",
	    "client certificate (PEM) for etcd" },
	[OPT_ETCD_KEY] = { "etcd-key", KIND_STRING, "FILE",
	    "client certificate's private key (PEM) for etcd" },
	[OPT_ETCD_USER] = { "etcd-user", KIND_STRING, "NAME",
	    "etcd user (etcd auth; with --etcd-password-file)" },
	[OPT_ETCD_PASSWORD_FILE] = { "etcd-password-file", KIND_STRING,
	    "FILE", "file holding the etcd user's password" },
};

/* One source of values: the command line, the environment or the file. */
struct layer {
	char *val[OPT_COUNT];      /* "1"/"0" for booleans */
	char *where[OPT_COUNT];    /* "--threads", "P8VAULT_THREADS", "f:3" */
	char *list[CONFIG_MASTER_KEY_FILES_MAX];
	size_t n_list;
};

static void
layer_finish(struct layer *l)
{
	size_t i;

	for (i = 0; i < OPT_COUNT; i++) {
		free(l->val[i]);
		free(l->where[i]);
	}
	for (i = 0; i < l->n_list; i++)
		free(l->list[i]);
	memset(l, 0, sizeof(*l));
}

static int
parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return P8V_ERR_INVALID_ARGUMENT;
}

/*
 * Set option id in layer l to value, from `where`. A second value of a
 * single option in the same source is an error (which one was meant?).
 */
static int
layer_set(struct layer *l, enum opt_id id, const char *value,
    const char *where)
{
	const struct opt_def *def = &opt_defs[id];
	int b;

	if (def->kind == KIND_LIST) {
		if (l->n_list == CONFIG_MASTER_KEY_FILES_MAX) {
			log_errorf("config", "%s: more than %d master key files",
			    where, CONFIG_MASTER_KEY_FILES_MAX);
			return P8V_ERR_INVALID_ARGUMENT;
		}
		if (*value == '\0') {
			log_errorf("config", "%s: empty file name", where);
			return P8V_ERR_INVALID_ARGUMENT;
		}
		if ((l->list[l->n_list] = strdup(value)) == NULL)
			return P8V_ERR_ALLOC;
		l->n_list++;
		if (l->where[id] == NULL && (l->where[id] = strdup(where)) == NULL)
			return P8V_ERR_ALLOC;
		return 0;
	}
	if (l->val[id] != NULL) {
		log_errorf("config", "%s: %s given twice", where, def->name);
		return P8V_ERR_INVALID_ARGUMENT;
	}
	if (def->kind == KIND_BOOL) {
		if (parse_bool(value, &b) != 0) {
			log_errorf("config", "%s: expected a boolean (1/0, "
			    "true/false, yes/no, on/off)", where);
			return P8V_ERR_INVALID_ARGUMENT;
		}
		value = b ? "1" : "0";
	}
	if ((l->val[id] = strdup(value)) == NULL ||
	    (l->where[id] = strdup(where)) == NULL)
		return P8V_ERR_ALLOC;
	return 0;
}

static void
env_name(enum opt_id id, char out[ENV_NAME_MAX])
{
	const char *s = opt_defs[id].name;
	size_t o;

	snprintf(out, ENV_NAME_MAX, "%s", ENV_PREFIX);
	o = strlen(out);
	for (; *s != '\0' && o + 1 < ENV_NAME_MAX; s++)
		out[o++] = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
	out[o] = '\0';
}

static void
usage(FILE *f)
{
	char env[ENV_NAME_MAX];
	size_t i;

	fprintf(f, "Usage: p8vaultd [OPTION]...\n"
	    "p8vault daemon: holds Apple .p8 keys, serves the upload (portal) "
	    "and signing APIs.\n\n");
	for (i = 0; i < OPT_COUNT; i++) {
		env_name((enum opt_id)i, env);
		fprintf(f, "  --%s%s%s\n      %s\n      [env %s]\n",
		    opt_defs[i].name, opt_defs[i].arg != NULL ? " " : "",
		    opt_defs[i].arg != NULL ? opt_defs[i].arg : "",
		    opt_defs[i].help, env);
	}
	fprintf(f, "  -h, --help     this text\n"
	    "  -V, --version  the version\n\n"
	    "Precedence: command line, environment, config file, --dev, "
	    "defaults.\n"
	    "Exit status: 0 stopped by SIGTERM/SIGINT, 1 start-up failure, "
	    "2 usage or configuration error.\n");
}

static int
load_cli(int argc, char **argv, struct layer *l, enum config_action *action)
{
	struct option longopts[OPT_COUNT + 3];
	char where[ENV_NAME_MAX];
	size_t i;
	int c, r;

	for (i = 0; i < OPT_COUNT; i++) {
		longopts[i].name = opt_defs[i].name;
		longopts[i].has_arg = opt_defs[i].kind == KIND_BOOL ?
		    no_argument : required_argument;
		longopts[i].flag = NULL;
		longopts[i].val = (int)i + 1;  /* 0 is getopt's "flag set" */
	}
	longopts[i++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	longopts[i++] = (struct option){ "version", no_argument, NULL,
	    OPT_VERSION };
	longopts[i] = (struct option){ NULL, 0, NULL, 0 };

	opterr = 0;     /* errors are logged below, as JSON */
	optind = 0;     /* glibc: full re-initialisation (tests call twice) */
	while ((c = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
		if (c == OPT_HELP) {
			usage(stdout);
			*action = CONFIG_EXIT;
			return 0;
		}
		if (c == OPT_VERSION) {
			printf("p8vaultd %s\n", P8V_VERSION);
			*action = CONFIG_EXIT;
			return 0;
		}
		if (c < 1 || c > OPT_COUNT) {
			log_errorf("config", "%s: unknown option or missing "
			    "value (try --help)", argv[optind - 1]);
			return P8V_ERR_INVALID_ARGUMENT;
		}
		snprintf(where, sizeof(where), "--%s", opt_defs[c - 1].name);
		if ((r = layer_set(l, (enum opt_id)(c - 1),
		    opt_defs[c - 1].kind == KIND_BOOL ? "1" : optarg,
		    where)) != 0)
			return r;
	}
	if (optind < argc) {
		log_errorf("config", "unexpected argument \"%s\" (try --help)",
		    argv[optind]);
		return P8V_ERR_INVALID_ARGUMENT;
	}
	return 0;
}

static int
load_env(struct layer *l)
{
	char name[ENV_NAME_MAX], *copy = NULL, *p, *next;
	const char *v;
	size_t i;
	int r = 0;

	for (i = 0; i < OPT_COUNT && r == 0; i++) {
		env_name((enum opt_id)i, name);
		if ((v = getenv(name)) == NULL || *v == '\0')
			continue;
		if (opt_defs[i].kind != KIND_LIST) {
			r = layer_set(l, (enum opt_id)i, v, name);
			continue;
		}
		if ((copy = strdup(v)) == NULL)
			return P8V_ERR_ALLOC;
		for (p = copy; p != NULL && r == 0; p = next) {
			if ((next = strchr(p, ':')) != NULL)
				*next++ = '\0';
			if (*p != '\0')
				r = layer_set(l, (enum opt_id)i, p, name);
		}
		free(copy);
		copy = NULL;
	}
	return r;
}

/* Warn about P8VAULT_* variables no option reads: usually a typo. */
static void
warn_unknown_env(void)
{
	extern char **environ;
	char name[ENV_NAME_MAX];
	size_t i, n;
	char **e;
	int known;

	for (e = environ; e != NULL && *e != NULL; e++) {
		if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
			continue;
		n = strcspn(*e, "=");
		known = 0;
		for (i = 0; i < OPT_COUNT && !known; i++) {
			env_name((enum opt_id)i, name);
			known = strlen(name) == n && strncmp(*e, name, n) == 0;
		}
		if (!known)
			log_warnf("config", "unknown environment variable "
			    "%.*s ignored", (int)(n < 64 ? n : 64), *e);
	}
}

static char *
trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
	    end[-1] == '\r'))
		*--end = '\0';
	return s;
}

static int
read_small_file(const char *path, char **out)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t n;
	int fd = -1, r = P8V_ERR_INVALID_ARGUMENT;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
		log_errorf("config", "config file %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_FILE_MAX_BYTES) {
		log_errorf("config", "config file %s: not a regular file of at "
		    "most %d bytes", path, CONFIG_FILE_MAX_BYTES);
		goto out;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_errorf("config", "config file %s: read failed",
			    path);
			goto out;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (memchr(buf, '\0', got) != NULL) {
		log_errorf("config", "config file %s: holds a NUL byte", path);
		goto out;
	}
	*out = buf;
	buf = NULL;
	r = 0;
 out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return r;
}

static int
load_file(const char *path, struct layer *l)
{
	char *text = NULL, *line, *next, *eq, *key, *value, where[512];
	unsigned int lineno = 0;
	size_t i;
	int r;

	if ((r = read_small_file(path, &text)) != 0)
		goto out;
	for (line = text; line != NULL; line = next) {
		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		line = trim(line);
		if (*line == '\0' || *line == '#')
			continue;
		if ((eq = strchr(line, '=')) == NULL) {
			log_errorf("config", "%s: expected \"key = value\"",
			    where);
			r = P8V_ERR_INVALID_ARGUMENT;
			goto out;
		}
		*eq = '\0';
		key = trim(line);
		value = trim(eq + 1);
		for (i = 0; i < OPT_COUNT; i++)
			if (strcmp(key, opt_defs[i].name) == 0)
				break;
		if (i == OPT_COUNT || i == OPT_CONFIG) {
			log_errorf("config", "%s: unknown key \"%.64s\"", where,
			    key);
			r = P8V_ERR_INVALID_ARGUMENT;
			goto out;
		}
		if ((r = layer_set(l, (enum opt_id)i, value, where)) != 0)
			goto out;
	}
	r = 0;
 out:
	free(text);
	return r;
}

static int
parse_uint(const char *s, const char *where, unsigned int min,
    unsigned int max, unsigned int *out)
{
	unsigned long v = 0;
	const char *p;

	if (*s == '\0')
		goto bad;
	for (p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || v > max)
			goto bad;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < min || v > max)
		goto bad;
	*out = (unsigned int)v;
	return 0;
 bad:
	log_errorf("config", "%s: expected a whole number from %u to %u",
	    where, min, max);
	return P8V_ERR_INVALID_ARGUMENT;
}

static int
parse_level(const char *s, const char *where, enum log_level *out)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	log_errorf("config", "%s: log level must be debug, info, warn or error",
	    where);
	return P8V_ERR_INVALID_ARGUMENT;
}

/* The value of id from the highest layer, with where it came from. */
static const char *
pick(struct layer *layers[], size_t n, enum opt_id id, const char **where)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (layers[i]->val[id] != NULL) {
			*where = layers[i]->where[id];
			return layers[i]->val[id];
		}
	}
	*where = NULL;
	return NULL;
}

static int
dup_opt(char **dst, const char *v)
{
	free(*dst);
	*dst = NULL;
	if (v == NULL)
		return 0;
	return (*dst = strdup(v)) == NULL ? P8V_ERR_ALLOC : 0;
}

static unsigned int
default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > CONFIG_THREADS_DEFAULT_MAX ? CONFIG_THREADS_DEFAULT_MAX :
	    (unsigned int)n;
}

/* One of the key check's options: checked alone (apns_client.h's rules),
 * so that the error names where it came from. */
static int
parse_apns(struct layer *layers[], size_t n, enum opt_id id, char **dst)
{
	struct apns_client_config probe = { 0 };
	const char *v, *where;

	if ((v = pick(layers, n, id, &where)) == NULL)
		return 0;
	if (id == OPT_APNS_SANDBOX_URL)
		probe.sandbox_url = v;
	else if (id == OPT_APNS_PRODUCTION_URL)
		probe.production_url = v;
	else if (id == OPT_APNS_CA_FILE)
		probe.ca_file = v;
	else
		probe.proxy = v;
	if (apns_client_config_check(&probe, NULL) != 0) {
		log_errorf("config", "%s: %s", where, id == OPT_APNS_CA_FILE ?
		    "not a readable file" : id == OPT_APNS_PROXY ?
		    "not an http://HOST[:PORT] URL" :
		    "not an https://HOST[:PORT] URL (no path)");
		return P8V_ERR_INVALID_ARGUMENT;
	}
	return dup_opt(dst, v);
}

static int
merge(struct layer *layers[], size_t n, struct config *cfg)
{
	const char *v, *where;
	size_t i, j;
	int r;

	/* Booleans are stored as "1" or "0" by layer_set. */
	if ((v = pick(layers, n, OPT_DEV, &where)) != NULL)
		cfg->dev = strcmp(v, "1") == 0;
	if (cfg->dev) {
		if ((r = dup_opt(&cfg->state_dir, CONFIG_DEV_STATE)) != 0 ||
		    (r = dup_opt(&cfg->listen, CONFIG_DEV_LISTEN)) != 0 ||
		    (r = dup_opt(&cfg->sign_socket,
		    CONFIG_DEV_SIGN_SOCKET)) != 0)
			return r;
	} else if ((r = dup_opt(&cfg->listen, CONFIG_DEFAULT_LISTEN)) != 0) {
		return r;
	}
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->threads = default_threads();
	cfg->connection_timeout_s = API_CONNECTION_TIMEOUT_DEFAULT_S;
	cfg->max_connections = API_CONNECTIONS_MAX_DEFAULT;
	cfg->max_connections_per_address = API_CONNECTIONS_PER_ADDRESS_DEFAULT;
	cfg->apns_token_reuse_s = VAULT_APNS_REUSE_DEFAULT_S;
	cfg->max_keys_per_app = VAULT_QUOTA_KEYS_PER_APP_DEFAULT;
	cfg->max_apps_per_token = VAULT_QUOTA_APPS_PER_TOKEN_DEFAULT;
	cfg->max_uploads_per_minute = VAULT_QUOTA_UPLOADS_PER_MINUTE_DEFAULT;
	cfg->max_records = VAULT_QUOTA_RECORDS_DEFAULT;

	if ((v = pick(layers, n, OPT_STATE, &where)) != NULL &&
	    (r = dup_opt(&cfg->state_dir, v)) != 0)
		return r;
	/* --store names the store as --state does (an etcd location or a
	 * directory); both at once is a mistake, whatever the layers. */
	if ((v = pick(layers, n, OPT_STORE, &where)) != NULL) {
		const char *w2;

		if (pick(layers, n, OPT_STATE, &w2) != NULL) {
			log_errorf("config", "%s and %s: give either --state "
			    "DIR or --store LOCATION", w2, where);
			return P8V_ERR_INVALID_ARGUMENT;
		}
		if (store_location_is_etcd(v) && strchr(v +
		    strlen(STORE_ETCD_SCHEME), '/') == NULL) {
			log_errorf("config", "%s %s: expected etcd://HOST:PORT"
			    "[,HOST:PORT...]/PREFIX", where, v);
			return P8V_ERR_INVALID_ARGUMENT;
		}
		if ((r = dup_opt(&cfg->state_dir, v)) != 0)
			return r;
	}
	if (((v = pick(layers, n, OPT_ETCD_CACERT, &where)) != NULL &&
	    (r = dup_opt(&cfg->etcd_cacert, v)) != 0) ||
	    ((v = pick(layers, n, OPT_ETCD_CERT, &where)) != NULL &&
	    (r = dup_opt(&cfg->etcd_cert, v)) != 0) ||
	    ((v = pick(layers, n, OPT_ETCD_KEY, &where)) != NULL &&
	    (r = dup_opt(&cfg->etcd_key, v)) != 0) ||
	    ((v = pick(layers, n, OPT_ETCD_USER, &where)) != NULL &&
	    (r = dup_opt(&cfg->etcd_user, v)) != 0) ||
	    ((v = pick(layers, n, OPT_ETCD_PASSWORD_FILE, &where)) != NULL &&
	    (r = dup_opt(&cfg->etcd_password_file, v)) != 0))
		return r;
	if ((v = pick(layers, n, OPT_LISTEN, &where)) != NULL &&
	    (r = dup_opt(&cfg->listen, strcmp(v, "none") == 0 ? NULL : v)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_SIGN_SOCKET, &where)) != NULL &&
	    (r = dup_opt(&cfg->sign_socket, v)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_SIGN_LISTEN, &where)) != NULL &&
	    (r = dup_opt(&cfg->sign_listen, v)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_TLS_CERT, &where)) != NULL &&
	    (r = dup_opt(&cfg->tls_cert, v)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_TLS_KEY, &where)) != NULL &&
	    (r = dup_opt(&cfg->tls_key, v)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_INSECURE_HTTP, &where)) != NULL)
		cfg->insecure_http = strcmp(v, "1") == 0;
	if ((v = pick(layers, n, OPT_LOG_LEVEL, &where)) != NULL &&
	    (r = parse_level(v, where, &cfg->log_level)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_THREADS, &where)) != NULL &&
	    (r = parse_uint(v, where, 1, API_THREADS_MAX, &cfg->threads)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_CONNECTION_TIMEOUT, &where)) != NULL &&
	    (r = parse_uint(v, where, 1, TIMEOUT_MAX_S,
	    &cfg->connection_timeout_s)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_MAX_CONNECTIONS, &where)) != NULL &&
	    (r = parse_uint(v, where, 1, CONNECTIONS_MAX,
	    &cfg->max_connections)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_MAX_CONNECTIONS_PER_ADDRESS,
	    &where)) != NULL && (r = parse_uint(v, where, 1, CONNECTIONS_MAX,
	    &cfg->max_connections_per_address)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_APNS_TOKEN_REUSE, &where)) != NULL &&
	    (r = parse_uint(v, where, VAULT_APNS_REUSE_MIN_S,
	    VAULT_APNS_REUSE_MAX_S, &cfg->apns_token_reuse_s)) != 0)
		return r;
	if ((r = parse_apns(layers, n, OPT_APNS_SANDBOX_URL,
	    &cfg->apns_sandbox_url)) != 0 ||
	    (r = parse_apns(layers, n, OPT_APNS_PRODUCTION_URL,
	    &cfg->apns_production_url)) != 0 ||
	    (r = parse_apns(layers, n, OPT_APNS_CA_FILE,
	    &cfg->apns_ca_file)) != 0 ||
	    (r = parse_apns(layers, n, OPT_APNS_PROXY, &cfg->apns_proxy)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_MAX_KEYS_PER_APP, &where)) != NULL &&
	    (r = parse_uint(v, where, 0, QUOTA_MAX,
	    &cfg->max_keys_per_app)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_MAX_APPS_PER_TOKEN, &where)) != NULL &&
	    (r = parse_uint(v, where, 0, QUOTA_MAX,
	    &cfg->max_apps_per_token)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_MAX_UPLOADS_PER_MINUTE, &where)) != NULL &&
	    (r = parse_uint(v, where, 0, QUOTA_MAX,
	    &cfg->max_uploads_per_minute)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_MAX_RECORDS, &where)) != NULL &&
	    (r = parse_uint(v, where, 0, QUOTA_MAX, &cfg->max_records)) != 0)
		return r;
	if ((v = pick(layers, n, OPT_AUDIT_RETENTION, &where)) != NULL &&
	    (r = parse_uint(v, where, 0, AUDIT_RETENTION_MAX_S,
	    &cfg->audit_retention_s)) != 0)
		return r;

	/* Master key files: all from the highest layer that names any. */
	for (i = 0; i < n; i++) {
		if (layers[i]->n_list == 0)
			continue;
		for (j = 0; j < layers[i]->n_list; j++)
			if ((cfg->master_key_files[j] =
			    strdup(layers[i]->list[j])) == NULL)
				return P8V_ERR_ALLOC;
		cfg->n_master_key_files = layers[i]->n_list;
		break;
	}
	if (cfg->n_master_key_files == 0 && cfg->dev) {
		if ((cfg->master_key_files[0] =
		    strdup(CONFIG_DEV_MASTER_KEY)) == NULL)
			return P8V_ERR_ALLOC;
		cfg->n_master_key_files = 1;
	}
	return 0;
}

static int
validate(const struct config *cfg)
{
	if (cfg->state_dir == NULL || cfg->state_dir[0] == '\0') {
		log_errorf("config", "no state directory: give --state DIR "
		    "(or P8VAULT_STATE, or state = DIR in the config file) "
		    "or --store LOCATION");
		return P8V_ERR_INVALID_ARGUMENT;
	}
	if ((cfg->etcd_cert == NULL) != (cfg->etcd_key == NULL)) {
		log_errorf("config", "--etcd-cert and --etcd-key go together");
		return P8V_ERR_INVALID_ARGUMENT;
	}
	if ((cfg->etcd_user == NULL) != (cfg->etcd_password_file == NULL)) {
		log_errorf("config", "--etcd-user and --etcd-password-file go "
		    "together");
		return P8V_ERR_INVALID_ARGUMENT;
	}
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
		log_errorf("config", "--tls-cert and --tls-key go together");
		return P8V_ERR_INVALID_ARGUMENT;
	}
	if (cfg->listen == NULL && cfg->sign_socket == NULL &&
	    cfg->sign_listen == NULL) {
		log_errorf("config", "nothing to serve: --listen none and no "
		    "--sign-socket or --sign-listen");
		return P8V_ERR_INVALID_ARGUMENT;
	}
	return config_check_listeners(cfg);
}

static int
check_tcp(const char *opt, const char *spec, const struct config *cfg)
{
	struct listen_addr a;

	if (spec == NULL)
		return 0;
	if (listen_addr_parse(spec, &a) != 0) {
		log_errorf("config", "--%s %s: expected A.B.C.D:PORT or "
		    "[IPv6]:PORT with a numeric address", opt, spec);
		return P8V_ERR_INVALID_ARGUMENT;
	}
	if (!listen_addr_is_loopback(&a) && cfg->tls_cert == NULL &&
	    !cfg->insecure_http) {
		log_errorf("config", "refusing to serve plain HTTP on %s, which "
		    "is not a loopback address: bearer tokens and signed "
		    "tokens would cross the network in the clear. Give "
		    "--tls-cert and --tls-key, or --insecure-http if a TLS "
		    "proxy in front of it is the only way in", spec);
		return P8V_ERR_INVALID_ARGUMENT;
	}
	return 0;
}

int
config_check_listeners(const struct config *cfg)
{
	int r;

	if ((r = check_tcp("listen", cfg->listen, cfg)) != 0)
		return r;
	return check_tcp("sign-listen", cfg->sign_listen, cfg);
}

int
config_load(int argc, char **argv, struct config *cfg,
    enum config_action *action)
{
	struct layer cli, env, file;
	struct layer *layers[3];
	const char *cfile, *where;
	int r = P8V_ERR_INTERNAL;

	memset(&cli, 0, sizeof(cli));
	memset(&env, 0, sizeof(env));
	memset(&file, 0, sizeof(file));
	memset(cfg, 0, sizeof(*cfg));
	*action = CONFIG_RUN;
	if ((r = load_cli(argc, argv, &cli, action)) != 0 ||
	    *action == CONFIG_EXIT)
		goto out;
	warn_unknown_env();
	if ((r = load_env(&env)) != 0)
		goto out;
	layers[0] = &cli;
	layers[1] = &env;
	if ((cfile = pick(layers, 2, OPT_CONFIG, &where)) != NULL) {
		if ((r = dup_opt(&cfg->config_file, cfile)) != 0 ||
		    (r = load_file(cfile, &file)) != 0)
			goto out;
	}
	layers[2] = &file;
	if ((r = merge(layers, 3, cfg)) != 0)
		goto out;
	r = validate(cfg);
 out:
	layer_finish(&cli);
	layer_finish(&env);
	layer_finish(&file);
	return r;
}

void
config_finish(struct config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	free(cfg->config_file);
	free(cfg->state_dir);
	for (i = 0; i < cfg->n_master_key_files; i++)
		free(cfg->master_key_files[i]);
	free(cfg->listen);
	free(cfg->sign_socket);
	free(cfg->sign_listen);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->apns_sandbox_url);
	free(cfg->apns_production_url);
	free(cfg->apns_ca_file);
	free(cfg->apns_proxy);
	free(cfg->etcd_cacert);
	free(cfg->etcd_cert);
	free(cfg->etcd_key);
	free(cfg->etcd_user);
	free(cfg->etcd_password_file);
	memset(cfg, 0, sizeof(*cfg));
}
