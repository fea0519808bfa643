//! CPython embedded in the host: the `ironhost` Python package (its pure-Python layer from
//! `python/ironhost/`, compiled into the binary) and its native half `ironhost._native`, which
//! hands SDK requests and tool calls to the [`Gateway`].
//!
//! Waits in native code release the GIL. On the main thread they check for signals every
//! [`POLL`](crate::llm::upstream::POLL), so Ctrl-C or SIGTERM interrupts a call in flight with
//! `KeyboardInterrupt` (and the chain is told the call was abandoned).

use std::ffi::CString;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread::ThreadId;

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use super::remote::{Remote, RemoteError, RemoteReply, RemoteToolStart};
use crate::events::AgentState;
use crate::gateway::{
    Gateway, GatewayError, GatewayReply, HttpRequest, StreamReply, ToolStart, ToolTicket,
};
use crate::model::{ToolError, ToolErrorKind, ToolOutcome};

// The pure-Python layer (`python/ironhost/**/*.py`), embedded by the build script as `SOURCES`.
include!(concat!(env!("OUT_DIR"), "/python_sources.rs"));

/// Serves the embedded sources to `import`, ahead of anything installed.
const FINDER: &str = r#"
import importlib.abc, importlib.util, sys

class EmbeddedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, sources):
        self.sources = sources

    def find_spec(self, name, path=None, target=None):
        if name not in self.sources:
            return None
        is_pkg = self.sources[name][0]
        return importlib.util.spec_from_loader(
            name, self, origin="<ironhost>/" + name, is_package=is_pkg)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = self.sources[module.__name__][1]
        exec(compile(source, module.__spec__.origin, "exec"), module.__dict__)

def install(sources):
    sys.meta_path.insert(0, EmbeddedFinder(sources))
"#;

/// The host this worker serves the agent's calls through (under `ironhost start`).
static REMOTE: OnceLock<Arc<Remote>> = OnceLock::new();
static STATUS: Mutex<(AgentState, u32)> = Mutex::new((AgentState::Starting, 0));
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SHUTDOWN: AtomicBool = AtomicBool::new(false);
static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Serve the module's calls (the agent under `ironhost start`) through the host at `remote`.
pub fn install_remote(remote: Arc<Remote>) {
    let _ = REMOTE.set(remote);
}

/// Record where the agent is in its life, for `ironhost.current()`.
pub fn set_status(state: AgentState, run: u32) {
    *STATUS.lock() = (state, run);
}

/// The agent's state and run number now.
pub fn status() -> (AgentState, u32) {
    *STATUS.lock()
}

/// The first stop signal received, if any.
pub fn signal_received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Record a stop signal: waits in other threads end, and the exit code says which signal.
/// True for the first one.
pub fn note_signal_number(signum: i32) -> bool {
    let first = SIGNAL
        .compare_exchange(0, signum, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    SHUTDOWN.store(true, Ordering::SeqCst);
    first
}

fn remote() -> PyResult<Arc<Remote>> {
    REMOTE.get().cloned().ok_or_else(|| {
        PyRuntimeError::new_err(
            "no ironhost agent is active here: run under `ironhost start`, \
             `@ironhost.protect_agent` or `ironhost.AgentRuntime`",
        )
    })
}

fn on_main_thread() -> bool {
    MAIN_THREAD.get() == Some(&std::thread::current().id())
}

/// Run `f` without the GIL; its interrupt asks Python for pending signals (main thread) or
/// looks at the shutdown flag (other threads), and at `stop` (an in-process agent being
/// stopped). Returns the signal handler's exception, if any.
fn detached<T: Send>(
    py: Python<'_>,
    stop: Option<&AtomicBool>,
    f: impl FnOnce(&dyn Fn() -> bool) -> T + Send,
) -> (T, Option<PyErr>) {
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let main = on_main_thread();
    let out = py.detach(|| {
        let check = || {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return true;
            }
            if main {
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    *pending.lock() = Some(e);
                    return true;
                }
                false
            } else {
                SHUTDOWN.load(Ordering::SeqCst)
            }
        };
        f(&check)
    });
    (out, pending.into_inner())
}

pub(crate) fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("ironhost.errors")?.getattr(name)
}

