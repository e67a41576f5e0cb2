#!/usr/bin/python3
"""test_faults.py: the daemon under faults it must survive without losing
an acknowledged write, signing from damaged data, or starting on the
wrong master key.

- SIGKILL in the middle of 1000 concurrent uploads, then a restart: every
  upload answered 201 is there, complete and usable; every other one is
  either wholly there or wholly absent; `p8vault verify` finds every
  record sound and the audit chain intact, with one event per record.
- Damaged key records (a flipped byte in the sealed key, metadata that no
  longer decodes, a truncated value, a record relabelled to another Team
  ID, a sealed key moved under another app) in a copy of the state
  directory: the daemon starts, never crashes, answers 500
  internal_error for those apps and never a token, names each record in
  its log, and signs for every other app; `p8vault verify` names exactly
  the damaged records. A damaged cached token is dropped, not served.
- A wrong, missing, malformed or unsafe master key at start: the daemon
  refuses (exit 1 or 2) with a message naming the cause, never becomes
  ready, and leaves the data file untouched.

The full-disk fault needs root (a tmpfs): tests/integration/test_full_disk.py.
"""

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Runner, check, check_eq,  # noqa
                     read_response, write_master_key)
from signing import (SignVault, apple_id, cli_path,  # noqa
                     verify, TOOL_TIMEOUT_S)
import adversary  # noqa
from adversary import Tally, mdb_read, mdb_write  # noqa

runner = Runner("test_faults")

UPLOADS = 1000
# SIGKILL once this many uploads were answered: about a third, so that
# hundreds are in flight or not yet sent when the daemon dies.
KILL_AFTER = 300
# How long the uploads may take to reach KILL_AFTER (ASan is slower).
KILL_WAIT_S = 60
BARRIER_TIMEOUT_S = 60
THREAD_STACK_BYTES = 256 * 1024
# Connection limits above UPLOADS: this tests durability, not the limits.
CONNECTION_LIMIT = 2 * UPLOADS


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n and (hard == resource.RLIM_INFINITY or hard >= n):
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    check(soft >= n, "RLIMIT_NOFILE %d is below %d" % (soft, n))


