//! The dVPN inside HTTP/3 (`docs/vpn-protocol.md`, "HTTP/3 transport"): MASQUE over QUIC,
//! for networks where a censor blocks WireGuard by its header but lets QUIC through (most of
//! the web's traffic to the large sites is QUIC).
//!
//! The client opens QUIC (TLS 1.3 inside, X25519MLKEM768 preferred, ALPN `h3`) to the UDP port
//! with the number of the provider's HTTPS port, and sends an HTTP/3 extended CONNECT
//! (RFC 9220) with `:protocol = connect-udp` (RFC 9298) and the same capability as over
//! HTTP/2 (`crate::https`), signed over this QUIC connection's TLS exporter value. With a
//! valid one the agent answers `200`; then
//! - WireGuard data messages travel as HTTP datagrams (RFC 9297 §2.1) in QUIC DATAGRAM
//!   frames: the request stream's quarter stream id, context id 0, the WireGuard message;
//!   unreliable and unordered, as over UDP, so one lost packet does not hold the others up;
//! - the control channel, WireGuard's handshake messages (their fixed sizes would give the
//!   protocol away in a datagram; in the stream they travel with random padding) and any
//!   message too large for the path's current datagram size travel as capsules on the request
//!   stream, exactly as over HTTP/2.
//!
//! Without a valid capability the agent is the same ordinary web site as over HTTP/2.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

use crate::https::{self, get_varint, put_varint, Datagrams, TransportError, EXPORTER_LABEL, UPGRADE_PROTOCOL};

pub use http::Method;

/// The ALPN protocol of HTTP/3.
pub const ALPN: &[u8] = b"h3";
/// Bytes buffered between an HTTP/3 request stream and the relay.
const STREAM_BUFFER: usize = 256 * 1024;
/// The largest UDP payload QUIC probes the path for (an Ethernet path: 1500 bytes less the
/// IPv4 and UDP headers); quinn discovers what the path allows below it.
const MAX_UDP_PAYLOAD: u16 = 1472;

/// The QUIC transport parameters both ends use.
pub fn transport_config() -> quinn::TransportConfig {
	let mut config = quinn::TransportConfig::default();
	config.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))));
	config.keep_alive_interval(Some(Duration::from_secs(10)));
	config.datagram_receive_buffer_size(Some(4 << 20));
	config.datagram_send_buffer_size(4 << 20);
	let mut mtu = quinn::MtuDiscoveryConfig::default();
	mtu.upper_bound(MAX_UDP_PAYLOAD);
	config.mtu_discovery_config(Some(mtu));
	config
}

#[cfg(feature = "agent")]
/// The agent's QUIC server configuration, with `tls` (the HTTPS endpoint's configuration;
/// its ALPN is replaced by `h3`).
fn server_config(mut tls: rustls::ServerConfig) -> Result<quinn::ServerConfig, String> {
	tls.alpn_protocols = vec![ALPN.to_vec()];
	tls.max_early_data_size = 0;
	let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| format!("QUIC TLS: {e}"))?;
	let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
	config.transport_config(Arc::new(transport_config()));
	Ok(config)
}

#[cfg(feature = "agent")]
/// The agent's QUIC endpoint on a UDP socket of its own at `listen`.
pub fn server_endpoint(tls: rustls::ServerConfig, listen: SocketAddr) -> Result<quinn::Endpoint, String> {
	quinn::Endpoint::server(server_config(tls)?, listen)
		.map_err(|e| format!("cannot bind UDP {listen} for HTTP/3: {e}"))
}

#[cfg(feature = "agent")]
/// The agent's QUIC endpoint on the WireGuard engine's socket (`Engine::quic_socket`).
pub fn shared_server_endpoint(
	tls: rustls::ServerConfig,
	socket: crate::dataplane::QuicSocket,
) -> Result<quinn::Endpoint, String> {
	// Clients must keep the QUIC fixed bit set (RFC 9287 greasing off): it is what tells their
	// packets from WireGuard's on the shared socket.
	let mut endpoint = quinn::EndpointConfig::default();
	endpoint.grease_quic_bit(false);
	quinn::Endpoint::new_with_abstract_socket(
		endpoint,
		Some(server_config(tls)?),
		Arc::new(socket),
		Arc::new(quinn::TokioRuntime),
	)
	.map_err(|e| format!("HTTP/3 on the WireGuard socket: {e}"))
}

