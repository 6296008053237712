//! Rate limits, the login throttle, trusted proxies and Redis faults, through the real router:
//! in process and on a real Redis (skipped loudly when none answers, unless
//! `MOMENTS_TEST_REQUIRE_SERVICES=1`).

#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use common::{PASSWORD, Reply, app_with, redis_vars, register, send, twin_apps_with, with_token};
use serde_json::json;

fn addr(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40_000)
}

/// A login attempt from `peer`, with an optional `X-Forwarded-For`.
async fn login_from<S, B>(
    app: &S,
    peer: &str,
    forwarded_for: Option<&str>,
    login: &str,
    password: &str,
) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let mut req = test::TestRequest::post()
        .uri("/api/v1/auth/login")
        .peer_addr(addr(peer))
        .set_json(json!({"login": login, "password": password}));
    if let Some(xff) = forwarded_for {
        req = req.insert_header(("x-forwarded-for", xff));
    }
    send(app, req).await
}

fn vars(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

#[actix_web::test]
async fn limited_routes_carry_the_headers_and_refuse_with_429() {
    let t = app_with(&vars(&[("MOMENTS_RATE_LIMIT_LOGIN", "3/60s")])).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    for remaining in [2, 1, 0] {
        let reply = login_from(&app, "203.0.113.1", None, "nobody", "wrong password!").await;
        reply.problem(401, "invalid_credentials");
        assert_eq!(reply.header("ratelimit-policy"), Some("\"login\";q=3;w=60"));
        let expected = format!("\"login\";r={remaining};t={}", 20 * (3 - remaining));
        assert_eq!(reply.header("ratelimit"), Some(expected.as_str()));
    }
    let refused = login_from(&app, "203.0.113.1", None, "nobody", "wrong password!").await;
    refused.problem(429, "rate_limited");
    assert_eq!(refused.header("retry-after"), Some("20"));
    assert_eq!(refused.header("ratelimit"), Some("\"login\";r=0;t=60"));
    assert_eq!(
        refused.header("ratelimit-policy"),
        Some("\"login\";q=3;w=60")
    );
    // Another address has its own quota.
    let other = login_from(&app, "203.0.113.2", None, "nobody", "wrong password!").await;
    other.problem(401, "invalid_credentials");
    // Routes outside the API are not limited.
    let health = send(&app, test::TestRequest::get().uri("/health")).await;
    assert!(health.header("ratelimit").is_none());
}

#[actix_web::test]
async fn signed_in_callers_count_per_user_not_per_address() {
    let t = app_with(&vars(&[("MOMENTS_RATE_LIMIT_READ", "2/60s")])).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "alice").await;
    register(&app, "bob").await;
    let token = |name: &'static str| {
        let app = &app;
        async move {
            let reply = login_from(app, "198.51.100.1", None, name, PASSWORD).await;
            reply.body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let (alice, bob) = (token("alice").await, token("bob").await);
    let me = |token: Option<String>| {
        let app = &app;
        async move {
            let req = test::TestRequest::get()
                .uri("/api/v1/posts")
                .peer_addr(addr("198.51.100.1"));
            send(
                app,
                match token {
                    Some(t) => with_token(req, &t),
                    None => req,
                },
            )
            .await
        }
    };
    assert_eq!(me(Some(alice.clone())).await.status, 200);
    assert_eq!(me(Some(alice.clone())).await.status, 200);
    me(Some(alice.clone())).await.problem(429, "rate_limited");
    // Same address, another user: their own quota; anonymous: the address's.
    assert_eq!(me(Some(bob)).await.status, 200);
    let anonymous = me(None).await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.header("ratelimit"), Some("\"read\";r=1;t=30"));
}

