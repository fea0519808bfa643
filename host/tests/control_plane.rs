//! The control plane end to end: real `ironhost start` and `ironhost serve` processes on a
//! temporary home, driven over REST and WebSocket, with agents from `tests/agents/cp_*.py`
//! (the official `openai` SDK from `.venv`, the simulator as the provider).
//!
//! The tests take turns (one at a time): each runs several processes, and one of them measures
//! latency, which a neighbour on the same two cores would distort.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;
#[path = "common/plane.rs"]
mod plane;
use common::repo;
use plane::*;
#[path = "common/postgres.rs"]
mod postgres;

#[test]
fn a_rotated_secret_reaches_the_running_agent_without_restart() {
    const V1: &str = "tok-v1-4f9a2c";
    const V2: &str = "tok-v2-8d3e71";
    serial(async {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let bundle = inject_bundle(dir.path());
        let mut agent_proc = start(
            dir.path(),
            &home,
            MASTER_KEY,
            &[
                "--bundle",
                bundle.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                &agent("cp_secret_watch.py"),
            ],
        );
        let (id, base) = started(&mut agent_proc, true).await;
        agent_proc
            .wait_prefix("watching", Duration::from_secs(20))
            .await;
        let api = Api::login(&base.unwrap()).await;

        // 1. Through the agent's own API.
        let (status, body) = api
            .put_json(
                "/api/secrets/demo-token",
                json!({"value": V1, "environment": "dev"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert!(!body.to_string().contains(V1), "value echoed: {body}");
        agent_proc
            .wait_prefix(&format!("token: {V1}"), Duration::from_secs(10))
            .await;

        // 2. Another process changes the store; SIGUSR1 makes the agent's host re-read it.
        let plane = ironhost::core::plane::Plane::open(&home, &plane_vars())
            .await
            .unwrap();
        plane
            .secrets
            .put("demo-token", "dev", V2, &ironhost::secrets::Actor::host())
            .await
            .unwrap();
        drop(plane);
        let pid = rustix::process::Pid::from_raw(agent_proc.pid() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::USR1).unwrap();
        agent_proc
            .wait_prefix(&format!("token: {V2}"), Duration::from_secs(10))
            .await;

        let status = agent_proc.wait_exit(Duration::from_secs(15)).await;
        let report = agent_proc.report();
        assert_eq!(status.code(), Some(0), "{report}");
        let lines = agent_proc.lines();
        let tokens: Vec<&String> = lines.iter().filter(|l| l.starts_with("token:")).collect();
        assert_eq!(
            tokens,
            [&format!("token: {V1}"), &format!("token: {V2}")],
            "{report}"
        );
        assert!(
            lines.iter().any(|l| l == "host credentials visible: []"),
            "the agent can read the master key or admin password:\n{report}"
        );
        // Still the same agent: one id on stdout.
        let ids: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("agent_id:"))
            .collect();
        assert_eq!(ids.len(), 1, "{report}");
        let stderr = agent_proc.stderr();
        assert!(
            !stderr.contains(V1) && !stderr.contains(V2),
            "a secret value is in the host's log:\n{stderr}"
        );

        // The record, read through a control plane on the same home.
        let (_serve, sbase) = serve(dir.path(), &home).await;
        let sapi = Api::login(&sbase).await;
        let events = sapi.events(&id).await;
        let all = serde_json::to_string(&events).unwrap();
        assert!(
            !all.contains(V1) && !all.contains(V2),
            "a secret value is in the events:\n{all}"
        );
        let kinds = types(&events);
        assert_eq!(
            of_type(&events, "agent_started").len(),
            1,
            "the agent was restarted: {kinds:?}"
        );
        let rotated = of_type(&events, "secrets_rotated");
        assert_eq!(
            rotated.len(),
            2,
            "one secrets_rotated per change: {rotated:?}"
        );
        for e in &rotated {
            assert_eq!(e["agent_id"], id.as_str(), "{e}");
            assert_eq!(e["secrets"], json!(["demo-token"]), "{e}");
            assert_eq!(e["env_vars"], json!(["DEMO_TOKEN"]), "{e}");
        }
        let stopped = of_type(&events, "agent_stopped");
        assert_eq!(stopped.len(), 1, "{kinds:?}");
        assert_eq!(stopped[0]["state"], "completed", "{}", stopped[0]);

        // Nothing in the database's bytes either (values are sealed).
        let db = home.join("ironhost.db");
        assert!(db.exists(), "no store at {}", db.display());
        for file in [db.clone(), home.join("ironhost.db-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                for v in [V1, V2] {
                    assert!(
                        !contains_bytes(&bytes, v.as_bytes()),
                        "{v} is in {} in plain text",
                        file.display()
                    );
                }
            }
        }
    });
}

#[test]
fn stopping_an_agent_through_the_api_ends_it_like_sigterm() {
    serial(async {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let mut agent_proc = start(
            dir.path(),
            &home,
            MASTER_KEY,
            &["--listen", "127.0.0.1:0", &agent("cp_loop.py")],
        );
        let (id, base) = started(&mut agent_proc, true).await;
        agent_proc
            .wait_prefix("call 2 done", Duration::from_secs(20))
            .await;
        let api = Api::login(&base.unwrap()).await;
        let (status, body) = api.get(&format!("/api/agents/{id}")).await;
        assert_eq!((status, &body["state"]), (200, &json!("running")), "{body}");

        let asked = Instant::now();
        let (status, body) = api.post(&format!("/api/agents/{id}/stop")).await;
        assert_eq!(status, 202, "{body}");
        let status = agent_proc.wait_exit(Duration::from_secs(10)).await;
        let took = asked.elapsed();
        let report = agent_proc.report();
        assert_eq!(status.code(), Some(143), "{report}");
        // The host's watchdog also exits with 143, but only 5 s after the signal: the agent
        // must have stopped by itself, through KeyboardInterrupt, well before that.
        assert!(
            took < Duration::from_secs(4),
            "stopping took {took:?}\n{report}"
        );
        assert!(
            agent_proc.lines().iter().any(|l| l == "interrupted"),
            "the agent did not see KeyboardInterrupt\n{report}"
        );
        assert!(
            !agent_proc.lines().iter().any(|l| l == "ran out of calls"),
            "{report}"
        );

        let (_serve, sbase) = serve(dir.path(), &home).await;
        let sapi = Api::login(&sbase).await;
        let (status, record) = sapi.get(&format!("/api/agents/{id}")).await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["state"], "stopped", "{record}");
        assert_eq!(record["exit_code"], 143, "{record}");
        let events = sapi.events(&id).await;
        let stopped = of_type(&events, "agent_stopped");
        assert_eq!(stopped.len(), 1, "{:?}", types(&events));
        assert_eq!(stopped[0]["state"], "stopped", "{}", stopped[0]);
        assert_eq!(stopped[0]["exit_code"], 143, "{}", stopped[0]);
        // A stopped agent cannot be stopped again.
        let (status, body) = sapi.post(&format!("/api/agents/{id}/stop")).await;
        assert_eq!(status, 409, "{body}");
    });
}

