// node_peer.mjs: the peer p8vault is compared with: a Node.js HTTP server
// that answers like the signing API, with the `jose` package.
//
//   node node_peer.mjs --key AuthKey.p8 --mode sign|cached [--port P]
//
// sign:   every request gets a fresh ES256 JWT (jose's SignJWT, key
//         imported once at start with importPKCS8), as a /jwt answer;
// cached: every request gets the same token, minted once at start, as a
//         cached apns-token answer.
// Prints "listening PORT" once it listens on 127.0.0.1. One process, one
// event loop: how such a service is usually run (a cluster of N would
// split the two cores with wrk the same way p8vaultd's threads do).
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

async function mint() {
  const iat = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ iss: team, iat })
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

const server = http.createServer((req, res) => {
  // Read (and drop) the body, as the vault does, then answer.
  req.on('data', () => {});
  req.on('end', async () => {
    try {
      const body = mode === 'cached' ? cached
        : JSON.stringify({ ...(await mint()), profile: 'devicecheck' });
      res.writeHead(200, headers);
      res.end(body);
    } catch (e) {
      res.writeHead(500, headers);
      res.end('{"error":{"code":"internal_error"}}');
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
