/* auth.c: bearer tokens; see auth.h. */
#include "api/auth.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "api/http.h"
#include "common/err.h"
#include "common/ids.h"
#include "common/log.h"
#include "crypto/secmem.h"

/* The two enums are one vocabulary: the route's role is the stored one. */
_Static_assert((int)API_ROLE_NONE == (int)APITOKEN_ROLE_NONE &&
    (int)API_ROLE_PORTAL == (int)APITOKEN_ROLE_PORTAL &&
    (int)API_ROLE_SIGNER == (int)APITOKEN_ROLE_SIGNER &&
    (int)API_ROLE_ADMIN == (int)APITOKEN_ROLE_ADMIN,
    "enum api_role and enum apitoken_role differ");

const char *
api_auth_role_name(enum api_role role)
{
	return apitoken_role_name((enum apitoken_role)role);
}

int
api_auth_role_parse(const char *name, enum api_role *out)
{
	enum apitoken_role role;
	int r;

	if (out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = apitoken_role_parse(name, &role)) != 0)
		return r;
	*out = (enum api_role)role;
	return 0;
}

int
api_auth_bearer(const char *authorization, const char **token, size_t *len)
{
	const char *p;
	size_t n;

	if (authorization == NULL || token == NULL || len == NULL ||
	    strncasecmp(authorization, "Bearer", 6) != 0 ||
	    authorization[6] != ' ')
		return P8V_ERR_UNAUTHORIZED;
	p = authorization + 6;
	while (*p == ' ')
		p++;
	n = strlen(p);
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	if (n == 0)
		return P8V_ERR_UNAUTHORIZED;
	*token = p;
	*len = n;
	return 0;
}

static int
role_covers(enum api_role have, enum api_role required)
{
	if (have == API_ROLE_NONE)
		return 0;
	if (have == API_ROLE_ADMIN || required == API_AUTH_ANY_ROLE)
		return 1;
	return have == required;
}

/*
 * What the secret of a token whose id no credential has is compared with,
 * so that an unknown id costs the same work as a wrong secret (a SHA-256
 * and a 32-byte compare) and timing does not tell which ids exist. The
 * compare is never a match that counts: its result is thrown away. Any
 * value will do; a secret hashing to it would need a SHA-256 preimage.
 */
static const uint8_t absent_cred_hash[CRED_SECRET_HASH_BYTES] = {
	0x70, 0x38, 0x76, 0x20, 0x6e, 0x6f, 0x20, 0x73,
	0x75, 0x63, 0x68, 0x20, 0x63, 0x72, 0x65, 0x64,
	0x65, 0x6e, 0x74, 0x69, 0x61, 0x6c, 0x2c, 0x20,
	0x6e, 0x65, 0x76, 0x65, 0x72, 0x2e, 0x2e, 0x2e,
};

/* The hash an unknown id's secret is compared with: absent_cred_hash, or
 * cred's when there is one. */
static const uint8_t *
compared_hash(const struct store_cred *cred)
{
	return cred != NULL ? cred->secret_hash : absent_cred_hash;
}

/* api_auth_decide once the secret has been compared: match is 1 if it is
 * cred's. */
static int
decide_matched(const struct store_cred *cred, int match,
    enum api_role required, const char *app, enum api_role *granted)
{
	enum apitoken_role stored;
	enum api_role have = API_ROLE_NONE;

	if (!match || cred->revoked_at != 0)
		return P8V_ERR_UNAUTHORIZED;
	/* A role this version does not know grants nothing. */
	if (apitoken_role_parse(cred->role, &stored) == 0)
		have = (enum api_role)stored;
	if (!role_covers(have, required))
		return P8V_ERR_FORBIDDEN;
	if (app != NULL && !store_cred_allows_app(cred, app))
		return P8V_ERR_FORBIDDEN;
	if (granted != NULL)
		*granted = have;
	return 0;
}

int
api_auth_decide(const struct store_cred *cred,
    const uint8_t secret_hash[CRED_SECRET_HASH_BYTES], enum api_role required,
    const char *app, enum api_role *granted)
{
	int match;

	if (secret_hash == NULL)
		return P8V_ERR_UNAUTHORIZED;
	/* Compare first and decide after, so that a revoked credential, and
	 * an absent one (against absent_cred_hash), take as long as a wrong
	 * secret. */
	match = secmem_equal(secret_hash, compared_hash(cred),
	    CRED_SECRET_HASH_BYTES);
	if (cred == NULL)
		return P8V_ERR_UNAUTHORIZED;
	return decide_matched(cred, match, required, app, granted);
}

struct lookup {
	const char *id;
	struct store_cred cred;
	int found;
	uint64_t store_gen;             /* of the snapshot read */
};

