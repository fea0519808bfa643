#!/usr/bin/env bash
# Runs every test: unit, integration (real components on a real engine) and CLI tests.
# One profile (release) for everything, so CI builds each crate once.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# The agent frameworks of the compatibility suite (host/tests/compat.rs), in .venv-compat.
./scripts/setup-compat.sh
./scripts/setup-browser.sh
cargo test --release --workspace
# The benchmark, once through each case (criterion's test mode), so it cannot rot unnoticed.
cargo bench -p ironhost --bench chain -- --test
cargo bench -p ironhost --bench pii -- --test
cargo bench -p ironhost --bench gateway -- --test
# The Python SDK from a fresh virtualenv (after every cargo step: maturin builds the host library
# as an extension module, which cargo would otherwise rebuild back and forth).
./scripts/test-python.sh
# The dashboard in a real browser (headless Debian Chromium) against the real binary.
(cd dashboard && npm test)
