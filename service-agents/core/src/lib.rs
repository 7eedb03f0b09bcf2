//! What the dVPN and dCDN provider agents (and their clients) share about sessions,
//! receipts and settlement.
//!
//! - [`meter`]: metering one session and checking the client's receipts (no I/O).
//! - [`store`]: the durable receipt store. A receipt the agent acknowledges to its client
//!   has been written and `fsync`ed first, survives a crash at any point, and is settled
//!   on-chain exactly once.
//! - [`chain`]: the chain client (JSON-RPC over HTTP, the runtime's own types).
//! - [`settler`]: the settlement loop that drives the store.

pub mod chain;
pub mod cli;
pub mod config;
pub mod identity;
pub mod keys;
pub mod ledger;
pub mod lifecycle;
pub mod limits;
pub mod meter;
pub mod metrics;
pub mod opening;
pub mod receipts;
pub mod registration;
pub mod sessions;
pub mod settler;
pub mod start;
pub mod store;
pub mod upkeep;

pub use chain::{ChainClient, ChainError};
pub use keys::{PendingKey, SessionKeyError, SessionKeys};
pub use ledger::{ChainView, Hold, Ledger, PaymentPolicy, Served};
pub use meter::{Meter, PaymentRequired, ReceiptError, SessionTerms};
pub use opening::{open_session, OpenSessionError, SessionRequest};
pub use settler::{max_settle_interval, SettleError, SettleReport, Settler};

/// The chain's settlement window (the time a provider has to settle after a session ends),
/// as this build's runtime defines it.
pub fn settlement_window() -> std::time::Duration {
	std::time::Duration::from_millis(
		u64::from(interlattice_runtime::configs::SessionSettlementWindow::get())
			* interlattice_runtime::MILLI_SECS_PER_BLOCK,
	)
}

/// Refuses a settle interval longer than a quarter of the settlement window: receipts could
/// reach the end of their session's window before a round submits them.
pub fn check_settle_interval(secs: u64) -> Result<(), String> {
	let max = max_settle_interval(settlement_window());
	if secs == 0 || std::time::Duration::from_secs(secs) > max {
		return Err(format!(
			"payment.settle_interval_secs = {secs}: must be 1 ..= {} (a quarter of the chain's {} s settlement window), or receipts can expire unsettled",
			max.as_secs(),
			settlement_window().as_secs()
		));
	}
	Ok(())
}
pub use store::{ReceiptStore, SessionReceipts, StoreError};

/// The terms of an on-chain session, as the meter needs them.
pub fn session_terms(session: &chain::Session, genesis_hash: [u8; 32]) -> SessionTerms {
	let provider = pallet_session_escrow::account_bytes(&session.provider);
	SessionTerms {
		session_id: session.session_id,
		genesis_hash,
		provider,
		nonce: session.nonce,
		client_key: session.client_key.clone(),
		prices: session.prices,
		deposit: session.deposit,
		settled: interlattice_pq_crypto::UsageReceipt {
			genesis_hash,
			provider,
			session_id: session.session_id,
			session_nonce: session.nonce,
			sequence: session.sequence,
			bytes: session.bytes,
			seconds: session.seconds,
			amount: session.settled,
		},
	}
}