/*
 * Credentials read recently, by token id, each as of one store generation
 * (store_generation: it changes with every commit, by this process or the
 * CLI's), so that a request with a known token needs neither a store
 * transaction nor decoding the credential's JSON (the largest share of a
 * cached apns-token request's CPU before this cache: docs/benchmarks.md).
 * A new token, a revocation, any commit at all, and the next request reads
 * the store again: the promise that a revoked token is refused from the
 * very next request holds. auth.h, "Credential cache", is the contract.
 *
 * A slot also remembers the last secret that matched its credential, as a
 * keyed hash: SipHash-2-4 with 128-bit output (crypto_shorthash_siphashx24)
 * under a key drawn at random once per process. A request whose secret has
 * that tag is the same secret, already checked against the stored SHA-256
 * (a forgery needs the key, which never leaves the process); any other
 * secret is hashed with SHA-256 and compared as before. SipHash is several
 * times cheaper than SHA-256 on a 43-byte secret. Neither the tag nor the
 * key reveals a secret: the cache holds hashes, never secrets.
 */
/* Direct-mapped by a hash of the token id; a few fleets' tokens. */
#define AUTH_CACHE_SLOTS 64
#define AUTH_TAG_BYTES crypto_shorthash_siphashx24_BYTES

struct auth_slot {
	pthread_mutex_t lock;
	int used;
	uint64_t store;                 /* store_instance */
	uint64_t store_gen;
	char id[APITOKEN_ID_LEN + 1];
	int found;
	struct store_cred cred;
	int tagged;                     /* tag set: a secret matched cred */
	uint8_t tag[AUTH_TAG_BYTES];
};

static struct auth_slot auth_cache[AUTH_CACHE_SLOTS];
static uint8_t auth_tag_key[crypto_shorthash_siphashx24_KEYBYTES];
static pthread_once_t auth_cache_once = PTHREAD_ONCE_INIT;
static int auth_cache_ready;

static void
auth_cache_init(void)
{
	size_t i;

	if (sodium_init() < 0 ||
	    secmem_random(auth_tag_key, sizeof(auth_tag_key)) != 0)
		return;
	for (i = 0; i < AUTH_CACHE_SLOTS; i++)
		if (pthread_mutex_init(&auth_cache[i].lock, NULL) != 0)
			return;
	auth_cache_ready = 1;
}

static struct auth_slot *
auth_slot_of(const char *id)
{
	uint32_t h = 2166136261u;

	if (pthread_once(&auth_cache_once, auth_cache_init) != 0 ||
	    !auth_cache_ready)
		return NULL;
	for (; *id != '\0'; id++)
		h = (h ^ (uint8_t)*id) * 16777619u;
	return &auth_cache[h & (AUTH_CACHE_SLOTS - 1)];
}

/* The tag of a secret (APITOKEN_SECRET_LEN characters). */
static void
auth_tag(const char *secret, uint8_t tag[AUTH_TAG_BYTES])
{
	crypto_shorthash_siphashx24(tag, (const unsigned char *)secret,
	    APITOKEN_SECRET_LEN, auth_tag_key);
}

/*
 * The decision for the secret of tag on c's credential (c locked and
 * current): without SHA-256 when tag is the slot's, else by the stored
 * hash, remembering tag when it matches. *hash (zeroes on entry) is the
 * SHA-256 of secret afterwards if it was needed.
 */
static int
slot_decide(struct auth_slot *c, const char *secret,
    const uint8_t tag[AUTH_TAG_BYTES], uint8_t hash[CRED_SECRET_HASH_BYTES],
    enum api_role required, const char *app, enum api_role *granted)
{
	int match, tag_match;

	/* The tag is compared whatever the slot holds (an untagged slot's tag
	 * is zeroes), and an unknown id, never tagged, goes on to the hash
	 * and the compare, as a wrong secret of a known id does. */
	tag_match = secmem_equal(tag, c->tag, AUTH_TAG_BYTES);
	if (c->found && c->tagged && tag_match)
		return decide_matched(&c->cred, 1, required, app, granted);
	if (store_cred_hash_secret(secret, APITOKEN_SECRET_LEN, hash) != 0)
		return P8V_ERR_INTERNAL;
	match = secmem_equal(hash, compared_hash(c->found ? &c->cred : NULL),
	    CRED_SECRET_HASH_BYTES);
	if (!c->found)
		return P8V_ERR_UNAUTHORIZED;
	if (match) {
		memcpy(c->tag, tag, AUTH_TAG_BYTES);
		c->tagged = 1;
	}
	return decide_matched(&c->cred, match, required, app, granted);
}

/* The decision on id's cached credential in c (its slot), if the store
 * has not changed since it was read: 1 (*result set) or 0 (read the
 * store). */
