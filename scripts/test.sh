#!/usr/bin/env bash
# Runs every test: unit, integration (real components on a real engine) and CLI tests.
# One profile (release) for everything, so CI builds each crate once.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# The agent frameworks of the compatibility suite (host/tests/compat.rs), in .venv-compat.
./scripts/setup-compat.sh
./scripts/setup-browser.sh
# One PostgreSQL server for the whole run, in a temporary directory, stopped and removed however
# the script ends: the store's tests run on it as well as on SQLite (each test makes a database
# of its own).
pg_dir=$(mktemp -d)
trap './scripts/postgres.sh stop "$pg_dir" || true; rm -rf "$pg_dir"' EXIT
trap 'exit 130' INT TERM
IRONHOST_TEST_POSTGRES_URL=$(./scripts/postgres.sh start "$pg_dir")
export IRONHOST_TEST_POSTGRES_URL
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
