#!/usr/bin/python3
"""test_metrics.py: GET /metrics of the real p8vaultd, as Prometheus reads
it (issue 16).

- After traffic (uploads, one refused, APNs tokens minted and from the
  cache, a token for an unknown app, /jwt) the scrape passes `promtool
  check metrics` (Debian's prometheus package) without a word of output;
  the series the alert rules need are there with sensible values (keeper
  up, no restart, store up, LMDB bytes used under the limit, the record
  count and its quota, the reuse period, the oldest token age); every name
  in dist/prometheus/p8vault-alerts.yml is one the daemon exports.
- The keeper killed while its key file is unsafe (it cannot start again):
  p8vault_keeper_up 0, a token request that needs the keeper counts in
  p8vault_apns_token_failures_total, promtool still content; the file
  fixed, keeper_up 1 again and p8vault_keeper_restarts_total 1; a plain
  kill -9 counts one more restart.
- On an etcd store (one etcd-server member on loopback): promtool content,
  p8vault_store_up 1 and no LMDB series; etcd stopped, p8vault_store_up 0
  and p8vault_store_watch_down_seconds above 0; etcd back, up again.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, TestFailure, check, check_eq  # noqa
from signing import SignVault, apple_id, new_p8, p8vault  # noqa
from test_keeper_process import keeper_of  # noqa

runner = Runner("test_metrics")

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
TOOL_TIMEOUT_S = 60
MAX_RECORDS = 50
SETTLE_S = 10


def source_root():
    return os.environ.get("P8V_SOURCE_ROOT") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def alerts_file():
    return os.path.join(source_root(), "dist", "prometheus",
                        "p8vault-alerts.yml")


def scrape(v):
    """The raw text of GET /metrics."""
    r = v.sign("/metrics", method="GET")
    check_eq(r.status, 200, "GET /metrics: %r" % r)
    return r.body.decode("utf-8")


def promtool_clean(text, what):
    """promtool check metrics on text: exit 0 and no output at all (a
    lint warning is output with exit 0 in some versions)."""
    check(os.access(PROMTOOL, os.X_OK),
          "no promtool: apt-get install prometheus")
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                          capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    check(proc.returncode == 0 and not proc.stdout.strip() and
          not proc.stderr.strip(),
          "promtool check metrics (%s): exit %d: %s%s" %
          (what, proc.returncode, proc.stdout, proc.stderr))


def families(text):
    """{family name: type} from the # TYPE lines."""
    out = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            out[name] = kind
    return out


def conventions(text):
    """What promtool does not check: counters end in _total and nothing
    else does; no unit but the base ones; snake_case label names."""
    for name, kind in families(text).items():
        check(re.fullmatch(r"p8vault_[a-z0-9_]+", name),
              "family name %r" % name)
        check((kind == "counter") == name.endswith("_total"),
              "%s is a %s" % (name, kind))
        for unit in ("milliseconds", "_ms", "microseconds", "kilobytes",
                     "megabytes", "minutes", "hours"):
            check(unit not in name, "%s: not a base unit" % name)
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        labels = line[line.index("{") + 1:line.rindex("}")]
        for lname in re.findall(r'([^=,]+)="', labels):
            check(re.fullmatch(r"[a-z][a-z0-9_]*", lname),
                  "label name %r in %r" % (lname, line))


def samples(text):
    from signing import parse_metrics
    return parse_metrics(text)


def settled(v, want, what):
    deadline = time.monotonic() + SETTLE_S
    while True:
        text = scrape(v)
        m = samples(text)
        if want(m):
            return text, m
        if time.monotonic() > deadline:
            raise TestFailure("metrics never showed %s: %r" % (
                what, {k: x for k, x in m.items()
                       if "keeper" in k or "store" in k}))
        time.sleep(0.05)


