//! The error every port may return when its infrastructure fails.

/// A boxed error from an adapter, kept as the source of an [`InfraError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the machinery behind a port, not of the caller's request.
///
/// Adapters map their own errors (database, cache, crypto library) into one of these two
/// variants, so no adapter error type leaves its crate.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// The backing service did not answer in time or refused the connection. Retrying later may
    /// succeed; the HTTP edge answers 503 `service_unavailable`.
    #[error("{what} is unavailable")]
    Unavailable {
        /// What was unavailable, for example "database".
        what: &'static str,
        /// The adapter's error.
        #[source]
        source: BoxError,
    },
    /// Anything else: a bug or a broken invariant. The HTTP edge answers 500 and logs it.
    #[error("internal failure")]
    Internal(#[source] BoxError),
}

impl InfraError {
    /// An internal failure carrying a message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into().into())
    }

    /// An unavailable backing service.
    pub fn unavailable(what: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            what,
            source: source.into(),
        }
    }
}
