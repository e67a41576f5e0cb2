/*
 * client.c: the keeper as its own process, seen from the front (p8vaultd,
 * p8vault): starting p8vault-keeper, the channels to it, one call per
 * channel at a time, and starting it again when it dies.
 *
 * A process (struct kproc) has n channels, each a SOCK_SEQPACKET
 * socketpair with its own buffers; a call takes a free channel (waiting
 * while all are busy), sends one request, reads one answer, gives the
 * channel back. The keeper serves each channel on a thread of its own, so
 * n calls run at once. The keeper in use (kremote.cur) is swapped whole:
 * by keeper_replace (SIGHUP: a new process with the new files), or by the
 * supervisor thread when the process dies. A call that is running keeps
 * its process (a reference) until it ends; a process nobody uses any
 * more is closed and reaped by the supervisor, or by keeper_destroy.
 *
 * Failure: an answer that does not come (EOF, a reset, KCLIENT_TIMEOUT_MS
 * without one) or that does not decode marks the process dead (killed if
 * it still runs) and the call fails with P8V_ERR_KEEPER_UNAVAILABLE, as do
 * calls while no keeper runs. With restart on, the supervisor starts a new
 * keeper at once, then after 100 ms, doubling up to 2 s between attempts;
 * a keeper that answers its hello with other master keys than the one it
 * replaces is refused (killed) and the attempts go on.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "crypto/secmem.h"
#include "keeper/keeper_internal.h"
#include "keeper/proto.h"

extern char **environ;

/* How long an answer may take: far above any one operation. */
#define KCLIENT_TIMEOUT_MS 10000
/* How long a new keeper may take to load its keys and say hello. */
#define KCLIENT_HELLO_TIMEOUT_MS 15000
/* How long a keeper whose channels were closed may take to exit. */
#define KCLIENT_EXIT_TIMEOUT_MS 2000
#define KCLIENT_BACKOFF_FIRST_MS 100
#define KCLIENT_BACKOFF_MAX_MS 2000
/* A keeper that ran this long restarts without waiting. */
#define KCLIENT_STABLE_MS 10000

struct kchan {
	int fd;
	int busy;
	int cpu;                /* kproto_channel_cpu, or -1 */
	uint8_t *sbuf;          /* KPROTO_MSG_MAX */
	uint8_t *rbuf;          /* KPROTO_MSG_MAX + 1 */
};

struct kproc {
	struct kproc *next;     /* kremote.procs */
	pid_t pid;
	int pidfd;
	size_t n, n_free;
	struct kchan *ch;
	int dead;               /* no new calls; reaped when refs is 0 */
	int reaped;
	unsigned long refs;
	int64_t started_ms;
	struct keeper_status st;        /* from its hello */
};

struct kremote {
	pthread_mutex_t lock;
	pthread_cond_t cond;    /* a channel came free; cur changed */
	struct kproc *cur;      /* NULL while no keeper runs */
	struct kproc *procs;    /* every process not yet reaped */
	/* What a restart starts (copies). */
	char *program;
	char **files;
	size_t n_files;
	unsigned int channels;
	int restart;
	int stop;
	pthread_t sup;
	int have_sup;
	int wake[2];            /* wakes the supervisor */
	int64_t backoff_ms, next_try_ms;
	struct keeper_status want;      /* the keys a restart must load */
	uint64_t restarts;              /* processes the supervisor started
	                                   after one ended (metrics) */
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
wake(struct kremote *rm)
{
	char c = 1;

	if (rm->wake[1] >= 0)
		(void)!write(rm->wake[1], &c, 1);
}

/* --- the program --- */

static int
is_exec(const char *path)
{
	return access(path, X_OK) == 0;
}

int
keeper_program_path(char *buf, size_t size)
{
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	/* Next to this program, or in the build tree's keeper/ beside its
	 * directory, before the installed one. */
	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			if ((size_t)snprintf(buf, size, "%s/%s", self,
			    KEEPER_PROGRAM) < size && is_exec(buf))
				return 0;
			if ((size_t)snprintf(buf, size, "%s/../keeper/%s", self,
			    KEEPER_PROGRAM) < size && is_exec(buf))
				return 0;
		}
	}
	if ((size_t)snprintf(buf, size, "%s/%s", P8V_LIBEXECDIR,
	    KEEPER_PROGRAM) < size && is_exec(buf))
		return 0;
	return P8V_ERR_NOT_FOUND;
}

/* --- processes --- */

static void
chan_close(struct kchan *ch)
{
	if (ch->fd >= 0)
		close(ch->fd);
	ch->fd = -1;
	if (ch->sbuf != NULL)
		secmem_wipe(ch->sbuf, KPROTO_MSG_MAX);
	free(ch->sbuf);
	free(ch->rbuf);
	ch->sbuf = ch->rbuf = NULL;
}

/* Close p's channels (the keeper exits on EOF), wait for it to exit
 * (killing it if it does not), and free p. */
static void
proc_reap(struct kproc *p)
{
	struct pollfd pfd;
	int status = 0;
	size_t i;

	for (i = 0; i < p->n; i++)
		chan_close(&p->ch[i]);
	if (p->pid > 0) {
		if (p->pidfd >= 0) {
			pfd.fd = p->pidfd;
			pfd.events = POLLIN;
			if (poll(&pfd, 1, KCLIENT_EXIT_TIMEOUT_MS) == 0)
				kill(p->pid, SIGKILL);
		} else
			kill(p->pid, SIGKILL);
		while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(status))
			log_fields(LOG_LEVEL_ERROR, "keeper_exit",
			    json_pack("{s:i, s:i}", "pid", (int)p->pid,
			    "signal", WTERMSIG(status)),
			    "the keeper process %d was killed by signal %d",
			    (int)p->pid, WTERMSIG(status));
		else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			log_fields(LOG_LEVEL_ERROR, "keeper_exit",
			    json_pack("{s:i, s:i}", "pid", (int)p->pid,
			    "status", WEXITSTATUS(status)),
			    "the keeper process %d exited with status %d",
			    (int)p->pid, WEXITSTATUS(status));
	}
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p->ch);
	free(p);
}

/* Wait up to ms for a datagram on fd into buf (KPROTO_MSG_MAX + 1).
 * Returns its length, or -1 (EOF, error, timeout, too long). */
