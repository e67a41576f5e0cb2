#!/usr/bin/python3
"""test_sign.py: the signing API end to end, against the real p8vaultd.

Keys are made with `openssl genpkey` and uploaded through the portal API;
tokens come from `p8vault token create`. Every token the daemon returns is
verified against the uploaded key's public key by python3-cryptography
(tests/verify_jwt.py) and, for some, by `openssl dgst`; headers and claims
are compared as exact text.

Covered: the socket's mode; the APNs token's exact form on the unix socket
and on --sign-listen; its cached entry in the data file, decoded from
docs/security.md; the optional body and its refusals; one token per
team and key shared across apps; a new active key minting at once; a
revoked key; a reported rejection inside 20 minutes returning the same
token; the environment choice; every JWT profile's exact header, claims
and limits; services; who may call (no token, portal, signer of other
apps, admin); /metrics; and the token surviving a restart (last).
The 1000-caller single flight is in test_sign_concurrency.py, the clock in
test_sign_clock.py.
"""

import json
import os
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq  # noqa
from signing import (CLOCK_SLACK_S, SignVault, audit_events,  # noqa
                     check_apns_answer, check_error, mints, token_id,
                     token_parts, verify, verify_openssl)

runner = Runner("test_sign")
V = None

ISSUER = "57246542-96fe-1a63-e053-0824d011072a"
ALL_SERVICES = ["apns", "app_store_connect", "sign_in_with_apple",
                "musickit", "weatherkit", "devicecheck", "maps"]


def vault():
    global V
    if V is None:
        V = SignVault().start()
    return V


@runner.test
def sign_socket_is_0660():
    v = vault()
    st = os.stat(v.d.sock_path)
    check(stat.S_ISSOCK(st.st_mode), "not a socket")
    check_eq(oct(st.st_mode & 0o7777), oct(0o660), "socket mode")
    check_eq((st.st_uid, st.st_gid), (os.getuid(), os.getgid()),
             "socket owner")


@runner.test
def apns_token_exact_and_verified():
    v = vault()
    meta, kid, team, _ = v.new_key("exact.app")
    pub = meta["public_key_pem"]
    t0 = int(time.time())
    a = check_apns_answer(v.apns("exact.app"), kid, team, pub, "unix")
    check(abs(a["issued_at"] - t0) <= CLOCK_SLACK_S,
          "iat %d is not now (%d)" % (a["issued_at"], t0))
    verify_openssl(pub, a["token"], v.tmp)
    # The same token on TCP, with {} and with no body at all.
    b = check_apns_answer(v.apns("exact.app", tcp=True), kid, team, pub,
                          "tcp")
    c = check_apns_answer(v.apns("exact.app", body={}), kid, team, pub, "{}")
    check_eq((b["token"], c["token"]), (a["token"], a["token"]),
             "token on TCP and with {}")
    check_eq(b["issued_at"], a["issued_at"], "issued_at of the cached token")
    # A token of another key does not verify against this one: the check
    # above can fail.
    other, _, _, _ = v.new_key("exact.other")
    try:
        verify(other["public_key_pem"], a["token"])
    except Exception:
        pass
    else:
        check(False, "a token verified against another key")


@runner.test
def apns_body_refusals():
    v = vault()
    v.new_key("body.app")
    ok = v.apns("body.app")
    check_eq(ok.status, 200, "no body")
    tok = ok.json["token"]
    cases = [
        ({"environment": "both"}, 422, "invalid_field"),
        ({"environment": "sandbox"}, 422, "invalid_field"),
        ({"environment": 1}, 422, "invalid_field"),
        ({"environment": None}, 422, "invalid_field"),
        ({"reason": "ExpiredProviderToken"}, 422, "invalid_field"),
        ({"rejected_token": tok}, 422, "invalid_field"),
        ({"rejected_token": tok, "reason": "TooManyProviderTokenUpdates"},
         422, "invalid_field"),
        ({"rejected_token": tok, "reason": "expiredprovidertoken"},
         422, "invalid_field"),
        ({"rejected_token": "not a token", "reason": "ExpiredProviderToken"},
         422, "invalid_field"),
        ({"rejected_token": "", "reason": "ExpiredProviderToken"},
         422, "invalid_field"),
        ({"rejected_token": 5, "reason": "ExpiredProviderToken"},
         422, "invalid_field"),
        ({"topic": "com.example"}, 422, "unknown_field"),
        ({"iat": 1}, 422, "unknown_field"),
        ({"kid": "ABCDEFGHIJ"}, 422, "unknown_field"),
        ([], 400, "bad_request"),
        ("x", 400, "bad_request"),
    ]
    for body, status, code in cases:
        check_error(v.apns("body.app", body=body), status, code,
                    "body %r" % (body,))
    for raw, what in ((b"{", "truncated JSON"),
                      (b'{"environment":"production",'
                       b'"environment":"development"}', "duplicate member"),
                      (b"\xff\xfe", "not UTF-8")):
        r = v.apns("body.app", raw=raw,
                   headers={"Content-Type": "application/json"})
        check_error(r, 400, "bad_request", what)
    r = v.apns("body.app", raw=b"{}", headers={"Content-Type": "text/plain"})
    check_error(r, 415, "unsupported_media_type", "Content-Type text/plain")
    r = v.apns("body.app", raw=b"{" + b" " * 5000 + b"}",
               headers={"Content-Type": "application/json"})
    check_error(r, 413, "too_large", "a body over 4 KiB")
    r = v.sign("/v1/apps/body.app/apns-token", method="GET")
    check_error(r, 405, "method_not_allowed", "GET")
    # None of the refusals minted or changed anything.
    check_eq(v.apns("body.app").json["token"], tok, "token after refusals")


