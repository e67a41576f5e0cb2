/*
 * main.c: p8vault-keeper, the process that holds the master keys and
 * every plaintext key (see keeper/keeper.h, "the keeper as its own
 * process"). Started only by p8vaultd and p8vault (keeper/client.c):
 *
 *   p8vault-keeper --channels N [--log-level L] [--generate FILE]
 *                  (--master-key-file FILE)... | --credential
 *
 * with the N channels as descriptors 3 .. 3 + N - 1 (SOCK_SEQPACKET).
 * In order:
 *   1. no core dumps, not dumpable, before anything is read;
 *   2. create the --generate file if asked (p8vault init, master rotate);
 *   3. load the master keys (files in order, or the systemd credential);
 *   4. warm the libraries up (OpenSSL's providers and random generator,
 *      jansson's hash seed), so that nothing needs a file later;
 *   5. say hello on channel 0: the keys' ids and check values, or the
 *      error and the file that caused it (then exit 1);
 *   6. the sandbox (keeper/sandbox.h), one thread per channel, the
 *      system-call filter;
 *   7. serve: one request datagram, one answer datagram, per channel
 *      (keeper/serve.h; a datagram may be a batch, keeper/proto.h).
 * SIGTERM, SIGINT and SIGHUP are ignored: they are meant for the front,
 * which may still need the keeper while it drains. When any channel
 * reaches its end (the front closed it or died), the keeper exits at once: its memory goes back to the kernel, and no core
 * file can hold it.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/envelope.h"
#include "crypto/jwt.h"
#include "crypto/secmem.h"
#include "keeper/keeper_internal.h"
#include "keeper/proto.h"
#include "keeper/sandbox.h"
#include "keeper/serve.h"

#define EXIT_USAGE 2
/* Channel threads need little stack: keep what mlockall locks small. */
#define CHANNEL_STACK_BYTES (512 * 1024)
/* A seal request's .p8 (at most 4 KiB) and its fields fit in the first
 * 16 KiB of a request. */
#define REQ_LOCKED_BYTES (16 * 1024)
_Static_assert(KPROTO_HEADER_BYTES + 4 + P8_MAX_INPUT_BYTES <= REQ_LOCKED_BYTES,
    "a seal request's .p8 lies in the locked start of a channel's buffer");

/*
 * getpid for the libraries the keeper loads: this definition comes before
 * libc's in the dynamic linker's search, so that their calls land here.
 * OpenSSL's random generator asks for the process id on every draw (its
 * fork check), a system call per signature at about 1.1 us on the guests
 * we measure (docs/benchmarks.md). The keeper never forks (its sandbox
 * kills a fork, and nothing before it forks), so the id read once stays
 * true for the life of the process.
 */
static pid_t own_pid;

pid_t
getpid(void)
{
	pid_t p = __atomic_load_n(&own_pid, __ATOMIC_RELAXED);

	if (p == 0) {
		p = (pid_t)syscall(SYS_getpid);
		__atomic_store_n(&own_pid, p, __ATOMIC_RELAXED);
	}
	return p;
}

static struct kserve *server;
/* Channel threads meet the main thread twice: once started (their own
 * start-up system calls are done), once the filter is on. */
static pthread_barrier_t started, start_line;

static void
usage(void)
{
	fprintf(stderr, "usage: %s --channels N [--log-level L] "
	    "[--generate FILE] "
	    "(--master-key-file FILE ... | --credential)\n"
	    "(started by p8vaultd and p8vault; not for use by hand)\n",
	    KEEPER_PROGRAM);
	exit(EXIT_USAGE);
}

/* Send the hello on fd: the result, the file it concerns, the keys. */
static void
hello(int fd, struct keeper *k, int result, uint32_t bad_file)
{
	uint8_t buf[1024];
	struct kbuf b = { .p = buf, .cap = sizeof(buf) };
	struct keeper_status st;

	if (result == 0 && (result = keeper_status(k, &st)) == 0 && st.n == 0)
		result = P8V_ERR_NO_MASTER_KEY;
	kbuf_answer(&b, KP_HELLO, result, KEEPER_STEP_NONE);
	kbuf_u32(&b, bad_file);
	if (result == 0)
		kbuf_status(&b, &st);
	if (kbuf_end(&b) == 0)
		(void)send(fd, b.p, b.len, MSG_NOSIGNAL);
}

