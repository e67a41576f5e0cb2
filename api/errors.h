/*
 * errors.h: the one table that maps P8V_ERR_* codes to HTTP statuses, and
 * the JSON error body every failed request gets:
 *
 *   {"error": {"code": "<p8v_errname(err)>", "message": "<text>"}}
 *
 * Codes that map to 500 are answered as {"code": "internal_error",
 * "message": "internal error"} whatever the underlying failure: a client
 * cannot act on it and must not learn internals from it (the failure is in
 * the daemon's log instead).
 */
#ifndef P8V_API_ERRORS_H
#define P8V_API_ERRORS_H

#include <jansson.h>

/*
 * The HTTP status for err: 200 for 0, the table's status for a known code,
 * 500 for anything else (including unknown and positive values).
 */
unsigned int api_error_status(int err);

/*
 * The seconds of the Retry-After header an answer of err carries, or 0 for
 * none: set for a retryable error whose cause is expected to pass
 * (P8V_ERR_STORE_UNAVAILABLE). api_respond_error adds the header.
 */
unsigned int api_error_retry_after(int err);

/*
 * The error.code string a response carries for err: p8v_errname(err), or
 * "internal_error" when err maps to 500. Never NULL; static storage.
 */
const char *api_error_code(int err);

/*
 * A new error body for err. message is `detail` when given and the status
 * is below 500 (a handler's more precise text, e.g. which field; it must never hold input bytes that
 * could be secret), else p8v_strerror(err); for 500s always
 * "internal error". Returns a new reference, or NULL if allocation failed.
 */
json_t *api_error_body(int err, const char *detail);

#endif /* P8V_API_ERRORS_H */
