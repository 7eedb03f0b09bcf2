//! Weights of the calls.
//!
//! The runtime's implementation is in `runtime/src/weights/pallet_pq_accounts.rs`
//! (`scripts/benchmark.sh` generates it from `src/benchmarking.rs`); the `()` implementation
//! is for unit tests only and must never be used by a runtime.

use frame_support::weights::Weight;

/// Weight functions needed by the pallet.
pub trait WeightInfo {
	fn register_key() -> Weight;
	/// With its ML-DSA-65 verification of the binding proof.
	fn bind_key() -> Weight;
	fn lock() -> Weight;
}

/// For unit tests only.
impl WeightInfo for () {
	fn register_key() -> Weight {
		Weight::zero()
	}
	fn bind_key() -> Weight {
		Weight::zero()
	}
	fn lock() -> Weight {
		Weight::zero()
	}
}
