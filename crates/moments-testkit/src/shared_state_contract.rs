//! The contract of the rate limiter and the short-lived store: what the in-process adapters and
//! the Redis adapters must both do. `shared_state_contract_tests!` turns each case into a test.
//!
//! The cases run on real time (Redis keeps its own clock), with margins of tens of
//! milliseconds around each boundary; each uses fresh keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use moments_domain::limit::Quota;
use moments_domain::ports::{EphemeralStore, RateLimiter};
use uuid::Uuid;

/// A limiter and a short-lived store to test, with whatever keeps them alive.
pub struct SharedStateUnderTest {
    /// The limiter.
    pub limiter: Arc<dyn RateLimiter>,
    /// The short-lived store.
    pub ephemeral: Arc<dyn EphemeralStore>,
    /// Dropped at the end of the test.
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for SharedStateUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedStateUnderTest")
    }
}

/// Generates one `#[tokio::test]` per case. `$make` is an async expression giving
/// `Option<SharedStateUnderTest>`; `None` skips (service unreachable and not required).
#[macro_export]
macro_rules! shared_state_contract_tests {
    ($make:expr) => {
        $crate::shared_state_contract_tests!(@cases $make;
            limits_are_exact_at_the_boundary,
            retry_after_is_exact,
            a_key_idle_for_its_window_is_fresh,
            limiter_keys_are_independent,
            concurrent_requests_never_exceed_the_quota,
            values_round_trip_and_are_taken_once,
            take_is_once_under_50_concurrent_takers,
            time_to_live_is_honoured,
            counters_count_and_keep_their_first_time_to_live,
            concurrent_increments_are_all_counted,
            ephemeral_keys_are_independent,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(under_test) = $make.await else { return };
                $crate::shared_state_contract::$case(&under_test).await;
            }
        )+
    };
}

fn key(name: &str) -> String {
    format!("contract:{name}:{}", Uuid::new_v4().simple())
}

fn quota(limit: u32, window_secs: u32) -> Quota {
    Quota::new(limit, window_secs).unwrap()
}

/// `q` requests pass with `r` counting down to 0; the next is refused with `r = 0`, a
/// `Retry-After` of one interval, and a reset of the whole window.
pub async fn limits_are_exact_at_the_boundary(s: &SharedStateUnderTest) {
    let k = key("boundary");
    let q = quota(5, 10);
    for remaining in (0..5).rev() {
        let d = s.limiter.acquire(&k, q).await.unwrap();
        assert!(d.allowed, "request {} of 5", 5 - remaining);
        assert_eq!(d.remaining, remaining);
    }
    let refused = s.limiter.acquire(&k, q).await.unwrap();
    assert!(!refused.allowed, "the 6th request is refused");
    assert_eq!(refused.remaining, 0);
    // One interval (2 s) less the few milliseconds since the first request.
    assert!(
        refused.retry_after <= Duration::from_secs(2)
            && refused.retry_after > Duration::from_millis(1800),
        "{refused:?}"
    );
    assert_eq!(refused.retry_after_secs(), 2);
    assert!(
        refused.reset_after <= Duration::from_secs(10)
            && refused.reset_after > Duration::from_millis(9800),
        "{refused:?}"
    );
    assert_eq!(refused.reset_after_secs(), 10);
    // Refusals cost nothing: still refused, still the same wait.
    let again = s.limiter.acquire(&k, q).await.unwrap();
    assert!(!again.allowed && again.retry_after <= refused.retry_after);
}

/// A request just before `Retry-After` has passed is refused; just after, allowed.
pub async fn retry_after_is_exact(s: &SharedStateUnderTest) {
    let k = key("retry");
    let q = quota(2, 1); // one request per 500 ms
    assert!(s.limiter.acquire(&k, q).await.unwrap().allowed);
    assert!(s.limiter.acquire(&k, q).await.unwrap().allowed);
    let refused = s.limiter.acquire(&k, q).await.unwrap();
    let measured_at = Instant::now();
    assert!(!refused.allowed);
    assert!(
        refused.retry_after > Duration::from_millis(400),
        "{refused:?}"
    );
    tokio::time::sleep(
        refused
            .retry_after
            .saturating_sub(Duration::from_millis(150)),
    )
    .await;
    let early = s.limiter.acquire(&k, q).await.unwrap();
    assert!(!early.allowed, "150 ms early: {early:?}");
    let wait = refused.retry_after + Duration::from_millis(30);
    tokio::time::sleep(wait.saturating_sub(measured_at.elapsed())).await;
    let on_time = s.limiter.acquire(&k, q).await.unwrap();
    assert!(on_time.allowed, "30 ms after Retry-After: {on_time:?}");
    assert_eq!(on_time.remaining, 0);
}

/// After a whole window without requests the bucket is full again.
pub async fn a_key_idle_for_its_window_is_fresh(s: &SharedStateUnderTest) {
    let k = key("idle");
    let q = quota(3, 1);
    for _ in 0..3 {
        assert!(s.limiter.acquire(&k, q).await.unwrap().allowed);
    }
    assert!(!s.limiter.acquire(&k, q).await.unwrap().allowed);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let fresh = s.limiter.acquire(&k, q).await.unwrap();
    assert!(fresh.allowed);
    assert_eq!(fresh.remaining, 2, "a full bucket less this request");
}

