//! The core: where a host is assembled, once, for every way ironhost runs: `ironhost start`
//! (an agent under a supervisor), `ironhost serve` (the control plane alone) and the Python
//! SDK (an agent inside the caller's process).
//!
//! [`Core`] is what every process has: the I/O runtime, the store, the keyring, the secret
//! store, persistent policy state ([`plane`]), the policy engine, the bundle's chain, the event
//! bus and its recorder, and the [`live::LiveChain`] the control plane changes. [`Host`] is a
//! core with an agent: its lease on the agent id ([`lease`]), its gateway (the call path),
//! alert webhooks, its row in the store and SIGUSR1 reloads.
//!
//! The layers above (`agent`, the agent runtime; `api`, the control plane) depend on this one
//! and never on each other; `cli` and `sdk` put them together (docs/ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::alerts::Alerts;
use crate::config::{BundleChoice, Settings};
use crate::events::EventBus;
use crate::gateway::metrics::Metrics;
use crate::gateway::{Gateway, GatewayOptions};
use crate::llm::LlmMode;
use crate::llm::http::HttpUpstream;
use crate::llm::simulator::Simulator;
use crate::model::tokens::ModelTokenMeter;
use crate::model::{AgentInfo, TokenMeter};
use crate::policy::admission::admit_bundle;
use crate::policy::bundle::{Bundle, MANIFEST};
use crate::policy::engine::{EngineOptions, PolicyEngine};
use crate::secrets::SecretStore;
use crate::store::Store;
use crate::store::fleet::NewInstance;
use crate::store::queries::NewAgent;
use crate::store::recorder::Recorder;
use crate::store::state::StoredState;

pub mod ids;
pub mod lease;
pub mod live;
pub mod plane;
pub mod revisions;
pub mod running;
pub mod runs;
pub mod watch;

use lease::{AgentLease, LeaseError};
use live::LiveChain;
use plane::{Plane, PlaneError};
use revisions::{BundleRun, Origin, Overrides, apply_overrides};

/// Why a host could not be built or its agent started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that only shows up as wrong when the host is built (exit code 2).
    #[error("{0}")]
    Config(String),
    /// Anything else (exit code 1).
    #[error("{0}")]
    Failed(String),
}

/// The bundle a process was given, before its flags: `--bundle DIR`, or the embedded default.
pub fn base_bundle(settings: &Settings) -> Result<Bundle, StartError> {
    match &settings.bundle {
        BundleChoice::Default => crate::policy::defaults::default_bundle(),
        BundleChoice::Dir(d) => Bundle::load(d),
    }
    .map_err(|e| StartError::Config(format!("bundle: {e}")))
}

/// The bundle to run, with `--budget`, `--safety-mode` and `without` applied to its policies.
pub fn bundle_for(settings: &Settings) -> Result<Bundle, StartError> {
    let mut bundle = base_bundle(settings)?;
    apply_overrides(&mut bundle, &Overrides::from_settings(settings))
        .map_err(StartError::Config)?;
    Ok(bundle)
}

/// The budget the chain enforces (its `budget` policy's `limit-usd`), for the log and the
/// agent's figures.
fn chain_budget(chain: &crate::policy::chain::Chain) -> Option<f64> {
    chain
        .snapshot()
        .members
        .iter()
        .find(|m| m.policy.name == live::BUDGET_POLICY)
        .and_then(|m| m.policy.entry.config.get("limit-usd"))
        .and_then(serde_json::Value::as_f64)
}

/// This process's name for running agent `id`: on its row in the fleet view and its leases.
fn instance_id(id: &str) -> String {
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let process = PROCESS.get_or_init(|| ids::random_hex(6));
    format!("{id}.{process}")
}

/// Policy instance slots of an in-process (Python SDK) agent's engine.
const SDK_ENGINE_SLOTS: u32 = 64;

/// The agent a core is built for.
#[derive(Debug, Clone, Copy)]
struct ForAgent<'a> {
    id: &'a str,
}

/// What every ironhost process has, assembled once (see the module docs).
#[derive(Debug)]
pub struct Core {
    /// The store, keyring, secrets and persistent state.
    pub plane: Plane,
    pub engine: PolicyEngine,
    pub bus: EventBus,
    pub recorder: Recorder,
    /// The chain this process runs, and what the control plane needs to change it.
    pub live: LiveChain,
    pub bundle_name: String,
    /// The settings the core was built with (an agent's limit from the store applied).
    pub settings: Settings,
    /// Token counts and prices, shared by the chain, the simulator and the gateway.
    pub meter: Arc<ModelTokenMeter>,
    /// Runs the store's writers, the API and the HTTPS client.
    runtime: tokio::runtime::Runtime,
    /// This process's hold on the agent id, when the core is an agent's.
    lease: Option<AgentLease>,
    /// SIGUSR1, taken before anything could be signalled, when the core is an agent's.
    usr1: Option<tokio::signal::unix::Signal>,
    /// The budget the bundle enforces, for the log.
    budget_usd: Option<f64>,
    /// Following the store's changes (started once the process is assembled).
    watcher: Option<Arc<watch::Watcher>>,
}

