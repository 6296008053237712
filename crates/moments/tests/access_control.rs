//! The access-control matrix: every operation of the OpenAPI document, called by an anonymous
//! client, a signed-in user without extra permissions, and an administrator. What each caller
//! may do is read from the document's own security declarations, so a new route is covered the
//! day it is added: no unexpected success, and every refusal is a 401 or 403 problem.

mod common;

use actix_web::http::Method;
use actix_web::test;
use common::*;
use moments_domain::authz::builtin_roles;
use serde_json::{Value, json};
use utoipa::OpenApi as _;

/// What an operation's security says: public, any signed-in user, or these permissions.
fn requirement(operation: &Value) -> Option<Vec<String>> {
    let security = operation["security"].as_array()?;
    let scopes: Vec<String> = security
        .iter()
        .filter_map(|r| r.as_object())
        .flat_map(|r| r.values())
        .flat_map(|scopes| scopes.as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    let secured = security
        .iter()
        .any(|r| r.as_object().is_some_and(|o| !o.is_empty()));
    secured.then_some(scopes)
}

#[actix_web::test]
async fn every_operation_refuses_callers_without_the_right_credentials() {
    let t = sqlite_app().await.unwrap();
    create_admin(&t.state, "root_admin").await;
    let app = test::init_service(moments_http::app(t.state.clone(), t.http.clone())).await;
    let target = register(&app, "target_user").await;
    register(&app, "plain_user").await;
    let user_permissions: Vec<String> = builtin_roles()
        .into_iter()
        .find(|r| r.name.as_str() == "user")
        .unwrap()
        .permissions
        .iter()
        .map(|p| p.to_string())
        .collect();

    let doc = serde_json::to_value(moments_http::ApiDoc::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(permissions) = requirement(operation) else {
                continue;
            };
            let uri = path
                .replace("{id}", target["id"].as_str().unwrap())
                .replace("{name}", "moderator")
                .replace("{role}", "moderator")
                .replace("{code}", "not_found");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let request = |token: Option<&str>| {
                let mut req = test::TestRequest::default()
                    .method(method.clone())
                    .uri(&uri);
                if operation.get("requestBody").is_some() {
                    req = req.set_json(json!({}));
                }
                match token {
                    Some(token) => with_token(req, token),
                    None => req,
                }
            };
            let id = operation["operationId"].as_str().unwrap_or(path);

            let anonymous = send(&app, request(None)).await;
            anonymous.problem(401, "unauthenticated");

            // Fresh sessions for each operation: some (logout-all) end the caller's sessions.
            let user = login(&app, "plain_user").await;
            let reply = send(&app, request(user["access_token"].as_str())).await;
            if permissions.iter().all(|p| user_permissions.contains(p)) {
                assert!(
                    !matches!(reply.status.as_u16(), 401 | 403),
                    "{id}: a signed-in user was refused: {:#}",
                    reply.body
                );
            } else {
                assert_eq!(
                    reply.status, 403,
                    "{id}: a user without {permissions:?} was not refused: {:#}",
                    reply.body
                );
                reply.problem(403, "forbidden");
            }

            let admin = login(&app, "root_admin").await;
            let reply = send(&app, request(admin["access_token"].as_str())).await;
            assert!(
                !matches!(reply.status.as_u16(), 401 | 403),
                "{id}: the administrator was refused: {:#}",
                reply.body
            );
            checked += 1;
        }
    }
    eprintln!("{checked} protected operations checked for three callers");
    assert!(checked >= 15, "only {checked} protected operations found");
}
