#!/usr/bin/env bash
# etcd 3.6.16's own end-to-end suites, run against a server binary: tests/e2e
# (225 tests) and tests/common built with `-tags e2e` (88 tests, each over five
# cluster set-ups), from the Go module proxy at the release go.mod pins. The test
# binaries are built once into the cache beside build.sh's etcd, etcdctl and
# etcdutl (never committed).
#
#   tests/etcd36/e2e.sh SERVER [SUITE...]        SUITE: e2e, common (default: both)
#
# SERVER is what the suites start as `etcd`: target/release/hubd, or etcd 3.6.16
# itself for the reference lists (tests/etcd36/reference-SUITE.txt); etcdctl and
# etcdutl are 3.6.16's. A suite runs from its own directory (it reads
# ../fixtures). Each test runs in a process of its own and, where `ip netns`
# works, in a network namespace of its own (the suites use fixed ports, 20000 and
# up): tests can run side by side, and the servers a timed-out test leaves
# behind are killed with its namespace instead of holding the next test's ports.
#
# Prints each failure as it happens and "SUITE: N passed, N failed, N skipped"
# at the end; exits 1 if a test failed. Writes each test's result ("PASS
# TestName") to $E2E_OUT/SUITE.results, all logs to SUITE.log, a failed test's
# log to SUITE/TestName.log (and the failed first run of a test that passed on
# retry to SUITE/TestName.first.log).
#   E2E_RUN      a -test.run regex (default: every test)
#   E2E_LIST     a file of test names, one a line (`#` starts a comment): run
#                only the suite's tests it names
#   E2E_EXCLUDE  a file of the same form: do not run the tests it names
#   E2E_JOBS     tests run at once (default 1; more needs `ip netns`)
#   E2E_RETRY    1: a failed test runs once more, and passes if that run passes
#                (printed "passed on retry")
#   E2E_TIMEOUT  a test's -test.timeout (default 5m: a hung test fails, the run goes on)
#   E2E_OUT      the directory for results and logs (default: a new temp dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 1 ]] || { sed -n '2,30p' "$0" >&2; exit 2; }
server=$(realpath "$1")
shift
suites=("$@")
[[ ${#suites[@]} -gt 0 ]] || suites=(e2e common)
for suite in "${suites[@]}"; do
  case $suite in e2e | common) ;; *) echo "e2e.sh: unknown suite $suite (e2e, common)" >&2; exit 2 ;; esac
done
cache=$("$here/build.sh")
release=$(basename "$cache")

# The tests module's source, with its replace lines (../server, ../api, ...)
# dropped so that it builds against the published modules of the release.
build_tests() {
  local src=$cache/tests-src dir m
  dir=$(cd "$here" && go mod download -json "go.etcd.io/etcd/tests/v3@$release" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n $dir ]] || { echo "e2e.sh: go mod download found no tests/v3@$release" >&2; exit 1; }
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  for m in api/v3 client/pkg/v3 client/v3 etcdctl/v3 etcdutl/v3 pkg/v3 server/v3; do
    (cd "$src" && go mod edit -dropreplace="go.etcd.io/etcd/$m")
  done
  echo "building etcd $release's e2e suites into $cache" >&2
  (cd "$src" && go mod tidy &&
    nice -n "${HUB_ETCD_NICE:-15}" go test -c -p 2 -o "$cache/e2e.test.tmp" ./e2e &&
    nice -n "${HUB_ETCD_NICE:-15}" go test -c -p 2 -tags e2e -o "$cache/common.test.tmp" ./common)
  mv "$cache/e2e.test.tmp" "$cache/e2e.test"
  mv "$cache/common.test.tmp" "$cache/common.test"
}
[[ -x $cache/e2e.test && -x $cache/common.test && -d $cache/tests-src ]] || build_tests

