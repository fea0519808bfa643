//! Host configuration: `ironhost.toml`, then `IRONHOST_*` environment variables, then command
//! line flags, each overriding the one before. Everything is checked before anything starts;
//! an error names the setting, where it came from, and why it is refused.

pub mod egress;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::llm::LlmMode;
use crate::llm::http::ProviderConfig;
use crate::llm::simulator::SimulatorConfig;
pub use crate::logging::LogFormat;

/// The file read when `--config` is not given and it exists.
pub const DEFAULT_FILE: &str = "ironhost.toml";

/// Default listen address of the control plane.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// `IRONHOST_*` variables that are not settings of this file (read elsewhere;
/// `IRONHOST_TEST_POSTGRES_URL` by the tests only).
const OTHER_VARS: [&str; 10] = [
    "IRONHOST_LOG",
    "IRONHOST_CACHE_DIR",
    "IRONHOST_ADMISSION_DEADLINE_MS",
    "IRONHOST_SHARED",
    "IRONHOST_BLESS",
    "IRONHOST_MASTER_KEY",
    "IRONHOST_ADMIN_PASSWORD",
    "IRONHOST_CONFIG",
    "IRONHOST_DATABASE_URL",
    "IRONHOST_TEST_POSTGRES_URL",
];

/// A refused setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason} (from {origin})")]
pub struct ConfigError {
    /// The setting, as written in the file (`budget`, `llm.timeout-ms`).
    pub key: String,
    pub reason: String,
    /// `ironhost.toml`, `IRONHOST_BUDGET`, `--budget`...
    pub origin: String,
}

impl ConfigError {
    pub fn new(key: &str, reason: impl Into<String>, origin: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            reason: reason.into(),
            origin: origin.into(),
        }
    }
}

/// `ironhost.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub budget: Option<f64>,
    pub bundle: Option<String>,
    pub safety_mode: Option<String>,
    pub env: Option<String>,
    pub log_format: Option<String>,
    pub verbose: Option<bool>,
    pub restart: Option<String>,
    /// How the agent's process is kept from the host's secrets: `sandbox` or `process`.
    pub isolation: Option<String>,
    #[serde(default)]
    pub llm: LlmFileConfig,
    pub simulator: Option<SimulatorConfig>,
    #[serde(default)]
    pub pricing: PricingFileConfig,
    /// The ironhost home: the store, the generated master key.
    pub home: Option<PathBuf>,
    #[serde(default)]
    pub api: ApiFileConfig,
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    #[serde(default)]
    pub egress: egress::EgressFileConfig,
}

/// `[api]`: the control plane.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiFileConfig {
    /// Serve the control plane beside the agent (default true).
    pub enabled: Option<bool>,
    /// Address to listen on (default 127.0.0.1:7400).
    pub listen: Option<String>,
}

/// Where the control plane listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    pub enabled: bool,
    pub listen: String,
    /// True when the address was chosen (not the default): then a busy port is an error.
    pub explicit: bool,
}

/// The default ironhost home, relative to the working directory.
pub const DEFAULT_HOME: &str = ".ironhost";

/// `[llm]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LlmFileConfig {
    pub mode: Option<LlmMode>,
    pub timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    /// Replaced by `[[llm.upstreams]]`: read only to say so.
    pub intercept_hosts: Option<toml::Value>,
    /// More upstreams (OpenRouter, Azure OpenAI, a local OpenAI-compatible server).
    #[serde(default)]
    pub upstreams: Vec<crate::llm::upstreams::UpstreamConfig>,
    /// Request parts the host does not model: `scan` (the default) or `refuse`.
    pub unknown_parts: Option<crate::llm::wire::UnknownParts>,
    pub openai: Option<ProviderConfig>,
    pub anthropic: Option<ProviderConfig>,
}

/// `[pricing]`: `file` replaces the embedded table; `[pricing.models.NAME]` adds or replaces
/// single models.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PricingFileConfig {
    pub file: Option<PathBuf>,
    pub models: Option<toml::Table>,
}

