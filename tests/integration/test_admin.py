#!/usr/bin/python3
"""test_admin.py: the admin CLI (`p8vault` keys, master, backup, restore,
verify, audit) against real state directories and a real p8vaultd.

- every command's --help, the documented exit codes, usage errors;
- keys import/list/show/activate/revoke with the API's validation, beside a
  running daemon that then signs with the imported key;
- master rotate while a daemon with both keys serves signing requests in a
  loop (zero failures), then a daemon with the new key alone signs for
  every key; master status before and after;
- the SIGHUP runbook: the daemon's key files are swapped and reloaded
  without a restart, refusals keep the daemon serving;
- a CLI rotation killed with SIGKILL several times, verify between kills,
  a re-run finishes;
- backup while the daemon serves (mode 0600, no private key bytes in it),
  restore into a new directory, a daemon on the restore signs;
- verify names a damaged record; audit verify catches one event altered
  and one removed; audit list --since/--json.

Tokens are checked with tests/verify_jwt.py (python3-cryptography) against
the public key of the .p8 generated here with openssl. Damage is done by
tests/admin_tamper (path in P8V_ADMIN_TAMPER), a test-only tool over the
store's raw access. The CLI binary is taken from $P8VAULT, the daemon from
$P8VAULTD.
"""

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))   # tests/: verify_jwt.py
from harness import Daemon, Runner, TestFailure, check, check_eq, request  # noqa
import verify_jwt  # noqa
from signing import audit_events  # noqa
from cryptography.hazmat.primitives import serialization  # noqa

runner = Runner("test_admin")

# A CLI command is quick; this only bounds a hang (ASan builds are slower).
CLI_TIMEOUT_S = 60
# How long to wait for the daemon to log a reload.
RELOAD_TIMEOUT_S = 20
# Keys in the rotation tests: enough batches (of 1) for the load to
# overlap the rotation.
ROTATE_KEYS = 24
# Signing threads hammering the daemon during a rotation.
LOAD_THREADS = 3
# Kills of a CLI rotation, after these delays (seconds): the first ones
# mostly land while the CLI starts, the later ones inside the rotation.
KILL_DELAYS_S = (0.002, 0.004, 0.008, 0.012, 0.016, 0.024, 0.032)

TEAM = "TEAM000042"


def tool(env_name):
    path = os.environ.get(env_name)
    if not path or not os.access(path, os.X_OK):
        print("%s is not set to an executable" % env_name, file=sys.stderr)
        sys.exit(2)
    return os.path.abspath(path)


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return "exit %d, stdout %r, stderr %r" % (self.rc, self.out[:400],
                                                   self.err[:400])


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("P8VAULT_")}


def cli(*args, rc=0):
    """Run p8vault; check its exit status (rc=None: any)."""
    proc = subprocess.run([tool("P8VAULT")] + list(args), env=clean_env(),
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)
    res = Result(proc)
    if rc is not None and res.rc != rc:
        raise TestFailure("p8vault %s: want exit %d, got %r" % (
            " ".join(args), rc, res))
    return res


def cli_json(*args, rc=0):
    res = cli(*(list(args) + ["--json"]), rc=rc)
    try:
        return json.loads(res.out)
    except ValueError:
        raise TestFailure("p8vault %s --json: not JSON: %r" % (
            " ".join(args), res))


def tamper(*args):
    proc = subprocess.run([tool("P8V_ADMIN_TAMPER")] + list(args),
                          capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S)
    check(proc.returncode == 0, "admin_tamper %s: %s" % (args, proc.stderr))


def one_line(res, *needles):
    """A failure: exactly one line on stderr, holding every needle."""
    lines = res.err.strip().splitlines()
    check(len(lines) == 1, "want one line on stderr, got %r" % res.err)
    for n in needles:
        check(n in lines[0], "%r not in %r" % (n, lines[0]))


def write_key_file(path, hexkey):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(hexkey + "\n")
    os.replace(path + ".tmp", path)   # atomic: the daemon never reads half


def read_key_hex(path):
    with open(path) as f:
        return f.read().strip()


class P8:
    """A fresh P-256 key as Apple hands it out, in AuthKey_<KEYID>.p8."""
    counter = 0

    def __init__(self, tmp, key_id=None, algorithm=("EC", "P-256")):
        P8.counter += 1
        self.key_id = key_id or "K%09d" % P8.counter
        self.path = os.path.join(tmp, "AuthKey_%s.p8" % self.key_id)
        args = ["openssl", "genpkey", "-algorithm", algorithm[0]]
        if algorithm[0] == "EC":
            args += ["-pkeyopt", "ec_paramgen_curve:" + algorithm[1]]
        proc = subprocess.run(args, capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S)
        check(proc.returncode == 0, "openssl genpkey: %s" % proc.stderr)
        self.pem = proc.stdout
        with open(self.path, "w") as f:
            f.write(self.pem)
        key = serialization.load_pem_private_key(self.pem.encode(), None)
        self.pub = key.public_key()
        self.pub_pem = self.pub.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.scalar = key.private_numbers().private_value.to_bytes(32, "big") \
            if algorithm[0] == "EC" else None
        # The PEM body (base64 of the PKCS#8): must never be printed.
        self.body = "".join(l for l in self.pem.splitlines()
                            if not l.startswith("-----"))


