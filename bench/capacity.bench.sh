#!/usr/bin/env bash
# Capacity figures (issues 13 and 23), on release builds with their default
# settings; docs/CAPACITY.md builds its model on them. All load comes from
# wrk with bench/wrk/load.lua, the benchmarks' one request builder (users,
# tokens, a fresh Idempotency-Key per money request):
#  a. per endpoint (GET /menus, GET /menus/popular, POST /orders,
#     POST /users/{id}/points/charge, POST /auth/login), wrk with 16
#     connections straight at ONE instance (no balancer): CPU seconds per 1,000
#     requests of the instance and of PostgreSQL (utime + stime from
#     /proc/<pid>/stat of the instance and of every process of the postmaster:
#     backends, walwriter, checkpointer, ...), and for the writes the WAL they
#     add (pg_wal_lsn_diff of pg_current_wal_lsn() before and after, split by
#     resource manager with pg_waldump --stats) and the storage they add, table
#     by table (heap, TOAST and indexes: the files' growth over the run, and
#     after a VACUUM the live bytes that stay, from pgstattuple);
#  b. GET /menus alone, POST /orders alone and a mix (of every 20 requests 14
#     GET /menus, 2 GET /menus/popular, 3 POST /orders and 1 charge: load.lua's
#     BENCH_TARGET=mix), 64 connections through HAProxy (docker/haproxy.cfg with
#     its server-template line replaced, as scripts/cluster.sh does, health
#     checks on the admin port when the shipped file checks one) in front of
#     1, 2 and 3 instances, with the machine's CPU split between the instances,
#     PostgreSQL, Redis, HAProxy, the collector, wrk and the rest;
#  c. this disk's commit latency (pgbench, one-row inserts, durable and not);
#  d. the re-login storm after a Redis loss: every key of the instance's
#     prefix deleted at once, then BENCH_STORM_USERS users log in again at
#     once against one instance, each retrying a 503 after its Retry-After:
#     how long until all are back, logins/s, latencies, the instance's CPU;
#     and Redis's memory per session (INFO used_memory before and after,
#     divided by the sessions) with the keys a session leaves;
#  e. the outbox relay's delivery rate against the collector's latency: with
#     the instance stopped, BENCH_RELAY_EVENTS orders are written (by
#     bench_place_order of bench/pgbench/setup.sql, the service's writes in one
#     call) so their events wait; then the instance starts against a mock
#     collector answering after MOCK_COLLECTOR_LATENCY_MS (each of
#     BENCH_RELAY_LATENCIES) and the drain is timed from delivered_at.
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
STORM_USERS=${BENCH_STORM_USERS:-1000}
RELAY_EVENTS=${BENCH_RELAY_EVENTS:-3000}
RELAY_LATENCIES=${BENCH_RELAY_LATENCIES:-0 10 50 200}
RELAY_BATCH=50 # OUTBOX_BATCH_SIZE's default, set explicitly for part e
PORT=18300
LB_PORT=18310
ADMIN_PORT=18320 # instance n's admin listener: ADMIN_PORT + n - 1, when used
# One cycle of the mix of each wrk thread (load.lua's BENCH_MIX): 14 GET
# /menus, 2 GET /menus/popular, 3 POST /orders and 1 charge, interleaved.
export BENCH_MIX=menus,orders,menus,menus,popular,menus,menus,charge,menus,orders,menus,menus,menus,popular,menus,menus,orders,menus,menus,menus
work=$(mktemp -d)

# When the shipped HAProxy configuration checks the instances on their admin
# port (`server-template ... check port 9090`), every instance here gets an
# admin listener (ADMIN_BIND_ADDR) and its server line `check port <it>`.
admin=""
if grep -Eq '^[[:space:]]*server-template[[:space:]]+api[[:space:]].*[[:space:]]port[[:space:]]+9090([[:space:]]|$)' docker/haproxy.cfg; then
  admin=1
fi
instance_env() { # n: the settings of instance n besides the exported ones
  echo "SHUTDOWN_DRAIN_SECS=0"
  [ -z "$admin" ] || echo "ADMIN_BIND_ADDR=127.0.0.1:$((ADMIN_PORT + $1 - 1))"
}

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

# cpu.py before after: CPU seconds by group between two snapshots (a process
# that appeared in between counts from 0), and the machine's.
cat > "$work/cpu.py" <<'PY'
import json, os
def between(before_path, after_path):
    hz = os.sysconf("SC_CLK_TCK")
    before, after = json.load(open(before_path)), json.load(open(after_path))
    cpu = {g: 0.0 for g in ("api", "pg_backends", "pg_walwriter", "pg_other", "redis", "collector", "haproxy")}
    for pid, (group, ticks) in after["procs"].items():
        prev = before["procs"].get(pid)
        base = prev[1] if prev and prev[0] == group and prev[1] <= ticks else 0  # new process: all of it
        cpu[group] += (ticks - base) / hz
    for key in ("busy", "idle", "steal"):
        cpu[key] = (after[key] - before[key]) / hz
    cpu["window"] = after["t"] - before["t"]
    return cpu
