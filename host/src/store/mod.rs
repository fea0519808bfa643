//! The store: one database through sqlx's `Any` driver, SQLite (the embedded default: the file
//! `ironhost.db` in the ironhost home) or PostgreSQL (for many hosts sharing budgets and
//! audit), chosen by `IRONHOST_DATABASE_URL` ([`Location`]). One SQL text serves both: `$1`
//! placeholders, `ON CONFLICT`, `RETURNING`, `IS DISTINCT FROM`, sums cast to the type read;
//! [`Store::backend`] says which database it is for the few places that differ.
//!
//! Migrations are the numbered files in `host/migrations/sqlite/` and `host/migrations/postgres/`
//! (one file per version and backend, the same schema), compiled in and applied in order in one
//! transaction that holds the database's write lock (SQLite) or an advisory lock (PostgreSQL).
//!
//! Writes from the call path never wait for the database: the [`recorder`] subscribes to the
//! event bus and writes in batches; policy state is written behind by [`state`]. The secret
//! store's rows and its audit log are read and written through [`secrets`].

pub mod audit;
pub mod fleet;
pub mod ledger;
mod location;
#[cfg(test)]
mod parity;
pub mod queries;
pub mod recorder;
pub mod secrets;
pub mod sent_alerts;
pub mod state;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row};

pub use location::{DATABASE_URL_VAR, Location, mask};

/// The database file's name in the ironhost home.
pub const DB_FILE: &str = "ironhost.db";
/// Events and call records older than this are pruned; audit rows are kept.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which database a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Which database `conn` is connected to.
    pub fn of(conn: &AnyConnection) -> Backend {
        if conn.backend_name() == <sqlx::Postgres as sqlx::Database>::NAME {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// One schema version: its number, its name, and its file for each backend.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

impl Migration {
    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

macro_rules! migration {
    ($version:expr, $name:expr, $file:expr) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../../migrations/sqlite/", $file)),
            postgres: include_str!(concat!("../../migrations/postgres/", $file)),
        }
    };
}

/// The migrations, in order.
const MIGRATIONS: &[Migration] = &[
    migration!(1, "init", "0001_init.sql"),
    migration!(2, "agent_runner", "0002_agent_runner.sql"),
    migration!(3, "audit_chain", "0003_audit_chain.sql"),
    migration!(4, "call_api", "0004_call_api.sql"),
    migration!(5, "fleet", "0005_fleet.sql"),
    migration!(6, "units", "0006_units.sql"),
    migration!(7, "alerts", "0007_alerts.sql"),
];

/// The key of the PostgreSQL advisory lock the migration run holds.
const MIGRATION_LOCK: i64 = 0x6972_6f6e_686f_7374; // "ironhost"

/// What went wrong with the store. `path` is the database file, or for PostgreSQL its URL
/// with the password masked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{DATABASE_URL_VAR}: {0}")]
    Url(String),
    #[error("{path}: cannot open the store: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("{path}: {reason}")]
    Home { path: PathBuf, reason: String },
    #[error("{path}: migration {version} ({name}) failed: {source}")]
    Migrate {
        path: PathBuf,
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
    #[error(
        "{path}: migration {version} was applied with different contents (checksum mismatch); the database was changed by another ironhost build"
    )]
    MigrationChanged { path: PathBuf, version: i64 },
    #[error(
        "{path}: the database is at schema version {found}, newer than this ironhost knows ({known}); upgrade ironhost"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("{path}: {source}")]
    AuditChain { path: PathBuf, source: sqlx::Error },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A handle on the database; cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: the URL to listen for change notifications on (`fleet::CHANNEL`).
    listen: Option<ListenUrl>,
    /// The SQLite file, or the PostgreSQL URL with its password masked: what messages name.
    path: PathBuf,
}

/// A database URL with its password: never shown (its `Debug` is masked).
#[derive(Clone)]
pub(crate) struct ListenUrl(pub(crate) Arc<str>);

impl std::fmt::Debug for ListenUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenUrl(***)")
    }
}

/// SQLITE_BUSY: another connection holds the lock this one needs.
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("5"))
}

/// sqlx's `Any` driver knows SQLite and PostgreSQL once this has run.
fn drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// What every SQLite connection sets (the journal mode is the file's, set once at open).
const SQLITE_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

