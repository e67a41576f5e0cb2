#!/usr/bin/python3
"""test_upload.py: the upload API (POST/GET/DELETE /v1/apps/{app}/keys...)
against the real p8vaultd.

Keys are made at test time with the `openssl` command (good ones with
`openssl genpkey`, refused ones by tests/p8_corpus.py); none is ever
written outside the test's temporary directory. What the daemon answers is
checked against openssl's own view of each key (public PEM, SPKI
fingerprint, point). After every refused request the daemon must still
answer /healthz and take a good upload. Every response body and header,
and every log line, is searched at the end for each uploaded key's PEM,
base64 body, lines and private scalar (hex, base64, base64url).

A bearer token is created with `p8vault token create --role portal`
(the CLI next to p8vaultd in the build tree) and sent with every request.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Runner, TestFailure, check,  # noqa
                     check_eq, request)

runner = Runner("test_upload")

D = None                # the daemon most tests share
TOKEN = None            # portal bearer token, or None without the CLI
ACTOR = None            # what audit events must name as "who"
AUTH_STUB = True        # the daemon said its authentication is a stub
TMP = tempfile.mkdtemp(prefix="p8v-upload-test-")
RESPONSES = []          # (what, headers, body) of every response
SECRETS = []            # (what, bytes) that must never appear anywhere
LOCK = threading.Lock()
TEAM = "TEAM123456"
PARALLEL_UPLOADS = 100

# What the metadata object must hold (vault/vault.h), and what it must not.
META_REQUIRED = {"app", "key_id", "team_id", "environment", "services",
                 "topics", "state", "fingerprint", "public_key_pem",
                 "public_key_jwk", "created_at"}
PRIVATE_NAMES = {"d", "p8", "private_key", "private", "scalar", "envelope",
                 "pem"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# One corpus case (tests/p8_corpus.py) per refusal of crypto/p8.c.
CRYPTO_REFUSALS = [
    ("too-large", "p8_too_large"),
    ("not-pem-text", "p8_not_pem"),
    ("bad-base64-char", "p8_bad_base64"),
    ("certificate", "p8_certificate"),
    ("public-key", "p8_public_key"),
    ("encrypted-pkcs8", "p8_encrypted"),
    ("not-pkcs8-ec", "p8_not_pkcs8"),
    ("wrong-key-type-rsa", "p8_wrong_key_type"),
    ("wrong-key-type-ed25519", "p8_wrong_key_type"),
    ("wrong-curve-p-384", "p8_wrong_curve"),
    ("explicit-curve", "p8_explicit_curve"),
    ("bad-scalar-zero", "p8_bad_scalar"),
    ("pubkey-mismatch-other-key", "p8_public_key_mismatch"),
    ("trailing-text", "p8_trailing_data"),
    ("multiple-keys", "p8_multiple_keys"),
    ("malformed-truncated", "p8_malformed"),
]


# -- keys --------------------------------------------------------------------

def openssl(*args, data=None):
    return subprocess.run(("openssl",) + args, input=data, check=True,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE).stdout


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def remember_secrets(what, pem):
    """Everything of a private key that must never leave the daemon."""
    der = openssl("pkey", "-outform", "DER", data=pem)
    i = der.index(b"\x02\x01\x01\x04\x20") + 5   # ECPrivateKey's scalar
    scalar = der[i:i + 32]
    lines = [l for l in pem.split(b"\n") if l and not l.startswith(b"-----")]
    found = [("pem", pem.strip()), ("base64 body", b"".join(lines)),
             ("scalar hex", scalar.hex().encode()),
             ("scalar HEX", scalar.hex().upper().encode()),
             ("scalar base64", base64.b64encode(scalar).rstrip(b"=")),
             ("scalar base64url", b64url(scalar).encode()),
             ("der base64", base64.b64encode(der).rstrip(b"="))]
    # Every line but the first: the first is the same for all P-256 keys
    # (the PKCS#8 and ECPrivateKey headers), hence no secret.
    found += [("pem line", l) for l in lines[1:] if len(l) >= 16]
    with LOCK:
        SECRETS.extend(("%s: %s" % (what, n), v) for n, v in found)


class Key:
    """A fresh P-256 key, as Apple would hand it out (PKCS#8 PEM)."""

    def __init__(self):
        self.pem = openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                           "ec_paramgen_curve:P-256")
        remember_secrets("key", self.pem)
        self._pub = None

    def _public(self):
        if self._pub is None:
            spki = openssl("pkey", "-pubout", "-outform", "DER",
                           data=self.pem)
            pub_pem = openssl("pkey", "-pubout", data=self.pem).decode()
            self._pub = (hashlib.sha256(spki).hexdigest(), pub_pem,
                         spki[-65:])
        return self._pub

    @property
    def fingerprint(self):
        return self._public()[0]

    @property
    def public_pem(self):
        return self._public()[1]

    @property
    def point(self):
        return self._public()[2]


def new_id():
    return "".join(secrets.choice(string.ascii_uppercase + string.digits)
                   for _ in range(10))


def new_app(what):
    return "%s-%s" % (what.replace("_", "-")[:40], secrets.token_hex(4))


# -- the daemon and its CLI ---------------------------------------------------