PY

# record.py label kind target instances connections: one JSON line from the
# files a measured run leaves in $work.
cat > "$work/record.py" <<'PY'
import json, os, re, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu import between
label, kind, target, instances, conns, d = sys.argv[1:]
def path(name):
    return os.path.join(d, name)
cpu = between(path("cpu.before"), path("cpu.after"))
# wrk's own CPU: `times` in its subshell (children's user and system time).
spent = re.findall(r"(\d+)m([\d.]+)s", open(path("wrk.times")).read().splitlines()[1])
cpu["wrk"] = sum(int(m) * 60 + float(s) for m, s in spent)
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

# storm.py host port emails: every email logs in at once (connections opened
# first, then one signal), each retrying a 503 after its Retry-After; prints
# one JSON object.
cat > "$work/storm.py" <<'PY'
import http.client, json, math, sys, threading, time
host, port, emails_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
emails = [l.strip() for l in open(emails_path) if l.strip()]
threading.stack_size(256 * 1024)
ready, go = threading.Barrier(len(emails) + 1), threading.Event()
start = [0.0]
results = [None] * len(emails)
GIVE_UP_SECS = 300

def login(i, email):
    body = json.dumps({"email": email, "password": "correct horse battery staple"})
    conn = http.client.HTTPConnection(host, port, timeout=GIVE_UP_SECS)
    try:
        conn.connect()
    except OSError:
        pass  # request() connects again
    ready.wait()
    go.wait()
    attempts, shed, errors = 0, 0, {}
    while True:
        attempts += 1
        sent = time.monotonic()
        try:
            conn.request("POST", "/auth/login", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            status, retry_after = response.status, response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            status, retry_after = type(e).__name__, None
        now = time.monotonic()
        if status == 200:
            results[i] = {"ok": True, "attempts": attempts, "shed": shed, "errors": errors,
                          "sinceLoss": now - start[0], "last": now - sent}
            return
        if status == 503:
            shed += 1
        else:
            errors[str(status)] = errors.get(str(status), 0) + 1
        if sum(errors.values()) >= 10 or now - start[0] > GIVE_UP_SECS:
            results[i] = {"ok": False, "attempts": attempts, "shed": shed, "errors": errors}
            return
        time.sleep(float(retry_after) if retry_after and retry_after.isdigit() else 1.0)

threads = [threading.Thread(target=login, args=(i, e), daemon=True) for i, e in enumerate(emails)]
for t in threads:
    t.start()
ready.wait()
start[0] = time.monotonic()
go.set()
for t in threads:
    t.join()
ok = [r for r in results if r and r["ok"]]
def pct(values, p):  # nearest rank, in ms
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v), max(1, math.ceil(p / 100 * len(v)))) - 1] * 1000
def summary(values):
    return {"p50Ms": pct(values, 50), "p99Ms": pct(values, 99), "maxMs": max(values) * 1000 if values else None}
seconds = max((r["sinceLoss"] for r in ok), default=0.0)
errors = {}
for r in results:
    for k, v in (r or {}).get("errors", {}).items():
        errors[k] = errors.get(k, 0) + v
print(json.dumps({"users": len(emails), "ok": len(ok), "failed": len(emails) - len(ok), "seconds": seconds,
                  "perSecond": len(ok) / seconds if seconds else None,
                  "attempts": sum(r["attempts"] for r in results if r), "shed": sum(r["shed"] for r in results if r),
                  "errors": errors, "sinceLoss": summary([r["sinceLoss"] for r in ok]),
                  "lastRequest": summary([r["last"] for r in ok])}))
PY

