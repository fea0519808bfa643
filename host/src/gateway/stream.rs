//! A streamed answer on its way to the agent ([`StreamReply`]): each provider event passes the
//! chain's `on-llm-chunk`; when the stream ends (or is cut) the call is finished as any other.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::report::{CallRecord, Trail};
use super::{Gateway, GatewayError};
use crate::events::CallOutcome;
use crate::llm::anthropic;
use crate::llm::api::Api;
use crate::llm::responses;
use crate::llm::sse::SseEvent;
use crate::llm::upstream::{EventStream, Interrupt, StreamError};
use crate::llm::wire::UsagePart;
use crate::model::{
    CallContext, Denial, Hook, LlmChunk, LlmOutcome, LlmRequest, LlmResponse, Message,
    ProviderError, ProviderErrorKind, Role, Usage,
};
use crate::policy::chain::{ChainStream, Outcome};

/// A stream the provider started: what the attempt that got it hands to [`StreamReply::new`].
#[derive(Debug)]
pub(super) struct StreamStart {
    /// The attempt's context (its call id and attempt number).
    pub(super) ctx: CallContext,
    /// The request as sent (after the chain's `on-llm-request`).
    pub(super) request: LlmRequest,
    /// The provider's headers, as passed to the agent.
    pub(super) headers: Vec<(String, String)>,
    pub(super) events: EventStream,
    /// The agent asked for usage in the stream (OpenAI `stream_options.include_usage`).
    pub(super) wants_usage: bool,
}

/// A streamed answer on its way to the agent: each provider event is parsed, its text passed
/// through the chain's `on-llm-chunk`, and re-sent with the text the chain released.
pub struct StreamReply {
    gateway: Arc<Gateway>,
    api: Api,
    ctx: CallContext,
    request: LlmRequest,
    headers: Vec<(String, String)>,
    events: EventStream,
    stream: ChainStream,
    wants_usage: bool,
    out: VecDeque<Vec<u8>>,
    /// The last text event, the shape for text the chain releases later.
    template: Option<SseEvent>,
    /// Anthropic: the end of the text block, held until the chain flushed.
    held_stop: Option<SseEvent>,
    usage: UsagePart,
    /// The text the agent received.
    text: String,
    finish: Option<String>,
    index: u32,
    last_pushed: bool,
    /// Responses API: the text the agent received per `(output_index, content_index)`, for
    /// the events that repeat a part's whole text.
    released: BTreeMap<(u64, u64), String>,
    /// Responses API: the next `sequence_number` (the chain changes how many events there are).
    seq: u64,
    done: bool,
    call: Option<CallRecord>,
    trail: Option<Trail>,
}