/// How the agent's process (the worker its Python runs in) is kept from the host's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A process of its own with a clean environment, in namespaces where the ironhost home
    /// is hidden, under Landlock, without capabilities (the default).
    Sandbox,
    /// A process of its own with a clean environment only: it can read what the host's user
    /// can read, the store and key files included. For kernels without user namespaces or
    /// Landlock.
    Process,
}

impl Isolation {
    /// `sandbox` or `process`.
    pub fn parse(text: &str) -> Result<Isolation, String> {
        match text {
            "sandbox" => Ok(Isolation::Sandbox),
            "process" => Ok(Isolation::Process),
            _ => Err(format!("`{text}` is not an isolation (sandbox or process)")),
        }
    }
}

/// When to restart a crashed agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Never,
    /// Up to this many restarts after non-zero exits.
    OnFailure(u32),
}

impl Restart {
    /// `no`, `on-failure` (3 restarts) or `on-failure:N`.
    pub fn parse(text: &str) -> Result<Restart, String> {
        match text {
            "no" | "never" => Ok(Restart::Never),
            "on-failure" => Ok(Restart::OnFailure(3)),
            _ => match text.strip_prefix("on-failure:").map(str::parse::<u32>) {
                Some(Ok(n)) if n >= 1 => Ok(Restart::OnFailure(n)),
                Some(_) => Err(format!(
                    "`{text}`: the restart count after `on-failure:` must be a whole number of at least 1"
                )),
                None => Err(format!(
                    "`{text}` is not `no`, `on-failure` or `on-failure:N`"
                )),
            },
        }
    }
}

/// Which bundle to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleChoice {
    Default,
    Dir(PathBuf),
}

/// The flags of `ironhost start` that are settings (the rest are positional).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub budget: Option<f64>,
    pub bundle: Option<String>,
    pub safety_mode: Option<String>,
    pub env: Option<String>,
    pub log_format: Option<String>,
    pub verbose: bool,
    pub restart: Option<String>,
    pub listen: Option<String>,
    pub no_api: bool,
}

/// The checked settings of one `ironhost start`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub budget: Option<f64>,
    pub bundle: BundleChoice,
    pub safety_mode: Option<String>,
    pub environment: String,
    pub log_format: LogFormat,
    pub verbose: bool,
    pub restart: Restart,
    pub isolation: Isolation,
    pub llm: LlmFileConfig,
    /// The built-in upstreams and `[[llm.upstreams]]`, checked.
    pub upstreams: std::sync::Arc<crate::llm::upstreams::Upstreams>,
    /// What the agent may reach besides its upstreams (`[egress]`).
    pub egress: std::sync::Arc<egress::Egress>,
    pub simulator: SimulatorConfig,
    pub pricing: crate::model::pricing::PricingTable,
    /// Where the file settings came from, if a file was read.
    pub file: Option<PathBuf>,
    /// The ironhost home (store, generated master key).
    pub home: PathBuf,
    pub api: ApiSettings,
    pub alerts: crate::alerts::AlertsConfig,
    /// Policies left out of the bundle (the Python SDK's `pii_detection=False`,
    /// `circuit_breaker=False`): by policy name; a name the bundle lacks is already left out.
    pub without: Vec<String>,
    /// The agent runs inside a Python program through the SDK: recorded in the store (the
    /// control plane never stops it with SIGTERM), and its engine makes room for fewer policy
    /// instances (a program may open many agents).
    pub in_process: bool,
}

/// A value with where it came from.
struct Sourced<T> {
    value: T,
    source: String,
}

fn pick<T: Clone>(
    file: Option<T>,
    env: Option<(T, String)>,
    flag: Option<T>,
    flag_name: &str,
    file_name: &str,
) -> Option<Sourced<T>> {
    if let Some(v) = flag {
        return Some(Sourced {
            value: v,
            source: flag_name.to_owned(),
        });
    }
    if let Some((v, var)) = env {
        return Some(Sourced {
            value: v,
            source: var,
        });
    }
    file.map(|v| Sourced {
        value: v,
        source: file_name.to_owned(),
    })
}

