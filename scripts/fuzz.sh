#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECS seconds each (default 120), keeping
# the corpus in fuzz/corpus/<target>. Installs cargo-fuzz when missing.
#   FUZZ_SECS=3600 scripts/fuzz.sh            # an hour per target
#   scripts/fuzz.sh config csv                # some targets only
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
# cargo fuzz passes unstable flags; the stable toolchain accepts them with
# RUSTC_BOOTSTRAP. No sanitizer: the code forbids unsafe, panics are the findings.
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(config hubspot_webhook json_webhook csv value_convert)
failed=0
for t in "${targets[@]}"; do
    echo "== $t (${FUZZ_SECS:-120} s)"
    log="$(mktemp)"
    if cargo fuzz run --sanitizer none "$t" -- -max_total_time="${FUZZ_SECS:-120}" >"$log" 2>&1; then
        grep -E "^Done" "$log" || true
    else
        failed=1
        grep -E "panicked|ERROR|SUMMARY|artifact" "$log" || tail -20 "$log"
    fi
    rm -f "$log"
done
exit $failed
