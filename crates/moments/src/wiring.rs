//! Wiring: the only place that names concrete adapters.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::TimeDelta;
use moments_crypto::{
    Argon2Hasher, JwtConfig, JwtTokens, KeyMaterial, RandomSecrets, SealedCursors,
};
use moments_domain::account::AccountPorts;
use moments_domain::in_process::{InProcessEphemeralStore, InProcessRateLimiter};
use moments_domain::media::{MediaService, MediaStore};
use moments_domain::oauth::OAuthPolicy;
use moments_domain::ports::{
    ApiKeyStore, AuditStore, Clock, CursorCodec, EphemeralStore, HealthProbe, IdGenerator,
    IdentityStore, NoBroadcast, PostStore, RateLimiter, RevocationBroadcast, SessionStore,
    SystemClock, UserStore, UuidV7Generator,
};
use moments_domain::post::PostPorts;
use moments_domain::{AccountService, OAuthService, PostService, SessionPolicy};
use moments_http::{AppState, HttpConfig, RateLimits};
use moments_media::{LocalMediaStore, ObjectMediaStore};
use moments_postgres::{PgConfig, PgStore};
use moments_redis::{Redis, RedisEphemeralStore, RedisRateLimiter, RedisRevocations};
use moments_sqlite::{SqliteConfig, SqliteStore};
use secrecy::{ExposeSecret as _, SecretSlice};

use crate::config::{Config, DatabaseConfig, JwtSecretSource, MediaConfig};

/// The configured store.
#[derive(Debug, Clone)]
pub enum Store {
    /// The embedded SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// PostgreSQL.
    Postgres(Arc<PgStore>),
}

/// What to do about pending migrations when opening a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply them.
    Apply,
    /// Refuse to continue while any is pending (PostgreSQL without `MOMENTS_AUTO_MIGRATE`).
    RequireCurrent,
}

impl Store {
    /// Opens the configured store. SQLite always migrates itself; PostgreSQL follows `migrations`.
    pub async fn open(config: &Config, migrations: Migrations) -> anyhow::Result<Self> {
        match &config.database {
            DatabaseConfig::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let sqlite_config = SqliteConfig::new(path.clone());
                let store = tokio::task::spawn_blocking(move || -> anyhow::Result<SqliteStore> {
                    let store = SqliteStore::open(&sqlite_config)?;
                    store.migrate()?;
                    Ok(store)
                })
                .await??;
                tracing::info!(path = %path.display(), "using SQLite");
                Ok(Self::Sqlite(Arc::new(store)))
            }
            DatabaseConfig::Postgres(url) => {
                let store = PgStore::connect(&PgConfig {
                    url: url.clone(),
                    pool_size: config.database_pool_size,
                    operation_timeout: config.database_timeout,
                })?;
                match migrations {
                    Migrations::Apply => {
                        let applied = store.migrate().await?;
                        tracing::info!(applied = applied.len(), "PostgreSQL migrations applied");
                    }
                    Migrations::RequireCurrent => {
                        let pending = store.pending_migrations().await?;
                        if !pending.is_empty() {
                            bail!(
                                "the database is behind by {} migration(s) ({}): run `moments migrate` \
                                 first, or set MOMENTS_AUTO_MIGRATE=true",
                                pending.len(),
                                pending.join(", ")
                            );
                        }
                    }
                }
                tracing::info!("using PostgreSQL");
                Ok(Self::Postgres(Arc::new(store)))
            }
        }
    }

    /// The store as the domain's user store.
    pub fn users(&self) -> Arc<dyn UserStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// The store as the domain's API key store.
    pub fn keys(&self) -> Arc<dyn ApiKeyStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// The store as the domain's audit log.
    pub fn audit(&self) -> Arc<dyn AuditStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// The store as the domain's post store.
    pub fn posts(&self) -> Arc<dyn PostStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// Statements the store has sent to its database so far (tests count them).
    pub fn queries_issued(&self) -> u64 {
        match self {
            Self::Sqlite(s) => s.queries_issued(),
            Self::Postgres(s) => s.queries_issued(),
        }
    }

    /// The store as the domain's identity-link store.
    pub fn identities(&self) -> Arc<dyn IdentityStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// The store as the domain's session store.
    pub fn sessions(&self) -> Arc<dyn SessionStore> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    fn probe(&self) -> Arc<dyn HealthProbe> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }
}

