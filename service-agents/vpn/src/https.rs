//! The dVPN inside HTTPS (`docs/vpn-protocol.md`, "HTTPS transport"): for networks where a
//! censor blocks WireGuard by its header and the plain control channel by its preamble.
//!
//! The client opens TLS 1.3 (X25519MLKEM768 preferred, ALPN `h2`) to the provider's
//! registered endpoint, TCP, and sends an HTTP/2 extended CONNECT (RFC 8441) with
//! `:protocol = connect-udp` (the MASQUE upgrade token, RFC 9298) and a **capability**: the
//! session id and the session key's ML-DSA-65 signature over the TLS connection's exporter
//! value (RFC 8446 §7.5), so it is useless on any other connection. With a valid capability
//! the agent answers `200` and the stream carries capsules (RFC 9297 framing): WireGuard
//! datagrams in `DATAGRAM` capsules, the control channel's bytes (the same protocol as over
//! plain TCP, preamble included) in `CONTROL` capsules, and random-length `PADDING` capsules
//! after every control write and WireGuard handshake, so no message has a fixed size. Without
//! one, the agent is an ordinary web server (`agent::website`).
//!
//! Both ends move datagrams between the stream and a loopback UDP socket: the WireGuard data
//! planes stay as they are and see a local peer.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use interlattice_pq_crypto::{keys::MlDsaKeyPair, MlDsaPublicKey, MlDsaSignature};
use tokio::{
	io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream},
	net::UdpSocket,
};
use tokio_util::sync::CancellationToken;

use crate::{
	dataplane::{LocalInput, LocalOutput, LocalPort},
	http3::QuicDatagrams,
};

/// The upgrade token of the tunnel's extended CONNECT (MASQUE's, RFC 9298).
pub const UPGRADE_PROTOCOL: &str = "connect-udp";
/// The authorization scheme of the capability header.
pub const AUTHORIZATION_SCHEME: &str = "Interlattice";
/// The TLS exporter label the capability signs (RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-interlattice-vpn-https";
/// Prepended to what a capability signs (so no other signed message is a capability).
pub const CAPABILITY_TAG: &[u8] = b"interlattice-vpn-https-capability-v1";

/// Capsule type of a WireGuard datagram (HTTP Datagram, RFC 9297; context id 0).
pub const DATAGRAM: u64 = 0x00;
/// Capsule type of control channel bytes (from the range RFC 9297 leaves for extensions).
pub const CONTROL: u64 = 0x2c4c_5601;
/// Capsule type of padding (ignored).
pub const PADDING: u64 = 0x2c4c_5602;
/// The largest capsule value either side accepts.
pub const MAX_CAPSULE: usize = 64 * 1024;
/// Bytes of control channel buffered between the relay and the control channel.
const CONTROL_BUFFER: usize = 64 * 1024;

/// What a capability signs: [`CAPABILITY_TAG`] ‖ genesis ‖ provider ‖ session id (LE) ‖
/// the TLS exporter value (32 bytes).
pub fn capability_payload(genesis: [u8; 32], provider: [u8; 32], session_id: u64, exporter: [u8; 32]) -> Vec<u8> {
	let mut payload = CAPABILITY_TAG.to_vec();
	payload.extend_from_slice(&genesis);
	payload.extend_from_slice(&provider);
	payload.extend_from_slice(&session_id.to_le_bytes());
	payload.extend_from_slice(&exporter);
	payload
}

