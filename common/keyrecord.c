/* keyrecord.c: key records: rules, encoding, AAD; see keyrecord.h. */
#include "common/keyrecord.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/codec.h"
#include "common/err.h"

/* Format byte and u32 length in front of the metadata. */
#define RECORD_HEADER_BYTES 5
/* The metadata of a record with 400 topics of 255 characters is ~102 KiB. */
#define RECORD_META_MAX KEY_RECORD_META_MAX
/* Members of the metadata object (every field but the envelope). */
#define RECORD_META_MEMBERS 13
#define RECORD_AAD_LABEL KEY_RECORD_AAD_LABEL

static const char *const env_names[] = {
	[KEY_ENV_DEVELOPMENT] = "development",
	[KEY_ENV_PRODUCTION] = "production",
	[KEY_ENV_BOTH] = "both",
};
static const char *const state_names[] = {
	[KEY_STATE_ACTIVE] = "active",
	[KEY_STATE_STANDBY] = "standby",
	[KEY_STATE_REVOKED] = "revoked",
};
/* Index i names bit 1 << i. */
static const char *const service_names[] = {
	"apns", "app_store_connect", "sign_in_with_apple", "musickit",
	"weatherkit", "devicecheck", "maps",
};
#define N_ENVS (sizeof(env_names) / sizeof(env_names[0]))
#define N_STATES (sizeof(state_names) / sizeof(state_names[0]))
#define N_SERVICES (sizeof(service_names) / sizeof(service_names[0]))

const char *
key_env_name(enum key_env env)
{
	return (unsigned)env < N_ENVS ? env_names[env] : NULL;
}

int
key_env_from_name(const char *name, enum key_env *env)
{
	size_t i;

	for (i = 0; name != NULL && i < N_ENVS; i++) {
		if (strcmp(name, env_names[i]) == 0) {
			*env = (enum key_env)i;
			return 0;
		}
	}
	return P8V_ERR_BAD_FIELD;
}

const char *
key_state_name(enum key_state state)
{
	return (unsigned)state < N_STATES ? state_names[state] : NULL;
}

int
key_state_from_name(const char *name, enum key_state *state)
{
	size_t i;

	for (i = 0; name != NULL && i < N_STATES; i++) {
		if (strcmp(name, state_names[i]) == 0) {
			*state = (enum key_state)i;
			return 0;
		}
	}
	return P8V_ERR_BAD_FIELD;
}

const char *
key_service_name(uint32_t bit)
{
	size_t i;

	for (i = 0; i < N_SERVICES; i++)
		if (bit == (uint32_t)1 << i)
			return service_names[i];
	return NULL;
}

int
key_service_from_name(const char *name, uint32_t *bit)
{
	size_t i;

	for (i = 0; name != NULL && i < N_SERVICES; i++) {
		if (strcmp(name, service_names[i]) == 0) {
			*bit = (uint32_t)1 << i;
			return 0;
		}
	}
	return P8V_ERR_BAD_FIELD;
}

static void
free_topics(char **topics, size_t n)
{
	size_t i;

	for (i = 0; topics != NULL && i < n; i++)
		free(topics[i]);
	free(topics);
}

void
key_record_free(struct key_record *rec)
{
	if (rec == NULL)
		return;
	free_topics(rec->topics, rec->n_topics);
	free(rec->envelope);
	memset(rec, 0, sizeof(*rec));
}

void
key_record_drop_envelope(struct key_record *rec)
{
	if (rec == NULL)
		return;
	free(rec->envelope);
	rec->envelope = NULL;
	rec->envelope_len = 0;
}

static int
copy_topics(const char *const *src, size_t n, char ***out)
{
	char **t;
	size_t i;

	*out = NULL;
	if (n == 0)
		return 0;
	if ((t = calloc(n, sizeof(*t))) == NULL)
		return P8V_ERR_ALLOC;
	for (i = 0; i < n; i++) {
		if ((t[i] = strdup(src[i])) == NULL) {
			free_topics(t, n);
			return P8V_ERR_ALLOC;
		}
	}
	*out = t;
	return 0;
}

int
key_record_copy(struct key_record *dst, const struct key_record *src)
{
	struct key_record tmp = *src;
	int r;

	tmp.topics = NULL;
	tmp.envelope = NULL;
	if ((r = copy_topics((const char *const *)src->topics, src->n_topics,
	    &tmp.topics)) != 0)
		goto fail;
	if (src->envelope != NULL) {
		r = P8V_ERR_ALLOC;
		if ((tmp.envelope = malloc(src->envelope_len)) == NULL)
			goto fail;
		memcpy(tmp.envelope, src->envelope, src->envelope_len);
	}
	*dst = tmp;
	return 0;
 fail:
	key_record_free(&tmp);
	memset(dst, 0, sizeof(*dst));
	return r;
}