/// The Python exception for a gateway error.
fn to_py(py: Python<'_>, e: GatewayError, pending: Option<PyErr>) -> PyErr {
    if let Some(p) = pending {
        return p;
    }
    let made = match &e {
        GatewayError::Denied { policy, denial } => error_class(py, "_denial").and_then(|f| {
            f.call1((
                denial.message.clone(),
                denial.code.clone(),
                policy.clone(),
                denial.retry_after_ms.map(|ms| ms as f64 / 1000.0),
            ))
        }),
        GatewayError::Timeout(m) => {
            error_class(py, "_ProviderTimeout").and_then(|c| c.call1((m.clone(),)))
        }
        GatewayError::Connection(m) => {
            error_class(py, "_ProviderUnreachable").and_then(|c| c.call1((m.clone(),)))
        }
        GatewayError::NoKey(m) => {
            error_class(py, "ConfigurationError").and_then(|c| c.call1((m.clone(),)))
        }
        GatewayError::Interrupted => {
            return pyo3::exceptions::PyKeyboardInterrupt::new_err("the call was interrupted");
        }
    };
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// The Python exception for an error from the host.
fn remote_to_py(py: Python<'_>, e: RemoteError, pending: Option<PyErr>) -> PyErr {
    match e {
        RemoteError::Gateway(e) => to_py(py, e, pending),
        RemoteError::Host(message) => {
            if let Some(p) = pending {
                return p;
            }
            match error_class(py, "IronhostError").and_then(|c| c.call1((message.clone(),))) {
                Ok(exc) => PyErr::from_value(exc),
                Err(_) => PyRuntimeError::new_err(message),
            }
        }
    }
}

/// A stream or tool ticket the host holds for the agent; given back when dropped before the
/// host ended it.
struct Held {
    remote: Arc<Remote>,
    handle: u64,
    /// False once the host has ended it.
    armed: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.armed {
            self.remote.release(self.handle);
        }
    }
}

enum StreamSource {
    Local(Box<StreamReply>),
    Remote(Held),
}

/// A streamed answer, pulled by the SDK's byte stream.
#[pyclass(module = "ironhost._native", name = "NativeStream")]
struct NativeStream {
    inner: Mutex<Option<StreamSource>>,
    stop: Option<Arc<AtomicBool>>,
}

#[pymethods]
impl NativeStream {
    /// The next bytes, or `None` at the end.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let (out, pending) = detached(py, self.stop.as_deref(), |interrupt| {
            let mut guard = self.inner.lock();
            let r = match guard.as_mut() {
                Some(StreamSource::Local(s)) => {
                    s.next_bytes(interrupt).map_err(RemoteError::Gateway)
                }
                Some(StreamSource::Remote(s)) => s.remote.stream_next(s.handle, interrupt),
                None => Ok(None),
            };
            if !matches!(r, Ok(Some(_))) {
                // Ended, denied or failed: the call is recorded; drop it now (a stream the
                // host has ended needs no giving back).
                if let Some(StreamSource::Remote(mut s)) = guard.take() {
                    s.armed = false;
                }
            }
            r
        });
        match out {
            Ok(Some(b)) => Ok(Some(PyBytes::new(py, &b))),
            Ok(None) => Ok(None),
            Err(e) => Err(remote_to_py(py, e, pending)),
        }
    }

    /// The agent stopped reading: the call is abandoned.
    fn close(&self, py: Python<'_>) {
        let taken = self.inner.lock().take();
        py.detach(move || drop(taken));
    }
}

#[pyfunction]
fn handle_http<'py>(
    py: Python<'py>,
    upstream: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: &[u8],
) -> PyResult<Bound<'py, PyTuple>> {
    let remote = remote()?;
    let req = HttpRequest {
        upstream,
        method,
        path,
        headers,
        body: body.to_vec(),
    };
    let (out, pending) = detached(py, None, |interrupt| remote.http(req, interrupt));
    match out {
        Ok(RemoteReply::Full {
            status,
            headers,
            body,
        }) => (status, headers, PyBytes::new(py, &body)).into_pyobject(py),
        Ok(RemoteReply::Stream { stream, headers }) => {
            let stream = Py::new(
                py,
                NativeStream {
                    inner: Mutex::new(Some(StreamSource::Remote(Held {
                        remote: remote.clone(),
                        handle: stream,
                        armed: true,
                    }))),
                    stop: None,
                },
            )?;
            (200u16, headers, stream).into_pyobject(py)
        }
        Err(e) => Err(remote_to_py(py, e, pending)),
    }
}