#[test]
fn when_the_run_ends_its_websocket_clients_get_its_last_events_then_a_goodbye() {
    serial(async {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let done = dir.path().join("done");
        let mut agent_proc = start(
            dir.path(),
            &home,
            MASTER_KEY,
            &[
                "--listen",
                "127.0.0.1:0",
                &agent("cp_until_file.py"),
                "--",
                done.to_str().expect("UTF-8 path"),
            ],
        );
        let (id, base) = started(&mut agent_proc, true).await;
        agent_proc
            .wait_prefix("ready", Duration::from_secs(20))
            .await;
        let base = base.expect("the agent serves a control plane");
        let api = Api::login(&base).await;
        let url = format!(
            "{}/ws?access_token={}",
            base.replacen("http://", "ws://", 1),
            api.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("the WebSocket connects");
        std::fs::write(&done, "").expect("the test can write its temp dir");
        let mut seen = Vec::new();
        let mut close = None;
        while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            match msg {
                Ok(Message::Text(text)) => {
                    seen.push(serde_json::from_str::<Value>(text.as_str()).unwrap_or(Value::Null))
                }
                Ok(Message::Close(frame)) => {
                    close = frame;
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("the stream broke instead of closing: {e}; got {seen:?}"),
            }
        }
        let status = agent_proc.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "{}", agent_proc.report());
        let kinds: Vec<&str> = seen.iter().filter_map(|v| v["type"].as_str()).collect();
        let stopped = kinds.iter().position(|k| *k == "agent_stopped");
        let closing = kinds.iter().position(|k| *k == "closing");
        assert!(
            matches!((stopped, closing), (Some(s), Some(c)) if s < c && c == kinds.len() - 1),
            "the run's end, then the goodbye, last: {kinds:?}"
        );
        let bye = &seen[closing.expect("checked above")];
        assert_eq!(bye["reason"], "run_ended", "{bye}");
        assert_eq!(bye["agent_id"], json!(id), "{bye}");
        assert_eq!(bye["state"], "completed", "{bye}");
        assert_eq!(bye["exit_code"], 0, "{bye}");
        let frame = close.expect("a close frame, not a dropped connection");
        assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
        assert_eq!(frame.reason.as_str(), "the run ended");
    });
}

