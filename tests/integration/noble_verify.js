// noble_verify.js: verify ES256 tokens with @noble/curves (p256, lowS:
// true, its default: a signature whose s > n/2 is refused), an
// implementation that shares no code with p8vault or OpenSSL.
//
// Input (stdin): JSON [{"token": "h.c.s", "pub": "04..." (hex, 65 bytes)}].
// Output (stdout): JSON {"ok": [true|false, ...], "high_s": [bool, ...]}.
// NODE_PATH must hold the node_modules @noble/curves was installed into
// (tests/integration/test_low_s.py does it).
'use strict';
const crypto = require('crypto');
const { p256 } = require('@noble/curves/p256');

const N = p256.CURVE.n;

function b64url(s) {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const items = JSON.parse(input);
  const ok = [], high = [];
  for (const it of items) {
    const parts = it.token.split('.');
    const sig = b64url(parts[2]);
    const digest = crypto.createHash('sha256')
      .update(parts[0] + '.' + parts[1], 'ascii').digest();
    const s = BigInt('0x' + sig.subarray(32).toString('hex'));
    high.push(s > N / 2n);
    let v = false;
    try {
      v = p256.verify(new Uint8Array(sig), new Uint8Array(digest),
        Buffer.from(it.pub, 'hex'), { lowS: true, prehash: false,
          format: 'compact' });
    } catch (e) {
      v = false;
    }
    ok.push(v === true);
  }
  process.stdout.write(JSON.stringify({ ok, high_s: high }));
});
