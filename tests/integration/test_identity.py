#!/usr/bin/python3
"""test_identity.py: tokens and key identity across apps (issue 15),
against the real p8vaultd and the real p8vault CLI.

Covered: DeviceCheck answers the shared APNs token (and needs
"devicecheck" in the key's services); InvalidProviderToken for the current
token logs a warning naming the key; the same key under other ids in any
app is 409 key_identity_conflict, under the same ids in another app it is
allowed; every copy of a key by fingerprint (GET /v1/keys?fingerprint=,
admin only; p8vault keys list/revoke --fingerprint, one transaction,
audited); 400 topics per key, 401 refused; a warning when a team ends up
with two active APNs keys for one environment.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq  # noqa
from signing import (SignVault, apple_id, audit_events,  # noqa
                     check_apns_answer, check_error, new_p8, p8vault,
                     token_parts, verify)

runner = Runner("test_identity")
V = None

# How long a log line may take to reach the test (a reader thread).
LOG_WAIT_S = 10


def vault():
    global V
    if V is None:
        V = SignVault().start()
    return V


def upload(v, app, kid, team, pem, want, **extra):
    body = {"key_id": kid, "team_id": team, "p8": pem}
    body.update(extra)
    r = v.portal("POST", "/v1/apps/%s/keys" % app, body)
    check_eq(r.status, want, "upload to %s: %r" % (app, r))
    return r


# -- Tokens -------------------------------------------------------------------

@runner.test
def devicecheck_is_the_shared_apns_token():
    v = vault()
    meta, kid, team, _ = v.new_key("dc.app", services=["apns",
                                                       "devicecheck"])
    pub = meta["public_key_pem"]
    a = v.jwt("dc.app", {"profile": "devicecheck"})
    check_eq(a.status, 200, "devicecheck: %r" % a)
    check_eq(a.json["profile"], "devicecheck", "profile")
    h, c = token_parts(a.json["token"])
    check_eq(h, '{"alg":"ES256","kid":"%s"}' % kid, "header")
    check_eq(c, '{"iss":"%s","iat":%d}' % (team, a.json["issued_at"]),
             "claims")
    verify(pub, a.json["token"])
    b = v.jwt("dc.app", {"profile": "devicecheck"})
    check_eq(b.json["token"], a.json["token"], "devicecheck asked again")
    apns = check_apns_answer(v.apns("dc.app"), kid, team, pub, "apns")
    check_eq(apns["token"], a.json["token"], "the APNs token")
    check_eq(apns["issued_at"], a.json["issued_at"], "issued_at")
    mints = v.mint_events(kid)
    check_eq(len(mints), 1, "mints for devicecheck and APNs")
    check_eq(mints[0].get("service"), "devicecheck", "the mint's service")


@runner.test
def devicecheck_needs_devicecheck_in_services():
    v = vault()
    v.new_key("dc.apnsonly", services=["apns"])
    check_error(v.jwt("dc.apnsonly", {"profile": "devicecheck"}), 403,
                "service_not_allowed", "devicecheck of an APNs-only key")
    # Its token is one APNs takes: a key not allowed APNs gets none.
    v.new_key("dc.only", services=["devicecheck"])
    check_error(v.jwt("dc.only", {"profile": "devicecheck"}), 403,
                "service_not_allowed", "devicecheck of a key without apns")
    check_error(v.apns("dc.only"), 403, "service_not_allowed",
                "apns-token of a devicecheck-only key")
    # MusicKit and Maps differ only by typ: each needs its own service.
    v.new_key("mk.only", services=["musickit"])
    check_eq(v.jwt("mk.only", {"profile": "musickit"}).status, 200,
             "musickit")
    check_error(v.jwt("mk.only", {"profile": "maps"}), 403,
                "service_not_allowed", "maps of a musickit-only key")


@runner.test
def invalid_provider_token_is_logged_naming_the_key():
    v = vault()
    meta, kid, team, _ = v.new_key("ipt.app")
    a = v.apns("ipt.app").json
    r = v.apns("ipt.app", body={"rejected_token": a["token"],
                                "reason": "InvalidProviderToken"})
    check_eq(r.json["token"], a["token"], "inside 20 minutes: same token")
    line = v.d.wait_log(
        lambda l: l.get("event") == "apns_token_invalid" and
        l.get("key_id") == kid, LOG_WAIT_S, "apns_token_invalid")
    check_eq((line.get("team_id"), line.get("fingerprint"), line.get("app")),
             (team, meta["fingerprint"], "ipt.app"), "the key named")
    check(line.get("level") in ("warn", "warning", "WARN"),
          "level: %r" % line.get("level"))
    check("revoked" in line.get("msg", line.get("message", "")),
          "why: %r" % line)
    check(a["token"] not in json.dumps(line), "the token in the log")
    # A foreign token's rejection is not about this key's current token.
    v.new_key("ipt.other")
    foreign = v.apns("ipt.other").json["token"]
    v.apns("ipt.app", body={"rejected_token": foreign,
                            "reason": "InvalidProviderToken"})
    v.d.wait_log(lambda l: l.get("event") == "apns_token_rejected" and
                 len(v.d.log_events("apns_token_rejected")) >= 2,
                 LOG_WAIT_S, "the second report")
    check_eq(len([l for l in v.d.log_events("apns_token_invalid")
                  if l.get("key_id") == kid]), 1,
             "apns_token_invalid lines of the key")
    check_eq(len(v.mint_events(kid)), 1, "mints")


# -- Key identity ---------------------------------------------------------------

@runner.test
def same_key_under_other_ids_is_409_in_any_app():
    v = vault()
    kid, team, pem = apple_id(), apple_id(), new_p8()
    first = upload(v, "idc.one", kid, team, pem, 201).json
    upload(v, "idc.two", kid, team, pem, 201)          # same ids: allowed
    for k, t in ((apple_id(), team), (kid, apple_id()),
                 (apple_id(), apple_id())):
        r = upload(v, "idc.three", k, t, pem, 409)
        check_error(r, 409, "key_identity_conflict", "ids %s/%s" % (k, t))
        r = upload(v, "idc.one", k, t, pem, 409)
        check_error(r, 409, "key_identity_conflict",
                    "ids %s/%s in the same app" % (k, t))
    r = v.portal("GET", "/v1/apps/idc.three/keys")
    check_eq(r.json.get("keys"), [], "nothing stored for idc.three")
    # The admin sees both copies.
    r = v.portal("GET", "/v1/keys?fingerprint=" + first["fingerprint"],
                 token=v.token("admin"))
    check_eq(r.status, 200, "GET /v1/keys: %r" % r)
    check_eq([(k["app"], k["key_id"]) for k in r.json["keys"]],
             [("idc.one", kid), ("idc.two", kid)], "copies")


@runner.test
def incident_response_by_fingerprint():
    v = vault()
    kid, team, pem = apple_id(), apple_id(), new_p8()
    fp = upload(v, "leak.a", kid, team, pem, 201).json["fingerprint"]
    upload(v, "leak.b", kid, team, pem, 201)
    other = v.new_key("leak.c")[0]
    admin = v.token("admin")
    path = "/v1/keys?fingerprint="
    r = v.portal("GET", path + fp.upper(), token=admin)
    check_eq([k["app"] for k in r.json["keys"]], ["leak.a", "leak.b"],
             "GET, upper case")
    check_error(v.portal("GET", path + fp), 403, "forbidden",
                "a portal token")
    check_error(v.portal("GET", path + fp, token=v.token("signer")), 403,
                "forbidden", "a signer token")
    check_error(v.portal("GET", "/v1/keys", token=admin), 422,
                "missing_field", "no fingerprint")
    check_error(v.portal("GET", path + "zz", token=admin), 422,
                "invalid_field", "not a fingerprint")
    r = v.portal("GET", path + "0" * 64, token=admin)
    check_eq((r.status, r.json.get("keys")), (200, []), "unknown key")
    # An admin token for some apps sees the copies in those apps only.
    r = v.portal("GET", path + fp, token=v.token("admin", apps=["leak.b"]))
    check_eq((r.status, [k["app"] for k in r.json["keys"]]),
             (200, ["leak.b"]), "an admin token for leak.b")
    r = v.portal("GET", path + fp, token=v.token("admin", apps=["leak.c"]))
    check_eq((r.status, r.json["keys"]), (200, []),
             "an admin token for another app")
    # The CLI: list shows fingerprints; --fingerprint lists the copies.
    table = p8vault("keys", "list", "--state", v.state)
    check("FINGERPRINT" in table and fp in table and
          other["fingerprint"] in table, "keys list: %r" % table[:300])
    lst = json.loads(p8vault("keys", "list", "--state", v.state,
                             "--fingerprint", fp, "--json"))
    check_eq([(k["app"], k["key_id"], k["state"]) for k in lst],
             [("leak.a", kid, "active"), ("leak.b", kid, "active")],
             "keys list --fingerprint")
    check_eq(v.apns("leak.a").status, 200, "a token before the revocation")
    out = json.loads(p8vault("keys", "revoke", "--state", v.state,
                             "--master-key-file", v.key, "--fingerprint",
                             fp, "--json"))
    check_eq([(k["app"], k["state"]) for k in out],
             [("leak.a", "revoked"), ("leak.b", "revoked")], "revoked")
    for app in ("leak.a", "leak.b"):
        check_error(v.apns(app), 410, "key_revoked", "apns-token of " + app)
    check_eq(v.apns("leak.c").status, 200, "another key still signs")
    events = [e for e in audit_events(v.state)
              if e.get("what") == "key.revoke" and
              e.get("fingerprint") == fp]
    check_eq(sorted((e["app"], e.get("by"), e.get("who")) for e in events),
             [("leak.a", "fingerprint", "cli"),
              ("leak.b", "fingerprint", "cli")], "audit events")
    # Nothing left to revoke.
    r = json.loads(p8vault("keys", "list", "--state", v.state,
                           "--fingerprint", fp, "--json"))
    check_eq({k["state"] for k in r}, {"revoked"}, "after")


@runner.test
def four_hundred_topics():
    v = vault()
    # Apple's limit for a topic-specific key; each topic near the longest.
    topics = ["com.example.%03d." % i + "t" * 230 for i in range(400)]
    kid, team, pem = apple_id(), apple_id(), new_p8()
    r = upload(v, "topics.app", kid, team, pem, 201, topics=topics)
    check_eq(r.json["topics"], topics, "the 400 topics stored")
    check_apns_answer(v.apns("topics.app"), kid, team,
                      r.json["public_key_pem"], "a token of that key")
    r = v.portal("GET", "/v1/apps/topics.app/keys/%s" % kid)
    check_eq(len(r.json["topics"]), 400, "topics read back")
    r = upload(v, "topics.app", apple_id(), apple_id(), new_p8(), 422,
               topics=topics + ["com.example.extra"])
    check_error(r, 422, "invalid_field", "401 topics")
    check("at most 400" in r.json["error"]["message"],
          "the message says the limit: %r" % r.json)


@runner.test
def two_active_apns_keys_of_a_team_warn():
    v = vault()
    team = apple_id()
    r = upload(v, "warn.one", apple_id(), team, new_p8(), 201,
               environment="production")
    check("warnings" not in r.json, "a first key: %r" % r.json)
    r = upload(v, "warn.two", apple_id(), team, new_p8(), 201,
               environment="development")
    check("warnings" not in r.json, "another environment")
    kid3 = apple_id()
    r = upload(v, "warn.two", kid3, team, new_p8(), 201,
               environment="both")
    check_eq(len(r.json.get("warnings", [])), 1, "a key for both: %r" %
             r.json)
    w = r.json["warnings"][0]
    check_eq((w["code"], w["team_id"]), ("multiple_active_apns_keys", team),
             "warning")
    check_eq([k["app"] for k in w["other_keys"]], ["warn.one"],
             "the other keys (warn.two's development key was demoted)")
    check("connection" in w["message"], "why: %r" % w["message"])
    line = v.d.wait_log(lambda l: l.get("event") ==
                        "apns_keys_multiple_active" and
                        l.get("key_id") == kid3, LOG_WAIT_S,
                        "apns_keys_multiple_active")
    check_eq(line.get("team_id"), team, "log line team")
    # Activation of a standby key warns too.
    kid4 = apple_id()
    upload(v, "warn.three", kid4, team, new_p8(), 201,
           environment="production", activate=False)
    r = v.portal("POST", "/v1/apps/warn.three/keys/%s/activate" % kid4)
    check_eq(r.status, 200, "activate: %r" % r)
    check_eq(len(r.json.get("warnings", [])), 1, "activation: %r" % r.json)
    # Keys of other teams and standby keys: no warning.
    r = upload(v, "warn.four", apple_id(), apple_id(), new_p8(), 201,
               environment="production")
    check("warnings" not in r.json, "another team")


def main():
    try:
        runner.main()
    finally:
        if V is not None:
            V.close()


if __name__ == "__main__":
    main()