#[actix_web::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    // No proxy trusted: a client cannot pick its own key with a header.
    let t = app_with(&vars(&[("MOMENTS_RATE_LIMIT_LOGIN", "1/60s")])).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    login_from(&app, "127.0.0.1", Some("192.0.2.1"), "x", "wrong password!")
        .await
        .problem(401, "invalid_credentials");
    login_from(&app, "127.0.0.1", Some("192.0.2.2"), "x", "wrong password!")
        .await
        .problem(429, "rate_limited");

    // Behind a trusted proxy, the forwarded client is the key, and what sessions record.
    let t = app_with(&vars(&[
        ("MOMENTS_RATE_LIMIT_LOGIN", "1/60s"),
        ("MOMENTS_TRUSTED_PROXIES", "10.0.0.0/8"),
    ]))
    .await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    login_from(&app, "10.0.0.1", Some("192.0.2.1"), "x", "wrong password!")
        .await
        .problem(401, "invalid_credentials");
    login_from(&app, "10.0.0.1", Some("192.0.2.2"), "x", "wrong password!")
        .await
        .problem(401, "invalid_credentials");
    login_from(&app, "10.0.0.2", Some("192.0.2.1"), "x", "wrong password!")
        .await
        .problem(429, "rate_limited");
    // A client's own X-Forwarded-For entry, left of the proxy's, changes nothing.
    login_from(
        &app,
        "10.0.0.1",
        Some("203.0.113.99, 192.0.2.2"),
        "x",
        "wrong password!",
    )
    .await
    .problem(429, "rate_limited");
    register(&app, "carol").await;
    let pair = login_from(&app, "10.0.0.1", Some("198.51.100.7"), "carol", PASSWORD).await;
    assert_eq!(pair.status, 200, "{:#}", pair.body);
    let token = pair.body["access_token"].as_str().unwrap();
    let sessions = send(
        &app,
        with_token(
            test::TestRequest::get()
                .uri("/api/v1/auth/sessions")
                .peer_addr(addr("10.0.0.1")),
            token,
        ),
    )
    .await;
    assert_eq!(sessions.body["items"][0]["ip"], "198.51.100.7");
}

/// Fifty addresses, one account, wrong passwords: five failures lock the name; every other
/// attempt, the right password included, is 429; an unknown name behaves the same; after the
/// cool-down the owner signs in.
async fn login_attack_from_50_addresses(extra: Vec<(&'static str, String)>) {
    let mut settings = vars(&[("MOMENTS_LOGIN_THROTTLE", "5/2s")]);
    settings.extend(extra);
    let t = app_with(&settings).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "victim").await;
    let attack = |login: &'static str| {
        let app = &app;
        async move {
            let mut statuses = Vec::new();
            for i in 0..50 {
                let peer = format!("198.18.{}.{}", i / 200, i % 200 + 1);
                let reply = login_from(app, &peer, None, login, "not the password").await;
                if reply.status == 429 {
                    reply.problem(429, "rate_limited");
                    let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
                    assert!((1..=2).contains(&wait), "{wait}");
                }
                statuses.push(reply.status.as_u16());
            }
            statuses
        }
    };
    let real = attack("victim").await;
    let mut expected = vec![401; 5];
    expected.extend([429; 45]);
    assert_eq!(real, expected, "five guesses, then locked");
    assert_eq!(
        attack("no_such_user").await,
        expected,
        "unknown names alike"
    );
    // While locked, even the right password is refused (else a guess would show it was right).
    login_from(&app, "192.0.2.10", None, "victim", PASSWORD)
        .await
        .problem(429, "rate_limited");
    // The lock is the account's, typed any way.
    login_from(&app, "192.0.2.10", None, " VICTIM ", PASSWORD)
        .await
        .problem(429, "rate_limited");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let owner = login_from(&app, "192.0.2.10", None, "victim", PASSWORD).await;
    assert_eq!(owner.status, 200, "the owner gets in after the cool-down");
}

#[actix_web::test]
async fn login_attack_from_50_addresses_in_process() {
    login_attack_from_50_addresses(Vec::new()).await;
}

#[actix_web::test]
async fn login_attack_from_50_addresses_on_redis() {
    let Some(redis) = redis_vars().await else {
        return;
    };
    login_attack_from_50_addresses(redis).await;
}

#[actix_web::test]
async fn the_throttle_grows_with_repeated_locks() {
    let t = app_with(&vars(&[("MOMENTS_LOGIN_THROTTLE", "2/1s")])).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let mut retry_after = Vec::new();
    for _round in 0..3 {
        for _ in 0..2 {
            login_from(&app, "192.0.2.1", None, "target", "not the password")
                .await
                .problem(401, "invalid_credentials");
        }
        let locked = login_from(&app, "192.0.2.1", None, "target", "not the password").await;
        locked.problem(429, "rate_limited");
        let secs: u64 = locked.header("retry-after").unwrap().parse().unwrap();
        retry_after.push(secs);
        tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(50)).await;
    }
    assert_eq!(retry_after, vec![1, 2, 4], "each lock doubles");
}

