#!/usr/bin/python3
"""test_providers.py: the provider examples (examples/node/provider.mjs,
examples/python/provider.py) against a real p8vaultd and a test APNs.

The test APNs (tests/apns_server.mjs, node's http2 module) speaks HTTP/2
over TLS on loopback with a self-signed certificate made here with the
openssl command, knows the (team, Key ID, public key) of the keys uploaded
to p8vault, checks provider tokens as Apple documents them and answers 200
with an apns-id; it counts per team the pushes it accepted, the distinct
tokens it saw and the HTTP/2 sessions they came on.

Two teams: team A's key serves two apps, team B's key one. Each example
sends pushes for all three apps, one over the signing socket and one over
--sign-listen (TCP), and the test checks: every push 200; one token per
team at the APNs across both examples (p8vault's shared token); one HTTP/2
session per team and example (reused, and one per (team, key), not per
app); one request to p8vault per app, not per push (and with --refresh 0,
one per push and still one token per team: the sharing is p8vault's, not
the example's cache). Then the test APNs refuses the current token once (403 InvalidProviderToken, then
ExpiredProviderToken): each example reports it to p8vault as docs/api.md
says (p8vault logs apns_token_rejected, counts the report, and hands back
the same token within 20 minutes) and retries once, with success. A first
case shows the test APNs itself refuses what Apple refuses, so that its
"200" means something.

Needs node, and httpx with h2 (Debian python3-httpx python3-h2) for the
Python example and the first case; run with /usr/bin/python3.
"""

import base64
import http.client
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, TestFailure, check, check_eq, https_context  # noqa
from signing import SignVault, apple_id, new_p8, TOOL_TIMEOUT_S  # noqa
import httpx  # noqa
from cryptography.hazmat.primitives import hashes, serialization  # noqa
from cryptography.hazmat.primitives.asymmetric import ec, utils  # noqa

runner = Runner("test_providers")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SERVER = os.path.join(ROOT, "tests", "apns_server.mjs")
NODE_EXAMPLE = os.path.join(ROOT, "examples", "node", "provider.mjs")
PY_EXAMPLE = os.path.join(ROOT, "examples", "python", "provider.py")
# An example sends a few pushes on loopback: seconds at most; bounds a hang.
EXAMPLE_TIMEOUT_S = 60
# Pushes per app and example run.
PUSHES_PER_APP = 3
APPS = {"com.alpha.app": "A", "com.alpha.other": "A", "com.beta.app": "B"}
APNS_TOKEN_ROUTE = '/v1/apps/{app}/apns-token'

S = {}   # the shared set-up: vault, APNs, keys (made by setup())


