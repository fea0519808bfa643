//! The `ironhost` command line.
//!
//! Exit codes: 0 success, 1 failure while running, 2 bad input (arguments, files, manifests,
//! components). Errors are one line on stderr that names the file and the reason.

mod audit;
mod policy;
mod scaffold;
mod serve;
mod start;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (WIT ironhost:policy@0.1.0)");

/// ironhost runs AI agents under sandboxed WebAssembly policies.
#[derive(Debug, Parser)]
#[command(name = "ironhost", version, long_version = LONG_VERSION)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, check and try out policy components and bundles.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Run a Python agent under the policy bundle (and the control plane beside it).
    Start(start::StartArgs),
    /// Run the control plane (REST API, WebSocket) without an agent.
    Serve(serve::ServeArgs),
    /// Check the audit tables (secret changes and reads, PII findings) for tampering.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The agent's process, started by `ironhost start` (not for use by hand).
    #[command(name = "__agent-worker", hide = true)]
    AgentWorker,
}

/// A command's error: what to print and which exit code to use.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Bad input: exit code 2.
    pub fn input(message: impl std::fmt::Display) -> CliError {
        CliError {
            code: EXIT_BAD_INPUT,
            message: message.to_string(),
        }
    }

    /// Failure while running: exit code 1.
    pub fn failure(message: impl std::fmt::Display) -> CliError {
        CliError {
            code: EXIT_FAILURE,
            message: message.to_string(),
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IRONHOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::logging::queued_stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Run a parsed command line and return the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Policy(cmd) => {
            init_logging();
            policy::run(cmd)
        }
        Command::Start(args) => start::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Audit(cmd) => {
            init_logging();
            audit::run(cmd)
        }
        Command::AgentWorker => {
            let code = crate::native::worker::worker_main();
            return ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1));
        }
    };
    // What was logged goes out before the last word (and before the process ends).
    crate::logging::flush(crate::logging::FLUSH);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ironhost: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
