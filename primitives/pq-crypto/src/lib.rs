//! Post-quantum primitives shared by the Interlattice runtime and its agents.
//!
//! - [`MlDsaPublicKey`], [`MlDsaSignature`]: ML-DSA-65 (FIPS 204, the standard form of
//!   Dilithium) public keys and signatures as fixed-size, SCALE-encodable types.
//! - [`receipt`]: the usage receipt a client signs for a session, and its exact signing
//!   payload (byte layout in `docs/receipt-format.md`).
//! - [`pq_crypto`]: the runtime host function that verifies an ML-DSA-65 signature natively;
//!   [`verify`] is the one entry point the runtime and the agents both call.
//! - `keys` (native only): key pairs, signing, and 0600 seed files.
//! - `cpu` (native only): the start-up check that the CPU has what the binary was built for.
//! - [`dev_keys`]: well-known service keys of development networks (public secrets).
//! - [`reveal`]: an unlisted provider's endpoint sealed to one session's client (ML-KEM-768
//!   and ChaCha20-Poly1305).
//! - [`runtime_api`]: the `PqCryptoApi` runtime API, through which clients can check a
//!   signature or a receipt with the chain's own code.
//!
//! Every Interlattice ML-DSA signature uses the FIPS 204 context string [`CONTEXT`], and every
//! signed message starts with a domain tag naming what it is (a receipt, a handshake, …), so a
//! signature made for one purpose never verifies for another.

#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod account;
pub mod dev_keys;
pub mod receipt;
pub mod reveal;
pub mod runtime_api;
#[cfg(feature = "serde")]
pub mod serde_helpers;
mod types;

#[cfg(all(feature = "std", not(substrate_runtime)))]
pub mod cpu;
#[cfg(all(feature = "std", not(substrate_runtime)))]
pub mod keys;

pub use receipt::{SignedUsageReceipt, UsageReceipt};
pub use types::{
	MlDsaPublicKey, MlDsaSignature, MlKemCiphertext, MlKemEncapsulationKey, SealedEndpointCiphertext, WrongLength,
};

use sp_runtime_interface::{pass_by::PassFatPointerAndRead, runtime_interface};

/// ML-DSA-65 public (verification) key length in bytes.
pub const ML_DSA_65_PUBLIC_KEY_LEN: usize = 1952;
/// ML-DSA-65 signature length in bytes.
pub const ML_DSA_65_SIGNATURE_LEN: usize = 3309;
/// Length of the seed an ML-DSA-65 key pair is derived from (FIPS 204 ξ).
pub const ML_DSA_65_SEED_LEN: usize = 32;

/// The FIPS 204 context string of every Interlattice signature over a protocol object
/// (receipts, handshakes), each of which starts with its own domain tag.
pub const CONTEXT: &[u8] = b"interlattice";

/// The FIPS 204 context string of signatures over arbitrary messages (`pq-key sign`). A
/// signature made under it never verifies under [`CONTEXT`], so no message a user is asked
/// to sign can ever be a receipt or a handshake, whatever its bytes.
pub const MESSAGE_CONTEXT: &[u8] = b"interlattice/message";

/// The FIPS 204 context string of transaction signatures: an ML-DSA account signs a
/// transaction's signing payload (the bytes an sr25519 account would sign) under it, so no
/// transaction signature is ever a valid receipt, handshake or message signature.
pub const TRANSACTION_CONTEXT: &[u8] = b"interlattice/transaction";

/// The FIPS 204 context string of signatures inside TLS 1.3 and X.509 (the empty one, as
/// RFC 9881 and draft-ietf-tls-mldsa fix it): an agent's certificate and its handshake
/// signatures. Neither verifies under [`CONTEXT`] or [`MESSAGE_CONTEXT`].
pub const TLS_CONTEXT: &[u8] = b"";

/// Counts the ML-DSA-65 verifications this process ran natively (the host function included):
/// the node exports it as a Prometheus metric, and tests bound the work an input can cause
/// with it.
#[cfg(all(feature = "std", not(substrate_runtime)))]
pub mod stats {
	use std::{
		cell::Cell,
		sync::atomic::{AtomicU64, Ordering},
	};

	static VERIFICATIONS: AtomicU64 = AtomicU64::new(0);
	thread_local! {
		static THREAD_VERIFICATIONS: Cell<u64> = const { Cell::new(0) };
	}

	/// Counts one verification.
	pub fn record() {
		VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
		THREAD_VERIFICATIONS.with(|c| c.set(c.get() + 1));
	}

	/// Verifications by this process so far.
	pub fn verifications() -> u64 {
		VERIFICATIONS.load(Ordering::Relaxed)
	}

	/// Verifications by the calling thread so far (tests run in threads of their own).
	pub fn thread_verifications() -> u64 {
		THREAD_VERIFICATIONS.with(Cell::get)
	}
}

