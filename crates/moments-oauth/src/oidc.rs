//! Any OpenID Connect issuer, by discovery.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use moments_domain::oauth::{
    AuthorizationRequest, AuthorizationSecrets, IdentityError, IdentityProvider, ProviderIdentity,
    ProviderName,
};
use openidconnect::core::{
    CoreClient, CoreIdTokenVerifier, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreResponseType, CoreUserInfoClaims,
};
use openidconnect::{
    AsyncHttpClient, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpClientError,
    HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    TokenResponse, UserInfoError, reqwest,
};
use secrecy::ExposeSecret;
use tokio::sync::RwLock;

use crate::{ProviderConfig, ProviderConfigError, rejected, unavailable};

/// Signature algorithms accepted on ID tokens: asymmetric ones only. `none` and the HMAC
/// family (keyed with the client secret, which the provider's other clients may share) never.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// How long discovered metadata (and its key set) is trusted before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// An ID token signed by a key the cached set lacks refetches the set, at most this often
/// (issuers rotate keys; a flood of made-up `kid`s must not become a flood of fetches).
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// How far in the future an ID token's `iat` may be (clock skew).
const IAT_FUTURE_LEEWAY: TimeDelta = TimeDelta::seconds(60);

/// The oldest `iat` accepted: an ID token is issued for this sign-in, not replayed from before.
const IAT_MAX_AGE: TimeDelta = TimeDelta::minutes(10);

/// A client made from discovered metadata: the token and userinfo endpoints may be absent.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A call to the issuer failed: no answer, or a server error (which the OAuth libraries would
/// otherwise read as an unparsable answer, a rejection, rather than an outage).
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Http(#[from] HttpClientError<reqwest::Error>),
    #[error("the issuer answered {0}")]
    Status(u16),
}

/// The shared client, with server errors turned into [`CallError::Status`].
struct IssuerHttp(reqwest::Client);

impl<'c> AsyncHttpClient<'c> for IssuerHttp {
    type Error = CallError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, CallError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.call(request).await?;
            if response.status().is_server_error() {
                return Err(CallError::Status(response.status().as_u16()));
            }
            Ok(response)
        })
    }
}

struct Discovered {
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

/// An OpenID Connect relying party for one issuer.
pub(crate) struct OidcProvider {
    name: ProviderName,
    display_name: String,
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: Option<ClientSecret>,
    redirect: RedirectUrl,
    scopes: Vec<String>,
    http: IssuerHttp,
    discovered: RwLock<Option<Discovered>>,
}

impl OidcProvider {
    pub(crate) fn new(
        config: ProviderConfig,
        http: reqwest::Client,
    ) -> Result<Self, ProviderConfigError> {
        let issuer = config
            .issuer
            .as_deref()
            .ok_or_else(|| ProviderConfigError::new(&config.name, "an oidc provider needs ISSUER"))
            .and_then(|i| {
                IssuerUrl::new(i.to_owned()).map_err(|e| {
                    ProviderConfigError::new(&config.name, format!("issuer is not a URL: {e}"))
                })
            })?;
        let redirect = RedirectUrl::new(config.redirect_uri.clone())
            .map_err(|e| ProviderConfigError::new(&config.name, e.to_string()))?;
        Ok(Self {
            issuer,
            redirect,
            client_id: ClientId::new(config.client_id),
            client_secret: config
                .client_secret
                .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
            scopes: config.scopes,
            display_name: config.display_name,
            name: config.name,
            http: IssuerHttp(http),
            discovered: RwLock::new(None),
        })
    }

