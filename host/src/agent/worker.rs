//! The agent's process, seen from the host: `ironhost start` runs the agent's Python in a
//! worker (this binary, `ironhost __agent-worker`), isolated from the host's secrets
//! ([`sandbox`](super::sandbox)), and serves its calls over a socket pair
//! ([`ipc`](super::ipc)) through the [`Gateway`]. A worker that crashes takes nothing of the
//! host with it: spend, policy state and the store stay here, and the next run is a new worker.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use parking_lot::Mutex;

use super::ipc::{self, Setup, ToHost, ToWorker, WireError};
use super::sandbox;
use crate::config::egress::{Egress, EgressMode};
use crate::events::EventKind;
use crate::gateway::{Gateway, GatewayReply, HttpRequest, StreamReply, ToolStart, ToolTicket};
use crate::model::{Severity, ToolError, ToolOutcome};

/// Says when the worker is ready to run the script, or why it could not be set up.
pub type Ready = mpsc::Receiver<Result<(), String>>;

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    pub child: Child,
    pub link: Arc<Link>,
}

/// Start a worker for one run of the agent; returns it and a receiver that says when it is
/// ready to run the script (or why it could not be set up).
pub fn spawn(
    gateway: Arc<Gateway>,
    setup: Setup,
    env: &[(String, String)],
    egress: &Arc<Egress>,
) -> Result<(Worker, Ready), String> {
    let (mine, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot make the agent's socket: {e}"))?;
    // governed-only: the agent asks the host for its connections on a socket of their own.
    let egress_pair = if setup.egress == EgressMode::GovernedOnly {
        Some(
            super::egress::socket_pair()
                .map_err(|e| format!("cannot make the agent's egress socket: {e}"))?,
        )
    } else {
        None
    };
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("ironhost")
        .arg("__agent-worker")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    sandbox::worker_command(
        &mut cmd,
        theirs.as_raw_fd(),
        egress_pair.as_ref().map(|(_, w)| w.as_raw_fd()),
    );
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the agent's process: {e}"))?;
    drop(theirs);
    if let Some((host_end, worker_end)) = egress_pair {
        drop(worker_end);
        super::egress::serve(
            host_end,
            egress.clone(),
            gateway.agent().agent_id.clone(),
            gateway.bus().clone(),
        )
        .map_err(|e| format!("cannot serve the agent's egress socket: {e}"))?;
    }
    let mut writer = mine
        .try_clone()
        .map_err(|e| format!("cannot use the agent's socket: {e}"))?;
    ipc::write_frame(&mut writer, &ToWorker::Setup(Box::new(setup)), b"")
        .map_err(|e| format!("cannot set up the agent's process: {e}"))?;
    let (link, ready_rx) = serve(gateway, mine, writer)
        .map_err(|e| format!("cannot serve the agent's process: {e}"))?;
    Ok((Worker { child, link }, ready_rx))
}

/// Serve the worker at the other end of `socket` (`writer` is a clone of it) through
/// `gateway`; the receiver says when the worker is ready (or why it could not be set up).
pub fn serve(
    gateway: Arc<Gateway>,
    socket: UnixStream,
    writer: UnixStream,
) -> std::io::Result<(Arc<Link>, Ready)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let link = Arc::new(Link {
        gateway,
        writer: Mutex::new(writer),
        streams: Mutex::new(HashMap::new()),
        tickets: Mutex::new(HashMap::new()),
        cancels: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
        closed: AtomicBool::new(false),
        signal: AtomicI32::new(0),
        ready: Mutex::new(Some(ready_tx)),
        pool: Pool::default(),
    });
    let l = link.clone();
    std::thread::Builder::new()
        .name("ironhost-agent-link".to_owned())
        .spawn(move || l.serve(socket))?;
    Ok((link, ready_rx))
}

type SharedStream = Arc<Mutex<Option<StreamReply>>>;

