//! The control channel between a client and a provider agent (`docs/vpn-protocol.md`): a TCP
//! connection to the provider's registered endpoint that carries the post-quantum handshake,
//! then the payment loop (usage reports one way, signed receipts the other) for as long as
//! the tunnel lives. The tunnel ends when the control connection ends.
//!
//! Wire format: the client first sends [`PREAMBLE`]; after it, each message is a frame of a
//! 4-byte big-endian length followed by that many bytes of a SCALE-encoded [`ClientMessage`]
//! or [`AgentMessage`]. Frames longer than [`MAX_FRAME`] are refused. Pure encoding and
//! decoding here; the agent and client do the I/O.

use codec::{Decode, Encode};
use interlattice_pq_crypto::SignedUsageReceipt;

use crate::handshake::{AgentHello, ClientFinish, ClientHello, RekeyRequest, RekeyResponse};

/// What a client sends first: identifies the protocol and its version, so that anything else
/// (an HTTP request, a port scan) is recognised at once and refused with a clear error.
pub const PREAMBLE: &[u8; 16] = b"interlattice-vpn";
/// The largest frame either side accepts (the biggest message, an agent hello, is ~4.5 KiB).
pub const MAX_FRAME: usize = 16 * 1024;

/// Client → agent.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ClientMessage {
	/// Handshake message 1.
	Hello(ClientHello),
	/// Handshake message 3.
	Finish(ClientFinish),
	/// A cumulative signed receipt for the session's usage so far.
	Receipt(SignedUsageReceipt),
	/// The client is done: the agent settles the session's last receipt and closes the session
	/// on-chain (refunding the rest of the deposit at once), then ends the connection.
	Close,
	/// The answer to [`AgentMessage::Rekey`] (boxed: 1 KB, the other messages are small).
	Rekeyed(Box<RekeyResponse>),
}

/// Why the agent refuses or ends a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ErrorCode {
	/// Not this protocol, or a malformed or oversized message.
	Protocol,
	/// The session does not exist, is another provider's or another service's.
	UnknownSession,
	/// The session is closing or expired.
	SessionEnded,
	/// The session's deposit cannot pay for anything more.
	DepositExhausted,
	/// The handshake failed (bad signature, wrong chain, invalid key).
	Handshake,
	/// The agent is at its session limit or out of tunnel addresses.
	Busy,
	/// The chain could not be reached to check the session.
	ChainUnavailable,
	/// The agent is shutting down.
	ShuttingDown,
	/// The same session connected again; this older tunnel was replaced.
	Replaced,
	/// No receipt arrived for too long.
	PaymentTimeout,
	/// The client did not answer a rekey before the tunnel's key grew too old.
	KeyExpired,
}

/// How the tunnel is set up, sent once the handshake completed.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TunnelParams {
	/// The agent's WireGuard UDP port (on the host of the control endpoint).
	pub wireguard_port: u16,
	/// The agent's address inside the tunnel (the client's gateway).
	pub gateway: [u8; 4],
	/// MTU of the tunnel interface.
	pub mtu: u16,
	/// The client must send a receipt at least every this many bytes of usage...
	pub receipt_interval_bytes: u64,
	/// ...and at least every this many seconds.
	pub receipt_interval_secs: u32,
	/// Unpaid bytes the agent serves before it stops forwarding.
	pub credit_limit_bytes: u64,
}

/// The agent's count of a session's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct UsageReport {
	/// Bytes forwarded in both directions so far in the session (inner IP packets).
	pub served_bytes: u64,
	/// Seconds of tunnel time so far in the session.
	pub seconds: u64,
	/// Bytes covered by the latest accepted receipt.
	pub paid_bytes: u64,
	/// Seconds covered by the latest accepted receipt.
	pub paid_seconds: u64,
	/// The latest accepted receipt's sequence number.
	pub sequence: u64,
	/// Whether the agent is holding the client's traffic until it pays.
	pub blocked: bool,
}

