//! The host side of the `ironhost:policy` imports: one file per WIT interface, plus the
//! per-store context ([`PolicyCtx`]) they operate on.
//!
//! Capabilities are checked at admission (a component may only import what its bundle entry
//! grants), so the functions here do not check grants again on every call.

mod clock;
mod config;
mod events;
mod log;
mod secrets;
mod state;
mod tokens;

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::bindings::wit;
use super::sandbox::{self, StderrTail};
use super::state::{MemoryState, StateBackend};
use crate::model::{Severity, TokenMeter};

/// Largest log line kept, in bytes.
pub const MAX_LOG_BYTES: usize = 16 * 1024;
/// Most events one hook call may emit; the rest are dropped and logged.
pub const MAX_EVENTS_PER_CALL: usize = 64;
/// Log lines one policy may cause a second: its own `log.write` lines and the host's warnings
/// about it (refused events, failures). The rest are counted and reported in one line.
pub const MAX_LOG_LINES_PER_SEC: u64 = 50;
/// Events one policy may emit a second, PII findings aside (they are audit records, bounded by
/// [`MAX_EVENTS_PER_CALL`] only). The rest are dropped and counted in one warning a second.
pub const MAX_EVENTS_PER_SEC: u64 = 1000;

/// Secret values shorter than this are not scrubbed from what a policy writes: masking every
/// occurrence of a three-letter value would mangle ordinary text.
pub const MIN_SCRUBBED_SECRET: usize = 8;

/// The values of the secrets a policy has read, so the host can keep them out of everything the
/// policy writes (logs, events, state, denials, rewrites): a granted secret is for the policy's
/// own use, never for passing on. Shared by all its instances (an instance may keep a value in
/// its memory from one call to the next).
#[derive(Default)]
pub struct SeenSecrets {
    any: std::sync::atomic::AtomicBool,
    values: parking_lot::RwLock<Vec<(String, zeroize::Zeroizing<String>)>>,
}

impl std::fmt::Debug for SeenSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.values.read().iter().map(|(n, _)| n.clone()).collect();
        f.debug_struct("SeenSecrets")
            .field("names", &names)
            .finish()
    }
}

impl SeenSecrets {
    /// The policy read secret `name`, whose value is `value`.
    pub fn note(&self, name: &str, value: &str) {
        if value.len() < MIN_SCRUBBED_SECRET {
            return;
        }
        // A policy that reads a secret on every call finds it known: a shared lock is enough.
        let known = |values: &[(String, zeroize::Zeroizing<String>)]| {
            values.iter().any(|(_, v)| v.as_str() == value)
        };
        if known(&self.values.read()) {
            return;
        }
        let mut values = self.values.write();
        if !known(&values) {
            values.push((name.to_owned(), zeroize::Zeroizing::new(value.to_owned())));
        }
        self.any.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the policy has read any secret worth scrubbing.
    pub fn any(&self) -> bool {
        self.any.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replace every secret value the policy has read in `text` with `[SECRET:NAME]`.
    pub fn scrub(&self, text: &mut String) {
        if !self.any() {
            return;
        }
        for (name, value) in self.values.read().iter() {
            if text.contains(value.as_str()) {
                *text = text.replace(value.as_str(), &format!("[SECRET:{name}]"));
            }
        }
    }

    /// [`SeenSecrets::scrub`] on every string (and key) of a JSON value.
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        if !self.any() {
            return;
        }
        match value {
            serde_json::Value::String(s) => self.scrub(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (mut k, mut v) in entries {
                    self.scrub(&mut k);
                    self.scrub_json(&mut v);
                    map.insert(k, v);
                }
            }
            _ => {}
        }
    }
}

/// What a [`RateBudget`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Log lines a policy causes: [`MAX_LOG_LINES_PER_SEC`].
    LogLines,
    /// Events a policy emits, PII findings (audit records) aside: [`MAX_EVENTS_PER_SEC`].
    Events,
}

impl Allowance {
    /// How many a second.
    pub fn per_sec(self) -> u64 {
        match self {
            Allowance::LogLines => MAX_LOG_LINES_PER_SEC,
            Allowance::Events => MAX_EVENTS_PER_SEC,
        }
    }
}