static int
topic_ok(const char *t)
{
	return ids_name_ok(t, KEY_RECORD_TOPIC_MAX);
}

int
key_record_set_topics(struct key_record *rec, const char *const *topics,
    size_t n)
{
	char **t = NULL;
	size_t i;
	int r;

	if (n > KEY_RECORD_MAX_TOPICS || (n > 0 && topics == NULL))
		return P8V_ERR_BAD_FIELD;
	for (i = 0; i < n; i++)
		if (!topic_ok(topics[i]))
			return P8V_ERR_BAD_FIELD;
	if ((r = copy_topics(topics, n, &t)) != 0)
		return r;
	free_topics(rec->topics, rec->n_topics);
	rec->topics = t;
	rec->n_topics = n;
	return 0;
}

static int
lower_hex_ok(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[len] == '\0';
}

/* Every rule of key_record_check except those about the envelope (the AAD
 * is computed before there is one). */
static int
check_meta(const struct key_record *rec)
{
	size_t i, j;
	int r;

	if (rec == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = ids_app_valid(rec->app)) != 0 ||
	    (r = ids_key_id_valid(rec->key_id)) != 0 ||
	    (r = ids_team_id_valid(rec->team_id)) != 0)
		return r;
	if (key_env_name(rec->environment) == NULL ||
	    key_state_name(rec->state) == NULL ||
	    rec->services == 0 || (rec->services & ~KEY_SERVICE_ALL) != 0)
		return P8V_ERR_BAD_FIELD;
	if (rec->n_topics > KEY_RECORD_MAX_TOPICS ||
	    (rec->n_topics > 0 && rec->topics == NULL))
		return P8V_ERR_BAD_FIELD;
	for (i = 0; i < rec->n_topics; i++) {
		if (!topic_ok(rec->topics[i]))
			return P8V_ERR_BAD_FIELD;
		for (j = 0; j < i; j++)
			if (strcmp(rec->topics[i], rec->topics[j]) == 0)
				return P8V_ERR_BAD_FIELD;
	}
	if (!lower_hex_ok(rec->fingerprint, KEY_RECORD_FINGERPRINT_HEX) ||
	    rec->public_point[0] != 0x04)
		return P8V_ERR_BAD_FIELD;
	if (!ids_name_ok(rec->created_by, KEY_RECORD_ACTOR_MAX))
		return P8V_ERR_BAD_FIELD;
	if (rec->created_at < 0 || rec->created_at > CODEC_JSON_INT_MAX ||
	    rec->updated_at < 0 || rec->updated_at > CODEC_JSON_INT_MAX ||
	    rec->version == 0 || rec->version > (uint64_t)CODEC_JSON_INT_MAX)
		return P8V_ERR_BAD_FIELD;
	return 0;
}

int
key_record_check(const struct key_record *rec)
{
	int r;

	if ((r = check_meta(rec)) != 0)
		return r;
	if ((rec->envelope == NULL) != (rec->envelope_len == 0) ||
	    rec->envelope_len > KEY_RECORD_ENVELOPE_MAX)
		return P8V_ERR_BAD_FIELD;
	if (rec->envelope == NULL && rec->state != KEY_STATE_REVOKED)
		return P8V_ERR_BAD_FIELD;
	return 0;
}

int
key_record_db_key(const char *app, const char *key_id,
    uint8_t buf[KEY_RECORD_DB_KEY_MAX], size_t *klen)
{
	size_t a;
	int r;

	if ((r = ids_app_valid(app)) != 0 || (r = ids_key_id_valid(key_id)) != 0)
		return r;
	a = strlen(app);
	memcpy(buf, app, a);
	buf[a] = '\0';
	memcpy(buf + a + 1, key_id, IDS_APPLE_ID_LEN);
	*klen = a + 1 + IDS_APPLE_ID_LEN;
	return 0;
}

