//! Builds the default policies (`policies/*`) to wasm32-wasip2 components and embeds them, so
//! `--bundle default` works from the installed binary alone.

#[path = "../build-support/components.rs"]
mod components;

use std::path::PathBuf;

/// Default policy crates under `policies/`; each package is named after its directory.
const POLICIES: &[&str] = &["secrets-inject", "circuit-breaker", "budget", "pii-redact"];

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let workspace = manifest_dir.join("..");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for dir in ["policies", "sdk", "wit", "build-support"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    embed_python_rpath();
    let packages: Vec<String> = POLICIES.iter().map(|p| p.to_string()).collect();
    let files = components::build(&workspace, &out_dir, &packages);
    let mut code = String::from(
        "/// The default policy components: (name, component bytes).\npub const COMPONENTS: &[(&str, &[u8])] = &[\n",
    );
    for (name, file) in POLICIES.iter().zip(files) {
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("default_policies.rs"), code)
        .expect("cannot write default_policies.rs");
}

/// The binary embeds the Python it was built against; find that Python's shared library at run
/// time first, not another libpython of the same version elsewhere on the system (whose
/// standard library and prefix differ).
fn embed_python_rpath() {
    let config = pyo3_build_config::get();
    if let Some(dir) = config.lib_dir() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
