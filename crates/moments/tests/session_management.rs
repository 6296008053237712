//! Session management and revocation on SQLite and PostgreSQL: listing and revoking sessions,
//! logout everywhere, password change, and access tokens refused after each, on the instance
//! that revoked and, within 5 s, on another instance sharing the database.

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use actix_web::test;
use common::*;
use serde_json::{Value, json};

on_both_stores!(
    last_use_is_recorded_at_most_once_a_minute,
    sessions_are_listed_and_revoked_one_by_one,
    logout_all_ends_every_session,
    password_change_keeps_only_the_current_session,
);

fn token(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

async fn last_use_is_recorded_at_most_once_a_minute(t: TestApp) {
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "lucy").await;
    let pair = login(&app, "lucy").await;
    let last_used = |reply: &Reply| {
        chrono::DateTime::parse_from_rfc3339(
            reply.body["items"][0]["last_used_at"].as_str().unwrap(),
        )
        .unwrap()
    };
    let first = last_used(&get(&app, "/api/v1/auth/sessions", Some(token(&pair))).await);
    clock.advance(chrono::TimeDelta::seconds(30));
    let within = last_used(&get(&app, "/api/v1/auth/sessions", Some(token(&pair))).await);
    assert_eq!(first, within, "a request 30 s later writes nothing");
    clock.advance(chrono::TimeDelta::seconds(31));
    get(&app, "/api/v1/auth/me", Some(token(&pair))).await;
    let after = last_used(&get(&app, "/api/v1/auth/sessions", Some(token(&pair))).await);
    assert!(
        after - first >= chrono::TimeDelta::seconds(61),
        "a minute later the use is recorded: {first} → {after}"
    );
}

async fn sessions_are_listed_and_revoked_one_by_one(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "mia").await;
    register(&app, "ned").await;
    let phone = post_from(&app, "phone/1.0", "mia").await;
    let laptop = post_from(&app, "laptop/2.0", "mia").await;
    let other = login(&app, "ned").await;

    let list = get(&app, "/api/v1/auth/sessions", Some(token(&phone))).await;
    assert_eq!(list.status, 200, "{:#}", list.body);
    assert_eq!(list.body["next_cursor"], Value::Null);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let current: Vec<_> = items.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["user_agent"], "phone/1.0");
    let laptop_id = items
        .iter()
        .find(|s| s["user_agent"] == "laptop/2.0")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for field in ["created_at", "last_used_at", "ip"] {
        assert!(current[0].get(field).is_some(), "{field}");
    }

    // Another user's session, a made-up id and a non-id are all simply not found.
    let ned_sessions = get(&app, "/api/v1/auth/sessions", Some(token(&other))).await;
    let ned_id = ned_sessions.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [
        ned_id.as_str(),
        "01a1fd00-0000-7000-8000-000000000000",
        "not-an-id",
    ] {
        let reply = send(
            &app,
            with_token(
                test::TestRequest::delete().uri(&format!("/api/v1/auth/sessions/{id}")),
                token(&phone),
            ),
        )
        .await;
        reply.problem(404, "not_found");
    }
    assert_eq!(
        get(&app, "/api/v1/auth/me", Some(token(&other)))
            .await
            .status,
        200
    );

    let reply = send(
        &app,
        with_token(
            test::TestRequest::delete().uri(&format!("/api/v1/auth/sessions/{laptop_id}")),
            token(&phone),
        ),
    )
    .await;
    assert_eq!(reply.status, 204);
    // The revoked session's tokens stop working; the caller's own still work.
    get(&app, "/api/v1/auth/me", Some(token(&laptop)))
        .await
        .problem(401, "invalid_token");
    refresh(&app, &laptop["refresh_token"])
        .await
        .problem(401, "invalid_refresh_token");
    assert_eq!(
        get(&app, "/api/v1/auth/me", Some(token(&phone)))
            .await
            .status,
        200
    );
    let list = get(&app, "/api/v1/auth/sessions", Some(token(&phone))).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    get(&app, "/api/v1/auth/sessions", None)
        .await
        .problem(401, "unauthenticated");
}

async fn logout_all_ends_every_session(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "olga").await;
    let a = login(&app, "olga").await;
    let b = login(&app, "olga").await;
    let reply = send(
        &app,
        with_token(
            test::TestRequest::post().uri("/api/v1/auth/logout-all"),
            token(&a),
        ),
    )
    .await;
    assert_eq!(reply.status, 204);
    for pair in [&a, &b] {
        get(&app, "/api/v1/auth/me", Some(token(pair)))
            .await
            .problem(401, "invalid_token");
        refresh(&app, &pair["refresh_token"])
            .await
            .problem(401, "invalid_refresh_token");
    }
    // Signing in again works.
    assert_eq!(
        get(
            &app,
            "/api/v1/auth/me",
            Some(token(&login(&app, "olga").await))
        )
        .await
        .status,
        200
    );
}

