//! The access-control matrix: every operation of the OpenAPI document, called by six callers:
//! anonymous, the owner of the objects in the path, another signed-in user, an administrator,
//! and an API key of the administrator with and without the scope the route needs. What each
//! caller may do is read from the document's own security declarations, so a new route is
//! covered the day it is added: no unexpected success, and every refusal is a 401 or 403
//! problem, or a 404 where the object's existence must not leak to a non-owner.

mod common;

use actix_web::http::Method;
use actix_web::test;
use common::*;
use moments_domain::authz::builtin_roles;
use serde_json::{Value, json};
use utoipa::OpenApi as _;

/// What an operation's security says.
struct Requirement {
    /// Every permission it names (the union of its alternatives).
    permissions: Vec<String>,
    /// The permissions of each alternative (an empty one: any signed-in caller).
    alternatives: Vec<Vec<String>>,
    /// Whether an API key is accepted (`either`), or only an access token (`user`).
    accepts_keys: bool,
}

/// `None` for a public operation: no security, or an empty alternative (credentials optional).
fn requirement(operation: &Value) -> Option<Requirement> {
    let security = operation["security"].as_array()?;
    if security
        .iter()
        .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
    {
        return None;
    }
    let schemes: Vec<(&String, &Value)> = security
        .iter()
        .filter_map(|r| r.as_object())
        .flat_map(|r| r.iter())
        .collect();
    if schemes.is_empty() {
        return None;
    }
    let alternatives = schemes
        .iter()
        .map(|(_, scopes)| {
            scopes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .collect();
    let mut permissions: Vec<String> = schemes
        .iter()
        .flat_map(|(_, scopes)| scopes.as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    permissions.sort();
    permissions.dedup();
    Some(Requirement {
        permissions,
        alternatives,
        accepts_keys: schemes.iter().any(|(name, _)| *name == "api_key"),
    })
}

/// Paths whose `{id}` is an object only its owner may see or change (404 for anyone else).
fn owned_object(path: &str) -> bool {
    path.starts_with("/api/v1/auth/sessions/") || path.starts_with("/api/v1/api-keys/")
}

/// Operations on a public object that only its author may perform (403 for anyone else),
/// except deletion, which moderators (the administrator) may also perform.
fn authors_only(path: &str, method: &Method) -> bool {
    path == "/api/v1/posts/{id}" && matches!(*method, Method::PATCH | Method::DELETE)
}

#[actix_web::test]
async fn every_operation_refuses_callers_without_the_right_credentials() {
    let t = sqlite_app().await.unwrap();
    create_admin(&t.state, "root_admin").await;
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let owner = register(&app, "owner_user").await;
    register(&app, "other_user").await;
    let user_permissions: Vec<String> = builtin_roles()
        .into_iter()
        .find(|r| r.name.as_str() == "user")
        .unwrap()
        .permissions
        .iter()
        .map(|p| p.to_string())
        .collect();
    // Fresh admin sessions each time: operations such as logout-all end the previous ones.
    let admin_token = async || {
        let admin = login(&app, "root_admin").await;
        admin["access_token"].as_str().unwrap().to_owned()
    };
    let new_key = async |scopes: &[String]| -> String {
        let req = test::TestRequest::post()
            .uri("/api/v1/api-keys")
            .set_json(json!({"name": "matrix", "scopes": scopes}));
        let reply = send(&app, with_token(req, &admin_token().await)).await;
        assert_eq!(reply.status, 201, "{:#}", reply.body);
        reply.body["key"].as_str().unwrap().to_owned()
    };

    let doc = serde_json::to_value(moments_http::ApiDoc::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(required) = requirement(operation) else {
                continue;
            };
            let id = operation["operationId"].as_str().unwrap_or(path).to_owned();
            // Fresh objects for each operation: some (logout-all, revoking) end them.
            let owner_login = login(&app, "owner_user").await;
            let owner_token = owner_login["access_token"].as_str().unwrap().to_owned();
            let owner_session = get(&app, "/api/v1/auth/sessions", Some(&owner_token)).await;
            let session_id = owner_session.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["current"] == true)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let req = test::TestRequest::post()
                .uri("/api/v1/api-keys")
                .set_json(json!({"name": "owned", "scopes": []}));
            let owned_key = send(&app, with_token(req, &owner_token)).await;
            // A custom role without permissions: assigning it escalates nothing.
            let req = test::TestRequest::post().uri("/api/v1/roles").set_json(
                json!({"name": "matrix-empty", "description": "Grants nothing", "permissions": []}),
            );
            send(&app, with_token(req, &admin_token().await)).await;

            let owned_post = send(
                &app,
                with_token(
                    test::TestRequest::post()
                        .uri("/api/v1/posts")
                        .set_json(json!({"content": "the owner's post"})),
                    &owner_token,
                ),
            )
            .await;
            let object_id = if path.starts_with("/api/v1/auth/sessions/") {
                session_id
            } else if path.starts_with("/api/v1/posts/") {
                owned_post.body["id"].as_str().unwrap().to_owned()
            } else if path.starts_with("/api/v1/api-keys/") {
                owned_key.body["id"].as_str().unwrap().to_owned()
            } else {
                owner["id"].as_str().unwrap().to_owned()
            };
            let uri = path
                .replace("{id}", &object_id)
                .replace("{name}", "matrix-empty")
                .replace("{role}", "matrix-empty")
                .replace("{code}", "not_found")
                .replace("{provider}", "matrix");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let call = async |credential: Option<(&str, &str)>| {
                let mut req = test::TestRequest::default()
                    .method(method.clone())
                    .uri(&uri);
                if operation.get("requestBody").is_some() {
                    req = req.set_json(json!({}));
                }
                if let Some(header) = credential {
                    req = req.insert_header(header);
                }
                send(&app, req).await
            };
            let bearer = |token: &str| format!("Bearer {token}");
            let needs_only_user_permissions = required
                .alternatives
                .iter()
                .any(|needs| needs.iter().all(|p| user_permissions.contains(p)));
            let authors_only = authors_only(path, &method);
            // Who is not the author may still delete as a moderator, never edit.
            let non_author_refused = authors_only && method != Method::DELETE;

            // Anonymous.
            call(None).await.problem(401, "unauthenticated");

            // The owner, and another user: the same permissions, not the same objects.
            let other = login(&app, "other_user").await;
            let other_auth = bearer(other["access_token"].as_str().unwrap());
            let reply = call(Some(("Authorization", &other_auth))).await;
            if !needs_only_user_permissions {
                reply.problem(403, "forbidden");
            } else if owned_object(path) {
                reply.problem(404, "not_found");
            } else if authors_only {
                reply.problem(403, "forbidden");
            } else {
                assert!(
                    !matches!(reply.status.as_u16(), 401 | 403),
                    "{id}: another user was refused: {:#}",
                    reply.body
                );
            }
            let owner_auth = bearer(&owner_token);
            let reply = call(Some(("Authorization", &owner_auth))).await;
            // No provider is configured here (tests/oauth.rs has them): the owner passes the
            // credential check and finds no provider `matrix` to link or unlink.
            let no_provider = matches!(id.as_str(), "start_oauth_link" | "unlink_oauth_provider");
            if no_provider {
                reply.problem(404, "not_found");
            } else if needs_only_user_permissions {
                assert!(
                    !matches!(reply.status.as_u16(), 401 | 403 | 404),
                    "{id}: the owner was refused: {:#}",
                    reply.body
                );
            } else {
                reply.problem(403, "forbidden");
            }

            // The administrator.
            let admin = login(&app, "root_admin").await;
            let admin_auth = bearer(admin["access_token"].as_str().unwrap());
            let reply = call(Some(("Authorization", &admin_auth))).await;
            if non_author_refused {
                reply.problem(403, "forbidden");
            } else {
                assert!(
                    !matches!(reply.status.as_u16(), 401 | 403),
                    "{id}: the administrator was refused: {:#}",
                    reply.body
                );
            }

            // API keys of the administrator: with exactly the scopes needed, and with none.
            let scoped = new_key(&required.permissions).await;
            let unscoped = new_key(&[]).await;
            let reply = call(Some(("X-API-Key", &scoped))).await;
            if required.accepts_keys && non_author_refused {
                reply.problem(403, "forbidden");
            } else if required.accepts_keys {
                assert!(
                    !matches!(reply.status.as_u16(), 401 | 403),
                    "{id}: a key with {:?} was refused: {:#}",
                    required.permissions,
                    reply.body
                );
            } else {
                reply.problem(401, "unauthenticated");
            }
            let reply = call(Some(("X-API-Key", &unscoped))).await;
            match (required.accepts_keys, required.permissions.is_empty()) {
                (false, _) => {
                    reply.problem(401, "unauthenticated");
                }
                (true, false) => {
                    reply.problem(403, "forbidden");
                }
                (true, true) => assert!(
                    !matches!(reply.status.as_u16(), 401 | 403),
                    "{id}: a key was refused on a route that needs no permission: {:#}",
                    reply.body
                ),
            }
            checked += 1;
        }
    }
    eprintln!("{checked} protected operations checked for six callers");
    assert!(checked >= 25, "only {checked} protected operations found");
}
