/* admin.c: what the admin commands share; see admin.h. */
#include "cli/admin.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "store/audit.h"
#include "store/store.h"

/* Redraw the progress line at most this often (nanoseconds): a terminal
 * is slow next to a batch commit. */
#define ADMIN_PROGRESS_INTERVAL_NS (100 * 1000 * 1000)

static int progress_drawn;
static int64_t progress_last_ns;

int
admin_keys_add(struct admin_keys *k, const char *cmd, const char *file)
{
	if (k->n == ADMIN_KEY_FILES_MAX)
		return cli_usage_error(cmd, "at most %d --master-key-file "
		    "options", ADMIN_KEY_FILES_MAX);
	if (file == NULL || *file == '\0')
		return cli_usage_error(cmd, "--master-key-file needs a file");
	k->files[k->n++] = file;
	return CLI_EXIT_OK;
}

/*
 * Why the keeper could not load the master key file path, from what a
 * stat shows (this process never reads a key): the keeper's rules
 * (crypto/masterkey.c) are a regular file, not a symbolic link, no access
 * for group or others, owned by root or by the user that loads it, and
 * readable. Into buf; NULL if none of these is the cause.
 */
static const char *
key_file_problem(const char *path, char *buf, size_t n)
{
	struct passwd *pw;
	struct stat st;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			snprintf(buf, n, "no such file");
		else
			snprintf(buf, n, "%s", strerror(errno));
		return buf;
	}
	if (S_ISLNK(st.st_mode))
		snprintf(buf, n, "a symbolic link; give the file itself");
	else if (!S_ISREG(st.st_mode))
		snprintf(buf, n, "not a regular file");
	else if ((st.st_mode & 077) != 0)
		snprintf(buf, n, "mode %04o, must not be readable or writable "
		    "by group or others (chmod 600 %s)",
		    (unsigned)(st.st_mode & 07777), path);
	else if (st.st_uid != 0 && st.st_uid != geteuid()) {
		pw = getpwuid(st.st_uid);
		snprintf(buf, n, "owned by uid %lu%s%s%s, must be owned by root "
		    "or by you (uid %lu)", (unsigned long)st.st_uid,
		    pw != NULL ? " (" : "", pw != NULL ? pw->pw_name : "",
		    pw != NULL ? ")" : "", (unsigned long)geteuid());
	} else if (access(path, R_OK) != 0)
		snprintf(buf, n, "%s (owned by uid %lu, mode %04o): run as "
		    "root or as its owner", strerror(errno),
		    (unsigned long)st.st_uid, (unsigned)(st.st_mode & 07777));
	else
		return NULL;
	return buf;
}

int
admin_keys_start(struct admin_keys *k, const char *extra, const char *generate,
    struct keeper_key_info *extra_info)
{
	struct keeper_process_options o;
	struct keeper_status st;
	const char *files[ADMIN_KEY_FILES_MAX + 1];
	const char *file, *why;
	char whybuf[256];
	size_t i, n = 0, bad = SIZE_MAX;
	int r;

	for (i = 0; i < k->n; i++)
		files[n++] = k->files[i];
	if (extra != NULL)
		files[n++] = extra;
	if (n == 0) {
		/* No key to hold (master status without files): an empty
		 * keeper here, which every key operation refuses. */
		if ((r = keeper_create(&k->keeper)) != 0)
			return cli_fail("creating a keyring: %s",
			    p8v_strerror(r));
		return CLI_EXIT_OK;
	}
	memset(&o, 0, sizeof(o));
	o.key_files = files;
	o.n_key_files = n;
	o.generate = generate;
	o.channels = 2;
	/* The keys stay in the keeper process: this one never reads them. */
	if ((r = keeper_start(&o, &k->keeper, &bad)) != 0) {
		file = bad < n ? files[bad] : generate != NULL &&
		    bad == n ? generate : NULL;
		if (file == NULL)
			return cli_fail("cannot start the keeper (%s): %s",
			    KEEPER_PROGRAM, p8v_strerror(r));
		if (generate != NULL && bad == n)
			return cli_fail("creating master key file %s: %s", file,
			    p8v_strerror(r));
		why = r == P8V_ERR_MASTER_KEY_FILE ? key_file_problem(file,
		    whybuf, sizeof(whybuf)) : NULL;
		if (extra != NULL && bad == n - 1)
			return cli_fail("new master key file %s: %s", file,
			    r == P8V_ERR_NOT_FOUND ? "no such file (create it "
			    "with 'p8vault master generate')" : why != NULL ?
			    why : p8v_strerror(r));
		if (r == P8V_ERR_NOT_FOUND)
			return cli_fail("master key file %s: no such file",
			    file);
		if (why != NULL)
			return cli_fail("master key file %s: %s", file, why);
		return cli_fail("master key file %s: %s", file,
		    p8v_strerror(r));
	}
	if ((r = keeper_status(k->keeper, &st)) != 0)
		return cli_fail("the keeper does not answer: %s",
		    p8v_strerror(r));
	/* The keeper holds each key once, in the order loaded. */
	for (i = 0; i < k->n && i < st.n; i++)
		snprintf(k->ids[i], sizeof(k->ids[i]), "%s",
		    st.keys[i].id_hex);
	if (extra_info != NULL && st.n > 0)
		*extra_info = st.keys[st.n - 1];
	return CLI_EXIT_OK;
}

