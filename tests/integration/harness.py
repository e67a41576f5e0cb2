"""harness.py: start the real p8vaultd and speak HTTP to it.

Standard library only (runs with /usr/bin/python3). The daemon binary is
taken from $P8VAULTD (set by meson). Each Daemon lives in its own temporary
directory with its own master key (64 hex digits, mode 0600), listens on
127.0.0.1:0 (the port is read from its "listening" log line) and on a unix
socket in that directory, and is stopped with SIGTERM.

Every line the daemon writes on stderr is collected; Daemon.check_logs()
asserts that each is a JSON object and that none holds the master key.

A test script builds a Runner, registers test functions with @runner.test,
and ends with runner.main(): each test (a case) runs once and the script
speaks TAP on stdout, which meson parses (protocol 'tap' in
tests/meson.build), so that every case is counted and named:

    TAP version 13
    1..N                    the plan, before any case runs
    ok 1 name               passed
    ok 2 name # SKIP        the case returned "skip"
    not ok 3 name           failed; its reason goes to stderr
    Bail out! ...           something outside a case's reach (SystemExit,
                            KeyboardInterrupt) stopped the script

Everything else (the cases' own prints, the human-readable "ok   name
(1.2s)" / "FAIL name: reason" lines, tracebacks, and the output of child
processes that inherit fd 1) goes to stderr: main() points fd 1 at stderr
and keeps the real stdout for TAP alone. A script that dies half-way
leaves fewer results than its plan, which meson reports as an error; the
exit status is also non-zero if a case failed or none passed. A script
that cannot run at all here (no root, a sanitizer build) calls
runner.skip_all(reason) instead of main(): the plan "1..0 # SKIP reason".

With P8V_OPENAPI_RECORD=DIR (tests/meson.build sets it), every answer
request(), read_response(..., sent=) and raw_exchange() get from the
daemon under test is recorded in DIR, and main() adds a last case,
answers_match_openapi, that validates them all against docs/openapi.yaml
(tests/openapi/validate_answers.mjs, ajv): a route, status or body the
spec does not describe fails the script.
"""

import atexit
import base64
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# How long a daemon may take to start and become ready (generous: the
# sanitizer build is slower).
START_TIMEOUT_S = 20
# How long a daemon may take to exit after SIGTERM.
STOP_TIMEOUT_S = 20
# Socket timeout of the HTTP helpers.
HTTP_TIMEOUT_S = 10


class TestFailure(Exception):
    pass


# Every daemon started and not yet reaped: killed (and its temporary
# directory removed) when the script exits, so that a failing test never
# leaves one running.
_live = set()


@atexit.register
def _kill_live():
    for d in list(_live):
        d.close()


def check(cond, msg):
    """Fail the current test with msg unless cond."""
    if not cond:
        raise TestFailure(msg)


def check_eq(got, want, what):
    if got != want:
        raise TestFailure("%s: got %r, want %r" % (what, got, want))


def daemon_path():
    path = os.environ.get("P8VAULTD")
    if not path or not os.access(path, os.X_OK):
        print("P8VAULTD is not set to the p8vaultd binary", file=sys.stderr)
        sys.exit(2)
    return os.path.abspath(path)


def write_master_key(path):
    """A fresh master key file (64 hex digits), mode 0600; returns the hex."""
    key = os.urandom(32).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path, timeout=HTTP_TIMEOUT_S):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # dict, lower-case names
        self.body = body                # bytes
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "Response(%d, %r)" % (self.status, self.body[:200])


def request(conn, method, path, body=None, headers=None):
    """One request on an http.client connection (kept open)."""
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()},
                    data)
    record_answer(method, path, resp)
    return resp


# -- answers recorded for the OpenAPI check ---------------------------------

# Where answers go (P8V_OPENAPI_RECORD); one file per script, shared with
# the processes it starts (P8V_OPENAPI_RECORD_FILE, inherited).
_RECORD_DIR = os.environ.get("P8V_OPENAPI_RECORD")
# Only the daemon under test: test_compat.py points P8VAULTD at an old
# build for a while, whose answers the current spec does not describe.
_RECORD_DAEMON = os.environ.get("P8VAULTD")
_record_lock = threading.Lock()
_record_fd = None