static int
auth_cache_decide(struct auth_slot *c, struct store *store, const char *id,
    const char *secret, const uint8_t tag[AUTH_TAG_BYTES],
    uint8_t hash[CRED_SECRET_HASH_BYTES], enum api_role required,
    const char *app, enum api_role *granted, int *result)
{
	uint64_t gen;
	int hit = 0;

	if (store_generation(store, &gen) != 0)
		return 0;
	pthread_mutex_lock(&c->lock);
	if (c->used && c->store == store_instance(store) &&
	    c->store_gen == gen && strcmp(c->id, id) == 0) {
		*result = slot_decide(c, secret, tag, hash, required, app,
		    granted);
		hit = 1;
	}
	pthread_mutex_unlock(&c->lock);
	return hit;
}

/* Keep what l read in c, l->id's slot (its credential moves into the
 * cache), with the tag of the secret if it matched. */
static void
auth_cache_fill(struct auth_slot *c, struct store *store, struct lookup *l,
    const uint8_t tag[AUTH_TAG_BYTES], int matched)
{
	pthread_mutex_lock(&c->lock);
	store_cred_free(&c->cred);
	c->used = 1;
	c->store = store_instance(store);
	c->store_gen = l->store_gen;
	memcpy(c->id, l->id, sizeof(c->id));
	c->found = l->found;
	c->cred = l->cred;
	memset(&l->cred, 0, sizeof(l->cred));
	c->tagged = l->found && matched;
	if (c->tagged)
		memcpy(c->tag, tag, AUTH_TAG_BYTES);
	else
		sodium_memzero(c->tag, sizeof(c->tag));
	pthread_mutex_unlock(&c->lock);
}

static int
lookup_txn(struct store_txn *txn, void *arg)
{
	struct lookup *l = arg;
	int r;

	store_cred_free(&l->cred);
	l->found = 0;
	l->store_gen = store_txn_generation(txn);
	r = store_cred_get(txn, l->id, &l->cred);
	if (r == P8V_ERR_NOT_FOUND)
		return 0;
	if (r == 0)
		l->found = 1;
	return r;
}

/*
 * api_auth_verify, also handing back the credential (cred, may be NULL;
 * the caller frees it with store_cred_free; filled only on 0).
 */
static int
verify(struct store *store, const char *authorization,
    enum api_role required, const char *app, struct api_principal *who,
    struct store_cred *cred)
{
	struct lookup l;
	struct auth_slot *slot = NULL;
	uint8_t hash[CRED_SECRET_HASH_BYTES], tag[AUTH_TAG_BYTES];
	char id[APITOKEN_ID_LEN + 1];
	const char *token, *secret;
	enum api_role granted = API_ROLE_NONE;
	size_t len;
	int looked_up = 0, matched, r = P8V_ERR_INTERNAL;

