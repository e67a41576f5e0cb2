/*
 * test_rotate.c: master-key rotation (vault/rotate.h), verification
 * (vault/verify.h), backups (store/backup.h) and swapping the keyring of a
 * serving vault (vault_set_keyring).
 *
 * A base store: ROT_RECORDS key records uploaded through the vault under
 * the old master key (one app per record; one revoked, so a tombstone),
 * and a persisted APNs token for every fourth app. Then:
 *
 * - rotation: every record re-wrapped under the new key, metadata bytes
 *   unchanged (the stored value up to the envelope is identical), every
 *   record opens with the new key alone, the persisted tokens are served
 *   by a vault holding the new key alone without a mint, the audit chain
 *   holds with a "master.rotate" event; a second run re-wraps nothing; an
 *   old key the store never recorded is refused and not recorded.
 * - a damaged record is named through the failure callback and skipped,
 *   the rest is rotated; verify names it too.
 * - SIGKILL: a child runs the rotation with a small batch and is killed
 *   after k committed batches, for every k, and at random times: after
 *   each kill every record opens with old+new, the audit chain holds, and
 *   a second run finishes the job (new key alone opens everything).
 * - backup while a writer thread commits, restore into a new directory,
 *   the restore opens and verifies; the backup holds no scalar in the
 *   clear; refusals (existing file, non-empty directory, not LMDB).
 * - vault_set_keyring: refuses a ring that lacks the current primary, or
 *   a key records use (the vault keeps serving), accepts old+new, then
 *   new alone after the rotation; threads signing all along never fail.
 *
 * P8V_ROTATE_SEED fixes the random kill delays (the seed is printed).
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/masterkey.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "keeper/keeper.h"
#include "keeper/keeper_test.h"
#include "store/audit.h"
#include "store/backup.h"
#include "store/cache.h"
#include "store/masterkeys.h"
#include "store/records.h"
#include "store/store.h"
#include "tests/check.h"
#include "tests/testutil.h"
#include "vault/rotate.h"
#include "vault/vault.h"
#include "vault/vault_internal.h"
#include "vault/verify.h"

/* Records in the base store, and the batch of the kill tests: 64 / 4 = 16
 * record batches and a few token batches, so "after k batches" lands in
 * both phases. */
#define ROT_RECORDS 64
#define ROT_BATCH 4
/* Every ROT_TOKEN_EVERY-th app gets a persisted APNs token. */
#define ROT_TOKEN_EVERY 4
#define ROT_TOKENS (ROT_RECORDS / ROT_TOKEN_EVERY)
/* The revoked one (a tombstone: nothing to re-wrap). */
#define ROT_REVOKED 5
/* Random kills: this many, each after a random delay up to the time a
 * whole child run takes on this machine (measured; at least
 * ROT_KILL_MIN_SPAN_US), so that most land inside the rotation. */
#define ROT_RANDOM_KILLS 24
#define ROT_KILL_MIN_SPAN_US 2000
/* Signing threads while the keyring is swapped. */
#define ROT_SIGN_THREADS 4
#define ROT_SWAPS 200

static const char team[] = "TEAM000001";

static uint8_t old_raw[MASTER_KEY_BYTES], new_raw[MASTER_KEY_BYTES];
static uint8_t stray_raw[MASTER_KEY_BYTES];
static char *base_backup;       /* the base store, as a backup file */
static char *tmp_root;
/* Public points of the uploaded keys, for the plaintext search. */
static uint8_t scalars_seen[ROT_RECORDS][P8_SCALAR_BYTES];

/* --- helpers --- */

/* A keeper holding the master keys of raws, the last one primary. */
static struct keeper *
ring_of(const uint8_t *const *raws, size_t n)
{
	struct keeper *k = NULL;
	size_t i;

	REQUIRE(keeper_create(&k) == 0);
	for (i = 0; i < n; i++)
		REQUIRE(keeper_test_add_raw(k, raws[i], MASTER_KEY_BYTES,
		    NULL) == 0);
	return k;
}

static struct keeper *
ring_old(void)
{
	const uint8_t *r[] = { old_raw };

	return ring_of(r, 1);
}

static struct keeper *
ring_new(void)
{
	const uint8_t *r[] = { new_raw };

	return ring_of(r, 1);
}

