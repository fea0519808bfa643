//! Native timing of the detectors on the gateway bench's prompt (2 KB of plain prose, see
//! `host/benches/gateway.rs`), on prose with a few values in it, and on the prompt streamed.
//! Run with `cargo run --release -p pii-redact --example prose [runs] [case number]`.

use std::hint::black_box;
use std::time::Instant;

use pii_redact::detect::scan;
use pii_redact::{Settings, stream_step};

/// The gateway bench's system and user texts for call `n`.
fn gateway_texts(n: u64) -> [String; 2] {
    let system = "You are a research assistant for a sales team. Answer briefly and cite sources. ";
    let mut user = String::new();
    while user.len() < 2048 - system.len() {
        user.push_str("Find the head of engineering at Acme Robotics and summarise their talks. ");
    }
    user.truncate(2048 - system.len() - 24);
    user.push_str(&format!(" (lead {n:>12})."));
    [system.to_owned(), user]
}

/// About 2 KB of prose with a few numbers, an email and a phone number in it.
fn prose_with_values() -> String {
    let paragraph = "In 2023 the team shipped 14 robots to 3 customers in 5 countries; the \
        largest order, number 48213, left on 12 March. Ask jane.doe@acme-robotics.com or call \
        +1 415 555 2671 for the schedule. Version 2.4.1 fixed 17 issues, and the office at \
        370 Fourth Ave opens at 9. ";
    let mut text = String::new();
    while text.len() < 2048 {
        text.push_str(paragraph);
    }
    text.truncate(2048);
    text
}

/// Stream `text` (ASCII) in chunks of `size` bytes as the policy's `on-llm-chunk` does; the
/// number of findings.
fn stream(settings: &Settings, text: &str, size: usize) -> usize {
    let mut held = String::new();
    let mut found = 0;
    let mut chunks = text.as_bytes().chunks(size).peekable();
    while let Some(chunk) = chunks.next() {
        let combined = held + std::str::from_utf8(chunk).expect("ASCII");
        let (cut, findings) = stream_step(settings, &combined, chunks.peek().is_none());
        found += findings.len();
        held = combined[cut..].to_owned();
    }
    found
}

/// Median and 99th percentile of `f`'s time, in µs, over `runs` runs.
fn time(runs: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    let mut samples: Vec<f64> = (0..runs)
        .map(|k| {
            let t = Instant::now();
            f(k);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[runs / 2], samples[runs * 99 / 100])
}

/// A case: its name, and one run of it given the run's number (returning the findings, so
/// nothing is optimised away).
type Case<'a> = (&'a str, Box<dyn Fn(usize) -> usize + 'a>);

fn main() {
    let runs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    // An optional second argument picks one case by its number (for a profiler).
    let only: Option<usize> = std::env::args().nth(2).and_then(|a| a.parse().ok());
    let gateway: Vec<[String; 2]> = (0..1024).map(gateway_texts).collect();
    let values = prose_with_values();
    let no_digit = gateway[0][1].replace(|c: char| c.is_ascii_digit(), "x");
    let settings = Settings::default();
    let cases: [Case<'_>; 4] = [
        (
            "gateway prompt (system + user, 2 KB)",
            Box::new(|k| {
                let [system, user] = &gateway[k % gateway.len()];
                scan(black_box(system)).findings.len() + scan(black_box(user)).findings.len()
            }),
        ),
        (
            "the same prose, no digit",
            Box::new(|_| scan(black_box(&no_digit)).findings.len()),
        ),
        (
            "2 KB prose with numbers, an email, a phone",
            Box::new(|_| scan(black_box(&values)).findings.len()),
        ),
        (
            "gateway prompt streamed, 16-byte chunks",
            Box::new(|k| stream(&settings, black_box(&gateway[k % gateway.len()][1]), 16)),
        ),
    ];
    for (n, (name, f)) in cases.iter().enumerate() {
        if only.is_some_and(|o| o != n) {
            continue;
        }
        // The stream case is a hundred times longer: fewer runs.
        let runs = if n == 3 { runs / 100 } else { runs };
        let mut found = 0;
        time(runs / 10, |k| found += f(k));
        let (p50, p99) = time(runs, |k| found += f(k));
        println!("{name:45} p50 {p50:7.2} µs  p99 {p99:7.2} µs  ({found} findings)");
    }
}
