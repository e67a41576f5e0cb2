/*
 * keeper_channel: what a call through the keeper process costs, next to
 * the same call on a keeper in this process (docs/benchmarks.md).
 *
 *   keeper_channel --key FILE.p8 [--calls N] [--threads T] [--batch B]
 *
 * Makes a master key in a temporary directory, seals FILE.p8 once, then
 * times N calls of each kind, on one keeper in this process (keeper_create)
 * and on one p8vault-keeper (keeper_start, T channels), T threads at once:
 *   status   the smallest round trip (no key touched);
 *   musickit keeper_sign_profile: a fresh ES256 signature, one call at a
 *            time;
 *   pipe/B   the same signature through a keeper pipe (keeper.h), B calls
 *            queued and sent as one batch (default 4), as /jwt's loops
 *            do; in process, one call at a time.
 * Prints one line per kind: calls/s in process, calls/s through the
 * process, and the difference per call in microseconds (the channel's
 * cost: two datagrams and two thread wake-ups per call, or per batch).
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
#include "keeper/proto.h"

static struct keeper_record rec;
static struct keeper_profile prof;
static unsigned long calls_each;
static unsigned long batch = 4;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

enum kind { KIND_STATUS, KIND_SIGN, KIND_PIPE, KINDS };

struct job {
	struct keeper *k;
	enum kind kind;
};

static void
pipe_done(void *arg, int result, struct keeper_token *tok,
    enum keeper_step step)
{
	(void)tok;
	(void)step;
	if (result != 0)
		abort();
	(*(unsigned long *)arg)++;
}

/* calls_each signatures through a pipe to k's keeper process, a batch at
 * a time. */
static void
pipe_calls(struct keeper_pipe *pp)
{
	unsigned long done = 0, queued = 0, i;

	while (queued < calls_each) {
		for (i = 0; i < batch && queued < calls_each; i++, queued++)
			if (keeper_pipe_sign_profile(pp, &rec, &prof,
			    pipe_done, &done) != 0)
				abort();
		if (keeper_pipe_flush(pp) != 0)
			abort();
		while (keeper_pipe_pending(pp) > 0)
			keeper_pipe_wait(pp);
	}
	if (done != calls_each)
		abort();
}

static void *
worker(void *arg)
{
	const struct job *j = arg;
	struct keeper_status st;
	struct keeper_token t;
	struct keeper_pipe *pp;
	unsigned long i;
	int r;

	if (j->kind == KIND_PIPE) {
		/* A keeper in this process has no pipe: one call at a
		 * time. */
		if ((r = keeper_pipe_open(j->k, &pp)) == 0) {
			pipe_calls(pp);
			keeper_pipe_close(pp);
			return NULL;
		}
		if (r != P8V_ERR_UNSUPPORTED)
			abort();
	}
	for (i = 0; i < calls_each; i++) {
		if (j->kind != KIND_STATUS) {
			if (keeper_sign_profile(j->k, &rec, &prof, &t,
			    NULL) != 0)
				abort();
			keeper_token_finish(&t);
		} else if (keeper_status(j->k, &st) != 0)
			abort();
	}
	return NULL;
}

static double
rate(struct keeper *k, enum kind kind, unsigned int threads)
{
	struct job j = { k, kind };
	pthread_t tid[64];
	unsigned int i;
	double t0 = now_s();

	for (i = 0; i < threads; i++)
		pthread_create(&tid[i], NULL, worker, &j);
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
		else if (strcmp(argv[i], "--batch") == 0 &&
		    i + 1 < (unsigned int)argc)
			batch = strtoul(argv[++i], NULL, 10);
	}
	if (p8file == NULL || threads == 0 || threads > 64 || calls == 0 ||
	    batch == 0 || batch > KPROTO_BATCH_MAX ||
	    (p8 = read_file(p8file, &p8_len)) == NULL) {
		fprintf(stderr, "usage: keeper_channel --key FILE.p8 "
		    "[--calls N] [--threads T] [--batch B]\n");
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
	for (k = 0; k < KINDS; k++) {
		char name[16];

		(void)rate(local, (enum kind)k, threads);      /* warm-up */
		(void)rate(remote, (enum kind)k, threads);
		in = rate(local, (enum kind)k, threads);
		out = rate(remote, (enum kind)k, threads);
		if (k == KIND_PIPE)
			snprintf(name, sizeof(name), "pipe/%lu", batch);
		else
			snprintf(name, sizeof(name), "%s",
			    k == KIND_SIGN ? "musickit" : "status");
		printf("%-9s %12.0f %14.0f %12.1f\n", name, in, out,
		    (1e6 / out - 1e6 / in) * threads);
	}
	keeper_destroy(remote);
	keeper_destroy(local);
	key_record_free(&kr);
	free(aad);
	unlink(keyfile);
	rmdir(dir);
	return 0;
}
