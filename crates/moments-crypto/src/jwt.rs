//! Access tokens: HS256 with a shared secret by default, EdDSA or RS256 with key files, with a
//! published JWK Set and `kid` rotation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moments_domain::InfraError;
use moments_domain::authz::{Permission, RoleName};
use moments_domain::ids::{SessionId, UserId};
use moments_domain::ports::{Clock, IdGenerator, TokenError, TokenIssuer, TokenVerifier};
use moments_domain::session::{AccessClaims, AccessGrant, AccessToken, OpaqueToken};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The JOSE `typ` of access tokens (RFC 9068). Tokens of any other type are refused.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Largest accepted clock skew.
pub const MAX_LEEWAY_SECONDS: i64 = 30;

/// Shortest accepted HS256 secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest accepted access token, in bytes: anything longer is refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The keys that sign and verify access tokens.
#[derive(Clone)]
pub enum KeyMaterial {
    /// HS256 with a shared secret of at least 32 bytes.
    Hmac(SecretSlice<u8>),
    /// EdDSA (Ed25519) or RS256, following the private key (PEM) that signs. Its public key and
    /// the `verify_keys` (PEM public keys of keys being rotated out) verify; all are published
    /// in the JWK Set with their RFC 7638 thumbprint as `kid`.
    Pem {
        /// PEM private key (PKCS#8 or PKCS#1).
        signing_key: SecretSlice<u8>,
        /// PEM public keys still accepted.
        verify_keys: Vec<Vec<u8>>,
    },
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hmac(_) => f.write_str("Hmac([redacted])"),
            Self::Pem { verify_keys, .. } => f
                .debug_struct("Pem")
                .field("signing_key", &"[redacted]")
                .field("verify_keys", &verify_keys.len())
                .finish(),
        }
    }
}

impl KeyMaterial {
    /// The secret material (the HMAC secret, or the private key) other keys can be derived from.
    pub fn secret_material(&self) -> &[u8] {
        match self {
            Self::Hmac(secret) => secret.expose_secret(),
            Self::Pem { signing_key, .. } => signing_key.expose_secret(),
        }
    }
}

