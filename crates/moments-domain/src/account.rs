//! Accounts: registration, login, refresh-token rotation, logout and the current user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

use crate::authz::{DEFAULT_ROLE, Permission, Role, RoleName};
use crate::error::InfraError;
use crate::grants::{CurrentGrants, Grant};
use crate::ids::{RefreshTokenId, SessionId, UserId};
use crate::ports::{
    Clock, CreateRoleError, CreateUserError, CursorCodec, IdGenerator, PasswordHasher, RoleChange,
    SecretGenerator, SessionStore, TokenError, TokenIssuer, TokenVerifier, UserStore,
};
use crate::revocation::RevocationList;
use crate::session::{
    AccessGrant, ClientInfo, NewRefreshToken, NewSession, OpaqueToken, Session, TokenDigest,
    TokenPair,
};
use crate::user::{Me, NewUser, User, role_grants};
use crate::value::{Email, Password, Username};

/// Lifetimes of sessions and refresh tokens.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// How long a refresh token stays valid unused (the idle lifetime of a session).
    pub refresh_token_ttl: TimeDelta,
    /// Absolute lifetime of a session, however often it is refreshed.
    pub session_max_age: TimeDelta,
    /// How long after a rotation a retry with the immediately preceding token gets the
    /// successor already issued, instead of counting as reuse.
    pub refresh_grace: TimeDelta,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            refresh_token_ttl: TimeDelta::days(7),
            session_max_age: TimeDelta::days(30),
            refresh_grace: TimeDelta::seconds(5),
        }
    }
}

/// A new account, already validated.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Username.
    pub username: Username,
    /// E-mail address.
    pub email: Email,
    /// A password that meets the policy.
    pub password: Password,
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The username belongs to another account.
    #[error("username taken")]
    UsernameTaken,
    /// The e-mail address belongs to another account.
    #[error("email taken")]
    EmailTaken,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a login failed. `InvalidCredentials` is the same for an unknown account and a wrong
/// password.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown account or wrong password; deliberately indistinguishable.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The password was right but the account is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Unknown, expired or revoked token.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// The token had already been rotated: the whole session has been revoked.
    #[error("refresh token reused")]
    RefreshTokenReused,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why an access token did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthenticateError {
    /// Valid but expired.
    #[error("token expired")]
    Expired,
    /// Not a valid access token of this service.
    #[error("invalid token")]
    Invalid,
}

/// Why the current user could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CurrentUserError {
    /// The token's account no longer exists.
    #[error("account not found")]
    NotFound,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a session could not be revoked.
