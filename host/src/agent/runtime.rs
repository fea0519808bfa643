//! One agent's life: build the host (engine, chain, simulator or providers, gateway), start
//! CPython, run the script as `__main__`, and watch it: states starting → running →
//! completed / failed / stopped, restarts on failure, and a clean stop on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::ipc::Setup;
use super::lease::{AgentLease, LeaseError};
use super::python;
use super::{sandbox, worker};
use crate::alerts::Alerts;
use crate::api::plane::{self, Plane, PlaneError};
use crate::api::{LiveChain, ws};
use crate::config::{BundleChoice, Isolation, Restart, Settings};
use crate::events::{AgentState, EventBus, EventKind};
use crate::gateway::metrics::Metrics;
use crate::gateway::{Gateway, GatewayOptions, LlmMode};
use crate::llm::http::HttpUpstream;
use crate::llm::simulator::Simulator;
use crate::model::TokenMeter;
use crate::model::tokens::ModelTokenMeter;
use crate::model::{AgentInfo, Severity};
use crate::policy::admission::admit_bundle;
use crate::policy::bundle::{Bundle, PolicyEntry};
use crate::policy::engine::{EngineOptions, PolicyEngine};
use crate::secrets::{Actor, SecretStore};
use crate::store::Store;
use crate::store::queries::NewAgent;
use crate::store::recorder::Recorder;
use crate::store::state::StoredState;

/// How long an agent has to stop after SIGINT/SIGTERM before the host exits anyway.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Pause before restarting a crashed agent.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub script: PathBuf,
    pub args: Vec<String>,
}

/// Why the agent could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that only shows up as wrong when the host is built (exit code 2).
    #[error("{0}")]
    Config(String),
    /// Anything else (exit code 1).
    #[error("{0}")]
    Failed(String),
}

/// Script names that say nothing about the agent: its folder names it instead.
const GENERIC_STEMS: [&str; 5] = ["agent", "main", "__main__", "app", "run"];

/// The agent's name: the script's file name without `.py`, or, for a generic one such as
/// `agent.py`, its folder's name (`examples/lead_gen/agent.py` is `lead_gen`).
pub fn agent_name(script: &Path) -> String {
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if GENERIC_STEMS.contains(&stem.to_lowercase().as_str())
        && let Some(dir) = script
            .parent()
            .and_then(Path::file_name)
            .map(|d| d.to_string_lossy().into_owned())
            .filter(|d| !d.is_empty())
    {
        return dir;
    }
    stem
}

/// An agent id for a script: a prefix from the agent's name ([`agent_name`]) and 8 random hex
/// digits (`lead_gen` gives `lg-7a3f9c2d`).
pub fn agent_id(script: &Path) -> String {
    agent_id_for(&agent_name(script))
}

/// An agent id for an agent named `name`: see [`agent_id`].
pub fn agent_id_for(name: &str) -> String {
    let stem = name.to_lowercase();
    let words: Vec<&str> = stem
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let prefix: String = match words.as_slice() {
        [] => "agent".to_owned(),
        [one] => one.chars().take(2).collect(),
        many => many
            .iter()
            .take(3)
            .filter_map(|w| w.chars().next())
            .collect(),
    };
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ std::process::id()).to_le_bytes();
    }
    format!("{prefix}-{}", hex::encode(bytes))
}

/// Check an agent id given by the operator (`--agent-id`): it names store rows and URLs.
pub fn check_agent_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        let shown: String = id
            .chars()
            .take(64)
            .collect::<String>()
            .escape_debug()
            .to_string();
        let more = if id.chars().count() > 64 { "…" } else { "" };
        Err(format!(
            "`{shown}{more}` is not an agent id (1-64 letters, digits, `-`, `_`, `.`)"
        ))
    }
}

/// Whether a bundle entry is the policy `name` (its given name, built-in name or file stem).
fn is_named(p: &PolicyEntry, name: &str) -> bool {
    p.name.as_deref() == Some(name)
        || p.builtin_name() == Some(name)
        || p.component.file_stem().and_then(|s| s.to_str()) == Some(name)
}

