/*
 * codec.h: encoding helpers shared by the record codec (common/keyrecord)
 * and the store's modules (creds, cache, audit, master keys).
 *
 * Every stored JSON document is canonical: compact, members sorted, as
 * jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS) writes it. Readers
 * re-encode what they parsed and refuse bytes that differ, so exactly one
 * byte string stands for each value and no edit can slip through as an
 * "equivalent" spelling.
 */
#ifndef P8V_COMMON_CODEC_H
#define P8V_COMMON_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Lowercase hex of n bytes into out (2n characters and a NUL). */
void codec_hex_encode(const uint8_t *in, size_t n, char *out);

/* Exactly 2n lowercase hex characters (then a NUL) into n bytes.
 * 0 or P8V_ERR_INVALID_ARGUMENT (anything else). */
int codec_hex_decode(const char *hex, uint8_t *out, size_t n);

/* Canonical JSON of obj; *out malloc'd, *len its length (no NUL counted).
 * 0, P8V_ERR_ALLOC, P8V_ERR_TOO_LARGE (over max bytes). */
int codec_json_dump(const json_t *obj, size_t max, char **out, size_t *len);

/* Parse len bytes that must be one canonical JSON object (duplicates,
 * trailing bytes and non-canonical spellings refused) into *out (a new
 * reference; NULL on failure). Returns 0, P8V_ERR_INTEGRITY (not such an
 * object), P8V_ERR_ALLOC (memory ran out: the bytes may be fine).
 * Limit: jansson reports some allocation failures in the middle of its
 * lexer as syntax errors ("invalid token"), which no caller can tell from
 * bad bytes; those remain P8V_ERR_INTEGRITY. Those it reports as such, and
 * the failures of jansson's start and of the canonical check, are
 * P8V_ERR_ALLOC. */
int codec_json_decode(const uint8_t *buf, size_t len, json_t **out);

/* codec_json_decode's object, or NULL on any failure. It cannot tell
 * memory pressure from bad bytes: a decoder that reports
 * P8V_ERR_INTEGRITY uses codec_json_decode instead. */
json_t *codec_json_load(const uint8_t *buf, size_t len);

/* Copy string member name (at most size - 1 bytes, no NUL inside) into
 * buf; 0 or P8V_ERR_BAD_FIELD (absent, not a string, too long). */
int codec_json_str(const json_t *obj, const char *name, char *buf,
    size_t size);

/* Integer member name within [min, max]; 0 or P8V_ERR_BAD_FIELD (absent,
 * not an integer, out of range). */
int codec_json_int(const json_t *obj, const char *name, int64_t min,
    int64_t max, int64_t *v);

/* JSON integers are exact up to 2^53 in every common reader. */
#define CODEC_JSON_INT_MAX ((int64_t)1 << 53)

/* Big-endian integers (what store_put_u32 and friends write). */
void codec_put_u32(uint8_t out[4], uint32_t v);
uint32_t codec_get_u32(const uint8_t in[4]);
void codec_put_u64(uint8_t out[8], uint64_t v);
uint64_t codec_get_u64(const uint8_t in[8]);

#endif /* P8V_COMMON_CODEC_H */
