/*
 * masterkey.c: master keys (in guarded memory), their key files and the
 * keyring.
 *
 * A whole struct master_key lives in one secmem_alloc block, so the key
 * bytes and everything derived from them sit behind guard pages, locked
 * and out of core dumps, and master_key_destroy wipes them all at once.
 */
#include "crypto/masterkey.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sodium.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/secmem.h"

/* Domain-separation strings of the id and the check value (no NUL). */
#define MASTER_KEY_ID_LABEL "p8vault master key id v1"
#define MASTER_KEY_CHECK_LABEL "p8vault master key check v1"
/* Length of the hex form of a key in a key file. */
#define MASTER_KEY_HEX_CHARS (MASTER_KEY_BYTES * 2)
/* Largest key file read: the hex form plus generous white space (editors,
 * CRLF line ends, indentation). Anything longer is not a key file. */
#define MASTER_KEY_FILE_MAX_BYTES 256

struct master_key {
	uint8_t key[MASTER_KEY_BYTES];
	uint8_t id[MASTER_KEY_ID_BYTES];
	char id_hex[MASTER_KEY_ID_HEX + 1];
	uint8_t check[MASTER_KEY_CHECK_BYTES];
};

struct master_keyring {
	struct master_key *keys[MASTER_KEYRING_MAX];
	size_t count;
	/* Set by master_keyring_set_primary; NULL: the last one added. */
	const struct master_key *primary;
};

/* id = SHA-256(label || key)[0..8), check = HMAC-SHA-256(key, label). */
static int
derive(struct master_key *mk)
{
	EVP_MD_CTX *md = NULL;
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	int r = P8V_ERR_CRYPTO;

	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, MASTER_KEY_ID_LABEL,
	    sizeof(MASTER_KEY_ID_LABEL) - 1) != 1 ||
	    EVP_DigestUpdate(md, mk->key, MASTER_KEY_BYTES) != 1 ||
	    EVP_DigestFinal_ex(md, digest, &len) != 1 ||
	    len != SHA256_DIGEST_LENGTH)
		goto out;
	memcpy(mk->id, digest, MASTER_KEY_ID_BYTES);
	sodium_bin2hex(mk->id_hex, sizeof(mk->id_hex), mk->id,
	    MASTER_KEY_ID_BYTES);
	len = 0;
	if (HMAC(EVP_sha256(), mk->key, MASTER_KEY_BYTES,
	    (const unsigned char *)MASTER_KEY_CHECK_LABEL,
	    sizeof(MASTER_KEY_CHECK_LABEL) - 1, mk->check, &len) == NULL ||
	    len != MASTER_KEY_CHECK_BYTES)
		goto out;
	r = 0;
 out:
	if (r != 0)
		ERR_clear_error();
	secmem_wipe(digest, sizeof(digest));
	EVP_MD_CTX_free(md);
	return r;
}

int
master_key_create(const uint8_t *raw, size_t raw_len, struct master_key **out)
{
	struct master_key *mk = NULL;
	int r = P8V_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (raw == NULL || out == NULL || raw_len != MASTER_KEY_BYTES) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if ((mk = secmem_alloc(sizeof(*mk))) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	memset(mk, 0, sizeof(*mk));
	memcpy(mk->key, raw, MASTER_KEY_BYTES);
	if ((r = derive(mk)) != 0)
		goto out;
	*out = mk;
	mk = NULL;
	r = 0;
 out:
	master_key_destroy(mk);
	return r;
}

void
master_key_destroy(struct master_key *mk)
{
	/* secmem_free wipes the whole block. */
	secmem_free(mk);
}

const uint8_t *
master_key_id(const struct master_key *mk)
{
	return mk->id;
}

const char *
master_key_id_hex(const struct master_key *mk)
{
	return mk->id_hex;
}

const uint8_t *
master_key_check(const struct master_key *mk)
{
	return mk->check;
}

const uint8_t *
master_key_bytes(const struct master_key *mk)
{
	return mk->key;
}

static int
is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
	    c == '\f';
}

/*
 * Turn a key file's contents into the 32 key bytes: exactly 32 bytes are
 * the raw key; otherwise, after trimming white space at both ends, exactly
 * 64 hex digits (sodium_hex2bin decodes in constant time). An all-zero key
 * (a file from /dev/zero or truncate) is refused.
 */