static ssize_t
recv_msg(int fd, uint8_t *buf, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int64_t deadline = now_ms() + ms;
	ssize_t n;
	int left, pr;

	for (;;) {
		left = (int)(deadline - now_ms());
		if (left < 0)
			left = 0;
		pr = poll(&pfd, 1, left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return -1;
		n = recv(fd, buf, KPROTO_MSG_MAX + 1, MSG_TRUNC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || n > KPROTO_MSG_MAX)
			return -1;
		return n;
	}
}

/* An answer on a channel: one blocking recv (the channel's SO_RCVTIMEO
 * bounds it; no poll first, a system call less per call). -1 as
 * recv_msg. */
static ssize_t
recv_answer(int fd, uint8_t *buf)
{
	ssize_t n;

	do {
		n = recv(fd, buf, KPROTO_MSG_MAX + 1, MSG_TRUNC);
	} while (n < 0 && errno == EINTR);
	return n <= 0 || n > KPROTO_MSG_MAX ? -1 : n;
}

static int
send_msg(int fd, const uint8_t *buf, size_t len)
{
	ssize_t n;

	do {
		n = send(fd, buf, len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	return n == (ssize_t)len ? 0 : -1;
}

/* A socketpair for a channel: *front stays here, *child (above the range
 * the child's channels are moved to) goes to the keeper. */
static int
chan_pair(int lowest, int *front, int *child)
{
	struct timeval tv = { KCLIENT_TIMEOUT_MS / 1000, 0 };
	int sv[2], moved, size = KPROTO_MSG_MAX + 4096;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	/* Datagrams as large as the largest message (the kernel doubles
	 * this and caps it at net.core.wmem_max * 2). */
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	/* An answer that does not come within the timeout: the keeper is
	 * taken for dead (call_run). */
	if (setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if ((moved = fcntl(sv[1], F_DUPFD_CLOEXEC, lowest)) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	close(sv[1]);
	*front = sv[0];
	*child = moved;
	return 0;
}

/*
 * Start a keeper with rm's options (and generate, for the first one of a
 * CLI that creates a key file) and read its hello. *bad_file gets the
 * index of the master-key file that failed (SIZE_MAX: none named).
 */
static int
proc_spawn(struct kremote *rm, const char *generate, struct kproc **out,
    size_t *bad_file)
{
	struct kproc *p = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int have_fa = 0, have_attr = 0, child[KEEPER_CHANNELS_MAX];
	char nbuf[16], lbuf[16], **argv = NULL;
	size_t i, argc = 0;
	ssize_t len;
	struct kcur c;
	enum keeper_step step;
	unsigned int type;
	uint32_t bad;
	int r = P8V_ERR_ALLOC;

	*out = NULL;
	*bad_file = SIZE_MAX;
	for (i = 0; i < KEEPER_CHANNELS_MAX; i++)
		child[i] = -1;
	if (rm->program == NULL || rm->channels == 0)
		return P8V_ERR_INVALID_ARGUMENT;
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->ch = calloc(rm->channels, sizeof(*p->ch))) == NULL)
		goto out;
	p->pid = -1;
	p->pidfd = -1;
	p->n = rm->channels;
	for (i = 0; i < p->n; i++) {
		p->ch[i].fd = -1;
		p->ch[i].cpu = kproto_channel_cpu(i);
	}
	r = P8V_ERR_IO;
	for (i = 0; i < p->n; i++) {
		if (chan_pair(3 + (int)p->n, &p->ch[i].fd, &child[i]) != 0)
			goto out;
		r = P8V_ERR_ALLOC;
		if ((p->ch[i].sbuf = malloc(KPROTO_MSG_MAX)) == NULL ||
		    (p->ch[i].rbuf = malloc(KPROTO_MSG_MAX + 1)) == NULL)
			goto out;
		r = P8V_ERR_IO;
	}
	p->n_free = p->n;

	r = P8V_ERR_ALLOC;
	if ((argv = calloc(10 + 2 * rm->n_files, sizeof(*argv))) == NULL)
		goto out;
	snprintf(nbuf, sizeof(nbuf), "%u", rm->channels);
	argv[argc++] = (char *)KEEPER_PROGRAM;
	argv[argc++] = (char *)"--channels";
	argv[argc++] = nbuf;
	/* It logs as this process does (the CLI: nothing). */
	snprintf(lbuf, sizeof(lbuf), "%d", (int)log_get_level());
	argv[argc++] = (char *)"--log-level";
	argv[argc++] = lbuf;
	if (generate != NULL) {
		argv[argc++] = (char *)"--generate";
		argv[argc++] = (char *)generate;
	}
	for (i = 0; i < rm->n_files; i++) {
		argv[argc++] = (char *)"--master-key-file";
		argv[argc++] = rm->files[i];
	}
	if (rm->n_files == 0)
		argv[argc++] = (char *)"--credential";
	argv[argc] = NULL;

	if (posix_spawn_file_actions_init(&fa) != 0)
		goto out;
	have_fa = 1;
	if (posix_spawnattr_init(&attr) != 0)
		goto out;
	have_attr = 1;
	sigemptyset(&none);
	sigfillset(&all);
	r = P8V_ERR_IO;
	/* Its own signal mask and dispositions, not the daemon's; only the
	 * channels (3, 4, ...) and stderr are passed. */
	if (posix_spawnattr_setsigmask(&attr, &none) != 0 ||
	    posix_spawnattr_setsigdefault(&attr, &all) != 0 ||
	    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF) != 0)
		goto out;
	for (i = 0; i < p->n; i++)
		if (posix_spawn_file_actions_adddup2(&fa, child[i],
		    3 + (int)i) != 0)
			goto out;
	if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY,
	    0) != 0 || posix_spawn_file_actions_adddup2(&fa, 2, 1) != 0 ||
	    posix_spawn_file_actions_addclosefrom_np(&fa,
	    3 + (int)p->n) != 0)
		goto out;
	if ((errno = posix_spawn(&p->pid, rm->program, &fa, &attr, argv,
	    environ)) != 0) {
		log_errorf("keeper_start", "cannot start %s: %s", rm->program,
		    strerror(errno));
		p->pid = -1;
		goto out;
	}
	p->started_ms = now_ms();
	p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
	for (i = 0; i < p->n; i++) {
		close(child[i]);
		child[i] = -1;
	}

	/* Its hello: the keys it loaded, or why not. */
	r = P8V_ERR_KEEPER_UNAVAILABLE;
	if ((len = recv_msg(p->ch[0].fd, p->ch[0].rbuf,
	    KCLIENT_HELLO_TIMEOUT_MS)) < 0 ||
	    kproto_open(p->ch[0].rbuf, (size_t)len, &type, &c) != 0 ||
	    type != (KP_HELLO | KPROTO_ANSWER) || p->ch[0].rbuf[2] != 0)
		goto out;
	r = kcur_result(&c, &step);
	bad = kcur_u32(&c);
	if (r == 0)
		kcur_status(&c, &p->st);
	if (kcur_done(&c) != 0) {
		r = P8V_ERR_KEEPER_UNAVAILABLE;
		goto out;
	}
	if (r != 0) {
		if (bad < rm->n_files + (generate != NULL))
			*bad_file = bad;
		goto out;
	}
	*out = p;
	p = NULL;
	r = 0;
 out:
	for (i = 0; i < KEEPER_CHANNELS_MAX; i++)
		if (child[i] >= 0)
			close(child[i]);
	if (have_fa)
		posix_spawn_file_actions_destroy(&fa);
	if (have_attr)
		posix_spawnattr_destroy(&attr);
	free(argv);
	if (p != NULL)
		proc_reap(p);
	return r;
}

