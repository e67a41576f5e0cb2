#!/usr/bin/python3
"""count_tests.py BUILDDIR: count the results of the last `meson test` run
in BUILDDIR, per case. Prints "PASSED FAILED" on stdout (for test.sh) and
one line on stderr per test that failed, naming it and its failed cases.

meson's own summary ("Ok: N") counts test programs; a TAP test (the
integration scripts, protocol 'tap' in tests/meson.build) holds many cases.
So this reads BUILDDIR/meson-logs/testlog.json (one JSON object per test:
its name, result and stdout) and BUILDDIR/meson-info/intro-tests.json
(which tests speak TAP):

- an exit-code test counts once: passed if OK, failed if FAIL, ERROR,
  TIMEOUT, INTERRUPT or UNEXPECTEDPASS; SKIP and EXPECTEDFAIL count in
  neither (as in meson's summary);
- a TAP test counts each "ok" line as passed (but "# SKIP" in neither)
  and each "not ok" line as failed ("# TODO" inverts: "not ok # TODO" is
  in neither, "ok # TODO" fails). If meson's verdict is bad anyway (the
  script crashed, bailed out, timed out, ran fewer cases than its plan or
  exited non-zero), the cases its plan announced but never reported count
  as failed, and at least one failure is counted.

Exit status 2 (and nothing on stdout) if the log cannot be read.
"""

import json
import os
import re
import sys

BAD = {"FAIL", "ERROR", "TIMEOUT", "INTERRUPT", "UNEXPECTEDPASS"}
RE_PLAN = re.compile(r"1\.\.([0-9]+)")
RE_TEST = re.compile(r"(not ok|ok)\b\s*(?:[0-9]+\s*)?([^#]*)(?:#\s*(\S+))?")


def tap_counts(stdout):
    """(passed, failed, reported, plan, failed names, bail out) of a TAP
    stream."""
    passed = failed = reported = 0
    plan = None
    names = []
    bail = None
    for line in stdout.splitlines():
        line = line.rstrip()
        if line.startswith("Bail out!"):
            bail = line
            continue
        m = RE_PLAN.match(line)
        if m:
            plan = int(m.group(1))
            continue
        m = RE_TEST.match(line)
        if not m:
            continue
        reported += 1
        ok = m.group(1) == "ok"
        directive = (m.group(3) or "").upper()
        if directive.startswith("SKIP") and ok:
            continue
        if directive == "TODO":
            ok = not ok
            if ok:
                continue
        if ok:
            passed += 1
        else:
            failed += 1
            names.append(m.group(2).strip())
    return passed, failed, reported, plan, names, bail


def main():
    build = sys.argv[1]
    try:
        with open(os.path.join(build, "meson-info", "intro-tests.json")) as f:
            protocols = {t["name"]: t.get("protocol") for t in json.load(f)}
        with open(os.path.join(build, "meson-logs", "testlog.json")) as f:
            entries = [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError, KeyError) as e:
        print("count_tests.py: %s: %s" % (build, e), file=sys.stderr)
        return 2
    passed = failed = 0
    for e in entries:
        name, result = e["name"], e["result"]
        short = name.rsplit(" / ", 1)[-1]
        stdout = e.get("stdout") or ""
        proto = protocols.get(short)
        if proto is None:
            proto = "tap" if RE_PLAN.search(stdout) else "exitcode"
        if proto != "tap":
            if result == "OK":
                passed += 1
            elif result in BAD:
                failed += 1
                print("count_tests.py: %s: %s" % (name, result),
                      file=sys.stderr)
            continue
        ok, bad, reported, plan, names, bail = tap_counts(stdout)
        if result in BAD:
            missing = max((plan or 0) - reported, 0)
            why = []
            if names:
                why.append("failed: " + ", ".join(names))
            if missing:
                why.append("%d of %d cases never reported" % (missing, plan))
            if bail:
                why.append(bail)
            bad = max(bad + missing, 1)
            print("count_tests.py: %s: %s, %d cases counted as failed%s" % (
                name, result, bad, "".join("; " + w for w in why)),
                file=sys.stderr)
        passed += ok
        failed += bad
    print(passed, failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
