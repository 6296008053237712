//! Configuration from the environment, validated at start-up. Every error names the variable
//! and what is wrong with it. docs/configuration.md lists every setting with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::TimeDelta;
use moments_crypto::Argon2Config;
use moments_domain::account::LoginThrottle;
use moments_domain::limit::Quota;
use moments_domain::media::MediaLimits;
use moments_domain::oauth::ProviderName;
use moments_http::{RateLimitPolicies, RouteClass, TrustedProxies};
use moments_oauth::{Endpoints, ProviderConfig, ProviderKind};
use moments_redis::RedisConfig;
use secrecy::{SecretSlice, SecretString};

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: String,
    /// What is wrong, and what would be right.
    pub problem: String,
}

fn err(var: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.into(),
        problem: problem.into(),
    }
}

/// Development (the default) or production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Generates and keeps a signing secret under the data directory; human-readable logs.
    Development,
    /// Requires a strong signing secret; JSON logs.
    Production,
}

/// Which store to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// An SQLite file (the embedded default).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// Where the access-token signing secret comes from.
#[derive(Clone)]
pub enum JwtSecretSource {
    /// `MOMENTS_JWT_SECRET`.
    Configured(SecretSlice<u8>),
    /// Development only: generated once and kept in this file.
    Generated(PathBuf),
    /// `MOMENTS_JWT_SIGNING_KEY_FILE` (PEM private key, read at start-up) and
    /// `MOMENTS_JWT_VERIFY_KEY_FILES` (PEM public keys still accepted).
    KeyFiles {
        /// The signing key's PEM.
        signing_key: SecretSlice<u8>,
        /// The verification keys' PEMs.
        verify_keys: Vec<Vec<u8>>,
    },
}

