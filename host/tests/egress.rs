//! `[egress]` end to end: an agent under `ironhost start` tries every way to reach the
//! network (`tests/agents/egress.py`). Under `mode = "governed-only"` only the hosts of
//! `egress.allow` and the upstreams (through the chain) are reached; everything else is refused
//! with an error naming the host, and code that does not go through ironhost's Python (a
//! subprocess) finds no network at all. Under the default `open`, the agent's own connections
//! go out.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

mod common;
#[path = "common/refused.rs"]
mod refused;
use common::{ironhost_in, repo};

/// A plain HTTP server on 127.0.0.1 that answers every request with `name`.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(name: &'static str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let mut buf = [0u8; 4096];
                        let _ = conn.read(&mut buf);
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                            name.len()
                        );
                        let _ = conn.write_all(reply.as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Server { port, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Run the script with `config`; its cases by name, the host's log lines, everything it printed,
/// and the agent's metrics as the store has them.
fn run(config: &str, allowed: &Server, other: &Server) -> (Vec<Value>, Vec<Value>, String, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::write(dir.path().join("ironhost.toml"), config).expect("config");
    let out = ironhost_in(dir.path())
        .env("IRONHOST_LLM_MODE", "simulator")
        .env("IRONHOST_HOME", &home)
        .env("ALLOWED_PORT", allowed.port.to_string())
        .env("OTHER_PORT", other.port.to_string())
        .args(["start", "--no-api", "--log-format", "json"])
        .arg(repo().join("tests/agents/egress.py"))
        .output()
        .expect("ironhost runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let parse = |text: &str| -> Vec<Value> {
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let all = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    (parse(&stdout), parse(&stderr), all, metrics(&home))
}

/// The metrics of the one agent the store at `home` knows.
fn metrics(home: &std::path::Path) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let store = ironhost::store::Store::open(home)
            .await
            .expect("the agent's store");
        let agents = store.agents().await.expect("the agents");
        assert_eq!(agents.len(), 1, "one agent ran");
        let m = store.agent_metrics(&agents[0]).await.expect("its metrics");
        serde_json::to_value(m).expect("metrics as JSON")
    })
}

fn case<'a>(cases: &'a [Value], name: &str, all: &str) -> &'a Value {
    cases
        .iter()
        .find(|c| c["case"] == name)
        .unwrap_or_else(|| panic!("no case {name}\n{all}"))
}

#[test]
fn governed_only_reaches_the_allowed_hosts_and_the_upstreams_and_nothing_else() {
    let allowed = Server::start("from the allowed server");
    let other = Server::start("from the other server");
    let config = format!(
        "[egress]\nmode = \"governed-only\"\nallow = [\"127.0.0.1:{p}\", \"localhost:{p}\"]\n",
        p = allowed.port
    );
    let (cases, log, all, metrics) = run(&config, &allowed, &other);
    for name in ["allowed", "allowed_by_name", "allowed_asyncio"] {
        let c = case(&cases, name, &all);
        assert_eq!(c["text"], "from the allowed server", "{name}: {c}\n{all}");
    }
    let lookup = case(&cases, "allowed_lookup", &all);
    assert_eq!(lookup["text"], "127.0.0.1", "{lookup}\n{all}");
    let governed = case(&cases, "governed", &all);
    assert_eq!(governed["ok"], true, "{governed}\n{all}");

    // Refused, naming the host and why.
    let refused = |name: &str, needles: &[&str]| {
        let c = case(&cases, name, &all);
        assert_eq!(c["ok"], false, "{name} got through: {c}");
        let error = c["error"].as_str().unwrap_or_default();
        for n in needles {
            assert!(error.contains(n), "{name}: `{error}` lacks `{n}`");
        }
    };
    let other_at = format!("127.0.0.1:{}", other.port);
    refused("other_port", &[&other_at, "egress.allow"]);
    refused("other_asyncio", &[&other_at, "egress.allow"]);
    refused("other_host", &["pypi.org:443", "egress.allow"]);
    refused("other_lookup", &["pypi.org", "egress.allow"]);
    refused("upstream_raw", &["api.openai.com", "upstream `openai`"]);
    // Code outside ironhost's Python finds no network at all, not even the allowed server:
    // Landlock refuses the connect (ABI 4 and later), else there is no route in the namespace.
    refused("subprocess", &[]);
    let error = case(&cases, "subprocess", &all)["error"].to_string();
    assert!(
        error.contains("Permission denied") || error.contains("unreachable"),
        "{error}"
    );

    // Every refusal the host made is logged with the host.
    let refusals: Vec<&Value> = log
        .iter()
        .filter(|l| l["target"] == "ironhost::egress" && l["level"] == "WARN")
        .collect();
    for host in ["127.0.0.1", "pypi.org", "api.openai.com"] {
        assert!(
            refusals.iter().any(|l| l["host"] == host),
            "no refusal logged for {host}: {refusals:?}"
        );
    }
    assert!(
        log.iter().any(|l| l["target"] == "ironhost::egress"
            && l["level"] == "INFO"
            && l["port"] == allowed.port),
        "the allowed connection is logged"
    );
    // ... and counted as an unauthorized action of the agent (an `egress_refused` event each).
    assert_eq!(
        metrics["unauthorized"],
        refusals.len(),
        "{metrics}\n{refusals:?}"
    );
}

#[test]
fn open_egress_lets_the_agent_connect_by_itself() {
    let allowed = Server::start("from the allowed server");
    let other = Server::start("from the other server");
    let (cases, _, all, metrics) = run("", &allowed, &other);
    let c = case(&cases, "other_port", &all);
    assert_eq!(c["text"], "from the other server", "{c}");
    assert_eq!(metrics["unauthorized"], 0, "{metrics}");
    let c = case(&cases, "subprocess", &all);
    assert_eq!(c["text"], "connected", "{c}");
}

#[test]
fn governed_only_settings_are_checked() {
    for (config, needle) in [
        (
            "[egress]\nmode = \"governed-only\"\nallow = [\"api.anthropic.com\"]\n",
            "upstream `anthropic`",
        ),
        (
            "isolation = \"process\"\n[egress]\nmode = \"governed-only\"\n",
            "needs isolation = \"sandbox\"",
        ),
        ("[egress]\nmode = \"closed\"\n", "egress.mode"),
    ] {
        let stderr = refused::refused_config(config);
        assert!(stderr.contains(needle), "{config}: {stderr}");
    }
}
