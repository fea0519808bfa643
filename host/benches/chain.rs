//! Policy chain benchmarks. Run with `cargo bench -p ironhost --bench chain`.
//!
//! - `chain/wasm-4`: four `keyword-guard` components on a 2 KB request, through the real chain;
//! - `chain/native-4`: the same decision as plain Rust functions, measured in the same run;
//! - `load/warm-cache`: admitting a bundle of 4 different components (keyword-guard, rewrite,
//!   allow-all, deny-all) on a fresh engine whose disk cache is warm;
//! - `load/cold-compile`: the same with an empty cache (every component compiled).
//!
//! After criterion's own report, a summary prints p50/p99 of single chain runs and the
//! wasm/native ratio.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group};
use ironhost::model::{CallContext, ContentPart, LlmRequest, Message, Role};
use ironhost::policy::admit_bundle;
use ironhost::policy::bundle::Bundle;
use ironhost::policy::chain::{Chain, Outcome};
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::HostServices;
use parking_lot::Mutex;

const KEYWORDS: [&str; 4] = [
    "DROP TABLE",
    "rm -rf",
    "ignore previous instructions",
    "BEGIN PRIVATE KEY",
];

fn request_2kb() -> LlmRequest {
    let system = "You are a research assistant for a sales team. Answer briefly and cite sources. ";
    let mut user = String::new();
    while user.len() < 2048 - system.len() {
        user.push_str(
            "Find the head of engineering at Acme Robotics and summarise their recent talks. ",
        );
    }
    user.truncate(2048 - system.len());
    LlmRequest {
        provider: "openai".into(),
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::text(Role::System, system),
            Message::text(Role::User, user),
        ],
        tools: vec![],
        max_output_tokens: Some(256),
        temperature: Some(0.2),
        stream: false,
        extra: "{}".into(),
        credential: None,
    }
}

/// The native twin of `keyword-guard`: the same scan, as a plain function.
fn native_guard(keyword: &str, request: &LlmRequest) -> bool {
    request
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|p| matches!(p, ContentPart::Text { text } if text.contains(keyword)))
}

fn native_chain(request: &LlmRequest) -> Option<&'static str> {
    KEYWORDS.into_iter().find(|k| native_guard(k, request))
}

fn bundle_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut manifest = String::from("[bundle]\nname = \"bench\"\n");
    for (i, k) in KEYWORDS.iter().enumerate() {
        manifest.push_str(&format!(
            "\n[[policy]]\nname = \"guard-{i}\"\ncomponent = {:?}\ncapabilities = [\"config\"]\n[policy.config]\nkeyword = {k:?}\n",
            ironhost_fixtures::KEYWORD_GUARD
        ));
    }
    std::fs::write(dir.path().join("bundle.toml"), manifest).expect("write bundle");
    dir
}

/// Four different components, so a cold load really compiles four.
fn mixed_bundle_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = format!(
        "[[policy]]\ncomponent = {:?}\ncapabilities = [\"config\"]\n[policy.config]\nkeyword = \"DROP TABLE\"\n\n\
         [[policy]]\ncomponent = {:?}\ncapabilities = [\"events\", \"state\"]\n\n\
         [[policy]]\ncomponent = {:?}\n\n\
         [[policy]]\ncomponent = {:?}\nfailure-mode = \"monitor\"\n",
        ironhost_fixtures::KEYWORD_GUARD,
        ironhost_fixtures::REWRITE,
        ironhost_fixtures::ALLOW_ALL,
        ironhost_fixtures::DENY_ALL,
    );
    std::fs::write(dir.path().join("bundle.toml"), manifest).expect("write bundle");
    dir
}

