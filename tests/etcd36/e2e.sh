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
# itself for the reference list (tests/etcd36/reference-SUITE.txt); etcdctl and
# etcdutl are 3.6.16's. A suite runs from its own directory (it reads
# ../fixtures) and, where `ip netns` works, in a network namespace of its own, so
# its fixed ports (20000 and up) meet nothing else.
#
# Each test runs in a process of its own. Prints "SUITE: N passed, N failed, N
# skipped" and writes each test's result ("PASS TestName") to
# $E2E_OUT/SUITE.results, the log to SUITE.log.
#   E2E_RUN      a -test.run regex (default: every test)
#   E2E_TIMEOUT  a test's -test.timeout (default 5m: a hung test fails, the run goes on)
#   E2E_OUT      the directory for results and logs (default: a new temp dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 1 ]] || { sed -n '2,20p' "$0" >&2; exit 2; }
server=$(realpath "$1")
shift
suites=("$@")
[[ ${#suites[@]} -gt 0 ]] || suites=(e2e common)
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

netns=hub-e2e-$$
run_in=()
if ip netns add "$netns" 2>/dev/null; then
  trap 'ip netns delete "$netns" 2>/dev/null || true' EXIT
  ip netns exec "$netns" ip link set lo up
  run_in=(ip netns exec "$netns")
fi

status=0
for suite in "${suites[@]}"; do
  case $suite in e2e | common) ;; *) echo "e2e.sh: unknown suite $suite (e2e, common)" >&2; exit 2 ;; esac
  bin=$cache/$suite.test
  : >"$out/$suite.log"
  : >"$out/$suite.results"
  # One process per test: a goroutine one test leaks makes the framework skip
  # every later test of the same process ("leaked goroutines BEFORE test").
  for t in $(cd "$cache/tests-src/$suite" && "$bin" -test.list "${E2E_RUN:-.}"); do
    log=$out/$suite.$t.log
    (cd "$cache/tests-src/$suite" && "${run_in[@]}" "$bin" -bin-dir "$out/bin" -test.v \
      -test.timeout "${E2E_TIMEOUT:-5m}" -test.run "^$t\$") >"$log" 2>&1 || true
    # The test's own line; a test that panicked or timed out has none.
    result=$(sed -n "s/^--- \(PASS\|FAIL\|SKIP\): $t .*/\1/p" "$log")
    echo "${result:-FAIL} $t" >>"$out/$suite.results"
    cat "$log" >>"$out/$suite.log"
    rm -f "$log"
  done
  passed=$(grep -c '^PASS ' "$out/$suite.results" || true)
  failed=$(grep -c '^FAIL ' "$out/$suite.results" || true)
  skipped=$(grep -c '^SKIP ' "$out/$suite.results" || true)
  echo "$suite: $passed passed, $failed failed, $skipped skipped (results: $out/$suite.results)"
  ((failed == 0)) || status=1
done
exit $status
