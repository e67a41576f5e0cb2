/*
 * test_profiles.c: the non-APNs Apple JWT profiles (vault/profiles.c).
 *
 * - A table of refused requests: every required member missing, every
 *   member of the wrong type, every limit one past its edge, members a
 *   profile does not take (including attempts to set iat, exp, aud, kid),
 *   malformed issuer ids, client and service ids, scopes and origins. Each
 *   must fail with P8V_ERR_BAD_FIELD and a detail that does not echo the
 *   value.
 * - A table of accepted requests with the exact header and claims text
 *   each must build (member order included) for a fixed key record and
 *   clock, at and inside every limit.
 * - profile_build refuses requests that did not come from profile_parse,
 *   and the built token shares no object with the caller's request.
 * The signing itself (vault_profile_token through vault_sign_app) is
 * checked end to end, with an independent verifier, by
 * tests/integration/test_sign.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/err.h"
#include "store/records.h"
#include "tests/check.h"
#include "vault/profiles.h"

#define NOW 1700000000
#define KID "KEYID12345"
#define TEAM "TEAMID6789"
#define UUID "57246542-96fe-1a63-e053-0824d011072a"

/* A marker put into refused values, to prove details never echo input. */
#define MARK "Zq9Marker"

struct refused {
	const char *request;        /* JSON text */
	const char *why;            /* what the case is about */
	int err;                    /* the error it must get */
};

