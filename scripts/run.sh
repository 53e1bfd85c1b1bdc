#!/usr/bin/env bash
# `make run`: the mock collector in the background, `coffee serve` in the
# foreground; Ctrl-C stops both.
set -euo pipefail
bin_dir=${1:-target/debug}
cd "$(dirname "$0")/.."
# .env under the real environment (real variables win), as `coffee` reads it.
# shellcheck source=scripts/settings.sh
. scripts/settings.sh
load_dotenv .env
collector_addr=${MOCK_COLLECTOR_ADDR:-127.0.0.1:9100}
export COLLECTOR_URL=${COLLECTOR_URL:-http://$collector_addr}
MOCK_COLLECTOR_ADDR=$collector_addr "$bin_dir/mock-collector" &
collector=$!
trap 'kill $collector 2>/dev/null || true' EXIT INT TERM
echo "run: mock collector on http://$collector_addr (GET /events lists what it received)"
echo "run: API on http://${BIND_ADDR:-127.0.0.1:8080} (Ctrl-C stops both)"
"$bin_dir/coffee" serve
