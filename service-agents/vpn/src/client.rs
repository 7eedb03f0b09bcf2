//! The client: finds VPN providers, opens sessions, runs the handshake and the tunnel, and
//! pays for usage with signed receipts while the tunnel is up.

use std::{
	net::{Ipv4Addr, SocketAddr},
	path::{Path, PathBuf},
	sync::Arc,
	time::{Duration, Instant},
};

use interlattice_agent_core::account::AccountKey;
use interlattice_agent_core::{
	chain::{ChainClient, Provider, Session},
	meter::next_receipt,
	open_session, session_terms, ChainError, SessionKeys, SessionRequest,
};
use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt};
use interlattice_runtime::{AccountId, RuntimeCall};
use pallet_provider_registry::{ProviderFilter, ProviderOrder, ProviderPage, ServiceKind};
use serde::{Deserialize, Serialize};
use tokio::{
	io::{AsyncRead, AsyncWrite, AsyncWriteExt},
	net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use crate::{
	control::{
		decode_body,
		io::{read_frame, read_message, spawn_sealed_reader, write_message, write_sealed, ChannelError},
		AgentMessage, ClientMessage, ErrorCode, TunnelParams, UsageReport, PREAMBLE,
	},
	dataplane::{Engine, Peer, PeerConfig, Role},
	handshake::{answer_rekey, ClientHandshake, Established, HandshakeError},
	http3, https,
	netlink::add_route,
	tun::{HostRoute, LeakGuard, NetError, Tun},
};

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
	/// The agent refused the tunnel or ended it.
	#[error("the provider refused: {message} ({code:?})")]
	Refused {
		/// The kind.
		code: ErrorCode,
		/// Its explanation.
		message: String,
	},
	/// The agent could not be reached or the connection broke.
	#[error("provider {endpoint}: {message}")]
	Unreachable {
		/// The control endpoint.
		endpoint: String,
		/// What failed.
		message: String,
	},
	/// Talking to the chain failed.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// The handshake failed (the agent is not who the registry says, or a protocol error).
	#[error("handshake: {0}")]
	Handshake(#[from] HandshakeError),
	/// Setting up the interface or routes failed.
	#[error(transparent)]
	Net(#[from] NetError),
	/// The control channel is up but WireGuard's packets do not get through (a censor drops
	/// them, or UDP): no WireGuard handshake within [`DATA_PATH_GRACE`] of the tunnel or of a
	/// new key.
	#[error("the tunnel carries nothing: {0}")]
	DataPath(String),
	/// Anything else.
	#[error("{0}")]
	Other(String),
}

/// How long a new tunnel, or a tunnel with a new key, may go without a WireGuard handshake
/// before its path counts as dead.
pub const DATA_PATH_GRACE: Duration = Duration::from_secs(8);
/// The most times `Transport::Auto` moves a session to another transport in one run.
const MAX_TRANSPORT_MOVES: u32 = 8;

/// The control endpoint (`host:port`) a provider registered: its first endpoint without a
/// URL scheme.
pub fn control_endpoint(provider: &Provider) -> Option<String> {
	provider.endpoints.iter().map(|e| String::from_utf8_lossy(e).into_owned()).find(|e| !e.contains("://"))
}

/// The active VPN providers matching `country` (ISO code) and a price ceiling, cheapest first.
pub async fn vpn_providers(
	chain: &ChainClient,
	country: Option<[u8; 2]>,
	max_price_per_gib: Option<u128>,
) -> Result<Vec<Provider>, ClientError> {
	let filter = ProviderFilter::<u128> {
		service: Some(ServiceKind::Vpn),
		country,
		max_price_per_gib,
		active_only: true,
		..Default::default()
	};
	let page: ProviderPage<AccountId, u128, u32> = chain
		.runtime_call("ProviderRegistryApi_providers", (filter, ProviderOrder::PricePerGibAscending, 0u32, 100u32))
		.await?;
	Ok(page.providers)
}

/// What the client remembers about a session: the last receipt it signed. Written before a
/// receipt is sent, so that a sequence number is never signed twice for different usage.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedState {
	/// The session.
	pub session_id: u64,
	/// The last sequence signed.
	pub sequence: u64,
	/// Its bytes.
	pub bytes: u64,
	/// Its seconds.
	pub seconds: u64,
	/// Its amount.
	#[serde(with = "interlattice_pq_crypto::serde_helpers::amount_as_string")]
	pub amount: u128,
}

/// Where the usage the client pays for is counted.
pub enum Metering {
	/// By this client's own data plane (the tunnel runs here).
	Own,
	/// By the agent's reports (the tunnel runs in another WireGuard implementation, from an
	/// exported configuration); at most `max_bytes` in this tunnel.
	AgentReported {
		/// The most bytes paid for in this run.
		max_bytes: u64,
	},
}

/// How to connect.
pub struct ConnectOptions {
	/// The TUN interface to create.
	pub interface: String,
	/// Routes into the tunnel (`0.0.0.0/0`: everything, except the agent itself; then IPv6 and
	/// DNS outside the tunnel are blocked while it is up, see [`LeakGuard`]).
	pub routes: Vec<String>,
	/// Pay at least this often in bytes (default: the agent's ask).
	pub receipt_interval_bytes: Option<u64>,
	/// Accept the agent's count up to this fraction above our own (lost packets), in
	/// thousandths, plus 256 KiB.
	pub tolerance_permille: u64,
	/// At the end, ask the agent to settle and close the session (refunding the rest).
	pub close_at_end: bool,
	/// Stop signing receipts after this many bytes (to test a provider's enforcement).
	pub stop_paying_after_bytes: Option<u64>,
	/// Put the tunnel interface (and its routes) into this network namespace (`ip netns`
	/// name) instead of this one: that namespace's traffic uses the tunnel while this process,
	/// its chain connection and its WireGuard socket stay here.
	pub netns: Option<String>,
	/// How the tunnel reaches the agent.
	pub transport: Transport,
	/// Do not answer the agent's rekeys (to test a provider's enforcement of the key age).
	pub ignore_rekeys: bool,
}

/// How a tunnel reaches the agent (`docs/vpn-protocol.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
	/// The fastest that works: [`Transport::Udp`], then [`Transport::Https`] when it does not
	/// carry a tunnel within [`DATA_PATH_GRACE`]; and the other one when the tunnel's path dies
	/// mid-session (the session and its payments go on).
	#[default]
	Auto,
	/// The plain control channel over TCP and WireGuard over UDP: the fastest, where nothing
	/// blocks them.
	Udp,
	/// Both inside HTTP/3 over QUIC (`crate::http3`): for networks that block WireGuard but
	/// let QUIC through; looks like HTTP/3 to a web site, and is nearly as fast as UDP.
	Http3,
	/// Both inside HTTP/2 over TLS over TCP (`crate::https`): for networks that block
	/// WireGuard or UDP; looks like HTTPS to a web site.
	Https,
}

