//! The subcommands: serve, migrate, openapi, admin create-user.

use std::io::Read as _;

use actix_web::HttpServer;
use anyhow::{Context as _, bail};
use moments_domain::account::{RegisterError, Registration};
use moments_domain::authz::RoleName;
use moments_domain::import::{ImportError, ImportRecord};
use moments_domain::value::{Email, Password, Username};
use utoipa::OpenApi as _;

use crate::config::Config;
use crate::wiring::{Migrations, Store, build_state, spawn_revocation_sync};

/// Serves the API until SIGTERM or Ctrl-C; in-flight requests then get up to the shutdown
/// timeout to finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let migrations = if config.auto_migrate {
        Migrations::Apply
    } else {
        Migrations::RequireCurrent
    };
    match &config.redis {
        Some(redis) => tracing::info!(
            url = %moments_redis::redact_url(&redis.url),
            "rate limits, login throttles and revocation announcements shared through Redis"
        ),
        None => {
            tracing::info!("rate limits and login throttles kept in this process (no REDIS_URL)")
        }
    }
    let store = Store::open(&config, migrations).await?;
    let (state, http) = build_state(&config, &store)?;
    // Load recent revocations before the first request, then keep them current.
    if let Err(e) = state.accounts.sync_changes().await {
        tracing::warn!(error = %e, "could not load revoked sessions; retrying in the background");
    }
    let _revocations =
        spawn_revocation_sync(&config, state.accounts.clone(), config.revocation_poll)?;
    let server = HttpServer::new(move || moments_http::app(state.clone(), http.clone()))
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    for addr in server.addrs() {
        tracing::info!("listening on http://{addr}");
    }
    server.run().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Applies pending migrations to the configured database.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    Store::open(&config, Migrations::Apply).await?;
    println!("migrations are up to date");
    Ok(())
}

/// Prints the OpenAPI document.
pub fn openapi() -> anyhow::Result<()> {
    println!("{}", moments_http::ApiDoc::openapi().to_pretty_json()?);
    Ok(())
}

/// Creates an account, optionally an administrator, reading the password from standard input.
pub async fn create_user(
    config: Config,
    username: &str,
    email: &str,
    admin: bool,
) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&input);
    let mut problems = Vec::new();
    let username = Username::parse(username)
        .map_err(|e| problems.push(format!("--username: {e}")))
        .ok();
    let email = Email::parse(email)
        .map_err(|e| problems.push(format!("--email: {e}")))
        .ok();
    let password = Password::parse(password)
        .map_err(|e| problems.push(format!("password: {e}")))
        .ok();
    let (Some(username), Some(email), Some(password)) = (username, email, password) else {
        bail!("{}", problems.join("; "));
    };
    let store = Store::open(&config, Migrations::RequireCurrent).await?;
    let (state, _) = build_state(&config, &store)?;
    let extra = if admin {
        vec![RoleName::parse("admin").map_err(|e| anyhow::anyhow!(e.message))?]
    } else {
        Vec::new()
    };
    let user = match state
        .accounts
        .register_with_roles(
            Registration {
                username,
                email,
                password,
            },
            &extra,
        )
        .await
    {
        Ok(user) => user,
        Err(RegisterError::UsernameTaken) => bail!("--username: this username is already taken"),
        Err(RegisterError::EmailTaken) => {
            bail!("--email: this e-mail address is already registered")
        }
        Err(RegisterError::Infra(e)) => return Err(e.into()),
    };
    println!(
        "{}",
        serde_json::json!({"id": user.id, "username": user.username.as_str(), "email": user.email.as_ref().map(|e| e.as_str()), "admin": admin})
    );
    Ok(())
}

/// One line of an import file (JSON Lines).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    username: String,
    email: String,
    password_hash: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    display_name: Option<String>,
}

/// Parses an import file: every non-blank line, numbered from 1.
pub fn parse_import(text: &str) -> Vec<(usize, Result<ImportRecord, String>)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let record = serde_json::from_str::<ImportLine>(line)
                .map(|l| ImportRecord {
                    username: l.username,
                    email: l.email,
                    password_hash: l.password_hash,
                    roles: l.roles,
                    display_name: l.display_name,
                })
                .map_err(|e| format!("not a valid record: {e}"));
            (index + 1, record)
        })
        .collect()
}

/// Imports accounts from a JSON Lines file, all or nothing, naming every bad line.
pub async fn import_users(config: Config, file: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let lines = parse_import(&text);
    let store = Store::open(&config, Migrations::RequireCurrent).await?;
    let (state, _) = build_state(&config, &store)?;
    match state.accounts.import_users(lines).await {
        Ok(count) => {
            println!("{}", serde_json::json!({ "imported": count }));
            Ok(())
        }
        Err(ImportError::Invalid(errors)) => {
            for error in &errors {
                eprintln!("{}:{}: {}", file.display(), error.line, error.reason);
            }
            bail!("nothing imported: {} invalid line(s)", errors.len())
        }
        Err(ImportError::Conflict(reason)) => bail!("nothing imported: {reason}"),
        Err(ImportError::Infra(e)) => Err(e.into()),
    }
}