static const struct refused refused[] = {
	/* the profile itself */
	{ "{}", "no profile", P8V_ERR_MISSING_FIELD },
	{ "{\"profile\":null}", "null profile", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":1}", "numeric profile", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"apns\"}",
	    "apns is not a profile of this route", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"" MARK "\"}", "unknown profile", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"APP_STORE_CONNECT\"}",
	    "profile names are exact", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit \"}", "trailing space", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":[\"musickit\"]}", "array profile", P8V_ERR_BAD_FIELD },
	/* environment */
	{ "{\"profile\":\"devicecheck\",\"environment\":\"both\"}",
	    "env both", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"devicecheck\",\"environment\":\"dev\"}",
	    "env dev", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"devicecheck\",\"environment\":1}",
	    "env number", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"devicecheck\",\"environment\":null}",
	    "env null", P8V_ERR_BAD_FIELD },
	/* members nobody may set */
	{ "{\"profile\":\"devicecheck\",\"iat\":1}",
	    "iat", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"devicecheck\",\"iss\":\"" MARK "\"}",
	    "iss", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"devicecheck\",\"kid\":\"KEYID12345\"}",
	    "kid", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"devicecheck\",\"alg\":\"none\"}",
	    "alg", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"devicecheck\",\"expires_in\":60}",
	    "devicecheck has no exp", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"devicecheck\",\"header\":{}}",
	    "header", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"devicecheck\",\"claims\":{}}",
	    "claims", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"musickit\",\"exp\":1700003600}",
	    "exp", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"a\","
	    "\"aud\":\"x\"}", "aud", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"a\","
	    "\"sub\":\"x\"}", "sub", P8V_ERR_UNKNOWN_FIELD },
	/* app_store_connect */
	{ "{\"profile\":\"app_store_connect\"}",
	    "asc: no issuer_id", P8V_ERR_MISSING_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":null}",
	    "asc: null issuer_id", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"\"}",
	    "asc: empty issuer_id", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\","
	    "\"issuer_id\":\"57246542-96fe-1a63-e053-0824d011072\"}",
	    "asc: 35 characters", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\","
	    "\"issuer_id\":\"57246542-96fe-1a63-e053-0824d011072aa\"}",
	    "asc: 37 characters", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\","
	    "\"issuer_id\":\"5724654296fe1a63e0530824d011072a0000\"}",
	    "asc: no dashes", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\","
	    "\"issuer_id\":\"5724654-296fe-1a63-e053-0824d011072a\"}",
	    "asc: dash misplaced", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\","
	    "\"issuer_id\":\"g7246542-96fe-1a63-e053-0824d011072a\"}",
	    "asc: not hex", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\","
	    "\"issuer_id\":\"{7246542-96fe-1a63-e053-0824d011072a\"}",
	    "asc: brace", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"TEAMID6789\"}",
	    "asc: a Team ID is not an issuer id", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"expires_in\":0}", "asc: expires_in 0", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"expires_in\":1201}", "asc: expires_in 1201", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"expires_in\":-1}", "asc: expires_in -1", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"expires_in\":60.0}", "asc: expires_in real", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"expires_in\":\"60\"}",
	    "asc: expires_in string", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"expires_in\":true}", "asc: expires_in bool", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"expires_in\":null}", "asc: expires_in null", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"expires_in\":9223372036854775807}",
	    "asc: expires_in huge", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"lifetime\":60}", "asc: unknown member", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"origin\":[\"https://a.example\"]}",
	    "asc: origin", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[]}", "asc: empty scope", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":\"GET /v1/apps\"}",
	    "asc: scope not an array", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[1]}", "asc: scope item a number", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"get /v1/apps\"]}",
	    "asc: lowercase method", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"FETCH /v1/apps\"]}",
	    "asc: unknown method", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"GET v1/apps\"]}",
	    "asc: path without /", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"GET  /v1/apps\"]}",
	    "asc: two spaces", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"GET\"]}", "asc: method only", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"GET /v1/" MARK " x\"]}",
	    "asc: space in path", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"GET /v1/\\tapps\"]}", "asc: tab", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"GET /v1/\\u00e9\"]}",
	    "asc: non-ASCII", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\","
	    "\"scope\":[\"GET /v1/apps\",\"GET /v1/apps\"]}",
	    "asc: duplicate scope", P8V_ERR_BAD_FIELD },
	/* sign_in_with_apple */
	{ "{\"profile\":\"sign_in_with_apple\"}",
	    "siwa: no client_id", P8V_ERR_MISSING_FIELD },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"\"}",
	    "siwa: empty client_id", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"com." MARK
	    " x\"}", "siwa: space", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"com/x\"}",
	    "siwa: slash", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":7}",
	    "siwa: number", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"com.x\","
	    "\"expires_in\":15777001}",
	    "siwa: over six months", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"com.x\","
	    "\"expires_in\":0}", "siwa: expires_in 0", P8V_ERR_BAD_FIELD },
	/* musickit */
	{ "{\"profile\":\"musickit\",\"expires_in\":15777001}",
	    "musickit: over six months", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[]}",
	    "musickit: no origins", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":\"https://a.example\"}",
	    "musickit: origin not an array", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"http://a.example\"]}",
	    "musickit: http", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://\"]}",
	    "musickit: no host", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example/\"]}",
	    "musickit: trailing slash", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example/x\"]}",
	    "musickit: path", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example.\"]}",
	    "musickit: trailing dot", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a..example\"]}",
	    "musickit: empty label", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://-a.example\"]}",
	    "musickit: label starts with -", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a-.example\"]}",
	    "musickit: label ends with -", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://*.example\"]}",
	    "musickit: wildcard", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://u@a.example\"]}",
	    "musickit: user info", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example:0\"]}",
	    "musickit: port 0", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example:65536\"]}",
	    "musickit: port 65536", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example:0443\"]}",
	    "musickit: port with leading zero", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example:\"]}",
	    "musickit: empty port", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example:44x\"]}",
	    "musickit: port not a number", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"HTTPS://a.example\"]}",
	    "musickit: scheme case", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\","
	    "\"origin\":[\"https://" MARK ".ex ample\"]}",
	    "musickit: space", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example\","
	    "\"https://a.example\"]}",
	    "musickit: duplicate origin", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"musickit\",\"scope\":[\"GET /v1\"]}",
	    "musickit: scope", P8V_ERR_UNKNOWN_FIELD },
	/* a bad member after a good list still fails */
	{ "{\"profile\":\"musickit\",\"origin\":[\"https://a.example\"],"
	    "\"expires_in\":0}", "musickit: bad member after origin",
	    P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"scope\":[\"GET /v1\"],"
	    "\"issuer_id\":\"" UUID "\",\"x\":1}", "asc: unknown after scope",
	    P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"app_store_connect\",\"scope\":[\"GET /v1\"]}",
	    "asc: scope without issuer_id", P8V_ERR_MISSING_FIELD },
	/* weatherkit */
	{ "{\"profile\":\"weatherkit\"}",
	    "weatherkit: no service_id", P8V_ERR_MISSING_FIELD },
	{ "{\"profile\":\"weatherkit\",\"service_id\":\"\"}",
	    "weatherkit: empty service_id", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"weatherkit\",\"service_id\":\"com.a_b\"}",
	    "weatherkit: underscore", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"weatherkit\",\"service_id\":\"com.a/b\"}",
	    "weatherkit: slash", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"weatherkit\",\"service_id\":\"com.x\","
	    "\"expires_in\":86401}",
	    "weatherkit: over a day", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"weatherkit\",\"service_id\":\"com.x\","
	    "\"client_id\":\"com.x\"}",
	    "weatherkit: client_id", P8V_ERR_UNKNOWN_FIELD },
	/* maps */
	{ "{\"profile\":\"maps\",\"expires_in\":15777001}",
	    "maps: over six months", P8V_ERR_BAD_FIELD },
	{ "{\"profile\":\"maps\",\"scope\":[\"GET /v1\"]}",
	    "maps: scope", P8V_ERR_UNKNOWN_FIELD },
	{ "{\"profile\":\"maps\",\"origin\":[\"ftp://a.example\"]}",
	    "maps: ftp origin", P8V_ERR_BAD_FIELD },
};