#[actix_web::test]
async fn two_instances_share_limits_throttles_and_revocations_through_redis() {
    let Some(mut settings) = redis_vars().await else {
        return;
    };
    settings.extend(vars(&[
        ("MOMENTS_RATE_LIMIT_LOGIN", "4/60s"),
        ("MOMENTS_LOGIN_THROTTLE", "3/60s"),
        // Far slower than the broadcast: a refusal within a second cannot be the poll's.
        ("MOMENTS_REVOCATION_POLL_MS", "5000"),
    ]));
    let (a, b) = twin_apps_with(false, &settings).await.unwrap();
    let a = test::init_service(moments_http::app(a.state, a.http)).await;
    let b = test::init_service(moments_http::app(b.state, b.http)).await;

    // Three failures for "ghost", split over both instances, lock it on both.
    for app in [&a, &b, &a] {
        login_from(app, "203.0.113.50", None, "ghost", "wrong password!")
            .await
            .problem(401, "invalid_credentials");
    }
    login_from(&b, "203.0.113.50", None, "ghost", "wrong password!")
        .await
        .problem(429, "rate_limited");
    login_from(&b, "203.0.113.51", None, "ghost", "wrong password!")
        .await
        .problem(429, "rate_limited");
    // The address's four logins were spent across both instances: a fifth is refused by the
    // route limit whatever the name.
    let spent = login_from(&a, "203.0.113.50", None, "other", "wrong password!").await;
    spent.problem(429, "rate_limited");
    assert_eq!(spent.header("ratelimit"), Some("\"login\";r=0;t=60"));

    // A session revoked on A is refused by B at once, long before B's next poll.
    register(&a, "dora").await;
    let pair = login_from(&a, "198.51.100.20", None, "dora", PASSWORD).await;
    let token = pair.body["access_token"].as_str().unwrap().to_owned();
    let me = |app| {
        let token = token.clone();
        async move {
            send(
                app,
                with_token(test::TestRequest::get().uri("/api/v1/auth/me"), &token),
            )
            .await
            .status
        }
    };
    assert_eq!(me(&b).await, 200);
    let logout = send(
        &a,
        test::TestRequest::post()
            .uri("/api/v1/auth/logout")
            .set_json(json!({"refresh_token": pair.body["refresh_token"]})),
    )
    .await;
    assert_eq!(logout.status, 204);
    let revoked_at = Instant::now();
    while me(&b).await != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "B still accepts the revoked session"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn redis_down_degrades_readiness_keeps_limits_and_recovers() {
    let Some(mut settings) = redis_vars().await else {
        return;
    };
    let proxy = moments_redis::testing::RedisProxy::start().await.unwrap();
    for (name, value) in &mut settings {
        if *name == "REDIS_URL" {
            *value = proxy.url();
        }
    }
    settings.extend(vars(&[("MOMENTS_RATE_LIMIT_REGISTER", "2/600s")]));
    let t = app_with(&settings).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let ready = |app| async move { send(app, test::TestRequest::get().uri("/ready")).await };
    let signup = |name: &'static str| {
        let app = &app;
        async move {
            send(
                app,
                test::TestRequest::post()
                    .uri("/api/v1/auth/register")
                    .peer_addr(addr("203.0.113.77"))
                    .set_json(json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD})),
            )
            .await
        }
    };
    let up = ready(&app).await;
    assert_eq!(up.status, 200);
    assert_eq!(
        up.body,
        json!({"status": "ok", "checks": {"database": "ok", "redis": "ok"}})
    );
    assert_eq!(signup("first").await.status, 201, "one of two on Redis");

    proxy.set(moments_redis::testing::ProxyMode::Refuse);
    let down = ready(&app).await;
    assert_eq!(down.status, 200, "degraded, not unready");
    assert_eq!(
        down.body,
        json!({"status": "degraded", "checks": {"database": "ok", "redis": "down"}})
    );
    // The API keeps serving, and registration stays limited on this instance's own count.
    assert_eq!(
        send(&app, test::TestRequest::get().uri("/api/v1/posts"))
            .await
            .status,
        200
    );
    assert_eq!(signup("second").await.status, 201);
    assert_eq!(signup("third").await.status, 201);
    signup("fourth").await.problem(429, "rate_limited");

    proxy.set(moments_redis::testing::ProxyMode::Forward);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = ready(&app).await;
    assert_eq!(back.body["status"], "ok");
    // Back on Redis, where one registration of two was left.
    assert_eq!(signup("fifth").await.status, 201);
    signup("sixth").await.problem(429, "rate_limited");
}

#[actix_web::test]
async fn a_redis_that_never_answers_costs_no_availability() {
    let t = app_with(&vars(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("MOMENTS_REDIS_TIMEOUT_MS", "200"),
    ]))
    .await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let started = Instant::now();
    register(&app, "erin").await;
    let pair = login_from(&app, "192.0.2.1", None, "erin", PASSWORD).await;
    assert_eq!(pair.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let ready = send(&app, test::TestRequest::get().uri("/ready")).await;
    assert_eq!(ready.body["status"], "degraded");
    assert_eq!(ready.body["checks"]["redis"], "down");
}