fn policy_named<'a>(bundle: &'a mut Bundle, name: &str) -> Option<&'a mut PolicyEntry> {
    bundle.policies.iter_mut().find(|p| is_named(p, name))
}

fn set_config(entry: &mut PolicyEntry, key: &str, value: serde_json::Value) {
    if !entry.config.is_object() {
        entry.config = serde_json::json!({});
    }
    if let Some(o) = entry.config.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

/// The bundle to run, with `--budget` and `--safety-mode` applied to its policies.
pub fn bundle_for(settings: &Settings) -> Result<Bundle, StartError> {
    let mut bundle = match &settings.bundle {
        BundleChoice::Default => crate::policy::defaults::default_bundle(),
        BundleChoice::Dir(d) => Bundle::load(d),
    }
    .map_err(|e| StartError::Config(format!("bundle: {e}")))?;
    let bundle_name = bundle.name.clone();
    for name in &settings.without {
        bundle.policies.retain(|p| !is_named(p, name));
    }
    if let Some(budget) = settings.budget {
        let entry = policy_named(&mut bundle, "budget").ok_or_else(|| {
            StartError::Config(format!(
                "budget: bundle `{bundle_name}` has no `budget` policy to apply a budget to"
            ))
        })?;
        set_config(entry, "limit-usd", serde_json::json!(budget));
    }
    if let Some(mode) = &settings.safety_mode {
        let entry = policy_named(&mut bundle, "pii-redact").ok_or_else(|| {
            StartError::Config(format!(
                "safety-mode: bundle `{bundle_name}` has no `pii-redact` policy to set a mode on"
            ))
        })?;
        set_config(entry, "mode", serde_json::json!(mode));
    }
    Ok(bundle)
}

/// The budget the bundle enforces (its `budget` policy's `limit-usd`), for the log.
fn bundle_budget(bundle: &mut Bundle) -> Option<f64> {
    policy_named(bundle, "budget").and_then(|p| {
        p.config
            .get("limit-usd")
            .and_then(serde_json::Value::as_f64)
    })
}

/// The host side of an agent, built and ready; shared with the Python module.
#[derive(Debug)]
pub struct Host {
    pub gateway: Arc<Gateway>,
    pub bus: EventBus,
    pub bundle_name: String,
    pub engine: PolicyEngine,
    /// The store, secrets and persistent state.
    pub plane: Plane,
    pub recorder: Recorder,
    /// Alert webhooks, when configured.
    pub alerts: Option<Alerts>,
    /// Where this process serves the control plane, if it does.
    pub api_addr: Option<SocketAddr>,
    /// Runs the store's writers, the API and the HTTPS client.
    runtime: tokio::runtime::Runtime,
    /// This process's hold on the agent id.
    _lease: AgentLease,
}

impl Host {
    /// Wait until every event so far and all policy state are in the store: as long as the
    /// store keeps writing, and at most 5 s without progress.
    pub fn flush(&self) {
        self.gateway.chain().report_suppressed();
        let seq = self.bus.last_seq();
        let written = self.runtime.block_on(flush_store(
            &self.recorder,
            &self.plane.state,
            seq,
            Duration::from_secs(5),
        ));
        if !written {
            tracing::warn!(
                "the store did not record the last {} records and policy state: no progress in 5 s",
                self.bus.journal_pending()
            );
        }
        if let Some(alerts) = &self.alerts {
            // Deliveries still queued get 20 s; one takes at most 3 attempts of its webhook's
            // timeout plus backoff. Whatever is still queued then is dropped, with a warning.
            let sent = self
                .runtime
                .block_on(alerts.flush(seq, Duration::from_secs(20)));
            if !sent {
                tracing::warn!("alert webhooks did not finish within 20 s");
            }
        }
    }

    /// Flush, then stop: the store's writers, the API and the I/O runtime end (the Python SDK
    /// closing an in-process agent).
    pub fn shutdown(self) {
        self.flush();
        let Host {
            gateway,
            bus,
            engine,
            plane,
            recorder,
            alerts,
            runtime,
            ..
        } = self;
        {
            // The store's pool and the writers close on this runtime.
            let _entered = runtime.enter();
            drop((gateway, bus, engine, plane, recorder, alerts));
        }
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Policy instance slots of an in-process (Python SDK) agent's engine.
const SDK_ENGINE_SLOTS: u32 = 64;

/// The budget to run with: a limit set through the API for this agent wins; then
/// `--budget`/config; then the global limit.
fn budget_from_limits(
    settings: &mut Settings,
    plane: &Plane,
    runtime: &tokio::runtime::Runtime,
    id: &str,
) -> Result<(), StartError> {
    let limit = runtime
        .block_on(plane.store.limit_for(id))
        .map_err(|e| StartError::Failed(e.to_string()))?;
    match limit {
        Some(l) if l.agent_id.is_some() => {
            tracing::info!(
                "budget ${:.2} from the limit set for agent {id}",
                l.limit_usd
            );
            settings.budget = Some(l.limit_usd);
        }
        Some(l) if settings.budget.is_none() => {
            tracing::info!("budget ${:.2} from the global limit", l.limit_usd);
            settings.budget = Some(l.limit_usd);
        }
        _ => {}
    }
    Ok(())
}

/// Build the engine, admit the bundle, open the store and set up the call path and, unless
/// disabled, the control plane.
pub fn build_host(
    settings: &Settings,
    name: &str,
    script: &Path,
    id: String,
    env_vars: &BTreeMap<String, String>,
) -> Result<Host, StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ironhost-io")
        .enable_all()
        .build()
        .map_err(|e| StartError::Failed(format!("cannot start the I/O runtime: {e}")))?;
    // Check the bundle and the flags on it before anything is created on disk.
    bundle_for(settings)?;
    let _entered = runtime.enter();
    // SIGUSR1 reloads secrets; handle it before anything else can be signalled.
    let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .map_err(|e| StartError::Failed(format!("cannot handle SIGUSR1: {e}")))?;
    let plane = runtime
        .block_on(Plane::open(&settings.home, env_vars))
        .map_err(|e| match e {
            PlaneError::Input(m) => StartError::Config(m),
            PlaneError::Failed(m) => StartError::Failed(m),
        })?;
    // Before anything is recorded for the agent: one process per agent id.
    let lease = AgentLease::take(&settings.home, &id).map_err(|e| match e {
        LeaseError::Running { .. } => StartError::Config(format!("agent_id: {e}")),
        LeaseError::Failed(m) => StartError::Failed(m),
    })?;
    // The agent's own policy state is journaled before each answer (a kill -9 loses none).
    let agents_dir = settings.home.join("agents");
    match plane.state.attach_journal(&agents_dir, &id) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            "policy state: replayed {n} changes that the last process under {id} journaled but did not store (it was killed?)"
        ),
        Err(e) => {
            return Err(StartError::Failed(format!(
                "cannot journal the policy state of {id} in {}: {e}",
                agents_dir.display()
            )));
        }
    }
    let explicit_budget = settings.budget.is_some();
    let mut settings = settings.clone();
    budget_from_limits(&mut settings, &plane, &runtime, &id)?;
    let mut bundle = bundle_for(&settings)?;
    let budget = bundle_budget(&mut bundle);
    let meter = Arc::new(ModelTokenMeter::new(Arc::new(settings.pricing.clone())));
    let services = plane.services(meter.clone());
    let secrets = services.secrets.clone();
    let mut engine_options = EngineOptions::from_env().map_err(StartError::Config)?;
    if settings.in_process {
        // One agent's calls need a few instances of each policy at a time; the default 1000
        // slots would reserve terabytes of address space per agent.
        engine_options.max_instances = SDK_ENGINE_SLOTS;
    }
    let engine = PolicyEngine::new(engine_options, services)
        .map_err(|e| StartError::Failed(format!("policy engine: {e}")))?;
    let chain = admit_bundle(&engine, &bundle)
        .map_err(|e| StartError::Config(format!("bundle `{}`: {e}", bundle.name)))?;
    let llm = &settings.llm;
    let mode = llm.mode.unwrap_or(LlmMode::Auto);
    let timeout = Duration::from_millis(llm.timeout_ms.unwrap_or(60_000));
    let http = if mode == LlmMode::Simulator {
        None
    } else {
        Some(Arc::new(
            HttpUpstream::new(runtime.handle().clone(), timeout)
                .map_err(|e| StartError::Failed(e.to_string()))?,
        ))
    };
    let tokens: Arc<dyn TokenMeter> = meter;
    let simulator = Arc::new(Simulator::new(settings.simulator.clone(), tokens.clone()));
    let env_keys = worker::host_keys(env_vars, &settings.upstreams);
    let bus = EventBus::new();
    let recorder = Recorder::spawn(plane.store.clone(), &bus, plane.recorder_keys());
    let alerts = Alerts::spawn(&settings.alerts, &bus).map_err(StartError::Failed)?;
    let options = GatewayOptions {
        mode,
        timeout,
        max_retries: llm.max_retries.unwrap_or(2),
        backoff: Duration::from_millis(llm.backoff_ms.unwrap_or(500)),
        max_backoff: Duration::from_millis(llm.max_backoff_ms.unwrap_or(30_000)),
        budget_usd: budget,
        unknown_parts: llm.unknown_parts.unwrap_or_default(),
        upstreams: settings.upstreams.clone(),
    };
    let agent = AgentInfo {
        agent_id: id.clone(),
        name: name.to_owned(),
        environment: settings.environment.clone(),
    };
    let chain = Arc::new(chain);
    let gateway = Arc::new(Gateway::new(
        chain.clone(),
        simulator,
        http,
        secrets,
        env_keys,
        tokens,
        bus.clone(),
        Arc::new(Metrics::default()),
        agent,
        options,
    ));
    runtime
        .block_on(plane.store.register_agent(&NewAgent {
            id: &id,
            name,
            script: &script.display().to_string(),
            bundle: &bundle.name,
            environment: &settings.environment,
            budget_usd: budget,
            pid: std::process::id(),
            pid_start: crate::store::queries::process_start(i64::from(std::process::id())),
            runner: if settings.in_process {
                crate::store::queries::RUNNER_PYTHON_SDK
            } else {
                crate::store::queries::RUNNER_IRONHOST
            },
        }))
        .map_err(|e| StartError::Failed(e.to_string()))?;
    let live = LiveChain {
        chain,
        engine: engine.clone(),
        agent_id: Some(id),
        gateway: Some(gateway.clone()),
        explicit_budget,
        bus: bus.clone(),
    };
    watch_usr1(
        usr1,
        plane.secrets.clone(),
        live.clone(),
        plane.store.clone(),
    );
    let api_addr = if settings.api.enabled {
        let feed = ws::feed();
        ws::feed_from_bus(&bus, feed.clone());
        let state = plane.app_state(Some(live), feed);
        match runtime.block_on(plane::bind(&settings.api, state)) {
            Ok(Some(server)) => {
                let addr = server.addr;
                runtime.spawn(async move {
                    if let Err(e) = server.run(std::future::pending()).await {
                        tracing::error!("control plane stopped: {e}");
                    }
                });
                Some(addr)
            }
            Ok(None) => None,
            Err(e) => return Err(StartError::Config(e)),
        }
    } else {
        None
    };
    drop(_entered);
    Ok(Host {
        gateway,
        bus,
        bundle_name: bundle.name,
        engine,
        plane,
        recorder,
        alerts,
        api_addr,
        runtime,
        _lease: lease,
    })
}

