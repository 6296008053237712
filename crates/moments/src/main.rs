//! `moments`: the server and its administration commands.

use clap::{Parser, Subcommand};
use moments::commands;
use moments::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Moments: accounts, sessions and social posts behind one HTTP API.
///
/// Configuration comes from the environment (MOMENTS_*, DATABASE_URL); see docs/configuration.md.
#[derive(Debug, Parser)]
#[command(name = "moments", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Administration.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Debug, Subcommand)]
enum Admin {
    /// Create an account; the password is read from standard input.
    CreateUser {
        /// The username.
        #[arg(long)]
        username: String,
        /// The e-mail address.
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required: passwords never go on a command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Give the account the admin role.
        #[arg(long)]
        admin: bool,
    },
    /// Import accounts from a JSON Lines file ({username, email, password_hash, roles?,
    /// display_name?} per line; bcrypt or argon2 hashes): all or nothing.
    ImportUsers {
        /// The file.
        file: std::path::PathBuf,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        return report(commands::openapi());
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("moments: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    match cli.command {
        // actix runs the server on its own system (one runtime per worker thread).
        None | Some(Command::Serve) => {
            report(actix_web::rt::System::new().block_on(commands::serve(config)))
        }
        Some(Command::Migrate) => report(run(commands::migrate(config))),
        Some(Command::Openapi) => report(commands::openapi()),
        Some(Command::Admin(Admin::CreateUser {
            username,
            email,
            password_stdin: _,
            admin,
        })) => report(run(commands::create_user(config, &username, &email, admin))),
        Some(Command::Admin(Admin::ImportUsers { file })) => {
            report(run(commands::import_users(config, &file)))
        }
    }
}

/// Runs a command on a multi-threaded tokio runtime.
fn run(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(command)
}

fn report(outcome: anyhow::Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moments: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
