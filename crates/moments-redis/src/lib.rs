#![doc = include_str!("../README.md")]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use futures_util::StreamExt as _;
use moments_domain::InfraError;
use moments_domain::ids::SessionId;
use moments_domain::in_process::{InProcessEphemeralStore, InProcessRateLimiter};
use moments_domain::limit::{Quota, RateDecision};
use moments_domain::ports::{EphemeralStore, HealthProbe, RateLimiter, RevocationBroadcast};
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands as _, Script};

#[cfg(feature = "testing")]
pub mod testing;

/// How to reach Redis and how long to wait for it.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` for TLS).
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// The longest any request waits for Redis (a connection, then the command); past it the
    /// request goes on with the in-process fallback.
    pub timeout: Duration,
    /// After a failure, how long Redis is left alone before it is tried again.
    pub retry_interval: Duration,
    /// Prepended to every key and channel, so several deployments (or tests) can share a
    /// Redis.
    pub prefix: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("retry_interval", &self.retry_interval)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// The URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Why Redis could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RedisSetupError(String);

/// A connection pool to Redis with a circuit breaker: after a failure, requests skip Redis
/// for the retry interval and use the in-process fallback, so a dead or slow Redis costs at
/// most one timeout per interval instead of one per request. The first success after that
/// closes the circuit again. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Connections taken from the pool and kept: a multiplexed connection carries any number
    /// of concurrent commands, and a pool checkout would cost a `PING` round trip each time.
    /// A slot is emptied when its connection fails and refilled from the pool.
    slots: Vec<Mutex<Option<MultiplexedConnection>>>,
    next_slot: AtomicUsize,
    client: redis::Client,
    timeout: Duration,
    retry_interval: Duration,
    prefix: String,
    origin: Instant,
    /// Milliseconds since `origin` before which Redis is not tried (0: closed circuit).
    open_until: AtomicU64,
    down: AtomicBool,
    failures: AtomicU64,
    gcra: Script,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.inner.prefix)
            .field("down", &self.inner.down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One GCRA step ([`moments_domain::limit::decide`]) on Redis's clock, atomically. Arguments:
/// the interval and the tolerance in microseconds. Returns `{allowed, tat, now}`.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
if next - now > tolerance then
  return {0, string.format('%d', tat), string.format('%d', now)}
end
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000))
return {1, string.format('%d', next), string.format('%d', now)}
";

impl Redis {
    /// A pool for `config`. Connects lazily: Redis need not be up yet.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisSetupError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| RedisSetupError(format!("REDIS_URL is not a Redis URL: {e}")))?;
        let mut pool_config = deadpool_redis::Config::from_url(config.url.clone());
        pool_config.pool = Some(PoolConfig {
            max_size: config.pool_size,
            timeouts: Timeouts {
                wait: Some(config.timeout),
                create: Some(config.timeout),
                recycle: Some(config.timeout),
            },
            ..PoolConfig::default()
        });
        let pool = pool_config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| RedisSetupError(format!("cannot create the Redis pool: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                slots: (0..config.pool_size.max(1))
                    .map(|_| Mutex::new(None))
                    .collect(),
                next_slot: AtomicUsize::new(0),
                client,
                timeout: config.timeout,
                retry_interval: config.retry_interval,
                prefix: config.prefix.clone(),
                origin: Instant::now(),
                open_until: AtomicU64::new(0),
                down: AtomicBool::new(false),
                failures: AtomicU64::new(0),
                gcra: Script::new(GCRA),
            }),
        })
    }

    /// The key under this deployment's prefix.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the last attempt failed and Redis is being left alone or retried.
    pub fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::Relaxed)
    }

    /// How many operations have failed (or timed out) since start: each sent a request to the
    /// fallback.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// A kept connection (round robin over the slots), or a new one from the pool.
    async fn connection(&self) -> Result<(usize, MultiplexedConnection), InfraError> {
        let slot = self.inner.next_slot.fetch_add(1, Ordering::Relaxed) % self.inner.slots.len();
        let kept = self.inner.slots[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(conn) = kept {
            return Ok((slot, conn));
        }
        let conn = deadpool_redis::Connection::take(
            self.inner
                .pool
                .get()
                .await
                .map_err(|e| InfraError::unavailable("redis", e))?,
        );
        *self.inner.slots[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(conn.clone());
        Ok((slot, conn))
    }

    fn forget(&self, slot: usize) {
        self.inner.slots[slot]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Runs `op` on a connection within the timeout, unless the circuit is open.
    async fn run<T, F>(&self, op: F) -> Result<T, InfraError>
    where
        F: AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    {
        if self.now_ms() < self.inner.open_until.load(Ordering::Relaxed) {
            return Err(InfraError::unavailable(
                "redis",
                "Redis failed recently; not retried yet",
            ));
        }
        let used = std::sync::OnceLock::new();
        let attempt = async {
            let (slot, mut conn) = self.connection().await?;
            let _ = used.set(slot);
            op(&mut conn)
                .await
                .map_err(|e| InfraError::unavailable("redis", e))
        };
        let outcome = match tokio::time::timeout(self.inner.timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(elapsed) => Err(InfraError::unavailable("redis", elapsed)),
        };
        if outcome.is_err()
            && let Some(slot) = used.get()
        {
            // The connection may be broken or stuck: the next use of the slot gets a new one.
            self.forget(*slot);
        }
        match &outcome {
            Ok(_) => {
                if self.inner.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again; shared limits and state resume");
                }
                self.inner.open_until.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                let retry = self.now_ms()
                    + u64::try_from(self.inner.retry_interval.as_millis()).unwrap_or(u64::MAX);
                self.inner.open_until.store(retry, Ordering::Relaxed);
                if !self.inner.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error_chain(e),
                        "Redis is not answering; limits and short-lived state fall back to this instance"
                    );
                }
            }
        }
        outcome
    }
}

