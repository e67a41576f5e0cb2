/*
 * apns_client.h: one HTTP/2 request to APNs, for the key check
 * (vault/check.c). The only module of p8vault that makes an outbound
 * connection, and the only one that calls libcurl.
 *
 * It sends POST <base>/3/device/<device token> over HTTP/2 and TLS with
 * the provider token it is given, the topic and a minimal alert payload,
 * and reports the HTTP status and the "reason" of APNs's JSON answer. It
 * knows nothing of keys: it never sees key material, only a token the
 * vault got from the keeper.
 *
 * TLS: the server's certificate and name are always verified, against the
 * system's store (Debian: /etc/ssl/certs/ca-certificates.crt) or
 * ca_file. HTTPS only, no redirects, no proxy from the environment (only
 * the configured one, as an HTTP CONNECT tunnel), bounded time.
 */
#ifndef P8V_VAULT_APNS_CLIENT_H
#define P8V_VAULT_APNS_CLIENT_H

#include <stddef.h>

/* Apple's two APNs hosts (port 443). */
#define APNS_CLIENT_SANDBOX_URL "https://api.sandbox.push.apple.com"
#define APNS_CLIENT_PRODUCTION_URL "https://api.push.apple.com"
/* The whole request (connect, TLS, answer) gets this long by default: an
 * APNs answer takes well under a second; a portal request should not hang
 * on a network that drops packets. */
#define APNS_CLIENT_TIMEOUT_DEFAULT_MS 5000
/* Bounds of the timeout (--apns-timeout is not an option: tests and
 * operators change the URLs, not the time; the bound guards callers). */
#define APNS_CLIENT_TIMEOUT_MAX_MS 60000
/* Longest base URL accepted (a proxy's or a test's URL is short). */
#define APNS_CLIENT_URL_MAX 512
/* Most bytes of APNs's answer body read: {"reason":"..."} is tiny; more is
 * not APNs. */
#define APNS_CLIENT_BODY_MAX 4096
/* Room for a reason ("TooManyProviderTokenUpdates" is the longest Apple
 * documents) and for the cause of a failed connection (libcurl's message). */
#define APNS_CLIENT_REASON_MAX 64
#define APNS_CLIENT_CAUSE_MAX 256

/* Where and how to reach APNs. Strings are the caller's; NULL means the
 * default (Apple's hosts, the system store, no proxy). */
struct apns_client_config {
	const char *sandbox_url;      /* "https://host[:port]", no path */
	const char *production_url;
	const char *ca_file;          /* PEM bundle to verify APNs with */
	const char *proxy;            /* "http://host:port": CONNECT proxy */
	long timeout_ms;              /* 0: APNS_CLIENT_TIMEOUT_DEFAULT_MS */
};

/* What APNs answered. */
struct apns_client_answer {
	long status;                                /* HTTP status */
	char reason[APNS_CLIENT_REASON_MAX];        /* "" when none */
};

/*
 * Check a configuration: each URL given must be https://host[:port] with
 * no path, query or user part (at most APNS_CLIENT_URL_MAX bytes), the
 * proxy http:// or https:// host[:port], the CA file readable, the
 * timeout 0 or 1..APNS_CLIENT_TIMEOUT_MAX_MS. *what (may be NULL) names
 * the bad field ("sandbox_url", ...).
 * Returns 0 or P8V_ERR_INVALID_ARGUMENT.
 */
int apns_client_config_check(const struct apns_client_config *cfg,
    const char **what);

/*
 * POST base_url/3/device/device_token with headers authorization: bearer
 * token, apns-topic: topic, apns-push-type: alert, apns-priority: 5,
 * apns-expiration: 0, and a minimal alert payload; HTTP/2 required (an
 * answer over HTTP/1.1 is not APNs). token, topic and device_token must
 * be plain header/path characters (checked: no CR, LF, NUL, space).
 * out is zeroed, then filled on 0. cause (APNS_CLIENT_CAUSE_MAX bytes, may
 * be NULL) gets why the request failed: libcurl's message, never the
 * token. Thread-safe (one easy handle per call; libcurl's global set-up
 * runs once).
 * Returns 0 (APNs answered, whatever the status), P8V_ERR_APPLE_UNREACHABLE
 * (DNS, connection, TLS, certificate, proxy, not HTTP/2, an answer that is
 * not APNs's), P8V_ERR_APPLE_TIMEOUT (no complete answer within the
 * timeout), P8V_ERR_INVALID_ARGUMENT, P8V_ERR_ALLOC.
 */
int apns_client_post(const struct apns_client_config *cfg,
    const char *base_url, const char *token, const char *topic,
    const char *device_token, struct apns_client_answer *out, char *cause);

#endif /* P8V_VAULT_APNS_CLIENT_H */
