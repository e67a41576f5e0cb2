/*
 * fuzz_keeper_proto.c: a request as the keeper process reads it from a
 * front process it does not trust (keeper/serve.h, keeper/proto.h): any
 * bytes, against a keeper holding a master key.
 *
 * Properties beyond "no memory error, no leak":
 *   - every input gets one well-formed answer: its header opens
 *     (kproto_open) and its type is the request's answer type, or the
 *     answer to a request that was not understood;
 *   - its result is 0 or a code the front knows (kcur_result never maps
 *     it to internal_error), and an unknown or malformed request is
 *     bad_request.
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "fuzz/fuzz.h"
#include "keeper/keeper.h"
#include "keeper/keeper_test.h"
#include "keeper/proto.h"
#include "keeper/serve.h"

static struct keeper *keeper;
static struct kserve *server;
static uint8_t *answer;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const uint8_t raw[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

	(void)argc;
	(void)argv;
	if (keeper_create(&keeper) != 0 ||
	    keeper_test_add_raw(keeper, raw, sizeof(raw), NULL) != 0 ||
	    kserve_create(keeper, &server) != 0 ||
	    (answer = malloc(KPROTO_MSG_MAX)) == NULL)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kbuf ans = { .p = answer, .cap = KPROTO_MSG_MAX };
	struct kcur c, req;
	enum keeper_step step;
	unsigned int type, rtype;
	int r, known;

	kserve_handle(server, data, size, &ans);
	FUZZ_CHECK(ans.err == 0);
	FUZZ_CHECK(kproto_open(ans.p, ans.len, &type, &c) == 0);
	FUZZ_CHECK((type & KPROTO_ANSWER) != 0);
	known = kproto_open(data, size, &rtype, &req) == 0 &&
	    (rtype & KPROTO_ANSWER) == 0 && rtype != KP_HELLO;
	FUZZ_CHECK(type == (known ? (rtype | KPROTO_ANSWER) : KPROTO_ANSWER));
	r = kcur_result(&c, &step);
	FUZZ_CHECK(r != P8V_ERR_INTERNAL);
	if (!known)
		FUZZ_CHECK(r == P8V_ERR_BAD_REQUEST);
	return 0;
}
