#!/usr/bin/env bash
# Builds kube-apiserver, kube-scheduler, kube-controller-manager and kubectl from the
# Kubernetes release that go.mod pins, into a cache directory named after the release,
# and prints that directory. A second run finds the binaries there and builds nothing.
#   HUB_K8S_CACHE     cache root (default ~/.cache/hub-k8s)
#   HUB_K8S_NICE      niceness of the build (default 15: the machine is shared)
#   HUB_K8S_PARALLEL  packages compiled at once (default 2)
set -euo pipefail
cd "$(dirname "$0")"
release=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
out=${HUB_K8S_CACHE:-$HOME/.cache/hub-k8s}/$release
missing=()
for t in kube-apiserver kube-scheduler kube-controller-manager kubectl; do
  [[ -x $out/$t ]] || missing+=("$t")
done
if ((${#missing[@]})); then
  mkdir -p "$out"
  minor=${release#v1.}
  minor=${minor%%.*}
  # What `kubectl version` and /version report, as in Kubernetes' own release builds.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$release -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  start=$SECONDS
  for t in "${missing[@]}"; do
    echo "building $t $release into $out" >&2
    nice -n "${HUB_K8S_NICE:-15}" go build -trimpath -p "${HUB_K8S_PARALLEL:-2}" -ldflags "$ldflags" \
      -o "$out/$t.tmp" "k8s.io/kubernetes/cmd/$t"
    mv "$out/$t.tmp" "$out/$t"
  done
  echo "built ${missing[*]} in $((SECONDS - start))s" >&2
fi
echo "$out"
