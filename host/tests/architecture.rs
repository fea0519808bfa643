//! The host's layers, checked: every top-level module of `host/src` may import only the modules
//! listed for it below (docs/ARCHITECTURE.md explains them), so there is no import circle among
//! them; SQL is written only in `store/`, and Python is bound only in `native/`. A path in a comment or a string does not count, nor
//! does a file's unit-test module (`#[cfg(test)] mod tests` at its end), which may build the
//! layers above to test the one it is in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Who may import whom, bottom to top. A module not in this table fails the test: a new one
/// takes its place in the layers on purpose.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("crypto", &[]),
    ("logging", &[]),
    ("policy", &["model"]),
    ("llm", &["model"]),
    ("events", &["model", "policy"]),
    ("store", &["model", "policy", "events", "crypto"]),
    ("auth", &["crypto"]),
    ("secrets", &["model", "policy", "store", "auth", "crypto"]),
    ("alerts", &["model", "events", "store", "secrets"]),
    ("config", &["model", "policy", "llm", "alerts", "logging"]),
    ("gateway", &["model", "policy", "llm", "events"]),
    (
        "core",
        &[
            "model", "crypto", "logging", "policy", "llm", "events", "alerts", "config", "store",
            "auth", "secrets", "gateway",
        ],
    ),
    (
        "agent",
        &[
            "model", "crypto", "logging", "policy", "llm", "events", "alerts", "config", "store",
            "auth", "secrets", "gateway", "core",
        ],
    ),
    (
        "api",
        &[
            "model", "crypto", "logging", "policy", "llm", "events", "alerts", "config", "store",
            "auth", "secrets", "gateway", "core",
        ],
    ),
    (
        "native",
        &[
            "model", "crypto", "logging", "policy", "llm", "events", "alerts", "config", "store",
            "auth", "secrets", "gateway", "core", "agent", "api",
        ],
    ),
    (
        "cli",
        &[
            "model", "crypto", "logging", "policy", "llm", "events", "alerts", "config", "store",
            "auth", "secrets", "gateway", "core", "agent", "api", "native",
        ],
    ),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("host/src is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs` and `main.rs`).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir()).expect("inside host/src");
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// Rust source with comments, string and char literals blanked out (raw strings included), so
/// only code remains.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // A raw string: r"...", r#"..."#, ...
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            let closing: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&closing) {
                j += 1;
            }
            i = j + closing.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only literals are skipped.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                std::str::from_utf8(&b[i + 1..])
                    .ok()
                    .and_then(|rest| rest.chars().next())
                    .filter(|ch| b.get(i + 1 + ch.len_utf8()) == Some(&b'\''))
                    .map(|ch| i + 1 + ch.len_utf8())
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            // Copy one whole UTF-8 character.
            let len = match c {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            out.push_str(&src[i..(i + len).min(src.len())]);
            i += len;
        }
    }
    out
}

/// `code` up to its unit-test module.
fn without_unit_tests(code: &str) -> &str {
    match code.find("#[cfg(test)]\nmod ") {
        Some(at) => &code[..at],
        None => code,
    }
}

/// The top-level modules `code` names through `crate::`, including groups such as
/// `crate::{a, b::c}`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    names_after(code, "crate::")
}

