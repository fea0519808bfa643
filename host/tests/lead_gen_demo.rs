//! The lead-generation demo (`examples/lead_gen/`) end to end, as the README's first command
//! runs it: `ironhost start agent.py` in its folder, the default bundle, the simulator, the
//! demo's own `ironhost.toml` (plus an alert webhook this test listens on).
//!
//! Ten runs in a row, each in a fresh home, each checked against its store: the triggers fire
//! at leads 34 (LinkedIn rate limit → circuit), 51 (a prompt injection on the company's page →
//! one report), 67 (an email in the model's answer → redacted) and 85 (90% of the budget → one
//! warning); the printed summary matches the recorded calls
//! and events; and the email is nowhere (stdout, log, events, database). Then a run with a
//! lower budget stops with `BudgetExceeded`.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unwrap that fails is a failed test"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

mod common;
use common::{ironhost_in, repo};

const RUNS: usize = 10;
const LEADS: i64 = 100;

fn demo_dir() -> PathBuf {
    repo().join("examples/lead_gen")
}

/// The email address the demo's simulator puts in lead 67's answer (from its config).
fn planted_email() -> String {
    let text = std::fs::read_to_string(demo_dir().join("ironhost.toml")).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    let reply = config["simulator"]["replies"][0]["text"].as_str().unwrap();
    let email = reply
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find(|w| w.contains('@'))
        .expect("the lead 67 reply holds an email address");
    assert!(
        config["simulator"]["replies"][0]["when"]
            .as_str()
            .unwrap()
            .contains("L-067"),
        "the planted reply is for lead 67"
    );
    email.to_owned()
}

/// Anything that looks like an email address.
fn emails_in(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_owned()).collect()
}

/// A minimal HTTP server that keeps every POST it gets: (x-ironhost-event, JSON body).
struct Webhook {
    url: String,
    got: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ironhost", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut event = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = lower.strip_prefix("x-ironhost-event:") {
                        event = v.trim().to_owned();
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(json) = serde_json::from_slice(&body)
                {
                    keep.lock().unwrap().push((event, json));
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Webhook { url, got }
    }

    /// The event types delivered for `agent`, in order.
    fn events_for(&self, agent: &str) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, body)| body["agent_id"] == agent)
            .map(|(kind, body)| {
                assert_eq!(body["type"], kind.as_str(), "header and body agree");
                kind.clone()
            })
            .collect()
    }
}

