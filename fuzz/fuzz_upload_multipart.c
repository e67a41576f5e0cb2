/*
 * fuzz_upload_multipart.c: an upload request as the handler sees it
 * (api/upload.h, upload_parse): the Content-Type header (media type and
 * parameters: which form, the multipart boundary, the charset), the
 * Content-Disposition header and the query string (for the raw form), and
 * the body: multipart/form-data parts above all, and the raw PEM form.
 *
 * Input layout, so that seeds stay readable:
 *
 *   line 1   Content-Type value ("multipart/form-data; boundary=XyZ";
 *            empty: no such header)
 *   line 2   Content-Disposition value (empty: no such header)
 *   line 3   query string, without '?' ("key_id=ABC&team_id=DEF")
 *   rest     the body, as is (multipart lines end in CRLF)
 *
 * The query string goes through api_query_parse as in the daemon (one
 * that does not parse is treated as absent: the daemon answers 400 before
 * the handler runs).
 *
 * Properties beyond "no memory error, no leak": the result is 0 or a code
 * upload.h lists (never P8V_ERR_INTERNAL or INVALID_ARGUMENT); on failure
 * the fields hold nothing; on success the required fields are there, the
 * file name's Key ID (if any) is key_id, and services is not empty.
 */
#include <string.h>

#include "api/router.h"
#include "api/upload.h"
#include "common/err.h"
#include "fuzz/fuzz.h"

static const char *
query_get(void *arg, const char *name)
{
	return api_query_get(arg, name);
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
	struct api_query query;
	char *ctype, *disposition, *qs;
	int r;

	ctype = fuzz_take_line(&data, &size);
	disposition = fuzz_take_line(&data, &size);
	qs = fuzz_take_line(&data, &size);
	if (api_query_parse(qs, strlen(qs), &query) != 0)
		FUZZ_CHECK(query.buf == NULL && query.count == 0);

	r = upload_parse(ctype[0] != '\0' ? ctype : NULL,
	    disposition[0] != '\0' ? disposition : NULL, data, size,
	    query_get, &query, &f);
	FUZZ_CHECK(memchr(f.detail, '\0', sizeof(f.detail)) != NULL);
	if (r != 0) {
		FUZZ_CHECK(FUZZ_ERR_IN(r, P8V_ERR_UNSUPPORTED_MEDIA_TYPE,
		    P8V_ERR_BAD_REQUEST, P8V_ERR_P8_MISPLACED,
		    P8V_ERR_MISSING_FIELD, P8V_ERR_UNKNOWN_FIELD, P8V_ERR_BAD_FIELD,
		    P8V_ERR_KEY_ID_MISMATCH, P8V_ERR_SECMEM, P8V_ERR_ALLOC));
		FUZZ_CHECK(f.key_id == NULL && f.team_id == NULL &&
		    f.p8 == NULL && f.topics == NULL && f.n_topics == 0);
	} else {
		FUZZ_CHECK(f.key_id != NULL && f.team_id != NULL &&
		    f.p8 != NULL);
		FUZZ_CHECK(f.filename_key_id[0] == '\0' ||
		    strcmp(f.filename_key_id, f.key_id) == 0);
		FUZZ_CHECK(f.services != 0 &&
		    (f.services & ~KEY_SERVICE_ALL) == 0);
		FUZZ_CHECK(f.n_topics <= KEY_RECORD_MAX_TOPICS);
		FUZZ_CHECK(f.activate == 0 || f.activate == 1);
	}
	upload_fields_finish(&f);
	api_query_finish(&query);
	free(ctype);
	free(disposition);
	free(qs);
	return 0;
}
