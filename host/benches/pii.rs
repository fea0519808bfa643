//! The pii-redact policy on the presidio-research corpus (`shared/bench/pii/`), run as the
//! compiled component through the real chain, in `warn` mode so every finding comes back as an
//! event. Prints precision/recall per entity (span overlap, same type) and the latency per
//! sample inside Wasm, per 100 characters, against the same detectors run natively in the same
//! run. Run with `cargo bench -p ironhost --bench pii`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ironhost::model::{CallContext, LlmRequest, Message, Role};
use ironhost::policy::Capability;
use ironhost::policy::admission::admit_policy;
use ironhost::policy::bundle::PolicyEntry;
use ironhost::policy::chain::Chain;
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;

const ENTITIES: [(&str, &str); 6] = [
    ("email", "EMAIL_ADDRESS"),
    ("phone", "PHONE_NUMBER"),
    ("credit_card", "CREDIT_CARD"),
    ("iban", "IBAN_CODE"),
    ("ssn", "US_SSN"),
    ("ip_address", "IP_ADDRESS"),
];

fn main() {
    // shared/ sits beside the checkout (as in CI); IRONHOST_SHARED points elsewhere.
    let shared = std::env::var("IRONHOST_SHARED")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").to_owned());
    let path = format!("{shared}/bench/pii/synth_dataset_v2.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (set IRONHOST_SHARED to the shared/ directory)"));
    let samples: Vec<serde_json::Value> = serde_json::from_str(&text).expect("dataset is JSON");
    // `cargo test --benches` / `cargo bench -- --test` pass --test: a quick pass over a few samples.
    let quick = std::env::args().any(|a| a == "--test");
    let samples = if quick { &samples[..50] } else { &samples[..] };

    let engine =
        PolicyEngine::new(EngineOptions::in_memory(16), HostServices::default()).expect("engine");
    let mut entry = PolicyEntry::for_component(PathBuf::from("builtin:pii-redact"));
    entry.capabilities = [Capability::Config, Capability::Events]
        .into_iter()
        .collect();
    entry.config = serde_json::json!({"mode": "warn"});
    let chain = Chain::new(
        "bench",
        vec![admit_policy(&engine, &entry).expect("admitted")],
    );
    let ctx = CallContext {
        agent_id: "bench".into(),
        call_id: "c".into(),
        environment: "dev".into(),
        attempt: 0,
    };

    let mut score: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
    let mut wasm = Vec::new();
    let mut native = Vec::new();
    let mut chars = 0usize;
    for round in 0..3 {
        for sample in samples {
            let full = sample["full_text"].as_str().expect("full_text");
            let request = LlmRequest {
                provider: "openai".into(),
                model: "gpt-4o-mini".into(),
                messages: vec![Message::text(Role::User, full)],
                tools: vec![],
                max_output_tokens: None,
                temperature: None,
                stream: false,
                extra: "{}".into(),
                credential: None,
            };
            let run = chain.on_llm_request(&ctx, request);
            let t = Instant::now();
            std::hint::black_box(pii_redact::detect::detect(std::hint::black_box(full)));
            let native_time = t.elapsed();
            if round < 2 {
                continue; // warm-up rounds
            }
            wasm.push(Duration::from_nanos(run.policies[0].latency_ns));
            native.push(native_time);
            chars += full.chars().count();
            let predicted: Vec<(&str, u64, u64)> = run
                .events()
                .filter_map(|e| {
                    let kind = e.detail["type"].as_str()?;
                    let entity = ENTITIES.iter().find(|(k, _)| *k == kind)?.1;
                    Some((
                        entity,
                        e.detail["start"].as_u64()?,
                        e.detail["end"].as_u64()?,
                    ))
                })
                .collect();
            let gold: Vec<(&str, u64, u64)> = sample["spans"]
                .as_array()
                .expect("spans")
                .iter()
                .filter_map(|s| {
                    let t = s["entity_type"].as_str()?;
                    let entity = ENTITIES.iter().find(|(_, e)| *e == t)?.1;
                    Some((
                        entity,
                        s["start_position"].as_u64()?,
                        s["end_position"].as_u64()?,
                    ))
                })
                .collect();
            let overlaps =
                |a: &(&str, u64, u64), b: &(&str, u64, u64)| a.0 == b.0 && a.1 < b.2 && b.1 < a.2;
            for p in &predicted {
                let e = score.entry(p.0).or_default();
                if gold.iter().any(|g| overlaps(p, g)) {
                    e.0 += 1
                } else {
                    e.1 += 1
                }
            }
            for g in &gold {
                if !predicted.iter().any(|p| overlaps(p, g)) {
                    score.entry(g.0).or_default().2 += 1;
                }
            }
        }
    }

    println!(
        "== pii-redact on synth_dataset_v2 ({} samples{}) ==",
        samples.len(),
        if quick { ", quick pass" } else { "" }
    );
    println!(
        "{:<14} {:>9} {:>9} {:>7}   presidio (p/r)",
        "entity", "precision", "recall", "f1"
    );
    let presidio = [
        ("EMAIL_ADDRESS", "1.00/1.00"),
        ("US_SSN", "1.00/1.00"),
        ("IBAN_CODE", "1.00/1.00"),
        ("IP_ADDRESS", "1.00/0.93"),
        ("CREDIT_CARD", "1.00/0.77"),
        ("PHONE_NUMBER", "0.41/0.25"),
    ];
    for (_, entity) in ENTITIES {
        let (tp, fp, fn_) = score.get(entity).copied().unwrap_or_default();
        let p = f64::from(tp) / f64::from((tp + fp).max(1));
        let r = f64::from(tp) / f64::from((tp + fn_).max(1));
        let f1 = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        let reference = presidio
            .iter()
            .find(|(e, _)| *e == entity)
            .map_or("-", |(_, v)| v);
        println!("{entity:<14} {p:>9.3} {r:>9.3} {f1:>7.3}   {reference}");
    }
    let summary = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
        (v[v.len() / 2], v[v.len() * 99 / 100], mean)
    };
    let n = wasm.len().max(1) as f64;
    let avg_chars = chars as f64 / n;
    let (w50, w99, wmean) = summary(&mut wasm);
    let (n50, n99, nmean) = summary(&mut native);
    let per100 = |d: Duration| d.as_secs_f64() * 1e6 * 100.0 / avg_chars;
    println!("samples average {avg_chars:.0} characters");
    println!(
        "inside Wasm (whole policy call)  p50 {:>7.2} µs  p99 {:>7.2} µs  mean {:>7.2} µs  = {:.2} µs per 100 chars",
        w50.as_secs_f64() * 1e6,
        w99.as_secs_f64() * 1e6,
        wmean.as_secs_f64() * 1e6,
        per100(wmean)
    );
    println!(
        "native detectors only            p50 {:>7.2} µs  p99 {:>7.2} µs  mean {:>7.2} µs  = {:.2} µs per 100 chars",
        n50.as_secs_f64() * 1e6,
        n99.as_secs_f64() * 1e6,
        nmean.as_secs_f64() * 1e6,
        per100(nmean)
    );
    println!(
        "ratio wasm/native (mean): {:.1}x; target <= 20 µs per 100 chars; Presidio ~6800 µs per sample",
        wmean.as_secs_f64() / nmean.as_secs_f64().max(1e-9)
    );
}