/// What one WebSocket client received: (event id, receive time in ms since the epoch).
#[derive(Debug, Default)]
struct Inbox {
    got: Vec<(i64, i64)>,
    lagged: u64,
    problems: Vec<String>,
}

async fn ws_client(
    url: String,
    inbox: Arc<Mutex<Inbox>>,
    ready: tokio::sync::mpsc::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("the WebSocket connects");
    let first = ws
        .next()
        .await
        .expect("a first message")
        .expect("a readable first message");
    let hello: Value =
        serde_json::from_str(first.to_text().expect("a text message")).expect("JSON hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    ready.send(()).await.expect("the test is waiting");
    loop {
        tokio::select! {
            msg = ws.next() => {
                let at = now_ms();
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        let mut inbox = lock(&inbox);
                        if let Some(id) = v["id"].as_i64() {
                            inbox.got.push((id, at));
                        } else if v["type"] == "lagged" {
                            inbox.lagged += v["missed"].as_u64().unwrap_or(1);
                        } else {
                            inbox.problems.push(format!("unexpected message {text}"));
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        lock(&inbox).problems.push(format!("read error: {e}"));
                        return;
                    }
                    None => {
                        lock(&inbox).problems.push("closed by the server".to_owned());
                        return;
                    }
                }
            }
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}

#[test]
fn hundred_websocket_clients_receive_every_event_within_500_ms() {
    const CLIENTS: usize = 100;
    serial(async {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let (_serve, base) = serve(dir.path(), &home).await;
        let api = Api::login(&base).await;
        let ws_url = format!(
            "{}/ws?access_token={}",
            base.replacen("http://", "ws://", 1),
            api.token
        );

        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(CLIENTS);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let inboxes: Vec<Arc<Mutex<Inbox>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
        let tasks: Vec<_> = inboxes
            .iter()
            .map(|inbox| {
                tokio::spawn(ws_client(
                    ws_url.clone(),
                    inbox.clone(),
                    ready_tx.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        drop(ready_tx);
        for n in 0..CLIENTS {
            tokio::time::timeout(Duration::from_secs(20), ready_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("only {n} of {CLIENTS} clients got their hello"))
                .unwrap_or_else(|| panic!("a client failed after {n} were ready"));
        }

        // Another process, same home, no API of its own: its events reach the clients
        // through `serve` following the store.
        let mut agent_proc = start(
            dir.path(),
            &home,
            MASTER_KEY,
            &["--no-api", &agent("cp_burst.py")],
        );
        let (id, _) = started(&mut agent_proc, false).await;
        let status = agent_proc.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "{}", agent_proc.report());

        let events = api.events(&id).await;
        let kinds = types(&events);
        assert_eq!(of_type(&events, "llm_call").len(), 10, "{kinds:?}");
        assert_eq!(of_type(&events, "tool_call").len(), 2, "{kinds:?}");
        assert_eq!(of_type(&events, "agent_progress").len(), 10, "{kinds:?}");
        // The store's figures for the run, as the dashboard reads them.
        let (status, m) = api.get(&format!("/api/agents/{id}/metrics")).await;
        assert_eq!(status, 200, "{m}");
        assert_eq!(m["progress"]["done"], 10, "{m}");
        assert_eq!(m["progress"]["total"], 10, "{m}");
        assert_eq!(m["progress"]["percent"], 100.0, "{m}");
        assert_eq!(
            (m["llm_calls"].as_i64(), m["tool_calls"].as_i64()),
            (Some(10), Some(2)),
            "{m}"
        );
        assert_eq!(m["success_rate"], 1.0, "{m}");
        assert_eq!(m["pii_findings"], 1, "{m}");
        assert_eq!(m["state"], "completed", "{m}");
        for kind in [
            "agent_started",
            "pii_finding",
            "cost_update",
            "agent_stopped",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "no {kind}: {kinds:?}");
        }
        let sent: HashMap<i64, i64> = events
            .iter()
            .map(|e| {
                (
                    e["id"].as_i64().expect("a stored id"),
                    e["ts_ms"].as_i64().expect("ts_ms"),
                )
            })
            .collect();
        assert_eq!(sent.len(), events.len(), "duplicate ids: {events:?}");

        // Every event is stored by now; give the last ones time to reach every client.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let complete = inboxes.iter().all(|inbox| {
                let got: std::collections::HashSet<i64> =
                    lock(inbox).got.iter().map(|(id, _)| *id).collect();
                sent.keys().all(|id| got.contains(id))
            });
            if complete || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_tx.send(true).unwrap();
        for t in tasks {
            t.await.unwrap();
        }

        let mut max = 0i64;
        let mut failures = Vec::new();
        for (n, inbox) in inboxes.iter().enumerate() {
            let inbox = lock(inbox);
            if inbox.lagged > 0 || !inbox.problems.is_empty() {
                failures.push(format!(
                    "client {n}: lagged {} {:?}",
                    inbox.lagged, inbox.problems
                ));
            }
            let first: HashMap<i64, i64> =
                inbox.got.iter().fold(HashMap::new(), |mut m, (id, at)| {
                    m.entry(*id).or_insert(*at);
                    m
                });
            for (id, ts) in &sent {
                match first.get(id) {
                    None => failures.push(format!("client {n}: event {id} never arrived")),
                    Some(at) => {
                        let latency = at - ts;
                        max = max.max(latency);
                        if latency > 500 {
                            failures.push(format!("client {n}: event {id} after {latency} ms"));
                        }
                    }
                }
            }
        }
        println!(
            "{CLIENTS} clients x {} events: max latency {max} ms",
            sent.len()
        );
        assert!(
            failures.is_empty(),
            "{} failures (max latency {max} ms), first ones: {:#?}",
            failures.len(),
            &failures[..failures.len().min(20)]
        );
    });
}

/// The `call K: TEXT` lines, checked to be numbered 1, 2, 3...
fn calls(lines: &[String]) -> Vec<String> {
    let calls: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("call "))
        .cloned()
        .collect();
    for (i, l) in calls.iter().enumerate() {
        assert!(
            l.starts_with(&format!("call {}: ", i + 1)),
            "line {i} is {l:?}"
        );
    }
    calls
}

#[test]
fn replacing_a_policy_during_a_run_changes_the_next_call_without_failures() {
    const EMAIL: &str = "ada@example.org";
    const REDACTED: &str = "[EMAIL_REDACTED]";
    serial(async {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let stop_file = dir.path().join("stop");
        let mut agent_proc = start(
            dir.path(),
            &home,
            MASTER_KEY,
            &[
                "--listen",
                "127.0.0.1:0",
                &agent("cp_echo_loop.py"),
                "--",
                stop_file.to_str().unwrap(),
            ],
        );
        let (id, base) = started(&mut agent_proc, true).await;
        agent_proc
            .wait_until(Duration::from_secs(20), "three redacted calls", |ls| {
                calls(ls).len() >= 3
            })
            .await;
        let api = Api::login(&base.unwrap()).await;

        let before = calls(&agent_proc.lines()).len();
        let bytes = ironhost::policy::defaults::builtin("pii-redact").expect("built in");
        let (status, body) = api
            .upload_policy("pii-redact.wasm", bytes, r#"{"config":{"mode":"warn"}}"#)
            .await;
        let after = calls(&agent_proc.lines()).len();
        assert_eq!(status, 200, "{body}");
        let names: Vec<&str> = body["policies"]
            .as_array()
            .expect("the chain")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "secrets-inject",
                "circuit-breaker",
                "budget",
                "prompt-guard",
                "pii-redact"
            ],
            "{body}"
        );

        agent_proc
            .wait_until(Duration::from_secs(20), "four calls after the swap", |ls| {
                calls(ls).len() >= after + 5
            })
            .await;
        std::fs::write(&stop_file, b"stop").unwrap();
        let status = agent_proc.wait_exit(Duration::from_secs(15)).await;
        let report = agent_proc.report();
        assert_eq!(status.code(), Some(0), "{report}");

        let lines = calls(&agent_proc.lines());
        let redacted = |l: &String| l.contains(REDACTED) && !l.contains(EMAIL);
        let raw = |l: &String| l.contains(EMAIL) && !l.contains(REDACTED);
        // Finished before the upload was sent: the old chain.
        assert!(lines[..before].iter().all(redacted), "{report}");
        // Started after the upload returned (one call may have been in flight): the new one.
        assert!(lines.len() >= after + 4, "{report}");
        assert!(lines[after + 1..].iter().all(raw), "{report}");
        // One switch, never back.
        let first_raw = lines.iter().position(raw).expect("a raw line");
        assert!(lines[..first_raw].iter().all(redacted), "{report}");
        assert!(lines[first_raw..].iter().all(raw), "{report}");
        println!(
            "{} calls; {before} printed before the upload, {after} when it returned; first unredacted: call {}",
            lines.len(),
            first_raw + 1
        );

        let (_serve, sbase) = serve(dir.path(), &home).await;
        let sapi = Api::login(&sbase).await;
        let events = sapi.events(&id).await;
        let llm = of_type(&events, "llm_call");
        assert_eq!(llm.len(), lines.len(), "{:?}", types(&events));
        for e in &llm {
            assert_eq!(e["outcome"], "ok", "{e}");
        }
        let changed = of_type(&events, "policy_changed");
        assert_eq!(changed.len(), 1, "{:?}", types(&events));
        assert_eq!(changed[0]["policy"], "pii-redact", "{}", changed[0]);
        assert_eq!(changed[0]["action"], "replaced", "{}", changed[0]);
        assert_eq!(changed[0]["actor"], "admin", "{}", changed[0]);
    });
}

