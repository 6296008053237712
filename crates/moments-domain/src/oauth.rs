//! Sign-in through identity providers (OAuth 2.0 and OpenID Connect) and account linking.
//!
//! The flow, as RFC 9700 and OpenID Connect Core ask:
//!
//! 1. [`OAuthService::start`] (or [`OAuthService::start_link`]) has the provider's adapter
//!    build an authorization request with a fresh `state`, a PKCE S256 verifier and, for OpenID
//!    Connect, a `nonce`. The service keeps them in the [`EphemeralStore`] under a digest of the
//!    state for [`OAuthPolicy::attempt_ttl`], bound to the browser by a digest of a secret the
//!    browser holds in a cookie.
//! 2. [`OAuthService::callback`] takes the state (single use); it must belong to this provider
//!    and this browser. The adapter exchanges the code with the verifier and validates what
//!    comes back (for OpenID Connect the whole ID token).
//! 3. The identity, `(provider, subject)`, signs in to its account, creates one, or is linked to
//!    the signed-in user. An e-mail address alone never takes over an account.
//! 4. With a `return_to`, the browser is sent there with a one-time code (single use, short
//!    lived) that [`OAuthService::exchange`] turns into a token pair: no token travels in a URL.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

use crate::account::{AccountService, Actor};
use crate::audit::AuditKind;
use crate::authz::{DEFAULT_ROLE, RoleName};
use crate::error::{BoxError, InfraError};
use crate::ids::UserId;
use crate::ports::CreateUserError;
use crate::session::{ClientInfo, OpaqueToken, TokenPair};
use crate::user::{NewUser, User};
use crate::value::{Email, InvalidValue, Username};

/// A configured provider's name, as it appears in paths: 1 to 32 of `[a-z0-9_-]`, starting
/// with a letter (`google`, `github`, `okta-staff`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderName(String);

impl ProviderName {
    /// Checks a provider name.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let valid = (1..=32).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue::new(
                "invalid_provider",
                "a provider name is 1 to 32 of a-z, 0-9, _ and -, starting with a letter",
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The secrets of one authorization attempt that the callback needs back: the PKCE verifier
/// and, for OpenID Connect, the nonce the ID token must carry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationSecrets {
    /// The PKCE code verifier (RFC 7636), sent with the code exchange.
    pub pkce_verifier: String,
    /// The nonce sent in the authorization request (OpenID Connect only).
    pub nonce: Option<String>,
}

impl fmt::Debug for AuthorizationSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthorizationSecrets([redacted])")
    }
}

/// An authorization request built by a provider's adapter.
pub struct AuthorizationRequest {
    /// Where to send the browser.
    pub url: String,
    /// The `state` in `url`: fresh, unguessable, single use.
    pub state: String,
    /// What the callback needs back.
    pub secrets: AuthorizationSecrets,
}

impl fmt::Debug for AuthorizationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationRequest")
            .field("url", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// An identity a provider vouched for, after the adapter validated its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    /// The provider's stable identifier of the user (`sub`, GitHub's numeric id, ...).
    pub subject: String,
    /// The e-mail address the provider gave, if any (not checked for syntax yet).
    pub email: Option<String>,
    /// Whether the provider says it verified that address.
    pub email_verified: bool,
    /// A name to derive a username from (`preferred_username`, a GitHub login, an X handle).
    pub username_hint: Option<String>,
    /// The user's name at the provider.
    pub display_name: Option<String>,
}

/// Why a provider's answer gave no identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The answer failed validation (signature, issuer, audience, nonce, expiry, subject,
    /// a refused code, ...). The message is for logs and the audit log, never for the client.
    #[error("provider response rejected: {0}")]
    Rejected(String),
    /// The provider did not answer, or answered with a server error.
    #[error("identity provider unavailable")]
    Unavailable(#[source] BoxError),
}