/// An SDK request through `gw`: `(status, headers, bytes)`, or `(200, headers, NativeStream)`.
pub(crate) fn http_call<'py>(
    py: Python<'py>,
    gw: &Arc<Gateway>,
    stop: Option<&Arc<AtomicBool>>,
    req: HttpRequest,
) -> PyResult<Bound<'py, PyTuple>> {
    let (out, pending) = detached(py, stop.map(|s| &**s), |interrupt| {
        gw.handle(req, interrupt)
    });
    match out {
        Ok(GatewayReply::Full {
            status,
            headers,
            body,
        }) => (status, headers, PyBytes::new(py, &body)).into_pyobject(py),
        Ok(GatewayReply::Stream(s)) => {
            let headers = s.headers().to_vec();
            let stream = Py::new(
                py,
                NativeStream {
                    inner: Mutex::new(Some(StreamSource::Local(s))),
                    stop: stop.cloned(),
                },
            )?;
            (200u16, headers, stream).into_pyobject(py)
        }
        Err(e) => Err(to_py(py, e, pending)),
    }
}

enum Ticket {
    Local(ToolTicket),
    Remote(Held),
}

/// A tool call the chain let run.
#[pyclass(module = "ironhost._native", name = "ToolTicket")]
pub(crate) struct PyToolTicket {
    inner: Mutex<Option<Ticket>>,
}

#[pyfunction]
fn tool_begin<'py>(
    py: Python<'py>,
    name: String,
    arguments: String,
) -> PyResult<Bound<'py, PyTuple>> {
    let remote = remote()?;
    let (out, pending) = detached(py, None, |interrupt| {
        remote.tool_begin(&name, &arguments, interrupt)
    });
    match out {
        Ok(RemoteToolStart::Run { ticket, arguments }) => {
            let t = Py::new(
                py,
                PyToolTicket {
                    inner: Mutex::new(Some(Ticket::Remote(Held {
                        remote: remote.clone(),
                        handle: ticket,
                        armed: true,
                    }))),
                },
            )?;
            (t.into_any(), arguments).into_pyobject(py)
        }
        Ok(RemoteToolStart::Answered(json)) => (py.None(), json).into_pyobject(py),
        Err(e) => Err(remote_to_py(py, e, pending)),
    }
}

/// A tool call about to run through `gw`: `(ticket, arguments)`, or `(None, answer)` when a
/// policy answered it.
pub(crate) fn tool_begin_with<'py>(
    py: Python<'py>,
    gw: &Gateway,
    name: &str,
    arguments: String,
) -> PyResult<Bound<'py, PyTuple>> {
    let (out, pending) = detached(py, None, |_| gw.tool_begin(name, arguments));
    match out {
        Ok(ToolStart::Run(ticket)) => {
            let args = ticket.call.arguments.clone();
            let t = Py::new(
                py,
                PyToolTicket {
                    inner: Mutex::new(Some(Ticket::Local(ticket))),
                },
            )?;
            (t.into_any(), args).into_pyobject(py)
        }
        Ok(ToolStart::Answered(json)) => (py.None(), json).into_pyobject(py),
        Err(e) => Err(to_py(py, e, pending)),
    }
}

/// A tool error's kind as the agent names it (`ToolError(kind="rate-limited")`).
pub(crate) fn tool_error_kind(kind: &str) -> ToolErrorKind {
    match kind {
        "timeout" => ToolErrorKind::Timeout,
        "rate-limited" => ToolErrorKind::RateLimited,
        "unavailable" => ToolErrorKind::Unavailable,
        "invalid-input" => ToolErrorKind::InvalidInput,
        "exception" => ToolErrorKind::Exception,
        _ => ToolErrorKind::Other,
    }
}

#[pyfunction]
fn tool_end<'py>(
    py: Python<'py>,
    ticket: &Bound<'py, PyToolTicket>,
    ok: bool,
    payload: String,
    kind: String,
) -> PyResult<Bound<'py, PyTuple>> {
    let taken = take_ticket(ticket)?;
    let Ticket::Remote(mut t) = taken else {
        return Err(PyRuntimeError::new_err(
            "this tool call belongs to an agent opened in this process, not to the host's",
        ));
    };
    // The host ends the call from here on, whatever the answer.
    t.armed = false;
    let (out, pending) = detached(py, None, |interrupt| {
        t.remote.tool_end(t.handle, ok, &payload, &kind, interrupt)
    });
    tool_end_reply(py, ok, out.map_err(|e| remote_to_py(py, e, pending)))
}

