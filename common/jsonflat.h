/*
 * jsonflat.h: the compact JSON text of a flat object, fast.
 *
 * jansson's json_dumps checks UTF-8 and escapes character by character and
 * grows its string by realloc: on the signing path, a large share of a
 * request's CPU (docs/benchmarks.md, "Costs behind limits and fast
 * paths"). The objects there (answers, JOSE headers, most claims) are
 * flat: integers and strings that need no escaping. jsonflat_dump writes
 * those directly, several times faster, and declines anything else, for
 * the caller to use json_dumps.
 */
#ifndef P8V_COMMON_JSONFLAT_H
#define P8V_COMMON_JSONFLAT_H

#include <stddef.h>

#include <jansson.h>

/*
 * The compact JSON text of obj (NUL-terminated) into buf (size bytes), if
 * obj is an object whose keys and string values are printable ASCII other
 * than '"' and '\\' and whose other values are integers: exactly the bytes
 * json_dumps(obj, JSON_COMPACT) gives (tests/test_api_http,
 * test_json_bytes). Returns the length (without the NUL), or 0 when obj is
 * anything else or its text does not fit.
 */
size_t jsonflat_dump(const json_t *obj, char *buf, size_t size);

#endif /* P8V_COMMON_JSONFLAT_H */
