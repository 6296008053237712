//! argon2id password hashing on a bounded pool of blocking threads.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use moments_domain::InfraError;
use moments_domain::ports::PasswordHasher;
use moments_domain::value::{Password, PasswordHash};
use tokio::sync::Semaphore;

/// argon2id cost parameters and the hashing concurrency bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Config {
    /// Memory cost in KiB (OWASP minimum: 19 456).
    pub memory_kib: u32,
    /// Iterations (OWASP minimum with 19 MiB: 2).
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// How many hashes may run at once; further requests wait their turn.
    pub max_concurrent: usize,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Invalid argon2 configuration.
#[derive(Debug, thiserror::Error)]
pub enum Argon2ConfigError {
    /// The parameters are outside what argon2 accepts.
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    /// `max_concurrent` was zero.
    #[error("max_concurrent must be at least 1")]
    NoConcurrency,
}

/// The argon2id [`PasswordHasher`].
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password with the configured parameters, verified against when there
    /// is no real hash so that unknown accounts cost the same time.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("params", &self.params)
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Argon2Hasher {
    /// Builds the hasher. Computes the dummy hash once, synchronously: call it at start-up.
    pub fn new(config: Argon2Config) -> Result<Self, Argon2ConfigError> {
        if config.max_concurrent == 0 {
            return Err(Argon2ConfigError::NoConcurrency);
        }
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| Argon2ConfigError::Params(e.to_string()))?;
        let random: [u8; 32] = rand::random();
        let dummy_hash = argon2id(&params)
            .hash_password(&random)
            .map_err(|e| Argon2ConfigError::Params(e.to_string()))?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Runs CPU-heavy work on a blocking thread once a permit is free. This is the only place
    /// argon2 runs: never on the async executor.
    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Params) -> T + Send + 'static,
    ) -> Result<T, InfraError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| InfraError::internal("password hashing pool closed"))?;
        let params = self.params.clone();
        let result = tokio::task::spawn_blocking(move || {
            let result = work(params);
            drop(permit);
            result
        })
        .await
        .map_err(|e| InfraError::internal(format!("password hashing task failed: {e}")))?;
        Ok(result)
    }
}

fn argon2id(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// bcrypt hashes as FastAPI/passlib and most other systems store them.
fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix))
        && hash.len() == 60
}

/// What a stored hash is: bcrypt, or argon2 with its parsed parameters.
enum Stored {
    Bcrypt,
    Argon2 {
        algorithm: Algorithm,
        version: Option<u32>,
        params: Params,
    },
}

