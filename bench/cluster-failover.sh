#!/usr/bin/env bash
# The change feed's lag behind acknowledged writes before and after the owner of a
# brand's partition is killed -9 under a write load, on a three-node cluster
# (zaiko-bench failover; BENCHMARKS.md, Cluster mode). Needs a release build (zaiko,
# zaiko-bench) and the machine to itself.
#   bench/cluster-failover.sh [DIR] [RUNS]   (DIR: scratch space, default
#                                            /var/tmp/zaiko-cluster-failover; RUNS: 3)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp/zaiko-cluster-failover}
runs=${2:-3}
export ZAIKO_ADMIN_TOKEN=${ZAIKO_ADMIN_TOKEN:-dev-admin-token-0123456789}
rm -rf "$dir"
current=
# A failed run still stops its cluster.
trap '[[ -n $current ]] && scripts/cluster-dev.sh stop "$current" > /dev/null 2>&1' EXIT
for r in $(seq 1 "$runs"); do
    # A fresh cluster each run: the killed node's partitions start where they belong.
    current="$dir/run$r"
    scripts/cluster-dev.sh start "$current" > /dev/null
    nodes=()
    for i in 1 2 3; do nodes+=(--node "http://127.0.0.1:1808$i=$(cat "$dir/run$r/zaiko$i/pid")"); done
    target/release/zaiko-bench failover "${nodes[@]}" --out "bench/results/cluster-failover-$r.json"
    scripts/cluster-dev.sh stop "$current" > /dev/null || true
    current=
done
python3 - "$runs" <<'PY'
import json, statistics, sys
rs = [json.load(open(f"bench/results/cluster-failover-{r}.json")) for r in range(1, int(sys.argv[1]) + 1)]
med = lambda f: statistics.median(f(r) for r in rs)
print(f"runs {len(rs)}; medians:")
print(f"changes/s before / after the kill: {med(lambda r: r['changes_per_s_before']):,.0f} / {med(lambda r: r['changes_per_s_after']):,.0f}")
print(f"writes unavailable after the kill: {med(lambda r: r['writes_unavailable_ms']):,.0f} ms; feed resumed {med(lambda r: r['feed_resumed_ms']):,.0f} ms after it")
for k in ("lag_before", "lag_after"):
    print(f"{k}: p50 {med(lambda r: r[k]['p50_ms']):.1f} ms, p99 {med(lambda r: r[k]['p99_ms']):.1f} ms, max {med(lambda r: r[k]['max_ms']):.1f} ms")
print("missing / duplicate / seq gaps (sum over runs):", sum(r['missing_events'] for r in rs), sum(r['duplicate_events'] for r in rs), sum(r['seq_gaps'] for r in rs))
PY
