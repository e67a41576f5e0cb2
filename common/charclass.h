/*
 * charclass.h: classes of bytes, by one table lookup.
 *
 * Identifiers, bearer tokens and JWS are checked character by character on
 * every request; chains of range comparisons per character cost more than
 * the rest of the check (docs/benchmarks.md, "Costs behind limits and fast
 * paths"). Each class is a bit of charclass_table[c]; a byte may be in
 * several.
 */
#ifndef P8V_COMMON_CHARCLASS_H
#define P8V_COMMON_CHARCLASS_H

#include <stdint.h>

#define CC_HEX_LOWER   0x01u  /* [0-9a-f]: token ids */
#define CC_B64URL      0x02u  /* [A-Za-z0-9_-]: base64url, no padding */
#define CC_UPPER_ALNUM 0x04u  /* [A-Z0-9]: Apple's Key and Team IDs */
#define CC_NAME        0x08u  /* [A-Za-z0-9._-]: apps, topics, actors */
#define CC_JSON_PLAIN  0x10u  /* 0x20-0x7e but '"' and '\\': a JSON
                                 string's bytes needing no escape */

extern const uint8_t charclass_table[256];

/* 1 if byte c is in one of the classes cls (CC_* bits), else 0. */
static inline int
cc_is(unsigned char c, unsigned int cls)
{
	return (charclass_table[c] & cls) != 0;
}

#endif /* P8V_COMMON_CHARCLASS_H */
