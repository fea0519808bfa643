//! A fake provider on 127.0.0.1 for the end-to-end tests: it records each request it
//! receives (method, path, lower-cased headers, body) and answers from a script, one answer
//! per connection. Included with `#[path = "common/fake_provider.rs"] mod fake_provider;`.

#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ironhost::llm::sse::SseEvent;
use parking_lot::Mutex;
use serde_json::Value;

/// Longest a fake provider lives, whatever a test does.
pub const SERVER_LIFETIME: Duration = Duration::from_secs(30);

/// One request as the fake provider received it (header names lower-cased).
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the provider received JSON")
    }
}

/// What the fake provider answers to one request.
pub enum Script {
    /// A complete answer with `Content-Length`.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// A `200 text/event-stream`, chunked, one event per chunk.
    Sse(Vec<SseEvent>),
    /// Read the request and never answer (until the provider is dropped).
    Hang,
}

pub fn json_answer(status: u16, extra_headers: &[(&str, &str)], body: Vec<u8>) -> Script {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    headers.extend(
        extra_headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Script::Full {
        status,
        headers,
        body,
    }
}

pub struct FakeProvider {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeProvider {
    pub fn start(script: Vec<Script>) -> FakeProvider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let received = received.clone();
            let stop = stop.clone();
            let mut script: VecDeque<Script> = script.into();
            std::thread::spawn(move || {
                let deadline = Instant::now() + SERVER_LIFETIME;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            serve(conn, &received, &mut script, &stop, deadline);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FakeProvider {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read one request, record it, answer it from the script; the connection is then closed.
fn serve(
    mut conn: TcpStream,
    received: &Mutex<Vec<Received>>,
    script: &mut VecDeque<Script>,
    stop: &AtomicBool,
    deadline: Instant,
) {
    if conn.set_nonblocking(false).is_err()
        || conn.set_read_timeout(Some(Duration::from_secs(5))).is_err()
    {
        return;
    }
    let Some(request) = read_request(&mut conn) else {
        return;
    };
    received.lock().push(request);
    let reply = script.pop_front().unwrap_or_else(|| Script::Full {
        status: 599,
        headers: Vec::new(),
        body: b"the fake provider has no scripted answer left".to_vec(),
    });
    let _ = match reply {
        Script::Full {
            status,
            headers,
            body,
        } => write_full(&mut conn, status, &headers, &body),
        Script::Sse(events) => write_sse(&mut conn, &events),
        Script::Hang => {
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        }
    };
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

fn read_request(conn: &mut TcpStream) -> Option<Received> {
    const MAX_HEAD: usize = 64 * 1024;
    const MAX_BODY: usize = 4 * 1024 * 1024;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return None;
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn write_full(
    conn: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    conn.write_all(out.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}

fn write_sse(conn: &mut TcpStream, events: &[SseEvent]) -> std::io::Result<()> {
    conn.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n\
          cache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    )?;
    conn.flush()?;
    for ev in events {
        let bytes = ev.to_bytes();
        conn.write_all(format!("{:x}\r\n", bytes.len()).as_bytes())?;
        conn.write_all(&bytes)?;
        conn.write_all(b"\r\n")?;
        conn.flush()?;
        // Separate reads on the host's side, as from a real provider.
        std::thread::sleep(Duration::from_millis(5));
    }
    conn.write_all(b"0\r\n\r\n")?;
    conn.flush()
}
