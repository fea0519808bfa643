//! A fleet on one store: `ironhost serve` and several `ironhost start` processes sharing it.
//! A change made through serve (a policy upload, a rollback, a limit, a secret, a stop) reaches
//! the agents of the other processes through the store, with no signal; the fleet view lists
//! every agent's process with its host, pid and heartbeat.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
#[path = "common/plane.rs"]
mod plane;
#[path = "common/postgres.rs"]
mod postgres;
use plane::*;

const EMAIL: &str = "ada@example.org";
const REDACTED: &str = "[EMAIL_REDACTED]";

fn redacted(l: &str) -> bool {
    l.contains(REDACTED) && !l.contains(EMAIL)
}

fn raw(l: &str) -> bool {
    l.contains(EMAIL) && !l.contains(REDACTED)
}

/// The `call K: …` lines an echo agent printed.
fn calls(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with("call "))
        .cloned()
        .collect()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// `ironhost start --agent-id ID cp_echo_loop.py STOP_FILE` (no API of its own).
fn echo_agent(dir: &Path, home: &Path, id: &str) -> Proc {
    let stop = dir.join(format!("{id}.stop"));
    start(
        dir,
        home,
        MASTER_KEY,
        &[
            "--agent-id",
            id,
            &agent("cp_echo_loop.py"),
            "--",
            stop.to_str().expect("a UTF-8 path"),
        ],
    )
}

/// Wait until every agent's next calls satisfy `is`: `n` calls in a row, after `from[i]`.
async fn all_switch(
    agents: &mut [Proc],
    from: &[usize],
    what: &str,
    is: fn(&str) -> bool,
) -> Vec<Duration> {
    let began = Instant::now();
    let mut took = Vec::new();
    for (a, from) in agents.iter_mut().zip(from) {
        a.wait_until(Duration::from_secs(20), what, |ls| {
            let c = calls(ls);
            c.len() > from + 3 && c[c.len() - 3..].iter().all(|l| is(l))
        })
        .await;
        took.push(began.elapsed());
    }
    took
}

/// Once an agent's calls switch, they never switch back: `old*` then `new*` after `from`.
fn switched_once(lines: &[String], from: usize, old: fn(&str) -> bool, new: fn(&str) -> bool) {
    let c = &calls(lines)[from..];
    let first_new = c
        .iter()
        .position(|l| new(l))
        .expect("a call after the change");
    assert!(c[..first_new].iter().all(|l| old(l)), "{c:#?}");
    assert!(c[first_new..].iter().all(|l| new(l)), "{c:#?}");
}

/// The store the processes of a test share.
#[derive(Debug, Clone, Copy)]
enum Db {
    /// `ironhost.db` in their home.
    Sqlite,
    /// A fresh PostgreSQL database (`IRONHOST_DATABASE_URL`).
    Postgres,
}

/// Point the test's processes at `db` until the guard is dropped.
async fn shared_store(db: Db) -> Option<DatabaseGuard> {
    match db {
        Db::Sqlite => None,
        Db::Postgres => Some(use_database(postgres::fresh_database().await)),
    }
}

fn agent_entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|e| e["agent"]["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not in the fleet view: {list}"))
}

#[test]
fn a_change_through_serve_reaches_every_agent_process_through_the_store() {
    a_change_through_serve_reaches_every_agent_process(Db::Sqlite);
}

#[test]
fn a_change_through_serve_reaches_every_agent_process_through_postgres() {
    a_change_through_serve_reaches_every_agent_process(Db::Postgres);
}

