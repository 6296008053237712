//! `/permissions` and `/roles`: the permission catalogue and the roles made of it.

use actix_web::{HttpResponse, web};
use moments_domain::admin::RoleEditError;
use moments_domain::authz::{Permission, Role, RoleName, catalogue};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated, Permitted, RolesRead, RolesWrite};
use crate::problem::{self, Problem};
use crate::routes::endpoint;
use crate::validation::Fields;

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
    security(("bearer" = ["roles:read"]), ("api_key" = ["roles:read"])),
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
    security(("bearer" = ["roles:read"]), ("api_key" = ["roles:read"])),
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

/// Longest role description, in characters.
const MAX_DESCRIPTION: usize = 200;

fn check_description(fields: &mut Fields, description: &str) -> Option<String> {
    let description = description.trim();
    match description.chars().count() {
        0 => fields.reject("description", "required", "must not be empty"),
        n if n > MAX_DESCRIPTION => fields.reject(
            "description",
            "too_long",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ),
        _ => return Some(description.to_owned()),
    }
    None
}

/// Parses permissions: each `resource:action` and in the catalogue; sorted, without repeats.
/// Parses permission names from the catalogue; each bad one is a field error `{field}[i]`.
pub(crate) fn check_permissions(
    fields: &mut Fields,
    field: &str,
    raw: &[String],
) -> Vec<Permission> {
    let mut permissions = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let field = format!("{field}[{i}]");
        match Permission::parse(name) {
            Ok(p) if catalogue().iter().any(|known| known.name == p.as_str()) => {
                permissions.push(p)
            }
            Ok(_) => fields.reject(
                field,
                "unknown_permission",
                format!("{name} is not in the catalogue (GET /api/v1/permissions)"),
            ),
            Err(e) => fields.reject(field, e.code, e.message),
        }
    }
    permissions.sort();
    permissions.dedup();
    permissions
}

fn role_edit_error(e: RoleEditError) -> ApiError {
    match e {
        RoleEditError::Exists => ApiError::new(&problem::CONFLICT, "a role of that name exists"),
        RoleEditError::NotFound => ApiError::new(&problem::NOT_FOUND, "no such role"),
        RoleEditError::Builtin => ApiError::new(
            &problem::CONFLICT,
            "built-in roles cannot be deleted and their permissions cannot be changed",
        ),
        RoleEditError::Escalation(permission) => ApiError::new(
            &problem::FORBIDDEN,
            format!("the change involves {permission}, which you do not hold"),
        ),
        RoleEditError::Infra(e) => e.into(),
    }
}

/// A new custom role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleRequest {
    /// `[a-z][a-z0-9_-]{1,31}`.
    #[schema(example = "editor")]
    pub name: String,
    /// What the role is for (1 to 200 characters).
    pub description: String,
    /// Permissions from the catalogue; you must hold each.
    #[schema(example = json!(["posts:write", "posts:moderate"]))]
    pub permissions: Vec<String>,
}

/// Changes to a role; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoleRequest {
    /// A new description.
    pub description: Option<String>,
    /// The new set of permissions (replaces the old one; not for built-in roles).
    pub permissions: Option<Vec<String>>,
}

/// Create a custom role.
#[utoipa::path(
    post, path = "/api/v1/roles", tag = "roles", operation_id = "create_role",
    request_body = CreateRoleRequest,
    responses(
        (status = 201, description = "The role", body = RoleResponse),
        (status = 409, description = "A role of that name exists", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["roles:write"]), ("api_key" = ["roles:write"])),
)]
pub async fn create_role(
    state: web::Data<AppState>,
    caller: Permitted<RolesWrite>,
    ApiJson(body): ApiJson<CreateRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let name = fields.check("name", RoleName::parse(&body.name));
    let description = check_description(&mut fields, &body.description);
    let permissions = check_permissions(&mut fields, "permissions", &body.permissions);
    fields.finish()?;
    let (Some(name), Some(description)) = (name, description) else {
        return Err(ApiError::internal(&"validation passed without values"));
    };
    let role = Role {
        name,
        description,
        permissions,
        builtin: false,
    };
    let role = state
        .accounts
        .create_role(caller.actor(), role)
        .await
        .map_err(role_edit_error)?;
    Ok(HttpResponse::Created().json(RoleResponse::from(role)))
}

/// Edit a role: its description, and for custom roles its permissions (replaced as a set).
#[utoipa::path(
    patch, path = "/api/v1/roles/{name}", tag = "roles", operation_id = "update_role",
    params(("name" = String, Path, description = "The role's name", example = "editor")),
    request_body = UpdateRoleRequest,
    responses(
        (status = 200, description = "The role as it is now", body = RoleResponse),
        (status = 404, description = "No such role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The permissions of a built-in role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["roles:write"]), ("api_key" = ["roles:write"])),
)]
pub async fn update_role(
    state: web::Data<AppState>,
    caller: Permitted<RolesWrite>,
    name: web::Path<String>,
    ApiJson(body): ApiJson<UpdateRoleRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = RoleName::parse(&name).map_err(|_| role_edit_error(RoleEditError::NotFound))?;
    let mut fields = Fields::default();
    let description = body
        .description
        .as_deref()
        .map(|d| check_description(&mut fields, d));
    let permissions = body
        .permissions
        .as_deref()
        .map(|p| check_permissions(&mut fields, "permissions", p));
    fields.finish()?;
    let description = description.flatten();
    let role = state
        .accounts
        .update_role(caller.actor(), &name, description.as_deref(), permissions)
        .await
        .map_err(role_edit_error)?;
    Ok(HttpResponse::Ok().json(RoleResponse::from(role)))
}

/// Delete a custom role; its holders lose it.
#[utoipa::path(
    delete, path = "/api/v1/roles/{name}", tag = "roles", operation_id = "delete_role",
    params(("name" = String, Path, description = "The role's name", example = "editor")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A built-in role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["roles:write"]), ("api_key" = ["roles:write"])),
)]
pub async fn delete_role(
    state: web::Data<AppState>,
    caller: Permitted<RolesWrite>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = RoleName::parse(&name).map_err(|_| role_edit_error(RoleEditError::NotFound))?;
    state
        .accounts
        .delete_role(caller.actor(), &name)
        .await
        .map_err(role_edit_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/permissions").route(web::get().to(list_permissions)))
        .service(
            endpoint("/roles")
                .route(web::get().to(list_roles))
                .route(web::post().to(create_role)),
        )
        .service(
            endpoint("/roles/{name}")
                .route(web::get().to(get_role))
                .route(web::patch().to(update_role))
                .route(web::delete().to(delete_role)),
        );
}
