//! The audit log over HTTP on SQLite and PostgreSQL: every security action leaves one event
//! with its actor, target, address and user agent; a refused change leaves none; the log pages
//! newest first past 10 000 events, filtered by user and type.

#![expect(
    clippy::unwrap_used,
    reason = "test cases run from generated #[test] functions"
)]

#[macro_use]
mod common;

use actix_web::test;
use common::*;
use moments_domain::audit::{AuditEvent, AuditKind};
use moments_domain::ids::{AuditEventId, UserId};
use moments_domain::session::ClientInfo;
use serde_json::{Value, json};

on_both_stores!(
    every_security_action_is_recorded,
    refused_changes_record_nothing,
    the_log_pages_past_ten_thousand_events,
    filters_and_cursors_are_validated,
);

fn token(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

const PEER: &str = "198.51.100.23:40000";

/// A request from a known address and user agent.
fn from_client(req: test::TestRequest) -> test::TestRequest {
    req.peer_addr(PEER.parse().unwrap())
        .insert_header(("user-agent", "audit-test/1.0"))
}

async fn events<S, B>(app: &S, admin: &str, query: &str) -> Vec<Value>
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let reply = get(
        app,
        &format!("/api/v1/audit-events?limit=100{query}"),
        Some(admin),
    )
    .await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    reply.body["items"].as_array().unwrap().clone()
}

