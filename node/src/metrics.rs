//! The node's own Prometheus metrics, next to Substrate's.

use substrate_prometheus_endpoint::{register, Counter, PrometheusError, Registry, U64};

/// How often the counters are brought up to date.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Registers `interlattice_ml_dsa_verifications_total` (ML-DSA-65 verifications run by this
/// node: the runtime's host function, for blocks, the pool and runtime API calls; labelled
/// with the chain like Substrate's metrics) and keeps it current. Operators see what signature checking costs them; tests bound the work that
/// hostile transactions cause with it.
pub fn register_pq_metrics(registry: &Registry, spawn: &sc_service::SpawnTaskHandle) -> Result<(), PrometheusError> {
	let verifications: Counter<U64> = register(
		Counter::new(
			"interlattice_ml_dsa_verifications_total",
			"ML-DSA-65 signature verifications run by this node (host function).",
		)?,
		registry,
	)?;
	spawn.spawn("interlattice-metrics", None, async move {
		let mut seen = 0;
		loop {
			let now = interlattice_pq_crypto::stats::verifications();
			verifications.inc_by(now.saturating_sub(seen));
			seen = now;
			tokio::time::sleep(REFRESH).await;
		}
	});
	Ok(())
}
