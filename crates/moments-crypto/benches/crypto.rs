//! Throughput of the crypto adapter: argon2id hashes per second (OWASP parameters) and access
//! token verifications per second. `cargo bench -p moments-crypto`.

#![expect(clippy::expect_used, reason = "a benchmark stops on a failed setup")]

use std::sync::Arc;

use chrono::TimeDelta;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use moments_crypto::{Argon2Config, Argon2Hasher, JwtConfig, JwtTokens, KeyMaterial};
use moments_domain::authz::{Permission, RoleName};
use moments_domain::ids::{SessionId, UserId};
use moments_domain::ports::{
    PasswordHasher, SystemClock, TokenIssuer, TokenVerifier, UuidV7Generator,
};
use moments_domain::session::AccessGrant;
use moments_domain::value::Password;
use secrecy::SecretSlice;
use uuid::Uuid;

fn password_hashing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let hasher = Argon2Hasher::new(Argon2Config::default()).expect("hasher");
    let password = Password::parse("correct horse battery staple").expect("password");
    let hash = runtime.block_on(hasher.hash(&password)).expect("hash");

    let mut group = c.benchmark_group("argon2id_owasp");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.bench_function("hash", |b| {
        b.iter(|| runtime.block_on(hasher.hash(&password)).expect("hash"))
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.verify(&password, Some(&hash)))
                .expect("verify")
        })
    });
    // Eight logins at once: the pool runs as many as there are permits (one per CPU by
    // default), so this measures the hasher's throughput on this machine.
    let hasher = std::sync::Arc::new(hasher);
    group.throughput(Throughput::Elements(8));
    group.bench_function("verify_8_concurrent", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let (hasher, password, hash) =
                            (hasher.clone(), password.clone(), hash.clone());
                        tokio::spawn(async move { hasher.verify(&password, Some(&hash)).await })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("join").expect("verify");
                }
            })
        })
    });
    group.finish();
}

fn token_verification(c: &mut Criterion) {
    let tokens = JwtTokens::new(
        JwtConfig {
            keys: KeyMaterial::Hmac(SecretSlice::from(vec![7u8; 32])),
            issuer: "http://127.0.0.1:8080".into(),
            audience: "moments".into(),
            ttl: TimeDelta::minutes(15),
            leeway: TimeDelta::seconds(30),
        },
        Arc::new(SystemClock),
        Arc::new(UuidV7Generator),
    )
    .expect("tokens");
    let grant = AccessGrant {
        user_id: UserId::from_uuid(Uuid::now_v7()),
        session_id: SessionId::from_uuid(Uuid::now_v7()),
        roles: vec![RoleName::parse("user").expect("role")],
        permissions: vec![Permission::parse("posts:write").expect("permission")],
    };
    let token = tokens.issue(&grant).expect("issue");

    let mut group = c.benchmark_group("access_token_hs256");
    group.throughput(Throughput::Elements(1));
    group.bench_function("issue", |b| b.iter(|| tokens.issue(&grant).expect("issue")));
    group.bench_function("verify", |b| {
        b.iter(|| tokens.verify(token.token.expose()).expect("verify"))
    });
    group.finish();
}

criterion_group!(benches, password_hashing, token_verification);
criterion_main!(benches);
