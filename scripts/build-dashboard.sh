#!/usr/bin/env bash
# Builds the web dashboard (dashboard/, Vue + TypeScript + Vite) to dashboard/dist, which the
# host's build script embeds in the ironhost binary. Node.js is needed here only, never at run
# time. npm installs exactly what package-lock.json pins (`npm install` with the lock file, not
# `npm ci`: npm 11 here rejects this lock file's unused optional platform packages in `ci`; the
# lock file must come out unchanged, or the build stops).
set -euo pipefail
cd "$(dirname "$0")/../dashboard"

if ! command -v npm >/dev/null; then
    echo "build-dashboard: npm (Node.js 20.19+) is needed to build the dashboard" >&2
    exit 1
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "build-dashboard: installing the dashboard's npm packages"
    pinned=$(mktemp)
    cp package-lock.json "$pinned"
    npm install --no-audit --no-fund --loglevel=error
    if ! cmp -s "$pinned" package-lock.json; then
        cp "$pinned" package-lock.json
        rm -f "$pinned"
        echo "build-dashboard: package.json and package-lock.json disagree; run npm install in dashboard/ and commit the lock file" >&2
        exit 1
    fi
    rm -f "$pinned"
fi
# Type errors and build errors are printed as the tools word them.
npm run --silent build
echo "build-dashboard: dashboard/dist is up to date"
