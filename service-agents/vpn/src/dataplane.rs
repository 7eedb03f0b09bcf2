//! The WireGuard data plane: boringtun's protocol engine between a TUN interface and a UDP
//! socket, on three OS threads (TUN → network, network → TUN, timers), with per-peer byte
//! metering and a forwarding limit the control channel moves as receipts arrive.
//!
//! The agent runs one engine for all its clients ([`Role::Agent`]): a peer is found by its
//! tunnel address (TUN side) or its WireGuard index or static key (network side); a peer may
//! only send from its own tunnel address, and clients cannot reach each other. A client runs
//! an engine with one peer, the agent ([`Role::Client`]), that carries everything routed into
//! its interface.

use std::{
	collections::HashMap,
	io,
	net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
	os::fd::AsRawFd,
	sync::{
		atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
		Arc, Mutex, RwLock,
	},
	thread::JoinHandle,
	time::{Duration, Instant},
};

use boringtun::{
	noise::{handshake::parse_handshake_anon, rate_limiter::RateLimiter, Packet, Tunn, TunnResult},
	x25519,
};

use crate::tun::Tun;

/// How often the blocking threads look at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// Handshake-initiation rate (per second) above which the agent answers with cookies.
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// Packet buffers: the largest IP packet plus WireGuard's overhead.
const BUFFER: usize = 65_536 + 256;
/// UDP socket buffers (4 MiB): bursts of a fast tunnel must not overflow them.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// Which side of the tunnel an engine is.
#[derive(Clone, Copy, Debug)]
pub enum Role {
	/// The provider: many peers, each confined to its address in `pool`.
	Agent {
		/// The pool's network address.
		network: Ipv4Addr,
		/// The pool's prefix length.
		prefix: u8,
	},
	/// A client: one peer that carries everything.
	Client,
}

/// A peer to install.
pub struct PeerConfig {
	/// The peer's WireGuard public key.
	pub public_key: [u8; 32],
	/// The pre-shared key from the post-quantum handshake.
	pub preshared_key: [u8; 32],
	/// The peer's tunnel address (agent role) or the agent's gateway address (client role).
	pub address: Ipv4Addr,
	/// Where to send to before the peer has sent anything (the client knows the agent's).
	pub endpoint: Option<SocketAddr>,
	/// WireGuard persistent keepalive, seconds.
	pub keepalive: Option<u16>,
	/// Bytes already counted for this session (the meter's starting point).
	pub served_bytes: u64,
	/// Forward while the served count stays at or below this (`u64::MAX`: no limit).
	pub limit: u64,
}

/// A peer's byte counters and forwarding limit.
#[derive(Debug, Default)]
pub struct PeerMeter {
	/// Inner bytes sent to the peer.
	pub to_peer: AtomicU64,
	/// Inner bytes received from the peer and forwarded.
	pub from_peer: AtomicU64,
	/// Packets dropped because the limit was reached.
	pub dropped_unpaid: AtomicU64,
	served: AtomicU64,
	limit: AtomicU64,
	paid: AtomicU64,
}

impl PeerMeter {
	/// Bytes counted in both directions since the session began.
	pub fn served(&self) -> u64 {
		self.served.load(Relaxed)
	}

	/// Forward while the served count stays at or below `limit`.
	pub fn set_limit(&self, limit: u64) {
		self.limit.store(limit, Relaxed);
	}

	/// The current limit.
	pub fn limit(&self) -> u64 {
		self.limit.load(Relaxed)
	}

	/// Records the bytes the latest receipt covers (the control channel's view; metrics).
	pub fn set_paid(&self, bytes: u64) {
		self.paid.store(bytes, Relaxed);
	}

	/// Bytes served but not yet covered by a receipt.
	pub fn unpaid(&self) -> u64 {
		self.served().saturating_sub(self.paid.load(Relaxed))
	}

	/// Counts `n` bytes if the limit allows them.
	fn try_count(&self, n: u64) -> bool {
		let limit = self.limit.load(Relaxed);
		let before = self.served.fetch_add(n, Relaxed);
		if before.saturating_add(n) > limit {
			self.served.fetch_sub(n, Relaxed);
			self.dropped_unpaid.fetch_add(1, Relaxed);
			return false;
		}
		true
	}
}

