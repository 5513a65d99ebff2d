#!/usr/bin/env bash
# Installs what the dashboard's browser test drives: Debian's Chromium and
# playwright-core (pinned, with its lockfile) from npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v chromium >/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
dir="$root/crates/puente/tests/browser"
if [ ! -d "$dir/node_modules/playwright-core" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
fi
echo "browser ready: $(chromium --version 2>/dev/null | head -1), playwright-core $(node -p "require('$dir/node_modules/playwright-core/package.json').version")"
