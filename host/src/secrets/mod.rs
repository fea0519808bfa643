//! The secret store: values sealed with AES-256-GCM under keys Argon2id derives from the master
//! key (`IRONHOST_MASTER_KEY`) and a fresh salt per secret version; environments `dev`,
//! `staging`, `production`; soft delete; every change and every read through the API written
//! to the append-only `secret_audit_log`.
//!
//! The [`Keyring`] holds what the master key unlocks for the whole installation: the data key
//! (PII audit values, signing keys) and the key check that turns a wrong master key into a
//! clear error instead of garbage. [`SecretStore`] serves secrets to policies (synchronously,
//! from memory) and to the API, and announces changes so a running agent's environment is
//! updated without a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::auth::Role;
use crate::crypto::{self, CryptoError, Key, MasterKey, SALT_LEN};
use crate::policy::host::SecretResolver;
use crate::store::secrets::{SealedSecret, SecretActor, SecretAuditNote, SecretRow};
use crate::store::{Store, StoreError, now_ms};

/// The environments a secret can belong to.
pub const ENVIRONMENTS: [&str; 3] = ["dev", "staging", "production"];
/// Largest secret value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The file a generated master key is kept in, inside the ironhost home.
pub const MASTER_KEY_FILE: &str = "master.key";

const KEY_CHECK: &[u8] = b"ironhost key check v1";

/// What went wrong. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "the master key does not match the one {path} was created with; set IRONHOST_MASTER_KEY to the original key (the secrets cannot be decrypted with this one)"
    )]
    WrongMasterKey { path: PathBuf },
    #[error(
        "{path} holds encrypted data but no master key was given: set IRONHOST_MASTER_KEY (or restore {key_file})"
    )]
    NoMasterKey { path: PathBuf, key_file: PathBuf },
    #[error("IRONHOST_MASTER_KEY: {0}")]
    BadMasterKey(String),
    #[error("{path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("secret name `{0}`: use 1-128 letters, digits, `_`, `-` or `.`")]
    BadName(String),
    #[error("environment `{0}`: must be one of dev, staging, production")]
    BadEnvironment(String),
    #[error("secret `{name}`: {reason}")]
    BadValue { name: String, reason: String },
    #[error("no secret `{name}` in environment `{environment}`")]
    NotFound { name: String, environment: String },
    #[error("secret `{name}` in `{environment}` cannot be decrypted: {source}")]
    Crypto {
        name: String,
        environment: String,
        source: CryptoError,
    },
    #[error("{0}")]
    Key(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who does something to a secret, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

impl Actor {
    /// The host itself (start-up, rotation, signals).
    pub fn host() -> Actor {
        Actor {
            name: "ironhost".to_owned(),
            role: Role::Admin,
        }
    }

    /// As the audit log names it.
    fn audit(&self) -> SecretActor<'_> {
        SecretActor {
            name: &self.name,
            role: self.role.as_str(),
        }
    }
}

/// What the master key unlocks for the installation.
pub struct Keyring {
    master: MasterKey,
    data_key: Arc<Key>,
    fingerprint_key: [u8; 32],
    jwt_key: Zeroizing<Vec<u8>>,
    audit_key: crate::store::audit::AuditKey,
    derived: Mutex<HashMap<[u8; SALT_LEN], Key>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(keys hidden)")
    }
}

/// The master key: `IRONHOST_MASTER_KEY` if set; else the home's `master.key`; else, for a
/// store that holds nothing encrypted yet, a new random key written to `master.key`.
fn master_key(
    store: &Store,
    home: &Path,
    from_env: Option<&str>,
    initialized: bool,
) -> Result<MasterKey, SecretsError> {
    if let Some(text) = from_env.filter(|t| !t.is_empty()) {
        return MasterKey::new(text).map_err(SecretsError::BadMasterKey);
    }
    let file = home.join(MASTER_KEY_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            return MasterKey::new(&text)
                .map_err(|reason| SecretsError::KeyFile { path: file, reason });
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(SecretsError::KeyFile {
                path: file,
                reason: format!("cannot read: {e}"),
            });
        }
        Err(_) => {}
    }
    if initialized {
        return Err(SecretsError::NoMasterKey {
            path: store.path().to_path_buf(),
            key_file: file,
        });
    }
    let text = hex::encode(crypto::random::<32>()?);
    write_private(&file, &text).map_err(|reason| SecretsError::KeyFile {
        path: file.clone(),
        reason,
    })?;
    tracing::warn!(
        "no IRONHOST_MASTER_KEY: generated a master key in {} (back it up; set IRONHOST_MASTER_KEY in production)",
        file.display()
    );
    MasterKey::new(&text).map_err(SecretsError::BadMasterKey)
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create: {e}"))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write: {e}"))
}

