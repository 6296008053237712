//! `/users`: administration of accounts: listing and searching, disabling and enabling,
//! assigning and removing roles.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use moments_domain::admin::{DisableError, ListError, RoleAssignmentError};
use moments_domain::authz::RoleName;
use moments_domain::ids::UserId;
use moments_domain::profile::{ProfileChange, UpdateProfileError};
use moments_domain::value::{DisplayName, Email};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, Permitted, RolesAssign, UsersRead, UsersWrite};
use crate::problem::{self, Problem};
use crate::routes::auth::UserResponse;
use crate::routes::endpoint;
use crate::validation::Fields;

fn role_change_error(e: RoleAssignmentError) -> ApiError {
    match e {
        RoleAssignmentError::UnknownUser => ApiError::new(&problem::NOT_FOUND, "no such user"),
        RoleAssignmentError::UnknownRole => ApiError::new(&problem::NOT_FOUND, "no such role"),
        RoleAssignmentError::Escalation(permission) => ApiError::new(
            &problem::FORBIDDEN,
            format!("the role grants {permission}, which you do not hold"),
        ),
        RoleAssignmentError::Infra(e) => e.into(),
    }
}

/// Parses the path; an unparseable id or role name is simply not found.
fn target(path: &(String, String)) -> Result<(UserId, RoleName), ApiError> {
    let user = Uuid::parse_str(&path.0)
        .map(UserId::from_uuid)
        .map_err(|_| ApiError::new(&problem::NOT_FOUND, "no such user"))?;
    let role =
        RoleName::parse(&path.1).map_err(|_| ApiError::new(&problem::NOT_FOUND, "no such role"))?;
    Ok((user, role))
}

/// Give a user a role (idempotent). The caller must hold every permission the role grants.
#[utoipa::path(
    put, path = "/api/v1/users/{id}/roles/{role}", tag = "users", operation_id = "assign_role",
    params(("id" = Uuid, Path, description = "The user"), ("role" = String, Path, description = "The role", example = "moderator")),
    responses(
        (status = 204, description = "The user holds the role"),
        (status = 404, description = "No such user or role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["roles:assign"]), ("api_key" = ["roles:assign"])),
)]
pub async fn assign_role(
    state: web::Data<AppState>,
    caller: Permitted<RolesAssign>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, role) = target(&path)?;
    state
        .accounts
        .assign_role(caller.actor(), user, &role)
        .await
        .map_err(role_change_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Take a role from a user (idempotent), under the same rule as assigning it.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}/roles/{role}", tag = "users", operation_id = "remove_role",
    params(("id" = Uuid, Path, description = "The user"), ("role" = String, Path, description = "The role", example = "moderator")),
    responses(
        (status = 204, description = "The user does not hold the role"),
        (status = 404, description = "No such user or role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["roles:assign"]), ("api_key" = ["roles:assign"])),
)]
pub async fn remove_role(
    state: web::Data<AppState>,
    caller: Permitted<RolesAssign>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, role) = target(&path)?;
    state
        .accounts
        .remove_role(caller.actor(), user, &role)
        .await
        .map_err(role_change_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// What anyone may see of an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicUserResponse {
    /// The account's id.
    pub id: Uuid,
    /// Username.
    pub username: String,
    /// Display name, or null.
    pub display_name: Option<String>,
    /// When the account was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An account's public profile.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users", operation_id = "get_user",
    params(("id" = Uuid, Path, description = "The user")),
    responses(
        (status = 200, description = "The public profile", body = PublicUserResponse),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn get_user(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(&problem::NOT_FOUND, "no such user");
    let id = Uuid::parse_str(&id)
        .map(UserId::from_uuid)
        .map_err(|_| not_found())?;
    let user = state
        .accounts
        .public_profile(id)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(PublicUserResponse {
        id: user.id.as_uuid(),
        username: user.username.as_str().to_owned(),
        display_name: user.display_name,
        created_at: user.created_at,
    }))
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// Accounts by username.
    pub items: Vec<UserResponse>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Default page size.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page size.
pub const MAX_LIMIT: usize = 100;

/// The query string of a list, as names and values; 400 if it cannot be decoded.
pub(crate) fn list_query(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            ApiError::new(
                &problem::MALFORMED_REQUEST,
                format!("the query string is malformed: {e}"),
            )
        })
}

/// A list's error: a cursor this server did not issue for this list and query is 422 naming
/// `cursor`.
pub(crate) fn list_error(e: ListError) -> ApiError {
    match e {
        ListError::InvalidCursor => ApiError::field(
            "cursor",
            "invalid_cursor",
            "was not issued by this server for this list",
        ),
        ListError::Infra(e) => e.into(),
    }
}