# Instances drain for SHUTDOWN_DRAIN_SECS before they stop; nothing routes to
# them at the end, so the wait is skipped.
mapfile -t first_env < <(instance_env 1)
bench_start_server coffee_bench_capacity "$PORT" "${first_env[@]}"
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
bench_psql -c "CREATE EXTENSION IF NOT EXISTS pgstattuple"

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
# storage file: every table of the benchmark database, as JSON: "files" (its
# heap, TOAST and index files, main forks), "indexes", "rows" (live), and
# "used" (heap and TOAST bytes that are neither free nor dead, by pgstattuple).
storage() {
  bench_psql -Atc "SELECT json_object_agg(c.relname, json_build_object(
      'files', h.table_len + t.table_len * x.has_toast + x.idx, 'indexes', x.idx, 'rows', h.tuple_count,
      'used', h.table_len - h.free_space - h.dead_tuple_len
              + (t.table_len - t.free_space - t.dead_tuple_len) * x.has_toast))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL (SELECT (c.reltoastrelid <> 0)::int AS has_toast,
      (SELECT coalesce(sum(pg_relation_size(i.indexrelid, 'main')), 0) FROM pg_index i WHERE i.indrelid = c.oid) AS idx) x
    CROSS JOIN LATERAL pgstattuple(c.oid) h
    CROSS JOIN LATERAL pgstattuple(CASE WHEN c.reltoastrelid <> 0 THEN c.reltoastrelid ELSE c.oid END) t
    WHERE n.nspname = 'public' AND c.relkind = 'r'" > "$1"
}
# run_wrk target url connections seconds: wrk (load.lua) and its CPU (`times`).
run_wrk() {
  BENCH_RUN="$1-$3-$(date +%s%N)"
  ( BENCH_TARGET=$1 wrk -t 2 -c "$3" -d "${4}s" --timeout 30s -s bench/wrk/load.lua "$2" > "$work/wrk.out"; times > "$work/wrk.times" )
}
# measure label kind target url connections instances: one recorded run.
measure() {
  local label=$1 kind=$2 target=$3 url=$4 c=$5 n=$6 lsn
  rm -f "$work/waldump"
  pg_state > "$work/pg.before"
  lsn=$(cut -d'|' -f1 "$work/pg.before")
  snapshot "$work/cpu.before"
  run_wrk "$target" "$url" "$c" "$SECS"
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
bench_psql -c "DROP TABLE capacity_commit"
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

# a. One endpoint at a time against the instance itself. For the writes: a
# VACUUM (autovacuum is off on the development server; in production it
# runs) and a checkpoint before the warm-up, so the full-page images it forces
# land in the warm-up and the measured WAL is that of a steady state between
# checkpoints; the tables' storage before the run, after it, and after a
# VACUUM that leaves only live rows.
for target in menus orders charge popular login; do
  write=""
  case $target in orders | charge) write=1 ;; esac
  [ -z "$write" ] || { bench_psql -c VACUUM; bench_psql -c CHECKPOINT; }
  run_wrk "$target" "$base" 16 2
  drain_outbox
  [ -z "$write" ] || storage "$work/storage.$target.before"
  measure "$target" endpoint "$target" "$base" 16 1
  if [ -n "$write" ]; then
    storage "$work/storage.$target.written"
    bench_psql -c VACUUM
    storage "$work/storage.$target.vacuumed"
  fi
done

# b. Through HAProxy, with 1, 2 and 3 instances.
start_balancer() { # ports of the instances
  local servers="" i=0 port
  for port in "$@"; do
    i=$((i + 1))
    servers+="    server api$i 127.0.0.1:$port check${admin:+ port $((ADMIN_PORT + i - 1))}\n"
  done
  sed "s#^    server-template api .*#${servers%\\n}#" docker/haproxy.cfg > "$work/haproxy.cfg"
  LB_BIND=127.0.0.1:$LB_PORT haproxy -q -f "$work/haproxy.cfg" >> "$work/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$LB_PORT/menus" >/dev/null && break; sleep 0.1; done
  sleep 1.5 # two good health checks 500 ms apart for every server
}
ports=("$PORT")
lb="http://127.0.0.1:$LB_PORT"
for n in 1 2 3; do
  if [ "$n" -gt 1 ]; then
    port=$((PORT + n - 1))
    mapfile -t extra_env < <(instance_env "$n")
    env BIND_ADDR="127.0.0.1:$port" "${extra_env[@]}" target/release/coffee serve &
    API_PIDS+=" $!"
    EXTRA_PIDS+=" $!"
    ports+=("$port")
    bench_wait_ready "$port"
  fi
  start_balancer "${ports[@]}"
  run_wrk mix "$lb" 64 3
  measure mixed lb mix "$lb" 64 "$n"
  measure menus lb menus "$lb" 64 "$n"
  measure orders lb orders "$lb" 64 "$n"
  kill "$HAPROXY_PID"
  wait "$HAPROXY_PID" 2>/dev/null || true
  HAPROXY_PID=""
done
# One instance again for what follows.
for pid in $EXTRA_PIDS; do kill "$pid" 2>/dev/null || true; done
for pid in $EXTRA_PIDS; do wait "$pid" 2>/dev/null || true; done
EXTRA_PIDS=""
API_PIDS=$BENCH_SERVER

# d. The re-login storm after a Redis loss. The storm's users share the
# password hash of a prepared user (same password, argon2id with its own
# salt), so creating them costs no hashing.
echo "bench: re-login storm: $STORM_USERS users after a Redis loss"
first_email=$(head -n 1 "$work/users" | cut -d' ' -f3)
bench_psql -Atc "INSERT INTO users (id, email, password_hash, name)
  SELECT gen_random_uuid(), 'storm-' || g || '@capacity.example',
         (SELECT password_hash FROM users WHERE email = '$first_email'), 'Storm'
  FROM generate_series(1, $STORM_USERS) AS g RETURNING email" | grep '@' > "$work/storm.emails"
redis_used() { redis-cli info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}'; }
redis-cli --scan --pattern "${REDIS_KEY_PREFIX}*" | xargs -r redis-cli del >/dev/null # the loss
sleep 1
redis_before=$(redis_used)
snapshot "$work/storm.cpu.before"
python3 "$work/storm.py" 127.0.0.1 "$PORT" "$work/storm.emails" > "$work/storm.json"
snapshot "$work/storm.cpu.after"
redis_after=$(redis_used)
redis-cli --scan --pattern "${REDIS_KEY_PREFIX}*" > "$work/redis.keys"
# MEMORY USAGE of up to 100 session keys: the key, its value and Redis's own
# bookkeeping for them, without the main table's share.
grep -F "${REDIS_KEY_PREFIX}session:" "$work/redis.keys" | head -n 100 \
  | while read -r key; do redis-cli memory usage "$key" SAMPLES 0; done > "$work/redis.usage"
