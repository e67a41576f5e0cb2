#!/usr/bin/env bash
# bench/run.sh: measure p8vaultd against its yardsticks, one after another,
# in one run, with the same load, and print one table with the ratios that
# issue 8 sets as targets (docs/benchmarks.md says what each row is and
# records a run).
#
#   bench/run.sh [--duration S] [--connections C] [--scale N] [--quick]
#                [--no-node] [--no-scale]
#
#   --duration S     seconds of load per row (default 10), after a 2 s
#                    warm-up on the same connections
#   --connections C  wrk connections (default 32; one wrk thread: -t1)
#   --scale N        keys for the scale rows (default 1000000): token
#                    requests, start-up time and master-key rotation
#                    with N stored keys, against the same with 1000
#   --no-scale       skip the scale rows (they take a few minutes)
#   --no-node        skip the Node.js peer
#   --quick          --duration 3 --no-scale: a smoke test of the script
#
# Rows, each server alone on the machine while it is measured:
#   ceiling fixed   bench/ceiling_fixed: bare libmicrohttpd, fixed body
#   ceiling sign    bench/ceiling_sign: the same, a fresh ES256 JWT per
#                   request from a preloaded key (straight OpenSSL)
#   node cached     bench/node_peer.mjs --mode cached (jose, one token)
#   node sign       bench/node_peer.mjs --mode sign (jose SignJWT per req)
#   apns-token      p8vaultd POST /v1/apps/{app}/apns-token (cached token)
#   jwt             p8vaultd POST /v1/apps/{app}/jwt {"profile":"devicecheck"}
#   upload          p8vaultd POST /v1/apps/{app}/keys, a new app each
#   lmdb commit     bench/lmdb_commit: durable single-record commits/s
#                   on the same filesystem as the state directory
# Everything listens on 127.0.0.1 only; every load run ends by itself.
#
# Installs what is missing (Debian packages; `jose` from npm into
# bench/out/node) only when run as root; builds release binaries in
# build-bench/ (or $BENCH_BUILD); keeps its scratch files in bench/out/
# (git-ignored) and removes the state directories it made.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
BUILD=${BENCH_BUILD:-$ROOT/build-bench}
OUT=$BENCH/out
DURATION=10
CONNS=32
WARMUP=2
SCALE=1000000
SMALL=1000
NODE=1

usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--connections) CONNS=$2; shift 2 ;;
	--scale) SCALE=$2; shift 2 ;;
	--no-scale) SCALE=0; shift ;;
	--no-node) NODE=0; shift ;;
	--quick) DURATION=3; SCALE=0; shift ;;
	-h|--help) usage ;;
	*) echo "run.sh: unknown option $1" >&2; usage ;;
	esac
done

say() { printf '== %s\n' "$*" >&2; }

# --- what is needed ----------------------------------------------------

need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v meson >/dev/null || need_pkgs+=(meson)
command -v ninja >/dev/null || need_pkgs+=(ninja-build)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
for p in libmicrohttpd-dev liblmdb-dev libsodium-dev libjansson-dev libssl-dev; do
	dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		say "installing ${need_pkgs[*]}"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
	else
		echo "run.sh: missing ${need_pkgs[*]}; run as root to install" >&2
		exit 1
	fi
fi
if [ "$NODE" = 1 ] && ! command -v node >/dev/null; then
	echo "run.sh: node is not installed: the Node.js peer is skipped" >&2
	NODE=0
fi

# --- build --------------------------------------------------------------

if [ ! -f "$BUILD/build.ninja" ]; then
	say "meson setup $BUILD (release)"
	meson setup "$BUILD" "$ROOT" --buildtype=release >/dev/null
fi
say "building"
ninja -C "$BUILD" >/dev/null
P8VAULTD=$BUILD/server/p8vaultd
P8VAULT=$BUILD/cli/p8vault

mkdir -p "$OUT"
RUN=$(mktemp -d "$OUT/run.XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$RUN"
}
trap cleanup EXIT

# --- helpers ------------------------------------------------------------

# Start a yardstick that prints "listening PORT"; sets SRV_PID, SRV_PORT.
start_simple() {
	local log=$RUN/$1.out i
	shift
	"$@" >"$log" 2>"$log.err" &
	SRV_PID=$!
	PIDS+=("$SRV_PID")
	for i in $(seq 200); do
		SRV_PORT=$(awk '/^listening/ {print $2}' "$log" 2>/dev/null)
		[ -n "$SRV_PORT" ] && return 0
		sleep 0.05
	done
	echo "run.sh: $* did not start" >&2
	cat "$log.err" >&2
	exit 1
}

stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# wrk_row NAME URL [env...]: warm up, measure, append a RESULT line.
declare -A REQ P50 P99 NOTE
ROWS=()
wrk_row() {
	local name=$1 url=$2 script=${WRK_SCRIPT:-$BENCH/post.lua} line
	wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$script" "$url" >/dev/null 2>&1
	line=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" \
	    "$url" | grep '^RESULT')
	ROWS+=("$name")
	REQ[$name]=$(sed 's/.*req_s=\([0-9.]*\).*/\1/' <<<"$line")
	P50[$name]=$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$line")
	P99[$name]=$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"$line")
	NOTE[$name]=$(sed 's/.*requests=\([0-9]*\) errors=\([0-9]*\) non2xx=\([0-9]*\).*/\1 requests, \2 errors, \3 non-2xx/' <<<"$line")
	say "$name: ${REQ[$name]} req/s, p50 ${P50[$name]} us, p99 ${P99[$name]} us (${NOTE[$name]})"
}

# Start p8vaultd on STATE at the default log level (info, as in
# production); sets D_PID, D_PORTAL, D_SIGN and D_READY_MS (from exec to
# the first 200 of GET /readyz).
start_daemon() {
	local state=$1 log=$RUN/daemon.$RANDOM.log t0 i
	t0=$(date +%s%N)
	"$P8VAULTD" --state "$state" --master-key-file "$RUN/master.key" \
	    --listen 127.0.0.1:0 --sign-listen 127.0.0.1:0 2>"$log" &
	D_PID=$!
	PIDS+=("$D_PID")
	D_SIGN= D_PORTAL=
	for i in $(seq 4000); do
		# Until both lines are whole in the log.
		if ! [[ $D_SIGN =~ ^[0-9]+$ && $D_PORTAL =~ ^[0-9]+$ ]]; then
			D_PORTAL=$(port_in_log "$log" portal)
			D_SIGN=$(port_in_log "$log" sign)
		elif curl -sf "http://127.0.0.1:$D_SIGN/readyz" \
		    >/dev/null 2>&1; then
			D_READY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
			return 0
		fi
		sleep 0.005
	done
	echo "run.sh: p8vaultd did not get ready" >&2
	cat "$log" >&2
	exit 1
}