def cli_path():
    path = os.environ.get("P8VAULT_CLI")
    if not path:
        daemon = os.environ.get("P8VAULTD", "")
        path = os.path.join(os.path.dirname(os.path.dirname(
            os.path.abspath(daemon))), "cli", "p8vault")
    return path if os.access(path, os.X_OK) else None


def create_token(d, role, apps=()):
    """(token, id) from `p8vault token create`, or (None, None)."""
    cli = cli_path()
    if cli is None:
        return None, None
    argv = [cli, "token", "create", "--state", d.state, "--role", role,
            "--json"]
    for a in apps:
        argv += ["--app", a]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise TestFailure("p8vault token create failed (%d): %s" % (
            p.returncode, p.stderr.decode(errors="replace")))
    out = json.loads(p.stdout)
    return out["token"], out["id"]


def daemon():
    global D, TOKEN, ACTOR, AUTH_STUB
    if D is None:
        # 100 parallel uploads come from one address: above the default
        # per-address connection budget.
        D = Daemon(args=["--max-connections-per-address",
                         str(2 * PARALLEL_UPLOADS)]).start()
        AUTH_STUB = any("authentication is a stub" in l.get("msg", "")
                        for l in D.logs)
        TOKEN, token_id = create_token(D, "portal")
        ACTOR = token_id if token_id and not AUTH_STUB else \
            "unauthenticated"
    return D


def record(what, r):
    with LOCK:
        RESPONSES.append((what, dict(r.headers), r.body))
    return r


def call(method, path, body=None, ctype=None, headers=None, token=True,
         unix=False):
    d = daemon()
    h = dict(headers or {})
    if ctype is not None:
        h["Content-Type"] = ctype
    if token is True and TOKEN:
        h["Authorization"] = "Bearer " + TOKEN
    elif isinstance(token, str):
        h["Authorization"] = "Bearer " + token
    conn = d.unix() if unix else d.tcp()
    try:
        r = request(conn, method, path, body=body, headers=h)
    finally:
        conn.close()
    return record("%s %s" % (method, path), r)


def keys_path(app, key_id=None, suffix="", query=None):
    p = "/v1/apps/%s/keys" % urllib.parse.quote(app, safe="")
    if key_id is not None:
        p += "/" + urllib.parse.quote(key_id, safe="")
    p += suffix
    if query:
        p += "?" + urllib.parse.urlencode(query)
    return p


# -- the three body forms ------------------------------------------------------

def upload_json(app, key_id, pem, team_id=TEAM, query=None, **extra):
    doc = {"key_id": key_id, "team_id": team_id,
           "p8": pem.decode() if isinstance(pem, bytes) else pem}
    doc.update(extra)
    return call("POST", keys_path(app, query=query),
                json.dumps(doc).encode(), "application/json")


def multipart(fields, p8=None, filename="AuthKey.p8", boundary=None):
    """A browser-like form: text parts (name, value) in order, then the
    file part p8 (bytes) unless None."""
    b = boundary or "----p8vaultTest" + secrets.token_hex(8)
    out = b""
    for name, value in fields:
        if isinstance(value, str):
            value = value.encode()
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\""
                b"\r\n\r\n%s\r\n" % (b.encode(), name.encode(), value))
    if p8 is not None:
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"p8\"; "
                b"filename=\"%s\"\r\nContent-Type: application/octet-stream"
                b"\r\n\r\n%s\r\n" % (b.encode(), filename.encode(), p8))
    out += b"--%s--\r\n" % b.encode()
    return out, "multipart/form-data; boundary=" + b


def upload_multipart(app, fields, p8=None, filename="AuthKey.p8"):
    body, ctype = multipart(fields, p8, filename)
    return call("POST", keys_path(app), body, ctype)


def upload_raw(app, pem, query, ctype="application/x-pem-file",
               headers=None):
    return call("POST", keys_path(app, query=query), pem, ctype, headers)


# -- checks ------------------------------------------------------------------

def check_error(r, status, code):
    check_eq(r.status, status, "status (body %r)" % r.body[:300])
    check(isinstance(r.json, dict) and isinstance(r.json.get("error"), dict),
          "no error object: %r" % r.body[:300])
    check_eq(r.json["error"].get("code"), code, "error.code")
    check(isinstance(r.json["error"].get("message"), str) and
          r.json["error"]["message"], "error.message empty")
    check_eq(sorted(r.json), ["error"], "members of an error body")
    check_eq(sorted(r.json["error"]), ["code", "message"],
             "members of error")


def still_serving():
    """After a refused request: /healthz answers and a good upload works."""
    r = daemon().get("/healthz")
    record("GET /healthz", r)
    check_eq(r.status, 200, "/healthz after a bad request")
    key = Key()
    r = upload_json(new_app("after-bad"), new_id(), key.pem)
    check_eq(r.status, 201, "a good upload after a bad request (%r)" %
             r.body[:200])
    check_eq(r.json["fingerprint"], key.fingerprint, "fingerprint")


def refused(r, status, code):
    check_error(r, status, code)
    still_serving()


