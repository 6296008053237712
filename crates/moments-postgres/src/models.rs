//! Row shapes of the PostgreSQL tables and their conversions to domain types.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use moments_domain::InfraError;
use moments_domain::ids::{SessionId, UserId};
use moments_domain::session::{ClientInfo, NewRefreshToken, Session};
use moments_domain::user::User;
use moments_domain::value::{Email, Username};
use uuid::Uuid;

use crate::schema::{password_credentials, refresh_tokens, sessions, user_roles, users};

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> InfraError {
    InfraError::internal(format!("stored {what} is invalid: {e}"))
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub(crate) struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub email_verified: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserRow {
    pub fn into_domain(self) -> Result<User, InfraError> {
        Ok(User {
            id: UserId::from_uuid(self.id),
            username: Username::parse(&self.username).map_err(|e| corrupt("username", e))?,
            email: self
                .email
                .as_deref()
                .map(Email::parse)
                .transpose()
                .map_err(|e| corrupt("email", e))?,
            display_name: self.display_name,
            email_verified: self.email_verified,
            disabled: self.disabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub(crate) struct NewUserRow<'a> {
    pub id: Uuid,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub email_key: Option<&'a str>,
    pub email_verified: bool,
    pub display_name: Option<&'a str>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = password_credentials)]
pub(crate) struct NewPasswordRow<'a> {
    pub user_id: Uuid,
    pub hash: &'a str,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = user_roles)]
pub(crate) struct NewUserRoleRow<'a> {
    pub user_id: Uuid,
    pub role_name: &'a str,
    pub granted_at: DateTime<Utc>,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub(crate) struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl SessionRow {
    pub fn from_domain(s: &Session) -> Self {
        Self {
            id: s.id.as_uuid(),
            user_id: s.user_id.as_uuid(),
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
            ip: s.client.ip.clone(),
            user_agent: s.client.user_agent.clone(),
        }
    }

    pub fn into_domain(self) -> Session {
        Session {
            id: SessionId::from_uuid(self.id),
            user_id: UserId::from_uuid(self.user_id),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            client: ClientInfo {
                ip: self.ip,
                user_agent: self.user_agent,
            },
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub(crate) struct RefreshTokenRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub digest: Vec<u8>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
}

impl RefreshTokenRow {
    pub fn new(token: &NewRefreshToken, session_id: Uuid) -> Self {
        Self {
            id: token.id.as_uuid(),
            session_id,
            digest: token.digest.as_bytes().to_vec(),
            issued_at: token.issued_at,
            expires_at: token.expires_at,
            rotated_at: None,
        }
    }
}

/// A `LIKE` pattern matching strings that start with `prefix` literally: `\`, `%` and `_` are
/// escaped with `\` (use `ESCAPE '\'`).
pub(crate) fn like_prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}