/// Reads the development signing secret, creating it (48 random bytes, mode 0600) on first
/// start so tokens survive restarts.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<SecretSlice<u8>> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = STANDARD.decode(text.trim()).with_context(|| {
            format!(
                "{} is not base64; delete it to generate a new secret",
                path.display()
            )
        })?;
        if bytes.len() < crate::config::MIN_SECRET_BYTES {
            bail!(
                "{} holds a secret shorter than 32 bytes; delete it to generate a new one",
                path.display()
            );
        }
        return Ok(SecretSlice::from(bytes));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes: [u8; 48] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{}", STANDARD.encode(bytes))?;
    file.sync_all()?;
    tracing::warn!(path = %path.display(), "generated a development signing secret; set MOMENTS_JWT_SECRET in production");
    Ok(SecretSlice::from(bytes.to_vec()))
}

/// Builds the domain services and the HTTP state over a store.
pub fn build_state(config: &Config, store: &Store) -> anyhow::Result<(AppState, HttpConfig)> {
    build_state_with_clock(config, store, Arc::new(SystemClock))
}

/// [`build_state`] with a given clock (tests move time with it).
pub fn build_state_with_clock(
    config: &Config,
    store: &Store,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(AppState, HttpConfig)> {
    let ids: Arc<dyn IdGenerator> = Arc::new(UuidV7Generator);
    let keys = match &config.jwt_secret {
        JwtSecretSource::Configured(secret) => KeyMaterial::Hmac(secret.clone()),
        JwtSecretSource::Generated(path) => KeyMaterial::Hmac(load_or_create_secret(path)?),
        JwtSecretSource::KeyFiles {
            signing_key,
            verify_keys,
        } => KeyMaterial::Pem {
            signing_key: signing_key.clone(),
            verify_keys: verify_keys.clone(),
        },
    };
    // Refresh-token successors are keyed with material every instance shares.
    let successor_key =
        RandomSecrets::derive_key(keys.secret_material(), "moments/refresh-token-successor/v1");
    let cursor_key = RandomSecrets::derive_key(keys.secret_material(), "moments/list-cursor/v1");
    // API keys outlive signing keys: with MOMENTS_API_KEY_SECRET set, rotating the token
    // material leaves every key working.
    let api_key_key = RandomSecrets::derive_key(
        config
            .api_key_secret
            .as_ref()
            .map_or(keys.secret_material(), |s| s.expose_secret()),
        "moments/api-key-hash/v1",
    );
    let tokens = Arc::new(JwtTokens::new(
        JwtConfig {
            keys,
            issuer: config.public_url.clone(),
            audience: config.jwt_audience.clone(),
            ttl: config.access_token_ttl,
            leeway: TimeDelta::seconds(30),
        },
        clock.clone(),
        ids.clone(),
    )?);
    let hasher = Arc::new(Argon2Hasher::new(config.argon2)?);
    let shared = SharedState::open(config)?;
    let cursors: Arc<dyn CursorCodec> = Arc::new(SealedCursors::new(cursor_key));
    let accounts = AccountService::new(
        AccountPorts {
            users: store.users(),
            sessions: store.sessions(),
            keys: store.keys(),
            audit: store.audit(),
            hasher,
            issuer: tokens.clone(),
            verifier: tokens,
            secrets: Arc::new(RandomSecrets::new(successor_key, api_key_key)),
            clock: clock.clone(),
            ids: ids.clone(),
            cursors: cursors.clone(),
            ephemeral: shared.ephemeral,
            broadcast: shared.broadcast,
            identities: store.identities(),
        },
        SessionPolicy {
            refresh_token_ttl: config.refresh_token_ttl,
            session_max_age: config.session_max_age,
            refresh_grace: config.refresh_grace,
            login_throttle: config.login_throttle,
        },
    );
    let media = MediaService::new(
        media_store(&config.media)?,
        ids.clone(),
        config.media_limits,
    );
    let posts = PostService::new(PostPorts {
        posts: store.posts(),
        users: store.users(),
        clock,
        ids,
        cursors,
    });
    let mut probes = vec![store.probe()];
    probes.extend(shared.probe);
    let http_client = moments_oauth::http_client()
        .map_err(|e| anyhow::anyhow!("cannot build the OAuth HTTP client: {e}"))?;
    let providers = config
        .oauth
        .providers
        .iter()
        .map(|p| moments_oauth::build_provider(p.clone(), http_client.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let oauth = OAuthService::new(
        accounts.clone(),
        providers,
        OAuthPolicy {
            return_to_allowlist: config.oauth.return_to_allowlist.clone(),
            link_by_verified_email: config.oauth.link_by_verified_email,
            code_ttl: config.oauth.code_ttl,
            ..OAuthPolicy::default()
        },
    );
    let state = AppState {
        accounts,
        oauth,
        posts,
        media,
        public_url: config.public_url.clone(),
        probes,
        rate_limits: RateLimits {
            limiter: shared.limiter,
            policies: config.rate_limits,
        },
        trusted_proxies: config.trusted_proxies.clone(),
    };
    let http = HttpConfig {
        cors_origins: config.cors_origins.clone(),
    };
    Ok((state, http))
}

/// What instances share: on Redis when `REDIS_URL` is set, else in this process.
struct SharedState {
    limiter: Arc<dyn RateLimiter>,
    ephemeral: Arc<dyn EphemeralStore>,
    broadcast: Arc<dyn RevocationBroadcast>,
    probe: Option<Arc<dyn HealthProbe>>,
}

impl SharedState {
    /// Connects lazily: a Redis that is down at start-up is used once it answers.
    fn open(config: &Config) -> anyhow::Result<Self> {
        Ok(match &config.redis {
            None => Self {
                limiter: Arc::new(InProcessRateLimiter::new()),
                ephemeral: Arc::new(InProcessEphemeralStore::new()),
                broadcast: Arc::new(NoBroadcast),
                probe: None,
            },
            Some(redis_config) => {
                let redis = Redis::new(redis_config)?;
                Self {
                    limiter: Arc::new(RedisRateLimiter::new(redis.clone())),
                    ephemeral: Arc::new(RedisEphemeralStore::new(redis.clone())),
                    broadcast: Arc::new(RedisRevocations::new(redis.clone())),
                    probe: Some(Arc::new(redis)),
                }
            }
        })
    }
}

/// The media store the configuration names. Blocking (creates the directory): call at start-up.
fn media_store(config: &MediaConfig) -> anyhow::Result<Arc<dyn MediaStore>> {
    Ok(match config {
        MediaConfig::Local(dir) => Arc::new(LocalMediaStore::open(dir)?),
        MediaConfig::ObjectStore { url, options } => Arc::new(ObjectMediaStore::from_url(
            url,
            options
                .iter()
                .map(|(name, value)| (*name, value.expose_secret().to_owned())),
        )?),
    })
}

/// The background tasks that keep this instance's revocation list current; they stop when
/// this is dropped.
#[derive(Debug)]
pub struct RevocationSync {
    poll: tokio::task::JoinHandle<()>,
    _announcements: Option<moments_redis::Subscription>,
}

impl Drop for RevocationSync {
    fn drop(&mut self) {
        self.poll.abort();
    }
}

/// Polls the store every `every` for revoked sessions and changed roles, so access tokens of
/// sessions revoked, or users demoted, on any instance are judged accordingly here within about
/// that long. Failures are logged and retried at the next tick (tokens of sessions revoked on
/// this instance are refused regardless). With Redis, also listens for revocations other
/// instances announce, which arrive within milliseconds.
pub fn spawn_revocation_sync(
    config: &Config,
    accounts: AccountService,
    every: std::time::Duration,
) -> anyhow::Result<RevocationSync> {
    let announcements = match &config.redis {
        Some(redis_config) => {
            let listener = accounts.clone();
            Some(
                RedisRevocations::new(Redis::new(redis_config)?).subscribe(move |sessions| {
                    listener.learn_revocations(sessions);
                }),
            )
        }
        None => None,
    };
    let poll = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match accounts.sync_changes().await {
                Ok(0) => {}
                Ok(learnt) => tracing::debug!(learnt, "revocations and role changes synchronised"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not synchronise revocations and role changes")
                }
            }
        }
    });
    Ok(RevocationSync {
        poll,
        _announcements: announcements,
    })
}
