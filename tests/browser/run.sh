#!/usr/bin/env bash
# Real-browser test of the search UI (/ui/): installs what it needs, then runs
# ui.test.mjs against the real server binary (ZAIKO_BIN, default target/release/zaiko,
# built if missing) or, with ZAIKO_FAKE_API=1, against fake_api.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# Debian chromium and a Japanese font (the page names none from the network: the
# system's Noto Sans CJK JP must be there for Japanese text to render).
missing=()
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
[ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: need root to apt-get install ${missing[*]} (or install them and rerun)" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
command -v node >/dev/null || { echo "run.sh: node (>= 20) is required" >&2; exit 1; }

echo "== npm ci (playwright-core, pinned in package-lock.json; no browser download)"
cd "$here"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error

if [ "${ZAIKO_FAKE_API:-}" != "1" ]; then
  bin="${ZAIKO_BIN:-target/release/zaiko}"
  case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
  if [ ! -x "$bin" ]; then
    echo "== building $bin"
    (cd "$root" && cargo build --release --bin zaiko)
  fi
fi

echo "== browser test"
exec node "$here/ui.test.mjs"
