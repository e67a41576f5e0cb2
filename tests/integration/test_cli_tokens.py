#!/usr/bin/python3
"""test_cli_tokens.py: the real `p8vault` CLI next to a real p8vaultd on the
same state directory: init, token create/list/revoke while the daemon runs,
and how the API answers each kind of token (200, 401, 403) on both
listeners.

The CLI binary is taken from $P8VAULT, the daemon from $P8VAULTD (both set
by meson)."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Runner, TestFailure, check, check_eq,  # noqa
                     request)

runner = Runner("test_cli_tokens")

# A CLI command is quick; this only bounds a hang (ASan builds are slower).
CLI_TIMEOUT_S = 30

# Routes: GET /v1/whoami (both listeners, any token), the upload API's key
# list (portal listener, portal role, {app}), the signing API's APNs token
# (signing listener, signer role, {app}).
WHOAMI = "/v1/whoami"


def keys_path(app):
    return "/v1/apps/%s/keys" % app


def apns_path(app):
    return "/v1/apps/%s/apns-token" % app


def cli_path():
    path = os.environ.get("P8VAULT")
    if not path or not os.access(path, os.X_OK):
        print("P8VAULT is not set to the p8vault binary", file=sys.stderr)
        sys.exit(2)
    return os.path.abspath(path)


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return "exit %d, stdout %r, stderr %r" % (self.rc, self.out[:300],
                                                   self.err[:300])


def p8vault(*args, rc=0):
    """Run the CLI; check its exit status (rc=None: any)."""
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("P8VAULT_"):
            del env[k]
    proc = subprocess.run([cli_path()] + list(args), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)
    res = Result(proc)
    if rc is not None and res.rc != rc:
        raise TestFailure("p8vault %s: want exit %d, got %r" % (
            " ".join(args), rc, res))
    return res


def create(state, role, apps=(), name=None):
    """A new token via the CLI (--json); returns the parsed object."""
    args = ["token", "create", "--state", state, "--role", role, "--json"]
    for a in apps:
        args += ["--app", a]
    if name is not None:
        args += ["--name", name]
    res = p8vault(*args)
    obj = json.loads(res.out)
    check_eq(sorted(obj), ["apps", "id", "name", "role", "token"],
             "token create --json members")
    return obj


def secret_of(token):
    """The secret part: after "p8v_", the 16-digit id and "_" (the secret's
    base64url alphabet has '_' too, so never split on it)."""
    return token[len("p8v_") + 16 + 1:]


def bearer(token):
    return {"Authorization": "Bearer " + token}


def check_error(r, status, code, what):
    check_eq(r.status, status, what + ": status")
    check(r.json is not None and isinstance(r.json.get("error"), dict),
          what + ": not a JSON error body: %r" % r.body)
    check_eq(r.json["error"].get("code"), code, what + ": error.code")
    if status == 401:
        check(r.headers.get("www-authenticate", "").startswith("Bearer"),
              what + ": 401 without WWW-Authenticate: Bearer: %r" %
              r.headers)


def check_allowed(r, what):
    """Authentication passed: anything but 401/403 (the route itself may
    answer 404 for an app with no keys) and no server error."""
    check(r.status not in (401, 403) and r.status < 500,
          "%s: want the request let through, got %r" % (what, r))


class Vault:
    """A state directory made by `p8vault init` and a p8vaultd on it."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="p8v-cli-")
        self.state = os.path.join(self.tmp, "state")
        self.key = os.path.join(self.tmp, "master.key")
        p8vault("init", "--state", self.state, "--master-key-file", self.key)
        # The harness uses <tmp>/state and <tmp>/master.key as they are.
        self.d = Daemon(tmpdir=self.tmp)

    def __enter__(self):
        self.d.start()
        return self

    def __exit__(self, *exc):
        try:
            if exc[0] is None:
                self.d.stop()
        finally:
            self.d.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def portal(self, path, token=None, headers=None, method="GET"):
        h = dict(headers or {})
        if token is not None:
            h.update(bearer(token))
        return self.d.get(path, headers=h, method=method)

    def sign(self, path, token=None, headers=None, method="GET", body=None):
        h = dict(headers or {})
        if token is not None:
            h.update(bearer(token))
        return self.d.get(path, unix=True, headers=h, method=method,
                          body=body)

    def apns(self, app, token):
        # No body (it is optional): an answer sent before a body is read
        # may close the connection under a client still sending it.
        return self.sign(apns_path(app), token, method="POST")

    def check_secrets_absent(self, tokens):
        """No token, nor its secret part, in the daemon's logs or in the
        state directory's files (the store keeps a hash)."""
        blobs = []
        for name in os.listdir(self.state):
            with open(os.path.join(self.state, name), "rb") as f:
                blobs.append((name, f.read()))
        for t in tokens:
            secret = secret_of(t)
            for line in self.d.lines:
                check(secret not in line, "a daemon log line holds a token")
            for name, data in blobs:
                check(secret.encode() not in data,
                      "%s holds a token's secret" % name)