int
admin_keys_load(struct admin_keys *k)
{
	return admin_keys_start(k, NULL, NULL, NULL);
}

const char *
admin_keys_file_of(const struct admin_keys *k, const char *id_hex)
{
	size_t i;

	for (i = 0; i < k->n; i++)
		if (strcmp(k->ids[i], id_hex) == 0)
			return k->files[i];
	return NULL;
}

void
admin_keys_finish(struct admin_keys *k)
{
	keeper_destroy(k->keeper);
	memset(k, 0, sizeof(*k));
}

int
admin_flush(void)
{
	if (fflush(stdout) != 0 || ferror(stdout))
		return cli_fail("writing to stdout failed");
	return CLI_EXIT_OK;
}

int
admin_print_json(json_t *o)
{
	int r;

	if (o == NULL)
		return cli_fail("out of memory");
	r = json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (r != 0)
		return cli_fail("writing to stdout failed");
	putchar('\n');
	return admin_flush();
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
admin_progress(const char *what, uint64_t done, uint64_t total)
{
	int64_t t = now_ns();

	if (!isatty(STDERR_FILENO))
		return;
	if (progress_drawn && done < total &&
	    t - progress_last_ns < ADMIN_PROGRESS_INTERVAL_NS)
		return;
	progress_last_ns = t;
	progress_drawn = 1;
	/* \r and clear to the end of the line: one line, redrawn. */
	fprintf(stderr, "\r%s: %llu/%llu (%llu%%)\033[K", what,
	    (unsigned long long)done, (unsigned long long)total,
	    (unsigned long long)(total == 0 ? 100 : done * 100 / total));
	fflush(stderr);
}

void
admin_progress_end(void)
{
	if (progress_drawn)
		fputc('\n', stderr);
	progress_drawn = 0;
}

int
admin_parse_time(const char *s, int64_t *t)
{
	struct tm tm;
	const char *end;
	char *e;
	long long v;
	time_t tt;

	if (s == NULL || *s == '\0')
		return P8V_ERR_INVALID_ARGUMENT;
	if (strspn(s, "0123456789") == strlen(s)) {
		errno = 0;
		v = strtoll(s, &e, 10);
		if (errno != 0 || *e != '\0' || v < 0)
			return P8V_ERR_INVALID_ARGUMENT;
		*t = (int64_t)v;
		return 0;
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (*end != '\0') {
		if ((end = strptime(end, "T%H:%M:%S", &tm)) == NULL ||
		    strcmp(end, "Z") != 0)
			return P8V_ERR_INVALID_ARGUMENT;
	}
	if ((tt = timegm(&tm)) == (time_t)-1)
		return P8V_ERR_INVALID_ARGUMENT;
	*t = (int64_t)tt;
	return 0;
}

void
admin_hex(const uint8_t *in, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = "0123456789abcdef"[in[i] >> 4];
		out[2 * i + 1] = "0123456789abcdef"[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void
admin_quiet_logs(void)
{
	/* Above LOG_LEVEL_ERROR: log_emit drops every line. */
	log_set_level((enum log_level)(LOG_LEVEL_ERROR + 1));
}
/* --- audit events of admin commands --- */

struct audit_append {
	json_t *event;
};

static int
audit_txn(struct store_txn *txn, void *arg)
{
	return store_audit_append(txn, ((struct audit_append *)arg)->event,
	    NULL);
}

int
admin_audit(struct store *store, const char *what, json_t *fields)
{
	char when[CLI_TIME_BYTES];
	struct audit_append a;
	int r = P8V_ERR_ALLOC;

	if (fields == NULL)
		return r;
	if (json_object_set_new(fields, "time",
	    json_string(cli_time((int64_t)time(NULL), when))) != 0 ||
	    json_object_set_new(fields, "who", json_string(ADMIN_ACTOR)) != 0 ||
	    json_object_set_new(fields, "what", json_string(what)) != 0 ||
	    json_object_set_new(fields, "result", json_string("ok")) != 0)
		goto out;
	a.event = fields;
	r = store_write(store, audit_txn, &a);
 out:
	json_decref(fields);
	return r;
}
