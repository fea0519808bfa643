//! `budget`: a spending limit in US dollars per agent.
//!
//! Before a call it estimates the most the call can cost (input tokens counted by the host, plus
//! the maximum output tokens, at the model's price) and **reserves** that amount atomically in
//! host state, refusing with `budget_exceeded` when spent + reserved + estimate would pass the
//! limit. When the answer arrives it releases the reservation and settles the actual cost from
//! the provider's usage. Streamed calls settle the same way (the host calls `on-llm-response`
//! after the stream), so streamed and non-streamed spend agree. A call that never completes
//! releases its reservation (`on-llm-abandoned`).
//!
//! Config:
//!
//! ```toml
//! limit-usd = 50.0                 # required; `ironhost start --budget` sets it
//! warning-threshold = 0.9          # budget.warning once per limit when spend crosses this share
//! default-max-output-tokens = 4096 # reserved when a request sets no max_output_tokens
//! unknown-model = "deny"           # deny | allow (free): a model without a price
//! [prices."my-model"]              # add or override prices, USD per million tokens
//! input = 1.0
//! output = 2.0
//! ```
//!
//! Money is kept in state as integer micro-dollars: `committed` (spent + reserved), `spent`,
//! `calls`, `warned:<limit micro-dollars>:<share>` once that threshold warned, and one
//! `reservation:<call-id>:<attempt>` per call in flight.

use std::collections::BTreeMap;

use ironhost_policy::events::{self, Severity};
use ironhost_policy::state::{AGENT, StateError};
use ironhost_policy::tokens::{self, ModelPrice};
use ironhost_policy::types::*;
use ironhost_policy::{Policy, config};
use serde::Deserialize;

/// Micro-dollars per dollar.
const MICROS: f64 = 1_000_000.0;

/// A price given in the config.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PriceOverride {
    pub input: f64,
    pub output: f64,
    pub cached_input: Option<f64>,
    pub cache_write: Option<f64>,
}

/// What to do with a model that has no price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownModel {
    /// Refuse the call: spending cannot be bounded.
    #[default]
    Deny,
    /// Let it through at no cost.
    Allow,
}

/// The policy's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    pub limit_usd: f64,
    #[serde(default = "default_threshold")]
    pub warning_threshold: f64,
    #[serde(default = "default_max_output")]
    pub default_max_output_tokens: u32,
    #[serde(default)]
    pub unknown_model: UnknownModel,
    #[serde(default)]
    pub prices: BTreeMap<String, PriceOverride>,
}

fn default_threshold() -> f64 {
    0.9
}

fn default_max_output() -> u32 {
    4096
}

/// The largest limit, in USD: a billion dollars, far inside what micro-dollar counters hold.
pub const MAX_LIMIT_USD: f64 = 1e9;

impl Settings {
    /// Decode and check a config text.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let s: Settings = config::validate(text)?;
        if !(s.limit_usd.is_finite() && s.limit_usd >= 0.0) {
            return Err(format!(
                "limit-usd: {} is not a positive amount",
                s.limit_usd
            ));
        }
        if s.limit_usd > MAX_LIMIT_USD {
            return Err(format!(
                "limit-usd: {:e} is more than the largest limit, {MAX_LIMIT_USD:.0}",
                s.limit_usd
            ));
        }
        if !(s.warning_threshold > 0.0 && s.warning_threshold <= 1.0) {
            return Err(format!(
                "warning-threshold: {} is not in (0, 1]",
                s.warning_threshold
            ));
        }
        for (model, p) in &s.prices {
            let all = [Some(p.input), Some(p.output), p.cached_input, p.cache_write];
            if all.into_iter().flatten().any(|v| !v.is_finite() || v < 0.0) {
                return Err(format!(
                    "prices.{model}: prices must be finite and not negative"
                ));
            }
        }
        Ok(s)
    }

    fn limit_micros(&self) -> i64 {
        usd_to_micros(self.limit_usd)
    }

    /// The price of `model`: the config's, else the host's.
    fn price(&self, model: &str) -> Option<ModelPrice> {
        match self.prices.get(model) {
            Some(p) => Some(ModelPrice {
                input_per_mtok: p.input,
                output_per_mtok: p.output,
                cached_input_per_mtok: p.cached_input.unwrap_or(p.input),
                cache_write_per_mtok: p.cache_write.unwrap_or(p.input),
            }),
            None => tokens::price(model),
        }
    }
}

/// Dollars to micro-dollars, rounding up so the budget never under-counts.
pub fn usd_to_micros(usd: f64) -> i64 {
    (usd * MICROS).ceil().clamp(0.0, i64::MAX as f64) as i64
}

/// Micro-dollars to dollars.
pub fn micros_to_usd(micros: i64) -> f64 {
    micros as f64 / MICROS
}

static SETTINGS: config::Cached<Settings> = config::Cached::new();

