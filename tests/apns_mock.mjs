// apns_mock.mjs: a mock APNs for tests/integration/test_check.py.
//
// HTTP/2 over TLS on loopback (node's built-in http2 module; the
// certificate comes from a throwaway CA the test makes with openssl). It
// answers POST /3/device/<token> as APNs documents ("Establishing a
// token-based connection to APNs", "Handling notification responses from
// APNs"), checking in APNs's order: the provider token first (present,
// ES256 JWS, kid and iss of a registered key of that team, not revoked,
// signature by the registered public key, iat at most an hour old, at
// most one team per connection, no new token of a team within 20
// minutes of the last), then the key's environment, then the topic, and
// only then the device token, which no device has here: a request that
// passes everything gets 400 BadDeviceToken.
//
// Usage: node apns_mock.mjs CERT KEY
// It listens on three ports: "development" (the sandbox), "production",
// and "silent" (TLS and HTTP/2, but never answers a request), and prints
// {"ports": {...}} on stdout. Then it reads JSON lines on stdin:
//   {"register": {"team", "key_id", "public_key_pem", "environment":
//     "development"|"production"|"both", "topics": [...]}}
//   {"revoke": "<key id>"}
// and answers each with {"ack": n}. Every request it answers is printed
// as {"request": {"environment", "token", "topic", "status", "reason"}}.
// It exits when stdin closes.

import crypto from "node:crypto";
import fs from "node:fs";
import http2 from "node:http2";
import readline from "node:readline";

const [certFile, keyFile] = process.argv.slice(2);
const tls = { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile),
  allowHTTP1: false };

const keys = new Map();         // key id -> {team, key, environment, topics, revoked}
const teamTokens = new Map();   // team -> {token, at}
const TOKEN_MAX_AGE_S = 3600;   // ExpiredProviderToken after an hour
const TOKEN_UPDATE_MIN_S = 20 * 60; // TooManyProviderTokenUpdates below

function emit(o) {
  process.stdout.write(JSON.stringify(o) + "\n");
}

function b64urlJson(part) {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
}

// The provider token's verdict: null when APNs accepts it, else
// [status, reason]. session remembers the team of the connection.
function checkToken(auth, env, session) {
  if (!auth || !auth.startsWith("bearer "))
    return [403, "MissingProviderToken"];
  const token = auth.slice(7);
  const parts = token.split(".");
  if (parts.length !== 3)
    return [403, "InvalidProviderToken"];
  let header, claims;
  try {
    header = b64urlJson(parts[0]);
    claims = b64urlJson(parts[1]);
  } catch (e) {
    return [403, "InvalidProviderToken"];
  }
  if (header.alg !== "ES256" || typeof header.kid !== "string" ||
      typeof claims.iss !== "string" || !Number.isInteger(claims.iat))
    return [403, "InvalidProviderToken"];
  const k = keys.get(header.kid);
  if (!k || k.team !== claims.iss || k.revoked)
    return [403, "InvalidProviderToken"];
  const sig = Buffer.from(parts[2], "base64url");
  const ok = sig.length === 64 && crypto.verify("sha256",
    Buffer.from(parts[0] + "." + parts[1], "ascii"),
    { key: k.key, dsaEncoding: "ieee-p1363" }, sig);
  if (!ok)
    return [403, "InvalidProviderToken"];
  const now = Math.floor(Date.now() / 1000);
  if (claims.iat > now + 60)
    return [403, "InvalidProviderToken"];
  if (now - claims.iat > TOKEN_MAX_AGE_S)
    return [403, "ExpiredProviderToken"];
  if (session.team !== undefined && session.team !== claims.iss)
    return [403, "InvalidProviderToken"];
  session.team = claims.iss;
  const last = teamTokens.get(claims.iss);
  if (last && last.token !== token && now - last.at < TOKEN_UPDATE_MIN_S)
    return [429, "TooManyProviderTokenUpdates"];
  if (!last || last.token !== token)
    teamTokens.set(claims.iss, { token, at: now });
  if (k.environment !== "both" && k.environment !== env)
    return [403, "BadEnvironmentKeyInToken"];
  return null;
}

function answer(stream, env, token, topic, status, reason) {
  emit({ request: { environment: env, token, topic, status, reason } });
  const h = { ":status": status, "apns-id": crypto.randomUUID() };
  if (reason) {
    h["content-type"] = "application/json";
    stream.respond(h);
    stream.end(JSON.stringify({ reason }));
  } else {
    stream.respond(h);
    stream.end();
  }
}

function serve(env) {
  const server = http2.createSecureServer(tls);
  server.on("session", (session) => { session.p8v = {}; });
  server.on("stream", (stream, headers) => {
    const chunks = [];
    stream.on("data", (c) => chunks.push(c));
    stream.on("end", () => {
      if (env === "silent")
        return;                 // never answers
      const auth = headers["authorization"];
      const token = auth && auth.startsWith("bearer ") ? auth.slice(7) : null;
      const topic = headers["apns-topic"] || null;
      const path = headers[":path"] || "";
      if (headers[":method"] !== "POST")
        return answer(stream, env, token, topic, 405, "MethodNotAllowed");
      const m = /^\/3\/device\/([0-9a-fA-F]+)$/.exec(path);
      if (!m)
        return answer(stream, env, token, topic, 404, "BadPath");
      const verdict = checkToken(auth, env, stream.session.p8v);
      if (verdict)
        return answer(stream, env, token, topic, verdict[0], verdict[1]);
      if (!topic)
        return answer(stream, env, token, topic, 400, "MissingTopic");
      const k = keys.get(b64urlJson(token.split(".")[0]).kid);
      if (!k.topics.includes(topic))
        return answer(stream, env, token, topic, 400, "TopicDisallowed");
      const pushType = headers["apns-push-type"];
      if (pushType !== "alert" && pushType !== "background")
        return answer(stream, env, token, topic, 400, "InvalidPushType");
      if (!["5", "10"].includes(headers["apns-priority"]))
        return answer(stream, env, token, topic, 400, "BadPriority");
      if (!/^[0-9]+$/.test(headers["apns-expiration"] || ""))
        return answer(stream, env, token, topic, 400, "BadExpirationDate");
      let payload;
      try {
        payload = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch (e) {
        return answer(stream, env, token, topic, 400, "BadPayload");
      }
      if (typeof payload !== "object" || !payload.aps)
        return answer(stream, env, token, topic, 400, "PayloadEmpty");
      // No device of this mock has a token: every one is bad.
      return answer(stream, env, token, topic, 400, "BadDeviceToken");
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

const servers = {};
for (const env of ["development", "production", "silent"])
  servers[env] = await serve(env);
emit({ ports: Object.fromEntries(Object.entries(servers).map(
  ([env, s]) => [env, s.address().port])) });

let acks = 0;
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const msg = JSON.parse(line);
  if (msg.register) {
    const r = msg.register;
    keys.set(r.key_id, { team: r.team, key: crypto.createPublicKey(
      r.public_key_pem), environment: r.environment, topics: r.topics,
      revoked: false });
  } else if (msg.revoke) {
    keys.get(msg.revoke).revoked = true;
  }
  emit({ ack: ++acks });
});
rl.on("close", () => process.exit(0));
