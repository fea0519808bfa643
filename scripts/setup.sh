#!/usr/bin/env bash
# Installs everything the build and the tests need that cargo does not fetch by itself.
# Idempotent: safe to run before every build.
set -euo pipefail
cd "$(dirname "$0")/.."

# A full disk shows up much later as a linker crash (signal 7, Bus error) with no word about space,
# so say it up front. A clean build of everything and the whole test run take about 5 GiB.
free_mib=$(df -Pm . 2>/dev/null | awk 'NR == 2 { print $4 }' || true)
if [[ "$free_mib" =~ ^[0-9]+$ ]] && [ "$free_mib" -lt 6144 ]; then
    echo "setup: warning: only ${free_mib} MiB free on the disk of $PWD; a clean build and the" \
        "tests need about 5 GiB, and the linker fails with 'Bus error' when the disk fills" >&2
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target (policies are built for it)"
    rustup target add wasm32-wasip2
fi

# A virtualenv with the official SDKs, for the agents the demo and the tests run. ironhost embeds
# the Python it was built against, so the virtualenv is made with that same python3.
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv (Python packages for the agents)"
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r python/requirements-test.txt

# A PostgreSQL server for the store's tests on PostgreSQL (scripts/test.sh starts a throwaway
# one; Debian's postgresql, installed unless an initdb is there already).
./scripts/postgres.sh install

# The web dashboard, built to dashboard/dist for the host to embed (Node.js is needed to build
# it, not to run it).
./scripts/build-dashboard.sh
