//! What the agent may reach on the network besides its upstreams (`[egress]`).
//!
//! - `mode = "open"` (the default): the agent's process has the host's network. Its LLM
//!   requests to upstreams go through the chain from every governed HTTP client; a request
//!   that bypassed them (a raw socket, a C library, a subprocess) reaches the provider with
//!   the placeholder key only, so it carries nothing billable, but its data could leave to any
//!   host.
//! - `mode = "governed-only"`: the agent's process has no network at all (a network namespace
//!   of its own with no interface, and, where Landlock has network rules, no TCP connect or
//!   bind). Upstream requests go to the host through its socket, as always; a connection to a
//!   host of `allow` is made by the host, after the check, and handed to the agent as a
//!   connected socket ([`serve`]); anything else is refused, naming the host and the reason.
//!   Nothing the agent runs (C code, `ctypes`, a subprocess) can get around it.
//!
//! The worker asks over a second socket (a `SOCK_SEQPACKET` pair, one message per request
//! and per answer): `{"op": "resolve", "host": H, "port": P}` answers the addresses of an
//! allowed host; `{"op": "connect", "host": H, "ip": A, "port": P, "timeout_ms": T}` answers
//! `{"ok": true}` with the connected socket attached (`SCM_RIGHTS`), for an address the host
//! gave for that host (or an allowed address literal). Refusals answer
//! `{"error": ..., "kind": "refused" | "dns" | "connect" | "timeout"}`.
#![expect(
    unsafe_code,
    reason = "socketpair, sendmsg and recvmsg with SCM_RIGHTS to hand connected sockets over"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Deserialize;

use crate::config::egress::{Egress, Refusal};
use crate::events::{EventBus, EventKind};
use crate::model::Severity;

/// The descriptor the worker finds its egress socket on (governed-only).
pub const EGRESS_FD: RawFd = 4;

// ---- the socket pair ------------------------------------------------------------------------

/// A connected `SOCK_SEQPACKET` pair (both ends close-on-exec).
pub fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

const MAX_MESSAGE: usize = 16 * 1024;

/// Send one message, with `fd` attached when given.
fn send(sock: RawFd, bytes: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // Room for one descriptor, aligned as a cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure size computations.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: `msg` has a control buffer of `space` bytes (within `control`), so the first
        // header exists and has room for one descriptor.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers for the duration of the call.
        let rc = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive one message and the descriptor attached to it, if any; `None` when the other end
/// closed.
fn recv(sock: RawFd) -> io::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: `msg` points at live buffers for the duration of the call.
        let rc = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if rc >= 0 {
            break rc as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let mut fd = None;
    // SAFETY: the kernel filled `msg`'s control buffer; the macros walk it within its length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    buf.truncate(n);
    Ok(Some((buf, fd)))
}

// ---- the host's side ------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Resolve {
        host: String,
        port: u16,
    },
    Connect {
        host: String,
        ip: IpAddr,
        port: u16,
        timeout_ms: u64,
    },
}

/// Longest a connection the host makes for the agent may take.
const MAX_CONNECT: Duration = Duration::from_secs(60);

/// Answer the worker's requests on `sock` until it closes, by `rules`; each connection made
/// or refused is logged (target `ironhost::egress`), and each refusal is published on `bus`
/// as an `egress_refused` event of `agent` (the metrics count them as unauthorized actions).
pub fn serve(sock: OwnedFd, rules: Arc<Egress>, agent: String, bus: EventBus) -> io::Result<()> {
    std::thread::Builder::new()
        .name("ironhost-egress".to_owned())
        .spawn(move || {
            // The addresses given out, by host: a connection goes only to one of them.
            let resolved: Mutex<BTreeMap<String, BTreeSet<IpAddr>>> = Mutex::default();
            while let Ok(Some((bytes, _))) = recv(sock.as_raw_fd()) {
                let (answer, conn) = match serde_json::from_slice::<Request>(&bytes) {
                    Ok(req) => answer(
                        &rules,
                        &resolved,
                        &Asker {
                            agent: &agent,
                            bus: &bus,
                        },
                        req,
                    ),
                    Err(e) => (
                        serde_json::json!({"error": format!("unreadable egress request: {e}"),
                            "kind": "refused"}),
                        None,
                    ),
                };
                let fd = conn.as_ref().map(AsRawFd::as_raw_fd);
                if send(sock.as_raw_fd(), answer.to_string().as_bytes(), fd).is_err() {
                    return;
                }
            }
        })
        .map(drop)
}

