#!/usr/bin/env bash
# Gets the database servers the tests use ready: PostgreSQL on 127.0.0.1:5432
# (user postgres, no password) and MariaDB on 127.0.0.1:3306 (user root, no
# password), each with a database named `test`. Installs them from Debian's
# packages when missing, starts them when stopped, and fails loudly when it
# cannot: the tests never skip a database silently.
set -euo pipefail

say() { printf '[services] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo" || SUDO="__none__"
fi
as_root() {
  [ "$SUDO" = "__none__" ] && die "need root (or sudo) to: $*"
  $SUDO "$@"
}

apt_updated=0
install() {
  command -v apt-get >/dev/null 2>&1 || die "$1 is missing and this is not a Debian/Ubuntu machine: install it by hand"
  if [ "$apt_updated" = 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  say "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$what did not come up"
}

# ---- PostgreSQL --------------------------------------------------------------
pg_ok() { psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' 2>/dev/null | grep -q 1; }
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  install postgresql postgresql-client
fi
if ! pg_ok; then
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$version" ] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
  if ! pg_lsclusters 2>/dev/null | grep -q online; then
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  wait_for "PostgreSQL" pg_isready -h 127.0.0.1 -p 5432
  if ! pg_ok; then
    # A fresh install asks for a password over TCP: trust local connections.
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    say "allowing passwordless local connections in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    sleep 1
  fi
fi
pg_ok || die "cannot connect to PostgreSQL at 127.0.0.1:5432 as postgres without a password"
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test'
fi
say "PostgreSQL ready"

# ---- MariaDB -----------------------------------------------------------------
my_ok() { mysql -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; }
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  install mariadb-server mariadb-client
fi
if ! my_ok; then
  if ! mysqladmin ping >/dev/null 2>&1; then
    say "starting MariaDB"
    as_root mkdir -p /run/mysqld
    as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
      || as_root service mariadb start || true
    wait_for "MariaDB" mysqladmin ping
  fi
  if ! my_ok; then
    # A fresh install lets root in through the socket only: allow it over TCP too.
    say "allowing root without a password over TCP on 127.0.0.1"
    as_root mysql -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
  fi
fi
my_ok || die "cannot connect to MariaDB at 127.0.0.1:3306 as root without a password"
mysql -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test'
mysql -h 127.0.0.1 -u root test -e 'SELECT COUNT(*) FROM seq_1_to_3' >/dev/null 2>&1 \
  || die "MariaDB's Sequence engine (seq_1_to_N tables) is not available; the tests need it"
say "MariaDB ready"
