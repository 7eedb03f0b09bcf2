//! The dVPN's post-quantum handshake, as a state machine without I/O (specified in
//! `docs/vpn-handshake.md`).
//!
//! Three messages over the control channel:
//!
//! 1. client → agent, [`ClientHello`]: version, chain, on-chain session id, a fresh nonce, an
//!    ephemeral ML-KEM-768 encapsulation key and the client's WireGuard public key.
//! 2. agent → client, [`AgentHello`]: a fresh nonce, the ML-KEM-768 ciphertext, the agent's
//!    WireGuard public key and the tunnel's parameters, signed (ML-DSA-65, the provider's
//!    registered service key) over `T1 = SHA3-256(tag_agent ‖ ClientHello ‖ body)`.
//! 3. client → agent, [`ClientFinish`]: an ML-DSA-65 signature with the session's client key
//!    (registered on-chain when the session was opened) over
//!    `T2 = SHA3-256(tag_client ‖ T1 ‖ agent signature)`.
//!
//! Both derive the WireGuard pre-shared key
//! `PSK = HKDF-SHA256(salt = T2, ikm = ML-KEM shared secret, info = PSK_INFO)` and the two
//! keys of the sealed control channel that follows ([`crate::sealed`]); the tunnel's
//! parameters are part of the agent's signed message. WireGuard mixes
//! the PSK into its own (X25519) handshake, so the tunnel's keys stay secret against an
//! adversary who breaks X25519 but not ML-KEM; both ML-DSA signatures bind everything
//! exchanged, so neither side can be impersonated with classical cryptography alone.

use codec::{Decode, Encode};
use hkdf::Hkdf;
use interlattice_pq_crypto::{keys::MlDsaKeyPair, MlDsaPublicKey, MlDsaSignature};
use libcrux_ml_kem::mlkem768;
use sha3::{Digest, Sha3_256};
use zeroize::Zeroizing;

use crate::{
	control::TunnelParams,
	sealed::{ControlKeys, AGENT_TO_CLIENT_INFO, CLIENT_TO_AGENT_INFO},
};

/// The only protocol version; there is nothing to negotiate, hence nothing to downgrade.
/// Version 2: the tunnel's parameters are signed, and the control channel after the
/// handshake is sealed.
pub const VERSION: u8 = 2;
/// Domain tag of the agent's signed transcript.
pub const AGENT_TAG: &[u8] = b"interlattice/vpn-handshake/v2/agent";
/// Domain tag of the client's signed transcript.
pub const CLIENT_TAG: &[u8] = b"interlattice/vpn-handshake/v2/client";
/// HKDF `info` of the WireGuard pre-shared key.
pub const PSK_INFO: &[u8] = b"interlattice/vpn/wireguard-psk/v2";
/// ML-KEM-768 encapsulation key length.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// ML-KEM-768 ciphertext length.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;

/// Message 1.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ClientHello {
	/// [`VERSION`].
	pub version: u8,
	/// Genesis hash of the chain the session lives on.
	pub genesis_hash: [u8; 32],
	/// The on-chain session the tunnel is paid from.
	pub session_id: u64,
	/// Fresh random bytes.
	pub client_nonce: [u8; 32],
	/// Ephemeral ML-KEM-768 encapsulation key.
	pub kem_public_key: [u8; KEM_PUBLIC_KEY_LEN],
	/// The client's WireGuard (X25519) public key.
	pub wireguard_public_key: [u8; 32],
}

/// What the agent signs in message 2.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AgentHelloBody {
	/// Fresh random bytes.
	pub agent_nonce: [u8; 32],
	/// ML-KEM-768 ciphertext to the client's encapsulation key.
	pub kem_ciphertext: [u8; KEM_CIPHERTEXT_LEN],
	/// The agent's WireGuard public key.
	pub wireguard_public_key: [u8; 32],
	/// How the tunnel is run and paid (signed, so nobody on the path can change it).
	pub params: TunnelParams,
}

/// Message 2.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AgentHello {
	/// The signed part.
	pub body: AgentHelloBody,
	/// ML-DSA-65 signature by the provider's service key over `T1`.
	pub signature: MlDsaSignature,
}

/// Message 3.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ClientFinish {
	/// ML-DSA-65 signature by the session's client key over `T2`.
	pub signature: MlDsaSignature,
}

