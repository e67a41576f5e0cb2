/* errors.c: P8V_ERR_* -> HTTP status, in one table, and the error body. */
#include "api/errors.h"

#include <stddef.h>

#include "common/err.h"

/* HTTP statuses used below that are not in every client's vocabulary. */
#define HTTP_UNPROCESSABLE 422      /* RFC 9110: well-formed, but invalid */
#define HTTP_INSUFFICIENT_STORAGE 507 /* RFC 4918 */
#define HTTP_TOO_MANY_REQUESTS 429  /* RFC 6585 */

/* Seconds a client is told to wait (Retry-After) before it tries again
 * when a networked store cannot be reached: about one leader election of
 * a store cluster (etcd's election timeout is one second by default). */
#define STORE_RETRY_AFTER_S 1
/* A restarted keeper is ready within 2 s (keeper/client.c). */
#define KEEPER_RETRY_AFTER_S 1
/* Seconds a client over a connection limit is told to wait: connections
 * of the signing and upload APIs last milliseconds. */
#define CONNECTIONS_RETRY_AFTER_S 1
/* Seconds a client is told to wait when the locked-memory budget is spent
 * (503 busy): the bodies and keys holding it live for one request. */
#define BUSY_RETRY_AFTER_S 1
/* Seconds a token over its upload rate is told to wait: the rate's
 * window, an upper bound (vault/quota.c counts per minute). */
#define RATE_RETRY_AFTER_S 60

struct status_entry {
	int err;
	unsigned int status;
};

/*
 * Every code a client can act on, and its status. A code missing here is
 * answered 500 internal_error with no detail: INTERNAL, ALLOC,
 * INVALID_ARGUMENT (a caller's bug, not the client's), INTEGRITY, SECMEM,
 * RANDOM, CRYPTO, IO, STORE, STORE_VERSION and the master-key codes.
 */
