#!/usr/bin/env bash
# Contract test: schemathesis (from PyPI, pinned) generates requests from the real
# server's /openapi.json and checks every answer: no 5xx, only documented statuses,
# bodies and content types as documented, schema-invalid input refused, and
# schema-valid input accepted (hooks.py names the few refusals no schema can express:
# unknown ids, duplicate SKUs in lines, opaque cursors, ...).
#
# The server and schemathesis run in a network namespace of their own where one is
# available (unshare and ip, as root): webhooks schemathesis subscribes point at
# whatever URLs it generates, and no delivery may leave the machine.
#
#   bash tests/contract/run.sh            # 25 examples per operation (CI)
#   ZAIKO_CONTRACT_EXAMPLES=200 bash tests/contract/run.sh
#
# Uses ZAIKO_BIN (default target/release/zaiko, built if missing). The server runs on
# a free port with a temporary data dir, and is stopped on exit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
examples="${ZAIKO_CONTRACT_EXAMPLES:-25}"

venv="${ZAIKO_CONTRACT_VENV:-$root/target/contract-venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "== installing schemathesis into $venv"
  command -v python3 >/dev/null || { echo "run.sh: python3 is required" >&2; exit 1; }
  if ! python3 -m venv "$venv" 2>/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
      python3 -m venv "$venv"
    else
      echo "run.sh: python3 -m venv failed; install python3-venv" >&2
      exit 1
    fi
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
fi

bin="${ZAIKO_BIN:-target/release/zaiko}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "== building $bin"
  (cd "$root" && cargo build --release --bin zaiko)
fi

if [ -z "${ZAIKO_CONTRACT_NETNS:-}" ] && [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null \
  && unshare -n true 2>/dev/null; then
  exec env ZAIKO_CONTRACT_NETNS=1 ZAIKO_BIN="$bin" ZAIKO_CONTRACT_VENV="$venv" \
    unshare -n sh -c 'ip link set lo up && exec bash "$0"' "$0"
fi

data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
admin="contract-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --admin-token "$admin" --brand-rps 100000 --brand-burst 100000 \
  >"$data/server.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$data/server.log"; echo "run.sh: the server exited" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null

echo "== schemathesis: $examples examples per operation against 127.0.0.1:$port${ZAIKO_CONTRACT_NETNS:+ (own network namespace)}"
status=0
SCHEMATHESIS_HOOKS="$here/hooks.py" "$venv/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $admin" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance \
  --max-examples "$examples" \
  --generation-deterministic \
  --suppress-health-check all \
  --request-timeout 35 \
  --workers 2 || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
  echo "run.sh: the server died during the run" >&2
  tail -50 "$data/server.log" >&2
  exit 1
fi
if grep -q "panicked" "$data/server.log"; then
  echo "run.sh: the server logged a panic" >&2
  grep -n -A5 "panicked" "$data/server.log" >&2
  exit 1
fi
exit "$status"
