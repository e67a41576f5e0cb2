/*
 * fake_keeper.c: a stand-in for p8vault-keeper that tests start in its
 * place (keeper_process_options.program), to see what the front does with
 * answers the real keeper never sends. Started as the keeper is
 * (--channels N, the channels as descriptors 3 ...; other arguments are
 * ignored), it says hello with one made-up key on channel 0 and answers
 * every request datagram on its channels as FAKE_KEEPER_MODE says:
 *
 *   echo    each message of the datagram (keeper/proto.h's batch) gets a
 *           signature answer whose token is "tok.<i>", i its place;
 *   short   the same, one answer fewer when the batch has two or more;
 *   broken  one datagram whose framing is broken (a flag on its last
 *           message); for a lone request, its answer so flagged.
 *
 * It holds no key and checks nothing: a test program, never installed.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "keeper/proto.h"

#define CHANNELS_MAX 16

static int
answer(uint8_t *out, size_t cap, size_t i, int more)
{
	char tok[32];
	struct kbuf b = { .p = out, .cap = cap };

	snprintf(tok, sizeof(tok), "tok.%zu", i);
	kbuf_answer(&b, KP_SIGN_PROFILE, 0, KEEPER_STEP_NONE);
	kbuf_bytes(&b, tok, strlen(tok));
	kbuf_str(&b, "ABC1234567");
	kbuf_str(&b, "DEF1234567");
	kbuf_u64(&b, 1);
	kbuf_u64(&b, 2);
	if (kbuf_end(&b) != 0)
		exit(1);
	if (more)
		out[2] = KPROTO_F_MORE;
	return (int)b.len;
}

int
main(int argc, char **argv)
{
	static uint8_t req[KPROTO_MSG_MAX + 1], ans[KPROTO_MSG_MAX];
	size_t off[KPROTO_BATCH_MAX], len[KPROTO_BATCH_MAX], n, give, i, at;
	struct pollfd pfd[CHANNELS_MAX];
	struct keeper_status st;
	const char *mode = getenv("FAKE_KEEPER_MODE");
	struct kbuf b = { .p = ans, .cap = sizeof(ans) };
	int channels = 1, k;
	ssize_t got;

	for (k = 1; k + 1 < argc; k++)
		if (strcmp(argv[k], "--channels") == 0)
			channels = atoi(argv[k + 1]);
	if (mode == NULL || channels < 1 || channels > CHANNELS_MAX)
		return 2;
	memset(&st, 0, sizeof(st));
	st.n = 1;
	memset(st.keys[0].id, 0xa5, sizeof(st.keys[0].id));
	kbuf_answer(&b, KP_HELLO, 0, KEEPER_STEP_NONE);
	kbuf_u32(&b, 0);
	kbuf_status(&b, &st);
	if (kbuf_end(&b) != 0 || send(3, b.p, b.len, MSG_NOSIGNAL) < 0)
		return 1;
	for (k = 0; k < channels; k++) {
		pfd[k].fd = 3 + k;
		pfd[k].events = POLLIN;
	}
	for (;;) {
		if (poll(pfd, (nfds_t)channels, -1) < 0)
			return 1;
		for (k = 0; k < channels; k++) {
			if (pfd[k].revents == 0)
				continue;
			if ((got = recv(pfd[k].fd, req, sizeof(req), 0)) <= 0)
				return 0;       /* the front is gone */
			n = kproto_split(req, (size_t)got, KPROTO_BATCH_MAX,
			    off, len);
			give = strcmp(mode, "short") == 0 && n > 1 ? n - 1 : n;
			for (i = 0, at = 0; i < give; i++)
				at += (size_t)answer(ans + at, sizeof(ans) - at,
				    i, i + 1 < give ||
				    strcmp(mode, "broken") == 0);
			(void)send(pfd[k].fd, ans, at, MSG_NOSIGNAL);
		}
	}
}
