//! `ironhost:policy@0.1.0`: the generated bindings and their conversions to and from the
//! host's neutral model (`convert`).

wasmtime::component::bindgen!({
    path: "../wit/v0.1.0",
    world: "policy",
    // The chain compares requests to know whether a rewrite changed what a policy saw.
    additional_derives: [PartialEq],
});

mod convert;

/// The version string of this WIT package.
pub const VERSION: &str = "0.1.0";
