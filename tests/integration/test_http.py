#!/usr/bin/python3
"""test_http.py: p8vaultd's HTTP behaviour on both listeners: health and
readiness, JSON errors for unknown routes and methods, strict paths,
body caps (413, announced and chunked), oversized headers (431)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Runner, check, check_eq, read_response,  # noqa
                     request, status_of)

runner = Runner("test_http")
D = None


def daemon():
    global D
    if D is None:
        D = Daemon().start()
    return D


def check_error(r, status, code):
    check_eq(r.status, status, "status")
    check(r.json is not None, "body is not JSON: %r" % r.body)
    check(isinstance(r.json.get("error"), dict), "no error object: %r" %
          r.json)
    check_eq(r.json["error"].get("code"), code, "error.code")
    check(isinstance(r.json["error"].get("message"), str) and
          r.json["error"]["message"], "error.message empty")
    check_eq(r.headers.get("content-type"), "application/json",
             "Content-Type")
    check(r.body.endswith(b"}\n"), "no newline after the JSON: %r" %
          r.body[-20:])


@runner.test
def healthz_and_readyz_on_tcp_and_unix():
    d = daemon()
    for unix in (False, True):
        where = "unix" if unix else "tcp"
        r = d.get("/healthz", unix=unix)
        check_eq((r.status, r.json), (200, {"status": "ok"}),
                 "/healthz on " + where)
        check_eq(r.headers.get("cache-control"), "no-store", "Cache-Control")
        check_eq(r.body, b'{"status":"ok"}\n', "/healthz's bytes")
        r = d.get("/readyz", unix=unix)
        check_eq((r.status, r.json), (200, {"status": "ready"}),
                 "/readyz on " + where)
        check_eq(r.body, b'{"status":"ready"}\n', "/readyz's bytes")


@runner.test
def head_is_get_without_body():
    r = daemon().get("/healthz", method="HEAD")
    check_eq(r.status, 200, "HEAD /healthz")
    check_eq(r.body, b"", "HEAD body")


@runner.test
def unknown_route_is_404_json():
    d = daemon()
    for path in ("/nope", "/healthz/", "/healthz/x", "/", "/v1",
                 "/%68ealthz/x"):
        for unix in (False, True):
            check_error(d.get(path, unix=unix), 404, "not_found")


@runner.test
def percent_decoded_literal_still_matches():
    # "%68" is "h": the same resource (RFC 3986 normalisation).
    r = daemon().get("/%68ealthz")
    check_eq(r.status, 200, "/%68ealthz")


@runner.test
def malformed_escapes_are_400():
    d = daemon()
    for path in ("/health%zz", "/healthz%", "/healthz%4", "/a%00b",
                 "/healthz?a=%G0", "/healthz?a=1&a=2", "/healthz?=x"):
        check_error(d.get(path), 400, "bad_request")


@runner.test
def wrong_method_is_405_with_allow():
    d = daemon()
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        r = d.get("/healthz", method=method)
        check_error(r, 405, "method_not_allowed")
        check_eq(r.headers.get("allow"), "GET, HEAD", "Allow for " + method)


@runner.test
def errors_keep_the_connection_alive():
    d = daemon()
    conn = d.tcp()
    try:
        check_eq(request(conn, "GET", "/nope").status, 404, "first")
        check_eq(request(conn, "GET", "/healthz").status, 200,
                 "second request on the same connection")
    finally:
        conn.close()


@runner.test
def body_over_cap_announced_is_413():
    # /healthz takes no body (cap 0): an announced body is refused before
    # it is read, and the connection closed.
    raw = daemon().raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Length: 100000\r\n\r\n")
    check_eq(status_of(raw), 413, "status for Content-Length over the cap")
    check(b'"too_large"' in raw, "no too_large code: %r" % raw[:300])


@runner.test
def body_over_cap_chunked_is_413():
    d = daemon()
    s = d.connect_raw()
    try:
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        # POST /healthz is a 405 decided from the headers: answered at once.
        r = read_response(s)
        check_eq(r.status, 405, "chunked POST to a GET route")
    finally:
        s.close()
    s = d.connect_raw()
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):
            s.sendall(b"400\r\n" + b"A" * 0x400 + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        r = read_response(s)
        check_eq(r.status, 413, "chunked body past the cap")
        check_eq(r.json["error"]["code"], "too_large", "code")
    finally:
        s.close()


@runner.test
def endless_chunked_body_is_cut_off():
    d = daemon()
    s = d.connect_raw()
    closed = False
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"4000\r\n" + b"B" * 0x4000 + b"\r\n"
        for _ in range(200):            # 3.2 MiB, far past the discard cap
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        if not closed:
            s.settimeout(5)
            try:
                closed = s.recv(100) == b""
            except ConnectionResetError:
                closed = True
    finally:
        s.close()
    check(closed, "the daemon kept reading an endless body")
    check_eq(d.get("/healthz").status, 200, "still serving")


@runner.test
def huge_headers_are_431():
    # libmicrohttpd answers a header section larger than the connection's
    # memory with 431 and its own small HTML body, then closes.
    raw = daemon().raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                       b"a" * 65536 + b"\r\n\r\n")
    check(status_of(raw) == 431 or raw == b"",
          "huge header: %r" % raw[:100])
    check_eq(status_of(raw), 431, "status for a 64 KiB header")


@runner.test
def large_headers_within_the_limit_are_served():
    # 8 KiB of connection memory (api/http.h): a request with the longest
    # path the router takes (2 KiB) and 4 KiB of other headers is served.
    path = b"/" + b"a" * 2047
    raw = daemon().raw(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" +
                       b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000)
                                for i in range(4)) +
                       b"Connection: close\r\n\r\n")
    check_eq(status_of(raw), 404, "2 KiB path and 4 KiB of headers")


@runner.test
def huge_request_line_is_refused():
    raw = daemon().raw(b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    check(status_of(raw) in (414, 431), "long URI: %r" % raw[:100])


@runner.test
def http11_without_host_is_400():
    raw = daemon().raw(b"GET /healthz HTTP/1.1\r\n\r\n")
    check_eq(status_of(raw), 400, "HTTP/1.1 without Host")


@runner.test
def garbage_does_not_crash():
    d = daemon()
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n",
                 b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                 b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1"
                 b"\r\n\r\n",
                 b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                 b"chunked\r\n\r\nzz\r\n"):
        d.raw(junk, timeout=3)
    check_eq(d.get("/healthz").status, 200, "alive after garbage")


@runner.test
def request_log_lines_name_routes_not_paths():
    d = Daemon(args=["--log-level", "debug"]).start()
    try:
        d.get("/healthz")
        d.get("/secret-looking-path-123")
        line = d.wait_log(lambda l: l.get("event") == "request" and
                          l.get("route") == "/healthz", 5, "request line")
        for k in ("method", "status", "duration_us", "listener"):
            check(k in line, "request log line without %s" % k)
        check_eq(line["status"], 200, "logged status")
        d.wait_log(lambda l: l.get("event") == "request" and
                   l.get("status") == 404, 5, "404 request line")
        for l in d.lines:
            check("secret-looking-path" not in l, "raw path in the log")
        d.stop()
    finally:
        d.close()


@runner.test
def stop_is_clean_and_logs_are_json():
    global D
    d = daemon()
    d.stop()
    D = None
    check(d.log_events("stopped"), "no stopped line")
    check(not os.path.exists(d.sock_path), "socket left behind")
    d.close()


if __name__ == "__main__":
    try:
        runner.main()
    finally:
        if D is not None:
            D.close()
