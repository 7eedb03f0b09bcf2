//! Both sides of the sealed reveal of an unlisted provider's endpoint (layout in
//! [`interlattice_pq_crypto::reveal`] and `docs/unlisted-endpoints.md`): the client's
//! ML-KEM-768 key pair (derived from its session key, so nothing more is kept on disk),
//! sealing by the provider's agent, opening by the client, and the client's wait for the
//! reveal on chain. No I/O except [`await_revealed_endpoint`].

use std::time::{Duration, Instant};

use chacha20poly1305::{
	aead::{Aead, KeyInit, Payload},
	ChaCha20Poly1305, Key, Nonce,
};
use hkdf::Hkdf;
use interlattice_pq_crypto::{
	keys::MlDsaKeyPair,
	reveal::{
		reveal_info, MlKemCiphertext, MlKemEncapsulationKey, SealedEndpoint, SealedEndpointCiphertext,
		MAX_REVEALED_ENDPOINT_LEN, REVEAL_SALT, SEALED_ENDPOINT_PLAINTEXT_LEN,
	},
};
use libcrux_ml_kem::mlkem768;
use zeroize::Zeroizing;

use crate::chain::{ChainClient, ChainError, Session};

/// Domain tag of the derivation of a session's ML-KEM-768 key pair from its ML-DSA seed.
pub const REVEAL_KEY_TAG: &[u8] = b"interlattice/unlisted/reveal-key/v1";

/// Why a reveal could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum RevealError {
	/// The endpoint is longer than a reveal carries.
	#[error("endpoint is {0} bytes; a reveal carries at most {MAX_REVEALED_ENDPOINT_LEN}")]
	EndpointTooLong(usize),
	/// The encapsulation key fails FIPS 203's check.
	#[error("invalid ML-KEM-768 encapsulation key")]
	InvalidKey,
	/// The reveal was not sealed to this key, for this session (or was altered).
	#[error("the sealed endpoint does not open with this session's key (not sealed to it, or altered)")]
	WrongKey,
	/// The opened plaintext is not a padded endpoint.
	#[error("the sealed endpoint is malformed")]
	Malformed,
	/// No randomness for the encapsulation.
	#[error("no randomness: {0}")]
	Randomness(String),
	/// The chain could not be asked.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// The provider did not reveal in time.
	#[error("provider revealed no endpoint to session {session_id} within {waited:?}; its agent may be down (the session can be closed for a refund)")]
	Timeout {
		/// The session.
		session_id: u64,
		/// How long the client waited.
		waited: Duration,
	},
}

/// The ML-KEM-768 key pair a client reveals with for the session whose ML-DSA key is
/// `session_key`: seed = `blake2_512(REVEAL_KEY_TAG ‖ ML-DSA seed)`, so it is as fresh as the
/// session key and recoverable from the same file.
pub struct RevealKeyPair {
	public: MlKemEncapsulationKey,
	private: Zeroizing<[u8; 2400]>,
}

impl RevealKeyPair {
	/// The pair of the session signed by `session_key`.
	pub fn for_session(session_key: &MlDsaKeyPair) -> Self {
		let seed = Zeroizing::new(sp_crypto_hashing::blake2_512(&[REVEAL_KEY_TAG, session_key.seed()].concat()));
		let pair = mlkem768::generate_key_pair(*seed);
		let mut private = Zeroizing::new([0u8; 2400]);
		private.copy_from_slice(pair.private_key().as_slice());
		RevealKeyPair { public: MlKemEncapsulationKey(*pair.public_key().as_slice()), private }
	}

	/// The encapsulation key the client sends.
	pub fn public(&self) -> &MlKemEncapsulationKey {
		&self.public
	}

