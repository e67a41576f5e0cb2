// node_peer.mjs: the peer p8vault is compared with: a Node.js HTTP server
// that does the signing API's job, with the `jose` package.
//
//   BENCH_TOKEN=p8v_<id>_<secret> node node_peer.mjs --key AuthKey.p8 \
//       --mode sign|cached [--port P]
//
// As p8vaultd does for every request: POST /v1/apps/{app}/apns-token
// (cached) or /v1/apps/{app}/jwt (sign) only, the app must be known (404),
// and the bearer token must be BENCH_TOKEN's: its id known, the SHA-256 of
// its secret compared in constant time with the one stored (401).
// sign:   every request gets a fresh ES256 JWT (jose's SignJWT, key
//         imported once at start with importPKCS8), as a /jwt answer;
// cached: every request gets the same token, minted once at start, as a
//         cached apns-token answer.
// Prints "listening PORT" once it listens on 127.0.0.1. One process, one
// event loop: how such a service is usually run (a cluster of N would
// split the two cores with wrk the same way p8vaultd's threads do).
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { importPKCS8, SignJWT } from 'jose';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const mode = opt('--mode', 'sign');
const port = Number(opt('--port', '0'));
const key = await importPKCS8(readFileSync(opt('--key'), 'utf8'), 'ES256');
const kid = 'ABC1234567';
const team = 'DEF1234567';

// The cached mode's token is an APNs token; the sign mode's a MusicKit
// token (the APNs shape and an exp), as the jwt row asks p8vaultd for.
async function mint(exp) {
  const iat = Math.floor(Date.now() / 1000);
  const claims = exp ? { iss: team, iat, exp: iat + 3600 } : { iss: team, iat };
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid })
    .sign(key);
  return { token, key_id: kid, team_id: team, issued_at: iat, expires_at: iat + 3600 };
}

const cached = JSON.stringify(await mint());
const headers = {
  'Content-Type': 'application/json',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
};

// The credentials, as a store would hold them: token id -> SHA-256 of the
// secret. The apps this peer has a key for.
const credentials = new Map();
const bearer = process.env.BENCH_TOKEN || '';
const parts = /^p8v_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(bearer);
if (parts === null) {
  console.error('node_peer: BENCH_TOKEN must hold a p8v_ token');
  process.exit(2);
}
credentials.set(parts[1], createHash('sha256').update(parts[2]).digest());
const apps = new Set(['com.bench.app']);
const route = mode === 'cached' ? 'apns-token' : 'jwt';

const fail = (res, status, code) => {
  res.writeHead(status, headers);
  res.end(`{"error":{"code":"${code}"}}`);
};

// 0 if the Authorization header carries a known token, else the status.
function authenticate(value) {
  const m = /^Bearer (p8v_([0-9a-f]{16})_([A-Za-z0-9_-]{43}))$/.exec(value || '');
  if (m === null) return 401;
  const stored = credentials.get(m[2]);
  if (stored === undefined) return 401;
  const hash = createHash('sha256').update(m[3]).digest();
  return timingSafeEqual(hash, stored) ? 0 : 401;
}

const server = http.createServer((req, res) => {
  // Read (and drop) the body, as the vault does, then answer.
  req.on('data', () => {});
  req.on('end', async () => {
    try {
      const path = req.url.split('?')[0].split('/');
      // ['', 'v1', 'apps', app, route]
      if (path.length !== 5 || path[1] !== 'v1' || path[2] !== 'apps' ||
          path[4] !== route) return fail(res, 404, 'not_found');
      if (req.method !== 'POST') return fail(res, 405, 'method_not_allowed');
      const status = authenticate(req.headers.authorization);
      if (status !== 0) return fail(res, status, 'unauthorized');
      if (!apps.has(decodeURIComponent(path[3])))
        return fail(res, 404, 'app_not_found');
      const body = mode === 'cached' ? cached
        : JSON.stringify({ ...(await mint(true)), profile: 'musickit' });
      res.writeHead(200, headers);
      res.end(body);
    } catch (e) {
      fail(res, 500, 'internal_error');
    }
  });
});
server.keepAliveTimeout = 15000;
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
