/*
 * main.c: p8vaultd: configuration, hardening, listeners, the state behind
 * them, signals.
 *
 * Start-up order, and why:
 *   1. harden the process (no core dumps, not dumpable, umask 077) before
 *      anything is read;
 *   2. configuration (exit 2 on a usage or configuration error);
 *   3. guarded memory must work (secmem_init), else exit 1;
 *   4. SIGTERM, SIGINT and SIGHUP are blocked in every thread and taken by
 *      sigtimedwait() in the main thread only: no work in signal handlers,
 *      and libmicrohttpd's threads, created later, inherit the mask;
 *   5. master keys are loaded (a missing or unsafe key file fails now);
 *   6. listeners start, answering /healthz at once and /readyz 503
 *      "starting";
 *   7. the store is opened and the keys checked against it; then /readyz
 *      answers 200 and the key routes are served.
 * Stop (SIGTERM or SIGINT): stop accepting, let requests in flight finish
 * (at most DRAIN_TIMEOUT_MS; a second signal cuts it short), close the
 * store, exit 0.
 * SIGHUP: read the configuration again (command line, environment, config
 * file) for its master-key files only, load them and swap the new keyring
 * into the vault while requests go on (vault_set_keyring); a refused or
 * unreadable set keeps the current keys. Other options need a restart.
 * Under systemd (Type=notify, server/notify.h): READY=1 once step 7 is
 * done, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 at SIGTERM
 * or SIGINT, and a STATUS line with each.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/auth.h"
#include "api/http.h"
#include "api/routes.h"
#include "common/err.h"
#include "common/log.h"
#include "store/store.h"
#include "crypto/secmem.h"
#include "store/audit.h"
#include "server/config.h"
#include "server/dev.h"
#include "server/harden.h"
#include "server/listen.h"
#include "server/notify.h"
#include "server/state.h"
#include "server/tls.h"

/* Exit statuses (also in --help and docs/operations.md). */
#define EXIT_STOPPED 0            /* stopped by SIGTERM or SIGINT */
#define EXIT_STARTUP 1            /* start-up or runtime failure */
#define EXIT_USAGE 2              /* usage or configuration error */

/* How long requests in flight may take to finish after SIGTERM: longer
 * than any request takes, shorter than systemd's TimeoutStopSec (90 s). */
#define DRAIN_TIMEOUT_MS 10000
/* How often the drain loop looks at the requests in flight. */
#define DRAIN_POLL_MS 20
/* How often the store's housekeeping runs (stale reader slots). */
#define MAINTAIN_INTERVAL_S 60
/* How often the STATUS line for systemd is brought up to date (sent only
 * when it changed): a keeper restart shows within this. */
#define STATUS_INTERVAL_S 5
/* Longest STATUS line kept. */
#define STATUS_MAX 256
/* File descriptors beyond the connections: listeners, store, logs. */
#define FD_RESERVE 64

struct daemon {
	int argc;                       /* for config_load on SIGHUP */
	char **argv;
	struct config cfg;
	struct state state;
	struct api_server *srv;
	struct listen_unix sign_socket;
	int sign_socket_open;
	char status[STATUS_MAX];        /* the last STATUS sent (notify.h) */
};

static int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait up to ms for one of the signals in set; 0 on timeout. */
static int
wait_signal(const sigset_t *set, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	int sig;

	do {
		sig = sigtimedwait(set, NULL, &ts);
	} while (sig < 0 && errno == EINTR);
	return sig < 0 ? 0 : sig;
}

/* Serve kind on a TCP address: one SO_REUSEPORT socket and one daemon
 * thread per configured thread (see api/http.c on threading). */
static int
serve_tcp(struct daemon *d, enum api_listener kind, const char *spec,
    const struct api_tls *tls)
{
	struct listen_addr addr;
	int fds[API_THREADS_MAX];
	unsigned int i, n = d->cfg.threads;
	uint16_t port = 0;
	int r = P8V_ERR_INTERNAL;

	if ((r = listen_addr_parse(spec, &addr)) != 0)
		goto out;   /* config_load checked it already */
	if ((r = listen_tcp(&addr, n, fds, &port)) != 0)
		goto out;
	for (i = 0; i < n; i++) {
		if ((r = api_server_listen(d->srv, kind, fds[i], 1, tls)) != 0) {
			for (i++; i < n; i++)
				close(fds[i]);
			goto out;
		}
	}
	log_fields(LOG_LEVEL_INFO, "listening",
	    json_pack("{s:s, s:s, s:s, s:i, s:b, s:i}",
	    "listener", kind == API_LISTENER_SIGN ? "sign" : "portal",
	    "api", kind == API_LISTENER_SIGN ? "signing" : "portal",
	    "address", addr.host, "port", (int)port, "tls", tls != NULL,
	    "threads", (int)n),
	    "%s API listening on %s port %u%s",
	    kind == API_LISTENER_SIGN ? "signing" : "portal", addr.host,
	    (unsigned int)port, tls != NULL ? " (TLS)" : "");
	r = 0;
 out:
	return r;
}

