#!/usr/bin/env bash
# The main job: build ironhost (with the default policies built in), show the default bundle,
# run its chain on sample lead-generation requests, then run an agent on the official OpenAI
# SDK under `ironhost start` (offline: the built-in simulator answers). The lead-generation
# demo agent replaces the last step when it lands.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release -p ironhost

ironhost=./target/release/ironhost
bundle=default
input=tests/fixtures/inputs/default-bundle.jsonl

echo
echo "== ironhost policy list --bundle $bundle"
"$ironhost" policy list --bundle "$bundle"

echo
echo "== ironhost policy run --bundle $bundle --hook llm-request --input $input"
"$ironhost" policy run --bundle "$bundle" --hook llm-request --input "$input" |
    python3 scripts/summarize_run.py

echo
echo "== ironhost start examples/quickstart/agent.py --budget 5"
VIRTUAL_ENV="$PWD/.venv" "$ironhost" start examples/quickstart/agent.py --budget 5
