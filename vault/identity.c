/*
 * identity.c: a key's identity across apps: every copy of a key (by its
 * fingerprint) for incident response, and the warning when a team ends up
 * with more than one active APNs key for an environment. Both read the
 * store's indexes (store/records.h), never every record.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "store/records.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"

int
vault_fingerprint_parse(const char *in, char out[KEY_RECORD_FINGERPRINT_HEX + 1])
{
	size_t i;

	if (in == NULL || strlen(in) != KEY_RECORD_FINGERPRINT_HEX)
		return P8V_ERR_BAD_FIELD;
	for (i = 0; i < KEY_RECORD_FINGERPRINT_HEX; i++) {
		if (!isxdigit((unsigned char)in[i]))
			return P8V_ERR_BAD_FIELD;
		out[i] = (char)tolower((unsigned char)in[i]);
	}
	out[KEY_RECORD_FINGERPRINT_HEX] = '\0';
	return 0;
}

/* --- every copy of a key --- */

struct find {
	const char *fingerprint;
	json_t *array;
};

static int
find_one(const struct key_record *rec, void *arg)
{
	struct find *f = arg;
	json_t *meta;
	int r;

	if ((r = vault_key_meta_json(rec, &meta)) != 0)
		return r;
	return json_array_append_new(f->array, meta) == 0 ? 0 : P8V_ERR_ALLOC;
}

static int
find_txn(struct store_txn *txn, void *arg)
{
	struct find *f = arg;

	json_array_clear(f->array);
	return key_record_by_fingerprint(txn, f->fingerprint, find_one, f);
}

int
vault_key_find(struct vault *v, const char *fingerprint, json_t **array)
{
	char fp[KEY_RECORD_FINGERPRINT_HEX + 1];
	struct find f = { fp, NULL };
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (array != NULL)
		*array = NULL;
	if (v == NULL || array == NULL)
		goto out;
	if ((r = vault_fingerprint_parse(fingerprint, fp)) != 0)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((f.array = json_array()) == NULL)
		goto out;
	if ((r = store_read(v->store, find_txn, &f)) != 0)
		goto out;
	*array = f.array;
	f.array = NULL;
	r = 0;
 out:
	json_decref(f.array);
	return r;
}

/* --- a team's active APNs keys --- */

struct team {
	const struct key_record *subject;
	json_t *others;         /* [{"app","key_id"}] of other keys */
};

static int
team_one(const struct key_record *rec, void *arg)
{
	struct team *t = arg;

	/* Another key (the same key in other apps is one key: one token),
	 * active, for APNs, in an environment the subject's overlaps. */
	if (strcmp(rec->key_id, t->subject->key_id) == 0 ||
	    rec->state != KEY_STATE_ACTIVE ||
	    (rec->services & KEY_SERVICE_APNS) == 0 ||
	    !vault_env_overlap(rec->environment, t->subject->environment))
		return 0;
	return json_array_append_new(t->others, json_pack("{s:s, s:s, s:s}",
	    "app", rec->app, "key_id", rec->key_id, "environment",
	    key_env_name(rec->environment))) == 0 ? 0 : P8V_ERR_ALLOC;
}

static int
team_txn(struct store_txn *txn, void *arg)
{
	struct team *t = arg;

	json_array_clear(t->others);
	return key_record_by_team_other(txn, t->subject->team_id,
	    t->subject->fingerprint, team_one, t);
}

int
vault_team_warnings(struct vault *v, const struct key_record *rec,
    json_t *meta)
{
	struct team t = { rec, NULL };
	json_t *w = NULL, *list;
	char msg[512];
	int r = 0;

	if (rec->state != KEY_STATE_ACTIVE ||
	    (rec->services & KEY_SERVICE_APNS) == 0)
		return 0;
	if ((t.others = json_array()) == NULL)
		return P8V_ERR_ALLOC;
	/* After the commit, in a read transaction: advisory, so the store's
	 * single writer does not wait for it. */
	if ((r = store_read(v->store, team_txn, &t)) != 0 ||
	    json_array_size(t.others) == 0)
		goto out;
	snprintf(msg, sizeof(msg), "team %s now has %zu active APNs keys for "
	    "%s: each key has its own provider token, and APNs takes tokens "
	    "of one team per connection and of two keys only if they are "
	    "related keys; do not mix these keys' tokens on one HTTP/2 "
	    "connection", rec->team_id, json_array_size(t.others) + 1,
	    key_env_name(rec->environment));
	r = P8V_ERR_ALLOC;
	if ((w = json_pack("{s:s, s:s, s:s, s:s, s:O}", "code",
	    "multiple_active_apns_keys", "message", msg, "team_id",
	    rec->team_id, "environment", key_env_name(rec->environment),
	    "other_keys", t.others)) == NULL)
		goto out;
	if ((list = json_object_get(meta, "warnings")) == NULL) {
		if (json_object_set_new(meta, "warnings", json_array()) != 0)
			goto out;
		list = json_object_get(meta, "warnings");
	}
	if (json_array_append(list, w) != 0)
		goto out;
	log_fields(LOG_LEVEL_WARN, "apns_keys_multiple_active",
	    json_pack("{s:s, s:s, s:s, s:s, s:O}", "app", rec->app,
	    "key_id", rec->key_id, "team_id", rec->team_id, "environment",
	    key_env_name(rec->environment), "other_keys", t.others),
	    "key %s/%s: %s", rec->app, rec->key_id, msg);
	r = 0;
 out:
	json_decref(w);
	json_decref(t.others);
	return r;
}