/// The `authorization` header value: `Interlattice base64url(session id LE ‖ signature)`.
pub fn authorization(
	key: &MlDsaKeyPair,
	genesis: [u8; 32],
	provider: [u8; 32],
	session_id: u64,
	exporter: [u8; 32],
) -> Result<String, TransportError> {
	let signature = key
		.sign(&capability_payload(genesis, provider, session_id, exporter))
		.map_err(|e| TransportError::Other(format!("cannot sign the capability: {e}")))?;
	let mut bytes = session_id.to_le_bytes().to_vec();
	bytes.extend_from_slice(signature.as_ref());
	Ok(format!("{AUTHORIZATION_SCHEME} {}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// The session id and signature of an `authorization` header value, if it is one.
pub fn parse_authorization(value: &str) -> Option<(u64, MlDsaSignature)> {
	let encoded = value.strip_prefix(AUTHORIZATION_SCHEME)?.strip_prefix(' ')?;
	let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
	let (id, signature) = bytes.split_at_checked(8)?;
	let session_id = u64::from_le_bytes(id.try_into().ok()?);
	let signature = MlDsaSignature::try_from(signature).ok()?;
	Some((session_id, signature))
}

/// Whether `signature` is `key`'s capability for this session on this connection.
pub fn verify_capability(
	key: &MlDsaPublicKey,
	genesis: [u8; 32],
	provider: [u8; 32],
	session_id: u64,
	exporter: [u8; 32],
	signature: &MlDsaSignature,
) -> bool {
	interlattice_pq_crypto::verify(key, &capability_payload(genesis, provider, session_id, exporter), signature)
}

/// Why the HTTPS transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
	/// Connecting, TLS or HTTP/2 failed.
	#[error("{0}")]
	Connect(String),
	/// The server answered the tunnel request with something else than 200: it is not an
	/// agent that knows the session (or the capability was refused).
	#[error("the server answered {0} to the tunnel request (not a dVPN agent, or the session was refused)")]
	Refused(u16),
	/// Anything else.
	#[error("{0}")]
	Other(String),
}

/// A malformed capsule stream.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapsuleError {
	/// A capsule longer than [`MAX_CAPSULE`].
	#[error("capsule of {0} bytes is too long")]
	TooLong(u64),
	/// A datagram with a context id other than 0.
	#[error("datagram with unknown context id {0}")]
	Context(u64),
}

/// Appends `value` as a QUIC variable-length integer (RFC 9000 §16); `value` < 2^62.
pub fn put_varint(out: &mut BytesMut, value: u64) {
	match value {
		0..=63 => out.put_u8(value as u8),
		64..=16_383 => out.put_u16(0x4000 | value as u16),
		16_384..=1_073_741_823 => out.put_u32(0x8000_0000 | value as u32),
		_ => out.put_u64(0xc000_0000_0000_0000 | (value & 0x3fff_ffff_ffff_ffff)),
	}
}

/// Reads a variable-length integer at the start of `bytes`: the value and its length.
pub fn get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
	let first = *bytes.first()?;
	let len = 1usize << (first >> 6);
	let raw = bytes.get(..len)?;
	let mut value = u64::from(first & 0x3f);
	for b in &raw[1..] {
		value = (value << 8) | u64::from(*b);
	}
	Some((value, len))
}

/// Appends one capsule.
pub fn put_capsule(out: &mut BytesMut, kind: u64, value: &[u8]) {
	put_varint(out, kind);
	put_varint(out, value.len() as u64);
	out.put_slice(value);
}

/// Appends a datagram capsule (context id 0) for `datagram`.
pub fn put_datagram(out: &mut BytesMut, datagram: &[u8]) {
	put_varint(out, DATAGRAM);
	put_varint(out, datagram.len() as u64 + 1);
	out.put_u8(0);
	out.put_slice(datagram);
}

/// Appends a padding capsule of 1 to 256 random bytes' length (zeros: it is encrypted by TLS).
pub fn put_padding(out: &mut BytesMut) {
	let mut len = [0u8; 1];
	let _ = getrandom::fill(&mut len);
	put_capsule(out, PADDING, &vec![0u8; usize::from(len[0]) + 1]);
}

/// One capsule read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Capsule {
	/// A WireGuard datagram.
	Datagram(Bytes),
	/// Control channel bytes.
	Control(Bytes),
	/// Padding or a capsule type this side does not know (skipped, as RFC 9297 says).
	Skipped,
}

/// Takes the next whole capsule off the front of `buffer` (`None`: more bytes needed).
pub fn take_capsule(buffer: &mut BytesMut) -> Result<Option<Capsule>, CapsuleError> {
	let Some((kind, kind_len)) = get_varint(buffer) else { return Ok(None) };
	let Some((len, len_len)) = get_varint(&buffer[kind_len..]) else { return Ok(None) };
	if len > MAX_CAPSULE as u64 {
		return Err(CapsuleError::TooLong(len));
	}
	let header = kind_len + len_len;
	if buffer.len() < header + len as usize {
		return Ok(None);
	}
	buffer.advance(header);
	let mut value = buffer.split_to(len as usize).freeze();
	Ok(Some(match kind {
		DATAGRAM => {
			let (context, n) = get_varint(&value).ok_or(CapsuleError::Context(u64::MAX))?;
			if context != 0 {
				return Err(CapsuleError::Context(context));
			}
			value.advance(n);
			Capsule::Datagram(value)
		},
		CONTROL => Capsule::Control(value),
		_ => Capsule::Skipped,
	}))
}

