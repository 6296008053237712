//! Accounts: registration, login, refresh-token rotation, logout and the current user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use crate::audit::{AuditEvent, AuditKind};
use crate::authz::{DEFAULT_ROLE, Permission, RoleName};
use crate::error::InfraError;
use crate::grants::{CurrentGrants, Grant};
use crate::ids::{ApiKeyId, RefreshTokenId, SessionId, UserId};
use crate::ports::{
    ApiKeyStore, AuditStore, Clock, CreateUserError, CursorCodec, EphemeralStore, IdGenerator,
    IdentityStore, PasswordHasher, RevocationBroadcast, SecretGenerator, SessionStore, TokenError,
    TokenIssuer, TokenVerifier, UserStore,
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
    /// When failed logins for one account throttle it.
    pub login_throttle: LoginThrottle,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            refresh_token_ttl: TimeDelta::days(7),
            session_max_age: TimeDelta::days(30),
            refresh_grace: TimeDelta::seconds(5),
            login_throttle: LoginThrottle::default(),
        }
    }
}

/// The per-account login throttle: `failures` failed logins for one login name within
/// `cool_down` lock that name for `cool_down`; each further lock within a day doubles the
/// time, up to [`LoginThrottle::MAX_COOL_DOWN`]. A successful login clears the count.
///
/// Counted by the login name as typed (normalised), never by whether an account has it, so
/// unknown names are throttled exactly like real ones; counted in the shared short-lived
/// store, so rotating addresses or instances does not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    /// Failures that trigger a lock.
    pub failures: u32,
    /// The window failures are counted in, and the first lock's length.
    pub cool_down: Duration,
}

impl LoginThrottle {
    /// The longest lock, however many locks came before.
    pub const MAX_COOL_DOWN: Duration = Duration::from_secs(3600);
    /// How long locks are remembered for doubling.
    pub const STRIKE_MEMORY: Duration = Duration::from_secs(86_400);

    /// The lock after `strikes` locks within a day (1 for the first).
    pub fn lock_for(&self, strikes: u64) -> Duration {
        let doublings = u32::try_from(strikes.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        self.cool_down
            .saturating_mul(1 << doublings)
            .min(Self::MAX_COOL_DOWN.max(self.cool_down))
    }
}

impl Default for LoginThrottle {
    /// Five failures a minute.
    fn default() -> Self {
        Self {
            failures: 5,
            cool_down: Duration::from_secs(60),
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
    /// Too many failed logins for this login name: no password is checked until the lock ends.
    #[error("login throttled")]
    Throttled {
        /// When the next attempt will be considered.
        retry_after: Duration,
    },
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

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    /// An access token of this session.
    Session(SessionId),
    /// This API key.
    ApiKey(ApiKeyId),
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user_id: UserId,
    /// The session or API key the request came with.
    pub credential: Credential,
    /// Roles the caller acts with (empty for an API key, which acts with its scopes).
    pub roles: Vec<RoleName>,
    /// What the caller may do now: the token's grants (or the user's current ones after a
    /// change), or a key's scopes intersected with its owner's current permissions.
    pub permissions: Vec<Permission>,
    /// Where the request came from, for the audit log.
    pub client: ClientInfo,
}

impl Actor {
    /// Whether the caller holds the permission (`resource:action`).
    pub fn has_permission(&self, name: &str) -> bool {
        self.permissions.iter().any(|p| p.as_str() == name)
    }

    /// The session, when the caller came with an access token.
    pub fn session_id(&self) -> Option<SessionId> {
        match self.credential {
            Credential::Session(id) => Some(id),
            Credential::ApiKey(_) => None,
        }
    }

    /// The same caller, with the request's origin.
    #[must_use]
    pub fn with_client(self, client: ClientInfo) -> Self {
        Self { client, ..self }
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
    /// API keys.
    pub keys: Arc<dyn ApiKeyStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditStore>,
    /// Refresh-token generation and digests.
    pub secrets: Arc<dyn SecretGenerator>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Identifiers.
    pub ids: Arc<dyn IdGenerator>,
    /// List cursors.
    pub cursors: Arc<dyn CursorCodec>,
    /// Short-lived shared state (login failure counts).
    pub ephemeral: Arc<dyn EphemeralStore>,
    /// Tells other instances about revoked sessions at once.
    pub broadcast: Arc<dyn RevocationBroadcast>,
    /// Links to identity-provider identities.
    pub identities: Arc<dyn IdentityStore>,
}

impl std::fmt::Debug for AccountPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountPorts")
    }
}

/// Registration, login, session refresh and logout, and the current user.
#[derive(Debug, Clone)]
pub struct AccountService {
    pub(crate) ports: AccountPorts,
    policy: SessionPolicy,
    revocations: Arc<RevocationList>,
    pub(crate) grants: Arc<CurrentGrants>,
    /// When each session's or key's last use was last written, to write it at most once a
    /// minute.
    touched: Arc<Mutex<HashMap<Credential, DateTime<Utc>>>>,
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
    pub(crate) fn horizon(ports: &AccountPorts) -> TimeDelta {
        TimeDelta::seconds(ports.issuer.access_token_ttl_seconds()) + ACCESS_TOKEN_LEEWAY
    }