struct accepted {
	const char *request;
	const char *header;          /* exact compact JSON */
	const char *claims;
	enum key_env environment;
	uint32_t service;
};

#define H_PLAIN "{\"alg\":\"ES256\",\"kid\":\"" KID "\"}"
#define H_TYP "{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}"

static const struct accepted accepted[] = {
	{ "{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID "\"}",
	    H_TYP,
	    "{\"iss\":\"" UUID "\",\"iat\":1700000000,\"exp\":1700001200,"
	    "\"aud\":\"appstoreconnect-v1\"}",
	    KEY_ENV_BOTH, KEY_SERVICE_APP_STORE_CONNECT },
	{ "{\"profile\":\"app_store_connect\","
	    "\"issuer_id\":\"57246542-96FE-1A63-E053-0824D011072A\","
	    "\"expires_in\":1,\"environment\":\"production\","
	    "\"scope\":[\"GET /v1/apps?filter[platform]=IOS\","
	    "\"POST /v1/betaTesters\",\"PATCH /v1/apps/1\",\"PUT /x\","
	    "\"DELETE /v1/betaTesters/2\"]}",
	    H_TYP,
	    "{\"iss\":\"57246542-96FE-1A63-E053-0824D011072A\","
	    "\"iat\":1700000000,\"exp\":1700000001,"
	    "\"aud\":\"appstoreconnect-v1\","
	    "\"scope\":[\"GET /v1/apps?filter[platform]=IOS\","
	    "\"POST /v1/betaTesters\",\"PATCH /v1/apps/1\",\"PUT /x\","
	    "\"DELETE /v1/betaTesters/2\"]}",
	    KEY_ENV_PRODUCTION, KEY_SERVICE_APP_STORE_CONNECT },
	{ "{\"expires_in\":1200,\"issuer_id\":\"" UUID "\","
	    "\"profile\":\"app_store_connect\"}",
	    H_TYP,
	    "{\"iss\":\"" UUID "\",\"iat\":1700000000,\"exp\":1700001200,"
	    "\"aud\":\"appstoreconnect-v1\"}",
	    KEY_ENV_BOTH, KEY_SERVICE_APP_STORE_CONNECT },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"com.ex_a-1\"}",
	    H_PLAIN,
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000,\"exp\":1700086400,"
	    "\"aud\":\"https://appleid.apple.com\",\"sub\":\"com.ex_a-1\"}",
	    KEY_ENV_BOTH, KEY_SERVICE_SIGN_IN_WITH_APPLE },
	{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"c\","
	    "\"expires_in\":15777000,\"environment\":\"development\"}",
	    H_PLAIN,
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000,\"exp\":1715777000,"
	    "\"aud\":\"https://appleid.apple.com\",\"sub\":\"c\"}",
	    KEY_ENV_DEVELOPMENT, KEY_SERVICE_SIGN_IN_WITH_APPLE },
	{ "{\"profile\":\"musickit\"}",
	    H_PLAIN,
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000,\"exp\":1700003600}",
	    KEY_ENV_BOTH, KEY_SERVICE_MUSICKIT },
	{ "{\"profile\":\"musickit\",\"expires_in\":15777000,"
	    "\"origin\":[\"https://music.example.com\","
	    "\"https://a.example:443\",\"https://x-1.example:65535\","
	    "\"https://localhost\"]}",
	    H_PLAIN,
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000,\"exp\":1715777000,"
	    "\"origin\":[\"https://music.example.com\","
	    "\"https://a.example:443\",\"https://x-1.example:65535\","
	    "\"https://localhost\"]}",
	    KEY_ENV_BOTH, KEY_SERVICE_MUSICKIT },
	{ "{\"profile\":\"weatherkit\",\"service_id\":\"com.example.weather\"}",
	    "{\"alg\":\"ES256\",\"kid\":\"" KID "\","
	    "\"id\":\"" TEAM ".com.example.weather\"}",
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000,\"exp\":1700003600,"
	    "\"sub\":\"com.example.weather\"}",
	    KEY_ENV_BOTH, KEY_SERVICE_WEATHERKIT },
	{ "{\"profile\":\"weatherkit\",\"service_id\":\"W-1\","
	    "\"expires_in\":86400}",
	    "{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"id\":\"" TEAM ".W-1\"}",
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000,\"exp\":1700086400,"
	    "\"sub\":\"W-1\"}",
	    KEY_ENV_BOTH, KEY_SERVICE_WEATHERKIT },
	{ "{\"profile\":\"devicecheck\"}",
	    H_PLAIN,
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000}",
	    KEY_ENV_BOTH, KEY_SERVICE_DEVICECHECK },
	{ "{\"profile\":\"maps\"}",
	    H_TYP,
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000,\"exp\":1700003600}",
	    KEY_ENV_BOTH, KEY_SERVICE_MAPS },
	{ "{\"profile\":\"maps\",\"expires_in\":15777000,"
	    "\"origin\":[\"https://maps.example\"]}",
	    H_TYP,
	    "{\"iss\":\"" TEAM "\",\"iat\":1700000000,\"exp\":1715777000,"
	    "\"origin\":[\"https://maps.example\"]}",
	    KEY_ENV_BOTH, KEY_SERVICE_MAPS },
};

