#!/usr/bin/env bash
# Throwaway TLS PostgreSQL and Redis servers on loopback ports, for tests of
# the data tier (certificates, synchronous replication, failover). Every
# server runs in the background and lives in DIR, a directory the caller owns
# and deletes (a temp dir; created when missing); ports are the caller's
# choice. Nothing is printed on success except what a subcommand must print;
# on failure the relevant server log's tail goes to stderr.
#
#   scripts/data-tier.sh certs DIR
#       DIR/ca.crt + ca.key (test CA); signed by it DIR/server.crt +
#       server.key (subjectAltName DNS:localhost and IP:127.0.0.1, the
#       address Sentinel hands out) and DIR/misnamed.crt + misnamed.key
#       (DNS:misnamed.invalid only); DIR/other-ca.crt (an unrelated CA).
#       EC P-256, sha256. Run it first.
#   scripts/data-tier.sh pg-primary DIR PORT [SYNC_STANDBY_NAMES]
#       PostgreSQL 15 cluster in DIR/pg-PORT (data/, postgresql.log, the
#       socket): user postgres, trust auth, TCP only as hostssl on
#       127.0.0.1, replication allowed; synchronous_standby_names when given.
#   scripts/data-tier.sh pg-standby DIR PORT PRIMARY_PORT NAME
#       Streaming standby in DIR/pg-PORT, base-backed up over TLS from the
#       primary, application_name NAME; returns once the primary sees it
#       streaming.
#   scripts/data-tier.sh pg-promote DIR PORT
#       Promotes the standby; clears its synchronous_standby_names.
#   scripts/data-tier.sh pg-start DIR PORT
#       Starts again a cluster of DIR/pg-PORT (after `kill`).
#   scripts/data-tier.sh psql DIR PORT DATABASE SQL
#       Runs SQL as postgres over the cluster's socket; prints the result
#       unaligned, without headers (`psql -At`).
#   scripts/data-tier.sh redis DIR PORT [MASTER_PORT]
#       redis-server, TLS only on PORT (no client certificates), replica of
#       127.0.0.1:MASTER_PORT over TLS when given (returns once in sync).
#       Run it again on the same port to restart a killed server (it comes
#       back empty, as a master unless MASTER_PORT is given).
#   scripts/data-tier.sh sentinel DIR PORT TLS_PORT MASTER_NAME MASTER_PORT [QUORUM]
#       Sentinel listening in plain TCP on PORT and with TLS on TLS_PORT
#       (Sentinels talk TLS to each other, as to the Redis servers),
#       monitoring MASTER_NAME at 127.0.0.1:MASTER_PORT (quorum 2 by
#       default; down after 2 s, failover timeout 3 s: a failover takes 2-3 s,
#       and the next one of the same master waits 6-8 s). Its configuration
#       is DIR/sentinel-PORT.conf, which Sentinel rewrites; run it again to
#       restart a killed Sentinel with that configuration.
#   scripts/data-tier.sh wait-master DIR SENTINEL_PORT MASTER_NAME OLD_PORT TIMEOUT_SECS
#       Waits until that Sentinel names a master other than OLD_PORT and
#       prints the new master's port.
#   scripts/data-tier.sh kill DIR NAME_OR_PORT
#       SIGKILLs one server: pg-PORT, redis-PORT, sentinel-PORT or PORT.
#   scripts/data-tier.sh stop DIR
#       SIGKILLs every server started under DIR and waits until they are
#       gone; DIR is left for the caller to delete.
#
# DATA_TIER_MIN_REPLICAS=N gives `redis` servers min-replicas-to-write N.
# DATA_TIER_CERT=NAME makes pg-primary, pg-standby and redis serve
# DIR/NAME.crt + NAME.key instead of server.crt (e.g. misnamed).
#
# As root, PostgreSQL runs as the `postgres` OS user: DIR gets o+x (so that
# user can reach DIR/pg-PORT) and DIR/pg-PORT is its own, with copies of the
# server certificate and key. Redis and Sentinel run as the caller.
set -euo pipefail
scripts=$(cd "$(dirname "$0")" && pwd)
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
me=data-tier