/// A per-second allowance of one policy, shared by all its instances. What is over it is
/// counted and reported in one warning when the next second starts.
#[derive(Debug)]
pub struct RateBudget {
    allowance: Allowance,
    /// The policy's name, for the warnings.
    policy: String,
    /// The second (since the process started) the counts are for.
    second: std::sync::atomic::AtomicU64,
    used: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl RateBudget {
    pub fn new(allowance: Allowance, policy: &str) -> RateBudget {
        RateBudget {
            allowance,
            policy: policy.to_owned(),
            second: Default::default(),
            used: Default::default(),
            suppressed: Default::default(),
        }
    }

    /// Whether the policy may have one more now. The first one of a new second first reports
    /// how many were suppressed before it.
    pub fn admit(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        static START: std::sync::LazyLock<std::time::Instant> =
            std::sync::LazyLock::new(std::time::Instant::now);
        let now = START.elapsed().as_secs();
        let second = self.second.load(Relaxed);
        let limit = self.allowance.per_sec();
        if now != second
            && self
                .second
                .compare_exchange(second, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.used.store(0, Relaxed);
            self.report();
        }
        if self.used.fetch_add(1, Relaxed) < limit {
            true
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            false
        }
    }

    /// Say how many were suppressed since the last report, if any.
    pub fn report(&self) {
        let suppressed = self
            .suppressed
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        let (policy, limit) = (self.policy.as_str(), self.allowance.per_sec());
        if suppressed > 0 {
            match self.allowance {
                Allowance::LogLines => tracing::warn!(
                    policy,
                    suppressed,
                    "{suppressed} log lines about policy `{policy}` suppressed (more than \
                         {limit} a second)"
                ),
                Allowance::Events => tracing::warn!(
                    policy,
                    suppressed,
                    "{suppressed} events from policy `{policy}` dropped (more than {limit} \
                         a second)"
                ),
            }
        }
    }
}

impl Drop for RateBudget {
    /// What was suppressed in the policy's last second is reported when it leaves the chain.
    fn drop(&mut self) {
        self.report();
    }
}

/// Resolves secrets by name: the `secrets` capability.
pub trait SecretResolver: Send + Sync {
    /// The secret `name` in `environment`, if there is one.
    fn get(&self, environment: &str, name: &str) -> Option<String>;
    /// Policy `policy` was given secret `name`: for the audit (aggregated is fine; the call
    /// path must not wait for it).
    fn note_read(&self, _policy: &str, _environment: &str, _name: &str) {}
}

/// A resolver that knows no secrets (the host has no secret store configured).
#[derive(Debug, Default)]
pub struct NoSecrets;

impl SecretResolver for NoSecrets {
    fn get(&self, _environment: &str, _name: &str) -> Option<String> {
        None
    }
}

/// The services behind the capabilities, shared by every policy of a host.
#[derive(Clone)]
pub struct HostServices {
    pub state: Arc<dyn StateBackend>,
    pub tokens: Arc<dyn TokenMeter>,
    pub secrets: Arc<dyn SecretResolver>,
    pub fingerprints: Fingerprinter,
}

impl Default for HostServices {
    fn default() -> Self {
        HostServices {
            state: Arc::new(MemoryState::default()),
            tokens: Arc::new(crate::model::tokens::ModelTokenMeter::embedded()),
            secrets: Arc::new(NoSecrets),
            fingerprints: Fingerprinter::random(),
        }
    }
}

/// Keyed fingerprints of sensitive values (`events.fingerprint`): HMAC-SHA-256.
#[derive(Clone)]
pub struct Fingerprinter {
    key: Arc<[u8; 32]>,
}

impl Fingerprinter {
    /// A fingerprinter with this key. The store keeps one key per installation so fingerprints
    /// stay comparable across restarts.
    pub fn with_key(key: [u8; 32]) -> Fingerprinter {
        Fingerprinter { key: Arc::new(key) }
    }

    /// A fingerprinter with a fresh random key: fingerprints are comparable within this
    /// process only.
    pub fn random() -> Fingerprinter {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // Without OS randomness, fall back to std's randomly seeded hasher keys.
            use std::hash::{BuildHasher, Hasher};
            for (i, chunk) in key.chunks_mut(8).enumerate() {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_usize(i);
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        Fingerprinter::with_key(key)
    }

    /// The fingerprint of `value`, 64 hex digits.
    pub fn fingerprint(&self, value: &str) -> String {
        use hmac::{Mac, SimpleHmac};
        let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(&self.key[..])
            .expect("HMAC accepts keys of any length");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::Fingerprinter;
    use sha2::Digest;

    #[test]
    fn fingerprints_are_keyed_deterministic_and_not_plain_hashes() {
        let a = Fingerprinter::with_key([7; 32]);
        let fp = a.fingerprint("123-45-6789");
        assert_eq!(fp.len(), 64);
        assert_eq!(fp, a.fingerprint("123-45-6789"));
        assert_ne!(fp, a.fingerprint("123-45-6788"));
        assert_ne!(
            fp,
            Fingerprinter::with_key([8; 32]).fingerprint("123-45-6789")
        );
        assert_ne!(fp, hex::encode(sha2::Sha256::digest(b"123-45-6789")));
        assert_ne!(
            Fingerprinter::random().fingerprint("x"),
            Fingerprinter::random().fingerprint("x")
        );
    }
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprinter(key hidden)")
    }
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices").finish_non_exhaustive()
    }
}

/// An event a policy emitted during one hook call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyEvent {
    pub policy: String,
    pub kind: String,
    pub severity: Severity,
    pub detail: serde_json::Value,
    /// The value behind the detail's `fingerprint`, when the policy fingerprinted it in this
    /// call: kept only for the encrypted audit, never serialized or printed.
    #[serde(skip)]
    pub original: Option<SensitiveValue>,
}