/// Parse the file; an error is (dotted key, reason, line).
fn parse_file(text: &str) -> Result<FileConfig, (String, String, usize)> {
    let line_of = |offset: usize| text[..offset.min(text.len())].lines().count().max(1);
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(s.start)).unwrap_or(1);
        ("config".to_owned(), e.message().trim().to_owned(), line)
    })?;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().trim().to_owned();
        let key = if path == "." {
            "config".to_owned()
        } else {
            path
        };
        let first = key.split('.').next_back().unwrap_or(&key).to_owned();
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(&first))
            .map(|i| i + 1)
            .unwrap_or(1);
        (key, message, line)
    })
}

/// Read the settings from `flags`, the environment `vars` and the config file.
pub fn load(
    flags: &Flags,
    vars: &BTreeMap<String, String>,
    cwd: &Path,
) -> Result<Settings, ConfigError> {
    // The file: --config, else IRONHOST_CONFIG, else ./ironhost.toml if present.
    let (path, explicit, path_source) = match (&flags.config, vars.get("IRONHOST_CONFIG")) {
        (Some(p), _) => (cwd.join(p), true, "--config".to_owned()),
        (None, Some(p)) => (cwd.join(p), true, "IRONHOST_CONFIG".to_owned()),
        (None, None) => (cwd.join(DEFAULT_FILE), false, DEFAULT_FILE.to_owned()),
    };
    let (file, file_path) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let f = parse_file(&text).map_err(|(key, reason, line)| {
                ConfigError::new(&key, reason, format!("{}:{line}", path.display()))
            })?;
            (f, Some(path.clone()))
        }
        Err(e) if explicit => {
            return Err(ConfigError::new(
                "config",
                format!("cannot read {}: {e}", path.display()),
                path_source,
            ));
        }
        Err(_) => (FileConfig::default(), None),
    };
    let file_name = file_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| DEFAULT_FILE.to_owned());

    // The environment: only known variables; a typo is an error, not a silent default.
    let mut env = BTreeMap::new();
    for (k, v) in vars {
        let Some(name) = k.strip_prefix("IRONHOST_") else {
            continue;
        };
        if OTHER_VARS.contains(&k.as_str()) {
            continue;
        }
        let key = match name {
            "BUDGET" => "budget",
            "BUNDLE" => "bundle",
            "SAFETY_MODE" => "safety-mode",
            "ENV" => "env",
            "LOG_FORMAT" => "log-format",
            "VERBOSE" => "verbose",
            "RESTART" => "restart",
            "ISOLATION" => "isolation",
            "LLM_MODE" => "llm.mode",
            "SIMULATOR_SEED" => "simulator.seed",
            "SIMULATOR_LATENCY_MS" => "simulator.latency-ms",
            "HOME" => "home",
            "LISTEN" => "api.listen",
            _ => {
                return Err(ConfigError::new(
                    k,
                    "unknown setting; see the README's configuration table for the IRONHOST_* variables",
                    "the environment",
                ));
            }
        };
        env.insert(key, (v.clone(), k.clone()));
    }
    let env_f64 = |key: &str| -> Result<Option<(f64, String)>, ConfigError> {
        env.get(key)
            .map(|(v, var)| {
                v.trim()
                    .parse::<f64>()
                    .map(|n| (n, var.clone()))
                    .map_err(|_| {
                        ConfigError::new(key, format!("`{v}` is not a number"), var.clone())
                    })
            })
            .transpose()
    };
    let env_str = |key: &str| env.get(key).map(|(v, var)| (v.clone(), var.clone()));

    let budget = pick(
        file.budget,
        env_f64("budget")?,
        flags.budget,
        "--budget",
        &file_name,
    );
    if let Some(b) = &budget
        && !(b.value.is_finite() && b.value > 0.0)
    {
        return Err(ConfigError::new(
            "budget",
            format!("{} is not a positive amount of US dollars", b.value),
            b.source.clone(),
        ));
    }

    let bundle = match pick(
        file.bundle.clone(),
        env_str("bundle"),
        flags.bundle.clone(),
        "--bundle",
        &file_name,
    ) {
        None => BundleChoice::Default,
        Some(b) if b.value == crate::policy::defaults::DEFAULT_BUNDLE_NAME => BundleChoice::Default,
        Some(b) => {
            // A bundle path in the file is relative to the file.
            let base = if b.source == file_name {
                file_path
                    .as_deref()
                    .and_then(Path::parent)
                    .unwrap_or(cwd)
                    .to_path_buf()
            } else {
                cwd.to_path_buf()
            };
            let dir = base.join(&b.value);
            if !dir.join("bundle.toml").is_file() {
                return Err(ConfigError::new(
                    "bundle",
                    format!(
                        "{} is not a bundle directory (no bundle.toml); use `default` for the built-in bundle",
                        dir.display()
                    ),
                    b.source,
                ));
            }
            BundleChoice::Dir(dir)
        }
    };

    let safety_mode = pick(
        file.safety_mode.clone(),
        env_str("safety-mode"),
        flags.safety_mode.clone(),
        "--safety-mode",
        &file_name,
    );
    if let Some(m) = &safety_mode
        && !["redact", "block", "warn"].contains(&m.value.as_str())
    {
        return Err(ConfigError::new(
            "safety-mode",
            format!("`{}` is not `redact`, `block` or `warn`", m.value),
            m.source.clone(),
        ));
    }

    let environment = pick(
        file.env.clone(),
        env_str("env"),
        flags.env.clone(),
        "--env",
        &file_name,
    );
    if let Some(e) = &environment
        && !["dev", "staging", "production"].contains(&e.value.as_str())
    {
        return Err(ConfigError::new(
            "env",
            format!("`{}` is not `dev`, `staging` or `production`", e.value),
            e.source.clone(),
        ));
    }

    let log_format = match pick(
        file.log_format.clone(),
        env_str("log-format"),
        flags.log_format.clone(),
        "--log-format",
        &file_name,
    ) {
        None => LogFormat::Human,
        Some(f) => match f.value.as_str() {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "log-format",
                    format!("`{other}` is not `human` or `json`"),
                    f.source,
                ));
            }
        },
    };

    let verbose = if flags.verbose {
        true
    } else if let Some((v, var)) = env_str("verbose") {
        match v.as_str() {
            "1" | "true" | "yes" => true,
            "0" | "false" | "no" | "" => false,
            _ => {
                return Err(ConfigError::new(
                    "verbose",
                    format!("`{v}` is not true or false"),
                    var,
                ));
            }
        }
    } else {
        file.verbose.unwrap_or(false)
    };

    let restart = match pick(
        file.restart.clone(),
        env_str("restart"),
        flags.restart.clone(),
        "--restart",
        &file_name,
    ) {
        None => Restart::Never,
        Some(r) => {
            Restart::parse(&r.value).map_err(|e| ConfigError::new("restart", e, r.source))?
        }
    };

    let isolation = match pick(
        file.isolation.clone(),
        env_str("isolation"),
        None,
        "",
        &file_name,
    ) {
        None => Isolation::Sandbox,
        Some(i) => {
            Isolation::parse(&i.value).map_err(|e| ConfigError::new("isolation", e, i.source))?
        }
    };

    let mut llm = file.llm.clone();
    if let Some((v, var)) = env_str("llm.mode") {
        llm.mode = Some(match v.as_str() {
            "auto" => LlmMode::Auto,
            "simulator" => LlmMode::Simulator,
            "live" => LlmMode::Live,
            _ => {
                return Err(ConfigError::new(
                    "llm.mode",
                    format!("`{v}` is not `auto`, `simulator` or `live`"),
                    var,
                ));
            }
        });
    }
    if llm.timeout_ms == Some(0) {
        return Err(ConfigError::new(
            "llm.timeout-ms",
            "must be more than 0",
            file_name.clone(),
        ));
    }
    if llm.intercept_hosts.is_some() {
        return Err(ConfigError::new(
            "llm.intercept-hosts",
            "replaced by [[llm.upstreams]] (name, base-url, format, key-secret): an intercepted \
             host is now sent to its own base URL with its own key, never to api.openai.com",
            file_name.clone(),
        ));
    }
    let upstreams = crate::llm::upstreams::Upstreams::new(
        llm.openai.as_ref().map(|p| p.base_url.as_str()),
        llm.anthropic.as_ref().map(|p| p.base_url.as_str()),
        &llm.upstreams,
    )
    .map_err(|(key, reason)| ConfigError::new(&key, reason, file_name.clone()))?;

    let home = match pick(
        file.home.clone(),
        env_str("home").map(|(v, var)| (PathBuf::from(v), var)),
        None,
        "",
        &file_name,
    ) {
        None => cwd.join(DEFAULT_HOME),
        Some(h) if h.value.as_os_str().is_empty() => {
            return Err(ConfigError::new("home", "must not be empty", h.source));
        }
        Some(h) => {
            let base = if h.source == file_name {
                file_path.as_deref().and_then(Path::parent).unwrap_or(cwd)
            } else {
                cwd
            };
            base.join(h.value)
        }
    };
    let listen = pick(
        file.api.listen.clone(),
        env_str("api.listen"),
        flags.listen.clone(),
        "--listen",
        &file_name,
    );
    if let Some(l) = &listen
        && l.value.parse::<std::net::SocketAddr>().is_err()
    {
        return Err(ConfigError::new(
            "api.listen",
            format!(
                "`{}` is not an address and port such as 127.0.0.1:7400",
                l.value
            ),
            l.source.clone(),
        ));
    }
    let api = ApiSettings {
        enabled: !flags.no_api && file.api.enabled.unwrap_or(true),
        explicit: listen.is_some(),
        listen: listen.map_or_else(|| DEFAULT_LISTEN.to_owned(), |l| l.value),
    };

    let mut simulator = file.simulator.clone().unwrap_or_default();
    if let Some((v, var)) = env_str("simulator.seed") {
        simulator.seed = v.parse().map_err(|_| {
            ConfigError::new(
                "simulator.seed",
                format!("`{v}` is not a whole number"),
                var,
            )
        })?;
    }
    if let Some((v, var)) = env_str("simulator.latency-ms") {
        simulator.latency_ms = v.parse().map_err(|_| {
            ConfigError::new(
                "simulator.latency-ms",
                format!("`{v}` is not a whole number of milliseconds"),
                var,
            )
        })?;
    }
    simulator.check().map_err(|e| {
        let (key, reason) = e.split_once(": ").unwrap_or(("simulator", e.as_str()));
        ConfigError::new(key, reason.to_owned(), file_name.clone())
    })?;

    let mut alerts = file.alerts.clone();
    alerts
        .check()
        .map_err(|(key, reason)| ConfigError::new(&key, reason, file_name.clone()))?;
    alerts
        .read_env(vars)
        .map_err(|(key, reason)| ConfigError::new(&key, reason, file_name.clone()))?;
    alerts
        .read_files(file_path.as_deref().and_then(Path::parent).unwrap_or(cwd))
        .map_err(|(key, reason)| ConfigError::new(&key, reason, file_name.clone()))?;

    let mut pricing = crate::model::pricing::PricingTable::embedded();
    if let Some(p) = &file.pricing.file {
        let base = file_path.as_deref().and_then(Path::parent).unwrap_or(cwd);
        let path = base.join(p);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(
                "pricing.file",
                format!("cannot read {}: {e}", path.display()),
                file_name.clone(),
            )
        })?;
        pricing = crate::model::pricing::PricingTable::parse(&text).map_err(|e| {
            ConfigError::new(
                "pricing.file",
                format!("{}: {e}", path.display()),
                file_name.clone(),
            )
        })?;
    }
    if let Some(models) = &file.pricing.models {
        pricing = pricing
            .with_overrides(models)
            .map_err(|e| ConfigError::new("pricing.models", e, file_name.clone()))?;
    }
    let pricing = pricing.with_aliases(upstreams.aliases());
    let egress = egress::Egress::new(&file.egress, &upstreams)
        .map_err(|(key, reason)| ConfigError::new(&key, reason, file_name.clone()))?;
    if egress.mode == egress::EgressMode::GovernedOnly && isolation == Isolation::Process {
        return Err(ConfigError::new(
            "egress.mode",
            "`governed-only` takes the agent's network away in its sandbox: it needs \
             isolation = \"sandbox\" (the default), not \"process\"",
            file_name.clone(),
        ));
    }

    Ok(Settings {
        budget: budget.map(|b| b.value),
        bundle,
        safety_mode: safety_mode.map(|m| m.value),
        environment: environment
            .map(|e| e.value)
            .unwrap_or_else(|| "dev".to_owned()),
        log_format,
        verbose,
        restart,
        isolation,
        llm,
        upstreams: std::sync::Arc::new(upstreams),
        egress: std::sync::Arc::new(egress),
        simulator,
        pricing,
        file: file_path,
        home,
        api,
        alerts,
        without: Vec::new(),
        in_process: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DEFAULT_FILE),
            "budget = 10.0\nenv = \"staging\"\nsafety-mode = \"warn\"\n",
        )
        .unwrap();
        let s = load(&Flags::default(), &vars(&[]), dir.path()).unwrap();
        assert_eq!((s.budget, s.environment.as_str()), (Some(10.0), "staging"));
        let s = load(
            &Flags::default(),
            &vars(&[("IRONHOST_BUDGET", "20")]),
            dir.path(),
        )
        .unwrap();
        assert_eq!(s.budget, Some(20.0));
        let flags = Flags {
            budget: Some(30.0),
            ..Flags::default()
        };
        let s = load(&flags, &vars(&[("IRONHOST_BUDGET", "20")]), dir.path()).unwrap();
        assert_eq!(s.budget, Some(30.0));
        assert_eq!(s.safety_mode.as_deref(), Some("warn"));
    }

    #[test]
    fn file_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DEFAULT_FILE);
        for (text, key) in [
            ("budgett = 5\n", "budgett"),
            ("budget = \"lots\"\n", "budget"),
            ("[llm]\ntimeout-ms = -3\n", "llm.timeout-ms"),
            ("[simulator]\nseeed = 1\n", "simulator.seeed"),
            (
                "[[simulator.replies]]\nwhen = \"a\"\ntext = \"b\"\ntool = \"t\"\n",
                "simulator.replies[0]",
            ),
            (
                "[[simulator.replies]]\nwhen = \"a\"\ntool = \"t\"\narguments = [1]\n",
                "simulator.replies[0].arguments",
            ),
            (
                "[[alerts.webhook]]\nurl = \"hooks.example.com\"\n",
                "alerts.webhook[0].url",
            ),
            (
                "[[alerts.webhook]]\nurl = \"http://127.0.0.1:9/\"\nevents = [\"budget\"]\n",
                "alerts.webhook[0].events",
            ),
            (
                "[[alerts.email]]\nto = [\"ops at company\"]\nsmtp = \"smtp://127.0.0.1\"\n",
                "alerts.email[0].to",
            ),
            (
                "[[alerts.email]]\nto = []\nsmtp = \"smtp://m\"\n",
                "alerts.email[0].to",
            ),
            (
                "[[alerts.email]]\nto = [\"ops@company.com\"]\nsmtp = \"http://m\"\n",
                "alerts.email[0].smtp",
            ),
            (
                "[[alerts.email]]\nto = [\"ops@company.com\"]\n",
                "alerts.email[0]",
            ),
            (
                "[[alerts.email]]\nto = [\"ops@company.com\"]\nsmtp = \"smtp://m\"\nusername = \"ops\"\npassword = \"hunter2\"\n",
                "alerts.email[0].password",
            ),
            (
                "[[alerts.email]]\nto = [\"ops@company.com\"]\nsmtp = \"smtp://m\"\nusername = \"ops\"\npassword-env = \"SMTP_PASSWORD\"\n",
                "alerts.email[0].password-env",
            ),
            (
                "[[alerts.email]]\nto = [\"ops@company.com\"]\nsmtp = \"smtp://m\"\nevents = [\"budget\"]\n",
                "alerts.email[0].events",
            ),
            (
                "[[alerts.email]]\nto = [\"ops@company.com\"]\nsmtp = \"smtp://m\"\nca-file = \"missing.pem\"\n",
                "alerts.email[0].ca-file",
            ),
            (
                "[[alerts.email]]\nto = [\"ops@company.com\"]\nsmtp = \"smtp://m\"\nca-file = \"ironhost.toml\"\n",
                "alerts.email[0].ca-file",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = load(&Flags::default(), &vars(&[]), dir.path()).unwrap_err();
            assert_eq!(e.key, key, "{text:?}: {e}");
        }
    }

    #[test]
    fn an_email_alert_takes_its_password_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DEFAULT_FILE),
            "[[alerts.email]]\nto = [\"ops@company.com\"]\nsmtp = \"smtps://mail.example.com\"\n\
             username = \"ops\"\npassword-env = \"SMTP_PASSWORD\"\n",
        )
        .unwrap();
        let s = load(
            &Flags::default(),
            &vars(&[("SMTP_PASSWORD", "s3cret")]),
            dir.path(),
        )
        .unwrap();
        let email = &s.alerts.email[0];
        assert_eq!(
            email.password_from_env.as_deref().map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(email.to, ["ops@company.com"]);
    }

    #[test]
    fn an_email_alerts_ca_file_is_read_relative_to_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).unwrap();
        // Not a real certificate: the file is checked for PEM certificate blocks at load.
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
        std::fs::write(conf.join("relay-ca.pem"), pem).unwrap();
        std::fs::write(
            conf.join(DEFAULT_FILE),
            "[[alerts.email]]\nto = [\"ops@company.com\"]\nsmtp = \"smtp://relay.internal\"\n\
             ca-file = \"relay-ca.pem\"\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(conf.join(DEFAULT_FILE)),
            ..Flags::default()
        };
        let s = load(&flags, &vars(&[]), dir.path()).unwrap();
        assert_eq!(
            s.alerts.email[0].ca_certificates.as_deref(),
            Some(pem.as_bytes())
        );
    }

    #[test]
    fn a_tool_reply_rule_parses_with_its_arguments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DEFAULT_FILE),
            "[[simulator.replies]]\nwhen = \"weather\"\ntool = \"get_weather\"\n\
             arguments = { city = \"Paris\", days = 2 }\n",
        )
        .unwrap();
        let s = load(&Flags::default(), &vars(&[]), dir.path()).unwrap();
        let rule = &s.simulator.replies[0];
        assert_eq!(rule.tool.as_deref(), Some("get_weather"));
        assert_eq!(
            rule.arguments,
            Some(serde_json::json!({"city": "Paris", "days": 2}))
        );
    }

    #[test]
    fn restart_policies_parse() {
        assert_eq!(Restart::parse("on-failure:2"), Ok(Restart::OnFailure(2)));
        assert_eq!(Restart::parse("no"), Ok(Restart::Never));
        assert!(Restart::parse("on-failure:0").is_err());
        assert!(Restart::parse("always").is_err());
    }

    #[test]
    fn pricing_overrides_add_models() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DEFAULT_FILE),
            "[pricing.models.\"my-model\"]\ninput = 1.0\noutput = 2.0\n",
        )
        .unwrap();
        let s = load(&Flags::default(), &vars(&[]), dir.path()).unwrap();
        assert_eq!(s.pricing.price("my-model").unwrap().output_per_mtok, 2.0);
        assert!(s.pricing.price("gpt-4o").is_some());
    }
}
