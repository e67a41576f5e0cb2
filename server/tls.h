/*
 * tls.h: the certificate and key files of the HTTPS listeners.
 */
#ifndef P8V_SERVER_TLS_H
#define P8V_SERVER_TLS_H

#include <stddef.h>

/* Largest certificate chain or key file read: a chain of a few
 * certificates is a few KiB. */
#define TLS_FILE_MAX_BYTES (256 * 1024)

struct tls_files {
	char *cert_pem;            /* malloc'd, NUL-terminated */
	char *key_pem;             /* guarded memory, NUL-terminated */
	size_t key_len;
};

/*
 * Read cert_path into ordinary memory and key_path into guarded memory
 * (secmem_alloc). Symbolic links are followed (certificate tools publish
 * through them). The key file must be a regular file with no permission
 * for others (mode & 007 == 0; group-readable is allowed for a shared
 * ssl-cert group). On failure *out is empty (tls_files_finish is safe).
 * Returns 0, P8V_ERR_IO (unreadable: logged with the path and reason,
 * never the contents), P8V_ERR_INVALID_ARGUMENT (not a regular file, key
 * accessible by others, empty, holds a NUL byte), P8V_ERR_TOO_LARGE (over
 * TLS_FILE_MAX_BYTES), P8V_ERR_ALLOC (the certificate), P8V_ERR_SECMEM
 * (the key).
 */
int tls_files_load(const char *cert_path, const char *key_path,
    struct tls_files *out);

/* Wipe and free the key, free the certificate. NULL-safe. */
void tls_files_finish(struct tls_files *t);

#endif /* P8V_SERVER_TLS_H */
