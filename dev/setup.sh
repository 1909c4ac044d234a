#!/usr/bin/env bash
# Installs everything the local stack and the tests need on a fresh Debian machine:
# the pinned npm toolchain (Deno, Supabase CLI) and Debian's Postgres extension packages.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# Postgres major: 15 on Debian 12, 17 on Debian 13 (the major whose extension packages exist).
debian_major=$(cut -d. -f1 /etc/debian_version 2>/dev/null || echo 12)
case "$debian_major" in
  12) pg_major=15 ;;
  13) pg_major=17 ;;
  *) pg_major=${PG_MAJOR:-15} ;;
esac
pg_major=${PG_MAJOR:-$pg_major}

packages=(
  "postgresql-$pg_major"
  "postgresql-$pg_major-cron"
  "postgresql-$pg_major-pgtap"
  "postgresql-$pg_major-plpgsql-check"
  libtap-parser-sourcehandler-pgtap-perl
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages for Postgres $pg_major: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Postgres $pg_major with pg_cron, pgTAP, plpgsql_check and pg_prove already installed"
fi
echo "$pg_major" > .pg_major

if [ ! -x node_modules/.bin/deno ] || [ ! -x node_modules/.bin/supabase ] || [ package.json -nt node_modules/.package-lock.json ]; then
  say "installing the pinned npm toolchain (deno, supabase CLI)"
  npm install --no-audit --no-fund --loglevel=error
fi
say "deno $(node_modules/.bin/deno --version | head -1 | cut -d' ' -f2), supabase CLI $(node_modules/.bin/supabase --version)"
