#!/usr/bin/env bash
# dev-daemon.sh: start p8vaultd on the development defaults, exactly as
# ./run.sh does (run.sh builds first, then runs this):
#
#   p8vaultd --dev [ARGS...]   in the directory P8V_DEV_DIR
#
# --dev keeps everything under ./var of that directory: the state, a
# development master key (created on the first run, reused after), the
# signing socket ./var/sign.sock; the portal API listens on 127.0.0.1:8470
# (ARGS may override it, e.g. --listen 127.0.0.1:0).
#
#   P8V_DEV_DIR     where ./var is (default: the repository)
#   P8V_DEV_DAEMON  the p8vaultd binary (default: build/server/p8vaultd of
#                   the repository)
#
# tests/integration/test_docs_api.py starts the daemon with this script, in
# a temporary directory, to run docs/api.md's examples against it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
daemon=${P8V_DEV_DAEMON:-$repo/build/server/p8vaultd}
cd "${P8V_DEV_DIR:-$repo}"
exec "$daemon" --dev "$@"
