//! What the host does for a policy and holds it to, with the `host-work` fixture.
//!
//! What a call is charged for (`policy::meter`): its thread's CPU time, not the wall clock. Time
//! off the CPU (a busy machine, a host call that waits) is never charged; host work the policy
//! did not cause is not charged; host work it chose (counting a long text) is; and a spinning
//! policy is stopped after its CPU limit however busy the machine is.
//!
//! A secret a policy is granted is for its own use: the host keeps its value out of everything
//! the policy writes (log lines, events, state, denials, rewritten prompts), and audits reads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironhost::model::*;
use ironhost::policy::admission::admit_policy;
use ironhost::policy::bundle::PolicyEntry;
use ironhost::policy::chain::{Chain, Outcome};
use ironhost::policy::defaults::default_bundle;
use ironhost::policy::engine::{EngineOptions, PolicyEngine};
use ironhost::policy::host::{HostServices, SecretResolver};
use ironhost::policy::instance::FailureKind;
use ironhost::policy::meter::EPOCH_TICK;
use ironhost::policy::meter::{thread_cpu_time, uncharged};
use ironhost::policy::state::{MemoryState, StateBackend, StateKey};
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
/// Argon2id derivation), `UNMARKED` burns 40 ms of CPU with no such mark, `PANICS` panics;
/// `DB_PASSWORD` is [`VALUE`] at once.
struct SlowSecrets;

const VALUE: &str = "s3cr3t-db-password-value";

impl SecretResolver for SlowSecrets {
    fn get(&self, _environment: &str, name: &str) -> Option<String> {
        match name {
            "WAITS" => std::thread::sleep(Duration::from_millis(60)),
            "DERIVED" => uncharged(|| burn(Duration::from_millis(40))),
            "UNMARKED" => burn(Duration::from_millis(40)),
            "PANICS" => panic!("the resolver broke"),
            "DB_PASSWORD" => return Some(VALUE.to_owned()),
            _ => return None,
        }
        Some("value".to_owned())
    }
}

fn engine() -> PolicyEngine {
    engine_with_state().0
}

fn engine_with_state() -> (PolicyEngine, Arc<MemoryState>) {
    let state = Arc::new(MemoryState::default());
    let services = HostServices {
        secrets: Arc::new(SlowSecrets),
        state: state.clone(),
        ..HostServices::default()
    };
    let engine = PolicyEngine::new(EngineOptions::in_memory(64), services).expect("engine");
    (engine, state)
}

fn host_work(engine: &PolicyEngine, config: serde_json::Value) -> Chain {
    let policy = admit_policy(engine, &host_work_entry(config))
        .unwrap_or_else(|err| panic!("admission: {err}"));
    Chain::new("test", vec![policy])
}