impl Transport {
	/// The transport [`Transport::Auto`] tries after this one failed: UDP, then HTTP/3, then
	/// HTTP/2 over TLS, then UDP again.
	pub fn next(self) -> Transport {
		match self {
			Transport::Auto | Transport::Https => Transport::Udp,
			Transport::Udp => Transport::Http3,
			Transport::Http3 => Transport::Https,
		}
	}
}

/// The tunnel MTU a client uses over HTTP/3: WireGuard's message (the packet and 32 bytes) with
/// the HTTP datagram's 2 bytes then fits a QUIC datagram once QUIC has found a 1,472-byte path
/// (any Ethernet path; it starts at 1,200 bytes and probes up within the first second). Until
/// then, or on a narrower path, full-size messages travel on the request stream: slower, never
/// lost.
pub const HTTP3_TUNNEL_MTU: u16 = 1380;

impl std::str::FromStr for Transport {
	type Err = String;

	fn from_str(s: &str) -> Result<Self, String> {
		match s {
			"auto" => Ok(Transport::Auto),
			"udp" => Ok(Transport::Udp),
			"h3" | "http3" => Ok(Transport::Http3),
			"https" => Ok(Transport::Https),
			other => Err(format!("unknown transport {other:?} (auto, udp, h3 or https)")),
		}
	}
}

impl std::fmt::Display for Transport {
	fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
		f.write_str(match self {
			Transport::Auto => "auto",
			Transport::Udp => "udp",
			Transport::Http3 => "h3",
			Transport::Https => "https",
		})
	}
}

impl Default for ConnectOptions {
	fn default() -> Self {
		ConnectOptions {
			interface: "ilvpnc0".into(),
			routes: vec!["0.0.0.0/0".into()],
			receipt_interval_bytes: None,
			tolerance_permille: 20,
			close_at_end: true,
			stop_paying_after_bytes: None,
			netns: None,
			transport: Transport::Auto,
			ignore_rekeys: false,
		}
	}
}

/// The live state shown to the user.
#[derive(Clone, Debug, Default)]
pub struct Status {
	/// The session.
	pub session_id: u64,
	/// The client's tunnel address.
	pub address: Option<Ipv4Addr>,
	/// Inner bytes sent into the tunnel (this run).
	pub sent: u64,
	/// Inner bytes received from the tunnel (this run).
	pub received: u64,
	/// The agent's latest count of the session.
	pub agent: UsageReport,
	/// The last receipt signed.
	pub signed: SignedState,
	/// The session's deposit.
	pub deposit: u128,
	/// Whether the agent acknowledged the last receipt.
	pub acknowledged: bool,
	/// Times the tunnel's pre-shared key was renewed (this run).
	pub rekeys: u64,
}

/// How a connection ended.
#[derive(Clone, Debug)]
pub struct Summary {
	/// The last state.
	pub status: Status,
	/// `Some(paid)` if the agent settled and closed the session.
	pub closed: Option<u128>,
}

/// The client.
pub struct VpnClient {
	chain: ChainClient,
	keys: SessionKeys,
	state_dir: PathBuf,
}

struct Connected {
	reader: Box<dyn AsyncRead + Unpin + Send>,
	writer: Box<dyn AsyncWrite + Unpin + Send>,
	/// Where WireGuard datagrams go: the agent's UDP port, or the HTTPS tunnel's local end.
	wireguard_endpoint: Option<SocketAddr>,
	/// Keeps the HTTPS tunnel open.
	_transport: Option<Box<dyn std::any::Any + Send + Sync>>,
	sealer: crate::sealed::Sealer,
	opener: crate::sealed::Opener,
	established: Established,
	params: TunnelParams,
	/// The client's tunnel address and prefix (the agent's sealed `Ready`).
	tunnel: ([u8; 4], u8),
	agent: SocketAddr,
	wireguard_secret: [u8; 32],
}

