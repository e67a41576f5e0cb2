#!/usr/bin/env bash
# bench/run.sh: measure p8vaultd against its yardsticks in one run, with
# the same load, and print one table with the ratios that issue 8 sets as
# targets (docs/benchmarks.md says what each row is and records a run).
#
#   bench/run.sh [--duration S] [--rounds R] [--connections C]
#                [--threads T] [--sign-threads S] [--scale N] [--no-scale]
#                [--no-node] [--no-etcd] [--quick]
#
#   --duration S     seconds of load per row and round (default 10), after
#                    a 1 s warm-up on the same connections
#   --rounds R       rounds (default 3): every row is measured once per
#                    round, the rows of a round one after another, and the
#                    table shows each row's median round; a burst of load
#                    from elsewhere then moves one round of every row,
#                    not all rounds of one row
#   --connections C  wrk connections (default 32; one wrk thread: -t1)
#   --threads T      threads (p8vaultd's --threads) of the fixed ceiling
#                    and of the p8vaultd answering apns-token; default
#                    CPUs - 1 (at least 1): wrk runs on the same machine
#                    and takes one CPU, and a server with as many threads
#                    as CPUs queues behind it (the bare ceiling on 2 CPUs:
#                    118 k req/s and p99 ~4 ms with 2 threads, 168 k and
#                    0.25 ms with 1; docs/benchmarks.md)
#   --sign-threads S threads of the signing ceiling and of the p8vaultd
#                    answering /jwt and uploads; default CPUs: signing is
#                    CPU-bound (jose, too, signs on libuv's thread pool),
#                    and an upload waits on fdatasync while others are
#                    parsed and sealed. Both p8vaultd processes serve the
#                    same state directory.
#   --scale N        keys for the scale rows (default 1000000): a second
#                    p8vaultd on a state directory of N keys (made by
#                    bench/populate) answers apns-token in the same rounds;
#                    its start-up time and `p8vault master rotate` over
#                    the N keys are measured too
#   --no-scale       skip the scale rows (populating takes ~30 s for 1M)
#   --no-node        skip the Node.js peer
#   --no-etcd        skip the etcd rows (they need /usr/bin/etcd, Debian's
#                    etcd-server; skipped with a message when it is absent)
#   --quick          --duration 3 --rounds 1 --no-scale: a smoke test
#
# Rows:
#   ceiling fixed   bench/ceiling_fixed: bare libmicrohttpd, fixed body
#   ceiling sign    bench/ceiling_sign: the same, a fresh ES256 JWT per
#                   request from a preloaded key (straight OpenSSL)
#   node cached     bench/node_peer.mjs --mode cached (jose, one token)
#   node sign       bench/node_peer.mjs --mode sign (jose SignJWT per req)
#   apns-token      p8vaultd POST /v1/apps/{app}/apns-token (cached token),
#                   1000 other keys stored
#   apns-token N    the same with N keys stored
#   jwt             p8vaultd POST /v1/apps/{app}/jwt {"profile":"musickit"}
#                   (a fresh signature, through the keeper process; a
#                   DeviceCheck request answers the shared APNs token)
#   upload          p8vaultd POST /v1/apps/{app}/keys, a new app each
#   lmdb commit     bench/lmdb_commit: durable single-record commits/s on
#                   the filesystem of the state directory
#   apns-token etcd the apns-token row on a node whose store is a 3-member
#                   etcd cluster on loopback (--store etcd://...)
#   upload etcd     the upload row on that node
#   etcd put        etcd's own durable puts/s on the same cluster: POST
#                   /v3/kv/put of a 200-byte value, same wrk load
# Every server is started before the first round and listens on 127.0.0.1
# only (an idle one takes no CPU); every load run ends by itself.
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
ROUNDS=3
CONNS=32
WARMUP=1
SCALE=1000000
SMALL=1000
NODE=1
ETCD=1
CPUS=$(nproc)
THREADS=$(( CPUS > 1 ? CPUS - 1 : 1 ))
SIGN_THREADS=$CPUS

