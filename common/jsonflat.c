/* jsonflat.c: compact JSON of flat objects without jansson's serialiser;
 * see jsonflat.h. */
#include "common/jsonflat.h"

#include <stdio.h>
#include <string.h>

#include "common/charclass.h"

size_t
jsonflat_dump(const json_t *obj, char *buf, size_t size)
{
	const char *key, *v;
	json_t *val;
	size_t o = 0, n, i;
	int first = 1, w;

#define DUMP_PUT(p, len) do { \
	if ((len) >= size - o) \
		return 0; \
	memcpy(buf + o, (p), (len)); \
	o += (len); \
} while (0)
	if (!json_is_object(obj) || size < 3)
		return 0;
	buf[o++] = '{';
	json_object_foreach((json_t *)obj, key, val) {
		if (!first)
			DUMP_PUT(",", 1);
		first = 0;
		n = strlen(key);
		for (i = 0; i < n; i++)
			if (!cc_is((unsigned char)key[i], CC_JSON_PLAIN))
				return 0;
		DUMP_PUT("\"", 1);
		DUMP_PUT(key, n);
		DUMP_PUT("\":", 2);
		if (json_is_integer(val)) {
			w = snprintf(buf + o, size - o, "%" JSON_INTEGER_FORMAT,
			    json_integer_value(val));
			if (w < 0 || (size_t)w >= size - o)
				return 0;
			o += (size_t)w;
		} else if (json_is_string(val)) {
			v = json_string_value(val);
			n = json_string_length(val);
			for (i = 0; i < n; i++)
				if (!cc_is((unsigned char)v[i], CC_JSON_PLAIN))
					return 0;
			DUMP_PUT("\"", 1);
			DUMP_PUT(v, n);
			DUMP_PUT("\"", 1);
		} else {
			return 0;
		}
	}
	DUMP_PUT("}", 1);
#undef DUMP_PUT
	buf[o] = '\0';            /* DUMP_PUT left room for it */
	return o;
}

