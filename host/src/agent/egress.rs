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
use serde::{Deserialize, Serialize};

use crate::llm::upstreams::Upstreams;

/// The descriptor the worker finds its egress socket on (governed-only).
pub const EGRESS_FD: RawFd = 4;

/// `[egress] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EgressMode {
    #[default]
    Open,
    GovernedOnly,
}

/// `[egress]` in `ironhost.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EgressFileConfig {
    pub mode: Option<EgressMode>,
    /// Hosts the agent may connect to besides its upstreams (governed-only): `host`,
    /// `host:port`, `*.domain` (its subdomains), an IPv4 or `[IPv6]` address.
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com` (not the domain itself).
    Subdomains(String),
}

/// One `allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    host: HostPattern,
    port: Option<u16>,
    text: String,
}

impl Rule {
    fn parse(text: &str) -> Result<Rule, String> {
        let t = text.trim();
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
            (ip.to_owned(), after.strip_prefix(':'))
        } else if t.matches(':').count() > 1 {
            (t.to_owned(), None) // a bare IPv6 address
        } else {
            match t.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (t.to_owned(), None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("`{text}`: `{p}` is not a port"))?,
            ),
        };
        let host = host.to_ascii_lowercase();
        let valid = |h: &str| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
        };
        let pattern = match host.strip_prefix("*.") {
            Some(domain) if valid(domain) && domain.contains('.') => {
                HostPattern::Subdomains(domain.to_owned())
            }
            Some(_) => {
                return Err(format!(
                    "`{text}`: `*.` needs a domain such as *.example.com"
                ));
            }
            None if valid(&host) => HostPattern::Exact(host),
            None => return Err(format!("`{text}` is not a host, host:port or *.domain")),
        };
        Ok(Rule {
            host: pattern,
            port,
            text: t.to_owned(),
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = match &self.host {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
        };
        // Port 0: a name look-up without a port (the connection is checked with its own).
        host_ok && (port == 0 || self.port.is_none_or(|p| p == port))
    }
}

/// The checked `[egress]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Egress {
    pub mode: EgressMode,
    rules: Vec<Rule>,
    /// The upstreams' hosts, by name: never reachable around the chain.
    upstream_hosts: BTreeMap<String, String>,
}

/// Why a request was refused, and how the agent's side reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub error: String,
    pub kind: &'static str,
}

impl Egress {
    /// Check `[egress]` against the upstreams; an error is (key, reason).
    pub fn new(file: &EgressFileConfig, upstreams: &Upstreams) -> Result<Egress, (String, String)> {
        let mut upstream_hosts = BTreeMap::new();
        for u in upstreams.iter() {
            if let Ok(url) = reqwest::Url::parse(&u.address)
                && let Some(h) = url.host_str()
            {
                let h = h.trim_start_matches('[').trim_end_matches(']');
                upstream_hosts
                    .entry(h.to_ascii_lowercase())
                    .or_insert_with(|| u.name.clone());
            }
        }
        let mut rules = Vec::new();
        for (i, text) in file.allow.iter().enumerate() {
            let rule = Rule::parse(text).map_err(|e| (format!("egress.allow[{i}]"), e))?;
            if let HostPattern::Exact(h) = &rule.host
                && let Some(name) = upstream_hosts.get(h)
            {
                return Err((
                    format!("egress.allow[{i}]"),
                    format!(
                        "`{text}` is the host of upstream `{name}`: its requests go through the \
                         chain, never around it"
                    ),
                ));
            }
            rules.push(rule);
        }
        Ok(Egress {
            mode: file.mode.unwrap_or_default(),
            rules,
            upstream_hosts,
        })
    }