/* Every library the keeper uses does its first-use work now, while it may
 * still open files: a signature, a seal and an open. */
static int
warm_up(struct keeper *k)
{
	static const uint8_t one[P8_SCALAR_BYTES] = { [P8_SCALAR_BYTES - 1] = 1 };
	struct keeper_ring *ring;
	const struct master_key *mk;
	json_t *h = NULL, *c = NULL;
	char *tok = NULL;
	uint8_t *env = NULL, *pt = NULL;
	size_t env_len = 0, pt_len = 0;
	int r = P8V_ERR_ALLOC;

	if ((h = json_pack("{s:s}", "alg", "ES256")) == NULL ||
	    (c = json_pack("{s:i}", "iat", 0)) == NULL)
		goto out;
	if ((r = jwt_sign_es256_scalar(one, h, c, &tok)) != 0)
		goto out;
	ring = keeper_ring_get(k);
	r = P8V_ERR_NO_MASTER_KEY;
	if ((mk = master_keyring_primary(ring->keys)) != NULL &&
	    (r = envelope_seal(mk, (const uint8_t *)"warm", 4, one,
	    sizeof(one), &env, &env_len)) == 0)
		r = envelope_open(ring->keys, (const uint8_t *)"warm", 4, env,
		    env_len, &pt, &pt_len);
	keeper_ring_put(k, ring);
 out:
	secmem_free(pt);
	free(env);
	free(tok);
	json_decref(h);
	json_decref(c);
	return r;
}

/* recv's 0 is the end of the channel, or an empty datagram. */
static int
peer_gone(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLRDHUP };

	int n = poll(&pfd, 1, 0);

	return n < 0 || (n == 1 &&
	    (pfd.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0);
}

static void *
serve_channel(void *arg)
{
	int fd = (int)(intptr_t)arg, cpu;
	uint8_t *req, *abuf;
	struct kbuf ans;
	cpu_set_t one;
	ssize_t n, sent;

	/* On its channel's CPU (proto.h), before the seccomp filter; one
	 * that cannot be pinned serves from anywhere. */
	if ((cpu = kproto_channel_cpu((size_t)(fd - 3))) >= 0) {
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one) != 0)
			log_debugf("keeper", "pinning channel %d to CPU %d: "
			    "%s", fd - 3, cpu, strerror(errno));
	}

	/* Requests carry uploaded .p8 files, at their start: the request
	 * buffer's first REQ_LOCKED_BYTES are locked (mlock; the guarded
	 * allocator's budget is for the keys, and the buffer is as large as
	 * the largest message, mostly AADs and envelopes), and what a
	 * request used is wiped after it. A .p8 is sealed by a call of its
	 * own (a batch holds only signatures, proto.h). Answers carry
	 * envelopes and tokens, and are wiped once sent. One byte more than
	 * the largest datagram: a longer one is cut, and then refused as
	 * malformed. */
	req = calloc(1, KPROTO_MSG_MAX + 1);
	abuf = malloc(KPROTO_MSG_MAX);
	if (req != NULL && mlock(req, REQ_LOCKED_BYTES) != 0)
		log_debugf("keeper", "mlock of a channel buffer: %s",
		    strerror(errno));
	pthread_barrier_wait(&started);
	pthread_barrier_wait(&start_line);
	if (req == NULL || abuf == NULL) {
		log_errorf("keeper", "no memory for a channel");
		_exit(1);
	}
	for (;;) {
		do {
			n = recv(fd, req, KPROTO_MSG_MAX + 1, 0);
		} while (n < 0 && errno == EINTR);
		if (n < 0 || (n == 0 && peer_gone(fd)))
			_exit(0);       /* the front is gone */
		ans.p = abuf;
		ans.cap = KPROTO_MSG_MAX;
		kserve_datagram(server, req, (size_t)n, &ans);
		secmem_wipe(req, (size_t)n);
		do {
			sent = send(fd, ans.p, ans.len, MSG_NOSIGNAL);
		} while (sent < 0 && errno == EINTR);
		secmem_wipe(abuf, ans.len);
		if (sent != (ssize_t)ans.len)
			_exit(0);
	}
	return NULL;
}

