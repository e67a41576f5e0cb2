/*
 * upload.c: POST /v1/apps/{app}/keys: the three body forms (JSON,
 * multipart/form-data, a raw PEM) parsed into one struct upload_fields and
 * handed to the vault. This file chooses the form, holds the raw form and
 * the handler; upload_json.c and upload_multipart.c parse the other two,
 * and upload_fields.c holds the field rules all three share.
 */
#include "api/upload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/http.h"
#include "api/keys.h"
#include "api/metrics.h"
#include "api/upload_fields.h"
#include "api/upload_json.h"
#include "api/upload_multipart.h"
#include "common/err.h"
#include "common/ids.h"
#include "common/log.h"
#include "crypto/secmem.h"
#include "vault/vault.h"

/* Longest media type we compare ("application/x-pem-file" and the like). */
#define MEDIA_TYPE_MAX 64

/* The query parameter that may carry the uploaded file's name. */
#define QUERY_FILENAME "filename"

/*
 * Split "Type/Sub; params" into the lowercased media type and where its
 * parameters start. Returns 0, or -1 if there is no token/token.
 */
static int
media_type_split(const char *ct, char type[MEDIA_TYPE_MAX],
    const char **params)
{
	size_t len = strlen(ct), i, o = 0, slash = 0;

	i = upload_skip_ows(ct, len, 0);
	for (; i < len && (upload_is_tchar((unsigned char)ct[i]) ||
	    ct[i] == '/'); i++) {
		if (ct[i] == '/') {
			if (slash++ != 0)
				return -1;
			if (o == 0)
				return -1;
		}
		if (o + 1 >= MEDIA_TYPE_MAX)
			return -1;
		type[o++] = (char)((ct[i] >= 'A' && ct[i] <= 'Z') ?
		    ct[i] - 'A' + 'a' : ct[i]);
	}
	type[o] = '\0';
	if (slash != 1 || type[o - 1] == '/')
		return -1;
	*params = ct + i;
	return 0;
}

/* -- raw PEM ------------------------------------------------------------ */

static int
parse_raw(struct upload_fields *f, const char *disposition,
    const uint8_t *body, size_t len, upload_query_fn query, void *arg)
{
	char filename[UPLOAD_PART_HEADER_MAX];
	const char *v;
	size_t i;
	int r;

	if (len == 0)
		return upload_fail(f, P8V_ERR_MISSING_FIELD, "%s", "the body "
		    "(the .p8) is empty");
	if ((r = upload_set_text_field(f, FIELD_P8, (const char *)body,
	    len)) != 0)
		return r;
	for (i = 0; i < FIELD_COUNT; i++) {
		if (i == FIELD_P8 || (v = query(arg,
		    upload_field_names[i])) == NULL)
			continue;
		if ((r = upload_set_text_field(f, (enum field)i, v,
		    strlen(v))) != 0)
			return r;
	}
	if (disposition != NULL) {
		/* attachment; filename="AuthKey_ABC.p8" (any disposition
		 * type: only the file name matters here). */
		i = 0;
		while (disposition[i] != '\0' &&
		    upload_is_tchar((unsigned char)disposition[i]))
			i++;
		if (i == 0 || (r = upload_param_find(disposition + i,
		    strlen(disposition + i), "filename", 1, filename,
		    sizeof(filename))) < 0)
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "the "
			    "Content-Disposition header is malformed");
		if (r == 1 && (r = upload_note_filename(f, filename,
		    strlen(filename))) != 0)
			return r;
		if (upload_param_find(disposition + i, strlen(disposition + i),
		    "filename*", 1, filename, sizeof(filename)) != 0)
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s",
			    "filename* is not supported: send filename");
	}
	return 0;
}

/* -- all forms ------------------------------------------------------- */

enum body_form {
	FORM_JSON,
	FORM_MULTIPART,
	FORM_RAW,
};

static int
choose_form(struct upload_fields *f, const char *content_type,
    enum body_form *form, char boundary[UPLOAD_BOUNDARY_MAX + 1])
{
	char type[MEDIA_TYPE_MAX], charset[32];
	const char *params;
	int r;

