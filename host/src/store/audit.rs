//! The audit tables (`secret_audit_log`, `pii_audit`) as a keyed hash chain: tampering shows.
//!
//! Every row carries `chain_hash = HMAC-SHA256(audit key, table, id, previous row's hash, the
//! row's values as SQLite's quote() writes them)` (PostgreSQL writes them the same way, so a row
//! has the same seal on both backends), and `audit_chain_heads` holds each table's last id and
//! hash under a MAC of its own. The audit key is a random key of the installation, kept
//! encrypted under the master key, so whoever can write the database file but does not hold the
//! master key cannot make a changed, inserted or removed row fit: [`verify`] names the first row
//! where the chain breaks, a head that does not match the last row (rows removed from the end),
//! and triggers that were dropped (or, on PostgreSQL, disabled). Rows are sealed in the
//! transaction that writes them, which locks the table's head ([`lock_head`]) before it inserts
//! the row: rows are numbered in the order they are sealed in, on PostgreSQL too.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;
use zeroize::Zeroizing;

use super::{Backend, Store};

/// What a chained column holds, for writing its value the same way on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
    Blob,
}

use Kind::{Blob, Integer, Text};

/// A table under the chain: its name and the columns its hash covers, in order.
#[derive(Debug, Clone, Copy)]
pub struct AuditTable {
    pub name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The triggers that refuse UPDATE and DELETE.
    triggers: [&'static str; 2],
    /// PostgreSQL's trigger refusing TRUNCATE.
    truncate_trigger: &'static str,
}

/// The secret store's audit: every change and every policy read of a secret.
pub const SECRET_AUDIT: AuditTable = AuditTable {
    name: "secret_audit_log",
    columns: &[
        ("ts_ms", Integer),
        ("secret_name", Text),
        ("environment", Text),
        ("action", Text),
        ("actor", Text),
        ("role", Text),
        ("detail", Text),
    ],
    triggers: ["secret_audit_log_no_update", "secret_audit_log_no_delete"],
    truncate_trigger: "secret_audit_log_no_truncate",
};

/// PII findings.
pub const PII_AUDIT: AuditTable = AuditTable {
    name: "pii_audit",
    columns: &[
        ("ts_ms", Integer),
        ("agent_id", Text),
        ("call_id", Text),
        ("policy", Text),
        ("pii_type", Text),
        ("severity", Text),
        ("location", Text),
        ("action", Text),
        ("value_hash", Text),
        ("value_nonce", Blob),
        ("value_ciphertext", Blob),
    ],
    triggers: ["pii_audit_no_update", "pii_audit_no_delete"],
    truncate_trigger: "pii_audit_no_truncate",
};

/// Both chained tables.
pub const AUDIT_TABLES: [AuditTable; 2] = [SECRET_AUDIT, PII_AUDIT];

/// The installation's audit key.
#[derive(Clone)]
pub struct AuditKey(Arc<Zeroizing<Vec<u8>>>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(hidden)")
    }
}

impl AuditKey {
    pub fn new(key: Zeroizing<Vec<u8>>) -> AuditKey {
        AuditKey(Arc::new(key))
    }

