//! One agent's life under `ironhost start`, on a host built by `core`: start CPython (in a
//! worker, or in this process), run the script as `__main__`, and watch it: states starting → running →
//! completed / failed / stopped, restarts on failure, and a clean stop on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::ipc::Setup;
use super::status;
use super::{sandbox, worker};
use crate::config::{Isolation, Restart, Settings};
use crate::core::{Host, StartError};
use crate::events::{AgentState, EventKind};
use crate::model::Severity;
use crate::secrets::Actor;

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
    let mut changes = host.core.plane.secrets.subscribe();
    let gateway = host.gateway.clone();
    let secrets = host.core.plane.secrets.clone();
    let bus = host.core.bus.clone();
    host.core.runtime().spawn(async move {
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
            crate::gateway::keys::without_keys(&mut given, &gateway.options().upstreams);
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
    let _entered = host.core.runtime().enter();
    let failed = |e: std::io::Error| StartError::Failed(format!("cannot handle stop signals: {e}"));
    let mut int = signal(SignalKind::interrupt()).map_err(failed)?;
    let mut term = signal(SignalKind::terminate()).map_err(failed)?;
    let agent_id = host.gateway.agent().agent_id.clone();
    host.core.runtime().spawn(async move {
        let mut seen = 0u32;
        loop {
            let signum = tokio::select! {
                Some(()) = int.recv() => libc::SIGINT,
                Some(()) = term.recv() => libc::SIGTERM,
                else => return,
            };
            status::note_signal_number(signum);
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
    let (_, run) = status::status();
    let kind = EventKind::AgentStopped {
        state: stopped,
        exit_code: code,
        run: run.max(1),
    };
    host.core
        .bus
        .publish(&host.gateway.agent().agent_id, Severity::High, kind);
    host.finish();
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
    status::set_status(AgentState::Starting, 1);
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
    let dropped = crate::gateway::keys::without_keys(&mut given, &settings.upstreams);
    if !dropped.is_empty() {
        tracing::warn!(
            "the policies gave the agent {}: upstream keys never reach the agent (it gets a \
             placeholder; the host adds the key at egress)",
            dropped.join(", ")
        );
    }
    let base_env = crate::gateway::keys::agent_env(env_vars, &settings.upstreams);
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
        status::set_status(AgentState::Running, run);
        host.core.bus.publish(
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
        if let Some(sig) = status::signal_received() {
            send_signal(w.child.id(), rustix_signal(sig));
        }
        let setup_error = match ready.recv() {
            Ok(Ok(())) => None,
            Ok(Err(m)) => Some(m),
            Err(_) => Some("the agent's process ended before it was ready".to_owned()),
        };
        let status = w.child.wait();
        *current.lock() = Current::default();
        // The calls it left in flight end (abandoned, their reservations released) and are
        // recorded before the run's summary.
        if !w.link.wait_idle(Duration::from_secs(3)) {
            tracing::warn!("calls of the agent's process were still in flight 3 s after it ended");
        }
        let status = status
            .map_err(|e| StartError::Failed(format!("cannot wait for the agent's process: {e}")))?;
        if let Some(m) = setup_error
            && status::signal_received().is_none()
        {
            return Err(StartError::Failed(m));
        }
        let stop = status::signal_received().or_else(|| w.link.signal());
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
        status::set_status(state, run);
        host.core.bus.publish(
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
            if status::signal_received().is_none() {
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
        host.finish();
        return Ok(code);
    }
}