/// Why a handshake failed. Each side then drops the connection; nothing was set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
	/// The client speaks another version.
	#[error("unsupported handshake version {0} (this side speaks {VERSION})")]
	UnsupportedVersion(u8),
	/// The client's session is on another chain.
	#[error("the session is on another chain")]
	WrongChain,
	/// The encapsulation key is not a valid ML-KEM-768 key.
	#[error("invalid ML-KEM-768 encapsulation key")]
	InvalidKemKey,
	/// The agent's signature does not verify under the provider's registered service key.
	#[error("the agent's signature does not verify under the provider's registered service key")]
	BadAgentSignature,
	/// The client's signature does not verify under the session's client key.
	#[error("the client's signature does not verify under the session's key")]
	BadClientSignature,
	/// The system's random number generator failed.
	#[error("no randomness: {0}")]
	Randomness(String),
	/// Signing failed.
	#[error("signing failed")]
	Signing,
	/// A rekey answer for another rekey than the one under way.
	#[error("rekey answer for generation {got}, expected {expected}")]
	WrongGeneration {
		/// The generation the agent asked for.
		expected: u64,
		/// The generation answered.
		got: u64,
	},
}

/// The outcome both sides agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Established {
	/// The session.
	pub session_id: u64,
	/// The WireGuard pre-shared key.
	pub preshared_key: Zeroizing<[u8; 32]>,
	/// The peer's WireGuard public key.
	pub peer_wireguard_public_key: [u8; 32],
	/// `T2`, binding everything exchanged.
	pub transcript_hash: [u8; 32],
	/// The keys of the sealed control channel.
	pub control: ControlKeys,
	/// The tunnel's parameters, as the agent signed them.
	pub params: TunnelParams,
}

fn random<const N: usize>() -> Result<[u8; N], HandshakeError> {
	let mut out = [0u8; N];
	getrandom::fill(&mut out).map_err(|e| HandshakeError::Randomness(e.to_string()))?;
	Ok(out)
}

fn t1(hello: &ClientHello, body: &AgentHelloBody) -> [u8; 32] {
	let mut h = Sha3_256::new();
	h.update(AGENT_TAG);
	h.update(hello.encode());
	h.update(body.encode());
	h.finalize().into()
}

fn t2(t1: &[u8; 32], agent_signature: &MlDsaSignature) -> [u8; 32] {
	let mut h = Sha3_256::new();
	h.update(CLIENT_TAG);
	h.update(t1);
	h.update(agent_signature.0);
	h.finalize().into()
}

fn derive(t2: &[u8; 32], shared_secret: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
	let mut out = Zeroizing::new([0u8; 32]);
	Hkdf::<sha2::Sha256>::new(Some(t2), shared_secret)
		.expand(info, out.as_mut())
		.expect("32 bytes is a valid HKDF-SHA256 output length");
	out
}

fn psk(t2: &[u8; 32], shared_secret: &[u8]) -> Zeroizing<[u8; 32]> {
	derive(t2, shared_secret, PSK_INFO)
}

fn control_keys(t2: &[u8; 32], shared_secret: &[u8]) -> ControlKeys {
	ControlKeys {
		client_to_agent: derive(t2, shared_secret, CLIENT_TO_AGENT_INFO),
		agent_to_client: derive(t2, shared_secret, AGENT_TO_CLIENT_INFO),
	}
}

/// The client's side, between sending [`ClientHello`] and receiving [`AgentHello`].
pub struct ClientHandshake {
	hello: ClientHello,
	kem_private: Zeroizing<Vec<u8>>,
}

impl ClientHandshake {
	/// Starts a handshake for `session_id` on the chain `genesis_hash`.
	pub fn start(
		genesis_hash: [u8; 32],
		session_id: u64,
		wireguard_public_key: [u8; 32],
	) -> Result<(Self, ClientHello), HandshakeError> {
		Ok(Self::start_with(genesis_hash, session_id, wireguard_public_key, random()?, random()?))
	}

	/// [`ClientHandshake::start`] with given randomness (tests).
	pub fn start_with(
		genesis_hash: [u8; 32],
		session_id: u64,
		wireguard_public_key: [u8; 32],
		client_nonce: [u8; 32],
		kem_seed: [u8; 64],
	) -> (Self, ClientHello) {
		let pair = mlkem768::generate_key_pair(kem_seed);
		let hello = ClientHello {
			version: VERSION,
			genesis_hash,
			session_id,
			client_nonce,
			kem_public_key: *pair.public_key().as_slice(),
			wireguard_public_key,
		};
		let kem_private = Zeroizing::new(pair.private_key().as_slice().to_vec());
		(ClientHandshake { hello: hello.clone(), kem_private }, hello)
	}

