//! What ironhost adds to one LLM call, in-process. Run with
//! `cargo bench -p ironhost --bench gateway`.
//!
//! - `gateway/direct`: the simulator answering an OpenAI chat-completions body (2 KB prompt)
//!   by itself: parse, count tokens, render the answer. The baseline.
//! - `gateway/through-host`: the same body through the whole call path as an SDK's request
//!   reaches it: parse, the default bundle's `on-llm-request`, re-render, the simulator (zero
//!   latency), the bundle's `on-llm-response`, pricing, metrics, the event bus and the log call.
//!
//! After criterion's report a summary prints p50/p99 of single calls of each and the difference:
//! the latency ironhost adds per call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use ironhost::agent::events::EventBus;
use ironhost::agent::gateway::{Gateway, GatewayOptions, GatewayReply, HttpRequest, LlmMode};
use ironhost::agent::metrics::Metrics;
use ironhost::llm::simulator::{Simulator, SimulatorConfig};
use ironhost::llm::tokens::ModelTokenMeter;
use ironhost::llm::wire::Api;
use ironhost::policy::admit_bundle;
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::{HostServices, NoSecrets, TokenMeter};
use ironhost::policy::model::AgentInfo;
use parking_lot::Mutex;

/// A 2 KB request; `n` makes each call's prompt unique, so nothing cached in one call helps
/// the next (real agents rarely send the same prompt twice).
fn body_2kb(n: u64) -> Vec<u8> {
    let system = "You are a research assistant for a sales team. Answer briefly and cite sources. ";
    let mut user = String::new();
    while user.len() < 2048 - system.len() {
        user.push_str("Find the head of engineering at Acme Robotics and summarise their talks. ");
    }
    user.truncate(2048 - system.len() - 24);
    user.push_str(&format!(" (lead {n:>12})."));
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": 256,
        "temperature": 0.2,
    })
    .to_string()
    .into_bytes()
}

fn setup() -> (Arc<Gateway>, Arc<Simulator>) {
    let meter: Arc<dyn TokenMeter> = Arc::new(ModelTokenMeter::embedded());
    let services = HostServices {
        tokens: meter.clone(),
        ..HostServices::default()
    };
    let engine = PolicyEngine::new(EngineOptions::in_memory(64), services).expect("engine");
    let mut bundle = ironhost::policy::defaults::default_bundle().expect("default bundle");
    for p in &mut bundle.policies {
        if p.builtin_name() == Some("budget") {
            // Enough for every iteration criterion may run.
            p.config["limit-usd"] = serde_json::json!(1.0e9);
        }
    }
    let chain = admit_bundle(&engine, &bundle).expect("admit");
    let simulator = Arc::new(Simulator::new(SimulatorConfig::default(), meter.clone()));
    let gateway = Gateway::new(
        Arc::new(chain),
        simulator.clone(),
        None,
        Arc::new(NoSecrets),
        BTreeMap::new(),
        meter,
        EventBus::new(),
        Arc::new(Metrics::default()),
        AgentInfo {
            agent_id: "bench-00000000".into(),
            name: "bench".into(),
            environment: "dev".into(),
        },
        GatewayOptions {
            mode: LlmMode::Simulator,
            ..GatewayOptions::default()
        },
    );
    (Arc::new(gateway), simulator)
}

fn request(body: &[u8]) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (
                "authorization".into(),
                "Bearer ironhost-placeholder-key".into(),
            ),
        ],
        body: body.to_vec(),
    }
}

static DIRECT: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
static HOST: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

fn benches(c: &mut Criterion) {
    let (gateway, simulator) = setup();
    let mut n = 0u64;
    let mut g = c.benchmark_group("gateway");
    g.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let body = body_2kb(n);
                let t = Instant::now();
                std::hint::black_box(simulator.handle(Api::OpenAi, &body));
                let d = t.elapsed();
                DIRECT.lock().push(d);
                total += d;
            }
            total
        })
    });
    g.bench_function("through-host", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let req = request(&body_2kb(n));
                let t = Instant::now();
                let reply = gateway.handle(req, &|| false);
                let d = t.elapsed();
                assert!(matches!(reply, Ok(GatewayReply::Full { status: 200, .. })));
                HOST.lock().push(d);
                total += d;
            }
            total
        })
    });
    g.finish();
}

fn percentiles(samples: &Mutex<Vec<Duration>>) -> (f64, f64, usize) {
    let mut v = samples.lock().clone();
    v.sort_unstable();
    let at = |p: f64| {
        let i = ((v.len().saturating_sub(1)) as f64 * p).round() as usize;
        v.get(i).map(|d| d.as_secs_f64() * 1e6).unwrap_or(0.0)
    };
    (at(0.5), at(0.99), v.len())
}

criterion_group!(gateway_benches, benches);

fn main() {
    gateway_benches();
    Criterion::default().configure_from_args().final_summary();
    let (d50, d99, dn) = percentiles(&DIRECT);
    let (h50, h99, hn) = percentiles(&HOST);
    println!("\nsummary (single calls, µs):");
    println!("  direct simulator   p50 {d50:8.1}  p99 {d99:8.1}  ({dn} calls)");
    println!("  through the host   p50 {h50:8.1}  p99 {h99:8.1}  ({hn} calls)");
    println!(
        "  added by ironhost  p50 {:8.1}  p99 {:8.1}  (targets: p50 <= 100, p99 <= 300)",
        h50 - d50,
        h99 - d99
    );
}
