#!/usr/bin/env bash
# The whole test suite: database servers readied, formatting, lints, every test.
#   PUENTE_CRASH_TRIALS=200 scripts/test.sh   # a longer crash soak
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
scripts/clients.sh
scripts/browser.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Licenses, bans and sources of every dependency.
command -v cargo-deny >/dev/null || cargo install --locked cargo-deny
cargo deny --log-level error check licenses bans sources
# Advisories need the RustSec database, which is fetched from GitHub: checked
# wherever it can be fetched, and said so where it cannot.
if timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
    cargo deny --log-level error check advisories
else
    echo "advisories: NOT checked, the RustSec database cannot be fetched from this machine" >&2
fi
cargo test --workspace
