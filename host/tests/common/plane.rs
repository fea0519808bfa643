//! The harness of the end-to-end control-plane tests: real `ironhost start` and `ironhost
//! serve` processes on a temporary home, their output collected as it comes, and a logged-in
//! API client. Included with `#[path = "common/plane.rs"] mod plane;` next to `mod common;`.

#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::common::{ironhost_in, repo};

pub const MASTER_KEY: &str = "cp-test-master-key-4d2f90a1";
pub const OTHER_MASTER_KEY: &str = "cp-test-another-key-77b1e3c5";
pub const ADMIN_PASSWORD: &str = "cp-admin-pass-9c41";

pub fn agent(name: &str) -> String {
    repo()
        .join("tests/agents")
        .join(name)
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

/// `ironhost` in `dir`, offline, with the test virtualenv, no inherited settings, and the
/// control plane's home and keys set (and the store, while [`use_database`] says one).
pub fn ironhost(dir: &Path, home: &Path, master_key: &str) -> Command {
    let mut c = ironhost_in(dir);
    c.env("IRONHOST_LLM_MODE", "simulator")
        .env("IRONHOST_HOME", home)
        .env("IRONHOST_MASTER_KEY", master_key)
        .env("IRONHOST_ADMIN_PASSWORD", ADMIN_PASSWORD);
    if let Some(url) = lock(&DATABASE_URL).clone() {
        c.env("IRONHOST_DATABASE_URL", url);
    }
    c
}

/// The library's view of the same settings (for writing to the store "from another process").
pub fn plane_vars() -> BTreeMap<String, String> {
    let mut vars = BTreeMap::from([
        ("IRONHOST_MASTER_KEY".to_owned(), MASTER_KEY.to_owned()),
        (
            "IRONHOST_ADMIN_PASSWORD".to_owned(),
            ADMIN_PASSWORD.to_owned(),
        ),
    ]);
    if let Some(url) = lock(&DATABASE_URL).clone() {
        vars.insert("IRONHOST_DATABASE_URL".to_owned(), url);
    }
    vars
}

/// The store of the test that runs (tests take turns, see [`serial`]): `None` for the home's
/// SQLite file, else a database URL.
static DATABASE_URL: Mutex<Option<String>> = Mutex::new(None);

/// Every process the running test starts from now on, and [`plane_vars`], use the store at
/// `url` (`IRONHOST_DATABASE_URL`), until the guard is dropped (a failed test's too).
pub fn use_database(url: String) -> DatabaseGuard {
    *lock(&DATABASE_URL) = Some(url);
    DatabaseGuard
}

/// Back to the home's SQLite store when dropped.
pub struct DatabaseGuard;

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        *lock(&DATABASE_URL) = None;
    }
}

pub static SERIAL: Mutex<()> = Mutex::new(());

