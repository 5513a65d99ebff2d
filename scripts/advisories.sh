#!/usr/bin/env bash
# `cargo deny check advisories` against the RustSec advisory database: the one
# fetched now where it can be fetched (the newest), else the snapshot in
# ../shared/advisory-db (its SNAPSHOT.md names the commit and date). Says which
# one it checked against. With neither, it fails: advisories are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'advisories: %s\n' "$*" >&2; }

url=https://github.com/RustSec/advisory-db
snapshot=../shared/advisory-db

if timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
    about="newest"
    dir=$(ls -dt "${CARGO_HOME:-$HOME/.cargo}"/advisory-dbs/advisory-db-*/ 2>/dev/null | head -n1 || true)
    if [ -n "$dir" ] && head=$(git -C "$dir" log -1 --format='%h, %cs' 2>/dev/null); then
        about="commit $head"
    fi
    say "checking against the RustSec database fetched now ($about)"
    exec cargo deny --log-level error check advisories
fi

if [ ! -f "$snapshot/SNAPSHOT.md" ]; then
    say "FAILED: the RustSec database cannot be fetched from this machine and there is no snapshot at $snapshot"
    exit 1
fi

# cargo-deny reads a database only from a git repository under its db-path
# (and, offline, never fetches one). So the snapshot becomes a git repository,
# committed once, in a temporary folder; a copy of deny.toml points db-path
# there; and git is told to take the upstream URL from that repository, so that
# `cargo deny fetch db` clones it to the very place under db-path where
# cargo-deny looks for it. The check itself then runs offline.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

commit=$(grep -o '[0-9a-f]\{40\}' "$snapshot/SNAPSHOT.md" | head -n1 | cut -c1-12 || true)
date=$(grep -o '([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\})' "$snapshot/SNAPSHOT.md" | head -n1 | tr -d '()' || true)

mkdir "$tmp/snapshot"
cp -a "$snapshot/." "$tmp/snapshot/"
git -C "$tmp/snapshot" init -q -b main
git -C "$tmp/snapshot" add -A
git -C "$tmp/snapshot" -c user.name=scripts/advisories.sh -c user.email=advisories@localhost \
    -c commit.gpgsign=false -c core.hooksPath=/dev/null \
    commit -q -m "RustSec advisory database, snapshot of commit ${commit:-unknown} (${date:-undated})"

awk -v path="$tmp/dbs" -v url="$url" '
    function point() { print "db-path = \"" path "\""; print "db-urls = [\"" url "\"]" }
    { print }
    /^\[advisories\][[:space:]]*$/ { point(); done = 1 }
    END { if (!done) { print "[advisories]"; point() } }
' deny.toml >"$tmp/deny.toml"

n=${GIT_CONFIG_COUNT:-0}
env GIT_CONFIG_COUNT=$((n + 1)) \
    "GIT_CONFIG_KEY_$n=url.file://$tmp/snapshot.insteadOf" "GIT_CONFIG_VALUE_$n=$url" \
    cargo deny --log-level error --config "$tmp/deny.toml" fetch db

age=""
if [ -n "$date" ] && then=$(date -u -d "$date" +%s 2>/dev/null); then
    age=", $(( ($(date -u +%s) - then) / 86400 )) days old"
fi
say "the RustSec database cannot be fetched from this machine;" \
    "checking against the snapshot in $snapshot (commit ${commit:-unknown}, ${date:-undated}$age)"
cargo deny --log-level error --offline --config "$tmp/deny.toml" check advisories
