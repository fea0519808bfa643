//! `ironhost audit verify`: check the audit tables' hash chain (`store/audit.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CliError;
use crate::config::{self, Flags};
use crate::secrets::Keyring;
use crate::store::{DATABASE_URL_VAR, DB_FILE, Location, Store};

/// `ironhost audit` commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that no audit row was changed, inserted or removed outside ironhost (exit 1 if
    /// one was). Needs the master key (`IRONHOST_MASTER_KEY` or the home's `master.key`).
    Verify(VerifyArgs),
}

/// `ironhost audit verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The configuration file (default: ./ironhost.toml when it exists); its `home` is checked.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(cmd: AuditCommand) -> Result<u8, CliError> {
    let AuditCommand::Verify(args) = cmd;
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::failure(format!("cannot read the current directory: {e}")))?;
    let flags = Flags {
        config: args.config,
        ..Flags::default()
    };
    let settings =
        config::load(&flags, &vars, &cwd).map_err(|e| CliError::input(format!("config: {e}")))?;
    // A SQLite store must exist already (verifying is no reason to create one).
    let location = Location::from_vars(&vars)
        .map_err(|e| CliError::input(format!("{DATABASE_URL_VAR}: {e}")))?;
    let file = match &location {
        Location::Home => Some(settings.home.join(DB_FILE)),
        Location::SqliteFile(path) => Some(path.clone()),
        Location::Postgres { .. } => None,
    };
    if let Some(db) = file.filter(|f| !f.is_file()) {
        return Err(CliError::input(format!(
            "{}: no store here (the ironhost home is {})",
            db.display(),
            settings.home.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the I/O runtime: {e}")))?;
    let (store, reports) = runtime.block_on(async {
        let store = Store::open_configured(&settings.home, &vars)
            .await
            .map_err(|e| CliError::failure(e.to_string()))?;
        let master = vars.get("IRONHOST_MASTER_KEY").map(String::as_str);
        let keyring = Keyring::unlock(&store, &settings.home, master)
            .await
            .map_err(|e| CliError::input(e.to_string()))?;
        let key = keyring.audit_key();
        // The error names the store's file, or its URL with the password masked.
        let reports = store
            .verify_audit_chain(&key)
            .await
            .map_err(|e| CliError::failure(e.to_string()))?;
        Ok::<_, CliError>((store, reports))
    })?;
    let mut broken = Vec::new();
    for r in &reports {
        if r.problems.is_empty() {
            println!("{}: {} rows, chain intact", r.table, r.rows);
        } else {
            println!("{}: {} rows, TAMPERED:", r.table, r.rows);
            for p in &r.problems {
                println!("  - {p}");
            }
            broken.push(r.table);
        }
    }
    if broken.is_empty() {
        Ok(0)
    } else {
        Err(CliError::failure(format!(
            "{}: the audit chain is broken in {}",
            store.path().display(),
            broken.join(", ")
        )))
    }
}
