//! API keys: long-lived credentials for scripts and services, each carrying a subset of its
//! owner's permissions.
//!
//! A key is `mk_` followed by 43 URL-safe characters (256 random bits). It is shown once, at
//! creation; the store keeps its public prefix (`mk_` and the next 12 characters, for look-up
//! and for people to tell keys apart) and a keyed hash of the whole key (HMAC-SHA-256 with a
//! server secret, so a leaked table yields nothing usable). At each use the key's scopes are
//! intersected with what its owner holds *now*: a demoted owner's keys lose the permission too.

use serde_json::json;

use chrono::{DateTime, Utc};

use crate::account::{AccountService, Actor, Credential};
use crate::audit::AuditKind;
use crate::authz::{Permission, catalogue};
use crate::error::InfraError;
use crate::ids::{ApiKeyId, UserId};
use crate::ports::CreateApiKeyStoreError;
use crate::session::{ClientInfo, OpaqueToken, TokenDigest};
use crate::value::InvalidValue;

/// What every key starts with.
pub const KEY_PREFIX: &str = "mk_";
/// Characters after [`KEY_PREFIX`]: 32 random bytes in unpadded base64url.
pub const KEY_BODY_LEN: usize = 43;
/// Length of the stored look-up prefix (`mk_` and 12 characters: 72 random bits).
pub const LOOKUP_PREFIX_LEN: usize = KEY_PREFIX.len() + 12;

/// The look-up prefix of a presented key, if it has the shape of a key at all.
pub fn lookup_prefix(presented: &str) -> Option<&str> {
    let body = presented.strip_prefix(KEY_PREFIX)?;
    let well_formed = body.len() == KEY_BODY_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| &presented[..LOOKUP_PREFIX_LEN])
}

/// A key's name: 1 to 100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(String);

