//! One LLM call, end to end ([`Gateway::handle`]): the request routed, then attempts until one
//! ends the call (the chain's `on-llm-request`, the key and upstream, the send, the chain's
//! `on-llm-response`; a provider failure is retried with backoff). The attempts return how the
//! call ended ([`Ending`]); `handle` records a finished call in one place, or hands the record
//! to the [`StreamReply`] a stream goes on in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::report::{CallRecord, Trail, describe};
use super::route::Routed;
use super::stream::{StreamReply, StreamStart};
use super::{Gateway, GatewayError, GatewayReply, HttpRequest, json_headers};
use crate::events::CallOutcome;
use crate::llm::api::Api;
use crate::llm::errors::{retry_after_ms, retryable};
use crate::llm::sse::SseEvent;
use crate::llm::upstream::{Egress, Interrupt, UpstreamReply, sleep};
use crate::llm::wire::ParsedRequest;
use crate::model::{
    CallContext, Denial, Hook, LlmOutcome, LlmRequest, LlmResponse, ProviderError,
    ProviderErrorKind, Usage,
};
use crate::policy::chain::Outcome;

/// How a call ended, as the attempts hand it back to [`Gateway::handle`].
enum Ending {
    /// The call is over: it is recorded with these figures, then the agent gets the reply.
    Finished(Finished),
    /// The provider started a stream: the call goes on in a [`StreamReply`], which records
    /// it when the stream ends.
    Streaming(StreamStart),
}

/// A call that is over: what [`Gateway::finish`] records, and the agent's reply.
struct Finished {
    outcome: CallOutcome,
    /// The provider's HTTP status, when there is one to report.
    status: Option<u16>,
    /// The denial's code, when a policy denied the call.
    code: Option<String>,
    /// The usage the provider reported.
    usage: Option<Usage>,
    /// Responses API: the id the reply's body is kept under for `GET /v1/responses/{id}`,
    /// once the call is recorded.
    keep_as: Option<String>,
    reply: Result<GatewayReply, GatewayError>,
}

impl Ending {
    fn finished(
        outcome: CallOutcome,
        status: Option<u16>,
        usage: Option<Usage>,
        reply: Result<GatewayReply, GatewayError>,
    ) -> Ending {
        Ending::Finished(Finished {
            outcome,
            status,
            code: None,
            usage,
            keep_as: None,
            reply,
        })
    }

    /// `policy` denied the call.
    fn denied(status: Option<u16>, usage: Option<Usage>, policy: String, denial: Denial) -> Ending {
        Ending::Finished(Finished {
            outcome: CallOutcome::Denied,
            status,
            code: Some(denial.code.clone()),
            usage,
            keep_as: None,
            reply: Err(GatewayError::Denied { policy, denial }),
        })
    }
}

/// What one attempt came to.
enum Tried {
    /// The call ended (answered, denied, cancelled, or a stream started).
    Ended(Ending),
    /// The provider failed: the chain hears of it, then the host retries or reports it.
    Failed(Failure),
}

/// A provider failure, with the attempt it ended.
struct Failure {
    ctx: CallContext,
    request: LlmRequest,
    error: ProviderError,
    /// The provider's error answer, when it gave one.
    answer: Option<HttpAnswer>,
}

