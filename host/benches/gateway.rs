//! What ironhost adds to one LLM call, in-process. Run with
//! `cargo bench -p ironhost --bench gateway`.
//!
//! - `gateway/direct`: the simulator answering an OpenAI chat-completions body (2 KB prompt)
//!   by itself: parse, count tokens, render the answer. The baseline.
//! - `gateway/through-host`: the same body through the whole call path as an SDK's request
//!   reaches it: parse, the default bundle's `on-llm-request`, re-render, the simulator (zero
//!   latency), the bundle's `on-llm-response`, pricing, metrics, the event bus and the log call.
//!
//! - `gateway/through-host-recorded`: the same, with the control plane's parts attached as
//!   `ironhost start` attaches them: policy state written behind to SQLite (the agent's own keys
//!   journaled to a file before each answer), the secret store,
//!   the recorder writing every event, and the WebSocket feed serializing them. The difference
//!   to `through-host` is what the store costs the call path (it should be noise: writes are
//!   batched off the path).
//!
//! - `gateway/through-worker-link`: the same as `through-host`, sent the way `ironhost start`
//!   sends it from the agent's process: framed over a Unix socket pair to the host's side of
//!   the worker link, served there on a pool thread, and the answer framed back (both ends in
//!   this process here). The difference to `through-host` is what running the agent in a
//!   process of its own costs per call.
//!
//! - `gateway/responses-direct` and `gateway/responses-through-host`: the same two for the same
//!   prompt as an OpenAI Responses API body (`instructions` and an `input` item), the path
//!   the `openai-agents` SDK and pydantic-ai's `openai:` models take.
//!
//! After criterion's report a summary prints p50/p99 of single calls of each and the difference:
//! the latency ironhost adds per call. `IRONHOST_BENCH_WITHOUT=<policy>` runs the default bundle
//! without one of its policies, for that policy's share against a run with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use ironhost::api::ws;
use ironhost::core::plane::Plane;
use ironhost::events::EventBus;
use ironhost::gateway::{Gateway, GatewayOptions, GatewayReply, HttpRequest, LlmMode};
use ironhost::llm::api::Api;
use ironhost::llm::simulator::{Simulator, SimulatorConfig};
use ironhost::model::AgentInfo;
use ironhost::model::TokenMeter;
use ironhost::model::tokens::ModelTokenMeter;
use ironhost::policy::admit_bundle;
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;
use ironhost::store::recorder::Recorder;
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

/// The control plane's parts, kept alive for the benchmark.
struct Recorded {
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn setup_recorded() -> (Arc<Gateway>, Recorded) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let vars = BTreeMap::from([
        (
            "IRONHOST_MASTER_KEY".to_owned(),
            "bench-master-key-0123456789".to_owned(),
        ),
        (
            "IRONHOST_ADMIN_PASSWORD".to_owned(),
            "bench-password".to_owned(),
        ),
    ]);
    let _entered = runtime.enter();
    let plane = runtime
        .block_on(Plane::open(dir.path(), &vars))
        .expect("plane");
    // As `ironhost start` does: the agent's own state changes are journaled before each answer.
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(&agents).expect("agents dir");
    plane
        .state
        .attach_journal(&agents, "bench-00000000")
        .expect("journal");
    let meter: Arc<dyn TokenMeter> = Arc::new(ModelTokenMeter::embedded());
    let bus = EventBus::new();
    let _recorder = Recorder::spawn(plane.store.clone(), &bus, plane.recorder_keys());
    ws::feed_from_bus(&bus, ws::feed());
    let (gateway, _) = build(plane.services(meter.clone()), meter, bus);
    drop(_entered);
    (
        gateway,
        Recorded {
            _dir: dir,
            _runtime: runtime,
        },
    )
}

fn setup() -> (Arc<Gateway>, Arc<Simulator>) {
    let meter: Arc<dyn TokenMeter> = Arc::new(ModelTokenMeter::embedded());
    let services = HostServices {
        tokens: meter.clone(),
        ..HostServices::default()
    };
    build(services, meter, EventBus::new())
}

fn build(
    services: HostServices,
    meter: Arc<dyn TokenMeter>,
    bus: EventBus,
) -> (Arc<Gateway>, Arc<Simulator>) {
    let engine = PolicyEngine::new(EngineOptions::in_memory(64), services).expect("engine");
    let mut bundle = ironhost::policy::defaults::default_bundle().expect("default bundle");
    // `IRONHOST_BENCH_WITHOUT=prompt-guard`: the default bundle without that policy, to
    // measure its share of the figures against a run with it.
    if let Ok(without) = std::env::var("IRONHOST_BENCH_WITHOUT") {
        let before = bundle.policies.len();
        bundle
            .policies
            .retain(|p| p.builtin_name() != Some(without.as_str()));
        assert!(
            bundle.policies.len() < before,
            "IRONHOST_BENCH_WITHOUT={without}: the default bundle has no such policy"
        );
    }
    for p in &mut bundle.policies {
        if p.builtin_name() == Some("budget") {
            // Enough for every iteration criterion may run.
            p.config["limit-usd"] = serde_json::json!(1.0e9);
        }
    }
    let chain = admit_bundle(&engine, &bundle).expect("admit");
    let simulator = Arc::new(Simulator::new(SimulatorConfig::default(), meter.clone()));
    let agent = AgentInfo {
        agent_id: "bench-00000000".into(),
        name: "bench".into(),
        environment: "dev".into(),
    };
    let gateway = Gateway::builder(Arc::new(chain), agent, meter)
        .simulator(simulator.clone())
        .bus(bus)
        .options(GatewayOptions {
            mode: LlmMode::Simulator,
            ..GatewayOptions::default()
        })
        .build();
    (Arc::new(gateway), simulator)
}

