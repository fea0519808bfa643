//! The web dashboard (`dashboard/`, Vue): its built files are embedded in the binary by
//! `build.rs` and served here, outside `/api` and `/ws`. No Node.js is needed at run time.
//!
//! `/` and any path without a file extension get `index.html` (the dashboard routes in the
//! page); hashed files under `/assets/` are cached for good, `index.html` never.

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// What `/` serves when the binary was built without `dashboard/dist`.
const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>ironhost</title>\
<p>This ironhost binary was built without the dashboard. Run <code>scripts/build-dashboard.sh</code> \
(or <code>scripts/setup.sh</code>) and build again. The API is at <a href=/api/health>/api/health</a>.";

/// Content security policy of the dashboard: its own scripts and the control plane only.
/// (CSP level 3: `'self'` covers the WebSocket to the same host and port.)
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn find(path: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") | Some("map") => "application/json",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET` of anything outside `/api` and `/ws`.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || path == "/api" {
        return super::error::not_found(uri).await.into_response();
    }
    let is_page = path == "/" || !path.rsplit('/').next().unwrap_or("").contains('.');
    let (file, bytes) = if is_page {
        ("/index.html", find("/index.html"))
    } else {
        (path, find(path))
    };
    let Some(bytes) = bytes else {
        if is_page {
            return page(StatusCode::OK, NOT_BUILT.as_bytes(), "no-cache");
        }
        let mut res = (StatusCode::NOT_FOUND, "no such file").into_response();
        res.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return res;
    };
    let cache = if file.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    if file.ends_with(".html") {
        return page(StatusCode::OK, bytes, cache);
    }
    let mut res = bytes.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(file)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

fn page(status: StatusCode, bytes: &'static [u8], cache: &'static str) -> Response {
    let mut res = (status, bytes).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type("/assets/index-1a2b.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("/assets/index-1a2b.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type("/favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("/blob"), "application/octet-stream");
    }
}
