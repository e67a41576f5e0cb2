/* proto.c: the keeper's wire protocol (see proto.h). */
#include "keeper/proto.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/codec.h"
#include "common/err.h"

/* A u32 length and up to n bytes. */
#define STR(n) (4 + (size_t)(n))
#define ANSWER_HEAD (KPROTO_HEADER_BYTES + 4 + 1)
#define RECORD (STR(KPROTO_AAD_MAX) + STR(KPROTO_ENV_MAX))
#define STATUS (1 + 1 + KEEPER_KEYS_MAX * (MASTER_KEY_ID_BYTES + \
    MASTER_KEY_CHECK_BYTES))
#define TOKEN (STR(KPROTO_TOKEN_MAX) + 2 * STR(IDS_APPLE_ID_LEN) + 8 + 8)
#define PROFILE (1 + 8 + STR(PROFILE_UUID_LEN) + STR(PROFILE_ID_MAX) + 4 + \
    PROFILE_LIST_MAX * STR(PROFILE_LIST_ITEM_MAX))

/* A batch's answers, each in a slot as large as a signature's answer,
 * fit in an answer buffer (serve.h). */
_Static_assert(KPROTO_BATCH_MAX * (ANSWER_HEAD + TOKEN) <= KPROTO_MSG_MAX,
    "a batch's answers fit in one answer buffer");

size_t
kproto_max(unsigned int type)
{
	const size_t h = KPROTO_HEADER_BYTES;

	switch (type) {
	case KPROTO_ANSWER:     /* a request that was not understood */
		return ANSWER_HEAD;
	case KP_HELLO | KPROTO_ANSWER:
		return ANSWER_HEAD + 4 + STATUS;
	case KP_STATUS:
		return h;
	case KP_STATUS | KPROTO_ANSWER:
		return ANSWER_HEAD + STATUS;
	case KP_SET_PRIMARY:
		return h + MASTER_KEY_ID_BYTES;
	case KP_SET_PRIMARY | KPROTO_ANSWER:
		return ANSWER_HEAD;
	case KP_SEAL:
		return h + STR(P8_MAX_INPUT_BYTES) + KPROTO_FIELDS_MAX;
	case KP_SEAL | KPROTO_ANSWER:
		return ANSWER_HEAD + STR(KPROTO_ENV_MAX) +
		    STR(KEY_RECORD_FINGERPRINT_HEX) +
		    STR(KEY_RECORD_PUBLIC_BYTES) + MASTER_KEY_ID_BYTES;
	case KP_RESEAL:
		return h + RECORD + KPROTO_FIELDS_MAX;
	case KP_RESEAL | KPROTO_ANSWER:
	case KP_REWRAP | KPROTO_ANSWER:
		return ANSWER_HEAD + STR(KPROTO_ENV_MAX) + MASTER_KEY_ID_BYTES;
	case KP_VOUCH:
		return h + RECORD;
	case KP_VOUCH | KPROTO_ANSWER:
		return ANSWER_HEAD;
	case KP_REWRAP:
		return h + RECORD + 1 + MASTER_KEY_ID_BYTES;
	case KP_SIGN_APNS:
		return h + RECORD + CLOCK_BOOT_ID_BYTES;
	case KP_SIGN_APNS | KPROTO_ANSWER:
		return ANSWER_HEAD + TOKEN + 8 + STR(KEEPER_APNS_KEY_BYTES) +
		    STR(KPROTO_BLOB_MAX) + MASTER_KEY_ID_BYTES;
	case KP_BLOB_OPEN:
		return h + STR(KEEPER_APNS_KEY_BYTES) + STR(KPROTO_BLOB_MAX);
	case KP_BLOB_OPEN | KPROTO_ANSWER:
		return ANSWER_HEAD + STR(KPROTO_TOKEN_MAX) + 8 +
		    CLOCK_BOOT_ID_BYTES + 8;
	case KP_BLOB_REWRAP:
		return h + STR(KEEPER_APNS_KEY_BYTES) + STR(KPROTO_BLOB_MAX) +
		    1 + MASTER_KEY_ID_BYTES;
	case KP_BLOB_REWRAP | KPROTO_ANSWER:
		return ANSWER_HEAD + STR(KPROTO_BLOB_MAX);
	case KP_SIGN_PROFILE:
		return h + RECORD + PROFILE;
	case KP_SIGN_PROFILE | KPROTO_ANSWER:
		return ANSWER_HEAD + TOKEN;
	default:
		return 0;
	}
}