/// SIGUSR1: re-read the secrets and the agent's limit from the store (another ironhost process
/// changed them); changes reach the agent as on an API update here.
fn watch_usr1(
    mut usr1: tokio::signal::unix::Signal,
    secrets: Arc<SecretStore>,
    live: LiveChain,
    store: Store,
) {
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            if let Err(e) = crate::api::limits::reload_limit(&live, &store).await {
                tracing::error!("SIGUSR1: cannot apply the stored limit: {e}");
            }
            match secrets.reload().await {
                Ok(changed) if changed.is_empty() => {
                    tracing::info!("SIGUSR1: secrets reloaded; none changed")
                }
                Ok(changed) => {
                    tracing::info!("SIGUSR1: secrets reloaded; changed: {}", changed.join(", "))
                }
                Err(e) => tracing::error!("SIGUSR1: cannot reload secrets: {e}"),
            }
        }
    });
}

/// The worker running now (none between runs), for signals and environment changes.
#[derive(Debug, Default)]
struct Current {
    pid: Option<u32>,
    link: Option<Arc<worker::Link>>,
}

type SharedCurrent = Arc<Mutex<Current>>;

/// Sets and removes variables in the running agent's environment; false if it could not.
pub(crate) type EnvApplier = Arc<dyn Fn(Vec<(String, String)>, Vec<String>) -> bool + Send + Sync>;

