//! API keys over HTTP on SQLite and PostgreSQL: created with some of the owner's permissions and
//! shown once, accepted as `X-API-Key` on routes that take keys, limited at each use by what the
//! owner holds then, and refused once revoked, expired, or their owner disabled.

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
    a_key_is_shown_once_and_authenticates_as_its_owner,
    scopes_are_limited_to_what_the_caller_holds,
    a_key_loses_what_its_owner_loses,
    keys_do_not_open_routes_that_take_access_tokens_only,
    revoked_expired_and_forged_keys_are_refused,
    disabling_the_owner_revokes_the_keys_for_good,
    last_use_is_recorded_at_most_once_a_minute,
);

fn token(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

async fn create_key<S, B>(app: &S, token: &str, body: Value) -> Reply
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let req = test::TestRequest::post()
        .uri("/api/v1/api-keys")
        .set_json(body);
    send(app, with_token(req, token)).await
}

fn with_key(req: test::TestRequest, key: &str) -> test::TestRequest {
    req.insert_header(("x-api-key", key.to_owned()))
}

async fn a_key_is_shown_once_and_authenticates_as_its_owner(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let amy = register(&app, "amy").await;
    let pair = login(&app, "amy").await;
    let created = create_key(
        &app,
        token(&pair),
        json!({"name": "  deploy bot ", "scopes": ["posts:write", "posts:write"]}),
    )
    .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let key = created.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("mk_") && key.len() == 46, "{key}");
    assert_eq!(created.body["prefix"], key[..15]);
    assert_eq!(created.body["name"], "deploy bot");
    assert_eq!(created.body["scopes"], json!(["posts:write"]));
    assert_eq!(created.body["expires_at"], Value::Null);
    assert_eq!(created.body["last_used_at"], Value::Null);

    let listed = get(&app, "/api/v1/api-keys", Some(token(&pair))).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["next_cursor"], Value::Null);
    let item = &listed.body["items"][0];
    assert_eq!(item["id"], created.body["id"]);
    assert!(item.get("key").is_none(), "the secret is shown once only");
    assert!(!String::from_utf8_lossy(&listed.raw).contains(&key[15..]));

    // The key authenticates as its owner on routes that take keys, under both prefixes.
    for path in ["/api/v1/auth/me", "/api/auth/me"] {
        let me = send(&app, with_key(test::TestRequest::get().uri(path), &key)).await;
        assert_eq!(me.status, 200, "{:#}", me.body);
        assert_eq!(me.body["id"], amy["id"]);
    }
}

async fn scopes_are_limited_to_what_the_caller_holds(t: TestApp) {
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "bea").await;
    let pair = login(&app, "bea").await;
    let beyond = create_key(
        &app,
        token(&pair),
        json!({"name": "greedy", "scopes": ["posts:write", "users:read"]}),
    )
    .await;
    beyond.problem(403, "forbidden");
    assert!(
        beyond.body["detail"]
            .as_str()
            .unwrap()
            .contains("users:read")
    );

    let bad = create_key(
        &app,
        token(&pair),
        json!({"name": "", "scopes": ["posts:fly", "nonsense"]}),
    )
    .await;
    assert_eq!(
        bad.field_errors(),
        [
            ("name".to_owned(), "required".to_owned()),
            ("scopes[0]".to_owned(), "unknown_permission".to_owned()),
            ("scopes[1]".to_owned(), "invalid_format".to_owned()),
        ]
    );
    let past = (moments_domain::ports::Clock::now(clock.as_ref()) - chrono::TimeDelta::seconds(1))
        .to_rfc3339();
    let expired = create_key(
        &app,
        token(&pair),
        json!({"name": "old", "scopes": [], "expires_at": past}),
    )
    .await;
    assert_eq!(
        expired.field_errors(),
        [("expires_at".to_owned(), "in_past".to_owned())]
    );
    let garbled = create_key(
        &app,
        token(&pair),
        json!({"name": "x", "scopes": [], "expires_at": "tomorrow"}),
    )
    .await;
    assert_eq!(garbled.field_errors()[0].0, "expires_at");
    let extra = create_key(
        &app,
        token(&pair),
        json!({"name": "x", "scopes": [], "permissions": ["users:read"]}),
    )
    .await;
    assert_eq!(
        extra.field_errors(),
        [("permissions".to_owned(), "unknown_field".to_owned())]
    );
    let keys = get(&app, "/api/v1/api-keys", Some(token(&pair))).await;
    assert_eq!(keys.body["items"], json!([]), "no refused key was stored");
}

