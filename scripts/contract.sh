#!/usr/bin/env bash
# `make contract`: schemathesis against the running service's own
# /openapi.json, with every check, authenticated as a real user.
#
# Starts a throwaway database, the mock collector and one `coffee serve`,
# signs up and logs in a user (and funds it so orders can succeed), then runs
# schemathesis from a local virtualenv (.venv, installed from PyPI on first
# use). Exits non-zero on any failure.
#
# The throwaway database is made on the server of DATABASE_URL (environment,
# then .env; default the local one), through its `postgres` database for the
# final DROP; its keys go to the Redis of REDIS_URL (and REDIS_CA_FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/settings.sh
. scripts/settings.sh
load_dotenv .env
scripts/services.sh ensure >/dev/null
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/coffee?sslmode=disable}
redis_cli=(redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}")
if [ -n "${REDIS_CA_FILE:-}" ]; then redis_cli+=(--cacert "$REDIS_CA_FILE"); fi

EXAMPLES=${CONTRACT_EXAMPLES:-25}
db=coffee_contract_$$
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
collector_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

# One maker of the virtualenv at a time; a half-made one (an interrupted
# install) is made again from scratch.
exec 8>.venv.lock
flock 8
if [ ! -x .venv/bin/st ]; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install -q "schemathesis>=4,<5"
fi
flock -u 8
cargo build -q --bin coffee --bin mock-collector

DATABASE_URL=$(database_url_named "$server_url" "$db")
export DATABASE_URL BIND_ADDR="127.0.0.1:$port"
export REDIS_KEY_PREFIX="coffee-contract-$$:" COLLECTOR_URL="http://127.0.0.1:$collector_port" RUST_LOG=warn APP_ENV=test
# The fuzzer sends many bad logins for its one user; do not lock it out.
export LOGIN_MAX_ATTEMPTS=1000000 CLIENT_LOGIN_MAX_ATTEMPTS=1000000
target/debug/coffee migrate >/dev/null
MOCK_COLLECTOR_ADDR="127.0.0.1:$collector_port" target/debug/mock-collector >/dev/null 2>&1 &
collector=$!
target/debug/coffee serve &
server=$!
cleanup() {
  kill "$server" "$collector" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql "$(database_url_named "$server_url" postgres)" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  "${redis_cli[@]}" --scan --pattern "coffee-contract-$$:*" | xargs -r "${redis_cli[@]}" del >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -sf "$base/health/ready" >/dev/null && break; sleep 0.1; done

email="contract-$$@example.com"
password="correct horse battery staple"
user_id=$(curl -sf "$base/auth/signup" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Contract\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
token=$(curl -sf "$base/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
for n in $(seq 1 50); do
  curl -sf "$base/users/$user_id/points/charge" -H "authorization: Bearer $token" -H "idempotency-key: fund-$n" \
    -H 'content-type: application/json' -d '{"amount":1000000}' >/dev/null
done

# Logout would revoke the token every other operation uses: it is exercised by
# the end-to-end tests instead, and excluded here.
.venv/bin/st run "$base/openapi.json" \
  --max-examples "$EXAMPLES" \
  --seed "${CONTRACT_SEED:-1}" \
  --header "Authorization: Bearer $token" \
  --exclude-operation-id logOut \
  --request-timeout 10 \
  "$@"
