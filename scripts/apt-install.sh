#!/usr/bin/env bash
# Installs Debian packages for a script that needs them: `scripts/apt-install.sh
# WHAT PACKAGE...`, where WHAT names the caller in messages.
#
# Safe when several scripts (or test processes) ask at the same moment on a
# new machine: one lock serialises `apt-get update` and `install` here, and
# apt itself waits for a dpkg lock held by anything else instead of failing.
# A package another caller installed meanwhile is simply found installed.
set -euo pipefail
what=$1
shift
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "$what: needs $*: apt-get install $*" >&2
  exit 1
fi
exec 9>/var/lock/coffee-apt-install.lock
flock 9
missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "$what: installing Debian's ${missing[*]}"
wait_lock=(-o DPkg::Lock::Timeout=600)
apt-get "${wait_lock[@]}" update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" install -y -qq "${missing[@]}" >/dev/null
