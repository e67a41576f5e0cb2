/*
 * check.c: the key check with Apple. A push to a device token that cannot
 * exist, with the key's shared provider token: APNs judges the token (Key
 * ID, Team ID, signature, revocation, environment) and the topic before
 * the device token, so 400 BadDeviceToken means everything the key
 * decides was accepted, and any other answer names what was not
 * (docs/api.md, "Checking a key with Apple", has the sources).
 *
 * The request itself is vault/apns_client.c's (libcurl); this file
 * chooses environments and topic, gets the token from the keeper's side
 * of the vault (never a key), interprets the answer, and keeps the last
 * result per environment beside the record (store/checks.h) with an audit
 * event.
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/ids.h"
#include "common/log.h"
#include "store/audit.h"
#include "store/cache.h"
#include "store/checks.h"
#include "store/records.h"
#include "vault/apns_client.h"
#include "vault/tokcache.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"

/* What each answer of APNs means for the key, as a portal shows it. */
static const struct meaning {
	long status;            /* 0: any */
	const char *reason;
	int ok;
	const char *text;
} meanings[] = {
	{ 400, "BadDeviceToken", 1, "APNs accepted the key: its Key ID, Team "
	    "ID, signature, environment and topic (it refused only the "
	    "device token, which the check makes up so that nothing is "
	    "delivered)" },
	{ 403, "InvalidProviderToken", 0, "APNs refused the token: the Key "
	    "ID and Team ID do not belong together (swapped or mistyped), or "
	    "the key was revoked at Apple, or the .p8 is not the key of this "
	    "Key ID (APNs does not say which)" },
	{ 403, "BadEnvironmentKeyInToken", 0, "the key is registered at Apple "
	    "for the other environment (a sandbox-only key used in "
	    "production, or the reverse): upload it with that environment" },
	{ 400, "TopicDisallowed", 0, "the key may not send to this topic: a "
	    "topic-specific key that does not cover it, or a topic of "
	    "another team (APNs does not say which)" },
	{ 400, "BadTopic", 0, "APNs does not know this topic (not a bundle "
	    "id of the team, or a malformed one)" },
	{ 400, "DeviceTokenNotForTopic", 0, "APNs accepted the token but "
	    "judged the device token against the topic; with the check's "
	    "made-up device token this should not happen: the topic may not "
	    "be an app's bundle id (ambiguous)" },
	{ 403, "ExpiredProviderToken", 0, "APNs finds the token more than an "
	    "hour old: the vault's clock is wrong; nothing is known about "
	    "the key" },
	{ 429, "TooManyProviderTokenUpdates", 0, "APNs saw new tokens for "
	    "this team too often (another sender minting its own?); nothing "
	    "is known about the key: check again in 20 minutes" },
	{ 403, "MissingProviderToken", 0, "the request reached APNs without "
	    "its token (a proxy that drops headers?); nothing is known about "
	    "the key" },
	{ 400, "MissingTopic", 0, "APNs wants a topic and got none" },
	{ 403, "Forbidden", 0, "APNs refused the request (\"Forbidden\") "
	    "without saying why" },
	{ 0, NULL, 0, "an answer the check does not interpret (APNs "
	    "overloaded or changed?); nothing is known about the key" },
};

static const struct meaning *
meaning_of(long status, const char *reason)
{
	size_t i;

	for (i = 0; meanings[i].reason != NULL; i++)
		if (meanings[i].status == status &&
		    strcmp(meanings[i].reason, reason) == 0)
			return &meanings[i];
	return &meanings[i];
}

/* --- configuration --- */

void
vault_check_config_free(struct apns_client_config *cfg)
{
	if (cfg == NULL)
		return;
	free((char *)cfg->sandbox_url);
	free((char *)cfg->production_url);
	free((char *)cfg->ca_file);
	free((char *)cfg->proxy);
	free(cfg);
}

static int
dup_or_null(const char *s, const char **out)
{
	*out = NULL;
	if (s == NULL)
		return 0;
	return (*out = strdup(s)) == NULL ? P8V_ERR_ALLOC : 0;
}

