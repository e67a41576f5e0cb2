#!/usr/bin/python3
"""test_etcd.py: p8vault nodes sharing one etcd cluster (issue 14).

A real 3-member etcd cluster (Debian's etcd-server, /usr/bin/etcd) on
loopback, free ports, data in a temporary folder, stopped after. `p8vault
init --store etcd://...` prepares a prefix; three p8vaultd nodes run on it
(--store etcd://A,B,C/PREFIX):

- an upload on node 1 is listed on nodes 2 and 3 within 1 s, and all three
  answer the same apns-token;
- revocations on node 3 are refused on nodes 1 and 2 within 1 s (p50 and
  max printed);
- `p8vault export` of the prefix, `import` into LMDB and into another
  prefix, `verify` on both, and an LMDB node serves tokens of the imported
  key that verify under the uploaded public key;
- one etcd member killed: uploads and tokens go on;
- all etcd members stopped: cached tokens still served, uploads 503
  store_unavailable, /readyz not ready after 5 s, and everything resumes
  once etcd is back; quorum lost (two members stopped): the same;
- one APNs mint for 600 concurrent cold requests over three nodes, and a
  node killed while it holds the mint lock loses it with its lease;
- a node whose watch cannot resume after a compaction reloads the prefix;
- `master rotate` through the CLI while three nodes sign; etcd auth; TLS
  with client certificates.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import threading
import concurrent.futures
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Runner, TestFailure, check, check_eq  # noqa
from signing import (SignVault, check_apns_answer, check_error,  # noqa
                     p8vault, verify)

ETCD = "/usr/bin/etcd"
MEMBERS = 3
PREFIX = "p8v-it"
SPREAD_S = 1.0          # the promise: seen on every node within a second
REVOCATIONS = 20
KEEPER_DELAY_S = 2.0    # node 2's keeper answers this late
CONCURRENT = 600        # cold requests at once, over the nodes (issue 14)

runner = Runner("test_etcd")
S = {}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class EtcdCluster:
    def __init__(self, tmp, n=MEMBERS, tls=None):
        self.tmp = tmp
        self.tls = tls          # (ca, cert, key): https with client certs
        self.members = []
        for i in range(n):
            self.members.append({"name": "m%d" % i, "client": free_port(),
                                 "peer": free_port(), "proc": None})
        self.initial = ",".join("%s=http://127.0.0.1:%d" % (m["name"],
                                m["peer"]) for m in self.members)

    def endpoints(self):
        return ",".join("127.0.0.1:%d" % m["client"] for m in self.members)

    def url(self, prefix=PREFIX):
        return "etcd://%s/%s" % (self.endpoints(), prefix)

    def start_member(self, i):
        m = self.members[i]
        log = open(os.path.join(self.tmp, m["name"] + ".log"), "ab")
        sch = "https" if self.tls else "http"
        tls = []
        if self.tls:
            tls = ["--trusted-ca-file", self.tls[0], "--cert-file",
                   self.tls[1], "--key-file", self.tls[2],
                   "--client-cert-auth"]
        m["proc"] = subprocess.Popen([
            ETCD] + tls + ["--name", m["name"],
            "--data-dir", os.path.join(self.tmp, m["name"]),
            "--listen-client-urls", "%s://127.0.0.1:%d" % (sch, m["client"]),
            "--advertise-client-urls",
            "%s://127.0.0.1:%d" % (sch, m["client"]),
            "--listen-peer-urls", "http://127.0.0.1:%d" % m["peer"],
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:%d" % m["peer"],
            "--initial-cluster", self.initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", "p8v-it-%d" % os.getpid(),
            # The watch's progress notifications (a quiet watch from a
            # dead one) and quick elections on loopback.
            "--heartbeat-interval", "50", "--election-timeout", "500"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

    def start(self):
        for i in range(len(self.members)):
            self.start_member(i)
        self.wait_healthy(range(len(self.members)))
        return self

    def wait_healthy(self, which, timeout=30):
        deadline = time.monotonic() + timeout
        ctx = None
        if self.tls:
            import ssl
            ctx = ssl.create_default_context(cafile=self.tls[0])
            ctx.load_cert_chain(self.tls[1], self.tls[2])
        for i in which:
            url = "%s://127.0.0.1:%d/health" % (
                "https" if self.tls else "http", self.members[i]["client"])
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=2,
                                                context=ctx) as r:
                        if json.loads(r.read()).get("health") == "true":
                            break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise TestFailure("etcd member %d not healthy" % i)
                time.sleep(0.1)

    def leader(self):
        """The index of the member that leads (asked of a live one)."""
        for m in self.members:
            if m["proc"] is None:
                continue
            try:
                req = urllib.request.Request(
                    "http://127.0.0.1:%d/v3/maintenance/status" % m["client"],
                    data=b"{}", headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    st = json.loads(r.read())
            except (OSError, ValueError):
                continue
            if st["leader"] == st["header"]["member_id"]:
                return self.members.index(m)
        raise TestFailure("no etcd member says it leads")

    def stop_member(self, i):
        p = self.members[i]["proc"]
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
        self.members[i]["proc"] = None

    def stop(self):
        for i in range(len(self.members)):
            self.stop_member(i)

    def api(self, path, body, token=None):
        """POST to the first member's v3 JSON gateway."""
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = token
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.members[0]["client"], path),
            data=json.dumps(body).encode(), headers=h)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())


