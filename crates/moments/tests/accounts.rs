//! Accounts through the real router, on SQLite and on PostgreSQL: register, login, me,
//! refresh, logout, with their failure paths.

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use std::sync::Arc;

use actix_web::test;
use chrono::{TimeDelta, Utc};
use common::*;
use moments_crypto::{JwtConfig, JwtTokens, KeyMaterial};
use moments_domain::ids::{SessionId, UserId};
use moments_domain::ports::{Clock, TokenIssuer, UuidV7Generator};
use moments_domain::session::AccessGrant;
use secrecy::SecretSlice;
use serde_json::json;

on_both_stores!(
    register_login_me_refresh_logout,
    registration_conflicts_are_409,
    registration_validation_names_each_field,
    login_failures_do_not_reveal_accounts,
    rotated_refresh_tokens_cannot_be_replayed,
    logout_revokes_the_session,
    me_refuses_missing_bad_and_expired_tokens,
);

async fn register_login_me_refresh_logout(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;

    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": "Alice", "email": "Alice@Example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(reply.status, 201, "{:#}", reply.body);
    let user = &reply.body;
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "Alice@Example.com");
    assert!(user["display_name"].is_null());
    assert_eq!(user["email_verified"], false);
    assert_eq!(
        uuid::Uuid::parse_str(user["id"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        7
    );
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());

    // Log in by e-mail in another case.
    let reply = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "alice@EXAMPLE.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let pair = reply.body.clone();
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["refresh_expires_in"], 604_800);
    let access = pair["access_token"].as_str().unwrap();

    let me = get(&app, "/api/v1/auth/me", Some(access)).await;
    assert_eq!(me.status, 200, "{:#}", me.body);
    assert_eq!(me.body["id"], user["id"]);
    assert_eq!(me.body["roles"], json!(["user"]));
    assert_eq!(me.body["permissions"], json!(["posts:write"]));
    assert_eq!(me.body["has_password"], true);
    assert_eq!(me.body["providers"], json!([]));

    // Refresh rotates: a new pair, and the new access token works.
    let reply = refresh(&app, &pair["refresh_token"]).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let second = reply.body.clone();
    assert_ne!(second["refresh_token"], pair["refresh_token"]);
    let me = get(&app, "/api/v1/auth/me", second["access_token"].as_str()).await;
    assert_eq!(me.status, 200);

    // Logout revokes the session: its refresh token stops working.
    let reply = logout(&app, &second["refresh_token"]).await;
    assert_eq!(reply.status, 204);
    let reply = refresh(&app, &second["refresh_token"]).await;
    reply.problem(401, "invalid_refresh_token");
}

async fn registration_conflicts_are_409(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "bob").await;
    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": "BOB", "email": "other@example.com", "password": PASSWORD}),
    )
    .await;
    reply.problem(409, "username_taken");
    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": "bobby", "email": "BOB@example.COM", "password": PASSWORD}),
    )
    .await;
    reply.problem(409, "email_taken");
    // Nothing was created by the refusals.
    let reply = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "bobby", "password": PASSWORD}),
    )
    .await;
    reply.problem(401, "invalid_credentials");
}

async fn registration_validation_names_each_field(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": "a!", "email": "nope", "password": "short"}),
    )
    .await;
    let mut errors = reply.field_errors();
    errors.sort();
    assert_eq!(
        errors,
        vec![
            ("email".into(), "invalid_format".into()),
            ("password".into(), "too_short".into()),
            ("username".into(), "too_short".into()),
        ]
    );
    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": "carol", "email": "carol@example.com", "password": "password1234"}),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("password".into(), "too_common".into())]
    );
    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": "carol", "email": "carol@example.com", "password": "x".repeat(129)}),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("password".into(), "too_long".into())]
    );
    // Privilege fields are not part of the body.
    let reply = post(&app, "/api/v1/auth/register", json!({"username": "carol", "email": "carol@example.com", "password": PASSWORD, "is_admin": true})).await;
    assert_eq!(
        reply.field_errors(),
        vec![("is_admin".into(), "unknown_field".into())]
    );
    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": "carol", "email": "carol@example.com"}),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("password".into(), "required".into())]
    );
    let reply = post(
        &app,
        "/api/v1/auth/register",
        json!({"username": 7, "email": "carol@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("username".into(), "invalid_type".into())]
    );
    let reply = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "", "password": ""}),
    )
    .await;
    let mut errors = reply.field_errors();
    errors.sort();
    assert_eq!(
        errors,
        vec![
            ("login".into(), "required".into()),
            ("password".into(), "required".into())
        ]
    );
}

async fn login_failures_do_not_reveal_accounts(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "dave").await;
    let wrong = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "dave", "password": "not the password at all"}),
    )
    .await;
    let unknown = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "nobody_here", "password": "not the password at all"}),
    )
    .await;
    let malformed = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "not a username!", "password": "not the password at all"}),
    )
    .await;
    for reply in [&wrong, &unknown, &malformed] {
        reply.problem(401, "invalid_credentials");
    }
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(&wrong.body), strip(&unknown.body));
    assert_eq!(strip(&wrong.body), strip(&malformed.body));
    assert_eq!(
        wrong.header("www-authenticate"),
        unknown.header("www-authenticate")
    );
}