class Vault:
    """A state directory made by `p8vault init`, tokens, keys, and a
    p8vaultd on it with the master-key files asked for."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="p8v-admin-")
        self.state = os.path.join(self.tmp, "state")
        self.old = os.path.join(self.tmp, "old.key")
        cli("init", "--state", self.state, "--master-key-file", self.old)
        self.signer = cli_json("token", "create", "--state", self.state,
                               "--role", "signer")["token"]
        self.d = None
        self.keys = {}              # app -> P8
        self.secrets = [read_key_hex(self.old)]

    def key_file(self, name):
        return os.path.join(self.tmp, name)

    def new_master(self, name="new.key"):
        path = self.key_file(name)
        obj = cli_json("master", "generate", path)
        check_eq(stat.S_IMODE(os.stat(path).st_mode), 0o600,
                 "generated key mode")
        self.secrets.append(read_key_hex(path))
        return path, obj["master_key_id"]

    def import_key(self, app, key_files=None, extra=()):
        p8 = P8(self.tmp)
        args = ["keys", "import", "--state", self.state, "--app", app,
                "--team-id", TEAM, "--services", "apns,devicecheck,musickit"]
        for f in key_files or [self.old]:
            args += ["--master-key-file", f]
        obj = cli_json(*(args + list(extra) + [p8.path]))
        check_eq(obj["created"], True, "import created")
        check_eq(obj["key"]["public_key_pem"], p8.pub_pem, "imported key")
        self.keys[app] = p8
        return p8

    def start(self, key_files, state=None):
        args = []
        for f in key_files:
            args += ["--master-key-file", f]
        self.d = Daemon(tmpdir=self.tmp, master_key=False, args=args)
        if state is not None:
            self.d.argv[self.d.argv.index("--state") + 1] = state
        self.d.start()
        return self.d

    def stop(self):
        if self.d is not None:
            try:
                self.d.stop()
                for line in self.d.lines:
                    for s in self.secrets:
                        check(s not in line.lower(),
                              "a daemon log line holds a master key")
            finally:
                self.d.close()
                self.d = None

    def close(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- signing ------------------------------------------------------------

    def post(self, conn, path, body):
        return request(conn, "POST", path, body=json.dumps(body).encode(),
                       headers={"Authorization": "Bearer " + self.signer,
                                "Content-Type": "application/json"})

    def jwt(self, app, conn=None):
        """A MusicKit JWT (signed afresh: the key is unsealed for every
        request; a DeviceCheck request answers the shared APNs token),
        verified against the app's public key. None if the request
        failed."""
        own = conn is None
        conn = conn or self.d.unix()
        try:
            r = self.post(conn, "/v1/apps/%s/jwt" % app,
                          {"profile": "musickit"})
        finally:
            if own:
                conn.close()
        if r.status != 200:
            return None
        verify_jwt.verify(self.keys[app].pub, r.json["token"])
        return r.json["token"]

    def apns(self, app, conn=None):
        own = conn is None
        conn = conn or self.d.unix()
        try:
            r = self.post(conn, "/v1/apps/%s/apns-token" % app, {})
        finally:
            if own:
                conn.close()
        if r.status != 200:
            return None
        verify_jwt.verify(self.keys[app].pub, r.json["token"])
        return r.json["token"]

    def check_all_sign(self, what):
        for app in sorted(self.keys):
            check(self.jwt(app) is not None, "%s: %s does not sign" % (
                what, app))

    def check_no_secrets(self, text, what):
        for s in self.secrets:
            check(s not in text.lower(), what + " holds a master key")
        for p8 in self.keys.values():
            check(p8.body not in text, what + " holds a .p8")


class Load:
    """Threads signing in a loop (a fresh JWT and the APNs token, in turn,
    for every key) until stopped; every failure is kept."""

    def __init__(self, v):
        self.v = v
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.threads = [threading.Thread(target=self.run, args=(i,),
                                         daemon=True)
                        for i in range(LOAD_THREADS)]

    def run(self, i):
        apps = sorted(self.v.keys)
        n = i
        conn = self.v.d.unix(timeout=30)
        try:
            while not self.stop_flag.is_set():
                app = apps[n % len(apps)]
                try:
                    tok = self.v.jwt(app, conn) if n % 2 == 0 else \
                        self.v.apns(app, conn)
                    err = None if tok else "refused"
                except Exception as e:     # noqa: a failure is a failure
                    err = repr(e)
                    conn.close()
                    conn = self.v.d.unix(timeout=30)
                with self.lock:
                    if err:
                        self.failures.append((app, err))
                    else:
                        self.ok += 1
                n += 1
        finally:
            conn.close()

    def count(self):
        with self.lock:
            return self.ok

    def __enter__(self):
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + 20
        while self.count() < LOAD_THREADS * 2:
            check(time.monotonic() < deadline and not self.failures,
                  "the load does not get going: %r" % self.failures[:3])
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)
        return False


def wait_reload(d, n, timeout=RELOAD_TIMEOUT_S):
    """Wait for the daemon's n-th SIGHUP outcome line; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in d.log_events("master_key_reload")
                 if l.get("msg", "").startswith("master keys ")]
        if len(lines) >= n:
            return lines[n - 1]
        check(time.monotonic() < deadline, "no reload outcome logged")
        time.sleep(0.02)


