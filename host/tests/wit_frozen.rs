//! Released WIT versions are frozen: a component built against `ironhost:policy@0.1.0` must
//! keep working with every future host, so not even a comment in `wit/v0.1.0/` may change.
//! A change goes into a new version directory beside it (see wit/README.md).

use sha2::{Digest, Sha256};

#[test]
fn released_wit_files_match_their_recorded_hashes() {
    let wit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    for lock in ["v0.1.0.sha256"] {
        let recorded = std::fs::read_to_string(wit.join(lock)).expect("hash list");
        let mut files = 0;
        for line in recorded.lines().filter(|l| !l.trim().is_empty()) {
            let (hash, name) = line.split_once("  ").expect("`<sha256>  <path>` lines");
            let bytes = std::fs::read(wit.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                hash,
                "wit/{name} changed, but its version is released and frozen: put the change in a new version"
            );
            files += 1;
        }
        let dir = lock.trim_end_matches(".sha256");
        let on_disk = std::fs::read_dir(wit.join(dir))
            .expect("version dir")
            .count();
        assert_eq!(
            files, on_disk,
            "wit/{dir} has files that {lock} does not list"
        );
    }
}
