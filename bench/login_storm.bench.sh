#!/usr/bin/env bash
# Issue 3's figure: GET /menus p99 on one release instance while storms of 20
# concurrent correct-password logins run (argon2id, m=19 MiB, t=2, p=1).
# Issue 12's: the same while bursts of 500 concurrent logins flood the hashing
# queue (with the 503s they get), then while clients abandon logins mid-hash,
# with the server's resident memory throughout.
# Writes the sections "Login storm (issue 3)" and "Login flood (issue 12)" of
# bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh ensure >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh

cargo build --release -q --bin coffee -p coffee-bootstrap --bin mock-collector -p coffee-mock-collector
cargo build --release -q -p coffee-bench --bin login_storm

bench_start_server coffee_bench_login 18080
figures=$(BASE_URL="http://127.0.0.1:$BENCH_PORT" COFFEE_PID=$BENCH_SERVER target/release/login_storm)
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

python3 - "$figures" "$(bench_machine)" > "$out" <<'PY'
import json, sys, datetime
f, machine = json.loads(sys.argv[1]), sys.argv[2]
fl, hu = f['flood'], f['hangUps']
def ms(v):
    return "-" if v is None else f"{v:.2f}"
def mb(kib):
    return f"{kib / 1024:.1f}"
def row(name, s, bold=False):
    p99 = f"**{ms(s['p99Ms'])}**" if bold else ms(s['p99Ms'])
    return f"| {name} | {s['count']} | {ms(s['p50Ms'])} | {p99} | {ms(s['maxMs'])} |"
rss, hrss = fl['rssKib'], hu['rssKib']
print(f"""Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {machine}.
One release `coffee serve` with the defaults (`PASSWORD_HASH_CONCURRENCY` = cores - 1,
`PASSWORD_HASH_QUEUE_MAX` = 128), after the storms above, while {f['menuClients']} clients read
`GET /menus` in a loop and the instance's resident memory (`VmRSS`) is sampled every 20 ms.
Command: `bash bench/login_storm.bench.sh`.

**Flood**: {fl['rounds']} bursts of {fl['size']} concurrent correct-password logins of {fl['size']} distinct
users (so the per-account throttle plays no part), 2 s apart.

| | requests | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|
{row("`GET /menus`, during the bursts", fl['menus'], True)}
{row("`POST /auth/login` answered `200`", fl['ok'])}
{row("`POST /auth/login` answered `503` (queue full, `Retry-After: 1`)", fl['shed'])}

{fl['other']} logins got anything else. Memory: {mb(rss['before'])} MB before the first burst, peak
**{mb(rss['peak'])} MB**, {mb(rss['after'])} MB after the last (after each burst:
{", ".join(mb(k) for k in rss['afterEachRound'])} MB).

**Hang-ups**: for {hu['seconds']:.1f} s, {hu['clients']} clients each send a login of an unknown email (a
full-cost dummy verification) and hang up 2 to 12 ms later, once its hash has started, over and
over ({hu['sent']} logins): the hashes they start run on without a caller.

| | requests | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|
{row("`GET /menus`, during the hang-ups", hu['menus'], True)}

Memory: {mb(hrss['before'])} MB before, peak **{mb(hrss['peak'])} MB**, {mb(hrss['after'])} MB 3 s after,
{mb(hrss['settled'])} MB 15 s after.

Targets: `GET /menus` p99 under 50 ms throughout, memory back where it was after each flood.
""")
PY
bench_write_section "Login flood (issue 12)" "$out"
echo "bench: wrote bench/RESULTS.md"
