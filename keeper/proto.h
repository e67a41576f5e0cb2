/*
 * proto.h: the keeper's wire protocol, between the front process
 * (p8vaultd, p8vault) and the keeper process (p8vault-keeper).
 *
 * Over a socketpair of SOCK_SEQPACKET datagrams; per channel, one request
 * datagram and then its one answer datagram. A datagram holds one message,
 * or a batch (KPROTO_F_MORE below). Every message:
 *
 *   off  len  field
 *   0    1    version = KPROTO_VERSION
 *   1    1    type (enum kproto_type; an answer is type | KPROTO_ANSWER)
 *   2    1    flags: 0, or KPROTO_F_MORE
 *   3    1    zero
 *   4    4    body length (u32 big-endian)
 *   8    n    body: the type's fields, in order, nothing after them
 *
 * Fields: u8, u32, i64/u64 (big-endian), fixed byte arrays, and byte
 * strings as a u32 big-endian length then the bytes. Each string field has
 * its own maximum (below); a text field holds no NUL. Every type has a
 * maximum message size (kproto_max): a datagram longer than its type
 * allows is refused before a field is read.
 *
 * An answer's body starts with its result (u32: 0 or the P8V_ERR_* code,
 * two's complement) and the keeper step (u8, enum keeper_step); the
 * type's result fields follow only when the result is 0.
 *
 * This file is pure: encoding and decoding, no I/O, no keys, so that the
 * decoder is a fuzz target (fuzz/fuzz_keeper_proto.c) and both processes
 * use the same code.
 */
#ifndef P8V_KEEPER_PROTO_H
#define P8V_KEEPER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/keyrecord.h"
#include "crypto/envelope.h"
#include "crypto/jwt.h"
#include "crypto/p8.h"
#include "keeper/keeper.h"

#define KPROTO_VERSION 1
#define KPROTO_HEADER_BYTES 8
#define KPROTO_ANSWER 0x80
/*
 * A batch: up to KPROTO_BATCH_MAX messages back to back in one datagram,
 * every one but the last flagged KPROTO_F_MORE (kproto_split). A batch of
 * two or more holds only KP_SIGN_PROFILE requests of at most
 * KPROTO_SLOT_BYTES each (a pipe's calls, keeper_pipe_flush); its answer
 * is one datagram of as many answers, in the same order and flagged the
 * same way, each at most kproto_max(KP_SIGN_PROFILE | KPROTO_ANSWER). A
 * request of another type or size in a batch is answered bad_request and
 * not run; a datagram whose framing is broken (a length past its end,
 * bytes after a message without the flag, the flag on the last, more than
 * KPROTO_BATCH_MAX messages) gets one bad_request answer in all. One
 * datagram each way costs the kernel one buffer and one wake-up, where a
 * datagram per message cost one each and, the two processes sharing a
 * CPU, let the keeper preempt the sender after its first message
 * (docs/benchmarks.md).
 */
#define KPROTO_F_MORE 0x01
#define KPROTO_BATCH_MAX 32
#define KPROTO_SLOT_BYTES 4096

enum kproto_type {
	KP_HELLO = 1,           /* keeper -> front, once, on channel 0 */
	KP_STATUS,
	KP_SET_PRIMARY,
	KP_SEAL,
	KP_RESEAL,
	KP_VOUCH,
	KP_REWRAP,
	KP_SIGN_APNS,
	KP_BLOB_OPEN,
	KP_BLOB_REWRAP,
	KP_SIGN_PROFILE,
	KP_TYPES                /* one past the last */
};

/* Field limits. */
#define KPROTO_AAD_MAX ENVELOPE_MAX_AAD
#define KPROTO_ENV_MAX KEY_RECORD_ENVELOPE_MAX
#define KPROTO_BLOB_MAX (64 + JWT_MAX_TOKEN_BYTES + ENVELOPE_OVERHEAD)
#define KPROTO_TOKEN_MAX (JWT_MAX_TOKEN_BYTES - 1)
/* The clear fields of a record (struct key_record but the envelope). */
#define KPROTO_FIELDS_MAX (4 + IDS_APP_MAX + 2 * (4 + IDS_APPLE_ID_LEN) + \
    1 + 4 + 4 + KEY_RECORD_MAX_TOPICS * (4 + KEY_RECORD_TOPIC_MAX) + 1 + \
    4 + KEY_RECORD_FINGERPRINT_HEX + 4 + KEY_RECORD_PUBLIC_BYTES + 8 + \
    4 + KEY_RECORD_ACTOR_MAX + 8 + 8)
