//! What a policy call is charged for (`policy::meter`): its thread's CPU time, not the wall
//! clock. Time off the CPU (a busy machine, a host call that waits) is never charged; host work
//! the policy did not cause is not charged; host work it chose (counting a long text) is; and a
//! spinning policy is stopped after its CPU limit however busy the machine is.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ironhost::policy::admission::admit_policy;
use ironhost::policy::bundle::PolicyEntry;
use ironhost::policy::chain::{Chain, Outcome};
use ironhost::policy::defaults::default_bundle;
use ironhost::policy::engine::{EPOCH_TICK, EngineOptions, PolicyEngine};
use ironhost::policy::host::{HostServices, SecretResolver};
use ironhost::policy::instance::FailureKind;
use ironhost::policy::meter::{thread_cpu_time, uncharged};
use ironhost::policy::model::*;
use ironhost::policy::{Capability, admit_bundle};
use ironhost_fixtures as fx;

/// Burns `d` of this thread's CPU time.
fn burn(d: Duration) {
    let start = thread_cpu_time();
    while thread_cpu_time() - start < d {
        std::hint::spin_loop();
    }
}

/// Secrets that take their time: `WAITS` sleeps 60 ms (off the CPU, as a thread on a busy
/// machine waits for a core), `DERIVED` burns 40 ms of CPU as uncharged host work (like an
/// Argon2id derivation), `UNMARKED` burns 40 ms of CPU with no such mark, `PANICS` panics.
struct SlowSecrets;

impl SecretResolver for SlowSecrets {
    fn get(&self, _environment: &str, name: &str) -> Option<String> {
        match name {
            "WAITS" => std::thread::sleep(Duration::from_millis(60)),
            "DERIVED" => uncharged(|| burn(Duration::from_millis(40))),
            "UNMARKED" => burn(Duration::from_millis(40)),
            "PANICS" => panic!("the resolver broke"),
            _ => return None,
        }
        Some("value".to_owned())
    }
}

fn engine() -> PolicyEngine {
    let services = HostServices {
        secrets: Arc::new(SlowSecrets),
        ..HostServices::default()
    };
    PolicyEngine::new(EngineOptions::in_memory(64), services).expect("engine")
}

fn host_work(engine: &PolicyEngine, config: serde_json::Value) -> Chain {
    let mut e = PolicyEntry::for_component(PathBuf::from(fx::HOST_WORK));
    e.capabilities = [
        Capability::Clock,
        Capability::Config,
        Capability::Secrets,
        Capability::Tokens,
    ]
    .into_iter()
    .collect();
    e.config = config;
    assert_eq!(e.deadline_ms, 10, "the default per-call deadline");
    let policy = admit_policy(engine, &e).unwrap_or_else(|err| panic!("admission: {err}"));
    Chain::new("test", vec![policy])
}

fn request(text: &str) -> LlmRequest {
    LlmRequest::new(
        "openai",
        "gpt-4o-mini",
        vec![Message::text(Role::User, text)],
    )
}

/// The failure of the chain's only policy on one request, if it failed.
fn failure_of(chain: &Chain) -> (Option<(FailureKind, String)>, Duration) {
    let started = Instant::now();
    let run = chain.on_llm_request(&CallContext::new("meter", "c1"), request("please work"));
    let took = started.elapsed();
    let failure = run.policies[0]
        .failure
        .as_ref()
        .map(|f| (f.kind, f.message.clone()));
    (failure, took)
}

#[test]
fn time_off_the_cpu_is_not_charged() {
    let engine = engine();
    let chain = host_work(&engine, serde_json::json!({ "secret": "WAITS" }));
    let (failure, took) = failure_of(&chain);
    assert!(
        took >= Duration::from_millis(60),
        "the call waited: {took:?}"
    );
    assert_eq!(failure, None, "a 60 ms wait under a 10 ms deadline");
}

#[test]
fn host_work_the_policy_did_not_cause_is_not_charged_and_other_host_work_is() {
    let engine = engine();
    // Counting 16 KiB anchors the CPU clock first, so the secret read is measured, not guessed.
    let derived = host_work(
        &engine,
        serde_json::json!({ "count-bytes": 16384, "secret": "DERIVED" }),
    );
    assert_eq!(failure_of(&derived).0, None);
    let unmarked = host_work(
        &engine,
        serde_json::json!({ "count-bytes": 16384, "secret": "UNMARKED" }),
    );
    let (failure, _) = failure_of(&unmarked);
    let (kind, message) = failure.expect("40 ms of host CPU in a 10 ms call");
    assert_eq!(kind, FailureKind::Deadline);
    assert!(message.contains("deadline of 10 ms exceeded"), "{message}");
}