/// One installed peer.
pub struct Peer {
	tunn: Mutex<Tunn>,
	endpoint: RwLock<Option<SocketAddr>>,
	address: Ipv4Addr,
	index: u32,
	public_key: [u8; 32],
	keepalive: Option<u16>,
	/// Its counters.
	pub meter: PeerMeter,
	handshake_at: Mutex<Option<Instant>>,
}

impl Peer {
	/// The peer's tunnel address.
	pub fn address(&self) -> Ipv4Addr {
		self.address
	}

	/// Where its packets come from now.
	pub fn endpoint(&self) -> Option<SocketAddr> {
		*self.endpoint.read().unwrap_or_else(|p| p.into_inner())
	}

	/// When the last WireGuard handshake with it completed (as seen by the timers).
	pub fn last_handshake(&self) -> Option<Instant> {
		*self.handshake_at.lock().unwrap_or_else(|p| p.into_inner())
	}
}

#[derive(Default)]
struct PeerTable {
	by_address: HashMap<Ipv4Addr, Arc<Peer>>,
	by_index: HashMap<u32, Arc<Peer>>,
	by_key: HashMap<[u8; 32], Arc<Peer>>,
}

/// Engine-wide counters.
#[derive(Debug, Default)]
pub struct EngineStats {
	/// Datagrams that were not valid WireGuard for any peer.
	pub invalid_datagrams: AtomicU64,
	/// Packets from a peer with a source address other than its own.
	pub spoofed_packets: AtomicU64,
	/// Packets from one client to another (dropped).
	pub isolated_packets: AtomicU64,
	/// Packets for an address with no peer.
	pub unroutable_packets: AtomicU64,
}

struct Shared {
	tun: Tun,
	udp: UdpSocket,
	private: x25519::StaticSecret,
	public: x25519::PublicKey,
	limiter: Arc<RateLimiter>,
	peers: RwLock<PeerTable>,
	stop: AtomicBool,
	role: Role,
	next_index: AtomicU32,
	stats: EngineStats,
	/// The local ports ([`LocalPort`]) by their addresses.
	locals: RwLock<HashMap<SocketAddr, tokio::sync::mpsc::Sender<Vec<u8>>>>,
	next_local: AtomicU32,
	/// Where QUIC packets arriving on the WireGuard socket go ([`Engine::quic_socket`]).
	quic: std::sync::OnceLock<tokio::sync::mpsc::Sender<(Vec<u8>, SocketAddr)>>,
}

/// A running data plane. Dropping it stops its threads.
pub struct Engine {
	shared: Arc<Shared>,
	threads: Vec<JoinHandle<()>>,
}

fn set_buffer(socket: &UdpSocket, force: libc::c_int, plain: libc::c_int) {
	for option in [force, plain] {
		// SAFETY: a valid socket and a c_int option value of the right size.
		let rc = unsafe {
			libc::setsockopt(
				socket.as_raw_fd(),
				libc::SOL_SOCKET,
				option,
				&SOCKET_BUFFER as *const libc::c_int as *const libc::c_void,
				std::mem::size_of::<libc::c_int>() as libc::socklen_t,
			)
		};
		if rc == 0 {
			return;
		}
	}
}

impl Engine {
	/// Starts the threads over `tun` and `udp` with the WireGuard key `private`.
	pub fn start(tun: Tun, udp: UdpSocket, private: x25519::StaticSecret, role: Role) -> io::Result<Engine> {
		udp.set_read_timeout(Some(POLL))?;
		set_buffer(&udp, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF);
		set_buffer(&udp, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF);
		let public = x25519::PublicKey::from(&private);
		let shared = Arc::new(Shared {
			tun,
			udp,
			limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
			private,
			public,
			peers: RwLock::new(PeerTable::default()),
			stop: AtomicBool::new(false),
			role,
			next_index: AtomicU32::new(1),
			stats: EngineStats::default(),
			locals: RwLock::new(HashMap::new()),
			next_local: AtomicU32::new(1),
			quic: std::sync::OnceLock::new(),
		});
		let mut threads = Vec::new();
		for (name, body) in [
			("wg-tun", tun_to_network as fn(&Shared)),
			("wg-udp", network_to_tun as fn(&Shared)),
			("wg-timers", timers as fn(&Shared)),
		] {
			let shared = shared.clone();
			threads.push(std::thread::Builder::new().name(name.into()).spawn(move || body(&shared))?);
		}
		Ok(Engine { shared, threads })
	}

