/*
 * ceiling_sign.c: the signing ceiling. The server of ceiling_fixed
 * (bench/ceiling.c), but every answer carries a fresh ES256 JWT signed with
 * a key loaded once at start (an EVP_PKEY kept for the life of the
 * process): what HTTP plus one ES256 signature cost, with straight OpenSSL
 * and nothing else. Fresh /jwt requests are measured against it.
 *
 *   ceiling_sign [--port P] [--threads N] [--pool] [--key AuthKey.p8]
 *
 * Without --key a P-256 key is generated at start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "bench/ceiling.h"

/* base64url of n bytes, no padding. */
#define B64_LEN(n) (((n) * 4 + 2) / 3)

static EVP_PKEY *pkey;
static const char *key_path;

static size_t
b64url(char *out, const unsigned char *in, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;
	unsigned int v;

	for (i = 0; i + 2 < n; i += 3) {
		v = (unsigned int)in[i] << 16 | (unsigned int)in[i + 1] << 8 |
		    in[i + 2];
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
		out[o++] = tab[v & 63];
	}
	if (n - i == 1) {
		v = (unsigned int)in[i] << 16;
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
	} else if (n - i == 2) {
		v = (unsigned int)in[i] << 16 | (unsigned int)in[i + 1] << 8;
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = tab[v >> 6 & 63];
	}
	return o;
}

/* DER ECDSA-Sig-Value to the 64-byte r || s of JWS. */
static int
der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64])
{
	const unsigned char *p = der;
	ECDSA_SIG *sig;
	const BIGNUM *r, *s;
	int ok;

	if ((sig = d2i_ECDSA_SIG(NULL, &p, (long)len)) == NULL)
		return -1;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
	ECDSA_SIG_free(sig);
	return ok ? 0 : -1;
}

static size_t
body(char *out, size_t out_size)
{
	char json[128], signing[512];
	unsigned char der[80], raw[64];
	size_t n, pos = 0, der_len = sizeof(der), len;
	EVP_MD_CTX *ctx;
	int ok;

	/* A MusicKit token's header and claims, as p8vault signs them for
	 * the jwt row (APNs's and an exp). */
	n = (size_t)snprintf(json, sizeof(json),
	    "{\"alg\":\"ES256\",\"kid\":\"ABC1234567\"}");
	pos += b64url(signing + pos, (const unsigned char *)json, n);
	signing[pos++] = '.';
	n = (size_t)snprintf(json, sizeof(json),
	    "{\"iss\":\"DEF1234567\",\"iat\":%lld,\"exp\":%lld}",
	    (long long)time(NULL), (long long)time(NULL) + 3600);
	pos += b64url(signing + pos, (const unsigned char *)json, n);
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return 0;
	ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	    EVP_DigestSign(ctx, der, &der_len, (unsigned char *)signing,
	    pos) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok || der_to_raw(der, der_len, raw) != 0)
		return 0;
	signing[pos++] = '.';
	pos += b64url(signing + pos, raw, sizeof(raw));
	signing[pos] = '\0';
	len = (size_t)snprintf(out, out_size,
	    "{\"token\":\"%s\",\"key_id\":\"ABC1234567\",\"team_id\":"
	    "\"DEF1234567\",\"issued_at\":%lld,\"expires_at\":%lld,"
	    "\"profile\":\"musickit\"}", signing, (long long)time(NULL),
	    (long long)time(NULL) + 3600);
	return len < out_size ? len : 0;
}

static int
extra(int argc, char **argv, int i)
{
	if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
		key_path = argv[i + 1];
		return 2;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	FILE *f;
	int rc;

	/* Parsed twice: --key is needed before the server starts. */
	for (rc = 1; rc < argc; rc++)
		if (extra(argc, argv, rc) == 2)
			rc++;
	if (key_path != NULL) {
		if ((f = fopen(key_path, "r")) == NULL) {
			perror(key_path);
			return 1;
		}
		pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	} else {
		pkey = EVP_EC_gen("P-256");
	}
	if (pkey == NULL) {
		fprintf(stderr, "ceiling_sign: no P-256 key\n");
		return 1;
	}
	rc = ceiling_main(argc, argv, body, extra);
	EVP_PKEY_free(pkey);
	return rc;
}
