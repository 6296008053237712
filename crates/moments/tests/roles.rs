//! The permission catalogue and the roles, on SQLite and PostgreSQL, with their access rules.

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use actix_web::test;
use common::*;
use moments_domain::authz::{builtin_roles, catalogue};

on_both_stores!(
    catalogue_is_listed_to_any_signed_in_user,
    roles_are_read_with_roles_read
);

async fn catalogue_is_listed_to_any_signed_in_user(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    get(&app, "/api/v1/permissions", None)
        .await
        .problem(401, "unauthenticated");
    register(&app, "uma").await;
    let pair = login(&app, "uma").await;
    let reply = get(&app, "/api/v1/permissions", pair["access_token"].as_str()).await;
    assert_eq!(reply.status, 200);
    let items = reply.body["items"].as_array().unwrap();
    assert_eq!(items.len(), catalogue().len());
    for (item, entry) in items.iter().zip(catalogue()) {
        assert_eq!(item["name"], entry.name);
        assert_eq!(item["description"], entry.description);
    }
    assert!(reply.body["next_cursor"].is_null());
}

async fn roles_are_read_with_roles_read(t: TestApp) {
    create_admin(&t.state, "vera").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    register(&app, "walt").await;
    let user = login(&app, "walt").await;
    let admin = login(&app, "vera").await;

    for path in ["/api/v1/roles", "/api/v1/roles/admin"] {
        get(&app, path, None).await.problem(401, "unauthenticated");
        let refused = get(&app, path, user["access_token"].as_str()).await;
        refused.problem(403, "forbidden");
        assert!(
            refused.body["detail"]
                .as_str()
                .unwrap()
                .contains("roles:read")
        );
    }

    let reply = get(&app, "/api/v1/roles", admin["access_token"].as_str()).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    let names: Vec<&str> = reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "moderator", "user"]);
    let moderator = get(
        &app,
        "/api/v1/roles/moderator",
        admin["access_token"].as_str(),
    )
    .await;
    assert_eq!(moderator.status, 200);
    let expected = builtin_roles()
        .into_iter()
        .find(|r| r.name.as_str() == "moderator")
        .unwrap();
    let permissions: Vec<&str> = moderator.body["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        permissions,
        expected
            .permissions
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
    );
    assert_eq!(moderator.body["builtin"], true);
    for missing in ["nobody", "Not%20A%20Role"] {
        get(
            &app,
            &format!("/api/v1/roles/{missing}"),
            admin["access_token"].as_str(),
        )
        .await
        .problem(404, "not_found");
    }
}