class Node(SignVault):
    """A p8vaultd on the etcd store; CLI calls go to the same store."""

    def __init__(self, url, key, tmp, keys=None):
        self.tmp = tmp
        self.own_tmp = False
        self.state = url                # the CLI's --state takes it
        self.key = key
        self.keys = keys or [key]       # --master-key-file, in order
        self.extra_args = []
        self.env = None
        self.d = None
        self.sign_port = None
        self.tokens = {}

    def start(self):
        # 600 requests at once from one address, over three nodes.
        args = ["--store", self.state, "--sign-listen", "127.0.0.1:0",
                "--max-connections-per-address", "512"]
        for k in self.keys:
            args += ["--master-key-file", k]
        self.d = Daemon(tmpdir=self.tmp, cwd=self.tmp, args=args)
        self.d.start()
        for l in self.d.logs:
            if l.get("event") == "listening" and \
                    l.get("listener") == "sign" and "port" in l:
                self.sign_port = l["port"]
        check(self.sign_port, "no --sign-listen port in the logs")
        return self

    def mint_events(self, key_id=None):
        evs = json.loads(p8vault("audit", "list", "--store", self.state,
                                 "--json"))
        return [e for e in evs if e.get("what") == "apns.mint" and
                (key_id is None or e.get("key_id") == key_id)]


