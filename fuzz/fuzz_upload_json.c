/*
 * fuzz_upload_json.c: the JSON form of an upload (api/upload.h,
 * upload_parse with Content-Type application/json): the whole body of
 * POST /v1/apps/{app}/keys as the portal sends it.
 *
 * Properties beyond "no memory error, no leak":
 *   - the result is 0 or a code upload.h lists; never P8V_ERR_INTERNAL,
 *     which upload_json.c returns when its "p8" scanner and jansson
 *     disagree about the document (the scanner cuts the key out before
 *     jansson sees the rest);
 *   - on failure the fields hold nothing; on success the required ones are
 *     there and services is not empty;
 *   - the scanner agrees with jansson: an accepted body is valid JSON to
 *     jansson too (JSON_REJECT_DUPLICATES, as the rest is parsed), an
 *     object whose "p8" member is a string equal, byte for byte, to the
 *     .p8 the scanner cut out.
 */
#include <string.h>

#include <jansson.h>

#include "api/upload.h"
#include "common/err.h"
#include "fuzz/fuzz.h"

static const char *
no_query(void *arg, const char *name)
{
	return NULL;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct upload_fields f;
	json_error_t jerr;
	json_t *doc, *p8;
	int r;

	r = upload_parse("application/json", NULL, data, size, no_query, NULL,
	    &f);
	FUZZ_CHECK(memchr(f.detail, '\0', sizeof(f.detail)) != NULL);
	if (r != 0) {
		FUZZ_CHECK(FUZZ_ERR_IN(r, P8V_ERR_BAD_REQUEST,
		    P8V_ERR_P8_MISPLACED, P8V_ERR_MISSING_FIELD, P8V_ERR_UNKNOWN_FIELD,
		    P8V_ERR_BAD_FIELD, P8V_ERR_SECMEM, P8V_ERR_ALLOC));
		FUZZ_CHECK(f.key_id == NULL && f.team_id == NULL &&
		    f.p8 == NULL && f.topics == NULL && f.n_topics == 0);
		upload_fields_finish(&f);
		return 0;
	}
	FUZZ_CHECK(f.key_id != NULL && f.team_id != NULL && f.p8 != NULL);
	FUZZ_CHECK(f.services != 0 && (f.services & ~KEY_SERVICE_ALL) == 0);
	FUZZ_CHECK(f.n_topics <= KEY_RECORD_MAX_TOPICS);
	FUZZ_CHECK(f.environment == KEY_ENV_DEVELOPMENT ||
	    f.environment == KEY_ENV_PRODUCTION || f.environment == KEY_ENV_BOTH);
	FUZZ_CHECK(f.activate == 0 || f.activate == 1);

	doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
	    &jerr);
	FUZZ_CHECK(doc != NULL && json_is_object(doc));
	p8 = json_object_get(doc, "p8");
	FUZZ_CHECK(json_is_string(p8));
	FUZZ_CHECK(json_string_length(p8) == f.p8_len);
	FUZZ_CHECK(f.p8_len == 0 ||
	    memcmp(json_string_value(p8), f.p8, f.p8_len) == 0);
	json_decref(doc);
	upload_fields_finish(&f);
	return 0;
}
