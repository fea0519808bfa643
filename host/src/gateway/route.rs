//! Where a request goes: its upstream and API ([`Gateway::routed`], which refuses what the host
//! does not route and answers the `GET`s it can answer itself), and, per attempt, who answers
//! it (the simulator or the provider over HTTPS) with which key ([`Gateway::route`]).

use std::time::Instant;

use super::keys::PLACEHOLDER_KEY;
use super::report::{CallRecord, Trail};
use super::{Gateway, GatewayError, GatewayReply, HttpRequest, LlmMode, json_headers};
use std::sync::Arc;

use crate::events::CallOutcome;
use crate::llm::api::Api;
use crate::llm::upstream::Upstream;
use crate::llm::upstreams::{Endpoint, Format};
use crate::llm::wire::{ParsedRequest, UnknownParts};
use crate::model::{LlmRequest, ProviderError, ProviderErrorKind};

/// How many Responses API answers the gateway keeps for `GET /v1/responses/{id}`.
const ANSWERS_KEPT: usize = 256;

/// A request the host routes: an LLM call to `api` on `endpoint`, parsed.
#[derive(Debug)]
pub(super) struct Routed<'a> {
    pub(super) endpoint: &'a Endpoint,
    pub(super) api: Api,
    /// The path and query after the upstream's base path, as sent on.
    pub(super) rest: String,
    /// The request as the SDK sent it (an Azure deployment's model added to the body).
    pub(super) req: HttpRequest,
    pub(super) parsed: ParsedRequest,
}

impl Gateway {
    /// Where `req` goes: the upstream it names, the API of its path, its body parsed. `Err` is
    /// the agent's answer when the host does not route it: a `GET` the host answers itself, or
    /// a refusal in the provider's shape (recorded as a call).
    pub(super) fn routed(
        &self,
        req: HttpRequest,
        started: Instant,
    ) -> Result<Routed<'_>, GatewayReply> {
        let upstreams = &self.options.upstreams;
        let Some(endpoint) = upstreams.get(&req.upstream) else {
            let why = format!(
                "no upstream is named `{}` (known: {})",
                req.upstream,
                upstreams
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Err(self.refuse_unrouted(&req, None, started, why));
        };
        let target = endpoint.target(&req.path);
        let post = req.method.eq_ignore_ascii_case("POST");
        let Some(api) = target.api.filter(|_| post) else {
            if req.method.eq_ignore_ascii_case("GET")
                && let Some(reply) = self.answer_get(endpoint, &target.rest)
            {
                return Err(reply);
            }
            let why = format!(
                "ironhost governs chat completions, responses (and their input_tokens), \
                 completions, embeddings and moderations (OpenAI) and messages and count_tokens \
                 (Anthropic); {} {} is not routed (upstream `{}`, {})",
                req.method,
                req.path,
                endpoint.name,
                endpoint.format.name()
            );
            return Err(self.refuse_unrouted(&req, Some(endpoint), started, why));
        };
        let mut req = req;
        if let Some(deployment) = &target.deployment
            && let Some(body) = with_model(&req.body, deployment)
        {
            req.body = body;
        }
        let mut parsed = match api.parse_request(&req.body) {
            Ok(p) => p,
            Err(e) => {
                let model = model_in(&req.body);
                return Err(self.refuse(
                    api,
                    api,
                    &endpoint.name,
                    &model,
                    started,
                    400,
                    "invalid_request",
                    &e.0,
                ));
            }
        };
        parsed.request.provider.clone_from(&endpoint.name);
        if !parsed.unknown.is_empty() && self.options.unknown_parts == UnknownParts::Refuse {
            let message = format!(
                "ironhost passes no part it cannot read (llm.unknown-parts = \"refuse\"): {}",
                parsed.unknown.join(", ")
            );
            return Err(self.refuse(
                api,
                api,
                &endpoint.name,
                &parsed.request.model,
                started,
                400,
                "unknown_part",
                &message,
            ));
        }
        Ok(Routed {
            endpoint,
            api,
            rest: target.rest,
            req,
            parsed,
        })
    }