/* Same keys (ids and check values, in any order)? */
static int
same_keys(const struct keeper_status *a, const struct keeper_status *b)
{
	size_t i, j;

	if (a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++) {
		for (j = 0; j < b->n; j++)
			if (memcmp(a->keys[i].id, b->keys[j].id,
			    MASTER_KEY_ID_BYTES) == 0 &&
			    memcmp(a->keys[i].check, b->keys[j].check,
			    MASTER_KEY_CHECK_BYTES) == 0)
				break;
		if (j == b->n)
			return 0;
	}
	return 1;
}

/* --- calls --- */

struct kcall {
	struct kremote *rm;
	struct kproc *p;
	struct kchan *ch;
	struct kbuf b;
	uint8_t *secret;        /* a guarded request buffer (seal) */
	size_t secret_len;
	size_t answer_len;      /* of the answer in the channel's rbuf */
	int broken;
};

/* Take a free channel of the current keeper, waiting while all are busy
 * (a free channel of this CPU's keeper thread first: proto.h), and a
 * reference to its process. 0 or P8V_ERR_KEEPER_UNAVAILABLE. */
static int
chan_take(struct kremote *rm, struct kproc **pp, struct kchan **chp)
{
	struct kproc *p;
	size_t i;
	int cpu;

	pthread_mutex_lock(&rm->lock);
	for (;;) {
		p = rm->cur;
		if (p == NULL || p->dead) {
			pthread_mutex_unlock(&rm->lock);
			return P8V_ERR_KEEPER_UNAVAILABLE;
		}
		if (p->n_free > 0)
			break;
		pthread_cond_wait(&rm->cond, &rm->lock);
	}
	cpu = sched_getcpu();
	for (i = 0; i < p->n; i++)
		if (!p->ch[i].busy && p->ch[i].cpu == cpu)
			break;
	if (i == p->n)
		for (i = 0; i < p->n; i++)
			if (!p->ch[i].busy)
				break;
	p->ch[i].busy = 1;
	p->n_free--;
	p->refs++;
	pthread_mutex_unlock(&rm->lock);
	*pp = p;
	*chp = &p->ch[i];
	return 0;
}

/* Give back a channel chan_take took; broken: its process did not answer
 * (or answered what does not decode) and is taken for dead. */
static void
chan_give(struct kremote *rm, struct kproc *p, struct kchan *ch, int broken)
{
	pthread_mutex_lock(&rm->lock);
	ch->busy = 0;
	p->n_free++;
	p->refs--;
	if (broken && !p->dead) {
		p->dead = 1;
		if (rm->cur == p)
			rm->cur = NULL;
		log_errorf("keeper_lost", "the keeper process %d does not "
		    "answer: requests that need a key get 503 "
		    "keeper_unavailable until a new one runs", (int)p->pid);
		kill(p->pid, SIGKILL);
		wake(rm);
	}
	if (p->dead && p->refs == 0)
		wake(rm);
	pthread_cond_broadcast(&rm->cond);
	pthread_mutex_unlock(&rm->lock);
}

/* Take a channel of the current keeper; c->b writes into its buffer, or
 * into a guarded block of secret bytes when secret > 0. */
static int
call_begin(struct kremote *rm, struct kcall *c, size_t secret)
{
	int r;

	memset(c, 0, sizeof(*c));
	c->rm = rm;
	if (secret > 0) {
		/* A .p8 and its record's fields: a few hundred bytes, from
		 * the locked secure heap (secmem_alloc_short); guarded pages
		 * of their own (an mmap and a munmap with its TLB shootdown
		 * per upload) only for a larger one. */
		if ((c->secret = secmem_alloc_short(secret)) == NULL)
			return P8V_ERR_SECMEM;
		c->secret_len = secret;
	}
	if ((r = chan_take(rm, &c->p, &c->ch)) != 0) {
		secmem_free(c->secret);
		c->secret = NULL;
		c->p = NULL;
		return r;
	}
	c->b.p = c->secret != NULL ? c->secret : c->ch->sbuf;
	c->b.cap = c->secret != NULL ? c->secret_len : KPROTO_MSG_MAX;
	return 0;
}

/*
 * Send the request built in c->b and read the answer of its type into
 * *ans. Returns the keeper's result (its P8V_ERR_* or 0; *step its step)
 * or P8V_ERR_KEEPER_UNAVAILABLE (and c->broken) when no answer came.
 */
static int
call_run(struct kcall *c, unsigned int type, struct kcur *ans,
    enum keeper_step *step)
{
	unsigned int atype;
	ssize_t n;
	int r;

	*step = KEEPER_STEP_NONE;
	if ((r = kbuf_end(&c->b)) != 0)
		return r == P8V_ERR_TOO_LARGE ? P8V_ERR_INVALID_ARGUMENT : r;
	r = send_msg(c->ch->fd, c->b.p, c->b.len);
	/* What was sent (a .p8, a record) is wiped at once. */
	secmem_wipe(c->b.p, c->b.len);
	if (r != 0)
		goto broken;
	if ((n = recv_answer(c->ch->fd, c->ch->rbuf)) > 0)
		c->answer_len = (size_t)n;
	/* One answer, alone in its datagram: no flag (proto.h). */
	if (n < 0 ||
	    kproto_open(c->ch->rbuf, (size_t)n, &atype, ans) != 0 ||
	    atype != (type | KPROTO_ANSWER) || c->ch->rbuf[2] != 0)
		goto broken;
	return kcur_result(ans, step);
 broken:
	c->broken = 1;
	return P8V_ERR_KEEPER_UNAVAILABLE;
}

/* An answer whose fields do not decode: the keeper is not ours to
 * trust any more. */
static int
call_bad_answer(struct kcall *c)
{
	c->broken = 1;
	return P8V_ERR_KEEPER_UNAVAILABLE;
}

static void
call_end(struct kcall *c)
{
	if (c->secret != NULL)
		secmem_free(c->secret);
	c->secret = NULL;
	if (c->p == NULL)
		return;
	/* The answer (a token, an envelope) was copied out by the caller:
	 * no copy stays in the channel's buffer. */
	secmem_wipe(c->ch->rbuf, c->answer_len);
	c->answer_len = 0;
	chan_give(c->rm, c->p, c->ch, c->broken);
	c->p = NULL;
}

/* --- the supervisor --- */

static void
reap_unused(struct kremote *rm)
{
	struct kproc **pp, *p, *gone = NULL;

	pthread_mutex_lock(&rm->lock);
	for (pp = &rm->procs; (p = *pp) != NULL;) {
		if (p->dead && p->refs == 0) {
			*pp = p->next;
			p->next = gone;
			gone = p;
			continue;
		}
		pp = &p->next;
	}
	pthread_mutex_unlock(&rm->lock);
	while ((p = gone) != NULL) {
		gone = p->next;
		proc_reap(p);
	}
}

