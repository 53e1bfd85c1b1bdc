#!/usr/bin/env bash
# Issue 3's figure: GET /menus p99 on one release instance while storms of 20
# concurrent correct-password logins run (argon2id, m=19 MiB, t=2, p=1).
# Writes the section "Login storm (issue 3)" of bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh ensure >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh

cargo build --release -q --bin coffee -p coffee-bootstrap --bin mock-collector -p coffee-mock-collector
cargo build --release -q -p coffee-bench --bin login_storm

bench_start_server coffee_bench_login 18080
figures=$(BASE_URL="http://127.0.0.1:$BENCH_PORT" target/release/login_storm)
echo "$figures"

out=$(mktemp)
python3 - "$figures" "$(bench_machine)" > "$out" <<'PY'
import json, sys, datetime
f, machine = json.loads(sys.argv[1]), sys.argv[2]
print(f"""Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {machine}.
One release `coffee serve` (default workers, `PASSWORD_HASH_CONCURRENCY` default = cores - 1).
Command: `bash bench/login_storm.bench.sh`.

{f['rounds']} storms of {f['stormSize']} concurrent correct-password logins (20 distinct users), back to back,
while {f['menuClients']} clients read `GET /menus` in a loop.

| | requests | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|
| `GET /menus`, no storm | {f['baselineMenus']['requests']} | {f['baselineMenus']['p50Ms']:.2f} | {f['baselineMenus']['p99Ms']:.2f} | {f['baselineMenus']['maxMs']:.2f} |
| `GET /menus`, during storms | {f['menusDuringStorm']['requests']} | {f['menusDuringStorm']['p50Ms']:.2f} | {f['menusDuringStorm']['p99Ms']:.2f} | {f['menusDuringStorm']['maxMs']:.2f} |
| `POST /auth/login` | {f['logins']['requests']} | {f['logins']['p50Ms']:.2f} | {f['logins']['p99Ms']:.2f} | |

Logins completed at {f['logins']['perSecond']:.1f}/s. Target: `GET /menus` p99 under 50 ms during the storm.
""")
PY
bench_write_section "Login storm (issue 3)" "$out"
echo "bench: wrote bench/RESULTS.md"