@runner.test
def signing_bodies_must_be_sent_as_json():
    """415 for a body that is not sent as JSON, as the upload route does:
    curl -d's form type, another type, or none; the message says how."""
    v = vault()
    v.new_key("media.app", services=["apns", "musickit"])
    routes = (("/v1/apps/media.app/apns-token", b"{}"),
              ("/v1/apps/media.app/jwt", b'{"profile":"musickit"}'))
    for path, raw in routes:
        for ctype in ("application/x-www-form-urlencoded", "text/plain",
                      "application/jsonx", None):
            h = {"Content-Type": ctype} if ctype else {}
            r = v.sign(path, raw=raw, headers=h)
            check_error(r, 415, "unsupported_media_type",
                        "%s with %s" % (path, ctype))
            check("application/json" in r.json["error"]["message"],
                  "the message names the type: %r" % r.json)
        for ctype in ("application/json", "Application/JSON; charset=utf-8"):
            r = v.sign(path, raw=raw, headers={"Content-Type": ctype})
            check_eq(r.status, 200, "%s with %s: %r" % (path, ctype, r))
    # No body: apns-token takes none (whatever the type), /jwt needs one.
    r = v.sign(routes[0][0], raw=b"",
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    check_eq(r.status, 200, "apns-token without a body: %r" % r)
    check_error(v.sign(routes[1][0], raw=b""), 400, "bad_request",
                "/jwt without a body")


@runner.test
def json_answers_end_with_a_newline():
    """Every JSON answer ends with one newline: the token answers (written
    by hand), errors, and the jansson-serialised portal answers."""
    v = vault()
    meta, kid, _, _ = v.new_key("newline.app", services=["apns", "maps"])
    answers = {
        "apns-token": v.apns("newline.app"),
        "apns-token cached": v.apns("newline.app"),
        "jwt": v.jwt("newline.app", {"profile": "maps"}),
        "error 422": v.jwt("newline.app", {"profile": "nope"}),
        "error 401": v.apns("newline.app", auth=False),
        "error 404": v.sign("/nope", method="GET"),
        "readyz": v.sign("/readyz", method="GET", auth=False),
        "portal list": v.portal("GET", "/v1/apps/newline.app/keys"),
        "portal key": v.portal("GET", "/v1/apps/newline.app/keys/" + kid),
    }
    for what, r in answers.items():
        check(r.json is not None, what + ": not JSON: %r" % r)
        check(r.body.endswith(b"}\n") and not r.body.endswith(b"\n\n"),
              what + ": does not end with one newline: %r" % r.body[-40:])


@runner.test
def unknown_members_are_named():
    v = vault()
    v.new_key("member.app", services=["apns", "musickit", "weatherkit"])
    r = v.jwt("member.app", {"profile": "musickit", "scope": ["GET /x"]})
    check_error(r, 422, "unknown_field", "scope for musickit")
    check_eq(r.json["error"]["message"], 'unknown member "scope": the '
             'musickit profile takes expires_in, origin, environment',
             "message")
    r = v.jwt("member.app", {"profile": "weatherkit", "service_id": "s",
                             "expiresIn": 60})
    check_error(r, 422, "unknown_field", "expiresIn")
    check_eq(r.json["error"]["message"], 'unknown member "expiresIn": the '
             'weatherkit profile takes service_id, expires_in, environment',
             "message")
    r = v.apns("member.app", body={"topic": "com.example"})
    check_error(r, 422, "unknown_field", "topic for apns-token")
    check('unknown member "topic"' in r.json["error"]["message"],
          "apns-token message: %r" % r.json)
    # A name that is not plain is not repeated.
    odd = "<script>" + "x" * 50
    for r in (v.jwt("member.app", {"profile": "musickit", odd: 1}),
              v.apns("member.app", body={odd: 1})):
        check_error(r, 422, "unknown_field", "an odd member name")
        check("script" not in r.json["error"]["message"],
              "the odd name is repeated: %r" % r.json)


@runner.test
def apns_errors_for_apps_and_ids():
    v = vault()
    check_error(v.apns("no.such.app"), 404, "app_not_found", "unknown app")
    check_error(v.apns(".."), 422, "invalid_app_id", "app ..")
    check_error(v.apns("a%20b"), 422, "invalid_app_id", "app with a space")
    check_error(v.apns("x" * 65), 422, "invalid_app_id", "app of 65")


@runner.test
def one_token_for_two_apps_of_one_team_and_key():
    v = vault()
    meta, kid, team, pem = v.new_key("share.one")
    v.upload("share.two", kid, team, pem)
    before = len(v.mint_events())
    a = check_apns_answer(v.apns("share.one"), kid, team,
                          meta["public_key_pem"], "first app")
    b = check_apns_answer(v.apns("share.two", tcp=True), kid, team,
                          meta["public_key_pem"], "second app")
    check_eq(b["token"], a["token"], "token of the second app")
    check_eq(len(v.mint_events()) - before, 1, "mints for two apps")
    # Another key of the same team is another token.
    meta3, kid3, _, _ = v.new_key("share.three", team_id=team)
    c = check_apns_answer(v.apns("share.three"), kid3, team,
                          meta3["public_key_pem"], "another key")
    check(c["token"] != a["token"], "another key got the same token")


@runner.test
def new_active_key_mints_at_once():
    v = vault()
    meta1, kid1, team, _ = v.new_key("rotate.app")
    a = check_apns_answer(v.apns("rotate.app"), kid1, team,
                          meta1["public_key_pem"], "first key")
    before = len(v.mint_events())
    meta2, kid2, _, _ = v.new_key("rotate.app", team_id=team, activate=True)
    b = check_apns_answer(v.apns("rotate.app"), kid2, team,
                          meta2["public_key_pem"], "right after rotation")
    check(b["token"] != a["token"], "the old key's token after rotation")
    events = v.mint_events()[before:]
    check_eq(len(events), 1, "mints for the new key")
    check_eq(events[0].get("key_id"), kid2, "minted for")
    check_eq(events[0].get("fingerprint"), meta2["fingerprint"],
             "fingerprint in the mint event")
    # Uploading a standby key changes nothing.
    v.new_key("rotate.app", team_id=team, activate=False)
    check_eq(v.apns("rotate.app").json["token"], b["token"],
             "token after a standby upload")


@runner.test
def every_mint_is_audited_cache_hits_are_not():
    v = vault()
    meta1, kid1, team, _ = v.new_key("audit.app")
    signer = v.token("signer")

    def apns_mints():
        return [e for e in audit_events(v.state)
                if e.get("what") == "apns.mint" and e.get("team_id") == team]

    check_eq(apns_mints(), [], "audit events before any token")
    for _ in range(5):
        check_eq(v.apns("audit.app").status, 200, "apns-token")
    a = v.apns("audit.app").json
    events = apns_mints()
    check_eq(len(events), 1, "apns.mint events after six requests")
    e = events[0]
    check_eq((e.get("key_id"), e.get("fingerprint"), e.get("reason"),
              e.get("who"), e.get("issued_at")),
             (kid1, meta1["fingerprint"], "cold", token_id(signer),
              a["issued_at"]), "the mint's audit event")
    check(a["token"] not in json.dumps(events), "the audit log holds the "
          "token")
    # A new active key: a second event, with its own key and reason.
    meta2, kid2, _, _ = v.new_key("audit.app", team_id=team, activate=True)
    check_eq(v.apns("audit.app").status, 200, "after rotation")
    events = apns_mints()
    check_eq([(x.get("key_id"), x.get("fingerprint"), x.get("reason"))
              for x in events],
             [(kid1, meta1["fingerprint"], "cold"),
              (kid2, meta2["fingerprint"], "key_changed")],
             "apns.mint events after rotation")
    # The log and the audit agree on every mint of the whole run so far.
    audited = [(x.get("key_id"), x.get("reason")) for x in v.mint_events()]
    logged = [(x.get("key_id"), x.get("reason"))
              for x in v.logged_mints(len(audited))]
    check_eq(logged, audited, "logged mints == audited mints")


@runner.test
def revoked_key_gets_no_token():
    v = vault()
    meta, kid, team, _ = v.new_key("revoke.app",
                                   services=["apns", "devicecheck"])
    check_apns_answer(v.apns("revoke.app"), kid, team,
                      meta["public_key_pem"], "before revocation")
    r = v.portal("DELETE", "/v1/apps/revoke.app/keys/%s" % kid)
    check_eq(r.status, 200, "revoke: %r" % r)
    # Every key of the app revoked: 410, nothing left to activate.
    check_error(v.apns("revoke.app"), 410, "key_revoked",
                "APNs token after revocation")
    check_error(v.apns("revoke.app", body={"environment": "production"}),
                410, "key_revoked", "APNs token for production")
    check_error(v.jwt("revoke.app", {"profile": "devicecheck"}), 410,
                "key_revoked", "JWT after revocation")
    # A standby key left: 404 no_active_key (one may still be activated).
    _, kid2, _, _ = v.new_key("revoke.app", team_id=team,
                              services=["apns", "devicecheck"],
                              activate=False)
    check_error(v.apns("revoke.app"), 404, "no_active_key",
                "APNs token with a standby key")
    check_error(v.jwt("revoke.app", {"profile": "devicecheck"}), 404,
                "no_active_key", "JWT with a standby key")
    # A production key revoked, a development one standing by: the answer
    # depends on the environment asked for.
    _, kprod, _, _ = v.new_key("revoke.env", team_id=team,
                               environment="production")
    v.new_key("revoke.env", team_id=team, environment="development",
              activate=False)
    r = v.portal("DELETE", "/v1/apps/revoke.env/keys/%s" % kprod)
    check_eq(r.status, 200, "revoke: %r" % r)
    check_error(v.apns("revoke.env", body={"environment": "production"}),
                410, "key_revoked", "production, its only key revoked")
    check_error(v.apns("revoke.env", body={"environment": "development"}),
                404, "no_active_key", "development, a standby key")
    check_error(v.apns("revoke.env"), 404, "no_active_key", "any")
    # Activating the standby key serves again at once.
    r = v.portal("POST", "/v1/apps/revoke.app/keys/%s/activate" % kid2)
    check_eq(r.status, 200, "activate: %r" % r)
    check_eq(v.apns("revoke.app").json.get("key_id"), kid2,
             "token after activation")


@runner.test
def reported_rejection_inside_20_minutes_returns_the_same_token():
    v = vault()
    meta, kid, team, _ = v.new_key("reject.app")
    a = check_apns_answer(v.apns("reject.app"), kid, team,
                          meta["public_key_pem"], "first")
    before, m0 = len(v.mint_events()), v.metrics()
    for reason in ("ExpiredProviderToken", "InvalidProviderToken"):
        for tcp in (False, True):
            b = check_apns_answer(
                v.apns("reject.app", tcp=tcp,
                       body={"rejected_token": a["token"],
                             "reason": reason}),
                kid, team, meta["public_key_pem"], "after " + reason)
            check_eq(b["token"], a["token"], "token after " + reason)
    # A rejection of a token that is not the current one (another key's)
    # changes nothing either.
    v.new_key("reject.other")
    foreign = v.apns("reject.other").json["token"]
    before += 1
    b = v.apns("reject.app", body={"rejected_token": foreign,
                                   "reason": "InvalidProviderToken"})
    check_eq(b.json and b.json.get("token"), a["token"],
             "token after a foreign token's rejection")
    check_eq(len(v.mint_events()), before, "mints after the reports")
    m1 = v.metrics()
    check_eq(mints(m1) - mints(m0), 1, "mints counter after the reports "
             "(the other key's cold mint only)")
    check_eq(m1["p8vault_apns_token_rejection_reports_total"] -
             m0["p8vault_apns_token_rejection_reports_total"], 5,
             "rejection reports counted")
    rejected = v.d.log_events("apns_token_rejected")
    check(rejected, "no apns_token_rejected log line")
    for line in v.d.lines:
        check(a["token"] not in line, "a log line holds the token")


@runner.test
def environment_picks_the_key():
    v = vault()
    team = "ENV" + "0123456"
    dev, kdev, _, _ = v.new_key("env.app", team_id=team,
                                environment="development", activate=True)
    prod, kprod, _, _ = v.new_key("env.app", team_id=team,
                                  environment="production", activate=True)
    a = check_apns_answer(v.apns("env.app", body={"environment":
                                                  "development"}),
                          kdev, team, dev["public_key_pem"], "development")
    b = check_apns_answer(v.apns("env.app", body={"environment":
                                                  "production"}),
                          kprod, team, prod["public_key_pem"], "production")
    check(a["token"] != b["token"], "one token for two keys")
    r = v.jwt("env.app", {"profile": "devicecheck",
                          "environment": "production"})
    check_eq(r.status, 403, "devicecheck not enabled: %r" % r)


# -- the other Apple JWTs --------------------------------------------------

def check_jwt(v, app, body, pub, kid, team, header, claims, lifetime,
              what):
    """The profile's answer: members, exact header and claims (header and
    claims are format strings over kid, team, iat, exp), signature."""
    t0 = int(time.time())
    r = v.jwt(app, body)
    check_eq(r.status, 200, what + ": %r" % r)
    a = r.json
    check_eq(sorted(a), ["expires_at", "issued_at", "key_id", "profile",
                         "team_id", "token"], what + ": members")
    check_eq(a["profile"], body["profile"], what + ": profile")
    check_eq((a["key_id"], a["team_id"]), (kid, team), what + ": ids")
    iat = a["issued_at"]
    check(abs(iat - t0) <= CLOCK_SLACK_S, what + ": iat is not now")
    check_eq(a["expires_at"], iat + lifetime, what + ": expires_at")
    h, c = token_parts(a["token"])
    fields = {"kid": kid, "team": team, "iat": iat, "exp": iat + lifetime}
    check_eq(h, header % fields, what + ": header")
    check_eq(c, claims % fields, what + ": claims")
    verify(pub, a["token"])
    return a


H = '{"alg":"ES256","kid":"%(kid)s"}'
H_TYP = '{"alg":"ES256","kid":"%(kid)s","typ":"JWT"}'


@runner.test
def every_profile_exact():
    v = vault()
    meta, kid, team, _ = v.new_key("jwt.app", services=ALL_SERVICES)
    pub = meta["public_key_pem"]
    cases = [
        ({"profile": "app_store_connect", "issuer_id": ISSUER}, H_TYP,
         '{"iss":"' + ISSUER + '","iat":%(iat)d,"exp":%(exp)d,'
         '"aud":"appstoreconnect-v1"}', 1200),
        ({"profile": "app_store_connect", "issuer_id": ISSUER,
          "expires_in": 60, "scope": ["GET /v1/apps?filter[platform]=IOS"]},
         H_TYP,
         '{"iss":"' + ISSUER + '","iat":%(iat)d,"exp":%(exp)d,'
         '"aud":"appstoreconnect-v1",'
         '"scope":["GET /v1/apps?filter[platform]=IOS"]}', 60),
        ({"profile": "sign_in_with_apple", "client_id": "com.example.web"},
         H, '{"iss":"%(team)s","iat":%(iat)d,"exp":%(exp)d,'
         '"aud":"https://appleid.apple.com","sub":"com.example.web"}',
         86400),
        ({"profile": "sign_in_with_apple", "client_id": "c",
          "expires_in": 15777000},
         H, '{"iss":"%(team)s","iat":%(iat)d,"exp":%(exp)d,'
         '"aud":"https://appleid.apple.com","sub":"c"}', 15777000),
        ({"profile": "musickit"}, H,
         '{"iss":"%(team)s","iat":%(iat)d,"exp":%(exp)d}', 3600),
        ({"profile": "musickit", "expires_in": 15777000,
          "origin": ["https://music.example.com", "https://a.example:8443"]},
         H, '{"iss":"%(team)s","iat":%(iat)d,"exp":%(exp)d,'
         '"origin":["https://music.example.com","https://a.example:8443"]}',
         15777000),
        ({"profile": "weatherkit", "service_id": "com.example.weather"},
         '{"alg":"ES256","kid":"%(kid)s","id":"%(team)s.com.example.weather"}',
         '{"iss":"%(team)s","iat":%(iat)d,"exp":%(exp)d,'
         '"sub":"com.example.weather"}', 3600),
        ({"profile": "weatherkit", "service_id": "com.example.weather",
          "expires_in": 86400},
         '{"alg":"ES256","kid":"%(kid)s","id":"%(team)s.com.example.weather"}',
         '{"iss":"%(team)s","iat":%(iat)d,"exp":%(exp)d,'
         '"sub":"com.example.weather"}', 86400),
        ({"profile": "maps"}, H_TYP,
         '{"iss":"%(team)s","iat":%(iat)d,"exp":%(exp)d}', 3600),
        ({"profile": "maps", "origin": ["https://maps.example"]}, H_TYP,
         '{"iss":"%(team)s","iat":%(iat)d,"exp":%(exp)d,'
         '"origin":["https://maps.example"]}', 3600),
    ]
    seen = set()
    for body, header, claims, lifetime in cases:
        a = check_jwt(v, "jwt.app", body, pub, kid, team, header, claims,
                      lifetime, repr(body))
        check(a["token"] not in seen, "a JWT came back twice: not signed "
              "per request")
        seen.add(a["token"])
    verify_openssl(pub, a["token"], v.tmp)
    # Signing JWTs touches neither the APNs cache nor the mint count.
    check_eq(len([e for e in v.mint_events() if e.get("key_id") == kid]), 0,
             "APNs mints caused by JWTs")
    # DeviceCheck's token is an APNs provider token: the shared one, not
    # one per request (tests/integration/test_identity.py has the rest).
    a = check_jwt(v, "jwt.app", {"profile": "devicecheck"}, pub, kid, team,
                  H, '{"iss":"%(team)s","iat":%(iat)d}', 3600, "devicecheck")
    check_eq(v.jwt("jwt.app", {"profile": "devicecheck"}).json["token"],
             a["token"], "devicecheck asked again")
    check_eq(v.apns("jwt.app").json["token"], a["token"],
             "the APNs token after devicecheck")
    check_eq(len([e for e in v.mint_events() if e.get("key_id") == kid]), 1,
             "APNs mints after devicecheck")


@runner.test
def every_profile_limit():
    v = vault()
    v.new_key("limits.app", services=ALL_SERVICES)
    u = {"profile": "app_store_connect", "issuer_id": ISSUER}
    cases = [
        ({}, 422, "missing_field"),
        ({"profile": "apns"}, 422, "invalid_field"),
        ({"profile": "nope"}, 422, "invalid_field"),
        ({"profile": "app_store_connect"}, 422, "missing_field"),
        (dict(u, issuer_id="TEAMID1234"), 422, "invalid_field"),
        (dict(u, expires_in=1201), 422, "invalid_field"),
        (dict(u, expires_in=0), 422, "invalid_field"),
        (dict(u, expires_in=600.0), 422, "invalid_field"),
        (dict(u, expires_in="600"), 422, "invalid_field"),
        (dict(u, scope=[]), 422, "invalid_field"),
        (dict(u, scope=["GET /v1/%d" % i for i in range(33)]), 422,
         "invalid_field"),
        (dict(u, scope=["get /v1/apps"]), 422, "invalid_field"),
        (dict(u, scope=["GET /" + "a" * 252]), 422, "invalid_field"),
        (dict(u, iat=1), 422, "unknown_field"),
        (dict(u, exp=1), 422, "unknown_field"),
        (dict(u, aud="x"), 422, "unknown_field"),
        (dict(u, kid="ABCDEFGHIJ"), 422, "unknown_field"),
        (dict(u, origin=["https://a.example"]), 422, "unknown_field"),
        ({"profile": "sign_in_with_apple"}, 422, "missing_field"),
        ({"profile": "sign_in_with_apple", "client_id": "c",
          "expires_in": 15777001}, 422, "invalid_field"),
        ({"profile": "sign_in_with_apple", "client_id": "a b"}, 422,
         "invalid_field"),
        ({"profile": "sign_in_with_apple", "client_id": "x" * 256}, 422,
         "invalid_field"),
        ({"profile": "musickit", "expires_in": 15777001}, 422,
         "invalid_field"),
        ({"profile": "musickit", "origin": ["http://a.example"]}, 422,
         "invalid_field"),
        ({"profile": "musickit",
          "origin": ["https://o%d.example" % i for i in range(17)]}, 422,
         "invalid_field"),
        ({"profile": "weatherkit"}, 422, "missing_field"),
        ({"profile": "weatherkit", "service_id": "com.x",
          "expires_in": 86401}, 422, "invalid_field"),
        ({"profile": "weatherkit", "service_id": "com.a_b"}, 422,
         "invalid_field"),
        ({"profile": "devicecheck", "expires_in": 60}, 422, "unknown_field"),
        ({"profile": "maps", "expires_in": 15777001}, 422, "invalid_field"),
        ({"profile": "maps", "scope": ["GET /x"]}, 422, "unknown_field"),
    ]
    for body, status, code in cases:
        r = v.jwt("limits.app", body)
        check_error(r, status, code, repr(body)[:120])
        msg = r.json["error"]["message"]
        for val in ("TEAMID1234", "a b", "com.a_b", "http://a.example"):
            check(val not in msg, "the error message echoes a value: %r" %
                  msg)
    # Each limit itself is accepted.
    for body in (dict(u, expires_in=1200), dict(u, expires_in=1),
                 dict(u, scope=["GET /v1/%d" % i for i in range(32)]),
                 dict(u, scope=["GET /" + "a" * 251]),
                 {"profile": "sign_in_with_apple", "client_id": "x" * 255,
                  "expires_in": 15777000},
                 {"profile": "musickit", "expires_in": 15777000,
                  "origin": ["https://o%d.example" % i for i in range(16)]},
                 {"profile": "weatherkit", "service_id": "com.x",
                  "expires_in": 86400},
                 {"profile": "maps", "expires_in": 15777000}):
        check_eq(v.jwt("limits.app", body).status, 200, repr(body)[:120])
    for raw, what in ((None, "no body"), (b"[]", "an array"),
                      (b"{", "truncated JSON")):
        r = v.sign("/v1/apps/limits.app/jwt", raw=raw,
                   headers={"Content-Type": "application/json"})
        check_error(r, 400, "bad_request", what)


@runner.test
def services_the_key_was_not_uploaded_for():
    v = vault()
    v.new_key("apns.only")                   # default services: APNs
    for body in ({"profile": "devicecheck"},
                 {"profile": "musickit"},
                 {"profile": "app_store_connect", "issuer_id": ISSUER},
                 {"profile": "sign_in_with_apple", "client_id": "c"},
                 {"profile": "weatherkit", "service_id": "s"},
                 {"profile": "maps"}):
        check_error(v.jwt("apns.only", body), 403, "service_not_allowed",
                    body["profile"])
    v.new_key("music.only", services=["musickit"])
    check_error(v.apns("music.only"), 403, "service_not_allowed",
                "APNs token of a MusicKit-only key")
    check_eq(v.jwt("music.only", {"profile": "musickit"}).status, 200,
             "musickit")
    # An invalid field is refused before the key's services are looked at.
    check_error(v.jwt("apns.only", {"profile": "musickit", "x": 1}), 422,
                "unknown_field", "unknown member")


@runner.test
def who_may_sign():
    v = vault()
    v.new_key("auth.app", services=["apns", "devicecheck"])
    v.new_key("auth.other")
    routes = [("/v1/apps/auth.app/apns-token", None),
              ("/v1/apps/auth.app/jwt", {"profile": "devicecheck"})]
    for path, body in routes:
        for tcp in (False, True):
            where = "%s on %s" % (path, "tcp" if tcp else "unix")
            check_error(v.sign(path, body=body, tcp=tcp, auth=False), 401,
                        "unauthorized", where + ", no token")
            check_error(v.sign(path, body=body, tcp=tcp,
                               token="p8v_0000000000000000_" + "A" * 43),
                        401, "unauthorized", where + ", unknown token")
            r = v.sign(path, body=body, tcp=tcp, token=v.token("portal"))
            check_error(r, 403, "forbidden", where + ", portal token")
            check_eq(r.json["error"]["message"], "a portal token may not "
                     "use this route: it needs a signer or admin token",
                     where + ", portal token's message")
            r = v.sign(path, body=body, tcp=tcp,
                       token=v.token("signer", ["auth.other"]))
            check_error(r, 403, "forbidden", where + ", signer of another app")
            check_eq(r.json["error"]["message"], "this token is limited to "
                     "other apps: it may not act on app auth.app "
                     "(p8vault token create --app)",
                     where + ", other app's message")
            for tok, who in ((v.token("signer", ["auth.app"]),
                              "signer of this app"),
                             (v.token("signer"), "signer"),
                             (v.token("admin"), "admin")):
                r = v.sign(path, body=body, tcp=tcp, token=tok)
                check_eq(r.status, 200, "%s, %s: %r" % (where, who, r))
    # The signing routes do not exist on the portal listener.
    for path, body in routes:
        r = v.portal("POST", path, body or {}, token=v.token("admin"))
        check_error(r, 404, "not_found", path + " on the portal listener")
    r = v.portal("GET", "/metrics", token=v.token("admin"))
    check_error(r, 404, "not_found", "/metrics on the portal listener")
    # And the actor of a mint is the token's id, not its secret.
    for line in v.d.lines:
        for tok in v.tokens.values():
            check(tok not in line, "a log line holds a bearer token")


@runner.test
def metrics_text_and_counts():
    v = vault()
    meta, kid, team, _ = v.new_key("metrics.app")
    m0 = v.metrics()
    r = v.sign("/metrics", method="GET")
    check_eq(r.headers.get("content-type"),
             "text/plain; version=0.0.4; charset=utf-8", "Content-Type")
    text = r.body.decode()
    for family, kind in (("p8vault_http_requests_total", "counter"),
                         ("p8vault_http_request_duration_seconds",
                          "histogram"),
                         ("p8vault_apns_token_mints_total", "counter"),
                         ("p8vault_apns_token_cache_hits_total", "counter"),
                         ("p8vault_upload_rejections_total", "counter")):
        check("# TYPE %s %s\n" % (family, kind) in text,
              "no TYPE line for " + family)
    for reason in ("cold", "expired", "key_changed", "rejected_expired",
                   "rejected_invalid"):
        check('p8vault_apns_token_mints_total{reason="%s"}' % reason in m0,
              "no mints series for " + reason)
    for _ in range(3):
        check_eq(v.apns("metrics.app").status, 200, "apns-token")
    v.apns("metrics.nope")
    route = "/v1/apps/{app}/apns-token"
    ok = 'p8vault_http_requests_total{route="%s",code="200"}' % route
    nf = 'p8vault_http_requests_total{route="%s",code="404"}' % route
    m1 = v.metrics_settled(
        lambda m: m.get(ok, 0) - m0.get(ok, 0) >= 3 and
        m.get(nf, 0) - m0.get(nf, 0) >= 1, "the four requests")
    check_eq(m1.get(ok, 0) - m0.get(ok, 0), 3, "200s counted")
    check_eq(m1.get(nf, 0) - m0.get(nf, 0), 1, "404 counted")
    check_eq(v.metrics(tcp=True).get(ok), m1.get(ok), "the same on TCP")
    check_eq(m1['p8vault_apns_token_mints_total{reason="cold"}'] -
             m0['p8vault_apns_token_mints_total{reason="cold"}'], 1,
             "cold mints")
    check_eq(m1["p8vault_apns_token_cache_hits_total"] -
             m0["p8vault_apns_token_cache_hits_total"], 2, "cache hits")
    # No raw path ever becomes a label.
    check(not any("metrics.app" in k or "metrics.nope" in k for k in m1),
          "an app id in a label")
    # The histogram: cumulative buckets, +Inf equals _count.
    pre = 'p8vault_http_request_duration_seconds_bucket{route="%s",' % route
    buckets = sorted((float(k[len(pre) + 4:-2]) if "+Inf" not in k
                      else float("inf"), val)
                     for k, val in m1.items() if k.startswith(pre))
    check(len(buckets) >= 10, "too few buckets: %r" % buckets)
    counts = [c for _, c in buckets]
    check_eq(counts, sorted(counts), "buckets are cumulative")
    check_eq(buckets[-1][1], m1['p8vault_http_request_duration_seconds_count'
                                '{route="%s"}' % route], "+Inf == _count")
    # Who may read it.
    check_error(v.sign("/metrics", method="GET", auth=False), 401,
                "unauthorized", "/metrics without a token")
    check_error(v.sign("/metrics", method="GET", token=v.token("portal")),
                403, "forbidden", "/metrics with a portal token")


@runner.test
def upload_rejections_in_metrics():
    v = vault()
    m0 = v.metrics()
    r = v.portal("POST", "/v1/apps/rej.app/keys",
                 {"key_id": "ABCDEFGHIJ", "team_id": "ABCDEFGHIJ",
                  "p8": "-----BEGIN CERTIFICATE-----\nAAAA\n"
                        "-----END CERTIFICATE-----\n"})
    check_eq(r.status // 100, 4, "a certificate upload is refused: %r" % r)
    code = r.json["error"]["code"]
    m1 = v.metrics()
    series = 'p8vault_upload_rejections_total{code="%s"}' % code
    check_eq(m1.get(series, 0) - m0.get(series, 0), 1,
             "upload rejection counted as " + code)


# -- the cached-token entry, decoded from docs/security.md ----------------

def doc_section(title):
    """The text of one '### title' section of docs/security.md."""
    root = os.environ.get("P8V_SOURCE_ROOT") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "docs", "security.md")) as f:
        text = f.read()
    head = "### " + title + "\n"
    check(head in text, "docs/security.md has no section %r" % title)
    body = text.split(head, 1)[1]
    return body.split("\n#", 1)[0]


