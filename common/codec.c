/* codec.c: shared encoding helpers; see codec.h. */
#include "common/codec.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void
codec_hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char hexd[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hexd[in[i] >> 4];
		out[2 * i + 1] = hexd[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static int
nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
codec_hex_decode(const char *hex, uint8_t *out, size_t n)
{
	size_t i;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if ((hi = nibble(hex[2 * i])) < 0 ||
		    (lo = nibble(hex[2 * i + 1])) < 0)
			return P8V_ERR_INVALID_ARGUMENT;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[2 * n] == '\0' ? 0 : P8V_ERR_INVALID_ARGUMENT;
}

int
codec_json_dump(const json_t *obj, size_t max, char **out, size_t *len)
{
	char *s;
	size_t n;

	*out = NULL;
	if ((s = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		return P8V_ERR_ALLOC;
	if ((n = strlen(s)) > max) {
		free(s);
		return P8V_ERR_TOO_LARGE;
	}
	*out = s;
	*len = n;
	return 0;
}

int
codec_json_decode(const uint8_t *buf, size_t len, json_t **out)
{
	json_error_t jerr;
	json_t *obj = NULL;
	char *canon = NULL;
	size_t clen;
	int r = P8V_ERR_INTEGRITY;

	*out = NULL;
	if ((obj = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES,
	    &jerr)) == NULL) {
		/* Memory pressure is not tampering. jansson says so with
		 * json_error_out_of_memory, or, when its lexer cannot even
		 * start, with no message at all (every syntax error has
		 * one). */
		if (json_error_code(&jerr) == json_error_out_of_memory ||
		    jerr.text[0] == '\0')
			r = P8V_ERR_ALLOC;
		goto out;
	}
	if (!json_is_object(obj))
		goto out;
	/* Capped at len: a longer canonical form is not these bytes. */
	if ((r = codec_json_dump(obj, len, &canon, &clen)) != 0) {
		if (r != P8V_ERR_ALLOC)
			r = P8V_ERR_INTEGRITY;
		goto out;
	}
	r = P8V_ERR_INTEGRITY;
	if (clen != len || memcmp(canon, buf, len) != 0)
		goto out;
	*out = obj;
	obj = NULL;
	r = 0;
 out:
	json_decref(obj);
	free(canon);
	return r;
}

json_t *
codec_json_load(const uint8_t *buf, size_t len)
{
	json_t *obj;

	return codec_json_decode(buf, len, &obj) == 0 ? obj : NULL;
}

int
codec_json_str(const json_t *obj, const char *name, char *buf, size_t size)
{
	json_t *j = json_object_get(obj, name);
	size_t n;

	if (!json_is_string(j) || (n = json_string_length(j)) >= size ||
	    strlen(json_string_value(j)) != n)
		return P8V_ERR_BAD_FIELD;
	memcpy(buf, json_string_value(j), n + 1);
	return 0;
}

int
codec_json_int(const json_t *obj, const char *name, int64_t min, int64_t max,
    int64_t *v)
{
	json_t *j = json_object_get(obj, name);
	json_int_t x;

	if (!json_is_integer(j))
		return P8V_ERR_BAD_FIELD;
	x = json_integer_value(j);
	if (x < min || x > max)
		return P8V_ERR_BAD_FIELD;
	*v = (int64_t)x;
	return 0;
}

void
codec_put_u32(uint8_t out[4], uint32_t v)
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

uint32_t
codec_get_u32(const uint8_t in[4])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
	    (uint32_t)in[2] << 8 | (uint32_t)in[3];
}

void
codec_put_u64(uint8_t out[8], uint64_t v)
{
	codec_put_u32(out, (uint32_t)(v >> 32));
	codec_put_u32(out + 4, (uint32_t)v);
}

uint64_t
codec_get_u64(const uint8_t in[8])
{
	return (uint64_t)codec_get_u32(in) << 32 | codec_get_u32(in + 4);
}