static int
parse_key_file(const uint8_t *buf, size_t len, uint8_t key[MASTER_KEY_BYTES],
    const char **why)
{
	const char *end = NULL;
	size_t start = 0, n = len, bin_len = 0;

	*why = "want 32 raw bytes or 64 hex digits";
	if (len == MASTER_KEY_BYTES) {
		memcpy(key, buf, MASTER_KEY_BYTES);
	} else {
		while (start < n && is_space(buf[start]))
			start++;
		while (n > start && is_space(buf[n - 1]))
			n--;
		if (n - start != MASTER_KEY_HEX_CHARS)
			return P8V_ERR_MASTER_KEY_FILE;
		if (sodium_hex2bin(key, MASTER_KEY_BYTES,
		    (const char *)buf + start, MASTER_KEY_HEX_CHARS, NULL,
		    &bin_len, &end) != 0 || bin_len != MASTER_KEY_BYTES ||
		    end != (const char *)buf + n) {
			secmem_wipe(key, MASTER_KEY_BYTES);
			return P8V_ERR_MASTER_KEY_FILE;
		}
	}
	if (sodium_is_zero(key, MASTER_KEY_BYTES)) {
		*why = "the key is all zeros";
		return P8V_ERR_MASTER_KEY_FILE;
	}
	return 0;
}

