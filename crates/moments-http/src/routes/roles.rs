//! `/permissions` and `/roles`: the permission catalogue and the roles made of it.

use actix_web::{HttpResponse, web};
use moments_domain::authz::{Role, RoleName, catalogue};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Authenticated, Permitted, RolesRead};
use crate::problem::{self, Problem};
use crate::routes::endpoint;

/// A permission of the catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionResponse {
    /// `resource:action`.
    #[schema(example = "posts:moderate")]
    pub name: &'static str,
    /// What holding it allows.
    pub description: &'static str,
}

/// The permission catalogue (all of it: `next_cursor` is always null).
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionPage {
    /// Every permission.
    pub items: Vec<PermissionResponse>,
    /// Always null.
    pub next_cursor: Option<String>,
}

/// A role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleResponse {
    /// `[a-z][a-z0-9_-]{1,31}`.
    #[schema(example = "moderator")]
    pub name: String,
    /// What the role is for.
    pub description: String,
    /// The permissions it grants.
    #[schema(example = json!(["posts:moderate", "posts:write", "users:read"]))]
    pub permissions: Vec<String>,
    /// Built-in roles (`admin`, `moderator`, `user`) cannot be deleted.
    pub builtin: bool,
}

impl From<Role> for RoleResponse {
    fn from(role: Role) -> Self {
        Self {
            name: role.name.as_str().to_owned(),
            description: role.description,
            permissions: role
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            builtin: role.builtin,
        }
    }
}

/// The roles (all of them: `next_cursor` is always null).
#[derive(Debug, Serialize, ToSchema)]
pub struct RolePage {
    /// Every role, sorted by name.
    pub items: Vec<RoleResponse>,
    /// Always null.
    pub next_cursor: Option<String>,
}

/// The permission catalogue.
#[utoipa::path(
    get, path = "/api/v1/permissions", tag = "roles", operation_id = "list_permissions",
    responses((status = 200, description = "Every permission", body = PermissionPage)),
    security(("bearer" = [])),
)]
pub async fn list_permissions(_caller: Authenticated) -> HttpResponse {
    let items = catalogue()
        .iter()
        .map(|p| PermissionResponse {
            name: p.name,
            description: p.description,
        })
        .collect();
    HttpResponse::Ok().json(PermissionPage {
        items,
        next_cursor: None,
    })
}

/// The roles and their permissions.
#[utoipa::path(
    get, path = "/api/v1/roles", tag = "roles", operation_id = "list_roles",
    responses((status = 200, description = "Every role", body = RolePage)),
    security(("bearer" = ["roles:read"])),
)]
pub async fn list_roles(
    state: web::Data<AppState>,
    _caller: Permitted<RolesRead>,
) -> Result<HttpResponse, ApiError> {
    let items = state
        .accounts
        .roles()
        .await?
        .into_iter()
        .map(RoleResponse::from)
        .collect();
    Ok(HttpResponse::Ok().json(RolePage {
        items,
        next_cursor: None,
    }))
}

/// One role.
#[utoipa::path(
    get, path = "/api/v1/roles/{name}", tag = "roles", operation_id = "get_role",
    params(("name" = String, Path, description = "The role's name", example = "moderator")),
    responses(
        (status = 200, description = "The role", body = RoleResponse),
        (status = 404, description = "No such role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["roles:read"])),
)]
pub async fn get_role(
    state: web::Data<AppState>,
    _caller: Permitted<RolesRead>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::new(&problem::NOT_FOUND, format!("no role {name:?}"));
    let parsed = RoleName::parse(&name).map_err(|_| not_found())?;
    let role = state.accounts.role(&parsed).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(RoleResponse::from(role)))
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/permissions").route(web::get().to(list_permissions)))
        .service(endpoint("/roles").route(web::get().to(list_roles)))
        .service(endpoint("/roles/{name}").route(web::get().to(get_role)));
}
