/*
 * p8.c: Apple .p8 keys: strict PEM armour, strict base64, a strict DER reader
 * for the two structures involved (PKCS#8 PrivateKeyInfo, RFC 5208, and
 * ECPrivateKey, RFC 5915), and the key as an OpenSSL EVP_PKEY.
 *
 * OpenSSL's own decoders are lenient in places (BER lengths, missing
 * parameters, curve checks after the fact) and do not say *why* a key is
 * refused, so the armour and the DER are read here and every refusal gets
 * its own error; OpenSSL is used only for the curve arithmetic and to hold
 * the finished key.
 *
 * Nothing here logs, and no error path looks at more input than it needs:
 * the input is a private key.
 */
#include "crypto/p8.h"

#include <pthread.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <sodium.h>

#include "common/err.h"
#include "crypto/p8_internal.h"
#include "crypto/secmem.h"

struct p8_key {
	EVP_PKEY *pkey;                   /* private scalar in the secure heap */
	uint8_t public_point[P8_PUBLIC_BYTES]; /* 0x04 || X || Y, public */
};

/* ---- PEM armour ---------------------------------------------------------- */

#define PEM_BEGIN "-----BEGIN "
#define PEM_END "-----END "
#define PEM_DASHES "-----"
#define PEM_PKCS8_LABEL "PRIVATE KEY"
/* Longest label we look at; real ones ("ENCRYPTED PRIVATE KEY") are < 32. */
#define PEM_LABEL_MAX 64
/* Column at which p8_public_pem wraps base64, as RFC 7468 and openssl do. */
#define PEM_LINE_CHARS 64
/* RFC 1421 header of a legacy encrypted PEM ("Proc-Type: 4,ENCRYPTED"). */
#define PEM_PROC_TYPE "Proc-Type:"
#define UTF8_BOM "\xef\xbb\xbf"

enum label_match {
	LABEL_EXACT,
	LABEL_CONTAINS,
	LABEL_SUFFIX,
};

/* First match wins: what each PEM label means to an upload of a .p8. */
static const struct {
	enum label_match match;
	const char *text;
	int err;
} pem_labels[] = {
	{ LABEL_EXACT, PEM_PKCS8_LABEL, 0 },
	{ LABEL_EXACT, "ENCRYPTED PRIVATE KEY", P8V_ERR_P8_ENCRYPTED },
	/* "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE",
	 * "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST" */
	{ LABEL_CONTAINS, "CERTIFICATE", P8V_ERR_P8_CERTIFICATE },
	{ LABEL_EXACT, "X509 CRL", P8V_ERR_P8_CERTIFICATE },
	{ LABEL_EXACT, "PKCS7", P8V_ERR_P8_CERTIFICATE },
	{ LABEL_EXACT, "PKCS #7 SIGNED DATA", P8V_ERR_P8_CERTIFICATE },
	{ LABEL_EXACT, "CMS", P8V_ERR_P8_CERTIFICATE },
	{ LABEL_EXACT, "PKCS12", P8V_ERR_P8_CERTIFICATE },
	/* "PUBLIC KEY", "EC PUBLIC KEY", "RSA PUBLIC KEY", ... */
	{ LABEL_SUFFIX, "PUBLIC KEY", P8V_ERR_P8_PUBLIC_KEY },
};

static int
is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
all_space(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!is_space(p[i]))
			return 0;
	return 1;
}

static int
has_prefix(const uint8_t *p, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);

	return n >= k && memcmp(p, prefix, k) == 0;
}

/* Error for a PEM label (0 for PKCS#8); anything unknown is "not PKCS#8". */
static int
classify_label(const uint8_t *label, size_t n)
{
	size_t i, k;

	for (i = 0; i < sizeof(pem_labels) / sizeof(pem_labels[0]); i++) {
		const char *t = pem_labels[i].text;

		k = strlen(t);
		switch (pem_labels[i].match) {
		case LABEL_EXACT:
			if (n == k && memcmp(label, t, k) == 0)
				return pem_labels[i].err;
			break;
		case LABEL_CONTAINS:
			if (memmem(label, n, t, k) != NULL)
				return pem_labels[i].err;
			break;
		case LABEL_SUFFIX:
			if (n >= k && memcmp(label + n - k, t, k) == 0)
				return pem_labels[i].err;
			break;
		}
	}
	return P8V_ERR_P8_NOT_PKCS8;
}

