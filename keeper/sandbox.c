/* sandbox.c: the keeper's sandbox (see sandbox.h). */
#include "keeper/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/landlock.h>
#include <seccomp.h>

#include "common/err.h"
#include "common/log.h"

/* Locked memory a root keeper allows itself before it drops root: its
 * heap, stacks and libraries with room to spare. */
#define SANDBOX_MEMLOCK_BYTES ((rlim_t)512 * 1024 * 1024)
#define SANDBOX_USER "p8vault-keeper"
#define SANDBOX_FALLBACK_USER "nobody"

/* The libfaketime file the keeper keeps reading (tests), or NULL. */
static const char *
faketime_file(void)
{
	const char *preload = getenv("LD_PRELOAD");
	const char *file = getenv("FAKETIME_TIMESTAMP_FILE");

	if (preload == NULL || strstr(preload, "libfaketime") == NULL ||
	    file == NULL || *file != '/')
		return NULL;
	return file;
}

/* Lock every page, now and later, if the process may lock enough for
 * all it will map (else mlockall's future pages would make allocations
 * fail): as root, the limit is raised first, for after the change of user. */
static void
lock_memory(int root)
{
	struct rlimit rl;

	if (root && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
	    rl.rlim_max != RLIM_INFINITY && rl.rlim_max < SANDBOX_MEMLOCK_BYTES) {
		rl.rlim_cur = rl.rlim_max = SANDBOX_MEMLOCK_BYTES;
		(void)setrlimit(RLIMIT_MEMLOCK, &rl);
	}
	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 ||
	    (rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < SANDBOX_MEMLOCK_BYTES)) {
		log_debugf("keeper_sandbox", "memory not locked as a whole "
		    "(RLIMIT_MEMLOCK is below %llu MiB): secrets are in locked "
		    "guarded memory only",
		    (unsigned long long)(SANDBOX_MEMLOCK_BYTES >> 20));
		return;
	}
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0)
		log_warnf("keeper_sandbox", "mlockall: %s: secrets are in "
		    "locked guarded memory only", strerror(errno));
}

/* An empty directory that nobody can add to (it is deleted) as "/". */
static int
empty_root(void)
{
	char dir[] = "/tmp/p8vault-keeper.XXXXXX";
	int fd, r = P8V_ERR_IO;

	if (mkdtemp(dir) == NULL) {
		log_errorf("keeper_sandbox", "mkdtemp %s: %s", dir,
		    strerror(errno));
		return r;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rmdir(dir) != 0 || fd < 0) {
		log_errorf("keeper_sandbox", "preparing an empty root: %s",
		    strerror(errno));
		goto out;
	}
	if (fchdir(fd) != 0 || chroot(".") != 0 || chdir("/") != 0) {
		log_errorf("keeper_sandbox", "chroot: %s", strerror(errno));
		goto out;
	}
	r = 0;
 out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* The user to become (looked up before the chroot hides /etc/passwd). */
static void
find_user(uid_t *uid, gid_t *gid)
{
	struct passwd *pw;

	*uid = 65534;
	*gid = 65534;
	if ((pw = getpwnam(SANDBOX_USER)) != NULL ||
	    (pw = getpwnam(SANDBOX_FALLBACK_USER)) != NULL) {
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	}
}

static int
drop_user(uid_t uid, gid_t gid)
{
	if (uid == 0) {
		log_errorf("keeper_sandbox", "the keeper's user is root");
		return P8V_ERR_INTERNAL;
	}
	if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
	    setresuid(uid, uid, uid) != 0) {
		log_errorf("keeper_sandbox", "changing to uid %u: %s",
		    (unsigned int)uid, strerror(errno));
		return P8V_ERR_INTERNAL;
	}
	if (setuid(0) == 0) {
		log_errorf("keeper_sandbox", "root could be regained");
		return P8V_ERR_INTERNAL;
	}
	return 0;
}

/* No filesystem (but the libfaketime file), where Landlock exists. */
static int
landlock(const char *allow_read, int *abi_out)
{
	struct landlock_ruleset_attr attr = { 0 };
	struct landlock_path_beneath_attr rule = { 0 };
	int abi, fd, pfd, r = P8V_ERR_INTERNAL;

	*abi_out = 0;
	abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1)
		return 0;       /* this kernel has no Landlock */
	*abi_out = abi;
	attr.handled_access_fs = LANDLOCK_ACCESS_FS_EXECUTE |
	    LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
	    LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR |
	    LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
	    LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
	    LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
	    LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
#ifdef LANDLOCK_ACCESS_FS_REFER
	if (abi >= 2)
		attr.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
#endif
#ifdef LANDLOCK_ACCESS_FS_TRUNCATE
	if (abi >= 3)
		attr.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