/* The largest message of any type: a re-seal (a record and new fields). */
#define KPROTO_MSG_MAX (KPROTO_HEADER_BYTES + 4 + KPROTO_AAD_MAX + 4 + \
    KPROTO_ENV_MAX + KPROTO_FIELDS_MAX)

/* The largest datagram of type t (a request, or an answer with
 * KPROTO_ANSWER set); 0 for an unknown type. */
size_t kproto_max(unsigned int type);

/*
 * The CPU channel i (0-based) belongs to: the (i mod n)-th of the n CPUs
 * this process may run on (sched_getaffinity), or -1 if that is not
 * known. The keeper pins channel i's thread to it, and a front thread
 * takes a free channel of the CPU it runs on first: the keeper's thread
 * then wakes on the caller's CPU and the caller's answer wakes it there,
 * a context switch without an inter-processor wake-up each way. Both
 * sides inherit the same affinity, so they compute the same map.
 */
int kproto_channel_cpu(size_t i);

/* --- building a message --- */

struct kbuf {
	uint8_t *p;             /* KPROTO_MSG_MAX bytes, the caller's */
	size_t len;             /* bytes written */
	size_t cap;
	int err;                /* P8V_ERR_TOO_LARGE once something did not fit */
};

/* Start a message of type in b (p, cap set by the caller). */
void kbuf_start(struct kbuf *b, unsigned int type);
void kbuf_u8(struct kbuf *b, uint8_t v);
void kbuf_u32(struct kbuf *b, uint32_t v);
void kbuf_u64(struct kbuf *b, uint64_t v);
void kbuf_fixed(struct kbuf *b, const void *p, size_t n);
void kbuf_bytes(struct kbuf *b, const void *p, size_t n);
void kbuf_str(struct kbuf *b, const char *s);
/* Write the body length; 0 or b->err. */
int kbuf_end(struct kbuf *b);

/* --- reading a message --- */

struct kcur {
	const uint8_t *p;
	size_t left;
	int bad;                /* set by any read that did not fit */
};

/*
 * Check a message's header against its length and its type's maximum:
 * *type gets the type byte, *c the body. 0 or P8V_ERR_BAD_REQUEST
 * (version, flags, padding, length, unknown type, over the type's
 * maximum).
 */
int kproto_open(const uint8_t *msg, size_t len, unsigned int *type,
    struct kcur *c);

/*
 * The messages of the datagram d (len bytes), at most max of them (at most
 * KPROTO_BATCH_MAX): each one's offset into off[i] and length into mlen[i].
 * Returns how many, or 0 when the framing is broken (see the batch above).
 * Only the framing is read: each message is then opened with kproto_open.
 */
size_t kproto_split(const uint8_t *d, size_t len, size_t max, size_t *off,
    size_t *mlen);

uint8_t kcur_u8(struct kcur *c);
uint32_t kcur_u32(struct kcur *c);
uint64_t kcur_u64(struct kcur *c);
void kcur_fixed(struct kcur *c, void *out, size_t n);
/* A byte string of at most max bytes: a pointer into the message. */
const uint8_t *kcur_bytes(struct kcur *c, size_t max, size_t *len);
/* A text field of at most size - 1 bytes, no NUL, copied into buf. */
void kcur_str(struct kcur *c, char *buf, size_t size);
/* 0 if every read fitted and nothing is left over, else
 * P8V_ERR_BAD_REQUEST. */
int kcur_done(const struct kcur *c);

/* --- composite fields --- */

void kbuf_record(struct kbuf *b, const struct keeper_record *rec);
void kcur_record(struct kcur *c, struct keeper_record *rec);

/* The clear fields of rec (not its envelope). */
void kbuf_fields(struct kbuf *b, const struct key_record *rec);
/* The bytes kbuf_fields writes for rec. */
size_t kproto_fields_len(const struct key_record *rec);
/* Into rec (zeroed first; topics malloc'd: key_record_free). Sets c->bad
 * on a malformed field; the values are checked by the keeper's functions
 * (key_record_check's rules). P8V_ERR_ALLOC or 0. */
int kcur_fields(struct kcur *c, struct key_record *rec);

void kbuf_profile(struct kbuf *b, const struct keeper_profile *p);
void kcur_profile(struct kcur *c, struct keeper_profile *p);

void kbuf_status(struct kbuf *b, const struct keeper_status *st);
void kcur_status(struct kcur *c, struct keeper_status *st);

/* Answer bodies start with the result and the step. */
void kbuf_answer(struct kbuf *b, unsigned int type, int result,
    enum keeper_step step);
/* The result (a P8V_ERR_* the front knows, else P8V_ERR_INTERNAL) and
 * the step. */
int kcur_result(struct kcur *c, enum keeper_step *step);

#endif /* P8V_KEEPER_PROTO_H */