	/// A new [`LocalPort`] into this engine.
	pub fn local_port(&self) -> LocalPort {
		let n = self.shared.next_local.fetch_add(1, Relaxed) & 0x00ff_ffff;
		let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(n.max(1))), 1);
		let (sender, receiver) = tokio::sync::mpsc::channel(LOCAL_QUEUE);
		self.shared.locals.write().unwrap_or_else(|p| p.into_inner()).insert(address, sender);
		let open = Arc::new(LocalRegistration { shared: Arc::downgrade(&self.shared), address });
		LocalPort {
			address,
			input: LocalInput { shared: self.shared.clone(), address, buffer: vec![0u8; BUFFER], _open: open.clone() },
			output: LocalOutput { receiver, _open: open },
		}
	}

	/// Shares the engine's UDP socket with a QUIC endpoint (the agent's HTTP/3, on the port
	/// number of its HTTPS port, which is WireGuard's too by default): datagrams whose first
	/// byte has the QUIC fixed bit (0x40) go to the returned socket, the rest to WireGuard,
	/// whose messages start with a type byte 1 to 4. `None` if one was made already.
	pub fn quic_socket(&self) -> io::Result<Option<QuicSocket>> {
		let (sender, receiver) = tokio::sync::mpsc::channel(QUIC_QUEUE);
		if self.shared.quic.set(sender).is_err() {
			return Ok(None);
		}
		Ok(Some(QuicSocket {
			udp: self.shared.udp.try_clone()?,
			local: self.shared.udp.local_addr()?,
			incoming: std::sync::Mutex::new(receiver),
		}))
	}

	/// The engine's WireGuard public key.
	pub fn public_key(&self) -> [u8; 32] {
		*self.shared.public.as_bytes()
	}

	/// The UDP port it listens on.
	pub fn port(&self) -> io::Result<u16> {
		Ok(self.shared.udp.local_addr()?.port())
	}

	/// The TUN interface's name.
	pub fn interface(&self) -> &str {
		self.shared.tun.name()
	}

	/// Counters.
	pub fn stats(&self) -> &EngineStats {
		&self.shared.stats
	}

	/// Installs a peer (replacing one with the same address or key) and, if its endpoint is
	/// known, starts the WireGuard handshake with it.
	pub fn add_peer(&self, config: PeerConfig) -> Arc<Peer> {
		let index = self.shared.next_index.fetch_add(1, Relaxed) & 0x00ff_ffff;
		let tunn = Tunn::new(
			self.shared.private.clone(),
			x25519::PublicKey::from(config.public_key),
			Some(config.preshared_key),
			config.keepalive,
			index,
			Some(self.shared.limiter.clone()),
		);
		let peer = Arc::new(Peer {
			tunn: Mutex::new(tunn),
			endpoint: RwLock::new(config.endpoint),
			address: config.address,
			index,
			public_key: config.public_key,
			keepalive: config.keepalive,
			meter: PeerMeter {
				served: AtomicU64::new(config.served_bytes),
				limit: AtomicU64::new(config.limit),
				..Default::default()
			},
			handshake_at: Mutex::new(None),
		});
		{
			let mut table = self.shared.peers.write().unwrap_or_else(|p| p.into_inner());
			if let Some(old) = table.by_address.remove(&config.address) {
				table.by_index.remove(&old.index);
				table.by_key.remove(&old.public_key);
			}
			if let Some(old) = table.by_key.remove(&config.public_key) {
				table.by_index.remove(&old.index);
				table.by_address.remove(&old.address);
			}
			table.by_address.insert(peer.address, peer.clone());
			table.by_index.insert(index, peer.clone());
			table.by_key.insert(peer.public_key, peer.clone());
		}
		if let Some(endpoint) = config.endpoint {
			let mut buf = vec![0u8; 256];
			let mut tunn = peer.tunn.lock().unwrap_or_else(|p| p.into_inner());
			if let TunnResult::WriteToNetwork(packet) = tunn.format_handshake_initiation(&mut buf, false) {
				let _ = self.shared.udp.send_to(packet, endpoint);
			}
		}
		peer
	}

	/// Gives `peer` a new pre-shared key. WireGuard's state with it starts over (boringtun
	/// cannot change the key of a live session): the next packet either way makes a new
	/// handshake, mixing the new key; with `initiate`, that handshake starts now. Packets in
	/// flight under the old session are dropped.
	pub fn set_preshared_key(&self, peer: &Peer, preshared_key: [u8; 32], initiate: bool) {
		let tunn = Tunn::new(
			self.shared.private.clone(),
			x25519::PublicKey::from(peer.public_key),
			Some(preshared_key),
			peer.keepalive,
			peer.index,
			Some(self.shared.limiter.clone()),
		);
		*peer.tunn.lock().unwrap_or_else(|p| p.into_inner()) = tunn;
		*peer.handshake_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
		if initiate {
			self.initiate_handshake(peer);
		}
	}

	/// Starts a WireGuard handshake with `peer` now, if its endpoint is known.
	pub fn initiate_handshake(&self, peer: &Peer) {
		let Some(endpoint) = peer.endpoint() else { return };
		let mut buf = vec![0u8; 256];
		let mut tunn = peer.tunn.lock().unwrap_or_else(|p| p.into_inner());
		if let TunnResult::WriteToNetwork(packet) = tunn.format_handshake_initiation(&mut buf, false) {
			let _ = self.shared.udp.send_to(packet, endpoint);
		}
	}

	/// Removes `peer`; its traffic stops at once.
	pub fn remove_peer(&self, peer: &Peer) {
		let mut table = self.shared.peers.write().unwrap_or_else(|p| p.into_inner());
		if table.by_index.get(&peer.index).is_some_and(|p| std::ptr::eq(p.as_ref(), peer)) {
			table.by_index.remove(&peer.index);
			table.by_address.remove(&peer.address);
			table.by_key.remove(&peer.public_key);
		}
	}

	/// Stops the threads and waits for them.
	pub fn stop(mut self) {
		self.halt();
	}

	fn halt(&mut self) {
		self.shared.stop.store(true, Relaxed);
		for t in self.threads.drain(..) {
			let _ = t.join();
		}
	}
}

