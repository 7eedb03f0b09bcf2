//! An agent's life: one root [`CancellationToken`] that Ctrl-C or SIGTERM cancels, and one
//! [`TaskTracker`] every task is spawned on, so that shutdown waits for all of them (with a
//! deadline) and no task is ever detached.

use std::{future::Future, time::Duration};

pub use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The root token and the tracker of an agent's tasks.
#[derive(Clone, Default)]
pub struct Lifecycle {
	/// Cancelled when the agent must stop.
	pub token: CancellationToken,
	/// Every task of the agent.
	pub tracker: TaskTracker,
}

impl Lifecycle {
	/// A lifecycle whose token is cancelled at the first Ctrl-C or SIGTERM. Call inside a tokio
	/// runtime.
	pub fn on_signals() -> Self {
		let life = Lifecycle::default();
		let token = life.token.clone();
		life.tracker.spawn(async move {
			let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
				Ok(t) => t,
				Err(e) => {
					tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the agent");
					let _ = tokio::signal::ctrl_c().await;
					token.cancel();
					return;
				},
			};
			tokio::select! {
				_ = tokio::signal::ctrl_c() => {},
				_ = term.recv() => {},
				_ = token.cancelled() => return,
			}
			tracing::info!("stopping (Ctrl-C or SIGTERM)");
			token.cancel();
		});
		life
	}

	/// Spawns `task` on the tracker.
	pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
	where
		F: Future + Send + 'static,
		F::Output: Send + 'static,
	{
		self.tracker.spawn(task)
	}

	/// Cancels everything and waits up to `grace` for the tasks to end; returns whether they
	/// all did.
	pub async fn shut_down(&self, grace: Duration) -> bool {
		self.token.cancel();
		self.tracker.close();
		tokio::time::timeout(grace, self.tracker.wait()).await.is_ok()
	}
}
