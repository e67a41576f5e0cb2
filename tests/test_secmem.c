/*
 * test_secmem.c: guarded memory really guards, secmem_init refuses to run
 * without locked memory, comparison, wiping and randomness.
 */
#include "crypto/secmem.h"

#include <linux/capability.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check.h"

/* Exit codes of the forked children. */
#define CHILD_SKIP 77    /* the environment does not allow the test */
#define CHILD_FAULTED 42 /* our SIGSEGV/SIGBUS handler ran */

/* Run fn in a child; its exit status, or 128 + signal if it was killed. */
static int
in_child(int (*fn)(void))
{
	pid_t pid;
	int st;

	fflush(NULL);
	if ((pid = fork()) < 0)
		return -1;
	if (pid == 0)
		_exit(fn());
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/*
 * No locked memory allowed (RLIMIT_MEMLOCK 0 and, for root, CAP_IPC_LOCK
 * dropped): secmem_init must answer P8V_ERR_SECMEM. Exit 0 when it does.
 */
static int
child_no_mlock(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	struct rlimit rl = { 0, 0 };
	int r;

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) != 0)
		return CHILD_SKIP;
	data[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	data[CAP_TO_INDEX(CAP_IPC_LOCK)].permitted &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	if (syscall(SYS_capset, &hdr, data) != 0)
		return CHILD_SKIP;
	if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		return CHILD_SKIP;
	r = secmem_init();
	if (r != P8V_ERR_SECMEM) {
		fprintf(stderr, "secmem_init without mlock: %d (%s)\n", r,
		    p8v_errname(r));
		return 1;
	}
	/* A second call must not find a half-initialised state and pass. */
	return secmem_init() == P8V_ERR_SECMEM ? 0 : 2;
}

static void
on_fault(int sig)
{
	(void)sig;
	_exit(CHILD_FAULTED);
}

/* Our handler, rather than a sanitizer's report, for the expected fault. */
static void
catch_faults(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

/* Write one byte past the end of a 32-byte block: the guard page faults. */
static int
child_overflow(void)
{
	volatile uint8_t *p;

	catch_faults();
	if ((p = secmem_alloc(32)) == NULL)
		return 1;
	p[31] = 1; /* the last byte is ours */
	p[32] = 1; /* the next one is on the guard page */
	return 0;
}

/* Writing just before the block hits the canary, which secmem_free checks:
 * libsodium raises SIGSEGV (then aborts) on a damaged canary. */
static int
child_underflow(void)
{
	volatile uint8_t *p;

	catch_faults();
	if ((p = secmem_alloc(32)) == NULL)
		return 1;
	p[-1] ^= 0xff;
	secmem_free((void *)(uintptr_t)p);
	return 0;
}

/* The locked budget: RLIMIT_MEMLOCK less OpenSSL's secure heap. */
#define BUDGET_LIMIT_BYTES (SECMEM_OPENSSL_HEAP_BYTES + 64 * 1024)
#define BUDGET_BLOCKS 64

/*
 * With RLIMIT_MEMLOCK at the secure heap plus 64 KiB, guarded blocks of
 * 5000 bytes (two locked pages each) run out after 8, whatever the
 * process's privileges: secmem_alloc answers NULL rather than an unlocked
 * block, the large blocks of secmem_alloc_short too, and freeing one
 * makes room again. Exit 0 when all of that holds.
 */
static int
child_budget(void)
{
	struct rlimit rl = { BUDGET_LIMIT_BYTES, BUDGET_LIMIT_BYTES };
	void *p[BUDGET_BLOCKS];
	size_t n = 0, i;
	int r = 1;

	if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		return CHILD_SKIP;
	if (secmem_init() != 0)
		return 2;
	while (n < BUDGET_BLOCKS && (p[n] = secmem_alloc(5000)) != NULL)
		n++;
	if (n == BUDGET_BLOCKS || n < 4 || secmem_guarded_bytes() >
	    BUDGET_LIMIT_BYTES - SECMEM_OPENSSL_HEAP_BYTES) {
		fprintf(stderr, "budget: %zu blocks, %zu bytes locked\n", n,
		    secmem_guarded_bytes());
		goto out;
	}
	if (secmem_alloc_short(SECMEM_SHORT_MAX_BYTES + 1) != NULL)
		goto out;
	secmem_free(p[--n]);
	if ((p[n] = secmem_alloc(5000)) == NULL)
		goto out;
	n++;
	r = 0;
 out:
	for (i = 0; i < n; i++)
		secmem_free(p[i]);
	if (r == 0 && secmem_guarded_bytes() != 0)
		r = 3;
	return r;
}

static void
test_init(void)
{
	int st;

	/* Before the parent initialises anything, so the child starts clean. */
	st = in_child(child_no_mlock);
	if (st == CHILD_SKIP)
		printf("note: cannot drop CAP_IPC_LOCK here; no-mlock test "
		    "skipped\n");
	else
		CHECK_INT(st, 0);
	CHECK_INT(in_child(child_budget), 0);

	CHECK_OK(secmem_init());
	CHECK_OK(secmem_init()); /* idempotent */
}

static void
test_alloc(void)
{
	static const size_t sizes[] = { 1, 16, 32, 4095, 4096, 4097, 65536 };
	uint8_t *p;
	size_t i, j;
	int st;

	CHECK(secmem_alloc(0) == NULL);
	secmem_free(NULL); /* NULL-safe */
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		p = secmem_alloc(sizes[i]);
		CHECKF(p != NULL, "size %zu", sizes[i]);
		if (p == NULL)
			continue;
		memset(p, 0x5c, sizes[i]);
		for (j = 0; j < sizes[i] && p[j] == 0x5c; j++)
			;
		CHECKF(j == sizes[i], "size %zu", sizes[i]);
		secmem_free(p);
	}
	/* The guard page and the canary really are there. Under ASan its
	 * own handler may take the fault and abort instead of ours. */
	st = in_child(child_overflow);
	CHECKF(st == CHILD_FAULTED || st == 128 + SIGSEGV ||
	    st == 128 + SIGBUS || st == 128 + SIGABRT,
	    "overflow child ended with %d", st);
	st = in_child(child_underflow);
	CHECKF(st == CHILD_FAULTED || st == 128 + SIGSEGV ||
	    st == 128 + SIGABRT || st == 128 + SIGKILL,
	    "underflow child ended with %d", st);
}