static void
try_restart(struct kremote *rm)
{
	struct kproc *p = NULL;
	struct keeper_status want;
	size_t bad;
	int r, fix_primary = 0;

	pthread_mutex_lock(&rm->lock);
	want = rm->want;
	pthread_mutex_unlock(&rm->lock);

	r = proc_spawn(rm, NULL, &p, &bad);
	if (r == 0 && want.n > 0 && !same_keys(&want, &p->st)) {
		log_errorf("keeper_start", "the new keeper process loaded other "
		    "master keys than the one it replaces (the files changed?):"
		    " refused; send SIGHUP to load the new files");
		proc_reap(p);
		p = NULL;
		r = P8V_ERR_MASTER_KEY_MISMATCH;
	}
	pthread_mutex_lock(&rm->lock);
	if (r == 0) {
		fix_primary = want.n > 0 && memcmp(want.keys[want.primary].id,
		    p->st.keys[p->st.primary].id, MASTER_KEY_ID_BYTES) != 0;
		p->next = rm->procs;
		rm->procs = p;
		rm->cur = p;
		rm->backoff_ms = 0;
		rm->restarts++;
		pthread_cond_broadcast(&rm->cond);
	} else {
		rm->backoff_ms = rm->backoff_ms == 0 ? KCLIENT_BACKOFF_FIRST_MS :
		    rm->backoff_ms * 2;
		if (rm->backoff_ms > KCLIENT_BACKOFF_MAX_MS)
			rm->backoff_ms = KCLIENT_BACKOFF_MAX_MS;
		rm->next_try_ms = now_ms() + rm->backoff_ms;
	}
	pthread_mutex_unlock(&rm->lock);
	if (r != 0) {
		log_errorf("keeper_start", "the keeper could not be started "
		    "again (%s): next attempt in %lld ms", p8v_strerror(r),
		    (long long)rm->backoff_ms);
		return;
	}
	/* The primary chosen by keeper_set_primary, not the last file. */
	if (fix_primary && keeper_remote_set_primary(rm,
	    want.keys[want.primary].id) != 0)
		log_errorf("keeper_start", "the new keeper process could not "
		    "be given its primary master key");
	log_fields(LOG_LEVEL_INFO, "keeper_started",
	    json_pack("{s:i, s:b}", "pid", (int)p->pid, "restart", 1),
	    "a new keeper process %d runs: keys are served again",
	    (int)p->pid);
}

static void *
supervise(void *arg)
{
	struct kremote *rm = arg;
	struct pollfd pfd[2];
	struct kproc *cur;
	int64_t wait_ms;
	char drain[64];
	int nfd;

	for (;;) {
		reap_unused(rm);
		pthread_mutex_lock(&rm->lock);
		if (rm->stop) {
			pthread_mutex_unlock(&rm->lock);
			break;
		}
		cur = rm->cur;
		pfd[0].fd = rm->wake[0];
		pfd[0].events = POLLIN;
		nfd = 1;
		wait_ms = -1;
		if (cur != NULL && cur->pidfd >= 0) {
			pfd[1].fd = cur->pidfd;
			pfd[1].events = POLLIN;
			nfd = 2;
		} else if (cur == NULL && rm->restart) {
			wait_ms = rm->next_try_ms - now_ms();
			if (wait_ms <= 0) {
				pthread_mutex_unlock(&rm->lock);
				try_restart(rm);
				continue;
			}
		}
		pthread_mutex_unlock(&rm->lock);
		if (poll(pfd, (nfds_t)nfd, (int)wait_ms) < 0)
			continue;
		if (pfd[0].revents & POLLIN)
			(void)!read(rm->wake[0], drain, sizeof(drain));
		if (nfd == 2 && (pfd[1].revents & (POLLIN | POLLHUP))) {
			pthread_mutex_lock(&rm->lock);
			if (!cur->dead) {
				cur->dead = 1;
				log_errorf("keeper_lost", "the keeper process "
				    "%d ended: requests that need a key get 503"
				    " keeper_unavailable until a new one runs",
				    (int)cur->pid);
			}
			if (rm->cur == cur) {
				rm->cur = NULL;
				/* At once after a long run; else back off. */
				if (now_ms() - cur->started_ms >=
				    KCLIENT_STABLE_MS)
					rm->backoff_ms = 0;
				rm->next_try_ms = now_ms() + rm->backoff_ms;
			}
			pthread_cond_broadcast(&rm->cond);
			pthread_mutex_unlock(&rm->lock);
		}
	}
	return NULL;
}

/* --- keeper.h --- */

static void
remote_free(struct kremote *rm)
{
	struct kproc *p;
	size_t i;

	if (rm == NULL)
		return;
	if (rm->have_sup) {
		pthread_mutex_lock(&rm->lock);
		rm->stop = 1;
		pthread_mutex_unlock(&rm->lock);
		wake(rm);
		pthread_join(rm->sup, NULL);
	}
	while ((p = rm->procs) != NULL) {
		rm->procs = p->next;
		proc_reap(p);
	}
	if (rm->wake[0] >= 0)
		close(rm->wake[0]);
	if (rm->wake[1] >= 0)
		close(rm->wake[1]);
	for (i = 0; i < rm->n_files; i++)
		free(rm->files[i]);
	free(rm->files);
	free(rm->program);
	pthread_cond_destroy(&rm->cond);
	pthread_mutex_destroy(&rm->lock);
	free(rm);
}

void
keeper_remote_destroy(struct kremote *rm)
{
	remote_free(rm);
}

