//! The policy engine: WIT bindings, bundles, admission, the hook chain and the host capabilities.
//!
//! Reading order: [`bundle`] (the bundle.toml manifest) → [`engine`] (wasmtime setup and the
//! compile cache) → [`inspect`] (what a component imports and exports) → [`admission`]
//! (checks before a policy goes live) → [`instance`] (calling one policy under limits) →
//! [`chain`] (running a hook across the bundle, hot swap).

pub mod admission;
pub mod bindings;
pub mod bundle;
pub mod chain;
pub mod defaults;
pub mod engine;
pub mod host;
pub mod inspect;
pub mod instance;
pub mod manifest;
pub mod meter;
pub mod sandbox;
pub mod state;

pub use crate::model::Capability;
pub use admission::{AdmissionError, AdmittedPolicy, admit_bundle, admit_policy};
pub use bundle::{Bundle, BundleError, FailureMode, PolicyEntry};
pub use chain::{Chain, ChainRun, PolicyReport};
pub use engine::{EngineError, EngineOptions, PolicyEngine};
