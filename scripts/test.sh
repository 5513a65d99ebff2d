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
# No unused dependencies. --with-metadata resolves each crate's dependencies
# through cargo, so dev-dependencies are checked too (without it, machete
# reads only [dependencies]). A false positive (a crate used only through a
# macro or a feature) goes in that crate's [package.metadata.cargo-machete]
# `ignored`, with a comment saying why.
command -v cargo-machete >/dev/null || cargo install --locked cargo-machete
cargo machete --with-metadata
# Advisories against the RustSec database: fetched where it can be, else the
# snapshot in ../shared/advisory-db; fails when neither is there.
scripts/advisories.sh
cargo test --workspace
