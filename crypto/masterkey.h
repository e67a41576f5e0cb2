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

/* Build a master key from 32 raw bytes (copied into guarded memory). */
int master_key_create(const uint8_t *raw, size_t raw_len, struct master_key **out);

/*
 * Create a new random master key (32 bytes from the OS CSPRNG) and write it
 * to path as 64 lowercase hex characters and a newline, with mode 0600,
 * O_EXCL (never overwrites), fsync'd file and directory.
 * Returns 0, P8V_ERR_EXISTS, P8V_ERR_IO, P8V_ERR_RANDOM.
 */
int master_key_generate_file(const char *path);

/*
 * Load a master key from a file holding either 32 raw bytes or 64 hex
 * characters (surrounding white space allowed). Refused with
 * P8V_ERR_MASTER_KEY_FILE if the file is not a regular file, is readable or
 * writable by group or others, or holds anything else. The file's bytes pass
 * only through guarded memory.
 */
int master_key_load_file(const char *path, struct master_key **out);

/*
 * Load $CREDENTIALS_DIRECTORY/p8vault-master-key (systemd credentials; the
 * directory is private to the service, so the mode check is the same).
 * P8V_ERR_NOT_FOUND if the variable is unset or the file does not exist.
 */
int master_key_load_credential(struct master_key **out);

void master_key_destroy(struct master_key *mk);

/* The key's id (MASTER_KEY_ID_BYTES) and its lowercase hex form. */
const uint8_t *master_key_id(const struct master_key *mk);
const char *master_key_id_hex(const struct master_key *mk);

/* The check value (MASTER_KEY_CHECK_BYTES) the store records. */
const uint8_t *master_key_check(const struct master_key *mk);

/* The raw key bytes, in guarded memory. Only crypto/ uses this. */
const uint8_t *master_key_bytes(const struct master_key *mk);

/* A keyring: the master keys loaded in this process; owns them. */
struct master_keyring;

int master_keyring_create(struct master_keyring **out);
void master_keyring_destroy(struct master_keyring *ring);

/* Add a key; the ring takes ownership (also on failure, the key is
 * destroyed). A key whose id is already present is dropped and 0 returned.
 * P8V_ERR_TOO_LARGE when MASTER_KEYRING_MAX keys are held. */
int master_keyring_add(struct master_keyring *ring, struct master_key *mk);

size_t master_keyring_count(const struct master_keyring *ring);
const struct master_key *master_keyring_get(const struct master_keyring *ring, size_t i);

/* The key with this id, or NULL. */
const struct master_key *master_keyring_find(const struct master_keyring *ring,
    const uint8_t id[MASTER_KEY_ID_BYTES]);

/* The key new seals use: the one set by master_keyring_set_primary, else the
 * most recently added. NULL when the ring is empty. */
const struct master_key *master_keyring_primary(const struct master_keyring *ring);
int master_keyring_set_primary(struct master_keyring *ring,
    const uint8_t id[MASTER_KEY_ID_BYTES]);

#endif /* P8V_CRYPTO_MASTERKEY_H */
