//! Where a call goes after the chain: the built-in simulator or a real provider over HTTPS.
//! Both answer with the provider's own bytes, so the gateway treats them alike.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::api::Api;
use super::sse::SseEvent;
use super::upstreams::Format;
use crate::model::{ProviderError, ProviderErrorKind};

/// Asked while waiting; answers true when the caller wants to stop waiting (a signal, a
/// shutdown). Polled every [`POLL`].
pub type Interrupt<'a> = &'a dyn Fn() -> bool;

/// How often a wait checks its [`Interrupt`].
pub const POLL: Duration = Duration::from_millis(20);

/// Why a wait ended without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    Timeout,
    Interrupted,
    /// The sender went away.
    Closed,
}

/// Wait for a message until `timeout`, checking `interrupt` as it goes.
pub fn recv<T>(
    rx: &Receiver<T>,
    timeout: Duration,
    interrupt: Interrupt<'_>,
) -> Result<T, WaitError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WaitError::Timeout);
        }
        match rx.recv_timeout(left.min(POLL)) {
            Ok(v) => return Ok(v),
            // A stop that also shut the host down closes the channel: that is the stop.
            Err(RecvTimeoutError::Disconnected) if interrupt() => {
                return Err(WaitError::Interrupted);
            }
            Err(RecvTimeoutError::Disconnected) => return Err(WaitError::Closed),
            Err(RecvTimeoutError::Timeout) => {
                if interrupt() {
                    return Err(WaitError::Interrupted);
                }
            }
        }
    }
}

/// Sleep for `d`, checking `interrupt`; false when interrupted.
pub fn sleep(d: Duration, interrupt: Interrupt<'_>) -> bool {
    let deadline = Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(POLL));
        if interrupt() {
            return false;
        }
    }
}

/// The events of a streamed answer, pulled one at a time.
pub enum EventStream {
    /// Events already in memory (the simulator).
    Ready(std::vec::IntoIter<SseEvent>),
    /// Events arriving from a provider; each must arrive within `idle`.
    Live {
        rx: Receiver<Result<SseEvent, ProviderError>>,
        idle: Duration,
    },
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventStream::Ready(it) => write!(f, "EventStream::Ready({} left)", it.len()),
            EventStream::Live { idle, .. } => write!(f, "EventStream::Live(idle {idle:?})"),
        }
    }
}

/// Why a stream gave no next event.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamError {
    /// The provider failed part-way (or went silent for too long).
    Provider(ProviderError),
    /// The caller's interrupt stopped the wait.
    Interrupted,
}

impl EventStream {
    /// The next event; `Ok(None)` at the end of the stream.
    pub fn next(&mut self, interrupt: Interrupt<'_>) -> Result<Option<SseEvent>, StreamError> {
        match self {
            EventStream::Ready(it) => Ok(it.next()),
            EventStream::Live { rx, idle } => match recv(rx, *idle, interrupt) {
                Ok(Ok(ev)) => Ok(Some(ev)),
                Ok(Err(e)) => Err(StreamError::Provider(e)),
                Err(WaitError::Closed) => Ok(None),
                Err(WaitError::Timeout) => Err(StreamError::Provider(ProviderError {
                    kind: ProviderErrorKind::Timeout,
                    status: None,
                    message: format!("the provider sent nothing for {} ms", idle.as_millis()),
                    retry_after_ms: None,
                })),
                Err(WaitError::Interrupted) => Err(StreamError::Interrupted),
            },
        }
    }
}

/// What came back for one attempt.
#[derive(Debug)]
pub enum UpstreamReply {
    /// A complete body: an answer or an error, with the provider's status and headers.
    Body {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A `200` streamed answer.
    Stream {
        headers: Vec<(String, String)>,
        events: EventStream,
    },
    /// No answer: timeout or connection failure.
    Failed(ProviderError),
    /// The caller's interrupt stopped the wait.
    Interrupted,
}

/// One attempt to send to the provider.
#[derive(Debug)]
pub struct Egress<'a> {
    pub api: Api,
    /// The upstream's base URL (`https://api.openai.com`, `https://openrouter.ai/api/v1`).
    pub base: &'a str,
    /// How the upstream takes its key.
    pub format: Format,
    /// The path and query after the base path (`/v1/chat/completions`).
    pub path: &'a str,
    /// The agent's headers, minus the ones the host sets itself.
    pub headers: &'a [(String, String)],
    pub body: Vec<u8>,
    pub stream: bool,
    /// The provider key, if there is one; the simulator needs none.
    pub key: Option<&'a str>,
}

/// Where a call goes after the chain: the built-in simulator or a real provider. Both
/// answer with the provider's own bytes, so the gateway treats them alike.
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// Send one attempt and wait for the answer (for a stream: its first event).
    fn send(
        &self,
        egress: Egress<'_>,
        timeout: Duration,
        interrupt: Interrupt<'_>,
    ) -> UpstreamReply;

    /// True for the simulator (the call record says the answer was simulated).
    fn is_simulator(&self) -> bool {
        false
    }
}