static const struct status_entry status_table[] = {
	{ P8V_ERR_UNSUPPORTED, 400 },
	{ P8V_ERR_TOO_LARGE, 413 },
	{ P8V_ERR_NOT_FOUND, 404 },
	{ P8V_ERR_EXISTS, 409 },
	{ P8V_ERR_BUSY, 503 },
	/* .p8 validation: the upload itself is wrong. */
	{ P8V_ERR_P8_TOO_LARGE, 400 },
	{ P8V_ERR_P8_NOT_PEM, 400 },
	{ P8V_ERR_P8_BAD_BASE64, 400 },
	{ P8V_ERR_P8_CERTIFICATE, 400 },
	{ P8V_ERR_P8_PUBLIC_KEY, 400 },
	{ P8V_ERR_P8_ENCRYPTED, 400 },
	{ P8V_ERR_P8_WRONG_KEY_TYPE, 400 },
	{ P8V_ERR_P8_WRONG_CURVE, 400 },
	{ P8V_ERR_P8_EXPLICIT_CURVE, 400 },
	{ P8V_ERR_P8_BAD_SCALAR, 400 },
	{ P8V_ERR_P8_PUBKEY_MISMATCH, 400 },
	{ P8V_ERR_P8_TRAILING_DATA, 400 },
	{ P8V_ERR_P8_MULTIPLE_KEYS, 400 },
	{ P8V_ERR_P8_MALFORMED, 400 },
	{ P8V_ERR_P8_NOT_PKCS8, 400 },
	{ P8V_ERR_P8_MISPLACED, 400 },
	/* Identifiers and fields: syntactically a request, semantically not. */
	{ P8V_ERR_BAD_APP_ID, HTTP_UNPROCESSABLE },
	{ P8V_ERR_BAD_KEY_ID, HTTP_UNPROCESSABLE },
	{ P8V_ERR_BAD_TEAM_ID, HTTP_UNPROCESSABLE },
	{ P8V_ERR_BAD_FIELD, HTTP_UNPROCESSABLE },
	/* A well-formed body without a required member, or with one the
	 * route does not take (upload and signing alike). */
	{ P8V_ERR_MISSING_FIELD, HTTP_UNPROCESSABLE },
	{ P8V_ERR_UNKNOWN_FIELD, HTTP_UNPROCESSABLE },
	{ P8V_ERR_NO_SPACE, HTTP_INSUFFICIENT_STORAGE },
	/* The store cannot be reached (a networked backend): the request
	 * changed nothing and may be sent again. */
	{ P8V_ERR_STORE_UNAVAILABLE, 503 },
	/* The keeper process died and is being started again: nothing
	 * changed, and it is back within a second or two. */
	{ P8V_ERR_KEEPER_UNAVAILABLE, 503 },
	/* Keys and signing. */
	{ P8V_ERR_KEY_EXISTS, 409 },
	{ P8V_ERR_KEY_IDENTITY_CONFLICT, 409 },
	{ P8V_ERR_KEY_REVOKED, 410 },
	{ P8V_ERR_NO_ACTIVE_KEY, 404 },
	{ P8V_ERR_APP_NOT_FOUND, 404 },
	{ P8V_ERR_KEY_NOT_FOUND, 404 },
	{ P8V_ERR_SERVICE_NOT_ALLOWED, 403 },
	/* HTTP requests. */
	{ P8V_ERR_BAD_REQUEST, 400 },
	{ P8V_ERR_METHOD_NOT_ALLOWED, 405 },
	{ P8V_ERR_NOT_READY, 503 },
	{ P8V_ERR_UNAUTHORIZED, 401 },
	{ P8V_ERR_FORBIDDEN, 403 },
	{ P8V_ERR_UNSUPPORTED_MEDIA_TYPE, 415 },
	/* Uploads (api/upload.c): the file name AuthKey_<KEYID>.p8 names
	 * another Key ID than the request (the upload issue asks for 400). */
	{ P8V_ERR_KEY_ID_MISMATCH, 400 },
	/* The key check with Apple (vault/check.c): APNs is the upstream of
	 * this request (RFC 9110: 502 and 504 name a failed upstream), and
	 * an upload whose check APNs refused is well-formed but invalid. */
	{ P8V_ERR_APPLE_UNREACHABLE, 502 },
	{ P8V_ERR_APPLE_TIMEOUT, 504 },
	{ P8V_ERR_APPLE_CHECK_FAILED, HTTP_UNPROCESSABLE },
	/* Tenant isolation: over the per-address or total connection limit
	 * of a listener. */
	{ P8V_ERR_TOO_MANY_CONNECTIONS, 503 },
	/* Quotas: a count a tenant reached (the request is valid, the
	 * vault will not take more of it), and a rate. */
	{ P8V_ERR_TOO_MANY_KEYS, HTTP_UNPROCESSABLE },
	{ P8V_ERR_TOO_MANY_APPS, HTTP_UNPROCESSABLE },
	{ P8V_ERR_VAULT_FULL, HTTP_UNPROCESSABLE },
	{ P8V_ERR_RATE_LIMITED, HTTP_TOO_MANY_REQUESTS },
};

/* The errors whose answer tells the client when to try again: each also
 * in status_table, as a 503. */
static const struct {
	int err;
	unsigned int seconds;
} retry_table[] = {
	{ P8V_ERR_STORE_UNAVAILABLE, STORE_RETRY_AFTER_S },
	{ P8V_ERR_KEEPER_UNAVAILABLE, KEEPER_RETRY_AFTER_S },
	{ P8V_ERR_TOO_MANY_CONNECTIONS, CONNECTIONS_RETRY_AFTER_S },
	{ P8V_ERR_BUSY, BUSY_RETRY_AFTER_S },
	{ P8V_ERR_RATE_LIMITED, RATE_RETRY_AFTER_S },
};

unsigned int
api_error_status(int err)
{
	size_t i;

	if (err == 0)
		return 200;
	for (i = 0; i < sizeof(status_table) / sizeof(status_table[0]); i++)
		if (status_table[i].err == err)
			return status_table[i].status;
	return 500;
}

unsigned int
api_error_retry_after(int err)
{
	size_t i;

	for (i = 0; i < sizeof(retry_table) / sizeof(retry_table[0]); i++)
		if (retry_table[i].err == err)
			return retry_table[i].seconds;
	return 0;
}

const char *
api_error_code(int err)
{
	if (api_error_status(err) == 500)
		return "internal_error";
	return p8v_errname(err);
}

json_t *
api_error_body(int err, const char *detail)
{
	const char *message;

	if (api_error_status(err) == 500)
		message = "internal error";
	else if (detail != NULL)
		message = detail;
	else
		message = p8v_strerror(err);
	return json_pack("{s:{s:s, s:s}}", "error", "code", api_error_code(err),
	    "message", message);
}
