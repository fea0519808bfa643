//! The calls an agent's Python makes, for both kinds of [`Agent`](super::agent::Agent): through
//! a gateway in this process (an SDK agent) or through the host over the worker's socket (the
//! agent under `ironhost start`). Each answers with a typed object: [`HttpReply`],
//! [`ToolBegin`], [`ToolEnd`], a [`NativeStream`] for a streamed answer.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::{remote_to_py, to_py};
use super::interpreter::detached;
use crate::agent::remote::{Remote, RemoteError, RemoteReply, RemoteToolStart};
use crate::gateway::{Gateway, GatewayReply, HttpRequest, StreamReply, ToolStart, ToolTicket};
use crate::model::{ToolError, ToolErrorKind, ToolOutcome};

/// Where an agent's calls go.
#[derive(Clone, Copy)]
pub(super) enum Via<'a> {
    /// A gateway in this process; `stop` ends waits when the agent is stopped.
    Local {
        gateway: &'a Arc<Gateway>,
        stop: Option<&'a Arc<AtomicBool>>,
    },
    /// The host, over the worker's socket.
    Host(&'a Arc<Remote>),
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
pub struct NativeStream {
    inner: Mutex<Option<StreamSource>>,
    stop: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for NativeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeStream")
            .field("open", &self.inner.lock().is_some())
            .finish_non_exhaustive()
    }
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

/// The answer to an SDK's HTTP request: whole (`body`) or streamed (`stream`).
#[pyclass(module = "ironhost._native", name = "HttpReply", frozen, get_all)]
#[derive(Debug)]
pub struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    /// The whole body; `None` when the answer is streamed.
    body: Option<Py<PyBytes>>,
    /// The streamed answer; `None` when the body is whole.
    stream: Option<Py<NativeStream>>,
}

/// Hand `req` to where `via` says: the answer, whole or streamed.
pub(super) fn http(py: Python<'_>, via: Via<'_>, req: HttpRequest) -> PyResult<HttpReply> {
    match via {
        Via::Local { gateway, stop } => {
            let (out, pending) = detached(py, stop.map(|s| &**s), |interrupt| {
                gateway.handle(req, interrupt)
            });
            match out {
                Ok(GatewayReply::Full {
                    status,
                    headers,
                    body,
                }) => Ok(whole(py, status, headers, &body)),
                Ok(GatewayReply::Stream(s)) => {
                    let headers = s.headers().to_vec();
                    streamed(py, headers, StreamSource::Local(s), stop.cloned())
                }
                Err(e) => Err(to_py(py, e, pending)),
            }
        }
        Via::Host(remote) => {
            let (out, pending) = detached(py, None, |interrupt| remote.http(req, interrupt));
            match out {
                Ok(RemoteReply::Full {
                    status,
                    headers,
                    body,
                }) => Ok(whole(py, status, headers, &body)),
                Ok(RemoteReply::Stream { stream, headers }) => {
                    let held = Held {
                        remote: remote.clone(),
                        handle: stream,
                        armed: true,
                    };
                    streamed(py, headers, StreamSource::Remote(held), None)
                }
                Err(e) => Err(remote_to_py(py, e, pending)),
            }
        }
    }
}

fn whole(py: Python<'_>, status: u16, headers: Vec<(String, String)>, body: &[u8]) -> HttpReply {
    HttpReply {
        status,
        headers,
        body: Some(PyBytes::new(py, body).unbind()),
        stream: None,
    }
}

fn streamed(
    py: Python<'_>,
    headers: Vec<(String, String)>,
    source: StreamSource,
    stop: Option<Arc<AtomicBool>>,
) -> PyResult<HttpReply> {
    let stream = Py::new(
        py,
        NativeStream {
            inner: Mutex::new(Some(source)),
            stop,
        },
    )?;
    Ok(HttpReply {
        status: 200,
        headers,
        body: None,
        stream: Some(stream),
    })
}

enum Ticket {
    Local(ToolTicket),
    Remote(Held),
}

/// A tool call the chain let run; ends with `tool_end`.
#[pyclass(module = "ironhost._native", name = "ToolTicket")]
pub struct PyToolTicket {
    inner: Mutex<Option<Ticket>>,
}

impl std::fmt::Debug for PyToolTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolTicket")
            .field("open", &self.inner.lock().is_some())
            .finish()
    }
}

/// What to do with a tool call: run it (`ticket`, with `arguments`) or take a policy's
/// `answer` instead.
#[pyclass(module = "ironhost._native", name = "ToolBegin", frozen, get_all)]
#[derive(Debug)]
pub struct ToolBegin {
    ticket: Option<Py<PyToolTicket>>,
    /// The JSON arguments to run the tool with (a policy may have rewritten them).
    arguments: Option<String>,
    /// The JSON result a policy gave instead of running the tool.
    answer: Option<String>,
}