impl std::fmt::Debug for JwtSecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Configured(_) => f.write_str("Configured([redacted])"),
            Self::Generated(path) => f.debug_tuple("Generated").field(path).finish(),
            Self::KeyFiles { verify_keys, .. } => f
                .debug_struct("KeyFiles")
                .field("signing_key", &"[redacted]")
                .field("verify_keys", &verify_keys.len())
                .finish(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where uploaded media is kept.
#[derive(Clone)]
pub enum MediaConfig {
    /// A directory (the embedded default: `<data dir>/media`).
    Local(PathBuf),
    /// `MOMENTS_MEDIA_URL=s3://bucket/prefix`, with the standard `AWS_*` variables as options.
    ObjectStore {
        /// The URL.
        url: String,
        /// `aws_endpoint`, `aws_region`, credentials… (values never printed).
        options: Vec<(&'static str, SecretString)>,
    },
}

impl std::fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(path) => f.debug_tuple("Local").field(path).finish(),
            Self::ObjectStore { url, options } => f
                .debug_struct("ObjectStore")
                .field("url", url)
                .field(
                    "options",
                    &options.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// The `AWS_*` variables passed to an object store, by the option name object_store gives them.
const OBJECT_STORE_VARIABLES: &[(&str, &str)] = &[
    ("AWS_ENDPOINT", "aws_endpoint"),
    ("AWS_REGION", "aws_region"),
    ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ("AWS_SESSION_TOKEN", "aws_session_token"),
    ("AWS_ALLOW_HTTP", "aws_allow_http"),
];

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MOMENTS_ENV`.
    pub environment: Environment,
    /// `MOMENTS_LISTEN`.
    pub listen: SocketAddr,
    /// `MOMENTS_DATA_DIR`.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`.
    pub database: DatabaseConfig,
    /// `MOMENTS_DATABASE_POOL_SIZE`.
    pub database_pool_size: usize,
    /// `MOMENTS_DATABASE_TIMEOUT_MS`.
    pub database_timeout: Duration,
    /// `MOMENTS_AUTO_MIGRATE`.
    pub auto_migrate: bool,
    /// `MOMENTS_PUBLIC_URL`: the token issuer and the base of absolute URLs.
    pub public_url: String,
    /// `MOMENTS_JWT_SECRET`, or a generated development secret.
    pub jwt_secret: JwtSecretSource,
    /// `MOMENTS_API_KEY_SECRET`: the key API keys are hashed with. Unset, it is derived from
    /// the token signing material, so rotating that material also invalidates every API key.
    pub api_key_secret: Option<SecretSlice<u8>>,
    /// `MOMENTS_JWT_AUDIENCE`.
    pub jwt_audience: String,
    /// `MOMENTS_ACCESS_TOKEN_TTL_SECONDS`.
    pub access_token_ttl: TimeDelta,
    /// `MOMENTS_REFRESH_TOKEN_TTL_SECONDS`.
    pub refresh_token_ttl: TimeDelta,
    /// `MOMENTS_SESSION_MAX_AGE_SECONDS`.
    pub session_max_age: TimeDelta,
    /// `MOMENTS_REFRESH_GRACE_SECONDS`.
    pub refresh_grace: TimeDelta,
    /// `MOMENTS_ARGON2_*` and `MOMENTS_HASHING_CONCURRENCY`.
    pub argon2: Argon2Config,
    /// `MOMENTS_CORS_ORIGINS`.
    pub cors_origins: Vec<String>,
    /// `MOMENTS_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `MOMENTS_REVOCATION_POLL_MS`: how often revoked sessions are fetched from the store.
    pub revocation_poll: Duration,
    /// `MOMENTS_SHUTDOWN_TIMEOUT_SECONDS`: how long in-flight requests may finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// `MOMENTS_MEDIA_URL` (unset: `<data dir>/media`).
    pub media: MediaConfig,
    /// `MOMENTS_MEDIA_MAX_BYTES` and `MOMENTS_MEDIA_MAX_PIXELS`.
    pub media_limits: MediaLimits,
    /// `REDIS_URL` and `MOMENTS_REDIS_*` (unset: limits and short-lived state in process).
    pub redis: Option<RedisConfig>,
    /// `MOMENTS_RATE_LIMIT_<CLASS>`.
    pub rate_limits: RateLimitPolicies,
    /// `MOMENTS_LOGIN_THROTTLE`.
    pub login_throttle: LoginThrottle,
    /// `MOMENTS_TRUSTED_PROXIES`.
    pub trusted_proxies: TrustedProxies,
    /// `MOMENTS_OAUTH_*`: identity providers.
    pub oauth: OAuthSettings,
}

/// Sign-in through identity providers (`MOMENTS_OAUTH_*`).
#[derive(Debug, Clone, Default)]
pub struct OAuthSettings {
    /// `MOMENTS_OAUTH_PROVIDERS` and each provider's `MOMENTS_OAUTH_<NAME>_*`.
    pub providers: Vec<ProviderConfig>,
    /// `MOMENTS_OAUTH_RETURN_TO_ALLOWLIST`: exact URLs a sign-in may return to.
    pub return_to_allowlist: Vec<String>,
    /// `MOMENTS_OAUTH_LINK_BY_VERIFIED_EMAIL` (default false).
    pub link_by_verified_email: bool,
    /// `MOMENTS_OAUTH_CODE_TTL_SECONDS` (default 60): how long the one-time code of a sign-in
    /// redirect can be exchanged.
    pub code_ttl: Duration,
}

/// The redirect URI to register with provider `name`.
pub fn oauth_redirect_uri(public_url: &str, name: &str) -> String {
    format!("{public_url}/api/v1/auth/oauth/{name}/callback")
}

/// Reads `MOMENTS_OAUTH_*`. A provider named `google` defaults to the Google issuer, and
/// `github`, `facebook` and `x` default to their own kind.
fn oauth_settings(
    get: &dyn Fn(&str) -> Option<String>,
    public_url: &str,
) -> Result<OAuthSettings, ConfigError> {
    let mut providers = Vec::new();
    let names = get("MOMENTS_OAUTH_PROVIDERS").unwrap_or_default();
    for raw in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = ProviderName::parse(raw)
            .map_err(|e| err("MOMENTS_OAUTH_PROVIDERS", format!("{raw:?}: {e}")))?;
        if providers.iter().any(|p: &ProviderConfig| p.name == name) {
            return Err(err(
                "MOMENTS_OAUTH_PROVIDERS",
                format!("{raw} is listed twice"),
            ));
        }
        let prefix = format!("MOMENTS_OAUTH_{}_", raw.to_uppercase().replace('-', "_"));
        let var = |suffix: &str| format!("{prefix}{suffix}");
        let kind = match get(&var("KIND")) {
            Some(kind) => kind
                .parse::<ProviderKind>()
                .map_err(|e| err(var("KIND"), e))?,
            None => match raw {
                "google" => ProviderKind::Oidc,
                "github" => ProviderKind::Github,
                "facebook" => ProviderKind::Facebook,
                "x" => ProviderKind::X,
                _ => return Err(err(var("KIND"), "is required: oidc, github, facebook or x")),
            },
        };
        let issuer = match (kind, get(&var("ISSUER"))) {
            (ProviderKind::Oidc, Some(issuer)) => Some(issuer),
            (ProviderKind::Oidc, None) if raw == "google" => {
                Some("https://accounts.google.com".to_owned())
            }
            (ProviderKind::Oidc, None) => {
                return Err(err(var("ISSUER"), "is required for an oidc provider"));
            }
            (_, Some(_)) => return Err(err(var("ISSUER"), "is only for oidc providers")),
            (_, None) => None,
        };
        let client_id =
            get(&var("CLIENT_ID")).ok_or_else(|| err(var("CLIENT_ID"), "is required"))?;
        let client_secret = get(&var("CLIENT_SECRET")).map(SecretString::from);
        if client_secret.is_none() && kind != ProviderKind::X {
            return Err(err(var("CLIENT_SECRET"), "is required"));
        }
        let scopes = match get(&var("SCOPES")) {
            Some(list) => list
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => kind
                .default_scopes()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        };
        let endpoints = match (
            get(&var("AUTH_URL")),
            get(&var("TOKEN_URL")),
            get(&var("API_URL")),
        ) {
            (None, None, None) => None,
            _ if kind == ProviderKind::Oidc => {
                return Err(err(
                    var("AUTH_URL"),
                    "oidc providers are configured by discovery",
                ));
            }
            (Some(authorize), Some(token), Some(api)) => Some(Endpoints {
                authorize,
                token,
                api,
            }),
            _ => {
                return Err(err(
                    var("AUTH_URL"),
                    "AUTH_URL, TOKEN_URL and API_URL go together",
                ));
            }
        };
        let display_name = get(&var("DISPLAY_NAME")).unwrap_or_else(|| {
            match raw {
                "google" => "Google",
                "github" => "GitHub",
                "facebook" => "Facebook",
                "x" => "X",
                other => other,
            }
            .to_owned()
        });
        providers.push(ProviderConfig {
            redirect_uri: oauth_redirect_uri(public_url, raw),
            name,
            kind,
            display_name,
            client_id,
            client_secret,
            scopes,
            issuer,
            endpoints,
        });
    }
    let mut return_to_allowlist = Vec::new();
    for url in get("MOMENTS_OAUTH_RETURN_TO_ALLOWLIST")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        match url::Url::parse(url) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https") && parsed.fragment().is_none() =>
            {
                return_to_allowlist.push(url.to_owned());
            }
            _ => {
                return Err(err(
                    "MOMENTS_OAUTH_RETURN_TO_ALLOWLIST",
                    format!("{url:?} is not an absolute http(s) URL without a fragment"),
                ));
            }
        }
    }
    let link_by_verified_email = match get("MOMENTS_OAUTH_LINK_BY_VERIFIED_EMAIL").as_deref() {
        None | Some("false" | "0" | "no") => false,
        Some("true" | "1" | "yes") => true,
        Some(other) => {
            return Err(err(
                "MOMENTS_OAUTH_LINK_BY_VERIFIED_EMAIL",
                format!("must be true or false, not {other:?}"),
            ));
        }
    };
    let code_ttl = match get("MOMENTS_OAUTH_CODE_TTL_SECONDS") {
        None => 60,
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if (1..=300).contains(&n) => n,
            _ => {
                return Err(err(
                    "MOMENTS_OAUTH_CODE_TTL_SECONDS",
                    format!("must be a whole number from 1 to 300, not {raw:?}"),
                ));
            }
        },
    };
    Ok(OAuthSettings {
        providers,
        return_to_allowlist,
        link_by_verified_email,
        code_ttl: Duration::from_secs(code_ttl),
    })
}

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Fewest distinct bytes a signing secret must have (refuses `aaaa…` and similar).
pub const MIN_SECRET_DISTINCT_BYTES: usize = 10;