/// Whether a WireGuard message is a handshake or cookie message (fixed sizes that give the
/// protocol away; they get padding).
fn is_wireguard_handshake(datagram: &[u8]) -> bool {
	datagram.first().is_some_and(|t| (1..=3).contains(t)) && datagram.len() <= 148
}

/// Bytes of capsules the relay gathers from queued datagrams before it writes them to the
/// stream at once.
const BATCH_BYTES: usize = 48 * 1024;

/// Where a relay's WireGuard datagrams come from and go.
pub enum Datagrams {
	/// A UDP socket. Datagrams from the stream go to `peer` (the data plane's socket); with
	/// `None` the first local sender becomes the peer, and only it is heard from then on.
	Socket {
		/// The relay's socket.
		udp: UdpSocket,
		/// The data plane's address.
		peer: Option<SocketAddr>,
	},
	/// The data plane itself, in this process: no socket hop (the agent).
	Local(LocalPort),
}

type SharedPeer = Arc<std::sync::Mutex<Option<SocketAddr>>>;

/// The datagrams' way into the data plane.
enum IntoPlane {
	Socket(Arc<UdpSocket>, SharedPeer),
	Local(LocalInput),
}

impl IntoPlane {
	/// Hands a datagram from the peer to the data plane.
	async fn deliver(&mut self, datagram: &[u8]) {
		match self {
			IntoPlane::Socket(udp, peer) => {
				let to = *peer.lock().unwrap_or_else(|e| e.into_inner());
				if let Some(to) = to {
					let _ = udp.send_to(datagram, to).await;
				}
			},
			IntoPlane::Local(input) => input.deliver(datagram),
		}
	}
}

/// The datagrams' way out of the data plane.
enum OutOfPlane {
	Socket(Arc<UdpSocket>, SharedPeer),
	Local(LocalOutput),
}

/// Where the relay puts the datagrams it takes from the data plane: capsules for the stream
/// (`out`), or HTTP datagrams for QUIC (`quic_out`, when the tunnel has QUIC datagrams and
/// the message is not a WireGuard handshake and fits the path).
struct Outgoing<'a> {
	out: &'a mut BytesMut,
	quic: Option<&'a QuicDatagrams>,
	quic_out: &'a mut Vec<Bytes>,
}

impl Outgoing<'_> {
	fn put(&mut self, datagram: &[u8]) {
		if let Some(quic) = self.quic {
			if !is_wireguard_handshake(datagram) {
				if let Some(framed) = quic.frame(datagram) {
					self.quic_out.push(framed);
					return;
				}
			}
		}
		put_datagram_padded(self.out, datagram);
	}

	fn len(&self) -> usize {
		self.out.len() + self.quic_out.iter().map(Bytes::len).sum::<usize>()
	}
}

impl OutOfPlane {
	/// Waits for the next datagram and puts it into `out` (nothing if it is not from the
	/// peer); `false` when the data plane is gone.
	async fn next(&mut self, buffer: &mut [u8], mut out: Outgoing<'_>) -> bool {
		match self {
			OutOfPlane::Socket(udp, peer) => {
				if let Ok((n, from)) = udp.recv_from(buffer).await {
					put_from_peer(&mut out, peer, from, &buffer[..n]);
				}
				true
			},
			OutOfPlane::Local(output) => match output.recv().await {
				Some(datagram) => {
					out.put(&datagram);
					true
				},
				None => false,
			},
		}
	}

	/// Puts a datagram already queued into `out`; `false` if none was.
	fn next_queued(&mut self, buffer: &mut [u8], out: &mut Outgoing<'_>) -> bool {
		match self {
			OutOfPlane::Socket(udp, peer) => match udp.try_recv_from(buffer) {
				Ok((n, from)) => {
					put_from_peer(out, peer, from, &buffer[..n]);
					true
				},
				Err(_) => false,
			},
			OutOfPlane::Local(output) => match output.try_recv() {
				Some(datagram) => {
					out.put(&datagram);
					true
				},
				None => false,
			},
		}
	}
}

/// Puts `datagram` into `out`, with padding after a WireGuard handshake.
fn put_datagram_padded(out: &mut BytesMut, datagram: &[u8]) {
	put_datagram(out, datagram);
	if is_wireguard_handshake(datagram) {
		put_padding(out);
	}
}