impl Keyring {
    /// Unlock the installation's keys with the master key, creating them on first use.
    pub async fn unlock(
        store: &Store,
        home: &Path,
        from_env: Option<&str>,
    ) -> Result<Keyring, SecretsError> {
        let existing = store.meta("key_check").await?;
        let master = master_key(store, home, from_env, existing.is_some())?;
        let record = match existing {
            Some(r) => r,
            None => {
                let salt = crypto::random::<SALT_LEN>()?;
                let key = slow(|| master.derive(&salt))?;
                let (nonce, ct) = crypto::seal(&key, KEY_CHECK, b"key-check")?;
                let record = [&salt[..], &nonce[..], &ct[..]].concat();
                store.meta_init("key_check", &record).await?
            }
        };
        if record.len() < SALT_LEN + crypto::NONCE_LEN {
            return Err(CryptoError::Malformed("key check record").into());
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&record[..SALT_LEN]);
        let (nonce, ct) = record[SALT_LEN..].split_at(crypto::NONCE_LEN);
        let data_key = slow(|| master.derive(&salt))?;
        match crypto::open(&data_key, nonce, ct, b"key-check") {
            Ok(v) if &v[..] == KEY_CHECK => {}
            _ => {
                return Err(SecretsError::WrongMasterKey {
                    path: store.path().to_path_buf(),
                });
            }
        }
        let fingerprint = installation_key(store, &data_key, "fingerprint_key").await?;
        let jwt = installation_key(store, &data_key, "jwt_key").await?;
        let audit = installation_key(store, &data_key, "audit_key").await?;
        let mut fingerprint_key = [0u8; 32];
        fingerprint_key.copy_from_slice(&fingerprint[..32]);
        Ok(Keyring {
            master,
            data_key: Arc::new(data_key),
            fingerprint_key,
            jwt_key: jwt,
            audit_key: crate::store::audit::AuditKey::new(audit),
            derived: Mutex::new(HashMap::new()),
        })
    }

    /// The key sealing PII audit values.
    pub fn data_key(&self) -> Arc<Key> {
        self.data_key.clone()
    }

    /// The HMAC key of PII fingerprints: one per installation, so fingerprints stay
    /// comparable across runs.
    pub fn fingerprint_key(&self) -> [u8; 32] {
        self.fingerprint_key
    }

    /// The key signing session tokens.
    pub fn jwt_key(&self) -> &[u8] {
        &self.jwt_key
    }

    /// The key sealing the audit tables' hash chain.
    pub fn audit_key(&self) -> crate::store::audit::AuditKey {
        self.audit_key.clone()
    }

    /// The key for a secret's salt; derivations are cached (Argon2id is deliberately slow).
    fn key_for(&self, salt: &[u8]) -> Result<Key, CryptoError> {
        let salt: [u8; SALT_LEN] = salt
            .try_into()
            .map_err(|_| CryptoError::Malformed("salt must be 16 bytes"))?;
        if let Some(k) = self.derived.lock().get(&salt) {
            return Ok(k.clone());
        }
        let key = self.master.derive(&salt)?;
        let mut cache = self.derived.lock();
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(salt, key.clone());
        Ok(key)
    }
}

/// Run CPU-heavy work (Argon2id) without starving other tasks on a multi-threaded runtime.
fn slow<T>(f: impl FnOnce() -> T) -> T {
    // A policy reading a secret can trigger this, but the cost is the store's, never charged
    // against the policy's deadline (see `policy::meter`).
    crate::policy::meter::uncharged(|| match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    })
}

/// A random 32-byte installation key, stored sealed under the data key.
async fn installation_key(
    store: &Store,
    data_key: &Key,
    name: &str,
) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let aad = name.as_bytes();
    let record = match store.meta(name).await? {
        Some(r) => r,
        None => {
            let fresh = Zeroizing::new(crypto::random::<32>()?);
            let (nonce, ct) = crypto::seal(data_key, &fresh[..], aad)?;
            store
                .meta_init(name, &[&nonce[..], &ct[..]].concat())
                .await?
        }
    };
    if record.len() < crypto::NONCE_LEN {
        return Err(CryptoError::Malformed("installation key record").into());
    }
    let (nonce, ct) = record.split_at(crypto::NONCE_LEN);
    let key = crypto::open(data_key, nonce, ct, aad)?;
    if key.len() != 32 {
        return Err(CryptoError::Malformed("installation key length").into());
    }
    Ok(key)
}

