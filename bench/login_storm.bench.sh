#!/usr/bin/env bash
# Issue 3's figure: GET /menus p99 on one release instance while storms of 20
# concurrent correct-password logins run (argon2id, m=19 MiB, t=2, p=1).
# Writes the figures into bench/RESULTS.md (section "Login storm").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh ensure >/dev/null

cargo build --release -q --bin coffee -p coffee-bootstrap
cargo build --release -q -p coffee-bench --bin login_storm

db=coffee_bench_login
port=${BENCH_PORT:-18080}
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
export BIND_ADDR=127.0.0.1:$port REDIS_KEY_PREFIX="coffee-bench-$$:" RUST_LOG=warn APP_ENV=development
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
target/release/coffee migrate >/dev/null
target/release/coffee serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; redis-cli --scan --pattern "coffee-bench-$$:*" | xargs -r redis-cli del >/dev/null' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done

figures=$(BASE_URL="http://127.0.0.1:$port" target/release/login_storm)
echo "$figures"

python3 - "$figures" <<'PY'
import json, sys, datetime, platform, os, re, subprocess
f = json.loads(sys.argv[1])
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
section = f"""## Login storm (issue 3)

Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), Linux {platform.release()};
one release `coffee serve` (default workers, `PASSWORD_HASH_CONCURRENCY` default = cores - 1),
local PostgreSQL 15 and Redis 7. Command: `bash bench/login_storm.bench.sh`.

{f['rounds']} storms of {f['stormSize']} concurrent correct-password logins (20 distinct users), back to back,
while {f['menuClients']} clients read `GET /menus` in a loop.

| | requests | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|
| `GET /menus`, no storm | {f['baselineMenus']['requests']} | {f['baselineMenus']['p50Ms']:.2f} | {f['baselineMenus']['p99Ms']:.2f} | {f['baselineMenus']['maxMs']:.2f} |
| `GET /menus`, during storms | {f['menusDuringStorm']['requests']} | {f['menusDuringStorm']['p50Ms']:.2f} | {f['menusDuringStorm']['p99Ms']:.2f} | {f['menusDuringStorm']['maxMs']:.2f} |
| `POST /auth/login` | {f['logins']['requests']} | {f['logins']['p50Ms']:.2f} | {f['logins']['p99Ms']:.2f} | |

Logins completed at {f['logins']['perSecond']:.1f}/s. Target: `GET /menus` p99 under 50 ms during the storm.
"""
path = "bench/RESULTS.md"
text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\nEach section is rewritten by the script named in it.\n\n"
pattern = re.compile(r"## Login storm \(issue 3\)\n.*?(?=\n## |\Z)", re.S)
text = pattern.sub(section.rstrip() + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
echo "bench: wrote bench/RESULTS.md"
