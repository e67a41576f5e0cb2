/*
 * populate.c: fill a state directory with N key records, fast, for the
 * scale benchmarks (token requests, start-up and master-key rotation with
 * a million keys).
 *
 *   populate --state DIR --master-key-file FILE --count N [--keys K]
 *            [--batch B] [--prefix com.bench.p]
 *
 * Record i is app PREFIX<i> (zero-padded to 8 digits) with one active key,
 * Key ID "K" + 9 digits of i, Team ID "T" + 9 digits of i % 1000, sealed
 * under the master key exactly as an upload seals it (key_record_aad,
 * envelope_seal) with one of K real P-256 keys (default 256; the same
 * material under different apps is allowed). Batches of B records (default
 * 10 000) per write transaction: the store's own code (store/records.c),
 * not the upload API, so no audit events are written and no .p8 is parsed
 * per record. The directory must have been made by `p8vault init` with
 * the same master key (the master key's check value is recorded there).
 * Prints progress to stderr and "populated N records in S s" at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/masterkey.h"
#include "crypto/p8.h"
#include "crypto/secmem.h"
#include "store/masterkeys.h"
#include "store/records.h"
#include "store/store.h"

#define POPULATE_KEYS_DEFAULT 256
#define POPULATE_BATCH_DEFAULT 10000
/* Team ids cycle through this many teams. */
#define POPULATE_TEAMS 1000

struct material {
	uint8_t scalar[P8_SCALAR_BYTES];
	uint8_t point[P8_PUBLIC_BYTES];
	char fingerprint[KEY_RECORD_FINGERPRINT_HEX + 1];
};

struct batch {
	struct key_record *recs;
	size_t n;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A fresh P-256 key, taken apart the way an upload takes a .p8 apart. */
static int
make_material(struct material *m)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	struct p8_key *key = NULL;
	BIO *bio = NULL;
	char *pem;
	long len;
	int r = -1;

	if (pk == NULL || (bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL) != 1)
		goto out;
	len = BIO_get_mem_data(bio, &pem);
	if (p8_parse((const uint8_t *)pem, (size_t)len, &key) != 0 ||
	    p8_key_public_point(key, m->point) != 0 ||
	    p8_key_export_scalar(key, m->scalar) != 0 ||
	    p8_public_fingerprint(m->point, m->fingerprint) != 0)
		goto out;
	r = 0;
 out:
	p8_key_destroy(key);
	BIO_free(bio);
	EVP_PKEY_free(pk);
	return r;
}

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

static const struct master_key *
mk_of(const struct master_keyring *ring)
{
	return master_keyring_get(ring, 0);
}

/* store_master_keys_check for the one key (as the vault passes it). */
static int
keys_check(struct store *store, const struct master_key *key)
{
	struct store_master_key_check c;

	memset(&c, 0, sizeof(c));
	memcpy(c.id_hex, master_key_id_hex(key), MASTER_KEY_ID_HEX);
	memcpy(c.check, master_key_check(key), MASTER_KEY_CHECK_BYTES);
	return store_master_keys_check(store, &c, 1);
}