    fn mac(&self, parts: &[&[u8]]) -> String {
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        for p in parts {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        hex::encode(m.finalize().into_bytes())
    }

    fn row_hash(&self, table: &str, id: i64, prev: &str, values: &str) -> String {
        self.mac(&[
            b"row",
            table.as_bytes(),
            &id.to_le_bytes(),
            prev.as_bytes(),
            values.as_bytes(),
        ])
    }

    fn head_mac(&self, table: &str, last_id: i64, last_hash: &str) -> String {
        self.mac(&[
            b"head",
            table.as_bytes(),
            &last_id.to_le_bytes(),
            last_hash.as_bytes(),
        ])
    }
}

/// The row's values as one text, as SQLite's quote() writes them: an integer in decimal, a text
/// in single quotes with its quotes doubled, a blob as `X'HEX'`, `NULL`; separated by U+001F.
/// PostgreSQL builds the same text itself.
fn values_sql(backend: Backend, table: &AuditTable) -> String {
    let quoted: Vec<String> = table
        .columns
        .iter()
        .map(|&(c, kind)| match (backend, kind) {
            (Backend::Sqlite, _) => format!("quote({c})"),
            (Backend::Postgres, Integer) => format!("COALESCE(CAST({c} AS TEXT), 'NULL')"),
            (Backend::Postgres, Text) => {
                format!("COALESCE('''' || REPLACE({c}, '''', '''''') || '''', 'NULL')")
            }
            (Backend::Postgres, Blob) => {
                format!("COALESCE('X''' || UPPER(ENCODE({c}, 'hex')) || '''', 'NULL')")
            }
        })
        .collect();
    match backend {
        Backend::Sqlite => quoted.join(" || char(31) || "),
        Backend::Postgres => quoted.join(" || CHR(31) || "),
    }
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Take `table`'s chain head in `tx`, before inserting the row to seal: concurrent writers
/// take turns from there to the commit (on SQLite the statement takes the database's write
/// lock; on PostgreSQL it locks the head's row), so rows get their ids in the order they are
/// sealed in.
pub async fn lock_head(tx: &mut Tx<'_>, table: &AuditTable) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE audit_chain_heads SET last_id = last_id WHERE tbl = $1")
        .bind(table.name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Seal the row `id` just inserted into `table` in `tx` (after [`lock_head`]), and move the
/// table's head to it.
pub async fn seal(
    tx: &mut Tx<'_>,
    key: &AuditKey,
    table: &AuditTable,
    id: i64,
) -> Result<(), sqlx::Error> {
    let head = sqlx::query(
        "UPDATE audit_chain_heads SET last_id = last_id WHERE tbl = $1 RETURNING last_id, last_hash",
    )
    .bind(table.name)
    .fetch_one(&mut **tx)
    .await?;
    let (last_id, last_hash): (i64, String) = (head.get(0), head.get(1));
    if id <= last_id {
        return Err(sqlx::Error::Protocol(format!(
            "{}: row {id} is not after the chain's last row {last_id}",
            table.name
        )));
    }
    let values: String = sqlx::query_scalar(&format!(
        "SELECT {} FROM {} WHERE id = $1",
        values_sql(Backend::of(tx), table),
        table.name
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let hash = key.row_hash(table.name, id, &last_hash, &values);
    sqlx::query(&format!(
        "UPDATE {} SET chain_hash = $1 WHERE id = $2",
        table.name
    ))
    .bind(&hash)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE audit_chain_heads SET last_id = $1, last_hash = $2, mac = $3 WHERE tbl = $4",
    )
    .bind(id)
    .bind(&hash)
    .bind(key.head_mac(table.name, id, &hash))
    .bind(table.name)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Once per store, when the chain is new (its heads carry no MAC yet): seal the rows written
/// before it existed, in order, and sign the heads. Later, an unsealed row is tampering, not
/// history, and is reported by [`verify`] instead.
pub async fn start_chain(store: &Store, key: &AuditKey) -> Result<u64, sqlx::Error> {
    let mut sealed = 0;
    let mut tx = store.begin_write().await?;
    for table in AUDIT_TABLES {
        lock_head(&mut tx, &table).await?;
        let signed: Option<String> =
            sqlx::query_scalar("SELECT mac FROM audit_chain_heads WHERE tbl = $1")
                .bind(table.name)
                .fetch_one(&mut *tx)
                .await?;
        if signed.is_some() {
            continue;
        }
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM {} WHERE chain_hash IS NULL ORDER BY id",
            table.name
        ))
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            seal(&mut tx, key, &table, *id).await?;
        }
        sealed += ids.len() as u64;
        // An empty table gets its signed head too.
        sqlx::query("UPDATE audit_chain_heads SET mac = $1 WHERE tbl = $2 AND mac IS NULL")
            .bind(key.head_mac(table.name, 0, ""))
            .bind(table.name)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(sealed)
}

/// What [`verify`] found in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: &'static str,
    pub rows: u64,
    /// Empty when the chain holds.
    pub problems: Vec<String>,
}

/// Walk each audit table's chain and check its head and triggers.
pub async fn verify(store: &Store, key: &AuditKey) -> Result<Vec<TableReport>, sqlx::Error> {
    let mut reports = Vec::new();
    for table in AUDIT_TABLES {
        let mut problems = Vec::new();
        let mut triggers = table.triggers.to_vec();
        if store.backend() == Backend::Postgres {
            triggers.push(table.truncate_trigger);
        }
        for trigger in triggers {
            let (present, disabled): (i64, i64) = match store.backend() {
                Backend::Sqlite => sqlx::query_as(
                    "SELECT COUNT(*), 0 FROM sqlite_master WHERE type = 'trigger' AND name = $1 AND tbl_name = $2",
                ),
                Backend::Postgres => sqlx::query_as(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE tgenabled = 'D') FROM pg_trigger
                     WHERE tgname = $1 AND tgrelid = CAST($2 AS regclass) AND NOT tgisinternal",
                ),
            }
            .bind(trigger)
            .bind(table.name)
            .fetch_one(store.pool())
            .await?;
            if present == 0 {
                problems.push(format!("the trigger `{trigger}` was dropped"));
            } else if disabled > 0 {
                problems.push(format!("the trigger `{trigger}` was disabled"));
            }
        }
        let rows = sqlx::query(&format!(
            "SELECT id, chain_hash, {} FROM {} ORDER BY id",
            values_sql(store.backend(), &table),
            table.name
        ))
        .fetch_all(store.pool())
        .await?;
        let mut prev = String::new();
        let mut last_id = 0i64;
        for row in &rows {
            let id: i64 = row.get(0);
            let stored: Option<String> = row.get(1);
            let values: String = row.get(2);
            let expected = key.row_hash(table.name, id, &prev, &values);
            match stored {
                None => problems.push(format!("row {id} is not sealed (written outside ironhost)")),
                Some(h) if h != expected => problems.push(format!(
                    "row {id} does not match its seal: it was changed, or a row before it was removed or inserted"
                )),
                Some(_) => {}
            }
            if problems.len() >= 20 {
                problems.push("… (more problems not listed)".to_owned());
                break;
            }
            // Go on from what the row holds, so one changed row is reported once.
            prev = row.get::<Option<String>, _>(1).unwrap_or(expected);
            last_id = id;
        }
        let head =
            sqlx::query("SELECT last_id, last_hash, mac FROM audit_chain_heads WHERE tbl = $1")
                .bind(table.name)
                .fetch_optional(store.pool())
                .await?;
        match head {
            None => problems.push("the chain's head is missing".to_owned()),
            Some(h) => {
                let (head_id, head_hash, mac): (i64, String, Option<String>) =
                    (h.get(0), h.get(1), h.get(2));
                if mac.as_deref() != Some(key.head_mac(table.name, head_id, &head_hash).as_str()) {
                    problems.push("the chain's head does not match its seal".to_owned());
                } else if head_id != last_id || head_hash != prev {
                    problems.push(format!(
                        "the chain ends at row {head_id}, the table at row {last_id}: rows were removed from the end or added after it"
                    ));
                }
            }
        }
        reports.push(TableReport {
            table: table.name,
            rows: rows.len() as u64,
            problems,
        });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{BACKENDS, TestDb};
    use super::*;
    use crate::secrets::{Actor, Keyring, SecretStore};
    use crate::store::secrets::{SecretActor, SecretAuditNote};

    const MASTER: &str = "audit-test-master-key-0123456789";

    struct Fixture {
        db: TestDb,
        store: Store,
        key: AuditKey,
    }

    /// Insert a PII audit row in `tx` as the recorder does, and seal it.
    async fn pii_row(tx: &mut Tx<'_>, key: &AuditKey, i: i64) -> i64 {
        lock_head(tx, &PII_AUDIT).await.expect("lock");
        let id: i64 = sqlx::query_scalar("INSERT INTO pii_audit (ts_ms, agent_id, policy, pii_type, severity, location, action, value_hash, value_nonce) VALUES ($1, 'a', 'pii-redact', 'email', 'high', 'request', 'redacted', $2, $3) RETURNING id")
            .bind(i)
            .bind(format!("h{i}"))
            .bind(&[0u8, 0xff][..])
            .fetch_one(&mut **tx)
            .await
            .expect("insert");
        seal(tx, key, &PII_AUDIT, id).await.expect("seal");
        id
    }

    /// A store with five secret audit rows and three PII audit rows, all written by ironhost.
    async fn fixture(backend: Backend) -> Fixture {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let keyring = Arc::new(
            Keyring::unlock(&store, db.home.path(), Some(MASTER))
                .await
                .expect("unlock"),
        );
        let key = keyring.audit_key();
        start_chain(&store, &key).await.expect("chain");
        let secrets = SecretStore::load(store.clone(), keyring)
            .await
            .expect("secrets");
        for i in 0..5 {
            secrets
                .record(&format!("S{i}"), "dev", "read", &Actor::host(), None)
                .await
                .expect("record");
        }
        for i in 0..3 {
            let mut tx = store.pool().begin().await.expect("begin");
            pii_row(&mut tx, &key, i).await;
            tx.commit().await.expect("commit");
        }
        Fixture { db, store, key }
    }

    async fn problems(f: &Fixture, table: &str) -> Vec<String> {
        verify(&f.store, &f.key)
            .await
            .expect("verify")
            .into_iter()
            .find(|r| r.table == table)
            .expect("table")
            .problems
    }

    async fn exec(f: &Fixture, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(f.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{:?}: {sql}: {e}", f.db.backend));
    }

    /// Statements that get past `table`'s trigger `trigger` (by dropping it), then `sql`.
    fn without_trigger(backend: Backend, table: &str, trigger: &str, sql: &str) -> String {
        match backend {
            Backend::Sqlite => format!("DROP TRIGGER {trigger}; {sql}"),
            Backend::Postgres => format!("DROP TRIGGER {trigger} ON {table}; {sql}"),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn an_untouched_audit_verifies_and_rows_written_by_ironhost_are_sealed() {
        for backend in BACKENDS {
            rt().block_on(async {
                let f = fixture(backend).await;
                let reports = verify(&f.store, &f.key).await.expect("verify");
                assert_eq!(reports.len(), 2);
                for r in &reports {
                    assert!(r.problems.is_empty(), "{backend:?}: {r:?}");
                }
                assert_eq!(reports[0].rows, 5);
                assert_eq!(reports[1].rows, 3);
                // The triggers still refuse changes to a sealed row, even the seal alone.
                let mut changes = vec![
                    "UPDATE secret_audit_log SET chain_hash = 'x' WHERE id = 1",
                    "UPDATE pii_audit SET value_hash = 'x' WHERE id = 1",
                    "DELETE FROM audit_chain_heads",
                ];
                if backend == Backend::Postgres {
                    changes.extend(["TRUNCATE secret_audit_log", "TRUNCATE audit_chain_heads"]);
                }
                for sql in changes {
                    assert!(
                        sqlx::raw_sql(sql).execute(f.store.pool()).await.is_err(),
                        "{backend:?}: {sql}"
                    );
                }
            });
        }
    }

    #[test]
    fn a_row_has_the_same_seal_on_both_backends() {
        // The values' text, and so the seal, is the same on SQLite and PostgreSQL: quotes,
        // NULL, empty and binary blobs, a negative number and non-ASCII text included.
        let mut seals = Vec::new();
        for backend in BACKENDS {
            seals.push(rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                let key = AuditKey::new(Zeroizing::new(vec![9u8; 32]));
                start_chain(&store, &key).await.expect("chain");
                let mut tx = store.begin_write().await.expect("begin");
                lock_head(&mut tx, &PII_AUDIT).await.expect("lock");
                let id: i64 = sqlx::query_scalar("INSERT INTO pii_audit (ts_ms, agent_id, call_id, policy, pii_type, severity, location, action, value_hash, value_nonce, value_ciphertext) VALUES ($1, $2, NULL, $3, 'email', 'high', 'request', 'redacted', $4, $5, $6) RETURNING id")
                    .bind(-42i64)
                    .bind("o'brien \"x\" é ü\t|")
                    .bind("''")
                    .bind("")
                    .bind(&[0u8, 0x0a, 0xff, b'\''][..])
                    .bind(&[][..])
                    .fetch_one(&mut *tx)
                    .await
                    .expect("insert");
                seal(&mut tx, &key, &PII_AUDIT, id).await.expect("seal");
                let values: String = sqlx::query_scalar(&format!(
                    "SELECT {} FROM pii_audit WHERE id = $1",
                    values_sql(backend, &PII_AUDIT)
                ))
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .expect("values");
                tx.commit().await.expect("commit");
                let hash: String = sqlx::query_scalar("SELECT chain_hash FROM pii_audit")
                    .fetch_one(store.pool())
                    .await
                    .expect("hash");
                let reports = verify(&store, &key).await.expect("verify");
                assert!(reports.iter().all(|r| r.problems.is_empty()), "{backend:?}: {reports:?}");
                (values, hash)
            }));
        }
        assert_eq!(
            seals[0].0,
            "-42\u{1f}'o''brien \"x\" é ü\t|'\u{1f}NULL\u{1f}''''''\u{1f}'email'\u{1f}'high'\u{1f}'request'\u{1f}'redacted'\u{1f}''\u{1f}X'000AFF27'\u{1f}X''"
        );
        assert_eq!(seals[0], seals[1], "SQLite (left) and PostgreSQL (right)");
    }

    #[test]
    fn rows_written_before_the_chain_are_sealed_once_at_the_first_start() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                // As migration 3 leaves an older store: rows without seals, heads unsigned.
                sqlx::raw_sql("INSERT INTO secret_audit_log (ts_ms, secret_name, environment, action, actor, role) VALUES (1, 'K', 'dev', 'create', 'admin', 'admin'), (2, 'K', 'dev', 'update', 'admin', 'admin')")
                    .execute(store.pool())
                    .await
                    .expect("insert");
                let keyring = Keyring::unlock(&store, db.home.path(), Some(MASTER))
                    .await
                    .expect("unlock");
                let key = keyring.audit_key();
                assert_eq!(start_chain(&store, &key).await.expect("chain"), 2, "{backend:?}");
                let reports = verify(&store, &key).await.expect("verify");
                assert!(reports.iter().all(|r| r.problems.is_empty()), "{backend:?}: {reports:?}");
                // A wrong key (another installation's) sees every seal broken.
                let other = AuditKey::new(Zeroizing::new(vec![7u8; 32]));
                let reports = verify(&store, &other).await.expect("verify");
                assert!(!reports[0].problems.is_empty(), "{reports:?}");
            });
        }
    }