async fn password_change_keeps_only_the_current_session(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "pia").await;
    let here = login(&app, "pia").await;
    let elsewhere = login(&app, "pia").await;
    let change = |body: Value| {
        with_token(
            test::TestRequest::post().uri("/api/v1/auth/password"),
            token(&here),
        )
        .set_json(body)
    };
    let new_password = "a different long passphrase";
    let reply = send(
        &app,
        change(json!({"current_password": "wrong password here", "new_password": new_password})),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("current_password".into(), "incorrect".into())]
    );
    let reply = send(
        &app,
        change(json!({"current_password": PASSWORD, "new_password": "password1234"})),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("new_password".into(), "too_common".into())]
    );
    let reply = send(
        &app,
        change(json!({"current_password": PASSWORD, "new_password": new_password})),
    )
    .await;
    assert_eq!(reply.status, 204, "{:#}", reply.body);

    // Old password refused, new one accepted.
    post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "pia", "password": PASSWORD}),
    )
    .await
    .problem(401, "invalid_credentials");
    let reply = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "pia", "password": new_password}),
    )
    .await;
    assert_eq!(reply.status, 200);
    // The other session is gone; this one stays.
    get(&app, "/api/v1/auth/me", Some(token(&elsewhere)))
        .await
        .problem(401, "invalid_token");
    refresh(&app, &elsewhere["refresh_token"])
        .await
        .problem(401, "invalid_refresh_token");
    assert_eq!(
        get(&app, "/api/v1/auth/me", Some(token(&here)))
            .await
            .status,
        200
    );
    assert_eq!(refresh(&app, &here["refresh_token"]).await.status, 200);
}

/// Logs in with a given User-Agent.
async fn post_from<S, B>(app: &S, agent: &str, username: &str) -> Value
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let reply = send(
        app,
        test::TestRequest::post()
            .uri("/api/v1/auth/login")
            .insert_header(("user-agent", agent.to_owned()))
            .set_json(json!({"login": username, "password": PASSWORD})),
    )
    .await;
    assert_eq!(reply.status, 200);
    reply.body
}

/// Polls instance `b` with an access token until it is refused; returns how long that took.
async fn refused_within<S, B>(b: &S, access: &str) -> Duration
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let started = Instant::now();
    loop {
        let reply = get(b, "/api/v1/auth/me", Some(access)).await;
        if reply.status == 401 {
            reply.problem(401, "invalid_token");
            return started.elapsed();
        }
        assert_eq!(reply.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn revocations_reach_another_instance(postgres: bool) {
    let Some((a, b)) = twin_apps(postgres).await else {
        return;
    };
    let a = test::init_service(moments_http::app(a.state, a.http)).await;
    let b = test::init_service(moments_http::app(b.state, b.http)).await;
    register(&a, "quinn").await;

    // Revoke one session on A: refused on B.
    let s1 = login(&a, "quinn").await;
    let s2 = login(&a, "quinn").await;
    assert_eq!(
        get(&b, "/api/v1/auth/me", Some(token(&s1))).await.status,
        200
    );
    let list = get(&a, "/api/v1/auth/sessions", Some(token(&s2))).await;
    let s1_id = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = send(
        &a,
        with_token(
            test::TestRequest::delete().uri(&format!("/api/v1/auth/sessions/{s1_id}")),
            token(&s2),
        ),
    )
    .await;
    assert_eq!(reply.status, 204);
    let took = refused_within(&b, token(&s1)).await;
    eprintln!("session revoke reached the other instance in {took:?}");

    // Change the password on B: A refuses the other session.
    let fresh = login(&b, "quinn").await;
    let change = test::TestRequest::post()
        .uri("/api/v1/auth/password")
        .set_json(json!({"current_password": PASSWORD, "new_password": "another long passphrase"}));
    let reply = send(&b, with_token(change, token(&fresh))).await;
    assert_eq!(reply.status, 204);
    let took = refused_within(&a, token(&s2)).await;
    eprintln!("password change reached the other instance in {took:?}");

    // Logout everywhere on A: B refuses.
    let s3 = post(
        &a,
        "/api/v1/auth/login",
        json!({"login": "quinn", "password": "another long passphrase"}),
    )
    .await
    .body;
    assert_eq!(
        get(&b, "/api/v1/auth/me", Some(token(&s3))).await.status,
        200
    );
    let reply = send(
        &a,
        with_token(
            test::TestRequest::post().uri("/api/v1/auth/logout-all"),
            token(&s3),
        ),
    )
    .await;
    assert_eq!(reply.status, 204);
    let took = refused_within(&b, token(&s3)).await;
    eprintln!("logout-all reached the other instance in {took:?}");
}

#[actix_web::test]
async fn revocations_reach_another_instance_on_sqlite() {
    revocations_reach_another_instance(false).await;
}

#[actix_web::test]
async fn revocations_reach_another_instance_on_postgres() {
    revocations_reach_another_instance(true).await;
}
