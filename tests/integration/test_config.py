#!/usr/bin/python3
"""test_config.py: how p8vaultd is configured and what it refuses:
options, environment, config file and their precedence; --dev; master-key
sources; the plain-HTTP policy; the signing socket's file."""

import os
import socket
import stat
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Runner, check, check_eq,  # noqa
                     write_master_key)

runner = Runner("test_config")


def error_text(d):
    """Every message of error lines, joined."""
    return "\n".join(l.get("msg", "") for l in d.logs
                     if l.get("level") == "error")


def refused(args, status, needle, **kw):
    """The daemon exits by itself with status, logging needle."""
    with Daemon(args=args, **kw) as d:
        rc, _ = d.run_to_exit()
        check_eq(rc, status, "exit status for %r" % (args,))
        check(needle in error_text(d), "no %r in the errors: %r" %
              (needle, error_text(d)))
        d.check_logs()


@runner.test
def help_and_version():
    with Daemon(args=["--help"], listen=None, sign_socket=False) as d:
        rc, out = d.run_to_exit()
        check_eq(rc, 0, "--help exit status")
        for word in ("--master-key-file", "P8VAULT_MASTER_KEY_FILE",
                     "--sign-socket", "--insecure-http", "--config",
                     "--dev"):
            check(word in out, "--help does not mention %s" % word)
    with Daemon(args=["--version"], listen=None, sign_socket=False) as d:
        rc, out = d.run_to_exit()
        check_eq(rc, 0, "--version exit status")
        check(out.startswith("p8vaultd "), "--version: %r" % out)


@runner.test
def usage_errors_exit_2():
    cases = [
        (["--no-such-option"], "unknown option"),
        (["--threads", "0"], "whole number"),
        (["--threads", "abc"], "whole number"),
        (["--connection-timeout", "99999"], "whole number"),
        (["--log-level", "loud"], "log level"),
        (["--listen", "localhost:80"], "numeric address"),
        (["--listen", "127.0.0.1"], "numeric address"),
        (["--listen", "127.0.0.1:65536"], "numeric address"),
        (["--listen", "[::1]80"], "numeric address"),
        (["--tls-cert", "/nonexistent"], "go together"),
        (["stray-argument"], "unexpected argument"),
        (["--listen", "none"], "nothing to serve"),
    ]
    for args, needle in cases:
        # --listen none with no signing socket: nothing to serve.
        refused(args, 2, needle, listen=None,
                sign_socket=(args != ["--listen", "none"]))


@runner.test
def state_is_required():
    with Daemon(args=["--master-key-file", "/dev/null"]) as d:
        d.argv = [a for a in d.argv]
        i = d.argv.index("--state")
        del d.argv[i:i + 2]
        rc, _ = d.run_to_exit()
        check_eq(rc, 2, "exit status without --state")
        check("no state directory" in error_text(d), error_text(d))


@runner.test
def plain_http_on_a_public_address_is_refused():
    refused([], 2, "refusing to serve plain HTTP", listen="0.0.0.0:0")
    refused(["--sign-listen", "0.0.0.0:0"], 2, "refusing to serve plain",
            sign_socket=False)
    refused([], 2, "refusing", listen="[::]:0")
    # Loopback in every spelling is fine; --insecure-http opens the rest.
    for listen in ("127.0.0.1:0", "127.3.4.5:0"):
        with Daemon(listen=listen).start() as d:
            check(d.port, "no port for %s" % listen)
            d.stop()
    with Daemon(args=["--insecure-http"], listen="0.0.0.0:0").start() as d:
        check_eq(d.get("/healthz").status, 200, "--insecure-http")
        check_eq(d.listening["portal"]["address"], "0.0.0.0", "address")
        d.stop()


@runner.test
def ipv6_loopback():
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        return "skip"
    with Daemon(listen="[::1]:0").start() as d:
        check_eq(d.listening["portal"]["address"], "::1", "address")
        conn = __import__("http.client").client.HTTPConnection(
            "::1", d.port, timeout=5)
        conn.request("GET", "/healthz")
        check_eq(conn.getresponse().status, 200, "GET over IPv6")
        conn.close()
        d.stop()