# -- help, usage, exit codes --------------------------------------------------

@runner.test
def help_and_usage():
    res = cli("--help")
    for c in ("keys", "master", "backup", "restore", "verify", "audit",
              "  3  "):
        check(c in res.out, "p8vault --help lacks %r" % c)
    for cmd in (["keys"], ["keys", "list"], ["keys", "show"],
                ["keys", "import"], ["keys", "activate"], ["keys", "revoke"],
                ["master"], ["master", "generate"], ["master", "rotate"],
                ["master", "status"], ["master", "retire"], ["backup"], ["restore"], ["verify"],
                ["audit"], ["audit", "list"], ["audit", "verify"]):
        res = cli(*(cmd + ["--help"]))
        check(res.out.startswith("Usage:"), "%s --help: %r" % (cmd, res))
        check("Exit status" in res.out, "%s --help has no exit status" % cmd)
    with Vault() as v:
        s = v.state
        # A command group without its subcommand: its usage, exit 2.
        for group in ("keys", "master", "audit"):
            check(cli(group, rc=2).err.startswith("Usage:"),
                  "%s alone: no usage" % group)
        # Usage errors: exit 2, a hint on stderr.
        for args in (["keys", "frob"], ["keys", "list"],
                     ["keys", "show", "--state", s, "app"],
                     ["keys", "show", "--state", s, "bad/app", "K000000001"],
                     ["keys", "show", "--state", s, "app", "lowercase1"],
                     ["keys", "import", "--state", s, "--master-key-file",
                      v.old, "--team-id", TEAM, "--app", "a", "x.p8"],
                     ["keys", "import", "--state", s, "--master-key-file",
                      v.old, "--team-id", "short", "--app", "a",
                      "AuthKey_ABCDEFGHIJ.p8"],
                     ["keys", "import", "--state", s, "--master-key-file",
                      v.old, "--team-id", TEAM, "--app", "a",
                      "--environment", "staging", "AuthKey_ABCDEFGHIJ.p8"],
                     ["keys", "import", "--state", s, "--master-key-file",
                      v.old, "--team-id", TEAM, "--app", "a",
                      "--services", "apns,apns", "AuthKey_ABCDEFGHIJ.p8"],
                     ["keys", "activate", "--state", s, "app", "K000000001"],
                     ["master", "rotate", "--state", s, "--master-key-file",
                      v.old],
                     ["master", "rotate", "--state", s, "--master-key-file",
                      v.old, "--new-master-key-file", v.old, "--batch", "0"],
                     ["master", "generate"], ["backup", "--state", s],
                     ["restore", "--state", s + "2", "b"],
                     ["verify", "--state", s],
                     ["audit", "list", "--state", s, "--since", "yesterday"],
                     ["audit", "list"], ["audit", "verify", "--state", s,
                                         "extra"]):
            res = cli(*args, rc=2)
            check("Try 'p8vault" in res.err, "%s: no hint: %r" % (args, res))
        # Failures: exit 1, one line naming the file at fault.
        missing = os.path.join(v.tmp, "typo")
        one_line(cli("keys", "list", "--state", missing, rc=1), missing)
        check(not os.path.exists(missing), "keys list created a directory")
        one_line(cli("verify", "--state", s, "--master-key-file",
                     os.path.join(v.tmp, "nokey"), rc=1), "nokey")
        one_line(cli("master", "generate", v.old, rc=1), v.old,
                 "never overwritten")
        # Success exits 0; --json on every command that reads.
        check_eq(cli_json("keys", "list", "--state", s), [], "empty list")
        check_eq(cli_json("verify", "--state", s, "--master-key-file",
                          v.old)["ok"], True, "verify of an empty vault")
        check_eq(cli_json("audit", "verify", "--state", s)["intact"], True,
                 "audit verify")


# -- keys ---------------------------------------------------------------------

