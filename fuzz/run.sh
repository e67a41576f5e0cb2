#!/usr/bin/env bash
# fuzz/run.sh: build the fuzz targets as libFuzzer binaries (clang,
# AddressSanitizer + UndefinedBehaviorSanitizer, leak checks) and run each
# for a bounded time over its seed corpus. ./test.sh calls it when CI=true.
#
#   fuzz/run.sh [TARGET...]        default: every target of fuzz/meson.build
#
# Environment:
#   FUZZ_SECONDS    how long each target runs (default 60)
#   FUZZ_BUILD_DIR  the build directory (default build-fuzz; made with
#                   CC=clang -Dfuzzing=true on first use)
#
# Inputs: fuzz/corpus/<target>/ (read only) and the seeds gen_seeds.sh makes
# in a temporary directory (valid .p8 keys, which the tree must not hold).
# New inputs libFuzzer finds go to $FUZZ_BUILD_DIR/fuzz-work/<target>/
# (kept, so that later local runs start from them), never into the tree.
#
# Prints one line per target, "fuzz: PASS <target> ..." or
# "fuzz: FAIL <target> ..." with the reproducer's path (and, when small, its
# bytes in base64, so that a CI log alone can reproduce it), then a total.
# Exits non-zero if a target crashed, leaked, timed out (-timeout=10 per
# input), ran out of memory (-rss_limit_mb=2048) or did not build.
# Replay a reproducer with the replay build:
#   build/fuzz/<target> <reproducer>
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

seconds=${FUZZ_SECONDS:-60}
dir=${FUZZ_BUILD_DIR:-build-fuzz}
case $seconds in
''|*[!0-9]*) echo "fuzz/run.sh: FUZZ_SECONDS must be a number" >&2; exit 2 ;;
esac

if [ $# -gt 0 ]; then
	targets=("$@")
else
	mapfile -t targets < <(sed -n "s/^ *'\(fuzz_[a-z0-9_]*\)' *:.*/\1/p" \
	    fuzz/meson.build)
fi
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz/run.sh: no targets" >&2
	exit 2
fi

if [ ! -f "$dir/build.ninja" ]; then
	if ! CC=clang meson setup "$dir" -Dfuzzing=true \
	    -Db_sanitize=address,undefined -Db_lundef=false \
	    -Dbuildtype=debugoptimized >"$dir.setup.log" 2>&1; then
		cat "$dir.setup.log" >&2
		echo "fuzz: FAIL setup of $dir (CC=clang -Dfuzzing=true)"
		exit 1
	fi
fi
if ! ninja -C "$dir" "${targets[@]/#/fuzz/}" >"$dir.ninja.log" 2>&1; then
	cat "$dir.ninja.log" >&2
	echo "fuzz: FAIL build in $dir"
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
artifacts="$dir/fuzz-artifacts"
mkdir -p "$artifacts"
# UBSan reports are crashes too; leaks are (libFuzzer's -detect_leaks=1).
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1

passed=0
failed=0
for t in "${targets[@]}"; do
	bin="$dir/fuzz/$t"
	seeds="fuzz/corpus/$t"
	work="$dir/fuzz-work/$t"
	gen="$tmp/$t"
	log="$artifacts/$t.log"
	mkdir -p "$work" "$gen"
	if [ ! -x "$bin" ] || [ ! -d "$seeds" ] ||
	    ! sh fuzz/gen_seeds.sh "$t" "$gen" >"$log" 2>&1; then
		cat "$log" >&2
		echo "fuzz: FAIL $t: no binary, no seed corpus, or no generated seeds"
		failed=$((failed + 1))
		continue
	fi
	rm -f "$artifacts/$t-"*
	# The first corpus directory receives what libFuzzer finds.
	"$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
	    -print_final_stats=1 -artifact_prefix="$artifacts/$t-" \
	    "$work" "$seeds" "$gen" >>"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if [ $rc -eq 0 ]; then
		echo "fuzz: PASS $t (${seconds}s, ${runs:-?} runs, ${cov:-cov: ?})"
		passed=$((passed + 1))
		continue
	fi
	failed=$((failed + 1))
	# The stack and the sanitizer's report, then the reproducer.
	grep -v '^#[0-9]*\s*\(NEW\|REDUCE\|pulse\|INITED\|RELOAD\)' "$log" |
	    tail -n 80 >&2
	repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
	echo "fuzz: FAIL $t (exit $rc): reproducer ${repro:-none written}; log $log"
	if [ -n "$repro" ] && [ -f "$repro" ] &&
	    [ "$(stat -c %s "$repro")" -le 8192 ]; then
		echo "fuzz: $t reproducer, base64:"
		base64 "$repro"
	fi
done

echo "fuzz: $passed targets clean, $failed failing, ${seconds}s each"
[ "$failed" -eq 0 ]
