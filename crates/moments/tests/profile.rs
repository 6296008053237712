//! `PATCH /api/v1/users/me` on SQLite and PostgreSQL: the display name and e-mail address
//! change; nothing else can, and trying is a 422 that changes nothing.

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use actix_web::test;
use common::*;
use serde_json::{Value, json};

on_both_stores!(
    the_display_name_and_address_change,
    privileged_fields_are_refused_and_change_nothing,
);

fn token(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

fn patch_me(token: &str, body: Value) -> test::TestRequest {
    with_token(
        test::TestRequest::patch()
            .uri("/api/v1/users/me")
            .set_json(body),
        token,
    )
}

async fn the_display_name_and_address_change(t: TestApp) {
    create_admin(&t.state, "watcher").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let jo = register(&app, "josephine").await;
    register(&app, "kitty").await;
    let pair = login(&app, "josephine").await;

    let named = send(
        &app,
        patch_me(token(&pair), json!({"display_name": "  Jo March "})),
    )
    .await;
    assert_eq!(named.status, 200, "{:#}", named.body);
    assert_eq!(named.body["display_name"], "Jo March");
    assert_eq!(named.body["email"], "josephine@example.com");
    assert_eq!(named.body["id"], jo["id"]);

    // Absent fields stay; null clears; a new address is stored as given.
    let moved = send(
        &app,
        patch_me(token(&pair), json!({"email": "Jo@Example.org"})),
    )
    .await;
    assert_eq!(moved.status, 200, "{:#}", moved.body);
    assert_eq!(moved.body["email"], "Jo@Example.org");
    assert_eq!(moved.body["display_name"], "Jo March");
    let cleared = send(&app, patch_me(token(&pair), json!({"display_name": null}))).await;
    assert_eq!(cleared.body["display_name"], Value::Null);
    let unchanged = send(&app, patch_me(token(&pair), json!({}))).await;
    assert_eq!(unchanged.status, 200);
    assert_eq!(unchanged.body["email"], "Jo@Example.org");
    // The new address signs in; the old one no longer does.
    let by_new = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "jo@example.org", "password": PASSWORD}),
    )
    .await;
    assert_eq!(by_new.status, 200);
    post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "josephine@example.com", "password": PASSWORD}),
    )
    .await
    .problem(401, "invalid_credentials");

    // Another account's address, in any case, is taken.
    send(
        &app,
        patch_me(token(&pair), json!({"email": "KITTY@example.com"})),
    )
    .await
    .problem(409, "email_taken");
    let bad = send(
        &app,
        patch_me(
            token(&pair),
            json!({"email": "not an address", "display_name": "x".repeat(65)}),
        ),
    )
    .await;
    let mut fields = bad.field_errors();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("display_name".to_owned(), "too_long".to_owned()),
            ("email".to_owned(), "invalid_format".to_owned()),
        ]
    );

    // Each change is in the audit log, with the previous address.
    let admin = login(&app, "watcher").await;
    let log = get(
        &app,
        &format!(
            "/api/v1/audit-events?type=user.updated&user_id={}",
            jo["id"].as_str().unwrap()
        ),
        Some(token(&admin)),
    )
    .await;
    let items = log.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{:#}", log.body);
    assert_eq!(
        items[1]["details"]["previous_email"],
        "josephine@example.com"
    );
    assert_eq!(items[1]["details"]["email"], "Jo@Example.org");
}

async fn privileged_fields_are_refused_and_change_nothing(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "lee").await;
    let pair = login(&app, "lee").await;
    for (field, value) in [
        ("roles", json!(["admin"])),
        ("is_admin", json!(true)),
        ("permissions", json!(["users:write"])),
        ("disabled", json!(false)),
        ("email_verified", json!(true)),
        ("username", json!("root")),
    ] {
        let reply = send(
            &app,
            patch_me(token(&pair), json!({"display_name": "Lee", field: value})),
        )
        .await;
        assert_eq!(
            reply.field_errors(),
            [(field.to_owned(), "unknown_field".to_owned())],
            "{field}"
        );
    }
    let me = get(&app, "/api/v1/auth/me", Some(token(&pair))).await;
    assert_eq!(me.body["roles"], json!(["user"]));
    assert_eq!(
        me.body["display_name"],
        Value::Null,
        "a refused request changes nothing"
    );
    assert_eq!(me.body["username"], "lee");

    // The route takes access tokens only.
    let key = send(
        &app,
        with_token(
            test::TestRequest::post()
                .uri("/api/v1/api-keys")
                .set_json(json!({"name": "k", "scopes": []})),
            token(&pair),
        ),
    )
    .await;
    let with_key = test::TestRequest::patch()
        .uri("/api/v1/users/me")
        .insert_header(("x-api-key", key.body["key"].as_str().unwrap().to_owned()))
        .set_json(json!({"display_name": "Key"}));
    send(&app, with_key).await.problem(401, "unauthenticated");
}
