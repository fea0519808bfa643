#!/usr/bin/env bash
# Installs everything the build and the tests need that cargo does not fetch by itself.
# Idempotent: safe to run before every build.
set -euo pipefail

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target (policies are built for it)"
    rustup target add wasm32-wasip2
fi