impl Core {
    /// The control plane's core (`ironhost serve`): no agent, so no lease and no gateway.
    pub fn control_plane(
        settings: &Settings,
        env_vars: &BTreeMap<String, String>,
    ) -> Result<Core, StartError> {
        let mut core = Core::open(settings, env_vars, None)?;
        core.watch();
        Ok(core)
    }

    fn open(
        settings: &Settings,
        env_vars: &BTreeMap<String, String>,
        agent: Option<ForAgent<'_>>,
    ) -> Result<Core, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ironhost-io")
            .enable_all()
            .build()
            .map_err(|e| StartError::Failed(format!("cannot start the I/O runtime: {e}")))?;
        // Check the bundle and the flags on it before anything is created on disk.
        bundle_for(settings)?;
        let entered = runtime.enter();
        // SIGUSR1 reloads secrets; handle it before anything else can be signalled.
        let usr1 = match agent {
            Some(_) => Some(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                    .map_err(|e| StartError::Failed(format!("cannot handle SIGUSR1: {e}")))?,
            ),
            None => None,
        };
        let plane = runtime
            .block_on(Plane::open(&settings.home, env_vars))
            .map_err(|e| match e {
                PlaneError::Input(m) => StartError::Config(m),
                PlaneError::Failed(m) => StartError::Failed(m),
            })?;
        let mut settings = settings.clone();
        let explicit_budget = settings.budget.is_some();
        let mut lease = None;
        if let Some(ForAgent { id }) = agent {
            // Before anything is recorded for the agent: one process per agent id.
            lease = Some(AgentLease::take(&settings.home, id).map_err(|e| match e {
                LeaseError::Running { .. } => StartError::Config(format!("agent_id: {e}")),
                LeaseError::Failed(m) => StartError::Failed(m),
            })?);
            // The agent's counters are shared with its other processes through leases, and
            // its own policy state is journaled before each answer (a kill -9 loses none).
            plane.state.attach_ledger(
                id,
                &instance_id(id),
                crate::store::ledger::LEASE_TTL,
                runtime.handle().clone(),
            );
            let agents_dir = settings.home.join("agents");
            match plane.state.attach_journal(&agents_dir, id) {
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
            budget_from_limits(&mut settings, &plane, &runtime, id)?;
        }
        let base = base_bundle(&settings)?;
        let overrides = Overrides::from_settings(&settings);
        let mut bundle = base.clone();
        apply_overrides(&mut bundle, &overrides).map_err(StartError::Config)?;
        let meter = Arc::new(ModelTokenMeter::new(Arc::new(settings.pricing.clone())));
        let mut engine_options = EngineOptions::from_env().map_err(StartError::Config)?;
        if settings.in_process {
            // One agent's calls need a few instances of each policy at a time; the default
            // 1000 slots would reserve terabytes of address space per agent.
            engine_options.max_instances = SDK_ENGINE_SLOTS;
        }
        let engine = PolicyEngine::new(engine_options, plane.services(meter.clone()))
            .map_err(|e| StartError::Failed(format!("policy engine: {e}")))?;
        let chain = admit_bundle(&engine, &bundle)
            .map_err(|e| StartError::Config(format!("bundle `{}`: {e}", bundle.name)))?;
        // Changes made here are recorded like any process's events.
        let bus = EventBus::new();
        let recorder = Recorder::spawn(plane.store.clone(), &bus, plane.recorder_keys());
        let run = BundleRun::unrecorded(&chain, settings.home.join("components"));
        *run.overrides.lock() = overrides;
        let mut live = LiveChain::new(Arc::new(chain), engine.clone(), bus.clone(), run);
        live.agent_id = agent.map(|a| a.id.to_owned());
        live.explicit_budget = explicit_budget;
        // The store's latest revision of the bundle runs (or this one is recorded as it).
        let origin = Origin {
            what: match &settings.bundle {
                BundleChoice::Default => "the embedded default bundle".to_owned(),
                BundleChoice::Dir(d) => format!("{}", d.join(MANIFEST).display()),
            },
            actor: format!(
                "{} on {} (pid {})",
                match (agent, settings.in_process) {
                    (None, _) => "ironhost serve",
                    (Some(_), true) => "the Python SDK",
                    (Some(_), false) => "ironhost start",
                },
                ids::host_name(),
                std::process::id()
            ),
        };
        runtime
            .block_on(revisions::adopt(&live, &plane.store, &base, &origin))
            .map_err(|e| StartError::Config(format!("bundle `{}`: {e}", base.name)))?;
        let budget_usd = chain_budget(&live.chain);
        drop(entered);
        Ok(Core {
            plane,
            engine,
            bus,
            recorder,
            live,
            bundle_name: base.name,
            settings,
            meter,
            runtime,
            lease,
            usr1,
            budget_usd,
            watcher: None,
        })
    }

