#!/usr/bin/env node
// provider.mjs: a minimal APNs provider that gets its provider tokens from
// p8vault. Node.js 18 or later, built-in modules only.
//
//   P8V_TOKEN=<signer token> node provider.mjs --socket /run/p8vault/sign.sock \
//     --app com.example.app DEVICE_TOKEN...
//
// It asks p8vault's signing API (docs/api.md, "A guide for provider
// daemons") for the app's token, keeps one HTTP/2 connection to APNs per
// (Team ID, Key ID) and reuses it, asks again when its copy is older than
// --refresh seconds, and on 403 ExpiredProviderToken/InvalidProviderToken
// reports the token to p8vault and retries once with the token it answers.
// One JSON line per push on stdout; exit status 0 when APNs took them all.
import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import { parseArgs } from "node:util";

const env = process.env;
const str = (dflt) => ({ type: "string", default: dflt });
const { values: opt, positionals } = parseArgs({ allowPositionals: true, options: {
  socket: str(env.P8V_SIGN_SOCKET || "/run/p8vault/sign.sock"),
  "sign-url": str(env.P8V_SIGN_URL),      // http://HOST:PORT of --sign-listen, instead
  "token-file": str(),                    // a signer token (else $P8V_TOKEN)
  "apns-url": str(env.APNS_URL || "https://api.sandbox.push.apple.com"),
  ca: str(env.APNS_CA_FILE),              // CA file for APNs (tests)
  app: str(env.P8V_APP),
  environment: str(),                     // development|production: a key per environment
  topic: str(),                           // default: the app id
  "push-type": str("alert"),
  payload: str('{"aps":{"alert":"Hello from p8vault"}}'),
  devices: str(),                         // a file of device tokens, one a line
  pushes: str(),                          // JSON lines {app, device[, topic, payload, push_type]}
  refresh: str("300"),                    // seconds a token copy is used before asking again
} });
const signerToken = opt["token-file"] ?
  fs.readFileSync(opt["token-file"], "utf8").trim() : env.P8V_TOKEN;
const die = (msg) => { console.error(`provider.mjs: ${msg}`); process.exit(2); };
if (!signerToken) die("a signer token is needed: $P8V_TOKEN or --token-file");
const ca = opt.ca ? fs.readFileSync(opt.ca) : undefined;
const refreshMs = Number(opt.refresh) * 1000;

// The pushes to send: --pushes lines, or one per device for --app.
const jobs = [];
if (opt.pushes)
  for (const line of fs.readFileSync(opt.pushes, "utf8").split("\n"))
    if (line.trim()) jobs.push(JSON.parse(line));
const devices = [...positionals,
  ...(opt.devices ? fs.readFileSync(opt.devices, "utf8").split(/\s+/) : [])];
for (const device of devices.filter(Boolean))
  jobs.push({ app: opt.app, device });
if (!jobs.length || jobs.some((j) => !j.app || !j.device))
  die("nothing to send: give --app and device tokens, or --pushes FILE");

// POST /v1/apps/{app}/apns-token on the signing socket (or --sign-url).
function askVault(app, body) {
  const data = JSON.stringify(body);
  const url = new URL(`/v1/apps/${encodeURIComponent(app)}/apns-token`,
    opt["sign-url"] || "http://localhost");   // on the socket, the host is ignored
  const where = opt["sign-url"] ? { host: url.hostname, port: url.port } :
    { socketPath: opt.socket };
  return new Promise((resolve, reject) => {
    const req = http.request({ ...where, path: url.pathname, method: "POST", headers: {
      authorization: `Bearer ${signerToken}`, "content-type": "application/json",
      "content-length": Buffer.byteLength(data) } }, (res) => {
      let text = "";
      res.on("data", (c) => { text += c; });
      res.on("end", () => {
        let answer;
        try { answer = JSON.parse(text); } catch (e) { return reject(e); }
        // e.g. 404 no_active_key, 410 key_revoked: stop; 503: retry later
        if (res.statusCode !== 200)
          return reject(new Error(`p8vault ${res.statusCode} ` +
            `${answer.error?.code}: ${answer.error?.message}`));
        resolve(answer);
      });
    });
    req.on("error", reject);
    req.end(data);
  });
}

