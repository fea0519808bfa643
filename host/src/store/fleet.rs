//! What the processes of a fleet share through the store: components by content, bundle
//! revisions, change counters, the agents' processes (instances) with their heartbeat and
//! stop requests. The policy logic on top is in `core::revisions` and `core::watch`.
//!
//! SQL here is written once for both backends: `$N` placeholders, `ON CONFLICT`, no
//! backend-only functions.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, now_ms};

/// One revision of a named bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Revision {
    pub bundle: String,
    pub revision: i64,
    /// The manifest JSON (`policy::manifest`).
    #[serde(skip)]
    pub manifest: String,
    /// `file`, `api` or `rollback`.
    pub source: String,
    /// `loaded`, `added`, `replaced`, `enabled`, `disabled`, `reordered`, `configured`,
    /// `rolled-back`.
    pub action: String,
    /// The policy it concerns ('' for the whole bundle).
    pub policy: String,
    /// What changed, in words.
    pub detail: String,
    pub actor: String,
    pub created_ms: i64,
}

/// A revision to append.
#[derive(Debug, Clone, Copy)]
pub struct NewRevision<'a> {
    pub bundle: &'a str,
    pub manifest: &'a str,
    pub source: &'a str,
    pub action: &'a str,
    pub policy: &'a str,
    pub detail: &'a str,
    pub actor: &'a str,
}

/// The change-counter topic of a bundle's revisions.
pub fn bundle_topic(bundle: &str) -> String {
    format!("bundle:{bundle}")
}
/// Topic bumped when a secret changes.
pub const TOPIC_SECRETS: &str = "secrets";
/// Topic bumped when a budget limit changes.
pub const TOPIC_LIMITS: &str = "limits";
/// The PostgreSQL notification channel of the change counters (the payload is the topic).
pub const CHANNEL: &str = "ironhost_changes";
/// Topic bumped when a stop is requested.
pub const TOPIC_STOP: &str = "stop";

/// A process running an agent, as the fleet view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub agent_id: String,
    pub host: String,
    pub pid: i64,
    pub runner: String,
    pub bundle: String,
    pub revision: Option<i64>,
    pub started_ms: i64,
    pub last_seen_ms: i64,
    pub ended_ms: Option<i64>,
    pub stop_requested_ms: Option<i64>,
}

/// A process starting to run an agent.
#[derive(Debug, Clone, Copy)]
pub struct NewInstance<'a> {
    pub id: &'a str,
    pub agent_id: &'a str,
    pub host: &'a str,
    pub pid: u32,
    pub runner: &'a str,
    pub bundle: &'a str,
    pub revision: Option<i64>,
}

/// A stop requested for an instance: when and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    pub requested_ms: i64,
    pub actor: String,
}

