//! The dVPN end to end, across network namespaces made by the test (it runs as root):
//!
//! ```text
//!   client ns            agent ns                  internet ns
//!   vpn connect ──eth0── 10.99.1.1  vpn-agent ──── 10.99.2.2 HTTP server
//!   10.99.1.2            ilvpn0 10.77.0.1, NAT     (no route to the client)
//! ```
//!
//! A dev node runs in the root namespace; its RPC is relayed onto the agent's and client's
//! loopback. Eve registers as a VPN provider with `vpn-agent register`; Alice connects with
//! `vpn connect`, fetches a file from the "internet" through the tunnel, disconnects, and the
//! chain pays Eve for the metered bytes and refunds Alice the rest. Also: a client that stops
//! paying is cut off after the credit limit and the provider is paid what was signed; bad
//! sessions and garbage are refused while other tunnels keep working; an agent SIGKILLed mid
//! session restarts without losing an acknowledged receipt. Behind a censor (a router
//! namespace that drops WireGuard and the plain control channel by signature, then all UDP),
//! the HTTPS transport carries a paid tunnel and the censor's probes see a web site.

use std::{
	io::Read,
	net::TcpStream,
	path::{Path, PathBuf},
	process::{Child, Command, Output, Stdio},
	time::Duration,
};

use interlattice_agent_core::chain::ChainClient;
use interlattice_pq_crypto::keys::MlDsaKeyPair;
use interlattice_runtime::RuntimeEvent;
use interlattice_tests::{
	chain::events,
	free_port,
	netns::{link, serve_file, Netns},
	node::workspace_binary,
	wait_for, Node,
};
use interlattice_vpn::{
	client::VpnClient,
	control::{decode_body, frame_length, AgentMessage, ErrorCode},
};
use pallet_session_escrow::types::max_amount_owed;
use sp_core::crypto::Ss58Codec;
use sp_keyring::Sr25519Keyring::{Alice, Bob, Eve};

const RECEIPT_INTERVAL: u64 = 256 << 10;
const CREDIT: u64 = 2 << 20;
const UNIT: u128 = 1_000_000_000_000;

/// A process started by the test, killed by PID when dropped.
struct Process {
	child: Child,
	log: PathBuf,
}

impl Process {
	fn start(mut command: Command, log: PathBuf) -> Process {
		let file = std::fs::File::create(&log).unwrap();
		let child = command.stdout(Stdio::from(file.try_clone().unwrap())).stderr(Stdio::from(file)).spawn().unwrap();
		Process { child, log }
	}

	fn log(&self) -> String {
		std::fs::read_to_string(&self.log).unwrap_or_default()
	}

	fn signal(&mut self, signal: &str) {
		let _ = Command::new("kill").args([signal, &self.child.id().to_string()]).status();
	}

	fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
		let status = wait_for(timeout, "the process to exit", || self.child.try_wait().unwrap());
		status.unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
	}
}

impl Drop for Process {
	fn drop(&mut self) {
		let _ = self.child.kill();
		let _ = self.child.wait();
	}
}

struct World {
	dir: tempfile::TempDir,
	node: Node,
	runtime: tokio::runtime::Runtime,
	chain: ChainClient,
	rpc_port: u16,
	agent_config: PathBuf,
	metrics_port: u16,
	peers: std::sync::Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>,
	file: Vec<u8>,
	// Namespaces last: processes inside them end first.
	client_ns: Netns,
	/// A router between the client and the agent (`world_behind_a_censor`).
	censor_ns: Option<Netns>,
	agent_ns: Netns,
	_internet_ns: Netns,
}

fn data(len: usize, seed: u8) -> Vec<u8> {
	interlattice_tests::pseudo_random_bytes(len, seed)
}

fn world() -> World {
	world_with(false)
}

/// The client reaches the agent through a third namespace, a router that can censor:
/// client 10.99.3.2 ── 10.99.3.1 censor 10.99.1.2 ── 10.99.1.1 agent.
fn world_behind_a_censor() -> World {
	world_with(true)
}