    #[test]
    fn a_row_rewritten_behind_the_triggers_is_detected() {
        for backend in BACKENDS {
            rt().block_on(async {
                let f = fixture(backend).await;
                // The seal kept as it was: the values no longer fit it.
                let rewrite = match backend {
                    // REPLACE deletes and inserts without firing the triggers.
                    Backend::Sqlite => [
                        "REPLACE INTO secret_audit_log (id, ts_ms, secret_name, environment, action, actor, role, detail, chain_hash) SELECT id, ts_ms, secret_name, environment, action, 'mallory', role, detail, chain_hash FROM secret_audit_log WHERE id = 3",
                        "REPLACE INTO pii_audit (id, ts_ms, agent_id, call_id, policy, pii_type, severity, location, action, value_hash, value_nonce, value_ciphertext, chain_hash) SELECT id, ts_ms, agent_id, call_id, policy, 'phone', severity, location, action, value_hash, value_nonce, value_ciphertext, chain_hash FROM pii_audit WHERE id = 2",
                    ],
                    // The tables' owner can switch their triggers off for a moment.
                    Backend::Postgres => [
                        "ALTER TABLE secret_audit_log DISABLE TRIGGER secret_audit_log_no_update; UPDATE secret_audit_log SET actor = 'mallory' WHERE id = 3; ALTER TABLE secret_audit_log ENABLE TRIGGER secret_audit_log_no_update",
                        "ALTER TABLE pii_audit DISABLE TRIGGER USER; UPDATE pii_audit SET pii_type = 'phone' WHERE id = 2; ALTER TABLE pii_audit ENABLE TRIGGER USER",
                    ],
                };
                exec(&f, rewrite[0]).await;
                let p = problems(&f, "secret_audit_log").await;
                assert_eq!(p.len(), 1, "{backend:?}: {p:?}");
                assert!(p[0].starts_with("row 3 does not match its seal"), "{p:?}");
                exec(&f, rewrite[1]).await;
                let p = problems(&f, "pii_audit").await;
                assert!(p.len() == 1 && p[0].starts_with("row 2 does not match"), "{backend:?}: {p:?}");
            });
        }
    }

