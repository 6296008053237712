//! Validated value objects. Each has private fields and a constructor that returns `Result`:
//! once you hold one, it is valid.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

/// Why a value was refused: a stable machine-readable `code` and a human message.
///
/// Codes are part of the API contract (`errors[].code` of a 422 problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidValue {
    /// Stable code, for example `too_short`.
    pub code: &'static str,
    /// Explanation for people.
    pub message: String,
}

impl InvalidValue {
    /// A refusal with a code and a message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Refuses a length outside `min..=max` characters.
fn check_length(len: usize, min: usize, max: usize) -> Result<(), InvalidValue> {
    if len < min {
        return Err(InvalidValue::new(
            "too_short",
            format!("must be at least {min} characters"),
        ));
    }
    if len > max {
        return Err(InvalidValue::new(
            "too_long",
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// A username: 3 to 32 characters of `[a-z0-9_]` after NFKC normalisation and lowercasing.
///
/// Usernames are unique; because they are stored normalised, `Alice` and `alice` collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Shortest accepted username, in characters.
    pub const MIN_LEN: usize = 3;
    /// Longest accepted username, in characters.
    pub const MAX_LEN: usize = 32;

    /// Normalises (NFKC, lowercase) and checks a username.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let normalised: String = raw.nfkc().collect::<String>().to_lowercase();
        check_length(normalised.chars().count(), Self::MIN_LEN, Self::MAX_LEN)?;
        if !normalised
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(InvalidValue::new(
                "invalid_characters",
                "may contain only letters a-z, digits and underscores",
            ));
        }
        Ok(Self(normalised))
    }

    /// The normalised username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name to show instead of the username: 1 to 64 characters after trimming, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// Longest accepted name, in characters.
    pub const MAX_CHARS: usize = 64;

    /// Checks a display name.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InvalidValue::new("required", "must not be empty"));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue::new(
                "too_long",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "invalid_format",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An e-mail address, kept as entered (trimmed) and compared case-insensitively through
/// [`Email::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email {
    address: String,
    key: String,
}

impl Email {
    /// Longest accepted address, in bytes (RFC 5321 path limit).
    pub const MAX_LEN: usize = 254;

    /// Checks the shape of an address: one `@`, a local part of 1 to 64 bytes without spaces
    /// or control characters, and a domain of dot-separated labels of letters, digits and
    /// hyphens with at least one dot.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let address = raw.trim();
        let invalid = || InvalidValue::new("invalid_format", "must be an e-mail address");
        if address.is_empty() {
            return Err(InvalidValue::new("required", "must not be empty"));
        }
        if address.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(
                "too_long",
                format!("must be at most {} bytes", Self::MAX_LEN),
            ));
        }
        let (local, domain) = address.rsplit_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\\\"".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(invalid());
        }
        Ok(Self {
            address: address.to_owned(),
            key: address.to_lowercase(),
        })
    }

    /// The address as entered (trimmed).
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The case-folded form that uniqueness and look-ups use.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// The most common passwords (xato corpus via zxcvbn 4.4.2), one per line. Only entries that
/// the length rule would otherwise accept are kept in memory.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            let len = line.chars().count();
            (Password::MIN_LEN..=Password::MAX_LEN).contains(&len)
        })
        .collect()
});

/// A new password that meets the policy: 12 to 128 characters after NFKC normalisation, and
/// not one of the most common passwords (compared case-insensitively). No composition rules.
///
/// The secret never prints: `Debug` shows `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct Password(SecretString);

impl Password {
    /// Shortest accepted password, in characters.
    pub const MIN_LEN: usize = 12;
    /// Longest accepted password, in characters.
    pub const MAX_LEN: usize = 128;

    /// Normalises and checks a new password against the policy.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let normalised: String = raw.nfkc().collect();
        check_length(normalised.chars().count(), Self::MIN_LEN, Self::MAX_LEN)?;
        if COMMON_PASSWORDS.contains(normalised.to_lowercase().as_str()) {
            return Err(InvalidValue::new(
                "too_common",
                "is one of the most commonly used passwords",
            ));
        }
        Ok(Self(SecretString::from(normalised)))
    }

    /// A password presented at login. It is normalised like a new one but not held to the
    /// policy (accounts may predate it); only an upper bound keeps hashing cost bounded.
    pub fn for_verification(raw: &str) -> Result<Self, InvalidValue> {
        check_length(raw.chars().count(), 0, Self::MAX_VERIFY_LEN)?;
        Ok(Self(SecretString::from(raw.nfkc().collect::<String>())))
    }

    /// Longest password accepted for verification, in characters.
    pub const MAX_VERIFY_LEN: usize = 1024;

    /// The normalised secret, for the password hasher only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A password hash in PHC string format (`$argon2id$…`) or a legacy format a hasher