/*
 * Skip optional blanks and one line end ("\n" or "\r\n") at *pos.
 * Returns 0, or -1 if something else follows.
 */
static int
skip_line_end(const uint8_t *p, size_t n, size_t *pos)
{
	size_t i = *pos;

	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i < n && p[i] == '\r')
		i++;
	if (i >= n || p[i] != '\n')
		return -1;
	*pos = i + 1;
	return 0;
}

/* 1 if the line starting at p is a legacy "Proc-Type: 4,ENCRYPTED" header. */
static int
is_proc_type_encrypted(const uint8_t *p, size_t n)
{
	const uint8_t *eol = memchr(p, '\n', n);
	size_t line = eol != NULL ? (size_t)(eol - p) : n;

	return has_prefix(p, line, PEM_PROC_TYPE) &&
	    memmem(p, line, "ENCRYPTED", strlen("ENCRYPTED")) != NULL;
}

/*
 * Find the one PKCS#8 block in input and return its base64 body (which may
 * hold line ends) in *body / *body_len. See p8.h for the rules; in short:
 * optional BOM, white space, BEGIN line, base64 lines, END line, white
 * space, nothing else.
 */
static int
find_pkcs8_body(const uint8_t *input, size_t len, const uint8_t **body,
    size_t *body_len)
{
	const uint8_t *p = input, *begin, *label, *dashes, *end;
	size_t n = len, pos, label_len, end_pos;
	int r;

	if (has_prefix(p, n, UTF8_BOM)) {
		p += strlen(UTF8_BOM);
		n -= strlen(UTF8_BOM);
	}
	if ((begin = memmem(p, n, PEM_BEGIN, strlen(PEM_BEGIN))) == NULL)
		return P8V_ERR_P8_NOT_PEM;
	pos = (size_t)(begin - p) + strlen(PEM_BEGIN);
	label = p + pos;
	dashes = memmem(label, n - pos, PEM_DASHES, strlen(PEM_DASHES));
	if (dashes == NULL || dashes == label ||
	    (label_len = (size_t)(dashes - label)) > PEM_LABEL_MAX ||
	    memchr(label, '\n', label_len) != NULL ||
	    memchr(label, '\r', label_len) != NULL)
		return P8V_ERR_P8_NOT_PEM;
	pos += label_len + strlen(PEM_DASHES);

	/*
	 * Say what the first block is before anything else: a certificate or
	 * a public key is the most useful answer even inside a messy file.
	 */
	if ((r = classify_label(label, label_len)) != 0 &&
	    r != P8V_ERR_P8_NOT_PKCS8)
		return r;
	if (skip_line_end(p, n, &pos) != 0)
		return P8V_ERR_P8_NOT_PEM;
	if (label_len >= strlen(PEM_PKCS8_LABEL) &&
	    memcmp(dashes - strlen(PEM_PKCS8_LABEL), PEM_PKCS8_LABEL,
	    strlen(PEM_PKCS8_LABEL)) == 0 &&
	    is_proc_type_encrypted(p + pos, n - pos))
		return P8V_ERR_P8_ENCRYPTED;
	if (r != 0)
		return r;

	/* Explanatory text before the block (RFC 7468 allows it): a .p8 has
	 * none, and we keep to exactly what Apple issues. */
	if (!all_space(p, (size_t)(begin - p)))
		return P8V_ERR_P8_NOT_PEM;

	/* Base64 holds no '-': the next dashes start the END line. */
	end = memmem(p + pos, n - pos, PEM_DASHES, strlen(PEM_DASHES));
	if (end == NULL)
		return P8V_ERR_P8_NOT_PEM;
	end_pos = (size_t)(end - p);
	if ((end_pos != pos && p[end_pos - 1] != '\n') ||
	    !has_prefix(end, n - end_pos, PEM_END PEM_PKCS8_LABEL PEM_DASHES))
		return P8V_ERR_P8_NOT_PEM;
	*body = p + pos;
	*body_len = end_pos - pos;

	pos = end_pos + strlen(PEM_END PEM_PKCS8_LABEL PEM_DASHES);
	if (all_space(p + pos, n - pos))
		return 0;
	if (memmem(p + pos, n - pos, PEM_BEGIN, strlen(PEM_BEGIN)) != NULL)
		return P8V_ERR_P8_MULTIPLE_KEYS;
	return P8V_ERR_P8_TRAILING_DATA;
}