int
master_key_load_file(const char *path, struct master_key **out)
{
	struct stat st;
	const char *why = NULL;
	uint8_t *buf = NULL, *key = NULL;
	size_t len = 0;
	ssize_t got;
	int fd = -1, r = P8V_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (path == NULL || out == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	/* O_NONBLOCK: a FIFO planted at path must not hang start-up; it is
	 * refused by the fstat below and means nothing for a regular file. */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
	    O_NONBLOCK);
	if (fd < 0 && errno == ENOENT) {
		/* Not logged: the caller may have another place to look. */
		r = P8V_ERR_NOT_FOUND;
		goto out;
	}
	if (fd < 0) {
		r = P8V_ERR_MASTER_KEY_FILE;
		log_errorf("master_key_load", "cannot open master key file %s: "
		    "%s", path, errno == ELOOP ? "it is a symbolic link" :
		    strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		r = P8V_ERR_MASTER_KEY_FILE;
		log_errorf("master_key_load", "cannot stat %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = P8V_ERR_MASTER_KEY_FILE;
		log_errorf("master_key_load", "%s is not a regular file", path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		r = P8V_ERR_MASTER_KEY_FILE;
		log_errorf("master_key_load", "%s has mode %04o; group and "
		    "others must have no access (chmod 600)", path,
		    (unsigned)(st.st_mode & 07777));
		goto out;
	}
	/* Whoever owns the file can change its mode and contents: only this
	 * process's user (the daemon's) or root may. */
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		r = P8V_ERR_MASTER_KEY_FILE;
		log_errorf("master_key_load", "%s is owned by uid %lu; a "
		    "master key file must be owned by this process's user "
		    "(uid %lu) or root", path, (unsigned long)st.st_uid,
		    (unsigned long)geteuid());
		goto out;
	}
	/* One byte more than allowed, to notice a file that is too long. */
	if ((buf = secmem_alloc(MASTER_KEY_FILE_MAX_BYTES + 1)) == NULL ||
	    (key = secmem_alloc(MASTER_KEY_BYTES)) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	while (len < MASTER_KEY_FILE_MAX_BYTES + 1) {
		got = read(fd, buf + len, MASTER_KEY_FILE_MAX_BYTES + 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = P8V_ERR_MASTER_KEY_FILE;
			log_errorf("master_key_load", "cannot read %s: %s", path,
			    strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	if ((r = parse_key_file(buf, len, key, &why)) != 0) {
		/* Its size and what is wrong; never the contents. */
		log_errorf("master_key_load", "%s is not a master key file "
		    "(%s%zu bytes): %s", path,
		    len > MASTER_KEY_FILE_MAX_BYTES ? "over " : "",
		    len > MASTER_KEY_FILE_MAX_BYTES ?
		    (size_t)MASTER_KEY_FILE_MAX_BYTES : len, why);
		goto out;
	}
	if ((r = master_key_create(key, MASTER_KEY_BYTES, out)) != 0)
		goto out;
	r = 0;
 out:
	if (fd >= 0)
		close(fd);
	secmem_free(buf);
	secmem_free(key);
	return r;
}

int
master_key_load_credential(struct master_key **out)
{
	const char *dir;
	char path[PATH_MAX];
	int n;

	if (out != NULL)
		*out = NULL;
	if (out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* secure_getenv: a set-id program never trusts the environment. */
	if ((dir = secure_getenv("CREDENTIALS_DIRECTORY")) == NULL ||
	    *dir == '\0')
		return P8V_ERR_NOT_FOUND;
	n = snprintf(path, sizeof(path), "%s/%s", dir, MASTER_KEY_CREDENTIAL);
	if (n < 0 || (size_t)n >= sizeof(path))
		return P8V_ERR_MASTER_KEY_FILE;
	return master_key_load_file(path, out);
}

/* write(2) all of buf, retrying short writes and EINTR. */
static int
write_all(int fd, const uint8_t *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* fsync the directory that holds path, so the new name survives a crash. */
static int
sync_parent_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = NULL;
	int fd = -1, r = -1;

	if (slash == NULL)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (dir == NULL)
		goto out;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		goto out;
	if (fsync(fd) != 0)
		goto out;
	r = 0;
 out:
	if (fd >= 0)
		close(fd);
	free(dir);
	return r;
}

int
master_key_generate_file(const char *path)
{
	/* What is written: 64 hex digits and a newline. The buffer has one
	 * byte more for the NUL sodium_bin2hex puts after the digits. */
	const size_t text_len = MASTER_KEY_HEX_CHARS + 1;
	uint8_t *key = NULL;
	char *text = NULL;
	int fd = -1, created = 0, r = P8V_ERR_INTERNAL;

	if (path == NULL || *path == '\0')
		return P8V_ERR_INVALID_ARGUMENT;
	if ((key = secmem_alloc(MASTER_KEY_BYTES)) == NULL ||
	    (text = secmem_alloc(text_len + 1)) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	if ((r = secmem_random(key, MASTER_KEY_BYTES)) != 0)
		goto out;
	sodium_bin2hex(text, text_len + 1, key, MASTER_KEY_BYTES);
	text[MASTER_KEY_HEX_CHARS] = '\n';

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC |
	    O_NOCTTY, 0600);
	if (fd < 0) {
		r = errno == EEXIST ? P8V_ERR_EXISTS : P8V_ERR_IO;
		log_errorf("master_key_generate", "cannot create %s: %s", path,
		    strerror(errno));
		goto out;
	}
	created = 1;
	/* The umask can only take bits away; make the mode exactly 0600 even
	 * under a umask that would leave the owner unable to read it. */
	if (fchmod(fd, 0600) != 0 ||
	    write_all(fd, (const uint8_t *)text, text_len) != 0 ||
	    fsync(fd) != 0) {
		r = P8V_ERR_IO;
		log_errorf("master_key_generate", "cannot write %s: %s", path,
		    strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		r = P8V_ERR_IO;
		log_errorf("master_key_generate", "cannot close %s: %s", path,
		    strerror(errno));
		goto out;
	}
	fd = -1;
	if (sync_parent_dir(path) != 0) {
		r = P8V_ERR_IO;
		log_errorf("master_key_generate", "cannot sync the directory "
		    "of %s: %s", path, strerror(errno));
		goto out;
	}
	r = 0;
 out:
	if (fd >= 0)
		close(fd);
	/* A half-written key file is worse than none: the O_EXCL create
	 * made it ours, so take it away again. */
	if (r != 0 && created)
		unlink(path);
	secmem_free(key);
	secmem_free(text);
	return r;
}

int
master_keyring_create(struct master_keyring **out)
{
	if (out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((*out = calloc(1, sizeof(**out))) == NULL)
		return P8V_ERR_ALLOC;
	return 0;
}

void
master_keyring_destroy(struct master_keyring *ring)
{
	size_t i;

	if (ring == NULL)
		return;
	for (i = 0; i < ring->count; i++)
		master_key_destroy(ring->keys[i]);
	free(ring);
}

int
master_keyring_add(struct master_keyring *ring, struct master_key *mk)
{
	int r = P8V_ERR_INTERNAL;

	if (ring == NULL || mk == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	/* Ids are 64 bits of SHA-256 of the key: equal ids mean the same key
	 * (a collision among a handful of random keys is out of reach). */
	if (master_keyring_find(ring, mk->id) != NULL) {
		r = 0;
		goto out;
	}
	if (ring->count >= MASTER_KEYRING_MAX) {
		r = P8V_ERR_TOO_LARGE;
		goto out;
	}
	ring->keys[ring->count++] = mk;
	mk = NULL;
	r = 0;
 out:
	/* Ownership passed to us in every case: keep it or destroy it. */
	master_key_destroy(mk);
	return r;
}

size_t
master_keyring_count(const struct master_keyring *ring)
{
	return ring == NULL ? 0 : ring->count;
}

const struct master_key *
master_keyring_get(const struct master_keyring *ring, size_t i)
{
	if (ring == NULL || i >= ring->count)
		return NULL;
	return ring->keys[i];
}

const struct master_key *
master_keyring_find(const struct master_keyring *ring,
    const uint8_t id[MASTER_KEY_ID_BYTES])
{
	size_t i;

	if (ring == NULL || id == NULL)
		return NULL;
	/* Ids are public (they are stored in every envelope): memcmp is
	 * fine here. */
	for (i = 0; i < ring->count; i++)
		if (memcmp(ring->keys[i]->id, id, MASTER_KEY_ID_BYTES) == 0)
			return ring->keys[i];
	return NULL;
}

const struct master_key *
master_keyring_primary(const struct master_keyring *ring)
{
	if (ring == NULL || ring->count == 0)
		return NULL;
	if (ring->primary != NULL)
		return ring->primary;
	return ring->keys[ring->count - 1];
}

int
master_keyring_set_primary(struct master_keyring *ring,
    const uint8_t id[MASTER_KEY_ID_BYTES])
{
	const struct master_key *mk;

	if (ring == NULL || id == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((mk = master_keyring_find(ring, id)) == NULL)
		return P8V_ERR_NOT_FOUND;
	ring->primary = mk;
	return 0;
}
