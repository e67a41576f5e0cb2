/* reserve.c: room kept for mints on a full disk; see reserve.h. */
#include "store/reserve.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

struct store_reserve {
	pthread_mutex_t lock;
	int fd;
	size_t bytes;           /* allocated now */
};

/* Allocate up to STORE_RESERVE_BYTES; rs->bytes is what the file holds
 * after. 0 when whole. */
static int
grow(struct store_reserve *rs)
{
	size_t want = STORE_RESERVE_BYTES;
	int e;

	while (rs->bytes < want) {
		/* Chunk by chunk: on a nearly full disk, keep what fits. */
		size_t next = rs->bytes + STORE_RESERVE_CHUNK;

		if (next > want)
			next = want;
		if ((e = posix_fallocate(rs->fd, 0, (off_t)next)) != 0)
			return e == ENOSPC ? P8V_ERR_NO_SPACE : P8V_ERR_IO;
		__atomic_store_n(&rs->bytes, next, __ATOMIC_RELEASE);
	}
	return 0;
}

struct store_reserve *
store_reserve_open(const char *dir)
{
	struct store_reserve *rs = NULL;
	char path[PATH_MAX];
	struct stat st;
	int fd = -1;

	if (snprintf(path, sizeof(path), "%s/%s", dir, STORE_RESERVE_FILE) >=
	    (int)sizeof(path))
		return NULL;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (rs = calloc(1, sizeof(*rs))) == NULL ||
	    pthread_mutex_init(&rs->lock, NULL) != 0) {
		log_warnf("store_reserve", "no room reserved for mints: %s: %s",
		    path, strerror(errno));
		free(rs);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	rs->fd = fd;
	/* Blocks allocated, not the apparent size: a file left short by a
	 * crash grows again. */
	rs->bytes = (size_t)st.st_size > STORE_RESERVE_BYTES ?
	    STORE_RESERVE_BYTES : (size_t)st.st_size;
	if ((size_t)st.st_size > STORE_RESERVE_BYTES &&
	    ftruncate(fd, STORE_RESERVE_BYTES) != 0)
		log_warnf("store_reserve", "%s: %s", path, strerror(errno));
	if (grow(rs) != 0)
		log_warnf("store_reserve", "only %zu of %d bytes reserved for "
		    "mints: the disk is full", rs->bytes, STORE_RESERVE_BYTES);
	return rs;
}

void
store_reserve_close(struct store_reserve *rs)
{
	if (rs == NULL)
		return;
	close(rs->fd);
	pthread_mutex_destroy(&rs->lock);
	free(rs);
}

int
store_reserve_refill(struct store_reserve *rs)
{
	int r;

	if (rs == NULL)
		return 0;
	if (__atomic_load_n(&rs->bytes, __ATOMIC_ACQUIRE) ==
	    STORE_RESERVE_BYTES)
		return 0;
	pthread_mutex_lock(&rs->lock);
	r = grow(rs);
	pthread_mutex_unlock(&rs->lock);
	return r;
}

int
store_reserve_release(struct store_reserve *rs)
{
	struct statvfs vfs;
	size_t next;
	int r = P8V_ERR_NO_SPACE;

	if (rs == NULL)
		return P8V_ERR_NO_SPACE;
	pthread_mutex_lock(&rs->lock);
	/* Only for a full file system: a full map is not helped by it. */
	if (fstatvfs(rs->fd, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize >= 2 * STORE_RESERVE_CHUNK)
		goto out;
	if (rs->bytes == 0)
		goto out;
	next = rs->bytes > STORE_RESERVE_CHUNK ?
	    rs->bytes - STORE_RESERVE_CHUNK : 0;
	if (ftruncate(rs->fd, (off_t)next) != 0)
		goto out;
	__atomic_store_n(&rs->bytes, next, __ATOMIC_RELEASE);
	log_warnf("store_reserve", "the disk is full: %zu bytes of the room "
	    "reserved for mints left; other writes are refused", next);
	r = 0;
 out:
	pthread_mutex_unlock(&rs->lock);
	return r;
}

size_t
store_reserve_bytes(struct store_reserve *rs)
{
	return rs == NULL ? 0 : __atomic_load_n(&rs->bytes, __ATOMIC_ACQUIRE);
}