impl Store {
    /// Open the store the process's settings choose: `IRONHOST_DATABASE_URL` in `vars` (see
    /// [`Location`]), else `ironhost.db` in `home`. `ironhost start`, `ironhost serve`, the
    /// Python SDK and the CLI's commands all open it here. The home is created (private) in
    /// every case: it holds the master key and the agents' journals.
    pub async fn open_configured(
        home: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<Store, StoreError> {
        let location = Location::from_vars(vars).map_err(StoreError::Url)?;
        Store::open_at(home, &location).await
    }

    /// Open the store at `location` (`Location::Home`: in `home`).
    pub async fn open_at(home: &Path, location: &Location) -> Result<Store, StoreError> {
        private_home(home)?;
        match location {
            Location::Home => Store::open_file(&home.join(DB_FILE)).await,
            Location::SqliteFile(path) => Store::open_file(path).await,
            Location::Postgres { url, masked } => Store::open_postgres(url, masked).await,
        }
    }

    /// Open (creating if needed) the SQLite store in `home`, and bring its schema up to date.
    pub async fn open(home: &Path) -> Result<Store, StoreError> {
        private_home(home)?;
        Store::open_file(&home.join(DB_FILE)).await
    }

    /// Open the SQLite database file at `path`.
    pub async fn open_file(path: &Path) -> Result<Store, StoreError> {
        drivers();
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let url = location::sqlite_url(path).map_err(|reason| StoreError::Home {
            path: path.to_path_buf(),
            reason,
        })?;
        let options = AnyConnectOptions::from_str(&url).map_err(open_err)?;
        // WAL is a property of the file. Two processes creating the same fresh database: the
        // one that loses the race to switch it to WAL gets SQLITE_BUSY at once (SQLite's busy
        // handler does not wait in that case). It tries again, for up to about 10 s as the busy
        // timeout would.
        let mut attempt: u64 = 0;
        loop {
            match wal(&options).await {
                Ok(()) => break,
                Err(e) if is_busy(&e) && attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * attempt.min(20))).await;
                }
                Err(e) => return Err(open_err(e)),
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *conn, SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let store = Store {
            pool,
            backend: Backend::Sqlite,
            listen: None,
            path: path.to_path_buf(),
        };
        restrict_file(path);
        store.migrate().await?;
        Ok(store)
    }

    /// Open the PostgreSQL database at `url` (`masked`: the same without its password).
    async fn open_postgres(url: &str, masked: &str) -> Result<Store, StoreError> {
        drivers();
        let path = PathBuf::from(masked);
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let options = AnyConnectOptions::from_str(url).map_err(open_err)?;
        // One connection first, so a server that is down, a refused login or a missing
        // database is reported as such at once (the pool would retry a refused connection
        // until its timeout and then only say that it timed out).
        AnyConnection::connect_with(&options)
            .await
            .map_err(open_err)?
            .close()
            .await
            .map_err(open_err)?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let store = Store {
            pool,
            backend: Backend::Postgres,
            listen: Some(ListenUrl(Arc::from(url))),
            path,
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is, for the few statements that differ.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite file, or the PostgreSQL URL with its password masked.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A transaction that writes: on SQLite it holds the database's write lock from the start
    /// (`BEGIN IMMEDIATE`), so what it reads stays true until it commits; on PostgreSQL it is a
    /// plain transaction, and the rows it reads to decide are locked with
    /// [`for_update`](Store::for_update).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// What ends a `SELECT` whose rows a [`begin_write`](Store::begin_write) transaction
    /// decides on: `" FOR UPDATE"` on PostgreSQL; nothing on SQLite, which has the whole
    /// database locked already (and no such clause).
    pub fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Apply the missing migrations, all in one transaction holding the write lock (SQLite) or
    /// an advisory lock (PostgreSQL): two processes opening a fresh database at once take
    /// turns, and the second finds the work done.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        match self.migrate_in(&mut tx).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(())
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        }
    }