/* Say why in the hello, wipe the keys, exit 1 (before any thread). */
static int
fail(struct keeper *k, int r, uint32_t bad_file)
{
	hello(3, k, r, bad_file);
	kserve_destroy(server);
	keeper_destroy(k);
	return 1;
}

int
main(int argc, char **argv)
{
	struct rlimit nocore = { 0, 0 };
	const char *files[KEEPER_KEYS_MAX], *generate = NULL;
	struct keeper *k = NULL;
	struct stat st;
	pthread_attr_t attr;
	pthread_t tid;
	size_t n_files = 0, i;
	unsigned long channels = 0;
	long level;
	int credential = 0, r, fd;
	char *end;

	(void)setrlimit(RLIMIT_CORE, &nocore);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	/* A stop (systemd's SIGTERM to the whole unit, ^C to the process
	 * group) is the front's to handle: it drains its requests, which
	 * may need keys, then closes the channels, and the keeper exits. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	for (i = 1; i < (size_t)argc; i++) {
		if (strcmp(argv[i], "--channels") == 0 && i + 1 < (size_t)argc) {
			errno = 0;
			channels = strtoul(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || channels == 0 ||
			    channels > KEEPER_CHANNELS_MAX)
				usage();
		} else if (strcmp(argv[i], "--log-level") == 0 &&
		    i + 1 < (size_t)argc) {
			level = strtol(argv[++i], &end, 10);
			if (*end != '\0' || level < LOG_LEVEL_DEBUG ||
			    level > LOG_LEVEL_ERROR + 1)
				usage();
			log_set_level((enum log_level)level);
		} else if (strcmp(argv[i], "--master-key-file") == 0 &&
		    i + 1 < (size_t)argc && n_files < KEEPER_KEYS_MAX)
			files[n_files++] = argv[++i];
		else if (strcmp(argv[i], "--generate") == 0 &&
		    i + 1 < (size_t)argc)
			generate = argv[++i];
		else if (strcmp(argv[i], "--credential") == 0)
			credential = 1;
		else
			usage();
	}
	if (channels == 0 || (n_files == 0) == (credential == 0))
		usage();
	for (i = 0; i < channels; i++) {
		fd = 3 + (int)i;
		if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "%s: descriptor %d is not a channel\n",
			    KEEPER_PROGRAM, fd);
			return EXIT_USAGE;
		}
	}

	if ((r = keeper_create(&k)) != 0)
		return fail(NULL, r, UINT32_MAX);
	if (generate != NULL && (r = master_key_generate_file(generate)) != 0)
		return fail(k, r, (uint32_t)n_files);
	for (i = 0; i < n_files; i++)
		if ((r = keeper_load_file(k, files[i], NULL)) != 0)
			return fail(k, r, (uint32_t)i);
	if (credential && (r = keeper_load_credential(k, NULL)) != 0)
		return fail(k, r, UINT32_MAX);
	if ((r = warm_up(k)) != 0 || (r = kserve_create(k, &server)) != 0)
		return fail(k, r, UINT32_MAX);
	if ((r = sandbox_enter(channels)) != 0)
		return fail(k, r, UINT32_MAX);
	if (pthread_barrier_init(&started, NULL,
	    (unsigned int)channels + 1) != 0 ||
	    pthread_barrier_init(&start_line, NULL,
	    (unsigned int)channels + 1) != 0 ||
	    pthread_attr_init(&attr) != 0 ||
	    pthread_attr_setstacksize(&attr, CHANNEL_STACK_BYTES) != 0 ||
	    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0) {
		log_errorf("keeper", "preparing the channel threads failed");
		return fail(k, P8V_ERR_INTERNAL, UINT32_MAX);
	}
	for (i = 0; i < channels; i++)
		if ((r = pthread_create(&tid, &attr, serve_channel,
		    (void *)(intptr_t)(3 + (int)i))) != 0) {
			log_errorf("keeper", "pthread_create: %s", strerror(r));
			hello(3, k, P8V_ERR_INTERNAL, UINT32_MAX);
			_exit(1);       /* threads run: no clean-up */
		}
	pthread_barrier_wait(&started);
	if ((r = sandbox_lock()) != 0) {
		hello(3, k, r, UINT32_MAX);
		_exit(1);
	}
	/* Ready: the front may send requests from now on. */
	hello(3, k, 0, UINT32_MAX);
	pthread_barrier_wait(&start_line);
	for (;;)
		pause();
}
