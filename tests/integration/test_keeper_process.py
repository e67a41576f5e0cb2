#!/usr/bin/python3
"""test_keeper_process.py: the keeper as its own sandboxed process, seen
from outside the real p8vaultd and p8vault.

- The daemon's child p8vault-keeper (/proc/PID/comm) runs with
  "Seccomp: 2" and "NoNewPrivs: 1", core size 0, no descriptor but
  stderr and its channels (unix sockets, none TCP, UDP or listening);
  started as root, it runs as another user in an empty, deleted root.
- Only the keeper opens a master-key file: under strace -f, no process
  but one that executed p8vault-keeper opens it, for the daemon (start
  and SIGHUP) and for the CLI commands that need keys.
- kill -9 of the keeper under load: the daemon lives, every answer is a
  correct token or 503 keeper_unavailable, /readyz is 200 again within
  2 s of the kill, with a new keeper.
- A keeper that cannot start again (its key file made unsafe): /readyz
  503 keeper_unavailable, requests that need a key 503 keeper_unavailable
  with Retry-After, cached APNs tokens still 200; the file fixed, ready
  again within 2.5 s (the retry backoff ends at 2 s).
- SIGHUP starts a new keeper and the old one exits.
- Memory: after 200 uploads, mints for 50 teams, 1000 /jwt signatures and
  a master-key rotation, a scan of every anonymous mapping of the front
  process finds no private scalar, DER or PEM line of any key, no master
  key and no data key; the same scan of the keeper finds the master keys
  (the scan works).
"""

import base64
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq, request  # noqa
from signing import (SignVault, apple_id, check_error, new_p8, p8vault,  # noqa
                     verify)
from test_sign_memory import needles, skip_reason  # noqa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa

runner = Runner("test_keeper_process")

KEEPER = "p8vault-keeper"
READY_WITHIN_S = 2.0