/// Puts `datagram` into `out` if it comes from the peer (the first sender becomes the peer
/// when there is none yet).
fn put_from_peer(
	out: &mut Outgoing<'_>,
	peer: &std::sync::Mutex<Option<SocketAddr>>,
	from: SocketAddr,
	datagram: &[u8],
) {
	{
		let mut known = peer.lock().unwrap_or_else(|e| e.into_inner());
		match *known {
			Some(p) if p != from => return,
			Some(_) => {},
			None => *known = Some(from),
		}
	}
	out.put(datagram);
}

/// Carries a tunnel over `stream` until it ends or `stop` fires: control bytes to and from
/// the returned end (the control channel reads and writes it as it would a TCP stream),
/// WireGuard datagrams to and from the data plane (`datagrams`).
pub fn relay<S>(stream: S, datagrams: Datagrams, stop: CancellationToken) -> DuplexStream
where
	S: AsyncRead + AsyncWrite + Send + 'static,
{
	relay_with(stream, datagrams, None, stop)
}

/// [`relay`], with QUIC datagrams beside the stream (an HTTP/3 tunnel, `crate::http3`):
/// WireGuard data messages that fit go as HTTP datagrams, the rest as capsules on the stream;
/// both are accepted in.
pub fn relay_with<S>(
	stream: S,
	datagrams: Datagrams,
	quic: Option<QuicDatagrams>,
	stop: CancellationToken,
) -> DuplexStream
where
	S: AsyncRead + AsyncWrite + Send + 'static,
{
	let (control, relay_end) = tokio::io::duplex(CONTROL_BUFFER);
	let (mut control_in, mut control_out) = tokio::io::split(relay_end);
	let (mut stream_in, mut stream_out) = tokio::io::split(stream);
	let (mut into_plane, mut out_of_plane) = match datagrams {
		Datagrams::Socket { udp, peer } => {
			let (udp, peer) = (Arc::new(udp), Arc::new(std::sync::Mutex::new(peer)));
			(IntoPlane::Socket(udp.clone(), peer.clone()), OutOfPlane::Socket(udp, peer))
		},
		Datagrams::Local(port) => (IntoPlane::Local(port.input), OutOfPlane::Local(port.output)),
	};

	// Stream (and QUIC datagrams) → control and data plane.
	let stop_in = stop.clone();
	let quic_in = quic.clone();
	tokio::spawn(async move {
		let mut buffer = BytesMut::with_capacity(64 * 1024);
		let result: Result<(), String> = async {
			loop {
				while let Some(capsule) = take_capsule(&mut buffer).map_err(|e| e.to_string())? {
					match capsule {
						Capsule::Datagram(d) => into_plane.deliver(&d).await,
						Capsule::Control(c) => control_out.write_all(&c).await.map_err(|e| e.to_string())?,
						Capsule::Skipped => {},
					}
				}
				let read = tokio::select! {
					read = stream_in.read_buf(&mut buffer) => read.map_err(|e| e.to_string())?,
					datagram = async {
						match &quic_in {
							Some(quic) => quic.recv().await,
							None => std::future::pending().await,
						}
					} => {
						match datagram {
							Some(d) => into_plane.deliver(&d).await,
							None => return Ok(()), // the QUIC connection closed
						}
						continue;
					},
					_ = stop_in.cancelled() => return Ok(()),
				};
				if read == 0 {
					return Ok(());
				}
			}
		}
		.await;
		if let Err(e) = result {
			tracing::debug!(error = %e, "tunnel stream ended");
		}
		let _ = control_out.shutdown().await;
		stop_in.cancel();
	});

	// Control and data plane → stream.
	tokio::spawn(async move {
		let mut datagram = vec![0u8; 65_536];
		let mut control = vec![0u8; 16 * 1024];
		let mut out = BytesMut::with_capacity(70 * 1024);
		let mut quic_out = Vec::new();
		let mut control_open = true;
		loop {
			out.clear();
			tokio::select! {
				open = out_of_plane.next(&mut datagram, Outgoing { out: &mut out, quic: quic.as_ref(), quic_out: &mut quic_out }) => {
					if !open {
						stop.cancel();
						break;
					}
					// What else is queued goes into the same write: one HTTP/2 frame, TLS
					// record and syscall for many datagrams under load, none of them delayed.
					let mut outgoing = Outgoing { out: &mut out, quic: quic.as_ref(), quic_out: &mut quic_out };
					while outgoing.len() < BATCH_BYTES && out_of_plane.next_queued(&mut datagram, &mut outgoing) {}
					if let Some(quic) = &quic {
						for framed in quic_out.drain(..) {
							if !quic.send(framed).await {
								stop.cancel();
							}
						}
					}
					if out.is_empty() {
						continue;
					}
				},
				read = control_in.read(&mut control), if control_open => match read {
					Ok(0) | Err(_) => {
						// The control channel ended: so does the tunnel.
						control_open = false;
						stop.cancel();
						continue;
					},
					Ok(n) => {
						put_capsule(&mut out, CONTROL, &control[..n]);
						put_padding(&mut out);
					},
				},
				_ = stop.cancelled() => break,
			}
			if stream_out.write_all(&out).await.is_err() || stream_out.flush().await.is_err() {
				stop.cancel();
				break;
			}
		}
		let _ = tokio::time::timeout(Duration::from_secs(2), stream_out.shutdown()).await;
	});
	control
}

