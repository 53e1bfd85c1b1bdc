#!/usr/bin/env bash
# Issue 13's capacity figures, on release builds with their default settings;
# docs/CAPACITY.md builds its model on them:
#  a. per endpoint (GET /menus, GET /menus/popular, POST /orders,
#     POST /users/{id}/points/charge, POST /auth/login), wrk with 16
#     connections straight at ONE instance (no balancer): CPU seconds per 1,000
#     requests of the instance and of PostgreSQL (utime + stime from
#     /proc/<pid>/stat of the instance and of every process of the postmaster:
#     backends, walwriter, checkpointer, ...), and for the writes the WAL they
#     add (pg_wal_lsn_diff of pg_current_wal_lsn() before and after, split by
#     resource manager with pg_waldump --stats);
#  b. GET /menus alone, POST /orders alone and a mix (of every 20 requests 14
#     GET /menus, 2 GET /menus/popular, 3 POST /orders and 1 charge), 64
#     connections through HAProxy (docker/haproxy.cfg with its server-template
#     line replaced, as scripts/cluster.sh does) in front of 1, 2 and 3
#     instances, with the machine's CPU split between the instances,
#     PostgreSQL, Redis, HAProxy, the collector, wrk and the rest;
#  c. this disk's commit latency (pgbench, one-row inserts, durable and not).
# Writes the section "Capacity (issue 13)" of bench/RESULTS.md and the part of
# docs/CAPACITY.md between its capacity.bench.sh markers, where the model's
# arithmetic is done on these figures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh ensure >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || missing+=(haproxy)
[ ${#missing[@]} -eq 0 ] || scripts/apt-install.sh bench "${missing[@]}"
command -v pgbench >/dev/null || { echo "bench: pgbench is missing (Debian package postgresql-client)" >&2; exit 1; }

cargo build --release -q --bin coffee -p coffee-bootstrap --bin mock-collector -p coffee-mock-collector
cargo build --release -q -p coffee-bench --bin prepare_users
SECS=${BENCH_SECONDS:-12}
USERS=256
PORT=18300
LB_PORT=18310
work=$(mktemp -d)

# The PostgreSQL server's processes are read from /proc: it must run on this
# machine, and its postmaster.pid be readable (the benches run as root).
pg() { psql -h 127.0.0.1 -U postgres -Atc "$1"; }
data_dir=$(pg 'SHOW data_directory')
postmaster=$(head -n 1 "$data_dir/postmaster.pid" 2>/dev/null || true)
if [ -z "$postmaster" ] || [ ! -r "/proc/$postmaster/stat" ]; then
  echo "bench: cannot read PostgreSQL's postmaster.pid under $data_dir: the server must run on this machine" >&2
  exit 1
fi
redis_pid=$(redis-cli info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
waldump=/usr/lib/postgresql/$(pg 'SHOW server_version_num' | cut -c1-2)/bin/pg_waldump
settings=$(pg "SELECT json_object_agg(name, current_setting(name)) FROM pg_settings WHERE name IN
  ('max_connections', 'superuser_reserved_connections', 'shared_buffers', 'synchronous_commit', 'fsync',
   'full_page_writes', 'wal_compression', 'wal_level', 'checkpoint_timeout', 'max_wal_size', 'autovacuum')")

# snapshot.py file: CPU ticks (utime + stime) of every process of the stack,
# by group, and the machine's counters from /proc/stat.
cat > "$work/snapshot.py" <<'PY'
import json, os, sys, time
out, db, postmaster, redis, collector, haproxy, *api = sys.argv[1:]
def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()  # from field 3 (state) on
    return fields[1], int(fields[11]) + int(fields[12])  # ppid, utime + stime
procs = {}
def add(group, pid):
    st = stat(pid) if pid else None
    if st:
        procs[pid] = [group, st[1]]
for pid in api:
    add("api", pid)
add("redis", redis)
add("collector", collector)
add("haproxy", haproxy)
add("pg_other", postmaster)
for pid in os.listdir("/proc"):
    st = stat(pid) if pid.isdigit() else None
    if not st or st[0] != postmaster:
        continue
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = " " + f.read().replace(b"\0", b" ").decode(errors="replace") + " "
    except OSError:
        continue
    # "postgres: 15/main: postgres <db> 127.0.0.1(port) idle", "postgres: 15/main: walwriter", ...
    group = "pg_backends" if f" {db} " in title else "pg_walwriter" if "walwriter" in title else "pg_other"
    procs[pid] = [group, st[1]]
with open("/proc/stat") as f:
    cpu = [int(v) for v in f.readline().split()[1:]]
json.dump({"t": time.monotonic(), "busy": sum(cpu[i] for i in (0, 1, 2, 5, 6)), "idle": cpu[3] + cpu[4],
           "steal": cpu[7], "procs": procs}, open(out, "w"))
PY

# record.py label kind target instances connections: one JSON line from the
# files a measured run leaves in $work.
cat > "$work/record.py" <<'PY'
import json, os, re, sys
label, kind, target, instances, conns, d = sys.argv[1:]
hz = os.sysconf("SC_CLK_TCK")
def path(name):
    return os.path.join(d, name)
before, after = json.load(open(path("cpu.before"))), json.load(open(path("cpu.after")))
cpu = {g: 0.0 for g in ("api", "pg_backends", "pg_walwriter", "pg_other", "redis", "collector", "haproxy")}
for pid, (group, ticks) in after["procs"].items():
    prev = before["procs"].get(pid)
    base = prev[1] if prev and prev[0] == group and prev[1] <= ticks else 0  # new process: all of it
    cpu[group] += (ticks - base) / hz
# wrk's own CPU: `times` in its subshell (children's user and system time).
spent = re.findall(r"(\d+)m([\d.]+)s", open(path("wrk.times")).read().splitlines()[1])
cpu["wrk"] = sum(int(m) * 60 + float(s) for m, s in spent)
for key in ("busy", "idle", "steal"):
    cpu[key] = (after[key] - before[key]) / hz
cpu["window"] = after["t"] - before["t"]
wrk = next(json.loads(l) for l in reversed(open(path("wrk.out")).read().splitlines()) if l.startswith("{"))
lsn, orders, charges = open(path("pg.before")).read().strip().split("|")
_, orders2, charges2, wal = open(path("pg.after")).read().strip().split("|")
pg = {"orders": int(orders2) - int(orders), "charges": int(charges2) - int(charges), "walBytes": int(float(wal))}
# pg_waldump --stats: N, record bytes, full-page-image bytes, both, per resource manager.
rmgrs = {}
if os.path.exists(path("waldump")):
    num = r"\s+(\d+)\s+\(\s*[\d.]+\)"
    for line in open(path("waldump")):
        m = re.match(r"^(\w+)" + num * 4 + r"\s*$", line)
        if m and int(m.group(2)) > 0:
            rmgrs[m.group(1)] = [int(m.group(i)) for i in (2, 3, 4, 5)]
print(json.dumps({"label": label, "kind": kind, "target": target, "instances": int(instances),
                  "connections": int(conns), "wrk": wrk, "cpu": cpu, "pg": pg, "wal": rmgrs}))
pg_cpu = cpu["pg_backends"] + cpu["pg_walwriter"] + cpu["pg_other"]
print(f"bench: {label} x{instances} c={conns}: {wrk['perSecond']:.0f} req/s, non-2xx {wrk['non2xx']}, "
      f"CPU s: API {cpu['api']:.2f}, PostgreSQL {pg_cpu:.2f}, HAProxy {cpu['haproxy']:.2f}, wrk {cpu['wrk']:.2f}; "
      f"machine busy {cpu['busy']:.2f} of {cpu['busy'] + cpu['idle'] + cpu['steal']:.2f}", file=sys.stderr)
PY

# mixed.lua: of every 20 requests of a wrk thread, 14 GET /menus, 2 GET
# /menus/popular, 3 POST /orders and 1 charge, interleaved; users and keys as
# in bench/wrk/load.lua (each thread its own users, a fresh key per request).
cat > "$work/mixed.lua" <<'LUA'
local run = os.getenv("BENCH_RUN") or tostring(os.time())
local thread_count = 0
local mix = { "m", "o", "m", "m", "p", "m", "m", "c", "m", "o", "m", "m", "m", "p", "m", "m", "o", "m", "m", "m" }

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  tid = tid or 0
  step = tonumber(os.getenv("BENCH_THREADS") or "1")
  users, counter, sent = {}, 0, 0
  for line in io.lines(os.getenv("BENCH_USERS")) do
    local id, token = line:match("^(%S+) (%S+) %S+$")
    if id then table.insert(users, { id = id, token = token }) end
  end
  order_body = '{"items":[{"menuId":"' .. (os.getenv("BENCH_MENU") or "") .. '","quantity":1}]}'
end

local function next_user()
  local per_thread = math.floor(#users / step)
  local i = (counter % per_thread) * step + tid + 1
  counter = counter + 1
  return users[i]
end

function request()
  sent = sent + 1
  local kind = mix[(sent - 1) % #mix + 1]
  if kind == "m" then return wrk.format("GET", "/menus") end
  if kind == "p" then return wrk.format("GET", "/menus/popular") end
  local u = next_user()
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. u.token,
    ["Idempotency-Key"] = run .. "-" .. tid .. "-" .. counter,
  }
  if kind == "c" then
    return wrk.format("POST", "/users/" .. u.id .. "/points/charge", headers, '{"amount":1}')
  end
  return wrk.format("POST", "/orders", headers, order_body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"perSecond":%.1f,"non2xx":%d,"socketErrors":%d,'
      .. '"p50Ms":%.3f,"p99Ms":%.3f,"p999Ms":%.3f,"maxMs":%.3f}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000))
end
LUA

# Instances drain for SHUTDOWN_DRAIN_SECS before they stop; nothing routes to
# them at the end, so the wait is skipped.
bench_start_server coffee_bench_capacity "$PORT" SHUTDOWN_DRAIN_SECS=0
API_PIDS=$BENCH_SERVER
EXTRA_PIDS=""
HAPROXY_PID=""
capacity_stop() {
  [ -n "$HAPROXY_PID" ] && kill "$HAPROXY_PID" 2>/dev/null || true
  for pid in $EXTRA_PIDS; do kill "$pid" 2>/dev/null || true; done
  for pid in $EXTRA_PIDS; do wait "$pid" 2>/dev/null || true; done
  bench_stop || true
}
trap capacity_stop EXIT
base="http://127.0.0.1:$PORT"

echo "bench: creating $USERS funded users"
BASE_URL=$base USERS=$USERS target/release/prepare_users > "$work/users"
export BENCH_USERS=$work/users BENCH_THREADS=2 BENCH_RUN
BENCH_MENU=$(curl -sf "$base/menus" | python3 -c 'import json,sys; print(next(m["id"] for m in json.load(sys.stdin) if m["name"] == "Americano"))')
export BENCH_MENU

snapshot() { python3 "$work/snapshot.py" "$1" "$BENCH_DB" "$postmaster" "$redis_pid" "$BENCH_COLLECTOR" "$HAPROXY_PID" $API_PIDS; }
pg_state() { bench_psql -Atc "SELECT pg_current_wal_lsn(), (SELECT count(*) FROM orders),
  (SELECT count(*) FROM point_transactions WHERE type = 'ADD')${1:+, pg_wal_lsn_diff(pg_current_wal_lsn(), '$1')}"; }
drain_outbox() { # the relay's deliveries of the run's orders belong to it
  for _ in $(seq 1 100); do
    [ "$(bench_psql -Atc "SELECT count(*) FROM outbox_events WHERE status = 'PENDING'")" = 0 ] && return 0
    sleep 0.1
  done
}
# run_wrk lua target url connections seconds: wrk's output and its CPU (`times`).
run_wrk() {
  BENCH_RUN="$2-$4-$(date +%s%N)"
  ( BENCH_TARGET=$2 wrk -t 2 -c "$4" -d "${5}s" --timeout 30s -s "$1" "$3" > "$work/wrk.out"; times > "$work/wrk.times" )
}
# measure label kind lua target url connections instances: one recorded run.
measure() {
  local label=$1 kind=$2 lua=$3 target=$4 url=$5 c=$6 n=$7 lsn
  rm -f "$work/waldump"
  pg_state > "$work/pg.before"
  lsn=$(cut -d'|' -f1 "$work/pg.before")
  snapshot "$work/cpu.before"
  run_wrk "$lua" "$target" "$url" "$c" "$SECS"
  [ "$kind" = endpoint ] && drain_outbox
  snapshot "$work/cpu.after"
  pg_state "$lsn" > "$work/pg.after"
  if [ "$kind" = endpoint ] && { [ "$target" = orders ] || [ "$target" = charge ]; } && [ -x "$waldump" ]; then
    "$waldump" --stats -p "$data_dir/pg_wal" -s "$lsn" -e "$(cut -d'|' -f1 "$work/pg.after")" > "$work/waldump" 2>/dev/null || true
  fi
  python3 "$work/record.py" "$label" "$kind" "$target" "$n" "$c" "$work" >> "$work/runs"
}

# c. The disk's commit latency: one client, one-row transactions, durable and
# with synchronous_commit off (the difference is the WAL flush).
bench_psql -c "CREATE TABLE capacity_commit (n integer)"
echo "INSERT INTO capacity_commit VALUES (1);" > "$work/commit.sql"
commit_ms() { pgbench -h 127.0.0.1 -U postgres -n -c 1 -T 3 -f "$work/commit.sql" "$BENCH_DB" 2>&1 | awk '/^latency average/ {print $4}'; }
durable_ms=$(commit_ms)
async_ms=$(PGOPTIONS='-c synchronous_commit=off' commit_ms)
echo "bench: commit latency ${durable_ms} ms durable, ${async_ms} ms with synchronous_commit off"

# The instance at rest (relay polling, housekeeping): what every figure below includes.
snapshot "$work/idle.before"; sleep 5; snapshot "$work/idle.after"
idle=$(python3 - "$work/idle.before" "$work/idle.after" <<'PY'
import json, os, sys
b, a = (json.load(open(p)) for p in sys.argv[1:3])
hz, secs = os.sysconf("SC_CLK_TCK"), a["t"] - b["t"]
def spent(groups):
    return sum(t - (b["procs"].get(p, [g, 0])[1]) for p, (g, t) in a["procs"].items() if g in groups) / hz / secs
print(json.dumps({"apiPerSec": spent({"api"}), "pgPerSec": spent({"pg_backends", "pg_walwriter", "pg_other"}),
                  "tickMsPerSec": 1000 / hz / secs}))
PY
)

# a. One endpoint at a time against the instance itself. A checkpoint before
# the writes' warm-up, so the full-page images it forces land in the warm-up
# and the measured WAL is that of a steady state between checkpoints.
for target in menus orders charge popular login; do
  case $target in orders | charge) bench_psql -c CHECKPOINT ;; esac
  run_wrk bench/wrk/load.lua "$target" "$base" 16 2
  drain_outbox
  measure "$target" endpoint bench/wrk/load.lua "$target" "$base" 16 1
done

# b. Through HAProxy, with 1, 2 and 3 instances.
start_balancer() { # ports of the instances
  local servers="" i=0 port
  for port in "$@"; do i=$((i + 1)); servers+="    server api$i 127.0.0.1:$port check\n"; done
  sed "s#^    server-template api .*#${servers%\\n}#" docker/haproxy.cfg > "$work/haproxy.cfg"
  LB_BIND=127.0.0.1:$LB_PORT haproxy -q -f "$work/haproxy.cfg" >> "$work/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$LB_PORT/health/ready" >/dev/null && break; sleep 0.1; done
  sleep 1.5 # two good health checks 500 ms apart for every server
}
ports=("$PORT")
lb="http://127.0.0.1:$LB_PORT"
for n in 1 2 3; do
  if [ "$n" -gt 1 ]; then
    port=$((PORT + n - 1))
    BIND_ADDR=127.0.0.1:$port SHUTDOWN_DRAIN_SECS=0 target/release/coffee serve &
    API_PIDS+=" $!"
    EXTRA_PIDS+=" $!"
    ports+=("$port")
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
  fi
  start_balancer "${ports[@]}"
  run_wrk "$work/mixed.lua" mixed "$lb" 64 3
  measure mixed lb "$work/mixed.lua" mixed "$lb" 64 "$n"
  measure menus lb bench/wrk/load.lua menus "$lb" 64 "$n"
  measure orders lb bench/wrk/load.lua orders "$lb" 64 "$n"
  kill "$HAPROXY_PID"
  wait "$HAPROXY_PID" 2>/dev/null || true
  HAPROXY_PID=""
done

cat > "$work/facts.json" <<EOF
{"when": "$(date -u '+%Y-%m-%d %H:%M') UTC", "machine": "$(bench_machine)", "cores": $(nproc), "seconds": $SECS, "users": $USERS,
 "commitMs": {"durable": ${durable_ms:-null}, "async": ${async_ms:-null}}, "idle": $idle, "settings": $settings}
EOF

results=$(mktemp)
capacity=$(mktemp)
python3 - "$work/runs" "$work/facts.json" "$results" "$capacity" <<'PY'
import datetime, json, math, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
facts = json.load(open(sys.argv[2]))
cores, secs, settings = facts["cores"], facts["seconds"], facts["settings"]
ep = {r["target"]: r for r in runs if r["kind"] == "endpoint"}
lb = {(r["target"], r["instances"]): r for r in runs if r["kind"] == "lb"}
NAMES = {"menus": "`GET /menus`", "popular": "`GET /menus/popular`", "orders": "`POST /orders`",
         "charge": "`POST /users/{id}/points/charge`", "login": "`POST /auth/login`", "mixed": "mix"}
MIX = {"menus": 0.70, "popular": 0.10, "orders": 0.15, "charge": 0.05}
POOL = 16 + 2  # DATABASE_POOL_SIZE + DATABASE_BACKGROUND_POOL_SIZE defaults: connections per instance

def pg(r):
    c = r["cpu"]
    return c["pg_backends"] + c["pg_walwriter"] + c["pg_other"]
def count(r):  # what a run's figures are per: the effects in the database for writes
    return {"orders": r["pg"]["orders"], "charge": r["pg"]["charges"]}.get(r["target"], r["wrk"]["requests"])
def per1000(r, seconds):
    return seconds / count(r) * 1000
A = {e: per1000(r, r["cpu"]["api"]) for e, r in ep.items()}
P = {e: per1000(r, pg(r)) for e, r in ep.items()}
W = {e: ep[e]["pg"]["walBytes"] / count(ep[e]) for e in ("orders", "charge")}
when = facts["when"]
s = settings

def num(v):  # three significant digits, however small
    if v <= 0:
        return "0"
    return f"{v:,.0f}" if v >= 100 else f"{v:.{max(0, 2 - math.floor(math.log10(v)))}f}"

# --- per endpoint
endpoint_rows = ["| endpoint | requests | non-2xx | req/s | API (A) | PostgreSQL total (P) | of which backends | Redis | A / P |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
for e in ("menus", "popular", "orders", "charge", "login"):
    r = ep[e]
    endpoint_rows.append(
        f"| {NAMES[e]} | {count(r):,} | {r['wrk']['non2xx'] + r['wrk']['socketErrors']} | {r['wrk']['perSecond']:,.0f} "
        f"| **{num(A[e])}** | **{num(P[e])}** | {num(per1000(r, r['cpu']['pg_backends']))} "
        f"| {num(per1000(r, r['cpu']['redis']))} | {num(A[e] / P[e]) if P[e] else '-'} |")
endpoint_table = "\n".join(endpoint_rows)

wal_rows = ["| write | count | WAL bytes | bytes each | records each | full-page-image bytes each | by resource manager, bytes each |",
            "|---|---:|---:|---:|---:|---:|---|"]
for e in ("orders", "charge"):
    r, n = ep[e], count(ep[e])
    recs = sum(v[0] for v in r["wal"].values())
    fpi = sum(v[2] for v in r["wal"].values())
    by_rmgr = ", ".join(f"{k} {v[3] / n:,.0f}" for k, v in sorted(r["wal"].items(), key=lambda kv: -kv[1][3]) if v[3] / n >= 1)
    wal_rows.append(f"| {NAMES[e]} | {n:,} | {r['pg']['walBytes']:,} | **{W[e]:,.0f}** | {recs / n:.1f} | {fpi / n:,.0f} | {by_rmgr or '-'} |")
wal_table = "\n".join(wal_rows)

def idle_ms(key):  # below one clock tick in the 5 s: say so rather than 0
    v = facts["idle"][key] * 1000
    return num(v) if v > 0 else f"under {num(facts['idle']['tickMsPerSec'])}"

# --- through HAProxy
def split(r):
    c = r["cpu"]
    total = c["busy"] + c["idle"] + c["steal"]
    known = c["api"] + pg(r) + c["redis"] + c["haproxy"] + c["collector"] + c["wrk"]
    w = c["window"]
    return [c["api"] / w, c["pg_backends"] / w, (c["pg_walwriter"] + c["pg_other"]) / w, c["redis"] / w,
            c["haproxy"] / w, c["collector"] / w, c["wrk"] / w, max(c["busy"] - known, 0) / w,
            c["steal"] / w, c["idle"] / w], total / w
lb_rows = [f"| load | instances | req/s | orders/s | non-2xx | p50 ms | p99 ms | API | PG backends | PG background | Redis | HAProxy | collector | wrk | kernel, rest | steal | idle |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for load in ("mixed", "menus", "orders"):
    for n in (1, 2, 3):
        r = lb.get((load, n))
        if not r:
            continue
        parts, _ = split(r)
        w = r["wrk"]
        lb_rows.append(f"| {NAMES[load]} | {n} | {w['perSecond']:,.0f} | {r['pg']['orders'] / w['seconds']:,.0f} | "
                       f"{w['non2xx'] + w['socketErrors']} | {w['p50Ms']:.2f} | {w['p99Ms']:.2f} | "
                       + " | ".join(f"{p:.2f}" for p in parts) + " |")
lb_table = "\n".join(lb_rows)
def ratio(load, n):
    a, b = lb.get((load, n)), lb.get((load, 1))
    return a["wrk"]["perSecond"] / b["wrk"]["perSecond"] if a and b else float("nan")
scaling = "; ".join(f"{NAMES[l]}: {ratio(l, 2):.2f} and {ratio(l, 3):.2f}" for l in ("mixed", "menus", "orders"))
m1 = lb[("mixed", 1)]
m1parts, m1total = split(m1)
busy1 = 1 - m1parts[-1] / m1total
m3 = lb[("mixed", 3)]
m3parts, m3total = split(m3)

commit = facts["commitMs"]
common = f"""Measured {when} on {facts['machine']}; PostgreSQL with `synchronous_commit={s['synchronous_commit']}`,
`full_page_writes={s['full_page_writes']}`, `wal_compression={s['wal_compression']}`, `checkpoint_timeout={s['checkpoint_timeout']}`,
`shared_buffers={s['shared_buffers']}`, `autovacuum={s['autovacuum']}`. Release builds with their default settings
(2 HTTP workers, a pool of 16 connections plus 2 for the relay and housekeeping), delivering order events to a
release `mock-collector`; {facts['users']} funded users, a fresh `Idempotency-Key` per money request.
Command: `bash bench/capacity.bench.sh`."""

results = f"""{common}

CPU is `utime + stime` from `/proc/<pid>/stat` before and after each run: the instance's process (all
its threads), and every process of the postmaster ("PostgreSQL total": the backends of the benchmark
database, walwriter, checkpointer, background writer, the postmaster). Requests are wrk's count; for
writes the rows they added (orders; `ADD` ledger rows for charges). The outbox is drained before the
after-sample, so an order's figures include delivering its event. The model built on these figures
is in `docs/CAPACITY.md`.

### CPU seconds per 1,000 requests, one instance, no balancer (wrk, 16 connections, {secs} s)

{endpoint_table}

At rest the instance spends {idle_ms('apiPerSec')} ms of CPU per second and PostgreSQL
{idle_ms('pgPerSec')} ms (the relay's polling, housekeeping, PostgreSQL's background
processes); the figures above include that share of their {secs} s.

### WAL per write (`pg_wal_lsn_diff`, split by `pg_waldump --stats`)

{wal_table}

A `CHECKPOINT` runs before each write's 2 s warm-up: the full-page images of the pages the load keeps
touching (users' rows, the right edges of the indexes) are written in the warm-up, and the figure is
that of a steady state between checkpoints.

Commit latency of this disk (pgbench, one client, one-row insert transactions): **{commit['durable']} ms**
durable, {commit['async']} ms with `synchronous_commit = off`.

### Through HAProxy: 1, 2 and 3 instances on these {cores} cores (wrk, 64 connections, {secs} s)

`docker/haproxy.cfg` with its `server-template` line replaced by the instances (as `make cluster`
does). Mix: of every 20 requests 14 `GET /menus`, 2 `GET /menus/popular`, 3 `POST /orders` and 1
charge. CPU columns are cores (CPU seconds per second of the run, out of {cores}); "kernel, rest" is
the machine's busy time that no listed process was charged with (softirq network work, the
sampler, anything else running).

{lb_table}

Throughput with 2 and 3 instances relative to 1: {scaling}."""

# --- the model
Ks = (2, 4, 8, 16, 32, 64)
def model_rows(a, p, wal, unit):
    rows = [f"| PostgreSQL cores K | {unit}/s at 100 % CPU | at 70 % | WAL MB/s at 100 % | API cores to feed it | {cores}-core instances |",
            "|---:|---:|---:|---:|---:|---:|"]
    for k in Ks:
        rate = k * 1000 / p
        api_cores = k * a / p
        rows.append(f"| {k} | {rate:,.0f} | {0.7 * rate:,.0f} | {rate * wal / 1e6:.1f} | {api_cores:.1f} | {math.ceil(api_cores / cores)} |")
    return "\n".join(rows)
A_mix = sum(w * A[e] for e, w in MIX.items())
P_mix = sum(w * P[e] for e, w in MIX.items())
W_mix = MIX["orders"] * W["orders"] + MIX["charge"] * W["charge"]
mixed_measured_api = per1000(m1, m1["cpu"]["api"])
mixed_measured_pg = per1000(m1, pg(m1))
max_conn = int(s["max_connections"]) - int(s["superuser_reserved_connections"])
share = {e: MIX[e] * P[e] / P_mix for e in MIX}

gain = ratio("mixed", 3)
verdict = (": instances added on the cores that already run everything else gain nothing, they take CPU from"
           " PostgreSQL, HAProxy and wrk." if gain < 1.15 else f": a gain of {(gain - 1) * 100:.0f} %, from cores"
           " that were idle with one instance.")
durable = commit["durable"]
flush = (f"A durable commit waits for its WAL flush, {durable} ms on this disk: one connection alone commits at most"
         f" {1000 / durable:,.0f} times a second, and concurrent commits share flushes (group commit), so at the"
         " concurrency of a busy service the flush bounds latency more than throughput." if durable else "")

capacity = f"""{common}

Raw figures and the runs through HAProxy: `bench/RESULTS.md`, "Capacity (issue 13)".

#### Inputs (CPU seconds per 1,000 requests, one instance, wrk with 16 connections)

{endpoint_table}

{wal_table}

Commit latency of this disk: {commit['durable']} ms durable, {commit['async']} ms with `synchronous_commit = off`.
{flush}

#### Orders alone

An order costs PostgreSQL P = {P['orders']:.3f} CPU s per 1,000 and the API A = {A['orders']:.3f}, so one
PostgreSQL core takes 1000 / P = **{1000 / P['orders']:,.0f} orders/s**, it takes A / P =
**{A['orders'] / P['orders']:.2f} API cores per PostgreSQL core** to keep it busy, and each order writes
{W['orders']:,.0f} bytes of WAL.

{model_rows(A['orders'], P['orders'], W['orders'], 'orders')}

#### The mix (70 % `GET /menus`, 10 % popular, 15 % orders, 5 % charges)

Weighted: A = {A_mix:.3f} and P = {P_mix:.3f} CPU s per 1,000 requests, {W_mix:,.0f} WAL bytes per request.
Of PostgreSQL's share, orders take {share['orders'] * 100:.0f} %, charges {share['charge'] * 100:.0f} %,
popular {share['popular'] * 100:.0f} % and `GET /menus` {share['menus'] * 100:.0f} %. Measured through HAProxy with one
instance the mix cost A = {mixed_measured_api:.3f} and P = {mixed_measured_pg:.3f} CPU s per 1,000 requests
(64 connections instead of 16, and a balancer in between).

{model_rows(A_mix, P_mix, W_mix, 'requests')}

#### Connections

Each instance holds up to {POOL} connections (a pool of 16 plus 2): `max_connections` {s['max_connections']} less
{s['superuser_reserved_connections']} reserved admits **{max_conn // POOL} instances** before any pooler.

#### This machine

All of it shares {cores} cores: wrk, HAProxy, the instances, Redis and PostgreSQL. With one instance
behind HAProxy the mix kept the machine {busy1 * 100:.0f} % busy at {m1['wrk']['perSecond']:,.0f} req/s:
API {m1parts[0]:.2f} cores, PostgreSQL {m1parts[1] + m1parts[2]:.2f}, HAProxy {m1parts[4]:.2f}, wrk {m1parts[6]:.2f},
Redis {m1parts[3]:.2f}, kernel and the rest {m1parts[7]:.2f}, idle {m1parts[9]:.2f}. Three instances gave
{ratio('mixed', 3):.2f} times that ({m3['wrk']['perSecond']:,.0f} req/s, idle {m3parts[9]:.2f} cores){verdict}
Relative to one instance, 2 and 3 instances gave {scaling}."""

open(sys.argv[3], "w").write(results)
open(sys.argv[4], "w").write(capacity)
PY
bench_write_section "Capacity (issue 13)" "$results"
python3 - "$capacity" <<'PY'
import re, sys
body = open(sys.argv[1]).read().strip()
path = "docs/CAPACITY.md"
text = open(path).read()
begin, end = "<!-- BEGIN capacity.bench.sh -->", "<!-- END capacity.bench.sh -->"
block = f"{begin}\n<!-- Written by bench/capacity.bench.sh: edit the script, not this part. -->\n\n{body}\n\n{end}"
if begin in text and end in text:
    text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n## Measured figures and the model's outputs\n\n" + block + "\n"
open(path, "w").write(text)
PY
cat "$capacity"
echo
echo "bench: wrote bench/RESULTS.md and docs/CAPACITY.md"