@runner.test
def keys_commands():
    with Vault() as v:
        s = v.state
        v.start([v.old])
        a = v.import_key("app.one")
        # Imported by the CLI while the daemon runs: it signs at once.
        check(v.jwt("app.one") is not None, "the daemon does not sign "
              "with a key the CLI imported")
        # The same file again: nothing changes.
        obj = cli_json("keys", "import", "--state", s, "--master-key-file",
                       v.old, "--app", "app.one", "--team-id", TEAM,
                       "--services", "apns,devicecheck,musickit", a.path)
        check_eq(obj["created"], False, "second import")
        # The API's refusals, with its names: file name vs --key-id.
        res = cli("keys", "import", "--state", s, "--master-key-file", v.old,
                  "--app", "app.one", "--team-id", TEAM, "--key-id",
                  "ZZZZZZZZZZ", a.path, rc=2)
        check("key_id_mismatch" in res.err, "mismatch: %r" % res)
        rsa = P8(v.tmp, algorithm=("RSA", None))
        res = cli("keys", "import", "--state", s, "--master-key-file", v.old,
                  "--app", "app.one", "--team-id", TEAM, rsa.path, rc=1)
        one_line(res, rsa.path, "p8_wrong_key_type")
        other = P8(v.tmp)
        res = cli("keys", "import", "--state", s, "--master-key-file", v.old,
                  "--app", "app.one", "--team-id", TEAM, "--key-id",
                  a.key_id, other.path, rc=2)   # file names another id
        res = cli("keys", "import", "--state", s, "--master-key-file", v.old,
                  "--app", "app.one", "--team-id", "TEAM999999", a.path,
                  rc=1)
        one_line(res, "key_identity_conflict")    # the same key, other team
        # Other material under a Key ID the app holds: named.
        os.mkdir(os.path.join(v.tmp, "clash"))
        clash = P8(os.path.join(v.tmp, "clash"), key_id=a.key_id)
        res = cli("keys", "import", "--state", s, "--master-key-file", v.old,
                  "--app", "app.one", "--team-id", TEAM, clash.path, rc=1)
        one_line(res, "key_exists", "under Key ID %s" % a.key_id)
        # A second key, standby; then activate it.
        b = P8(v.tmp)
        obj = cli_json("keys", "import", "--state", s, "--master-key-file",
                       v.old, "--app", "app.one", "--team-id", TEAM,
                       "--services", "apns,devicecheck,musickit", "--topic",
                       "com.example.one", "--no-activate", b.path)
        check_eq(obj["key"]["state"], "standby", "--no-activate")
        check_eq(obj["key"]["topics"], ["com.example.one"], "topics")
        lst = cli_json("keys", "list", "--state", s)
        check_eq([(k["key_id"], k["state"]) for k in lst],
                 sorted([(a.key_id, "active"), (b.key_id, "standby")]),
                 "keys list --json")
        table = cli("keys", "list", "--state", s, "--app", "app.one").out
        check(a.key_id in table and b.key_id in table and "standby" in table,
              "keys list table: %r" % table)
        obj = cli_json("keys", "activate", "--state", s, "--master-key-file",
                       v.old, "app.one", b.key_id)
        check_eq(obj["state"], "active", "activate")
        shown = cli_json("keys", "show", "--state", s, "app.one", a.key_id)
        check_eq(shown["state"], "standby", "the other key after activate")
        v.keys["app.one"] = b
        check(v.jwt("app.one") is not None, "the activated key signs")
        text = cli("keys", "show", "--state", s, "app.one", b.key_id).out
        check(b.pub_pem in text and "active" in text, "keys show: %r" % text)
        # Revoke: a tombstone; again: key_revoked; unknown: key_not_found.
        obj = cli_json("keys", "revoke", "--state", s, "--master-key-file",
                       v.old, "app.one", b.key_id)
        check_eq((obj["state"], obj["master_key_id"]), ("revoked", None),
                 "revoke")
        one_line(cli("keys", "revoke", "--state", s, "--master-key-file",
                     v.old, "app.one", b.key_id, rc=1), "key_revoked")
        one_line(cli("keys", "show", "--state", s, "app.one", "NOSUCHKEY0",
                     rc=1), "key_not_found", "NOSUCHKEY0")
        r = v.post(v.d.unix(), "/v1/apps/app.one/jwt",
                   {"profile": "devicecheck"})
        check(r.status in (404, 410), "a revoked key still signs: %r" % r)
        # A key that does not match the state directory.
        stray, _ = v.new_master("stray.key")
        one_line(cli("keys", "activate", "--state", s, "--master-key-file",
                     stray, "app.one", a.key_id, rc=1), stray)
        # Audit: every change, by the CLI.
        events = cli_json("audit", "list", "--state", s)
        whats = [(e["what"], e.get("who")) for e in events
                 if e["what"].startswith("key.")]
        check_eq(whats, [("key.upload", "cli"), ("key.upload", "cli"),
                         ("key.activate", "cli"), ("key.revoke", "cli")],
                 "audit events of the key changes")
        v.stop()
        # Nothing printed or stored holds a key.
        for blob in (json.dumps(lst), table, text,
                     json.dumps(events)):
            v.check_no_secrets(blob, "CLI output")


# -- master-key rotation ------------------------------------------------------

def new_vault_with_keys(n):
    v = Vault()
    for i in range(n):
        v.import_key("app-%02d" % i)
    return v


