//! The provider agent: the control channel (session checks on-chain, the post-quantum
//! handshake, the payment loop), the WireGuard data plane with NAT, settlement, metrics and
//! graceful shutdown.

use std::{
	collections::HashMap,
	net::{Ipv4Addr, SocketAddr},
	sync::{
		atomic::{AtomicU64, Ordering::Relaxed},
		Arc, Mutex,
	},
	time::{Duration, Instant},
};

use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt};
use interlattice_runtime::{AccountId, RuntimeCall};
use interlattice_settlement::{
	chain::{ChainClient, Provider},
	session_terms, Meter, ReceiptError, ReceiptStore, SettleError, SettleReport, Settler, StoreError,
};
use pallet_provider_registry::{ServiceKind, Services};
use sp_core::{bounded::BoundedVec, sr25519, Pair};
use tokio::{
	io::{AsyncReadExt, AsyncWriteExt},
	net::{
		tcp::{OwnedReadHalf, OwnedWriteHalf},
		TcpListener, TcpStream,
	},
	sync::{watch, Notify, OwnedSemaphorePermit, Semaphore},
};

use crate::{
	config::{load_service_key, parse_lat, AgentConfig, Pool},
	control::{
		io::{read_message, spawn_sealed_reader, write_message, write_sealed, ChannelError},
		AgentMessage, ClientMessage, ErrorCode, TunnelParams, UsageReport, PREAMBLE,
	},
	dataplane::{Engine, Peer, PeerConfig, Role},
	handshake::AgentHandshake,
	tun::{EgressPolicy, NetError, Tun},
};

