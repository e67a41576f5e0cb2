/*
 * keeper_channel: what a call through the keeper process costs, next to
 * the same call on a keeper in this process (docs/benchmarks.md).
 *
 *   keeper_channel --key FILE.p8 [--calls N] [--threads T]
 *
 * Makes a master key in a temporary directory, seals FILE.p8 once, then
 * times N calls of each kind, on one keeper in this process (keeper_create)
 * and on one p8vault-keeper (keeper_start, T channels), T threads at once:
 *   status   the smallest round trip (no key touched);
 *   musickit keeper_sign_profile: a fresh ES256 signature, as /jwt does.
 * Prints one line per kind: calls/s in process, calls/s through the
 * process, and the difference per call in microseconds (the channel's
 * cost: two datagrams, two thread wake-ups).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/keyrecord.h"
#include "common/log.h"
#include "crypto/masterkey.h"
#include "keeper/keeper.h"

static struct keeper_record rec;
static struct keeper_profile prof;
static unsigned long calls_each;
static int kind_sign;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *
worker(void *arg)
{
	struct keeper *k = arg;
	struct keeper_status st;
	struct keeper_token t;
	unsigned long i;

	for (i = 0; i < calls_each; i++) {
		if (kind_sign) {
			if (keeper_sign_profile(k, &rec, &prof, &t, NULL) != 0)
				abort();
			keeper_token_finish(&t);
		} else if (keeper_status(k, &st) != 0)
			abort();
	}
	return NULL;
}

static double
rate(struct keeper *k, unsigned int threads)
{
	pthread_t tid[64];
	unsigned int i;
	double t0 = now_s();

	for (i = 0; i < threads; i++)
		pthread_create(&tid[i], NULL, worker, k);
	for (i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	return (double)calls_each * threads / (now_s() - t0);
}

static uint8_t *
read_file(const char *path, size_t *len)
{
	static uint8_t buf[8192];
	FILE *f = fopen(path, "rb");

	if (f == NULL)
		return NULL;
	*len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	return buf;
}

int
main(int argc, char **argv)
{
	char dir[] = "/tmp/p8v-keeper-bench.XXXXXX", keyfile[64];
	const char *files[1], *p8file = NULL;
	struct keeper_process_options o;
	struct key_record kr;
	struct keeper *local = NULL, *remote = NULL;
	uint8_t *p8, *aad = NULL;
	size_t p8_len, aad_len;
	unsigned long calls = 20000;
	unsigned int threads = 1, i;
	double in, out;
	int k;

	for (i = 1; i < (unsigned int)argc; i++) {
		if (strcmp(argv[i], "--key") == 0 && i + 1 < (unsigned int)argc)
			p8file = argv[++i];
		else if (strcmp(argv[i], "--calls") == 0 &&
		    i + 1 < (unsigned int)argc)
			calls = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--threads") == 0 &&
		    i + 1 < (unsigned int)argc)
			threads = (unsigned int)strtoul(argv[++i], NULL, 10);
	}
	if (p8file == NULL || threads == 0 || threads > 64 || calls == 0 ||
	    (p8 = read_file(p8file, &p8_len)) == NULL) {
		fprintf(stderr, "usage: keeper_channel --key FILE.p8 "
		    "[--calls N] [--threads T]\n");
		return 2;
	}
	log_set_level(LOG_LEVEL_WARN);
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(keyfile, sizeof(keyfile), "%s/master.key", dir);
	if (master_key_generate_file(keyfile) != 0 ||
	    keeper_create(&local) != 0 ||
	    keeper_load_file(local, keyfile, NULL) != 0)
		return 1;
	files[0] = keyfile;
	memset(&o, 0, sizeof(o));
	o.key_files = files;
	o.n_key_files = 1;
	o.channels = threads;
	if (keeper_start(&o, &remote, NULL) != 0) {
		fprintf(stderr, "keeper_channel: cannot start p8vault-keeper\n");
		return 1;
	}
	memset(&kr, 0, sizeof(kr));
	snprintf(kr.app, sizeof(kr.app), "bench.app");
	snprintf(kr.key_id, sizeof(kr.key_id), "ABC1234567");
	snprintf(kr.team_id, sizeof(kr.team_id), "DEF1234567");
	kr.environment = KEY_ENV_BOTH;
	kr.services = KEY_SERVICE_MUSICKIT;
	kr.state = KEY_STATE_ACTIVE;
	kr.created_at = kr.updated_at = time(NULL);
	snprintf(kr.created_by, sizeof(kr.created_by), "bench");
	kr.version = 1;
	/* Sealed by the local keeper; the remote one holds the same key. */
	if (keeper_seal(local, p8, p8_len, &kr, NULL) != 0 ||
	    key_record_aad(&kr, &aad, &aad_len) != 0)
		return 1;
	rec.aad = aad;
	rec.aad_len = aad_len;
	rec.env = kr.envelope;
	rec.env_len = kr.envelope_len;
	prof.kind = KEEPER_PROFILE_MUSICKIT;
	prof.expires_in = 3600;
	calls_each = calls / threads;
	printf("%-9s %12s %14s %12s\n", "call", "in process/s",
	    "via keeper/s", "channel us");
	for (k = 0; k < 2; k++) {
		kind_sign = k;
		(void)rate(local, threads);     /* warm-up */
		(void)rate(remote, threads);
		in = rate(local, threads);
		out = rate(remote, threads);
		printf("%-9s %12.0f %14.0f %12.1f\n", k ? "musickit" : "status",
		    in, out, (1e6 / out - 1e6 / in) * threads);
	}
	keeper_destroy(remote);
	keeper_destroy(local);
	key_record_free(&kr);
	free(aad);
	unlink(keyfile);
	rmdir(dir);
	return 0;
}