    /// The key for this call: the agent's own (unless it is the placeholder), else the secret
    /// the chain named or the upstream's own, from the secret store or the host's environment.
    fn key_for(
        &self,
        endpoint: &Endpoint,
        request: &LlmRequest,
        headers: &[(String, String)],
    ) -> Option<String> {
        let from_agent = headers.iter().find_map(|(k, v)| {
            if k.eq_ignore_ascii_case("authorization") {
                v.strip_prefix("Bearer ").map(str::to_owned)
            } else if k.eq_ignore_ascii_case("x-api-key") || k.eq_ignore_ascii_case("api-key") {
                Some(v.clone())
            } else {
                None
            }
        });
        if let Some(k) = from_agent.filter(|k| !k.is_empty() && k != PLACEHOLDER_KEY) {
            return Some(k);
        }
        let name = endpoint.key_name(request.credential.as_deref())?;
        self.secrets
            .get(&self.agent.environment, name)
            .or_else(|| self.env_keys.get(name).cloned())
            .filter(|k| !k.is_empty() && k != PLACEHOLDER_KEY)
    }

    /// Who answers this attempt: the simulator, or the provider over HTTPS with the key (if
    /// any); an error when `llm.mode` asks for a provider the host cannot reach.
    pub(super) fn route(
        &self,
        endpoint: &Endpoint,
        request: &LlmRequest,
        headers: &[(String, String)],
    ) -> Result<(Arc<dyn Upstream>, Option<String>), GatewayError> {
        let sim = || -> Arc<dyn Upstream> { self.simulator.clone() };
        if self.options.mode == LlmMode::Simulator {
            return Ok((sim(), None));
        }
        let key = self.key_for(endpoint, request, headers);
        // An upstream without a key secret (a local server) needs none.
        let keyless = endpoint.key_name(request.credential.as_deref()).is_none();
        match (self.options.mode, key, &self.http) {
            (_, key, Some(http)) if key.is_some() || keyless => {
                Ok((http.clone() as Arc<dyn Upstream>, key))
            }
            (LlmMode::Auto, _, Some(_)) | (LlmMode::Auto, None, None) => Ok((sim(), None)),
            (_, _, None) => Err(GatewayError::NoKey(
                "the HTTPS client for real providers is not available".to_owned(),
            )),
            (_, _, _) => Err(GatewayError::NoKey(format!(
                "llm.mode is `live` but no key for upstream `{}` is set (secret or host \
                 environment variable `{}`)",
                endpoint.name,
                endpoint
                    .key_name(request.credential.as_deref())
                    .unwrap_or_default()
            ))),
        }
    }