fn check_secret(var: &'static str, secret: &[u8]) -> Result<(), ConfigError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(err(
            var,
            format!(
                "must be at least {MIN_SECRET_BYTES} bytes (it has {})",
                secret.len()
            ),
        ));
    }
    let mut distinct = secret.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_SECRET_DISTINCT_BYTES {
        return Err(err(
            var,
            "is too repetitive to be a secret; generate one with `openssl rand -base64 48`",
        ));
    }
    Ok(())
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number =
            |var: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
                match get(var) {
                    None => Ok(default),
                    Some(raw) => match raw.parse::<u64>() {
                        Ok(n) if (min..=max).contains(&n) => Ok(n),
                        _ => Err(err(
                            var,
                            format!("must be a whole number from {min} to {max}, not {raw:?}"),
                        )),
                    },
                }
            };
        let flag = |var: &'static str| -> Result<bool, ConfigError> {
            match get(var).as_deref() {
                None | Some("false" | "0" | "no") => Ok(false),
                Some("true" | "1" | "yes") => Ok(true),
                Some(other) => Err(err(var, format!("must be true or false, not {other:?}"))),
            }
        };
        let seconds = |var: &'static str,
                       default: u64,
                       min: u64,
                       max: u64|
         -> Result<TimeDelta, ConfigError> {
            let n = number(var, default, min, max)?;
            i64::try_from(n)
                .map(TimeDelta::seconds)
                .map_err(|_| err(var, "is too large"))
        };

        let environment = match get("MOMENTS_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(err(
                    "MOMENTS_ENV",
                    format!("must be development or production, not {other:?}"),
                ));
            }
        };
        let listen_raw = get("MOMENTS_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            err(
                "MOMENTS_LISTEN",
                format!("must be an address and port such as 127.0.0.1:8080, not {listen_raw:?}"),
            )
        })?;
        let data_dir = PathBuf::from(get("MOMENTS_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database = match get("DATABASE_URL") {
            None => DatabaseConfig::Sqlite(data_dir.join("moments.db")),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                DatabaseConfig::Postgres(url)
            }
            Some(url) => match url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
            {
                Some(path) if !path.is_empty() => DatabaseConfig::Sqlite(PathBuf::from(path)),
                _ => {
                    return Err(err(
                        "DATABASE_URL",
                        "must be postgres://… or sqlite://PATH (unset: an SQLite file in the data directory)",
                    ));
                }
            },
        };
        let public_url = get("MOMENTS_PUBLIC_URL")
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{listen}"));
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(err(
                "MOMENTS_PUBLIC_URL",
                "must be an absolute http:// or https:// URL",
            ));
        }
        let read = |var: &'static str, path: &str| {
            std::fs::read(path).map_err(|e| err(var, format!("cannot read {path}: {e}")))
        };
        let verify_keys = match get("MOMENTS_JWT_VERIFY_KEY_FILES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|path| read("MOMENTS_JWT_VERIFY_KEY_FILES", path))
                .collect::<Result<_, _>>()?,
        };
        let signing_key = get("MOMENTS_JWT_SIGNING_KEY_FILE");
        if signing_key.is_none() && !verify_keys.is_empty() {
            return Err(err(
                "MOMENTS_JWT_VERIFY_KEY_FILES",
                "needs MOMENTS_JWT_SIGNING_KEY_FILE: verification keys accompany a signing key",
            ));
        }
        let jwt_secret = match (signing_key, get("MOMENTS_JWT_SECRET"), environment) {
            (Some(path), _, _) => JwtSecretSource::KeyFiles {
                signing_key: SecretSlice::from(read("MOMENTS_JWT_SIGNING_KEY_FILE", &path)?),
                verify_keys,
            },
            (None, Some(secret), _) => {
                check_secret("MOMENTS_JWT_SECRET", secret.as_bytes())?;
                JwtSecretSource::Configured(SecretSlice::from(secret.into_bytes()))
            }
            (None, None, Environment::Development) => {
                JwtSecretSource::Generated(data_dir.join("jwt-secret"))
            }
            (None, None, Environment::Production) => {
                return Err(err(
                    "MOMENTS_JWT_SECRET",
                    format!(
                        "is required in production (at least {MIN_SECRET_BYTES} random bytes), \
                         unless MOMENTS_JWT_SIGNING_KEY_FILE is set"
                    ),
                ));
            }
        };
        let api_key_secret = match get("MOMENTS_API_KEY_SECRET") {
            Some(secret) => {
                check_secret("MOMENTS_API_KEY_SECRET", secret.as_bytes())?;
                Some(SecretSlice::from(secret.into_bytes()))
            }
            None => None,
        };
        let access_token_ttl = seconds("MOMENTS_ACCESS_TOKEN_TTL_SECONDS", 900, 60, 86_400)?;
        let refresh_token_ttl = seconds(
            "MOMENTS_REFRESH_TOKEN_TTL_SECONDS",
            604_800,
            300,
            31_536_000,
        )?;
        let session_max_age = seconds(
            "MOMENTS_SESSION_MAX_AGE_SECONDS",
            2_592_000,
            300,
            31_536_000,
        )?;
        if session_max_age < refresh_token_ttl {
            return Err(err(
                "MOMENTS_SESSION_MAX_AGE_SECONDS",
                "must not be shorter than MOMENTS_REFRESH_TOKEN_TTL_SECONDS",
            ));
        }
        let refresh_grace = seconds("MOMENTS_REFRESH_GRACE_SECONDS", 5, 0, 60)?;
        let defaults = Argon2Config::default();
        let to_u32 =
            |var: &'static str, n: u64| u32::try_from(n).map_err(|_| err(var, "is too large"));
        let argon2 = Argon2Config {
            memory_kib: to_u32(
                "MOMENTS_ARGON2_MEMORY_KIB",
                number(
                    "MOMENTS_ARGON2_MEMORY_KIB",
                    defaults.memory_kib.into(),
                    19_456,
                    4_194_304,
                )?,
            )?,
            iterations: to_u32(
                "MOMENTS_ARGON2_ITERATIONS",
                number(
                    "MOMENTS_ARGON2_ITERATIONS",
                    defaults.iterations.into(),
                    2,
                    100,
                )?,
            )?,
            parallelism: to_u32(
                "MOMENTS_ARGON2_PARALLELISM",
                number(
                    "MOMENTS_ARGON2_PARALLELISM",
                    defaults.parallelism.into(),
                    1,
                    64,
                )?,
            )?,
            max_concurrent: usize::try_from(number(
                "MOMENTS_HASHING_CONCURRENCY",
                defaults.max_concurrent as u64,
                1,
                1024,
            )?)
            .map_err(|_| err("MOMENTS_HASHING_CONCURRENCY", "is too large"))?,
        };
        let cors_origins = match get("MOMENTS_CORS_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|origin| {
                    if (origin.starts_with("http://") || origin.starts_with("https://"))
                        && !origin.ends_with('/')
                    {
                        Ok(origin.to_owned())
                    } else {
                        Err(err(
                            "MOMENTS_CORS_ORIGINS",
                            format!("{origin:?} is not an origin such as https://app.example.com"),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let log_format = match get("MOMENTS_LOG_FORMAT").as_deref() {
            None if environment == Environment::Production => LogFormat::Json,
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(err(
                    "MOMENTS_LOG_FORMAT",
                    format!("must be text or json, not {other:?}"),
                ));
            }
        };
        let media = match get("MOMENTS_MEDIA_URL") {
            None => MediaConfig::Local(data_dir.join("media")),
            Some(url) if url.starts_with("s3://") => MediaConfig::ObjectStore {
                url,
                options: OBJECT_STORE_VARIABLES
                    .iter()
                    .filter_map(|(var, option)| get(var).map(|v| (*option, SecretString::from(v))))
                    .collect(),
            },
            Some(other) => {
                return Err(err(
                    "MOMENTS_MEDIA_URL",
                    format!("must be an s3:// URL (any S3-compatible service), not {other:?}"),
                ));
            }
        };
        let media_limits = MediaLimits {
            max_bytes: usize::try_from(number(
                "MOMENTS_MEDIA_MAX_BYTES",
                10 * 1024 * 1024,
                1024,
                1024 * 1024 * 1024,
            )?)
            .map_err(|_| err("MOMENTS_MEDIA_MAX_BYTES", "is too large"))?,
            max_pixels: number("MOMENTS_MEDIA_MAX_PIXELS", 40_000_000, 1, 1_000_000_000)?,
        };
        let quota = |var: &'static str| -> Result<Option<Quota>, ConfigError> {
            get(var)
                .map(|text| Quota::parse(&text).map_err(|e| err(var, e.to_string())))
                .transpose()
        };
        let mut rate_limits = RateLimitPolicies::default();
        for class in RouteClass::ALL {
            if let Some(q) = quota(rate_limit_var(class))? {
                rate_limits.set(class, q);
            }
        }
        let login_throttle = match quota("MOMENTS_LOGIN_THROTTLE")? {
            None => LoginThrottle::default(),
            Some(q) => LoginThrottle {
                failures: q.limit(),
                cool_down: Duration::from_secs(q.window_secs().into()),
            },
        };
        let trusted_proxies = match get("MOMENTS_TRUSTED_PROXIES") {
            None => TrustedProxies::default(),
            Some(list) => {
                TrustedProxies::parse(&list).map_err(|e| err("MOMENTS_TRUSTED_PROXIES", e))?
            }
        };
        let oauth = oauth_settings(&get, &public_url)?;
        let redis = match get("REDIS_URL") {
            None => None,
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Some(RedisConfig {
                    url,
                    pool_size: usize::try_from(number("MOMENTS_REDIS_POOL_SIZE", 16, 1, 1000)?)
                        .map_err(|_| err("MOMENTS_REDIS_POOL_SIZE", "is too large"))?,
                    timeout: Duration::from_millis(number(
                        "MOMENTS_REDIS_TIMEOUT_MS",
                        250,
                        10,
                        10_000,
                    )?),
                    retry_interval: Duration::from_millis(number(
                        "MOMENTS_REDIS_RETRY_MS",
                        1000,
                        100,
                        60_000,
                    )?),
                    prefix: get("MOMENTS_REDIS_PREFIX").unwrap_or_else(|| "moments:".into()),
                })
            }
            Some(_) => {
                return Err(err(
                    "REDIS_URL",
                    "must be redis://[user:password@]host:port[/db] or rediss://… (unset: in process)",
                ));
            }
        };
        Ok(Self {
            environment,
            listen,
            data_dir,
            database,
            database_pool_size: usize::try_from(number("MOMENTS_DATABASE_POOL_SIZE", 16, 1, 1000)?)
                .map_err(|_| err("MOMENTS_DATABASE_POOL_SIZE", "is too large"))?,
            database_timeout: Duration::from_millis(number(
                "MOMENTS_DATABASE_TIMEOUT_MS",
                2000,
                100,
                60_000,
            )?),
            auto_migrate: flag("MOMENTS_AUTO_MIGRATE")?,
            public_url,
            jwt_secret,
            api_key_secret,
            jwt_audience: get("MOMENTS_JWT_AUDIENCE").unwrap_or_else(|| "moments".into()),
            access_token_ttl,
            refresh_token_ttl,
            session_max_age,
            refresh_grace,
            argon2,
            cors_origins,
            log_format,
            revocation_poll: Duration::from_millis(number(
                "MOMENTS_REVOCATION_POLL_MS",
                1000,
                100,
                5000,
            )?),
            shutdown_timeout: Duration::from_secs(number(
                "MOMENTS_SHUTDOWN_TIMEOUT_SECONDS",
                30,
                1,
                3600,
            )?),
            media,
            media_limits,
            redis,
            rate_limits,
            login_throttle,
            trusted_proxies,
            oauth,
        })
    }
}