async fn a_key_loses_what_its_owner_loses(t: TestApp) {
    create_admin(&t.state, "chief").await;
    create_admin(&t.state, "deputy").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let deputy = login(&app, "deputy").await;
    let created = create_key(
        &app,
        token(&deputy),
        json!({"name": "ops", "scopes": ["roles:read", "users:read"]}),
    )
    .await;
    let key = created.body["key"].as_str().unwrap().to_owned();
    let roles = || with_key(test::TestRequest::get().uri("/api/v1/roles"), &key);
    assert_eq!(send(&app, roles()).await.status, 200);
    // A scope the key lacks is refused even though the owner holds it.
    let write = with_key(test::TestRequest::post().uri("/api/v1/roles"), &key)
        .set_json(json!({"name": "x-role", "description": "x", "permissions": []}));
    send(&app, write).await.problem(403, "forbidden");

    // The deputy is demoted: the key loses roles:read at its next use.
    let chief = login(&app, "chief").await;
    let deputy_id = get(&app, "/api/v1/auth/me", Some(token(&deputy)))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let demote = test::TestRequest::delete().uri(&format!("/api/v1/users/{deputy_id}/roles/admin"));
    assert_eq!(
        send(&app, with_token(demote, token(&chief))).await.status,
        204
    );
    send(&app, roles()).await.problem(403, "forbidden");
    // Given moderator (users:read but not roles:read), the key has users:read again only.
    let promote =
        test::TestRequest::put().uri(&format!("/api/v1/users/{deputy_id}/roles/moderator"));
    assert_eq!(
        send(&app, with_token(promote, token(&chief))).await.status,
        204
    );
    send(&app, roles()).await.problem(403, "forbidden");
    let users = with_key(test::TestRequest::get().uri("/api/v1/users"), &key);
    assert_eq!(send(&app, users).await.status, 200);
}

async fn keys_do_not_open_routes_that_take_access_tokens_only(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "cal").await;
    let pair = login(&app, "cal").await;
    let key = create_key(
        &app,
        token(&pair),
        json!({"name": "k", "scopes": ["posts:write"]}),
    )
    .await
    .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for req in [
        test::TestRequest::get().uri("/api/v1/auth/sessions"),
        test::TestRequest::get().uri("/api/v1/api-keys"),
        test::TestRequest::post()
            .uri("/api/v1/api-keys")
            .set_json(json!({"name": "child", "scopes": []})),
        test::TestRequest::post().uri("/api/v1/auth/logout-all"),
        test::TestRequest::post()
            .uri("/api/v1/auth/password")
            .set_json(
                json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
            ),
    ] {
        let reply = send(&app, with_key(req, &key)).await;
        reply.problem(401, "unauthenticated");
        assert!(
            reply.body["detail"]
                .as_str()
                .unwrap()
                .contains("not an API key")
        );
    }
    // The bearer token wins when both are sent.
    let both = with_token(
        with_key(
            test::TestRequest::get().uri("/api/v1/auth/sessions"),
            "mk_forged",
        ),
        token(&pair),
    );
    assert_eq!(send(&app, both).await.status, 200);
}

async fn revoked_expired_and_forged_keys_are_refused(t: TestApp) {
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "dee").await;
    register(&app, "eve").await;
    let dee = login(&app, "dee").await;
    let me = |key: &str| with_key(test::TestRequest::get().uri("/api/v1/auth/me"), key);

    let expires = (moments_domain::ports::Clock::now(clock.as_ref()) + chrono::TimeDelta::hours(1))
        .to_rfc3339();
    let short = create_key(
        &app,
        token(&dee),
        json!({"name": "short", "scopes": [], "expires_at": expires}),
    )
    .await;
    let short_key = short.body["key"].as_str().unwrap().to_owned();
    assert_eq!(send(&app, me(&short_key)).await.status, 200);
    clock.advance(chrono::TimeDelta::hours(1));
    send(&app, me(&short_key))
        .await
        .problem(401, "token_expired");

    // An hour on, the access tokens have expired too.
    let dee = login(&app, "dee").await;
    let eve = login(&app, "eve").await;
    let created = create_key(&app, token(&dee), json!({"name": "k", "scopes": []})).await;
    let key = created.body["key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    // Same prefix, different secret; wrong shapes; unknown prefixes.
    let mut forged = key.clone();
    let last = if key.ends_with('A') { "B" } else { "A" };
    forged.replace_range(key.len() - 1.., last);
    for bad in [
        forged.as_str(),
        &key[..key.len() - 1],
        "mk_",
        "not-a-key",
        "mk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        send(&app, me(bad)).await.problem(401, "invalid_token");
    }

    // Only the owner revokes it; then it stops working.
    let path = format!("/api/v1/api-keys/{id}");
    let by_eve = with_token(test::TestRequest::delete().uri(&path), token(&eve));
    send(&app, by_eve).await.problem(404, "not_found");
    assert_eq!(send(&app, me(&key)).await.status, 200);
    let by_dee = || with_token(test::TestRequest::delete().uri(&path), token(&dee));
    assert_eq!(send(&app, by_dee()).await.status, 204);
    send(&app, me(&key)).await.problem(401, "invalid_token");
    send(&app, by_dee()).await.problem(404, "not_found");
    let nonsense = with_token(
        test::TestRequest::delete().uri("/api/v1/api-keys/not-a-uuid"),
        token(&dee),
    );
    send(&app, nonsense).await.problem(404, "not_found");
}

