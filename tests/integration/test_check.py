#!/usr/bin/python3
"""test_check.py: the key check with Apple, end to end, against a mock APNs.

The mock (tests/apns_mock.mjs, node's http2 module) speaks HTTP/2 over
TLS on loopback with a certificate from a throwaway CA made here with the
openssl command. It verifies provider tokens as Apple documents them (ES256
over the registered public key, kid and iss of a registered key, iat age,
one team per connection, no second token of a team within 20 minutes) and
knows which (team, Key ID, public key, environment, topics) exist; a
request it accepts gets 400 BadDeviceToken.

Covered: a good key is ok (and GET, the audit log and `p8vault keys check`
show it); both environments of a "both" key with one token; swapped Key ID
and Team ID; a key registered for the other environment; a topic outside
the key's topics; a key revoked at Apple; the token is the signing API's
shared token (one mint, one token per team at the mock); "check": true
stores nothing on failure (422 apple_check_failed) and stores the key with
its results and its first shared token on success; a closed port (502
apple_unreachable); a server that never answers (504 apple_timeout); a
certificate the CA file does not vouch for (502); a key without "apns";
no topic to use; who may call.
"""

import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, TestFailure, check, check_eq  # noqa
from signing import (SignVault, apple_id, audit_events, check_error,  # noqa
                     cli_path, new_p8, verify, TOOL_TIMEOUT_S)

runner = Runner("test_check")
HERE = os.path.dirname(os.path.abspath(__file__))
MOCK = os.path.join(os.path.dirname(HERE), "apns_mock.mjs")
# The mock answers within milliseconds; this bounds a hang.
MOCK_TIMEOUT_S = 20
# The daemon's default request timeout for the check (apns_client.h).
CHECK_TIMEOUT_S = 5

MOCK_P = None
V = None
V_BAD = None