usage() { sed -n '2,60p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--duration) DURATION=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--connections) CONNS=$2; shift 2 ;;
	--threads) THREADS=$2; shift 2 ;;
	--sign-threads) SIGN_THREADS=$2; shift 2 ;;
	--scale) SCALE=$2; shift 2 ;;
	--no-scale) SCALE=0; shift ;;
	--no-node) NODE=0; shift ;;
	--no-etcd) ETCD=0; shift ;;
	--quick) DURATION=3; ROUNDS=1; SCALE=0; shift ;;
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
command -v script >/dev/null || need_pkgs+=(bsdutils)
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
if [ "$ETCD" = 1 ] && [ ! -x /usr/bin/etcd ]; then
	echo "run.sh: /usr/bin/etcd is not installed (etcd-server): the etcd rows are skipped" >&2
	ETCD=0
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
	for i in $(seq 400); do
		SRV_PORT=$(awk '/^listening/ {print $2}' "$log" 2>/dev/null)
		[ -n "$SRV_PORT" ] && return 0
		sleep 0.05
	done
	echo "run.sh: $* did not start" >&2
	cat "$log.err" >&2
	exit 1
}

# Start p8vaultd on STATE (more options may follow) at the default log
# level (info, as in production); sets D_PID, D_PORTAL, D_SIGN and
# D_READY_MS (from exec to the first 200 of GET /readyz, polled every 5 ms).
start_daemon() {
	local state=$1 log=$RUN/daemon.$RANDOM.log t0 i
	shift
	t0=$(date +%s%N)
	# No tenant quotas (issue 15): a benchmark is one tenant uploading
	# as fast as it can, far past the per-token defaults.
	"$P8VAULTD" --state "$state" --master-key-file "$RUN/master.key" \
	    --listen 127.0.0.1:0 --sign-listen 127.0.0.1:0 \
	    --max-uploads-per-minute 0 --max-apps-per-token 0 \
	    --max-keys-per-app 0 --max-records 0 "$@" 2>"$log" &
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

stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# The rows, in the order of a round. For each: URL, wrk script, and the
# environment of the script (token, body...) as "VAR=value" words.
ROWS=()
declare -A URL SCRIPT ENVS
add_row() { # name url script env...
	local name=$1
	ROWS+=("$name")
	URL[$name]=$2
	SCRIPT[$name]=$3
	shift 3
	ENVS[$name]="$*"
}

# Results: one line per round and row, "req_s p50_us p99_us requests
# errors non2xx", in $RUN/results/NAME.
measure() { # name
	local name=$1 line
	local -a envs
	read -r -a envs <<<"${ENVS[$name]}"
	env "${envs[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" \
	    -s "${SCRIPT[$name]}" "${URL[$name]}" >/dev/null 2>&1
	line=$(env "${envs[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
	    -s "${SCRIPT[$name]}" "${URL[$name]}" | grep '^RESULT') || {
		echo "run.sh: wrk failed on $name" >&2; exit 1; }
	# RESULT req_s=... p50_us=... p99_us=... requests=... errors=... non2xx=...
	sed 's/[a-z0-9_]*=//g; s/^RESULT //' <<<"$line" \
	    >>"$RUN/results/${name// /_}"
	say "$name: $line"
	# A row whose answers are not 200 measures something else.
	case $line in
	*" non2xx=0"*) ;;
	*) echo "run.sh: $name: answers other than 2xx: $line" >&2; exit 1 ;;
	esac
}

# The median of column COL of a row's rounds.
median() { # name col
	sort -n -k"$2","$2" "$RUN/results/${1// /_}" |
	    awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# The median over the rounds of row A's req/s over row B's in the same
# round: the two were measured one right after the other, so a burst of
# outside load that hits a round hits both.
ratio_rounds() { # rowA rowB
	paste -d' ' "$RUN/results/${1// /_}" "$RUN/results/${2// /_}" |
	    awk \
	    '{ print ($7 > 0 ? $1 / $7 : 0) }' | sort -n |
	    awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }'
}

# --- keys and state -----------------------------------------------------