/// Exhausting one key leaves another untouched; so does another quota on its own key.
pub async fn limiter_keys_are_independent(s: &SharedStateUnderTest) {
    let (a, b) = (key("a"), key("b"));
    let q = quota(2, 60);
    assert!(s.limiter.acquire(&a, q).await.unwrap().allowed);
    assert!(s.limiter.acquire(&a, q).await.unwrap().allowed);
    assert!(!s.limiter.acquire(&a, q).await.unwrap().allowed);
    let other = s.limiter.acquire(&b, q).await.unwrap();
    assert!(other.allowed);
    assert_eq!(other.remaining, 1);
    let wide = s
        .limiter
        .acquire(&key("wide"), quota(100, 60))
        .await
        .unwrap();
    assert_eq!(wide.remaining, 99);
}

/// Fifty requests at once against a quota of twenty: exactly twenty pass.
pub async fn concurrent_requests_never_exceed_the_quota(s: &SharedStateUnderTest) {
    let k = key("concurrent");
    let q = quota(20, 60);
    let decisions = join_all((0..50).map(|_| s.limiter.acquire(&k, q))).await;
    let allowed = decisions
        .into_iter()
        .filter(|d| d.as_ref().unwrap().allowed)
        .count();
    assert_eq!(allowed, 20);
}

/// A value comes back byte for byte, once; replacing and removing work; absent keys are `None`.
pub async fn values_round_trip_and_are_taken_once(s: &SharedStateUnderTest) {
    let k = key("value");
    let bytes: Vec<u8> = (0..=255).collect();
    s.ephemeral
        .put(&k, &bytes, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.ephemeral.take(&k).await.unwrap(), Some(bytes));
    assert_eq!(s.ephemeral.take(&k).await.unwrap(), None);
    s.ephemeral
        .put(&k, b"first", Duration::from_secs(60))
        .await
        .unwrap();
    s.ephemeral
        .put(&k, b"second", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        s.ephemeral.take(&k).await.unwrap(),
        Some(b"second".to_vec())
    );
    s.ephemeral
        .put(&k, b"gone", Duration::from_secs(60))
        .await
        .unwrap();
    s.ephemeral.remove(&k).await.unwrap();
    assert_eq!(s.ephemeral.take(&k).await.unwrap(), None);
    s.ephemeral.remove(&key("never")).await.unwrap();
}

/// Fifty concurrent takers of one value: exactly one gets it.
pub async fn take_is_once_under_50_concurrent_takers(s: &SharedStateUnderTest) {
    for _ in 0..5 {
        let k = key("once");
        s.ephemeral
            .put(&k, b"one-time", Duration::from_secs(60))
            .await
            .unwrap();
        let takes = join_all((0..50).map(|_| s.ephemeral.take(&k))).await;
        let winners: Vec<_> = takes.into_iter().filter_map(|t| t.unwrap()).collect();
        assert_eq!(winners, vec![b"one-time".to_vec()]);
    }
}

/// A value lives for its time to live and not after it.
pub async fn time_to_live_is_honoured(s: &SharedStateUnderTest) {
    let k = key("ttl");
    s.ephemeral
        .put(&k, b"short", Duration::from_millis(300))
        .await
        .unwrap();
    let left = s.ephemeral.time_left(&k).await.unwrap().unwrap();
    assert!(
        left <= Duration::from_millis(300) && left > Duration::from_millis(200),
        "{left:?}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.ephemeral.time_left(&k).await.unwrap(), None);
    assert_eq!(s.ephemeral.take(&k).await.unwrap(), None);
    assert_eq!(s.ephemeral.time_left(&key("absent")).await.unwrap(), None);
}

/// Counters start at 1 and count up; incrementing does not extend the first time to live.
pub async fn counters_count_and_keep_their_first_time_to_live(s: &SharedStateUnderTest) {
    let k = key("counter");
    let ttl = Duration::from_millis(500);
    for expected in 1..=3 {
        assert_eq!(s.ephemeral.increment(&k, ttl).await.unwrap(), expected);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.ephemeral
            .increment(&k, Duration::from_secs(60))
            .await
            .unwrap(),
        4
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.ephemeral.increment(&k, ttl).await.unwrap(),
        1,
        "the counter expired 500 ms after it was created"
    );
}

/// Fifty concurrent increments: every count from 1 to 50 handed out once.
pub async fn concurrent_increments_are_all_counted(s: &SharedStateUnderTest) {
    let k = key("many");
    let counts =
        join_all((0..50).map(|_| s.ephemeral.increment(&k, Duration::from_secs(60)))).await;
    let mut counts: Vec<u64> = counts.into_iter().map(Result::unwrap).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=50).collect::<Vec<u64>>());
}

/// Values and counters under different keys do not touch each other.
pub async fn ephemeral_keys_are_independent(s: &SharedStateUnderTest) {
    let (a, b) = (key("a"), key("b"));
    s.ephemeral
        .put(&a, b"a", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(s.ephemeral.take(&b).await.unwrap(), None);
    assert_eq!(
        s.ephemeral
            .increment(&b, Duration::from_secs(60))
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.ephemeral.take(&a).await.unwrap(), Some(b"a".to_vec()));
}