/* Old and new, the new one primary (added last). */
static struct keeper *
ring_both(void)
{
	const uint8_t *r[] = { old_raw, new_raw };

	return ring_of(r, 2);
}

/* Old and new, the old one primary (added last). */
static struct keeper *
ring_both_old_primary(void)
{
	const uint8_t *r[] = { new_raw, old_raw };

	return ring_of(r, 2);
}

/* The id of the new master key. */
static const uint8_t *
new_id(void)
{
	static uint8_t id[MASTER_KEY_ID_BYTES];
	struct master_key *mk = NULL;

	REQUIRE(master_key_create(new_raw, MASTER_KEY_BYTES, &mk) == 0);
	memcpy(id, master_key_id(mk), sizeof(id));
	master_key_destroy(mk);
	return id;
}

static void
app_name(char *out, size_t n, int i)
{
	snprintf(out, n, "app-%03d", i);
}

static void
key_id_of(char out[IDS_APPLE_ID_LEN + 1], int i)
{
	snprintf(out, IDS_APPLE_ID_LEN + 1, "KEY%07d", i);
}

/* A fresh P-256 .p8 in guarded memory; its scalar into scalar. */
static uint8_t *
gen_p8(size_t *len, uint8_t scalar[P8_SCALAR_BYTES])
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	BIO *bio = BIO_new(BIO_s_secmem());
	struct p8_key *key = NULL;
	uint8_t *pem;
	char *data;
	long n;

	REQUIRE(pkey != NULL && bio != NULL);
	REQUIRE(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL,
	    NULL) == 1);
	n = BIO_get_mem_data(bio, &data);
	REQUIRE(n > 0 && (pem = secmem_alloc((size_t)n)) != NULL);
	memcpy(pem, data, (size_t)n);
	*len = (size_t)n;
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	REQUIRE(p8_parse(pem, *len, &key) == 0);
	REQUIRE(p8_key_export_scalar(key, scalar) == 0);
	p8_key_destroy(key);
	return pem;
}

static char *
fresh_dir(const char *name)
{
	static unsigned seq;
	char *path;

	REQUIRE(asprintf(&path, "%s/%s-%u", tmp_root, name, seq++) > 0);
	return path;
}

/* A new state directory holding a copy of the base store. */
static char *
copy_of_base(void)
{
	char *dir = fresh_dir("copy");
	int created = 0;

	REQUIRE(store_restore(base_backup, dir, &created) == 0);
	REQUIRE(created == 1);
	return dir;
}

/* --- the base store --- */

static void
build_base(void)
{
	struct store *s = NULL;
	struct vault *v = NULL;
	struct vault_upload up;
	struct vault_token tok;
	char app[32], kid[IDS_APPLE_ID_LEN + 1];
	json_t *meta = NULL;
	uint8_t *p8;
	size_t len;
	int i, created;
	char *dir = fresh_dir("base");

	REQUIRE(store_open(dir, NULL, &s) == 0);
	REQUIRE(vault_create(s, ring_old(), NULL, &v) == 0);
	for (i = 0; i < ROT_RECORDS; i++) {
		app_name(app, sizeof(app), i);
		key_id_of(kid, i);
		p8 = gen_p8(&len, scalars_seen[i]);
		memset(&up, 0, sizeof(up));
		up.app = app;
		up.key_id = kid;
		up.team_id = team;
		up.p8 = p8;
		up.p8_len = len;
		up.environment = KEY_ENV_BOTH;
		/* DeviceCheck too: its tokens are signed on every call (the
		 * signers below), APNs tokens are cached. */
		up.services = KEY_SERVICE_APNS | KEY_SERVICE_DEVICECHECK;
		up.activate = 1;
		up.actor = "test";
		REQUIRE(vault_key_upload(v, &up, &meta, &created) == 0);
		json_decref(meta);
		secmem_free(p8);
		if (i % ROT_TOKEN_EVERY == 0) {
			REQUIRE(vault_apns_token(v, app, KEY_ENV_BOTH, NULL,
			    VAULT_REJECT_NONE, "test", &tok) == 0);
			vault_token_finish(&tok);
		}
	}
	app_name(app, sizeof(app), ROT_REVOKED);
	key_id_of(kid, ROT_REVOKED);
	REQUIRE(vault_key_revoke(v, app, kid, "test", &meta) == 0);
	json_decref(meta);
	vault_destroy(v);
	REQUIRE(asprintf(&base_backup, "%s/base.backup", tmp_root) > 0);
	REQUIRE(store_backup(s, base_backup) == 0);
	store_close(s);
	tu_rmtree(dir);
	free(dir);
}