#[derive(Debug, thiserror::Error)]
pub enum RevokeSessionError {
    /// No such session among the caller's own (another user's sessions are not found either).
    #[error("session not found")]
    NotFound,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a role could not be assigned or removed.
#[derive(Debug, thiserror::Error)]
pub enum RoleAssignmentError {
    /// No such user.
    #[error("unknown user")]
    UnknownUser,
    /// No such role.
    #[error("unknown role")]
    UnknownRole,
    /// The role grants a permission the caller does not hold.
    #[error("the role grants {0}, which the caller does not hold")]
    Escalation(Permission),
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a role could not be created, edited or deleted.
#[derive(Debug, thiserror::Error)]
pub enum RoleEditError {
    /// A role of that name exists.
    #[error("role exists")]
    Exists,
    /// No such role.
    #[error("unknown role")]
    NotFound,
    /// Built-in roles cannot be deleted, nor their permissions changed.
    #[error("built-in role")]
    Builtin,
    /// The change involves a permission the caller does not hold.
    #[error("the change involves {0}, which the caller does not hold")]
    Escalation(Permission),
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why an account could not be disabled or enabled.
#[derive(Debug, thiserror::Error)]
pub enum DisableError {
    /// No such account.
    #[error("unknown user")]
    NotFound,
    /// Callers cannot disable themselves (nobody locks the last administrator out by mistake).
    #[error("cannot disable oneself")]
    OwnAccount,
    /// The account holds a permission the caller does not.
    #[error("the account holds {0}, which the caller does not")]
    Escalation(Permission),
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// A page of a list, with the cursor of the next page (`None` on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts, sealed; `None` when this is the last page.
    pub next_cursor: Option<String>,
}

/// Why a list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The cursor was not issued by this service for this list and query.
    #[error("invalid cursor")]
    InvalidCursor,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a password change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangePasswordError {
    /// The current password was wrong.
    #[error("wrong current password")]
    WrongCurrentPassword,
    /// The account no longer exists.
    #[error("account not found")]
    NotFound,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// A session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// The session.
    pub session: Session,
    /// Whether it is the session of the caller's own access token.
    pub current: bool,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user_id: UserId,
    /// The session the access token belongs to.
    pub session_id: SessionId,
    /// Roles granted when the token was issued.
    pub roles: Vec<RoleName>,
    /// Permissions granted when the token was issued.
    pub permissions: Vec<Permission>,
}

impl Actor {
    /// Whether the caller holds the permission (`resource:action`).
    pub fn has_permission(&self, name: &str) -> bool {
        self.permissions.iter().any(|p| p.as_str() == name)
    }
}

/// The ports [`AccountService`] drives.
#[derive(Clone)]
pub struct AccountPorts {
    /// Accounts.
    pub users: Arc<dyn UserStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access-token signing.
    pub issuer: Arc<dyn TokenIssuer>,
    /// Access-token verification.
    pub verifier: Arc<dyn TokenVerifier>,
    /// Refresh-token generation and digests.
    pub secrets: Arc<dyn SecretGenerator>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Identifiers.
    pub ids: Arc<dyn IdGenerator>,
    /// List cursors.
    pub cursors: Arc<dyn CursorCodec>,
}

impl std::fmt::Debug for AccountPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountPorts")
    }
}

/// Registration, login, session refresh and logout, and the current user.
#[derive(Debug, Clone)]
pub struct AccountService {
    ports: AccountPorts,
    policy: SessionPolicy,
    revocations: Arc<RevocationList>,
    grants: Arc<CurrentGrants>,
    /// When each session's last use was last written, to write it at most once a minute.
    touched: Arc<Mutex<HashMap<SessionId, DateTime<Utc>>>>,
}

/// How often a session's last use is written at most.
pub const TOUCH_INTERVAL: TimeDelta = TimeDelta::minutes(1);

/// How far back each revocation poll looks past the newest revocation already seen, to absorb
/// clock differences between instances.
pub const REVOCATION_OVERLAP: TimeDelta = TimeDelta::seconds(30);

/// Clock skew tolerated when verifying access tokens (what the verifier allows).
const ACCESS_TOKEN_LEEWAY: TimeDelta = TimeDelta::seconds(30);

impl AccountService {
    /// A service over the given ports and session policy.
    pub fn new(ports: AccountPorts, policy: SessionPolicy) -> Self {
        let start = ports.clock.now() - Self::horizon(&ports);
        Self {
            revocations: Arc::new(RevocationList::new(start)),
            grants: Arc::new(CurrentGrants::new(start)),
            ports,
            policy,
            touched: Arc::default(),
        }
    }

    pub(crate) fn hasher(&self) -> &dyn crate::ports::PasswordHasher {
        self.ports.hasher.as_ref()
    }

    pub(crate) fn users(&self) -> &dyn UserStore {
        self.ports.users.as_ref()
    }

    pub(crate) fn new_id(&self) -> uuid::Uuid {
        self.ports.ids.new_id()
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.ports.clock.now()
    }

    /// How long a revocation matters: an access token issued just before it stays otherwise
    /// valid for its lifetime plus the leeway.
    fn horizon(ports: &AccountPorts) -> TimeDelta {
        TimeDelta::seconds(ports.issuer.access_token_ttl_seconds()) + ACCESS_TOKEN_LEEWAY
    }