/// Host functions for post-quantum cryptography. A released function never changes meaning;
/// a change is a new `#[version(2)]`.
#[runtime_interface]
pub trait PqCrypto {
	/// Verifies an ML-DSA-65 signature over `message` with the FIPS 204 `context` string.
	/// Returns `false` for a wrong signature and for malformed input (a key or signature of
	/// the wrong length, a context over 255 bytes); never panics.
	fn ml_dsa_65_verify(
		public_key: PassFatPointerAndRead<&[u8]>,
		context: PassFatPointerAndRead<&[u8]>,
		message: PassFatPointerAndRead<&[u8]>,
		signature: PassFatPointerAndRead<&[u8]>,
	) -> bool {
		use libcrux_ml_dsa::{ml_dsa_65, MLDSASignature, MLDSAVerificationKey};
		crate::stats::record();
		let (Ok(pk), Ok(sig)) = (
			<[u8; ML_DSA_65_PUBLIC_KEY_LEN]>::try_from(public_key),
			<[u8; ML_DSA_65_SIGNATURE_LEN]>::try_from(signature),
		) else {
			return false;
		};
		ml_dsa_65::verify(&MLDSAVerificationKey::new(pk), message, context, &MLDSASignature::new(sig)).is_ok()
	}
}

/// Verifies an Interlattice ML-DSA-65 signature (context [`CONTEXT`]). Inside the runtime
/// this calls the host function; natively it runs the same code directly.
pub fn verify(public_key: &MlDsaPublicKey, message: &[u8], signature: &MlDsaSignature) -> bool {
	pq_crypto::ml_dsa_65_verify(public_key.as_ref(), CONTEXT, message, signature.as_ref())
}

/// Verifies a TLS 1.3 handshake or X.509 signature (context [`TLS_CONTEXT`]).
pub fn verify_tls(public_key: &MlDsaPublicKey, message: &[u8], signature: &MlDsaSignature) -> bool {
	pq_crypto::ml_dsa_65_verify(public_key.as_ref(), TLS_CONTEXT, message, signature.as_ref())
}

/// Verifies a transaction signature (context [`TRANSACTION_CONTEXT`]).
pub fn verify_transaction(public_key: &MlDsaPublicKey, payload: &[u8], signature: &MlDsaSignature) -> bool {
	pq_crypto::ml_dsa_65_verify(public_key.as_ref(), TRANSACTION_CONTEXT, payload, signature.as_ref())
}

/// Verifies a signature over an arbitrary message (context [`MESSAGE_CONTEXT`]).
pub fn verify_message(public_key: &MlDsaPublicKey, message: &[u8], signature: &MlDsaSignature) -> bool {
	pq_crypto::ml_dsa_65_verify(public_key.as_ref(), MESSAGE_CONTEXT, message, signature.as_ref())
}

/// Signing for runtime benchmarks only: the weight of settling a receipt must include a real
/// ML-DSA-65 verification of a valid signature, and a benchmark runs inside the runtime, which
/// holds no secret keys and has no signing code. The node registers these host functions only
/// when built with the `runtime-benchmarks` feature; a production runtime never imports them.
#[cfg(feature = "runtime-benchmarks")]
#[runtime_interface]
pub trait PqCryptoBenchmarking {
	/// The public key (1952 bytes) of the ML-DSA-65 key pair derived from the 32-byte `seed`,
	/// followed by its signature (3309 bytes) of `message` with context [`CONTEXT`]
	/// (deterministic signing). Empty if the seed is not 32 bytes.
	fn ml_dsa_65_sign_with_seed(
		seed: PassFatPointerAndRead<&[u8]>,
		message: PassFatPointerAndRead<&[u8]>,
	) -> sp_runtime_interface::pass_by::AllocateAndReturnFatPointer<alloc::vec::Vec<u8>> {
		let Ok(seed) = <[u8; ML_DSA_65_SEED_LEN]>::try_from(seed) else {
			return alloc::vec::Vec::new();
		};
		let pair = libcrux_ml_dsa::ml_dsa_65::generate_key_pair(seed);
		let Ok(signature) = libcrux_ml_dsa::ml_dsa_65::sign(&pair.signing_key, message, CONTEXT, [0u8; 32]) else {
			return alloc::vec::Vec::new();
		};
		let mut out = pair.verification_key.as_ref().to_vec();
		out.extend_from_slice(signature.as_ref());
		out
	}
}

/// Signs `message` as the benchmark key derived from `seed`; see [`pq_crypto_benchmarking`].
#[cfg(feature = "runtime-benchmarks")]
pub fn benchmark_sign(seed: [u8; ML_DSA_65_SEED_LEN], message: &[u8]) -> Option<(MlDsaPublicKey, MlDsaSignature)> {
	let out = pq_crypto_benchmarking::ml_dsa_65_sign_with_seed(&seed, message);
	let (pk, sig) = out.split_at_checked(ML_DSA_65_PUBLIC_KEY_LEN)?;
	Some((MlDsaPublicKey::from_slice(pk).ok()?, MlDsaSignature::from_slice(sig).ok()?))
}
