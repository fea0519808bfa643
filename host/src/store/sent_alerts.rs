//! Alerts sent (`sent_alerts`): the claims that make a fleet deliver each alert once. Every
//! process running an alert sender sees the same events; the one whose INSERT creates the row
//! delivers, the others skip. SQL written once for both backends.

use super::{Store, StoreError, now_ms};

/// Which alert: where it goes, whose, what, and which crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertKey<'a> {
    /// `email:…` or `webhook:…`.
    pub channel: &'a str,
    pub agent_id: &'a str,
    pub event_type: &'a str,
    pub threshold_key: &'a str,
}

/// How long a claim may stay undelivered before another sender may take it over (its sender
/// died mid-delivery). Longer than any delivery's attempts, timeouts and backoff.
pub const CLAIM_TIMEOUT_MS: i64 = 10 * 60 * 1000;

const WHERE_KEY: &str = "channel = $1 AND agent_id = $2 AND event_type = $3 AND threshold_key = $4";

impl Store {
    /// Claim `key` for delivery. `true`: this caller delivers it (the row is new, or an
    /// earlier claim was older than `CLAIM_TIMEOUT_MS` and never delivered); `false`: it is
    /// sent or being sent by someone else.
    pub async fn claim_alert(&self, key: &AlertKey<'_>) -> Result<bool, StoreError> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO sent_alerts (channel, agent_id, event_type, threshold_key, state, claimed_ms)
             VALUES ($1, $2, $3, $4, 'claimed', $5) ON CONFLICT DO NOTHING",
        )
        .bind(key.channel)
        .bind(key.agent_id)
        .bind(key.event_type)
        .bind(key.threshold_key)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(true);
        }
        let taken = sqlx::query(&format!(
            "UPDATE sent_alerts SET claimed_ms = $5
             WHERE {WHERE_KEY} AND state = 'claimed' AND claimed_ms < $6"
        ))
        .bind(key.channel)
        .bind(key.agent_id)
        .bind(key.event_type)
        .bind(key.threshold_key)
        .bind(now)
        .bind(now - CLAIM_TIMEOUT_MS)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    /// The claimed alert `key` was delivered.
    pub async fn alert_sent(&self, key: &AlertKey<'_>) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "UPDATE sent_alerts SET state = 'sent', sent_ms = $5 WHERE {WHERE_KEY}"
        ))
        .bind(key.channel)
        .bind(key.agent_id)
        .bind(key.event_type)
        .bind(key.threshold_key)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The claimed alert `key` could not be delivered: give the claim up, so a sender that sees
    /// the same alert again may try.
    pub async fn release_alert(&self, key: &AlertKey<'_>) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "DELETE FROM sent_alerts WHERE {WHERE_KEY} AND state = 'claimed'"
        ))
        .bind(key.channel)
        .bind(key.agent_id)
        .bind(key.event_type)
        .bind(key.threshold_key)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Whether `key` was delivered (for tests and the operator).
    pub async fn alert_state(&self, key: &AlertKey<'_>) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar(&format!("SELECT state FROM sent_alerts WHERE {WHERE_KEY}"))
                .bind(key.channel)
                .bind(key.agent_id)
                .bind(key.event_type)
                .bind(key.threshold_key)
                .fetch_optional(self.pool())
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{BACKENDS, TestDb, rt};
    use super::*;

    #[test]
    fn an_alert_is_claimed_once_and_a_failed_one_can_be_claimed_again() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                let key = AlertKey {
                    channel: "email:ops@company.com",
                    agent_id: "lg-1",
                    event_type: "budget_warning",
                    threshold_key: "limit=50:warn=0.9",
                };
                assert!(store.claim_alert(&key).await.expect("claim"), "{backend:?}");
                assert!(
                    !store.claim_alert(&key).await.expect("claim"),
                    "{backend:?}: twice"
                );
                // A raised limit is another threshold; another channel is another alert.
                let raised = AlertKey {
                    threshold_key: "limit=75:warn=0.9",
                    ..key
                };
                assert!(
                    store.claim_alert(&raised).await.expect("claim"),
                    "{backend:?}"
                );
                let hook = AlertKey {
                    channel: "webhook:abc",
                    ..key
                };
                assert!(
                    store.claim_alert(&hook).await.expect("claim"),
                    "{backend:?}"
                );
                // Delivered: never again.
                store.alert_sent(&key).await.expect("sent");
                assert_eq!(
                    store.alert_state(&key).await.expect("state").as_deref(),
                    Some("sent")
                );
                store.release_alert(&key).await.expect("release");
                assert!(
                    !store.claim_alert(&key).await.expect("claim"),
                    "{backend:?}"
                );
                // Failed: released, and the next sender that sees it may deliver it.
                store.release_alert(&raised).await.expect("release");
                assert_eq!(store.alert_state(&raised).await.expect("state"), None);
                assert!(
                    store.claim_alert(&raised).await.expect("claim"),
                    "{backend:?}"
                );
            });
        }
    }

    #[test]
    fn a_stale_claim_is_taken_over() {
        for backend in BACKENDS {
            rt().block_on(async {
                let db = TestDb::new(backend).await;
                let store = db.store().await;
                let key = AlertKey {
                    channel: "email:ops@company.com",
                    agent_id: "lg-2",
                    event_type: "budget_exceeded",
                    threshold_key: "limit=50",
                };
                assert!(store.claim_alert(&key).await.expect("claim"));
                // Its sender died long ago.
                sqlx::query("UPDATE sent_alerts SET claimed_ms = $1 WHERE agent_id = 'lg-2'")
                    .bind(now_ms() - CLAIM_TIMEOUT_MS - 1000)
                    .execute(store.pool())
                    .await
                    .expect("age the claim");
                assert!(store.claim_alert(&key).await.expect("claim"), "{backend:?}");
                assert!(
                    !store.claim_alert(&key).await.expect("claim"),
                    "{backend:?}"
                );
            });
        }
    }
}
