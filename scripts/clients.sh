#!/usr/bin/env bash
# Installs the vendors' official API clients the sandbox fidelity tests drive:
# HubSpot's Python client into .clients/venv, its Node client with npm ci.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
clients="$root/connectors/hubspot/sandbox/tests/clients"
venv="$root/.clients/venv"
if ! "$venv/bin/python" -c 'import hubspot' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$clients/requirements.txt"
fi
node_dir="$clients/node"
if [ ! -d "$node_dir/node_modules/@hubspot/api-client" ]; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --silent)
fi
echo "official clients ready: $("$venv/bin/pip" show hubspot-api-client | grep ^Version), node $(node -p "require('$node_dir/node_modules/@hubspot/api-client/package.json').version")"