/* --- checks --- */

/* Every non-revoked record opens with ring (destroyed after); audit
 * chain intact. */
static void
check_opens(struct store *s, struct keeper *ring, const char *when)
{
	struct vault_verify_result vr;

	CHECK_OK(vault_verify(s, ring, NULL, NULL, &vr));
	keeper_destroy(ring);
	CHECKF(vr.records == ROT_RECORDS && vr.tombstones == 1 &&
	    vr.opened == ROT_RECORDS - 1 && vr.bad == 0,
	    "%s: %llu records, %llu tombstones, %llu opened, %llu bad", when,
	    (unsigned long long)vr.records, (unsigned long long)vr.tombstones,
	    (unsigned long long)vr.opened, (unsigned long long)vr.bad);
	CHECKF(vr.audit_err == 0, "%s: audit chain broken at %llu", when,
	    (unsigned long long)vr.audit_bad_seq);
}

/* Records and tokens under each key: (old, new). */
static void
usage_of(struct store *s, uint64_t *old_recs, uint64_t *new_recs,
    uint64_t *old_toks, uint64_t *new_toks)
{
	struct vault_master_key_use *u = NULL;
	struct master_key *o = NULL, *n = NULL;
	size_t i, count = 0;

	REQUIRE(master_key_create(old_raw, MASTER_KEY_BYTES, &o) == 0);
	REQUIRE(master_key_create(new_raw, MASTER_KEY_BYTES, &n) == 0);
	*old_recs = *new_recs = *old_toks = *new_toks = 0;
	CHECK_OK(vault_master_usage(s, &u, &count));
	for (i = 0; i < count; i++) {
		if (memcmp(u[i].id, master_key_id(o), MASTER_KEY_ID_BYTES) == 0) {
			*old_recs = u[i].records;
			*old_toks = u[i].tokens;
		} else if (memcmp(u[i].id, master_key_id(n),
		    MASTER_KEY_ID_BYTES) == 0) {
			*new_recs = u[i].records;
			*new_toks = u[i].tokens;
		}
	}
	free(u);
	master_key_destroy(o);
	master_key_destroy(n);
}

/* The metadata prefix of every stored record (format byte, length,
 * metadata JSON), concatenated: a rotation must not change it. */
struct prefixes {
	json_t *list;
};

static int
prefix_one(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
    void *arg)
{
	struct prefixes *p = arg;
	size_t m;

	(void)key;
	(void)klen;
	if (vlen < 5)
		return P8V_ERR_INTEGRITY;
	m = store_get_u32(val + 1);
	if (5 + m > vlen)
		return P8V_ERR_INTEGRITY;
	return json_array_append_new(p->list, json_stringn((const char *)val +
	    5, m)) == 0 ? 0 : P8V_ERR_ALLOC;
}

static int
prefixes_txn(struct store_txn *txn, void *arg)
{
	struct prefixes *p = arg;

	json_array_clear(p->list);
	return store_scan(txn, STORE_DB_KEYS, NULL, 0, prefix_one, p);
}

static json_t *
metadata_of(struct store *s)
{
	struct prefixes p;

	REQUIRE((p.list = json_array()) != NULL);
	REQUIRE(store_read(s, prefixes_txn, &p) == 0);
	return p.list;
}

/* --- rotation --- */

struct fail_log {
	int n;
	char app[32];
	char key_id[16];
	int err;
};

static void
on_failure(const char *app, const char *key_id, int err, void *arg)
{
	struct fail_log *f = arg;

	f->n++;
	snprintf(f->app, sizeof(f->app), "%s", app);
	snprintf(f->key_id, sizeof(f->key_id), "%s", key_id);
	f->err = err;
}

static int
rotate(struct store *s, size_t batch, struct vault_rotate_result *res,
    struct fail_log *fails)
{
	struct keeper *ring = ring_both();
	struct vault_rotate_options o;
	int r;

	memset(&o, 0, sizeof(o));
	o.batch = batch;
	o.actor = "test";
	o.failure = on_failure;
	o.arg = fails;
	r = vault_master_rotate(s, ring, new_id(), &o, res);
	keeper_destroy(ring);
	return r;
}

