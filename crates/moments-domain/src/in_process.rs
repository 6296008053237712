//! The in-process rate limiter and short-lived store: the embedded default (one instance, no
//! Redis) and the fallback a shared adapter uses while its service is down.
//!
//! They need nothing but the standard library, so they live beside the ports they implement
//! and pass the same contract suite as the Redis adapters. Time is a monotonic clock, so a
//! wall-clock jump neither frees nor blocks anybody. Expired entries are swept as the maps are
//! used, so memory follows the number of keys active within their time to live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::InfraError;
use crate::limit::{Quota, RateDecision, decide};
use crate::ports::{EphemeralStore, RateLimiter};

/// Sweep expired entries once every this many operations.
const SWEEP_EVERY: u64 = 1024;

/// Microseconds on a monotonic clock that starts at the limiter's creation.
#[derive(Debug)]
struct Monotonic(Instant);

impl Monotonic {
    fn now_micros(&self) -> u64 {
        // Starts at one second so a zero never means "now" (a fresh key's TAT).
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX) + 1_000_000
    }
}

/// Rate limits kept in this process's memory.
#[derive(Debug)]
pub struct InProcessRateLimiter {
    clock: Monotonic,
    tats: Mutex<HashMap<String, u64>>,
    ops: AtomicU64,
}

impl Default for InProcessRateLimiter {
    fn default() -> Self {
        Self {
            clock: Monotonic(Instant::now()),
            tats: Mutex::default(),
            ops: AtomicU64::new(0),
        }
    }
}

impl InProcessRateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys are held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.tats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The decision for `key`, synchronously (the trait method wraps this).
    pub fn acquire_now(&self, key: &str, quota: Quota) -> RateDecision {
        let now = self.clock.now_micros();
        let sweep = self
            .ops
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY);
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        if sweep {
            tats.retain(|_, tat| *tat > now);
        }
        let (decision, next) = decide(tats.get(key).copied(), now, quota);
        if let Some(next) = next {
            tats.insert(key.to_owned(), next);
        }
        decision
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, InfraError> {
        Ok(self.acquire_now(key, quota))
    }
}

#[derive(Debug)]
enum Entry {
    Value(Vec<u8>),
    Counter(u64),
}

/// Short-lived values kept in this process's memory.
#[derive(Debug)]
pub struct InProcessEphemeralStore {
    clock: Monotonic,
    entries: Mutex<HashMap<String, (Entry, u64)>>,
    ops: AtomicU64,
}

impl Default for InProcessEphemeralStore {
    fn default() -> Self {
        Self {
            clock: Monotonic(Instant::now()),
            entries: Mutex::default(),
            ops: AtomicU64::new(0),
        }
    }
}

impl InProcessEphemeralStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the live entries (expired ones removed first) and the time.
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (Entry, u64)>, u64) -> T) -> T {
        let now = self.clock.now_micros();
        let sweep = self
            .ops
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if sweep {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        f(&mut entries, now)
    }
}

fn expiry(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX))
}

/// Drops `key` if it has expired; returns whether it is (still) there.
fn live(entries: &mut HashMap<String, (Entry, u64)>, key: &str, now: u64) -> bool {
    match entries.get(key) {
        Some((_, expires)) if *expires <= now => {
            entries.remove(key);
            false
        }
        Some(_) => true,
        None => false,
    }
}

#[async_trait]
impl EphemeralStore for InProcessEphemeralStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), InfraError> {
        self.with(|entries, now| {
            entries.insert(
                key.to_owned(),
                (Entry::Value(value.to_vec()), expiry(now, ttl)),
            );
        });
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, InfraError> {
        Ok(self.with(|entries, now| {
            if !live(entries, key, now) {
                return None;
            }
            match entries.remove(key) {
                Some((Entry::Value(value), _)) => Some(value),
                Some((Entry::Counter(n), _)) => Some(n.to_string().into_bytes()),
                None => None,
            }
        }))
    }

    async fn time_left(&self, key: &str) -> Result<Option<Duration>, InfraError> {
        Ok(self.with(|entries, now| {
            if !live(entries, key, now) {
                return None;
            }
            entries
                .get(key)
                .map(|(_, expires)| Duration::from_micros(expires - now))
        }))
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, InfraError> {
        self.with(|entries, now| {
            if !live(entries, key, now) {
                entries.insert(key.to_owned(), (Entry::Counter(0), expiry(now, ttl)));
            }
            match entries.get_mut(key) {
                Some((Entry::Counter(n), _)) => {
                    *n += 1;
                    Ok(*n)
                }
                _ => Err(InfraError::internal(format!(
                    "{key} does not hold a counter"
                ))),
            }
        })
    }

    async fn remove(&self, key: &str) -> Result<(), InfraError> {
        self.with(|entries, _| {
            entries.remove(key);
        });
        Ok(())
    }
}
