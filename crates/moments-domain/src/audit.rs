//! The audit log: an append-only record of security events. Every event is written by the
//! store in the same transaction as the change it records, so a change that fails leaves no
//! event and an event never describes a change that did not happen.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::account::{AccountService, Actor};
use crate::admin::{ListError, Page};
use crate::error::InfraError;
use crate::ids::{AuditEventId, UserId};
use crate::session::ClientInfo;

macro_rules! audit_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)+) => {
        /// What an audit event records. The names are part of the API contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuditKind {
            $($(#[$doc])* $variant,)+
        }

        impl AuditKind {
            /// Every kind, in the API guide's order.
            pub const ALL: &'static [AuditKind] = &[$(AuditKind::$variant,)+];

            /// The event type as stored and shown, for example `login.failed`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(AuditKind::$variant => $name,)+
                }
            }
        }
    };
}

audit_kinds! {
    /// A password sign-in succeeded and started a session.
    LoginSucceeded = "login.succeeded",
    /// A password sign-in failed (unknown account, wrong password or disabled account).
    LoginFailed = "login.failed",
    /// A session, or all of a user's sessions, ended by the user's logout.
    Logout = "logout",
    /// A retired refresh token came back: its session was revoked.
    RefreshReused = "refresh.reused",
    /// The user changed their password (their other sessions were revoked).
    PasswordChanged = "password.changed",
    /// The user revoked one of their sessions.
    SessionRevoked = "session.revoked",
    /// A role was created.
    RoleCreated = "role.created",
    /// A role's description or permissions changed.
    RoleUpdated = "role.updated",
    /// A role was deleted (and taken from its holders).
    RoleDeleted = "role.deleted",
    /// A user was given a role.
    RoleAssigned = "role.assigned",
    /// A role was taken from a user.
    RoleRemoved = "role.removed",
    /// An API key was created.
    ApiKeyCreated = "api_key.created",
    /// An API key was revoked.
    ApiKeyRevoked = "api_key.revoked",
    /// An account was disabled (its sessions and keys revoked).
    UserDisabled = "user.disabled",
    /// An account was enabled again.
    UserEnabled = "user.enabled",
    /// A user changed their own profile (display name or e-mail address).
    ProfileUpdated = "user.updated",
    /// An identity-provider identity was linked to an account (at sign-up through the
    /// provider, by the user, or by a verified e-mail address when so configured).
    OAuthLinked = "oauth.linked",
    /// The user unlinked an identity provider.
    OAuthUnlinked = "oauth.unlinked",
}

impl AuditKind {
    /// The kind named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One security event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// UUIDv7: events sort by id in the order they were recorded.
    pub id: AuditEventId,
    /// What happened.
    pub kind: AuditKind,
    /// Who did it (`None` for an anonymous caller, such as a failed login for an unknown
    /// account).
    pub actor: Option<UserId>,
    /// The account it happened to, when there is one.
    pub target: Option<UserId>,
    /// Where the request came from.
    pub client: ClientInfo,
    /// When.
    pub at: DateTime<Utc>,
    /// Event-specific facts (a session or key id, a role name, a reason), as a JSON object.
    /// Never a secret.
    pub details: Map<String, Value>,
}

/// Which events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events this user did or that happened to this user.
    pub user: Option<UserId>,
    /// Only events of this kind.
    pub kind: Option<AuditKind>,
}

impl AccountService {
    /// A new event at `at`, by `actor` (with the request's origin), about `target`.
    pub(crate) fn event(
        &self,
        kind: AuditKind,
        actor: Option<&Actor>,
        target: Option<UserId>,
        at: DateTime<Utc>,
        details: Value,
    ) -> AuditEvent {
        let client = actor.map(|a| a.client.clone()).unwrap_or_default();
        self.event_from(kind, actor.map(|a| a.user_id), target, &client, at, details)
    }

    /// A new event for a caller who is not (yet) authenticated.
    pub(crate) fn event_from(
        &self,
        kind: AuditKind,
        actor: Option<UserId>,
        target: Option<UserId>,
        client: &ClientInfo,
        at: DateTime<Utc>,
        details: Value,
    ) -> AuditEvent {
        AuditEvent {
            id: AuditEventId::from_uuid(self.new_id()),
            kind,
            actor,
            target,
            client: client.clone(),
            at,
            details: match details {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }

    /// A page of audit events, newest first, matching the filter. The cursor is sealed and
    /// bound to the filter: a cursor from another filter is refused.
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditEvent>, ListError> {
        let binding = filter_binding(filter);
        let before = self
            .open_cursor("audit", &binding, cursor)?
            .map(|last| uuid::Uuid::parse_str(&last).map(AuditEventId::from_uuid))
            .transpose()
            .map_err(|_| ListError::InvalidCursor)?;
        let items = self
            .ports
            .audit
            .list_audit_events(filter, before, limit + 1)
            .await?;
        Ok(self.page("audit", &binding, items, limit, |event| {
            event.id.to_string()
        }))
    }

    /// Records events that accompany no change (a failed login). A failure is returned to the
    /// caller, who decides whether the request may still be answered.
    pub(crate) async fn record(&self, event: AuditEvent) -> Result<(), InfraError> {
        self.ports.audit.record_audit_events(&[event]).await
    }
}

fn filter_binding(filter: &AuditFilter) -> String {
    format!(
        "{}/{}",
        filter.user.map(|u| u.to_string()).unwrap_or_default(),
        filter.kind.map(AuditKind::as_str).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(AuditKind::ALL.len(), 18);
        assert_eq!(AuditKind::parse("login"), None);
    }
}
