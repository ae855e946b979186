#!/usr/bin/env bash
# Kubernetes' own integration tests (of the release go.mod pins) against hub, and
# against the reference etcd that release links (go.etcd.io/etcd/server/v3 from the
# same module graph, built into the cache), one command:
#
#   tests/kubernetes/integration.sh [hub|etcd|both] [go test -run regex]
#
# Packages: $HUB_K8S_INTEGRATION (default test/integration/etcd and
# test/integration/apiserver). The store is a single member on a free loopback
# port named by KUBE_INTEGRATION_ETCD_URL; tests that start their own etcd find an
# `etcd` on PATH that is the same binary (hubd takes etcd's flags). Prints each
# run's pass/fail counts and, for "both", every test that passed on etcd but not
# on hub. Results stay in $HUB_K8S_CACHE/integration-<store>.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$here"
which=${1:-both}
run=${2:-.}
cache=${HUB_K8S_CACHE:-$HOME/.cache/hub-k8s}
read -r -a packages <<<"${HUB_K8S_INTEGRATION:-k8s.io/kubernetes/test/integration/etcd k8s.io/kubernetes/test/integration/apiserver}"
nice=(nice -n "${HUB_K8S_NICE:-15}")

etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
reference=$cache/etcd-$etcd_version
if [[ $which != hub && ! -x $reference ]]; then
  echo "building etcd $etcd_version into $reference" >&2
  "${nice[@]}" go build -trimpath -mod=mod -p "${HUB_K8S_PARALLEL:-2}" -o "$reference" go.etcd.io/etcd/server/v3
fi
if [[ $which != etcd ]]; then
  (cd "$repo" && cargo build --release --bin hubd -q)
fi

source "$repo/scripts/free-ports.sh"

run_against() { # $1: name, $2: binary
  local name=$1 work
  work=$(mktemp -d "/tmp/hub-k8s-integration-$name.XXXX")
  mkdir -p "$work/bin"
  cp "$2" "$work/bin/etcd"
  # hub reports etcd 3.6.16 (its default), so the apiserver turns on what it
  # gates on 3.6 (progress requests, consistent reads from its watch cache).
  local env=()
  local port peer
  read -r port peer <<<"$(free_ports 2)"
  env "${env[@]}" "$work/bin/etcd" --data-dir "$work/data" --listen-client-urls "http://127.0.0.1:$port" \
    --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "default=http://127.0.0.1:$peer" \
    >"$work/store.log" 2>&1 &
  local pid=$!
  local start=$SECONDS status=0 pkg
  for pkg in "${packages[@]}"; do
    echo "=== package $pkg" >>"$work/test.log"
    (cd "$tree/${pkg#k8s.io/kubernetes/}" &&
      env "${env[@]}" PATH=$work/bin:$PATH KUBE_INTEGRATION_ETCD_URL=http://127.0.0.1:$port TEST_SRCDIR=$modcache TEST_WORKSPACE=. \
        "${nice[@]}" "$tests/${pkg//\//_}.test" -test.count=1 -test.timeout=60m -test.run="$run" -test.v) \
      >>"$work/test.log" 2>&1 || status=$?
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Every test and subtest's result: "    --- PASS: TestX/sub (1.2s)".
  grep -E '^ *--- (PASS|FAIL|SKIP): ' "$work/test.log" | awk '{print $3, $2}' | tr -d ':' | sort >"$cache/integration-$name.txt"
  count() { grep -E "$1" "$cache/integration-$name.txt" | grep -c " $2\$" || true; }
  echo "$name ($2), $((SECONDS - start))s, exit status $status, log $work/test.log:"
  echo "  tests: $(count '^[^/]* ' PASS) passed, $(count '^[^/]* ' FAIL) failed, $(count '^[^/]* ' SKIP) skipped"
  echo "  tests and subtests: $(count . PASS) passed, $(count . FAIL) failed, $(count . SKIP) skipped"
}

# The test binaries run in a copy of their package directories inside a tree laid
# out like Kubernetes' repository, where they find the k8s.io/api serialization
# fixtures they read (staging/src/k8s.io/api/testdata): the module zip has no staging/.
mkdir -p "$cache"
tests=$(mktemp -d /tmp/hub-k8s-integration-tests.XXXX)
trap 'rm -rf "$tests"' EXIT
tree=$tests/kubernetes
mkdir -p "$tree/staging/src/k8s.io"
ln -s "$(go list -m -f '{{.Dir}}' k8s.io/api)" "$tree/staging/src/k8s.io/api"
kubernetes=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)
# -trimpath (to share build.sh's build cache) leaves source paths relative to the module
# cache (k8s.io/kubernetes@v1.34.4/..., and the replaced staging modules as @v0.0.0); the
# test servers find their fixture directories through Bazel's variables, as under Bazel.
# apiextensions-apiserver's test server writes its certificates there: a writable copy.
modcache=$tests/src
mkdir -p "$modcache/k8s.io"
go list -m -f '{{if .Replace}}{{.Path}} {{.Replace.Dir}}{{end}}' all | while read -r m d; do
  if [[ -n $d ]]; then ln -s "$d" "$modcache/$m@v0.0.0"; fi
done
rm "$modcache/k8s.io/apiextensions-apiserver@v0.0.0"
cp -r "$(go list -m -f '{{.Dir}}' k8s.io/apiextensions-apiserver)" "$modcache/k8s.io/apiextensions-apiserver@v0.0.0"
chmod -R u+w "$modcache/k8s.io/apiextensions-apiserver@v0.0.0"
ln -s "$kubernetes" "$modcache/k8s.io/kubernetes@$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
for pkg in "${packages[@]}"; do
  rel=${pkg#k8s.io/kubernetes/}
  mkdir -p "$tree/$rel"
  cp -r "$kubernetes/$rel/." "$tree/$rel/"
  chmod -R u+w "$tree/$rel"
  "${nice[@]}" go test -c -trimpath -mod=mod -o "$tests/${pkg//\//_}.test" "$pkg"
done
[[ $which == hub ]] || run_against etcd "$reference"
[[ $which == etcd ]] || run_against hub "$repo/target/release/hubd"
if [[ $which == both ]]; then
  missing=$(join <(grep ' PASS$' "$cache/integration-etcd.txt" | cut -d' ' -f1) \
    <(grep ' PASS$' "$cache/integration-hub.txt" | cut -d' ' -f1) -v 1 || true)
  if [[ -n $missing ]]; then
    echo "passed on etcd but not on hub:"
    echo "$missing"
    exit 1
  fi
  echo "every test that passed on etcd passed on hub"
fi