	/// Checks the agent's answer against the provider's registered `service_key`, signs the
	/// transcript with the session's `session_key` and derives the pre-shared key.
	pub fn finish(
		self,
		answer: &AgentHello,
		service_key: &MlDsaPublicKey,
		session_key: &MlDsaKeyPair,
	) -> Result<(ClientFinish, Established), HandshakeError> {
		let t1 = t1(&self.hello, &answer.body);
		if !interlattice_pq_crypto::verify(service_key, &t1, &answer.signature) {
			return Err(HandshakeError::BadAgentSignature);
		}
		let t2 = t2(&t1, &answer.signature);
		let signature = session_key.sign(&t2).map_err(|_| HandshakeError::Signing)?;
		let mut private = [0u8; 2400];
		private.copy_from_slice(&self.kem_private);
		let private = mlkem768::MlKem768PrivateKey::from(private);
		let ciphertext = mlkem768::MlKem768Ciphertext::from(answer.body.kem_ciphertext);
		let shared = Zeroizing::new(mlkem768::decapsulate(&private, &ciphertext));
		let established = Established {
			session_id: self.hello.session_id,
			preshared_key: psk(&t2, shared.as_ref()),
			peer_wireguard_public_key: answer.body.wireguard_public_key,
			transcript_hash: t2,
			control: control_keys(&t2, shared.as_ref()),
			params: answer.body.params.clone(),
		};
		Ok((ClientFinish { signature }, established))
	}
}

/// The agent's side, between sending [`AgentHello`] and receiving [`ClientFinish`].
pub struct AgentHandshake {
	t2: [u8; 32],
	session_id: u64,
	shared: Zeroizing<[u8; 32]>,
	client_wireguard_public_key: [u8; 32],
	params: TunnelParams,
}

impl AgentHandshake {
	/// Answers a [`ClientHello`] for this chain. The caller has checked the session on-chain
	/// (open, with this provider, paid) before calling.
	pub fn respond(
		hello: &ClientHello,
		genesis_hash: [u8; 32],
		service_key: &MlDsaKeyPair,
		wireguard_public_key: [u8; 32],
		params: TunnelParams,
	) -> Result<(Self, AgentHello), HandshakeError> {
		Self::respond_with(hello, genesis_hash, service_key, wireguard_public_key, params, random()?, random()?)
	}

	/// [`AgentHandshake::respond`] with given randomness (tests).
	#[allow(clippy::too_many_arguments)]
	pub fn respond_with(
		hello: &ClientHello,
		genesis_hash: [u8; 32],
		service_key: &MlDsaKeyPair,
		wireguard_public_key: [u8; 32],
		params: TunnelParams,
		agent_nonce: [u8; 32],
		kem_randomness: [u8; 32],
	) -> Result<(Self, AgentHello), HandshakeError> {
		if hello.version != VERSION {
			return Err(HandshakeError::UnsupportedVersion(hello.version));
		}
		if hello.genesis_hash != genesis_hash {
			return Err(HandshakeError::WrongChain);
		}
		let public = mlkem768::MlKem768PublicKey::from(hello.kem_public_key);
		if !mlkem768::validate_public_key(&public) {
			return Err(HandshakeError::InvalidKemKey);
		}
		let (ciphertext, shared) = mlkem768::encapsulate(&public, kem_randomness);
		let body = AgentHelloBody {
			agent_nonce,
			kem_ciphertext: *ciphertext.as_slice(),
			wireguard_public_key,
			params: params.clone(),
		};
		let t1 = t1(hello, &body);
		let signature = service_key.sign(&t1).map_err(|_| HandshakeError::Signing)?;
		let t2 = t2(&t1, &signature);
		let state = AgentHandshake {
			t2,
			session_id: hello.session_id,
			shared: Zeroizing::new(shared),
			client_wireguard_public_key: hello.wireguard_public_key,
			params,
		};
		Ok((state, AgentHello { body, signature }))
	}

	/// The session the client named.
	pub fn session_id(&self) -> u64 {
		self.session_id
	}