async fn every_security_action_is_recorded(t: TestApp) {
    create_admin(&t.state, "auditor").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let hal = register(&app, "hal").await;
    let hal_id = hal["id"].as_str().unwrap().to_owned();
    let call = async |req: test::TestRequest, token: &str| {
        send(&app, from_client(with_token(req, token))).await
    };
    let sign_in = async |login: &str, password: &str| {
        send(
            &app,
            from_client(
                test::TestRequest::post()
                    .uri("/api/v1/auth/login")
                    .set_json(json!({"login": login, "password": password})),
            ),
        )
        .await
    };

    // Sign-ins: a success, a wrong password, an unknown account.
    let first = sign_in("hal", PASSWORD).await.body;
    assert_eq!(sign_in("hal", "wrong password here").await.status, 401);
    assert_eq!(sign_in("nobody_here", PASSWORD).await.status, 401);
    // Sessions: a second sign-in revoked by its owner, a refresh-token replay, logout.
    assert_eq!(sign_in("hal", PASSWORD).await.status, 200);
    let sessions = call(
        test::TestRequest::get().uri("/api/v1/auth/sessions"),
        token(&first),
    )
    .await;
    let second_id = sessions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = test::TestRequest::delete().uri(&format!("/api/v1/auth/sessions/{second_id}"));
    assert_eq!(call(revoke, token(&first)).await.status, 204);
    let third = sign_in("hal", PASSWORD).await.body;
    let rotated = refresh(&app, &third["refresh_token"]).await;
    assert_eq!(rotated.status, 200);
    // Rotated twice, the first token is two generations old: no grace, it is reuse.
    let rotated_again = refresh(&app, &rotated.body["refresh_token"]).await;
    assert_eq!(rotated_again.status, 200);
    refresh(&app, &third["refresh_token"])
        .await
        .problem(401, "refresh_token_reused");
    let fourth = sign_in("hal", PASSWORD).await.body;
    let out = from_client(
        test::TestRequest::post()
            .uri("/api/v1/auth/logout")
            .set_json(json!({"refresh_token": fourth["refresh_token"]})),
    );
    assert_eq!(send(&app, out).await.status, 204);
    // Password change, a key created and revoked, logout everywhere.
    let change = test::TestRequest::post()
        .uri("/api/v1/auth/password")
        .set_json(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}));
    assert_eq!(call(change, token(&first)).await.status, 204);
    let key = call(
        test::TestRequest::post()
            .uri("/api/v1/api-keys")
            .set_json(json!({"name": "audit", "scopes": ["posts:write"]})),
        token(&first),
    )
    .await;
    assert_eq!(key.status, 201);
    let key_id = key.body["id"].as_str().unwrap().to_owned();
    let revoke_key = test::TestRequest::delete().uri(&format!("/api/v1/api-keys/{key_id}"));
    assert_eq!(call(revoke_key, token(&first)).await.status, 204);
    let profile = test::TestRequest::patch()
        .uri("/api/v1/users/me")
        .set_json(json!({"display_name": "Hal"}));
    assert_eq!(call(profile, token(&first)).await.status, 200);
    let everywhere = test::TestRequest::post().uri("/api/v1/auth/logout-all");
    assert_eq!(call(everywhere, token(&first)).await.status, 204);

    // Administration: roles and accounts.
    let admin = login(&app, "auditor").await;
    let admin_token = token(&admin).to_owned();
    let admin_id = get(&app, "/api/v1/auth/me", Some(&admin_token)).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role_body =
        json!({"name": "auditor-role", "description": "Reads", "permissions": ["audit:read"]});
    let create = test::TestRequest::post()
        .uri("/api/v1/roles")
        .set_json(role_body);
    assert_eq!(call(create, &admin_token).await.status, 201);
    let update = test::TestRequest::patch()
        .uri("/api/v1/roles/auditor-role")
        .set_json(json!({"permissions": ["audit:read", "users:read"]}));
    assert_eq!(call(update, &admin_token).await.status, 200);
    let role_path = format!("/api/v1/users/{hal_id}/roles/auditor-role");
    assert_eq!(
        call(test::TestRequest::put().uri(&role_path), &admin_token)
            .await
            .status,
        204
    );
    assert_eq!(
        call(test::TestRequest::delete().uri(&role_path), &admin_token)
            .await
            .status,
        204
    );
    let delete = test::TestRequest::delete().uri("/api/v1/roles/auditor-role");
    assert_eq!(call(delete, &admin_token).await.status, 204);
    let user_path = format!("/api/v1/users/{hal_id}");
    for disabled in [true, false] {
        let set = test::TestRequest::patch()
            .uri(&user_path)
            .set_json(json!({ "disabled": disabled }));
        assert_eq!(call(set, &admin_token).await.status, 200);
    }
    // The right password for a disabled account is a failure too (re-disable first).
    let set = test::TestRequest::patch()
        .uri(&user_path)
        .set_json(json!({ "disabled": true }));
    assert_eq!(call(set, &admin_token).await.status, 200);
    assert_eq!(sign_in("hal", "a brand new passphrase").await.status, 403);

    let log = events(&app, &admin_token, "").await;
    let mut kinds: Vec<&str> = log.iter().map(|e| e["type"].as_str().unwrap()).collect();
    kinds.reverse();
    assert_eq!(
        kinds,
        [
            "login.succeeded",
            "login.failed",
            "login.failed",
            "login.succeeded",
            "session.revoked",
            "login.succeeded",
            "refresh.reused",
            "login.succeeded",
            "logout",
            "password.changed",
            "api_key.created",
            "api_key.revoked",
            "user.updated",
            "logout",
            "login.succeeded",
            "role.created",
            "role.updated",
            "role.assigned",
            "role.removed",
            "role.deleted",
            "user.disabled",
            "user.enabled",
            "user.disabled",
            "login.failed",
        ]
    );
    // Every event type of the API guide so far appears (the OAuth ones need a provider: their
    // events are checked in tests/oauth.rs), and each has the shape of the guide.
    let with_provider = [AuditKind::OAuthLinked, AuditKind::OAuthUnlinked];
    for kind in AuditKind::ALL.iter().filter(|k| !with_provider.contains(k)) {
        assert!(kinds.contains(&kind.as_str()), "no {kind} event");
    }
    for event in &log {
        for field in [
            "id",
            "type",
            "actor_id",
            "target_id",
            "ip",
            "user_agent",
            "created_at",
            "details",
        ] {
            assert!(event.get(field).is_some(), "{field} missing: {event:#}");
        }
        assert!(event["details"].is_object());
    }
    let find = |kind: &str| log.iter().find(|e| e["type"] == kind).unwrap();
    let assigned = find("role.assigned");
    assert_eq!(assigned["actor_id"], admin_id.as_str());
    assert_eq!(assigned["target_id"], hal_id.as_str());
    assert_eq!(assigned["details"]["role"], "auditor-role");
    assert_eq!(assigned["ip"], "198.51.100.23");
    assert_eq!(assigned["user_agent"], "audit-test/1.0");
    let failed: Vec<&Value> = log.iter().filter(|e| e["type"] == "login.failed").collect();
    assert_eq!(failed[0]["details"]["reason"], "account_disabled");
    assert_eq!(failed[0]["target_id"], hal_id.as_str());
    assert_eq!(failed[1]["details"]["reason"], "unknown_account");
    assert_eq!(failed[1]["target_id"], Value::Null);
    assert_eq!(failed[1]["actor_id"], Value::Null);
    assert_eq!(failed[2]["details"]["reason"], "wrong_password");
    assert_eq!(failed[2]["ip"], "198.51.100.23");
    let created = find("api_key.created");
    assert_eq!(created["details"]["key_id"], key_id.as_str());
    assert_eq!(created["details"]["scopes"], json!(["posts:write"]));
    assert!(
        !created
            .to_string()
            .contains(key.body["key"].as_str().unwrap()),
        "the key's secret is never recorded"
    );
    let updated = find("role.updated");
    assert_eq!(
        updated["details"]["previous_permissions"],
        json!(["audit:read"])
    );
    assert_eq!(
        updated["details"]["permissions"],
        json!(["audit:read", "users:read"])
    );
    assert_eq!(
        find("session.revoked")["details"]["session_id"],
        second_id.as_str()
    );
    assert_eq!(find("refresh.reused")["target_id"], hal_id.as_str());

    // Filters: by user (actor or target) and by type.
    let about_hal = events(&app, &admin_token, &format!("&user_id={hal_id}")).await;
    assert!(
        about_hal
            .iter()
            .all(|e| e["actor_id"] == hal_id.as_str() || e["target_id"] == hal_id.as_str())
    );
    // Not about Hal: the admin's sign-in, the three role edits and the unknown account's failure.
    assert_eq!(about_hal.len(), log.len() - 5);
    let logouts = events(&app, &admin_token, "&type=logout").await;
    assert_eq!(logouts.len(), 2);
    assert_eq!(logouts[0]["details"]["all_sessions"], true);
}

