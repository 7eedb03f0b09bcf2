//! The sessions an agent serves: one [`Ledger`] per session, shared by all of the session's
//! connections, checked against the chain when first seen and refreshed as the ledger asks
//! ([`Ledger::needs_refresh`]), resumed after a restart from the receipt store (newest
//! receipt and served counts), and its served counts persisted as they grow.

use std::{
	collections::HashMap,
	sync::{Arc, Mutex},
	time::{Duration, Instant},
};

use interlattice_runtime::AccountId;
use pallet_provider_registry::ServiceKind;
use tokio::sync::Notify;

use crate::{
	chain::{ChainClient, Session},
	ledger::{ChainView, Ledger, PaymentPolicy},
	session_terms,
	store::ReceiptStore,
};

/// Why a session is not served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
	/// No such session, or another provider's, or another service's.
	#[error("{0}")]
	Unknown(String),
	/// Closing or expired.
	#[error("session {0} is closed or expired")]
	Ended(u64),
	/// The chain could not be asked.
	#[error("cannot check the session on-chain: {0}")]
	ChainUnavailable(String),
}

/// One session's shared state.
pub struct SessionEntry {
	/// The session.
	pub id: u64,
	/// Its payment state.
	pub ledger: Mutex<Ledger>,
	/// Woken when a receipt or a refresh may have moved the credit.
	pub paid: Notify,
	refreshing: tokio::sync::Mutex<()>,
}

impl SessionEntry {
	/// Locks the ledger (a poisoned lock is taken over: the ledger's state is always valid).
	pub fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
		self.ledger.lock().unwrap_or_else(|p| p.into_inner())
	}
}

/// The sessions of one agent.
pub struct SessionBook {
	chain: ChainClient,
	provider: AccountId,
	service: ServiceKind,
	policy: PaymentPolicy,
	store: Arc<Mutex<ReceiptStore>>,
	sessions: Mutex<HashMap<u64, Arc<SessionEntry>>>,
	epoch: Instant,
}

fn view(session: &Session, best_block: u64) -> ChainView {
	ChainView {
		best_block,
		closing: session.closing,
		expires_at: u64::from(session.expires_at),
		settle_until: u64::from(session.settle_until),
	}
}

impl SessionBook {
	/// The sessions of `provider`'s `service`, with `policy`, resumed from `store`.
	pub fn new(
		chain: ChainClient,
		provider: AccountId,
		service: ServiceKind,
		policy: PaymentPolicy,
		store: Arc<Mutex<ReceiptStore>>,
	) -> Self {
		SessionBook {
			chain,
			provider,
			service,
			policy,
			store,
			sessions: Mutex::new(HashMap::new()),
			epoch: Instant::now(),
		}
	}

	/// The ledgers' clock: time since the book was made.
	pub fn now(&self) -> Duration {
		self.epoch.elapsed()
	}

	/// The instant the ledgers' clock counts from (`now() == epoch().elapsed()`).
	pub fn epoch(&self) -> Instant {
		self.epoch
	}

	/// The payment policy.
	pub fn policy(&self) -> &PaymentPolicy {
		&self.policy
	}

	fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<SessionEntry>>> {
		self.sessions.lock().unwrap_or_else(|p| p.into_inner())
	}

	async fn fetch(&self, id: u64) -> Result<(Session, u64), SessionRefusal> {
		let unavailable = |e: crate::ChainError| SessionRefusal::ChainUnavailable(e.to_string());
		let session = self
			.chain
			.session(id)
			.await
			.map_err(unavailable)?
			.ok_or_else(|| SessionRefusal::Unknown(format!("session {id} does not exist on-chain")))?;
		if session.provider != self.provider {
			return Err(SessionRefusal::Unknown(format!("session {id} is with another provider")));
		}
		if session.service != self.service {
			return Err(SessionRefusal::Unknown(format!("session {id} is not a {:?} session", self.service)));
		}
		let best = self.chain.best_number().await.map_err(unavailable)?;
		Ok((session, best))
	}

	/// The session `id`, checked on-chain (the first time, and whenever its ledger asks for a
	/// refresh); refused if unknown, another provider's or service's, or ended.
	pub async fn get(&self, id: u64) -> Result<Arc<SessionEntry>, SessionRefusal> {
		let known = self.lock().get(&id).cloned();
		let entry = match known {
			Some(entry) => {
				self.refresh_if_needed(&entry).await?;
				entry
			},
			None => {
				let (session, best) = self.fetch(id).await?;
				let now = self.now();
				let (stored, served) = {
					let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
					(store.session(id).map(|s| s.latest.receipt), store.served(id))
				};
				let ledger = Ledger::new(
					self.policy,
					session_terms(&session, self.chain.genesis_hash().0),
					view(&session, best),
					stored,
					served,
					now,
				);
				let entry = Arc::new(SessionEntry {
					id,
					ledger: Mutex::new(ledger),
					paid: Notify::new(),
					refreshing: tokio::sync::Mutex::new(()),
				});
				self.lock().entry(id).or_insert(entry).clone()
			},
		};
		if entry.ledger().service_ended() {
			return Err(SessionRefusal::Ended(id));
		}
		Ok(entry)
	}

	/// Refreshes `entry` from the chain if its ledger asks for it (one refresh at a time per
	/// session).
	pub async fn refresh_if_needed(&self, entry: &SessionEntry) -> Result<(), SessionRefusal> {
		if !entry.ledger().needs_refresh(self.now()) {
			return Ok(());
		}
		let _one = entry.refreshing.lock().await;
		if !entry.ledger().needs_refresh(self.now()) {
			return Ok(());
		}
		self.refresh(entry).await
	}

	/// Refreshes `entry` from the chain now. A finalized session is marked ended.
	pub async fn refresh(&self, entry: &SessionEntry) -> Result<(), SessionRefusal> {
		match self.fetch(entry.id).await {
			Ok((session, best)) => {
				let terms = session_terms(&session, self.chain.genesis_hash().0);
				entry.ledger().refresh(terms, view(&session, best), self.now());
				entry.paid.notify_waiters();
				Ok(())
			},
			Err(SessionRefusal::Unknown(_)) => {
				// Finalized: gone from the chain. No more service, no more receipts.
				let mut ledger = entry.ledger();
				let terms = ledger.terms().clone();
				ledger.refresh(
					terms,
					ChainView { best_block: u64::MAX, closing: true, expires_at: 0, settle_until: 0 },
					self.now(),
				);
				Err(SessionRefusal::Ended(entry.id))
			},
			Err(e) => Err(e),
		}
	}

	/// Every session with a ledger now.
	pub fn entries(&self) -> Vec<Arc<SessionEntry>> {
		self.lock().values().cloned().collect()
	}

	/// Writes every session's served counts to the store (if they grew), and forgets the
	/// ledgers of sessions that ended and owe nothing more.
	pub fn persist(&self) {
		let now = self.now();
		let entries = self.entries();
		let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
		for entry in &entries {
			let served = entry.ledger().served(now);
			if let Err(e) = store.record_served(entry.id, served) {
				tracing::warn!(session = entry.id, error = %e, "cannot record served counts");
			}
		}
		drop(store);
		self.lock().retain(|_, e| {
			let l = e.ledger();
			!(l.service_ended() && l.receipts_closed())
		});
	}

	/// Served bytes not covered by a receipt, all sessions.
	pub fn unpaid_bytes(&self) -> u64 {
		self.entries().iter().map(|e| e.ledger().unpaid_bytes()).sum()
	}
}