def check_meta(m, key, app, key_id, team_id=TEAM, state="active",
               environment="both", services=("apns",), topics=()):
    check(isinstance(m, dict), "metadata is not an object: %r" % (m,))
    missing = META_REQUIRED - set(m)
    check(not missing, "metadata lacks %s" % sorted(missing))
    check_eq(m["app"], app, "app")
    check_eq(m["key_id"], key_id, "key_id")
    check_eq(m["team_id"], team_id, "team_id")
    check_eq(m["state"], state, "state")
    check_eq(m["environment"], environment, "environment")
    check_eq(sorted(m["services"]), sorted(services), "services")
    check_eq(sorted(m["topics"]), sorted(topics), "topics")
    check_eq(m["fingerprint"], key.fingerprint, "fingerprint (openssl's)")
    check_eq(m["public_key_pem"].strip(), key.public_pem.strip(),
             "public_key_pem (openssl's)")
    jwk = m["public_key_jwk"]
    check(isinstance(jwk, dict), "public_key_jwk is not an object")
    check_eq((jwk.get("kty"), jwk.get("crv")), ("EC", "P-256"), "JWK type")
    check_eq(jwk.get("x"), b64url(key.point[1:33]), "JWK x")
    check_eq(jwk.get("y"), b64url(key.point[33:]), "JWK y")
    check("d" not in jwk, "the JWK holds a private part")
    check(RFC3339.match(m["created_at"] or ""),
          "created_at is not RFC 3339: %r" % m["created_at"])


