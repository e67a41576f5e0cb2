/*
 * fuzz_record_decode.c: a key record as read from the data file
 * (store/records.h, key_record_decode). The file is semi-trusted: whoever
 * can write it can at worst deny service (docs/security.md), so decoding
 * must refuse anything malformed with P8V_ERR_INTEGRITY and never crash.
 *
 * Input: one byte n, then n bytes of LMDB key (app 0x00 Key ID; a shorter
 * input gives them all to the key), then the value.
 *
 * Properties beyond "no memory error, no leak":
 *   - the result is 0, P8V_ERR_INTEGRITY or P8V_ERR_ALLOC;
 *   - one encoding only: a value that decodes encodes back to the same
 *     bytes (key_record_encode), and the key is the record's own
 *     (key_record_db_key); the record passes key_record_check.
 */
#include <string.h>

#include "common/err.h"
#include "fuzz/fuzz.h"
#include "store/records.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct key_record rec;
	uint8_t dbkey[KEY_RECORD_DB_KEY_MAX], *val = NULL;
	size_t klen, vlen, dlen;
	int r;

	if (size == 0)
		return 0;
	klen = data[0] < size - 1 ? data[0] : size - 1;
	data++;
	size--;
	r = key_record_decode(data, klen, data + klen, size - klen, &rec);
	if (r != 0) {
		FUZZ_CHECK(r == P8V_ERR_INTEGRITY || r == P8V_ERR_ALLOC);
		FUZZ_CHECK(rec.topics == NULL && rec.envelope == NULL);
		return 0;
	}
	FUZZ_CHECK(key_record_check(&rec) == 0);
	FUZZ_CHECK(key_record_encode(&rec, &val, &vlen) == 0);
	FUZZ_CHECK(vlen == size - klen &&
	    memcmp(val, data + klen, vlen) == 0);
	FUZZ_CHECK(key_record_db_key(rec.app, rec.key_id, dbkey, &dlen) == 0);
	FUZZ_CHECK(dlen == klen && memcmp(dbkey, data, klen) == 0);
	free(val);
	key_record_free(&rec);
	return 0;
}
