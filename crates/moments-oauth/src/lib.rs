#![doc = include_str!("../README.md")]

mod oauth2;
mod oidc;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use moments_domain::error::BoxError;
use moments_domain::oauth::{IdentityError, IdentityProvider, ProviderName};
use openidconnect::reqwest;
use secrecy::SecretString;

pub use crate::oauth2::Endpoints;

/// Which protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Any OpenID Connect issuer, configured by discovery (Google, Microsoft, Okta, Keycloak,
    /// Auth0, ...).
    Oidc,
    /// GitHub (OAuth 2.0): the profile and its verified primary e-mail address.
    Github,
    /// Facebook (OAuth 2.0): Graph `me` with the e-mail address.
    Facebook,
    /// X (OAuth 2.0 with PKCE): `users/me`; X gives no e-mail address.
    X,
}

impl ProviderKind {
    /// The configuration word for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Github => "github",
            Self::Facebook => "facebook",
            Self::X => "x",
        }
    }

    /// The scopes asked for when none are configured.
    pub fn default_scopes(self) -> &'static [&'static str] {
        match self {
            Self::Oidc => &["openid", "email", "profile"],
            Self::Github => &["read:user", "user:email"],
            Self::Facebook => &["email", "public_profile"],
            Self::X => &["users.read", "tweet.read"],
        }
    }
}

impl FromStr for ProviderKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oidc" => Ok(Self::Oidc),
            "github" => Ok(Self::Github),
            "facebook" => Ok(Self::Facebook),
            "x" => Ok(Self::X),
            other => Err(format!(
                "unknown provider kind {other:?} (expected oidc, github, facebook or x)"
            )),
        }
    }
}

/// One provider's configuration.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The name in paths and in stored identities.
    pub name: ProviderName,
    /// The protocol.
    pub kind: ProviderKind,
    /// What to show on a sign-in button.
    pub display_name: String,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret (never printed); `None` for a public client.
    pub client_secret: Option<SecretString>,
    /// Scopes to ask for (`openid` is always asked of OpenID Connect issuers).
    pub scopes: Vec<String>,
    /// The redirect URI registered with the provider: the public URL plus
    /// `/api/v1/auth/oauth/<name>/callback`.
    pub redirect_uri: String,
    /// The issuer URL (OpenID Connect).
    pub issuer: Option<String>,
    /// Endpoint overrides for the OAuth 2.0 kinds (GitHub Enterprise, a test fake).
    pub endpoints: Option<Endpoints>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("OAuth provider {provider}: {message}")]
pub struct ProviderConfigError {
    provider: String,
    message: String,
}

impl ProviderConfigError {
    fn new(provider: &ProviderName, message: impl Into<String>) -> Self {
        Self {
            provider: provider.as_str().to_owned(),
            message: message.into(),
        }
    }
}

/// How long one call to a provider may take.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client every provider shares: no redirects followed (a provider that redirects a
/// back-channel call is refused, which closes the server-side request forgery a redirect would
/// open) and a time limit on every call.
pub fn http_client() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROVIDER_TIMEOUT)
        .user_agent(concat!("moments/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Builds the adapter for one configured provider. Nothing is fetched yet: an OpenID Connect
/// issuer is discovered on first use, so a provider that is down at start-up does not stop
/// the server.
pub fn build_provider(
    config: ProviderConfig,
    http: reqwest::Client,
) -> Result<Arc<dyn IdentityProvider>, ProviderConfigError> {
    url::Url::parse(&config.redirect_uri).map_err(|e| {
        ProviderConfigError::new(&config.name, format!("redirect URI is not a URL: {e}"))
    })?;
    Ok(match config.kind {
        ProviderKind::Oidc => Arc::new(oidc::OidcProvider::new(config, http)?),
        ProviderKind::Github | ProviderKind::Facebook | ProviderKind::X => {
            Arc::new(oauth2::OAuth2Provider::new(config, http)?)
        }
    })
}

fn unavailable(e: impl Into<BoxError>) -> IdentityError {
    IdentityError::Unavailable(e.into())
}

fn rejected(reason: impl Into<String>) -> IdentityError {
    IdentityError::Rejected(reason.into())
}