/// The client's end of an HTTPS tunnel: the control channel and where its data plane sends
/// WireGuard datagrams (a loopback socket). Dropping it ends the tunnel.
pub struct ClientTunnel<G = TunnelGuard> {
	/// The control channel (read and written as the plain TCP one).
	pub control: DuplexStream,
	/// Where the client's WireGuard sends its datagrams.
	pub datagrams: SocketAddr,
	/// Keeps the tunnel open; dropping it closes it.
	pub guard: G,
}

/// Keeps an HTTPS tunnel open while held.
pub struct TunnelGuard {
	_sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>,
	_stop: tokio_util::sync::DropGuard,
}

/// The TLS server name for an endpoint's `host`: an IP address (browsers send no server name
/// for one, and neither do we) or a DNS name.
pub fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
	match host.parse::<std::net::IpAddr>() {
		Ok(ip) => Ok(rustls::pki_types::ServerName::IpAddress(ip.into())),
		Err(_) => rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}")),
	}
}

/// The first flight of the HTTPS transport's TLS client for `host` (a ClientHello record), as
/// it goes on the wire: for measuring its fingerprint (`scripts/tls-fingerprint.sh`).
pub fn client_hello(host: &str) -> Result<Vec<u8>, String> {
	let config = interlattice_agent_core::tls::client_config_authenticated_inside().map_err(|e| e.to_string())?;
	let mut connection =
		rustls::ClientConnection::new(Arc::new(config), server_name(host)?).map_err(|e| e.to_string())?;
	let mut out = Vec::new();
	connection.write_tls(&mut out).map_err(|e| e.to_string())?;
	Ok(out)
}