fn world_with(censor: bool) -> World {
	let dir = tempfile::tempdir().unwrap();
	let node = Node::start_dev(&dir.path().join("node"));
	let rpc_port = node.config.rpc_port;
	let runtime = tokio::runtime::Runtime::new().unwrap();
	let chain = runtime.block_on(ChainClient::connect(&format!("http://127.0.0.1:{rpc_port}"))).unwrap();

	let agent_ns = Netns::new("agent");
	let client_ns = Netns::new("client");
	let internet_ns = Netns::new("inet");
	let censor_ns = censor.then(|| {
		let censor_ns = Netns::new("censor");
		link(&client_ns, "eth0", "10.99.3.2/24", &censor_ns, "eth0", "10.99.3.1/24");
		link(&censor_ns, "eth1", "10.99.1.2/24", &agent_ns, "eth0", "10.99.1.1/24");
		client_ns.ip(&["route", "add", "default", "via", "10.99.3.1"]);
		agent_ns.ip(&["route", "add", "10.99.3.0/24", "via", "10.99.1.2"]);
		let forwarding = censor_ns.command("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]).status().unwrap();
		assert!(forwarding.success());
		censor_ns
	});
	if censor_ns.is_none() {
		link(&client_ns, "eth0", "10.99.1.2/24", &agent_ns, "eth0", "10.99.1.1/24");
	}
	link(&agent_ns, "eth1", "10.99.2.1/24", &internet_ns, "eth0", "10.99.2.2/24");
	agent_ns.relay_loopback(rpc_port);
	client_ns.relay_loopback(rpc_port);
	let file = data(3 << 20, 7);
	let peers = serve_file(internet_ns.bind("10.99.2.2:8080"), file.clone());
	// What tunnels must not reach: a "cloud metadata" service (link-local, behind the agent,
	// as in a cloud VM) and a service of the agent's host itself.
	internet_ns.ip(&["address", "add", "169.254.169.254/32", "dev", "eth0"]);
	agent_ns.ip(&["route", "add", "169.254.169.254/32", "via", "10.99.2.2"]);
	serve_file(internet_ns.bind("169.254.169.254:80"), b"secret credentials".to_vec());
	serve_file(agent_ns.bind("0.0.0.0:9999"), b"the host's own service".to_vec());

	let key = dir.path().join("eve-service.key");
	MlDsaKeyPair::generate().unwrap().write_seed_file(&key).unwrap();
	let metrics_port = free_port();
	let agent_config = dir.path().join("vpn-agent.toml");
	let shipped =
		std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/vpn-agent.toml")).unwrap();
	let text = shipped
		.replace("rpc = \"http://127.0.0.1:9944\"", &format!("rpc = \"http://127.0.0.1:{rpc_port}\""))
		.replace("account = \"//Charlie\"", "account = \"//Eve\"")
		.replace("service_key = \"dev:charlie\"", &format!("service_key = \"{}\"", key.display()))
		.replace("endpoint = \"127.0.0.1:7310\"", "endpoint = \"10.99.1.1:7310\"")
		.replace("listen = \"127.0.0.1:7310\"", "listen = \"10.99.1.1:7310\"")
		.replace("credit_limit_bytes = 33554432", &format!("credit_limit_bytes = {CREDIT}"))
		.replace("receipt_interval_bytes = 4194304", &format!("receipt_interval_bytes = {RECEIPT_INTERVAL}"))
		.replace("receipt_interval_secs = 10", "receipt_interval_secs = 2")
		.replace(
			"receipts_dir = \"data/vpn-agent/receipts\"",
			&format!("receipts_dir = \"{}\"", dir.path().join("receipts").display()),
		)
		.replace("settle_interval_secs = 60", "settle_interval_secs = 3")
		// The test's "internet" is a private network: let tunnels reach it (and only it).
		.replace("# egress_allow = [\"10.99.2.0/24\"]", "egress_allow = [\"10.99.2.0/24\"]")
		.replace("listen = \"127.0.0.1:7311\"", &format!("listen = \"127.0.0.1:{metrics_port}\""));
	assert!(
		text.contains("//Eve")
			&& text.contains("10.99.1.1:7310")
			&& text.contains("settle_interval_secs = 3")
			&& text.contains(&format!("credit_limit_bytes = {CREDIT}"))
			&& text.contains("\negress_allow = [\"10.99.2.0/24\"]"),
		"the shipped config changed"
	);
	std::fs::write(&agent_config, text).unwrap();
	World {
		dir,
		node,
		runtime,
		chain,
		rpc_port,
		agent_config,
		metrics_port,
		peers,
		file,
		client_ns,
		censor_ns,
		agent_ns,
		_internet_ns: internet_ns,
	}
}

impl World {
	/// Renews tunnel keys every `interval` seconds and ends tunnels whose key is `max_age` old.
	fn set_rekey(&self, interval: u64, max_age: u64) {
		let text = std::fs::read_to_string(&self.agent_config).unwrap();
		assert!(text.contains("rekey_interval_secs = 120\nmax_key_age_secs = 180"), "the shipped config changed");
		let text = text.replace(
			"rekey_interval_secs = 120\nmax_key_age_secs = 180",
			&format!("rekey_interval_secs = {interval}\nmax_key_age_secs = {max_age}"),
		);
		std::fs::write(&self.agent_config, text).unwrap();
	}

	/// `vpn disconnect` for `state`'s running `vpn connect`, `client`; checks that the session
	/// closed paying exactly its last settled receipt and refunding the rest of its 1 LAT, and
	/// returns that receipt's bytes. `context`: more logs to show on failure.
	fn disconnect_and_close(&self, state: &str, client: &mut Process, session: u64, context: &str) -> u64 {
		let disconnect = self.vpn(state, &["disconnect"]);
		assert!(disconnect.status.success(), "{}\nclient:\n{}\n{context}", stderr(&disconnect), client.log());
		assert!(client.wait(Duration::from_secs(120)).success(), "{}\n{context}", client.log());
		let ((bytes, _, settled), closed) = outcome(&self.escrow_events(session));
		assert_eq!(closed, Some((settled, UNIT - settled)));
		bytes
	}

	fn register(&self) -> Output {
		self.agent_ns
			.command(workspace_binary("vpn-agent").to_str().unwrap())
			.args(["--config", self.agent_config.to_str().unwrap(), "register"])
			.output()
			.unwrap()
	}

	fn start_agent(&self, tag: &str) -> Process {
		let mut command = self.agent_ns.command(workspace_binary("vpn-agent").to_str().unwrap());
		command.args(["--config", self.agent_config.to_str().unwrap()]);
		let agent = Process::start(command, self.dir.path().join(format!("agent-{tag}.log")));
		wait_for(Duration::from_secs(30), "the agent to serve", || {
			agent.log().contains("vpn-agent serving").then_some(())
		})
		.unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
		agent
	}

	fn vpn_args(&self, state: &str) -> Vec<String> {
		vec![
			"--rpc".into(),
			format!("http://127.0.0.1:{}", self.rpc_port),
			"--state-dir".into(),
			self.dir.path().join(state).display().to_string(),
		]
	}

	/// `vpn ARGS` in the client namespace, to completion.
	fn vpn(&self, state: &str, args: &[&str]) -> Output {
		self.client_ns
			.command(workspace_binary("vpn").to_str().unwrap())
			.args(self.vpn_args(state))
			.args(args)
			.output()
			.unwrap()
	}

	/// `vpn connect ARGS` in the client namespace, in the background; waits for the tunnel
	/// (on `ilvpnc0` or the `--interface` in `args`).
	fn connect(&self, state: &str, tag: &str, args: &[&str]) -> Process {
		let interface = args.iter().position(|a| *a == "--interface").map_or("ilvpnc0", |i| args[i + 1]);
		let mut command = self.client_ns.command(workspace_binary("vpn").to_str().unwrap());
		command.args(self.vpn_args(state)).arg("connect").args(args);
		let client = Process::start(command, self.dir.path().join(format!("client-{tag}.log")));
		wait_for(Duration::from_secs(60), "the tunnel", || {
			let up = Command::new("ip")
				.args(["-n", &self.client_ns.name, "-o", "addr", "show", "dev", interface])
				.output()
				.ok()?;
			String::from_utf8_lossy(&up.stdout).contains("10.77.0.").then_some(())
		})
		.unwrap_or_else(|e| panic!("{e}\n{}", client.log()));
		client
	}

	/// Fetches the internet host's file from the client namespace (through the tunnel).
	fn fetch(&self, max_secs: u32) -> (bool, Vec<u8>) {
		let out = self
			.client_ns
			.command("curl")
			.args(["-sS", "--max-time", &max_secs.to_string(), "http://10.99.2.2:8080/file"])
			.output()
			.unwrap();
		(out.status.success(), out.stdout)
	}

	fn metric(&self, name: &str) -> u64 {
		let out = self
			.agent_ns
			.command("curl")
			.args(["-sS", &format!("http://127.0.0.1:{}/metrics", self.metrics_port)])
			.output()
			.unwrap();
		let text = String::from_utf8_lossy(&out.stdout);
		text.lines()
			.find_map(|l| l.strip_prefix(&format!("{name} ")))
			.and_then(|v| v.trim().parse().ok())
			.unwrap_or_else(|| panic!("no metric {name} in {text}"))
	}

	fn session_id(log: &str) -> u64 {
		log.lines()
			.find_map(|l| {
				l.strip_prefix("session ")
					.filter(|rest| rest.contains(" with "))?
					.split_whitespace()
					.next()?
					.parse()
					.ok()
			})
			.unwrap_or_else(|| panic!("no session in {log}"))
	}

	/// The escrow events of `session` (ReceiptSettled, SessionClosed) up to the best block.
	fn escrow_events(&self, session: u64) -> Vec<pallet_session_escrow::Event<interlattice_runtime::Runtime>> {
		let best = self.node.rpc.best_number().unwrap();
		let mut found = Vec::new();
		for n in 1..=best {
			let hash = self.node.rpc.block_hash(n).unwrap();
			for record in events(&self.node.rpc, &hash).unwrap() {
				if let RuntimeEvent::SessionEscrow(e) = record.event {
					let id = match &e {
						pallet_session_escrow::Event::ReceiptSettled { session_id, .. }
						| pallet_session_escrow::Event::SessionClosed { session_id, .. }
						| pallet_session_escrow::Event::SessionClosing { session_id, .. } => *session_id,
						_ => continue,
					};
					if id == session {
						found.push(e);
					}
				}
			}
		}
		found
	}
}

/// The last settled receipt (bytes, seconds, settled total) and the close (settled, refunded).
fn outcome(
	events: &[pallet_session_escrow::Event<interlattice_runtime::Runtime>],
) -> ((u64, u64, u128), Option<(u128, u128)>) {
	let mut last = (0, 0, 0);
	let mut closed = None;
	for e in events {
		match e {
			pallet_session_escrow::Event::ReceiptSettled { bytes, seconds, settled, .. } => {
				last = (*bytes, *seconds, *settled)
			},
			pallet_session_escrow::Event::SessionClosed { settled, refunded, .. } => {
				closed = Some((*settled, *refunded))
			},
			_ => {},
		}
	}
	(last, closed)
}

fn stderr(o: &Output) -> String {
	format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_paid_tunnel_carries_traffic_settles_exactly_and_refuses_bad_clients() {
	let w = world();

	// An unregistered agent refuses to start, saying what to do.
	let refused = w
		.agent_ns
		.command(workspace_binary("vpn-agent").to_str().unwrap())
		.args(["--config", w.agent_config.to_str().unwrap()])
		.output()
		.unwrap();
	assert!(!refused.status.success());
	assert!(stderr(&refused).contains("vpn-agent register"), "{}", stderr(&refused));

	// `vpn-agent register` registers Eve as configured; a second run has nothing to do.
	let registered = w.register();
	assert!(registered.status.success(), "{}", stderr(&registered));
	assert!(stderr(&registered).contains("registered in block"), "{}", stderr(&registered));
	assert!(stderr(&w.register()).contains("nothing to do"));
	let eve = Eve.to_account_id().to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into());
	let listed = w.vpn("alice", &["providers", "--country", "DE"]);
	let listing = String::from_utf8_lossy(&listed.stdout);
	assert!(
		listing.contains(&eve) && listing.contains("10.99.1.1:7310") && listing.contains("0.500000 LAT"),
		"{}",
		stderr(&listed)
	);

	let mut agent = w.start_agent("1");

	// Alice connects (everything routed into the tunnel) and fetches the file.
	let mut client = w.connect("alice", "1", &["--provider", &eve, "--account", "//Alice", "--deposit", "2"]);
	let (ok, body) = w.fetch(60);
	assert!(
		ok && body == w.file,
		"the file arrives intact through the tunnel ({} bytes)\n{}",
		body.len(),
		client.log()
	);
	// The internet host saw the agent's address (NAT), never the client's.
	assert!(w.peers.lock().unwrap().iter().all(|p| p.ip().to_string() == "10.99.2.1"), "{:?}", w.peers.lock().unwrap());
	let session = World::session_id(&client.log());
	// Issue 16 item 12: the tunnel does not reach the cloud metadata address behind the agent
	// or the agent host's own services (before: both answered through the NAT).
	for url in ["http://169.254.169.254/file", "http://10.99.2.1:9999/file"] {
		let out = w.client_ns.command("curl").args(["-sS", "--max-time", "3", url]).output().unwrap();
		assert!(!out.status.success(), "{url} answered through the tunnel: {}", String::from_utf8_lossy(&out.stdout));
	}
	// …while the gateway answers pings and the internet host still serves.
	let ping = w.client_ns.command("ping").args(["-c", "1", "-W", "2", "10.77.0.1"]).output().unwrap();
	assert!(ping.status.success(), "{}", stderr(&ping));
	// Issue 16 item 12: nothing goes around the full tunnel: no IPv6 (the link to the agent has
	// IPv6 addresses too), no DNS to a resolver on the local network (10.99.1.5 plays it).
	w.client_ns.ip(&["-6", "addr", "add", "fd99:1::2/64", "dev", "eth0", "nodad"]);
	w.agent_ns.ip(&["-6", "addr", "add", "fd99:1::1/64", "dev", "eth0", "nodad"]);
	w.agent_ns.ip(&["addr", "add", "10.99.1.5/24", "dev", "eth0"]);
	let resolver = w.agent_ns.enter(|| std::net::UdpSocket::bind("10.99.1.5:53").unwrap());
	resolver.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
	let leaks = || {
		let ipv6 = w
			.client_ns
			.command("ping")
			.args(["-6", "-c", "1", "-W", "2", "fd99:1::1"])
			.output()
			.unwrap()
			.status
			.success();
		let _ = w.client_ns.command("bash").args(["-c", "echo lookup > /dev/udp/10.99.1.5/53"]).output();
		let dns = resolver.recv(&mut [0u8; 64]).is_ok();
		(ipv6, dns)
	};
	assert_eq!(leaks(), (false, false), "IPv6 and DNS around the tunnel are blocked while it is up");

	// Garbage on the control port: a clear protocol error, and the tunnel keeps working.
	let mut garbage = w.client_ns.enter(|| TcpStream::connect("10.99.1.1:7310").unwrap());
	std::io::Write::write_all(&mut garbage, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
	let mut answer = Vec::new();
	garbage.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
	let _ = garbage.read_to_end(&mut answer);
	let len = frame_length(answer[..4].try_into().unwrap()).unwrap();
	assert!(matches!(
		decode_body::<AgentMessage>(&answer[4..4 + len]).unwrap(),
		AgentMessage::Error { code: ErrorCode::Protocol, .. }
	));

	// Bad sessions: Bob's session (Alice's key cannot sign for it), a session with another
	// provider, an expired session. Each is refused with its reason; no tunnel comes up.
	let bob_client = VpnClient::new(w.chain.clone(), &w.dir.path().join("bob"));
	let eve_provider = w.runtime.block_on(w.chain.provider(&Eve.to_account_id())).unwrap().unwrap();
	let charlie =
		w.runtime.block_on(w.chain.provider(&sp_keyring::Sr25519Keyring::Charlie.to_account_id())).unwrap().unwrap();
	let max = pallet_provider_registry::Prices { per_gib: UNIT, per_hour: UNIT };
	let bobs = w.runtime.block_on(bob_client.open_session(&Bob.pair().into(), &eve_provider, max, UNIT, 1000)).unwrap();
	let alice_elsewhere = VpnClient::new(w.chain.clone(), &w.dir.path().join("x"));
	let with_charlie =
		w.runtime.block_on(alice_elsewhere.open_session(&Alice.pair().into(), &charlie, max, UNIT, 1000)).unwrap();
	let short =
		w.runtime.block_on(alice_elsewhere.open_session(&Alice.pair().into(), &eve_provider, max, UNIT, 1)).unwrap();
	wait_for(Duration::from_secs(30), "the short session to expire", || {
		(w.node.rpc.best_number()? > u64::from(short.expires_at)).then_some(())
	})
	.unwrap();
	for (id, reason) in [
		// Each session has its own key: this client holds none for Bob's session and says so
		// (an agent refuses a handshake signed by any other key: the handshake's unit tests).
		(bobs.session_id, "no key in"),
		(with_charlie.session_id, "with another provider"),
		(short.session_id, "closed or expired"),
	] {
		let out = w.vpn(
			"alice2",
			&[
				"connect",
				"--account",
				"//Alice",
				"--session",
				&id.to_string(),
				"--endpoint",
				"10.99.1.1:7310",
				"--interface",
				"ilvpnc1",
			],
		);
		assert!(!out.status.success() && stderr(&out).contains(reason), "session {id}: {}", stderr(&out));
	}
	assert!(w.metric("interlattice_vpn_sessions_refused_total") >= 3);
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "the agent keeps serving Alice");

	// Disconnect: the last receipt, then the agent settles and closes the session.
	let disconnected = w.vpn("alice", &["disconnect"]);
	assert!(
		disconnected.status.success(),
		"{}\nclient:\n{}\nagent:\n{}",
		stderr(&disconnected),
		client.log(),
		agent.log()
	);
	assert!(client.wait(Duration::from_secs(120)).success(), "{}", client.log());
	assert!(client.log().contains(&format!("session {session} closed by the provider")), "{}", client.log());
	assert_eq!(
		leaks(),
		(true, true),
		"with the tunnel down, IPv6 and the local resolver work again (the guard is gone)"
	);
	let served = w.metric("interlattice_vpn_bytes_closed_tunnels_total");
	let ((bytes, seconds, settled), closed) = outcome(&w.escrow_events(session));
	assert!(bytes >= 2 * w.file.len() as u64, "two downloads were paid: {bytes}");
	assert!(bytes.abs_diff(served) <= RECEIPT_INTERVAL, "paid {bytes} for {served} served");
	let prices = eve_provider.prices;
	assert_eq!(settled, max_amount_owed(&prices, bytes, seconds).unwrap());
	assert_eq!(
		closed,
		Some((settled, 2 * UNIT - settled)),
		"the provider was paid exactly the receipt, the rest refunded"
	);

	// A client that stops paying after 1 MiB is held after the credit limit; the provider is
	// paid what was signed.
	let mut stingy = w.connect(
		"alice3",
		"2",
		&["--provider", &eve, "--account", "//Alice", "--deposit", "1", "--stop-paying-after-bytes", "1048576"],
	);
	let stingy_session = World::session_id(&stingy.log());
	let (ok, body) = w.fetch(15);
	assert!(!ok, "the download stalls");
	assert!((body.len() as u64) < (1 << 20) + CREDIT + (512 << 10), "got {} bytes unpaid", body.len());
	assert!(w.metric("interlattice_vpn_packets_dropped_unpaid_total") > 0);
	assert!(w.metric("interlattice_vpn_unpaid_bytes") >= CREDIT / 2, "the held session's unpaid bytes are exported");
	let bytes = w.disconnect_and_close("alice3", &mut stingy, stingy_session, "");
	assert!(bytes <= 1 << 20, "paid for {bytes} bytes");

	agent.signal("-TERM");
	assert!(agent.wait(Duration::from_secs(30)).success(), "{}", agent.log());
	assert!(
		!Command::new("ip").args(["-n", &w.agent_ns.name, "link", "show", "ilvpn0"]).output().unwrap().status.success(),
		"the interface is gone"
	);
}

#[test]
fn an_agent_killed_mid_session_restarts_without_losing_receipts() {
	let w = world();
	assert!(w.register().status.success());
	let mut agent = w.start_agent("1");
	let eve = Eve.to_account_id().to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into());
	let mut client = w.connect(
		"alice",
		"1",
		&["--provider", &eve, "--account", "//Alice", "--deposit", "1", "--route", "10.99.2.0/24"],
	);
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "{}", client.log());
	let session = World::session_id(&client.log());
	// Wait until a receipt covering the download is acknowledged (the status line says so).
	let acknowledged = wait_for(Duration::from_secs(30), "an acknowledged receipt", || {
		let log = client.log();
		let line = log.rsplit('\r').find(|l| l.contains("receipt #"))?.to_string();
		let sequence: u64 =
			line.split("receipt #").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
		(!line.contains("unacknowledged") && sequence >= 2).then_some(sequence)
	})
	.unwrap();

	agent.signal("-KILL");
	agent.wait(Duration::from_secs(10));
	// The client notices, and keeps the session for a reconnect.
	assert!(!client.wait(Duration::from_secs(60)).success());
	assert!(client.log().contains(&format!("vpn connect --session {session}")), "{}", client.log());

	// Restarted, the agent settles what it acknowledged before the crash.
	let _agent = w.start_agent("2");
	let settled_sequence = wait_for(Duration::from_secs(60), "the settlement", || {
		let s = w.runtime.block_on(w.chain.session(session)).ok()??;
		(s.sequence >= acknowledged).then_some(s.sequence)
	})
	.unwrap();
	assert!(settled_sequence >= acknowledged);

	// The session reconnects and pays on from where it was; closing settles it.
	let mut again = w.connect(
		"alice",
		"2",
		&[
			"--account",
			"//Alice",
			"--session",
			&session.to_string(),
			"--endpoint",
			"10.99.1.1:7310",
			"--route",
			"10.99.2.0/24",
		],
	);
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file);
	let bytes = w.disconnect_and_close("alice", &mut again, session, "");
	assert!(bytes >= 2 * w.file.len() as u64, "both tunnels' bytes are paid: {bytes}");
}

