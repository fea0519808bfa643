//! `ironhost serve`: the control plane without an agent. It shows every agent in the store
//! (their processes write to it) and streams the events they record; its policy chain is the
//! configured bundle, for inspection and for admitting new components.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::api::{AppState, serve, ws};
use crate::config::{self, Flags};
use crate::core::{Core, StartError};
use crate::logging;

/// `ironhost serve` arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:7400).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The bundle whose chain the API shows and manages.
    #[arg(long, value_name = "DIR|default")]
    pub bundle: Option<String>,
    /// The configuration file (default: ./ironhost.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Show debug lines.
    #[arg(long)]
    pub verbose: bool,
    /// Log line format.
    #[arg(long, value_name = "human|json")]
    pub log_format: Option<String>,
}

/// Serve until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<u8, CliError> {
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
        bundle: args.bundle,
        log_format: args.log_format,
        verbose: args.verbose,
        listen: args.listen,
        ..Flags::default()
    };
    let settings =
        config::load(&flags, &vars, &cwd).map_err(|e| CliError::input(format!("config: {e}")))?;
    logging::init(settings.log_format, settings.verbose);
    let core = Core::control_plane(&settings, &vars).map_err(|e| match e {
        StartError::Config(m) => CliError::input(m),
        StartError::Failed(m) => CliError::failure(m),
    })?;
    let runtime = core.runtime();
    runtime.block_on(async {
        // Events reach clients through the store, with every other process's.
        let feed = ws::feed();
        ws::feed_from_store(core.plane.store.clone(), feed.clone());
        let state = AppState::new(&core.plane, Some(core.live.clone()), feed);
        // Alerts for every agent in the store; the store's claims keep each to one delivery
        // when the agents' own processes send them too.
        crate::alerts::Alerts::follow_store(
            &settings.alerts,
            crate::alerts::Deps {
                store: core.plane.store.clone(),
                secrets: core.plane.secrets.clone(),
                environment: settings.environment.clone(),
            },
        )
        .map_err(CliError::input)?;
        let api = config::ApiSettings {
            explicit: true,
            ..settings.api.clone()
        };
        let server = serve::bind(&api, state)
            .await
            .map_err(CliError::input)?
            .ok_or_else(|| CliError::input(format!("cannot listen on {}", api.listen)))?;
        println!("control plane: {}", serve::url(server.addr));
        tracing::info!(
            "serving the control plane for {} (store {})",
            settings.home.display(),
            core.plane.store.path().display()
        );
        server
            .run(async {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(_) => return std::future::pending().await,
                    };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("stopping the control plane");
            })
            .await
            .map_err(|e| CliError::failure(format!("control plane: {e}")))?;
        Ok(0)
    })
}
