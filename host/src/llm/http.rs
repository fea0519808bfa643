//! The real providers over HTTPS (reqwest + rustls). One attempt per [`HttpUpstream::send`];
//! the gateway decides about retries, so every attempt passes the chain.

use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;

use super::sse::SseParser;
use super::upstream::{Egress, EventStream, Interrupt, Upstream, UpstreamReply, WaitError, recv};
use super::upstreams::Format;
use crate::model::{ProviderError, ProviderErrorKind};

/// `[llm.openai]` / `[llm.anthropic]` in `ironhost.toml`: where the built-in upstreams'
/// requests are sent (the agent still addresses api.openai.com / api.anthropic.com).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProviderConfig {
    /// Scheme, host and optional prefix; the agent's request path is appended.
    pub base_url: String,
}

/// Headers the host sets itself (or that describe the agent's connection, not the request).
const HOP_HEADERS: [&str; 10] = [
    "host",
    "content-type",
    "content-length",
    "authorization",
    "x-api-key",
    "api-key",
    "accept-encoding",
    "connection",
    "transfer-encoding",
    "keep-alive",
];

/// A client for the real provider APIs.
#[derive(Debug)]
pub struct HttpUpstream {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// Longest gap between two events of a stream.
    idle: Duration,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTPS client: {0}")]
pub struct HttpSetupError(String);

impl HttpUpstream {
    pub fn new(
        runtime: tokio::runtime::Handle,
        idle: Duration,
    ) -> Result<HttpUpstream, HttpSetupError> {
        // One process-wide TLS provider; a second install attempt is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("ironhost/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HttpSetupError(e.to_string()))?;
        Ok(HttpUpstream {
            client,
            runtime,
            idle,
        })
    }

    /// Send one attempt; waits for the status and headers (and for a non-stream, the body).
    pub fn send(
        &self,
        egress: Egress<'_>,
        timeout: Duration,
        interrupt: Interrupt<'_>,
    ) -> UpstreamReply {
        let url = format!("{}{}", egress.base, egress.path);
        let mut req = self.client.post(url).timeout(timeout);
        for (k, v) in egress.headers {
            if !HOP_HEADERS.iter().any(|h| k.eq_ignore_ascii_case(h)) {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        if let Some(key) = egress.key {
            req = match egress.format {
                Format::Anthropic => req.header("x-api-key", key),
                Format::AzureOpenai => req.header("api-key", key),
                Format::Openai => req.bearer_auth(key),
            };
        }
        req = req
            .header("content-type", "application/json")
            .header("accept-encoding", "identity")
            .body(egress.body);
        let stream = egress.stream;
        let (tx, rx) = mpsc::channel::<UpstreamReply>();
        let idle = self.idle;
        let task = self.runtime.spawn(async move {
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(UpstreamReply::Failed(transport_error(&e)));
                    return;
                }
            };
            let status = resp.status().as_u16();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            if stream && status == 200 {
                let (etx, erx) = mpsc::channel();
                if tx
                    .send(UpstreamReply::Stream {
                        headers,
                        events: EventStream::Live { rx: erx, idle },
                    })
                    .is_err()
                {
                    return;
                }
                let mut parser = SseParser::default();
                let mut body = resp.bytes_stream();
                while let Some(chunk) = body.next().await {
                    match chunk {
                        Ok(bytes) => {
                            for ev in parser.feed(&bytes) {
                                if etx.send(Ok(ev)).is_err() {
                                    return; // the agent stopped reading
                                }
                            }
                        }
                        Err(e) => {
                            let _ = etx.send(Err(transport_error(&e)));
                            return;
                        }
                    }
                }
                if let Some(ev) = parser.finish() {
                    let _ = etx.send(Ok(ev));
                }
                return;
            }
            let reply = match resp.bytes().await {
                Ok(body) => UpstreamReply::Body {
                    status,
                    headers,
                    body: body.to_vec(),
                },
                Err(e) => UpstreamReply::Failed(transport_error(&e)),
            };
            let _ = tx.send(reply);
        });
        // The task enforces `timeout`; the extra second only covers scheduling.
        match recv(&rx, timeout + Duration::from_secs(1), interrupt) {
            Ok(reply) => reply,
            Err(WaitError::Interrupted) => {
                task.abort();
                UpstreamReply::Interrupted
            }
            Err(WaitError::Timeout | WaitError::Closed) => {
                task.abort();
                UpstreamReply::Failed(ProviderError {
                    kind: ProviderErrorKind::Timeout,
                    status: None,
                    message: format!("no answer within {} ms", timeout.as_millis()),
                    retry_after_ms: None,
                })
            }
        }
    }
}

fn transport_error(e: &reqwest::Error) -> ProviderError {
    let kind = if e.is_timeout() {
        ProviderErrorKind::Timeout
    } else {
        ProviderErrorKind::Connection
    };
    // reqwest's message names the URL, never a header, so no key can leak through it.
    ProviderError {
        kind,
        status: None,
        message: e.to_string(),
        retry_after_ms: None,
    }
}

impl Upstream for HttpUpstream {
    fn send(
        &self,
        egress: Egress<'_>,
        timeout: Duration,
        interrupt: Interrupt<'_>,
    ) -> UpstreamReply {
        HttpUpstream::send(self, egress, timeout, interrupt)
    }
}