/*
 * Decode the base64 body into guarded memory (*der, secmem_free'd by the
 * caller). Strict: only the base64 alphabet, correct '=' padding, zero
 * trailing bits; line ends ("\r", "\n") anywhere are ignored.
 */
static int
decode_body(const uint8_t *body, size_t body_len, uint8_t **der,
    size_t *der_len)
{
	uint8_t *buf = NULL;
	size_t cap = body_len / 4 * 3 + 3, n = 0;
	int r = P8V_ERR_INTERNAL;

	if ((buf = secmem_alloc_short(cap)) == NULL) {
		r = P8V_ERR_SECMEM;
		goto out;
	}
	if (body_len > 0 && sodium_base642bin(buf, cap, (const char *)body,
	    body_len, "\r\n", &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
		r = P8V_ERR_P8_BAD_BASE64;
		goto out;
	}
	*der = buf;
	*der_len = n;
	buf = NULL;
	r = 0;
 out:
	if (buf != NULL) {
		secmem_wipe(buf, cap);
		secmem_free(buf);
	}
	return r;
}

/* ---- strict DER reader ---------------------------------------------------- */

#define DER_INTEGER 0x02
#define DER_BIT_STRING 0x03
#define DER_OCTET_STRING 0x04
#define DER_NULL 0x05
#define DER_OID 0x06
#define DER_SEQUENCE 0x30
#define DER_CONTEXT_0 0xa0 /* [0] EXPLICIT, constructed */
#define DER_CONTEXT_1 0xa1 /* [1] EXPLICIT, constructed */
/* Length octets we accept after 0x8N: inputs are < 4 KiB, two suffice. */
#define DER_MAX_LENGTH_OCTETS 2

/* OID contents (without tag and length). */
static const uint8_t oid_ec_public_key[] = {   /* 1.2.840.10045.2.1 */
	0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
static const uint8_t oid_prime256v1[] = {      /* 1.2.840.10045.3.1.7 */
	0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

/* PKCS#8 PrivateKeyInfo version v1; ECPrivateKey version ecPrivkeyVer1. */
#define PKCS8_VERSION 0
#define EC_PRIVKEY_VERSION 1

/* The order n of P-256, big-endian. */
static const uint8_t p256_order[P8_SCALAR_BYTES] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51 };

/* DER SubjectPublicKeyInfo of a P-256 key, up to the point: SEQUENCE {
 * SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes, 0 unused) }. */
static const uint8_t p256_spki_prefix[] = {
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
	0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03,
	0x42, 0x00 };
#define P256_SPKI_BYTES (sizeof(p256_spki_prefix) + P8_PUBLIC_BYTES)

#define POINT_UNCOMPRESSED 0x04
#define POINT_COMPRESSED_EVEN 0x02
#define POINT_COMPRESSED_ODD 0x03
#define P8_COMPRESSED_BYTES 33 /* 0x02/0x03 || X */

/* A window onto DER bytes. */
struct der {
	const uint8_t *p;
	size_t len;
};

/*
 * Take the next element of d if its tag is `tag`: definite, minimally
 * encoded length, contents within d. *val gets the contents.
 * 0 or -1 (malformed or another tag).
 */
static int
der_take(struct der *d, uint8_t tag, struct der *val)
{
	size_t hdr = 2, n;

	if (d->len < hdr || d->p[0] != tag)
		return -1;
	n = d->p[1];
	if (n & 0x80) {
		size_t octets = n & 0x7f, i;

		/* 0x80 is BER's indefinite length; DER forbids it. */
		if (octets == 0 || octets > DER_MAX_LENGTH_OCTETS ||
		    d->len < hdr + octets || d->p[2] == 0)
			return -1;
		for (n = 0, i = 0; i < octets; i++)
			n = (n << 8) | d->p[2 + i];
		/* Long form only where the short form cannot say it. */
		if (n < 0x80)
			return -1;
		hdr += octets;
	}
	if (n > d->len - hdr)
		return -1;
	val->p = d->p + hdr;
	val->len = n;
	d->p += hdr + n;
	d->len -= hdr + n;
	return 0;
}

/* Tag of the next element, or -1 at the end. */
static int
der_peek(const struct der *d)
{
	return d->len > 0 ? d->p[0] : -1;
}

static int
der_is(const struct der *v, const uint8_t *bytes, size_t n)
{
	return v->len == n && memcmp(v->p, bytes, n) == 0;
}

/* Take an INTEGER that must be the small value `want` (one content byte). */
static int
der_take_small_int(struct der *d, uint8_t want)
{
	struct der v;

	if (der_take(d, DER_INTEGER, &v) != 0 || v.len != 1 || v.p[0] != want)
		return -1;
	return 0;
}

/*
 * ECParameters (RFC 5480): namedCurve OID | implicitCurve NULL |
 * specifiedCurve SEQUENCE. d must hold exactly one of them.
 */
static int
check_ec_parameters(struct der d)
{
	struct der v;

	switch (der_peek(&d)) {
	case DER_OID:
		if (der_take(&d, DER_OID, &v) != 0 || d.len != 0)
			return P8V_ERR_P8_MALFORMED;
		if (!der_is(&v, oid_prime256v1, sizeof(oid_prime256v1)))
			return P8V_ERR_P8_WRONG_CURVE;
		return 0;
	case DER_SEQUENCE:
	case DER_NULL:
		/* Explicit parameters, or "inherited from the CA": no name we
		 * can check, even when the numbers are P-256's. */
		return P8V_ERR_P8_EXPLICIT_CURVE;
	default:
		return P8V_ERR_P8_MALFORMED;
	}
}

/*
 * PrivateKeyInfo ::= SEQUENCE { version INTEGER (0), privateKeyAlgorithm
 * AlgorithmIdentifier, privateKey OCTET STRING } with nothing after it
 * (no attributes, no v2 public key: Apple's keys have neither).
 * *ec_priv gets the privateKey contents.
 */
static int
read_private_key_info(const uint8_t *der, size_t der_len, struct der *ec_priv)
{
	struct der all = { der, der_len }, pki, alg, oid, version;
	int r;

	if (der_take(&all, DER_SEQUENCE, &pki) != 0)
		return P8V_ERR_P8_MALFORMED;
	if (all.len != 0)
		return P8V_ERR_P8_TRAILING_DATA;
	/* Read the version but judge it after the algorithm: a v2 Ed25519
	 * key is better refused as "not EC" than as "malformed". */
	if (der_take(&pki, DER_INTEGER, &version) != 0 ||
	    der_take(&pki, DER_SEQUENCE, &alg) != 0 ||
	    der_take(&alg, DER_OID, &oid) != 0)
		return P8V_ERR_P8_MALFORMED;
	if (!der_is(&oid, oid_ec_public_key, sizeof(oid_ec_public_key)))
		return P8V_ERR_P8_WRONG_KEY_TYPE;
	/* RFC 5480: the parameters are required for id-ecPublicKey. */
	if (alg.len == 0)
		return P8V_ERR_P8_MALFORMED;
	if ((r = check_ec_parameters(alg)) != 0)
		return r;
	if (version.len != 1 || version.p[0] != PKCS8_VERSION ||
	    der_take(&pki, DER_OCTET_STRING, ec_priv) != 0 || pki.len != 0)
		return P8V_ERR_P8_MALFORMED;
	return 0;
}

/*
 * ECPrivateKey ::= SEQUENCE { version INTEGER (1), privateKey OCTET STRING
 * (exactly 32 bytes, RFC 5915), parameters [0] ECParameters OPTIONAL,
 * publicKey [1] BIT STRING OPTIONAL }, filling the whole OCTET STRING.
 * *scalar gets the 32 bytes; *pub the point bytes (len 0 if absent).
 */
static int
read_ec_private_key(struct der in, struct der *scalar, struct der *pub)
{
	struct der ec, wrapped, bits;
	int r;

	pub->p = NULL;
	pub->len = 0;
	if (der_take(&in, DER_SEQUENCE, &ec) != 0 || in.len != 0 ||
	    der_take_small_int(&ec, EC_PRIVKEY_VERSION) != 0 ||
	    der_take(&ec, DER_OCTET_STRING, scalar) != 0 ||
	    scalar->len != P8_SCALAR_BYTES)
		return P8V_ERR_P8_MALFORMED;
	if (der_peek(&ec) == DER_CONTEXT_0) {
		if (der_take(&ec, DER_CONTEXT_0, &wrapped) != 0)
			return P8V_ERR_P8_MALFORMED;
		/* Must agree with the AlgorithmIdentifier, i.e. name P-256. */
		if ((r = check_ec_parameters(wrapped)) != 0)
			return r;
	}
	if (der_peek(&ec) == DER_CONTEXT_1) {
		if (der_take(&ec, DER_CONTEXT_1, &wrapped) != 0 ||
		    der_take(&wrapped, DER_BIT_STRING, &bits) != 0 ||
		    wrapped.len != 0 || bits.len < 2 || bits.p[0] != 0)
			return P8V_ERR_P8_MALFORMED;
		pub->p = bits.p + 1; /* after the unused-bits octet */
		pub->len = bits.len - 1;
	}
	if (ec.len != 0)
		return P8V_ERR_P8_MALFORMED;
	return 0;
}

/* ---- curve arithmetic ------------------------------------------------------ */

/* 1 if 0 < s < n, without branching on the scalar's bytes. */
static int
scalar_in_range(const uint8_t s[P8_SCALAR_BYTES])
{
	unsigned int borrow = 0, any = 0;
	size_t i;

	/* s - n borrows exactly when s < n. */
	for (i = P8_SCALAR_BYTES; i-- > 0;) {
		unsigned int diff = (unsigned int)s[i] - p256_order[i] - borrow;

		borrow = (diff >> 8) & 1;
		any |= s[i];
	}
	return (int)(borrow & ((any + 0xff) >> 8));
}

/*
 * Decode a point in one of the encodings SEC 1 allows for a public key
 * (uncompressed 65 bytes, compressed 33 bytes; not infinity, not hybrid)
 * into q, which OpenSSL checks is on the curve. 0 or -1.
 */
static int
decode_point(const EC_GROUP *group, const uint8_t *bytes, size_t n,
    EC_POINT *q, BN_CTX *ctx)
{
	if (!((n == P8_PUBLIC_BYTES && bytes[0] == POINT_UNCOMPRESSED) ||
	    (n == P8_COMPRESSED_BYTES && (bytes[0] == POINT_COMPRESSED_EVEN ||
	    bytes[0] == POINT_COMPRESSED_ODD))))
		return -1;
	if (EC_POINT_oct2point(group, q, bytes, n, ctx) != 1 ||
	    EC_POINT_is_at_infinity(group, q)) {
		/* An expected refusal: leave no stale entry in the thread's
		 * OpenSSL error queue for a later caller to misread. */
		ERR_clear_error();
		return -1;
	}
	return 0;
}

/*
 * P-256, built once per process: EC_GROUP_new_by_curve_name costs ~7 us,
 * a quarter of a signature, and the group is read-only once built.
 */
static pthread_once_t group_once = PTHREAD_ONCE_INIT;
static EC_GROUP *p256_group;

static void
group_init(void)
{
	p256_group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
}

const EC_GROUP *
p8_group(void)
{
	if (pthread_once(&group_once, group_init) != 0)
		return NULL;
	return p256_group;
}

/*
 * The key from a validated-range scalar: compute scalar*G, compare it with
 * the claimed point if there is one (any SEC 1 form), build the EVP_PKEY.
 */
static int
key_create(const uint8_t scalar[P8_SCALAR_BYTES], const uint8_t *claimed,
    size_t claimed_len, struct p8_key **out)
{
	struct p8_key *key = NULL;
	const EC_GROUP *group;
	EC_POINT *point = NULL, *q = NULL;
	BN_CTX *bnctx = NULL;
	BIGNUM *priv = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	int r = P8V_ERR_INTERNAL;

	if (!scalar_in_range(scalar)) {
		r = P8V_ERR_P8_BAD_SCALAR;
		goto out;
	}
	if ((key = calloc(1, sizeof(*key))) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	r = P8V_ERR_CRYPTO;
	if ((group = p8_group()) == NULL ||
	    (bnctx = BN_CTX_secure_new()) == NULL ||
	    (priv = BN_secure_new()) == NULL ||
	    (point = EC_POINT_new(group)) == NULL)
		goto out;
	BN_set_flags(priv, BN_FLG_CONSTTIME);
	if (BN_bin2bn(scalar, P8_SCALAR_BYTES, priv) == NULL ||
	    EC_POINT_mul(group, point, priv, NULL, NULL, bnctx) != 1 ||
	    EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED,
	    key->public_point, P8_PUBLIC_BYTES, bnctx) != P8_PUBLIC_BYTES)
		goto out;
	if (claimed != NULL) {
		if ((q = EC_POINT_new(group)) == NULL)
			goto out;
		if (decode_point(group, claimed, claimed_len, q, bnctx) != 0 ||
		    EC_POINT_cmp(group, q, point, bnctx) != 0) {
			r = P8V_ERR_P8_PUBKEY_MISMATCH;
			goto out;
		}
	}
	/* The importer copies priv into a BIGNUM of its own in the secure
	 * heap (BN_dup keeps BN_FLG_SECURE); the padded push keeps the
	 * parameter's length independent of the scalar's leading zeros. */
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	    SN_X9_62_prime256v1, 0) ||
	    !OSSL_PARAM_BLD_push_BN_pad(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv,
	    P8_SCALAR_BYTES) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
	    key->public_point, P8_PUBLIC_BYTES) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, &key->pkey, EVP_PKEY_KEYPAIR, params) != 1)
		goto out;
	*out = key;
	key = NULL;
	r = 0;
 out:
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params); /* clears the secure block holding priv */
	OSSL_PARAM_BLD_free(bld);
	EC_POINT_free(q);
	EC_POINT_clear_free(point);
	BN_clear_free(priv);
	BN_CTX_free(bnctx);
	p8_key_destroy(key);
	return r;
}