    /// Revokes a session (recording `event` with it) and refuses its access tokens on this
    /// instance at once.
    async fn revoke_one(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        event: Option<&AuditEvent>,
    ) -> Result<(), InfraError> {
        self.ports.sessions.revoke_session(id, now, event).await?;
        self.refuse_sessions(vec![id], now).await;
        Ok(())
    }

    /// Refuses the access tokens of sessions just revoked, on this instance at once, and
    /// announces them to the others (which also learn them from their next poll).
    pub(crate) async fn refuse_sessions(
        &self,
        revoked: Vec<SessionId>,
        now: DateTime<Utc>,
    ) -> usize {
        if !revoked.is_empty() {
            self.ports.broadcast.announce(&revoked).await;
        }
        self.merge_revocations(revoked, now)
    }

    /// Refuses the access tokens of sessions another instance announced as revoked.
    pub fn learn_revocations(&self, revoked: Vec<SessionId>) -> usize {
        self.merge_revocations(revoked, self.ports.clock.now())
    }

    fn merge_revocations(&self, revoked: Vec<SessionId>, now: DateTime<Utc>) -> usize {
        let count = revoked.len();
        self.revocations.merge(
            revoked.into_iter().map(|id| (id, now)),
            now - Self::horizon(&self.ports),
        );
        count
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

    pub(crate) async fn current_grant(
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

    /// Records that the actor's session or API key was used, at most once a minute per
    /// session or key (for keys, across all instances).
    pub async fn touch(&self, actor: &Actor) -> Result<(), InfraError> {
        let now = self.ports.clock.now();
        {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            match touched.get(&actor.credential) {
                Some(at) if now - *at < TOUCH_INTERVAL => return Ok(()),
                _ => touched.insert(actor.credential, now),
            };
        }
        match actor.credential {
            Credential::Session(id) => self.ports.sessions.touch_session(id, now).await,
            Credential::ApiKey(id) => {
                self.ports
                    .keys
                    .touch_api_key(id, now, now - TOUCH_INTERVAL)
                    .await
            }
        }
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
            email: Some(registration.email),
            email_verified: false,
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
            Err(CreateUserError::IdentityTaken) => {
                Err(InfraError::internal("registration linked no identity").into())
            }
            Err(CreateUserError::Infra(e)) => Err(e.into()),
        }
    }

    /// Checks a username-or-email and password and starts a session.
    ///
    /// An unknown account, an account without a password and a wrong password all cost one
    /// password verification and answer [`LoginError::InvalidCredentials`]. A disabled account
    /// is reported only after the right password. While the login name is throttled
    /// ([`LoginThrottle`]) every attempt is [`LoginError::Throttled`] before anything is looked
    /// up or verified.
    pub async fn login(
        &self,
        login: &str,
        password: &Password,
        client: ClientInfo,
    ) -> Result<TokenPair, LoginError> {
        let throttle = ThrottleKeys::for_login(self.ports.secrets.as_ref(), login);
        if let Some(retry_after) = self.ports.ephemeral.time_left(&throttle.lock).await? {
            return Err(LoginError::Throttled { retry_after });
        }
        let outcome = self.check_credentials(login, password, client).await;
        match &outcome {
            Err(LoginError::InvalidCredentials) => self.count_failure(&throttle).await?,
            Ok(_) => {
                self.ports.ephemeral.remove(&throttle.failures).await?;
            }
            Err(_) => {}
        }
        outcome
    }

    /// Counts a failed login for a name and locks it when the count is reached.
    async fn count_failure(&self, keys: &ThrottleKeys) -> Result<(), InfraError> {
        let policy = self.policy.login_throttle;
        let failures = self
            .ports
            .ephemeral
            .increment(&keys.failures, policy.cool_down)
            .await?;
        if failures >= u64::from(policy.failures) {
            let strikes = self
                .ports
                .ephemeral
                .increment(&keys.strikes, LoginThrottle::STRIKE_MEMORY)
                .await?;
            let lock = policy.lock_for(strikes);
            self.ports.ephemeral.put(&keys.lock, b"1", lock).await?;
            self.ports.ephemeral.remove(&keys.failures).await?;
        }
        Ok(())
    }

    async fn check_credentials(
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
        let failure = match &user {
            None => Some(("unknown_account", LoginError::InvalidCredentials)),
            Some(_) if !verified => Some(("wrong_password", LoginError::InvalidCredentials)),
            Some(user) if user.disabled => Some(("account_disabled", LoginError::AccountDisabled)),
            Some(_) => None,
        };
        if let Some((reason, error)) = failure {
            let target = user.as_ref().map(|u| u.id);
            let event = self.event_from(
                AuditKind::LoginFailed,
                None,
                target,
                &client,
                self.ports.clock.now(),
                json!({ "reason": reason }),
            );
            self.record(event).await?;
            return Err(error);
        }
        let Some(user) = user else {
            return Err(LoginError::InvalidCredentials);
        };
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
    pub async fn refresh(
        &self,
        presented: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, RefreshError> {
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
                        client,
                    )
                    .await;
            }
            if record.expires_at <= now {
                return Err(RefreshError::InvalidRefreshToken);
            }
            let user = match self.ports.users.find_user_by_id(session.user_id).await? {
                Some(user) if !user.disabled => user,
                _ => {
                    self.revoke_one(session.id, now, None).await?;
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
        client: &ClientInfo,
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
        let event = self.event_from(
            AuditKind::RefreshReused,
            None,
            Some(session.user_id),
            client,
            now,
            json!({ "session_id": session.id }),
        );
        self.revoke_one(session.id, now, Some(&event)).await?;
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
    pub async fn logout(&self, presented: &str, client: &ClientInfo) -> Result<(), InfraError> {
        let digest = self.ports.secrets.digest(presented);
        if let Some(record) = self.ports.sessions.find_refresh_token(&digest).await? {
            let now = self.ports.clock.now();
            let user = record.session.user_id;
            let event = self.event_from(
                AuditKind::Logout,
                Some(user),
                Some(user),
                client,
                now,
                json!({ "session_id": record.session.id }),
            );
            self.revoke_one(record.session.id, now, Some(&event))
                .await?;
        }
        Ok(())
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
                current: Some(session.id) == actor.session_id(),
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
                let now = self.ports.clock.now();
                let event = self.event(
                    AuditKind::SessionRevoked,
                    Some(actor),
                    Some(actor.user_id),
                    now,
                    json!({ "session_id": id }),
                );
                self.revoke_one(id, now, Some(&event)).await?;
                Ok(())
            }
            _ => Err(RevokeSessionError::NotFound),
        }
    }

    /// Revokes every session of the caller, the current one included.
    pub async fn logout_all(&self, actor: &Actor) -> Result<usize, InfraError> {
        let now = self.ports.clock.now();
        let event = self.event(
            AuditKind::Logout,
            Some(actor),
            Some(actor.user_id),
            now,
            json!({ "all_sessions": true }),
        );
        let revoked = self
            .ports
            .sessions
            .revoke_user_sessions(actor.user_id, None, now, &event)
            .await?;
        Ok(self.refuse_sessions(revoked, now).await)
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
        let event = self.event(
            AuditKind::PasswordChanged,
            Some(actor),
            Some(actor.user_id),
            now,
            json!({}),
        );
        let revoked = self
            .ports
            .users
            .change_password(actor.user_id, &new_hash, actor.session_id(), now, &event)
            .await?;
        self.refuse_sessions(revoked, now).await;
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
                    credential: Credential::Session(claims.session_id),
                    roles,
                    permissions,
                    client: ClientInfo::default(),
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
        let providers = self
            .ports
            .identities
            .identities_of(user.id)
            .await?
            .into_iter()
            .map(|identity| identity.provider.as_str().to_owned())
            .collect();
        let (roles, permissions) = role_grants(&roles);
        Ok(Me {
            user,
            roles,
            permissions,
            has_password,
            providers,
        })
    }

    async fn find_by_login(&self, login: &str) -> Result<Option<User>, InfraError> {
        // Keep in step with `ThrottleKeys::for_login`, which normalises the same way.
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
        self.start_session_with(user, client, json!({})).await
    }

    /// Starts a session for `user`, recording `login.succeeded` with `details` added to the
    /// session id.
    pub(crate) async fn start_session_with(
        &self,
        user: &User,
        client: ClientInfo,
        details: serde_json::Value,
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
        let event = self.event_from(
            AuditKind::LoginSucceeded,
            Some(user.id),
            Some(user.id),
            &session.client,
            now,
            with_session_id(details, session.id),
        );
        self.ports
            .sessions
            .create_session(
                NewSession {
                    session: session.clone(),
                    refresh_token: first,
                },
                &event,
            )
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

/// `details` (a JSON object) with the session's id added.
fn with_session_id(details: serde_json::Value, session: SessionId) -> serde_json::Value {
    let mut details = match details {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    details.insert("session_id".into(), json!(session));
    serde_json::Value::Object(details)
}

fn default_role() -> Result<RoleName, InfraError> {
    RoleName::parse(DEFAULT_ROLE).map_err(|e| InfraError::internal(e.message))
}

/// The short-lived keys of one login name's throttle. The name is digested with the server's
/// key, so the shared store holds no user names or e-mail addresses.
struct ThrottleKeys {
    failures: String,
    strikes: String,
    lock: String,
}

impl ThrottleKeys {
    fn for_login(secrets: &dyn SecretGenerator, login: &str) -> Self {
        // The same name however it is typed: usernames normalise like `Username`, e-mail
        // addresses compare case-insensitively.
        let normalised = match Username::parse(login) {
            Ok(username) if !login.contains('@') => username.as_str().to_owned(),
            _ => login.trim().to_lowercase(),
        };
        let digest = secrets.digest(&format!("login-throttle:{normalised}"));
        let id: String = digest
            .as_bytes()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            failures: format!("login:failures:{id}"),
            strikes: format!("login:strikes:{id}"),
            lock: format!("login:lock:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::LoginThrottle;

    #[test]
    fn locks_double_up_to_an_hour() {
        let throttle = LoginThrottle {
            failures: 5,
            cool_down: Duration::from_secs(60),
        };
        let minutes: Vec<u64> = (1..=9)
            .map(|strikes| throttle.lock_for(strikes).as_secs() / 60)
            .collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(throttle.lock_for(u64::MAX), LoginThrottle::MAX_COOL_DOWN);
        // A configured cool-down longer than the cap is honoured as is.
        let long = LoginThrottle {
            failures: 3,
            cool_down: Duration::from_secs(7200),
        };
        assert_eq!(long.lock_for(4), Duration::from_secs(7200));
    }
}
