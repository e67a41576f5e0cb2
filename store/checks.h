/*
 * checks.h: the last results of the key check with Apple (vault/check.c),
 * one entry per key in the "meta" database.
 *
 * Key "check/<app>/<key id>", value a JSON object (UTF-8 text, no NUL):
 * {"development": {...}, "production": {...}}, each member the last check
 * of that environment. Kept beside the sealed record, not in it: a check
 * result is an observation about Apple, not part of the key's identity, so
 * it stays out of the authenticated data (a check never re-seals a record,
 * and records written by earlier releases need no new field). The store
 * treats the text as opaque; vault/check.c writes and reads it.
 */
#ifndef P8V_STORE_CHECKS_H
#define P8V_STORE_CHECKS_H

#include <stddef.h>

#include "store/store.h"

/* A few hundred bytes per environment; anything near this is a bug. */
#define STORE_CHECKS_MAX (16 * 1024)

/* Put the text (len bytes, 1..STORE_CHECKS_MAX) for app and key_id,
 * replacing any. 0, P8V_ERR_INVALID_ARGUMENT (bad ids, empty text or a
 * NUL in it), P8V_ERR_TOO_LARGE, P8V_ERR_NO_SPACE, P8V_ERR_STORE. */
int store_checks_put(struct store_txn *txn, const char *app,
    const char *key_id, const char *text, size_t len);

/* Read the text: *text malloc'd and NUL-terminated (caller frees).
 * 0, P8V_ERR_NOT_FOUND, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_INTEGRITY (too
 * long, or a NUL inside), P8V_ERR_ALLOC, P8V_ERR_STORE. */
int store_checks_get(struct store_txn *txn, const char *app,
    const char *key_id, char **text);

#endif /* P8V_STORE_CHECKS_H */