def wait_for(pred, timeout, what):
    """Seconds until pred() held; fails after timeout."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TestFailure("%s not within %ss" % (what, timeout))
        time.sleep(0.01)


def listed(node, app, kid):
    r = node.portal("GET", "/v1/apps/%s/keys" % app)
    return r.status == 200 and any(k.get("key_id") == kid
                                   for k in r.json.get("keys", r.json)
                                   if isinstance(k, dict))


@runner.test
def cluster_and_init():
    if not os.access(ETCD, os.X_OK):
        raise TestFailure("no %s: apt-get install etcd-server" % ETCD)
    tmp = tempfile.mkdtemp(prefix="p8v-etcd-")
    S["tmp"] = tmp
    S["etcd"] = EtcdCluster(tmp).start()
    url = S["etcd"].url()
    key = os.path.join(tmp, "master.key")
    out = json.loads(p8vault("init", "--store", url, "--master-key-file",
                             key, "--json"))
    check_eq(out["state_dir"], url, "init: the store")
    S["key"] = key
    # A second init with the same key finds the prefix prepared (and the
    # --store=LOCATION form works as well).
    out = p8vault("init", "--store=" + url, "--master-key-file", key)
    check("prepared before" in out, "second init: %r" % out)
    # A prefix nobody prepared is refused by the other commands.
    proc = run_cli("keys", "list", "--store", S["etcd"].url("nothing-here"))
    check_eq(proc.returncode, 1, "keys list on an empty prefix: %r" %
             proc.stderr)
    check("holds no p8vault store" in proc.stderr, proc.stderr)
    # The nodes run with two key paths (docs/operations.md, rotation
    # without a restart): the previous key first, the current one last;
    # both the same key until a rotation.
    kdir = os.path.join(tmp, "keys")
    os.mkdir(kdir, 0o700)
    S["keys"] = [os.path.join(kdir, "previous.key"),
                 os.path.join(kdir, "current.key")]
    for k in S["keys"]:
        shutil.copy2(key, k)
        os.chmod(k, 0o600)
    nodes = []
    for i in range(3):
        d = os.path.join(tmp, "node%d" % i)
        os.mkdir(d, 0o700)
        nodes.append(Node(url, key, d, keys=S["keys"]).start())
    S["nodes"] = nodes
    # One set of bearer tokens, made once: they live in etcd too.
    for n in nodes[1:]:
        n.tokens = nodes[0].tokens
    nodes[0].token("portal")
    nodes[0].token("signer")


@runner.test
def upload_on_one_node_is_seen_on_the_others():
    n1, n2, n3 = S["nodes"]
    meta, kid, team, pem = n1.new_key("fleet.app")
    S["fleet"] = (meta["public_key_pem"], kid, team)
    for n in (n2, n3):
        took = wait_for(lambda: listed(n, "fleet.app", kid), SPREAD_S,
                        "the upload listed on another node")
        print("# upload seen on another node after %.3f s" % took)
    a = check_apns_answer(n1.apns("fleet.app"), kid, team,
                          meta["public_key_pem"], "node 1")
    for i, n in enumerate((n2, n3)):
        b = check_apns_answer(n.apns("fleet.app"), kid, team,
                              meta["public_key_pem"], "node %d" % (i + 2))
        check_eq(b["token"], a["token"], "node %d's apns-token" % (i + 2))
    S["fleet_token"] = a["token"]


@runner.test
def revocation_reaches_every_node_within_a_second():
    n1, n2, n3 = S["nodes"]
    delays = []
    for i in range(REVOCATIONS):
        app = "rev%d.app" % i
        meta, kid, team, _ = n3.new_key(app)
        for n in (n1, n2):
            wait_for(lambda: n.apns(app).status == 200, 2 * SPREAD_S,
                     "the new key signing on every node")
        r = n3.portal("DELETE", "/v1/apps/%s/keys/%s" % (app, kid))
        check_eq(r.status, 200, "revoke on node 3: %r" % r)
        t0 = time.monotonic()
        for n in (n1, n2):
            wait_for(lambda: n.apns(app).status != 200, 2 * SPREAD_S,
                     "the revocation refused on another node")
        delays.append(time.monotonic() - t0)
        for n in (n1, n2):
            r = n.apns(app)
            check(r.status in (404, 409, 410),
                  "revoked key on another node: %r" % r)
    p50 = statistics.median(delays)
    print("# revocation refused on nodes 1 and 2 after: p50 %.3f s, max "
          "%.3f s over %d" % (p50, max(delays), len(delays)))
    check(max(delays) < SPREAD_S, "a revocation took %.3f s" % max(delays))


@runner.test
def one_mint_for_the_fleet():
    nodes = S["nodes"]
    app = "cold.app"
    meta, kid, team, _ = nodes[0].new_key(app)
    for n in nodes[1:]:
        wait_for(lambda: listed(n, app, kid), SPREAD_S,
                 "the cold key listed on every node")
    check_eq(len(nodes[0].mint_events(kid)), 0, "mints before")
    barrier = threading.Barrier(CONCURRENT)

    def one(i):
        barrier.wait()
        return nodes[i % len(nodes)].apns(app)

    with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as ex:
        answers = list(ex.map(one, range(CONCURRENT)))
    tokens = set()
    for r in answers:
        a = check_apns_answer(r, kid, team, meta["public_key_pem"],
                              "concurrent cold request")
        tokens.add(a["token"])
    check_eq(len(tokens), 1, "distinct tokens over the fleet")
    check_eq(len(nodes[0].mint_events(kid)), 1,
             "apns.mint events of the cold key")
    waits = sum(n.metrics().get("p8vault_apns_mint_lock_waits_total", 0)
                for n in nodes)
    print("# %d requests over %d nodes: 1 mint, %d waits for the mint "
          "lock" % (CONCURRENT, len(nodes), waits))


def etcd_keys(etcd, start, end):
    """The keys in [start, end) (bytes), asked of a live member."""
    import base64
    body = json.dumps({"key": base64.b64encode(start).decode(),
                       "range_end": base64.b64encode(end).decode(),
                       "keys_only": True}).encode()
    for m in etcd.members:
        if m["proc"] is None:
            continue
        req = urllib.request.Request(
            "http://127.0.0.1:%d/v3/kv/range" % m["client"], data=body,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return [base64.b64decode(kv["key"])
                    for kv in json.loads(r.read()).get("kvs", [])]
    raise TestFailure("no etcd member to ask")


@runner.test
def a_node_killed_holding_the_mint_lock():
    nodes = S["nodes"]
    etcd = S["etcd"]
    app = "dies.app"
    meta, kid, team, _ = nodes[0].new_key(app)
    for n in nodes[1:]:
        wait_for(lambda: listed(n, app, kid), SPREAD_S, "the key listed")
    victim = nodes[1]
    # Node 2's keeper made slow from outside (strace delays every answer
    # it sends by KEEPER_DELAY_S; no hook in p8vault): node 2 vouches for
    # the record, takes the mint lock, then waits for its signature, and
    # is killed with the lock held.
    keeper = victim.d.log_events("keeper_started")[0]["pid"]
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-p", str(keeper),
         "-e", "trace=sendto,sendmsg,sendmmsg,write", "-e",
         "inject=sendto,sendmsg,sendmmsg,write:delay_enter=%d" %
         int(KEEPER_DELAY_S * 1e6)], stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.5)                 # attached
        stuck = threading.Thread(target=lambda: victim.apns(app),
                                 daemon=True)
        stuck.start()
        locks = PREFIX.encode() + b".locks/"
        wait_for(lambda: etcd_keys(etcd, locks, locks[:-1] + b"0"),
                 3 * KEEPER_DELAY_S, "node 2 holding the mint lock")
        victim.d.kill()
    finally:
        tracer.kill()
        tracer.wait()
        try:
            os.kill(keeper, signal.SIGKILL)
        except ProcessLookupError:
            pass
    check(etcd_keys(etcd, locks, locks[:-1] + b"0"),
          "the dead node's lock is there")
    t0 = time.monotonic()
    a = check_apns_answer(nodes[0].apns(app), kid, team,
                          meta["public_key_pem"], "after the holder died")
    took = time.monotonic() - t0
    print("# node 1 minted %.3f s after the lock holder was killed" % took)
    check(took < 8, "the dead holder's lock lasted %.1f s" % took)
    check_eq(len(nodes[0].mint_events(kid)), 1, "mints of the key")
    b = check_apns_answer(nodes[2].apns(app), kid, team,
                          meta["public_key_pem"], "node 3")
    check_eq(b["token"], a["token"], "node 3's token")
    # Node 2 back for the tests that follow.
    d = victim.d
    victim.d = None
    d.close()
    victim.start()


@runner.test
def export_import_verify_across_backends():
    tmp, url, key = S["tmp"], S["etcd"].url(), S["key"]
    n1 = S["nodes"][0]
    out = os.path.join(tmp, "fleet.p8vexport")
    info = json.loads(p8vault("export", "--store", url, "--json", out))
    check(info["entries"] >= 4, "export from etcd: %r" % info)
    p8vault("verify", "--store", url, "--master-key-file", key)
    # Into LMDB.
    lm = os.path.join(tmp, "lmdb")
    os.mkdir(lm, 0o700)
    p8vault("import", "--state", os.path.join(lm, "state"), out)
    p8vault("verify", "--state", os.path.join(lm, "state"),
            "--master-key-file", key)
    p8vault("audit", "verify", "--state", os.path.join(lm, "state"))
    # Into another etcd prefix, and back out to LMDB again.
    url2 = S["etcd"].url(PREFIX + "-copy")
    p8vault("import", "--store", url2, out)
    p8vault("verify", "--store", url2, "--master-key-file", key)
    p8vault("audit", "verify", "--store", url2)
    out2 = os.path.join(tmp, "copy.p8vexport")
    p8vault("export", "--store", url2, out2)
    lm2 = os.path.join(tmp, "lmdb2")
    os.mkdir(lm2, 0o700)
    p8vault("import", "--state", os.path.join(lm2, "state"), out2)
    p8vault("verify", "--state", os.path.join(lm2, "state"),
            "--master-key-file", key)
    # A prefix that is not empty is refused.
    proc = subprocess.run([p8vault.__globals__["cli_path"](), "import",
                           "--store", url2, out], capture_output=True,
                          text=True, timeout=60)
    check_eq(proc.returncode, 1, "import into a used prefix: %r" %
             proc.stderr)
    # The imported key signs in an LMDB node, under its public key.
    shutil.copy2(key, os.path.join(lm, "master.key"))
    v = SignVault(tmp=lm)
    v.tokens = dict(n1.tokens)
    v.start()
    try:
        pub, kid, team = S["fleet"]
        a = check_apns_answer(v.apns("fleet.app"), kid, team, pub,
                              "LMDB node after the import")
        check_eq(a["token"], S["fleet_token"], "the imported cached token")
        r = v.jwt("fleet.app", {"profile": "devicecheck"})
        if r.status == 200:
            verify(pub, r.json["token"])
    finally:
        v.stop()


@runner.test
def etcd_leader_stopped_under_load():
    """The leader killed while every node hands out cached tokens and
    uploads go on: no cached token fails, uploads resume after the
    election, and every upload that was acknowledged is there."""
    etcd = S["etcd"]
    n1, n2, n3 = S["nodes"]
    stop = threading.Event()
    served, failed = [0], []

    def load(n):
        while not stop.is_set():
            r = n.apns("fleet.app")
            if r.status == 200:
                served[0] += 1
            else:
                failed.append(r.status)

    threads = [threading.Thread(target=load, args=(n,), daemon=True)
               for n in (n1, n2, n3) for _ in range(2)]
    for t in threads:
        t.start()
    acked, refused = [], []
    leader = etcd.leader()
    print("# stopping etcd member %d, the leader, under load" % leader)
    try:
        time.sleep(0.3)
        etcd.stop_member(leader)
        t0 = time.monotonic()
        for i in range(6):
            n = (n1, n2, n3)[i % 3]
            key_id, team = "LDR%07d" % i, "LDRTEAM%03d" % i
            r = n.portal("POST", "/v1/apps/leader.app/keys", {
                "key_id": key_id, "team_id": team,
                "p8": __import__("signing").new_p8()})
            if r.status == 201:
                acked.append(key_id)
            else:
                check_eq(r.status, 503, "upload during the election: %r" % r)
                refused.append(key_id)
        print("# 6 uploads in %.3f s after the leader stopped: %d "
              "acknowledged, %d refused (503)" %
              (time.monotonic() - t0, len(acked), len(refused)))
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        etcd.start_member(leader)
        etcd.wait_healthy([leader])
    print("# %d cached tokens served during the election, %d failed" %
          (served[0], len(failed)))
    check_eq(failed, [], "cached tokens that failed")
    check(served[0] > 0, "no token served")
    check(acked, "no upload acknowledged after the election")
    for n in (n1, n2, n3):
        for kid in acked:
            wait_for(lambda: listed(n, "leader.app", kid), 5,
                     "acknowledged upload %s on every node" % kid)
        check_eq(n.apns("fleet.app").status, 200, "apns-token after")


@runner.test
def etcd_down_503_then_recovers():
    etcd = S["etcd"]
    n1, n2, n3 = S["nodes"]
    pub, kid, team = S["fleet"]
    etcd.stop()
    try:
        for i, n in enumerate((n1, n2, n3)):
            a = check_apns_answer(n.apns("fleet.app"), kid, team, pub,
                                  "cached token, etcd down, node %d" % i)
            check_eq(a["token"], S["fleet_token"], "cached token")
        r = n1.portal("POST", "/v1/apps/down.app/keys", {
            "key_id": "DOWNKEY001", "team_id": "DOWNTEAM01",
            "p8": __import__("signing").new_p8()})
        check_error(r, 503, "store_unavailable", "upload with etcd down")
        # After 5 s without a watch, /readyz sends load balancers away;
        # cached tokens are still served.
        wait_for(lambda: n3.d.get("/readyz").status == 503, 8,
                 "/readyz not ready with etcd down")
        r = n3.d.get("/readyz")
        check_eq(r.json.get("reason"), "store_unavailable",
                 "/readyz reason: %r" % r)
        # Both clocks run from the same loss (the prober's may come
        # first): wait for the watch's to pass 5 s too.
        wait_for(lambda: n3.metrics().get(
            "p8vault_store_watch_down_seconds", 0) > 5, 8,
            "watch lag above 5 s in /metrics")
        check_eq(n3.apns("fleet.app").status, 200,
                 "cached token while not ready")
    finally:
        for i in range(MEMBERS):
            etcd.start_member(i)
        etcd.wait_healthy(range(MEMBERS))
    deadline = time.monotonic() + 20
    while True:
        r = n2.portal("POST", "/v1/apps/up.app/keys", {
            "key_id": "UPKEY00001", "team_id": "UPTEAM0001",
            "p8": __import__("signing").new_p8()})
        if r.status == 201:
            break
        check_eq(r.status, 503, "upload while etcd comes back: %r" % r)
        if time.monotonic() > deadline:
            raise TestFailure("uploads did not resume after etcd came back")
        time.sleep(0.2)
    wait_for(lambda: listed(n1, "up.app", "UPKEY00001"), 5,
             "the upload after recovery on another node")
    for n in (n1, n2, n3):
        wait_for(lambda: n.d.get("/readyz").status == 200, 5,
                 "/readyz ready again")
        m = n.metrics()
        check_eq(m.get("p8vault_store_watch_down_seconds"), 0.0,
                 "watch down after recovery")
        check(m.get("p8vault_store_revision", 0) > 0, "mirror revision")
        check(m.get("p8vault_store_round_trips_total", 0) > 0,
              "etcd round trips")
    p8vault("verify", "--store", etcd.url(), "--master-key-file", S["key"])
    p8vault("audit", "verify", "--store", etcd.url())


def b64(b):
    import base64
    return base64.b64encode(b).decode()


def run_cli(*args):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("P8VAULT_")}
    return subprocess.run([p8vault.__globals__["cli_path"]()] + list(args),
                          env=env, capture_output=True, text=True,
                          timeout=60)


@runner.test
def quorum_lost_not_ready_then_back():
    """Two of three members stopped: the third still takes connections
    (a watch may stay open on it) but etcd can neither commit nor read
    linearizably. Every node says not ready within seconds, serves cached
    tokens, refuses uploads with 503, and is back once quorum is."""
    etcd = S["etcd"]
    nodes = S["nodes"]
    pub, kid, team = S["fleet"]
    etcd.stop_member(1)
    etcd.stop_member(2)
    try:
        for i, n in enumerate(nodes):
            took = wait_for(lambda: n.d.get("/readyz").status == 503, 12,
                            "/readyz not ready without quorum")
            print("# node %d not ready %.1f s after quorum was lost" %
                  (i + 1, took))
            check_eq(n.d.get("/readyz").json.get("reason"),
                     "store_unavailable", "reason")
            check_apns_answer(n.apns("fleet.app"), kid, team, pub,
                              "cached token without quorum")
        r = nodes[0].portal("POST", "/v1/apps/noquorum.app/keys", {
            "key_id": "NOQUORUM01", "team_id": "NOQUORUM01",
            "p8": __import__("signing").new_p8()})
        check_error(r, 503, "store_unavailable", "upload without quorum")
    finally:
        etcd.start_member(1)
        etcd.start_member(2)
        etcd.wait_healthy([1, 2])
    for n in nodes:
        wait_for(lambda: n.d.get("/readyz").status == 200, 15,
                 "/readyz ready again with quorum")
    nodes[1].new_key("quorum.app")


@runner.test
def compacted_while_away_reloads():
    """A node that knows only member 0 loses it; the others commit and
    etcd compacts its history past the node's revision; member 0 back,
    the node's watch cannot resume there, so it reloads the prefix and
    sees what it missed."""
    etcd = S["etcd"]
    n1 = S["nodes"][0]
    m0 = "127.0.0.1:%d" % etcd.members[0]["client"]
    url0 = "etcd://%s/%s" % (m0, PREFIX)
    d = os.path.join(S["tmp"], "lonely")
    os.mkdir(d, 0o700)
    lone = Node(url0, S["key"], d, keys=S["keys"])
    lone.tokens = n1.tokens
    lone.start()
    try:
        etcd.stop_member(0)
        meta, kid, team, _ = n1.new_key("away.app")
        n1.new_key("away2.app")
        # Compact everything up to now (asked of a live member): the
        # revision after the node's next one is gone.
        live = etcd.members[1]["client"]
        req = urllib.request.Request(
            "http://127.0.0.1:%d/v3/kv/range" % live,
            data=json.dumps({"key": b64(b"x")}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            rev = int(json.loads(r.read())["header"]["revision"])
        req = urllib.request.Request(
            "http://127.0.0.1:%d/v3/kv/compaction" % live,
            data=json.dumps({"revision": rev, "physical": True}).encode(),
            headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        check(not listed(lone, "away.app", kid), "seen while away")
        # The node held still until member 0 is back and has applied the
        # compaction (a member that just came back serves its old history
        # for a moment, and the watch would simply resume).
        os.kill(lone.d.proc.pid, signal.SIGSTOP)
        try:
            etcd.start_member(0)
            etcd.wait_healthy([0])

            def compacted_on_0():
                req = urllib.request.Request(
                    "http://127.0.0.1:%d/v3/kv/range" %
                    etcd.members[0]["client"],
                    data=json.dumps({"key": b64(b"x"), "revision": 2
                                     }).encode(),
                    headers={"Content-Type": "application/json"})
                try:
                    urllib.request.urlopen(req, timeout=5).read()
                    return False
                except urllib.error.HTTPError as e:
                    return b"compacted" in e.read()
            wait_for(compacted_on_0, 10, "member 0 compacted")
        finally:
            os.kill(lone.d.proc.pid, signal.SIGCONT)
        took = wait_for(lambda: listed(lone, "away.app", kid), 10,
                        "the key committed while away")
        print("# the node reloaded after the compaction, %.1f s after "
              "member 0 was back" % took)
        check(lone.d.log_events("store_etcd_reload"),
              "no store_etcd_reload event")
        check_apns_answer(lone.apns("away.app"), kid, team,
                          meta["public_key_pem"], "after the reload")
        lone.stop()
    finally:
        if lone.d is not None:
            lone.d.close()
        if etcd.members[0]["proc"] is None:
            etcd.start_member(0)
            etcd.wait_healthy([0])


@runner.test
def master_rotate_while_every_node_signs():
    """docs/operations.md's rotation runbook on a cluster: a new key
    reloaded by every node (SIGHUP), `p8vault master rotate` through the
    CLI, then the old key retired: no request fails meanwhile."""
    nodes = S["nodes"]
    url = S["etcd"].url()
    prev, cur = S["keys"]
    meta, kid, team, _ = nodes[0].new_key(
        "rot.app", services=["apns", "devicecheck"])
    for n in nodes[1:]:
        wait_for(lambda: listed(n, "rot.app", kid), SPREAD_S, "listed")
    stop = threading.Event()
    served, failed = [0], []

    def load(n):
        while not stop.is_set():
            for r in (n.apns("fleet.app"), n.apns("rot.app"),
                      n.jwt("rot.app", {"profile": "devicecheck"})):
                if r.status == 200:
                    served[0] += 1
                else:
                    failed.append((r.status, r.body[:100]))

    threads = [threading.Thread(target=load, args=(n,), daemon=True)
               for n in nodes]
    for t in threads:
        t.start()

    def reloads(n):
        return [l["msg"] for l in n.d.log_events("master_key_reload")
                if l["msg"].startswith("master keys reloaded")]

    def reload_all(want):
        for n in nodes:
            before = len(reloads(n))
            n.d.signal(signal.SIGHUP)
            n.d.wait_log(lambda l: len(reloads(n)) > before, 10,
                         "the key reload")
            check_eq(reloads(n)[-1], "master keys reloaded: %d loaded" %
                     want, "the reload")

    try:
        nxt = os.path.join(os.path.dirname(cur), "next.key")
        p8vault("master", "generate", nxt)
        shutil.copy2(cur, prev + ".tmp")
        os.rename(prev + ".tmp", prev)
        os.rename(nxt, cur)
        reload_all(2)
        out = json.loads(p8vault("master", "rotate", "--store", url,
                                 "--master-key-file", prev,
                                 "--new-master-key-file", cur, "--json"))
        print("# master rotate: %r" % {k: out[k] for k in out
                                       if k in ("rewrapped", "batches",
                                                "tokens_rewrapped")})
        st = json.loads(p8vault("master", "status", "--store", url,
                                "--master-key-file", prev,
                                "--master-key-file", cur, "--json"))
        p8vault("verify", "--store", url, "--master-key-file", cur)
        shutil.copy2(cur, prev + ".tmp")
        os.rename(prev + ".tmp", prev)
        reload_all(1)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    S["key"] = cur
    print("# %d requests signed on 3 nodes during the rotation, %d "
          "failed" % (served[0], len(failed)))
    check_eq(failed[:5], [], "requests that failed during the rotation")
    check(served[0] > 0, "nothing signed during the rotation")
    check(json.dumps(st).count("retirable") >= 1, "master status: %r" % st)


@runner.test
def etcd_auth():
    """A one-member etcd with auth on: a user allowed the prefix (and its
    locks) only; p8vault init and a node with --etcd-user and
    --etcd-password-file work, a wrong password or none is refused."""
    tmp = os.path.join(S["tmp"], "auth")
    os.mkdir(tmp, 0o700)
    e = EtcdCluster(tmp, 1).start()
    S["auth_etcd"] = e
    e.api("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
    e.api("/v3/auth/user/grant", {"user": "root", "role": "root"})
    e.api("/v3/auth/user/add", {"name": "p8v", "password": "s3cret pw"})
    e.api("/v3/auth/role/add", {"name": "p8v"})
    for start in (b"pv/", b"pv.locks/"):
        e.api("/v3/auth/role/grant", {"name": "p8v", "perm": {
            "permType": "READWRITE", "key": b64(start),
            "range_end": b64(start[:-1] + b"0")}})
    e.api("/v3/auth/user/grant", {"user": "p8v", "role": "p8v"})
    e.api("/v3/auth/enable", {})
    pw = os.path.join(tmp, "pw")
    with open(pw, "w") as f:
        f.write("s3cret pw\n")
    bad = os.path.join(tmp, "badpw")
    with open(bad, "w") as f:
        f.write("nope\n")
    url = "etcd://127.0.0.1:%d/pv" % e.members[0]["client"]
    key = os.path.join(tmp, "master.key")
    proc = run_cli("init", "--store", url, "--master-key-file", key)
    check_eq(proc.returncode, 1, "init without credentials: %r" %
             proc.stderr)
    proc = run_cli("init", "--store", url, "--master-key-file", key,
                   "--etcd-user", "p8v", "--etcd-password-file", bad)
    check_eq(proc.returncode, 1, "init with a wrong password: %r" %
             proc.stderr)
    p8vault("init", "--store", url, "--master-key-file", key,
            "--etcd-user", "p8v", "--etcd-password-file", pw)
    d = os.path.join(tmp, "node")
    os.mkdir(d, 0o700)
    n = Node(url, key, d)
    n.d = Daemon(tmpdir=d, cwd=d, args=[
        "--store", url, "--master-key-file", key, "--sign-listen",
        "127.0.0.1:0"], env={"P8VAULT_ETCD_USER": "p8v",
                             "P8VAULT_ETCD_PASSWORD_FILE": pw})
    n.d.start()
    try:
        for l in n.d.logs:
            if l.get("event") == "listening" and \
                    l.get("listener") == "sign" and "port" in l:
                n.sign_port = l["port"]
        out = run_cli("token", "create", "--store", url, "--role", "portal",
                      "--json", "--etcd-user", "p8v",
                      "--etcd-password-file", pw)
        check_eq(out.returncode, 0, "token create: %r" % out.stderr)
        n.tokens[("portal", ())] = json.loads(out.stdout)["token"]
        out = run_cli("token", "create", "--store", url, "--role", "signer",
                      "--json", "--etcd-user", "p8v",
                      "--etcd-password-file", pw)
        n.tokens[("signer", ())] = json.loads(out.stdout)["token"]
        meta, kid, team, _ = n.new_key("auth.app")
        check_apns_answer(n.apns("auth.app"), kid, team,
                          meta["public_key_pem"], "token with etcd auth")
        n.d.stop()
    finally:
        n.d.close()
        e.stop()
    # Nothing readable without a token.
    e.start()
    try:
        req = urllib.request.Request(
            "http://127.0.0.1:%d/v3/kv/range" % e.members[0]["client"],
            data=json.dumps({"key": b64(b"pv/"), "range_end": b64(b"pv0")
                             }).encode(),
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                body = json.loads(r.read())
            check("kvs" not in body, "read without a token: %r" % body)
        except urllib.error.HTTPError:
            pass
    finally:
        e.stop()


def openssl(*args):
    proc = subprocess.run(["openssl"] + list(args), capture_output=True,
                          text=True, timeout=60)
    check_eq(proc.returncode, 0, "openssl %s: %s" % (args[0], proc.stderr))


def make_pki(d):
    """A test CA, a server certificate for 127.0.0.1 (also usable as a
    client: etcd's gateway dials etcd with it) and a client certificate."""
    ca, cakey = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", cakey, "-out",
            ca, "-subj", "/CN=p8v test etcd CA", "-days", "2")
    out = {}
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        key, csr = os.path.join(d, name + ".key"), os.path.join(d, name +
                                                               ".csr")
        pem, extf = os.path.join(d, name + ".pem"), os.path.join(d, name +
                                                                ".ext")
        with open(extf, "w") as f:
            f.write(ext)
        openssl("req", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out",
                csr, "-subj", "/CN=p8v-" + name)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey,
                "-CAcreateserial", "-out", pem, "-days", "2", "-extfile",
                extf)
        out[name] = (pem, key)
    return ca, out["server"], out["client"]


