//! The permission catalogue and the roles, on SQLite and PostgreSQL, with their access rules.

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use actix_web::test;
use common::*;
use moments_domain::account::{Actor, Credential};
use moments_domain::admin::RoleAssignmentError;
use moments_domain::authz::{Permission, RoleName, builtin_roles, catalogue};
use moments_domain::ids::{SessionId, UserId};
use serde_json::Value;

on_both_stores!(
    catalogue_is_listed_to_any_signed_in_user,
    roles_are_read_with_roles_read,
    role_changes_reach_existing_tokens,
    nobody_grants_a_permission_they_do_not_hold,
    custom_roles_are_managed_without_escalation,
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

fn id_of(user: &Value) -> String {
    user["id"].as_str().unwrap().to_owned()
}

async fn role_changes_reach_existing_tokens(t: TestApp) {
    create_admin(&t.state, "xena").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let yuri = register(&app, "yuri").await;
    let admin = login(&app, "xena").await;
    let token = login(&app, "yuri").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin_token = admin["access_token"].as_str().unwrap();
    let path = format!("/api/v1/users/{}/roles/admin", id_of(&yuri));
    get(&app, "/api/v1/roles", Some(&token))
        .await
        .problem(403, "forbidden");

    // Promotion: the token issued before it carries the new permissions.
    for _ in 0..2 {
        let reply = send(
            &app,
            with_token(test::TestRequest::put().uri(&path), admin_token),
        )
        .await;
        assert_eq!(reply.status, 204, "{:#}", reply.body);
    }
    assert_eq!(get(&app, "/api/v1/roles", Some(&token)).await.status, 200);
    let me = get(&app, "/api/v1/auth/me", Some(&token)).await;
    assert_eq!(me.body["roles"], serde_json::json!(["admin", "user"]));

    // Demotion: the same token loses them.
    for _ in 0..2 {
        let reply = send(
            &app,
            with_token(test::TestRequest::delete().uri(&path), admin_token),
        )
        .await;
        assert_eq!(reply.status, 204);
    }
    get(&app, "/api/v1/roles", Some(&token))
        .await
        .problem(403, "forbidden");

    // Unknown users and roles; and callers without roles:assign.
    let nobody = format!("/api/v1/users/{}/roles/admin", uuid::Uuid::now_v7());
    send(
        &app,
        with_token(test::TestRequest::put().uri(&nobody), admin_token),
    )
    .await
    .problem(404, "not_found");
    let ghost = format!("/api/v1/users/{}/roles/ghost", id_of(&yuri));
    send(
        &app,
        with_token(test::TestRequest::put().uri(&ghost), admin_token),
    )
    .await
    .problem(404, "not_found");
    send(
        &app,
        with_token(test::TestRequest::put().uri(&path), &token),
    )
    .await
    .problem(403, "forbidden");
    send(&app, test::TestRequest::put().uri(&path))
        .await
        .problem(401, "unauthenticated");
}

async fn nobody_grants_a_permission_they_do_not_hold(t: TestApp) {
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let zoe = register(&app, "zoe").await;
    let user = UserId::from_uuid(uuid::Uuid::parse_str(&id_of(&zoe)).unwrap());
    // A caller that may assign roles but holds nothing else.
    let assigner = Actor {
        user_id: UserId::from_uuid(uuid::Uuid::now_v7()),
        credential: Credential::Session(SessionId::from_uuid(uuid::Uuid::now_v7())),
        roles: vec![],
        permissions: vec![Permission::parse("roles:assign").unwrap()],
        client: Default::default(),
    };
    for role in ["admin", "moderator", "user"] {
        let role = RoleName::parse(role).unwrap();
        for result in [
            t.state.accounts.assign_role(&assigner, user, &role).await,
            t.state.accounts.remove_role(&assigner, user, &role).await,
        ] {
            assert!(
                matches!(result, Err(RoleAssignmentError::Escalation(_))),
                "{role}: {result:?}"
            );
        }
    }
    let roles = t.store.users().roles_of(user).await.unwrap();
    assert_eq!(
        roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["user"]
    );
}

/// Polls `app` with `token` on `GET /api/v1/roles` until it answers `status`.
async fn answers_within<S, B>(app: &S, token: &str, status: u16) -> Duration
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
        if get(app, "/api/v1/roles", Some(token)).await.status == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not {status} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn role_changes_reach_another_instance(postgres: bool) {
    let Some((a, b)) = twin_apps(postgres).await else {
        return;
    };
    create_admin(&a.state, "ada").await;
    let a = test::init_service(moments_http::app(a.state, a.http)).await;
    let b = test::init_service(moments_http::app(b.state, b.http)).await;
    let bob = register(&a, "bob_b").await;
    let token = login(&a, "bob_b").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = login(&a, "ada").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/users/{}/roles/admin", id_of(&bob));
    get(&b, "/api/v1/roles", Some(&token))
        .await
        .problem(403, "forbidden");

    let reply = send(&a, with_token(test::TestRequest::put().uri(&path), &admin)).await;
    assert_eq!(reply.status, 204);
    eprintln!(
        "promotion reached the other instance in {:?}",
        answers_within(&b, &token, 200).await
    );
    let reply = send(
        &a,
        with_token(test::TestRequest::delete().uri(&path), &admin),
    )
    .await;
    assert_eq!(reply.status, 204);
    eprintln!(
        "demotion reached the other instance in {:?}",
        answers_within(&b, &token, 403).await
    );
}

#[actix_web::test]
async fn role_changes_reach_another_instance_on_sqlite() {
    role_changes_reach_another_instance(false).await;
}

#[actix_web::test]
async fn role_changes_reach_another_instance_on_postgres() {
    role_changes_reach_another_instance(true).await;
}

async fn custom_roles_are_managed_without_escalation(t: TestApp) {
    create_admin(&t.state, "ava").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let admin = login(&app, "ava").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let xavier = register(&app, "xavier").await;
    let x_token = login(&app, "xavier").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let role_request = |method: actix_web::http::Method, path: &str, token: &str, body: Value| {
        with_token(test::TestRequest::default().method(method).uri(path), token).set_json(body)
    };
    let create = |token: &str, body: Value| {
        role_request(actix_web::http::Method::POST, "/api/v1/roles", token, body)
    };

    // Validation names each field.
    let reply = send(&app, create(&admin, serde_json::json!({"name": "Bad Name", "description": " ", "permissions": ["posts:fly", "nope"]}))).await;
    let mut errors = reply.field_errors();
    errors.sort();
    assert_eq!(
        errors,
        vec![
            ("description".into(), "required".into()),
            ("name".into(), "invalid_format".into()),
            ("permissions[0]".into(), "unknown_permission".into()),
            ("permissions[1]".into(), "invalid_format".into()),
        ]
    );

    // Create, conflict, and the permission it needs.
    let auditor = serde_json::json!({"name": "auditor", "description": "Reads roles", "permissions": ["roles:read", "roles:read"]});
    let reply = send(&app, create(&admin, auditor.clone())).await;
    assert_eq!(reply.status, 201, "{:#}", reply.body);
    assert_eq!(
        reply.body,
        serde_json::json!({"name": "auditor", "description": "Reads roles", "permissions": ["roles:read"], "builtin": false})
    );
    send(&app, create(&admin, auditor.clone()))
        .await
        .problem(409, "conflict");
    send(&app, create(&x_token, auditor))
        .await
        .problem(403, "forbidden");

    // Holders follow edits and deletion, with their existing tokens.
    let assign = format!("/api/v1/users/{}/roles/auditor", id_of(&xavier));
    assert_eq!(
        send(
            &app,
            with_token(test::TestRequest::put().uri(&assign), &admin)
        )
        .await
        .status,
        204
    );
    assert_eq!(get(&app, "/api/v1/roles", Some(&x_token)).await.status, 200);
    let patch = |body: Value| {
        role_request(
            actix_web::http::Method::PATCH,
            "/api/v1/roles/auditor",
            &admin,
            body,
        )
    };
    let reply = send(&app, patch(serde_json::json!({"permissions": []}))).await;
    assert_eq!(
        (reply.status.as_u16(), &reply.body["permissions"]),
        (200, &serde_json::json!([]))
    );
    get(&app, "/api/v1/roles", Some(&x_token))
        .await
        .problem(403, "forbidden");
    let reply = send(
        &app,
        patch(
            serde_json::json!({"permissions": ["roles:read"], "description": "Reads roles again"}),
        ),
    )
    .await;
    assert_eq!(reply.body["description"], "Reads roles again");
    assert_eq!(get(&app, "/api/v1/roles", Some(&x_token)).await.status, 200);
    let delete = |name: &str| {
        with_token(
            test::TestRequest::delete().uri(&format!("/api/v1/roles/{name}")),
            &admin,
        )
    };
    assert_eq!(send(&app, delete("auditor")).await.status, 204);
    get(&app, "/api/v1/roles", Some(&x_token))
        .await
        .problem(403, "forbidden");
    send(&app, delete("auditor"))
        .await
        .problem(404, "not_found");
    get(&app, "/api/v1/roles/auditor", Some(&admin))
        .await
        .problem(404, "not_found");

    // Built-in roles: not deleted, permissions fixed, description editable.
    send(&app, delete("admin")).await.problem(409, "conflict");
    let reply = send(
        &app,
        role_request(
            actix_web::http::Method::PATCH,
            "/api/v1/roles/user",
            &admin,
            serde_json::json!({"permissions": []}),
        ),
    )
    .await;
    reply.problem(409, "conflict");
    let reply = send(
        &app,
        role_request(
            actix_web::http::Method::PATCH,
            "/api/v1/roles/user",
            &admin,
            serde_json::json!({"description": "Everyone"}),
        ),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.body["description"].as_str()),
        (200, Some("Everyone"))
    );

    // A role writer cannot create or widen roles beyond what they hold.
    let writer = serde_json::json!({"name": "role-writer", "description": "Writes roles", "permissions": ["roles:write"]});
    assert_eq!(send(&app, create(&admin, writer)).await.status, 201);
    let assign = format!("/api/v1/users/{}/roles/role-writer", id_of(&xavier));
    assert_eq!(
        send(
            &app,
            with_token(test::TestRequest::put().uri(&assign), &admin)
        )
        .await
        .status,
        204
    );
    let wider = serde_json::json!({"name": "mod-like", "description": "Moderates", "permissions": ["posts:moderate"]});
    let refused = send(&app, create(&x_token, wider)).await;
    refused.problem(403, "forbidden");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("posts:moderate")
    );
    let same = serde_json::json!({"name": "writer-two", "description": "Writes roles", "permissions": ["roles:write"]});
    assert_eq!(send(&app, create(&x_token, same)).await.status, 201);
    let widen = role_request(
        actix_web::http::Method::PATCH,
        "/api/v1/roles/writer-two",
        &x_token,
        serde_json::json!({"permissions": ["roles:write", "audit:read"]}),
    );
    send(&app, widen).await.problem(403, "forbidden");
}