    /// The issuer's metadata, discovered now if never fetched, stale, or (with `refresh`) older
    /// than the key-refresh interval.
    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, IdentityError> {
        let fresh_enough = |d: &Discovered| {
            let age = d.fetched.elapsed();
            age < METADATA_TTL && !(refresh && age >= KEY_REFRESH_INTERVAL)
        };
        if let Some(d) = self.discovered.read().await.as_ref()
            && fresh_enough(d)
        {
            return Ok(d.metadata.clone());
        }
        let mut slot = self.discovered.write().await;
        if let Some(d) = slot.as_ref()
            && fresh_enough(d)
        {
            return Ok(d.metadata.clone());
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
        .await
        .map_err(|e| {
            tracing::warn!(provider = %self.name, error = %e, "OpenID Connect discovery failed");
            unavailable(e)
        })?;
        *slot = Some(Discovered {
            metadata: metadata.clone(),
            fetched: Instant::now(),
        });
        Ok(metadata)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> Client {
        CoreClient::from_provider_metadata(
            metadata,
            self.client_id.clone(),
            self.client_secret.clone(),
        )
        .set_redirect_uri(self.redirect.clone())
    }
}

fn verifier(client: &Client) -> CoreIdTokenVerifier<'_> {
    client
        .id_token_verifier()
        .set_allowed_algs(ALLOWED_ALGS)
        .set_issue_time_verifier_fn(check_issue_time)
}

fn check_issue_time(iat: DateTime<Utc>) -> Result<(), String> {
    let now = Utc::now();
    if iat > now + IAT_FUTURE_LEEWAY {
        return Err(format!("issued in the future ({iat})"));
    }
    if iat < now - IAT_MAX_AGE {
        return Err(format!("issued too long ago ({iat})"));
    }
    Ok(())
}

/// An error with its sources, for the log and the audit record.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn signed_by_unknown_key(e: &ClaimsVerificationError) -> bool {
    matches!(
        e,
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)
    )
}

#[async_trait]
impl IdentityProvider for OidcProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    fn display_name(&self) -> &str {
        &self.display_name
    }

    fn issuer(&self) -> Option<&str> {
        Some(self.issuer.as_str())
    }

    async fn authorization_request(&self) -> Result<AuthorizationRequest, IdentityError> {
        let client = self.client(self.metadata(false).await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(AuthorizationRequest {
            url: url.into(),
            state: state.secret().clone(),
            secrets: AuthorizationSecrets {
                pkce_verifier: verifier.secret().clone(),
                nonce: Some(nonce.secret().clone()),
            },
        })
    }

    async fn complete(
        &self,
        code: &str,
        secrets: &AuthorizationSecrets,
    ) -> Result<ProviderIdentity, IdentityError> {
        let nonce = Nonce::new(
            secrets
                .nonce
                .clone()
                .ok_or_else(|| rejected("no nonce was sent for this attempt"))?,
        );
        let metadata = self.metadata(false).await?;
        let client = self.client(metadata);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| rejected(format!("issuer has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(secrets.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    rejected(format!("token endpoint refused the code: {}", r.error()))
                }
                RequestTokenError::Request(e) => unavailable(e),
                RequestTokenError::Parse(e, _) => rejected(format!("invalid token response: {e}")),
                RequestTokenError::Other(e) => rejected(format!("token endpoint: {e}")),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| rejected("token response without an id_token"))?;
        let claims = match id_token.claims(&verifier(&client), &nonce) {
            Ok(claims) => claims.clone(),
            // The issuer may have rotated its keys since they were fetched: fetch once more.
            Err(e) if signed_by_unknown_key(&e) => {
                let refreshed = self.client(self.metadata(true).await?);
                id_token
                    .claims(&verifier(&refreshed), &nonce)
                    .map_err(|e| rejected(format!("ID token: {}", chain(&e))))?
                    .clone()
            }
            Err(e) => return Err(rejected(format!("ID token: {}", chain(&e)))),
        };
        let subject = claims.subject().clone();
        let mut identity = ProviderIdentity {
            subject: subject.as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified() == Some(true),
            username_hint: claims.preferred_username().map(|u| u.as_str().to_owned()),
            display_name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
        };
        // The userinfo answer must be about the same subject (token substitution defence).
        if client.user_info_url().is_some() {
            let info: CoreUserInfoClaims = client
                .user_info(token.access_token().clone(), Some(subject))
                .map_err(|e| rejected(e.to_string()))?
                .request_async(&self.http)
                .await
                .map_err(|e| match e {
                    UserInfoError::Request(e) => unavailable(e),
                    other => rejected(format!("userinfo: {}", chain(&other))),
                })?;
            if let Some(email) = info.email() {
                identity.email = Some(email.as_str().to_owned());
                identity.email_verified = info.email_verified() == Some(true);
            }
            if let Some(name) = info.preferred_username() {
                identity.username_hint = Some(name.as_str().to_owned());
            }
            if let Some(name) = info.name().and_then(|n| n.get(None)) {
                identity.display_name = Some(name.as_str().to_owned());
            }
        }
        Ok(identity)
    }
}