/// The datagram side of an HTTP/3 tunnel: HTTP datagrams in QUIC DATAGRAM frames for the
/// request stream whose quarter stream id this holds.
#[derive(Clone)]
pub struct QuicDatagrams {
	connection: quinn::Connection,
	quarter_stream_id: u64,
}

impl QuicDatagrams {
	/// The datagrams of request stream `stream_id` on `connection`.
	pub fn new(connection: quinn::Connection, stream_id: u64) -> Self {
		QuicDatagrams { connection, quarter_stream_id: stream_id / 4 }
	}

	/// `datagram` as an HTTP datagram, if it fits the path's datagram size now.
	pub(crate) fn frame(&self, datagram: &[u8]) -> Option<Bytes> {
		let mut out = BytesMut::with_capacity(datagram.len() + 9);
		put_varint(&mut out, self.quarter_stream_id);
		out.put_u8(0); // context id 0: a UDP payload (RFC 9298 §4)
		out.put_slice(datagram);
		(out.len() <= self.connection.max_datagram_size()?).then(|| out.freeze())
	}

	/// Sends an HTTP datagram made by [`QuicDatagrams::frame`], waiting while the connection's
	/// congestion window is full; `false` when the connection is gone.
	pub(crate) async fn send(&self, framed: Bytes) -> bool {
		match self.connection.send_datagram_wait(framed).await {
			Ok(()) => true,
			// Too large after all (the path shrank): lost, as a UDP datagram would be.
			Err(quinn::SendDatagramError::TooLarge) => true,
			Err(_) => false,
		}
	}

	/// The next WireGuard message of this tunnel; `None` when the connection is closed.
	/// Datagrams of other streams and contexts, and malformed ones, are dropped.
	pub(crate) async fn recv(&self) -> Option<Bytes> {
		loop {
			let mut datagram = self.connection.read_datagram().await.ok()?;
			let Some((quarter, n)) = get_varint(&datagram) else { continue };
			if quarter != self.quarter_stream_id {
				continue;
			}
			datagram.advance(n);
			let Some((context, n)) = get_varint(&datagram) else { continue };
			if context != 0 {
				continue;
			}
			datagram.advance(n);
			return Some(datagram);
		}
	}
}

/// The receiving half of an HTTP/3 request stream (client's or server's).
pub trait StreamRecv: Send + 'static {
	/// The next chunk of the body; `None` at its end or on an error.
	fn next_chunk(&mut self) -> impl Future<Output = Option<Bytes>> + Send;
}

/// The sending half of an HTTP/3 request stream (client's or server's).
pub trait StreamSend: Send + 'static {
	/// Sends a chunk of the body; `false` on an error.
	fn send_chunk(&mut self, data: Bytes) -> impl Future<Output = bool> + Send;
	/// Ends the body.
	fn end(&mut self) -> impl Future<Output = ()> + Send;
}

#[cfg(feature = "agent")]
/// An agent's request stream.
pub type ServerStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

macro_rules! stream_halves {
	($recv:ty, $send:ty) => {
		impl StreamRecv for $recv {
			async fn next_chunk(&mut self) -> Option<Bytes> {
				let mut chunk = self.recv_data().await.ok()??;
				Some(chunk.copy_to_bytes(chunk.remaining()))
			}
		}
		impl StreamSend for $send {
			async fn send_chunk(&mut self, data: Bytes) -> bool {
				self.send_data(data).await.is_ok()
			}
			async fn end(&mut self) {
				let _ = self.finish().await;
			}
		}
	};
}

#[cfg(feature = "agent")]
stream_halves!(
	h3::server::RequestStream<h3_quinn::RecvStream, Bytes>,
	h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>
);
stream_halves!(
	h3::client::RequestStream<h3_quinn::RecvStream, Bytes>,
	h3::client::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>
);

/// A byte stream over a request stream's two halves (the relay reads and writes capsules on
/// it as on an HTTP/2 tunnel's stream); ends when either side does or `stop` fires.
fn byte_stream(mut recv: impl StreamRecv, mut send: impl StreamSend, stop: CancellationToken) -> DuplexStream {
	let (ours, theirs) = tokio::io::duplex(STREAM_BUFFER);
	let (mut from_relay, mut to_relay) = tokio::io::split(ours);
	tokio::spawn(async move {
		loop {
			let chunk = tokio::select! {
				chunk = recv.next_chunk() => chunk,
				_ = stop.cancelled() => None,
			};
			match chunk {
				Some(chunk) if to_relay.write_all(&chunk).await.is_ok() => {},
				_ => break,
			}
		}
		let _ = to_relay.shutdown().await;
	});
	// Everything the relay wrote goes out, up to its end (the relay shuts its side down when
	// it stops): the last control message before a close must not be cut off.
	tokio::spawn(async move {
		let mut buffer = vec![0u8; 64 * 1024];
		loop {
			let read = from_relay.read(&mut buffer).await.unwrap_or(0);
			if read == 0 || !send.send_chunk(Bytes::copy_from_slice(&buffer[..read])).await {
				break;
			}
		}
		let _ = tokio::time::timeout(Duration::from_secs(2), send.end()).await;
	});
	theirs
}