	/// Opens `sealed` as the reveal whose context is `info` ([`session_info`]).
	pub fn open(&self, info: &[u8; 135], sealed: &SealedEndpoint) -> Result<String, RevealError> {
		let private = mlkem768::MlKem768PrivateKey::from(*self.private);
		let ciphertext = mlkem768::MlKem768Ciphertext::from(sealed.kem_ciphertext.0);
		let shared = Zeroizing::new(mlkem768::decapsulate(&private, &ciphertext));
		let cipher = ChaCha20Poly1305::new(&aead_key(shared.as_ref(), info));
		let plain = Zeroizing::new(
			cipher
				.decrypt(&Nonce::default(), Payload { msg: &sealed.ciphertext.0, aad: info })
				.map_err(|_| RevealError::WrongKey)?,
		);
		let len = usize::from(plain[0]);
		if plain.len() != SEALED_ENDPOINT_PLAINTEXT_LEN || plain[1 + len..].iter().any(|b| *b != 0) {
			return Err(RevealError::Malformed);
		}
		String::from_utf8(plain[1..1 + len].to_vec()).map_err(|_| RevealError::Malformed)
	}
}

/// The context a reveal of `session` on the chain `genesis` is bound to ([`reveal_info`]).
pub fn session_info(genesis: &[u8; 32], session: &Session) -> [u8; 135] {
	reveal_info(genesis, session.session_id, &session.nonce, &pallet_session_escrow::account_bytes(&session.provider))
}

fn aead_key(shared_secret: &[u8], info: &[u8]) -> Key {
	let mut key = Key::default();
	Hkdf::<sha2::Sha256>::new(Some(REVEAL_SALT), shared_secret)
		.expand(info, key.as_mut())
		.expect("32 bytes is a valid HKDF-SHA256 output length; qed");
	key
}

/// Seals `endpoint` to `key` as the reveal whose context is `info` ([`session_info`]), with
/// `randomness` for the encapsulation (32 fresh random bytes).
pub fn seal_with(
	key: &MlKemEncapsulationKey,
	info: &[u8; 135],
	endpoint: &str,
	randomness: [u8; 32],
) -> Result<SealedEndpoint, RevealError> {
	let bytes = endpoint.as_bytes();
	if bytes.len() > MAX_REVEALED_ENDPOINT_LEN {
		return Err(RevealError::EndpointTooLong(bytes.len()));
	}
	let public = mlkem768::MlKem768PublicKey::from(key.0);
	if !mlkem768::validate_public_key(&public) {
		return Err(RevealError::InvalidKey);
	}
	let (kem_ciphertext, shared) = mlkem768::encapsulate(&public, randomness);
	let shared = Zeroizing::new(shared);
	let mut plain = Zeroizing::new([0u8; SEALED_ENDPOINT_PLAINTEXT_LEN]);
	plain[0] = bytes.len() as u8;
	plain[1..1 + bytes.len()].copy_from_slice(bytes);
	let cipher = ChaCha20Poly1305::new(&aead_key(shared.as_ref(), info));
	let sealed = cipher
		.encrypt(&Nonce::default(), Payload { msg: plain.as_ref(), aad: info })
		.expect("ChaCha20-Poly1305 encrypts any plaintext below 256 GiB; qed");
	Ok(SealedEndpoint {
		kem_ciphertext: MlKemCiphertext(*kem_ciphertext.as_slice()),
		ciphertext: SealedEndpointCiphertext::from_slice(&sealed)
			.expect("the plaintext has a fixed length, the ciphertext 16 bytes more; qed"),
	})
}

/// [`seal_with`] with fresh randomness.
pub fn seal(key: &MlKemEncapsulationKey, info: &[u8; 135], endpoint: &str) -> Result<SealedEndpoint, RevealError> {
	let mut randomness = [0u8; 32];
	getrandom::fill(&mut randomness).map_err(|e| RevealError::Randomness(e.to_string()))?;
	seal_with(key, info, endpoint, randomness)
}

/// The endpoint sealed to `session` (`SessionEscrow::SealedEndpoints`), if any.
pub async fn sealed_endpoint(chain: &ChainClient, session_id: u64) -> Result<Option<SealedEndpoint>, ChainError> {
	let key = pallet_session_escrow::SealedEndpoints::<interlattice_runtime::Runtime>::hashed_key_for(session_id);
	chain.storage(&key, None).await
}

