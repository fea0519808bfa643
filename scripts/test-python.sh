#!/usr/bin/env bash
# The Python SDK as a developer gets it: a fresh virtualenv, `pip install ./python` (maturin builds
# ironhost._native from the host library), the official SDKs, then its pytest suite, examples
# included. CrewAI pins openai<3, so its examples get a second fresh virtualenv.
# Needs the host built (scripts/test.sh builds it first): one test runs `ironhost start`.
set -euo pipefail
cd "$(dirname "$0")/.."

pip_install() {
    "$1/bin/pip" install -q --disable-pip-version-check "${@:2}"
}

venv=target/sdk-venv
crew=target/crewai-venv
rm -rf "$venv" "$crew"
python3 -m venv "$venv"
pip_install "$venv" ./python -r python/requirements-test.txt
python3 -m venv "$crew"
pip_install "$crew" ./python -r examples/python/crewai/requirements.txt
# From outside python/, so `import ironhost` is the installed package, not the source folder.
CREWAI_PYTHON="$PWD/$crew/bin/python" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir python python/tests "$@"
