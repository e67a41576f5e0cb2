#!/usr/bin/python3
"""test_isolation.py: one tenant must not hurt the others (issue 15,
"Tenant isolation"), against the real p8vaultd.

- mint_held_back_stalls_no_one: while one team's APNs token mint is held
  back (a test-only hold: admin_tamper keeps the store's single writer
  busy from another process, as a slow disk would), and more callers of
  that team wait for the mint than the daemon has signing threads, the
  cached tokens of other teams keep a p99 under 5 ms; the held callers
  get their one token once the hold ends.
- upload_burst_over_the_address_limit: 150 uploads at once from one
  address (the per-address limit is 64): each is answered, 201 or 503
  too_many_connections with Retry-After, never a close without an
  answer; once the 503s are sent again, all 150 are stored.
- locked_memory_spent_is_503_busy: a daemon with RLIMIT_MEMLOCK at 1 MiB
  and slow clients each holding an upload body of 60 000 bytes open (in
  locked memory) until that budget is spent: an upload of 5 KiB (which
  needs guarded pages for its body) then is answered
  503 busy with Retry-After (never served from unlocked memory), and so
  are the slow clients that found no room; once they are gone, uploads
  are stored again.
- quota_keys_per_app, quota_apps_per_token, quota_uploads_per_minute,
  quota_records: each quota from one of the three places options come
  from (command line, P8VAULT_* variable, config file): the upload past
  it is refused with its stable code (422 too_many_keys, too_many_apps,
  vault_full; 429 rate_limited with Retry-After) and stores nothing;
  other tenants are not hurt; a revoked key frees its app's quota.
- upload_and_activation_read_only_what_they_need: the writer's work does
  not grow with an app: an upload and an activation find the key's
  fingerprint and the app's active keys through the per-app index, so a
  standby record of the app that no longer decodes (admin_tamper
  record-garble) is never read: both succeed (before: 500, every record
  of the app decoded under the writer).
- audit_retention_behind_a_checkpoint: `p8vault audit export` writes the
  events out (as stored, one a line) and records them; a daemon with
  --audit-retention 2 prunes those older than 2 s, and only those (an
  older event not exported stays); `p8vault audit verify` checks the kept
  chain from its checkpoint (the first kept event names the hash of the
  last exported line), and still finds an event removed after it.
"""

import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq, read_all, request  # noqa
from signing import (SignVault, apple_id, bearer, check_apns_answer,  # noqa
                     new_p8, p8vault)
import adversary  # noqa

runner = Runner("test_isolation")

# Signing threads of the daemon under test; the held team's callers
# outnumber them, so that on a daemon whose handlers wait on the event
# loop every thread is stuck.
SIGN_THREADS = 2
HELD_CALLERS = 3 * SIGN_THREADS
OTHER_TEAMS = 4
# Other teams' cached tokens are asked for, one after another, for this
# long during the hold (thousands of samples), and the bound on their 99th
# percentile (the number). The machine is shared: a window in
# which a neighbour took the CPUs may be measured again, up to
# SAMPLE_WINDOWS times, each only counted while the held callers are all
# still waiting (a daemon that stalls answers them before it answers the
# first sample).
SAMPLE_WINDOW_S = 0.5
SAMPLE_WINDOWS = 8
P99_LIMIT_S = 0.005
# The hold ends after this long whatever happens: a daemon that stalls
# answers its samples only then, and fails the bound by far.
HOLD_MAX_S = 10
# The bound is about the daemon, not about its neighbours on a shared
# machine (with a load of 12 on two cores, a daemon at the usual priority
# has a p99 of 5-7 ms with no hold at all): where allowed (root), this test
# and the daemon it starts run under SCHED_RR at the lowest real-time
# priority, above the compilers next door (0.3-0.5 ms then).
MEASURE_POLICY = os.SCHED_RR
MEASURE_PRIORITY = 1
HTTP_TIMEOUT_S = 30


def tamper_path():
    p = os.environ.get("P8V_ADMIN_TAMPER")
    check(p and os.path.exists(p), "P8V_ADMIN_TAMPER is not set or missing")
    return p


