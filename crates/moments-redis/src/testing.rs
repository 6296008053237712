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

/// What a [`RedisProxy`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Passes bytes both ways: Redis is up.
    Forward,
    /// Closes every connection, open and new: Redis is down.
    Refuse,
    /// Accepts connections and never answers: Redis hangs.
    Stall,
}

/// A TCP proxy in front of the test Redis that a test can take down, hang and bring back, to
/// show the fallback and the recovery without stopping the Redis other tests use.
#[derive(Debug)]
pub struct RedisProxy {
    addr: std::net::SocketAddr,
    mode: std::sync::Arc<tokio::sync::watch::Sender<ProxyMode>>,
    task: tokio::task::JoinHandle<()>,
}

impl RedisProxy {
    /// A forwarding proxy to the test Redis on a free local port.
    pub async fn start() -> std::io::Result<Self> {
        let url = test_url();
        let upstream = url
            .trim_start_matches("redis://")
            .split(['/', '?'])
            .next()
            .unwrap_or("127.0.0.1:6379")
            .rsplit('@')
            .next()
            .unwrap_or("127.0.0.1:6379")
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = tokio::sync::watch::channel(ProxyMode::Forward);
        let mode = std::sync::Arc::new(mode);
        let modes = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut watch = modes.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let current = *watch.borrow_and_update();
                    match current {
                        ProxyMode::Refuse => drop(client),
                        ProxyMode::Stall => {
                            // Hold the connection silently until the mode changes.
                            let _ = watch.changed().await;
                            drop(client);
                        }
                        ProxyMode::Forward => {
                            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                                return;
                            };
                            let (mut client, mut server) = (client, server);
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = watch.changed() => {}
                            }
                        }
                    }
                });
            }
        });
        Ok(Self { addr, mode, task })
    }

    /// The URL to give the application.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Changes what the proxy does; open connections are closed.
    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.mode.send_replace(ProxyMode::Refuse);
    }
}
