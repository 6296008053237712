//! Opaque refresh tokens and their digests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moments_domain::ports::SecretGenerator;
use moments_domain::session::{OpaqueToken, TokenDigest};
use sha2::{Digest, Sha256};

/// 256-bit random tokens, base64url-encoded, stored as SHA-256 digests. A slow hash is not
/// needed: the tokens carry 256 bits of entropy, so their digests cannot be reversed by guessing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomSecrets;

impl SecretGenerator for RandomSecrets {
    fn opaque_token(&self) -> OpaqueToken {
        let bytes: [u8; 32] = rand::random();
        OpaqueToken::new(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn digest(&self, token: &str) -> TokenDigest {
        TokenDigest::from_bytes(Sha256::digest(token.as_bytes()).to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_are_256_bit_url_safe_and_distinct() {
        let tokens: HashSet<String> = (0..1000)
            .map(|_| RandomSecrets.opaque_token().expose().to_owned())
            .collect();
        assert_eq!(tokens.len(), 1000);
        for t in &tokens {
            let decoded = URL_SAFE_NO_PAD.decode(t).unwrap();
            assert_eq!(decoded.len(), 32);
        }
    }

    #[test]
    fn digest_is_deterministic_and_not_the_token() {
        let token = RandomSecrets.opaque_token();
        let a = RandomSecrets.digest(token.expose());
        assert_eq!(a, RandomSecrets.digest(token.expose()));
        assert_eq!(a.as_bytes().len(), 32);
        assert_ne!(a.as_bytes(), token.expose().as_bytes());
        assert_ne!(a, RandomSecrets.digest("other"));
    }
}
