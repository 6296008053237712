#![doc = include_str!("../README.md")]

mod jwt;
mod password;
mod secrets;

pub use jwt::{JwtConfig, JwtConfigError, JwtTokens, KeyMaterial};
pub use password::{Argon2Config, Argon2ConfigError, Argon2Hasher};
pub use secrets::{RandomSecrets, SealedCursors};
