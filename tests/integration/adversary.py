"""adversary.py: what the adversarial tests (test_faults, test_full_disk,
test_hostile, test_hygiene, test_load) share.

- keys made with python3-cryptography (fast enough for a thousand), and
  every form of their private half that must never leave the vault;
- raw HTTP over TCP or the unix socket, one request per connection, that
  reports a dropped connection as None instead of raising;
- the daemon's resident memory (VmRSS), and whether it is an ASan build;
- LMDB databases read and written with mdb_dump/mdb_load in their hex
  ("bytevalue") format: unambiguous, unlike `mdb_dump -p`, whose 0.9.24
  prints a backslash byte unescaped;
- a tally of expected versus received statuses, so that a test reports
  every wrong answer at once with its count.

Standard library plus python3-cryptography (Debian's, /usr/bin/python3).
"""

import base64
import hashlib
import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import TestFailure, check, record_exchange  # noqa

from cryptography.hazmat.primitives import serialization  # noqa
from cryptography.hazmat.primitives.asymmetric import ec  # noqa

# A raw exchange waits at most this long for an answer (ASan builds are
# slower, and a hostile phase may keep the daemon busy).
RAW_TIMEOUT_S = 15
# mdb_dump/mdb_load on a test-sized store: instant; this only bounds a hang.
MDB_TIMEOUT_S = 30


# -- keys ----------------------------------------------------------------