#[test]
fn an_exported_configuration_works_with_wireguard_go_and_is_paid_for() {
	let w = world();
	w.set_rekey(6, 20);
	assert!(w.register().status.success());
	let agent = w.start_agent("1");
	let interface = format!("wgx{}", std::process::id() % 100_000);
	let eve = Eve.to_account_id().to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into());
	let conf = w.dir.path().join("wg-export.conf");
	let mut command = w.client_ns.command(workspace_binary("vpn").to_str().unwrap());
	command.args(w.vpn_args("alice")).args([
		"export-config",
		"--provider",
		&eve,
		"--account",
		"//Alice",
		"--deposit",
		"1",
		"--route",
		"10.99.2.0/24",
		"-o",
		conf.to_str().unwrap(),
		"--apply-to",
		&interface,
	]);
	let mut exporter = Process::start(command, w.dir.path().join("export.log"));
	let text = wait_for(Duration::from_secs(60), "the exported configuration", || {
		std::fs::read_to_string(&conf).ok().filter(|t| t.contains("[Peer]"))
	})
	.unwrap_or_else(|e| panic!("{e}\n{}", exporter.log()));
	use std::os::unix::fs::PermissionsExt;
	assert_eq!(
		std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
		0o600,
		"the private key file is private"
	);
	for key in [
		"PrivateKey = ",
		"Address = 10.77.0.",
		"PublicKey = ",
		"PresharedKey = ",
		"Endpoint = 10.99.1.1:7310",
		"AllowedIPs = 10.99.2.0/24",
	] {
		assert!(text.contains(key), "{key} missing in:\n{text}");
	}
	let session = World::session_id(&exporter.log());

	// wireguard-go (the Debian package) carries the tunnel from the exported file: wg(8) takes
	// the file without wg-quick's Address and MTU lines, which we apply with ip(8).
	let address = text.lines().find_map(|l| l.strip_prefix("Address = ")).unwrap().to_string();
	let plain: String =
		text.lines().filter(|l| !l.starts_with("Address") && !l.starts_with("MTU")).map(|l| format!("{l}\n")).collect();
	let plain_file = w.dir.path().join("wg-plain.conf");
	std::fs::write(&plain_file, plain).unwrap();
	let mut wireguard = Process::start(
		{
			let mut c = w.client_ns.command("wireguard-go");
			c.args(["-f", &interface]);
			c
		},
		w.dir.path().join("wireguard-go.log"),
	);
	wait_for(Duration::from_secs(10), "the wireguard-go interface", || {
		Command::new("ip")
			.args(["-n", &w.client_ns.name, "link", "show", &interface])
			.output()
			.ok()?
			.status
			.success()
			.then_some(())
	})
	.unwrap_or_else(|e| panic!("{e}\n{}", wireguard.log()));
	let set = w.client_ns.command("wg").args(["setconf", &interface, plain_file.to_str().unwrap()]).output().unwrap();
	assert!(set.status.success(), "{}", stderr(&set));
	w.client_ns.ip(&["address", "add", &address, "dev", &interface]);
	w.client_ns.ip(&["link", "set", &interface, "mtu", "1420", "up"]);
	w.client_ns.ip(&["route", "add", "10.99.2.0/24", "dev", &interface]);
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "fetched {} bytes through wireguard-go\n{}", body.len(), exporter.log());

	// The agent renews the pre-shared key; the exporter rewrites the file and sets the new key
	// on wireguard-go's interface, which keeps carrying the tunnel.
	let psk = |text: &str| text.lines().find(|l| l.starts_with("PresharedKey")).unwrap().to_string();
	let first = psk(&text);
	let rekeys = w.metric("interlattice_vpn_rekeys_total");
	wait_for(Duration::from_secs(30), "two more rekeys and a rewritten file", || {
		let now = std::fs::read_to_string(&conf).ok()?;
		(w.metric("interlattice_vpn_rekeys_total") >= rekeys + 2 && psk(&now) != first).then_some(())
	})
	.unwrap_or_else(|e| panic!("{e}\n{}\nagent:\n{}", exporter.log(), agent.log()));
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "after the rekeys: {} bytes\n{}\n{}", body.len(), exporter.log(), agent.log());

	// Stopping the exporter pays the agent's count and closes the session; the tunnel ends.
	std::thread::sleep(Duration::from_secs(2));
	exporter.signal("-TERM");
	assert!(exporter.wait(Duration::from_secs(120)).success(), "{}", exporter.log());
	let served = w.metric("interlattice_vpn_bytes_closed_tunnels_total");
	let ((bytes, _, settled), closed) = outcome(&w.escrow_events(session));
	assert!(bytes >= w.file.len() as u64 && bytes.abs_diff(served) <= RECEIPT_INTERVAL, "paid {bytes} for {served}");
	assert_eq!(closed, Some((settled, UNIT - settled)));
	let (ok, _) = w.fetch(5);
	assert!(!ok, "no tunnel after the session closed");
	wireguard.signal("-TERM");
}

