//! The Moments server: configuration, wiring and the commands of the `moments` binary. Only
//! this crate names concrete adapters.

pub mod commands;
pub mod config;
pub mod wiring;
