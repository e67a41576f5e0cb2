/* serve.c: the keeper process's side of the protocol (see serve.h). */
#include "keeper/serve.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "crypto/secmem.h"

#define MINT_BUCKETS 1024

/* The last APNs token signed for one (team, Key ID, fingerprint). */
struct mint {
	struct mint *next;
	char cache_key[KEEPER_APNS_KEY_BYTES];
	int64_t boot_ns;                /* of the signature */
	struct keeper_apns_token tok;   /* as answered */
};

struct kserve {
	struct keeper *k;
	pthread_mutex_t lock;           /* the APNs path, the table, counts */
	struct mint *buckets[MINT_BUCKETS];
};

int
kserve_create(struct keeper *k, struct kserve **out)
{
	struct kserve *s;

	if (out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	*out = NULL;
	if (k == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return P8V_ERR_ALLOC;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return P8V_ERR_ALLOC;
	}
	s->k = k;
	*out = s;
	return 0;
}

static void
mint_free(struct mint *m)
{
	keeper_apns_token_finish(&m->tok);
	free(m);
}

void
kserve_destroy(struct kserve *s)
{
	struct mint *m, *next;
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < MINT_BUCKETS; i++)
		for (m = s->buckets[i]; m != NULL; m = next) {
			next = m->next;
			mint_free(m);
		}
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* FNV-1a: the keys are fixed-format and public; the table only needs to
 * spread them. */
static size_t
bucket_of(const char *key)
{
	uint32_t h = 2166136261u;

	for (; *key != '\0'; key++)
		h = (h ^ (uint8_t)*key) * 16777619u;
	return h % MINT_BUCKETS;
}

static int
mint_young(const struct mint *m, int64_t now_ns)
{
	return now_ns - m->boot_ns < (int64_t)KSERVE_APNS_INTERVAL_S *
	    CLOCK_NS_PER_S && now_ns >= m->boot_ns;
}

/* The entry for key in its bucket, dropping the old ones on the way. */
static struct mint *
mint_find(struct kserve *s, const char *key, int64_t now_ns)
{
	struct mint **pp, *m;

	for (pp = &s->buckets[bucket_of(key)]; (m = *pp) != NULL;) {
		if (!mint_young(m, now_ns)) {
			*pp = m->next;
			mint_free(m);
			continue;
		}
		if (strcmp(m->cache_key, key) == 0)
			return m;
		pp = &m->next;
	}
	return NULL;
}

static int
token_copy(struct keeper_apns_token *dst, const struct keeper_apns_token *src)
{
	*dst = *src;
	dst->t.token = NULL;
	dst->blob = NULL;
	if ((dst->t.token = strdup(src->t.token)) == NULL ||
	    (dst->blob = malloc(src->blob_len)) == NULL) {
		keeper_apns_token_finish(dst);
		return P8V_ERR_ALLOC;
	}
	memcpy(dst->blob, src->blob, src->blob_len);
	return 0;
}

/* The cache key of the record behind rec, once rec opened. */
static int
record_cache_key(const struct keeper_record *rec, char key[KEEPER_APNS_KEY_BYTES])
{
	struct key_record kr;
	int r;

	if ((r = key_record_from_aad(rec->aad, rec->aad_len, &kr)) != 0)
		return r;
	snprintf(key, KEEPER_APNS_KEY_BYTES, "%s%s/%s/%s",
	    KEEPER_APNS_KEY_PREFIX, kr.team_id, kr.key_id, kr.fingerprint);
	key_record_free(&kr);
	return 0;
}

/*
 * An APNs token for rec: the one signed within the interval, or a new one.
 * Under s->lock, so that two channels asking at once sign once.
 */
static int
sign_apns(struct kserve *s, const struct keeper_record *rec,
    const uint8_t boot_id[CLOCK_BOOT_ID_BYTES], struct keeper_apns_token *out,
    enum keeper_step *step)
{
	char key[KEEPER_APNS_KEY_BYTES];
	struct keeper_status st;
	struct mint *m;
	uint8_t *blob = NULL;
	size_t blob_len = 0;
	int64_t now;
	int r;

	memset(out, 0, sizeof(*out));
	/* The record must open under its own AAD before its ids are used
	 * even as a lookup key. */
	if ((r = keeper_vouch(s->k, rec, step)) != 0)
		return r;
	if ((r = record_cache_key(rec, key)) != 0)
		return P8V_ERR_INTEGRITY;
	pthread_mutex_lock(&s->lock);
	now = clock_boot_now_ns();
	if ((m = mint_find(s, key, now)) != NULL) {
		/* Signed less than 20 minutes ago: that token again, its
		 * sealed copy under today's primary key. */
		if ((r = keeper_status(s->k, &st)) != 0)
			goto out;
		if (st.n > 0 && memcmp(m->tok.mk_id, st.keys[st.primary].id,
		    MASTER_KEY_ID_BYTES) != 0) {
			if ((r = keeper_apns_blob_rewrap(s->k, key, m->tok.blob,
			    m->tok.blob_len, NULL, &blob, &blob_len)) != 0)
				goto out;
			free(m->tok.blob);
			m->tok.blob = blob;
			m->tok.blob_len = blob_len;
			memcpy(m->tok.mk_id, st.keys[st.primary].id,
			    MASTER_KEY_ID_BYTES);
		}
		if ((r = token_copy(out, &m->tok)) != 0)
			goto out;
		log_warnf("keeper_apns_repeat", "an APNs token for %s was "
		    "asked for again within %d minutes of its signature: "
		    "answered with the same token", key + strlen(
		    KEEPER_APNS_KEY_PREFIX), KSERVE_APNS_INTERVAL_S / 60);
		goto out;
	}
	if ((r = keeper_sign_apns(s->k, rec, boot_id, out, step)) != 0)
		goto out;
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    token_copy(&m->tok, out) != 0) {
		/* Signed, but not remembered: refuse it rather than let the
		 * limit slip. */
		free(m);
		keeper_apns_token_finish(out);
		r = P8V_ERR_ALLOC;
		goto out;
	}
	snprintf(m->cache_key, sizeof(m->cache_key), "%s", key);
	m->boot_ns = now;
	m->next = s->buckets[bucket_of(key)];
	s->buckets[bucket_of(key)] = m;
	r = 0;
 out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* --- one request --- */

static void
answer_token(struct kbuf *a, const struct keeper_token *t)
{
	kbuf_str(a, t->token);
	kbuf_str(a, t->key_id);
	kbuf_str(a, t->team_id);
	kbuf_u64(a, (uint64_t)t->issued_at);
	kbuf_u64(a, (uint64_t)t->expires_at);
}

static int
read_target(struct kcur *c, uint8_t id[MASTER_KEY_ID_BYTES])
{
	uint8_t has = kcur_u8(c);

	kcur_fixed(c, id, MASTER_KEY_ID_BYTES);
	if (has > 1)
		c->bad = 1;
	return has;
}

void
kserve_handle(struct kserve *s, const uint8_t *msg, size_t len,
    struct kbuf *a)
{
	struct kcur c;
	struct keeper_record rec, old;
	struct key_record fields;
	struct keeper_status st;
	struct keeper_token tok;
	struct keeper_apns_token at;
	struct keeper_apns_blob ob;
	struct keeper_profile *prof = NULL;
	enum keeper_step step = KEEPER_STEP_NONE;
	char cache_key[KEEPER_APNS_KEY_BYTES];
	uint8_t id[MASTER_KEY_ID_BYTES], boot_id[CLOCK_BOOT_ID_BYTES];
	uint8_t *env = NULL;
	const uint8_t *p8, *blob;
	size_t env_len = 0, p8_len, blob_len;
	unsigned int type;
	int has, r;

	memset(&fields, 0, sizeof(fields));
	memset(&tok, 0, sizeof(tok));
	memset(&at, 0, sizeof(at));
	memset(&ob, 0, sizeof(ob));
	if (kproto_open(msg, len, &type, &c) != 0 ||
	    (type & KPROTO_ANSWER) != 0 || type == KP_HELLO) {
		kbuf_answer(a, 0, P8V_ERR_BAD_REQUEST, KEEPER_STEP_NONE);
		goto done;
	}
	switch (type) {
	case KP_STATUS:
		if ((r = kcur_done(&c)) == 0)
			r = keeper_status(s->k, &st);
		kbuf_answer(a, type, r, KEEPER_STEP_NONE);
		if (r == 0)
			kbuf_status(a, &st);
		break;
	case KP_SET_PRIMARY:
		kcur_fixed(&c, id, sizeof(id));
		if ((r = kcur_done(&c)) == 0)
			r = keeper_set_primary(s->k, id);
		kbuf_answer(a, type, r, KEEPER_STEP_NONE);
		break;
	case KP_SEAL:
		p8 = kcur_bytes(&c, P8_MAX_INPUT_BYTES, &p8_len);
		if ((r = kcur_fields(&c, &fields)) == 0 &&
		    (r = kcur_done(&c)) == 0)
			r = keeper_seal(s->k, p8, p8_len, &fields, id);
		kbuf_answer(a, type, r, KEEPER_STEP_NONE);
		if (r == 0) {
			kbuf_bytes(a, fields.envelope, fields.envelope_len);
			kbuf_str(a, fields.fingerprint);
			kbuf_bytes(a, fields.public_point,
			    KEY_RECORD_PUBLIC_BYTES);
			kbuf_fixed(a, id, sizeof(id));
		}
		break;
	case KP_RESEAL:
		kcur_record(&c, &old);
		if ((r = kcur_fields(&c, &fields)) == 0 &&
		    (r = kcur_done(&c)) == 0)
			r = keeper_reseal(s->k, &old, &fields, &env, &env_len,
			    id);
		kbuf_answer(a, type, r, KEEPER_STEP_NONE);
		if (r == 0) {
			kbuf_bytes(a, env, env_len);
			kbuf_fixed(a, id, sizeof(id));
		}
		break;
	case KP_VOUCH:
		kcur_record(&c, &rec);
		if ((r = kcur_done(&c)) == 0)
			r = keeper_vouch(s->k, &rec, &step);
		kbuf_answer(a, type, r, step);
		break;
	case KP_REWRAP:
		kcur_record(&c, &rec);
		has = read_target(&c, id);
		if ((r = kcur_done(&c)) == 0)
			r = keeper_rewrap(s->k, &rec, has ? id : NULL, &env,
			    &env_len);
		kbuf_answer(a, type, r, KEEPER_STEP_NONE);
		if (r == 0) {
			kbuf_bytes(a, env, env_len);
			(void)envelope_master_key_id(env, env_len, id);
			kbuf_fixed(a, id, sizeof(id));
		}
		break;
	case KP_SIGN_APNS:
		kcur_record(&c, &rec);
		kcur_fixed(&c, boot_id, sizeof(boot_id));
		if ((r = kcur_done(&c)) == 0)
			r = sign_apns(s, &rec, boot_id, &at, &step);
		kbuf_answer(a, type, r, step);
		if (r == 0) {
			answer_token(a, &at.t);
			kbuf_u64(a, (uint64_t)at.boot_ns);
			kbuf_str(a, at.cache_key);
			kbuf_bytes(a, at.blob, at.blob_len);
			kbuf_fixed(a, at.mk_id, sizeof(at.mk_id));
		}
		break;
	case KP_BLOB_OPEN:
		kcur_str(&c, cache_key, sizeof(cache_key));
		blob = kcur_bytes(&c, KPROTO_BLOB_MAX, &blob_len);
		if ((r = kcur_done(&c)) == 0)
			r = keeper_apns_blob_open(s->k, cache_key, blob,
			    blob_len, &ob);
		kbuf_answer(a, type, r, KEEPER_STEP_NONE);
		if (r == 0) {
			kbuf_str(a, ob.token);
			kbuf_u64(a, (uint64_t)ob.issued_at);
			kbuf_fixed(a, ob.boot_id, sizeof(ob.boot_id));
			kbuf_u64(a, (uint64_t)ob.boot_ns);
		}
		break;
	case KP_BLOB_REWRAP:
		kcur_str(&c, cache_key, sizeof(cache_key));
		blob = kcur_bytes(&c, KPROTO_BLOB_MAX, &blob_len);
		has = read_target(&c, id);
		if ((r = kcur_done(&c)) == 0)
			r = keeper_apns_blob_rewrap(s->k, cache_key, blob,
			    blob_len, has ? id : NULL, &env, &env_len);
		kbuf_answer(a, type, r, KEEPER_STEP_NONE);
		if (r == 0)
			kbuf_bytes(a, env, env_len);
		break;
	case KP_SIGN_PROFILE:
		r = P8V_ERR_ALLOC;
		if ((prof = malloc(sizeof(*prof))) != NULL) {
			kcur_record(&c, &rec);
			kcur_profile(&c, prof);
			if ((r = kcur_done(&c)) == 0)
				r = keeper_sign_profile(s->k, &rec, prof, &tok,
				    &step);
		}
		kbuf_answer(a, type, r, step);
		if (r == 0)
			answer_token(a, &tok);
		break;
	default:
		kbuf_answer(a, 0, P8V_ERR_BAD_REQUEST, KEEPER_STEP_NONE);
		break;
	}
 done:
	if (kbuf_end(a) != 0) {
		/* An answer that does not fit its buffer cannot happen with
		 * the limits above; say so rather than send half of one. */
		kbuf_answer(a, type & 0x7f, P8V_ERR_INTERNAL, KEEPER_STEP_NONE);
		(void)kbuf_end(a);
	}
	key_record_free(&fields);
	if (env != NULL)
		free(env);
	keeper_token_finish(&tok);
	keeper_apns_token_finish(&at);
	keeper_apns_blob_finish(&ob);
	free(prof);
}

void
kserve_datagram(struct kserve *s, const uint8_t *d, size_t len,
    struct kbuf *ans)
{
	size_t off[KPROTO_BATCH_MAX], mlen[KPROTO_BATCH_MAX], n, i, slot;
	struct kbuf a;

	n = kproto_split(d, len, KPROTO_BATCH_MAX, off, mlen);
	if (n == 1) {
		kserve_handle(s, d, len, ans);
		return;
	}
	if (n == 0) {
		/* Framing broken: one answer for the whole datagram. */
		kbuf_answer(ans, 0, P8V_ERR_BAD_REQUEST, KEEPER_STEP_NONE);
		(void)kbuf_end(ans);
		return;
	}
	slot = kproto_max(KP_SIGN_PROFILE | KPROTO_ANSWER);
	ans->len = 0;
	ans->err = 0;
	for (i = 0; i < n; i++) {
		a.p = ans->p + ans->len;
		a.cap = slot;
		if (d[off[i] + 1] == KP_SIGN_PROFILE &&
		    mlen[i] <= KPROTO_SLOT_BYTES)
			kserve_handle(s, d + off[i], mlen[i], &a);
		else {
			kbuf_answer(&a, 0, P8V_ERR_BAD_REQUEST,
			    KEEPER_STEP_NONE);
			(void)kbuf_end(&a);
		}
		if (i + 1 < n)
			a.p[2] = KPROTO_F_MORE;
		ans->len += a.len;
	}
}
