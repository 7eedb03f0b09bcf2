//! Unlisted endpoints on a running node (issue 21): a dCDN provider (Ferdie) registers
//! without an endpoint and gives each paying client one address of a two-address pool,
//! sealed to the session's ML-KEM-768 key. The clients (`cdn get`, unchanged for them)
//! connect through the revealed address and pay; two accounts get different addresses and
//! one account always the same; reports from one account alone retire nothing, reports
//! from two distinct paying accounts retire the address and move its sessions; the next
//! client gets the other address. Then, as the censor would: the addresses' bytes are
//! searched, in several encodings, in every storage value and key, every block, every
//! block's events, the registry's and the escrow's RPC answers and the node's log; a reveal
//! is opened with another session's key; malformed and oversized reveals are submitted.

use std::{
	collections::BTreeSet,
	path::{Path, PathBuf},
	process::{Child, Command, Stdio},
	time::Duration,
};

use codec::{Decode, Encode};
use interlattice_agent_core::{
	account::AccountKey,
	chain::{ChainClient, Provider, Session},
	reveal::{sealed_endpoint, session_info, RevealError, RevealKeyPair},
	unlisted::{account_hex, assign, RevealRecords},
	SessionKeys, SessionRequest,
};
use interlattice_runtime::{AccountId, RuntimeCall};
use interlattice_tests::{chain::from_hex, free_port, node::workspace_binary, wait_for, Node};
use pallet_provider_registry::{Prices, ServiceKind};
use serde_json::{json, Value};
use sp_keyring::Sr25519Keyring::{self, Alice, Bob, Charlie, Ferdie};

const UNIT: u128 = interlattice_runtime::UNIT;