say "scratch in $RUN; $(uptime)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$RUN/results"
KEY=$RUN/AuthKey_ABC1234567.p8
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$KEY" 2>/dev/null

# A state directory with N other keys (bench/populate), and its tokens.
make_state() { # dir count
	"$P8VAULT" init --state "$1" --master-key-file "$RUN/master.key" \
	    >/dev/null
	"$BUILD/bench/populate" --state "$1" \
	    --master-key-file "$RUN/master.key" --count "$2" >/dev/null
}
token() { # dir role
	"$P8VAULT" token create --state "$1" --role "$2" --json 2>/dev/null |
	    sed 's/.*"token":"\([^"]*\)".*/\1/'
}
# Upload the benchmark's key through the portal API, for apns and the
# MusicKit profile of /jwt.
upload_bench_key() { # portal-port portal-token
	curl -sf "http://127.0.0.1:$1/v1/apps/com.bench.app/keys?key_id=ABC1234567&team_id=DEF1234567&services=apns,musickit" \
	    -H "Authorization: Bearer $2" \
	    -H 'Content-Type: application/x-pem-file' \
	    --data-binary @"$KEY" >/dev/null
}

say "state with $SMALL keys"
make_state "$RUN/state" "$SMALL"
PORTAL_TOKEN=$(token "$RUN/state" portal)
SIGNER_TOKEN=$(token "$RUN/state" signer)
if [ "$SCALE" -gt 0 ]; then
	say "state with $SCALE keys (bench/populate)"
	t0=$(date +%s%N)
	make_state "$RUN/big" "$SCALE"
	POP_S=$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.1f", ns / 1e9 }')
	BIG_PORTAL_TOKEN=$(token "$RUN/big" portal)
	BIG_SIGNER_TOKEN=$(token "$RUN/big" signer)
fi

# --- servers --------------------------------------------------------------

say "starting the servers"
start_simple ceiling_fixed "$BUILD/bench/ceiling_fixed" --threads "$THREADS"
FIXED_PORT=$SRV_PORT
start_simple ceiling_sign "$BUILD/bench/ceiling_sign" --key "$KEY" \
    --threads "$SIGN_THREADS"
SIGN_PORT=$SRV_PORT
if [ "$NODE" = 1 ]; then
	mkdir -p "$OUT/node"
	cp "$BENCH/node_peer.mjs" "$OUT/node/"
	if [ ! -d "$OUT/node/node_modules/jose" ]; then
		say "npm install jose (into $OUT/node)"
		echo '{"private":true,"type":"module"}' >"$OUT/node/package.json"
		(cd "$OUT/node" && npm install --no-audit --no-fund jose \
		    >/dev/null 2>&1) || {
			echo "run.sh: npm install jose failed: Node.js peer skipped" >&2
			NODE=0
		}
	fi
fi
if [ "$NODE" = 1 ]; then
	# The same signer token as p8vaultd's rows (its id and the SHA-256
	# of its secret are what the peer checks).
	start_simple node_cached env BENCH_TOKEN="$SIGNER_TOKEN" \
	    node "$OUT/node/node_peer.mjs" --key "$KEY" --mode cached
	NODE_CACHED_PORT=$SRV_PORT
	start_simple node_sign env BENCH_TOKEN="$SIGNER_TOKEN" \
	    node "$OUT/node/node_peer.mjs" --key "$KEY" --mode sign
	NODE_SIGN_PORT=$SRV_PORT
fi
start_daemon "$RUN/state" --threads "$SIGN_THREADS"
SIGNER_PORTAL=$D_PORTAL SIGNER_SIGN=$D_SIGN
upload_bench_key "$SIGNER_PORTAL" "$PORTAL_TOKEN"
start_daemon "$RUN/state" --threads "$THREADS"
SMALL_SIGN=$D_SIGN
if [ "$SCALE" -gt 0 ]; then
	STARTUPS=()
	for i in 1 2 3; do
		start_daemon "$RUN/big" --threads "$THREADS"
		STARTUPS+=("$D_READY_MS")
		[ $i = 3 ] || stop_pid "$D_PID"
	done
	STARTUP_MS=$(printf '%s\n' "${STARTUPS[@]}" | sort -n | sed -n 2p)
	say "start-up to /readyz with $SCALE keys: ${STARTUPS[*]} ms"
	BIG_PID=$D_PID BIG_SIGN=$D_SIGN
	upload_bench_key "$D_PORTAL" "$BIG_PORTAL_TOKEN"