int
keeper_start(const struct keeper_process_options *o, struct keeper **out,
    size_t *bad_file)
{
	struct keeper *k = NULL;
	struct kremote *rm = NULL;
	struct kproc *p = NULL;
	char path[PATH_MAX];
	size_t i, bad = SIZE_MAX;
	int r = P8V_ERR_INVALID_ARGUMENT;

	if (out != NULL)
		*out = NULL;
	if (o == NULL || out == NULL || (o->n_key_files > 0 &&
	    o->key_files == NULL) || o->channels > KEEPER_CHANNELS_MAX ||
	    o->n_key_files > KEEPER_KEYS_MAX)
		goto out;
	r = P8V_ERR_ALLOC;
	if ((rm = calloc(1, sizeof(*rm))) == NULL)
		goto out;
	rm->wake[0] = rm->wake[1] = -1;
	if (pthread_mutex_init(&rm->lock, NULL) != 0) {
		free(rm);
		rm = NULL;
		goto out;
	}
	pthread_cond_init(&rm->cond, NULL);
	rm->channels = o->channels > 0 ? o->channels : 2;
	rm->restart = o->restart;
	if (o->program != NULL)
		rm->program = strdup(o->program);
	else if ((r = keeper_program_path(path, sizeof(path))) != 0) {
		log_errorf("keeper_start", "the keeper program %s is not "
		    "installed next to this program nor in %s",
		    KEEPER_PROGRAM, P8V_LIBEXECDIR);
		goto out;
	} else
		rm->program = strdup(path);
	r = P8V_ERR_ALLOC;
	if (rm->program == NULL || (o->n_key_files > 0 &&
	    (rm->files = calloc(o->n_key_files, sizeof(char *))) == NULL))
		goto out;
	for (i = 0; i < o->n_key_files; i++) {
		if ((rm->files[i] = strdup(o->key_files[i])) == NULL)
			goto out;
		rm->n_files++;
	}
	r = P8V_ERR_IO;
	if (pipe2(rm->wake, O_CLOEXEC | O_NONBLOCK) != 0)
		goto out;
	if ((r = proc_spawn(rm, o->generate, &p, &bad)) != 0)
		goto out;
	rm->procs = rm->cur = p;
	rm->want = p->st;
	log_fields(LOG_LEVEL_DEBUG, "keeper_started",
	    json_pack("{s:i, s:i}", "pid", (int)p->pid, "channels",
	    (int)rm->channels), "keeper process %d started with %u channels",
	    (int)p->pid, rm->channels);
	r = P8V_ERR_ALLOC;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		goto out;
	if (rm->restart) {
		r = P8V_ERR_INTERNAL;
		if (pthread_create(&rm->sup, NULL, supervise, rm) != 0)
			goto out;
		rm->have_sup = 1;
	}
	k->remote = rm;
	*out = k;
	k = NULL;
	rm = NULL;
	r = 0;
 out:
	if (bad_file != NULL)
		*bad_file = bad;
	free(k);
	remote_free(rm);
	return r;
}

int
keeper_remote_ready(struct kremote *rm)
{
	int ok;

	pthread_mutex_lock(&rm->lock);
	ok = rm->cur != NULL && !rm->cur->dead;
	pthread_mutex_unlock(&rm->lock);
	return ok;
}

int
keeper_remote_pid(struct kremote *rm)
{
	int pid;

	pthread_mutex_lock(&rm->lock);
	pid = rm->cur != NULL && !rm->cur->dead ? (int)rm->cur->pid : 0;
	pthread_mutex_unlock(&rm->lock);
	return pid;
}

uint64_t
keeper_remote_restarts(struct kremote *rm)
{
	uint64_t n;

	pthread_mutex_lock(&rm->lock);
	n = rm->restarts;
	pthread_mutex_unlock(&rm->lock);
	return n;
}

int
keeper_remote_replace(struct kremote *rm, struct kremote *fresh)
{
	struct kproc *p, *old;
	char **files, *program;
	size_t n_files;

	pthread_mutex_lock(&fresh->lock);
	p = fresh->cur;
	if (p == NULL || p->dead || p->st.n == 0) {
		pthread_mutex_unlock(&fresh->lock);
		return p == NULL || p->dead ? P8V_ERR_KEEPER_UNAVAILABLE :
		    P8V_ERR_NO_MASTER_KEY;
	}
	/* Take the process and the options that made it out of fresh (whose
	 * supervisor, if any, must not start another). */
	fresh->restart = 0;
	fresh->cur = NULL;
	fresh->procs = NULL;
	files = fresh->files;
	n_files = fresh->n_files;
	program = fresh->program;
	fresh->files = NULL;
	fresh->n_files = 0;
	fresh->program = NULL;
	pthread_mutex_unlock(&fresh->lock);

	pthread_mutex_lock(&rm->lock);
	old = rm->cur;
	if (old != NULL)
		old->dead = 1;  /* retired: its running calls finish */
	p->next = rm->procs;
	rm->procs = p;
	rm->cur = p;
	rm->want = p->st;
	while (rm->n_files > 0)
		free(rm->files[--rm->n_files]);
	free(rm->files);
	free(rm->program);
	rm->files = files;
	rm->n_files = n_files;
	rm->program = program;
	rm->backoff_ms = 0;
	pthread_cond_broadcast(&rm->cond);
	pthread_mutex_unlock(&rm->lock);
	wake(rm);
	if (!rm->have_sup)
		reap_unused(rm);
	return 0;
}

/* --- the operations --- */

int
keeper_remote_status(struct kremote *rm, struct keeper_status *st)
{
	struct kcall c;
	struct kcur a;
	enum keeper_step step;
	int r;

	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_STATUS);
	if ((r = call_run(&c, KP_STATUS, &a, &step)) == 0) {
		kcur_status(&a, st);
		if (kcur_done(&a) != 0)
			r = call_bad_answer(&c);
	}
	call_end(&c);
	return r;
}

int
keeper_remote_set_primary(struct kremote *rm,
    const uint8_t id[MASTER_KEY_ID_BYTES])
{
	struct kcall c;
	struct kcur a;
	enum keeper_step step;
	int r;

	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_SET_PRIMARY);
	kbuf_fixed(&c.b, id, MASTER_KEY_ID_BYTES);
	if ((r = call_run(&c, KP_SET_PRIMARY, &a, &step)) == 0 &&
	    kcur_done(&a) != 0)
		r = call_bad_answer(&c);
	call_end(&c);
	if (r == 0) {
		/* A restarted keeper gets the same primary. */
		size_t i;

		pthread_mutex_lock(&rm->lock);
		for (i = 0; i < rm->want.n; i++)
			if (memcmp(rm->want.keys[i].id, id,
			    MASTER_KEY_ID_BYTES) == 0)
				rm->want.primary = i;
		pthread_mutex_unlock(&rm->lock);
	}
	return r;
}

