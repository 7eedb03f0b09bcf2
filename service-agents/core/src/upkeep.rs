//! What every agent runs beside its connections: the metrics endpoint, the settlement loop
//! (with one last round after the connections are done) and, every few seconds, the
//! sessions' served counts written to the store and the session gauges set.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{lifecycle::Lifecycle, metrics::Metrics, sessions::SessionBook, settler::Settler};

/// How often served counts are persisted and gauges set.
const TICK: Duration = Duration::from_secs(5);

/// The running upkeep of one agent.
pub struct Upkeep {
	sessions: Arc<SessionBook>,
	settlement_stop: CancellationToken,
	settlement: JoinHandle<()>,
}

impl Upkeep {
	/// [`Upkeep::start`] with the agent file's settings (`[metrics] listen`, `[payment]
	/// settle_interval_secs`).
	pub fn for_agent<S>(
		file: &crate::config::AgentFile<S>,
		life: &Lifecycle,
		sessions: &Arc<SessionBook>,
		settler: &Settler,
		metrics: &Metrics,
		tick: impl Fn() + Send + 'static,
	) -> Self {
		let interval = Duration::from_secs(file.payment.settle_interval_secs);
		Self::start(life, sessions.clone(), settler.clone(), metrics, file.metrics.listen, interval, tick)
	}

	/// Starts the metrics endpoint on `metrics_listen` (if any), settlement every
	/// `settle_interval`, and every few seconds the served counts, the gauges and `tick` (the
	/// service's own upkeep), until `life` is cancelled.
	pub fn start(
		life: &Lifecycle,
		sessions: Arc<SessionBook>,
		settler: Settler,
		metrics: &Metrics,
		metrics_listen: Option<SocketAddr>,
		settle_interval: Duration,
		tick: impl Fn() + Send + 'static,
	) -> Self {
		if let Some(addr) = metrics_listen {
			metrics.serve(addr, life);
		}
		// Not on the lifecycle's tracker: the last round runs after every connection ended,
		// and `finish` joins it.
		let settlement_stop = CancellationToken::new();
		let settlement = {
			let metrics = metrics.clone();
			tokio::spawn(settler.run(
				settle_interval.max(Duration::from_secs(1)),
				settlement_stop.clone(),
				move |outcome| metrics.count_round(outcome),
			))
		};
		let (book, metrics, token) = (sessions.clone(), metrics.clone(), life.token.clone());
		life.spawn(async move {
			let mut every = tokio::time::interval(TICK);
			loop {
				tokio::select! {
					_ = every.tick() => {},
					_ = token.cancelled() => break,
				}
				book.persist();
				metrics.sessions.set(book.entries().len() as i64);
				metrics.unpaid_bytes.set(book.unpaid_bytes() as i64);
				tick();
			}
		});
		Upkeep { sessions, settlement_stop, settlement }
	}

	/// After the connections are done: the served counts once more, then the last settlement
	/// round.
	pub async fn finish(self) {
		self.sessions.persist();
		self.settlement_stop.cancel();
		let _ = self.settlement.await;
	}
}