impl std::fmt::Debug for StreamReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReply")
            .field("api", &self.api)
            .field("ctx", &self.ctx)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl StreamReply {
    /// The stream of `start`, through the chain's `on-llm-chunk`; `call` and `trail` go with it
    /// and are finished when it ends.
    pub(super) fn new(
        gateway: Arc<Gateway>,
        start: StreamStart,
        call: CallRecord,
        trail: Trail,
    ) -> StreamReply {
        let StreamStart {
            ctx,
            request,
            headers,
            events,
            wants_usage,
        } = start;
        let stream = gateway.chain.stream(&ctx);
        StreamReply {
            gateway,
            api: call.api,
            ctx,
            request,
            headers,
            events,
            stream,
            wants_usage,
            out: VecDeque::new(),
            template: None,
            held_stop: None,
            usage: UsagePart::default(),
            text: String::new(),
            finish: None,
            index: 0,
            last_pushed: false,
            released: BTreeMap::new(),
            seq: 0,
            done: false,
            call: Some(call),
            trail: Some(trail),
        }
    }

    /// Headers for the agent's response.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    fn usage(&self) -> Usage {
        if self.api.provider() == "anthropic" {
            return anthropic::neutral_usage(&self.usage);
        }
        let mut u = Usage::default();
        self.usage.apply(&mut u);
        u
    }

    /// What a stream that ends early (cut by the agent or denied part-way) costs: the usage the
    /// provider reported, and at least the prompt's tokens and those of the text streamed so
    /// far. Providers bill what they generated, and an OpenAI stream reports its usage only in
    /// its last chunk: without this, a stream closed after one chunk would cost nothing.
    fn usage_so_far(&self) -> Usage {
        let mut u = self.usage();
        let meter = &self.gateway.meter;
        if u.input_tokens == 0 {
            u.input_tokens = meter.count_messages(&self.request.model, &self.request.messages);
        }
        u.output_tokens = u
            .output_tokens
            .max(meter.count_text(&self.request.model, &self.text));
        u
    }

    /// The next bytes for the agent; `Ok(None)` at the end.
    pub fn next_bytes(
        &mut self,
        interrupt: Interrupt<'_>,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Ok(Some(b));
            }
            if self.done {
                return Ok(None);
            }
            match self.events.next(interrupt) {
                Ok(Some(ev)) => self.process(ev)?,
                Ok(None) => {
                    self.flush_last()?;
                    self.complete(None);
                }
                Err(StreamError::Interrupted) => {
                    self.cancel("the agent stopped waiting");
                    return Err(GatewayError::Interrupted);
                }
                Err(StreamError::Provider(e)) => {
                    // The provider failed part-way; the agent has what it got so far.
                    self.complete(Some(e.clone()));
                    return Err(match e.kind {
                        ProviderErrorKind::Timeout => GatewayError::Timeout(e.message),
                        _ => GatewayError::Connection(e.message),
                    });
                }
            }
        }
    }

    fn emit(&mut self, ev: &SseEvent) {
        if self.api != Api::Responses {
            self.out.push_back(ev.to_bytes());
            return;
        }
        let ev = responses::rewrite_event(ev, &self.released, self.seq);
        self.seq += 1;
        if matches!(
            ev.event.as_deref(),
            Some("response.completed" | "response.incomplete")
        ) && let Some(answer) = serde_json::from_str::<serde_json::Value>(&ev.data)
            .ok()
            .and_then(|v| v.get("response").cloned())
        {
            let id = answer
                .get("id")
                .and_then(|i| i.as_str())
                .unwrap_or_default();
            self.gateway.remember(id, answer.to_string().as_bytes());
        }
        self.out.push_back(ev.to_bytes());
    }

    fn release_stop(&mut self) {
        if let Some(stop) = self.held_stop.take() {
            self.emit(&stop);
        }
    }

    /// Push one chunk through the chain; emits what it releases.
    fn push(&mut self, text: String, last: bool) -> Result<(), GatewayError> {
        let chunk = LlmChunk {
            index: self.index,
            text,
            finish_reason: if last { self.finish.clone() } else { None },
            usage: None,
            last,
        };
        self.index += 1;
        let run = self.stream.push(chunk);
        if let Some(t) = self.trail.as_mut() {
            t.absorb(Hook::LlmChunk, &run);
        }
        match run.outcome {
            Outcome::Continue { value } => {
                if !value.is_empty() {
                    let ev = match &self.template {
                        Some(t) => self.api.with_text(t, &value),
                        None => return Ok(()),
                    };
                    if self.api == Api::Responses
                        && let Some(slot) = responses::text_slot(&ev)
                    {
                        self.released.entry(slot).or_default().push_str(&value);
                    }
                    self.text.push_str(&value);
                    self.emit(&ev);
                }
                Ok(())
            }
            Outcome::Deny { policy, denial } => {
                let usage = self.usage_so_far();
                let run = self.gateway.chain.on_llm_abandoned(
                    &self.ctx,
                    self.request.clone(),
                    denial.clone(),
                    Some(policy.clone()),
                    Some(usage),
                );
                if let Some(t) = self.trail.as_mut() {
                    t.absorb(Hook::LlmAbandoned, &run);
                }
                self.done = true;
                self.out.clear();
                self.record(CallOutcome::Denied, Some(&denial.code), Some(usage));
                Err(GatewayError::Denied { policy, denial })
            }
            _ => Ok(()),
        }
    }

    fn flush_last(&mut self) -> Result<(), GatewayError> {
        if self.last_pushed {
            return Ok(());
        }
        self.last_pushed = true;
        self.push(String::new(), true)?;
        self.release_stop();
        Ok(())
    }

    fn process(&mut self, ev: SseEvent) -> Result<(), GatewayError> {
        let info = self.api.event_info(&ev);
        if let Some(u) = &info.usage {
            self.usage.merge(u);
        }
        if info.error.is_some() {
            self.release_stop();
            self.emit(&ev);
            return Ok(());
        }
        if let Some(text) = info.text {
            self.release_stop();
            if text.is_empty() || self.last_pushed {
                self.emit(&ev);
            } else {
                self.template = Some(ev);
                self.push(text, false)?;
            }
            return Ok(());
        }
        if self.api == Api::Responses && info.block_stop {
            // A text part is done: the chain releases what it held, the `done` event repeats
            // the part as the agent received it, and the next text part (if any) passes the
            // chain afresh.
            if self.template.is_some() && !self.last_pushed {
                self.push(String::new(), true)?;
                self.stream = self.gateway.chain.stream(&self.ctx);
                self.template = None;
            }
            self.emit(&ev);
            return Ok(());
        }
        if self.api == Api::Anthropic
            && info.block_stop
            && self.template.is_some()
            && !self.last_pushed
        {
            self.release_stop();
            self.held_stop = Some(ev);
            return Ok(());
        }
        if let Some(f) = info.finish {
            self.finish = Some(f);
            self.flush_last()?;
        }
        if info.done {
            self.flush_last()?;
        }
        if info.usage_only && !self.wants_usage {
            // The host asked for usage; the agent did not and will not see it.
        } else {
            self.release_stop();
            self.emit(&ev);
        }
        if info.done {
            self.complete(None);
        }
        Ok(())
    }

    /// The stream ended: `on-llm-response` with the answer as the agent received it
    /// (recorded, not applied: it was delivered), then the call is counted.
    fn complete(&mut self, failure: Option<ProviderError>) {
        if self.done {
            return;
        }
        self.done = true;
        let usage = self.usage();
        let outcome = match &failure {
            None => LlmOutcome::Ok(LlmResponse {
                id: String::new(),
                model: self.request.model.clone(),
                message: Message::text(Role::Assistant, self.text.clone()),
                finish_reason: self.finish.clone().unwrap_or_else(|| "stop".to_owned()),
                usage: Some(usage),
            }),
            Some(e) => LlmOutcome::Error(e.clone()),
        };
        let run = self
            .gateway
            .chain
            .on_llm_response(&self.ctx, self.request.clone(), outcome);
        if let Some(t) = self.trail.as_mut() {
            t.absorb(Hook::LlmResponse, &run);
        }
        let kind = if failure.is_some() {
            CallOutcome::Error
        } else {
            CallOutcome::Ok
        };
        self.record(kind, None, Some(usage));
    }

    fn cancel(&mut self, why: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let usage = self.usage_so_far();
        let run = self.gateway.chain.on_llm_abandoned(
            &self.ctx,
            self.request.clone(),
            Denial {
                code: "cancelled".to_owned(),
                message: why.to_owned(),
                retry_after_ms: None,
            },
            None,
            Some(usage),
        );
        if let Some(t) = self.trail.as_mut() {
            t.absorb(Hook::LlmAbandoned, &run);
        }
        self.record(CallOutcome::Cancelled, None, Some(usage));
    }

    fn record(&mut self, outcome: CallOutcome, code: Option<&str>, usage: Option<Usage>) {
        if let (Some(call), Some(trail)) = (self.call.take(), self.trail.take()) {
            let status = (outcome == CallOutcome::Ok).then_some(200);
            self.gateway
                .finish(&call, trail, outcome, status, code, usage);
        }
    }
}

impl Drop for StreamReply {
    /// An agent that stops reading part-way abandons the call: reservations are released.
    fn drop(&mut self) {
        self.cancel("the agent closed the stream before its end");
    }
}