static void
test_rotation(void)
{
	struct vault_rotate_result res;
	struct fail_log fails = { 0 };
	struct store *s = NULL;
	struct vault *v = NULL;
	struct vault_token tok;
	uint64_t o_r, n_r, o_t, n_t;
	json_t *before, *after;
	char *dir = copy_of_base();
	char app[32];
	int i;

	REQUIRE(store_open(dir, NULL, &s) == 0);
	check_opens(s, ring_old(), "base, old key");
	usage_of(s, &o_r, &n_r, &o_t, &n_t);
	CHECK_INT(o_r, ROT_RECORDS - 1);
	CHECK_INT(o_t, ROT_TOKENS);
	CHECK_INT(n_r + n_t, 0);
	before = metadata_of(s);

	CHECK_OK(rotate(s, 7, &res, &fails));
	CHECK_INT(res.records, ROT_RECORDS);
	CHECK_INT(res.tombstones, 1);
	CHECK_INT(res.already, 0);
	CHECK_INT(res.rewrapped, ROT_RECORDS - 1);
	CHECK_INT(res.failed, 0);
	CHECK_INT(res.remaining, 0);
	CHECK_INT(res.tokens_rewrapped, ROT_TOKENS);
	CHECK_INT(res.tokens_dropped, 0);
	/* 63 records in batches of 7, 16 tokens in batches of 7. */
	CHECK_INT(res.batches, 9 + 3);
	CHECK_INT(fails.n, 0);

	after = metadata_of(s);
	CHECKF(json_equal(before, after), "a rotation changed metadata");
	json_decref(before);
	json_decref(after);
	usage_of(s, &o_r, &n_r, &o_t, &n_t);
	CHECK_INT(o_r + o_t, 0);
	CHECK_INT(n_r, ROT_RECORDS - 1);
	CHECK_INT(n_t, ROT_TOKENS);
	check_opens(s, ring_new(), "after rotation, new key alone");

	/* The persisted tokens open with the new key alone: served, not
	 * minted again (a mint would count as a token update at Apple). */
	REQUIRE(vault_create(s, ring_new(), NULL, &v) == 0);
	for (i = 0; i < ROT_RECORDS; i += ROT_TOKEN_EVERY) {
		app_name(app, sizeof(app), i);
		CHECK_OK(vault_apns_token(v, app, KEY_ENV_BOTH, NULL,
		    VAULT_REJECT_NONE, "test", &tok));
		CHECKF(tok.minted == 0, "%s: token minted again", app);
		vault_token_finish(&tok);
	}
	vault_destroy(v);

	/* Again: nothing left to do. */
	CHECK_OK(rotate(s, 7, &res, &fails));
	CHECK_INT(res.already, ROT_RECORDS - 1);
	CHECK_INT(res.rewrapped, 0);
	CHECK_INT(res.tokens_rewrapped, 0);
	CHECK_INT(res.remaining, 0);
	CHECK_INT(res.batches, 0);
	check_opens(s, ring_new(), "after a second run");
	store_close(s);
	tu_rmtree(dir);
	free(dir);
}

/* An old key the store never recorded is refused, and not recorded. */
static void
test_unknown_old_key(void)
{
	const uint8_t *raws[] = { stray_raw, new_raw };
	struct keeper *ring = ring_of(raws, 2);
	struct vault_master_key_use *u = NULL;
	struct vault_rotate_result res;
	struct store *s = NULL;
	struct master_key *stray = NULL;
	char *dir = copy_of_base();
	size_t i, n = 0;

	REQUIRE(store_open(dir, NULL, &s) == 0);
	CHECK_ERR(vault_master_rotate(s, ring, new_id(), NULL, &res),
	    P8V_ERR_MASTER_KEY_MISMATCH);
	REQUIRE(master_key_create(stray_raw, MASTER_KEY_BYTES, &stray) == 0);
	CHECK_STR(res.unknown_key_id, master_key_id_hex(stray));
	CHECK_OK(vault_master_usage(s, &u, &n));
	for (i = 0; i < n; i++)
		CHECKF(memcmp(u[i].id, master_key_id(stray),
		    MASTER_KEY_ID_BYTES) != 0, "the stray key was recorded");
	free(u);
	master_key_destroy(stray);
	keeper_destroy(ring);
	/* new_mk must be in the ring; batch bounded. */
	ring = ring_old();
	{
		struct keeper *nr = ring_new();

		CHECK_ERR(vault_master_rotate(s, ring, new_id(), NULL, &res),
		    P8V_ERR_INVALID_ARGUMENT);
		keeper_destroy(nr);
	}
	keeper_destroy(ring);
	store_close(s);
	tu_rmtree(dir);
	free(dir);
}

