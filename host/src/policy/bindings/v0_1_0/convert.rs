//! Conversions between the host's neutral model ([`crate::model`]) and the generated types of
//! `ironhost:policy@0.1.0`. A new WIT version gets its own file like this one.

use super::ironhost::policy::types as w;
use crate::model::*;

impl From<w::Hook> for Hook {
    fn from(h: w::Hook) -> Self {
        match h {
            w::Hook::AgentStart => Hook::AgentStart,
            w::Hook::LlmRequest => Hook::LlmRequest,
            w::Hook::LlmResponse => Hook::LlmResponse,
            w::Hook::LlmChunk => Hook::LlmChunk,
            w::Hook::LlmAbandoned => Hook::LlmAbandoned,
            w::Hook::ToolCall => Hook::ToolCall,
            w::Hook::ToolResult => Hook::ToolResult,
        }
    }
}

impl From<w::Capability> for Capability {
    fn from(c: w::Capability) -> Self {
        match c {
            w::Capability::Log => Capability::Log,
            w::Capability::Clock => Capability::Clock,
            w::Capability::Config => Capability::Config,
            w::Capability::Events => Capability::Events,
            w::Capability::State => Capability::State,
            w::Capability::Tokens => Capability::Tokens,
            w::Capability::Secrets => Capability::Secrets,
        }
    }
}

impl From<w::Severity> for Severity {
    fn from(s: w::Severity) -> Self {
        match s {
            w::Severity::Info => Severity::Info,
            w::Severity::Low => Severity::Low,
            w::Severity::Medium => Severity::Medium,
            w::Severity::High => Severity::High,
            w::Severity::Critical => Severity::Critical,
        }
    }
}

impl From<w::PolicyInfo> for PolicyInfo {
    fn from(i: w::PolicyInfo) -> Self {
        PolicyInfo {
            name: i.name,
            version: plain_text(&i.version, 64),
            description: plain_text(&i.description, MAX_POLICY_TEXT),
            hooks: i.hooks.into_iter().map(Into::into).collect(),
            capabilities: i.capabilities.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<AgentInfo> for w::AgentInfo {
    fn from(a: AgentInfo) -> Self {
        w::AgentInfo {
            agent_id: a.agent_id,
            name: a.name,
            environment: a.environment,
        }
    }
}

impl From<CallContext> for w::CallContext {
    fn from(c: CallContext) -> Self {
        w::CallContext {
            agent_id: c.agent_id,
            call_id: c.call_id,
            environment: c.environment,
            attempt: c.attempt,
        }
    }
}

impl From<Role> for w::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::System => w::Role::System,
            Role::User => w::Role::User,
            Role::Assistant => w::Role::Assistant,
            Role::Tool => w::Role::Tool,
        }
    }
}

impl From<w::Role> for Role {
    fn from(r: w::Role) -> Self {
        match r {
            w::Role::System => Role::System,
            w::Role::User => Role::User,
            w::Role::Assistant => Role::Assistant,
            w::Role::Tool => Role::Tool,
        }
    }
}

impl From<ContentPart> for w::ContentPart {
    fn from(p: ContentPart) -> Self {
        match p {
            ContentPart::Text { text } => w::ContentPart::Text(text),
            ContentPart::ToolUse(u) => w::ContentPart::ToolUse(w::ToolUse {
                id: u.id,
                name: u.name,
                arguments: u.arguments,
            }),
            ContentPart::ToolOutput {
                tool_use_id,
                content,
                is_error,
            } => w::ContentPart::ToolOutput(w::ToolOutput {
                tool_use_id,
                content,
                is_error,
            }),
            ContentPart::Image { url } => w::ContentPart::Image(url),
            ContentPart::Other { json } => w::ContentPart::Other(json),
        }
    }
}

impl From<w::ContentPart> for ContentPart {
    fn from(p: w::ContentPart) -> Self {
        match p {
            w::ContentPart::Text(text) => ContentPart::Text { text },
            w::ContentPart::ToolUse(u) => ContentPart::ToolUse(ToolUse {
                id: u.id,
                name: u.name,
                arguments: u.arguments,
            }),
            w::ContentPart::ToolOutput(o) => ContentPart::ToolOutput {
                tool_use_id: o.tool_use_id,
                content: o.content,
                is_error: o.is_error,
            },
            w::ContentPart::Image(url) => ContentPart::Image { url },
            w::ContentPart::Other(json) => ContentPart::Other { json },
        }
    }
}