impl Drop for Engine {
	fn drop(&mut self) {
		self.halt();
	}
}

impl Shared {
	fn peer_for_destination(&self, destination: Ipv4Addr) -> Option<Arc<Peer>> {
		let table = self.peers.read().unwrap_or_else(|p| p.into_inner());
		match self.role {
			Role::Agent { .. } => table.by_address.get(&destination).cloned(),
			Role::Client => table.by_address.values().next().cloned(),
		}
	}

	fn in_pool(&self, address: Ipv4Addr) -> bool {
		match self.role {
			Role::Agent { network, prefix } => {
				let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
				u32::from(address) & mask == u32::from(network) & mask
			},
			Role::Client => false,
		}
	}

	fn send(&self, packet: &[u8], to: Option<SocketAddr>) {
		let Some(to) = to else { return };
		if is_local(to) {
			// A full channel drops the datagram, as a full socket buffer would.
			if let Some(sink) = self.locals.read().unwrap_or_else(|p| p.into_inner()).get(&to) {
				let _ = sink.try_send(packet.to_vec());
			}
			return;
		}
		if let Err(e) = self.udp.send_to(packet, to) {
			tracing::trace!(%to, error = %e, "UDP send failed");
		}
	}
}

/// Whether `address` is a [`LocalPort`]'s: in 0.0.0.0/8 ("this network"), which is never the
/// source of a datagram from the network.
fn is_local(address: SocketAddr) -> bool {
	matches!(address.ip(), IpAddr::V4(v4) if v4.octets()[0] == 0)
}

/// Datagrams a local port's channel holds before the engine drops more (as a full socket
/// buffer would).
const LOCAL_QUEUE: usize = 1024;

/// A way into the engine without a socket, for a transport in the same process that carries
/// WireGuard inside something else (`crate::https`): datagrams given to
/// [`LocalInput::deliver`] are processed as if they came from the network at
/// [`LocalPort::address`], and what the engine sends to that address arrives at
/// [`LocalOutput`]. Dropping both halves closes it.
pub struct LocalPort {
	/// The port's address, as peers' endpoints name it.
	pub address: SocketAddr,
	/// Into the engine.
	pub input: LocalInput,
	/// Out of the engine.
	pub output: LocalOutput,
}