/// An error with its sources, for logs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl HealthProbe for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// A `PING`, bypassing the circuit breaker (readiness wants the truth now).
    async fn check(&self) -> Result<(), InfraError> {
        let ping = async {
            let mut conn = self
                .inner
                .pool
                .get()
                .await
                .map_err(|e| InfraError::unavailable("redis", e))?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| InfraError::unavailable("redis", e))
        };
        match tokio::time::timeout(self.inner.timeout, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(elapsed) => Err(InfraError::unavailable("redis", elapsed)),
        }
    }

    /// The instance serves on its in-process fallback while Redis is down.
    fn required(&self) -> bool {
        false
    }
}

/// GCRA rate limits shared by every instance through Redis (one script call per request),
/// falling back to this instance's own limits while Redis is down: never unlimited.
#[derive(Debug)]
pub struct RedisRateLimiter {
    redis: Redis,
    fallback: InProcessRateLimiter,
}

impl RedisRateLimiter {
    /// A limiter on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            fallback: InProcessRateLimiter::new(),
        }
    }

    /// The shared decision, or the error that sent the request to the fallback.
    pub async fn acquire_shared(
        &self,
        key: &str,
        quota: Quota,
    ) -> Result<RateDecision, InfraError> {
        let key = self.redis.key(&format!("rl:{key}"));
        let script = &self.redis.inner.gcra;
        let (allowed, tat, now): (u8, u64, u64) = self
            .redis
            .run(async |conn| {
                script
                    .key(&key)
                    .arg(quota.interval_micros())
                    .arg(quota.tolerance_micros())
                    .invoke_async(conn)
                    .await
            })
            .await?;
        Ok(RateDecision::from_state(allowed == 1, tat, now, quota))
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, InfraError> {
        match self.acquire_shared(key, quota).await {
            Ok(decision) => Ok(decision),
            Err(_) => Ok(self.fallback.acquire_now(key, quota)),
        }
    }
}

/// Short-lived values shared by every instance through Redis, falling back to this instance's
/// memory while Redis is down. Reads look in both, so a value written to the fallback during
/// an outage (a login lock, say) still counts once Redis is back.
#[derive(Debug)]
pub struct RedisEphemeralStore {
    redis: Redis,
    fallback: InProcessEphemeralStore,
}

