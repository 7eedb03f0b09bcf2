//! The sealed reveal of an unlisted provider's endpoint (byte layout in
//! `docs/unlisted-endpoints.md`).
//!
//! A client opening a session with an unlisted provider sends a fresh ML-KEM-768
//! encapsulation key ([`MlKemEncapsulationKey`]). The provider's agent encapsulates to it and
//! encrypts the endpoint it chose for that client with ChaCha20-Poly1305 under
//! `HKDF-SHA256(salt = REVEAL_SALT, ikm = ML-KEM shared secret, info = reveal_info(…))`, nonce
//! zero (each key encrypts once), associated data `reveal_info(…)`. The info binds the reveal
//! to the chain (genesis hash), the session (id and nonce) and the provider, so a reveal can
//! be read only by the holder of that session's decapsulation key, and only as that
//! session's. The plaintext is padded to a fixed length, so every reveal has the same size
//! and the ciphertext says nothing about the address.
//!
//! This module holds what the runtime needs (the types and the encapsulation key check) and
//! the info string both sides derive; sealing and opening live with the agents, which link
//! an ML-KEM implementation.

use codec::{Decode, DecodeWithMemTracking, Encode, MaxEncodedLen};
use scale_info::TypeInfo;

pub use crate::types::{MlKemCiphertext, MlKemEncapsulationKey, SealedEndpointCiphertext};

/// ML-KEM-768 encapsulation key length (FIPS 203: 384·k + 32, k = 3).
pub const ML_KEM_768_ENCAPSULATION_KEY_LEN: usize = 1184;
/// ML-KEM-768 ciphertext length.
pub const ML_KEM_768_CIPHERTEXT_LEN: usize = 1088;
/// Longest endpoint a reveal carries, in bytes.
pub const MAX_REVEALED_ENDPOINT_LEN: usize = 255;
/// The sealed plaintext: one length byte and the endpoint, zero-padded to this length.
pub const SEALED_ENDPOINT_PLAINTEXT_LEN: usize = 1 + MAX_REVEALED_ENDPOINT_LEN;
/// The AEAD ciphertext: the plaintext and the 16-byte Poly1305 tag.
pub const SEALED_ENDPOINT_CIPHERTEXT_LEN: usize = SEALED_ENDPOINT_PLAINTEXT_LEN + 16;
/// HKDF salt of a reveal's key.
pub const REVEAL_SALT: &[u8] = b"interlattice/unlisted/reveal/v1";

/// A provider's endpoint sealed to one session's client.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, DecodeWithMemTracking, MaxEncodedLen, TypeInfo)]
pub struct SealedEndpoint {
	/// ML-KEM-768 encapsulation to the session's encapsulation key.
	pub kem_ciphertext: MlKemCiphertext,
	/// The padded endpoint, ChaCha20-Poly1305-encrypted under the derived key.
	pub ciphertext: SealedEndpointCiphertext,
}

/// Whether `key` passes FIPS 203's encapsulation key check (7.2, "modulus check"): every
/// 12-bit coefficient of its three polynomials is below q = 3329. A key failing it cannot be
/// encapsulated to; the runtime refuses it before storing it.
pub fn encapsulation_key_is_valid(key: &MlKemEncapsulationKey) -> bool {
	const Q: u16 = 3329;
	key.0[..ML_KEM_768_ENCAPSULATION_KEY_LEN - 32].chunks_exact(3).all(|b| {
		let first = u16::from(b[0]) | (u16::from(b[1] & 0x0f) << 8);
		let second = u16::from(b[1] >> 4) | (u16::from(b[2]) << 4);
		first < Q && second < Q
	})
}

/// The HKDF info and AEAD associated data of a reveal:
/// `"interlattice/unlisted/reveal/v1" ‖ genesis hash (32) ‖ session id (u64 LE) ‖ session
/// nonce (32) ‖ provider account (32)`.
pub fn reveal_info(genesis: &[u8; 32], session_id: u64, session_nonce: &[u8; 32], provider: &[u8; 32]) -> [u8; 135] {
	let mut info = [0u8; 135];
	let tag = REVEAL_SALT;
	info[..31].copy_from_slice(tag);
	info[31..63].copy_from_slice(genesis);
	info[63..71].copy_from_slice(&session_id.to_le_bytes());
	info[71..103].copy_from_slice(session_nonce);
	info[103..135].copy_from_slice(provider);
	info
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn modulus_check_refuses_a_coefficient_of_q_or_more() {
		let mut key = MlKemEncapsulationKey([0u8; ML_KEM_768_ENCAPSULATION_KEY_LEN]);
		assert!(encapsulation_key_is_valid(&key));
		// First coefficient = 3328 (q - 1): valid.
		key.0[0] = 0x00;
		key.0[1] = 0x0d;
		assert!(encapsulation_key_is_valid(&key));
		// First coefficient = 3329 = 0xd01: invalid.
		key.0[0] = 0x01;
		assert!(!encapsulation_key_is_valid(&key));
		// The second coefficient of the last triple: 0xfff.
		let mut key = MlKemEncapsulationKey([0u8; ML_KEM_768_ENCAPSULATION_KEY_LEN]);
		key.0[1150] = 0xf0;
		key.0[1151] = 0xff;
		assert!(!encapsulation_key_is_valid(&key));
		// The 32-byte seed ρ at the end is not checked.
		let mut key = MlKemEncapsulationKey([0u8; ML_KEM_768_ENCAPSULATION_KEY_LEN]);
		key.0[1152..].fill(0xff);
		assert!(encapsulation_key_is_valid(&key));
	}

	#[test]
	fn info_layout() {
		assert_eq!(REVEAL_SALT.len(), 31);
		let info = reveal_info(&[1; 32], 0x0102, &[2; 32], &[3; 32]);
		assert_eq!(&info[..31], REVEAL_SALT);
		assert_eq!(&info[31..63], &[1; 32]);
		assert_eq!(&info[63..71], &[2, 1, 0, 0, 0, 0, 0, 0]);
		assert_eq!(&info[71..103], &[2; 32]);
		assert_eq!(&info[103..], &[3; 32]);
	}
}
