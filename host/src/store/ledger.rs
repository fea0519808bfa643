//! Shared counters with leases: how an agent's counters (the budget policy's spend, its
//! reservations) stay right when several processes, on one machine or many, run the same agent
//! on one store.
//!
//! The stored value of a counter (`policy_state`) is its **settled** value. Each process keeps
//! what it added since (`local`) and settles it in its write-behind rounds
//! (`value = value + local`, so processes never overwrite each other). An `add` with a ceiling
//! (the budget's reservation) must not take the fleet past the ceiling, so a process adds only
//! within **headroom** it leased (`budget_leases`): a lease is granted in a transaction so that
//!
//! ```text
//! settled value + the grants of every live lease <= ceiling
//! ```
//!
//! A process's grant covers what it added since its last settle plus its headroom. When the
//! headroom runs out it leases more (a slice of the ceiling, [`SLICE_DIVISOR`]); when nothing
//! is left the add is refused (`ceiling-exceeded`). Leases are renewed by the write-behind
//! rounds and expire after [`LEASE_TTL`] without renewal (a process killed outright): their
//! grant returns to the others. What such a process added and had not settled is lost to the
//! count, at most its lease: hence "never overspent by more than one lease per host".
//!
//! Adds without a ceiling that raise a counter past what a lease covered (a call that cost more
//! than its reservation) are settled as they are: the ceiling bounds reservations, the settled
//! value tells the truth.

use std::time::Duration;

use sqlx::Row;

use super::{Backend, Store, now_ms};

/// A lease not renewed for this long has expired (the default; renewed when half is left).
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// A process leases `ceiling / SLICE_DIVISOR` at a time (at least what the add needs).
pub const SLICE_DIVISOR: i64 = 20;

/// One counter of one agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterKey {
    pub policy: String,
    pub agent: String,
    pub key: String,
}

/// A settle of one counter: add `local` to the stored value; if the process holds a lease on
/// it, its grant becomes `headroom` (renewed).
#[derive(Debug, Clone)]
pub struct Settle {
    pub key: CounterKey,
    pub local: i64,
    /// `Some` when the process holds a lease on the counter.
    pub headroom: Option<i64>,
}

/// Make `tx` the only transaction deciding on `key` until it ends. On SQLite a writing
/// transaction holds the database's write lock already; on PostgreSQL an advisory lock on the
/// counter (its row may not exist yet, so there may be none to lock) keeps another process's
/// lease or settle of it waiting, so the sum of what is settled and granted stays within the
/// ceiling.
async fn lock_counter<'c>(
    tx: &mut sqlx::Transaction<'c, sqlx::Any>,
    key: &CounterKey,
) -> Result<(), sqlx::Error> {
    if Backend::of(tx) == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!(
                "ironhost counter\u{1f}{}\u{1f}{}\u{1f}{}",
                key.policy, key.agent, key.key
            ))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Settle counters in `tx`; returns each counter's stored value after.
pub async fn settle<'c>(
    tx: &mut sqlx::Transaction<'c, sqlx::Any>,
    holder: &str,
    ttl: Duration,
    settles: &[Settle],
) -> Result<Vec<i64>, sqlx::Error> {
    let now = now_ms();
    // The counters locked first, in one order, so two settling processes never wait on each
    // other in a circle.
    let mut keys: Vec<&CounterKey> = settles.iter().map(|s| &s.key).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        lock_counter(tx, key).await?;
    }
    let mut values = Vec::with_capacity(settles.len());
    for s in settles {
        let row = sqlx::query(
            "INSERT INTO policy_state (policy, agent, key, value) VALUES ($1, $2, $3, $4)
             ON CONFLICT (policy, agent, key)
             DO UPDATE SET value = CAST(CAST(policy_state.value AS BIGINT) + $5 AS TEXT)
             RETURNING value",
        )
        .bind(&s.key.policy)
        .bind(&s.key.agent)
        .bind(&s.key.key)
        .bind(s.local.to_string())
        .bind(s.local)
        .fetch_one(&mut **tx)
        .await?;
        let value: String = row.get(0);
        values.push(value.parse().unwrap_or(0));
        if let Some(headroom) = s.headroom {
            put_lease(
                tx,
                &s.key,
                holder,
                headroom.max(0),
                now + ttl.as_millis() as i64,
            )
            .await?;
        }
    }
    Ok(values)
}