/// One configured identity provider: builds authorization requests and turns an authorization
/// code into a validated [`ProviderIdentity`].
///
/// Guarantees: [`IdentityProvider::complete`] returns an identity only when the code exchange
/// used `secrets.pkce_verifier` and, for OpenID Connect, the ID token passed every check of
/// OpenID Connect Core 3.1.3.7 (signature by the issuer's key, `iss`, `aud`, `exp`, `iat`,
/// `nonce`, an allow-listed algorithm) and the userinfo `sub`, when fetched, matches it.
/// Errors: [`IdentityError::Rejected`], [`IdentityError::Unavailable`].
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// The configured name.
    fn name(&self) -> &ProviderName;
    /// What to show on a sign-in button.
    fn display_name(&self) -> &str;
    /// The issuer identifier the provider puts in `iss` of its authorization responses
    /// (RFC 9207), for providers that have one.
    fn issuer(&self) -> Option<&str>;
    /// A new authorization request with fresh state, PKCE verifier and nonce.
    async fn authorization_request(&self) -> Result<AuthorizationRequest, IdentityError>;
    /// Exchanges `code` and validates the answer.
    async fn complete(
        &self,
        code: &str,
        secrets: &AuthorizationSecrets,
    ) -> Result<ProviderIdentity, IdentityError>;
}

/// A provider identity linked to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's configured name.
    pub provider: ProviderName,
    /// The provider's identifier of the user.
    pub subject: String,
    /// The account it signs in to.
    pub user_id: UserId,
    /// The e-mail address the provider gave last (informational; never used to find accounts).
    pub email: Option<String>,
    /// When it was linked.
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    pub last_used_at: DateTime<Utc>,
}

/// What linking an identity did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    /// Linked now.
    Linked,
    /// It was linked to this account already: nothing changed.
    AlreadyLinked,
    /// It belongs to another account: nothing changed.
    TakenByOther,
    /// The account has another identity at this provider: nothing changed.
    ProviderLinked,
}

/// What unlinking a provider did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlinkOutcome {
    /// Unlinked.
    Unlinked,
    /// The account has no identity at that provider.
    NotLinked,
    /// Refused: it is the account's last way to sign in.
    LastMethod,
}

/// Rules of the OAuth flows.
#[derive(Debug, Clone)]
pub struct OAuthPolicy {
    /// The exact URLs a sign-in may return the browser to.
    pub return_to_allowlist: Vec<String>,
    /// Sign a new identity in to the existing account with the same e-mail address, when the
    /// provider verified the address and the account's address is verified too. Off by default:
    /// it trusts every configured provider's verification.
    pub link_by_verified_email: bool,
    /// How long an authorization attempt may take, from start to callback.
    pub attempt_ttl: Duration,
    /// How long a one-time code from the callback is valid.
    pub code_ttl: Duration,
}

impl Default for OAuthPolicy {
    fn default() -> Self {
        Self {
            return_to_allowlist: Vec::new(),
            link_by_verified_email: false,
            attempt_ttl: Duration::from_secs(600),
            code_ttl: Duration::from_secs(60),
        }
    }
}

/// A configured provider as listed to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSummary {
    /// Its name (the path segment).
    pub name: String,
    /// What to show.
    pub display_name: String,
}

/// A started authorization.
#[derive(Debug)]
pub struct Started {
    /// Where to send the browser.
    pub authorization_url: String,
    /// A new browser-binding secret to set as a cookie, when the browser had none.
    pub new_binding: Option<OpaqueToken>,
}

/// Why an authorization could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No provider of that name is configured.
    #[error("unknown provider")]
    UnknownProvider,
    /// `return_to` is not on the allow-list.
    #[error("return_to is not allowed")]
    ReturnToNotAllowed,
    /// The provider's configuration could not be fetched (OpenID Connect discovery).
    #[error(transparent)]
    Provider(IdentityError),
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// The query (or form) of a provider's authorization response.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    /// `state`, as sent.
    pub state: Option<String>,
    /// The authorization code.
    pub code: Option<String>,
    /// An error code instead of a code (`access_denied`, ...).
    pub error: Option<String>,
    /// The issuer of the response (RFC 9207), when the provider sends it.
    pub iss: Option<String>,
}

