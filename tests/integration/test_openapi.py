#!/usr/bin/python3
"""test_openapi.py: docs/openapi.yaml is a valid description of the API.

- It passes @redocly/cli lint with the recommended rules, warnings
  counted as errors (tests/openapi/redocly.yaml; npm, installed by this
  test into the build tree and cached there).
- Its paths and methods are exactly the routes of api/routes.c, and its
  ErrorCode enum exactly the codes api/errors.c maps to a status (names
  from common/err.h) and internal_error; each error answer of each
  operation carries only codes api/errors.c maps to its status, and
  every status of that table is described with all its codes.
- The validator every integration script ends with
  (tests/openapi/validate_answers.mjs, harness.py's answers_match_openapi)
  accepts real answers of the daemon and reports answers that break the
  spec, naming the route and what is wrong.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (OPENAPI_NPM, Daemon, Response, Runner,  # noqa
                     answer_record, check, check_eq, npm_modules, request,
                     source_root, validate_answers)

runner = Runner("test_openapi")
ROOT = source_root()
SPEC = os.path.join(ROOT, "docs", "openapi.yaml")
# The linter, pinned: 1.x runs on Debian 12's node 18.
REDOCLY = "@redocly/cli@1.34.20"
LINT_TIMEOUT_S = 120


def read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def spec_facts():
    mods = npm_modules("npm-openapi", OPENAPI_NPM,
                       os.path.join("ajv-formats", "package.json"))
    proc = subprocess.run(
        ["node", os.path.join(ROOT, "tests", "openapi", "spec_facts.mjs"),
         mods, SPEC], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    check(proc.returncode == 0, "spec_facts.mjs: %s" % proc.stderr[-800:])
    return json.loads(proc.stdout)


def code_routes():
    """(METHOD, pattern) of every line of api_routes[]."""
    text = read("api/routes.c")
    table = text[text.index("api_routes[]"):]
    return re.findall(r'\{\s*API_METHOD_([A-Z]+),\s*"([^"]+)"', table)


def code_statuses():
    """{code name: HTTP status} of api/errors.c's status_table, names from
    common/err.h, and internal_error for everything else."""
    names = dict(re.findall(
        r'X\(\s*(\w+)\s*,\s*-?\d+\s*,\s*"([a-z0-9_]+)"', read("common/err.h")))
    errors = read("api/errors.c")
    macros = dict(re.findall(r'#define\s+(HTTP_\w+)\s+(\d+)', errors))
    table = errors[errors.index("status_table[] = {"):]
    table = table[:table.index("};")]
    out = {}
    for sym, status in re.findall(r'\{\s*P8V_ERR_(\w+)\s*,\s*(\w+)\s*\}',
                                  table):
        check(sym in names, "errors.c maps P8V_ERR_%s, not in err.h" % sym)
        out[names[sym]] = int(macros.get(status, status))
    check(len(out) > 40, "status_table parsed: %d entries" % len(out))
    out["internal_error"] = 500
    return out


@runner.test
def spec_passes_redocly_lint():
    mods = npm_modules("npm-redocly", [REDOCLY],
                       os.path.join(".bin", "redocly"))
    env = dict(os.environ, REDOCLY_TELEMETRY="off",
               REDOCLY_SUPPRESS_UPDATE_NOTICE="true", NO_COLOR="1")
    proc = subprocess.run(
        [os.path.join(mods, ".bin", "redocly"), "lint", "--config",
         os.path.join(ROOT, "tests", "openapi", "redocly.yaml"),
         "--format", "stylish", SPEC], capture_output=True, text=True,
        timeout=LINT_TIMEOUT_S, env=env, stdin=subprocess.DEVNULL)
    print((proc.stdout + proc.stderr)[-3000:])
    check_eq(proc.returncode, 0, "redocly lint exit status")


@runner.test
def paths_are_exactly_the_routes_of_api_routes_c():
    want = code_routes()
    check(len(want) >= 13, "routes parsed from api/routes.c: %r" % want)
    got = [tuple(r) for r in spec_facts()["routes"]]
    check_eq(len(got), len(set(got)), "operations listed twice")
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    check(not missing, "routes of api/routes.c missing in the spec: %r"
          % missing)
    check(not extra, "operations in the spec that api/routes.c does not "
          "have: %r" % extra)


@runner.test
def error_codes_are_exactly_those_api_errors_c_maps():
    want = code_statuses()
    got = spec_facts()["error_codes"]
    check_eq(len(got), len(set(got)), "ErrorCode has duplicates")
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    check(not missing, "codes the API answers, not in ErrorCode: %r"
          % missing)
    check(not extra, "ErrorCode codes the API never answers: %r" % extra)


@runner.test
def each_error_answer_has_the_codes_of_its_status():
    status_of = code_statuses()
    by_status = {}
    for code, status in status_of.items():
        by_status.setdefault(status, set()).add(code)
    described = {}
    for r in spec_facts()["responses"]:
        if r["status"] is None:         # the default of unrouted answers
            continue
        wrong = sorted(c for c in r["codes"]
                       if status_of.get(c) != r["status"])
        check(not wrong, "%s: codes api/errors.c does not answer with %d: "
              "%r" % (r["where"], r["status"], wrong))
        described.setdefault(r["status"], set()).update(r["codes"])
    for status, codes in sorted(by_status.items()):
        left = sorted(codes - described.get(status, set()))
        check(not left, "status %d: codes no operation describes: %r"
              % (status, left))


def validate(records):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl",
                                     delete=False) as f:
        for a in records:
            f.write(json.dumps(a) + "\n")
    try:
        return validate_answers([f.name])
    finally:
        os.unlink(f.name)


@runner.test
def validator_accepts_real_answers_and_reports_broken_ones():
    with Daemon().start() as d:
        real = {}
        for name, method, path, unix in (
                ("healthz", "GET", "/healthz", False),
                ("nope", "GET", "/nope", False),
                ("delete_healthz", "DELETE", "/healthz", False),
                ("whoami", "GET", "/v1/whoami", False),
                ("metrics", "GET", "/metrics", True)):
            conn = d.unix() if unix else d.tcp()
            try:
                real[name] = answer_record(method, path,
                                           request(conn, method, path))
            finally:
                conn.close()
        d.stop()
    check_eq(real["healthz"]["status"], 200, "GET /healthz")
    check_eq(real["whoami"]["status"], 401, "GET /v1/whoami without token")
    check_eq(real["delete_healthz"]["status"], 405, "DELETE /healthz")
    ok, out = validate(real.values())
    check(ok, "real answers refused: %s" % out)

    def broken(name, **change):
        a = json.loads(json.dumps(real[name]))
        headers = change.pop("headers", None)
        if headers is not None:
            a["headers"] = headers
        a.update(change)
        return a

    cases = [
        (broken("healthz", body='{"status":"ok","extra":1}'),
         "GET /healthz 200: / must NOT have additional properties"),
        (broken("healthz", status=201), "GET /healthz lists no status 201"),
        (broken("healthz", headers={"content-type": "text/html"}),
         "GET /healthz 200: Content-Type"),
        (broken("healthz", body="ok"), "GET /healthz 200: the body is not JSON"),
        (broken("whoami", headers={"content-type": "application/json"}),
         "GET /v1/whoami 401: header WWW-Authenticate missing"),
        (broken("whoami", body='{"error":{"code":"forbidden",'
                '"message":"x"}}'), "GET /v1/whoami 401: /error/code"),
        (broken("nope", body='{"error":{"code":"no_such_code",'
                '"message":"x"}}'), "no path of the spec"),
        (broken("delete_healthz", headers={
            "content-type": "application/json"}), "header Allow missing"),
        (broken("metrics", status=418), "GET /metrics lists no status 418"),
    ]
    ok, out = validate([a for a, _ in cases])
    print(out)
    check(not ok, "broken answers were accepted")
    for a, want in cases:
        check(want in out, "not reported: %s (%s %s -> %s)" % (
            want, a["method"], a["target"], a["status"]))
    check("%d of %d answers do not fit" % (len(cases), len(cases)) in out,
          "each broken answer counted once")


if __name__ == "__main__":
    runner.main()