async fn rotated_refresh_tokens_cannot_be_replayed(t: TestApp) {
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "erin").await;
    let first = login(&app, "erin").await;
    let second = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(second.status, 200);
    // Replaying the rotated token after the grace window: reuse is detected and the whole
    // session revoked…
    clock.advance(chrono::TimeDelta::seconds(6));
    let replay = refresh(&app, &first["refresh_token"]).await;
    replay.problem(401, "refresh_token_reused");
    // …so the successor no longer works either.
    let successor = refresh(&app, &second.body["refresh_token"]).await;
    successor.problem(401, "invalid_refresh_token");
    // Another session of the same user is untouched.
    let other = login(&app, "erin").await;
    let reply = refresh(&app, &other["refresh_token"]).await;
    assert_eq!(reply.status, 200);
    // Made-up tokens.
    for token in ["", "garbage", &"A".repeat(43)] {
        let reply = refresh(&app, &json!(token)).await;
        if token.is_empty() {
            assert_eq!(
                reply.field_errors(),
                vec![("refresh_token".into(), "required".into())]
            );
        } else {
            reply.problem(401, "invalid_refresh_token");
        }
    }
}

async fn logout_revokes_the_session(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "frank").await;
    let pair = login(&app, "frank").await;
    let reply = logout(&app, &pair["refresh_token"]).await;
    assert_eq!(reply.status, 204);
    assert!(reply.raw.is_empty());
    let reply = refresh(&app, &pair["refresh_token"]).await;
    reply.problem(401, "invalid_refresh_token");
    // The session's access token is refused too.
    get(&app, "/api/v1/auth/me", pair["access_token"].as_str())
        .await
        .problem(401, "invalid_token");
    // Logging out again, or with an unknown token, is not an error (RFC 7009).
    for token in [pair["refresh_token"].as_str().unwrap(), "unknown-token"] {
        let reply = logout(&app, &json!(token)).await;
        assert_eq!(reply.status, 204);
    }
    let reply = post(&app, "/api/v1/auth/logout", json!({})).await;
    assert_eq!(
        reply.field_errors(),
        vec![("refresh_token".into(), "required".into())]
    );
}

/// A clock an hour in the past, to mint tokens that have expired.
struct HourAgo;
impl Clock for HourAgo {
    fn now(&self) -> chrono::DateTime<Utc> {
        Utc::now() - TimeDelta::hours(1)
    }
}

fn foreign_token(secret: &str, clock: Arc<dyn Clock>, user: uuid::Uuid) -> String {
    let tokens = JwtTokens::new(
        JwtConfig {
            keys: KeyMaterial::Hmac(SecretSlice::from(secret.as_bytes().to_vec())),
            issuer: "http://127.0.0.1:8080".into(),
            audience: "moments".into(),
            ttl: TimeDelta::minutes(15),
            leeway: TimeDelta::seconds(30),
        },
        clock,
        Arc::new(UuidV7Generator),
    )
    .unwrap();
    let grant = AccessGrant {
        user_id: UserId::from_uuid(user),
        session_id: SessionId::from_uuid(uuid::Uuid::now_v7()),
        roles: vec![],
        permissions: vec![],
    };
    tokens.issue(&grant).unwrap().token.expose().to_owned()
}

async fn me_refuses_missing_bad_and_expired_tokens(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let user = register(&app, "grace").await;
    let id = uuid::Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();

    let reply = get(&app, "/api/v1/auth/me", None).await;
    reply.problem(401, "unauthenticated");
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let reply = send(
        &app,
        test::TestRequest::get()
            .uri("/api/v1/auth/me")
            .insert_header(("authorization", "Basic Z3JhY2U6eA==")),
    )
    .await;
    reply.problem(401, "unauthenticated");
    let reply = get(&app, "/api/v1/auth/me", Some("not.a.jwt")).await;
    reply.problem(401, "invalid_token");
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    // Signed with another secret.
    let forged = foreign_token(
        "another-secret-0123456789-abcdefghijklmnop",
        Arc::new(moments_domain::ports::SystemClock),
        id,
    );
    get(&app, "/api/v1/auth/me", Some(&forged))
        .await
        .problem(401, "invalid_token");
    // Signed with our secret, for our issuer and audience, but an hour old.
    let expired = foreign_token(SECRET, Arc::new(HourAgo), id);
    get(&app, "/api/v1/auth/me", Some(&expired))
        .await
        .problem(401, "token_expired");
    // Valid now, but for an account that does not exist.
    let orphan = foreign_token(
        SECRET,
        Arc::new(moments_domain::ports::SystemClock),
        uuid::Uuid::now_v7(),
    );
    get(&app, "/api/v1/auth/me", Some(&orphan))
        .await
        .problem(401, "invalid_token");
}
