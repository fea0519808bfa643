//! The web dashboard (`dashboard/`, Vue): its built files are embedded in the binary by
//! `build.rs` and served here, outside `/api` and `/ws`. No Node.js is needed at run time.
//!
//! `/` and any path without a file extension get `index.html` (the dashboard routes in the
//! page); hashed files under `/assets/` are cached for good, `index.html` never. Text files are
//! served as the Brotli or gzip copy the dashboard's build made of them (`FILE.br`, `FILE.gz`)
//! when the request accepts that encoding: nothing is compressed at run time.

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
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

/// Whether an `Accept-Encoding` value accepts `coding`: its own entry decides, else `*`'s; an
/// entry with `q=0` refuses.
fn accepts(accept: &str, coding: &str) -> bool {
    let weight = |name: &str| {
        accept.split(',').find_map(|item| {
            let mut parts = item.split(';');
            if !parts.next().unwrap_or("").trim().eq_ignore_ascii_case(name) {
                return None;
            }
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").map(str::trim))
                .map_or(Some(1.0), |q| q.parse::<f32>().ok());
            Some(q.unwrap_or(0.0))
        })
    };
    weight(coding)
        .or_else(|| weight("*"))
        .is_some_and(|q| q > 0.0)
}

/// The stored copy of `file` in the best encoding the request accepts: `(bytes, encoding)`.
fn encoded(file: &str, headers: &HeaderMap) -> Option<(&'static [u8], &'static str)> {
    let accept = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    [("br", ".br"), ("gzip", ".gz")]
        .into_iter()
        .filter(|(coding, _)| accepts(accept, coding))
        .find_map(|(coding, ext)| find(&format!("{file}{ext}")).map(|b| (b, coding)))
}

/// `GET` of anything outside `/api` and `/ws`.
pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || path == "/api" {
        return super::error::not_found(uri).await.into_response();
    }
    let is_page = path == "/" || !path.rsplit('/').next().unwrap_or("").contains('.');
    let file = if is_page { "/index.html" } else { path };
    let Some(plain) = find(file) else {
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
    let (bytes, encoding) = match encoded(file, &headers) {
        Some((b, coding)) => (b, Some(coding)),
        None => (plain, None),
    };
    let mut res = if file.ends_with(".html") {
        page(StatusCode::OK, bytes, cache)
    } else {
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
    };
    if find(&format!("{file}.br")).is_some() || find(&format!("{file}.gz")).is_some() {
        res.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(coding) = encoding {
        res.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
    }
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

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(accepts("gzip, deflate, br, zstd", "br"));
        assert!(accepts("gzip;q=1.0, br;q=0.5", "br"));
        assert!(accepts("*", "gzip"));
        assert!(accepts("GZIP", "gzip"));
        assert!(!accepts("gzip, br;q=0", "br"));
        assert!(!accepts("identity", "gzip"));
        assert!(!accepts("", "gzip"));
        assert!(!accepts("*, gzip;q=0", "gzip"));
        assert!(accepts("*;q=0.1, gzip;q=0", "br"));
        assert!(!accepts("br;q=zero", "br"));
    }
}
