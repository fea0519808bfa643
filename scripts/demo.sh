#!/usr/bin/env bash
# The main job: build ironhost and its policy components, then run the policy chain.
# Until the agent runtime lands this shows the fixture bundle: its policies in order and
# what the chain does to a few sample LLM requests.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release -p ironhost -p ironhost-fixtures

ironhost=./target/release/ironhost
bundle=tests/fixtures/bundle

echo
echo "== ironhost policy list --bundle $bundle"
"$ironhost" policy list --bundle "$bundle"

echo
echo "== ironhost policy run --bundle $bundle --hook llm-request --input tests/fixtures/inputs/requests.jsonl"
"$ironhost" policy run --bundle "$bundle" --hook llm-request --input tests/fixtures/inputs/requests.jsonl |
    python3 scripts/summarize_run.py
