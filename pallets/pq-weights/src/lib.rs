#![doc = include_str!("../README.md")]
#![cfg_attr(not(feature = "std"), no_std)]

pub use pallet::*;

#[cfg(feature = "runtime-benchmarks")]
mod benchmarking;
pub mod weights;

pub use weights::WeightInfo;

#[frame_support::pallet]
pub mod pallet {
	/// The pallet: benchmarks only.
	#[pallet::pallet]
	pub struct Pallet<T>(_);

	#[pallet::config]
	pub trait Config: frame_system::Config {}
}

#[cfg(test)]
mod tests {
	use interlattice_pq_crypto::{MlDsaPublicKey, MlDsaSignature};

	#[test]
	fn benchmark_data_verifies() {
		let pk = MlDsaPublicKey::from_slice(include_bytes!("../benchmark-data/ml-dsa-65.pk")).unwrap();
		let sig = MlDsaSignature::from_slice(include_bytes!("../benchmark-data/ml-dsa-65.sig")).unwrap();
		assert!(interlattice_pq_crypto::verify(&pk, &[0x42; 109], &sig));
		assert!(!interlattice_pq_crypto::verify(&pk, &[0x43; 109], &sig));
	}
}
