#!/usr/bin/python3
"""test_keeper_protocol.py: a hostile front process against the real
p8vault-keeper.

The test starts p8vault-keeper itself (path in P8VAULT_KEEPER) with a
socketpair as its channel, exactly as p8vaultd does, and speaks the
protocol of keeper/proto.h, written here again from that header: a
second implementation, not the daemon's code. What a compromised front
could send is tried, and after each the keeper must still answer a
STATUS request (it is alive) and must have signed nothing it should not:

- datagrams over a type's maximum, over the largest message, truncated,
  with a wrong length, version or padding, unknown types, answer types
  and the keeper's own HELLO sent as requests, trailing bytes, strings
  longer than their fields or holding a NUL;
- a sealed record whose metadata was altered (another Team ID, another
  state), or moved to another app or Key ID, for APNs and profile tokens,
  vouching and re-wrapping;
- profile fields past their limits (expiry, issuer id, list sizes);
- a burst of APNs mint requests for one key: one signature, and every
  answer the same token (the keeper's own 20-minute limit);
- batches (KPROTO_F_MORE): several signature requests in one datagram
  get one datagram of answers, in order; another type or a request
  longer than its slot (KPROTO_SLOT_BYTES) in a batch is refused and not
  run; a batch whose framing is broken gets one refusal in all.

The records are made through the keeper's SEAL operation and their
authenticated data is built here from common/keyrecord.h's description.
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq  # noqa
from signing import new_p8, apple_id  # noqa
from cryptography.hazmat.primitives import hashes  # noqa
from cryptography.hazmat.primitives.asymmetric import ec  # noqa
from cryptography.hazmat.primitives.asymmetric.utils import \
    encode_dss_signature  # noqa

runner = Runner("test_keeper_protocol")

HELLO, STATUS, SET_PRIMARY, SEAL, RESEAL, VOUCH, REWRAP, SIGN_APNS, \
    BLOB_OPEN, BLOB_REWRAP, SIGN_PROFILE = range(1, 12)
ANSWER = 0x80
# Error codes (common/err.h).
E_INVALID_ARGUMENT, E_INTEGRITY, E_SERVICE_NOT_ALLOWED, E_BAD_REQUEST = \
    -3, -5, -65, -70
AAD_LABEL = b"p8vault key record v1\0"
SERVICES = ["apns", "app_store_connect", "sign_in_with_apple", "musickit",
            "weatherkit", "devicecheck", "maps"]
MUSICKIT, DEVICECHECK = 2, 4        # enum keeper_profile_kind
TIMEOUT_S = 10
MORE = 0x0100       # KPROTO_F_MORE, in the header's flags byte
SLOT_BYTES = 4096   # KPROTO_SLOT_BYTES


def keeper_path():
    p = os.environ.get("P8VAULT_KEEPER")
    check(p and os.access(p, os.X_OK), "P8VAULT_KEEPER is not set to the "
          "p8vault-keeper program")
    return p


# -- the wire format, from keeper/proto.h ------------------------------------

def u8(v):
    return struct.pack(">B", v)


def u32(v):
    return struct.pack(">I", v & 0xffffffff)


def u64(v):
    return struct.pack(">Q", v & 0xffffffffffffffff)


def bstr(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def message(mtype, body, version=1, pad=0, length=None):
    if length is None:
        length = len(body)
    return struct.pack(">BBHI", version, mtype, pad, length) + body


class Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, n):
        check(self.o + n <= len(self.d), "answer too short")
        v = self.d[self.o:self.o + n]
        self.o += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def bytes(self):
        return self.take(self.u32())

    def done(self):
        check_eq(self.o, len(self.d), "answer length")


def fields(app, key_id, team_id, services=("apns", "musickit"), env=0,
           state=0, fingerprint="", point=b"", created=1700000000,
           version=1, topics=()):
    svc = 0
    for s in services:
        svc |= 1 << SERVICES.index(s)
    out = bstr(app) + bstr(key_id) + bstr(team_id) + u8(env) + u32(svc)
    out += u32(len(topics)) + b"".join(bstr(t) for t in topics)
    out += u8(state) + bstr(fingerprint) + bstr(point)
    out += u64(created) + bstr("test") + u64(created) + u64(version)
    return out


def aad(app, key_id, team_id, services, fingerprint, point, state="active",
        env="development", created=1700000000, version=1, topics=()):
    meta = {"app": app, "created_at": created, "created_by": "test",
            "environment": env, "fingerprint": fingerprint,
            "key_id": key_id, "public_point": point.hex(),
            "services": [s for s in SERVICES if s in services],
            "state": state, "team_id": team_id, "topics": list(topics),
            "updated_at": created, "version": version}
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return AAD_LABEL + app.encode() + b"\0" + key_id.encode() + b"\0" + \
        text.encode()


def profile(kind, expires_in=600, issuer="", subject="", items=()):
    return u8(kind) + u64(expires_in) + bstr(issuer) + bstr(subject) + \
        u32(len(items)) + b"".join(bstr(i) for i in items)


class Keeper:
    """p8vault-keeper on one channel, started as p8vaultd starts it."""

    def __init__(self, tmp):
        self.key = os.path.join(tmp, "master.key")
        with open(self.key, "wb") as f:
            f.write(os.urandom(32))
        os.chmod(self.key, 0o600)
        self.sock, child = socket.socketpair(socket.AF_UNIX,
                                             socket.SOCK_SEQPACKET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.settimeout(TIMEOUT_S)
        cfd = child.fileno()

        def at_three():
            os.dup2(cfd, 3)
        self.proc = subprocess.Popen(
            [keeper_path(), "--channels", "1", "--master-key-file",
             self.key], preexec_fn=at_three, close_fds=False,
            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        child.close()
        hello = self.recv()
        check_eq(hello[1], HELLO | ANSWER, "hello type")
        r = Reader(hello[8:])
        check_eq(r.u32(), 0, "hello result")

    def recv(self, what="a request", batch=False):
        data = self.sock.recv(1 << 20)
        check(data, "the keeper closed its channel after %s" % what)
        if not batch:
            check_eq(struct.unpack(">I", data[4:8])[0], len(data) - 8,
                     "answer length field")
        return data

    def call(self, raw, what="a request"):
        """Send raw bytes; (answer type, result, step, Reader)."""
        self.sock.send(raw)
        a = self.recv(what)
        r = Reader(a[8:])
        result = struct.unpack(">i", r.take(4))[0]
        step = r.u8()
        return a[1], result, step, r

    def alive(self, what):
        check(self.proc.poll() is None, "the keeper died after %s" % what)
        t, res, _, r = self.call(message(STATUS, b""))
        check_eq((t, res), (STATUS | ANSWER, 0), "STATUS after %s" % what)
        check_eq(r.u8(), 1, "keys held after %s" % what)

    def close(self):
        self.sock.close()
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        return err

    def seal(self, app, key_id, team_id, services=("apns", "musickit")):
        pem = new_p8()
        t, res, _, r = self.call(message(SEAL, bstr(pem) + fields(
            app, key_id, team_id, services)))
        check_eq((t, res), (SEAL | ANSWER, 0), "seal")
        env = r.bytes()
        fp = r.bytes().decode()
        point = r.bytes()
        r.take(8)
        r.done()
        return {"app": app, "key_id": key_id, "team_id": team_id,
                "services": services, "env": env, "fp": fp,
                "point": point, "pem": pem,
                "aad": aad(app, key_id, team_id, services, fp, point)}


def record(aad_bytes, env):
    return bstr(aad_bytes) + bstr(env)


def verify_es256(point, token):
    h, c, s = token.split(".")
    sig = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                    int.from_bytes(sig[32:], "big")),
               (h + "." + c).encode(), ec.ECDSA(hashes.SHA256()))
    return json.loads(base64.urlsafe_b64decode(h + "==")), \
        json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))


def with_keeper(fn):
    def run():
        tmp = tempfile.mkdtemp(prefix="p8v-keeper-")
        k = Keeper(tmp)
        try:
            fn(k)
            k.alive("the test")
        finally:
            k.close()
            shutil.rmtree(tmp, ignore_errors=True)
    run.__name__ = fn.__name__
    return run


@runner.test
@with_keeper
def malformed_datagrams_are_refused(k):
    cases = {
        "an empty datagram": b"",
        "a short header": b"\x01\x02\x00",
        "version 2": message(STATUS, b"", version=2),
        "padding set": message(STATUS, b"", pad=1),
        "an unknown flag": message(STATUS, b"", pad=0x0200),
        "MORE on the only message": message(STATUS, b"", pad=MORE),
        "a length longer than the datagram": message(STATUS, b"",
                                                     length=4),
        "a length shorter than the datagram": message(VOUCH, b"\0" * 16,
                                                      length=8),
        "trailing bytes": message(STATUS, b"\0"),
        "unknown type 0": message(0, b""),
        "unknown type 12": message(12, b""),
        "unknown type 127": message(127, b""),
        "an answer type": message(STATUS | ANSWER, b""),
        "the keeper's own hello": message(HELLO, b""),
        "a truncated record": message(VOUCH, u32(100) + b"x" * 10),
        "a field length past the end": message(SIGN_APNS, u32(0xffffffff)),
        "an AAD past its limit": message(VOUCH, bstr(b"a" * 140000) +
                                         bstr(b"e")),
        "a datagram over the type's maximum": message(STATUS, b"\0" * 64),
        "a datagram over the largest message": message(
            SEAL, b"\0" * 300000),
        "a .p8 past its limit": message(SEAL, bstr(b"A" * 5000) +
                                        fields("a", "ABCDEFGHIJ",
                                               "ABCDEFGHIJ")),
        "a key id with a NUL": message(SEAL, bstr(new_p8()) + fields(
            "a", "ABCDE\0GHIJ", "ABCDEFGHIJ")),
        "an app longer than its field": message(SEAL, bstr(new_p8()) +
                                                fields("a" * 300,
                                                       "ABCDEFGHIJ",
                                                       "ABCDEFGHIJ")),
        "too many topics": message(SEAL, bstr(new_p8()) + fields(
            "a", "ABCDEFGHIJ", "ABCDEFGHIJ", topics=["t"] * 100000)[:900]),
        "a master key id cut short": message(SET_PRIMARY, b"\0" * 4),
        "a rewrap target flag of 7": message(REWRAP, record(b"a", b"e") +
                                             u8(7) + b"\0" * 8),
    }
    for what, raw in cases.items():
        if raw == b"":
            # An empty datagram is a message of length 0: refused like
            # any other malformed one, never taken for the end.
            k.sock.send(raw)
            a = k.recv(what)
            res = struct.unpack(">i", a[8:12])[0]
        else:
            _, res, _, _ = k.call(raw, what)
        check(res in (E_BAD_REQUEST, E_INVALID_ARGUMENT),
              "%s: answered %d, want bad_request" % (what, res))
        k.alive(what)


@runner.test
@with_keeper
def altered_and_moved_records_do_not_open(k):
    rec = k.seal("app.one", apple_id(), apple_id())
    good = record(rec["aad"], rec["env"])
    t, res, step, r = k.call(message(VOUCH, good))
    check_eq(res, 0, "the sealed record vouches")
    other_team = aad("app.one", rec["key_id"], apple_id(), rec["services"],
                     rec["fp"], rec["point"])
    other_state = aad("app.one", rec["key_id"], rec["team_id"],
                      rec["services"], rec["fp"], rec["point"],
                      state="standby")
    more_services = aad("app.one", rec["key_id"], rec["team_id"],
                        SERVICES, rec["fp"], rec["point"])
    moved_app = aad("app.two", rec["key_id"], rec["team_id"],
                    rec["services"], rec["fp"], rec["point"])
    moved_kid = aad("app.one", apple_id(), rec["team_id"], rec["services"],
                    rec["fp"], rec["point"])
    flipped = bytearray(rec["env"])
    flipped[-1] ^= 1
    bad = {
        "another Team ID": record(other_team, rec["env"]),
        "another state": record(other_state, rec["env"]),
        "more services": record(more_services, rec["env"]),
        "moved to another app": record(moved_app, rec["env"]),
        "moved to another Key ID": record(moved_kid, rec["env"]),
        "a flipped ciphertext bit": record(rec["aad"], bytes(flipped)),
        "no envelope": record(rec["aad"], b""),
    }
    for what, body in bad.items():
        for mtype, extra in ((VOUCH, b""), (SIGN_APNS, b"\0" * 16),
                             (SIGN_PROFILE, profile(MUSICKIT)),
                             (REWRAP, u8(0) + b"\0" * 8)):
            t, res, step, r = k.call(message(mtype, body + extra))
            check_eq(t, mtype | ANSWER, "%s: answer type" % what)
            check(res in (E_INTEGRITY, E_INVALID_ARGUMENT),
                  "%s, type %d: answered %d, want integrity_error" %
                  (what, mtype, res))
            k.alive("%s (type %d)" % (what, mtype))
    # A service the record was not sealed with is refused: the services
    # come from the authenticated metadata, not from the request.
    t, res, _, _ = k.call(message(SIGN_PROFILE, good + profile(
        DEVICECHECK, expires_in=0)))
    check_eq(res, E_SERVICE_NOT_ALLOWED, "devicecheck with a record "
             "sealed for apns and musickit")


@runner.test
@with_keeper
def profile_fields_past_their_limits_are_refused(k):
    rec = k.seal("app.prof", apple_id(), apple_id(),
                 services=("musickit", "app_store_connect"))
    good = record(rec["aad"], rec["env"])
    t, res, _, r = k.call(message(SIGN_PROFILE, good + profile(MUSICKIT)))
    check_eq(res, 0, "a musickit token")
    token = r.bytes().decode()
    hdr, claims = verify_es256(rec["point"], token)
    check_eq(hdr.get("kid"), rec["key_id"], "kid from the record")
    check_eq(claims.get("iss"), rec["team_id"], "iss from the record")
    bad = {
        "an expiry past six months": profile(MUSICKIT,
                                             expires_in=15777001),
        "a negative expiry": profile(MUSICKIT, expires_in=-5),
        "an unknown kind": profile(99),
        "an issuer id on musickit": profile(MUSICKIT, issuer="x"),
        "an origin list of 33": profile(MUSICKIT, items=["https://a.b"] * 33),
        "an origin longer than its field": profile(
            MUSICKIT, items=["https://" + "a" * 400]),
        "a subject longer than its field": profile(MUSICKIT,
                                                   subject="s" * 300),
        "an issuer id that is not a UUID": profile(0, issuer="not-a-uuid"),
    }
    for what, p in bad.items():
        t, res, _, r = k.call(message(SIGN_PROFILE, good + p))
        check(res in (E_INVALID_ARGUMENT, E_BAD_REQUEST),
              "%s: answered %d" % (what, res))
        k.alive(what)


@runner.test
@with_keeper
def a_burst_of_apns_mints_signs_once(k):
    rec = k.seal("app.burst", apple_id(), apple_id())
    body = message(SIGN_APNS, record(rec["aad"], rec["env"]) + b"b" * 16)
    tokens = set()
    for i in range(50):
        t, res, _, r = k.call(body)
        check_eq((t, res), (SIGN_APNS | ANSWER, 0), "mint %d" % i)
        tokens.add(r.bytes().decode())
    check_eq(len(tokens), 1, "distinct APNs tokens for one key in a "
             "burst of 50 mint requests")
    hdr, claims = verify_es256(rec["point"], tokens.pop())
    check_eq(sorted(hdr), ["alg", "kid"], "APNs header members")
    check_eq(sorted(claims), ["iat", "iss"], "APNs claims")
    # Another key is its own (team, Key ID, fingerprint): a new token.
    rec2 = k.seal("app.burst", apple_id(), rec["team_id"])
    t, res, _, r = k.call(message(SIGN_APNS, record(rec2["aad"],
                                                    rec2["env"]) +
                                  b"b" * 16))
    check_eq(res, 0, "a second key mints")
    check(r.bytes().decode() not in tokens, "the second key's token")


def split(data):
    """The messages of a datagram, by keeper/proto.h's batch framing:
    [(type, flags, body)], checking that every one but the last says MORE
    and nothing follows the last."""
    out, at = [], 0
    while True:
        check(len(data) - at >= 8, "a batch's message cut short")
        ver, mtype, flags, zero, n = struct.unpack(">BBBBI",
                                                    data[at:at + 8])
        check_eq((ver, zero), (1, 0), "a batch message's header")
        check(at + 8 + n <= len(data), "a batch message past the end")
        out.append((mtype, flags, data[at + 8:at + 8 + n]))
        at += 8 + n
        if not flags & 1:
            break
    check_eq(at, len(data), "bytes after a batch's last message")
    return out


@runner.test
@with_keeper
def batches_are_answered_together(k):
    rec = k.seal("app.batch", apple_id(), apple_id())
    sign = record(rec["aad"], rec["env"]) + profile(MUSICKIT)

    def batch(*msgs):
        return b"".join(message(t, body, pad=MORE if i + 1 < len(msgs)
                                else 0) for i, (t, body) in enumerate(msgs))

    # Three signatures in one datagram: one datagram of three answers, in
    # order, flagged as the requests were, each a distinct valid token.
    k.sock.send(batch(*[(SIGN_PROFILE, sign)] * 3))
    answers = split(k.recv("a batch", batch=True))
    check_eq([(t, f) for t, f, _ in answers],
             [(SIGN_PROFILE | ANSWER, 1), (SIGN_PROFILE | ANSWER, 1),
              (SIGN_PROFILE | ANSWER, 0)], "a batch's answers")
    tokens = set()
    for i, (_, _, body) in enumerate(answers):
        r = Reader(body)
        check_eq(struct.unpack(">i", r.take(4))[0], 0, "batch answer %d" % i)
        r.u8()
        token = r.bytes().decode()
        verify_es256(rec["point"], token)
        tokens.add(token)
    check_eq(len(tokens), 3, "distinct signatures in one batch")
    # In a batch only signatures of at most a slot: a STATUS, a SEAL and a
    # signature request past its slot are refused and not run; the
    # signatures around them are made.
    long_sign = record(rec["aad"] + b"\0" * SLOT_BYTES, rec["env"]) + \
        profile(MUSICKIT)
    k.sock.send(batch((STATUS, b""), (SIGN_PROFILE, sign),
                      (SEAL, bstr(new_p8()) + fields(
                          "app.batch2", apple_id(), apple_id())),
                      (SIGN_PROFILE, long_sign), (SIGN_PROFILE, sign)))
    answers = split(k.recv("a mixed batch", batch=True))
    got = [(t, struct.unpack(">i", b[:4])[0]) for t, _, b in answers]
    check_eq(got, [(ANSWER, E_BAD_REQUEST), (SIGN_PROFILE | ANSWER, 0),
                   (ANSWER, E_BAD_REQUEST), (ANSWER, E_BAD_REQUEST),
                   (SIGN_PROFILE | ANSWER, 0)], "a mixed batch's answers")
    # Broken framing: one refusal for the whole datagram, nothing signed.
    one = message(SIGN_PROFILE, sign, pad=MORE)
    broken = {
        "MORE on a batch's last message": one + one,
        "bytes after a batch's last message": one +
        message(SIGN_PROFILE, sign) + b"\0",
        "a batch message's length past the end": one +
        message(SIGN_PROFILE, sign, length=len(sign) + 1),
        "a batch message cut in its header": one + b"\x01\x0b",
        "33 messages in a batch": batch(*[(STATUS, b"")] * 33),
    }
    for what, raw in broken.items():
        k.sock.send(raw)
        answers = split(k.recv(what, batch=True))
        check_eq(len(answers), 1, "%s: answers" % what)
        t, _, body = answers[0]
        check_eq((t, struct.unpack(">i", body[:4])[0]),
                 (ANSWER, E_BAD_REQUEST), what)
        k.alive(what)


if __name__ == "__main__":
    runner.main()
