// NOT GENERATED YET: composed by hand until `scripts/benchmark.sh pallet_pq_accounts` is run
// (it overwrites this file). Each call's time is the measured cost of its ML-DSA-65
// verification (`pallet_pq_weights::ml_dsa_65_verify`, 39.8 µs per signature), plus a
// generous 60 µs of hashing and bookkeeping, plus its storage accesses counted from the code.
// See docs/benchmarks.md.

#![cfg_attr(rustfmt, rustfmt_skip)]
#![allow(missing_docs)]

use frame_support::{traits::Get, weights::Weight};
use core::marker::PhantomData;

/// Weight functions for `pallet_pq_accounts`.
pub struct WeightInfo<T>(PhantomData<T>);
impl<T: frame_system::Config> pallet_pq_accounts::WeightInfo for WeightInfo<T> {
	/// Storage: `PqAccounts::AccountKeys` (r:1 w:1), `Balances::Holds` (r:1 w:1),
	/// `System::Account` (r:1 w:1). Up to three hashes of 2 KB and point decodings.
	fn register_key() -> Weight {
		Weight::from_parts(60_000_000, 2_100)
			.saturating_add(T::DbWeight::get().reads(3))
			.saturating_add(T::DbWeight::get().writes(3))
	}
	/// Storage: `System::BlockHash` (r:1), `PqAccounts::AccountKeys` (r:1 w:1),
	/// `Balances::Holds` (r:2 w:2), `System::Account` (r:2 w:2). One ML-DSA-65 verification.
	fn bind_key() -> Weight {
		Weight::from_parts(39_800_000 + 60_000_000, 4_200)
			.saturating_add(T::DbWeight::get().reads(6))
			.saturating_add(T::DbWeight::get().writes(5))
	}
	/// Storage: `PqAccounts::AccountKeys` (r:1 w:1).
	fn lock() -> Weight {
		Weight::from_parts(20_000_000, 2_100)
			.saturating_add(T::DbWeight::get().reads(1))
			.saturating_add(T::DbWeight::get().writes(1))
	}
}
