//! Log output: `[HH:MM:SS] AGENT-ID LEVEL message` for people, one JSON object per line for
//! machines. The agent id is on every line once an agent runs.
//!
//! Lines reach stderr through a thread of their own ([`StderrPipe`]), so a slow or blocked
//! stderr (a paused terminal, a parent that does not read the pipe) never holds up the thread
//! that logs: a policy's `log.write`, a call in the gateway. When the queue is full, lines are
//! dropped and counted, and the count is written once stderr takes lines again. [`flush`]
//! waits (bounded) for the queue before the process exits.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// How long the process waits at exit for log lines still queued for stderr.
pub const FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

static AGENT_ID: OnceLock<String> = OnceLock::new();

/// Put `id` on every line from now on.
pub fn set_agent_id(id: &str) {
    let _ = AGENT_ID.set(id.to_owned());
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, serde_json::Value)>,
    /// Only the message is wanted (a call record in the human format): the other fields are
    /// not even formatted.
    message_only: bool,
}

impl Fields {
    fn push(&mut self, field: &Field, value: serde_json::Value) {
        // `NAME_json` fields carry JSON (a call's verdicts): kept as JSON under `NAME`.
        match (field.name().strip_suffix("_json"), &value) {
            (Some(name), serde_json::Value::String(text)) => {
                let parsed = serde_json::from_str(text).unwrap_or(value.clone());
                self.rest.push((name.to_owned(), parsed));
            }
            _ => self.rest.push((field.name().to_owned(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if !self.message_only {
            self.push(field, format!("{value:?}").into());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if !self.message_only {
            self.push(field, value.into());
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if !self.message_only {
            self.push(field, value.into());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.message_only {
            self.push(field, value.into());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.message_only {
            self.push(field, value.into());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !self.message_only {
            self.push(field, value.into());
        }
    }
}

/// The target of call records: their fields repeat the line's figures, so the human format
/// shows the line alone.
pub const CALL_TARGET: &str = "ironhost::call";
/// The target of PII findings, whose fields (the call id) are for machines too.
pub const FINDING_TARGET: &str = "ironhost::finding";

/// The event formatter for both formats.
#[derive(Debug, Clone, Copy)]
pub struct Format(pub LogFormat);

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields {
            message_only: self.0 == LogFormat::Human
                && matches!(event.metadata().target(), CALL_TARGET | FINDING_TARGET),
            ..Fields::default()
        };
        event.record(&mut fields);
        let level = *event.metadata().level();
        let agent = AGENT_ID.get().map(String::as_str);
        match self.0 {
            LogFormat::Human => {
                let now = chrono::Local::now().format("%H:%M:%S");
                write!(writer, "[{now}] ")?;
                if let Some(id) = agent {
                    write!(writer, "{id} ")?;
                }
                if level != tracing::Level::INFO {
                    write!(writer, "{level} ")?;
                }
                write!(writer, "{}", fields.message)?;
                for (k, v) in &fields.rest {
                    match v {
                        serde_json::Value::String(text) => write!(writer, " {k}={text}")?,
                        other => write!(writer, " {k}={other}")?,
                    }
                }
                writeln!(writer)
            }
            LogFormat::Json => {
                let mut obj = serde_json::Map::new();
                obj.insert("ts".into(), chrono::Local::now().to_rfc3339().into());
                obj.insert("level".into(), level.to_string().into());
                if let Some(id) = agent {
                    obj.insert("agent_id".into(), id.into());
                }
                obj.insert("target".into(), event.metadata().target().into());
                obj.insert("message".into(), fields.message.into());
                for (k, v) in fields.rest {
                    obj.insert(k, v);
                }
                writeln!(writer, "{}", serde_json::Value::Object(obj))
            }
        }
    }
}

/// Log to stderr in `format`; `verbose` shows debug lines. `IRONHOST_LOG` (a filter such as
/// `ironhost=trace`) overrides the level.
pub fn init(format: LogFormat, verbose: bool) {
    init_at(format, if verbose { "debug" } else { "info" });
}

/// Like [`init`], with ironhost's own lines from `level` up (`IRONHOST_LOG` still wins).
pub fn init_at(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IRONHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,ironhost={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(queued_stderr)
        .event_format(Format(format))
        .try_init();
}

/// Lines queued for stderr before more are dropped.
const QUEUE_LINES: usize = 8192;

/// The queue of log lines and the thread that writes them to stderr.
struct StderrPipe {
    tx: SyncSender<Vec<u8>>,
    /// Lines queued so far.
    queued: AtomicU64,
    /// Lines dropped because the queue was full, not yet reported.
    dropped: AtomicU64,
    /// Lines written (or given up on) so far, for [`flush`].
    written: Mutex<u64>,
    progress: Condvar,
}

fn pipe() -> &'static StderrPipe {
    static PIPE: OnceLock<StderrPipe> = OnceLock::new();
    PIPE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("ironhost-log".into())
            .spawn(|| drain(rx));
        if let Err(e) = spawned {
            // Nothing reads the queue: lines are dropped (and counted) rather than blocking.
            let _ = writeln!(
                std::io::stderr(),
                "ironhost: cannot start the log writer: {e}"
            );
        }
        StderrPipe {
            tx,
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            written: Mutex::new(0),
            progress: Condvar::new(),
        }
    })
}

/// The writer thread: lines to stderr in order, with a note of any dropped before them.
fn drain(rx: Receiver<Vec<u8>>) {
    let mut err = std::io::stderr();
    for line in rx {
        let p = pipe();
        let dropped = p.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                err,
                "ironhost: {dropped} log lines dropped: stderr was not taking them fast enough"
            );
        }
        // A write error (stderr closed) loses the line; there is nowhere else to say so.
        let _ = err.write_all(&line);
        let mut written = p.written.lock().unwrap_or_else(|e| e.into_inner());
        *written += 1;
        p.progress.notify_all();
    }
}

/// A writer for one log line to stderr through the queue (a `tracing` `MakeWriter`).
pub fn queued_stderr() -> PipeWriter {
    PipeWriter(Vec::new())
}

/// One formatted event, queued whole when the formatter is done with it.
#[derive(Debug)]
pub struct PipeWriter(Vec<u8>);

impl std::io::Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let p = pipe();
        match p.tx.try_send(std::mem::take(&mut self.0)) {
            Ok(()) => {
                p.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                p.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Wait until the log lines queued so far are on stderr, at most `timeout` (stderr may be
/// blocked for good). True if they all are. Call before the process exits.
pub fn flush(timeout: Duration) -> bool {
    let p = pipe();
    let target = p.queued.load(Ordering::Relaxed);
    let deadline = Instant::now() + timeout;
    let mut written = p.written.lock().unwrap_or_else(|e| e.into_inner());
    while *written < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        written = p
            .progress
            .wait_timeout(written, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}