#[cfg(feature = "agent")]
/// Carries an HTTP/3 tunnel (the agent's end: request stream `stream` on `connection`) until
/// it ends or `stop` fires; returns the control channel's end, as `https::relay` does.
pub fn serve_tunnel(
	stream: ServerStream,
	connection: quinn::Connection,
	datagrams: Datagrams,
	stop: CancellationToken,
) -> DuplexStream {
	let quic = QuicDatagrams::new(connection, stream.id().into_inner());
	let (send, recv) = stream.split();
	let bytes = byte_stream(recv, send, stop.clone());
	https::relay_with(bytes, datagrams, Some(quic), stop)
}

/// The client's QUIC configuration: TLS as over HTTP/2 (`tls::client_config_authenticated_inside`)
/// with ALPN `h3`.
fn client_config() -> Result<quinn::ClientConfig, TransportError> {
	let mut tls = interlattice_agent_core::tls::client_config_authenticated_inside()
		.map_err(|e| TransportError::Connect(e.to_string()))?;
	tls.alpn_protocols = vec![ALPN.to_vec()];
	let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
		.map_err(|e| TransportError::Connect(format!("QUIC TLS: {e}")))?;
	let mut config = quinn::ClientConfig::new(Arc::new(crypto));
	config.transport_config(Arc::new(transport_config()));
	Ok(config)
}

/// A QUIC connection to `agent` for `host` (rustls sends no server name for an IP address,
/// as browsers do; a DNS name's otherwise).
async fn connect_quic(agent: SocketAddr, host: &str) -> Result<(quinn::Endpoint, quinn::Connection), TransportError> {
	let connect = |e: &dyn std::fmt::Display| TransportError::Connect(e.to_string());
	let bind: SocketAddr = if agent.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("an address");
	let mut endpoint = quinn::Endpoint::client(bind).map_err(|e| connect(&e))?;
	endpoint.set_default_client_config(client_config()?);
	let connecting = endpoint.connect(agent, host).map_err(|e| connect(&e))?;
	let connection = tokio::time::timeout(Duration::from_secs(10), connecting)
		.await
		.map_err(|_| connect(&"QUIC handshake timed out"))?
		.map_err(|e| connect(&format!("QUIC: {e}")))?;
	Ok((endpoint, connection))
}

/// One ordinary HTTP/3 request to `agent` (what a browser or a censor's probe sends): the
/// answer's status, headers and body.
pub async fn request(
	agent: SocketAddr,
	host: &str,
	method: http::Method,
	path: &str,
) -> Result<(http::StatusCode, http::HeaderMap, Bytes), TransportError> {
	let failed = |e: &dyn std::fmt::Display| TransportError::Other(e.to_string());
	let (endpoint, connection) = connect_quic(agent, host).await?;
	let (mut driver, mut sender) =
		h3::client::new(h3_quinn::Connection::new(connection.clone())).await.map_err(|e| failed(&e))?;
	let driving = tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
	let request = http::Request::builder()
		.method(method)
		.uri(format!("https://{host}:{}{path}", agent.port()))
		.body(())
		.map_err(|e| failed(&e))?;
	let exchange = async {
		let mut stream = sender.send_request(request).await.map_err(|e| failed(&e))?;
		stream.finish().await.map_err(|e| failed(&e))?;
		let response = stream.recv_response().await.map_err(|e| failed(&e))?;
		let mut body = BytesMut::new();
		while let Some(mut chunk) = stream.recv_data().await.map_err(|e| failed(&e))? {
			body.put(chunk.copy_to_bytes(chunk.remaining()));
		}
		Ok((response.status(), response.headers().clone(), body.freeze()))
	};
	let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
		.await
		.unwrap_or_else(|_| Err(failed(&"no answer in time")));
	connection.close(quinn::VarInt::from_u32(0), b"");
	driving.abort();
	endpoint.wait_idle().await;
	answer
}