# The port of a listener from the daemon's "listening" log line.
port_in_log() {
	{ grep '"event":"listening"' "$1" 2>/dev/null || true; } |
	    { grep "\"listener\":\"$2\"" || true; } |
	    sed -n 's/.*"port":\([0-9][0-9]*\),.*/\1/p' | head -1
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# --- keys and state -----------------------------------------------------

say "scratch in $RUN; $(uptime)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$RUN/AuthKey_ABC1234567.p8" 2>/dev/null
"$P8VAULT" init --state "$RUN/state" --master-key-file "$RUN/master.key" \
    >/dev/null
PORTAL_TOKEN=$("$P8VAULT" token create --state "$RUN/state" --role portal \
    2>/dev/null)
SIGNER_TOKEN=$("$P8VAULT" token create --state "$RUN/state" --role signer \
    --json 2>/dev/null | sed 's/.*"token":"\([^"]*\)".*/\1/')
say "populating $SMALL keys"
"$BUILD/bench/populate" --state "$RUN/state" \
    --master-key-file "$RUN/master.key" --count "$SMALL" >/dev/null 2>&1

# Upload the benchmark's key through the portal API, for apns and the
# DeviceCheck profile of /jwt.
upload_bench_key() {
	curl -sf "http://127.0.0.1:$D_PORTAL/v1/apps/com.bench.app/keys?key_id=ABC1234567&team_id=DEF1234567&services=apns,devicecheck" \
	    -H "Authorization: Bearer $PORTAL_TOKEN" \
	    -H 'Content-Type: application/x-pem-file' \
	    --data-binary @"$RUN/AuthKey_ABC1234567.p8" >/dev/null
}

# --- the yardsticks -----------------------------------------------------

export BENCH_TOKEN= BENCH_BODY=
say "ceiling fixed"
start_simple ceiling_fixed "$BUILD/bench/ceiling_fixed"
wrk_row "ceiling fixed" "http://127.0.0.1:$SRV_PORT/"
stop_pid "$SRV_PID"

say "ceiling sign"
start_simple ceiling_sign "$BUILD/bench/ceiling_sign" \
    --key "$RUN/AuthKey_ABC1234567.p8"
BENCH_BODY='{"profile":"devicecheck"}' wrk_row "ceiling sign" \
    "http://127.0.0.1:$SRV_PORT/"
stop_pid "$SRV_PID"

SPEED=$(openssl speed -seconds 3 ecdsap256 2>/dev/null |
    awk '/ecdsa \(nistp256\)/ {print $(NF-1)}')
say "openssl speed ecdsap256: $SPEED signatures/s on one core"

if [ "$NODE" = 1 ]; then
	say "node peer (jose from npm)"
	mkdir -p "$OUT/node"
	cp "$BENCH/node_peer.mjs" "$OUT/node/"
	if [ ! -d "$OUT/node/node_modules/jose" ]; then
		echo '{"private":true,"type":"module"}' >"$OUT/node/package.json"
		(cd "$OUT/node" && npm install --no-audit --no-fund jose \
		    >/dev/null 2>&1) || {
			echo "run.sh: npm install jose failed: Node.js peer skipped" >&2
			NODE=0
		}
	fi
fi
if [ "$NODE" = 1 ]; then
	for mode in cached sign; do
		start_simple "node_$mode" node "$OUT/node/node_peer.mjs" \
		    --key "$RUN/AuthKey_ABC1234567.p8" --mode "$mode"
		if [ $mode = sign ]; then
			BENCH_BODY='{"profile":"devicecheck"}' wrk_row "node $mode" \
			    "http://127.0.0.1:$SRV_PORT/"
		else
			wrk_row "node $mode" "http://127.0.0.1:$SRV_PORT/"
		fi
		stop_pid "$SRV_PID"
	done
fi

# --- p8vaultd -----------------------------------------------------------

say "p8vaultd ($SMALL keys)"
start_daemon "$RUN/state"
upload_bench_key
SIGN_URL=http://127.0.0.1:$D_SIGN/v1/apps/com.bench.app
BENCH_TOKEN=$SIGNER_TOKEN wrk_row "apns-token" "$SIGN_URL/apns-token"
BENCH_TOKEN=$SIGNER_TOKEN BENCH_BODY='{"profile":"devicecheck"}' \
    wrk_row "jwt" "$SIGN_URL/jwt"
BENCH_TOKEN=$PORTAL_TOKEN BENCH_P8=$(cat "$RUN/AuthKey_ABC1234567.p8") \
    BENCH_PREFIX="com.bench.up$RANDOM." WRK_SCRIPT=$BENCH/upload.lua \
    wrk_row "upload" "http://127.0.0.1:$D_PORTAL"
stop_pid "$D_PID"

say "lmdb commit (same filesystem as the state directory)"
LMDB_LINE=$("$BUILD/bench/lmdb_commit" "$RUN/lmdb" "$DURATION")
LMDB_RATE=$(sed 's/.*commits_per_s \([0-9.]*\).*/\1/' <<<"$LMDB_LINE")
ROWS+=("lmdb commit")
REQ["lmdb commit"]=$LMDB_RATE
P50["lmdb commit"]=$(awk '{for (i = 1; i < NF; i++) if ($i == "p50_ms") printf "%d", $(i+1) * 1000}' <<<"$LMDB_LINE")
P99["lmdb commit"]=$(awk '{for (i = 1; i < NF; i++) if ($i == "p99_ms") printf "%d", $(i+1) * 1000}' <<<"$LMDB_LINE")
say "lmdb commit: $LMDB_LINE"

# --- scale ----------------------------------------------------------------

if [ "$SCALE" -gt 0 ]; then
	say "scale: populating $SCALE keys"
	"$P8VAULT" init --state "$RUN/big" --master-key-file "$RUN/master.key" \
	    >/dev/null
	t0=$(date +%s%N)
	"$BUILD/bench/populate" --state "$RUN/big" \
	    --master-key-file "$RUN/master.key" --count "$SCALE" >/dev/null
	POP_S=$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.1f", ns / 1e9 }')
	BIG_PORTAL_TOKEN=$("$P8VAULT" token create --state "$RUN/big" \
	    --role portal 2>/dev/null)
	BIG_SIGNER_TOKEN=$("$P8VAULT" token create --state "$RUN/big" \
	    --role signer --json 2>/dev/null | sed 's/.*"token":"\([^"]*\)".*/\1/')
	# Start-up with a cold page cache would measure the disk; the rows
	# compare with a warm one, as after populate.
	say "scale: p8vaultd ($SCALE keys)"
	start_daemon "$RUN/big"
	STARTUP_MS=$D_READY_MS
	PORTAL_TOKEN=$BIG_PORTAL_TOKEN upload_bench_key
	BENCH_TOKEN=$BIG_SIGNER_TOKEN wrk_row "apns-token $SCALE keys" \
	    "http://127.0.0.1:$D_SIGN/v1/apps/com.bench.app/apns-token"
	stop_pid "$D_PID"
	say "scale: p8vault master rotate over $SCALE keys"
	"$P8VAULT" master generate "$RUN/master2.key" >/dev/null
	t0=$(date +%s%N)
	# A pseudo-terminal, so that the CLI draws its progress line.
	if command -v script >/dev/null; then
		script -qefc "'$P8VAULT' master rotate --state '$RUN/big' --master-key-file '$RUN/master.key' --new-master-key-file '$RUN/master2.key'" /dev/null >&2
	else
		"$P8VAULT" master rotate --state "$RUN/big" \
		    --master-key-file "$RUN/master.key" \
		    --new-master-key-file "$RUN/master2.key" >&2
	fi
	ROTATE_S=$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.1f", ns / 1e9 }')
	rm -rf "$RUN/big"
fi

# --- the table -------------------------------------------------------------

F=${REQ["ceiling fixed"]}
S=${REQ["ceiling sign"]}
NC=${REQ["node cached"]:-0}
NS=${REQ["node sign"]:-0}
A=${REQ["apns-token"]}
J=${REQ["jwt"]}
U=${REQ["upload"]}

echo
printf '%-24s %10s %9s %9s   %s\n' "row" "req/s" "p50 ms" "p99 ms" "notes"
for r in "${ROWS[@]}"; do
	printf '%-24s %10.0f %9.3f %9.3f   %s\n' "$r" "${REQ[$r]}" \
	    "$(awk -v u="${P50[$r]}" 'BEGIN { print u / 1000 }')" \
	    "$(awk -v u="${P99[$r]}" 'BEGIN { print u / 1000 }')" "${NOTE[$r]:-}"
done
echo
echo "openssl speed ecdsap256: $SPEED signatures/s (one core)"
[ "$SCALE" -gt 0 ] && echo "populate $SCALE keys: $POP_S s"
echo
check() { # name value op target
	if awk -v v="$2" -v t="$4" "BEGIN { exit !(v $3 t) }"; then
		printf '  %-54s %10s %s %-8s met\n' "$1" "$2" "$3" "$4"
	else
		printf '  %-54s %10s %s %-8s MISSED\n' "$1" "$2" "$3" "$4"
	fi
}
echo "targets (ratios within this run):"
check "apns-token / ceiling fixed" "$(ratio "$A" "$F")" ">=" 0.9
[ "$NODE" = 1 ] && check "apns-token / node cached" "$(ratio "$A" "$NC")" ">=" 2.5
check "apns-token p99 at $CONNS connections (ms)" \
    "$(awk -v u="${P99["apns-token"]}" 'BEGIN { print u / 1000 }')" "<=" 1
check "jwt / ceiling sign" "$(ratio "$J" "$S")" ">=" 0.85
[ "$NODE" = 1 ] && check "jwt / node sign" "$(ratio "$J" "$NS")" ">=" 2
check "upload / lmdb commit" "$(ratio "$U" "$LMDB_RATE")" ">=" 0.7
if [ "$SCALE" -gt 0 ]; then
	check "apns-token $SCALE keys / $SMALL keys" \
	    "$(ratio "${REQ["apns-token $SCALE keys"]}" "$A")" ">=" 0.9
	check "start-up to /readyz with $SCALE keys (s)" \
	    "$(awk -v m="$STARTUP_MS" 'BEGIN { print m / 1000 }')" "<" 1
	check "master rotate of $SCALE keys (s)" "$ROTATE_S" "<" 60
fi
echo
echo "load: wrk -t1 -c$CONNS -d${DURATION}s --latency after ${WARMUP}s warm-up; $(nproc) CPUs; load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
