#!/usr/bin/python3
"""test_hygiene.py: secrets hygiene of a vault that has done real work.

One daemon (run as `nobody` when the tests run as root, so that the
kernel's dumpable checks mean something) takes uploads in every form
(JSON, multipart, the raw .p8, the CLI's import from stdin), refused
uploads of other keys (trailing data, a file name naming another Key ID,
a bad Team ID, a bad app id), an identical re-upload, an activation,
revocations, APNs mints (cold, after a key change, after a reported
rejection) and every JWT profile, with debug logging; `p8vault backup`
copies the store while it runs, and `p8vault keys`, `token list` and
`verify` read it. Then:

- the process: /proc/PID/limits shows a core size of 0 (soft and hard);
  it is not dumpable: a process of the same user can neither open
  /proc/PID/mem nor ptrace-attach to it, while the same prober can do
  both to a child of its own (so the probe can tell);
- after a clean stop, the data file, the lock file, the backup, every
  other file under the test's directory, every daemon log line and
  every CLI output are searched for each key's private half in every
  form (PEM text, base64 body and lines, PKCS#8 and SEC1 DER, the scalar
  raw, reversed, halved, hex, base64, base64url), for the master key (hex
  and raw), for every bearer token's secret and for every signed token:
  none is found. The HTTP answers are searched for the keys and the
  master key too.
- positive controls, so that the search can fail: each stored key's
  public point is found in the data file and the backup, each Key ID in
  the logs, each signed token in the HTTP answers.
"""

import base64
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Runner, check, check_eq, request  # noqa
from signing import apple_id, cli_path, TOOL_TIMEOUT_S  # noqa
import adversary  # noqa

runner = Runner("test_hygiene")

ALL_SERVICES = ["apns", "app_store_connect", "sign_in_with_apple",
                "musickit", "weatherkit", "devicecheck", "maps"]
JWT_BODIES = [
    {"profile": "app_store_connect",
     "issuer_id": "57246542-96fe-1a63-e053-0824d011072a",
     "scope": ["GET /v1/apps"]},
    {"profile": "sign_in_with_apple", "client_id": "com.example.hygiene"},
    {"profile": "musickit", "origin": ["https://example.com"]},
    {"profile": "weatherkit", "service_id": "com.example.weather"},
    {"profile": "devicecheck"},
    {"profile": "maps"},
]
PROBE_TIMEOUT_S = 30

# Run by the prober, as the daemon's user: can it read the daemon's
# memory or trace it? And a child of its own, as the control.
PROBE = r"""
import ctypes, json, os, subprocess, sys, time
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
libc = ctypes.CDLL(None, use_errno=True)

def probe(pid, own_child):
    out = {}
    try:
        with open("/proc/%d/mem" % pid, "rb") as f:
            out["mem"] = "opened"
    except OSError as e:
        out["mem"] = "denied: %s" % e.strerror
    r = libc.ptrace(ctypes.c_long(PTRACE_ATTACH), ctypes.c_int(pid),
                    ctypes.c_void_p(0), ctypes.c_void_p(0))
    if r == 0:
        out["ptrace"] = "attached"
        os.waitpid(pid, os.WUNTRACED | 0x40000000)      # __WALL
        libc.ptrace(ctypes.c_long(PTRACE_DETACH), ctypes.c_int(pid),
                    ctypes.c_void_p(0), ctypes.c_void_p(0))
    else:
        out["ptrace"] = "denied: errno %d" % ctypes.get_errno()
    return out

child = subprocess.Popen(["sleep", "60"])
try:
    time.sleep(0.1)
    print(json.dumps({"daemon": probe(int(sys.argv[1]), False),
                      "control": probe(child.pid, True)}))
finally:
    child.kill()
    child.wait()
"""