    /// Refuse a request to `api` before any policy ran, as the provider would (the error
    /// shape of `shape`'s provider, with `x-should-retry: false`), and record it as a call
    /// with its reason.
    #[expect(
        clippy::too_many_arguments,
        reason = "a refusal names what it refused and why; grouping them would only rename them"
    )]
    fn refuse(
        &self,
        api: Api,
        shape: Api,
        provider: &str,
        model: &str,
        started: Instant,
        status: u16,
        code: &str,
        message: &str,
    ) -> GatewayReply {
        let call = CallRecord {
            call_id: self.next_call_id("llm"),
            api,
            reason: Some(message.to_owned()),
            provider: provider.to_owned(),
            model: model.to_owned(),
            stream: false,
            simulated: true,
            attempts: 0,
            started,
        };
        let outcome = if code == "unknown_part" {
            CallOutcome::Denied
        } else {
            CallOutcome::Error
        };
        self.finish(
            &call,
            Trail::default(),
            outcome,
            Some(status),
            Some(code),
            None,
        );
        let (status, body) = shape.render_error(&ProviderError {
            kind: crate::llm::errors::error_kind(status),
            status: Some(status),
            message: message.to_owned(),
            retry_after_ms: None,
        });
        let mut headers = json_headers();
        headers.push(("x-should-retry".to_owned(), "false".to_owned()));
        GatewayReply::Full {
            status,
            headers,
            body,
        }
    }

    /// A request to an upstream on a path the host does not govern (or to an upstream it does
    /// not know): refused with a 404 in that upstream's shape, and recorded with `why`.
    fn refuse_unrouted(
        &self,
        req: &HttpRequest,
        endpoint: Option<&Endpoint>,
        started: Instant,
        why: String,
    ) -> GatewayReply {
        let shape = match endpoint.map(|e| e.format) {
            Some(Format::Anthropic) => Api::Anthropic,
            Some(_) => Api::OpenAi,
            None if anthropic_headers(&req.headers) => Api::Anthropic,
            None => Api::OpenAi,
        };
        // A known endpoint asked with another method is recorded under its API.
        let api = endpoint
            .and_then(|e| e.target(&req.path).api)
            .unwrap_or(shape);
        let model = model_in(&req.body);
        let provider = endpoint.map_or(req.upstream.as_str(), |e| e.name.as_str());
        self.refuse(
            api,
            shape,
            provider,
            &model,
            started,
            404,
            "not_routed",
            &why,
        )
    }

    /// `GET`s the host answers itself: the models it can price (`/v1/models`,
    /// `/v1/models/{id}`) and the Responses API answers this agent got
    /// (`/v1/responses/{id}`). `None` for any other path.
    fn answer_get(&self, endpoint: &Endpoint, rest: &str) -> Option<GatewayReply> {
        let path = rest.split('?').next().unwrap_or(rest);
        let path = path.trim_end_matches('/');
        let anthropic = endpoint.format == Format::Anthropic;
        let json = |status: u16, body: serde_json::Value| GatewayReply::Full {
            status,
            headers: json_headers(),
            body: body.to_string().into_bytes(),
        };
        let not_found = |message: String| {
            let api = if anthropic {
                Api::Anthropic
            } else {
                Api::OpenAi
            };
            let (_, body) = api.render_error(&ProviderError {
                kind: ProviderErrorKind::InvalidRequest,
                status: Some(404),
                message,
                retry_after_ms: None,
            });
            GatewayReply::Full {
                status: 404,
                headers: json_headers(),
                body,
            }
        };
        let models: Vec<String> = self
            .meter
            .models()
            .into_iter()
            .filter(|m| m != crate::llm::simulator::ECHO_MODEL)
            .filter(|m| m.starts_with("claude") == anthropic)
            .collect();
        let model_json = |id: &str| {
            if anthropic {
                serde_json::json!({"type": "model", "id": id, "display_name": id,
                    "created_at": "2025-01-01T00:00:00Z"})
            } else {
                serde_json::json!({"id": id, "object": "model", "created": 1_700_000_000,
                    "owned_by": "system"})
            }
        };
        if path.ends_with("/v1/models") || path == "/models" {
            let data: Vec<serde_json::Value> = models.iter().map(|m| model_json(m)).collect();
            return Some(if anthropic {
                json(
                    200,
                    serde_json::json!({"data": data, "has_more": false,
                        "first_id": models.first(), "last_id": models.last()}),
                )
            } else {
                json(200, serde_json::json!({"object": "list", "data": data}))
            });
        }
        if let Some((_, id)) = path.rsplit_once("/models/") {
            return Some(if self.meter.price(id).is_some() {
                json(200, model_json(id))
            } else {
                not_found(format!(
                    "The model `{id}` does not exist or you do not have access to it."
                ))
            });
        }
        if let Some((_, id)) = path.rsplit_once("/responses/") {
            let kept = self
                .answers
                .lock()
                .iter()
                .rev()
                .find(|(k, _)| k == id)
                .map(|(_, body)| body.clone());
            return Some(match kept {
                Some(body) => GatewayReply::Full {
                    status: 200,
                    headers: json_headers(),
                    body,
                },
                None => not_found(format!("Response with id '{id}' not found.")),
            });
        }
        None
    }

    /// Keep a Responses API answer `id` (as the agent got it) for `GET /v1/responses/{id}`.
    pub(super) fn remember(&self, id: &str, body: &[u8]) {
        if id.is_empty() {
            return;
        }
        let mut answers = self.answers.lock();
        if answers.len() >= ANSWERS_KEPT {
            answers.pop_front();
        }
        answers.push_back((id.to_owned(), body.to_vec()));
    }
}

/// Whether a request is addressed to Anthropic's API (its SDK always sends a version header).
fn anthropic_headers(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("anthropic-version") || k.eq_ignore_ascii_case("x-api-key")
    })
}

/// `body` with `"model": deployment` added when it names no model (an Azure request names its
/// deployment in the path); None when it names one already or is not a JSON object.
fn with_model(body: &[u8], deployment: &str) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = value.as_object_mut()?;
    if obj.get("model").is_some_and(|m| m.is_string()) {
        return None;
    }
    obj.insert("model".to_owned(), deployment.into());
    serde_json::to_vec(&value).ok()
}

/// The `model` of a request body, if it has one.
fn model_in(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default()
}
