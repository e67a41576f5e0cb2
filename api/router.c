/* router.c: strict decoding of request targets, and route matching. */
#include "api/router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

static const struct {
	unsigned int bit;
	const char *name;
} method_names[] = {
	{ API_METHOD_GET, "GET" },
	{ API_METHOD_HEAD, "HEAD" },
	{ API_METHOD_POST, "POST" },
	{ API_METHOD_PUT, "PUT" },
	{ API_METHOD_DELETE, "DELETE" },
	{ API_METHOD_PATCH, "PATCH" },
};

#define N_METHODS (sizeof(method_names) / sizeof(method_names[0]))

unsigned int
api_method_parse(const char *name)
{
	size_t i;

	if (name == NULL)
		return 0;
	for (i = 0; i < N_METHODS; i++)
		if (strcmp(name, method_names[i].name) == 0)
			return method_names[i].bit;
	return 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
api_percent_decode(const char *in, size_t len, int plus_is_space, char *out,
    size_t *out_len)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < len; i++) {
		if (in[i] == '%') {
			if (len - i < 3)
				return P8V_ERR_BAD_REQUEST;
			hi = hexval(in[i + 1]);
			lo = hexval(in[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return P8V_ERR_BAD_REQUEST;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (in[i] == '+' && plus_is_space) {
			out[o++] = ' ';
		} else if (in[i] == '\0') {
			return P8V_ERR_BAD_REQUEST;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
	if (out_len != NULL)
		*out_len = o;
	return 0;
}

void
api_path_finish(struct api_path *path)
{
	if (path == NULL)
		return;
	if (path->buf != path->inline_buf)
		free(path->buf);
	path->buf = NULL;
	path->nseg = 0;
}

/* Split out->buf, a copy of a path without its leading '/' and without
 * escapes, at each '/'. */
static int
split_plain(struct api_path *out, size_t len)
{
	char *b = out->buf, *start = b;
	size_t i;

	for (i = 0; i < len; i++) {
		if (b[i] != '/')
			continue;
		if (out->nseg == API_PATH_SEGMENTS_MAX - 1)
			return P8V_ERR_BAD_REQUEST;
		b[i] = '\0';
		out->seg[out->nseg++] = start;
		start = b + i + 1;
	}
	out->seg[out->nseg++] = start;
	return 0;
}

int
api_path_decode(const char *raw, size_t len, struct api_path *out)
{
	size_t start, end, o = 0, dlen;
	int r = P8V_ERR_INTERNAL;

	out->buf = NULL;
	out->nseg = 0;
	if (raw == NULL || len == 0 || raw[0] != '/' || len > API_PATH_MAX) {
		r = P8V_ERR_BAD_REQUEST;
		goto out;
	}
	/* Every segment decodes to at most its own length plus a NUL, and
	 * there are at most len segments: len + 1 bytes are enough. */
	if (len + 1 <= sizeof(out->inline_buf))
		out->buf = out->inline_buf;
	else if ((out->buf = malloc(len + 1)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	/* Most paths have nothing to decode: copied once and split. */
	if (memchr(raw, '%', len) == NULL && memchr(raw, '\0', len) == NULL) {
		memcpy(out->buf, raw + 1, len - 1);
		out->buf[len - 1] = '\0';
		r = split_plain(out, len - 1);
		goto out;
	}
	for (start = 1;; start = end + 1) {
		end = start;
		while (end < len && raw[end] != '/')
			end++;
		if (out->nseg == API_PATH_SEGMENTS_MAX) {
			r = P8V_ERR_BAD_REQUEST;
			goto out;
		}
		if ((r = api_percent_decode(raw + start, end - start, 0,
		    out->buf + o, &dlen)) != 0)
			goto out;
		out->seg[out->nseg++] = out->buf + o;
		o += dlen + 1;
		if (end >= len)
			break;
	}
	r = 0;
 out:
	if (r != 0)
		api_path_finish(out);
	return r;
}

void
api_query_finish(struct api_query *query)
{
	if (query == NULL)
		return;
	free(query->item);
	memset(query, 0, sizeof(*query));
}

const char *
api_query_get(const struct api_query *query, const char *name)
{
	size_t i;

	if (query == NULL || name == NULL)
		return NULL;
	for (i = 0; i < query->count; i++)
		if (strcmp(query->item[i].name, name) == 0)
			return query->item[i].value;
	return NULL;
}

int
api_query_parse(const char *raw, size_t len, struct api_query *out)
{
	struct api_query q;
	size_t start, end, eq, o = 0, dlen, i;
	int r = P8V_ERR_INTERNAL;

	memset(&q, 0, sizeof(q));
	memset(out, 0, sizeof(*out));
	if (raw == NULL && len != 0) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	/* The items, then the text: each pair decodes to at most its length
	 * plus two NULs (name and value), len + 2 per pair is generous;
	 * 2 * len + 2 covers all. */
	if (len > (SIZE_MAX - API_QUERY_MAX * sizeof(*q.item) - 2) / 2 ||
	    (q.item = malloc(API_QUERY_MAX * sizeof(*q.item) + 2 * len +
	    2)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	q.buf = (char *)(q.item + API_QUERY_MAX);
	for (start = 0; start < len; start = end + 1) {
		end = start;
		while (end < len && raw[end] != '&')
			end++;
		if (end == start)
			continue;               /* "a=1&&b=2" */
		eq = start;
		while (eq < end && raw[eq] != '=')
			eq++;
		if (eq == start || q.count == API_QUERY_MAX) {
			r = P8V_ERR_BAD_REQUEST; /* "=x", or too many pairs */
			goto out;
		}
		q.item[q.count].name = q.buf + o;
		if ((r = api_percent_decode(raw + start, eq - start, 1,
		    q.buf + o, &dlen)) != 0)
			goto out;
		o += dlen + 1;
		q.item[q.count].value = q.buf + o;
		if (eq < end) {
			if ((r = api_percent_decode(raw + eq + 1, end - eq - 1,
			    1, q.buf + o, &dlen)) != 0)
				goto out;
		} else {
			q.buf[o] = '\0';
			dlen = 0;
		}
		o += dlen + 1;
		if (q.item[q.count].name[0] == '\0') {
			r = P8V_ERR_BAD_REQUEST; /* "%41" is fine, "" is not */
			goto out;
		}
		/* A name given twice is ambiguous: which one did the client
		 * mean, and which one did a proxy in between look at? */
		for (i = 0; i < q.count; i++) {
			if (strcmp(q.item[i].name, q.item[q.count].name) == 0) {
				r = P8V_ERR_BAD_REQUEST;
				goto out;
			}
		}
		q.count++;
	}
	*out = q;
	memset(&q, 0, sizeof(q));
	r = 0;
 out:
	api_query_finish(&q);
	return r;
}

/*
 * Match one pattern against a decoded path. On a match, fills params (if
 * not NULL) and returns 1; otherwise 0.
 */
static int
match_pattern(const char *pattern, const struct api_path *path,
    struct api_params *params)
{
	const char *p = pattern, *s, *e;
	struct api_params found;
	size_t i;

	/* One pass over the pattern and the path's segments together, no
	 * strchr and strlen per segment: every request tries most routes. */
	found.count = 0;
	if (*p != '/')
		return 0;
	for (i = 0; i < path->nseg; i++) {
		if (*p != '/')
			return 0;               /* the pattern ended first */
		p++;
		s = path->seg[i];
		if (*p == '{') {
			for (e = p; *e != '/' && *e != '\0'; e++)
				;
			if (e - p >= 2 && e[-1] == '}') {
				if (*s == '\0' || found.count == API_PARAMS_MAX)
					return 0;
				found.item[found.count].name = p + 1;
				found.item[found.count].name_len =
				    (size_t)(e - p) - 2;
				found.item[found.count].value = s;
				found.count++;
				p = e;
				continue;
			}
		}
		/* A literal segment: the same bytes, both ending here (a
		 * decoded segment may hold a '/', the pattern's never). */
		while (*p != '/' && *p != '\0' && *p == *s) {
			p++;
			s++;
		}
		if (*s != '\0' || (*p != '/' && *p != '\0'))
			return 0;
	}
	if (*p != '\0')
		return 0;                       /* the path ended first */
	if (params != NULL)
		*params = found;
	return 1;
}

int
api_route_match(const struct api_route *routes, size_t n_routes,
    unsigned int method, const struct api_path *path, unsigned int listener,
    const struct api_route **route, struct api_params *params,
    unsigned int *allowed)
{
	unsigned int allow = 0, want;
	size_t i;
	int r = P8V_ERR_NOT_FOUND, take;

	*route = NULL;
	if (params != NULL)
		memset(params, 0, sizeof(*params));
	/* HEAD is GET without the body. */
	want = method == API_METHOD_HEAD ? API_METHOD_GET : method;
	/* Without allowed, the routes of the method first: a request that
	 * has a route needs no other pattern tried. */
	if (allowed == NULL && want != 0) {
		for (i = 0; i < n_routes; i++) {
			if ((routes[i].listeners & listener) != 0 &&
			    routes[i].method == want &&
			    match_pattern(routes[i].pattern, path, params)) {
				*route = &routes[i];
				return 0;
			}
		}
	}
	for (i = 0; i < n_routes; i++) {
		if ((routes[i].listeners & listener) == 0)
			continue;
		take = *route == NULL && want != 0 && routes[i].method == want;
		if (!match_pattern(routes[i].pattern, path,
		    take ? params : NULL))
			continue;
		allow |= routes[i].method;
		if (routes[i].method == API_METHOD_GET)
			allow |= API_METHOD_HEAD;
		if (take)
			*route = &routes[i];
	}
	if (*route != NULL)
		r = 0;
	else if (allow != 0)
		r = P8V_ERR_METHOD_NOT_ALLOWED;
	if (allowed != NULL)
		*allowed = allow;
	return r;
}

const char *
api_params_get(const struct api_params *params, const char *name)
{
	size_t i, len;

	if (params == NULL || name == NULL)
		return NULL;
	len = strlen(name);
	for (i = 0; i < params->count; i++)
		if (params->item[i].name_len == len &&
		    memcmp(params->item[i].name, name, len) == 0)
			return params->item[i].value;
	return NULL;
}

char *
api_allow_format(unsigned int allowed, char out[API_ALLOW_MAX])
{
	size_t i, o = 0, n;

	out[0] = '\0';
	for (i = 0; i < N_METHODS; i++) {
		if ((allowed & method_names[i].bit) == 0)
			continue;
		n = strlen(method_names[i].name);
		if (o != 0) {
			memcpy(out + o, ", ", 2);
			o += 2;
		}
		memcpy(out + o, method_names[i].name, n);
		o += n;
		out[o] = '\0';
	}
	return out;
}
