#!/usr/bin/python3
"""provider.py: a minimal APNs provider that gets its provider tokens from
p8vault. Python 3 with httpx and h2 (Debian: python3-httpx python3-h2).

  P8V_TOKEN=<signer token> /usr/bin/python3 provider.py \
    --socket /run/p8vault/sign.sock --app com.example.app DEVICE_TOKEN...

It asks p8vault's signing API (docs/api.md, "A guide for provider daemons")
for the app's token, keeps one HTTP/2 connection to APNs per (Team ID, Key
ID) and reuses it, asks again when its copy is older than --refresh
seconds, and on 403 ExpiredProviderToken/InvalidProviderToken reports the
token to p8vault and retries once with the token it answers. One JSON line
per push on stdout; exit status 0 when APNs took them all.
"""
import argparse
import json
import os
import sys
import time

import httpx

env = os.environ.get
p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--socket", default=env("P8V_SIGN_SOCKET", "/run/p8vault/sign.sock"))
p.add_argument("--sign-url", default=env("P8V_SIGN_URL"), help="http://HOST:PORT of --sign-listen")
p.add_argument("--token-file", help="a signer token (else $P8V_TOKEN)")
p.add_argument("--apns-url", default=env("APNS_URL", "https://api.sandbox.push.apple.com"))
p.add_argument("--ca", default=env("APNS_CA_FILE"), help="CA file for APNs (tests)")
p.add_argument("--app", default=env("P8V_APP"))
p.add_argument("--environment", help="development|production: for apps with a key per environment")
p.add_argument("--topic", help="default: the app id")
p.add_argument("--push-type", default="alert")
p.add_argument("--payload", default='{"aps":{"alert":"Hello from p8vault"}}')
p.add_argument("--devices", help="a file of device tokens, one a line")
p.add_argument("--pushes", help="a file of JSON lines {app, device[, topic, payload, push_type]}")
p.add_argument("--refresh", type=float, default=300, help="seconds a token copy is used")
p.add_argument("device", nargs="*")
opt = p.parse_args()
if opt.token_file:
    signer_token = open(opt.token_file).read().strip()
else:
    signer_token = env("P8V_TOKEN") or sys.exit(
        "a signer token is needed: $P8V_TOKEN or --token-file")

# The pushes to send: --pushes lines, or one per device for --app.
jobs = []
if opt.pushes:
    jobs += [json.loads(line) for line in open(opt.pushes) if line.strip()]
devices = opt.device + (open(opt.devices).read().split() if opt.devices else [])
jobs += [{"app": opt.app, "device": d} for d in devices]
if not jobs or not all(j.get("app") and j.get("device") for j in jobs):
    sys.exit("nothing to send: give --app and device tokens, or --pushes FILE")

# The signing API: over the unix socket (the URL's host is ignored), or TCP.
vault = httpx.Client(base_url=opt.sign_url or "http://localhost", timeout=30,
                     transport=None if opt.sign_url else httpx.HTTPTransport(uds=opt.socket))


class VaultError(Exception):
    pass


tokens = {}   # app -> {token, key_id, team_id, expires_at, fetched}


def token(app, rejected=None):
    """The app's token: our copy while it is younger than --refresh and not
    near its expires_at; else p8vault's (the same shared token for every
    caller until p8vault renews it). With rejected, report it first."""
    have = tokens.get(app)
    if (rejected is None and have and time.monotonic() - have["fetched"] < opt.refresh
            and time.time() < have["expires_at"] - 60):
        return have
    body = {}
    if opt.environment:
        body["environment"] = opt.environment
    if rejected:
        body.update(rejected_token=rejected[0], reason=rejected[1])
    r = vault.post("/v1/apps/%s/apns-token" % app, json=body,
                   headers={"authorization": "Bearer " + signer_token})
    if r.status_code != 200:  # e.g. 404 no_active_key, 410 key_revoked, 503 (retry later)
        e = r.json().get("error", {})
        raise VaultError("p8vault %d %s: %s" % (r.status_code, e.get("code"), e.get("message")))
    tokens[app] = dict(r.json(), fetched=time.monotonic())
    return tokens[app]


# One HTTP/2 connection per (team, key): an httpx.Client with http2 keeps
# one connection to its origin and multiplexes on it. APNs takes one team
# per connection, and unrelated keys of a team must not share one either
# (docs/api.md, "Warnings").
connections = {}


def connection(t):
    key = (t["team_id"], t["key_id"])
    if key not in connections:
        connections[key] = httpx.Client(base_url=opt.apns_url, http2=True, timeout=30,
                                        verify=opt.ca or True)
    return connections[key]


def send(t, job):
    """One request to APNs: {status, apns_id, reason}."""
    push_type = job.get("push_type", opt.push_type)
    headers = {"authorization": "bearer " + t["token"],
               "apns-topic": job.get("topic") or opt.topic or job["app"],
               "apns-push-type": push_type, "content-type": "application/json"}
    if push_type == "background":
        headers["apns-priority"] = "5"    # APNs requires 5 for background
    payload = json.dumps(job["payload"]) if "payload" in job else opt.payload
    r = connection(t).post("/3/device/" + job["device"], content=payload.encode(),
                           headers=headers)
    if r.http_version != "HTTP/2":
        raise RuntimeError("APNs answered over %s, not HTTP/2" % r.http_version)
    return {"status": r.status_code, "apns_id": r.headers.get("apns-id"),
            "reason": r.json().get("reason") if r.content else None}


failed = 0
for job in jobs:
    t = None
    try:
        t = token(job["app"])
        r = send(t, job)
        if r["status"] == 403 and r["reason"] in ("ExpiredProviderToken",
                                                  "InvalidProviderToken"):
            # Report exactly the token APNs refused, then retry once with p8vault's answer.
            old = t["token"]
            t = token(job["app"], (old, r["reason"]))
            if t["token"] == old and r["reason"] == "ExpiredProviderToken":
                print("%s: p8vault kept the token APNs calls expired: check this host's clock"
                      % job["app"], file=sys.stderr)
            r = dict(send(t, job), retried=True)
            if r["status"] == 403 and r["reason"] == "InvalidProviderToken":
                print("%s: APNs refuses p8vault's token again: key revoked at Apple, or "
                      "Key ID/Team ID/topic not a pair; stop sending and alert" % job["app"],
                      file=sys.stderr)
        elif r["status"] == 429 and r["reason"] == "TooManyProviderTokenUpdates":
            print("%s: something besides p8vault mints tokens for team %s"
                  % (job["app"], t["team_id"]), file=sys.stderr)
    except (httpx.HTTPError, VaultError, RuntimeError, ValueError) as e:
        r = {"status": 0, "reason": str(e)}
    failed += r["status"] != 200
    line = dict(app=job["app"], team_id=t and t["team_id"], key_id=t and t["key_id"],
                device=job["device"], **r)
    print(json.dumps({k: v for k, v in line.items() if v is not None}), flush=True)
for c in connections.values():
    c.close()
sys.exit(1 if failed else 0)
