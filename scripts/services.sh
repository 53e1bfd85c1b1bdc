#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are reachable for `make run` / `make test`.
#
# 1. Uses the configured servers when they answer (DATABASE_URL / REDIS_URL
#    host and port; defaults 127.0.0.1:5432 and 127.0.0.1:6379).
# 2. Otherwise starts them with `docker compose -f docker/compose.yml up -d`
#    where a Docker engine answers.
# 3. Otherwise starts a Debian cluster that is installed but stopped
#    (pg_ctlcluster), or throwaway servers from the PostgreSQL and Redis
#    binaries on this machine, under the git-ignored .local/.
# 4. Otherwise prints exactly what to install, and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# .env under the real environment (real variables win), as `coffee` reads it.
# shellcheck source=scripts/settings.sh
. scripts/settings.sh && load_dotenv .env

host_port() { # url default_port -> "host port"
  local rest=${1#*://}; rest=${rest%%/*}; rest=${rest%%\?*}; rest=${rest##*@}
  local host=${rest%:*} port=${rest##*:}
  [ "$host" = "$rest" ] && port=$2
  [ -z "$host" ] && host=127.0.0.1
  echo "$host $port"
}
read -r PG_HOST PG_PORT < <(host_port "${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/coffee}" 5432)
read -r REDIS_HOST REDIS_PORT < <(host_port "${REDIS_URL:-redis://127.0.0.1:6379}" 6379)

pg_up() {
  if command -v pg_isready >/dev/null; then pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
  else timeout 2 bash -c ">/dev/tcp/$PG_HOST/$PG_PORT" 2>/dev/null; fi
}
redis_up() {
  if command -v redis-cli >/dev/null; then [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
  else timeout 2 bash -c ">/dev/tcp/$REDIS_HOST/$REDIS_PORT" 2>/dev/null; fi
}
wait_for() { # name check
  for _ in $(seq 1 60); do "$2" && return 0; sleep 0.5; done
  echo "services: $1 did not come up" >&2; return 1
}
is_local() { [ "$1" = 127.0.0.1 ] || [ "$1" = localhost ]; }

start_with_docker() {
  command -v docker >/dev/null && docker info >/dev/null 2>&1 || return 1
  echo "services: starting PostgreSQL and Redis with docker compose"
  docker compose -p coffee -f docker/compose.yml up -d postgres redis
}

start_local_postgres() {
  is_local "$PG_HOST" || return 1
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "services: starting the installed PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start && return 0
  fi
  local bindir
  bindir=$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)" 2>/dev/null) || return 1
  [ -x "$bindir/initdb" ] || return 1
  local dir=$PWD/.local/postgres run=()
  if [ "$(id -u)" = 0 ]; then # PostgreSQL refuses to run as root
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    run=(runuser -u postgres --)
  fi
  mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    "${run[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
  fi
  echo "services: starting a throwaway PostgreSQL in .local/postgres on port $PG_PORT"
  "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $dir" start >/dev/null
}

start_local_redis() {
  is_local "$REDIS_HOST" || return 1
  command -v redis-server >/dev/null || return 1
  mkdir -p .local/redis
  echo "services: starting a throwaway Redis in .local/redis on port $REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$PWD/.local/redis" --logfile "$PWD/.local/redis/redis.log" --pidfile "$PWD/.local/redis/redis.pid"
}

explain() {
  cat >&2 <<'MSG'
services: PostgreSQL and/or Redis are not reachable and could not be started.
Either
  - point DATABASE_URL and REDIS_URL (environment or .env) at running servers, or
  - install Docker and run `make up`, or
  - install the servers, e.g. on Debian/Ubuntu:
        apt-get install -y postgresql redis-server
    (PostgreSQL 15+ and Redis 7+), then run this again.
MSG
  exit 1
}

case "${1:-ensure}" in
  ensure)
    pg_up && redis_up && { echo "services: PostgreSQL $PG_HOST:$PG_PORT and Redis $REDIS_HOST:$REDIS_PORT are up"; exit 0; }
    if ! pg_up || ! redis_up; then
      start_with_docker || true
    fi
    pg_up || wait_for PostgreSQL pg_up 2>/dev/null || start_local_postgres || explain
    wait_for PostgreSQL pg_up || explain
    redis_up || start_local_redis || explain
    wait_for Redis redis_up || explain
    echo "services: PostgreSQL $PG_HOST:$PG_PORT and Redis $REDIS_HOST:$REDIS_PORT are up"
    ;;
  stop-local)
    [ -f .local/redis/redis.pid ] && kill "$(cat .local/redis/redis.pid)" 2>/dev/null || true
    if [ -f .local/postgres/data/postmaster.pid ]; then
      bindir=$(dirname "$(command -v pg_ctl 2>/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")
      if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bindir/pg_ctl" -D .local/postgres/data stop
      else "$bindir/pg_ctl" -D .local/postgres/data stop; fi
    fi
    ;;
  *) echo "usage: $0 [ensure|stop-local]" >&2; exit 2 ;;
esac