/// Run one test's body on a multi-threaded runtime, one test at a time.
pub fn serial(test: impl std::future::Future<Output = ()>) {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
        .block_on(test);
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A running `ironhost` process whose stdout lines and stderr text are collected as they come.
pub struct Proc {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("ironhost runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let o = out.clone();
        let e = err.clone();
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lock(&o).push(line);
                }
            }),
            std::thread::spawn(move || {
                let mut r = BufReader::new(stderr);
                let mut buf = Vec::new();
                while matches!(r.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                    lock(&e).push_str(&String::from_utf8_lossy(&buf));
                    buf.clear();
                }
            }),
        ];
        Proc {
            child,
            out,
            err,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn lines(&self) -> Vec<String> {
        lock(&self.out).clone()
    }

    pub fn stderr(&self) -> String {
        lock(&self.err).clone()
    }

    pub fn report(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.lines().join("\n"),
            self.stderr()
        )
    }

    /// Wait for the readers to reach the end of the output (after the process exited).
    pub fn drain(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// Wait until the stdout lines satisfy `done`; returns them.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                let lines = self.lines();
                if done(&lines) {
                    return lines;
                }
                panic!(
                    "ironhost exited ({status}) before {what}\n{}",
                    self.report()
                );
            }
            if Instant::now() > deadline {
                panic!("no {what} within {timeout:?}\n{}", self.report());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text after `prefix` on the first stdout line that starts with it.
    pub async fn wait_prefix(&mut self, prefix: &str, timeout: Duration) -> String {
        let lines = self
            .wait_until(timeout, &format!("`{prefix}` line"), |ls| {
                ls.iter().any(|l| l.starts_with(prefix))
            })
            .await;
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .expect("the line was found")
            .to_owned()
    }

    /// Wait for the exit (killing the process after `timeout`) and for all its output.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.drain();
                panic!(
                    "ironhost did not exit within {timeout:?}\n{}",
                    self.report()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ironhost start ARGS` on `home`.
pub fn start(dir: &Path, home: &Path, master_key: &str, args: &[&str]) -> Proc {
    let mut c = ironhost(dir, home, master_key);
    c.arg("start").args(args);
    Proc::spawn(c)
}

/// `ironhost serve --listen 127.0.0.1:0` on `home`, and its base URL.
pub async fn serve(dir: &Path, home: &Path) -> (Proc, String) {
    let mut c = ironhost(dir, home, MASTER_KEY);
    c.args(["serve", "--listen", "127.0.0.1:0"]);
    let mut p = Proc::spawn(c);
    let url = p
        .wait_prefix("control plane: ", Duration::from_secs(20))
        .await;
    (p, url.trim_end_matches('/').to_owned())
}

/// A started agent's id and, if it serves the API, its base URL.
pub async fn started(p: &mut Proc, with_api: bool) -> (String, Option<String>) {
    let id = p.wait_prefix("agent_id: ", Duration::from_secs(20)).await;
    let base = if with_api {
        let url = p.wait_prefix("dashboard: ", Duration::from_secs(5)).await;
        Some(url.trim_end_matches('/').to_owned())
    } else {
        None
    };
    (id, base)
}

/// A logged-in admin session on one control plane.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Api {
    pub async fn login(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an HTTP client");
        let r = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .expect("the login request is answered");
        let status = r.status();
        let body: Value = r.json().await.expect("the login answer is JSON");
        assert!(status.is_success(), "login: {status} {body}");
        let token = body["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned();
        Api {
            base: base.to_owned(),
            http,
            token,
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the API answers");
        let status = r.status().as_u16();
        let text = r.text().await.expect("a readable body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)))
            .await
    }

    pub async fn put_json(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// `POST /api/policies` with a component file and settings, as multipart/form-data.
    pub async fn upload_policy(
        &self,
        file_name: &str,
        bytes: &[u8],
        settings: &str,
    ) -> (u16, Value) {
        let boundary = "ironhost-cp-test-boundary-5f1c";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"{file_name}\"\r\nContent-Type: application/wasm\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"settings\"\r\nContent-Type: application/json\r\n\r\n{settings}\r\n--{boundary}--\r\n"
            )
            .as_bytes(),
        );
        self.send(
            self.http
                .post(format!("{}/api/policies", self.base))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body),
        )
        .await
    }

    /// The stored events of agent `id`, oldest first.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/api/events?agent_id={id}&after=0&limit=1000"))
            .await;
        assert_eq!(status, 200, "GET /api/events: {body}");
        body.as_array().expect("a list of events").clone()
    }
}

pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

pub fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The default bundle with `secrets-inject` also injecting `DEMO_TOKEN` from `demo-token`.
pub fn inject_bundle(dir: &Path) -> PathBuf {
    let default = std::fs::read_to_string(repo().join("policies/bundles/default.toml"))
        .expect("the default bundle's manifest");
    let egress = "egress = { openai = \"OPENAI_API_KEY\", anthropic = \"ANTHROPIC_API_KEY\" }\n";
    assert!(
        default.contains(egress),
        "the default bundle changed:\n{default}"
    );
    let manifest = default.replacen(
        egress,
        &format!("{egress}inject = [{{ env = \"DEMO_TOKEN\", secret = \"demo-token\" }}]\n"),
        1,
    );
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).expect("a bundle directory");
    std::fs::write(bundle.join("bundle.toml"), manifest).expect("bundle.toml written");
    bundle
}
