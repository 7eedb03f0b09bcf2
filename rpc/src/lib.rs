//! Interlattice's own JSON-RPC methods, served by the node next to the standard Substrate
//! ones. Every method answers from a runtime API at the best block (or the block hash given as
//! the last parameter), so its semantics are versioned with the runtime.
//!
//! - [`registry`]: `registry_providers`, `registry_provider`, `registry_stats`: the provider
//!   directory dApps, wallets and clients query.
//! - [`escrow`]: `escrow_session`, `escrow_clientSessions`, `escrow_providerSessions`: the
//!   sessions agents and wallets follow.
//!
//! Conventions for every method (see `docs/rpc.md`): JSON field names in camelCase; token
//! amounts as decimal strings (they exceed 2^53 and would lose precision as JavaScript
//! numbers), and so are all integers wider than 32 bits (session ids, sequence numbers,
//! byte and second counters); accounts in SS58 with the chain's prefix (input also accepts `0x` + 64 hex
//! digits); binary data as `0x` hex; invalid parameters are error `-32602` with a message that
//! names the parameter.

pub mod escrow;
pub mod index;
pub mod json;
pub mod registry;

use std::{sync::Arc, time::Duration};

use jsonrpsee::{
	core::RpcResult,
	types::{error::INVALID_PARAMS_CODE, ErrorObjectOwned},
};

/// Error code of a failed runtime API call (the runtime could not answer at that block).
pub const RUNTIME_ERROR_CODE: i32 = 1;
/// Error code of a query refused because too many are running: retry later.
pub const BUSY_ERROR_CODE: i32 = 2;

/// Runs our methods' runtime API calls (which may walk much of the state) off the node's
/// async workers, on blocking threads, at most `permits` at a time: however many queries
/// arrive, networking, block import and the other RPC methods keep their threads. A query
/// that cannot start within `max_wait` is refused with [`BUSY_ERROR_CODE`].
#[derive(Clone, Debug)]
pub struct BlockingQueries {
	permits: Arc<tokio::sync::Semaphore>,
	max_wait: Duration,
}

impl BlockingQueries {
	/// At most `permits` queries at a time (at least one); others wait up to `max_wait`.
	pub fn new(permits: usize, max_wait: Duration) -> Self {
		Self { permits: Arc::new(tokio::sync::Semaphore::new(permits.max(1))), max_wait }
	}

	/// The node's default: half the CPUs (at least one) at a time, 30 s of waiting.
	pub fn for_this_machine() -> Self {
		let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
		Self::new(cpus.div_ceil(2), Duration::from_secs(30))
	}

	/// Runs `query` on a blocking thread once a permit is free.
	pub async fn run<T: Send + 'static>(&self, query: impl FnOnce() -> RpcResult<T> + Send + 'static) -> RpcResult<T> {
		let permit = match tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await {
			Ok(Ok(permit)) => permit,
			_ => {
				return Err(ErrorObjectOwned::owned(
					BUSY_ERROR_CODE,
					"too many registry and escrow queries are running: retry later",
					None::<()>,
				))
			},
		};
		tokio::task::spawn_blocking(move || {
			let _permit = permit;
			query()
		})
		.await
		.map_err(runtime_error)?
	}
}

/// An invalid-parameters error naming what is wrong.
pub(crate) fn invalid_params(message: impl Into<String>) -> ErrorObjectOwned {
	ErrorObjectOwned::owned(INVALID_PARAMS_CODE, message.into(), None::<()>)
}

/// A runtime API failure.
pub(crate) fn runtime_error(error: impl std::fmt::Display) -> ErrorObjectOwned {
	ErrorObjectOwned::owned(RUNTIME_ERROR_CODE, format!("runtime API call failed: {error}"), None::<()>)
}