/// Opens an HTTPS tunnel to the agent at `agent` (registered endpoint host `host`):
/// TLS, HTTP/2, then the extended CONNECT with the capability `authorize` signs for the
/// connection's exporter value.
pub async fn open(
	agent: SocketAddr,
	host: &str,
	authorize: impl FnOnce([u8; 32]) -> Result<String, TransportError>,
) -> Result<ClientTunnel, TransportError> {
	use hyper_util::rt::{TokioExecutor, TokioIo};

	let connect = |e: &dyn std::fmt::Display| TransportError::Connect(e.to_string());
	let step = Duration::from_secs(10);
	let config = interlattice_agent_core::tls::client_config_authenticated_inside().map_err(|e| connect(&e))?;
	let tcp = tokio::time::timeout(step, tokio::net::TcpStream::connect(agent))
		.await
		.map_err(|_| connect(&"connection timed out"))?
		.map_err(|e| connect(&e))?;
	let _ = tcp.set_nodelay(true);
	let name = server_name(host).map_err(|e| connect(&e))?;
	let tls = tokio::time::timeout(step, tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp))
		.await
		.map_err(|_| connect(&"TLS handshake timed out"))?
		.map_err(|e| connect(&format!("TLS: {e}")))?;
	if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
		return Err(connect(&"the server does not speak HTTP/2"));
	}
	let mut exporter = [0u8; 32];
	tls.get_ref().1.export_keying_material(&mut exporter, EXPORTER_LABEL, None).map_err(|e| connect(&e))?;
	let authorization = authorize(exporter)?;
	let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
		.await
		.map_err(|e| connect(&format!("HTTP/2: {e}")))?;
	let mut connection = Box::pin(connection);
	// The server's settings must allow the extended CONNECT before it can be sent.
	let deadline = tokio::time::Instant::now() + step;
	while !connection.is_extended_connect_protocol_enabled() {
		tokio::select! {
			result = connection.as_mut() => {
				return Err(connect(&format!("HTTP/2 connection ended: {}", result.err().map(|e| e.to_string()).unwrap_or_default())));
			},
			_ = tokio::time::sleep(Duration::from_millis(5)) => {},
		}
		if tokio::time::Instant::now() > deadline {
			return Err(TransportError::Refused(405));
		}
	}
	tokio::spawn(async move {
		if let Err(e) = connection.await {
			tracing::debug!(error = %e, "HTTP/2 connection ended");
		}
	});
	let mut request = hyper::Request::builder()
		.method(hyper::Method::CONNECT)
		.uri(format!("https://{host}:{port}/.well-known/masque/udp/{ip}/{port}/", port = agent.port(), ip = agent.ip()))
		.header(hyper::header::AUTHORIZATION, authorization)
		.header("capsule-protocol", "?1")
		.body(http_body_util::Empty::<Bytes>::new())
		.map_err(|e| TransportError::Other(e.to_string()))?;
	request.extensions_mut().insert(hyper::ext::Protocol::from_static(UPGRADE_PROTOCOL));
	let response = tokio::time::timeout(Duration::from_secs(30), sender.send_request(request))
		.await
		.map_err(|_| connect(&"no answer to the tunnel request in time"))?
		.map_err(|e| connect(&format!("tunnel request: {e}")))?;
	if response.status() != hyper::StatusCode::OK {
		return Err(TransportError::Refused(response.status().as_u16()));
	}
	let upgraded = hyper::upgrade::on(response).await.map_err(|e| connect(&format!("tunnel: {e}")))?;
	let udp = UdpSocket::bind("127.0.0.1:0").await.map_err(|e| connect(&e))?;
	let datagrams = udp.local_addr().map_err(|e| connect(&e))?;
	let stop = CancellationToken::new();
	let control = relay(TokioIo::new(upgraded), Datagrams::Socket { udp, peer: None }, stop.clone());
	Ok(ClientTunnel { control, datagrams, guard: TunnelGuard { _sender: sender, _stop: stop.drop_guard() } })
}

#[cfg(test)]
mod tests {
	use super::*;
	use proptest::prelude::*;

