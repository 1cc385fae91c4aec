#!/usr/bin/env bash
# Durable single changes on one node (no cluster) and on clusters of 1, 2 and 3 zaiko
# nodes over three nats-servers (R3, sync_interval always), the load partitioned: each
# brand's writes go to the node that owns its partition, nothing is forwarded. Every
# zaiko node's and nats-server's CPU is read over each window, so the table shows what
# a write costs where (BENCHMARKS.md, Cluster mode). A last run puts the three-node
# cluster's data (JetStream and the nodes' dirs) on tmpfs, where an fsync costs nothing,
# to show how much of the difference is the one disk everything shares here. Needs a
# release build (zaiko, zaiko-bench) and the machine to itself.
#   bench/cluster-scale.sh [DIR]     (DIR: scratch space, default /var/tmp/zaiko-cluster-scale)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp/zaiko-cluster-scale}
export ZAIKO_ADMIN_TOKEN=${ZAIKO_ADMIN_TOKEN:-dev-admin-token-0123456789}
common=(--scenarios single-change --connections "${CONNS:-64,256}" --duration-s 10 --warmup-s 2 --runs "${RUNS:-3}"
    --brands 24 --skus-per-brand 1000)
out=bench/results
pids() { for f in "$@"; do [[ -f $f ]] && printf -- '--cpu-pid=%s ' "$(cat "$f")"; done; }

rm -rf "$dir" /dev/shm/zaiko-cluster-scale-c3-tmpfs
current=
# A failed run still stops its cluster.
trap '[[ -n $current ]] && scripts/cluster-dev.sh stop "$current" > /dev/null 2>&1' EXIT
target/release/zaiko-bench load --spawn --data-root "$dir/single" "${common[@]}" --keep-data \
    --serve-arg=--brand-rps=1000000 --serve-arg=--brand-burst=1000000 --out $out/cluster-scale-single.json
# The search index each node keeps (bytes on disk), after the runs.
du -sb "$dir"/single/*/index | awk '{print $1}' > $out/cluster-scale-single.index-bytes
for setup in 1 2 3 3-tmpfs; do
    n=${setup%-tmpfs}
    current="$dir/c$setup"
    [[ $setup == *-tmpfs ]] && current="/dev/shm/zaiko-cluster-scale-c$setup"
    rm -rf "$current"
    ZAIKO_NODES=$n scripts/cluster-dev.sh start "$current"
    routes=()
    for i in $(seq 2 "$n"); do routes+=(--route-url "http://127.0.0.1:1808$i"); done
    # shellcheck disable=SC2046 # one --cpu-pid per process
    target/release/zaiko-bench load --url http://127.0.0.1:18081 "${routes[@]}" "${common[@]}" \
        $(pids "$current"/zaiko*/pid "$current"/nats*/pid) --out "$out/cluster-scale-$setup.json"
    du -sb "$current"/zaiko*/data/index | awk '{print $1}' > "$out/cluster-scale-$setup.index-bytes"
    # Which pids were nats-servers, for the summary.
    cat "$current"/nats*/pid > "$out/cluster-scale-$setup.nats-pids"
    scripts/cluster-dev.sh stop "$current" > /dev/null || true
    if [[ $setup == *-tmpfs ]]; then rm -rf "$current" || true; fi
    current=
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| setup | conns | single changes/s | p50 / p99 ms | /healthz same run | ratio | zaiko cores (index) | nats cores | client cores | CPU ms per change: zaiko (index) + nats | index MiB per node |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for name, label in [("single", "one node, no cluster"), ("1", "cluster, 1 zaiko node"), ("2", "cluster, 2 zaiko nodes"), ("3", "cluster, 3 zaiko nodes"), ("3-tmpfs", "cluster, 3 zaiko nodes, data on tmpfs")]:
    r = json.load(open(f"{out}/cluster-scale-{name}.json"))
    nats = set()
    if name != "single":
        nats = {int(p) for p in open(f"{out}/cluster-scale-{name}.nats-pids").read().split()}
    index = " / ".join(f"{int(b) / 2**20:.0f}" for b in open(f"{out}/cluster-scale-{name}.index-bytes").read().split())
    for m in (x for x in r["medians"] if x["scenario"] == "single-change"):
        w, wi = m["watched_cpu_cores"], m["watched_index_cores"]
        nats_c = sum(v for k, v in w.items() if int(k) in nats)
        zaiko_c = sum(v for k, v in w.items() if int(k) not in nats)
        index_c = sum(v for k, v in wi.items() if int(k) not in nats)
        ops = m["ops_per_s"]
        per = lambda c: 1000 * c / ops if ops else 0
        print(f"| {label} | {m['connections']} | {ops:,.0f} | {m['p50_ms']:.1f} / {m['p99_ms']:.1f} | {m['ceiling_requests_per_s']:,.0f} | {m['ratio_to_ceiling']:.3f} "
              f"| {zaiko_c:.2f} ({index_c:.2f}) | {nats_c:.2f} | {m['client_cpu_cores']:.2f} | {per(zaiko_c):.3f} ({per(index_c):.3f}) + {per(nats_c):.3f} | {index} |")
PY