int
vault_set_apns_check(struct vault *v, const struct apns_client_config *cfg)
{
	struct apns_client_config *c = NULL;
	const char *what = NULL;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (v == NULL || cfg == NULL)
		goto out;
	if (apns_client_config_check(cfg, &what) != 0) {
		log_errorf("config", "the key check's %s is not usable (an "
		    "https://host[:port] URL, a readable CA file)", what);
		goto out;
	}
	r = P8V_ERR_ALLOC;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    dup_or_null(cfg->sandbox_url, &c->sandbox_url) != 0 ||
	    dup_or_null(cfg->production_url, &c->production_url) != 0 ||
	    dup_or_null(cfg->ca_file, &c->ca_file) != 0 ||
	    dup_or_null(cfg->proxy, &c->proxy) != 0)
		goto out;
	c->timeout_ms = cfg->timeout_ms;
	vault_check_config_free(v->apns_check);
	v->apns_check = c;
	c = NULL;
	r = 0;
 out:
	vault_check_config_free(c);
	return r;
}

/* --- one check --- */

/* A bundle id as Apple writes them: at least two labels of
 * [A-Za-z0-9-] joined by dots. */
static int
looks_like_bundle_id(const char *s)
{
	size_t i, label = 0, dots = 0;

	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			dots++;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-') {
			label++;
		} else {
			return 0;
		}
	}
	return dots > 0 && label > 0;
}

/* The topic to check with: given (valid as a record's topic), the key's
 * first, else the app id if it looks like a bundle id. */
static int
choose_topic(const struct key_record *rec, const char *given,
    const char **topic)
{
	struct key_record probe = { 0 };
	int r;

	*topic = NULL;
	if (given != NULL) {
		r = key_record_set_topics(&probe, &given, 1);
		key_record_free(&probe);
		if (r != 0)
			return P8V_ERR_BAD_FIELD;
		*topic = given;
	} else if (rec->n_topics > 0) {
		*topic = rec->topics[0];
	} else if (looks_like_bundle_id(rec->app)) {
		*topic = rec->app;
	} else {
		return P8V_ERR_MISSING_FIELD;
	}
	return 0;
}

/* The environments to check: given, or the key's own (both for "both"). */
static int
choose_envs(const struct key_record *rec, const char *given,
    enum key_env envs[2], size_t *n)
{
	enum key_env env;

	*n = 0;
	if (given != NULL) {
		if (key_env_from_name(given, &env) != 0 ||
		    env == KEY_ENV_BOTH)
			return P8V_ERR_BAD_FIELD;
		envs[(*n)++] = env;
		return 0;
	}
	if (rec->environment == KEY_ENV_BOTH) {
		envs[(*n)++] = KEY_ENV_DEVELOPMENT;
		envs[(*n)++] = KEY_ENV_PRODUCTION;
	} else {
		envs[(*n)++] = rec->environment;
	}
	return 0;
}

static const char *
base_url(const struct vault *v, enum key_env env)
{
	const struct apns_client_config *c = v->apns_check;

	if (env == KEY_ENV_PRODUCTION)
		return c != NULL && c->production_url != NULL ?
		    c->production_url : APNS_CLIENT_PRODUCTION_URL;
	return c != NULL && c->sandbox_url != NULL ? c->sandbox_url :
	    APNS_CLIENT_SANDBOX_URL;
}

/*
 * Send the check for each of envs with token and topic. *checks gets
 * {"<env>": result} for the environments APNs answered; *all_ok whether
 * every one was ok. On P8V_ERR_APPLE_UNREACHABLE/_TIMEOUT, *failure gets
 * {"cause", "environment"} and *checks what was answered before.
 */
