//! The plain OAuth 2.0 providers (GitHub, Facebook, X): authorization code with PKCE S256, then
//! the provider's own profile API.

use async_trait::async_trait;
use moments_domain::oauth::{
    AuthorizationRequest, AuthorizationSecrets, IdentityError, IdentityProvider, ProviderIdentity,
    ProviderName,
};
use openidconnect::{CsrfToken, PkceCodeChallenge, reqwest};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{ProviderConfig, ProviderConfigError, ProviderKind, rejected, unavailable};

/// A provider's endpoints: where the browser authorizes, where the code is exchanged, and the
/// base of its profile API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The authorization endpoint.
    pub authorize: String,
    /// The token endpoint.
    pub token: String,
    /// The profile API's base URL (no trailing slash).
    pub api: String,
}

impl Endpoints {
    /// The public endpoints of a kind (`None` for OpenID Connect, which discovers them).
    pub fn defaults(kind: ProviderKind) -> Option<Self> {
        let (authorize, token, api) = match kind {
            ProviderKind::Oidc => return None,
            ProviderKind::Github => (
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
                "https://api.github.com",
            ),
            ProviderKind::Facebook => (
                "https://www.facebook.com/v21.0/dialog/oauth",
                "https://graph.facebook.com/v21.0/oauth/access_token",
                "https://graph.facebook.com/v21.0",
            ),
            ProviderKind::X => (
                "https://x.com/i/oauth2/authorize",
                "https://api.x.com/2/oauth2/token",
                "https://api.x.com/2",
            ),
        };
        Some(Self {
            authorize: authorize.to_owned(),
            token: token.to_owned(),
            api: api.to_owned(),
        })
    }
}

pub(crate) struct OAuth2Provider {
    name: ProviderName,
    kind: ProviderKind,
    display_name: String,
    client_id: String,
    client_secret: Option<SecretString>,
    scopes: Vec<String>,
    redirect_uri: String,
    endpoints: Endpoints,
    http: reqwest::Client,
}

impl OAuth2Provider {
    pub(crate) fn new(
        config: ProviderConfig,
        http: reqwest::Client,
    ) -> Result<Self, ProviderConfigError> {
        let endpoints = config
            .endpoints
            .or_else(|| Endpoints::defaults(config.kind))
            .ok_or_else(|| ProviderConfigError::new(&config.name, "no endpoints"))?;
        for url in [&endpoints.authorize, &endpoints.token, &endpoints.api] {
            url::Url::parse(url).map_err(|e| {
                ProviderConfigError::new(&config.name, format!("endpoint {url} is not a URL: {e}"))
            })?;
        }
        if config.client_secret.is_none() && config.kind != ProviderKind::X {
            return Err(ProviderConfigError::new(
                &config.name,
                "GitHub and Facebook need CLIENT_SECRET",
            ));
        }
        Ok(Self {
            name: config.name,
            kind: config.kind,
            display_name: config.display_name,
            client_id: config.client_id,
            client_secret: config.client_secret,
            scopes: config.scopes,
            redirect_uri: config.redirect_uri,
            endpoints: Endpoints {
                api: endpoints.api.trim_end_matches('/').to_owned(),
                ..endpoints
            },
            http,
        })
    }

