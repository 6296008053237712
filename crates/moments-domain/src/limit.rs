//! Rate limits: quotas and the generic cell rate algorithm (GCRA) that enforces them.
//!
//! A [`Quota`] of `q` requests per `w` seconds lets a client send `q` requests at once and then
//! one every `w / q`: a bucket of `q` cells refilled smoothly, with no burst at window edges.
//! The state of a key is one number, its theoretical arrival time (TAT): when the bucket will
//! be full again. [`decide`] is the whole algorithm; the in-process limiter runs it directly and
//! the Redis limiter runs the same arithmetic in one Lua script, and both pass one contract
//! suite.

use std::time::Duration;

/// How many requests a key may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u32,
    window_secs: u32,
}

/// Why a quota was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuotaError(String);

/// The largest accepted window: a day.
pub const MAX_WINDOW_SECS: u32 = 86_400;
/// The largest accepted number of requests per window.
pub const MAX_LIMIT: u32 = 1_000_000;

impl Quota {
    /// `limit` requests per `window_secs` seconds: 1 to 1 000 000 requests, 1 s to a day.
    pub fn new(limit: u32, window_secs: u32) -> Result<Self, QuotaError> {
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QuotaError(format!(
                "the number of requests must be from 1 to {MAX_LIMIT}, not {limit}"
            )));
        }
        if !(1..=MAX_WINDOW_SECS).contains(&window_secs) {
            return Err(QuotaError(format!(
                "the window must be from 1 to {MAX_WINDOW_SECS} seconds, not {window_secs}"
            )));
        }
        Ok(Self { limit, window_secs })
    }

    /// A quota known to be valid, for constants: an invalid one fails to compile when used in
    /// a `const`, and panics otherwise.
    pub const fn constant(limit: u32, window_secs: u32) -> Self {
        assert!(
            limit >= 1 && limit <= MAX_LIMIT && window_secs >= 1 && window_secs <= MAX_WINDOW_SECS
        );
        Self { limit, window_secs }
    }

    /// Parses `<requests>/<seconds>s`, for example `10/60s`.
    pub fn parse(text: &str) -> Result<Self, QuotaError> {
        let malformed = || {
            QuotaError(format!(
                "must look like 10/60s (requests per seconds), not {text:?}"
            ))
        };
        let (limit, window) = text.trim().split_once('/').ok_or_else(malformed)?;
        let window = window.strip_suffix('s').ok_or_else(malformed)?;
        let limit = limit.trim().parse().map_err(|_| malformed())?;
        let window = window.trim().parse().map_err(|_| malformed())?;
        Self::new(limit, window)
    }

    /// Requests per window (`q` in the rate-limit headers).
    pub fn limit(self) -> u32 {
        self.limit
    }

    /// The window in seconds (`w` in the rate-limit headers).
    pub fn window_secs(self) -> u32 {
        self.window_secs
    }

    /// The time one request costs, in microseconds: the window divided by the limit.
    pub fn interval_micros(self) -> u64 {
        u64::from(self.window_secs) * 1_000_000 / u64::from(self.limit)
    }

    /// How far ahead of now the TAT may run: `limit` intervals (the window, up to rounding).
    pub fn tolerance_micros(self) -> u64 {
        self.interval_micros() * u64::from(self.limit)
    }
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.limit, self.window_secs)
    }
}

/// The answer to one request against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed. A refused request costs nothing.
    pub allowed: bool,
    /// Requests left right now after this one (`r` in the `RateLimit` header).
    pub remaining: u32,
    /// Until the bucket is full again (`t` in the `RateLimit` header).
    pub reset_after: Duration,
    /// For a refusal: until the next request would be allowed (`Retry-After`); zero otherwise.
    pub retry_after: Duration,
}

