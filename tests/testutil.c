/* testutil.c: see testutil.h. */
#include "tests/testutil.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int
tu_read_file(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = NULL;
	uint8_t *b = NULL;
	long n;
	int r = -1;

	if ((f = fopen(path, "rb")) == NULL)
		goto out;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	if ((b = malloc((size_t)n + 1)) == NULL)
		goto out;
	if (n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n)
		goto out;
	b[n] = 0;
	*buf = b;
	*len = (size_t)n;
	b = NULL;
	r = 0;
 out:
	if (f != NULL)
		fclose(f);
	free(b);
	return r;
}

int
tu_write_file(const char *path, const void *buf, size_t len, int mode)
{
	int fd, r = -1;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)) < 0)
		return -1;
	if (len == 0 || write(fd, buf, len) == (ssize_t)len)
		r = 0;
	close(fd);
	return r;
}

static int
nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
tu_hex_decode(const char *hex, uint8_t **out, size_t *out_len)
{
	size_t n = strlen(hex), i;
	uint8_t *b;

	if (n % 2 != 0)
		return -1;
	if ((b = malloc(n / 2 + 1)) == NULL)
		return -1;
	for (i = 0; i < n / 2; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(b);
			return -1;
		}
		b[i] = (uint8_t)(hi << 4 | lo);
	}
	*out = b;
	*out_len = n / 2;
	return 0;
}

json_t *
tu_wycheproof_load(const char *name)
{
	const char *dir = getenv("P8V_WYCHEPROOF_DIR");
	char path[4096];
	json_error_t err;
	json_t *j;

	if (dir == NULL) {
		fprintf(stderr, "P8V_WYCHEPROOF_DIR is not set\n");
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((j = json_load_file(path, 0, &err)) == NULL)
		fprintf(stderr, "%s: %s (line %d)\n", path, err.text, err.line);
	return j;
}

int
tu_has_flag(const json_t *test, const char *flag)
{
	json_t *flags = json_object_get(test, "flags"), *f;
	size_t i;

	json_array_foreach(flags, i, f)
		if (json_is_string(f) && strcmp(json_string_value(f), flag) == 0)
			return 1;
	return 0;
}

char *
tu_mkdtemp(const char *prefix)
{
	const char *tmp = getenv("TMPDIR");
	char *path;

	if (tmp == NULL || *tmp == '\0')
		tmp = "/tmp";
	if (asprintf(&path, "%s/%s.XXXXXX", tmp, prefix) < 0)
		return NULL;
	if (mkdtemp(path) == NULL) {
		free(path);
		return NULL;
	}
	return path;
}

void
tu_rmtree(const char *path)
{
	if (path != NULL && *path != '\0')
		tu_system("rm -rf -- '%s'", path);
}

int
tu_system(const char *fmt, ...)
{
	char *cmd = NULL;
	va_list ap;
	int st;

	va_start(ap, fmt);
	st = vasprintf(&cmd, fmt, ap);
	va_end(ap);
	if (st < 0)
		return -1;
	st = system(cmd);
	free(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}
