//! The store: one SQLite database (`ironhost.db` under the ironhost home, `.ironhost/` by
//! default) through sqlx. Migrations are the numbered files in `host/migrations/`, compiled in
//! and applied in order, each in its own transaction.
//!
//! Writes from the call path never wait for the database: the [`recorder`] subscribes to the
//! event bus and writes in batches; policy state is written behind by [`state`]. The secret
//! store's rows and its audit log are read and written through [`secrets`].

pub mod audit;
pub mod fleet;
pub mod ledger;
pub mod queries;
pub mod recorder;
pub mod secrets;
pub mod state;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// The database file's name in the ironhost home.
pub const DB_FILE: &str = "ironhost.db";
/// Events and call records older than this are pruned; audit rows are kept.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/0001_init.sql")),
    (
        2,
        "agent_runner",
        include_str!("../../migrations/0002_agent_runner.sql"),
    ),
    (
        3,
        "audit_chain",
        include_str!("../../migrations/0003_audit_chain.sql"),
    ),
    (
        4,
        "call_api",
        include_str!("../../migrations/0004_call_api.sql"),
    ),
    (5, "fleet", include_str!("../../migrations/0005_fleet.sql")),
];

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    pool: SqlitePool,
    path: PathBuf,
}

/// SQLITE_BUSY: another connection holds the lock this one needs.
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("5"))
}

impl Store {
    /// Open (creating if needed) the store in `home`, and bring its schema up to date.
    pub async fn open(home: &Path) -> Result<Store, StoreError> {
        crate::policy::engine::private_dir(home).map_err(|reason| StoreError::Home {
            path: home.to_path_buf(),
            reason: format!("the ironhost home: {reason}"),
        })?;
        let path = home.join(DB_FILE);
        Store::open_file(&path).await
    }

