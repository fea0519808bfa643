//! `ironhost._native.Agent`: the one object the pure-Python layer calls, for both ways an agent
//! runs. Under the Python SDK (`@ironhost.protect_agent`, `ironhost.AgentRuntime`),
//! `open_agent` builds the same host `ironhost start` builds (engine, bundle, simulator or
//! providers, store, optionally the control plane) inside the caller's process; under
//! `ironhost start`, [`hosted`] is the worker's agent, whose calls go to the host over its
//! socket. The methods are the same; only where a call goes differs.
//!
//! Several SDK agents can be open in one process, each with its own host; the Python layer
//! picks the agent a call belongs to (a context variable) and calls its methods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde::Deserialize;

use super::calls::{self, HttpReply, PyToolTicket, ToolBegin, ToolEnd, Via};
use super::errors::{error, remote_to_py};
use super::interpreter::detached;
use crate::agent::remote::Remote;
use crate::agent::runtime;
use crate::config::{self, Flags};
use crate::core::ids;
use crate::core::{Host, StartError};
use crate::events::{AgentState, EventKind};
use crate::gateway::{Gateway, HttpRequest};
use crate::model::Severity;
use crate::policy::chain::Outcome;

/// What the Python layer asks for (a dict from `ironhost._sdk`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenOptions {
    /// The agent's name; without one, the script's (as `ironhost start` names it).
    name: Option<String>,
    /// What the store shows as the agent's script (a path, or `module:function`).
    script: String,
    budget: Option<f64>,
    bundle: Option<String>,
    safety_mode: Option<String>,
    /// Policies to leave out (`pii-redact`, `circuit-breaker`).
    #[serde(default)]
    without: Vec<String>,
    /// A config file (else `IRONHOST_CONFIG`, else `./ironhost.toml` when it exists).
    config: Option<String>,
    environment: Option<String>,
    agent_id: Option<String>,
    /// Serve the control plane from this process.
    #[serde(default)]
    api: bool,
    listen: Option<String>,
    /// The directory relative paths are read from.
    cwd: String,
    /// The process environment (the SDKs' placeholder keys left out).
    env: BTreeMap<String, String>,
}

/// Where an agent's runs are. Runs may overlap (concurrent calls of a protected function): the
/// agent is running while any is. A run that ends while others go on is recorded when the last
/// of them ends (each with its own end), so the store never shows the agent ended while a run
/// goes on; the agent's state is then that of the last run to end.
#[derive(Debug)]
struct Status {
    state: AgentState,
    /// Runs begun so far.
    runs: u32,
    /// Runs under way, by number.
    open: std::collections::BTreeSet<u32>,
    /// Runs that ended while others were under way: (run, state, exit code).
    ended: Vec<(u32, AgentState, i32)>,
    /// Set by `close`: runs that end later are not recorded (they were recorded as stopped).
    closed: bool,
}

impl Status {
    /// Record the ends held back, then this one (all under the status lock, so a run that
    /// starts meanwhile is recorded after them).
    fn record_ends(&mut self, gateway: &Gateway, last: (u32, AgentState, i32)) {
        let agent_id = &gateway.agent().agent_id;
        for (run, state, exit_code) in self.ended.drain(..).chain(std::iter::once(last)) {
            let severity = if state == AgentState::Failed {
                Severity::High
            } else {
                Severity::Info
            };
            gateway.bus().publish(
                agent_id,
                severity,
                EventKind::AgentStopped {
                    state,
                    exit_code,
                    run,
                },
            );
        }
        self.state = last.1;
    }
}

/// An agent open in this process (the SDK), on its own host.
struct InProcess {
    gateway: Arc<Gateway>,
    host: Mutex<Option<Host>>,
    status: Mutex<Status>,
    script: String,
    start_env: Vec<(String, String)>,
    /// `[[llm.upstreams]]` with the built-ins (name, base URL): requests to them go through
    /// the chain.
    upstreams: Vec<(String, String)>,
    dashboard: Option<String>,
    /// Set by [`Agent::stop`]: calls in flight end and new ones are refused.
    stop: Arc<AtomicBool>,
    /// LLM calls under way: `close` waits for them before it flushes the store.
    in_flight: AtomicUsize,
}