async fn put_lease<'c>(
    tx: &mut sqlx::Transaction<'c, sqlx::Any>,
    key: &CounterKey,
    holder: &str,
    granted: i64,
    expires_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO budget_leases (policy, agent, key, holder, granted, expires_ms)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (policy, agent, key, holder)
         DO UPDATE SET granted = excluded.granted, expires_ms = excluded.expires_ms",
    )
    .bind(&key.policy)
    .bind(&key.agent)
    .bind(&key.key)
    .bind(holder)
    .bind(granted)
    .bind(expires_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a lease request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The stored (settled) value now.
    pub settled: i64,
    /// The headroom this process holds now (at least what it held before).
    pub headroom: i64,
    /// The grants of the other live leases.
    pub others: i64,
}

/// A request for headroom on a counter.
#[derive(Debug, Clone, Copy)]
pub struct LeaseRequest<'a> {
    pub key: &'a CounterKey,
    /// This process's name on its leases.
    pub holder: &'a str,
    pub ttl: Duration,
    /// What the process added and has not settled.
    pub local: i64,
    /// The headroom it holds now.
    pub headroom: i64,
    /// What the add that asks needs.
    pub need: i64,
    pub ceiling: i64,
}

/// Lease headroom: at most a slice (or what the add needs if more) and at most what the
/// ceiling leaves beside the settled value, the others' grants and what this process has not
/// settled. Expired leases of the counter are removed.
pub async fn lease(store: &Store, r: &LeaseRequest<'_>) -> Result<Grant, sqlx::Error> {
    let LeaseRequest {
        key,
        holder,
        ttl,
        local,
        headroom,
        need,
        ceiling,
    } = *r;
    let now = now_ms();
    // The write lock (SQLite) or the counter's lock (PostgreSQL) first, so two processes
    // cannot both read the same room.
    let mut tx = store.begin_write().await?;
    lock_counter(&mut tx, key).await?;
    sqlx::query(
        "DELETE FROM budget_leases WHERE policy = $1 AND agent = $2 AND key = $3 AND expires_ms <= $4",
    )
    .bind(&key.policy)
    .bind(&key.agent)
    .bind(&key.key)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let settled: i64 =
        sqlx::query("SELECT value FROM policy_state WHERE policy = $1 AND agent = $2 AND key = $3")
            .bind(&key.policy)
            .bind(&key.agent)
            .bind(&key.key)
            .fetch_optional(&mut *tx)
            .await?
            .and_then(|r| r.get::<String, _>(0).parse().ok())
            .unwrap_or(0);
    let others: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(granted), 0) AS BIGINT) FROM budget_leases
         WHERE policy = $1 AND agent = $2 AND key = $3 AND holder <> $4",
    )
    .bind(&key.policy)
    .bind(&key.agent)
    .bind(&key.key)
    .bind(holder)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    let slice = (ceiling / SLICE_DIVISOR).max(1);
    let room = ceiling
        .saturating_sub(settled)
        .saturating_sub(others)
        .saturating_sub(local);
    // Never less than the headroom held, unless the others and the settled value left less
    // room than that (an add without a ceiling went past a reservation).
    let new_headroom = slice.max(need).max(headroom).min(room).max(0);
    let expires = now + ttl.as_millis() as i64;
    put_lease(&mut tx, key, holder, local.max(0) + new_headroom, expires).await?;
    tx.commit().await?;
    Ok(Grant {
        settled,
        headroom: new_headroom,
        others,
    })
}

/// Give back `holder`'s leases (its process ends; what it added is settled first).
pub async fn release(store: &Store, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM budget_leases WHERE holder = $1")
        .bind(holder)
        .execute(store.pool())
        .await?;
    Ok(())
}
