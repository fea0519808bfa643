#!/usr/bin/env bash
# Builds the web dashboard (dashboard/, Vue + TypeScript + Vite) to dashboard/dist, which the
# host's build script embeds in the ironhost binary. Node.js is needed here only, never at run
# time.
#
# The npm packages are installed with `npm ci`: exactly what package-lock.json pins, and a loud
# failure (npm's own message) when package.json and the lock disagree. The lock lists the
# optional platform packages of every platform (as a fresh `npm install` writes it), so the same
# lock installs on any machine. After a change to package.json, run `npm install` in dashboard/
# and commit package-lock.json.
#
# Usage: scripts/build-dashboard.sh [DASHBOARD_DIR]   (default: the repository's dashboard/;
# the tests build a clean copy of it).
set -euo pipefail
dir=${1:-"$(dirname "$0")/../dashboard"}
cd "$dir"

if ! command -v npm >/dev/null; then
    echo "build-dashboard: npm (Node.js 20.19+) is needed to build the dashboard" >&2
    exit 1
fi
if [ ! -f package-lock.json ]; then
    echo "build-dashboard: $PWD/package-lock.json is missing; run npm install there and commit it" >&2
    exit 1
fi
# npm ci starts from an empty node_modules, so install only when the lock changed since the last
# install (npm records what it installed in node_modules/.package-lock.json).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "build-dashboard: installing the dashboard's npm packages (npm ci, exactly as package-lock.json pins them)"
    if ! npm ci --no-audit --no-fund --loglevel=error; then
        echo "build-dashboard: npm ci failed in $PWD (if it says package.json and package-lock.json are not in sync: run npm install there and commit the lock file)" >&2
        exit 1
    fi
fi
# Type errors and build errors are printed as the tools word them.
npm run --silent build
echo "build-dashboard: $PWD/dist is up to date"
