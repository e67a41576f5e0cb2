/* creds.c: API credentials; see creds.h. */
#include "store/creds.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/codec.h"
#include "common/err.h"
#include "common/ids.h"
#include "crypto/secmem.h"

#define CRED_FORMAT 1
/* 256 app ids of 64 characters and the other fields: ~17 KiB. */
#define CRED_JSON_MAX (32 * 1024)
#define CRED_MEMBERS 7

static int
role_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= CRED_ROLE_MAX || !((s[i] >= 'a' && s[i] <= 'z') ||
		    s[i] == '_'))
			return 0;
	return i > 0;
}

static int
name_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= CRED_NAME_MAX || s[i] < 0x20 || s[i] > 0x7e)
			return 0;
	return i > 0;
}

int
store_cred_hash_secret(const void *secret, size_t len,
    uint8_t out[CRED_SECRET_HASH_BYTES])
{
	if (secret == NULL || len == 0 || len > CRED_SECRET_MAX || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (sodium_init() < 0)
		return P8V_ERR_CRYPTO;
	crypto_hash_sha256(out, secret, len);
	return 0;
}

int
store_cred_secret_matches(const struct store_cred *cred, const void *secret,
    size_t len)
{
	uint8_t h[CRED_SECRET_HASH_BYTES];
	int ok;

	if (cred == NULL || store_cred_hash_secret(secret, len, h) != 0)
		return 0;
	ok = secmem_equal(h, cred->secret_hash, sizeof(h));
	secmem_wipe(h, sizeof(h));
	return ok;
}

int
store_cred_allows_app(const struct store_cred *cred, const char *app)
{
	size_t i;

	if (cred == NULL || app == NULL)
		return 0;
	for (i = 0; i < cred->n_apps; i++)
		if (strcmp(cred->apps[i], CRED_ALL_APPS) == 0 ||
		    strcmp(cred->apps[i], app) == 0)
			return 1;
	return 0;
}

static void
free_apps(char **apps, size_t n)
{
	size_t i;

	for (i = 0; apps != NULL && i < n; i++)
		free(apps[i]);
	free(apps);
}

void
store_cred_free(struct store_cred *cred)
{
	if (cred == NULL)
		return;
	free_apps(cred->apps, cred->n_apps);
	memset(cred, 0, sizeof(*cred));
}

static int
check_apps(const char *const *apps, size_t n)
{
	size_t i, j;
	int r;

	if (n > CRED_MAX_APPS || (n > 0 && apps == NULL))
		return P8V_ERR_BAD_FIELD;
	for (i = 0; i < n; i++) {
		if (apps[i] == NULL)
			return P8V_ERR_BAD_FIELD;
		if (strcmp(apps[i], CRED_ALL_APPS) == 0) {
			if (n != 1)
				return P8V_ERR_BAD_FIELD;
			continue;
		}
		if ((r = ids_app_valid(apps[i])) != 0)
			return r;
		for (j = 0; j < i; j++)
			if (strcmp(apps[i], apps[j]) == 0)
				return P8V_ERR_BAD_FIELD;
	}
	return 0;
}

int
store_cred_set_apps(struct store_cred *cred, const char *const *apps, size_t n)
{
	char **a = NULL;
	size_t i;
	int r;

	if (cred == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = check_apps(apps, n)) != 0)
		return r;
	if (n > 0 && (a = calloc(n, sizeof(*a))) == NULL)
		return P8V_ERR_ALLOC;
	for (i = 0; i < n; i++) {
		if ((a[i] = strdup(apps[i])) == NULL) {
			free_apps(a, n);
			return P8V_ERR_ALLOC;
		}
	}
	free_apps(cred->apps, cred->n_apps);
	cred->apps = a;
	cred->n_apps = n;
	return 0;
}

