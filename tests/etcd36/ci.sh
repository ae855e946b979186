#!/usr/bin/env bash
# scripts/test's run of etcd 3.6.16's own e2e suites (tests/e2e and tests/common)
# against a hubd: the tests etcd 3.6.16 itself passes here (reference-e2e.txt,
# reference-common.txt) less hub's known gaps (hub-gaps.txt, each with its cause;
# a gap that hangs would cost its whole timeout). Fails if one of them fails.
#
#   tests/etcd36/ci.sh target/release/hubd
#
# Both suites share E2E_JOBS (default 2) workers, each test in a network
# namespace of its own; a failed test runs once more, and passing then is
# printed "passed on retry" (a flaky test, e.g. the TestWatchDelayFor* ones,
# whose deadlines a loaded machine misses now and then, does not turn CI red at
# random, and is named). E2E_TIMEOUT stays e2e.sh's 5m: the slowest reference
# test, common's TestMemberAdd, takes 2.5 to 3 minutes on hub and on etcd.
# E2E_OUT keeps results and logs (see e2e.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -eq 1 ]] || { sed -n '2,15p' "$0" >&2; exit 2; }

names() { sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$@" | sort; }
reference=$(mktemp)
trap 'rm -f "$reference"' EXIT
names "$here/reference-e2e.txt" "$here/reference-common.txt" >"$reference"

# A gap is a reference test hub fails: a name that is not one is a typo or a
# test the reference lost, and would hide nothing.
stale=$(names "$here/hub-gaps.txt" | comm -23 - "$reference")
[[ -z $stale ]] || { echo "tests/etcd36/hub-gaps.txt names tests not in a reference list:" $stale >&2; exit 1; }

E2E_LIST=$reference E2E_EXCLUDE=$here/hub-gaps.txt E2E_RETRY=1 E2E_JOBS=${E2E_JOBS:-2} \
  "$here/e2e.sh" "$1" e2e common
