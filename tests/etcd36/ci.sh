#!/usr/bin/env bash
# scripts/test's run of etcd 3.6.16's own e2e suites (tests/e2e and tests/common)
# against a hubd: the tests etcd 3.6.16 itself passes here (reference-e2e.txt,
# reference-common.txt) less hub's known gaps (hub-gaps.txt, each with its cause;
# a gap that hangs would cost its whole timeout). Fails if one of them fails.
#
#   tests/etcd36/ci.sh target/release/hubd
#
# Both suites share E2E_JOBS (default 2) workers, each test in a network
# namespace of its own; then the watch-latency tests run alone (below). A failed
# test runs once more, and passing then is printed "passed on retry": a flaky
# test does not turn CI red at random, and is named. E2E_TIMEOUT stays e2e.sh's
# 5m: the slowest reference test, common's TestMemberAdd, takes 2.5 to 3 minutes
# on hub and on etcd. Results and logs go to E2E_OUT (default: a new temp dir),
# in together/ and alone/ (see e2e.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -eq 1 ]] || { sed -n '2,15p' "$0" >&2; exit 2; }

names() { sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$@" | sort; }
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
names "$here/reference-e2e.txt" "$here/reference-common.txt" >"$lists/reference"

# A gap is a reference test hub fails: a name that is not one is a typo or a
# test the reference lost, and would hide nothing.
stale=$(names "$here/hub-gaps.txt" | comm -23 - "$lists/reference")
[[ -z $stale ]] || { echo "tests/etcd36/hub-gaps.txt names tests not in a reference list:" $stale >&2; exit 1; }

# The tests that measure watch latency under a read load of their own (a 150 ms
# allowance): beside another test on 2 cores they miss it (at 2 jobs,
# ...ManualProgressNotification failed both its runs); alone they pass, at times
# on retry. (TestWatchDelayForEvent and, since a CI run where it missed it twice
# alone, ...ManualProgressNotification are gaps.)
printf '%s\n' TestWatchDelayForPeriodicProgressNotification \
  TestWatchDelayForManualProgressNotification >"$lists/alone"
cat "$here/hub-gaps.txt" "$lists/alone" >"$lists/not-together"

out=${E2E_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/hub-e2e36-ci.XXXXXX")}
status=0
E2E_OUT=$out/together E2E_LIST=$lists/reference E2E_EXCLUDE=$lists/not-together \
  E2E_RETRY=1 E2E_JOBS=${E2E_JOBS:-2} "$here/e2e.sh" "$1" e2e common || status=1
echo "the watch-latency tests, one at a time:"
E2E_OUT=$out/alone E2E_LIST=$lists/alone E2E_EXCLUDE=$here/hub-gaps.txt \
  E2E_RETRY=1 E2E_JOBS=1 "$here/e2e.sh" "$1" e2e || status=1
exit $status