def daemon_user():
    """(uid, gid) of `nobody` when root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return None
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        gid = pwd.getpwnam("nobody").pw_gid
    return uid, gid


def as_user(ids):
    if ids is None:
        return None

    def drop():
        os.setgroups([])
        os.setgid(ids[1])
        os.setuid(ids[0])
    return drop


class Work:
    """Everything the vault did, and everything that must stay secret."""

    def __init__(self):
        self.ids = daemon_user()
        self.tmp = tempfile.mkdtemp(prefix="p8v-hygiene-")
        self.d = Daemon(tmpdir=self.tmp, args=[
            "--sign-listen", "127.0.0.1:0", "--log-level", "debug"],
            preexec_fn=as_user(self.ids))
        self.state = self.d.state
        self.backup = os.path.join(self.tmp, "backup.mdb")
        if self.ids is not None:
            os.chown(self.tmp, *self.ids)
            os.chown(self.d.key_file, *self.ids)
        self.cli_out = []               # (what, bytes)
        self.answers = []               # (what, bytes: headers and body)
        self.secrets = {}               # name -> bytes: never anywhere
        self.jwts = []                  # signed tokens: never in files
        self.stored = {}                # app/key_id -> key (for controls)
        self.tokens = {}

    def close(self):
        self.d.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def cli(self, *args, stdin=None, want=0):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("P8VAULT_")}
        p = subprocess.run([cli_path()] + list(args), env=env,
                           input=stdin, capture_output=True,
                           timeout=TOOL_TIMEOUT_S,
                           preexec_fn=as_user(self.ids), cwd=self.tmp)
        what = "p8vault %s (%d)" % (" ".join(args[:2]), len(self.cli_out))
        self.cli_out.append((what + " stdout", p.stdout))
        self.cli_out.append((what + " stderr", p.stderr))
        check_eq(p.returncode, want, "%s: %s" % (what, p.stderr[-300:]))
        return p.stdout.decode()

    def token(self, role):
        if role not in self.tokens:
            t = json.loads(self.cli("token", "create", "--state", self.state,
                                    "--role", role, "--json"))["token"]
            self.tokens[role] = t
            self.secrets["%s bearer token" % role] = t.encode()
            # p8v_<16 hex>_<43 base64url>: the secret may hold '_' itself.
            self.secrets["%s bearer secret" % role] = \
                t.split("_", 2)[2].encode()
        return self.tokens[role]

    def key(self, what):
        pem, key = adversary.new_key()
        self.secrets.update(adversary.key_needles(pem, key, what))
        return pem, key

    def call(self, method, path, body=None, ctype=None, role="portal",
             unix=False, tcp_sign=False):
        h = {"Authorization": "Bearer " + self.token(role)}
        if ctype:
            h["Content-Type"] = ctype
        if unix:
            conn = self.d.unix()
        elif tcp_sign:
            conn = self.d.tcp()
            conn.port = self.sign_port
        else:
            conn = self.d.tcp()
        try:
            r = request(conn, method, path, body=body, headers=h)
        finally:
            conn.close()
        self.answers.append(("%s %s (%d)" % (method, path,
                                             len(self.answers)), json.dumps(
            r.headers).encode() + b"\n" + r.body))
        return r

    def upload_json(self, app, key_id, team_id, pem, want=201, **extra):
        doc = {"key_id": key_id, "team_id": team_id, "p8": pem}
        doc.update(extra)
        r = self.call("POST", "/v1/apps/%s/keys" % app,
                      json.dumps(doc).encode(), "application/json")
        check_eq(r.status, want, "upload to %s: %r" % (app, r.body[:200]))
        return r


def multipart(fields, p8, filename):
    b = "----hygiene" + os.urandom(6).hex()
    out = b""
    for name, value in fields:
        out += (b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n'
                b"%s\r\n" % (b.encode(), name.encode(), value.encode()))
    out += (b'--%s\r\nContent-Disposition: form-data; name="p8"; '
            b'filename="%s"\r\nContent-Type: application/octet-stream\r\n\r\n'
            b"%s\r\n--%s--\r\n" % (b.encode(), filename.encode(),
                                   p8.encode(), b.encode()))
    return out, "multipart/form-data; boundary=" + b


def do_the_work(w):
    """Uploads, refusals, mints, JWTs, activation, revocations, CLI."""
    team = apple_id()
    keys = {}
    # JSON, every service.
    pem, k = w.key("K1 (JSON, later revoked)")
    kid1 = apple_id()
    w.upload_json("hy.one", kid1, team, pem, services=ALL_SERVICES)
    w.upload_json("hy.one", kid1, team, pem, want=200,
                  services=ALL_SERVICES)        # identical: 200
    keys["hy.one/" + kid1] = k
    # Multipart, with Apple's file name.
    pem2, k2 = w.key("K2 (multipart)")
    kid2 = apple_id()
    body, ctype = multipart([("key_id", kid2), ("team_id", apple_id()),
                             ("services", "apns,devicecheck")], pem2,
                            "AuthKey_%s.p8" % kid2)
    r = w.call("POST", "/v1/apps/hy.two/keys", body, ctype)
    check_eq(r.status, 201, "multipart upload: %r" % r.body[:200])
    keys["hy.two/" + kid2] = k2
    # The .p8 itself.
    pem3, k3 = w.key("K3 (raw, later revoked)")
    kid3 = apple_id()
    r = w.call("POST", "/v1/apps/hy.three/keys?key_id=%s&team_id=%s&"
               "filename=AuthKey_%s.p8" % (kid3, apple_id(), kid3),
               pem3.encode(), "application/x-pem-file")
    check_eq(r.status, 201, "raw upload: %r" % r.body[:200])
    keys["hy.three/" + kid3] = k3
    # The CLI, from stdin.
    pem4, k4 = w.key("K4 (CLI import)")
    kid4 = apple_id()
    w.cli("keys", "import", "--state", w.state, "--master-key-file",
          w.d.key_file, "--app", "hy.four", "--team-id", apple_id(),
          "--key-id", kid4, "--json", "-", stdin=pem4.encode())
    keys["hy.four/" + kid4] = k4
    # Refused uploads of keys that are never stored.
    pem6, _ = w.key("K6 (refused: trailing data)")
    r = w.upload_json("hy.one", apple_id(), team, pem6 + "trailing\n",
                      want=400)
    check_eq(r.json["error"]["code"], "p8_trailing_data", "K6 refusal")
    pem7, _ = w.key("K7 (refused: file name)")
    body, ctype = multipart([("key_id", "AAAAAAAAAA"),
                             ("team_id", apple_id())], pem7,
                            "AuthKey_BBBBBBBBBB.p8")
    r = w.call("POST", "/v1/apps/hy.two/keys", body, ctype)
    check_eq(r.status, 400, "K7: %r" % r.body[:200])
    pem8, _ = w.key("K8 (refused: Team ID)")
    w.upload_json("hy.one", apple_id(), "bad team", pem8, want=422)
    pem9, _ = w.key("K9 (refused: app id)")
    w.upload_json("..", apple_id(), team, pem9, want=422)
    # Mints: cold for every app, every JWT profile.
    for app in ("hy.one", "hy.two", "hy.three", "hy.four"):
        r = w.call("POST", "/v1/apps/%s/apns-token" % app, role="signer",
                   unix=True)
        check_eq(r.status, 200, "APNs token of %s" % app)
        w.jwts.append(r.json["token"])
    for i, body in enumerate(JWT_BODIES):
        r = w.call("POST", "/v1/apps/hy.one/jwt", json.dumps(body).encode(),
                   "application/json", role="signer", unix=(i % 2 == 0),
                   tcp_sign=(i % 2 == 1))
        check_eq(r.status, 200, "JWT %s" % body["profile"])
        w.jwts.append(r.json["token"])
    # A reported rejection: a new mint.
    rejected = w.jwts[0]
    r = w.call("POST", "/v1/apps/hy.one/apns-token", json.dumps({
        "rejected_token": rejected, "reason": "InvalidProviderToken"}
        ).encode(), "application/json", role="signer", unix=True)
    check_eq(r.status, 200, "after a rejection")
    w.jwts.append(r.json["token"])
    # A second key of hy.one's team as standby, then activated: a mint.
    pem5, k5 = w.key("K5 (standby, then active)")
    kid5 = apple_id()
    w.upload_json("hy.one", kid5, team, pem5, services=ALL_SERVICES,
                  activate=False)
    keys["hy.one/" + kid5] = k5
    r = w.call("POST", "/v1/apps/hy.one/keys/%s/activate" % kid5)
    check_eq(r.status, 200, "activate K5")
    r = w.call("POST", "/v1/apps/hy.one/apns-token", role="signer",
               unix=True)
    check_eq(r.status, 200, "token after activation")
    w.jwts.append(r.json["token"])
    # Revocations: K1 (standby now) and K3 (active).
    for app, kid in (("hy.one", kid1), ("hy.three", kid3)):
        r = w.call("DELETE", "/v1/apps/%s/keys/%s" % (app, kid))
        check_eq(r.status, 200, "revoke %s/%s" % (app, kid))
    r = w.call("POST", "/v1/apps/hy.three/apns-token", role="signer",
               unix=True)
    check_eq(r.status, 410, "token of a revoked key")
    # Reads.
    for app in ("hy.one", "hy.two", "hy.three", "hy.four"):
        check_eq(w.call("GET", "/v1/apps/%s/keys" % app).status, 200,
                 "list " + app)
    w.cli("keys", "list", "--state", w.state, "--json")
    w.cli("keys", "show", "--state", w.state, "hy.one", kid5)
    w.cli("token", "list", "--state", w.state)
    w.cli("verify", "--state", w.state, "--master-key-file", w.d.key_file)
    w.cli("backup", "--state", w.state, w.backup)
    check(os.path.getsize(w.backup) > 0, "empty backup")
    # Keys still stored (sealed) for the controls; revoked ones keep only
    # their metadata (the public point).
    w.stored = keys
    return keys


def process_checks(w):
    """Core size 0, not dumpable (with a control)."""
    pid = w.d.proc.pid
    with open("/proc/%d/limits" % pid) as f:
        core = [l for l in f if l.startswith("Max core file size")]
    check(core, "no core line in /proc/PID/limits")
    check_eq(core[0].split()[4:6], ["0", "0"], "core size soft and hard")
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) \
        else sys.executable
    p = subprocess.run([python, "-c", PROBE, str(pid)],
                       capture_output=True, text=True,
                       timeout=PROBE_TIMEOUT_S,
                       preexec_fn=as_user(w.ids))
    check_eq(p.returncode, 0, "prober: %s" % p.stderr[-500:])
    res = json.loads(p.stdout)
    print("  probe as uid %d: %r" % (w.ids[0] if w.ids else os.getuid(),
                                     res))
    check_eq(res["control"]["mem"], "opened",
             "the control: /proc/CHILD/mem of the prober's own child")
    check_eq(res["control"]["ptrace"], "attached",
             "the control: ptrace of the prober's own child")
    check(res["daemon"]["mem"].startswith("denied"),
          "/proc/PID/mem of the daemon: %s" % res["daemon"]["mem"])
    check(res["daemon"]["ptrace"].startswith("denied"),
          "ptrace of the daemon: %s" % res["daemon"]["ptrace"])
    if w.ids is not None:
        # A non-dumpable process's /proc files belong to root.
        check_eq(os.stat("/proc/%d/environ" % pid).st_uid, 0,
                 "owner of /proc/PID/environ")


def files_under(top, skip):
    out = {}
    for root, _, names in os.walk(top):
        for n in names:
            path = os.path.join(root, n)
            if path in skip or not os.path.isfile(path) or \
                    os.path.islink(path):
                continue
            with open(path, "rb") as f:
                out[os.path.relpath(path, top)] = f.read()
    return out


@runner.test
def no_key_material_in_files_logs_or_answers_and_not_dumpable():
    w = Work()
    try:
        if w.ids is not None:
            w.cli("init", "--state", w.state, "--master-key-file",
                  w.d.key_file)
        w.d.start()
        w.sign_port = [l["port"] for l in w.d.logs
                       if l.get("event") == "listening" and
                       l.get("listener") == "sign" and "port" in l][0]
        keys = do_the_work(w)
        process_checks(w)
        w.d.stop()              # every line JSON, no master-key hex
        master = bytes.fromhex(w.d.key_hex)
        w.secrets["master key"] = master
        w.secrets["master key hex"] = w.d.key_hex.encode()
        w.secrets["master key HEX"] = w.d.key_hex.upper().encode()
        w.secrets["master key base64"] = base64.b64encode(master)

        files = files_under(w.tmp, skip={w.d.key_file})
        check("state/data.mdb" in files and "backup.mdb" in files,
              "data file or backup missing: %r" % sorted(files))
        logs = {"daemon log": "\n".join(w.d.lines).encode()}
        cli = dict(w.cli_out)
        answers = dict(w.answers)
        print("  searched: %d files (%d KiB), %d log lines, %d CLI "
              "outputs, %d answers for %d secrets" % (
                  len(files), sum(map(len, files.values())) >> 10,
                  len(w.d.lines), len(cli), len(answers), len(w.secrets)))
        found = adversary.search(w.secrets, files)
        found += adversary.search(w.secrets, logs)
        # `token create` prints its token: that is what it is for.
        found += [(n, h) for n, h in adversary.search(w.secrets, cli)
                  if not ("bearer" in n and h.startswith(
                      "p8vault token create") and h.endswith("stdout"))]
        # Answers carry the bearer token only in our requests, never in
        # the answers; keys and the master key never.
        found += adversary.search(w.secrets, answers)
        jwts = {"signed token %d" % i: t.encode()
                for i, t in enumerate(w.jwts)}
        found += adversary.search(jwts, files)
        found += adversary.search(jwts, logs)
        check(not found, "secrets found (%d): %r" % (len(found), found[:10]))

        # Controls: the same search finds what is meant to be there.
        points = {"public point of %s" % n: bytes.fromhex(
            adversary.public_point_hex(k)) for n, k in keys.items()}
        points_hex = {"public point hex of %s" % n:
                      adversary.public_point_hex(k).encode()
                      for n, k in keys.items()}
        in_data = adversary.search(points_hex, {"data": files[
            "state/data.mdb"]})
        in_backup = adversary.search(points_hex, {"backup": files[
            "backup.mdb"]})
        check_eq(len(in_data), len(keys), "control: public points in the "
                 "data file (%r)" % in_data)
        check_eq(len(in_backup), len(keys), "control: public points in "
                 "the backup")
        check(not adversary.search(points, {"data": b"x"}),
              "control: the search finds nothing in nothing")
        kids = {n: n.split("/")[1].encode() for n in keys}
        check_eq(len(adversary.search(kids, logs)), len(keys),
                 "control: Key IDs in the logs")
        check_eq(len(set(n for n, _ in adversary.search(jwts, answers))),
                 len(jwts), "control: signed tokens in the answers")
    finally:
        w.close()


if __name__ == "__main__":
    runner.main()
