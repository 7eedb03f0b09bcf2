//! ML-DSA-65 accounts: how an account id is derived from a public key, how a transaction is
//! signed, and what a classical account signs to bind an ML-DSA key. Byte-level description
//! in `docs/pq-accounts.md`.
//!
//! # Account ids no classical key can sign for
//! An sr25519 or ed25519 account id *is* its public key: the runtime verifies a classical
//! signature against the 32 bytes of the account id. A quantum adversary can compute the
//! secret key of any valid curve point, so an ML-DSA account whose id happened to decode as
//! an Edwards or Ristretto point could be drained with a forged classical signature. The
//! derivation therefore hashes with a counter and takes the first id that is **neither** a
//! valid compressed Edwards point (ed25519) **nor** a valid Ristretto encoding (sr25519); for
//! such an id no ed25519 or sr25519 key exists, so no classical signature verifies for it,
//! with or without a quantum computer, from the moment the id exists (before any key is on
//! chain). An ecdsa account id is `blake2_256` of a key and an Ethereum-style one an address
//! followed by twelve `0xEE` bytes: reaching either would take a preimage (the latter form is
//! excluded anyway).
//! About 44 % of hashes qualify, so the expected number of hashes is 2.3.

use crate::{MlDsaPublicKey, MlDsaSignature};
use curve25519_dalek::{edwards::CompressedEdwardsY, ristretto::CompressedRistretto};

/// Domain tag of the account id derivation.
pub const ACCOUNT_ID_TAG: &[u8] = b"interlattice/ml-dsa-65/account-id";

/// Domain tag of the message a key signs to be bound to a classical account.
pub const BIND_TAG: &[u8] = b"interlattice/ml-dsa-65/bind-account-key";

/// The account id of an ML-DSA-65 public key:
/// `blake2_256(ACCOUNT_ID_TAG ‖ counter ‖ public key)` for the smallest one-byte `counter`
/// whose hash is not a classical (ed25519 or sr25519) public key; see the module docs.
pub fn account_id(public_key: &MlDsaPublicKey) -> [u8; 32] {
	let mut preimage = [0u8; ACCOUNT_ID_TAG.len() + 1 + crate::ML_DSA_65_PUBLIC_KEY_LEN];
	preimage[..ACCOUNT_ID_TAG.len()].copy_from_slice(ACCOUNT_ID_TAG);
	preimage[ACCOUNT_ID_TAG.len() + 1..].copy_from_slice(public_key.as_ref());
	let mut id = [0u8; 32];
	for counter in 0..=u8::MAX {
		preimage[ACCOUNT_ID_TAG.len()] = counter;
		id = sp_crypto_hashing::blake2_256(&preimage);
		if !is_classical_public_key(&id) {
			return id;
		}
	}
	// 256 consecutive hashes that are all curve points: probability about 0.56^256 < 2^-200.
	id
}

/// Whether some classical key could sign for an account with this id: `bytes` decode as an
/// ed25519 (compressed Edwards) or sr25519 (Ristretto) public key, or have the form of an
/// Ethereum-style account id (a 20-byte address followed by twelve `0xEE` bytes, which an ecdsa
/// key reaches through a hash: never in practice, excluded anyway).
pub fn is_classical_public_key(bytes: &[u8; 32]) -> bool {
	bytes[20..] == [0xEE; 12]
		|| CompressedEdwardsY(*bytes).decompress().is_some()
		|| CompressedRistretto(*bytes).decompress().is_some()
}

/// What an ML-DSA key signs (context [`crate::CONTEXT`]) to be bound to the classical
/// account `account` on the chain with genesis hash `genesis`:
/// `BIND_TAG ‖ genesis ‖ account`.
pub fn binding_message(genesis: &[u8; 32], account: &[u8; 32]) -> alloc::vec::Vec<u8> {
	[BIND_TAG, genesis.as_slice(), account.as_slice()].concat()
}

/// Verifies a key's consent to be bound to `account` (see [`binding_message`]).
pub fn verify_binding(
	public_key: &MlDsaPublicKey,
	genesis: &[u8; 32],
	account: &[u8; 32],
	proof: &MlDsaSignature,
) -> bool {
	crate::verify(public_key, &binding_message(genesis, account), proof)
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn account_ids_are_never_classical_keys_and_need_the_counter_sometimes() {
		let mut used_counter = false;
		for i in 0..64u8 {
			let pk = MlDsaPublicKey([i; crate::ML_DSA_65_PUBLIC_KEY_LEN]);
			let id = account_id(&pk);
			assert!(!is_classical_public_key(&id));
			let mut first = ACCOUNT_ID_TAG.to_vec();
			first.push(0);
			first.extend_from_slice(pk.as_ref());
			used_counter |= sp_crypto_hashing::blake2_256(&first) != id;
		}
		// Over half of all hashes are curve points: 64 keys without one would mean the check
		// never rejects anything.
		assert!(used_counter);
	}

	#[test]
	fn real_classical_public_keys_are_recognised() {
		use sp_core::Pair;
		let ed = sp_core::ed25519::Pair::from_seed(&[7; 32]).public().0;
		let sr = sp_core::sr25519::Pair::from_seed(&[7; 32]).public().0;
		assert!(is_classical_public_key(&ed));
		assert!(is_classical_public_key(&sr));
	}
}
