"""signing.py: what the signing API's end-to-end tests share.

A SignVault is a state directory made by `p8vault init`, a p8vaultd on it
(portal on TCP, signing API on its unix socket and on --sign-listen TCP),
and tokens made by `p8vault token create`. Keys are generated with the
`openssl` command at test time and uploaded through the portal API.

Every token the daemon emits is checked by implementations that share no
code with it: tests/verify_jwt.py (python3-cryptography, its own base64url
and JSON handling) and, where asked, the `openssl dgst` command.

Standard library plus python3-cryptography (Debian's, via /usr/bin/python3).
The daemon is taken from $P8VAULTD, the CLI from $P8VAULT (see cli_path).
"""

import base64
import json
import os
import random
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))   # tests/: verify_jwt.py
from harness import (Daemon, TestFailure, check, check_eq,  # noqa
                     read_response, request)
import verify_jwt  # noqa
from cryptography.hazmat.primitives import serialization  # noqa
from cryptography.hazmat.primitives.asymmetric import utils  # noqa

# A CLI command or an openssl run is quick; this only bounds a hang.
TOOL_TIMEOUT_S = 30
# The APNs token's lifetime as Apple counts it (iat + 1 hour).
APNS_LIFETIME_S = 3600
# The Content-Type of the Prometheus text format, version 0.0.4.
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# How long request counters may lag behind the answers (see
# SignVault.metrics_settled).
METRICS_SETTLE_S = 10
# How far the daemon's iat may be from this process's clock (same host).
CLOCK_SLACK_S = 5

ID_ALPHABET = string.ascii_uppercase + string.digits


def cli_path():
    """$P8VAULT, or $P8VAULT_CLI, or cli/p8vault next to $P8VAULTD's
    server/ in the build tree."""
    path = os.environ.get("P8VAULT") or os.environ.get("P8VAULT_CLI")
    if not path:
        daemon = os.path.abspath(os.environ.get("P8VAULTD", ""))
        path = os.path.join(os.path.dirname(os.path.dirname(daemon)),
                            "cli", "p8vault")
    if not os.access(path, os.X_OK):
        print("no p8vault CLI binary (P8VAULT, P8VAULT_CLI, or next to "
              "P8VAULTD)", file=sys.stderr)
        sys.exit(2)
    return os.path.abspath(path)


def p8vault(*args):
    """Run the CLI; it must succeed. Returns stdout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("P8VAULT_")}
    proc = subprocess.run([cli_path()] + list(args), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=TOOL_TIMEOUT_S)
    if proc.returncode != 0:
        raise TestFailure("p8vault %s: exit %d: %s" % (
            " ".join(args), proc.returncode, proc.stderr[:500]))
    return proc.stdout


def apple_id():
    """A random Key ID or Team ID: 10 characters of [A-Z0-9]."""
    return "".join(random.choice(ID_ALPHABET) for _ in range(10))


def new_p8():
    """A fresh P-256 key as Apple hands it out: PKCS#8 PEM text."""
    proc = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC",
         "-pkeyopt", "ec_paramgen_curve:P-256"],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    if proc.returncode != 0 or "BEGIN PRIVATE KEY" not in proc.stdout:
        raise TestFailure("openssl genpkey failed: %s" % proc.stderr)
    return proc.stdout


def bearer(token):
    return {"Authorization": "Bearer " + token}


def b64url_text(part):
    """Decode one base64url part (no padding) to text, strictly."""
    return verify_jwt.b64url_decode(part).decode("utf-8")


def token_parts(token):
    """(header text, claims text) of a compact JWS, exactly as signed."""
    parts = token.split(".")
    check_eq(len(parts), 3, "token parts")
    return b64url_text(parts[0]), b64url_text(parts[1])


def verify(pub_pem, token):
    """Verify token with python3-cryptography against pub_pem."""
    pub = serialization.load_pem_public_key(pub_pem.encode())
    try:
        verify_jwt.verify(pub, token)
    except verify_jwt.Invalid as e:
        raise TestFailure("token does not verify: %s" % e)


def verify_openssl(pub_pem, token, tmp):
    """Verify token with the openssl command: the signature converted from
    r || s to DER, the signing input as a file."""
    h, c, s = token.split(".")
    sig = verify_jwt.b64url_decode(s)
    check_eq(len(sig), 64, "signature length")
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                     int.from_bytes(sig[32:], "big"))
    paths = {n: os.path.join(tmp, "ossl-" + n) for n in ("pub", "sig", "in")}
    with open(paths["pub"], "w") as f:
        f.write(pub_pem)
    with open(paths["sig"], "wb") as f:
        f.write(der)
    with open(paths["in"], "wb") as f:
        f.write((h + "." + c).encode("ascii"))
    proc = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", paths["pub"],
         "-signature", paths["sig"], paths["in"]],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    check(proc.returncode == 0 and "Verified OK" in proc.stdout,
          "openssl dgst -verify refused the token: %s %s" % (
              proc.stdout, proc.stderr))
    # And the same check must fail for a changed signing input, or it
    # proves nothing.
    with open(paths["in"], "wb") as f:
        f.write((h + "." + c + "x").encode("ascii"))
    proc = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", paths["pub"],
         "-signature", paths["sig"], paths["in"]],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    check(proc.returncode != 0, "openssl verified a changed input")