/// Keeps an HTTP/3 tunnel open while held.
pub struct Http3Guard {
	_endpoint: quinn::Endpoint,
	_connection: quinn::Connection,
	_sender: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
	_stop: tokio_util::sync::DropGuard,
}

/// Opens an HTTP/3 tunnel to the agent at `agent` (its HTTPS port's number, UDP; registered
/// endpoint host `host`): QUIC, HTTP/3, then the extended CONNECT with the capability
/// `authorize` signs for the connection's exporter value.
pub async fn open(
	agent: SocketAddr,
	host: &str,
	authorize: impl FnOnce([u8; 32]) -> Result<String, TransportError>,
) -> Result<https::ClientTunnel<Http3Guard>, TransportError> {
	let connect = |e: &dyn std::fmt::Display| TransportError::Connect(e.to_string());
	let step = Duration::from_secs(10);
	let (endpoint, connection) = connect_quic(agent, host).await?;
	let mut exporter = [0u8; 32];
	connection.export_keying_material(&mut exporter, EXPORTER_LABEL, b"").map_err(|_| connect(&"no TLS exporter"))?;
	let authorization = authorize(exporter)?;
	let mut builder = h3::client::builder();
	builder.enable_extended_connect(true).enable_datagram(true);
	let (mut driver, mut sender) =
		tokio::time::timeout(step, builder.build::<_, _, Bytes>(h3_quinn::Connection::new(connection.clone())))
			.await
			.map_err(|_| connect(&"HTTP/3 did not start in time"))?
			.map_err(|e| connect(&format!("HTTP/3: {e}")))?;
	let stop = CancellationToken::new();
	let driver_stop = stop.clone();
	tokio::spawn(async move {
		tokio::select! {
			e = std::future::poll_fn(|cx| driver.poll_close(cx)) => tracing::debug!(error = %e, "HTTP/3 connection ended"),
			_ = driver_stop.cancelled() => {},
		}
	});
	let mut request = http::Request::builder()
		.method(http::Method::CONNECT)
		.uri(format!("https://{host}:{port}/.well-known/masque/udp/{ip}/{port}/", port = agent.port(), ip = agent.ip()))
		.header(http::header::AUTHORIZATION, authorization)
		.header("capsule-protocol", "?1")
		.body(())
		.map_err(|e| TransportError::Other(e.to_string()))?;
	request.extensions_mut().insert(h3::ext::Protocol::CONNECT_UDP);
	debug_assert_eq!(UPGRADE_PROTOCOL, "connect-udp");
	let mut stream = tokio::time::timeout(step, sender.send_request(request))
		.await
		.map_err(|_| connect(&"the tunnel request was not sent in time"))?
		.map_err(|e| connect(&format!("tunnel request: {e}")))?;
	let response = tokio::time::timeout(Duration::from_secs(30), stream.recv_response())
		.await
		.map_err(|_| connect(&"no answer to the tunnel request in time"))?
		.map_err(|e| connect(&format!("tunnel request: {e}")))?;
	if response.status() != http::StatusCode::OK {
		return Err(TransportError::Refused(response.status().as_u16()));
	}
	let quic = QuicDatagrams::new(connection.clone(), stream.id().into_inner());
	let (send, recv) = stream.split();
	let bytes = byte_stream(recv, send, stop.clone());
	let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(|e| connect(&e))?;
	let datagrams = udp.local_addr().map_err(|e| connect(&e))?;
	let control = https::relay_with(bytes, Datagrams::Socket { udp, peer: None }, Some(quic), stop.clone());
	Ok(https::ClientTunnel {
		control,
		datagrams,
		guard: Http3Guard { _endpoint: endpoint, _connection: connection, _sender: sender, _stop: stop.drop_guard() },
	})
}

#[cfg(feature = "agent")]
/// A request body arriving on an HTTP/3 stream (fed by the task reading it).
struct IncomingBody(tokio::sync::mpsc::Receiver<Bytes>);

#[cfg(feature = "agent")]
impl hyper::body::Body for IncomingBody {
	type Data = Bytes;
	type Error = crate::website::BodyError;

	fn poll_frame(
		mut self: std::pin::Pin<&mut Self>,
		cx: &mut std::task::Context<'_>,
	) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
		self.0.poll_recv(cx).map(|chunk| chunk.map(|data| Ok(hyper::body::Frame::data(data))))
	}
}