fi

# A 3-member etcd cluster on loopback and a node on it.
if [ "$ETCD" = 1 ]; then
	say "starting a 3-member etcd cluster"
	EPORTS=($(python3 -c 'import socket
ss = [socket.socket() for _ in range(6)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'))
	INITIAL=""
	for i in 0 1 2; do
		INITIAL+="${INITIAL:+,}e$i=http://127.0.0.1:${EPORTS[$((i + 3))]}"
	done
	for i in 0 1 2; do
		/usr/bin/etcd --name "e$i" --data-dir "$RUN/etcd$i" \
		    --listen-client-urls "http://127.0.0.1:${EPORTS[$i]}" \
		    --advertise-client-urls "http://127.0.0.1:${EPORTS[$i]}" \
		    --listen-peer-urls "http://127.0.0.1:${EPORTS[$((i + 3))]}" \
		    --initial-advertise-peer-urls "http://127.0.0.1:${EPORTS[$((i + 3))]}" \
		    --initial-cluster "$INITIAL" --initial-cluster-state new \
		    >"$RUN/etcd$i.log" 2>&1 &
		PIDS+=("$!")
	done
	for i in 0 1 2; do
		for t in $(seq 400); do
			curl -sf "http://127.0.0.1:${EPORTS[$i]}/health" |
			    grep -q '"true"' && break
			sleep 0.05
		done
	done
	ETCD_URL="etcd://127.0.0.1:${EPORTS[0]},127.0.0.1:${EPORTS[1]},127.0.0.1:${EPORTS[2]}/bench"
	"$P8VAULT" init --store "$ETCD_URL" --master-key-file "$RUN/master.key" \
	    >/dev/null
	ETCD_PORTAL_TOKEN=$(token "$ETCD_URL" portal)
	ETCD_SIGNER_TOKEN=$(token "$ETCD_URL" signer)
	start_daemon "$ETCD_URL" --threads "$THREADS"
	ETCD_NODE_PORTAL=$D_PORTAL ETCD_NODE_SIGN=$D_SIGN
	upload_bench_key "$ETCD_NODE_PORTAL" "$ETCD_PORTAL_TOKEN"
fi

DC='BENCH_BODY={"profile":"musickit"}'
add_row "ceiling fixed" "http://127.0.0.1:$FIXED_PORT/" "$BENCH/post.lua"
add_row "apns-token" \
    "http://127.0.0.1:$SMALL_SIGN/v1/apps/com.bench.app/apns-token" \
    "$BENCH/post.lua" "BENCH_TOKEN=$SIGNER_TOKEN"
[ "$SCALE" -gt 0 ] && add_row "apns-token $SCALE keys" \
    "http://127.0.0.1:$BIG_SIGN/v1/apps/com.bench.app/apns-token" \
    "$BENCH/post.lua" "BENCH_TOKEN=$BIG_SIGNER_TOKEN"
[ "$ETCD" = 1 ] && add_row "apns-token etcd" \
    "http://127.0.0.1:$ETCD_NODE_SIGN/v1/apps/com.bench.app/apns-token" \
    "$BENCH/post.lua" "BENCH_TOKEN=$ETCD_SIGNER_TOKEN"
[ "$NODE" = 1 ] && add_row "node cached" \
    "http://127.0.0.1:$NODE_CACHED_PORT/v1/apps/com.bench.app/apns-token" \
    "$BENCH/post.lua" "BENCH_TOKEN=$SIGNER_TOKEN"
add_row "ceiling sign" "http://127.0.0.1:$SIGN_PORT/" "$BENCH/post.lua" "$DC"
add_row "jwt" "http://127.0.0.1:$SIGNER_SIGN/v1/apps/com.bench.app/jwt" \
    "$BENCH/post.lua" "BENCH_TOKEN=$SIGNER_TOKEN" "$DC"
[ "$NODE" = 1 ] && add_row "node sign" \
    "http://127.0.0.1:$NODE_SIGN_PORT/v1/apps/com.bench.app/jwt" \
    "$BENCH/post.lua" "BENCH_TOKEN=$SIGNER_TOKEN" "$DC"

# --- rounds -----------------------------------------------------------------

for round in $(seq "$ROUNDS"); do
	say "round $round of $ROUNDS"
	for r in "${ROWS[@]}"; do
		measure "$r"
	done
done

# Uploads against the disk's commit rate, in rounds of their own (after the
# token rows: every upload adds a key to the small store).
add_row "upload" "http://127.0.0.1:$SIGNER_PORTAL" "$BENCH/upload.lua"
for round in $(seq "$ROUNDS"); do
	say "uploads, round $round of $ROUNDS"
	line=$("$BUILD/bench/lmdb_commit" "$RUN/lmdb" "$DURATION")
	say "lmdb commit: $line"
	awk '{ for (i = 1; i < NF; i++) { if ($i == "commits_per_s") r = $(i+1);
	    if ($i == "p50_ms") a = $(i+1) * 1000; if ($i == "p99_ms") b = $(i+1) * 1000 }
	    printf "%s %d %d %s 0 0\n", r, a, b, $2 }' <<<"$line" \
	    >>"$RUN/results/lmdb_commit"
	ENVS[upload]="BENCH_TOKEN=$PORTAL_TOKEN BENCH_P8_FILE=$KEY BENCH_PREFIX=com.bench.up$round."
	measure "upload"
	if [ "$ETCD" = 1 ]; then
		if [ "$round" = 1 ]; then
			add_row "upload etcd" \
			    "http://127.0.0.1:$ETCD_NODE_PORTAL" "$BENCH/upload.lua"
			add_row "etcd put" \
			    "http://127.0.0.1:${EPORTS[0]}/v3/kv/put" \
			    "$BENCH/post.lua" \
			    "BENCH_BODY={\"key\":\"cHV0\",\"value\":\"$(head -c 150 /dev/zero | base64 -w0)\"}"
		fi
		ENVS["upload etcd"]="BENCH_TOKEN=$ETCD_PORTAL_TOKEN BENCH_P8_FILE=$KEY BENCH_PREFIX=com.bench.eup$round."
		measure "upload etcd"
		measure "etcd put"
	fi
done
ROWS+=("lmdb commit")

# --- scale: rotation ---------------------------------------------------------

if [ "$SCALE" -gt 0 ]; then
	stop_pid "$BIG_PID"
	say "p8vault master rotate over $SCALE keys"
	"$P8VAULT" master generate "$RUN/master2.key" >/dev/null
	t0=$(date +%s%N)
	# A pseudo-terminal (script), so that the CLI draws its progress line.
	script -qefc "'$P8VAULT' master rotate --state '$RUN/big' --master-key-file '$RUN/master.key' --new-master-key-file '$RUN/master2.key'" \
	    /dev/null >"$RUN/rotate.out" 2>&1
	ROTATE_S=$(awk -v ns=$(( $(date +%s%N) - t0 )) 'BEGIN { printf "%.1f", ns / 1e9 }')
	tr '\r' '\n' <"$RUN/rotate.out" | grep -v '^$' | sed -n '1p;$p' >&2
	PROGRESS_LINES=$(tr '\r' '\n' <"$RUN/rotate.out" | grep -c 're-wrapping' || true)
	rm -rf "$RUN/big"
fi

# --- the table -------------------------------------------------------------

declare -A REQ P50 P99
for r in "${ROWS[@]}"; do
	REQ[$r]=$(median "$r" 1)
	P50[$r]=$(median "$r" 2)
	P99[$r]=$(median "$r" 3)
done
F=${REQ["ceiling fixed"]}
S=${REQ["ceiling sign"]}
NC=${REQ["node cached"]:-0}
NS=${REQ["node sign"]:-0}
A=${REQ["apns-token"]}
J=${REQ["jwt"]}
U=${REQ["upload"]}
L=${REQ["lmdb commit"]}
ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }

echo
echo "p8vault bench/run.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
echo "wrk -t1 -c$CONNS -d${DURATION}s --latency (after ${WARMUP}s warm-up), $ROUNDS round(s), median round shown"
echo "threads: ceiling fixed and apns-token rows $THREADS; ceiling sign, jwt and upload rows $SIGN_THREADS"
echo
printf '%-24s %10s %9s %9s   %s\n' "row" "req/s" "p50 ms" "p99 ms" "rounds (req/s)"
for r in "${ROWS[@]}"; do
	printf '%-24s %10.0f %9s %9s   %s\n' "$r" "${REQ[$r]}" \
	    "$(ms "${P50[$r]}")" "$(ms "${P99[$r]}")" \
	    "$(awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 }' \
	    "$RUN/results/${r// /_}")"
done
echo
echo "openssl speed ecdsap256: $(openssl speed -seconds 2 ecdsap256 2>/dev/null |
    awk '/ecdsa \(nistp256\)/ {print $(NF-1)}') signatures/s (one core)"
if [ "$SCALE" -gt 0 ]; then
	echo "populate $SCALE keys: $POP_S s; start-up to /readyz: ${STARTUPS[*]} ms; master rotate: $ROTATE_S s ($PROGRESS_LINES progress updates)"
fi
echo
check() { # name value op target [ratio of medians]
	local also=${5:+" [$5]"} res=MISSED
	awk -v v="$2" -v t="$4" "BEGIN { exit !(v $3 t) }" && res=met
	printf '  %-44s %6s %s %-5s %-6s%s\n' "$1" "$2" "$3" "$4" "$res" "$also"
}
echo "targets (each ratio: the median over the rounds of the two rows' ratio in"
echo "the same round; the ratio of the medians above in brackets):"
check "apns-token / ceiling fixed" \
    "$(ratio_rounds "apns-token" "ceiling fixed")" ">=" 0.9 "$(ratio "$A" "$F")"