if _RECORD_DIR and not os.environ.get("P8V_OPENAPI_RECORD_FILE"):
    os.makedirs(_RECORD_DIR, exist_ok=True)
    os.environ["P8V_OPENAPI_RECORD_FILE"] = os.path.join(
        _RECORD_DIR, "%s.%d.jsonl" % (os.path.splitext(os.path.basename(
            sys.argv[0] or "python"))[0], os.getpid()))
    # A file of an earlier run whose process had the same id.
    if os.path.exists(os.environ["P8V_OPENAPI_RECORD_FILE"]):
        os.unlink(os.environ["P8V_OPENAPI_RECORD_FILE"])


def answer_record(method, target, resp):
    """The record of resp (a Response) to method target: one JSON object,
    as tests/openapi/validate_answers.mjs reads it."""
    a = {"method": method, "target": target, "status": resp.status,
         "headers": {k: v for k, v in resp.headers.items()
                     if k in ("content-type", "retry-after", "allow",
                              "www-authenticate")}}
    try:
        a["body"] = resp.body.decode("utf-8")
    except UnicodeDecodeError:
        a["body_b64"] = base64.b64encode(resp.body).decode()
    return a


def record_answer(method, target, resp):
    """Keep resp (a Response) to method target for the OpenAPI check."""
    global _record_fd
    if not _RECORD_DIR or os.environ.get("P8VAULTD") != _RECORD_DAEMON:
        return
    line = (json.dumps(answer_record(method, target, resp)) + "\n").encode()
    with _record_lock:
        if _record_fd is None:
            _record_fd = os.open(os.environ["P8V_OPENAPI_RECORD_FILE"],
                                 os.O_WRONLY | os.O_CREAT |
                                 os.O_APPEND, 0o644)
        os.write(_record_fd, line)


def _request_line(sent):
    """(method, target) of the first request line in sent, or None."""
    if isinstance(sent, str):
        sent = sent.encode("latin-1", "replace")
    line = sent.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(line) != 3 or not line[2].startswith("HTTP/"):
        return None
    return line[0], line[1]


def record_exchange(sent, resp):
    """Keep the answer resp (status, headers, body) to the raw request
    bytes sent, if sent starts with a request line."""
    req = _request_line(sent) if sent else None
    if req is not None and resp is not None and resp.status is not None:
        record_answer(req[0], req[1], resp)


# npm packages of the OpenAPI checks, pinned; they run on Debian 12's
# node 18. ajv's 2020-12 dialect is OpenAPI 3.1's.
OPENAPI_NPM = ["ajv@8.17.1", "ajv-formats@3.0.1", "yaml@2.8.1"]
# An npm install of a few packages; this only bounds a hang.
NPM_TIMEOUT_S = 300