// The app's token: our copy while it is younger than --refresh and not
// near its expires_at; else p8vault's (the same shared token for every
// caller until p8vault renews it). With `rejected`, report it first.
const tokens = new Map();   // app -> {token, key_id, team_id, expires_at, fetched}
async function token(app, rejected) {
  const have = tokens.get(app);
  if (!rejected && have && Date.now() - have.fetched < refreshMs &&
      Date.now() / 1000 < have.expires_at - 60)
    return have;
  const body = {};
  if (opt.environment) body.environment = opt.environment;
  if (rejected) Object.assign(body, { rejected_token: rejected.token, reason: rejected.reason });
  const t = { ...await askVault(app, body), fetched: Date.now() };
  tokens.set(app, t);
  return t;
}

// One HTTP/2 connection per (team, key), opened on first use and kept:
// APNs takes one team per connection, and unrelated keys of a team must
// not share one either (docs/api.md, "Warnings").
const sessions = new Map();
function session(t) {
  const id = `${t.team_id}/${t.key_id}`;
  let s = sessions.get(id);
  if (!s || s.closed || s.destroyed) {
    s = http2.connect(opt["apns-url"], { ca });
    s.on("error", (e) => console.error(`apns connection ${id}: ${e.message}`));
    s.on("close", () => { if (sessions.get(id) === s) sessions.delete(id); });
    s.on("goaway", () => { if (sessions.get(id) === s) sessions.delete(id); });
    sessions.set(id, s);
  }
  return s;
}

// One request to APNs: {status, apns_id, reason}.
function send(t, job) {
  const pushType = job.push_type || opt["push-type"];
  const headers = { ":method": "POST", ":path": `/3/device/${job.device}`,
    authorization: `bearer ${t.token}`,
    "apns-topic": job.topic || opt.topic || job.app,
    "apns-push-type": pushType, "content-type": "application/json" };
  if (pushType === "background") headers["apns-priority"] = "5";  // APNs requires 5 for background
  return new Promise((resolve, reject) => {
    const req = session(t).request(headers);
    let status, apnsId, text = "";
    req.on("response", (h) => { status = h[":status"]; apnsId = h["apns-id"]; });
    req.on("data", (c) => { text += c; });
    req.on("end", () => {
      try {
        resolve({ status, apns_id: apnsId, reason: text ? JSON.parse(text).reason : undefined });
      } catch (e) { reject(e); }
    });
    req.on("error", reject);
    req.end(job.payload ? JSON.stringify(job.payload) : opt.payload);
  });
}

let failed = 0;
for (const job of jobs) {
  let t, r;
  try {
    t = await token(job.app);
    r = await send(t, job);
    if (r.status === 403 && ["ExpiredProviderToken", "InvalidProviderToken"].includes(r.reason)) {
      // Report exactly the token APNs refused, then retry once with p8vault's answer.
      const old = t.token;
      t = await token(job.app, { token: old, reason: r.reason });
      if (t.token === old && r.reason === "ExpiredProviderToken")
        console.error(`${job.app}: p8vault kept the token APNs calls expired: ` +
          "check this host's clock");
      r = { ...await send(t, job), retried: true };
      if (r.status === 403 && r.reason === "InvalidProviderToken")
        console.error(`${job.app}: APNs refuses p8vault's token again: key revoked at ` +
          "Apple, or Key ID/Team ID/topic not a pair; stop sending and alert");
    } else if (r.status === 429 && r.reason === "TooManyProviderTokenUpdates") {
      console.error(`${job.app}: something besides p8vault mints tokens for team ${t.team_id}`);
    }
  } catch (e) {
    r = { status: 0, reason: e.message };
  }
  if (r.status !== 200) failed++;
  console.log(JSON.stringify({ app: job.app, team_id: t?.team_id, key_id: t?.key_id,
    device: job.device, ...r }));
}
for (const s of sessions.values()) s.close();
process.exitCode = failed ? 1 : 0;