impl VpnClient {
	/// A client that keeps its state in `state_dir`: a fresh ML-DSA-65 key per session and
	/// the last receipt signed per session.
	pub fn new(chain: ChainClient, state_dir: &Path) -> Self {
		VpnClient { chain, keys: SessionKeys::new(state_dir), state_dir: state_dir.to_path_buf() }
	}

	/// The key that signs `session`'s receipts and handshakes.
	fn session_key(&self, session: &Session) -> Result<MlDsaKeyPair, ClientError> {
		self.keys.for_session(session.session_id, &session.client_key).map_err(|e| ClientError::Other(e.to_string()))
	}

	/// The chain.
	pub fn chain(&self) -> &ChainClient {
		&self.chain
	}

	/// Opens a VPN session with `provider`, paid by `account`: `deposit` escrowed for
	/// `duration_blocks`, at the provider's current prices (refused if they exceed `max_prices`).
	pub async fn open_session(
		&self,
		account: &AccountKey,
		provider: &Provider,
		max_prices: pallet_provider_registry::Prices<u128>,
		deposit: u128,
		duration_blocks: u32,
	) -> Result<Session, ClientError> {
		let request = SessionRequest { service: ServiceKind::Vpn, max_prices, deposit, duration_blocks };
		let (session, _key) = open_session(&self.chain, account, &self.keys, provider, &request)
			.await
			.map_err(|e| ClientError::Other(e.to_string()))?;
		Ok(session)
	}

	/// The endpoint the (unlisted) provider of `session` revealed to it; waits for it.
	pub async fn revealed_endpoint(&self, session: &Session) -> Result<String, ClientError> {
		interlattice_agent_core::revealed_endpoint(&self.chain, &self.keys, session, None)
			.await
			.map_err(|e| ClientError::Other(e.to_string()))
	}

	/// Reports that the endpoint revealed to `session` cannot be reached and waits up to
	/// `wait` for another; returns it, if the provider moved the session.
	pub async fn report_unreachable(
		&self,
		account: &AccountKey,
		session: &Session,
		wait: std::time::Duration,
	) -> Result<Option<String>, ClientError> {
		interlattice_agent_core::report_unreachable(&self.chain, account, &self.keys, session, wait)
			.await
			.map_err(|e| ClientError::Other(e.to_string()))
	}

	/// Closes `session_id` on-chain as its client (the provider may still settle during the
	/// settlement window; the rest is refunded when it is finalized).
	pub async fn close_on_chain(&self, account: &AccountKey, session_id: u64) -> Result<(), ClientError> {
		let call = RuntimeCall::SessionEscrow(pallet_session_escrow::Call::close_session { session_id });
		self.chain.submit_and_watch(call, account).await?;
		Ok(())
	}

	fn state_path(&self, session_id: u64) -> PathBuf {
		self.state_dir.join(format!("vpn-session-{session_id}.json"))
	}

	/// The last receipt this client signed for `session_id`.
	pub fn signed_state(&self, session_id: u64) -> SignedState {
		std::fs::read(self.state_path(session_id))
			.ok()
			.and_then(|b| serde_json::from_slice(&b).ok())
			.unwrap_or(SignedState { session_id, ..Default::default() })
	}

	fn save_state(&self, state: &SignedState) -> Result<(), ClientError> {
		let io = |e: std::io::Error| {
			ClientError::Other(format!("cannot save the session state in {}: {e}", self.state_dir.display()))
		};
		std::fs::create_dir_all(&self.state_dir).map_err(io)?;
		let path = self.state_path(state.session_id);
		// Our own temporary name: another `vpn connect` of the session (one being replaced)
		// may be saving at the same moment, and a shared name would let its rename take ours.
		let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
		{
			let mut f = std::fs::File::create(&tmp).map_err(io)?;
			std::io::Write::write_all(&mut f, &serde_json::to_vec(state).expect("plain struct")).map_err(io)?;
			f.sync_all().map_err(io)?;
		}
		std::fs::rename(&tmp, &path).map_err(io)
	}