/// Datagrams into the engine through a [`LocalPort`].
pub struct LocalInput {
	shared: Arc<Shared>,
	address: SocketAddr,
	buffer: Vec<u8>,
	_open: Arc<LocalRegistration>,
}

impl LocalInput {
	/// Processes `datagram` as one from the network (on the caller's thread).
	pub fn deliver(&mut self, datagram: &[u8]) {
		receive(&self.shared, datagram, self.address, &mut self.buffer);
	}
}

/// Datagrams the engine sends to a [`LocalPort`].
pub struct LocalOutput {
	receiver: tokio::sync::mpsc::Receiver<Vec<u8>>,
	_open: Arc<LocalRegistration>,
}

impl LocalOutput {
	/// The next datagram; `None` once the engine stopped.
	pub async fn recv(&mut self) -> Option<Vec<u8>> {
		self.receiver.recv().await
	}

	/// A datagram already queued, if any.
	pub fn try_recv(&mut self) -> Option<Vec<u8>> {
		self.receiver.try_recv().ok()
	}
}

/// Removes a local port from its engine when both halves are gone.
struct LocalRegistration {
	shared: std::sync::Weak<Shared>,
	address: SocketAddr,
}

impl Drop for LocalRegistration {
	fn drop(&mut self) {
		if let Some(shared) = self.shared.upgrade() {
			shared.locals.write().unwrap_or_else(|p| p.into_inner()).remove(&self.address);
		}
	}
}

fn ipv4_source(packet: &[u8]) -> Option<Ipv4Addr> {
	(packet.len() >= 20 && packet[0] >> 4 == 4).then(|| Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]))
}

fn tun_to_network(shared: &Shared) {
	let mut packet = vec![0u8; BUFFER];
	let mut out = vec![0u8; BUFFER];
	while !shared.stop.load(Relaxed) {
		match shared.tun.wait_readable(POLL) {
			Ok(true) => {},
			Ok(false) => continue,
			Err(e) => {
				tracing::error!(error = %e, "TUN poll failed");
				std::thread::sleep(POLL);
				continue;
			},
		}
		let n = match shared.tun.read_packet(&mut packet) {
			Ok(n) => n,
			Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => continue,
			Err(e) => {
				tracing::error!(error = %e, "TUN read failed");
				std::thread::sleep(POLL);
				continue;
			},
		};
		let src = &packet[..n];
		let Some(IpAddr::V4(destination)) = Tunn::dst_address(src) else { continue };
		let Some(peer) = shared.peer_for_destination(destination) else {
			shared.stats.unroutable_packets.fetch_add(1, Relaxed);
			continue;
		};
		if !peer.meter.try_count(n as u64) {
			continue;
		}
		peer.meter.to_peer.fetch_add(n as u64, Relaxed);
		let mut tunn = peer.tunn.lock().unwrap_or_else(|p| p.into_inner());
		match tunn.encapsulate(src, &mut out) {
			TunnResult::WriteToNetwork(datagram) => shared.send(datagram, peer.endpoint()),
			TunnResult::Err(e) => tracing::debug!(error = ?e, "encapsulate failed"),
			_ => {},
		}
	}
}

fn network_to_tun(shared: &Shared) {
	let mut datagram = vec![0u8; BUFFER];
	let mut out = vec![0u8; BUFFER];
	while !shared.stop.load(Relaxed) {
		let (n, from) = match shared.udp.recv_from(&mut datagram) {
			Ok(r) => r,
			Err(e)
				if matches!(
					e.kind(),
					io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
				) =>
			{
				continue
			},
			Err(e) => {
				// ICMP errors (port unreachable) surface here on Linux; they are not fatal.
				tracing::trace!(error = %e, "UDP receive failed");
				continue;
			},
		};
		if n > 0 && datagram[0] & QUIC_FIXED_BIT != 0 {
			if let Some(quic) = shared.quic.get() {
				// A full queue drops the packet, as a full socket buffer would.
				let _ = quic.try_send((datagram[..n].to_vec(), from));
				continue;
			}
		}
		receive(shared, &datagram[..n], from, &mut out);
	}
}

