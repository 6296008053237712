//! Valid sample values for tests.

use chrono::{DateTime, TimeDelta, Utc};
use moments_domain::api_key::{ApiKey, NewApiKey};
use moments_domain::audit::{AuditEvent, AuditKind};
use moments_domain::authz::{DEFAULT_ROLE, Permission, RoleName};
use moments_domain::ids::{ApiKeyId, AuditEventId, RefreshTokenId, SessionId, UserId};
use moments_domain::ports::{Clock, SystemClock};
use moments_domain::session::{ClientInfo, NewRefreshToken, NewSession, Session, TokenDigest};
use moments_domain::user::NewUser;
use moments_domain::value::{Email, PasswordHash, Username};
use uuid::Uuid;

/// Now, at the precision stores keep.
pub fn now() -> DateTime<Utc> {
    SystemClock.now()
}

/// A valid new user with the default role and a (fake, never verified) password hash.
pub fn new_user(username: &str, email: &str) -> NewUser {
    NewUser {
        id: UserId::from_uuid(Uuid::now_v7()),
        username: Username::parse(username).unwrap_or_else(|e| panic!("{username}: {e}")),
        email: Some(Email::parse(email).unwrap_or_else(|e| panic!("{email}: {e}"))),
        email_verified: false,
        display_name: None,
        password_hash: Some(PasswordHash::new(format!(
            "$argon2id$v=19$m=8,t=1,p=1$fake-{username}"
        ))),
        roles: vec![default_role()],
        created_at: now(),
    }
}

/// The role every account gets.
pub fn default_role() -> RoleName {
    RoleName::parse(DEFAULT_ROLE).unwrap_or_else(|e| panic!("{e}"))
}

/// A random 32-byte digest.
pub fn digest() -> TokenDigest {
    let mut bytes = Uuid::new_v4().as_bytes().to_vec();
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    TokenDigest::from_bytes(bytes)
}

/// A refresh token record with the given digest, valid for a week.
pub fn refresh_token(digest: TokenDigest) -> NewRefreshToken {
    let now = now();
    NewRefreshToken {
        id: RefreshTokenId::from_uuid(Uuid::now_v7()),
        digest,
        issued_at: now,
        expires_at: now + TimeDelta::days(7),
    }
}

/// A new session for the user with its first refresh token.
pub fn new_session(user_id: UserId, digest: TokenDigest) -> NewSession {
    let now = now();
    NewSession {
        session: Session {
            id: SessionId::from_uuid(Uuid::now_v7()),
            user_id,
            created_at: now,
            last_used_at: now,
            expires_at: now + TimeDelta::days(30),
            revoked_at: None,
            client: ClientInfo::new(Some("203.0.113.7".into()), Some("testkit/1.0".into())),
        },
        refresh_token: refresh_token(digest),
    }
}

/// An audit event of `kind`, now, with no actor or target.
pub fn event(kind: AuditKind) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::from_uuid(Uuid::now_v7()),
        kind,
        actor: None,
        target: None,
        client: ClientInfo::new(Some("203.0.113.7".into()), Some("testkit/1.0".into())),
        at: now(),
        details: serde_json::Map::new(),
    }
}

/// A new API key of `owner` with these scopes, a random prefix and digest, no expiry.
pub fn new_api_key(owner: UserId, scopes: &[&str]) -> NewApiKey {
    let prefix = format!("mk_{}", &Uuid::new_v4().simple().to_string()[..12]);
    NewApiKey {
        key: ApiKey {
            id: ApiKeyId::from_uuid(Uuid::now_v7()),
            owner,
            name: format!("key {prefix}"),
            prefix,
            scopes: scopes
                .iter()
                .map(|s| Permission::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")))
                .collect(),
            created_at: now(),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        },
        digest: digest(),
    }
}
