//! Login throttling: a guess costs the guesser time. Failed logins are counted per user name and
//! per client address over a window; past a number of failures the name (or address) is locked
//! for a while that doubles with each further failure, and every login for it is answered `429`
//! with `Retry-After` until then, the right password included, without checking the password.
//! A successful login clears the name's count (not the address's: one right password must not
//! reopen an address that is guessing at other names).
//!
//! Counts live in the process that serves the API; each process that serves it keeps its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Failures kept in a count for this long after the last one.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures of one user name before it is locked.
pub const USER_FAILURES: u32 = 5;
/// Failures from one address (over all names) before it is locked.
pub const ADDRESS_FAILURES: u32 = 20;
/// The first lock; each further failure doubles it.
const FIRST_LOCK: Duration = Duration::from_secs(30);
/// The longest lock.
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Names and addresses tracked at most (the oldest are forgotten first).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// What is being throttled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Address(IpAddr),
}

/// The failure counts of one API process.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    counts: Mutex<HashMap<Key, Count>>,
}

/// A login refused before its password was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// `user name` or `address`.
    pub what: &'static str,
    pub retry_after: Duration,
}

impl LoginThrottle {
    /// Whether a login for `user` from `address` may be checked now.
    pub fn check(&self, user: &str, address: Option<IpAddr>) -> Result<(), Locked> {
        let now = Instant::now();
        let counts = self.counts.lock();
        let locked = |key: &Key| {
            counts
                .get(key)
                .and_then(|c| c.locked_until)
                .filter(|until| *until > now)
                .map(|until| until - now)
        };
        if let Some(wait) = locked(&Key::User(user.to_owned())) {
            return Err(Locked {
                what: "user name",
                retry_after: wait,
            });
        }
        if let Some(wait) = address.and_then(|a| locked(&Key::Address(a))) {
            return Err(Locked {
                what: "address",
                retry_after: wait,
            });
        }
        Ok(())
    }

    /// A login for `user` from `address` failed.
    pub fn failed(&self, user: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        let mut counts = self.counts.lock();
        if counts.len() >= MAX_TRACKED {
            counts.retain(|_, c| now.duration_since(c.last) < WINDOW);
            if counts.len() >= MAX_TRACKED
                && let Some(oldest) = counts
                    .iter()
                    .min_by_key(|(_, c)| c.last)
                    .map(|(k, _)| k.clone())
            {
                counts.remove(&oldest);
            }
        }
        let mut bump = |key: Key, limit: u32| {
            let c = counts.entry(key).or_insert(Count {
                failures: 0,
                last: now,
                locked_until: None,
            });
            if now.duration_since(c.last) >= WINDOW {
                c.failures = 0;
            }
            c.failures += 1;
            c.last = now;
            if c.failures >= limit {
                let doublings = (c.failures - limit).min(10);
                let lock = FIRST_LOCK.saturating_mul(1 << doublings).min(MAX_LOCK);
                c.locked_until = Some(now + lock);
            }
        };
        bump(Key::User(user.to_owned()), USER_FAILURES);
        if let Some(a) = address {
            bump(Key::Address(a), ADDRESS_FAILURES);
        }
    }

    /// A login for `user` succeeded: its count starts again.
    pub fn succeeded(&self, user: &str) {
        self.counts.lock().remove(&Key::User(user.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_locked_after_five_failures_and_the_lock_doubles() {
        let t = LoginThrottle::default();
        let addr: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..USER_FAILURES - 1 {
            t.failed("admin", Some(addr));
            assert!(t.check("admin", Some(addr)).is_ok());
        }
        t.failed("admin", Some(addr));
        let locked = t.check("admin", Some(addr)).expect_err("locked");
        assert_eq!(locked.what, "user name");
        assert!(locked.retry_after <= FIRST_LOCK && locked.retry_after > FIRST_LOCK / 2);
        t.failed("admin", Some(addr));
        let longer = t.check("admin", None).expect_err("locked");
        assert!(longer.retry_after > FIRST_LOCK, "{longer:?}");
        // Other names are not locked by it (the address is not yet at its limit).
        assert!(t.check("viewer", Some(addr)).is_ok());
    }

    #[test]
    fn an_address_guessing_many_names_is_locked() {
        let t = LoginThrottle::default();
        let addr: IpAddr = "192.0.2.8".parse().unwrap();
        for n in 0..ADDRESS_FAILURES {
            t.failed(&format!("user{n}"), Some(addr));
        }
        let locked = t.check("someone-else", Some(addr)).expect_err("locked");
        assert_eq!(locked.what, "address");
        // From elsewhere, that name is free.
        assert!(
            t.check("someone-else", Some("192.0.2.9".parse().unwrap()))
                .is_ok()
        );
        t.succeeded("someone-else");
        assert!(
            t.check("someone-else", Some(addr)).is_err(),
            "success does not reopen the address"
        );
    }
}