fn new_engine(cache: Option<PathBuf>) -> PolicyEngine {
    let options = EngineOptions {
        cache_dir: cache,
        max_instances: 64,
        ..EngineOptions::in_memory(64)
    };
    PolicyEngine::new(options, HostServices::default()).expect("engine")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Samples(Mutex<Vec<Duration>>);

impl Samples {
    fn summary(&self) -> (Duration, Duration, usize) {
        let mut v = self.0.lock().clone();
        v.sort_unstable();
        (percentile(&v, 0.5), percentile(&v, 0.99), v.len())
    }
}

/// Run `one` `iters` times, keep every single duration in `samples`, return the total.
fn timed<R>(iters: u64, samples: &Samples, mut one: impl FnMut() -> (Duration, R)) -> Duration {
    let mut local = Vec::with_capacity(iters as usize);
    for _ in 0..iters {
        let (d, result) = one();
        std::hint::black_box(result);
        local.push(d);
    }
    let total = local.iter().sum();
    samples.0.lock().extend(local);
    total
}

fn benches(c: &mut Criterion) {
    let bundle = bundle_dir();
    let parsed = Bundle::load(bundle.path()).expect("bundle");
    let engine = new_engine(None);
    let chain: Chain = admit_bundle(&engine, &parsed).expect("admitted");
    let request = request_2kb();
    let ctx = CallContext {
        agent_id: "bench".into(),
        call_id: "c".into(),
        environment: "dev".into(),
        attempt: 0,
    };
    let run = chain.on_llm_request(&ctx, request.clone());
    assert!(
        matches!(run.outcome, Outcome::Continue { .. }),
        "the request must pass all four"
    );
    assert_eq!(native_chain(&request), None);

    let wasm = Arc::new(Samples(Mutex::new(Vec::new())));
    let native = Arc::new(Samples(Mutex::new(Vec::new())));
    let mut group = c.benchmark_group("chain");
    group.bench_function("wasm-4", |b| {
        b.iter_custom(|iters| {
            timed(iters, &wasm, || {
                let req = request.clone();
                let t = Instant::now();
                let run = chain.on_llm_request(&ctx, req);
                (t.elapsed(), run)
            })
        })
    });
    group.bench_function("native-4", |b| {
        b.iter_custom(|iters| {
            timed(iters, &native, || {
                let req = request.clone();
                let t = Instant::now();
                let hit = native_chain(std::hint::black_box(&req));
                (t.elapsed(), (hit, req))
            })
        })
    });
    group.finish();

    let mixed_dir = mixed_bundle_dir();
    let mixed = Bundle::load(mixed_dir.path()).expect("bundle");
    let cache = tempfile::tempdir().expect("cache dir");
    drop(
        admit_bundle(&new_engine(Some(cache.path().to_path_buf())), &mixed)
            .expect("warms the cache"),
    );
    let warm_loads = Arc::new(Samples(Mutex::new(Vec::new())));
    let cold_loads = Arc::new(Samples(Mutex::new(Vec::new())));
    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    group.bench_function("warm-cache", |b| {
        b.iter_batched(
            || new_engine(Some(cache.path().to_path_buf())),
            |e| {
                let t = Instant::now();
                let chain = admit_bundle(&e, &mixed).expect("admitted");
                warm_loads.0.lock().push(t.elapsed());
                (chain, e)
            },
            BatchSize::PerIteration,
        )
    });
    group.sample_size(10);
    group.bench_function("cold-compile", |b| {
        b.iter_batched(
            || new_engine(None),
            |e| {
                let t = Instant::now();
                let chain = admit_bundle(&e, &mixed).expect("admitted");
                cold_loads.0.lock().push(t.elapsed());
                (chain, e)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let (w50, w99, wn) = wasm.summary();
    let (n50, n99, nn) = native.summary();
    let (l50, l99, ln) = warm_loads.summary();
    let (c50, c99, cn) = cold_loads.summary();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\n== ironhost chain benchmark summary ==");
    println!(
        "request: {} bytes of message text, 4 keyword-guard policies",
        request
            .messages
            .iter()
            .map(|m| m.joined_text().len())
            .sum::<usize>()
    );
    println!(
        "chain wasm-4     p50 {:>9.2} µs  p99 {:>9.2} µs  ({wn} runs)",
        us(w50),
        us(w99)
    );
    println!(
        "chain native-4   p50 {:>9.3} µs  p99 {:>9.3} µs  ({nn} runs)",
        us(n50),
        us(n99)
    );
    println!(
        "ratio wasm/native at p50: {:.0}x   (absolute sandbox overhead p50: {:.2} µs)",
        us(w50) / us(n50).max(1e-3),
        us(w50) - us(n50)
    );
    println!(
        "load warm cache  p50 {:>9.2} ms  p99 {:>9.2} ms  ({ln} loads)",
        ms(l50),
        ms(l99)
    );
    println!(
        "load cold compile p50 {:>8.2} ms  p99 {:>9.2} ms  ({cn} loads)",
        ms(c50),
        ms(c99)
    );
    println!("targets: chain p50 <= 20 µs; warm-cache load <= 50 ms");
}

criterion_group!(chain_benches, benches);

fn main() {
    chain_benches();
    Criterion::default().configure_from_args().final_summary();
}
