//! The wire between the host and its agent worker (the process the agent's Python runs in):
//! frames over a Unix socket pair, each a JSON header and a body of raw bytes.
//!
//! Frame: `u32` header length, `u32` body length (both little-endian), the header (one
//! [`ToHost`] or [`ToWorker`] as JSON), the body (an HTTP body, tool arguments, a result).
//! Requests carry an `id` the reply repeats, so calls from many agent threads share one socket.
//! The host reads every frame as untrusted input: the worker runs the agent's code.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::gateway::GatewayError;
use crate::model::Denial;

/// The largest header accepted (JSON of one message).
pub const MAX_HEADER: usize = 1 << 20;
/// The largest body accepted (an HTTP request or answer body, tool arguments or results).
pub const MAX_BODY: usize = 256 << 20;

/// What the worker needs to run the agent, sent once when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Setup {
    pub script: PathBuf,
    pub args: Vec<String>,
    /// The virtualenv whose packages the agent imports.
    pub venv: Option<PathBuf>,
    /// Variables the policies set for the agent (`on-agent-start`).
    pub env: Vec<(String, String)>,
    /// The upstreams (name, base URL the agent addresses): requests to them go through the
    /// chain.
    pub upstreams: Vec<(String, String)>,
    /// Directories the agent must not see (the ironhost home): hidden when isolated.
    pub hidden: Vec<PathBuf>,
    /// Whether to isolate the worker (namespaces, Landlock) before Python starts.
    pub isolate: bool,
    /// `governed-only`: the worker takes its network away and asks the host for connections
    /// (on [`EGRESS_FD`](super::egress::EGRESS_FD)).
    pub egress: crate::config::egress::EgressMode,
}

/// A message from the worker to the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToHost {
    /// Set up: the script runs now. How long isolation and starting Python took, in µs.
    Ready { isolation_us: u64, python_us: u64 },
    /// The worker could not be set up (isolation, Python); the agent does not run.
    Failed { message: String },
    /// An SDK's HTTP request (body: the request body).
    Http {
        id: u64,
        /// The upstream the request was addressed to.
        upstream: String,
        method: String,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// The next bytes of a streamed answer.
    StreamNext { id: u64, stream: u64 },
    /// A stream or tool ticket the agent no longer wants: its call is abandoned.
    Release { handle: u64 },
    /// A tool call about to run (body: its arguments as JSON).
    ToolBegin { id: u64, name: String },
    /// How a tool call ended (body: the result, or the error message).
    ToolEnd {
        id: u64,
        ticket: u64,
        ok: bool,
        kind: String,
    },
    /// `ironhost.current()`.
    Current { id: u64 },
    /// `ironhost.progress(...)`.
    Progress {
        id: u64,
        done: u64,
        total: Option<u64>,
        unit: Option<String>,
    },
    /// `ironhost.unit_done(...)`.
    UnitDone {
        id: u64,
        ok: bool,
        seconds: Option<f64>,
        fallback: Option<String>,
        unit: Option<String>,
    },
    /// The agent was interrupted while waiting for this request.
    Cancel { id: u64 },
    /// The agent caught a stop signal.
    Signal { signum: i32 },
}

/// A gateway error as it crosses to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireError {
    Denied {
        policy: String,
        denial: Denial,
    },
    Timeout {
        message: String,
    },
    Connection {
        message: String,
    },
    NoKey {
        message: String,
    },
    Interrupted,
    /// The request itself was not understood (a bad handle, a call already ended).
    Invalid {
        message: String,
    },
}

impl From<GatewayError> for WireError {
    fn from(e: GatewayError) -> WireError {
        match e {
            GatewayError::Denied { policy, denial } => WireError::Denied { policy, denial },
            GatewayError::Timeout(message) => WireError::Timeout { message },
            GatewayError::Connection(message) => WireError::Connection { message },
            GatewayError::NoKey(message) => WireError::NoKey { message },
            GatewayError::Interrupted => WireError::Interrupted,
        }
    }
}

