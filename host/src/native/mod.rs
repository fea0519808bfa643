//! The Python side of the host, all of it: `ironhost._native` (the module the pure-Python layer
//! calls), the agent object behind it for SDK agents and for the agent under `ironhost start`
//! ([`agent`]), the calls and their typed answers ([`calls`]), errors as `ironhost.errors`
//! classes ([`errors`]), the embedded interpreter ([`interpreter`]) and the worker process's
//! entry ([`worker`]).
//!
//! This is the only module that uses pyo3 (besides the extension's one-line `#[pymodule]` in
//! `python/src/lib.rs`). It sits with `cli` at the top of the layers: it builds hosts (`core`),
//! serves the control plane beside an SDK agent (`api`) and runs the worker's side of the agent
//! runtime (`agent`).

pub mod agent;
pub mod calls;
mod errors;
pub mod interpreter;
pub mod worker;

use pyo3::prelude::*;

/// The functions and classes of `ironhost._native`: the same in the module the worker builds
/// into its interpreter and in the extension `pip install` builds (`python/src/lib.rs`).
pub fn fill_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(agent::open_agent, m)?)?;
    m.add_function(wrap_pyfunction!(agent::hosted, m)?)?;
    m.add_function(wrap_pyfunction!(note_signal, m)?)?;
    m.add_function(wrap_pyfunction!(egress_ask, m)?)?;
    m.add_class::<agent::Agent>()?;
    m.add_class::<calls::HttpReply>()?;
    m.add_class::<calls::NativeStream>()?;
    m.add_class::<calls::ToolBegin>()?;
    m.add_class::<calls::ToolEnd>()?;
    m.add_class::<calls::PyToolTicket>()?;
    m.add_class::<EgressReply>()?;
    Ok(())
}

/// The extension module's start (`import ironhost` from a pip install): when imported on
/// Python's main thread, waits there let Ctrl-C through, as under `ironhost start`.
pub fn init_extension(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let threading = py.import("threading")?;
    let main = threading.call_method0("main_thread")?;
    if threading.call_method0("current_thread")?.is(&main) {
        interpreter::mark_main_thread();
    }
    fill_module(m)
}

/// The agent caught a stop signal: noted here and told to the host. True for the first (the
/// agent unwinds once; the host ends it if it has not stopped in time).
#[pyfunction]
fn note_signal(signum: i32) -> bool {
    let first = crate::agent::status::note_signal_number(signum);
    agent::signal_host(signum);
    first
}

/// The host's answer to an egress request (`egress = "governed-only"`): its fields, and the
/// descriptor of the connected socket it handed over, which the caller then owns.
#[pyclass(module = "ironhost._native", name = "EgressReply", frozen, get_all)]
struct EgressReply {
    answer: Py<PyAny>,
    fd: Option<i32>,
}

/// Ask the host for a network connection or a name look-up (in the worker, under
/// `egress = "governed-only"`). See `crate::agent::egress`.
#[pyfunction]
fn egress_ask(py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<EgressReply> {
    use std::os::fd::IntoRawFd;
    let json = py.import("json")?;
    let text: String = json.call_method1("dumps", (request,))?.extract()?;
    let (answer, fd) = py
        .detach(move || crate::agent::egress::ask(&text))
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("ironhost egress: {e}")))?;
    Ok(EgressReply {
        answer: json.call_method1("loads", (answer,))?.unbind(),
        fd: fd.map(IntoRawFd::into_raw_fd),
    })
}
