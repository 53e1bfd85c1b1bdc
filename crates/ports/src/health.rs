//! Readiness: can this instance reach what it needs to serve requests?

use async_trait::async_trait;

use crate::InfraError;

/// One dependency the service needs, checked by the readiness endpoint.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DependencyProbe: Send + Sync + std::fmt::Debug {
    /// The dependency's technology-neutral name, as shown in the readiness
    /// report ("database", "cache").
    fn name(&self) -> &'static str;

    /// Does one cheap round trip. Must return within the adapter's own
    /// timeout; an unreachable or slow dependency is
    /// [`InfraError::Unavailable`].
    async fn check(&self) -> Result<(), InfraError>;
}
