//! Administration of accounts on SQLite and PostgreSQL: disabling (which ends every session)
//! and enabling, with the rules on who may do it.

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
    disabling_ends_every_session_until_enabled,
    only_permitted_callers_disable_accounts,
    accounts_are_listed_and_searched_in_sealed_pages,
    public_profiles_show_only_public_fields,
);

fn patch_user(id: &str, token: &str, body: Value) -> test::TestRequest {
    with_token(
        test::TestRequest::patch().uri(&format!("/api/v1/users/{id}")),
        token,
    )
    .set_json(body)
}

async fn disabling_ends_every_session_until_enabled(t: TestApp) {
    create_admin(&t.state, "adam").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let admin = login(&app, "adam").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let zed = register(&app, "zed").await;
    let id = zed["id"].as_str().unwrap();
    let session = login(&app, "zed").await;

    let reply = send(&app, patch_user(id, &admin, json!({"disabled": true}))).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    assert_eq!(reply.body["disabled"], true);
    get(&app, "/api/v1/auth/me", session["access_token"].as_str())
        .await
        .problem(401, "invalid_token");
    refresh(&app, &session["refresh_token"])
        .await
        .problem(401, "invalid_refresh_token");
    // The right password learns the account is disabled; a wrong one learns nothing.
    post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "zed", "password": PASSWORD}),
    )
    .await
    .problem(403, "account_disabled");
    post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "zed", "password": "a wrong password"}),
    )
    .await
    .problem(401, "invalid_credentials");

    let reply = send(&app, patch_user(id, &admin, json!({"disabled": false}))).await;
    assert_eq!(reply.body["disabled"], false);
    // The old sessions stay revoked; signing in again works.
    get(&app, "/api/v1/auth/me", session["access_token"].as_str())
        .await
        .problem(401, "invalid_token");
    refresh(&app, &session["refresh_token"])
        .await
        .problem(401, "invalid_refresh_token");
    assert_eq!(
        get(
            &app,
            "/api/v1/auth/me",
            login(&app, "zed").await["access_token"].as_str()
        )
        .await
        .status,
        200
    );
}

