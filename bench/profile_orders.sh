#!/usr/bin/env bash
# Where one instance's CPU goes under `POST /orders`: `perf record` on a
# release `coffee serve` while wrk (bench/wrk/load.lua) orders at
# BENCH_CONNECTIONS (default 16) for BENCH_SECONDS (default 15), then the
# share of samples by symbol and by area (the kernel's network stack, TLS-free
# HTTP, JSON, tokens, Redis, PostgreSQL's client, allocation, logs, metrics).
# Writes the section "Profile of POST /orders (issue 15)" of bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh ensure >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_need_wrk
command -v perf >/dev/null || { echo "bench: perf is missing (Debian package linux-perf)" >&2; exit 1; }

cargo build --release -q --bin coffee -p coffee-bootstrap --bin mock-collector -p coffee-mock-collector
cargo build --release -q -p coffee-bench --bin prepare_users
SECS=${BENCH_SECONDS:-15}
C=${BENCH_CONNECTIONS:-16}
work=$(mktemp -d)

bench_start_server coffee_bench_profile 18400
base="http://127.0.0.1:$BENCH_PORT"
BASE_URL=$base USERS=256 target/release/prepare_users > "$work/users"
export BENCH_USERS=$work/users BENCH_THREADS=2
BENCH_MENU=$(curl -sf "$base/menus" | python3 -c 'import json,sys; print(next(m["id"] for m in json.load(sys.stdin) if m["name"] == "Americano"))')
export BENCH_MENU
BENCH_TARGET=orders BENCH_RUN="warm-$(date +%s%N)" wrk -t 2 -c "$C" -d 3s -s bench/wrk/load.lua "$base" >/dev/null

perf record -F 1999 -o "$work/perf.data" -p "$BENCH_SERVER" -- sleep "$SECS" >/dev/null 2>&1 &
recorder=$!
line=$(BENCH_TARGET=orders BENCH_RUN="profile-$(date +%s%N)" wrk -t 2 -c "$C" -d "${SECS}s" -s bench/wrk/load.lua "$base" | tail -n 1)
wait "$recorder" || true
perf report -i "$work/perf.data" --no-children --sort symbol --stdio 2>/dev/null \
  | grep -E '^ +[0-9.]+%' > "$work/symbols" || true

python3 - "$work/symbols" "$line" "$C" "$SECS" "$(bench_machine)" > "$work/section" <<'PY'
import json, re, sys
symbols_file, line, c, secs, machine = sys.argv[1:6]
result = json.loads(line)
rows = []
for raw in open(symbols_file):
    m = re.match(r"\s*([0-9.]+)%\s+\[([k.])\]\s+(.*)", raw)
    if m:
        rows.append((float(m.group(1)), m.group(2) == "k", m.group(3).strip()))
areas = [
    ("kernel: network, scheduling, system calls", lambda k, s: k),
    ("PostgreSQL client (tokio-postgres, diesel)", lambda k, s: re.search(r"tokio_postgres|postgres_protocol|diesel", s)),
    ("Redis client (session check)", lambda k, s: re.search(r"redis|deadpool_redis", s)),
    ("JSON (serde_json)", lambda k, s: re.search(r"serde_json|serde::", s)),
    ("tokens (jsonwebtoken, HMAC, SHA-2, base64)", lambda k, s: re.search(r"jsonwebtoken|hmac|sha2|base64|aws_lc|ring", s)),
    ("HTTP (actix, h1 codec)", lambda k, s: re.search(r"actix|http::|httparse|h1", s)),
    ("logs and spans (tracing)", lambda k, s: re.search(r"tracing", s)),
    ("metrics", lambda k, s: re.search(r"metrics", s)),
    ("allocation (mimalloc, memcpy)", lambda k, s: re.search(r"mi_|mimalloc|memcpy|memmove|malloc|free", s)),
    ("async runtime (tokio)", lambda k, s: re.search(r"tokio", s)),
]
totals = {name: 0.0 for name, _ in areas}
other = 0.0
for pct, kernel, sym in rows:
    for name, test in areas:
        if test(kernel, sym):
            totals[name] += pct
            break
    else:
        other += pct
print(f"Measured {__import__('time').strftime('%Y-%m-%d %H:%M UTC', __import__('time').gmtime())} on {machine}.")
print(f"One release `coffee serve` (default settings), wrk `POST /orders` at {c} connections for {secs} s:")
print(f"{result['requests']} orders, {result['perSecond']:.0f}/s, p99 {result['p99Ms']:.2f} ms, "
      f"non-2xx {result['non2xx']}, socket errors {result['socketErrors']}.")
print("`perf record -F 1999 -p <instance>`, flat profile (self time). Command: `bash bench/profile_orders.sh`.")
print()
print("| area | share of the instance's samples |")
print("|---|---:|")
for name, _ in areas:
    print(f"| {name} | {totals[name]:.1f}% |")
print(f"| everything else | {other:.1f}% |")
print()
print("Top symbols:")
print()
print("| self | symbol |")
print("|---:|---|")
for pct, kernel, sym in rows[:15]:
    print(f"| {pct:.2f}% | `{'[k] ' if kernel else ''}{sym[:90]}` |")
PY
bench_write_section "Profile of POST /orders (issue 15)" "$work/section"
cat "$work/section"
rm -rf "$work"
