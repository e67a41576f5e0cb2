// apns_server.mjs: a test APNs that accepts pushes, for the provider
// examples (examples/) and tests/integration/test_providers.py.
//
// Unlike tests/apns_mock.mjs (the key check: every good request ends in
// 400 BadDeviceToken), this one delivers: a push that passes every check
// gets 200 and an apns-id. It checks provider tokens as Apple documents
// them (../shared/APPLE-TOKENS.md; Apple, "Establishing a token-based
// connection to APNs", "Handling notification responses from APNs"):
//   - authorization: bearer <JWS>, else 403 MissingProviderToken;
//   - header alg ES256 and a kid, claims iss and an integer iat, an ES256
//     signature (raw r||s) by the public key registered for kid, and iss
//     the team registered with kid, else 403 InvalidProviderToken;
//   - iat at most an hour old, else 403 ExpiredProviderToken;
//   - one team per HTTP/2 connection, else 403 InvalidProviderToken;
//   - a new token of a team at most every 20 minutes, else 429
//     TooManyProviderTokenUpdates;
// then the request itself (apns-topic, apns-push-type, the device token,
// the payload). Pushes must come over HTTP/2, as APNs speaks nothing else.
//
// Usage: node apns_server.mjs CERT KEY
// Listens on 127.0.0.1, port 0, and prints {"port": N} on stdout. The same
// port (HTTP/2, or HTTP/1.1 for the test's control requests) serves:
//   POST /3/device/<device token>   a push, as APNs
//   POST /test/keys   {"team", "key_id", "public_key_pem"[, "topics"]}
//                     registers a key (as Apple knows it)
//   POST /test/reject {"team", "reason", "count"}: the next `count` pushes
//                     of the team whose token passes get 403 `reason`
//                     instead (APNs refusing the current token)
//   GET  /test/stats  per team: pushes accepted, distinct tokens accepted,
//                     HTTP/2 sessions seen, refusals by reason
// On SIGTERM or SIGINT it prints {"stats": ...} and exits.

import crypto from "node:crypto";
import fs from "node:fs";
import http2 from "node:http2";

const TOKEN_MAX_AGE_S = 3600;        // ExpiredProviderToken after an hour
const TOKEN_UPDATE_MIN_S = 20 * 60;  // TooManyProviderTokenUpdates below
const CLOCK_AHEAD_S = 60;            // an iat this far ahead is invalid
const PAYLOAD_MAX = 4096;            // APNs's limit for a regular push

const [certFile, keyFile] = process.argv.slice(2);
const keys = new Map();   // key id -> {team, key, topics}
const teams = new Map();  // team -> {token, at, tokens, sessions, ...}
let sessionIds = 0;

function team(t) {
  if (!teams.has(t))
    teams.set(t, { token: null, at: 0, tokens: new Set(), sessions: new Set(),
      pushes: 0, refused: {}, reject: null });
  return teams.get(t);
}

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

// The provider token's verdict: [status, reason, team] where status 0
// means APNs accepts the token.
function checkToken(auth, session) {
  if (!auth || !auth.startsWith("bearer "))
    return [403, "MissingProviderToken", null];
  const token = auth.slice(7);
  const parts = token.split(".");
  if (parts.length !== 3)
    return [403, "InvalidProviderToken", null];
  let header, claims;
  try {
    header = b64urlJson(parts[0]);
    claims = b64urlJson(parts[1]);
  } catch (e) {
    return [403, "InvalidProviderToken", null];
  }
  if (header.alg !== "ES256" || typeof header.kid !== "string" ||
      typeof claims.iss !== "string" || !Number.isInteger(claims.iat))
    return [403, "InvalidProviderToken", null];
  const k = keys.get(header.kid);
  if (!k || k.team !== claims.iss)
    return [403, "InvalidProviderToken", null];
  const sig = Buffer.from(parts[2], "base64url");
  if (sig.length !== 64 || !crypto.verify("sha256",
      Buffer.from(parts[0] + "." + parts[1], "ascii"),
      { key: k.key, dsaEncoding: "ieee-p1363" }, sig))
    return [403, "InvalidProviderToken", null];
  const now = Math.floor(Date.now() / 1000);
  if (claims.iat > now + CLOCK_AHEAD_S)
    return [403, "InvalidProviderToken", null];
  if (now - claims.iat > TOKEN_MAX_AGE_S)
    return [403, "ExpiredProviderToken", claims.iss];
  if (session.team !== undefined && session.team !== claims.iss)
    return [403, "InvalidProviderToken", claims.iss];
  session.team = claims.iss;
  const t = team(claims.iss);
  t.sessions.add(session.id);
  if (t.token !== token) {
    if (t.token !== null && now - t.at < TOKEN_UPDATE_MIN_S)
      return [429, "TooManyProviderTokenUpdates", claims.iss];
    t.token = token;
    t.at = now;
    t.tokens.add(token);
  }
  if (t.reject && t.reject.count > 0) {
    t.reject.count--;
    return [403, t.reject.reason, claims.iss];
  }
  return [0, null, claims.iss];
}