class WriterHold:
    """admin_tamper hold-write: the store's writer, held by another
    process until release() (or HOLD_MAX_S)."""

    def __init__(self, state):
        self.p = subprocess.Popen([tamper_path(), "hold-write", state],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        line = self.p.stdout.readline()
        check_eq(line, b"held\n", "admin_tamper hold-write")
        self.timer = threading.Timer(HOLD_MAX_S, self.release)
        self.timer.start()

    def release(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass

    def finish(self):
        self.timer.cancel()
        self.release()
        check_eq(self.p.wait(timeout=HTTP_TIMEOUT_S), 0,
                 "admin_tamper hold-write exit status")


# Uploads at once from one address, over the default per-address limit
# (64) and under the total one (1024).
BURST = 150
BURST_ROUNDS = 20


# The daemon's RLIMIT_MEMLOCK: OpenSSL's secure heap (256 KiB) and room for
# about a dozen bodies of SLOW_BODY bytes (15 locked pages each).
MEMLOCK_BYTES = 1 << 20
SLOW_BODY = 60000
SLOW_CLIENTS = 16
# Then bodies of two locked pages each, to spend what the large ones left.
SMALL_BODY = 5000
SMALL_CLIENTS = 10


def parse_raw(raw):
    """(status, headers, body) of one raw HTTP response, or None."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (l.partition(":") for l in lines[1:])}
    return int(parts[1]), headers, body


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


@runner.test
def mint_held_back_stalls_no_one():
    try:
        os.sched_setscheduler(0, MEASURE_POLICY,
                              os.sched_param(MEASURE_PRIORITY))
        realtime = True
    except OSError:
        realtime = False    # not root: measured at the usual priority
    try:
        held_back(realtime)
    finally:
        if realtime:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def held_back(realtime):
    print("measured %s" % ("under SCHED_RR" if realtime else
                           "at the usual priority"), file=sys.stderr)
    v = SignVault(extra_args=["--threads", str(SIGN_THREADS)])
    hold = None
    try:
        v.start()
        signer = v.token("signer")
        # DeviceCheck answers the shared APNs token (issue 15): its
        # requests take the same path and are held and sampled too.
        svc = ["apns", "devicecheck"]
        meta, kid, team, _ = v.new_key("held.app", services=svc)
        others = []
        for i in range(OTHER_TEAMS):
            app = "other%d.app" % i
            v.new_key(app, services=svc)
            r = v.apns(app)
            check_eq(r.status, 200, "first token of %s: %r" % (app, r))
            others.append((app, r.json["token"]))

        # Keep-alive connections for the samples, opened before the hold.
        conns = [v.sign_conn() for _ in range(OTHER_TEAMS)]
        for c in conns:
            c.connect()
        h = {"Host": "localhost", "Content-Type": "application/json"}
        h.update(bearer(signer))

        hold = WriterHold(v.state)
        held = [None] * HELD_CALLERS

        def held_caller(i):
            try:
                held[i] = v.apns("held.app") if i % 2 == 0 else \
                    v.jwt("held.app", {"profile": "devicecheck"})
            except Exception as e:  # noqa: reported below
                held[i] = e

        threads = [threading.Thread(target=held_caller, args=(i,))
                   for i in range(HELD_CALLERS)]
        for t in threads:
            t.start()
        # Let every held caller reach the daemon and its mint start.
        time.sleep(0.5)
        check(all(x is None for x in held),
              "a held caller was answered during the hold: %r" % held)

        windows = []     # (p99, samples, still held at its end)
        n = 0
        for _ in range(SAMPLE_WINDOWS):
            lat = []
            end = time.monotonic() + SAMPLE_WINDOW_S
            while time.monotonic() < end:
                app, token = others[n % OTHER_TEAMS]
                c = conns[n % OTHER_TEAMS]
                t0 = time.monotonic()
                if n % 2 == 0:
                    r = request(c, "POST", "/v1/apps/%s/apns-token" % app,
                                body=b"{}", headers=h)
                else:
                    r = request(c, "POST", "/v1/apps/%s/jwt" % app,
                                body=b'{"profile":"devicecheck"}',
                                headers=h)
                lat.append(time.monotonic() - t0)
                check_eq(r.status, 200, "cached token of %s: %r" % (app, r))
                check_eq(r.json["token"], token, "cached token of %s" % app)
                n += 1
            still_held = all(x is None for x in held)
            p99 = percentile(lat, 0.99)
            windows.append((p99, len(lat), still_held))
            print("cached tokens during the hold: %d, p50 %.2f ms, p99 "
                  "%.2f ms, max %.2f ms%s" % (
                      len(lat), percentile(lat, 0.5) * 1e3, p99 * 1e3,
                      max(lat) * 1e3, "" if still_held else
                      " (the held callers were answered: not counted)"),
                  file=sys.stderr)
            if not still_held or p99 < P99_LIMIT_S:
                break
        hold.finish()
        hold = None
        for t in threads:
            t.join(HTTP_TIMEOUT_S)
        counted = [w for w in windows if w[2]]
        check(counted, "no window measured while the mint was held back "
              "(p99 %.1f ms, %d samples, in the first)" % (
                  windows[0][0] * 1e3, windows[0][1]))
        best = min(counted)
        check(best[0] < P99_LIMIT_S, "p99 of %d cached tokens of other "
              "teams while a mint is held back: %.1f ms (limit %.1f ms)" %
              (best[1], best[0] * 1e3, P99_LIMIT_S * 1e3))
        for i, r in enumerate(held):
            check(r is not None and not isinstance(r, Exception),
                  "held caller %d: %r" % (i, r))
            if i % 2 == 1:
                check_eq(r.json.pop("profile", None), "devicecheck",
                         "held caller %d: profile" % i)
            check_apns_answer(r, kid, team, meta["public_key_pem"],
                              "held caller %d" % i)
        check_eq(len({r.json["token"] for r in held}), 1,
                 "the held callers' tokens (one mint)")
        check_eq(len(v.mint_events(kid)), 1, "apns.mint events of the "
                 "held key")
        for c in conns:
            c.close()
        v.stop()
    finally:
        if hold is not None:
            hold.release()
        v.close()


@runner.test
def upload_burst_over_the_address_limit():
    # A limit the burst's connections, all open before any request is
    # sent, surely pass, however fast the uploads are served.
    v = SignVault(extra_args=["--max-connections-per-address", "32"])
    try:
        v.start()
        portal = v.token("portal")
        # One key under the same ids in every app: allowed.
        key_id, team_id, pem = apple_id(), apple_id(), new_p8()
        body = json.dumps({"key_id": key_id, "team_id": team_id,
                           "p8": pem}).encode()
        apps = ["burst%03d.app" % i for i in range(BURST)]
        pending = list(apps)
        refused_total = 0
        for rnd in range(BURST_ROUNDS):
            if not pending:
                break
            # Every connection first, then every request, then the
            # answers: all at once for the daemon, sent right after the
            # connects (a connection over the limit has 2 s from its
            # accept to send its request).
            socks = [socket.create_connection(("127.0.0.1", v.d.port),
                                              timeout=HTTP_TIMEOUT_S)
                     for _ in pending]
            try:
                for s, app in zip(socks, pending):
                    try:
                        s.sendall(adversary.build(
                            "POST", "/v1/apps/%s/keys" % app,
                            [("Authorization", "Bearer " + portal),
                             ("Content-Type", "application/json")], body))
                    except OSError:
                        pass    # an answer may still be there to read
                answers = [read_all(s, HTTP_TIMEOUT_S) for s in socks]
            finally:
                for s in socks:
                    s.close()
            retry = []
            for app, raw in zip(pending, answers):
                got = parse_raw(raw or b"")
                check(got is not None, "round %d, %s: no answer (%d bytes "
                      "before the close)" % (rnd, app, len(raw or b"")))
                status, headers, rbody = got
                if status == 201:
                    continue
                check_eq(status, 503, "round %d, %s: status (%r)" %
                         (rnd, app, raw[:300]))
                check_eq(json.loads(rbody)["error"]["code"],
                         "too_many_connections", "%s: error code" % app)
                check_eq(headers.get("retry-after"), "1",
                         "%s: Retry-After" % app)
                retry.append(app)
            print("round %d: %d uploads, %d answered 503" % (
                rnd, len(pending), len(retry)), file=sys.stderr)
            refused_total += len(retry)
            pending = retry
            if pending:
                time.sleep(1)   # the Retry-After
        check_eq(pending, [], "uploads still refused after %d rounds" %
                 BURST_ROUNDS)
        check(refused_total > 0, "no upload was over the per-address "
              "limit: the burst did not test it")
        for app in apps:
            r = v.portal("GET", "/v1/apps/%s/keys/%s" % (app, key_id),
                         token=portal)
            check_eq(r.status, 200, "%s stored: %r" % (app, r))
        v.stop()
    finally:
        v.close()


def start_with_memlock(v, limit):
    """Start v's daemon with RLIMIT_MEMLOCK soft limit at limit (the daemon
    reads it at start); this process's limit is restored after."""
    old = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (limit, old[1]))
    try:
        v.start()
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, old)