	async fn handshake(
		&self,
		session: &Session,
		endpoint: &str,
		transport: Transport,
	) -> Result<Connected, ClientError> {
		let unreachable = |message: String| ClientError::Unreachable { endpoint: endpoint.to_string(), message };
		let provider = self
			.chain
			.provider(&session.provider)
			.await?
			.ok_or_else(|| ClientError::Other(format!("provider {} is not registered", session.provider)))?;
		let agent = tokio::net::lookup_host(endpoint)
			.await
			.map_err(|e| unreachable(e.to_string()))?
			.find(|a| a.is_ipv4())
			.ok_or_else(|| unreachable("no IPv4 address".into()))?;
		let (mut reader, mut writer, wireguard_endpoint, guard): (
			Box<dyn AsyncRead + Unpin + Send>,
			Box<dyn AsyncWrite + Unpin + Send>,
			_,
			_,
		) = match transport {
			Transport::Udp | Transport::Auto => {
				let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(agent))
					.await
					.map_err(|_| unreachable("connection timed out".into()))?
					.map_err(|e| unreachable(e.to_string()))?;
				let _ = stream.set_nodelay(true);
				let (reader, writer) = stream.into_split();
				(Box::new(reader), Box::new(writer), None, None)
			},
			Transport::Https | Transport::Http3 => {
				let host = endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host).trim_matches(['[', ']']);
				let key = self.session_key(session)?;
				let (genesis, provider_id, id) =
					(self.chain.genesis_hash().0, *session.provider.as_ref(), session.session_id);
				let authorize = |exporter| https::authorization(&key, genesis, provider_id, id, exporter);
				let (control, datagrams, guard): (_, _, Box<dyn std::any::Any + Send + Sync>) =
					if transport == Transport::Https {
						let tunnel = https::open(agent, host, authorize)
							.await
							.map_err(|e| unreachable(format!("HTTPS transport: {e}")))?;
						(tunnel.control, tunnel.datagrams, Box::new(tunnel.guard))
					} else {
						let tunnel = http3::open(agent, host, authorize)
							.await
							.map_err(|e| unreachable(format!("HTTP/3 transport: {e}")))?;
						(tunnel.control, tunnel.datagrams, Box::new(tunnel.guard))
					};
				let (reader, writer) = tokio::io::split(control);
				(Box::new(reader), Box::new(writer), Some(datagrams), Some(guard))
			},
		};
		let mut secret = [0u8; 32];
		getrandom::fill(&mut secret).map_err(|e| ClientError::Other(format!("no randomness: {e}")))?;
		let wg_public = boringtun::x25519::PublicKey::from(&boringtun::x25519::StaticSecret::from(secret));
		let (state, hello) =
			ClientHandshake::start(self.chain.genesis_hash().0, session.session_id, *wg_public.as_bytes())?;
		let channel = |e: ChannelError| unreachable(e.to_string());
		writer.write_all(PREAMBLE).await.map_err(|e| unreachable(e.to_string()))?;
		write_message(&mut writer, &ClientMessage::Hello(hello)).await.map_err(channel)?;
		let step = Duration::from_secs(30);
		let answer = match tokio::time::timeout(step, read_message::<AgentMessage, _>(&mut reader)).await {
			Ok(Ok(AgentMessage::Hello(a))) => *a,
			Ok(Ok(AgentMessage::Error { code, message })) => return Err(ClientError::Refused { code, message }),
			Ok(Ok(other)) => return Err(unreachable(format!("unexpected answer {other:?}"))),
			Ok(Err(e)) => return Err(channel(e)),
			Err(_) => return Err(unreachable("no handshake answer in time".into())),
		};
		let session_key = self.session_key(session)?;
		let (finish, established) = state.finish(&answer, &provider.service_key, &session_key)?;
		write_message(&mut writer, &ClientMessage::Finish(finish)).await.map_err(channel)?;
		// From here on every frame is sealed under the handshake's keys: the agent's answer
		// is either a sealed `Ready` or a plaintext refusal (the agent refused the finish, so
		// it has no keys), which can come only before anything sealed.
		let (sealer, mut opener) = crate::sealed::client_end(&established.control);
		let read = tokio::time::timeout(step, read_frame(&mut reader)).await;
		let body = match read {
			Ok(Ok(body)) => body,
			Ok(Err(e)) => return Err(channel(e)),
			Err(_) => return Err(unreachable("no tunnel parameters in time".into())),
		};
		let tunnel = match opener.open::<AgentMessage>(&body) {
			Ok(AgentMessage::Ready { address, prefix }) => (address, prefix),
			Ok(AgentMessage::Error { code, message }) => return Err(ClientError::Refused { code, message }),
			Ok(other) => return Err(unreachable(format!("unexpected answer {other:?}"))),
			Err(_) => match decode_body::<AgentMessage>(&body) {
				Ok(AgentMessage::Error { code, message }) => return Err(ClientError::Refused { code, message }),
				_ => return Err(unreachable("the agent's answer failed authentication".into())),
			},
		};
		let params = established.params.clone();
		Ok(Connected {
			reader,
			writer,
			wireguard_endpoint,
			_transport: guard,
			sealer,
			opener,
			established,
			params,
			tunnel,
			agent,
			wireguard_secret: secret,
		})
	}

	/// Handshakes with the agent at `endpoint` for `session` and writes a standard `wg-quick`
	/// configuration for the tunnel to `output`; then pays for the agent's reported usage until
	/// `stop` (the tunnel lives as long as this control connection). When the agent renews the
	/// tunnel's pre-shared key, the file is written again and, with `apply_to`, the new key
	/// is set on that WireGuard interface (`wg set`).
	#[allow(clippy::too_many_arguments)]
	pub async fn export_config(
		&self,
		session: &Session,
		endpoint: &str,
		output: &Path,
		apply_to: Option<&str>,
		options: &ConnectOptions,
		max_bytes: u64,
		on_status: impl FnMut(&Status),
		stop: CancellationToken,
	) -> Result<Summary, ClientError> {
		// A wg-quick configuration speaks plain WireGuard over UDP.
		let connected = self.handshake(session, endpoint, Transport::Udp).await?;
		let (address, prefix) = connected.tunnel;
		let b64 = |k: &[u8]| base64_encode(k);
		let (secret, agent_public, ip, port, mtu) = (
			connected.wireguard_secret,
			connected.established.peer_wireguard_public_key,
			connected.agent.ip(),
			connected.params.wireguard_port,
			connected.params.mtu,
		);
		let config = |preshared_key: &[u8; 32]| {
			format!(
				"# Interlattice dVPN session {session} with {provider}\n# Valid while `vpn export-config` keeps running (it pays for the tunnel and renews its key).\n[Interface]\nPrivateKey = {private}\nAddress = {address}/{prefix}\nMTU = {mtu}\n\n[Peer]\nPublicKey = {public}\nPresharedKey = {psk}\nEndpoint = {ip}:{port}\nAllowedIPs = {allowed}\nPersistentKeepalive = 25\n",
				session = session.session_id,
				provider = session.provider,
				private = b64(&secret),
				address = Ipv4Addr::from(address),
				public = b64(&agent_public),
				psk = b64(preshared_key),
				allowed = options.routes.join(", "),
			)
		};
		let write = |text: String| {
			write_private(output, text.as_bytes()).map_err(|e| ClientError::Other(format!("{}: {e}", output.display())))
		};
		write(config(&connected.established.preshared_key))?;
		let rewritten = std::cell::RefCell::new(Ok(()));
		let agent_key = b64(&agent_public);
		let install = |key: &[u8; 32]| {
			*rewritten.borrow_mut() = write(config(key));
			if let Some(interface) = apply_to {
				if let Err(e) = set_wireguard_psk(interface, &agent_key, key, output) {
					tracing::warn!(%interface, error = %e, "cannot set the renewed key");
				}
			}
		};
		let result = self
			.pay(session, connected, None, Metering::AgentReported { max_bytes }, options, on_status, install, stop)
			.await;
		rewritten.into_inner()?;
		result
	}

	/// Connects to the agent at `endpoint` for `session`: handshake, tunnel interface and
	/// routes, then pays as usage grows until `stop`; tears everything down at the end.
	///
	/// With [`Transport::Auto`], UDP first, then HTTPS if UDP carries no tunnel; and when the
	/// tunnel's path dies mid-session (its connection breaks, or WireGuard's handshakes stop
	/// getting through), the other transport, with the same session and payment state (the
	/// saved receipts), up to a few times.
	pub async fn connect(
		&self,
		session: &Session,
		endpoint: &str,
		options: &ConnectOptions,
		mut on_status: impl FnMut(&Status),
		mut on_transport: impl FnMut(Transport, Option<&ClientError>),
		stop: CancellationToken,
	) -> Result<Summary, ClientError> {
		if options.transport != Transport::Auto {
			on_transport(options.transport, None);
			return self.connect_over(session, endpoint, options, options.transport, &mut on_status, stop).await;
		}
		let mut transport = Transport::Udp;
		let mut moves = 0;
		loop {
			on_transport(transport, None);
			let result = self.connect_over(session, endpoint, options, transport, &mut on_status, stop.clone()).await;
			match result {
				Err(e @ (ClientError::Unreachable { .. } | ClientError::DataPath(_)))
					if !stop.is_cancelled() && moves < MAX_TRANSPORT_MOVES =>
				{
					moves += 1;
					let next = transport.next();
					on_transport(next, Some(&e));
					tracing::info!(from = %transport, to = %next, error = %e, "moving the session to another transport");
					transport = next;
				},
				other => return other,
			}
		}
	}

	/// [`VpnClient::connect`] over one transport.
	async fn connect_over(
		&self,
		session: &Session,
		endpoint: &str,
		options: &ConnectOptions,
		transport: Transport,
		on_status: impl FnMut(&Status),
		stop: CancellationToken,
	) -> Result<Summary, ClientError> {
		let connected = self.handshake(session, endpoint, transport).await?;
		let (address, prefix) = connected.tunnel;
		let address = Ipv4Addr::from(address);
		let agent_ip = match connected.agent.ip() {
			std::net::IpAddr::V4(a) => a,
			std::net::IpAddr::V6(_) => return Err(ClientError::Other("IPv6 endpoints are not supported".into())),
		};
		let tun = Tun::create(&options.interface)?;
		let netns = options.netns.as_deref();
		if let Some(ns) = netns {
			tun.move_to(ns)?;
		}
		let name = options.interface.as_str();
		let mtu = match transport {
			Transport::Http3 => connected.params.mtu.min(HTTP3_TUNNEL_MTU),
			_ => connected.params.mtu,
		};
		tun.configure(netns, address, prefix, mtu)?;
		let udp = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| ClientError::Other(format!("UDP socket: {e}")))?;
		let engine =
			Engine::start(tun, udp, boringtun::x25519::StaticSecret::from(connected.wireguard_secret), Role::Client)
				.map_err(|e| ClientError::Other(format!("data plane: {e}")))?;
		// Our own count of the session's bytes, never the agent's word (it could inflate what
		// we sign): the state we saved, or what the chain settled.
		let base = self.signed_state(session.session_id).bytes.max(session.bytes);
		let peer = engine.add_peer(PeerConfig {
			public_key: connected.established.peer_wireguard_public_key,
			preshared_key: *connected.established.preshared_key,
			address: Ipv4Addr::from(connected.params.gateway),
			endpoint: Some(
				connected
					.wireguard_endpoint
					.unwrap_or_else(|| SocketAddr::new(agent_ip.into(), connected.params.wireguard_port)),
			),
			keepalive: Some(25),
			served_bytes: base,
			limit: u64::MAX,
		});
		let (mut pinned, mut guard) = (None, None);
		for route in &options.routes {
			if route == "0.0.0.0/0" {
				// Here the tunnel's own packets must keep their path; in another namespace
				// they never meet its routes.
				if netns.is_none() {
					pinned = Some(HostRoute::pin(agent_ip)?);
				}
				// Nothing around the tunnel: no IPv6, no DNS to the local network.
				guard = Some(LeakGuard::install(netns, name, agent_ip)?);
				add_route(netns, Ipv4Addr::new(0, 0, 0, 0), 1, None, name)?;
				add_route(netns, Ipv4Addr::new(128, 0, 0, 0), 1, None, name)?;
			} else {
				let network: ipnet::Ipv4Net = route.parse().map_err(|_| NetError::Command {
					command: format!("route {route} into the tunnel"),
					message: "not an IPv4 network (e.g. 10.0.0.0/8)".into(),
				})?;
				add_route(netns, network.network(), network.prefix_len(), None, name)?;
			}
		}
		tracing::info!(session = session.session_id, %address, interface = engine.interface(), %transport, "tunnel up");
		let install = |key: &[u8; 32]| engine.set_preshared_key(&peer, *key, true);
		let result =
			self.pay(session, connected, Some(peer.clone()), Metering::Own, options, on_status, install, stop).await;
		engine.stop();
		drop((pinned, guard));
		result
	}

	#[allow(clippy::too_many_arguments)]
	async fn pay(
		&self,
		session: &Session,
		connected: Connected,
		peer: Option<Arc<Peer>>,
		metering: Metering,
		options: &ConnectOptions,
		mut on_status: impl FnMut(&Status),
		mut install_key: impl FnMut(&[u8; 32]),
		stop: CancellationToken,
	) -> Result<Summary, ClientError> {
		let Connected {
			reader,
			mut writer,
			mut sealer,
			opener,
			params,
			tunnel,
			established,
			_transport: _keep_open,
			..
		} = connected;
		// The tunnel's pre-shared key, renewed when the agent asks (`docs/vpn-handshake.md`).
		let mut current_key = established.preshared_key.clone();
		let mut next_key: Option<(u64, zeroize::Zeroizing<[u8; 32]>)> = None;
		// Since when the tunnel waits for a WireGuard handshake (its start, a new key).
		let mut awaiting_handshake = Some(Instant::now());
		let endpoint = session.provider.to_string();
		let terms = session_terms(session, self.chain.genesis_hash().0);
		let session_key = self.session_key(session)?;
		let mut signed = self.signed_state(session.session_id);
		// The client trusts its own state and the chain, never the agent's report of what it
		// holds (a lying agent, or anyone on the path, would make it sign away its deposit):
		// what the chain settled was signed with this session's key, so never sign below it.
		if session.settled > signed.amount {
			signed = SignedState {
				session_id: session.session_id,
				sequence: session.sequence,
				bytes: session.bytes,
				seconds: session.seconds,
				amount: session.settled,
			};
		}
		let base_bytes = signed.bytes;
		let base_seconds = signed.seconds;
		let started = Instant::now();
		let interval_bytes = options
			.receipt_interval_bytes
			.unwrap_or(params.receipt_interval_bytes)
			.clamp(1, params.receipt_interval_bytes);
		let interval_secs = Duration::from_secs(u64::from(params.receipt_interval_secs).max(1));
		let mut status = Status {
			session_id: session.session_id,
			address: Some(Ipv4Addr::from(tunnel.0)),
			agent: UsageReport::default(),
			signed,
			deposit: session.deposit,
			acknowledged: true,
			..Default::default()
		};
		let (mut messages, read_task) = spawn_sealed_reader::<AgentMessage, _>(reader, opener);
		let mut last_receipt = Instant::now();
		// Often enough that at a few Gbit/s a receipt goes out well before the agent's credit
		// (8 MiB by default) runs out; reading two counters is all a tick costs.
		let mut ticker = tokio::time::interval(Duration::from_millis(20));
		let mut shown = Instant::now();
		let mut stopping = false;
		let mut deposit_warned = false;
		let outcome: Result<Option<u128>, ClientError> = loop {
			tokio::select! {
				_ = ticker.tick() => {},
				_ = stop.cancelled(), if !stopping => stopping = true,
				message = messages.recv() => {
					match message {
						Some(Ok(AgentMessage::Usage(report))) => status.agent = report,
						Some(Ok(AgentMessage::ReceiptAccepted { sequence })) => status.acknowledged = sequence == status.signed.sequence,
						Some(Ok(AgentMessage::ReceiptRejected { sequence, reason })) => {
							tracing::warn!(sequence, %reason, "the agent refused a receipt");
						},
						Some(Ok(AgentMessage::Closed { paid })) => break Ok(Some(paid)),
						Some(Ok(AgentMessage::Error { code, message })) => break Err(ClientError::Refused { code, message }),
						Some(Ok(AgentMessage::Rekey(request))) if !options.ignore_rekeys => {
							match answer_rekey(&request, &current_key) {
								Ok((response, key)) => {
									next_key = Some((request.generation, key));
									let answer = ClientMessage::Rekeyed(Box::new(response));
									if let Err(e) = write_sealed(&mut writer, &mut sealer, &answer).await {
										break Err(ClientError::Unreachable { endpoint: endpoint.clone(), message: e.to_string() });
									}
								},
								Err(e) => tracing::warn!(error = %e, "cannot answer the agent's rekey"),
							}
						},
						Some(Ok(AgentMessage::RekeyDone { generation })) => {
							if let Some((_, key)) = next_key.take().filter(|(g, _)| *g == generation) {
								install_key(&key);
								current_key = key;
								// Still waiting since an earlier key: that wait goes on.
								awaiting_handshake = awaiting_handshake.or(Some(Instant::now()));
								status.rekeys += 1;
								tracing::debug!(generation, "tunnel rekeyed");
							}
						},
						Some(Ok(_)) => {},
						Some(Err(e)) => break Err(ClientError::Unreachable { endpoint: endpoint.clone(), message: e.to_string() }),
						None => break Err(ClientError::Unreachable { endpoint: endpoint.clone(), message: "control channel closed".into() }),
					}
					if !stopping {
						continue;
					}
				},
			}
			if let Some(peer) = &peer {
				status.sent = peer.meter.to_peer.load(std::sync::atomic::Ordering::Relaxed);
				status.received = peer.meter.from_peer.load(std::sync::atomic::Ordering::Relaxed);
				match awaiting_handshake {
					_ if peer.last_handshake().is_some() => awaiting_handshake = None,
					Some(since) if since.elapsed() > DATA_PATH_GRACE && !stopping => {
						break Err(ClientError::DataPath(format!(
							"no WireGuard handshake with the provider for {} s",
							DATA_PATH_GRACE.as_secs()
						)));
					},
					_ => {},
				}
			}
			// What we owe: our own count, or the agent's within a tolerance (packets it sent
			// that were lost on the way still count for it), or only the agent's (exported).
			let own = match (&metering, &peer) {
				(Metering::Own, Some(peer)) => peer.meter.served(),
				(Metering::AgentReported { max_bytes }, _) => {
					status.agent.served_bytes.min(base_bytes.saturating_add(*max_bytes))
				},
				_ => base_bytes,
			};
			let bytes = bytes_to_sign(Usage {
				own,
				base: base_bytes,
				reported: status.agent.served_bytes,
				signed: status.signed.bytes,
				tolerance_permille: options.tolerance_permille,
				cap: options.stop_paying_after_bytes,
			});
			let seconds = (base_seconds + started.elapsed().as_secs()).max(status.signed.seconds);
			let due = bytes.saturating_sub(status.signed.bytes) >= interval_bytes
				|| (last_receipt.elapsed() >= interval_secs
					&& (bytes, seconds) != (status.signed.bytes, status.signed.seconds))
				|| (stopping && (bytes, seconds) != (status.signed.bytes, status.signed.seconds))
				|| (status.agent.blocked && bytes > status.signed.bytes);
			if due {
				match next_receipt(&terms, status.signed.sequence, bytes, seconds) {
					Some(receipt) if receipt.amount <= session.deposit => {
						let next = SignedState {
							session_id: session.session_id,
							sequence: receipt.sequence,
							bytes,
							seconds,
							amount: receipt.amount,
						};
						self.save_state(&next)?;
						let signature = session_key
							.sign(&receipt.signing_payload())
							.map_err(|e| ClientError::Other(format!("signing: {e:?}")))?;
						let message = ClientMessage::Receipt(SignedUsageReceipt { receipt, signature });
						if let Err(e) = write_sealed(&mut writer, &mut sealer, &message).await {
							break Err(ClientError::Unreachable { endpoint: endpoint.clone(), message: e.to_string() });
						}
						status.signed = next;
						status.acknowledged = false;
						last_receipt = Instant::now();
					},
					_ => {
						if !deposit_warned {
							deposit_warned = true;
							tracing::warn!(
								session = session.session_id,
								"the deposit cannot pay for more: top it up to keep the tunnel"
							);
						}
					},
				}
			}
			if shown.elapsed() >= Duration::from_millis(250) || stopping {
				shown = Instant::now();
				on_status(&status);
			}
			if stopping && status.acknowledged {
				if !options.close_at_end {
					break Ok(None);
				}
				if let Err(e) = write_sealed(&mut writer, &mut sealer, &ClientMessage::Close).await {
					break Err(ClientError::Unreachable { endpoint: endpoint.clone(), message: e.to_string() });
				}
				// Wait for Closed (the agent settles, then closes: a few blocks).
				let closed = tokio::time::timeout(Duration::from_secs(90), async {
					while let Some(m) = messages.recv().await {
						match m {
							Ok(AgentMessage::Closed { paid }) => return Ok(Some(paid)),
							Ok(AgentMessage::Error { code, message }) => {
								return Err(ClientError::Refused { code, message })
							},
							Ok(_) => {},
							Err(e) => {
								return Err(ClientError::Unreachable {
									endpoint: endpoint.clone(),
									message: e.to_string(),
								})
							},
						}
					}
					Err(ClientError::Unreachable {
						endpoint: endpoint.clone(),
						message: "control channel closed before the session was closed".into(),
					})
				})
				.await
				.unwrap_or_else(|_| Err(ClientError::Other("the provider did not close the session in time".into())));
				break closed;
			}
			if stopping && last_receipt.elapsed() > Duration::from_secs(10) {
				tracing::warn!("the agent did not acknowledge the last receipt");
				break Ok(None);
			}
		};
		read_task.abort();
		let _ = writer.shutdown().await;
		outcome.map(|closed| Summary { status, closed })
	}
}