cat > "$work/redis.json" <<JSON
{"before": $redis_before, "after": $redis_after, "prefix": "$REDIS_KEY_PREFIX"}
JSON
cat "$work/storm.json"

# e. The relay's delivery rate against the collector's latency.
bench_psql -v users=$USERS -f bench/pgbench/setup.sql >/dev/null
stop_instance() {
  kill "$BENCH_SERVER" 2>/dev/null || true
  wait "$BENCH_SERVER" 2>/dev/null || true
}
start_collector() { # latency in ms; replaces the collector at COLLECTOR_URL
  kill "$BENCH_COLLECTOR" 2>/dev/null || true
  wait "$BENCH_COLLECTOR" 2>/dev/null || true
  MOCK_COLLECTOR_ADDR=127.0.0.1:$((PORT + 1000)) MOCK_COLLECTOR_LATENCY_MS=$1 RUST_LOG=warn target/release/mock-collector &
  BENCH_COLLECTOR=$!
  for _ in $(seq 1 100); do curl -sf "$COLLECTOR_URL/health" >/dev/null && return 0; sleep 0.1; done
  echo "bench: the mock collector did not start" >&2
  return 1
}
for latency in $RELAY_LATENCIES; do
  echo "bench: relay drain of $RELAY_EVENTS events, collector latency $latency ms"
  stop_instance
  start_collector "$latency"
  marker=$(bench_psql -Atc "SELECT clock_timestamp()")
  bench_psql -Atc "SELECT count(bench_place_order(bench_user(1 + g % $USERS), 'relay-$latency-$(date +%s%N)-' || g,
    sha256('orders.place Americano x1'::bytea), bench_menu(1), 1, 5000)) FROM generate_series(1, $RELAY_EVENTS) AS g" >/dev/null
  started=$(date +%s.%N)
  env "${first_env[@]}" OUTBOX_BATCH_SIZE=$RELAY_BATCH target/release/coffee serve &
  BENCH_SERVER=$!
  API_PIDS=$BENCH_SERVER
  for _ in $(seq 1 1500); do # at most 5 minutes
    [ "$(bench_psql -Atc "SELECT count(*) FROM outbox_events WHERE status = 'PENDING' AND created_at >= '$marker'")" = 0 ] && break
    sleep 0.2
  done
  wall=$(python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.3f}")' "$started")
  bench_psql -Atc "SELECT json_build_object('latencyMs', $latency, 'batch', $RELAY_BATCH, 'wallSecs', $wall,
      'events', count(*), 'delivered', count(*) FILTER (WHERE status = 'DELIVERED'),
      'pending', count(*) FILTER (WHERE status = 'PENDING'), 'attempts', coalesce(sum(attempts), 0),
      'spanSecs', extract(epoch FROM max(delivered_at) - min(delivered_at)))
    FROM outbox_events WHERE created_at >= '$marker'" | tee -a "$work/relay"
done

cat > "$work/facts.json" <<JSON
{"when": "$(date -u '+%Y-%m-%d %H:%M') UTC", "machine": "$(bench_machine)", "cores": $(nproc), "seconds": $SECS,
 "users": $USERS, "mix": "$BENCH_MIX", "adminChecks": ${admin:-0}, "stormUsers": $STORM_USERS,
 "relayEvents": $RELAY_EVENTS, "relayBatch": $RELAY_BATCH,
 "commitMs": {"durable": ${durable_ms:-null}, "async": ${async_ms:-null}}, "idle": $idle, "settings": $settings}
JSON

results=$(mktemp)
capacity=$(mktemp)
cat > "$work/report.py" <<'PY'
import collections, json, math, os, sys
work, results_path, capacity_path = sys.argv[1:4]
sys.path.insert(0, work)
from cpu import between

def path(name):
    return os.path.join(work, name)
runs = [json.loads(l) for l in open(path("runs"))]
facts = json.load(open(path("facts.json")))
cores, secs, settings = facts["cores"], facts["seconds"], facts["settings"]
ep = {r["target"]: r for r in runs if r["kind"] == "endpoint"}
lb = {(r["target"], r["instances"]): r for r in runs if r["kind"] == "lb"}
NAMES = {"menus": "`GET /menus`", "popular": "`GET /menus/popular`", "orders": "`POST /orders`",
         "charge": "`POST /users/{id}/points/charge`", "login": "`POST /auth/login`", "mix": "mix"}
cycle = facts["mix"].split(",")
MIX = {e: cycle.count(e) / len(cycle) for e in ("menus", "popular", "orders", "charge")}
mix_words = (f"{MIX['menus'] * 100:.0f} % `GET /menus`, {MIX['popular'] * 100:.0f} % popular, "
             f"{MIX['orders'] * 100:.0f} % orders, {MIX['charge'] * 100:.0f} % charges")
