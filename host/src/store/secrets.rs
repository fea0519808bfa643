//! The secret store's tables: `secrets` (one row per secret and environment, holding only
//! ciphertext; a deleted secret keeps its row, marked deleted) and the append-only
//! `secret_audit_log`, each row sealed into the audit chain ([`super::audit::seal`]) in the
//! transaction that writes it.
//!
//! Plain data in and out: the crypto, the cache and the validation are the secret store's
//! (`crate::secrets`); here are the statements and their transactions.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::{self, AuditKey, SECRET_AUDIT};
use super::{Store, StoreError, now_ms};

/// A live secret's row: its ciphertext and what is known about it without the value.
#[derive(Debug, Clone)]
pub struct SecretRow {
    /// The row id: a secret deleted and created again is a new row.
    pub id: i64,
    pub name: String,
    pub environment: String,
    pub version: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub salt: Vec<u8>,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// A secret's value as stored: the salt its key was derived with, the nonce and the
/// ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct SealedSecret<'a> {
    pub salt: &'a [u8],
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
}

/// Who did something to a secret, as the audit log names them.
#[derive(Debug, Clone, Copy)]
pub struct SecretActor<'a> {
    pub name: &'a str,
    pub role: &'a str,
}

/// A line to append to the secret audit log (its time is taken as it is written).
#[derive(Debug, Clone, Copy)]
pub struct SecretAuditNote<'a> {
    pub secret_name: &'a str,
    pub environment: &'a str,
    pub action: &'a str,
    pub actor: SecretActor<'a>,
    pub detail: Option<&'a str>,
}

/// One line of the secret audit log, as read back.
#[derive(Debug, Clone)]
pub struct SecretAuditRow {
    pub id: i64,
    pub ts_ms: i64,
    pub secret_name: String,
    pub environment: String,
    pub action: String,
    pub actor: String,
    pub role: String,
    pub detail: Option<String>,
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

impl Store {
    /// Every live (not deleted) secret.
    pub async fn live_secrets(&self) -> Result<Vec<SecretRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM secrets WHERE deleted_ms IS NULL")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(secret_row).collect())
    }

    /// Create or update (rotate) the live secret `name` in `environment` to `value`, at `now`,
    /// and write the audit line (`create` or `update`) sealed under `key`, all in one
    /// transaction. Returns the row as it now stands and whether it was created.
    pub async fn put_secret(
        &self,
        key: &AuditKey,
        name: &str,
        environment: &str,
        value: SealedSecret<'_>,
        now: i64,
        actor: SecretActor<'_>,
    ) -> Result<(SecretRow, bool), StoreError> {
        // The audit log's head first: secret writes take turns from here (two creating the
        // same secret at once on PostgreSQL would otherwise both find none and both insert).
        let mut tx = self.pool().begin().await?;
        audit::lock_head(&mut tx, &SECRET_AUDIT).await?;
        let updated = sqlx::query(
            "UPDATE secrets SET salt = $1, nonce = $2, ciphertext = $3, version = version + 1, updated_ms = $4
             WHERE name = $5 AND environment = $6 AND deleted_ms IS NULL",
        )
        .bind(value.salt)
        .bind(value.nonce)
        .bind(value.ciphertext)
        .bind(now)
        .bind(name)
        .bind(environment)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !updated {
            sqlx::query(
                "INSERT INTO secrets (name, environment, salt, nonce, ciphertext, version, created_ms, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $7)",
            )
            .bind(name)
            .bind(environment)
            .bind(value.salt)
            .bind(value.nonce)
            .bind(value.ciphertext)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        append_audit(
            &mut tx,
            key,
            SecretAuditNote {
                secret_name: name,
                environment,
                action: if updated { "update" } else { "create" },
                actor,
                detail: None,
            },
        )
        .await?;
        let row = sqlx::query(
            "SELECT * FROM secrets WHERE name = $1 AND environment = $2 AND deleted_ms IS NULL",
        )
        .bind(name)
        .bind(environment)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((secret_row(&row), !updated))
    }

    /// Soft-delete the live secret `name` in `environment` and write the audit line (`delete`)
    /// sealed under `key`, in one transaction. Returns `false`, writing nothing, when there is
    /// no such live secret.
    pub async fn delete_secret(
        &self,
        key: &AuditKey,
        name: &str,
        environment: &str,
        actor: SecretActor<'_>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        audit::lock_head(&mut tx, &SECRET_AUDIT).await?;
        let n = sqlx::query("UPDATE secrets SET deleted_ms = $1 WHERE name = $2 AND environment = $3 AND deleted_ms IS NULL")
            .bind(now_ms())
            .bind(name)
            .bind(environment)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            // Dropping the transaction rolls it back.
            return Ok(false);
        }
        append_audit(
            &mut tx,
            key,
            SecretAuditNote {
                secret_name: name,
                environment,
                action: "delete",
                actor,
                detail: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Append one line to the secret audit log, sealed under `key`, in a transaction of its own.
    pub async fn append_secret_audit(
        &self,
        key: &AuditKey,
        note: SecretAuditNote<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        append_audit(&mut tx, key, note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The secret audit log, newest first, optionally for one secret name; at most `limit`
    /// lines.
    pub async fn secret_audit_log(
        &self,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SecretAuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM secret_audit_log WHERE ($1 IS NULL OR secret_name = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(name)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| SecretAuditRow {
                id: r.get("id"),
                ts_ms: r.get("ts_ms"),
                secret_name: r.get("secret_name"),
                environment: r.get("environment"),
                action: r.get("action"),
                actor: r.get("actor"),
                role: r.get("role"),
                detail: r.get("detail"),
            })
            .collect())
    }
}

/// Insert an audit line in `tx` and seal it into the chain (the log's head locked first).
async fn append_audit(
    tx: &mut Tx<'_>,
    key: &AuditKey,
    note: SecretAuditNote<'_>,
) -> Result<(), sqlx::Error> {
    audit::lock_head(tx, &SECRET_AUDIT).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO secret_audit_log (ts_ms, secret_name, environment, action, actor, role, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(now_ms())
    .bind(note.secret_name)
    .bind(note.environment)
    .bind(note.action)
    .bind(note.actor.name)
    .bind(note.actor.role)
    .bind(note.detail)
    .fetch_one(&mut **tx)
    .await?;
    audit::seal(tx, key, &SECRET_AUDIT, id).await
}

fn secret_row(row: &AnyRow) -> SecretRow {
    SecretRow {
        id: row.get("id"),
        name: row.get("name"),
        environment: row.get("environment"),
        version: row.get("version"),
        created_ms: row.get("created_ms"),
        updated_ms: row.get("updated_ms"),
        salt: row.get("salt"),
        nonce: row.get("nonce"),
        ciphertext: row.get("ciphertext"),
    }
}
