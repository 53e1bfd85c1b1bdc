# shellcheck shell=bash
# Sourced by the scripts that read the service's settings:
#
#   . scripts/settings.sh
#   load_dotenv [FILE]            FILE (default .env) under the real environment
#   database_url_named URL NAME   URL with its database replaced by NAME

# Exports every variable FILE sets, except those the environment already
# has: real variables win, as in the `coffee` binary (dotenvy). The file is
# read by the shell (`.env.example`'s plain NAME=value lines read the same
# way in both); the environment as it was is put back on top afterwards.
load_dotenv() {
  local file=${1:-.env} saved
  [ -f "$file" ] || return 0
  # `declare -x NAME=...` lines, made global (inside a function `declare`
  # makes locals); read-only ones cannot change anyway.
  saved=$(export -p | grep -v '^declare -[a-zA-Z]*r' | sed 's/^declare -/declare -g/')
  set -a
  # shellcheck disable=SC1090
  . "$file"
  set +a
  eval "$saved"
}

database_url_named() { # url name: the URL with its database (path) replaced, query kept
  local rest=${1#*://} query=''
  case $rest in *\?*) query=?${rest#*\?} rest=${rest%%\?*} ;; esac
  echo "${1%%://*}://${rest%%/*}/$2$query"
}