/* --- building --- */

static void
put(struct kbuf *b, const void *p, size_t n)
{
	if (b->err != 0)
		return;
	if (n > b->cap - b->len) {
		b->err = P8V_ERR_TOO_LARGE;
		return;
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

void
kbuf_start(struct kbuf *b, unsigned int type)
{
	uint8_t h[KPROTO_HEADER_BYTES] = { KPROTO_VERSION, (uint8_t)type };

	b->len = 0;
	b->err = b->cap < KPROTO_HEADER_BYTES ? P8V_ERR_TOO_LARGE : 0;
	put(b, h, sizeof(h));
}

void
kbuf_u8(struct kbuf *b, uint8_t v)
{
	put(b, &v, 1);
}

void
kbuf_u32(struct kbuf *b, uint32_t v)
{
	uint8_t x[4];

	codec_put_u32(x, v);
	put(b, x, 4);
}

void
kbuf_u64(struct kbuf *b, uint64_t v)
{
	uint8_t x[8];

	codec_put_u64(x, v);
	put(b, x, 8);
}

void
kbuf_fixed(struct kbuf *b, const void *p, size_t n)
{
	put(b, p, n);
}

void
kbuf_bytes(struct kbuf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		b->err = P8V_ERR_TOO_LARGE;
		return;
	}
	kbuf_u32(b, (uint32_t)n);
	put(b, p, n);
}

void
kbuf_str(struct kbuf *b, const char *s)
{
	kbuf_bytes(b, s, s != NULL ? strlen(s) : 0);
}

int
kbuf_end(struct kbuf *b)
{
	if (b->err == 0 && b->len >= KPROTO_HEADER_BYTES)
		codec_put_u32(b->p + 4, (uint32_t)(b->len -
		    KPROTO_HEADER_BYTES));
	return b->err;
}

/* --- reading --- */

int
kproto_open(const uint8_t *msg, size_t len, unsigned int *type,
    struct kcur *c)
{
	size_t max;

	memset(c, 0, sizeof(*c));
	*type = 0;
	if (msg == NULL || len < KPROTO_HEADER_BYTES ||
	    msg[0] != KPROTO_VERSION ||
	    (msg[2] & ~(unsigned int)KPROTO_F_MORE) != 0 || msg[3] != 0 ||
	    codec_get_u32(msg + 4) != len - KPROTO_HEADER_BYTES)
		return P8V_ERR_BAD_REQUEST;
	max = kproto_max(msg[1]);
	if (max == 0 || len > max)
		return P8V_ERR_BAD_REQUEST;
	*type = msg[1];
	c->p = msg + KPROTO_HEADER_BYTES;
	c->left = len - KPROTO_HEADER_BYTES;
	return 0;
}

size_t
kproto_split(const uint8_t *d, size_t len, size_t max, size_t *off,
    size_t *mlen)
{
	size_t n = 0, at = 0, body;
	int more = 1;

	if (d == NULL || max > KPROTO_BATCH_MAX)
		return 0;
	while (more) {
		if (n == max || len - at < KPROTO_HEADER_BYTES)
			return 0;
		body = codec_get_u32(d + at + 4);
		if (body > len - at - KPROTO_HEADER_BYTES)
			return 0;
		more = (d[at + 2] & KPROTO_F_MORE) != 0;
		off[n] = at;
		mlen[n++] = KPROTO_HEADER_BYTES + body;
		at += KPROTO_HEADER_BYTES + body;
	}
	return at == len ? n : 0;
}

static const uint8_t *
take(struct kcur *c, size_t n)
{
	const uint8_t *p;

	if (c->bad || n > c->left) {
		c->bad = 1;
		return NULL;
	}
	p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

uint8_t
kcur_u8(struct kcur *c)
{
	const uint8_t *p = take(c, 1);

	return p != NULL ? p[0] : 0;
}

uint32_t
kcur_u32(struct kcur *c)
{
	const uint8_t *p = take(c, 4);

	return p != NULL ? codec_get_u32(p) : 0;
}

uint64_t
kcur_u64(struct kcur *c)
{
	const uint8_t *p = take(c, 8);

	return p != NULL ? codec_get_u64(p) : 0;
}

void
kcur_fixed(struct kcur *c, void *out, size_t n)
{
	const uint8_t *p = take(c, n);

	if (p != NULL)
		memcpy(out, p, n);
	else
		memset(out, 0, n);
}

const uint8_t *
kcur_bytes(struct kcur *c, size_t max, size_t *len)
{
	uint32_t n = kcur_u32(c);
	const uint8_t *p;

	*len = 0;
	if (c->bad || n > max) {
		c->bad = 1;
		return NULL;
	}
	if ((p = take(c, n)) == NULL)
		return NULL;
	*len = n;
	return p;
}

void
kcur_str(struct kcur *c, char *buf, size_t size)
{
	const uint8_t *p;
	size_t n;

	buf[0] = '\0';
	if ((p = kcur_bytes(c, size - 1, &n)) == NULL)
		return;
	if (memchr(p, '\0', n) != NULL) {
		c->bad = 1;
		return;
	}
	memcpy(buf, p, n);
	buf[n] = '\0';
}

int
kcur_done(const struct kcur *c)
{
	return c->bad || c->left != 0 ? P8V_ERR_BAD_REQUEST : 0;
}

/* --- composite fields --- */

void
kbuf_record(struct kbuf *b, const struct keeper_record *rec)
{
	kbuf_bytes(b, rec->aad, rec->aad_len);
	kbuf_bytes(b, rec->env, rec->env_len);
}

void
kcur_record(struct kcur *c, struct keeper_record *rec)
{
	rec->aad = kcur_bytes(c, KPROTO_AAD_MAX, &rec->aad_len);
	rec->env = kcur_bytes(c, KPROTO_ENV_MAX, &rec->env_len);
}

void
kbuf_fields(struct kbuf *b, const struct key_record *rec)
{
	size_t i;

	kbuf_str(b, rec->app);
	kbuf_str(b, rec->key_id);
	kbuf_str(b, rec->team_id);
	kbuf_u8(b, (uint8_t)rec->environment);
	kbuf_u32(b, rec->services);
	kbuf_u32(b, (uint32_t)rec->n_topics);
	for (i = 0; i < rec->n_topics; i++)
		kbuf_str(b, rec->topics[i]);
	kbuf_u8(b, (uint8_t)rec->state);
	kbuf_str(b, rec->fingerprint);
	kbuf_bytes(b, rec->public_point, rec->public_point[0] != 0 ?
	    KEY_RECORD_PUBLIC_BYTES : 0);
	kbuf_u64(b, (uint64_t)rec->created_at);
	kbuf_str(b, rec->created_by);
	kbuf_u64(b, (uint64_t)rec->updated_at);
	kbuf_u64(b, rec->version);
}

size_t
kproto_fields_len(const struct key_record *rec)
{
	size_t n, i;

	n = 4 + strlen(rec->app) + 4 + strlen(rec->key_id) + 4 +
	    strlen(rec->team_id) + 1 + 4 + 4;
	for (i = 0; i < rec->n_topics; i++)
		n += 4 + strlen(rec->topics[i]);
	n += 1 + 4 + strlen(rec->fingerprint) + 4 + KEY_RECORD_PUBLIC_BYTES +
	    8 + 4 + strlen(rec->created_by) + 8 + 8;
	return n;
}

int
kcur_fields(struct kcur *c, struct key_record *rec)
{
	const uint8_t *pt;
	uint32_t n, i;
	size_t len;

	memset(rec, 0, sizeof(*rec));
	kcur_str(c, rec->app, sizeof(rec->app));
	kcur_str(c, rec->key_id, sizeof(rec->key_id));
	kcur_str(c, rec->team_id, sizeof(rec->team_id));
	rec->environment = (enum key_env)kcur_u8(c);
	rec->services = kcur_u32(c);
	n = kcur_u32(c);
	if (c->bad || n > KEY_RECORD_MAX_TOPICS) {
		c->bad = 1;
		return 0;
	}
	if (n > 0) {
		if ((rec->topics = calloc(n, sizeof(*rec->topics))) == NULL)
			return P8V_ERR_ALLOC;
		for (i = 0; i < n; i++) {
			if ((rec->topics[i] = malloc(KEY_RECORD_TOPIC_MAX +
			    1)) == NULL) {
				key_record_free(rec);
				return P8V_ERR_ALLOC;
			}
			rec->n_topics++;
			kcur_str(c, rec->topics[i], KEY_RECORD_TOPIC_MAX + 1);
		}
	}
	rec->state = (enum key_state)kcur_u8(c);
	kcur_str(c, rec->fingerprint, sizeof(rec->fingerprint));
	pt = kcur_bytes(c, KEY_RECORD_PUBLIC_BYTES, &len);
	if (pt != NULL && len == KEY_RECORD_PUBLIC_BYTES)
		memcpy(rec->public_point, pt, len);
	else if (len != 0)
		c->bad = 1;
	rec->created_at = (int64_t)kcur_u64(c);
	kcur_str(c, rec->created_by, sizeof(rec->created_by));
	rec->updated_at = (int64_t)kcur_u64(c);
	rec->version = kcur_u64(c);
	return 0;
}

void
kbuf_profile(struct kbuf *b, const struct keeper_profile *p)
{
	size_t i;

	kbuf_u8(b, (uint8_t)p->kind);
	kbuf_u64(b, (uint64_t)p->expires_in);
	kbuf_str(b, p->issuer_id);
	kbuf_str(b, p->subject);
	kbuf_u32(b, (uint32_t)p->n_list);
	for (i = 0; i < p->n_list && i < PROFILE_LIST_MAX; i++)
		kbuf_str(b, p->list[i]);
}

void
kcur_profile(struct kcur *c, struct keeper_profile *p)
{
	uint32_t n, i;

	memset(p, 0, sizeof(*p));
	p->kind = (enum keeper_profile_kind)kcur_u8(c);
	p->expires_in = (int64_t)kcur_u64(c);
	kcur_str(c, p->issuer_id, sizeof(p->issuer_id));
	kcur_str(c, p->subject, sizeof(p->subject));
	n = kcur_u32(c);
	if (c->bad || n > PROFILE_LIST_MAX) {
		c->bad = 1;
		return;
	}
	p->n_list = n;
	for (i = 0; i < n; i++)
		kcur_str(c, p->list[i], sizeof(p->list[i]));
}

void
kbuf_status(struct kbuf *b, const struct keeper_status *st)
{
	size_t i;

	kbuf_u8(b, (uint8_t)st->n);
	kbuf_u8(b, (uint8_t)st->primary);
	for (i = 0; i < st->n && i < KEEPER_KEYS_MAX; i++) {
		kbuf_fixed(b, st->keys[i].id, MASTER_KEY_ID_BYTES);
		kbuf_fixed(b, st->keys[i].check, MASTER_KEY_CHECK_BYTES);
	}
}

void
kcur_status(struct kcur *c, struct keeper_status *st)
{
	size_t i;

	memset(st, 0, sizeof(*st));
	st->n = kcur_u8(c);
	st->primary = kcur_u8(c);
	if (st->n > KEEPER_KEYS_MAX ||
	    (st->n > 0 && st->primary >= st->n)) {
		c->bad = 1;
		st->n = 0;
		return;
	}
	for (i = 0; i < st->n; i++) {
		kcur_fixed(c, st->keys[i].id, MASTER_KEY_ID_BYTES);
		kcur_fixed(c, st->keys[i].check, MASTER_KEY_CHECK_BYTES);
		codec_hex_encode(st->keys[i].id, MASTER_KEY_ID_BYTES,
		    st->keys[i].id_hex);
	}
}

void
kbuf_answer(struct kbuf *b, unsigned int type, int result,
    enum keeper_step step)
{
	kbuf_start(b, type | KPROTO_ANSWER);
	kbuf_u32(b, (uint32_t)result);
	kbuf_u8(b, (uint8_t)step);
}

int
kcur_result(struct kcur *c, enum keeper_step *step)
{
	int32_t r = (int32_t)kcur_u32(c);
	uint8_t s = kcur_u8(c);

	*step = s <= KEEPER_STEP_SCALAR ? (enum keeper_step)s :
	    KEEPER_STEP_NONE;
	if (c->bad)
		return P8V_ERR_INTERNAL;
	if (r == 0)
		return 0;
	/* Only codes the front knows; the name of anything else is
	 * "internal_error". */
	if (r > 0 || strcmp(p8v_errname(r), "internal_error") == 0)
		return P8V_ERR_INTERNAL;
	return r;
}

int
kproto_channel_cpu(size_t i)
{
	cpu_set_t set;
	size_t n, k;
	int cpu;

	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) != 0 ||
	    (n = (size_t)CPU_COUNT(&set)) == 0)
		return -1;
	k = i % n;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &set) && k-- == 0)
			return cpu;
	return -1;
}
