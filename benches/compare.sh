#!/usr/bin/env bash
# compare.sh: the same hub-load runs against a 3-member etcd 3.4.23, a 3-member
# etcd 3.6.16 and a 3-member hubd on this machine, printed as a markdown table
# (workload | clients | each kind's ops/s and p99 | hub's ratio to each etcd).
#
# The clusters run one after the other (never two at once), each on free loopback
# ports with data dirs under one temp dir; all get exactly the same flags. The trap
# stops every member this script started and removes the temp dir, however it exits.
#
#   HUBD=/tmp/hubbin/hubd benches/compare.sh
#
# Environment (defaults): HUBD (target/release/hubd), ETCD (/usr/bin/etcd, 3.4.23),
# ETCD36 (etcd 3.6.16, built by tests/etcd36/build.sh if missing), ETCDCTL (etcdctl
# beside $ETCD, else on PATH), HUB_LOAD (target/release/hub-load, built if missing),
# DURATION (10s per run), CLIENTS ("16 64": each workload runs at each count), CONNS
# (8), KEYS (1000), KEY_SIZE (32), VALUE_SIZE (256), KUBE_VALUE_SIZE (2048), WATCHERS (100),
# WATCH_WRITERS (1), WATCH_RATE (the writers' puts/s in all; unset: closed loop), WORKLOADS,
# KINDS ("etcd etcd36 hub").
# Total time is about 3 x (7 workloads x 2 client counts x DURATION) plus start-up:
# about 8 minutes by default.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HUBD=${HUBD:-$root/target/release/hubd}
ETCD=${ETCD:-/usr/bin/etcd}
if [[ -z ${ETCDCTL:-} ]]; then
  if [[ -x $(dirname "$ETCD")/etcdctl ]]; then ETCDCTL=$(dirname "$ETCD")/etcdctl; else ETCDCTL=etcdctl; fi
fi
HUB_LOAD=${HUB_LOAD:-$root/target/release/hub-load}
DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-16 64}
CONNS=${CONNS:-8}
KEYS=${KEYS:-1000}
KEY_SIZE=${KEY_SIZE:-32}
VALUE_SIZE=${VALUE_SIZE:-256}
KUBE_VALUE_SIZE=${KUBE_VALUE_SIZE:-2048} # a Pod in protobuf is about 2 KiB
WATCHERS=${WATCHERS:-100}
WATCH_WRITERS=${WATCH_WRITERS:-1}
WATCH_RATE=${WATCH_RATE:-}
WORKLOADS=${WORKLOADS:-put kube txn-cas lease range-linearizable range-serializable watch}
KINDS=${KINDS:-etcd etcd36 hub} # which clusters to run; the table shows "-" for one left out
if [[ " $KINDS " == *" etcd36 "* && -z ${ETCD36:-} ]]; then
  ETCD36=$("$root/tests/etcd36/build.sh")/etcd
fi
ETCD36=${ETCD36:-}

binary() {
  case $1 in
    etcd) echo "$ETCD" ;;
    etcd36) echo "$ETCD36" ;;
    hub) echo "$HUBD" ;;
    *) echo "compare.sh: unknown kind $1 (etcd, etcd36, hub)" >&2; exit 2 ;;
  esac
}
for kind in $KINDS; do
  bin=$(binary "$kind")
  [[ -x $bin ]] || { echo "compare.sh: $bin is not an executable (set HUBD / ETCD / ETCD36)" >&2; exit 2; }
done
command -v "$ETCDCTL" >/dev/null || { echo "compare.sh: etcdctl not found (set ETCDCTL)" >&2; exit 2; }
if [[ ! -x $HUB_LOAD ]]; then
  (cd "$root" && cargo build --release -p hub-benches --bin hub-load)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hub-compare.XXXXXX")
members=() # pids of the members now running