#[test]
fn a_wrong_master_key_fails_clearly() {
    serial(async {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let hello = agent("cp_hello.py");

        let mut first = start(dir.path(), &home, MASTER_KEY, &["--no-api", &hello]);
        let status = first.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "{}", first.report());
        assert!(
            first.lines().iter().any(|l| l == "hello from the agent"),
            "{}",
            first.report()
        );

        let mut wrong = start(dir.path(), &home, OTHER_MASTER_KEY, &["--no-api", &hello]);
        let status = wrong.wait_exit(Duration::from_secs(30)).await;
        let report = wrong.report();
        assert_eq!(status.code(), Some(2), "{report}");
        assert!(
            wrong.lines().is_empty(),
            "something started (or printed) anyway:\n{report}"
        );
        let stderr = wrong.stderr();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one clear line expected:\n{stderr}");
        assert!(
            lines[0].starts_with("ironhost: ") && lines[0].contains("master key does not match"),
            "{stderr}"
        );
        assert!(!stderr.contains(OTHER_MASTER_KEY) && !stderr.contains(MASTER_KEY));

        // The wrong key changed nothing: the right one still works.
        let mut again = start(dir.path(), &home, MASTER_KEY, &["--no-api", &hello]);
        let status = again.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "{}", again.report());
    });
}