int
p8_scalar_check(const uint8_t scalar[P8_SCALAR_BYTES],
    const uint8_t pub[P8_PUBLIC_BYTES])
{
	const EC_GROUP *group;
	uint8_t computed[P8_PUBLIC_BYTES];
	EC_POINT *point = NULL;
	BN_CTX *bnctx = NULL;
	BIGNUM *priv = NULL;
	int r = P8V_ERR_CRYPTO;

	if (scalar == NULL || pub == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (!scalar_in_range(scalar))
		return P8V_ERR_P8_BAD_SCALAR;
	if ((group = p8_group()) == NULL ||
	    (bnctx = BN_CTX_secure_new()) == NULL ||
	    (priv = BN_secure_new()) == NULL ||
	    (point = EC_POINT_new(group)) == NULL)
		goto out;
	BN_set_flags(priv, BN_FLG_CONSTTIME);
	if (BN_bin2bn(scalar, P8_SCALAR_BYTES, priv) == NULL ||
	    EC_POINT_mul(group, point, priv, NULL, NULL, bnctx) != 1 ||
	    EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED,
	    computed, sizeof(computed), bnctx) != P8_PUBLIC_BYTES)
		goto out;
	/* The stored form is the uncompressed encoding: equal points have
	 * equal encodings. Public values: memcmp is fine. */
	r = memcmp(computed, pub, P8_PUBLIC_BYTES) == 0 ? 0 :
	    P8V_ERR_P8_PUBKEY_MISMATCH;
 out:
	if (r == P8V_ERR_CRYPTO)
		ERR_clear_error();
	EC_POINT_clear_free(point);
	BN_clear_free(priv);
	BN_CTX_free(bnctx);
	return r;
}