/// [`body_2kb`]'s prompt as a Responses API body.
fn responses_2kb(n: u64) -> Vec<u8> {
    let chat: serde_json::Value = serde_json::from_slice(&body_2kb(n)).expect("JSON");
    serde_json::json!({
        "model": "gpt-4o-mini",
        "instructions": chat["messages"][0]["content"],
        "input": [{"role": "user", "content": [
            {"type": "input_text", "text": chat["messages"][1]["content"]}]}],
        "max_output_tokens": 256,
        "temperature": 0.2,
    })
    .to_string()
    .into_bytes()
}

fn request(body: &[u8]) -> HttpRequest {
    request_to("/v1/chat/completions", body)
}

fn request_to(path: &str, body: &[u8]) -> HttpRequest {
    HttpRequest {
        upstream: if path.ends_with("/messages") {
            "anthropic"
        } else {
            "openai"
        }
        .into(),
        method: "POST".into(),
        path: path.into(),
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
static RECORDED: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
static LINKED: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
static RESPONSES_DIRECT: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
static RESPONSES_HOST: Mutex<Vec<Duration>> = Mutex::new(Vec::new());

fn through(
    gateway: &Arc<Gateway>,
    n: &mut u64,
    iters: u64,
    samples: &Mutex<Vec<Duration>>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        *n += 1;
        let req = request(&body_2kb(*n));
        let t = Instant::now();
        let reply = gateway.handle(req, &|| false);
        let d = t.elapsed();
        assert!(matches!(reply, Ok(GatewayReply::Full { status: 200, .. })));
        samples.lock().push(d);
        total += d;
    }
    total
}

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
        b.iter_custom(|iters| through(&gateway, &mut n, iters, &HOST))
    });
    let (linked, _) = setup();
    let (theirs, mine) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    let writer = mine.try_clone().expect("socket");
    let _link = ironhost::agent::worker::serve(linked, mine, writer).expect("link");
    let remote =
        ironhost::agent::remote::Remote::connect(theirs, Box::new(|_, _| {})).expect("remote");
    g.bench_function("through-worker-link", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let req = request(&body_2kb(n));
                let t = Instant::now();
                let reply = remote.http(req, &|| false);
                let d = t.elapsed();
                assert!(matches!(
                    reply,
                    Ok(ironhost::agent::remote::RemoteReply::Full { status: 200, .. })
                ));
                LINKED.lock().push(d);
                total += d;
            }
            total
        })
    });
    g.bench_function("responses-direct", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let body = responses_2kb(n);
                let t = Instant::now();
                std::hint::black_box(simulator.handle(Api::Responses, &body));
                let d = t.elapsed();
                RESPONSES_DIRECT.lock().push(d);
                total += d;
            }
            total
        })
    });
    g.bench_function("responses-through-host", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let req = request_to("/v1/responses", &responses_2kb(n));
                let t = Instant::now();
                let reply = gateway.handle(req, &|| false);
                let d = t.elapsed();
                assert!(matches!(reply, Ok(GatewayReply::Full { status: 200, .. })));
                RESPONSES_HOST.lock().push(d);
                total += d;
            }
            total
        })
    });
    let (recorded, _parts) = setup_recorded();
    g.bench_function("through-host-recorded", |b| {
        b.iter_custom(|iters| through(&recorded, &mut n, iters, &RECORDED))
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
    let (rd50, rd99, rdn) = percentiles(&RESPONSES_DIRECT);
    let (rh50, rh99, rhn) = percentiles(&RESPONSES_HOST);
    println!("  responses, direct  p50 {rd50:8.1}  p99 {rd99:8.1}  ({rdn} calls)");
    println!("  responses, host    p50 {rh50:8.1}  p99 {rh99:8.1}  ({rhn} calls)");
    println!(
        "  added (responses)  p50 {:8.1}  p99 {:8.1}  (targets: p50 <= 100, p99 <= 300)",
        rh50 - rd50,
        rh99 - rd99
    );
    let (l50, l99, ln) = percentiles(&LINKED);
    println!("  across the worker  p50 {l50:8.1}  p99 {l99:8.1}  ({ln} calls)");
    println!(
        "  worker vs in-host  p50 {:+8.1}  p99 {:+8.1}  (ratio p50 {:.2})",
        l50 - h50,
        l99 - h99,
        if h50 > 0.0 { l50 / h50 } else { 0.0 }
    );
    let (r50, r99, rn) = percentiles(&RECORDED);
    println!("  with the store     p50 {r50:8.1}  p99 {r99:8.1}  ({rn} calls)");
    println!(
        "  store vs in-memory p50 {:+8.1}  p99 {:+8.1}  (ratio p50 {:.2})",
        r50 - h50,
        r99 - h99,
        if h50 > 0.0 { r50 / h50 } else { 0.0 }
    );
}