/// How many answers `extra` (the request's parameters the neutral form does not model) asks
/// for: OpenAI's `n`, 1 when absent or not a positive integer.
fn choices(extra: &str) -> u32 {
    serde_json::from_str::<serde_json::Value>(extra)
        .ok()
        .and_then(|v| v.get("n")?.as_u64())
        .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX).max(1))
}

fn reservation_key(ctx: &CallContext) -> String {
    format!("reservation:{}:{}", ctx.call_id, ctx.attempt)
}

fn state_failure(what: &str, e: StateError) -> Denial {
    ironhost_policy::deny(
        "budget_unavailable",
        &format!("budget state {what} failed: {e:?}"),
    )
}

/// Release the reservation of `ctx`'s call (if any) and settle `actual` micro-dollars.
fn settle(ctx: &CallContext, settings: &Settings, actual: Option<i64>) {
    let key = reservation_key(ctx);
    // Nothing reserved for this call (never seen, or already settled): nothing to do.
    let Ok(Some(text)) = AGENT.get(&key) else {
        return;
    };
    // Claim the reservation: of two settlements of one call, only one wins.
    if !AGENT
        .compare_and_swap(&key, Some(&text), None)
        .unwrap_or(false)
    {
        return;
    }
    let reserved: i64 = text.parse().unwrap_or(0);
    let cost = actual.unwrap_or(0);
    let _ = AGENT.add("committed", cost - reserved);
    if actual.is_none() {
        return;
    }
    let spent = AGENT.add("spent", cost).unwrap_or(0);
    let calls = AGENT.add("calls", 1).unwrap_or(1);
    report(settings, spent, calls, cost);
}

fn report(settings: &Settings, spent: i64, calls: i64, last: i64) {
    let limit = settings.limit_micros();
    let percent = if limit > 0 {
        spent as f64 * 100.0 / limit as f64
    } else {
        100.0
    };
    let average = spent as f64 / calls.max(1) as f64;
    let remaining_calls = if average > 0.0 {
        ((limit - spent).max(0) as f64 / average).floor()
    } else {
        f64::INFINITY
    };
    let status = if spent > limit {
        "exceeded"
    } else if percent >= settings.warning_threshold * 100.0 {
        "approaching"
    } else {
        "under budget"
    };
    events::emit(
        "budget.cost",
        Severity::Info,
        &serde_json::json!({
            "spent_usd": micros_to_usd(spent),
            "limit_usd": settings.limit_usd,
            "percent_used": (percent * 100.0).round() / 100.0,
            "calls": calls,
            "last_call_usd": micros_to_usd(last),
            "average_usd": average / MICROS,
            "projected_calls_left": if remaining_calls.is_finite() { serde_json::json!(remaining_calls) } else { serde_json::Value::Null },
            "status": status,
        }),
    );
    // Once per threshold: the flag is keyed by the limit and the share, so a raised limit
    // warns again when its own threshold is crossed.
    let warned = format!("warned:{limit}:{}", settings.warning_threshold);
    if percent >= settings.warning_threshold * 100.0
        && AGENT
            .compare_and_swap(&warned, None, Some("1"))
            .unwrap_or(false)
    {
        events::emit(
            "budget.warning",
            Severity::Medium,
            &serde_json::json!({
                "spent_usd": micros_to_usd(spent),
                "limit_usd": settings.limit_usd,
                "percent_used": (percent * 100.0).round() / 100.0,
                "threshold": settings.warning_threshold,
            }),
        );
    }
}

/// The policy.
#[derive(Debug)]
pub struct Budget;

impl Policy for Budget {
    fn describe() -> PolicyInfo {
        ironhost_policy::info(
            "budget",
            env!("CARGO_PKG_VERSION"),
            "Keeps each agent's LLM spending under its limit",
        )
        .hooks(&[Hook::LlmRequest, Hook::LlmResponse, Hook::LlmAbandoned])
        .capabilities(&[
            Capability::Config,
            Capability::Events,
            Capability::State,
            Capability::Tokens,
        ])
        .build()
    }

    fn validate_config(config: String) -> Result<(), String> {
        Settings::parse(&config).map(drop)
    }

