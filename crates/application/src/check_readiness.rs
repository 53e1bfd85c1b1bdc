//! Use case: is this instance ready to serve traffic?

use std::sync::Arc;

use coffee_ports::DependencyProbe;
use futures_util::future::join_all;

/// Checks every dependency the service needs, all at once.
#[derive(Clone, Debug)]
pub struct CheckReadiness {
    probes: Vec<Arc<dyn DependencyProbe>>,
}

/// The outcome of one dependency's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyStatus {
    pub name: &'static str,
    pub up: bool,
}

/// Every dependency's status; the instance is ready only when all are up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessReport {
    pub dependencies: Vec<DependencyStatus>,
}

impl ReadinessReport {
    pub fn is_ready(&self) -> bool {
        self.dependencies.iter().all(|d| d.up)
    }

    /// Names of the dependencies that are down, in probe order.
    pub fn down(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.dependencies.iter().filter(|d| !d.up).map(|d| d.name)
    }
}

impl CheckReadiness {
    pub fn new(probes: Vec<Arc<dyn DependencyProbe>>) -> Self {
        Self { probes }
    }

    /// Never fails: a failing probe is reported as down (and logged), because
    /// "not ready" is the answer, not an error.
    pub async fn execute(&self) -> ReadinessReport {
        let results = join_all(self.probes.iter().map(|probe| async move {
            let result = probe.check().await;
            if let Err(error) = &result {
                tracing::warn!(
                    dependency = probe.name(),
                    error = error.describe(),
                    "readiness probe failed"
                );
            }
            DependencyStatus {
                name: probe.name(),
                up: result.is_ok(),
            }
        }))
        .await;
        ReadinessReport { dependencies: results }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffee_ports::InfraError;
    use coffee_ports::health::MockDependencyProbe;

    fn probe(name: &'static str, up: bool) -> Arc<dyn DependencyProbe> {
        let mut probe = MockDependencyProbe::new();
        probe.expect_name().return_const(name);
        probe.expect_check().times(1).returning(move || {
            if up {
                Ok(())
            } else {
                Err(InfraError::unavailable(name, anyhow::anyhow!("connection refused")))
            }
        });
        Arc::new(probe)
    }

    #[tokio::test]
    async fn ready_when_every_dependency_answers() {
        let report = CheckReadiness::new(vec![probe("database", true), probe("cache", true)])
            .execute()
            .await;

        assert!(report.is_ready());
        assert_eq!(report.down().count(), 0);
    }

    #[tokio::test]
    async fn not_ready_and_names_the_dependency_that_is_down() {
        let report = CheckReadiness::new(vec![probe("database", false), probe("cache", true)])
            .execute()
            .await;

        assert!(!report.is_ready());
        assert_eq!(report.down().collect::<Vec<_>>(), vec!["database"]);
    }

    #[tokio::test]
    async fn every_probe_is_asked_even_when_an_earlier_one_fails() {
        let report = CheckReadiness::new(vec![probe("database", false), probe("cache", false)])
            .execute()
            .await;

        assert_eq!(report.down().collect::<Vec<_>>(), vec!["database", "cache"]);
    }
}