/// The bit every QUIC packet sets in its first byte (RFC 9000 §17: the fixed bit; RFC 9287
/// lets a peer that asked for it clear it, which ours do not); WireGuard's first byte is its
/// message type, 1 to 4.
const QUIC_FIXED_BIT: u8 = 0x40;
/// QUIC packets queued between the data plane's receiving thread and the QUIC endpoint.
const QUIC_QUEUE: usize = 4096;

/// The QUIC side of the engine's UDP socket ([`Engine::quic_socket`]): what quinn reads and
/// writes in place of a socket of its own.
#[derive(Debug)]
pub struct QuicSocket {
	udp: UdpSocket,
	local: SocketAddr,
	incoming: std::sync::Mutex<tokio::sync::mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
}

/// A shared socket is always worth a try to write to (a full send buffer blocks briefly).
#[derive(Debug)]
struct AlwaysWritable;

impl quinn::UdpPoller for AlwaysWritable {
	fn poll_writable(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context) -> std::task::Poll<io::Result<()>> {
		std::task::Poll::Ready(Ok(()))
	}
}

impl quinn::AsyncUdpSocket for QuicSocket {
	fn create_io_poller(self: Arc<Self>) -> std::pin::Pin<Box<dyn quinn::UdpPoller>> {
		Box::pin(AlwaysWritable)
	}

	fn try_send(&self, transmit: &quinn::udp::Transmit) -> io::Result<()> {
		let segment = transmit.segment_size.unwrap_or(transmit.contents.len()).max(1);
		for datagram in transmit.contents.chunks(segment) {
			self.udp.send_to(datagram, transmit.destination)?;
		}
		Ok(())
	}