@runner.test
def environment_and_config_file_and_precedence():
    tmp = tempfile.mkdtemp(prefix="p8v-cfg-")
    key = os.path.join(tmp, "k")
    write_master_key(key)
    cfg = os.path.join(tmp, "p8vault.conf")
    with open(cfg, "w") as f:
        f.write("# p8vaultd configuration\n\n"
                "state = %s/from-file\n"
                "master-key-file = %s\n"
                "listen = 127.0.0.1:1\n"           # overridden below
                "log-level = debug\n"
                "insecure-http = no\n" % (tmp, key))
    # File only (plus --listen on the command line, which wins).
    with Daemon(args=["--config", cfg], master_key=False,
                tmpdir=tmp) as d:
        d.argv = [a for a in d.argv]
        i = d.argv.index("--state")
        del d.argv[i:i + 2]
        d.start()
        check(os.path.isdir(os.path.join(tmp, "from-file")),
              "state from the config file not used")
        d.get("/healthz")
        d.wait_log(lambda l: l.get("event") == "request", 5,
                   "debug request line (log-level from the file)")
        d.stop()
    # The environment beats the file; the command line beats both.
    env = {"P8VAULT_STATE": os.path.join(tmp, "from-env"),
           "P8VAULT_LISTEN": "127.0.0.1:2",
           "P8VAULT_CONFIG": cfg}
    with Daemon(master_key=False, env=env, tmpdir=tmp) as d:
        i = d.argv.index("--state")
        del d.argv[i:i + 2]
        d.start()
        check(os.path.isdir(os.path.join(tmp, "from-env")),
              "P8VAULT_STATE not used over the file")
        check(d.port not in (1, 2), "command-line --listen did not win")
        d.stop()
    # Errors name the file and line.
    with open(cfg, "a") as f:
        f.write("no-such-key = 1\n")
    refused(["--config", cfg], 2, "p8vault.conf:8: unknown key")
    with open(cfg, "w") as f:
        f.write("state\n")
    refused(["--config", cfg], 2, "p8vault.conf:1: expected")
    with open(cfg, "w") as f:
        f.write("threads = 2\nthreads = 3\n")
    refused(["--config", cfg], 2, "given twice")
    refused(["--config", os.path.join(tmp, "missing.conf")], 2,
            "missing.conf")
    # A bad environment value is named.
    refused([], 2, "P8VAULT_THREADS", env={"P8VAULT_THREADS": "-1"})
    __import__("shutil").rmtree(tmp, ignore_errors=True)


@runner.test
def several_master_keys_from_the_environment():
    tmp = tempfile.mkdtemp(prefix="p8v-mk-")
    k1, k2 = os.path.join(tmp, "k1"), os.path.join(tmp, "k2")
    write_master_key(k1)
    write_master_key(k2)
    with Daemon(master_key=False, tmpdir=tmp,
                env={"P8VAULT_MASTER_KEY_FILE": k1 + ":" + k2}).start() as d:
        sources = [l.get("source") for l in d.log_events("master_key")]
        check_eq(sources, [k1, k2], "keys loaded")
        d.stop()
    __import__("shutil").rmtree(tmp, ignore_errors=True)


@runner.test
def master_key_sources_and_refusals():
    # None at all: a configuration error.
    refused([], 2, "no master key", master_key=False)
    # The systemd credential when no file is named.
    tmp = tempfile.mkdtemp(prefix="p8v-cred-")
    write_master_key(os.path.join(tmp, "p8vault-master-key"))
    with Daemon(master_key=False, env={"CREDENTIALS_DIRECTORY": tmp}) \
            .start() as d:
        check(any("credential" in (l.get("source") or "")
                  for l in d.log_events("master_key")),
              "credential not used")
        d.stop()
    __import__("shutil").rmtree(tmp, ignore_errors=True)
    # A key file others can read, or a missing one: start-up fails.
    with Daemon() as d:
        os.chmod(d.key_file, 0o644)
        rc, _ = d.run_to_exit()
        check_eq(rc, 1, "exit status with a 0644 key file")
        check("master key" in error_text(d), error_text(d))
        d.check_logs()
    refused(["--master-key-file", "/nonexistent/key"], 1, "/nonexistent/key")


@runner.test
def a_different_master_key_is_refused():
    with Daemon() as d:
        d.start()
        d.stop()
        os.unlink(d.key_file)
        write_master_key(d.key_file)
        d2 = Daemon(tmpdir=d.tmp)
        rc, _ = d2.run_to_exit()
        check_eq(rc, 1, "exit status with another master key")
        check("master_key_mismatch" in "\n".join(d2.lines) or
              "matches" in error_text(d2), error_text(d2))
        d2.check_logs()


