//! The OpenAPI 3.1 document: every route, schema, error response and security scheme.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, OpenApi as OpenApiDoc, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldError, PROBLEM_JSON, Problem};
use crate::routes::{api_keys, audit, auth, media, oauth, ops, posts, roles, users};

/// The API description served at `/openapi.json` and printed by `moments openapi`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Moments API",
        version = "1",
        description = "Accounts, sessions and social posts.\n\n\
            Every route lives under `/api/v1`; the same route under `/api` answers as the latest \
            version and adds `X-API-Version-Defaulted: true`. Every error is \
            `application/problem+json` (RFC 9457) with a stable `error_code`; \
            `GET /problems/{code}` describes each one. Every response carries `X-Request-Id`.\n\n\
            Rate limits: every `/api` route and media download belongs to a class (`login`, \
            `register`, `refresh`, `read`, `write`, `upload`) with its own quota, counted per \
            user or API key, or per client address for anonymous and sign-in requests. Every \
            response of a limited route carries `RateLimit-Policy: \"read\";q=600;w=60` and \
            `RateLimit: \"read\";r=599;t=1` (IETF httpapi rate-limit headers); a refusal is 429 \
            `rate_limited` with `Retry-After` in seconds.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::logout_all, auth::me,
        auth::change_password, auth::list_sessions, auth::revoke_session,
        oauth::list_providers, oauth::start, oauth::start_link, oauth::callback,
        oauth::callback_form_post, oauth::exchange, oauth::unlink,
        roles::list_permissions, roles::list_roles, roles::get_role,
        roles::create_role, roles::update_role, roles::delete_role,
        users::list_users, users::get_user, users::update_me, users::update_user, users::assign_role, users::remove_role,
        api_keys::create_api_key, api_keys::list_api_keys, api_keys::revoke_api_key,
        audit::list_audit_events,
        posts::create_post, posts::list_posts, posts::get_post, posts::update_post, posts::delete_post,
        posts::list_user_posts, posts::vote_post, posts::clear_vote,
        media::upload_media, media::get_media,
        ops::health, ops::ready, ops::describe_problem, ops::jwks,
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&SecurityAndErrors),
    tags(
        (name = "auth", description = "Registration, sign-in and sessions"),
        (name = "roles", description = "Permissions and roles"),
        (name = "users", description = "Administration of accounts"),
        (name = "api-keys", description = "API keys: scoped, expiring credentials for scripts and services"),
        (name = "audit", description = "The security audit log"),
        (name = "posts", description = "Posts, the feed and votes"),
        (name = "media", description = "Image upload and serving"),
        (name = "operations", description = "Health, readiness and problem types"),
    ),
)]
pub struct ApiDoc;

/// Adds the bearer security scheme and the error responses every route can give, so no route
/// can forget one: 500 and 503 everywhere; 400, 413, 415 and 422 where there is a JSON body;
/// 401 where a token is required; 403 where a permission is; 404 and 405 are documented once
/// in the description.
struct SecurityAndErrors;

/// A problem+json response, to finish with headers or build as is.
fn problem_builder(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

fn problem_response(description: &str) -> RefOr<Response> {
    problem_builder(description).build().into()
}

#[cfg(test)]
fn operations(doc: &mut OpenApiDoc) -> impl Iterator<Item = &mut Operation> {
    operations_by_path(doc).map(|(_, operation)| operation)
}

fn operations_by_path(doc: &mut OpenApiDoc) -> impl Iterator<Item = (&String, &mut Operation)> {
    doc.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
        .map(move |operation| (path, operation))
    })
}

/// Whether requests to `path` count against a rate-limit class.
fn rate_limited(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/media/")
}

/// The 429 answer of a rate-limited route, with its headers (a shared component).
fn rate_limited_response() -> Response {
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(description))
            .build()
    };
    problem_builder(
        "`rate_limited`: the route class's quota, or the account's login throttle, is spent. \
         Every response of a limited route carries `RateLimit-Policy` and `RateLimit`.",
    )
    .header(
        "Retry-After",
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
            .description(Some("Seconds until a retry can succeed"))
            .build(),
    )
    .header(
        "RateLimit-Policy",
        header("The class and its quota, for example `\"login\";q=10;w=60`"),
    )
    .header(
        "RateLimit",
        header(
            "Requests left and seconds until the quota is full, for example `\"login\";r=0;t=42`",
        ),
    )
    .build()
}

fn requires_token(operation: &Operation) -> bool {
    operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement)
            .is_ok_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    })
}

/// Whether a route names a permission (a scope of its security requirement).
fn requires_permission(operation: &Operation) -> bool {
    operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement).is_ok_and(|v| {
            v.as_object().is_some_and(|o| {
                o.values()
                    .any(|scopes| scopes.as_array().is_some_and(|s| !s.is_empty()))
            })
        })
    })
}

impl Modify for SecurityAndErrors {
    fn modify(&self, doc: &mut OpenApiDoc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /api/v1/auth/login` or `/refresh`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key from `POST /api/v1/api-keys` (`mk_…`). Accepted by routes that list \
                 it; the key acts with its scopes intersected with its owner's permissions.",
            ))),
        );
        components
            .responses
            .insert("RateLimited".to_owned(), rate_limited_response().into());
        for (path, operation) in operations_by_path(doc) {
            if rate_limited(path) {
                operation
                    .responses
                    .responses
                    .entry("429".to_owned())
                    .or_insert_with(|| Ref::new("#/components/responses/RateLimited").into());
            }
            let has_body = operation.request_body.is_some();
            let secured = requires_token(operation);
            let needs_permission = requires_permission(operation);
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem_response(description));
            };
            if has_body {
                add("400", "`malformed_request`: the body is not valid JSON");
                add("413", "`payload_too_large`: the body exceeds 64 KiB");
                add(
                    "415",
                    "`unsupported_media_type`: the body is not `application/json`",
                );
                add(
                    "422",
                    "`validation_failed`: `errors` names each invalid field",
                );
            }
            if secured {
                add(
                    "401",
                    "`unauthenticated`, `invalid_token` or `token_expired` (no, bad or \
                     expired credentials)",
                );
            }
            if needs_permission {
                add(
                    "403",
                    "`forbidden`: the caller lacks the permission the route needs",
                );
            }
            add("500", "`internal_error`: a bug; report the request id");
            add(
                "503",
                "`service_unavailable`: a dependency is not answering; retry later",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_documents_its_errors() {
        let mut doc = ApiDoc::openapi();
        for operation in operations(&mut doc) {
            let id = operation.operation_id.clone().unwrap_or_default();
            let codes: Vec<&String> = operation.responses.responses.keys().collect();
            for status in ["500", "503"] {
                assert!(codes.iter().any(|c| *c == status), "{id} lacks {status}");
            }
            let limited = operation.responses.responses.contains_key("429");
            if operation.request_body.is_some() {
                assert!(limited, "{id} lacks 429");
                for status in ["400", "413", "415", "422"] {
                    assert!(codes.iter().any(|c| *c == status), "{id} lacks {status}");
                }
            }
        }
    }
}