	/// Checks the client's signature with the session's on-chain `client_key` and derives
	/// the pre-shared key.
	pub fn complete(self, finish: &ClientFinish, client_key: &MlDsaPublicKey) -> Result<Established, HandshakeError> {
		if !interlattice_pq_crypto::verify(client_key, &self.t2, &finish.signature) {
			return Err(HandshakeError::BadClientSignature);
		}
		Ok(Established {
			session_id: self.session_id,
			preshared_key: psk(&self.t2, self.shared.as_ref()),
			peer_wireguard_public_key: self.client_wireguard_public_key,
			transcript_hash: self.t2,
			control: control_keys(&self.t2, self.shared.as_ref()),
			params: self.params,
		})
	}
}

/// HKDF `info` prefix of a rekeyed WireGuard pre-shared key (followed by the generation).
pub const REKEY_INFO: &[u8] = b"interlattice/vpn/wireguard-psk/rekey/v1";

/// Agent → client inside the sealed control channel: a fresh ML-KEM-768 encapsulation key
/// for the next pre-shared key (generation 1, 2, …; the handshake's key is generation 0).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RekeyRequest {
	/// Which pre-shared key this makes.
	pub generation: u64,
	/// The agent's ephemeral ML-KEM-768 encapsulation key.
	pub kem_public_key: [u8; KEM_PUBLIC_KEY_LEN],
}

/// Client → agent: the ciphertext of a fresh secret to the agent's key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RekeyResponse {
	/// The generation of the request answered.
	pub generation: u64,
	/// ML-KEM-768 ciphertext.
	pub kem_ciphertext: [u8; KEM_CIPHERTEXT_LEN],
}

/// `PSK_{n} = HKDF-SHA256(salt = PSK_{n-1}, ikm = ML-KEM shared secret, info = REKEY_INFO ‖
/// n as u64 LE)`: each key depends on every secret before it and a fresh ML-KEM secret, so
/// a key that leaks reveals neither the earlier ones nor, after the next rekey, the later ones.
fn rekeyed(current: &[u8; 32], shared_secret: &[u8], generation: u64) -> Zeroizing<[u8; 32]> {
	let mut info = REKEY_INFO.to_vec();
	info.extend_from_slice(&generation.to_le_bytes());
	derive(current, shared_secret, &info)
}

/// The agent's side of one rekey: the ephemeral ML-KEM key pair, until the client answers.
pub struct Rekey {
	generation: u64,
	kem_private: Zeroizing<Vec<u8>>,
}

impl Rekey {
	/// Starts rekey `generation` (the agent rekeys every two minutes at most: see
	/// `docs/vpn-handshake.md`).
	pub fn start(generation: u64) -> Result<(Self, RekeyRequest), HandshakeError> {
		let pair = mlkem768::generate_key_pair(random()?);
		let request = RekeyRequest { generation, kem_public_key: *pair.public_key().as_slice() };
		Ok((Rekey { generation, kem_private: Zeroizing::new(pair.private_key().as_slice().to_vec()) }, request))
	}

	/// The generation under way.
	pub fn generation(&self) -> u64 {
		self.generation
	}

	/// The next pre-shared key from the client's answer and the `current` one.
	pub fn finish(self, response: &RekeyResponse, current: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
		if response.generation != self.generation {
			return Err(HandshakeError::WrongGeneration { expected: self.generation, got: response.generation });
		}
		let mut private = [0u8; 2400];
		private.copy_from_slice(&self.kem_private);
		let private = mlkem768::MlKem768PrivateKey::from(private);
		let ciphertext = mlkem768::MlKem768Ciphertext::from(response.kem_ciphertext);
		let shared = Zeroizing::new(mlkem768::decapsulate(&private, &ciphertext));
		Ok(rekeyed(current, shared.as_ref(), self.generation))
	}
}

/// The client's answer to a [`RekeyRequest`] and the next pre-shared key, from the
/// `current` one.
pub fn answer_rekey(
	request: &RekeyRequest,
	current: &[u8; 32],
) -> Result<(RekeyResponse, Zeroizing<[u8; 32]>), HandshakeError> {
	let public = mlkem768::MlKem768PublicKey::from(request.kem_public_key);
	if !mlkem768::validate_public_key(&public) {
		return Err(HandshakeError::InvalidKemKey);
	}
	let (ciphertext, shared) = mlkem768::encapsulate(&public, random()?);
	let shared = Zeroizing::new(shared);
	let response = RekeyResponse { generation: request.generation, kem_ciphertext: *ciphertext.as_slice() };
	Ok((response, rekeyed(current, shared.as_ref(), request.generation)))
}

