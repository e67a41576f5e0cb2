/* harden.c: process hardening at start. */
#include "server/harden.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

/* Open fds 0-2 on /dev/null where closed. 0, or -1 (errno set). */
static int
ensure_std_fds(void)
{
	int fd;

	for (;;) {
		if ((fd = open("/dev/null", O_RDWR)) < 0)
			return -1;
		if (fd > STDERR_FILENO) {
			close(fd);
			return 0;
		}
	}
}

int
harden_process(void)
{
	struct rlimit nocore = { 0, 0 };
	int r = P8V_ERR_INTERNAL;

	if (ensure_std_fds() != 0) {
		/* stderr may be closed: nowhere to log to. */
		goto out;
	}
	if (getuid() != geteuid() || getgid() != getegid()) {
		log_errorf("harden", "refusing to run set-user-ID or "
		    "set-group-ID: start p8vaultd as the user it runs as");
		goto out;
	}
	if (setrlimit(RLIMIT_CORE, &nocore) != 0) {
		log_errorf("harden", "setrlimit(RLIMIT_CORE, 0): %s",
		    strerror(errno));
		goto out;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		log_errorf("harden", "prctl(PR_SET_DUMPABLE, 0): %s",
		    strerror(errno));
		goto out;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		log_errorf("harden", "prctl(PR_SET_NO_NEW_PRIVS, 1): %s",
		    strerror(errno));
		goto out;
	}
	umask(077);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		log_errorf("harden", "ignoring SIGPIPE: %s", strerror(errno));
		goto out;
	}
	if (geteuid() == 0)
		log_warnf("harden", "running as root: p8vaultd needs no "
		    "privilege; run it as a dedicated user");
	r = 0;
 out:
	return r;
}

void
harden_fd_limit(rlim_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
		log_warnf("harden", "open-file hard limit %llu is below the %llu "
		    "the connection limits need; raise LimitNOFILE=",
		    (unsigned long long)rl.rlim_max, (unsigned long long)want);
		rl.rlim_cur = rl.rlim_max;
	} else {
		rl.rlim_cur = want;
	}
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		log_warnf("harden", "raising the open-file limit: %s",
		    strerror(errno));
}
