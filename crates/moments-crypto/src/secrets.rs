//! Opaque refresh tokens and their digests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use moments_domain::api_key::KEY_PREFIX;
use moments_domain::ports::SecretGenerator;
use moments_domain::session::{OpaqueToken, TokenDigest};
use secrecy::{ExposeSecret as _, SecretSlice};
use sha2::{Digest, Sha256};

/// 256-bit random tokens, base64url-encoded, stored as SHA-256 digests. A slow hash is not
/// needed: the tokens carry 256 bits of entropy, so their digests cannot be reversed by guessing.
/// Successors are HMAC-SHA256 of the predecessor under the successor key. API keys (`mk_` and
/// 256 random bits) are stored as HMAC-SHA256 under a separate key, so a copy of the key table
/// is useless without the server secret.
#[derive(Clone)]
pub struct RandomSecrets {
    successor_key: SecretSlice<u8>,
    api_key_key: SecretSlice<u8>,
}

impl std::fmt::Debug for RandomSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RandomSecrets { keys: [redacted] }")
    }
}

impl RandomSecrets {
    /// Uses `successor_key` to derive refresh-token successors and `api_key_key` to hash API
    /// keys: each at least 32 bytes of secret material shared by every instance (derive them
    /// with [`RandomSecrets::derive_key`]).
    pub fn new(successor_key: SecretSlice<u8>, api_key_key: SecretSlice<u8>) -> Self {
        Self {
            successor_key,
            api_key_key,
        }
    }