@runner.test
def dev_mode_creates_a_development_key():
    tmp = tempfile.mkdtemp(prefix="p8v-dev-")
    with Daemon(args=["--dev"], master_key=False, cwd=tmp, tmpdir=tmp,
                listen="127.0.0.1:0", sign_socket=False) as d:
        d.start()
        key = os.path.join(tmp, "var", "dev-master.key")
        check(os.path.isfile(key), "no var/dev-master.key")
        check_eq(stat.S_IMODE(os.stat(key).st_mode), 0o600, "key mode")
        check_eq(stat.S_IMODE(os.stat(os.path.join(tmp, "var")).st_mode),
                 0o700, "var mode")
        check(os.path.exists(os.path.join(tmp, "var", "sign.sock")),
              "no var/sign.sock")
        check(any("DEVELOPMENT master key" in l and not l.startswith("{")
                  for l in d.lines), "no plain warning line on stderr")
        check(any(l.get("event") == "dev_master_key" and
                  l.get("level") == "warn" for l in d.logs),
              "no JSON warning")
        check_eq(d.get("/readyz").status, 200, "ready")
        with open(key) as f:
            d.key_hex = f.read().strip()
        d.stop(allow_plain=("DEVELOPMENT master key",))
        # The second start uses the key it made, and says so.
        with open(key) as f:
            first = f.read()
        d2 = Daemon(args=["--dev"], master_key=False, cwd=tmp, tmpdir=tmp,
                    listen="127.0.0.1:0", sign_socket=False).start()
        check(not any(not l.startswith("{") for l in d2.lines),
              "plain line on the second start")
        check(d2.log_events("dev_master_key"), "no warning on reuse")
        with open(key) as f:
            check_eq(f.read(), first, "the dev key changed")
        d2.stop()
    __import__("shutil").rmtree(tmp, ignore_errors=True)


@runner.test
def signing_socket_file():
    with Daemon() as d:
        # A stale socket (nobody listening) is replaced.
        s = socket.socket(socket.AF_UNIX)
        s.bind(d.sock_path)
        s.close()
        d.start()
        mode = os.stat(d.sock_path).st_mode
        check(stat.S_ISSOCK(mode), "not a socket")
        check_eq(stat.S_IMODE(mode), 0o660, "socket mode")
        check_eq(os.stat(d.sock_path).st_gid, os.getegid(), "socket group")
        # A second daemon on the same socket is refused, the first goes on.
        other = Daemon(args=["--sign-socket", d.sock_path], sign_socket=False)
        rc, _ = other.run_to_exit()
        check_eq(rc, 1, "second daemon on a live socket")
        check("listening on it" in error_text(other), error_text(other))
        other.close()
        check_eq(d.get("/healthz", unix=True).status, 200, "first daemon")
        d.stop()
        check(not os.path.exists(d.sock_path), "socket not removed")
    with Daemon() as d:
        # Anything else at the path is left alone.
        with open(d.sock_path, "w") as f:
            f.write("precious")
        rc, _ = d.run_to_exit()
        check_eq(rc, 1, "regular file at the socket path")
        with open(d.sock_path) as f:
            check_eq(f.read(), "precious", "the file was touched")


# inotify(7): a watch on the socket's directory sees the file created, and
# any later change of its mode (IN_ATTRIB), however quick.
IN_ATTRIB, IN_CREATE, IN_NONBLOCK = 0x4, 0x100, 0o4000


def inotify_events(fd):
    """[(mask, name)] read so far from an inotify fd (non-blocking)."""
    import struct
    out, data = [], b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    i = 0
    while i < len(data):
        _, mask, _, n = struct.unpack_from("iIII", data, i)
        name = data[i + 16:i + 16 + n].rstrip(b"\0").decode()
        out.append((mask, name))
        i += 16 + n
    return out


