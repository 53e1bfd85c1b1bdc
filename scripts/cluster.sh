#!/usr/bin/env bash
# `make cluster` / `make cluster-down`: CLUSTER_SIZE `coffee serve` instances
# (default 3) on the configured PostgreSQL, a Redis of the cluster's own with
# append-only persistence, the mock collector, and HAProxy in front with the
# shipped docker/haproxy.cfg (its docker `server-template` line replaced by
# the local instances). No Docker needed. Everything runs under the
# git-ignored .local/cluster/, and `down` stops exactly what `up` started.
#
#   scripts/cluster.sh up [bin_dir]    start (bin_dir: target/debug by default)
#   scripts/cluster.sh down            stop
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:-up}
bin_dir=${2:-target/debug}
dir=$PWD/.local/cluster
size=${CLUSTER_SIZE:-3}
lb_port=${CLUSTER_PORT:-8080}

# .env under the real environment (real variables win), as `coffee` reads it.
# shellcheck source=scripts/settings.sh
. scripts/settings.sh && load_dotenv .env

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

down() {
  [ -d "$dir" ] || { echo "cluster: nothing is running"; return 0; }
  if [ -f "$dir/pids" ]; then
    while read -r name pid; do
      kill -TERM "$pid" 2>/dev/null && echo "cluster: stopping $name ($pid)" || true
    done <"$dir/pids"
    # Instances drain before they stop (SHUTDOWN_DRAIN_SECS).
    for _ in $(seq 1 100); do
      alive=0
      while read -r _ pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$dir/pids"
      [ $alive = 0 ] && break
      sleep 0.2
    done
    rm -f "$dir/pids"
  fi
  if [ -f "$dir/redis.port" ]; then
    redis-cli -p "$(cat "$dir/redis.port")" shutdown >/dev/null 2>&1 || true
    rm -f "$dir/redis.port"
  fi
  echo "cluster: stopped (data kept in $dir)"
}

up() {
  if [ -f "$dir/pids" ]; then
    echo "cluster: already running (make cluster-down stops it)" >&2
    exit 1
  fi
  if ! command -v haproxy >/dev/null; then
    scripts/apt-install.sh cluster haproxy
  fi
  mkdir -p "$dir/redis" "$dir/logs"
  : >"$dir/pids"
  trap 'echo "cluster: failed to start; stopping what started" >&2; down' ERR

  # Redis that outlives a restart: sessions and the logout blacklist live there.
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" \
    --appendonly yes --appendfsync everysec --save "" --daemonize yes \
    --logfile "$dir/logs/redis.log"
  echo "$redis_port" >"$dir/redis.port"

  collector_port=$(free_port)
  MOCK_COLLECTOR_ADDR=127.0.0.1:$collector_port MOCK_COLLECTOR_JOURNAL=$dir/collector.journal \
    "$bin_dir/mock-collector" >"$dir/logs/mock-collector.log" 2>&1 &
  echo "mock-collector $!" >>"$dir/pids"

  export REDIS_URL=redis://127.0.0.1:$redis_port COLLECTOR_URL=http://127.0.0.1:$collector_port
  "$bin_dir/coffee" migrate >"$dir/logs/migrate.log" 2>&1

  servers=""
  for i in $(seq 1 "$size"); do
    port=$(free_port)
    admin_port=$(free_port)
    # HAProxy connects from 127.0.0.1: its X-Forwarded-For names the client.
    # Its health checks go to the admin listener (`check port`), as in the
    # shipped config; /metrics is only there.
    TRUSTED_PROXIES=127.0.0.1/32 BIND_ADDR=127.0.0.1:$port ADMIN_BIND_ADDR=127.0.0.1:$admin_port \
      "$bin_dir/coffee" serve >"$dir/logs/api$i.log" 2>&1 &
    echo "api$i $!" >>"$dir/pids"
    echo "api$i 127.0.0.1:$port admin 127.0.0.1:$admin_port" >>"$dir/instances"
    servers+="    server api$i 127.0.0.1:$port check port $admin_port\n"
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health/live" >/dev/null && break; sleep 0.1; done
  done
  sed "s#^    server-template api .*#${servers%\\n}#" docker/haproxy.cfg >"$dir/haproxy.cfg"
  LB_BIND=127.0.0.1:$lb_port haproxy -q -f "$dir/haproxy.cfg" >"$dir/logs/haproxy.log" 2>&1 &
  echo "haproxy $!" >>"$dir/pids"
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$lb_port/health/ready" >/dev/null && break; sleep 0.1; done
  trap - ERR
  echo "cluster: $size instances behind HAProxy: http://127.0.0.1:$lb_port"
  echo "cluster: mock collector http://127.0.0.1:$collector_port, Redis (append-only) 127.0.0.1:$redis_port"
  echo "cluster: each instance's metrics and health on its admin address: $dir/instances"
  echo "cluster: logs in $dir/logs; make cluster-down stops it"
}

case $action in
  up) rm -f "$dir/instances"; up ;;
  down) down ;;
  *) echo "usage: $0 up [bin_dir] | down" >&2; exit 2 ;;
esac