/// The first names after each `prefix` in `code` (`prefix{a, b::c}` gives both).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices(prefix) {
        if at > 0 {
            let before = code.as_bytes()[at - 1];
            if before.is_ascii_alphanumeric() || before == b'_' {
                continue; // `mycrate::`
            }
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// For every top-level module, the modules it imports and, for each, one file that does.
fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let src = std::fs::read_to_string(&file).expect("source is UTF-8");
        let rel = file
            .strip_prefix(src_dir())
            .expect("inside host/src")
            .display()
            .to_string();
        let entry = graph.entry(module.clone()).or_default();
        for target in crate_imports(without_unit_tests(&code_only(&src))) {
            if target != module {
                entry.entry(target).or_insert_with(|| rel.clone());
            }
        }
    }
    graph
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = LAYERS
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let graph = imports();
    assert!(
        graph.len() >= 15,
        "found only {:?}: the scan of host/src is broken",
        graph.keys()
    );
    let mut problems = Vec::new();
    for (module, targets) in &graph {
        let Some(may) = allowed.get(module.as_str()) else {
            problems.push(format!(
                "`{module}` is not in LAYERS: give it its place in the layers"
            ));
            continue;
        };
        for (target, file) in targets {
            if !may.contains(target.as_str()) {
                problems.push(format!(
                    "{file}: `{module}` imports `crate::{target}`, which is not below it"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_layers_have_no_circle() {
    // Each module may only name modules listed before it, so the table is an order.
    let mut seen = BTreeSet::new();
    for (module, deps) in LAYERS {
        for d in *deps {
            assert!(
                seen.contains(d),
                "`{module}` may import `{d}`, which is not below it in LAYERS"
            );
        }
        seen.insert(*module);
    }
}

#[test]
fn the_agent_runtime_and_the_control_plane_do_not_import_each_other() {
    let graph = imports();
    for (a, b) in [("agent", "api"), ("api", "agent")] {
        let file = graph.get(a).and_then(|t| t.get(b));
        assert!(
            file.is_none(),
            "{} imports `{b}` from `{a}`",
            file.unwrap_or(&String::new())
        );
    }
}

#[test]
fn sql_is_written_only_in_the_store() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let store = src_dir().join("store");
    let outside: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&store))
        .filter(|f| {
            let src = std::fs::read_to_string(f).expect("source is UTF-8");
            without_unit_tests(&code_only(&src)).contains("sqlx")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(outside.is_empty(), "sqlx used outside store/: {outside:?}");
}

/// The names `code` imports through `prefix` (`super::` or `crate::policy::`), including groups.
fn imports_through(code: &str, prefix: &str) -> BTreeSet<String> {
    names_after(code, prefix)
}

/// Inside each top-level directory module, the files (and subdirectories) next to each other:
/// which of them each imports (`super::x` from a file directly in the directory,
/// `crate::<module>::x` from anywhere in it). `mod.rs` may use its children and is left out.
fn sibling_imports() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(src_dir())
        .expect("host/src is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let top = dir
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let rel = file.strip_prefix(&dir).expect("inside its directory");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.len() == 1 && parts[0] == "mod.rs" {
                continue;
            }
            let child = parts[0].trim_end_matches(".rs").to_owned();
            let src = std::fs::read_to_string(file).expect("source is UTF-8");
            let code = code_only(&src);
            let code = without_unit_tests(&code);
            let mut names = imports_through(code, &format!("crate::{top}::"));
            if parts.len() == 1 {
                names.extend(imports_through(code, "super::"));
            }
            names.remove(&child);
            graph.entry(child).or_default().extend(names);
        }
        let known: BTreeSet<String> = graph.keys().cloned().collect();
        for targets in graph.values_mut() {
            targets.retain(|t| known.contains(t));
        }
        out.insert(top, graph);
    }
    out
}

#[test]
fn the_files_inside_each_module_have_no_circle() {
    let mut problems = Vec::new();
    for (top, graph) in sibling_imports() {
        for start in graph.keys() {
            // Depth-first from `start`: reaching it again is a circle.
            let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((at, path)) = stack.pop() {
                for next in graph.get(&at).into_iter().flatten() {
                    if next == start {
                        problems.push(format!("{top}/: {} -> {start}", path.join(" -> ")));
                    } else if seen.insert(next.clone()) {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push((next.clone(), p));
                    }
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn python_is_bound_only_in_native() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let native = src_dir().join("native");
    let outside: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&native))
        .filter(|f| {
            let src = std::fs::read_to_string(f).expect("source is UTF-8");
            code_only(&src).contains("pyo3")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(outside.is_empty(), "pyo3 used outside native/: {outside:?}");
}

#[test]
fn the_scanner_reads_code_not_comments_or_strings() {
    let code = code_only(
        "use crate::a::X; // crate::b\n/* crate::c */ let s = \"crate::d\"; let r = r#\"crate::e\"#;\n\
         let c = '\"'; fn f<'a>(x: &'a str) -> crate::f::Y { crate::{g, h::I} }",
    );
    let found: Vec<String> = crate_imports(&code).into_iter().collect();
    assert_eq!(found, ["a", "f", "g", "h"]);
    let tested =
        code_only("use crate::a::X;\n#[cfg(test)]\nmod tests {\n    use crate::b::Y;\n}\n");
    let found: Vec<String> = crate_imports(without_unit_tests(&tested))
        .into_iter()
        .collect();
    assert_eq!(found, ["a"]);
}
