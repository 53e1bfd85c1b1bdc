#!/usr/bin/env bash
# Issue 25's instruction counts: what one request costs the API process, in
# instructions (valgrind's callgrind, which counts the same for the same
# binary and inputs whatever else the machine does; `perf stat` cannot count
# instructions on every machine this runs on), split by layer.
#
#  - `GET /menus` of the release `coffee serve` and of the bare actix-web
#    handler serving the same bytes (menus_baseline);
#  - `POST /orders` and `POST /users/{id}/points/charge` of the service.
#
# The instance runs with its relay off (OUTBOX_RELAY_ENABLED=false) and its
# gauges sampled once an hour, so nothing but the requests runs while counts
# are collected. Each kind is warmed up (WARM requests), the counters zeroed
# (callgrind_control -z), COUNT requests sent one after another on one
# keep-alive connection, and the counters dumped (callgrind_control -d).
# Counts are user-space instructions of the API process only: the kernel's
# TCP work, PostgreSQL's and Redis's are not in them.
#
# Writes the section "Instructions per request (issue 25)" of bench/RESULTS.md;
# INSTR_LABEL names the column (default "now"), and the section keeps the
# columns of earlier runs under other labels, so a before/after pair stays
# side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh ensure >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
command -v valgrind >/dev/null || scripts/apt-install.sh bench valgrind

cargo build --release -q --bin coffee -p coffee-bootstrap --bin mock-collector -p coffee-mock-collector
cargo build --release -q -p coffee-bench --bin prepare_users --bin menus_baseline
COUNT=${INSTR_REQUESTS:-2000}
WRITES=${INSTR_WRITES:-300}
WARM=${INSTR_WARM:-200}
LABEL=${INSTR_LABEL:-now}
work=$(mktemp -d)
export OUTBOX_RELAY_ENABLED=false METRICS_SAMPLE_INTERVAL_MS=3600000

# A native instance creates the user (an argon2 hash under valgrind takes
# seconds) and saves the menu bytes; the counted instance then serves the
# same database and Redis prefix.
bench_start_server coffee_bench_instr 18300
base="http://127.0.0.1:$BENCH_PORT"
BASE_URL=$base USERS=1 FUND=50000000 target/release/prepare_users > "$work/users"
read -r user token _ < "$work/users"
menu=$(curl -sf "$base/menus" | python3 -c 'import json,sys; print(next(m["id"] for m in json.load(sys.stdin) if m["name"] == "Americano"))')
curl -sf "$base/menus" -o "$work/menus.json"
kill "$BENCH_SERVER"
wait "$BENCH_SERVER" 2>/dev/null || true

# counted name pid port kind...: for each kind, warm up, zero, drive, dump;
# the layers of each dump go to $work/<name>-<kind>.json.
counted() {
  local name=$1 pid=$2 port=$3 kind n dumps
  shift 3
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/menus" >/dev/null && break; sleep 0.2; done
  for kind in "$@"; do
    n=$COUNT
    [ "$kind" = menus ] || n=$WRITES
    python3 bench/instructions.py drive 127.0.0.1 "$port" "$kind" "$WARM" "$user" "$token" "$menu"
    callgrind_control -z "$pid" >/dev/null
    python3 bench/instructions.py drive 127.0.0.1 "$port" "$kind" "$n" "$user" "$token" "$menu"
    callgrind_control -d "$pid" >/dev/null
    # callgrind_control returns once the dump is asked for; wait until it is written.
    for _ in $(seq 1 100); do
      dumps=$(find "$work" -name "cg-$name.out.*" -newer "$work/users" | wc -l)
      [ "$dumps" -ge 1 ] && break
      sleep 0.2
    done
    local dump
    dump=$(ls -t "$work"/cg-"$name".out.* | head -n 1)
    python3 bench/instructions.py layers "$dump" "$n" > "$work/$name-$kind.json"
    mv "$dump" "$work/done-$(basename "$dump")"
    echo "bench: $name $kind: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["total"] / d["requests"]), "instructions per request")' "$work/$name-$kind.json")"
  done
}

valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$work/cg-service.out.%p" target/release/coffee serve \
  2> "$work/service.valgrind.log" &
BENCH_SERVER=$!
counted service "$BENCH_SERVER" "$BENCH_PORT" menus orders charge
kill "$BENCH_SERVER"
wait "$BENCH_SERVER" 2>/dev/null || true

BODY_FILE=$work/menus.json BIND_ADDR=127.0.0.1:18400 HTTP_WORKERS=2 \
  valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$work/cg-bare.out.%p" target/release/menus_baseline \
  2> "$work/bare.valgrind.log" &
bare=$!
counted bare "$bare" 18400 menus
kill "$bare"
wait "$bare" 2>/dev/null || true

out=$(mktemp)
python3 - "$work" "$LABEL" "$(bench_machine)" "$COUNT" "$WRITES" "$WARM" > "$out" <<'PY'
import datetime, json, os, re, sys
work, label, machine, count, writes, warm = sys.argv[1:7]
runs = {(name, kind): json.load(open(os.path.join(work, f"{name}-{kind}.json")))
        for name, kind in [("bare", "menus"), ("service", "menus"), ("service", "orders"), ("service", "charge")]}
# The columns of earlier runs (other labels), kept from the section as it is.
saved = {}
path = "bench/RESULTS.md"
text = open(path).read() if os.path.exists(path) else ""
m = re.search(r"<!-- instructions: (.*?) -->", text)
if m:
    saved = json.loads(m.group(1))