/// A secret without its value.
#[derive(Debug, Clone, Serialize)]
pub struct SecretMeta {
    pub name: String,
    pub environment: String,
    pub version: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One line of the secret audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub ts_ms: i64,
    pub secret_name: String,
    pub environment: String,
    pub action: String,
    pub actor: String,
    pub role: String,
    pub detail: Option<String>,
}

#[derive(Clone)]
struct Entry {
    /// The row: a secret deleted and created again is a new row.
    row: i64,
    meta: SecretMeta,
    salt: Vec<u8>,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    /// The value; `None` only if it failed to decrypt.
    plain: Option<Zeroizing<String>>,
}

type Cache = BTreeMap<(String, String), Entry>;

fn aad(environment: &str, name: &str) -> Vec<u8> {
    format!("secret:{environment}:{name}").into_bytes()
}

/// Check a secret name.
pub fn validate_name(name: &str) -> Result<(), SecretsError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SecretsError::BadName(name.chars().take(140).collect()))
    }
}

/// Check an environment name.
pub fn validate_environment(environment: &str) -> Result<(), SecretsError> {
    if ENVIRONMENTS.contains(&environment) {
        Ok(())
    } else {
        Err(SecretsError::BadEnvironment(
            environment.chars().take(40).collect(),
        ))
    }
}

/// The secrets of an installation.
pub struct SecretStore {
    store: Store,
    keyring: Arc<Keyring>,
    /// Every live secret, decrypted (values are needed inside hooks, where there is no time
    /// for Argon2id).
    cache: RwLock<Cache>,
    changes: watch::Sender<Vec<String>>,
    /// Reads by policies not yet in the audit log.
    policy_reads: Mutex<PolicyReads>,
    /// Where audit rows for policy reads are written (reads happen on threads with no runtime).
    runtime: Option<tokio::runtime::Handle>,
}

/// How often the reads policies make are written to the audit log, counted per policy, secret
/// and environment. The first read of each in a process is written at once.
const POLICY_READ_AUDIT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// (policy, environment, secret).
type ReadKey = (String, String, String);

#[derive(Default)]
struct PolicyReads {
    pending: HashMap<ReadKey, u64>,
    audited: std::collections::HashSet<ReadKey>,
    last_write: Option<std::time::Instant>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore").finish_non_exhaustive()
    }
}

impl SecretStore {
    /// Read every live secret's ciphertext (values are decrypted when first used).
    pub async fn load(
        store: Store,
        keyring: Arc<Keyring>,
    ) -> Result<Arc<SecretStore>, SecretsError> {
        let cache = read_all(&store).await?;
        let (changes, _) = watch::channel(Vec::new());
        Ok(Arc::new(SecretStore {
            store,
            keyring,
            cache: RwLock::new(cache),
            changes,
            policy_reads: Mutex::new(PolicyReads::default()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }))
    }

    /// Changes: the names of secrets changed most recently. Receivers wake on every change.
    pub fn subscribe(&self) -> watch::Receiver<Vec<String>> {
        self.changes.subscribe()
    }

    /// Re-read the database (another process may have changed it). Returns the names of
    /// secrets that changed, and announces them if any did.
    pub async fn reload(&self) -> Result<Vec<String>, SecretsError> {
        let mut fresh = read_all(&self.store).await?;
        {
            // Keep what is already decrypted; decrypt the rest before swapping it in.
            let cache = self.cache.read();
            for (k, e) in fresh.iter_mut() {
                if let Some(old) = cache.get(k)
                    && old.row == e.row
                    && old.meta.version == e.meta.version
                {
                    e.plain = old.plain.clone();
                }
            }
        }
        decrypt_all(&self.keyring, &mut fresh);
        let mut changed = Vec::new();
        {
            let mut cache = self.cache.write();
            // A `put` that committed after we read keeps its newer version.
            for (k, old) in cache.iter() {
                if let Some(e) = fresh.get_mut(k)
                    && old.row == e.row
                    && old.meta.version > e.meta.version
                {
                    *e = old.clone();
                }
            }
            for (k, e) in &fresh {
                if cache.get(k).is_none_or(|old| {
                    old.meta.version != e.meta.version || old.meta.updated_ms != e.meta.updated_ms
                }) {
                    changed.push(k.1.clone());
                }
            }
            for k in cache.keys() {
                if !fresh.contains_key(k) {
                    changed.push(k.1.clone());
                }
            }
            *cache = fresh;
        }
        changed.sort();
        changed.dedup();
        if !changed.is_empty() {
            self.changes.send_replace(changed.clone());
        }
        Ok(changed)
    }

    /// Every live secret, without values, optionally in one environment.
    pub fn list(&self, environment: Option<&str>) -> Vec<SecretMeta> {
        self.cache
            .read()
            .values()
            .filter(|e| environment.is_none_or(|env| e.meta.environment == env))
            .map(|e| e.meta.clone())
            .collect()
    }

    pub fn meta(&self, environment: &str, name: &str) -> Option<SecretMeta> {
        self.cache
            .read()
            .get(&(environment.to_owned(), name.to_owned()))
            .map(|e| e.meta.clone())
    }

    /// The value of a secret.
    pub fn value(&self, environment: &str, name: &str) -> Result<Zeroizing<String>, SecretsError> {
        let key = (environment.to_owned(), name.to_owned());
        let not_found = || SecretsError::NotFound {
            name: name.to_owned(),
            environment: environment.to_owned(),
        };
        {
            let cache = self.cache.read();
            let entry = cache.get(&key).ok_or_else(not_found)?;
            if let Some(p) = &entry.plain {
                return Ok(p.clone());
            }
        }
        let mut cache = self.cache.write();
        let entry = cache.get_mut(&key).ok_or_else(not_found)?;
        let crypto_err = |source| SecretsError::Crypto {
            name: name.to_owned(),
            environment: environment.to_owned(),
            source,
        };
        let k = slow(|| self.keyring.key_for(&entry.salt)).map_err(crypto_err)?;
        let bytes = crypto::open(&k, &entry.nonce, &entry.ciphertext, &aad(environment, name))
            .map_err(crypto_err)?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| crypto_err(CryptoError::Malformed("value is not UTF-8")))?;
        let plain = Zeroizing::new(text);
        entry.plain = Some(plain.clone());
        Ok(plain)
    }