/* The canonical metadata JSON of a checked record; *json malloc'd. */
static int
encode_meta(const struct key_record *rec, char **json, size_t *len)
{
	char point[2 * KEY_RECORD_PUBLIC_BYTES + 1];
	json_t *obj = NULL, *services = NULL, *topics = NULL;
	size_t i;
	int r = P8V_ERR_ALLOC;

	*json = NULL;
	codec_hex_encode(rec->public_point, KEY_RECORD_PUBLIC_BYTES, point);
	if ((services = json_array()) == NULL || (topics = json_array()) == NULL)
		goto out;
	for (i = 0; i < N_SERVICES; i++)
		if ((rec->services & (uint32_t)1 << i) &&
		    json_array_append_new(services,
		    json_string(service_names[i])) != 0)
			goto out;
	for (i = 0; i < rec->n_topics; i++)
		if (json_array_append_new(topics,
		    json_string(rec->topics[i])) != 0)
			goto out;
	obj = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:s,"
	    " s:O, s:I, s:I}",
	    "app", rec->app,
	    "created_at", (json_int_t)rec->created_at,
	    "created_by", rec->created_by,
	    "environment", key_env_name(rec->environment),
	    "fingerprint", rec->fingerprint,
	    "key_id", rec->key_id,
	    "public_point", point,
	    "services", services,
	    "state", key_state_name(rec->state),
	    "team_id", rec->team_id,
	    "topics", topics,
	    "updated_at", (json_int_t)rec->updated_at,
	    "version", (json_int_t)rec->version);
	if (obj == NULL)
		goto out;
	r = codec_json_dump(obj, RECORD_META_MAX, json, len);
 out:
	json_decref(obj);
	json_decref(services);
	json_decref(topics);
	return r;
}

int
key_record_aad(const struct key_record *rec, uint8_t **aad, size_t *aad_len)
{
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX], *a = NULL;
	size_t klen, mlen, n, off;
	char *meta = NULL;
	int r;

	if (aad == NULL || aad_len == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*aad = NULL;
	if ((r = check_meta(rec)) != 0 ||
	    (r = key_record_db_key(rec->app, rec->key_id, dbkey, &klen)) != 0 ||
	    (r = encode_meta(rec, &meta, &mlen)) != 0)
		goto out;
	n = sizeof(RECORD_AAD_LABEL) + klen + 1 + mlen; /* label's NUL kept */
	r = P8V_ERR_ALLOC;
	if ((a = malloc(n)) == NULL)
		goto out;
	memcpy(a, RECORD_AAD_LABEL, sizeof(RECORD_AAD_LABEL));
	off = sizeof(RECORD_AAD_LABEL);
	memcpy(a + off, dbkey, klen);
	off += klen;
	a[off++] = '\0';
	memcpy(a + off, meta, mlen);
	*aad = a;
	*aad_len = n;
	r = 0;
 out:
	free(meta);
	return r;
}

