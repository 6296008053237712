//! Row shapes of the SQLite tables and their conversions to domain types.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use moments_domain::InfraError;
use moments_domain::ids::{RefreshTokenId, SessionId, UserId};
use moments_domain::session::{ClientInfo, Session};
use moments_domain::user::User;
use moments_domain::value::{Email, Username};
use uuid::Uuid;

use crate::schema::{password_credentials, refresh_tokens, sessions, user_roles, users};

pub(crate) fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, InfraError> {
    Uuid::parse_str(text).map_err(|e| InfraError::internal(format!("stored id {text:?}: {e}")))
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> InfraError {
    InfraError::internal(format!("stored {what} is invalid: {e}"))
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite))]
pub(crate) struct UserRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub email_verified: bool,
    pub disabled: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl UserRow {
    pub fn into_domain(self) -> Result<User, InfraError> {
        Ok(User {
            id: UserId::from_uuid(parse_uuid(&self.id)?),
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
            created_at: self.created_at.and_utc(),
            updated_at: self.updated_at.and_utc(),
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub(crate) struct NewUserRow<'a> {
    pub id: String,
    pub username: &'a str,
    pub email: Option<&'a str>,
    pub email_key: Option<&'a str>,
    pub email_verified: bool,
    pub display_name: Option<&'a str>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = password_credentials)]
pub(crate) struct NewPasswordRow<'a> {
    pub user_id: String,
    pub hash: &'a str,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = user_roles)]
pub(crate) struct NewUserRoleRow<'a> {
    pub user_id: String,
    pub role_name: &'a str,
    pub granted_at: NaiveDateTime,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions, check_for_backend(diesel::sqlite::Sqlite))]
pub(crate) struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl SessionRow {
    pub fn from_domain(s: &Session) -> Self {
        Self {
            id: uuid_text(s.id.as_uuid()),
            user_id: uuid_text(s.user_id.as_uuid()),
            created_at: s.created_at.naive_utc(),
            last_used_at: s.last_used_at.naive_utc(),
            expires_at: s.expires_at.naive_utc(),
            revoked_at: s.revoked_at.map(|t| t.naive_utc()),
            ip: s.client.ip.clone(),
            user_agent: s.client.user_agent.clone(),
        }
    }

    pub fn into_domain(self) -> Result<Session, InfraError> {
        Ok(Session {
            id: SessionId::from_uuid(parse_uuid(&self.id)?),
            user_id: UserId::from_uuid(parse_uuid(&self.user_id)?),
            created_at: self.created_at.and_utc(),
            last_used_at: self.last_used_at.and_utc(),
            expires_at: self.expires_at.and_utc(),
            revoked_at: self.revoked_at.map(|t| t.and_utc()),
            client: ClientInfo {
                ip: self.ip,
                user_agent: self.user_agent,
            },
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::sqlite::Sqlite))]
pub(crate) struct RefreshTokenRow {
    pub id: String,
    pub session_id: String,
    pub digest: Vec<u8>,
    pub issued_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub rotated_at: Option<NaiveDateTime>,
}

impl RefreshTokenRow {
    pub fn token_id(&self) -> Result<RefreshTokenId, InfraError> {
        Ok(RefreshTokenId::from_uuid(parse_uuid(&self.id)?))
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