#[test]
fn a_full_agent_refuses_new_sessions_but_not_a_reconnect_and_a_client_can_close() {
	let w = world();
	let text = std::fs::read_to_string(&w.agent_config).unwrap();
	assert!(text.contains("max_sessions = 250"), "the shipped config changed");
	std::fs::write(&w.agent_config, text.replace("max_sessions = 250", "max_sessions = 1")).unwrap();
	assert!(w.register().status.success());
	let agent = w.start_agent("1");
	let eve = Eve.to_account_id().to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into());
	let mut first = w.connect(
		"alice",
		"1",
		&["--provider", &eve, "--account", "//Alice", "--deposit", "1", "--route", "10.99.2.0/24"],
	);
	let session = World::session_id(&first.log());
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "{}", first.log());

	// The agent is full: Bob's new session is refused, and the CLI says how to end it.
	let busy = w
		.vpn("bob", &["connect", "--provider", &eve, "--account", "//Bob", "--deposit", "1", "--interface", "ilvpnc1"]);
	let said = stderr(&busy);
	assert!(!busy.status.success() && said.contains("session limit") && said.contains("(Busy)"), "{said}");
	let bobs = World::session_id(&said);
	assert!(said.contains(&format!("vpn close --session {bobs}")), "{said}");

	// `vpn close`: Bob closes it on-chain; the agent then refuses it as ended.
	let closed = w.vpn("bob", &["close", "--session", &bobs.to_string(), "--account", "//Bob"]);
	assert!(closed.status.success(), "{}", stderr(&closed));
	assert!(w.runtime.block_on(w.chain.session(bobs)).unwrap().unwrap().closing, "the session is closing on-chain");
	assert!(w.escrow_events(bobs).iter().any(|e| matches!(e, pallet_session_escrow::Event::SessionClosing { .. })));
	let again = w.vpn(
		"bob",
		&[
			"connect",
			"--account",
			"//Bob",
			"--session",
			&bobs.to_string(),
			"--endpoint",
			"10.99.1.1:7310",
			"--interface",
			"ilvpnc1",
		],
	);
	assert!(!again.status.success() && stderr(&again).contains("closed or expired"), "{}", stderr(&again));

	// Alice's client freezes (its control connection stays open, the agent cannot tell) and
	// she reconnects the same session from elsewhere: although the agent is full, the new
	// tunnel is accepted and replaces the old one, which ends saying so when it wakes up.
	first.signal("-STOP");
	let mut second = w.connect(
		"alice",
		"2",
		&[
			"--account",
			"//Alice",
			"--session",
			&session.to_string(),
			"--endpoint",
			"10.99.1.1:7310",
			"--interface",
			"ilvpnc1",
			"--route",
			"10.99.2.2/32",
		],
	);
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "the new tunnel carries the traffic\n{}\nagent:\n{}", second.log(), agent.log());
	first.signal("-CONT");
	assert!(!first.wait(Duration::from_secs(60)).success());
	assert!(first.log().contains("this tunnel was replaced"), "{}", first.log());
	assert!(first.log().contains(&format!("vpn connect --session {session}")), "{}", first.log());

	let context = format!("first client:\n{}\nagent:\n{}", first.log(), agent.log());
	let bytes = w.disconnect_and_close("alice", &mut second, session, &context);
	assert!(bytes >= 2 * w.file.len() as u64, "both tunnels' bytes are paid: {bytes}");

	// Both of Alice's tunnels are down and their slot is free again: a new session is served.
	let mut third = w.connect(
		"bob2",
		"3",
		&["--provider", &eve, "--account", "//Bob", "--deposit", "1", "--route", "10.99.2.0/24"],
	);
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "{}", third.log());
	assert!(w.vpn("bob2", &["disconnect"]).status.success());
	assert!(third.wait(Duration::from_secs(120)).success(), "{}", third.log());
}