# Each run's costliest functions ("top") stay in its work file, not in RESULTS.md.
saved[label] = {"measured": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
                "runs": {f"{n}/{k}": {f: v[f] for f in ("total", "layers", "requests", "footprint") if f in v} for (n, k), v in runs.items()}}
print(f"""Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {machine}.
Command: `bash bench/instructions.bench.sh` (`INSTR_LABEL=<column>` names this run's column).
User-space instructions of the API process per request (`valgrind --tool=callgrind`), over
{count} `GET /menus` and {writes} `POST /orders` and `POST /users/{{id}}/points/charge` sent one after
another on one keep-alive connection, after {warm} unmeasured requests of each kind; one release
`coffee serve` with its relay off and its gauges sampled hourly, so nothing else runs while it
counts. The bare handler is `bench/src/bin/menus_baseline.rs` serving the same bytes. Layers are
each function's own instructions, grouped by the crate or module its name belongs to
(`LAYERS` in `bench/instructions.py`); allocation and copying are layers of their own, and code
inlined into a caller counts for the caller. Kernel, PostgreSQL and Redis work is not counted.
The last two rows are the code a request runs (`--dump-instr=yes`): the distinct 64-byte lines
and 4 KiB pages of code that ran at least once per two requests, which a request whose caches
the kernel's work has cooled fetches again (32 KiB of first-level code cache per core here; see
`docs/DECISIONS.md`, "One connection to a hundredth").
""")
labels = list(saved)
def per(run, key=None):
    v = run["total"] if key is None else run["layers"].get(key, 0)
    return v / run["requests"]
for title, key in [("`GET /menus`", "menus"), ("`POST /orders`", "orders"), ("`POST /users/{id}/points/charge`", "charge")]:
    cols = []
    for l in labels:
        r = saved[l]["runs"]
        if key == "menus":
            cols.append((f"bare handler", r.get("bare/menus")) if l == labels[-1] else (None, None))
        cols.append((f"service, {l}", r.get(f"service/{key}")))
    cols = [(h, r) for h, r in cols if h and r]
    layer_names = list(dict.fromkeys(k for _, r in cols for k in r["layers"]))
    print(f"\n### {title}\n")
    print("| layer | " + " | ".join(h for h, _ in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for layer in layer_names:
        if all(per(r, layer) < 1 for _, r in cols):
            continue
        print(f"| {layer} | " + " | ".join(f"{per(r, layer):,.0f}" for _, r in cols) + " |")
    print("| **total** | " + " | ".join(f"**{per(r):,.0f}**" for _, r in cols) + " |")
    for field, title in [("lines", "code run per request: 64-byte lines"), ("pages", "code run per request: 4 KiB pages")]:
        if any("footprint" in r for _, r in cols):
            print(f"| {title} | " + " | ".join(f"{r['footprint'][field]:,}" if "footprint" in r else "-" for _, r in cols) + " |")
    if key == "menus":
        bare = saved[labels[-1]]["runs"]["bare/menus"]
        print("\nService / bare handler, instructions per request: " + ", ".join(
            f"{l} **{per(saved[l]['runs']['service/menus']) / per(bare):.2f}**" for l in labels
            if "service/menus" in saved[l]["runs"]) + " (bare handler of the latest run).")
print("""
What the counts showed, and what was done (issue 25; `docs/DECISIONS.md`, "Per-request cost"):
the two middleware layers (`from_fn` and tracing-actix-web) built the root span's fields for
every request, boxed their futures and looked every metric up in the recorder; the client's
address went into every request's extensions; `TimedIo` stepped through every byte of every head
and later still copied each head and built a substring searcher twice per read; the router
matched parameterised paths with regex-lite (most of a charge's "actix" before); every
`GET /menus` cloned the cached list, and after the cache's first re-read compared the ten menus
field by field. An order sent 13 statements and a charge 8, each a response to parse and a
wake-up of the request's task; both now send 4 (the key is claimed in the statement that locks
the balance). Every authenticated request decoded its token's header twice (its key is now found
by the header's bytes), and its Redis checkout moved a 22 KB future (`memcpy`: the opening of a
connection, now boxed). What `GET /menus` still pays beyond the bare handler is what the bare
handler does not do: the request id and its header, the metrics and the latency clock, the span,
the header timer, the error-handler wrapper with CORS on and the longer route table, and the
cache's clock read. The graceful stop each connection's dispatcher polls at every request is a
flag of its worker's (`crates/http/src/graceful_stop.rs`); actix-server's own signal took a lock
both workers share at each of those polls. Counts do not show what costs most natively of what
was removed besides:
writes to memory both HTTP workers write (the cache's lock and list, reference counts, the
recorder's series), each a cache line moved between cores (`docs/DECISIONS.md`). For the writes
the rest is the bearer token (HMAC-SHA-256 and base64; valgrind hides the CPU's SHA extensions,
so the native cost is lower), the SQL client, and the tokio runtime's and actix's share of each
wake-up. actix's decoder clears a
3 KB header array (`memset`, in "memcpy and libc") each time a connection's dispatcher is polled,
and a request's future used to be polled from there at each of its wake-ups; a request that waits
now moves to a task of its own on its worker, which wakes the dispatcher once, when it is done.
Each worker now also has PostgreSQL and Redis connections of its own, read on its thread
(`crates/worker-pool`): the writes' "tokio runtime" share lost the I/O runtime's hand-over of
each answer; most of what that saved is the kernel's (thread wake-ups), which these counts do not
include (the throughput section's CPU table does).""")
print(f"\n<!-- instructions: {json.dumps(saved)} -->")
PY
bench_write_section "Instructions per request (issue 25)" "$out"
cat "$out"
echo "bench: wrote bench/RESULTS.md"