def parse_metrics(text):
    """Prometheus text -> {series with labels: value}, checking that every
    sample line parses and that every family has # HELP and # TYPE."""
    samples, helped, typed = {}, set(), {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            typed[name] = kind
            continue
        check(not line.startswith("#"), "stray comment: %r" % line)
        series, _, value = line.rpartition(" ")
        check(series and value, "sample line: %r" % line)
        check(series not in samples, "series twice: %r" % series)
        samples[series] = float(value)
        family = series.split("{")[0]
        for suffix in ("_bucket", "_sum", "_count"):
            if family.endswith(suffix) and \
                    typed.get(family[:-len(suffix)]) == "histogram":
                family = family[:-len(suffix)]
        check(family in helped and family in typed,
              "no HELP/TYPE for %s" % family)
    return samples


def mdb_unescape(text):
    """A value printed by `mdb_dump -p`: printable bytes as they are, a
    backslash doubled, anything else as \\xx (hex)."""
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "\\":
            if text[i + 1] == "\\":
                out.append(0x5c)
                i += 2
            else:
                out.append(int(text[i + 1:i + 3], 16))
                i += 3
        else:
            out.append(ord(text[i]))
            i += 1
    return bytes(out)


def audit_events(state):
    """Every event of the audit log, in order, read with `mdb_dump`
    (lmdb-utils): a reader that shares no code with store/audit.c. LMDB
    lets it read while the daemon writes."""
    proc = subprocess.run(["mdb_dump", "-p", "-s", "audit", state],
                          capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    check(proc.returncode == 0, "mdb_dump -s audit: %s" % proc.stderr)
    lines = proc.stdout.split("\n")
    start = lines.index("HEADER=END") + 1
    end = lines.index("DATA=END")
    data = [l[1:] for l in lines[start:end]]     # " key", " value", ...
    check_eq(len(data) % 2, 0, "mdb_dump key/value lines")
    return [json.loads(mdb_unescape(v)) for v in data[1::2]]


def token_id(token):
    """The id part of a bearer token p8v_<id>_<secret>: the audit actor."""
    return token.split("_")[1]


def mints(samples):
    """Total of p8vault_apns_token_mints_total over every reason."""
    return sum(v for k, v in samples.items()
               if k.startswith("p8vault_apns_token_mints_total{"))


class SignVault:
    """A state directory, a daemon on it and tokens for it."""

    def __init__(self, extra_args=(), env=None, tmp=None):
        self.tmp = tmp or tempfile.mkdtemp(prefix="p8v-sign-")
        self.own_tmp = tmp is None
        self.state = os.path.join(self.tmp, "state")
        self.key = os.path.join(self.tmp, "master.key")
        if not os.path.exists(self.state):
            p8vault("init", "--state", self.state,
                    "--master-key-file", self.key)
        self.extra_args = list(extra_args)
        self.env = env
        self.d = None
        self.sign_port = None
        self.tokens = {}

    def start(self):
        self.d = Daemon(tmpdir=self.tmp, env=self.env,
                        args=["--sign-listen", "127.0.0.1:0"] +
                        self.extra_args)
        self.d.start()
        for l in self.d.logs:
            if l.get("event") == "listening" and \
                    l.get("listener") == "sign" and "port" in l:
                self.sign_port = l["port"]
        check(self.sign_port, "no --sign-listen port in the logs")
        return self

    def stop(self):
        if self.d is not None:
            try:
                self.d.stop()
            finally:
                self.d.close()
                self.d = None

    def close(self):
        try:
            self.stop()
        finally:
            if self.own_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def token(self, role, apps=()):
        """A bearer token of role (cached per role and apps)."""
        k = (role, tuple(apps))
        if k not in self.tokens:
            args = ["token", "create", "--state", self.state, "--role",
                    role, "--json"]
            for a in apps:
                args += ["--app", a]
            self.tokens[k] = json.loads(p8vault(*args))["token"]
        return self.tokens[k]

    # -- HTTP ---------------------------------------------------------------

    def portal(self, method, path, body=None, token=None):
        h = {"Content-Type": "application/json"}
        h.update(bearer(token or self.token("portal")))
        data = json.dumps(body).encode() if body is not None else None
        return request(self.d.tcp(), method, path, body=data, headers=h)

    def sign_conn(self, tcp=False):
        import http.client
        if tcp:
            return http.client.HTTPConnection("127.0.0.1", self.sign_port,
                                              timeout=30)
        return self.d.unix(timeout=30)

    def sign(self, path, body=None, token=None, tcp=False, raw=None,
             headers=None, method="POST", auth=True):
        """A request to the signing API. body: a JSON value (sent with
        Content-Type: application/json) or raw: bytes as they are.

        The request goes out in one write: the daemon may answer from the
        headers alone (401, 403, 413) and close without reading the body,
        and http.client, which writes the body separately, would then fail
        with a broken pipe instead of reading that answer."""
        h = {"Host": "localhost", "Connection": "close"}
        if auth:
            h.update(bearer(token or self.token("signer")))
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if data is not None or method == "POST":
            h["Content-Length"] = str(len(data or b""))
        h.update(headers or {})
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join(
            "%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        s = self.sign_socket(tcp)
        try:
            s.sendall(head.encode("latin-1") + (data or b""))
            return read_response(s, sent=head)
        finally:
            s.close()

    def sign_socket(self, tcp=False):
        if tcp:
            s = socket.create_connection(("127.0.0.1", self.sign_port),
                                         timeout=30)
        else:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(self.d.sock_path)
        return s

    def apns(self, app, body=None, **kw):
        return self.sign("/v1/apps/%s/apns-token" % app, body=body, **kw)

    def jwt(self, app, body, **kw):
        return self.sign("/v1/apps/%s/jwt" % app, body=body, **kw)

    def metrics(self, tcp=False):
        """The samples of GET /metrics (Prometheus text)."""
        r = self.sign("/metrics", method="GET", tcp=tcp)
        check_eq(r.status, 200, "GET /metrics: %r" % r)
        check_eq(r.headers.get("content-type"), METRICS_TYPE,
                 "GET /metrics Content-Type")
        return parse_metrics(r.body.decode("utf-8"))

    def metrics_settled(self, want, what, timeout=METRICS_SETTLE_S):
        """The samples once want(samples) holds: a request is counted when
        its connection is done with, which may be just after the client
        read the answer. Fails with what after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if want(m):
                return m
            if time.monotonic() > deadline:
                raise TestFailure("metrics never showed %s" % what)
            time.sleep(0.05)

    def upload(self, app, key_id, team_id, p8, services=None,
               environment=None, activate=None, want=201):
        body = {"key_id": key_id, "team_id": team_id, "p8": p8}
        if services is not None:
            body["services"] = services
        if environment is not None:
            body["environment"] = environment
        if activate is not None:
            body["activate"] = activate
        r = self.portal("POST", "/v1/apps/%s/keys" % app, body)
        check_eq(r.status, want, "upload to %s: %r" % (app, r))
        return r.json

    def new_key(self, app, team_id=None, services=None, environment=None,
                activate=None):
        """Generate and upload a key; returns (meta, key_id, team_id,
        pem)."""
        key_id, team_id = apple_id(), team_id or apple_id()
        pem = new_p8()
        meta = self.upload(app, key_id, team_id, pem, services=services,
                           environment=environment, activate=activate)
        check_eq(meta.get("key_id"), key_id, "uploaded key_id")
        check("BEGIN PUBLIC KEY" in meta.get("public_key_pem", ""),
              "no public_key_pem in the upload's answer: %r" % meta)
        return meta, key_id, team_id, pem

    def mint_events(self, key_id=None):
        """The apns.mint events of the audit log (of key_id, or all). The
        audit event is committed before the token is answered, so this is
        exact right after a request, unlike the log lines, which a reader
        thread collects a moment later (logged_mints)."""
        return [e for e in audit_events(self.state)
                if e.get("what") == "apns.mint" and
                (key_id is None or e.get("key_id") == key_id)]

    def logged_mints(self, n, timeout=METRICS_SETTLE_S):
        """The daemon's apns_token_minted log lines, once there are at
        least n (fails after timeout)."""
        self.d.wait_log(
            lambda l: len(self.d.log_events("apns_token_minted")) >= n,
            timeout, "%d apns_token_minted log lines" % n)
        return self.d.log_events("apns_token_minted")


def check_error(r, status, code, what):
    check_eq(r.status, status, what + ": status (%r)" % r)
    check(r.json is not None and isinstance(r.json.get("error"), dict),
          what + ": not a JSON error body: %r" % r.body)
    check_eq(r.json["error"].get("code"), code, what + ": error.code")


def check_apns_answer(r, key_id, team_id, pub_pem, what):
    """200 with exactly the five members, the exact header and claims, a
    signature that verifies. Returns the answer."""
    check_eq(r.status, 200, what + ": status (%r)" % r)
    a = r.json
    check_eq(sorted(a), ["expires_at", "issued_at", "key_id", "team_id",
                         "token"], what + ": members")
    for k in ("issued_at", "expires_at"):
        check(type(a[k]) is int, what + ": %s is not an integer" % k)
    check_eq((a["key_id"], a["team_id"]), (key_id, team_id), what + ": ids")
    check_eq(a["expires_at"], a["issued_at"] + APNS_LIFETIME_S,
             what + ": expires_at")
    header, claims = token_parts(a["token"])
    check_eq(header, '{"alg":"ES256","kid":"%s"}' % key_id, what + ": header")
    check_eq(claims, '{"iss":"%s","iat":%d}' % (team_id, a["issued_at"]),
             what + ": claims")
    verify(pub_pem, a["token"])
    return a
