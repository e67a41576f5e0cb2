#!/usr/bin/env bash
# test.sh: install what is missing, build, and run every test twice: in a
# normal build and in a build with AddressSanitizer and
# UndefinedBehaviorSanitizer. Ends with "tests: N passed, N failed" and exits
# non-zero if any test failed.
#
# Tests are counted per case: a unit test program is one test, each case
# of an integration script (TAP) is one (scripts/count_tests.py); a script
# that crashes, bails out or runs fewer cases than its plan counts at least
# one failure.
#
# Environment: P8V_TEST_ARGS passes extra arguments to `meson test` (e.g. a
# test name); P8V_SKIP_SANITIZE=1 skips the sanitizer build (local use).
# CI=true (set by CI) also runs every fuzz target with libFuzzer for
# FUZZ_SECONDS (default 60) each (fuzz/run.sh); each target counts as one
# test. Both builds replay the fuzz seed corpora in any case.
set -uo pipefail
cd "$(dirname "$0")" || exit 1
. scripts/deps.sh

p8v_ensure_packages $P8V_BUILD_PACKAGES $P8V_RUN_PACKAGES $P8V_TEST_PACKAGES || exit 1

passed=0
failed=0

# run_suite DIR [meson setup options...]
run_suite() {
	local dir=$1 log ok fail counts
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >/dev/null || { failed=$((failed + 1)); return; }
	fi
	if ! ninja -C "$dir" >"$dir.ninja.log" 2>&1; then
		cat "$dir.ninja.log" >&2
		echo "test.sh: build in $dir failed" >&2
		failed=$((failed + 1))
		return
	fi
	log=$(mktemp)
	rm -f "$dir/meson-logs/testlog.json"
	# shellcheck disable=SC2086
	meson test -C "$dir" --print-errorlogs ${P8V_TEST_ARGS:-} 2>&1 | tee "$log"
	# meson's "Ok:" counts test programs; an integration script (TAP) holds
	# many cases: count cases from meson-logs/testlog.json instead.
	if ! grep -q '^Ok:' "$log"; then
		echo "test.sh: meson test in $dir printed no summary" >&2
		ok=0
		fail=1
	elif counts=$(scripts/count_tests.py "$dir"); then
		read -r ok fail <<<"$counts"
	else
		echo "test.sh: could not count the results in $dir" >&2
		ok=0
		fail=1
	fi
	passed=$((passed + ok))
	failed=$((failed + fail))
	rm -f "$log"
}

run_suite build
if [ "${P8V_SKIP_SANITIZE:-0}" != 1 ]; then
	run_suite build-sanitize -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debug
fi

# fuzz/run.sh prints "fuzz: PASS <target>" or "fuzz: FAIL <target>" per
# target; a failure before any target ran (setup, build) counts as one.
run_fuzz() {
	local log rc ok fail
	log=$(mktemp)
	fuzz/run.sh 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	ok=$(grep -c '^fuzz: PASS ' "$log")
	fail=$(grep -c '^fuzz: FAIL ' "$log")
	if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
		fail=1
	fi
	passed=$((passed + ok))
	failed=$((failed + fail))
	rm -f "$log"
}

if [ "${CI:-}" = true ]; then
	run_fuzz
fi

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
