/* listen.c: TCP and unix listening sockets. */
#include "server/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

/* Most sockets listen_tcp binds: one per thread, API_THREADS_MAX. */
#define LISTEN_TCP_MAX 64

static int
parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	const char *p;

	if (*s == '\0' || strlen(s) > 5)
		return P8V_ERR_INVALID_ARGUMENT;
	for (p = s; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return P8V_ERR_INVALID_ARGUMENT;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v > 65535)
		return P8V_ERR_INVALID_ARGUMENT;
	*port = (uint16_t)v;
	return 0;
}

int
listen_addr_parse(const char *spec, struct listen_addr *out)
{
	struct sockaddr_in *sin;
	struct sockaddr_in6 *sin6;
	char host[INET6_ADDRSTRLEN];
	const char *colon, *close_br;
	size_t hlen;

	if (spec == NULL || out == NULL)
		return P8V_ERR_INVALID_ARGUMENT;
	memset(out, 0, sizeof(*out));
	if (spec[0] == '[') {
		if ((close_br = strchr(spec, ']')) == NULL || close_br[1] != ':')
			return P8V_ERR_INVALID_ARGUMENT;
		hlen = (size_t)(close_br - spec - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return P8V_ERR_INVALID_ARGUMENT;
		memcpy(host, spec + 1, hlen);
		host[hlen] = '\0';
		if (parse_port(close_br + 2, &out->port) != 0)
			return P8V_ERR_INVALID_ARGUMENT;
		sin6 = (struct sockaddr_in6 *)&out->ss;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return P8V_ERR_INVALID_ARGUMENT;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(out->port);
		out->len = sizeof(*sin6);
	} else {
		if ((colon = strrchr(spec, ':')) == NULL)
			return P8V_ERR_INVALID_ARGUMENT;
		hlen = (size_t)(colon - spec);
		if (hlen == 0 || hlen >= sizeof(host))
			return P8V_ERR_INVALID_ARGUMENT;
		memcpy(host, spec, hlen);
		host[hlen] = '\0';
		if (parse_port(colon + 1, &out->port) != 0)
			return P8V_ERR_INVALID_ARGUMENT;
		sin = (struct sockaddr_in *)&out->ss;
		/* inet_pton takes only the dotted quad (no "127.1", no
		 * octal): what is written is what is bound. */
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return P8V_ERR_INVALID_ARGUMENT;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(out->port);
		out->len = sizeof(*sin);
	}
	/* host parsed as an address, so it fits INET6_ADDRSTRLEN. */
	memcpy(out->host, host, hlen + 1);
	return 0;
}

int
listen_addr_is_loopback(const struct listen_addr *addr)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;

	if (addr->ss.ss_family == AF_INET) {
		sin = (const struct sockaddr_in *)&addr->ss;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (addr->ss.ss_family == AF_INET6) {
		sin6 = (const struct sockaddr_in6 *)&addr->ss;
		if (IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) &&
		    sin6->sin6_addr.s6_addr[12] == 127;
	}
	return 0;
}

static void
set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static uint16_t
get_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* One bound, listening TCP socket; -1 on failure (logged). */
static int
bind_one(const struct sockaddr_storage *ss, socklen_t len, const char *host)
{
	int fd, one = 1;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0) {
		log_errorf("listen", "socket: %s", strerror(errno));
		return -1;
	}
	/* SO_REUSEPORT lets one socket per thread share the port, and the
	 * kernel spread connections over them. Only processes of the same
	 * user can join the group, so nobody else can steal connections. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    (ss->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) != 0)) {
		log_errorf("listen", "setsockopt: %s", strerror(errno));
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
		log_errorf("listen", "cannot bind %s port %u: %s", host,
		    get_port(ss), strerror(errno));
		goto fail;
	}
	if (listen(fd, LISTEN_BACKLOG) != 0) {
		log_errorf("listen", "listen on %s: %s", host, strerror(errno));
		goto fail;
	}
	return fd;
 fail:
	close(fd);
	return -1;
}

/*
 * SO_REUSEPORT would let a second p8vaultd of the same user bind the same
 * port without a word, and the kernel would split connections between the
 * two. So a fixed port is first bound without it: that fails if anything
 * listens there (reuseport group or not), while SO_REUSEADDR still allows
 * a restart over connections in TIME_WAIT. The probe is closed before the
 * group binds; a process that binds in between wins the race, rarely.
 * 0, or P8V_ERR_IO (in use: logged).
 */
static int
probe_port_free(const struct listen_addr *addr)
{
	int fd, one = 1, r = P8V_ERR_IO;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_errorf("listen", "socket: %s", strerror(errno));
		return r;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (addr->ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
	    IPV6_V6ONLY, &one, sizeof(one)) != 0)) {
		log_errorf("listen", "setsockopt: %s", strerror(errno));
		goto out;
	}
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
		log_errorf("listen", "cannot bind %s port %u: %s", addr->host,
		    addr->port, strerror(errno));
		goto out;
	}
	r = 0;
 out:
	close(fd);
	return r;
}