def children(pid):
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def running_keeper(pid):
    """1 if pid is a p8vault-keeper that runs (not a zombie; gone: 0)."""
    try:
        return comm(pid) == KEEPER and \
            status(pid).get("State", "").split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def keeper_of(daemon_pid, timeout=5.0):
    """The pid of the daemon's running p8vault-keeper."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ks = [p for p in children(daemon_pid) if running_keeper(p)]
        if len(ks) == 1:
            return ks[0]
        time.sleep(0.02)
    check(False, "the daemon has no single running %s child: %r" %
          (KEEPER, children(daemon_pid)))


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def socket_inodes(table):
    inodes = set()
    for name in table:
        try:
            with open("/proc/net/" + name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    inodes.add(fields[9] if name != "unix" else fields[6])
        except OSError:
            pass
    return inodes


def readyz(v):
    try:
        r = v.d.get("/readyz")
        return r.status, (r.json or {}).get("reason")
    except OSError as e:
        return None, str(e)


def wait_ready(v, since, limit):
    while time.time() - since < limit + 3:
        st, _ = readyz(v)
        if st == 200:
            return time.time() - since
        time.sleep(0.01)
    return None


@runner.test
def the_keeper_is_a_sandboxed_child():
    v = SignVault()
    try:
        v.start()
        check_eq(comm(v.d.proc.pid), "p8vaultd", "the front's name")
        k = keeper_of(v.d.proc.pid)
        st = status(k)
        check_eq(st.get("Seccomp"), "2", "the keeper's Seccomp (filter)")
        check_eq(st.get("NoNewPrivs"), "1", "the keeper's NoNewPrivs")
        with open("/proc/%d/limits" % k) as f:
            core = [l for l in f if l.startswith("Max core file size")]
        check(core and core[0].split()[4] == "0", "core size: %r" % core)
        # Channel threads each on one CPU of the daemon's (proto.h,
        # kproto_channel_cpu), spread over all of them.
        allowed = sorted(os.sched_getaffinity(v.d.proc.pid))
        tids = [int(t) for t in os.listdir("/proc/%d/task" % k)
                if int(t) != k]
        pinned = set()
        for tid in tids:
            cpus = os.sched_getaffinity(tid)
            check_eq(len(cpus), 1, "channel thread %d's CPUs" % tid)
            pinned |= cpus
        check_eq(sorted(pinned), allowed[:len(tids)],
                 "the CPUs of the channel threads")
        if os.geteuid() == 0:
            uid = int(st["Uid"].split()[0])
            check(uid != 0, "the keeper still runs as root")
            root = os.readlink("/proc/%d/root" % k)
            check(root != "/" and "(deleted)" in root,
                  "the keeper's root is %r, not an empty deleted "
                  "directory" % root)
        fds = {}
        for fd in os.listdir("/proc/%d/fd" % k):
            try:
                fds[int(fd)] = os.readlink("/proc/%d/fd/%s" % (k, fd))
            except OSError:
                pass
        unix = socket_inodes(["unix"])
        inet = socket_inodes(["tcp", "tcp6", "udp", "udp6", "raw",
                              "raw6"])
        for fd, target in fds.items():
            if fd == 2:
                continue
            m = re.match(r"socket:\[(\d+)\]$", target)
            check(m, "the keeper holds fd %d -> %s, not a channel" %
                  (fd, target))
            check(m.group(1) in unix and m.group(1) not in inet,
                  "fd %d is not a unix socket: %s" % (fd, target))
        check(0 not in fds and 1 not in fds, "stdin/stdout still open: %r"
              % fds)
        check(len(fds) >= 3, "channels: %r" % fds)
        # It works: a token through it.
        v.new_key("sandbox.app", services=["apns"])
        check_eq(v.apns("sandbox.app").status, 200, "a token")
        # A stop signal is the front's (systemd signals the whole unit):
        # the keeper lives on until the front has drained and closes it.
        os.kill(k, signal.SIGTERM)
        time.sleep(0.3)
        check_eq(keeper_of(v.d.proc.pid), k, "the keeper after SIGTERM")
        check_eq(readyz(v)[0], 200, "/readyz after the keeper's SIGTERM")
        v.stop()
        deadline = time.time() + 5
        while time.time() < deadline and os.path.exists("/proc/%d" % k):
            time.sleep(0.02)
        check(not os.path.exists("/proc/%d" % k), "the keeper outlived "
              "the daemon")
    finally:
        v.close()


def traced_opens(out_path, key_paths):
    """From strace -f output: (pids that open a key file, pids that
    executed p8vault-keeper)."""
    openers, keepers, pending = set(), set(), set()
    with open(out_path) as f:
        for line in f:
            pid = line.split()[0]
            # With several processes traced, strace splits a call that
            # another process interrupts: "execve(... <unfinished ...>"
            # and later "<... execve resumed>) = 0".
            if "execve(" in line and KEEPER in line:
                if "<unfinished ...>" in line:
                    pending.add(pid)
                elif "= 0" in line:
                    keepers.add(pid)
            if "<... execve resumed>" in line and pid in pending:
                pending.discard(pid)
                if "= 0" in line:
                    keepers.add(pid)
            if "open" in line and any('"%s"' % p in line
                                      for p in key_paths):
                openers.add(pid)
    return openers, keepers


@runner.test
def only_the_keeper_opens_a_master_key():
    if shutil.which("strace") is None:
        check(False, "strace is missing (scripts/deps.sh lists it)")
    v = SignVault()
    trace = os.path.join(v.tmp, "strace.out")
    try:
        # The daemon, under strace -f: start and a SIGHUP.
        from harness import Daemon
        # LeakSanitizer cannot run under a tracer (it ptraces itself).
        no_lsan = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}
        d = Daemon(tmpdir=v.tmp, args=["--sign-listen", "127.0.0.1:0"],
                   env=no_lsan)
        d.argv = ["strace", "-f", "-qq", "-e", "trace=open,openat,execve",
                  "-o", trace] + d.argv
        d.start()
        daemon = children(d.proc.pid)[0]
        check_eq(comm(daemon), "p8vaultd", "strace's child")
        os.kill(daemon, signal.SIGHUP)
        d.wait_log(lambda l: len(d.log_events("master_key_reload")) >= 1,
                   10, "the reload")
        os.kill(daemon, signal.SIGTERM)
        d.proc.wait(timeout=30)
        d.close()
        openers, keepers = traced_opens(trace, [v.key])
        check(openers, "no process opened the master key (the trace "
              "proves nothing)")
        check(openers <= keepers, "processes other than %s opened the "
              "master key: %r (keepers %r)" % (KEEPER, openers, keepers))
        check(len(keepers) >= 2, "SIGHUP started no new keeper: %r" %
              keepers)
        # The CLI commands that need keys.
        new_key = os.path.join(v.tmp, "new.key")
        p8 = os.path.join(v.tmp, "AuthKey_%s.p8" % "ABCDEFGHIJ")
        with open(p8, "w") as f:
            f.write(new_p8())
        commands = [
            ["master", "generate", new_key],
            ["keys", "import", "--state", v.state, "--master-key-file",
             v.key, "--app", "cli.app", "--team-id", apple_id(), p8],
            ["verify", "--state", v.state, "--master-key-file", v.key],
            ["master", "rotate", "--state", v.state, "--master-key-file",
             v.key, "--new-master-key-file", new_key],
        ]
        for args in commands:
            os.unlink(trace)
            proc = subprocess.run(
                ["strace", "-f", "-qq", "-e", "trace=open,openat,execve",
                 "-o", trace, os.environ["P8VAULT"]] + args,
                capture_output=True, text=True, timeout=120,
                env=dict(os.environ, **no_lsan))
            check_eq(proc.returncode, 0, "p8vault %s: %s" %
                     (" ".join(args[:2]), proc.stderr))
            openers, keepers = traced_opens(trace, [v.key, new_key])
            check(openers and openers <= keepers,
                  "p8vault %s: master key opened by %r, keepers %r" %
                  (" ".join(args[:2]), openers, keepers))
    finally:
        v.close()


def load(v, apps, stop, results):
    """Sign in a loop until stop is set; results gets (kind, status,
    code, token)."""
    i = 0
    while not stop.is_set():
        app = apps[i % len(apps)]
        i += 1
        try:
            if i % 2:
                # Half over TCP: the event loops' keeper pipes (batched
                # calls, api/http.c), half over the signing socket
                # (one call at a time).
                r = v.jwt(app, {"profile": "musickit"}, tcp=i % 4 == 1)
                kind = "jwt tcp" if i % 4 == 1 else "jwt"
            else:
                r = v.apns(app)
                kind = "apns"
        except Exception as e:              # noqa: a broken connection
            results.append(("error", None, repr(e), app))
            continue
        code = (r.json or {}).get("error", {}).get("code") \
            if r.status != 200 else None
        token = (r.json or {}).get("token") if r.status == 200 else None
        results.append((kind, r.status, code, app, token,
                        r.headers.get("retry-after")))


@runner.test
def kill_9_under_load():
    v = SignVault()
    try:
        v.start()
        apps, pubs = [], {}
        for i in range(4):
            app = "kill.%d" % i
            meta, kid, team, pem = v.new_key(app, services=["apns",
                                                            "musickit"])
            apps.append(app)
            pubs[app] = meta["public_key_pem"]
        for round_ in range(3):
            before = keeper_of(v.d.proc.pid)
            stop, results = threading.Event(), []
            workers = [threading.Thread(target=load,
                                        args=(v, apps, stop, results))
                       for _ in range(6)]
            for w in workers:
                w.start()
            deadline = time.time() + 20
            while time.time() < deadline and \
                    sum(1 for r in list(results) if r[1] == 200) < 20:
                time.sleep(0.02)
            os.kill(before, signal.SIGKILL)
            # Dead once it has exited: a sanitizer build's keeper takes a
            # while to, and until then the daemon (rightly) still calls
            # it ready, and the next round would find it again.
            gone = time.time() + 10
            while running_keeper(before) and time.time() < gone:
                time.sleep(0.005)
            check(not running_keeper(before),
                  "round %d: the keeper still runs after kill -9" % round_)
            killed = time.time()
            took = wait_ready(v, killed, READY_WITHIN_S)
            time.sleep(0.3)
            stop.set()
            for w in workers:
                w.join()
            check(v.d.proc.poll() is None, "the daemon died")
            check(took is not None and took <= READY_WITHIN_S,
                  "round %d: ready again after %r s (limit %s)" %
                  (round_, took, READY_WITHIN_S))
            after = keeper_of(v.d.proc.pid)
            check(after != before, "the same keeper pid after kill -9")
            bad = [r for r in results if r[0] == "error" or
                   (r[1] != 200 and (r[1], r[2]) !=
                    (503, "keeper_unavailable"))]
            check(not bad, "round %d: answers other than a token or 503 "
                  "keeper_unavailable: %r" % (round_, bad[:5]))
            ok = [r for r in results if r[1] == 200]
            check(ok, "no token at all in round %d" % round_)
            check([r for r in ok if r[0] == "jwt tcp"],
                  "no /jwt token over TCP (a keeper pipe) in round %d" %
                  round_)
            for r in ok[:: max(1, len(ok) // 50)]:
                verify(pubs[r[3]], r[4])
            for r in results:
                if r[1] == 503:
                    check_eq(r[5], "1", "Retry-After of a 503")
        lost = v.d.log_events("keeper_lost")
        check(len(lost) >= 3, "keeper_lost log lines: %d" % len(lost))
        v.stop()
    finally:
        v.close()


@runner.test
def a_keeper_that_cannot_start_leaves_the_daemon_not_ready():
    v = SignVault()
    try:
        v.start()
        meta, kid, team, pem = v.new_key("down.app",
                                         services=["apns", "musickit"])
        cached = v.apns("down.app")
        check_eq(cached.status, 200, "the first token")
        before = keeper_of(v.d.proc.pid)
        os.chmod(v.key, 0o644)          # refused by the keeper: its mode
        os.kill(before, signal.SIGKILL)
        deadline = time.time() + 5
        while time.time() < deadline and readyz(v)[0] != 503:
            time.sleep(0.01)
        check_eq(readyz(v), (503, "keeper_unavailable"), "/readyz")
        r = v.jwt("down.app", {"profile": "musickit"})
        check_error(r, 503, "keeper_unavailable", "/jwt without a keeper")
        check_eq(r.headers.get("retry-after"), "1", "Retry-After")
        r = v.portal("POST", "/v1/apps/down.app/keys",
                     {"key_id": apple_id(), "team_id": team,
                      "p8": new_p8()})
        check_error(r, 503, "keeper_unavailable", "an upload without a "
                    "keeper")
        r = v.apns("down.app")
        check_eq(r.status, 200, "the cached APNs token without a keeper")
        check_eq(r.json["token"], cached.json["token"], "the same token")
        os.chmod(v.key, 0o600)
        fixed = time.time()
        took = wait_ready(v, fixed, 2.5)
        check(took is not None and took <= 2.5,
              "ready %r s after the key file was fixed" % took)
        check_eq(v.jwt("down.app", {"profile": "musickit"}).status, 200,
                 "/jwt again")
        v.stop()
    finally:
        v.close()


def records(state):
    """(aad, envelope) of every key record, read with mdb_dump (its hex
    format: its -p format prints a backslash as it is, ambiguously)."""
    proc = subprocess.run(["mdb_dump", "-s", "keys", state],
                          capture_output=True, text=True, timeout=60)
    check(proc.returncode == 0, "mdb_dump -s keys: %s" % proc.stderr)
    lines = proc.stdout.split("\n")
    data = [bytes.fromhex(l[1:]) for l in
            lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]]
    out = []
    for key, val in zip(data[0::2], data[1::2]):
        if val[0] != 1:
            continue
        m = int.from_bytes(val[1:5], "big")
        meta, env = val[5:5 + m], val[5 + m:]
        if env:
            out.append((b"p8vault key record v1\0" + key + b"\0" + meta,
                        env))
    return out


def data_key(master, aad, env):
    """The data key of a version-1 envelope (crypto/envelope.h)."""
    check_eq(env[0], 1, "envelope version")
    return AESGCM(master).decrypt(env[9:21], env[21:69],
                                  b"p8v1K" + env[0:1] + env[1:9] + aad)


def scan(pid, wanted):
    """{name: [mappings where found]}: tests/memscan.c, the same search
    as test_sign_memory.py's scan for many needles at once."""
    tool = os.environ.get("P8V_MEMSCAN")
    check(tool and os.access(tool, os.X_OK), "P8V_MEMSCAN is not set")
    text = "".join("%s\t%s\n" % (name, needle.hex())
                   for name, needle in wanted.items())
    proc = subprocess.run([tool, str(pid)], input=text, capture_output=True,
                          text=True, timeout=300)
    check_eq(proc.returncode, 0, "memscan: %s" % proc.stderr)
    found = {name: [] for name in wanted}
    for line in proc.stdout.splitlines():
        name, _, mapping = line.partition("\t")
        found[name].append(mapping)
    return found


