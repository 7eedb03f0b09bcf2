//! The receipt pipeline every agent runs: a per-session rate limit, the checks (off the async
//! threads: an ML-DSA-65 verification), the durable store with group commit (one writer task
//! gathers what arrives while it syncs, and writes it with one `fdatasync`), and only then the
//! ledger moves and the caller acknowledges.

use std::{
	collections::HashMap,
	sync::{Arc, Mutex},
	time::Duration,
};

use interlattice_pq_crypto::{SignedUsageReceipt, UsageReceipt};
use tokio::sync::{mpsc, oneshot};

use crate::{
	lifecycle::Lifecycle,
	meter::ReceiptError,
	metrics::Metrics,
	sessions::SessionEntry,
	store::{ReceiptStore, StoreError},
};

/// Why a receipt was not accepted. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptRefusal {
	/// The receipt is wrong (see the reason).
	#[error(transparent)]
	Invalid(#[from] ReceiptError),
	/// The session sends receipts faster than the agent accepts them.
	#[error("too many receipts: at most {0} a second per session")]
	TooFast(u32),
	/// It could not be stored: the client sends it again.
	#[error("the receipt could not be stored ({0}); send it again")]
	NotStored(String),
}

struct Job {
	receipt: SignedUsageReceipt,
	done: oneshot::Sender<Result<(), StoreError>>,
}

/// A token bucket per session: `rate` receipts a second, bursts of `2 × rate`.
struct Bucket {
	tokens: f64,
	at: Duration,
}

/// The receipt pipeline of one agent.
pub struct ReceiptDesk {
	jobs: mpsc::Sender<Job>,
	rate: u32,
	buckets: Mutex<HashMap<u64, Bucket>>,
	metrics: Metrics,
}

/// Most receipts one group commit writes.
const MAX_GROUP: usize = 256;

impl ReceiptDesk {
	/// A pipeline writing to `store`, allowing `rate` receipts a second per session; its
	/// writer task lives on `life`'s tracker and ends when every sender is gone.
	pub fn new(store: Arc<Mutex<ReceiptStore>>, rate: u32, metrics: Metrics, life: &Lifecycle) -> Arc<Self> {
		let (jobs, mut queue) = mpsc::channel::<Job>(1024);
		life.tracker.spawn_blocking(move || {
			while let Some(first) = queue.blocking_recv() {
				let mut group = vec![first];
				while group.len() < MAX_GROUP {
					match queue.try_recv() {
						Ok(job) => group.push(job),
						Err(_) => break,
					}
				}
				let (receipts, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|j| (j.receipt, j.done)).unzip();
				let outcomes = store.lock().unwrap_or_else(|p| p.into_inner()).record_batch(receipts);
				for (done, outcome) in replies.into_iter().zip(outcomes) {
					let _ = done.send(outcome);
				}
			}
		});
		Arc::new(ReceiptDesk { jobs, rate, buckets: Mutex::new(HashMap::new()), metrics })
	}

	fn take_token(&self, session: u64, now: Duration) -> bool {
		let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
		let rate = f64::from(self.rate);
		let b = buckets.entry(session).or_insert(Bucket { tokens: 2.0 * rate, at: now });
		b.tokens = (b.tokens + now.saturating_sub(b.at).as_secs_f64() * rate).min(2.0 * rate);
		b.at = now;
		if b.tokens >= 1.0 {
			b.tokens -= 1.0;
			true
		} else {
			false
		}
	}

	/// Checks `signed` against `entry`'s ledger (at least `min_seconds` of time), stores it
	/// durably, moves the ledger; returns the accepted receipt. `now` is the ledgers' clock.
	pub async fn accept(
		&self,
		entry: &SessionEntry,
		signed: SignedUsageReceipt,
		min_seconds: u64,
		now: Duration,
	) -> Result<UsageReceipt, ReceiptRefusal> {
		let outcome = self.accept_inner(entry, signed, min_seconds, now).await;
		match &outcome {
			Ok(_) => self.metrics.receipts_accepted.inc(),
			Err(_) => self.metrics.receipts_rejected.inc(),
		}
		outcome
	}

	async fn accept_inner(
		&self,
		entry: &SessionEntry,
		signed: SignedUsageReceipt,
		min_seconds: u64,
		now: Duration,
	) -> Result<UsageReceipt, ReceiptRefusal> {
		if !self.take_token(entry.id, now) {
			return Err(ReceiptRefusal::TooFast(self.rate));
		}
		let ledger = entry.ledger().clone();
		let signed = tokio::task::spawn_blocking(move || ledger.check_receipt(&signed, min_seconds).map(|()| signed))
			.await
			.map_err(|e| ReceiptRefusal::NotStored(format!("verification task: {e}")))??;
		let receipt = signed.receipt;
		let (done, stored) = oneshot::channel();
		self.jobs
			.send(Job { receipt: signed, done })
			.await
			.map_err(|_| ReceiptRefusal::NotStored("the agent is stopping".into()))?;
		match stored.await {
			Ok(Ok(())) => {},
			Ok(Err(StoreError::NotNewer { stored, .. })) => {
				return Err(ReceiptError::NotNewer { latest: stored, got: receipt.sequence }.into())
			},
			Ok(Err(e)) => {
				tracing::error!(error = %e, "cannot store a receipt");
				return Err(ReceiptRefusal::NotStored(e.to_string()));
			},
			Err(_) => return Err(ReceiptRefusal::NotStored("the store stopped".into())),
		}
		entry.ledger().accept(receipt, now);
		entry.paid.notify_waiters();
		tracing::debug!(
			session = receipt.session_id,
			sequence = receipt.sequence,
			bytes = receipt.bytes,
			"receipt acknowledged"
		);
		Ok(receipt)
	}
}
