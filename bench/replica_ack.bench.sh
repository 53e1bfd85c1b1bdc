#!/usr/bin/env bash
# Issue 22's figure: what waiting for a Redis replica (`WAIT`, with
# REDIS_MIN_REPLICAS_ACK=1) adds to a login, a refresh and a logout.
# A Redis master with one replica, both with TLS (scripts/data-tier.sh), and
# two release `coffee serve` against it, one with REDIS_MIN_REPLICAS_ACK=0
# and one with 1; the same requests go to each in turn, one at a time, so
# both see the same machine. Writes the section "Replica acknowledgement
# (issue 22)" of bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh ensure >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh

ROUNDS=${ROUNDS:-300}
cargo build --release -q --bin coffee -p coffee-bootstrap --bin mock-collector -p coffee-mock-collector

tier=$(mktemp -d)
master=$((20000 + RANDOM % 20000)) replica=$((master + 1))
cleanup_tier() { scripts/data-tier.sh stop "$tier" || true; rm -rf "$tier"; }
scripts/data-tier.sh certs "$tier"
scripts/data-tier.sh redis "$tier" "$master"
scripts/data-tier.sh redis "$tier" "$replica" "$master"

# One account logs in ROUNDS times: no per-account limit either.
export LOGIN_MAX_ATTEMPTS=1000000
redis_env=(REDIS_URL="rediss://localhost:$master" REDIS_CA_FILE="$tier/ca.crt")
bench_start_server coffee_bench_replica_ack 18280 "${redis_env[@]}" REDIS_MIN_REPLICAS_ACK=0
no_wait=$BENCH_SERVER
# The second instance stops before bench_stop drops the database under it.
trap 'kill $with_wait 2>/dev/null; wait $with_wait 2>/dev/null; bench_stop; cleanup_tier' EXIT
BIND_ADDR=127.0.0.1:18281 env "${redis_env[@]}" REDIS_MIN_REPLICAS_ACK=1 target/release/coffee serve &
with_wait=$!
bench_wait_ready 18281

figures=$(python3 - "$ROUNDS" <<'PY'
import http.client, json, statistics, sys, time, uuid

rounds = int(sys.argv[1])
ports = {"without WAIT": 18280, "with WAIT": 18281}
conns = {name: http.client.HTTPConnection("127.0.0.1", port) for name, port in ports.items()}

def call(name, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    conns[name].request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conns[name].getresponse()
    data = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status >= 300:
        raise SystemExit(f"{name} {method} {path}: {response.status} {data[:200]!r}")
    return elapsed, json.loads(data) if data else None

# One account per instance (signup is PostgreSQL's, not measured).
accounts = {}
for name in ports:
    email = f"ack-{uuid.uuid4().hex}@example.com"
    call(name, "POST", "/auth/signup", {"email": email, "password": "correct horse battery staple", "name": "Ack"})
    accounts[name] = email

samples = {name: {"login": [], "refresh": [], "logout": []} for name in ports}
for _ in range(rounds):
    for name in ports:  # alternately, so both see the same moments
        ms, pair = call(name, "POST", "/auth/login", {"email": accounts[name], "password": "correct horse battery staple"})
        samples[name]["login"].append(ms)
        ms, pair = call(name, "POST", "/auth/refresh", {"refreshToken": pair["refreshToken"]})
        samples[name]["refresh"].append(ms)
        ms, _ = call(name, "POST", "/auth/logout", {"refreshToken": pair["refreshToken"]}, token=pair["accessToken"])
        samples[name]["logout"].append(ms)

def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]

out = {"rounds": rounds}
for name, by_route in samples.items():
    out[name] = {route: {"median": statistics.median(v), "p99": p(v, 0.99)} for route, v in by_route.items()}
print(json.dumps(out))
PY
)
echo "$figures"

out=$(mktemp)
python3 - "$figures" "$(bench_machine)" > "$out" <<'PY'
import json, sys, datetime
f, machine = json.loads(sys.argv[1]), sys.argv[2]
print(f"""Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {machine}.
Command: `bash bench/replica_ack.bench.sh` (`ROUNDS={f['rounds']}`).
A Redis master and one replica on loopback, both with TLS; two release instances against the master,
`REDIS_MIN_REPLICAS_ACK=0` and `1`; each round logs in, refreshes and logs out once on each, one request at a time.

| route | median without `WAIT` (ms) | median with (ms) | added (ms) | p99 without (ms) | p99 with (ms) |
|---|---|---|---|---|---|""")
for route in ["login", "refresh", "logout"]:
    a, b = f["without WAIT"][route], f["with WAIT"][route]
    print(f"| `{route}` | {a['median']:.2f} | {b['median']:.2f} | {b['median'] - a['median']:+.2f} | {a['p99']:.2f} | {b['p99']:.2f} |")
print("""
A login writes the session once (one `WAIT`), a refresh rotates it (one), a logout ends the session and
blacklists the access token (two). The login's time is mostly the password hash.""")
PY
bench_write_section "Replica acknowledgement (issue 22)" "$out"
cat "$out"