def master_key_of(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) == 32:
        return raw
    return bytes.fromhex(raw.decode().strip())


@runner.test
def no_key_in_the_front_process():
    reason = skip_reason()
    if reason is not None:
        # The ASan build (its heap cannot be scanned in a test's time):
        # a TAP SKIP, counted as such; the plain build runs it.
        print("skipped: " + reason)
        return "skip"
    v = SignVault()
    new_key = os.path.join(v.tmp, "new.key")
    p8vault("master", "generate", new_key)
    v.extra_args = ["--master-key-file", new_key]
    try:
        v.start()
        pems, teams = [], [apple_id() for _ in range(50)]
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(v.new_key, "mem.%d" % (i % 50),
                              team_id=teams[i % 50],
                              services=["apns", "musickit"])
                    for i in range(200)]
            pems = [f.result()[3] for f in futs]
            for f in [ex.submit(v.apns, "mem.%d" % i) for i in range(50)]:
                check_eq(f.result().status, 200, "a mint")
            for f in [ex.submit(v.jwt, "mem.%d" % (i % 50),
                                {"profile": "musickit"})
                      for i in range(1000)]:
                check_eq(f.result().status, 200, "a /jwt signature")
        # A master-key rotation: every record (sealed under the new key,
        # the daemon's primary) re-wrapped under the other by the CLI (its
        # own keeper), the daemon serving meanwhile.
        p8vault("master", "rotate", "--state", v.state, "--master-key-file",
                new_key, "--new-master-key-file", v.key)
        check_eq(v.jwt("mem.0", {"profile": "musickit"}).status, 200,
                 "/jwt after the rotation")
        cached = v.apns("mem.1")
        check_eq(cached.status, 200, "APNs after the rotation")
        v.metrics_settled(lambda m: True, "an idle daemon")
        masters = {"old master key": master_key_of(v.key),
                   "new master key": master_key_of(new_key)}
        wanted = dict(masters)
        wanted["the cached APNs token"] = cached.json["token"].encode()
        n_dk = 0
        for aad, env in records(v.state):
            for mk in masters.values():
                try:
                    dk = data_key(mk, aad, env)
                except Exception:           # noqa: the other master key
                    continue
                wanted["data key %d" % n_dk] = dk
                n_dk += 1
        check(n_dk >= 200, "data keys recovered: %d" % n_dk)
        for i, pem in enumerate(pems):
            for name, needle in needles(pem).items():
                wanted["key %d %s" % (i, name)] = needle
        found = scan(v.d.proc.pid, wanted)
        check(found.pop("the cached APNs token"), "the scan did not find "
              "the cached token in the front process: it proves nothing")
        leaks = {k: w for k, w in found.items() if w}
        check(not leaks, "key material in the front process: %r" %
              sorted(leaks)[:10])
        kfound = scan(keeper_of(v.d.proc.pid), masters)
        check(all(kfound.values()), "the scan of the keeper did not find "
              "the master keys it holds (%r): the scan proves nothing" %
              {k: bool(w) for k, w in kfound.items()})
        v.stop()
    finally:
        v.close()


if __name__ == "__main__":
    runner.main()