/// How long `close` waits for LLM calls under way (a provider call has its own timeout).
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long `close` then gives the calls it stopped to end and record themselves.
const STOPPED_CALLS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One LLM call under way, counted from before the agent is checked to be open.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("agent_id", &self.gateway.agent().agent_id)
            .field("script", &self.script)
            .finish_non_exhaustive()
    }
}

fn open(opts: OpenOptions) -> Result<InProcess, StartError> {
    let cwd = PathBuf::from(&opts.cwd);
    let flags = Flags {
        config: opts.config.map(PathBuf::from),
        budget: opts.budget,
        bundle: opts.bundle,
        safety_mode: opts.safety_mode,
        env: opts.environment,
        listen: opts.listen,
        no_api: !opts.api,
        ..Flags::default()
    };
    let mut settings = config::load(&flags, &opts.env, &cwd)
        .map_err(|e| StartError::Config(format!("config: {e}")))?;
    settings.without = opts.without;
    settings.in_process = true;
    crate::logging::init_at(
        settings.log_format,
        if settings.verbose { "debug" } else { "warn" },
    );
    if settings.egress.mode == crate::config::egress::EgressMode::GovernedOnly {
        tracing::warn!(
            "egress = \"governed-only\" applies to agents under `ironhost start` (a process of \
             their own); this agent runs inside its program's process, whose network ironhost \
             does not take away: its LLM requests are governed, its other connections are not"
        );
    }
    let script = PathBuf::from(&opts.script);
    let name = opts.name.unwrap_or_else(|| ids::agent_name(&script));
    let id = match opts.agent_id {
        Some(id) => {
            ids::check_agent_id(&id).map_err(|e| StartError::Config(format!("agent_id: {e}")))?;
            id
        }
        None => ids::agent_id_for(&name),
    };
    let mut host = Host::build(&settings, &name, &script, id, &opts.env)?;
    if let Err(e) = crate::api::serve::beside(&mut host) {
        host.shutdown();
        return Err(StartError::Config(e));
    }
    // Policies may refuse the agent or give it its environment (secrets-inject).
    let gateway = host.gateway.clone();
    let mut start_env = match gateway.chain().on_agent_start(gateway.agent()).outcome {
        Outcome::Continue { value } => value.env,
        Outcome::Deny { policy, denial } => {
            let message = format!(
                "policy `{policy}` refused to start the agent ({}): {}",
                denial.code, denial.message
            );
            host.shutdown();
            return Err(StartError::Failed(message));
        }
        _ => Vec::new(),
    };
    crate::gateway::keys::without_keys(&mut start_env, &settings.upstreams);
    let dashboard = host.api_addr.map(crate::api::serve::url);
    // A rotated or deleted secret reaches os.environ, as under `ironhost start`.
    let env = Arc::new(parking_lot::Mutex::new(start_env.iter().cloned().collect()));
    let apply: runtime::EnvApplier =
        Arc::new(|set, unset| super::interpreter::update_environ(&set, &unset).is_ok());
    runtime::follow_secrets(&host, env, apply);
    let stop = crate::core::runs::register(&gateway.agent().agent_id);
    Ok(InProcess {
        gateway,
        host: Mutex::new(Some(host)),
        status: Mutex::new(Status {
            state: AgentState::Starting,
            runs: 0,
            open: Default::default(),
            ended: Vec::new(),
            closed: false,
        }),
        script: opts.script,
        start_env,
        upstreams: settings.upstreams.routes(),
        dashboard,
        stop,
        in_flight: AtomicUsize::new(0),
    })
}

