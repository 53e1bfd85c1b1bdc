#!/usr/bin/env bash
# `make docs-check`: opens GET /docs in headless Chromium (Debian's package,
# installed if missing and allowed), saves a screenshot under
# target/docs-check/, and fails unless the rendered page lists every path of
# /openapi.json. No internet is involved: Swagger UI is bundled in the binary.
# Its throwaway database is made on the server of DATABASE_URL (environment,
# then .env; default the local one).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/settings.sh
. scripts/settings.sh
load_dotenv .env
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/coffee?sslmode=disable}

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  scripts/apt-install.sh docs-check chromium
  browser=$(command -v chromium)
fi

cargo build -q --bin coffee
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=target/docs-check
mkdir -p "$out"
# A throwaway database of its own, so the server it renders /docs from is a
# healthy one (no log of connection failures) and nothing else is touched.
db=coffee_docs_$$
DATABASE_URL=$(database_url_named "$server_url" "$db")
export DATABASE_URL
target/debug/coffee migrate >/dev/null 2>&1
BIND_ADDR="127.0.0.1:$port" RUST_LOG=warn APP_ENV=test target/debug/coffee serve &
server=$!
profile=$(mktemp -d)
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$profile"
  psql "$(database_url_named "$server_url" postgres)" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=1280,2400
  --virtual-time-budget=15000)
"$browser" "${flags[@]}" --screenshot="$out/docs.png" "http://127.0.0.1:$port/docs/" >/dev/null 2>&1
"$browser" "${flags[@]}" --dump-dom "http://127.0.0.1:$port/docs/" > "$out/docs.html" 2>/dev/null
curl -sf "http://127.0.0.1:$port/openapi.json" > "$out/openapi.json"

python3 - "$out/docs.html" "$out/openapi.json" "$out/docs.png" <<'PY'
import html, json, os, sys
dom = html.unescape(open(sys.argv[1], encoding="utf-8").read())
paths = sorted(json.load(open(sys.argv[2]))["paths"])
missing = [p for p in paths if f'data-path="{p}"' not in dom]
if not os.path.getsize(sys.argv[3]):
    sys.exit("docs-check: the screenshot is empty")
if missing:
    sys.exit(f"docs-check: /docs does not list {missing}")
print(f"docs-check: /docs lists all {len(paths)} paths; screenshot in {sys.argv[3]}")
PY