    /// Revokes a session and refuses its access tokens on this instance at once.
    async fn revoke_one(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), InfraError> {
        self.ports.sessions.revoke_session(id, now).await?;
        self.revocations
            .merge([(id, now)], now - Self::horizon(&self.ports));
        Ok(())
    }

    /// Revokes a user's sessions but `keep`, refusing their access tokens here at once.
    async fn revoke_all(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> Result<usize, InfraError> {
        let revoked = self
            .ports
            .sessions
            .revoke_user_sessions(user, keep, now)
            .await?;
        let count = revoked.len();
        self.revocations.merge(
            revoked.into_iter().map(|id| (id, now)),
            now - Self::horizon(&self.ports),
        );
        Ok(count)
    }

    /// Fetches the sessions revoked (by any instance) since the last look, so their access
    /// tokens are refused here too. The server calls this every second; it returns how many
    /// revocations it learnt.
    pub async fn sync_revocations(&self) -> Result<usize, InfraError> {
        let now = self.ports.clock.now();
        let forget_before = now - Self::horizon(&self.ports);
        let since = (self.revocations.watermark() - REVOCATION_OVERLAP).max(forget_before);
        let revoked = self.ports.sessions.revoked_since(since).await?;
        let count = revoked.len();
        self.revocations.merge(revoked, forget_before);
        self.touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, at| *at > now - TOUCH_INTERVAL);
        Ok(count)
    }

    /// Fetches the users whose roles changed (on any instance) since the last look, and keeps
    /// their current grants so older access tokens are judged by them. Returns how many.
    pub async fn sync_grants(&self) -> Result<usize, InfraError> {
        let now = self.ports.clock.now();
        let forget_before = now - Self::horizon(&self.ports);
        let since = (self.grants.watermark() - REVOCATION_OVERLAP).max(forget_before);
        let changed = self.ports.users.authz_changed_since(since).await?;
        let count = changed.len();
        let mut fresh = Vec::with_capacity(count);
        for (user, changed_at) in changed {
            fresh.push((user, self.current_grant(user, changed_at).await?));
        }
        self.grants.merge(fresh, forget_before);
        Ok(count)
    }

    /// Both polls the server runs every second: revoked sessions and changed grants.
    pub async fn sync_changes(&self) -> Result<usize, InfraError> {
        Ok(self.sync_revocations().await? + self.sync_grants().await?)
    }

    async fn current_grant(
        &self,
        user: UserId,
        changed_at: DateTime<Utc>,
    ) -> Result<Grant, InfraError> {
        let (roles, permissions) = role_grants(&self.ports.users.roles_of(user).await?);
        Ok(Grant {
            changed_at,
            roles,
            permissions,
        })
    }

    /// An account's public profile; `None` for unknown (and disabled) accounts.
    pub async fn public_profile(&self, id: UserId) -> Result<Option<User>, InfraError> {
        Ok(self
            .ports
            .users
            .find_user_by_id(id)
            .await?
            .filter(|user| !user.disabled))
    }

