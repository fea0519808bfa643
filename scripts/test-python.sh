#!/usr/bin/env bash
# The Python SDK as a developer gets it: a fresh virtualenv, `pip install ./python` (maturin builds
# ironhost._native from the host library), the official SDKs, then its pytest suite.
# Needs the host built (scripts/test.sh builds it first): one test runs `ironhost start`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/sdk-venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check ./python -r python/requirements-test.txt
# From outside python/, so `import ironhost` is the installed package, not the source folder.
"$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir python python/tests "$@"
