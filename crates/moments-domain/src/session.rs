//! Sessions, refresh tokens and access tokens.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::authz::{Permission, RoleName};
use crate::ids::{RefreshTokenId, SessionId, UserId};

/// An opaque secret handed to a client (a refresh token). It never prints.
#[derive(Clone)]
pub struct OpaqueToken(SecretString);

impl OpaqueToken {
    /// Wraps a token string.
    pub fn new(token: String) -> Self {
        Self(SecretString::from(token))
    }

    /// The token text, to hand to the client once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken([redacted])")
    }
}

/// The digest under which an opaque token is stored: the token itself is never stored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenDigest(Vec<u8>);

impl TokenDigest {
    /// Wraps digest bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The digest bytes, for storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenDigest([redacted])")
    }
}

/// Where a request came from, recorded on sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Client IP address, as text.
    pub ip: Option<String>,
    /// The `User-Agent` header, truncated.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// Longest user agent kept, in characters.
    pub const MAX_USER_AGENT: usize = 512;

    /// Builds client info, truncating an over-long user agent.
    pub fn new(ip: Option<String>, user_agent: Option<String>) -> Self {
        let user_agent = user_agent.map(|ua| ua.chars().take(Self::MAX_USER_AGENT).collect());
        Self { ip, user_agent }
    }
}

/// A session: one sign-in, and the family of refresh tokens rotated from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's id (the `sid` claim of its access tokens).
    pub id: SessionId,
    /// Whose session it is.
    pub user_id: UserId,
    /// When the user signed in.
    pub created_at: DateTime<Utc>,
    /// When a token of the session was last refreshed.
    pub last_used_at: DateTime<Utc>,
    /// Absolute end of the session, however often it is refreshed.
    pub expires_at: DateTime<Utc>,
    /// Set when the session was revoked (logout, reuse detected, …).
    pub revoked_at: Option<DateTime<Utc>>,
    /// Client at sign-in.
    pub client: ClientInfo,
}

/// A refresh token to store.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// The token's id.
    pub id: RefreshTokenId,
    /// Digest of the token text.
    pub digest: TokenDigest,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it stops being accepted (idle lifetime).
    pub expires_at: DateTime<Utc>,
}

/// A session to store, with its first refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session.
    pub session: Session,
    /// Its first refresh token.
    pub refresh_token: NewRefreshToken,
}

/// A stored refresh token and the session it belongs to.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    /// The token's id.
    pub id: RefreshTokenId,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// Set once the token has been exchanged for a successor.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The session (family) it belongs to.
    pub session: Session,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user (`sub`).
    pub user_id: UserId,
    /// The session (`sid`).
    pub session_id: SessionId,
    /// Roles at issue time.
    pub roles: Vec<RoleName>,
    /// Permissions at issue time.
    pub permissions: Vec<Permission>,
    /// Issue time (`iat`).
    pub issued_at: DateTime<Utc>,
    /// Expiry (`exp`).
    pub expires_at: DateTime<Utc>,
}

/// What an access token is issued for.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    /// The user (`sub`).
    pub user_id: UserId,
    /// The session (`sid`).
    pub session_id: SessionId,
    /// Roles to embed.
    pub roles: Vec<RoleName>,
    /// Permissions to embed.
    pub permissions: Vec<Permission>,
}

/// A signed access token.
#[derive(Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: OpaqueToken,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a successful login or refresh hands the client.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// Short-lived access token.
    pub access_token: OpaqueToken,
    /// Opaque refresh token.
    pub refresh_token: OpaqueToken,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Seconds until the refresh token expires.
    pub refresh_expires_in: i64,
    /// The session the pair belongs to.
    pub session_id: SessionId,
}
