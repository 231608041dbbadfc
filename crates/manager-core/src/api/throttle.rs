//! Log-in rate limiting: failed log-ins are counted per account (the login
//! name as typed, whether or not such a user exists, so the limit reveals
//! nothing) and per client address, in memory. After
//! [`FREE_FAILURES_PER_ACCOUNT`] failures within [`FAILURE_WINDOW`] (or
//! [`FREE_FAILURES_PER_ADDRESS`] from one address), further attempts are
//! refused without checking the password for a back-off that starts at
//! [`FIRST_BACK_OFF`] and doubles with every further failure, up to
//! [`FAILURE_WINDOW`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window in which failures add up; also the longest back-off.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed log-ins of one account allowed within the window before back-off.
pub const FREE_FAILURES_PER_ACCOUNT: u32 = 5;
/// Failed log-ins from one address allowed within the window before
/// back-off (higher: several people may share an address).
pub const FREE_FAILURES_PER_ADDRESS: u32 = 20;
/// The first back-off; each further failure doubles it.
pub const FIRST_BACK_OFF: Duration = Duration::from_secs(30);

/// Above this many tracked keys, stale ones are dropped on the next failure.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug)]
struct Failures {
    window_start: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

/// The failure counters, shared by every request of one server.
#[derive(Debug, Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

/// The keys one log-in attempt is counted under.
pub(crate) struct AttemptKeys {
    account: String,
    address: Option<String>,
}

impl AttemptKeys {
    /// The keys of an attempt to log in as `login` from `address`.
    pub(crate) fn new(login: &str, address: Option<IpAddr>) -> Self {
        AttemptKeys {
            account: format!("account:{}", login.trim().to_lowercase()),
            address: address.map(|address| format!("address:{address}")),
        }
    }

    fn each(&self) -> impl Iterator<Item = (&str, u32)> {
        std::iter::once((self.account.as_str(), FREE_FAILURES_PER_ACCOUNT)).chain(
            self.address
                .as_deref()
                .map(|address| (address, FREE_FAILURES_PER_ADDRESS)),
        )
    }
}

impl LoginThrottle {
    /// `Err(wait)` if the account or the address must wait before trying again.
    pub(crate) fn check(&self, keys: &AttemptKeys, now: Instant) -> Result<(), Duration> {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let wait = keys
            .each()
            .filter_map(|(key, _)| failures.get(key)?.blocked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        match wait {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed attempt.
    pub(crate) fn record_failure(&self, keys: &AttemptKeys, now: Instant) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if failures.len() > PRUNE_ABOVE {
            failures.retain(|_, entry| {
                now.duration_since(entry.window_start) < FAILURE_WINDOW
                    || entry.blocked_until.is_some_and(|until| until > now)
            });
        }
        for (key, free) in keys.each() {
            let entry = failures.entry(key.to_owned()).or_insert(Failures {
                window_start: now,
                count: 0,
                blocked_until: None,
            });
            let blocked = entry.blocked_until.is_some_and(|until| until > now);
            if !blocked && now.duration_since(entry.window_start) >= FAILURE_WINDOW {
                *entry = Failures {
                    window_start: now,
                    count: 0,
                    blocked_until: None,
                };
            }
            entry.count += 1;
            if entry.count >= free {
                let doublings = (entry.count - free).min(16);
                let back_off = FIRST_BACK_OFF
                    .saturating_mul(1 << doublings)
                    .min(FAILURE_WINDOW);
                entry.blocked_until = Some(now + back_off);
                // A blocked key keeps counting within a fresh window.
                entry.window_start = now;
            }
        }
    }

    /// Forgets the failures of the account after a successful log-in (the
    /// address keeps its count: one good password does not excuse guessing
    /// at other accounts).
    pub(crate) fn record_success(&self, keys: &AttemptKeys) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        failures.remove(&keys.account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_starts_after_the_free_failures_and_doubles() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        let keys = AttemptKeys::new("Bob", None);
        for _ in 0..FREE_FAILURES_PER_ACCOUNT - 1 {
            assert!(throttle.check(&keys, start).is_ok());
            throttle.record_failure(&keys, start);
        }
        assert!(throttle.check(&keys, start).is_ok());
        throttle.record_failure(&keys, start);
        assert_eq!(throttle.check(&keys, start), Err(FIRST_BACK_OFF));
        // The same account typed differently is the same key.
        assert!(
            throttle
                .check(&AttemptKeys::new(" bob ", None), start)
                .is_err()
        );
        let later = start + FIRST_BACK_OFF;
        assert!(throttle.check(&keys, later).is_ok());
        throttle.record_failure(&keys, later);
        assert_eq!(throttle.check(&keys, later), Err(FIRST_BACK_OFF * 2));
        throttle.record_success(&keys);
        assert!(throttle.check(&keys, later).is_ok());
    }

    #[test]
    fn an_address_guessing_many_accounts_is_slowed_down() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        for attempt in 0..FREE_FAILURES_PER_ADDRESS {
            let keys = AttemptKeys::new(&format!("user{attempt}"), Some(address));
            assert!(throttle.check(&keys, now).is_ok());
            throttle.record_failure(&keys, now);
        }
        let fresh_account = AttemptKeys::new("someone-else", Some(address));
        assert!(throttle.check(&fresh_account, now).is_err());
        let other_address = AttemptKeys::new("someone-else", Some("192.0.2.8".parse().unwrap()));
        assert!(throttle.check(&other_address, now).is_ok());
        // Failures older than the window are forgotten.
        let much_later = now + FAILURE_WINDOW * 2;
        assert!(throttle.check(&fresh_account, much_later).is_ok());
    }
}