/// Open an agent in this process from the options (a dict, the keys of [`OpenOptions`]); a
/// bad setting raises `ConfigurationError`.
#[pyfunction]
pub(super) fn open_agent(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<Agent> {
    // Under `ironhost start` the process is the host's agent, under the operator's settings: an
    // agent of its own would be a way around them.
    if HOST.get().is_some() {
        return Err(error(
            py,
            "IronhostError",
            "this process runs under `ironhost start`, whose agent governs it under the \
             operator's settings; run another agent with its own `ironhost start`"
                .to_owned(),
        ));
    }
    let text: String = py
        .import("json")?
        .call_method1("dumps", (options,))?
        .extract()?;
    let opts: OpenOptions = serde_json::from_str(&text)
        .map_err(|e| PyValueError::new_err(format!("open_agent: bad options: {e}")))?;
    match py.detach(|| open(opts)) {
        Ok(agent) => Ok(Agent {
            backend: Backend::InProcess(Box::new(agent)),
        }),
        Err(StartError::Config(m)) => Err(error(py, "ConfigurationError", m)),
        Err(StartError::Failed(m)) => Err(error(py, "IronhostError", m)),
    }
}

impl InProcess {
    /// The gateway, unless the agent is closed or stopped.
    fn live(&self) -> PyResult<&Arc<Gateway>> {
        if self.host.lock().is_none() {
            return Err(PyRuntimeError::new_err(format!(
                "agent {} is closed",
                self.gateway.agent().agent_id
            )));
        }
        if self.stop.load(Ordering::SeqCst) {
            return Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(format!(
                "agent {} was stopped",
                self.gateway.agent().agent_id
            )));
        }
        Ok(&self.gateway)
    }

    /// Wait (without the GIL) until no LLM call is under way or `until`; true when none is.
    fn wait_for_calls(&self, until: std::time::Instant) -> bool {
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }
}

impl InProcess {
    /// What `ironhost.current()` shows (JSON).
    fn current(&self) -> String {
        let (state, run) = {
            let status = self.status.lock();
            (status.state, status.runs)
        };
        crate::agent::status::status_json(&self.gateway, state, run)
    }

    /// A run begins (a call of a protected function, a script started): returns its number.
    fn run_started(&self) -> PyResult<u32> {
        self.live()?;
        let mut status = self.status.lock();
        status.runs += 1;
        let run = status.runs;
        status.open.insert(run);
        status.state = AgentState::Running;
        let agent = self.gateway.agent();
        self.gateway.bus().publish(
            &agent.agent_id,
            Severity::Info,
            EventKind::AgentStarted {
                name: agent.name.clone(),
                script: self.script.clone(),
                run,
            },
        );
        Ok(run)
    }

    /// Run `run` (default: the latest under way) ended with `exit_code` (0 completed; a stop,
    /// or 130 for an interrupt or a cancellation, makes it stopped; anything else failed):
    /// returns its state. After `close` the run was already recorded as stopped.
    fn run_finished(&self, exit_code: i32, run: Option<u32>) -> &'static str {
        let state = if self.stop.load(Ordering::SeqCst) || exit_code == 130 {
            AgentState::Stopped
        } else if exit_code == 0 {
            AgentState::Completed
        } else {
            AgentState::Failed
        };
        let mut status = self.status.lock();
        if status.closed {
            return AgentState::Stopped.as_str();
        }
        let run = run
            .or_else(|| status.open.last().copied())
            .unwrap_or(status.runs.max(1));
        status.open.remove(&run);
        if status.open.is_empty() {
            status.record_ends(&self.gateway, (run, state, exit_code));
        } else {
            status.ended.push((run, state, exit_code));
        }
        state.as_str()
    }

    /// Stop the agent: calls in flight end with `KeyboardInterrupt`, new ones are refused.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Write everything to the store and shut the agent's host down. New calls are refused at
    /// once; LLM calls under way in other threads get up to 30 s to get their reply (a stream
    /// still being read is cut), and runs still under way are recorded as stopped. Ctrl-C (any
    /// signal handler that raises; Python runs them in the main thread only) ends that wait:
    /// the close is finished all the same and the exception is raised after it. Calls still
    /// under way when the wait ends are stopped (they raise `KeyboardInterrupt` in their
    /// threads). Safe to call twice.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let Some(host) = self.host.lock().take() else {
            return Ok(());
        };
        let mut interrupted = Ok(());
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        loop {
            // Slices of 100 ms without the GIL, then a look at Python's signals.
            let slice = std::time::Instant::now() + std::time::Duration::from_millis(100);
            if py.detach(|| self.wait_for_calls(slice.min(deadline))) {
                break;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!("closing an agent with LLM calls still under way after 30 s");
                break;
            }
            if let Err(err) = py.check_signals() {
                tracing::warn!("closing an agent with LLM calls still under way: interrupted");
                interrupted = Err(err);
                break;
            }
        }
        py.detach(move || {
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                // Calls the close gave up on end now, as on a stop, rather than wait on a host
                // that is shut down; they notice within a poll and get a moment to record it.
                self.stop.store(true, Ordering::SeqCst);
                self.wait_for_calls(std::time::Instant::now() + STOPPED_CALLS_WAIT);
            }
            // Runs still under way (a protected function in another thread) can make no more
            // calls: the store shows them stopped, not running forever.
            {
                let mut status = self.status.lock();
                status.closed = true;
                let open: Vec<u32> = std::mem::take(&mut status.open).into_iter().collect();
                if let Some((&last, rest)) = open.split_last() {
                    for &run in rest {
                        status.ended.push((run, AgentState::Stopped, 130));
                    }
                    status.record_ends(&self.gateway, (last, AgentState::Stopped, 130));
                }
            }
            host.shutdown();
            crate::logging::flush(crate::logging::FLUSH);
            // Until now a stop through the control plane still finds the agent here.
            crate::core::runs::remove(&self.gateway.agent().agent_id);
        });
        interrupted
    }
}