fn a_change_through_serve_reaches_every_agent_process(db: Db) {
    serial(async {
        let _db = shared_store(db).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = dir.path().join("home");
        let (_serve, base) = serve(dir.path(), &home).await;
        let api = Api::login(&base).await;
        let ids = ["fleet-a", "fleet-b", "fleet-c"];
        let mut agents: Vec<Proc> = ids
            .iter()
            .map(|id| echo_agent(dir.path(), &home, id))
            .collect();
        for a in &mut agents {
            a.wait_until(Duration::from_secs(30), "two redacted calls", |ls| {
                calls(ls).len() >= 2
            })
            .await;
            assert!(
                calls(&a.lines()).iter().all(|l| redacted(l)),
                "{}",
                a.report()
            );
        }

        // The fleet view: each agent's process, on this machine, alive.
        let (status, list) = api.get("/api/agents").await;
        assert_eq!(status, 200, "{list}");
        for (id, a) in ids.iter().zip(&agents) {
            let e = agent_entry(&list, id);
            assert_eq!(e["host"], host_name(), "{e}");
            assert_eq!(e["pid"], a.pid(), "{e}");
            assert_eq!(e["stale"], false, "{e}");
            let seen = e["last_seen_ms"].as_i64().expect("last seen");
            assert!(now_ms() - seen < 5_000, "{e}");
            assert_eq!(e["processes"].as_array().map(Vec::len), Some(1), "{e}");
            assert_eq!(e["processes"][0]["revision"], 1, "{e}");
        }

        // pii-redact in warn mode, uploaded through serve: every agent's next calls go out
        // unredacted.
        let before: Vec<usize> = agents.iter().map(|a| calls(&a.lines()).len()).collect();
        let bytes = ironhost::policy::defaults::builtin("pii-redact").expect("built in");
        let (status, body) = api
            .upload_policy("anything.wasm", bytes, r#"{"config":{"mode":"warn"}}"#)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["revision"], 2, "{body}");
        let took = all_switch(&mut agents, &before, "unredacted calls", raw).await;
        println!("upload reached the three agents after {took:?}");
        for (a, from) in agents.iter().zip(&before) {
            switched_once(&a.lines(), *from, redacted, raw);
        }

        // Rollback to the first revision: redacted again, everywhere.
        let before: Vec<usize> = agents.iter().map(|a| calls(&a.lines()).len()).collect();
        let (status, body) = api
            .send(
                api.http
                    .post(format!("{}/api/policies/rollback", api.base))
                    .json(&json!({"revision": 1})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["revision"], 3, "{body}");
        let took = all_switch(&mut agents, &before, "redacted calls again", redacted).await;
        println!("rollback reached the three agents after {took:?}");
        for (a, from) in agents.iter().zip(&before) {
            switched_once(&a.lines(), *from, raw, redacted);
        }
        let (_, revisions) = api.get("/api/policies/revisions").await;
        let actions: Vec<(i64, &str, &str)> = revisions["revisions"]
            .as_array()
            .expect("revisions")
            .iter()
            .map(|r| {
                (
                    r["revision"].as_i64().unwrap_or(0),
                    r["source"].as_str().unwrap_or(""),
                    r["action"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                (3, "rollback", "rolled-back"),
                (2, "api", "replaced"),
                (1, "file", "loaded")
            ],
            "{revisions}"
        );
        // Each agent recorded both changes as it applied them.
        for id in ids {
            let changed: Vec<i64> = api
                .events(id)
                .await
                .iter()
                .filter(|e| e["type"] == "policy_changed")
                .filter_map(|e| e["revision"].as_i64())
                .collect();
            assert_eq!(changed, [2, 3], "{id}");
        }

        // A limit set through serve reaches the agent it names.
        let (status, body) = api
            .send(
                api.http
                    .post(format!("{}/api/limits", api.base))
                    .json(&json!({"agent_id": "fleet-c", "limit_usd": 7.5})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, a) = api.get("/api/agents/fleet-c").await;
            if a["budget_usd"] == 7.5 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the limit never reached fleet-c: {a}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A stop through serve stops the agent in its own process, as SIGTERM would.
        let (status, body) = api.post("/api/agents/fleet-a/stop").await;
        assert_eq!(status, 202, "{body}");
        let exit = agents[0].wait_exit(Duration::from_secs(15)).await;
        assert_eq!(exit.code(), Some(143), "{}", agents[0].report());
        let (_, a) = api.get("/api/agents/fleet-a").await;
        assert_eq!(a["state"], "stopped", "{a}");
        assert!(a["processes"][0]["ended_ms"].is_i64(), "{a}");

        // kill -9: the process never says it ended; the fleet view marks it stale.
        let victim = agents[1].pid();
        let _ = std::process::Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status();
        agents[1].wait_exit(Duration::from_secs(10)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, list) = api.get("/api/agents").await;
            let b = agent_entry(&list, "fleet-b");
            if b["stale"] == true {
                assert_eq!(b["processes"][0]["running"], true, "{b}");
                break;
            }
            assert!(Instant::now() < deadline, "fleet-b never went stale: {b}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        std::fs::write(dir.path().join("fleet-c.stop"), b"stop").expect("the stop file");
        let exit = agents[2].wait_exit(Duration::from_secs(15)).await;
        assert_eq!(exit.code(), Some(0), "{}", agents[2].report());
    });
}

#[test]
fn a_secret_set_through_serve_reaches_an_agent_in_another_process() {
    a_secret_set_through_serve_reaches_an_agent(Db::Sqlite);
}

#[test]
fn a_secret_set_through_serve_reaches_an_agent_in_another_process_through_postgres() {
    a_secret_set_through_serve_reaches_an_agent(Db::Postgres);
}

fn a_secret_set_through_serve_reaches_an_agent(db: Db) {
    const V1: &str = "fleet-tok-1-93ab";
    const V2: &str = "fleet-tok-2-c7d1";
    serial(async {
        let _db = shared_store(db).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = dir.path().join("home");
        let (_serve, base) = serve(dir.path(), &home).await;
        let api = Api::login(&base).await;
        let (status, body) = api
            .put_json("/api/secrets/demo-token", json!({"value": V1}))
            .await;
        assert_eq!(status, 201, "{body}");
        let bundle = inject_bundle(dir.path());
        let mut watcher = start(
            dir.path(),
            &home,
            MASTER_KEY,
            &[
                "--bundle",
                bundle.to_str().expect("a UTF-8 path"),
                &agent("cp_secret_watch.py"),
            ],
        );
        watcher
            .wait_prefix(&format!("token: {V1}"), Duration::from_secs(30))
            .await;
        let (status, body) = api
            .put_json("/api/secrets/demo-token", json!({"value": V2}))
            .await;
        assert_eq!(status, 200, "{body}");
        watcher
            .wait_prefix(&format!("token: {V2}"), Duration::from_secs(10))
            .await;
        let exit = watcher.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(exit.code(), Some(0), "{}", watcher.report());
    });
}