/// A complete HTTP answer from the provider.
struct HttpAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Gateway {
    /// Handle one HTTP request from an SDK.
    pub fn handle(
        self: &Arc<Self>,
        req: HttpRequest,
        interrupt: Interrupt<'_>,
    ) -> Result<GatewayReply, GatewayError> {
        let started = Instant::now();
        let routed = match self.routed(req, started) {
            Ok(routed) => routed,
            // Refused (and recorded as such), or a GET the host answered itself.
            Err(reply) => return Ok(reply),
        };
        // The store's backpressure: a call starts only when the records of earlier ones can be
        // kept (returns at once unless the store is far behind).
        self.bus.wait_for_room(interrupt);
        let call_id = self.next_call_id("llm");
        if routed.api.provider() == "openai" {
            self.count_long_prompt(&routed.parsed.request);
        }
        let mut trail = Trail::default();
        let mut call = CallRecord {
            call_id,
            api: routed.api,
            reason: None,
            provider: routed.endpoint.name.clone(),
            model: routed.parsed.request.model.clone(),
            stream: routed.parsed.request.stream,
            simulated: true,
            attempts: 0,
            started,
        };
        match self.attempts(&routed, &mut call, &mut trail, interrupt) {
            Ending::Finished(end) => {
                self.finish(
                    &call,
                    trail,
                    end.outcome,
                    end.status,
                    end.code.as_deref(),
                    end.usage,
                );
                if let (Some(id), Ok(GatewayReply::Full { body, .. })) = (&end.keep_as, &end.reply)
                {
                    self.remember(id, body);
                }
                end.reply
            }
            Ending::Streaming(start) => Ok(GatewayReply::Stream(Box::new(StreamReply::new(
                self.clone(),
                start,
                call,
                trail,
            )))),
        }
    }

    /// Attempts until one ends the call; a provider failure is passed to the chain, then
    /// retried (after a backoff) while it is retryable and retries are left.
    fn attempts(
        &self,
        routed: &Routed<'_>,
        call: &mut CallRecord,
        trail: &mut Trail,
        interrupt: Interrupt<'_>,
    ) -> Ending {
        let api = routed.api;
        let mut attempt = 0;
        loop {
            call.attempts = attempt + 1;
            let Failure {
                ctx,
                request,
                error,
                answer,
            } = match self.attempt(routed, attempt, call, trail, interrupt) {
                Tried::Ended(ending) => return ending,
                Tried::Failed(failure) => failure,
            };
            // The provider failed: the chain sees it (a circuit breaker counts it, a policy may
            // answer instead), then the host retries or reports it.
            let run = self
                .chain
                .on_llm_response(&ctx, request, LlmOutcome::Error(error.clone()));
            trail.absorb(Hook::LlmResponse, &run);
            match run.outcome {
                Outcome::Continue {
                    value: LlmOutcome::Ok(answer),
                } => {
                    let reply = render_answer(api, &routed.parsed, &answer);
                    return Ending::finished(CallOutcome::Fallback, None, None, Ok(reply));
                }
                Outcome::Deny { policy, denial } => {
                    return Ending::denied(error.status, None, policy, denial);
                }
                _ => {}
            }
            if retryable(&error) && attempt < self.options.max_retries {
                let wait = self.backoff(attempt, error.retry_after_ms);
                tracing::warn!(
                    "{} {} failed ({}); retry {} of {} in {} ms",
                    call.provider,
                    call.model,
                    describe(&error),
                    attempt + 1,
                    self.options.max_retries,
                    wait.as_millis()
                );
                if !sleep(wait, interrupt) {
                    return Ending::finished(
                        CallOutcome::Cancelled,
                        error.status,
                        None,
                        Err(GatewayError::Interrupted),
                    );
                }
                attempt += 1;
                continue;
            }
            call.reason = Some(error.message.clone());
            let status = error.status;
            return Ending::finished(CallOutcome::Error, status, None, failure(error, answer));
        }
    }

