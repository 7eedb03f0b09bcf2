//! The dVPN provider agent: the control channel (the post-quantum handshake, then the sealed
//! payment loop) and the WireGuard data plane, on the agent core's sessions, receipt
//! pipeline, settlement, limits, metrics and lifecycle.

use std::{
	collections::HashMap,
	net::{Ipv4Addr, SocketAddr},
	sync::{Arc, Mutex},
	time::Duration,
};

use interlattice_agent_core::{
	chain::ChainClient,
	identity::Identity,
	lifecycle::Lifecycle,
	limits::{accept_loop, Admission, ConnectionLimits},
	receipts::ReceiptDesk,
	sessions::{SessionBook, SessionEntry, SessionRefusal},
	start::{self, StartError},
	upkeep::Upkeep,
	Hold, ReceiptStore, Settler,
};
use interlattice_pq_crypto::keys::MlDsaKeyPair;
use interlattice_runtime::AccountId;
use pallet_provider_registry::ServiceKind;
use tokio::{
	io::{AsyncReadExt, AsyncWriteExt},
	net::{
		tcp::{OwnedReadHalf, OwnedWriteHalf},
		TcpListener, TcpStream,
	},
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
	handshake::AgentHandshake,
	sealed::Sealer,
	tun::{EgressPolicy, Tun},
};

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
	_egress: EgressPolicy,
}

impl Agent {
	/// Connects to the chain, checks the registration, opens the receipt store, creates the
	/// tunnel interface with its egress policy and starts the data plane.
	pub async fn start(config: AgentConfig, life: Lifecycle) -> Result<Arc<Self>, StartError> {
		let identity = Identity::load(&config.provider, true).map_err(StartError::Config)?;
		let pool = config.service.pool().map_err(StartError::Config)?;
		let (chain, _) = start::connect_registered(ServiceKind::Vpn, &config, &identity).await?;
		let Identity { account, provider, service_key } = identity;
		let service_key = service_key.expect("loaded with needs_service_key; qed");
		let store = ReceiptStore::open(&config.payment.receipts_dir)?;
		tracing::info!(dir = %config.payment.receipts_dir.display(), unsettled = store.unsettled().len(), "receipt store opened");
		let store = Arc::new(Mutex::new(store));

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
		let sessions = Arc::new(SessionBook::new(
			chain.clone(),
			provider.clone(),
			ServiceKind::Vpn,
			config.payment.policy(),
			store.clone(),
		));
		let receipts =
			ReceiptDesk::new(store.clone(), config.payment.max_receipts_per_second, metrics.core.clone(), &life);
		let settler = Settler::new(chain.clone(), account, store);
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
		tracing::info!(control = %self.config.service.control.listen, endpoint = ?self.config.provider.endpoint, "vpn-agent serving");
		let upkeep = Upkeep::start(
			&self.life,
			self.sessions.clone(),
			self.settler.clone(),
			&self.metrics.core,
			self.config.metrics.listen,
			Duration::from_secs(self.config.payment.settle_interval_secs),
			|| {},
		);
		let limits =
			ConnectionLimits::new(self.config.limits.max_connections, self.config.limits.max_connections_per_ip);
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

	/// One control connection, from the preamble to the end of its tunnel.
	async fn connection(self: Arc<Self>, stream: TcpStream, from: SocketAddr, _admission: Admission) {
		let (reader, mut writer) = stream.into_split();
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
		mut reader: OwnedReadHalf,
		writer: &mut OwnedWriteHalf,
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
			Ok(()) => self.payment_loop(reader, writer, &mut sealer, opener, &peer, &replaced, &entry).await,
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
		reader: OwnedReadHalf,
		writer: &mut OwnedWriteHalf,
		sealer: &mut Sealer,
		opener: crate::sealed::Opener,
		peer: &Arc<Peer>,
		replaced: &Notify,
		entry: &Arc<SessionEntry>,
	) -> Result<(), (ErrorCode, String)> {
		let session_id = entry.id;
		let interval = u64::from(self.config.service.tunnel.receipt_interval_secs);
		let idle = Duration::from_secs(self.config.limits.idle_timeout_secs);
		let (mut messages, read_task) = spawn_sealed_reader::<ClientMessage, _>(reader, opener);
		let mut ticker = tokio::time::interval(Duration::from_secs(1));
		let mut heard = tokio::time::Instant::now();
		let (mut to_client, mut from_client, mut dropped) = (0u64, 0u64, 0u64);
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