/// Agent → client.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum AgentMessage {
	/// Handshake message 2 (boxed: 4.5 KB, the other messages are small).
	Hello(Box<AgentHello>),
	/// The handshake completed and the session has a place: the WireGuard peer is installed
	/// with the client's tunnel address (the tunnel's parameters came signed in the agent's
	/// hello). The first sealed frame; the agent allocates the address only after the client
	/// proved the session's key.
	Ready {
		/// The client's IPv4 address inside the tunnel.
		address: [u8; 4],
		/// Its prefix length.
		prefix: u8,
	},
	/// The agent's current count (sent every second while the tunnel is up).
	Usage(UsageReport),
	/// A receipt was verified and durably stored.
	ReceiptAccepted {
		/// Its sequence number.
		sequence: u64,
	},
	/// A receipt was refused; nothing changed.
	ReceiptRejected {
		/// Its sequence number.
		sequence: u64,
		/// Why.
		reason: String,
	},
	/// The session was settled and closed on-chain after the client's [`ClientMessage::Close`].
	Closed {
		/// What the provider was paid in total.
		paid: u128,
	},
	/// The agent refuses or ends the tunnel; the connection closes after this.
	Error {
		/// The kind of failure.
		code: ErrorCode,
		/// A sentence for a person.
		message: String,
	},
	/// A new WireGuard pre-shared key, please (`docs/vpn-handshake.md`, "Rekeying"): the
	/// client answers [`ClientMessage::Rekeyed`] (boxed: 1.2 KB).
	Rekey(Box<RekeyRequest>),
	/// The agent's WireGuard now holds the new pre-shared key of `generation`: the client
	/// installs it too and handshakes with it.
	RekeyDone {
		/// The generation installed.
		generation: u64,
	},
}

/// A frame that cannot be accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
	/// Longer than [`MAX_FRAME`].
	#[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
	TooLong(usize),
	/// Not a valid message.
	#[error("malformed message: {0}")]
	Malformed(String),
}

/// `message` as one frame.
pub fn encode_frame<M: Encode>(message: &M) -> Vec<u8> {
	let body = message.encode();
	let mut frame = Vec::with_capacity(4 + body.len());
	frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
	frame.extend_from_slice(&body);
	frame
}

/// The body length announced by a frame header.
pub fn frame_length(header: [u8; 4]) -> Result<usize, FrameError> {
	let len = u32::from_be_bytes(header) as usize;
	if len > MAX_FRAME {
		return Err(FrameError::TooLong(len));
	}
	Ok(len)
}

/// Decodes a frame body; trailing bytes are an error.
pub fn decode_body<M: Decode>(mut body: &[u8]) -> Result<M, FrameError> {
	let message = M::decode(&mut body).map_err(|e| FrameError::Malformed(e.to_string()))?;
	if !body.is_empty() {
		return Err(FrameError::Malformed(format!("{} trailing bytes", body.len())));
	}
	Ok(message)
}

/// Async frame I/O over any stream.
pub mod io {
	use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

	use super::*;

