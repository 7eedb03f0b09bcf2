//! The settlement loop: takes the newest unsettled receipt of every session from the
//! [`ReceiptStore`] and settles them on-chain in batches, on a schedule and once more on
//! shutdown.
//!
//! The chain is the judge of what is settled: before submitting, every receipt is compared
//! with its session's on-chain record (the chain's settled amount reached the receipt's →
//! marked settled; session gone or its settlement window over → reported and forgotten). A
//! receipt counts as settled only when the chain's cumulative settled amount reaches its
//! amount: no other receipt (a client's, with a higher sequence number) can make it look
//! settled. A batch the transaction pool refuses
//! (one receipt in it went stale meanwhile) is retried receipt by receipt, so one bad
//! receipt never holds up the others. Transient failures (node unreachable, not included
//! in time) leave the store untouched and are retried at the next round.

use std::{
	sync::{Arc, Mutex},
	time::Duration,
};

use interlattice_pq_crypto::SignedUsageReceipt;
use interlattice_runtime::{RuntimeCall, RuntimeEvent};
use crate::account::AccountKey;

use crate::{
	chain::{describe, ChainClient, ChainError},
	store::{ReceiptStore, StoreError},
};

/// Most receipts in one `settle_receipts` call (the runtime's `MaxReceiptsPerBatch`).
pub const MAX_BATCH: usize = 500;

