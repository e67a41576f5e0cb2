/* backup.c: backups of a state directory and their restore; see backup.h. */
#include "store/reserve.h"
#include "store/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

/* The files LMDB keeps in a state directory (store.c opens them). */
#define BACKUP_DATA_FILE "data.mdb"
#define BACKUP_LOCK_FILE "lock.mdb"
/* LMDB's meta page: a 16-byte page header, then MDB_meta, whose first
 * member is the magic number (host byte order; p8vault only runs on
 * little-endian 64-bit Linux, like the file it reads). */
#define BACKUP_LMDB_MAGIC_OFFSET 16
#define BACKUP_LMDB_MAGIC UINT32_C(0xBEEFC0DE)
/* Copy buffer of a restore. */
#define BACKUP_COPY_CHUNK (256 * 1024)
/* Room for a path and a temporary suffix. */
#define BACKUP_PATH_MAX 4096

static int
io_error(const char *what, const char *path)
{
	int e = errno;

	log_errorf("backup_io", "%s %s: %s", what, path, strerror(e));
	return e == ENOSPC || e == EDQUOT ? P8V_ERR_NO_SPACE : P8V_ERR_IO;
}

/* The directory part of path, into buf. */
static int
dir_of(const char *path, char buf[BACKUP_PATH_MAX])
{
	char tmp[BACKUP_PATH_MAX];

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s", path) >= sizeof(tmp))
		return P8V_ERR_INVALID_ARGUMENT;
	snprintf(buf, BACKUP_PATH_MAX, "%s", dirname(tmp));
	return 0;
}

static int
sync_dir(const char *dir)
{
	int fd, r = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return io_error("opening directory", dir);
	if (fsync(fd) != 0)
		r = io_error("syncing directory", dir);
	close(fd);
	return r;
}

/* A temporary file next to path, mode 0600: *fd and its name in tmp. */
static int
create_temp(const char *path, char tmp[BACKUP_PATH_MAX], int *fd)
{
	*fd = -1;
	if ((size_t)snprintf(tmp, BACKUP_PATH_MAX, "%s.tmp-XXXXXX", path) >=
	    BACKUP_PATH_MAX)
		return P8V_ERR_INVALID_ARGUMENT;
	/* mkstemp: O_EXCL, mode 0600 whatever the umask. */
	if ((*fd = mkostemp(tmp, O_CLOEXEC)) < 0)
		return io_error("creating", tmp);
	if (fchmod(*fd, 0600) != 0)
		return io_error("setting the mode of", tmp);
	return 0;
}

/* Give tmp the name path, never replacing an existing path. */
static int
publish(const char *tmp, const char *path)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EEXIST)
		return P8V_ERR_EXISTS;
	if (errno != EINVAL && errno != ENOSYS)
		return io_error("naming", path);
	/* No RENAME_NOREPLACE on this file system: link(2) fails on an
	 * existing name just as well. */
	if (link(tmp, path) != 0)
		return errno == EEXIST ? P8V_ERR_EXISTS :
		    io_error("naming", path);
	if (unlink(tmp) != 0)
		return io_error("removing", tmp);
	return 0;
}

int
store_file_create(const char *path, int (*fill)(int fd, void *arg),
    void *arg)
{
	char tmp[BACKUP_PATH_MAX], dir[BACKUP_PATH_MAX];
	struct stat st;
	int fd = -1, made = 0, r = P8V_ERR_INVALID_ARGUMENT;

	if (path == NULL || *path == '\0' || fill == NULL)
		goto out;
	if ((r = dir_of(path, dir)) != 0)
		goto out;
	/* Checked again, atomically, by publish(); this saves the copy. */
	r = P8V_ERR_EXISTS;
	if (lstat(path, &st) == 0)
		goto out;
	if ((r = create_temp(path, tmp, &fd)) != 0) {
		made = fd >= 0;
		goto out;
	}
	made = 1;
	if ((r = fill(fd, arg)) != 0)
		goto out;
	if (fsync(fd) != 0) {
		r = io_error("syncing", tmp);
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		r = io_error("closing", tmp);
		goto out;
	}
	fd = -1;
	if ((r = publish(tmp, path)) != 0)
		goto out;
	made = 0;
	r = sync_dir(dir);
 out:
	if (fd >= 0)
		close(fd);
	if (made)
		unlink(tmp);
	return r;
}

static int
copy_store(int fd, void *arg)
{
	return store_copy_fd(arg, fd);
}