    async fn migrate_in(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        let path = &self.path;
        let table = match self.backend {
            Backend::Sqlite => {
                "CREATE TABLE IF NOT EXISTS _ironhost_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL,
                applied_ms INTEGER NOT NULL)"
            }
            Backend::Postgres => {
                "CREATE TABLE IF NOT EXISTS _ironhost_migrations (
                version BIGINT PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL,
                applied_ms BIGINT NOT NULL)"
            }
        };
        sqlx::raw_sql(table).execute(&mut *conn).await?;
        let applied: Vec<(i64, String)> =
            sqlx::query_as("SELECT version, sha256 FROM _ironhost_migrations ORDER BY version")
                .fetch_all(&mut *conn)
                .await?;
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        if let Some((found, _)) = applied.iter().find(|(v, _)| *v > known) {
            return Err(StoreError::TooNew {
                path: path.clone(),
                found: *found,
                known,
            });
        }
        for m in MIGRATIONS {
            let sql = m.sql(self.backend);
            let digest = hex::encode(Sha256::digest(sql.as_bytes()));
            if let Some((_, sha)) = applied.iter().find(|(v, _)| *v == m.version) {
                if *sha != digest {
                    return Err(StoreError::MigrationChanged {
                        path: path.clone(),
                        version: m.version,
                    });
                }
                continue;
            }
            let fail = |source| StoreError::Migrate {
                path: path.clone(),
                version: m.version,
                name: m.name,
                source,
            };
            sqlx::raw_sql(sql).execute(&mut *conn).await.map_err(fail)?;
            sqlx::query("INSERT INTO _ironhost_migrations (version, name, sha256, applied_ms) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(&digest)
                .bind(now_ms())
                .execute(&mut *conn)
                .await
                .map_err(fail)?;
        }
        Ok(())
    }

    /// An installation-wide value.
    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// Set `key` to `value` unless it is set; returns the value that is now stored (so two
    /// processes starting at once agree on one).
    pub async fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(self.meta(key).await?.unwrap_or_else(|| value.to_vec()))
    }

    /// `ironhost audit verify`: seal the audit rows written before the chain existed (once per
    /// store, [`audit::start_chain`]), then walk the chain ([`audit::verify`]).
    pub async fn verify_audit_chain(
        &self,
        key: &audit::AuditKey,
    ) -> Result<Vec<audit::TableReport>, StoreError> {
        let failed = |source| StoreError::AuditChain {
            path: self.path.clone(),
            source,
        };
        audit::start_chain(self, key).await.map_err(failed)?;
        audit::verify(self, key).await.map_err(failed)
    }

    /// Delete events and call records older than [`RETENTION`] before `now_ms`. Audit rows
    /// stay. Returns (events, calls) deleted.
    pub async fn prune(&self, now_ms: i64) -> Result<(u64, u64), StoreError> {
        let cutoff = now_ms - RETENTION.as_millis() as i64;
        let events = sqlx::query("DELETE FROM events WHERE ts_ms < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let calls = sqlx::query("DELETE FROM calls WHERE ts_ms < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM units WHERE ts_ms < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok((events, calls))
    }
}

