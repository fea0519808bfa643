#!/usr/bin/env bash
# Installs everything the build and the tests need that cargo does not fetch by itself.
# Idempotent: safe to run before every build.
set -euo pipefail
cd "$(dirname "$0")/.."

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

# The web dashboard, built to dashboard/dist for the host to embed (Node.js is needed to build
# it, not to run it).
./scripts/build-dashboard.sh
