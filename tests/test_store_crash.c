/*
 * test_store_crash.c: every acknowledged write survives kill -9.
 *
 * A writer child opens the store itself (after fork: no child ever uses an
 * environment its parent opened), then loops: seal a key record, store it
 * together with an audit event in one store_write, and only after the
 * commit returned write the record's number to a pipe. The parent kills it
 * with SIGKILL after a random short delay, CRASH_ROUNDS times, each round
 * in a fresh child (in odd rounds possibly while it opens the store). The map starts small, so some kills land during a
 * growth. Afterwards every acknowledged record must be present and open
 * (decrypt to its payload), every record present must open, and the audit
 * chain must verify with exactly one event per record: a transaction is
 * all or nothing.
 *
 * P8V_CRASH_SEED fixes the random delays (the seed is printed).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto/secmem.h"
#include "store/audit.h"
#include "store/masterkeys.h"
#include "store/records.h"
#include "tests/check.h"
#include "tests/test_store_util.h"
#include "tests/testutil.h"

#define CRASH_ROUNDS 25
/* Kill after 1..CRASH_MAX_DELAY_US microseconds of writing. */
#define CRASH_MAX_DELAY_US 40000
/* Record numbers of round r start at r * CRASH_STRIDE. */
#define CRASH_STRIDE 100000
#define CRASH_APP "crash.app"

static const unsigned mk_seed[] = { 11 };

struct write_args {
	struct key_record *rec;
	unsigned n;
};

static int
write_txn(struct store_txn *txn, void *arg)
{
	struct write_args *w = arg;
	json_t *ev;
	int r;

	if ((r = key_record_put(txn, w->rec)) != 0)
		return r;
	if ((ev = json_pack("{s:s, s:s, s:i}", "action", "key.upload",
	    "key_id", w->rec->key_id, "n", (int)w->n)) == NULL)
		return P8V_ERR_ALLOC;
	r = store_audit_append(txn, ev, NULL);
	json_decref(ev);
	return r;
}

/* The child: write until killed. Never returns. */
static void
writer(const char *dir, unsigned first, int fd)
{
	struct master_keyring *ring = tsu_ring(mk_seed, 1);
	struct store_options o = { .initial_map_bytes = 64 << 10 };
	struct store *s = NULL;
	struct key_record rec;
	struct write_args w = { .rec = &rec };
	uint8_t payload[TSU_PAYLOAD_BYTES];
	unsigned n;

	if (store_open(dir, &o, &s) != 0 || tsu_keys_check(s, ring) != 0)
		_exit(2);
	for (n = first; n < first + CRASH_STRIDE; n++) {
		tsu_record(&rec, CRASH_APP, n);
		tsu_payload(payload, n);
		if (tsu_seal(&rec, master_keyring_primary(ring), payload,
		    sizeof(payload)) != 0)
			_exit(3);
		w.n = n;
		if (store_write(s, write_txn, &w) != 0)
			_exit(4);
		/* Acknowledged: only now does anyone learn of it. */
		if (write(fd, &n, sizeof(n)) != sizeof(n))
			_exit(5);
		key_record_free(&rec);
	}
	_exit(0);
}

struct acked {
	unsigned *ids;
	size_t n, cap;
};

static void
ack(struct acked *a, unsigned id)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 1024;
		REQUIRE((a->ids = realloc(a->ids, a->cap * sizeof(*a->ids))) != NULL);
	}
	a->ids[a->n++] = id;
}

struct check_args {
	const struct master_keyring *ring;
	const struct acked *acked;
	unsigned missing, unopened, present, bad_open;
	uint64_t events, bad_seq;
	int verify;
};

static int
open_one(const struct key_record *rec, void *arg)
{
	struct check_args *c = arg;
	uint8_t payload[TSU_PAYLOAD_BYTES];
	unsigned n = 0;
	size_t i;

	/* The record's number, from its Key ID ("K" + base 36). */
	for (i = 1; i < IDS_APPLE_ID_LEN; i++) {
		char ch = rec->key_id[i];
		n = n * 36 + (unsigned)(ch <= '9' ? ch - '0' : ch - 'A' + 10);
	}
	tsu_payload(payload, n);
	if (tsu_open(rec, c->ring, payload) != 0)
		c->bad_open++;
	c->present++;
	return 0;
}

