/* cli.c: what the commands of p8vault share; see cli.h. */
#include "cli/cli.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "crypto/secmem.h"
#include "store/store.h"

/* The LMDB data file store_open creates in a state directory. */
#define CLI_STORE_DATA_FILE "data.mdb"
/* The files of a state directory (store/backend_lmdb.c). */
static const char *const state_files[] = { "data.mdb", "lock.mdb" };

int
cli_fail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("p8vault: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CLI_EXIT_FAILURE;
}

int
cli_dispatch(const char *group, const struct cli_command *table, size_t n,
    void (*usage)(FILE *f), int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	for (i = 0; i < n; i++)
		if (strcmp(argv[1], table[i].name) == 0)
			return table[i].run(argc - 1, argv + 1);
	return cli_usage_error(group, "unknown %s command '%s'", group,
	    argv[1]);
}

int
cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("p8vault: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cmd != NULL)
		fprintf(stderr, "Try 'p8vault %s --help'.\n", cmd);
	else
		fputs("Try 'p8vault --help'.\n", stderr);
	return CLI_EXIT_USAGE;
}

void
cli_warn(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("p8vault: warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int
cli_secmem_init(void)
{
	int r;

	if ((r = secmem_init()) != 0)
		return cli_fail("guarded memory is unavailable (%s): raise the "
		    "locked-memory limit (ulimit -l, LimitMEMLOCK=)",
		    p8v_strerror(r));
	return CLI_EXIT_OK;
}

int
cli_store_fail(const char *dir, const char *what, int err)
{
	if (store_location_is_etcd(dir))
		return cli_fail("%s in store %s: %s", what, dir,
		    p8v_strerror(err));
	return cli_fail("%s in state directory %s: %s", what, dir,
	    p8v_strerror(err));
}

/* The etcd options of this invocation (cli_store_args). */
static const char *etcd_opt[5];
static const char *const etcd_opt_names[5] = {
	"etcd-cacert", "etcd-cert", "etcd-key", "etcd-user",
	"etcd-password-file",
};
static const char *const etcd_opt_env[5] = {
	"P8VAULT_ETCD_CACERT", "P8VAULT_ETCD_CERT", "P8VAULT_ETCD_KEY",
	"P8VAULT_ETCD_USER", "P8VAULT_ETCD_PASSWORD_FILE",
};

int
cli_store_args(int *argc, char **argv)
{
	struct store_options o = { 0 };
	const char *name, *eq, *val;
	size_t i, n;
	int in = 1, out = 1, matched;

	for (i = 0; i < 5; i++)
		if ((val = getenv(etcd_opt_env[i])) != NULL && *val != '\0')
			etcd_opt[i] = val;
	while (in < *argc) {
		name = argv[in];
		if (strcmp(name, "--") == 0) {
			while (in < *argc)
				argv[out++] = argv[in++];
			break;
		}
		if (strncmp(name, "--", 2) != 0) {
			argv[out++] = argv[in++];
			continue;
		}
		name += 2;
		eq = strchr(name, '=');
		n = eq != NULL ? (size_t)(eq - name) : strlen(name);
		if (n == 5 && strncmp(name, "store", 5) == 0) {
			/* --store LOCATION is --state LOCATION: every
			 * command opens either through store_open. */
			if (eq == NULL) {
				argv[out++] = (char *)"--state";
			} else {
				/* One word for one: out never passes in.
				 * Lives as long as the process. */
				char *w;

				if (asprintf(&w, "--state=%s", eq + 1) < 0)
					return cli_fail("out of memory");
				argv[out++] = w;
			}
			in++;
			continue;
		}
		matched = 0;
		for (i = 0; i < 5; i++) {
			if (strlen(etcd_opt_names[i]) != n ||
			    strncmp(name, etcd_opt_names[i], n) != 0)
				continue;
			matched = 1;
			if (eq != NULL)
				val = eq + 1;
			else if (in + 1 < *argc)
				val = argv[++in];
			else
				return cli_usage_error(argv[0], "option '--%s' "
				    "requires an argument", etcd_opt_names[i]);
			etcd_opt[i] = val;
			in++;
			break;
		}
		if (!matched)
			argv[out++] = argv[in++];
	}
	argv[out] = NULL;
	*argc = out;
	o.etcd_cacert = etcd_opt[0];
	o.etcd_cert = etcd_opt[1];
	o.etcd_key = etcd_opt[2];
	o.etcd_user = etcd_opt[3];
	o.etcd_password_file = etcd_opt[4];
	store_set_default_options(&o);
	return CLI_EXIT_OK;
}

/* "uid 999 (p8vault)", or "uid 999" for a uid with no name. */
static const char *
uid_name(uid_t uid, char *buf, size_t n)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(buf, n, "uid %lu (%s)", (unsigned long)uid,
		    pw->pw_name);
	else
		snprintf(buf, n, "uid %lu", (unsigned long)uid);
	return buf;
}

/*
 * What keeps user uid from opening the store of the existing directory
 * dir (st: its stat), named on one line (printed); CLI_EXIT_OK if
 * nothing does. The rules are the store's (store/backend_lmdb.c): the
 * directory and its files belong to the user that opens them, the
 * directory is not writable by group or others and the files are 0600.
 */
static int
state_dir_problem(const char *dir, const struct stat *st, uid_t uid)
{
	char path[4096], who[128], owner[128];
	struct stat fs;
	size_t i;

	if (!S_ISDIR(st->st_mode))
		return cli_fail("state directory %s: not a directory", dir);
	if (st->st_uid != uid)
		return cli_fail("state directory %s: owned by %s, not by you "
		    "(%s): run as root or as that user", dir,
		    uid_name(st->st_uid, owner, sizeof(owner)),
		    uid_name(uid, who, sizeof(who)));
	if ((st->st_mode & 022) != 0)
		return cli_fail("state directory %s: mode %04o, must not be "
		    "writable by group or others (chmod 700 %s)", dir,
		    (unsigned)(st->st_mode & 07777), dir);
	for (i = 0; i < sizeof(state_files) / sizeof(state_files[0]); i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    state_files[i]) >= sizeof(path))
			return cli_fail("state directory %s: path too long",
			    dir);
		if (lstat(path, &fs) != 0) {
			if (errno == ENOENT)
				continue;
			return cli_fail("state directory %s: %s: %s", dir,
			    path, strerror(errno));
		}
		if (!S_ISREG(fs.st_mode))
			return cli_fail("state directory %s: %s is not a "
			    "regular file", dir, path);
		if (fs.st_uid != uid)
			return cli_fail("state directory %s: %s is owned by "
			    "%s, not by the directory's owner (%s): chown it "
			    "back", dir, path,
			    uid_name(fs.st_uid, owner, sizeof(owner)),
			    uid_name(uid, who, sizeof(who)));
		if ((fs.st_mode & 077) != 0)
			return cli_fail("state directory %s: %s has mode "
			    "%04o, must be 0600 (chmod 600 %s)", dir, path,
			    (unsigned)(fs.st_mode & 07777), path);
	}
	return CLI_EXIT_OK;
}

