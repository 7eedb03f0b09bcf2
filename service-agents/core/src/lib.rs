//! What the dVPN and dCDN provider agents (and their clients) share about sessions,
//! receipts and settlement.
//!
//! - [`meter`]: metering one session and checking the client's receipts (no I/O).
//! - [`store`]: the durable receipt store. A receipt the agent acknowledges to its client
//!   has been written and `fsync`ed first, survives a crash at any point, and is settled
//!   on-chain exactly once.
//! - [`chain`]: the chain client (JSON-RPC over HTTP, the runtime's own types).
//! - [`settler`]: the settlement loop that drives the store.
//!
//! Clients build it without default features: the chain client, session keys, opening a
//! session and the meter's receipt arithmetic, without the agents' skeleton (feature `agent`:
//! configuration files, the receipt store, settlement, limits, metrics, the command line).

/// Items only the provider agents need (feature `agent`).
macro_rules! agent_only {
	($($item:item)*) => { $( #[cfg(feature = "agent")] $item )* };
}

// What clients and agents share.
pub mod account;
pub mod chain;
pub mod cli;
pub mod keys;
pub mod lat;
pub mod lifecycle;
pub mod meter;
pub mod opening;
pub mod provider_tls;
pub mod reveal;
pub mod tls;

pub use chain::{ChainClient, ChainError};
pub use keys::{PendingKey, SessionKeyError, SessionKeys};
pub use meter::{Meter, PaymentRequired, ReceiptError, SessionTerms};
pub use opening::{is_unlisted, open_session, report_unreachable, revealed_endpoint, OpenSessionError, SessionRequest};

// The agents' skeleton. (`metrics` is declared outside the macro: it exports a macro by path.)
#[cfg(feature = "agent")]
pub mod metrics;
agent_only! {
	pub mod config;
	pub mod identity;
	pub mod ledger;
	pub mod limits;
	pub mod receipts;
	pub mod registration;
	pub mod sessions;
	pub mod unlisted;
	pub mod settler;
	pub mod start;
	pub mod store;
	pub mod upkeep;

	pub use ledger::{ChainView, Hold, Ledger, PaymentPolicy, Served};
	pub use settler::{max_settle_interval, SettleError, SettleReport, Settler};
	pub use store::{ReceiptStore, SessionReceipts, StoreError};
}

#[cfg(feature = "agent")]
/// The chain's settlement window (the time a provider has to settle after a session ends),
/// as this build's runtime defines it.
pub fn settlement_window() -> std::time::Duration {
	std::time::Duration::from_millis(
		u64::from(interlattice_runtime::configs::SessionSettlementWindow::get())
			* interlattice_runtime::MILLI_SECS_PER_BLOCK,
	)
}

#[cfg(feature = "agent")]
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