fn take_ticket(ticket: &Bound<'_, PyToolTicket>) -> PyResult<Ticket> {
    ticket
        .borrow()
        .inner
        .lock()
        .take()
        .ok_or_else(|| PyRuntimeError::new_err("this tool call has already ended"))
}

/// `(changed, ok, payload)` for the agent.
fn tool_end_reply<'py>(
    py: Python<'py>,
    ok: bool,
    out: PyResult<Option<ToolOutcome>>,
) -> PyResult<Bound<'py, PyTuple>> {
    match out? {
        None => (false, ok, py.None()).into_pyobject(py),
        Some(ToolOutcome::Ok(json)) => (true, true, json).into_pyobject(py),
        Some(ToolOutcome::Error(e)) => (true, false, e.message).into_pyobject(py),
    }
}

/// The tool's result or error through `gw`: `(changed, ok, payload)`.
pub(crate) fn tool_end_with<'py>(
    py: Python<'py>,
    gw: &Gateway,
    ticket: &Bound<'py, PyToolTicket>,
    ok: bool,
    payload: String,
    kind: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let Ticket::Local(ticket) = take_ticket(ticket)? else {
        return Err(PyRuntimeError::new_err(
            "this tool call belongs to the host's agent, not to this one",
        ));
    };
    let outcome = if ok {
        ToolOutcome::Ok(payload)
    } else {
        ToolOutcome::Error(ToolError {
            kind: tool_error_kind(kind),
            message: payload,
        })
    };
    let (out, pending) = detached(py, None, |_| gw.tool_end(ticket, outcome));
    tool_end_reply(py, ok, out.map_err(|e| to_py(py, e, pending)))
}

#[pyfunction]
fn current(py: Python<'_>) -> PyResult<String> {
    let remote = remote()?;
    let (out, pending) = detached(py, None, |_| remote.current());
    out.map_err(|e| remote_to_py(py, e, pending))
}

/// What `ironhost.current()` reads: the agent, its state and its live figures, as JSON.
pub(crate) fn status_json(gw: &Gateway, state: AgentState, run: u32) -> String {
    let agent = gw.agent();
    serde_json::json!({
        "agent_id": agent.agent_id,
        "name": agent.name,
        "environment": agent.environment,
        "state": state.as_str(),
        "run": run,
        "budget_usd": gw.budget_usd(),
        "metrics": gw.metrics().snapshot(),
    })
    .to_string()
}

/// Whether this process runs an agent under `ironhost start` (the SDK's entry points then
/// run under that agent instead of starting their own).
#[pyfunction]
pub(crate) fn has_gateway() -> bool {
    REMOTE.get().is_some()
}

/// Ask the host for a network connection (`egress = "governed-only"`, in the worker): the
/// answer's JSON and the descriptor of the connected socket it handed over (the caller owns
/// it). See [`egress`](super::egress).
#[pyfunction]
fn egress_ask(py: Python<'_>, request: String) -> PyResult<(String, Option<i32>)> {
    use std::os::fd::IntoRawFd;
    let (answer, fd) = py
        .detach(move || super::egress::ask(&request))
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("ironhost egress: {e}")))?;
    Ok((answer, fd.map(IntoRawFd::into_raw_fd)))
}

/// The agent caught a stop signal: noted here and told to the host. True for the first (the
/// agent unwinds once; the host ends it if it has not stopped in time).
#[pyfunction]
fn note_signal(signum: i32) -> bool {
    let first = note_signal_number(signum);
    if let Some(remote) = REMOTE.get() {
        remote.signal(signum);
    }
    first
}

#[pyfunction]
#[pyo3(signature = (done, total=None, unit=None))]
fn progress(py: Python<'_>, done: u64, total: Option<u64>, unit: Option<String>) -> PyResult<()> {
    check_progress(done, total)?;
    let remote = remote()?;
    let (out, pending) = detached(py, None, |_| remote.progress(done, total, unit));
    out.map_err(|e| remote_to_py(py, e, pending))
}

fn check_progress(done: u64, total: Option<u64>) -> PyResult<()> {
    if total.is_some_and(|t| done > t) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "progress: done ({done}) is more than total ({})",
            total.unwrap_or(0)
        )));
    }
    Ok(())
}

/// Publish the agent's progress through `gw`.
pub(crate) fn progress_with(
    gw: &Gateway,
    done: u64,
    total: Option<u64>,
    unit: Option<String>,
) -> PyResult<()> {
    check_progress(done, total)?;
    gw.bus().publish(
        &gw.agent().agent_id,
        crate::model::Severity::Info,
        crate::events::EventKind::AgentProgress { done, total, unit },
    );
    Ok(())
}

