/*
 * masterkey.h: master keys and the keyring that holds them.
 *
 * A master key is 32 random bytes kept in guarded memory. It is named by a
 * key id derived from the key itself, so a record can say which master key
 * sealed its data key without revealing anything about it:
 *
 *   id          = SHA-256("p8vault master key id v1" || key)[0..8)
 *   check value = HMAC-SHA-256(key, "p8vault master key check v1")  (32 bytes)
 *
 * The store keeps the check value of every master key it has used, so a
 * wrong key is refused at start-up rather than failing later to decrypt.
 */
#ifndef P8V_CRYPTO_MASTERKEY_H
#define P8V_CRYPTO_MASTERKEY_H

#include <stddef.h>
#include <stdint.h>

#define MASTER_KEY_BYTES 32
#define MASTER_KEY_ID_BYTES 8
#define MASTER_KEY_ID_HEX (MASTER_KEY_ID_BYTES * 2)
#define MASTER_KEY_CHECK_BYTES 32
/* At most this many master keys are loaded at once (old + new + spare). */
#define MASTER_KEYRING_MAX 8
/* Name of the systemd credential read from $CREDENTIALS_DIRECTORY. */
#define MASTER_KEY_CREDENTIAL "p8vault-master-key"

struct master_key;

/* Build a master key from 32 raw bytes (copied into guarded memory).
 * *out is set to NULL on failure. Returns 0, P8V_ERR_INVALID_ARGUMENT
 * (raw_len is not MASTER_KEY_BYTES, a NULL pointer), P8V_ERR_SECMEM,
 * P8V_ERR_CRYPTO. */
int master_key_create(const uint8_t *raw, size_t raw_len, struct master_key **out);

/*
 * Create a new random master key (32 bytes from secmem_random, OpenSSL's
 * DRBG seeded by the kernel) and write it to path as 64 lowercase hex
 * characters and a newline, with mode exactly 0600 (whatever the umask),
 * O_EXCL|O_NOFOLLOW (never overwrites, not even through a symlink), fsync'd
 * file and directory. On failure after the file was created it is removed.
 * The key passes only through guarded memory.
 * Returns 0, P8V_ERR_EXISTS (path exists, also as a dangling symlink),
 * P8V_ERR_IO, P8V_ERR_RANDOM, P8V_ERR_SECMEM, P8V_ERR_INVALID_ARGUMENT.
 */
int master_key_generate_file(const char *path);

/*
 * Load a master key from a file holding either exactly 32 raw bytes or 64
 * hex digits (either case; white space allowed before and after). Refused
 * with P8V_ERR_MASTER_KEY_FILE if path is a symbolic link (O_NOFOLLOW: the
 * last component only), is not a regular file, is owned by another user
 * than the process's effective one or root, has any permission bit for
 * group or others (mode & 077), is longer than 256 bytes, holds anything
 * else, or holds an all-zero key. The file's bytes pass only through
 * guarded memory. Refusals are logged with the path and the reason, never
 * the contents; a missing file is not logged (the caller may look
 * elsewhere). *out is set to NULL on failure.
 * Returns 0, P8V_ERR_NOT_FOUND (no such file), P8V_ERR_MASTER_KEY_FILE,
 * P8V_ERR_SECMEM, P8V_ERR_CRYPTO, P8V_ERR_INVALID_ARGUMENT.
 */
int master_key_load_file(const char *path, struct master_key **out);

/*
 * Load $CREDENTIALS_DIRECTORY/p8vault-master-key (systemd credentials; the
 * directory is private to the service, so the mode check is the same).
 * P8V_ERR_NOT_FOUND if the variable is unset or empty or the file does not
 * exist; otherwise as master_key_load_file.
 */
int master_key_load_credential(struct master_key **out);

/* Wipe and free a key. NULL-safe. */
void master_key_destroy(struct master_key *mk);

/* The key's id (MASTER_KEY_ID_BYTES) and its lowercase hex form. */
const uint8_t *master_key_id(const struct master_key *mk);
const char *master_key_id_hex(const struct master_key *mk);

/* The check value (MASTER_KEY_CHECK_BYTES) the store records. */
const uint8_t *master_key_check(const struct master_key *mk);

/* The raw key bytes, in guarded memory. Only crypto/ uses this. */
const uint8_t *master_key_bytes(const struct master_key *mk);

/* A keyring: the master keys loaded in this process; owns them. Not
 * locked: fill it at start-up (or under the caller's lock), then share it
 * read-only between threads. */
struct master_keyring;

/* 0, P8V_ERR_ALLOC, P8V_ERR_INVALID_ARGUMENT. */
int master_keyring_create(struct master_keyring **out);
/* Destroy the ring and every key in it. NULL-safe. */
void master_keyring_destroy(struct master_keyring *ring);

/* Add a key; the ring takes ownership (also on failure, the key is
 * destroyed). A key whose id is already present is dropped and 0 returned.
 * P8V_ERR_TOO_LARGE when MASTER_KEYRING_MAX keys are held,
 * P8V_ERR_INVALID_ARGUMENT for a NULL ring or key. */
int master_keyring_add(struct master_keyring *ring, struct master_key *mk);

size_t master_keyring_count(const struct master_keyring *ring);
/* The i-th key in the order added; NULL when i >= count. */
const struct master_key *master_keyring_get(const struct master_keyring *ring, size_t i);

/* The key with this id, or NULL. */
const struct master_key *master_keyring_find(const struct master_keyring *ring,
    const uint8_t id[MASTER_KEY_ID_BYTES]);

/* The key new seals use: the one set by master_keyring_set_primary (it
 * stays primary when more keys are added), else the most recently added
 * (a dropped duplicate does not count). NULL when the ring is empty.
 * master_keyring_set_primary returns 0, P8V_ERR_NOT_FOUND (no key with this
 * id in the ring) or P8V_ERR_INVALID_ARGUMENT. */
const struct master_key *master_keyring_primary(const struct master_keyring *ring);
int master_keyring_set_primary(struct master_keyring *ring,
    const uint8_t id[MASTER_KEY_ID_BYTES]);

#endif /* P8V_CRYPTO_MASTERKEY_H */
