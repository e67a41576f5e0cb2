/*
 * ids.h: the identifiers the store and the keeper accept, and nothing else.
 *
 * Every identifier that reaches an LMDB key or a record's authenticated data
 * passes through these checks first, so a record can never be stored under a
 * name that another component would read differently (path separators, white
 * space, case folding, Unicode look-alikes).
 *
 * Each function takes a NUL-terminated string (NULL is refused) and returns 0
 * or its own error code; none of them echoes the input anywhere.
 */
#ifndef P8V_COMMON_IDS_H
#define P8V_COMMON_IDS_H

#include <stddef.h>

/* App ids are chosen by the portal: short enough for an LMDB key together
 * with a Key ID (LMDB keys are at most 511 bytes) and for log lines. */
#define IDS_APP_MAX 64
/* Apple's Key IDs and Team IDs are exactly 10 characters of [A-Z0-9]. */
#define IDS_APPLE_ID_LEN 10

/* 1-64 characters of [A-Za-z0-9._-], and not "." or "..".
 * 0 or P8V_ERR_BAD_APP_ID. */
int ids_app_valid(const char *app);

/* Exactly 10 characters of [A-Z0-9]. 0 or P8V_ERR_BAD_KEY_ID. */
int ids_key_id_valid(const char *key_id);

/* Exactly 10 characters of [A-Z0-9]. 0 or P8V_ERR_BAD_TEAM_ID. */
int ids_team_id_valid(const char *team_id);

/*
 * A generic short name: 1..max characters of [A-Za-z0-9._-] (app ids,
 * credential ids, "created_by" actors, topics use it with their own limits).
 * Returns 1 if valid, 0 if not.
 */
int ids_name_ok(const char *s, size_t max);

#endif /* P8V_COMMON_IDS_H */