def upload_raw(v, portal, app, body):
    s = socket.create_connection(("127.0.0.1", v.d.port),
                                 timeout=HTTP_TIMEOUT_S)
    try:
        s.sendall(adversary.build(
            "POST", "/v1/apps/%s/keys" % app,
            [("Authorization", "Bearer " + portal),
             ("Content-Type", "application/json")], body))
        return parse_raw(read_all(s, HTTP_TIMEOUT_S) or b"")
    finally:
        s.close()


@runner.test
def locked_memory_spent_is_503_busy():
    v = SignVault()
    slow = []
    try:
        start_with_memlock(v, MEMLOCK_BYTES)
        portal = v.token("portal")

        def body():
            # Over SECMEM_SHORT_MAX_BYTES (4 KiB): held in guarded pages,
            # not in OpenSSL's secure heap (which has its own share).
            return json.dumps({"key_id": apple_id(), "team_id": apple_id(),
                               "p8": new_p8()}).encode() + b" " * 5000

        got = upload_raw(v, portal, "before.app", body())
        check(got is not None and got[0] == 201,
              "upload before the slow clients: %r" % (got,))
        # Slow clients: headers and the first bytes of a large body, then
        # nothing; each holds a locked buffer of the body's length.
        for size, count in ((SLOW_BODY, SLOW_CLIENTS),
                            (SMALL_BODY, SMALL_CLIENTS)):
            head = adversary.build(
                "POST", "/v1/apps/slow.app/keys",
                [("Authorization", "Bearer " + portal),
                 ("Content-Type", "application/json"),
                 ("Content-Length", str(size))], None)
            for _ in range(count):
                s = socket.create_connection(("127.0.0.1", v.d.port),
                                             timeout=HTTP_TIMEOUT_S)
                s.sendall(head + b"{" + b" " * 99)
                slow.append((s, size))
            time.sleep(0.2)
        time.sleep(0.5)
        busy = [v.d.proc.poll() is None]
        got = upload_raw(v, portal, "during.app", body())
        check(got is not None, "upload while the budget is spent: no answer")
        status, headers, rbody = got
        check_eq(status, 503, "upload while the locked budget is spent "
                 "(%r)" % (rbody[:200],))
        check_eq(json.loads(rbody)["error"]["code"], "busy",
                 "upload while the locked budget is spent: error code")
        check_eq(headers.get("retry-after"), "1", "Retry-After of busy")
        r = v.portal("GET", "/v1/apps/during.app/keys", token=portal)
        check(r.status == 404 or (r.json or {}).get("keys") == [],
              "an upload answered busy was stored: %r" % r)
        # The slow clients finish their bodies: those that found no room
        # are answered busy too, the others by their (bad) body.
        statuses = []
        for s, size in slow:
            s.sendall(b" " * (size - 101) + b"}")
        for s, _ in slow:
            got = parse_raw(read_all(s, HTTP_TIMEOUT_S) or b"")
            check(got is not None, "a slow client got no answer")
            statuses.append((got[0], json.loads(got[2])["error"]["code"]))
            s.close()
        slow = []
        print("slow clients: %r" % sorted(set(statuses)), file=sys.stderr)
        check((503, "busy") in statuses, "no slow client was over the "
              "budget: the test did not spend it")
        check(all(st in ((503, "busy"), (422, "missing_field"))
                  for st in statuses), "slow clients: %r" % statuses)
        got = upload_raw(v, portal, "after.app", body())
        check(got is not None and got[0] == 201,
              "upload once the slow clients are gone: %r" % (got,))
        check(busy[0], "the daemon died")
        v.stop()
    finally:
        for s, _ in slow:
            s.close()
        v.close()