impl From<Message> for w::Message {
    fn from(m: Message) -> Self {
        w::Message {
            role: m.role.into(),
            content: m.content.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<w::Message> for Message {
    fn from(m: w::Message) -> Self {
        Message {
            role: m.role.into(),
            content: m.content.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<LlmRequest> for w::LlmRequest {
    fn from(r: LlmRequest) -> Self {
        w::LlmRequest {
            provider: r.provider,
            model: r.model,
            messages: r.messages.into_iter().map(Into::into).collect(),
            tools: r
                .tools
                .into_iter()
                .map(|t| w::ToolSpec {
                    name: t.name,
                    description: t.description,
                    parameters: t.parameters,
                })
                .collect(),
            max_output_tokens: r.max_output_tokens,
            temperature: r.temperature,
            stream: r.stream,
            extra: r.extra,
            credential: r.credential,
        }
    }
}

impl From<w::LlmRequest> for LlmRequest {
    fn from(r: w::LlmRequest) -> Self {
        LlmRequest {
            provider: r.provider,
            model: r.model,
            messages: r.messages.into_iter().map(Into::into).collect(),
            tools: r
                .tools
                .into_iter()
                .map(|t| ToolSpec {
                    name: t.name,
                    description: t.description,
                    parameters: t.parameters,
                })
                .collect(),
            max_output_tokens: r.max_output_tokens,
            temperature: r.temperature,
            stream: r.stream,
            extra: r.extra,
            credential: r.credential,
        }
    }
}

impl From<Usage> for w::Usage {
    fn from(u: Usage) -> Self {
        w::Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
            cache_write_input_tokens: u.cache_write_input_tokens,
        }
    }
}

impl From<w::Usage> for Usage {
    fn from(u: w::Usage) -> Self {
        Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
            cache_write_input_tokens: u.cache_write_input_tokens,
        }
    }
}

impl From<LlmResponse> for w::LlmResponse {
    fn from(r: LlmResponse) -> Self {
        w::LlmResponse {
            id: r.id,
            model: r.model,
            message: r.message.into(),
            finish_reason: r.finish_reason,
            usage: r.usage.map(Into::into),
        }
    }
}

impl From<w::LlmResponse> for LlmResponse {
    fn from(r: w::LlmResponse) -> Self {
        LlmResponse {
            id: r.id,
            model: r.model,
            message: r.message.into(),
            finish_reason: r.finish_reason,
            usage: r.usage.map(Into::into),
        }
    }
}

impl From<ProviderErrorKind> for w::ProviderErrorKind {
    fn from(k: ProviderErrorKind) -> Self {
        match k {
            ProviderErrorKind::RateLimited => w::ProviderErrorKind::RateLimited,
            ProviderErrorKind::ServerError => w::ProviderErrorKind::ServerError,
            ProviderErrorKind::Timeout => w::ProviderErrorKind::Timeout,
            ProviderErrorKind::Connection => w::ProviderErrorKind::Connection,
            ProviderErrorKind::InvalidRequest => w::ProviderErrorKind::InvalidRequest,
            ProviderErrorKind::Authentication => w::ProviderErrorKind::Authentication,
            ProviderErrorKind::Other => w::ProviderErrorKind::Other,
        }
    }
}

impl From<LlmOutcome> for w::LlmOutcome {
    fn from(o: LlmOutcome) -> Self {
        match o {
            LlmOutcome::Ok(r) => w::LlmOutcome::Ok(r.into()),
            LlmOutcome::Error(e) => w::LlmOutcome::Error(w::ProviderError {
                kind: e.kind.into(),
                status: e.status,
                message: e.message,
                retry_after_ms: e.retry_after_ms,
            }),
        }
    }
}

impl From<w::ProviderErrorKind> for ProviderErrorKind {
    fn from(k: w::ProviderErrorKind) -> Self {
        match k {
            w::ProviderErrorKind::RateLimited => ProviderErrorKind::RateLimited,
            w::ProviderErrorKind::ServerError => ProviderErrorKind::ServerError,
            w::ProviderErrorKind::Timeout => ProviderErrorKind::Timeout,
            w::ProviderErrorKind::Connection => ProviderErrorKind::Connection,
            w::ProviderErrorKind::InvalidRequest => ProviderErrorKind::InvalidRequest,
            w::ProviderErrorKind::Authentication => ProviderErrorKind::Authentication,
            w::ProviderErrorKind::Other => ProviderErrorKind::Other,
        }
    }
}

impl From<w::LlmOutcome> for LlmOutcome {
    fn from(o: w::LlmOutcome) -> Self {
        match o {
            w::LlmOutcome::Ok(r) => LlmOutcome::Ok(r.into()),
            w::LlmOutcome::Error(e) => LlmOutcome::Error(ProviderError {
                kind: e.kind.into(),
                status: e.status,
                message: e.message,
                retry_after_ms: e.retry_after_ms,
            }),
        }
    }
}

impl From<LlmChunk> for w::LlmChunk {
    fn from(c: LlmChunk) -> Self {
        w::LlmChunk {
            index: c.index,
            text: c.text,
            finish_reason: c.finish_reason,
            usage: c.usage.map(Into::into),
            last: c.last,
        }
    }
}

impl From<w::Denial> for Denial {
    fn from(d: w::Denial) -> Self {
        Denial {
            code: plain_text(&d.code, 64),
            message: plain_text(&d.message, MAX_POLICY_TEXT),
            retry_after_ms: d.retry_after_ms,
        }
    }
}

impl From<ToolCall> for w::ToolCall {
    fn from(c: ToolCall) -> Self {
        w::ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }
}

impl From<w::ToolCall> for ToolCall {
    fn from(c: w::ToolCall) -> Self {
        ToolCall {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }
}

impl From<ToolOutcome> for w::ToolOutcome {
    fn from(o: ToolOutcome) -> Self {
        match o {
            ToolOutcome::Ok(v) => w::ToolOutcome::Ok(v),
            ToolOutcome::Error(e) => w::ToolOutcome::Error(w::ToolError {
                kind: e.kind.into(),
                message: e.message,
            }),
        }
    }
}

impl From<w::ToolOutcome> for ToolOutcome {
    fn from(o: w::ToolOutcome) -> Self {
        match o {
            w::ToolOutcome::Ok(v) => ToolOutcome::Ok(v),
            w::ToolOutcome::Error(e) => ToolOutcome::Error(ToolError {
                kind: e.kind.into(),
                message: e.message,
            }),
        }
    }
}

impl From<ToolErrorKind> for w::ToolErrorKind {
    fn from(k: ToolErrorKind) -> Self {
        match k {
            ToolErrorKind::Timeout => w::ToolErrorKind::Timeout,
            ToolErrorKind::RateLimited => w::ToolErrorKind::RateLimited,
            ToolErrorKind::Unavailable => w::ToolErrorKind::Unavailable,
            ToolErrorKind::InvalidInput => w::ToolErrorKind::InvalidInput,
            ToolErrorKind::Exception => w::ToolErrorKind::Exception,
            ToolErrorKind::Other => w::ToolErrorKind::Other,
        }
    }
}

impl From<w::ToolErrorKind> for ToolErrorKind {
    fn from(k: w::ToolErrorKind) -> Self {
        match k {
            w::ToolErrorKind::Timeout => ToolErrorKind::Timeout,
            w::ToolErrorKind::RateLimited => ToolErrorKind::RateLimited,
            w::ToolErrorKind::Unavailable => ToolErrorKind::Unavailable,
            w::ToolErrorKind::InvalidInput => ToolErrorKind::InvalidInput,
            w::ToolErrorKind::Exception => ToolErrorKind::Exception,
            w::ToolErrorKind::Other => ToolErrorKind::Other,
        }
    }
}

impl From<Denial> for w::Denial {
    fn from(d: Denial) -> Self {
        w::Denial {
            code: d.code,
            message: d.message,
            retry_after_ms: d.retry_after_ms,
        }
    }
}

impl From<w::StartEffects> for StartEffects {
    fn from(e: w::StartEffects) -> Self {
        StartEffects { env: e.env }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_part_content_round_trips_through_wit_types() {
        let r: LlmRequest = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"assistant","content":[
                {"type":"text","text":"a"},
                {"type":"tool_use","id":"t1","name":"search","arguments":"{}"}]}]}"#,
        )
        .expect("valid request");
        let wit: w::LlmRequest = r.clone().into();
        let back: LlmRequest = wit.into();
        assert_eq!(back, r);
    }
}
