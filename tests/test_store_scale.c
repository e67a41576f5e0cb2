/*
 * test_store_scale.c: 100 000 key records, each sealed with its own AAD
 * (its own envelope, data key and nonces: nothing synthetic), stored in
 * batches of SCALE_BATCH per store_write, then every one looked up and
 * decoded (one in SCALE_OPEN_EVERY also opened: each open costs guarded
 * allocations, i.e. system calls), listed per app, and counted. The map starts at its default
 * size and grows on the way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/envelope.h"
#include "crypto/secmem.h"
#include "store/records.h"
#include "tests/check.h"
#include "tests/test_store_util.h"
#include "tests/testutil.h"

#define SCALE_RECORDS 100000
#define SCALE_BATCH 5000
/* 1000 apps of 100 keys: listing one app is a short cursor range. */
#define SCALE_APPS 1000
#define SCALE_PER_APP (SCALE_RECORDS / SCALE_APPS)
/* Open (decrypt) one record in this many on lookup. */
#define SCALE_OPEN_EVERY 10

static void
app_of(char *buf, size_t size, unsigned n)
{
	snprintf(buf, size, "app-%04u", n % SCALE_APPS);
}

struct batch {
	struct key_record *recs;
	size_t n;
};

static int
put_batch(struct store_txn *txn, void *arg)
{
	struct batch *b = arg;
	size_t i;
	int r;

	for (i = 0; i < b->n; i++)
		if ((r = key_record_put(txn, &b->recs[i])) != 0)
			return r;
	return 0;
}

struct lookup {
	const struct master_keyring *ring;
	unsigned first, count;
	unsigned missing, bad, opened;
};

static int
lookup_txn(struct store_txn *txn, void *arg)
{
	struct lookup *l = arg;
	struct key_record rec;
	uint8_t payload[TSU_PAYLOAD_BYTES];
	char app[16], kid[IDS_APPLE_ID_LEN + 1];
	unsigned n;

	for (n = l->first; n < l->first + l->count; n++) {
		app_of(app, sizeof(app), n);
		tsu_key_id(kid, n);
		if (key_record_get(txn, app, kid, &rec) != 0) {
			l->missing++;
			continue;
		}
		tsu_payload(payload, n);
		if (strcmp(rec.key_id, kid) != 0 || strcmp(rec.app, app) != 0 ||
		    rec.envelope_len != ENVELOPE_OVERHEAD + TSU_PAYLOAD_BYTES)
			l->bad++;
		/* Opening costs guarded allocations (system calls): every
		 * SCALE_OPEN_EVERY-th record is opened, all are decoded. */
		else if (n % SCALE_OPEN_EVERY == 0) {
			if (tsu_open(&rec, l->ring, payload) != 0)
				l->bad++;
			l->opened++;
		}
		key_record_free(&rec);
	}
	return 0;
}

static int
count_cb(const struct key_record *rec, void *arg)
{
	(void)rec;
	(*(unsigned *)arg)++;
	return 0;
}

static int
summary_txn(struct store_txn *txn, void *arg)
{
	unsigned *per_app = arg;
	uint64_t total;
	int r;

	if ((r = key_record_count(txn, &total)) != 0)
		return r;
	CHECK_INT(total, SCALE_RECORDS);
	if ((r = key_record_list(txn, "app-0500", count_cb, &per_app[0])) != 0 ||
	    (r = key_record_list(txn, "app-0999", count_cb, &per_app[1])) != 0)
		return r;
	return 0;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(void)
{
	static const unsigned seeds[] = { 21 };
	struct master_keyring *ring;
	struct store_stats st;
	struct batch b;
	struct lookup l;
	struct store *s;
	uint8_t payload[TSU_PAYLOAD_BYTES];
	unsigned first, n, per_app[2] = { 0, 0 };
	char *dir, app[16];
	double t0, t1, t2;
	size_t i;

	REQUIRE(secmem_init() == 0);
	ring = tsu_ring(seeds, 1);
	REQUIRE((dir = tu_mkdtemp("p8v-scale")) != NULL);
	s = tsu_store(dir, 0);
	REQUIRE((b.recs = calloc(SCALE_BATCH, sizeof(*b.recs))) != NULL);

	t0 = now_s();
	for (first = 0; first < SCALE_RECORDS; first += SCALE_BATCH) {
		/* Seal outside the transaction: store_write may run put_batch
		 * more than once (map growth), sealing is not part of it. */
		for (i = 0; i < SCALE_BATCH; i++) {
			n = first + (unsigned)i;
			app_of(app, sizeof(app), n);
			tsu_record(&b.recs[i], app, n);
			tsu_payload(payload, n);
			REQUIRE(tsu_seal(&b.recs[i], master_keyring_primary(ring),
			    payload, sizeof(payload)) == 0);
		}
		b.n = SCALE_BATCH;
		REQUIRE(store_write(s, put_batch, &b) == 0);
		for (i = 0; i < SCALE_BATCH; i++)
			key_record_free(&b.recs[i]);
	}
	t1 = now_s();

	memset(&l, 0, sizeof(l));
	l.ring = ring;
	for (first = 0; first < SCALE_RECORDS; first += SCALE_BATCH) {
		l.first = first;
		l.count = SCALE_BATCH;
		CHECK_OK(store_read(s, lookup_txn, &l));
	}
	t2 = now_s();
	CHECK_INT(l.missing, 0);
	CHECK_INT(l.bad, 0);
	CHECK_INT(l.opened, SCALE_RECORDS / SCALE_OPEN_EVERY);
	CHECK_OK(store_read(s, summary_txn, per_app));
	CHECK_INT(per_app[0], SCALE_PER_APP);
	CHECK_INT(per_app[1], SCALE_PER_APP);
	/* One that is not there. */
	l.first = SCALE_RECORDS;
	l.count = 1;
	l.missing = 0;
	CHECK_OK(store_read(s, lookup_txn, &l));
	CHECK_INT(l.missing, 1);
	CHECK_OK(store_stats(s, &st));
	CHECK(st.map_bytes > STORE_DEFAULT_MAP_BYTES);
	printf("%d records: sealed and stored in %.2f s; each looked up and "
	    "decoded, 1 in %d opened, in %.2f s; %.1f MB used, map %.0f MB\n",
	    SCALE_RECORDS, t1 - t0, SCALE_OPEN_EVERY, t2 - t1,
	    st.used_bytes / 1e6, st.map_bytes / 1e6);

	free(b.recs);
	store_close(s);
	master_keyring_destroy(ring);
	tu_rmtree(dir);
	free(dir);
	return check_finish();
}