def run(*argv):
    proc = subprocess.run(list(argv), capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    if proc.returncode != 0:
        raise TestFailure("%s: %s" % (argv[0], proc.stderr[:500]))
    return proc.stdout


class Apns:
    """The test APNs process."""

    def __init__(self, tmp):
        self.cert = os.path.join(tmp, "apns.pem")
        key = os.path.join(tmp, "apns.key")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", self.cert, "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1")
        self.proc = subprocess.Popen(["node", SERVER, self.cert, key],
                                     stdout=subprocess.PIPE, text=True)
        first = json.loads(self.proc.stdout.readline() or "{}")
        check("port" in first, "the test APNs did not start: %r" % first)
        self.port = first["port"]
        self.url = "https://127.0.0.1:%d" % self.port

    def control(self, method, path, body=None):
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=10,
            context=https_context(self.cert))
        try:
            conn.request(method, path, body=json.dumps(body or {}),
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            data = json.loads(r.read())
            check_eq(r.status, 200, "test APNs %s %s: %r" % (method, path,
                                                              data))
            return data
        finally:
            conn.close()

    def stats(self):
        return self.control("GET", "/test/stats")["stats"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def setup():
    if S:
        return S
    v = SignVault().start()
    S["vault"] = v
    apns = Apns(v.tmp)
    S["apns"] = apns
    teams = {}
    for label in ("A", "B", "D"):
        key_id, team_id, pem = apple_id(), apple_id(), new_p8()
        pub = serialization.load_pem_private_key(
            pem.encode(), None).public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        apns.control("POST", "/test/keys", {
            "team": team_id, "key_id": key_id, "public_key_pem": pub})
        teams[label] = {"team_id": team_id, "key_id": key_id, "pem": pem}
    # Team D's key stays with the test, which signs its own tokens with it.
    for app, label in APPS.items():
        t = teams[label]
        v.upload(app, t["key_id"], t["team_id"], t["pem"])
    S["teams"] = teams
    S["token_file"] = os.path.join(v.tmp, "signer.token")
    with open(S["token_file"], "w") as f:
        f.write(v.token("signer", list(APPS)) + "\n")
    return S


def device():
    return "%064x" % random.getrandbits(256)


def run_example(which, apps, n, tcp=False, args=()):
    """Run an example with n pushes per app; returns its result lines."""
    s = setup()
    v = s["vault"]
    pushes = os.path.join(v.tmp, "pushes-%s.jsonl" % which)
    with open(pushes, "w") as f:
        for i in range(n):
            for app in apps:
                f.write(json.dumps({"app": app, "device": device(),
                                    "payload": {"aps": {"alert": str(i)}}})
                        + "\n")
    argv = ["node", NODE_EXAMPLE] if which == "node" else \
        ["/usr/bin/python3", PY_EXAMPLE]
    argv += ["--apns-url", s["apns"].url, "--ca", s["apns"].cert,
             "--token-file", s["token_file"], "--pushes", pushes]
    if tcp:
        argv += ["--sign-url", "http://127.0.0.1:%d" % v.sign_port]
    else:
        argv += ["--socket", v.d.sock_path]
    env = {k: val for k, val in os.environ.items()
           if not k.startswith(("P8V_", "APNS_"))}
    proc = subprocess.run(argv + list(args), capture_output=True, text=True,
                          timeout=EXAMPLE_TIMEOUT_S, env=env)
    print("%s example stderr: %s" % (which, proc.stderr), file=sys.stderr)
    lines = [json.loads(l) for l in proc.stdout.splitlines()]
    check_eq(len(lines), n * len(apps), "%s: result lines" % which)
    for line in lines:
        check_eq(line.get("status"), 200, "%s: push %r" % (which, line))
        t = s["teams"][APPS[line["app"]]]
        check_eq((line["team_id"], line["key_id"]),
                 (t["team_id"], t["key_id"]), "%s: ids of %s" % (
                     which, line["app"]))
        check(len(line.get("apns_id") or "") == 36,
              "%s: no apns-id: %r" % (which, line))
    check_eq(proc.returncode, 0, "%s example exit status" % which)
    return lines


def vault_counts():
    """(apns-token requests answered 200, rejection reports) so far."""
    v = setup()["vault"]
    m = v.metrics()
    asks = sum(val for k, val in m.items()
               if k.startswith("p8vault_http_requests_total{") and
               'route="%s"' % APNS_TOKEN_ROUTE in k and 'code="200"' in k)
    return asks, m.get("p8vault_apns_token_rejection_reports_total", 0)


def settled_counts(want_asks, want_reports):
    """vault_counts() once they reach the wanted numbers (a request is
    counted when its connection is done with), or what they are after a
    few seconds."""
    deadline = time.monotonic() + 10
    while True:
        got = vault_counts()
        if got == (want_asks, want_reports) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def team_stats(label):
    s = setup()
    return s["apns"].stats().get(s["teams"][label]["team_id"], {})


# -- tokens the test signs itself, for the test APNs's own checks ----------

def b64url(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def make_token(pem, kid, iss, iat, alg="ES256"):
    key = serialization.load_pem_private_key(pem.encode(), None)
    head = b64url(json.dumps({"alg": alg, "kid": kid}).encode())
    body = b64url(json.dumps({"iss": iss, "iat": iat}).encode())
    der = key.sign((head + "." + body).encode(), ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    return head + "." + body + "." + b64url(r.to_bytes(32, "big") +
                                            s.to_bytes(32, "big"))


def push_with(client, token, topic="com.delta.app"):
    h = {"apns-topic": topic, "apns-push-type": "alert"}
    if token is not None:
        h["authorization"] = "bearer " + token
    r = client.post("/3/device/" + device(), headers=h,
                    content=b'{"aps":{"alert":"x"}}')
    check_eq(r.http_version, "HTTP/2", "the test APNs speaks HTTP/2")
    return r.status_code, (r.json().get("reason") if r.content else None)


@runner.test
def apns_server_refuses_what_apple_refuses():
    s = setup()
    d, other = s["teams"]["D"], s["teams"]["A"]
    now = int(time.time())
    good = make_token(d["pem"], d["key_id"], d["team_id"], now)
    with httpx.Client(base_url=s["apns"].url, http2=True,
                      verify=s["apns"].cert) as c:
        check_eq(push_with(c, None), (403, "MissingProviderToken"),
                 "no token")
        check_eq(push_with(c, "not.a-token"), (403, "InvalidProviderToken"),
                 "garbage")
        check_eq(push_with(c, make_token(d["pem"], d["key_id"], d["team_id"],
                                         now, alg="ES384")),
                 (403, "InvalidProviderToken"), "alg ES384")
        check_eq(push_with(c, make_token(d["pem"], d["key_id"],
                                         other["team_id"], now)),
                 (403, "InvalidProviderToken"), "kid of another team")
        check_eq(push_with(c, make_token(other["pem"], d["key_id"],
                                         d["team_id"], now)),
                 (403, "InvalidProviderToken"), "signed by another key")
        check_eq(push_with(c, make_token(d["pem"], d["key_id"], d["team_id"],
                                         now - 3700)),
                 (403, "ExpiredProviderToken"), "iat over an hour old")
        check_eq(push_with(c, good), (200, None), "a good token")
        check_eq(push_with(c, good), (200, None), "the same token again")
        check_eq(push_with(c, make_token(d["pem"], d["key_id"], d["team_id"],
                                         now - 1)),
                 (429, "TooManyProviderTokenUpdates"),
                 "a second token of the team within 20 minutes")
        # Bad requests with a good token.
        r = c.post("/3/device/" + device(), content=b'{"aps":{}}',
                   headers={"authorization": "bearer " + good,
                            "apns-push-type": "alert"})
        check_eq((r.status_code, r.json()["reason"]), (400, "MissingTopic"),
                 "no apns-topic")
        check(r.headers.get("apns-id"), "an error carries an apns-id")
        r = c.post("/3/device/abc", content=b'{"aps":{}}',
                   headers={"authorization": "bearer " + good,
                            "apns-topic": "t", "apns-push-type": "alert"})
        check_eq((r.status_code, r.json()["reason"]), (400, "BadDeviceToken"),
                 "short device token")
        # One team per connection: this connection is team D's.
        a = setup()["vault"].apns("com.alpha.app").json["token"]
        check_eq(push_with(c, a), (403, "InvalidProviderToken"),
                 "a second team on one connection")
    st = team_stats("D")
    check_eq((st["pushes"], st["tokens"], st["sessions"]), (2, 1, 1),
             "team D at the test APNs")


@runner.test
def node_example_pushes_for_two_teams():
    asks, reports = vault_counts()
    run_example("node", list(APPS), PUSHES_PER_APP)
    for label, apps in (("A", 2), ("B", 1)):
        st = team_stats(label)
        check_eq(st.get("pushes"), apps * PUSHES_PER_APP,
                 "pushes of team %s" % label)
        check_eq(st.get("tokens"), 1, "tokens of team %s" % label)
        check_eq(st.get("sessions"), 1,
                 "HTTP/2 sessions of team %s (one per team and key)" % label)
    check_eq(settled_counts(asks + len(APPS), reports),
             (asks + len(APPS), reports),
             "p8vault asked once per app (apns-token answers, reports)")


@runner.test
def python_example_pushes_for_two_teams():
    asks, reports = vault_counts()
    before = {l: team_stats(l) for l in ("A", "B")}
    run_example("python", list(APPS), PUSHES_PER_APP, tcp=True)
    for label, apps in (("A", 2), ("B", 1)):
        st = team_stats(label)
        check_eq(st.get("pushes") - before[label].get("pushes", 0),
                 apps * PUSHES_PER_APP, "pushes of team %s" % label)
        check_eq(st.get("tokens"), 1,
                 "tokens of team %s, across both examples" % label)
        check_eq(st.get("sessions") - before[label].get("sessions", 0), 1,
                 "HTTP/2 sessions of team %s (one per team and key)" % label)
    check_eq(settled_counts(asks + len(APPS), reports),
             (asks + len(APPS), reports),
             "p8vault asked once per app (apns-token answers, reports)")


@runner.test
def asking_for_every_push_still_gives_one_token_per_team():
    # --refresh 0: the example asks p8vault before every push; the shared
    # token, not the example's cache, keeps APNs at one token per team.
    asks, reports = vault_counts()
    run_example("node", list(APPS), 2, args=["--refresh", "0"])
    for label in ("A", "B"):
        check_eq(team_stats(label).get("tokens"), 1,
                 "tokens of team %s" % label)
    check_eq(settled_counts(asks + 2 * len(APPS), reports),
             (asks + 2 * len(APPS), reports),
             "p8vault asked once per push (apns-token answers, reports)")


def rejected_once(which, reason, tcp):
    s = setup()
    v = s["vault"]
    asks, reports = vault_counts()
    before = team_stats("A")
    rejections = len(v.d.log_events("apns_token_rejected"))
    invalid = len(v.d.log_events("apns_token_invalid"))
    s["apns"].control("POST", "/test/reject", {
        "team": s["teams"]["A"]["team_id"], "reason": reason, "count": 1})
    lines = run_example(which, ["com.alpha.app"], 2, tcp=tcp)
    check_eq([l.get("retried") for l in lines], [True, None],
             "the first push was retried, the second was not")
    st = team_stats("A")
    check_eq(st["refused"].get(reason, 0) -
             before.get("refused", {}).get(reason, 0), 1,
             "refusals at the test APNs")
    check_eq(st["pushes"] - before["pushes"], 2, "pushes accepted")
    check_eq(st["tokens"], 1, "still one token for the team")
    check_eq(st["sessions"] - before["sessions"], 1, "HTTP/2 sessions")
    # Asked once for the token and once with the report.
    check_eq(settled_counts(asks + 2, reports + 1), (asks + 2, reports + 1),
             "p8vault's apns-token answers and rejection reports")
    v.d.wait_log(lambda l: len(v.d.log_events("apns_token_rejected")) >
                 rejections, 10, "apns_token_rejected")
    ev = v.d.log_events("apns_token_rejected")[-1]
    check_eq((ev.get("app"), ev.get("key_id"), ev.get("reason")),
             ("com.alpha.app", s["teams"]["A"]["key_id"], reason),
             "p8vault's log of the report")
    # For the current token (exactly the one APNs refused), p8vault also
    # warns that the key may be revoked at Apple.
    if reason == "InvalidProviderToken":
        v.d.wait_log(lambda l: len(v.d.log_events("apns_token_invalid")) >
                     invalid, 10, "apns_token_invalid")


@runner.test
def node_example_reports_an_invalid_token():
    rejected_once("node", "InvalidProviderToken", tcp=True)


@runner.test
def python_example_reports_an_invalid_token():
    rejected_once("python", "InvalidProviderToken", tcp=False)


@runner.test
def node_example_reports_an_expired_token():
    rejected_once("node", "ExpiredProviderToken", tcp=False)


@runner.test
def python_example_reports_an_expired_token():
    rejected_once("python", "ExpiredProviderToken", tcp=True)


def main():
    try:
        runner.main()
    finally:
        if "apns" in S:
            S["apns"].close()
        if "vault" in S:
            S["vault"].close()


if __name__ == "__main__":
    main()