# -- init -------------------------------------------------------------------

@runner.test
def init_creates_state_and_key():
    tmp = tempfile.mkdtemp(prefix="p8v-cli-")
    try:
        state = os.path.join(tmp, "state")
        key = os.path.join(tmp, "keys", "master.key")
        os.mkdir(os.path.dirname(key), 0o700)
        res = p8vault("init", "--state", state, "--master-key-file", key,
                      "--json")
        obj = json.loads(res.out)
        check_eq((obj["state_dir_created"], obj["master_key_created"],
                  obj["master_key_newly_recorded"],
                  obj["master_key_inside_state_dir"]),
                 (True, True, True, False), "init --json flags")
        check_eq(stat.S_IMODE(os.stat(state).st_mode), 0o700,
                 "state directory mode")
        check_eq(stat.S_IMODE(os.stat(key).st_mode), 0o600, "key file mode")
        with open(key) as f:
            text = f.read()
        check(len(text.strip()) == 64 and
              all(c in "0123456789abcdef" for c in text.strip()),
              "the key file is not 64 hex digits")
        check("warning" not in res.err, "unexpected warning: %r" % res.err)
        check(text.strip() not in res.out + res.err,
              "init printed the master key")
        # Again: nothing created, nothing overwritten, exit 0.
        res = p8vault("init", "--state", state, "--master-key-file", key,
                      "--json")
        obj = json.loads(res.out)
        check_eq((obj["state_dir_created"], obj["master_key_created"],
                  obj["master_key_newly_recorded"]), (False, False, False),
                 "second init")
        with open(key) as f:
            check_eq(f.read(), text, "the key file after a second init")
        # Another key for the same directory is refused, naming both.
        other = os.path.join(tmp, "keys", "other.key")
        res = p8vault("init", "--state", state, "--master-key-file", other,
                      rc=1)
        check(other in res.err and state in res.err,
              "mismatch message names neither file: %r" % res.err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@runner.test
def init_warns_about_key_inside_state_dir():
    tmp = tempfile.mkdtemp(prefix="p8v-cli-")
    try:
        state = os.path.join(tmp, "state")
        key = os.path.join(state, "dev.key")
        res = p8vault("init", "--state", state, "--master-key-file", key)
        check("warning" in res.err and "development only" in res.err,
              "no warning for a key inside the state directory: %r" %
              res.err)
        check_eq(stat.S_IMODE(os.stat(key).st_mode), 0o600, "key file mode")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@runner.test
def usage_errors_and_help():
    res = p8vault("--help")
    for code in ("0 ", "1 ", "2 "):
        check(code in res.out, "--help does not document exit %s" % code)
    for cmd in (["init"], ["token"], ["token", "create"], ["token", "list"],
                ["token", "revoke"]):
        res = p8vault(*(cmd + ["--help"]))
        check(res.out.startswith("Usage:"), "%s --help: %r" % (cmd, res))
    p8vault(rc=2)
    p8vault("frobnicate", rc=2)
    p8vault("init", "--state", "/nonexistent/x", rc=2)      # no key file
    p8vault("token", "create", "--role", "admin", rc=2)     # no --state
    p8vault("token", "create", "--state", "/tmp", "--role", "root", rc=2)
    p8vault("token", "create", "--state", "/tmp", "--role", "portal",
            "--app", "no/slash", rc=2)
    p8vault("token", "revoke", "--state", "/tmp", "XYZ", rc=2)
    # A state directory that does not exist is not created by a token
    # command: one line naming it.
    tmp = tempfile.mkdtemp(prefix="p8v-cli-")
    try:
        missing = os.path.join(tmp, "typo")
        res = p8vault("token", "list", "--state", missing, rc=1)
        check(missing in res.err and len(res.err.strip().splitlines()) == 1,
              "failure is not one line naming the directory: %r" % res.err)
        check(not os.path.exists(missing), "token list created the "
              "state directory")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- tokens against a running daemon ----------------------------------------

@runner.test
def new_token_works_at_once_and_revoked_is_refused_at_once():
    with Vault() as v:
        t = create(v.state, "portal", name="portal backend")
        check(t["token"].startswith("p8v_" + t["id"] + "_"),
              "token format: %r" % t["token"])
        check_eq(len(t["token"]), 64, "token length")
        check_eq((t["role"], t["apps"], t["name"]),
                 ("portal", ["*"], "portal backend"), "token create --json")
        # Created by another process while the daemon runs: accepted on
        # the very next request, on a connection opened before.
        conn = v.d.tcp()
        try:
            r = request(conn, "GET", WHOAMI, headers=bearer(t["token"]))
            check_eq(r.status, 200, "whoami with a new token")
            check_eq(r.json, {"id": t["id"], "role": "portal",
                              "apps": ["*"]}, "whoami body")
            check_allowed(request(conn, "GET", keys_path("app-a"),
                                  headers=bearer(t["token"])),
                          "portal token on the upload API")
            res = p8vault("token", "revoke", "--state", v.state, t["id"])
            check(t["id"] in res.out, "revoke output: %r" % res)
            # Same keep-alive connection, no pause: refused.
            check_error(request(conn, "GET", keys_path("app-a"),
                                headers=bearer(t["token"])),
                        401, "unauthorized", "revoked token")
            check_error(request(conn, "GET", WHOAMI,
                                headers=bearer(t["token"])),
                        401, "unauthorized", "revoked token on whoami")
        finally:
            conn.close()
        # Listed as revoked; revoking again is fine.
        lst = json.loads(p8vault("token", "list", "--state", v.state,
                                 "--json").out)
        check_eq(len(lst), 1, "token list length")
        check_eq(sorted(lst[0]), ["apps", "created_at", "id", "name",
                                  "revoked_at", "role"],
                 "token list members (never a hash)")
        check(lst[0]["revoked_at"] is not None, "revoked_at not set")
        res = json.loads(p8vault("token", "revoke", "--state", v.state,
                                 t["id"], "--json").out)
        check_eq(res["already_revoked"], True, "second revoke")
        p8vault("token", "revoke", "--state", v.state, "0" * 16, rc=1)
        v.check_secrets_absent([t["token"]])


@runner.test
def missing_unknown_and_garbled_tokens_are_401():
    with Vault() as v:
        good = create(v.state, "admin")["token"]
        unknown = "p8v_0123456789abcdef_" + "A" * 43
        wrong_secret = good[:-2] + ("B" if good[-2] != "B" else "C") + \
            good[-1]
        cases = [
            ("no header", {}),
            ("empty bearer", {"Authorization": "Bearer "}),
            ("basic", {"Authorization": "Basic YWRtaW46YWRtaW4="}),
            ("no scheme", {"Authorization": good}),
            ("garbled", bearer("p8v_nonsense")),
            ("unknown id", bearer(unknown)),
            ("wrong secret", bearer(wrong_secret)),
            ("truncated", bearer(good[:-1])),
            ("extended", bearer(good + "A")),
        ]
        bodies = set()
        for what, h in cases:
            r = v.portal(keys_path("app-a"), headers=h)
            check_error(r, 401, "unauthorized", what + " (upload API)")
            bodies.add(r.body)
            check_error(v.portal(WHOAMI, headers=h), 401, "unauthorized",
                        what + " (whoami, portal listener)")
            check_error(v.sign(WHOAMI, headers=h), 401, "unauthorized",
                        what + " (whoami, signing listener)")
            r = v.sign(apns_path("app-a"), headers=h, method="POST")
            check_error(r, 401, "unauthorized", what + " (signing API)")
        # One answer for all: a client cannot tell which case it hit.
        check_eq(len(bodies), 1, "distinct 401 bodies")
        # The good token itself passes.
        check_eq(v.portal(WHOAMI, good).status, 200, "admin whoami")
        v.check_secrets_absent([good])


@runner.test
def roles_and_app_scopes():
    with Vault() as v:
        portal = create(v.state, "portal")["token"]
        signer = create(v.state, "signer")["token"]
        admin = create(v.state, "admin")["token"]
        scoped = create(v.state, "portal", apps=["app-a", "app-c"])["token"]
        sscoped = create(v.state, "signer", apps=["app-a"])["token"]

        # Upload API (portal listener).
        check_allowed(v.portal(keys_path("app-a"), portal), "portal")
        check_allowed(v.portal(keys_path("app-a"), admin), "admin")
        check_error(v.portal(keys_path("app-a"), signer), 403, "forbidden",
                    "signer on the upload API")
        check_allowed(v.portal(keys_path("app-a"), scoped), "scoped, own")
        check_allowed(v.portal(keys_path("app-c"), scoped), "scoped, own 2")
        check_error(v.portal(keys_path("app-b"), scoped), 403, "forbidden",
                    "scoped portal token on another app")

        # Signing API (unix socket).
        check_allowed(v.apns("app-a", signer), "signer")
        check_allowed(v.apns("app-a", admin), "admin")
        check_allowed(v.apns("app-a", sscoped), "scoped signer, own app")
        check_error(v.apns("app-b", sscoped), 403, "forbidden",
                    "scoped signer token on another app")
        check_error(v.apns("app-a", portal), 403, "forbidden",
                    "portal token on the signing API")
        check_error(v.apns("app-a", scoped), 403, "forbidden",
                    "scoped portal token on the signing API")

        # whoami: any role, both listeners.
        for tok, role in ((portal, "portal"), (signer, "signer"),
                          (admin, "admin")):
            for r in (v.portal(WHOAMI, tok), v.sign(WHOAMI, tok)):
                check_eq((r.status, r.json.get("role")), (200, role),
                         "whoami " + role)
        r = v.sign(WHOAMI, scoped)
        check_eq(r.json.get("apps"), ["app-a", "app-c"], "whoami apps")

        # A revoked admin token is 401, not 403, everywhere.
        admin_id = admin[len("p8v_"):len("p8v_") + 16]
        p8vault("token", "revoke", "--state", v.state, admin)  # whole token
        check_error(v.portal(keys_path("app-a"), admin), 401,
                    "unauthorized", "revoked admin, upload API")
        check_error(v.apns("app-a", admin), 401, "unauthorized",
                    "revoked admin, signing API")
        lst = {t["id"]: t for t in json.loads(
            p8vault("token", "list", "--state", v.state, "--json").out)}
        check(lst[admin_id]["revoked_at"] is not None,
              "revoke by whole token did not revoke")
        check_eq(sum(1 for t in lst.values() if t["revoked_at"]), 1,
                 "tokens revoked")
        v.check_secrets_absent([portal, signer, admin, scoped, sscoped])


@runner.test
def store_keeps_only_the_hash():
    with Vault() as v:
        t = create(v.state, "signer", name="fleet")
        secret = secret_of(t["token"])
        digest = hashlib.sha256(secret.encode()).hexdigest()
        with open(os.path.join(v.state, "data.mdb"), "rb") as f:
            data = f.read()
        check(digest.encode() in data,
              "the store does not hold SHA-256 of the secret")
        check(secret.encode() not in data, "the store holds the secret")
        # Human list: the id, never a hash or a secret.
        res = p8vault("token", "list", "--state", v.state)
        check(t["id"] in res.out and "fleet" in res.out, "list: %r" % res)
        check(digest not in res.out and secret not in res.out,
              "token list shows a hash or secret")
        # Human create: the token alone on stdout, the note on stderr.
        res = p8vault("token", "create", "--state", v.state, "--role",
                      "portal")
        tok = res.out.strip()
        check(tok.startswith("p8v_") and len(tok) == 64 and
              res.out.count("\n") == 1, "create output: %r" % res)
        check("not" in res.err or "once" in res.err,
              "no shown-once note on stderr: %r" % res.err)
        check_eq(v.portal(WHOAMI, tok).status, 200, "human-form token")


if __name__ == "__main__":
    runner.main()
