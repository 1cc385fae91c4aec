#!/usr/bin/env bash
# Search through a cluster node that owns a third / none / all of the partitions,
# beside a single node: the same fixture and zaiko-bench's search mix (BENCHMARKS.md,
# Cluster mode). Needs a release build (zaiko, zaiko-bench) and the machine to itself.
#   bench/cluster-search.sh [DIR]     (DIR: scratch space, default /var/tmp/zaiko-cluster-search)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/var/tmp/zaiko-cluster-search}
export ZAIKO_ADMIN_TOKEN=${ZAIKO_ADMIN_TOKEN:-dev-admin-token-0123456789}
common=(--scenarios search --connections 64 --duration-s 10 --warmup-s 2 --runs 1 --brands 12 --skus-per-brand 5000)
via=(--url http://127.0.0.1:18081 --admin-token "$ZAIKO_ADMIN_TOKEN")
out=bench/results
api() { curl -sf -H "authorization: Bearer $ZAIKO_ADMIN_TOKEN" "http://127.0.0.1:18081$1"; }
owned_by_n1() { api /v1/admin/cluster | python3 -c '
import json, sys
v = json.load(sys.stdin)
print(sum(1 for p in v["partitions"] if p["owner"] and p["owner"]["node"] == "n1"))' || echo 0; }
searchable() { for _ in $(seq 1 1200); do api "/v1/search/skus?limit=1" > /dev/null && return 0; sleep 0.1; done; return 1; }

rm -rf "$dir"
target/release/zaiko-bench load --spawn --data-root "$dir/single" "${common[@]}" --out $out/cluster-search-single.json
scripts/cluster-dev.sh start "$dir/cluster"
target/release/zaiko-bench load "${via[@]}" "${common[@]}" --out $out/cluster-search-3nodes-third.json
target/release/zaiko cluster drain --node n1 --url http://127.0.0.1:18081
searchable
target/release/zaiko-bench load "${via[@]}" "${common[@]}" --out $out/cluster-search-3nodes-none.json
target/release/zaiko cluster drain --node n1 --url http://127.0.0.1:18081 --undo
kill -9 "$(cat "$dir/cluster/zaiko2/pid")" "$(cat "$dir/cluster/zaiko3/pid")"
partitions=$(api /v1/admin/cluster | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["partitions"]))')
for _ in $(seq 1 1200); do [[ "$(owned_by_n1)" == "$partitions" ]] && break; sleep 0.2; done
searchable
target/release/zaiko-bench load "${via[@]}" "${common[@]}" --out $out/cluster-search-1node-all.json
scripts/cluster-dev.sh stop "$dir/cluster" || true