POOL = 16 + 2  # DATABASE_POOL_SIZE + DATABASE_BACKGROUND_POOL_SIZE defaults: connections per instance

def pg(c):  # PostgreSQL's CPU seconds in a run's CPU split
    return c["pg_backends"] + c["pg_walwriter"] + c["pg_other"]
def count(r):  # what a run's figures are per: the effects in the database for writes
    return {"orders": r["pg"]["orders"], "charge": r["pg"]["charges"]}.get(r["target"], r["wrk"]["requests"])
def per1000(r, seconds):
    return seconds / count(r) * 1000
A = {e: per1000(r, r["cpu"]["api"]) for e, r in ep.items()}
P = {e: per1000(r, pg(r["cpu"])) for e, r in ep.items()}
W = {e: ep[e]["pg"]["walBytes"] / count(ep[e]) for e in ("orders", "charge")}
when = facts["when"]
s = settings

def num(v):  # three significant digits, however small
    if v is None or v != v:
        return "-"
    if v <= 0:
        return "0"
    return f"{v:,.0f}" if v >= 100 else f"{v:.{max(0, 2 - math.floor(math.log10(v)))}f}"
def b(v):  # bytes, whole, without a "-0"
    return f"{v:,.0f}" if round(v) != 0 else "0"
def ms(v):
    return "-" if v is None else f"{v:,.0f}" if v >= 1000 else f"{v:.1f}"

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
def rmgr_each(e, name):
    v = ep[e]["wal"].get(name)
    return v[3] / count(ep[e]) if v else 0.0
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

# --- storage per order and per charge
TABLES = ["orders", "order_items", "point_transactions", "outbox_events", "idempotency_keys", "menu_sales_hourly", "users"]
KEPT = {"orders", "order_items", "point_transactions"}  # the business record: never purged
RETAINED = {"idempotency_keys", "outbox_events"}         # purged after their retention
def storage(target):
    before, written, vacuumed = (json.load(open(path(f"storage.{target}.{state}")))
                                 for state in ("before", "written", "vacuumed"))
    n = count(ep[target])
    zero = {"files": 0, "indexes": 0, "rows": 0, "used": 0}
    out = {}
    for t in TABLES + sorted(t for t in vacuumed if t not in TABLES):
        if t not in vacuumed:
            continue
        b, w, v = before.get(t, zero), written.get(t, zero), vacuumed[t]
        d = {"rows": (v["rows"] - b["rows"]) / n, "growth": (w["files"] - b["files"]) / n,
             "live": (v["used"] - b["used"]) / n, "indexes": (v["indexes"] - b["indexes"]) / n}
        d["kept"] = d["live"] + d["indexes"]
        if any(abs(x) >= 0.5 for x in d.values()):  # what the writes touch
            out[t] = d
    return n, out
def storage_table(target, unit):
    n, rows = storage(target)
    lines = [f"| table | rows per {unit} | files' growth during the run | after `VACUUM`: live heap + TOAST | indexes | stays (live + indexes) |",
             "|---|---:|---:|---:|---:|---:|"]
    total = collections.Counter()
    for t, d in rows.items():
        total.update(d)
        lines.append(f"| `{t}` | {d['rows']:.2f} | {b(d['growth'])} | {b(d['live'])} | {b(d['indexes'])} | **{b(d['kept'])}** |")
    lines.append(f"| all | | {b(total['growth'])} | {b(total['live'])} | {b(total['indexes'])} | **{b(total['kept'])}** |")
    return n, rows, "\n".join(lines)
n_orders_stored, order_storage, order_storage_table = storage_table("orders", "order")
n_charges_stored, charge_storage, charge_storage_table = storage_table("charge", "charge")
def stays(rows, tables):
    return sum(d["kept"] for t, d in rows.items() if t in tables)
kept_order = stays(order_storage, KEPT)
retained_order = {t: order_storage[t]["kept"] for t in RETAINED if t in order_storage}
kept_charge = stays(charge_storage, KEPT)
retained_charge = {t: charge_storage[t]["kept"] for t in RETAINED if t in charge_storage}
GB = 1e9
storage_text = f"""Bytes per order ({n_orders_stored:,} orders of one item) and per charge ({n_charges_stored:,} charges), table by
table: the growth of the heap, TOAST and index files during the run (dead row versions included:
autovacuum is off), then, after a plain `VACUUM`, the live heap and TOAST bytes (`pgstattuple`: neither free
nor dead) and the indexes' growth, which is what stays once vacuum lets the dead versions' space be reused.

{order_storage_table}

{charge_storage_table}

Per 1,000,000 orders, **{kept_order * 1e6 / GB:.2f} GB** stay for good in `orders`, `order_items` and
`point_transactions` (the business record), and {', '.join(f'`{t}` {v * 1e6 / GB:.2f} GB' for t, v in sorted(retained_order.items()))}
for as long as their rows are kept; per 1,000,000 charges, {kept_charge * 1e6 / GB:.2f} GB for good and
{', '.join(f'`{t}` {v * 1e6 / GB:.2f} GB' for t, v in sorted(retained_charge.items())) or 'nothing'} within their retention."""

