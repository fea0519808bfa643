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
    /// SQLite: the home's `ironhost.db` ([`shared_store`]), or one file beside the homes
    /// ([`fleet_store`]).
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
        let dir = tempfile::tempdir().expect("a temporary directory");
        // One serve and three hosts, each with a home of its own, on one store.
        let (_url, _db) = fleet_store(db, dir.path()).await;
        let (_serve, base) = serve(dir.path(), &dir.path().join("serve")).await;
        let api = Api::login(&base).await;
        let ids = ["fleet-a", "fleet-b", "fleet-c"];
        let mut agents: Vec<Proc> = ids
            .iter()
            .map(|id| echo_agent(dir.path(), &dir.path().join(id), id))
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

/// The store every host of a test shares, each host with a home of its own: a SQLite file
/// beside their homes, or a fresh PostgreSQL database. Its URL, and the guard that points the
/// test's processes at it.
async fn fleet_store(db: Db, dir: &Path) -> (String, DatabaseGuard) {
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.join("fleet.db").display()),
        Db::Postgres => postgres::fresh_database().await,
    };
    (url.clone(), use_database(url))
}

/// `ironhost start --agent-id ID --budget USD --no-api SCRIPT` as a host of its own: its own
/// home (`dir/NAME`), the test's store.
fn host(dir: &Path, name: &str, id: &str, budget: &str, script: &str) -> Proc {
    let home = dir.join(name);
    start(
        dir,
        &home,
        MASTER_KEY,
        &[
            "--agent-id",
            id,
            "--budget",
            budget,
            "--no-api",
            &agent(script),
        ],
    )
}

/// What the store recorded that `agent` spent, in USD.
async fn spent(api: &Api, agent: &str) -> f64 {
    let (status, usage) = api.get(&format!("/api/usage/by-agent/{agent}")).await;
    assert_eq!(status, 200, "{usage}");
    usage["totals"]["cost_usd"].as_f64().expect("a cost")
}

/// The budget leases the store holds on `agent`'s counters: (holder, granted, expires ms).
async fn leases(url: &str, agent: &str) -> Vec<(String, i64, i64)> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url)
        .await
        .expect("the test's store");
    let rows = sqlx::query(
        "SELECT holder, granted, expires_ms FROM budget_leases WHERE agent = $1 ORDER BY holder",
    )
    .bind(agent)
    .fetch_all(&mut conn)
    .await
    .expect("the leases");
    let _ = conn.close().await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// A limit of $0.50 shared by one agent on three hosts: each host leases a twentieth of it at
/// a time.
const SHARED_LIMIT: f64 = 0.5;
const SHARED_LEASE: f64 = SHARED_LIMIT / 20.0;

#[test]
fn one_budget_shared_by_three_hosts_is_never_overspent_by_more_than_a_lease_each() {
    one_budget_shared_by_three_hosts(Db::Sqlite);
}

#[test]
fn one_budget_shared_by_three_hosts_on_postgres_is_never_overspent_by_more_than_a_lease_each() {
    one_budget_shared_by_three_hosts(Db::Postgres);
}

fn one_budget_shared_by_three_hosts(db: Db) {
    serial(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (url, _db) = fleet_store(db, dir.path()).await;
        let (_serve, base) = serve(dir.path(), &dir.path().join("serve")).await;
        let api = Api::login(&base).await;
        // Three hosts run the same agent, 16 calls at a time each, until the budget refuses.
        let budget = SHARED_LIMIT.to_string();
        let mut hosts: Vec<Proc> = (1..=3)
            .map(|i| {
                host(
                    dir.path(),
                    &format!("host-{i}"),
                    "shared-spend",
                    &budget,
                    "fleet_spender.py",
                )
            })
            .collect();
        let mut calls = 0;
        for h in &mut hosts {
            let status = h.wait_exit(Duration::from_secs(240)).await;
            assert_eq!(status.code(), Some(0), "{}", h.report());
            let line = h
                .lines()
                .into_iter()
                .find(|l| l.starts_with("spent "))
                .unwrap_or_else(|| panic!("no summary\n{}", h.report()));
            assert!(line.ends_with("refused 16"), "{line}");
            calls += line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a count");
        }
        let spent = spent(&api, "shared-spend").await;
        println!("three hosts made {calls} calls for ${spent:.4} of ${SHARED_LIMIT}");
        assert!(
            spent <= SHARED_LIMIT + 3.0 * SHARED_LEASE,
            "${spent} spent of ${SHARED_LIMIT}"
        );
        // The budget was spent, not stranded in leases: refusals came at its end.
        assert!(
            spent >= 0.8 * SHARED_LIMIT,
            "only ${spent} of ${SHARED_LIMIT}"
        );
        // Each host gave its lease back as it ended.
        assert_eq!(leases(&url, "shared-spend").await, []);
        let (_, a) = api.get("/api/agents/shared-spend").await;
        let hosts_seen: Vec<&Value> = a["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .collect();
        assert_eq!(hosts_seen.len(), 3, "{a}");
        assert!(hosts_seen.iter().all(|p| p["ended_ms"].is_i64()), "{a}");
    });
}

#[test]
fn a_host_killed_outright_gives_its_budget_lease_back_when_it_expires() {
    a_killed_host_gives_its_lease_back(Db::Sqlite);
}

#[test]
fn a_host_killed_outright_on_postgres_gives_its_budget_lease_back_when_it_expires() {
    a_killed_host_gives_its_lease_back(Db::Postgres);
}

fn a_killed_host_gives_its_lease_back(db: Db) {
    serial(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (url, _db) = fleet_store(db, dir.path()).await;
        let (_serve, base) = serve(dir.path(), &dir.path().join("serve")).await;
        let api = Api::login(&base).await;
        let budget = SHARED_LIMIT.to_string();
        let mut first = host(dir.path(), "host-1", "lease-kill", &budget, "cp_loop.py");
        first
            .wait_until(Duration::from_secs(30), "three calls", |ls| {
                ls.iter().any(|l| l == "call 3 done")
            })
            .await;
        let held = leases(&url, "lease-kill").await;
        assert_eq!(held.len(), 1, "{held:?}");
        let (holder, granted, _) = held[0].clone();
        assert!(granted > 0, "{held:?}");
        let _ = std::process::Command::new("kill")
            .args(["-9", &first.pid().to_string()])
            .status();
        first.wait_exit(Duration::from_secs(10)).await;
        // The lease outlives the process: nobody gave it back.
        let after_kill = leases(&url, "lease-kill").await;
        assert_eq!(
            after_kill.first().map(|l| &l.0),
            Some(&holder),
            "{after_kill:?}"
        );
        let expires = after_kill[0].2;
        let wait = expires - now_ms() + 200;
        assert!(wait > 0, "the lease had expired already: {after_kill:?}");
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        // A host starting after the expiry may lease what the dead one held: it spends the
        // budget to its end, and the expired lease is gone.
        let mut second = host(
            dir.path(),
            "host-2",
            "lease-kill",
            &budget,
            "fleet_spender.py",
        );
        let status = second.wait_exit(Duration::from_secs(240)).await;
        assert_eq!(status.code(), Some(0), "{}", second.report());
        assert_eq!(leases(&url, "lease-kill").await, []);
        let spent = spent(&api, "lease-kill").await;
        assert!(
            spent <= SHARED_LIMIT + 2.0 * SHARED_LEASE,
            "${spent} spent of ${SHARED_LIMIT}"
        );
        assert!(
            spent >= 0.8 * SHARED_LIMIT,
            "only ${spent} of ${SHARED_LIMIT}"
        );
    });
}
