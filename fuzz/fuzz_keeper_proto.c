/*
 * fuzz_keeper_proto.c: a request as the keeper process reads it from a
 * front process it does not trust (keeper/serve.h, keeper/proto.h): any
 * bytes, against a keeper holding a master key.
 *
 * Properties beyond "no memory error, no leak":
 *   - every input gets one answer datagram, framed as proto.h says: one
 *     answer per message of a batch, in order, or one answer in all
 *     when the input's framing is broken (kproto_split);
 *   - every answer opens (kproto_open) and its type is its request's
 *     answer type, or the answer to a request that was not understood
 *     (in a batch, anything but a signature request of at most a slot);
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

/* The answer a (alen bytes) to the request q (qlen bytes). */
static void
check_answer(const uint8_t *q, size_t qlen, const uint8_t *a, size_t alen,
    int in_batch)
{
	struct kcur c, req;
	enum keeper_step step;
	unsigned int type, rtype;
	int r, known;

	FUZZ_CHECK(kproto_open(a, alen, &type, &c) == 0);
	FUZZ_CHECK((type & KPROTO_ANSWER) != 0);
	known = q != NULL && kproto_open(q, qlen, &rtype, &req) == 0 &&
	    (rtype & KPROTO_ANSWER) == 0 && rtype != KP_HELLO &&
	    (!in_batch || (rtype == KP_SIGN_PROFILE &&
	    qlen <= KPROTO_SLOT_BYTES));
	FUZZ_CHECK(type == (known ? (rtype | KPROTO_ANSWER) : KPROTO_ANSWER));
	r = kcur_result(&c, &step);
	FUZZ_CHECK(r != P8V_ERR_INTERNAL);
	if (!known)
		FUZZ_CHECK(r == P8V_ERR_BAD_REQUEST);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kbuf ans = { .p = answer, .cap = KPROTO_MSG_MAX };
	size_t qoff[KPROTO_BATCH_MAX], qlen[KPROTO_BATCH_MAX];
	size_t aoff[KPROTO_BATCH_MAX], alen[KPROTO_BATCH_MAX], n, m, i;

	kserve_datagram(server, data, size, &ans);
	FUZZ_CHECK(ans.err == 0);
	n = kproto_split(data, size, KPROTO_BATCH_MAX, qoff, qlen);
	m = kproto_split(ans.p, ans.len, KPROTO_BATCH_MAX, aoff, alen);
	FUZZ_CHECK(m == (n == 0 ? 1 : n));
	if (n <= 1) {
		FUZZ_CHECK(ans.p[2] == 0);
		check_answer(n == 1 ? data : NULL, size, ans.p, ans.len, 0);
		return 0;
	}
	for (i = 0; i < n; i++)
		check_answer(data + qoff[i], qlen[i], ans.p + aoff[i],
		    alen[i], 1);
	return 0;
}
