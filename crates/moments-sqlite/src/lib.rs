#![doc = include_str!("../README.md")]

mod audit;
mod identities;
mod models;
mod posts;
#[rustfmt::skip]
mod schema;
mod store;

pub use store::{SqliteConfig, SqliteStore, SqliteStoreError};