#[cfg(feature = "agent")]
/// Answers an ordinary HTTP/3 request (not a tunnel) on `stream`: `respond` gets it with its
/// body streaming in, and its answer streams back.
pub async fn answer<F, Fut>(request: http::Request<()>, stream: ServerStream, respond: F)
where
	F: FnOnce(http::Request<crate::website::Body>) -> Fut,
	Fut: Future<Output = http::Response<crate::website::Body>>,
{
	use http_body_util::BodyExt;

	let (mut send, mut recv) = stream.split();
	let (tx, rx) = tokio::sync::mpsc::channel(4);
	let reading = tokio::spawn(async move {
		while let Some(chunk) = recv.next_chunk().await {
			if tx.send(chunk).await.is_err() {
				break;
			}
		}
	});
	let response = respond(request.map(|()| IncomingBody(rx).boxed())).await;
	let (parts, mut body) = response.into_parts();
	if send.send_response(http::Response::from_parts(parts, ())).await.is_ok() {
		loop {
			match body.frame().await {
				Some(Ok(frame)) => {
					if let Ok(data) = frame.into_data() {
						if !send.send_chunk(data).await {
							break;
						}
					}
				},
				Some(Err(_)) => {
					send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
					break;
				},
				None => {
					send.end().await;
					break;
				},
			}
		}
	}
	reading.abort();
}

#[cfg(all(test, feature = "agent"))]
mod tests {
	use super::*;
	use tokio::net::UdpSocket;

	/// An agent's QUIC endpoint on loopback with a self-signed certificate.
	fn loopback_endpoint() -> quinn::Endpoint {
		let (chain, key) = interlattice_agent_core::tls::self_signed(vec!["localhost".into()]).unwrap();
		let tls = rustls::ServerConfig::builder_with_provider(interlattice_agent_core::tls::provider())
			.with_protocol_versions(&[&rustls::version::TLS13])
			.unwrap()
			.with_no_client_auth()
			.with_single_cert(chain, key)
			.unwrap();
		server_endpoint(tls, "127.0.0.1:0".parse().unwrap()).unwrap()
	}

	/// An HTTP/3 endpoint on loopback that accepts one tunnel request and relays it to
	/// `data_plane`; returns its address and, once the request came, the control channel's end
	/// and the request's authorization header.
	async fn agent(
		data_plane: SocketAddr,
		stop: CancellationToken,
	) -> (SocketAddr, tokio::sync::oneshot::Receiver<(DuplexStream, String)>) {
		let endpoint = loopback_endpoint();
		let addr = endpoint.local_addr().unwrap();
		let (tx, rx) = tokio::sync::oneshot::channel();
		tokio::spawn(async move {
			let connection = endpoint.accept().await.unwrap().await.unwrap();
			let mut builder = h3::server::builder();
			builder.enable_extended_connect(true).enable_datagram(true);
			let mut h3 = builder.build::<_, Bytes>(h3_quinn::Connection::new(connection.clone())).await.unwrap();
			let (request, mut stream) = h3.accept().await.unwrap().unwrap().resolve_request().await.unwrap();
			assert_eq!(request.method(), http::Method::CONNECT);
			assert_eq!(request.extensions().get::<h3::ext::Protocol>(), Some(&h3::ext::Protocol::CONNECT_UDP));
			let authorization = request.headers()[http::header::AUTHORIZATION].to_str().unwrap().to_string();
			stream.send_response(http::Response::builder().body(()).unwrap()).await.unwrap();
			let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
			let datagrams = Datagrams::Socket { udp, peer: Some(data_plane) };
			let control = serve_tunnel(stream, connection, datagrams, stop);
			let _ = tx.send((control, authorization));
			// Keep the HTTP/3 connection (and the endpoint) until the test ends.
			let _ = h3.accept().await;
			drop(endpoint);
		});
		(addr, rx)
	}