static int
run_checks(struct vault *v, const enum key_env *envs, size_t n,
    const char *token, const char *topic, json_t **checks, int *all_ok,
    json_t **failure)
{
	static const struct apns_client_config defaults = { 0 };
	char cause[APNS_CLIENT_CAUSE_MAX], when[VAULT_TIME_RFC3339_BYTES];
	struct apns_client_answer a;
	const struct meaning *m;
	json_t *o = NULL, *res;
	size_t i;
	int r = P8V_ERR_ALLOC;

	*all_ok = 1;
	*failure = NULL;
	if ((o = json_object()) == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		r = apns_client_post(v->apns_check != NULL ? v->apns_check :
		    &defaults, base_url(v, envs[i]), token, topic,
		    VAULT_CHECK_DEVICE_TOKEN, &a, cause);
		if (r == P8V_ERR_APPLE_UNREACHABLE ||
		    r == P8V_ERR_APPLE_TIMEOUT) {
			log_fields(LOG_LEVEL_WARN, "key_check_unreachable",
			    json_pack("{s:s, s:s}", "environment",
			    key_env_name(envs[i]), "cause", cause),
			    "the key check cannot reach APNs (%s): %s",
			    key_env_name(envs[i]), cause);
			*failure = json_pack("{s:s, s:s}", "cause", cause,
			    "environment", key_env_name(envs[i]));
			if (*failure == NULL)
				r = P8V_ERR_ALLOC;
			goto out;
		}
		if (r != 0)
			goto out;
		r = P8V_ERR_INTERNAL;
		if (vault_time_rfc3339(clock_wall_now(), when) != 0)
			goto out;
		m = meaning_of(a.status, a.reason);
		r = P8V_ERR_ALLOC;
		res = json_pack("{s:b, s:s, s:s, s:i, s:s, s:s, s:s}",
		    "ok", m->ok, "environment", key_env_name(envs[i]),
		    "topic", topic, "apns_status", (int)a.status,
		    "apns_reason", a.reason, "meaning", m->text,
		    "checked_at", when);
		if (json_object_set_new(o, key_env_name(envs[i]), res) != 0)
			goto out;
		if (!m->ok)
			*all_ok = 0;
	}
	r = 0;
 out:
	*checks = o;
	return r;
}

/* The answer object of a check. */
static json_t *
answer_of(const struct key_record *rec, json_t *checks, int all_ok)
{
	return json_pack("{s:s, s:s, s:b, s:O}", "app", rec->app, "key_id",
	    rec->key_id, "ok", all_ok, "checks", checks);
}