/// The host's side of one worker's socket.
pub struct Link {
    gateway: Arc<Gateway>,
    writer: Mutex<UnixStream>,
    streams: Mutex<HashMap<u64, SharedStream>>,
    tickets: Mutex<HashMap<u64, ToolTicket>>,
    /// Requests in flight, each with the flag that interrupts it.
    cancels: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    next: AtomicU64,
    closed: AtomicBool,
    signal: AtomicI32,
    ready: Mutex<Option<mpsc::Sender<Result<(), String>>>>,
    pool: Pool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("closed", &self.closed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The stop signal the agent said it caught, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Push an environment change (a rotated or deleted secret) to the agent.
    pub fn set_environ(&self, set: Vec<(String, String)>, unset: Vec<String>) -> bool {
        self.send(&ToWorker::Environ { set, unset }, b"")
    }

    fn send(&self, msg: &ToWorker, body: &[u8]) -> bool {
        let mut w = self.writer.lock();
        ipc::write_frame(&mut *w, msg, body).is_ok()
    }

    fn fail(&self, id: u64, error: WireError) {
        self.send(&ToWorker::Error { id, error }, b"");
    }

    fn invalid(&self, id: u64, message: impl Into<String>) {
        self.fail(
            id,
            WireError::Invalid {
                message: message.into(),
            },
        );
    }

    /// Read the worker's messages. A call that takes work (a gateway request, a tool call, the
    /// next chunk of a stream) is run right here, on the thread that read it, once reading has
    /// passed to a pool thread: the call does not wait for another thread to wake up.
    fn serve(self: Arc<Self>, mut reader: UnixStream) {
        loop {
            match ipc::read_frame::<ToHost>(&mut reader) {
                Ok(Some((msg, body))) => {
                    let mut work = None;
                    self.dispatch(msg, body, &mut work);
                    if let Some(job) = work {
                        let link = self.clone();
                        self.pool.run(Box::new(move || link.serve(reader)));
                        job();
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(
                        "the agent's process sent a message the host cannot read ({e}); its connection is closed"
                    );
                    break;
                }
            }
        }
        self.close();
    }

    /// The worker is gone: its calls in flight are abandoned (reservations released).
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for flag in self.cancels.lock().values() {
            flag.store(true, Ordering::SeqCst);
        }
        let streams: Vec<SharedStream> = self.streams.lock().drain().map(|(_, s)| s).collect();
        drop(streams);
        self.tickets.lock().clear();
        if let Some(tx) = self.ready.lock().take() {
            let _ = tx.send(Err(
                "the agent's process ended before it was ready".to_owned()
            ));
        }
    }

    /// Wait (at most `limit`) until no call of the worker is in flight: after the worker is
    /// gone, each ends as abandoned and is recorded so.
    pub fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.cancels.lock().is_empty() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn handle(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The work of request `id`, run with its interrupt flag (set by a `Cancel`, or when the
    /// worker goes).
    fn in_flight(
        self: &Arc<Self>,
        work: &mut Option<Job>,
        id: u64,
        job: impl FnOnce(&Link, &dyn Fn() -> bool) + Send + 'static,
    ) {
        let flag = Arc::new(AtomicBool::new(false));
        self.cancels.lock().insert(id, flag.clone());
        let link = self.clone();
        *work = Some(Box::new(move || {
            let interrupt = || flag.load(Ordering::SeqCst) || link.closed.load(Ordering::SeqCst);
            job(&link, &interrupt);
            link.cancels.lock().remove(&id);
        }));
    }

    fn dispatch(self: &Arc<Self>, msg: ToHost, body: Vec<u8>, work: &mut Option<Job>) {
        match msg {
            ToHost::Ready {
                isolation_us,
                python_us,
            } => {
                tracing::debug!(
                    "agent process ready: isolated in {isolation_us} µs, Python started in {} ms",
                    python_us / 1000
                );
                if let Some(tx) = self.ready.lock().take() {
                    let _ = tx.send(Ok(()));
                }
            }
            ToHost::Failed { message } => {
                if let Some(tx) = self.ready.lock().take() {
                    let _ = tx.send(Err(message));
                }
            }
            ToHost::Http {
                id,
                upstream,
                method,
                path,
                headers,
            } => {
                let req = HttpRequest {
                    upstream,
                    method,
                    path,
                    headers,
                    body,
                };
                self.in_flight(work, id, move |link, interrupt| {
                    match link.gateway.handle(req, interrupt) {
                        Ok(GatewayReply::Full {
                            status,
                            headers,
                            body,
                        }) => {
                            link.send(
                                &ToWorker::Full {
                                    id,
                                    status,
                                    headers,
                                },
                                &body,
                            );
                        }
                        Ok(GatewayReply::Stream(s)) => {
                            let stream = link.handle();
                            let headers = s.headers().to_vec();
                            link.streams
                                .lock()
                                .insert(stream, Arc::new(Mutex::new(Some(*s))));
                            if link.closed.load(Ordering::SeqCst) {
                                link.streams.lock().remove(&stream);
                            }
                            link.send(
                                &ToWorker::Stream {
                                    id,
                                    stream,
                                    headers,
                                },
                                b"",
                            );
                        }
                        Err(e) => link.fail(id, e.into()),
                    }
                });
            }
            ToHost::StreamNext { id, stream } => {
                let Some(shared) = self.streams.lock().get(&stream).cloned() else {
                    self.invalid(id, "this stream has ended");
                    return;
                };
                self.in_flight(work, id, move |link, interrupt| {
                    let mut guard = shared.lock();
                    let result = match guard.as_mut() {
                        Some(s) => s.next_bytes(interrupt),
                        None => Ok(None),
                    };
                    match result {
                        Ok(Some(bytes)) => {
                            drop(guard);
                            link.send(&ToWorker::Bytes { id }, &bytes);
                        }
                        Ok(None) => {
                            // Ended: the call is recorded; drop it now.
                            *guard = None;
                            drop(guard);
                            link.streams.lock().remove(&stream);
                            link.send(&ToWorker::End { id }, b"");
                        }
                        Err(e) => {
                            *guard = None;
                            drop(guard);
                            link.streams.lock().remove(&stream);
                            link.fail(id, e.into());
                        }
                    }
                });
            }
            ToHost::Release { handle } => {
                let stream = self.streams.lock().remove(&handle);
                drop(stream);
                self.tickets.lock().remove(&handle);
            }
            ToHost::ToolBegin { id, name } => {
                let Ok(arguments) = String::from_utf8(body) else {
                    self.invalid(id, "tool arguments are not UTF-8 text");
                    return;
                };
                self.in_flight(work, id, move |link, _| {
                    match link.gateway.tool_begin(&name, arguments) {
                        Ok(ToolStart::Run(ticket)) => {
                            let handle = link.handle();
                            let args = ticket.call.arguments.clone();
                            link.tickets.lock().insert(handle, ticket);
                            link.send(&ToWorker::ToolRun { id, ticket: handle }, args.as_bytes());
                        }
                        Ok(ToolStart::Answered(json)) => {
                            link.send(&ToWorker::ToolAnswered { id }, json.as_bytes());
                        }
                        Err(e) => link.fail(id, e.into()),
                    }
                });
            }
            ToHost::ToolEnd {
                id,
                ticket,
                ok,
                kind,
            } => {
                let Ok(payload) = String::from_utf8(body) else {
                    self.invalid(id, "a tool result that is not UTF-8 text");
                    return;
                };
                let Some(ticket) = self.tickets.lock().remove(&ticket) else {
                    self.invalid(id, "this tool call has already ended");
                    return;
                };
                self.in_flight(work, id, move |link, _| {
                    let outcome = if ok {
                        ToolOutcome::Ok(payload)
                    } else {
                        ToolOutcome::Error(ToolError {
                            kind: crate::model::ToolErrorKind::from_name(&kind),
                            message: payload,
                        })
                    };
                    match link.gateway.tool_end(ticket, outcome) {
                        Ok(None) => {
                            link.send(
                                &ToWorker::ToolEnded {
                                    id,
                                    changed: false,
                                    ok,
                                },
                                b"",
                            );
                        }
                        Ok(Some(ToolOutcome::Ok(json))) => {
                            link.send(
                                &ToWorker::ToolEnded {
                                    id,
                                    changed: true,
                                    ok: true,
                                },
                                json.as_bytes(),
                            );
                        }
                        Ok(Some(ToolOutcome::Error(e))) => {
                            link.send(
                                &ToWorker::ToolEnded {
                                    id,
                                    changed: true,
                                    ok: false,
                                },
                                e.message.as_bytes(),
                            );
                        }
                        Err(e) => link.fail(id, e.into()),
                    }
                });
            }
            ToHost::Current { id } => {
                let (state, run) = super::status::status();
                let json = super::status::status_json(&self.gateway, state, run);
                self.send(&ToWorker::Status { id }, json.as_bytes());
            }
            ToHost::Progress {
                id,
                done,
                total,
                unit,
            } => {
                if total.is_some_and(|t| done > t) {
                    self.invalid(id, format!("progress: done ({done}) is more than total"));
                    return;
                }
                let unit = unit.map(|u| u.chars().take(64).collect());
                self.gateway.bus().publish(
                    &self.gateway.agent().agent_id,
                    Severity::Info,
                    EventKind::AgentProgress { done, total, unit },
                );
                self.send(&ToWorker::Done { id }, b"");
            }
            ToHost::UnitDone {
                id,
                ok,
                seconds,
                fallback,
                unit,
            } => match super::status::record_unit(&self.gateway, ok, seconds, fallback, unit) {
                Ok(()) => {
                    self.send(&ToWorker::Done { id }, b"");
                }
                Err(message) => self.invalid(id, message),
            },
            ToHost::Cancel { id } => {
                if let Some(flag) = self.cancels.lock().get(&id) {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            ToHost::Signal { signum } => {
                if matches!(signum, libc::SIGINT | libc::SIGTERM) {
                    let _ =
                        self.signal
                            .compare_exchange(0, signum, Ordering::SeqCst, Ordering::SeqCst);
                }
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads for the calls in flight: an idle one takes the next call, a new one starts when
/// none is idle (a call never waits behind another), and one idle for a minute ends.
#[derive(Default)]
struct Pool {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    receiver: Arc<Mutex<Option<mpsc::Receiver<Job>>>>,
    idle: Arc<AtomicUsize>,
}

const POOL_IDLE: Duration = Duration::from_secs(60);

impl Pool {
    fn run(&self, job: Job) {
        let mut queue = self.queue.lock();
        if queue.is_none() {
            let (tx, rx) = mpsc::channel();
            *queue = Some(tx);
            *self.receiver.lock() = Some(rx);
        }
        let claimed = self
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if claimed && let Some(tx) = queue.as_ref() {
            match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => return self.start(job),
            }
        }
        drop(queue);
        self.start(job);
    }

    fn start(&self, job: Job) {
        let receiver = self.receiver.clone();
        let idle = self.idle.clone();
        let spawned = std::thread::Builder::new()
            .name("ironhost-agent-call".to_owned())
            .spawn(move || {
                job();
                loop {
                    idle.fetch_add(1, Ordering::SeqCst);
                    loop {
                        let next = {
                            let guard = receiver.lock();
                            match guard.as_ref() {
                                Some(rx) => rx.recv_timeout(POOL_IDLE),
                                None => return,
                            }
                        };
                        match next {
                            Ok(job) => {
                                job();
                                break;
                            }
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                // Leave, unless a call has just claimed this thread.
                                if idle
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok()
                                {
                                    return;
                                }
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread for an agent call: {e}");
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.idle.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}