def new_key():
    """(PEM text, private key object): a fresh P-256 key in PKCS#8 PEM,
    the form Apple hands out (the public key embedded)."""
    k = ec.generate_private_key(ec.SECP256R1())
    pem = k.private_bytes(serialization.Encoding.PEM,
                          serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode()
    return pem, k


def public_pem(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fingerprint(key):
    """Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (docs/api.md)."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_point_hex(key):
    """The uncompressed point as the store keeps it in the clear."""
    return key.public_key().public_bytes(
        serialization.Encoding.X962,
        serialization.PublicFormat.UncompressedPoint).hex()


def b64(b):
    return base64.b64encode(b).rstrip(b"=")


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def key_needles(pem, key, what):
    """{name: bytes}: every form of the private key that must never be
    found outside the vault's guarded memory."""
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    pkcs8 = key.private_bytes(serialization.Encoding.DER,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    sec1 = key.private_bytes(serialization.Encoding.DER,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    body = [l for l in pem.splitlines() if l and not l.startswith("-----")]
    out = {
        "PEM text": pem.strip().encode(),
        "PEM base64 body": "".join(body).encode(),
        "PKCS#8 DER": pkcs8,
        "SEC1 DER": sec1,
        "scalar": scalar,
        "scalar reversed": scalar[::-1],
        "scalar first half": scalar[:16],
        "scalar second half": scalar[16:],
        "scalar hex": scalar.hex().encode(),
        "scalar HEX": scalar.hex().upper().encode(),
        "scalar base64": b64(scalar),
        "scalar base64url": b64url(scalar),
        "PKCS#8 DER base64url": b64url(pkcs8),
    }
    # Every base64 line but the first, which is the same for every P-256
    # key up to the scalar's first bytes (PKCS#8 and SEC1 headers).
    for i, line in enumerate(body[1:], 2):
        if len(line) >= 16:
            out["PEM line %d" % i] = line.encode()
    return {"%s: %s" % (what, n): v for n, v in out.items()}


def search(needles, haystacks):
    """[(needle name, haystack name)] for every needle found in a
    haystack (both bytes)."""
    return [(nname, hname) for hname, data in haystacks.items()
            for nname, needle in needles.items() if needle in data]


# -- raw HTTP ------------------------------------------------------------

class Raw:
    """The answer to a raw request: status (None if the connection was
    closed without an answer), headers (lower-case names), body."""

    def __init__(self, status, headers, body, raw):
        self.status = status
        self.headers = headers
        self.body = body
        self.raw = raw

    def error_code(self):
        import json
        try:
            return json.loads(self.body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None

    def __repr__(self):
        return "Raw(%r, %r)" % (self.status, self.raw[:160])


def connect(target, timeout=RAW_TIMEOUT_S, source=None):
    """target: ("tcp", (host, port)) or ("unix", path)."""
    kind, addr = target
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(addr)
    return s


def parse_response(buf, head_only=False):
    """Raw for the first response in buf (bytes read until close)."""
    if b"\r\n\r\n" not in buf or not buf.startswith(b"HTTP/1."):
        return Raw(None, {}, b"", buf)
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Raw(None, {}, b"", buf)
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    if head_only:
        return Raw(status, headers, b"", buf)
    n = headers.get("content-length")
    body = rest[:int(n)] if n is not None and n.isdigit() else rest
    return Raw(status, headers, body, buf)


def read_until_close(s, timeout=RAW_TIMEOUT_S):
    s.settimeout(timeout)
    chunks = []
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    except (ConnectionResetError, socket.timeout, BrokenPipeError):
        pass
    return b"".join(chunks)


def exchange(target, data, timeout=RAW_TIMEOUT_S, source=None,
             head_only=False):
    """Send data (one request, which should say Connection: close) on a
    new connection, read until the server closes; Raw (status None when
    nothing came back)."""
    s = connect(target, timeout, source)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = parse_response(read_until_close(s, timeout), head_only)
        if not head_only:
            record_exchange(data, got)     # the OpenAPI check (harness.py)
        return got
    finally:
        s.close()


def build(method, path, headers=(), body=None, host="localhost",
          close=True, length=True):
    """A request as bytes. headers: [(name, value)]; body: bytes; with
    length, a Content-Length for the body (none if body is None)."""
    h = [("Host", host)] + list(headers)
    if close:
        h.append(("Connection", "close"))
    if body is not None and length:
        h.append(("Content-Length", str(len(body))))
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
        "%s: %s\r\n" % kv for kv in h) + "\r\n"
    return head.encode("latin-1") + (body or b"")


# -- the daemon process --------------------------------------------------

def vmrss_kib(pid):
    """Resident memory of pid in KiB (/proc/PID/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure("no VmRSS for %d" % pid)


def is_asan_build():
    """Whether $P8VAULTD links AddressSanitizer (memory bounds differ:
    its quarantine holds freed memory back on purpose)."""
    try:
        out = subprocess.run(["ldd", os.environ.get("P8VAULTD", "")],
                             capture_output=True, text=True,
                             timeout=MDB_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libasan" in out


def alive(d):
    """The daemon process is still running (no crash)."""
    return d.proc is not None and d.proc.poll() is None


# -- LMDB, read and written by lmdb-utils ---------------------------------

def mdb_read(state, db):
    """(header text, {key bytes: value bytes}) of one named database,
    via `mdb_dump` in its hex format."""
    p = subprocess.run(["mdb_dump", "-s", db, state], capture_output=True,
                       text=True, timeout=MDB_TIMEOUT_S)
    check(p.returncode == 0, "mdb_dump -s %s: %s" % (db, p.stderr))
    lines = p.stdout.split("\n")
    start = lines.index("HEADER=END") + 1
    end = lines.index("DATA=END")
    data = [bytes.fromhex(l.strip()) for l in lines[start:end]]
    check(len(data) % 2 == 0, "mdb_dump: odd number of lines")
    return "\n".join(lines[:start]), dict(zip(data[0::2], data[1::2]))


def mdb_write(state, db, header, items):
    """Put items ({key: value}) into db, overwriting (mdb_load)."""
    text = header + "\n" + "".join(
        " %s\n %s\n" % (k.hex(), v.hex()) for k, v in items.items()) + \
        "DATA=END\n"
    p = subprocess.run(["mdb_load", "-s", db, state], input=text,
                       capture_output=True, text=True,
                       timeout=MDB_TIMEOUT_S)
    check(p.returncode == 0, "mdb_load -s %s: %s" % (db, p.stderr))


# -- counting ------------------------------------------------------------

class Tally:
    """Expected versus received answers of one phase: every mismatch is
    kept (up to a limit) and counted."""

    KEEP = 25

    def __init__(self, name):
        self.name = name
        self.total = 0
        self.wrong = []
        self.n_wrong = 0

    def expect(self, what, got, want, detail=""):
        """want: a value or a set of acceptable values."""
        self.total += 1
        ok = got in want if isinstance(want, (set, frozenset)) else \
            got == want
        if not ok:
            self.n_wrong += 1
            if len(self.wrong) < self.KEEP:
                self.wrong.append("%s: got %r, want %r %s" % (
                    what, got, want, detail))
        return ok

    def check(self):
        print("  %s: %d checked, %d wrong" % (self.name, self.total,
                                              self.n_wrong))
        check(self.total > 0, "%s: nothing was checked" % self.name)
        check(self.n_wrong == 0, "%s: %d of %d wrong:\n    %s" % (
            self.name, self.n_wrong, self.total,
            "\n    ".join(self.wrong)))