stop_members() {
  local pid
  for pid in "${members[@]}"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${members[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${members[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${members[@]}"; do wait "$pid" 2>/dev/null || true; done
  members=()
}
cleanup() {
  stop_members
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source "$root/scripts/free-ports.sh"

# start_cluster KIND BINARY: starts 3 members; sets $endpoints (comma-separated client URLs).
start_cluster() {
  local kind=$1 bin=$2 i
  local -a ports
  read -r -a ports <<<"$(free_ports 6)"
  local initial="" clients=()
  for i in 1 2 3; do
    initial+="${initial:+,}m$i=http://127.0.0.1:${ports[$((2 * i - 1))]}"
    clients+=("http://127.0.0.1:${ports[$((2 * i - 2))]}")
  done
  for i in 1 2 3; do
    local client=${clients[$((i - 1))]} peer=http://127.0.0.1:${ports[$((2 * i - 1))]}
    "$bin" --name "m$i" --data-dir "$work/$kind/m$i" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$initial" --initial-cluster-token "$kind-compare" --initial-cluster-state new \
      >"$work/$kind-m$i.log" 2>&1 &
    members+=($!)
  done
  endpoints=$(IFS=,; echo "${clients[*]}")
  for _ in $(seq 60); do
    if ETCDCTL_API=3 "$ETCDCTL" --endpoints "$endpoints" --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "compare.sh: $kind cluster did not become healthy in 30s; last log lines:" >&2
  tail -n 5 "$work/$kind"-m*.log >&2
  return 1
}

# Says which members have exited (and how their logs end); a dead member fails every
# later run against it, so the table would otherwise just say "failed".
report_dead_members() {
  local kind=$1 i
  for i in 1 2 3; do
    if [[ -z ${reported_dead[$kind/m$i]:-} ]] && ! kill -0 "${members[$((i - 1))]}" 2>/dev/null; then
      reported_dead[$kind/m$i]=1
      echo "compare.sh: $kind member m$i has exited; its log ends:" >&2
      tail -n 5 "$work/$kind-m$i.log" >&2
    fi
  done
}

declare -A reported_dead
declare -A result # [kind/workload/clients] = "ops/s|p99"
declare -A cpu    # [kind/workload/clients] = the members' CPU ms per operation

# CPU time (user + system, in clock ticks) the running members have used so far.
members_cpu_ticks() {
  local pid total=0
  for pid in "${members[@]}"; do
    # Fields 14 and 15 of /proc/PID/stat, counted after the command's closing parenthesis.
    total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }' || echo 0)))
  done
  echo "$total"
}

field() { grep -o " $1=[^ ]*" <<<"$2" | cut -d= -f2; }

run_workloads() {
  local kind=$1 workload line clients
  for workload in $WORKLOADS; do
    for clients in $CLIENTS; do
      local writers=$clients value_size=$VALUE_SIZE rate=()
      [[ $workload == watch ]] && writers=$WATCH_WRITERS
      [[ $workload == watch && -n $WATCH_RATE ]] && rate=(--rate "$WATCH_RATE")
      [[ $workload == kube ]] && value_size=$KUBE_VALUE_SIZE
      local cpu_before
      cpu_before=$(members_cpu_ticks)
      if line=$(RUST_BACKTRACE=0 "$HUB_LOAD" --endpoints "$endpoints" --workload "$workload" \
        --clients "$writers" --conns "$CONNS" --duration "$DURATION" --keys "$KEYS" \
        --key-size "$KEY_SIZE" --value-size "$value_size" --watchers "$WATCHERS" "${rate[@]}" 2>"$work/load.err"); then
        echo "$kind: $line" >&2
        local ops errors
        ops=$(field ops_per_sec "$line") errors=$(field errors "$line")
        # Failed requests are not in the latencies; the table must not hide them.
        [[ $errors == 0 ]] || ops="$ops ($errors errors)"
        result[$kind/$workload/$clients]="$ops|$(field p99_ms "$line")"
        # The members' CPU (user + system, all three) per operation, in ms.
        cpu[$kind/$workload/$clients]=$(awk -v t=$(($(members_cpu_ticks) - cpu_before)) -v hz="$(getconf CLK_TCK)" \
          -v n="$(field ops "$line")" 'BEGIN { if (n > 0) printf "%.3f", t * 1000 / hz / n; else print "-" }')
      else
        echo "$kind: $workload at $clients clients failed: $(tail -n 1 "$work/load.err")" >&2
        result[$kind/$workload/$clients]="failed|-"
      fi
      report_dead_members "$kind"
      # The watch run has one writer whatever CLIENTS says: once is enough.
      if [[ $workload == watch ]]; then break; fi # (`[[ ]] && break` would end the loop with status 1 under set -e)
    done
  done
}

for kind in $KINDS; do
  bin=$(binary "$kind")
  echo "compare.sh: starting 3-member $kind ($bin)" >&2
  start_cluster "$kind" "$bin"
  run_workloads "$kind"
  stop_members
done

ratio() { awk -v h="$1" -v e="$2" 'BEGIN { if (e ~ /^[0-9.]+$/ && e + 0 > 0 && h ~ /^[0-9.]+$/) printf "%.2f", h / e; else print "-" }'; }

echo
echo "3 members each, one after the other; hub-load --conns $CONNS --duration $DURATION --keys $KEYS"
echo "--key-size $KEY_SIZE --value-size $VALUE_SIZE (kube: $KUBE_VALUE_SIZE); watch: --watchers $WATCHERS, $WATCH_WRITERS writer(s)${WATCH_RATE:+ at $WATCH_RATE puts/s}."
echo "etcd 3.4: $ETCD; etcd 3.6: ${ETCD36:--}; hub: $HUBD"
echo
echo "| workload | clients | etcd 3.4 ops/s | p99 ms | etcd 3.6 ops/s | p99 ms | hub ops/s | p99 ms | hub/3.4 | hub/3.6 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for workload in $WORKLOADS; do
  for clients in $CLIENTS; do
    [[ $workload == watch ]] && clients=$(set -- $CLIENTS; echo "$1")
    IFS='|' read -r e_ops e_p99 <<<"${result[etcd/$workload/$clients]:--|-}"
    IFS='|' read -r s_ops s_p99 <<<"${result[etcd36/$workload/$clients]:--|-}"
    IFS='|' read -r h_ops h_p99 <<<"${result[hub/$workload/$clients]:--|-}"
    shown=$clients
    [[ $workload == watch ]] && shown="$WATCH_WRITERS w, $WATCHERS watchers"
    echo "| $workload | $shown | $e_ops | $e_p99 | $s_ops | $s_p99 | $h_ops | $h_p99 | $(ratio "$h_ops" "$e_ops") | $(ratio "$h_ops" "$s_ops") |"
    if [[ $workload == watch ]]; then break; fi # (`[[ ]] && break` would end the loop with status 1 under set -e)
  done
done

echo
echo "The three members' CPU (user + system) per operation, ms (watch: per event delivered):"
echo
echo "| workload | clients | etcd 3.4 | etcd 3.6 | hub |"
echo "|---|---:|---:|---:|---:|"
for workload in $WORKLOADS; do
  for clients in $CLIENTS; do
    [[ $workload == watch ]] && clients=$(set -- $CLIENTS; echo "$1")
    echo "| $workload | $clients | ${cpu[etcd/$workload/$clients]:--} | ${cpu[etcd36/$workload/$clients]:--} | ${cpu[hub/$workload/$clients]:--} |"
    if [[ $workload == watch ]]; then break; fi # (`[[ ]] && break` would end the loop with status 1 under set -e)
  done
done
