/* apns_client.c: one HTTP/2 request to APNs through libcurl (see
 * apns_client.h). Nothing else in p8vault calls libcurl. */
#include "vault/apns_client.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/err.h"

/* The notification: an alert nobody will see (the device token cannot
 * exist), as small as APNs takes. */
#define CHECK_PAYLOAD "{\"aps\":{\"alert\":\"p8vault key check\"}}"
/* Longest header line we build: "authorization: bearer " and a token
 * (an ES256 JWT of ~200 bytes), or "apns-topic: " and a topic. */
#define HEADER_MAX 1024
/* Longest device token put in the path: APNs's are 64 hex digits today;
 * Apple says they may grow, so some room. */
#define DEVICE_TOKEN_MAX 200

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void
global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* "scheme://host[:port]" with nothing after: no path, query, fragment or
 * user part. */
static int
url_valid(const char *url, int https_only)
{
	const char *host;
	size_t i, len;

	if (url == NULL)
		return 0;
	len = strlen(url);
	if (len == 0 || len > APNS_CLIENT_URL_MAX)
		return 0;
	if (strncmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (!https_only && strncmp(url, "http://", 7) == 0)
		host = url + 7;
	else
		return 0;
	if (*host == '\0')
		return 0;
	for (i = 0; host[i] != '\0'; i++) {
		char c = host[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		    c == ':' || c == '[' || c == ']'))
			return 0;
	}
	return 1;
}

int
apns_client_config_check(const struct apns_client_config *cfg,
    const char **what)
{
	const char *bad = NULL;

	if (cfg == NULL)
		bad = "config";
	else if (cfg->sandbox_url != NULL && !url_valid(cfg->sandbox_url, 1))
		bad = "apns-sandbox-url";
	else if (cfg->production_url != NULL &&
	    !url_valid(cfg->production_url, 1))
		bad = "apns-production-url";
	else if (cfg->proxy != NULL && !url_valid(cfg->proxy, 0))
		bad = "apns-proxy";
	else if (cfg->ca_file != NULL && access(cfg->ca_file, R_OK) != 0)
		bad = "apns-ca-file";
	else if (cfg->timeout_ms < 0 ||
	    cfg->timeout_ms > APNS_CLIENT_TIMEOUT_MAX_MS)
		bad = "timeout";
	if (what != NULL)
		*what = bad;
	return bad == NULL ? 0 : P8V_ERR_INVALID_ARGUMENT;
}