/// Access-token settings.
#[derive(Clone)]
pub struct JwtConfig {
    /// Signing and verification keys.
    pub keys: KeyMaterial,
    /// `iss`: this service's public URL.
    pub issuer: String,
    /// `aud`: who the tokens are for.
    pub audience: String,
    /// Lifetime of access tokens.
    pub ttl: TimeDelta,
    /// Tolerated clock skew, at most [`MAX_LEEWAY_SECONDS`].
    pub leeway: TimeDelta,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("keys", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Invalid token configuration.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// The secret is too short to resist guessing.
    #[error("the signing secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    /// Leeway above the maximum.
    #[error("leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")]
    Leeway,
    /// Non-positive lifetime.
    #[error("the access token lifetime must be positive")]
    Ttl,
    /// A key file could not be used.
    #[error("{0}")]
    Key(String),
}

/// A key that verifies, with the only algorithm it accepts and the validation for it.
#[derive(Clone)]
struct VerifyKey {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: Uuid,
    sid: Uuid,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: Uuid,
    roles: Vec<String>,
    permissions: Vec<String>,
}

/// Signs and verifies HS256 access tokens. Time claims are checked against the injected
/// [`Clock`], so tests can move time.
#[derive(Clone)]
pub struct JwtTokens {
    encoding: EncodingKey,
    algorithm: Algorithm,
    /// The signing key's `kid` (asymmetric keys only).
    kid: Option<String>,
    /// Verification keys by `kid`; the HMAC key has none.
    verifiers: HashMap<Option<String>, VerifyKey>,
    /// The JWK Set document (public keys only; empty with HS256).
    jwks: String,
    ttl: TimeDelta,
    leeway: TimeDelta,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwtTokens {
    /// Builds the signer/verifier, refusing weak secrets and excessive leeway.
    pub fn new(
        config: JwtConfig,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Result<Self, JwtConfigError> {
        if config.leeway < TimeDelta::zero()
            || config.leeway > TimeDelta::seconds(MAX_LEEWAY_SECONDS)
        {
            return Err(JwtConfigError::Leeway);
        }
        if config.ttl <= TimeDelta::zero() {
            return Err(JwtConfigError::Ttl);
        }
        let validation_for = |algorithm: Algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.algorithms = vec![algorithm];
            validation.set_issuer(&[&config.issuer]);
            validation.set_audience(&[&config.audience]);
            validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
            // Time claims are checked against the injected clock (check_times).
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.leeway = 0;
            validation
        };
        let mut verifiers = HashMap::new();
        let mut published = Vec::new();
        let (encoding, algorithm, kid) = match &config.keys {
            KeyMaterial::Hmac(secret) => {
                let secret = secret.expose_secret();
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(JwtConfigError::WeakSecret);
                }
                let verify = VerifyKey {
                    key: DecodingKey::from_secret(secret),
                    validation: validation_for(Algorithm::HS256),
                };
                verifiers.insert(None, verify);
                (EncodingKey::from_secret(secret), Algorithm::HS256, None)
            }
            KeyMaterial::Pem {
                signing_key,
                verify_keys,
            } => {
                let (encoding, algorithm) = private_key(signing_key.expose_secret())?;
                let jwk = Jwk::from_encoding_key(&encoding, algorithm).map_err(key_error)?;
                let kid = publish(
                    &mut verifiers,
                    &mut published,
                    jwk,
                    algorithm,
                    &validation_for,
                )?;
                for pem in verify_keys {
                    let (decoding, algorithm) = public_key(pem)?;
                    let jwk =
                        Jwk::from_decoding_key(&decoding, Some(algorithm)).map_err(key_error)?;
                    publish(
                        &mut verifiers,
                        &mut published,
                        jwk,
                        algorithm,
                        &validation_for,
                    )?;
                }
                (encoding, algorithm, Some(kid))
            }
        };
        let jwks = serde_json::to_string(&JwkSet { keys: published })
            .map_err(|e| JwtConfigError::Key(e.to_string()))?;
        Ok(Self {
            encoding,
            algorithm,
            kid,
            verifiers,
            jwks,
            ttl: config.ttl,
            leeway: config.leeway,
            clock,
            ids,
            issuer: config.issuer,
            audience: config.audience,
        })
    }

