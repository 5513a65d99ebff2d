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
# Advisories against the RustSec database: fetched where it can be, else the
# snapshot in ../shared/advisory-db; fails when neither is there.
scripts/advisories.sh
cargo test --workspace