# --- Redis memory per session
redis = json.load(open(path("redis.json")))
prefix = redis["prefix"]
keys = [l.strip() for l in open(path("redis.keys")) if l.strip()]
kinds = collections.Counter(k[len(prefix):].split(":")[0] for k in keys)
sessions = kinds.get("session", 0)
usage = [int(l) for l in open(path("redis.usage")) if l.strip().isdigit()]
per_session = (redis["after"] - redis["before"]) / sessions if sessions else float("nan")
redis_text = (f"After the re-login storm, the instance's prefix held {len(keys):,} keys for {sessions:,} sessions "
              f"({', '.join(f'`{k}:*` {v:,}' for k, v in kinds.most_common())}): "
              f"**{len(keys) / sessions:.2f} keys per session**. `used_memory` grew by "
              f"{redis['after'] - redis['before']:,} bytes: **{per_session:,.0f} bytes per session** "
              f"(`MEMORY USAGE` of a session key: {sum(usage) / len(usage):,.0f} bytes on average over {len(usage)}; the rest is "
              f"Redis's key table and expiry entries). A million sessions take "
              f"**{per_session * 1e6 / 2**20:,.0f} MiB**." if sessions else "No session was found after the storm.")

# --- the re-login storm
storm = json.load(open(path("storm.json")))
storm_cpu = between(path("storm.cpu.before"), path("storm.cpu.after"))
ok = storm["ok"]
storm_api = storm_cpu["api"] / ok * 1000 if ok else float("nan")
storm_pg = pg(storm_cpu) / ok * 1000 if ok else float("nan")
storm_cores = storm_cpu["api"] / storm["seconds"] if storm["seconds"] else float("nan")
rate = storm["perSecond"] or float("nan")
errors = ", ".join(f"{v} × {k}" for k, v in storm["errors"].items()) or "none"
storm_text = f"""Every key of the instance's Redis prefix deleted at once (sessions, revoked tokens, throttles), then
{storm['users']:,} users log in again at the same moment against one instance (connections opened first), each
retrying a `503` after its `Retry-After`, as a well-behaved client does; they all share one password hash
(argon2id, the service's parameters), so each login costs one full verification. The instance runs the
defaults: `PASSWORD_HASH_CONCURRENCY` = cores - 1 = {max(cores - 1, 1)} hash at a time here, and a queue of
`PASSWORD_HASH_QUEUE_MAX` = 128 waiting logins beyond which a login is answered `503` at once.

| users | back | after | logins/s | answers `503` | attempts per user | other errors | from the loss to `200`: p50 | p99 | max | the `200` request itself: p99 | API cores | API CPU ms per login | PostgreSQL CPU ms per login |
|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|
| {storm['users']:,} | {ok:,} | {storm['seconds']:.1f} s | **{rate:.1f}** | {storm['shed']:,} | {storm['attempts'] / storm['users']:.1f} | {errors} | {ms(storm['sinceLoss']['p50Ms'])} ms | **{ms(storm['sinceLoss']['p99Ms'])} ms** | {ms(storm['sinceLoss']['maxMs'])} ms | {ms(storm['lastRequest']['p99Ms'])} ms | {storm_cores:.2f} | {storm_api:.1f} | {storm_pg:.2f} |"""
storm_model = (f"One instance of this machine brings sessions back at {rate:.1f} logins/s, so S lost sessions take about "
               f"S / ({rate:.1f} × instances) seconds: 100,000 sessions with 10 such instances "
               f"**{100000 / (10 * rate) / 60:.1f} minutes**, a million **{1000000 / (10 * rate) / 60:.0f} minutes**. "
               f"Each login costs the API {storm_api:.1f} CPU ms (the argon2id verification; {A['login']:.1f} ms in the "
               f"steady login run above) and PostgreSQL {storm_pg:.2f} ms, counting the shed attempts' lookups.")

# --- the relay
relay = [json.loads(l) for l in open(path("relay"))]
def relay_rate(r):
    b = r["batch"]
    if r["spanSecs"] and r["delivered"] > 2 * b:
        return (r["delivered"] - b) / r["spanSecs"]  # from the first batch's end to the last's
    return r["delivered"] / r["wallSecs"] if r["wallSecs"] else float("nan")
