/*
 * err.h: the one error vocabulary of p8vault.
 *
 * Every function that can fail returns 0 on success or a negative P8V_ERR_*
 * code (OpenSSH ssherr.h style). Each code has a stable snake_case name that
 * the HTTP layer uses as the JSON error.code, and a human message that never
 * contains input bytes. api/ maps each code to exactly one HTTP status in one
 * table; nothing else invents error strings.
 *
 * Codes are append-only: never renumber or rename one, clients match on the
 * names.
 */
#ifndef P8V_COMMON_ERR_H
#define P8V_COMMON_ERR_H

/*
 * X(SYMBOL, value, "stable_name", "message")
 */
#define P8V_ERRORS(X) \
	/* generic */ \
	X(INTERNAL,            -1, "internal_error",        "internal error") \
	X(ALLOC,               -2, "out_of_memory",         "memory allocation failed") \
	X(INVALID_ARGUMENT,    -3, "invalid_argument",      "invalid argument") \
	X(UNSUPPORTED,         -4, "unsupported",           "unsupported parameters") \
	X(INTEGRITY,           -5, "integrity_error",       "authentication of sealed data failed") \
	X(SECMEM,              -6, "guarded_memory",        "guarded memory is unavailable") \
	X(RANDOM,              -7, "random_failure",        "random number generator failed") \
	X(CRYPTO,              -8, "crypto_error",          "cryptographic library failure") \
	X(IO,                  -9, "io_error",              "input/output error") \
	X(TOO_LARGE,          -10, "too_large",             "input exceeds its size limit") \
	X(NOT_FOUND,          -11, "not_found",             "not found") \
	X(EXISTS,             -12, "exists",                "already exists") \
	X(BUSY,               -13, "busy",                  "resource busy") \
	/* .p8 validation (crypto/p8.c) */ \
	X(P8_TOO_LARGE,       -20, "p8_too_large",          "the .p8 input exceeds the size limit") \
	X(P8_NOT_PEM,         -21, "p8_not_pem",            "the input is not a PEM document") \
	X(P8_BAD_BASE64,      -22, "p8_bad_base64",         "the PEM body is not valid base64") \
	X(P8_CERTIFICATE,     -23, "p8_certificate",        "the input is a certificate, not a private key; p8vault takes APNs token (.p8) keys, not .p12/.cer certificates") \
	X(P8_PUBLIC_KEY,      -24, "p8_public_key",         "the input is a public key, not a private key") \
	X(P8_ENCRYPTED,       -25, "p8_encrypted",          "the private key is encrypted; upload the unencrypted .p8 from Apple") \
	X(P8_WRONG_KEY_TYPE,  -26, "p8_wrong_key_type",     "the key is not an EC key (RSA, Ed25519, DSA and other types are refused)") \
	X(P8_WRONG_CURVE,     -27, "p8_wrong_curve",        "the EC key is not on P-256 (prime256v1)") \
	X(P8_EXPLICIT_CURVE,  -28, "p8_explicit_curve",     "the EC key uses explicit curve parameters instead of the named curve P-256") \
	X(P8_BAD_SCALAR,      -29, "p8_bad_scalar",         "the private scalar is zero or not below the group order") \
	X(P8_PUBKEY_MISMATCH, -30, "p8_public_key_mismatch", "the embedded public key does not match the private key") \
	X(P8_TRAILING_DATA,   -31, "p8_trailing_data",      "the input holds data after the private key") \
	X(P8_MULTIPLE_KEYS,   -32, "p8_multiple_keys",      "the input holds more than one PEM block") \
	X(P8_MALFORMED,       -33, "p8_malformed",          "the PKCS#8 structure is malformed") \
	X(P8_NOT_PKCS8,       -34, "p8_not_pkcs8",          "the PEM block is not a PKCS#8 private key") \
	X(P8_MISPLACED,       -35, "p8_misplaced",          "PEM text is accepted only as the string value of the top-level member p8") \
	/* identifiers and fields */ \
	X(BAD_APP_ID,         -40, "invalid_app_id",        "app id must be 1-64 characters of [A-Za-z0-9._-]") \
	X(BAD_KEY_ID,         -41, "invalid_key_id",        "Key ID must be exactly 10 characters of [A-Z0-9]") \
	X(BAD_TEAM_ID,        -42, "invalid_team_id",       "Team ID must be exactly 10 characters of [A-Z0-9]") \
	/* store (store/) */ \
	X(STORE,              -50, "store_error",           "the key store failed") \
	X(NO_SPACE,           -51, "insufficient_storage",  "the key store has no space left") \
	X(STORE_VERSION,      -52, "store_version",         "the state directory has an unknown schema version") \
	X(MASTER_KEY_FILE,    -53, "master_key_file",       "the master key file is unreadable, malformed, readable by group or others, or owned by another user than the process's or root") \
	X(MASTER_KEY_MISMATCH,-54, "master_key_mismatch",   "no loaded master key matches this state directory") \
	X(MASTER_KEY_MISSING, -55, "master_key_missing",    "the master key that sealed this record is not loaded") \
	X(NO_MASTER_KEY,      -56, "no_master_key",         "no master key is loaded") \
	/* retryable: a networked store backend cannot be reached now */ \
	X(STORE_UNAVAILABLE,  -57, "store_unavailable",     "the key store cannot be reached; retry later") \
	/* retryable: the keeper process is being restarted (keeper/) */ \
	X(KEEPER_UNAVAILABLE, -58, "keeper_unavailable",    "the key keeper is not running; retry shortly") \
	/* keys and signing (vault/) */ \
	X(KEY_EXISTS,         -60, "key_exists",            "a different key is already stored under this app and Key ID") \
	X(KEY_REVOKED,        -61, "key_revoked",           "the key has been revoked") \
	X(NO_ACTIVE_KEY,      -62, "no_active_key",         "the app has no active key") \
	X(APP_NOT_FOUND,      -63, "app_not_found",         "no such app") \
	X(KEY_NOT_FOUND,      -64, "key_not_found",         "no such key") \
	X(SERVICE_NOT_ALLOWED,-65, "service_not_allowed",   "the key was not uploaded for this service") \
	X(BAD_FIELD,          -66, "invalid_field",         "a field is present but invalid") \
	X(KEY_IDENTITY_CONFLICT, -67, "key_identity_conflict", "this key is already stored under another Key ID or Team ID (Apple issues a key to one team under one Key ID)") \
	/* HTTP requests (api/) */ \
	X(BAD_REQUEST,        -70, "bad_request",           "the request is malformed") \
	X(METHOD_NOT_ALLOWED, -71, "method_not_allowed",    "the resource does not support this method") \
	X(NOT_READY,          -72, "not_ready",             "the vault is not ready: the store is not open or no master key has been checked") \
	X(UNAUTHORIZED,       -73, "unauthorized",          "a valid bearer token is required") \
	X(FORBIDDEN,          -74, "forbidden",             "the token's role does not allow this request") \
	/* uploads (api/upload.c) */ \
	X(MISSING_FIELD,      -80, "missing_field",         "a required field is missing") \
	X(UNKNOWN_FIELD,      -81, "unknown_field",         "the request holds a field this API does not know") \
	X(KEY_ID_MISMATCH,    -82, "key_id_mismatch",       "the file name AuthKey_<KEYID>.p8 names another Key ID than key_id") \
	X(UNSUPPORTED_MEDIA_TYPE, -83, "unsupported_media_type", "the request's Content-Type is not one this route accepts") \
	/* the key check with Apple (vault/check.c, vault/apns_client.c) */ \
	X(APPLE_UNREACHABLE,  -90, "apple_unreachable",     "APNs could not be reached (connection, TLS or HTTP/2 failed)") \
	X(APPLE_TIMEOUT,      -91, "apple_timeout",         "APNs did not answer in time") \
	X(APPLE_CHECK_FAILED, -92, "apple_check_failed",    "APNs refused the key: nothing was stored") \
	/* master-key life cycle (store/masterkeys.c, vault/) */ \
	X(MASTER_KEY_RETIRED, -93, "master_key_retired",    "the master key was retired from this state directory and may not be loaded or used again") \
	X(MASTER_KEY_IN_USE,  -94, "master_key_in_use",     "the master key still seals key records or cached tokens, or is the only one the state directory records") \
	X(MASTER_KEY_PRIMARY_MISSING, -95, "master_key_primary_missing", "the new master keys lack the key new records are being sealed under") \
	/* tenant isolation (issue 15) */ \
	X(WOULD_BLOCK,        -100, "would_block",           "the operation would have to wait; internal: the caller retries it where it may wait") \
	X(TOO_MANY_CONNECTIONS,-101, "too_many_connections", "too many connections from this address or in total; retry later") \
	X(TOO_MANY_KEYS,      -102, "too_many_keys",         "the app holds as many keys (not revoked) as its quota allows: revoke one first") \
	X(TOO_MANY_APPS,      -103, "too_many_apps",         "this token has created keys in as many apps as its quota allows") \
	X(RATE_LIMITED,       -104, "rate_limited",          "this token made as many uploads in the last minute as its quota allows; retry later") \
	X(VAULT_FULL,         -105, "vault_full",            "the vault holds as many key records as its quota allows") \
	/* keeper pipes (issue 13) */ \
	X(PENDING,            -106, "pending",               "the answer comes later; internal: the event loop finishes the request when the keeper answers")

enum p8v_err {
	P8V_OK = 0,
#define P8V_ERR_ENUM(sym, val, name, msg) P8V_ERR_##sym = (val),
	P8V_ERRORS(P8V_ERR_ENUM)
#undef P8V_ERR_ENUM
};

/* Human-readable message for an error code; never NULL, never input bytes. */
const char *p8v_strerror(int err);

/* Stable snake_case name ("p8_wrong_curve") for an error code; never NULL.
 * Unknown codes map to "internal_error". */
const char *p8v_errname(int err);

#endif /* P8V_COMMON_ERR_H */
