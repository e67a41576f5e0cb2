/*
 * replay.c: main() for a fuzz target built without libFuzzer (any
 * compiler): run LLVMFuzzerTestOneInput once over every regular file of the
 * directories (or the files) named on the command line, in name order.
 *
 *   fuzz_p8 fuzz/corpus/fuzz_p8 [more dirs or files...]
 *
 * This is how the seed corpora run as ordinary tests (meson suite
 * "fuzz-replay", in the plain and the ASan+UBSan build), and how a crash
 * reproducer from fuzz/run.sh is replayed under gdb. A crash is the
 * target's abort or a sanitizer's report; a target that returns anything
 * but 0, a missing or unreadable path and a directory without inputs are
 * failures too (exit 1): a replay that ran nothing proves nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz/fuzz.h"

/* Largest input replayed; far above any seed, well below any limit that
 * matters: a bigger file is a mistake in the corpus. */
#define REPLAY_MAX_INPUT (1024 * 1024)

/* Targets without set-up do not define it. */
extern int LLVMFuzzerInitialize(int *argc, char ***argv)
    __attribute__((weak));

/* Run the target over one file. 0, or -1 (reported). */
static int
replay_file(const char *path)
{
	FILE *f = NULL;
	uint8_t *buf = NULL;
	long size;
	int r = -1;

	if ((f = fopen(path, "rb")) == NULL ||
	    fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		goto out;
	}
	if (size > REPLAY_MAX_INPUT) {
		fprintf(stderr, "replay: %s: larger than %d bytes\n", path,
		    REPLAY_MAX_INPUT);
		goto out;
	}
	/* An exact-size heap block (at least 1 byte for malloc), as
	 * libFuzzer passes: a read past the end is a sanitizer report. */
	if ((buf = malloc(size > 0 ? (size_t)size : 1)) == NULL ||
	    fread(buf, 1, (size_t)size, f) != (size_t)size) {
		fprintf(stderr, "replay: %s: cannot read\n", path);
		goto out;
	}
	if (LLVMFuzzerTestOneInput(buf, (size_t)size) != 0) {
		fprintf(stderr, "replay: %s: the target returned non-zero\n",
		    path);
		goto out;
	}
	r = 0;
 out:
	free(buf);
	if (f != NULL)
		fclose(f);
	return r;
}

/* Out of memory in a test driver: nothing to recover. */
static void
nomem(void)
{
	fprintf(stderr, "replay: out of memory\n");
	exit(1);
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run the target over every regular file of dir; *count gets how many.
 * 0, or -1 (reported). */
static int
replay_dir(const char *dir, size_t *count)
{
	DIR *d;
	struct dirent *e;
	struct stat st;
	char **names = NULL, **grown, *path = NULL;
	size_t n = 0, i;
	int r = -1;

	*count = 0;
	if ((d = opendir(dir)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if ((grown = realloc(names, (n + 1) * sizeof(*names))) == NULL)
			nomem();
		names = grown;
		if ((names[n] = strdup(e->d_name)) == NULL)
			nomem();
		n++;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), by_name);
	for (i = 0; i < n; i++) {
		free(path);
		if (asprintf(&path, "%s/%s", dir, names[i]) < 0)
			nomem();
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (replay_file(path) != 0)
			goto out;
		(*count)++;
	}
	r = 0;
 out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(path);
	closedir(d);
	return r;
}

int
main(int argc, char **argv)
{
	struct stat st;
	size_t count, total = 0;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 2;
	}
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
			    strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode)) {
			if (replay_dir(argv[i], &count) != 0)
				return 1;
			if (count == 0) {
				fprintf(stderr, "replay: %s: no inputs\n",
				    argv[i]);
				return 1;
			}
		} else {
			if (replay_file(argv[i]) != 0)
				return 1;
			count = 1;
		}
		printf("replay: %s: %zu inputs\n", argv[i], count);
		total += count;
	}
	printf("replay: %zu inputs, no crash\n", total);
	return 0;
}
