//! Errors crossing into Python: the gateway's and the host's, as the `ironhost.errors`
//! classes the agent's code catches.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::agent::remote::RemoteError;
use crate::gateway::GatewayError;

pub(super) fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("ironhost.errors")?.getattr(name)
}

/// The Python exception for a gateway error.
pub(super) fn to_py(py: Python<'_>, e: GatewayError, pending: Option<PyErr>) -> PyErr {
    if let Some(p) = pending {
        return p;
    }
    let made = match &e {
        GatewayError::Denied { policy, denial } => error_class(py, "_denial").and_then(|f| {
            f.call1((
                denial.message.clone(),
                denial.code.clone(),
                policy.clone(),
                denial.retry_after_ms.map(|ms| ms as f64 / 1000.0),
            ))
        }),
        GatewayError::Timeout(m) => {
            error_class(py, "_ProviderTimeout").and_then(|c| c.call1((m.clone(),)))
        }
        GatewayError::Connection(m) => {
            error_class(py, "_ProviderUnreachable").and_then(|c| c.call1((m.clone(),)))
        }
        GatewayError::NoKey(m) => {
            error_class(py, "ConfigurationError").and_then(|c| c.call1((m.clone(),)))
        }
        GatewayError::Interrupted => {
            return pyo3::exceptions::PyKeyboardInterrupt::new_err("the call was interrupted");
        }
    };
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// The Python exception for an error from the host.
pub(super) fn remote_to_py(py: Python<'_>, e: RemoteError, pending: Option<PyErr>) -> PyErr {
    match e {
        RemoteError::Gateway(e) => to_py(py, e, pending),
        RemoteError::Host(message) => {
            if let Some(p) = pending {
                return p;
            }
            match error_class(py, "IronhostError").and_then(|c| c.call1((message.clone(),))) {
                Ok(exc) => PyErr::from_value(exc),
                Err(_) => PyRuntimeError::new_err(message),
            }
        }
    }
}

/// An `ironhost.errors` exception of `class` with `message` (a RuntimeError if the package
/// cannot make one).
pub(super) fn error(py: Python<'_>, class: &str, message: String) -> PyErr {
    match error_class(py, class).and_then(|c| c.call1((message.clone(),))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(_) => PyRuntimeError::new_err(message),
    }
}
