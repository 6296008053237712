//! A faithful local identity provider for tests (feature `testing`).
//!
//! [`FakeProvider`] is a real HTTP server on a free loopback port that speaks the protocols the
//! adapter speaks: an OpenID Connect issuer (discovery, JWKS, authorize, token, userinfo; ID
//! tokens signed with a real RSA key) and the GitHub, Facebook and X endpoints, all checking
//! what a real provider checks (client credentials, redirect URI, single-use codes, the PKCE
//! verifier). [`Misbehaviour`] makes it answer the ways a relying party must refuse.

#![expect(
    clippy::unwrap_used,
    reason = "test support: a broken fake should fail the test loudly"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use moments_domain::oauth::ProviderName;
use openidconnect::{CsrfToken, reqwest};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Endpoints, ProviderConfig, ProviderKind};

/// The fake's signing key (RSA 2048, made for tests only).
const SIGNING_KEY: &[u8] = include_bytes!("../testdata/fake-issuer-rsa.pem");
/// The `kid` of the published key.
pub const KEY_ID: &str = "fake-1";
/// The client the fake knows.
pub const CLIENT_ID: &str = "moments-test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "moments-test-secret";

/// A user signed in at the fake provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    /// The provider's id of the user (digits for GitHub).
    pub subject: String,
    /// The user's address.
    pub email: Option<String>,
    /// Whether the provider verified it.
    pub email_verified: bool,
    /// Full name.
    pub name: Option<String>,
    /// Handle (`preferred_username`, GitHub login, X username).
    pub username: Option<String>,
}

impl FakeUser {
    /// A user with a verified address at `example.com` named after `subject`.
    pub fn new(subject: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            email: Some(format!("{subject}@example.com")),
            email_verified: true,
            name: Some(format!("User {subject}")),
            username: Some(format!("user_{subject}")),
        }
    }
}

/// Ways the fake can misbehave: each is a negative case of the OpenID Connect relying-party
/// certification (or a provider error) that the adapter must refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Behave.
    None,
    /// `iss` of another issuer.
    WrongIssuer,
    /// `aud` of another client.
    WrongAudience,
    /// A signature that does not verify.
    BadSignature,
    /// An unsigned token (`alg: none`).
    AlgNone,
    /// Signed with HS256 keyed by the client secret.
    HmacSigned,
    /// A `nonce` other than the one sent.
    WrongNonce,
    /// No `nonce`.
    MissingNonce,
    /// `exp` in the past.
    Expired,
    /// `iat` far in the past.
    IssuedLongAgo,
    /// No `sub`.
    MissingSub,
    /// Signed by a key whose `kid` is not in the JWKS.
    UnknownKid,
    /// The userinfo answer is about another subject.
    UserinfoSubMismatch,
    /// The token endpoint answers 500.
    TokenServerError,
}

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    user: FakeUser,
}

struct State {
    issuer: String,
    kind: ProviderKind,
    user: FakeUser,
    misbehaviour: Misbehaviour,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, FakeUser>,
    token_requests: usize,
}

/// A running fake provider. Stops when dropped.
#[derive(Clone)]
pub struct FakeProvider {
    base: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl FakeProvider {
    /// Starts a fake of `kind` on a free loopback port, with `FakeUser::new("1001")` signed in.
    pub async fn start(kind: ProviderKind) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            issuer: base.clone(),
            kind,
            user: FakeUser::new("1001"),
            misbehaviour: Misbehaviour::None,
            codes: HashMap::new(),
            tokens: HashMap::new(),
            token_requests: 0,
        }));
        let shared = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery),
                )
                .route("/jwks", web::get().to(jwks))
                .route("/authorize", web::get().to(authorize))
                .route("/token", web::post().to(token))
                .route("/userinfo", web::get().to(userinfo))
                .route("/user", web::get().to(github_user))
                .route("/user/emails", web::get().to(github_emails))
                .route("/me", web::get().to(facebook_me))
                .route("/users/me", web::get().to(x_me))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base,
            state,
            handle,
        }
    }

    /// The issuer URL (also the base of every endpoint).
    pub fn issuer(&self) -> &str {
        &self.base
    }

    /// The adapter configuration for this fake, as provider `name`, redirecting to
    /// `redirect_uri`.
    pub fn config(&self, name: &str, redirect_uri: &str) -> ProviderConfig {
        let kind = self.state.lock().unwrap().kind;
        ProviderConfig {
            name: ProviderName::parse(name).unwrap(),
            kind,
            display_name: format!("Fake {name}"),
            client_id: CLIENT_ID.to_owned(),
            client_secret: Some(SecretString::from(CLIENT_SECRET)),
            scopes: kind
                .default_scopes()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            redirect_uri: redirect_uri.to_owned(),
            issuer: (kind == ProviderKind::Oidc).then(|| self.base.clone()),
            endpoints: (kind != ProviderKind::Oidc).then(|| Endpoints {
                authorize: format!("{}/authorize", self.base),
                token: format!("{}/token", self.base),
                api: self.base.clone(),
            }),
        }
    }

    /// Who signs in at the next authorization.
    pub fn sign_in_as(&self, user: FakeUser) {
        self.state.lock().unwrap().user = user;
    }

    /// How the fake answers from now on.
    pub fn misbehave(&self, misbehaviour: Misbehaviour) {
        self.state.lock().unwrap().misbehaviour = misbehaviour;
    }

    /// How many code exchanges the token endpoint has seen.
    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().token_requests
    }

    /// Plays the browser at the provider: follows `authorization_url` and returns where the
    /// provider redirects back to (the callback URL with `code` and `state`).
    pub async fn authorize(&self, authorization_url: &str) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client.get(authorization_url).send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            302,
            "the fake refused: {response:?}"
        );
        response
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// Stops the server: the provider becomes unreachable.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn discovery(state: web::Data<Mutex<State>>) -> HttpResponse {
    let issuer = state.lock().unwrap().issuer.clone();
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

