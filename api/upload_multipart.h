/*
 * upload_multipart.h: the multipart/form-data form of an upload (RFC 7578;
 * api/upload.h has the rules). Called by upload_parse (api/upload.c) only.
 */
#ifndef P8V_API_UPLOAD_MULTIPART_H
#define P8V_API_UPLOAD_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "api/upload_fields.h"

/* Longest header line inside a multipart part: Content-Disposition with a
 * name and a file name; browsers send well under 300 bytes. */
#define UPLOAD_PART_HEADER_MAX 1024
/* Most header lines in one multipart part (browsers send two). */
#define UPLOAD_PART_HEADERS_MAX 8
/* Longest multipart boundary (RFC 2046 section 5.1.1). */
#define UPLOAD_BOUNDARY_MAX 70

/* Fill f from body[0..len), whose parts are delimited by boundary (from
 * the Content-Type, at most UPLOAD_BOUNDARY_MAX characters). Returns 0 or
 * the errors listed for upload_parse (api/upload.h), except
 * P8V_ERR_UNSUPPORTED_MEDIA_TYPE. */
int upload_parse_multipart(struct upload_fields *f, const char *boundary,
    const uint8_t *body, size_t len);

#endif /* P8V_API_UPLOAD_MULTIPART_H */
