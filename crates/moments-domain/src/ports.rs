//! The ports: what the domain needs from the outside world. Each trait says what an
//! implementation guarantees and which errors it returns. Every port has a production adapter
//! and an embedded one, and both pass the contract suite in `moments-testkit`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::api_key::{ApiKeyCredential, NewApiKey};
use crate::audit::{AuditEvent, AuditFilter};
use crate::authz::{Permission, Role, RoleName};
use crate::error::InfraError;
use crate::ids::{ApiKeyId, AuditEventId, PostId, SessionId, UserId};
use crate::limit::{Quota, RateDecision};
pub use crate::media::MediaStore;
use crate::oauth::{Identity, LinkOutcome, ProviderName, UnlinkOutcome};
use crate::post::{NewPost, Post, PostEdit, PostFilter, PostPosition, VoteSummary, VoteValue};
use crate::profile::ProfileChange;
use crate::session::{
    AccessClaims, AccessGrant, AccessToken, NewRefreshToken, NewSession, OpaqueToken,
    RefreshTokenRecord, Session, TokenDigest,
};
use crate::user::{NewUser, User};
use crate::value::{Email, Password, PasswordHash, Username};

/// Why a store refused to create a user.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Another account has this username.
    #[error("username taken")]
    UsernameTaken,
    /// Another account has this e-mail address (compared case-insensitively).
    #[error("email taken")]
    EmailTaken,
    /// A role to assign does not exist.
    #[error("unknown role {0}")]
    UnknownRole(RoleName),
    /// The provider identity to link at creation is linked already (a concurrent sign-in
    /// created its account first).
    #[error("identity taken")]
    IdentityTaken,
    /// The store failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a role could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateRoleError {
    /// A role of that name exists.
    #[error("role exists")]
    Exists,
    /// The store failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why an API key could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CreateApiKeyStoreError {
    /// Another key has the same look-up prefix (the caller retries with a fresh key).
    #[error("prefix taken")]
    PrefixTaken,
    /// The store failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a profile change could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum UpdateProfileStoreError {
    /// Another account has the e-mail address (compared case-insensitively).
    #[error("email taken")]
    EmailTaken,
    /// The store failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// What a role assignment or removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// The user's roles changed.
    Changed,
    /// Nothing to do: already held, or not held.
    Unchanged,
    /// No such user.
    UnknownUser,
    /// No such role.
    UnknownRole,
}