	/// Why reading or writing a frame failed.
	#[derive(Debug, thiserror::Error)]
	pub enum ChannelError {
		/// The connection failed or closed.
		#[error("connection: {0}")]
		Io(#[from] std::io::Error),
		/// The peer sent something that is not a valid frame.
		#[error(transparent)]
		Frame(#[from] FrameError),
		/// A sealed frame failed authentication or held no valid message.
		#[error(transparent)]
		Sealed(#[from] crate::sealed::SealError),
	}

	/// Reads one message.
	pub async fn read_message<M: Decode, R: AsyncRead + Unpin>(reader: &mut R) -> Result<M, ChannelError> {
		Ok(decode_body(&read_frame(reader).await?)?)
	}

	/// Reads messages on a task of their own (a half-read frame survives the caller's
	/// `select!`), until the connection ends or the receiver is dropped; the last item is the
	/// error that ended it.
	pub fn spawn_reader<M, R>(
		mut reader: R,
	) -> (tokio::sync::mpsc::Receiver<Result<M, ChannelError>>, tokio::task::JoinHandle<()>)
	where
		M: Decode + Send + 'static,
		R: AsyncRead + Unpin + Send + 'static,
	{
		let (tx, rx) = tokio::sync::mpsc::channel(8);
		let task = tokio::spawn(async move {
			loop {
				let m = read_message::<M, _>(&mut reader).await;
				let end = m.is_err();
				if tx.send(m).await.is_err() || end {
					return;
				}
			}
		});
		(rx, task)
	}

	/// Writes one message.
	pub async fn write_message<M: Encode, W: AsyncWrite + Unpin>(
		writer: &mut W,
		message: &M,
	) -> Result<(), ChannelError> {
		writer.write_all(&encode_frame(message)).await?;
		writer.flush().await?;
		Ok(())
	}

	/// Reads one frame's body.
	pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, ChannelError> {
		let mut header = [0u8; 4];
		reader.read_exact(&mut header).await?;
		let len = frame_length(header)?;
		let mut body = vec![0u8; len];
		reader.read_exact(&mut body).await?;
		Ok(body)
	}

	/// Writes one message sealed (after the handshake), with random padding.
	pub async fn write_sealed<M: Encode, W: AsyncWrite + Unpin>(
		writer: &mut W,
		sealer: &mut crate::sealed::Sealer,
		message: &M,
	) -> Result<(), ChannelError> {
		let mut pad = [0u8; 1];
		getrandom::fill(&mut pad).map_err(|e| std::io::Error::other(e.to_string()))?;
		let body = sealer.seal(message, usize::from(pad[0]))?;
		let mut frame = Vec::with_capacity(4 + body.len());
		frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
		frame.extend_from_slice(&body);
		writer.write_all(&frame).await?;
		writer.flush().await?;
		Ok(())
	}

	/// Reads sealed messages on a task of their own (see [`spawn_reader`]); the first frame
	/// that fails authentication ends it.
	pub fn spawn_sealed_reader<M, R>(
		mut reader: R,
		mut opener: crate::sealed::Opener,
	) -> (tokio::sync::mpsc::Receiver<Result<M, ChannelError>>, tokio::task::JoinHandle<()>)
	where
		M: Decode + Send + 'static,
		R: AsyncRead + Unpin + Send + 'static,
	{
		let (tx, rx) = tokio::sync::mpsc::channel(8);
		let task = tokio::spawn(async move {
			loop {
				let m = match read_frame(&mut reader).await {
					Ok(body) => opener.open::<M>(&body).map_err(ChannelError::from),
					Err(e) => Err(e),
				};
				let end = m.is_err();
				if tx.send(m).await.is_err() || end {
					return;
				}
			}
		});
		(rx, task)
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn frames_round_trip_and_refuse_garbage() {
		let message = AgentMessage::Error { code: ErrorCode::Busy, message: "full".into() };
		let frame = encode_frame(&message);
		let len = frame_length(frame[..4].try_into().unwrap()).unwrap();
		assert_eq!(len, frame.len() - 4);
		assert_eq!(decode_body::<AgentMessage>(&frame[4..]).unwrap(), message);
		// An HTTP request read as a frame header announces an absurd length.
		assert_eq!(frame_length(*b"GET "), Err(FrameError::TooLong(0x4745_5420)));
		// Truncated, trailing and unknown variants are malformed.
		assert!(matches!(decode_body::<AgentMessage>(&frame[4..frame.len() - 1]), Err(FrameError::Malformed(_))));
		let mut long = frame[4..].to_vec();
		long.push(0);
		assert!(matches!(decode_body::<AgentMessage>(&long), Err(FrameError::Malformed(_))));
		assert!(matches!(decode_body::<ClientMessage>(&[9]), Err(FrameError::Malformed(_))));
	}

	#[test]
	fn the_largest_message_fits_a_frame() {
		use crate::handshake::{AgentHelloBody, KEM_CIPHERTEXT_LEN};
		use interlattice_pq_crypto::MlDsaSignature;
		let hello = AgentMessage::Hello(Box::new(AgentHello {
			body: AgentHelloBody {
				agent_nonce: [0; 32],
				kem_ciphertext: [0; KEM_CIPHERTEXT_LEN],
				wireguard_public_key: [0; 32],
				params: TunnelParams {
					wireguard_port: 0,
					gateway: [0; 4],
					mtu: 0,
					receipt_interval_bytes: 0,
					receipt_interval_secs: 0,
					credit_limit_bytes: 0,
				},
			},
			signature: MlDsaSignature([0; 3309]),
		}));
		assert!(encode_frame(&hello).len() - 4 <= MAX_FRAME);
	}
}

/// Fuzzing of the control channel's decoders: whatever bytes arrive, a clear error or a
/// message, never a panic, and nothing longer than a frame is ever announced.
#[cfg(test)]
mod fuzz {
	use super::*;
	use proptest::prelude::*;

	fn a_valid_frame() -> Vec<u8> {
		encode_frame(&AgentMessage::Error { code: ErrorCode::Busy, message: "full".into() })
	}

	proptest! {
		#![proptest_config(ProptestConfig { cases: 4_000, failure_persistence: None, ..ProptestConfig::default() })]

		#[test]
		fn any_bytes_decode_to_a_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..8_192)) {
			let _ = decode_body::<ClientMessage>(&bytes);
			let _ = decode_body::<AgentMessage>(&bytes);
		}

		#[test]
		fn a_frame_header_never_announces_more_than_a_frame(header in any::<[u8; 4]>()) {
			if let Ok(len) = frame_length(header) {
				prop_assert!(len <= MAX_FRAME);
			}
		}

		#[test]
		fn changed_frames_decode_to_a_message_or_an_error(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
			let mut frame = a_valid_frame();
			for (at, bits) in flips {
				let at = at % frame.len();
				frame[at] ^= bits;
			}
			if frame_length(frame[..4].try_into().unwrap()).is_ok() {
				let _ = decode_body::<AgentMessage>(&frame[4..]);
				let _ = decode_body::<ClientMessage>(&frame[4..]);
			}
		}
	}
}