    /// Open the database file at `path`.
    pub async fn open_file(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Two processes creating the same fresh database: the one that loses the race to
        // switch it to WAL gets SQLITE_BUSY at once (SQLite's busy handler does not wait in
        // that case). It tries again, for up to about 10 s as the busy timeout would.
        let mut attempt: u64 = 0;
        let pool = loop {
            match SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.clone())
                .await
            {
                Ok(pool) => break pool,
                Err(e) if is_busy(&e) && attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * attempt.min(20))).await;
                }
                Err(e) => return Err(open_err(e)),
            }
        };
        let store = Store {
            pool,
            path: path.to_path_buf(),
        };
        restrict_file(path);
        store.migrate().await?;
        Ok(store)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Apply the missing migrations, all in one `BEGIN IMMEDIATE` transaction: two processes
    /// opening a fresh home at once take turns, and the second finds the work done.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = self.migrate_in(&mut conn).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::raw_sql(end).execute(&mut *conn).await?;
        result
    }

    async fn migrate_in(&self, conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
        let path = &self.path;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS _ironhost_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL,
                applied_ms INTEGER NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        let applied: Vec<(i64, String)> =
            sqlx::query_as("SELECT version, sha256 FROM _ironhost_migrations ORDER BY version")
                .fetch_all(&mut *conn)
                .await?;
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if let Some((found, _)) = applied.iter().find(|(v, _)| *v > known) {
            return Err(StoreError::TooNew {
                path: path.clone(),
                found: *found,
                known,
            });
        }
        for (version, name, sql) in MIGRATIONS {
            let digest = hex::encode(Sha256::digest(sql.as_bytes()));
            if let Some((_, sha)) = applied.iter().find(|(v, _)| v == version) {
                if *sha != digest {
                    return Err(StoreError::MigrationChanged {
                        path: path.clone(),
                        version: *version,
                    });
                }
                continue;
            }
            let fail = |source| StoreError::Migrate {
                path: path.clone(),
                version: *version,
                name,
                source,
            };
            sqlx::raw_sql(sql).execute(&mut *conn).await.map_err(fail)?;
            sqlx::query("INSERT INTO _ironhost_migrations (version, name, sha256, applied_ms) VALUES (?, ?, ?, ?)")
                .bind(version)
                .bind(*name)
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
        Ok(sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// Set `key` to `value` unless it is set; returns the value that is now stored (so two
    /// processes starting at once agree on one).
    pub async fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)")
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
        let events = sqlx::query("DELETE FROM events WHERE ts_ms < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let calls = sqlx::query("DELETE FROM calls WHERE ts_ms < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok((events, calls))
    }
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
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn migrations_apply_once_and_audit_tables_refuse_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).await.expect("open");
            // A second open finds the schema current.
            let again = Store::open(dir.path()).await.expect("reopen");
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _ironhost_migrations")
                .fetch_one(again.pool())
                .await
                .expect("count");
            assert_eq!(n, MIGRATIONS.len() as i64);
            sqlx::query("INSERT INTO secret_audit_log (ts_ms, secret_name, environment, action, actor, role) VALUES (1, 'k', 'dev', 'create', 'admin', 'admin')")
                .execute(store.pool()).await.expect("insert");
            sqlx::query("INSERT INTO pii_audit (ts_ms, agent_id, policy, pii_type, severity, location, action, value_hash) VALUES (1, 'a', 'p', 'email', 'high', 'request', 'redacted', 'h')")
                .execute(store.pool()).await.expect("insert");
            for sql in [
                "UPDATE secret_audit_log SET actor = 'mallory'",
                "DELETE FROM secret_audit_log",
                "UPDATE pii_audit SET value_hash = 'x'",
                "DELETE FROM pii_audit",
            ] {
                let err = sqlx::query(sql).execute(store.pool()).await.expect_err(sql).to_string();
                assert!(err.contains("append-only"), "{sql}: {err}");
            }
            // Retention leaves the audit rows.
            store.prune(now_ms() + 30 * 24 * 3600 * 1000).await.expect("prune");
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secret_audit_log")
                .fetch_one(store.pool()).await.expect("count");
            assert_eq!(n, 1);
        });
    }

    #[test]
    fn two_processes_opening_a_fresh_home_at_once_both_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let (a, b) = tokio::join!(Store::open(dir.path()), Store::open(dir.path()));
            a.expect("first");
            let b = b.expect("second");
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _ironhost_migrations")
                .fetch_one(b.pool())
                .await
                .expect("count");
            assert_eq!(n, MIGRATIONS.len() as i64);
        });
    }

    #[test]
    fn a_store_of_the_first_schema_is_upgraded_and_keeps_its_agents() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).await.expect("open");
            // Back to the first schema, as an earlier ironhost left it, with an agent in it.
            sqlx::raw_sql(
                "ALTER TABLE agents DROP COLUMN runner;
                 ALTER TABLE agents DROP COLUMN host;
                 DROP TABLE components;
                 DROP TABLE bundle_revisions;
                 DROP TABLE changes;
                 DROP TABLE agent_instances;
                 DROP TABLE budget_leases;
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
                 BEGIN SELECT RAISE(ABORT, 'pii_audit is append-only'); END;
                 INSERT INTO secret_audit_log (ts_ms, secret_name, environment, action, actor, role)
                 VALUES (1, 'K', 'dev', 'create', 'admin', 'admin');
                 DELETE FROM _ironhost_migrations WHERE version > 1;
                 INSERT INTO agents (id, name, script, bundle, environment, state, created_ms, updated_ms)
                 VALUES ('lg-1', 'lead_gen', 'lead_gen.py', 'default', 'dev', 'completed', 1, 1);",
            )
            .execute(store.pool())
            .await
            .expect("downgrade");
            store.pool().close().await;
            let store = Store::open(dir.path()).await.expect("upgrade");
            let agents = store.agents().await.expect("agents");
            assert_eq!(agents.len(), 1);
            assert_eq!((agents[0].id.as_str(), agents[0].runner.as_str()), ("lg-1", "ironhost"));
            // The audit row is kept, waiting to be sealed by the first host that has the key.
            let unsealed: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM secret_audit_log WHERE chain_hash IS NULL",
            )
            .fetch_one(store.pool())
            .await
            .expect("count");
            assert_eq!(unsealed, 1);
        });
    }

    #[test]
    fn a_changed_migration_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).await.expect("open");
            sqlx::query("UPDATE _ironhost_migrations SET sha256 = 'x' WHERE version = 1")
                .execute(store.pool())
                .await
                .expect("update");
            store.pool().close().await;
            let err = Store::open(dir.path())
                .await
                .expect_err("changed")
                .to_string();
            assert!(
                err.contains("migration 1") && err.contains("checksum"),
                "{err}"
            );
        });
    }

    #[test]
    fn old_events_and_calls_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let store = Store::open(dir.path()).await.expect("open");
            let now = now_ms();
            for ts in [now - 8 * 24 * 3600 * 1000, now] {
                sqlx::query("INSERT INTO events (ts_ms, agent_id, severity, type, body) VALUES (?, 'a', 'info', 't', '{}')")
                    .bind(ts).execute(store.pool()).await.expect("event");
                sqlx::query("INSERT INTO calls (id, agent_id, kind, outcome, latency_ms, verdicts, ts_ms) VALUES (?, 'a', 'llm', 'ok', 1, '[]', ?)")
                    .bind(format!("c{ts}")).bind(ts).execute(store.pool()).await.expect("call");
            }
            assert_eq!(store.prune(now).await.expect("prune"), (1, 1));
        });
    }
}
