//! Redis going away, hanging and coming back, through a proxy in front of the test Redis:
//! requests fall back to per-instance limits (never none), never wait past the timeout, and
//! return to Redis by themselves.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, Instant};

use moments_domain::limit::Quota;
use moments_domain::ports::{EphemeralStore as _, HealthProbe as _, RateLimiter as _};
use moments_redis::testing::{ProxyMode, RedisProxy, test_redis};
use moments_redis::{Redis, RedisEphemeralStore, RedisRateLimiter};

async fn behind_proxy() -> Option<(RedisProxy, Redis)> {
    let mut config = test_redis().await?;
    let proxy = RedisProxy::start().await.unwrap();
    config.url = proxy.url();
    let redis = Redis::new(&config).unwrap();
    Some((proxy, redis))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_fall_back_per_instance_and_return_to_redis() {
    let Some((proxy, redis)) = behind_proxy().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(redis.clone());
    let quota = Quota::new(3, 60).unwrap();
    // Two of three spent on Redis.
    for _ in 0..2 {
        assert!(limiter.acquire_shared("k", quota).await.unwrap().allowed);
    }
    assert!(redis.check().await.is_ok());

    proxy.set(ProxyMode::Refuse);
    assert!(redis.check().await.is_err(), "readiness sees Redis down");
    // The fallback limits this instance on its own: a fresh bucket of 3, then refusals.
    for _ in 0..3 {
        assert!(limiter.acquire("k", quota).await.unwrap().allowed);
    }
    let refused = limiter.acquire("k", quota).await.unwrap();
    assert!(!refused.allowed, "never unlimited while Redis is down");
    assert!(redis.is_down());

    proxy.set(ProxyMode::Forward);
    tokio::time::sleep(Duration::from_millis(250)).await; // the retry interval is 200 ms
    let back = limiter.acquire("k", quota).await.unwrap();
    assert!(
        back.allowed && back.remaining == 0,
        "Redis's count resumes: {back:?}"
    );
    assert!(!redis.is_down());
    assert!(!limiter.acquire("k", quota).await.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_costs_at_most_the_timeout_then_nothing() {
    let Some((proxy, redis)) = behind_proxy().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(redis.clone());
    let store = RedisEphemeralStore::new(redis.clone());
    let quota = Quota::new(100, 60).unwrap();
    assert!(limiter.acquire_shared("warm", quota).await.is_ok());

    proxy.set(ProxyMode::Stall);
    let started = Instant::now();
    assert!(limiter.acquire("slow", quota).await.unwrap().allowed);
    let first = started.elapsed();
    assert!(
        first < Duration::from_millis(900),
        "bounded by the 500 ms timeout: {first:?}"
    );
    // The circuit is open: the next requests do not wait at all.
    let started = Instant::now();
    for _ in 0..20 {
        assert!(limiter.acquire("slow", quota).await.unwrap().allowed);
    }
    store
        .put("state", b"kept locally", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    // Short-lived state written during the outage is still found after it.
    proxy.set(ProxyMode::Forward);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        store.take("state").await.unwrap(),
        Some(b"kept locally".to_vec())
    );
    assert!(limiter.acquire_shared("warm", quota).await.is_ok());
}

#[tokio::test]
async fn a_dead_port_is_a_fallback_not_an_error() {
    let mut config = moments_redis::testing::test_config();
    config.url = "redis://127.0.0.1:1".into();
    let redis = Redis::new(&config).unwrap();
    let limiter = RedisRateLimiter::new(redis.clone());
    let quota = Quota::new(1, 60).unwrap();
    assert!(limiter.acquire("k", quota).await.unwrap().allowed);
    assert!(!limiter.acquire("k", quota).await.unwrap().allowed);
    assert!(redis.check().await.is_err());
    assert!(redis.failures() >= 1);
}
