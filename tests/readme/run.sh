#!/usr/bin/env bash
# The README's five-minute tour, run exactly as written: the fenced block under
# "## A five-minute tour" is taken from README.md and run with `bash -euo pipefail`
# from the top of the checkout, in a process group of its own (stopped at the end,
# whatever happened). It builds, starts the server on port 8080 with a fresh data
# dir, and every curl in it fails the run on an HTTP error (`curl -f`).
#
#   bash tests/readme/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

# What the tour says it needs.
if ! command -v jq >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: the tour needs jq (apt-get install jq)" >&2
    exit 1
  fi
  echo "== installing jq"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq
fi
command -v curl >/dev/null || { echo "run.sh: the tour needs curl" >&2; exit 1; }
if curl -s -o /dev/null localhost:8080/ 2>/dev/null; then
  echo "run.sh: something already listens on port 8080, which the tour uses; stop it first" >&2
  exit 1
fi

tour="$(mktemp)"
awk '/^## A five-minute tour/ { in_section = 1; next }
     in_section && /^```sh$/ { in_block = 1; next }
     in_block && /^```$/ { exit }
     in_block { print }' README.md >"$tour"
[ -s "$tour" ] || { echo "run.sh: no sh block under '## A five-minute tour' in README.md" >&2; exit 1; }
echo "== the tour ($(wc -l <"$tour") lines of README.md)"

# As pasted by someone whose environment names no ZAIKO_* setting.
unset $(env | grep -o '^ZAIKO_[A-Z_]*' || true)
out="$(mktemp)"
status=0
setsid timeout 900 bash -euo pipefail "$tour" >"$out" 2>&1 &
group=$!
wait "$group" || status=$?
kill -- -"$group" 2>/dev/null || true
cat "$out"
rm -f "$tour" "$out"
if [ "$status" -ne 0 ]; then
  echo "run.sh: the README's tour failed (exit $status)" >&2
  exit "$status"
fi
echo "== the README's tour ran as written"