    /// One attempt: the chain's `on-llm-request`, the upstream and key, the send, and for a
    /// complete answer the chain's `on-llm-response`.
    fn attempt(
        &self,
        routed: &Routed<'_>,
        attempt: u32,
        call: &mut CallRecord,
        trail: &mut Trail,
        interrupt: Interrupt<'_>,
    ) -> Tried {
        let Routed {
            endpoint,
            api,
            rest,
            req,
            parsed,
        } = routed;
        let api = *api;
        let ctx = self.context(&call.call_id, attempt);
        let run = self.chain.on_llm_request(&ctx, parsed.request.clone());
        trail.absorb(Hook::LlmRequest, &run);
        let request = match run.outcome {
            Outcome::Continue { value } => value,
            Outcome::Deny { policy, denial } => {
                return Tried::Ended(Ending::denied(None, None, policy, denial));
            }
            Outcome::Respond { response, .. } => {
                let reply = render_answer(api, parsed, &response);
                return Tried::Ended(Ending::finished(
                    CallOutcome::Fallback,
                    None,
                    None,
                    Ok(reply),
                ));
            }
            Outcome::Fallback { policy, .. } => {
                let denial = Denial {
                    code: "invalid_verdict".to_owned(),
                    message: "a tool fallback cannot answer an LLM call".to_owned(),
                    retry_after_ms: None,
                };
                return Tried::Ended(Ending::denied(None, None, policy, denial));
            }
        };
        // The record names the model actually sent, and is priced by it.
        call.model.clone_from(&request.model);
        let (upstream, key) = match self.route(endpoint, &request, &req.headers) {
            Ok(r) => r,
            Err(e) => {
                self.abandon(&ctx, &request, "no_provider_key", &e.to_string(), trail);
                return Tried::Ended(Ending::finished(CallOutcome::Error, None, None, Err(e)));
            }
        };
        call.simulated = upstream.is_simulator();
        // Unchanged requests leave byte for byte; OpenAI streams must also ask for usage.
        // (The credential is the host's business: naming one changes nothing on the wire.)
        let verbatim = same_on_wire(&request, &parsed.request)
            && (!request.stream || api.provider() == "anthropic" || parsed.wants_stream_usage);
        let body = if verbatim {
            req.body.clone()
        } else {
            api.render_request(parsed, &request)
        };
        let egress = Egress {
            api,
            base: &endpoint.send_to,
            format: endpoint.format,
            path: rest,
            headers: &req.headers,
            body,
            stream: request.stream,
            key: key.as_deref(),
        };
        match upstream.send(egress, self.options.timeout, interrupt) {
            UpstreamReply::Interrupted => {
                self.abandon(
                    &ctx,
                    &request,
                    "cancelled",
                    "the agent stopped waiting",
                    trail,
                );
                Tried::Ended(Ending::finished(
                    CallOutcome::Cancelled,
                    None,
                    None,
                    Err(GatewayError::Interrupted),
                ))
            }
            UpstreamReply::Stream { headers, events } => {
                Tried::Ended(Ending::Streaming(StreamStart {
                    ctx,
                    request,
                    headers: answer_headers(headers),
                    events,
                    wants_usage: parsed.wants_stream_usage,
                }))
            }
            UpstreamReply::Body {
                status,
                headers,
                body,
            } if (200..300).contains(&status) => {
                let answer = HttpAnswer {
                    status,
                    headers,
                    body,
                };
                Tried::Ended(self.answered(&ctx, request, answer, call, trail))
            }
            UpstreamReply::Body {
                status,
                headers,
                body,
            } => Tried::Failed(Failure {
                error: error_of_status(api, status, &headers, &body),
                ctx,
                request,
                answer: Some(HttpAnswer {
                    status,
                    headers,
                    body,
                }),
            }),
            UpstreamReply::Failed(error) => Tried::Failed(Failure {
                ctx,
                request,
                error,
                answer: None,
            }),
        }
    }

    /// A `2xx` answer: through the chain's `on-llm-response`, re-rendered if a policy changed
    /// it.
    fn answered(
        &self,
        ctx: &CallContext,
        request: LlmRequest,
        answer: HttpAnswer,
        call: &mut CallRecord,
        trail: &mut Trail,
    ) -> Ending {
        let api = call.api;
        let HttpAnswer {
            status,
            headers,
            body,
        } = answer;
        let Ok(response) = api.parse_response(&body) else {
            // Not an answer this host understands: the agent's SDK decides.
            call.reason = Some("the provider's answer could not be read".to_owned());
            let reply = GatewayReply::Full {
                status,
                headers: answer_headers(headers),
                body,
            };
            return Ending::finished(CallOutcome::Error, Some(status), None, Ok(reply));
        };
        let run = self
            .chain
            .on_llm_response(ctx, request, LlmOutcome::Ok(response.clone()));
        trail.absorb(Hook::LlmResponse, &run);
        match run.outcome {
            Outcome::Continue {
                value: LlmOutcome::Ok(answer),
            } => {
                let usage = answer.usage.or(response.usage);
                let out = if answer == response {
                    body
                } else {
                    api.render_response(Some(&body), &answer)
                };
                Ending::Finished(Finished {
                    outcome: CallOutcome::Ok,
                    status: Some(status),
                    code: None,
                    usage,
                    keep_as: (api == Api::Responses).then_some(response.id),
                    reply: Ok(GatewayReply::Full {
                        status,
                        headers: answer_headers(headers),
                        body: out,
                    }),
                })
            }
            Outcome::Deny { policy, denial } => {
                Ending::denied(Some(status), response.usage, policy, denial)
            }
            _ => {
                let reply = GatewayReply::Full {
                    status,
                    headers: answer_headers(headers),
                    body,
                };
                Ending::finished(CallOutcome::Error, Some(status), response.usage, Ok(reply))
            }
        }
    }