/// Keep the agent's environment in step with its secrets: on every change, run
/// `on-agent-start` again and set what differs in the running agent's `os.environ` (and in
/// the environment of later runs). Calls in flight are not touched; the next call uses the new
/// values (egress keys are resolved per call).
pub(crate) fn follow_secrets(
    host: &Host,
    env: Arc<Mutex<BTreeMap<String, String>>>,
    apply: EnvApplier,
) {
    let mut changes = host.plane.secrets.subscribe();
    let gateway = host.gateway.clone();
    let secrets = host.plane.secrets.clone();
    let bus = host.bus.clone();
    host.runtime.spawn(async move {
        while changes.changed().await.is_ok() {
            let names = changes.borrow_and_update().clone();
            let gw = gateway.clone();
            let start = tokio::task::spawn_blocking(move || gw.chain().on_agent_start(gw.agent())).await;
            let mut given = match start.map(|r| r.outcome) {
                Ok(crate::policy::chain::Outcome::Continue { value }) => value.env,
                Ok(crate::policy::chain::Outcome::Deny { policy, denial }) => {
                    tracing::warn!(
                        "secrets changed ({}), but policy `{policy}` refused the new environment ({}): {}; the agent keeps its current one",
                        names.join(", "),
                        denial.code,
                        denial.message
                    );
                    continue;
                }
                _ => continue,
            };
            worker::without_keys(&mut given, &gateway.options().upstreams);
            let (changed, removed) = {
                let mut applied = env.lock();
                let changed: Vec<(String, String)> = given
                    .iter()
                    .filter(|(k, v)| applied.get(k) != Some(v))
                    .cloned()
                    .collect();
                // A variable no longer given (its secret was deleted) leaves the environment.
                let removed: Vec<String> = applied
                    .keys()
                    .filter(|k| !given.iter().any(|(e, _)| e == *k))
                    .cloned()
                    .collect();
                applied.extend(changed.iter().cloned());
                for k in &removed {
                    applied.remove(k);
                }
                (changed, removed)
            };
            if changed.is_empty() && removed.is_empty() {
                continue;
            }
            let (update, unset, apply) = (changed.clone(), removed.clone(), apply.clone());
            let applied = tokio::task::spawn_blocking(move || apply(update, unset)).await;
            if !matches!(applied, Ok(true)) {
                tracing::error!("cannot update the agent's environment after a secret change");
                continue;
            }
            let mut vars: Vec<String> = changed.iter().map(|(k, _)| k.clone()).collect();
            vars.extend(removed.iter().cloned());
            let agent = gateway.agent();
            tracing::info!(
                "secrets rotated ({}): {} updated in the agent's environment",
                names.join(", "),
                vars.join(", ")
            );
            for name in &names {
                let _ = secrets
                    .record(
                        name,
                        &agent.environment,
                        "rotate",
                        &Actor::host(),
                        Some(&format!("agent {}: {}", agent.agent_id, vars.join(", "))),
                    )
                    .await;
            }
            bus.publish(
                &agent.agent_id,
                Severity::Info,
                EventKind::SecretsRotated {
                    secrets: names,
                    env_vars: vars,
                },
            );
        }
    });
}