	if (content_type == NULL)
		return upload_fail(f, P8V_ERR_UNSUPPORTED_MEDIA_TYPE, "%s", "a "
		    "Content-Type is required: application/json, "
		    "multipart/form-data, application/x-pem-file or "
		    "application/pkcs8");
	if (media_type_split(content_type, type, &params) != 0)
		goto unsupported;
	if (strcmp(type, "application/json") == 0) {
		*form = FORM_JSON;
		/* RFC 8259: JSON between systems is UTF-8. */
		r = upload_param_find(params, strlen(params), "charset", 1,
		    charset, sizeof(charset));
		if (r < 0)
			goto malformed;
		if (r == 1 && strcasecmp(charset, "utf-8") != 0)
			goto unsupported;
	} else if (strcmp(type, "multipart/form-data") == 0) {
		*form = FORM_MULTIPART;
		r = upload_param_find(params, strlen(params), "boundary", 1,
		    boundary, UPLOAD_BOUNDARY_MAX + 1);
		if (r < 0)
			goto malformed;
		if (r == 0 || boundary[0] == '\0')
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s",
			    "multipart/form-data needs a boundary of 1-70 "
			    "characters");
	} else if (strcmp(type, "application/x-pem-file") == 0 ||
	    strcmp(type, "application/pkcs8") == 0) {
		*form = FORM_RAW;
		if (upload_param_find(params, strlen(params), "charset", 1,
		    charset, sizeof(charset)) < 0)
			goto malformed;
	} else {
		goto unsupported;
	}
	return 0;
 malformed:
	return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "the Content-Type "
	    "parameters are malformed (or a boundary is longer than 70)");
 unsupported:
	return upload_fail(f, P8V_ERR_UNSUPPORTED_MEDIA_TYPE, "%s",
	    "Content-Type must be application/json (UTF-8), "
	    "multipart/form-data, application/x-pem-file or application/pkcs8");
}

int
upload_parse(const char *content_type, const char *content_disposition,
    const uint8_t *body, size_t len, upload_query_fn query, void *query_arg,
    struct upload_fields *out)
{
	char boundary[UPLOAD_BOUNDARY_MAX + 1], detail[UPLOAD_DETAIL_MAX];
	enum body_form form = FORM_JSON;
	const char *v;
	size_t i;
	int r = P8V_ERR_INTERNAL;

	if (out == NULL || query == NULL || (body == NULL && len > 0))
		return P8V_ERR_INVALID_ARGUMENT;
	memset(out, 0, sizeof(*out));
	out->environment = KEY_ENV_BOTH;
	out->activate = 1;
	if ((r = choose_form(out, content_type, &form, boundary)) != 0)
		goto out;
	if (form != FORM_RAW) {
		/* Fields belong in the body; a query parameter named like
		 * one would otherwise be silently ignored. */
		for (i = 0; i < FIELD_COUNT; i++) {
			if (query(query_arg, upload_field_names[i]) != NULL) {
				r = upload_fail(out, P8V_ERR_BAD_REQUEST, "%s "
				    "belongs in the body, not in the query "
				    "string", upload_field_names[i]);
				goto out;
			}
		}
	}
	switch (form) {
	case FORM_JSON:
		r = upload_parse_json(out, body, len);
		break;
	case FORM_MULTIPART:
		r = upload_parse_multipart(out, boundary, body, len);
		break;
	case FORM_RAW:
		r = parse_raw(out, content_disposition, body, len, query,
		    query_arg);
		break;
	}
	if (r != 0)
		goto out;
	if ((v = query(query_arg, QUERY_FILENAME)) != NULL &&
	    (r = upload_note_filename(out, v, strlen(v))) != 0)
		goto out;
	for (i = 0; i < FIELD_COUNT; i++) {
		if ((i == FIELD_KEY_ID && out->key_id == NULL) ||
		    (i == FIELD_TEAM_ID && out->team_id == NULL) ||
		    (i == FIELD_P8 && out->p8 == NULL)) {
			r = upload_fail(out, P8V_ERR_MISSING_FIELD, "%s is "
			    "required", upload_field_names[i]);
			goto out;
		}
	}
	if (out->filename_key_id[0] != '\0' &&
	    strcmp(out->filename_key_id, out->key_id) != 0) {
		r = upload_fail(out, P8V_ERR_KEY_ID_MISMATCH, "%s", "the file "
		    "name AuthKey_<KEYID>.p8 names another Key ID than key_id");
		goto out;
	}
	if (out->services == 0)
		out->services = KEY_SERVICE_APNS;
	r = 0;
 out:
	if (r != 0) {
		memcpy(detail, out->detail, sizeof(detail));
		upload_fields_finish(out);
		memcpy(out->detail, detail, sizeof(detail));
	}
	return r;
}

