#!/usr/bin/python3
"""p8_corpus.py OUTDIR: generate the .p8 acceptance and rejection corpus.

Run by tests/test_p8.c at test time, into a temporary directory, so that no
private key file is ever committed. Keys come from the `openssl` command;
what openssl will not produce (scalar 0 or >= n, a mismatched or off-curve
public key, non-DER lengths, trailing DER bytes) is built here by hand as
DER from openssl-made parts.

Writes OUTDIR/<case>.p8 for every case, and OUTDIR/<case>.fpr (lowercase hex
SHA-256 of `openssl pkey -pubout -outform DER` of the same key) for every
case that must be accepted. test_p8.c holds the table of cases and the
error code each must give; a case missing here fails there.

Only the Python standard library is used; the DER helpers below know just
the few structures involved.
"""
import base64
import hashlib
import os
import subprocess
import sys

OUT = sys.argv[1]

# id-ecPublicKey, prime256v1, secp384r1 (DER, with tag and length).
OID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
OID_P256 = bytes.fromhex("06082a8648ce3d030107")
OID_P384 = bytes.fromhex("06052b81040022")
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def openssl(*args, data=None):
    """Run openssl; return stdout bytes (fail loudly, the test then fails)."""
    return subprocess.run(("openssl",) + args, input=data, check=True,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL).stdout


def path(name):
    return os.path.join(OUT, name)


def write(name, data):
    with open(path(name + ".p8"), "wb") as f:
        f.write(data)


def fingerprint(name, key_pem):
    """Record openssl's view of the key's SPKI fingerprint for case name."""
    spki = openssl("pkey", "-pubout", "-outform", "DER", data=key_pem)
    with open(path(name + ".fpr"), "w") as f:
        f.write(hashlib.sha256(spki).hexdigest())


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, content):
    return bytes([tag]) + der_len(len(content)) + content


def seq(*parts):
    return tlv(0x30, b"".join(parts))


