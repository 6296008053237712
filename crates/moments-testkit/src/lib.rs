#![doc = include_str!("../README.md")]

pub mod builders;
pub mod contract;
pub mod services;

pub use contract::StoreUnderTest;