/// The variable that sets a route class's quota.
pub fn rate_limit_var(class: RouteClass) -> &'static str {
    match class {
        RouteClass::Login => "MOMENTS_RATE_LIMIT_LOGIN",
        RouteClass::Register => "MOMENTS_RATE_LIMIT_REGISTER",
        RouteClass::Refresh => "MOMENTS_RATE_LIMIT_REFRESH",
        RouteClass::Read => "MOMENTS_RATE_LIMIT_READ",
        RouteClass::Write => "MOMENTS_RATE_LIMIT_WRITE",
        RouteClass::Upload => "MOMENTS_RATE_LIMIT_UPLOAD",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const STRONG: &str = "k3J9x0PqLm2Vb7Nc4Zr8Ty1Ws6Ud5Ae0Hf";

    #[test]
    fn oauth_providers_have_defaults_and_errors_name_their_variable() {
        let vars = [
            ("MOMENTS_PUBLIC_URL", "https://api.example.com/"),
            ("MOMENTS_OAUTH_PROVIDERS", "google, github,staff-sso"),
            ("MOMENTS_OAUTH_GOOGLE_CLIENT_ID", "g"),
            ("MOMENTS_OAUTH_GOOGLE_CLIENT_SECRET", "gs"),
            ("MOMENTS_OAUTH_GITHUB_CLIENT_ID", "h"),
            ("MOMENTS_OAUTH_GITHUB_CLIENT_SECRET", "hs"),
            ("MOMENTS_OAUTH_GITHUB_SCOPES", "read:user,user:email"),
            ("MOMENTS_OAUTH_STAFF_SSO_KIND", "oidc"),
            ("MOMENTS_OAUTH_STAFF_SSO_ISSUER", "https://sso.example.com"),
            ("MOMENTS_OAUTH_STAFF_SSO_CLIENT_ID", "s"),
            ("MOMENTS_OAUTH_STAFF_SSO_CLIENT_SECRET", "ss"),
            (
                "MOMENTS_OAUTH_RETURN_TO_ALLOWLIST",
                "https://app.example.com/done",
            ),
        ];
        // A custom scheme (a mobile app) is not http(s): refused.
        let mut custom = vars.to_vec();
        custom.push((
            "MOMENTS_OAUTH_RETURN_TO_ALLOWLIST",
            "https://app.example.com/done,myapp://done",
        ));
        assert_eq!(
            config(&custom).unwrap_err().var,
            "MOMENTS_OAUTH_RETURN_TO_ALLOWLIST"
        );
        let c = config(&vars).unwrap();
        let [google, github, staff] = &c.oauth.providers[..] else {
            panic!("{:?}", c.oauth.providers);
        };
        assert_eq!(google.kind, ProviderKind::Oidc);
        assert_eq!(
            google.issuer.as_deref(),
            Some("https://accounts.google.com")
        );
        assert_eq!(google.display_name, "Google");
        assert_eq!(
            google.redirect_uri,
            "https://api.example.com/api/v1/auth/oauth/google/callback"
        );
        assert_eq!(github.kind, ProviderKind::Github);
        assert_eq!(github.scopes, ["read:user", "user:email"]);
        assert_eq!(github.display_name, "GitHub");
        assert_eq!(staff.name.as_str(), "staff-sso");
        assert_eq!(staff.scopes, ["openid", "email", "profile"]);
        assert_eq!(
            c.oauth.return_to_allowlist,
            ["https://app.example.com/done"]
        );
        assert!(!c.oauth.link_by_verified_email);
        assert_eq!(c.oauth.code_ttl, Duration::from_secs(60));
        assert!(!format!("{c:?}").contains("\"gs\""), "secrets never print");

        for (extra, var) in [
            (
                ("MOMENTS_OAUTH_PROVIDERS", "Google"),
                "MOMENTS_OAUTH_PROVIDERS",
            ),
            (
                ("MOMENTS_OAUTH_PROVIDERS", "github,github"),
                "MOMENTS_OAUTH_PROVIDERS",
            ),
            (
                ("MOMENTS_OAUTH_PROVIDERS", "okta"),
                "MOMENTS_OAUTH_OKTA_KIND",
            ),
            (
                ("MOMENTS_OAUTH_GITHUB_KIND", "gitlab"),
                "MOMENTS_OAUTH_GITHUB_KIND",
            ),
            (
                ("MOMENTS_OAUTH_GITHUB_ISSUER", "https://github.com"),
                "MOMENTS_OAUTH_GITHUB_ISSUER",
            ),
            (
                ("MOMENTS_OAUTH_GITHUB_AUTH_URL", "https://gh.example.com/a"),
                "MOMENTS_OAUTH_GITHUB_AUTH_URL",
            ),
            (
                ("MOMENTS_OAUTH_STAFF_SSO_AUTH_URL", "https://x"),
                "MOMENTS_OAUTH_STAFF_SSO_AUTH_URL",
            ),
            (
                ("MOMENTS_OAUTH_LINK_BY_VERIFIED_EMAIL", "maybe"),
                "MOMENTS_OAUTH_LINK_BY_VERIFIED_EMAIL",
            ),
            (
                ("MOMENTS_OAUTH_CODE_TTL_SECONDS", "0"),
                "MOMENTS_OAUTH_CODE_TTL_SECONDS",
            ),
            (
                (
                    "MOMENTS_OAUTH_RETURN_TO_ALLOWLIST",
                    "https://app.example.com/#frag",
                ),
                "MOMENTS_OAUTH_RETURN_TO_ALLOWLIST",
            ),
        ] {
            let mut with: Vec<(&str, &str)> = vars
                .iter()
                .copied()
                .filter(|(k, _)| *k != extra.0)
                .collect();
            with.push(extra);
            let e = config(&with).unwrap_err();
            assert_eq!(e.var, var, "{extra:?}: {e}");
        }
        let without_secret: Vec<(&str, &str)> = vars
            .iter()
            .copied()
            .filter(|(k, _)| *k != "MOMENTS_OAUTH_GITHUB_CLIENT_SECRET")
            .collect();
        assert_eq!(
            config(&without_secret).unwrap_err().var,
            "MOMENTS_OAUTH_GITHUB_CLIENT_SECRET"
        );
    }

    #[test]
    fn defaults_are_the_embedded_development_setup() {
        let c = config(&[]).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.database,
            DatabaseConfig::Sqlite(PathBuf::from("./data/moments.db"))
        );
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert!(
            matches!(c.jwt_secret, JwtSecretSource::Generated(ref p) if p == &PathBuf::from("./data/jwt-secret"))
        );
        assert_eq!(c.access_token_ttl, TimeDelta::minutes(15));
        assert_eq!(c.refresh_token_ttl, TimeDelta::days(7));
        assert_eq!(c.session_max_age, TimeDelta::days(30));
        assert_eq!(c.refresh_grace, TimeDelta::seconds(5));
        assert_eq!(c.argon2.memory_kib, 19_456);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn production_needs_a_strong_secret() {
        let e = config(&[("MOMENTS_ENV", "production")]).unwrap_err();
        assert_eq!(e.var, "MOMENTS_JWT_SECRET");
        let e = config(&[
            ("MOMENTS_ENV", "production"),
            ("MOMENTS_JWT_SECRET", "short"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "MOMENTS_JWT_SECRET");
        assert!(e.problem.contains("32"), "{e}");
        let repetitive = "a".repeat(64);
        let e = config(&[
            ("MOMENTS_ENV", "production"),
            ("MOMENTS_JWT_SECRET", &repetitive),
        ])
        .unwrap_err();
        assert!(e.problem.contains("repetitive"), "{e}");
        let c = config(&[
            ("MOMENTS_ENV", "production"),
            ("MOMENTS_JWT_SECRET", STRONG),
        ])
        .unwrap();
        assert!(matches!(c.jwt_secret, JwtSecretSource::Configured(_)));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(
            !format!("{c:?}").contains(STRONG),
            "the secret must not print"
        );
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("MOMENTS_LISTEN", "not-an-address"),
            ("MOMENTS_ENV", "staging"),
            ("DATABASE_URL", "mysql://x"),
            ("MOMENTS_ACCESS_TOKEN_TTL_SECONDS", "ten"),
            ("MOMENTS_ACCESS_TOKEN_TTL_SECONDS", "5"),
            ("MOMENTS_AUTO_MIGRATE", "maybe"),
            ("MOMENTS_REFRESH_GRACE_SECONDS", "600"),
            ("MOMENTS_CORS_ORIGINS", "app.example.com"),
            ("MOMENTS_ARGON2_MEMORY_KIB", "1024"),
            ("MOMENTS_PUBLIC_URL", "example.com"),
            ("MOMENTS_JWT_SIGNING_KEY_FILE", "/nonexistent/ed25519.pem"),
            ("MOMENTS_JWT_VERIFY_KEY_FILES", "/nonexistent/old.pub.pem"),
            ("MOMENTS_RATE_LIMIT_LOGIN", "10 per minute"),
            ("MOMENTS_RATE_LIMIT_READ", "0/60s"),
            ("MOMENTS_LOGIN_THROTTLE", "5/0s"),
            ("MOMENTS_TRUSTED_PROXIES", "10.0.0.0/40"),
            ("REDIS_URL", "http://localhost:6379"),
        ] {
            let e = config(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{var}={value}: {e}");
        }
        let e = config(&[
            ("MOMENTS_REFRESH_TOKEN_TTL_SECONDS", "9000000"),
            ("MOMENTS_SESSION_MAX_AGE_SECONDS", "600"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "MOMENTS_SESSION_MAX_AGE_SECONDS");
    }

    #[test]
    fn database_urls() {
        let c = config(&[("DATABASE_URL", "postgres://u@h/db")]).unwrap();
        assert_eq!(
            c.database,
            DatabaseConfig::Postgres("postgres://u@h/db".into())
        );
        let c = config(&[("DATABASE_URL", "sqlite:///var/lib/moments.db")]).unwrap();
        assert_eq!(
            c.database,
            DatabaseConfig::Sqlite(PathBuf::from("/var/lib/moments.db"))
        );
        let c = config(&[("DATABASE_URL", "sqlite://data/x.db")]).unwrap();
        assert_eq!(
            c.database,
            DatabaseConfig::Sqlite(PathBuf::from("data/x.db"))
        );
    }

    #[test]
    fn rate_limits_throttle_proxies_and_redis() {
        let c = config(&[]).unwrap();
        assert!(c.redis.is_none(), "in process by default");
        assert_eq!(c.rate_limits, RateLimitPolicies::default());
        assert_eq!(c.login_throttle, LoginThrottle::default());
        assert_eq!(c.trusted_proxies, TrustedProxies::default());
        let c = config(&[
            ("MOMENTS_RATE_LIMIT_LOGIN", "3/10s"),
            ("MOMENTS_RATE_LIMIT_UPLOAD", "1/3600s"),
            ("MOMENTS_LOGIN_THROTTLE", "4/30s"),
            ("MOMENTS_TRUSTED_PROXIES", "10.0.0.0/8,::1"),
            ("REDIS_URL", "redis://:hunter2@cache:6379/2"),
            ("MOMENTS_REDIS_TIMEOUT_MS", "100"),
        ])
        .unwrap();
        assert_eq!(c.rate_limits.get(RouteClass::Login).to_string(), "3/10s");
        assert_eq!(c.rate_limits.get(RouteClass::Upload).to_string(), "1/3600s");
        assert_eq!(c.rate_limits.get(RouteClass::Read).to_string(), "600/60s");
        assert_eq!(c.login_throttle.failures, 4);
        assert_eq!(c.login_throttle.cool_down, Duration::from_secs(30));
        assert!(c.trusted_proxies.contains("10.9.8.7".parse().unwrap()));
        let redis = c.redis.as_ref().unwrap();
        assert_eq!(redis.timeout, Duration::from_millis(100));
        assert_eq!(redis.prefix, "moments:");
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the Redis password must not print"
        );
        let e = config(&[
            ("REDIS_URL", "redis://cache:6379"),
            ("MOMENTS_REDIS_TIMEOUT_MS", "0"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "MOMENTS_REDIS_TIMEOUT_MS");
    }

    #[test]
    fn cors_origins_are_listed_exactly() {
        let c = config(&[(
            "MOMENTS_CORS_ORIGINS",
            "https://app.example.com, http://localhost:3000",
        )])
        .unwrap();
        assert_eq!(
            c.cors_origins,
            vec!["https://app.example.com", "http://localhost:3000"]
        );
    }
}