int
listen_tcp(const struct listen_addr *addr, unsigned int count, int *fds,
    uint16_t *port)
{
	struct sockaddr_storage ss, bound;
	socklen_t blen = sizeof(bound);
	unsigned int i, opened = 0;
	int r = P8V_ERR_IO;

	if (addr == NULL || fds == NULL || count == 0 ||
	    count > LISTEN_TCP_MAX) {
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	if (addr->port != 0 && (r = probe_port_free(addr)) != 0)
		goto out;
	r = P8V_ERR_IO;
	ss = addr->ss;
	for (i = 0; i < count; i++) {
		if ((fds[i] = bind_one(&ss, addr->len, addr->host)) < 0)
			goto out;
		opened++;
		if (i == 0) {
			/* Port 0: the others must join the port the first
			 * one got. */
			if (getsockname(fds[0], (struct sockaddr *)&bound,
			    &blen) != 0) {
				log_errorf("listen", "getsockname: %s",
				    strerror(errno));
				goto out;
			}
			set_port(&ss, get_port(&bound));
		}
	}
	if (port != NULL)
		*port = get_port(&ss);
	r = 0;
 out:
	if (r != 0) {
		for (i = 0; i < opened; i++) {
			close(fds[i]);
			fds[i] = -1;
		}
	}
	return r;
}

/* 1 if something accepts connections on the unix socket at path. */
static int
socket_is_live(const struct sockaddr_un *sun)
{
	int fd, live;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return live;
}

/* The umask the unix socket is bound under: what LISTEN_UNIX_MODE leaves
 * out. */
#define LISTEN_UNIX_UMASK (0777 & ~LISTEN_UNIX_MODE)

struct bind_job {
	int fd;
	const struct sockaddr_un *sun;
	int err;                /* 0, or the errno of what failed */
	const char *step;       /* what failed */
	int shared_umask;       /* unshare was refused (errno in
	                           unshare_err): the process's umask was set */
	int unshare_err;
};

/*
 * Bind job->fd to job->sun with the file's mode already right when it
 * appears: the socket inode gets LISTEN_UNIX_MODE (fchmod), and bind()
 * masks it with the umask, which is set to LISTEN_UNIX_UMASK in this
 * thread only (unshare(CLONE_FS) gives it its own umask, so no other
 * thread creates a file under the wider one; the daemon's stays 077).
 * Runs in a thread of its own, which ends with its umask.
 *
 * Where unshare is refused (a container's seccomp profile: Docker's
 * default allows it only with CAP_SYS_ADMIN), the process's umask is set
 * around the bind and restored at once. That is safe at start-up, the
 * only time a socket is bound: the threads running then are the
 * libmicrohttpd threads of listeners already started, which create no
 * file (the store is opened after every listener).
 */
static void *
bind_with_mode(void *arg)
{
	struct bind_job *job = arg;
	mode_t old = 0;

	if (unshare(CLONE_FS) != 0) {
		if (errno != EPERM && errno != ENOSYS && errno != EINVAL) {
			job->err = errno;
			job->step = "unshare(CLONE_FS)";
			return NULL;
		}
		job->shared_umask = 1;
		job->unshare_err = errno;
	}
	old = umask(LISTEN_UNIX_UMASK);
	if (fchmod(job->fd, LISTEN_UNIX_MODE) != 0) {
		job->err = errno;
		job->step = "fchmod";
	} else if (bind(job->fd, (const struct sockaddr *)job->sun,
	    sizeof(*job->sun)) != 0) {
		job->err = errno;
		job->step = "bind";
	}
	if (job->shared_umask)
		(void)umask(old);
	return NULL;
}

/* Bind fd to sun as bind_with_mode does. 0 or P8V_ERR_IO (logged). */
static int
bind_unix(int fd, const struct sockaddr_un *sun)
{
	struct bind_job job = { fd, sun, 0, NULL, 0, 0 };
	pthread_t t;
	int e;

	if ((e = pthread_create(&t, NULL, bind_with_mode, &job)) != 0 ||
	    (e = pthread_join(t, NULL)) != 0) {
		log_errorf("listen", "cannot bind %s: a thread: %s",
		    sun->sun_path, strerror(e));
		return P8V_ERR_IO;
	}
	if (job.shared_umask)
		log_infof("listen", "%s bound under the process's umask, set "
		    "for the bind alone (unshare(CLONE_FS): %s)",
		    sun->sun_path, strerror(job.unshare_err));
	if (job.err != 0) {
		log_errorf("listen", "cannot bind %s: %s: %s", sun->sun_path,
		    job.step, strerror(job.err));
		return P8V_ERR_IO;
	}
	return 0;
}

int
listen_unix(const char *path, struct listen_unix *out)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd = -1, r = P8V_ERR_IO;

	if (out != NULL)
		out->fd = -1;
	memset(&sun, 0, sizeof(sun));
	if (path == NULL || out == NULL || path[0] == '\0' ||
	    strlen(path) >= sizeof(sun.sun_path)) {
		log_errorf("listen", "unix socket path is empty or longer "
		    "than %zu bytes", sizeof(sun.sun_path) - 1);
		r = P8V_ERR_INVALID_ARGUMENT;
		goto out;
	}
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_errorf("listen", "%s exists and is not a socket: "
			    "not touching it", path);
			r = P8V_ERR_EXISTS;
			goto out;
		}
		if (socket_is_live(&sun)) {
			log_errorf("listen", "%s: another process is "
			    "listening on it", path);
			r = P8V_ERR_BUSY;
			goto out;
		}
		if (unlink(path) != 0 && errno != ENOENT) {
			log_errorf("listen", "cannot remove stale socket %s: %s",
			    path, strerror(errno));
			goto out;
		}
		log_infof("listen", "removed stale socket %s", path);
	} else if (errno != ENOENT) {
		log_errorf("listen", "%s: %s", path, strerror(errno));
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_errorf("listen", "socket: %s", strerror(errno));
		goto out;
	}
	/* The file appears with its final mode: nothing is changed by path
	 * after bind (a chmod there would follow whatever was put at the
	 * path in between, and leave a moment with the wrong mode). */
	if ((r = bind_unix(fd, &sun)) != 0)
		goto out;
	r = P8V_ERR_IO;
	/* What is at the path now must be a socket of ours with that mode;
	 * anything else (replaced in between) is not ours to remove. */
	if (lstat(path, &st) != 0) {
		log_errorf("listen", "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 07777) != LISTEN_UNIX_MODE) {
		log_errorf("listen", "%s is not the socket just bound (a "
		    "socket of this user with mode %04o): refusing it", path,
		    (unsigned int)LISTEN_UNIX_MODE);
		goto out;
	}
	if (listen(fd, LISTEN_BACKLOG) != 0) {
		log_errorf("listen", "listen on %s: %s", path, strerror(errno));
		(void)unlink(path);
		goto out;
	}
	out->fd = fd;
	out->dev = st.st_dev;
	out->ino = st.st_ino;
	fd = -1;
	r = 0;
 out:
	if (fd >= 0)
		close(fd);
	return r;
}

void
listen_unix_remove(const char *path, const struct listen_unix *lu)
{
	struct stat st;

	if (path == NULL || lu == NULL)
		return;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == lu->dev && st.st_ino == lu->ino)
		(void)unlink(path);
}