/// The `host-work` fixture with what it imports granted, and `config`.
fn host_work_entry(config: serde_json::Value) -> PolicyEntry {
    let mut e = PolicyEntry::for_component(PathBuf::from(fx::HOST_WORK));
    e.capabilities = [
        Capability::Clock,
        Capability::Config,
        Capability::Secrets,
        Capability::Tokens,
        Capability::Log,
        Capability::Events,
        Capability::State,
    ]
    .into_iter()
    .collect();
    e.config = config;
    assert_eq!(e.deadline_ms, 10, "the default per-call deadline");
    e
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
    for i in 0..10_000 {
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

/// Log output written on this thread while `f` runs.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let bytes = capture.0.lock().expect("lock").clone();
    (out, String::from_utf8_lossy(&bytes).into_owned())
}

fn leaky(leak_by: &str) -> (Chain, Arc<MemoryState>) {
    let (engine, state) = engine_with_state();
    let mut e = host_work_entry(serde_json::json!({ "leak": "DB_PASSWORD", "leak-by": leak_by }));
    e.secrets = Some(["DB_PASSWORD".to_owned()].into_iter().collect());
    let policy = admit_policy(&engine, &e).unwrap_or_else(|err| panic!("admission: {err}"));
    (Chain::new("test", vec![policy]), state)
}

fn stolen(state: &MemoryState) -> Option<String> {
    state.get(&StateKey {
        policy: "host-work".to_owned(),
        agent: Some("leaky".to_owned()),
        key: "stolen".to_owned(),
    })
}

#[test]
fn a_granted_secret_never_leaves_in_a_log_an_event_state_or_a_denial() {
    let (chain, state) = leaky("deny");
    let (run, log) =
        logged(|| chain.on_llm_request(&CallContext::new("leaky", "c1"), request("please work")));
    let events: Vec<String> = run.events().map(|e| e.detail.to_string()).collect();
    let Outcome::Deny { denial, .. } = &run.outcome else {
        panic!("{:?}", run.outcome)
    };
    assert_eq!(denial.message, "denied; the secret is [SECRET:DB_PASSWORD]");
    assert!(log.contains("the secret is [SECRET:DB_PASSWORD]"), "{log}");
    assert!(!log.contains(VALUE), "{log}");
    assert_eq!(events.len(), 1);
    assert!(
        events[0].contains("[SECRET:DB_PASSWORD]") && !events[0].contains(VALUE),
        "{}",
        events[0]
    );
    assert_eq!(stolen(&state).as_deref(), Some("[SECRET:DB_PASSWORD]"));
}

#[test]
fn a_granted_secret_never_leaves_in_a_rewritten_prompt() {
    let (chain, _) = leaky("rewrite");
    let run = chain.on_llm_request(&CallContext::new("leaky", "c1"), request("please work"));
    let Outcome::Continue { value } = &run.outcome else {
        panic!("{:?}", run.outcome)
    };
    let sent = format!("{value:?}");
    assert!(!sent.contains(VALUE), "{sent}");
    assert_eq!(
        value.messages.last().map(Message::joined_text).as_deref(),
        Some("the key is [SECRET:DB_PASSWORD]")
    );
}

#[test]
fn reads_of_secrets_by_policies_are_audited() {
    use ironhost::core::plane::Plane;
    use ironhost::model::tokens::ModelTokenMeter;
    use ironhost::secrets::Actor;
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let vars = BTreeMap::from([
        (
            "IRONHOST_MASTER_KEY".to_owned(),
            "test-master-key-0123456789".to_owned(),
        ),
        (
            "IRONHOST_ADMIN_PASSWORD".to_owned(),
            "admin-password-1".to_owned(),
        ),
    ]);
    let plane = runtime.block_on(async {
        let plane = Plane::open(dir.path(), &vars).await.expect("plane opens");
        plane
            .secrets
            .put("DB_PASSWORD", "dev", VALUE, &Actor::host())
            .await
            .expect("put");
        plane
    });
    let engine = PolicyEngine::new(
        EngineOptions::in_memory(16),
        plane.services(Arc::new(ModelTokenMeter::embedded())),
    )
    .expect("engine");
    let e = host_work_entry(serde_json::json!({ "secret": "DB_PASSWORD" }));
    let chain = Chain::new("test", vec![admit_policy(&engine, &e).expect("admitted")]);
    for i in 0..5 {
        let run = chain.on_llm_request(
            &CallContext::new("reader", &format!("c{i}")),
            request("please work"),
        );
        assert!(matches!(run.outcome, Outcome::Continue { .. }));
    }
    // The first read is written at once; later ones are counted into the next row.
    let rows = (0..50)
        .find_map(|_| {
            let rows: Vec<_> = runtime
                .block_on(plane.secrets.audit_log(Some("DB_PASSWORD"), 100))
                .expect("audit log")
                .into_iter()
                .filter(|r| r.action == "policy-read")
                .collect();
            if rows.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(100));
                None
            } else {
                Some(rows)
            }
        })
        .expect("an audit row for the policy's reads");
    let first = rows.last().expect("a row");
    assert_eq!(first.actor, "policy:host-work");
    assert_eq!(first.role, "agent");
    assert_eq!(first.environment, "dev");
    assert_eq!(first.detail.as_deref(), Some("1 read(s) by the policy"));
    let text = format!("{rows:?}");
    assert!(!text.contains(VALUE), "{text}");
}

#[test]
fn a_chatty_policy_is_held_to_its_log_allowance() {
    let mut e = PolicyEntry::for_component(PathBuf::from(fx::HOSTILE));
    e.capabilities = [Capability::Config, Capability::Log, Capability::Events]
        .into_iter()
        .collect();
    // 11,000 host calls are a few milliseconds of CPU: not what is tested here.
    e.deadline_ms = 1000;
    let policy = admit_policy(&engine(), &e).unwrap_or_else(|err| panic!("admission: {err}"));
    let chain = Chain::new("test", vec![policy]);
    let ctx = CallContext::new("chatty", "c1");
    let ((), first) = logged(|| {
        chain.on_llm_request(&ctx, request("chatty"));
    });
    let lines = first
        .lines()
        .filter(|l| l.contains("chatty line") || l.contains("event refused"))
        .count();
    // 10,000 lines and 1,000 refused events: at most 50 a second get through (the call may
    // straddle two seconds).
    assert!((1..=100).contains(&lines), "{lines} lines");
    std::thread::sleep(Duration::from_millis(1100));
    let ((), second) = logged(|| {
        chain.on_llm_request(&ctx, request("chatty"));
    });
    let summary = second
        .lines()
        .find(|l| l.contains("log lines about policy `hostile` suppressed"))
        .unwrap_or_else(|| panic!("no summary in:\n{second}"));
    let n: u64 = summary
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("a count");
    // Most of the first call's 11,000 (all but those of a second it may have straddled).
    assert!(n >= 5_000, "{summary}");
}
