//! What a component file is, and what it imports and exports.
//!
//! Used by admission and by `ironhost policy check`. The checks run cheapest first so that a
//! wrong file is refused with a precise one-line reason before anything is compiled.

use std::collections::BTreeSet;

use serde::Serialize;
use wasmtime::component::Component;

use super::bindings::SUPPORTED_WIT_VERSIONS;
use crate::model::Capability;

/// The WIT package policies are built against.
pub const PACKAGE: &str = "ironhost:policy";
/// The interface every policy exports.
pub const HOOKS_INTERFACE: &str = "hooks";

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// WASI interfaces a policy may import. The host provides them locked down: no preopened
/// directories, no environment, no arguments, frozen clocks, stdout discarded.
const SANDBOXED_WASI: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// Why a file is not a usable policy component. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("empty file")]
    Empty,
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    #[error(
        "a core WebAssembly module, not a component: build the policy with `--target wasm32-wasip2`"
    )]
    CoreModule,
    #[error("unknown WebAssembly encoding version {0:02x?}")]
    UnknownEncoding([u8; 4]),
    #[error("truncated or malformed component: {0}")]
    Malformed(String),
    #[error("not an ironhost policy: it does not export `{PACKAGE}/{HOOKS_INTERFACE}`")]
    NoHooksExport,
    #[error(
        "built against {PACKAGE}@{found}, which this ironhost does not support (supported: {})",
        SUPPORTED_WIT_VERSIONS.join(", ")
    )]
    UnsupportedWit { found: String },
    #[error("mixes {PACKAGE} versions {0}: build it against one version")]
    MixedWit(String),
    #[error("imports `{name}`: {reason}")]
    ForbiddenImport { name: String, reason: &'static str },
}

/// What a component imports and exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentSummary {
    /// Every top-level import name.
    pub imports: Vec<String>,
    /// Every top-level export name.
    pub exports: Vec<String>,
    /// The `ironhost:policy` version it was built against, if it uses the package at all.
    pub wit_version: Option<String>,
    /// The host capabilities it imports.
    pub capabilities: BTreeSet<Capability>,
    /// The SDK stamp (`ironhost-policy X; ironhost:policy@Y`), if the SDK built it.
    pub sdk: Option<String>,
}

/// Name of the custom section the SDK stamps into every policy.
pub const SDK_STAMP_SECTION: &str = "ironhost-policy-sdk";

/// The SDK stamp of a component, found in any of its modules.
pub fn sdk_stamp(bytes: &[u8]) -> Option<String> {
    use wasmtime::wasmparser::{Parser, Payload};
    Parser::new(0)
        .parse_all(bytes)
        .find_map(|payload| match payload {
            Ok(Payload::CustomSection(section)) if section.name() == SDK_STAMP_SECTION => {
                std::str::from_utf8(section.data())
                    .ok()
                    .map(|s| s.chars().take(200).collect())
            }
            _ => None,
        })
}

/// Check the header and validate the binary. Fast; nothing is compiled.
pub fn check_binary(bytes: &[u8]) -> Result<(), InspectError> {
    if bytes.is_empty() {
        return Err(InspectError::Empty);
    }
    if bytes.len() < 8 {
        return Err(
            if bytes.starts_with(WASM_MAGIC) || WASM_MAGIC.starts_with(bytes) {
                InspectError::Malformed(format!("only {} bytes long", bytes.len()))
            } else {
                InspectError::NotWasm
            },
        );
    }
    if &bytes[..4] != WASM_MAGIC {
        return Err(InspectError::NotWasm);
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[4..8]);
    match version {
        COMPONENT_VERSION => {}
        CORE_MODULE_VERSION => return Err(InspectError::CoreModule),
        other => return Err(InspectError::UnknownEncoding(other)),
    }
    let mut validator = wasmtime::wasmparser::Validator::new_with_features(
        wasmtime::wasmparser::WasmFeatures::all(),
    );
    validator
        .validate_all(bytes)
        .map(|_| ())
        .map_err(|e| InspectError::Malformed(e.to_string()))
}

/// List what a compiled component imports and exports.
pub fn summarize(engine: &wasmtime::Engine, component: &Component) -> ComponentSummary {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let versions: BTreeSet<String> = imports
        .iter()
        .chain(&exports)
        .filter_map(|n| split_name(n).map(|(_, v)| v.to_owned()))
        .collect();
    let capabilities = imports
        .iter()
        .filter_map(|n| split_name(n).and_then(|(iface, _)| Capability::parse(iface)))
        .collect();
    ComponentSummary {
        imports,
        exports,
        wit_version: if versions.len() == 1 {
            versions.into_iter().next()
        } else {
            None
        },
        capabilities,
        sdk: None,
    }
}