/* Results merged into the stored ones: the last per environment. */
static int
merge_results(struct store_txn *txn, const struct key_record *rec,
    json_t *checks)
{
	json_t *old = NULL;
	char *text = NULL;
	int r;

	r = store_checks_get(txn, rec->app, rec->key_id, &text);
	if (r != 0 && r != P8V_ERR_NOT_FOUND && r != P8V_ERR_INTEGRITY)
		goto out;
	if (r == 0)
		old = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	free(text);
	text = NULL;
	if (!json_is_object(old)) {
		json_decref(old);
		if ((old = json_object()) == NULL) {
			r = P8V_ERR_ALLOC;
			goto out;
		}
	}
	r = P8V_ERR_ALLOC;
	if (json_object_update(old, checks) != 0 ||
	    (text = json_dumps(old, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		goto out;
	r = store_checks_put(txn, rec->app, rec->key_id, text, strlen(text));
 out:
	json_decref(old);
	free(text);
	return r;
}

/* The "key.check" audit event: per environment the reason, or the
 * cause of a failure to reach APNs. */
static int
audit_check(struct store_txn *txn, const struct key_record *rec,
    const char *actor, json_t *checks, json_t *failure, int all_ok,
    int upload)
{
	const char *env;
	json_t *ev, *sum = NULL, *res;
	int r = P8V_ERR_ALLOC;

	if ((ev = vault_audit_event(clock_wall_now(), actor, "key.check", rec,
	    failure != NULL ? "unreachable" : all_ok ? "ok" : "failed")) ==
	    NULL)
		return P8V_ERR_ALLOC;
	if ((sum = json_object()) == NULL)
		goto out;
	json_object_foreach(checks, env, res) {
		if (json_object_set(sum, env, json_object_get(res,
		    "apns_reason")) != 0)
			goto out;
	}
	if (json_object_set(ev, "reasons", sum) != 0 ||
	    (failure != NULL && json_object_set(ev, "cause", failure) != 0) ||
	    (upload && json_object_set_new(ev, "upload", json_true()) != 0))
		goto out;
	r = store_audit_append(txn, ev, NULL);
 out:
	json_decref(sum);
	json_decref(ev);
	return r;
}

struct keep {
	const struct key_record *rec;
	const char *actor;
	json_t *checks;
	json_t *failure;
	int all_ok;
};

/* Keep a stored key's results (when APNs answered) and audit the check,
 * if the key is still the one checked. */
static int
keep_txn(struct store_txn *txn, void *arg)
{
	struct keep *k = arg;
	struct key_record cur = { 0 };
	int r;

	r = key_record_get(txn, k->rec->app, k->rec->key_id, &cur);
	if (r == P8V_ERR_NOT_FOUND)
		r = P8V_ERR_KEY_NOT_FOUND;
	if (r != 0)
		goto out;
	r = P8V_ERR_KEY_REVOKED;
	if (cur.state == KEY_STATE_REVOKED)
		goto out;
	r = P8V_ERR_KEY_NOT_FOUND;
	if (strcmp(cur.fingerprint, k->rec->fingerprint) != 0)
		goto out;
	if (json_object_size(k->checks) > 0 &&
	    (r = merge_results(txn, k->rec, k->checks)) != 0)
		goto out;
	r = audit_check(txn, k->rec, k->actor, k->checks, k->failure,
	    k->all_ok, 0);
 out:
	key_record_free(&cur);
	return r;
}

struct get {
	const char *app, *key_id;
	struct key_record rec;
};

static int
get_txn(struct store_txn *txn, void *arg)
{
	struct get *g = arg;

	key_record_free(&g->rec);
	return key_record_get(txn, g->app, g->key_id, &g->rec);
}

/* Check a stored record: token, requests, results kept. */
static int
check_stored(struct vault *v, const struct key_record *rec,
    const char *environment, const char *topic_given, const char *actor,
    json_t **out)
{
	struct vault_token tok;
	struct keep k;
	enum key_env envs[2];
	const char *topic;
	size_t n;
	int failed, r;

	memset(&tok, 0, sizeof(tok));
	memset(&k, 0, sizeof(k));
	if ((r = choose_envs(rec, environment, envs, &n)) != 0 ||
	    (r = choose_topic(rec, topic_given, &topic)) != 0)
		goto out;
	r = P8V_ERR_KEY_REVOKED;
	if (rec->state == KEY_STATE_REVOKED)
		goto out;
	r = P8V_ERR_SERVICE_NOT_ALLOWED;
	if ((rec->services & KEY_SERVICE_APNS) == 0)
		goto out;
	if ((r = vault_record_vouch(v, rec)) != 0 ||
	    (r = vault_apns_token_key(v, rec, actor, &tok)) != 0)
		goto out;
	r = run_checks(v, envs, n, tok.token, topic, &k.checks, &k.all_ok,
	    &k.failure);
	if (r != 0 && k.failure == NULL)
		goto out;
	failed = r;
	k.rec = rec;
	k.actor = actor;
	if ((r = store_write(v->store, keep_txn, &k)) != 0)
		goto out;
	if (k.failure != NULL) {
		*out = k.failure;
		k.failure = NULL;
		r = failed;
		goto out;
	}
	r = P8V_ERR_ALLOC;
	if ((*out = answer_of(rec, k.checks, k.all_ok)) == NULL)
		goto out;
	log_fields(LOG_LEVEL_INFO, "key_checked", json_pack("{s:s, s:s, s:b}",
	    "app", rec->app, "key_id", rec->key_id, "ok", k.all_ok),
	    "key %s/%s checked with Apple: %s", rec->app, rec->key_id,
	    k.all_ok ? "ok" : "refused");
	r = 0;
 out:
	json_decref(k.checks);
	json_decref(k.failure);
	vault_token_finish(&tok);
	return r;
}

int
vault_key_check(struct vault *v, const char *app, const char *key_id,
    const char *environment, const char *topic, const char *actor,
    json_t **out)
{
	struct get g;
	int r = P8V_ERR_INVALID_ARGUMENT;

	memset(&g, 0, sizeof(g));
	if (out != NULL)
		*out = NULL;
	if (v == NULL || out == NULL || vault_actor_valid(actor) != 0)
		goto out;
	if ((r = ids_app_valid(app)) != 0 ||
	    (r = ids_key_id_valid(key_id)) != 0)
		goto out;
	g.app = app;
	g.key_id = key_id;
	r = store_read(v->store, get_txn, &g);
	if (r == P8V_ERR_NOT_FOUND)
		r = P8V_ERR_KEY_NOT_FOUND;
	if (r != 0)
		goto out;
	r = check_stored(v, &g.rec, environment, topic, actor, out);
 out:
	key_record_free(&g.rec);
	return r;
}

/* --- the check of an upload --- */

struct failed {
	const struct key_record *rec;
	const char *actor;
	json_t *checks, *failure;
};

static int
failed_txn(struct store_txn *txn, void *arg)
{
	struct failed *f = arg;

	return audit_check(txn, f->rec, f->actor, f->checks, f->failure, 0, 1);
}

int
vault_check_upload(struct vault *v, const struct key_record *rec,
    const char *actor, struct vault_upload_check *c)
{
	struct keeper_record kr;
	struct failed f;
	struct get g;
	enum keeper_step step = KEEPER_STEP_NONE;
	enum key_env envs[2];
	const char *topic;
	uint8_t *aad = NULL;
	size_t aad_len = 0, n;
	int all_ok = 0, failed, r;

	memset(&g, 0, sizeof(g));
	memset(&f, 0, sizeof(f));
	if ((r = choose_envs(rec, NULL, envs, &n)) != 0 ||
	    (r = choose_topic(rec, NULL, &topic)) != 0)
		goto out;
	g.app = rec->app;
	g.key_id = rec->key_id;
	r = store_read(v->store, get_txn, &g);
	if (r == 0) {
		/* Stored already: the same key is checked with its shared
		 * token; another is refused by the upload itself. */
		if (g.rec.state == KEY_STATE_REVOKED ||
		    strcmp(g.rec.team_id, rec->team_id) != 0 ||
		    strcmp(g.rec.fingerprint, rec->fingerprint) != 0) {
			r = 0;
			goto out;
		}
		r = check_stored(v, &g.rec, NULL, NULL, actor, &c->answer);
		if (r == 0 && !json_is_true(json_object_get(c->answer, "ok")))
			r = P8V_ERR_APPLE_CHECK_FAILED;
		goto out;
	}
	if (r != P8V_ERR_NOT_FOUND)
		goto out;
	r = P8V_ERR_SERVICE_NOT_ALLOWED;
	if ((rec->services & KEY_SERVICE_APNS) == 0)
		goto out;
	/* The key's first token, signed by the keeper from the sealed
	 * record (nothing else leaves it); it becomes the key's shared
	 * token if the key is stored. */
	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0)
		goto out;
	vault_keeper_record(rec, aad, aad_len, &kr);
	if ((r = keeper_sign_apns(v->keeper, &kr, v->boot_id, &c->token,
	    &step)) != 0)
		goto out;
	r = run_checks(v, envs, n, c->token.t.token, topic, &f.checks,
	    &all_ok, &f.failure);
	if (r != 0 && f.failure == NULL)
		goto out;
	failed = r;
	if (f.failure != NULL || !all_ok) {
		/* Nothing is stored but the audit event. */
		f.rec = rec;
		f.actor = actor;
		if ((r = store_write(v->store, failed_txn, &f)) != 0)
			goto out;
		if (f.failure != NULL) {
			r = failed;
			c->answer = f.failure;
			f.failure = NULL;
		} else {
			r = P8V_ERR_APPLE_CHECK_FAILED;
			if ((c->answer = answer_of(rec, f.checks, 0)) == NULL)
				r = P8V_ERR_ALLOC;
		}
		goto out;
	}
	r = P8V_ERR_ALLOC;
	if ((c->answer = answer_of(rec, f.checks, 1)) == NULL ||
	    (c->results = json_dumps(f.checks, JSON_COMPACT |
	    JSON_SORT_KEYS)) == NULL)
		goto out;
	c->pending = 1;
	r = 0;
 out:
	json_decref(f.checks);
	json_decref(f.failure);
	free(aad);
	key_record_free(&g.rec);
	return r;
}

int
vault_check_upload_txn(struct store_txn *txn, struct vault *v,
    const struct key_record *rec, const char *actor,
    struct vault_upload_check *c)
{
	json_t *ev = NULL, *checks;
	int r;

	if (!c->pending)
		return 0;
	checks = json_object_get(c->answer, "checks");
	if ((r = store_checks_put(txn, rec->app, rec->key_id, c->results,
	    strlen(c->results))) != 0 ||
	    (r = audit_check(txn, rec, actor, checks, NULL, 1, 1)) != 0)
		return r;
	/* The token the check used is the key's first shared token: filed
	 * and audited as any mint. */
	if ((r = store_cache_put(txn, c->token.cache_key,
	    c->token.t.issued_at + VAULT_APNS_LIFETIME_S, c->token.blob,
	    c->token.blob_len)) != 0 ||
	    (r = vault_count_wraps(txn, c->token.mk_id, 1)) != 0)
		return r;
	r = P8V_ERR_ALLOC;
	if ((ev = vault_audit_event(c->token.t.issued_at, actor, "apns.mint",
	    rec, "ok")) == NULL ||
	    json_object_set_new(ev, "reason",
	    json_string(vault_mint_reason_name(VAULT_MINT_COLD))) != 0 ||
	    json_object_set_new(ev, "issued_at",
	    json_integer((json_int_t)c->token.t.issued_at)) != 0 ||
	    json_object_set_new(ev, "for", json_string("key.check")) != 0)
		goto out;
	r = store_audit_append(txn, ev, NULL);
 out:
	json_decref(ev);
	return r;
}

void
vault_check_upload_done(struct vault *v, const struct key_record *rec,
    struct vault_upload_check *c)
{
	struct tokcache_id id;

	if (!c->pending)
		return;
	tokcache_id_of(rec, &id);
	/* A failure leaves the persisted copy, loaded at the next start;
	 * until then the next request mints (logged, not an error). */
	if (tokcache_seed(v->tokens, &id, c->token.t.token,
	    c->token.t.issued_at, c->token.boot_ns) != 0)
		log_warnf("apns_cache", "the key check's token for %s/%s was "
		    "not cached", rec->app, rec->key_id);
	else
		VAULT_COUNT(v->apns_mints[VAULT_MINT_COLD]);
}

void
vault_check_upload_finish(struct vault_upload_check *c)
{
	if (c == NULL)
		return;
	json_decref(c->answer);
	keeper_apns_token_finish(&c->token);
	free(c->results);
	memset(c, 0, sizeof(*c));
}

/* --- the results in the metadata --- */

int
vault_checks_attach_text(const char *text, json_t *meta)
{
	json_t *o = NULL;

	if (text != NULL) {
		char *again = NULL;

		/* Canonical JSON only, as every JSON document in the store
		 * (docs/security.md, "Databases"). */
		o = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
		if (json_is_object(o) && ((again = json_dumps(o, JSON_COMPACT |
		    JSON_SORT_KEYS)) == NULL || strcmp(again, text) != 0)) {
			json_decref(o);
			o = NULL;
		}
		free(again);
		if (!json_is_object(o)) {
			log_warnf("key_checks", "stored check results of %s/%s "
			    "do not parse: shown as none",
			    json_string_value(json_object_get(meta, "app")),
			    json_string_value(json_object_get(meta, "key_id")));
			json_decref(o);
			o = NULL;
		}
	}
	if (o == NULL && (o = json_object()) == NULL)
		return P8V_ERR_ALLOC;
	return json_object_set_new(meta, "checks", o) == 0 ? 0 : P8V_ERR_ALLOC;
}

int
vault_checks_attach(struct store_txn *txn, const struct key_record *rec,
    json_t *meta)
{
	char *text = NULL;
	int r;

	r = store_checks_get(txn, rec->app, rec->key_id, &text);
	if (r != 0 && r != P8V_ERR_NOT_FOUND && r != P8V_ERR_INTEGRITY)
		return r;
	r = vault_checks_attach_text(text, meta);
	free(text);
	return r;
}

struct attach {
	const struct key_record *rec;
	char *text;
};

static int
attach_txn(struct store_txn *txn, void *arg)
{
	struct attach *a = arg;
	int r;

	free(a->text);
	a->text = NULL;
	r = store_checks_get(txn, a->rec->app, a->rec->key_id, &a->text);
	return r == P8V_ERR_NOT_FOUND || r == P8V_ERR_INTEGRITY ? 0 : r;
}

int
vault_checks_attach_read(struct vault *v, const struct key_record *rec,
    json_t *meta)
{
	struct attach a = { rec, NULL };
	int r;

	if ((r = store_read(v->store, attach_txn, &a)) == 0)
		r = vault_checks_attach_text(a.text, meta);
	free(a.text);
	return r;
}