    #[test]
    fn a_disabled_or_dropped_trigger_is_detected_on_postgres() {
        rt().block_on(async {
            let f = fixture(Backend::Postgres).await;
            exec(
                &f,
                "ALTER TABLE pii_audit DISABLE TRIGGER pii_audit_no_delete",
            )
            .await;
            let p = problems(&f, "pii_audit").await;
            assert_eq!(p, ["the trigger `pii_audit_no_delete` was disabled"]);
            exec(&f, "DROP TRIGGER pii_audit_no_truncate ON pii_audit").await;
            let p = problems(&f, "pii_audit").await;
            assert!(
                p.iter()
                    .any(|m| m.contains("`pii_audit_no_truncate` was dropped")),
                "{p:?}"
            );
        });
    }

    #[test]
    fn dropped_triggers_and_removed_rows_are_detected() {
        for backend in BACKENDS {
            rt().block_on(async {
                let table = "secret_audit_log";
                let trigger = "secret_audit_log_no_delete";
                let f = fixture(backend).await;
                exec(&f, &without_trigger(backend, table, trigger, "DELETE FROM secret_audit_log WHERE id = 2")).await;
                let p = problems(&f, table).await;
                assert!(p.iter().any(|m| m.contains("`secret_audit_log_no_delete` was dropped")), "{backend:?}: {p:?}");
                assert!(p.iter().any(|m| m.starts_with("row 3 does not match its seal")), "{backend:?}: {p:?}");

                // Rows cut from the end: the head still names the last row written.
                let f = fixture(backend).await;
                exec(&f, &without_trigger(backend, table, trigger, "DELETE FROM secret_audit_log WHERE id >= 4")).await;
                let p = problems(&f, table).await;
                assert!(p.iter().any(|m| m.contains("the chain ends at row 5, the table at row 3")), "{backend:?}: {p:?}");

                // ... and moving the head back to fit needs the audit key.
                let f = fixture(backend).await;
                exec(&f, &without_trigger(backend, table, trigger, "DELETE FROM secret_audit_log WHERE id = 5; UPDATE audit_chain_heads SET last_id = 4, last_hash = (SELECT chain_hash FROM secret_audit_log WHERE id = 4) WHERE tbl = 'secret_audit_log'")).await;
                let p = problems(&f, table).await;
                assert!(p.iter().any(|m| m.contains("head does not match its seal")), "{backend:?}: {p:?}");
            });
        }
    }