	/* l (a whole credential) is set up only when the store is read: not
	 * on the cached answers of most requests. */
	memset(hash, 0, sizeof(hash));
	memset(tag, 0, sizeof(tag));
	if (cred != NULL)
		memset(cred, 0, sizeof(*cred));
	if (store == NULL || who == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if ((r = api_auth_bearer(authorization, &token, &len)) != 0 ||
	    (r = apitoken_parse(token, len, id, &secret)) != 0)
		goto out;
	if (cred == NULL) {
		if ((slot = auth_slot_of(id)) == NULL) {
			r = P8V_ERR_INTERNAL;
			goto out;
		}
		auth_tag(secret, tag);
		if (auth_cache_decide(slot, store, id, secret, tag, hash,
		    required, app, &granted, &r)) {
			if (r != 0)
				goto out;
			goto granted;
		}
	}
	if ((r = store_cred_hash_secret(secret, APITOKEN_SECRET_LEN,
	    hash)) != 0) {
		r = P8V_ERR_INTERNAL;
		goto out;
	}
	memset(&l, 0, sizeof(l));
	looked_up = 1;
	l.id = id;
	if ((r = store_read(store, lookup_txn, &l)) != 0) {
		/* The id, never the secret: ids are what operators list. */
		log_fields(LOG_LEVEL_ERROR, "auth_store",
		    json_pack("{s:s, s:s}", "token_id", id, "error",
		    p8v_errname(r)),
		    "reading the credential failed");
		/* A store out of reach is worth a retry (503); anything
		 * else is the store's failure (500). */
		if (r != P8V_ERR_STORE_UNAVAILABLE)
			r = P8V_ERR_STORE;
		goto out;
	}
	r = api_auth_decide(l.found ? &l.cred : NULL, hash, required, app,
	    &granted);
	if (slot != NULL) {
		/* Compared whether the id is known or not (as above). */
		matched = secmem_equal(hash, compared_hash(l.found ? &l.cred :
		    NULL), CRED_SECRET_HASH_BYTES);
		auth_cache_fill(slot, store, &l, tag, l.found && matched);
	}
	if (r != 0)
		goto out;
 granted:
	who->role = granted;
	memcpy(who->actor, id, sizeof(id));
	if (cred != NULL) {
		*cred = l.cred;
		memset(&l.cred, 0, sizeof(l.cred));
	}
	r = 0;
 out:
	if (looked_up)
		store_cred_free(&l.cred);
	secmem_wipe(hash, sizeof(hash));
	secmem_wipe(tag, sizeof(tag));
	return r;
}

int
api_auth_verify(struct store *store, const char *authorization,
    enum api_role required, const char *app, struct api_principal *who)
{
	return verify(store, authorization, required, app, who, NULL);
}

/* verify() on a request. A 401's WWW-Authenticate: Bearer challenge is
 * added by the framework (api/http.c) to every P8V_ERR_UNAUTHORIZED,
 * whether the hook or a handler returns it. */
static int
verify_request(struct api_request *req, enum api_role required,
    const char *app, struct store_cred *cred)
{
	const struct api_backend *be;
	struct api_principal *who;

	if ((be = api_request_backend(req)) == NULL || be->store == NULL)
		return P8V_ERR_NOT_READY;
	who = api_request_principal(req);
	return verify(be->store, api_request_authorization(req),
	    required, app, who, cred);
}

/* The name of a role for people, as `token create --role` takes it. */
static const char *
role_name(enum api_role role)
{
	const char *name = apitoken_role_name((enum apitoken_role)role);

	return name != NULL ? name : "unknown";
}

/*
 * A refused token: say whether its role or its app list is the cause.
 * The token is checked again without the app and for any role (its secret
 * matched already, so this tells its holder only what its own token
 * allows); the principal that check fills is cleared again.
 */
static void
explain_forbidden(struct api_request *req, enum api_role required,
    const char *app)
{
	struct api_principal *who = api_request_principal(req);
	enum api_role have;

	if (verify_request(req, API_AUTH_ANY_ROLE, NULL, NULL) != 0)
		goto out;
	have = who->role;
	if (app != NULL && role_covers(have, required))
		api_request_error_detail(req, P8V_ERR_FORBIDDEN,
		    "this token is limited to other apps: it may not act on "
		    "app %s (p8vault token create --app)",
		    ids_app_valid(app) == 0 ? app :
		    "(an invalid app id)");
	else if (required == API_ROLE_ADMIN)
		api_request_error_detail(req, P8V_ERR_FORBIDDEN,
		    "a %s token may not use this route: it needs an admin "
		    "token", role_name(have));
	else
		api_request_error_detail(req, P8V_ERR_FORBIDDEN,
		    "a %s token may not use this route: it needs a %s or "
		    "admin token", role_name(have), role_name(required));
 out:
	memset(who, 0, sizeof(*who));
}

int
api_authenticate(struct api_request *req, enum api_role required)
{
	const char *app;
	int r;

	if (req == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* Routes without a role never come here: refusing is safer than
	 * reading NONE as "any token". */
	if (required == API_ROLE_NONE)
		return P8V_ERR_INTERNAL;
	app = api_request_param(req, "app");
	r = verify_request(req, required, app, NULL);
	if (r == P8V_ERR_FORBIDDEN)
		explain_forbidden(req, required, app);
	return r;
}

int
api_auth_allows_app(struct api_request *req, const char *app)
{
	if (req == NULL || app == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return verify_request(req, API_AUTH_ANY_ROLE, app, NULL);
}

int
api_auth_credential(struct api_request *req, struct store_cred *cred)
{
	if (req == NULL || cred == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	memset(cred, 0, sizeof(*cred));
	return verify_request(req, API_AUTH_ANY_ROLE, NULL, cred);
}

int
api_auth_whoami(struct api_request *req)
{
	struct store_cred cred;
	json_t *body = NULL, *apps = NULL;
	size_t i;
	int r = P8V_ERR_INTERNAL;

	memset(&cred, 0, sizeof(cred));
	if ((r = verify_request(req, API_AUTH_ANY_ROLE, NULL, &cred)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((apps = json_array()) == NULL)
		goto out;
	for (i = 0; i < cred.n_apps; i++)
		if (json_array_append_new(apps, json_string(cred.apps[i])) != 0)
			goto out;
	if ((body = json_pack("{s:s, s:s, s:O}", "id", cred.id, "role",
	    cred.role, "apps", apps)) == NULL)
		goto out;
	r = api_respond(req, 200, body);
	body = NULL;
 out:
	json_decref(apps);
	json_decref(body);
	store_cred_free(&cred);
	return r;
}

int
api_auth_is_stub(void)
{
	return 0;
}