/// The demo's config with the webhook added, written to `dir`.
fn config_with_webhook(dir: &Path, webhook: &Webhook) -> PathBuf {
    let mut text = std::fs::read_to_string(demo_dir().join("ironhost.toml")).unwrap();
    text.push_str(&format!(
        "\n[[alerts.webhook]]\nurl = \"{}\"\n",
        webhook.url
    ));
    let path = dir.join("ironhost.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `ironhost start agent.py` in the demo's folder, offline, with its own home.
fn run_demo(dir: &Path, config: &Path, flags: &[&str]) -> Output {
    let mut c = ironhost_in(&demo_dir());
    let out_csv = dir.join("qualified_leads.csv");
    c.env("IRONHOST_HOME", dir.join("home"))
        .arg("start")
        .arg("agent.py")
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .args(flags)
        .arg("--")
        .arg("--out")
        .arg(&out_csv);
    c.output().expect("ironhost runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The value of the summary row `label` (`  label   value`); continuation rows are appended.
fn summary_row(stdout: &str, label: &str) -> String {
    let summary = stdout
        .split("== lead generation summary")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let mut lines = summary.lines();
    let mut value = None;
    for line in lines.by_ref() {
        if let Some(rest) = line.trim_start().strip_prefix(label)
            && line.starts_with("  ")
            && rest.starts_with("  ")
        {
            value = Some(rest.trim().to_owned());
            break;
        }
    }
    let mut value = value.unwrap_or_else(|| panic!("no `{label}` row in:\n{summary}"));
    // Continuation rows are indented past the label column and have no label.
    for line in lines {
        let first = line.trim_start();
        if line.len() - first.len() > 4 {
            value.push(' ');
            value.push_str(first);
        } else {
            break;
        }
    }
    value
}

/// Dollar amounts in `text`, in order.
fn dollars(text: &str) -> Vec<f64> {
    let re = regex::Regex::new(r"\$([0-9][0-9,]*\.[0-9]{2})").unwrap();
    re.captures_iter(text)
        .map(|c| c[1].replace(',', "").parse().unwrap())
        .collect()
}

fn close(a: f64, b: f64, tolerance: f64, what: &str) {
    assert!((a - b).abs() <= tolerance, "{what}: {a} vs {b}");
}

/// Nearest rank, the host's rule for every percentile it reports.
fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What the store recorded for one agent.
struct Recorded {
    /// (event type, body, the lead it happened in: 1 + leads finished before it).
    events: Vec<(String, serde_json::Value, i64)>,
    cost_by_model: BTreeMap<String, f64>,
    llm_ok_latencies: Vec<f64>,
    progress: (Option<i64>, Option<i64>),
    pii_audit: Vec<(String, String, String)>,
    run_ms: i64,
    /// (tool, outcome, code) of every LinkedIn lookup, in order.
    linkedin: Vec<(String, Option<String>)>,
    /// The agent's metrics, as the API serves them.
    metrics: serde_json::Value,
}

fn recorded(home: &Path, agent: &str) -> Recorded {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = ironhost::store::Store::open(home).await.unwrap();
        let pool = store.pool();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT type, body FROM events WHERE agent_id = ? ORDER BY id")
                .bind(agent)
                .fetch_all(pool)
                .await
                .unwrap();
        let mut done = 0;
        let mut events = Vec::new();
        for (kind, body) in rows {
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            if kind == "agent_progress" {
                done = body["done"].as_i64().unwrap();
            }
            events.push((kind, body, done + 1));
        }
        let by_model: Vec<(String, f64)> = sqlx::query_as(
            "SELECT model, SUM(cost_usd) FROM calls WHERE agent_id = ? AND kind = 'llm' \
             GROUP BY model",
        )
        .bind(agent)
        .fetch_all(pool)
        .await
        .unwrap();
        let llm_ok_latencies: Vec<f64> = sqlx::query_scalar(
            "SELECT latency_ms FROM calls WHERE agent_id = ? AND kind = 'llm' AND outcome = 'ok'",
        )
        .bind(agent)
        .fetch_all(pool)
        .await
        .unwrap();
        let progress: (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT progress_done, progress_total FROM agents WHERE id = ?")
                .bind(agent)
                .fetch_one(pool)
                .await
                .unwrap();
        let pii_audit: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT pii_type, location, action FROM pii_audit WHERE agent_id = ? ORDER BY id",
        )
        .bind(agent)
        .fetch_all(pool)
        .await
        .unwrap();
        let (started, ended): (i64, Option<i64>) = sqlx::query_as(
            "SELECT started_ms, ended_ms FROM agent_runs WHERE agent_id = ? AND run = 1",
        )
        .bind(agent)
        .fetch_one(pool)
        .await
        .unwrap();
        let linkedin: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT outcome, code FROM calls WHERE agent_id = ? AND tool = 'linkedin_lookup' \
             ORDER BY ts_ms, rowid",
        )
        .bind(agent)
        .fetch_all(pool)
        .await
        .unwrap();
        let record = store.agent(agent).await.unwrap().expect("the agent's row");
        let metrics = serde_json::to_value(store.agent_metrics(&record).await.unwrap()).unwrap();
        pool.close().await;
        Recorded {
            events,
            cost_by_model: by_model.into_iter().collect(),
            llm_ok_latencies,
            progress,
            pii_audit,
            run_ms: ended.unwrap() - started,
            linkedin,
            metrics,
        }
    })
}

impl Recorded {
    /// The leads in which events of `kind` happened.
    fn leads_of(&self, kind: &str) -> Vec<i64> {
        self.events
            .iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, _, lead)| *lead)
            .collect()
    }

    /// The leads of LinkedIn tool calls that ended with `outcome`.
    fn linkedin_leads(&self, outcome: &str) -> Vec<i64> {
        self.events
            .iter()
            .filter(|(k, b, _)| {
                k == "tool_call" && b["tool"] == "linkedin_lookup" && b["outcome"] == outcome
            })
            .map(|(_, _, lead)| *lead)
            .collect()
    }
}

/// Every byte the store keeps on disk for `home`, as text.
fn database_text(home: &Path) -> String {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(home).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("ironhost.db") {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!all.is_empty(), "no database in {}", home.display());
    String::from_utf8_lossy(&all).into_owned()
}