impl ApiKeyName {
    /// Checks a key name.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InvalidValue::new("required", "must not be empty"));
        }
        if name.chars().count() > 100 {
            return Err(InvalidValue::new(
                "too_long",
                "must be at most 100 characters",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "invalid_format",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An API key as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's id.
    pub id: ApiKeyId,
    /// Whose key it is.
    pub owner: UserId,
    /// The owner's name for it.
    pub name: String,
    /// The public look-up prefix.
    pub prefix: String,
    /// What the key may do (at most what its owner may do at the time of use), sorted.
    pub scopes: Vec<Permission>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (written at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key to store: the record and the keyed hash of the secret.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The record.
    pub key: ApiKey,
    /// The keyed hash of the whole key.
    pub digest: TokenDigest,
}

/// What authenticating a key needs, from one look-up by prefix.
#[derive(Debug, Clone)]
pub struct ApiKeyCredential {
    /// The key.
    pub key: ApiKey,
    /// The stored keyed hash.
    pub digest: TokenDigest,
    /// Whether the owner's account is disabled.
    pub owner_disabled: bool,
    /// What the owner holds now (the union of their roles' permissions).
    pub owner_permissions: Vec<Permission>,
}

/// A request for a new key.
#[derive(Debug, Clone)]
pub struct ApiKeyRequest {
    /// Its name.
    pub name: ApiKeyName,
    /// Its scopes; each must be held by the caller.
    pub scopes: Vec<Permission>,
    /// When it expires, if ever; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key just created: the record and, this once, the secret.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The record.
    pub key: ApiKey,
    /// The key itself. Never stored, never shown again.
    pub secret: OpaqueToken,
}

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateApiKeyError {
    /// A scope the caller does not hold (nobody grants what they do not hold).
    #[error("the caller does not hold {0}")]
    ScopeNotHeld(Permission),
    /// A scope that is not in the permission catalogue.
    #[error("unknown permission {0}")]
    UnknownScope(Permission),
    /// The expiry is not in the future.
    #[error("expires_at is in the past")]
    ExpiryInPast,
    /// Keys are made by people signed in with a session, not by other keys.
    #[error("an API key cannot create API keys")]
    NeedsSession,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a key could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeApiKeyError {
    /// No such live key among the caller's own (other users' keys are not found either).
    #[error("api key not found")]
    NotFound,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a presented key did not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyAuthError {
    /// Unknown, malformed, revoked, or its owner is disabled.
    #[error("invalid api key")]
    Invalid,
    /// Past its expiry.
    #[error("api key expired")]
    Expired,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl AccountService {
    /// Creates a key for the caller, who must hold every scope. The secret is in the result and
    /// nowhere else.
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        request: ApiKeyRequest,
    ) -> Result<CreatedApiKey, CreateApiKeyError> {
        if actor.session_id().is_none() {
            return Err(CreateApiKeyError::NeedsSession);
        }
        let known = catalogue();
        let mut scopes = request.scopes;
        scopes.sort();
        scopes.dedup();
        for scope in &scopes {
            if !known.iter().any(|p| p.name == scope.as_str()) {
                return Err(CreateApiKeyError::UnknownScope(scope.clone()));
            }
            if !actor.has_permission(scope.as_str()) {
                return Err(CreateApiKeyError::ScopeNotHeld(scope.clone()));
            }
        }
        let now = self.now();
        if request.expires_at.is_some_and(|at| at <= now) {
            return Err(CreateApiKeyError::ExpiryInPast);
        }
        // A prefix collision (72 random bits) is vanishingly rare; a fresh key settles it.
        for _ in 0..3 {
            let secret = self.ports.secrets.api_key();
            let prefix = lookup_prefix(secret.expose())
                .ok_or_else(|| InfraError::internal("generated key is malformed"))?
                .to_owned();
            let key = ApiKey {
                id: ApiKeyId::from_uuid(self.new_id()),
                owner: actor.user_id,
                name: request.name.as_str().to_owned(),
                prefix,
                scopes: scopes.clone(),
                created_at: now,
                expires_at: request.expires_at,
                last_used_at: None,
                revoked_at: None,
            };
            let event = self.event(
                AuditKind::ApiKeyCreated,
                Some(actor),
                Some(actor.user_id),
                now,
                json!({
                    "key_id": key.id,
                    "name": key.name,
                    "prefix": key.prefix,
                    "scopes": key.scopes.iter().map(Permission::as_str).collect::<Vec<_>>(),
                    "expires_at": key.expires_at,
                }),
            );
            let new = NewApiKey {
                digest: self.ports.secrets.keyed_digest(secret.expose()),
                key,
            };
            match self.ports.keys.create_api_key(&new, &event).await {
                Ok(()) => {
                    return Ok(CreatedApiKey {
                        key: new.key,
                        secret,
                    });
                }
                Err(CreateApiKeyStoreError::PrefixTaken) => continue,
                Err(CreateApiKeyStoreError::Infra(e)) => return Err(e.into()),
            }
        }
        Err(InfraError::internal("could not find a free key prefix").into())
    }

    /// The caller's keys that are not revoked (expired ones included), newest first.
    pub async fn api_keys(&self, actor: &Actor) -> Result<Vec<ApiKey>, InfraError> {
        self.ports.keys.list_api_keys(actor.user_id).await
    }

    /// Revokes one of the caller's own keys.
    pub async fn revoke_api_key(
        &self,
        actor: &Actor,
        id: ApiKeyId,
    ) -> Result<(), RevokeApiKeyError> {
        let now = self.now();
        let event = self.event(
            AuditKind::ApiKeyRevoked,
            Some(actor),
            Some(actor.user_id),
            now,
            json!({ "key_id": id }),
        );
        if self
            .ports
            .keys
            .revoke_api_key(id, actor.user_id, now, &event)
            .await?
        {
            Ok(())
        } else {
            Err(RevokeApiKeyError::NotFound)
        }
    }

    /// Authenticates a presented key: one indexed look-up by prefix, a constant-time check of
    /// the keyed hash, then revocation, expiry and the owner's state. The caller may do what
    /// both the key's scopes and the owner's current permissions allow. Recording the use is
    /// [`AccountService::touch`]'s job, as for sessions.
    pub async fn authenticate_key(
        &self,
        presented: &str,
        client: ClientInfo,
    ) -> Result<Actor, ApiKeyAuthError> {
        let prefix = lookup_prefix(presented).ok_or(ApiKeyAuthError::Invalid)?;
        let Some(found) = self.ports.keys.find_api_key(prefix).await? else {
            return Err(ApiKeyAuthError::Invalid);
        };
        if !self
            .ports
            .secrets
            .verify_keyed_digest(presented, &found.digest)
        {
            return Err(ApiKeyAuthError::Invalid);
        }
        if found.key.revoked_at.is_some() || found.owner_disabled {
            return Err(ApiKeyAuthError::Invalid);
        }
        let now = self.now();
        if found.key.expires_at.is_some_and(|at| at <= now) {
            return Err(ApiKeyAuthError::Expired);
        }
        let permissions = found
            .key
            .scopes
            .iter()
            .filter(|scope| found.owner_permissions.contains(scope))
            .cloned()
            .collect();
        Ok(Actor {
            user_id: found.key.owner,
            credential: Credential::ApiKey(found.key.id),
            roles: Vec::new(),
            permissions,
            client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_have_a_lookup_prefix() {
        let key = format!("mk_{}", "A".repeat(KEY_BODY_LEN));
        assert_eq!(lookup_prefix(&key), Some(&key[..LOOKUP_PREFIX_LEN]));
        for bad in [
            String::new(),
            "mk_".into(),
            format!("mk_{}", "A".repeat(KEY_BODY_LEN - 1)),
            format!("mk_{}", "A".repeat(KEY_BODY_LEN + 1)),
            format!("mk_{}!", "A".repeat(KEY_BODY_LEN - 1)),
            format!("xx_{}", "A".repeat(KEY_BODY_LEN)),
            format!("mk_{}é", "A".repeat(KEY_BODY_LEN - 2)),
        ] {
            assert_eq!(lookup_prefix(&bad), None, "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            ApiKeyName::parse("  ci deploy ").unwrap().as_str(),
            "ci deploy"
        );
        assert_eq!(ApiKeyName::parse("   ").unwrap_err().code, "required");
        assert_eq!(
            ApiKeyName::parse(&"x".repeat(101)).unwrap_err().code,
            "too_long"
        );
        assert_eq!(
            ApiKeyName::parse("a\nb").unwrap_err().code,
            "invalid_format"
        );
    }
}
