//! The schema as the database reports it, read the same way from SQLite and PostgreSQL, so a
//! test can check both backends' migrations build the same tables: column names in order, type
//! families, nullability, defaults, primary keys, unique constraints, named indexes (unique,
//! partial, columns), foreign keys and triggers.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use super::{Backend, Store};

/// Every table, and the triggers.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Schema {
    pub tables: BTreeMap<String, Table>,
    pub triggers: BTreeSet<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Table {
    columns: Vec<Column>,
    primary_key: Vec<String>,
    /// UNIQUE constraints' columns.
    unique: BTreeSet<Vec<String>>,
    /// Indexes made with CREATE INDEX, by name.
    indexes: BTreeMap<String, Index>,
    /// (columns, referenced table, referenced columns).
    foreign_keys: BTreeSet<(Vec<String>, String, Vec<String>)>,
}

#[derive(Debug, PartialEq, Eq)]
struct Column {
    name: String,
    /// integer, real, text or blob.
    family: &'static str,
    not_null: bool,
    /// As written, without PostgreSQL's `::type`.
    default: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
struct Index {
    unique: bool,
    partial: bool,
    /// `<expr>` for an expression.
    columns: Vec<String>,
}

fn family(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "smallint" => "integer",
        "real" | "double precision" => "real",
        "text" | "character varying" => "text",
        "blob" | "bytea" => "blob",
        other => panic!("a column of type `{other}`: which family is it?"),
    }
}

fn default(text: Option<String>) -> Option<String> {
    text.map(|d| match d.split_once("::") {
        Some((value, _cast)) => value.to_owned(),
        None => d,
    })
}

/// The schema of `store`'s database.
pub(super) async fn schema(store: &Store) -> Schema {
    let result = match store.backend() {
        Backend::Sqlite => sqlite(store).await,
        Backend::Postgres => postgres(store).await,
    };
    result.unwrap_or_else(|e| panic!("{:?}: reading the schema: {e}", store.backend()))
}