/* Flip one byte of the envelope of (app-009, KEY0000009). */
struct tamper {
	int done;
};

static int
tamper_txn(struct store_txn *txn, void *arg)
{
	struct tamper *t = arg;
	uint8_t key[KEY_RECORD_DB_KEY_MAX], *copy;
	const uint8_t *val;
	size_t klen, vlen;
	int r;

	REQUIRE(key_record_db_key("app-009", "KEY0000009", key, &klen) == 0);
	if ((r = store_get(txn, STORE_DB_KEYS, key, klen, &val, &vlen)) != 0)
		return r;
	REQUIRE((copy = malloc(vlen)) != NULL);
	memcpy(copy, val, vlen);
	copy[vlen - 20] ^= 0x01; /* inside the payload ciphertext */
	r = store_put(txn, STORE_DB_KEYS, key, klen, copy, vlen, 0);
	free(copy);
	t->done = r == 0;
	return r;
}

static void
test_damaged_record(void)
{
	struct vault_rotate_result res;
	struct vault_verify_result vr;
	struct fail_log fails = { 0 };
	struct tamper t = { 0 };
	struct store *s = NULL;
	struct keeper *ring;
	char *dir = copy_of_base();

	REQUIRE(store_open(dir, NULL, &s) == 0);
	REQUIRE(store_write(s, tamper_txn, &t) == 0 && t.done);
	CHECK_OK(rotate(s, ROT_BATCH, &res, &fails));
	CHECK_INT(res.rewrapped, ROT_RECORDS - 2);
	CHECK_INT(res.failed, 1);
	CHECK_INT(res.remaining, 1);
	CHECK_INT(fails.n, 1);
	CHECK_STR(fails.app, "app-009");
	CHECK_STR(fails.key_id, "KEY0000009");
	CHECK_ERR(fails.err, P8V_ERR_INTEGRITY);
	ring = ring_both();
	CHECK_OK(vault_verify(s, ring, NULL, NULL, &vr));
	CHECK_INT(vr.bad, 1);
	CHECK_INT(vr.opened, ROT_RECORDS - 2);
	keeper_destroy(ring);
	store_close(s);
	tu_rmtree(dir);
	free(dir);
}

/* --- SIGKILL --- */

static int kill_after;          /* the child kills itself after this many */
static int kills_landed;        /* rounds whose child died before the end */
static long child_run_us;       /* a whole child run, fork to exit */

static long
elapsed_us(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000000L +
	    (t1.tv_nsec - t0->tv_nsec) / 1000;
}

static void
kill_progress(uint64_t done, uint64_t total, void *arg)
{
	static int batches;

	(void)arg;
	if (done == 0 && total > 0)
		return; /* the call before the first batch */
	if (++batches >= kill_after)
		raise(SIGKILL);
}

/* The child: open its own store, rotate; killed by itself (kill_after >
 * 0) or by the parent. Never returns. */
static void
rotating_child(const char *dir, int self_kill)
{
	struct keeper *ring = ring_both();
	struct vault_rotate_options o;
	struct vault_rotate_result res;
	struct store *s = NULL;

	memset(&o, 0, sizeof(o));
	o.batch = ROT_BATCH;
	o.actor = "test";
	if (self_kill)
		o.progress = kill_progress;
	if (store_open(dir, NULL, &s) != 0)
		_exit(2);
	if (vault_master_rotate(s, ring, new_id(), &o, &res) != 0)
		_exit(3);
	_exit(0);
}

