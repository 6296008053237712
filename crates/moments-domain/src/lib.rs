#![doc = include_str!("../README.md")]

pub mod account;
pub mod admin;
pub mod api_key;
pub mod audit;
pub mod authz;
pub mod error;
pub mod grants;
pub mod ids;
pub mod import;
pub mod in_process;
pub mod limit;
pub mod media;
pub mod oauth;
pub mod page;
pub mod ports;
pub mod post;
pub mod profile;
pub mod revocation;
pub mod session;
pub mod user;
pub mod value;

pub use account::{AccountService, SessionPolicy};
pub use error::InfraError;
pub use oauth::OAuthService;
pub use post::PostService;