@runner.test
def rotation_while_serving_with_both_keys():
    with new_vault_with_keys(ROTATE_KEYS) as v:
        s = v.state
        new, new_id = v.new_master()
        old_id = cli_json("master", "status", "--state", s,
                          "--master-key-file", v.old)["in_use"]
        check_eq(len(old_id), 1, "one key in use before")
        old_id = old_id[0]
        # Persisted APNs tokens, sealed under the old key: rotated too.
        v.start([v.old])
        for app in v.keys:
            check(v.apns(app), "APNs token before the rotation")
        v.stop()
        # New last: it seals whatever the daemon writes during the rotation.
        v.start([v.old, new])
        with Load(v) as load:
            before = load.count()
            obj = cli_json("master", "rotate", "--state", s,
                           "--master-key-file", v.old,
                           "--new-master-key-file", new, "--batch", "1")
            during = load.count() - before
            time.sleep(0.2)
        check_eq(load.failures, [], "failed requests during the rotation")
        check(during > 0, "no request was served during the rotation")
        check_eq((obj["complete"], obj["rewrapped"], obj["failed"],
                  obj["remaining"], obj["master_key_id"]),
                 (True, ROTATE_KEYS, [], 0, new_id), "rotate --json")
        check(obj["tokens_rewrapped"] >= 1, "no APNs token re-wrapped")
        check(obj["batches"] >= ROTATE_KEYS, "batches of 1: %r" % obj)
        st = cli_json("master", "status", "--state", s, "--master-key-file",
                      v.old, "--master-key-file", new)
        check_eq((st["in_use"], st["retirable"]), ([new_id], [old_id]),
                 "master status after the rotation")
        by_id = {k["master_key_id"]: k for k in st["master_keys"]}
        check_eq((by_id[new_id]["records"], by_id[new_id]["file"],
                  by_id[old_id]["records"]), (ROTATE_KEYS, new, 0),
                 "status per key")
        text = cli("master", "status", "--state", s).out
        check("can be retired" in text and new_id in text,
              "master status text: %r" % text)
        v.stop()
        # The new key alone opens every record, and the daemon signs.
        v.start([new])
        v.check_all_sign("new key alone")
        for app in v.keys:
            check(v.apns(app), "APNs token with the new key alone")
        v.stop()
        check_eq(cli_json("verify", "--state", s, "--master-key-file",
                          new)["ok"], True, "verify with the new key")
        res = cli("verify", "--state", s, "--master-key-file", v.old, rc=3)
        check("master_key_missing" in res.err, "old key alone: %r" % res)
        # A second rotation run finds nothing to do.
        obj = cli_json("master", "rotate", "--state", s, "--master-key-file",
                       v.old, "--new-master-key-file", new)
        check_eq((obj["rewrapped"], obj["already"], obj["complete"]),
                 (0, ROTATE_KEYS, True), "second run")
        rot = [e for e in cli_json("audit", "list", "--state", s)
               if e["what"] == "master.rotate"]
        check_eq([(e["master_key_id"], e["from"], e["result"]) for e in rot],
                 [(new_id, [old_id], "ok"), (new_id, [], "ok")],
                 "master.rotate audit events")
        # A mistyped old key is refused, naming the file, and not recorded.
        stray, _ = v.new_master("stray.key")
        one_line(cli("master", "rotate", "--state", s, "--master-key-file",
                     stray, "--new-master-key-file", new, rc=1), stray)
        st = cli_json("master", "status", "--state", s)
        check_eq(len(st["master_keys"]), 2, "the stray key was recorded")


@runner.test
def sighup_reload_runbook():
    """The runbook of docs/operations.md: the daemon runs with two key
    paths (previous, current); keys are swapped by replacing the files and
    sending SIGHUP, never by a restart."""
    with new_vault_with_keys(8) as v:
        s = v.state
        old_hex = read_key_hex(v.old)
        prev, cur = v.key_file("prev.key"), v.key_file("current.key")
        write_key_file(prev, old_hex)
        write_key_file(cur, old_hex)
        d = v.start([prev, cur])
        new, new_id = v.new_master()
        new_hex = read_key_hex(new)
        stray, _ = v.new_master("stray.key")
        n = 0
        with Load(v) as load:
            # Too early: the records are under the old key.
            write_key_file(prev, new_hex)
            write_key_file(cur, new_hex)
            d.signal(signal.SIGHUP)
            n += 1
            check("not reloaded" in wait_reload(d, n)["msg"],
                  "a keyring without the old key was accepted")
            # Old and new, new current: accepted.
            write_key_file(prev, old_hex)
            d.signal(signal.SIGHUP)
            n += 1
            line = wait_reload(d, n)
            check("reloaded: 2" in line["msg"], "old+new: %r" % line)
            obj = cli_json("master", "rotate", "--state", s,
                           "--master-key-file", prev,
                           "--new-master-key-file", cur, "--batch", "1")
            check_eq(obj["complete"], True, "rotation")
            # Retire the old key: both paths hold the new one.
            write_key_file(prev, new_hex)
            d.signal(signal.SIGHUP)
            n += 1
            line = wait_reload(d, n)
            check("reloaded: 1" in line["msg"], "new alone: %r" % line)
            # A key the store does not know: refused, still serving.
            write_key_file(prev, read_key_hex(stray))
            write_key_file(cur, read_key_hex(stray))
            d.signal(signal.SIGHUP)
            n += 1
            check("not reloaded" in wait_reload(d, n)["msg"],
                  "an unknown key was accepted")
            time.sleep(0.2)
        check_eq(load.failures, [], "failed requests across the reloads")
        check(load.count() > 0, "no load")
        write_key_file(prev, new_hex)
        write_key_file(cur, new_hex)
        v.check_all_sign("after the reloads")
        v.stop()
        # The old key is no longer needed by anything.
        st = cli_json("master", "status", "--state", s)
        check_eq(st["in_use"], [new_id], "in use after the runbook")


