#!/usr/bin/env bash
# Installs the API clients the sandbox fidelity tests drive, pinned:
# HubSpot's Python client and hubspot3 (a maintained client of HubSpot's
# legacy endpoints) into .clients/venv, HubSpot's Node client with npm ci.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
clients="$root/connectors/hubspot/sandbox/tests/clients"
venv="$root/.clients/venv"
if ! "$venv/bin/python" -c 'import hubspot, hubspot3' 2>/dev/null; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$clients/requirements.txt"
fi
node_dir="$clients/node"
if [ ! -d "$node_dir/node_modules/@hubspot/api-client" ]; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --silent)
fi
echo "official clients ready: $("$venv/bin/pip" show hubspot-api-client | grep ^Version), hubspot3 $("$venv/bin/pip" show hubspot3 | grep ^Version | cut -d' ' -f2), node $(node -p "require('$node_dir/node_modules/@hubspot/api-client/package.json').version")"