	#[tokio::test]
	async fn an_http3_tunnel_carries_control_bytes_and_datagrams_data_messages_as_quic_datagrams() {
		let stop = CancellationToken::new();
		let data_plane = UdpSocket::bind("127.0.0.1:0").await.unwrap();
		let (addr, accepted) = agent(data_plane.local_addr().unwrap(), stop.clone()).await;
		let exporter = std::sync::Arc::new(std::sync::Mutex::new([0u8; 32]));
		let seen = exporter.clone();
		let tunnel = open(addr, "127.0.0.1", move |e| {
			*seen.lock().unwrap() = e;
			Ok("Interlattice capability".into())
		})
		.await
		.unwrap();
		let (mut agent_control, authorization) = accepted.await.unwrap();
		assert_eq!(authorization, "Interlattice capability");
		assert_ne!(*exporter.lock().unwrap(), [0u8; 32], "the capability signs this connection's exporter value");

		// The control channel, both ways.
		let mut client_control = tunnel.control;
		client_control.write_all(b"interlattice-vpn hello").await.unwrap();
		let mut got = [0u8; 22];
		agent_control.read_exact(&mut got).await.unwrap();
		assert_eq!(&got, b"interlattice-vpn hello");
		agent_control.write_all(b"ready").await.unwrap();
		let mut got = [0u8; 5];
		client_control.read_exact(&mut got).await.unwrap();
		assert_eq!(&got, b"ready");

		// A WireGuard handshake (padded, on the stream), data messages of several sizes (QUIC
		// datagrams when they fit, the stream otherwise), both ways.
		let client_plane = UdpSocket::bind("127.0.0.1:0").await.unwrap();
		let connection = tunnel.guard._connection.clone();
		let datagrams_before = connection.stats().frame_tx.datagram;
		let mut buf = vec![0u8; 4096];
		let handshake = [&[1u8, 0, 0, 0][..], &[7u8; 144][..]].concat();
		let mut messages = vec![handshake];
		for len in [32usize, 200, 1000, 3000] {
			messages.push([&[4u8, 0, 0, 0][..], &vec![9u8; len - 4]].concat());
		}
		let mut agent_side = None;
		for message in &messages {
			client_plane.send_to(message, tunnel.datagrams).await.unwrap();
			let (n, from) = tokio::time::timeout(Duration::from_secs(5), data_plane.recv_from(&mut buf))
				.await
				.expect("the message crosses the tunnel")
				.unwrap();
			assert_eq!(&buf[..n], &message[..]);
			agent_side = Some(from);
			data_plane.send_to(message, from).await.unwrap();
			let (n, _) = tokio::time::timeout(Duration::from_secs(5), client_plane.recv_from(&mut buf))
				.await
				.expect("the answer crosses the tunnel")
				.unwrap();
			assert_eq!(&buf[..n], &message[..]);
		}
		let sent_as_datagrams = connection.stats().frame_tx.datagram - datagrams_before;
		assert!(sent_as_datagrams >= 3, "the small data messages went as QUIC datagrams: {sent_as_datagrams}");

		// Datagrams for another request stream, or another context, are not the tunnel's.
		let mut foreign = BytesMut::new();
		put_varint(&mut foreign, 1); // quarter stream id 1: stream 4, not this tunnel's 0
		foreign.put_u8(0);
		foreign.put_slice(b"not yours");
		connection.send_datagram(foreign.freeze()).unwrap();
		let mut other_context = BytesMut::new();
		put_varint(&mut other_context, 0);
		put_varint(&mut other_context, 2);
		other_context.put_slice(b"other context");
		connection.send_datagram(other_context.freeze()).unwrap();
		client_plane.send_to(b"\x04\0\0\0after", tunnel.datagrams).await.unwrap();
		let (n, _) = data_plane.recv_from(&mut buf).await.unwrap();
		assert_eq!(&buf[..n], b"\x04\0\0\0after");
		assert!(agent_side.is_some());

		// Dropping the client's end closes the agent's control channel.
		drop(client_control);
		drop(tunnel.guard);
		let mut rest = Vec::new();
		tokio::time::timeout(Duration::from_secs(5), agent_control.read_to_end(&mut rest)).await.unwrap().unwrap();
		stop.cancel();
	}

	#[tokio::test]
	async fn a_tunnel_request_the_agent_refuses_is_an_error() {
		let endpoint = loopback_endpoint();
		let addr = endpoint.local_addr().unwrap();
		tokio::spawn(async move {
			let connection = endpoint.accept().await.unwrap().await.unwrap();
			let mut h3 = h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(connection)).await.unwrap();
			let (_, mut stream) = h3.accept().await.unwrap().unwrap().resolve_request().await.unwrap();
			let response = http::Response::builder().status(405).body(()).unwrap();
			stream.send_response(response).await.unwrap();
			stream.finish().await.unwrap();
			let _ = h3.accept().await;
		});
		match open(addr, "127.0.0.1", |_| Ok("Interlattice x".into())).await {
			Err(TransportError::Refused(405)) => {},
			Err(e) => panic!("expected a refusal, got {e}"),
			Ok(_) => panic!("expected a refusal, got a tunnel"),
		}
	}
}
