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
pub mod meter;
pub mod settler;
pub mod store;

pub use chain::{ChainClient, ChainError};
pub use meter::{Meter, PaymentRequired, ReceiptError, SessionTerms};
pub use settler::{SettleError, SettleReport, Settler};
pub use store::{ReceiptStore, SessionReceipts, StoreError};

/// The terms of an on-chain session, as the meter needs them.
pub fn session_terms(session: &chain::Session, genesis_hash: [u8; 32]) -> SessionTerms {
	SessionTerms {
		session_id: session.session_id,
		genesis_hash,
		client_key: session.client_key.clone(),
		prices: session.prices,
		deposit: session.deposit,
		settled: interlattice_pq_crypto::UsageReceipt {
			genesis_hash,
			session_id: session.session_id,
			sequence: session.sequence,
			bytes: session.bytes,
			seconds: session.seconds,
			amount: session.settled,
		},
	}
}

/// A flag that turns true at the first Ctrl-C or SIGTERM: the agents' and clients' graceful
/// shutdown. Call inside a tokio runtime.
pub fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
	let (tx, rx) = tokio::sync::watch::channel(false);
	tokio::spawn(async move {
		match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
			Ok(mut term) => {
				tokio::select! {
					_ = tokio::signal::ctrl_c() => {},
					_ = term.recv() => {},
				}
			},
			Err(e) => {
				tracing::warn!(error = %e, "no SIGTERM handler; only Ctrl-C stops gracefully");
				let _ = tokio::signal::ctrl_c().await;
			},
		}
		tracing::info!("stop requested");
		let _ = tx.send(true);
	});
	rx
}