[ "$NODE" = 1 ] && check "apns-token / node cached" \
    "$(ratio_rounds "apns-token" "node cached")" ">=" 2.5 "$(ratio "$A" "$NC")"
check "apns-token p99 at $CONNS connections (ms)" \
    "$(ms "${P99["apns-token"]}")" "<=" 1 ""
check "jwt / ceiling sign" "$(ratio_rounds "jwt" "ceiling sign")" ">=" 0.85 \
    "$(ratio "$J" "$S")"
[ "$NODE" = 1 ] && check "jwt / node sign" \
    "$(ratio_rounds "jwt" "node sign")" ">=" 2 "$(ratio "$J" "$NS")"
check "upload / lmdb commit" "$(ratio_rounds "upload" "lmdb commit")" ">=" \
    0.7 "$(ratio "$U" "$L")"
if [ "$ETCD" = 1 ]; then
	check "apns-token etcd / apns-token" \
	    "$(ratio_rounds "apns-token etcd" "apns-token")" ">=" 0.95 \
	    "$(ratio "${REQ["apns-token etcd"]}" "$A")"
	# No target set: what uploads cost on etcd, as a ratio to etcd's own
	# durable put rate under the same load.
	printf '  %-44s %6s\n' "upload etcd / etcd put (recorded)" \
	    "$(ratio_rounds "upload etcd" "etcd put")"
fi
if [ "$SCALE" -gt 0 ]; then
	check "apns-token $SCALE keys / $SMALL keys" \
	    "$(ratio_rounds "apns-token $SCALE keys" "apns-token")" ">=" 0.9 \
	    "$(ratio "${REQ["apns-token $SCALE keys"]}" "$A")"
	check "start-up to /readyz, $SCALE keys (s)" "$(ms "$STARTUP_MS")" "<" 1 ""
	check "master rotate, $SCALE keys (s)" "$ROTATE_S" "<" 60 ""
fi
echo
echo "load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