/// The pid in a `vpn connect` pid file, if it names a running process of `program` (this
/// binary): never 0, 1 or a negative number (`kill` would signal a process group or every
/// process), never a process that is not ours (a stale file, or one someone else wrote).
pub fn connect_pid(text: &str, program: &Path) -> Option<i32> {
	let pid: i32 = text.trim().parse().ok().filter(|p: &i32| *p > 1)?;
	let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
	let ours = std::fs::canonicalize(program).ok()?;
	// A rebuilt binary shows as "path (deleted)" for processes started before.
	let exe = PathBuf::from(exe.to_string_lossy().trim_end_matches(" (deleted)"));
	(exe == ours).then_some(pid)
}

/// `wg set INTERFACE peer PEER preshared-key FILE`, with the key in a private file beside
/// `config`.
fn set_wireguard_psk(interface: &str, peer: &str, key: &[u8; 32], config: &Path) -> Result<(), String> {
	let file = config.with_extension("psk");
	write_private(&file, format!("{}\n", base64_encode(key)).as_bytes()).map_err(|e| e.to_string())?;
	let out = std::process::Command::new("wg")
		.args(["set", interface, "peer", peer, "preshared-key"])
		.arg(&file)
		.output()
		.map_err(|e| format!("wg: {e}"));
	let _ = std::fs::remove_file(&file);
	let out = out?;
	if !out.status.success() {
		return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
	}
	Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
	use std::os::unix::fs::OpenOptionsExt;
	let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
	std::io::Write::write_all(&mut f, bytes)?;
	f.sync_all()
}