static void
test_wipe(void)
{
	uint8_t buf[64], zero[64];
	size_t i;

	memset(zero, 0, sizeof(zero));
	memset(buf, 0xaa, sizeof(buf));
	secmem_wipe(buf + 8, 16);
	for (i = 0; i < sizeof(buf); i++)
		CHECKF(buf[i] == (i >= 8 && i < 24 ? 0 : 0xaa), "byte %zu", i);
	secmem_wipe(buf, sizeof(buf));
	CHECK_MEM(buf, zero, sizeof(buf));
	secmem_wipe(NULL, 10); /* NULL-safe */
	secmem_wipe(buf, 0);
}

static void
test_equal(void)
{
	static const struct {
		size_t pos;      /* byte that differs, or n for none */
		size_t n;
		int want;
	} cases[] = {
		{ 32, 32, 1 },
		{ 0, 32, 0 },
		{ 15, 32, 0 },
		{ 31, 32, 0 },
		{ 0, 1, 0 },
		{ 1, 1, 1 },
		{ 0, 0, 1 }, /* empty buffers are equal */
	};
	uint8_t a[32], b[32];
	size_t i;

	for (i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i * 7 + 1);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(b, a, sizeof(a));
		if (cases[i].pos < cases[i].n)
			b[cases[i].pos] ^= 0x01;
		CHECKF(secmem_equal(a, b, cases[i].n) == cases[i].want,
		    "case %zu", i);
	}
}

static void
test_random(void)
{
	uint8_t a[32], b[32], zero[32];
	int ones = 0;
	size_t i;

	memset(zero, 0, sizeof(zero));
	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	CHECK_OK(secmem_random(a, sizeof(a)));
	CHECK_OK(secmem_random(b, sizeof(b)));
	CHECK(memcmp(a, b, sizeof(a)) != 0);
	CHECK(memcmp(a, zero, sizeof(a)) != 0);
	/* 256 random bits: far from all zeros or all ones (a crude guard
	 * against a generator stuck on a constant). */
	for (i = 0; i < sizeof(a); i++)
		ones += __builtin_popcount(a[i]);
	CHECKF(ones > 64 && ones < 192, "%d one bits of 256", ones);
	CHECK_OK(secmem_random(a, 0));
	CHECK_OK(secmem_random(NULL, 0));
	CHECK_ERR(secmem_random(NULL, 1), P8V_ERR_INVALID_ARGUMENT);
}

int
main(void)
{
	test_init();
	test_alloc();
	test_wipe();
	test_equal();
	test_random();
	return check_finish();
}
