#!/usr/bin/env bash
# A Kubernetes control plane on a 3-member hub cluster, in one command:
#
#   tests/kubernetes/control-plane.sh
#
# builds (or takes from the cache) kube-apiserver, kube-scheduler,
# kube-controller-manager and kubectl (build.sh) and a release hubd, starts three
# hubd members on free loopback ports, kube-apiserver with --etcd-servers naming all
# three, the scheduler and the controller-manager (leader election on), generates
# a CA, serving and client certificates and the service-account key pair with
# openssl, waits for /readyz, registers Node objects (no kubelets run: pods are bound
# by the scheduler, never started), prints the kubectl line and stays up until
# Ctrl-C or SIGTERM, then stops everything it started.
#
#   HUB_K8S_DIR                  working directory (default: a new /tmp/hub-k8s.XXXX)
#   HUB_K8S_NODES                Node objects to register (default 3)
#   HUB_K8S_COMPACTION_INTERVAL  the apiserver's --etcd-compaction-interval (default 10s)
#   HUBD                         hubd binary (default: cargo build --release --bin hubd)
#
# $HUB_K8S_DIR/env (written before "ready") names the binaries, endpoints, kubeconfig
# and each hub member's pid; $HUB_K8S_DIR/ready appears once the control plane is up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

bin=$("$here/build.sh")
dir=${HUB_K8S_DIR:-$(mktemp -d /tmp/hub-k8s.XXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
rm -f "$dir/ready"
if [[ -z ${HUBD:-} ]]; then
  (cd "$repo" && cargo build --release --bin hubd -q)
  HUBD=$repo/target/release/hubd
fi
# A copy, so rebuilding hubd meanwhile does not hit a busy binary.
cp "$HUBD" "$dir/hubd"

pids=()
stop() {
  trap - EXIT INT TERM
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT TERM

source "$repo/scripts/free-ports.sh"

# --- hub: three members -------------------------------------------------------------
declare -a client_port peer_port
read -r -a ports <<<"$(free_ports 7)"
for i in 1 2 3; do
  client_port[i]=${ports[$((2 * i - 2))]}
  peer_port[i]=${ports[$((2 * i - 1))]}
done
initial=""
for i in 1 2 3; do initial+="${initial:+,}m$i=http://127.0.0.1:${peer_port[i]}"; done
endpoints=""
for i in 1 2 3; do endpoints+="${endpoints:+,}http://127.0.0.1:${client_port[i]}"; done
declare -a hub_pid
# hub reports etcd 3.6.16 (its default); the apiserver uses progress requests and
# consistent reads from its watch cache with it.
for i in 1 2 3; do
  "$dir/hubd" --name "m$i" --data-dir "$dir/m$i.hub" \
    --listen-client-urls "http://127.0.0.1:${client_port[i]}" \
    --advertise-client-urls "http://127.0.0.1:${client_port[i]}" \
    --listen-peer-urls "http://127.0.0.1:${peer_port[i]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${peer_port[i]}" \
    --initial-cluster "$initial" --initial-cluster-state new \
    >>"$dir/m$i.log" 2>&1 &
  pids+=($!)
  hub_pid[i]=$!
done

# --- certificates and keys ------------------------------------------------------------
pki=$dir/pki
mkdir -p "$pki"
openssl_q() { openssl "$@" 2>/dev/null; }
openssl_q req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=hub-k8s-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt"
cert() { # $1: file name, $2: subject, $3: extensions
  openssl_q req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr"
  openssl_q x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -out "$pki/$1.crt" -extfile <(printf '%s\n' "$3")
}
cert apiserver "/CN=kube-apiserver" \
  "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
cert admin "/O=system:masters/CN=hub-admin" "extendedKeyUsage=clientAuth"
cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
openssl_q genrsa -out "$pki/sa.key" 2048
openssl_q rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

api_port=${ports[6]}
server=https://127.0.0.1:$api_port
kubeconfig() { # $1: client certificate name
  local f=$dir/$1.kubeconfig
  cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: hub
  cluster: {server: "$server", certificate-authority: "$pki/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$pki/$1.crt", client-key: "$pki/$1.key"}
contexts:
- name: hub
  context: {cluster: hub, user: $1}
current-context: hub
EOF
}
for c in admin scheduler controller-manager; do kubeconfig "$c"; done

# --- the control plane ------------------------------------------------------------------
# PodTemplates have no watch cache: their lists and watches go straight to hub, so a
# watch from a revision hub compacted is answered by hub (410 Gone).
"$bin/kube-apiserver" \
  --etcd-servers="$endpoints" \
  --etcd-compaction-interval="${HUB_K8S_COMPACTION_INTERVAL:-10s}" \
  --watch-cache-sizes=podtemplates#0 \
  --bind-address=127.0.0.1 --secure-port="$api_port" \
  --cert-dir="$dir/apiserver-certs" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=Node,RBAC \
  --profiling=false \
  >"$dir/kube-apiserver.log" 2>&1 &
pids+=($!)
api_pid=$!

for _ in $(seq 600); do
  if curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$server/readyz" >/dev/null; then
    break
  fi
  kill -0 "$api_pid" 2>/dev/null || { echo "kube-apiserver exited: $dir/kube-apiserver.log" >&2; exit 1; }
  for i in 1 2 3; do kill -0 "${hub_pid[i]}" 2>/dev/null || { echo "hubd m$i exited: $dir/m$i.log" >&2; exit 1; }; done
  sleep 0.5
done
curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$server/readyz" >/dev/null ||
  { echo "kube-apiserver not ready after 5 minutes: $dir/kube-apiserver.log" >&2; exit 1; }

# No kubelets run here, so no node reports its health: the node lifecycle controller
# would mark every Node unreachable and evict its pods. Everything else runs.
"$bin/kube-controller-manager" \
  --kubeconfig="$dir/controller-manager.kubeconfig" \
  --secure-port=0 --leader-elect=true \
  --controllers='*,-nodelifecycle' \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --use-service-account-credentials=true \
  >"$dir/kube-controller-manager.log" 2>&1 &
pids+=($!)
"$bin/kube-scheduler" \
  --kubeconfig="$dir/scheduler.kubeconfig" \
  --secure-port=0 --leader-elect=true \
  >"$dir/kube-scheduler.log" 2>&1 &
pids+=($!)

kubectl=("$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig")
for n in $(seq "${HUB_K8S_NODES:-3}"); do
  "${kubectl[@]}" create -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: node-$n
  labels: {kubernetes.io/hostname: node-$n, kubernetes.io/os: linux}
status:
  capacity: {cpu: "32", memory: 128Gi, pods: "110"}
  allocatable: {cpu: "32", memory: 128Gi, pods: "110"}
  conditions:
  - {type: Ready, status: "True", reason: HubK8s, message: "registered by control-plane.sh"}
EOF
done
# Admission taints a new Node not-ready until its (absent) kubelet reports in.
"${kubectl[@]}" taint nodes --all node.kubernetes.io/not-ready:NoSchedule- >/dev/null

cat >"$dir/env" <<EOF
HUB_K8S_BIN=$bin
HUB_K8S_DIR=$dir
KUBECONFIG=$dir/admin.kubeconfig
HUB_ENDPOINTS=$endpoints
HUB_PIDS=${hub_pid[1]},${hub_pid[2]},${hub_pid[3]}
KUBE_APISERVER_PID=$api_pid
EOF
touch "$dir/ready"
echo "control plane on hub is up (logs in $dir); to reach it:"
echo "  $bin/kubectl --kubeconfig $dir/admin.kubeconfig get nodes"
wait