int
main(int argc, char **argv)
{
	const char *state = NULL, *mk_file = NULL, *prefix = "com.bench.p";
	size_t count = 0, nkeys = POPULATE_KEYS_DEFAULT,
	    batch = POPULATE_BATCH_DEFAULT, i, j, done = 0;
	struct master_keyring *ring = NULL;
	struct master_key *mk = NULL;
	struct material *mat = NULL;
	struct store *store = NULL;
	struct batch b = { 0 };
	struct key_record *rec;
	uint8_t *aad;
	size_t aad_len;
	int64_t now = (int64_t)time(NULL);
	double t0 = now_s(), last = t0;
	int a, r, status = 1;

	for (a = 1; a < argc; a++) {
		if (a + 1 >= argc)
			goto usage;
		if (strcmp(argv[a], "--state") == 0)
			state = argv[++a];
		else if (strcmp(argv[a], "--master-key-file") == 0)
			mk_file = argv[++a];
		else if (strcmp(argv[a], "--count") == 0)
			count = strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--keys") == 0)
			nkeys = strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--batch") == 0)
			batch = strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--prefix") == 0)
			prefix = argv[++a];
		else
			goto usage;
	}
	if (state == NULL || mk_file == NULL || nkeys == 0 || batch == 0 ||
	    strlen(prefix) + 8 > IDS_APP_MAX)
		goto usage;
	log_set_level(LOG_LEVEL_WARN);
	if (secmem_init() != 0 || master_keyring_create(&ring) != 0 ||
	    master_key_load_file(mk_file, &mk) != 0 ||
	    master_keyring_add(ring, mk) != 0) {
		fprintf(stderr, "populate: cannot load the master key %s\n",
		    mk_file);
		goto out;
	}
	mk = NULL;
	if ((r = store_open(state, NULL, &store)) != 0 ||
	    (r = keys_check(store, mk_of(ring))) != 0) {
		fprintf(stderr, "populate: %s: %s\n", state, p8v_strerror(r));
		goto out;
	}
	if ((mat = calloc(nkeys, sizeof(*mat))) == NULL ||
	    (b.recs = calloc(batch, sizeof(*b.recs))) == NULL)
		goto out;
	for (i = 0; i < nkeys; i++)
		if (make_material(&mat[i]) != 0) {
			fprintf(stderr, "populate: key generation failed\n");
			goto out;
		}
	while (done < count) {
		b.n = count - done < batch ? count - done : batch;
		for (j = 0; j < b.n; j++) {
			const struct material *m = &mat[(done + j) % nkeys];

			rec = &b.recs[j];
			key_record_free(rec);
			snprintf(rec->app, sizeof(rec->app), "%s%08zu", prefix,
			    done + j);
			snprintf(rec->key_id, sizeof(rec->key_id), "K%09zu",
			    (done + j) % 1000000000);
			snprintf(rec->team_id, sizeof(rec->team_id), "T%09zu",
			    (done + j) % POPULATE_TEAMS);
			snprintf(rec->created_by, sizeof(rec->created_by),
			    "bench");
			rec->environment = KEY_ENV_BOTH;
			rec->services = KEY_SERVICE_ALL;
			rec->state = KEY_STATE_ACTIVE;
			memcpy(rec->fingerprint, m->fingerprint,
			    sizeof(rec->fingerprint));
			memcpy(rec->public_point, m->point, P8_PUBLIC_BYTES);
			rec->created_at = rec->updated_at = now;
			rec->version = 1;
			if ((r = key_record_aad(rec, &aad, &aad_len)) != 0 ||
			    (r = envelope_seal(master_keyring_primary(ring),
			    aad, aad_len, m->scalar, P8_SCALAR_BYTES,
			    &rec->envelope, &rec->envelope_len)) != 0) {
				fprintf(stderr, "populate: sealing: %s\n",
				    p8v_strerror(r));
				goto out;
			}
			free(aad);
		}
		if ((r = store_write(store, put_batch, &b)) != 0) {
			fprintf(stderr, "populate: writing: %s\n",
			    p8v_strerror(r));
			goto out;
		}
		done += b.n;
		if (now_s() - last >= 2 || done == count) {
			last = now_s();
			fprintf(stderr, "populate: %zu/%zu records, %.1f s\n",
			    done, count, last - t0);
		}
	}
	printf("populated %zu records in %.1f s\n", done, now_s() - t0);
	status = 0;
 out:
	for (j = 0; b.recs != NULL && j < batch; j++)
		key_record_free(&b.recs[j]);
	free(b.recs);
	if (mat != NULL)
		secmem_wipe(mat, nkeys * sizeof(*mat));
	free(mat);
	store_close(store);
	master_key_destroy(mk);
	master_keyring_destroy(ring);
	return status;
 usage:
	fprintf(stderr, "usage: populate --state DIR --master-key-file FILE "
	    "--count N [--keys K] [--batch B] [--prefix P]\n");
	return 2;
}