def parse(der):
    """Split DER contents into [(tag, contents)], definite lengths only."""
    items, i = [], 0
    while i < len(der):
        tag, n = der[i], der[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(der[i:i + k], "big")
            i += k
        items.append((tag, der[i:i + n]))
        i += n
    return items


def pem(der, label="PRIVATE KEY", width=64, eol=b"\n"):
    b64 = base64.b64encode(der)
    lines = [b64[i:i + width] for i in range(0, len(b64), width)] or [b""]
    out = b"-----BEGIN " + label.encode() + b"-----" + eol
    for line in lines:
        out += line + eol
    return out + b"-----END " + label.encode() + b"-----" + eol


def pem_der(text):
    """The DER inside the first PEM block of text."""
    body = text.split(b"-----")[2]
    return base64.b64decode(b"".join(body.split()))


def ec_private_key(scalar, params=None, pub=None, version=1, extra=b""):
    parts = [tlv(0x02, bytes([version])), tlv(0x04, scalar)]
    if params is not None:
        parts.append(tlv(0xA0, params))
    if pub is not None:
        parts.append(tlv(0xA1, tlv(0x03, b"\x00" + pub)))
    return seq(*parts, extra)


def pkcs8(ec_priv, alg_params=OID_P256, version=0, extra=b""):
    alg = seq(OID_EC_PUBLIC_KEY, alg_params) if alg_params is not None \
        else seq(OID_EC_PUBLIC_KEY)
    return seq(tlv(0x02, bytes([version])), alg, tlv(0x04, ec_priv), extra)


def key_parts(key_pem):
    """(scalar, uncompressed public point) of an EC PKCS#8 PEM."""
    _, _, octets = parse(parse(pem_der(key_pem))[0][1])
    fields = parse(parse(octets[1])[0][1])
    scalar = fields[1][1]
    pub = [c for t, c in fields if t == 0xA1][0]
    return scalar, parse(pub)[0][1][1:]


def genpkey(*opts):
    return openssl("genpkey", *opts)


def ec_key(curve, *extra):
    return genpkey("-algorithm", "EC", "-pkeyopt",
                   "ec_paramgen_curve:" + curve, *extra)


def main():
    key = ec_key("P-256")
    other = ec_key("P-256")
    key_der = pem_der(key)
    scalar, pub = key_parts(key)
    other_pub = key_parts(other)[1]

    def ok(name, data, source=key):
        write(name, data)
        fingerprint(name, source)

    # ---- accepted ----------------------------------------------------------
    ok("ok-genpkey", key)
    ok("ok-other-key", other, other)
    ok("ok-no-public",
       openssl("pkcs8", "-topk8", "-nocrypt",
               data=openssl("ec", "-no_public", data=key)))
    ok("ok-compressed-public",
       openssl("pkey", "-ec_conv_form", "compressed", data=key))
    # openssl's traditional form carries [0] prime256v1 inside ECPrivateKey.
    ok("ok-inner-params",
       pem(pkcs8(openssl("ec", "-outform", "DER", data=key))))
    ok("ok-crlf", key.replace(b"\n", b"\r\n"))
    ok("ok-bom", b"\xef\xbb\xbf" + key)
    ok("ok-surrounding-space", b"\n\r\n  \t\n" + key + b"\n \t\r\n\n")
    ok("ok-bom-crlf-space",
       b"\xef\xbb\xbf\r\n " + key.replace(b"\n", b"\r\n") + b" \r\n")
    ok("ok-no-final-newline", key.rstrip(b"\n"))
    ok("ok-64-columns", pem(key_der, width=64))
    ok("ok-76-columns", pem(key_der, width=76))
    ok("ok-one-line", pem(key_der, width=10000))
    ok("ok-blanks-after-dashes",
       key.replace(b"KEY-----\n", b"KEY-----  \t\n"))
    ok("ok-exactly-max", key + b" " * (4096 - len(key)))

    # ---- size and armour ---------------------------------------------------
    write("too-large", key + b" " * (4097 - len(key)))
    write("not-pem-empty", b"")
    write("not-pem-text", b"Hello, world\n")
    write("not-pem-der", key_der)
    write("not-pem-no-end", key.split(b"-----END")[0])
    write("not-pem-leading-text", b"Bag Attributes\n    friendlyName: x\n" + key)
    write("not-pem-end-label", key.replace(b"END PRIVATE", b"END EC PRIVATE"))
    write("not-pem-begin-line-junk",
          key.replace(b"KEY-----\n", b"KEY-----junk\n", 1))

    body = key.split(b"\n")
    write("bad-base64-char",
          b"\n".join(body[:1] + [body[1][:10] + b"!" + body[1][11:]] +
                     body[2:]))
    write("bad-base64-space",
          b"\n".join(body[:1] + [body[1][:10] + b" " + body[1][10:]] +
                     body[2:]))
    nopub = pem(pkcs8(ec_private_key(scalar)))  # 67 bytes: "==" padding
    write("bad-base64-padding", nopub.replace(b"==\n", b"=\n"))
    write("bad-base64-length", nopub.replace(b"==\n", b"\n"))
    # Last data character before "==" must have its low 4 bits zero.
    alphabet = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                b"0123456789+/")
    i = nopub.index(b"==\n") - 1
    bits = bytes([alphabet[alphabet.index(nopub[i]) | 1]])
    write("bad-base64-trailing-bits", nopub[:i] + bits + nopub[i + 1:])

    # ---- other kinds of PEM ------------------------------------------------
    cert = openssl("req", "-x509", "-new", "-key", "/dev/stdin", "-subj",
                   "/CN=p8vault test", "-days", "1", data=key)
    write("certificate", cert)
    write("certificate-request",
          openssl("req", "-new", "-key", "/dev/stdin", "-subj",
                  "/CN=p8vault test", data=key))
    write("certificate-pkcs7",
          openssl("crl2pkcs7", "-nocrl", "-certfile", "/dev/stdin",
                  data=cert))
    write("certificate-then-key", cert + key)
    public = openssl("pkey", "-pubout", data=key)
    write("public-key", public)
    write("public-key-ec", public.replace(b"PUBLIC KEY", b"EC PUBLIC KEY"))
    rsa = genpkey("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024")
    write("public-key-rsa", openssl("rsa", "-RSAPublicKey_out", data=rsa))
    write("encrypted-pkcs8",
          openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout",
                  "pass:p8vault-test", data=key))
    write("encrypted-legacy",
          openssl("ec", "-aes256", "-passout", "pass:p8vault-test",
                  data=key))
    write("not-pkcs8-ec", openssl("ec", data=key))
    write("not-pkcs8-rsa", openssl("pkey", "-traditional", data=rsa))
    write("not-pkcs8-ecparam-genkey",
          openssl("ecparam", "-name", "prime256v1", "-genkey"))

    # ---- other key types and curves ----------------------------------------
    write("wrong-key-type-rsa", rsa)
    write("wrong-key-type-rsa-pss",
          genpkey("-algorithm", "RSA-PSS", "-pkeyopt",
                  "rsa_keygen_bits:1024"))
    for alg in ("ED25519", "X25519", "ED448", "X448"):
        write("wrong-key-type-" + alg.lower(), genpkey("-algorithm", alg))
    dsa_params = genpkey("-genparam", "-algorithm", "DSA", "-pkeyopt",
                         "dsa_paramgen_bits:1024")
    write("wrong-key-type-dsa",
          openssl("genpkey", "-paramfile", "/dev/stdin", data=dsa_params))
    write("wrong-key-type-dh",
          genpkey("-algorithm", "DH", "-pkeyopt", "group:ffdhe2048"))
    for curve in ("P-384", "P-521", "secp256k1", "brainpoolP256r1",
                  "secp224r1"):
        write("wrong-curve-" + curve.lower(), ec_key(curve))
    write("wrong-curve-sm2", genpkey("-algorithm", "SM2"))
    write("wrong-curve-inner-params",
          pem(pkcs8(ec_private_key(scalar, params=OID_P384, pub=pub))))
    write("explicit-curve",
          ec_key("P-256", "-pkeyopt", "ec_param_enc:explicit"))
    write("explicit-curve-p384",
          ec_key("P-384", "-pkeyopt", "ec_param_enc:explicit"))
    write("explicit-curve-inner",
          pem(pkcs8(openssl("ec", "-param_enc", "explicit", "-outform",
                            "DER", data=key))))
    write("explicit-curve-implicit-ca",
          pem(pkcs8(ec_private_key(scalar, pub=pub), alg_params=b"\x05\x00")))

    # ---- scalar and public key ---------------------------------------------
    for name, value in (("zero", 0), ("n", P256_N), ("n-plus-1", P256_N + 1),
                        ("all-ones", 2 ** 256 - 1)):
        write("bad-scalar-" + name,
              pem(pkcs8(ec_private_key(value.to_bytes(32, "big")))))
    write("pubkey-mismatch-other-key",
          pem(pkcs8(ec_private_key(scalar, pub=other_pub))))
    write("pubkey-mismatch-off-curve",
          pem(pkcs8(ec_private_key(scalar, pub=pub[:-1] +
                                   bytes([pub[-1] ^ 1])))))
    write("pubkey-mismatch-infinity",
          pem(pkcs8(ec_private_key(scalar, pub=b"\x00"))))
    other_compressed = openssl("pkey", "-pubin", "-ec_conv_form",
                               "compressed", "-outform", "DER",
                               data=openssl("pkey", "-pubout",
                                            data=other))[-33:]
    write("pubkey-mismatch-compressed-other",
          pem(pkcs8(ec_private_key(scalar, pub=other_compressed))))
    # X9.62 "hybrid" form of the right point: RFC 5480 does not allow it.
    hybrid = bytes([6 | (pub[-1] & 1)]) + pub[1:]
    write("pubkey-mismatch-hybrid",
          pem(pkcs8(ec_private_key(scalar, pub=hybrid))))
    write("pubkey-mismatch-x-only", pem(pkcs8(ec_private_key(scalar,
                                                            pub=pub[:33]))))

    # ---- trailing data and more than one block ------------------------------
    write("trailing-text", key + b"garbage\n")
    write("trailing-nul", key + b"\x00")
    write("trailing-der-bytes", pem(key_der + b"\x00\x00"))
    write("trailing-der-sequence", pem(key_der + key_der))
    write("multiple-keys", key + other)
    write("multiple-keys-key-then-cert", key + cert)

    # ---- DER that does not parse -------------------------------------------
    ec = ec_private_key(scalar, pub=pub)
    write("malformed-truncated", pem(key_der[:-1]))
    write("malformed-random", pem(bytes(range(64))))
    write("malformed-empty-body",
          b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
    write("malformed-pkcs8-version-1", pem(pkcs8(ec, version=1)))
    write("malformed-ec-version-2",
          pem(pkcs8(ec_private_key(scalar, pub=pub, version=2))))
    write("malformed-short-scalar",
          pem(pkcs8(ec_private_key(scalar[1:], pub=pub))))
    write("malformed-long-scalar",
          pem(pkcs8(ec_private_key(b"\x00" + scalar, pub=pub))))
    short = pkcs8(ec_private_key(scalar))[2:]  # contents < 0x80 bytes
    write("malformed-long-form-length",
          pem(b"\x30\x81" + bytes([len(short)]) + short))
    long_ = parse(pkcs8(ec))[0][1]  # contents >= 0x80 bytes
    write("malformed-length-leading-zero",
          pem(b"\x30\x82\x00" + bytes([len(long_)]) + long_))
    write("malformed-indefinite-length",
          pem(b"\x30\x80" + short + b"\x00\x00"))
    write("malformed-attributes",
          pem(pkcs8(ec, extra=tlv(0xA0, b""))))
    write("malformed-ec-extra-element",
          pem(pkcs8(ec_private_key(scalar, pub=pub, extra=b"\x02\x01\x00"))))
    write("malformed-no-alg-params", pem(pkcs8(ec, alg_params=None)))
    write("malformed-pub-unused-bits",
          pem(pkcs8(ec[:-66] + b"\x01" + ec[-65:])))
    write("malformed-not-sequence", pem(b"\x31" + pkcs8(ec)[1:]))


if __name__ == "__main__":
    main()