def quota_vault(args=(), env=None, config=None):
    v = SignVault(extra_args=list(args), env=env)
    if config is not None:
        path = os.path.join(v.tmp, "p8vault.conf")
        with open(path, "w") as f:
            f.write(config)
        v.extra_args += ["--config", path]
    v.start()
    return v


def new_upload(v, app, token, want, code=None):
    key_id, team_id = apple_id(), apple_id()
    body = {"key_id": key_id, "team_id": team_id, "p8": new_p8()}
    r = v.portal("POST", "/v1/apps/%s/keys" % app, body, token=token)
    check_eq(r.status, want, "upload to %s: %r" % (app, r))
    if code is not None:
        check_eq(r.json["error"]["code"], code, "upload to %s: code" % app)
        g = v.portal("GET", "/v1/apps/%s/keys/%s" % (app, key_id),
                     token=token)
        check_eq(g.status, 404, "a refused upload was stored: %r" % g)
    return key_id, r


@runner.test
def quota_keys_per_app():
    v = quota_vault(args=["--max-keys-per-app", "2"])
    try:
        portal = v.token("portal")
        k1, _ = new_upload(v, "keys.app", portal, 201)
        new_upload(v, "keys.app", portal, 201)
        new_upload(v, "keys.app", portal, 422, "too_many_keys")
        new_upload(v, "other.app", portal, 201)
        r = v.portal("DELETE", "/v1/apps/keys.app/keys/%s" % k1,
                     token=portal)
        check(r.status in (200, 204), "revoke: %r" % r)
        new_upload(v, "keys.app", portal, 201)
        v.stop()
    finally:
        v.close()