/// Why a revision was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The bundle moved on since the change was based on it.
    #[error(
        "bundle `{bundle}` changed meanwhile: it is at revision {latest}, the change was made on {base}"
    )]
    Conflict {
        bundle: String,
        base: i64,
        latest: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

const REVISION_COLUMNS: &str = "SELECT bundle, revision, manifest, source, action, policy, detail, actor, created_ms FROM bundle_revisions";

fn revision_row(r: &AnyRow) -> Revision {
    Revision {
        bundle: r.get("bundle"),
        revision: r.get("revision"),
        manifest: r.get("manifest"),
        source: r.get("source"),
        action: r.get("action"),
        policy: r.get("policy"),
        detail: r.get("detail"),
        actor: r.get("actor"),
        created_ms: r.get("created_ms"),
    }
}

const INSTANCE_COLUMNS: &str = "SELECT id, agent_id, host, pid, runner, bundle, revision, started_ms, last_seen_ms, ended_ms, stop_requested_ms FROM agent_instances";

fn instance_row(r: &AnyRow) -> Instance {
    Instance {
        id: r.get("id"),
        agent_id: r.get("agent_id"),
        host: r.get("host"),
        pid: r.get("pid"),
        runner: r.get("runner"),
        bundle: r.get("bundle"),
        revision: r.get("revision"),
        started_ms: r.get("started_ms"),
        last_seen_ms: r.get("last_seen_ms"),
        ended_ms: r.get("ended_ms"),
        stop_requested_ms: r.get("stop_requested_ms"),
    }
}

/// The statement that bumps a topic's counter.
const BUMP: &str = "INSERT INTO changes (topic, seq, updated_ms) VALUES ($1, 1, $2)
     ON CONFLICT (topic) DO UPDATE SET seq = changes.seq + 1, updated_ms = excluded.updated_ms";

impl Store {
    /// Keep a component's bytes under their SHA-256 (lower-case hex). Storing the same bytes
    /// again changes nothing.
    pub async fn put_component(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO components (sha256, size, bytes, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(bytes.len() as i64)
        .bind(bytes)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The bytes stored under `sha256`.
    pub async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query("SELECT bytes FROM components WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.get::<Vec<u8>, _>(0)),
        )
    }

    /// The latest revision of `bundle` (the one that runs).
    pub async fn latest_revision(&self, bundle: &str) -> Result<Option<Revision>, StoreError> {
        let sql = format!("{REVISION_COLUMNS} WHERE bundle = $1 ORDER BY revision DESC LIMIT 1");
        Ok(sqlx::query(&sql)
            .bind(bundle)
            .fetch_optional(self.pool())
            .await?
            .map(|r| revision_row(&r)))
    }

    /// The latest revision of `bundle` recorded from a bundle file.
    pub async fn latest_file_revision(&self, bundle: &str) -> Result<Option<Revision>, StoreError> {
        let sql = format!(
            "{REVISION_COLUMNS} WHERE bundle = $1 AND source = 'file' ORDER BY revision DESC LIMIT 1"
        );
        Ok(sqlx::query(&sql)
            .bind(bundle)
            .fetch_optional(self.pool())
            .await?
            .map(|r| revision_row(&r)))
    }

    /// Revision `revision` of `bundle`.
    pub async fn revision(
        &self,
        bundle: &str,
        revision: i64,
    ) -> Result<Option<Revision>, StoreError> {
        let sql = format!("{REVISION_COLUMNS} WHERE bundle = $1 AND revision = $2");
        Ok(sqlx::query(&sql)
            .bind(bundle)
            .bind(revision)
            .fetch_optional(self.pool())
            .await?
            .map(|r| revision_row(&r)))
    }

    /// The revisions of `bundle`, newest first, at most `limit`.
    pub async fn revisions(&self, bundle: &str, limit: i64) -> Result<Vec<Revision>, StoreError> {
        let sql = format!("{REVISION_COLUMNS} WHERE bundle = $1 ORDER BY revision DESC LIMIT $2");
        Ok(sqlx::query(&sql)
            .bind(bundle)
            .bind(limit)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(revision_row)
            .collect())
    }

    /// Append a revision to its bundle, made on revision `base` (0: the bundle has none yet),
    /// and announce it (topic `bundle:NAME`) in the same transaction. Refused with
    /// [`AppendError::Conflict`] if another revision landed since `base`.
    pub async fn append_revision(
        &self,
        new: &NewRevision<'_>,
        base: i64,
    ) -> Result<Revision, AppendError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        // One statement: it numbers the revision and checks the base together (the primary
        // key refuses a second writer that computed the same number).
        let inserted = sqlx::query(
            "INSERT INTO bundle_revisions (bundle, revision, manifest, source, action, policy, detail, actor, created_ms)
             SELECT $1, COALESCE(MAX(revision), 0) + 1, $2, $3, $4, $5, $6, $7, $8
             FROM bundle_revisions WHERE bundle = $1
             HAVING COALESCE(MAX(revision), 0) = $9
             RETURNING revision",
        )
        .bind(new.bundle)
        .bind(new.manifest)
        .bind(new.source)
        .bind(new.action)
        .bind(new.policy)
        .bind(new.detail)
        .bind(new.actor)
        .bind(now)
        .bind(base)
        .fetch_optional(&mut *tx)
        .await;
        let revision = match inserted {
            Ok(Some(r)) => r.get::<i64, _>(0),
            Ok(None) | Err(sqlx::Error::Database(_)) => {
                drop(tx);
                let latest = self
                    .latest_revision(new.bundle)
                    .await?
                    .map_or(0, |r| r.revision);
                return Err(AppendError::Conflict {
                    bundle: new.bundle.to_owned(),
                    base,
                    latest,
                });
            }
            Err(e) => return Err(StoreError::from(e).into()),
        };
        self.bump_in(&mut tx, &bundle_topic(new.bundle), now)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(Revision {
            bundle: new.bundle.to_owned(),
            revision,
            manifest: new.manifest.to_owned(),
            source: new.source.to_owned(),
            action: new.action.to_owned(),
            policy: new.policy.to_owned(),
            detail: new.detail.to_owned(),
            actor: new.actor.to_owned(),
            created_ms: now,
        })
    }

    /// Announce a change on `topic` to every process watching the store.
    pub async fn bump(&self, topic: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        self.bump_in(&mut tx, topic, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Bump `topic`'s counter in `tx`; on PostgreSQL also notify [`CHANNEL`] (delivered when
    /// the transaction commits, so a listener never reads ahead of the change).
    async fn bump_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        topic: &str,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(BUMP)
            .bind(topic)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT CAST(pg_notify($1, $2) AS TEXT)")
                .bind(CHANNEL)
                .bind(topic)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// On PostgreSQL, a feed that wakes on every change another process announces (`LISTEN`
    /// on [`CHANNEL`], reconnected if the connection drops); `None` on SQLite, where the
    /// counters are polled.
    pub fn change_feed(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        let url = self.listen.clone()?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let mut complained = false;
            loop {
                let listened = async {
                    let mut l = sqlx::postgres::PgListener::connect(&url.0).await?;
                    l.listen(CHANNEL).await?;
                    Ok::<_, sqlx::Error>(l)
                };
                match listened.await {
                    Ok(mut l) => {
                        complained = false;
                        // Anything missed while (re)connecting: look at the counters once.
                        if tx.try_send(()).is_err() && tx.is_closed() {
                            return;
                        }
                        loop {
                            match l.recv().await {
                                Ok(_) => {
                                    if tx.is_closed() {
                                        return;
                                    }
                                    let _ = tx.try_send(());
                                }
                                Err(e) => {
                                    tracing::warn!(
                                        "the store's change notifications stopped: {e}; reconnecting"
                                    );
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if !complained {
                            tracing::warn!(
                                "cannot listen for the store's change notifications: {e}; polling meanwhile"
                            );
                            complained = true;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        Some(rx)
    }

    /// Every topic's counter.
    pub async fn change_counters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query("SELECT topic, seq FROM changes")
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect())
    }

    /// Record a process starting to run an agent (and which machine runs the agent now).
    pub async fn register_instance(&self, i: &NewInstance<'_>) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO agent_instances (id, agent_id, host, pid, runner, bundle, revision, started_ms, last_seen_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(i.id)
        .bind(i.agent_id)
        .bind(i.host)
        .bind(i64::from(i.pid))
        .bind(i.runner)
        .bind(i.bundle)
        .bind(i.revision)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE agents SET host = $1 WHERE id = $2")
            .bind(i.host)
            .bind(i.agent_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The heartbeat of instance `id`, running `revision`: answers the stop requested for it,
    /// if any.
    pub async fn instance_seen(
        &self,
        id: &str,
        revision: Option<i64>,
    ) -> Result<Option<StopRequest>, StoreError> {
        let row = sqlx::query(
            "UPDATE agent_instances SET last_seen_ms = $1, revision = COALESCE($2, revision)
             WHERE id = $3 RETURNING stop_requested_ms, stop_actor",
        )
        .bind(now_ms())
        .bind(revision)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|r| {
            let at: Option<i64> = r.get(0);
            let actor: Option<String> = r.get(1);
            at.map(|requested_ms| StopRequest {
                requested_ms,
                actor: actor.unwrap_or_default(),
            })
        }))
    }

    /// Instance `id` ended.
    pub async fn end_instance(&self, id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query("UPDATE agent_instances SET ended_ms = $1, last_seen_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The processes that run `agent_id` (every agent's if `None`) and have not ended, or
    /// ended within `recent_ms` of now; newest first.
    pub async fn instances(
        &self,
        agent_id: Option<&str>,
        recent_ms: i64,
    ) -> Result<Vec<Instance>, StoreError> {
        let sql = format!(
            "{INSTANCE_COLUMNS} WHERE ($1 IS NULL OR agent_id = $1)
             AND (ended_ms IS NULL OR ended_ms >= $2) ORDER BY started_ms DESC, id"
        );
        Ok(sqlx::query(&sql)
            .bind(agent_id)
            .bind(now_ms() - recent_ms)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(instance_row)
            .collect())
    }

    /// Ask every running process of `agent_id` to stop (each sees it at its next heartbeat).
    /// Returns how many were asked.
    pub async fn request_stop(&self, agent_id: &str, actor: &str) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let asked = sqlx::query(
            "UPDATE agent_instances SET stop_requested_ms = $1, stop_actor = $2
             WHERE agent_id = $3 AND ended_ms IS NULL AND stop_requested_ms IS NULL",
        )
        .bind(now)
        .bind(actor)
        .bind(agent_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.bump_in(&mut tx, TOPIC_STOP, now).await?;
        tx.commit().await?;
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{BACKENDS, TestDb, rt};
    use super::*;

    fn new_revision<'a>(bundle: &'a str, manifest: &'a str) -> NewRevision<'a> {
        NewRevision {
            bundle,
            manifest,
            source: "api",
            action: "added",
            policy: "budget",
            detail: "added budget",
            actor: "admin",
        }
    }

    #[test]
    fn revisions_counters_instances_and_components() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                // Components by content; storing them again changes nothing.
                store.put_component("ab12", b"\x00wasm").await.expect("put");
                store
                    .put_component("ab12", b"other")
                    .await
                    .expect("put again");
                assert_eq!(
                    store.component("ab12").await.expect("get"),
                    Some(b"\x00wasm".to_vec())
                );
                assert_eq!(store.component("none").await.expect("get"), None);

                // Revisions number themselves from the base they were made on.
                let r1 = store
                    .append_revision(&new_revision("default", "[1]"), 0)
                    .await
                    .expect("r1");
                let r2 = store
                    .append_revision(&new_revision("default", "[2]"), 1)
                    .await
                    .expect("r2");
                assert_eq!((r1.revision, r2.revision), (1, 2), "{backend:?}");
                let stale = store
                    .append_revision(&new_revision("default", "[x]"), 1)
                    .await;
                assert!(
                    matches!(
                        stale,
                        Err(AppendError::Conflict {
                            base: 1,
                            latest: 2,
                            ..
                        })
                    ),
                    "{backend:?}: {stale:?}"
                );
                assert_eq!(
                    store
                        .latest_revision("default")
                        .await
                        .expect("latest")
                        .map(|r| r.manifest),
                    Some("[2]".into())
                );
                assert_eq!(
                    store
                        .revision("default", 1)
                        .await
                        .expect("r1")
                        .map(|r| r.manifest),
                    Some("[1]".into())
                );
                assert_eq!(store.revisions("default", 10).await.expect("all").len(), 2);
                assert!(
                    store
                        .latest_file_revision("default")
                        .await
                        .expect("file")
                        .is_none()
                );
                // Revisions are append-only.
                for sql in [
                    "UPDATE bundle_revisions SET actor = 'x'",
                    "DELETE FROM bundle_revisions",
                ] {
                    let err = sqlx::raw_sql(sql)
                        .execute(store.pool())
                        .await
                        .expect_err(sql)
                        .to_string();
                    assert!(err.contains("append-only"), "{backend:?}: {sql}: {err}");
                }

                // Two writers on the same base at once: one lands, the other is told.
                let (ra, rb) = (
                    new_revision("default", "[a]"),
                    new_revision("default", "[b]"),
                );
                let (a, b) =
                    tokio::join!(store.append_revision(&ra, 2), store.append_revision(&rb, 2));
                assert!(a.is_ok() != b.is_ok(), "{backend:?}: {a:?} {b:?}");

                // Change counters.
                store.bump(TOPIC_LIMITS).await.expect("bump");
                store.bump(TOPIC_LIMITS).await.expect("bump");
                let counters: std::collections::BTreeMap<String, i64> = store
                    .change_counters()
                    .await
                    .expect("counters")
                    .into_iter()
                    .collect();
                assert_eq!(counters.get(TOPIC_LIMITS), Some(&2), "{backend:?}");
                assert_eq!(
                    counters.get(&bundle_topic("default")),
                    Some(&3),
                    "{backend:?}"
                );

                // Instances: heartbeats, stop requests, the end.
                for (id, host) in [("i-1", "m1"), ("i-2", "m2")] {
                    store
                        .register_instance(&NewInstance {
                            id,
                            agent_id: "lg-1",
                            host,
                            pid: 42,
                            runner: "ironhost",
                            bundle: "default",
                            revision: Some(2),
                        })
                        .await
                        .expect("register");
                }
                assert_eq!(
                    store.instance_seen("i-1", Some(3)).await.expect("seen"),
                    None
                );
                assert_eq!(store.request_stop("lg-1", "admin").await.expect("stop"), 2);
                assert_eq!(store.request_stop("lg-1", "admin").await.expect("stop"), 0);
                let stop = store
                    .instance_seen("i-1", None)
                    .await
                    .expect("seen")
                    .expect("asked");
                assert_eq!(stop.actor, "admin");
                store.end_instance("i-2").await.expect("end");
                let live = store.instances(Some("lg-1"), 0).await.expect("instances");
                assert!(
                    live.iter().any(|i| i.id == "i-1" && i.revision == Some(3)),
                    "{backend:?}: {live:?}"
                );
                assert_eq!(
                    store
                        .instances(None, 60_000)
                        .await
                        .expect("instances")
                        .len(),
                    2
                );
            });
        }
    }
}
