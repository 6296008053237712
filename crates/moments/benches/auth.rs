//! The access-token check of every authenticated request, as the server runs it:
//! `AccountService::authenticate` = signature and claims verification plus the revocation-list
//! lookup, with 1 000 recently revoked sessions held in memory (HS256, EdDSA, RS256); and the
//! API key check, which needs one indexed query (SQLite, PostgreSQL).
//! `cargo bench -p moments --bench auth`.

#![expect(clippy::expect_used, reason = "a benchmark stops on a failed setup")]

use std::collections::HashMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use moments::config::Config;
use moments::wiring::{Migrations, Store, build_state};
use moments_crypto::Argon2Config;
use moments_domain::account::Registration;
use moments_domain::api_key::{ApiKeyName, ApiKeyRequest};
use moments_domain::audit::AuditKind;
use moments_domain::authz::Permission;
use moments_domain::ids::{RefreshTokenId, SessionId};
use moments_domain::session::{ClientInfo, NewRefreshToken, NewSession, Session, TokenDigest};
use moments_domain::value::{Email, Password, Username};
use moments_testkit::builders::event;

const REVOKED: usize = 1_000;

fn setup(
    runtime: &tokio::runtime::Runtime,
    vars: &[(&str, String)],
) -> (moments_http::AppState, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut map: HashMap<&str, String> = vars.iter().cloned().collect();
    map.insert("MOMENTS_DATA_DIR", dir.path().display().to_string());
    let mut config = Config::from_lookup(|name| map.get(name).cloned()).expect("config");
    config.argon2 = Argon2Config {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
        max_concurrent: 2,
    };
    runtime.block_on(async {
        let store = Store::open(&config, Migrations::Apply)
            .await
            .expect("store");
        let (state, _) = build_state(&config, &store).expect("state");
        let accounts = &state.accounts;
        let password = Password::parse("correct horse battery staple").expect("password");
        let user = accounts
            .register(Registration {
                username: Username::parse("bench").expect("username"),
                email: Email::parse("bench@example.com").expect("email"),
                password: password.clone(),
            })
            .await
            .expect("register");
        // Many sessions of the user, then all revoked: the list holds REVOKED entries.
        let sessions = store.sessions();
        let now = chrono::Utc::now();
        for i in 0..REVOKED {
            let id = SessionId::from_uuid(uuid::Uuid::now_v7());
            sessions
                .create_session(
                    NewSession {
                        session: Session {
                            id,
                            user_id: user.id,
                            created_at: now,
                            last_used_at: now,
                            expires_at: now + chrono::TimeDelta::days(30),
                            revoked_at: None,
                            client: ClientInfo::default(),
                        },
                        refresh_token: NewRefreshToken {
                            id: RefreshTokenId::from_uuid(uuid::Uuid::now_v7()),
                            digest: TokenDigest::from_bytes((i as u64).to_be_bytes().repeat(4)),
                            issued_at: now,
                            expires_at: now + chrono::TimeDelta::days(7),
                        },
                    },
                    &event(AuditKind::LoginSucceeded),
                )
                .await
                .expect("session");
        }
        sessions
            .revoke_user_sessions(user.id, None, now, &event(AuditKind::Logout))
            .await
            .expect("revoke");
        assert_eq!(accounts.sync_revocations().await.expect("sync"), REVOKED);
        let pair = accounts
            .login("bench", &password, ClientInfo::default())
            .await
            .expect("login");
        (state.clone(), pair.access_token.expose().to_owned(), dir)
    })
}

fn access_token_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../moments-crypto/testdata");
    let variants = [
        (
            "hs256",
            vec![(
                "MOMENTS_JWT_SECRET",
                "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz".to_owned(),
            )],
        ),
        (
            "eddsa",
            vec![(
                "MOMENTS_JWT_SIGNING_KEY_FILE",
                format!("{keys}/ed25519-a.pem"),
            )],
        ),
        (
            "rs256",
            vec![("MOMENTS_JWT_SIGNING_KEY_FILE", format!("{keys}/rsa-a.pem"))],
        ),
    ];
    let mut group = c.benchmark_group("authenticate_with_1000_revoked_sessions");
    group.throughput(Throughput::Elements(1));
    for (name, vars) in variants {
        let (state, token, _dir) = setup(&runtime, &vars);
        assert!(state.accounts.authenticate(&token).is_ok());
        group.bench_function(name, |b| {
            b.iter(|| state.accounts.authenticate(&token).expect("valid"))
        });
    }
    group.finish();
}

/// An `X-API-Key` check as the middleware runs it: one indexed query by prefix (with the owner's
/// state and permissions), the constant-time HMAC comparison, expiry and scope intersection.
/// On SQLite, and on PostgreSQL when it is reachable.
fn api_key_check(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let secret = (
        "MOMENTS_JWT_SECRET",
        "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz".to_owned(),
    );
    let pg = runtime.block_on(moments_postgres::testing::TestDatabase::create());
    let mut variants = vec![("sqlite", vec![secret.clone()])];
    if let Some(db) = &pg {
        variants.push((
            "postgres",
            vec![secret, ("DATABASE_URL", db.url().to_owned())],
        ));
    }
    let mut group = c.benchmark_group("authenticate_api_key");
    group.throughput(Throughput::Elements(1));
    for (name, vars) in variants {
        let (state, token, _dir) = setup(&runtime, &vars);
        let actor = state.accounts.authenticate(&token).expect("token");
        let created = runtime
            .block_on(state.accounts.create_api_key(
                &actor,
                ApiKeyRequest {
                    name: ApiKeyName::parse("bench").expect("name"),
                    scopes: vec![Permission::parse("posts:write").expect("scope")],
                    expires_at: None,
                },
            ))
            .expect("key");
        let key = created.secret.expose().to_owned();
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(state.accounts.authenticate_key(&key, ClientInfo::default()))
                    .expect("valid key")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, access_token_check, api_key_check);
criterion_main!(benches);