	fn poll_recv(
		&self,
		cx: &mut std::task::Context,
		bufs: &mut [io::IoSliceMut<'_>],
		meta: &mut [quinn::udp::RecvMeta],
	) -> std::task::Poll<io::Result<usize>> {
		let (Some(buf), Some(meta)) = (bufs.first_mut(), meta.first_mut()) else {
			return std::task::Poll::Ready(Ok(0));
		};
		let mut incoming = self.incoming.lock().unwrap_or_else(|p| p.into_inner());
		match incoming.poll_recv(cx) {
			std::task::Poll::Ready(Some((datagram, from))) => {
				let n = datagram.len().min(buf.len());
				buf[..n].copy_from_slice(&datagram[..n]);
				*meta = quinn::udp::RecvMeta { addr: from, len: n, stride: n, ecn: None, dst_ip: None };
				std::task::Poll::Ready(Ok(1))
			},
			std::task::Poll::Ready(None) => std::task::Poll::Ready(Err(io::Error::other("the data plane stopped"))),
			std::task::Poll::Pending => std::task::Poll::Pending,
		}
	}

	fn local_addr(&self) -> io::Result<SocketAddr> {
		Ok(self.local)
	}

	fn may_fragment(&self) -> bool {
		// Linux sets DF on UDP by default (IP_PMTUDISC_WANT): quinn may discover the path MTU.
		false
	}
}

/// Processes one datagram from `from` (the network, or a [`LocalPort`]): handshakes answered,
/// packets decrypted and forwarded to the TUN interface, the peer's endpoint updated.
fn receive(shared: &Shared, input: &[u8], from: SocketAddr, out: &mut [u8]) {
	let peer = {
		let table = shared.peers.read().unwrap_or_else(|p| p.into_inner());
		match Tunn::parse_incoming_packet(input) {
			Ok(Packet::HandshakeInit(init)) => {
				match shared.limiter.verify_packet(Some(from.ip()), input, out) {
					Ok(_) => {},
					Err(TunnResult::WriteToNetwork(cookie)) => {
						let cookie = cookie.to_vec();
						drop(table);
						shared.send(&cookie, Some(from));
						return;
					},
					Err(_) => {
						shared.stats.invalid_datagrams.fetch_add(1, Relaxed);
						return;
					},
				}
				parse_handshake_anon(&shared.private, &shared.public, &init)
					.ok()
					.and_then(|half| table.by_key.get(&half.peer_static_public).cloned())
			},
			Ok(Packet::HandshakeResponse(p)) => table.by_index.get(&(p.receiver_idx >> 8)).cloned(),
			Ok(Packet::PacketCookieReply(p)) => table.by_index.get(&(p.receiver_idx >> 8)).cloned(),
			Ok(Packet::PacketData(p)) => table.by_index.get(&(p.receiver_idx >> 8)).cloned(),
			Err(_) => None,
		}
	};
	let Some(peer) = peer else {
		shared.stats.invalid_datagrams.fetch_add(1, Relaxed);
		return;
	};
	let mut tunn = peer.tunn.lock().unwrap_or_else(|p| p.into_inner());
	let mut result = tunn.decapsulate(Some(from.ip()), input, out);
	let mut authenticated = false;
	loop {
		match result {
			TunnResult::Done => break,
			TunnResult::Err(e) => {
				tracing::trace!(%from, error = ?e, "datagram refused");
				shared.stats.invalid_datagrams.fetch_add(1, Relaxed);
				break;
			},
			TunnResult::WriteToNetwork(reply) => {
				authenticated = true;
				shared.send(reply, Some(from));
				// Flush packets queued while the handshake was under way.
				result = tunn.decapsulate(None, &[], out);
				continue;
			},
			TunnResult::WriteToTunnelV4(packet, source) => {
				authenticated = true;
				forward_to_tun(shared, &peer, packet, source);
				break;
			},
			TunnResult::WriteToTunnelV6(..) => {
				authenticated = true;
				break;
			},
		}
	}
	drop(tunn);
	if authenticated && peer.endpoint() != Some(from) {
		*peer.endpoint.write().unwrap_or_else(|p| p.into_inner()) = Some(from);
	}
}

fn forward_to_tun(shared: &Shared, peer: &Peer, packet: &[u8], source: Ipv4Addr) {
	if let Role::Agent { .. } = shared.role {
		if source != peer.address || ipv4_source(packet) != Some(source) {
			shared.stats.spoofed_packets.fetch_add(1, Relaxed);
			return;
		}
		if let Some(IpAddr::V4(destination)) = Tunn::dst_address(packet) {
			if shared.in_pool(destination)
				&& shared.peers.read().unwrap_or_else(|p| p.into_inner()).by_address.contains_key(&destination)
			{
				shared.stats.isolated_packets.fetch_add(1, Relaxed);
				return;
			}
		}
	}
	if !peer.meter.try_count(packet.len() as u64) {
		return;
	}
	peer.meter.from_peer.fetch_add(packet.len() as u64, Relaxed);
	if let Err(e) = shared.tun.write_packet(packet) {
		tracing::debug!(error = %e, "TUN write failed");
	}
}

fn timers(shared: &Shared) {
	let mut out = vec![0u8; BUFFER];
	let mut last_reset = Instant::now();
	while !shared.stop.load(Relaxed) {
		std::thread::sleep(Duration::from_millis(100));
		if last_reset.elapsed() >= Duration::from_secs(1) {
			shared.limiter.reset_count();
			last_reset = Instant::now();
		}
		let peers: Vec<Arc<Peer>> =
			shared.peers.read().unwrap_or_else(|p| p.into_inner()).by_index.values().cloned().collect();
		for peer in peers {
			let mut tunn = peer.tunn.lock().unwrap_or_else(|p| p.into_inner());
			if let TunnResult::WriteToNetwork(packet) = tunn.update_timers(&mut out) {
				shared.send(packet, peer.endpoint());
			}
			let since = tunn.time_since_last_handshake();
			drop(tunn);
			*peer.handshake_at.lock().unwrap_or_else(|p| p.into_inner()) =
				since.and_then(|d| Instant::now().checked_sub(d));
		}
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn local_addresses_are_never_network_sources() {
		// 0.0.0.0/8 is "this network": Linux drops datagrams from it as martians, so a peer
		// endpoint there can only be a local port, and the engine never sends to the network
		// for it.
		assert!(is_local(SocketAddr::from(([0, 0, 0, 1], 1))));
		assert!(is_local(SocketAddr::from(([0, 255, 255, 255], 1))));
		for network in [[127, 0, 0, 1], [10, 99, 1, 2], [1, 0, 0, 0], [255, 255, 255, 255]] {
			assert!(!is_local(SocketAddr::from((network, 51820))), "{network:?}");
		}
		assert!(!is_local("[::1]:1".parse().unwrap()));
	}
}
