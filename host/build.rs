//! Builds the default policies (`policies/*`) to wasm32-wasip2 components and embeds them, so
//! `--bundle default` works from the installed binary alone.

#[path = "../build-support/components.rs"]
mod components;

use std::path::PathBuf;

/// Default policy crates under `policies/`; each package is named after its directory.
const POLICIES: &[&str] = &[
    "secrets-inject",
    "circuit-breaker",
    "budget",
    "prompt-guard",
    "pii-redact",
];

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
    embed_dashboard(&workspace, &out_dir);
    embed_python_package(&workspace, &out_dir);
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

/// Embed the dashboard's built assets (`dashboard/dist`, made by `scripts/build-dashboard.sh`)
/// as `(url path, bytes)` pairs, so the binary serves the dashboard with no Node.js at run time.
/// Without a build, the list is empty and the control plane says how to make one.
fn embed_dashboard(workspace: &std::path::Path, out_dir: &std::path::Path) {
    let dist = workspace.join("dashboard").join("dist");
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        collect_files(&dist, &mut files);
        files.sort();
    } else {
        // Watch the folder the build will appear in (a missing path would rerun every build).
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join("dashboard").display()
        );
        println!(
            "cargo:warning=dashboard/dist is missing: this binary serves no dashboard (run scripts/build-dashboard.sh, then build again)"
        );
    }
    let mut code = String::from(
        "/// The dashboard's built files: (URL path, bytes).\npub const ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for file in files {
        let rel = file
            .strip_prefix(&dist)
            .expect("collected under dist")
            .to_string_lossy()
            .replace('\\', "/");
        code.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            format!("/{rel}"),
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("dashboard_assets.rs"), code)
        .expect("cannot write dashboard_assets.rs");
}

/// Embed the pure-Python layer of the `ironhost` package (`python/ironhost/**/*.py`) as
/// `(module name, is package, source)`, for the interpreter `ironhost start` runs.
fn embed_python_package(workspace: &std::path::Path, out_dir: &std::path::Path) {
    let root = workspace.join("python").join("ironhost");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect_files(&root, &mut files);
    files.retain(|f| f.extension().is_some_and(|e| e == "py"));
    files.sort();
    let mut code = String::from(
        "/// The `ironhost` package's Python modules: (module name, is package, source).\npub const SOURCES: &[(&str, bool, &str)] = &[\n",
    );
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .expect("collected under python/ironhost");
        let mut parts: Vec<String> = std::iter::once("ironhost".to_owned())
            .chain(rel.iter().map(|p| p.to_string_lossy().into_owned()))
            .collect();
        let last = parts.pop().expect("a file name");
        let is_pkg = last == "__init__.py";
        if !is_pkg {
            parts.push(last.trim_end_matches(".py").to_owned());
        }
        code.push_str(&format!(
            "    ({:?}, {is_pkg}, include_str!({:?})),\n",
            parts.join("."),
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("python_sources.rs"), code)
        .expect("cannot write python_sources.rs");
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("cannot read a directory to embed");
    for entry in entries {
        let path = entry.expect("cannot read a directory to embed").path();
        if path.file_name().is_some_and(|n| n == "__pycache__") {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}
