#!/usr/bin/python3
"""test_sign_concurrency.py: 1000 concurrent requests for the APNs token of
a team that has none yet (a cold team), half over the unix socket and half
over --sign-listen TCP, against the real p8vaultd: every caller gets the
same token, and the daemon minted exactly once (its audit log, its mint log
events and the mints counter of /metrics all say 1; the other 999 are
cache hits, counted in /metrics and not audited).

Every connection is opened first; then a barrier releases all requests at
once, so they reach the daemon together rather than one after another.
"""

import os
import resource
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq, request  # noqa
from signing import SignVault, bearer, check_apns_answer, mints  # noqa

runner = Runner("test_sign_concurrency")

CALLERS = 1000
# Connections from one address and per listener: above CALLERS, so that
# the daemon's connection limits (64 per address by default) do not turn
# this into a test of those.
CONNECTION_LIMIT = 2 * CALLERS
# Every thread waits at most this long for the others (ASan builds start
# threads slowly).
BARRIER_TIMEOUT_S = 60
# Python threads need little stack here; 1000 of the default size would
# reserve gigabytes of address space.
THREAD_STACK_BYTES = 256 * 1024


def raise_fd_limit():
    """Room for CALLERS sockets here and in the daemon (which inherits the
    limit): the usual soft limit of 1024 is too close."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * CALLERS
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    check(soft >= 2 * CALLERS + 64, "RLIMIT_NOFILE %d is too low for %d "
          "callers" % (soft, CALLERS))


def storm(v, app, token):
    """CALLERS concurrent POSTs; returns the responses (or exceptions)."""
    results = [None] * CALLERS
    barrier = threading.Barrier(CALLERS, timeout=BARRIER_TIMEOUT_S)
    path = "/v1/apps/%s/apns-token" % app

    def caller(i):
        conn = None
        try:
            conn = v.sign_conn(tcp=(i % 2 == 1))
            conn.connect()
            barrier.wait()
            results[i] = request(conn, "POST", path, headers=bearer(token))
        except Exception as e:          # reported below, per caller
            results[i] = e
            barrier.abort()
        finally:
            if conn is not None:
                conn.close()

    threading.stack_size(THREAD_STACK_BYTES)
    threads = [threading.Thread(target=caller, args=(i,))
               for i in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@runner.test
def one_mint_for_a_thousand_callers_on_a_cold_team():
    raise_fd_limit()
    v = SignVault(extra_args=[
        "--max-connections", str(CONNECTION_LIMIT),
        "--max-connections-per-address", str(CONNECTION_LIMIT)])
    try:
        v.start()
        meta, kid, team, _ = v.new_key("storm.app")
        token = v.token("signer")
        m0 = v.metrics()
        check_eq(len(v.mint_events()), 0, "mints before the storm")
        results = storm(v, "storm.app", token)
        errors = [r for r in results if not hasattr(r, "status")]
        check(not errors, "%d callers failed, e.g. %r" % (len(errors),
                                                           errors[:3]))
        statuses = {}
        for r in results:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        check_eq(statuses, {200: CALLERS}, "statuses")
        tokens = {r.json["token"] for r in results}
        check_eq(len(tokens), 1, "distinct tokens")
        check_apns_answer(results[0], kid, team, meta["public_key_pem"],
                          "a caller's answer")
        check_apns_answer(results[-1], kid, team, meta["public_key_pem"],
                          "another caller's answer")
        audited = v.mint_events()
        check_eq([(e.get("key_id"), e.get("reason")) for e in audited],
                 [(kid, "cold")], "apns.mint audit events")
        logged = v.logged_mints(1)
        check_eq([(e.get("key_id"), e.get("reason")) for e in logged],
                 [(kid, "cold")], "apns_token_minted log lines")
        route = 'p8vault_http_requests_total{route=' \
            '"/v1/apps/{app}/apns-token",code="200"}'
        m1 = v.metrics_settled(
            lambda m: m.get(route, 0) - m0.get(route, 0) >= CALLERS,
            "%d requests" % CALLERS)
        check_eq(mints(m1) - mints(m0), 1, "mints counter")
        check_eq(m1["p8vault_apns_token_cache_hits_total"] -
                 m0["p8vault_apns_token_cache_hits_total"], CALLERS - 1,
                 "cache hits")
        check_eq(m1.get(route, 0) - m0.get(route, 0), CALLERS,
                 "requests counted")
        v.stop()
    finally:
        v.close()


if __name__ == "__main__":
    runner.main()
