/*
 * reserve.h: room on the state directory's file system kept for APNs
 * token mints (issue 15, tenant isolation): a full disk must not stop
 * token renewals for keys already stored.
 *
 * A file, STORE_RESERVE_FILE in the state directory, holds
 * STORE_RESERVE_BYTES of allocated blocks. A write that may use the
 * reserve (store_write_reserved: a mint's sealed token and audit event)
 * and fails for want of space frees a chunk of it and runs again. Any
 * other write first makes the reserve whole again, and is refused
 * (P8V_ERR_NO_SPACE, nothing run) when the file system cannot give the
 * blocks back: uploads never eat the room mints were given. Internal to
 * store/.
 */
#ifndef P8V_STORE_RESERVE_H
#define P8V_STORE_RESERVE_H

#include <stddef.h>

/* The reserve's file, in the state directory, mode 0600. */
#define STORE_RESERVE_FILE "mint.reserve"
/* Room for thousands of mints: each commits a sealed token (~0.5 KiB) and
 * an audit event (~0.5 KiB) on a few copied-on-write LMDB pages, most of
 * which LMDB takes back from its free list. */
#define STORE_RESERVE_BYTES (1024 * 1024)
/* What a failed reserved write frees at once. */
#define STORE_RESERVE_CHUNK (64 * 1024)

struct store_reserve;

/* Open (creating) the reserve of dir and allocate it as far as the file
 * system allows (a full disk: what it has). NULL when the file cannot be
 * opened (logged): the store then runs without one. */
struct store_reserve *store_reserve_open(const char *dir);

/* Close; the file stays. NULL-safe. */
void store_reserve_close(struct store_reserve *rs);

/* Make the reserve whole. 0, or P8V_ERR_NO_SPACE if the file system has
 * not the blocks. Cheap while it is whole. NULL-safe (0). */
int store_reserve_refill(struct store_reserve *rs);

/* Free a chunk for a reserved write that found no space: 0 if one was
 * freed, P8V_ERR_NO_SPACE if the reserve is spent (or the file system
 * was not full: the want of space was elsewhere, the map). */
int store_reserve_release(struct store_reserve *rs);

/* Bytes the reserve holds now. */
size_t store_reserve_bytes(struct store_reserve *rs);

#endif /* P8V_STORE_RESERVE_H */