int
key_record_encode(const struct key_record *rec, uint8_t **val,
    size_t *val_len)
{
	uint8_t *v = NULL;
	char *meta = NULL;
	size_t mlen, n;
	int r;

	if (val == NULL || val_len == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*val = NULL;
	if ((r = key_record_check(rec)) != 0 ||
	    (r = encode_meta(rec, &meta, &mlen)) != 0)
		goto out;
	n = RECORD_HEADER_BYTES + mlen + rec->envelope_len;
	r = P8V_ERR_ALLOC;
	if ((v = malloc(n)) == NULL)
		goto out;
	v[0] = KEY_RECORD_FORMAT;
	codec_put_u32(v + 1, (uint32_t)mlen);
	memcpy(v + RECORD_HEADER_BYTES, meta, mlen);
	if (rec->envelope_len > 0)
		memcpy(v + RECORD_HEADER_BYTES + mlen, rec->envelope,
		    rec->envelope_len);
	*val = v;
	*val_len = n;
	r = 0;
 out:
	free(meta);
	return r;
}

/* Fill rec's clear fields from the metadata object; 0, P8V_ERR_INTEGRITY
 * or P8V_ERR_ALLOC. */
static int
decode_meta(json_t *obj, struct key_record *rec)
{
	char point[2 * KEY_RECORD_PUBLIC_BYTES + 1], name[32];
	json_t *services, *topics, *t;
	uint32_t bit;
	int64_t version;
	size_t i;

	if (!json_is_object(obj) || json_object_size(obj) != RECORD_META_MEMBERS)
		return P8V_ERR_INTEGRITY;
	if (codec_json_str(obj, "app", rec->app, sizeof(rec->app)) != 0 ||
	    codec_json_str(obj, "key_id", rec->key_id, sizeof(rec->key_id)) != 0 ||
	    codec_json_str(obj, "team_id", rec->team_id, sizeof(rec->team_id)) != 0 ||
	    codec_json_str(obj, "fingerprint", rec->fingerprint,
	    sizeof(rec->fingerprint)) != 0 ||
	    codec_json_str(obj, "created_by", rec->created_by,
	    sizeof(rec->created_by)) != 0 ||
	    codec_json_str(obj, "public_point", point, sizeof(point)) != 0 ||
	    codec_json_int(obj, "created_at", 0, CODEC_JSON_INT_MAX,
	    &rec->created_at) != 0 ||
	    codec_json_int(obj, "updated_at", 0, CODEC_JSON_INT_MAX,
	    &rec->updated_at) != 0 ||
	    codec_json_int(obj, "version", 1, CODEC_JSON_INT_MAX,
	    &version) != 0 ||
	    codec_hex_decode(point, rec->public_point,
	    KEY_RECORD_PUBLIC_BYTES) != 0)
		return P8V_ERR_INTEGRITY;
	rec->version = (uint64_t)version;
	if (codec_json_str(obj, "environment", name, sizeof(name)) != 0 ||
	    key_env_from_name(name, &rec->environment) != 0 ||
	    codec_json_str(obj, "state", name, sizeof(name)) != 0 ||
	    key_state_from_name(name, &rec->state) != 0)
		return P8V_ERR_INTEGRITY;
	services = json_object_get(obj, "services");
	if (!json_is_array(services))
		return P8V_ERR_INTEGRITY;
	json_array_foreach(services, i, t) {
		if (!json_is_string(t) ||
		    key_service_from_name(json_string_value(t), &bit) != 0)
			return P8V_ERR_INTEGRITY;
		rec->services |= bit;
	}
	topics = json_object_get(obj, "topics");
	if (!json_is_array(topics) ||
	    json_array_size(topics) > KEY_RECORD_MAX_TOPICS)
		return P8V_ERR_INTEGRITY;
	json_array_foreach(topics, i, t)
		if (!json_is_string(t))
			return P8V_ERR_INTEGRITY;
	/* Memory running out is not tampering: P8V_ERR_ALLOC. */
	if (json_array_size(topics) > 0 &&
	    (rec->topics = calloc(json_array_size(topics),
	    sizeof(*rec->topics))) == NULL)
		return P8V_ERR_ALLOC;
	json_array_foreach(topics, i, t) {
		if ((rec->topics[i] = strdup(json_string_value(t))) == NULL)
			return P8V_ERR_ALLOC;
		rec->n_topics = i + 1;
	}
	return 0;
}

/*
 * Decode the clear fields of the record stored under key (klen bytes) from
 * its metadata bytes (mlen), strictly: canonical, complete, valid, under
 * its own identity. tmp->envelope must be set already (or NULL for none)
 * for key_record_check. 0, P8V_ERR_INTEGRITY or P8V_ERR_ALLOC.
 */
static int
decode_clear(const uint8_t *key, size_t klen, const uint8_t *meta,
    size_t mlen, struct key_record *tmp)
{
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX];
	size_t dlen, canon_len;
	char *canon = NULL;
	json_t *obj = NULL;
	json_error_t jerr;
	int r = P8V_ERR_INTEGRITY;

	if (mlen > RECORD_META_MAX)
		goto out;
	/* Parsed only: the comparison with encode_meta below proves the text
	 * canonical, so codec_json_load's own canonical check (a second
	 * json_dumps, ~20% of a decode) would add nothing. */
	if ((obj = json_loadb((const char *)meta, mlen,
	    JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		if (json_error_code(&jerr) == json_error_out_of_memory)
			r = P8V_ERR_ALLOC;
		goto out;
	}
	if ((r = decode_meta(obj, tmp)) != 0)
		goto out;
	r = P8V_ERR_INTEGRITY;
	if (key_record_check(tmp) != 0)
		goto out;
	/* One encoding only: the stored bytes must be exactly what we would
	 * write, so no two byte strings decode to the same record. */
	if ((r = encode_meta(tmp, &canon, &canon_len)) != 0) {
		if (r != P8V_ERR_ALLOC)
			r = P8V_ERR_INTEGRITY;
		goto out;
	}
	r = P8V_ERR_INTEGRITY;
	if (canon_len != mlen || memcmp(canon, meta, mlen) != 0)
		goto out;
	/* The record must sit under its own identity. */
	if (key_record_db_key(tmp->app, tmp->key_id, dbkey, &dlen) != 0 ||
	    dlen != klen || memcmp(dbkey, key, klen) != 0)
		goto out;
	r = 0;
 out:
	json_decref(obj);
	free(canon);
	return r;
}

int
key_record_decode(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, struct key_record *rec)
{
	struct key_record tmp = { 0 };
	size_t mlen;
	int r = P8V_ERR_INTEGRITY;

	if (key == NULL || val == NULL || rec == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	memset(rec, 0, sizeof(*rec));
	if (vlen < RECORD_HEADER_BYTES || val[0] != KEY_RECORD_FORMAT)
		goto out;
	mlen = codec_get_u32(val + 1);
	if (mlen > RECORD_META_MAX || mlen > vlen - RECORD_HEADER_BYTES)
		goto out;
	tmp.envelope_len = vlen - RECORD_HEADER_BYTES - mlen;
	if (tmp.envelope_len > 0) {
		r = P8V_ERR_ALLOC;
		if ((tmp.envelope = malloc(tmp.envelope_len)) == NULL)
			goto out;
		memcpy(tmp.envelope, val + RECORD_HEADER_BYTES + mlen,
		    tmp.envelope_len);
	}
	if ((r = decode_clear(key, klen, val + RECORD_HEADER_BYTES, mlen,
	    &tmp)) != 0)
		goto out;
	*rec = tmp;
	memset(&tmp, 0, sizeof(tmp));
	r = 0;
 out:
	key_record_free(&tmp);
	return r;
}

int
key_record_from_aad(const uint8_t *aad, size_t aad_len,
    struct key_record *rec)
{
	struct key_record tmp = { 0 };
	const uint8_t *key, *sep;
	size_t off = sizeof(RECORD_AAD_LABEL), rest, alen, klen;
	int r = P8V_ERR_INTEGRITY;

	if (aad == NULL || rec == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	memset(rec, 0, sizeof(*rec));
	/* label (with its NUL) || app || 0x00 || key id (10) || 0x00 || meta */
	if (aad_len < off || memcmp(aad, RECORD_AAD_LABEL, off) != 0)
		goto out;
	key = aad + off;
	rest = aad_len - off;
	if ((sep = memchr(key, '\0', rest < IDS_APP_MAX + 1 ? rest :
	    IDS_APP_MAX + 1)) == NULL)
		goto out;
	alen = (size_t)(sep - key);
	klen = alen + 1 + IDS_APPLE_ID_LEN;
	if (alen == 0 || rest < klen + 1 || key[klen] != '\0')
		goto out;
	/* A state the record claims for itself; key_record_check wants an
	 * envelope unless it is revoked, and the caller holds the envelope
	 * this AAD belongs to: check as though present. */
	tmp.envelope = (uint8_t *)(uintptr_t)aad;
	tmp.envelope_len = 1;
	r = decode_clear(key, klen, key + klen + 1, rest - klen - 1, &tmp);
	tmp.envelope = NULL;
	tmp.envelope_len = 0;
	if (r != 0)
		goto out;
	*rec = tmp;
	memset(&tmp, 0, sizeof(tmp));
	r = 0;
 out:
	key_record_free(&tmp);
	return r;
}

int
key_record_raw_parts(const uint8_t *val, size_t vlen, const uint8_t **meta,
    size_t *meta_len, const uint8_t **env, size_t *env_len)
{
	size_t mlen;

	if (val == NULL || vlen < RECORD_HEADER_BYTES ||
	    val[0] != KEY_RECORD_FORMAT)
		return P8V_ERR_INTEGRITY;
	mlen = codec_get_u32(val + 1);
	if (mlen == 0 || mlen > RECORD_META_MAX ||
	    mlen > vlen - RECORD_HEADER_BYTES)
		return P8V_ERR_INTEGRITY;
	*meta = val + RECORD_HEADER_BYTES;
	*meta_len = mlen;
	*env_len = vlen - RECORD_HEADER_BYTES - mlen;
	*env = *env_len > 0 ? val + RECORD_HEADER_BYTES + mlen : NULL;
	return 0;
}

int
key_record_raw_aad(const uint8_t *key, size_t klen, const uint8_t *val,
    size_t vlen, uint8_t **aad, size_t *aad_len)
{
	const uint8_t *meta, *env;
	size_t mlen, elen, n, off;
	uint8_t *a;
	int r;

	if (aad == NULL || aad_len == NULL || key == NULL || klen == 0 ||
	    klen > KEY_RECORD_DB_KEY_MAX)
		return P8V_ERR_INVALID_ARGUMENT;
	*aad = NULL;
	if ((r = key_record_raw_parts(val, vlen, &meta, &mlen, &env,
	    &elen)) != 0)
		return r;
	/* As key_record_aad: label (with its NUL), key, NUL, metadata. */
	n = sizeof(RECORD_AAD_LABEL) + klen + 1 + mlen;
	if ((a = malloc(n)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(a, RECORD_AAD_LABEL, sizeof(RECORD_AAD_LABEL));
	off = sizeof(RECORD_AAD_LABEL);
	memcpy(a + off, key, klen);
	off += klen;
	a[off++] = '\0';
	memcpy(a + off, meta, mlen);
	*aad = a;
	*aad_len = n;
	return 0;
}

