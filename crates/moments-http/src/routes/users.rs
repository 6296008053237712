//! `/users`: administration of accounts. So far: assigning and removing roles.

use actix_web::{HttpResponse, web};
use moments_domain::account::RoleAssignmentError;
use moments_domain::authz::RoleName;
use moments_domain::ids::UserId;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Permitted, RolesAssign};
use crate::problem::{self, Problem};
use crate::routes::endpoint;

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
    security(("bearer" = ["roles:assign"])),
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
    security(("bearer" = ["roles:assign"])),
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

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        endpoint("/users/{id}/roles/{role}")
            .route(web::put().to(assign_role))
            .route(web::delete().to(remove_role)),
    );
}
