//! The default bundle and its components, built into the binary.

use std::path::Path;

use super::bundle::{Bundle, BundleError};

include!(concat!(env!("OUT_DIR"), "/default_policies.rs"));

/// `policies/bundles/default.toml`.
pub const DEFAULT_BUNDLE: &str = include_str!("../../../policies/bundles/default.toml");

/// The name that selects the default bundle (`--bundle default`).
pub const DEFAULT_BUNDLE_NAME: &str = "default";

/// The bytes of built-in component `name`.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    COMPONENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of the built-in components.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    COMPONENTS.iter().map(|(n, _)| *n)
}

/// The default bundle.
pub fn default_bundle() -> Result<Bundle, BundleError> {
    Bundle::parse(
        DEFAULT_BUNDLE,
        Path::new("<builtin>"),
        Path::new("<builtin>/default.toml"),
    )
}
