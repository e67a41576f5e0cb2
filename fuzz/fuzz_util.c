/* fuzz_util.c: what the fuzz targets share (fuzz/fuzz.h). */
#include "fuzz/fuzz.h"

#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"

void
fuzz_init(void)
{
	static int done;

	if (done)
		return;
	log_set_level(LOG_LEVEL_WARN);
	if (secmem_init() != 0) {
		fprintf(stderr, "fuzz: guarded memory is unavailable "
		    "(RLIMIT_MEMLOCK?)\n");
		abort();
	}
	done = 1;
}

char *
fuzz_take_line(const uint8_t **data, size_t *size)
{
	const uint8_t *nl;
	size_t len;
	char *line;

	nl = *size > 0 ? memchr(*data, '\n', *size) : NULL;
	len = nl != NULL ? (size_t)(nl - *data) : *size;
	if ((line = malloc(len + 1)) == NULL)
		abort();
	if (len > 0)
		memcpy(line, *data, len);
	line[len] = '\0';
	*data += nl != NULL ? len + 1 : len;
	*size -= nl != NULL ? len + 1 : len;
	return line;
}

int
fuzz_err_in(int err, const int *allowed, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (err == allowed[i])
			return 1;
	return 0;
}

const struct p8_key *
fuzz_test_key(uint8_t pub[P8_PUBLIC_BYTES])
{
	static struct p8_key *key;
	static uint8_t point[P8_PUBLIC_BYTES];
	uint8_t scalar[P8_SCALAR_BYTES];
	size_t i;

	if (key == NULL) {
		fuzz_init();
		for (i = 0; i < sizeof(scalar); i++)
			scalar[i] = (uint8_t)(i + 1);
		if (p8_key_from_scalar(scalar, NULL, &key) != 0 ||
		    p8_key_public_point(key, point) != 0) {
			fprintf(stderr, "fuzz: cannot make the test key\n");
			abort();
		}
		secmem_wipe(scalar, sizeof(scalar));
	}
	if (pub != NULL)
		memcpy(pub, point, sizeof(point));
	return key;
}
