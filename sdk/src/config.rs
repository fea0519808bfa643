//! The policy's configuration (`config` capability): the `config` table of its bundle entry.
//!
//! Declare the shape once and keep it in a static:
//!
//! ```no_run
//! use ironhost_policy::config;
//!
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     #[serde(default)]
//!     limit_usd: f64,
//! }
//!
//! static SETTINGS: config::Cached<Settings> = config::Cached::new();
//!
//! fn limit() -> f64 {
//!     SETTINGS.get().map(|s| s.limit_usd).unwrap_or(0.0)
//! }
//! ```
//! and check the same shape at admission with [`validate`] from `Policy::validate_config`.

use std::sync::OnceLock;

use crate::bindings::ironhost::policy::config as wit;

/// The whole table as a JSON object text. Fetched from the host once per instance: a new
/// configuration always comes with a new instance.
pub fn raw() -> &'static str {
    static RAW: OnceLock<String> = OnceLock::new();
    RAW.get_or_init(wit::get)
}

/// Decode `text` (what `validate_config` receives) into `T`, with a message that names the
/// offending key.
#[cfg(feature = "json")]
pub fn validate<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("config: {e}"))
}

/// The configuration decoded into `T`, once per instance.
#[cfg(feature = "json")]
#[derive(Debug)]
pub struct Cached<T> {
    cell: OnceLock<Result<T, String>>,
}

#[cfg(feature = "json")]
impl<T: serde::de::DeserializeOwned> Cached<T> {
    /// An empty cache, for a `static`.
    pub const fn new() -> Self {
        Cached {
            cell: OnceLock::new(),
        }
    }

    /// The decoded configuration, or why it does not decode (admission's `validate_config`
    /// normally refuses such a configuration before any hook runs).
    pub fn get(&self) -> Result<&T, &str> {
        self.cell
            .get_or_init(|| validate(raw()))
            .as_ref()
            .map_err(String::as_str)
    }
}

#[cfg(feature = "json")]
impl<T: serde::de::DeserializeOwned> Default for Cached<T> {
    fn default() -> Self {
        Self::new()
    }
}