/// The host this worker's agent sends its calls to (under `ironhost start`).
static HOST: OnceLock<Arc<Remote>> = OnceLock::new();
/// The agent under `ironhost start`, in its worker, made at its first use ([`hosted`]).
static HOSTED: OnceLock<Py<Agent>> = OnceLock::new();

/// Tell the host this worker's agent caught a stop signal.
pub(super) fn signal_host(signum: i32) {
    if let Some(remote) = HOST.get() {
        remote.signal(signum);
    }
}

/// Serve this worker's agent through the host at `remote` (see [`hosted`]). Called before
/// Python starts.
pub(super) fn install_hosted(remote: Arc<Remote>) {
    let _ = HOST.set(remote);
}

/// The agent under `ironhost start` (in its worker), or `None`: its calls go to the host.
#[pyfunction]
pub(super) fn hosted(py: Python<'_>) -> PyResult<Option<Py<Agent>>> {
    let Some(remote) = HOST.get() else {
        return Ok(None);
    };
    if let Some(agent) = HOSTED.get() {
        return Ok(Some(agent.clone_ref(py)));
    }
    let made = Py::new(
        py,
        Agent {
            backend: Backend::Hosted(remote.clone()),
        },
    )?;
    // Two threads may race here: both get the one that was stored.
    Ok(Some(HOSTED.get_or_init(|| made).clone_ref(py)))
}

enum Backend {
    InProcess(Box<InProcess>),
    Hosted(Arc<Remote>),
}

/// An agent: one opened in this process by the SDK (`open_agent`), or the one `ironhost start`
/// runs in this worker ([`hosted`]). The same calls either way; the pure-Python layer does
/// not know which it has.
#[pyclass(module = "ironhost._native", name = "Agent", frozen)]
pub struct Agent {
    backend: Backend,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::InProcess(a) => a.fmt(f),
            Backend::Hosted(r) => f.debug_tuple("Hosted").field(r).finish(),
        }
    }
}

impl Agent {
    /// The hosted agent's own figures, from the host.
    fn hosted_status(&self, py: Python<'_>, remote: &Remote) -> PyResult<serde_json::Value> {
        let (out, pending) = detached(py, None, |_| remote.current());
        let text = out.map_err(|e| remote_to_py(py, e, pending))?;
        serde_json::from_str(&text)
            .map_err(|e| PyRuntimeError::new_err(format!("the host's status is not JSON: {e}")))
    }

    fn hosted_only(py: Python<'_>, what: &str) -> PyErr {
        error(
            py,
            "IronhostError",
            format!("{what}: the agent under `ironhost start` is run by the host"),
        )
    }
}