def npm_modules(name, packages, probe):
    """node_modules holding packages, installed once per build tree into
    $P8V_BUILD_ROOT/name (under a lock, renamed into place when complete)
    and reused; probe is a path inside node_modules that proves it."""
    root = os.environ.get("P8V_BUILD_ROOT") or tempfile.gettempdir()
    dest = os.path.join(root, name)
    mods = os.path.join(dest, "node_modules")
    if os.path.exists(os.path.join(mods, probe)):
        return mods
    with open(dest + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(mods, probe)):
            return mods
        tmp = tempfile.mkdtemp(prefix=name + ".tmp-", dir=root)
        proc = subprocess.run(
            ["npm", "install", "--prefix", tmp, "--no-audit", "--no-fund",
             "--no-save"] + list(packages), capture_output=True, text=True,
            timeout=NPM_TIMEOUT_S, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise TestFailure("npm install %s failed: %s" % (
                " ".join(packages), proc.stderr[-500:]))
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    return mods


def source_root():
    return os.environ.get("P8V_SOURCE_ROOT") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def validate_answers(files):
    """Run tests/openapi/validate_answers.mjs over answer files; returns
    (ok, its output)."""
    mods = npm_modules("npm-openapi", OPENAPI_NPM,
                       os.path.join("ajv-formats", "package.json"))
    root = source_root()
    proc = subprocess.run(
        ["node", os.path.join(root, "tests", "openapi",
                              "validate_answers.mjs"), mods,
         os.path.join(root, "docs", "openapi.yaml")] + list(files),
        capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def _check_recorded_answers():
    """The last case of a script that recorded answers."""
    path = os.environ.get("P8V_OPENAPI_RECORD_FILE")
    if not path or not os.path.exists(path):
        print("openapi: no answers recorded")
        return
    ok, out = validate_answers([path])
    print(out)
    check(ok, "answers that do not fit docs/openapi.yaml (kept in %s)" % path)
    os.unlink(path)


class Daemon:
    """One p8vaultd in its own temporary directory."""

    def __init__(self, args=(), listen="127.0.0.1:0", sign_socket=True,
                 master_key=True, env=None, cwd=None, tmpdir=None,
                 preexec_fn=None):
        self.tmp = tmpdir or tempfile.mkdtemp(prefix="p8v-it-")
        self.own_tmp = tmpdir is None
        self.state = os.path.join(self.tmp, "state")
        self.key_hex = None
        self.key_file = os.path.join(self.tmp, "master.key")
        if master_key and not os.path.exists(self.key_file):
            self.key_hex = write_master_key(self.key_file)
        elif master_key:
            with open(self.key_file) as f:
                self.key_hex = f.read().strip()
        self.sock_path = os.path.join(self.tmp, "sign.sock") \
            if sign_socket else None
        self.argv = [daemon_path()]
        if cwd is None:
            self.argv += ["--state", self.state]
            if master_key:
                self.argv += ["--master-key-file", self.key_file]
        if listen is not None:
            self.argv += ["--listen", listen]
        if self.sock_path is not None:
            self.argv += ["--sign-socket", self.sock_path]
        self.argv += list(args)
        self.env = dict(os.environ)
        # A P8VAULT_* variable of the caller must not leak into a test.
        for k in list(self.env):
            if k.startswith("P8VAULT_") or k == "CREDENTIALS_DIRECTORY":
                del self.env[k]
        self.env.update(env or {})
        self.cwd = cwd or self.tmp
        self.preexec_fn = preexec_fn
        self.proc = None
        self.lines = []                 # raw stderr lines (str)
        self.logs = []                  # parsed JSON lines
        self.bad_lines = []             # lines that are not JSON objects
        self.port = None
        self.listening = {}             # listener -> log line
        self.returncode = None
        self._cond = threading.Condition()
        self._reader = None

    # -- process ----------------------------------------------------------

    def _spawn(self):
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self.env, cwd=self.cwd,
            preexec_fn=self.preexec_fn)
        _live.add(self)
        self._reader = threading.Thread(target=self._read_stderr,
                                        daemon=True)
        self._reader.start()

    def kill(self):
        """SIGKILL and reap, if still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        _live.discard(self)

    def start(self, wait_ready=True):
        """Start; with wait_ready, return once /readyz answers 200. A
        daemon that fails to get there is killed before the failure is
        raised (a `with Daemon().start()` never enters its block then)."""
        self._spawn()
        try:
            self._wait_started(wait_ready)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_started(self, wait_ready):
        if wait_ready:
            # Every listener is up once "started" is logged; then /readyz
            # says when the store is open (503 "starting" until then).
            self.wait_log(lambda l: l.get("event") == "started",
                          START_TIMEOUT_S, "the daemon to start")
            line = self.listening.get("portal")
            if line is not None:
                self.port = line["port"]
            self.wait_ready()

    def _readyz(self):
        """GET /readyz on whichever listener can be reached plainly."""
        if "sign" in self.listening and \
                self.listening["sign"].get("socket"):
            conn = UnixHTTPConnection(self.listening["sign"]["socket"]
                                      if os.path.isabs(
                                          self.listening["sign"]["socket"])
                                      else os.path.join(
                                          self.cwd,
                                          self.listening["sign"]["socket"]))
        elif self.listening.get("portal", {}).get("tls"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", self.port,
                                               timeout=HTTP_TIMEOUT_S,
                                               context=ctx)
        else:
            conn = self.tcp()
        try:
            return request(conn, "GET", "/readyz")
        finally:
            conn.close()

    def wait_ready(self, timeout=START_TIMEOUT_S):
        """Poll GET /readyz (TCP, else the unix socket) until 200."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure("daemon exited (%s) before it was ready; "
                                  "stderr:\n%s" % (self.proc.returncode,
                                                   "\n".join(self.lines[-20:])))
            try:
                last = self._readyz()
                if last.status == 200:
                    return last
                check_eq(last.status, 503, "/readyz while not ready")
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise TestFailure("not ready after %ss: %r" % (timeout, last))

    def _read_stderr(self):
        for raw in self.proc.stderr:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(text)
                try:
                    obj = json.loads(text)
                    if not isinstance(obj, dict):
                        raise ValueError("not an object")
                    self.logs.append(obj)
                    if obj.get("event") == "listening":
                        self.listening[obj.get("listener")] = obj
                except ValueError:
                    self.bad_lines.append(text)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_log(self, pred, timeout, what):
        """Wait for a log line matching pred; returns it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for l in self.logs:
                    if pred(l):
                        return l
                if self.proc.poll() is not None and \
                        not self._reader.is_alive():
                    raise TestFailure("daemon exited (%s) waiting for %s; "
                                      "stderr:\n%s" % (
                                          self.proc.returncode, what,
                                          "\n".join(self.lines[-20:])))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure("timed out waiting for %s; stderr:\n"
                                      "%s" % (what,
                                              "\n".join(self.lines[-20:])))
                self._cond.wait(min(left, 0.2))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=STOP_TIMEOUT_S):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("daemon did not exit within %ss" % timeout)
        _live.discard(self)
        self._reader.join(5)
        return self.returncode

    def stop(self, expect=0, allow_plain=()):
        """SIGTERM, wait, check the exit status and the logs."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.signal(signal.SIGTERM)
        rc = self.wait()
        check_eq(rc, expect, "exit status after SIGTERM")
        self.check_logs(allow_plain)
        return rc

    def run_to_exit(self, timeout=START_TIMEOUT_S):
        """Start and wait for the daemon to exit by itself (refusals);
        returns (exit status, stdout)."""
        self._spawn()
        try:
            # Waiting first: a daemon that does not exit must not block a
            # read of its stdout (its output, --help at most, fits a pipe).
            rc = self.proc.wait(timeout)
            out = self.proc.stdout.read()
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("daemon did not exit by itself")
        _live.discard(self)
        self._reader.join(5)
        self.returncode = rc
        return rc, out.decode("utf-8", "replace")

    def close(self):
        self.kill()
        if self.proc is not None:
            for f in (self.proc.stdout, self.proc.stderr):
                if f is not None:
                    f.close()
        if self.own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- logs -------------------------------------------------------------

    def check_logs(self, allow_plain=()):
        """Every stderr line is a JSON object (except lines containing one
        of allow_plain), and none holds the master key."""
        bad = [l for l in self.bad_lines
               if not any(p in l for p in allow_plain)]
        check(not bad, "stderr lines that are not JSON objects: %r" % bad[:5])
        if self.key_hex:
            for l in self.lines:
                check(self.key_hex not in l.lower(),
                      "a log line holds the master key")
        for l in self.logs:
            for field in ("ts", "level", "event", "msg"):
                check(field in l, "log line without %r: %r" % (field, l))

    def log_events(self, event):
        with self._cond:
            return [l for l in self.logs if l.get("event") == event]

    # -- HTTP -------------------------------------------------------------

    def tcp(self, timeout=HTTP_TIMEOUT_S):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def unix(self, timeout=HTTP_TIMEOUT_S):
        return UnixHTTPConnection(self.sock_path, timeout=timeout)

    def get(self, path, unix=False, method="GET", body=None, headers=None):
        conn = self.unix() if unix else self.tcp()
        try:
            return request(conn, method, path, body=body, headers=headers)
        finally:
            conn.close()

    def raw(self, data, timeout=HTTP_TIMEOUT_S, source=None):
        """Send raw bytes on a new TCP connection, read until the server
        closes or timeout; returns the bytes read (b"" if closed at once)."""
        return raw_exchange(("127.0.0.1", self.port), data, timeout, source)

    def connect_raw(self, source=None, timeout=HTTP_TIMEOUT_S):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", self.port))
        return s