int
store_cred_check(const struct store_cred *cred)
{
	int r;

	if (cred == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (!ids_name_ok(cred->id, CRED_ID_MAX) || !role_ok(cred->role) ||
	    !name_ok(cred->name))
		return P8V_ERR_BAD_FIELD;
	if ((r = check_apps((const char *const *)cred->apps,
	    cred->n_apps)) != 0)
		return r;
	if (cred->created_at < 0 || cred->created_at > CODEC_JSON_INT_MAX ||
	    cred->revoked_at < 0 || cred->revoked_at > CODEC_JSON_INT_MAX ||
	    (cred->revoked_at != 0 && cred->revoked_at < cred->created_at))
		return P8V_ERR_BAD_FIELD;
	return 0;
}

static int
encode(const struct store_cred *cred, uint8_t **val, size_t *vlen)
{
	char hash[2 * CRED_SECRET_HASH_BYTES + 1], *json = NULL;
	json_t *obj = NULL, *apps = NULL;
	size_t i, n;
	int r;

	*val = NULL;
	if ((r = store_cred_check(cred)) != 0)
		return r;
	r = P8V_ERR_ALLOC;
	if ((apps = json_array()) == NULL)
		goto out;
	for (i = 0; i < cred->n_apps; i++)
		if (json_array_append_new(apps, json_string(cred->apps[i])) != 0)
			goto out;
	codec_hex_encode(cred->secret_hash, CRED_SECRET_HASH_BYTES, hash);
	if ((obj = json_pack("{s:O, s:I, s:s, s:s, s:I, s:s, s:s}",
	    "apps", apps, "created_at", (json_int_t)cred->created_at,
	    "id", cred->id, "name", cred->name,
	    "revoked_at", (json_int_t)cred->revoked_at, "role", cred->role,
	    "secret_sha256", hash)) == NULL)
		goto out;
	if ((r = codec_json_dump(obj, CRED_JSON_MAX, &json, &n)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((*val = malloc(n + 1)) == NULL)
		goto out;
	(*val)[0] = CRED_FORMAT;
	memcpy(*val + 1, json, n);
	*vlen = n + 1;
	r = 0;
 out:
	json_decref(obj);
	json_decref(apps);
	free(json);
	return r;
}

static int
decode(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    struct store_cred *cred)
{
	struct store_cred tmp = { 0 };
	char hash[2 * CRED_SECRET_HASH_BYTES + 1];
	json_t *obj = NULL, *apps, *a;
	uint8_t *again = NULL;
	size_t i, alen;
	int r = P8V_ERR_INTEGRITY;

	memset(cred, 0, sizeof(*cred));
	if (vlen < 1 || val[0] != CRED_FORMAT || vlen - 1 > CRED_JSON_MAX)
		goto out;
	if ((r = codec_json_decode(val + 1, vlen - 1, &obj)) != 0)
		goto out;               /* P8V_ERR_INTEGRITY or P8V_ERR_ALLOC */
	r = P8V_ERR_INTEGRITY;
	if (json_object_size(obj) != CRED_MEMBERS)
		goto out;
	if (codec_json_str(obj, "id", tmp.id, sizeof(tmp.id)) != 0 ||
	    codec_json_str(obj, "role", tmp.role, sizeof(tmp.role)) != 0 ||
	    codec_json_str(obj, "name", tmp.name, sizeof(tmp.name)) != 0 ||
	    codec_json_str(obj, "secret_sha256", hash, sizeof(hash)) != 0 ||
	    codec_hex_decode(hash, tmp.secret_hash, CRED_SECRET_HASH_BYTES) != 0 ||
	    codec_json_int(obj, "created_at", 0, CODEC_JSON_INT_MAX,
	    &tmp.created_at) != 0 ||
	    codec_json_int(obj, "revoked_at", 0, CODEC_JSON_INT_MAX,
	    &tmp.revoked_at) != 0)
		goto out;
	apps = json_object_get(obj, "apps");
	if (!json_is_array(apps) || json_array_size(apps) > CRED_MAX_APPS)
		goto out;
	/* Memory that runs out is P8V_ERR_ALLOC, never tampering. */
	if (json_array_size(apps) > 0 &&
	    (tmp.apps = calloc(json_array_size(apps), sizeof(char *))) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	json_array_foreach(apps, i, a) {
		if (!json_is_string(a))
			goto out;
		if ((tmp.apps[i] = strdup(json_string_value(a))) == NULL) {
			r = P8V_ERR_ALLOC;
			goto out;
		}
		tmp.n_apps = i + 1;
	}
	/* Valid fields, the identity of the LMDB key, one encoding. */
	if (store_cred_check(&tmp) != 0 || strlen(tmp.id) != klen ||
	    memcmp(tmp.id, key, klen) != 0)
		goto out;
	if ((r = encode(&tmp, &again, &alen)) != 0) {
		if (r != P8V_ERR_ALLOC)
			r = P8V_ERR_INTEGRITY;
		goto out;
	}
	r = P8V_ERR_INTEGRITY;
	if (alen != vlen || memcmp(again, val, vlen) != 0)
		goto out;
	*cred = tmp;
	memset(&tmp, 0, sizeof(tmp));
	r = 0;
 out:
	store_cred_free(&tmp);
	json_decref(obj);
	free(again);
	return r;
}

int
store_cred_create(struct store_txn *txn, const struct store_cred *cred)
{
	uint8_t *val = NULL;
	size_t vlen;
	int r;

	if ((r = encode(cred, &val, &vlen)) != 0)
		return r;
	r = store_put(txn, STORE_DB_CREDS, cred->id, strlen(cred->id), val,
	    vlen, STORE_PUT_NO_OVERWRITE);
	free(val);
	return r;
}

int
store_cred_get(struct store_txn *txn, const char *id, struct store_cred *cred)
{
	const uint8_t *val;
	size_t vlen;
	int r;

	if (cred == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	memset(cred, 0, sizeof(*cred));
	if (!ids_name_ok(id, CRED_ID_MAX))
		return P8V_ERR_BAD_FIELD;
	if ((r = store_get(txn, STORE_DB_CREDS, id, strlen(id), &val,
	    &vlen)) != 0)
		return r;
	return decode((const uint8_t *)id, strlen(id), val, vlen, cred);
}

int
store_cred_revoke(struct store_txn *txn, const char *id, int64_t now)
{
	struct store_cred cred;
	uint8_t *val = NULL;
	size_t vlen;
	int r;

	if ((r = store_cred_get(txn, id, &cred)) != 0)
		return r;
	if (cred.revoked_at != 0) {
		r = 0;
		goto out;
	}
	cred.revoked_at = now < cred.created_at ? cred.created_at : now;
	if ((r = encode(&cred, &val, &vlen)) != 0)
		goto out;
	r = store_put(txn, STORE_DB_CREDS, cred.id, strlen(cred.id), val, vlen,
	    0);
 out:
	store_cred_free(&cred);
	free(val);
	return r;
}

int
store_cred_delete(struct store_txn *txn, const char *id)
{
	if (!ids_name_ok(id, CRED_ID_MAX))
		return P8V_ERR_BAD_FIELD;
	return store_del(txn, STORE_DB_CREDS, id, strlen(id));
}

struct walk {
	int (*cb)(const struct store_cred *, void *);
	void *arg;
};

static int
walk_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct walk *w = arg;
	struct store_cred cred;
	int r;

	if ((r = decode(key, klen, val, vlen, &cred)) != 0)
		return r;
	r = w->cb(&cred, w->arg);
	store_cred_free(&cred);
	return r;
}

int
store_cred_foreach(struct store_txn *txn,
    int (*cb)(const struct store_cred *, void *), void *arg)
{
	struct walk w = { cb, arg };

	if (cb == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return store_scan(txn, STORE_DB_CREDS, NULL, 0, walk_one, &w);
}
