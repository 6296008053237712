//! `/audit-events`: the security audit log.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use moments_domain::audit::{AuditEvent, AuditFilter, AuditKind};
use moments_domain::ids::UserId;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{AuditRead, Permitted};
use crate::routes::endpoint;
use crate::routes::users::{list_error, list_query, page_limit};
use crate::validation::Fields;

/// One security event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventResponse {
    /// The event's id (UUIDv7: later events have greater ids).
    pub id: Uuid,
    /// What happened, for example `login.failed` or `role.assigned`.
    #[serde(rename = "type")]
    #[schema(example = "role.assigned")]
    pub kind: &'static str,
    /// Who did it; null for an anonymous caller (a failed login, a replayed refresh token).
    pub actor_id: Option<Uuid>,
    /// The account it happened to, if any.
    pub target_id: Option<Uuid>,
    /// The client address of the request.
    pub ip: Option<String>,
    /// The `User-Agent` of the request.
    pub user_agent: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Event-specific facts: a session or key id, a role name and permissions, a failure
    /// reason. Never a secret.
    #[schema(value_type = Object, example = json!({"role": "moderator"}))]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl From<AuditEvent> for AuditEventResponse {
    fn from(event: AuditEvent) -> Self {
        Self {
            id: event.id.as_uuid(),
            kind: event.kind.as_str(),
            actor_id: event.actor.map(|id| id.as_uuid()),
            target_id: event.target.map(|id| id.as_uuid()),
            ip: event.client.ip,
            user_agent: event.client.user_agent,
            created_at: event.at,
            details: event.details,
        }
    }
}

/// A page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventPage {
    /// Newest first.
    pub items: Vec<AuditEventResponse>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The audit log, newest first, optionally about one user or of one type.
#[utoipa::path(
    get, path = "/api/v1/audit-events", tag = "audit", operation_id = "list_audit_events",
    params(
        ("user_id" = Option<Uuid>, Query, description = "Only events this user did or that happened to them"),
        ("type" = Option<String>, Query, description = "Only events of this type, for example `login.failed`"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of events", body = AuditEventPage)),
    security(("bearer" = ["audit:read"]), ("api_key" = ["audit:read"])),
)]
pub async fn list_audit_events(
    state: web::Data<AppState>,
    _caller: Permitted<AuditRead>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = list_query(&req)?;
    let mut fields = Fields::default();
    let limit = page_limit(&mut fields, query.get("limit"));
    let user = query
        .get("user_id")
        .and_then(|raw| match Uuid::parse_str(raw) {
            Ok(id) => Some(UserId::from_uuid(id)),
            Err(_) => {
                fields.reject("user_id", "invalid_format", "must be a UUID");
                None
            }
        });
    let kind = query.get("type").and_then(|raw| {
        let kind = AuditKind::parse(raw);
        if kind.is_none() {
            let known: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
            fields.reject(
                "type",
                "unknown_type",
                format!("must be one of {}", known.join(", ")),
            );
        }
        kind
    });
    fields.finish()?;
    let page = state
        .accounts
        .audit_events(
            &AuditFilter { user, kind },
            query.get("cursor").map(String::as_str),
            limit,
        )
        .await
        .map_err(list_error)?;
    Ok(HttpResponse::Ok().json(AuditEventPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/audit-events").route(web::get().to(list_audit_events)));
}