@runner.test
def scrape_after_traffic_passes_promtool():
    v = SignVault(extra_args=["--max-records", str(MAX_RECORDS)])
    try:
        v.start()
        promtool_clean(scrape(v), "a fresh daemon")
        _, kid, team, _ = v.new_key("m.app", services=["apns", "musickit"])
        v.new_key("n.app")
        r = v.portal("POST", "/v1/apps/m.app/keys",
                     {"key_id": "short", "team_id": team, "p8": new_p8()})
        check(r.status >= 400, "a bad upload: %r" % r)
        for _ in range(3):
            check_eq(v.apns("m.app").status, 200, "an APNs token")
        check_eq(v.apns("nobody.app").status, 404, "an unknown app")
        check_eq(v.jwt("m.app", {"profile": "musickit"}).status, 200,
                 "/jwt")
        check_eq(v.jwt("m.app", {"profile": "nope"}).status, 422,
                 "/jwt, an unknown profile")
        text, m = settled(v, lambda m: m.get(
            'p8vault_http_requests_total{route="/v1/apps/{app}/jwt",'
            'code="422"}') == 1, "the /jwt refusal")
        promtool_clean(text, "after traffic")
        conventions(text)
        check_eq(m.get("p8vault_keeper_up"), 1.0, "keeper_up")
        check_eq(m.get("p8vault_keeper_restarts_total"), 0.0,
                 "keeper restarts")
        check_eq(m.get("p8vault_store_up"), 1.0, "store_up")
        used = m.get("p8vault_store_used_bytes", 0)
        check(used > 0, "store used bytes: %r" % used)
        check(used < m.get("p8vault_store_max_bytes", 0),
              "used %r under the limit %r" % (
                  used, m.get("p8vault_store_max_bytes")))
        check_eq(m.get("p8vault_store_records"), 2.0, "records")
        check_eq(m.get("p8vault_store_max_records"), float(MAX_RECORDS),
                 "the records quota")
        check_eq(m.get("p8vault_apns_token_reuse_period_seconds"), 3000.0,
                 "reuse period")
        age = m.get("p8vault_apns_token_oldest_age_seconds")
        check(age is not None and 0 <= age < 60, "oldest age %r" % age)
        check_eq(m.get('p8vault_apns_token_mints_total{reason="cold"}'),
                 1.0, "cold mints")
        check_eq(m.get("p8vault_apns_token_cache_hits_total"), 2.0, "hits")
        check(sum(x for k, x in m.items() if k.startswith(
            "p8vault_upload_rejections_total")) >= 1, "a rejection")
        # Every series the alert rules read is exported (the etcd ones
        # on an etcd store: etcd_store_unreachable below).
        with open(alerts_file()) as f:
            used_names = set(re.findall(r"\bp8vault_[a-z0-9_]+",
                                        f.read()))
        etcd_only = {"p8vault_store_watch_down_seconds"}
        missing = sorted(n for n in used_names - etcd_only
                         if n not in families(text))
        check(not missing, "alert rules read series /metrics lacks: %r"
              % missing)
        check(used_names > {"p8vault_keeper_up",
                            "p8vault_apns_token_oldest_age_seconds"},
              "the rules file: %r" % used_names)
        v.stop()
    finally:
        v.close()


@runner.test
def keeper_up_follows_the_keeper():
    v = SignVault()
    try:
        v.start()
        v.new_key("k.app")
        v.new_key("cold.app")
        check_eq(v.apns("k.app").status, 200, "a token")
        text, m = settled(v, lambda m: m.get("p8vault_keeper_up") == 1,
                          "keeper up")
        check_eq(m.get("p8vault_apns_token_failures_total"), 0.0,
                 "failures before")
        before = keeper_of(v.d.proc.pid)
        os.chmod(v.key, 0o644)          # refused by the keeper: its mode
        os.kill(before, signal.SIGKILL)
        text, m = settled(v, lambda m: m.get("p8vault_keeper_up") == 0,
                          "keeper_up 0")
        # A key with no token yet needs the keeper: refused, counted.
        check_eq(v.apns("cold.app").status, 503, "a mint without a keeper")
        text, m = settled(v, lambda m: m.get(
            "p8vault_apns_token_failures_total", 0) >= 1, "the failure")
        promtool_clean(text, "keeper down")
        check_eq(m.get("p8vault_keeper_up"), 0.0, "keeper_up while down")
        check_eq(m.get("p8vault_keeper_restarts_total"), 0.0,
                 "restarts while none could start")
        os.chmod(v.key, 0o600)
        text, m = settled(v, lambda m: m.get("p8vault_keeper_up") == 1,
                          "keeper_up 1 again")
        check_eq(m.get("p8vault_keeper_restarts_total"), 1.0, "restarts")
        check(keeper_of(v.d.proc.pid) != before, "a new keeper")
        # A plain kill -9: started again at once, counted.
        os.kill(keeper_of(v.d.proc.pid), signal.SIGKILL)
        text, m = settled(v, lambda m: m.get(
            "p8vault_keeper_restarts_total") == 2 and
            m.get("p8vault_keeper_up") == 1, "a second restart")
        promtool_clean(text, "after restarts")
        check_eq(v.apns("cold.app").status, 200, "a mint again")
        v.stop()
    finally:
        v.close()


