#!/usr/bin/python3
"""verify_jwt.py: independent ES256 JWT verifier for p8vault's tests.

Usage: verify_jwt.py PUBLIC_KEY_PEM TOKEN
       verify_jwt.py PUBLIC_KEY_PEM -        (token read from stdin)

Exits 0 only if TOKEN is a compact JWS whose header is a JSON object with
"alg": "ES256" and whose signature (raw r || s, 64 bytes, RFC 7518 section
3.4) verifies over the signing input with the P-256 public key in the PEM.
Exits 1 if the token is invalid, 2 on a usage or key-file error.

Deliberately shares no code with crypto/jwt.c: it uses python3-cryptography
(its own OpenSSL binding) and its own base64url and JSON handling, so a bug
in the C signer cannot hide behind the same bug here. Run with
/usr/bin/python3 (Debian's python3-cryptography), not another interpreter.
"""
import base64
import json
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

# base64url alphabet, no padding (RFC 7515 section 2).
B64URL = re.compile(r"\A[A-Za-z0-9_-]*\Z")
SIG_BYTES = 64  # r || s, 32 bytes each (P-256)


class Invalid(Exception):
    pass


def b64url_decode(part):
    if not B64URL.match(part) or len(part) % 4 == 1:
        raise Invalid("not base64url without padding")
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    # Canonical only: re-encoding must give the same text (no stray bits).
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != part:
        raise Invalid("non-canonical base64url")
    return raw


def no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise Invalid("duplicate member " + repr(k))
        obj[k] = v
    return obj


def json_object(raw):
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise Invalid("not JSON: %s" % e)
    if not isinstance(obj, dict):
        raise Invalid("not a JSON object")
    return obj


def verify(pub, token):
    parts = token.split(".")
    if len(parts) != 3:
        raise Invalid("want 3 parts, got %d" % len(parts))
    header = json_object(b64url_decode(parts[0]))
    json_object(b64url_decode(parts[1]))
    if header.get("alg") != "ES256":
        raise Invalid("header alg is not ES256")
    sig = b64url_decode(parts[2])
    if len(sig) != SIG_BYTES:
        raise Invalid("signature is %d bytes, want %d" % (len(sig), SIG_BYTES))
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    der = utils.encode_dss_signature(r, s)
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    try:
        pub.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Invalid("bad signature")


def main(argv):
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            pub = serialization.load_pem_public_key(f.read())
    except (OSError, ValueError) as e:
        print("verify_jwt: cannot load public key: %s" % e, file=sys.stderr)
        return 2
    if not isinstance(pub, ec.EllipticCurvePublicKey) or \
            not isinstance(pub.curve, ec.SECP256R1):
        print("verify_jwt: not a P-256 public key", file=sys.stderr)
        return 2
    token = sys.stdin.read().strip() if argv[2] == "-" else argv[2]
    try:
        verify(pub, token)
    except Invalid as e:
        print("verify_jwt: invalid: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
