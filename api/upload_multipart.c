/*
 * upload_multipart.c: the multipart/form-data form of an upload (RFC 7578),
 * as browsers send it.
 *
 * A small strict parser of our own rather than libmicrohttpd's
 * MHD_PostProcessor: the framework (api/http.h) hands handlers the body
 * already accumulated in guarded memory and no MHD_Connection, which
 * MHD_create_post_processor needs (it reads Content-Type from it); the
 * PostProcessor copies part data through its own malloc'd buffer, which
 * would put the .p8 on the ordinary heap; and it is lenient where this API
 * is strict (duplicate parts, unterminated bodies). This parser reads the
 * guarded body in place; only the p8 part is copied, into guarded memory.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/upload_multipart.h"
#include "common/err.h"

/* One part's headers, as far as this API looks at them. */
struct part_head {
	int has_disposition;
	char name[UPLOAD_PART_HEADER_MAX];
	int has_filename;
	char filename[UPLOAD_PART_HEADER_MAX];
};

/*
 * Content-Disposition of a part (RFC 7578 section 4.2): form-data with a
 * name and an optional filename. filename* (RFC 5987) is not used by
 * browsers and RFC 7578 says not to send it: refused rather than ignored,
 * so that a file name is never overlooked.
 */
static int
part_disposition(struct upload_fields *f, const char *v, size_t len,
    struct part_head *h)
{
	char scratch[2];
	size_t i = 0;
	int r;

	if (h->has_disposition)
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part has "
		    "two Content-Disposition headers");
	h->has_disposition = 1;
	while (i < len && upload_is_tchar((unsigned char)v[i]))
		i++;
	if (i != sizeof("form-data") - 1 ||
	    strncasecmp(v, "form-data", i) != 0)
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part is "
		    "not form-data");
	if ((r = upload_param_find(v + i, len - i, "name", 0, h->name,
	    sizeof(h->name))) < 0)
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part's "
		    "Content-Disposition is malformed, or its name unknown");
	if (r == 0)
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part has "
		    "no name");
	if ((r = upload_param_find(v + i, len - i, "filename", 0, h->filename,
	    sizeof(h->filename))) < 0)
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part's "
		    "Content-Disposition is malformed");
	h->has_filename = r;
	if ((r = upload_param_find(v + i, len - i, "filename*", 0, scratch,
	    sizeof(scratch))) != 0)
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "filename* is "
		    "not supported: send filename");
	return 0;
}

/* Read the header lines of a part from body[*pos..len), up to and past the
 * empty line. */
static int
part_headers(struct upload_fields *f, const uint8_t *body, size_t len,
    size_t *pos, struct part_head *h)
{
	char line[UPLOAD_PART_HEADER_MAX + 1];
	const uint8_t *eol;
	size_t p = *pos, llen, n = 0, colon, vs, ve;
	int r;

	memset(h, 0, sizeof(*h));
	for (;;) {
		if ((eol = memmem(body + p, len - p, "\r\n", 2)) == NULL)
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a "
			    "part's headers are not terminated");
		llen = (size_t)(eol - (body + p));
		if (llen == 0)
			break;
		if (++n > UPLOAD_PART_HEADERS_MAX ||
		    llen > UPLOAD_PART_HEADER_MAX)
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a "
			    "part's headers are too large");
		memcpy(line, body + p, llen);
		line[llen] = '\0';
		p += llen + 2;
		/* No NUL, no obsolete line folding, a token before ':'. */
		for (colon = 0; colon < llen && upload_is_tchar((unsigned char)
		    line[colon]); colon++)
			;
		if (memchr(line, '\0', llen) != NULL || colon == 0 ||
		    colon == llen || line[colon] != ':')
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a "
			    "part has a malformed header");
		vs = upload_skip_ows(line, llen, colon + 1);
		ve = llen;
		while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
			ve--;
		line[ve] = '\0';
		if (colon == sizeof("Content-Disposition") - 1 &&
		    strncasecmp(line, "Content-Disposition", colon) == 0) {
			if ((r = part_disposition(f, line + vs, ve - vs,
			    h)) != 0)
				return r;
		} else if (colon == sizeof("Content-Transfer-Encoding") - 1 &&
		    strncasecmp(line, "Content-Transfer-Encoding",
		    colon) == 0) {
			/* RFC 7578 4.7: deprecated; only identities. */
			if (strcasecmp(line + vs, "binary") != 0 &&
			    strcasecmp(line + vs, "8bit") != 0 &&
			    strcasecmp(line + vs, "7bit") != 0)
				return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s",
				    "a part has a Content-Transfer-Encoding "
				    "other than binary");
		}
		/* Content-Type and others: nothing to act on. */
	}
	if (!h->has_disposition)
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "a part has "
		    "no Content-Disposition");
	*pos = p + 2;
	return 0;
}

int
upload_parse_multipart(struct upload_fields *f, const char *boundary,
    const uint8_t *body, size_t len)
{
	char delim[4 + UPLOAD_BOUNDARY_MAX + 1];
	struct part_head h;
	const uint8_t *q;
	size_t dlen, p, dsz;
	unsigned int seen = 0;
	int which, r;

	/* A delimiter is CRLF "--" boundary; the first may open the body. */
	dlen = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
		p = dlen - 2;
	} else if (len > 0 && (q = memmem(body, len, delim, dlen)) != NULL) {
		p = (size_t)(q - body) + dlen;  /* after a preamble */
	} else {
		return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "the "
		    "multipart body does not hold its boundary");
	}
	for (;;) {
		if (len - p >= 2 && body[p] == '-' && body[p + 1] == '-')
			break;                  /* the close delimiter */
		while (p < len && (body[p] == ' ' || body[p] == '\t'))
			p++;
		if (len - p < 2 || body[p] != '\r' || body[p + 1] != '\n')
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "the "
			    "multipart body is malformed");
		p += 2;
		if ((r = part_headers(f, body, len, &p, &h)) != 0)
			return r;
		if ((q = memmem(body + p, len - p, delim, dlen)) == NULL)
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "%s", "the "
			    "multipart body is truncated");
		dsz = (size_t)(q - (body + p));
		if ((which = upload_field_lookup(h.name, strlen(h.name))) ==
		    FIELD_COUNT)
			return upload_fail(f, P8V_ERR_UNKNOWN_FIELD, "%s",
			    "unknown part; known: key_id, team_id, p8, "
			    "environment, services, topics, activate, check");
		/* Lists may repeat (checkboxes, a multi-select). */
		if ((seen & 1u << which) != 0 && which != FIELD_SERVICES &&
		    which != FIELD_TOPICS)
			return upload_fail(f, P8V_ERR_BAD_REQUEST, "part %s "
			    "appears twice", upload_field_names[which]);
		seen |= 1u << which;
		if (which == FIELD_P8 && h.has_filename &&
		    (r = upload_note_filename(f, h.filename,
		    strlen(h.filename))) != 0)
			return r;
		/* An empty file input sends an empty p8 part: absent. */
		if (!(which == FIELD_P8 && dsz == 0) &&
		    (r = upload_set_text_field(f, (enum field)which,
		    (const char *)body + p, dsz)) != 0)
			return r;
		p = (size_t)(q - body) + dlen;
	}
	return 0;
}