#endif
	if ((fd = (int)syscall(SYS_landlock_create_ruleset, &attr,
	    sizeof(attr), 0)) < 0) {
		log_errorf("keeper_sandbox", "landlock_create_ruleset: %s",
		    strerror(errno));
		return r;
	}
	if (allow_read != NULL) {
		/* Its directory: the tests replace the file by rename. */
		char dir[PATH_MAX];
		char *slash;

		snprintf(dir, sizeof(dir), "%s", allow_read);
		if ((slash = strrchr(dir, '/')) != NULL)
			*(slash == dir ? slash + 1 : slash) = '\0';
		if ((pfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
			log_errorf("keeper_sandbox", "%s: %s", allow_read,
			    strerror(errno));
			goto out;
		}
		rule.allowed_access = LANDLOCK_ACCESS_FS_READ_FILE;
		rule.parent_fd = pfd;
		if (syscall(SYS_landlock_add_rule, fd,
		    LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0) {
			log_errorf("keeper_sandbox", "landlock_add_rule: %s",
			    strerror(errno));
			close(pfd);
			goto out;
		}
		close(pfd);
	}
	if (syscall(SYS_landlock_restrict_self, fd, 0) != 0) {
		log_errorf("keeper_sandbox", "landlock_restrict_self: %s",
		    strerror(errno));
		goto out;
	}
	r = 0;
 out:
	close(fd);
	return r;
}

/* Close every descriptor but stderr and the channels (3 .. 3 + n - 1,
 * as keeper/main.c checked). */
static void
close_fds(size_t n)
{
	(void)close(STDIN_FILENO);
	(void)close(STDOUT_FILENO);
	(void)syscall(SYS_close_range, 3 + (unsigned int)n, ~0U, 0);
}

int
sandbox_enter(size_t n)
{
	const char *fake = faketime_file();
	int root = geteuid() == 0, abi = 0, r;
	uid_t uid = geteuid();
	gid_t gid = getegid();

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		log_errorf("keeper_sandbox", "prctl: %s", strerror(errno));
		return P8V_ERR_INTERNAL;
	}
	lock_memory(root);
	if (fake != NULL)
		log_warnf("keeper_sandbox", "libfaketime is preloaded: the "
		    "keeper keeps reading %s, without chroot and change of "
		    "user (tests only)", fake);
	if (root && fake == NULL) {
		find_user(&uid, &gid);
		if ((r = empty_root()) != 0 || (r = drop_user(uid, gid)) != 0)
			return r;
	}
	if ((r = landlock(fake, &abi)) != 0)
		return r;
	close_fds(n);
	log_fields(LOG_LEVEL_DEBUG, "keeper_sandbox",
	    json_pack("{s:i, s:b, s:i}", "uid", (int)uid, "chroot",
	    root && fake == NULL, "landlock_abi", abi),
	    "keeper sandbox: uid %u, landlock ABI %d", (unsigned int)uid, abi);
	return 0;
}

/* The system calls the keeper makes once it serves: reading and writing
 * its channels and stderr, memory, locks between its threads, clocks,
 * randomness, exit. */
static const int allowed[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
	SCMP_SYS(recvfrom), SCMP_SYS(recvmsg), SCMP_SYS(sendto),
	SCMP_SYS(sendmsg), SCMP_SYS(close), SCMP_SYS(poll), SCMP_SYS(ppoll),
	SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(lseek),
	SCMP_SYS(brk), SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap),
	SCMP_SYS(mprotect), SCMP_SYS(madvise), SCMP_SYS(mlock),
	SCMP_SYS(mlock2), SCMP_SYS(munlock),
	SCMP_SYS(futex), SCMP_SYS(sched_yield), SCMP_SYS(getpid),
	SCMP_SYS(gettid), SCMP_SYS(getrandom),
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres),
	SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(nanosleep),
	SCMP_SYS(clock_nanosleep),
	SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(restart_syscall), SCMP_SYS(pause), SCMP_SYS(exit),
	SCMP_SYS(exit_group),
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
	/* The sanitizers' runtimes, when they report. */
	SCMP_SYS(sigaltstack), SCMP_SYS(rt_sigaction), SCMP_SYS(prlimit64),
	SCMP_SYS(getrlimit), SCMP_SYS(readlink), SCMP_SYS(sched_getaffinity),
	SCMP_SYS(tgkill), SCMP_SYS(getppid), SCMP_SYS(pipe2),
	SCMP_SYS(wait4), SCMP_SYS(prctl), SCMP_SYS(ioctl),
#endif
};

/* Refused with EACCES rather than killing: libraries probe files. */
static const int refused[] = {
	SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(socket),
	SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(stat),
	SCMP_SYS(lstat), SCMP_SYS(statx),
};

int
sandbox_lock(void)
{
	scmp_filter_ctx ctx;
	const char *fake = faketime_file();
	size_t i;
	int r = P8V_ERR_INTERNAL, e;

	if ((ctx = seccomp_init(SCMP_ACT_KILL_PROCESS)) == NULL) {
		log_errorf("keeper_sandbox", "seccomp_init failed");
		return r;
	}
	for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if ((e = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i],
		    0)) != 0)
			goto fail;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if ((e = seccomp_rule_add(ctx, fake != NULL &&
		    (refused[i] == SCMP_SYS(openat) ||
		    refused[i] == SCMP_SYS(open)) ? SCMP_ACT_ALLOW :
		    SCMP_ACT_ERRNO(EACCES), refused[i], 0)) != 0)
			goto fail;
	if ((e = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) != 0 ||
	    (e = seccomp_load(ctx)) != 0)
		goto fail;
	seccomp_release(ctx);
	return 0;
 fail:
	log_errorf("keeper_sandbox", "seccomp: %s", strerror(-e));
	seccomp_release(ctx);
	return r;
}