def raw_exchange(addr, data, timeout=HTTP_TIMEOUT_S, source=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect(addr)
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = read_all(s, timeout)
        record_exchange(data, parse_raw_response(got))
        return got
    finally:
        s.close()


def parse_raw_response(buf):
    """Response for the first answer in buf (read until close), or None."""
    if not buf.startswith(b"HTTP/1.") or b"\r\n\r\n" not in buf:
        return None
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = headers.get("content-length")
    return Response(status, headers, rest[:int(n)] if n is not None and
                    n.isdigit() else rest)


def read_all(s, timeout=HTTP_TIMEOUT_S):
    """Read until EOF, reset or timeout."""
    s.settimeout(timeout)
    chunks = []
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    except (ConnectionResetError, socket.timeout):
        pass
    return b"".join(chunks)


def read_response(s, timeout=HTTP_TIMEOUT_S, sent=None):
    """Read one HTTP response (with Content-Length) from a raw socket;
    sent (the request's bytes, or its head) names it for the OpenAPI
    record."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise TestFailure("connection closed before a response: %r" % buf)
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        b = s.recv(65536)
        if not b:
            break
        rest += b
    resp = Response(status, headers, rest[:n])
    if sent is not None:
        record_exchange(sent, resp)
    return resp


def status_of(raw):
    """The status code of a raw HTTP response, or None."""
    if not raw.startswith(b"HTTP/1."):
        return None
    return int(raw.split(b" ", 2)[1])


def https_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


# The TAP stream: the process's original stdout, once _tap_stream() has
# pointed fd 1 (sys.stdout and every child that inherits it) at stderr.
_tap = None


def _tap_stream():
    global _tap
    if _tap is None:
        sys.stdout.flush()
        fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout.reconfigure(line_buffering=True)
        _tap = os.fdopen(fd, "w", buffering=1)
        _tap.write("TAP version 13\n")
    return _tap


def _tap_name(name):
    """A case name as one TAP line can hold it ('#' starts a directive)."""
    return " ".join(name.replace("#", "_").split())


class Runner:
    """Runs registered tests as TAP (see the module comment), prints a
    human-readable summary on stderr, exits non-zero on failure."""

    def __init__(self, name):
        self.name = name
        self.tests = []
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def skip_all(self, reason):
        """Report the whole script as skipped (meson: SKIP) and exit."""
        tap = _tap_stream()
        tap.write("1..0 # SKIP %s\n" % _tap_name(reason))
        print("SKIP %s: %s" % (self.name, reason))
        sys.exit(0)

    def main(self):
        only = sys.argv[1:]
        tests = [fn for fn in self.tests if not only or fn.__name__ in only]
        if _RECORD_DIR:
            # After every other case: the answers they got fit the spec.
            def answers_match_openapi():
                _check_recorded_answers()
            tests.append(answers_match_openapi)
        tap = _tap_stream()
        tap.write("1..%d\n" % len(tests))
        for num, fn in enumerate(tests, 1):
            name = _tap_name(fn.__name__)
            t0 = time.monotonic()
            try:
                res = fn()
                if res == "skip":
                    self.skipped += 1
                    print("SKIP %s" % fn.__name__)
                    tap.write("ok %d %s # SKIP\n" % (num, name))
                    continue
                self.passed += 1
                print("ok   %s (%.1fs)" % (fn.__name__,
                                          time.monotonic() - t0))
                tap.write("ok %d %s\n" % (num, name))
            except TestFailure as e:
                self.failed += 1
                print("FAIL %s: %s" % (fn.__name__, e))
                tap.write("not ok %d %s\n" % (num, name))
            except Exception:
                self.failed += 1
                print("FAIL %s: exception\n%s" % (fn.__name__,
                                                 traceback.format_exc()))
                tap.write("not ok %d %s\n" % (num, name))
            except BaseException as e:
                # SystemExit, KeyboardInterrupt: the script stops here;
                # the cases left are missing from the plan.
                print("FAIL %s: %r\n%s" % (fn.__name__, e,
                                           traceback.format_exc()))
                tap.write("Bail out! %s: %s\n" % (
                    name, _tap_name(repr(e))))
                raise
            finally:
                sys.stdout.flush()
        print("%s: %d passed, %d failed, %d skipped" % (
            self.name, self.passed, self.failed, self.skipped))
        sys.exit(1 if self.failed or not self.passed else 0)
