/*
 * upload.h: POST /v1/apps/{app}/keys, the upload of an Apple .p8 key, and
 * the parsing of its three body forms.
 *
 * Body forms, chosen by the request's Content-Type (media type compared
 * case-insensitively, parameters allowed):
 *
 *   application/json       {"key_id", "team_id", "p8", "environment"?,
 *                          "services"?, "topics"?, "activate"?}
 *   multipart/form-data    a file (or text) part "p8" and text parts for
 *                          the rest (a browser form)
 *   application/x-pem-file the .p8 itself; key_id, team_id and the optional
 *   application/pkcs8      fields as query parameters
 *
 * Anything else is P8V_ERR_UNSUPPORTED_MEDIA_TYPE (415).
 *
 * Field rules, the same in every form:
 *   - key_id, team_id, p8 are required (P8V_ERR_MISSING_FIELD). Their
 *     syntax is left to the vault (422 invalid_key_id, invalid_team_id,
 *     and every .p8 refusal of crypto/p8.h as a 400).
 *   - environment: "development", "production" or "both" (default "both");
 *     services: names of KEY_SERVICE_* bits, default APNs only; topics: a
 *     list (checked by the vault); activate: true (default) or false.
 *     A present but invalid value is P8V_ERR_BAD_FIELD (422).
 *   - JSON is strict: a member this API does not know is
 *     P8V_ERR_UNKNOWN_FIELD, a member of the wrong JSON type, a duplicate
 *     member or malformed JSON P8V_ERR_BAD_REQUEST. null stands for an
 *     absent optional member. In forms and query strings services and
 *     topics are comma-separated lists ("apns,devicecheck") and activate is
 *     "true"/"false"/"1"/"0"; an empty optional text part or parameter
 *     counts as absent (what a browser sends for an empty input).
 *   - multipart: a part this API does not know is P8V_ERR_UNKNOWN_FIELD;
 *     a part given twice P8V_ERR_BAD_REQUEST, except services and topics,
 *     which may repeat (their lists are joined: a multi-select or
 *     checkboxes); a p8 part with no bytes counts as absent (a browser's
 *     empty file input). Parsed by a small strict parser over the body
 *     (see upload_multipart.c for why not MHD_PostProcessor).
 *   - A file name of the exact form AuthKey_<10 characters>.p8 (the p8
 *     part's filename, or for a raw body the filename query parameter or
 *     the Content-Disposition header's filename) must name key_id:
 *     otherwise P8V_ERR_KEY_ID_MISMATCH. Other file names are not looked at.
 *   - For JSON and multipart, the fields belong in the body: a query
 *     parameter named like a field is P8V_ERR_BAD_REQUEST rather than
 *     silently ignored.
 *
 * Secrets: the .p8 bytes are only ever copied into guarded memory
 * (secmem_alloc). For JSON the "p8" member is cut out of the document by a
 * small scanner before jansson parses the rest, so jansson's ordinary heap
 * never holds the key (jansson's lexer frees its buffers without wiping
 * them; wiping its result afterwards would come too late). Any other
 * string of the document (member names too) that holds PEM armour
 * ("-----BEGIN", "-----END", any case, however escaped) makes the body
 * P8V_ERR_P8_MISPLACED before jansson sees any of it.
 */
#ifndef P8V_API_UPLOAD_H
#define P8V_API_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "api/upload_fields.h"

struct api_request;

/* Looks up a decoded query parameter by name, or NULL when absent. */
typedef const char *(*upload_query_fn)(void *arg, const char *name);

/*
 * Parse an upload request: content_type is the Content-Type header (may be
 * NULL), body[0..len) the body (may be NULL when len is 0), query the query
 * parameters (called with query_arg), content_disposition the request's
 * Content-Disposition header (may be NULL; only read for raw bodies).
 * On success *out holds every field, the required ones present, and the
 * file-name check done; free it with upload_fields_finish. On failure
 * *out holds nothing but out->detail (still call upload_fields_finish,
 * api/upload_fields.h).
 * Returns 0, P8V_ERR_UNSUPPORTED_MEDIA_TYPE, P8V_ERR_BAD_REQUEST,
 * P8V_ERR_P8_MISPLACED (JSON), P8V_ERR_MISSING_FIELD,
 * P8V_ERR_UNKNOWN_FIELD, P8V_ERR_BAD_FIELD, P8V_ERR_KEY_ID_MISMATCH,
 * P8V_ERR_SECMEM, P8V_ERR_ALLOC.
 */
int upload_parse(const char *content_type, const char *content_disposition,
    const uint8_t *body, size_t len, upload_query_fn query, void *query_arg,
    struct upload_fields *out);

/*
 * The handler of POST /v1/apps/{app}/keys (api/routes.c): parse, hand the
 * upload to vault_key_upload with the caller's token id as the actor, and
 * answer 201 (new key) or 200 (the same key again) with the key's metadata,
 * or the error.
 */
int api_upload_handle(struct api_request *req);

#endif /* P8V_API_UPLOAD_H */
