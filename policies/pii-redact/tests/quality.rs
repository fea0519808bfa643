//! Detection quality on the labelled corpus in `shared/bench/pii/` (presidio-research's
//! synth_dataset_v2), scored as its README says: a predicted span is a true positive when it
//! overlaps a labelled span of the same entity type. This runs the detectors natively; the
//! host's `pii` benchmark runs the compiled component and reports latency inside Wasm. Every
//! type must keep at least 0.98 precision and recall.

use std::collections::BTreeMap;

use pii_redact::detect::{Kind, detect};

fn entity(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Email => "EMAIL_ADDRESS",
        Kind::Phone => "PHONE_NUMBER",
        Kind::CreditCard => "CREDIT_CARD",
        Kind::Iban => "IBAN_CODE",
        Kind::Ssn => "US_SSN",
        Kind::IpAddress => "IP_ADDRESS",
        Kind::Secret => return None,
    })
}

/// The characters `start..end` of `text` (character offsets, as the corpus counts them).
fn char_span(text: &str, start: usize, end: usize) -> &str {
    let byte = |i: usize| text.char_indices().nth(i).map_or(text.len(), |(b, _)| b);
    &text[byte(start)..byte(end)]
}

#[test]
fn precision_and_recall_are_at_least_98_percent_per_entity() {
    // shared/ sits beside the checkout (as in CI); IRONHOST_SHARED points elsewhere.
    let shared = std::env::var("IRONHOST_SHARED")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared").to_owned());
    let path = format!("{shared}/bench/pii/synth_dataset_v2.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (set IRONHOST_SHARED to the shared/ directory)"));
    let samples: Vec<serde_json::Value> = serde_json::from_str(&text).expect("dataset is JSON");
    assert_eq!(samples.len(), 1500);
    // (true positives, false positives, false negatives) per entity.
    let mut score: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
    for sample in &samples {
        let full = sample["full_text"].as_str().expect("full_text");
        // Dataset offsets count characters; detector offsets count bytes.
        let char_at = |byte: usize| full[..byte].chars().count();
        let predicted: Vec<(&str, usize, usize)> = detect(full)
            .into_iter()
            .filter_map(|f| entity(f.kind).map(|e| (e, char_at(f.start), char_at(f.end))))
            .collect();
        let gold: Vec<(&str, usize, usize)> = sample["spans"]
            .as_array()
            .expect("spans")
            .iter()
            .map(|s| {
                (
                    s["entity_type"].as_str().expect("type"),
                    s["start_position"].as_u64().expect("start") as usize,
                    s["end_position"].as_u64().expect("end") as usize,
                )
            })
            .collect();
        let overlaps = |a: &(&str, usize, usize), b: &(&str, usize, usize)| {
            a.0 == b.0 && a.1 < b.2 && b.1 < a.2
        };
        for p in &predicted {
            let entry = score.entry(p.0).or_default();
            if gold.iter().any(|g| overlaps(p, g)) {
                entry.0 += 1;
            } else {
                entry.1 += 1;
                eprintln!("false {}: {:?}", p.0, char_span(full, p.1, p.2));
            }
        }
        for g in gold
            .iter()
            .filter(|g| Kind::ALL.iter().any(|k| entity(*k) == Some(g.0)))
        {
            if !predicted.iter().any(|p| overlaps(p, g)) {
                score.entry(g.0).or_default().2 += 1;
                eprintln!("missed {}: {:?}", g.0, char_span(full, g.1, g.2));
            }
        }
    }
    let mut failures = Vec::new();
    for (entity, (tp, fp, fn_)) in &score {
        let precision = f64::from(*tp) / f64::from((tp + fp).max(1));
        let recall = f64::from(*tp) / f64::from((tp + fn_).max(1));
        eprintln!(
            "{entity:<14} precision {precision:.3} recall {recall:.3} (tp {tp}, fp {fp}, fn {fn_})"
        );
        if precision < 0.98 || recall < 0.98 {
            failures.push(*entity);
        }
    }
    assert_eq!(score.len(), 6, "every entity type was scored");
    assert!(failures.is_empty(), "below 0.98: {failures:?}");
}
