#!/usr/bin/python3
"""test_sign_clock.py: the APNs token's clock rules against the real
p8vaultd, with the clock driven from outside by libfaketime (Debian's
`faketime` package), not by any option or hook of the daemon.

The daemon runs with LD_PRELOAD=libfaketime.so.1 and
FAKETIME_TIMESTAMP_FILE pointing at a file this test rewrites (an offset
such as "+7200"); FAKETIME_NO_CACHE=1 makes every clock read see the
current file.

- Wall clock steps (DONT_FAKE_MONOTONIC=1: only CLOCK_REALTIME moves):
  after a mint, a step of +2 h and then of -2 h neither mints (log events,
  /metrics) nor changes the token or its iat; a reported rejection at
  either step returns the same token. A token minted after the step
  carries the stepped wall clock as iat: proof that the daemon saw the
  step at all.
- Both clocks jump (monotonic faked too): at +49 minutes the token is
  still the same; at +51 minutes (past the 50-minute reuse period) exactly
  one new token is minted, with reason "expired" and the new time as iat,
  and it is then reused.
- Reported rejections: right after a mint, the same token; at +21 minutes
  a report mints once (rejected_expired), and further reports inside 20
  minutes of that mint (of the new token or late ones of the old) return
  it; at +42 minutes a report mints again (rejected_invalid).

libfaketime cannot be preloaded into an AddressSanitizer build (the ASan
runtime must come first in the library list): there the script prints the
reason and exits 77, which meson reports as SKIP. The plain build runs it;
a missing libfaketime there is a failure, not a skip.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Runner, check, check_eq  # noqa
from signing import CLOCK_SLACK_S, SignVault, check_apns_answer, mints  # noqa

runner = Runner("test_sign_clock")

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
STEP_S = 2 * 3600                 # a wall-clock step of two hours
REUSE_S = 50 * 60                 # the daemon's default reuse period
BEFORE_REUSE_S = REUSE_S - 60     # +49 minutes: still reused
AFTER_REUSE_S = REUSE_S + 60      # +51 minutes: renewed
REJECT_AFTER_S = 21 * 60          # past the 20-minute floor for reports


def asan_reason():
    """Why libfaketime cannot run under this daemon binary, or None."""
    daemon = os.environ.get("P8VAULTD", "")
    try:
        out = subprocess.run(["ldd", daemon], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    if "libasan" in out:
        return "p8vaultd is built with AddressSanitizer (libasan must be " \
               "the first library loaded, so LD_PRELOAD=libfaketime cannot " \
               "run); the plain build runs this test"
    return None


class Clock:
    """The offset file libfaketime reads on every clock call."""

    def __init__(self, path):
        self.path = path
        self.set(0)

    def set(self, offset_s):
        tmp = self.path + ".new"
        with open(tmp, "w") as f:
            f.write("%+d\n" % offset_s)
        os.replace(tmp, self.path)    # never a half-written file


def faked_vault(fake_monotonic, extra_args=()):
    v = SignVault(extra_args=extra_args)
    clock = Clock(os.path.join(v.tmp, "faketime"))
    env = {"LD_PRELOAD": LIBFAKETIME,
           "FAKETIME_TIMESTAMP_FILE": clock.path,
           "FAKETIME_NO_CACHE": "1"}
    if not fake_monotonic:
        env["DONT_FAKE_MONOTONIC"] = "1"
    v.env = env
    return v, clock


def preflight():
    """None to run, "skip" (ASan), or a failure for a missing library."""
    reason = asan_reason()
    if reason is not None:
        print("SKIP reason: " + reason)
        return "skip"
    check(os.path.exists(LIBFAKETIME), "%s is missing: install Debian's "
          "faketime package (scripts/deps.sh lists it)" % LIBFAKETIME)
    return None


@runner.test
def wall_clock_steps_change_nothing():
    if preflight() == "skip":
        return "skip"
    v, clock = faked_vault(fake_monotonic=False)
    try:
        v.start()
        meta, kid, team, _ = v.new_key("clock.app")
        pub = meta["public_key_pem"]
        a = check_apns_answer(v.apns("clock.app"), kid, team, pub, "first")
        check(abs(a["issued_at"] - time.time()) <= CLOCK_SLACK_S,
              "iat before any step is not now")
        m0 = v.metrics()
        for step in (+STEP_S, -STEP_S):
            clock.set(step)
            what = "wall clock %+d s" % step
            b = check_apns_answer(v.apns("clock.app"), kid, team, pub, what)
            check_eq((b["token"], b["issued_at"]),
                     (a["token"], a["issued_at"]), what + ": token, iat")
            c = check_apns_answer(
                v.apns("clock.app", body={"rejected_token": a["token"],
                                          "reason": "ExpiredProviderToken"}),
                kid, team, pub, what + ", rejection reported")
            check_eq(c["token"], a["token"], what + ": after a rejection")
            # The daemon does see the step: a new key's first token has
            # the stepped wall clock as its iat.
            m2, kid2, team2, _ = v.new_key("clock.probe%d" % (step > 0))
            p = check_apns_answer(v.apns("clock.probe%d" % (step > 0)),
                                  kid2, team2, m2["public_key_pem"],
                                  what + ": a new team")
            check(abs(p["issued_at"] - (time.time() + step)) <=
                  CLOCK_SLACK_S, what + ": the daemon did not see the step "
                  "(iat %d, expected about %d)" % (p["issued_at"],
                                                   time.time() + step))
        m1 = v.metrics()
        check_eq(mints(m1) - mints(m0), 2, "mints: the two probes only")
        mine = [e for e in v.mint_events() if e.get("key_id") == kid]
        check_eq(len(mine), 1, "mints of the first key")
        clock.set(0)
        v.stop()
    finally:
        v.close()


@runner.test
def both_clocks_past_the_reuse_period_mint_once():
    if preflight() == "skip":
        return "skip"
    v, clock = faked_vault(fake_monotonic=True)
    try:
        v.start()
        meta, kid, team, _ = v.new_key("reuse.app")
        pub = meta["public_key_pem"]
        a = check_apns_answer(v.apns("reuse.app"), kid, team, pub, "first")
        m0 = v.metrics()
        clock.set(BEFORE_REUSE_S)
        b = check_apns_answer(v.apns("reuse.app"), kid, team, pub,
                              "+49 minutes")
        check_eq(b["token"], a["token"], "token at +49 minutes")
        clock.set(AFTER_REUSE_S)
        c = check_apns_answer(v.apns("reuse.app"), kid, team, pub,
                              "+51 minutes")
        check(c["token"] != a["token"], "no new token at +51 minutes")
        check(abs(c["issued_at"] - (a["issued_at"] + AFTER_REUSE_S)) <=
              CLOCK_SLACK_S, "iat of the new token: %d, first %d" % (
                  c["issued_at"], a["issued_at"]))
        for tcp in (False, True):
            d = check_apns_answer(v.apns("reuse.app", tcp=tcp), kid, team,
                                  pub, "right after the renewal")
            check_eq(d["token"], c["token"], "the new token is reused")
        m1 = v.metrics()
        check_eq(mints(m1) - mints(m0), 1, "mints after the jump")
        check_eq(m1['p8vault_apns_token_mints_total{reason="expired"}'] -
                 m0['p8vault_apns_token_mints_total{reason="expired"}'], 1,
                 "the mint's reason")
        events = [e for e in v.mint_events() if e.get("key_id") == kid]
        check_eq([e.get("reason") for e in events], ["cold", "expired"],
                 "mint events")
        clock.set(0)
        v.stop()
    finally:
        v.close()


@runner.test
def configured_reuse_period_is_honoured():
    # --apns-token-reuse 1200: the shortest period Apple allows (20 min).
    if preflight() == "skip":
        return "skip"
    v, clock = faked_vault(fake_monotonic=True,
                           extra_args=["--apns-token-reuse", "1200"])
    try:
        v.start()
        meta, kid, team, _ = v.new_key("short.app")
        pub = meta["public_key_pem"]
        a = check_apns_answer(v.apns("short.app"), kid, team, pub, "first")
        clock.set(19 * 60)
        b = check_apns_answer(v.apns("short.app"), kid, team, pub,
                              "+19 minutes")
        check_eq(b["token"], a["token"], "token at +19 minutes")
        clock.set(21 * 60)
        c = check_apns_answer(v.apns("short.app"), kid, team, pub,
                              "+21 minutes")
        check(c["token"] != a["token"], "no new token at +21 minutes with "
              "a 20-minute reuse period")
        events = [e for e in v.mint_events() if e.get("key_id") == kid]
        check_eq([e.get("reason") for e in events], ["cold", "expired"],
                 "mint events")
        clock.set(0)
        v.stop()
    finally:
        v.close()


@runner.test
def rejection_reports_mint_at_most_once_per_20_minutes():
    if preflight() == "skip":
        return "skip"
    v, clock = faked_vault(fake_monotonic=True)
    try:
        v.start()
        meta, kid, team, _ = v.new_key("reject.app")
        pub = meta["public_key_pem"]

        def report(tok, reason, what):
            return check_apns_answer(
                v.apns("reject.app", body={"rejected_token": tok,
                                           "reason": reason}),
                kid, team, pub, what)

        a = check_apns_answer(v.apns("reject.app"), kid, team, pub, "first")
        b = report(a["token"], "ExpiredProviderToken", "at once")
        check_eq(b["token"], a["token"], "a report right after the mint")
        clock.set(REJECT_AFTER_S)
        c = check_apns_answer(v.apns("reject.app"), kid, team, pub,
                              "+21 minutes, no report")
        check_eq(c["token"], a["token"], "reused at +21 minutes")
        d = report(a["token"], "ExpiredProviderToken", "+21 min, report")
        check(d["token"] != a["token"], "no new token for a report 21 "
              "minutes after the mint")
        check(abs(d["issued_at"] - (a["issued_at"] + REJECT_AFTER_S)) <=
              CLOCK_SLACK_S, "iat of the re-minted token")
        # Reports inside 20 minutes of that mint: of the new token, or
        # late ones of the old token, from other callers.
        for tok, reason in ((d["token"], "InvalidProviderToken"),
                            (a["token"], "ExpiredProviderToken")):
            e = report(tok, reason, "right after the re-mint")
            check_eq(e["token"], d["token"], "a second report inside 20 "
                     "minutes")
        clock.set(2 * REJECT_AFTER_S)
        f = report(d["token"], "InvalidProviderToken", "+42 minutes")
        check(f["token"] != d["token"], "no new token at +42 minutes")
        check_eq([e.get("reason") for e in v.mint_events(kid)],
                 ["cold", "rejected_expired", "rejected_invalid"],
                 "mints (audit log)")
        clock.set(0)
        v.stop()
    finally:
        v.close()


if __name__ == "__main__":
    if asan_reason() is not None:
        # Every test would skip: say so to meson rather than count a run
        # with nothing passed as a failure.
        runner.skip_all(asan_reason())
    runner.main()