static void
fake_record(struct key_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	snprintf(rec->app, sizeof(rec->app), "%s", "app1");
	snprintf(rec->key_id, sizeof(rec->key_id), "%s", KID);
	snprintf(rec->team_id, sizeof(rec->team_id), "%s", TEAM);
	rec->environment = KEY_ENV_BOTH;
	rec->services = KEY_SERVICE_ALL;
	rec->state = KEY_STATE_ACTIVE;
}

static json_t *
load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);

	if (j == NULL)
		fprintf(stderr, "test JSON does not parse: %s: %s\n", text,
		    e.text);
	REQUIRE(j != NULL);
	return j;
}

static void
test_refused(void)
{
	struct profile_request req;
	const char *detail;
	json_t *j;
	size_t i;

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		j = load(refused[i].request);
		detail = NULL;
		CHECKF(profile_parse(j, &req, &detail) == refused[i].err,
		    "%s", refused[i].why);
		CHECKF(detail != NULL && detail[0] != '\0', "%s: no detail",
		    refused[i].why);
		CHECKF(detail == NULL || strstr(detail, MARK) == NULL,
		    "%s: detail echoes the value", refused[i].why);
		CHECKF(req.profile == NULL && req.f.n_list == 0,
		    "%s: output not cleared", refused[i].why);
		profile_request_finish(&req);
		json_decref(j);
	}
}