/* The user a command on dir (st: its stat) runs as: the directory's
 * owner when this process is root and the owner is not, else itself. */
static uid_t
state_dir_user(const struct stat *st)
{
	if (geteuid() == 0 && st->st_uid != 0)
		return st->st_uid;
	return geteuid();
}

int
cli_state_dir_check(const char *dir)
{
	struct stat st;

	if (store_location_is_etcd(dir))
		return CLI_EXIT_OK;
	if (stat(dir, &st) != 0)
		return errno == ENOENT ? CLI_EXIT_OK : cli_fail("state "
		    "directory %s: %s", dir, strerror(errno));
	return state_dir_problem(dir, &st, state_dir_user(&st));
}

/*
 * Become user uid for good: its groups (initgroups from its passwd
 * entry, or none), its group (the passwd entry's, else gid), then the
 * uid, real, effective and saved; then make sure root cannot be had
 * back.
 */
static int
become(uid_t uid, gid_t gid, const char *dir)
{
	struct passwd *pw = getpwuid(uid);
	char who[128];

	uid_name(uid, who, sizeof(who));
	if (pw != NULL)
		gid = pw->pw_gid;
	if ((pw != NULL ? initgroups(pw->pw_name, gid) :
	    setgroups(0, NULL)) != 0 ||
	    setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
		return cli_fail("state directory %s: cannot switch to its "
		    "owner %s: %s", dir, who, strerror(errno));
	if (setuid(0) == 0 || seteuid(0) == 0 ||
	    (gid != 0 && setgid(0) == 0) ||
	    geteuid() != uid || getuid() != uid)
		return cli_fail("state directory %s: switched to %s but root "
		    "could be regained; stopping", dir, who);
	return CLI_EXIT_OK;
}

int
cli_state_dir_enter(const char *dir)
{
	struct stat st;
	uid_t uid;
	int ret;

	if (store_location_is_etcd(dir))
		return CLI_EXIT_OK;
	if (stat(dir, &st) != 0)
		return errno == ENOENT ? CLI_EXIT_OK : cli_fail("state "
		    "directory %s: %s", dir, strerror(errno));
	uid = state_dir_user(&st);
	if ((ret = state_dir_problem(dir, &st, uid)) != CLI_EXIT_OK)
		return ret;
	if (uid != geteuid())
		return become(uid, st.st_gid, dir);
	return CLI_EXIT_OK;
}

/* A prefix p8vault init (or import) prepared holds more in meta than
 * the schema version store_open writes. */
static int
count_meta(struct store_txn *txn, void *arg)
{
	return store_count(txn, STORE_DB_META, arg);
}

int
cli_store_open_existing(const char *dir, struct store **out)
{
	char path[4096];
	struct stat st;
	int r;

	*out = NULL;
	if (store_location_is_etcd(dir)) {
		uint64_t n = 0;

		if ((r = store_open(dir, NULL, out)) != 0)
			return cli_fail("opening the store %s: %s", dir,
			    p8v_strerror(r));
		if ((r = store_read(*out, count_meta, &n)) != 0 || n < 2) {
			store_close(*out);
			*out = NULL;
			return r != 0 ? cli_store_fail(dir, "reading", r) :
			    cli_fail("store %s holds no p8vault store; create "
			    "one with 'p8vault init --store %s'", dir, dir);
		}
		return CLI_EXIT_OK;
	}
	if (stat(dir, &st) != 0)
		return cli_fail("state directory %s: %s (create it with "
		    "'p8vault init')", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cli_fail("state directory %s: not a directory", dir);
	/* Owner and modes first: another user's directory cannot even be
	 * looked into. */
	if ((r = cli_state_dir_enter(dir)) != CLI_EXIT_OK)
		return r;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    CLI_STORE_DATA_FILE) >= sizeof(path))
		return cli_fail("state directory %s: path too long", dir);
	if (stat(path, &st) != 0)
		return errno == ENOENT ? cli_fail("state directory %s holds "
		    "no p8vault store (%s: %s); create one with 'p8vault "
		    "init'", dir, path, strerror(errno)) : cli_fail("state "
		    "directory %s: %s: %s", dir, path, strerror(errno));
	if ((r = store_open(dir, NULL, out)) != 0)
		return cli_store_fail(dir, "opening the store", r);
	return CLI_EXIT_OK;
}

char *
cli_time(int64_t t, char out[CLI_TIME_BYTES])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t < 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, CLI_TIME_BYTES, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, CLI_TIME_BYTES, "-");
	return out;
}

int
cli_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return P8V_ERR_IO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
