/*
 * upload_json.h: the JSON form of an upload (application/json; api/upload.h
 * has the rules). Called by upload_parse (api/upload.c) only.
 */
#ifndef P8V_API_UPLOAD_JSON_H
#define P8V_API_UPLOAD_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "api/upload_fields.h"

/* Fill f from body[0..len). Returns 0 or the errors listed for
 * upload_parse (api/upload.h), except P8V_ERR_UNSUPPORTED_MEDIA_TYPE;
 * P8V_ERR_P8_MISPLACED for PEM text anywhere but the top-level "p8"
 * string. */
int upload_parse_json(struct upload_fields *f, const uint8_t *body,
    size_t len);

#endif /* P8V_API_UPLOAD_JSON_H */
