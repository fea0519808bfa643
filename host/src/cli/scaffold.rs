//! `ironhost policy new NAME`: a buildable policy crate, from the installed binary alone.
//!
//! The SDK (its sources and the WIT it was built against) is embedded in the binary and
//! written into the new crate as `vendor/ironhost-policy`, so the crate builds without this
//! repository and keeps building after the host is upgraded.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::policy::bundle::validate_name;

/// The SDK's files, relative to its crate root.
const SDK_FILES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("src/config.rs", include_str!("../../../sdk/src/config.rs")),
    ("src/events.rs", include_str!("../../../sdk/src/events.rs")),
    ("src/log.rs", include_str!("../../../sdk/src/log.rs")),
    (
        "src/secrets.rs",
        include_str!("../../../sdk/src/secrets.rs"),
    ),
    ("src/state.rs", include_str!("../../../sdk/src/state.rs")),
    ("src/text.rs", include_str!("../../../sdk/src/text.rs")),
    ("src/tokens.rs", include_str!("../../../sdk/src/tokens.rs")),
    (
        "wit/types.wit",
        include_str!("../../../wit/v0.1.0/types.wit"),
    ),
    ("wit/host.wit", include_str!("../../../wit/v0.1.0/host.wit")),
    (
        "wit/policy.wit",
        include_str!("../../../wit/v0.1.0/policy.wit"),
    ),
];

const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

fn sdk_manifest() -> String {
    format!(
        r#"[package]
name = "ironhost-policy"
version = "{SDK_VERSION}"
edition = "2024"
description = "Write ironhost policy components in Rust (vendored by `ironhost policy new`)"
license = "Apache-2.0"

[features]
default = ["json"]
json = ["dep:serde", "dep:serde_json"]

[dependencies]
wit-bindgen = {{ version = "0.61.1", default-features = false, features = ["macros", "realloc", "std"] }}
serde = {{ version = "1", features = ["derive"], optional = true }}
serde_json = {{ version = "1", optional = true }}
"#
    )
}

fn policy_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
ironhost-policy = {{ path = "vendor/ironhost-policy" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A policy crate is a workspace of its own, even when created inside another project.
[workspace]
"#
    )
}

fn policy_source(name: &str) -> String {
    format!(
        r#"//! `{name}`: denies LLM requests that mention a banned word (from the config).
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! Check: `ironhost policy check target/wasm32-wasip2/release/{file}.wasm`
//! Try:   `ironhost policy run --bundle bundle --hook llm-request --input inputs/requests.jsonl`

use ironhost_policy::events::{{self, Severity}};
use ironhost_policy::types::*;
use ironhost_policy::{{Policy, config, text}};

/// The `[policy.config]` table of this policy's bundle entry.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {{
    /// Words that must not reach the model (matched case-insensitively).
    banned: Vec<String>,
}}

static SETTINGS: config::Cached<Settings> = config::Cached::new();

struct Guard;

impl Policy for Guard {{
    fn describe() -> PolicyInfo {{
        ironhost_policy::info("{name}", env!("CARGO_PKG_VERSION"), "Denies requests that mention a banned word")
            .hooks(&[Hook::LlmRequest])
            .capabilities(&[Capability::Config, Capability::Events])
            .build()
    }}

    fn validate_config(config: String) -> Result<(), String> {{
        let settings: Settings = config::validate(&config)?;
        if settings.banned.iter().any(|w| w.trim().is_empty()) {{
            return Err("`banned` must not contain empty words".to_owned());
        }}
        Ok(())
    }}

    fn on_llm_request(_ctx: CallContext, request: LlmRequest) -> RequestVerdict {{
        let Ok(settings) = SETTINGS.get() else {{
            return RequestVerdict::Deny(ironhost_policy::deny("bad_config", "policy config is invalid"));
        }};
        for part in text::request_texts(&request) {{
            let lower = part.to_lowercase();
            if let Some(word) = settings.banned.iter().find(|w| lower.contains(&w.to_lowercase())) {{
                // Never the word itself in an event: a keyed fingerprint of it.
                let detail = serde_json::json!({{"fingerprint": events::fingerprint(word)}});
                events::emit("{name}.blocked", Severity::Medium, &detail);
                return RequestVerdict::Deny(ironhost_policy::deny("banned_word", "the request mentions a banned word"));
            }}
        }}
        RequestVerdict::Pass
    }}
}}

ironhost_policy::export_policy!(Guard);
"#,
        file = name.replace('-', "_")
    )
}

fn bundle_manifest(name: &str) -> String {
    format!(
        r#"# A bundle with just this policy. Copy the [[policy]] table into your own bundle to use it.
[bundle]
name = "{name}-dev"

[[policy]]
component = "../target/wasm32-wasip2/release/{file}.wasm"
capabilities = ["config", "events"]
failure-mode = "fail-closed"
[policy.config]
banned = ["DROP TABLE", "rm -rf"]
"#,
        file = name.replace('-', "_")
    )
}

const SAMPLE_INPUT: &str = r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarise this page"}]}
{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "then DROP TABLE users"}]}
"#;

fn readme(name: &str) -> String {
    format!(
        "# {name}\n\nAn ironhost policy. Build, check and try it:\n\n```sh\nrustup target add wasm32-wasip2   # once\ncargo build --release --target wasm32-wasip2\nironhost policy check target/wasm32-wasip2/release/{file}.wasm\nironhost policy run --bundle bundle --hook llm-request --input inputs/requests.jsonl\n```\n\nThen copy the `[[policy]]` table of `bundle/bundle.toml` into the bundle your host runs.\n`vendor/ironhost-policy` is the SDK (WIT `ironhost:policy@0.1.0`) this crate was created with.\n",
        file = name.replace('-', "_")
    )
}

/// Create the crate `NAME` in `parent`. Returns its directory.
pub fn new_policy(name: &str, parent: &Path) -> Result<PathBuf, CliError> {
    validate_name(name).map_err(CliError::input)?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(CliError::input(format!(
            "{}: already exists; choose another name or directory",
            dir.display()
        )));
    }
    // Build everything in a temporary sibling and rename it into place, so a failure never
    // leaves half a crate behind.
    let staging = parent.join(format!(".{name}.new-{}", std::process::id()));
    let result = write_crate(&staging, name).and_then(|()| {
        std::fs::rename(&staging, &dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))
    });
    if let Err(message) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(CliError::failure(message));
    }
    Ok(dir)
}

fn write_crate(root: &Path, name: &str) -> Result<(), String> {
    let mut files: Vec<(PathBuf, String)> = vec![
        (root.join("Cargo.toml"), policy_manifest(name)),
        (root.join("src/lib.rs"), policy_source(name)),
        (root.join("bundle/bundle.toml"), bundle_manifest(name)),
        (root.join("inputs/requests.jsonl"), SAMPLE_INPUT.to_owned()),
        (root.join("README.md"), readme(name)),
        (root.join(".gitignore"), "/target\n".to_owned()),
        (
            root.join("vendor/ironhost-policy/Cargo.toml"),
            sdk_manifest(),
        ),
    ];
    for (path, content) in SDK_FILES {
        files.push((
            root.join("vendor/ironhost-policy").join(path),
            (*content).to_owned(),
        ));
    }
    for (path, content) in files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        }
        std::fs::write(&path, content)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(())
}
