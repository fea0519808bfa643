#!/usr/bin/env bash
# The main job: build ironhost (with the default policies built in), list the default bundle,
# and run the lead-generation demo agent (examples/lead_gen) under it, offline on the built-in
# simulator: 100 leads, a LinkedIn rate limit at lead 34, an email in a model answer at lead 67,
# the budget warning at lead 85. Open the dashboard URL it prints while it runs.
#
# Each run keeps its own store in examples/lead_gen/.runs/<time>/ (the circuit breaker
# remembers failing services across runs, as it should in production; a fresh store makes
# every demo run start clean). Arguments go to the agent: ./scripts/demo.sh --pace 30m.
# IRONHOST_BUDGET sets the budget (default 50): IRONHOST_BUDGET=20 ./scripts/demo.sh stops with
# BudgetExceeded.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release -p ironhost

repo=$PWD
ironhost=$repo/target/release/ironhost
run=$repo/examples/lead_gen/.runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$run"

echo
echo "== ironhost policy list --bundle default"
"$ironhost" policy list --bundle default

echo
budget=${IRONHOST_BUDGET:-50}
echo "== ironhost start agent.py --budget $budget   (in examples/lead_gen; store in ${run#"$repo"/})"
cd examples/lead_gen
status=0
IRONHOST_HOME="$run" VIRTUAL_ENV="$repo/.venv" \
    "$ironhost" start agent.py --budget "$budget" -- --out "$run/qualified_leads.csv" "$@" || status=$?

echo
echo "The run's store, results and audit are in ${run#"$repo"/}. To look at it again in the dashboard:"
echo "  IRONHOST_HOME=${run#"$repo"/} ./target/release/ironhost serve"
exit "$status"