#[pymethods]
impl Agent {
    #[getter]
    fn agent_id(&self, py: Python<'_>) -> PyResult<String> {
        match &self.backend {
            Backend::InProcess(a) => Ok(a.gateway.agent().agent_id.clone()),
            Backend::Hosted(r) => Ok(self.hosted_status(py, r)?["agent_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()),
        }
    }

    #[getter]
    fn name(&self, py: Python<'_>) -> PyResult<String> {
        match &self.backend {
            Backend::InProcess(a) => Ok(a.gateway.agent().name.clone()),
            Backend::Hosted(r) => Ok(self.hosted_status(py, r)?["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()),
        }
    }

    #[getter]
    fn budget_usd(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        match &self.backend {
            Backend::InProcess(a) => Ok(a.gateway.budget_usd()),
            Backend::Hosted(r) => Ok(self.hosted_status(py, r)?["budget_usd"].as_f64()),
        }
    }

    /// The bundle's name (an SDK agent's).
    #[getter]
    fn bundle(&self) -> Option<String> {
        match &self.backend {
            Backend::InProcess(a) => a.host.lock().as_ref().map(|h| h.core.bundle_name.clone()),
            Backend::Hosted(_) => None,
        }
    }

    /// The control plane's URL, when this agent serves it (an SDK agent).
    #[getter]
    fn dashboard(&self) -> Option<String> {
        match &self.backend {
            Backend::InProcess(a) => a.dashboard.clone(),
            Backend::Hosted(_) => None,
        }
    }

    /// The environment the policies gave an SDK agent at its start (secrets-inject).
    #[getter]
    fn start_env(&self) -> Vec<(String, String)> {
        match &self.backend {
            Backend::InProcess(a) => a.start_env.clone(),
            Backend::Hosted(_) => Vec::new(),
        }
    }

    /// The upstreams (name, base URL) whose requests go through an SDK agent's chain.
    #[getter]
    fn upstreams(&self) -> Vec<(String, String)> {
        match &self.backend {
            Backend::InProcess(a) => a.upstreams.clone(),
            Backend::Hosted(_) => Vec::new(),
        }
    }

    /// LLM calls under way (until their reply starts) of an SDK agent.
    #[getter]
    fn calls_under_way(&self) -> usize {
        match &self.backend {
            Backend::InProcess(a) => a.in_flight.load(Ordering::SeqCst),
            Backend::Hosted(_) => 0,
        }
    }

    #[getter]
    fn stopping(&self) -> bool {
        match &self.backend {
            Backend::InProcess(a) => a.stop.load(Ordering::SeqCst),
            Backend::Hosted(_) => false,
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        match &self.backend {
            Backend::InProcess(a) => a.host.lock().is_none(),
            Backend::Hosted(_) => false,
        }
    }

    /// An SDK's HTTP request to an upstream, through the chain.
    fn handle_http(
        &self,
        py: Python<'_>,
        upstream: String,
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> PyResult<HttpReply> {
        let req = HttpRequest {
            upstream,
            method,
            path,
            headers,
            body: body.to_vec(),
        };
        match &self.backend {
            Backend::InProcess(a) => {
                // Counted before the check: a `close` that finds no call under way finds none
                // later.
                a.in_flight.fetch_add(1, Ordering::SeqCst);
                let _call = InFlight(&a.in_flight);
                let via = Via::Local {
                    gateway: a.live()?,
                    stop: Some(&a.stop),
                };
                calls::http(py, via, req)
            }
            Backend::Hosted(r) => calls::http(py, Via::Host(r), req),
        }
    }

    /// A tool call about to run: run it, or take a policy's answer.
    fn tool_begin(&self, py: Python<'_>, name: String, arguments: String) -> PyResult<ToolBegin> {
        match &self.backend {
            Backend::InProcess(a) => {
                let via = Via::Local {
                    gateway: a.live()?,
                    stop: None,
                };
                calls::tool_begin(py, via, &name, arguments)
            }
            Backend::Hosted(r) => calls::tool_begin(py, Via::Host(r), &name, arguments),
        }
    }

    /// A tool call ended: its result (`ok`) or error (`payload` the message, `kind` its class).
    fn tool_end(
        &self,
        py: Python<'_>,
        ticket: &Bound<'_, PyToolTicket>,
        ok: bool,
        payload: String,
        kind: String,
    ) -> PyResult<ToolEnd> {
        let via = match &self.backend {
            // A tool that ran reports its end even after a stop: the call is accounted for.
            Backend::InProcess(a) => Via::Local {
                gateway: &a.gateway,
                stop: None,
            },
            Backend::Hosted(r) => Via::Host(r),
        };
        calls::tool_end(py, via, ticket, ok, payload, &kind)
    }

    /// `ironhost.current()`: the agent, its state and its live figures (a dict).
    fn current<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = match &self.backend {
            Backend::InProcess(a) => a.current(),
            Backend::Hosted(r) => {
                let (out, pending) = detached(py, None, |_| r.current());
                out.map_err(|e| remote_to_py(py, e, pending))?
            }
        };
        py.import("json")?.call_method1("loads", (text,))
    }

    /// The agent's progress (`done` of `total` `unit`s), on its event stream.
    #[pyo3(signature = (done, total=None, unit=None))]
    fn progress(
        &self,
        py: Python<'_>,
        done: u64,
        total: Option<u64>,
        unit: Option<String>,
    ) -> PyResult<()> {
        calls::check_progress(done, total)?;
        match &self.backend {
            Backend::InProcess(a) => {
                let gw = a.live()?;
                gw.bus().publish(
                    &gw.agent().agent_id,
                    Severity::Info,
                    EventKind::AgentProgress { done, total, unit },
                );
                Ok(())
            }
            Backend::Hosted(r) => {
                let (out, pending) = detached(py, None, |_| r.progress(done, total, unit));
                out.map_err(|e| remote_to_py(py, e, pending))
            }
        }
    }

    /// One unit of the agent's work finished (`ironhost.unit_done`), on its event stream.
    #[pyo3(signature = (ok, seconds=None, fallback=None, unit=None))]
    fn unit_done(
        &self,
        py: Python<'_>,
        ok: bool,
        seconds: Option<f64>,
        fallback: Option<String>,
        unit: Option<String>,
    ) -> PyResult<()> {
        match &self.backend {
            Backend::InProcess(a) => {
                crate::agent::status::record_unit(a.live()?, ok, seconds, fallback, unit)
                    .map_err(PyValueError::new_err)
            }
            Backend::Hosted(r) => {
                // Checked here too, so the error is a ValueError like in-process.
                crate::agent::status::unit_done(ok, seconds, fallback.clone(), unit.clone())
                    .map_err(PyValueError::new_err)?;
                let (out, pending) =
                    detached(py, None, |_| r.unit_done(ok, seconds, fallback, unit));
                out.map_err(|e| remote_to_py(py, e, pending))
            }
        }
    }

    /// A run begins (a call of a protected function, a script started): returns its number.
    fn run_started(&self, py: Python<'_>) -> PyResult<u32> {
        match &self.backend {
            Backend::InProcess(a) => a.run_started(),
            Backend::Hosted(_) => Err(Agent::hosted_only(py, "run_started")),
        }
    }

    /// Run `run` (default: the latest under way) ended with `exit_code`: returns its state.
    #[pyo3(signature = (exit_code, run=None))]
    fn run_finished(
        &self,
        py: Python<'_>,
        exit_code: i32,
        run: Option<u32>,
    ) -> PyResult<&'static str> {
        match &self.backend {
            Backend::InProcess(a) => Ok(a.run_finished(exit_code, run)),
            Backend::Hosted(_) => Err(Agent::hosted_only(py, "run_finished")),
        }
    }

    /// Stop the agent: calls in flight end with `KeyboardInterrupt`, new ones are refused.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        match &self.backend {
            Backend::InProcess(a) => {
                a.stop();
                Ok(())
            }
            Backend::Hosted(_) => Err(Agent::hosted_only(py, "stop")),
        }
    }

    /// Write everything to the store and shut the agent's host down (see `InProcess::close`).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        match &self.backend {
            Backend::InProcess(a) => a.close(py),
            Backend::Hosted(_) => Err(Agent::hosted_only(py, "close")),
        }
    }
}