def run(*argv):
    proc = subprocess.run(list(argv), capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    if proc.returncode != 0:
        raise TestFailure("%s: %s" % (argv[0], proc.stderr[:500]))
    return proc.stdout


def make_certs(tmp):
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it;
    and a second, unrelated CA."""
    p = {n: os.path.join(tmp, n) for n in (
        "ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem", "ext",
        "other.key", "other.pem")}
    for key, cert, cn in (("ca.key", "ca.pem", "p8vault test CA"),
                          ("other.key", "other.pem", "unrelated CA")):
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", p[key],
            "-out", p[cert], "-days", "2", "-subj", "/CN=" + cn)
    run("openssl", "req", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-nodes", "-keyout", p["srv.key"],
        "-out", p["srv.csr"], "-subj", "/CN=127.0.0.1")
    with open(p["ext"], "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", p["srv.csr"], "-CA", p["ca.pem"],
        "-CAkey", p["ca.key"], "-CAcreateserial", "-out", p["srv.pem"],
        "-days", "2", "-extfile", p["ext"])
    return p


class Mock:
    """The mock APNs process: ports, registration, the requests it saw."""

    def __init__(self, tmp):
        self.certs = make_certs(tmp)
        self.proc = subprocess.Popen(
            ["node", MOCK, self.certs["srv.pem"], self.certs["srv.key"]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            bufsize=1)
        self.lines = queue.Queue()
        self.requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        first = self._next()
        check("ports" in first, "mock did not start: %r" % first)
        self.ports = first["ports"]

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "request" in msg:
                with self.lock:
                    self.requests.append(msg["request"])
            else:
                self.lines.put(msg)

    def _next(self):
        try:
            return self.lines.get(timeout=MOCK_TIMEOUT_S)
        except queue.Empty:
            raise TestFailure("the mock APNs does not answer")

    def send(self, msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        check("ack" in self._next(), "mock ack")

    def register(self, team, key_id, pub_pem, environment, topics):
        self.send({"register": {"team": team, "key_id": key_id,
                                "public_key_pem": pub_pem,
                                "environment": environment,
                                "topics": topics}})

    def revoke(self, key_id):
        self.send({"revoke": key_id})

    def seen(self, team=None):
        """The requests answered so far (of tokens whose iss is team)."""
        with self.lock:
            reqs = list(self.requests)
        if team is None:
            return reqs
        return [r for r in reqs if r["token"] and team in
                claims_of(r["token"])["iss"]]

    def url(self, env):
        return "https://127.0.0.1:%d" % self.ports[env]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def claims_of(token):
    import base64
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def mock():
    vault()
    return MOCK_P


def vault():
    """A daemon whose check goes to the mock."""
    global V
    if V is None:
        V = SignVault()
        m = mock_for(V)
        V.extra_args = ["--apns-sandbox-url", m.url("development"),
                        "--apns-production-url", m.url("production"),
                        "--apns-ca-file", m.certs["ca.pem"]]
        V.start()
    return V


def mock_for(v):
    global MOCK_P
    if MOCK_P is None:
        MOCK_P = Mock(v.tmp)
    return MOCK_P


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bad_vault():
    """A daemon whose sandbox never answers and whose production is a
    closed port."""
    global V_BAD
    if V_BAD is None:
        m = mock_for(vault())
        V_BAD = SignVault(extra_args=[
            "--apns-sandbox-url", m.url("silent"),
            "--apns-production-url", "https://127.0.0.1:%d" % closed_port(),
            "--apns-ca-file", m.certs["ca.pem"]]).start()
    return V_BAD


def check_path(app, key_id):
    return "/v1/apps/%s/keys/%s/check" % (app, key_id)


def new_key(v, app, environment="development", topics=("com.example.app",),
            register=None, services=None, check_upload=None, want=201):
    """Generate a key, register it at the mock (register: overrides of
    team/key_id/environment/topics, or False for none), upload it.
    Returns (answer, key_id, team_id, pub_pem)."""
    key_id, team_id = apple_id(), apple_id()
    pem = new_p8()
    pub = run_pub(pem)
    reg = {"team": team_id, "key_id": key_id, "environment": environment,
           "topics": list(topics)}
    if register is not False:
        reg.update(register or {})
        mock().register(reg["team"], reg["key_id"], pub,
                        reg["environment"], reg["topics"])
    body = {"key_id": key_id, "team_id": team_id, "p8": pem,
            "environment": environment, "topics": list(topics)}
    if services is not None:
        body["services"] = services
    if check_upload is not None:
        body["check"] = check_upload
    r = v.portal("POST", "/v1/apps/%s/keys" % app, body)
    check_eq(r.status, want, "upload %s: %r" % (app, r))
    return r.json, key_id, team_id, pub


def run_pub(pem):
    proc = subprocess.run(["openssl", "pkey", "-pubout"], input=pem,
                          capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    check(proc.returncode == 0, "openssl pkey -pubout")
    return proc.stdout


def do_check(v, app, key_id, body=None, token=None):
    return v.portal("POST", check_path(app, key_id), body, token=token)


def check_result(res, env, topic, status, reason, ok):
    check_eq((res.get("environment"), res.get("topic"),
              res.get("apns_status"), res.get("apns_reason"),
              res.get("ok")), (env, topic, status, reason, ok),
             "check result")
    check(isinstance(res.get("meaning"), str) and len(res["meaning"]) > 10,
          "no meaning: %r" % res)
    check(isinstance(res.get("checked_at"), str) and
          res["checked_at"].endswith("Z"), "checked_at: %r" % res)


@runner.test
def good_key_is_ok_and_kept():
    v = vault()
    meta, kid, team, pub = new_key(v, "good.app", topics=["com.good.app"])
    g = v.portal("GET", "/v1/apps/good.app/keys/%s" % kid)
    check_eq(g.json.get("checks"), {}, "checks before any check")
    r = do_check(v, "good.app", kid)
    check_eq(r.status, 200, "check: %r" % r)
    check_eq((r.json["app"], r.json["key_id"], r.json["ok"]),
             ("good.app", kid, True), "answer")
    check_eq(sorted(r.json["checks"]), ["development"], "environments")
    check_result(r.json["checks"]["development"], "development",
                 "com.good.app", 400, "BadDeviceToken", True)
    seen = mock().seen(team)
    check_eq(len(seen), 1, "requests at the mock")
    check_eq((seen[0]["environment"], seen[0]["topic"]),
             ("development", "com.good.app"), "where the check went")
    verify(pub, seen[0]["token"])
    g = v.portal("GET", "/v1/apps/good.app/keys/%s" % kid)
    check_eq(g.json.get("checks"), r.json["checks"], "GET shows the checks")
    lst = v.portal("GET", "/v1/apps/good.app/keys")
    check_eq(lst.json["keys"][0].get("checks"), r.json["checks"],
             "the list shows the checks")
    ev = [e for e in audit_events(v.state) if e.get("what") == "key.check"
          and e.get("key_id") == kid]
    check_eq(len(ev), 1, "key.check audit events")
    check_eq((ev[0]["result"], ev[0]["reasons"]),
             ("ok", {"development": "BadDeviceToken"}), "audit event")


@runner.test
def check_uses_the_shared_token():
    v = vault()
    _, kid, team, pub = new_key(v, "shared.app", environment="both",
                                register={"environment": "both"})
    a = v.apns("shared.app")
    check_eq(a.status, 200, "signing API: %r" % a)
    for _ in range(2):
        r = do_check(v, "shared.app", kid)
        check_eq(r.status, 200, "check: %r" % r)
        check_eq(sorted(r.json["checks"]), ["development", "production"],
                 "a \"both\" key is checked in both environments")
        for env in ("development", "production"):
            check_result(r.json["checks"][env], env, "com.example.app",
                         400, "BadDeviceToken", True)
    seen = mock().seen(team)
    check_eq(len(seen), 4, "requests at the mock")
    check_eq({s["token"] for s in seen}, {a.json["token"]},
             "the mock saw the signing API's token, and only it")
    check_eq(len(v.mint_events(kid)), 1, "apns.mint events of the key")


@runner.test
def check_mints_the_shared_token_when_none():
    v = vault()
    _, kid, team, _ = new_key(v, "first.app")
    r = do_check(v, "first.app", kid)
    check_eq(r.status, 200, "check: %r" % r)
    check_eq(r.json["ok"], True, "ok")
    a = v.apns("first.app")
    check_eq(a.status, 200, "signing API: %r" % a)
    check_eq({s["token"] for s in mock().seen(team)}, {a.json["token"]},
             "the signing API hands out the token the check used")
    check_eq(len(v.mint_events(kid)), 1, "apns.mint events of the key")


@runner.test
def swapped_ids_are_refused():
    v = vault()
    key_id, team_id = apple_id(), apple_id()
    pem = new_p8()
    mock().register(team_id, key_id, run_pub(pem), "development",
                    ["com.example.app"])
    # Uploaded with the two ids swapped, as customers do.
    r = v.portal("POST", "/v1/apps/swap.app/keys", {
        "key_id": team_id, "team_id": key_id, "p8": pem,
        "environment": "development", "topics": ["com.example.app"]})
    check_eq(r.status, 201, "upload: %r" % r)
    r = do_check(v, "swap.app", team_id)
    check_eq(r.status, 200, "check: %r" % r)
    check_eq(r.json["ok"], False, "ok")
    check_result(r.json["checks"]["development"], "development",
                 "com.example.app", 403, "InvalidProviderToken", False)
    check("Team ID" in r.json["checks"]["development"]["meaning"],
          "the meaning names the ids")


@runner.test
def other_environment_is_refused():
    v = vault()
    _, kid, _, _ = new_key(v, "env.app", environment="development",
                           register={"environment": "production"})
    r = do_check(v, "env.app", kid)
    check_eq(r.status, 200, "check: %r" % r)
    check_result(r.json["checks"]["development"], "development",
                 "com.example.app", 403, "BadEnvironmentKeyInToken", False)
    # Asking for production explicitly: APNs accepts it there.
    r = do_check(v, "env.app", kid, {"environment": "production"})
    check_eq(r.status, 200, "check production: %r" % r)
    check_result(r.json["checks"]["production"], "production",
                 "com.example.app", 400, "BadDeviceToken", True)
    g = v.portal("GET", "/v1/apps/env.app/keys/%s" % kid)
    check_eq(sorted(g.json["checks"]), ["development", "production"],
             "the last result per environment is kept")
    check_eq(g.json["checks"]["development"]["ok"], False,
             "development's result stays")


@runner.test
def topic_outside_the_key_is_refused():
    v = vault()
    _, kid, _, _ = new_key(v, "topic.app", topics=["com.topic.one"])
    r = do_check(v, "topic.app", kid, {"topic": "com.topic.other"})
    check_eq(r.status, 200, "check: %r" % r)
    check_result(r.json["checks"]["development"], "development",
                 "com.topic.other", 400, "TopicDisallowed", False)
    r = do_check(v, "topic.app", kid, {"topic": "not a topic"})
    check_error(r, 422, "invalid_field", "a malformed topic")
    r = do_check(v, "topic.app", kid, {"environment": "both"})
    check_error(r, 422, "invalid_field", "environment both")
    r = do_check(v, "topic.app", kid, {"colour": "red"})
    check_error(r, 422, "unknown_field", "an unknown member")


@runner.test
def key_revoked_at_apple_is_refused():
    v = vault()
    _, kid, _, _ = new_key(v, "revoked.app")
    mock().revoke(kid)
    r = do_check(v, "revoked.app", kid)
    check_eq(r.status, 200, "check: %r" % r)
    check_result(r.json["checks"]["development"], "development",
                 "com.example.app", 403, "InvalidProviderToken", False)


@runner.test
def upload_with_check_stores_nothing_on_failure():
    v = vault()
    team = None
    answer, kid, team, _ = new_key(
        v, "upfail.app", register={"environment": "production"},
        check_upload=True, want=422)
    check_eq(answer["error"]["code"], "apple_check_failed", "error code")
    check_eq(answer.get("ok"), False, "ok")
    check_result(answer["checks"]["development"], "development",
                 "com.example.app", 403, "BadEnvironmentKeyInToken", False)
    g = v.portal("GET", "/v1/apps/upfail.app/keys/%s" % kid)
    check_error(g, 404, "key_not_found", "the refused key")
    lst = v.portal("GET", "/v1/apps/upfail.app/keys")
    check_eq(lst.json, {"keys": []}, "nothing stored")
    check_eq(v.mint_events(kid), [], "no token kept")
    check_error(v.apns("upfail.app"), 404, "app_not_found", "signing")
    ev = [e for e in audit_events(v.state) if e.get("what") == "key.check"
          and e.get("key_id") == kid]
    check_eq([(e["result"], e.get("upload")) for e in ev],
             [("failed", True)], "the refused check is audited")


@runner.test
def upload_with_check_keeps_key_results_and_token():
    v = vault()
    meta, kid, team, _ = new_key(v, "upok.app", check_upload=True)
    check_eq(meta.get("key_id"), kid, "the answer is the metadata")
    check_result(meta["checks"]["development"], "development",
                 "com.example.app", 400, "BadDeviceToken", True)
    seen = mock().seen(team)
    check_eq(len(seen), 1, "one request at the mock")
    a = v.apns("upok.app")
    check_eq(a.status, 200, "signing: %r" % a)
    check_eq(a.json["token"], seen[0]["token"],
             "the check's token is the key's shared token")
    check_eq(len(v.mint_events(kid)), 1, "one apns.mint event")
    r = do_check(v, "upok.app", kid)
    check_eq(r.json["ok"], True, "a second check")
    check_eq({s["token"] for s in mock().seen(team)}, {a.json["token"]},
             "one token for the team at the mock")
    g = v.portal("GET", "/v1/apps/upok.app/keys/%s" % kid)
    check_eq(g.json["checks"]["development"]["ok"], True, "kept")


@runner.test
def upload_with_check_in_a_form_and_a_query():
    v = vault()
    key_id, team_id = apple_id(), apple_id()
    pem = new_p8()
    mock().register(team_id, key_id, run_pub(pem), "production",
                    ["com.example.app"])
    from harness import request
    from signing import bearer
    h = {"Content-Type": "application/x-pem-file"}
    h.update(bearer(v.token("portal")))
    r = request(v.d.tcp(), "POST", "/v1/apps/raw.app/keys?key_id=%s&"
                "team_id=%s&environment=development&topics=com.example.app"
                "&check=true" % (key_id, team_id), body=pem.encode(),
                headers=h)
    check_error(r, 422, "apple_check_failed", "raw upload with ?check=true")
    boundary = "b0undary"
    parts = [("key_id", key_id), ("team_id", team_id),
             ("environment", "development"), ("topics", "com.example.app"),
             ("check", "true"), ("p8", pem)]
    body = "".join("--%s\r\nContent-Disposition: form-data; name=\"%s\""
                   "\r\n\r\n%s\r\n" % (boundary, n, val)
                   for n, val in parts) + "--%s--\r\n" % boundary
    h["Content-Type"] = "multipart/form-data; boundary=" + boundary
    r = request(v.d.tcp(), "POST", "/v1/apps/raw.app/keys",
                body=body.encode(), headers=h)
    check_error(r, 422, "apple_check_failed", "form upload with check=true")
    lst = v.portal("GET", "/v1/apps/raw.app/keys")
    check_eq(lst.json, {"keys": []}, "nothing stored")


@runner.test
def unreachable_is_502_and_silence_is_504():
    v = bad_vault()
    _, kid, _, _ = new_key(v, "prod.app", environment="production")
    r = do_check(v, "prod.app", kid)
    check_error(r, 502, "apple_unreachable", "a closed port")
    check_eq(r.json.get("environment"), "production", "which environment")
    check(len(r.json["error"]["message"]) > 10, "a cause: %r" % r.json)
    _, kid2, _, _ = new_key(v, "silent.app", environment="development")
    t0 = time.monotonic()
    r = do_check(v, "silent.app", kid2)
    took = time.monotonic() - t0
    check_error(r, 504, "apple_timeout", "a server that never answers")
    check(CHECK_TIMEOUT_S - 1 <= took <= CHECK_TIMEOUT_S + 5,
          "the timeout took %.1f s" % took)
    g = v.portal("GET", "/v1/apps/prod.app/keys/%s" % kid)
    check_eq(g.json.get("checks"), {}, "no result kept")
    ev = [e for e in audit_events(v.state) if e.get("what") == "key.check"
          and e.get("key_id") == kid]
    check_eq([e["result"] for e in ev], ["unreachable"], "audited")
    # An upload with a check that cannot reach APNs stores nothing.
    _, kid3, _, _ = new_key(v, "prod2.app", environment="production",
                            check_upload=True, want=502)
    check_eq(v.portal("GET", "/v1/apps/prod2.app/keys").json,
             {"keys": []}, "nothing stored")


@runner.test
def certificate_not_from_the_ca_file_is_502():
    v = vault()
    m = mock()
    w = SignVault(extra_args=[
        "--apns-sandbox-url", m.url("development"),
        "--apns-ca-file", m.certs["other.pem"]]).start()
    try:
        _, kid, team, _ = new_key(w, "tls.app")
        r = do_check(w, "tls.app", kid)
        check_error(r, 502, "apple_unreachable", "an unverified server")
        check_eq(mock().seen(team), [], "no request reached the mock")
    finally:
        w.close()


@runner.test
def refusals_before_apple():
    v = vault()
    _, kid, _, _ = new_key(v, "nosvc.app", services=["sign_in_with_apple"])
    check_error(do_check(v, "nosvc.app", kid), 403, "service_not_allowed",
                "a key without apns")
    _, kid, _, _ = new_key(v, "notopic", topics=())
    check_error(do_check(v, "notopic", kid), 422, "missing_field",
                "no topic to use")
    r, _, _, _ = new_key(v, "notopic2", topics=(), check_upload=True,
                         want=422)
    check_eq(r["error"]["code"], "missing_field", "upload: no topic")
    check("topic" in r["error"]["message"], "names the topic: %r" % r)
    check_eq(v.portal("GET", "/v1/apps/notopic2/keys").json, {"keys": []},
             "nothing stored")
    _, kid, team, _ = new_key(v, "com.bundle.app", topics=())
    r = do_check(v, "com.bundle.app", kid)
    check_eq(r.status, 200, "the app id as the topic: %r" % r)
    check_eq(r.json["checks"]["development"]["topic"], "com.bundle.app",
             "topic")
    check_error(do_check(v, "good.app", "NOSUCHKEY0"), 404, "key_not_found",
                "an unknown key")
    _, kid, _, _ = new_key(v, "gone.app")
    check_eq(v.portal("DELETE", "/v1/apps/gone.app/keys/%s" % kid).status,
             200, "revoke")
    check_error(do_check(v, "gone.app", kid), 410, "key_revoked",
                "a revoked key")
    check_error(do_check(v, "good.app", kid, token=v.token("signer")), 403,
                "forbidden", "a signer token")
    r = v.portal("POST", check_path("com.bundle.app", kid),
                 token=v.token("admin"))
    check(r.status != 403, "an admin token may check: %r" % r)


@runner.test
def cli_keys_check():
    v = vault()
    m = mock()
    _, kid, team, _ = new_key(v, "cli.app", topics=["com.cli.app"])
    env = {k: val for k, val in os.environ.items()
           if not k.startswith("P8VAULT_")}
    base = [cli_path(), "keys", "check", "--state", v.state,
            "--master-key-file", v.key, "--app", "cli.app", "--key-id", kid,
            "--apns-sandbox-url", m.url("development"),
            "--apns-ca-file", m.certs["ca.pem"]]
    proc = subprocess.run(base + ["--json"], env=env, capture_output=True,
                          text=True, timeout=TOOL_TIMEOUT_S)
    check_eq(proc.returncode, 0, "exit status (%s)" % proc.stderr)
    out = json.loads(proc.stdout)
    check_result(out["checks"]["development"], "development", "com.cli.app",
                 400, "BadDeviceToken", True)
    proc = subprocess.run(base + ["--topic", "com.cli.other"], env=env,
                          capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    check_eq(proc.returncode, 1, "exit status of a refused check")
    check("TopicDisallowed" in proc.stdout, "names the reason: %r" %
          proc.stdout)
    show = subprocess.run([cli_path(), "keys", "show", "--state", v.state,
                           "--json", "cli.app", kid], env=env,
                          capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    check_eq(show.returncode, 0, "keys show")
    check_eq(json.loads(show.stdout)["checks"]["development"]["apns_reason"],
             "TopicDisallowed", "keys show shows the last check")
    # The daemon, running beside, and the CLI shared one token.
    a = v.apns("cli.app")
    check_eq({s["token"] for s in mock().seen(team)}, {a.json["token"]},
             "one token per team at the mock")


def main():
    try:
        runner.main()
    finally:
        for x in (V, V_BAD):
            if x is not None:
                x.close()
        if MOCK_P is not None:
            MOCK_P.close()


if __name__ == "__main__":
    main()