    fn check_times(&self, claims: &Claims, now: DateTime<Utc>) -> Result<(), TokenError> {
        let now = now.timestamp();
        let leeway = self.leeway.num_seconds();
        if claims.nbf > now + leeway || claims.iat > now + leeway || claims.exp < claims.iat {
            return Err(TokenError::Invalid);
        }
        if claims.exp <= now - leeway {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

fn key_error(e: jsonwebtoken::errors::Error) -> JwtConfigError {
    JwtConfigError::Key(format!("unusable key: {e}"))
}

/// A PEM private key: Ed25519 signs with EdDSA, RSA with RS256.
fn private_key(pem: &[u8]) -> Result<(EncodingKey, Algorithm), JwtConfigError> {
    if let Ok(key) = EncodingKey::from_ed_pem(pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    Err(JwtConfigError::Key(
        "the signing key is not an Ed25519 or RSA private key in PEM".into(),
    ))
}

/// A PEM public key: Ed25519 verifies EdDSA, RSA verifies RS256.
fn public_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), JwtConfigError> {
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((key, Algorithm::EdDSA));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((key, Algorithm::RS256));
    }
    Err(JwtConfigError::Key(
        "a verification key is not an Ed25519 or RSA public key in PEM".into(),
    ))
}

/// Adds a public key to the verifiers and the JWK Set under its thumbprint; returns the `kid`.
fn publish(
    verifiers: &mut HashMap<Option<String>, VerifyKey>,
    published: &mut Vec<Jwk>,
    mut jwk: Jwk,
    algorithm: Algorithm,
    validation_for: &dyn Fn(Algorithm) -> Validation,
) -> Result<String, JwtConfigError> {
    let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(key_error)?;
    if verifiers.contains_key(&Some(kid.clone())) {
        return Ok(kid);
    }
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(match algorithm {
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        _ => KeyAlgorithm::RS256,
    });
    let key = DecodingKey::from_jwk(&jwk).map_err(key_error)?;
    verifiers.insert(
        Some(kid.clone()),
        VerifyKey {
            key,
            validation: validation_for(algorithm),
        },
    );
    published.push(jwk);
    Ok(kid)
}

impl TokenIssuer for JwtTokens {
    fn issue(&self, grant: &AccessGrant) -> Result<AccessToken, InfraError> {
        let now = self.clock.now();
        let expires_at = now + self.ttl;
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: grant.user_id.as_uuid(),
            sid: grant.session_id.as_uuid(),
            exp: expires_at.timestamp(),
            nbf: now.timestamp(),
            iat: now.timestamp(),
            jti: self.ids.new_id(),
            roles: grant.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            permissions: grant
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid.clone_from(&self.kid);
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| InfraError::internal(format!("signing an access token failed: {e}")))?;
        Ok(AccessToken {
            token: OpaqueToken::new(token),
            expires_at,
        })
    }

    fn access_token_ttl_seconds(&self) -> i64 {
        self.ttl.num_seconds()
    }
}

impl TokenVerifier for JwtTokens {
    fn jwks_json(&self) -> String {
        self.jwks.clone()
    }

    fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        // The header picks the key (`kid`), and the key fixes the one algorithm it accepts.
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::Invalid);
        }
        let verifier = self.verifiers.get(&header.kid).ok_or(TokenError::Invalid)?;
        let data = jsonwebtoken::decode::<Claims>(token, &verifier.key, &verifier.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        self.check_times(&claims, self.clock.now())?;
        let roles = claims
            .roles
            .iter()
            .map(|r| RoleName::parse(r))
            .collect::<Result<HashSet<_>, _>>()
            .map_err(|_| TokenError::Invalid)?;
        let permissions = claims
            .permissions
            .iter()
            .map(|p| Permission::parse(p))
            .collect::<Result<HashSet<_>, _>>()
            .map_err(|_| TokenError::Invalid)?;
        let mut roles: Vec<_> = roles.into_iter().collect();
        roles.sort();
        let mut permissions: Vec<_> = permissions.into_iter().collect();
        permissions.sort();
        Ok(AccessClaims {
            user_id: UserId::from_uuid(claims.sub),
            session_id: SessionId::from_uuid(claims.sid),
            roles,
            permissions,
            issued_at: DateTime::from_timestamp(claims.iat, 0).ok_or(TokenError::Invalid)?,
            expires_at: DateTime::from_timestamp(claims.exp, 0).ok_or(TokenError::Invalid)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use moments_domain::ports::UuidV7Generator;

    use super::*;

    /// A clock tests can move.
    struct TestClock(Mutex<DateTime<Utc>>);
    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }
    impl TestClock {
        fn advance(&self, by: TimeDelta) {
            *self.0.lock().unwrap() += by;
        }
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn config(secret: &[u8]) -> JwtConfig {
        with_keys(KeyMaterial::Hmac(SecretSlice::from(secret.to_vec())))
    }

    fn with_keys(keys: KeyMaterial) -> JwtConfig {
        JwtConfig {
            keys,
            issuer: "https://moments.test".into(),
            audience: "moments".into(),
            ttl: TimeDelta::minutes(15),
            leeway: TimeDelta::seconds(30),
        }
    }

    fn tokens_with(config: JwtConfig) -> (JwtTokens, Arc<TestClock>) {
        let clock = Arc::new(TestClock(Mutex::new(Utc::now())));
        let tokens = JwtTokens::new(config, clock.clone(), Arc::new(UuidV7Generator)).unwrap();
        (tokens, clock)
    }

    fn grant() -> AccessGrant {
        AccessGrant {
            user_id: UserId::from_uuid(Uuid::now_v7()),
            session_id: SessionId::from_uuid(Uuid::now_v7()),
            roles: vec![RoleName::parse("user").unwrap()],
            permissions: vec![Permission::parse("posts:write").unwrap()],
        }
    }

    fn sign_raw(header: &Header, claims: &serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn valid_claims(now: i64) -> serde_json::Value {
        serde_json::json!({
            "iss": "https://moments.test", "aud": "moments",
            "sub": Uuid::now_v7(), "sid": Uuid::now_v7(), "jti": Uuid::now_v7(),
            "iat": now, "nbf": now, "exp": now + 900,
            "roles": ["user"], "permissions": ["posts:write"],
        })
    }

    fn at_header() -> Header {
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some(ACCESS_TOKEN_TYPE.into());
        h
    }

    #[test]
    fn round_trip_carries_every_claim() {
        let (tokens, _) = tokens_with(config(SECRET));
        let g = grant();
        let issued = tokens.issue(&g).unwrap();
        let claims = tokens.verify(issued.token.expose()).unwrap();
        assert_eq!(claims.user_id, g.user_id);
        assert_eq!(claims.session_id, g.session_id);
        assert_eq!(claims.roles, g.roles);
        assert_eq!(claims.permissions, g.permissions);
        // The payload names every registered claim the issue requires.
        let payload = issued.token.expose().split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        for claim in ["iss", "aud", "sub", "sid", "exp", "nbf", "iat", "jti"] {
            assert!(json.get(claim).is_some(), "missing {claim}");
        }
    }

    #[test]
    fn expiry_respects_leeway() {
        let (tokens, clock) = tokens_with(config(SECRET));
        let issued = tokens.issue(&grant()).unwrap();
        clock.advance(TimeDelta::minutes(15) + TimeDelta::seconds(29));
        assert!(tokens.verify(issued.token.expose()).is_ok());
        clock.advance(TimeDelta::seconds(2));
        assert_eq!(
            tokens.verify(issued.token.expose()),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn not_yet_valid_tokens_are_refused() {
        let (tokens, clock) = tokens_with(config(SECRET));
        let issued = tokens.issue(&grant()).unwrap();
        clock.advance(TimeDelta::seconds(-31));
        assert_eq!(
            tokens.verify(issued.token.expose()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn wrong_secret_issuer_audience_type_or_algorithm_is_invalid() {
        let (tokens, clock) = tokens_with(config(SECRET));
        let now = clock.now().timestamp();
        let ok = sign_raw(&at_header(), &valid_claims(now), SECRET);
        assert!(tokens.verify(&ok).is_ok(), "the baseline must verify");

        let other_secret = sign_raw(
            &at_header(),
            &valid_claims(now),
            b"another-secret-another-secret-xx",
        );
        assert_eq!(tokens.verify(&other_secret), Err(TokenError::Invalid));

        for (claim, value) in [("iss", "https://evil.test"), ("aud", "someone-else")] {
            let mut c = valid_claims(now);
            c[claim] = value.into();
            assert_eq!(
                tokens.verify(&sign_raw(&at_header(), &c, SECRET)),
                Err(TokenError::Invalid),
                "{claim}"
            );
        }
        for claim in ["iss", "aud", "sub", "sid", "exp", "nbf", "iat", "jti"] {
            let mut c = valid_claims(now);
            c.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                tokens.verify(&sign_raw(&at_header(), &c, SECRET)),
                Err(TokenError::Invalid),
                "missing {claim}"
            );
        }
        // A JWT of another type (an ID token, a refresh token) is not an access token.
        let mut plain = Header::new(Algorithm::HS256);
        plain.typ = Some("JWT".into());
        assert_eq!(
            tokens.verify(&sign_raw(&plain, &valid_claims(now), SECRET)),
            Err(TokenError::Invalid)
        );
        // HS384 with the same secret is not on the allow-list.
        let mut hs384 = at_header();
        hs384.alg = Algorithm::HS384;
        assert_eq!(
            tokens.verify(&sign_raw(&hs384, &valid_claims(now), SECRET)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn alg_none_and_garbage_are_invalid() {
        let (tokens, clock) = tokens_with(config(SECRET));
        let now = clock.now().timestamp();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
        let payload = URL_SAFE_NO_PAD.encode(valid_claims(now).to_string());
        assert_eq!(
            tokens.verify(&format!("{header}.{payload}.")),
            Err(TokenError::Invalid)
        );
        for garbage in ["", "abc", "a.b.c", "....."] {
            assert_eq!(tokens.verify(garbage), Err(TokenError::Invalid));
        }
    }

    const ED_A: &[u8] = include_bytes!("../testdata/ed25519-a.pem");
    const ED_A_PUB: &[u8] = include_bytes!("../testdata/ed25519-a.pub.pem");
    const ED_B: &[u8] = include_bytes!("../testdata/ed25519-b.pem");
    const RSA_A: &[u8] = include_bytes!("../testdata/rsa-a.pem");
    const RSA_A_PUB: &[u8] = include_bytes!("../testdata/rsa-a.pub.pem");

    fn pem(signing: &[u8], verify: &[&[u8]]) -> KeyMaterial {
        KeyMaterial::Pem {
            signing_key: SecretSlice::from(signing.to_vec()),
            verify_keys: verify.iter().map(|k| k.to_vec()).collect(),
        }
    }

    fn header_of(token: &str) -> serde_json::Value {
        let header = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
    }

    #[test]
    fn eddsa_and_rs256_follow_the_key_and_publish_it() {
        for (key, alg, kty) in [(ED_A, "EdDSA", "OKP"), (RSA_A, "RS256", "RSA")] {
            let (tokens, _) = tokens_with(with_keys(pem(key, &[])));
            let token = tokens.issue(&grant()).unwrap();
            let header = header_of(token.token.expose());
            assert_eq!(header["alg"], alg);
            assert_eq!(header["typ"], ACCESS_TOKEN_TYPE);
            assert!(tokens.verify(token.token.expose()).is_ok(), "{alg}");
            let jwks: serde_json::Value = serde_json::from_str(&tokens.jwks_json()).unwrap();
            let keys = jwks["keys"].as_array().unwrap();
            assert_eq!(keys.len(), 1);
            assert_eq!(keys[0]["kid"], header["kid"]);
            assert_eq!(
                (keys[0]["kty"].as_str(), keys[0]["alg"].as_str()),
                (Some(kty), Some(alg))
            );
            assert_eq!(keys[0]["use"], "sig");
            assert!(keys[0].get("d").is_none(), "no private part is published");
            // The published key alone verifies the token.
            let jwk: Jwk = serde_json::from_value(keys[0].clone()).unwrap();
            let mut validation = Validation::new(
                header_of(token.token.expose())["alg"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
            validation.set_audience(&["moments"]);
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(
                    token.token.expose(),
                    &DecodingKey::from_jwk(&jwk).unwrap(),
                    &validation
                )
                .is_ok()
            );
        }
        let (hmac, _) = tokens_with(config(SECRET));
        assert_eq!(hmac.jwks_json(), r#"{"keys":[]}"#);
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let (old, _) = tokens_with(with_keys(pem(ED_A, &[])));
        let before = old.issue(&grant()).unwrap();
        let (rotated, _) = tokens_with(with_keys(pem(ED_B, &[ED_A_PUB, RSA_A_PUB])));
        let after = rotated.issue(&grant()).unwrap();
        assert!(
            rotated.verify(before.token.expose()).is_ok(),
            "old key still verifies"
        );
        assert!(rotated.verify(after.token.expose()).is_ok());
        assert_ne!(
            header_of(before.token.expose())["kid"],
            header_of(after.token.expose())["kid"]
        );
        let jwks: serde_json::Value = serde_json::from_str(&rotated.jwks_json()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 3);
        // Once the old key is dropped from the list, its tokens stop verifying.
        let (dropped, _) = tokens_with(with_keys(pem(ED_B, &[])));
        assert_eq!(
            dropped.verify(before.token.expose()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn algorithm_confusion_unknown_kids_and_oversize_are_invalid() {
        let (tokens, clock) = tokens_with(with_keys(pem(RSA_A, &[])));
        let now = clock.now().timestamp();
        let kid = header_of(tokens.issue(&grant()).unwrap().token.expose())["kid"]
            .as_str()
            .unwrap()
            .to_owned();
        // HS256 "signed" with the RSA public key as the secret, under the real kid.
        let mut confused = at_header();
        confused.kid = Some(kid.clone());
        assert_eq!(
            tokens.verify(&sign_raw(&confused, &valid_claims(now), RSA_A_PUB)),
            Err(TokenError::Invalid)
        );
        for bad_kid in [
            None,
            Some("unknown".to_owned()),
            Some("../../../etc/passwd".to_owned()),
        ] {
            let mut header = at_header();
            header.kid = bad_kid.clone();
            assert_eq!(
                tokens.verify(&sign_raw(&header, &valid_claims(now), SECRET)),
                Err(TokenError::Invalid),
                "{bad_kid:?}"
            );
        }
        let huge = format!(
            "{}.{}.x",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"at+jwt"}"#),
            "A".repeat(MAX_TOKEN_BYTES)
        );
        assert_eq!(tokens.verify(&huge), Err(TokenError::Invalid));
        // With HS256, a token naming any kid is not one of ours.
        let (hmac, _) = tokens_with(config(SECRET));
        let mut with_kid = at_header();
        with_kid.kid = Some(kid);
        assert_eq!(
            hmac.verify(&sign_raw(&with_kid, &valid_claims(now), SECRET)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn unusable_key_files_are_refused() {
        let clock: Arc<dyn Clock> = Arc::new(moments_domain::ports::SystemClock);
        let ids: Arc<dyn IdGenerator> = Arc::new(UuidV7Generator);
        for keys in [
            pem(b"not a key", &[]),
            pem(ED_A_PUB, &[]),
            pem(ED_A, &[b"garbage"]),
        ] {
            let result = JwtTokens::new(with_keys(keys), clock.clone(), ids.clone());
            assert!(matches!(result, Err(JwtConfigError::Key(_))));
        }
    }

    #[test]
    fn weak_secret_and_excess_leeway_are_refused() {
        let clock: Arc<dyn Clock> = Arc::new(moments_domain::ports::SystemClock);
        let ids: Arc<dyn IdGenerator> = Arc::new(UuidV7Generator);
        let weak = JwtTokens::new(config(b"short"), clock.clone(), ids.clone());
        assert!(matches!(weak, Err(JwtConfigError::WeakSecret)));
        let mut c = config(SECRET);
        c.leeway = TimeDelta::seconds(31);
        assert!(matches!(
            JwtTokens::new(c, clock, ids),
            Err(JwtConfigError::Leeway)
        ));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn any_altered_character_invalidates_a_token(position in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_.-]") {
                let (tokens, _) = tokens_with(config(SECRET));
                let token = tokens.issue(&grant()).unwrap().token.expose().to_owned();
                let at = position.index(token.len());
                let mut altered = token.clone();
                altered.replace_range(at..=at, &replacement);
                prop_assume!(altered != token);
                prop_assert!(tokens.verify(&altered).is_err());
            }

            #[test]
            fn arbitrary_strings_are_refused_without_panicking(raw in "\\PC{0,400}") {
                let (tokens, _) = tokens_with(config(SECRET));
                prop_assert!(tokens.verify(&raw).is_err());
            }
        }
    }
}
