//! Prometheus metrics through the `prometheus` crate: the counters every agent has, on a
//! registry each service adds its own to, served at `GET /metrics` by
//! `substrate-prometheus-endpoint` (or by the agent's own HTTP server, [`Metrics::encode`]).

use std::net::SocketAddr;

pub use prometheus;
use prometheus::{Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};

use crate::lifecycle::Lifecycle;

/// A metric a service declares with [`service_metrics!`](crate::service_metrics).
pub trait ServiceMetric: Sized {
	/// Registers `<prefix>_<name>` on `metrics`' registry.
	fn register(metrics: &Metrics, name: &str, help: &str) -> Self;
}

impl ServiceMetric for IntCounter {
	fn register(metrics: &Metrics, name: &str, help: &str) -> Self {
		metrics.counter(name, help)
	}
}

impl ServiceMetric for IntGauge {
	fn register(metrics: &Metrics, name: &str, help: &str) -> Self {
		metrics.gauge(name, help)
	}
}

/// Declares a service's metrics: a struct holding the core's [`Metrics`] (`core`) and the
/// service's own counters and gauges, each registered as `<prefix>_<name>` with its doc
/// comment as its help text.
///
/// ```
/// interlattice_agent_core::service_metrics! {
///     /// A demo service's metrics.
///     pub struct DemoMetrics {
///         /// Requests answered.
///         requests: IntCounter = "requests_total",
///     }
/// }
/// let metrics = DemoMetrics::new("demo");
/// metrics.requests.inc();
/// assert!(metrics.core.encode().contains("demo_requests_total 1"));
/// ```
#[macro_export]
macro_rules! service_metrics {
	(
		$(#[$meta:meta])*
		$vis:vis struct $name:ident {
			$( #[doc = $help:literal] $field:ident: $kind:ident = $metric:literal, )*
		}
	) => {
		$(#[$meta])*
		$vis struct $name {
			/// The metrics every agent has.
			pub core: $crate::metrics::Metrics,
			$( #[doc = $help] pub $field: $crate::metrics::prometheus::$kind, )*
		}

		impl $name {
			/// Registers them all, named `<prefix>_…`.
			pub fn new(prefix: &str) -> Self {
				let core = $crate::metrics::Metrics::new(prefix);
				$name { $( $field: $crate::metrics::ServiceMetric::register(&core, $metric, $help.trim()), )* core }
			}
		}
	};
}

/// The metrics every agent has, named `<prefix>_…` (e.g. `interlattice_vpn_receipts_accepted_total`).
#[derive(Clone)]
pub struct Metrics {
	/// The registry (add service metrics with [`Metrics::counter`], [`Metrics::gauge`]).
	pub registry: Registry,
	prefix: String,
	/// Receipts verified, stored and acknowledged.
	pub receipts_accepted: IntCounter,
	/// Receipts refused.
	pub receipts_rejected: IntCounter,
	/// Receipts settled on-chain.
	pub receipts_settled: IntCounter,
	/// Failed settlement rounds and receipts the chain refused.
	pub settlement_failures: IntCounter,
	/// Connections open now.
	pub connections: IntGauge,
	/// Connections refused at accept (limits).
	pub connections_refused: IntCounter,
	/// Sessions the agent keeps a ledger for.
	pub sessions: IntGauge,
	/// Bytes served but not yet covered by a receipt, all sessions.
	pub unpaid_bytes: IntGauge,
}

impl Metrics {
	/// The common metrics, named `<prefix>_…`.
	pub fn new(prefix: &str) -> Self {
		let registry = Registry::new();
		let counter = |name: &str, help: &str| {
			let c = IntCounter::with_opts(Opts::new(format!("{prefix}_{name}"), help)).expect("valid metric name; qed");
			registry.register(Box::new(c.clone())).expect("registered once; qed");
			c
		};
		let receipts_accepted = counter("receipts_accepted_total", "Receipts verified, stored and acknowledged.");
		let receipts_rejected = counter("receipts_rejected_total", "Receipts refused.");
		let receipts_settled = counter("receipts_settled_total", "Receipts settled on-chain.");
		let settlement_failures =
			counter("settlement_failures_total", "Failed settlement rounds and receipts the chain refused.");
		let connections_refused =
			counter("connections_refused_total", "Connections refused at accept (connection limits).");
		let gauge = |name: &str, help: &str| {
			let g = IntGauge::with_opts(Opts::new(format!("{prefix}_{name}"), help)).expect("valid metric name; qed");
			registry.register(Box::new(g.clone())).expect("registered once; qed");
			g
		};
		Metrics {
			connections: gauge("connections", "Connections open now."),
			sessions: gauge("sessions", "Sessions the agent keeps a ledger for."),
			unpaid_bytes: gauge("unpaid_bytes", "Bytes served but not yet covered by a receipt, all sessions."),
			registry: registry.clone(),
			prefix: prefix.to_string(),
			receipts_accepted,
			receipts_rejected,
			receipts_settled,
			settlement_failures,
			connections_refused,
		}
	}

	/// A service counter `<prefix>_<name>`.
	pub fn counter(&self, name: &str, help: &str) -> IntCounter {
		let c =
			IntCounter::with_opts(Opts::new(format!("{}_{name}", self.prefix), help)).expect("valid metric name; qed");
		self.registry.register(Box::new(c.clone())).expect("a service registers each metric once; qed");
		c
	}

	/// A service gauge `<prefix>_<name>`.
	pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
		let g =
			IntGauge::with_opts(Opts::new(format!("{}_{name}", self.prefix), help)).expect("valid metric name; qed");
		self.registry.register(Box::new(g.clone())).expect("a service registers each metric once; qed");
		g
	}

	/// Counts a settlement round's outcome.
	pub fn count_round(&self, outcome: &Result<crate::SettleReport, crate::SettleError>) {
		match outcome {
			Ok(r) => {
				self.receipts_settled.inc_by(u64::from(r.settled));
				self.settlement_failures.inc_by(u64::from(r.rejected));
			},
			Err(_) => self.settlement_failures.inc(),
		}
	}

	/// The text exposition.
	pub fn encode(&self) -> String {
		let mut out = Vec::new();
		let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
		String::from_utf8(out).unwrap_or_default()
	}

	/// Serves `GET /metrics` on `addr` until the agent stops.
	pub fn serve(&self, addr: SocketAddr, life: &Lifecycle) {
		let registry = self.registry.clone();
		let token = life.token.clone();
		life.spawn(async move {
			tokio::select! {
				result = substrate_prometheus_endpoint::init_prometheus(addr, registry) => {
					if let Err(e) = result {
						tracing::error!(%addr, error = %e, "the metrics endpoint stopped");
					}
				},
				_ = token.cancelled() => {},
			}
		});
	}
}