    /// Create or update (rotate) a secret. Returns its metadata and whether it was created.
    pub async fn put(
        &self,
        name: &str,
        environment: &str,
        value: &str,
        actor: &Actor,
    ) -> Result<(SecretMeta, bool), SecretsError> {
        validate_name(name)?;
        validate_environment(environment)?;
        if value.is_empty() || value.len() > MAX_VALUE_BYTES {
            return Err(SecretsError::BadValue {
                name: name.to_owned(),
                reason: format!("the value must be 1 to {MAX_VALUE_BYTES} bytes"),
            });
        }
        if value.contains('\0') {
            // A process environment cannot hold a NUL: every agent granted the secret as a
            // variable would fail to start.
            return Err(SecretsError::BadValue {
                name: name.to_owned(),
                reason: "the value contains a NUL byte, which no environment variable can hold"
                    .to_owned(),
            });
        }
        let salt = crypto::random::<SALT_LEN>()?;
        let keyring = self.keyring.clone();
        let key = slow(|| keyring.key_for(&salt))?;
        let (nonce, ct) = crypto::seal(&key, value.as_bytes(), &aad(environment, name))?;
        let sealed = SealedSecret {
            salt: &salt[..],
            nonce: &nonce[..],
            ciphertext: &ct,
        };
        let (row, created) = self
            .store
            .put_secret(
                &self.keyring.audit_key,
                name,
                environment,
                sealed,
                now_ms(),
                actor.audit(),
            )
            .await?;
        let mut entry = entry(row);
        entry.plain = Some(Zeroizing::new(value.to_owned()));
        let meta = entry.meta.clone();
        self.cache
            .write()
            .insert((environment.to_owned(), name.to_owned()), entry);
        self.changes.send_replace(vec![name.to_owned()]);
        Ok((meta, created))
    }

    /// Soft-delete a secret (the row stays, marked deleted; the audit log says who).
    pub async fn delete(
        &self,
        name: &str,
        environment: &str,
        actor: &Actor,
    ) -> Result<(), SecretsError> {
        validate_environment(environment)?;
        let deleted = self
            .store
            .delete_secret(&self.keyring.audit_key, name, environment, actor.audit())
            .await?;
        if !deleted {
            return Err(SecretsError::NotFound {
                name: name.to_owned(),
                environment: environment.to_owned(),
            });
        }
        self.cache
            .write()
            .remove(&(environment.to_owned(), name.to_owned()));
        self.changes.send_replace(vec![name.to_owned()]);
        Ok(())
    }

