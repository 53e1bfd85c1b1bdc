#!/usr/bin/env bash
# The dependency rule (docs/CONTRIBUTING.md, "The architecture check"):
# domain, ports and application never depend on infrastructure crates, and
# the domain has no async and no I/O at all (no files, sockets, processes,
# environment, threads or clock reads: what it needs is handed in). Fails
# with the offending crate or line named.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
forbidden='^(actix-web|actix-http|actix-rt|diesel|diesel-async|diesel_migrations|redis|deadpool-redis|deadpool|reqwest|hyper|tokio-postgres)$'
for crate in coffee-domain coffee-ports coffee-application; do
  leaks=$(cargo tree -q -e normal -p "$crate" --prefix none --format '{p}' | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
  if [ -n "$leaks" ]; then
    echo "architecture: $crate depends on infrastructure: $(echo "$leaks" | tr '\n' ' ')" >&2
    status=1
  fi
done
async_deps=$(cargo tree -q -e normal -p coffee-domain --prefix none --format '{p}' | awk '{print $1}' | sort -u | grep -E '^(tokio|futures.*|async-trait)$' || true)
if [ -n "$async_deps" ]; then
  echo "architecture: coffee-domain depends on async crates: $async_deps" >&2
  status=1
fi
if grep -rnwE 'async|await' crates/domain/src; then
  echo "architecture: coffee-domain must not contain async code (lines above)" >&2
  status=1
fi
# Outside its tests: the domain reads no file, socket, process, environment,
# thread or clock (`now` is a value the caller hands in).
io=$(for f in crates/domain/src/*.rs; do
  awk -v f="$f" '/#\[cfg\(test\)\]/ { exit } /std::(fs|net|io|process|env|thread)|(Instant|SystemTime|OffsetDateTime)::now/ { print f ":" FNR ": " $0 }' "$f"
done)
if [ -n "$io" ]; then
  echo "$io"
  echo "architecture: coffee-domain must not do I/O or read the clock (lines above)" >&2
  status=1
fi
[ $status = 0 ] && echo "architecture: dependency rule holds"
exit $status