static void
test_accepted(void)
{
	struct profile_request req;
	struct key_record rec;
	const char *detail;
	json_t *j, *h, *c;
	char *hs, *cs;
	size_t i;

	fake_record(&rec);
	for (i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		j = load(accepted[i].request);
		detail = "unset";
		CHECKF(profile_parse(j, &req, &detail) == 0, "case %zu: %s", i,
		    accepted[i].request);
		CHECKF(detail == NULL, "case %zu: detail on success", i);
		CHECKF(req.environment == accepted[i].environment, "case %zu",
		    i);
		CHECKF(req.service == accepted[i].service, "case %zu", i);
		/* The request's objects may go away before the build. */
		json_decref(j);
		h = c = NULL;
		CHECK_OK(profile_build(&req, &rec, NOW, &h, &c));
		hs = h != NULL ? json_dumps(h, JSON_COMPACT) : NULL;
		cs = c != NULL ? json_dumps(c, JSON_COMPACT) : NULL;
		CHECK_STR(hs, accepted[i].header);
		CHECK_STR(cs, accepted[i].claims);
		free(hs);
		free(cs);
		json_decref(h);
		json_decref(c);
		profile_request_finish(&req);
	}
}

/* Each case's request, altered after the parse: the built claims must not
 * change, since they are copies. */
static void
test_copies(void)
{
	struct profile_request req;
	struct key_record rec;
	json_t *j, *h = NULL, *c = NULL, *origin;
	char *cs;

	fake_record(&rec);
	j = load("{\"profile\":\"musickit\","
	    "\"origin\":[\"https://a.example\"]}");
	CHECK_OK(profile_parse(j, &req, NULL));
	origin = json_object_get(j, "origin");
	json_array_set_new(origin, 0, json_string("javascript:alert(1)"));
	json_array_append_new(origin, json_string("https://b.example"));
	CHECK_OK(profile_build(&req, &rec, NOW, &h, &c));
	cs = c != NULL ? json_dumps(c, JSON_COMPACT) : NULL;
	CHECK_STR(cs, "{\"iss\":\"" TEAM "\",\"iat\":1700000000,"
	    "\"exp\":1700003600,\"origin\":[\"https://a.example\"]}");
	/* Nor does a change to the built claims reach the parsed request. */
	json_array_clear(json_object_get(c, "origin"));
	CHECK_INT(req.f.n_list, 1);
	free(cs);
	json_decref(h);
	json_decref(c);
	json_decref(j);
	profile_request_finish(&req);
}

/*
 * The whole list is at most PROFILE_LIST_BYTES_MAX as compact JSON, escapes
 * counted: else a request within the count and length limits passed
 * validation and failed at signing (P8V_ERR_TOO_LARGE, 413, after the key
 * was unsealed), as fuzz/fuzz_jwt_profile found with 32 scopes of 256
 * characters and 16 origins of the longest host name.
 */
static void
test_list_bytes(void)
{
	struct profile_request req;
	json_t *j, *list;
	char item[PROFILE_ORIGIN_ITEM_MAX + 1];
	size_t i, len;

	/* 9 scopes: 8 of 224 and one of 228 characters: 2 + 9 * 2 + 8 +
	 * 8 * 224 + 228 = 2048 bytes pass; a 229th character, or an escaped
	 * '"' instead of a letter, fails. */
	j = load("{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID
	    "\"}");
	list = json_array();
	for (i = 0; i < 9; i++) {
		len = i < 8 ? 224 : 228;
		memset(item, 'a', len);
		memcpy(item, "GET /", 5);
		item[5] = (char)('0' + i);
		item[len] = '\0';
		json_array_append_new(list, json_string(item));
	}
	json_object_set_new(j, "scope", list);
	CHECK_INT(json_dumpb(list, NULL, 0, JSON_COMPACT),
	    PROFILE_LIST_BYTES_MAX);
	CHECK_OK(profile_parse(j, &req, NULL));
	profile_request_finish(&req);
	item[len] = 'a';
	item[len + 1] = '\0';
	json_array_set_new(list, 8, json_string(item));
	CHECK_ERR(profile_parse(j, &req, NULL), P8V_ERR_BAD_FIELD);
	item[len] = '\0';
	item[len - 1] = '"';
	json_array_set_new(list, 8, json_string(item));
	CHECK_ERR(profile_parse(j, &req, NULL), P8V_ERR_BAD_FIELD);
	json_decref(j);

	/* 7 origins of the longest form pass, 8 do not. */
	j = load("{\"profile\":\"maps\"}");
	list = json_array();
	for (i = 0; i < 8; i++) {
		/* "https://" + 63.63.63.61 + ":1000i" = 8 + 253 + 6 */
		snprintf(item, sizeof(item), "https://%063d.%063d.%063d.%061d:"
		    "1000%zu", 0, 0, 0, 0, i);
		CHECK_INT(strlen(item), PROFILE_ORIGIN_ITEM_MAX);
		json_array_append_new(list, json_string(item));
		if (i == 6) {
			json_object_set(j, "origin", list);
			CHECK_OK(profile_parse(j, &req, NULL));
			profile_request_finish(&req);
		}
	}
	CHECK_ERR(profile_parse(j, &req, NULL), P8V_ERR_BAD_FIELD);
	json_decref(list);
	json_decref(j);
}