static int
serve_unix(struct daemon *d, const char *path)
{
	int fd, r = P8V_ERR_INTERNAL;

	if ((r = listen_unix(path, &d->sign_socket)) != 0)
		goto out;
	d->sign_socket_open = 1;
	fd = d->sign_socket.fd;
	d->sign_socket.fd = -1;     /* the server owns it now */
	if ((r = api_server_listen(d->srv, API_LISTENER_SIGN, fd,
	    d->cfg.threads, NULL)) != 0)
		goto out;
	log_fields(LOG_LEVEL_INFO, "listening",
	    json_pack("{s:s, s:s, s:s, s:i}", "listener", "sign",
	    "api", "signing", "socket", path, "threads", (int)d->cfg.threads),
	    "signing API listening on unix socket %s", path);
	r = 0;
 out:
	return r;
}

static int
start_listeners(struct daemon *d)
{
	struct tls_files tls_files;
	struct api_tls tls, *tlsp = NULL;
	int r = P8V_ERR_INTERNAL;

	memset(&tls_files, 0, sizeof(tls_files));
	if (d->cfg.tls_cert != NULL) {
		if ((r = tls_files_load(d->cfg.tls_cert, d->cfg.tls_key,
		    &tls_files)) != 0)
			goto out;
		tls.cert_pem = tls_files.cert_pem;
		tls.key_pem = tls_files.key_pem;
		tlsp = &tls;
	}
	if (d->cfg.listen != NULL &&
	    (r = serve_tcp(d, API_LISTENER_PORTAL, d->cfg.listen, tlsp)) != 0)
		goto out;
	if (d->cfg.sign_socket != NULL &&
	    (r = serve_unix(d, d->cfg.sign_socket)) != 0)
		goto out;
	if (d->cfg.sign_listen != NULL &&
	    (r = serve_tcp(d, API_LISTENER_SIGN, d->cfg.sign_listen,
	    tlsp)) != 0)
		goto out;
	r = 0;
 out:
	/* libgnutls parsed the key into its own memory when the listeners
	 * started; our copy goes now. */
	tls_files_finish(&tls_files);
	return r;
}

/*
 * READY=1 with a STATUS (ready), or the STATUS alone if it changed since
 * the last one: what is served, or what is wrong (the keeper being
 * started again, an etcd store out of reach). note is added at the end.
 */
static void
notify_serving(struct daemon *d, int ready, const char *note)
{
	struct vault_stats st;
	char text[STATUS_MAX], restarts[48] = "";
	const char *backend = store_backend_name(d->state.store);
	const char *where = d->cfg.state_dir;
	const char *sep = ":";

	if (!notify_enabled())
		return;
	vault_stats(d->state.vault, &st);
	/* An etcd location names its backend already. */
	if (store_location_is_etcd(where))
		backend = sep = "";
	if (st.keeper_restarts > 0)
		snprintf(restarts, sizeof(restarts), ", %llu keeper restart(s)",
		    (unsigned long long)st.keeper_restarts);
	if (!st.keeper_up)
		snprintf(text, sizeof(text), "keeper restarting (key "
		    "operations answer 503): store %s%s%s%s%s", backend, sep,
		    where, restarts, note);
	else if (!st.store_up)
		snprintf(text, sizeof(text), "store unreachable (cached tokens "
		    "only): store %s%s%s%s", backend, sep, where, note);
	else
		snprintf(text, sizeof(text), "serving: %llu key record(s), "
		    "store %s%s%s, %zu master key(s)%s%s",
		    (unsigned long long)st.records, backend, sep, where,
		    d->state.n_master_keys, restarts, note);
	if (ready)
		notify_ready("%s", text);
	else if (strcmp(text, d->status) != 0)
		notify_status("%s", text);
	snprintf(d->status, sizeof(d->status), "%s", text);
}

/* SIGHUP: the master-key files the configuration names now, swapped in
 * if the vault accepts them. */
static void
reload_keys(struct daemon *d)
{
	struct config cfg;
	enum config_action action;
	const char *note = "; master key reload refused, current keys kept";
	int r;

	log_infof("signal", "SIGHUP received: reloading the master keys");
	notify_reloading("reloading the master keys");
	if ((r = config_load(d->argc, d->argv, &cfg, &action)) != 0) {
		log_errorf("master_key_reload", "the configuration cannot be "
		    "read again (%s): keeping the current master keys",
		    p8v_strerror(r));
		goto out;
	}
	if ((r = state_reload_keys(&d->state, &cfg)) != 0) {
		log_errorf("master_key_reload", "master keys not reloaded "
		    "(%s): keeping the current ones", p8v_strerror(r));
		goto out;
	}
	log_infof("master_key_reload", "master keys reloaded: %zu loaded",
	    d->state.n_master_keys);
	note = "; master keys reloaded";
 out:
	config_finish(&cfg);
	/* Whatever the outcome, the daemon serves again as before. */
	notify_serving(d, 1, note);
}