/// Issue 16's hostile dVPN client: a client that never pays for bytes and reconnects to get
/// fresh credit (item 7), and a flood of handshakes that name a real session but never prove
/// its key (item 11). The client gets at most one credit in all, the half-done handshakes
/// take no place on a full agent and are dropped after the handshake timeout, and an honest
/// client is served meanwhile.
#[test]
fn a_hostile_client_gets_one_credit_in_all_and_cannot_hold_the_agent_while_an_honest_client_is_served() {
	let w = world();
	let text = std::fs::read_to_string(&w.agent_config).unwrap();
	assert!(
		text.contains("max_sessions = 250") && text.contains("max_connections_per_ip = 32"),
		"the shipped config changed"
	);
	std::fs::write(&w.agent_config, text.replace("max_sessions = 250", "max_sessions = 1")).unwrap();
	assert!(w.register().status.success());
	let agent = w.start_agent("1");
	let eve = Eve.to_account_id().to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into());

	// Three tunnels in a row on one session, signing for no byte (time only): the session's
	// unpaid bytes survive the reconnects, so all three together get one credit.
	let mut session = String::new();
	let mut unpaid = 0;
	for round in 0..3 {
		let mut args =
			vec!["--account", "//Alice", "--keep-session", "--stop-paying-after-bytes", "0", "--route", "10.99.2.0/24"];
		if round == 0 {
			args.extend(["--provider", &eve, "--deposit", "1"]);
		} else {
			args.extend(["--session", &session, "--endpoint", "10.99.1.1:7310"]);
		}
		let mut stingy = w.connect("alice", &format!("stingy-{round}"), &args);
		session = World::session_id(&stingy.log()).to_string();
		let (ok, body) = w.fetch(8);
		assert!(!ok, "the download stalls");
		unpaid += body.len() as u64;
		assert!(w.vpn("alice", &["disconnect"]).status.success());
		assert!(stingy.wait(Duration::from_secs(60)).success(), "{}", stingy.log());
	}
	assert!(
		unpaid > 0 && unpaid < CREDIT + (512 << 10),
		"three tunnels on one session got {unpaid} bytes unpaid (credit {CREDIT})"
	);
	assert!(
		w.metric("interlattice_vpn_unpaid_bytes") < CREDIT + (512 << 10),
		"the provider's loss stays within the credit"
	);

	// 30 connections from a second address send a hello for Alice's session and never finish
	// the handshake (they cannot: they do not hold its key).
	w.client_ns.ip(&["addr", "add", "10.99.1.3/24", "dev", "eth0"]);
	let (genesis, session_id) = (w.chain.genesis_hash().0, session.parse::<u64>().unwrap());
	let pending: Vec<std::net::TcpStream> = w.client_ns.enter(move || {
		let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
		runtime.block_on(async move {
			let mut streams = Vec::new();
			for _ in 0..30 {
				let socket = tokio::net::TcpSocket::new_v4().unwrap();
				socket.bind("10.99.1.3:0".parse().unwrap()).unwrap();
				let mut stream = socket.connect("10.99.1.1:7310".parse().unwrap()).await.unwrap();
				let (_, hello) =
					interlattice_vpn::handshake::ClientHandshake::start(genesis, session_id, [1; 32]).unwrap();
				use tokio::io::AsyncWriteExt;
				stream.write_all(interlattice_vpn::control::PREAMBLE).await.unwrap();
				stream
					.write_all(&interlattice_vpn::control::encode_frame(
						&interlattice_vpn::control::ClientMessage::Hello(hello),
					))
					.await
					.unwrap();
				streams.push(stream.into_std().unwrap());
			}
			streams
		})
	});
	// Meanwhile Bob connects: the agent has one place (max_sessions = 1) and the pending
	// handshakes hold none of it.
	let mut honest = w.connect(
		"bob",
		"honest",
		&["--provider", &eve, "--account", "//Bob", "--deposit", "1", "--route", "10.99.2.0/24"],
	);
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "the honest client is served\n{}\nagent:\n{}", honest.log(), agent.log());
	// The half-done handshakes are dropped after the handshake timeout (10 s).
	for mut stream in pending {
		use std::io::Read;
		stream.set_nonblocking(false).unwrap();
		stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
		let mut sink = Vec::new();
		let end = stream.read_to_end(&mut sink);
		assert!(
			end.is_ok() || end.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
			"a pending handshake was held: {end:?}"
		);
	}
	assert!(w.vpn("bob", &["disconnect"]).status.success());
	assert!(honest.wait(Duration::from_secs(120)).success(), "{}", honest.log());
}

/// The censor of issue 18: it drops WireGuard handshakes by their header (type byte and three
/// zero bytes at the start of a 148- or 92-byte UDP payload) and TCP segments that start with
/// the plain control channel's preamble.
const CENSOR_RULES: &str = "table inet censor {
  chain forward {
    type filter hook forward priority filter; policy accept;
    udp length 156 @th,64,32 0x01000000 counter drop comment \"wireguard-initiation\"
    udp length 100 @th,64,32 0x02000000 counter drop comment \"wireguard-response\"
    tcp dport 7310 @ih,0,128 0x696e7465726c6174746963652d76706e counter drop comment \"preamble\"
  }
}
";

/// The censor drops every UDP datagram (rule `all-udp`).
fn drop_all_udp(censor: &Netns) {
	let status = censor
		.command("nft")
		.args([
			"add",
			"rule",
			"inet",
			"censor",
			"forward",
			"meta",
			"l4proto",
			"udp",
			"counter",
			"drop",
			"comment",
			"\"all-udp\"",
		])
		.status();
	assert!(status.unwrap().success());
}

/// Packets a censor rule (by its comment) dropped.
fn censored(ns: &Netns, rule: &str) -> u64 {
	let out = ns.command("nft").args(["list", "table", "inet", "censor"]).output().unwrap();
	let text = String::from_utf8_lossy(&out.stdout).into_owned();
	text.lines()
		.find(|l| l.contains(&format!("comment \"{rule}\"")))
		.and_then(|l| l.split("packets ").nth(1)?.split_whitespace().next()?.parse().ok())
		.unwrap_or_else(|| panic!("no rule {rule} in {text}"))
}