@runner.test
def quota_apps_per_token():
    v = quota_vault(env={"P8VAULT_MAX_APPS_PER_TOKEN": "2"})
    try:
        a = v.token("portal")
        b = v.token("admin")
        new_upload(v, "one.app", a, 201)
        new_upload(v, "two.app", a, 201)
        new_upload(v, "three.app", a, 422, "too_many_apps")
        # More keys in its own apps, and other tokens' apps, still go.
        new_upload(v, "one.app", a, 201)
        new_upload(v, "three.app", b, 201)
        v.stop()
    finally:
        v.close()


@runner.test
def quota_uploads_per_minute():
    v = quota_vault(config="max-uploads-per-minute = 3\n")
    try:
        a = v.token("portal")
        b = v.token("admin")
        for i in range(3):
            new_upload(v, "rate%d.app" % i, a, 201)
        _, r = new_upload(v, "rate3.app", a, 429, "rate_limited")
        check_eq(r.headers.get("retry-after"), "60", "Retry-After")
        new_upload(v, "rate3.app", b, 201)
        v.stop()
    finally:
        v.close()


@runner.test
def quota_records():
    v = quota_vault(args=["--max-records", "3"])
    try:
        a = v.token("portal")
        b = v.token("admin")
        k, _ = new_upload(v, "rec1.app", a, 201)
        new_upload(v, "rec2.app", a, 201)
        new_upload(v, "rec3.app", b, 201)
        new_upload(v, "rec4.app", b, 422, "vault_full")
        # A revoked record stays (a tombstone): still full.
        v.portal("DELETE", "/v1/apps/rec1.app/keys/%s" % k, token=a)
        new_upload(v, "rec4.app", a, 422, "vault_full")
        # Signing for what is stored goes on.
        r = v.apns("rec2.app")
        check_eq(r.status, 200, "APNs token in a full vault: %r" % r)
        v.stop()
    finally:
        v.close()


