//! `pii-redact`: finds personal data and secrets in LLM traffic and redacts, blocks or reports
//! them, before a request reaches the provider and before an answer or tool result reaches the
//! agent.
//!
//! Config (`[policy.config]` in bundle.toml), all optional:
//!
//! ```toml
//! mode = "redact"                 # redact (default) | block | warn
//! types = ["email", "phone"]      # default: all of email, phone, ssn, credit_card, iban,
//!                                 # ip_address, secret
//! allow-domains = ["example.com"] # emails at these domains (and their subdomains) pass
//! allow-values = ["+1 555 0100"]  # these exact values pass
//! ```
//!
//! Every finding is published as a `pii.finding` event with the type, severity, where it was,
//! what was done, its character span, and a keyed fingerprint of the value (never the value).

pub mod detect;
pub mod stream;

use ironhost_policy::events::{self, Severity};
use ironhost_policy::types::*;
use ironhost_policy::{Policy, config, text};
use serde::Deserialize;

use detect::{Finding, Kind};

/// What to do with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Replace each value with a marker such as `[EMAIL_REDACTED]`.
    #[default]
    Redact,
    /// Deny the call.
    Block,
    /// Report only.
    Warn,
}

impl Mode {
    fn action(self) -> &'static str {
        match self {
            Mode::Redact => "redacted",
            Mode::Block => "blocked",
            Mode::Warn => "reported",
        }
    }
}

/// The policy's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub allow_domains: Vec<String>,
    #[serde(default)]
    pub allow_values: Vec<String>,
}

impl Settings {
    /// Decode and check a config text.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let settings: Settings = config::validate(text)?;
        for name in settings.types.iter().flatten() {
            if Kind::parse(name).is_none() {
                let known: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                return Err(format!(
                    "types: unknown type `{name}` (known: {})",
                    known.join(", ")
                ));
            }
        }
        if let Some(bad) = settings
            .allow_domains
            .iter()
            .find(|d| d.trim().is_empty() || d.contains('@'))
        {
            return Err(format!("allow-domains: `{bad}` is not a domain"));
        }
        Ok(settings)
    }

    fn wants(&self, kind: Kind) -> bool {
        self.types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == kind.name()))
    }

    fn allowed(&self, kind: Kind, value: &str) -> bool {
        if self.allow_values.iter().any(|v| v == value) {
            return true;
        }
        if kind == Kind::Email
            && let Some((_, domain)) = value.rsplit_once('@')
        {
            let domain = domain.to_ascii_lowercase();
            return self.allow_domains.iter().any(|d| {
                let d = d.to_ascii_lowercase();
                domain == d || domain.ends_with(&format!(".{d}"))
            });
        }
        false
    }

    /// The findings in `text` this configuration acts on.
    pub fn findings(&self, text: &str) -> Vec<Finding> {
        detect::detect(text)
            .into_iter()
            .filter(|f| self.acts_on(text, f))
            .collect()
    }

    fn acts_on(&self, text: &str, f: &Finding) -> bool {
        self.wants(f.kind) && !self.allowed(f.kind, &text[f.start..f.end])
    }
}

/// One step of a streamed answer: `combined` is the text held back so far and the new chunk.
/// Returns where to cut (release `combined[..cut]`, hold the rest) and the findings this
/// configuration acts on in the released part. The whole of `combined` is scanned, so a value
/// before the cut is judged with the text after it (`020 7946 0958 if …`), and the cut never
/// falls inside a value or a lookalike (see [`stream::hold_point`]).
pub fn stream_step(settings: &Settings, combined: &str, last: bool) -> (usize, Vec<Finding>) {
    let scan = detect::scan(combined);
    let mut cut = if last {
        combined.len()
    } else {
        stream::hold_point(combined, &scan.units)
    };
    // Cut forward by the hold limit inside a value: the whole value goes, redacted.
    if let Some(f) = scan.findings.iter().find(|f| f.start < cut && cut < f.end) {
        cut = f.end;
    }
    let findings = scan
        .findings
        .into_iter()
        .filter(|f| f.end <= cut && settings.acts_on(combined, f))
        .collect();
    (cut, findings)
}

