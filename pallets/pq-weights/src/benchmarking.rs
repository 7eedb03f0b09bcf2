//! ML-DSA-65 and sr25519 verification inside the runtime, `n` signatures at a time.

use alloc::vec::Vec;
use frame_benchmarking::v2::*;
use interlattice_pq_crypto::{MlDsaPublicKey, MlDsaSignature};
use sp_core::sr25519;

use crate::*;

extern crate alloc;

/// A fixed ML-DSA-65 key and signature of `MESSAGE`, made natively once (the runtime cannot
/// sign): `MlDsaKeyPair::from_seed([1; 32])`, see `tests` below.
const PUBLIC_KEY: &[u8] = include_bytes!("../benchmark-data/ml-dsa-65.pk");
const SIGNATURE: &[u8] = include_bytes!("../benchmark-data/ml-dsa-65.sig");
/// The message both schemes sign: the length of a usage receipt's signing payload.
pub const MESSAGE: &[u8; 109] = &[0x42; 109];

const MAX_SIGNATURES: u32 = 100;
/// Key type of the throw-away sr25519 key in the benchmark keystore.
const KEY_TYPE: sp_core::crypto::KeyTypeId = sp_core::crypto::KeyTypeId(*b"bnch");

#[benchmarks]
mod benchmarks {
	use super::*;

	#[benchmark]
	fn ml_dsa_65_verify(n: Linear<0, MAX_SIGNATURES>) {
		let pk = MlDsaPublicKey::from_slice(PUBLIC_KEY)
			.expect("the file is 1952 bytes, checked by tests::benchmark_data_verifies; qed");
		let sig = MlDsaSignature::from_slice(SIGNATURE)
			.expect("the file is 3309 bytes, checked by tests::benchmark_data_verifies; qed");
		#[block]
		{
			for _ in 0..n {
				assert!(interlattice_pq_crypto::verify(&pk, MESSAGE, &sig));
			}
		}
	}

	#[benchmark]
	fn sr25519_verify(n: Linear<0, MAX_SIGNATURES>) {
		let public = sp_io::crypto::sr25519_generate(KEY_TYPE, None);
		let sig = sp_io::crypto::sr25519_sign(KEY_TYPE, &public, MESSAGE)
			.expect("the benchmark CLI registers a keystore holding the key just generated; qed");
		let keys: Vec<(sr25519::Public, sr25519::Signature)> = (0..n).map(|_| (public, sig)).collect();
		#[block]
		{
			for (public, sig) in keys.iter() {
				assert!(sp_io::crypto::sr25519_verify(sig, MESSAGE, public));
			}
		}
	}
}