/* -- the handler -------------------------------------------------------- */

static const char *
request_query(void *arg, const char *name)
{
	return api_request_query(arg, name);
}

int
api_upload_handle(struct api_request *req)
{
	struct upload_fields f;
	struct vault_upload up;
	const struct api_backend *backend;
	const uint8_t *body;
	json_t *meta = NULL;
	char exists[IDS_APPLE_ID_LEN + 1] = "", detail[160];
	size_t len = 0;
	int created = 0, refused = 0, r = P8V_ERR_INTERNAL;

	memset(&f, 0, sizeof(f));
	memset(&up, 0, sizeof(up));
	up.exists_key_id = exists;
	backend = api_request_backend(req);
	if (backend == NULL || backend->vault == NULL) {
		r = P8V_ERR_NOT_READY;
		goto out;
	}
	body = api_request_body(req, &len);
	if ((r = upload_parse(api_request_header(req, "Content-Type"),
	    api_request_header(req, "Content-Disposition"), body, len,
	    request_query, req, &f)) != 0) {
		refused = r;
		if (api_respond_error(req, r, f.detail[0] != '\0' ?
		    f.detail : NULL) == 0)
			r = 0;
		goto out;
	}
	up.app = api_request_param(req, "app");
	up.key_id = f.key_id;
	up.team_id = f.team_id;
	up.p8 = f.p8;
	up.p8_len = f.p8_len;
	up.environment = f.environment;
	up.services = f.services;
	up.topics = (const char *const *)f.topics;
	up.n_topics = f.n_topics;
	up.activate = f.activate;
	up.actor = api_request_principal(req)->actor;
	up.check = f.check;
	if ((r = vault_key_upload(backend->vault, &up, &meta, &created)) != 0) {
		refused = r;
		if (r == P8V_ERR_KEY_EXISTS && exists[0] != '\0') {
			/* The Key ID in the way is one of this app's, which
			 * the token may list anyway (GET /v1/apps/{app}/keys):
			 * naming it tells nothing about other tenants. */
			if (strcmp(exists, up.key_id) == 0)
				snprintf(detail, sizeof(detail), "another key "
				    "is stored in this app under Key ID %s: a "
				    "Key ID names one key", exists);
			else
				snprintf(detail, sizeof(detail), "this key is "
				    "stored in this app under Key ID %s "
				    "(revoked): a key keeps its one Key ID",
				    exists);
			if (api_respond_error(req, r, detail) == 0)
				r = 0;
		} else if (meta != NULL) {
			/* The check failed: its results go with the error. */
			r = api_keys_respond_check_error(req, r, meta);
			meta = NULL;            /* stolen */
		} else if (r == P8V_ERR_MISSING_FIELD && up.check &&
		    api_respond_error(req, r, "no topic to check with: the "
		    "key has no topics and the app id is not a bundle id") ==
		    0) {
			r = 0;
		}
		goto out;
	}
	/* Names and a fingerprint only: never the body. */
	log_fields(LOG_LEVEL_INFO, "key_upload", json_pack("{s:O?,s:O?,s:O?,"
	    "s:s,s:b}", "app", json_object_get(meta, "app"), "key_id",
	    json_object_get(meta, "key_id"), "fingerprint",
	    json_object_get(meta, "fingerprint"), "actor", up.actor,
	    "created", created), "key %s", created ? "stored" : "already "
	    "stored");
	r = api_respond(req, created ? 201 : 200, meta);
	meta = NULL;                            /* stolen */
 out:
	if (refused != 0 || r != 0)
		metrics_count_upload_rejection(refused != 0 ? refused : r);
	json_decref(meta);
	upload_fields_finish(&f);
	return r;
}