/* Header and path text: printable ASCII, no space. */
static int
plain(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

struct body {
	char buf[APNS_CLIENT_BODY_MAX];
	size_t len;
	int overflow;
};

static size_t
body_write(char *data, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t len = size * n;

	if (len > sizeof(b->buf) - b->len) {
		b->overflow = 1;
		return 0;               /* aborts the transfer */
	}
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	return len;
}

/* "<where>: <why>" into cause (may be NULL). */
static void
set_cause(char *cause, const char *where, const char *why)
{
	if (cause != NULL)
		snprintf(cause, APNS_CLIENT_CAUSE_MAX, "%s: %s", where, why);
}

int
apns_client_post(const struct apns_client_config *cfg, const char *base_url,
    const char *token, const char *topic, const char *device_token,
    struct apns_client_answer *out, char *cause)
{
	char url[APNS_CLIENT_URL_MAX + 128], line[HEADER_MAX];
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers = NULL, *grown;
	struct body *body = NULL;
	CURL *h = NULL;
	CURLcode rc;
	json_t *answer = NULL;
	const char *reason;
	long version = 0, timeout;
	size_t i;
	int r = P8V_ERR_INVALID_ARGUMENT;
	static const char *const fixed[] = {
		"apns-push-type: alert",
		"apns-priority: 5",
		"apns-expiration: 0",
		"content-type: application/json",
	};

	if (cause != NULL)
		cause[0] = '\0';
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (cfg == NULL || out == NULL || !url_valid(base_url, 1) ||
	    !plain(token) || !plain(topic) || !plain(device_token) ||
	    strlen(token) + 32 > HEADER_MAX || strlen(topic) + 32 > HEADER_MAX ||
	    strlen(device_token) > DEVICE_TOKEN_MAX ||
	    apns_client_config_check(cfg, NULL) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		set_cause(cause, "libcurl", curl_easy_strerror(global_rc));
		r = P8V_ERR_APPLE_UNREACHABLE;
		goto out;
	}
	if ((body = calloc(1, sizeof(*body))) == NULL ||
	    (h = curl_easy_init()) == NULL)
		goto out;
	snprintf(url, sizeof(url), "%s/3/device/%s", base_url, device_token);
	snprintf(line, sizeof(line), "authorization: bearer %s", token);
	if ((headers = curl_slist_append(NULL, line)) == NULL)
		goto out;
	snprintf(line, sizeof(line), "apns-topic: %s", topic);
	if ((grown = curl_slist_append(headers, line)) == NULL)
		goto out;
	headers = grown;
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		if ((grown = curl_slist_append(headers, fixed[i])) == NULL)
			goto out;
		headers = grown;
	}
	explicit_bzero(line, sizeof(line));
	timeout = cfg->timeout_ms > 0 ? cfg->timeout_ms :
	    APNS_CLIENT_TIMEOUT_DEFAULT_MS;
	errbuf[0] = '\0';
	r = P8V_ERR_INTERNAL;
	/* Each setopt below can only fail for a libcurl built without the
	 * feature (HTTP/2, HTTPS): then the request cannot be made. */
	if (curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
	    (long)CURL_HTTP_VERSION_2TLS) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_POST, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_POSTFIELDS, CHECK_PAYLOAD) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE,
	    (long)strlen(CHECK_PAYLOAD)) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEDATA, body) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
	    /* threads: no signals for DNS timeouts */
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout) !=
	    CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSLVERSION,
	    (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK ||
	    /* Only the configured proxy: "" ignores https_proxy and the
	     * like from the environment. */
	    curl_easy_setopt(h, CURLOPT_PROXY,
	    cfg->proxy != NULL ? cfg->proxy : "") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HTTPPROXYTUNNEL, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED) !=
	    CURLE_OK)
		goto out;
	if (cfg->ca_file != NULL &&
	    curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file) != CURLE_OK)
		goto out;
	rc = curl_easy_perform(h);
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		r = P8V_ERR_APPLE_TIMEOUT;
		set_cause(cause, base_url, errbuf[0] != '\0' ? errbuf :
		    curl_easy_strerror(rc));
		goto out;
	}
	if (rc != CURLE_OK) {
		r = P8V_ERR_APPLE_UNREACHABLE;
		if (body->overflow)
			set_cause(cause, base_url, "the answer is too "
			    "large to be APNs's");
		else
			set_cause(cause, base_url, errbuf[0] != '\0' ?
			    errbuf : curl_easy_strerror(rc));
		goto out;
	}
	r = P8V_ERR_APPLE_UNREACHABLE;
	if (curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &version) != CURLE_OK ||
	    version != CURL_HTTP_VERSION_2_0) {
		set_cause(cause, base_url, "the server does not speak "
		    "HTTP/2: not APNs");
		goto out;
	}
	if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status) !=
	    CURLE_OK || out->status < 100 || out->status > 599) {
		set_cause(cause, base_url, "no HTTP status");
		goto out;
	}
	/* APNs answers an error with {"reason": "..."}; success (200) with
	 * an empty body. */
	if (body->len > 0) {
		answer = json_loadb(body->buf, body->len, 0, NULL);
		reason = json_string_value(json_object_get(answer, "reason"));
		if (reason != NULL && plain(reason) &&
		    strlen(reason) < sizeof(out->reason))
			memcpy(out->reason, reason, strlen(reason) + 1);
	}
	r = 0;
 out:
	if (r != 0 && out != NULL)
		memset(out, 0, sizeof(*out));
	json_decref(answer);
	/* The list holds the bearer token: wipe before freeing. */
	for (grown = headers; grown != NULL; grown = grown->next)
		explicit_bzero(grown->data, strlen(grown->data));
	curl_slist_free_all(headers);
	curl_easy_cleanup(h);
	free(body);
	return r;
}