impl RateDecision {
    /// The decision described by a key's TAT after the request, at `now` (both microseconds on
    /// the limiter's clock). Limiters return their state as `(allowed, tat, now)`; this turns it
    /// into the numbers clients see, the same way for every limiter.
    pub fn from_state(allowed: bool, tat: u64, now: u64, quota: Quota) -> Self {
        let interval = quota.interval_micros();
        let ahead = tat.saturating_sub(now);
        let free = quota.tolerance_micros().saturating_sub(ahead);
        let retry_after = if allowed {
            0
        } else {
            // The next request is allowed once `tat + interval - t <= tolerance`.
            (ahead + interval).saturating_sub(quota.tolerance_micros())
        };
        Self {
            allowed,
            remaining: u32::try_from(free / interval.max(1)).unwrap_or(u32::MAX),
            reset_after: Duration::from_micros(ahead),
            retry_after: Duration::from_micros(retry_after),
        }
    }

    /// `Retry-After` in whole seconds, rounded up and at least 1 for a refusal.
    pub fn retry_after_secs(&self) -> u64 {
        if self.allowed {
            0
        } else {
            ceil_secs(self.retry_after).max(1)
        }
    }

    /// `t` of the `RateLimit` header: seconds until the bucket is full, rounded up.
    pub fn reset_after_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }
}

/// A duration in whole seconds, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One GCRA step: given the key's stored TAT (none for a fresh key) and the time, whether the
/// request is allowed and the TAT to store (`None`: store nothing, the request was refused).
///
/// The stored TAT may be dropped once `now` passes it: a fresh key behaves identically.
pub fn decide(stored_tat: Option<u64>, now: u64, quota: Quota) -> (RateDecision, Option<u64>) {
    let tat = stored_tat.unwrap_or(now).max(now);
    let next = tat + quota.interval_micros();
    if next - now > quota.tolerance_micros() {
        (RateDecision::from_state(false, tat, now, quota), None)
    } else {
        (RateDecision::from_state(true, next, now, quota), Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    #[test]
    fn quotas_parse_and_refuse_nonsense() {
        let q = Quota::parse("10/60s").unwrap();
        assert_eq!((q.limit(), q.window_secs()), (10, 60));
        assert_eq!(q.to_string(), "10/60s");
        assert_eq!(q.interval_micros(), 6 * SEC);
        for bad in [
            "",
            "10",
            "10/60",
            "0/60s",
            "10/0s",
            "x/60s",
            "10/xs",
            "-1/5s",
            "10/90000s",
        ] {
            assert!(Quota::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_burst_of_the_limit_then_one_per_interval() {
        let q = Quota::new(3, 3).unwrap();
        let mut tat = None;
        let t0 = 1_000 * SEC;
        for expected_remaining in [2, 1, 0] {
            let (d, next) = decide(tat, t0, q);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = next;
        }
        let (refused, stored) = decide(tat, t0, q);
        assert!(!refused.allowed && stored.is_none());
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!(refused.reset_after_secs(), 3);
        // One microsecond early is still refused; on time is allowed.
        assert!(!decide(tat, t0 + SEC - 1, q).0.allowed);
        let (on_time, _) = decide(tat, t0 + SEC, q);
        assert!(on_time.allowed);
        assert_eq!(on_time.remaining, 0);
        // A key idle for a whole window is fresh again.
        let (fresh, _) = decide(tat, t0 + 3 * SEC, q);
        assert_eq!(fresh.remaining, 2);
    }

    #[test]
    fn no_double_burst_at_a_window_edge() {
        // Whatever the timing, a client never gets more than limit + elapsed / interval.
        let q = Quota::new(10, 10).unwrap();
        let mut tat = None;
        let mut allowed = 0;
        let t0 = 50 * SEC;
        for step in 0..200 {
            let now = t0 + step * 100_000; // every 0.1 s for 20 s
            let (d, next) = decide(tat, now, q);
            if d.allowed {
                allowed += 1;
                tat = next;
            }
        }
        assert_eq!(allowed, 10 + 19, "a burst of 10, then one a second");
    }
}