#[cfg(test)]
mod tests {
	use super::*;

	const GENESIS: [u8; 32] = [9; 32];

	fn params() -> TunnelParams {
		TunnelParams {
			wireguard_port: 7310,
			gateway: [10, 100, 0, 1],
			mtu: 1420,
			receipt_interval_bytes: 4 << 20,
			receipt_interval_secs: 10,
			credit_limit_bytes: 32 << 20,
		}
	}

	struct Keys {
		service: MlDsaKeyPair,
		session: MlDsaKeyPair,
	}

	fn keys() -> Keys {
		Keys { service: MlDsaKeyPair::dev("charlie"), session: MlDsaKeyPair::from_seed([3; 32]) }
	}

	#[test]
	fn both_sides_derive_the_same_fresh_preshared_key() {
		let k = keys();
		let mut psks = Vec::new();
		for _ in 0..2 {
			let (client, hello) = ClientHandshake::start(GENESIS, 7, [1; 32]).unwrap();
			// The messages survive their wire encoding.
			let hello = ClientHello::decode(&mut &hello.encode()[..]).unwrap();
			let (agent, answer) = AgentHandshake::respond(&hello, GENESIS, &k.service, [2; 32], params()).unwrap();
			assert_eq!(agent.session_id(), 7);
			let answer = AgentHello::decode(&mut &answer.encode()[..]).unwrap();
			let (finish, client_side) = client.finish(&answer, k.service.public(), &k.session).unwrap();
			let agent_side = agent.complete(&finish, k.session.public()).unwrap();
			assert_eq!(client_side.preshared_key, agent_side.preshared_key);
			assert_eq!(client_side.transcript_hash, agent_side.transcript_hash);
			assert_eq!(
				(client_side.peer_wireguard_public_key, agent_side.peer_wireguard_public_key),
				([2; 32], [1; 32])
			);
			assert_eq!((client_side.params.clone(), agent_side.params.clone()), (params(), params()));
			assert_eq!(client_side.control, agent_side.control, "the same control-channel keys");
			assert_ne!(*client_side.control.client_to_agent, *client_side.control.agent_to_client);
			psks.push(*client_side.preshared_key);
		}
		assert_ne!(psks[0], psks[1], "every handshake makes a new key");
	}

	#[test]
	fn an_impostor_agent_is_refused() {
		let k = keys();
		let impostor = MlDsaKeyPair::dev("dave");
		let (client, hello) = ClientHandshake::start(GENESIS, 7, [1; 32]).unwrap();
		let (_, answer) = AgentHandshake::respond(&hello, GENESIS, &impostor, [2; 32], params()).unwrap();
		assert_eq!(
			client.finish(&answer, k.service.public(), &k.session).err(),
			Some(HandshakeError::BadAgentSignature)
		);
	}

	#[test]
	fn tampering_with_any_message_is_detected() {
		let k = keys();
		// A man in the middle replaces the client's KEM key with his own: the agent signs
		// a transcript the client does not recognise.
		let (client, hello) = ClientHandshake::start(GENESIS, 7, [1; 32]).unwrap();
		let (_, mitm_hello) = ClientHandshake::start(GENESIS, 7, [1; 32]).unwrap();
		let mut swapped = hello.clone();
		swapped.kem_public_key = mitm_hello.kem_public_key;
		let (_, answer) = AgentHandshake::respond(&swapped, GENESIS, &k.service, [2; 32], params()).unwrap();
		assert_eq!(
			client.finish(&answer, k.service.public(), &k.session).err(),
			Some(HandshakeError::BadAgentSignature)
		);

		// A changed ciphertext, WireGuard key or tunnel parameter (e.g. a receipt every byte) in
		// the agent's answer.
		for tamper in 0..4 {
			let (client, hello) = ClientHandshake::start(GENESIS, 7, [1; 32]).unwrap();
			let (_, mut answer) = AgentHandshake::respond(&hello, GENESIS, &k.service, [2; 32], params()).unwrap();
			match tamper {
				0 => answer.body.kem_ciphertext[5] ^= 1,
				1 => answer.body.wireguard_public_key[0] ^= 1,
				2 => answer.body.params.receipt_interval_bytes = 1,
				_ => answer.body.params.wireguard_port = 1,
			}
			assert_eq!(
				client.finish(&answer, k.service.public(), &k.session).err(),
				Some(HandshakeError::BadAgentSignature)
			);
		}
	}

