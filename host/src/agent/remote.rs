//! The worker's side of the wire ([`ipc`](super::ipc)): the agent's calls, sent to the host and
//! waited for. Many agent threads call at once; one reader thread hands each reply to its
//! caller, and applies the host's pushes (environment changes).

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use parking_lot::Mutex;

use super::ipc::{self, ToHost, ToWorker, WireError};
use crate::gateway::{GatewayError, HttpRequest};
use crate::llm::upstream::{Interrupt, POLL};
use crate::model::{ToolError, ToolOutcome};

/// Why a call to the host did not give an answer.
#[derive(Debug)]
pub enum RemoteError {
    /// The gateway's own error (a denial, a timeout, an interrupt).
    Gateway(GatewayError),
    /// The host refused the request or is gone.
    Host(String),
}

impl From<WireError> for RemoteError {
    fn from(e: WireError) -> RemoteError {
        RemoteError::Gateway(match e {
            WireError::Denied { policy, denial } => GatewayError::Denied { policy, denial },
            WireError::Timeout { message } => GatewayError::Timeout(message),
            WireError::Connection { message } => GatewayError::Connection(message),
            WireError::NoKey { message } => GatewayError::NoKey(message),
            WireError::Interrupted => GatewayError::Interrupted,
            WireError::Invalid { message } => return RemoteError::Host(message),
        })
    }
}

/// An HTTP answer from the host.
#[derive(Debug)]
pub enum RemoteReply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A stream to pull with [`Remote::stream_next`].
    Stream {
        stream: u64,
        headers: Vec<(String, String)>,
    },
}

/// What to do with a tool call.
#[derive(Debug)]
pub enum RemoteToolStart {
    Run { ticket: u64, arguments: String },
    Answered(String),
}

type Reply = (ToWorker, Vec<u8>);

