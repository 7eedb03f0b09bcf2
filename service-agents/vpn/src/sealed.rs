//! The control channel after the handshake: every frame is sealed with ChaCha20-Poly1305
//! under a key derived from the handshake (one key per direction), with a counter nonce, and
//! padded to a random length. Nothing after the handshake can be read, changed, replayed,
//! reordered or injected by anyone on the path, and frame sizes say little about what they
//! carry. State machine without I/O: [`Sealer`] and [`Opener`] turn messages into frame
//! bodies and back; the caller moves the bytes.
//!
//! A sealed frame body is `ChaCha20-Poly1305(key, nonce = counter as 12 bytes little-endian,
//! aad = direction tag, plaintext = length (u32 LE) ‖ SCALE(message) ‖ padding)`; the
//! counter starts at 0 and grows by one per frame in that direction. Specified in
//! `docs/vpn-protocol.md`.

use chacha20poly1305::{
	aead::{Aead, KeyInit, Payload},
	ChaCha20Poly1305, Key, Nonce,
};
use codec::{Decode, Encode};
use zeroize::Zeroizing;

/// HKDF `info` of the client → agent key.
pub const CLIENT_TO_AGENT_INFO: &[u8] = b"interlattice/vpn/control/v2/client-to-agent";
/// HKDF `info` of the agent → client key.
pub const AGENT_TO_CLIENT_INFO: &[u8] = b"interlattice/vpn/control/v2/agent-to-client";

/// Most padding added to a frame (random, 0 ..= this).
pub const MAX_PADDING: usize = 255;

/// Why a frame could not be opened. The connection ends: nothing of it is used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
	/// The frame was changed, replayed, reordered or sealed with another key.
	#[error("a control frame failed authentication (changed, replayed or injected)")]
	Forged,
	/// The authentic plaintext is not a valid message.
	#[error("malformed message in a sealed frame: {0}")]
	Malformed(String),
	/// 2^64 frames: never in practice.
	#[error("the frame counter is exhausted")]
	Exhausted,
}

/// The keys of one control channel, derived by the handshake.
#[derive(Clone)]
pub struct ControlKeys {
	/// Seals what the client sends.
	pub client_to_agent: Zeroizing<[u8; 32]>,
	/// Seals what the agent sends.
	pub agent_to_client: Zeroizing<[u8; 32]>,
}

impl core::fmt::Debug for ControlKeys {
	fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
		f.write_str("ControlKeys(…)")
	}
}

impl PartialEq for ControlKeys {
	fn eq(&self, other: &Self) -> bool {
		*self.client_to_agent == *other.client_to_agent && *self.agent_to_client == *other.agent_to_client
	}
}

impl Eq for ControlKeys {}

fn nonce(counter: u64) -> Nonce {
	let mut n = [0u8; 12];
	n[..8].copy_from_slice(&counter.to_le_bytes());
	Nonce::from(n)
}

/// Seals one direction's frames.
pub struct Sealer {
	cipher: ChaCha20Poly1305,
	aad: &'static [u8],
	counter: u64,
}

/// Opens one direction's frames, in order.
pub struct Opener {
	cipher: ChaCha20Poly1305,
	aad: &'static [u8],
	counter: u64,
}

/// The client's and the agent's ends of a channel.
pub fn client_end(keys: &ControlKeys) -> (Sealer, Opener) {
	(
		Sealer {
			cipher: ChaCha20Poly1305::new(Key::from_slice(&keys.client_to_agent[..])),
			aad: CLIENT_TO_AGENT_INFO,
			counter: 0,
		},
		Opener {
			cipher: ChaCha20Poly1305::new(Key::from_slice(&keys.agent_to_client[..])),
			aad: AGENT_TO_CLIENT_INFO,
			counter: 0,
		},
	)
}

/// The agent's end (see [`client_end`]).
pub fn agent_end(keys: &ControlKeys) -> (Sealer, Opener) {
	(
		Sealer {
			cipher: ChaCha20Poly1305::new(Key::from_slice(&keys.agent_to_client[..])),
			aad: AGENT_TO_CLIENT_INFO,
			counter: 0,
		},
		Opener {
			cipher: ChaCha20Poly1305::new(Key::from_slice(&keys.client_to_agent[..])),
			aad: CLIENT_TO_AGENT_INFO,
			counter: 0,
		},
	)
}

impl Sealer {
	/// The next frame body carrying `message`, padded with `padding` random-length bytes
	/// (0 ..= [`MAX_PADDING`]).
	pub fn seal<M: Encode>(&mut self, message: &M, padding: usize) -> Result<Vec<u8>, SealError> {
		let body = message.encode();
		let mut plaintext = Zeroizing::new(Vec::with_capacity(4 + body.len() + padding));
		plaintext.extend_from_slice(&(body.len() as u32).to_le_bytes());
		plaintext.extend_from_slice(&body);
		let padded = plaintext.len() + padding.min(MAX_PADDING);
		plaintext.resize(padded, 0);
		let sealed = self
			.cipher
			.encrypt(&nonce(self.counter), Payload { msg: &plaintext, aad: self.aad })
			.map_err(|_| SealError::Exhausted)?;
		self.counter = self.counter.checked_add(1).ok_or(SealError::Exhausted)?;
		Ok(sealed)
	}
}