/// Set and remove variables in the running agent's `os.environ` (a rotated or deleted
/// secret), from any thread.
pub fn update_environ(set: &[(String, String)], unset: &[String]) -> PyResult<()> {
    Python::attach(|py| {
        let set = PyDict::from_sequence(&set.to_vec().into_pyobject(py)?)?;
        py.import("ironhost._runner")?
            .getattr("update_environ")?
            .call1((set, unset.to_vec()))?;
        Ok(())
    })
}

/// The host's own credentials: overwritten in the host's environment block once read (the
/// agent's process never gets any `IRONHOST_*` variable).
pub const SCRUBBED_VARS: [&str; 2] = ["IRONHOST_MASTER_KEY", "IRONHOST_ADMIN_PASSWORD"];

fn native_module(py: Python<'_>, fill: FillModule) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "ironhost._native")?;
    fill(&m)?;
    Ok(m)
}

/// Add the agent runtime's functions and classes to `ironhost._native` (the SDK adds its own:
/// `crate::sdk::fill_module`).
pub fn add_functions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(handle_http, m)?)?;
    m.add_function(wrap_pyfunction!(tool_begin, m)?)?;
    m.add_function(wrap_pyfunction!(tool_end, m)?)?;
    m.add_function(wrap_pyfunction!(current, m)?)?;
    m.add_function(wrap_pyfunction!(has_gateway, m)?)?;
    m.add_function(wrap_pyfunction!(note_signal, m)?)?;
    m.add_function(wrap_pyfunction!(egress_ask, m)?)?;
    m.add_function(wrap_pyfunction!(progress, m)?)?;
    m.add_class::<NativeStream>()?;
    m.add_class::<PyToolTicket>()?;
    Ok(())
}

/// This thread is Python's main thread: waits on it let Ctrl-C through.
pub fn mark_main_thread() {
    let _ = MAIN_THREAD.set(std::thread::current().id());
}

/// Fills `ironhost._native` (see `crate::sdk::fill_module`).
pub type FillModule = fn(&Bound<'_, PyModule>) -> PyResult<()>;

/// Start the interpreter in this thread (which becomes Python's main thread) and make the
/// `ironhost` package importable, its native module filled by `fill`; with `venv`, the
/// virtualenv's packages too.
pub fn start_interpreter(venv: Option<&std::path::Path>, fill: FillModule) -> PyResult<()> {
    mark_main_thread();
    Python::initialize();
    Python::attach(|py| {
        let native = native_module(py, fill)?;
        py.import("sys")?
            .getattr("modules")?
            .set_item("ironhost._native", native)?;
        let sources = PyDict::new(py);
        for &(name, is_pkg, src) in SOURCES {
            sources.set_item(name, (is_pkg, src))?;
        }
        let finder = PyModule::from_code(
            py,
            &CString::new(FINDER).map_err(|e| PyRuntimeError::new_err(e.to_string()))?,
            c"<ironhost-finder>",
            c"_ironhost_finder",
        )?;
        finder.getattr("install")?.call1((sources,))?;
        if let Some(venv) = venv {
            py.import("ironhost._runner")?
                .getattr("use_virtualenv")?
                .call1((venv.to_string_lossy().into_owned(),))?;
        }
        Ok(())
    })
}

/// One-time preparation of the worker's interpreter: signal handlers, SDK keys, HTTP hooks.
/// Returns the HTTP libraries hooked.
pub fn prepare(
    env: &[(String, String)],
    upstreams: &[(String, String)],
    governed_only: bool,
) -> PyResult<Vec<String>> {
    Python::attach(|py| {
        let env = PyDict::from_sequence(&env.to_vec().into_pyobject(py)?)?;
        py.import("ironhost._runner")?
            .getattr("prepare")?
            .call1((env, upstreams.to_vec(), governed_only))?
            .extract()
    })
}

/// Run the script as `__main__`; its exit code.
pub fn run_script(path: &std::path::Path, argv: &[String]) -> PyResult<i32> {
    Python::attach(|py| {
        py.import("ironhost._runner")?
            .getattr("run")?
            .call1((path.to_string_lossy().into_owned(), argv.to_vec()))?
            .extract()
    })
}

/// A Python error as text (type and message), for the host's own messages.
pub fn describe(e: &PyErr) -> String {
    Python::attach(|py| e.value(py).to_string())
}