/// Switch the SQLite file to WAL, on a connection of its own.
async fn wal(options: &AnyConnectOptions) -> Result<(), sqlx::Error> {
    let mut conn = AnyConnection::connect_with(options).await?;
    let switched = sqlx::raw_sql("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await;
    conn.close().await?;
    switched.map(|_| ())
}

/// The ironhost home, created private (owner only) if missing.
fn private_home(home: &Path) -> Result<(), StoreError> {
    crate::policy::engine::private_dir(home).map_err(|reason| StoreError::Home {
        path: home.to_path_buf(),
        reason: format!("the ironhost home: {reason}"),
    })
}

/// Owner-only permissions on the database file (it holds ciphertext and hashes, but still).
fn restrict_file(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{BACKENDS, TestDb, rt};
    use super::*;

    async fn count(store: &Store, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{:?}: {sql}: {e}", store.backend()))
    }

    async fn refused(store: &Store, sql: &str) -> String {
        sqlx::raw_sql(sql)
            .execute(store.pool())
            .await
            .err()
            .unwrap_or_else(|| panic!("{:?}: `{sql}` was let through", store.backend()))
            .to_string()
    }

    #[test]
    fn migrations_apply_once_and_audit_tables_refuse_changes() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                assert_eq!(store.backend(), backend);
                // A second open finds the schema current.
                let again = db.store().await;
                let n = count(&again, "SELECT COUNT(*) FROM _ironhost_migrations").await;
                assert_eq!(n, MIGRATIONS.len() as i64, "{backend:?}");
                sqlx::query("INSERT INTO secret_audit_log (ts_ms, secret_name, environment, action, actor, role) VALUES (1, 'k', 'dev', 'create', 'admin', 'admin')")
                    .execute(store.pool()).await.expect("insert");
                sqlx::query("INSERT INTO pii_audit (ts_ms, agent_id, policy, pii_type, severity, location, action, value_hash) VALUES (1, 'a', 'p', 'email', 'high', 'request', 'redacted', 'h')")
                    .execute(store.pool()).await.expect("insert");
                let mut changes = vec![
                    "UPDATE secret_audit_log SET actor = 'mallory'",
                    "DELETE FROM secret_audit_log",
                    "UPDATE pii_audit SET value_hash = 'x'",
                    "DELETE FROM pii_audit",
                    // Sealing, but with a value changed too.
                    "UPDATE pii_audit SET chain_hash = 'seal', value_hash = 'x'",
                    "UPDATE secret_audit_log SET chain_hash = 'seal', id = 7",
                ];
                if backend == Backend::Postgres {
                    changes.extend(["TRUNCATE secret_audit_log", "TRUNCATE pii_audit"]);
                }
                for sql in changes {
                    let err = refused(&store, sql).await;
                    assert!(err.contains("append-only"), "{backend:?}: {sql}: {err}");
                }
                // The one change allowed: sealing a row, once.
                sqlx::raw_sql("UPDATE secret_audit_log SET chain_hash = 'seal'")
                    .execute(store.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{backend:?}: sealing: {e}"));
                let err = refused(&store, "UPDATE secret_audit_log SET chain_hash = 'again'").await;
                assert!(err.contains("append-only"), "{backend:?}: {err}");
                let mut heads = vec!["DELETE FROM audit_chain_heads"];
                if backend == Backend::Postgres {
                    heads.push("TRUNCATE audit_chain_heads");
                }
                for sql in heads {
                    let err = refused(&store, sql).await;
                    assert!(err.contains("cannot be deleted"), "{backend:?}: {sql}: {err}");
                }
                // Retention leaves the audit rows.
                store.prune(now_ms() + 30 * 24 * 3600 * 1000).await.expect("prune");
                assert_eq!(count(&store, "SELECT COUNT(*) FROM secret_audit_log").await, 1);
                assert_eq!(count(&store, "SELECT COUNT(*) FROM pii_audit").await, 1);
            });
        }
    }

    #[test]
    fn two_processes_opening_a_fresh_database_at_once_all_succeed() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let (a, b, c) = tokio::join!(db.open(), db.open(), db.open());
                a.unwrap_or_else(|e| panic!("{backend:?}: first: {e}"));
                c.unwrap_or_else(|e| panic!("{backend:?}: third: {e}"));
                let b = b.unwrap_or_else(|e| panic!("{backend:?}: second: {e}"));
                let n = count(&b, "SELECT COUNT(*) FROM _ironhost_migrations").await;
                assert_eq!(n, MIGRATIONS.len() as i64, "{backend:?}");
            });
        }
    }

    /// What takes a store back to the first schema, as an earlier ironhost left it.
    fn downgrade(backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => {
                "ALTER TABLE agents DROP COLUMN runner;
                 ALTER TABLE agents DROP COLUMN host;
                 DROP TABLE components;
                 DROP TABLE bundle_revisions;
                 DROP TABLE changes;
                 DROP TABLE agent_instances;
                 DROP TABLE budget_leases;
                 DROP TABLE sent_alerts;
                 DROP TABLE units;
                 DROP INDEX events_agent_type;
                 ALTER TABLE calls DROP COLUMN api;
                 ALTER TABLE calls DROP COLUMN reason;
                 DROP TRIGGER secret_audit_log_no_update;
                 DROP TRIGGER pii_audit_no_update;
                 DROP TRIGGER audit_chain_heads_no_delete;
                 DROP TABLE audit_chain_heads;
                 ALTER TABLE secret_audit_log DROP COLUMN chain_hash;
                 ALTER TABLE pii_audit DROP COLUMN chain_hash;
                 CREATE TRIGGER secret_audit_log_no_update BEFORE UPDATE ON secret_audit_log
                 BEGIN SELECT RAISE(ABORT, 'secret_audit_log is append-only'); END;
                 CREATE TRIGGER pii_audit_no_update BEFORE UPDATE ON pii_audit
                 BEGIN SELECT RAISE(ABORT, 'pii_audit is append-only'); END;"
            }
            Backend::Postgres => {
                "ALTER TABLE agents DROP COLUMN runner;
                 ALTER TABLE agents DROP COLUMN host;
                 DROP TABLE components;
                 DROP TABLE bundle_revisions;
                 DROP TABLE changes;
                 DROP TABLE agent_instances;
                 DROP TABLE budget_leases;
                 DROP TABLE sent_alerts;
                 DROP TABLE units;
                 DROP INDEX events_agent_type;
                 ALTER TABLE calls DROP COLUMN api;
                 ALTER TABLE calls DROP COLUMN reason;
                 DROP TRIGGER secret_audit_log_no_update ON secret_audit_log;
                 DROP TRIGGER pii_audit_no_update ON pii_audit;
                 DROP TABLE audit_chain_heads;
                 ALTER TABLE secret_audit_log DROP COLUMN chain_hash;
                 ALTER TABLE pii_audit DROP COLUMN chain_hash;
                 CREATE TRIGGER secret_audit_log_no_update BEFORE UPDATE ON secret_audit_log
                 FOR EACH ROW EXECUTE FUNCTION ironhost_refuse('secret_audit_log is append-only');
                 CREATE TRIGGER pii_audit_no_update BEFORE UPDATE ON pii_audit
                 FOR EACH ROW EXECUTE FUNCTION ironhost_refuse('pii_audit is append-only');"
            }
        }
    }

    #[test]
    fn a_store_of_the_first_schema_is_upgraded_and_keeps_its_agents() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                sqlx::raw_sql(downgrade(backend))
                    .execute(store.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{backend:?}: downgrade: {e}"));
                sqlx::raw_sql(
                    "INSERT INTO secret_audit_log (ts_ms, secret_name, environment, action, actor, role)
                     VALUES (1, 'K', 'dev', 'create', 'admin', 'admin');
                     DELETE FROM _ironhost_migrations WHERE version > 1;
                     INSERT INTO agents (id, name, script, bundle, environment, state, created_ms, updated_ms)
                     VALUES ('lg-1', 'lead_gen', 'lead_gen.py', 'default', 'dev', 'completed', 1, 1);",
                )
                .execute(store.pool())
                .await
                .expect("rows of the first schema");
                store.pool().close().await;
                let store = db.open().await.unwrap_or_else(|e| panic!("{backend:?}: upgrade: {e}"));
                let agents = store.agents().await.expect("agents");
                assert_eq!(agents.len(), 1);
                assert_eq!((agents[0].id.as_str(), agents[0].runner.as_str()), ("lg-1", "ironhost"));
                // The audit row is kept, waiting to be sealed by the first host that has the key.
                let unsealed = count(&store, "SELECT COUNT(*) FROM secret_audit_log WHERE chain_hash IS NULL").await;
                assert_eq!(unsealed, 1, "{backend:?}");
                // ... and the upgraded schema is the fresh one.
                let fresh_db = TestDb::new(backend).await;
                let fresh = fresh_db.store().await;
                assert_eq!(
                    super::parity::schema(&store).await,
                    super::parity::schema(&fresh).await,
                    "{backend:?}"
                );
            });
        }
    }

    #[test]
    fn a_changed_migration_is_refused() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                sqlx::query("UPDATE _ironhost_migrations SET sha256 = 'x' WHERE version = 1")
                    .execute(store.pool())
                    .await
                    .expect("update");
                store.pool().close().await;
                let err = db.open().await.expect_err("changed");
                assert!(
                    matches!(err, StoreError::MigrationChanged { version: 1, .. }),
                    "{backend:?}: {err}"
                );
                let err = err.to_string();
                assert!(
                    err.contains("migration 1") && err.contains("checksum"),
                    "{err}"
                );
            });
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                sqlx::query("INSERT INTO _ironhost_migrations (version, name, sha256, applied_ms) VALUES (99, 'future', 'x', 1)")
                    .execute(store.pool())
                    .await
                    .expect("insert");
                store.pool().close().await;
                let err = db.open().await.expect_err("too new");
                assert!(
                    matches!(err, StoreError::TooNew { found: 99, known, .. } if Some(known) == MIGRATIONS.last().map(|m| m.version)),
                    "{backend:?}: {err}"
                );
                assert!(err.to_string().contains("upgrade ironhost"), "{err}");
            });
        }
    }

    #[test]
    fn released_migrations_are_never_edited() {
        // A store records each migration's checksum; an edited file makes every existing store
        // refuse to open (MigrationChanged). Changes go in a new numbered file per backend.
        let released: [(i64, &str, &str); 5] = [
            (
                1,
                "43f2521b140c7017d81fe4102826f4b4b22a31819f48be1c149138f06d6752ec",
                "5e48c3746f6737d96b036a71fada112c11970acf26f733243d2bbca0fbfbf5ea",
            ),
            (
                2,
                "fc5927a5eb4d6e9f626ac2fe2538aa507fdb5980ac3963366ff610a48514cc6c",
                "fc5927a5eb4d6e9f626ac2fe2538aa507fdb5980ac3963366ff610a48514cc6c",
            ),
            (
                3,
                "bc986681cc6b4c536e84f4aa31b74e23b81bfab23ef3ae94ef41fca73ae10c93",
                "1cc1f0f172ce2b201b0db3da64d14dd46f1d61446f478b1439e406b78316f78d",
            ),
            (
                4,
                "89d7cd6f0cc27cbb6f416f84939abe3cab9f6dbb81b4254b5c0a44d0ee2e755e",
                "89d7cd6f0cc27cbb6f416f84939abe3cab9f6dbb81b4254b5c0a44d0ee2e755e",
            ),
            (
                5,
                "71b9c6fbedccf83567df688a08a5cc4403582c3dd20f213ef001d47c1710ff3f",
                "e6118707fc1abaa7b244c92cf7f4530db071aafce089655f7a097f39e389a89e",
            ),
        ];
        for (version, sqlite, postgres) in released {
            let m = MIGRATIONS
                .iter()
                .find(|m| m.version == version)
                .expect("a released version");
            let sum = |b| hex::encode(Sha256::digest(m.sql(b).as_bytes()));
            assert_eq!(sum(Backend::Sqlite), sqlite, "sqlite/{} was edited", m.name);
            assert_eq!(
                sum(Backend::Postgres),
                postgres,
                "postgres/{} was edited",
                m.name
            );
        }
        // Versions are 1, 2, 3... with no gap and no repeat.
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{} is out of sequence", m.name);
        }
    }

    #[test]
    fn a_sqlite_store_keeps_its_settings_through_the_any_driver() {
        rt().block_on(async {
            let db = TestDb::new(Backend::Sqlite).await;
            let store = db.store().await;
            let text = |sql: &'static str| async {
                sqlx::query_scalar::<_, String>(sql)
                    .fetch_one(store.pool())
                    .await
                    .expect(sql)
            };
            assert_eq!(text("PRAGMA journal_mode").await, "wal");
            assert_eq!(count(&store, "PRAGMA synchronous").await, 1, "NORMAL");
            assert_eq!(count(&store, "PRAGMA busy_timeout").await, 10_000);
            assert_eq!(count(&store, "PRAGMA foreign_keys").await, 1);
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(db.home.path().join(DB_FILE))
                .expect("the database file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            // `$n` placeholders, reused and out of order, on SQLite.
            let row = sqlx::query("SELECT $2 || $1 || $2 AS t, $3 + 1 AS n")
                .bind("b")
                .bind("a")
                .bind(41i64)
                .fetch_one(store.pool())
                .await
                .expect("placeholders");
            assert_eq!(
                (row.get::<String, _>("t"), row.get::<i64, _>("n")),
                ("aba".to_owned(), 42)
            );
        });
    }

    #[test]
    fn a_sqlite_url_opens_that_file_and_a_bad_url_says_why() {
        rt().block_on(async {
            let home = tempfile::tempdir().expect("tempdir");
            let file = home.path().join("other place").join("my store.db");
            std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
            let url = format!(
                "sqlite://{}",
                file.display().to_string().replace(' ', "%20")
            );
            let vars = BTreeMap::from([(DATABASE_URL_VAR.to_owned(), url)]);
            let store = Store::open_configured(&home.path().join("home"), &vars)
                .await
                .expect("open");
            assert_eq!(store.backend(), Backend::Sqlite);
            assert_eq!(store.path(), file);
            assert!(file.is_file());
            assert!(!home.path().join("home").join(DB_FILE).exists());

            let vars = BTreeMap::from([(
                DATABASE_URL_VAR.to_owned(),
                "postgres://ironhost:hunter2@127.0.0.1:notaport/db".to_owned(),
            )]);
            let err = Store::open_configured(home.path(), &vars)
                .await
                .expect_err("bad URL")
                .to_string();
            assert!(err.starts_with("IRONHOST_DATABASE_URL: "), "{err}");
            assert!(err.contains("port") && !err.contains("hunter2"), "{err}");
        });
    }

    #[test]
    fn a_postgres_store_that_cannot_be_reached_names_its_masked_url() {
        rt().block_on(async {
            let home = tempfile::tempdir().expect("tempdir");
            // A port nothing listens on: bind one, note it, close it.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let url = format!("postgres://ironhost:hunter2@127.0.0.1:{port}/ironhost");
            let vars = BTreeMap::from([(DATABASE_URL_VAR.to_owned(), url)]);
            let started = std::time::Instant::now();
            let err = Store::open_configured(home.path(), &vars)
                .await
                .expect_err("nothing listens");
            assert!(matches!(err, StoreError::Open { .. }), "{err}");
            let err = err.to_string();
            assert!(
                err.starts_with(&format!(
                    "postgres://ironhost:***@127.0.0.1:{port}/ironhost: cannot open the store"
                )),
                "{err}"
            );
            assert!(err.contains("refused"), "the reason: {err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert!(started.elapsed() < Duration::from_secs(10));
            // A server that is there, without the database.
            let missing = super::testing::with_database(
                &super::testing::postgres_server_url(),
                "no_such_database",
            );
            let vars = BTreeMap::from([(DATABASE_URL_VAR.to_owned(), missing)]);
            let err = Store::open_configured(home.path(), &vars)
                .await
                .expect_err("no such database")
                .to_string();
            assert!(
                err.contains("cannot open the store")
                    && err.contains("database \"no_such_database\" does not exist"),
                "{err}"
            );
        });
    }

    #[test]
    fn begin_write_makes_read_then_write_take_turns() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                sqlx::query("INSERT INTO policy_state (policy, agent, key, value) VALUES ('p', '', 'n', '0')")
                    .execute(store.pool())
                    .await
                    .expect("insert");
                let bump = |store: Store| async move {
                    let mut tx = store.begin_write().await.expect("begin");
                    let n: String = sqlx::query_scalar(&format!(
                        "SELECT value FROM policy_state WHERE policy = 'p' AND key = 'n'{}",
                        store.for_update()
                    ))
                    .fetch_one(&mut *tx)
                    .await
                    .expect("read");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let n: i64 = n.parse().expect("a number");
                    sqlx::query("UPDATE policy_state SET value = $1 WHERE policy = 'p' AND key = 'n'")
                        .bind((n + 1).to_string())
                        .execute(&mut *tx)
                        .await
                        .expect("write");
                    tx.commit().await.expect("commit");
                };
                let handles: Vec<_> = (0..4).map(|_| tokio::spawn(bump(store.clone()))).collect();
                for h in handles {
                    h.await.expect("task");
                }
                let n: String = sqlx::query_scalar("SELECT value FROM policy_state WHERE key = 'n'")
                    .fetch_one(store.pool())
                    .await
                    .expect("read");
                assert_eq!(n, "4", "{backend:?}: a read-then-write lost an update");
            });
        }
    }

    #[test]
    fn old_events_and_calls_are_pruned() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                let now = now_ms();
                for ts in [now - 8 * 24 * 3600 * 1000, now] {
                    sqlx::query("INSERT INTO events (ts_ms, agent_id, severity, type, body) VALUES ($1, 'a', 'info', 't', '{}')")
                        .bind(ts).execute(store.pool()).await.expect("event");
                    sqlx::query("INSERT INTO calls (id, agent_id, kind, outcome, latency_ms, verdicts, ts_ms) VALUES ($1, 'a', 'llm', 'ok', 1, '[]', $2)")
                        .bind(format!("c{ts}")).bind(ts).execute(store.pool()).await.expect("call");
                }
                assert_eq!(store.prune(now).await.expect("prune"), (1, 1), "{backend:?}");
            });
        }
    }
}
