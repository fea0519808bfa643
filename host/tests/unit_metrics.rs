//! The operator's figures end to end: an agent under `ironhost start` (the offline simulator,
//! the default bundle with a short circuit cooldown, and a fixture policy that refuses a tool
//! and flags a prompt injection) reports units of work; the control plane's `GET /api/agents`
//! shows exactly its counts, rates, throughput and seconds, the refused tool as unauthorized
//! (the circuit's refusal not), the injection, and the time its circuit was open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

mod common;
#[path = "common/plane.rs"]
mod plane;
use common::repo;
use plane::*;

/// The default bundle with a 1 s circuit cooldown, then `tool-guard` refusing `crm_delete` and
/// flagging `IGNORE PREVIOUS INSTRUCTIONS`.
fn bundle(dir: &Path) -> PathBuf {
    let default = std::fs::read_to_string(repo().join("policies/bundles/default.toml"))
        .expect("the default bundle's manifest");
    let cooldown = "cooldown-ms = 60000\n";
    assert!(default.contains(cooldown), "the default bundle changed");
    let manifest = format!(
        "{}\n[[policy]]\ncomponent = {:?}\ncapabilities = [\"config\", \"events\"]\n\
         [policy.config]\ndeny-tools = [\"crm_delete\"]\n\
         injection-marker = \"IGNORE PREVIOUS INSTRUCTIONS\"\n",
        default.replacen(cooldown, "cooldown-ms = 1000\n", 1),
        ironhost_fixtures::TOOL_GUARD
    );
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).expect("a bundle directory");
    std::fs::write(bundle.join("bundle.toml"), manifest).expect("bundle.toml written");
    bundle
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number: {v}"))
}

#[test]
fn an_agents_units_refusals_injections_and_circuit_time_reach_the_api() {
    serial(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = dir.path().join("home");
        let bundle = bundle(dir.path());
        let mut p = start(
            dir.path(),
            &home,
            MASTER_KEY,
            &[
                "--bundle",
                bundle.to_str().expect("UTF-8 path"),
                "--budget",
                "0.5",
                &agent("units.py"),
            ],
        );
        let (id, _) = started(&mut p, false).await;
        let status = p.wait_exit(Duration::from_secs(60)).await;
        let lines = p.lines();
        assert!(status.success(), "{}", p.report());
        for expected in [
            "unit raised",
            "denied: tool_forbidden",
            "circuit: circuit_open",
            "trial: {'n': 3}",
            "done",
        ] {
            assert!(
                lines.iter().any(|l| l == expected),
                "no `{expected}` line: {}",
                p.report()
            );
        }

        let (_serve, base) = serve(dir.path(), &home).await;
        let api = Api::login(&base).await;
        let (code, list) = api.get("/api/agents").await;
        assert_eq!(code, 200, "{list}");
        let entry = list
            .as_array()
            .expect("a list")
            .iter()
            .find(|a| a["agent"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} is not listed: {list}"))
            .clone();
        let m = &entry["metrics"];
        let units = &m["units"];
        // Six units: 1 s, 2 s (cache), 4 s (placeholder), 3 s (failed), a timed one, and one
        // that raised (failed).
        assert_eq!(
            (
                &units["unit"],
                &units["done"],
                &units["ok"],
                &units["failed"],
                &units["fallback"]
            ),
            (&json!("leads"), &json!(6), &json!(4), &json!(2), &json!(2)),
            "{units}"
        );
        assert_eq!(f(&units["success_rate"]), 4.0 / 6.0);
        assert_eq!(f(&units["fallback_rate"]), 2.0 / 6.0);
        assert!(f(&units["per_hour"]) > 0.0, "{units}");
        // Nearest rank of six: p50 is the 3rd smallest, p95 and p99 the largest (4 s).
        assert_eq!(f(&units["seconds"]["p50"]), 1.0, "{units}");
        assert_eq!(f(&units["seconds"]["p95"]), 4.0, "{units}");
        assert_eq!(f(&units["seconds"]["p99"]), 4.0, "{units}");
        // The forbidden tool, not the open circuit's refusal.
        assert_eq!(m["denials"], 2, "{m}");
        assert_eq!(m["unauthorized"], 1, "{m}");
        // The fixture's marker and the default chain's prompt-guard each report the attempt.
        assert_eq!(m["injections"], 2, "{m}");
        // Open from the 5th failure until the trial call after the 1 s cooldown.
        let open = f(&m["circuit_open_s"]);
        assert!((1.0..30.0).contains(&open), "{m}");
        let run = f(&m["uptime_s"]);
        let pct = f(&m["uptime_pct"]);
        assert!(
            (pct - (run - open) * 100.0 / run).abs() < 0.5 && pct < 100.0,
            "{m}"
        );

        // The budget alerts' advice: all six leads are done, so the projection is the spend,
        // well within $0.50.
        let spent = f(&m["cost_usd"]);
        assert_eq!(
            m["recommended_action"],
            json!(format!(
                "No increase needed: projected ${spent:.2} of $0.50"
            )),
            "{m}"
        );
        assert_eq!(m["recommended_increase_usd"], Value::Null, "{m}");

        // The same figures on the agent's own metrics route, and the events behind them.
        let (code, one) = api.get(&format!("/api/agents/{id}/metrics")).await;
        assert_eq!(code, 200, "{one}");
        assert_eq!(one["units"], m["units"]);
        let events = api.events(&id).await;
        assert_eq!(of_type(&events, "unit_done").len(), 6);
        let injection = of_type(&events, "prompt_injection");
        let mut by: Vec<&str> = injection
            .iter()
            .map(|e| e["policy"].as_str().unwrap_or("?"))
            .collect();
        by.sort_unstable();
        assert_eq!(by, ["prompt-guard", "tool-guard"], "{:?}", types(&events));
        assert!(
            injection.iter().all(|e| e["severity"] == "high"),
            "{injection:?}"
        );
        assert_eq!(of_type(&events, "circuit_opened").len(), 1);
        assert_eq!(of_type(&events, "circuit_closed").len(), 1);
    });
}