    /// Start following the store's changes (see [`watch`]).
    fn watch(&mut self) -> Arc<watch::Watcher> {
        let _entered = self.runtime.enter();
        let watcher = watch::Watcher::spawn(
            self.live.clone(),
            self.plane.store.clone(),
            self.plane.secrets.clone(),
        );
        self.watcher = Some(watcher.clone());
        watcher
    }

    /// The I/O runtime (the store's writers, the API, the HTTPS client run on it).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Wait until every event so far and all policy state are in the store: as long as the
    /// store keeps writing, and at most 5 s without progress.
    fn flush_store(&self) -> u64 {
        self.live.chain.report_suppressed();
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
        seq
    }
}

/// The host side of an agent, built and ready: a [`Core`] with the agent's gateway.
#[derive(Debug)]
pub struct Host {
    pub core: Core,
    pub gateway: Arc<Gateway>,
    /// Alert webhooks and emails, when configured.
    pub alerts: Option<Alerts>,
    /// Where this process serves the control plane, if it does (set by whoever serves it).
    pub api_addr: Option<SocketAddr>,
    /// That control plane's live feed, to say goodbye on when the run ends.
    pub api_feed: Option<tokio::sync::broadcast::Sender<std::sync::Arc<str>>>,
    /// This process's row in the fleet view (`agent_instances`).
    pub instance: String,
}

