/*
 * admin_tamper.c: a test-only tool that damages a state directory the way
 * tests/integration/test_admin.py needs, through the store's raw access
 * (store/store.h: "tests use them to tamper with stored bytes"). Never
 * installed.
 *
 *   admin_tamper record-flip DIR APP KEY_ID
 *       flip one bit of the record's sealed payload (the envelope's
 *       ciphertext): the record decodes but no longer opens
 *   admin_tamper record-garble DIR APP KEY_ID
 *       replace the record's value with bytes that do not decode
 *   admin_tamper audit-delete DIR SEQ
 *       remove audit event SEQ
 *   admin_tamper audit-alter DIR SEQ
 *       change one letter of event SEQ's "who" value: still canonical
 *       JSON with the right "seq" and "prev", so only the hash chain can
 *       tell
 *   admin_tamper hold-write DIR
 *       open a write transaction (the store's single writer, across
 *       processes), print "held" and keep it until standard input ends;
 *       commits nothing: holds a running daemon's writes back, the way a
 *       slow disk would
 *
 * Exit 0 done, 1 failed (the event or record is missing), 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "store/records.h"
#include "store/store.h"

/* The "who" member as the canonical encoding spells it. */
#define TAMPER_WHO "\"who\":\""

struct job {
	const char *what;
	const char *app, *key_id;
	uint64_t seq;
};

static int
record_flip(struct store_txn *txn, const struct job *j)
{
	uint8_t key[KEY_RECORD_DB_KEY_MAX], *copy = NULL;
	const uint8_t *val;
	size_t klen, vlen;
	int r;

	if ((r = key_record_db_key(j->app, j->key_id, key, &klen)) != 0 ||
	    (r = store_get(txn, STORE_DB_KEYS, key, klen, &val, &vlen)) != 0)
		return r;
	/* The envelope ends the value: its last 16 bytes are the payload's
	 * tag, the 32 before them the sealed scalar. */
	if (vlen < 64)
		return P8V_ERR_INTEGRITY; /* a tombstone */
	if ((copy = malloc(vlen)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(copy, val, vlen);
	copy[vlen - 16 - 5] ^= 0x01;
	r = store_put(txn, STORE_DB_KEYS, key, klen, copy, vlen, 0);
	free(copy);
	return r;
}

static int
record_garble(struct store_txn *txn, const struct job *j)
{
	static const char junk[] = "not a key record";
	uint8_t key[KEY_RECORD_DB_KEY_MAX];
	const uint8_t *val;
	size_t klen, vlen;
	int r;

	if ((r = key_record_db_key(j->app, j->key_id, key, &klen)) != 0 ||
	    (r = store_get(txn, STORE_DB_KEYS, key, klen, &val, &vlen)) != 0)
		return r;
	return store_put(txn, STORE_DB_KEYS, key, klen, junk,
	    sizeof(junk) - 1, 0);
}

static int
audit_edit(struct store_txn *txn, const struct job *j)
{
	uint8_t key[8];
	const uint8_t *val;
	char *copy = NULL, *who;
	size_t vlen;
	int r;

	store_put_u64(key, j->seq);
	if (strcmp(j->what, "audit-delete") == 0)
		return store_del(txn, STORE_DB_AUDIT, key, sizeof(key));
	if ((r = store_get(txn, STORE_DB_AUDIT, key, sizeof(key), &val,
	    &vlen)) != 0)
		return r;
	if ((copy = malloc(vlen + 1)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(copy, val, vlen);
	copy[vlen] = '\0';
	r = P8V_ERR_NOT_FOUND;
	if ((who = strstr(copy, TAMPER_WHO)) == NULL)
		goto out;
	who += strlen(TAMPER_WHO);
	if (*who < 'a' || *who > 'z')
		goto out;
	*who = *who == 'z' ? 'y' : (char)(*who + 1);
	r = store_put(txn, STORE_DB_AUDIT, key, sizeof(key), copy, vlen, 0);
 out:
	free(copy);
	return r;
}

/* Hold the writer until stdin ends; then abort (an error commits
 * nothing). */
static int
hold_write(void)
{
	char buf[64];

	printf("held\n");
	fflush(stdout);
	while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
		;
	return P8V_ERR_BUSY;
}

static int
tamper_txn(struct store_txn *txn, void *arg)
{
	const struct job *j = arg;

	if (strcmp(j->what, "hold-write") == 0)
		return hold_write();

	if (strcmp(j->what, "record-flip") == 0)
		return record_flip(txn, j);
	if (strcmp(j->what, "record-garble") == 0)
		return record_garble(txn, j);
	return audit_edit(txn, j);
}

int
main(int argc, char **argv)
{
	struct store *s = NULL;
	struct job j;
	int r;

	memset(&j, 0, sizeof(j));
	if (argc == 5 && (strcmp(argv[1], "record-flip") == 0 ||
	    strcmp(argv[1], "record-garble") == 0)) {
		j.app = argv[3];
		j.key_id = argv[4];
	} else if (argc == 4 && (strcmp(argv[1], "audit-delete") == 0 ||
	    strcmp(argv[1], "audit-alter") == 0)) {
		j.seq = strtoull(argv[3], NULL, 10);
	} else if (argc == 3 && strcmp(argv[1], "hold-write") == 0) {
		j.what = argv[1];
		if ((r = store_open(argv[2], NULL, &s)) != 0)
			goto fail;
		r = store_write(s, tamper_txn, &j);
		store_close(s);
		return r == P8V_ERR_BUSY ? 0 : 1;
	} else {
		fprintf(stderr, "usage: admin_tamper record-flip|record-garble DIR APP KEY_ID"
		    " | audit-delete DIR SEQ | audit-alter DIR SEQ"
		    " | hold-write DIR\n");
		return 2;
	}
	j.what = argv[1];
	if ((r = store_open(argv[2], NULL, &s)) != 0 ||
	    (r = store_write(s, tamper_txn, &j)) != 0) {
 fail:
		fprintf(stderr, "admin_tamper %s: %s\n", argv[1],
		    p8v_errname(r));
		store_close(s);
		return 1;
	}
	store_close(s);
	return 0;
}
