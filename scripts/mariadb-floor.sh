#!/usr/bin/env bash
# What the local MariaDB alone takes to store the rows of the copy bench
# (`cargo bench -p puente --bench cli`, case copy): the same table, indexes
# and values, sent by its own command-line client, so nothing of Puente's is
# in the figures. No copier into this table on this machine goes faster;
# run it beside a bench to read the bench against what the machine can do
# at that hour.
#   scripts/mariadb-floor.sh [ROWS]    (default 1000000)
# Prints, for each way of sending: wall time, rows/s and mariadbd's CPU.
set -euo pipefail
n=${1:-1000000}
db=puente_floor
batch=1000
tick=$(getconf CLK_TCK)
my() { mariadb -uroot -h127.0.0.1 "$@"; }
server_cpu() { awk '{print $14 + $15}' "/proc/$(pgrep -x mariadbd | head -1)/stat"; }
fresh() {
  my -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db;
    CREATE TABLE $db.contacts (id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(255),
      first_name VARCHAR(60), last_name VARCHAR(60), stage ENUM('lead','customer'), credit DECIMAL(12,2),
      updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
      INDEX contacts_updated (updated_at, id), UNIQUE INDEX contacts_email (email));"
}
# Multi-row INSERTs of $batch rows, each its own transaction, for rows $1..$2.
inserts() {
  seq "$1" "$2" | awk -v b="$batch" '
    { row = sprintf("(\"user%d@example.com\",\"First%d\",\"Last%d\",\"%s\",%d.50)", $1, $1, $1, ($1 % 2 ? "customer" : "lead"), $1 * 10)
      printf "%s%s", (k == 0 ? "INSERT INTO contacts (email,first_name,last_name,stage,credit) VALUES " : ","), row
      if (++k == b) { print ";"; k = 0 } }
    END { if (k) print ";" }'
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; my -e "DROP DATABASE IF EXISTS $db"' EXIT
half=$((n / 2))
inserts 1 "$half" > "$tmp/1.sql"
inserts $((half + 1)) "$n" > "$tmp/2.sql"
measure() { # name, then the command
  local name=$1; shift
  fresh
  local c0 s e c1
  c0=$(server_cpu); s=$(date +%s.%N)
  "$@"
  e=$(date +%s.%N); c1=$(server_cpu)
  local got
  got=$(my -N -e "SELECT COUNT(*) FROM $db.contacts")
  [ "$got" = "$n" ] || { echo "$name: $got rows stored, $n expected" >&2; exit 1; }
  awk -v name="$name" -v s="$s" -v e="$e" -v n="$n" -v c="$((c1 - c0))" -v k="$tick" \
    'BEGIN { printf "%-44s %7.2f s %9.0f rows/s  mariadbd cpu %6.2f s\n", name, e - s, n / (e - s), c / k }'
}
one() { cat "$tmp/1.sql" "$tmp/2.sql" | my "$db"; }
two() { my "$db" < "$tmp/1.sql" & my "$db" < "$tmp/2.sql"; wait; }
server() { my "$db" -e "INSERT INTO contacts (email,first_name,last_name,stage,credit)
  SELECT CONCAT('user', seq, '@example.com'), CONCAT('First', seq), CONCAT('Last', seq),
    IF(seq % 2 = 0, 'lead', 'customer'), seq * 10 + 0.5 FROM seq_1_to_$n"; }
echo "== MariaDB alone: $n rows into the copy bench's table =="
measure "client, one connection, $batch rows a commit" one
measure "client, two connections at once" two
measure "in the server (INSERT ... SELECT, one commit)" server
