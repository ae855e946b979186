#!/usr/bin/env bash
# The end-to-end test of Kubernetes on hub: brings up control-plane.sh (3 hubd
# members, kube-apiserver, kube-scheduler, kube-controller-manager), runs e2e/ with
# client-go against it (the hub leader is killed with SIGKILL in the middle), then
# stops everything. Binaries come from build.sh's cache; the first run builds them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
start=$SECONDS
"$here/build.sh" >/dev/null
echo "kubernetes binaries ready in $((SECONDS - start))s"

dir=$(mktemp -d /tmp/hub-k8s-e2e.XXXX)
HUB_K8S_DIR=$dir "$here/control-plane.sh" >"$dir/control-plane.out" 2>&1 &
cp_pid=$!
trap 'kill $cp_pid 2>/dev/null || true; wait $cp_pid 2>/dev/null || true' EXIT
up=$SECONDS
until [[ -e $dir/ready ]]; do
  if ! kill -0 "$cp_pid" 2>/dev/null; then
    echo "control-plane.sh failed:" >&2
    tail -20 "$dir/control-plane.out" >&2
    for log in "$dir"/*.log; do echo "--- $log" >&2; tail -20 "$log" >&2; done
    exit 1
  fi
  sleep 0.5
done
echo "control plane up in $((SECONDS - up))s ($dir)"

# -trimpath: the same build cache entries as build.sh's binaries.
cd "$here"
status=0
HUB_K8S_ENV=$dir/env nice -n "${HUB_K8S_NICE:-15}" go test -trimpath -count=1 -timeout 20m -v ./e2e || status=$?
kill "$cp_pid" 2>/dev/null || true
wait "$cp_pid" 2>/dev/null || true
if ((status)); then
  for log in "$dir"/*.log; do echo "--- $log" >&2; tail -30 "$log" >&2; done
else
  rm -rf "$dir"
fi
echo "e2e took $((SECONDS - start))s in all"
exit $status