/// Rows of the results CSV: one per lead, each starting with its id.
fn result_rows(csv: &str) -> usize {
    let row = regex::Regex::new(r"^L-\d{3},").unwrap();
    csv.lines().filter(|l| row.is_match(l)).count()
}

fn agent_id(stdout: &str) -> String {
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("agent_id: "))
        .unwrap_or_else(|| panic!("no agent_id line in:\n{stdout}"))
        .to_owned();
    let (prefix, hex) = id.split_once('-').unwrap();
    assert_eq!(
        prefix, "lg",
        "the id is named after the demo's folder: {id}"
    );
    assert!(
        hex.len() == 8 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    id
}

/// Check one default run against its store; `email` must appear nowhere.
fn check_default_run(n: usize, dir: &Path, out: &Output, webhook: &Webhook, email: &str) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "run {n} exit\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let agent = agent_id(&stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("dashboard: http://127.0.0.1:")),
        "run {n}: the dashboard URL is printed"
    );

    // Progress lines: `[HH:MM:SS] 23 / 100 leads | … | $5.29 / $50.00`, in order, cost rising.
    let line = regex::Regex::new(
        r"^\[\d{2}:\d{2}:\d{2}\] (\d+) / 100 leads \| .* \| \$([0-9.,]+) / \$50\.00$",
    )
    .unwrap();
    let progress: Vec<(i64, f64)> = stdout
        .lines()
        .filter_map(|l| line.captures(l))
        .map(|c| {
            (
                c[1].parse().unwrap(),
                c[2].replace(',', "").parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        progress.iter().map(|p| p.0).collect::<Vec<_>>(),
        (1..=LEADS).collect::<Vec<_>>(),
        "run {n}: one progress line per lead"
    );
    assert!(
        progress.windows(2).all(|w| w[0].1 <= w[1].1),
        "run {n}: the running cost never falls"
    );

    let home = dir.join("home");
    let rec = recorded(&home, &agent);

    // Lead 34: LinkedIn starts failing with rate limits; 5 failures open the circuit.
    let errors = rec.linkedin_leads("error");
    assert_eq!(
        errors,
        vec![34, 35, 36, 37, 38],
        "run {n}: rate-limit failures"
    );
    assert_eq!(
        rec.linkedin_leads("ok"),
        (1..=33).collect::<Vec<_>>(),
        "run {n}: live lookups before the limit"
    );
    assert_eq!(
        rec.leads_of("circuit_opened"),
        vec![38],
        "run {n}: the circuit opens on the 5th failure"
    );
    let opened = rec
        .events
        .iter()
        .find(|(k, _, _)| k == "circuit_opened")
        .unwrap();
    assert_eq!(opened.1["detail"]["service"], "tool:linkedin_lookup");
    // One level on both sides: the event is medium (the fallback serves the calls), and the
    // CLI logs medium as WARN, as the dashboard shows it.
    assert_eq!(
        opened.1["severity"], "medium",
        "run {n}: circuit_opened severity"
    );
    assert_eq!(
        stderr
            .matches("WARN circuit opened for tool:linkedin_lookup")
            .count(),
        1,
        "run {n}: the opening is one WARN line in the log\n{stderr}"
    );
    assert!(
        !stderr.contains("ERROR circuit opened"),
        "run {n}: not an error"
    );
    let blocked = rec.linkedin_leads("denied");
    assert_eq!(
        blocked,
        (39..=LEADS).collect::<Vec<_>>(),
        "run {n}: the open circuit blocks every later lookup"
    );
    assert!(
        rec.linkedin
            .iter()
            .filter(|(o, _)| o == "denied")
            .all(|(_, code)| code.as_deref() == Some("circuit_open"))
    );

    // Lead 67: one email in the model's answer, redacted, audited.
    assert_eq!(
        rec.leads_of("pii_finding"),
        vec![67],
        "run {n}: PII findings"
    );
    let finding = rec
        .events
        .iter()
        .find(|(k, _, _)| k == "pii_finding")
        .unwrap();
    assert_eq!(finding.1["detail"]["type"], "email");
    assert_eq!(finding.1["detail"]["action"], "redacted");
    assert_eq!(rec.pii_audit.len(), 1, "run {n}: one audit row");
    assert_eq!(rec.pii_audit[0].0, "email");
    assert!(
        stdout.contains("L-067 the model's answer held personal data")
            && stdout.contains("[EMAIL_REDACTED]"),
        "run {n}: the agent got the redacted answer"
    );

    // Lead 51: its first product page carries a prompt-injection attempt. prompt-guard reports
    // it once, where the crawl's result comes back; the research prompt that then carries the
    // same sentence is not a second report. The store keeps the policy's `prompt.injection`
    // event as a generic `policy` event (type `policy`, `kind` in the body) until the event
    // mapping names it `prompt_injection`; either is accepted.
    let injections: Vec<_> = rec
        .events
        .iter()
        .filter(|(k, b, _)| {
            k == "prompt_injection" || (k == "policy" && b["kind"] == "prompt.injection")
        })
        .collect();
    assert_eq!(
        injections
            .iter()
            .map(|(_, _, lead)| *lead)
            .collect::<Vec<_>>(),
        vec![51],
        "run {n}: prompt-injection findings"
    );
    let detail = &injections[0].1["detail"];
    assert_eq!(detail["location"], "tool-result", "{detail}");
    assert_eq!(detail["action"], "reported");
    assert_eq!(
        detail["patterns"],
        serde_json::json!(["ignore-previous-instructions"])
    );
    assert_eq!(detail["findings"][0]["tool"], "fetch_site");
    assert!(
        !injections[0].1.to_string().contains("tier 1"),
        "run {n}: the injected text is not in the event"
    );

    // Lead 85: spend crosses 90% of $50; one warning, in the log and to the webhook. Which
    // lead is told by the spend the warning carries against the running cost of the progress
    // lines, not by where its event lands among the progress events: a streamed answer reaches
    // the agent before its `on-llm-response` settles it, so on a busy machine the agent may
    // report the lead done before the warning of that lead's last call is published.
    let warnings: Vec<&serde_json::Value> = rec
        .events
        .iter()
        .filter(|(k, _, _)| k == "budget_warning")
        .map(|(_, b, _)| b)
        .collect();
    assert_eq!(warnings.len(), 1, "run {n}: one budget warning");
    let spent = warnings[0]["detail"]["spent_usd"].as_f64().unwrap();
    assert!(
        spent >= 45.0,
        "run {n}: the warning comes at 90% of $50: {spent}"
    );
    let crossed = progress
        .iter()
        .find(|(_, cost)| *cost + 0.005 >= spent)
        .map(|(lead, _)| *lead);
    assert_eq!(
        crossed,
        Some(85),
        "run {n}: the warning's spend (${spent}) is reached in lead 85"
    );
    assert!(
        rec.leads_of("budget_warning")[0] >= 85,
        "run {n}: the warning is not published before its lead"
    );
    assert_eq!(
        stderr.matches("WARN budget warning: ").count(),
        1,
        "run {n}: one warning line in the log"
    );
    let hooks = webhook.events_for(&agent);
    assert_eq!(
        hooks,
        vec!["circuit_opened".to_owned(), "budget_warning".to_owned()],
        "run {n}: webhook deliveries"
    );
    assert!(rec.leads_of("budget_exceeded").is_empty());

    // The summary against the store.
    assert_eq!(rec.progress, (Some(LEADS), Some(LEADS)));
    assert_eq!(summary_row(&stdout, "leads processed"), "100 / 100");
    assert_eq!(summary_row(&stdout, "success rate"), "100% (100/100)");
    // The host's figures per lead: every lead a unit, those whose LinkedIn profile came from
    // the export counted as served by a fallback; the circuit's refusals are not unauthorized.
    let units = &rec.metrics["units"];
    assert_eq!(
        (
            &units["unit"],
            &units["done"],
            &units["ok"],
            &units["failed"]
        ),
        (
            &serde_json::json!("leads"),
            &serde_json::json!(LEADS),
            &serde_json::json!(LEADS),
            &serde_json::json!(0)
        ),
        "run {n}: {units}"
    );
    assert_eq!(
        units["fallback"],
        errors.len() + blocked.len(),
        "run {n}: {units}"
    );
    assert_eq!(units["success_rate"], 1.0);
    assert!(units["per_hour"].as_f64().unwrap() > 0.0, "{units}");
    assert!(units["seconds"]["p95"].as_f64().unwrap() > 0.0, "{units}");
    assert_eq!(rec.metrics["unauthorized"], 0, "run {n}");
    let open_s = rec.metrics["circuit_open_s"].as_f64().unwrap();
    assert!(
        open_s > 0.0 && rec.metrics["uptime_pct"].as_f64().unwrap() < 100.0,
        "run {n}: the circuit stays open from lead 38: {}",
        rec.metrics
    );
    let by_model = summary_row(&stdout, "cost by model");
    let total: f64 = rec.cost_by_model.values().sum();
    for (model, cost) in &rec.cost_by_model {
        let shown = by_model
            .split(", ")
            .find_map(|p| p.strip_prefix(&format!("{model} $")))
            .unwrap_or_else(|| panic!("run {n}: {model} missing from `{by_model}`"));
        close(
            shown.replace(',', "").parse().unwrap(),
            *cost,
            0.006,
            &format!("run {n}: cost of {model}"),
        );
    }
    assert_eq!(
        by_model.split(", ").count(),
        rec.cost_by_model.len(),
        "run {n}: {by_model}"
    );
    let total_row = summary_row(&stdout, "total cost");
    let shown = dollars(&total_row);
    close(shown[0], total, 0.006, "total cost");
    assert_eq!(shown[1], 50.0);
    assert!(
        (45.0..50.0).contains(&total),
        "run {n}: the run ends between the warning and the limit: {total}"
    );
    let avg = dollars(&summary_row(&stdout, "average per lead"))[0];
    close(avg, total / LEADS as f64, 0.006, "average per lead");
    let breaker = summary_row(&stdout, "circuit breaker");
    assert!(
        breaker.contains("rate-limited from lead L-034 (5 errors)"),
        "{breaker}"
    );
    assert!(
        breaker.contains(&format!("{} calls blocked", blocked.len())),
        "{breaker}"
    );
    let fallback = errors.len() + blocked.len();
    assert!(
        breaker.contains(&format!("{fallback} leads via fallback")),
        "{breaker}"
    );
    assert!(
        breaker.contains(&format!(
            "{} calls to the failing API never made",
            blocked.len()
        )),
        "{breaker}"
    );
    assert_eq!(
        summary_row(&stdout, "PII redactions"),
        format!("{} (at lead L-067)", rec.pii_audit.len())
    );
    assert_eq!(
        summary_row(&stdout, "budget warning"),
        "at lead L-085 (spend passed 90%)"
    );
    let latency = summary_row(&stdout, "latency");
    let ms = regex::Regex::new(r"LLM calls p50 (\d+) ms, p95 (\d+) ms").unwrap();
    let c = ms.captures(&latency).unwrap_or_else(|| panic!("{latency}"));
    close(
        c[1].parse().unwrap(),
        percentile(rec.llm_ok_latencies.clone(), 50.0),
        1.0,
        "LLM p50",
    );
    close(
        c[2].parse().unwrap(),
        percentile(rec.llm_ok_latencies.clone(), 95.0),
        1.0,
        "LLM p95",
    );
    // Per lead: the host's counts of the units the agent reported, as the store has them.
    let lead = regex::Regex::new(r"per lead p50 ([0-9.]+) s, p95 ([0-9.]+) s").unwrap();
    let c = lead
        .captures(&latency)
        .unwrap_or_else(|| panic!("{latency}"));
    for (i, p) in [(1, "p50"), (2, "p95")] {
        close(
            c[i].parse().unwrap(),
            units["seconds"][p].as_f64().unwrap(),
            0.005,
            &format!("per lead {p}"),
        );
    }
    let throughput = summary_row(&stdout, "throughput");
    let tp = regex::Regex::new(r"^([0-9,]+) leads/hour \(100 leads in ([0-9.]+) s\)$").unwrap();
    let c = tp
        .captures(&throughput)
        .unwrap_or_else(|| panic!("{throughput}"));
    let per_hour: f64 = c[1].replace(',', "").parse().unwrap();
    let seconds: f64 = c[2].parse().unwrap();
    close(
        per_hour,
        LEADS as f64 / seconds * 3600.0,
        LEADS as f64 / seconds * 3600.0 * 0.01,
        "throughput",
    );
    assert!(
        seconds * 1000.0 <= rec.run_ms as f64,
        "run {n}: the agent's own time ({seconds} s) fits in the recorded run ({} ms)",
        rec.run_ms
    );
    assert!(
        seconds <= 60.0,
        "run {n}: the default run takes at most a minute: {seconds} s"
    );

    // No email, anywhere: stdout, the log, the events, the database files.
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains(email), "run {n}: the email is in {what}");
        assert_eq!(emails_in(text), Vec::<String>::new(), "run {n}: {what}");
    }
    for (kind, body, _) in &rec.events {
        let body = body.to_string();
        assert!(
            !body.contains(email) && emails_in(&body).is_empty(),
            "run {n}: {kind} event holds an email: {body}"
        );
    }
    assert!(
        !database_text(&home).contains(email),
        "run {n}: the email is in the database files"
    );
    let results = std::fs::read_to_string(dir.join("qualified_leads.csv")).unwrap();
    assert!(
        !results.contains(email),
        "run {n}: the email is in the results"
    );
    assert_eq!(result_rows(&results), LEADS as usize);
}

