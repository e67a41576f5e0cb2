/* cli.c: what the commands of p8vault share; see cli.h. */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "crypto/secmem.h"
#include "store/store.h"

/* The LMDB data file store_open creates in a state directory. */
#define CLI_STORE_DATA_FILE "data.mdb"

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
	return cli_fail("%s in state directory %s: %s", what, dir,
	    p8v_strerror(err));
}

int
cli_store_open_existing(const char *dir, struct store **out)
{
	char path[4096];
	struct stat st;
	int r;

	*out = NULL;
	if (stat(dir, &st) != 0)
		return cli_fail("state directory %s: %s (create it with "
		    "'p8vault init')", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cli_fail("state directory %s: not a directory", dir);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
	    CLI_STORE_DATA_FILE) >= sizeof(path))
		return cli_fail("state directory %s: path too long", dir);
	if (stat(path, &st) != 0)
		return cli_fail("state directory %s holds no p8vault store "
		    "(%s: %s); create one with 'p8vault init'", dir, path,
		    strerror(errno));
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
