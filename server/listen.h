/*
 * listen.h: the daemon's listening sockets: TCP (one SO_REUSEPORT socket
 * per thread, see the threading comment in api/http.c) and the unix socket
 * of the signing API.
 */
#ifndef P8V_SERVER_LISTEN_H
#define P8V_SERVER_LISTEN_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The backlog of every listening socket: the kernel caps it at
 * net.core.somaxconn; asking for that much lets bursts queue instead of
 * being refused. */
#define LISTEN_BACKLOG 4096
/* The mode of the signing socket: the daemon's user and group may connect
 * (provider daemons join the group), nobody else. */
#define LISTEN_UNIX_MODE 0660

/* A parsed HOST:PORT. */
struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char host[INET6_ADDRSTRLEN];   /* numeric, without brackets */
	uint16_t port;                 /* 0: the kernel picks one */
};

/*
 * Parse "A.B.C.D:PORT" or "[IPv6]:PORT" (numeric addresses only: a name
 * could resolve to several addresses, or to a different one tomorrow; PORT
 * 0..65535, 0 picks a free port).
 * Returns 0 or P8V_ERR_INVALID_ARGUMENT.
 */
int listen_addr_parse(const char *spec, struct listen_addr *out);

/* 1 for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104, else 0. */
int listen_addr_is_loopback(const struct listen_addr *addr);

/*
 * Bind `count` (1..64) TCP sockets to addr with SO_REUSEPORT, listening,
 * non-blocking, close-on-exec, into fds[0..count). With port 0 the first
 * socket picks a free port and the others join it. *port gets the port.
 * IPv6 sockets are IPv6-only. A fixed port that anything listens on
 * already (even another p8vaultd with SO_REUSEPORT) is refused. On failure
 * no fd is left open.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT, P8V_ERR_IO (socket, bind or listen
 * failed, e.g. address in use: logged).
 */
int listen_tcp(const struct listen_addr *addr, unsigned int count, int *fds,
    uint16_t *port);

/* A unix socket the daemon created, to be removed when it stops. */
struct listen_unix {
	int fd;
	dev_t dev;
	ino_t ino;
};

/*
 * Create the unix socket at path, listening, non-blocking, close-on-exec,
 * mode LISTEN_UNIX_MODE, owned by the daemon's user and group. The mode is
 * the file's from the moment bind() creates it (bound in a short-lived
 * thread with its own umask; the daemon's stays 077): nothing is changed
 * by path afterwards, and what is at the path after bind() must be a
 * socket of this user with that mode. A socket file already there is
 * removed first if nothing answers on it (a stale socket of a dead
 * daemon); any other kind of file is left alone.
 * Returns 0, P8V_ERR_INVALID_ARGUMENT (path empty or longer than a
 * sockaddr_un holds), P8V_ERR_BUSY (a live process listens on path),
 * P8V_ERR_EXISTS (path exists and is not a socket), P8V_ERR_IO (logged).
 */
int listen_unix(const char *path, struct listen_unix *out);

/* Remove path if it is still the socket listen_unix created (not one a
 * newer daemon put there since). */
void listen_unix_remove(const char *path, const struct listen_unix *lu);

#endif /* P8V_SERVER_LISTEN_H */