/// Why the agent cannot start (or register).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
	/// Configuration is incomplete or wrong.
	#[error("configuration: {0}")]
	Config(String),
	/// The chain could not be reached, refused something, or disagrees with the configuration.
	#[error(transparent)]
	Chain(#[from] interlattice_settlement::ChainError),
	/// The receipt store cannot be opened.
	#[error(transparent)]
	Store(#[from] StoreError),
	/// The tunnel interface, NAT or sockets cannot be set up.
	#[error(transparent)]
	Net(#[from] NetError),
	/// A socket cannot be bound.
	#[error("cannot bind {addr}: {source}")]
	Bind {
		/// The address.
		addr: SocketAddr,
		/// Why.
		source: std::io::Error,
	},
}

/// The agent's identity: its account, its service key, and what it registers.
pub struct Identity {
	/// The provider account's key pair.
	pub account: sr25519::Pair,
	/// Its account id.
	pub provider: AccountId,
	/// The ML-DSA-65 service key.
	pub service_key: MlDsaKeyPair,
}

impl Identity {
	/// From the configuration and the environment (`INTERLATTICE_ACCOUNT`,
	/// `INTERLATTICE_SERVICE_KEY` override the file).
	pub fn load(config: &AgentConfig) -> Result<Self, AgentError> {
		let secret = std::env::var("INTERLATTICE_ACCOUNT").ok().or_else(|| config.provider.account.clone()).ok_or_else(
			|| AgentError::Config("no provider account: set provider.account or INTERLATTICE_ACCOUNT".into()),
		)?;
		let account = sr25519::Pair::from_string(&secret, None)
			.map_err(|e| AgentError::Config(format!("provider.account is not a valid sr25519 secret URI: {e:?}")))?;
		let key = std::env::var("INTERLATTICE_SERVICE_KEY").ok().or_else(|| config.provider.service_key.clone()).ok_or_else(
			|| AgentError::Config("no service key: set provider.service_key or INTERLATTICE_SERVICE_KEY".into()),
		)?;
		let service_key = load_service_key(&key).map_err(AgentError::Config)?;
		Ok(Identity { provider: account.public().into(), account, service_key })
	}
}

fn registration_call(config: &AgentConfig, identity: &Identity, existing: Option<&Provider>) -> Result<Option<RuntimeCall>, AgentError> {
	use pallet_provider_registry::Call;
	let prices = pallet_provider_registry::Prices {
		per_gib: parse_lat(&config.provider.price_per_gib).map_err(AgentError::Config)?,
		per_hour: parse_lat(&config.provider.price_per_hour).map_err(AgentError::Config)?,
	};
	let endpoint: BoundedVec<u8, _> = config
		.provider
		.endpoint
		.clone()
		.into_bytes()
		.try_into()
		.map_err(|_| AgentError::Config("provider.endpoint is too long (128 bytes at most)".into()))?;
	let endpoints: BoundedVec<_, _> = vec![endpoint].try_into().map_err(|_| AgentError::Config("too many endpoints".into()))?;
	let endpoint_list: Vec<Vec<u8>> = vec![config.provider.endpoint.clone().into_bytes()];
	let country = config.provider.country.as_bytes();
	let location = pallet_provider_registry::Location {
		country: [country[0], country[1]],
		region: Default::default(),
		hosting: pallet_provider_registry::Hosting::Datacenter,
	};
	let Some(p) = existing else {
		return Ok(Some(RuntimeCall::ProviderRegistry(Call::register_provider {
			services: Services::Vpn,
			endpoints,
			location,
			prices,
			service_key: Box::new(identity.service_key.public().clone()),
			stake: parse_lat(&config.provider.stake).map_err(AgentError::Config)?,
		})));
	};
	let services = (!p.services.offers(ServiceKind::Vpn)).then(|| match p.services {
		Services::Cdn => Services::Both,
		other => other,
	});
	let update = Call::update_provider {
		services,
		endpoints: (p.endpoints != endpoint_list).then_some(endpoints),
		location: (&p.country != country).then_some(location),
		prices: (p.prices != prices).then_some(prices),
		service_key: (&p.service_key != identity.service_key.public()).then(|| Box::new(identity.service_key.public().clone())),
	};
	let Call::update_provider { services, endpoints, location, prices, service_key } = &update else { unreachable!() };
	if services.is_none() && endpoints.is_none() && location.is_none() && prices.is_none() && service_key.is_none() {
		return Ok(None);
	}
	Ok(Some(RuntimeCall::ProviderRegistry(update)))
}

/// `vpn-agent register`: registers the provider as the configuration describes (bonding
/// `provider.stake`), or updates what differs. Returns what it did, in words.
pub async fn register(config: &AgentConfig) -> Result<String, AgentError> {
	let identity = Identity::load(config)?;
	let chain = ChainClient::connect(&config.chain.rpc).await?;
	let existing = chain.provider(&identity.provider).await?;
	match registration_call(config, &identity, existing.as_ref())? {
		None => Ok(format!("provider {} is registered as configured; nothing to do", identity.provider)),
		Some(call) => {
			let what = if existing.is_some() { "updated" } else { "registered" };
			let inclusion = chain.submit_and_watch(call, &identity.account).await?;
			Ok(format!("provider {} {what} in block #{}", identity.provider, inclusion.number))
		},
	}
}

/// The agent's counters, exported at `/metrics`.
#[derive(Default)]
pub struct Metrics {
	sessions_accepted: AtomicU64,
	sessions_refused: AtomicU64,
	bytes_from_closed: AtomicU64,
	receipts_accepted: AtomicU64,
	receipts_rejected: AtomicU64,
	receipts_settled: AtomicU64,
	settlement_failures: AtomicU64,
}

struct Tunnel {
	peer: Arc<Peer>,
	replaced: Arc<Notify>,
	lease: Arc<Lease>,
}

/// What a session's tunnel holds while it is up: one of the agent's `max_sessions` slots and
/// an address from the pool, given back when the last connection holding it ends. A client
/// reconnecting while its old tunnel is still up (a new network, a control connection the
/// agent has not seen drop yet) shares the old tunnel's lease and, once its handshake proves
/// the session key, replaces that tunnel: a full agent does not turn away its own sessions.
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

/// The running agent.
pub struct Agent {
	config: AgentConfig,
	pool: Pool,
	chain: ChainClient,
	identity: Identity,
	engine: Engine,
	free_addresses: Arc<Mutex<Vec<Ipv4Addr>>>,
	tunnels: Mutex<HashMap<u64, Tunnel>>,
	receipts: Arc<Mutex<ReceiptStore>>,
	settler: Settler,
	metrics: Metrics,
	slots: Arc<Semaphore>,
	_egress: EgressPolicy,
}

/// Why a control connection ends without a tunnel, or why a tunnel ends.
struct Refusal {
	code: ErrorCode,
	message: String,
	/// Already told to the client in a sealed frame (after the handshake, a plaintext error
	/// would be refused by the client as unauthenticated).
	sent: bool,
}

impl From<(ErrorCode, String)> for Refusal {
	fn from((code, message): (ErrorCode, String)) -> Self {
		Refusal { code, message, sent: false }
	}
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
	m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Binds the control listener (before [`Agent::start`], so that a port in use fails early).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AgentError> {
	TcpListener::bind(addr).await.map_err(|source| AgentError::Bind { addr, source })
}

impl Agent {
	/// Connects to the chain, checks the registration, opens the receipt store, creates the
	/// tunnel interface (with NAT if configured) and starts the data plane.
	pub async fn start(config: AgentConfig) -> Result<Arc<Self>, AgentError> {
		interlattice_settlement::check_settle_interval(config.payment.settle_interval_secs).map_err(AgentError::Config)?;
		let identity = Identity::load(&config)?;
		let pool = config.pool().map_err(AgentError::Config)?;
		tracing::info!(rpc = %config.chain.rpc, "connecting to the chain");
		let chain = ChainClient::connect(&config.chain.rpc).await?;
		let registered = chain.provider(&identity.provider).await?.ok_or_else(|| {
			AgentError::Config(format!(
				"account {} is not a registered provider on this chain: run `vpn-agent register` first",
				identity.provider
			))
		})?;
		if !registered.services.offers(ServiceKind::Vpn) {
			return Err(AgentError::Config(format!(
				"provider {} is registered without the VPN service: run `vpn-agent register` to update it",
				identity.provider
			)));
		}
		if &registered.service_key != identity.service_key.public() {
			return Err(AgentError::Config(format!(
				"the chain holds another service key for provider {}: clients would refuse this agent's handshake; run `vpn-agent register` to update it, or configure the registered key",
				identity.provider
			)));
		}
		if !registered.endpoints.iter().any(|e| e == config.provider.endpoint.as_bytes()) {
			tracing::warn!(endpoint = %config.provider.endpoint, "the registry does not list this endpoint; clients will not find it (run `vpn-agent register`)");
		}
		if !registered.active {
			tracing::warn!("the provider is registered but not active (stake below the minimum?): clients cannot open sessions");
		}
		let receipts = ReceiptStore::open(&config.payment.receipts_dir)?;
		tracing::info!(dir = %config.payment.receipts_dir.display(), unsettled = receipts.unsettled().len(), "receipt store opened");
		let receipts = Arc::new(Mutex::new(receipts));

		let tun = Tun::create(&config.tunnel.interface)?;
		tun.configure(pool.gateway(), pool.prefix, config.tunnel.mtu)?;
		for network in &config.tunnel.egress_allow {
			network
				.parse::<ipnet::Ipv4Net>()
				.map_err(|e| AgentError::Config(format!("tunnel.egress_allow: {network:?} is not an IPv4 network: {e}")))?;
		}
		let nat = EgressPolicy::install(
			&config.tunnel.interface,
			&pool.to_string(),
			pool.gateway(),
			config.tunnel.masquerade,
			&config.tunnel.egress_allow,
		)?;
		let udp_addr = config.wireguard_listen();
		let udp = std::net::UdpSocket::bind(udp_addr).map_err(|source| AgentError::Bind { addr: udp_addr, source })?;
		let mut secret = [0u8; 32];
		getrandom::fill(&mut secret).map_err(|e| AgentError::Config(format!("no randomness: {e}")))?;
		let engine = Engine::start(tun, udp, boringtun::x25519::StaticSecret::from(secret), Role::Agent { network: pool.network, prefix: pool.prefix })
			.map_err(|e| AgentError::Config(format!("cannot start the data plane: {e}")))?;
		tracing::info!(interface = %config.tunnel.interface, %pool, wireguard = %udp_addr, nat = config.tunnel.masquerade, "tunnel interface up");

		let settler = Settler::new(chain.clone(), identity.account.clone(), receipts.clone());
		let mut free: Vec<Ipv4Addr> = pool.clients().collect();
		free.reverse();
		Ok(Arc::new(Agent {
			slots: Arc::new(Semaphore::new(config.tunnel.max_sessions)),
			config,
			pool,
			chain,
			identity,
			engine,
			free_addresses: Arc::new(Mutex::new(free)),
			tunnels: Mutex::new(HashMap::new()),
			receipts,
			settler,
			metrics: Metrics::default(),
			_egress: nat,
		}))
	}

	/// Serves control connections until `shutdown` turns true; then ends every tunnel, settles
	/// once more and removes the interface and NAT.
	pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
		let (settle_stop_tx, settle_stop) = watch::channel(false);
		let me = self.clone();
		let interval = Duration::from_secs(self.config.payment.settle_interval_secs.max(1));
		let settler = self.settler.clone();
		let settlement = tokio::spawn(async move {
			settler.run(interval, settle_stop, move |outcome| me.count_round(outcome)).await;
		});
		let metrics = match self.config.metrics.listen {
			Some(addr) => {
				let listener = bind(addr).await?;
				let me = self.clone();
				let stop = shutdown.clone();
				Some(tokio::spawn(async move { me.serve_metrics(listener, stop).await }))
			},
			None => None,
		};
		let mut connections = tokio::task::JoinSet::new();
		loop {
			tokio::select! {
				accepted = listener.accept() => {
					let (stream, peer) = match accepted {
						Ok(a) => a,
						Err(e) => {
							tracing::warn!(error = %e, "accept failed");
							tokio::time::sleep(Duration::from_millis(50)).await;
							continue;
						},
					};
					let _ = stream.set_nodelay(true);
					let agent = self.clone();
					let stop = shutdown.clone();
					connections.spawn(async move { agent.connection(stream, peer, stop).await });
				},
				Some(_) = connections.join_next(), if !connections.is_empty() => {},
				_ = shutdown.changed() => break,
			}
		}
		drop(listener);
		tracing::info!(tunnels = connections.len(), "shutting down: ending tunnels");
		if tokio::time::timeout(Duration::from_secs(10), async { while connections.join_next().await.is_some() {} }).await.is_err() {
			connections.abort_all();
		}
		let _ = settle_stop_tx.send(true);
		let _ = settlement.await;
		if let Some(m) = metrics {
			m.abort();
		}
		tracing::info!("stopped");
		Ok(())
	}

	fn count_round(&self, outcome: &Result<SettleReport, SettleError>) {
		match outcome {
			Ok(r) => {
				self.metrics.receipts_settled.fetch_add(u64::from(r.settled), Relaxed);
				self.metrics.settlement_failures.fetch_add(u64::from(r.rejected), Relaxed);
			},
			Err(_) => {
				self.metrics.settlement_failures.fetch_add(1, Relaxed);
			},
		}
	}

	async fn serve_metrics(self: Arc<Self>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
		loop {
			let (mut stream, _) = tokio::select! {
				a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
				_ = stop.changed() => return,
			};
			let body = self.metrics_text();
			tokio::spawn(async move {
				let mut request = [0u8; 1024];
				let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await;
				let head = format!(
					"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
					body.len()
				);
				let _ = stream.write_all(head.as_bytes()).await;
				let _ = stream.write_all(body.as_bytes()).await;
			});
		}
	}

	/// The Prometheus exposition.
	pub fn metrics_text(&self) -> String {
		let m = &self.metrics;
		let tunnels = lock(&self.tunnels);
		let (mut to_clients, mut from_clients, mut unpaid, mut dropped) = (0u64, 0u64, 0u64, 0u64);
		for t in tunnels.values() {
			to_clients += t.peer.meter.to_peer.load(Relaxed);
			from_clients += t.peer.meter.from_peer.load(Relaxed);
			dropped += t.peer.meter.dropped_unpaid.load(Relaxed);
		}
		for t in tunnels.values() {
			unpaid += t.peer.meter.unpaid();
		}
		let stats = self.engine.stats();
		let mut out = String::new();
		let mut line = |name: &str, kind: &str, help: &str, value: u64| {
			out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
		};
		line("interlattice_vpn_tunnels", "gauge", "Tunnels up now.", tunnels.len() as u64);
		line("interlattice_vpn_sessions_accepted_total", "counter", "Handshakes completed.", m.sessions_accepted.load(Relaxed));
		line("interlattice_vpn_sessions_refused_total", "counter", "Connections refused (bad session, handshake, protocol, busy).", m.sessions_refused.load(Relaxed));
		line("interlattice_vpn_bytes_to_clients_total", "counter", "Inner bytes sent to clients by open tunnels.", to_clients);
		line("interlattice_vpn_bytes_from_clients_total", "counter", "Inner bytes forwarded from clients by open tunnels.", from_clients);
		line("interlattice_vpn_bytes_closed_tunnels_total", "counter", "Bytes served by tunnels since closed.", m.bytes_from_closed.load(Relaxed));
		line("interlattice_vpn_unpaid_bytes", "gauge", "Bytes served but not yet covered by a receipt, open tunnels.", unpaid);
		line("interlattice_vpn_packets_dropped_unpaid_total", "counter", "Packets held back because the session's credit ran out, open tunnels.", dropped);
		line("interlattice_vpn_receipts_accepted_total", "counter", "Receipts verified and stored.", m.receipts_accepted.load(Relaxed));
		line("interlattice_vpn_receipts_rejected_total", "counter", "Receipts refused.", m.receipts_rejected.load(Relaxed));
		line("interlattice_vpn_receipts_settled_total", "counter", "Receipts settled on-chain.", m.receipts_settled.load(Relaxed));
		line("interlattice_vpn_settlement_failures_total", "counter", "Failed settlement rounds and receipts the chain rejected.", m.settlement_failures.load(Relaxed));
		line("interlattice_vpn_invalid_datagrams_total", "counter", "UDP datagrams that were not valid WireGuard for any peer.", stats.invalid_datagrams.load(Relaxed));
		line("interlattice_vpn_spoofed_packets_total", "counter", "Packets from a client with a source address not its own.", stats.spoofed_packets.load(Relaxed));
		out
	}

	/// One control connection, from the preamble to the end of its tunnel.
	async fn connection(self: Arc<Self>, stream: TcpStream, from: SocketAddr, stop: watch::Receiver<bool>) {
		let (reader, mut writer) = stream.into_split();
		let result = self.clone().tunnel(reader, &mut writer, from, stop).await;
		if let Err(Refusal { code, message, sent }) = result {
			if !matches!(code, ErrorCode::ShuttingDown | ErrorCode::Replaced) {
				tracing::info!(%from, ?code, %message, "control connection refused or ended");
			}
			if !sent {
				let _ = tokio::time::timeout(
					Duration::from_secs(2),
					write_message(&mut writer, &AgentMessage::Error { code, message }),
				)
				.await;
			}
		}
		let _ = writer.shutdown().await;
	}

	fn refuse(&self, code: ErrorCode, message: impl Into<String>) -> Refusal {
		self.metrics.sessions_refused.fetch_add(1, Relaxed);
		Refusal { code, message: message.into(), sent: false }
	}

	async fn tunnel(
		self: Arc<Self>,
		mut reader: OwnedReadHalf,
		writer: &mut OwnedWriteHalf,
		from: SocketAddr,
		mut stop: watch::Receiver<bool>,
	) -> Result<(), Refusal> {
		let step = Duration::from_secs(self.config.control.handshake_timeout_secs);
		let mut preamble = [0u8; PREAMBLE.len()];
		match tokio::time::timeout(step, reader.read_exact(&mut preamble)).await {
			Ok(Ok(_)) if &preamble == PREAMBLE => {},
			Ok(Ok(_)) => return Err(self.refuse(ErrorCode::Protocol, "not an interlattice-vpn client (wrong preamble)")),
			Ok(Err(e)) => return Err(self.refuse(ErrorCode::Protocol, format!("connection: {e}"))),
			Err(_) => return Err(self.refuse(ErrorCode::Protocol, "no preamble in time")),
		}
		let hello = match tokio::time::timeout(step, read_message::<ClientMessage, _>(&mut reader)).await {
			Ok(Ok(ClientMessage::Hello(h))) => h,
			Ok(Ok(_)) => return Err(self.refuse(ErrorCode::Protocol, "expected the client hello")),
			Ok(Err(e)) => return Err(self.refuse(ErrorCode::Protocol, e.to_string())),
			Err(_) => return Err(self.refuse(ErrorCode::Protocol, "no client hello in time")),
		};
		let session_id = hello.session_id;
		let session = match self.chain.session(session_id).await {
			Ok(Some(s)) => s,
			Ok(None) => return Err(self.refuse(ErrorCode::UnknownSession, format!("session {session_id} does not exist on-chain"))),
			Err(e) => return Err(self.refuse(ErrorCode::ChainUnavailable, format!("cannot check the session on-chain: {e}"))),
		};
		if session.provider != self.identity.provider {
			return Err(self.refuse(ErrorCode::UnknownSession, format!("session {session_id} is with another provider")));
		}
		if session.service != ServiceKind::Vpn {
			return Err(self.refuse(ErrorCode::UnknownSession, format!("session {session_id} is not a VPN session")));
		}
		let best = self.chain.best_number().await.unwrap_or(0);
		if session.closing || u64::from(session.expires_at) <= best {
			return Err(self.refuse(ErrorCode::SessionEnded, format!("session {session_id} is closed or expired")));
		}
		let genesis = self.chain.genesis_hash().0;
		let stored = lock(&self.receipts).session(session_id).map(|s| s.latest.receipt);
		let mut meter = Meter::new(session_terms(&session, genesis), self.config.payment.credit_limit_bytes, stored);
		if meter.affordable_bytes() <= meter.served_bytes() {
			return Err(self.refuse(ErrorCode::DepositExhausted, format!("session {session_id}'s deposit is used up: top it up")));
		}
		let running = lock(&self.tunnels).get(&session_id).map(|t| t.lease.clone());
		let lease = match running {
			Some(lease) => lease,
			None => {
				let Ok(slot) = self.slots.clone().try_acquire_owned() else {
					return Err(self.refuse(ErrorCode::Busy, "the agent is at its session limit; try later or another provider"));
				};
				let Some(address) = lock(&self.free_addresses).pop() else {
					return Err(self.refuse(ErrorCode::Busy, "no tunnel address left"));
				};
				Arc::new(Lease { address, free_addresses: self.free_addresses.clone(), _slot: slot })
			},
		};
		self.run_tunnel(reader, writer, &mut stop, hello, &session.client_key, &mut meter, lease, from).await
	}

	#[allow(clippy::too_many_arguments)]
	async fn run_tunnel(
		self: &Arc<Self>,
		mut reader: OwnedReadHalf,
		writer: &mut OwnedWriteHalf,
		stop: &mut watch::Receiver<bool>,
		hello: crate::handshake::ClientHello,
		client_key: &interlattice_pq_crypto::MlDsaPublicKey,
		meter: &mut Meter,
		lease: Arc<Lease>,
		from: SocketAddr,
	) -> Result<(), Refusal> {
		let session_id = hello.session_id;
		let address = lease.address;
		let step = Duration::from_secs(self.config.control.handshake_timeout_secs);
		let genesis = self.chain.genesis_hash().0;
		let params = TunnelParams {
			wireguard_port: self.config.wireguard_listen().port(),
			gateway: self.pool.gateway().octets(),
			mtu: self.config.tunnel.mtu,
			receipt_interval_bytes: self.config.payment.receipt_interval_bytes,
			receipt_interval_secs: self.config.payment.receipt_interval_secs,
			credit_limit_bytes: self.config.payment.credit_limit_bytes,
		};
		let (state, answer) = AgentHandshake::respond(
			&hello,
			genesis,
			&self.identity.service_key,
			self.engine.public_key(),
			(address.octets(), self.pool.prefix),
			params,
		)
		.map_err(|e| self.refuse(ErrorCode::Handshake, e.to_string()))?;
		write_message(writer, &AgentMessage::Hello(answer)).await.map_err(|e| self.refuse(ErrorCode::Protocol, e.to_string()))?;
		let finish = match tokio::time::timeout(step, read_message::<ClientMessage, _>(&mut reader)).await {
			Ok(Ok(ClientMessage::Finish(f))) => f,
			Ok(Ok(_)) => return Err(self.refuse(ErrorCode::Protocol, "expected the client finish")),
			Ok(Err(e)) => return Err(self.refuse(ErrorCode::Protocol, e.to_string())),
			Err(_) => return Err(self.refuse(ErrorCode::Protocol, "no client finish in time")),
		};
		let established = state.complete(&finish, client_key).map_err(|e| self.refuse(ErrorCode::Handshake, e.to_string()))?;

		// The handshake proved the session's key: this tunnel replaces any older one.
		let peer = self.engine.add_peer(PeerConfig {
			public_key: hello.wireguard_public_key,
			preshared_key: *established.preshared_key,
			address,
			endpoint: None,
			keepalive: None,
			served_bytes: meter.served_bytes(),
			limit: limit(meter),
		});
		let replaced = Arc::new(Notify::new());
		if let Some(old) = lock(&self.tunnels).insert(session_id, Tunnel { peer: peer.clone(), replaced: replaced.clone(), lease }) {
			old.replaced.notify_one();
			self.engine.remove_peer(&old.peer);
		}
		self.metrics.sessions_accepted.fetch_add(1, Relaxed);
		tracing::info!(session = session_id, %from, %address, "tunnel up");

		let (sealer, opener) = crate::sealed::agent_end(&established.control);
		let result = self.payment_loop(reader, writer, (sealer, opener), stop, &peer, &replaced, meter, session_id).await;

		self.engine.remove_peer(&peer);
		{
			let mut tunnels = lock(&self.tunnels);
			if tunnels.get(&session_id).is_some_and(|t| Arc::ptr_eq(&t.peer, &peer)) {
				tunnels.remove(&session_id);
			}
		}
		self.metrics.bytes_from_closed.fetch_add(peer.meter.to_peer.load(Relaxed) + peer.meter.from_peer.load(Relaxed), Relaxed);
		tracing::info!(session = session_id, served = peer.meter.served(), paid = meter.latest().bytes, "tunnel down");
		result
	}

	#[allow(clippy::too_many_arguments)]
	async fn payment_loop(
		self: &Arc<Self>,
		reader: OwnedReadHalf,
		writer: &mut OwnedWriteHalf,
		(mut sealer, opener): (crate::sealed::Sealer, crate::sealed::Opener),
		stop: &mut watch::Receiver<bool>,
		peer: &Arc<Peer>,
		replaced: &Notify,
		meter: &mut Meter,
		session_id: u64,
	) -> Result<(), Refusal> {
		let started = Instant::now();
		let base_seconds = meter.latest().seconds;
		let seconds_now = || base_seconds + started.elapsed().as_secs();
		let interval = u64::from(self.config.payment.receipt_interval_secs);
		write_sealed(writer, &mut sealer, &AgentMessage::Ready).await.map_err(|e| (ErrorCode::Protocol, e.to_string()))?;

		let (mut messages, read_task) = spawn_sealed_reader::<ClientMessage, _>(reader, opener);
		let mut ticker = tokio::time::interval(Duration::from_secs(1));
		let mut refreshed = Instant::now();
		let outcome = loop {
			tokio::select! {
				message = messages.recv() => match message {
					Some(Ok(ClientMessage::Receipt(signed))) => {
						let sequence = signed.receipt.sequence;
						let min_seconds = seconds_now().saturating_sub(interval + 5);
						match self.accept_receipt(meter, signed, min_seconds).await {
							Ok(()) => {
								peer.meter.set_paid(meter.latest().bytes);
								peer.meter.set_limit(limit(meter));
								let _ = write_sealed(writer, &mut sealer, &AgentMessage::ReceiptAccepted { sequence }).await;
							},
							Err(reason) => {
								self.metrics.receipts_rejected.fetch_add(1, Relaxed);
								tracing::info!(session = session_id, sequence, %reason, "receipt refused");
								let _ = write_sealed(writer, &mut sealer, &AgentMessage::ReceiptRejected { sequence, reason }).await;
							},
						}
					},
					Some(Ok(ClientMessage::Close)) => {
						peer.meter.set_limit(0);
						let paid = self.settler.settle_and_close(session_id).await;
						break match paid {
							Ok(paid) => {
								let _ = write_sealed(writer, &mut sealer, &AgentMessage::Closed { paid }).await;
								Ok(())
							},
							Err(e) => Err((ErrorCode::ChainUnavailable, format!("could not settle and close the session: {e}; close it on-chain yourself"))),
						};
					},
					Some(Ok(_)) => break Err((ErrorCode::Protocol, "unexpected message during the tunnel".into())),
					Some(Err(ChannelError::Io(_))) | None => break Ok(()),
					Some(Err(e)) => break Err((ErrorCode::Protocol, e.to_string())),
				},
				_ = ticker.tick() => {
					let served = peer.meter.served();
					meter.add_served(served.saturating_sub(meter.served_bytes()));
					if refreshed.elapsed() > Duration::from_secs(15) {
						refreshed = Instant::now();
						if let Ok(Some(s)) = self.chain.session(session_id).await {
							if s.closing {
								break Err((ErrorCode::SessionEnded, "the session was closed on-chain".into()));
							}
							meter.update_terms(session_terms(&s, self.chain.genesis_hash().0));
						}
					}
					let late = seconds_now().saturating_sub(meter.latest().seconds) > self.config.payment.receipt_timeout_secs;
					let blocked = late || meter.allowance() == 0;
					peer.meter.set_paid(meter.latest().bytes);
					peer.meter.set_limit(if late { served } else { limit(meter) });
					if write_sealed(writer, &mut sealer, &AgentMessage::Usage(report(meter, peer, seconds_now(), blocked))).await.is_err() {
						break Ok(());
					}
				},
				_ = replaced.notified() => break Err((ErrorCode::Replaced, "the session connected again; this tunnel was replaced".into())),
				_ = stop.changed() => break Err((ErrorCode::ShuttingDown, "the agent is shutting down".into())),
			}
		};
		read_task.abort();
		match outcome {
			Ok(()) => Ok(()),
			Err((code, message)) => {
				// After the handshake, errors go out sealed.
				let error = AgentMessage::Error { code, message: message.clone() };
				let _ = tokio::time::timeout(Duration::from_secs(2), write_sealed(writer, &mut sealer, &error)).await;
				Err(Refusal { code, message, sent: true })
			},
		}
	}

	async fn accept_receipt(&self, meter: &mut Meter, signed: SignedUsageReceipt, min_seconds: u64) -> Result<(), String> {
		let check = meter.clone();
		let signed = tokio::task::spawn_blocking(move || check.check_receipt(&signed, min_seconds).map(|_| signed))
			.await
			.map_err(|e| format!("verification task failed: {e}"))?
			.map_err(|e: ReceiptError| e.to_string())?;
		let receipt = signed.receipt;
		let store = self.receipts.clone();
		tokio::task::spawn_blocking(move || lock(&store).record(signed))
			.await
			.map_err(|e| format!("store task failed: {e}"))?
			.map_err(|e| {
				tracing::error!(error = %e, "cannot store a receipt");
				format!("the receipt could not be stored ({e}); send it again")
			})?;
		meter.accept(receipt);
		self.metrics.receipts_accepted.fetch_add(1, Relaxed);
		tracing::debug!(session = receipt.session_id, sequence = receipt.sequence, bytes = receipt.bytes, "receipt acknowledged");
		Ok(())
	}
}

/// The served-bytes count up to which the data plane forwards: the credit past the latest
/// receipt, never beyond what the deposit can pay.
fn limit(meter: &Meter) -> u64 {
	meter.latest().bytes.saturating_add(meter.credit_limit_bytes()).min(meter.affordable_bytes())
}

fn report(meter: &Meter, peer: &Peer, seconds: u64, blocked: bool) -> UsageReport {
	UsageReport {
		served_bytes: peer.meter.served(),
		seconds,
		paid_bytes: meter.latest().bytes,
		paid_seconds: meter.latest().seconds,
		sequence: meter.latest().sequence,
		blocked,
	}
}
