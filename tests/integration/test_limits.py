#!/usr/bin/python3
"""test_limits.py: connection timeout, per-address and total connection
limits, and a graceful stop that finishes requests in flight."""

import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Runner, UnixHTTPConnection, check,  # noqa
                     check_eq, read_all, read_response, request)

runner = Runner("test_limits")


def closed_within(s, seconds):
    """Seconds until the server closes s (EOF or reset), or None."""
    t0 = time.monotonic()
    s.settimeout(seconds)
    try:
        while True:
            b = s.recv(4096)
            if not b:
                return time.monotonic() - t0
    except ConnectionResetError:
        return time.monotonic() - t0
    except socket.timeout:
        return None


@runner.test
def slow_and_idle_clients_are_dropped_after_the_timeout():
    with Daemon(args=["--connection-timeout", "2"]).start() as d:
        idle = d.connect_raw()
        slow = d.connect_raw()
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")   # unfinished
        t_idle = closed_within(idle, 10)
        t_slow = closed_within(slow, 10)
        idle.close()
        slow.close()
        check(t_idle is not None, "idle connection kept open past 10 s")
        check(t_slow is not None, "stalled request kept open past 10 s")
        check(1.0 <= t_idle <= 6.0, "idle dropped after %.1fs, want ~2s" %
              t_idle)
        check(t_slow <= 6.0, "stalled request dropped after %.1fs" % t_slow)
        # A client that keeps talking is not dropped.
        conn = d.tcp()
        for _ in range(3):
            check_eq(request(conn, "GET", "/healthz").status, 200,
                     "keep-alive request")
            time.sleep(1)
        conn.close()
        d.stop()


def check_over_limit(raw, what):
    """raw: all a connection over a limit got until it was closed: one
    503 too_many_connections with Retry-After and Connection: close."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    check(lines[0].startswith("HTTP/1.1 503 "), "%s: answer %r" % (what, raw))
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (l.partition(":") for l in lines[1:])}
    check_eq(headers.get("retry-after"), "1", what + ": Retry-After")
    check_eq(headers.get("connection"), "close", what + ": Connection")
    check_eq(json.loads(body)["error"]["code"], "too_many_connections",
             what + ": error code")


@runner.test
def per_address_limit_while_others_are_served():
    limit = 3
    with Daemon(args=["--max-connections-per-address", str(limit)]).start() \
            as d:
        held = [d.connect_raw() for _ in range(limit)]
        # Every held connection is accepted and usable.
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            check_eq(read_response(s).status, 200, "held connection")
        # One more from the same address is answered 503, never served
        # and never closed without an answer.
        extra = d.connect_raw()
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        check_over_limit(read_all(extra, 5), "past the per-address limit")
        extra.close()
        # Another address (127.0.0.2 is loopback too) is still served.
        other = d.connect_raw(source="127.0.0.2")
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        check_eq(read_response(other).status, 200, "other address")
        other.close()
        # The unix socket has its own budget.
        check_eq(d.get("/healthz", unix=True).status, 200, "unix socket")
        # Releasing one slot lets the address in again.
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            s = d.connect_raw()
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                r = read_response(s)
                check_eq(r.status, 200, "after a slot was freed")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
            finally:
                s.close()
        for s in held:
            s.close()
        d.stop()


@runner.test
def total_limit_per_listener():
    with Daemon(args=["--max-connections", "4"]).start() as d:
        held = [d.connect_raw(source="127.0.0.%d" % (i + 2))
                for i in range(4)]
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            check_eq(read_response(s).status, 200, "held")
        extra = d.connect_raw(source="127.0.0.9")
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        check_over_limit(read_all(extra, 5), "past the total limit")
        extra.close()
        # The signing socket is a separate budget.
        check_eq(d.get("/readyz", unix=True).status, 200, "signing socket")
        for s in held:
            s.close()
        d.stop()


@runner.test
def sigterm_finishes_requests_in_flight():
    with Daemon().start() as d:
        # A keep-alive connection that has been used and is idle.
        idle = d.tcp()
        check_eq(request(idle, "GET", "/healthz").status, 200, "warm-up")
        # A request in flight: request line and a header, not the end.
        busy = d.connect_raw()
        busy.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.3)
        unix = UnixHTTPConnection(d.sock_path)
        check_eq(request(unix, "GET", "/healthz").status, 200, "unix warm")
        d.signal(signal.SIGTERM)
        d.wait_log(lambda l: l.get("event") == "stopping", 10, "stopping")
        time.sleep(0.3)
        # No new connections...
        refused = False
        try:
            socket.create_connection(("127.0.0.1", d.port), 2).close()
        except OSError:
            refused = True
        check(refused, "new TCP connections still accepted while stopping")
        check(not os.path.exists(d.sock_path), "socket still there")
        # ...but open ones are served, and say that the daemon stops.
        r = request(idle, "GET", "/readyz")
        check_eq(r.status, 503, "/readyz while stopping")
        check_eq(r.json, {"status": "not_ready", "reason": "stopping"},
                 "readyz body")
        check_eq(r.headers.get("connection"), "close", "Connection header")
        check(d.proc.poll() is None, "exited with a request in flight")
        busy.sendall(b"\r\n")
        r = read_response(busy)
        check_eq(r.status, 200, "the request in flight")
        check_eq(r.json, {"status": "ok"}, "its body")
        busy.close()
        idle.close()
        unix.close()
        check_eq(d.wait(), 0, "exit status")
        d.check_logs()
        check(d.log_events("stopped"), "no stopped line")


@runner.test
def sigint_stops_too_and_sighup_is_ignored():
    with Daemon().start() as d:
        d.signal(signal.SIGHUP)
        d.wait_log(lambda l: l.get("event") == "signal", 10, "SIGHUP line")
        check_eq(d.get("/healthz").status, 200, "alive after SIGHUP")
        d.signal(signal.SIGINT)
        check_eq(d.wait(), 0, "exit status after SIGINT")
        d.check_logs()


if __name__ == "__main__":
    runner.main()