fn signing_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(SIGNING_KEY).unwrap()
}

async fn jwks() -> HttpResponse {
    let mut jwk = Jwk::from_encoding_key(&signing_key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(KEY_ID.to_owned());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
    HttpResponse::Ok().json(JwkSet { keys: vec![jwk] })
}

fn bad_request(error: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": error }))
}

async fn authorize(
    state: web::Data<Mutex<State>>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let q = query.into_inner();
    let mut state = state.lock().unwrap();
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return bad_request("unauthorized_client");
    }
    if q.get("response_type").map(String::as_str) != Some("code")
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return bad_request("invalid_request");
    }
    let (Some(redirect_uri), Some(challenge), Some(request_state)) = (
        q.get("redirect_uri"),
        q.get("code_challenge"),
        q.get("state"),
    ) else {
        return bad_request("invalid_request");
    };
    if state.kind == ProviderKind::Oidc
        && !q
            .get("scope")
            .is_some_and(|s| s.split(' ').any(|s| s == "openid"))
    {
        return bad_request("invalid_scope");
    }
    let code = CsrfToken::new_random().secret().clone();
    let user = state.user.clone();
    state.codes.insert(
        code.clone(),
        Grant {
            client_id: CLIENT_ID.to_owned(),
            redirect_uri: redirect_uri.clone(),
            challenge: challenge.clone(),
            nonce: q.get("nonce").cloned(),
            user,
        },
    );
    let mut location = url::Url::parse(redirect_uri).unwrap();
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", request_state);
    if state.kind == ProviderKind::Oidc {
        location.query_pairs_mut().append_pair("iss", &state.issuer);
    }
    HttpResponse::Found()
        .insert_header((header::LOCATION, location.as_str()))
        .finish()
}

/// The client's credentials from HTTP Basic or the form.
fn client_credentials(request: &HttpRequest, form: &HashMap<String, String>) -> (String, String) {
    if let Some(basic) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .unwrap_or_default();
        let text = String::from_utf8(decoded).unwrap_or_default();
        let (id, secret) = text.split_once(':').unwrap_or_default();
        let unescape = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        return (unescape(id), unescape(secret));
    }
    (
        form.get("client_id").cloned().unwrap_or_default(),
        form.get("client_secret").cloned().unwrap_or_default(),
    )
}