/* ---- public interface ------------------------------------------------------ */

int
p8_parse(const uint8_t *input, size_t input_len, struct p8_key **out)
{
	const uint8_t *body = NULL;
	size_t body_len = 0, der_len = 0;
	uint8_t *der = NULL;
	struct der ec_priv, scalar, pub;
	int r = P8V_ERR_INTERNAL;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || (input == NULL && input_len != 0)) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if (input_len > P8_MAX_INPUT_BYTES) {
		r = P8V_ERR_P8_TOO_LARGE;
		goto out;
	}
	if (input_len == 0) {
		r = P8V_ERR_P8_NOT_PEM;
		goto out;
	}
	if ((r = find_pkcs8_body(input, input_len, &body, &body_len)) != 0 ||
	    (r = decode_body(body, body_len, &der, &der_len)) != 0 ||
	    (r = read_private_key_info(der, der_len, &ec_priv)) != 0 ||
	    (r = read_ec_private_key(ec_priv, &scalar, &pub)) != 0 ||
	    (r = key_create(scalar.p, pub.len > 0 ? pub.p : NULL, pub.len,
	    out)) != 0)
		goto out;
	r = 0;
 out:
	if (der != NULL) {
		secmem_wipe(der, der_len);
		secmem_free(der);
	}
	return r;
}