/// The encapsulation key `session` was opened with (`SessionEscrow::RevealKeys`), if any.
pub async fn reveal_key(chain: &ChainClient, session_id: u64) -> Result<Option<MlKemEncapsulationKey>, ChainError> {
	let key = pallet_session_escrow::RevealKeys::<interlattice_runtime::Runtime>::hashed_key_for(session_id);
	chain.storage(&key, None).await
}

/// Waits (up to `timeout`, looking every `poll`) for the provider to reveal an endpoint to
/// `session`, other than `except` (an endpoint the client found blocked), and opens it.
pub async fn await_revealed_endpoint(
	chain: &ChainClient,
	pair: &RevealKeyPair,
	session: &Session,
	except: Option<&str>,
	timeout: Duration,
	poll: Duration,
) -> Result<String, RevealError> {
	let info = session_info(&chain.genesis_hash().into(), session);
	let started = Instant::now();
	loop {
		if let Some(sealed) = sealed_endpoint(chain, session.session_id).await? {
			let endpoint = pair.open(&info, &sealed)?;
			if Some(endpoint.as_str()) != except {
				return Ok(endpoint);
			}
		}
		if started.elapsed() >= timeout {
			return Err(RevealError::Timeout { session_id: session.session_id, waited: started.elapsed() });
		}
		tokio::time::sleep(poll).await;
	}
}

#[cfg(test)]
mod tests {
	use super::*;
	use codec::Encode;

	fn info(genesis: u8, id: u64, nonce: u8, provider: u8) -> [u8; 135] {
		reveal_info(&[genesis; 32], id, &[nonce; 32], &[provider; 32])
	}

	fn pair(n: u8) -> RevealKeyPair {
		RevealKeyPair::for_session(&MlDsaKeyPair::from_seed([n; 32]))
	}

	#[test]
	fn only_the_sessions_client_opens_its_reveal() {
		let ours = info(7, 5, 1, 2);
		let client = pair(1);
		let sealed = seal_with(client.public(), &ours, "198.51.100.9:7310", [3; 32]).unwrap();
		assert_eq!(client.open(&ours, &sealed).unwrap(), "198.51.100.9:7310");
		// The same session key always gives the same pair (the client can re-open later).
		assert_eq!(pair(1).public(), client.public());
		// Another session's client (another key) cannot open it.
		assert!(matches!(pair(2).open(&ours, &sealed), Err(RevealError::WrongKey)));
		// Nor can the client read it as another session's, another opening's, another
		// provider's, another chain's.
		for other in [info(7, 6, 1, 2), info(7, 5, 9, 2), info(7, 5, 1, 3), info(8, 5, 1, 2)] {
			assert!(matches!(client.open(&other, &sealed), Err(RevealError::WrongKey)));
		}
		// A flipped bit anywhere is refused.
		let mut bad = sealed.clone();
		bad.ciphertext.0[40] ^= 1;
		assert!(matches!(client.open(&ours, &bad), Err(RevealError::WrongKey)));
		let mut bad = sealed.clone();
		bad.kem_ciphertext.0[0] ^= 1;
		assert!(matches!(client.open(&ours, &bad), Err(RevealError::WrongKey)));
	}

	#[test]
	fn every_reveal_has_the_same_size_and_hides_the_address() {
		let ours = info(7, 5, 1, 2);
		let client = pair(1);
		let short = seal_with(client.public(), &ours, "a:1", [3; 32]).unwrap();
		let long = seal_with(client.public(), &ours, &"b".repeat(255), [3; 32]).unwrap();
		assert_eq!(short.encode().len(), long.encode().len());
		let endpoint = b"203.0.113.77:7310";
		let sealed = seal_with(client.public(), &ours, "203.0.113.77:7310", [3; 32]).unwrap().encode();
		assert!(!sealed.windows(endpoint.len()).any(|w| w == endpoint));
		assert!(matches!(
			seal_with(client.public(), &ours, &"c".repeat(256), [3; 32]),
			Err(RevealError::EndpointTooLong(256))
		));
		let mut invalid = client.public().clone();
		invalid.0[0] = 0xff;
		invalid.0[1] = 0xff;
		assert!(matches!(seal_with(&invalid, &ours, "a:1", [3; 32]), Err(RevealError::InvalidKey)));
	}
}