/// What can stop a settlement round.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
	/// Talking to the chain failed.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// The receipt store failed.
	#[error(transparent)]
	Store(#[from] StoreError),
	/// The session is gone, or its latest receipt could not be settled: not closed.
	#[error("session {0} cannot be closed: it is gone or its latest receipt is not settled")]
	NotClosable(u64),
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettleReport {
	/// Receipts the chain settled in this round.
	pub settled: u32,
	/// Receipts found settled already (e.g. by the client or a previous run).
	pub already_settled: u32,
	/// Receipts the chain refused for good (reported in the log), and dropped.
	pub rejected: u32,
	/// Amount paid to this provider in this round.
	pub paid: u128,
	/// Transaction fees this round's extrinsics cost the provider.
	pub transaction_fees: u128,
}

/// Settles the receipts of one provider's store. Clones share the store and take turns:
/// rounds (and cooperative closes) never overlap, so their extrinsics never race for the
/// provider's nonce.
#[derive(Clone)]
pub struct Settler {
	chain: ChainClient,
	signer: AccountKey,
	store: Arc<Mutex<ReceiptStore>>,
	max_batch: usize,
	turn: Arc<tokio::sync::Mutex<()>>,
	watch_period: Duration,
}

/// How often [`Settler::run`] looks for sessions that must settle before the next round.
pub const WATCH_PERIOD: Duration = Duration::from_secs(30);

/// The longest settle interval for a settlement window of `window`: a quarter of it, so that
/// a receipt always has several rounds to settle before its session's window closes.
pub fn max_settle_interval(window: Duration) -> Duration {
	window / 4
}

impl Settler {
	/// Settles `store`'s receipts on `chain`, signing the extrinsics with `signer` (the
	/// provider's account key; anyone may submit receipts, the provider pays the fee).
	pub fn new(chain: ChainClient, signer: AccountKey, store: Arc<Mutex<ReceiptStore>>) -> Self {
		Settler { chain, signer, store, max_batch: MAX_BATCH, turn: Default::default(), watch_period: WATCH_PERIOD }
	}

	/// Looks for sessions that must settle early every `period` (default [`WATCH_PERIOD`]).
	pub fn with_watch_period(mut self, period: Duration) -> Self {
		self.watch_period = period.max(Duration::from_millis(100));
		self
	}

	/// Whether a stored, unsettled receipt's session is closing or will leave its settlement
	/// window within `margin`: then it must be settled now, not at the next round.
	pub async fn urgent(&self, margin: Duration) -> Result<bool, SettleError> {
		let unsettled = self.with_store(|s| Ok(s.unsettled()))?;
		if unsettled.is_empty() {
			return Ok(false);
		}
		let best = self.chain.best_number().await?;
		let margin_blocks = margin.as_millis() as u64 / interlattice_runtime::MILLI_SECS_PER_BLOCK.max(1) + 1;
		for signed in unsettled {
			match self.chain.session(signed.receipt.session_id).await? {
				Some(s) if s.closing || u64::from(s.settle_until) <= best + margin_blocks => return Ok(true),
				Some(s) if u64::from(s.expires_at) <= best + margin_blocks => return Ok(true),
				_ => {},
			}
		}
		Ok(false)
	}

	/// Submits `call` signed by the settler's account, in turn with settlement rounds (so
	/// the two never race for the account's nonce), and waits for its inclusion.
	pub async fn submit_in_turn(&self, call: interlattice_runtime::RuntimeCall) -> Result<(), crate::ChainError> {
		let _turn = self.turn.lock().await;
		self.chain.submit_and_watch(call, &self.signer).await.map(|_| ())
	}

	/// Limits batches to `n` receipts (1..=500).
	pub fn with_max_batch(mut self, n: usize) -> Self {
		self.max_batch = n.clamp(1, MAX_BATCH);
		self
	}

	fn with_store<T>(&self, f: impl FnOnce(&mut ReceiptStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
		let mut store = self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
		f(&mut store)
	}

	/// One round: settle everything unsettled now.
	pub async fn settle_once(&self) -> Result<SettleReport, SettleError> {
		let _turn = self.turn.lock().await;
		self.round().await
	}

	/// The client is done with `session_id`: settle its latest receipt (with everything else
	/// due), then close the session as its provider, which finalizes it at once and refunds
	/// the client the rest of the deposit. Returns the total the session paid the provider.
	/// Refuses to close while the chain's settled amount is below the latest stored receipt's.
	pub async fn settle_and_close(&self, session_id: u64) -> Result<u128, SettleError> {
		let _turn = self.turn.lock().await;
		self.round().await?;
		let latest = self.with_store(|s| Ok(s.session(session_id).map(|r| r.latest.receipt.amount)))?;
		let Some(session) = self.chain.session(session_id).await? else {
			return Err(SettleError::NotClosable(session_id));
		};
		if latest.is_some_and(|amount| session.settled < amount) {
			return Err(SettleError::NotClosable(session_id));
		}
		let call = RuntimeCall::SessionEscrow(pallet_session_escrow::Call::close_session { session_id });
		self.chain.submit_and_watch(call, &self.signer).await?;
		self.with_store(|s| s.forget(session_id))?;
		tracing::info!(session = session_id, paid = session.settled, "session settled and closed");
		Ok(session.settled)
	}

	async fn round(&self) -> Result<SettleReport, SettleError> {
		let mut report = SettleReport::default();
		let unsettled = self.with_store(|s| Ok(s.unsettled()))?;
		let best = self.chain.best_number().await?;
		let mut due = Vec::new();
		for signed in unsettled {
			let r = &signed.receipt;
			match self.chain.session(r.session_id).await? {
				Some(s) if s.settled >= r.amount => {
					self.with_store(|st| st.mark_settled(r.session_id, r.sequence))?;
					report.already_settled += 1;
				},
				Some(s) if s.closing && u64::from(s.settle_until) < best + 1 => {
					tracing::error!(
						session = r.session_id,
						sequence = r.sequence,
						"settlement window over before the receipt could be settled; dropping it"
					);
					self.with_store(|st| st.forget(r.session_id))?;
					report.rejected += 1;
				},
				Some(_) => due.push(signed),
				None => {
					tracing::error!(
						session = r.session_id,
						sequence = r.sequence,
						"session no longer on-chain (finalized) before the receipt was settled; dropping it"
					);
					self.with_store(|st| st.forget(r.session_id))?;
					report.rejected += 1;
				},
			}
		}
		for batch in due.chunks(self.max_batch) {
			match self.submit(batch.to_vec()).await {
				Ok(r) => report = add(report, r),
				Err(SettleError::Chain(ChainError::Refused { code: 1010, .. })) if batch.len() > 1 => {
					tracing::warn!(
						receipts = batch.len(),
						"the pool refused a batch; settling its receipts one by one"
					);
					for one in batch {
						match self.submit(vec![one.clone()]).await {
							Ok(r) => report = add(report, r),
							Err(SettleError::Chain(e @ ChainError::Refused { code: 1010, .. })) => {
								self.drop_refused(one, &e)?;
								report.rejected += 1;
							},
							Err(e) => return Err(e),
						}
					}
				},
				Err(SettleError::Chain(e @ ChainError::Refused { code: 1010, .. })) => {
					self.drop_refused(&batch[0], &e)?;
					report.rejected += 1;
				},
				Err(e) => return Err(e),
			}
		}
		self.with_store(|st| {
			let live = st.sessions().count() as u64;
			if st.records() > 1024 + 4 * live {
				st.compact()?;
			}
			Ok(())
		})?;
		Ok(report)
	}

	fn drop_refused(&self, signed: &SignedUsageReceipt, error: &ChainError) -> Result<(), StoreError> {
		let r = &signed.receipt;
		tracing::error!(session = r.session_id, sequence = r.sequence, %error, "the chain refuses the receipt; dropping it");
		self.with_store(|st| st.forget(r.session_id))
	}

	async fn submit(&self, receipts: Vec<SignedUsageReceipt>) -> Result<SettleReport, SettleError> {
		let call = if receipts.len() == 1 {
			RuntimeCall::SessionEscrow(pallet_session_escrow::Call::settle_receipt {
				receipt: Box::new(receipts[0].clone()),
			})
		} else {
			let batch = receipts.clone().try_into().expect("batches are at most MAX_BATCH long");
			RuntimeCall::SessionEscrow(pallet_session_escrow::Call::settle_receipts { receipts: batch })
		};
		let inclusion = self.chain.submit_and_watch(call, &self.signer).await?;
		let mut report = SettleReport::default();
		for event in inclusion.events {
			match event {
				RuntimeEvent::SessionEscrow(pallet_session_escrow::Event::ReceiptSettled {
					session_id,
					sequence,
					paid,
					..
				}) => {
					self.with_store(|st| st.mark_settled(session_id, sequence))?;
					report.settled += 1;
					report.paid += paid;
				},
				RuntimeEvent::SessionEscrow(pallet_session_escrow::Event::ReceiptRejected {
					session_id,
					sequence,
					error,
				}) => {
					tracing::error!(
						session = session_id,
						sequence,
						error = describe(&error),
						"the chain rejected the receipt"
					);
					self.with_store(|st| st.forget(session_id))?;
					report.rejected += 1;
				},
				RuntimeEvent::TransactionPayment(pallet_transaction_payment::Event::TransactionFeePaid {
					actual_fee,
					..
				}) => report.transaction_fees += actual_fee,
				_ => {},
			}
		}
		tracing::info!(
			block = inclusion.number,
			settled = report.settled,
			rejected = report.rejected,
			paid = report.paid,
			transaction_fees = report.transaction_fees,
			"receipts settled"
		);
		Ok(report)
	}

	/// Runs rounds every `interval` until `shutdown` turns true, then one last round (tried
	/// up to three times): receipts acknowledged before shutdown are submitted before the
	/// agent exits. Between rounds it looks every watch period for sessions that are closing
	/// or near the end of their settlement window, and settles at once when it finds one.
	/// `on_round` sees every round's outcome (metrics).
	pub async fn run(
		self,
		interval: Duration,
		stop: tokio_util::sync::CancellationToken,
		on_round: impl Fn(&Result<SettleReport, SettleError>) + Send,
	) {
		let period = self.watch_period.min(interval);
		let mut ticker = tokio::time::interval(period);
		ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
		let mut last_round = tokio::time::Instant::now();
		loop {
			tokio::select! {
				_ = ticker.tick() => {},
				_ = stop.cancelled() => break,
			}
			if last_round.elapsed() < interval {
				// Not a round yet: only if a session must settle before the next one.
				match self.urgent(interval.saturating_add(period)).await {
					Ok(true) => tracing::info!("a session is closing or near the end of its window: settling now"),
					Ok(false) => continue,
					Err(e) => {
						tracing::debug!(error = %e, "cannot look for sessions that must settle early");
						continue;
					},
				}
			}
			last_round = tokio::time::Instant::now();
			let outcome = self.settle_once().await;
			if let Err(e) = &outcome {
				tracing::warn!(error = %e, "settlement round failed; retrying at the next round");
			}
			on_round(&outcome);
		}
		for attempt in 1..=3 {
			let outcome = self.settle_once().await;
			on_round(&outcome);
			match outcome {
				Ok(report) => {
					tracing::info!(?report, "final settlement round done");
					return;
				},
				Err(e) => {
					tracing::warn!(attempt, error = %e, "final settlement round failed");
					tokio::time::sleep(Duration::from_secs(2)).await;
				},
			}
		}
		tracing::error!("unsettled receipts stay in the store; they are settled at the next start");
	}
}

fn add(a: SettleReport, b: SettleReport) -> SettleReport {
	SettleReport {
		settled: a.settled + b.settled,
		already_settled: a.already_settled + b.already_settled,
		rejected: a.rejected + b.rejected,
		paid: a.paid + b.paid,
		transaction_fees: a.transaction_fees + b.transaction_fees,
	}
}