out=${E2E_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/hub-e2e36.XXXXXX")}
mkdir -p "$out/bin"
ln -sf "$server" "$out/bin/etcd"
ln -sf "$cache/etcdctl" "$out/bin/etcdctl"
ln -sf "$cache/etcdutl" "$out/bin/etcdutl"

# The test names a list file gives: comments and blanks dropped.
names() { sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$1"; }

# Each test has a network namespace of its own where `ip netns` works (root).
netns=hub-e2e-$$
max_jobs=${E2E_JOBS:-1}
if ip netns add "$netns-probe" 2>/dev/null; then
  ip netns delete "$netns-probe"
  use_netns=1
else
  use_netns=0
  ((max_jobs == 1)) || echo "e2e.sh: no network namespaces here: E2E_JOBS=$max_jobs ignored, one test at a time" >&2
  max_jobs=1
fi
cleanup() {
  local ns
  for ns in $(ip netns list 2>/dev/null | sed -n "s/^\($netns-[0-9a-z]*\).*/\1/p"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
  done
}
((use_netns == 0)) || trap cleanup EXIT

# Runs test $2 of suite $1 once (in namespace $3 when namespaces work), its log
# to $4; prints PASS, FAIL or SKIP. One process per test: a goroutine one test
# leaks makes the framework skip every later test of the same process ("leaked
# goroutines BEFORE test").
run_once() {
  local suite=$1 t=$2 ns=$3 log=$4 run_in=() result
  if ((use_netns)); then
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    run_in=(ip netns exec "$ns")
  fi
  (cd "$cache/tests-src/$suite" && "${run_in[@]}" "$cache/$suite.test" -bin-dir "$out/bin" -test.v \
    -test.timeout "${E2E_TIMEOUT:-5m}" -test.run "^$t\$") >"$log" 2>&1 || true
  if ((use_netns)); then
    # What the test left running (a timed-out test's servers).
    ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$ns"
  fi
  # The test's own line; a test that panicked or timed out has none.
  result=$(sed -n "s/^--- \(PASS\|FAIL\|SKIP\): $t .*/\1/p" "$log")
  echo "${result:-FAIL}"
}

# Runs test $3 of suite $2 (and once more on failure with E2E_RETRY=1); its
# result goes to $out/$suite/$t.result ("PASS", or "PASS retry"), its log beside it.
run_test() {
  local n=$1 suite=$2 t=$3 dir=$out/$2 result
  result=$(run_once "$suite" "$t" "$netns-$n" "$dir/$t.log")
  if [[ $result == FAIL && ${E2E_RETRY:-0} == 1 ]]; then
    mv "$dir/$t.log" "$dir/$t.first.log"
    result=$(run_once "$suite" "$t" "$netns-${n}r" "$dir/$t.log")
    if [[ $result == PASS ]]; then
      echo "$suite: $t passed on retry (the failed run's log: $dir/$t.first.log)"
      result="PASS retry"
    else
      cat "$dir/$t.first.log" "$dir/$t.log" >"$dir/$t.both.log"
      mv "$dir/$t.both.log" "$dir/$t.log"
      rm "$dir/$t.first.log"
    fi
  fi
  [[ $result != FAIL ]] || echo "$suite: FAIL $t (log: $dir/$t.log)"
  echo "$result" >"$dir/$t.result"
}

# The queue: every suite's tests, in the suites' order.
queue=()
for suite in "${suites[@]}"; do
  rm -rf "${out:?}/$suite"
  mkdir -p "$out/$suite"
  tests=$(cd "$cache/tests-src/$suite" && "$cache/$suite.test" -test.list "${E2E_RUN:-.}")
  [[ -z ${E2E_LIST:-} ]] || tests=$(grep -Fxf <(names "$E2E_LIST") <<<"$tests" || true)
  [[ -z ${E2E_EXCLUDE:-} ]] || tests=$(grep -vFxf <(names "$E2E_EXCLUDE") <<<"$tests" || true)
  echo "$tests" >"$out/$suite/tests"
  for t in $tests; do queue+=("$suite $t"); done
done

n=0 running=0
for item in "${queue[@]}"; do
  n=$((n + 1))
  if ((running == max_jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  run_test "$n" $item &
  running=$((running + 1))
done
wait

status=0
for suite in "${suites[@]}"; do
  : >"$out/$suite.results"
  : >"$out/$suite.log"
  retried=()
  for t in $(cat "$out/$suite/tests"); do
    # No result: the run itself broke (e.g. a namespace not created).
    result=FAIL retry=
    [[ ! -f $out/$suite/$t.result ]] || read -r result retry <"$out/$suite/$t.result"
    echo "$result $t" >>"$out/$suite.results"
    [[ -z $retry ]] || retried+=("$t")
    [[ ! -f $out/$suite/$t.log ]] || cat "$out/$suite/$t.log" >>"$out/$suite.log"
    # A failed test's log stays for reading; the others are in SUITE.log.
    [[ $result == FAIL ]] || rm -f "$out/$suite/$t.log"
    rm -f "$out/$suite/$t.result"
  done
  passed=$(grep -c '^PASS ' "$out/$suite.results" || true)
  failed=$(grep -c '^FAIL ' "$out/$suite.results" || true)
  skipped=$(grep -c '^SKIP ' "$out/$suite.results" || true)
  echo "$suite: $passed passed, $failed failed, $skipped skipped (results: $out/$suite.results)"
  ((${#retried[@]} == 0)) || echo "$suite: passed on retry: ${retried[*]}"
  ((failed == 0)) || status=1
done
exit $status