/// The name of a severity in events.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// How serious a finding of each kind is.
pub fn severity(kind: Kind) -> Severity {
    match kind {
        Kind::Ssn | Kind::CreditCard | Kind::Secret => Severity::Critical,
        Kind::Email | Kind::Iban => Severity::High,
        Kind::Phone => Severity::Medium,
        Kind::IpAddress => Severity::Low,
    }
}

/// `text` with every finding replaced by its marker.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.start]);
        out.push_str(f.kind.marker());
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Publish one event per finding. `offset` is the character offset of `text` in what it is
/// part of (a stream).
fn report(text: &str, findings: &[Finding], location: &str, mode: Mode, offset: u64) {
    for f in findings {
        let start = offset + text[..f.start].chars().count() as u64;
        let end = start + text[f.start..f.end].chars().count() as u64;
        let sev = severity(f.kind);
        let mut detail = serde_json::json!({
            "type": f.kind.name(),
            "severity": severity_name(sev),
            "location": location,
            "action": mode.action(),
            "start": start,
            "end": end,
            "fingerprint": events::fingerprint(&text[f.start..f.end]),
        });
        if mode == Mode::Redact {
            // What the value became, so a notification can show the text as it went out.
            detail["replacement"] = f.kind.marker().into();
        }
        events::emit("pii.finding", sev, &detail);
    }
}