    fn backoff(&self, attempt: u32, retry_after_ms: Option<u64>) -> Duration {
        let exp = self
            .options
            .backoff
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
        let asked = Duration::from_millis(retry_after_ms.unwrap_or(0));
        exp.max(asked).min(self.options.max_backoff)
    }

    /// Tell the chain a call it passed ended without an answer.
    fn abandon(
        &self,
        ctx: &CallContext,
        request: &LlmRequest,
        code: &str,
        message: &str,
        trail: &mut Trail,
    ) {
        let run = self.chain.on_llm_abandoned(
            ctx,
            request.clone(),
            Denial {
                code: code.to_owned(),
                message: message.to_owned(),
                retry_after_ms: None,
            },
            None,
            None,
        );
        trail.absorb(Hook::LlmAbandoned, &run);
    }
}

/// The agent's reply when the provider failed for good: its own error answer (the host already
/// retried: `x-should-retry: false`), else a timeout or connection error.
fn failure(error: ProviderError, answer: Option<HttpAnswer>) -> Result<GatewayReply, GatewayError> {
    match answer {
        Some(HttpAnswer {
            status,
            headers,
            body,
        }) => {
            let mut headers = answer_headers(headers);
            // The host already retried; the SDK must not multiply the attempts.
            headers.push(("x-should-retry".to_owned(), "false".to_owned()));
            Ok(GatewayReply::Full {
                status,
                headers,
                body,
            })
        }
        None if error.kind == ProviderErrorKind::Timeout => {
            Err(GatewayError::Timeout(error.message))
        }
        None => Err(GatewayError::Connection(error.message)),
    }
}

fn error_of_status(
    api: Api,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> ProviderError {
    let retry = retry_after_ms(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    api.parse_error(status, body, retry)
}

/// Headers of the provider's answer worth passing to the agent (the body may have changed).
fn answer_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(k, _)| {
            ![
                "content-length",
                "transfer-encoding",
                "content-encoding",
                "connection",
            ]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        })
        .collect()
}

/// Whether two requests render to the same body (the credential never goes on the wire).
fn same_on_wire(a: &LlmRequest, b: &LlmRequest) -> bool {
    a.provider == b.provider
        && a.model == b.model
        && a.messages == b.messages
        && a.tools == b.tools
        && a.max_output_tokens == b.max_output_tokens
        && a.temperature == b.temperature
        && a.stream == b.stream
        && a.extra == b.extra
}

/// An answer a policy produced, in the shape the agent asked for.
fn render_answer(api: Api, parsed: &ParsedRequest, response: &LlmResponse) -> GatewayReply {
    let mut response = response.clone();
    if response.model.is_empty() {
        response.model = parsed.request.model.clone();
    }
    if parsed.request.stream {
        let body: Vec<u8> = api
            .render_stream(&response, parsed.wants_stream_usage)
            .iter()
            .flat_map(SseEvent::to_bytes)
            .collect();
        GatewayReply::Full {
            status: 200,
            headers: vec![("content-type".to_owned(), "text/event-stream".to_owned())],
            body,
        }
    } else {
        GatewayReply::Full {
            status: 200,
            headers: json_headers(),
            body: api.render_response(None, &response),
        }
    }
}