/* An envelope from an answer, malloc'd. */
static int
take_bytes(struct kcur *a, size_t max, uint8_t **out, size_t *out_len)
{
	const uint8_t *p;
	size_t n;

	*out = NULL;
	*out_len = 0;
	if ((p = kcur_bytes(a, max, &n)) == NULL || n == 0)
		return P8V_ERR_INTERNAL;
	if ((*out = malloc(n)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(*out, p, n);
	*out_len = n;
	return 0;
}

int
keeper_remote_seal(struct kremote *rm, const uint8_t *p8, size_t p8_len,
    struct key_record *rec, uint8_t mk_id[MASTER_KEY_ID_BYTES])
{
	struct kcall c;
	struct kcur a;
	enum keeper_step step;
	uint8_t id[MASTER_KEY_ID_BYTES], *env = NULL;
	char fp[KEY_RECORD_FINGERPRINT_HEX + 1];
	const uint8_t *pt;
	size_t env_len = 0, n;
	int r;

	if (p8_len > P8_MAX_INPUT_BYTES)
		return P8V_ERR_P8_TOO_LARGE;
	/* The .p8 goes from guarded memory to the keeper, and is wiped. */
	if ((r = call_begin(rm, &c, KPROTO_HEADER_BYTES + 4 + p8_len +
	    kproto_fields_len(rec))) != 0)
		return r;
	kbuf_start(&c.b, KP_SEAL);
	kbuf_bytes(&c.b, p8, p8_len);
	kbuf_fields(&c.b, rec);
	if ((r = call_run(&c, KP_SEAL, &a, &step)) == 0) {
		r = take_bytes(&a, KPROTO_ENV_MAX, &env, &env_len);
		kcur_str(&a, fp, sizeof(fp));
		pt = kcur_bytes(&a, KEY_RECORD_PUBLIC_BYTES, &n);
		kcur_fixed(&a, id, sizeof(id));
		if (r == 0 && (kcur_done(&a) != 0 ||
		    n != KEY_RECORD_PUBLIC_BYTES))
			r = call_bad_answer(&c);
		if (r == 0) {
			free(rec->envelope);
			rec->envelope = env;
			rec->envelope_len = env_len;
			env = NULL;
			memcpy(rec->fingerprint, fp, sizeof(fp));
			memcpy(rec->public_point, pt, KEY_RECORD_PUBLIC_BYTES);
			if (mk_id != NULL)
				memcpy(mk_id, id, sizeof(id));
		}
	}
	call_end(&c);
	free(env);
	if (r != 0) {
		memset(rec->fingerprint, 0, sizeof(rec->fingerprint));
		memset(rec->public_point, 0, sizeof(rec->public_point));
		free(rec->envelope);
		rec->envelope = NULL;
		rec->envelope_len = 0;
	}
	return r;
}

int
keeper_remote_reseal(struct kremote *rm, const struct keeper_record *old,
    const struct key_record *rec, uint8_t **env, size_t *env_len,
    uint8_t mk_id[MASTER_KEY_ID_BYTES])
{
	struct kcall c;
	struct kcur a;
	enum keeper_step step;
	uint8_t id[MASTER_KEY_ID_BYTES];
	int r;

	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_RESEAL);
	kbuf_record(&c.b, old);
	kbuf_fields(&c.b, rec);
	if ((r = call_run(&c, KP_RESEAL, &a, &step)) == 0) {
		r = take_bytes(&a, KPROTO_ENV_MAX, env, env_len);
		kcur_fixed(&a, id, sizeof(id));
		if (r == 0 && kcur_done(&a) != 0) {
			free(*env);
			*env = NULL;
			r = call_bad_answer(&c);
		}
		if (r == 0 && mk_id != NULL)
			memcpy(mk_id, id, sizeof(id));
	}
	call_end(&c);
	return r;
}

int
keeper_remote_vouch(struct kremote *rm, const struct keeper_record *rec,
    enum keeper_step *step)
{
	struct kcall c;
	struct kcur a;
	enum keeper_step s;
	int r;

	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_VOUCH);
	kbuf_record(&c.b, rec);
	if ((r = call_run(&c, KP_VOUCH, &a, &s)) == 0 && kcur_done(&a) != 0)
		r = call_bad_answer(&c);
	call_end(&c);
	if (step != NULL)
		*step = s;
	return r;
}

int
keeper_remote_rewrap(struct kremote *rm, const struct keeper_record *rec,
    const uint8_t *target, uint8_t **env, size_t *env_len)
{
	struct kcall c;
	struct kcur a;
	enum keeper_step step;
	uint8_t id[MASTER_KEY_ID_BYTES] = { 0 };
	int r;

	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_REWRAP);
	kbuf_record(&c.b, rec);
	kbuf_u8(&c.b, target != NULL);
	if (target != NULL)
		memcpy(id, target, sizeof(id));
	kbuf_fixed(&c.b, id, sizeof(id));
	if ((r = call_run(&c, KP_REWRAP, &a, &step)) == 0) {
		r = take_bytes(&a, KPROTO_ENV_MAX, env, env_len);
		kcur_fixed(&a, id, sizeof(id));
		if (r == 0 && kcur_done(&a) != 0) {
			free(*env);
			*env = NULL;
			r = call_bad_answer(&c);
		}
	}
	call_end(&c);
	return r;
}

static int
read_token(struct kcur *a, struct keeper_token *t)
{
	const uint8_t *p;
	size_t n;

	memset(t, 0, sizeof(*t));
	if ((p = kcur_bytes(a, KPROTO_TOKEN_MAX, &n)) == NULL || n == 0)
		return P8V_ERR_INTERNAL;
	if ((t->token = malloc(n + 1)) == NULL)
		return P8V_ERR_ALLOC;
	memcpy(t->token, p, n);
	t->token[n] = '\0';
	kcur_str(a, t->key_id, sizeof(t->key_id));
	kcur_str(a, t->team_id, sizeof(t->team_id));
	t->issued_at = (int64_t)kcur_u64(a);
	t->expires_at = (int64_t)kcur_u64(a);
	return 0;
}

int
keeper_remote_sign_apns(struct kremote *rm, const struct keeper_record *rec,
    const uint8_t boot_id[CLOCK_BOOT_ID_BYTES],
    struct keeper_apns_token *out, enum keeper_step *step)
{
	struct kcall c;
	struct kcur a;
	enum keeper_step s;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_SIGN_APNS);
	kbuf_record(&c.b, rec);
	kbuf_fixed(&c.b, boot_id, CLOCK_BOOT_ID_BYTES);
	if ((r = call_run(&c, KP_SIGN_APNS, &a, &s)) == 0) {
		if ((r = read_token(&a, &out->t)) == 0) {
			out->boot_ns = (int64_t)kcur_u64(&a);
			kcur_str(&a, out->cache_key, sizeof(out->cache_key));
			r = take_bytes(&a, KPROTO_BLOB_MAX, &out->blob,
			    &out->blob_len);
			kcur_fixed(&a, out->mk_id, sizeof(out->mk_id));
		}
		if (r == P8V_ERR_INTERNAL || (r == 0 && kcur_done(&a) != 0))
			r = call_bad_answer(&c);
		if (r != 0)
			keeper_apns_token_finish(out);
	}
	call_end(&c);
	if (step != NULL)
		*step = s;
	return r;
}

int
keeper_remote_blob_open(struct kremote *rm, const char *cache_key,
    const uint8_t *blob, size_t len, struct keeper_apns_blob *out)
{
	struct kcall c;
	struct kcur a;
	enum keeper_step step;
	const uint8_t *p;
	size_t n;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_BLOB_OPEN);
	kbuf_str(&c.b, cache_key);
	kbuf_bytes(&c.b, blob, len);
	if ((r = call_run(&c, KP_BLOB_OPEN, &a, &step)) == 0) {
		r = P8V_ERR_INTERNAL;
		if ((p = kcur_bytes(&a, KPROTO_TOKEN_MAX, &n)) != NULL &&
		    n > 0) {
			r = P8V_ERR_SECMEM;
			if ((out->token = secmem_alloc(n + 1)) != NULL) {
				memcpy(out->token, p, n);
				out->token[n] = '\0';
				r = 0;
			}
		}
		out->issued_at = (int64_t)kcur_u64(&a);
		kcur_fixed(&a, out->boot_id, sizeof(out->boot_id));
		out->boot_ns = (int64_t)kcur_u64(&a);
		if (r == P8V_ERR_INTERNAL || (r == 0 && kcur_done(&a) != 0))
			r = call_bad_answer(&c);
		if (r != 0)
			keeper_apns_blob_finish(out);
	}
	call_end(&c);
	return r;
}

