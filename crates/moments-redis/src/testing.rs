//! A Redis for tests: the server at `MOMENTS_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`) under a fresh key prefix, so tests never see each other's keys.
//! When it does not answer, tests skip loudly, or fail with `MOMENTS_TEST_REQUIRE_SERVICES=1`.

use std::time::Duration;

use moments_domain::ports::HealthProbe as _;
use moments_testkit::services::unreachable_service;

use crate::{Redis, RedisConfig};

/// The variable naming the Redis tests use.
pub const URL_VAR: &str = "MOMENTS_TEST_REDIS_URL";

/// The URL tests connect to.
pub fn test_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh key prefix.
pub fn fresh_prefix() -> String {
    format!("moments-test:{}:", uuid::Uuid::now_v7().simple())
}

/// Settings for tests: the test server, a fresh prefix, short timeouts.
pub fn test_config() -> RedisConfig {
    RedisConfig {
        url: test_url(),
        pool_size: 8,
        timeout: Duration::from_millis(500),
        retry_interval: Duration::from_millis(200),
        prefix: fresh_prefix(),
    }
}

/// The test server if it answers (`None`: skipped, it does not and is not required).
pub async fn test_redis() -> Option<RedisConfig> {
    let config = test_config();
    let outcome = match Redis::new(&config) {
        Ok(redis) => redis.check().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(()) => Some(config),
        Err(e) => {
            unreachable_service("Redis", &config.url, &e);
            None
        }
    }
}