/// How a tool call ended, for the agent: `changed` when a policy changed the result (then
/// `ok` and `payload` are the result to use).
#[pyclass(module = "ironhost._native", name = "ToolEnd", frozen, get_all)]
#[derive(Debug)]
pub struct ToolEnd {
    changed: bool,
    ok: bool,
    payload: Option<String>,
}

fn ticket(py: Python<'_>, t: Ticket, arguments: String) -> PyResult<ToolBegin> {
    let ticket = Py::new(
        py,
        PyToolTicket {
            inner: Mutex::new(Some(t)),
        },
    )?;
    Ok(ToolBegin {
        ticket: Some(ticket),
        arguments: Some(arguments),
        answer: None,
    })
}

fn answered(answer: String) -> ToolBegin {
    ToolBegin {
        ticket: None,
        arguments: None,
        answer: Some(answer),
    }
}

/// A tool call about to run.
pub(super) fn tool_begin(
    py: Python<'_>,
    via: Via<'_>,
    name: &str,
    arguments: String,
) -> PyResult<ToolBegin> {
    match via {
        Via::Local { gateway, .. } => {
            let (out, pending) = detached(py, None, |_| gateway.tool_begin(name, arguments));
            match out {
                Ok(ToolStart::Run(t)) => {
                    let args = t.call.arguments.clone();
                    ticket(py, Ticket::Local(t), args)
                }
                Ok(ToolStart::Answered(json)) => Ok(answered(json)),
                Err(e) => Err(to_py(py, e, pending)),
            }
        }
        Via::Host(remote) => {
            let (out, pending) = detached(py, None, |interrupt| {
                remote.tool_begin(name, &arguments, interrupt)
            });
            match out {
                Ok(RemoteToolStart::Run {
                    ticket: t,
                    arguments,
                }) => {
                    let held = Held {
                        remote: remote.clone(),
                        handle: t,
                        armed: true,
                    };
                    ticket(py, Ticket::Remote(held), arguments)
                }
                Ok(RemoteToolStart::Answered(json)) => Ok(answered(json)),
                Err(e) => Err(remote_to_py(py, e, pending)),
            }
        }
    }
}

/// The tool's result (`ok`) or error (`payload` its message, `kind` its class) after it ran.
pub(super) fn tool_end(
    py: Python<'_>,
    via: Via<'_>,
    ticket: &Bound<'_, PyToolTicket>,
    ok: bool,
    payload: String,
    kind: &str,
) -> PyResult<ToolEnd> {
    let taken = ticket
        .borrow()
        .inner
        .lock()
        .take()
        .ok_or_else(|| PyRuntimeError::new_err("this tool call has already ended"))?;
    let out = match (via, taken) {
        (Via::Local { gateway, .. }, Ticket::Local(t)) => {
            let outcome = if ok {
                ToolOutcome::Ok(payload)
            } else {
                ToolOutcome::Error(ToolError {
                    kind: ToolErrorKind::from_name(kind),
                    message: payload,
                })
            };
            let (out, pending) = detached(py, None, |_| gateway.tool_end(t, outcome));
            out.map_err(|e| to_py(py, e, pending))
        }
        (Via::Host(_), Ticket::Remote(mut t)) => {
            // The host ends the call from here on, whatever the answer.
            t.armed = false;
            let (out, pending) = detached(py, None, |interrupt| {
                t.remote.tool_end(t.handle, ok, &payload, kind, interrupt)
            });
            out.map_err(|e| remote_to_py(py, e, pending))
        }
        (Via::Local { .. }, Ticket::Remote(_)) => Err(PyRuntimeError::new_err(
            "this tool call belongs to the host's agent, not to this one",
        )),
        (Via::Host(_), Ticket::Local(_)) => Err(PyRuntimeError::new_err(
            "this tool call belongs to an agent opened in this process, not to the host's",
        )),
    };
    Ok(match out? {
        None => ToolEnd {
            changed: false,
            ok,
            payload: None,
        },
        Some(ToolOutcome::Ok(json)) => ToolEnd {
            changed: true,
            ok: true,
            payload: Some(json),
        },
        Some(ToolOutcome::Error(e)) => ToolEnd {
            changed: true,
            ok: false,
            payload: Some(e.message),
        },
    })
}

/// Progress figures the agent reports must make sense.
pub(super) fn check_progress(done: u64, total: Option<u64>) -> PyResult<()> {
    if total.is_some_and(|t| done > t) {
        return Err(PyValueError::new_err(format!(
            "progress: done ({done}) is more than total ({})",
            total.unwrap_or(0)
        )));
    }
    Ok(())
}