/* Audit retention (--audit-retention): prune the exported events older
 * than the setting, behind the chain's checkpoint (store/audit.h). */
static void
prune_audit(struct daemon *d)
{
	uint64_t pruned, first;
	int r;

	if (d->cfg.audit_retention_s == 0 || d->state.store == NULL)
		return;
	r = store_audit_prune(d->state.store, (int64_t)time(NULL) -
	    (int64_t)d->cfg.audit_retention_s, &pruned, &first);
	if (r != 0)
		log_warnf("audit_prune", "pruning the audit log: %s",
		    p8v_strerror(r));
	else if (pruned > 0)
		log_fields(LOG_LEVEL_INFO, "audit_pruned",
		    json_pack("{s:I, s:I}", "pruned", (json_int_t)pruned,
		    "first_seq", (json_int_t)first),
		    "audit log: %llu exported event(s) older than %u s pruned; "
		    "the chain is checked from event %llu",
		    (unsigned long long)pruned, d->cfg.audit_retention_s,
		    (unsigned long long)first);
}

/* Wait for signals; run housekeeping between them (every
 * MAINTAIN_INTERVAL_S) and keep systemd's STATUS line current. Returns on
 * SIGTERM or SIGINT. */
static void
run(struct daemon *d, const sigset_t *set)
{
	int64_t maintain_at = monotonic_ms() + MAINTAIN_INTERVAL_S * 1000L;
	int sig;

	for (;;) {
		sig = wait_signal(set, STATUS_INTERVAL_S * 1000L);
		if (sig == 0) {
			if (monotonic_ms() >= maintain_at) {
				state_maintain(&d->state);
				prune_audit(d);
				maintain_at = monotonic_ms() +
				    MAINTAIN_INTERVAL_S * 1000L;
			}
			notify_serving(d, 0, "");
			continue;
		}
		if (sig == SIGHUP) {
			reload_keys(d);
			continue;
		}
		log_infof("stopping", "%s received: stopping",
		    sig == SIGINT ? "SIGINT" : "SIGTERM");
		notify_stopping("stopping (%s): finishing the requests in "
		    "flight", sig == SIGINT ? "SIGINT" : "SIGTERM");
		return;
	}
}

/* Stop accepting, let requests in flight finish. */
static void
drain(struct daemon *d, const sigset_t *set)
{
	int64_t deadline = monotonic_ms() + DRAIN_TIMEOUT_MS;
	unsigned int n;
	int sig;

	api_server_quiesce(d->srv);
	if (d->sign_socket_open) {
		listen_unix_remove(d->cfg.sign_socket, &d->sign_socket);
		d->sign_socket_open = 0;
	}
	while ((n = api_server_in_flight(d->srv)) > 0) {
		if (monotonic_ms() >= deadline) {
			log_warnf("stopping", "%u request(s) still in flight "
			    "after %d ms: closing them", n, DRAIN_TIMEOUT_MS);
			return;
		}
		sig = wait_signal(set, DRAIN_POLL_MS);
		if (sig == SIGTERM || sig == SIGINT) {
			log_warnf("stopping", "second signal: closing %u "
			    "request(s) in flight", n);
			return;
		}
	}
}