@runner.test
def etcd_tls():
    """etcd on https with client certificates: init, the CLI and a node
    with --etcd-cacert/--etcd-cert/--etcd-key; refused without the client
    certificate or without the CA."""
    tmp = os.path.join(S["tmp"], "tls")
    os.mkdir(tmp, 0o700)
    ca, server, client = make_pki(tmp)
    e = EtcdCluster(tmp, 1, tls=(ca, server[0], server[1])).start()
    S["tls_etcd"] = e
    url = "etcd://127.0.0.1:%d/pvt" % e.members[0]["client"]
    key = os.path.join(tmp, "master.key")
    opts = ["--etcd-cacert", ca, "--etcd-cert", client[0], "--etcd-key",
            client[1]]
    try:
        proc = run_cli("init", "--store", url, "--master-key-file", key,
                       "--etcd-cacert", ca)
        check_eq(proc.returncode, 1, "init without a client certificate: "
                 "%r" % proc.stderr)
        proc = run_cli("init", "--store", url, "--master-key-file", key,
                       "--etcd-cert", client[0], "--etcd-key", client[1])
        check_eq(proc.returncode, 1, "init without the CA: %r" %
                 proc.stderr)
        p8vault("init", "--store", url, "--master-key-file", key, *opts)
        d = os.path.join(tmp, "node")
        os.mkdir(d, 0o700)
        n = Node(url, key, d)
        n.d = Daemon(tmpdir=d, cwd=d, args=[
            "--store", url, "--master-key-file", key, "--sign-listen",
            "127.0.0.1:0"] + opts)
        n.d.start()
        try:
            for l in n.d.logs:
                if l.get("event") == "listening" and \
                        l.get("listener") == "sign" and "port" in l:
                    n.sign_port = l["port"]
            for role in ("portal", "signer"):
                out = run_cli("token", "create", "--store", url, "--role",
                              role, "--json", *opts)
                check_eq(out.returncode, 0, "token create: %r" % out.stderr)
                n.tokens[(role, ())] = json.loads(out.stdout)["token"]
            meta, kid, team, _ = n.new_key("tls.app")
            check_apns_answer(n.apns("tls.app"), kid, team,
                              meta["public_key_pem"], "token over TLS")
            n.d.stop()
        finally:
            n.d.close()
        p8vault("verify", "--store", url, "--master-key-file", key, *opts)
    finally:
        e.stop()


@runner.test
def nodes_stop_cleanly():
    for n in S.get("nodes", []):
        n.stop()
    S["nodes"] = []


def cleanup():
    for n in S.get("nodes", []):
        try:
            n.d.kill()
        except Exception:
            pass
    for k in ("etcd", "auth_etcd", "tls_etcd"):
        if k in S:
            S[k].stop()
    if "tmp" in S:
        shutil.rmtree(S["tmp"], ignore_errors=True)


if __name__ == "__main__":
    try:
        runner.main()
    finally:
        cleanup()
