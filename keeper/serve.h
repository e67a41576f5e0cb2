/*
 * serve.h: the keeper process's side of the protocol (keeper/proto.h):
 * one request in, one answer out, over a local keeper (keeper/keeper.h)
 * that holds the keys. Used by p8vault-keeper (keeper/main.c) and by the
 * fuzz target and tests that play a hostile front.
 *
 * Every request is decoded as if an attacker wrote it: a datagram over its
 * type's maximum, a truncated or over-long field, a string with a NUL, an
 * unknown type or trailing bytes is answered with P8V_ERR_BAD_REQUEST and
 * changes nothing. What is well formed then goes to the keeper's functions,
 * which check every value again (a record must open under its own AAD).
 *
 * APNs tokens: at most one signature per (team, Key ID, fingerprint) per
 * KSERVE_APNS_INTERVAL_S, kept in this process's memory. A mint request
 * inside that interval is answered with the token signed before (its
 * sealed copy re-wrapped under the primary key if the primary changed):
 * a front process that lost its cache gets a working token, a hijacked one
 * cannot make Apple count another token update.
 */
#ifndef P8V_KEEPER_SERVE_H
#define P8V_KEEPER_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "keeper/keeper.h"
#include "keeper/proto.h"

/* Apple refuses a new provider token within 20 minutes of the last one. */
#define KSERVE_APNS_INTERVAL_S (20 * 60)

struct kserve;

/* A server over k (not taken: the caller destroys k after s). 0,
 * P8V_ERR_ALLOC, P8V_ERR_INVALID_ARGUMENT. */
int kserve_create(struct keeper *k, struct kserve **out);
void kserve_destroy(struct kserve *s);

/* Answer the request msg (len bytes) into ans (a buffer of
 * KPROTO_MSG_MAX bytes): always an answer, never an error of its own. */
void kserve_handle(struct kserve *s, const uint8_t *msg, size_t len,
    struct kbuf *ans);

/* Answer a datagram from the front, one message or a batch (proto.h),
 * into ans (a buffer of KPROTO_MSG_MAX bytes): the one answer datagram,
 * always. */
void kserve_datagram(struct kserve *s, const uint8_t *d, size_t len,
    struct kbuf *ans);

#endif /* P8V_KEEPER_SERVE_H */
