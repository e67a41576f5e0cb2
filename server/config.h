/*
 * config.h: p8vaultd's configuration: command line, environment, config
 * file, development defaults, defaults.
 *
 * Every option has a long form (--state DIR), an environment variable
 * (P8VAULT_STATE: P8VAULT_ + the name upper-cased, '-' as '_') and a
 * config-file key (state = DIR: the long name). Precedence, highest first:
 * command line, environment, config file (--config FILE or
 * P8VAULT_CONFIG), --dev defaults, built-in defaults. A repeatable option
 * (--master-key-file) takes all its values from the highest source that
 * sets it; in the environment several are separated by ':'.
 *
 * Config file: UTF-8 text, one "key = value" per line; blank lines and lines
 * starting with '#' are ignored; white space around key and value is
 * trimmed; no quoting. An unknown key or a malformed line is an error
 * naming the file and line. Booleans (insecure-http, dev) take
 * 1/0, true/false, yes/no, on/off.
 */
#ifndef P8V_SERVER_CONFIG_H
#define P8V_SERVER_CONFIG_H

#include <stddef.h>

#include "common/log.h"

/* The --dev defaults (relative to the working directory: ./run.sh runs in
 * the repository). */
#define CONFIG_DEV_STATE "./var"
#define CONFIG_DEV_MASTER_KEY "./var/dev-master.key"
#define CONFIG_DEV_LISTEN "127.0.0.1:8470"
#define CONFIG_DEV_SIGN_SOCKET "./var/sign.sock"
/* Built-in default of --listen: loopback only. */
#define CONFIG_DEFAULT_LISTEN "127.0.0.1:8470"
/* Most --master-key-file values (old, new, spare: the keyring's size). */
#define CONFIG_MASTER_KEY_FILES_MAX 8
/* Longest config file accepted: a few dozen lines at most. */
#define CONFIG_FILE_MAX_BYTES (64 * 1024)
/* Default threads per listener: one per CPU, at most this many (signing
 * is fast; more threads mostly add memory). */
#define CONFIG_THREADS_DEFAULT_MAX 8

struct config {
	char *config_file;         /* NULL: none */
	int dev;                   /* --dev given */
	char *state_dir;           /* required: a directory, or an etcd
	                              location (--store etcd://...) */
	char *master_key_files[CONFIG_MASTER_KEY_FILES_MAX];
	size_t n_master_key_files; /* 0: try the systemd credential */
	char *listen;              /* portal API HOST:PORT; NULL: not served */
	char *sign_socket;         /* signing API unix socket; NULL: none */
	char *sign_listen;         /* signing API HOST:PORT; NULL: none */
	char *tls_cert;            /* PEM file; with tls_key, HTTPS on TCP */
	char *tls_key;
	int insecure_http;         /* allow plain HTTP on non-loopback */
	enum log_level log_level;
	unsigned int threads;      /* per listener, 1..API_THREADS_MAX */
	unsigned int connection_timeout_s;
	unsigned int max_connections;
	unsigned int max_connections_per_address;
	unsigned int apns_token_reuse_s; /* APNs token reuse period, seconds */
	/* The key check with Apple (vault_set_apns_check); NULL: Apple's
	 * hosts, the system's CA store, no proxy. */
	char *apns_sandbox_url;
	char *apns_production_url;
	char *apns_ca_file;
	char *apns_proxy;
	/* Quotas (struct vault_quotas; 0: no limit). */
	unsigned int max_keys_per_app;
	unsigned int max_apps_per_token;
	unsigned int max_uploads_per_minute;
	unsigned int max_records;
	unsigned int audit_retention_s; /* 0: keep every audit event */
	/* The etcd store (--store etcd://...; state_dir holds the location):
	 * TLS and auth; NULL: not used. */
	char *etcd_cacert;
	char *etcd_cert;
	char *etcd_key;
	char *etcd_user;
	char *etcd_password_file;
};

/* What config_load wants the caller to do. */
enum config_action {
	CONFIG_RUN = 0,            /* start the daemon */
	CONFIG_EXIT,               /* --help or --version printed: exit 0 */
};

/*
 * Build cfg from argv, the environment (environ) and the config file, and
 * validate it: every option well-formed, --tls-cert and --tls-key together,
 * a state directory given. Whether a TCP address is loopback is checked by
 * the daemon when it binds (config_check_listeners).
 * Errors are logged (JSON, naming the option or file:line); usage errors
 * also print "Try 'p8vaultd --help'" on stderr.
 * cfg is filled even on failure as far as it got: release it with
 * config_finish.
 * Returns 0 (with *action), or P8V_ERR_INVALID_ARGUMENT (usage or
 * configuration error: exit 2), P8V_ERR_ALLOC.
 */
int config_load(int argc, char **argv, struct config *cfg,
    enum config_action *action);

/*
 * The listener policy: a TCP listener (--listen, --sign-listen) on an
 * address that is not loopback needs TLS (--tls-cert/--tls-key) or an
 * explicit --insecure-http; every address must parse. Logs the reason.
 * Returns 0 or P8V_ERR_INVALID_ARGUMENT (exit 2).
 */
int config_check_listeners(const struct config *cfg);

/* Free everything cfg holds. NULL-safe; cfg itself is the caller's. */
void config_finish(struct config *cfg);

#endif /* P8V_SERVER_CONFIG_H */
