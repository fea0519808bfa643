//! `ironhost._native` as a Python extension module: the host library (engine, default bundle,
//! simulator, store) linked into the package `pip install ./python` builds. The module is the
//! one `ironhost start` builds into its own interpreter ([`ironhost::native::fill_module`]).

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    ironhost::native::init_extension(m)
}