@runner.test
def sighup_refuses_a_ring_without_the_primary():
    """The key new records are being sealed under (the primary: the last
    key file) cannot be dropped by one reload, even when no record uses
    it yet: what is sealed while the reload runs would be stranded."""
    with new_vault_with_keys(2) as v:
        old_hex = read_key_hex(v.old)
        prev, cur = v.key_file("prev.key"), v.key_file("current.key")
        new, new_id = v.new_master()
        write_key_file(prev, old_hex)
        write_key_file(cur, read_key_hex(new))
        d = v.start([prev, cur])
        # Every record is still under the old key, and the store knows
        # it: only the primary rule refuses the old key alone.
        write_key_file(cur, old_hex)
        d.signal(signal.SIGHUP)
        check("not reloaded" in wait_reload(d, 1)["msg"],
              "a ring without the primary was accepted")
        check([l for l in d.log_events("master_key_reload")
               if l.get("missing_master_key_id") == new_id],
              "the refusal does not name the primary %s" % new_id)
        # Two steps: the old key last (the new primary), then alone.
        write_key_file(prev, read_key_hex(new))
        d.signal(signal.SIGHUP)
        check("reloaded: 2" in wait_reload(d, 2)["msg"], "old made primary")
        write_key_file(prev, old_hex)
        d.signal(signal.SIGHUP)
        check("reloaded: 1" in wait_reload(d, 3)["msg"], "then old alone")
        v.check_all_sign("after the reloads")
        v.stop()


def start_refused(v, key_files, needle):
    """p8vaultd with these key files exits by itself, logging needle."""
    args = []
    for f in key_files:
        args += ["--master-key-file", f]
    d = Daemon(tmpdir=v.tmp, master_key=False, args=args)
    try:
        rc, _ = d.run_to_exit()
        check_eq(rc, 1, "exit status of a start with %r" % key_files)
        text = "\n".join(l.get("msg", "") for l in d.logs)
        check(needle in text, "no %r in the daemon's log: %r" % (
            needle, text[-800:]))
    finally:
        d.close()


@runner.test
def master_key_retire_life_cycle():
    with new_vault_with_keys(2) as v:
        s = v.state
        old_id = cli_json("master", "status", "--state", s)["in_use"][0]
        new, new_id = v.new_master()
        # Usage errors.
        for args in (["master", "retire", "--state", s],
                     ["master", "retire", "--state", s, "XYZ"],
                     ["master", "retire", "--state", s, old_id.upper()],
                     ["master", "retire", old_id]):
            cli(*args, rc=2)
        # In use by records; the only recorded key; not recorded at all.
        one_line(cli("master", "retire", "--state", s, old_id, rc=1),
                 old_id, "2 key records")
        one_line(cli("master", "retire", "--state", s, new_id, rc=1),
                 new_id, "records no master key")
        obj = cli_json("master", "rotate", "--state", s, "--master-key-file",
                       v.old, "--new-master-key-file", new)
        check_eq(obj["complete"], True, "rotation")
        # In use by a persisted APNs token only: a daemon whose primary is
        # still the old key mints one.
        d = v.start([new, v.old])
        check(v.apns("app-00") is not None, "an APNs token")
        v.stop()
        st = cli_json("master", "status", "--state", s)
        check_eq(sorted(st["in_use"]), sorted([old_id, new_id]),
                 "the token's key is in use")
        one_line(cli("master", "retire", "--state", s, old_id, rc=1),
                 old_id, "0 key records and 1 persisted APNs tokens")
        cli_json("master", "rotate", "--state", s, "--master-key-file",
                 v.old, "--new-master-key-file", new)
        # Nothing sealed under it: retired, audited.
        obj = cli_json("master", "retire", "--state", s, old_id)
        check_eq((obj["master_key_id"], obj["retired"]), (old_id, True),
                 "retire --json")
        one_line(cli("master", "retire", "--state", s, old_id, rc=1),
                 "already retired")
        events = [e for e in audit_events(s)
                  if e.get("what") == "master.retire"]
        check_eq([e.get("master_key_id") for e in events], [old_id],
                 "the master.retire audit event")
        st = cli_json("master", "status", "--state", s)
        check_eq([k["master_key_id"] for k in st["master_keys"]], [new_id],
                 "status after the retirement")
        # A retired key is refused at start, alone or next to a good one,
        # and by the commands that seal.
        start_refused(v, [v.old], "retired")
        start_refused(v, [new, v.old], "retired")
        p8 = P8(v.tmp)
        res = cli("keys", "import", "--state", s, "--app", "app-09",
                  "--team-id", TEAM, "--master-key-file", v.old, p8.path,
                  rc=1)
        check("retired" in res.err, "keys import: %r" % res)
        # The new key alone serves.
        d = v.start([new])
        v.check_all_sign("with the new key after the retirement")
        # A SIGHUP that brings the retired key back is refused.
        v.stop()
        prev, cur = v.key_file("prev.key"), v.key_file("current.key")
        write_key_file(prev, read_key_hex(new))
        write_key_file(cur, read_key_hex(new))
        d = v.start([prev, cur])
        write_key_file(prev, read_key_hex(v.old))
        d.signal(signal.SIGHUP)
        check("not reloaded" in wait_reload(d, 1)["msg"],
              "a reload with the retired key was accepted")
        v.check_all_sign("after the refused reload")
        v.stop()


