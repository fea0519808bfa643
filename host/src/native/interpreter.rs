//! CPython embedded in the host's worker: the `ironhost` package's pure-Python layer (from
//! `python/ironhost/`, compiled into the binary) served to `import` ahead of anything
//! installed, `ironhost._native` filled in, the script run as `__main__`; and the GIL-free
//! waits every native call makes.
//!
//! Waits in native code release the GIL. On the main thread they check for signals every
//! [`POLL`](crate::llm::upstream::POLL), so Ctrl-C or SIGTERM interrupts a call in flight with
//! `KeyboardInterrupt` (and the chain is told the call was abandoned).

use std::ffi::CString;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;

use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

// The pure-Python layer (`python/ironhost/**/*.py`), embedded by the build script as `SOURCES`.
include!(concat!(env!("OUT_DIR"), "/python_sources.rs"));

/// Serves the embedded sources to `import`, ahead of anything installed.
const FINDER: &str = r#"
import importlib.abc, importlib.util, sys

class EmbeddedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, sources):
        self.sources = sources

    def find_spec(self, name, path=None, target=None):
        if name not in self.sources:
            return None
        is_pkg = self.sources[name][0]
        return importlib.util.spec_from_loader(
            name, self, origin="<ironhost>/" + name, is_package=is_pkg)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = self.sources[module.__name__][1]
        exec(compile(source, module.__spec__.origin, "exec"), module.__dict__)

def install(sources):
    sys.meta_path.insert(0, EmbeddedFinder(sources))
"#;

static MAIN_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// This thread is Python's main thread: waits on it let Ctrl-C through.
pub fn mark_main_thread() {
    let _ = MAIN_THREAD.set(std::thread::current().id());
}

fn on_main_thread() -> bool {
    MAIN_THREAD.get() == Some(&std::thread::current().id())
}

/// Run `f` without the GIL; its interrupt asks Python for pending signals (main thread) or
/// looks at the shutdown flag (other threads), and at `stop` (an in-process agent being
/// stopped). Returns the signal handler's exception, if any.
pub(super) fn detached<T: Send>(
    py: Python<'_>,
    stop: Option<&AtomicBool>,
    f: impl FnOnce(&dyn Fn() -> bool) -> T + Send,
) -> (T, Option<PyErr>) {
    let pending: Mutex<Option<PyErr>> = Mutex::new(None);
    let main = on_main_thread();
    let out = py.detach(|| {
        let check = || {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return true;
            }
            if main {
                if let Err(e) = Python::attach(|py| py.check_signals()) {
                    *pending.lock() = Some(e);
                    return true;
                }
                false
            } else {
                crate::agent::status::shutting_down()
            }
        };
        f(&check)
    });
    (out, pending.into_inner())
}

/// Start the interpreter in this thread (which becomes Python's main thread), with
/// `ironhost._native` and the `ironhost` package importable; with `venv`, the virtualenv's
/// packages too.
pub fn start(venv: Option<&std::path::Path>) -> PyResult<()> {
    mark_main_thread();
    Python::initialize();
    Python::attach(|py| {
        let native = PyModule::new(py, "ironhost._native")?;
        super::fill_module(&native)?;
        py.import("sys")?
            .getattr("modules")?
            .set_item("ironhost._native", native)?;
        let sources = PyDict::new(py);
        for &(name, is_pkg, src) in SOURCES {
            sources.set_item(name, (is_pkg, src))?;
        }
        let finder = PyModule::from_code(
            py,
            &CString::new(FINDER).map_err(|e| PyRuntimeError::new_err(e.to_string()))?,
            c"<ironhost-finder>",
            c"_ironhost_finder",
        )?;
        finder.getattr("install")?.call1((sources,))?;
        if let Some(venv) = venv {
            py.import("ironhost._runner")?
                .getattr("use_virtualenv")?
                .call1((venv.to_string_lossy().into_owned(),))?;
        }
        Ok(())
    })
}

/// One-time preparation of the worker's interpreter: signal handlers, SDK keys, HTTP hooks.
/// Returns the HTTP libraries hooked.
pub fn prepare(
    env: &[(String, String)],
    upstreams: &[(String, String)],
    governed_only: bool,
) -> PyResult<Vec<String>> {
    Python::attach(|py| {
        let env = PyDict::from_sequence(&env.to_vec().into_pyobject(py)?)?;
        py.import("ironhost._runner")?
            .getattr("prepare")?
            .call1((env, upstreams.to_vec(), governed_only))?
            .extract()
    })
}

/// Run the script as `__main__`; its exit code.
pub fn run_script(path: &std::path::Path, argv: &[String]) -> PyResult<i32> {
    Python::attach(|py| {
        py.import("ironhost._runner")?
            .getattr("run")?
            .call1((path.to_string_lossy().into_owned(), argv.to_vec()))?
            .extract()
    })
}
/// Set and remove variables in the running agent's `os.environ` (a rotated or deleted
/// secret), from any thread.
pub fn update_environ(set: &[(String, String)], unset: &[String]) -> PyResult<()> {
    Python::attach(|py| {
        let set = PyDict::from_sequence(&set.to_vec().into_pyobject(py)?)?;
        py.import("ironhost._runner")?
            .getattr("update_environ")?
            .call1((set, unset.to_vec()))?;
        Ok(())
    })
}

/// A Python error as text (type and message), for the host's own messages.
pub fn describe(e: &PyErr) -> String {
    Python::attach(|py| e.value(py).to_string())
}