def find_private_names(v, where="$"):
    """Paths of members whose name suggests private material."""
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            if k in PRIVATE_NAMES:
                out.append("%s.%s" % (where, k))
            out += find_private_names(x, "%s.%s" % (where, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += find_private_names(x, "%s[%d]" % (where, i))
    return out


def states(app):
    r = call("GET", keys_path(app))
    check_eq(r.status, 200, "GET list")
    return {k["key_id"]: k["state"] for k in r.json["keys"]}


# -- store inspection (mdb_dump, from lmdb-utils) ---------------------------

def mdb_records(db):
    """(key bytes, value bytes) of every record of a named database, read
    with mdb_dump while the daemon runs (LMDB readers do not block)."""
    if shutil.which("mdb_dump") is None:
        return None
    p = subprocess.run(["mdb_dump", "-s", db, daemon().state],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise TestFailure("mdb_dump -s %s failed: %s" % (db, p.stderr))
    lines = p.stdout.decode().split("\n")
    i = lines.index("HEADER=END") + 1
    out = []
    while i + 1 < len(lines) and lines[i] != "DATA=END":
        out.append((bytes.fromhex(lines[i].strip()),
                    bytes.fromhex(lines[i + 1].strip())))
        i += 2
    return out


# -- tests -----------------------------------------------------------------

@runner.test
def json_upload_is_201_with_metadata():
    key, app, kid = Key(), new_app("json"), new_id()
    r = upload_json(app, kid, key.pem)
    check_eq(r.status, 201, "status (%r)" % r.body[:300])
    check_eq(r.headers.get("content-type"), "application/json",
             "Content-Type")
    check_meta(r.json, key, app, kid)
    r = call("GET", keys_path(app, kid))
    check_eq(r.status, 200, "GET")
    check_meta(r.json, key, app, kid)


@runner.test
def json_upload_with_every_field():
    key, app, kid = Key(), new_app("json-all"), new_id()
    r = upload_json(app, kid, key.pem, environment="production",
                    services=["apns", "devicecheck", "sign_in_with_apple"],
                    topics=["com.example.app", "com.example.app.voip"],
                    activate=True)
    check_eq(r.status, 201, "status (%r)" % r.body[:300])
    check_meta(r.json, key, app, kid, environment="production",
               services=("apns", "devicecheck", "sign_in_with_apple"),
               topics=("com.example.app", "com.example.app.voip"))
    # Charset and case in the media type are fine; null means absent.
    key, kid = Key(), new_id()
    doc = json.dumps({"key_id": kid, "team_id": TEAM, "p8": key.pem.decode(),
                      "environment": None, "topics": None}).encode()
    r = call("POST", keys_path(app), doc, "Application/JSON; charset=UTF-8")
    check_eq(r.status, 201, "status (%r)" % r.body[:300])
    check_meta(r.json, key, app, kid)


@runner.test
def multipart_upload_is_201():
    key, app, kid = Key(), new_app("multipart"), new_id()
    # What a browser sends: text inputs, checkboxes (services twice), the
    # file input last, named as Apple names the file.
    r = upload_multipart(app, [("key_id", kid), ("team_id", TEAM),
                               ("environment", "development"),
                               ("services", "apns"),
                               ("services", "weatherkit"),
                               ("topics", "com.example.a, com.example.b"),
                               ("activate", "true")],
                         key.pem, "AuthKey_%s.p8" % kid)
    check_eq(r.status, 201, "status (%r)" % r.body[:300])
    check_meta(r.json, key, app, kid, environment="development",
               services=("apns", "weatherkit"),
               topics=("com.example.a", "com.example.b"))
    # Empty optional inputs are absent; any other file name is not looked
    # at; CRLF line ends in the file are kept and accepted.
    key, kid = Key(), new_id()
    r = upload_multipart(app, [("key_id", kid), ("team_id", TEAM),
                               ("environment", ""), ("topics", "")],
                         key.pem.replace(b"\n", b"\r\n"), "my key.p8")
    check_eq(r.status, 201, "status (%r)" % r.body[:300])
    check_meta(r.json, key, app, kid)


@runner.test
def raw_pem_upload_is_201():
    app = new_app("raw")
    key, kid = Key(), new_id()
    r = upload_raw(app, key.pem, {"key_id": kid, "team_id": TEAM})
    check_eq(r.status, 201, "x-pem-file (%r)" % r.body[:300])
    check_meta(r.json, key, app, kid)
    key, kid = Key(), new_id()
    r = upload_raw(app, key.pem, {"key_id": kid, "team_id": TEAM,
                                  "environment": "production",
                                  "services": "apns,maps",
                                  "topics": "com.example.x",
                                  "filename": "AuthKey_%s.p8" % kid},
                   ctype="application/pkcs8; charset=us-ascii",
                   headers={"Content-Disposition":
                            "attachment; filename=\"AuthKey_%s.p8\"" % kid})
    check_eq(r.status, 201, "pkcs8 (%r)" % r.body[:300])
    check_meta(r.json, key, app, kid, environment="production",
               services=("apns", "maps"), topics=("com.example.x",))


@runner.test
def identical_reupload_is_200_and_changes_nothing():
    key, app, kid = Key(), new_app("again"), new_id()
    first = upload_json(app, kid, key.pem)
    check_eq(first.status, 201, "first upload")
    # The first answer may warn (other active APNs keys of TEAM, from
    # other cases): a warning is about the change, the metadata the same.
    first.json.pop("warnings", None)
    for r in (upload_json(app, kid, key.pem),
              upload_multipart(app, [("key_id", kid), ("team_id", TEAM)],
                               key.pem, "AuthKey_%s.p8" % kid),
              upload_raw(app, key.pem, {"key_id": kid, "team_id": TEAM}),
              upload_json(app, kid, key.pem, activate=False)):
        check_eq(r.status, 200, "the same key again (%r)" % r.body[:300])
        check_eq(r.json, first.json, "metadata after the same key again")
    r = call("GET", keys_path(app))
    check_eq(len(r.json["keys"]), 1, "keys after four re-uploads")
    check_eq(r.json["keys"][0], first.json, "stored metadata")


@runner.test
def different_material_under_a_key_id_is_409():
    key, app, kid = Key(), new_app("conflict"), new_id()
    check_eq(upload_json(app, kid, key.pem).status, 201, "first upload")
    refused(upload_json(app, kid, Key().pem), 409, "key_exists")
    refused(upload_raw(app, Key().pem, {"key_id": kid, "team_id": TEAM}),
            409, "key_exists")
    r = call("GET", keys_path(app, kid))
    check_eq(r.json["fingerprint"], key.fingerprint, "the stored key stays")
    r = upload_json(app, kid, Key().pem)
    check_eq(r.json["error"]["message"], "another key is stored in this app "
             "under Key ID %s: a Key ID names one key" % kid, "message")


@runner.test
def key_exists_under_another_key_id_names_it():
    """The same key revoked under one Key ID of the app and uploaded again
    under another: 409 key_exists, and the message names the Key ID that
    holds it (one of this app's: nothing about other tenants)."""
    key, app, k1, k2 = Key(), new_app("holder"), new_id(), new_id()
    check_eq(upload_json(app, k1, key.pem).status, 201, "first upload")
    check_eq(call("DELETE", keys_path(app, k1)).status, 200, "revoke")
    for r in (upload_json(app, k2, key.pem),
              upload_raw(app, key.pem, {"key_id": k2, "team_id": TEAM})):
        refused(r, 409, "key_exists")
        check_eq(r.json["error"]["message"], "this key is stored in this "
                 "app under Key ID %s (revoked): a key keeps its one Key ID"
                 % k1, "message")
    # In another app the revoked copy is no obstacle, and says nothing.
    other = new_app("holder-other")
    check_eq(upload_json(other, k2, key.pem).status, 201, "another app")


@runner.test
def a_new_upload_becomes_active_unless_activate_false():
    app = new_app("activate")
    a, b, c = Key(), Key(), Key()
    ka, kb, kc = new_id(), new_id(), new_id()
    check_eq(upload_json(app, ka, a.pem).json["state"], "active", "A")
    r = upload_json(app, kb, b.pem, activate=False)
    check_eq((r.status, r.json["state"]), (201, "standby"), "B, activate false")
    check_eq(states(app), {ka: "active", kb: "standby"}, "after B")
    r = upload_multipart(app, [("key_id", kc), ("team_id", TEAM),
                               ("activate", "false")], c.pem)
    check_eq(r.json["state"], "standby", "C by form, activate false")
    r = upload_raw(app, Key().pem, {"key_id": new_id(), "team_id": TEAM,
                                    "activate": "0"})
    check_eq(r.json["state"], "standby", "raw, activate 0")
    # JSON takes 1 and 0 as forms do; another number is invalid_field.
    r = upload_json(app, new_id(), Key().pem, activate=0)
    check_eq((r.status, r.json.get("state")), (201, "standby"),
             "JSON activate 0 (%r)" % r.body[:200])
    r = upload_multipart(app, [("key_id", new_id()), ("team_id", TEAM),
                               ("activate", "0")], Key().pem)
    check_eq(r.json["state"], "standby", "form, activate 0")
    for bad in (2, -1):
        r = upload_json(app, new_id(), Key().pem, activate=bad)
        refused(r, 422, "invalid_field")
        check_eq(r.json["error"]["message"], "activate must be true, false, "
                 "1 or 0", "message for activate %d" % bad)
    r = upload_multipart(app, [("key_id", new_id()), ("team_id", TEAM),
                               ("activate", "yes")], Key().pem)
    refused(r, 422, "invalid_field")
    check_eq(r.json["error"]["message"], "activate must be true, false, 1 or "
             "0", "form message")
    r = upload_json(app, new_id(), Key().pem, activate=1)
    check_eq((r.status, r.json.get("state")), (201, "active"),
             "JSON activate 1")
    kd = new_id()
    r = upload_json(app, kd, Key().pem)
    check_eq(r.json["state"], "active", "D, default")
    s = states(app)
    check_eq((s[ka], s[kd]), ("standby", "active"), "A gave way to D")
    check_eq(list(s.values()).count("active"), 1, "one active key")


@runner.test
def activation():
    app = new_app("activation")
    a, b = Key(), Key()
    ka, kb = new_id(), new_id()
    upload_json(app, ka, a.pem)
    upload_json(app, kb, b.pem)
    check_eq(states(app), {ka: "standby", kb: "active"}, "before")
    r = call("POST", keys_path(app, ka, "/activate"))
    check_eq(r.status, 200, "activate (%r)" % r.body[:300])
    check_meta(r.json, a, app, ka, state="active")
    check_eq(states(app), {ka: "active", kb: "standby"}, "after")
    r = call("POST", keys_path(app, ka, "/activate"))
    check_eq((r.status, r.json["state"]), (200, "active"),
             "activating the active key")
    refused(call("POST", keys_path(app, new_id(), "/activate")), 404,
            "key_not_found")
    refused(call("POST", keys_path(app, "lowercase1", "/activate")), 422,
            "invalid_key_id")
    refused(call("POST", keys_path("bad!app", ka, "/activate")), 422,
            "invalid_app_id")
    check_eq(call("DELETE", keys_path(app, kb)).status, 200, "revoke B")
    refused(call("POST", keys_path(app, kb, "/activate")), 410,
            "key_revoked")


@runner.test
def revocation_keeps_a_tombstone():
    key, app, kid = Key(), new_app("revoke"), new_id()
    created = upload_json(app, kid, key.pem).json
    r = call("DELETE", keys_path(app, kid))
    check_eq(r.status, 200, "DELETE (%r)" % r.body[:300])
    check_meta(r.json, key, app, kid, state="revoked")
    check_eq(r.json["created_at"], created["created_at"], "created_at kept")
    check(r.json.get("master_key_id") is None,
          "a tombstone names no master key: %r" % r.json.get("master_key_id"))
    r = call("GET", keys_path(app, kid))
    check_eq(r.status, 200, "GET the tombstone")
    check_meta(r.json, key, app, kid, state="revoked")
    check_eq(states(app), {kid: "revoked"}, "the list shows the tombstone")
    refused(call("DELETE", keys_path(app, kid)), 410, "key_revoked")
    # A revoked Key ID is never reused, not even for the same key.
    refused(upload_json(app, kid, key.pem), 410, "key_revoked")
    refused(call("DELETE", keys_path(app, new_id())), 404, "key_not_found")
    # The sealed key is gone from the store: the record is its metadata
    # only (format byte, u32 length, metadata; no envelope after it).
    recs = mdb_records("keys")
    if recs is not None:
        db_key = app.encode() + b"\x00" + kid.encode()
        vals = [v for k, v in recs if k == db_key]
        check_eq(len(vals), 1, "stored records of the revoked key")
        v = vals[0]
        m = int.from_bytes(v[1:5], "big")
        check_eq(len(v), 5 + m, "record length (metadata only)")
        live = [v for k, v in recs if k != db_key and
                k.startswith(app.encode() + b"\x00")]
        check_eq(live, [], "other records of the app")


@runner.test
def audit_events_name_the_token():
    app, kid, kid2 = new_app("audit"), new_id(), new_id()
    upload_json(app, kid, Key().pem)
    upload_json(app, kid2, Key().pem)
    call("POST", keys_path(app, kid, "/activate"))
    call("DELETE", keys_path(app, kid2))
    recs = mdb_records("audit")
    if recs is None:
        return "skip"
    events = []
    for _, v in recs:
        ev = json.loads(v)
        if ev.get("app") == app:
            events.append(ev)
    check_eq(sorted((e["what"], e["key_id"]) for e in events),
             sorted([("key.upload", kid), ("key.upload", kid2),
                     ("key.activate", kid), ("key.revoke", kid2)]),
             "audit events of the app")
    for e in events:
        check_eq(e.get("who"), ACTOR, "who in %s" % e["what"])
        check(RFC3339.match(e.get("time", "")), "time in %r" % e)
        check(e.get("result"), "result in %r" % e)


@runner.test
def file_name_naming_another_key_id_is_400():
    key, app, kid = Key(), new_app("mismatch"), new_id()
    other = "AuthKey_%s.p8" % new_id()
    refused(upload_multipart(app, [("key_id", kid), ("team_id", TEAM)],
                             key.pem, other), 400, "key_id_mismatch")
    refused(upload_multipart(app, [("key_id", kid), ("team_id", TEAM)],
                             key.pem, "C:\\Users\\me\\" + other), 400,
            "key_id_mismatch")
    refused(upload_raw(app, key.pem, {"key_id": kid, "team_id": TEAM,
                                      "filename": other}), 400,
            "key_id_mismatch")
    refused(upload_raw(app, key.pem, {"key_id": kid, "team_id": TEAM},
                       headers={"Content-Disposition":
                                "attachment; filename=\"%s\"" % other}),
            400, "key_id_mismatch")
    refused(upload_json(app, kid, key.pem, query={"filename": other}), 400,
            "key_id_mismatch")
    # Nothing was stored; the right name is accepted.
    check_eq(states(app), {}, "keys after the refusals")
    r = upload_multipart(app, [("key_id", kid), ("team_id", TEAM)], key.pem,
                         "AuthKey_%s.p8" % kid)
    check_eq(r.status, 201, "the right file name")


@runner.test
def every_refusal_of_the_crypto_core_is_400_with_its_code():
    corpus = os.path.join(TMP, "corpus")
    os.mkdir(corpus)
    script = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "p8_corpus.py")
    subprocess.run([sys.executable, script, corpus], check=True)
    with open(os.path.join(corpus, "ok-genpkey.p8"), "rb") as f:
        remember_secrets("corpus key", f.read())
    app = new_app("crypto")
    for name, code in CRYPTO_REFUSALS:
        with open(os.path.join(corpus, name + ".p8"), "rb") as f:
            data = f.read()
        try:
            r = upload_json(app, new_id(), data.decode("ascii"))
            refused(r, 400, code)
        except TestFailure as e:
            raise TestFailure("%s: %s" % (name, e))
    # The other two forms reach the same checks.
    with open(os.path.join(corpus, "certificate.p8"), "rb") as f:
        cert = f.read()
    refused(upload_raw(app, cert, {"key_id": new_id(), "team_id": TEAM}),
            400, "p8_certificate")
    refused(upload_multipart(app, [("key_id", new_id()), ("team_id", TEAM)],
                             cert, "cert.pem"), 400, "p8_certificate")
    check_eq(states(app), {}, "nothing stored")


@runner.test
def missing_fields_are_422():
    app, kid, pem = new_app("missing"), new_id(), Key().pem
    for doc in ({"team_id": TEAM, "p8": pem.decode()},
                {"key_id": kid, "p8": pem.decode()},
                {"key_id": kid, "team_id": TEAM},
                {"key_id": kid, "team_id": TEAM, "p8": None}):
        refused(call("POST", keys_path(app), json.dumps(doc).encode(),
                     "application/json"), 422, "missing_field")
    refused(upload_multipart(app, [("key_id", kid), ("team_id", TEAM)]),
            422, "missing_field")
    # An empty file input: what a browser sends when no file was chosen.
    refused(upload_multipart(app, [("key_id", kid), ("team_id", TEAM)], b"",
                             ""), 422, "missing_field")
    refused(upload_raw(app, pem, {"team_id": TEAM}), 422, "missing_field")
    refused(upload_raw(app, b"", {"key_id": kid, "team_id": TEAM}), 422,
            "missing_field")


@runner.test
def malformed_requests_are_400_unknown_fields_422():
    app, kid, pem = new_app("malformed"), new_id(), Key().pem
    good = {"key_id": kid, "team_id": TEAM, "p8": pem.decode()}
    bodies = [
        b"{", b"[]", b"", b"null", b"{\"key_id\": }",
        json.dumps(good).encode() + b"x",
        # a member twice
        json.dumps(good)[:-1].encode() + b", \"key_id\": \"%s\"}" %
        kid.encode(),
        json.dumps(good)[:-1].encode() + b", \"p8\": \"x\"}",
        # wrong JSON types
        json.dumps(dict(good, key_id=1)).encode(),
        json.dumps(dict(good, p8=["x"])).encode(),
        json.dumps(dict(good, services="apns")).encode(),
        json.dumps(dict(good, topics=[1])).encode(),
        json.dumps(dict(good, activate="false")).encode(),
        # invalid escapes inside the key
        json.dumps(good).replace("\\n", "\\x", 1).encode(),
        json.dumps(good).replace("\\n", "\n", 1).encode(),
    ]
    for body in bodies:
        refused(call("POST", keys_path(app), body, "application/json"), 400,
                "bad_request")
    refused(upload_json(app, kid, pem, name="x"), 422, "unknown_field")
    refused(upload_json(app, kid, pem, query={"activate": "false"}), 400,
            "bad_request")
    # multipart: a part twice, an unknown part, truncated, no boundary
    refused(upload_multipart(app, [("key_id", kid), ("key_id", kid),
                                   ("team_id", TEAM)], pem), 400,
            "bad_request")
    refused(upload_multipart(app, [("key_id", kid), ("team_id", TEAM),
                                   ("csrf_token", "x")], pem), 422,
            "unknown_field")
    body, ctype = multipart([("key_id", kid), ("team_id", TEAM)], pem)
    refused(call("POST", keys_path(app), body[:-20], ctype), 400,
            "bad_request")
    refused(call("POST", keys_path(app), body, "multipart/form-data"), 400,
            "bad_request")
    check_eq(states(app), {}, "nothing stored")


@runner.test
def body_over_128_kib_is_413():
    app, kid, pem = new_app("large"), new_id(), Key().pem
    doc = {"key_id": kid, "team_id": TEAM, "p8": pem.decode(),
           "topics": ["t" * 250] * 540}          # ~135 KiB
    body = json.dumps(doc).encode()
    check(len(body) > 130 * 1024, "body is %d bytes" % len(body))
    refused(call("POST", keys_path(app), body, "application/json"), 413,
            "too_large")
    raw = pem + b" " * (130 * 1024)
    refused(upload_raw(app, raw, {"key_id": kid, "team_id": TEAM}), 413,
            "too_large")
    # The same, chunked: no Content-Length to refuse it early.
    conn = daemon().tcp()
    try:
        conn.request("POST", keys_path(app),
                     body=iter([body[i:i + 8192]
                                for i in range(0, len(body), 8192)]),
                     headers={"Content-Type": "application/json",
                              "Authorization": "Bearer %s" % TOKEN}
                     if TOKEN else {"Content-Type": "application/json"},
                     encode_chunked=True)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    with LOCK:
        RESPONSES.append(("chunked POST", dict(resp.getheaders()), data))
    check_eq(resp.status, 413, "chunked 70 KiB")
    check_eq(json.loads(data)["error"]["code"], "too_large", "code")
    still_serving()
    check_eq(states(app), {}, "nothing stored")


@runner.test
def other_content_types_are_415():
    app, kid, pem = new_app("media"), new_id(), Key().pem
    doc = json.dumps({"key_id": kid, "team_id": TEAM,
                      "p8": pem.decode()}).encode()
    for ctype in (None, "text/plain", "application/octet-stream",
                  "application/x-www-form-urlencoded", "application/jsonx",
                  "application/json; charset=iso-8859-1", "json"):
        refused(call("POST", keys_path(app), doc, ctype), 415,
                "unsupported_media_type")
    check_eq(states(app), {}, "nothing stored")


@runner.test
def fields_present_but_invalid_are_422():
    app, pem = new_app("invalid"), Key().pem
    cases = [
        (dict(key_id="abcde12345"), "invalid_key_id"),
        (dict(key_id="ABCDE1234"), "invalid_key_id"),
        (dict(key_id=""), "invalid_key_id"),
        (dict(team_id="TEAM12345!"), "invalid_team_id"),
        (dict(team_id="T"), "invalid_team_id"),
        (dict(environment="staging"), "invalid_field"),
        (dict(services=["apns", "fcm"]), "invalid_field"),
        (dict(services=[]), "invalid_field"),
        (dict(topics=["not a topic"]), "invalid_field"),
        (dict(topics=["t%d" % i for i in range(401)]), "invalid_field"),
    ]
    for fields, code in cases:
        doc = {"key_id": new_id(), "team_id": TEAM, "p8": pem.decode()}
        doc.update(fields)
        try:
            refused(call("POST", keys_path(app), json.dumps(doc).encode(),
                         "application/json"), 422, code)
        except TestFailure as e:
            raise TestFailure("%r: %s" % (fields, e))
    refused(upload_multipart(app, [("key_id", new_id()), ("team_id", TEAM),
                                   ("activate", "maybe")], pem), 422,
            "invalid_field")
    refused(upload_raw(app, pem, {"key_id": new_id(), "team_id": TEAM,
                                  "services": "apns,,maps"}), 422,
            "invalid_field")
    for bad_app in ("bad!app", "a" * 65, ".."):
        refused(upload_json(bad_app, new_id(), pem), 422, "invalid_app_id")
    check_eq(states(app), {}, "nothing stored")


@runner.test
def reads_are_metadata_only():
    key, app, kid = Key(), new_app("read"), new_id()
    upload_json(app, kid, key.pem, topics=["com.example.r"])
    r = call("GET", keys_path(app))
    check_eq(r.status, 200, "list")
    check_eq(sorted(r.json), ["keys"], "list members")
    check_eq(len(r.json["keys"]), 1, "keys")
    check_meta(r.json["keys"][0], key, app, kid, topics=("com.example.r",))
    r = call("HEAD", keys_path(app, kid))
    check_eq((r.status, r.body), (200, b""), "HEAD")
    r = call("GET", keys_path(app, kid, query={"include_private": "1",
                                                "format": "pem"}))
    check_eq(r.status, 200, "GET with made-up parameters")
    check_meta(r.json, key, app, kid, topics=("com.example.r",))
    check_eq(call("GET", keys_path(new_app("nobody"))).json, {"keys": []},
             "list of an app without keys")
    refused(call("GET", keys_path(app, new_id())), 404, "key_not_found")
    refused(call("GET", keys_path(app, "short")), 422, "invalid_key_id")
    refused(call("GET", keys_path("bad app")), 422, "invalid_app_id")
    for method in ("PUT", "PATCH"):
        r = call(method, keys_path(app, kid), b"{}", "application/json")
        refused(r, 405, "method_not_allowed")
    for suffix in ("/private", "/p8", "/export", "/pem"):
        refused(call("GET", keys_path(app, kid, suffix)), 404, "not_found")
    # Not on the signing socket at all.
    r = call("GET", keys_path(app, kid), unix=True)
    refused(r, 404, "not_found")


@runner.test
def a_bearer_token_is_required():
    d = daemon()
    if AUTH_STUB or TOKEN is None:
        return "skip"
    app, kid, pem = new_app("auth"), new_id(), Key().pem
    body = json.dumps({"key_id": kid, "team_id": TEAM,
                       "p8": pem.decode()}).encode()
    refused(call("POST", keys_path(app), body, "application/json",
                 token=False), 401, "unauthorized")
    refused(call("GET", keys_path(app), token="p8v_" + "0" * 16 + "_" +
                 "A" * 43), 401, "unauthorized")
    signer, _ = create_token(d, "signer")
    refused(call("GET", keys_path(app), token=signer), 403, "forbidden")
    scoped, _ = create_token(d, "portal", ["another-app"])
    refused(call("GET", keys_path(app), token=scoped), 403, "forbidden")
    admin, admin_id = create_token(d, "admin")
    r = call("POST", keys_path(app), body, "application/json", token=admin)
    check_eq(r.status, 201, "admin may upload (%r)" % r.body[:200])
    check_eq(r.json.get("created_by"), admin_id, "created_by")


@runner.test
def hundred_parallel_uploads_are_all_stored():
    app = new_app("parallel")
    keys = [None] * PARALLEL_UPLOADS
    # Making the keys is openssl's time, not the daemon's: do it first.
    def make(lo, hi):
        for i in range(lo, hi):
            keys[i] = (new_id(), Key())
    makers = [threading.Thread(target=make, args=(i, min(i + 10,
                                                       PARALLEL_UPLOADS)))
              for i in range(0, PARALLEL_UPLOADS, 10)]
    for t in makers:
        t.start()
    for t in makers:
        t.join()
    check(all(keys), "keys made")
    results = [None] * PARALLEL_UPLOADS
    barrier = threading.Barrier(PARALLEL_UPLOADS)

    def upload(i):
        kid, key = keys[i]
        try:
            barrier.wait(30)
            if i % 3 == 0:
                r = upload_json(app, kid, key.pem)
            elif i % 3 == 1:
                r = upload_multipart(app, [("key_id", kid),
                                           ("team_id", TEAM)], key.pem,
                                     "AuthKey_%s.p8" % kid)
            else:
                r = upload_raw(app, key.pem, {"key_id": kid,
                                              "team_id": TEAM})
            results[i] = (r.status, r.json.get("fingerprint")
                          if isinstance(r.json, dict) else r.body[:200])
        except Exception as e:                  # noqa: reported below
            results[i] = ("exception", repr(e))

    threads = [threading.Thread(target=upload, args=(i,))
               for i in range(PARALLEL_UPLOADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    bad = [(i, r) for i, r in enumerate(results)
           if r is None or r[0] != 201 or r[1] != keys[i][1].fingerprint]
    check(not bad, "%d uploads failed, e.g. %r" % (len(bad), bad[:5]))
    r = call("GET", keys_path(app))
    stored = {k["key_id"]: k for k in r.json["keys"]}
    check_eq(sorted(stored), sorted(k for k, _ in keys), "stored Key IDs")
    for kid, key in keys:
        check_eq(stored[kid]["fingerprint"], key.fingerprint,
                 "fingerprint of " + kid)
    active = [k for k in stored.values() if k["state"] == "active"]
    check_eq(len(active), 1, "active keys after racing activations")


@runner.test
def no_response_or_log_line_holds_key_material():
    """Last: everything collected above, searched for every secret."""
    d = daemon()
    r = d.get("/healthz")
    check_eq(r.status, 200, "/healthz at the end")
    check(len(SECRETS) > 100 and len(RESPONSES) > 100,
          "too little collected: %d secrets, %d responses" % (
              len(SECRETS), len(RESPONSES)))
    leaks = []
    for what, headers, body in RESPONSES:
        blob = body + b"\n" + "\n".join(
            "%s: %s" % kv for kv in headers.items()).encode()
        for name, secret in SECRETS:
            if secret in blob:
                leaks.append("%s: %s" % (what, name))
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        names = find_private_names(doc)
        if names:
            leaks.append("%s: members %s" % (what, names))
    check(not leaks, "key material in responses: %r" % leaks[:5])
    d.stop()            # exit 0, every log line JSON, no master key
    logs = "\n".join(d.lines).encode()
    for name, secret in SECRETS:
        check(secret not in logs, "a log line holds %s" % name)


if __name__ == "__main__":
    try:
        runner.main()
    finally:
        if D is not None:
            D.close()
        shutil.rmtree(TMP, ignore_errors=True)
