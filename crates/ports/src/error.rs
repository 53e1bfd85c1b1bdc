//! The one failure type every port shares for infrastructure trouble.

/// A port failed for a reason outside the business rules.
///
/// The split matters to callers: [`InfraError::Unavailable`] means the
/// dependency could not be reached or did not answer in time, so the request
/// can be retried later (HTTP answers `503`); [`InfraError::Unexpected`] is
/// anything else (a bug, a broken invariant) and is answered with an opaque
/// `500` after logging the whole cause chain.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("{dependency} is unavailable")]
    Unavailable {
        /// A short, technology-neutral name: "database", "session store", ...
        dependency: &'static str,
        #[source]
        source: anyhow::Error,
    },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl InfraError {
    pub fn unavailable(dependency: &'static str, source: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable {
            dependency,
            source: source.into(),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The error and all its causes on one line (`a: b: c`), for logs.
    pub fn describe(&self) -> String {
        let mut chain = vec![self.to_string()];
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        chain.join(": ")
    }
}