/// A message from the host to the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToWorker {
    Setup(Box<Setup>),
    /// A complete HTTP answer (body: its body).
    Full {
        id: u64,
        status: u16,
        headers: Vec<(String, String)>,
    },
    /// A `200` event stream: pull it with [`ToHost::StreamNext`].
    Stream {
        id: u64,
        stream: u64,
        headers: Vec<(String, String)>,
    },
    /// The next bytes of a stream (body).
    Bytes {
        id: u64,
    },
    /// The stream ended.
    End {
        id: u64,
    },
    /// The request failed.
    Error {
        id: u64,
        error: WireError,
    },
    /// Run the tool (body: the arguments, possibly rewritten).
    ToolRun {
        id: u64,
        ticket: u64,
    },
    /// A policy answered the tool call (body: the result).
    ToolAnswered {
        id: u64,
    },
    /// The tool call is recorded (body: the result or error message when `changed`).
    ToolEnded {
        id: u64,
        changed: bool,
        ok: bool,
    },
    /// JSON for `ironhost.current()` (body).
    Status {
        id: u64,
    },
    /// Done, nothing to return.
    Done {
        id: u64,
    },
    /// Set and remove variables in the agent's environment (a secret changed).
    Environ {
        set: Vec<(String, String)>,
        unset: Vec<String>,
    },
}

/// Write one frame.
pub fn write_frame<M: Serialize>(out: &mut impl Write, msg: &M, body: &[u8]) -> io::Result<()> {
    let header = serde_json::to_vec(msg).map_err(io::Error::other)?;
    if header.len() > MAX_HEADER || body.len() > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message of {} + {} bytes is over the limit ({MAX_HEADER} + {MAX_BODY})",
                header.len(),
                body.len()
            ),
        ));
    }
    let mut frame = Vec::with_capacity(8 + header.len() + body.len());
    frame.extend_from_slice(&(header.len() as u32).to_le_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    out.write_all(&frame)
}

/// Read one frame; `Ok(None)` when the other side closed the socket between frames.
pub fn read_frame<M: for<'de> Deserialize<'de>>(
    input: &mut impl Read,
) -> io::Result<Option<(M, Vec<u8>)>> {
    let mut lens = [0u8; 8];
    match input.read_exact(&mut lens) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let header_len = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
    let body_len = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
    if header_len > MAX_HEADER || body_len > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a frame of {header_len} + {body_len} bytes is over the limit ({MAX_HEADER} + {MAX_BODY})"
            ),
        ));
    }
    let mut header = vec![0u8; header_len];
    input.read_exact(&mut header)?;
    let mut body = vec![0u8; body_len];
    input.read_exact(&mut body)?;
    let msg = serde_json::from_slice(&header).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame that is not a message: {e}"),
        )
    })?;
    Ok(Some((msg, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_frames_are_refused() {
        let mut buf = Vec::new();
        let msg = ToHost::ToolBegin {
            id: 7,
            name: "search".into(),
        };
        write_frame(&mut buf, &msg, br#"{"q":1}"#).unwrap();
        write_frame(&mut buf, &ToHost::Cancel { id: 9 }, b"").unwrap();
        let mut r = &buf[..];
        let (got, body): (ToHost, _) = read_frame(&mut r).unwrap().unwrap();
        assert!(matches!(got, ToHost::ToolBegin { id: 7, ref name } if name == "search"));
        assert_eq!(body, br#"{"q":1}"#);
        let (got, body): (ToHost, _) = read_frame(&mut r).unwrap().unwrap();
        assert!(matches!(got, ToHost::Cancel { id: 9 }));
        assert!(body.is_empty());
        assert!(read_frame::<ToHost>(&mut r).unwrap().is_none());

        // A length over the limit is refused before anything is allocated.
        let mut huge = Vec::new();
        huge.extend_from_slice(&(u32::MAX).to_le_bytes());
        huge.extend_from_slice(&0u32.to_le_bytes());
        let err = read_frame::<ToHost>(&mut &huge[..]).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
        // A header that is not a message.
        let mut junk = Vec::new();
        junk.extend_from_slice(&3u32.to_le_bytes());
        junk.extend_from_slice(&0u32.to_le_bytes());
        junk.extend_from_slice(b"{x}");
        let err = read_frame::<ToHost>(&mut &junk[..]).unwrap_err();
        assert!(err.to_string().contains("not a message"), "{err}");
        // A frame cut short.
        let cut = &buf[..buf.len() - 12];
        let mut r = cut;
        read_frame::<ToHost>(&mut r).unwrap();
        assert!(read_frame::<ToHost>(&mut r).is_err());
    }
}