    /// Whether the agent may connect to `host:port` (host lower-cased, no brackets).
    pub fn check(&self, host: &str, port: u16) -> Result<(), Refusal> {
        if let Some(name) = self.upstream_hosts.get(host) {
            return Err(Refusal {
                error: format!(
                    "egress = \"governed-only\": {host} is upstream `{name}`; its requests go \
                     through ironhost from a governed HTTP client (httpx, requests, urllib, \
                     aiohttp, httpcore), not over a connection of the agent's own"
                ),
                kind: "refused",
            });
        }
        if self.rules.iter().any(|r| r.matches(host, port)) {
            return Ok(());
        }
        let allowed = if self.rules.is_empty() {
            "nothing is allowed".to_owned()
        } else {
            let list: Vec<&str> = self.rules.iter().map(|r| r.text.as_str()).collect();
            format!("allowed: {}", list.join(", "))
        };
        Err(Refusal {
            error: format!(
                "egress = \"governed-only\": {host}:{port} is not a configured upstream or in \
                 egress.allow ({allowed})"
            ),
            kind: "refused",
        })
    }
}

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
/// or refused is logged (target `ironhost::egress`).
pub fn serve(sock: OwnedFd, rules: Arc<Egress>, agent: String) -> io::Result<()> {
    std::thread::Builder::new()
        .name("ironhost-egress".to_owned())
        .spawn(move || {
            // The addresses given out, by host: a connection goes only to one of them.
            let resolved: Mutex<BTreeMap<String, BTreeSet<IpAddr>>> = Mutex::default();
            while let Ok(Some((bytes, _))) = recv(sock.as_raw_fd()) {
                let (answer, conn) = match serde_json::from_slice::<Request>(&bytes) {
                    Ok(req) => answer(&rules, &resolved, &agent, req),
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

fn refused(agent: &str, host: &str, port: u16, r: &Refusal) -> serde_json::Value {
    tracing::warn!(
        target: "ironhost::egress",
        agent = %agent,
        host = %host,
        port = port,
        "egress refused: {}",
        r.error
    );
    serde_json::to_value(r).unwrap_or_default()
}

fn answer(
    rules: &Egress,
    resolved: &Mutex<BTreeMap<String, BTreeSet<IpAddr>>>,
    agent: &str,
    req: Request,
) -> (serde_json::Value, Option<TcpStream>) {
    match req {
        Request::Resolve { host, port } => {
            let host = host.to_ascii_lowercase();
            if let Err(r) = rules.check(&host, port) {
                return (refused(agent, &host, port, &r), None);
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
                return (refused(agent, &host, port, &r), None);
            }
            let literal = host.parse::<IpAddr>().ok() == Some(ip);
            let given = resolved.lock().get(&host).is_some_and(|s| s.contains(&ip));
            if !literal && !given {
                let r = Refusal {
                    error: format!("{ip} is not an address of {host} (resolve it first)"),
                    kind: "refused",
                };
                return (refused(agent, &host, port, &r), None);
            }
            let timeout = Duration::from_millis(timeout_ms.max(1)).min(MAX_CONNECT);
            match TcpStream::connect_timeout(&SocketAddr::new(ip, port), timeout) {
                Ok(stream) => {
                    tracing::info!(
                        target: "ironhost::egress",
                        agent = %agent,
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

    fn egress(allow: &[&str]) -> Result<Egress, (String, String)> {
        let file = EgressFileConfig {
            mode: Some(EgressMode::GovernedOnly),
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        };
        Egress::new(&file, &Upstreams::default())
    }

    #[test]
    fn allow_rules_match_hosts_ports_and_subdomains() {
        let e = egress(&[
            "api.serpapi.com",
            "crm.internal:8443",
            "*.example.org",
            "10.0.0.5",
            "[::1]:80",
        ])
        .expect("valid");
        assert!(e.check("api.serpapi.com", 443).is_ok());
        assert!(e.check("api.serpapi.com", 80).is_ok());
        assert!(e.check("crm.internal", 8443).is_ok());
        assert!(e.check("crm.internal", 443).is_err());
        assert!(
            e.check("crm.internal", 0).is_ok(),
            "a look-up without a port"
        );
        assert!(e.check("a.example.org", 443).is_ok());
        assert!(
            e.check("example.org", 443).is_err(),
            "*.domain is its subdomains"
        );
        assert!(e.check("badexample.org", 443).is_err());
        assert!(e.check("10.0.0.5", 22).is_ok());
        assert!(e.check("::1", 80).is_ok());
        let r = e.check("evil.example.net", 443).expect_err("refused");
        assert!(
            r.error.contains("evil.example.net:443") && r.error.contains("egress.allow"),
            "{}",
            r.error
        );
        // An upstream's host is never reached around the chain.
        let r = e.check("api.openai.com", 443).expect_err("refused");
        assert!(r.error.contains("upstream `openai`"), "{}", r.error);
    }

    #[test]
    fn bad_entries_name_the_entry_and_the_reason() {
        for (allow, reason) in [
            ("api.openai.com", "host of upstream `openai`"),
            ("host:0", "not a port"),
            ("host:http", "not a port"),
            ("*.", "needs a domain"),
            ("*.com", "needs a domain"),
            ("a b", "not a host"),
            ("[::1", "without `]`"),
        ] {
            let (key, r) = egress(&[allow]).expect_err(allow);
            assert_eq!(key, "egress.allow[0]");
            assert!(r.contains(reason), "{allow}: {r}");
        }
    }

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