@runner.test
def nothing_is_sealed_under_a_retired_key():
    """Retired while a daemon still holds it as its primary (nothing was
    sealed under it yet): the daemon's next seal is refused by the store,
    never committed under the retired key."""
    with new_vault_with_keys(1) as v:
        s = v.state
        new, new_id = v.new_master()
        d = v.start([v.old, new])              # new: the primary
        cli_json("master", "retire", "--state", s, new_id)
        check(v.apns("app-00") is None,
              "a token was minted (and sealed) under a retired key")
        check(v.jwt("app-00") is not None, "signing still works")
        v.stop()
        st = cli_json("master", "status", "--state", s)
        check(new_id not in [k["master_key_id"] for k in st["master_keys"]],
              "something is sealed under the retired key: %r" % st)


@runner.test
def rotation_killed_and_rerun():
    with new_vault_with_keys(ROTATE_KEYS) as v:
        s = v.state
        new, new_id = v.new_master()
        killed = 0
        for i, delay in enumerate(KILL_DELAYS_S):
            proc = subprocess.Popen(
                [tool("P8VAULT"), "master", "rotate", "--state", s,
                 "--master-key-file", v.old, "--new-master-key-file", new,
                 "--batch", "1"], env=clean_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            rc = proc.wait(CLI_TIMEOUT_S)
            killed += rc == -signal.SIGKILL
            # Whatever the point: every record opens with both keys.
            obj = cli_json("verify", "--state", s, "--master-key-file",
                           v.old, "--master-key-file", new)
            check_eq((obj["ok"], obj["opened"]), (True, ROTATE_KEYS),
                     "verify after kill %d" % i)
        print("  %d of %d rotations killed before their end" % (
            killed, len(KILL_DELAYS_S)))
        obj = cli_json("master", "rotate", "--state", s, "--master-key-file",
                       v.old, "--new-master-key-file", new)
        check_eq((obj["complete"], obj["already"] + obj["rewrapped"]),
                 (True, ROTATE_KEYS), "the re-run finishes")
        check_eq(cli_json("verify", "--state", s, "--master-key-file",
                          new)["ok"], True, "new key alone after the re-run")
        v.start([new])
        v.check_all_sign("after a killed and re-run rotation")
        v.stop()


# -- backup and restore -------------------------------------------------------

@runner.test
def backup_and_restore_while_serving():
    with new_vault_with_keys(6) as v:
        s = v.state
        v.start([v.old])
        out = os.path.join(v.tmp, "vault.backup")
        with Load(v):
            obj = cli_json("backup", "--state", s, out)
        check_eq(stat.S_IMODE(os.stat(out).st_mode), 0o600, "backup mode")
        with open(out, "rb") as f:
            data = f.read()
        check_eq((obj["bytes"], obj["sha256"]),
                 (len(data), hashlib.sha256(data).hexdigest()),
                 "backup size and digest")
        # Only ciphertext: no scalar, no PEM, no master key.
        for p8 in v.keys.values():
            check(p8.scalar not in data, "the backup holds a scalar")
            check(p8.body.encode() not in data, "the backup holds a .p8")
        check(bytes.fromhex(read_key_hex(v.old)) not in data and
              read_key_hex(v.old).encode() not in data,
              "the backup holds the master key")
        one_line(cli("backup", "--state", s, out, rc=1), out, "exists")
        # Restore refusals leave nothing behind.
        stray, _ = v.new_master("stray.key")
        target = os.path.join(v.tmp, "restored")
        one_line(cli("restore", "--state", target, "--master-key-file",
                     stray, out, rc=1), stray)
        check(not os.path.exists(target), "a refused restore left a dir")
        one_line(cli("restore", "--state", s, "--master-key-file", v.old,
                     out, rc=1), s, "not an empty directory")
        junk = os.path.join(v.tmp, "junk")
        with open(junk, "w") as f:
            f.write("x" * 4096)
        one_line(cli("restore", "--state", target, "--master-key-file",
                     v.old, junk, rc=1), junk)
        obj = cli_json("restore", "--state", target, "--master-key-file",
                       v.old, out)
        check_eq((obj["ok"], obj["opened"], obj["audit_intact"]),
                 (True, 6, True), "restore --json")
        v.stop()
        # A daemon on the restored directory signs (the signer token came
        # along with the credentials), for every key.
        v.start([v.old], state=target)
        v.check_all_sign("restored vault")
        v.stop()
        events = cli_json("audit", "list", "--state", target)
        check_eq(events[-1]["what"], "store.restore", "restore audited")
        check(any(e["what"] == "store.backup" for e in
                  cli_json("audit", "list", "--state", s)),
              "backup not audited")


# -- verify and the audit log -------------------------------------------------

def copy_state(v, name):
    """A copy of v's state directory (via backup and restore)."""
    b = os.path.join(v.tmp, name + ".backup")
    d = os.path.join(v.tmp, name)
    cli("backup", "--state", v.state, b)
    cli("restore", "--state", d, "--master-key-file", v.old, b)
    return d


@runner.test
def verify_names_damaged_records_and_audit_tampering():
    with new_vault_with_keys(4) as v:
        apps = sorted(v.keys)
        # A damaged record: named, once; the others open.
        d = copy_state(v, "flip")
        victim = apps[2]
        tamper("record-flip", d, victim, v.keys[victim].key_id)
        res = cli("verify", "--state", d, "--master-key-file", v.old, rc=3)
        bad = [l for l in res.err.splitlines() if "key record" in l]
        check_eq(len(bad), 1, "bad record lines: %r" % res.err)
        check("%s/%s" % (victim, v.keys[victim].key_id) in bad[0] and
              "integrity_error" in bad[0], "verify line: %r" % bad[0])
        obj = cli_json("verify", "--state", d, "--master-key-file", v.old,
                       rc=3)
        check_eq((obj["ok"], obj["opened"], [(b["app"], b["key_id"])
                                             for b in obj["bad"]]),
                 (False, 3, [(victim, v.keys[victim].key_id)]),
                 "verify --json")
        check_eq(obj["audit_intact"], True, "audit untouched")
        # The rotation skips it, names it, and fails.
        new, _ = v.new_master()
        res = cli("master", "rotate", "--state", d, "--master-key-file",
                  v.old, "--new-master-key-file", new, rc=1)
        check(victim in res.err, "rotate does not name the bad record")

        # Audit: intact, then one event altered, then one removed.
        check_eq(cli_json("audit", "verify", "--state", v.state)["intact"],
                 True, "intact chain")
        events = cli_json("audit", "list", "--state", v.state)
        check(len(events) >= 5, "too few events: %d" % len(events))
        check_eq([e["seq"] for e in events], list(range(1, len(events) + 1)),
                 "sequence numbers")
        for prev, e in zip(events, events[1:]):
            check_eq(len(e["prev"]), 64, "prev hash")
        altered = copy_state(v, "altered")
        tamper("audit-alter", altered, "2")
        res = cli("audit", "verify", "--state", altered, rc=3)
        one_line(res, altered, "event 3")
        res = cli("verify", "--state", altered, "--master-key-file", v.old,
                  rc=3)
        check("audit log" in res.err, "verify misses the altered event")
        removed = copy_state(v, "removed")
        tamper("audit-delete", removed, "2")
        one_line(cli("audit", "verify", "--state", removed, rc=3), removed,
                 "event 3")
        # The last event removed: the head notices.
        last = copy_state(v, "last")
        n = len(cli_json("audit", "list", "--state", last))
        tamper("audit-delete", last, str(n))
        obj = cli_json("audit", "verify", "--state", last, rc=3)
        check_eq((obj["intact"], obj["bad_seq"]), (False, n),
                 "last event removed")

        # audit list --since (the copies above added backup events).
        events = cli_json("audit", "list", "--state", v.state)
        check_eq(cli_json("audit", "list", "--state", v.state, "--since",
                          "2999-01-01"), [], "--since in the future")
        check_eq(len(cli_json("audit", "list", "--state", v.state,
                              "--since", "0")), len(events), "--since 0")
        t = events[-1]["time"]
        since = cli_json("audit", "list", "--state", v.state, "--since", t)
        check(since and all(e["time"] >= t for e in since),
              "--since %s: %r" % (t, since))
        text = cli("audit", "list", "--state", v.state).out
        check(len(text.splitlines()) == len(events) and
              "key.upload" in text, "audit list text: %r" % text[:300])


runner.main()