fn kinds_of(findings: &[Finding]) -> String {
    let mut names: Vec<&str> = findings.iter().map(|f| f.kind.name()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

static SETTINGS: config::Cached<Settings> = config::Cached::new();

fn settings() -> Settings {
    // Admission validated the config; an unreadable one means the strictest behaviour.
    SETTINGS.get().cloned().unwrap_or(Settings {
        mode: Mode::Block,
        ..Settings::default()
    })
}

/// Scan and treat every text `visit` walks (see `text::visit_request_texts`). Returns the
/// findings, and whether anything was rewritten.
fn treat_texts(
    visit: impl FnOnce(&mut dyn FnMut(&mut String) -> bool) -> bool,
    settings: &Settings,
    location: &str,
) -> (Vec<Finding>, bool) {
    let mut all = Vec::new();
    let changed = visit(&mut |text: &mut String| {
        let findings = settings.findings(text);
        if findings.is_empty() {
            return false;
        }
        report(text, &findings, location, settings.mode, 0);
        let rewrite = settings.mode == Mode::Redact;
        if rewrite {
            *text = redact(text, &findings);
        }
        all.extend(findings);
        rewrite
    });
    (all, changed)
}

/// The policy.
#[derive(Debug)]
pub struct PiiRedact;

impl Policy for PiiRedact {
    fn describe() -> PolicyInfo {
        ironhost_policy::info(
            "pii-redact",
            env!("CARGO_PKG_VERSION"),
            "Redacts, blocks or reports personal data and secrets in LLM traffic",
        )
        .hooks(&[
            Hook::LlmRequest,
            Hook::LlmResponse,
            Hook::LlmChunk,
            Hook::ToolResult,
        ])
        .capabilities(&[Capability::Config, Capability::Events])
        .build()
    }

    fn validate_config(config: String) -> Result<(), String> {
        Settings::parse(&config).map(drop)
    }

    fn on_llm_request(_ctx: CallContext, mut request: LlmRequest) -> RequestVerdict {
        let settings = settings();
        let (found, changed) = treat_texts(
            |f| text::visit_request_texts(&mut request, f),
            &settings,
            "request",
        );
        if found.is_empty() {
            RequestVerdict::Pass
        } else if settings.mode == Mode::Block {
            RequestVerdict::Deny(ironhost_policy::deny(
                "pii_detected",
                &format!("the request contains personal data ({})", kinds_of(&found)),
            ))
        } else if changed {
            RequestVerdict::Rewrite(request)
        } else {
            RequestVerdict::Pass
        }
    }

    fn on_llm_response(
        _ctx: CallContext,
        request: LlmRequest,
        outcome: LlmOutcome,
    ) -> ResponseVerdict {
        // A streamed answer was scanned chunk by chunk; its findings are already reported.
        let LlmOutcome::Ok(mut response) = outcome else {
            return ResponseVerdict::Pass;
        };
        if request.stream {
            return ResponseVerdict::Pass;
        }
        let settings = settings();
        let (found, changed) = treat_texts(
            |f| text::visit_message_texts(&mut response.message, f),
            &settings,
            "response",
        );
        if found.is_empty() {
            ResponseVerdict::Pass
        } else if settings.mode == Mode::Block {
            ResponseVerdict::Deny(ironhost_policy::deny(
                "pii_detected",
                &format!("the answer contains personal data ({})", kinds_of(&found)),
            ))
        } else if changed {
            ResponseVerdict::Rewrite(response)
        } else {
            ResponseVerdict::Pass
        }
    }

    fn on_llm_chunk(_ctx: CallContext, state: StreamState, chunk: LlmChunk) -> ChunkVerdict {
        let settings = settings();
        let combined = state.held + &chunk.text;
        // Only findings wholly in the released part count now; the held tail is scanned again
        // with the next chunk.
        let (cut, findings) = stream_step(&settings, &combined, chunk.last);
        let (ready, hold) = combined.split_at(cut);
        if !findings.is_empty() {
            report(
                ready,
                &findings,
                "stream",
                settings.mode,
                state.emitted_chars,
            );
            if settings.mode == Mode::Block {
                return ChunkVerdict::Deny(ironhost_policy::deny(
                    "pii_detected",
                    &format!(
                        "the answer contains personal data ({})",
                        kinds_of(&findings)
                    ),
                ));
            }
        }
        let emit = if settings.mode == Mode::Redact {
            redact(ready, &findings)
        } else {
            ready.to_owned()
        };
        ChunkVerdict::Release(ChunkRelease {
            emit,
            hold: hold.to_owned(),
        })
    }

    fn on_tool_result(_ctx: CallContext, _call: ToolCall, outcome: ToolOutcome) -> ResultVerdict {
        let ToolOutcome::Ok(json) = outcome else {
            return ResultVerdict::Pass;
        };
        let settings = settings();
        let findings = settings.findings(&json);
        if findings.is_empty() {
            return ResultVerdict::Pass;
        }
        report(&json, &findings, "tool-result", settings.mode, 0);
        match settings.mode {
            Mode::Block => ResultVerdict::Deny(ironhost_policy::deny(
                "pii_detected",
                &format!(
                    "the tool result contains personal data ({})",
                    kinds_of(&findings)
                ),
            )),
            // The markers hold no quotes or backslashes, so the JSON stays valid.
            Mode::Redact => ResultVerdict::Rewrite(ToolOutcome::Ok(redact(&json, &findings))),
            Mode::Warn => ResultVerdict::Pass,
        }
    }
}

ironhost_policy::export_policy!(PiiRedact);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_json: &str) -> Settings {
        Settings::parse(toml_json).expect("valid config")
    }

    #[test]
    fn redaction_replaces_each_value_with_its_marker() {
        let s = settings("{}");
        let text = "mail bob@x.io or call (415) 555-2671, ssn 078-05-1120";
        let out = redact(text, &s.findings(text));
        assert_eq!(
            out,
            "mail [EMAIL_REDACTED] or call [PHONE_REDACTED], ssn [SSN_REDACTED]"
        );
    }

    #[test]
    fn allowlists_and_type_filters() {
        let s = settings(
            r#"{"allow-domains": ["example.com"], "allow-values": ["078-05-1120"], "types": ["email", "ssn"]}"#,
        );
        let text =
            "a@example.com a@mail.example.com b@other.org 078-05-1120 219-09-9999 (415) 555-2671";
        let kept: Vec<&str> = s
            .findings(text)
            .iter()
            .map(|f| &text[f.start..f.end])
            .collect();
        assert_eq!(kept, ["b@other.org", "219-09-9999"]);
    }

    #[test]
    fn config_errors_name_the_key() {
        assert!(
            Settings::parse(r#"{"mode": "shout"}"#)
                .unwrap_err()
                .contains("shout")
        );
        assert!(
            Settings::parse(r#"{"types": ["dna"]}"#)
                .unwrap_err()
                .contains("unknown type `dna`")
        );
        assert!(
            Settings::parse(r#"{"allow-domains": ["a@b.c"]}"#)
                .unwrap_err()
                .contains("allow-domains")
        );
        assert!(
            Settings::parse(r#"{"colour": 1}"#)
                .unwrap_err()
                .contains("colour")
        );
    }
}