def doc_layout(section, first_header):
    """The table whose header row starts with first_header: a list of
    (offset, length or None for 'the rest', field text)."""
    rows, on = [], False
    for line in section.splitlines():
        if line.startswith("| " + first_header + " |"):
            on = True
            continue
        if on and line.startswith("|---"):
            continue
        if on and line.startswith("|"):
            off, length, field = [c.strip() for c in line.strip("|").split(
                "|", 2)]
            rows.append((int(off), int(length) if length.isdigit() else
                         None, field))
        elif on:
            break
    check(rows, "no table starting with %r in the section" % first_header)
    return rows


def field(rows, data, word):
    """The bytes of the row whose field text mentions word."""
    hits = [(o, n) for o, n, f in rows if word in f]
    check_eq(len(hits), 1, "rows naming %r" % word)
    o, n = hits[0]
    return data[o:] if n is None else data[o:o + n]


def be(b):
    """A big-endian unsigned integer, as the doc says every integer is."""
    return int.from_bytes(b, "big")


def cache_entries(state):
    """{key: value} of the cache database, read with mdb_dump (lmdb-utils:
    no code shared with the store) in its hex form."""
    import subprocess
    proc = subprocess.run(["mdb_dump", "-s", "cache", state],
                          capture_output=True, text=True, timeout=30)
    check(proc.returncode == 0, "mdb_dump -s cache: %s" % proc.stderr)
    lines = proc.stdout.split("\n")
    data = [bytes.fromhex(l.strip()) for l in
            lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]]
    return {k.decode("ascii"): v for k, v in zip(data[0::2], data[1::2])}