async fn refused_changes_record_nothing(t: TestApp) {
    create_admin(&t.state, "keeper").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let ivy = register(&app, "ivy").await;
    let ivy_id = ivy["id"].as_str().unwrap();
    let admin = login(&app, "keeper").await;
    let ivy_pair = login(&app, "ivy").await;
    let before = events(&app, token(&admin), "").await.len();
    let refused = [
        // Unknown role, built-in role deletion, existing role name, unknown user.
        (test::TestRequest::put().uri(&format!("/api/v1/users/{ivy_id}/roles/no-such-role")), token(&admin), 404),
        (test::TestRequest::delete().uri("/api/v1/roles/admin"), token(&admin), 409),
        (
            test::TestRequest::post().uri("/api/v1/roles").set_json(json!({"name": "user", "description": "dup", "permissions": []})),
            token(&admin),
            409,
        ),
        (
            test::TestRequest::patch().uri(&format!("/api/v1/users/{}", uuid::Uuid::now_v7())).set_json(json!({"disabled": true})),
            token(&admin),
            404,
        ),
        // A key beyond the caller's permissions, a wrong current password, a stranger's key.
        (
            test::TestRequest::post().uri("/api/v1/api-keys").set_json(json!({"name": "x", "scopes": ["audit:read"]})),
            token(&ivy_pair),
            403,
        ),
        (
            test::TestRequest::post().uri("/api/v1/auth/password").set_json(json!({"current_password": "not the password", "new_password": "another long passphrase"})),
            token(&ivy_pair),
            422,
        ),
        (
            test::TestRequest::delete().uri(&format!("/api/v1/api-keys/{}", uuid::Uuid::now_v7())),
            token(&ivy_pair),
            404,
        ),
        (
            test::TestRequest::delete().uri(&format!("/api/v1/auth/sessions/{}", uuid::Uuid::now_v7())),
            token(&ivy_pair),
            404,
        ),
    ];
    for (req, token, status) in refused {
        let reply = send(&app, with_token(req, token)).await;
        assert_eq!(reply.status.as_u16(), status, "{:#}", reply.body);
    }
    // A logout with an unknown refresh token changes nothing either.
    assert_eq!(logout(&app, &json!("no-such-token")).await.status, 204);
    assert_eq!(events(&app, token(&admin), "").await.len(), before);
}