    fn on_llm_request(ctx: CallContext, request: LlmRequest) -> RequestVerdict {
        let settings = match SETTINGS.get() {
            Ok(s) => s,
            Err(e) => return RequestVerdict::Deny(ironhost_policy::deny("budget_unavailable", e)),
        };
        let Some(price) = settings.price(&request.model) else {
            return match settings.unknown_model {
                UnknownModel::Allow => RequestVerdict::Pass,
                UnknownModel::Deny => RequestVerdict::Deny(ironhost_policy::deny(
                    "unpriced_model",
                    &format!(
                        "no price for model `{}` (upstream `{}`), so its spending cannot be \
                         bounded: price it under [pricing.models], alias it to a priced model \
                         in its [[llm.upstreams]] `models`, or add it under `prices` in the \
                         budget config",
                        request.model, request.provider
                    ),
                )),
            };
        };
        let input = tokens::count_messages(&request.model, &request.messages);
        // Each answer asked for (OpenAI's `n`) is billed for its own output.
        let output = request
            .max_output_tokens
            .unwrap_or(settings.default_max_output_tokens)
            .saturating_mul(choices(&request.extra));
        let estimate = usd_to_micros(tokens::worst_case_usd(&price, input, output));
        let limit = settings.limit_micros();
        match AGENT.add_within("committed", estimate, limit) {
            Ok(_) => {}
            Err(StateError::CeilingExceeded(committed)) => {
                events::emit(
                    "budget.exceeded",
                    Severity::High,
                    &serde_json::json!({
                        "limit_usd": settings.limit_usd,
                        "committed_usd": micros_to_usd(committed),
                        "estimate_usd": micros_to_usd(estimate),
                        "model": request.model,
                    }),
                );
                return RequestVerdict::Deny(ironhost_policy::deny(
                    "budget_exceeded",
                    &format!(
                        "budget of ${:.2} reached: ${:.4} spent or reserved, this call could cost up to ${:.4}",
                        settings.limit_usd,
                        micros_to_usd(committed),
                        micros_to_usd(estimate)
                    ),
                ));
            }
            Err(e) => return RequestVerdict::Deny(state_failure("reserve", e)),
        }
        if let Err(e) = AGENT.set(&reservation_key(&ctx), &estimate.to_string()) {
            let _ = AGENT.add("committed", -estimate);
            return RequestVerdict::Deny(state_failure("record", e));
        }
        RequestVerdict::Pass
    }

    fn on_llm_response(
        ctx: CallContext,
        request: LlmRequest,
        outcome: LlmOutcome,
    ) -> ResponseVerdict {
        let Ok(settings) = SETTINGS.get() else {
            return ResponseVerdict::Pass;
        };
        let actual = match &outcome {
            // Failed calls are not billed by the providers.
            LlmOutcome::Error(_) => Some(0),
            LlmOutcome::Ok(response) => {
                let model = if response.model.is_empty() {
                    &request.model
                } else {
                    &response.model
                };
                match (
                    response.usage,
                    settings
                        .price(model)
                        .or_else(|| settings.price(&request.model)),
                ) {
                    (Some(usage), Some(price)) => {
                        Some(usd_to_micros(tokens::cost_usd(&price, &usage)))
                    }
                    // No usage reported: keep the reservation as the cost (never under-count).
                    _ => AGENT.get_i64(&reservation_key(&ctx)).ok(),
                }
            }
        };
        settle(&ctx, settings, actual);
        ResponseVerdict::Pass
    }

    fn on_llm_abandoned(ctx: CallContext, request: LlmRequest, abandonment: Abandonment) {
        let Ok(settings) = SETTINGS.get() else {
            return;
        };
        let actual = abandonment.usage.map(|usage| {
            settings
                .price(&request.model)
                .map_or(0, |price| usd_to_micros(tokens::cost_usd(&price, &usage)))
        });
        settle(&ctx, settings, actual);
    }
}

ironhost_policy::export_policy!(Budget);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_rounds_up_to_the_micro_dollar() {
        assert_eq!(usd_to_micros(0.0000001), 1);
        assert_eq!(usd_to_micros(50.0), 50_000_000);
        assert_eq!(micros_to_usd(1_500_000), 1.5);
    }

    #[test]
    fn each_answer_asked_for_is_reserved() {
        assert_eq!(choices("{}"), 1);
        assert_eq!(choices(r#"{"n":4,"seed":7}"#), 4);
        assert_eq!(choices(r#"{"n":0}"#), 1);
        assert_eq!(choices(r#"{"n":"4"}"#), 1);
        assert_eq!(choices(r#"{"n":1e30}"#), 1);
        assert_eq!(choices(r#"{"n":99999999999}"#), u32::MAX);
        assert_eq!(choices("not json"), 1);
    }

    #[test]
    fn config_is_checked() {
        assert!(Settings::parse("{}").unwrap_err().contains("limit-usd"));
        assert!(
            Settings::parse(r#"{"limit-usd": -1}"#)
                .unwrap_err()
                .contains("limit-usd")
        );
        assert!(
            Settings::parse(r#"{"limit-usd": 5, "warning-threshold": 1.5}"#)
                .unwrap_err()
                .contains("warning-threshold")
        );
        assert!(
            Settings::parse(r#"{"limit-usd": 5, "prices": {"m": {"input": -1, "output": 1}}}"#)
                .unwrap_err()
                .contains("prices.m")
        );
        assert!(
            Settings::parse(r#"{"limit-usd": 1e308}"#)
                .unwrap_err()
                .contains("largest limit")
        );
        Settings::parse(r#"{"limit-usd": 1e9}"#).expect("the largest limit");
        let s = Settings::parse(r#"{"limit-usd": 5, "unknown-model": "allow"}"#).expect("valid");
        assert_eq!(s.unknown_model, UnknownModel::Allow);
        assert_eq!(s.default_max_output_tokens, 4096);
    }
}