async fn sqlite(store: &Store) -> Result<Schema, sqlx::Error> {
    let pool = store.pool();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(pool)
    .await?;
    let mut tables = BTreeMap::new();
    for name in names {
        let mut t = Table::default();
        let columns = sqlx::query(
            "SELECT name, type, \"notnull\" AS nn, dflt_value, pk FROM pragma_table_info($1) ORDER BY cid",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut pk: Vec<(i64, String)> = Vec::new();
        for c in &columns {
            let (column, in_pk): (String, i64) = (c.get("name"), c.get("pk"));
            if in_pk > 0 {
                pk.push((in_pk, column.clone()));
            }
            t.columns.push(Column {
                name: column,
                family: family(&c.get::<String, _>("type")),
                // A primary key's columns are never NULL (SQLite's INTEGER PRIMARY KEY is the
                // rowid; PostgreSQL marks them NOT NULL).
                not_null: c.get::<i64, _>("nn") == 1 || in_pk > 0,
                default: default(c.get("dflt_value")),
            });
        }
        pk.sort();
        t.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        let indexes =
            sqlx::query("SELECT name, \"unique\" AS u, origin, partial FROM pragma_index_list($1)")
                .bind(&name)
                .fetch_all(pool)
                .await?;
        for i in &indexes {
            let index: String = i.get("name");
            let columns: Vec<Option<String>> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(pool)
                    .await?;
            let columns: Vec<String> = columns
                .into_iter()
                .map(|c| c.unwrap_or_else(|| "<expr>".to_owned()))
                .collect();
            match i.get::<String, _>("origin").as_str() {
                "pk" => {}
                "u" => {
                    t.unique.insert(columns);
                }
                _ => {
                    t.indexes.insert(
                        index,
                        Index {
                            unique: i.get::<i64, _>("u") == 1,
                            partial: i.get::<i64, _>("partial") == 1,
                            columns,
                        },
                    );
                }
            }
        }
        let fks = sqlx::query(
            "SELECT id, \"table\" AS t, \"from\" AS f, \"to\" AS r FROM pragma_foreign_key_list($1) ORDER BY id, seq",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut by_id: BTreeMap<i64, (Vec<String>, String, Vec<String>)> = BTreeMap::new();
        for f in &fks {
            let fk = by_id
                .entry(f.get("id"))
                .or_insert_with(|| (Vec::new(), f.get("t"), Vec::new()));
            fk.0.push(f.get("f"));
            fk.2.push(f.get("r"));
        }
        t.foreign_keys = by_id.into_values().collect();
        tables.insert(name, t);
    }
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            .fetch_all(pool)
            .await?;
    Ok(Schema {
        tables,
        triggers: triggers.into_iter().collect(),
    })
}

async fn postgres(store: &Store) -> Result<Schema, sqlx::Error> {
    let pool = store.pool();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await?;
    let mut tables = BTreeMap::new();
    for name in names {
        let mut t = Table::default();
        let columns = sqlx::query(
            "SELECT CAST(column_name AS TEXT) AS name, CAST(data_type AS TEXT) AS type,
               CAST(is_nullable AS TEXT) AS nullable, CAST(column_default AS TEXT) AS dflt
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        for c in &columns {
            t.columns.push(Column {
                name: c.get("name"),
                family: family(&c.get::<String, _>("type")),
                not_null: c.get::<String, _>("nullable") == "NO",
                default: default(c.get("dflt")),
            });
        }
        let constraints = sqlx::query(
            "SELECT CAST(c.conname AS TEXT) AS name, CAST(c.contype AS TEXT) AS kind,
               CAST(a.attname AS TEXT) AS col,
               CAST(CAST(NULLIF(c.confrelid, 0) AS regclass) AS TEXT) AS ref_table,
               CAST(b.attname AS TEXT) AS ref_col
             FROM pg_constraint c
             CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
             LEFT JOIN pg_attribute b
               ON b.attrelid = c.confrelid AND b.attnum = c.confkey[CAST(k.n AS INTEGER)]
             WHERE c.conrelid = CAST($1 AS regclass) AND c.contype IN ('p', 'u', 'f')
             ORDER BY c.conname, k.n",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut unique: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut fks: BTreeMap<String, (Vec<String>, String, Vec<String>)> = BTreeMap::new();
        for c in &constraints {
            let (constraint, col): (String, String) = (c.get("name"), c.get("col"));
            match c.get::<String, _>("kind").as_str() {
                "p" => t.primary_key.push(col),
                "u" => unique.entry(constraint).or_default().push(col),
                _ => {
                    let fk = fks.entry(constraint).or_insert_with(|| {
                        (Vec::new(), c.get::<String, _>("ref_table"), Vec::new())
                    });
                    fk.0.push(col);
                    fk.2.push(c.get("ref_col"));
                }
            }
        }
        t.unique = unique.into_values().collect();
        t.foreign_keys = fks.into_values().collect();
        let indexes = sqlx::query(
            "SELECT CAST(ic.relname AS TEXT) AS name,
               CAST(CASE WHEN i.indisunique THEN 1 ELSE 0 END AS BIGINT) AS u,
               CAST(CASE WHEN i.indpred IS NULL THEN 0 ELSE 1 END AS BIGINT) AS partial,
               COALESCE(CAST(a.attname AS TEXT), '<expr>') AS col
             FROM pg_index i
             JOIN pg_class ic ON ic.oid = i.indexrelid
             CROSS JOIN LATERAL unnest(CAST(i.indkey AS SMALLINT[])) WITH ORDINALITY AS k(attnum, n)
             LEFT JOIN pg_attribute a
               ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
             WHERE i.indrelid = CAST($1 AS regclass)
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                               WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
                                 AND c.contype IN ('p', 'u'))
             ORDER BY name, k.n",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        for i in &indexes {
            let index = t.indexes.entry(i.get("name")).or_insert_with(|| Index {
                unique: i.get::<i64, _>("u") == 1,
                partial: i.get::<i64, _>("partial") == 1,
                columns: Vec::new(),
            });
            index.columns.push(i.get("col"));
        }
        tables.insert(name, t);
    }
    let triggers: Vec<String> =
        sqlx::query_scalar("SELECT CAST(tgname AS TEXT) FROM pg_trigger WHERE NOT tgisinternal")
            .fetch_all(pool)
            .await?;
    Ok(Schema {
        tables,
        triggers: triggers.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{BACKENDS, TestDb, rt};
    use super::*;

    /// The triggers PostgreSQL has beyond SQLite's: TRUNCATE (which SQLite does not have) is
    /// refused on the append-only tables too.
    const POSTGRES_ONLY_TRIGGERS: [&str; 4] = [
        "audit_chain_heads_no_truncate",
        "bundle_revisions_no_truncate",
        "pii_audit_no_truncate",
        "secret_audit_log_no_truncate",
    ];

    #[test]
    fn both_backends_migrate_to_the_same_schema() {
        rt().block_on(async {
            let sqlite = schema(&TestDb::new(Backend::Sqlite).await.store().await).await;
            let postgres = schema(&TestDb::new(Backend::Postgres).await.store().await).await;
            assert!(sqlite.tables.len() >= 14, "{:?}", sqlite.tables.keys());
            assert_eq!(
                sqlite.tables.keys().collect::<Vec<_>>(),
                postgres.tables.keys().collect::<Vec<_>>()
            );
            for (name, table) in &sqlite.tables {
                assert_eq!(
                    Some(table),
                    postgres.tables.get(name),
                    "table {name}: SQLite (left) and PostgreSQL (right) differ"
                );
            }
            let extra: BTreeSet<String> = POSTGRES_ONLY_TRIGGERS
                .iter()
                .map(|t| (*t).to_owned())
                .collect();
            assert_eq!(
                postgres.triggers.difference(&extra).collect::<Vec<_>>(),
                sqlite.triggers.iter().collect::<Vec<_>>()
            );
            assert!(
                extra.is_subset(&postgres.triggers),
                "{:?}",
                postgres.triggers
            );
        });
    }

    #[test]
    fn both_backends_refuse_the_same_rows() {
        let refused = [
            // CHECKs
            "INSERT INTO calls (id, agent_id, kind, outcome, latency_ms, verdicts, ts_ms) VALUES ('c', 'a', 'neither', 'ok', 1, '[]', 1)",
            "INSERT INTO limits (agent_id, limit_usd, created_ms, updated_ms) VALUES ('a', -1, 1, 1)",
            "INSERT INTO limits (agent_id, limit_usd, warn_at, created_ms, updated_ms) VALUES ('a', 1, 0, 1, 1)",
            "INSERT INTO limits (agent_id, limit_usd, warn_at, created_ms, updated_ms) VALUES ('a', 1, 1.5, 1, 1)",
            "INSERT INTO users (username, password_hash, role, created_ms) VALUES ('u', 'h', 'root', 1)",
            "INSERT INTO api_tokens (name, token_sha256, role, created_by, created_ms) VALUES ('t', 'd', 'root', 'a', 1)",
            // NOT NULL
            "INSERT INTO agents (id, name, script, bundle, environment, state, created_ms) VALUES ('a', 'n', 's', 'b', 'dev', 'x', 1)",
            "INSERT INTO calls (id, agent_id, kind, outcome, verdicts, ts_ms) VALUES ('c', 'a', 'llm', 'ok', '[]', 1)",
            // Foreign keys
            "INSERT INTO agent_runs (agent_id, run, state, started_ms) VALUES ('nobody', 1, 'running', 1)",
            "INSERT INTO sessions (id, user_id, created_ms, expires_ms) VALUES ('s', 999, 1, 2)",
            // Unique: one global limit, one per agent, one user per name.
            "INSERT INTO limits (agent_id, limit_usd, created_ms, updated_ms) VALUES (NULL, 5, 1, 1)",
            "INSERT INTO limits (agent_id, limit_usd, created_ms, updated_ms) VALUES ('lg-1', 5, 1, 1)",
            "INSERT INTO users (username, password_hash, role, created_ms) VALUES ('admin', 'h', 'admin', 1)",
        ];
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                sqlx::raw_sql(
                    "INSERT INTO limits (agent_id, limit_usd, created_ms, updated_ms) VALUES (NULL, 5, 1, 1);
                     INSERT INTO limits (agent_id, limit_usd, created_ms, updated_ms) VALUES ('lg-1', 5, 1, 1);
                     INSERT INTO users (username, password_hash, role, created_ms) VALUES ('admin', 'h', 'admin', 1);",
                )
                .execute(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
                for sql in refused {
                    assert!(
                        sqlx::raw_sql(sql).execute(store.pool()).await.is_err(),
                        "{backend:?}: `{sql}` was let through"
                    );
                }
                // One live secret per name and environment; a deleted one leaves room.
                let secret = |env: &'static str| {
                    sqlx::query("INSERT INTO secrets (name, environment, salt, nonce, ciphertext, created_ms, updated_ms) VALUES ('S', $1, $2, $2, $2, 1, 1)")
                        .bind(env)
                        .bind(&b"\x00\xff"[..])
                        .execute(store.pool())
                };
                secret("dev").await.expect("the first");
                assert!(secret("dev").await.is_err(), "{backend:?}: two live secrets");
                assert!(secret("prod").await.is_err(), "{backend:?}: environment `prod`");
                sqlx::query("UPDATE secrets SET deleted_ms = 2")
                    .execute(store.pool())
                    .await
                    .expect("delete");
                secret("dev").await.expect("again after the delete");
            });
        }
    }
}
