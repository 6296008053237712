//! The adapter against the fake provider over real HTTP: each kind's happy path, and every
//! answer a relying party must refuse.

#![expect(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::sync::Arc;

use moments_domain::oauth::{IdentityError, IdentityProvider, ProviderIdentity};
use moments_oauth::testing::{FakeProvider, FakeUser, Misbehaviour};
use moments_oauth::{ProviderKind, build_provider, http_client};

const REDIRECT: &str = "https://moments.example/api/v1/auth/oauth/test/callback";

async fn started(kind: ProviderKind) -> (FakeProvider, Arc<dyn IdentityProvider>) {
    let fake = FakeProvider::start(kind).await;
    let provider = build_provider(fake.config("test", REDIRECT), http_client().unwrap()).unwrap();
    (fake, provider)
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// One sign-in at the fake: authorize, then complete with the code it returned.
async fn sign_in(
    fake: &FakeProvider,
    provider: &dyn IdentityProvider,
) -> Result<ProviderIdentity, IdentityError> {
    let request = provider.authorization_request().await.unwrap();
    let authorization = query(&request.url);
    assert_eq!(authorization["code_challenge_method"], "S256");
    assert_eq!(authorization["redirect_uri"], REDIRECT);
    let callback = fake.authorize(&request.url).await;
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let params = query(&callback);
    assert_eq!(params["state"], request.state);
    provider.complete(&params["code"], &request.secrets).await
}

fn rejected(result: Result<ProviderIdentity, IdentityError>) -> String {
    match result {
        Err(IdentityError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[actix_web::test]
async fn oidc_sign_in_validates_the_id_token_and_reads_userinfo() {
    let (fake, provider) = started(ProviderKind::Oidc).await;
    assert_eq!(provider.issuer(), Some(fake.issuer()));
    let request = provider.authorization_request().await.unwrap();
    let params = query(&request.url);
    assert!(params["scope"].split(' ').any(|s| s == "openid"));
    assert_eq!(params.get("nonce"), request.secrets.nonce.as_ref());
    let identity = sign_in(&fake, provider.as_ref()).await.unwrap();
    assert_eq!(
        identity,
        ProviderIdentity {
            subject: "1001".into(),
            email: Some("1001@example.com".into()),
            email_verified: true,
            username_hint: Some("user_1001".into()),
            display_name: Some("User 1001".into()),
        }
    );
}

#[actix_web::test]
async fn oidc_refuses_every_bad_id_token() {
    let (fake, provider) = started(ProviderKind::Oidc).await;
    for (misbehaviour, expected) in [
        (Misbehaviour::WrongIssuer, "issuer"),
        (Misbehaviour::WrongAudience, "audience"),
        (Misbehaviour::BadSignature, "ignature"),
        (Misbehaviour::AlgNone, "no signature"),
        (Misbehaviour::HmacSigned, "lgorithm"),
        (Misbehaviour::WrongNonce, "nonce"),
        (Misbehaviour::MissingNonce, "nonce"),
        (Misbehaviour::Expired, "xpired"),
        (Misbehaviour::IssuedLongAgo, "issued too long ago"),
        (Misbehaviour::MissingSub, "sub"),
        (Misbehaviour::UnknownKid, "key"),
        (Misbehaviour::UserinfoSubMismatch, "userinfo"),
    ] {
        fake.misbehave(misbehaviour);
        let reason = rejected(sign_in(&fake, provider.as_ref()).await);
        assert!(
            reason.to_lowercase().contains(&expected.to_lowercase()),
            "{misbehaviour:?}: {reason}"
        );
    }
    fake.misbehave(Misbehaviour::None);
    assert!(
        sign_in(&fake, provider.as_ref()).await.is_ok(),
        "behaving again"
    );
}

#[actix_web::test]
async fn codes_are_single_use_and_bound_to_the_verifier() {
    for kind in [ProviderKind::Oidc, ProviderKind::Github, ProviderKind::X] {
        let (fake, provider) = started(kind).await;
        let request = provider.authorization_request().await.unwrap();
        let code = query(&fake.authorize(&request.url).await)["code"].clone();
        let mut wrong = request.secrets.clone();
        wrong.pkce_verifier = "a".repeat(43);
        rejected(provider.complete(&code, &wrong).await);
        // The failed attempt spent the code, as a real provider does.
        rejected(provider.complete(&code, &request.secrets).await);

        let request = provider.authorization_request().await.unwrap();
        let code = query(&fake.authorize(&request.url).await)["code"].clone();
        provider.complete(&code, &request.secrets).await.unwrap();
        rejected(provider.complete(&code, &request.secrets).await);
    }
}

#[actix_web::test]
async fn github_gives_the_numeric_id_and_only_a_verified_primary_address() {
    let (fake, provider) = started(ProviderKind::Github).await;
    assert_eq!(provider.issuer(), None);
    let identity = sign_in(&fake, provider.as_ref()).await.unwrap();
    assert_eq!(identity.subject, "1001");
    assert_eq!(identity.email.as_deref(), Some("1001@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.username_hint.as_deref(), Some("user_1001"));

    fake.sign_in_as(FakeUser {
        email_verified: false,
        ..FakeUser::new("2002")
    });
    let identity = sign_in(&fake, provider.as_ref()).await.unwrap();
    assert_eq!((identity.email, identity.email_verified), (None, false));
}

#[actix_web::test]
async fn facebook_addresses_are_never_taken_as_verified() {
    let (fake, provider) = started(ProviderKind::Facebook).await;
    let identity = sign_in(&fake, provider.as_ref()).await.unwrap();
    assert_eq!(identity.subject, "1001");
    assert_eq!(identity.email.as_deref(), Some("1001@example.com"));
    assert!(!identity.email_verified);
    assert_eq!(identity.display_name.as_deref(), Some("User 1001"));
}

#[actix_web::test]
async fn x_gives_a_handle_and_no_address() {
    let (fake, provider) = started(ProviderKind::X).await;
    let identity = sign_in(&fake, provider.as_ref()).await.unwrap();
    assert_eq!(identity.subject, "1001");
    assert_eq!(identity.email, None);
    assert_eq!(identity.username_hint.as_deref(), Some("user_1001"));
}

#[actix_web::test]
async fn a_provider_that_fails_or_is_gone_is_unavailable_not_a_rejection() {
    let (fake, provider) = started(ProviderKind::Github).await;
    fake.misbehave(Misbehaviour::TokenServerError);
    let result = sign_in(&fake, provider.as_ref()).await;
    assert!(
        matches!(result, Err(IdentityError::Unavailable(_))),
        "{result:?}"
    );

    let (fake, provider) = started(ProviderKind::Oidc).await;
    fake.stop().await;
    let result = provider.authorization_request().await;
    assert!(
        matches!(result, Err(IdentityError::Unavailable(_))),
        "{result:?}"
    );
}

#[test]
fn secrets_never_print() {
    let mut config = moments_oauth::ProviderConfig {
        name: moments_domain::oauth::ProviderName::parse("gh").unwrap(),
        kind: ProviderKind::Github,
        display_name: "GitHub".into(),
        client_id: "id".into(),
        client_secret: Some("hunter2-secret".into()),
        scopes: vec![],
        redirect_uri: REDIRECT.into(),
        issuer: None,
        endpoints: None,
    };
    assert!(!format!("{config:?}").contains("hunter2"));
    config.client_secret = None;
    let error = build_provider(config, http_client().unwrap())
        .err()
        .unwrap();
    assert!(error.to_string().contains("CLIENT_SECRET"), "{error}");
}