/// `ironhost ARGS` with `home` and the store at `url` (`IRONHOST_DATABASE_URL`).
fn ironhost_on(dir: &Path, home: &Path, url: &str, args: &[&str]) -> Command {
    let mut c = ironhost(dir, home, MASTER_KEY);
    c.env("IRONHOST_DATABASE_URL", url).args(args);
    c
}

#[test]
fn two_hosts_share_one_postgres_store() {
    serial(async {
        let url = postgres::fresh_database().await;
        let dir = tempfile::tempdir().unwrap();
        let (home_a, home_b) = (dir.path().join("host-a"), dir.path().join("host-b"));
        // Host A runs an agent: three calls, each with an email address (pii-redact audits it).
        let calls = agent("call_loop.py");
        let mut run = Proc::spawn(ironhost_on(
            dir.path(),
            &home_a,
            &url,
            &["start", "--no-api", &calls, "--", "3"],
        ));
        let (id, _) = started(&mut run, false).await;
        let status = run.wait_exit(Duration::from_secs(60)).await;
        assert_eq!(status.code(), Some(0), "{}", run.report());
        assert!(
            run.lines().iter().any(|l| l == "3 calls done"),
            "{}",
            run.report()
        );
        assert!(
            !home_a.join("ironhost.db").exists(),
            "host A made a SQLite store"
        );

        // Host B, with a home of its own, serves the same store: the admin host A created,
        // the agent, its calls and events.
        let mut serve = Proc::spawn(ironhost_on(
            dir.path(),
            &home_b,
            &url,
            &["serve", "--listen", "127.0.0.1:0"],
        ));
        let base = serve
            .wait_prefix("control plane: ", Duration::from_secs(20))
            .await;
        let api = Api::login(base.trim_end_matches('/')).await;
        let (status, record) = api.get(&format!("/api/agents/{id}")).await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["state"], "completed", "{record}");
        let (status, usage) = api.get(&format!("/api/usage/by-agent/{id}")).await;
        assert_eq!(status, 200, "{usage}");
        assert_eq!(usage["totals"]["llm_calls"], 3, "{usage}");
        let events = api.events(&id).await;
        assert_eq!(
            of_type(&events, "llm_call").len(),
            3,
            "{:?}",
            types(&events)
        );
        assert!(
            !of_type(&events, "pii_finding").is_empty(),
            "{:?}",
            types(&events)
        );
        assert!(
            !home_b.join("ironhost.db").exists(),
            "host B made a SQLite store"
        );
        drop(serve);

        // A third home verifies the audit chain host A wrote, PII rows included.
        let out = ironhost_on(
            dir.path(),
            &dir.path().join("host-c"),
            &url,
            &["audit", "verify"],
        )
        .output()
        .expect("ironhost runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(
            stdout.contains("secret_audit_log: 0 rows, chain intact"),
            "{stdout}"
        );
        let pii = stdout
            .lines()
            .find(|l| l.starts_with("pii_audit: "))
            .unwrap_or_default();
        assert!(
            pii.ends_with("rows, chain intact") && !pii.contains(" 0 rows"),
            "{stdout}"
        );
    });
}