/// Standard base64 (WireGuard's key encoding).
pub fn base64_encode(bytes: &[u8]) -> String {
	use base64::Engine as _;
	base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What the client knows when it decides how many bytes to sign for.
#[derive(Clone, Copy, Debug)]
struct Usage {
	/// Its own count of the session's bytes (or, exported, the agent's within `max_bytes`).
	own: u64,
	/// The count the session started this connection with (the client's saved state or the
	/// chain's settled receipt, never the agent's word).
	base: u64,
	/// What the agent reports it served: unauthenticated in substance (a hostile agent says
	/// what it likes).
	reported: u64,
	/// What the client signed already.
	signed: u64,
	/// Packet loss tolerated, per mille of the bytes counted on this connection.
	tolerance_permille: u64,
	/// Sign for no more than this (tests: a client that stops paying).
	cap: Option<u64>,
}

/// The bytes the next receipt covers: the client's own count, raised to the agent's report by
/// at most a small tolerance (packets the agent sent that were lost on the way still count
/// for it), never below what was signed, never above the cap. Whatever the agent reports,
/// the client signs at most `own + tolerance`.
fn bytes_to_sign(u: Usage) -> u64 {
	let tolerance = u.own.saturating_sub(u.base) * u.tolerance_permille / 1000 + (256 << 10);
	let bytes = u.own.max(u.reported.min(u.own.saturating_add(tolerance))).max(u.signed);
	match u.cap {
		Some(cap) => bytes.min(cap.max(u.signed)),
		None => bytes,
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn a_lying_agent_gets_signed_at_most_the_client_s_count_and_a_tolerance() {
		let usage =
			Usage { own: 10 << 20, base: 0, reported: u64::MAX, signed: 4 << 20, tolerance_permille: 20, cap: None };
		let tolerance = (10 << 20) * 20 / 1000 + (256 << 10);
		assert_eq!(bytes_to_sign(usage), (10 << 20) + tolerance, "an agent claiming everything");
		assert_eq!(
			bytes_to_sign(Usage { reported: 0, ..usage }),
			10 << 20,
			"an agent claiming nothing: the client's own count"
		);
		assert_eq!(
			bytes_to_sign(Usage { reported: (10 << 20) + 1_000, ..usage }),
			(10 << 20) + 1_000,
			"lost packets within the tolerance"
		);
		// The tolerance grows with this connection's bytes only, not with the session's past.
		let reconnected = Usage {
			own: 10 << 20,
			base: 10 << 20,
			reported: u64::MAX,
			signed: 10 << 20,
			tolerance_permille: 20,
			cap: None,
		};
		assert_eq!(bytes_to_sign(reconnected), (10 << 20) + (256 << 10));
	}

	#[test]
	fn never_below_what_was_signed_and_never_above_the_cap() {
		let usage = Usage { own: 1 << 20, base: 0, reported: 0, signed: 3 << 20, tolerance_permille: 20, cap: None };
		assert_eq!(bytes_to_sign(usage), 3 << 20);
		let capped = Usage { own: 8 << 20, signed: 1 << 20, cap: Some(2 << 20), ..usage };
		assert_eq!(bytes_to_sign(capped), 2 << 20);
		assert_eq!(
			bytes_to_sign(Usage { cap: Some(0), ..capped }),
			1 << 20,
			"a cap below what was signed keeps what was signed"
		);
	}

	/// Issue 16 item 13: `vpn disconnect` signalled whatever pid its file held, including 0
	/// and -1 (`kill` then signals a process group, or every process).
	#[test]
	fn only_a_running_vpn_connect_is_signalled() {
		let me = std::env::current_exe().unwrap();
		let own = std::process::id().to_string();
		assert_eq!(connect_pid(&own, &me), Some(std::process::id() as i32));
		for hostile in ["0", "-1", "1", "-42", "", "abc", "99999999"] {
			assert_eq!(connect_pid(hostile, &me), None, "{hostile:?}");
		}
		// A live process that is another program (pid 1 aside: our parent, cargo's test runner).
		let parent = std::os::unix::process::parent_id().to_string();
		assert_eq!(connect_pid(&parent, &me), None);
	}
}