/* Boundaries of list sizes, built by loops rather than written out. */
static void
test_list_limits(void)
{
	struct profile_request req;
	json_t *j, *list;
	char item[PROFILE_SCOPE_ITEM_MAX + 2];
	size_t i;

	/* 32 scopes pass, 33 fail. */
	j = load("{\"profile\":\"app_store_connect\",\"issuer_id\":\"" UUID
	    "\"}");
	list = json_array();
	for (i = 0; i < PROFILE_SCOPE_MAX; i++) {
		snprintf(item, sizeof(item), "GET /v1/apps/%zu", i);
		json_array_append_new(list, json_string(item));
	}
	json_object_set_new(j, "scope", list);
	CHECK_OK(profile_parse(j, &req, NULL));
	profile_request_finish(&req);
	json_array_append_new(list, json_string("GET /v1/more"));
	CHECK_ERR(profile_parse(j, &req, NULL), P8V_ERR_BAD_FIELD);
	/* A scope of exactly 256 characters passes, 257 fails. */
	memset(item, 'a', sizeof(item));
	memcpy(item, "GET /", 5);
	item[PROFILE_SCOPE_ITEM_MAX] = '\0';
	json_array_clear(list);
	json_array_append_new(list, json_string(item));
	CHECK_OK(profile_parse(j, &req, NULL));
	CHECK_INT(strlen(req.f.list[0]), 256);
	profile_request_finish(&req);
	item[PROFILE_SCOPE_ITEM_MAX] = 'a';
	item[PROFILE_SCOPE_ITEM_MAX + 1] = '\0';
	json_array_set_new(list, 0, json_string(item));
	CHECK_ERR(profile_parse(j, &req, NULL), P8V_ERR_BAD_FIELD);
	json_decref(j);

	/* 16 origins pass, 17 fail. */
	j = load("{\"profile\":\"musickit\"}");
	list = json_array();
	for (i = 0; i < PROFILE_ORIGIN_MAX; i++) {
		snprintf(item, sizeof(item), "https://o%zu.example", i);
		json_array_append_new(list, json_string(item));
	}
	json_object_set_new(j, "origin", list);
	CHECK_OK(profile_parse(j, &req, NULL));
	profile_request_finish(&req);
	json_array_append_new(list, json_string("https://more.example"));
	CHECK_ERR(profile_parse(j, &req, NULL), P8V_ERR_BAD_FIELD);
	json_decref(j);

	test_list_bytes();
}

/* Client and service ids of 255 characters pass, 256 fail; a DNS label of
 * 63 passes, 64 fails. */
static void
test_id_limits(void)
{
	static const struct {
		const char *before;  /* JSON text around the value */
		const char *after;
		size_t len;
		int ok;
	} cases[] = {
		{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"", "\"}",
		    255, 1 },
		{ "{\"profile\":\"sign_in_with_apple\",\"client_id\":\"", "\"}",
		    256, 0 },
		{ "{\"profile\":\"weatherkit\",\"service_id\":\"", "\"}",
		    255, 1 },
		{ "{\"profile\":\"weatherkit\",\"service_id\":\"", "\"}",
		    256, 0 },
		{ "{\"profile\":\"musickit\",\"origin\":[\"https://",
		    ".example\"]}", 63, 1 },
		{ "{\"profile\":\"musickit\",\"origin\":[\"https://",
		    ".example\"]}", 64, 0 },
	};
	struct profile_request req;
	char value[300], text[512];
	json_t *j;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(value, 'x', cases[i].len);
		value[cases[i].len] = '\0';
		snprintf(text, sizeof(text), "%s%s%s", cases[i].before, value,
		    cases[i].after);
		j = load(text);
		CHECKF(profile_parse(j, &req, NULL) ==
		    (cases[i].ok ? 0 : P8V_ERR_BAD_FIELD), "case %zu", i);
		profile_request_finish(&req);
		json_decref(j);
	}
}