int
store_backup(struct store *store, const char *path)
{
	if (store == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return store_file_create(path, copy_store, store);
}

/* 0 if dir is missing (*missing = 1) or an empty directory; else
 * P8V_ERR_EXISTS or P8V_ERR_IO. */
static int
check_target(const char *dir, int *missing)
{
	struct dirent *de;
	struct stat st;
	DIR *d;
	int r = 0;

	*missing = 0;
	if (lstat(dir, &st) != 0) {
		if (errno == ENOENT) {
			*missing = 1;
			return 0;
		}
		return io_error("reading", dir);
	}
	if (!S_ISDIR(st.st_mode))
		return P8V_ERR_EXISTS;
	if ((d = opendir(dir)) == NULL)
		return io_error("reading", dir);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0) {
			r = P8V_ERR_EXISTS;
			break;
		}
	}
	closedir(d);
	return r;
}

/* Copy all of in to out. */
static int
copy_fd(int in, int out, const char *from, const char *to)
{
	uint8_t *buf;
	ssize_t n, w;
	size_t off;
	int r = P8V_ERR_ALLOC;

	if ((buf = malloc(BACKUP_COPY_CHUNK)) == NULL)
		return r;
	for (;;) {
		n = read(in, buf, BACKUP_COPY_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = io_error("reading", from);
			goto out;
		}
		if (n == 0)
			break;
		for (off = 0; off < (size_t)n; off += (size_t)w) {
			w = write(out, buf + off, (size_t)n - off);
			if (w < 0 && errno == EINTR) {
				w = 0;
				continue;
			}
			if (w <= 0) {
				r = io_error("writing", to);
				goto out;
			}
		}
	}
	r = 0;
 out:
	free(buf);
	return r;
}

int
store_restore(const char *backup, const char *dir, int *created_dir)
{
	char data[BACKUP_PATH_MAX], tmp[BACKUP_PATH_MAX];
	uint8_t head[BACKUP_LMDB_MAGIC_OFFSET + 4];
	uint32_t magic;
	struct stat st;
	int in = -1, out = -1, missing = 0, made_dir = 0, made_tmp = 0;
	int r = P8V_ERR_INVALID_ARGUMENT;
	ssize_t n;

	if (created_dir != NULL)
		*created_dir = 0;
	if (backup == NULL || dir == NULL || *backup == '\0' || *dir == '\0')
		goto out;
	if ((size_t)snprintf(data, sizeof(data), "%s/%s", dir,
	    BACKUP_DATA_FILE) >= sizeof(data))
		goto out;

	if ((in = open(backup, O_RDONLY | O_CLOEXEC)) < 0) {
		r = errno == ENOENT ? P8V_ERR_NOT_FOUND :
		    io_error("opening", backup);
		goto out;
	}
	r = P8V_ERR_INTEGRITY;
	if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	n = pread(in, head, sizeof(head), 0);
	if (n != (ssize_t)sizeof(head))
		goto out;
	memcpy(&magic, head + BACKUP_LMDB_MAGIC_OFFSET, sizeof(magic));
	if (magic != BACKUP_LMDB_MAGIC)
		goto out;

	if ((r = check_target(dir, &missing)) != 0)
		goto out;
	if (missing) {
		if (mkdir(dir, 0700) != 0) {
			r = io_error("creating", dir);
			goto out;
		}
		made_dir = 1;
	}
	if ((r = create_temp(data, tmp, &out)) != 0) {
		made_tmp = out >= 0;
		goto out;
	}
	made_tmp = 1;
	if ((r = copy_fd(in, out, backup, tmp)) != 0)
		goto out;
	if (fsync(out) != 0) {
		r = io_error("syncing", tmp);
		goto out;
	}
	if (close(out) != 0) {
		out = -1;
		r = io_error("closing", tmp);
		goto out;
	}
	out = -1;
	if ((r = publish(tmp, data)) != 0)
		goto out;
	made_tmp = 0;
	if ((r = sync_dir(dir)) != 0)
		goto out;
	if (made_dir) {
		char parent[BACKUP_PATH_MAX];

		if ((r = dir_of(dir, parent)) != 0 ||
		    (r = sync_dir(parent)) != 0)
			goto out;
	}
	if (created_dir != NULL)
		*created_dir = made_dir;
	made_dir = 0;
	r = 0;
 out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (made_tmp)
		unlink(tmp);
	if (r != 0 && made_dir)
		store_restore_discard(dir, 1);
	return r;
}

void
store_restore_discard(const char *dir, int created_dir)
{
	/* The store's files, the room reserved for mints too (reserve.h):
	 * a restore the CLI opened and then refused leaves none. */
	static const char *const files[] = { BACKUP_DATA_FILE,
	    BACKUP_LOCK_FILE, STORE_RESERVE_FILE };
	char path[BACKUP_PATH_MAX];
	size_t i;

	if (dir == NULL)
		return;
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    files[i]) < sizeof(path))
			(void)unlink(path);
	if (created_dir)
		(void)rmdir(dir);
}