async fn the_log_pages_past_ten_thousand_events(t: TestApp) {
    create_admin(&t.state, "pager").await;
    let audit = t.store.audit();
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let admin = login(&app, "pager").await;
    let subject = UserId::from_uuid(uuid::Uuid::now_v7());
    let now = chrono::Utc::now();
    let batch: Vec<AuditEvent> = (0..10_100)
        .map(|i| AuditEvent {
            id: AuditEventId::from_uuid(uuid::Uuid::now_v7()),
            kind: if i % 2 == 0 {
                AuditKind::LoginFailed
            } else {
                AuditKind::Logout
            },
            actor: None,
            target: Some(subject),
            client: ClientInfo::default(),
            at: now,
            details: json!({ "n": i }).as_object().cloned().unwrap(),
        })
        .collect();
    audit.record_audit_events(&batch).await.unwrap();

    let mut seen: Vec<i64> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/audit-events?limit=100&user_id={subject}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let reply = get(&app, &path, Some(token(&admin))).await;
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        pages += 1;
        seen.extend(
            reply.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["details"]["n"].as_i64().unwrap()),
        );
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 101);
    let expected: Vec<i64> = (0..10_100).rev().collect();
    assert_eq!(seen, expected, "newest first, no gap, no repeat");

    // Filtered by type, the pages hold only that type and join up too.
    let path = format!("/api/v1/audit-events?limit=100&user_id={subject}&type=logout");
    let first = get(&app, &path, Some(token(&admin))).await;
    let items = first.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 100);
    assert!(items.iter().all(|e| e["type"] == "logout"));
    assert_eq!(items[0]["details"]["n"], 10_099);
}

async fn filters_and_cursors_are_validated(t: TestApp) {
    create_admin(&t.state, "checker").await;
    let app = test::init_service(moments_http::app(t.state, t.http)).await;
    let admin = login(&app, "checker").await;
    for _ in 0..3 {
        login(&app, "checker").await;
    }
    let bad = get(
        &app,
        "/api/v1/audit-events?type=login&user_id=42&limit=0",
        Some(token(&admin)),
    )
    .await;
    let mut fields = bad.field_errors();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("limit".to_owned(), "out_of_range".to_owned()),
            ("type".to_owned(), "unknown_type".to_owned()),
            ("user_id".to_owned(), "invalid_format".to_owned()),
        ]
    );
    let page = get(&app, "/api/v1/audit-events?limit=1", Some(token(&admin))).await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let mut tampered = cursor.clone();
    tampered.replace_range(..1, if cursor.starts_with('A') { "B" } else { "A" });
    for cursor in [tampered.as_str(), "made-up", &cursor[..cursor.len() - 2]] {
        let reply = get(
            &app,
            &format!("/api/v1/audit-events?cursor={cursor}"),
            Some(token(&admin)),
        )
        .await;
        assert_eq!(
            reply.field_errors(),
            [("cursor".to_owned(), "invalid_cursor".to_owned())]
        );
    }
    // A cursor is bound to its filter.
    let other = get(
        &app,
        &format!("/api/v1/audit-events?type=login.succeeded&cursor={cursor}"),
        Some(token(&admin)),
    )
    .await;
    assert_eq!(
        other.field_errors(),
        [("cursor".to_owned(), "invalid_cursor".to_owned())]
    );
    let next = get(
        &app,
        &format!("/api/v1/audit-events?limit=1&cursor={cursor}"),
        Some(token(&admin)),
    )
    .await;
    assert_eq!(next.status, 200);
    assert_ne!(next.body["items"][0]["id"], page.body["items"][0]["id"]);
}