/// The transport-layer bytes of every IPv4 packet of `protocol` (6 TCP, 17 UDP) from `from` in
/// a pcap file (Ethernet), in capture order.
fn ipv4_payloads(pcap: &[u8], from: [u8; 4], protocol: u8) -> Vec<&[u8]> {
	let mut packets = Vec::new();
	let mut at = 24;
	while at + 16 <= pcap.len() {
		let captured = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
		let Some(frame) = pcap.get(at + 16..at + 16 + captured) else { break };
		at += 16 + captured;
		let Some(ip) = frame.get(14..) else { continue };
		if ip.len() >= 20 && ip[0] >> 4 == 4 && ip[9] == protocol && ip[12..16] == from {
			packets.push(&ip[usize::from(ip[0] & 0x0f) * 4..]);
		}
	}
	packets
}

/// The payload of the first TCP segment from `from` that carries data: a client's first flight.
fn first_flight(pcap: &[u8], from: [u8; 4]) -> Option<Vec<u8>> {
	ipv4_payloads(pcap, from, 6)
		.into_iter()
		.filter_map(|tcp| tcp.get(usize::from(*tcp.get(12)? >> 4) * 4..))
		.find(|payload| !payload.is_empty())
		.map(<[u8]>::to_vec)
}

/// The first UDP payload from `from` to port `port` whose first byte is a QUIC long header's: a
/// client's QUIC Initial.
fn first_quic_initial(pcap: &[u8], from: [u8; 4], port: u16) -> Option<Vec<u8>> {
	ipv4_payloads(pcap, from, 17)
		.into_iter()
		.filter(|udp| udp.get(2..4) == Some(&port.to_be_bytes()[..]))
		.filter_map(|udp| udp.get(8..))
		.find(|payload| payload.first().is_some_and(|b| b & 0xc0 == 0xc0))
		.map(<[u8]>::to_vec)
}

/// Sends `bytes` to `addr` over TCP from inside `ns` and returns what comes back before the
/// server closes or is silent for 3 s.
fn probe_tcp(ns: &Netns, addr: &'static str, bytes: Vec<u8>) -> Vec<u8> {
	ns.enter(move || {
		let mut stream = TcpStream::connect(addr).unwrap();
		stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
		std::io::Write::write_all(&mut stream, &bytes).unwrap();
		let mut answer = Vec::new();
		let _ = stream.read_to_end(&mut answer);
		answer
	})
}