impl Opener {
	/// The message in the next frame body; any failure ends the channel.
	pub fn open<M: Decode>(&mut self, frame: &[u8]) -> Result<M, SealError> {
		let plaintext = Zeroizing::new(
			self.cipher
				.decrypt(&nonce(self.counter), Payload { msg: frame, aad: self.aad })
				.map_err(|_| SealError::Forged)?,
		);
		self.counter = self.counter.checked_add(1).ok_or(SealError::Exhausted)?;
		let len = plaintext
			.get(..4)
			.map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes; qed")) as usize)
			.ok_or_else(|| SealError::Malformed("no length".into()))?;
		let mut body = plaintext.get(4..4 + len).ok_or_else(|| SealError::Malformed("length past the end".into()))?;
		let message = M::decode(&mut body).map_err(|e| SealError::Malformed(e.to_string()))?;
		if !body.is_empty() {
			return Err(SealError::Malformed("trailing bytes".into()));
		}
		Ok(message)
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	fn keys() -> ControlKeys {
		ControlKeys { client_to_agent: Zeroizing::new([1; 32]), agent_to_client: Zeroizing::new([2; 32]) }
	}

	#[test]
	fn frames_round_trip_in_both_directions_and_padding_hides_sizes() {
		let (mut client_tx, mut client_rx) = client_end(&keys());
		let (mut agent_tx, mut agent_rx) = agent_end(&keys());
		let a = client_tx.seal(&(7u64, b"receipt".to_vec()), 0).unwrap();
		let b = client_tx.seal(&(7u64, b"receipt".to_vec()), 100).unwrap();
		assert_eq!(b.len(), a.len() + 100);
		assert_ne!(a[..a.len()], b[..a.len()], "the same message twice looks different");
		assert_eq!(agent_rx.open::<(u64, Vec<u8>)>(&a).unwrap(), (7, b"receipt".to_vec()));
		assert_eq!(agent_rx.open::<(u64, Vec<u8>)>(&b).unwrap(), (7, b"receipt".to_vec()));
		let c = agent_tx.seal(&true, 3).unwrap();
		assert!(client_rx.open::<bool>(&c).unwrap());
	}

	#[test]
	fn changed_replayed_reordered_and_reflected_frames_are_refused() {
		let (mut client_tx, _) = client_end(&keys());
		let (_, mut agent_rx) = agent_end(&keys());
		let first = client_tx.seal(&1u32, 0).unwrap();
		let second = client_tx.seal(&2u32, 0).unwrap();
		let mut changed = first.clone();
		changed[0] ^= 1;
		assert_eq!(agent_rx.open::<u32>(&changed), Err(SealError::Forged));
		// Out of order.
		let (_, mut agent_rx) = agent_end(&keys());
		assert_eq!(agent_rx.open::<u32>(&second), Err(SealError::Forged));
		// Replayed.
		let (_, mut agent_rx) = agent_end(&keys());
		assert_eq!(agent_rx.open::<u32>(&first), Ok(1));
		assert_eq!(agent_rx.open::<u32>(&first), Err(SealError::Forged));
		// Reflected: the agent's own frame sent back to it.
		let (mut agent_tx, mut agent_rx) = agent_end(&keys());
		let own = agent_tx.seal(&1u32, 0).unwrap();
		assert_eq!(agent_rx.open::<u32>(&own), Err(SealError::Forged));
		// Another channel's key.
		let other = ControlKeys { client_to_agent: Zeroizing::new([9; 32]), agent_to_client: Zeroizing::new([2; 32]) };
		let (_, mut agent_rx) = agent_end(&other);
		assert_eq!(agent_rx.open::<u32>(&first), Err(SealError::Forged));
	}
}

/// Fuzzing of the sealed channel's opener: forged bytes are refused, and what a peer holding
/// the keys (a hostile client or agent) seals, however malformed, is a clear error or a
/// message, never a panic.
#[cfg(test)]
mod fuzz {
	use super::*;
	use crate::control::{AgentMessage, ClientMessage};
	use proptest::prelude::*;

	fn keys() -> ControlKeys {
		ControlKeys { client_to_agent: Zeroizing::new([3; 32]), agent_to_client: Zeroizing::new([4; 32]) }
	}

	proptest! {
		#![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

		#[test]
		fn forged_frames_are_refused(frame in proptest::collection::vec(any::<u8>(), 0..4_096)) {
			let (_, mut agent_rx) = agent_end(&keys());
			prop_assert_eq!(agent_rx.open::<ClientMessage>(&frame).err(), Some(SealError::Forged));
		}

		#[test]
		fn a_hostile_peer_s_plaintext_is_a_message_or_an_error(plaintext in proptest::collection::vec(any::<u8>(), 0..4_096)) {
			let (client_tx, _) = client_end(&keys());
			let sealed = client_tx.cipher.encrypt(&nonce(0), Payload { msg: &plaintext, aad: client_tx.aad }).unwrap();
			let (_, mut agent_rx) = agent_end(&keys());
			let _ = agent_rx.open::<ClientMessage>(&sealed);
			let (agent_tx, _) = agent_end(&keys());
			let sealed = agent_tx.cipher.encrypt(&nonce(0), Payload { msg: &plaintext, aad: agent_tx.aad }).unwrap();
			let (_, mut client_rx) = client_end(&keys());
			let _ = client_rx.open::<AgentMessage>(&sealed);
		}
	}
}
