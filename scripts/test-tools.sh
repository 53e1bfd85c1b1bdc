#!/usr/bin/env bash
# Installs what the tests need beyond Rust, PostgreSQL and Redis, from
# Debian's packages, when it is missing:
# - faketime: runs an instance with a skewed wall clock (tests/tests/clocks.rs);
# - locales: the ko_KR definition, from which localedef makes the locale in
#   which PostgreSQL answers in Korean (crates/postgres/tests/locale.rs);
# - haproxy: the balancer of the cluster test (tests/tests/cluster.rs) and
#   the failover test (tests/src/bin/failover.rs);
# - openssl and the PostgreSQL client: the certificates and queries of the
#   throwaway data tier (scripts/data-tier.sh: tests/tests/tls.rs, the
#   failover test).
set -euo pipefail

missing=()
command -v faketime >/dev/null || missing+=(faketime)
{ command -v localedef >/dev/null && [ -f /usr/share/i18n/locales/ko_KR ]; } || missing+=(locales)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || missing+=(haproxy)
command -v openssl >/dev/null || missing+=(openssl)
command -v psql >/dev/null || missing+=(postgresql-client)
[ ${#missing[@]} -eq 0 ] && exit 0

exec "$(dirname "$0")/apt-install.sh" test-tools "${missing[@]}"