@runner.test
def upload_and_activation_read_only_what_they_need():
    v = SignVault()
    try:
        v.start()
        portal = v.token("portal")
        app = "index.app"
        _, kid_a, _, _ = v.new_key(app)
        # The damaged record sorts first in its app: a walk that decodes
        # the app's records meets it at once.
        kid_b = "0000000000"
        v.upload(app, kid_b, apple_id(), new_p8(), activate=False)
        for _ in range(8):      # history the writer must not walk
            k, _ = new_upload(v, app, portal, 201)
            v.portal("DELETE", "/v1/apps/%s/keys/%s" % (app, k))
        v.stop()
        p = subprocess.run([tamper_path(), "record-garble", v.state, app,
                            kid_b], capture_output=True, text=True,
                           timeout=HTTP_TIMEOUT_S)
        check_eq(p.returncode, 0, "admin_tamper record-garble: %s" %
                 p.stderr)
        v.start()
        # Another app's first upload walks the vault for the token's apps
        # (a quota): the damaged record is skipped, not fatal.
        new_upload(v, "other.index.app", portal, 201)
        kid_c, r = new_upload(v, app, portal, 201)
        check_eq(r.json.get("state"), "active", "new key's state")
        g = v.portal("GET", "/v1/apps/%s/keys/%s" % (app, kid_a))
        check_eq(g.json.get("state"), "standby", "the key it replaced")
        r = v.portal("POST", "/v1/apps/%s/keys/%s/activate" % (app, kid_a))
        check_eq(r.status, 200, "activate %s: %r" % (kid_a, r))
        g = v.portal("GET", "/v1/apps/%s/keys/%s" % (app, kid_c))
        check_eq(g.json.get("state"), "standby", "the key it demoted")
        # (Signing walks the app to choose its key, and answers 500 for
        # an app with a damaged record, as test_faults.py expects.)
        v.stop()
    finally:
        v.close()


RETENTION_S = 2


@runner.test
def audit_retention_behind_a_checkpoint():
    v = SignVault()
    try:
        v.start()
        portal = v.token("portal")
        for i in range(3):
            new_upload(v, "audit%d.app" % i, portal, 201)
        out = os.path.join(v.tmp, "audit.jsonl")
        exp = json.loads(p8vault("audit", "export", "--state", v.state,
                                 "--out", out, "--json"))
        with open(out, "rb") as f:
            lines = f.read().splitlines()
        check_eq(len(lines), exp["events"], "lines exported")
        check(len(lines) >= 4, "events exported: %d" % len(lines))
        exported = [json.loads(l) for l in lines]
        check_eq([e["seq"] for e in exported],
                 list(range(1, len(lines) + 1)), "exported seqs")
        # Not exported: stays, however old.
        for i in range(3):
            new_upload(v, "late.app", portal, 201)
        time.sleep(RETENTION_S + 1)
        v.stop()
        v.extra_args += ["--audit-retention", str(RETENTION_S)]
        v.start()
        v.d.wait_log(lambda l: v.d.log_events("audit_pruned"), 30,
                     "an audit_pruned log line")
        ev = v.d.log_events("audit_pruned")[0]
        check_eq(ev.get("pruned"), len(lines), "events pruned")
        kept = json.loads(p8vault("audit", "list", "--state", v.state,
                                  "--json"))
        check_eq(kept[0]["seq"], len(lines) + 1, "first kept event")
        check_eq(kept[0]["prev"], hashlib.sha256(lines[-1]).hexdigest(),
                 "the first kept event chains to the last exported line")
        check(any(e.get("app") == "late.app" for e in kept),
              "the event not exported was pruned")
        ver = json.loads(p8vault("audit", "verify", "--state", v.state,
                                 "--json"))
        check_eq((ver["intact"], ver["events"]), (True, len(kept)),
                 "audit verify from the checkpoint")
        v.stop()
        p = subprocess.run([tamper_path(), "audit-delete", v.state,
                            str(kept[1]["seq"])], capture_output=True,
                           text=True, timeout=HTTP_TIMEOUT_S)
        check_eq(p.returncode, 0, "admin_tamper audit-delete")
        env = {k: val for k, val in os.environ.items()
               if not k.startswith("P8VAULT_")}
        p = subprocess.run([os.environ["P8VAULT"], "audit", "verify",
                            "--state", v.state, "--json"], env=env,
                           capture_output=True, text=True,
                           timeout=HTTP_TIMEOUT_S)
        check_eq(p.returncode, 3, "audit verify after a removal: %s" %
                 p.stderr)
        check_eq(json.loads(p.stdout)["bad_seq"], kept[2]["seq"],
                 "where the chain breaks")
    finally:
        v.close()


if __name__ == "__main__":
    runner.main()