/// Issue 18: a censor arrives mid-session and blocks WireGuard and the plain control channel
/// by their signatures, and all UDP: the client moves the session (through HTTP/3, which the
/// dropped UDP stops too) to HTTPS and goes on paying; a new HTTPS tunnel carries a paid 12 MiB
/// with its key renewed every few seconds; with UDP let through again (WireGuard still
/// blocked), an HTTP/3 tunnel carries a paid 12 MiB; nDPI classifies every flow as TLS or QUIC;
/// a client that never renews its key is cut off; a new client finds its way (UDP fails,
/// HTTPS works); the censor's probes see a web server over HTTP/1.1, HTTP/2 and HTTP/3.
#[test]
fn behind_a_censor_the_web_transports_carry_paid_tunnels_and_probes_see_only_a_web_site() {
	let w = world_behind_a_censor();
	let censor = w.censor_ns.as_ref().unwrap();
	// Keys renewed every 3 s, none older than 8 s: the rules of issue 18 (120 s, 180 s) at speed.
	w.set_rekey(3, 8);
	assert!(w.register().status.success());
	let mut agent = w.start_agent("1");
	let eve = Eve.to_account_id().to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into());

	// Before the censor: the automatic transport takes UDP.
	let route = ["--route", "10.99.2.0/24"];
	let mut client = w.connect(
		"alice",
		"auto",
		&[&["--provider", &eve, "--account", "//Alice", "--deposit", "1"][..], &route].concat(),
	);
	let session = World::session_id(&client.log());
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "{}", client.log());
	assert!(client.log().contains("connecting over udp") && !client.log().contains("https"), "{}", client.log());

	// The censor arrives: WireGuard by its header, the old preamble, then all UDP. The tunnel's
	// path dies (its next WireGuard handshake never completes); the client moves the session
	// to HTTPS and it carries on, paid.
	let mut rules = censor.command("nft").args(["-f", "-"]).stdin(Stdio::piped()).spawn().unwrap();
	std::io::Write::write_all(rules.stdin.as_mut().unwrap(), CENSOR_RULES.as_bytes()).unwrap();
	drop(rules.stdin.take());
	assert!(rules.wait().unwrap().success());
	drop_all_udp(censor);
	wait_for(Duration::from_secs(90), "the move to HTTPS", || {
		client.log().contains("moving the session to https").then_some(())
	})
	.unwrap_or_else(|e| panic!("{e}\n{}\nagent:\n{}", client.log(), agent.log()));
	let (ok, body) = wait_for(Duration::from_secs(60), "a fetch over HTTPS", || {
		let (ok, body) = w.fetch(30);
		(ok && body == w.file).then_some((ok, body))
	})
	.unwrap_or_else(|e| panic!("{e}\n{}\nagent:\n{}", client.log(), agent.log()));
	assert!(ok && body == w.file);
	let bytes = w.disconnect_and_close("alice", &mut client, session, &agent.log());
	assert!(bytes >= 2 * w.file.len() as u64, "both transports' bytes are paid: {bytes}");

	// The censor records what passes it (on its side of the agent: what it drops never gets
	// there) while a new session goes over HTTPS: 12 MiB, paid and settled.
	let pcap = w.dir.path().join("censor.pcap");
	let mut capture = censor.command("tcpdump");
	capture.args(["-i", "eth1", "-U", "-w", pcap.to_str().unwrap(), "host", "10.99.1.1"]);
	let mut capture = Process::start(capture, w.dir.path().join("tcpdump.log"));
	wait_for(Duration::from_secs(10), "the capture", || capture.log().contains("listening on").then_some(()))
		.unwrap_or_else(|e| panic!("{e}: {}", capture.log()));
	let https = ["--transport", "https", "--endpoint", "10.99.1.1:7310"];
	let bob = [&["--provider", &eve, "--account", "//Bob", "--deposit", "1"][..], &https, &route].concat();
	let mut client = w.connect("bob", "https", &bob);
	let session = World::session_id(&client.log());
	for _ in 0..4 {
		let (ok, body) = w.fetch(60);
		assert!(ok && body == w.file, "{}\nagent:\n{}", client.log(), agent.log());
	}
	// The tunnel's pre-shared key is renewed (a fresh ML-KEM exchange each time) and reaches
	// both WireGuard peers: traffic still flows after several renewals.
	let rekeys = w.metric("interlattice_vpn_rekeys_total");
	wait_for(Duration::from_secs(30), "three rekeys", || {
		(w.metric("interlattice_vpn_rekeys_total") >= rekeys + 3).then_some(())
	})
	.unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "after the rekeys\n{}\nagent:\n{}", client.log(), agent.log());
	assert!(client.log().contains("connecting over https"), "{}", client.log());
	let bytes = w.disconnect_and_close("bob", &mut client, session, &agent.log());
	assert!(bytes >= 5 * w.file.len() as u64, "the tunnel's bytes are paid: {bytes}");

	// The censor lets UDP through again (WireGuard stays blocked by its header): a session
	// over HTTP/3 carries 12 MiB, paid and settled.
	let rule = censor.command("nft").args(["-a", "list", "chain", "inet", "censor", "forward"]).output().unwrap();
	let listing = String::from_utf8_lossy(&rule.stdout).into_owned();
	let handle = listing
		.lines()
		.find(|l| l.contains("comment \"all-udp\""))
		.and_then(|l| l.rsplit("# handle ").next())
		.unwrap_or_else(|| panic!("no all-udp rule: {listing}"))
		.trim()
		.to_string();
	let deleted =
		censor.command("nft").args(["delete", "rule", "inet", "censor", "forward", "handle", &handle]).status();
	assert!(deleted.unwrap().success());
	let h3 = ["--transport", "h3", "--endpoint", "10.99.1.1:7310"];
	let charlie = [&["--provider", &eve, "--account", "//Charlie", "--deposit", "1"][..], &h3, &route].concat();
	let mut client = w.connect("charlie", "h3", &charlie);
	let session = World::session_id(&client.log());
	for _ in 0..4 {
		let (ok, body) = w.fetch(60);
		assert!(ok && body == w.file, "{}\nagent:\n{}", client.log(), agent.log());
	}
	assert!(client.log().contains("connecting over h3"), "{}", client.log());
	let bytes = w.disconnect_and_close("charlie", &mut client, session, &agent.log());
	assert!(bytes >= 4 * w.file.len() as u64, "the tunnel's bytes are paid: {bytes}");
	drop_all_udp(censor);

	// nDPI sees TLS and QUIC, nothing else, between the client and the agent.
	capture.signal("-INT");
	capture.wait(Duration::from_secs(10));
	let ndpi = Command::new("ndpiReader").args(["-i", pcap.to_str().unwrap(), "-v", "2"]).output().unwrap();
	let report = String::from_utf8_lossy(&ndpi.stdout).into_owned();
	let flows: Vec<&str> = report.lines().filter(|l| l.contains("10.99.1.1") && l.contains("[proto:")).collect();
	assert!(!flows.is_empty(), "no flows classified:\n{report}");
	for flow in &flows {
		assert!(
			["TLS", "QUIC", "HTTP"]
				.iter()
				.any(|p| flow.contains(&format!("/{p}]")) || flow.contains(&format!("/{p}."))),
			"a flow nDPI does not call TLS, QUIC or HTTP: {flow}\n{report}"
		);
		for giveaway in ["WireGuard", "OpenVPN", "Unknown"] {
			assert!(!flow.contains(giveaway), "{flow}");
		}
	}
	assert!(flows.iter().any(|f| f.contains("/QUIC")), "the HTTP/3 session's flow is QUIC:\n{report}");
	assert!(flows.iter().any(|f| f.contains("/TLS")), "the HTTPS session's flow is TLS:\n{report}");

	// A new client behind the censor finds its way (UDP: its control channel's preamble is
	// dropped; then HTTPS); it never renews its key, and loses its tunnel when the key is
	// older than the agent allows.
	let dave = [&["--provider", &eve, "--account", "//Dave", "--deposit", "1", "--ignore-rekeys"][..], &route].concat();
	let mut stale = w.connect("dave", "stale", &dave);
	assert!(!stale.wait(Duration::from_secs(60)).success(), "{}", stale.log());
	let said = stale.log();
	assert!(said.contains("connecting over udp") && said.contains("moving the session to https"), "{said}");
	assert!(said.contains("KeyExpired"), "{said}");
	assert!(censored(censor, "preamble") > 0, "the censor dropped the preamble\n{said}");

	// The censor probes the endpoint: with the plain control channel off, it is a web site.
	agent.signal("-TERM");
	agent.wait(Duration::from_secs(30));
	let text = std::fs::read_to_string(&w.agent_config).unwrap();
	std::fs::write(&w.agent_config, text.replace("plain_control = true", "plain_control = false")).unwrap();
	let agent = w.start_agent("2");
	let curl = |args: &[&str]| {
		let out = censor
			.command("curl")
			.args(["-sk", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
			.args(args)
			.output()
			.unwrap();
		String::from_utf8_lossy(&out.stdout).into_owned()
	};
	assert_eq!(curl(&["https://10.99.1.1:7310/"]), "200 2");
	assert_eq!(curl(&["-I", "https://10.99.1.1:7310/"]), "200 2");
	assert_eq!(curl(&["--http1.1", "https://10.99.1.1:7310/"]), "200 1.1");
	assert_eq!(curl(&["https://10.99.1.1:7310/wp-admin/x7f3k.php"]), "404 2");
	assert_eq!(curl(&["-X", "POST", "https://10.99.1.1:7310/"]), "405 2");
	// The same site over HTTP/3 (advertised as a web server advertises it).
	let headers = censor.command("curl").args(["-skI", "https://10.99.1.1:7310/"]).output().unwrap();
	assert!(String::from_utf8_lossy(&headers.stdout).contains("alt-svc: h3=\":7310\""));
	let h3 = |method: &str, path: &str| {
		let (method, path) = (method.parse::<interlattice_vpn::http3::Method>().unwrap(), path.to_string());
		censor.enter(move || {
			let runtime = tokio::runtime::Runtime::new().unwrap();
			let agent = "10.99.1.1:7310".parse().unwrap();
			let (status, _, body) =
				runtime.block_on(interlattice_vpn::http3::request(agent, "10.99.1.1", method, &path)).unwrap();
			(status.as_u16(), body)
		})
	};
	let (status, page) = h3("GET", "/");
	assert_eq!(status, 200);
	assert_eq!(page, interlattice_vpn::website::DEFAULT_PAGE.as_bytes(), "the site's page");
	assert_eq!(h3("HEAD", "/"), (200, Default::default()));
	assert_eq!(h3("GET", "/wp-admin/x7f3k.php").0, 404);
	assert_eq!(h3("POST", "/").0, 405);
	// A replay of the client's first flight gets a fresh TLS handshake, nothing of ours.
	let flight = first_flight(&std::fs::read(&pcap).unwrap(), [10, 99, 3, 2]).expect("a client hello in the capture");
	assert_eq!(flight[0], 0x16, "the client's first flight is a TLS handshake");
	let answer = probe_tcp(censor, "10.99.1.1:7310", flight);
	assert!(answer.starts_with(&[0x16, 0x03, 0x03]), "a TLS server hello: {answer:02x?}");
	// Random bytes, the old preamble: what a TLS server says to them, then the close.
	for garbage in [data(200, 3), b"interlattice-vpn\0\0\0\x08garbage!".to_vec(), b"GET / HTTP/1.1\r\n\r\n".to_vec()] {
		let answer = probe_tcp(censor, "10.99.1.1:7310", garbage);
		assert!(answer.is_empty() || answer[0] == 0x15, "a TLS alert or nothing: {answer:02x?}");
		assert!(!String::from_utf8_lossy(&answer).contains("interlattice"));
	}
	// A replay of the HTTP/3 client's first flight (its QUIC Initial) gets what any QUIC server
	// sends to a new Initial: its own long-header handshake packets, nothing of ours.
	let initial = first_quic_initial(&std::fs::read(&pcap).unwrap(), [10, 99, 3, 2], 7310)
		.expect("a QUIC Initial in the capture");
	let answer = censor.enter(move || {
		let socket = std::net::UdpSocket::bind("10.99.1.2:0").unwrap();
		socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
		socket.send_to(&initial, "10.99.1.1:7310").unwrap();
		let mut buf = [0u8; 2048];
		socket.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec()).unwrap_or_default()
	});
	assert!(answer.first().is_some_and(|b| b & 0xc0 == 0xc0), "a QUIC handshake answer: {answer:02x?}");
	assert!(!String::from_utf8_lossy(&answer).contains("interlattice"));
	// Random bytes on the UDP port (WireGuard's and HTTP/3's): no answer, as from a QUIC server (too
	// short for an Initial packet, no connection of its) and from WireGuard (no valid message).
	let udp_silent = censor.enter(|| {
		let socket = std::net::UdpSocket::bind("10.99.1.2:0").unwrap();
		socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
		socket.send_to(&data(148, 5), "10.99.1.1:7310").unwrap();
		let mut buf = [0u8; 2048];
		socket.recv_from(&mut buf).is_err()
	});
	assert!(udp_silent);
	drop(agent);
}