#[test]
fn a_bad_database_url_fails_clearly_and_hides_its_password() {
    serial(async {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let hello = agent("cp_hello.py");
        // Refused as written: exit 2, one line naming the variable and the reason.
        for (url, reason) in [
            (
                "mysql://ironhost:hunter2@db/ironhost",
                "the scheme `mysql` is not supported",
            ),
            (
                "postgres://ironhost:hunter2@db:port/ironhost",
                "not a PostgreSQL URL",
            ),
            ("sqlite:", "names no file"),
        ] {
            let mut p = Proc::spawn(ironhost_on(
                dir.path(),
                &home,
                url,
                &["start", "--no-api", &hello],
            ));
            let status = p.wait_exit(Duration::from_secs(30)).await;
            let report = p.report();
            assert_eq!(status.code(), Some(2), "{url}: {report}");
            assert!(p.lines().is_empty(), "something started:\n{report}");
            let stderr = p.stderr();
            assert!(
                stderr.contains("IRONHOST_DATABASE_URL: ") && stderr.contains(reason),
                "{url}: {stderr}"
            );
            assert!(!stderr.contains("hunter2"), "{url}: {stderr}");
        }
        // A server that is not there: exit 1, the URL named with its password masked.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("postgres://ironhost:hunter2@127.0.0.1:{port}/ironhost");
        let mut p = Proc::spawn(ironhost_on(
            dir.path(),
            &home,
            &url,
            &["serve", "--listen", "127.0.0.1:0"],
        ));
        let status = p.wait_exit(Duration::from_secs(60)).await;
        let stderr = p.stderr();
        assert_eq!(status.code(), Some(1), "{}", p.report());
        assert!(
            stderr.contains(&format!(
                "postgres://ironhost:***@127.0.0.1:{port}/ironhost: cannot open the store"
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    });
}

#[test]
fn serve_gives_the_embedded_dashboard_with_no_node_on_the_path() {
    serial(async {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let mut c = ironhost(dir.path(), &home, MASTER_KEY);
        // Nothing to run: not node, not npm (the binary is started by its full path).
        c.env("PATH", dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"]);
        let mut p = Proc::spawn(c);
        let base = p
            .wait_prefix("control plane: ", Duration::from_secs(20))
            .await;
        let base = base.trim_end_matches('/');
        let http = reqwest::Client::new();

        let page = http.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let headers = page.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-cache");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        let html = page.text().await.unwrap();
        let built = std::fs::read_to_string(repo().join("dashboard/dist/index.html"))
            .expect("scripts/setup.sh builds dashboard/dist");
        assert_eq!(html, built, "/ is not the built dashboard");

        // Its script: the built file, byte for byte, cached for good.
        let script = html
            .split("src=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("index.html loads a script");
        assert!(script.starts_with("/assets/index-"), "{script}");
        let js = http.get(format!("{base}{script}")).send().await.unwrap();
        assert_eq!(js.status(), 200);
        assert_eq!(
            js.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            js.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let on_disk = std::fs::read(repo().join("dashboard/dist").join(&script[1..])).unwrap();
        assert_eq!(js.bytes().await.unwrap().as_ref(), on_disk.as_slice());

        // A view's path gets the page; a missing file and an unknown API route do not.
        let view = http.get(format!("{base}/policies")).send().await.unwrap();
        assert_eq!(view.text().await.unwrap(), built);
        let missing = http
            .get(format!("{base}/assets/none.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let api = http
            .get(format!("{base}/api/nothing"))
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 404);
        let body: Value = api.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
        let post = http.post(format!("{base}/")).send().await.unwrap();
        assert_eq!(post.status(), 405);
        drop(p);
    });
}