/// User accounts and their credentials and roles.
///
/// Methods that take an [`AuditEvent`] write it in the same transaction as the change, and
/// only when the change happens (an unknown user or role, or a no-op, records nothing).
///
/// Guarantees: usernames are unique, and e-mail addresses are unique by [`Email::key`], also
/// under concurrent inserts (the losers get [`CreateUserError::UsernameTaken`] or
/// [`CreateUserError::EmailTaken`], never a duplicate). Look-ups return `Ok(None)` for unknown
/// accounts. Errors: [`InfraError::Unavailable`] when the database does not answer in time,
/// [`InfraError::Internal`] otherwise.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates the account, its password credential (if any) and its roles, atomically.
    async fn create_user(&self, user: NewUser) -> Result<User, CreateUserError> {
        let mut created = self.create_users(vec![user]).await?;
        created
            .pop()
            .ok_or_else(|| InfraError::internal("no account created").into())
    }
    /// Creates several accounts in one transaction: all of them, or none.
    async fn create_users(&self, users: Vec<NewUser>) -> Result<Vec<User>, CreateUserError>;
    /// Finds an account by id.
    async fn find_user_by_id(&self, id: UserId) -> Result<Option<User>, InfraError>;
    /// Finds an account by (normalised) username.
    async fn find_user_by_username(&self, username: &Username) -> Result<Option<User>, InfraError>;
    /// Finds an account by e-mail address, case-insensitively.
    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>, InfraError>;
    /// The account's password hash, `None` when it has no password (or no such account).
    async fn password_hash(&self, id: UserId) -> Result<Option<PasswordHash>, InfraError>;
    /// Replaces the account's password hash (creating the credential if it had none). For
    /// upgrades of the hash format at login and for imports; a user's own change of password
    /// is [`UserStore::change_password`].
    async fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError>;
    /// Replaces the account's password hash, revokes its live sessions except `keep` and records
    /// `event`, in one transaction. Returns the sessions revoked.
    async fn change_password(
        &self,
        id: UserId,
        hash: &PasswordHash,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Vec<SessionId>, InfraError>;
    /// Applies a profile change and records `event`, in one transaction. A new e-mail address
    /// that differs from the current one other than by case resets its verification.
    /// `Ok(None)` when there is no such account. Errors: [`UpdateProfileStoreError::EmailTaken`].
    async fn update_profile(
        &self,
        id: UserId,
        change: &ProfileChange,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<User>, UpdateProfileStoreError>;
    /// The roles the account holds, with their permissions, sorted by name.
    async fn roles_of(&self, id: UserId) -> Result<Vec<Role>, InfraError>;
    /// Up to `limit` accounts ordered by username, after `after` (exclusive), whose username or
    /// case-folded e-mail starts with `prefix` (matched literally: `%` and `_` are not
    /// wildcards). One indexed query.
    async fn list_users(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<User>, InfraError>;
    /// Disables or re-enables an account and records `event`. Disabling also revokes every
    /// live session and API key of the account in the same transaction (they stay revoked when
    /// it is enabled again); the revoked sessions are returned. `Ok(None)` when there is no
    /// such account.
    async fn set_disabled(
        &self,
        id: UserId,
        disabled: bool,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<(User, Vec<SessionId>)>, InfraError>;
    /// Every role with its permissions, sorted by name.
    async fn list_roles(&self) -> Result<Vec<Role>, InfraError>;
    /// Gives the user the role (nothing changes if it is held already), recording the change
    /// time for [`UserStore::authz_changed_since`], in one transaction.
    async fn assign_role(
        &self,
        user: UserId,
        role: &RoleName,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<RoleChange, InfraError>;
    /// Takes the role from the user (nothing changes if it is not held), recording the change.
    async fn remove_role(
        &self,
        user: UserId,
        role: &RoleName,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<RoleChange, InfraError>;
    /// Creates a role with its permissions. Errors: [`CreateRoleError::Exists`].
    async fn create_role(
        &self,
        role: &Role,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<(), CreateRoleError>;
    /// Changes a role's description and/or replaces its permissions; a permission change is
    /// recorded for every holder. `Ok(None)` when there is no such role.
    async fn update_role(
        &self,
        name: &RoleName,
        description: Option<&str>,
        permissions: Option<&[Permission]>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Option<Role>, InfraError>;
    /// Deletes a role, taking it from its holders (recorded as their change). `false` when there
    /// was no such role.
    async fn delete_role(
        &self,
        name: &RoleName,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, InfraError>;
    /// Users whose roles or role permissions changed after `since`, with when; instances poll
    /// this to stop honouring stale permissions in access tokens.
    async fn authz_changed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, InfraError>;
    /// A role by name, with its permissions.
    async fn find_role(&self, name: &RoleName) -> Result<Option<Role>, InfraError>;
}

/// Sessions and their refresh-token families.
///
/// Guarantees: refresh tokens are found by digest only; rotation is atomic, so of any number of
/// concurrent rotations of one token exactly one succeeds. Errors as for [`UserStore`].
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session with its first refresh token, and records `event` (the sign-in),
    /// in one transaction.
    async fn create_session(
        &self,
        session: NewSession,
        event: &AuditEvent,
    ) -> Result<(), InfraError>;
    /// Finds a session by id.
    async fn find_session(&self, id: SessionId) -> Result<Option<Session>, InfraError>;
    /// Finds a refresh token (retired or not) and its session by the token's digest.
    async fn find_refresh_token(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<RefreshTokenRecord>, InfraError>;
    /// Retires the token with digest `current` and stores `successor` in its session, and marks
    /// the session used at `now`, in one transaction. Returns `false` and changes nothing when
    /// `current` is unknown or already rotated, or its session is revoked.
    async fn rotate_refresh_token(
        &self,
        current: &TokenDigest,
        successor: NewRefreshToken,
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError>;
    /// Revokes a session (and so every token of its family), recording `event` with it.
    /// Returns `false`, and records nothing, when it was unknown or already revoked.
    async fn revoke_session(
        &self,
        id: SessionId,
        now: DateTime<Utc>,
        event: Option<&AuditEvent>,
    ) -> Result<bool, InfraError>;
    /// Revokes every live session of a user except `keep`, records `event`, and returns the
    /// ids revoked.
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Vec<SessionId>, InfraError>;
    /// The user's sessions that are neither revoked nor past their absolute end at `now`,
    /// most recently used first.
    async fn active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, InfraError>;
    /// Sessions revoked after `since`, with when: what instances poll to refuse the access
    /// tokens of revoked sessions. Served by an index; cheap when nothing changed.
    async fn revoked_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(SessionId, DateTime<Utc>)>, InfraError>;
    /// Records that the session was used at `at` (callers throttle this to once a minute).
    async fn touch_session(&self, id: SessionId, at: DateTime<Utc>) -> Result<(), InfraError>;
}

/// API keys.
///
/// Guarantees: look-up is one indexed query by the public prefix, which is unique; the secret
/// is never stored, only its keyed hash. Errors as for [`UserStore`].
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key and records `event`, in one transaction. Errors:
    /// [`CreateApiKeyStoreError::PrefixTaken`].
    async fn create_api_key(
        &self,
        key: &NewApiKey,
        event: &AuditEvent,
    ) -> Result<(), CreateApiKeyStoreError>;
    /// The key with this look-up prefix (revoked and expired ones too), its keyed hash, and its
    /// owner's state and current permissions, in one query.
    async fn find_api_key(&self, prefix: &str) -> Result<Option<ApiKeyCredential>, InfraError>;
    /// The owner's keys that are not revoked, newest first.
    async fn list_api_keys(&self, owner: UserId)
    -> Result<Vec<crate::api_key::ApiKey>, InfraError>;
    /// Revokes the key if it belongs to `owner` and is live, recording `event` with it.
    /// Returns `false`, and records nothing, otherwise.
    async fn revoke_api_key(
        &self,
        id: ApiKeyId,
        owner: UserId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<bool, InfraError>;
    /// Records that the key was used at `at`, unless a use at or after `not_before` is already
    /// recorded: every instance together writes a key's last use at most once per interval.
    async fn touch_api_key(
        &self,
        id: ApiKeyId,
        at: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Result<(), InfraError>;
}

/// The audit log. Append-only: events are never changed or deleted through the service.
/// Errors as for [`UserStore`].
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records events that accompany no other change (a failed login), in one transaction.
    async fn record_audit_events(&self, events: &[AuditEvent]) -> Result<(), InfraError>;
    /// Up to `limit` events matching `filter`, newest first (by id), older than `before`.
    /// A user filter matches the user as actor or as target. Served by indexes.
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        before: Option<AuditEventId>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, InfraError>;
}

/// Hashes and verifies passwords.
///
/// Implementations must not block the async executor: hashing runs on a bounded pool of
/// blocking threads. Errors: [`InfraError::Internal`] for a malformed stored hash or a failed
/// hashing thread.
/// Posts and their votes.
///
/// Every read joins the author and returns the post with its vote totals and the viewer's own
/// vote; posts of disabled authors are never returned. Errors: [`InfraError`] only.
#[async_trait]
pub trait PostStore: Send + Sync {
    /// Stores a new post (no votes) and returns it with its author; `None`, storing nothing,
    /// when the author is unknown or disabled.
    async fn create_post(&self, post: &NewPost) -> Result<Option<Post>, InfraError>;

    /// One post as `viewer` sees it; `None` if unknown or its author is disabled.
    async fn find_post(
        &self,
        id: PostId,
        viewer: Option<UserId>,
    ) -> Result<Option<Post>, InfraError>;

    /// Applies an edit and sets `updated_at`; `None` if the post is gone.
    async fn update_post(
        &self,
        id: PostId,
        edit: &PostEdit,
        now: DateTime<Utc>,
        viewer: UserId,
    ) -> Result<Option<Post>, InfraError>;

    /// Deletes a post and its votes; `false` if there was none.
    async fn delete_post(&self, id: PostId) -> Result<bool, InfraError>;

    /// Up to `limit` posts of `filter`, newest first by `(created_at, id)`, strictly after
    /// `after`: one query, whatever the depth, bringing authors, totals and `viewer`'s votes.
    async fn list_posts(
        &self,
        filter: PostFilter,
        after: Option<PostPosition>,
        limit: usize,
        viewer: Option<UserId>,
    ) -> Result<Vec<Post>, InfraError>;

    /// Sets (`Some`) or clears (`None`) `user`'s vote and moves the post's totals by the
    /// difference, atomically: concurrent votes on one post, and one user's concurrent changes,
    /// end with totals equal to the votes stored. `None` if the post is unknown (or its author
    /// disabled).
    async fn set_vote(
        &self,
        post: PostId,
        user: UserId,
        vote: Option<VoteValue>,
        now: DateTime<Utc>,
    ) -> Result<Option<VoteSummary>, InfraError>;
}

#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes a new password with the configured parameters.
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError>;
    /// Checks a password against a stored hash. With `None` (unknown account, or no password)
    /// it spends the same time as a real verification and returns `false`, so response times do
    /// not reveal which accounts exist.
    async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> Result<bool, InfraError>;
    /// Whether a stored hash should be replaced after the next successful login: a legacy
    /// format (bcrypt) or weaker parameters than configured.
    fn needs_rehash(&self, hash: &PasswordHash) -> bool;
    /// Whether this hasher can verify the hash at all (a supported, well-formed format); used to
    /// refuse unusable hashes on import.
    fn recognizes(&self, hash: &PasswordHash) -> bool;
}

/// Why an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Well-formed and correctly signed, but past its expiry.
    #[error("token expired")]
    Expired,
    /// Anything else: bad signature, wrong algorithm, issuer, audience or type, malformed.
    #[error("invalid token")]
    Invalid,
}

/// Issues signed access tokens.
pub trait TokenIssuer: Send + Sync {
    /// Signs an access token for the grant, valid from now for the configured lifetime.
    fn issue(&self, grant: &AccessGrant) -> Result<AccessToken, InfraError>;
    /// Lifetime of issued access tokens, in seconds.
    fn access_token_ttl_seconds(&self) -> i64;
}

/// Verifies access tokens: signature, algorithm, type, issuer, audience and time claims.
pub trait TokenVerifier: Send + Sync {
    /// Verifies a compact token and returns its claims.
    fn verify(&self, token: &str) -> Result<AccessClaims, TokenError>;
    /// The public verification keys as a JWK Set document (RFC 7517), in JSON; `{"keys":[]}`
    /// when tokens are signed with a shared secret.
    fn jwks_json(&self) -> String;
}

/// Generates opaque secrets and the digests they are stored under.
pub trait SecretGenerator: Send + Sync {
    /// A new URL-safe token carrying at least 256 random bits.
    fn opaque_token(&self) -> OpaqueToken;
    /// The digest a token is stored and looked up by. Deterministic.
    fn digest(&self, token: &str) -> TokenDigest;
    /// The refresh token that succeeds `token` on rotation: deterministic and keyed with a
    /// server secret, so every instance derives the same successor (a client retrying a refresh
    /// gets the very token already issued) and nobody without the key can compute it.
    fn successor(&self, token: &str) -> OpaqueToken;
    /// A new API key: `mk_` and 43 URL-safe characters (256 random bits).
    fn api_key(&self) -> OpaqueToken;
    /// The keyed hash (HMAC with a server secret) an API key is stored under.
    fn keyed_digest(&self, key: &str) -> TokenDigest;
    /// Whether `key` has the keyed hash `digest`, compared in constant time.
    fn verify_keyed_digest(&self, key: &str, digest: &TokenDigest) -> bool;
}

/// Seals list cursors so clients cannot forge or alter them: `open` returns the payload only
/// for a cursor this service sealed (with the same key).
pub trait CursorCodec: Send + Sync {
    /// An opaque, URL-safe cursor carrying `payload`.
    fn seal(&self, payload: &[u8]) -> String;
    /// The payload of a sealed cursor; `None` for anything tampered, truncated or made up.
    fn open(&self, cursor: &str) -> Option<Vec<u8>>;
}

/// The current time.
pub trait Clock: Send + Sync {
    /// Now, in UTC, at microsecond precision (what the stores keep).
    fn now(&self) -> DateTime<Utc>;
}

/// New identifiers.
pub trait IdGenerator: Send + Sync {
    /// A new UUIDv7.
    fn new_id(&self) -> Uuid;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// UUIDv7 identifiers from the system clock and a random source.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Generator;

impl IdGenerator for UuidV7Generator {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// A dependency whose health shows in readiness (the database, the cache).
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Short name shown in readiness output, for example `database`.
    fn name(&self) -> &'static str;
    /// Whether the dependency answers a trivial request within the adapter's timeout.
    async fn check(&self) -> Result<(), InfraError>;
    /// Whether the instance cannot serve without it (`true`: unready when it is down) or keeps
    /// serving on a fallback (`false`: degraded).
    fn required(&self) -> bool {
        true
    }
}

/// Counts requests per key against a [`Quota`] with the generic cell rate algorithm
/// ([`crate::limit::decide`]), atomically: concurrent requests for one key, from any number of
/// callers sharing the limiter, are decided one after the other.
///
/// Errors: [`InfraError::Unavailable`] when the backing service does not answer in time.
/// Callers that must never go unlimited wrap a shared limiter with an in-process fallback.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Spends one request of `key`'s quota if it has one left.
    async fn acquire(&self, key: &str, quota: Quota) -> Result<RateDecision, InfraError>;
}

/// The links between accounts and identity-provider identities.
///
/// Guarantees: an identity, `(provider, subject)`, belongs to at most one account, and an
/// account has at most one identity per provider, also under concurrent writes. Writes that
/// take an [`AuditEvent`] record it in the same transaction, only when something changed.
/// Errors: [`InfraError`] as for [`UserStore`].
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// The link of the identity, if it is linked.
    async fn find_identity(
        &self,
        provider: &ProviderName,
        subject: &str,
    ) -> Result<Option<Identity>, InfraError>;
    /// The account's identities, sorted by provider name.
    async fn identities_of(&self, user: UserId) -> Result<Vec<Identity>, InfraError>;
    /// Creates the account (as [`UserStore::create_user`]) with `identity` linked and records
    /// `event`, atomically. Errors as `create_user`, plus [`CreateUserError::IdentityTaken`].
    async fn create_user_with_identity(
        &self,
        user: NewUser,
        identity: &Identity,
        event: &AuditEvent,
    ) -> Result<User, CreateUserError>;
    /// Links `identity` to `identity.user_id` and records `event` when it did.
    async fn link_identity(
        &self,
        identity: &Identity,
        event: &AuditEvent,
    ) -> Result<LinkOutcome, InfraError>;
    /// Notes a sign-in through the identity: its last use and the e-mail address the provider
    /// gave this time.
    async fn touch_identity(
        &self,
        provider: &ProviderName,
        subject: &str,
        email: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), InfraError>;
    /// Removes the account's identity at `provider` and records `event`, unless it is the
    /// account's last way to sign in (no password and no other identity): checked and done
    /// in one transaction, so two concurrent unlinks cannot both succeed into a locked-out
    /// account.
    async fn unlink_identity(
        &self,
        user: UserId,
        provider: &ProviderName,
        event: &AuditEvent,
    ) -> Result<UnlinkOutcome, InfraError>;
}

/// Short-lived values shared by every instance: OAuth state, one-time codes, failure counters.
/// Every value has a time to live and is gone after it; keys are the caller's (namespaced by
/// the adapter).
///
/// Errors: [`InfraError::Unavailable`] when the backing service does not answer in time.
#[async_trait]
pub trait EphemeralStore: Send + Sync {
    /// Stores `value` under `key` for `ttl`, replacing any value there.
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), InfraError>;
    /// Removes and returns the value: of any number of concurrent takers, exactly one gets it.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, InfraError>;
    /// How long `key` has left, or `None` when it is absent (or expired).
    async fn time_left(&self, key: &str) -> Result<Option<Duration>, InfraError>;
    /// Adds one to the counter at `key` and returns the new count. A new counter starts at 1
    /// and lives for `ttl`; incrementing does not extend it.
    async fn increment(&self, key: &str, ttl: Duration) -> Result<u64, InfraError>;
    /// Removes `key` (nothing happens when it is absent).
    async fn remove(&self, key: &str) -> Result<(), InfraError>;
}

/// Tells the other instances at once that sessions were revoked, so they refuse those
/// sessions' access tokens before their next poll of the store (which remains the guarantee).
///
/// Best effort: an implementation logs its own failures; the poll catches up.
#[async_trait]
pub trait RevocationBroadcast: Send + Sync {
    /// Announces revoked sessions.
    async fn announce(&self, sessions: &[SessionId]);
}

/// A single process has nobody to tell: revocations are applied locally already.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBroadcast;

#[async_trait]
impl RevocationBroadcast for NoBroadcast {
    async fn announce(&self, _sessions: &[SessionId]) {}
}