async fn disabling_the_owner_revokes_the_keys_for_good(t: TestApp) {
    create_admin(&t.state, "boss").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let fay = register(&app, "fay").await;
    let pair = login(&app, "fay").await;
    let key = create_key(&app, token(&pair), json!({"name": "k", "scopes": []}))
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = || with_key(test::TestRequest::get().uri("/api/v1/auth/me"), &key);
    assert_eq!(send(&app, me()).await.status, 200);
    let boss = login(&app, "boss").await;
    let path = format!("/api/v1/users/{}", fay["id"].as_str().unwrap());
    let set = |disabled: bool| {
        with_token(
            test::TestRequest::patch()
                .uri(&path)
                .set_json(json!({ "disabled": disabled })),
            token(&boss),
        )
    };
    assert_eq!(send(&app, set(true)).await.status, 200);
    send(&app, me()).await.problem(401, "invalid_token");
    assert_eq!(send(&app, set(false)).await.status, 200);
    send(&app, me()).await.problem(401, "invalid_token");
    let again = login(&app, "fay").await;
    let keys = get(&app, "/api/v1/api-keys", Some(token(&again))).await;
    assert_eq!(keys.body["items"], json!([]), "revoked keys are not listed");
}

async fn last_use_is_recorded_at_most_once_a_minute(t: TestApp) {
    let clock = t.clock.clone();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "gus").await;
    let pair = login(&app, "gus").await;
    let key = create_key(&app, token(&pair), json!({"name": "k", "scopes": []}))
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let last_used = async || {
        let keys = get(&app, "/api/v1/api-keys", Some(token(&pair))).await;
        keys.body["items"][0]["last_used_at"].clone()
    };
    assert_eq!(last_used().await, Value::Null);
    let me = || with_key(test::TestRequest::get().uri("/api/v1/auth/me"), &key);
    send(&app, me()).await;
    let first = last_used().await;
    assert!(first.is_string(), "{first}");
    clock.advance(chrono::TimeDelta::seconds(30));
    send(&app, me()).await;
    assert_eq!(last_used().await, first, "written again within a minute");
    clock.advance(chrono::TimeDelta::seconds(31));
    send(&app, me()).await;
    let later = last_used().await;
    assert_ne!(later, first);
    let (first, later) = (
        chrono::DateTime::parse_from_rfc3339(first.as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(later.as_str().unwrap()).unwrap(),
    );
    assert!(later - first >= chrono::TimeDelta::seconds(61));
}

/// With `MOMENTS_API_KEY_SECRET` set, keys survive a rotation of the token secret; without it,
/// they are hashed with material derived from the token secret and stop working with it.
#[actix_web::test]
async fn keys_survive_a_token_secret_rotation_only_with_their_own_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key_secret = (
        "MOMENTS_API_KEY_SECRET",
        "api-key-secret-0123456789-abcdefghijklmnop".to_owned(),
    );
    let old = ("MOMENTS_JWT_SECRET", SECRET.to_owned());
    let new = (
        "MOMENTS_JWT_SECRET",
        "rotated-secret-9876543210-zyxwvutsrqponmlkjihg".to_owned(),
    );
    let me = |key: &str| with_key(test::TestRequest::get().uri("/api/v1/auth/me"), key);
    let mint = async |settings: &[(&str, String)], username: &str| {
        let t = app_in(dir.path(), settings).await;
        let app = test::init_service(moments_http::app(t.state, t.http)).await;
        register(&app, username).await;
        let pair = login(&app, username).await;
        let created = create_key(&app, token(&pair), json!({"name": "k", "scopes": []})).await;
        created.body["key"].as_str().unwrap().to_owned()
    };
    let kept = mint(&[old.clone(), key_secret.clone()], "kept_key").await;
    let lost = mint(std::slice::from_ref(&old), "lost_key").await;

    let t = app_in(dir.path(), &[new.clone(), key_secret.clone()]).await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    assert_eq!(send(&app, me(&kept)).await.status, 200);
    send(&app, me(&lost)).await.problem(401, "invalid_token");
}