impl Host {
    /// Build the engine, admit the bundle, open the store and set up the call path for the
    /// agent `id` (named `name`, running `script`).
    pub fn build(
        settings: &Settings,
        name: &str,
        script: &Path,
        id: String,
        env_vars: &BTreeMap<String, String>,
    ) -> Result<Host, StartError> {
        let mut core = Core::open(settings, env_vars, Some(ForAgent { id: &id }))?;
        let entered = core.runtime.enter();
        let settings = &core.settings;
        let llm = &settings.llm;
        let mode = llm.mode.unwrap_or(LlmMode::Auto);
        let timeout = Duration::from_millis(llm.timeout_ms.unwrap_or(60_000));
        let http = if mode == LlmMode::Simulator {
            None
        } else {
            Some(Arc::new(
                HttpUpstream::new(core.runtime.handle().clone(), timeout)
                    .map_err(|e| StartError::Failed(e.to_string()))?,
            ))
        };
        let tokens: Arc<dyn TokenMeter> = core.meter.clone();
        let simulator = Arc::new(Simulator::new(settings.simulator.clone(), tokens.clone()));
        let env_keys = crate::gateway::keys::host_keys(env_vars, &settings.upstreams);
        let alerts = Alerts::spawn(
            &settings.alerts,
            &core.bus,
            crate::alerts::Deps {
                store: core.plane.store.clone(),
                secrets: core.plane.secrets.clone(),
                environment: settings.environment.clone(),
            },
        )
        .map_err(StartError::Failed)?;
        let options = GatewayOptions {
            mode,
            timeout,
            max_retries: llm.max_retries.unwrap_or(2),
            backoff: Duration::from_millis(llm.backoff_ms.unwrap_or(500)),
            max_backoff: Duration::from_millis(llm.max_backoff_ms.unwrap_or(30_000)),
            budget_usd: core.budget_usd,
            unknown_parts: llm.unknown_parts.unwrap_or_default(),
            upstreams: settings.upstreams.clone(),
        };
        let agent = AgentInfo {
            agent_id: id.clone(),
            name: name.to_owned(),
            environment: settings.environment.clone(),
        };
        let secrets: Arc<SecretStore> = core.plane.secrets.clone();
        let gateway = Arc::new(
            Gateway::builder(core.live.chain.clone(), agent, tokens)
                .simulator(simulator)
                .http(http)
                .secrets(secrets)
                .env_keys(env_keys)
                .bus(core.bus.clone())
                .metrics(Arc::new(Metrics::default()))
                .options(options)
                .build(),
        );
        core.runtime
            .block_on(core.plane.store.register_agent(&NewAgent {
                id: &id,
                name,
                script: &script.display().to_string(),
                bundle: &core.bundle_name,
                environment: &settings.environment,
                budget_usd: core.budget_usd,
                pid: std::process::id(),
                pid_start: crate::store::queries::process_start(i64::from(std::process::id())),
                runner: if settings.in_process {
                    crate::store::queries::RUNNER_PYTHON_SDK
                } else {
                    crate::store::queries::RUNNER_IRONHOST
                },
            }))
            .map_err(|e| StartError::Failed(e.to_string()))?;
        // This process in the fleet view; it beats while it runs.
        let instance = instance_id(&id);
        core.runtime
            .block_on(core.plane.store.register_instance(&NewInstance {
                id: &instance,
                agent_id: &id,
                host: &ids::host_name(),
                pid: std::process::id(),
                runner: if settings.in_process {
                    crate::store::queries::RUNNER_PYTHON_SDK
                } else {
                    crate::store::queries::RUNNER_IRONHOST
                },
                bundle: &core.bundle_name,
                revision: Some(core.live.bundle.running().revision),
            }))
            .map_err(|e| StartError::Failed(e.to_string()))?;
        drop(entered);
        core.live.gateway = Some(gateway.clone());
        let watcher = core.watch();
        let on_stop: watch::StopHandler = if core.settings.in_process {
            let agent = id.clone();
            Box::new(move |_| {
                runs::stop_in_process(&agent);
            })
        } else {
            // The way a stop signal stops `ironhost start`: the supervisor ends the agent.
            Box::new(|_| {
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::TERM,
                );
            })
        };
        watcher.beat_for(instance.clone(), on_stop);
        if let Some(usr1) = core.usr1.take() {
            let _entered = core.runtime.enter();
            watch_usr1(
                usr1,
                core.plane.secrets.clone(),
                core.live.clone(),
                core.plane.store.clone(),
            );
        }
        Ok(Host {
            core,
            gateway,
            alerts,
            api_addr: None,
            api_feed: None,
            instance,
        })
    }

    /// Wait until every event so far and all policy state are in the store: as long as the
    /// store keeps writing, and at most 5 s without progress; then let alert deliveries finish.
    pub fn flush(&self) {
        let seq = self.core.flush_store();
        if let Some(alerts) = &self.alerts {
            // Deliveries still queued get 20 s; one takes at most 3 attempts of its webhook's
            // or SMTP server's timeout plus backoff. Whatever is still queued then is dropped, with a warning.
            let sent = self
                .core
                .runtime
                .block_on(alerts.flush(seq, Duration::from_secs(20)));
            if !sent {
                tracing::warn!("alerts did not finish within 20 s");
            }
        }
    }

    /// The agent ended: its process leaves the fleet view, and everything is flushed.
    pub fn finish(&self) {
        if let Err(e) = self
            .core
            .runtime
            .block_on(self.core.plane.store.end_instance(&self.instance))
        {
            tracing::warn!("cannot record that this process ended: {e}");
        }
        self.flush();
        // What it spent is settled and its budget leases go back to the others.
        if let Err(e) = self
            .core
            .runtime
            .block_on(self.core.plane.state.release_leases())
        {
            tracing::warn!("cannot give back the budget leases: {e}");
        }
    }

    /// Finish, then stop: the store's writers, the API and the I/O runtime end (the Python SDK
    /// closing an in-process agent).
    pub fn shutdown(self) {
        self.finish();
        let Host {
            core,
            gateway,
            alerts,
            ..
        } = self;
        let Core {
            plane,
            engine,
            bus,
            recorder,
            live,
            runtime,
            lease,
            ..
        } = core;
        {
            // The store's pool and the writers close on this runtime.
            let _entered = runtime.enter();
            drop((gateway, bus, engine, plane, recorder, alerts, live));
        }
        runtime.shutdown_timeout(Duration::from_secs(2));
        drop(lease);
    }
}

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
            if let Err(e) = live::reload_limit(&live, &store).await {
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

/// Wait until the events up to `seq` and all policy state are in the store (giving up after
/// `limit` without progress). False if either did not make it.
async fn flush_store(recorder: &Recorder, state: &StoredState, seq: u64, limit: Duration) -> bool {
    let written = recorder.flush(seq, limit).await;
    let persisted = tokio::time::timeout(limit, state.flush()).await;
    written && persisted.is_ok()
}
