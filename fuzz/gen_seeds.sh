#!/bin/sh
# gen_seeds.sh: seeds made at run time, for inputs that must not sit in the
# tree: valid .p8 keys (and their broken variants) for fuzz_p8, from
# tests/p8_corpus.py and the openssl command, as tests/test_p8.c makes
# them.
#
#   gen_seeds.sh TARGET DIR            write TARGET's seeds into DIR
#                                      (none for most targets)
#   gen_seeds.sh --replay EXE TARGET   make them in a temporary directory
#                                      and run EXE (TARGET built with
#                                      fuzz/replay.c) over it
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)

gen() {
	case $1 in
	fuzz_p8)
		python3 "$top/tests/p8_corpus.py" "$2"
		rm -f "$2"/*.fpr        # fingerprints, not inputs
		;;
	esac
}

if [ "${1:-}" = --replay ]; then
	[ $# -eq 3 ] || { echo "usage: $0 --replay EXE TARGET" >&2; exit 2; }
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	gen "$3" "$tmp"
	"$2" "$tmp"
else
	[ $# -eq 2 ] || { echo "usage: $0 TARGET DIR" >&2; exit 2; }
	gen "$1" "$2"
fi