/// `?limit=` as the API guide defines it: 1..=100, default 20; anything else is a 422 naming it.
pub(crate) fn page_limit(fields: &mut Fields, raw: Option<&String>) -> usize {
    match raw.map(|r| r.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(Ok(_)) => {
            fields.reject(
                "limit",
                "out_of_range",
                format!("must be from 1 to {MAX_LIMIT}"),
            );
            DEFAULT_LIMIT
        }
        Some(Err(_)) => {
            fields.reject("limit", "invalid_type", "must be a whole number");
            DEFAULT_LIMIT
        }
    }
}

/// List and search accounts (keyset pagination by username).
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    params(
        ("q" = Option<String>, Query, description = "Username or e-mail prefix, case-insensitive"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of accounts", body = UserPage)),
    security(("bearer" = ["users:read"]), ("api_key" = ["users:read"])),
)]
pub async fn list_users(
    state: web::Data<AppState>,
    _caller: Permitted<UsersRead>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = list_query(&req)?;
    let mut fields = Fields::default();
    let limit = page_limit(&mut fields, query.get("limit"));
    fields.finish()?;
    let page = state
        .accounts
        .list_users(
            query.get("q").map(String::as_str),
            query.get("cursor").map(String::as_str),
            limit,
        )
        .await
        .map_err(list_error)?;
    Ok(HttpResponse::Ok().json(UserPage {
        items: page.items.iter().map(UserResponse::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// An administrator's change to an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// Disable (`true`) or re-enable (`false`) the account. Disabling revokes its sessions;
    /// re-enabling does not bring them back.
    pub disabled: bool,
}

/// Disable or re-enable an account.
#[utoipa::path(
    patch, path = "/api/v1/users/{id}", tag = "users", operation_id = "update_user",
    params(("id" = Uuid, Path, description = "The user")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The account as it is now", body = UserResponse),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Disabling one's own account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["users:write"]), ("api_key" = ["users:write"])),
)]
pub async fn update_user(
    state: web::Data<AppState>,
    caller: Permitted<UsersWrite>,
    id: web::Path<String>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(&problem::NOT_FOUND, "no such user");
    let user = Uuid::parse_str(&id)
        .map(UserId::from_uuid)
        .map_err(|_| not_found())?;
    match state
        .accounts
        .set_disabled(caller.actor(), user, body.disabled)
        .await
    {
        Ok(user) => Ok(HttpResponse::Ok().json(UserResponse::from(&user))),
        Err(DisableError::NotFound) => Err(not_found()),
        Err(DisableError::OwnAccount) => Err(ApiError::new(
            &problem::CONFLICT,
            "you cannot disable your own account",
        )),
        Err(DisableError::Escalation(permission)) => Err(ApiError::new(
            &problem::FORBIDDEN,
            format!("the account holds {permission}, which you do not"),
        )),
        Err(DisableError::Infra(e)) => Err(e.into()),
    }
}

/// Changes to the caller's profile; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    /// 1 to 64 characters; null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Ada L.")]
    pub display_name: Option<Option<String>>,
    /// A new address; it must not belong to another account. Its verification starts over
    /// unless only its case changes.
    #[serde(default)]
    #[schema(example = "ada@example.org")]
    pub email: Option<String>,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Change your display name or e-mail address. Nothing else about an account can be changed
/// here: roles, permissions and the disabled flag are refused as unknown fields (422).
#[utoipa::path(
    patch, path = "/api/v1/users/me", tag = "users", operation_id = "update_me",
    request_body = UpdateProfileRequest,
    responses(
        (status = 200, description = "Your account as it is now", body = UserResponse),
        (status = 409, description = "`email_taken`: another account has the address", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
pub async fn update_me(
    state: web::Data<AppState>,
    Authenticated(actor): Authenticated,
    ApiJson(body): ApiJson<UpdateProfileRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let display_name = match body.display_name {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => fields
            .check("display_name", DisplayName::parse(&raw))
            .map(Some),
    };
    let email = body
        .email
        .and_then(|raw| fields.check("email", Email::parse(&raw)));
    fields.finish()?;
    let change = ProfileChange {
        display_name,
        email,
    };
    match state.accounts.update_profile(&actor, change).await {
        Ok(user) => Ok(HttpResponse::Ok().json(UserResponse::from(&user))),
        Err(UpdateProfileError::EmailTaken) => Err(ApiError::new(
            &problem::EMAIL_TAKEN,
            "this e-mail address belongs to another account",
        )),
        Err(UpdateProfileError::NotFound) => Err(ApiError::from(
            moments_domain::account::CurrentUserError::NotFound,
        )),
        Err(UpdateProfileError::Infra(e)) => Err(e.into()),
    }
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/users").route(web::get().to(list_users)))
        // Before `/users/{id}`, which would otherwise take "me" as an id.
        .service(endpoint("/users/me").route(web::patch().to(update_me)))
        .service(
            endpoint("/users/{id}")
                .route(web::get().to(get_user))
                .route(web::patch().to(update_user)),
        )
        .service(
            endpoint("/users/{id}/roles/{role}")
                .route(web::put().to(assign_role))
                .route(web::delete().to(remove_role)),
        );
}
