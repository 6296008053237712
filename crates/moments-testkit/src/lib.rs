#![doc = include_str!("../README.md")]
// Test support: a failed expectation should stop the test with its message.
#![expect(
    clippy::unwrap_used,
    reason = "test support panics on failed expectations"
)]

pub mod builders;
pub mod contract;
pub mod media_contract;
pub mod services;
pub mod shared_state_contract;

pub use contract::StoreUnderTest;