	#[test]
	fn the_client_must_hold_the_sessions_key_and_cannot_replay() {
		let k = keys();
		let stranger = MlDsaKeyPair::from_seed([4; 32]);
		let (client, hello) = ClientHandshake::start(GENESIS, 7, [1; 32]).unwrap();
		let (agent, answer) = AgentHandshake::respond(&hello, GENESIS, &k.service, [2; 32], params()).unwrap();
		let (finish, _) = client.finish(&answer, k.service.public(), &stranger).unwrap();
		assert_eq!(agent.complete(&finish, k.session.public()).err(), Some(HandshakeError::BadClientSignature));

		// A recorded ClientHello and ClientFinish replayed: the agent's fresh nonce and
		// ciphertext make a new transcript, which the old signature does not cover.
		let (client, hello) = ClientHandshake::start(GENESIS, 7, [1; 32]).unwrap();
		let (_, answer) = AgentHandshake::respond(&hello, GENESIS, &k.service, [2; 32], params()).unwrap();
		let (recorded_finish, _) = client.finish(&answer, k.service.public(), &k.session).unwrap();
		let (agent, _) = AgentHandshake::respond(&hello, GENESIS, &k.service, [2; 32], params()).unwrap();
		assert_eq!(
			agent.complete(&recorded_finish, k.session.public()).err(),
			Some(HandshakeError::BadClientSignature)
		);
	}

	#[test]
	fn bad_hellos_are_refused() {
		let k = keys();
		let (_, hello) = ClientHandshake::start(GENESIS, 7, [1; 32]).unwrap();
		let mut old = hello.clone();
		old.version = 0;
		assert_eq!(
			AgentHandshake::respond(&old, GENESIS, &k.service, [2; 32], params()).err().map(|e| e.to_string()),
			Some(HandshakeError::UnsupportedVersion(0).to_string())
		);
		assert!(matches!(
			AgentHandshake::respond(&hello, [8; 32], &k.service, [2; 32], params()),
			Err(HandshakeError::WrongChain)
		));
		let mut bad_key = hello.clone();
		bad_key.kem_public_key = [0xff; KEM_PUBLIC_KEY_LEN];
		assert!(matches!(
			AgentHandshake::respond(&bad_key, GENESIS, &k.service, [2; 32], params()),
			Err(HandshakeError::InvalidKemKey)
		));
		// Garbage and truncated messages do not decode.
		assert!(ClientHello::decode(&mut &[1u8, 2, 3][..]).is_err());
		let encoded = hello.encode();
		assert_eq!(encoded.len(), 1 + 32 + 8 + 32 + KEM_PUBLIC_KEY_LEN + 32);
		assert!(ClientHello::decode(&mut &encoded[..encoded.len() - 1]).is_err());
	}

	#[test]
	fn a_rekey_gives_both_sides_a_new_key_that_depends_on_the_old_one() {
		let current = [9u8; 32];
		let (rekey, request) = Rekey::start(1).unwrap();
		assert_eq!(rekey.generation(), 1);
		let (response, client_key) = answer_rekey(&request, &current).unwrap();
		let agent_key = rekey.finish(&response, &current).unwrap();
		assert_eq!(client_key, agent_key);
		assert_ne!(*agent_key, current);

		// Another generation's answer, another agent key, another current key: a refusal or another key.
		let (rekey, request) = Rekey::start(2).unwrap();
		let (response, client_key) = answer_rekey(&request, &current).unwrap();
		let mut wrong = response.clone();
		wrong.generation = 3;
		assert_eq!(
			Rekey::start(2).unwrap().0.finish(&wrong, &current).unwrap_err(),
			HandshakeError::WrongGeneration { expected: 2, got: 3 }
		);
		let (rekey_b, _) = Rekey::start(2).unwrap();
		assert_ne!(rekey_b.finish(&response, &current).unwrap(), client_key, "another agent key, another secret");
		assert_ne!(rekey.finish(&response, &[8u8; 32]).unwrap(), client_key, "chained to the current key");
		let mut invalid = request.clone();
		invalid.kem_public_key = [0xff; KEM_PUBLIC_KEY_LEN];
		assert_eq!(answer_rekey(&invalid, &current).unwrap_err(), HandshakeError::InvalidKemKey);
	}
}
