#!/usr/bin/python3
"""test_low_s.py: every ES256 signature p8vault emits is low-S (issue 15).

More than 1000 tokens from the real p8vaultd: APNs provider tokens of many
keys and teams, and every /jwt profile signed per request. Each one's s
must be at most n/2, and each must verify with @noble/curves (p256,
lowS: true: strict verifiers refuse s > n/2; npm, installed by this test's
set-up into the build tree and cached there) and with OpenSSL (through
python3-cryptography). Before the fix about half of the tokens had a high
s, and noble refused them.
"""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, TestFailure, check, check_eq  # noqa
from signing import SignVault, verify  # noqa
from cryptography.hazmat.primitives import serialization  # noqa

runner = Runner("test_low_s")
V = None

HERE = os.path.dirname(os.path.abspath(__file__))
# The strict verifier, pinned: 1.x runs on Debian 12's node (>= 16).
NOBLE = "@noble/curves@1.9.7"
# An npm install of two small packages; this only bounds a hang.
NPM_TIMEOUT_S = 300
# P-256's group order.
N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
ISSUER = "57246542-96fe-1a63-e053-0824d011072a"
ALL_SERVICES = ["apns", "app_store_connect", "sign_in_with_apple",
                "musickit", "weatherkit", "devicecheck", "maps"]
# Keys (each its own team: its own APNs token) and /jwt rounds over them.
KEYS = 24
JWT_ROUNDS = 200
PROFILES = [
    {"profile": "app_store_connect", "issuer_id": ISSUER},
    {"profile": "sign_in_with_apple", "client_id": "com.example.web"},
    {"profile": "musickit"},
    {"profile": "weatherkit", "service_id": "com.example.weather"},
    {"profile": "maps"},
]
MIN_TOKENS = 1000


def vault():
    global V
    if V is None:
        V = SignVault().start()
    return V


def noble_modules():
    """node_modules holding @noble/curves: installed once per build tree
    (under a lock, renamed into place when complete), then reused."""
    root = os.environ.get("P8V_BUILD_ROOT") or tempfile.gettempdir()
    dest = os.path.join(root, "npm-noble")
    mods = os.path.join(dest, "node_modules")
    if os.path.isdir(os.path.join(mods, "@noble", "curves")):
        return mods
    with open(dest + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(os.path.join(mods, "@noble", "curves")):
            return mods
        tmp = tempfile.mkdtemp(prefix="npm-noble.tmp-", dir=root)
        proc = subprocess.run(
            ["npm", "install", "--prefix", tmp, "--no-audit", "--no-fund",
             "--no-save", NOBLE], capture_output=True, text=True,
            timeout=NPM_TIMEOUT_S)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise TestFailure("npm install %s failed: %s" % (
                NOBLE, proc.stderr[-500:]))
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    return mods


def noble(items):
    """[(token, public point hex)] -> (ok list, high_s list) from
    noble_verify.js."""
    env = dict(os.environ, NODE_PATH=noble_modules())
    proc = subprocess.run(
        ["node", os.path.join(HERE, "noble_verify.js")],
        input=json.dumps([{"token": t, "pub": p} for t, p in items]),
        capture_output=True, text=True, env=env, timeout=120)
    check_eq(proc.returncode, 0, "noble_verify.js: %s" % proc.stderr[-500:])
    out = json.loads(proc.stdout)
    check_eq(len(out["ok"]), len(items), "noble answers")
    return out["ok"], out["high_s"]


def point_hex(pub_pem):
    pub = serialization.load_pem_public_key(pub_pem.encode())
    return pub.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint).hex()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sig_s(token):
    sig = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    check_eq(len(sig), 64, "signature length")
    return int.from_bytes(sig[32:], "big")


@runner.test
def noble_refuses_high_s():
    """The strict verifier can fail: a token turned high-S (s := n - s, as
    valid to OpenSSL) is refused by noble and still accepted by OpenSSL."""
    v = vault()
    meta, _, _, _ = v.new_key("lows.probe", services=ALL_SERVICES)
    tok = v.jwt("lows.probe", {"profile": "musickit"}).json["token"]
    h, c, s = tok.split(".")
    sig = base64.urlsafe_b64decode(s + "==")
    flipped = sig[:32] + (N - int.from_bytes(sig[32:], "big")).to_bytes(
        32, "big")
    high = h + "." + c + "." + b64url(flipped)
    pub = point_hex(meta["public_key_pem"])
    ok, high_s = noble([(tok, pub), (high, pub)])
    check_eq(high_s, [False, True], "s of the token and of its flip")
    check_eq(ok, [True, False], "noble on the token and on its flip")
    verify(meta["public_key_pem"], high)   # OpenSSL takes either


@runner.test
def a_thousand_tokens_are_low_s():
    v = vault()
    keys = []
    for i in range(KEYS):
        meta, kid, team, _ = v.new_key("lows.%02d" % i,
                                       services=ALL_SERVICES)
        keys.append(("lows.%02d" % i, meta["public_key_pem"]))
    tokens = []     # (token, public key PEM, what)
    for app, pem in keys:
        r = v.apns(app)
        check_eq(r.status, 200, "apns-token of %s: %r" % (app, r))
        tokens.append((r.json["token"], pem, "apns " + app))
    for i in range(JWT_ROUNDS):
        for body in PROFILES:
            app, pem = keys[(i * len(PROFILES) + len(tokens)) % KEYS]
            r = v.jwt(app, body)
            check_eq(r.status, 200, "/jwt %s: %r" % (body["profile"], r))
            tokens.append((r.json["token"], pem, body["profile"]))
    check(len(tokens) >= MIN_TOKENS, "only %d tokens" % len(tokens))
    check_eq(len({t for t, _, _ in tokens}), len(tokens), "distinct tokens")
    high = [w for t, _, w in tokens if sig_s(t) > N // 2]
    check(not high, "%d of %d tokens have s > n/2 (first: %s)" % (
        len(high), len(tokens), high[:3]))
    points = {}
    for t, pem, w in tokens:
        verify(pem, t)                      # OpenSSL (python3-cryptography)
        points.setdefault(pem, point_hex(pem))
    ok, high_s = noble([(t, points[pem]) for t, pem, _ in tokens])
    refused = [w for (_, _, w), good in zip(tokens, ok) if not good]
    check(not refused, "@noble/curves (lowS) refused %d of %d tokens: %s" %
          (len(refused), len(tokens), refused[:5]))
    check(not any(high_s), "noble saw a high s")


def main():
    try:
        runner.main()
    finally:
        if V is not None:
            V.close()


if __name__ == "__main__":
    main()