    /// Accounts by username, `limit` a page, optionally those whose username or e-mail starts
    /// with `query` (case-insensitive). Keyset pagination: the cursor carries the last username,
    /// sealed and bound to the query, so a page deep in the list costs what the first costs and
    /// a cursor cannot be altered or reused for another query.
    pub async fn list_users(
        &self,
        query: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<User>, ListError> {
        let prefix = query.map(|q| q.trim().to_lowercase()).unwrap_or_default();
        let after = match cursor {
            None => None,
            Some(cursor) => {
                let payload = self
                    .ports
                    .cursors
                    .open(cursor)
                    .ok_or(ListError::InvalidCursor)?;
                let payload = String::from_utf8(payload).map_err(|_| ListError::InvalidCursor)?;
                let mut parts = payload.splitn(3, '\0');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("users"), Some(bound), Some(after)) if bound == prefix => {
                        Some(after.to_owned())
                    }
                    _ => return Err(ListError::InvalidCursor),
                }
            }
        };
        let filter = (!prefix.is_empty()).then_some(prefix.as_str());
        let mut items = self
            .ports
            .users
            .list_users(filter, after.as_deref(), limit + 1)
            .await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| {
                self.ports
                    .cursors
                    .seal(format!("users\0{prefix}\0{}", last.username).as_bytes())
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Disables or re-enables an account. The caller must hold every permission the account
    /// holds. Disabling revokes every session of the account (refresh tokens at once, access
    /// tokens within seconds everywhere); enabling does not bring them back.
    pub async fn set_disabled(
        &self,
        actor: &Actor,
        user: UserId,
        disabled: bool,
    ) -> Result<User, DisableError> {
        if disabled && user == actor.user_id {
            return Err(DisableError::OwnAccount);
        }
        let (_, held) = role_grants(&self.ports.users.roles_of(user).await?);
        if let Some(missing) = held.iter().find(|p| !actor.has_permission(p.as_str())) {
            return Err(DisableError::Escalation(missing.clone()));
        }
        let now = self.ports.clock.now();
        let updated = self
            .ports
            .users
            .set_disabled(user, disabled, now)
            .await?
            .ok_or(DisableError::NotFound)?;
        if disabled {
            self.revoke_all(user, None, now).await?;
        }
        Ok(updated)
    }

    /// Creates a custom role. The caller must hold every permission it grants.
    pub async fn create_role(&self, actor: &Actor, role: Role) -> Result<Role, RoleEditError> {
        Self::require_all(actor, &role.permissions)?;
        let role = Role {
            builtin: false,
            ..role
        };
        match self
            .ports
            .users
            .create_role(&role, self.ports.clock.now())
            .await
        {
            Ok(()) => Ok(role),
            Err(CreateRoleError::Exists) => Err(RoleEditError::Exists),
            Err(CreateRoleError::Infra(e)) => Err(e.into()),
        }
    }

    /// Edits a role: its description, and (custom roles only) its permissions, replaced as a
    /// set. The caller must hold every permission the role grants before and after. Holders'
    /// existing tokens follow at once here and within seconds elsewhere.
    pub async fn update_role(
        &self,
        actor: &Actor,
        name: &RoleName,
        description: Option<&str>,
        permissions: Option<Vec<Permission>>,
    ) -> Result<Role, RoleEditError> {
        let current = self
            .ports
            .users
            .find_role(name)
            .await?
            .ok_or(RoleEditError::NotFound)?;
        if let Some(permissions) = &permissions {
            if current.builtin {
                return Err(RoleEditError::Builtin);
            }
            Self::require_all(actor, &current.permissions)?;
            Self::require_all(actor, permissions)?;
        }
        let now = self.ports.clock.now();
        let updated = self
            .ports
            .users
            .update_role(name, description, permissions.as_deref(), now)
            .await?
            .ok_or(RoleEditError::NotFound)?;
        if permissions.is_some() {
            self.sync_grants().await?;
        }
        Ok(updated)
    }

    /// Deletes a custom role, taking it from its holders. The caller must hold every permission
    /// it grants.
    pub async fn delete_role(&self, actor: &Actor, name: &RoleName) -> Result<(), RoleEditError> {
        let role = self
            .ports
            .users
            .find_role(name)
            .await?
            .ok_or(RoleEditError::NotFound)?;
        if role.builtin {
            return Err(RoleEditError::Builtin);
        }
        Self::require_all(actor, &role.permissions)?;
        if !self
            .ports
            .users
            .delete_role(name, self.ports.clock.now())
            .await?
        {
            return Err(RoleEditError::NotFound);
        }
        self.sync_grants().await?;
        Ok(())
    }

    fn require_all(actor: &Actor, permissions: &[Permission]) -> Result<(), RoleEditError> {
        match permissions
            .iter()
            .find(|p| !actor.has_permission(p.as_str()))
        {
            Some(missing) => Err(RoleEditError::Escalation(missing.clone())),
            None => Ok(()),
        }
    }

    /// Gives a user a role. The caller must hold every permission the role grants (nobody
    /// grants what they do not hold); the change reaches the user's existing access tokens at
    /// once on this instance and within seconds on the others.
    pub async fn assign_role(
        &self,
        actor: &Actor,
        user: UserId,
        role: &RoleName,
    ) -> Result<(), RoleAssignmentError> {
        self.change_role(actor, user, role, true).await
    }

    /// Takes a role from a user, under the same rule as [`AccountService::assign_role`].
    pub async fn remove_role(
        &self,
        actor: &Actor,
        user: UserId,
        role: &RoleName,
    ) -> Result<(), RoleAssignmentError> {
        self.change_role(actor, user, role, false).await
    }

    async fn change_role(
        &self,
        actor: &Actor,
        user: UserId,
        role: &RoleName,
        assign: bool,
    ) -> Result<(), RoleAssignmentError> {
        let Some(found) = self.ports.users.find_role(role).await? else {
            return Err(RoleAssignmentError::UnknownRole);
        };
        if let Some(missing) = found
            .permissions
            .iter()
            .find(|p| !actor.has_permission(p.as_str()))
        {
            return Err(RoleAssignmentError::Escalation(missing.clone()));
        }
        let now = self.ports.clock.now();
        let outcome = if assign {
            self.ports.users.assign_role(user, role, now).await?
        } else {
            self.ports.users.remove_role(user, role, now).await?
        };
        match outcome {
            RoleChange::Changed => {
                let grant = self.current_grant(user, now).await?;
                self.grants
                    .merge([(user, grant)], now - Self::horizon(&self.ports));
                Ok(())
            }
            RoleChange::Unchanged => Ok(()),
            RoleChange::UnknownUser => Err(RoleAssignmentError::UnknownUser),
            RoleChange::UnknownRole => Err(RoleAssignmentError::UnknownRole),
        }
    }

    /// Records that the actor's session was used, at most once a minute per session.
    pub async fn touch(&self, actor: &Actor) -> Result<(), InfraError> {
        let now = self.ports.clock.now();
        {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            match touched.get(&actor.session_id) {
                Some(at) if now - *at < TOUCH_INTERVAL => return Ok(()),
                _ => touched.insert(actor.session_id, now),
            };
        }
        self.ports
            .sessions
            .touch_session(actor.session_id, now)
            .await
    }

    /// Creates an account with the default role. The password is hashed off the executor.
    pub async fn register(&self, registration: Registration) -> Result<User, RegisterError> {
        self.register_with_roles(registration, &[]).await
    }

    /// Creates an account with the default role plus `extra_roles` (the CLI's `--admin`).
    pub async fn register_with_roles(
        &self,
        registration: Registration,
        extra_roles: &[RoleName],
    ) -> Result<User, RegisterError> {
        let mut roles = vec![default_role()?];
        for role in extra_roles {
            if !roles.contains(role) {
                roles.push(role.clone());
            }
        }
        let hash = self.ports.hasher.hash(&registration.password).await?;
        let new_user = NewUser {
            id: UserId::from_uuid(self.ports.ids.new_id()),
            username: registration.username,
            email: registration.email,
            display_name: None,
            password_hash: Some(hash),
            roles,
            created_at: self.ports.clock.now(),
        };
        match self.ports.users.create_user(new_user).await {
            Ok(user) => Ok(user),
            Err(CreateUserError::UsernameTaken) => Err(RegisterError::UsernameTaken),
            Err(CreateUserError::EmailTaken) => Err(RegisterError::EmailTaken),
            Err(CreateUserError::UnknownRole(role)) => {
                Err(InfraError::internal(format!("role {role} is missing from the store")).into())
            }
            Err(CreateUserError::Infra(e)) => Err(e.into()),
        }
    }

    /// Checks a username-or-email and password and starts a session.
    ///
    /// An unknown account, an account without a password and a wrong password all cost one
    /// password verification and answer [`LoginError::InvalidCredentials`]. A disabled account
    /// is reported only after the right password.
    pub async fn login(
        &self,
        login: &str,
        password: &Password,
        client: ClientInfo,
    ) -> Result<TokenPair, LoginError> {
        let user = self.find_by_login(login).await?;
        let hash = match &user {
            Some(user) => self.ports.users.password_hash(user.id).await?,
            None => None,
        };
        let verified = self.ports.hasher.verify(password, hash.as_ref()).await?;
        let user = match user {
            Some(user) if verified => user,
            _ => return Err(LoginError::InvalidCredentials),
        };
        if user.disabled {
            return Err(LoginError::AccountDisabled);
        }
        // A legacy (bcrypt) or weaker hash is replaced now that the password is known.
        if let Some(hash) = &hash
            && self.ports.hasher.needs_rehash(hash)
        {
            let upgraded = self.ports.hasher.hash(password).await?;
            let now = self.ports.clock.now();
            self.ports
                .users
                .set_password_hash(user.id, &upgraded, now)
                .await?;
        }
        Ok(self.start_session(&user, client).await?)
    }

    /// Exchanges a refresh token for a new pair, rotating it: the presented token is retired
    /// and its successor issued, atomically.
    ///
    /// - A retired token presented again revokes the whole session (`RefreshTokenReused`),
    ///   except the honest race: the immediately preceding token, within the grace window, gets
    ///   the successor already issued (successors are derived, not random, so every instance
    ///   and every concurrent request agrees on it). Older generations are never honoured.
    /// - Unknown, expired (idle or absolute lifetime) and revoked tokens are
    ///   `InvalidRefreshToken`.
    pub async fn refresh(&self, presented: &str) -> Result<TokenPair, RefreshError> {
        let digest = self.ports.secrets.digest(presented);
        let successor_token = self.ports.secrets.successor(presented);
        let successor_digest = self.ports.secrets.digest(successor_token.expose());
        // Two rounds at most: if a concurrent request rotates the token between our read and
        // our write, the second round sees it rotated and takes the grace path.
        for _ in 0..2 {
            let Some(record) = self.ports.sessions.find_refresh_token(&digest).await? else {
                return Err(RefreshError::InvalidRefreshToken);
            };
            let now = self.ports.clock.now();
            let session = &record.session;
            if session.revoked_at.is_some() || session.expires_at <= now {
                return Err(RefreshError::InvalidRefreshToken);
            }
            if let Some(rotated_at) = record.rotated_at {
                return self
                    .retry_within_grace(
                        session,
                        rotated_at,
                        successor_token,
                        &successor_digest,
                        now,
                    )
                    .await;
            }
            if record.expires_at <= now {
                return Err(RefreshError::InvalidRefreshToken);
            }
            let user = match self.ports.users.find_user_by_id(session.user_id).await? {
                Some(user) if !user.disabled => user,
                _ => {
                    self.revoke_one(session.id, now).await?;
                    return Err(RefreshError::InvalidRefreshToken);
                }
            };
            let successor = NewRefreshToken {
                id: RefreshTokenId::from_uuid(self.ports.ids.new_id()),
                digest: successor_digest.clone(),
                issued_at: now,
                expires_at: (now + self.policy.refresh_token_ttl).min(session.expires_at),
            };
            let expires_at = successor.expires_at;
            if self
                .ports
                .sessions
                .rotate_refresh_token(&digest, successor, now)
                .await?
            {
                return Ok(self
                    .pair(&user, session.id, successor_token, expires_at, now)
                    .await?);
            }
        }
        Err(RefreshError::InvalidRefreshToken)
    }

    /// A retired token came back: within the grace window, and if its successor is the live
    /// token of the session, hand that successor out again; otherwise it is reuse.
    async fn retry_within_grace(
        &self,
        session: &Session,
        rotated_at: DateTime<Utc>,
        successor_token: OpaqueToken,
        successor_digest: &TokenDigest,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, RefreshError> {
        if now - rotated_at <= self.policy.refresh_grace {
            let live = self
                .ports
                .sessions
                .find_refresh_token(successor_digest)
                .await?;
            let live = live.filter(|next| {
                next.session.id == session.id && next.rotated_at.is_none() && next.expires_at > now
            });
            if let Some(next) = live
                && let Some(user) = self.ports.users.find_user_by_id(session.user_id).await?
                && !user.disabled
            {
                return Ok(self
                    .pair(&user, session.id, successor_token, next.expires_at, now)
                    .await?);
            }
        }
        self.revoke_one(session.id, now).await?;
        Err(RefreshError::RefreshTokenReused)
    }

    async fn pair(
        &self,
        user: &User,
        session_id: SessionId,
        refresh_token: OpaqueToken,
        refresh_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, InfraError> {
        let access = self.issue_access(user, session_id).await?;
        Ok(TokenPair {
            access_token: access.token,
            refresh_token,
            expires_in: self.ports.issuer.access_token_ttl_seconds(),
            refresh_expires_in: (refresh_expires_at - now).num_seconds(),
            session_id,
        })
    }

    /// Revokes the session a refresh token belongs to. Unknown or already revoked tokens are
    /// not an error (RFC 7009): the result is the same, the token does not work.
    pub async fn logout(&self, presented: &str) -> Result<(), InfraError> {
        let digest = self.ports.secrets.digest(presented);
        if let Some(record) = self.ports.sessions.find_refresh_token(&digest).await? {
            let now = self.ports.clock.now();
            self.revoke_one(record.session.id, now).await?;
        }
        Ok(())
    }

    /// Every role with its permissions, sorted by name.
    pub async fn roles(&self) -> Result<Vec<crate::authz::Role>, InfraError> {
        self.ports.users.list_roles().await
    }

    /// A role by name.
    pub async fn role(&self, name: &RoleName) -> Result<Option<crate::authz::Role>, InfraError> {
        self.ports.users.find_role(name).await
    }

    /// The public keys that verify access tokens, as a JWK Set document (JSON).
    pub fn jwks_json(&self) -> String {
        self.ports.verifier.jwks_json()
    }

    /// The caller's live sessions, most recently used first.
    pub async fn sessions(&self, actor: &Actor) -> Result<Vec<SessionView>, InfraError> {
        let now = self.ports.clock.now();
        let sessions = self
            .ports
            .sessions
            .active_sessions(actor.user_id, now)
            .await?;
        Ok(sessions
            .into_iter()
            .map(|session| SessionView {
                current: session.id == actor.session_id,
                session,
            })
            .collect())
    }

    /// Revokes one of the caller's own sessions (possibly the current one).
    pub async fn revoke_own_session(
        &self,
        actor: &Actor,
        id: SessionId,
    ) -> Result<(), RevokeSessionError> {
        match self.ports.sessions.find_session(id).await? {
            Some(session) if session.user_id == actor.user_id && session.revoked_at.is_none() => {
                self.revoke_one(id, self.ports.clock.now()).await?;
                Ok(())
            }
            _ => Err(RevokeSessionError::NotFound),
        }
    }

    /// Revokes every session of the caller, the current one included.
    pub async fn logout_all(&self, actor: &Actor) -> Result<usize, InfraError> {
        self.revoke_all(actor.user_id, None, self.ports.clock.now())
            .await
    }

    /// Changes the caller's password after checking the current one, and revokes the caller's
    /// other sessions (the current one stays signed in).
    pub async fn change_password(
        &self,
        actor: &Actor,
        current: &Password,
        new: &Password,
    ) -> Result<(), ChangePasswordError> {
        let hash = self.ports.users.password_hash(actor.user_id).await?;
        if !self.ports.hasher.verify(current, hash.as_ref()).await? {
            return Err(ChangePasswordError::WrongCurrentPassword);
        }
        if self
            .ports
            .users
            .find_user_by_id(actor.user_id)
            .await?
            .is_none()
        {
            return Err(ChangePasswordError::NotFound);
        }
        let new_hash = self.ports.hasher.hash(new).await?;
        let now = self.ports.clock.now();
        self.ports
            .users
            .set_password_hash(actor.user_id, &new_hash, now)
            .await?;
        self.revoke_all(actor.user_id, Some(actor.session_id), now)
            .await?;
        Ok(())
    }

    /// Verifies an access token and returns the caller it names. Tokens of revoked sessions are
    /// refused (from memory: no database query).
    pub fn authenticate(&self, token: &str) -> Result<Actor, AuthenticateError> {
        match self.ports.verifier.verify(token) {
            Ok(claims) if self.revocations.contains(claims.session_id) => {
                Err(AuthenticateError::Invalid)
            }
            Ok(claims) => {
                // A token issued before the user's roles last changed is judged by the roles now.
                let (roles, permissions) =
                    match self.grants.newer_than(claims.user_id, claims.issued_at) {
                        Some(grant) => (grant.roles, grant.permissions),
                        None => (claims.roles, claims.permissions),
                    };
                Ok(Actor {
                    user_id: claims.user_id,
                    session_id: claims.session_id,
                    roles,
                    permissions,
                })
            }
            Err(TokenError::Expired) => Err(AuthenticateError::Expired),
            Err(TokenError::Invalid) => Err(AuthenticateError::Invalid),
        }
    }

    /// The caller's account with its current roles and permissions.
    pub async fn current_user(&self, actor: &Actor) -> Result<Me, CurrentUserError> {
        let user = self
            .ports
            .users
            .find_user_by_id(actor.user_id)
            .await?
            .ok_or(CurrentUserError::NotFound)?;
        let roles = self.ports.users.roles_of(user.id).await?;
        let has_password = self.ports.users.password_hash(user.id).await?.is_some();
        let (roles, permissions) = role_grants(&roles);
        Ok(Me {
            user,
            roles,
            permissions,
            has_password,
            providers: Vec::new(),
        })
    }

    async fn find_by_login(&self, login: &str) -> Result<Option<User>, InfraError> {
        if login.contains('@') {
            match Email::parse(login) {
                Ok(email) => self.ports.users.find_user_by_email(&email).await,
                Err(_) => Ok(None),
            }
        } else {
            match Username::parse(login) {
                Ok(username) => self.ports.users.find_user_by_username(&username).await,
                Err(_) => Ok(None),
            }
        }
    }

    async fn start_session(
        &self,
        user: &User,
        client: ClientInfo,
    ) -> Result<TokenPair, InfraError> {
        let now = self.ports.clock.now();
        let session = Session {
            id: SessionId::from_uuid(self.ports.ids.new_id()),
            user_id: user.id,
            created_at: now,
            last_used_at: now,
            expires_at: now + self.policy.session_max_age,
            revoked_at: None,
            client,
        };
        let refresh_token = self.ports.secrets.opaque_token();
        let first = NewRefreshToken {
            id: RefreshTokenId::from_uuid(self.ports.ids.new_id()),
            digest: self.ports.secrets.digest(refresh_token.expose()),
            issued_at: now,
            expires_at: (now + self.policy.refresh_token_ttl).min(session.expires_at),
        };
        let expires_at = first.expires_at;
        self.ports
            .sessions
            .create_session(NewSession {
                session: session.clone(),
                refresh_token: first,
            })
            .await?;
        self.pair(user, session.id, refresh_token, expires_at, now)
            .await
    }

    async fn issue_access(
        &self,
        user: &User,
        session_id: SessionId,
    ) -> Result<crate::session::AccessToken, InfraError> {
        let roles = self.ports.users.roles_of(user.id).await?;
        let (roles, permissions) = role_grants(&roles);
        self.ports.issuer.issue(&AccessGrant {
            user_id: user.id,
            session_id,
            roles,
            permissions,
        })
    }
}

fn default_role() -> Result<RoleName, InfraError> {
    RoleName::parse(DEFAULT_ROLE).map_err(|e| InfraError::internal(e.message))
}
