#!/usr/bin/python3
"""test_tls.py: HTTPS on the TCP listeners with a certificate made at test
time by the openssl command, checked by Python's ssl module."""

import http.client
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, Runner, check, check_eq, https_context  # noqa

runner = Runner("test_tls")
TMP = tempfile.mkdtemp(prefix="p8v-tls-")
CERT = os.path.join(TMP, "cert.pem")
KEY = os.path.join(TMP, "key.pem")


def make_cert():
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", KEY, "-out", CERT, "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(KEY, 0o600)


def https_get(port, path, ctx):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                       context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read(), conn.sock.version()
    finally:
        conn.close()


@runner.test
def healthz_over_https():
    with Daemon(args=["--tls-cert", CERT, "--tls-key", KEY]).start() as d:
        check_eq(d.listening["portal"]["tls"], True, "tls in listening line")
        status, body, version = https_get(d.port, "/healthz",
                                          https_context(CERT))
        check_eq((status, body), (200, b'{"status":"ok"}\n'), "GET /healthz")
        check(version in ("TLSv1.2", "TLSv1.3"), "protocol %s" % version)
        # Plain HTTP on the TLS port gets no HTTP answer.
        raw = d.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
        check(not raw.startswith(b"HTTP/1.1 200"), "plain HTTP answered")
        # The unix socket stays plain HTTP.
        check_eq(d.get("/healthz", unix=True).status, 200, "unix socket")
        d.stop()


@runner.test
def old_protocols_are_refused():
    with Daemon(args=["--tls-cert", CERT, "--tls-key", KEY]).start() as d:
        ctx = https_context(CERT)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        err = None
        try:
            https_get(d.port, "/healthz", ctx)
        except (ssl.SSLError, OSError) as e:
            err = str(e)
        check(err is not None, "TLS 1.0/1.1 handshake succeeded")
        print("note: TLS 1.0/1.1 client: %s" % err)
        # TLS 1.2 exactly works.
        ctx = https_context(CERT)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        check_eq(https_get(d.port, "/healthz", ctx)[2], "TLSv1.2", "TLS 1.2")
        d.stop()


@runner.test
def a_client_that_does_not_trust_the_cert_fails():
    with Daemon(args=["--tls-cert", CERT, "--tls-key", KEY]).start() as d:
        failed = False
        try:
            https_get(d.port, "/healthz", ssl.create_default_context())
        except ssl.SSLCertVerificationError:
            failed = True
        check(failed, "an untrusted certificate was accepted")
        d.stop()


@runner.test
def tls_makes_a_public_address_acceptable():
    with Daemon(args=["--tls-cert", CERT, "--tls-key", KEY],
                listen="0.0.0.0:0").start() as d:
        status, _, _ = https_get(d.port, "/readyz", https_context(CERT))
        check_eq(status, 200, "/readyz over TLS on 0.0.0.0")
        d.stop()


@runner.test
def unsafe_or_broken_key_files_are_refused():
    loose = os.path.join(TMP, "loose.pem")
    shutil.copy(KEY, loose)
    os.chmod(loose, 0o604)
    with Daemon(args=["--tls-cert", CERT, "--tls-key", loose]) as d:
        rc, _ = d.run_to_exit()
        check_eq(rc, 1, "exit status with a key others can read")
        check(any("accessible by others" in l.get("msg", "")
                  for l in d.logs), "no reason logged: %r" % d.lines)
        d.check_logs()
    junk = os.path.join(TMP, "junk.pem")
    with open(junk, "w") as f:
        f.write("not a key\n")
    os.chmod(junk, 0o600)
    with Daemon(args=["--tls-cert", CERT, "--tls-key", junk]) as d:
        rc, _ = d.run_to_exit()
        check_eq(rc, 1, "exit status with a key that is not PEM")
        check(any(l.get("event") == "libmicrohttpd" and
                  l.get("level") == "warn" for l in d.logs),
              "the TLS library's reason is not logged: %r" % d.lines)
        d.check_logs()
    # The key's PEM text never reaches the logs.
    with open(KEY) as f:
        body = [l for l in f.read().splitlines() if not l.startswith("---")]
    with Daemon(args=["--tls-cert", CERT, "--tls-key", KEY,
                      "--log-level", "debug"]).start() as d:
        https_get(d.port, "/healthz", https_context(CERT))
        d.stop()
        for l in d.lines:
            for b in body:
                check(b not in l, "TLS key text in the logs")


if __name__ == "__main__":
    try:
        make_cert()
        runner.main()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
