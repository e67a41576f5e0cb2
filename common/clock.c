/* clock.c: the clocks of the vault and the keeper; see clock.h. */
#include "common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"

/* Where Linux publishes this boot's random UUID. */
#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"
/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx\n" */
#define BOOT_ID_TEXT_BYTES 37


static int64_t
real_wall_s(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec;
}

static int64_t
real_boot_ns(void)
{
	struct timespec ts;

	/* CLOCK_BOOTTIME exists since Linux 2.6.39; it cannot fail here. */
	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
		abort();
	return (int64_t)ts.tv_sec * CLOCK_NS_PER_S + ts.tv_nsec;
}

static int64_t (*wall_clock)(void) = real_wall_s;
static int64_t (*boot_clock)(void) = real_boot_ns;
static uint8_t test_boot_id[CLOCK_BOOT_ID_BYTES];
static int test_boot_id_set;

void
clock_test_set(int64_t (*wall_s)(void), int64_t (*boot_ns)(void))
{
	wall_clock = wall_s != NULL ? wall_s : real_wall_s;
	boot_clock = boot_ns != NULL ? boot_ns : real_boot_ns;
}

void
clock_test_set_boot_id(const uint8_t *boot_id)
{
	test_boot_id_set = boot_id != NULL;
	if (boot_id != NULL)
		memcpy(test_boot_id, boot_id, sizeof(test_boot_id));
}

int64_t
clock_wall_now(void)
{
	return wall_clock();
}

int64_t
clock_boot_now_ns(void)
{
	return boot_clock();
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return P8V_ERR_NOT_FOUND;
}

int
clock_boot_id(uint8_t out[CLOCK_BOOT_ID_BYTES])
{
	char text[BOOT_ID_TEXT_BYTES + 1];
	ssize_t n;
	size_t i, o = 0;
	int fd, hi, lo;

	memset(out, 0, CLOCK_BOOT_ID_BYTES);
	if (test_boot_id_set) {
		memcpy(out, test_boot_id, CLOCK_BOOT_ID_BYTES);
		return 0;
	}
	if ((fd = open(BOOT_ID_PATH, O_RDONLY | O_CLOEXEC)) == -1)
		return P8V_ERR_NOT_FOUND;
	do {
		n = read(fd, text, BOOT_ID_TEXT_BYTES);
	} while (n == -1 && errno == EINTR);
	close(fd);
	if (n < 36)
		return P8V_ERR_NOT_FOUND;
	for (i = 0; i < 36 && o < CLOCK_BOOT_ID_BYTES; i++) {
		if (text[i] == '-')
			continue;
		if (i + 1 >= 36 || (hi = hex_value(text[i])) < 0 ||
		    (lo = hex_value(text[i + 1])) < 0)
			goto bad;
		out[o++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	if (o == CLOCK_BOOT_ID_BYTES)
		return 0;
 bad:
	memset(out, 0, CLOCK_BOOT_ID_BYTES);
	return P8V_ERR_NOT_FOUND;
}

