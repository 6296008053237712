//! HS256 access tokens.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
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

/// Access-token settings.
#[derive(Clone)]
pub struct JwtConfig {
    /// The HS256 secret (at least 32 bytes).
    pub secret: SecretSlice<u8>,
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
            .field("secret", &"[redacted]")
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
    decoding: DecodingKey,
    validation: Validation,
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
        let secret = config.secret.expose_secret();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(JwtConfigError::WeakSecret);
        }
        if config.leeway < TimeDelta::zero()
            || config.leeway > TimeDelta::seconds(MAX_LEEWAY_SECONDS)
        {
            return Err(JwtConfigError::Leeway);
        }
        if config.ttl <= TimeDelta::zero() {
            return Err(JwtConfigError::Ttl);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        // Time claims are checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
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
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
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
    fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::Invalid);
        }
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
        JwtConfig {
            secret: SecretSlice::from(secret.to_vec()),
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
}