int
keeper_remote_blob_rewrap(struct kremote *rm, const char *cache_key,
    const uint8_t *blob, size_t len, const uint8_t *target, uint8_t **out,
    size_t *out_len)
{
	struct kcall c;
	struct kcur a;
	enum keeper_step step;
	uint8_t id[MASTER_KEY_ID_BYTES] = { 0 };
	int r;

	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_BLOB_REWRAP);
	kbuf_str(&c.b, cache_key);
	kbuf_bytes(&c.b, blob, len);
	kbuf_u8(&c.b, target != NULL);
	if (target != NULL)
		memcpy(id, target, sizeof(id));
	kbuf_fixed(&c.b, id, sizeof(id));
	if ((r = call_run(&c, KP_BLOB_REWRAP, &a, &step)) == 0) {
		r = take_bytes(&a, KPROTO_BLOB_MAX, out, out_len);
		if (r == 0 && kcur_done(&a) != 0) {
			free(*out);
			*out = NULL;
			r = call_bad_answer(&c);
		}
	}
	call_end(&c);
	return r;
}

int
keeper_remote_sign_profile(struct kremote *rm,
    const struct keeper_record *rec, const struct keeper_profile *p,
    struct keeper_token *out, enum keeper_step *step)
{
	struct kcall c;
	struct kcur a;
	enum keeper_step s;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = call_begin(rm, &c, 0)) != 0)
		return r;
	kbuf_start(&c.b, KP_SIGN_PROFILE);
	kbuf_record(&c.b, rec);
	kbuf_profile(&c.b, p);
	if ((r = call_run(&c, KP_SIGN_PROFILE, &a, &s)) == 0) {
		r = read_token(&a, out);
		if (r == P8V_ERR_INTERNAL || (r == 0 && kcur_done(&a) != 0))
			r = call_bad_answer(&c);
		if (r != 0)
			keeper_token_finish(out);
	}
	call_end(&c);
	if (step != NULL)
		*step = s;
	return r;
}

/* --- pipelined calls, for an event loop --- */

/*
 * A pipe queues its calls in slots of KPIPE_SLOT_BYTES (a record, its AAD
 * and a profile: about a kilobyte; a larger request is refused with
 * P8V_ERR_BUSY and goes the synchronous way) and sends them as one batch,
 * one datagram (proto.h); the keeper answers with one datagram of as many
 * answers. A batch costs one wake-up each way instead of one per call
 * (docs/benchmarks.md). A pipe holds one channel while it has calls
 * queued or in flight, and gives it back when keeper_pipe_idle finds it
 * empty.
 */
#define KPIPE_SLOTS KPROTO_BATCH_MAX
#define KPIPE_SLOT_BYTES KPROTO_SLOT_BYTES

struct kpcall {
	keeper_pipe_done done;
	void *arg;
	size_t len;             /* of the request in its slot */
};

struct keeper_pipe {
	struct kremote *rm;
	struct kproc *p;        /* held: p and ch, or both NULL */
	struct kchan *ch;
	struct kpcall call[KPIPE_SLOTS];        /* a ring, oldest at head */
	size_t head;
	size_t n_sent;          /* the oldest n_sent are in flight */
	size_t n;               /* queued and in flight */
	size_t batch[KPIPE_SLOTS];      /* calls per batch in flight, a ring */
	size_t b_head;
	size_t n_batches;
	uint8_t *req;           /* KPIPE_SLOTS * KPIPE_SLOT_BYTES */
	uint8_t *ans;           /* ans_max + 1 */
	size_t ans_max;         /* a batch's answer datagram */
};

int
keeper_remote_pipe_open(struct kremote *rm, struct keeper_pipe **out)
{
	struct keeper_pipe *pp;

	*out = NULL;
	if ((pp = calloc(1, sizeof(*pp))) == NULL)
		return P8V_ERR_ALLOC;
	pp->rm = rm;
	pp->ans_max = KPIPE_SLOTS * kproto_max(KP_SIGN_PROFILE | KPROTO_ANSWER);
	/* Requests hold records (ciphertext and metadata), answers tokens:
	 * both are wiped once used, as a channel's buffers are. */
	pp->req = calloc(KPIPE_SLOTS, KPIPE_SLOT_BYTES);
	pp->ans = calloc(1, pp->ans_max + 1);
	if (pp->req == NULL || pp->ans == NULL) {
		free(pp->req);
		free(pp->ans);
		free(pp);
		return P8V_ERR_ALLOC;
	}
	*out = pp;
	return 0;
}

/* Answer every call queued or in flight with r (no token), oldest first,
 * and give the channel back (broken: its keeper is taken for dead). */
static void
pipe_fail(struct keeper_pipe *pp, int r, int broken)
{
	struct kpcall c;

	if (pp->p != NULL)
		chan_give(pp->rm, pp->p, pp->ch, broken);
	pp->p = NULL;
	pp->ch = NULL;
	secmem_wipe(pp->req, (size_t)KPIPE_SLOTS * KPIPE_SLOT_BYTES);
	while (pp->n > 0) {
		c = pp->call[pp->head];
		pp->head = (pp->head + 1) % KPIPE_SLOTS;
		pp->n--;
		if (pp->n_sent > 0)
			pp->n_sent--;
		c.done(c.arg, r, NULL, KEEPER_STEP_NONE);
	}
	pp->n_batches = 0;
}

void
keeper_pipe_close(struct keeper_pipe *pp)
{
	if (pp == NULL)
		return;
	/* Calls still in flight get their answers first (bounded by the
	 * channel's timeout): their callers free what the callbacks use. */
	while (pp->n_sent > 0 && pp->p != NULL)
		keeper_pipe_wait(pp);
	pipe_fail(pp, P8V_ERR_KEEPER_UNAVAILABLE, 0);
	free(pp->req);
	free(pp->ans);
	free(pp);
}

