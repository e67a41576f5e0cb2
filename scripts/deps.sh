# deps.sh: sourced by run.sh and test.sh. Installs the Debian 12 packages
# p8vault needs to build, run and test, when any is missing.
#
# Everything comes from Debian's archive; nothing is downloaded otherwise.

# libsystemd-dev: sd_notify in p8vaultd (server/notify.c); scdoc: the man
# pages (docs/man/*.scd).
P8V_BUILD_PACKAGES="gcc pkg-config meson ninja-build libssl-dev libsodium-dev libmicrohttpd-dev liblmdb-dev libjansson-dev libcurl4-openssl-dev libseccomp-dev libsystemd-dev scdoc"
P8V_RUN_PACKAGES="openssl libcurl4 ca-certificates libsystemd0"
# run.sh only: curl waits for the daemon's readiness and runs the commands
# it prints on a first run (docs/api.md's examples use it too).
P8V_DEV_PACKAGES="curl"
# Tests: the openssl command and python3-cryptography check what the vault
# emits independently; clang/libclang-rt build the fuzz targets; curl for docs'
# examples; util-linux for the file-system fault tests; faketime (libfaketime)
# drives the daemon's clock in tests/integration/test_sign_clock.py;
# nodejs runs the mock APNs (HTTP/2, tests/apns_mock.mjs) of
# tests/integration/test_check.py; strace shows who opens a master-key
# file (tests/integration/test_keeper_process.py); nodejs and npm run
# @noble/curves, the strict (low-S) ES256 verifier of
# tests/integration/test_low_s.py (installed by that test from npm), and
# the OpenAPI checks: ajv, which validates every integration script's
# answers against docs/openapi.yaml, and @redocly/cli, its linter
# (tests/integration/test_openapi.py; installed from npm by the tests).
# Debian packages npm apart from nodejs; a nodejs from elsewhere
# (NodeSource) brings its own npm and conflicts with Debian's, so the npm
# package is asked for only when there is no npm command. strace also
# slows a keeper down from outside (tests/integration/test_etcd.py);
# etcd-server (etcd 3.4, /usr/bin/etcd) runs the 3-member cluster of
# test_etcd.py. prometheus brings promtool, which checks /metrics and
# the alert rules of dist/prometheus/ (tests/integration/test_metrics.py,
# with python3-yaml to read the rules). python3-httpx with python3-h2
# (HTTP/2) runs the Python provider example, examples/python/provider.py,
# and talks to the test APNs in tests/integration/test_providers.py.
# systemd brings systemd-analyze, systemd-sysusers and systemd-tmpfiles
# for tests/systemd_unit.py (the unit's security rating and verify, the
# sysusers.d and tmpfiles.d files), and man-db the man command
# systemd-analyze verify checks Documentation=man: pages with.
# tests/integration/test_package.py builds the Debian package (debian/)
# with dpkg-buildpackage: build-essential (make), dpkg-dev, debhelper and
# the Build-Depends of debian/control beyond the build list (scdoc,
# libsystemd-dev, pkgconf, systemd for its pkg-config file); lintian
# checks it, man-db (man) renders its pages, systemd's sysusers and
# tmpfiles run its postinst in a throwaway root, fakeroot for a build as
# another user than root.
P8V_TEST_PACKAGES="git openssl python3 python3-cryptography curl clang libclang-rt-14-dev lmdb-utils util-linux procps faketime nodejs strace etcd-server prometheus python3-yaml python3-httpx python3-h2 systemd man-db build-essential dpkg-dev debhelper lintian fakeroot scdoc libsystemd-dev pkgconf"
command -v npm >/dev/null 2>&1 || P8V_TEST_PACKAGES="$P8V_TEST_PACKAGES npm"

p8v_missing_packages() {
	local p missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing="$missing $p"
	done
	echo "$missing"
}

p8v_ensure_packages() {
	local missing
	missing=$(p8v_missing_packages "$@")
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "p8vault: missing Debian packages:$missing" >&2
		echo "p8vault: run this script as root, or: apt-get install$missing" >&2
		return 1
	fi
	echo "p8vault: installing$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || return 1
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >&2 || return 1
}
