//! Weights of the escrow's calls.
//!
//! The runtime's implementation is generated from `src/benchmarking.rs` by the node's
//! `benchmark pallet` command into `runtime/src/weights/pallet_session_escrow.rs`
//! (`scripts/benchmark.sh`, numbers in `docs/benchmarks.md`); the `()` implementation is for
//! unit tests only and must never be used by a runtime.

use frame_support::weights::Weight;

/// Weight functions needed by the pallet.
pub trait WeightInfo {
	fn open_session() -> Weight;
	fn top_up_deposit() -> Weight;
	/// One receipt with its ML-DSA-65 verification (`settle_receipt`).
	fn settle_receipt() -> Weight;
	/// `n` receipts, each with its ML-DSA-65 verification, each settling a different session.
	fn settle_receipts(n: u32) -> Weight;
	fn close_session() -> Weight;
	fn finalize_session() -> Weight;
	fn set_settler() -> Weight;
	fn open_unlisted_session() -> Weight;
	fn reveal_endpoint() -> Weight;
	fn report_unreachable() -> Weight;
}

/// For unit tests only.
impl WeightInfo for () {
	fn open_session() -> Weight {
		Weight::zero()
	}
	fn top_up_deposit() -> Weight {
		Weight::zero()
	}
	fn settle_receipt() -> Weight {
		Weight::zero()
	}
	fn settle_receipts(_n: u32) -> Weight {
		Weight::zero()
	}
	fn close_session() -> Weight {
		Weight::zero()
	}
	fn finalize_session() -> Weight {
		Weight::zero()
	}
	fn set_settler() -> Weight {
		Weight::zero()
	}
	fn open_unlisted_session() -> Weight {
		Weight::zero()
	}
	fn reveal_endpoint() -> Weight {
		Weight::zero()
	}
	fn report_unreachable() -> Weight {
		Weight::zero()
	}
}