@runner.test
def etcd_store_unreachable():
    from test_etcd import ETCD, EtcdCluster, Node
    check(os.access(ETCD, os.X_OK), "no %s: apt-get install etcd-server"
          % ETCD)
    tmp = tempfile.mkdtemp(prefix="p8v-metrics-etcd-")
    etcd = node = None
    try:
        etcd = EtcdCluster(tmp, n=1).start()
        url = etcd.url()
        key = os.path.join(tmp, "master.key")
        p8vault("init", "--store", url, "--master-key-file", key)
        d = os.path.join(tmp, "node")
        os.mkdir(d, 0o700)
        node = Node(url, key, d).start()
        node.new_key("e.app")
        check_eq(node.apns("e.app").status, 200, "a token")
        text, m = settled(node, lambda m: m.get("p8vault_store_up") == 1,
                          "store up")
        promtool_clean(text, "an etcd store")
        conventions(text)
        check_eq(m.get("p8vault_store_records"), 1.0, "records")
        check("p8vault_store_used_bytes" not in m,
              "LMDB bytes on an etcd store")
        check_eq(m.get("p8vault_store_watch_down_seconds"), 0.0,
                 "watch down while up")
        etcd.stop()
        # /readyz and store_up say not ready after 5 s.
        deadline = time.monotonic() + 15
        while True:
            text = scrape(node)
            m = samples(text)
            if m.get("p8vault_store_up") == 0:
                break
            if time.monotonic() > deadline:
                raise TestFailure("p8vault_store_up never 0: %r" % m.get(
                    "p8vault_store_up"))
            time.sleep(0.2)
        promtool_clean(text, "etcd down")
        check(m.get("p8vault_store_watch_down_seconds", 0) > 0,
              "watch down seconds: %r" % m.get(
                  "p8vault_store_watch_down_seconds"))
        etcd.start()
        text, m = settled(node, lambda m: m.get("p8vault_store_up") == 1,
                          "store up again")
        check_eq(m.get("p8vault_store_watch_down_seconds"), 0.0,
                 "watch down after recovery")
        node.stop()
    finally:
        if node is not None:
            node.stop()
        if etcd is not None:
            etcd.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@runner.test
def alert_rules_pass_promtool():
    check(os.access(PROMTOOL, os.X_OK),
          "no promtool: apt-get install prometheus")
    rules = alerts_file()
    tests = rules.replace(".yml", ".test.yml")
    for args in (["check", "rules", rules], ["test", "rules", tests]):
        proc = subprocess.run([PROMTOOL] + args, capture_output=True,
                              text=True, timeout=TOOL_TIMEOUT_S)
        check(proc.returncode == 0, "promtool %s: exit %d: %s%s" % (
            " ".join(args[:2]), proc.returncode, proc.stdout, proc.stderr))
    # Every alert has its tests, a for:, a severity and a runbook.
    import yaml
    with open(rules) as f:
        groups = yaml.safe_load(f)["groups"]
    with open(tests) as f:
        tested = {t["alertname"] for case in yaml.safe_load(f)["tests"]
                  for t in case.get("alert_rule_test", [])}
    with open(os.path.join(source_root(), "docs", "operations.md")) as f:
        ops = f.read()
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    check(len(alerts) >= 5, "alerts: %d" % len(alerts))
    for r in alerts:
        name = r["alert"]
        check(name in tested, "%s has no promtool test" % name)
        check("for" in r, "%s has no for:" % name)
        check(r.get("labels", {}).get("severity") in ("warning",
                                                      "critical"),
              "%s: severity" % name)
        a = r.get("annotations", {})
        check(a.get("summary") and "docs/operations.md" in
              a.get("description", ""), "%s: annotations" % name)
        check("#### %s" % name in ops, "%s: no runbook in "
              "docs/operations.md" % name)


if __name__ == "__main__":
    runner.main()