fn cdn(args: &[&str]) -> Result<(String, String), String> {
	let out = Command::new(workspace_binary("cdn")).args(args).output().expect("cdn runs");
	let (stdout, stderr) =
		(String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
	if out.status.success() {
		Ok((stdout, stderr))
	} else {
		Err(stderr)
	}
}

fn write_config(dir: &Path, rpc: &str, port: u16, service_key: &Path) -> PathBuf {
	let path = dir.join("cdn-agent.toml");
	std::fs::write(
		&path,
		format!(
			r#"
[chain]
rpc = "{rpc}"
[provider]
account = "//Ferdie"
service_key = "{service}"
country = "IS"
price_per_gib = "0.5"
price_per_hour = "0"
stake = "1000"
[http]
listen = "0.0.0.0:{port}"
shutdown_grace_secs = 5
[cache]
dir = "{cache}"
max_bytes = 67108864
[publish]
tokens = ["secret-token"]
[payment]
credit_limit_bytes = 1048576
receipts_dir = "{receipts}"
settle_interval_secs = 2
[unlisted]
pool = ["https://127.0.0.1:{port}", "https://127.0.0.2:{port}"]
dir = "{unlisted}"
burn_threshold = 2
max_burned_per_account = 2
poll_interval_ms = 500
"#,
			service = service_key.display(),
			cache = dir.join("cache").display(),
			receipts = dir.join("receipts").display(),
			unlisted = dir.join("unlisted").display(),
		),
	)
	.unwrap();
	path
}

struct Agent(Child);

impl Drop for Agent {
	fn drop(&mut self) {
		let _ = self.0.kill();
		let _ = self.0.wait();
	}
}

fn account(k: Sr25519Keyring) -> AccountId {
	k.to_account_id()
}

/// A ring key under which Alice and Charlie share an address and Bob has the other.
fn ring_key_for(pool: &[String]) -> [u8; 32] {
	let none = BTreeSet::new();
	(0u8..=255)
		.map(|k| [k; 32])
		.find(|key| {
			let of = |who: Sr25519Keyring| assign(key, pool, &none, account_hex(&account(who)).as_bytes());
			of(Alice) == of(Charlie) && of(Alice) != of(Bob)
		})
		.expect("some key among 256 splits three accounts so")
}

/// What a censor searches for: the address as text (with and without scheme), its text in
/// hex (as JSON-RPC answers carry bytes), and the IPv4 address with its port as bytes (big-
/// and little-endian port), raw and in hex.
fn encodings(url: &str) -> Vec<(String, Vec<u8>)> {
	let host_port = url.trim_start_matches("https://");
	let (host, port) = host_port.rsplit_once(':').unwrap();
	let ip: std::net::Ipv4Addr = host.parse().unwrap();
	let port: u16 = port.parse().unwrap();
	let raw_be = [ip.octets().as_slice(), &port.to_be_bytes()].concat();
	let raw_le = [ip.octets().as_slice(), &port.to_le_bytes()].concat();
	vec![
		("text".into(), url.as_bytes().to_vec()),
		("host:port".into(), host_port.as_bytes().to_vec()),
		("hex of text".into(), hex::encode(host_port).into_bytes()),
		("ip+port (BE)".into(), raw_be.clone()),
		("ip+port (LE)".into(), raw_le.clone()),
		("hex of ip+port (BE)".into(), hex::encode(&raw_be).into_bytes()),
		("hex of ip+port (LE)".into(), hex::encode(&raw_le).into_bytes()),
	]
}

/// Every place (`where`) an encoding of `needles` occurs in `haystack`.
fn scan(place: &str, haystack: &[u8], needles: &[(String, Vec<u8>)], found: &mut Vec<String>) {
	let lower = haystack.to_ascii_lowercase();
	for (label, needle) in needles {
		if lower.windows(needle.len()).any(|w| w == needle.as_slice()) {
			found.push(format!("{label} in {place}"));
		}
	}
}

/// Searches the whole state at the best block, every block and its events, the RPC answers
/// and the node's log for `needles`.
fn search_everywhere(node: &Node, needles: &[(String, Vec<u8>)], rpc_calls: &[(&str, Value)]) -> Vec<String> {
	let rpc = &node.rpc;
	let mut found = Vec::new();
	let best = rpc.best_number().unwrap();
	let best_hash = rpc.call("chain_getBlockHash", json!([best])).unwrap();
	// Every storage key and value.
	let mut start: Option<String> = None;
	let mut keys = 0;
	loop {
		let page = rpc.call("state_getKeysPaged", json!(["0x", 1000, start, best_hash])).unwrap();
		let page: Vec<String> = serde_json::from_value(page).unwrap();
		for key in &page {
			let value = rpc.call("state_getStorage", json!([key, best_hash])).unwrap();
			scan(&format!("storage key {key}"), &from_hex(key), needles, &mut found);
			if let Some(v) = value.as_str() {
				scan(&format!("storage value of {key}"), &from_hex(v), needles, &mut found);
			}
		}
		keys += page.len();
		if page.len() < 1000 {
			break;
		}
		start = page.last().cloned();
	}
	assert!(keys > 50, "the state was read ({keys} keys)");
	// Every block, its extrinsics decoded from hex, and its events.
	let events_key = format!(
		"0x{}{}",
		hex::encode(sp_crypto_hashing::twox_128(b"System")),
		hex::encode(sp_crypto_hashing::twox_128(b"Events"))
	);
	for n in 0..=best {
		let hash = rpc.call("chain_getBlockHash", json!([n])).unwrap();
		let block = rpc.call("chain_getBlock", json!([hash])).unwrap();
		scan(&format!("block #{n}"), block.to_string().as_bytes(), needles, &mut found);
		for xt in block["block"]["extrinsics"].as_array().unwrap() {
			scan(&format!("an extrinsic of block #{n}"), &from_hex(xt.as_str().unwrap()), needles, &mut found);
		}
		if let Some(events) = rpc.call("state_getStorage", json!([events_key, hash])).unwrap().as_str() {
			scan(&format!("the events of block #{n}"), &from_hex(events), needles, &mut found);
		}
	}
	for (method, params) in rpc_calls {
		let answer = rpc.call(method, params.clone()).unwrap();
		scan(&format!("the answer to {method}"), answer.to_string().as_bytes(), needles, &mut found);
	}
	scan("the node's log", node.log_tail(usize::MAX).as_bytes(), needles, &mut found);
	found
}

fn request() -> SessionRequest {
	SessionRequest {
		service: ServiceKind::Cdn,
		max_prices: Prices { per_gib: UNIT, per_hour: UNIT },
		deposit: UNIT,
		duration_blocks: 600,
	}
}

#[test]
fn an_unlisted_provider_reveals_one_sealed_address_per_client_retires_burned_ones_and_leaks_none() {
	let dir = tempfile::tempdir().unwrap();
	let mut node = Node::start_dev(&dir.path().join("node"));
	let rpc = format!("http://127.0.0.1:{}", node.config.rpc_port);
	let path = |name: &str| dir.path().join(name);
	let runtime = tokio::runtime::Runtime::new().unwrap();
	let chain = runtime.block_on(ChainClient::connect(&rpc)).unwrap();
	let genesis: [u8; 32] = chain.genesis_hash().into();

	// Ferdie registers the dCDN unlisted: no endpoint in the registry.
	let service_key = path("service.key");
	let out = Command::new(workspace_binary("pq-key"))
		.args(["generate", "--out", service_key.to_str().unwrap()])
		.output()
		.unwrap();
	assert!(out.status.success(), "{out:?}");
	let port = free_port();
	let pool = vec![format!("https://127.0.0.1:{port}"), format!("https://127.0.0.2:{port}")];
	let config = write_config(dir.path(), &rpc, port, &service_key);
	let agent = workspace_binary("cdn-agent");
	let out = Command::new(&agent).args(["--config", config.to_str().unwrap(), "register"]).output().unwrap();
	assert!(out.status.success(), "register: {}", String::from_utf8_lossy(&out.stderr));
	let ferdie: Provider = runtime.block_on(chain.provider(&account(Ferdie))).unwrap().expect("Ferdie is a provider");
	assert!(ferdie.endpoints.is_empty(), "{:?}", ferdie.endpoints);
	assert!(interlattice_agent_core::is_unlisted(&ferdie, ServiceKind::Cdn));
	let (providers, _) = cdn(&["providers", "--rpc", &rpc]).unwrap();
	let line = providers.lines().find(|l| l.contains(" IS ")).expect("Ferdie (IS) is listed");
	assert!(line.trim_end().ends_with("unlisted"), "{providers}");

	// The ring key is chosen so that Alice and Charlie share an address and Bob has the other.
	let ring_key = ring_key_for(&pool);
	std::fs::create_dir_all(path("unlisted")).unwrap();
	std::fs::write(path("unlisted/ring.key"), ring_key).unwrap();
	let none = BTreeSet::new();
	let address_of = |who| assign(&ring_key, &pool, &none, account_hex(&account(who)).as_bytes()).unwrap().to_string();
	let (shared, other) = (address_of(Alice), address_of(Bob));
	assert_ne!(shared, other);

	let log = std::fs::File::create(path("agent.log")).unwrap();
	let _agent = Agent(
		Command::new(&agent)
			.args(["--config", config.to_str().unwrap()])
			.stdout(Stdio::from(log.try_clone().unwrap()))
			.stderr(Stdio::from(log))
			.spawn()
			.unwrap(),
	);
	let ferdie_name = ferdie.account.to_string();
	let movie = interlattice_tests::pseudo_random_bytes(2 << 20, 21);
	std::fs::write(path("movie.bin"), &movie).unwrap();
	let hash = wait_for(Duration::from_secs(60), "the agent to take a publication", || {
		let file = path("movie.bin");
		let (out, _) = cdn(&[
			"publish",
			file.to_str().unwrap(),
			"--rpc",
			&rpc,
			"--endpoint",
			&pool[0],
			"--token",
			"secret-token",
			"--provider",
			&ferdie_name,
		])
		.ok()?;
		Some(out.trim().to_string())
	})
	.unwrap();

	// Alice and Bob fetch with `cdn get`, as from any provider: each is revealed its address.
	let get = |who: &str, state: &str, out: &str| {
		let (state, out) = (path(state), path(out));
		let args = [
			"get",
			&hash,
			"--rpc",
			&rpc,
			"--state-dir",
			state.to_str().unwrap(),
			"--account",
			who,
			"--provider",
			&ferdie_name,
			"-o",
			out.to_str().unwrap(),
		];
		let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
		std::thread::spawn(move || {
			let args: Vec<&str> = args.iter().map(String::as_str).collect();
			cdn(&args)
		})
	};
	let (alice_get, bob_get) = (get("//Alice", "alice", "alice.out"), get("//Bob", "bob", "bob.out"));
	let (alice_out, alice_err) = alice_get.join().unwrap().expect("Alice's cdn get");
	let (bob_out, bob_err) = bob_get.join().unwrap().expect("Bob's cdn get");
	assert_eq!(std::fs::read(path("alice.out")).unwrap(), movie);
	assert_eq!(std::fs::read(path("bob.out")).unwrap(), movie);
	let session_of = |out: &str| -> u64 { out.split_whitespace().last().unwrap().parse().unwrap() };
	let (alice_session, bob_session) = (session_of(&alice_out), session_of(&bob_out));
	assert!(alice_err.contains(&format!("with {shared}")), "Alice got her ring address: {alice_err}");
	assert!(bob_err.contains(&format!("with {other}")), "Bob got the other address: {bob_err}");
	// Alice again: the same address.
	let (again_out, again_err) = get("//Alice", "alice", "alice2.out").join().unwrap().expect("Alice's second get");
	assert!(again_err.contains(&format!("with {shared}")), "{again_err}");
	assert_ne!(session_of(&again_out), alice_session);
	// The agent settles: the chain pays Ferdie from Alice's deposit.
	wait_for(Duration::from_secs(90), "Alice's session to settle", || {
		let s = runtime.block_on(chain.session(alice_session)).ok()??;
		(s.settled > 0).then_some(())
	})
	.unwrap();

	// A reveal opens only with its own session's key: Bob cannot read Alice's.
	let session = |id| runtime.block_on(chain.session(id)).unwrap().expect("the session is open");
	let pair_of = |state: &str, s: &Session| {
		let key = SessionKeys::new(&path(state)).for_session(s.session_id, &s.client_key).unwrap();
		RevealKeyPair::for_session(&key)
	};
	let alice_s = session(alice_session);
	let sealed = runtime.block_on(sealed_endpoint(&chain, alice_session)).unwrap().expect("revealed");
	let alice_info = session_info(&genesis, &alice_s);
	assert_eq!(pair_of("alice", &alice_s).open(&alice_info, &sealed).unwrap(), shared);
	let bob_pair = pair_of("bob", &session(bob_session));
	assert!(matches!(bob_pair.open(&alice_info, &sealed), Err(RevealError::WrongKey)));

	// Reports: Alice alone, twice (`cdn report`), retires nothing.
	let alice_key = AccountKey::from_secret("//Alice").unwrap();
	let alice_keys = SessionKeys::new(&path("alice"));
	let alice_state = path("alice");
	for _ in 0..2 {
		let id = alice_session.to_string();
		let args = ["report", "--rpc", &rpc, "--state-dir", alice_state.to_str().unwrap(), "--account", "//Alice"];
		let (out, _) = cdn(&[&args[..], &["--session", &id, "--wait", "3"]].concat()).expect("cdn report");
		assert!(out.contains("has not moved the session"), "one account's reports retire nothing: {out}");
	}
	let reported_at = chain_best(&runtime, &chain);
	let records = wait_for(Duration::from_secs(60), "the agent to read the reports", || {
		let r = RevealRecords::load(&path("unlisted/records.json")).ok()?;
		(r.last_block >= reported_at).then_some(r)
	})
	.unwrap();
	assert!(records.retired.is_empty());
	assert_eq!(records.reports.get(&shared).map(|s| s.len()), Some(1));
	// The agent recorded who learned which address.
	assert!(records.learned[&shared].contains(&account_hex(&account(Alice))));
	assert!(records.learned[&other].contains(&account_hex(&account(Bob))));
	assert!(!records.learned[&shared].contains(&account_hex(&account(Bob))));

	// Charlie, another paying client of the same address, reports it too: it is retired,
	// and Charlie's and Alice's sessions are moved to the other address.
	let charlie_key = AccountKey::from_secret("//Charlie").unwrap();
	let charlie_keys = SessionKeys::new(&path("charlie"));
	let (charlie_s, _) = runtime
		.block_on(interlattice_agent_core::open_session(&chain, &charlie_key, &charlie_keys, &ferdie, &request()))
		.unwrap();
	let revealed =
		runtime.block_on(interlattice_agent_core::revealed_endpoint(&chain, &charlie_keys, &charlie_s, None)).unwrap();
	assert_eq!(revealed, shared);
	let moved = runtime
		.block_on(interlattice_agent_core::report_unreachable(
			&chain,
			&charlie_key,
			&charlie_keys,
			&charlie_s,
			Duration::from_secs(60),
		))
		.unwrap();
	assert_eq!(moved.as_deref(), Some(other.as_str()), "two distinct paying clients retire an address");
	let alice_now = wait_for(Duration::from_secs(60), "Alice's session to be moved", || {
		let sealed = runtime.block_on(sealed_endpoint(&chain, alice_session)).ok()??;
		pair_of("alice", &alice_s).open(&alice_info, &sealed).ok().filter(|e| *e != shared)
	})
	.unwrap();
	assert_eq!(alice_now, other);
	// The next client of that part of the ring gets the other address too.
	let (next_s, _) = runtime
		.block_on(interlattice_agent_core::open_session(&chain, &alice_key, &alice_keys, &ferdie, &request()))
		.unwrap();
	let next =
		runtime.block_on(interlattice_agent_core::revealed_endpoint(&chain, &alice_keys, &next_s, None)).unwrap();
	assert_eq!(next, other);

	// A malformed or oversized reveal is refused: it does not even decode.
	let genesis_hash = chain.genesis_hash();
	let call = RuntimeCall::SessionEscrow(pallet_session_escrow::Call::reveal_endpoint {
		session_id: next_s.session_id,
		sealed: Box::new(sealed.clone()),
	});
	let nonce = interlattice_tests::chain::next_nonce(&node.rpc, &account(Ferdie)).unwrap();
	let xt = interlattice_tests::chain::signed_extrinsic(call.clone(), Ferdie, nonce, genesis_hash);
	let encoded = xt.encode();
	let call_bytes = call.encode();
	let at = encoded.windows(call_bytes.len()).position(|w| w == call_bytes.as_slice()).unwrap() + call_bytes.len();
	let body = &encoded[codec::Compact::<u32>::decode(&mut &encoded[..]).unwrap().encoded_size()..];
	let offset = encoded.len() - body.len();
	for (what, changed) in [
		("oversized", [&body[..at - offset], &[0u8][..], &body[at - offset..]].concat()),
		("truncated", [&body[..at - offset - 1], &body[at - offset..]].concat()),
	] {
		let bytes = [codec::Compact(changed.len() as u32).encode(), changed].concat();
		let answer = node.rpc.call("author_submitExtrinsic", json!([format!("0x{}", hex::encode(bytes))]));
		assert!(answer.is_err(), "a {what} reveal is refused: {answer:?}");
	}
	let before = node.rpc.best_number().unwrap();
	node.wait(Duration::from_secs(30), "the chain to go on", |n| n.rpc.best_number().filter(|&b| b > before)).unwrap();

	// The censor's search: neither address, in any encoding, anywhere on chain, in the node's
	// RPC answers or in its log. (Control: Dave's listed endpoint is found by the same search.)
	let mut rpc_calls = vec![
		("registry_providers", json!([{ "service": "cdn" }])),
		("registry_provider", json!([ferdie_name])),
		("registry_stats", json!([])),
		("escrow_providerSessions", json!([ferdie_name])),
	];
	let clients: Vec<String> = [Alice, Bob, Charlie].iter().map(|k| account(*k).to_string()).collect();
	for c in &clients {
		rpc_calls.push(("escrow_clientSessions", json!([c])));
	}
	for id in [alice_session, bob_session, charlie_s.session_id, next_s.session_id] {
		rpc_calls.push(("escrow_session", json!([id])));
	}
	let needles: Vec<(String, Vec<u8>)> = pool.iter().flat_map(|a| encodings(a)).collect();
	let found = search_everywhere(&node, &needles, &rpc_calls);
	assert!(found.is_empty(), "an unlisted address leaked: {found:#?}");
	// Controls: the same search finds a listed endpoint in storage and in the registry's
	// answer, and an address someone wrote into a block (a remark) in that block.
	let control = encodings(interlattice_runtime::genesis_config_presets::DEV_CDN_ENDPOINT);
	let control_found = search_everywhere(&node, &control[..2], &rpc_calls[..1]);
	assert!(
		control_found.iter().any(|f| f.contains("storage value"))
			&& control_found.iter().any(|f| f.contains("registry_providers")),
		"the search finds a listed endpoint: {control_found:?}"
	);
	let remark = [&[127u8, 0, 0, 9][..], &4242u16.to_be_bytes()].concat();
	interlattice_tests::chain::submit_and_wait(
		&mut node,
		Bob,
		RuntimeCall::System(frame_system::Call::remark { remark }),
	);
	let control_found = search_everywhere(&node, &encodings("127.0.0.9:4242"), &[]);
	assert!(
		control_found.iter().any(|f| f.starts_with("ip+port (BE) in an extrinsic of block")),
		"the search finds an address in a block: {control_found:?}"
	);
}

fn chain_best(runtime: &tokio::runtime::Runtime, chain: &ChainClient) -> u64 {
	runtime.block_on(chain.best_number()).unwrap()
}
