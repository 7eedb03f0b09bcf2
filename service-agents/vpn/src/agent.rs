//! The dVPN provider agent: the control channel (the post-quantum handshake, then the sealed
//! payment loop) and the WireGuard data plane, on the agent core's sessions, receipt
//! pipeline, settlement, limits, metrics and lifecycle.

use std::{
	collections::HashMap,
	net::{Ipv4Addr, SocketAddr},
	path::PathBuf,
	sync::{Arc, Mutex},
	time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, header, Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use interlattice_agent_core::{
	chain::ChainClient,
	identity::Identity,
	lifecycle::Lifecycle,
	limits::{accept_loop, Admission, ConnectionLimits},
	receipts::ReceiptDesk,
	sessions::{SessionBook, SessionEntry, SessionRefusal},
	start::{self, Payments, StartError},
	upkeep::Upkeep,
	Hold, Settler,
};
use interlattice_pq_crypto::keys::MlDsaKeyPair;
use interlattice_runtime::AccountId;
use pallet_provider_registry::ServiceKind;
use tokio::{
	io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
	net::{TcpListener, TcpStream},
	sync::{Notify, OwnedSemaphorePermit, Semaphore},
};
use tracing::Instrument;

use crate::{
	config::{AgentConfig, Pool},
	control::{
		io::{read_message, spawn_sealed_reader, write_message, write_sealed, ChannelError},
		AgentMessage, ClientMessage, ErrorCode, TunnelParams, UsageReport, PREAMBLE,
	},
	dataplane::{Engine, Peer, PeerConfig, Role},
	handshake::{AgentHandshake, HandshakeError, Rekey, RekeyRequest, RekeyResponse},
	http3,
	https::{self as transport, EXPORTER_LABEL, UPGRADE_PROTOCOL},
	sealed::Sealer,
	tun::{EgressPolicy, Tun},
	website,
};

/// The control channel's reading half, whatever carries it (plain TCP or an HTTPS tunnel).
type ControlReader = Box<dyn AsyncRead + Unpin + Send>;
/// Its writing half.
type ControlWriter = Box<dyn AsyncWrite + Unpin + Send>;

/// The HTTPS side of the control port (`[https]`).
struct HttpsEndpoint {
	acceptor: tokio_rustls::TlsAcceptor,
	/// The TLS configuration HTTP/3 uses (`[https] http3`).
	http3: Option<rustls::ServerConfig>,
	site: Option<PathBuf>,
	upstream: Option<website::Upstream>,
	plain_control: bool,
}

/// How long after a rekey the agent starts the WireGuard handshake itself, if the client has
/// not.
const REKEY_HANDSHAKE_DELAY: Duration = Duration::from_secs(1);

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

interlattice_agent_core::service_metrics! {
	/// The dVPN's metrics: the core's and its own.
	struct VpnMetrics {
		/// Tunnels up now.
		tunnels: IntGauge = "tunnels",
		/// Handshakes completed.
		sessions_accepted: IntCounter = "sessions_accepted_total",
		/// Connections refused (bad session, handshake, protocol, busy).
		sessions_refused: IntCounter = "sessions_refused_total",
		/// Inner bytes sent to clients.
		bytes_to_clients: IntCounter = "bytes_to_clients_total",
		/// Inner bytes forwarded from clients.
		bytes_from_clients: IntCounter = "bytes_from_clients_total",
		/// Bytes served by tunnels since closed.
		bytes_closed_tunnels: IntCounter = "bytes_closed_tunnels_total",
		/// Packets held back because the session's credit ran out.
		packets_dropped_unpaid: IntCounter = "packets_dropped_unpaid_total",
		/// Tunnel keys renewed (post-quantum rekeys completed).
		rekeys: IntCounter = "rekeys_total",
	}
}

/// A tunnel's WireGuard pre-shared key over its life: its generation and age, and the rekey
/// under way (`docs/vpn-handshake.md`, "Rekeying").
struct TunnelKeys {
	current: zeroize::Zeroizing<[u8; 32]>,
	generation: u64,
	since: std::time::Instant,
	pending: Option<Rekey>,
}

impl TunnelKeys {
	fn new(current: zeroize::Zeroizing<[u8; 32]>) -> Self {
		TunnelKeys { current, generation: 0, since: std::time::Instant::now(), pending: None }
	}

	fn age(&self) -> Duration {
		self.since.elapsed()
	}

	/// A rekey request when the key is `interval` old and none is under way.
	fn due(&mut self, interval: Duration) -> Option<Result<RekeyRequest, HandshakeError>> {
		if self.pending.is_some() || self.age() < interval {
			return None;
		}
		Some(Rekey::start(self.generation + 1).map(|(rekey, request)| {
			self.pending = Some(rekey);
			request
		}))
	}

	/// The next key from the client's answer to the rekey under way (`None`: no rekey under
	/// way, or an answer to another).
	fn answered(&mut self, response: &RekeyResponse) -> Option<zeroize::Zeroizing<[u8; 32]>> {
		let rekey = self.pending.take()?;
		rekey.finish(response, &self.current).ok()
	}

	/// Makes `next` the current key; its generation.
	fn install(&mut self, next: zeroize::Zeroizing<[u8; 32]>) -> u64 {
		self.current = next;
		self.generation += 1;
		self.since = std::time::Instant::now();
		self.generation
	}
}

/// A tunnel that is up.
struct Tunnel {
	peer: Arc<Peer>,
	replaced: Arc<Notify>,
	lease: Arc<Lease>,
}

/// What a session's tunnel holds while it is up: one of the agent's `max_sessions` places and
/// an address from the pool, given back when the last connection holding it ends. A client
/// reconnecting while its old tunnel is still up shares the old tunnel's lease and, its
/// handshake done, replaces that tunnel.
struct Lease {
	address: Ipv4Addr,
	free_addresses: Arc<Mutex<Vec<Ipv4Addr>>>,
	_slot: OwnedSemaphorePermit,
}

impl Drop for Lease {
	fn drop(&mut self) {
		lock(&self.free_addresses).push(self.address);
	}
}

/// Why a control connection ends without a tunnel, or why a tunnel ends.
struct Refusal {
	code: ErrorCode,
	message: String,
	/// Already told to the client in a sealed frame (after the handshake, a plaintext error
	/// would be refused by the client as unauthenticated).
	sent: bool,
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
	Refusal { code, message: message.into(), sent: false }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
	m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running agent.
pub struct Agent {
	config: AgentConfig,
	pool: Pool,
	chain: ChainClient,
	provider: AccountId,
	service_key: MlDsaKeyPair,
	engine: Engine,
	free_addresses: Arc<Mutex<Vec<Ipv4Addr>>>,
	tunnels: Mutex<HashMap<u64, Tunnel>>,
	sessions: Arc<SessionBook>,
	receipts: Arc<ReceiptDesk>,
	settler: Settler,
	metrics: VpnMetrics,
	slots: Arc<Semaphore>,
	life: Lifecycle,
	https: Option<HttpsEndpoint>,
	_egress: EgressPolicy,
}

fn https_endpoint(
	config: &AgentConfig,
	service_key: Option<&MlDsaKeyPair>,
) -> Result<Option<HttpsEndpoint>, StartError> {
	use interlattice_agent_core::{provider_tls, tls};
	let section = &config.service.https;
	let (true, Some(service_key)) = (section.enabled, service_key) else {
		return Ok(None);
	};
	// The endpoint's host (an IP address or a name).
	let host = match config.provider.endpoint.as_deref().map(provider_tls::endpoint_host) {
		Some(host) if !host.is_empty() => host,
		_ => config.service.control.listen.ip().to_string(),
	};
	let https_error = |e: tls::TlsError| StartError::Config(format!("https: {e}"));
	// Browsers, probes and our dVPN clients get the ordinary certificate (configured, or
	// self-signed for the host); dCDN clients, which offer only ML-DSA, the service key's, so
	// the provider's dCDN can be served here too (`upstream`).
	let ordinary = match (&section.certificate, &section.private_key) {
		(Some(certificate), Some(key)) => tls::load_certificate(certificate, key),
		_ => tls::self_signed(vec![host.clone()]),
	}
	.map_err(https_error)?;
	let key = Arc::new(MlDsaKeyPair::from_seed(*service_key.seed()));
	let tls = provider_tls::server_config(key, &host, ordinary).map_err(https_error)?;
	let upstream = section.upstream.as_deref().map(website::Upstream::new).transpose().map_err(StartError::Config)?;
	Ok(Some(HttpsEndpoint {
		http3: section.http3.then(|| tls.clone()),
		acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
		site: section.site.clone(),
		upstream,
		plain_control: section.plain_control,
	}))
}

impl Agent {
	/// Connects to the chain, checks the registration, opens the receipt store, creates the
	/// tunnel interface with its egress policy and starts the data plane.
	pub async fn start(config: AgentConfig, life: Lifecycle) -> Result<Arc<Self>, StartError> {
		let identity = Identity::load(&config.provider, true).map_err(StartError::Config)?;
		let https = https_endpoint(&config, identity.service_key.as_ref())?;
		let pool = config.service.pool().map_err(StartError::Config)?;
		let (chain, _) = start::connect_registered(ServiceKind::Vpn, &config, &identity).await?;
		let Identity { account, provider, service_key } = identity;
		let service_key = service_key.expect("loaded with needs_service_key; qed");
		let tun = Tun::create(&config.service.tunnel.interface).map_err(StartError::service)?;
		tun.configure(None, pool.gateway(), pool.prefix, config.service.tunnel.mtu).map_err(StartError::service)?;
		let egress = EgressPolicy::install(
			&config.service.tunnel.interface,
			&pool.to_string(),
			pool.gateway(),
			config.service.tunnel.masquerade,
			&config.service.tunnel.egress_allow,
		)
		.map_err(StartError::service)?;
		let udp_addr = config.service.wireguard_listen();
		let udp = std::net::UdpSocket::bind(udp_addr).map_err(|source| StartError::Bind { addr: udp_addr, source })?;
		let mut secret = [0u8; 32];
		getrandom::fill(&mut secret).map_err(|e| StartError::Config(format!("no randomness: {e}")))?;
		let engine = Engine::start(
			tun,
			udp,
			boringtun::x25519::StaticSecret::from(secret),
			Role::Agent { network: pool.network, prefix: pool.prefix },
		)
		.map_err(|e| StartError::Config(format!("cannot start the data plane: {e}")))?;
		tracing::info!(interface = %config.service.tunnel.interface, %pool, wireguard = %udp_addr, nat = config.service.tunnel.masquerade, "tunnel interface up");

		let metrics = VpnMetrics::new("interlattice_vpn");
		let Payments { sessions, receipts, settler } =
			start::payments(ServiceKind::Vpn, &config, &chain, provider.clone(), account, &metrics.core, &life)?;
		let mut free: Vec<Ipv4Addr> = pool.clients().collect();
		free.reverse();
		Ok(Arc::new(Agent {
			slots: Arc::new(Semaphore::new(config.service.tunnel.max_sessions)),
			config,
			pool,
			chain,
			provider,
			service_key,
			engine,
			free_addresses: Arc::new(Mutex::new(free)),
			tunnels: Mutex::new(HashMap::new()),
			sessions,
			receipts,
			settler,
			metrics,
			life,
			https,
			_egress: egress,
		}))
	}

	/// The provider this agent serves.
	pub fn provider(&self) -> &AccountId {
		&self.provider
	}

	/// Serves control connections until the agent stops; then ends every tunnel, settles once
	/// more and removes the interface and egress policy (when the agent is dropped).
	pub async fn serve(self: Arc<Self>, listener: TcpListener) -> Result<(), StartError> {
		tracing::info!(control = %self.config.service.control.listen, endpoint = ?self.config.provider.endpoint, https = self.https.is_some(), "vpn-agent serving");
		let upkeep =
			Upkeep::for_agent(&self.config, &self.life, &self.sessions, &self.settler, &self.metrics.core, || {});
		let limits =
			ConnectionLimits::new(self.config.limits.max_connections, self.config.limits.max_connections_per_ip);
		if let Some(tls) = self.https.as_ref().and_then(|h| h.http3.clone()) {
			let addr = listener
				.local_addr()
				.map_err(|source| StartError::Bind { addr: self.config.service.control.listen, source })?;
			// On WireGuard's socket when it has the control port's number (the default), told
			// apart by the first byte; on a socket of its own otherwise.
			let shared = self.engine.port().is_ok_and(|p| p == addr.port());
			let endpoint = if shared {
				match self.engine.quic_socket() {
					Ok(Some(socket)) => http3::shared_server_endpoint(tls, socket),
					Ok(None) => Err("the WireGuard socket already serves HTTP/3".into()),
					Err(e) => Err(format!("the WireGuard socket: {e}")),
				}
			} else {
				http3::server_endpoint(tls, addr)
			}
			.map_err(StartError::Config)?;
			tracing::info!(%addr, shared_with_wireguard = shared, "HTTP/3 on UDP");
			self.life.tracker.spawn(self.clone().serve_http3(endpoint));
		}
		let me = self.clone();
		accept_loop(listener, limits, self.life.clone(), self.metrics.core.clone(), move |stream, from, admission| {
			me.clone().connection(stream, from, admission).instrument(tracing::info_span!("control", %from))
		})
		.await;
		tracing::info!("shutting down: ending tunnels");
		self.life.tracker.close();
		if tokio::time::timeout(Duration::from_secs(10), self.life.tracker.wait()).await.is_err() {
			tracing::warn!("some tunnels did not end within 10 s");
		}
		upkeep.finish().await;
		tracing::info!("stopped");
		Ok(())
	}

	/// One connection to the control port: TLS (the HTTPS endpoint) or the plain control
	/// channel, told apart by the first byte.
	async fn connection(self: Arc<Self>, stream: TcpStream, from: SocketAddr, _admission: Admission) {
		if let Some(https) = &self.https {
			let step = Duration::from_secs(self.config.limits.handshake_timeout_secs);
			let mut first = [0u8; 1];
			match tokio::time::timeout(step, stream.peek(&mut first)).await {
				Ok(Ok(1)) if first[0] == TLS_HANDSHAKE || !https.plain_control => {
					return self.clone().https_connection(stream, from).await;
				},
				Ok(Ok(1)) => {},
				// Closed, failed, or silent (as a web server, it waits for a client hello).
				_ => return,
			}
		}
		let (reader, writer) = stream.into_split();
		self.control_connection(Box::new(reader), Box::new(writer), from).await;
	}

	/// A TLS connection to the HTTPS endpoint: HTTP/1.1 or HTTP/2; tunnel requests with a
	/// valid capability get a tunnel, everything else the website.
	async fn https_connection(self: Arc<Self>, stream: TcpStream, from: SocketAddr) {
		let Some(https) = &self.https else { return };
		let step = Duration::from_secs(self.config.limits.handshake_timeout_secs);
		let tls = match tokio::time::timeout(step, https.acceptor.accept(stream)).await {
			Ok(Ok(tls)) => tls,
			Ok(Err(e)) => {
				tracing::debug!(%from, error = %e, "TLS handshake failed");
				return;
			},
			Err(_) => return,
		};
		let mut exporter = [0u8; 32];
		if let Err(e) = tls.get_ref().1.export_keying_material(&mut exporter, EXPORTER_LABEL, None) {
			tracing::warn!(%from, error = %e, "no TLS exporter");
			return;
		}
		let me = self.clone();
		let service = hyper::service::service_fn(move |request| {
			let me = me.clone();
			async move { Ok::<_, std::convert::Infallible>(me.https_request(request, exporter, from).await) }
		});
		let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
		builder.http2().enable_connect_protocol();
		let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
		tokio::pin!(connection);
		tokio::select! {
			result = connection.as_mut() => {
				if let Err(e) = result {
					tracing::debug!(%from, error = %e, "HTTPS connection ended");
				}
			},
			_ = self.life.token.cancelled() => {
				connection.as_mut().graceful_shutdown();
				let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
			},
		}
	}

	/// One HTTPS request: a tunnel (extended CONNECT `connect-udp` with a capability for a
	/// session of ours, bound to this TLS connection) or the website.
	async fn https_request(
		self: Arc<Self>,
		mut request: Request<Incoming>,
		exporter: [u8; 32],
		from: SocketAddr,
	) -> Response<website::Body> {
		let tunnel_request = request.method() == Method::CONNECT
			&& request.extensions().get::<hyper::ext::Protocol>().is_some_and(|p| p.as_str() == UPGRADE_PROTOCOL);
		if tunnel_request {
			if let Some(session_id) = self.check_capability(request.headers(), exporter).await {
				let upgrade = hyper::upgrade::on(&mut request);
				let me = self.clone();
				self.life.tracker.spawn(
					async move {
						match upgrade.await {
							Ok(upgraded) => me.https_tunnel(upgraded, from).await,
							Err(e) => tracing::debug!(error = %e, "tunnel upgrade failed"),
						}
					}
					.instrument(tracing::info_span!("https-tunnel", %from, session = session_id)),
				);
				let mut response = Response::new(Full::new(Bytes::new()));
				response.headers_mut().insert("capsule-protocol", header::HeaderValue::from_static("?1"));
				return website::boxed(response);
			}
		}
		let mut response = self.website(request, from).await;
		if self.https.as_ref().is_some_and(|h| h.http3.is_some()) {
			// As a web server with HTTP/3 says so (RFC 7838), to browsers and probes alike.
			let port = self.config.service.control.listen.port();
			if let Ok(value) = header::HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")) {
				response.headers_mut().insert(header::ALT_SVC, value);
			}
		}
		response
	}

	/// Serves HTTP/3 on `endpoint` until the agent stops: the same site and tunnels as over
	/// HTTP/2, within the same connection limits.
	async fn serve_http3(self: Arc<Self>, endpoint: quinn::Endpoint) {
		let limits =
			ConnectionLimits::new(self.config.limits.max_connections, self.config.limits.max_connections_per_ip);
		loop {
			let incoming = tokio::select! {
				incoming = endpoint.accept() => match incoming {
					Some(incoming) => incoming,
					None => break,
				},
				_ = self.life.token.cancelled() => break,
			};
			let from = incoming.remote_address();
			let Some(admission) = limits.admit(from.ip()) else {
				incoming.refuse();
				continue;
			};
			let me = self.clone();
			self.life.tracker.spawn(
				async move {
					let _admission = admission;
					me.http3_connection(incoming, from).await
				}
				.instrument(tracing::info_span!("http3", %from)),
			);
		}
		endpoint.close(quinn::VarInt::from_u32(0), b"");
	}

	/// One QUIC connection: HTTP/3 requests until it closes.
	async fn http3_connection(self: Arc<Self>, incoming: quinn::Incoming, from: SocketAddr) {
		let step = Duration::from_secs(self.config.limits.handshake_timeout_secs);
		let connection = match tokio::time::timeout(step, incoming).await {
			Ok(Ok(connection)) => connection,
			Ok(Err(e)) => {
				tracing::debug!(error = %e, "QUIC handshake failed");
				return;
			},
			Err(_) => return,
		};
		let mut exporter = [0u8; 32];
		if connection.export_keying_material(&mut exporter, EXPORTER_LABEL, b"").is_err() {
			return;
		}
		let mut builder = h3::server::builder();
		builder.enable_extended_connect(true).enable_datagram(true);
		let built = builder.build::<_, Bytes>(h3_quinn::Connection::new(connection.clone()));
		let mut h3 = match tokio::time::timeout(step, built).await {
			Ok(Ok(h3)) => h3,
			_ => return,
		};
		loop {
			let resolver = tokio::select! {
				accepted = h3.accept() => match accepted {
					Ok(Some(resolver)) => resolver,
					Ok(None) => break,
					Err(e) => {
						tracing::debug!(error = %e, "HTTP/3 connection ended");
						break;
					},
				},
				_ = self.life.token.cancelled() => break,
			};
			let (me, connection) = (self.clone(), connection.clone());
			self.life.tracker.spawn(
				async move {
					if let Ok(Ok((request, stream))) = tokio::time::timeout(step, resolver.resolve_request()).await {
						me.http3_request(request, stream, connection, exporter, from).await;
					}
				}
				.in_current_span(),
			);
		}
	}

	/// One HTTP/3 request: a tunnel (extended CONNECT `connect-udp` with a capability bound to
	/// this QUIC connection) or the website, as over HTTP/2.
	async fn http3_request(
		self: Arc<Self>,
		request: Request<()>,
		mut stream: http3::ServerStream,
		connection: quinn::Connection,
		exporter: [u8; 32],
		from: SocketAddr,
	) {
		let tunnel_request = request.method() == Method::CONNECT
			&& request.extensions().get::<h3::ext::Protocol>() == Some(&h3::ext::Protocol::CONNECT_UDP);
		if tunnel_request {
			if let Some(session_id) = self.check_capability(request.headers(), exporter).await {
				let response = Response::builder().header("capsule-protocol", "?1").body(()).expect("a valid response");
				if stream.send_response(response).await.is_err() {
					return;
				}
				let datagrams = transport::Datagrams::Local(self.engine.local_port());
				let control = http3::serve_tunnel(stream, connection, datagrams, self.life.token.child_token());
				let (reader, writer) = tokio::io::split(control);
				self.control_connection(Box::new(reader), Box::new(writer), from)
					.instrument(tracing::info_span!("http3-tunnel", session = session_id))
					.await;
				return;
			}
		}
		http3::answer(request, stream, |request| self.website(request, from)).await;
	}

	/// What the endpoint answers everyone without a tunnel: the upstream's answer, or the
	/// site's page.
	async fn website<B>(&self, request: Request<B>, from: SocketAddr) -> Response<website::Body>
	where
		B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
		B::Error: Into<website::BodyError>,
	{
		let https = self.https.as_ref();
		match https.and_then(|h| h.upstream.as_ref()) {
			// CONNECT is not relayed (an origin answers it as any method it does not serve).
			Some(upstream) if request.method() != Method::CONNECT => upstream.relay(request, from.ip()).await,
			_ => {
				let site = https.and_then(|h| h.site.as_deref());
				website::boxed(website::answer(request.method(), request.uri().path(), site).await)
			},
		}
	}

	/// The session whose key signed the capability in `headers` for this TLS connection, if it
	/// is one of this provider's VPN sessions.
	async fn check_capability(&self, headers: &header::HeaderMap, exporter: [u8; 32]) -> Option<u64> {
		let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
		let (session_id, signature) = transport::parse_authorization(value)?;
		let entry = self.sessions.get(session_id).await.ok()?;
		let key = entry.ledger().terms().client_key.clone();
		let genesis = self.chain.genesis_hash().0;
		let provider: [u8; 32] = *self.provider.as_ref();
		let valid = tokio::task::spawn_blocking(move || {
			transport::verify_capability(&key, genesis, provider, session_id, exporter, &signature)
		})
		.await
		.ok()?;
		valid.then_some(session_id)
	}

	/// A tunnel inside an HTTPS stream: the control channel over its control capsules, the
	/// WireGuard datagrams to and from the data plane in-process (`dataplane::LocalPort`).
	async fn https_tunnel(self: Arc<Self>, upgraded: hyper::upgrade::Upgraded, from: SocketAddr) {
		// The datagrams go straight into the data plane (no loopback socket); the relay ends
		// when the control channel's end is dropped, after sending what it wrote last (a
		// refusal, `Closed`), or when the agent stops.
		let datagrams = transport::Datagrams::Local(self.engine.local_port());
		let control = transport::relay(TokioIo::new(upgraded), datagrams, self.life.token.child_token());
		let (reader, writer) = tokio::io::split(control);
		self.control_connection(Box::new(reader), Box::new(writer), from).await;
	}

	/// One control channel, from the preamble to the end of its tunnel.
	async fn control_connection(self: Arc<Self>, reader: ControlReader, mut writer: ControlWriter, from: SocketAddr) {
		let result = self.clone().tunnel(reader, &mut writer, from).await;
		if let Err(Refusal { code, message, sent }) = result {
			if !matches!(code, ErrorCode::ShuttingDown | ErrorCode::Replaced) {
				tracing::info!(%from, ?code, %message, "control connection refused or ended");
			}
			if !sent {
				self.metrics.sessions_refused.inc();
				let _ = tokio::time::timeout(
					Duration::from_secs(2),
					write_message(&mut writer, &AgentMessage::Error { code, message }),
				)
				.await;
			}
		}
		let _ = writer.shutdown().await;
	}

	fn params(&self) -> TunnelParams {
		TunnelParams {
			wireguard_port: self.config.service.wireguard_listen().port(),
			gateway: self.pool.gateway().octets(),
			mtu: self.config.service.tunnel.mtu,
			receipt_interval_bytes: self.config.service.tunnel.receipt_interval_bytes,
			receipt_interval_secs: self.config.service.tunnel.receipt_interval_secs,
			credit_limit_bytes: self.config.payment.credit_limit_bytes,
		}
	}

	/// The handshake (nothing is allocated before the client proved the session's key), then
	/// the tunnel.
	async fn tunnel(
		self: Arc<Self>,
		mut reader: ControlReader,
		writer: &mut ControlWriter,
		from: SocketAddr,
	) -> Result<(), Refusal> {
		let step = Duration::from_secs(self.config.limits.handshake_timeout_secs);
		let mut preamble = [0u8; PREAMBLE.len()];
		match tokio::time::timeout(step, reader.read_exact(&mut preamble)).await {
			Ok(Ok(_)) if &preamble == PREAMBLE => {},
			Ok(Ok(_)) => return Err(refusal(ErrorCode::Protocol, "not an interlattice-vpn client (wrong preamble)")),
			Ok(Err(e)) => return Err(refusal(ErrorCode::Protocol, format!("connection: {e}"))),
			Err(_) => return Err(refusal(ErrorCode::Protocol, "no preamble in time")),
		}
		let hello = match tokio::time::timeout(step, read_message::<ClientMessage, _>(&mut reader)).await {
			Ok(Ok(ClientMessage::Hello(h))) => h,
			Ok(Ok(_)) => return Err(refusal(ErrorCode::Protocol, "expected the client hello")),
			Ok(Err(e)) => return Err(refusal(ErrorCode::Protocol, e.to_string())),
			Err(_) => return Err(refusal(ErrorCode::Protocol, "no client hello in time")),
		};
		let session_id = hello.session_id;
		let entry = self.sessions.get(session_id).await.map_err(|e| match e {
			SessionRefusal::Unknown(m) => refusal(ErrorCode::UnknownSession, m),
			SessionRefusal::Ended(_) => {
				refusal(ErrorCode::SessionEnded, format!("session {session_id} is closed or expired"))
			},
			SessionRefusal::ChainUnavailable(m) => refusal(ErrorCode::ChainUnavailable, m),
		})?;
		let now = self.sessions.now();
		if matches!(entry.ledger().allowance(now), Err(Hold::DepositExhausted)) {
			return Err(refusal(
				ErrorCode::DepositExhausted,
				format!("session {session_id}'s deposit is used up: top it up"),
			));
		}
		let client_key = entry.ledger().terms().client_key.clone();
		let genesis = self.chain.genesis_hash().0;
		let (state, answer) =
			AgentHandshake::respond(&hello, genesis, &self.service_key, self.engine.public_key(), self.params())
				.map_err(|e| refusal(ErrorCode::Handshake, e.to_string()))?;
		write_message(writer, &AgentMessage::Hello(Box::new(answer)))
			.await
			.map_err(|e| refusal(ErrorCode::Protocol, e.to_string()))?;
		let finish = match tokio::time::timeout(step, read_message::<ClientMessage, _>(&mut reader)).await {
			Ok(Ok(ClientMessage::Finish(f))) => f,
			Ok(Ok(_)) => return Err(refusal(ErrorCode::Protocol, "expected the client finish")),
			Ok(Err(e)) => return Err(refusal(ErrorCode::Protocol, e.to_string())),
			Err(_) => return Err(refusal(ErrorCode::Protocol, "no client finish in time")),
		};
		let client_key_check = client_key.clone();
		let established = tokio::task::spawn_blocking(move || state.complete(&finish, &client_key_check))
			.await
			.map_err(|e| refusal(ErrorCode::Handshake, e.to_string()))?
			.map_err(|e| refusal(ErrorCode::Handshake, e.to_string()))?;
		// The client proved the session's key: look at the session on-chain once more (it may
		// have been closed since the agent last looked), then a place and an address.
		let (mut sealer, opener) = crate::sealed::agent_end(&established.control);
		let current = match self.sessions.refresh(&entry).await {
			Ok(()) if entry.ledger().service_ended() => Err(SessionRefusal::Ended(session_id)),
			Err(SessionRefusal::ChainUnavailable(m)) => {
				tracing::warn!(session = session_id, error = %m, "cannot look at the session on-chain; serving on what is known");
				Ok(())
			},
			other => other,
		};
		if let Err(e) = current {
			let (code, message) = match e {
				SessionRefusal::Unknown(m) => (ErrorCode::UnknownSession, m),
				_ => (ErrorCode::SessionEnded, format!("session {session_id} is closed or expired")),
			};
			let _ = write_sealed(writer, &mut sealer, &AgentMessage::Error { code, message: message.clone() }).await;
			self.metrics.sessions_refused.inc();
			return Err(Refusal { code, message, sent: true });
		}
		let lease = match self.lease(session_id) {
			Ok(lease) => lease,
			Err((code, message)) => {
				let _ =
					write_sealed(writer, &mut sealer, &AgentMessage::Error { code, message: message.clone() }).await;
				self.metrics.sessions_refused.inc();
				return Err(Refusal { code, message, sent: true });
			},
		};
		let address = lease.address;
		let peer = {
			let ledger = entry.ledger();
			self.engine.add_peer(PeerConfig {
				public_key: hello.wireguard_public_key,
				preshared_key: *established.preshared_key,
				address,
				endpoint: None,
				keepalive: None,
				served_bytes: ledger.served_bytes(),
				limit: ledger.limit(now),
			})
		};
		let replaced = Arc::new(Notify::new());
		if let Some(old) =
			lock(&self.tunnels).insert(session_id, Tunnel { peer: peer.clone(), replaced: replaced.clone(), lease })
		{
			old.replaced.notify_one();
			self.engine.remove_peer(&old.peer);
		}
		entry.ledger().connect(now);
		self.metrics.sessions_accepted.inc();
		self.metrics.tunnels.set(lock(&self.tunnels).len() as i64);
		tracing::info!(session = session_id, %from, %address, "tunnel up");

		let ready = AgentMessage::Ready { address: address.octets(), prefix: self.pool.prefix };
		let result = match write_sealed(writer, &mut sealer, &ready).await {
			Ok(()) => {
				let keys = TunnelKeys::new(established.preshared_key.clone());
				self.payment_loop(reader, writer, &mut sealer, opener, &peer, &replaced, &entry, keys).await
			},
			Err(e) => Err((ErrorCode::Protocol, e.to_string())),
		};

		self.engine.remove_peer(&peer);
		entry.ledger().observe_served(peer.meter.served());
		entry.ledger().disconnect(self.sessions.now());
		{
			let mut tunnels = lock(&self.tunnels);
			if tunnels.get(&session_id).is_some_and(|t| Arc::ptr_eq(&t.peer, &peer)) {
				tunnels.remove(&session_id);
			}
			self.metrics.tunnels.set(tunnels.len() as i64);
		}
		let served = peer.meter.to_peer.load(std::sync::atomic::Ordering::Relaxed)
			+ peer.meter.from_peer.load(std::sync::atomic::Ordering::Relaxed);
		self.metrics.bytes_closed_tunnels.inc_by(served);
		tracing::info!(
			session = session_id,
			served = peer.meter.served(),
			paid = entry.ledger().latest().bytes,
			"tunnel down"
		);
		match result {
			Ok(()) => Ok(()),
			Err((code, message)) => {
				// After the handshake, errors go out sealed.
				let error = AgentMessage::Error { code, message: message.clone() };
				let _ = tokio::time::timeout(Duration::from_secs(2), write_sealed(writer, &mut sealer, &error)).await;
				Err(Refusal { code, message, sent: true })
			},
		}
	}

	/// A place and an address for `session_id`: its running tunnel's (a reconnect), or new.
	fn lease(&self, session_id: u64) -> Result<Arc<Lease>, (ErrorCode, String)> {
		if let Some(lease) = lock(&self.tunnels).get(&session_id).map(|t| t.lease.clone()) {
			return Ok(lease);
		}
		let Ok(slot) = self.slots.clone().try_acquire_owned() else {
			return Err((ErrorCode::Busy, "the agent is at its session limit; try later or another provider".into()));
		};
		let Some(address) = lock(&self.free_addresses).pop() else {
			return Err((ErrorCode::Busy, "no tunnel address left".into()));
		};
		Ok(Arc::new(Lease { address, free_addresses: self.free_addresses.clone(), _slot: slot }))
	}

	#[allow(clippy::too_many_arguments)]
	async fn payment_loop(
		self: &Arc<Self>,
		reader: ControlReader,
		writer: &mut ControlWriter,
		sealer: &mut Sealer,
		opener: crate::sealed::Opener,
		peer: &Arc<Peer>,
		replaced: &Notify,
		entry: &Arc<SessionEntry>,
		mut keys: TunnelKeys,
	) -> Result<(), (ErrorCode, String)> {
		let session_id = entry.id;
		let interval = u64::from(self.config.service.tunnel.receipt_interval_secs);
		let idle = Duration::from_secs(self.config.limits.idle_timeout_secs);
		let (mut messages, read_task) = spawn_sealed_reader::<ClientMessage, _>(reader, opener);
		let mut ticker = tokio::time::interval(Duration::from_secs(1));
		let mut heard = tokio::time::Instant::now();
		let (mut to_client, mut from_client, mut dropped) = (0u64, 0u64, 0u64);
		// When to handshake with the client's new key if it has not (after a rekey).
		let mut handshake_due: Option<tokio::time::Instant> = None;
		let token = self.life.token.clone();
		let outcome = loop {
			tokio::select! {
				message = messages.recv() => {
					heard = tokio::time::Instant::now();
					match message {
						Some(Ok(ClientMessage::Receipt(signed))) => {
							let sequence = signed.receipt.sequence;
							let now = self.sessions.now();
							let min_seconds = entry.ledger().seconds(now).saturating_sub(interval + 5);
							match self.receipts.accept(entry, signed, min_seconds, now).await {
								Ok(_) => {
									peer.meter.set_paid(entry.ledger().latest().bytes);
									peer.meter.set_limit(entry.ledger().limit(now));
									let _ = write_sealed(writer, sealer, &AgentMessage::ReceiptAccepted { sequence }).await;
								},
								Err(e) => {
									let reason = e.to_string();
									tracing::info!(session = session_id, sequence, %reason, "receipt refused");
									let _ = write_sealed(writer, sealer, &AgentMessage::ReceiptRejected { sequence, reason }).await;
								},
							}
						},
						Some(Ok(ClientMessage::Rekeyed(response))) => {
							let Some(next) = keys.answered(&response) else {
								break Err((ErrorCode::Protocol, "a rekey answer for no rekey under way".into()));
							};
							// The client installs the key on `RekeyDone` and handshakes with
							// it; a client carrying the tunnel elsewhere (an exported
							// configuration, wireguard-go) may not, so the agent handshakes
							// itself once the client had a moment to install the key.
							self.engine.set_preshared_key(peer, *next, false);
							handshake_due = Some(tokio::time::Instant::now() + REKEY_HANDSHAKE_DELAY);
							let generation = keys.install(next);
							self.metrics.rekeys.inc();
							tracing::debug!(session = session_id, generation, "tunnel rekeyed");
							let _ = write_sealed(writer, sealer, &AgentMessage::RekeyDone { generation }).await;
						},
						Some(Ok(ClientMessage::Close)) => {
							peer.meter.set_limit(0);
							entry.ledger().observe_served(peer.meter.served());
							break match self.settler.settle_and_close(session_id).await {
								Ok(paid) => {
									let _ = write_sealed(writer, sealer, &AgentMessage::Closed { paid }).await;
									Ok(())
								},
								Err(e) => Err((ErrorCode::ChainUnavailable, format!("could not settle and close the session: {e}; close it on-chain yourself"))),
							};
						},
						Some(Ok(_)) => break Err((ErrorCode::Protocol, "unexpected message during the tunnel".into())),
						Some(Err(ChannelError::Io(_))) | None => break Ok(()),
						Some(Err(e)) => break Err((ErrorCode::Protocol, e.to_string())),
					}
				},
				_ = ticker.tick() => {
					let now = self.sessions.now();
					entry.ledger().observe_served(peer.meter.served());
					// Count what moved since the last tick.
					let m = &peer.meter;
					let (t, f, d) = (m.to_peer.load(std::sync::atomic::Ordering::Relaxed), m.from_peer.load(std::sync::atomic::Ordering::Relaxed), m.dropped_unpaid.load(std::sync::atomic::Ordering::Relaxed));
					self.metrics.bytes_to_clients.inc_by(t.saturating_sub(to_client));
					self.metrics.bytes_from_clients.inc_by(f.saturating_sub(from_client));
					self.metrics.packets_dropped_unpaid.inc_by(d.saturating_sub(dropped));
					(to_client, from_client, dropped) = (t, f, d);
					match self.sessions.refresh_if_needed(entry).await {
						Err(SessionRefusal::Ended(_)) => break Err((ErrorCode::SessionEnded, "the session ended on-chain".into())),
						Err(e) => tracing::debug!(session = session_id, error = %e, "cannot refresh the session"),
						Ok(()) => {},
					}
					let (ended, stalled, hold, limit, report) = {
						let l = entry.ledger();
						let hold = l.allowance(now).err();
						let report = UsageReport {
							served_bytes: l.served_bytes(),
							seconds: l.seconds(now),
							paid_bytes: l.latest().bytes,
							paid_seconds: l.latest().seconds,
							sequence: l.latest().sequence,
							blocked: matches!(hold, Some(Hold::Unpaid { .. } | Hold::Late | Hold::DepositExhausted)),
						};
						(l.service_ended(), l.is_stalled(now), hold, l.limit(now), report)
					};
					if ended {
						break Err((ErrorCode::SessionEnded, "the session is closed or expired".into()));
					}
					if stalled {
						break Err((ErrorCode::PaymentTimeout, "no payment for too long".into()));
					}
					peer.meter.set_paid(report.paid_bytes);
					peer.meter.set_limit(if matches!(hold, Some(Hold::Late)) { peer.meter.served() } else { limit });
					if write_sealed(writer, sealer, &AgentMessage::Usage(report)).await.is_err() {
						break Ok(());
					}
					if handshake_due.is_some_and(|due| tokio::time::Instant::now() >= due) {
						handshake_due = None;
						if peer.last_handshake().is_none() {
							self.engine.initiate_handshake(peer);
						}
					}
					let tunnel = &self.config.service.tunnel;
					if keys.age() > Duration::from_secs(tunnel.max_key_age_secs) {
						break Err((ErrorCode::KeyExpired, format!("the tunnel's key is older than {} s: the client did not rekey", tunnel.max_key_age_secs)));
					}
					if let Some(request) = keys.due(Duration::from_secs(tunnel.rekey_interval_secs)) {
						match request {
							Ok(request) => { let _ = write_sealed(writer, sealer, &AgentMessage::Rekey(Box::new(request))).await; },
							Err(e) => tracing::warn!(session = session_id, error = %e, "cannot start a rekey"),
						}
					}
					if heard.elapsed() > idle {
						break Err((ErrorCode::PaymentTimeout, "the client has been silent for too long".into()));
					}
				},
				_ = replaced.notified() => break Err((ErrorCode::Replaced, "the session connected again; this tunnel was replaced".into())),
				_ = token.cancelled() => break Err((ErrorCode::ShuttingDown, "the agent is shutting down".into())),
			}
		};
		read_task.abort();
		outcome
	}
}
