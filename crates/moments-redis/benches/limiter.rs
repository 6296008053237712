//! What the rate limiter costs a request: the in-process limiter, and the Redis limiter (one
//! Lua script call) on loopback Redis, one request at a time and with 16 in flight.
//! `cargo bench -p moments-redis` (needs Redis at `MOMENTS_TEST_REDIS_URL`, default
//! 127.0.0.1:6379; the Redis cases are skipped without one).

#![expect(clippy::expect_used, reason = "a benchmark stops on a failed setup")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use moments_domain::in_process::InProcessRateLimiter;
use moments_domain::limit::Quota;
use moments_domain::ports::HealthProbe as _;
use moments_redis::testing::test_config;
use moments_redis::{Redis, RedisRateLimiter};

/// Generous enough that every request is allowed (the cost of a refusal is the same).
const QUOTA: Quota = Quota::constant(1_000_000, 1);

fn limiter(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("rate_limiter");
    group.throughput(Throughput::Elements(1));

    let local = InProcessRateLimiter::new();
    let mut n = 0_u64;
    group.bench_function("in_process", |b| {
        b.iter(|| {
            n += 1;
            local.acquire_now(&format!("read:user:{}", n % 10_000), QUOTA)
        });
    });

    let redis = Redis::new(&test_config()).expect("config");
    if runtime.block_on(redis.check()).is_err() {
        eprintln!("SKIPPED: Redis cases: no Redis answers");
        group.finish();
        return;
    }
    let shared = RedisRateLimiter::new(redis);
    let mut n = 0_u64;
    group.bench_function("redis_sequential", |b| {
        b.iter(|| {
            n += 1;
            runtime
                .block_on(shared.acquire_shared(&format!("read:user:{}", n % 10_000), QUOTA))
                .expect("redis")
        });
    });
    group.throughput(Throughput::Elements(16));
    let mut n = 0_u64;
    group.bench_function("redis_16_in_flight", |b| {
        b.iter(|| {
            n += 1;
            runtime.block_on(join_all((0..16).map(|i| {
                let key = format!("read:user:{}", (n * 16 + i) % 10_000);
                let shared = &shared;
                async move { shared.acquire_shared(&key, QUOTA).await.expect("redis") }
            })))
        });
    });
    group.finish();
}

criterion_group!(benches, limiter);
criterion_main!(benches);