// A push, once its body is read: [status, reason, team].
function push(headers, body, session) {
  const m = /^\/3\/device\/([^/]*)$/.exec(headers[":path"]);
  if (!m)
    return [404, "BadPath", null];
  const verdict = checkToken(headers["authorization"], session);
  if (verdict[0] !== 0)
    return verdict;
  const t = verdict[2];
  if (!/^[0-9a-fA-F]{64,200}$/.test(m[1]))
    return [400, "BadDeviceToken", t];
  const topic = headers["apns-topic"];
  if (!topic)
    return [400, "MissingTopic", t];
  const k = keys.get(b64urlJson(headers["authorization"].slice(7)
    .split(".")[0]).kid);
  if (k.topics && !k.topics.includes(topic))
    return [400, "TopicDisallowed", t];
  if (!["alert", "background", "voip", "complication", "fileprovider", "mdm",
      "liveactivity", "pushtotalk", "location"].includes(
      headers["apns-push-type"]))
    return [400, "InvalidPushType", t];
  if (body.length === 0)
    return [400, "PayloadEmpty", t];
  if (body.length > PAYLOAD_MAX)
    return [413, "PayloadTooLarge", t];
  try {
    const p = JSON.parse(body.toString("utf8"));
    if (typeof p !== "object" || p === null || Array.isArray(p))
      throw new Error("not an object");
  } catch (e) {
    return [400, "BadPayload", t];   // Apple names no reason for this
  }
  return [200, null, t];
}

function stats() {
  const out = {};
  for (const [name, t] of teams)
    out[name] = { pushes: t.pushes, tokens: t.tokens.size,
      sessions: t.sessions.size, refused: t.refused };
  return out;
}

function json(res, status, obj, extra = {}) {
  res.writeHead(status, { "content-type": "application/json", ...extra });
  res.end(JSON.stringify(obj));
}

// Control requests of the test (HTTP/1.1 or HTTP/2).
function control(req, res, body) {
  let msg = {};
  try {
    msg = body.length ? JSON.parse(body.toString("utf8")) : {};
  } catch (e) {
    return json(res, 400, { error: "not JSON" });
  }
  if (req.method === "GET" && req.url === "/test/stats")
    return json(res, 200, { stats: stats() });
  if (req.method === "POST" && req.url === "/test/keys") {
    keys.set(msg.key_id, { team: msg.team,
      key: crypto.createPublicKey(msg.public_key_pem),
      topics: msg.topics || null });
    team(msg.team);
    return json(res, 200, { ok: true });
  }
  if (req.method === "POST" && req.url === "/test/reject") {
    team(msg.team).reject = { reason: msg.reason, count: msg.count || 1 };
    return json(res, 200, { ok: true });
  }
  return json(res, 404, { error: "no such control route" });
}

const server = http2.createSecureServer({ cert: fs.readFileSync(certFile),
  key: fs.readFileSync(keyFile), allowHTTP1: true });
server.on("session", (session) => { session.p8v = { id: ++sessionIds }; });
server.on("request", (req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    if (req.url.startsWith("/test/"))
      return control(req, res, body);
    if (req.httpVersion !== "2.0")
      return json(res, 505, { reason: "HTTP2Required" });
    // APNs answers every request with an apns-id: the request's own if it
    // sent a valid one, else a new UUID.
    const given = req.headers["apns-id"];
    const apnsId = /^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$/i.test(
      given || "") ? given : crypto.randomUUID();
    const [status, reason, t] = req.method === "POST" ?
      push(req.headers, body, req.stream.session.p8v) :
      [405, "MethodNotAllowed", null];
    if (t !== null) {
      if (status === 200)
        team(t).pushes++;
      else
        team(t).refused[reason] = (team(t).refused[reason] || 0) + 1;
    }
    if (status === 200) {
      res.writeHead(200, { "apns-id": apnsId });
      res.end();
    } else {
      json(res, status, { reason }, { "apns-id": apnsId });
    }
  });
});

function finish() {
  process.stdout.write(JSON.stringify({ stats: stats() }) + "\n");
  process.exit(0);
}

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) +
    "\n");
});
process.on("SIGTERM", finish);
process.on("SIGINT", finish);