/// What a successful callback produced.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Signed in, no `return_to`: the token pair.
    SignedIn(TokenPair),
    /// Signed in with a `return_to`: redirect to this URL, which carries a one-time code.
    Redirect(String),
    /// An identity was linked to the account that started the flow.
    Linked {
        /// The provider.
        provider: ProviderName,
        /// Where to send the browser (with `linked=<provider>`), if the flow had a `return_to`.
        redirect: Option<String>,
    },
}

/// Why a callback failed. Nothing was created: no account, no session, no link.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// No provider of that name is configured.
    #[error("unknown provider")]
    UnknownProvider,
    /// The state is missing, unknown, used, expired, from another browser, or for another
    /// provider (a mix-up).
    #[error("invalid state")]
    InvalidState,
    /// The provider refused or the user declined (`error` in the response).
    #[error("authorization denied: {0}")]
    Denied(String),
    /// The provider's answer failed validation.
    #[error("provider response rejected: {0}")]
    Rejected(String),
    /// The provider did not answer.
    #[error("identity provider unavailable")]
    Unavailable(#[source] BoxError),
    /// The identity's account is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// A new account would take an e-mail address another account has; sign in to that
    /// account and link the provider instead.
    #[error("email taken")]
    EmailTaken,
    /// Linking: the identity belongs to another account.
    #[error("identity linked to another account")]
    IdentityTaken,
    /// Linking: the account has another identity at this provider.
    #[error("provider already linked")]
    ProviderLinked,
    /// Linking: the account that started the flow is gone or disabled.
    #[error("account unavailable")]
    AccountGone,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// A failed callback, with the attempt's `return_to` when the state was good (the edge sends
/// the browser back there with the error's code).
#[derive(Debug)]
pub struct CallbackFailure {
    /// What went wrong.
    pub error: CallbackError,
    /// The attempt's `return_to`, known only once the state checked out.
    pub return_to: Option<String>,
}

impl<E: Into<CallbackError>> From<E> for CallbackFailure {
    fn from(error: E) -> Self {
        Self {
            error: error.into(),
            return_to: None,
        }
    }
}

/// Why a one-time code could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Unknown, used or expired.
    #[error("invalid code")]
    InvalidCode,
    /// The account was disabled since the callback.
    #[error("account disabled")]
    AccountDisabled,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a provider could not be unlinked.
#[derive(Debug, thiserror::Error)]
pub enum UnlinkError {
    /// The account has no identity at that provider.
    #[error("not linked")]
    NotLinked,
    /// It is the account's last way to sign in.
    #[error("last sign-in method")]
    LastMethod,
    /// Infrastructure failed.
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// An authorization attempt as kept between start and callback.
#[derive(Serialize, Deserialize)]
struct Attempt {
    provider: String,
    /// Digest of the browser-binding secret, hex.
    binding: String,
    secrets: AuthorizationSecrets,
    return_to: Option<String>,
    /// The account to link to, for link flows.
    link_to: Option<Uuid>,
}

/// A one-time code as kept between callback and exchange.
#[derive(Serialize, Deserialize)]
struct CodeGrant {
    user_id: Uuid,
    provider: String,
}

/// How many usernames a new account tries before giving up.
const USERNAME_ATTEMPTS: usize = 6;

/// Sign-in and linking through the configured identity providers.
#[derive(Clone)]
pub struct OAuthService {
    accounts: AccountService,
    providers: Vec<Arc<dyn IdentityProvider>>,
    policy: OAuthPolicy,
}

impl fmt::Debug for OAuthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.providers.iter().map(|p| p.name().as_str()).collect();
        f.debug_struct("OAuthService")
            .field("providers", &names)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OAuthService {
    /// A service over the account service (whose ports hold the identity links) and the
    /// configured providers.
    pub fn new(
        accounts: AccountService,
        providers: Vec<Arc<dyn IdentityProvider>>,
        policy: OAuthPolicy,
    ) -> Self {
        Self {
            accounts,
            providers,
            policy,
        }
    }

    fn identities(&self) -> &dyn crate::ports::IdentityStore {
        self.accounts.ports.identities.as_ref()
    }

    /// The configured providers, in configuration order.
    pub fn providers(&self) -> Vec<ProviderSummary> {
        self.providers
            .iter()
            .map(|p| ProviderSummary {
                name: p.name().as_str().to_owned(),
                display_name: p.display_name().to_owned(),
            })
            .collect()
    }

    fn provider(&self, name: &str) -> Option<&Arc<dyn IdentityProvider>> {
        self.providers.iter().find(|p| p.name().as_str() == name)
    }

    fn check_return_to(&self, return_to: Option<&str>) -> Result<(), StartError> {
        match return_to {
            Some(url) if !self.policy.return_to_allowlist.iter().any(|a| a == url) => {
                Err(StartError::ReturnToNotAllowed)
            }
            _ => Ok(()),
        }
    }

    /// Starts a sign-in: the authorization URL to send the browser to. `binding` is the
    /// browser's binding secret from its cookie, if it has one; otherwise a new one is returned
    /// to set.
    pub async fn start(
        &self,
        provider: &str,
        return_to: Option<&str>,
        binding: Option<&str>,
    ) -> Result<Started, StartError> {
        self.begin(provider, return_to, binding, None).await
    }

    /// Starts linking a provider to the signed-in user.
    pub async fn start_link(
        &self,
        actor: &Actor,
        provider: &str,
        return_to: Option<&str>,
        binding: Option<&str>,
    ) -> Result<Started, StartError> {
        self.begin(provider, return_to, binding, Some(actor.user_id))
            .await
    }

    async fn begin(
        &self,
        provider: &str,
        return_to: Option<&str>,
        binding: Option<&str>,
        link_to: Option<UserId>,
    ) -> Result<Started, StartError> {
        let provider = self.provider(provider).ok_or(StartError::UnknownProvider)?;
        self.check_return_to(return_to)?;
        let (binding, new_binding) = match binding.filter(|b| !b.is_empty()) {
            Some(existing) => (existing.to_owned(), None),
            None => {
                let fresh = self.accounts.ports.secrets.opaque_token();
                (fresh.expose().to_owned(), Some(fresh))
            }
        };
        let request = provider
            .authorization_request()
            .await
            .map_err(StartError::Provider)?;
        let attempt = Attempt {
            provider: provider.name().as_str().to_owned(),
            binding: self.binding_digest(&binding),
            secrets: request.secrets,
            return_to: return_to.map(str::to_owned),
            link_to: link_to.map(|u| u.as_uuid()),
        };
        let value =
            serde_json::to_vec(&attempt).map_err(|e| InfraError::internal(e.to_string()))?;
        self.accounts
            .ports
            .ephemeral
            .put(
                &self.attempt_key(&request.state),
                &value,
                self.policy.attempt_ttl,
            )
            .await?;
        Ok(Started {
            authorization_url: request.url,
            new_binding,
        })
    }

    /// Completes an authorization from the provider's response. Nothing is created unless
    /// every check passes.
    pub async fn callback(
        &self,
        provider: &str,
        params: CallbackParams,
        binding: Option<&str>,
        client: ClientInfo,
    ) -> Result<CallbackOutcome, CallbackFailure> {
        let provider = self
            .provider(provider)
            .ok_or(CallbackError::UnknownProvider)?
            .clone();
        let state = params.state.as_deref().ok_or(CallbackError::InvalidState)?;
        // Taken before any other check: a state is spent by its first use, good or bad.
        let stored = self
            .accounts
            .ports
            .ephemeral
            .take(&self.attempt_key(state))
            .await
            .map_err(CallbackError::from)?
            .ok_or(CallbackError::InvalidState)?;
        let attempt: Attempt =
            serde_json::from_slice(&stored).map_err(|_| CallbackError::InvalidState)?;
        let same_browser = binding.is_some_and(|b| {
            constant_time_eq(
                self.binding_digest(b).as_bytes(),
                attempt.binding.as_bytes(),
            )
        });
        // A response for another provider's request (mix-up) or from another browser.
        if attempt.provider != provider.name().as_str() || !same_browser {
            return Err(CallbackError::InvalidState.into());
        }
        let fail = |error: CallbackError| CallbackFailure {
            return_to: attempt.return_to.clone(),
            error,
        };
        if let (Some(expected), Some(actual)) = (provider.issuer(), params.iss.as_deref())
            && expected != actual
        {
            return Err(fail(CallbackError::Rejected(format!(
                "authorization response from issuer {actual}, expected {expected}"
            ))));
        }
        if let Some(error) = params.error {
            return Err(fail(CallbackError::Denied(error)));
        }
        let Some(code) = params.code else {
            return Err(fail(CallbackError::Rejected(
                "authorization response without a code".into(),
            )));
        };
        let identity = match provider.complete(&code, &attempt.secrets).await {
            Ok(identity) => identity,
            Err(IdentityError::Rejected(reason)) => {
                self.record_rejection(provider.name(), &reason, &client)
                    .await
                    .map_err(|e| fail(e.into()))?;
                return Err(fail(CallbackError::Rejected(reason)));
            }
            Err(IdentityError::Unavailable(e)) => return Err(fail(CallbackError::Unavailable(e))),
        };
        let outcome = match attempt.link_to {
            Some(user) => self
                .link(provider.name(), identity, UserId::from_uuid(user), &client)
                .await
                .map(|()| CallbackOutcome::Linked {
                    provider: provider.name().clone(),
                    redirect: attempt
                        .return_to
                        .as_deref()
                        .map(|to| with_param(to, "linked", provider.name().as_str())),
                }),
            None => {
                self.sign_in(
                    provider.name(),
                    identity,
                    attempt.return_to.as_deref(),
                    client,
                )
                .await
            }
        };
        outcome.map_err(fail)
    }

    /// Exchanges a one-time code from a callback redirect for a token pair (a new session).
    pub async fn exchange(
        &self,
        code: &str,
        client: ClientInfo,
    ) -> Result<TokenPair, ExchangeError> {
        let stored = self
            .accounts
            .ports
            .ephemeral
            .take(&self.code_key(code))
            .await?
            .ok_or(ExchangeError::InvalidCode)?;
        let grant: CodeGrant =
            serde_json::from_slice(&stored).map_err(|_| ExchangeError::InvalidCode)?;
        let user = self
            .accounts
            .users()
            .find_user_by_id(UserId::from_uuid(grant.user_id))
            .await?
            .ok_or(ExchangeError::InvalidCode)?;
        if user.disabled {
            return Err(ExchangeError::AccountDisabled);
        }
        Ok(self
            .accounts
            .start_session_with(&user, client, oauth_login_details(&grant.provider))
            .await?)
    }

    /// Unlinks the signed-in user's identity at `provider` (configured or not any more),
    /// unless it is the account's last way to sign in.
    pub async fn unlink(&self, actor: &Actor, provider: &str) -> Result<(), UnlinkError> {
        let Ok(name) = ProviderName::parse(provider) else {
            return Err(UnlinkError::NotLinked);
        };
        let event = self.accounts.event(
            AuditKind::OAuthUnlinked,
            Some(actor),
            Some(actor.user_id),
            self.accounts.now(),
            json!({ "provider": name.as_str() }),
        );
        match self
            .identities()
            .unlink_identity(actor.user_id, &name, &event)
            .await?
        {
            UnlinkOutcome::Unlinked => Ok(()),
            UnlinkOutcome::NotLinked => Err(UnlinkError::NotLinked),
            UnlinkOutcome::LastMethod => Err(UnlinkError::LastMethod),
        }
    }

    async fn sign_in(
        &self,
        provider: &ProviderName,
        identity: ProviderIdentity,
        return_to: Option<&str>,
        client: ClientInfo,
    ) -> Result<CallbackOutcome, CallbackError> {
        let now = self.accounts.now();
        let user = match self
            .identities()
            .find_identity(provider, &identity.subject)
            .await?
        {
            Some(link) => {
                self.identities()
                    .touch_identity(provider, &identity.subject, identity.email.as_deref(), now)
                    .await?;
                self.accounts
                    .users()
                    .find_user_by_id(link.user_id)
                    .await?
                    .ok_or_else(|| InfraError::internal("identity of a missing account"))?
            }
            None => match self.verified_email_owner(&identity).await? {
                // A disabled account gains no link it could use once enabled.
                Some(owner) if owner.disabled => return Err(CallbackError::AccountDisabled),
                Some(owner) => {
                    self.link_existing(provider, &identity, &owner, &client, "verified_email")
                        .await?;
                    owner
                }
                None => self.create_account(provider, &identity, &client).await?,
            },
        };
        if user.disabled {
            return Err(CallbackError::AccountDisabled);
        }
        match return_to {
            Some(to) => {
                let code = self.accounts.ports.secrets.opaque_token();
                let grant = CodeGrant {
                    user_id: user.id.as_uuid(),
                    provider: provider.as_str().to_owned(),
                };
                let value =
                    serde_json::to_vec(&grant).map_err(|e| InfraError::internal(e.to_string()))?;
                self.accounts
                    .ports
                    .ephemeral
                    .put(&self.code_key(code.expose()), &value, self.policy.code_ttl)
                    .await?;
                Ok(CallbackOutcome::Redirect(with_param(
                    to,
                    "code",
                    code.expose(),
                )))
            }
            None => Ok(CallbackOutcome::SignedIn(
                self.accounts
                    .start_session_with(&user, client, oauth_login_details(provider.as_str()))
                    .await?,
            )),
        }
    }

    /// The account an identity may sign in to by its e-mail address: only when configured,
    /// only for an address the provider verified, and only if the account's own address is
    /// verified (otherwise whoever registered it first would receive the provider's user).
    async fn verified_email_owner(
        &self,
        identity: &ProviderIdentity,
    ) -> Result<Option<User>, InfraError> {
        if !self.policy.link_by_verified_email || !identity.email_verified {
            return Ok(None);
        }
        let Some(email) = identity.email.as_deref().and_then(|e| Email::parse(e).ok()) else {
            return Ok(None);
        };
        Ok(self
            .accounts
            .users()
            .find_user_by_email(&email)
            .await?
            .filter(|owner| owner.email_verified))
    }

    async fn link_existing(
        &self,
        provider: &ProviderName,
        identity: &ProviderIdentity,
        owner: &User,
        client: &ClientInfo,
        via: &str,
    ) -> Result<(), CallbackError> {
        let now = self.accounts.now();
        let link = new_identity(provider, identity, owner.id, now);
        let event = self.accounts.event_from(
            AuditKind::OAuthLinked,
            Some(owner.id),
            Some(owner.id),
            client,
            now,
            json!({ "provider": provider.as_str(), "subject": identity.subject, "via": via }),
        );
        match self.identities().link_identity(&link, &event).await? {
            LinkOutcome::Linked | LinkOutcome::AlreadyLinked => Ok(()),
            LinkOutcome::TakenByOther => Err(CallbackError::IdentityTaken),
            LinkOutcome::ProviderLinked => Err(CallbackError::ProviderLinked),
        }
    }

    async fn link(
        &self,
        provider: &ProviderName,
        identity: ProviderIdentity,
        user: UserId,
        client: &ClientInfo,
    ) -> Result<(), CallbackError> {
        let owner = self
            .accounts
            .users()
            .find_user_by_id(user)
            .await?
            .filter(|u| !u.disabled)
            .ok_or(CallbackError::AccountGone)?;
        self.link_existing(provider, &identity, &owner, client, "link")
            .await
    }

    async fn create_account(
        &self,
        provider: &ProviderName,
        identity: &ProviderIdentity,
        client: &ClientInfo,
    ) -> Result<User, CallbackError> {
        let email = identity.email.as_deref().and_then(|e| Email::parse(e).ok());
        let display_name = identity
            .display_name
            .as_deref()
            .and_then(|n| crate::value::DisplayName::parse(n).ok())
            .map(|n| n.as_str().to_owned());
        let base = username_base(identity, email.as_ref());
        let role = RoleName::parse(DEFAULT_ROLE).map_err(|e| InfraError::internal(e.message))?;
        for attempt in 0..USERNAME_ATTEMPTS {
            let candidate = if attempt == 0 {
                base.clone()
            } else {
                let suffix = self.accounts.new_id().simple().to_string();
                let tail = suffix.get(suffix.len() - 6..).unwrap_or("000000");
                format!("{base}_{tail}")
            };
            let Ok(username) = Username::parse(&candidate) else {
                continue;
            };
            let now = self.accounts.now();
            let id = UserId::from_uuid(self.accounts.new_id());
            let user = NewUser {
                id,
                username,
                email: email.clone(),
                email_verified: email.is_some() && identity.email_verified,
                display_name: display_name.clone(),
                password_hash: None,
                roles: vec![role.clone()],
                created_at: now,
            };
            let link = new_identity(provider, identity, id, now);
            let event = self.accounts.event_from(
                AuditKind::OAuthLinked,
                Some(id),
                Some(id),
                client,
                now,
                json!({
                    "provider": provider.as_str(),
                    "subject": identity.subject,
                    "via": "sign_up",
                }),
            );
            match self
                .identities()
                .create_user_with_identity(user, &link, &event)
                .await
            {
                Ok(user) => return Ok(user),
                Err(CreateUserError::UsernameTaken) => continue,
                Err(CreateUserError::EmailTaken) => return Err(CallbackError::EmailTaken),
                Err(CreateUserError::IdentityTaken) => {
                    // A concurrent callback for the same identity created the account first.
                    let link = self
                        .identities()
                        .find_identity(provider, &identity.subject)
                        .await?
                        .ok_or_else(|| InfraError::internal("identity vanished"))?;
                    return self
                        .accounts
                        .users()
                        .find_user_by_id(link.user_id)
                        .await?
                        .ok_or_else(|| {
                            InfraError::internal("identity of a missing account").into()
                        });
                }
                Err(CreateUserError::UnknownRole(role)) => {
                    return Err(InfraError::internal(format!("role {role} is missing")).into());
                }
                Err(CreateUserError::Infra(e)) => return Err(e.into()),
            }
        }
        Err(InfraError::internal("no free username for a new account").into())
    }

    async fn record_rejection(
        &self,
        provider: &ProviderName,
        reason: &str,
        client: &ClientInfo,
    ) -> Result<(), InfraError> {
        let event = self.accounts.event_from(
            AuditKind::LoginFailed,
            None,
            None,
            client,
            self.accounts.now(),
            json!({ "reason": "oauth_rejected", "provider": provider.as_str(), "detail": reason }),
        );
        self.accounts.record(event).await
    }

    fn binding_digest(&self, binding: &str) -> String {
        hex(self
            .accounts
            .ports
            .secrets
            .digest(&format!("oauth-binding:{binding}"))
            .as_bytes())
    }

    fn attempt_key(&self, state: &str) -> String {
        let digest = self
            .accounts
            .ports
            .secrets
            .digest(&format!("oauth-state:{state}"));
        format!("oauth:state:{}", hex(digest.as_bytes()))
    }

    fn code_key(&self, code: &str) -> String {
        let digest = self
            .accounts
            .ports
            .secrets
            .digest(&format!("oauth-code:{code}"));
        format!("oauth:code:{}", hex(digest.as_bytes()))
    }
}

fn oauth_login_details(provider: &str) -> serde_json::Value {
    json!({ "method": "oauth", "provider": provider })
}

fn new_identity(
    provider: &ProviderName,
    identity: &ProviderIdentity,
    user: UserId,
    now: DateTime<Utc>,
) -> Identity {
    Identity {
        provider: provider.clone(),
        subject: identity.subject.clone(),
        user_id: user,
        email: identity.email.clone(),
        created_at: now,
        last_used_at: now,
    }
}

/// A username to try first for a new account: the provider's handle, else the name, else the
/// e-mail address's local part, reduced to `[a-z0-9_]` and 3 to 24 characters (room for a
/// suffix); `user` when none of them gives one.
pub fn username_base(identity: &ProviderIdentity, email: Option<&Email>) -> String {
    let local = email.and_then(|e| e.as_str().split('@').next().map(str::to_owned));
    [
        identity.username_hint.clone(),
        identity.display_name.clone(),
        local,
    ]
    .into_iter()
    .flatten()
    .map(|raw| reduce_to_username(&raw))
    .find(|candidate| candidate.len() >= Username::MIN_LEN)
    .unwrap_or_else(|| "user".to_owned())
}

fn reduce_to_username(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.nfkc().flat_map(char::to_lowercase) {
        let mapped = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '_'
        };
        if mapped == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(mapped);
        if out.len() >= 24 {
            break;
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// `url` with `name=value` added to its query.
pub fn with_param(url: &str, name: &str, value: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.query_pairs_mut().append_pair(name, value);
            parsed.into()
        }
        // Allow-listed URLs are checked at configuration; keep a relative one usable.
        Err(_) => {
            let separator = if url.contains('?') { '&' } else { '?' };
            let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
            format!("{url}{separator}{name}={encoded}")
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit, so the time taken says nothing about where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(hint: Option<&str>, name: Option<&str>) -> ProviderIdentity {
        ProviderIdentity {
            subject: "1".into(),
            email: None,
            email_verified: false,
            username_hint: hint.map(str::to_owned),
            display_name: name.map(str::to_owned),
        }
    }

    #[test]
    fn usernames_come_from_the_handle_then_the_name_then_the_address() {
        assert_eq!(
            username_base(&identity(Some("Octo-Cat"), None), None),
            "octo_cat"
        );
        assert_eq!(
            username_base(&identity(Some("x"), Some("Ada Lovelace")), None),
            "ada_lovelace"
        );
        let email = Email::parse("Grace.Hopper@example.com").ok();
        assert_eq!(
            username_base(&identity(None, Some("李")), email.as_ref()),
            "grace_hopper"
        );
        assert_eq!(username_base(&identity(None, None), None), "user");
        let long = "a".repeat(60);
        assert_eq!(username_base(&identity(Some(&long), None), None).len(), 24);
        assert!(
            Username::parse(&username_base(&identity(Some("__Ünïcødé__"), None), None)).is_ok()
        );
    }

    #[test]
    fn parameters_are_added_to_the_query() {
        assert_eq!(
            with_param("https://app.example/done", "code", "a b"),
            "https://app.example/done?code=a+b"
        );
        assert_eq!(
            with_param("https://app.example/done?x=1", "error", "oauth_failed"),
            "https://app.example/done?x=1&error=oauth_failed"
        );
    }

    #[test]
    fn provider_names_are_path_safe() {
        assert!(ProviderName::parse("okta-staff_2").is_ok());
        for bad in ["", "Google", "1st", "a/b", "a b", &"a".repeat(33)] {
            assert!(ProviderName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