fn send_signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(target) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(target, signal);
    }
}

fn rustix_signal(signum: i32) -> rustix::process::Signal {
    if signum == libc::SIGINT {
        rustix::process::Signal::INT
    } else {
        rustix::process::Signal::TERM
    }
}

/// SIGINT and SIGTERM stop the agent: the first is passed to its process, which unwinds as on
/// Ctrl-C; if it is still running [`STOP_GRACE`] later, or at a second signal, it is killed.
fn watch_stop(host: &Host, current: SharedCurrent) -> Result<(), StartError> {
    use tokio::signal::unix::{SignalKind, signal};
    let _entered = host.runtime.enter();
    let failed = |e: std::io::Error| StartError::Failed(format!("cannot handle stop signals: {e}"));
    let mut int = signal(SignalKind::interrupt()).map_err(failed)?;
    let mut term = signal(SignalKind::terminate()).map_err(failed)?;
    let agent_id = host.gateway.agent().agent_id.clone();
    host.runtime.spawn(async move {
        let mut seen = 0u32;
        loop {
            let signum = tokio::select! {
                Some(()) = int.recv() => libc::SIGINT,
                Some(()) = term.recv() => libc::SIGTERM,
                else => return,
            };
            python::note_signal_number(signum);
            seen += 1;
            let pid = current.lock().pid;
            if seen > 1 {
                if let Some(pid) = pid {
                    tracing::warn!("second stop signal: ending agent {agent_id} now");
                    send_signal(pid, rustix::process::Signal::KILL);
                }
                continue;
            }
            if let Some(pid) = pid {
                send_signal(pid, rustix_signal(signum));
            }
            let current = current.clone();
            let id = agent_id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(STOP_GRACE).await;
                if let Some(pid) = current.lock().pid {
                    tracing::error!(
                        "agent {id} did not stop within {} s of the signal; ending its process",
                        STOP_GRACE.as_secs()
                    );
                    send_signal(pid, rustix::process::Signal::KILL);
                }
            });
        }
    });
    Ok(())
}