impl RedisEphemeralStore {
    /// A store on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            fallback: InProcessEphemeralStore::new(),
        }
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl EphemeralStore for RedisEphemeralStore {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), InfraError> {
        let k = self.redis.key(key);
        let shared = self
            .redis
            .run(async |conn| {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(value)
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async::<()>(conn)
                    .await
            })
            .await;
        match shared {
            Ok(()) => self.fallback.remove(key).await,
            Err(_) => self.fallback.put(key, value, ttl).await,
        }
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, InfraError> {
        let k = self.redis.key(key);
        let shared = self
            .redis
            .run(async |conn| {
                redis::cmd("GETDEL")
                    .arg(&k)
                    .query_async::<Option<Vec<u8>>>(conn)
                    .await
            })
            .await;
        match shared {
            Ok(Some(value)) => Ok(Some(value)),
            Ok(None) | Err(_) => self.fallback.take(key).await,
        }
    }

    async fn time_left(&self, key: &str) -> Result<Option<Duration>, InfraError> {
        let k = self.redis.key(key);
        let shared = self
            .redis
            .run(async |conn| conn.pttl::<_, i64>(&k).await)
            .await;
        let local = self.fallback.time_left(key).await?;
        let shared = match shared {
            // -2: no such key; -1: no expiry (never written so by us).
            Ok(ms) if ms >= 0 => u64::try_from(ms).ok().map(Duration::from_millis),
            Ok(_) | Err(_) => None,
        };
        Ok(shared.max(local))
    }

    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, InfraError> {
        let k = self.redis.key(key);
        let shared = self
            .redis
            .run(async |conn| {
                let (count,): (u64,) = redis::pipe()
                    .atomic()
                    .incr(&k, 1)
                    .cmd("PEXPIRE")
                    .arg(&k)
                    .arg(millis(ttl))
                    .arg("NX")
                    .ignore()
                    .query_async(conn)
                    .await?;
                Ok(count)
            })
            .await;
        match shared {
            Ok(count) => Ok(count),
            Err(_) => self.fallback.increment(key, ttl).await,
        }
    }

    async fn remove(&self, key: &str) -> Result<(), InfraError> {
        let k = self.redis.key(key);
        // Best effort on Redis: a key left behind expires by itself.
        let _ = self
            .redis
            .run(async |conn| conn.del::<_, ()>(&k).await)
            .await;
        self.fallback.remove(key).await
    }
}

/// Revoked sessions announced on a Redis channel, so every instance refuses their access
/// tokens within milliseconds instead of at its next poll of the store.
#[derive(Debug, Clone)]
pub struct RedisRevocations {
    redis: Redis,
}

impl RedisRevocations {
    /// Announcements on `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    fn channel(&self) -> String {
        self.redis.key("revoked-sessions")
    }

    /// Listens for announcements (this instance's own included, harmlessly) and hands each to
    /// `learn`, reconnecting after the retry interval whenever the subscription drops. The
    /// task stops when the returned guard is dropped.
    pub fn subscribe(
        &self,
        learn: impl Fn(Vec<SessionId>) + Send + Sync + 'static,
    ) -> Subscription {
        let redis = self.redis.clone();
        let channel = self.channel();
        Subscription(tokio::spawn(async move {
            loop {
                match listen(&redis, &channel, &learn).await {
                    Ok(()) => tracing::warn!("the revocation channel closed; resubscribing"),
                    Err(e) => tracing::debug!(
                        error = %error_chain(&e),
                        "cannot subscribe to revocations; retrying"
                    ),
                }
                tokio::time::sleep(redis.inner.retry_interval).await;
            }
        }))
    }
}

async fn listen(
    redis: &Redis,
    channel: &str,
    learn: &(impl Fn(Vec<SessionId>) + Send + Sync),
) -> redis::RedisResult<()> {
    let connect = redis.inner.client.get_async_pubsub();
    let mut pubsub = match tokio::time::timeout(redis.inner.timeout, connect).await {
        Ok(pubsub) => pubsub?,
        Err(_) => {
            return Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )));
        }
    };
    pubsub.subscribe(channel).await?;
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        let sessions: Vec<SessionId> = payload
            .split(',')
            .filter_map(|id| uuid::Uuid::parse_str(id).ok())
            .map(SessionId::from_uuid)
            .collect();
        if !sessions.is_empty() {
            learn(sessions);
        }
    }
    Ok(())
}

#[async_trait]
impl RevocationBroadcast for RedisRevocations {
    async fn announce(&self, sessions: &[SessionId]) {
        let payload = sessions
            .iter()
            .map(|id| id.as_uuid().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let channel = self.channel();
        if let Err(e) = self
            .redis
            .run(async |conn| conn.publish::<_, _, ()>(&channel, &payload).await)
            .await
        {
            tracing::debug!(error = %e, "revocations not announced; other instances learn them at their next poll");
        }
    }
}

/// The revocation listener; stops when dropped.
#[derive(Debug)]
pub struct Subscription(tokio::task::JoinHandle<()>);

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.abort();
    }
}