/// One test, so the runs never share the machine's two cores with each other: the demo's
/// figures are deterministic, but hook deadlines are wall-clock time.
#[test]
fn ten_demo_runs_fire_the_triggers_at_34_51_67_85_then_a_lower_budget_stops_it() {
    let email = planted_email();
    let webhook = Webhook::start();
    for n in 1..=RUNS {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_webhook(dir.path(), &webhook);
        let out = run_demo(dir.path(), &config, &[]);
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_default_run(n, dir.path(), &out, &webhook, &email)
        }));
        if let Err(failure) = checked {
            // What a failed check needs to be understood: the host's warnings and errors, the
            // agent's trigger and failure lines, and its summary.
            let stderr = text(&out.stderr);
            let stdout = text(&out.stdout);
            let host: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("deny"))
                .collect();
            let agent: Vec<&str> = stdout
                .lines()
                .filter(|l| {
                    !l.contains(" / 100 leads |")
                        || l.contains("| failed |")
                        || l.contains("refused")
                })
                .collect();
            eprintln!(
                "run {n} failed its checks. The host's warnings, errors and denials:\n{}\nThe agent's other lines:\n{}",
                host.join("\n"),
                agent.join("\n")
            );
            std::panic::resume_unwind(failure);
        }
    }
    check_lower_budget_run(&webhook);
}