/// understands. Not secret like a password, but never printed either.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a stored hash string.
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The hash string, for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_is_nfkc_lowercased() {
        assert_eq!(Username::parse("Ａlice_01").unwrap().as_str(), "alice_01");
        assert_eq!(Username::parse("BOB").unwrap().as_str(), "bob");
    }

    #[test]
    fn username_bounds_and_characters() {
        assert_eq!(Username::parse("ab").unwrap_err().code, "too_short");
        assert_eq!(
            Username::parse(&"a".repeat(33)).unwrap_err().code,
            "too_long"
        );
        assert!(Username::parse(&"a".repeat(32)).is_ok());
        assert!(Username::parse("abc").is_ok());
        for bad in ["al ice", "al-ice", "álice", "a.b.c", "ali\u{0}ce"] {
            assert_eq!(
                Username::parse(bad).unwrap_err().code,
                "invalid_characters",
                "{bad}"
            );
        }
    }

    #[test]
    fn email_keeps_case_but_keys_lowercase() {
        let e = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice@Example.COM");
        assert_eq!(e.key(), "alice@example.com");
    }

    #[test]
    fn email_rejects_malformed() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a@x..com",
            ".a@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Email::parse("").unwrap_err().code, "required");
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long).unwrap_err().code, "too_long");
    }

    #[test]
    fn password_policy() {
        assert_eq!(Password::parse("short").unwrap_err().code, "too_short");
        assert_eq!(
            Password::parse(&"x".repeat(129)).unwrap_err().code,
            "too_long"
        );
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert_eq!(
            Password::parse("password1234").unwrap_err().code,
            "too_common"
        );
        assert_eq!(
            Password::parse("PassWord1234").unwrap_err().code,
            "too_common"
        );
        assert!(Password::parse("correct horse battery staple").is_ok());
    }

    #[test]
    fn password_length_counts_characters_after_nfkc() {
        // Twelve full-width digits normalise to twelve ASCII digits: long enough.
        let pw = Password::parse("９８７６５４３２１０９x").unwrap();
        assert_eq!(pw.expose(), "98765432109x");
    }

    #[test]
    fn secrets_do_not_print() {
        let pw = Password::parse("correct horse battery staple").unwrap();
        assert!(!format!("{pw:?}").contains("horse"));
        let hash = PasswordHash::new("$argon2id$v=19$secretish");
        assert!(!format!("{hash:?}").contains("argon2"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            #[test]
            fn usernames_parse_to_their_canonical_form(raw in "\\PC{0,40}") {
                if let Ok(name) = Username::parse(&raw) {
                    let len = name.as_str().chars().count();
                    prop_assert!((Username::MIN_LEN..=Username::MAX_LEN).contains(&len));
                    prop_assert!(name.as_str().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
                    prop_assert_eq!(Username::parse(name.as_str()).unwrap(), name);
                }
            }

            #[test]
            fn valid_usernames_are_accepted_in_any_case(raw in "[a-zA-Z0-9_]{3,32}") {
                let name = Username::parse(&raw).unwrap();
                prop_assert_eq!(name.as_str(), raw.to_lowercase());
            }

            #[test]
            fn emails_round_trip_and_key_case_insensitively(
                local in "[a-zA-Z0-9._%+-]{1,20}",
                domain in "[a-zA-Z0-9]{1,10}(\\.[a-zA-Z0-9]{1,10}){1,3}",
            ) {
                let raw = format!("{local}@{domain}");
                if let Ok(email) = Email::parse(&raw) {
                    prop_assert_eq!(email.as_str(), raw.as_str());
                    prop_assert_eq!(email.key(), raw.to_lowercase());
                    let shouted = Email::parse(&raw.to_uppercase()).unwrap();
                    prop_assert_eq!(shouted.key(), email.key());
                }
            }

            #[test]
            fn email_parsing_never_panics(raw in "\\PC{0,300}") {
                let _ = Email::parse(&raw);
            }

            #[test]
            fn accepted_passwords_respect_the_length_policy(raw in "\\PC{0,140}") {
                if let Ok(password) = Password::parse(&raw) {
                    let len = password.expose().chars().count();
                    prop_assert!((Password::MIN_LEN..=Password::MAX_LEN).contains(&len));
                }
            }
        }
    }
}
