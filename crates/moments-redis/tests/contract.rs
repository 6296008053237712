//! The rate-limit and short-lived-state contract on both adapters: in process, and on a real
//! Redis (skipped loudly when none answers, unless `MOMENTS_TEST_REQUIRE_SERVICES=1`).

mod in_process {
    use std::sync::Arc;

    use moments_domain::in_process::{InProcessEphemeralStore, InProcessRateLimiter};
    use moments_testkit::shared_state_contract::SharedStateUnderTest;

    async fn in_process() -> Option<SharedStateUnderTest> {
        Some(SharedStateUnderTest {
            limiter: Arc::new(InProcessRateLimiter::new()),
            ephemeral: Arc::new(InProcessEphemeralStore::new()),
            guard: Box::new(()),
        })
    }

    moments_testkit::shared_state_contract_tests!(in_process());
}

mod redis {
    use std::sync::Arc;

    use moments_redis::testing::test_redis;
    use moments_redis::{Redis, RedisEphemeralStore, RedisRateLimiter};
    use moments_testkit::shared_state_contract::SharedStateUnderTest;

    async fn on_redis() -> Option<SharedStateUnderTest> {
        let redis = Redis::new(&test_redis().await?).ok()?;
        Some(SharedStateUnderTest {
            limiter: Arc::new(SharedOnly(RedisRateLimiter::new(redis.clone()))),
            ephemeral: Arc::new(RedisEphemeralStore::new(redis.clone())),
            guard: Box::new(ServedByRedis(redis)),
        })
    }

    /// Fails the case if any operation fell back to the in-process store: the case must have
    /// been decided by Redis.
    struct ServedByRedis(Redis);

    impl Drop for ServedByRedis {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                assert_eq!(
                    self.0.failures(),
                    0,
                    "an operation fell back: Redis did not serve it"
                );
            }
        }
    }

    /// The Redis limiter without its fallback, so a Redis failure fails the case instead of
    /// passing on the in-process limiter.
    struct SharedOnly(RedisRateLimiter);

    #[async_trait::async_trait]
    impl moments_domain::ports::RateLimiter for SharedOnly {
        async fn acquire(
            &self,
            key: &str,
            quota: moments_domain::limit::Quota,
        ) -> Result<moments_domain::limit::RateDecision, moments_domain::InfraError> {
            self.0.acquire_shared(key, quota).await
        }
    }

    moments_testkit::shared_state_contract_tests!(on_redis());
}