/// Issue 18 item 2: a provider serving both services serves them on one HTTPS port. Eve's
/// dVPN agent relays everything but tunnels to her dCDN agent (plain HTTP on the agent host's
/// loopback), whose registered endpoint is the dVPN agent's port: the `cdn` client publishes
/// and downloads through it (authenticating Eve's registered ML-DSA key there), a browser
/// sees the dCDN's answers, and the same port carries a paid tunnel over HTTPS.
#[test]
fn one_https_port_serves_the_dcdn_and_the_dvpn() {
	let w = world();
	let cdn_port = free_port();
	let text = std::fs::read_to_string(&w.agent_config).unwrap();
	assert!(text.contains("# upstream = \"http://127.0.0.1:7321\""), "the shipped config changed");
	let text =
		text.replace("# upstream = \"http://127.0.0.1:7321\"", &format!("upstream = \"http://127.0.0.1:{cdn_port}\""));
	std::fs::write(&w.agent_config, text).unwrap();
	assert!(w.register().status.success());

	let cdn_config = w.dir.path().join("cdn-agent.toml");
	std::fs::write(
		&cdn_config,
		format!(
			r#"
[chain]
rpc = "http://127.0.0.1:{rpc}"
[provider]
account = "//Eve"
service_key = "{key}"
endpoint = "https://10.99.1.1:7310"
[http]
plain_http = true
listen = "127.0.0.1:{cdn_port}"
[cache]
dir = "{cache}"
max_bytes = 67108864
[publish]
tokens = ["secret-token"]
[payment]
credit_limit_bytes = 1048576
receipts_dir = "{receipts}"
settle_interval_secs = 5
"#,
			rpc = w.rpc_port,
			key = w.dir.path().join("eve-service.key").display(),
			cache = w.dir.path().join("cdn-cache").display(),
			receipts = w.dir.path().join("cdn-receipts").display(),
		),
	)
	.unwrap();
	let cdn_agent = |args: &[&str]| {
		let mut command = w.agent_ns.command(workspace_binary("cdn-agent").to_str().unwrap());
		command.args(["--config", cdn_config.to_str().unwrap()]).args(args);
		command
	};
	let registered = cdn_agent(&["register"]).output().unwrap();
	assert!(registered.status.success(), "{}", stderr(&registered));
	let cdn = Process::start(cdn_agent(&[]), w.dir.path().join("cdn-agent.log"));
	wait_for(Duration::from_secs(30), "the dCDN agent", || cdn.log().contains("cdn-agent serving").then_some(()))
		.unwrap_or_else(|e| panic!("{e}\n{}", cdn.log()));
	let agent = w.start_agent("1");
	let eve = Eve.to_account_id().to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into());

	// The dCDN through the dVPN agent's port: published (the token goes only to Eve's
	// registered key), downloaded, paid and verified.
	let object = data(3 << 20, 11);
	let file = w.dir.path().join("object.bin");
	std::fs::write(&file, &object).unwrap();
	let cdn_cli = |args: &[&str]| {
		let out = w
			.client_ns
			.command(workspace_binary("cdn").to_str().unwrap())
			.args(["--rpc", &format!("http://127.0.0.1:{}", w.rpc_port)])
			.args(["--state-dir", w.dir.path().join("cdn-client").to_str().unwrap()])
			.args(args)
			.output()
			.unwrap();
		assert!(
			out.status.success(),
			"cdn {args:?}: {}\ndCDN agent:\n{}\ndVPN agent:\n{}",
			stderr(&out),
			cdn.log(),
			agent.log()
		);
		String::from_utf8_lossy(&out.stdout).trim().to_string()
	};
	let endpoint = "https://10.99.1.1:7310";
	let hash = cdn_cli(&["publish", file.to_str().unwrap(), "--endpoint", endpoint, "--token", "secret-token"]);
	assert_eq!(hash, blake3::hash(&object).to_hex().as_str());
	let out = w.dir.path().join("object.out");
	let got = cdn_cli(&["get", &hash, "--provider", &eve, "--account", "//Alice", "-o", out.to_str().unwrap()]);
	assert_eq!(std::fs::read(&out).unwrap(), object, "{got}");

	// A browser (curl) gets the ordinary certificate and the dCDN's own answers.
	let curl = |url: &str| {
		let out =
			w.client_ns.command("curl").args(["-sk", "--max-time", "10", "-w", " %{http_code}", url]).output().unwrap();
		String::from_utf8_lossy(&out.stdout).into_owned()
	};
	assert_eq!(curl(&format!("{endpoint}/health")), "ok\n 200");
	assert!(curl(&format!("{endpoint}/content/{hash}")).ends_with(" 402"), "no session, no content");

	// The same port carries a paid tunnel over HTTPS.
	let https = ["--transport", "https", "--endpoint", "10.99.1.1:7310", "--route", "10.99.2.0/24"];
	let mut client = w.connect(
		"bob",
		"https",
		&[&["--provider", &eve, "--account", "//Bob", "--deposit", "1"][..], &https].concat(),
	);
	let session = World::session_id(&client.log());
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "{}\nagent:\n{}", client.log(), agent.log());
	let bytes = w.disconnect_and_close("bob", &mut client, session, &agent.log());
	assert!(bytes >= w.file.len() as u64, "{bytes}");
}

/// Issue 21: `vpn connect` works the same with an unlisted provider. The provider registers
/// without an endpoint (`vpn providers` says "unlisted" where the address was); the client
/// opens the session with its ML-KEM-768 key, the agent reveals the address sealed to it, and
/// the tunnel carries traffic and is paid for as with a listed provider. Both accounts are
/// ML-DSA-65 accounts (issue 19: the dVPN agent and client take an ML-DSA key file): the
/// provider is the dev ML-DSA account, the client a fresh one it funds.
#[test]
fn vpn_connect_works_the_same_with_an_unlisted_provider_and_ml_dsa_accounts() {
	let w = world();
	let rpc = format!("http://127.0.0.1:{}", w.rpc_port);
	let file = |name: &str| w.dir.path().join(name).to_str().unwrap().to_string();
	let pq_key = |args: &[&str]| {
		let out = Command::new(workspace_binary("pq-key")).args(args).output().unwrap();
		assert!(out.status.success(), "pq-key {args:?}: {}", stderr(&out));
		String::from_utf8_lossy(&out.stdout).into_owned()
	};
	let address = |generated: &str| {
		generated.lines().find_map(|l| l.strip_prefix("account:")).expect("an account line").trim().to_string()
	};
	let provider = address(&pq_key(&["generate", "--dev-account", "alice", "--out", &file("provider.mldsa")]));
	let client = address(&pq_key(&["generate", "--out", &file("client.mldsa")]));
	let funder = format!("ml-dsa:{}", file("provider.mldsa"));
	pq_key(&["transfer", "--rpc", &rpc, "--from", &funder, "--to", &client, "--amount", "20"]);

	let text = std::fs::read_to_string(&w.agent_config).unwrap();
	assert!(
		text.contains("endpoint = \"10.99.1.1:7310\"\n") && text.contains("account = \"//Eve\""),
		"the shipped config changed"
	);
	let text = text
		.replace("endpoint = \"10.99.1.1:7310\"\n", "")
		.replace("account = \"//Eve\"", &format!("account = \"{funder}\""))
		+ &format!(
			"\n[unlisted]\npool = [\"10.99.1.1:7310\"]\ndir = \"{}\"\npoll_interval_ms = 500\n",
			w.dir.path().join("unlisted").display()
		);
	std::fs::write(&w.agent_config, text).unwrap();
	let registered = w.register();
	assert!(registered.status.success(), "{}", stderr(&registered));
	let listed = w.vpn("client", &["providers", "--country", "DE"]);
	let listing = String::from_utf8_lossy(&listed.stdout).into_owned();
	let line = listing.lines().find(|l| l.contains(&provider)).unwrap_or_else(|| panic!("listed: {listing}"));
	assert!(line.trim_end().ends_with("unlisted") && !listing.contains("10.99.1.1"), "{listing}");

	let agent = w.start_agent("1");
	let account = format!("ml-dsa:{}", file("client.mldsa"));
	let mut connected = w.connect(
		"client",
		"1",
		&["--provider", &provider, "--account", &account, "--deposit", "1", "--route", "10.99.2.0/24"],
	);
	let log = connected.log();
	assert!(log.contains("the provider is unlisted") && log.contains("with 10.99.1.1:7310"), "{log}");
	let (ok, body) = w.fetch(60);
	assert!(ok && body == w.file, "{}", connected.log());
	let session = World::session_id(&connected.log());
	let on_chain = w.runtime.block_on(w.chain.session(session)).unwrap().expect("the session is open");
	assert_eq!(on_chain.client.to_ss58check_with_version(interlattice_runtime::SS58_PREFIX.into()), client);
	let paid = w.disconnect_and_close("client", &mut connected, session, &agent.log());
	assert!(paid > 0, "the session paid for its bytes");
}
