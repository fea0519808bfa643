#!/usr/bin/env bash
# Builds the web dashboard (dashboard/, Vue + TypeScript + Vite) to dashboard/dist, which the
# host's build script embeds in the ironhost binary. Node.js is needed here only, never at run
# time. npm installs exactly what package-lock.json pins.
set -euo pipefail
cd "$(dirname "$0")/../dashboard"

if ! command -v npm >/dev/null; then
    echo "build-dashboard: npm (Node.js 20.19+) is needed to build the dashboard" >&2
    exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "build-dashboard: installing the dashboard's npm packages"
    npm ci --no-audit --no-fund --loglevel=error
fi
npm run --silent build >/dev/null
echo "build-dashboard: dashboard/dist is up to date"
