#!/usr/bin/env bash
# Issue 5's figures, on one release instance:
#  - POST /orders throughput, 64 clients on one menu vs 64 clients on 20 menus;
#  - GET /menus/popular latency at 32 clients with 1,000,000 orders in the window.
# Writes the section "Orders and popular menus" of bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh ensure >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh

cargo build --release -q --bin coffee -p coffee-bootstrap --bin mock-collector -p coffee-mock-collector
cargo build --release -q -p coffee-bench --bin orders_load --bin popular_load
ORDERS=${BENCH_ORDERS:-1000000}
SECONDS_PER_PHASE=${BENCH_SECONDS:-15}

bench_start_server coffee_bench_orders 18081 DATABASE_POOL_SIZE=32
bench_psql -f bench/extra_menus.sql
base="http://127.0.0.1:$BENCH_PORT"

echo "bench: POST /orders, 64 clients"
orders=$(BASE_URL=$base CLIENTS=64 SECONDS=$SECONDS_PER_PHASE target/release/orders_load)
echo "$orders"

echo "bench: seeding $ORDERS orders over the last 7 days"
seed_started=$(date +%s)
bench_psql -v orders="$ORDERS" -f bench/seed_orders.sql
seed_secs=$(( $(date +%s) - seed_started ))
in_window=$(bench_psql -Atc "SELECT count(*) FROM orders WHERE created_at > now() - interval '7 days'")

echo "bench: GET /menus/popular, 32 clients"
popular=$(BASE_URL=$base CLIENTS=32 SECONDS=20 target/release/popular_load)
echo "$popular"
# What each request runs (the settled hours and the edge hour are read once
# per hour and kept in memory; see crates/postgres/src/popular.rs): the live
# buckets, and the 20 menu rows.
plan=$(bench_psql -Atc "EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF, SUMMARY ON)
SELECT menu_id, quantity, order_count FROM menu_sales_hourly
WHERE bucket_start >= date_trunc('hour', now() - interval '5 minutes')" | grep -E "Execution Time|Index|Seq Scan|rows=" | sed 's/^ *//' | head -6)

out=$(mktemp)
python3 - "$orders" "$popular" "$(bench_machine)" "$ORDERS" "$in_window" "$seed_secs" "$plan" > "$out" <<'PY'
import json, sys, datetime
orders, popular = json.loads(sys.argv[1]), json.loads(sys.argv[2])
machine, seeded, in_window, seed_secs, plan = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
def row(name, r):
    return f"| {name} | {r['requests']} | {r['errors']} | {r['perSecond']:.0f} | {r['p50Ms']:.2f} | {r['p99Ms']:.2f} | {r['p999Ms']:.2f} |"
print(f"""Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {machine}.
One release `coffee serve` (2 HTTP workers = cores, `DATABASE_POOL_SIZE=32`) delivering its order
events to a release `mock-collector`, load from a separate
process on loopback (`bench/src/bin/*_load.rs`, closed-loop clients). Command: `bash bench/orders_popular.bench.sh`.

### `POST /orders`, {orders['clients']} clients, a fresh `Idempotency-Key` per request

| phase | orders | errors | orders/s | p50 ms | p99 ms | p99.9 ms |
|---|---:|---:|---:|---:|---:|---:|
{row("all clients on one menu", orders['oneMenu'])}
{row("clients spread over 20 menus", orders['twentyMenus'])}
{row("one menu again", orders['oneMenuAgain'])}

Throughput on one menu / on 20 menus: **{orders['ratioOneToTwenty']:.2f}** (target at least 0.80; the
two one-menu phases are averaged). Each (hour, menu) statistics bucket is split into 16 shards, so one
hot menu spreads its writes over 16 rows.

### `GET /menus/popular`, {popular['clients']} clients, {int(in_window):,} orders in the window

{int(seeded):,} orders seeded uniformly over the last 7 days across 20 menus (`bench/seed_orders.sql`,
{seed_secs} s), with their hourly buckets.

| requests | errors | req/s | p50 ms | p99 ms | p99.9 ms | max ms |
|---:|---:|---:|---:|---:|---:|---:|
| {popular['requests']} | {popular['errors']} | {popular['perSecond']:.0f} | {popular['p50Ms']:.2f} | {popular['p99Ms']:.2f} | {popular['p999Ms']:.2f} | {popular['maxMs']:.2f} |

Target: p99 under 20 ms. Sums of hours that ended more than 5 minutes ago, and the items of the
week-old edge hour, cannot change any more and are read once per hour; each request runs two small
prepared statements, the live buckets and the menu rows. The first one's plan (`EXPLAIN ANALYZE`):

```
{plan}
```
""")
PY
bench_write_section "Orders and popular menus (issue 5)" "$out"
echo "bench: wrote bench/RESULTS.md"