die() { echo "$me: $*" >&2; exit 1; }
log_tail() { # file: its last lines on stderr, when it exists
  if [ -f "$1" ]; then echo "$me: last lines of $1:" >&2; tail -n 40 "$1" >&2; fi
}
fail() { # log message...
  local log=$1; shift
  echo "$me: $*" >&2
  log_tail "$log"
  exit 1
}
quiet() { # log command...: runs command; on failure prints its output and the log's tail
  local log=$1 out; shift
  if ! out=$("$@" 2>&1); then
    [ -n "$out" ] && echo "$out" >&2
    fail "$log" "failed: $*"
  fi
}
usage() { sed -n '2,/^set -euo/p' "$scripts/${0##*/}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
port_arg() { [[ $1 =~ ^[0-9]+$ ]] || die "not a port: $1"; }
caller_pwd=$PWD
dir_arg() { # dir -> absolute path, created when missing
  (cd "$caller_pwd" && mkdir -p "$1" && cd "$1" && pwd -P)
}
existing_dir() { # dir -> absolute path
  (cd "$caller_pwd" && cd "$1" 2>/dev/null && pwd -P) || die "no directory $1"
}
cert=${DATA_TIER_CERT:-server}
[[ $cert =~ ^[A-Za-z0-9_-]+$ ]] || die "DATA_TIER_CERT: the name of a .crt file of DIR, without .crt"
need_certs() { # dir: the CA and the certificate to serve
  local f
  for f in ca.crt "$cert.crt" "$cert.key"; do
    [ -f "$1/$f" ] || die "$1/$f is missing: run \`${0##*/} certs $1\` first"
  done
}
need_tools() { # command package: installs the Debian package when the command is missing
  command -v "$1" >/dev/null || "$scripts/apt-install.sh" "$me" "$2"
}
deadline_passed() { [ "$SECONDS" -ge "$1" ]; }

# ---------------------------------------------------------------- processes

# A pid names one of our servers: alive (not a zombie), a PostgreSQL or Redis
# process, working in the given directory (Redis and Sentinel in DIR, every
# PostgreSQL process in its data directory): a stale pid file or a reused pid
# never gets someone else's process killed.
server_in() { # pid dir
  local pid=$1 comm state
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  case $comm in postgres | redis-server | redis-sentinel) ;; *) return 1 ;; esac
  state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$2" ]
}
pidfile_pid() { if [ -f "$1" ]; then head -n 1 "$1" | tr -dc 0-9; fi; }
# The processes of a server: Redis's from its pid file; all of a PostgreSQL
# cluster's (the postmaster, its children, orphans of a killed postmaster).
server_pids() { # dir name
  local dir=$1 name=$2 pid proc
  case $name in
    pg-*)
      for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [ "$(readlink "$proc/cwd" 2>/dev/null)" = "$dir/$name/data" ] && server_in "$pid" "$dir/$name/data" && echo "$pid"
      done
      ;;
    *)
      pid=$(pidfile_pid "$dir/$name.pid")
      if server_in "$pid" "$dir"; then echo "$pid"; fi
      ;;
  esac
}
# SIGKILL servers and wait until none of their processes is left (a zombie
# counts as gone: it holds no port nor file). Fails when nothing was running.
killed=()
kill_servers() { # dir name...
  local dir=$1 name pids deadline=$((SECONDS + 15))
  shift
  local before=${#killed[@]}
  while :; do
    pids=()
    for name in "$@"; do mapfile -t -O ${#pids[@]} pids < <(server_pids "$dir" "$name"); done
    [ ${#pids[@]} -eq 0 ] && break
    deadline_passed "$deadline" && die "still alive after SIGKILL: ${pids[*]}"
    kill -KILL "${pids[@]}" 2>/dev/null || true
    killed+=("${pids[@]}")
    sleep 0.05
  done
  [ ${#killed[@]} -gt "$before" ]
}
# Zombies wait for init to reap them, which some sandboxes' init does only
# every second or two: wait a little, so that process lists are clean.
wait_reaped() {
  local pid deadline=$((SECONDS + 4))
  for pid in "${killed[@]}"; do
    while [ -e "/proc/$pid" ] && ! deadline_passed "$deadline"; do sleep 0.05; done
  done
}

server_name() { # dir name_or_port
  local dir=$1 what=$2
  case $what in
    pg-* | redis-* | sentinel-*) echo "$what" ;;
    *)
      port_arg "$what"
      if [ -d "$dir/pg-$what" ]; then echo "pg-$what"
      elif [ -f "$dir/redis-$what.pid" ]; then echo "redis-$what"
      elif [ -f "$dir/sentinel-$what.pid" ]; then echo "sentinel-$what"
      else die "no server on port $what under $dir"; fi
      ;;
  esac
}

cmd_kill() {
  [ $# -eq 2 ] || usage
  local dir name
  dir=$(existing_dir "$1")
  name=$(server_name "$dir" "$2")
  kill_servers "$dir" "$name" || die "$name under $dir is not running"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir path names=()
  (cd "$caller_pwd" && [ -d "$1" ]) || return 0
  dir=$(existing_dir "$1")
  shopt -s nullglob
  for path in "$dir"/redis-*.pid "$dir"/sentinel-*.pid "$dir"/pg-*/data; do
    path=${path#"$dir"/}
    names+=("${path%%[./]*}")
  done
  [ ${#names[@]} -eq 0 ] || kill_servers "$dir" "${names[@]}" || true
  wait_reaped
}

# --------------------------------------------------------------- certificates

cmd_certs() {
  [ $# -eq 1 ] || usage
  need_tools openssl openssl
  local dir cnf
  dir=$(dir_arg "$1")
  cnf=$dir/openssl.cnf
  # webpki wants a CA with critical basicConstraints and keyUsage, and a leaf
  # for serverAuth whose subjectAltName names the host (it ignores the CN).
  cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[misnamed]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:misnamed.invalid
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
  local key ca leaf
  for key in ca other-ca server misnamed; do
    (umask 077 && quiet /dev/null openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$key.key")
  done
  for ca in ca other-ca; do
    quiet /dev/null openssl req -new -x509 -config "$cnf" -extensions ca -sha256 -days 3650 \
      -key "$dir/$ca.key" -subj "/CN=coffee test $ca" -out "$dir/$ca.crt"
  done
  # The CN names no host: a client falling back to it matches nothing.
  for leaf in server misnamed; do
    quiet /dev/null openssl req -new -config "$cnf" -key "$dir/$leaf.key" \
      -subj "/CN=coffee test $leaf" -out "$dir/$leaf.csr"
    quiet /dev/null openssl x509 -req -in "$dir/$leaf.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 3650 \
      -extfile "$cnf" -extensions "$leaf" -out "$dir/$leaf.crt"
    rm -f "$dir/$leaf.csr"
  done
  rm -f "$dir/other-ca.key" "$cnf"
  chmod 0644 "$dir/ca.crt" "$dir/other-ca.crt" "$dir/server.crt" "$dir/misnamed.crt"
}

# ----------------------------------------------------------------- PostgreSQL

as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
# PostgreSQL's tools, run as the postgres user, may not enter the caller's cwd.
cd /

pg_check() {
  [ -x "$pg_bin/initdb" ] || die "no PostgreSQL 15 in $pg_bin (apt-get install postgresql-15)"
  [ -x "$pg_bin/psql" ] || "$scripts/apt-install.sh" "$me" postgresql-client-15
}
pg_home() { echo "$1/pg-$2"; }
pg_log() { echo "$1/pg-$2/postgresql.log"; }
pg_sql() { # dir port sql: one statement on the server's socket, unaligned output
  "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$(pg_home "$1" "$2")" -p "$2" -U postgres -d postgres -c "$3"
}
# A fresh DIR/pg-PORT that the PostgreSQL user owns, with its own copy of the
# server certificate and key (the key must be that user's, mode 0600).
pg_prepare() { # dir port
  local dir=$1 home
  home=$(pg_home "$1" "$2")
  need_certs "$dir"
  [ -e "$home" ] && die "$home exists (pg-start starts an existing cluster)"
  mkdir -m 0700 "$home"
  install -m 0644 "$dir/$cert.crt" "$home/server.crt"
  install -m 0600 "$dir/$cert.key" "$home/server.key"
  if [ ${#as_pg[@]} -gt 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chmod o+x "$dir"
    chown -R postgres: "$home"
    "${as_pg[@]}" test -w "$home" ||
      die "the postgres user cannot reach $home: give it search (x) permission on every parent of $dir"
  fi
}
pg_instance_conf() { # dir port sync_standby_names: what differs between clusters
  local home
  home=$(pg_home "$1" "$2")
  cat >"$home/data/instance.conf" <<EOF
port = $2
unix_socket_directories = '$home'
ssl_cert_file = '$home/server.crt'
ssl_key_file = '$home/server.key'
synchronous_standby_names = '$3'
EOF
  [ ${#as_pg[@]} -eq 0 ] || chown postgres: "$home/data/instance.conf"
}
pg_ctl_start() { # dir port
  local home log
  home=$(pg_home "$1" "$2")
  log=$(pg_log "$1" "$2")
  quiet "$log" "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$home/data" -l "$log" -w -t 60 start
}

cmd_pg_primary() {
  [ $# -eq 2 ] || [ $# -eq 3 ] || usage
  pg_check
  local dir port=$2 sync=${3:-} home
  port_arg "$port"
  [[ $sync != *"'"* ]] || die "no quotes in synchronous_standby_names, please"
  dir=$(dir_arg "$1")
  pg_prepare "$dir" "$port"
  home=$(pg_home "$dir" "$port")
  quiet /dev/null "${as_pg[@]}" "$pg_bin/initdb" -D "$home/data" -U postgres --auth=trust \
    -E UTF8 --locale=C --no-sync --no-instructions
  cat >>"$home/data/postgresql.conf" <<'EOF'

# scripts/data-tier.sh
listen_addresses = '127.0.0.1'
ssl = on
fsync = off
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '128MB'
hot_standby = on
include 'instance.conf'
EOF
  cat >"$home/data/pg_hba.conf" <<'EOF'
# scripts/data-tier.sh: TCP only with TLS
local   all          all                 trust
local   replication  all                 trust
hostssl all          all   127.0.0.1/32  trust
hostssl replication  all   127.0.0.1/32  trust
EOF
  pg_instance_conf "$dir" "$port" "$sync"
  pg_ctl_start "$dir" "$port"
}

cmd_pg_standby() {
  [ $# -eq 4 ] || usage
  pg_check
  local dir port=$2 primary=$3 name=$4 home conninfo deadline
  port_arg "$port"
  port_arg "$primary"
  [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "standby name: letters, digits, _ . - only"
  dir=$(dir_arg "$1")
  pg_prepare "$dir" "$port"
  home=$(pg_home "$dir" "$port")
  conninfo="host=127.0.0.1 port=$primary user=postgres sslmode=require application_name=$name"
  quiet "$(pg_log "$dir" "$primary")" "${as_pg[@]}" "$pg_bin/pg_basebackup" \
    -D "$home/data" -d "$conninfo" -R -X stream -c fast --no-sync
  # -R wrote standby.signal, and the primary_conninfo (with application_name)
  # in postgresql.auto.conf.
  # The copied instance.conf is the primary's: port, socket, certificate.
  pg_instance_conf "$dir" "$port" ""
  pg_ctl_start "$dir" "$port"
  deadline=$((SECONDS + 60))
  until [ "$(pg_sql "$dir" "$primary" "select count(*) from pg_stat_replication where application_name = '$name' and state = 'streaming'" 2>/dev/null)" = 1 ]; do
    deadline_passed "$deadline" && {
      log_tail "$(pg_log "$dir" "$primary")"
      fail "$(pg_log "$dir" "$port")" "standby $name on $port is not streaming from $primary"
    }
    sleep 0.1
  done
}

cmd_pg_promote() {
  [ $# -eq 2 ] || usage
  pg_check
  local dir port=$2 home log deadline
  port_arg "$port"
  dir=$(existing_dir "$1")
  home=$(pg_home "$dir" "$port")
  log=$(pg_log "$dir" "$port")
  quiet "$log" "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$home/data" -w -t 60 promote
  deadline=$((SECONDS + 60))
  until [ "$(pg_sql "$dir" "$port" 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; do
    deadline_passed "$deadline" && fail "$log" "$port is still in recovery"
    sleep 0.05
  done
  # Without a standby of its own, a commit would wait forever for the name
  # inherited from the old primary.
  quiet "$log" pg_sql "$dir" "$port" "alter system set synchronous_standby_names = ''"
  quiet "$log" pg_sql "$dir" "$port" 'select pg_reload_conf()'
}

cmd_psql() {
  [ $# -eq 4 ] || usage
  pg_check
  local dir port=$2 out
  port_arg "$port"
  dir=$(existing_dir "$1")
  # Its errors, and warnings, go to stderr; stdout is the result only.
  if ! out=$("$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$(pg_home "$dir" "$port")" -p "$port" \
    -U postgres -d "$3" -c "$4"); then
    fail "$(pg_log "$dir" "$port")" "psql on $port, database $3 failed"
  fi
  if [ -n "$out" ]; then printf '%s\n' "$out"; fi
}

cmd_pg_start() {
  [ $# -eq 2 ] || usage
  pg_check
  local dir
  port_arg "$2"
  dir=$(existing_dir "$1")
  [ -d "$(pg_home "$dir" "$2")/data" ] || die "no cluster in $(pg_home "$dir" "$2")"
  pg_ctl_start "$dir" "$2"
}

# ---------------------------------------------------------------------- Redis

redis_check() {
  need_tools redis-server redis-server
  need_tools redis-cli redis-tools
}
# TLS settings of both Redis and Sentinel: tls-replication makes replicas, and
# Sentinel, talk TLS to the servers.
redis_tls() { # dir certificate
  echo "tls-cert-file $1/$2.crt"
  echo "tls-key-file $1/$2.key"
  echo "tls-ca-cert-file $1/ca.crt"
  echo "tls-auth-clients no"
  echo "tls-replication yes"
}
# redis-cli has no timeout of its own: a TLS hello to a server that does not
# answer it (a plain one) would wait forever.
cli_timeout=5
redis_cli_tls() { # dir port args...
  local dir=$1 port=$2
  shift 2
  timeout "$cli_timeout" redis-cli --tls --cacert "$dir/ca.crt" -h 127.0.0.1 -p "$port" "$@"
}
redis_cli_plain() { # port args...
  local port=$1
  shift
  timeout "$cli_timeout" redis-cli -h 127.0.0.1 -p "$port" "$@"
}
running() { # pid: alive and not a zombie
  local state
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}
# Starts redis-server in the background (in a session of its own, away from
# the caller's output pipes) and waits until `ping` (a function) answers PONG.
redis_start() { # log ping_function redis-server-args...
  local log=$1 ping=$2 pid deadline=$((SECONDS + 30))
  shift 2
  setsid redis-server "$@" </dev/null >>"$log" 2>&1 &
  pid=$!
  until [ "$("$ping" 2>/dev/null)" = PONG ]; do
    running "$pid" || fail "$log" "redis-server $* exited"
    deadline_passed "$deadline" && fail "$log" "redis-server $* does not answer"
    sleep 0.05
  done
}

cmd_redis() {
  [ $# -eq 2 ] || [ $# -eq 3 ] || usage
  redis_check
  local dir port=$2 master=${3:-} log conf deadline
  port_arg "$port"
  [ -z "$master" ] || port_arg "$master"
  dir=$(dir_arg "$1")
  need_certs "$dir"
  log=$dir/redis-$port.log
  conf=$dir/redis-$port.conf
  [ -z "$(server_pids "$dir" "redis-$port")" ] || die "redis-$port under $dir is running"
  # A configuration file, so that Sentinel's CONFIG REWRITE after a failover
  # succeeds; written afresh at each start (a restart comes back as a master).
  {
    echo "bind 127.0.0.1"
    echo "port 0"
    echo "tls-port $port"
    redis_tls "$dir" "$cert"
    echo "save \"\""
    echo "appendonly no"
    echo "dir $dir"
    echo "dbfilename redis-$port.rdb"
    echo "repl-diskless-sync-delay 0"
    echo "pidfile $dir/redis-$port.pid"
    echo "logfile $log"
    [ -z "$master" ] || echo "replicaof 127.0.0.1 $master"
    # DATA_TIER_MIN_REPLICAS=N: a master refuses writes (NOREPLICAS) while
    # fewer than N replicas are in sync, as docs/DEPLOYMENT.md advises.
    if [ -n "${DATA_TIER_MIN_REPLICAS:-}" ]; then
      echo "min-replicas-to-write $DATA_TIER_MIN_REPLICAS"
      echo "min-replicas-max-lag 10"
    fi
  } >"$conf"
  ping() { cli_timeout=1 redis_cli_tls "$dir" "$port" ping; }
  redis_start "$log" ping "$conf"
  [ -n "$master" ] || return 0
  deadline=$((SECONDS + 30))
  until [[ $(redis_cli_tls "$dir" "$port" info replication 2>/dev/null) == *master_link_status:up* ]]; do
    deadline_passed "$deadline" && {
      log_tail "$dir/redis-$master.log"
      fail "$log" "redis on $port is not in sync with $master"
    }
    sleep 0.05
  done
}

cmd_sentinel() {
  [ $# -eq 5 ] || [ $# -eq 6 ] || usage
  redis_check
  local dir port=$2 tls_port=$3 name=$4 master=$5 quorum=${6:-2} log conf deadline
  port_arg "$port"
  port_arg "$tls_port"
  port_arg "$master"
  port_arg "$quorum"
  [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "master name: letters, digits, _ . - only"
  dir=$(dir_arg "$1")
  need_certs "$dir"
  log=$dir/sentinel-$port.log
  conf=$dir/sentinel-$port.conf
  [ -z "$(server_pids "$dir" "sentinel-$port")" ] || die "sentinel-$port under $dir is running"
  # tls-replication makes Sentinel use TLS on every link it opens: to the
  # Redis servers, and to the other Sentinels too. So each Sentinel also
  # listens with TLS (tls-port), and announces that port to the others in its
  # hellos; clients may use either port.
  # down-after-milliseconds above 1000: Sentinel pings every
  # min(down-after, 1000) ms and first pings a new master 1000 ms after a
  # switch, so at 1000 it sees each new master down for an instant and may
  # fail over again. failover-timeout: no second failover of the same master
  # within twice this (plus up to 2 s).
  # Sentinel rewrites this file (its id, epochs, the replicas and Sentinels
  # it knows): a restart keeps it.
  [ -f "$conf" ] || {
    echo "bind 127.0.0.1"
    echo "port $port"
    echo "tls-port $tls_port"
    redis_tls "$dir" server
    echo "dir $dir"
    echo "pidfile $dir/sentinel-$port.pid"
    echo "logfile $log"
    echo "sentinel monitor $name 127.0.0.1 $master $quorum"
    echo "sentinel down-after-milliseconds $name 2000"
    echo "sentinel failover-timeout $name 3000"
    echo "sentinel parallel-syncs $name 1"
  } >"$conf"
  ping() { cli_timeout=1 redis_cli_plain "$port" ping; }
  redis_start "$log" ping "$conf" --sentinel
}

cmd_wait_master() {
  [ $# -eq 5 ] || usage
  redis_check
  local dir sentinel=$2 name=$3 old=$4 timeout=$5 addr deadline
  port_arg "$sentinel"
  port_arg "$old"
  port_arg "$timeout"
  dir=$(existing_dir "$1")
  deadline=$((SECONDS + timeout))
  while :; do
    addr=$(redis_cli_plain "$sentinel" --raw sentinel get-master-addr-by-name "$name" 2>/dev/null | tail -n 1 || true)
    if [[ $addr =~ ^[0-9]+$ ]] && [ "$addr" != "$old" ]; then
      echo "$addr"
      return 0
    fi
    deadline_passed "$deadline" && fail "$dir/sentinel-$sentinel.log" \
      "sentinel $sentinel still names ${addr:-no} master for $name after ${timeout}s"
    sleep 0.05
  done
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
  certs) cmd_certs "$@" ;;
  pg-primary) cmd_pg_primary "$@" ;;
  pg-standby) cmd_pg_standby "$@" ;;
  pg-promote) cmd_pg_promote "$@" ;;
  pg-start) cmd_pg_start "$@" ;;
  psql) cmd_psql "$@" ;;
  redis) cmd_redis "$@" ;;
  sentinel) cmd_sentinel "$@" ;;
  wait-master) cmd_wait_master "$@" ;;
  kill) cmd_kill "$@" ;;
  stop) cmd_stop "$@" ;;
  *) usage ;;
esac
