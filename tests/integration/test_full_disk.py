#!/usr/bin/python3
"""test_full_disk.py: the daemon's state directory on a small, full file
system (a tmpfs of a few MiB, then a filler file leaving a little room).

- Uploads go on until the disk is full: every answer is 201 or 507
  insufficient_storage, nothing else (no 500, no dropped connection).
- No 2xx for anything not stored: every upload answered 201 is there
  (GET, with its fingerprint) and every one answered 507 is absent.
- Space for mints (issue 15): once uploads get 507, APNs mints for the
  keys already stored all still succeed, from the room the store keeps
  for them (store/reserve.h), and uploads stay 507 after them (they
  cannot use that room); revocations go on until refused: a token only
  if its audit event was stored, a key revoked only if the answer said
  so. Reads, cached tokens and JWTs that write nothing go on.
- Recovery without a restart, twice: once the filler is deleted, and
  once the file system is remounted larger, the same daemon (same pid)
  stores again, including the uploads it refused.
- At the end `p8vault verify` finds every record sound and the audit
  chain intact, with exactly one key.upload event per stored key.

Mounting needs root (CAP_SYS_ADMIN): without it, the script says so and
exits 77 (meson: SKIP). The tmpfs is unmounted whatever happens.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Runner, check, check_eq, request  # noqa
from signing import apple_id, cli_path, p8vault, verify  # noqa
import adversary  # noqa
from adversary import Tally, mdb_read  # noqa

runner = Runner("test_full_disk")

# The tmpfs: small, so that filling it is quick.
FS_SIZE = "4m"
# What the filler leaves free: room for a few dozen uploads (each commit
# writes a handful of 4 KiB pages; LMDB reuses freed ones).
SLACK_BYTES = 256 * 1024
# Most uploads tried per filling: far more than SLACK_BYTES can hold.
MAX_UPLOADS = 2000
# 507s in a row that say the disk is full (not a momentary shortage).
FULL_STREAK = 5
# Pages freed one step at a time once full: less room than one commit.
PARTIAL_ROOM_PAGES = [1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10, 12]
PAGE = 4096
# Topics of an upload that spans several pages: 64 of 250 characters
# (the most the API takes) make a record of about 16 KiB.
BIG_TOPICS = 64
BIG_TOPIC_LEN = 250
# Apps whose first APNs mint, and keys whose revocation, come once the
# disk is full (a mint writes a sealed token and an audit event; a
# revocation rewrites the record and writes an event).
PRE_MINT = 40
PRE_REVOKE = 20
# Larger size for the second recovery.
FS_BIGGER = "64m"
TOOL_TIMEOUT_S = 30


def mount_tmpfs(path, size):
    p = subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=%s,mode=0700" % size, "tmpfs", path],
                       capture_output=True, text=True,
                       timeout=TOOL_TIMEOUT_S)
    return p.returncode == 0, p.stderr.strip()


def umount(path):
    for args in (["umount", path], ["umount", "-l", path]):
        p = subprocess.run(args, capture_output=True, text=True,
                           timeout=TOOL_TIMEOUT_S)
        if p.returncode == 0:
            return
    print("warning: could not unmount %s" % path)


def skip_reason():
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    tmp = tempfile.mkdtemp(prefix="p8v-mnt-probe-")
    try:
        ok, err = mount_tmpfs(tmp, "1m")
        if not ok:
            return "cannot mount a tmpfs: %s" % err
        umount(tmp)
        return None
    finally:
        os.rmdir(tmp)


class FullDiskVault:
    """A daemon whose state directory is on a tmpfs of its own."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="p8v-full-")
        self.mnt = os.path.join(self.tmp, "fs")
        os.mkdir(self.mnt, 0o700)
        ok, err = mount_tmpfs(self.mnt, FS_SIZE)
        check(ok, "mount: %s" % err)
        self.mounted = True
        self.state = os.path.join(self.mnt, "state")
        self.key = os.path.join(self.tmp, "master.key")
        p8vault("init", "--state", self.state, "--master-key-file",
                self.key)
        self.d = Daemon(tmpdir=self.tmp)
        i = self.d.argv.index("--state")
        self.d.argv[i + 1] = self.state
        self.filler = os.path.join(self.mnt, "filler")
        self.portal_token = None
        self.signer_token = None

    def close(self):
        try:
            self.d.close()
        finally:
            if self.mounted:
                umount(self.mnt)
            shutil.rmtree(self.tmp, ignore_errors=True)

    def free_bytes(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize

    def fill(self):
        """Leave about SLACK_BYTES free."""
        n = self.free_bytes() - SLACK_BYTES
        check(n > 0, "the tmpfs is already fuller than the slack")
        with open(self.filler, "wb") as f:
            chunk = b"\0" * (1 << 20)
            while n > 0:
                f.write(chunk[:min(n, len(chunk))])
                n -= min(n, len(chunk))

    def portal(self, method, path, body=None):
        h = {"Authorization": "Bearer " + self.portal_token}
        if body is not None:
            h["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        conn = self.d.tcp()
        try:
            return request(conn, method, path, body=body, headers=h)
        except OSError as e:
            return e
        finally:
            conn.close()

    def sign(self, path, body=None):
        h = {"Authorization": "Bearer " + self.signer_token}
        if body is not None:
            h["Content-Type"] = "application/json"
            body = json.dumps(body).encode()
        conn = self.d.unix()
        try:
            return request(conn, "POST", path, body=body, headers=h)
        except OSError as e:
            return e
        finally:
            conn.close()


def status(r):
    return getattr(r, "status", repr(r))


class Upload:
    def __init__(self, app):
        self.app = app
        self.key_id = apple_id()
        self.team_id = apple_id()
        self.pem, self.key = adversary.new_key()
        self.answers = []

        self.services = ["apns"]
        self.topics = []

    def body(self):
        return {"key_id": self.key_id, "team_id": self.team_id,
                "p8": self.pem, "services": self.services,
                "topics": self.topics}


def big_upload(app):
    """An upload whose record spans several pages (LMDB overflow pages,
    allocated as one run): its commit writes several new pages at the
    end of the file at once, which a nearly full disk cuts short."""
    u = Upload(app)
    u.topics = ["%s.t%02d.%s" % (app, i, "x" * (BIG_TOPIC_LEN - 16))
                for i in range(BIG_TOPICS)]
    return u


def upload_until_full(v, uploads, tally, prefix):
    """Upload new keys until FULL_STREAK refusals in a row (507, or a
    wrong answer, which the tally reports); returns how many were stored
    (201)."""
    streak = stored = 0
    for i in range(MAX_UPLOADS):
        u = Upload("%s.%04d" % (prefix, i))
        uploads.append(u)
        r = v.portal("POST", "/v1/apps/%s/keys" % u.app, u.body())
        u.answers.append(status(r))
        tally.expect("upload %s" % u.app, status(r), {201, 507})
        if status(r) == 507:
            tally.expect("507 code", r.json["error"]["code"],
                         "insufficient_storage")
        if status(r) == 201:
            streak = 0
            stored += 1
        else:
            streak += 1
            if streak == FULL_STREAK:
                return stored
    raise AssertionError("the disk never filled up")


def partial_room(v, uploads, tally, prefix):
    """Once full, free a few pages at a time, less than one commit writes,
    and upload a record that spans several pages: LMDB's write of the
    commit then stops short (the commit fails with EIO)."""
    for i, pages in enumerate(PARTIAL_ROOM_PAGES):
        size = os.path.getsize(v.filler)
        os.truncate(v.filler, max(0, size - pages * PAGE))
        u = big_upload("%s.%02d" % (prefix, i))
        uploads.append(u)
        r = v.portal("POST", "/v1/apps/%s/keys" % u.app, u.body())
        u.answers.append(status(r))
        tally.expect("upload with %d pages free" % pages, status(r),
                     {201, 507})


def audit(v):
    """The audit events, read with mdb_dump (LMDB lets it read while the
    daemon writes)."""
    _, events = mdb_read(v.state, "audit")
    return [json.loads(e) for e in events.values()]


def check_stored(v, uploads, tally):
    """Every upload whose last answer was 201 is there (any 201 before
    as well); every one only ever answered 507 is absent."""
    for u in uploads:
        r = v.portal("GET", "/v1/apps/%s/keys/%s" % (u.app, u.key_id))
        if 201 in u.answers:
            if tally.expect("GET stored %s" % u.app, status(r), 200):
                tally.expect("fingerprint of %s" % u.app,
                             r.json.get("fingerprint"),
                             adversary.fingerprint(u.key))
        elif u.answers and set(u.answers) == {507}:
            tally.expect("GET refused %s" % u.app, status(r), 404)


@runner.test
def a_full_disk_is_507_stores_nothing_and_recovers_without_a_restart():
    v = FullDiskVault()
    try:
        v.portal_token = json.loads(p8vault(
            "token", "create", "--state", v.state, "--role", "portal",
            "--json"))["token"]
        v.signer_token = json.loads(p8vault(
            "token", "create", "--state", v.state, "--role", "signer",
            "--json"))["token"]
        v.d.start()
        pid = v.d.proc.pid
        uploads = []
        tally = Tally("answers on a full disk")
        # Keys stored while there is room: pre.0 gets a token now; the
        # mint.* apps get their first token and the rev.* keys their
        # revocation once the disk is full.
        pre = {}
        for app in ["pre.0"] + ["mint.%02d" % i for i in range(PRE_MINT)] + \
                ["rev.%02d" % i for i in range(PRE_REVOKE)]:
            u = Upload(app)
            u.services = ["apns", "devicecheck"]
            r = v.portal("POST", "/v1/apps/%s/keys" % u.app, u.body())
            check_eq(status(r), 201, "upload before filling")
            pre[app] = u
        r0 = v.sign("/v1/apps/pre.0/apns-token")
        check_eq(status(r0), 200, "token before filling")

        v.fill()
        stored = upload_until_full(v, uploads, tally, "fill1")
        print("  first filling: %d stored, then %d x 507 (%d KiB free)" % (
            stored, FULL_STREAK, v.free_bytes() // 1024))
        check(stored > 0, "nothing fitted in the slack: the test did not "
              "see the transition from room to full")
        partial_room(v, uploads, tally, "partial1")
        # What the big records left free, small ones fill.
        upload_until_full(v, uploads, tally, "fill1b")
        # While full: APNs mints (a cached token and an audit event each)
        # all go through, from the room kept for them; uploads stay
        # refused; then revocations.
        mints, revokes = {}, {}
        for i in range(PRE_MINT):
            app = "mint.%02d" % i
            r = v.sign("/v1/apps/%s/apns-token" % app)
            mints[app] = r
            tally.expect("mint %s while full" % app, status(r), 200)
        u = Upload("after-mints")
        uploads.append(u)
        r = v.portal("POST", "/v1/apps/%s/keys" % u.app, u.body())
        u.answers.append(status(r))
        tally.expect("upload after the mints while full", status(r), 507)
        for i in range(PRE_REVOKE):
            app = "rev.%02d" % i
            r = v.portal("DELETE", "/v1/apps/%s/keys/%s" % (
                app, pre[app].key_id))
            revokes[app] = r
            tally.expect("revoke %s while full" % app, status(r),
                         {200, 507})
        counts = lambda d, st: sum(status(r) == st for r in d.values())
        print("  while full: %d mints stored, %d refused; %d revocations "
              "stored, %d refused" % (counts(mints, 200), counts(mints, 507),
                                      counts(revokes, 200),
                                      counts(revokes, 507)))
        check(v.free_bytes() < 2 * 64 * 1024, "%d bytes free after the "
              "mints: the disk was not full, the mints proved nothing" %
              v.free_bytes())
        # What writes nothing goes on.
        for what, r, want in (
                ("healthz", v.d.get("/healthz"), 200),
                ("list", v.portal("GET", "/v1/apps/pre.0/keys"), 200),
                ("cached token", v.sign("/v1/apps/pre.0/apns-token"), 200),
                ("devicecheck JWT", v.sign(
                    "/v1/apps/pre.0/jwt", {"profile": "devicecheck"}),
                 {200}),
                ("whoami", v.portal("GET", "/v1/whoami"), 200)):
            tally.expect(what + " while full", status(r), want)
        check_eq(v.sign("/v1/apps/pre.0/apns-token").json["token"],
                 r0.json["token"], "the cached token while full")
        check_stored(v, uploads, tally)
        # No 2xx for anything not stored: a token only with its event, a
        # revocation only if the key is revoked.
        minted = set(e.get("key_id") for e in audit(v)
                     if e.get("what") == "apns.mint")
        for app, r in mints.items():
            tally.expect("audit event of %s's mint (%s)" % (app, status(r)),
                         pre[app].key_id in minted, status(r) == 200)
        for app, r in revokes.items():
            g = v.portal("GET", "/v1/apps/%s/keys/%s" % (app,
                                                         pre[app].key_id))
            tally.expect("state of %s after %s" % (app, status(r)),
                         g.json.get("state"),
                         "revoked" if status(r) == 200 else "active")
        tally.check()

        # Recovery 1: the filler goes, the same daemon stores again.
        os.unlink(v.filler)
        tally = Tally("answers after the filler was deleted")
        for u in uploads:
            if u.answers[-1] == 507:
                r = v.portal("POST", "/v1/apps/%s/keys" % u.app, u.body())
                u.answers.append(status(r))
                tally.expect("retry %s" % u.app, status(r), 201)
        for i in range(PRE_MINT):
            app = "mint.%02d" % i
            r = v.sign("/v1/apps/%s/apns-token" % app)
            tally.expect("mint %s after recovery" % app, status(r), 200)
            if status(mints.get(app)) == 200:
                tally.expect("%s: the token minted while full" % app,
                             r.json["token"], mints[app].json["token"])
            verify(adversary.public_pem(pre[app].key), r.json["token"])
        for app, r in revokes.items():
            r2 = v.portal("DELETE", "/v1/apps/%s/keys/%s" % (
                app, pre[app].key_id))
            tally.expect("revoke %s after recovery" % app, status(r2),
                         410 if status(r) == 200 else 200)
        check_stored(v, uploads, tally)
        per_key = {}
        for e in audit(v):
            if e.get("what") == "apns.mint":
                per_key[e.get("key_id")] = per_key.get(e.get("key_id"), 0) + 1
        for i in range(PRE_MINT):
            app = "mint.%02d" % i
            tally.expect("apns.mint events of %s" % app,
                         per_key.get(pre[app].key_id, 0), 1)
        tally.check()

        # Full again; recovery 2: remount larger.
        v.fill()
        tally = Tally("answers on a full disk, second time")
        stored = upload_until_full(v, uploads, tally, "fill2")
        print("  second filling: %d stored, then %d x 507" % (
            stored, FULL_STREAK))
        partial_room(v, uploads, tally, "partial2")
        check_stored(v, uploads, tally)
        p = subprocess.run(["mount", "-o", "remount,size=" + FS_BIGGER,
                            v.mnt], capture_output=True, text=True,
                           timeout=TOOL_TIMEOUT_S)
        check_eq(p.returncode, 0, "remount: %s" % p.stderr)
        for u in uploads:
            if u.answers[-1] == 507:
                r = v.portal("POST", "/v1/apps/%s/keys" % u.app, u.body())
                u.answers.append(status(r))
                tally.expect("retry %s after remount" % u.app, status(r),
                             201)
        check_stored(v, uploads, tally)
        tally.check()

        check_eq(v.d.proc.pid, pid, "the daemon's pid (no restart)")
        check(adversary.alive(v.d), "the daemon died")
        # One audit event per stored key, one mint for pre.1; all sound.
        ups = [e for e in audit(v) if e.get("what") == "key.upload"]
        check_eq(len(ups), len(uploads) + len(pre), "key.upload events")
        p = subprocess.run([cli_path(), "verify", "--state", v.state,
                            "--master-key-file", v.key, "--json"],
                           capture_output=True, text=True,
                           timeout=TOOL_TIMEOUT_S)
        check_eq(p.returncode, 0, "p8vault verify: %s" % p.stderr)
        rep = json.loads(p.stdout)
        check_eq(rep.get("records"), len(uploads) + len(pre), "records")
        check(rep.get("audit_intact") is True, "audit chain: %r" % rep)
        v.d.stop()
        errors = [l for l in v.d.logs if l.get("level") == "error" and
                  l.get("event") not in ("store_no_space",)]
        check(not errors, "error lines other than store_no_space: %r" %
              errors[:3])
    finally:
        v.close()


if __name__ == "__main__":
    reason = skip_reason()
    if reason is not None:
        runner.skip_all(reason)
    runner.main()
