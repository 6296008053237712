//! Route handlers, one module per resource.

pub mod auth;
pub mod docs;
pub mod ops;