int
keeper_pipe_sign_profile(struct keeper_pipe *pp,
    const struct keeper_record *rec, const struct keeper_profile *prof,
    keeper_pipe_done done, void *arg)
{
	struct kbuf b;
	struct kpcall *c;
	size_t slot;
	int current, r;

	if (pp == NULL || rec == NULL || prof == NULL || done == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	if (pp->n == KPIPE_SLOTS)
		return P8V_ERR_BUSY;
	if (pp->p != NULL && pp->n == 0 && pp->ch->cpu >= 0 &&
	    pp->ch->cpu != sched_getcpu()) {
		/* The loop moved to another CPU since it took the channel,
		 * which a busy loop keeps: between two batches it takes one
		 * of this CPU's keeper thread instead (proto.h), or the two
		 * would wake each other across CPUs for as long as the load
		 * lasts. */
		chan_give(pp->rm, pp->p, pp->ch, 0);
		pp->p = NULL;
		pp->ch = NULL;
	}
	if (pp->p != NULL) {
		/* A keeper replaced (SIGHUP) or lost since the channel was
		 * taken: no new calls on it; once its calls are answered
		 * the pipe takes a channel of the current one. */
		pthread_mutex_lock(&pp->rm->lock);
		current = pp->rm->cur == pp->p && !pp->p->dead;
		pthread_mutex_unlock(&pp->rm->lock);
		if (!current)
			return P8V_ERR_BUSY;
	}
	slot = (pp->head + pp->n) % KPIPE_SLOTS;
	b.p = pp->req + slot * KPIPE_SLOT_BYTES;
	b.cap = KPIPE_SLOT_BYTES;
	kbuf_start(&b, KP_SIGN_PROFILE);
	kbuf_record(&b, rec);
	kbuf_profile(&b, prof);
	if ((r = kbuf_end(&b)) != 0) {
		secmem_wipe(b.p, KPIPE_SLOT_BYTES);
		return P8V_ERR_BUSY;    /* over a slot: the synchronous way */
	}
	if (pp->p == NULL &&
	    (r = chan_take(pp->rm, &pp->p, &pp->ch)) != 0) {
		secmem_wipe(b.p, b.len);
		pp->p = NULL;
		pp->ch = NULL;
		return r;
	}
	c = &pp->call[slot];
	c->done = done;
	c->arg = arg;
	c->len = b.len;
	pp->n++;
	return 0;
}

int
keeper_pipe_flush(struct keeper_pipe *pp)
{
	struct iovec iov[KPIPE_SLOTS];
	struct msghdr mh;
	size_t i, slot, todo, total = 0;
	ssize_t n;

	if (pp == NULL || pp->p == NULL || pp->n_sent == pp->n)
		return 0;
	todo = pp->n - pp->n_sent;
	for (i = 0; i < todo; i++) {
		slot = (pp->head + pp->n_sent + i) % KPIPE_SLOTS;
		iov[i].iov_base = pp->req + slot * KPIPE_SLOT_BYTES;
		iov[i].iov_len = pp->call[slot].len;
		/* Every message of the batch but its last says another
		 * follows. */
		((uint8_t *)iov[i].iov_base)[2] = i + 1 < todo ?
		    KPROTO_F_MORE : 0;
		total += iov[i].iov_len;
	}
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = todo;
	/* One datagram: a blocking socket sends it whole or not at all. */
	do {
		n = sendmsg(pp->ch->fd, &mh, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	/* What was sent (records) is wiped at once. */
	for (i = 0; i < todo; i++)
		secmem_wipe(iov[i].iov_base, iov[i].iov_len);
	if (n != (ssize_t)total) {
		pipe_fail(pp, P8V_ERR_KEEPER_UNAVAILABLE, 1);
		return P8V_ERR_KEEPER_UNAVAILABLE;
	}
	pp->batch[(pp->b_head + pp->n_batches) % KPIPE_SLOTS] = todo;
	pp->n_batches++;
	pp->n_sent = pp->n;
	return 0;
}

size_t
keeper_pipe_pending(const struct keeper_pipe *pp)
{
	return pp != NULL ? pp->n : 0;
}

void
keeper_pipe_idle(struct keeper_pipe *pp)
{
	if (pp != NULL && pp->p != NULL && pp->n == 0) {
		chan_give(pp->rm, pp->p, pp->ch, 0);
		pp->p = NULL;
		pp->ch = NULL;
	}
}

/* The answer in buf (n bytes) to the oldest call; its token into *t. 0,
 * the keeper's result, or P8V_ERR_KEEPER_UNAVAILABLE (malformed). */
static int
pipe_answer(const uint8_t *buf, ssize_t n, struct keeper_token *t,
    enum keeper_step *step)
{
	unsigned int atype;
	struct kcur a;
	int r;

	*step = KEEPER_STEP_NONE;
	if (n <= 0 || kproto_open(buf, (size_t)n, &atype, &a) != 0 ||
	    atype != (KP_SIGN_PROFILE | KPROTO_ANSWER))
		return P8V_ERR_KEEPER_UNAVAILABLE;
	if ((r = kcur_result(&a, step)) != 0)
		return r;
	r = read_token(&a, t);
	if (r == P8V_ERR_INTERNAL || (r == 0 && kcur_done(&a) != 0))
		r = P8V_ERR_KEEPER_UNAVAILABLE;
	if (r != 0)
		keeper_token_finish(t);
	return r;
}

void
keeper_pipe_wait(struct keeper_pipe *pp)
{
	size_t off[KPIPE_SLOTS], len[KPIPE_SLOTS], i, want, got;
	struct keeper_token t;
	enum keeper_step step;
	struct kpcall c;
	ssize_t n;
	int r, broken = 0;

	if (pp == NULL || pp->p == NULL || pp->n_sent == 0 ||
	    pp->n_batches == 0)
		return;
	want = pp->batch[pp->b_head];
	/* The oldest batch's answer, bounded by the channel's SO_RCVTIMEO
	 * as a synchronous call's. One byte more than the largest: a longer
	 * datagram is cut, and its framing then fails. */
	do {
		n = recv(pp->ch->fd, pp->ans, pp->ans_max + 1, 0);
	} while (n < 0 && errno == EINTR);
	got = n > 0 ? kproto_split(pp->ans, (size_t)n, KPIPE_SLOTS, off,
	    len) : 0;
	if (got != want) {
		/* Dead, late, or not the answer to what was sent. */
		if (n > 0)
			secmem_wipe(pp->ans, (size_t)n);
		pipe_fail(pp, P8V_ERR_KEEPER_UNAVAILABLE, 1);
		return;
	}
	pp->b_head = (pp->b_head + 1) % KPIPE_SLOTS;
	pp->n_batches--;
	for (i = 0; i < got; i++) {
		memset(&t, 0, sizeof(t));
		r = pipe_answer(pp->ans + off[i], (ssize_t)len[i], &t, &step);
		if (r == P8V_ERR_KEEPER_UNAVAILABLE) {
			/* Malformed: the keeper is taken for dead. */
			broken = 1;
			break;
		}
		c = pp->call[pp->head];
		pp->head = (pp->head + 1) % KPIPE_SLOTS;
		pp->n--;
		pp->n_sent--;
		c.done(c.arg, r, r == 0 ? &t : NULL, step);
		keeper_token_finish(&t);
	}
	secmem_wipe(pp->ans, (size_t)n);
	if (broken)
		pipe_fail(pp, P8V_ERR_KEEPER_UNAVAILABLE, 1);
}
