/*
 * verify.c: open every key record, check the audit chain (see verify.h).
 */
#include "vault/verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "crypto/envelope.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "store/audit.h"
#include "store/records.h"

static const char *const step_names[] = {
	[VAULT_VERIFY_DECODE] = "decode",
	[VAULT_VERIFY_OPEN] = "open",
	[VAULT_VERIFY_PUBLIC_POINT] = "public_point",
};

const char *
vault_verify_step_name(enum vault_verify_step step)
{
	if ((unsigned int)step > VAULT_VERIFY_PUBLIC_POINT)
		return NULL;
	return step_names[step];
}

void
vault_record_ids(const uint8_t *key, size_t klen, char app[IDS_APP_MAX + 1],
    char key_id[IDS_APPLE_ID_LEN + 1])
{
	const uint8_t *sep = key != NULL ? memchr(key, 0, klen) : NULL;
	size_t alen, klen2;

	snprintf(app, IDS_APP_MAX + 1, "?");
	snprintf(key_id, IDS_APPLE_ID_LEN + 1, "?");
	if (sep == NULL)
		return;
	alen = (size_t)(sep - key);
	klen2 = klen - alen - 1;
	if (alen >= 1 && alen <= IDS_APP_MAX) {
		char tmp[IDS_APP_MAX + 1];

		memcpy(tmp, key, alen);
		tmp[alen] = '\0';
		if (ids_app_valid(tmp) == 0)
			memcpy(app, tmp, alen + 1);
	}
	if (klen2 == IDS_APPLE_ID_LEN) {
		char tmp[IDS_APPLE_ID_LEN + 1];

		memcpy(tmp, sep + 1, klen2);
		tmp[klen2] = '\0';
		if (ids_key_id_valid(tmp) == 0)
			memcpy(key_id, tmp, klen2 + 1);
	}
}

/* Failures that belong to one record; anything else stops the walk. */
static int
record_level(int err)
{
	switch (err) {
	case P8V_ERR_INTEGRITY:
	case P8V_ERR_MASTER_KEY_MISSING:
	case P8V_ERR_TOO_LARGE:
	case P8V_ERR_BAD_APP_ID:
	case P8V_ERR_BAD_KEY_ID:
	case P8V_ERR_BAD_TEAM_ID:
	case P8V_ERR_BAD_FIELD:
	case P8V_ERR_P8_BAD_SCALAR:
	case P8V_ERR_P8_PUBKEY_MISMATCH:
		return 1;
	default:
		return 0;
	}
}

struct walk {
	struct keeper *keeper;
	void (*bad)(const char *, const char *, enum vault_verify_step, int,
	    void *);
	void *arg;
	struct vault_verify_result *out;
};

/* Have the keeper open rec and check its scalar against the stored
 * point; check the fingerprint of the point. 0, or the error with *step
 * set. */
static int
check_record(const struct walk *w, const struct key_record *rec,
    enum vault_verify_step *step)
{
	char fp[P8_FINGERPRINT_HEX + 1];
	struct keeper_record kr;
	enum keeper_step ks = KEEPER_STEP_NONE;
	uint8_t *aad = NULL;
	size_t aad_len = 0;
	int r;

	*step = VAULT_VERIFY_OPEN;
	if ((r = key_record_aad(rec, &aad, &aad_len)) != 0)
		goto out;
	kr.aad = aad;
	kr.aad_len = aad_len;
	kr.env = rec->envelope;
	kr.env_len = rec->envelope_len;
	if ((r = keeper_vouch(w->keeper, &kr, &ks)) != 0) {
		if (ks == KEEPER_STEP_LENGTH || ks == KEEPER_STEP_SCALAR)
			*step = VAULT_VERIFY_PUBLIC_POINT;
		goto out;
	}
	*step = VAULT_VERIFY_PUBLIC_POINT;
	if ((r = p8_public_fingerprint(rec->public_point, fp)) != 0)
		goto out;
	r = strcmp(fp, rec->fingerprint) == 0 ? 0 : P8V_ERR_INTEGRITY;
 out:
	free(aad);
	return r;
}

static int
verify_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct walk *w = arg;
	struct key_record rec = { 0 };
	enum vault_verify_step step = VAULT_VERIFY_DECODE;
	char app[IDS_APP_MAX + 1], key_id[IDS_APPLE_ID_LEN + 1];
	int r;

	w->out->records++;
	r = key_record_decode(key, klen, val, vlen, &rec);
	if (r == 0 && rec.envelope == NULL) {
		w->out->tombstones++;
		goto out;
	}
	if (r == 0)
		r = check_record(w, &rec, &step);
	if (r == 0) {
		w->out->opened++;
		goto out;
	}
	if (!record_level(r))
		goto out;
	/* P8 codes say which check failed; the caller wants one vocabulary
	 * for "this record is damaged". */
	if (r == P8V_ERR_P8_BAD_SCALAR || r == P8V_ERR_P8_PUBKEY_MISMATCH)
		r = P8V_ERR_INTEGRITY;
	w->out->bad++;
	vault_record_ids(key, klen, app, key_id);
	if (w->bad != NULL)
		w->bad(app, key_id, step, r, w->arg);
	r = 0;
 out:
	key_record_free(&rec);
	return r;
}

static int
verify_txn(struct store_txn *txn, void *arg)
{
	struct walk *w = arg;
	uint64_t events = 0, bad_seq = 0;
	int r;

	memset(w->out, 0, sizeof(*w->out));
	if ((r = store_scan(txn, STORE_DB_KEYS, NULL, 0, verify_one, w)) != 0)
		return r;
	r = store_audit_verify(txn, &events, &bad_seq);
	w->out->audit_events = events;
	w->out->audit_bad_seq = bad_seq;
	if (r == P8V_ERR_INTEGRITY) {
		w->out->audit_err = r;
		r = 0;
	}
	return r;
}

int
vault_verify(struct store *store, struct keeper *keeper,
    void (*bad)(const char *, const char *, enum vault_verify_step, int,
        void *),
    void *arg, struct vault_verify_result *out)
{
	struct walk w;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (store == NULL || keeper == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	w.keeper = keeper;
	w.bad = bad;
	w.arg = arg;
	w.out = out;
	return store_read(store, verify_txn, &w);
}
