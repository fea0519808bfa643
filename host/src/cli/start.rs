//! `ironhost start AGENT.py`: run a Python agent under the policy bundle.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::agent::runtime::{self, AgentSpec};
use crate::config::{self, Flags};
use crate::core::ids;
use crate::core::{Host, StartError};
use crate::llm::LlmMode;
use crate::logging;

/// `ironhost start` arguments.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The agent script, run as `__main__`.
    pub script: PathBuf,
    /// The agent's budget in US dollars (the `budget` policy's `limit-usd`).
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub budget: Option<f64>,
    /// A bundle directory, or `default` for the built-in bundle.
    #[arg(long, value_name = "DIR|default")]
    pub bundle: Option<String>,
    /// What `pii-redact` does with a finding.
    #[arg(long, value_name = "redact|block|warn")]
    pub safety_mode: Option<String>,
    /// The configuration file (default: ./ironhost.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The deployment environment the policies see.
    #[arg(long, value_name = "dev|staging|production")]
    pub env: Option<String>,
    /// Show debug lines.
    #[arg(long)]
    pub verbose: bool,
    /// Log line format.
    #[arg(long, value_name = "human|json")]
    pub log_format: Option<String>,
    /// Restart the agent after a crash: `no`, `on-failure` or `on-failure:N`.
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Serve the control plane (REST + WebSocket) at this address instead of 127.0.0.1:7400.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Do not serve the control plane from this process (the store still records the run).
    #[arg(long)]
    pub no_api: bool,
    /// Resume an agent id (its spend and policy state carry on) instead of a new one.
    #[arg(long, value_name = "ID")]
    pub agent_id: Option<String>,
    /// Arguments for the agent (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Run the agent; the exit code mirrors the agent's.
pub fn run(args: StartArgs) -> Result<u8, CliError> {
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    // Read once, above; from here on the host's credentials are in its memory only.
    if let Err(e) =
        crate::agent::sandbox::scrub_environment_block(&crate::agent::sandbox::SCRUBBED_VARS)
    {
        tracing::debug!("cannot scrub the environment block: {e}");
    }
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::failure(format!("cannot read the current directory: {e}")))?;
    let flags = Flags {
        config: args.config,
        budget: args.budget,
        bundle: args.bundle,
        safety_mode: args.safety_mode,
        env: args.env,
        log_format: args.log_format,
        verbose: args.verbose,
        restart: args.restart,
        listen: args.listen,
        no_api: args.no_api,
    };
    let settings =
        config::load(&flags, &vars, &cwd).map_err(|e| CliError::input(format!("config: {e}")))?;
    let script = cwd.join(&args.script);
    if !script.is_file() {
        return Err(CliError::input(format!(
            "{}: the agent script does not exist or is not a file",
            args.script.display()
        )));
    }
    logging::init(settings.log_format, settings.verbose);
    let id = match args.agent_id {
        Some(id) => {
            ids::check_agent_id(&id).map_err(|e| CliError::input(format!("--agent-id: {e}")))?;
            id
        }
        None => ids::agent_id(&script),
    };
    logging::set_agent_id(&id);
    let name = ids::agent_name(&script);
    let mut host =
        Host::build(&settings, &name, &script, id.clone(), &vars).map_err(start_error)?;
    crate::api::serve::beside(&mut host).map_err(|e| start_error(StartError::Config(e)))?;
    // The pilot's format: the id first, on its own line, on stdout.
    println!("agent_id: {id}");
    if let Some(addr) = host.api_addr {
        println!("dashboard: {}", crate::api::serve::url(addr));
    }
    let spent = match host.gateway.budget_usd() {
        Some(b) => format!("budget ${b:.2}"),
        None => "no budget".to_owned(),
    };
    let has_key = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
        .iter()
        .any(|k| vars.get(*k).is_some_and(|v| !v.is_empty()));
    let llm = match (host.gateway.options().mode, has_key) {
        (LlmMode::Simulator, _) | (LlmMode::Auto, false) => {
            "LLM calls go to the built-in simulator"
        }
        (LlmMode::Live, _) => "LLM calls go to the providers",
        (LlmMode::Auto, true) => {
            "LLM calls go to the providers that have a key, else the simulator"
        }
    };
    tracing::info!(
        "starting {} under bundle `{}` ({spent}; {llm})",
        args.script.display(),
        host.core.bundle_name,
    );
    let spec = AgentSpec {
        script,
        args: args.args,
    };
    let code = runtime::run_agent(&host, &spec, &settings, &vars);
    crate::api::serve::farewell(&host);
    let code = code.map_err(start_error)?;
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

fn start_error(e: StartError) -> CliError {
    match e {
        StartError::Config(m) => CliError::input(format!("config: {m}")),
        StartError::Failed(m) => CliError::failure(m),
    }
}
