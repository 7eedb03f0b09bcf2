//! Weights of the registry's calls.
//!
//! The runtime's implementation is generated from `src/benchmarking.rs` by the node's `benchmark pallet`
//! command into `runtime/src/weights/pallet_provider_registry.rs` (`scripts/benchmark.sh`,
//! numbers in `docs/benchmarks.md`); the `()` implementation is for unit tests only and
//! must never be used by a runtime.

use frame_support::weights::Weight;

/// Weight functions needed by the pallet.
pub trait WeightInfo {
	fn register_provider() -> Weight;
	fn update_provider() -> Weight;
	fn bond_extra() -> Weight;
	fn unbond() -> Weight;
	fn withdraw_unbonded() -> Weight;
	fn deregister_provider() -> Weight;
	fn force_slash() -> Weight;
}

/// For unit tests only.
impl WeightInfo for () {
	fn register_provider() -> Weight {
		Weight::zero()
	}
	fn update_provider() -> Weight {
		Weight::zero()
	}
	fn bond_extra() -> Weight {
		Weight::zero()
	}
	fn unbond() -> Weight {
		Weight::zero()
	}
	fn withdraw_unbonded() -> Weight {
		Weight::zero()
	}
	fn deregister_provider() -> Weight {
		Weight::zero()
	}
	fn force_slash() -> Weight {
		Weight::zero()
	}
}