int
main(int argc, char **argv)
{
	struct daemon d;
	struct api_options opts;
	struct api_backend backend;
	struct vault_quotas quotas;
	enum config_action action;
	const char *generate = NULL;
	sigset_t set;
	rlim_t fds;
	int r, status = EXIT_STARTUP;

	memset(&d, 0, sizeof(d));
	d.argc = argc;
	d.argv = argv;
	d.sign_socket.fd = -1;
	if (harden_process() != 0)
		return EXIT_STARTUP;
	if ((r = config_load(argc, argv, &d.cfg, &action)) != 0) {
		status = r == P8V_ERR_INVALID_ARGUMENT ? EXIT_USAGE :
		    EXIT_STARTUP;
		goto out;
	}
	if (action == CONFIG_EXIT) {
		status = EXIT_SUCCESS;
		goto out;
	}
	log_set_level(d.cfg.log_level);
	if ((r = secmem_init()) != 0) {
		log_errorf("start", "guarded memory is unavailable (%s): "
		    "refusing to start", p8v_strerror(r));
		goto out;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if ((r = pthread_sigmask(SIG_BLOCK, &set, NULL)) != 0) {
		log_errorf("start", "pthread_sigmask: %s", strerror(r));
		goto out;
	}
	if (dev_prepare(&d.cfg, &generate) != 0)
		goto out;
	notify_status("starting: the keeper loads the master keys");
	/* The keeper process starts before any listener: it alone reads
	 * the master keys (keeper/keeper.h). */
	if ((r = state_load_keys(&d.state, &d.cfg, generate)) != 0) {
		if (r == P8V_ERR_NO_MASTER_KEY)
			status = EXIT_USAGE;
		goto out;
	}
	if (generate != NULL)
		dev_report_created(generate);
	if (api_auth_is_stub())
		log_warnf("start", "authentication is a stub: every request "
		    "is allowed (api/auth.c)");

	memset(&opts, 0, sizeof(opts));
	opts.connection_timeout_s = d.cfg.connection_timeout_s;
	opts.max_connections = d.cfg.max_connections;
	opts.max_connections_per_address = d.cfg.max_connections_per_address;
	opts.log_requests = d.cfg.log_level == LOG_LEVEL_DEBUG;
	/* The HTTP layer knows only the hook; bearer tokens are api/auth.c's. */
	opts.authenticate = api_authenticate;
	/* Each listener has its own budget of connections. */
	fds = (rlim_t)d.cfg.max_connections * ((d.cfg.listen != NULL) +
	    (d.cfg.sign_socket != NULL) + (d.cfg.sign_listen != NULL)) +
	    FD_RESERVE;
	harden_fd_limit(fds);
	if ((r = api_server_create(api_routes, api_routes_count, &opts,
	    &d.srv)) != 0) {
		log_errorf("start", "cannot create the HTTP server: %s",
		    p8v_strerror(r));
		goto out;
	}
	if (start_listeners(&d) != 0)
		goto out;
	notify_status("starting: %zu master key(s) loaded, opening store %s",
	    d.state.n_master_keys, d.cfg.state_dir);
	log_fields(LOG_LEVEL_INFO, "started",
	    json_pack("{s:s, s:i}", "state", d.cfg.state_dir, "pid",
	    (int)getpid()), "p8vaultd started");

	{
		/* The etcd options reach every store_open of this process
		 * (cfg outlives the store). */
		struct store_options so = {
			.etcd_cacert = d.cfg.etcd_cacert,
			.etcd_cert = d.cfg.etcd_cert,
			.etcd_key = d.cfg.etcd_key,
			.etcd_user = d.cfg.etcd_user,
			.etcd_password_file = d.cfg.etcd_password_file,
		};

		store_set_default_options(&so);
	}
	if ((r = state_open(&d.state, d.cfg.state_dir,
	    d.cfg.apns_token_reuse_s)) != 0) {
		api_server_set_not_ready(d.srv, p8v_errname(r));
		goto out;
	}
	/* Where the key check reaches APNs (checked by config_load). */
	{
		struct apns_client_config apns = {
			.sandbox_url = d.cfg.apns_sandbox_url,
			.production_url = d.cfg.apns_production_url,
			.ca_file = d.cfg.apns_ca_file,
			.proxy = d.cfg.apns_proxy,
		};

		if ((r = vault_set_apns_check(d.state.vault, &apns)) != 0) {
			api_server_set_not_ready(d.srv, p8v_errname(r));
			goto out;
		}
	}
	quotas.keys_per_app = d.cfg.max_keys_per_app;
	quotas.apps_per_token = d.cfg.max_apps_per_token;
	quotas.uploads_per_minute = d.cfg.max_uploads_per_minute;
	quotas.records = d.cfg.max_records;
	vault_set_quotas(d.state.vault, &quotas);
	prune_audit(&d);
	memset(&backend, 0, sizeof(backend));
	backend.store = d.state.store;
	backend.vault = d.state.vault;
	backend.keeper = vault_keeper(d.state.vault);
	api_server_set_backend(d.srv, &backend);
	log_infof("ready", "ready: store %s open, %zu master key(s) checked",
	    d.cfg.state_dir, d.state.n_master_keys);
	notify_serving(&d, 1, "");

	run(&d, &set);
	drain(&d, &set);
	status = EXIT_STOPPED;
 out:
	if (status != EXIT_STOPPED)
		notify_status("not started (exit status %d): see the log",
		    status);
	if (d.sign_socket_open)
		listen_unix_remove(d.cfg.sign_socket, &d.sign_socket);
	/* Stops every listener and waits for running handlers before the
	 * store they use is closed. */
	api_server_destroy(d.srv);
	state_finish(&d.state);
	if (status == EXIT_STOPPED)
		log_infof("stopped", "p8vaultd stopped");
	config_finish(&d.cfg);
	return status;
}
