//! Opening the control plane's parts in an ironhost home: the store, the keyring (master
//! key), the secret store, persistent policy state, the first admin. Serving them over HTTP is
//! `api`'s.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::auth;
use crate::model::TokenMeter;
use crate::policy::host::{Fingerprinter, HostServices};
use crate::secrets::{Keyring, SecretStore, SecretsError};
use crate::store::state::StoredState;
use crate::store::{Store, StoreError};

/// Why the control plane's parts could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    /// Bad input from the operator (a wrong or missing master key, a short password): exit 2.
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Failed(String),
}

impl From<StoreError> for PlaneError {
    fn from(e: StoreError) -> PlaneError {
        PlaneError::Failed(e.to_string())
    }
}

impl From<SecretsError> for PlaneError {
    fn from(e: SecretsError) -> PlaneError {
        match e {
            SecretsError::Store(s) => s.into(),
            other => PlaneError::Input(other.to_string()),
        }
    }
}

/// The opened parts.
#[derive(Debug, Clone)]
pub struct Plane {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub secrets: Arc<SecretStore>,
    pub state: Arc<StoredState>,
}

impl Plane {
    /// Open everything in `home` (the store where `IRONHOST_DATABASE_URL` says, else in the
    /// home); must run inside a multi-threaded Tokio runtime. On the first run this creates the
    /// admin user (`IRONHOST_ADMIN_PASSWORD`, or a generated password printed once on stderr).
    pub async fn open(home: &Path, vars: &BTreeMap<String, String>) -> Result<Plane, PlaneError> {
        let store = Store::open_configured(home, vars)
            .await
            .map_err(|e| match e {
                // A bad URL is the operator's input.
                StoreError::Url(_) => PlaneError::Input(e.to_string()),
                other => other.into(),
            })?;
        let keyring = Arc::new(
            Keyring::unlock(
                &store,
                home,
                vars.get("IRONHOST_MASTER_KEY").map(String::as_str),
            )
            .await?,
        );
        let audit_key = keyring.audit_key();
        let sealed = crate::store::audit::start_chain(&store, &audit_key)
            .await
            .map_err(|e| {
                PlaneError::Failed(format!(
                    "{}: cannot start the audit chain: {e}",
                    store.path().display()
                ))
            })?;
        if sealed > 0 {
            tracing::info!("audit: sealed {sealed} rows written before the audit chain");
        }
        let verifying = verify_audit(store.clone(), audit_key);
        // A store of ordinary size is checked before anything runs; a huge one goes on being
        // checked beside the run.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), verifying).await;
        for id in store.sweep_lost(&super::ids::host_name()).await? {
            tracing::warn!(
                "agent {id} was left running by an ironhost process that ended without stopping it (killed?); marked failed"
            );
        }
        let secrets = SecretStore::load(store.clone(), keyring.clone()).await?;
        let state = StoredState::load(&store).await?;
        let admin_password = vars.get("IRONHOST_ADMIN_PASSWORD").map(String::as_str);
        if let Some(generated) = bootstrap_admin(&store, admin_password).await? {
            // Once, on the terminal, never in the log or the store.
            eprintln!(
                "ironhost: created the control plane user `admin` with password {generated}\n\
                 ironhost: it is shown only this once; set IRONHOST_ADMIN_PASSWORD before the first run to choose it"
            );
        }
        Ok(Plane {
            store,
            keyring,
            secrets,
            state,
        })
    }

    /// The keys the recorder writes with: PII originals sealed, PII audit rows chained.
    pub fn recorder_keys(&self) -> crate::store::recorder::RecorderKeys {
        crate::store::recorder::RecorderKeys {
            data: Some(self.keyring.data_key()),
            audit: Some(self.keyring.audit_key()),
        }
    }

    /// The services policies get: persistent state, the secret store, the installation's
    /// fingerprint key.
    pub fn services(&self, tokens: Arc<dyn TokenMeter>) -> HostServices {
        HostServices {
            state: self.state.clone(),
            tokens,
            secrets: self.secrets.clone(),
            fingerprints: Fingerprinter::with_key(self.keyring.fingerprint_key()),
        }
    }
}

/// Create the first admin if there are no users: with `password`, or a generated one that is
/// returned (for the caller to print once). `Ok(None)`: users exist, or the given password
/// was used.
async fn bootstrap_admin(
    store: &Store,
    password: Option<&str>,
) -> Result<Option<String>, PlaneError> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let failed = |e: String| PlaneError::Failed(format!("cannot create the admin user: {e}"));
    let (password, generated) = match password.filter(|p| !p.is_empty()) {
        Some(p) if p.chars().count() < crate::auth::MIN_PASSWORD_LEN => {
            return Err(PlaneError::Input(format!(
                "IRONHOST_ADMIN_PASSWORD: at least {} characters",
                crate::auth::MIN_PASSWORD_LEN
            )));
        }
        Some(p) => (p.to_owned(), false),
        None => (auth::generate_password().map_err(failed)?, true),
    };
    let hash = auth::hash_password(&password).map_err(failed)?;
    // `None`: another process created it first.
    let created = store.create_user("admin", &hash, "admin").await?;
    Ok((created.is_some() && generated).then_some(password))
}

/// Check the audit chain once the store is open; a broken chain is logged as an error (the run
/// goes on: stopping would let whoever can write the file stop every agent).
fn verify_audit(store: Store, key: crate::store::audit::AuditKey) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        match crate::store::audit::verify(&store, &key).await {
            Ok(reports) => {
                for r in reports.iter().filter(|r| !r.problems.is_empty()) {
                    tracing::error!(
                        "audit: `{}` in {} has been tampered with: {}; `ironhost audit verify` lists what",
                        r.table,
                        store.path().display(),
                        r.problems.join("; ")
                    );
                }
            }
            Err(e) => tracing::error!("audit: cannot verify the audit chain: {e}"),
        }
    })
}
