#!/usr/bin/env bash
# run.sh: install what is missing, build, and start p8vaultd in the
# foreground on the embedded development defaults (scripts/dev-daemon.sh):
# state under ./var, a development master key created there on first run
# (with a warning: it is for development only) and reused quietly after,
# the portal API on 127.0.0.1:8470 and the signing API on the unix socket
# ./var/sign.sock. On a first run, once the daemon is ready, it prints the
# few commands that lead to a first token (docs/api.md has the rest).
#
# Extra arguments are passed to p8vaultd.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh

p8v_ensure_packages $P8V_BUILD_PACKAGES $P8V_RUN_PACKAGES $P8V_DEV_PACKAGES

# The build's output is kept and shown only when it fails: ninja writes
# compiler errors on stdout, which a quiet run must not throw away.
build_log=$(mktemp)
if ! { { [ -f build/build.ninja ] || meson setup build; } &&
	ninja -C build; } >"$build_log" 2>&1; then
	cat "$build_log" >&2
	rm -f "$build_log"
	echo "run.sh: the build failed (its output is above)" >&2
	exit 1
fi
rm -f "$build_log"

first_steps() {
	cat >&2 <<STEPS

p8vault: first run: the daemon is ready. In another terminal, from
$(pwd):

  # Tokens for the portal API (uploads) and the signing API:
  PORTAL_TOKEN=\$(build/cli/p8vault token create --state ./var --role portal)
  P8V_TOKEN=\$(build/cli/p8vault token create --state ./var --role signer)

  # A throwaway test key, made as Apple makes them (never upload a real
  # key to a development vault):
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \\
    -out AuthKey_TEST123456.p8

  # Upload it for an app:
  curl -sS http://127.0.0.1:8470/v1/apps/com.example.app/keys \\
    -H "Authorization: Bearer \$PORTAL_TOKEN" \\
    -F key_id=TEST123456 -F team_id=TEAM123456 -F p8=@AuthKey_TEST123456.p8

  # Fetch the app's APNs provider token over the signing socket:
  curl -sS --unix-socket ./var/sign.sock -X POST \\
    -H "Authorization: Bearer \$P8V_TOKEN" \\
    http://localhost/v1/apps/com.example.app/apns-token

More in docs/api.md. This message shows on a first run only (no
./var/dev-master.key yet); rm -rf ./var starts afresh.

STEPS
}

# Printed by a process of its own (reparented at once, so that the
# daemon never has a child it did not start) when the daemon answers
# /readyz on its signing socket; it gives up after a minute.
if [ ! -e var/dev-master.key ]; then
	( (
		for _ in $(seq 300); do
			if curl -sf --max-time 1 --unix-socket var/sign.sock \
			    http://localhost/readyz >/dev/null 2>&1; then
				first_steps
				exit 0
			fi
			sleep 0.2
		done
	) & )
fi
exec scripts/dev-daemon.sh "$@"