/// The agent whose requests are answered, and where its refusals are published.
struct Asker<'a> {
    agent: &'a str,
    bus: &'a EventBus,
}

fn refused(asker: &Asker<'_>, host: &str, port: u16, r: &Refusal) -> serde_json::Value {
    tracing::warn!(
        target: "ironhost::egress",
        agent = %asker.agent,
        host = %host,
        port = port,
        "egress refused: {}",
        r.error
    );
    asker.bus.publish(
        asker.agent,
        Severity::Medium,
        EventKind::EgressRefused {
            host: host.to_owned(),
            port,
            reason: r.error.clone(),
        },
    );
    serde_json::to_value(r).unwrap_or_default()
}

fn answer(
    rules: &Egress,
    resolved: &Mutex<BTreeMap<String, BTreeSet<IpAddr>>>,
    asker: &Asker<'_>,
    req: Request,
) -> (serde_json::Value, Option<TcpStream>) {
    match req {
        Request::Resolve { host, port } => {
            let host = host.to_ascii_lowercase();
            if let Err(r) = rules.check(&host, port) {
                return (refused(asker, &host, port, &r), None);
            }
            match (host.as_str(), port).to_socket_addrs() {
                Ok(addrs) => {
                    let ips: BTreeSet<IpAddr> = addrs.map(|a| a.ip()).collect();
                    resolved
                        .lock()
                        .entry(host)
                        .or_default()
                        .extend(ips.iter().copied());
                    let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
                    (serde_json::json!({"ok": list}), None)
                }
                Err(e) => (
                    serde_json::json!({"error": format!("cannot resolve {host}: {e}"),
                        "kind": "dns"}),
                    None,
                ),
            }
        }
        Request::Connect {
            host,
            ip,
            port,
            timeout_ms,
        } => {
            let host = host.to_ascii_lowercase();
            if let Err(r) = rules.check(&host, port) {
                return (refused(asker, &host, port, &r), None);
            }
            let literal = host.parse::<IpAddr>().ok() == Some(ip);
            let given = resolved.lock().get(&host).is_some_and(|s| s.contains(&ip));
            if !literal && !given {
                let r = Refusal {
                    error: format!("{ip} is not an address of {host} (resolve it first)"),
                    kind: "refused",
                };
                return (refused(asker, &host, port, &r), None);
            }
            let timeout = Duration::from_millis(timeout_ms.max(1)).min(MAX_CONNECT);
            match TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout) {
                Ok(stream) => {
                    tracing::info!(
                        target: "ironhost::egress",
                        agent = %asker.agent,
                        host = %host,
                        port = port,
                        "egress to {host}:{port} ({ip})"
                    );
                    (serde_json::json!({"ok": true}), Some(stream))
                }
                Err(e) => {
                    let kind = if e.kind() == io::ErrorKind::TimedOut {
                        "timeout"
                    } else {
                        "connect"
                    };
                    (
                        serde_json::json!({"error": format!("{host}:{port} ({ip}): {e}"),
                            "kind": kind, "errno": e.raw_os_error()}),
                        None,
                    )
                }
            }
        }
    }
}

// ---- the worker's side ----------------------------------------------------------------------

static WORKER_LOCK: Mutex<()> = Mutex::new(());

/// Ask the host (from the worker, on [`EGRESS_FD`]): the answer's JSON text and the socket it
/// handed over, if any. One request at a time.
pub fn ask(request: &str) -> io::Result<(String, Option<OwnedFd>)> {
    let _one = WORKER_LOCK.lock();
    send(EGRESS_FD, request.as_bytes(), None)?;
    match recv(EGRESS_FD)? {
        Some((bytes, fd)) => Ok((String::from_utf8_lossy(&bytes).into_owned(), fd)),
        None => Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the host closed the egress socket",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_crosses_the_pair() {
        let (a, b) = socket_pair().expect("pair");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        send(a.as_raw_fd(), b"{\"ok\":true}", Some(stream.as_raw_fd())).expect("sent");
        drop(stream);
        let (bytes, fd) = recv(b.as_raw_fd()).expect("received").expect("a message");
        assert_eq!(bytes, b"{\"ok\":true}");
        let got = TcpStream::from(fd.expect("a descriptor"));
        assert_eq!(
            got.peer_addr().expect("connected"),
            listener.local_addr().expect("addr")
        );
        drop(a);
        assert!(recv(b.as_raw_fd()).expect("closed").is_none());
    }
}
