/* checks.c: the key check's last results in the meta database. */
#include "store/checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/ids.h"

#define CHECKS_PREFIX "check/"
/* "check/" + app + "/" + Key ID and a NUL. */
#define CHECKS_KEY_BYTES (sizeof(CHECKS_PREFIX) + IDS_APP_MAX + 1 + \
    IDS_APPLE_ID_LEN + 1)

static int
key_of(const char *app, const char *key_id, char out[CHECKS_KEY_BYTES],
    size_t *len)
{
	int n;

	if (ids_app_valid(app) != 0 || ids_key_id_valid(key_id) != 0)
		return P8V_ERR_INVALID_ARGUMENT;
	n = snprintf(out, CHECKS_KEY_BYTES, CHECKS_PREFIX "%s/%s", app, key_id);
	if (n < 0 || (size_t)n >= CHECKS_KEY_BYTES)
		return P8V_ERR_INVALID_ARGUMENT;
	*len = (size_t)n;
	return 0;
}

int
store_checks_put(struct store_txn *txn, const char *app, const char *key_id,
    const char *text, size_t len)
{
	char key[CHECKS_KEY_BYTES];
	size_t klen;
	int r;

	if ((r = key_of(app, key_id, key, &klen)) != 0)
		return r;
	if (text == NULL || len == 0 || memchr(text, '\0', len) != NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (len > STORE_CHECKS_MAX)
		return P8V_ERR_TOO_LARGE;
	return store_put(txn, STORE_DB_META, key, klen, text, len, 0);
}

int
store_checks_get(struct store_txn *txn, const char *app, const char *key_id,
    char **text)
{
	char key[CHECKS_KEY_BYTES];
	const uint8_t *v;
	size_t klen, vlen;
	int r;

	if (text == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*text = NULL;
	if ((r = key_of(app, key_id, key, &klen)) != 0)
		return r;
	if ((r = store_get(txn, STORE_DB_META, key, klen, &v, &vlen)) != 0)
		return r;
	if (vlen == 0 || vlen > STORE_CHECKS_MAX ||
	    memchr(v, '\0', vlen) != NULL)
		return P8V_ERR_INTEGRITY;
	if ((*text = malloc(vlen + 1)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(*text, v, vlen);
	(*text)[vlen] = '\0';
	return 0;
}
