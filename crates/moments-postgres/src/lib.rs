#![doc = include_str!("../README.md")]

mod audit;
mod identities;
mod models;
mod posts;
#[rustfmt::skip]
mod schema;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use store::{PgConfig, PgStore, PgStoreError};
