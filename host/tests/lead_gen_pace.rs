//! The lead-generation demo's `--pace`: the run is spread evenly over the given time (for a
//! live talk), one lead per slot. A separate test binary, so it never shares the machine with
//! the ten timed demo runs of `lead_gen_demo.rs`.

mod common;
use common::{ironhost_in, repo};

#[test]
fn pace_spreads_the_leads_over_the_given_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = ironhost_in(&repo().join("examples/lead_gen"))
        .env("IRONHOST_HOME", dir.path().join("home"))
        .args(["start", "agent.py", "--no-api", "--"])
        .args([
            "--limit",
            "4",
            "--pace",
            "6s",
            "--latency-scale",
            "0",
            "--out",
        ])
        .arg(dir.path().join("out.csv"))
        .output()
        .expect("ironhost runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lead n may finish early but the next starts only at its slot: n * 6 s / 4.
    let seconds: f64 = stdout
        .lines()
        .find_map(|l| l.split("(4 leads in ").nth(1))
        .and_then(|rest| rest.strip_suffix(" s)"))
        .unwrap_or_else(|| panic!("no throughput row in:\n{stdout}"))
        .parse()
        .expect("seconds");
    assert!(
        seconds >= 6.0,
        "4 leads paced over 6 s took only {seconds} s"
    );
    let progress = stdout
        .lines()
        .filter(|l| l.contains(" / 4 leads | "))
        .count();
    assert_eq!(progress, 4, "{stdout}");
}
