#!/usr/bin/env bash
# Builds etcd, etcdctl and etcdutl of the release go.mod pins (etcd 3.6.16, the
# reference for behaviour) from the Go module proxy into a cache directory named
# after the release, and prints that directory. A second run builds nothing.
#   HUB_ETCD_CACHE  cache root (default ~/.cache/hub-etcd)
#   HUB_ETCD_NICE   niceness of the build (default 15: the machine is shared)
set -euo pipefail
cd "$(dirname "$0")"
release=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
out=${HUB_ETCD_CACHE:-$HOME/.cache/hub-etcd}/$release
declare -A pkg=(
  [etcd]=go.etcd.io/etcd/server/v3
  [etcdctl]=go.etcd.io/etcd/etcdctl/v3
  [etcdutl]=go.etcd.io/etcd/etcdutl/v3
)
for t in etcd etcdctl etcdutl; do
  [[ -x $out/$t ]] && continue
  mkdir -p "$out"
  echo "building $t $release into $out" >&2
  nice -n "${HUB_ETCD_NICE:-15}" go build -trimpath -p 2 -ldflags "-s -w" -o "$out/$t.tmp" "${pkg[$t]}"
  mv "$out/$t.tmp" "$out/$t"
done
echo "$out"
