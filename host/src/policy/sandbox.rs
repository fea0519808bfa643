//! The WASI a policy sees: present (Rust's standard library imports it) but without ambient
//! authority. No preopened directories, no environment, no arguments, no network, clocks
//! frozen at zero, no way to sleep or wait, stdout discarded, and stderr kept as a short
//! tail for failure reports.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiView};

/// How much of a policy's stderr is kept.
const STDERR_TAIL_BYTES: usize = 4 * 1024;

/// The `wasi:clocks/monotonic-clock` version wasmtime-wasi defines; components built against
/// any 0.2.x version link to it.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A fresh locked-down WASI context writing stderr to `stderr`.
pub(crate) fn wasi_ctx(stderr: &StderrTail) -> WasiCtx {
    WasiCtxBuilder::new()
        .stderr(stderr.clone())
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Add WASI to `linker`, with the clock subscriptions replaced by functions that trap.
///
/// Epoch deadlines interrupt wasm code, not a host function blocked in `poll`: a policy that
/// could sleep (`std::thread::sleep` subscribes to the monotonic clock and blocks) would hold
/// the calling thread past its deadline. So waiting is refused outright.
pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |_store, (_nanos,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            wasmtime::bail!(
                "policies may not sleep or wait (wasi monotonic-clock subscribe-duration)"
            )
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_store, (_when,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            wasmtime::bail!(
                "policies may not sleep or wait (wasi monotonic-clock subscribe-instant)"
            )
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// WASI clocks inside the sandbox read zero: time comes only through the `clock` capability.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A policy's stderr: keeps the last few KiB, never refuses a write, cleared per call.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<u8>>>);

impl StderrTail {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock();
        buf.extend(bytes);
        let excess = buf.len().saturating_sub(STDERR_TAIL_BYTES);
        buf.drain(..excess);
    }

    /// Forget what was written so far (at the start of each call).
    pub(crate) fn clear(&self) {
        self.0.lock().clear();
    }

    /// The last non-empty line, if any.
    pub(crate) fn last_line(&self) -> Option<String> {
        let bytes: Vec<u8> = self.0.lock().iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("note:"))
            .map(|l| crate::model::plain_text(l.trim(), crate::model::MAX_POLICY_TEXT))
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STDERR_TAIL_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_end_and_never_refuses() {
        let mut tail = StderrTail::default();
        for i in 0..10_000 {
            OutputStream::write(&mut tail, Bytes::from(format!("line {i}\n")))
                .expect("never refuses");
        }
        assert_eq!(tail.last_line().as_deref(), Some("line 9999"));
        assert!(tail.0.lock().len() <= STDERR_TAIL_BYTES);
        tail.clear();
        assert_eq!(tail.last_line(), None);
    }
}