/// A sensitive value (a PII finding's original text) on its way to encrypted storage. It has no
/// `Serialize`, and `Debug` hides it, so it cannot reach a log, an event or a response.
#[derive(Clone, PartialEq, Eq)]
pub struct SensitiveValue(Arc<zeroize::Zeroizing<String>>);

impl SensitiveValue {
    pub fn new(value: String) -> SensitiveValue {
        SensitiveValue(Arc::new(zeroize::Zeroizing::new(value)))
    }

    /// The value, for encryption.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SensitiveValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[sensitive]")
    }
}

/// What a policy instance knows about itself; shared by all its instances.
#[derive(Debug)]
pub struct PolicyIdentity {
    /// The policy's name in the chain.
    pub name: String,
    /// The `config` table as a JSON object text.
    pub config_json: String,
    /// The secret names the policy may read (`None`: every secret).
    pub allowed_secrets: Option<std::collections::BTreeSet<String>>,
    /// How many more log lines it may cause this second.
    pub log_lines: RateBudget,
    /// How many more events it may emit this second.
    pub events: RateBudget,
    /// The secrets it has read, kept out of what it writes.
    pub seen_secrets: SeenSecrets,
}

/// Per-call data: who the call is for and what the policy emitted.
#[derive(Default)]
pub(crate) struct CallScope {
    pub agent_id: Option<String>,
    pub environment: String,
    pub events: Vec<PolicyEvent>,
    pub dropped_events: usize,
    /// Values fingerprinted in this call (fingerprint, value), so an event naming the
    /// fingerprint can carry the value to the encrypted audit.
    pub fingerprinted: Vec<(String, SensitiveValue)>,
    /// The admission probe runs against scratch state so it never touches real values.
    pub state_override: Option<Arc<dyn StateBackend>>,
}

/// Memory and table caps of one policy instance. The memory cap counts every linear memory
/// of the instance together.
pub(crate) struct Limiter {
    pub memory_cap: usize,
    pub memory_used: usize,
    pub memory_hit: bool,
}

/// Most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memory_used.saturating_sub(current)).saturating_add(desired);
        if total > self.memory_cap {
            self.memory_hit = true;
            wasmtime::bail!(
                "memory limit of {} MiB reached (asked for {} MiB in all)",
                self.memory_cap >> 20,
                total.div_ceil(1 << 20)
            );
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The data of one policy instance's wasmtime store.
pub struct PolicyCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) identity: Arc<PolicyIdentity>,
    pub(crate) services: HostServices,
    pub(crate) call: CallScope,
    pub(crate) stderr: StderrTail,
}

impl std::fmt::Debug for PolicyCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCtx")
            .field("policy", &self.identity.name)
            .finish_non_exhaustive()
    }
}

impl PolicyCtx {
    /// A fresh context with the locked-down WASI of [`sandbox`].
    pub(crate) fn new(
        identity: Arc<PolicyIdentity>,
        services: HostServices,
        memory_cap: usize,
    ) -> PolicyCtx {
        let stderr = StderrTail::default();
        PolicyCtx {
            wasi: sandbox::wasi_ctx(&stderr),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_cap,
                memory_used: 0,
                memory_hit: false,
            },
            identity,
            services,
            call: CallScope::default(),
            stderr,
        }
    }

    /// The last line the policy wrote to stderr in this call (a panic message, usually).
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        self.stderr.last_line()
    }

    fn state_backend(&self) -> &Arc<dyn StateBackend> {
        self.call
            .state_override
            .as_ref()
            .unwrap_or(&self.services.state)
    }
}

impl WasiView for PolicyCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::types::Host for PolicyCtx {}
