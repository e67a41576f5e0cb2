/*
 * backup.h: backups of a state directory, and restoring one.
 *
 * A backup is one file: a compacted LMDB data file (store_copy_fd) taken
 * from one consistent snapshot while other processes (the daemon) go on
 * reading and writing. It holds exactly what the store holds: sealed
 * envelopes and clear metadata, never a key in the clear; it is useless
 * without the master key(s) its records are sealed under. Restoring puts
 * it back as the data file of a new state directory.
 *
 * Files are written to a temporary name in the target directory, fsync'd,
 * then given their name with a rename that never replaces an existing file
 * (renameat2 RENAME_NOREPLACE, or link(2) where the file system lacks it),
 * and the directory is fsync'd: a crash leaves either no file under the
 * name or a complete one, never a partial backup that looks whole.
 */
#ifndef P8V_STORE_BACKUP_H
#define P8V_STORE_BACKUP_H

#include "store/store.h"

/*
 * Create the new file path (mode 0600, whatever the umask) as described
 * above: fill(fd, arg) writes the content to a temporary file beside path
 * (fd at offset 0, empty; fill may truncate and rewrite it), which is then
 * fsync'd, named path without ever replacing an existing file, and the
 * directory fsync'd. On failure neither path nor the temporary file is
 * left. Returns 0, fill's error, P8V_ERR_EXISTS, P8V_ERR_IO (logged with
 * the path), P8V_ERR_NO_SPACE, P8V_ERR_INVALID_ARGUMENT.
 */
int store_file_create(const char *path, int (*fill)(int fd, void *arg),
    void *arg);

/*
 * Write a backup of store to path (mode 0600, whatever the umask). path
 * must not exist: an existing file (or symbolic link) is never replaced.
 * Returns 0, P8V_ERR_EXISTS, P8V_ERR_IO (the directory cannot be written,
 * a write or fsync failed: logged with the path), P8V_ERR_NO_SPACE,
 * P8V_ERR_INVALID_ARGUMENT, P8V_ERR_STORE, P8V_ERR_INTERNAL (inside a
 * transaction), P8V_ERR_UNSUPPORTED (a backend without a hot copy).
 */
int store_backup(struct store *store, const char *path);

/*
 * Restore the backup file at backup as the data file of the state
 * directory dir, which must not exist (it is created with mode 0700) or be
 * an empty directory. *created_dir (may be NULL) is set to 1 if dir was
 * created. Only copies and syncs: open the result with store_open and
 * check it (the master keys, vault_verify) before serving from it, and
 * undo with store_restore_discard if it does not check out.
 * Returns 0, P8V_ERR_NOT_FOUND (no backup file), P8V_ERR_INTEGRITY (the
 * file is not an LMDB data file), P8V_ERR_EXISTS (dir is not empty, or not
 * a directory), P8V_ERR_IO (logged with the path), P8V_ERR_NO_SPACE,
 * P8V_ERR_INVALID_ARGUMENT.
 */
int store_restore(const char *backup, const char *dir, int *created_dir);

/*
 * Undo store_restore: remove the data and lock files from dir, and dir
 * itself if created_dir. Close any store opened on dir first. Best effort.
 */
void store_restore_discard(const char *dir, int created_dir);

#endif /* P8V_STORE_BACKUP_H */