/// Check that a component is a policy this host can run: it exports the hooks of a supported
/// WIT version and imports nothing the sandbox does not provide.
pub fn check_policy_surface(summary: &ComponentSummary) -> Result<(), InspectError> {
    let versions: BTreeSet<&str> = summary
        .imports
        .iter()
        .chain(&summary.exports)
        .filter_map(|n| split_name(n).map(|(_, v)| v))
        .collect();
    if versions.len() > 1 {
        return Err(InspectError::MixedWit(
            versions.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    let hooks = summary
        .exports
        .iter()
        .find_map(|n| split_name(n).filter(|(iface, _)| *iface == HOOKS_INTERFACE));
    let Some((_, version)) = hooks else {
        return Err(InspectError::NoHooksExport);
    };
    if !SUPPORTED_WIT_VERSIONS.contains(&version) {
        return Err(InspectError::UnsupportedWit {
            found: version.to_owned(),
        });
    }
    for name in &summary.imports {
        if let Some((iface, _)) = split_name(name) {
            if iface != "types" && Capability::parse(iface).is_none() {
                return Err(InspectError::ForbiddenImport {
                    name: name.clone(),
                    reason: "no such ironhost:policy interface",
                });
            }
            continue;
        }
        if name.starts_with("wasi:sockets/") || name.starts_with("wasi:http/") {
            return Err(InspectError::ForbiddenImport {
                name: name.clone(),
                reason: "policies never get network access",
            });
        }
        if !SANDBOXED_WASI.iter().any(|p| name.starts_with(p)) {
            return Err(InspectError::ForbiddenImport {
                name: name.clone(),
                reason: "ironhost does not provide it to policies",
            });
        }
    }
    Ok(())
}

/// `ironhost:policy/IFACE@VERSION` → `(IFACE, VERSION)`; other packages → `None`.
/// A name without a version counts as version `unversioned`, which no host supports.
fn split_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(match rest.split_once('@') {
        Some((iface, version)) => (iface, version),
        None => (rest, "unversioned"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(imports: &[&str], exports: &[&str]) -> ComponentSummary {
        ComponentSummary {
            imports: imports.iter().map(|s| s.to_string()).collect(),
            exports: exports.iter().map(|s| s.to_string()).collect(),
            wit_version: None,
            capabilities: BTreeSet::new(),
            sdk: None,
        }
    }

    #[test]
    fn header_checks_name_the_problem() {
        assert_eq!(check_binary(b""), Err(InspectError::Empty));
        assert_eq!(check_binary(b"hello world"), Err(InspectError::NotWasm));
        assert_eq!(
            check_binary(b"\0asm\x01\0\0\0"),
            Err(InspectError::CoreModule)
        );
        assert!(matches!(
            check_binary(b"\0asm\x0d\0"),
            Err(InspectError::Malformed(_))
        ));
        assert!(matches!(
            check_binary(b"\0asm\x0d\0\x01\0\x07"),
            Err(InspectError::Malformed(_))
        ));
    }

    #[test]
    fn surface_checks() {
        let hooks = "ironhost:policy/hooks@0.1.0";
        assert_eq!(
            check_policy_surface(&summary(&[], &["x:y/z"])),
            Err(InspectError::NoHooksExport)
        );
        assert_eq!(
            check_policy_surface(&summary(&[], &["ironhost:policy/hooks@0.9.0"])),
            Err(InspectError::UnsupportedWit {
                found: "0.9.0".into()
            })
        );
        assert!(matches!(
            check_policy_surface(&summary(&["ironhost:policy/log@0.9.0"], &[hooks])),
            Err(InspectError::MixedWit(_))
        ));
        assert!(matches!(
            check_policy_surface(&summary(&["wasi:sockets/tcp@0.2.0"], &[hooks])),
            Err(InspectError::ForbiddenImport { .. })
        ));
        assert!(matches!(
            check_policy_surface(&summary(&["acme:db/query"], &[hooks])),
            Err(InspectError::ForbiddenImport { .. })
        ));
        assert_eq!(
            check_policy_surface(&summary(
                &[
                    "wasi:cli/environment@0.2.3",
                    "ironhost:policy/state@0.1.0",
                    "ironhost:policy/types@0.1.0"
                ],
                &[hooks]
            )),
            Ok(())
        );
    }
}