/// The connection to the host.
pub struct Remote {
    writer: Mutex<UnixStream>,
    pending: Mutex<HashMap<u64, mpsc::Sender<Reply>>>,
    next: AtomicU64,
    gone: AtomicBool,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("gone", &self.gone.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// Applies an environment change the host pushed.
pub type OnEnviron = Box<dyn Fn(Vec<(String, String)>, Vec<String>) + Send + Sync>;

impl Remote {
    /// Serve calls over `socket` (already past the setup frame); `on_environ` applies pushes.
    pub fn connect(socket: UnixStream, on_environ: OnEnviron) -> std::io::Result<Arc<Remote>> {
        let reader = socket.try_clone()?;
        let remote = Arc::new(Remote {
            writer: Mutex::new(socket),
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            gone: AtomicBool::new(false),
        });
        let r = remote.clone();
        std::thread::Builder::new()
            .name("ironhost-host-link".to_owned())
            .spawn(move || r.read_loop(reader, on_environ))?;
        Ok(remote)
    }

    fn read_loop(&self, mut reader: UnixStream, on_environ: OnEnviron) {
        loop {
            match ipc::read_frame::<ToWorker>(&mut reader) {
                Ok(Some((ToWorker::Environ { set, unset }, _))) => on_environ(set, unset),
                Ok(Some((msg, body))) => {
                    let Some(id) = reply_id(&msg) else { continue };
                    let waiter = self.pending.lock().remove(&id);
                    match waiter {
                        Some(tx) => {
                            if let Err(mpsc::SendError((msg, _))) = tx.send((msg, body)) {
                                self.orphan(&msg);
                            }
                        }
                        None => self.orphan(&msg),
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The host is gone: every caller gets an error now.
        self.gone.store(true, Ordering::SeqCst);
        self.pending.lock().clear();
    }

    /// A reply nobody waits for (its caller was interrupted): give back what it holds.
    fn orphan(&self, msg: &ToWorker) {
        match msg {
            ToWorker::Stream { stream, .. } => self.release(*stream),
            ToWorker::ToolRun { ticket, .. } => self.release(*ticket),
            _ => {}
        }
    }

    fn send(&self, msg: &ToHost, body: &[u8]) -> Result<(), RemoteError> {
        let mut w = self.writer.lock();
        ipc::write_frame(&mut *w, msg, body).map_err(|e| self.lost(e))
    }

    fn lost(&self, e: impl std::fmt::Display) -> RemoteError {
        self.gone.store(true, Ordering::SeqCst);
        RemoteError::Host(format!("the ironhost host is gone ({e})"))
    }

    /// Send a request and wait for its reply; `interrupt` abandons the wait (the host is told).
    fn call(
        &self,
        make: impl FnOnce(u64) -> ToHost,
        body: &[u8],
        interrupt: Interrupt<'_>,
    ) -> Result<Reply, RemoteError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(self.lost("its connection closed"));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.pending.lock().insert(id, tx);
        if let Err(e) = self.send(&make(id), body) {
            self.pending.lock().remove(&id);
            return Err(e);
        }
        loop {
            match rx.recv_timeout(POLL) {
                Ok(reply) => return Ok(reply),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.lost("its connection closed"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if interrupt() {
                        // A reply that still comes is given back by the reader (`orphan`).
                        self.pending.lock().remove(&id);
                        let _ = self.send(&ToHost::Cancel { id }, b"");
                        return Err(RemoteError::Gateway(GatewayError::Interrupted));
                    }
                }
            }
        }
    }

    /// An SDK request.
    pub fn http(
        &self,
        req: HttpRequest,
        interrupt: Interrupt<'_>,
    ) -> Result<RemoteReply, RemoteError> {
        let HttpRequest {
            upstream,
            method,
            path,
            headers,
            body,
        } = req;
        let make = |id| ToHost::Http {
            id,
            upstream,
            method,
            path,
            headers,
        };
        match self.call(make, &body, interrupt)? {
            (
                ToWorker::Full {
                    status, headers, ..
                },
                body,
            ) => Ok(RemoteReply::Full {
                status,
                headers,
                body,
            }),
            (
                ToWorker::Stream {
                    stream, headers, ..
                },
                _,
            ) => Ok(RemoteReply::Stream { stream, headers }),
            other => Err(unexpected(other)),
        }
    }

    /// The next bytes of a stream; `None` at its end.
    pub fn stream_next(
        &self,
        stream: u64,
        interrupt: Interrupt<'_>,
    ) -> Result<Option<Vec<u8>>, RemoteError> {
        match self.call(|id| ToHost::StreamNext { id, stream }, b"", interrupt)? {
            (ToWorker::Bytes { .. }, body) => Ok(Some(body)),
            (ToWorker::End { .. }, _) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Give up a stream or tool ticket.
    pub fn release(&self, handle: u64) {
        let _ = self.send(&ToHost::Release { handle }, b"");
    }

    /// A tool call about to run.
    pub fn tool_begin(
        &self,
        name: &str,
        arguments: &str,
        interrupt: Interrupt<'_>,
    ) -> Result<RemoteToolStart, RemoteError> {
        let make = |id| ToHost::ToolBegin {
            id,
            name: name.to_owned(),
        };
        match self.call(make, arguments.as_bytes(), interrupt)? {
            (ToWorker::ToolRun { ticket, .. }, body) => Ok(RemoteToolStart::Run {
                ticket,
                arguments: text(body)?,
            }),
            (ToWorker::ToolAnswered { .. }, body) => Ok(RemoteToolStart::Answered(text(body)?)),
            other => Err(unexpected(other)),
        }
    }

    /// How a tool call ended (`ok`, the result or error message, the error's kind as the
    /// agent named it); `Some` when a policy changed the outcome.
    pub fn tool_end(
        &self,
        ticket: u64,
        ok: bool,
        payload: &str,
        kind: &str,
        interrupt: Interrupt<'_>,
    ) -> Result<Option<ToolOutcome>, RemoteError> {
        let kind = kind.to_owned();
        let make = |id| ToHost::ToolEnd {
            id,
            ticket,
            ok,
            kind,
        };
        match self.call(make, payload.as_bytes(), interrupt)? {
            (ToWorker::ToolEnded { changed: false, .. }, _) => Ok(None),
            (ToWorker::ToolEnded { ok: true, .. }, body) => Ok(Some(ToolOutcome::Ok(text(body)?))),
            (ToWorker::ToolEnded { ok: false, .. }, body) => {
                Ok(Some(ToolOutcome::Error(ToolError {
                    kind: crate::model::ToolErrorKind::Other,
                    message: text(body)?,
                })))
            }
            other => Err(unexpected(other)),
        }
    }

    /// `ironhost.current()` as JSON.
    pub fn current(&self) -> Result<String, RemoteError> {
        match self.call(|id| ToHost::Current { id }, b"", &|| false)? {
            (ToWorker::Status { .. }, body) => text(body),
            other => Err(unexpected(other)),
        }
    }

    /// Report progress.
    pub fn progress(
        &self,
        done: u64,
        total: Option<u64>,
        unit: Option<String>,
    ) -> Result<(), RemoteError> {
        let make = |id| ToHost::Progress {
            id,
            done,
            total,
            unit,
        };
        match self.call(make, b"", &|| false)? {
            (ToWorker::Done { .. }, _) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Report a unit of work done.
    pub fn unit_done(
        &self,
        ok: bool,
        seconds: Option<f64>,
        fallback: Option<String>,
        unit: Option<String>,
    ) -> Result<(), RemoteError> {
        let make = |id| ToHost::UnitDone {
            id,
            ok,
            seconds,
            fallback,
            unit,
        };
        match self.call(make, b"", &|| false)? {
            (ToWorker::Done { .. }, _) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Tell the host the agent caught a stop signal.
    pub fn signal(&self, signum: i32) {
        let _ = self.send(&ToHost::Signal { signum }, b"");
    }

    /// Tell the host the agent is about to run (or could not be set up).
    pub fn report(&self, msg: &ToHost) {
        let _ = self.send(msg, b"");
    }
}

fn reply_id(msg: &ToWorker) -> Option<u64> {
    match msg {
        ToWorker::Full { id, .. }
        | ToWorker::Stream { id, .. }
        | ToWorker::Bytes { id }
        | ToWorker::End { id }
        | ToWorker::Error { id, .. }
        | ToWorker::ToolRun { id, .. }
        | ToWorker::ToolAnswered { id }
        | ToWorker::ToolEnded { id, .. }
        | ToWorker::Status { id }
        | ToWorker::Done { id } => Some(*id),
        ToWorker::Setup(_) | ToWorker::Environ { .. } => None,
    }
}

fn unexpected((msg, _): Reply) -> RemoteError {
    match msg {
        ToWorker::Error { error, .. } => error.into(),
        other => RemoteError::Host(format!("the host answered out of turn: {other:?}")),
    }
}

fn text(body: Vec<u8>) -> Result<String, RemoteError> {
    String::from_utf8(body)
        .map_err(|_| RemoteError::Host("the host sent text that is not UTF-8".into()))
}