/// Run the agent to its end (restarts included); returns the exit code.
pub fn run_agent(
    host: &Host,
    spec: &AgentSpec,
    settings: &Settings,
    env_vars: &BTreeMap<String, String>,
) -> Result<i32, StartError> {
    let result = run_agent_inner(host, spec, settings, env_vars);
    if let Err(e) = &result {
        // The store must not keep showing an agent that could not run as starting or running.
        let code = if matches!(e, StartError::Config(_)) {
            2
        } else {
            1
        };
        record_stop(host, AgentState::Failed, code);
    }
    result
}

/// Record how the agent ended (an `agent_stopped` event) and flush the store, for a start that
/// fails before the run loop's own accounting.
fn record_stop(host: &Host, stopped: AgentState, code: i32) {
    let (_, run) = python::status();
    let kind = EventKind::AgentStopped {
        state: stopped,
        exit_code: code,
        run: run.max(1),
    };
    host.bus
        .publish(&host.gateway.agent().agent_id, Severity::High, kind);
    host.flush();
}

/// Wait until the events up to `seq` and all policy state are in the store (giving up after
/// `limit` without progress). False if either did not make it.
async fn flush_store(recorder: &Recorder, state: &StoredState, seq: u64, limit: Duration) -> bool {
    let written = recorder.flush(seq, limit).await;
    let persisted = tokio::time::timeout(limit, state.flush()).await;
    written && persisted.is_ok()
}

