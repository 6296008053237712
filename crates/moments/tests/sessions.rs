//! Refresh-token families on SQLite and PostgreSQL: the grace window for honest retries,
//! generations, concurrent refreshes, idle and absolute lifetimes. (Rotation and reuse after
//! the grace window: tests/accounts.rs.)

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use actix_web::test;
use chrono::TimeDelta;
use common::*;
use futures_util::future::join_all;
use serde_json::json;

on_both_stores!(
    grace_retry_returns_the_successor_already_issued,
    older_generations_are_never_honoured,
    concurrent_refreshes_make_one_successor,
    idle_and_absolute_lifetimes_are_enforced,
);

async fn grace_retry_returns_the_successor_already_issued(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "gina").await;
    let first = login(&app, "gina").await;
    let second = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(second.status, 200);
    // The client lost the answer and retries with the same token: it gets the same successor.
    let retry = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(retry.status, 200, "{:#}", retry.body);
    assert_eq!(retry.body["refresh_token"], second.body["refresh_token"]);
    assert_ne!(retry.body["access_token"], serde_json::Value::Null);
    // The family is intact: the successor rotates normally.
    let third = refresh(&app, &second.body["refresh_token"]).await;
    assert_eq!(third.status, 200);
    assert_ne!(third.body["refresh_token"], second.body["refresh_token"]);
}

async fn older_generations_are_never_honoured(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "iris").await;
    let first = login(&app, "iris").await;
    let second = refresh(&app, &first["refresh_token"]).await;
    let third = refresh(&app, &second.body["refresh_token"]).await;
    assert_eq!(third.status, 200);
    // Within the grace window, but `first` is two generations old.
    refresh(&app, &first["refresh_token"])
        .await
        .problem(401, "refresh_token_reused");
    refresh(&app, &third.body["refresh_token"])
        .await
        .problem(401, "invalid_refresh_token");
}

async fn concurrent_refreshes_make_one_successor(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "jack").await;
    let first = login(&app, "jack").await;
    let token = first["refresh_token"].clone();
    let replies = join_all((0..50).map(|_| refresh(&app, &token))).await;
    let mut successors = std::collections::HashSet::new();
    for reply in &replies {
        match reply.status.as_u16() {
            200 => {
                successors.insert(reply.body["refresh_token"].as_str().unwrap().to_owned());
            }
            _ => {
                reply.problem(401, "refresh_token_reused");
            }
        }
    }
    assert_eq!(successors.len(), 1, "exactly one successor was handed out");
    // That successor is live: the family was not revoked by the race.
    let successor = json!(successors.into_iter().next().unwrap());
    let next = refresh(&app, &successor).await;
    assert_eq!(next.status, 200, "{:#}", next.body);
}

async fn idle_and_absolute_lifetimes_are_enforced(t: TestApp) {
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "kate").await;

    // Idle: a refresh token unused for longer than its 7-day lifetime is dead.
    let idle = login(&app, "kate").await;
    clock.advance(TimeDelta::days(7) + TimeDelta::seconds(1));
    refresh(&app, &idle["refresh_token"])
        .await
        .problem(401, "invalid_refresh_token");

    // Absolute: refreshed every 6 days, the session still ends 30 days after sign-in.
    let mut token = login(&app, "kate").await["refresh_token"].clone();
    for _ in 0..4 {
        clock.advance(TimeDelta::days(6));
        let reply = refresh(&app, &token).await;
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        token = reply.body["refresh_token"].clone();
        // Never past the session's end.
        assert!(reply.body["refresh_expires_in"].as_i64().unwrap() <= 30 * 86_400);
    }
    clock.advance(TimeDelta::days(6) + TimeDelta::seconds(1));
    refresh(&app, &token)
        .await
        .problem(401, "invalid_refresh_token");
}
