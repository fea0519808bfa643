#!/usr/bin/env bash
# The main job: build ironhost (with the default policies built in), then run the default
# bundle's chain on sample lead-generation requests. Until the agent runtime lands this shows
# the policies in order and what they do to each request; then it runs the lead-gen agent.
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