@runner.test
def cached_token_entry_decodes_as_documented():
    """An independent decoder, written from docs/security.md ("Cached APNs
    tokens": its tables give the offsets), opens the entry a real mint
    left in the data file with python3-cryptography and the master key
    this test made, and finds every field as documented."""
    import hashlib
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    v = vault()
    section = doc_section("Cached APNs tokens")
    value_rows = doc_layout(section, "offset")
    blob_rows = doc_layout(section, "offset (in the blob)")
    meta, kid, team, pem = v.new_key("decode.one")
    boot_before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    a = check_apns_answer(v.apns("decode.one"), kid, team,
                          meta["public_key_pem"], "the token")
    boot_after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    key = "apns/%s/%s/%s" % (team, kid, meta["fingerprint"])
    entries = cache_entries(v.state)
    check(key in entries, "no cache entry %r among %r" % (key,
                                                          sorted(entries)))
    value = entries[key]
    check_eq(len(key), 91, "the key's length")
    check_eq(field(value_rows, value, "entry format"), b"\x01",
             "entry format")
    check_eq(be(field(value_rows, value, "expires_at")), a["expires_at"],
             "expires_at")
    blob = field(value_rows, value, "blob")
    check_eq(field(blob_rows, blob, "blob format"), b"\x01",
             "blob format")
    check_eq(be(field(blob_rows, blob, "`iat`")), a["issued_at"], "iat")
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = bytes.fromhex(f.read().strip().replace("-", ""))
    check_eq(field(blob_rows, blob, "boot id").hex(), boot_id.hex(),
             "boot id")
    uptime = be(field(blob_rows, blob, "CLOCK_BOOTTIME"))
    check(boot_before <= uptime <= boot_after,
          "CLOCK_BOOTTIME at the mint %d not in [%d, %d]" % (
              uptime, boot_before, boot_after))
    env = field(blob_rows, blob, "envelope")
    # The envelope, from the doc's steps.
    with open(v.key) as f:
        mk = bytes.fromhex(f.read().strip())
    check_eq(env[0], 1, "envelope version")
    check_eq(env[1:9], hashlib.sha256(b"p8vault master key id v1" +
                                      mk).digest()[:8], "master key id")
    header_len = sum(n for o, n, f in blob_rows if n is not None)
    check_eq(header_len, 33, "the blob's header length")
    aad_tok = b"p8vault apns token v1\x00" + key.encode() + b"\x00" + \
        blob[:header_len]
    check_eq(len(aad_tok), 147, "AAD_tok's length")
    dk = AESGCM(mk).decrypt(env[9:21], env[21:69],
                            b"p8v1K\x01" + env[1:9] + aad_tok)
    token = AESGCM(dk).decrypt(env[69:81], env[81:],
                               b"p8v1P\x01" + aad_tok)
    check_eq(token.decode("ascii"), a["token"], "the sealed token")
    # Control: the header is bound, as the doc says (an uptime one
    # nanosecond off does not open).
    bad = bytearray(aad_tok)
    bad[-1] ^= 1
    try:
        AESGCM(mk).decrypt(env[9:21], env[21:69],
                           b"p8v1K\x01" + env[1:9] + bytes(bad))
        check(False, "a changed header opened")
    except InvalidTag:
        pass


@runner.test
def token_survives_a_restart():
    """Last: restarts the shared daemon on the same state directory."""
    global V
    v = vault()
    meta, kid, team, pem = v.new_key("restart.one")
    v.upload("restart.two", kid, team, pem)
    a = check_apns_answer(v.apns("restart.one"), kid, team,
                          meta["public_key_pem"], "before the restart")
    mints_before = len(v.mint_events())
    v.stop()
    v.start()
    b = check_apns_answer(v.apns("restart.two", tcp=True), kid, team,
                          meta["public_key_pem"], "after the restart")
    check_eq(b["token"], a["token"], "token after the restart")
    check_eq(b["issued_at"], a["issued_at"], "iat after the restart")
    check_eq(len(v.mint_events()), mints_before, "mints after the restart")
    m = v.metrics()
    check_eq(mints(m), 0, "mints counter after the restart")
    check_eq(m["p8vault_apns_token_cache_hits_total"], 1, "cache hits")


def main():
    try:
        runner.main()
    finally:
        if V is not None:
            V.close()


if __name__ == "__main__":
    main()
