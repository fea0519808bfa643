//! Snapshot tests of bundle manifest errors: every `ui/bundles/NAME.toml` must fail to parse
//! with exactly the message in `ui/bundles/NAME.err`. Set `IRONHOST_BLESS=1` to rewrite the
//! expected files after an intended change, then review the diff.

use std::path::Path;

use ironhost::policy::bundle::Bundle;

#[test]
fn bundle_errors_match_their_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/bundles");
    let bless = std::env::var_os("IRONHOST_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("ui dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "snapshot cases missing");
    let mut mismatches = Vec::new();
    for case in cases {
        let name = case
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&case).expect("readable");
        let shown = Path::new("bundle").join(&name);
        let err = match Bundle::parse(&text, Path::new("bundle"), &shown) {
            Ok(_) => panic!("{name}: parsed, but it is an error case"),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = case.with_extension("err");
        if bless {
            std::fs::write(&expected_path, &err).expect("write snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != err {
            mismatches.push(format!(
                "{name}:\n  expected: {expected:?}\n  actual:   {err:?}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