@runner.test
def signing_socket_mode_is_set_without_a_window():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    with Daemon() as d:
        fd = libc.inotify_init1(IN_NONBLOCK)
        check(fd >= 0, "inotify_init1: errno %d" % ctypes.get_errno())
        try:
            wd = libc.inotify_add_watch(
                fd, os.path.dirname(d.sock_path).encode(),
                IN_CREATE | IN_ATTRIB)
            check(wd >= 0, "inotify_add_watch: errno %d" %
                  ctypes.get_errno())
            d.start()
            name = os.path.basename(d.sock_path)
            events = [m for m, n in inotify_events(fd) if n == name]
        finally:
            os.close(fd)
        check(any(m & IN_CREATE for m in events),
              "the watch did not see the socket created: %r" % events)
        # A chmod (or chown) after bind() is an IN_ATTRIB on the file:
        # the mode must be right from the moment the file exists.
        check(not any(m & IN_ATTRIB for m in events),
              "the socket's attributes changed after it was created "
              "(chmod by path after bind): %r" % events)
        st = os.lstat(d.sock_path)
        check(stat.S_ISSOCK(st.st_mode), "not a socket")
        check_eq(oct(stat.S_IMODE(st.st_mode)), oct(0o660), "socket mode")
        # The daemon's own umask stayed 077: only the bind saw another.
        with open("/proc/%d/status" % d.proc.pid) as f:
            umask = [l.split()[1] for l in f if l.startswith("Umask:")]
        check_eq(umask, ["0077"], "the daemon's umask")
        check_eq(d.get("/healthz", unix=True).status, 200, "the socket")
        d.stop()

# unshare(2)'s number, for the seccomp filter below.
UNSHARE_NR = {"x86_64": 272, "aarch64": 97}


def refuse_unshare():
    """preexec_fn: a seccomp filter that fails unshare(2) with EPERM, as a
    container's default profile does (Docker's, without CAP_SYS_ADMIN)."""
    import ctypes
    import platform
    import struct
    nr = UNSHARE_NR[platform.machine()]
    # BPF: load the syscall number; unshare -> ERRNO(EPERM); else ALLOW.
    insns = [(0x20, 0, 0, 0),                   # ld [0] (nr)
             (0x15, 0, 1, nr),                  # jeq nr, +0, +1
             (0x06, 0, 0, 0x00050000 | 1),      # ret ERRNO | EPERM
             (0x06, 0, 0, 0x7fff0000)]          # ret ALLOW
    prog = b"".join(struct.pack("HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(prog)

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    fprog = Fprog(len(insns), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                       ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp")


@runner.test
def signing_socket_mode_where_unshare_is_refused():
    import ctypes
    import platform
    check(platform.machine() in UNSHARE_NR, "no unshare number for %s" %
          platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    with Daemon(preexec_fn=refuse_unshare) as d:
        fd = libc.inotify_init1(IN_NONBLOCK)
        check(fd >= 0, "inotify_init1")
        try:
            check(libc.inotify_add_watch(
                fd, os.path.dirname(d.sock_path).encode(),
                IN_CREATE | IN_ATTRIB) >= 0, "inotify_add_watch")
            d.start()
            name = os.path.basename(d.sock_path)
            events = [m for m, n in inotify_events(fd) if n == name]
        finally:
            os.close(fd)
        check(any("bound under the process's umask" in l.get("msg", "")
                  for l in d.logs), "unshare was not refused: the filter "
              "proves nothing")
        check(any(m & IN_CREATE for m in events), "no IN_CREATE")
        check(not any(m & IN_ATTRIB for m in events),
              "chmod after bind: %r" % events)
        check_eq(oct(stat.S_IMODE(os.lstat(d.sock_path).st_mode)),
                 oct(0o660), "socket mode")
        with open("/proc/%d/status" % d.proc.pid) as f:
            umask = [l.split()[1] for l in f if l.startswith("Umask:")]
        check_eq(umask, ["0077"], "the daemon's umask, restored")
        check_eq(d.get("/healthz", unix=True).status, 200, "the socket")
        d.stop()

@runner.test
def port_in_use_fails_cleanly():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        refused([], 1, "cannot bind", listen="127.0.0.1:%d" % port)
    finally:
        blocker.close()
    # Another p8vaultd on the port: SO_REUSEPORT must not let a second one
    # join it and split the connections.
    with Daemon().start() as first:
        refused([], 1, "cannot bind", listen="127.0.0.1:%d" % first.port)
        check_eq(first.get("/healthz").status, 200, "the first daemon")
        first.stop()
    # A restart on the same port right after a stop works (TIME_WAIT).
    with Daemon().start() as d:
        p = d.port
        conn = d.tcp()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        d.stop()
        conn.close()
        again = Daemon(listen="127.0.0.1:%d" % p, tmpdir=d.tmp).start()
        check_eq(again.port, p, "port after restart")
        again.stop()


if __name__ == "__main__":
    runner.main()
