/*
 * lmdb_commit.c: LMDB's durable commit rate on this disk. One writer
 * commits transactions of one fresh record each, with LMDB's default
 * synchronous commits (an fdatasync per commit, as p8vault's store), for
 * a fixed time, and prints commits per second and the p50/p99 latency of
 * a commit. Uploads through the portal API (one write transaction each:
 * record, audit event) are measured against it.
 *
 *   lmdb_commit DIR [SECONDS] [VALUE_BYTES]
 *
 * DIR is created (0700) if missing and must be on the filesystem to
 * compare with (bench/run.sh uses a folder next to p8vaultd's state
 * directory); its data.mdb and lock.mdb are removed at the end.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

/* Enough map for any run: commits of ~1 KiB for a minute fit many times. */
#define MAP_BYTES ((size_t)1 << 30)
/* About a sealed key record with its metadata and an audit event. */
#define VALUE_BYTES_DEFAULT 1200
#define LAT_MAX (1u << 20)

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	MDB_env *env = NULL;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	char key[32], path[4096];
	double seconds = 10, t0, t1, end, *lat;
	size_t vbytes = VALUE_BYTES_DEFAULT, n = 0;
	unsigned char *val;
	int rc;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: lmdb_commit DIR [SECONDS] "
		    "[VALUE_BYTES]\n");
		return 2;
	}
	if (argc > 2)
		seconds = atof(argv[2]);
	if (argc > 3)
		vbytes = (size_t)atol(argv[3]);
	if (mkdir(argv[1], 0700) != 0 && errno != EEXIST) {
		perror(argv[1]);
		return 1;
	}
	if ((val = malloc(vbytes)) == NULL ||
	    (lat = malloc(LAT_MAX * sizeof(*lat))) == NULL)
		return 1;
	memset(val, 0xa5, vbytes);
	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, MAP_BYTES)) != 0 ||
	    (rc = mdb_env_set_maxdbs(env, 4)) != 0 ||
	    /* Default sync: no NOSYNC, NOMETASYNC or WRITEMAP flag, as p8vault. */
	    (rc = mdb_env_open(env, argv[1], MDB_NOTLS, 0600)) != 0) {
		fprintf(stderr, "lmdb_commit: %s\n", mdb_strerror(rc));
		return 1;
	}
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, "bench", MDB_CREATE, &dbi)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0) {
		fprintf(stderr, "lmdb_commit: %s\n", mdb_strerror(rc));
		return 1;
	}
	end = now_s() + seconds;
	do {
		t0 = now_s();
		k.mv_size = (size_t)snprintf(key, sizeof(key), "com.bench.%09zu",
		    n);
		k.mv_data = key;
		v.mv_size = vbytes;
		v.mv_data = val;
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
		    (rc = mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE)) != 0 ||
		    (rc = mdb_txn_commit(txn)) != 0) {
			fprintf(stderr, "lmdb_commit: %s\n", mdb_strerror(rc));
			return 1;
		}
		t1 = now_s();
		if (n < LAT_MAX)
			lat[n] = t1 - t0;
		n++;
	} while (t1 < end);
	t1 = now_s();
	mdb_env_close(env);
	qsort(lat, n < LAT_MAX ? n : LAT_MAX, sizeof(*lat), cmp_double);
	printf("commits %zu seconds %.3f commits_per_s %.1f p50_ms %.3f "
	    "p99_ms %.3f value_bytes %zu\n", n, t1 - (end - seconds),
	    (double)n / (t1 - (end - seconds)),
	    lat[(n < LAT_MAX ? n : LAT_MAX) / 2] * 1e3,
	    lat[(size_t)((double)(n < LAT_MAX ? n : LAT_MAX) * 0.99)] * 1e3,
	    vbytes);
	snprintf(path, sizeof(path), "%s/data.mdb", argv[1]);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", argv[1]);
	unlink(path);
	free(val);
	free(lat);
	return 0;
}