	proptest! {
		#[test]
		fn varints_round_trip(value in 0u64..(1 << 62)) {
			let mut out = BytesMut::new();
			put_varint(&mut out, value);
			prop_assert_eq!(get_varint(&out), Some((value, out.len())));
		}

		#[test]
		fn capsules_round_trip_in_any_split_and_garbage_never_panics(
			datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..8),
			split in 0usize..20_000,
			garbage in proptest::collection::vec(any::<u8>(), 0..300),
		) {
			let mut wire = BytesMut::new();
			for d in &datagrams {
				put_datagram(&mut wire, d);
				put_padding(&mut wire);
				put_capsule(&mut wire, CONTROL, d);
			}
			let split = split.min(wire.len());
			let mut buffer = BytesMut::from(&wire[..split]);
			let mut got = Vec::new();
			while let Some(c) = take_capsule(&mut buffer).unwrap() {
				got.push(c);
			}
			buffer.extend_from_slice(&wire[split..]);
			while let Some(c) = take_capsule(&mut buffer).unwrap() {
				got.push(c);
			}
			prop_assert!(buffer.is_empty());
			let mut expected = Vec::new();
			for d in &datagrams {
				expected.push(Capsule::Datagram(Bytes::from(d.clone())));
				expected.push(Capsule::Skipped);
				expected.push(Capsule::Control(Bytes::from(d.clone())));
			}
			prop_assert_eq!(got, expected);
			let mut garbage = BytesMut::from(&garbage[..]);
			while let Ok(Some(_)) = take_capsule(&mut garbage) {}
		}
	}

	#[test]
	fn oversized_capsules_and_foreign_contexts_are_refused() {
		let mut wire = BytesMut::new();
		put_varint(&mut wire, CONTROL);
		put_varint(&mut wire, MAX_CAPSULE as u64 + 1);
		assert_eq!(take_capsule(&mut wire), Err(CapsuleError::TooLong(MAX_CAPSULE as u64 + 1)));
		let mut wire = BytesMut::new();
		put_capsule(&mut wire, DATAGRAM, &[7, 1, 2, 3]);
		assert_eq!(take_capsule(&mut wire), Err(CapsuleError::Context(7)));
	}

	#[test]
	fn a_capability_is_bound_to_its_session_provider_and_connection() {
		let key = MlDsaKeyPair::generate().unwrap();
		let (genesis, provider, exporter) = ([1u8; 32], [2u8; 32], [3u8; 32]);
		let header = authorization(&key, genesis, provider, 42, exporter).unwrap();
		let (session, signature) = parse_authorization(&header).unwrap();
		assert_eq!(session, 42);
		let public = key.public().clone();
		assert!(verify_capability(&public, genesis, provider, 42, exporter, &signature));
		// Replayed on another TLS connection, for another session or provider: refused.
		assert!(!verify_capability(&public, genesis, provider, 42, [4u8; 32], &signature));
		assert!(!verify_capability(&public, genesis, provider, 43, exporter, &signature));
		assert!(!verify_capability(&public, genesis, [5u8; 32], 42, exporter, &signature));
		let other = MlDsaKeyPair::generate().unwrap().public().clone();
		assert!(!verify_capability(&other, genesis, provider, 42, exporter, &signature));
		for bad in ["", "Interlattice", "Bearer abc", "Interlattice !!!", "Interlattice AAAA"] {
			assert!(parse_authorization(bad).is_none(), "{bad}");
		}
	}

	#[test]
	fn the_client_hello_offers_the_hybrid_group_and_names_only_dns_hosts() {
		let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
		let named = client_hello("www.example.com").unwrap();
		assert_eq!(named[0], 0x16, "a TLS handshake record");
		assert!(contains(&named, b"www.example.com"), "the server name is sent for a DNS name");
		// A key share for X25519MLKEM768 (group 0x11ec, 1216 bytes), as Chrome sends.
		assert!(contains(&named, &[0x11, 0xec, 0x04, 0xc0]));
		assert!(contains(&named, b"h2") && contains(&named, b"http/1.1"));
		let by_address = client_hello("10.99.1.1").unwrap();
		assert!(!contains(&by_address, b"10.99.1.1") && !contains(&by_address, &[10, 99, 1, 1]));
		assert!(server_name("not a name!").is_err());
	}

	#[tokio::test]
	async fn the_relay_carries_control_bytes_and_datagrams_both_ways() {
		let (a, b) = tokio::io::duplex(1 << 20);
		let stop = CancellationToken::new();
		// "Client" end: learns its local peer; "agent" end: sends to a fixed peer.
		let client_udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
		let client_relay = client_udp.local_addr().unwrap();
		let agent_udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
		let data_plane = UdpSocket::bind("127.0.0.1:0").await.unwrap();
		let client_plane = UdpSocket::bind("127.0.0.1:0").await.unwrap();
		let mut client_control = relay(a, Datagrams::Socket { udp: client_udp, peer: None }, stop.clone());
		let agent = Datagrams::Socket { udp: agent_udp, peer: Some(data_plane.local_addr().unwrap()) };
		let mut agent_control = relay(b, agent, stop.clone());

		client_control.write_all(b"interlattice-vpn hello").await.unwrap();
		let mut got = [0u8; 22];
		agent_control.read_exact(&mut got).await.unwrap();
		assert_eq!(&got, b"interlattice-vpn hello");

		let handshake = [1u8, 0, 0, 0].repeat(37);
		client_plane.send_to(&handshake, client_relay).await.unwrap();
		let mut buf = [0u8; 2048];
		let (n, from) = data_plane.recv_from(&mut buf).await.unwrap();
		assert_eq!(&buf[..n], &handshake[..]);
		data_plane.send_to(b"reply", from).await.unwrap();
		let (n, _) = client_plane.recv_from(&mut buf).await.unwrap();
		assert_eq!(&buf[..n], b"reply");

		// Another local sender cannot inject into the client's tunnel.
		let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
		stranger.send_to(b"injected", client_relay).await.unwrap();
		client_plane.send_to(b"second", client_relay).await.unwrap();
		let (n, _) = data_plane.recv_from(&mut buf).await.unwrap();
		assert_eq!(&buf[..n], b"second");

		// The control channel's end closes the tunnel.
		drop(client_control);
		let mut rest = Vec::new();
		tokio::time::timeout(Duration::from_secs(5), agent_control.read_to_end(&mut rest)).await.unwrap().unwrap();
		assert!(stop.is_cancelled());
	}
}