/// `--budget 20`: `BudgetExceeded` stops the agent in the lead it cannot pay for.
fn check_lower_budget_run(webhook: &Webhook) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_webhook(dir.path(), webhook);
    let out = run_demo(dir.path(), &config, &["--budget", "20"]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stopped by the budget\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let agent = agent_id(&stdout);
    let rec = recorded(&dir.path().join("home"), &agent);
    let refused = rec.leads_of("budget_exceeded");
    assert_eq!(refused.len(), 1, "one refused call");
    let stopped_at = refused[0];
    let done = rec.progress.0.unwrap();
    assert_eq!(
        done,
        stopped_at - 1,
        "the agent stops in the lead it could not pay for"
    );
    assert!(
        stdout.contains(&format!("stopping at lead L-{stopped_at:03}")),
        "{stdout}"
    );
    assert_eq!(
        summary_row(&stdout, "leads processed"),
        format!("{done} / 100 (stopped by the budget at lead L-{stopped_at:03})")
    );
    let total: f64 = rec.cost_by_model.values().sum();
    assert!(total <= 20.0, "spend stays within the limit: {total}");
    let exceeded = rec
        .events
        .iter()
        .find(|(k, _, _)| k == "budget_exceeded")
        .unwrap();
    let detail = &exceeded.1["detail"];
    assert!(
        detail["committed_usd"].as_f64().unwrap() + detail["estimate_usd"].as_f64().unwrap() > 20.0,
        "refused because the call would pass the limit: {detail}"
    );
    assert_eq!(rec.leads_of("budget_warning").len(), 1);
    assert!(
        webhook
            .events_for(&agent)
            .contains(&"budget_exceeded".to_owned()),
        "the webhook hears about it"
    );
    let results = std::fs::read_to_string(dir.path().join("qualified_leads.csv")).unwrap();
    assert_eq!(
        result_rows(&results),
        done as usize,
        "the results hold the finished leads"
    );
}