def cli(*args):
    """(exit status, stdout, stderr) of the admin CLI."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("P8VAULT_")}
    p = subprocess.run([cli_path()] + list(args), env=env,
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=TOOL_TIMEOUT_S)
    return p.returncode, p.stdout, p.stderr


def upload_request(app, key_id, team_id, pem, token):
    body = json.dumps({"key_id": key_id, "team_id": team_id,
                       "p8": pem}).encode()
    return adversary.build("POST", "/v1/apps/%s/keys" % app,
                           [("Authorization", "Bearer " + token),
                            ("Content-Type", "application/json")], body)


def get_key(v, app, key_id):
    return v.portal("GET", "/v1/apps/%s/keys/%s" % (app, key_id))


# -- SIGKILL during concurrent uploads ------------------------------------

@runner.test
def sigkill_during_a_thousand_uploads_loses_no_acknowledged_one():
    raise_fd_limit(4 * UPLOADS)
    v = SignVault(extra_args=[
        "--max-connections", str(CONNECTION_LIMIT),
        "--max-connections-per-address", str(CONNECTION_LIMIT)])
    try:
        v.start()
        token = v.token("portal")
        uploads = []
        for i in range(UPLOADS):
            pem, key = adversary.new_key()
            uploads.append(("kill.%04d" % i, apple_id(), apple_id(), pem,
                            key))
        results = [None] * UPLOADS
        acked = [0]
        cond = threading.Condition()
        barrier = threading.Barrier(UPLOADS + 1, timeout=BARRIER_TIMEOUT_S)
        target = ("tcp", ("127.0.0.1", v.d.port))

        def upload(i):
            app, kid, team, pem, _ = uploads[i]
            s = None
            try:
                s = adversary.connect(target, timeout=KILL_WAIT_S)
                barrier.wait()
                req = upload_request(app, kid, team, pem, token)
                s.sendall(req)
                r = read_response(s, timeout=KILL_WAIT_S, sent=req)
                results[i] = r.status
                if r.status == 201:
                    with cond:
                        acked[0] += 1
                        cond.notify_all()
            except Exception as e:      # the daemon died: no answer
                results[i] = e
            finally:
                if s is not None:
                    s.close()

        threading.stack_size(THREAD_STACK_BYTES)
        threads = [threading.Thread(target=upload, args=(i,))
                   for i in range(UPLOADS)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.monotonic()
        with cond:
            cond.wait_for(lambda: acked[0] >= KILL_AFTER, KILL_WAIT_S)
        os.kill(v.d.proc.pid, signal.SIGKILL)
        t_kill = time.monotonic() - t0
        for t in threads:
            t.join(KILL_WAIT_S)
        v.d.kill()
        v.d.close()
        v.d = None
        ok = [i for i in range(UPLOADS) if results[i] == 201]
        other = [r for r in results if r != 201 and
                 not isinstance(r, Exception)]
        unanswered = [i for i in range(UPLOADS)
                      if isinstance(results[i], Exception)]
        print("  killed after %.2fs: %d acknowledged, %d unanswered" % (
            t_kill, len(ok), len(unanswered)))
        check(not other, "statuses other than 201 before the kill: %r" %
              sorted(set(other)))
        check(len(ok) >= KILL_AFTER, "only %d uploads acknowledged" %
              len(ok))
        check(unanswered, "every upload was answered before the kill: "
              "nothing was in flight, so this proved nothing")

        v.start()
        tally = Tally("after the restart")
        present = 0
        for i in range(UPLOADS):
            app, kid, team, pem, key = uploads[i]
            r = get_key(v, app, kid)
            if i in ok:
                tally.expect("acknowledged %s" % app, r.status, 200)
            else:
                tally.expect("unanswered %s" % app, r.status, {200, 404})
            if r.status == 200:
                present += 1
                tally.expect("fingerprint of %s" % app,
                             r.json.get("fingerprint"),
                             adversary.fingerprint(key))
                tally.expect("team of %s" % app, r.json.get("team_id"),
                             team)
                tally.expect("state of %s" % app, r.json.get("state"),
                             "active")
            elif r.status == 404:
                tally.expect("code for absent %s" % app,
                             (r.json or {}).get("error", {}).get("code"),
                             {"key_not_found", "app_not_found"})
        tally.check()
        print("  %d of %d uploads present after the restart" % (
            present, UPLOADS))
        # Acknowledged keys sign, and the tokens verify.
        for i in random.sample(ok, 5):
            app, kid, team, pem, key = uploads[i]
            r = v.apns(app, token=v.token("signer"))
            check_eq(r.status, 200, "APNs token of %s" % app)
            verify(adversary.public_pem(key), r.json["token"])
        # Every record opens; one audit event per record.
        rc, out, err = cli("verify", "--state", v.state,
                           "--master-key-file", v.key, "--json")
        check_eq(rc, 0, "p8vault verify after the kill: %s" % err)
        rep = json.loads(out)
        check_eq(rep.get("records"), present, "records verified")
        check_eq(rep.get("opened"), present, "records opened")
        check(rep.get("audit_intact") is True, "audit chain: %r" % rep)
        _, events = mdb_read(v.state, "audit")
        uploaded = [json.loads(e) for e in events.values()]
        uploaded = [e for e in uploaded if e.get("what") == "key.upload"]
        check_eq(len(uploaded), present, "key.upload audit events")
        v.stop()
    finally:
        v.close()


# -- damaged records ------------------------------------------------------

def logged_record(d, app, key_id):
    """Error lines of d that name the record app/key_id."""
    out = []
    for l in d.logs:
        if l.get("level") != "error":
            continue
        if (l.get("app") == app and l.get("key_id") == key_id) or \
                "%s/%s" % (app, key_id) in l.get("msg", ""):
            out.append(l)
    return out


ALL_SERVICES = ["apns", "devicecheck", "musickit"]


@runner.test
def damaged_records_are_named_skipped_and_never_sign():
    v = SignVault()
    try:
        v.start()
        signer = v.token("signer")
        apps = {}
        for app in ("good.one", "good.two", "flip.envelope", "bad.meta",
                    "truncated", "relabelled", "moved.to", "cached.bad"):
            meta, kid, team, pem = v.new_key(app, services=ALL_SERVICES)
            apps[app] = (kid, team, meta["public_key_pem"])
        # Cached tokens: cached.bad's sealed cache entry is damaged below;
        # good.two's must not be handed out for copied.to.
        for app in ("good.one", "good.two", "cached.bad"):
            check_eq(v.apns(app, token=signer).status, 200, "mint " + app)
        v.stop()

        header, recs = mdb_read(v.state, "keys")
        by_app = {k.split(b"\0")[0].decode(): (k, val)
                  for k, val in recs.items()}
        changed = {}
        k, val = by_app["flip.envelope"]
        b = bytearray(val)
        b[-20] ^= 0x01                  # inside the sealed payload
        changed[k] = bytes(b)
        k, val = by_app["bad.meta"]
        changed[k] = val.replace(b'"environment":"both"',
                                 b'"environment":"bath"')
        check(changed[k] != val, "bad.meta: nothing replaced")
        k, val = by_app["truncated"]
        changed[k] = val[:9]
        k, val = by_app["relabelled"]
        team = apps["relabelled"][1].encode()
        changed[k] = val.replace(team, b"ZZZZZ00000")
        check(changed[k] != val, "relabelled: nothing replaced")
        # moved.to gets good.two's whole record, relabelled to its own
        # identity (app and Key ID) so that it decodes: only the sealed
        # key's authenticated data can tell.
        k_to, val_to = by_app["moved.to"]
        _, val_from = by_app["good.two"]
        kid_from = apps["good.two"][0].encode()
        kid_to = apps["moved.to"][0].encode()
        moved = val_from.replace(b'"app":"good.two"', b'"app":"moved.to"') \
            .replace(b'"key_id":"%s"' % kid_from, b'"key_id":"%s"' % kid_to)
        mlen = int.from_bytes(moved[1:5], "big") + \
            len(b"moved.to") - len(b"good.two")
        changed[k_to] = moved[:1] + mlen.to_bytes(4, "big") + moved[5:]
        # copied.to (no key of its own) gets a copy of good.two's record
        # under its Key ID, relabelled to the app: the same Team ID, Key ID
        # and fingerprint as good.two, whose token is cached, but a sealed
        # key bound to good.two.
        copied = val_from.replace(b'"app":"good.two"', b'"app":"copied.to"')
        mlen = int.from_bytes(copied[1:5], "big") + 1
        changed[b"copied.to\0" + kid_from] = \
            copied[:1] + mlen.to_bytes(4, "big") + copied[5:]
        apps["copied.to"] = apps["good.two"]
        mdb_write(v.state, "keys", header, changed)
        # The sealed cache entry of cached.bad: one byte flipped.
        cheader, cache = mdb_read(v.state, "cache")
        team_cb = apps["cached.bad"][1].encode()
        ck = [c for c in cache if team_cb in c]
        check_eq(len(ck), 1, "cache entries of cached.bad")
        b = bytearray(cache[ck[0]])
        b[-3] ^= 0x80
        mdb_write(v.state, "cache", cheader, {ck[0]: bytes(b)})

        v.start()
        damaged = ("flip.envelope", "bad.meta", "truncated", "relabelled",
                   "moved.to", "copied.to")
        tally = Tally("answers over damaged records")
        for app in damaged:
            for what, r in (
                    ("apns-token", v.apns(app, token=signer)),
                    ("jwt", v.jwt(app, {"profile": "devicecheck"},
                                  token=signer)),
                    ("jwt musickit", v.jwt(app, {"profile": "musickit"},
                                           token=signer))):
                tally.expect("%s %s" % (what, app), r.status, 500)
                tally.expect("%s %s code" % (what, app),
                             (r.json or {}).get("error", {}).get("code"),
                             "internal_error")
                tally.expect("%s %s: no token" % (what, app),
                             b"eyJ" in r.body, False)
        # Uploading or listing in a damaged app does not go past it either.
        for app in ("bad.meta", "truncated"):
            r = v.portal("GET", "/v1/apps/%s/keys" % app)
            tally.expect("list %s" % app, r.status, 500)
        tally.check()
        # Each damaged record is named in the log (app and Key ID).
        time.sleep(0.2)
        unnamed = [app for app in damaged
                   if not logged_record(v.d, app, apps[app][0])]
        check(not unnamed, "damaged records not named in the log: %r" %
              unnamed)
        # The others sign, and their tokens verify.
        for app in ("good.one", "good.two", "cached.bad"):
            kid, team, pub = apps[app]
            r = v.apns(app, token=signer)
            check_eq(r.status, 200, "APNs token of %s (%r)" % (app, r))
            verify(pub, r.json["token"])
            r = v.jwt(app, {"profile": "devicecheck"}, token=signer)
            check_eq(r.status, 200, "devicecheck of %s" % app)
            verify(pub, r.json["token"])
        check(v.d.log_events("apns_cache_dropped") or
              any(l.get("event") == "apns_cache_loaded" and
                  "dropped" in l.get("msg", "") and
                  " 0 dropped" not in l.get("msg", "")
                  for l in v.d.logs),
              "the damaged cache entry was not reported as dropped")
        check(adversary.alive(v.d), "the daemon died")
        v.stop()
        # The CLI names exactly the damaged records.
        rc, out, err = cli("verify", "--state", v.state,
                           "--master-key-file", v.key)
        check_eq(rc, 3, "p8vault verify exit status: %s" % err)
        for app in damaged:
            check("%s/%s" % (app, apps[app][0]) in err,
                  "verify does not name %s: %s" % (app, err))
        for app in ("good.one", "good.two", "cached.bad"):
            check("%s/" % app not in err, "verify names %s: %s" % (app, err))
    finally:
        v.close()


# -- master keys at start -------------------------------------------------

def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_file(path, data, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def master_key_id(path):
    """The id logs name a master key by (docs/security.md)."""
    with open(path) as f:
        key = bytes.fromhex(f.read().strip())
    return hashlib.sha256(b"p8vault master key id v1" + key).hexdigest()[:16]


@runner.test
def a_wrong_or_missing_master_key_is_refused_at_start():
    tmp = tempfile.mkdtemp(prefix="p8v-mk-")
    try:
        # A vault with one key stored under the right master key.
        os.mkdir(os.path.join(tmp, "vault"), 0o700)
        v = SignVault(tmp=os.path.join(tmp, "vault"))
        v.start()
        v.new_key("mk.app")
        v.stop()
        right_hex = open(v.key).read().strip()
        before = file_digest(os.path.join(v.state, "data.mdb"))
        keys = os.path.join(tmp, "keys")
        os.mkdir(keys, 0o700)
        other = os.path.join(keys, "other.key")
        write_master_key(other)
        cases = []

        def case(name, files, status, words):
            cases.append((name, files, status, words))

        case("another master key", [other], {1}, ["master_key_mismatch"])
        case("two keys, neither the right one",
             [other, os.path.join(keys, "other2.key")], {1},
             ["master_key_mismatch"])
        write_master_key(os.path.join(keys, "other2.key"))
        case("a missing key file", [os.path.join(keys, "nope.key")], {1},
             ["nope.key", "not found"])
        write_file(os.path.join(keys, "empty.key"), b"")
        case("an empty key file", [os.path.join(keys, "empty.key")], {1},
             ["empty.key", "not a master key file"])
        write_file(os.path.join(keys, "short.key"),
                   (right_hex[:63] + "\n").encode())
        case("63 hex digits", [os.path.join(keys, "short.key")], {1},
             ["short.key", "not a master key file"])
        write_file(os.path.join(keys, "long.key"),
                   (right_hex + "00\n").encode())
        case("66 hex digits", [os.path.join(keys, "long.key")], {1},
             ["long.key", "not a master key file"])
        write_file(os.path.join(keys, "nothex.key"),
                   ("g" * 64 + "\n").encode())
        case("not hex", [os.path.join(keys, "nothex.key")], {1},
             ["nothex.key", "not a master key file"])
        write_file(os.path.join(keys, "raw33.key"), os.urandom(33))
        case("33 raw bytes", [os.path.join(keys, "raw33.key")], {1},
             ["raw33.key", "not a master key file"])
        write_file(os.path.join(keys, "open.key"),
                   (right_hex + "\n").encode(), 0o644)
        case("the right key, readable by others",
             [os.path.join(keys, "open.key")], {1}, ["open.key", "mode 0644"])
        os.symlink(v.key, os.path.join(keys, "link.key"))
        case("the right key through a symbolic link",
             [os.path.join(keys, "link.key")], {1}, ["link.key", "symbolic link"])
        case("no key at all", [], {2}, ["master key"])

        for name, files, status, words in cases:
            args = ["--state", v.state, "--listen", "127.0.0.1:0"]
            for f in files:
                args += ["--master-key-file", f]
            d = Daemon(master_key=False, sign_socket=False,
                       tmpdir=tempfile.mkdtemp(prefix="run-", dir=tmp),
                       listen=None, cwd=tmp)
            d.argv = [d.argv[0]] + args
            rc, _ = d.run_to_exit()
            text = "\n".join(d.lines)
            check(rc in status, "%s: exit status %r, want %r; stderr:\n%s"
                  % (name, rc, status, text[-1500:]))
            check(not d.log_events("ready"), "%s: became ready" % name)
            errors = [l for l in d.logs if l.get("level") == "error"]
            check(errors, "%s: no error line" % name)
            refusal = "\n".join("%s: %s" % (l["event"], l["msg"])
                                for l in errors)
            for w in words:
                check(w in refusal, "%s: %r not in the refusal:\n%s" % (
                    name, w, text[-1500:]))
            if os.environ.get("P8V_TEST_VERBOSE"):
                print("  %s: exit %d: %s" % (name, rc, refusal))
            check(right_hex not in text.lower(),
                  "%s: the master key is in the log" % name)
            d.check_logs()
            check_eq(file_digest(os.path.join(v.state, "data.mdb")), before,
                     "%s: data.mdb changed" % name)
            d.close()
        print("  %d refusals checked" % len(cases))
        # The mismatch names the loaded and the expected key by id.
        d = Daemon(master_key=False, sign_socket=False, listen=None,
                   tmpdir=tempfile.mkdtemp(prefix="run-", dir=tmp), cwd=tmp)
        d.argv = [d.argv[0], "--state", v.state, "--listen", "127.0.0.1:0",
                  "--master-key-file", other]
        check_eq(d.run_to_exit()[0], 1, "exit status, another key")
        text = "\n".join(d.lines)
        for what, path in (("loaded", other), ("expected", v.key)):
            check(master_key_id(path) in text, "the %s key's id %s is not "
                  "named:\n%s" % (what, master_key_id(path), text))
        d.close()
        # And the right key still opens it.
        v.start()
        check_eq(v.apns("mk.app").status, 200, "signing with the right key")
        v.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    runner.main()
