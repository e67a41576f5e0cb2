/* apitoken.c: the API bearer token's format and role names; see
 * apitoken.h. */
#include "store/apitoken.h"

#include <string.h>

#include <sodium.h>

#include "common/charclass.h"
#include "common/err.h"
#include "crypto/secmem.h"

static const struct {
	enum apitoken_role role;
	const char *name;
} roles[] = {
	{ APITOKEN_ROLE_PORTAL, "portal" },
	{ APITOKEN_ROLE_SIGNER, "signer" },
	{ APITOKEN_ROLE_ADMIN, "admin" },
};

const char *
apitoken_role_name(enum apitoken_role role)
{
	size_t i;

	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (roles[i].role == role)
			return roles[i].name;
	return NULL;
}

int
apitoken_role_parse(const char *name, enum apitoken_role *out)
{
	size_t i;

	if (name == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		if (strcmp(roles[i].name, name) == 0) {
			*out = roles[i].role;
			return 0;
		}
	}
	return P8V_ERR_INVALID_ARGUMENT;
}

int
apitoken_new(char *token, size_t token_size, char id[APITOKEN_ID_LEN + 1],
    uint8_t secret_hash[CRED_SECRET_HASH_BYTES])
{
	uint8_t idb[APITOKEN_ID_BYTES], *secret = NULL;
	char *s;
	int r = P8V_ERR_INTERNAL;

	if (token == NULL || token_size < APITOKEN_LEN + 1 ||
	    id == NULL || secret_hash == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((secret = secmem_alloc(APITOKEN_SECRET_BYTES)) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	if ((r = secmem_random(idb, sizeof(idb))) != 0 ||
	    (r = secmem_random(secret, APITOKEN_SECRET_BYTES)) != 0)
		goto out;
	sodium_bin2hex(id, APITOKEN_ID_LEN + 1, idb, sizeof(idb));
	memcpy(token, APITOKEN_PREFIX, APITOKEN_PREFIX_LEN);
	s = token + APITOKEN_PREFIX_LEN;
	memcpy(s, id, APITOKEN_ID_LEN);
	s += APITOKEN_ID_LEN;
	*s++ = '_';
	/* Writes APITOKEN_SECRET_LEN characters and the NUL. */
	sodium_bin2base64(s, APITOKEN_SECRET_LEN + 1, secret,
	    APITOKEN_SECRET_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if (strlen(token) != APITOKEN_LEN) {
		r = P8V_ERR_INTERNAL;
		goto out;
	}
	if ((r = store_cred_hash_secret(s, APITOKEN_SECRET_LEN,
	    secret_hash)) != 0)
		goto out;
	r = 0;
 out:
	if (r != 0)
		secmem_wipe(token, token_size);
	secmem_free(secret);
	return r;
}

/* The value of a base64url character, or 64 for any other byte. */
static unsigned int
b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return (unsigned int)(c - 'A');
	if (c >= 'a' && c <= 'z')
		return (unsigned int)(c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (unsigned int)(c - '0' + 52);
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return 64;
}

int
apitoken_parse(const char *token, size_t len, char id[APITOKEN_ID_LEN + 1],
    const char **secret)
{
	const unsigned char *p;
	unsigned int hex = CC_HEX_LOWER, b64 = CC_B64URL;
	size_t i;

	if (token == NULL || id == NULL || secret == NULL ||
	    len != APITOKEN_LEN ||
	    !secmem_equal(token, APITOKEN_PREFIX, APITOKEN_PREFIX_LEN))
		return P8V_ERR_UNAUTHORIZED;
	/* Every character's class (common/charclass.h) ANDed together, then
	 * one test: no branch per character, on every request
	 * (docs/benchmarks.md, "Costs behind limits and fast paths"). */
	p = (const unsigned char *)token + APITOKEN_PREFIX_LEN;
	for (i = 0; i < APITOKEN_ID_LEN; i++)
		hex &= charclass_table[p[i]];
	if (hex == 0 || p[APITOKEN_ID_LEN] != '_')
		return P8V_ERR_UNAUTHORIZED;
	p += APITOKEN_ID_LEN + 1;
	for (i = 0; i < APITOKEN_SECRET_LEN; i++)
		b64 &= charclass_table[p[i]];
	if (b64 == 0)
		return P8V_ERR_UNAUTHORIZED;
	/* 43 characters hold 258 bits for 256: the last character's two low
	 * bits are zero in the one canonical encoding (every character is
	 * base64url here, so its value is below 64). */
	if ((b64url_value(p[APITOKEN_SECRET_LEN - 1]) & 3) != 0)
		return P8V_ERR_UNAUTHORIZED;
	memcpy(id, token + APITOKEN_PREFIX_LEN, APITOKEN_ID_LEN);
	id[APITOKEN_ID_LEN] = '\0';
	*secret = (const char *)p;
	return 0;
}
