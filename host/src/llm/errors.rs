//! The one mapping between HTTP and provider errors: a status's class ([`error_kind`]), the
//! status that reports an error ([`status_of`]), which errors are worth another attempt
//! ([`retryable`]), the wait a provider asked for ([`retry_after_ms`]), and an error read from
//! a provider's body ([`from_body`]).

use serde_json::Value;

use crate::model::{ProviderError, ProviderErrorKind};

/// The class of a failed call with this HTTP status.
pub fn error_kind(status: u16) -> ProviderErrorKind {
    match status {
        429 => ProviderErrorKind::RateLimited,
        401 | 403 => ProviderErrorKind::Authentication,
        408 | 504 => ProviderErrorKind::Timeout,
        400..=499 => ProviderErrorKind::InvalidRequest,
        500..=599 => ProviderErrorKind::ServerError,
        _ => ProviderErrorKind::Other,
    }
}

/// The HTTP status that reports `error` to an agent.
pub fn status_of(error: &ProviderError) -> u16 {
    if let Some(s) = error.status {
        return s;
    }
    match error.kind {
        ProviderErrorKind::RateLimited => 429,
        ProviderErrorKind::ServerError => 500,
        ProviderErrorKind::Timeout => 504,
        ProviderErrorKind::Connection => 502,
        ProviderErrorKind::InvalidRequest => 400,
        ProviderErrorKind::Authentication => 401,
        ProviderErrorKind::Other => 500,
    }
}

/// Whether a failed call may succeed when tried again.
pub fn retryable(error: &ProviderError) -> bool {
    matches!(
        error.kind,
        ProviderErrorKind::RateLimited
            | ProviderErrorKind::ServerError
            | ProviderErrorKind::Timeout
            | ProviderErrorKind::Connection
    )
}

/// The wait a provider asked for: `retry-after-ms` (OpenAI) or `retry-after` in seconds.
pub fn retry_after_ms<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<u64> {
    let mut secs = None;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("retry-after-ms") {
            if let Ok(ms) = v.trim().parse::<f64>() {
                return Some(ms.max(0.0) as u64);
            }
        } else if k.eq_ignore_ascii_case("retry-after")
            && let Ok(s) = v.trim().parse::<f64>()
        {
            secs = Some((s.max(0.0) * 1000.0) as u64);
        }
    }
    secs
}

/// A provider error from its status, body (`{"error": {"message": ...}}` in both providers'
/// shapes, else the body's first 500 characters) and `Retry-After`.
pub fn from_body(status: u16, body: &[u8], retry_after_ms: Option<u64>) -> ProviderError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    ProviderError {
        kind: error_kind(status),
        status: Some(status),
        message,
        retry_after_ms,
    }
}
