/* tls.c: load the HTTPS certificate and key; the key stays in guarded
 * memory until libmicrohttpd has parsed it. */
#include "server/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/secmem.h"

/*
 * Read path into a buffer from alloc (malloc or secmem_alloc), NUL
 * appended. secret: the key (mode check, guarded memory).
 */
static int
read_pem(const char *path, int secret, char **out, size_t *out_len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0, size;
	ssize_t n;
	int fd = -1, r = P8V_ERR_IO;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
		log_errorf("tls", "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		log_errorf("tls", "%s: not a non-empty regular file", path);
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if (secret && (st.st_mode & 007) != 0) {
		log_errorf("tls", "%s: the TLS key is accessible by others "
		    "(mode %04o); chmod o= it", path,
		    (unsigned int)(st.st_mode & 07777));
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if (st.st_size > TLS_FILE_MAX_BYTES) {
		log_errorf("tls", "%s: larger than %d bytes", path,
		    TLS_FILE_MAX_BYTES);
		r = P8V_ERR_TOO_LARGE;
		goto out;
	}
	size = (size_t)st.st_size;
	buf = secret ? secmem_alloc(size + 1) : malloc(size + 1);
	if (buf == NULL) {
		r = secret ? P8V_ERR_SECMEM : P8V_ERR_ALLOC;
		goto out;
	}
	while (got < size) {
		n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_errorf("tls", "%s: short read", path);
			goto out;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (memchr(buf, '\0', got) != NULL) {
		log_errorf("tls", "%s: holds a NUL byte: not PEM", path);
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*out = buf;
	*out_len = got;
	buf = NULL;
	r = 0;
 out:
	if (buf != NULL) {
		if (secret)
			secmem_free(buf);
		else
			free(buf);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

int
tls_files_load(const char *cert_path, const char *key_path,
    struct tls_files *out)
{
	size_t cert_len;
	int r = P8V_ERR_INTERNAL;

	if (out == NULL || cert_path == NULL || key_path == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	memset(out, 0, sizeof(*out));
	if ((r = read_pem(cert_path, 0, &out->cert_pem, &cert_len)) != 0 ||
	    (r = read_pem(key_path, 1, &out->key_pem, &out->key_len)) != 0)
		goto out;
	r = 0;
 out:
	if (r != 0)
		tls_files_finish(out);
	return r;
}

void
tls_files_finish(struct tls_files *t)
{
	if (t == NULL)
		return;
	secmem_free(t->key_pem);      /* wipes */
	free(t->cert_pem);
	memset(t, 0, sizeof(*t));
}