/* One round: rotate in a child that dies, check, finish, check. */
static void
kill_round(int self_kill, long delay_us, const char *what)
{
	struct vault_rotate_result res;
	struct fail_log fails = { 0 };
	struct store *s = NULL;
	struct timespec t0;
	char *dir = copy_of_base();
	int status;
	pid_t pid;

	kill_after = self_kill;
	fflush(NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	REQUIRE((pid = fork()) >= 0);
	if (pid == 0)
		rotating_child(dir, self_kill > 0);
	if (self_kill == 0) {
		usleep((useconds_t)delay_us);
		kill(pid, SIGKILL);
	}
	REQUIRE(waitpid(pid, &status, 0) == pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		child_run_us = elapsed_us(&t0);
	/* A child killed before it finished, or one that finished first
	 * (random delays may be long); never one that failed. */
	kills_landed += WIFSIGNALED(status);
	CHECKF((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
	    (WIFEXITED(status) && WEXITSTATUS(status) == 0),
	    "%s: child status %d", what, status);

	REQUIRE(store_open(dir, NULL, &s) == 0);
	check_opens(s, ring_both(), what);
	CHECK_OK(rotate(s, ROT_BATCH, &res, &fails));
	CHECKF(res.remaining == 0 && res.failed == 0 &&
	    res.tokens_dropped == 0, "%s: re-run left %llu, failed %llu",
	    what, (unsigned long long)res.remaining,
	    (unsigned long long)res.failed);
	CHECKF(res.already + res.rewrapped == ROT_RECORDS - 1,
	    "%s: %llu already + %llu re-wrapped", what,
	    (unsigned long long)res.already,
	    (unsigned long long)res.rewrapped);
	check_opens(s, ring_new(), what);
	store_close(s);
	tu_rmtree(dir);
	free(dir);
}

static void
test_sigkill(unsigned seed)
{
	/* Record batches, token batches, and one past the end (the child
	 * then finishes: the audit event's transaction is the last). */
	const int batches = (ROT_RECORDS - 1 + ROT_BATCH - 1) / ROT_BATCH +
	    (ROT_TOKENS + ROT_BATCH - 1) / ROT_BATCH;
	char what[64];
	int k;

	srandom(seed);
	for (k = 1; k <= batches + 1; k++) {
		snprintf(what, sizeof(what), "killed after %d batches", k);
		kill_round(k, 0, what);
	}
	if (child_run_us < ROT_KILL_MIN_SPAN_US)
		child_run_us = ROT_KILL_MIN_SPAN_US;
	for (k = 0; k < ROT_RANDOM_KILLS; k++) {
		long us = random() % child_run_us;

		snprintf(what, sizeof(what), "killed after %ld us", us);
		kill_round(0, us, what);
	}
	/* How many kills landed before the child finished (the random
	 * ones depend on the machine's speed, so this is not a check). */
	printf("SIGKILL: %d of %d rounds killed the rotation before its end\n",
	    kills_landed, batches + 1 + ROT_RANDOM_KILLS);
}

/* --- backup while writing, restore --- */

struct writer {
	struct store *s;
	atomic_int stop;
	atomic_int commits;
};

static int
write_event(struct store_txn *txn, void *arg)
{
	json_t *ev = json_pack("{s:s}", "what", "test.tick");
	int r;

	(void)arg;
	if (ev == NULL)
		return P8V_ERR_ALLOC;
	r = store_audit_append(txn, ev, NULL);
	json_decref(ev);
	return r;
}

static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load(&w->stop)) {
		if (store_write(w->s, write_event, NULL) != 0)
			break;
		atomic_fetch_add(&w->commits, 1);
	}
	return NULL;
}

/* 1 if needle (n bytes) occurs in the file at path. */
static int
file_holds(const char *path, const uint8_t *needle, size_t n)
{
	uint8_t *buf = NULL;
	size_t len = 0, i;
	int found = 0;

	REQUIRE(tu_read_file(path, &buf, &len) == 0);
	for (i = 0; i + n <= len && !found; i++)
		found = memcmp(buf + i, needle, n) == 0;
	free(buf);
	return found;
}

static void
test_backup_restore(void)
{
	struct writer w;
	struct store *s = NULL, *r2 = NULL;
	struct keeper *ring;
	pthread_t th;
	char *dir = copy_of_base(), *out, *target, *junk;
	int created = 0, i, found = 0;

	REQUIRE(store_open(dir, NULL, &s) == 0);
	memset(&w, 0, sizeof(w));
	w.s = s;
	REQUIRE(pthread_create(&th, NULL, writer_main, &w) == 0);
	while (atomic_load(&w.commits) < 3)
		usleep(1000);
	REQUIRE(asprintf(&out, "%s/live.backup", tmp_root) > 0);
	CHECK_OK(store_backup(s, out));
	atomic_store(&w.stop, 1);
	pthread_join(th, NULL);
	CHECKF(atomic_load(&w.commits) > 3, "no writes during the backup");
	/* Never replaces a file. */
	CHECK_ERR(store_backup(s, out), P8V_ERR_EXISTS);
	store_close(s);

	/* Only ciphertext: no scalar of any uploaded key. */
	for (i = 0; i < ROT_RECORDS; i++)
		found |= file_holds(out, scalars_seen[i], P8_SCALAR_BYTES);
	CHECKF(!found, "the backup holds a private scalar in the clear");

	target = fresh_dir("restored");
	CHECK_OK(store_restore(out, target, &created));
	CHECK_INT(created, 1);
	REQUIRE(store_open(target, NULL, &r2) == 0);
	ring = ring_old();
	CHECK_OK(vault_keys_check(r2, ring));
	keeper_destroy(ring);
	check_opens(r2, ring_old(), "restored backup");
	store_close(r2);
	/* Not into a directory that holds something; not from a non-LMDB
	 * file; a missing backup. */
	CHECK_ERR(store_restore(out, target, &created), P8V_ERR_EXISTS);
	REQUIRE(asprintf(&junk, "%s/junk", tmp_root) > 0);
	REQUIRE(tu_write_file(junk, "not an lmdb file, just text......",
	    33, 0600) == 0);
	free(target);
	target = fresh_dir("junk");
	CHECK_ERR(store_restore(junk, target, &created), P8V_ERR_INTEGRITY);
	CHECKF(access(target, F_OK) != 0, "a refused restore left %s", target);
	CHECK_ERR(store_restore("/nonexistent/backup", target, &created),
	    P8V_ERR_NOT_FOUND);
	free(junk);
	free(target);
	free(out);
	tu_rmtree(dir);
	free(dir);
}

/* --- swapping the keyring of a serving vault --- */

struct signer {
	struct vault *v;
	atomic_int *stop;
	atomic_int failures;
	atomic_int calls;
};

/* A DeviceCheck token: opened, signed and wiped on every call. */
static int
sign_one(struct vault *v, const char *app, struct vault_token *tok)
{
	struct keeper_profile f;

	memset(&f, 0, sizeof(f));
	f.kind = KEEPER_PROFILE_DEVICECHECK;
	return vault_sign_app(v, app, KEY_ENV_BOTH, &f, "test", tok);
}

static void *
signer_main(void *arg)
{
	struct signer *sg = arg;
	struct vault_token tok;
	char app[32];
	int i = 0;

	while (!atomic_load(sg->stop)) {
		/* Skip the revoked app; every other key signs. */
		if (i % ROT_RECORDS == ROT_REVOKED)
			i++;
		app_name(app, sizeof(app), i++ % ROT_RECORDS);
		if (sign_one(sg->v, app, &tok) != 0)
			atomic_fetch_add(&sg->failures, 1);
		vault_token_finish(&tok);
		atomic_fetch_add(&sg->calls, 1);
	}
	return NULL;
}

static void
test_set_keyring(void)
{
	struct vault_rotate_result res;
	struct fail_log fails = { 0 };
	struct signer sg[ROT_SIGN_THREADS];
	pthread_t th[ROT_SIGN_THREADS];
	atomic_int stop;
	struct store *s = NULL;
	struct vault *v = NULL;
	struct vault_token tok;
	char *dir = copy_of_base();
	int seen[ROT_SIGN_THREADS];
	int i, n;

	REQUIRE(store_open(dir, NULL, &s) == 0);
	REQUIRE(vault_create(s, ring_old(), NULL, &v) == 0);
	/* New alone: records are under the old key: refused. */
	CHECK_ERR(vault_set_keyring(v, ring_new()),
	    P8V_ERR_MASTER_KEY_MISSING);
	CHECK_OK(sign_one(v, "app-001", &tok));
	vault_token_finish(&tok);
	CHECK_ERR(vault_set_keyring(v, NULL), P8V_ERR_INVALID_ARGUMENT);
	/* The primary (the key new seals use) is never dropped in one swap,
	 * even when no record uses it yet: first another key primary, then
	 * without it. */
	CHECK_OK(vault_set_keyring(v, ring_both()));
	CHECK_ERR(vault_set_keyring(v, ring_old()),
	    P8V_ERR_MASTER_KEY_PRIMARY_MISSING);
	CHECK_OK(vault_set_keyring(v, ring_both_old_primary()));
	CHECK_OK(vault_set_keyring(v, ring_old()));

	atomic_init(&stop, 0);
	for (i = 0; i < ROT_SIGN_THREADS; i++) {
		sg[i].v = v;
		sg[i].stop = &stop;
		atomic_init(&sg[i].failures, 0);
		atomic_init(&sg[i].calls, 0);
		REQUIRE(pthread_create(&th[i], NULL, signer_main, &sg[i]) == 0);
	}
	/*
	 * Swap back and forth while they sign; halfway, with both keys in,
	 * rotate (the runbook: both keys loaded throughout); then keep
	 * swapping between both and the new key alone. Before the first
	 * swap to the new key alone, every signer finishes a call begun
	 * after the rotation: one that read a record before its batch
	 * committed would rightly need the old key (the runbook's "reload
	 * after the rotation has finished").
	 */
	for (n = 0; n < ROT_SWAPS; n++) {
		if (n == ROT_SWAPS / 2) {
			CHECK_OK(vault_set_keyring(v, ring_both()));
			CHECK_OK(rotate(s, ROT_BATCH, &res, &fails));
			for (i = 0; i < ROT_SIGN_THREADS; i++)
				seen[i] = atomic_load(&sg[i].calls);
			for (i = 0; i < ROT_SIGN_THREADS; i++)
				while (atomic_load(&sg[i].calls) < seen[i] + 2)
					usleep(100);
			continue;
		}
		/* Before the rotation the old key stays primary (a ring
		 * with the new key primary could not be left for the old key
		 * alone in one swap); after it, the new one. */
		if (n < ROT_SWAPS / 2)
			CHECK_OK(vault_set_keyring(v, n % 2 ? ring_old() :
			    ring_both_old_primary()));
		else
			CHECK_OK(vault_set_keyring(v, n % 2 ? ring_new() :
			    ring_both()));
	}
	atomic_store(&stop, 1);
	for (i = 0; i < ROT_SIGN_THREADS; i++) {
		pthread_join(th[i], NULL);
		CHECKF(atomic_load(&sg[i].failures) == 0, "signer %d: %d of %d "
		    "calls failed", i, atomic_load(&sg[i].failures),
		    atomic_load(&sg[i].calls));
		CHECKF(atomic_load(&sg[i].calls) > 0, "signer %d never ran", i);
	}
	CHECK_INT(res.remaining, 0);
	/* Now the old key alone is refused: records need the new one. */
	CHECK_ERR(vault_set_keyring(v, ring_old()),
	    P8V_ERR_MASTER_KEY_MISSING);
	CHECK_OK(sign_one(v, "app-002", &tok));
	vault_token_finish(&tok);
	vault_destroy(v);
	store_close(s);
	tu_rmtree(dir);
	free(dir);
}

int
main(void)
{
	const char *env = getenv("P8V_ROTATE_SEED");
	unsigned seed = env != NULL ? (unsigned)strtoul(env, NULL, 10) :
	    (unsigned)time(NULL) ^ (unsigned)getpid();

	printf("P8V_ROTATE_SEED=%u\n", seed);
	log_set_level(LOG_LEVEL_ERROR);
	REQUIRE(secmem_init() == 0);
	REQUIRE(secmem_random(old_raw, sizeof(old_raw)) == 0);
	REQUIRE(secmem_random(new_raw, sizeof(new_raw)) == 0);
	REQUIRE(secmem_random(stray_raw, sizeof(stray_raw)) == 0);
	REQUIRE((tmp_root = tu_mkdtemp("p8v-rotate")) != NULL);
	build_base();

	test_rotation();
	test_unknown_old_key();
	test_damaged_record();
	test_backup_restore();
	test_set_keyring();
	test_sigkill(seed);

	tu_rmtree(tmp_root);
	free(tmp_root);
	free(base_backup);
	secmem_wipe(old_raw, sizeof(old_raw));
	secmem_wipe(new_raw, sizeof(new_raw));
	secmem_wipe(scalars_seen, sizeof(scalars_seen));
	return check_finish();
}
