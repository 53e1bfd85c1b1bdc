# Shared by the *.bench.sh scripts: a release `coffee serve` on a throwaway
# database, and a way to write a section of bench/RESULTS.md.
# shellcheck shell=bash

bench_start_server() { # db port [extra env...]
  local db=$1 port=$2; shift 2
  export BENCH_DB=$db BENCH_PORT=$port
  # The collector the relay delivers order events to, as in production: without
  # one the relay would retry every event in the background and skew figures.
  MOCK_COLLECTOR_ADDR=127.0.0.1:$((port + 1000)) RUST_LOG=warn target/release/mock-collector &
  BENCH_COLLECTOR=$!
  export COLLECTOR_URL=http://127.0.0.1:$((port + 1000))
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
  # Every simulated client is 127.0.0.1: no per-client signup/login limit.
  export BIND_ADDR=127.0.0.1:$port REDIS_KEY_PREFIX="coffee-bench-$$:" RUST_LOG=warn APP_ENV=development
  export CLIENT_LOGIN_MAX_ATTEMPTS=1000000
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  target/release/coffee migrate >/dev/null
  env "$@" target/release/coffee serve &
  BENCH_SERVER=$!
  trap bench_stop EXIT
  bench_wait_ready "$port"
}

# bench_wait_ready port: waits up to 10 s for the instance on port to be ready.
bench_wait_ready() {
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/health/ready" >/dev/null && return 0; sleep 0.1; done
  echo "bench: the instance on port $1 did not become ready" >&2
  return 1
}

bench_stop() {
  kill "$BENCH_SERVER" "$BENCH_COLLECTOR" 2>/dev/null
  wait "$BENCH_SERVER" 2>/dev/null
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1
  redis-cli --scan --pattern "coffee-bench-$$:*" | xargs -r redis-cli del >/dev/null
}

# bench_need_wrk: installs wrk (Debian package) when it is missing.
bench_need_wrk() {
  command -v wrk >/dev/null && return 0
  scripts/apt-install.sh bench wrk
}

bench_psql() { psql -h 127.0.0.1 -U postgres -d "$BENCH_DB" -q "$@"; }

bench_machine() {
  local cpu
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
  echo "$(nproc) cores ($cpu), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), PostgreSQL $(psql -h 127.0.0.1 -U postgres -Atc 'SHOW server_version' | cut -d' ' -f1), Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)"
}

# bench_write_section "Title" file-with-markdown: replaces the "## Title"
# section of bench/RESULTS.md (or appends it).
bench_write_section() {
  python3 - "$1" "$2" <<'PY'
import os, re, sys
title, body_file = sys.argv[1], sys.argv[2]
section = f"## {title}\n\n" + open(body_file).read().strip() + "\n"
path = "bench/RESULTS.md"
text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\nEach section is rewritten by the script named in it.\n"
pattern = re.compile(r"## " + re.escape(title) + r"\n.*?(?=\n## |\Z)", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
}