async fn token(
    state: web::Data<Mutex<State>>,
    request: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let form = form.into_inner();
    let mut state = state.lock().unwrap();
    state.token_requests += 1;
    // GitHub reports errors with 200.
    let refuse = |kind: ProviderKind, error: &str| {
        if kind == ProviderKind::Github {
            HttpResponse::Ok().json(json!({ "error": error }))
        } else {
            bad_request(error)
        }
    };
    if state.misbehaviour == Misbehaviour::TokenServerError {
        return HttpResponse::InternalServerError().body("upstream failure");
    }
    let (client_id, secret) = client_credentials(&request, &form);
    if client_id != CLIENT_ID || secret != CLIENT_SECRET {
        return refuse(state.kind, "invalid_client");
    }
    if state.kind == ProviderKind::X && !request.headers().contains_key(header::AUTHORIZATION) {
        // X takes confidential clients' credentials by HTTP Basic only.
        return refuse(state.kind, "invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return refuse(state.kind, "unsupported_grant_type");
    }
    let Some(grant) = form.get("code").and_then(|c| state.codes.remove(c)) else {
        return refuse(state.kind, "invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if grant.client_id != client_id
        || form.get("redirect_uri") != Some(&grant.redirect_uri)
        || challenge != grant.challenge
    {
        return refuse(state.kind, "invalid_grant");
    }
    let access_token = CsrfToken::new_random().secret().clone();
    state
        .tokens
        .insert(access_token.clone(), grant.user.clone());
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 3600,
    });
    if state.kind == ProviderKind::Oidc {
        answer["id_token"] = json!(id_token(&state, &grant));
    }
    HttpResponse::Ok().json(answer)
}

fn id_token(state: &State, grant: &Grant) -> String {
    let now = chrono::Utc::now().timestamp();
    let m = state.misbehaviour;
    let mut claims = json!({
        "iss": if m == Misbehaviour::WrongIssuer { "https://evil.example" } else { &state.issuer },
        "aud": if m == Misbehaviour::WrongAudience { "someone-else" } else { CLIENT_ID },
        "sub": grant.user.subject,
        "iat": if m == Misbehaviour::IssuedLongAgo { now - 3600 } else { now },
        "exp": if m == Misbehaviour::Expired { now - 60 } else { now + 300 },
        "email": grant.user.email,
        "email_verified": grant.user.email_verified,
        "name": grant.user.name,
        "preferred_username": grant.user.username,
    });
    match (m, &grant.nonce) {
        (Misbehaviour::MissingNonce, _) | (_, None) => {}
        (Misbehaviour::WrongNonce, Some(_)) => claims["nonce"] = json!("not-the-nonce"),
        (_, Some(nonce)) => claims["nonce"] = json!(nonce),
    }
    if m == Misbehaviour::MissingSub {
        claims.as_object_mut().unwrap().remove("sub");
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(
        if m == Misbehaviour::UnknownKid {
            "rotated-away"
        } else {
            KEY_ID
        }
        .to_owned(),
    );
    match m {
        Misbehaviour::AlgNone => {
            let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let body = URL_SAFE_NO_PAD.encode(claims.to_string());
            format!("{head}.{body}.")
        }
        Misbehaviour::HmacSigned => {
            let header = Header::new(Algorithm::HS256);
            jsonwebtoken::encode(
                &header,
                &claims,
                &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
            )
            .unwrap()
        }
        Misbehaviour::BadSignature => {
            let token = jsonwebtoken::encode(&header, &claims, &signing_key()).unwrap();
            let (signed, signature) = token.rsplit_once('.').unwrap();
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
            bytes[0] ^= 0x01;
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))
        }
        _ => jsonwebtoken::encode(&header, &claims, &signing_key()).unwrap(),
    }
}

/// The user behind the request's bearer token.
fn bearer_user(state: &State, request: &HttpRequest) -> Option<FakeUser> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    state.tokens.get(token).cloned()
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({ "error": "invalid_token" }))
}

async fn userinfo(state: web::Data<Mutex<State>>, request: HttpRequest) -> HttpResponse {
    let state = state.lock().unwrap();
    let Some(user) = bearer_user(&state, &request) else {
        return unauthorized();
    };
    let sub = if state.misbehaviour == Misbehaviour::UserinfoSubMismatch {
        "someone-else".to_owned()
    } else {
        user.subject
    };
    HttpResponse::Ok().json(json!({
        "sub": sub,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "preferred_username": user.username,
    }))
}

async fn github_user(state: web::Data<Mutex<State>>, request: HttpRequest) -> HttpResponse {
    let state = state.lock().unwrap();
    let Some(user) = bearer_user(&state, &request) else {
        return unauthorized();
    };
    // GitHub's ids are numbers; its `email` is the public one, which may be neither.
    let id: Value = user
        .subject
        .parse::<u64>()
        .map_or(json!(user.subject), |n| json!(n));
    HttpResponse::Ok().json(json!({
        "id": id,
        "login": user.username,
        "name": user.name,
        "email": null,
    }))
}

async fn github_emails(state: web::Data<Mutex<State>>, request: HttpRequest) -> HttpResponse {
    let state = state.lock().unwrap();
    let Some(user) = bearer_user(&state, &request) else {
        return unauthorized();
    };
    let mut emails = vec![json!({
        "email": format!("{}@users.noreply.github.com", user.subject),
        "primary": false,
        "verified": true,
    })];
    if let Some(email) = user.email {
        emails.push(json!({ "email": email, "primary": true, "verified": user.email_verified }));
    }
    HttpResponse::Ok().json(emails)
}

async fn facebook_me(state: web::Data<Mutex<State>>, request: HttpRequest) -> HttpResponse {
    let state = state.lock().unwrap();
    let Some(user) = bearer_user(&state, &request) else {
        return unauthorized();
    };
    HttpResponse::Ok().json(json!({ "id": user.subject, "name": user.name, "email": user.email }))
}

async fn x_me(state: web::Data<Mutex<State>>, request: HttpRequest) -> HttpResponse {
    let state = state.lock().unwrap();
    let Some(user) = bearer_user(&state, &request) else {
        return unauthorized();
    };
    HttpResponse::Ok().json(json!({
        "data": { "id": user.subject, "name": user.name, "username": user.username }
    }))
}
