/*
 * test_keeper_pipe.c: a keeper pipe (keeper/keeper.h) against a keeper
 * process that answers what the real one never does (tests/fake_keeper.c,
 * path in P8V_FAKE_KEEPER). Each answer of a batch goes to its own call,
 * in order; a batch answered with fewer answers, or with a datagram whose
 * framing is broken, answers every call in flight keeper_unavailable and
 * takes that keeper for dead; so does a synchronous call's answer that
 * says another follows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "keeper/keeper.h"
#include "tests/check.h"

#define CALLS 3

struct result {
	int done;
	int r;
	char token[32];
};

static void
done(void *arg, int r, struct keeper_token *tok, enum keeper_step step)
{
	struct result *res = arg;

	(void)step;
	res->done++;
	res->r = r;
	if (r == 0 && tok != NULL && tok->token != NULL)
		snprintf(res->token, sizeof(res->token), "%s", tok->token);
}

/* What the fake keeper is asked to sign: it reads none of it. */
static const uint8_t aad[] = "aad", env[] = "env";
static const struct keeper_record rec = { aad, sizeof(aad), env,
    sizeof(env) };
static const struct keeper_profile prof = {
	.kind = KEEPER_PROFILE_MUSICKIT, .expires_in = 600
};

/* The fake keeper, started as p8vaultd starts p8vault-keeper, in mode. */
static struct keeper *
start_fake(const char *mode)
{
	static const char *files[] = { "/nonexistent/master.key" };
	struct keeper_process_options o;
	struct keeper *k = NULL;

	REQUIRE(setenv("FAKE_KEEPER_MODE", mode, 1) == 0);
	memset(&o, 0, sizeof(o));
	o.program = getenv("P8V_FAKE_KEEPER");
	REQUIRE(o.program != NULL);
	o.key_files = files;
	o.n_key_files = 1;
	o.channels = 1;
	REQUIRE(keeper_start(&o, &k, NULL) == 0);
	return k;
}

/* Queue n signatures on a pipe to the fake keeper in mode, send them as
 * one batch and wait for their answers into res. Returns whether the
 * keeper is still taken for ready afterwards. */
static int
run(const char *mode, size_t n, struct result *res)
{
	struct keeper *k = start_fake(mode);
	struct keeper_pipe *pp;
	size_t i;
	int ready;

	memset(res, 0, n * sizeof(*res));
	REQUIRE(keeper_pipe_open(k, &pp) == 0);
	for (i = 0; i < n; i++)
		CHECK_INT(keeper_pipe_sign_profile(pp, &rec, &prof, done,
		    &res[i]), 0);
	CHECK_INT(keeper_pipe_flush(pp), 0);
	/* One wait reads one answer datagram; a few more would only show a
	 * call left waiting. */
	for (i = 0; i < 4 && keeper_pipe_pending(pp) > 0; i++)
		keeper_pipe_wait(pp);
	CHECKF(keeper_pipe_pending(pp) == 0, "%s: %zu calls left waiting",
	    mode, keeper_pipe_pending(pp));
	keeper_pipe_close(pp);
	ready = keeper_ready(k);
	keeper_destroy(k);
	return ready;
}

int
main(void)
{
	static const char *const bad[] = { "short", "broken" };
	struct result res[CALLS];
	char want[32];
	size_t i, m;

	log_set_level(LOG_LEVEL_ERROR);

	/* The fake is shown to work: each call gets its own answer. */
	CHECK(run("echo", CALLS, res));
	for (i = 0; i < CALLS; i++) {
		snprintf(want, sizeof(want), "tok.%zu", i);
		CHECKF(res[i].done == 1 && res[i].r == 0 &&
		    strcmp(res[i].token, want) == 0,
		    "echo: call %zu answered %d times, result %d, token %s",
		    i, res[i].done, res[i].r, res[i].token);
	}
	CHECK(run("echo", 1, res));
	CHECK(res[0].done == 1 && res[0].r == 0 &&
	    strcmp(res[0].token, "tok.0") == 0);

	/* One answer short, or the framing broken: no call gets another's
	 * answer, every one is answered keeper_unavailable, once. */
	for (m = 0; m < sizeof(bad) / sizeof(bad[0]); m++) {
		CHECKF(!run(bad[m], CALLS, res), "%s: still ready", bad[m]);
		for (i = 0; i < CALLS; i++)
			CHECKF(res[i].done == 1 &&
			    res[i].r == P8V_ERR_KEEPER_UNAVAILABLE,
			    "%s: call %zu answered %d times, result %d",
			    bad[m], i, res[i].done, res[i].r);
	}
	/* A synchronous call whose answer carries the batch flag. */
	{
		struct keeper *k = start_fake("broken");
		struct keeper_token t;

		CHECK_INT(keeper_sign_profile(k, &rec, &prof, &t, NULL),
		    P8V_ERR_KEEPER_UNAVAILABLE);
		CHECK(!keeper_ready(k));
		keeper_token_finish(&t);
		keeper_destroy(k);
	}
	return check_finish();
}
