/*
 * export.h: a logical export of a whole store to one file, and its import
 * into a new, empty store: the way between backends (LMDB today, etcd
 * next) and between machines whatever their backend.
 *
 * The file holds every entry of every database (keys, creds, cache,
 * audit, meta) exactly as stored: sealed envelopes and clear metadata,
 * never a key in the clear. Like a backup it is useless without the master
 * key(s) its records are sealed under, and as sensitive as a backup.
 *
 * Format, version 1 (docs/security.md; integers big-endian):
 *
 *   header   "P8VXPORT" (8 bytes), format version u32 (1),
 *            schema version u32 (STORE_SCHEMA_VERSION of the source)
 *   entries  for each database in enum store_db order, each entry in key
 *            order: db u8 (0..4), key length u16 (1..STORE_MAX_KEY_BYTES),
 *            value length u32 (0..STORE_EXPORT_MAX_VALUE), key, value
 *   end      0xFF u8, number of entries u64,
 *            SHA-256 (32 bytes) of every byte before it; nothing after
 *
 * Entries are strictly ascending by (db, key), which an importer checks,
 * so no key appears twice.
 */
#ifndef P8V_STORE_EXPORT_H
#define P8V_STORE_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_EXPORT_MAGIC "P8VXPORT"
#define STORE_EXPORT_MAGIC_BYTES 8
/* The format this code writes and reads. */
#define STORE_EXPORT_VERSION 1
/* The end marker's tag (no database has this number). */
#define STORE_EXPORT_END 0xFF
#define STORE_EXPORT_SHA256_BYTES 32
/* Largest value an import accepts: far above any entry p8vault writes (a
 * key record is under 4 KiB), small enough that a damaged length cannot
 * make the import allocate without bound. */
#define STORE_EXPORT_MAX_VALUE ((uint32_t)1 << 24)
/* An import writes at most this many entries, and this many bytes of keys
 * and values, per transaction (fewer if the backend's store_limits says
 * so): inside etcd's default 128 operations and 1.5 MiB request. */
#define STORE_IMPORT_BATCH_OPS 64
#define STORE_IMPORT_BATCH_BYTES ((size_t)1 << 20)
/* Room for the one line that says why a file was refused. */
#define STORE_EXPORT_WHY_BYTES 160

struct store_export_info {
	uint64_t entries[STORE_DB_COUNT]; /* per database */
	uint64_t total;                   /* all entries */
	uint64_t bytes;                   /* the file's size */
	uint8_t sha256[STORE_EXPORT_SHA256_BYTES]; /* its checksum */
	char why[STORE_EXPORT_WHY_BYTES]; /* import: why it was refused,
	                                     or "" */
};

/*
 * Export every entry of store, from one consistent snapshot (a read
 * transaction: other threads and processes go on reading and writing), to
 * the new file path (mode 0600, written to a temporary name, fsync'd and
 * renamed: store_file_create; an existing file is never replaced). info
 * (may be NULL) gets the counts, size and checksum.
 * Returns 0, P8V_ERR_EXISTS, P8V_ERR_IO, P8V_ERR_NO_SPACE,
 * P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC, P8V_ERR_INTERNAL (inside a
 * transaction), P8V_ERR_STORE.
 */
int store_export(struct store *store, const char *path,
    struct store_export_info *info);

/*
 * Check the file at path whole (format, version, lengths, order, count and
 * checksum) without touching any store. info (may be NULL) gets the counts
 * and checksum, or in why the reason for a refusal.
 * Returns 0, P8V_ERR_NOT_FOUND (no such file), P8V_ERR_INTEGRITY (not an
 * export, truncated, damaged or altered), P8V_ERR_UNSUPPORTED (another
 * format version), P8V_ERR_STORE_VERSION (another schema version),
 * P8V_ERR_IO, P8V_ERR_ALLOC, P8V_ERR_INVALID_ARGUMENT.
 */
int store_export_check(const char *path, struct store_export_info *info);

/*
 * Import the file at path into store, which must be empty (as store_open
 * leaves a new one: nothing but the schema version). The whole file is
 * checked first (store_export_check), so a refused file changes nothing;
 * then it is read again and written in batches of at most
 * STORE_IMPORT_BATCH_OPS entries and STORE_IMPORT_BATCH_BYTES bytes (or the
 * backend's smaller limits), each entry with STORE_PUT_NO_OVERWRITE. If
 * writing fails, or the file changed between the two readings, what was
 * written is cleared again (best effort), leaving the store empty.
 * info (may be NULL) as store_export_check.
 * Returns 0, P8V_ERR_EXISTS (store not empty), the errors of
 * store_export_check, and those of store_write.
 */
int store_import(struct store *store, const char *path,
    struct store_export_info *info);

#endif /* P8V_STORE_EXPORT_H */