batch = facts["relayBatch"]
base_rate = next((relay_rate(r) for r in relay if r["latencyMs"] == 0), None)
overhead_ms = batch / base_rate * 1000 if base_rate else 0.0
relay_rows = ["| collector latency | events | delivered | first to last delivery | events/s | model B / (L + overhead) | ceiling B / L | start to empty |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
for r in relay:
    L = r["latencyMs"]
    model = batch / (L + overhead_ms) * 1000 if L + overhead_ms > 0 else float("nan")
    ceiling = f"{batch / L * 1000:,.0f}" if L else "-"
    relay_rows.append(f"| {L} ms | {r['events']:,} | {r['delivered']:,} | {(r['spanSecs'] or 0):.2f} s | **{relay_rate(r):,.0f}** "
                      f"| {model:,.0f} | {ceiling} | {r['wallSecs']:.1f} s |")
relay_table = "\n".join(relay_rows)
slowest = max(relay, key=lambda r: r["latencyMs"])
slow_rate = relay_rate(slowest)
orders_70 = {k: 0.7 * k * 1000 / P["orders"] for k in (2, 8, 32, 64)}
relay_text = f"""A backlog of {facts['relayEvents']:,} order events (written while the instance was stopped), then the instance
started against a mock collector answering every event after the given latency; `OUTBOX_BATCH_SIZE={batch}`.
The relay sends a batch's events concurrently and claims the next batch once every event of this one is
recorded (one `UPDATE` each, on the background pool), so a batch lasts its slowest delivery plus the
relay's own work: at 0 ms that is {overhead_ms:.0f} ms per batch of {batch}. "Events/s" counts from the end of the
first batch to the last delivery (`delivered_at`).

{relay_table}

At {slowest['latencyMs']} ms one instance's relay delivers {slow_rate:,.0f} events/s. To keep up with the orders a
PostgreSQL of K cores takes at 70 % (orders alone, above), this many instances must relay:
{', '.join(f'K = {k} ({v:,.0f} orders/s): **{math.ceil(v / slow_rate)}**' for k, v in orders_70.items())}.
Or the batch grows (`OUTBOX_BATCH_SIZE`): a batch still lasts about one collector round trip, so the rate grows
with it until the relay's own work per event, the rate at 0 ms, bounds it."""

# --- through HAProxy
def split(r):
    c = r["cpu"]
    total = c["busy"] + c["idle"] + c["steal"]
    known = c["api"] + pg(c) + c["redis"] + c["haproxy"] + c["collector"] + c["wrk"]
    w = c["window"]
    return [c["api"] / w, c["pg_backends"] / w, (c["pg_walwriter"] + c["pg_other"]) / w, c["redis"] / w,
            c["haproxy"] / w, c["collector"] / w, c["wrk"] / w, max(c["busy"] - known, 0) / w,
            c["steal"] / w, c["idle"] / w], total / w
lb_rows = [f"| load | instances | req/s | orders/s | non-2xx | p50 ms | p99 ms | API | PG backends | PG background | Redis | HAProxy | collector | wrk | kernel, rest | steal | idle |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for load in ("mix", "menus", "orders"):
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
scaling = "; ".join(f"{NAMES[l]}: {ratio(l, 2):.2f} and {ratio(l, 3):.2f}" for l in ("mix", "menus", "orders"))
m1 = lb[("mix", 1)]
m1parts, m1total = split(m1)
busy1 = 1 - m1parts[-1] / m1total
m3 = lb[("mix", 3)]
m3parts, m3total = split(m3)

commit = facts["commitMs"]
checks = "on each instance's admin port (`ADMIN_BIND_ADDR`)" if facts["adminChecks"] else "on each instance's port"
common = f"""Measured {when} on {facts['machine']}; PostgreSQL with `synchronous_commit={s['synchronous_commit']}`,
`full_page_writes={s['full_page_writes']}`, `wal_compression={s['wal_compression']}`, `checkpoint_timeout={s['checkpoint_timeout']}`,
`shared_buffers={s['shared_buffers']}`, `autovacuum={s['autovacuum']}`. Release builds with their default settings
(2 HTTP workers, a pool of 16 connections plus 2 for the relay and housekeeping), delivering order events to a
release `mock-collector`; {facts['users']} funded users, a fresh `Idempotency-Key` per money request, all load from
`wrk` with `bench/wrk/load.lua`. Command: `bash bench/capacity.bench.sh`."""

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

A `VACUUM` and a `CHECKPOINT` run before each write's 2 s warm-up: the full-page images of the pages the
load keeps touching (users' rows, the right edges of the indexes) are written in the warm-up, and the
figure is that of a steady state between checkpoints.

Commit latency of this disk (pgbench, one client, one-row insert transactions): **{commit['durable']} ms**
durable, {commit['async']} ms with `synchronous_commit = off`.

### Storage per order and per charge (the same runs)

{storage_text}

### Through HAProxy: 1, 2 and 3 instances on these {cores} cores (wrk, 64 connections, {secs} s)

`docker/haproxy.cfg` with its `server-template` line replaced by the instances (as `make cluster`
does), health checks {checks}. Mix (`BENCH_TARGET=mix`): of every 20 requests 14 `GET /menus`,
2 `GET /menus/popular`, 3 `POST /orders` and 1 charge. CPU columns are cores (CPU seconds per second of
the run, out of {cores}); "kernel, rest" is the machine's busy time that no listed process was charged
with (softirq network work, the sampler, anything else running).

{lb_table}

Throughput with 2 and 3 instances relative to 1: {scaling}.

### Re-login storm after a Redis loss (one instance)

{storm_text}

The clients are Python threads on the same {cores} cores. {storm_model}

### Redis memory per session

{redis_text}

### The outbox relay against the collector's latency (one instance)

{relay_text}"""

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
mixed_measured_pg = per1000(m1, pg(m1["cpu"]))
max_conn = int(s["max_connections"]) - int(s["superuser_reserved_connections"])
share = {e: MIX[e] * P[e] / P_mix for e in MIX}

gain = ratio("mix", 3)
verdict = (": instances added on the cores that already run everything else gain nothing, they take CPU from"
           " PostgreSQL, HAProxy and wrk." if gain < 1.15 else f": a gain of {(gain - 1) * 100:.0f} %, from cores"
           " that were idle with one instance.")
durable = commit["durable"]
flush = (f"A durable commit waits for its WAL flush, {durable} ms on this disk: one connection alone commits at most"
         f" {1000 / durable:,.0f} times a second, and concurrent commits share flushes (group commit), so at the"
         " concurrency of a busy service the flush bounds latency more than throughput." if durable else "")
ap_orders, ap_charge = A["orders"] / P["orders"], A["charge"] / P["charge"]
writes_say = (f"For orders A / P = {ap_orders:.2f} and for charges {ap_charge:.2f}: "
              + ("most of a write's CPU is spent in PostgreSQL, not in the API, so the database is what a write-heavy"
                 " load runs out of first." if max(ap_orders, ap_charge) < 1 else
                 "a write costs the API at least as much CPU as PostgreSQL, so API instances run out before the database"
                 " does unless they have more cores than it.")
              + (f" `MultiXact` records are still in the WAL ({rmgr_each('orders', 'MultiXact'):,.0f} bytes per order,"
                 f" {rmgr_each('charge', 'MultiXact'):,.0f} per charge): see the plan below."
                 if rmgr_each("orders", "MultiXact") >= 1 or rmgr_each("charge", "MultiXact") >= 1 else
                 " No `MultiXact` records are left in the WAL of either."))

capacity = f"""{common}

Raw figures and the runs through HAProxy: `bench/RESULTS.md`, "Capacity (issue 13)".

#### Inputs (CPU seconds per 1,000 requests, one instance, wrk with 16 connections)

{endpoint_table}

{wal_table}

{writes_say}

Commit latency of this disk: {commit['durable']} ms durable, {commit['async']} ms with `synchronous_commit = off`.
{flush}

#### Orders alone

An order costs PostgreSQL P = {P['orders']:.3f} CPU s per 1,000 and the API A = {A['orders']:.3f}, so one
PostgreSQL core takes 1000 / P = **{1000 / P['orders']:,.0f} orders/s**, it takes A / P =
**{ap_orders:.2f} API cores per PostgreSQL core** to keep it busy, and each order writes
{W['orders']:,.0f} bytes of WAL.

{model_rows(A['orders'], P['orders'], W['orders'], 'orders')}

#### The mix ({mix_words})

Weighted: A = {A_mix:.3f} and P = {P_mix:.3f} CPU s per 1,000 requests, {W_mix:,.0f} WAL bytes per request.
Of PostgreSQL's share, orders take {share['orders'] * 100:.0f} %, charges {share['charge'] * 100:.0f} %,
popular {share['popular'] * 100:.0f} % and `GET /menus` {share['menus'] * 100:.0f} %. Measured through HAProxy with one
instance the mix cost A = {mixed_measured_api:.3f} and P = {mixed_measured_pg:.3f} CPU s per 1,000 requests
(64 connections instead of 16, and a balancer in between).

{model_rows(A_mix, P_mix, W_mix, 'requests')}

#### Storage

{storage_text}

#### Redis

{redis_text} Redis's CPU per 1,000 requests is the Redis column of the inputs.

#### Re-login storm after a Redis loss

{storm_text}

{storm_model}

#### The outbox relay

{relay_text}

#### Connections

Each instance holds up to {POOL} connections (a pool of 16 plus 2): `max_connections` {s['max_connections']} less
{s['superuser_reserved_connections']} reserved admits **{max_conn // POOL} instances** before any pooler.

#### This machine

All of it shares {cores} cores: wrk, HAProxy, the instances, Redis and PostgreSQL. With one instance
behind HAProxy the mix kept the machine {busy1 * 100:.0f} % busy at {m1['wrk']['perSecond']:,.0f} req/s:
API {m1parts[0]:.2f} cores, PostgreSQL {m1parts[1] + m1parts[2]:.2f}, HAProxy {m1parts[4]:.2f}, wrk {m1parts[6]:.2f},
Redis {m1parts[3]:.2f}, kernel and the rest {m1parts[7]:.2f}, idle {m1parts[9]:.2f}. Three instances gave
{ratio('mix', 3):.2f} times that ({m3['wrk']['perSecond']:,.0f} req/s, idle {m3parts[9]:.2f} cores){verdict}
Relative to one instance, 2 and 3 instances gave {scaling}."""

open(results_path, "w").write(results)
open(capacity_path, "w").write(capacity)
PY
python3 "$work/report.py" "$work" "$results" "$capacity"
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