/* profile_build trusts nothing it was not given by profile_parse. */
static void
test_build_refuses(void)
{
	struct profile_request req, forged;
	struct key_record rec;
	json_t *j, *h, *c;
	char name[] = "musickit";

	fake_record(&rec);
	j = load("{\"profile\":\"weatherkit\",\"service_id\":\"com.x\"}");
	CHECK_OK(profile_parse(j, &req, NULL));
	json_decref(j);

	/* A profile name that is not the table's own pointer. */
	forged = req;
	forged.profile = name;
	CHECK_ERR(profile_build(&forged, &rec, NOW, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK(h == NULL && c == NULL);
	/* A lifetime past the profile's limit, or none with an exp. */
	forged = req;
	forged.f.expires_in = PROFILE_WEATHERKIT_EXPIRES_MAX_S + 1;
	CHECK_ERR(profile_build(&forged, &rec, NOW, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	forged.f.expires_in = 0;
	CHECK_ERR(profile_build(&forged, &rec, NOW, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	/* A subject that the parser would have refused. */
	forged = req;
	snprintf(forged.f.subject, sizeof(forged.f.subject), "%s", "a\"b");
	CHECK_ERR(profile_build(&forged, &rec, NOW, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	/* A clock before the epoch or beyond JSON integers. */
	CHECK_ERR(profile_build(&req, &rec, -1, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(profile_build(&req, &rec, ((int64_t)1 << 53) - 10, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	/* A record with bad ids. */
	snprintf(rec.team_id, sizeof(rec.team_id), "%s", "team");
	CHECK_ERR(profile_build(&req, &rec, NOW, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	fake_record(&rec);
	snprintf(rec.key_id, sizeof(rec.key_id), "%s", "KEY\"12345");
	CHECK_ERR(profile_build(&req, &rec, NOW, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	fake_record(&rec);
	CHECK_ERR(profile_build(NULL, &rec, NOW, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(profile_build(&req, NULL, NOW, &h, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(profile_build(&req, &rec, NOW, NULL, &c),
	    P8V_ERR_INVALID_ARGUMENT);
	CHECK_ERR(profile_build(&req, &rec, NOW, &h, NULL),
	    P8V_ERR_INVALID_ARGUMENT);
	/* And the real one still builds. */
	CHECK_OK(profile_build(&req, &rec, NOW, &h, &c));
	json_decref(h);
	json_decref(c);
	profile_request_finish(&req);

	/* Not an object. */
	j = json_array();
	CHECK_ERR(profile_parse(j, &req, NULL), P8V_ERR_INVALID_ARGUMENT);
	json_decref(j);
	CHECK_ERR(profile_parse(NULL, &req, NULL), P8V_ERR_INVALID_ARGUMENT);
}

/* Every profile in the table is covered by an accepted case. */
static void
test_table(void)
{
	size_t i, k;
	int found;

	CHECK_INT(profile_count(), 6);
	CHECK(profile_name(profile_count()) == NULL);
	for (i = 0; i < profile_count(); i++) {
		found = 0;
		for (k = 0; k < sizeof(accepted) / sizeof(accepted[0]); k++)
			found |= strstr(accepted[k].request,
			    profile_name(i)) != NULL;
		CHECKF(found, "profile %s has no accepted case",
		    profile_name(i));
	}
}

int
main(void)
{
	test_refused();
	test_accepted();
	test_copies();
	test_list_limits();
	test_id_limits();
	test_build_refuses();
	test_table();
	return check_finish();
}
