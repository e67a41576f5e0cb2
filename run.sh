#!/usr/bin/env bash
# run.sh: install what is missing, build, and start p8vaultd in the
# foreground on the embedded development defaults: state under ./var, a
# development master key created there on first run (with a warning: it is
# for development only), the portal API on 127.0.0.1:8470 and the signing
# API on the unix socket ./var/sign.sock.
#
# Extra arguments are passed to p8vaultd.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/deps.sh

p8v_ensure_packages $P8V_BUILD_PACKAGES $P8V_RUN_PACKAGES
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec build/server/p8vaultd --dev "$@"