async fn only_permitted_callers_disable_accounts(t: TestApp) {
    create_admin(&t.state, "alma").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let admin_pair = login(&app, "alma").await;
    let admin = admin_pair["access_token"].as_str().unwrap().to_owned();
    let me = get(&app, "/api/v1/auth/me", Some(&admin)).await;
    let admin_id = me.body["id"].as_str().unwrap().to_owned();
    let plain = register(&app, "plain").await;
    let plain_token = login(&app, "plain").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let plain_id = plain["id"].as_str().unwrap();

    send(
        &app,
        patch_user(&admin_id, &admin, json!({"disabled": true})),
    )
    .await
    .problem(409, "conflict");
    send(
        &app,
        patch_user(plain_id, &plain_token, json!({"disabled": true})),
    )
    .await
    .problem(403, "forbidden");
    send(
        &app,
        test::TestRequest::patch()
            .uri(&format!("/api/v1/users/{plain_id}"))
            .set_json(json!({"disabled": true})),
    )
    .await
    .problem(401, "unauthenticated");
    let nobody = uuid::Uuid::now_v7().to_string();
    send(&app, patch_user(&nobody, &admin, json!({"disabled": true})))
        .await
        .problem(404, "not_found");
    send(
        &app,
        patch_user("not-an-id", &admin, json!({"disabled": true})),
    )
    .await
    .problem(404, "not_found");
    let reply = send(
        &app,
        patch_user(
            plain_id,
            &admin,
            json!({"disabled": true, "roles": ["admin"]}),
        ),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("roles".into(), "unknown_field".into())]
    );
    let reply = send(
        &app,
        patch_user(plain_id, &admin, json!({"disabled": "yes"})),
    )
    .await;
    assert_eq!(
        reply.field_errors(),
        vec![("disabled".into(), "invalid_type".into())]
    );

    // A user administrator who holds less than the administrator cannot disable them.
    let role = json!({"name": "user-admin", "description": "Disables accounts", "permissions": ["users:write"]});
    let created = send(
        &app,
        with_token(test::TestRequest::post().uri("/api/v1/roles"), &admin).set_json(role),
    )
    .await;
    assert_eq!(created.status, 201);
    let assign = format!("/api/v1/users/{plain_id}/roles/user-admin");
    assert_eq!(
        send(
            &app,
            with_token(test::TestRequest::put().uri(&assign), &admin)
        )
        .await
        .status,
        204
    );
    let refused = send(
        &app,
        patch_user(&admin_id, &plain_token, json!({"disabled": true})),
    )
    .await;
    refused.problem(403, "forbidden");
    let other = register(&app, "other_one").await;
    let reply = send(
        &app,
        patch_user(
            other["id"].as_str().unwrap(),
            &plain_token,
            json!({"disabled": true}),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    // The administrator was not touched.
    assert_eq!(get(&app, "/api/v1/auth/me", Some(&admin)).await.status, 200);
}

async fn accounts_are_listed_and_searched_in_sealed_pages(t: TestApp) {
    create_admin(&t.state, "anna").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let admin = login(&app, "anna").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut names: Vec<String> = (0..25).map(|i| format!("list_{i:02}")).collect();
    for name in &names {
        register(&app, name).await;
    }
    register(&app, "listless").await; // matches "list" but not "list_"
    names.sort();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?q=LIST_&limit=10&cursor={c}"),
            None => "/api/v1/users?q=LIST_&limit=10".to_owned(),
        };
        let reply = get(&app, &path, Some(&admin)).await;
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        pages += 1;
        for item in reply.body["items"].as_array().unwrap() {
            assert!(item["email"].is_string() && item["disabled"] == false);
            seen.push(item["username"].as_str().unwrap().to_owned());
        }
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, names, "every match once, no other account");

    // By e-mail prefix, any case.
    let reply = get(&app, "/api/v1/users?q=LIST_03%40EX", Some(&admin)).await;
    let found: Vec<&str> = reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["list_03"]);

    // Bad limits and cursors name their field.
    for (query, field, code) in [
        ("limit=0", "limit", "out_of_range"),
        ("limit=101", "limit", "out_of_range"),
        ("limit=ten", "limit", "invalid_type"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor", "invalid_cursor"),
    ] {
        let reply = get(&app, &format!("/api/v1/users?{query}"), Some(&admin)).await;
        assert_eq!(
            reply.field_errors(),
            vec![(field.to_owned(), code.to_owned())],
            "{query}"
        );
    }
    let first = get(&app, "/api/v1/users?q=list_&limit=2", Some(&admin)).await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let mut tampered = cursor.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for path in [
        format!("/api/v1/users?q=list_&cursor={tampered}"),
        format!("/api/v1/users?q=anna&cursor={cursor}"),
        format!("/api/v1/users?cursor={}", &cursor[..cursor.len() - 3]),
    ] {
        let reply = get(&app, &path, Some(&admin)).await;
        assert_eq!(
            reply.field_errors(),
            vec![("cursor".to_owned(), "invalid_cursor".to_owned())],
            "{path}"
        );
    }

    // Access: users:read only.
    get(&app, "/api/v1/users", None)
        .await
        .problem(401, "unauthenticated");
    let plain = login(&app, "list_00").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    get(&app, "/api/v1/users", Some(&plain))
        .await
        .problem(403, "forbidden");
}

async fn public_profiles_show_only_public_fields(t: TestApp) {
    create_admin(&t.state, "amos").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let pia = register(&app, "pia_public").await;
    let id = pia["id"].as_str().unwrap();
    let reply = get(&app, &format!("/api/v1/users/{id}"), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({"id": id, "username": "pia_public", "display_name": null, "created_at": pia["created_at"]})
    );
    for missing in [uuid::Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        get(&app, &format!("/api/v1/users/{missing}"), None)
            .await
            .problem(404, "not_found");
    }
    // A disabled account is not shown.
    let admin = login(&app, "amos").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        send(&app, patch_user(id, &admin, json!({"disabled": true})))
            .await
            .status,
        200
    );
    get(&app, &format!("/api/v1/users/{id}"), None)
        .await
        .problem(404, "not_found");
}
