//! The one place the `ironhost:policy` WIT worlds are turned into Rust.
//!
//! Each released WIT version gets its own module here. The host's own types live in
//! [`super::model`]; conversions to and from every version live next to its bindings.

/// Bindings for `ironhost:policy@0.1.0`.
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "policy",
        // The chain compares requests to know whether a rewrite changed what a policy saw.
        additional_derives: [PartialEq],
    });

    /// The version string of this WIT package.
    pub const VERSION: &str = "0.1.0";
}

pub use v0_1_0::ironhost::policy as wit;

/// WIT versions of `ironhost:policy` this host can run, newest last.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &[v0_1_0::VERSION];

/// The WIT version new policies are built against.
pub const CURRENT_WIT_VERSION: &str = v0_1_0::VERSION;