fn classify(hash: &str) -> Option<Stored> {
    if is_bcrypt(hash) {
        return Some(Stored::Bcrypt);
    }
    let phc = argon2::password_hash::phc::PasswordHash::new(hash).ok()?;
    let algorithm = Algorithm::try_from(phc.algorithm.as_str()).ok()?;
    let params = Params::try_from(&phc).ok()?;
    Some(Stored::Argon2 {
        algorithm,
        version: phc.version,
        params,
    })
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, InfraError> {
        let secret = password.clone();
        self.run_blocking(move |params| {
            argon2id(&params)
                .hash_password(secret.expose().as_bytes())
                .map(|hash| PasswordHash::new(hash.to_string()))
                .map_err(|e| InfraError::internal(format!("argon2 hashing failed: {e}")))
        })
        .await?
    }

    async fn verify(
        &self,
        password: &Password,
        hash: Option<&PasswordHash>,
    ) -> Result<bool, InfraError> {
        let secret = password.clone();
        let is_real = hash.is_some();
        let target: String = match hash {
            Some(hash) => hash.as_str().to_owned(),
            None => self.dummy_hash.to_string(),
        };
        let matched = self
            .run_blocking(move |params| {
                if is_bcrypt(&target) {
                    return bcrypt::verify(secret.expose(), &target)
                        .map_err(|e| InfraError::internal(format!("unusable bcrypt hash: {e}")));
                }
                match argon2id(&params).verify_password(secret.expose().as_bytes(), target.as_str())
                {
                    Ok(()) => Ok(true),
                    Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                    Err(e) => Err(InfraError::internal(format!("unusable password hash: {e}"))),
                }
            })
            .await??;
        Ok(matched && is_real)
    }

    fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        match classify(hash.as_str()) {
            Some(Stored::Argon2 {
                algorithm: Algorithm::Argon2id,
                version: Some(0x13),
                params,
            }) => {
                params.m_cost() < self.params.m_cost()
                    || params.t_cost() < self.params.t_cost()
                    || params.p_cost() < self.params.p_cost()
            }
            _ => true,
        }
    }

    fn recognizes(&self, hash: &PasswordHash) -> bool {
        classify(hash.as_str()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Argon2Hasher {
        Argon2Hasher::new(Argon2Config {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
        })
        .unwrap()
    }

    fn pw(s: &str) -> Password {
        Password::parse(s).unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_and_salted() {
        let hasher = fast();
        let a = hasher
            .hash(&pw("correct horse battery staple"))
            .await
            .unwrap();
        let b = hasher
            .hash(&pw("correct horse battery staple"))
            .await
            .unwrap();
        assert!(
            a.as_str().starts_with("$argon2id$v=19$m=1024,t=1,p=1$"),
            "{}",
            a.as_str()
        );
        assert_ne!(a, b, "each hash has its own salt");
    }

    #[tokio::test]
    async fn verify_right_wrong_and_missing() {
        let hasher = fast();
        let hash = hasher
            .hash(&pw("correct horse battery staple"))
            .await
            .unwrap();
        assert!(
            hasher
                .verify(&pw("correct horse battery staple"), Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&pw("correct horse battery stapler"), Some(&hash))
                .await
                .unwrap()
        );
        // No hash: the dummy is verified (same cost) and the answer is always false, even for
        // the dummy's own input, which nobody knows.
        assert!(
            !hasher
                .verify(&pw("correct horse battery staple"), None)
                .await
                .unwrap()
        );
    }

    /// `$2b$` (passlib/FastAPI), `$2a$` and `$2y$` hashes of "correct horse battery staple",
    /// cost 4, made with the bcrypt crate and rewritten to each prefix.
    fn bcrypt_hashes() -> Vec<PasswordHash> {
        let hash = bcrypt::hash("correct horse battery staple", 4).unwrap();
        ["$2a$", "$2b$", "$2y$"]
            .iter()
            .map(|prefix| PasswordHash::new(format!("{prefix}{}", &hash[4..])))
            .collect()
    }

    #[tokio::test]
    async fn bcrypt_hashes_verify_and_need_rehash() {
        let hasher = fast();
        for hash in bcrypt_hashes() {
            assert!(hasher.recognizes(&hash), "{:?}", &hash.as_str()[..4]);
            assert!(
                hasher
                    .verify(&pw("correct horse battery staple"), Some(&hash))
                    .await
                    .unwrap()
            );
            assert!(
                !hasher
                    .verify(&pw("correct horse battery stapler"), Some(&hash))
                    .await
                    .unwrap()
            );
            assert!(hasher.needs_rehash(&hash));
        }
    }

    #[tokio::test]
    async fn weaker_argon2_needs_rehash_and_current_does_not() {
        let strong = Argon2Hasher::new(Argon2Config {
            memory_kib: 2048,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 1,
        })
        .unwrap();
        let current = strong
            .hash(&pw("correct horse battery staple"))
            .await
            .unwrap();
        assert!(!strong.needs_rehash(&current));
        let weaker = fast()
            .hash(&pw("correct horse battery staple"))
            .await
            .unwrap();
        assert!(strong.needs_rehash(&weaker));
        assert!(
            strong
                .verify(&pw("correct horse battery staple"), Some(&weaker))
                .await
                .unwrap()
        );
        let argon2i = PasswordHash::new(
            "$argon2i$v=19$m=2048,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$wnK5e6F8mN0cQzGJ6ZrQbQ",
        );
        assert!(strong.needs_rehash(&argon2i));
    }

    #[test]
    fn unusable_hashes_are_not_recognised() {
        let hasher = fast();
        for bad in [
            "",
            "plain",
            "$2b$12$short",
            "$md5$abc",
            "$argon2id$v=19$m=x",
        ] {
            assert!(!hasher.recognizes(&PasswordHash::new(bad)), "{bad}");
        }
    }

    #[tokio::test]
    async fn corrupt_hash_is_an_internal_error_not_a_mismatch() {
        let hasher = fast();
        let err = hasher
            .verify(
                &pw("correct horse battery staple"),
                Some(&PasswordHash::new("nonsense")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, InfraError::Internal(_)));
    }

    #[tokio::test]
    async fn hashing_runs_on_a_blocking_thread() {
        // #[tokio::test] runs a current-thread runtime: the work must land on another thread.
        let hasher = Argon2Hasher::new(Argon2Config {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
            max_concurrent: 1,
        })
        .unwrap();
        let main_thread = std::thread::current().id();
        let observed = hasher
            .run_blocking(move |_| std::thread::current().id())
            .await
            .unwrap();
        assert_ne!(observed, main_thread);
    }

    #[test]
    fn zero_concurrency_is_refused() {
        let err = Argon2Hasher::new(Argon2Config {
            max_concurrent: 0,
            ..Argon2Config::default()
        });
        assert!(matches!(err, Err(Argon2ConfigError::NoConcurrency)));
    }
}