    /// Derives a purpose-specific key from secret material (HMAC-SHA256 with a label), so one
    /// secret can serve several purposes without one use revealing another's key.
    pub fn derive_key(material: &[u8], label: &str) -> SecretSlice<u8> {
        SecretSlice::from(hmac_sha256(material, label.as_bytes()))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

impl SecretGenerator for RandomSecrets {
    fn opaque_token(&self) -> OpaqueToken {
        let bytes: [u8; 32] = rand::random();
        OpaqueToken::new(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn digest(&self, token: &str) -> TokenDigest {
        TokenDigest::from_bytes(Sha256::digest(token.as_bytes()).to_vec())
    }

    fn successor(&self, token: &str) -> OpaqueToken {
        let mac = hmac_sha256(self.successor_key.expose_secret(), token.as_bytes());
        OpaqueToken::new(URL_SAFE_NO_PAD.encode(mac))
    }

    fn api_key(&self) -> OpaqueToken {
        let bytes: [u8; 32] = rand::random();
        OpaqueToken::new(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    fn keyed_digest(&self, key: &str) -> TokenDigest {
        TokenDigest::from_bytes(hmac_sha256(
            self.api_key_key.expose_secret(),
            key.as_bytes(),
        ))
    }

    fn verify_keyed_digest(&self, key: &str, digest: &TokenDigest) -> bool {
        let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(self.api_key_key.expose_secret()) else {
            return false;
        };
        mac.update(key.as_bytes());
        // Constant-time: the time taken does not depend on where the digests differ.
        mac.verify_slice(digest.as_bytes()).is_ok()
    }
}

/// List cursors sealed with HMAC-SHA256 (truncated to 128 bits): `base64url(payload ‖ tag)`.
#[derive(Clone)]
pub struct SealedCursors {
    key: SecretSlice<u8>,
}

impl std::fmt::Debug for SealedCursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedCursors { key: [redacted] }")
    }
}

const CURSOR_TAG_BYTES: usize = 16;

impl SealedCursors {
    /// Seals with `key` (derive it with [`RandomSecrets::derive_key`]).
    pub fn new(key: SecretSlice<u8>) -> Self {
        Self { key }
    }
}

impl moments_domain::ports::CursorCodec for SealedCursors {
    fn seal(&self, payload: &[u8]) -> String {
        let tag = hmac_sha256(self.key.expose_secret(), payload);
        let mut sealed = payload.to_vec();
        sealed.extend_from_slice(&tag[..CURSOR_TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    fn open(&self, cursor: &str) -> Option<Vec<u8>> {
        let sealed = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let split = sealed.len().checked_sub(CURSOR_TAG_BYTES)?;
        let (payload, tag) = sealed.split_at(split);
        let mut mac = <Hmac<Sha256>>::new_from_slice(self.key.expose_secret()).ok()?;
        mac.update(payload);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(tag).ok()?;
        Some(payload.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn secrets() -> RandomSecrets {
        let material = b"material-0123456789-0123456789";
        RandomSecrets::new(
            RandomSecrets::derive_key(material, "test"),
            RandomSecrets::derive_key(material, "test-api-key"),
        )
    }

    #[test]
    fn api_keys_are_well_formed_distinct_and_verify_only_against_their_own_digest() {
        let s = secrets();
        let keys: HashSet<String> = (0..1000).map(|_| s.api_key().expose().to_owned()).collect();
        assert_eq!(keys.len(), 1000);
        for key in keys.iter().take(20) {
            assert!(
                moments_domain::api_key::lookup_prefix(key).is_some(),
                "{key}"
            );
            let digest = s.keyed_digest(key);
            assert!(s.verify_keyed_digest(key, &digest));
            let mut other = key.clone();
            other.pop();
            other.push(if key.ends_with('A') { 'B' } else { 'A' });
            assert!(!s.verify_keyed_digest(&other, &digest));
            assert!(!s.verify_keyed_digest(key, &TokenDigest::from_bytes(vec![0; 32])));
            assert!(!s.verify_keyed_digest(key, &TokenDigest::from_bytes(Vec::new())));
        }
    }

    #[test]
    fn api_key_digests_depend_on_the_server_secret() {
        let key = secrets().api_key();
        let other = RandomSecrets::new(
            RandomSecrets::derive_key(b"material-0123456789-0123456789", "test"),
            RandomSecrets::derive_key(b"another-secret-0123456789-0123", "test-api-key"),
        );
        assert_ne!(
            secrets().keyed_digest(key.expose()),
            other.keyed_digest(key.expose())
        );
        // Not a plain SHA-256 of the key either.
        assert_ne!(
            secrets().keyed_digest(key.expose()),
            secrets().digest(key.expose())
        );
    }

    #[test]
    fn tokens_are_256_bit_url_safe_and_distinct() {
        let tokens: HashSet<String> = (0..1000)
            .map(|_| secrets().opaque_token().expose().to_owned())
            .collect();
        assert_eq!(tokens.len(), 1000);
        for t in &tokens {
            let decoded = URL_SAFE_NO_PAD.decode(t).unwrap();
            assert_eq!(decoded.len(), 32);
        }
    }

    #[test]
    fn digest_is_deterministic_and_not_the_token() {
        let s = secrets();
        let token = s.opaque_token();
        let a = s.digest(token.expose());
        assert_eq!(a, s.digest(token.expose()));
        assert_eq!(a.as_bytes().len(), 32);
        assert_ne!(a.as_bytes(), token.expose().as_bytes());
        assert_ne!(a, s.digest("other"));
    }

    #[test]
    fn cursors_open_only_when_untouched() {
        use moments_domain::ports::CursorCodec as _;
        let cursors =
            SealedCursors::new(RandomSecrets::derive_key(b"material-0123456789", "cursor"));
        let cursor = cursors.seal(b"users\0al\0alice");
        assert_eq!(
            cursors.open(&cursor).as_deref(),
            Some(&b"users\0al\0alice"[..])
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&cursor).unwrap();
        bytes[0] ^= 1;
        assert_eq!(
            cursors.open(&URL_SAFE_NO_PAD.encode(&bytes)),
            None,
            "edited payload"
        );
        assert_eq!(cursors.open(&cursor[..cursor.len() - 2]), None, "truncated");
        assert_eq!(cursors.open(""), None);
        assert_eq!(cursors.open("not base64 !"), None);
        let other = SealedCursors::new(RandomSecrets::derive_key(b"other-material", "cursor"));
        assert_eq!(other.open(&cursor), None, "another key");
    }

    #[test]
    fn successors_are_deterministic_keyed_and_256_bit() {
        let s = secrets();
        let token = s.opaque_token();
        let next = s.successor(token.expose());
        assert_eq!(next.expose(), s.successor(token.expose()).expose());
        assert_ne!(next.expose(), token.expose());
        assert_eq!(URL_SAFE_NO_PAD.decode(next.expose()).unwrap().len(), 32);
        let other_key = RandomSecrets::new(
            RandomSecrets::derive_key(b"other-material-0123456789", "test"),
            RandomSecrets::derive_key(b"other-material-0123456789", "test-api-key"),
        );
        assert_ne!(next.expose(), other_key.successor(token.expose()).expose());
        // Labels separate purposes.
        let m = b"material-0123456789-0123456789";
        use secrecy::ExposeSecret as _;
        assert_ne!(
            RandomSecrets::derive_key(m, "a").expose_secret(),
            RandomSecrets::derive_key(m, "b").expose_secret()
        );
    }
}