    async fn exchange(
        &self,
        code: &str,
        secrets: &AuthorizationSecrets,
    ) -> Result<String, IdentityError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", secrets.pkce_verifier.as_str()),
            ("client_id", self.client_id.as_str()),
        ];
        let mut request = self
            .http
            .post(&self.endpoints.token)
            .header(reqwest::header::ACCEPT, "application/json");
        match (&self.client_secret, self.kind) {
            // X authenticates confidential clients with HTTP Basic only.
            (Some(secret), ProviderKind::X) => {
                request = request.basic_auth(&self.client_id, Some(secret.expose_secret()));
            }
            (Some(secret), _) => form.push(("client_secret", secret.expose_secret())),
            (None, _) => {}
        }
        let response = request.form(&form).send().await.map_err(unavailable)?;
        let status = response.status();
        if status.is_server_error() {
            return Err(unavailable(format!("token endpoint answered {status}")));
        }
        let body: TokenAnswer = read_json(response)
            .await
            .map_err(|e| rejected(format!("invalid token response ({status}): {e}")))?;
        // GitHub reports a refused code with 200 and an `error`.
        match (body.access_token, body.error) {
            (Some(token), None) if status.is_success() => Ok(token),
            (_, Some(error)) => Err(rejected(format!(
                "token endpoint refused the code: {error}"
            ))),
            _ => Err(rejected(format!(
                "token endpoint answered {status} without a token"
            ))),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, token: &str) -> Result<T, IdentityError> {
        let url = format!("{}{path}", self.endpoints.api);
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if status.is_server_error() {
            return Err(unavailable(format!("{path} answered {status}")));
        }
        if !status.is_success() {
            return Err(rejected(format!("{path} answered {status}")));
        }
        read_json(response)
            .await
            .map_err(|e| rejected(format!("{path}: unexpected answer: {e}")))
    }

    async fn github(&self, token: &str) -> Result<ProviderIdentity, IdentityError> {
        let user: GithubUser = self.get("/user", token).await?;
        // The primary address, if GitHub verified it; the profile's public address is neither
        // necessarily primary nor verified. Without the `user:email` scope there is none.
        let emails: Vec<GithubEmail> = match self.get("/user/emails", token).await {
            Ok(emails) => emails,
            Err(IdentityError::Rejected(reason)) => {
                tracing::debug!(provider = %self.name, %reason, "no e-mail addresses");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let primary = emails.into_iter().find(|e| e.primary && e.verified);
        Ok(ProviderIdentity {
            subject: user.id.to_string(),
            email_verified: primary.is_some(),
            email: primary.map(|e| e.email),
            username_hint: Some(user.login),
            display_name: user.name,
        })
    }

    async fn facebook(&self, token: &str) -> Result<ProviderIdentity, IdentityError> {
        let me: FacebookUser = self.get("/me?fields=id,name,email", token).await?;
        Ok(ProviderIdentity {
            subject: me.id,
            email: me.email,
            // Graph gives no verification flag: treated as unverified, so it never links an
            // existing account by itself.
            email_verified: false,
            username_hint: None,
            display_name: me.name,
        })
    }

    async fn x(&self, token: &str) -> Result<ProviderIdentity, IdentityError> {
        let me: XAnswer = self.get("/users/me", token).await?;
        Ok(ProviderIdentity {
            subject: me.data.id,
            email: None,
            email_verified: false,
            username_hint: Some(me.data.username),
            display_name: me.data.name,
        })
    }
}

/// Largest answer read from a provider.
const MAX_ANSWER: usize = 256 * 1024;

async fn read_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, String> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER as u64)
    {
        return Err("answer too large".into());
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if body.len() > MAX_ANSWER {
        return Err("answer too large".into());
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    login: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

#[derive(Deserialize)]
struct FacebookUser {
    id: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct XAnswer {
    data: XUser,
}

#[derive(Deserialize)]
struct XUser {
    id: String,
    name: Option<String>,
    username: String,
}

#[async_trait]
impl IdentityProvider for OAuth2Provider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    fn display_name(&self) -> &str {
        &self.display_name
    }

    fn issuer(&self) -> Option<&str> {
        None
    }

    async fn authorization_request(&self) -> Result<AuthorizationRequest, IdentityError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random();
        let mut url = url::Url::parse(&self.endpoints.authorize)
            .map_err(|e| rejected(format!("authorization endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.scopes.join(" "))
            .append_pair("state", state.secret())
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", challenge.method().as_str());
        Ok(AuthorizationRequest {
            url: url.into(),
            state: state.secret().clone(),
            secrets: AuthorizationSecrets {
                pkce_verifier: verifier.secret().clone(),
                nonce: None,
            },
        })
    }

    async fn complete(
        &self,
        code: &str,
        secrets: &AuthorizationSecrets,
    ) -> Result<ProviderIdentity, IdentityError> {
        let token = self.exchange(code, secrets).await?;
        let identity = match self.kind {
            ProviderKind::Github => self.github(&token).await?,
            ProviderKind::Facebook => self.facebook(&token).await?,
            ProviderKind::X => self.x(&token).await?,
            ProviderKind::Oidc => return Err(rejected("not an OAuth 2.0 provider")),
        };
        if identity.subject.is_empty() {
            return Err(rejected("profile without an id"));
        }
        Ok(identity)
    }
}
