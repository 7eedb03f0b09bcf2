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
pub mod json;
pub mod registry;

use jsonrpsee::types::{error::INVALID_PARAMS_CODE, ErrorObjectOwned};

/// Error code of a failed runtime API call (the runtime could not answer at that block).
pub const RUNTIME_ERROR_CODE: i32 = 1;

/// An invalid-parameters error naming what is wrong.
pub(crate) fn invalid_params(message: impl Into<String>) -> ErrorObjectOwned {
	ErrorObjectOwned::owned(INVALID_PARAMS_CODE, message.into(), None::<()>)
}

/// A runtime API failure.
pub(crate) fn runtime_error(error: impl std::fmt::Display) -> ErrorObjectOwned {
	ErrorObjectOwned::owned(RUNTIME_ERROR_CODE, format!("runtime API call failed: {error}"), None::<()>)
}