static int
check_txn(struct store_txn *txn, void *arg)
{
	struct check_args *c = arg;
	struct key_record rec;
	uint8_t payload[TSU_PAYLOAD_BYTES];
	char kid[IDS_APPLE_ID_LEN + 1];
	size_t i;
	int r;

	for (i = 0; i < c->acked->n; i++) {
		tsu_key_id(kid, c->acked->ids[i]);
		if (key_record_get(txn, CRASH_APP, kid, &rec) != 0) {
			c->missing++;
			continue;
		}
		tsu_payload(payload, c->acked->ids[i]);
		if (tsu_open(&rec, c->ring, payload) != 0)
			c->unopened++;
		key_record_free(&rec);
	}
	if ((r = key_record_foreach(txn, open_one, c)) != 0)
		return r;
	c->verify = store_audit_verify(txn, &c->events, &c->bad_seq);
	return 0;
}

int
main(void)
{
	struct master_keyring *ring;
	struct acked acked = { 0 };
	struct check_args c = { 0 };
	struct store *s;
	unsigned seed, round, rounds_with_acks = 0, id;
	const char *env = getenv("P8V_CRASH_SEED");
	char *dir;
	int p[2], st, cleared;
	pid_t pid;

	REQUIRE(secmem_init() == 0);
	seed = env != NULL ? (unsigned)strtoul(env, NULL, 10) :
	    (unsigned)time(NULL) ^ (unsigned)getpid();
	printf("P8V_CRASH_SEED=%u\n", seed);
	srand(seed);
	REQUIRE((dir = tu_mkdtemp("p8v-crash")) != NULL);

	for (round = 0; round < CRASH_ROUNDS; round++) {
		size_t before = acked.n;

		REQUIRE(pipe(p) == 0);
		fflush(NULL);
		REQUIRE((pid = fork()) >= 0);
		if (pid == 0) {
			close(p[0]);
			writer(dir, round * CRASH_STRIDE, p[1]);
		}
		close(p[1]);
		/* Even rounds (the first one included: it creates the
		 * environment) kill only after the first acknowledged write;
		 * odd rounds may kill while the child opens the store. */
		if (round % 2 == 0 &&
		    read(p[0], &id, sizeof(id)) == sizeof(id))
			ack(&acked, id);
		usleep(1 + (useconds_t)(rand() % CRASH_MAX_DELAY_US));
		REQUIRE(kill(pid, SIGKILL) == 0);
		REQUIRE(waitpid(pid, &st, 0) == pid);
		/* Killed, not failed on its own. */
		CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
		    "round %u: child status %d", round, st);
		/* Everything it acknowledged before dying is in the pipe. */
		while (read(p[0], &id, sizeof(id)) == sizeof(id))
			ack(&acked, id);
		close(p[0]);
		if (acked.n > before)
			rounds_with_acks++;
	}
	printf("%zu acknowledged writes in %u rounds (%u with writes)\n",
	    acked.n, CRASH_ROUNDS, rounds_with_acks);
	CHECK(rounds_with_acks >= CRASH_ROUNDS / 2);

	/* Only now does the parent open the store. */
	ring = tsu_ring(mk_seed, 1);
	s = tsu_store(dir, 0);
	CHECK_OK(store_maintain(s, &cleared));
	CHECK_OK(tsu_keys_check(s, ring));
	c.ring = ring;
	c.acked = &acked;
	CHECK_OK(store_read(s, check_txn, &c));
	CHECK_INT(c.missing, 0);
	CHECK_INT(c.unopened, 0);
	CHECK_INT(c.bad_open, 0);
	CHECK(c.present >= acked.n);
	/* At most one unacknowledged commit per round (killed between the
	 * commit and the pipe write). */
	CHECK(c.present <= acked.n + CRASH_ROUNDS);
	CHECK_OK(c.verify);
	CHECK_INT(c.events, c.present);
	printf("%u records present, all open; audit chain of %llu events "
	    "intact\n", c.present, (unsigned long long)c.events);
	store_close(s);
	master_keyring_destroy(ring);
	free(acked.ids);
	tu_rmtree(dir);
	free(dir);
	return check_finish();
}