    /// Note in the audit log what is not a change: a read of a value (`read` by an agent,
    /// `reveal` by an admin), or a rotation into a running agent.
    pub async fn record(
        &self,
        name: &str,
        environment: &str,
        action: &str,
        actor: &Actor,
        detail: Option<&str>,
    ) -> Result<(), SecretsError> {
        let note = SecretAuditNote {
            secret_name: name,
            environment,
            action,
            actor: actor.audit(),
            detail,
        };
        self.store
            .append_secret_audit(&self.keyring.audit_key, note)
            .await?;
        Ok(())
    }

    /// The audit log, newest first, optionally for one secret name.
    pub async fn audit_log(
        &self,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, SecretsError> {
        let rows = self.store.secret_audit_log(name, limit).await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                ts_ms: r.ts_ms,
                secret_name: r.secret_name,
                environment: r.environment,
                action: r.action,
                actor: r.actor,
                role: r.role,
                detail: r.detail,
            })
            .collect())
    }
}

fn entry(row: SecretRow) -> Entry {
    Entry {
        row: row.id,
        meta: SecretMeta {
            name: row.name,
            environment: row.environment,
            version: row.version,
            created_ms: row.created_ms,
            updated_ms: row.updated_ms,
        },
        salt: row.salt,
        nonce: row.nonce,
        ciphertext: row.ciphertext,
        plain: None,
    }
}

/// Decrypt every entry not yet decrypted; one that fails is logged (by name) and stays
/// encrypted, so reading it reports the error.
fn decrypt_all(keyring: &Keyring, cache: &mut Cache) {
    for ((environment, name), entry) in cache.iter_mut().filter(|(_, e)| e.plain.is_none()) {
        match decrypt(keyring, environment, name, entry) {
            Ok(v) => entry.plain = Some(v),
            Err(e) => tracing::error!("{e}"),
        }
    }
}

fn decrypt(
    keyring: &Keyring,
    environment: &str,
    name: &str,
    entry: &Entry,
) -> Result<Zeroizing<String>, SecretsError> {
    let crypto_err = |source| SecretsError::Crypto {
        name: name.to_owned(),
        environment: environment.to_owned(),
        source,
    };
    let k = slow(|| keyring.key_for(&entry.salt)).map_err(crypto_err)?;
    let bytes = crypto::open(&k, &entry.nonce, &entry.ciphertext, &aad(environment, name))
        .map_err(crypto_err)?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| crypto_err(CryptoError::Malformed("value is not UTF-8")))?;
    Ok(Zeroizing::new(text))
}

async fn read_all(store: &Store) -> Result<Cache, SecretsError> {
    Ok(store
        .live_secrets()
        .await?
        .into_iter()
        .map(|r| {
            let e = entry(r);
            ((e.meta.environment.clone(), e.meta.name.clone()), e)
        })
        .collect())
}

impl SecretResolver for SecretStore {
    fn note_read(&self, policy: &str, environment: &str, name: &str) {
        let batch = {
            let mut reads = self.policy_reads.lock();
            let key = (policy.to_owned(), environment.to_owned(), name.to_owned());
            let first = reads.audited.insert(key.clone());
            *reads.pending.entry(key).or_default() += 1;
            let due = reads
                .last_write
                .is_none_or(|t| t.elapsed() >= POLICY_READ_AUDIT_EVERY);
            if !(first || due) {
                return;
            }
            reads.last_write = Some(std::time::Instant::now());
            std::mem::take(&mut reads.pending)
        };
        let Some(runtime) = &self.runtime else {
            return;
        };
        let store = self.store.clone();
        let key = self.keyring.audit_key();
        runtime.spawn(async move {
            for ((policy, environment, name), reads) in batch {
                let actor = Actor {
                    name: format!("policy:{policy}"),
                    role: Role::Agent,
                };
                let detail = format!("{reads} read(s) by the policy");
                let note = SecretAuditNote {
                    secret_name: &name,
                    environment: &environment,
                    action: "policy-read",
                    actor: actor.audit(),
                    detail: Some(&detail),
                };
                if let Err(e) = store.append_secret_audit(&key, note).await {
                    // The query's error itself; the store's "store query failed" adds nothing here.
                    let cause = std::error::Error::source(&e)
                        .map_or_else(|| e.to_string(), ToString::to_string);
                    tracing::warn!("cannot audit policy `{policy}` reading `{name}`: {cause}");
                }
            }
        });
    }

    fn get(&self, environment: &str, name: &str) -> Option<String> {
        match self.value(environment, name) {
            Ok(v) => Some(v.to_string()),
            Err(SecretsError::NotFound { .. }) => None,
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        }
    }
}