#[test]
fn counting_a_long_text_is_charged_to_the_policy_that_asked() {
    let engine = engine();
    let chain = host_work(&engine, serde_json::json!({ "count-bytes": 2 << 20 }));
    let cpu = thread_cpu_time();
    let (failure, _) = failure_of(&chain);
    assert!(
        thread_cpu_time() - cpu > Duration::from_millis(10),
        "counting 2 MiB takes more than the deadline"
    );
    let (kind, message) = failure.expect("the count is charged");
    assert_eq!(kind, FailureKind::Deadline);
    assert!(message.contains("deadline of 10 ms exceeded"), "{message}");
    // A short text is counted within the deadline, and the host kept serving.
    let short = host_work(&engine, serde_json::json!({ "count-bytes": 1000 }));
    assert_eq!(failure_of(&short).0, None);
}

#[test]
fn a_panic_in_a_host_import_fails_the_call_and_the_host_keeps_serving() {
    let engine = engine();
    let chain = host_work(&engine, serde_json::json!({ "secret": "PANICS" }));
    for _ in 0..3 {
        let (failure, _) = failure_of(&chain);
        let (kind, message) = failure.expect("a failure");
        assert_eq!(kind, FailureKind::Trap);
        assert!(
            message.contains("the host failed while serving the policy: the resolver broke"),
            "{message}"
        );
    }
    let fine = host_work(&engine, serde_json::json!({ "secret": "DERIVED" }));
    assert_eq!(failure_of(&fine).0, None);
}

/// Threads that keep every core busy until dropped.
struct Busy(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl Busy {
    fn start() -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Busy(stop, threads)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn a_spinning_policy_is_stopped_after_its_cpu_limit_however_busy_the_machine() {
    let engine = engine();
    let chain = host_work(&engine, serde_json::json!({ "spin-ms": 60_000 }));
    for busy in [false, true] {
        let _load = busy.then(Busy::start);
        let cpu = thread_cpu_time();
        let (failure, took) = failure_of(&chain);
        let used = thread_cpu_time() - cpu;
        let (kind, message) = failure.expect("stopped");
        assert_eq!(kind, FailureKind::Deadline, "busy: {busy}: {message}");
        assert!(message.contains("deadline of 10 ms exceeded"), "{message}");
        // Charged from the first tick; what ran before it counts as at most one tick.
        let limit = Duration::from_millis(10);
        assert!(
            used >= limit - EPOCH_TICK,
            "busy: {busy}: stopped after {used:?} of CPU"
        );
        assert!(
            used < limit * 3,
            "busy: {busy}: stopped only after {used:?} of CPU ({took:?} wall)"
        );
    }
}

#[test]
fn the_default_bundle_never_misses_a_deadline_on_a_busy_machine() {
    let engine =
        PolicyEngine::new(EngineOptions::in_memory(32), HostServices::default()).expect("engine");
    let chain = admit_bundle(&engine, &default_bundle().expect("parses")).expect("admitted");
    let _load = Busy::start();
    let prompt =
        "Score this lead: Dana Ruiz, dana.ruiz@northwind.example, +1 415 555 0134. ".repeat(25);
    let mut failures = Vec::new();
    for i in 0..2000 {
        let ctx = CallContext::new("busy", &format!("c{i}"));
        let mut r = request(&prompt);
        r.max_output_tokens = Some(50);
        let run = chain.on_llm_request(&ctx, r);
        failures.extend(run.policies.iter().filter_map(|p| p.failure.clone()));
        let Outcome::Continue { value } = run.outcome else {
            panic!("call {i}: {:?}", run.outcome)
        };
        let answer = LlmOutcome::Ok(LlmResponse::text(
            "gpt-4o-mini",
            "Score: 82/100, write to dana.ruiz@northwind.example",
            Some(Usage::new(400, 12)),
        ));
        let done = chain.on_llm_response(&ctx, value, answer);
        failures.extend(done.policies.iter().filter_map(|p| p.failure.clone()));
    }
    assert_eq!(failures, Vec::new(), "deadline failures under load");
}