int
p8_key_from_scalar(const uint8_t scalar[P8_SCALAR_BYTES], const uint8_t *pub,
    struct p8_key **out)
{
	if (out != NULL)
		*out = NULL;
	if (scalar == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	return key_create(scalar, pub, pub != NULL ? P8_PUBLIC_BYTES : 0, out);
}

int
p8_key_export_scalar(const struct p8_key *key, uint8_t out[P8_SCALAR_BYTES])
{
	OSSL_PARAM params[2];
	size_t i;

	if (key == NULL || key->pkey == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	/* Straight into the caller's (guarded) buffer: no BIGNUM copy on the
	 * ordinary heap, as EVP_PKEY_get_bn_param would make. The provider
	 * writes the number padded to 32 bytes in native byte order. */
	params[0] = OSSL_PARAM_construct_BN(OSSL_PKEY_PARAM_PRIV_KEY, out,
	    P8_SCALAR_BYTES);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_PKEY_get_params(key->pkey, params) != 1 ||
	    params[0].return_size != P8_SCALAR_BYTES) {
		secmem_wipe(out, P8_SCALAR_BYTES);
		return P8V_ERR_CRYPTO;
	}
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (i = 0; i < P8_SCALAR_BYTES / 2; i++) {
		uint8_t t = out[i];

		out[i] = out[P8_SCALAR_BYTES - 1 - i];
		out[P8_SCALAR_BYTES - 1 - i] = t;
	}
#else
	(void)i;
#endif
	return 0;
}

int
p8_key_public_point(const struct p8_key *key, uint8_t out[P8_PUBLIC_BYTES])
{
	if (key == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	memcpy(out, key->public_point, P8_PUBLIC_BYTES);
	return 0;
}

EVP_PKEY *
p8_key_evp(const struct p8_key *key)
{
	return key != NULL ? key->pkey : NULL;
}

void
p8_key_destroy(struct p8_key *key)
{
	if (key == NULL)
		return;
	/* EVP_PKEY_free clears the private BIGNUM (BN_clear_free). */
	EVP_PKEY_free(key->pkey);
	secmem_wipe(key, sizeof(*key));
	free(key);
}

int
p8_public_check(const uint8_t pub[P8_PUBLIC_BYTES])
{
	const EC_GROUP *group;
	EC_POINT *q = NULL;
	int r = P8V_ERR_INTERNAL;

	if (pub == NULL || pub[0] != POINT_UNCOMPRESSED) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if ((group = p8_group()) == NULL ||
	    (q = EC_POINT_new(group)) == NULL) {
		r = P8V_ERR_CRYPTO;
		goto out;
	}
	/* Checks x, y < p and y^2 = x^3 - 3x + b; the cofactor is 1, so a
	 * point on the curve other than infinity has order n. */
	if (decode_point(group, pub, P8_PUBLIC_BYTES, q, NULL) != 0) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	r = 0;
 out:
	EC_POINT_free(q);
	return r;
}

int
p8_public_fingerprint(const uint8_t pub[P8_PUBLIC_BYTES],
    char hex[P8_FINGERPRINT_HEX + 1])
{
	uint8_t spki[P256_SPKI_BYTES], digest[crypto_hash_sha256_BYTES];
	int r;

	if (hex == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((r = p8_public_check(pub)) != 0)
		return r;
	memcpy(spki, p256_spki_prefix, sizeof(p256_spki_prefix));
	memcpy(spki + sizeof(p256_spki_prefix), pub, P8_PUBLIC_BYTES);
	if (EVP_Digest(spki, sizeof(spki), digest, NULL, EVP_sha256(),
	    NULL) != 1)
		return P8V_ERR_CRYPTO;
	sodium_bin2hex(hex, P8_FINGERPRINT_HEX + 1, digest, sizeof(digest));
	return 0;
}

/* "-----BEGIN PUBLIC KEY-----\n" + lines + "-----END PUBLIC KEY-----\n" */
#define PEM_PUBLIC_HEAD "-----BEGIN PUBLIC KEY-----\n"
#define PEM_PUBLIC_TAIL "-----END PUBLIC KEY-----\n"
#define P256_SPKI_B64_CHARS \
	(sodium_base64_ENCODED_LEN(P256_SPKI_BYTES, \
	sodium_base64_VARIANT_ORIGINAL) - 1)

int
p8_public_pem(const uint8_t pub[P8_PUBLIC_BYTES], char **pem)
{
	uint8_t spki[P256_SPKI_BYTES];
	char b64[P256_SPKI_B64_CHARS + 1], *buf = NULL, *w;
	size_t i, cap;
	int r = P8V_ERR_INTERNAL;

	if (pem == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*pem = NULL;
	if ((r = p8_public_check(pub)) != 0)
		goto out;
	memcpy(spki, p256_spki_prefix, sizeof(p256_spki_prefix));
	memcpy(spki + sizeof(p256_spki_prefix), pub, P8_PUBLIC_BYTES);
	sodium_bin2base64(b64, sizeof(b64), spki, sizeof(spki),
	    sodium_base64_VARIANT_ORIGINAL);
	cap = strlen(PEM_PUBLIC_HEAD) + P256_SPKI_B64_CHARS +
	    (P256_SPKI_B64_CHARS + PEM_LINE_CHARS - 1) / PEM_LINE_CHARS +
	    strlen(PEM_PUBLIC_TAIL) + 1;
	if ((buf = malloc(cap)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	w = stpcpy(buf, PEM_PUBLIC_HEAD);
	for (i = 0; i < P256_SPKI_B64_CHARS; i += PEM_LINE_CHARS) {
		size_t k = P256_SPKI_B64_CHARS - i < PEM_LINE_CHARS ?
		    P256_SPKI_B64_CHARS - i : PEM_LINE_CHARS;

		memcpy(w, b64 + i, k);
		w += k;
		*w++ = '\n';
	}
	stpcpy(w, PEM_PUBLIC_TAIL);
	*pem = buf;
	buf = NULL;
	r = 0;
 out:
	free(buf);
	return r;
}

/* base64url of one 32-byte coordinate, no padding: 43 characters. */
#define JWK_COORD_BYTES 32
#define JWK_COORD_CHARS \
	(sodium_base64_ENCODED_LEN(JWK_COORD_BYTES, \
	sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1)

/* Append key -> string value to obj; -1 if jansson refuses (bad UTF-8). */
static int
add_string(json_t *obj, const char *name, const char *value)
{
	return json_object_set_new(obj, name, json_string(value));
}

int
p8_public_jwk(const uint8_t pub[P8_PUBLIC_BYTES], const char *kid,
    char **json)
{
	char x[JWK_COORD_CHARS + 1], y[JWK_COORD_CHARS + 1];
	json_t *obj = NULL;
	int r = P8V_ERR_INTERNAL;

	if (json == NULL) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	*json = NULL;
	if ((r = p8_public_check(pub)) != 0)
		goto out;
	sodium_bin2base64(x, sizeof(x), pub + 1, JWK_COORD_BYTES,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_bin2base64(y, sizeof(y), pub + 1 + JWK_COORD_BYTES,
	    JWK_COORD_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if ((obj = json_object()) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	/* jansson keeps insertion order: kty, crv, x, y, kid, use, alg. */
	if (add_string(obj, "kty", "EC") != 0 ||
	    add_string(obj, "crv", "P-256") != 0 ||
	    add_string(obj, "x", x) != 0 ||
	    add_string(obj, "y", y) != 0) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	if (kid != NULL && add_string(obj, "kid", kid) != 0) {
		/* json_string refuses invalid UTF-8. */
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if (add_string(obj, "use", "sig") != 0 ||
	    add_string(obj, "alg", "ES256") != 0 ||
	    (*json = json_dumps(obj, JSON_COMPACT)) == NULL) {
		r = P8V_ERR_ALLOC;
		goto out;
	}
	r = 0;
 out:
	json_decref(obj);
	return r;
}