    #[test]
    fn a_row_inserted_outside_ironhost_is_detected_and_not_sealed_later() {
        for backend in BACKENDS {
            rt().block_on(async {
                let f = fixture(backend).await;
                exec(&f, "INSERT INTO secret_audit_log (ts_ms, secret_name, environment, action, actor, role) VALUES (9, 'S9', 'dev', 'read', 'admin', 'admin')").await;
                // A later start does not launder it into the chain.
                assert_eq!(start_chain(&f.store, &f.key).await.expect("chain"), 0);
                let p = problems(&f, "secret_audit_log").await;
                assert!(p.iter().any(|m| m.starts_with("row 6 is not sealed")), "{backend:?}: {p:?}");
                // A forged seal does not fit either (it needs the audit key).
                let f = fixture(backend).await;
                exec(&f, "INSERT INTO secret_audit_log (ts_ms, secret_name, environment, action, actor, role, chain_hash) VALUES (9, 'S9', 'dev', 'read', 'admin', 'admin', (SELECT chain_hash FROM secret_audit_log WHERE id = 5))").await;
                let p = problems(&f, "secret_audit_log").await;
                assert!(p.iter().any(|m| m.starts_with("row 6 does not match its seal")), "{backend:?}: {p:?}");
            });
        }
    }

    #[test]
    fn writers_on_many_connections_keep_the_chain_in_order() {
        // Secret audit lines and PII rows written at once from several tasks, so on several
        // connections: each row is numbered in the order it is sealed in, and the chain holds.
        for backend in BACKENDS {
            rt().block_on(async {
                let f = fixture(backend).await;
                let tasks: Vec<_> = (0..6)
                    .map(|t| {
                        let (store, key) = (f.store.clone(), f.key.clone());
                        tokio::spawn(async move {
                            for i in 0..5 {
                                if t % 2 == 0 {
                                    let mut tx = store.pool().begin().await.expect("begin");
                                    pii_row(&mut tx, &key, t * 100 + i).await;
                                    tx.commit().await.expect("commit");
                                } else {
                                    let note = SecretAuditNote {
                                        secret_name: "S",
                                        environment: "dev",
                                        action: "read",
                                        actor: SecretActor {
                                            name: "host",
                                            role: "host",
                                        },
                                        detail: None,
                                    };
                                    store.append_secret_audit(&key, note).await.expect("audit");
                                }
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                let reports = verify(&f.store, &f.key).await.expect("verify");
                assert!(
                    reports.iter().all(|r| r.problems.is_empty()),
                    "{backend:?}: {reports:?}"
                );
                assert_eq!(
                    (reports[0].rows, reports[1].rows),
                    (5 + 15, 3 + 15),
                    "{backend:?}"
                );
            });
        }
    }
}