/// Whether `path` is inside `dir` (both resolved).
fn inside(path: &Path, dir: &Path) -> bool {
    match (path.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) => p.starts_with(d),
        _ => false,
    }
}

/// What the worker covers: the whole ironhost home; or, when the agent works inside the home
/// (its script, virtualenv or working directory is there), each of ironhost's own entries in
/// it: the store, the master key, the agents' locks and journals, the compile cache.
fn hidden_paths(
    home: &Path,
    script: &Path,
    venv: Option<&Path>,
    cwd: Option<&Path>,
) -> Vec<PathBuf> {
    let works_inside = inside(script, home)
        || venv.is_some_and(|v| inside(v, home))
        || cwd.is_some_and(|c| inside(c, home));
    if !works_inside {
        return vec![home.to_path_buf()];
    }
    sandbox::HOME_ENTRIES
        .iter()
        .map(|e| home.join(e))
        .filter(|p| p.exists())
        .collect()
}

/// The name of a signal that ended a process.
fn signal_name(signum: i32) -> &'static str {
    match signum {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => "a signal",
    }
}

fn run_agent_inner(
    host: &Host,
    spec: &AgentSpec,
    settings: &Settings,
    env_vars: &BTreeMap<String, String>,
) -> Result<i32, StartError> {
    use std::os::unix::process::ExitStatusExt;
    let gateway = &host.gateway;
    let agent = gateway.agent().clone();
    python::set_status(AgentState::Starting, 1);
    let venv = env_vars.get("VIRTUAL_ENV").map(PathBuf::from);
    let isolate = settings.isolation == Isolation::Sandbox;
    let cwd = std::env::current_dir().ok();
    sandbox::protect_host_process()
        .map_err(|e| StartError::Failed(format!("cannot protect the host process: {e}")))?;

    // Policies may refuse the agent or set its environment.
    let start = gateway.chain().on_agent_start(&agent);
    let mut given = match start.outcome {
        crate::policy::chain::Outcome::Continue { value } => value.env,
        crate::policy::chain::Outcome::Deny { policy, denial } => {
            return Err(StartError::Failed(format!(
                "policy `{policy}` refused to start the agent ({}): {}",
                denial.code, denial.message
            )));
        }
        _ => Vec::new(),
    };
    let dropped = worker::without_keys(&mut given, &settings.upstreams);
    if !dropped.is_empty() {
        tracing::warn!(
            "the policies gave the agent {}: upstream keys never reach the agent (it gets a \
             placeholder; the host adds the key at egress)",
            dropped.join(", ")
        );
    }
    let base_env = worker::agent_env(env_vars, &settings.upstreams);
    let policy_env = Arc::new(Mutex::new(given.into_iter().collect::<BTreeMap<_, _>>()));
    let current: SharedCurrent = Arc::default();
    watch_stop(host, current.clone())?;
    let to_worker = current.clone();
    let apply: EnvApplier = Arc::new(move |set, unset| {
        // Between runs there is no process to tell: the next run starts with the new values.
        let link = to_worker.lock().link.clone();
        link.is_none_or(|l| l.set_environ(set, unset))
    });
    follow_secrets(host, policy_env.clone(), apply);

    let max_restarts = match settings.restart {
        Restart::Never => 0,
        Restart::OnFailure(n) => n,
    };
    let mut run = 1;
    loop {
        python::set_status(AgentState::Running, run);
        host.bus.publish(
            &agent.agent_id,
            Severity::Info,
            EventKind::AgentStarted {
                name: agent.name.clone(),
                script: spec.script.display().to_string(),
                run,
            },
        );
        let setup = Setup {
            script: spec.script.clone(),
            args: spec.args.clone(),
            venv: venv.clone(),
            env: policy_env
                .lock()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            upstreams: settings.upstreams.routes(),
            egress: settings.egress.mode,
            hidden: hidden_paths(
                &settings.home,
                &spec.script,
                venv.as_deref(),
                cwd.as_deref(),
            ),
            isolate,
        };
        let (mut w, ready) = worker::spawn(gateway.clone(), setup, &base_env, &settings.egress)
            .map_err(StartError::Failed)?;
        {
            let mut c = current.lock();
            c.pid = Some(w.child.id());
            c.link = Some(w.link.clone());
        }
        // A stop signal that came while the worker was being started.
        if let Some(sig) = python::signal_received() {
            send_signal(w.child.id(), rustix_signal(sig));
        }
        let setup_error = match ready.recv() {
            Ok(Ok(())) => None,
            Ok(Err(m)) => Some(m),
            Err(_) => Some("the agent's process ended before it was ready".to_owned()),
        };
        let status = w.child.wait();
        *current.lock() = Current::default();
        let status = status
            .map_err(|e| StartError::Failed(format!("cannot wait for the agent's process: {e}")))?;
        if let Some(m) = setup_error
            && python::signal_received().is_none()
        {
            return Err(StartError::Failed(m));
        }
        let stop = python::signal_received().or_else(|| w.link.signal());
        let (state, code, how) = match (stop, status.code(), status.signal()) {
            (Some(sig), _, _) => (AgentState::Stopped, 128 + sig, String::new()),
            (None, Some(0), _) => (AgentState::Completed, 0, String::new()),
            (None, Some(code), _) => (AgentState::Failed, code, String::new()),
            (None, None, Some(sig)) => (
                AgentState::Failed,
                128 + sig,
                format!(
                    ", its process killed by signal {sig} ({})",
                    signal_name(sig)
                ),
            ),
            (None, None, None) => (AgentState::Failed, 1, String::new()),
        };
        python::set_status(state, run);
        host.bus.publish(
            &agent.agent_id,
            if state == AgentState::Failed {
                Severity::High
            } else {
                Severity::Info
            },
            EventKind::AgentStopped {
                state,
                exit_code: code,
                run,
            },
        );
        let snap = gateway.metrics().snapshot();
        let spent = match gateway.budget_usd() {
            Some(limit) => format!("${:.2} / ${limit:.2}", snap.cost_usd),
            None => format!("${:.2}", snap.cost_usd),
        };
        let line = format!(
            "agent {} (exit {code}{how}): {} LLM calls, {} tool calls, {spent}",
            state.as_str(),
            snap.llm_calls,
            snap.tool_calls
        );
        if state == AgentState::Failed && run <= max_restarts {
            tracing::warn!(
                "{line}; restarting in {} s (restart {run} of {max_restarts})",
                RESTART_DELAY.as_secs()
            );
            std::thread::sleep(RESTART_DELAY);
            if python::signal_received().is_none() {
                run += 1;
                continue;
            }
        }
        host.gateway.chain().report_suppressed();
        if state == AgentState::Completed {
            tracing::info!("{line}");
        } else {
            tracing::warn!("{line}");
        }
        host.flush();
        return Ok(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generic_script_name_takes_its_folders_name() {
        assert_eq!(
            agent_name(Path::new("examples/lead_gen/agent.py")),
            "lead_gen"
        );
        assert_eq!(agent_name(Path::new("/srv/crm-sync/main.py")), "crm-sync");
        assert_eq!(agent_name(Path::new("lead_gen.py")), "lead_gen");
        assert_eq!(agent_name(Path::new("bots/Support_Bot.py")), "Support_Bot");
        // No folder to name it: the stem stays.
        assert_eq!(agent_name(Path::new("agent.py")), "agent");
        let id = agent_id(Path::new("examples/lead_gen/agent.py"));
        let (prefix, hex) = id.split_once('-').unwrap();
        assert_eq!(prefix, "lg");
        assert_eq!(hex.len(), 8);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
