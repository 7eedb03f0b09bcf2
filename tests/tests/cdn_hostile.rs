//! The dCDN agent against hostile clients and strangers (issue 16, items 14–17, and its
//! "hostile client" test). A dev node and a `cdn-agent` (Dave, 1 MiB of credit per session);
//! an honest client (Bob) downloads an 8 MiB object, paying as it goes, while:
//!
//! - strangers use Alice's session id (public on-chain): the bare id, a capability signed by
//!   another key, a made-up token, a replayed capability, one for another provider;
//! - the attacker (Alice's own client, which never pays) sends 200 requests at once on its
//!   session, then reconnects ten times with fresh tokens;
//! - it floods the agent with badly signed receipts;
//! - a slowloris opens connections and never finishes a request head;
//! - free `HEAD`s and concurrent requests ask for an object only the origin has;
//! - expired, closed and unknown sessions ask for service.
//!
//! The attacker gets at most the credit in total, the flood and the slowloris are cut, the
//! origin is asked once, the ended sessions are refused, and Bob's download completes,
//! verified and paid.

use std::{
	net::SocketAddr,
	path::Path,
	process::{Child, Command, Stdio},
	time::{Duration, SystemTime, UNIX_EPOCH},
};

use interlattice_agent_core::{chain::ChainClient, meter::next_receipt, SessionKeys};
use interlattice_cdn::{
	client::{cdn_providers, CdnClient},
	protocol::{Capability, SignedCapability},
};
use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt};
use interlattice_runtime::UNIT;
use interlattice_tests::{free_port, node::workspace_binary, origin::Origin, prometheus_value, wait_for, Node};
use sp_keyring::Sr25519Keyring::{Alice, Bob, Dave};
use tokio::{
	io::{AsyncReadExt, AsyncWriteExt},
	net::{TcpSocket, TcpStream},
};

/// Bytes a session is served beyond its latest receipt.
const CREDIT: u64 = 1 << 20;
/// Where the attacker's and the strangers' connections come from (loopback aliases: the
/// agent's per-address connection cap must not hit the honest client on 127.0.0.1).
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const SLOWLORIS: [u8; 4] = [127, 0, 0, 3];
const MAX_CONNECTIONS_PER_IP: usize = 64;

struct AgentProcess(Child);

impl Drop for AgentProcess {
	fn drop(&mut self) {
		let _ = self.0.kill();
		let _ = self.0.wait();
	}
}

fn start_agent(dir: &Path, rpc_port: u16, port: u16, origin: u16) -> AgentProcess {
	let config = dir.join("cdn-agent.toml");
	std::fs::write(
		&config,
		format!(
			r#"
[chain]
rpc = "http://127.0.0.1:{rpc_port}"
[provider]
account = "//Dave"
[http]
# Plain HTTP: the attacks here are on HTTP itself, written byte by byte (TLS, on by
# default, is tested in cdn.rs).
plain_http = true
listen = "127.0.0.1:{port}"
shutdown_grace_secs = 2
payment_wait_ms = 1000
max_streams_per_session = 16
[cache]
dir = "{cache}"
max_bytes = 67108864
[origins]
urls = ["http://127.0.0.1:{origin}/objects/{{hash}}"]
[publish]
tokens = ["secret-token"]
[payment]
credit_limit_bytes = {CREDIT}
max_receipts_per_second = 5
receipts_dir = "{receipts}"
settle_interval_secs = 900
[limits]
max_connections = 1024
max_connections_per_ip = {MAX_CONNECTIONS_PER_IP}
handshake_timeout_secs = 2
idle_timeout_secs = 10
"#,
			cache = dir.join("cache").display(),
			receipts = dir.join("receipts").display(),
		),
	)
	.unwrap();
	let log = std::fs::File::create(dir.join("cdn-agent.log")).unwrap();
	let child = Command::new(workspace_binary("cdn-agent"))
		.args(["--config", config.to_str().unwrap()])
		.stdout(Stdio::from(log.try_clone().unwrap()))
		.stderr(Stdio::from(log))
		.spawn()
		.expect("cdn-agent starts");
	let agent = AgentProcess(child);
	wait_for(Duration::from_secs(60), "the agent to answer", || {
		std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(drop)
	})
	.unwrap();
	agent
}

/// An answer: its status (0: the connection was closed before a status line) and the body
/// bytes that arrived before the end or a cut.
#[derive(Debug)]
struct Answer {
	status: u16,
	body: Vec<u8>,
}

async fn connect_from(source: [u8; 4], agent: SocketAddr) -> std::io::Result<TcpStream> {
	let socket = TcpSocket::new_v4()?;
	socket.bind(SocketAddr::from((source, 0)))?;
	socket.connect(agent).await
}

/// One HTTP/1.1 request on a connection of its own from `source`, read to its end.
async fn request(
	agent: SocketAddr,
	source: [u8; 4],
	method: &str,
	path: &str,
	headers: &[(&str, String)],
	body: &[u8],
) -> Answer {
	let Ok(mut stream) = connect_from(source, agent).await else { return Answer { status: 0, body: Vec::new() } };
	let mut head =
		format!("{method} {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
	for (name, value) in headers {
		head.push_str(&format!("{name}: {value}\r\n"));
	}
	head.push_str("\r\n");
	if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body).await.is_err() {
		return Answer { status: 0, body: Vec::new() };
	}
	let mut raw = Vec::new();
	let mut buf = vec![0u8; 64 * 1024];
	loop {
		match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
			Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
			_ => break,
		}
	}
	let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
		return Answer { status: 0, body: Vec::new() };
	};
	let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
	let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
	let body = &raw[end + 4..];
	let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_vec() };
	Answer { status, body }
}

/// The data of a chunked body, as far as it arrived.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
	let mut out = Vec::new();
	while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
		let Ok(len) = usize::from_str_radix(String::from_utf8_lossy(&raw[..line_end]).trim(), 16) else { break };
		raw = &raw[line_end + 2..];
		if len == 0 {
			break;
		}
		out.extend_from_slice(&raw[..len.min(raw.len())]);
		if raw.len() < len + 2 {
			break;
		}
		raw = &raw[len + 2..];
	}
	out
}

fn unix_now() -> u64 {
	SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn signed_capability(key: &MlDsaKeyPair, capability: Capability) -> Vec<u8> {
	let signature = key.sign(&capability.signing_payload()).unwrap();
	serde_json::to_vec(&SignedCapability { capability, signature }).unwrap()
}

fn fresh_nonce() -> [u8; 32] {
	let mut nonce = [0u8; 32];
	nonce[..16].copy_from_slice(&SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos().to_le_bytes());
	nonce
}

fn text(answer: &Answer) -> String {
	String::from_utf8_lossy(&answer.body).into_owned()
}

#[test]
fn hostile_clients_and_strangers_cost_the_provider_at_most_its_credit_while_an_honest_client_is_served() {
	let dir = tempfile::tempdir().unwrap();
	let node = Node::start_dev(&dir.path().join("node"));
	let rpc = format!("http://127.0.0.1:{}", node.config.rpc_port);
	let port = free_port();
	let origin = Origin::start(Default::default());
	let _agent = start_agent(dir.path(), node.config.rpc_port, port, origin.port);
	let agent: SocketAddr = ([127, 0, 0, 1], port).into();
	let endpoint = format!("http://127.0.0.1:{port}");
	let runtime = tokio::runtime::Runtime::new().unwrap();
	runtime.block_on(async {
		let chain = ChainClient::connect(&rpc).await.unwrap();
		let movie = interlattice_tests::pseudo_random_bytes(8 << 20, 11);
		let file = dir.path().join("movie.bin");
		std::fs::write(&file, &movie).unwrap();
		let published =
			CdnClient::offline(&dir.path().join("publisher")).publish(&endpoint, "secret-token", &file).await.unwrap();
		let root = interlattice_cdn::content::parse_hash(&published.hash).unwrap();
		let content = format!("/content/{}", published.hash);
		let dave =
			cdn_providers(&chain).await.unwrap().into_iter().find(|p| p.account == Dave.to_account_id()).unwrap();

		// Bob, an honest client, downloads the movie meanwhile, paying as it arrives.
		let bob_out = dir.path().join("bob.out");
		let honest = {
			let (chain, dave, endpoint, bob_out, state) =
				(chain.clone(), dave.clone(), endpoint.clone(), bob_out.clone(), dir.path().join("bob"));
			tokio::spawn(async move {
				let client = CdnClient::new(chain, &state);
				let mut session = client.open_session(&Bob.pair().into(), &dave, UNIT, 1_000).await?;
				session.endpoint = endpoint;
				client.get(&mut session, &root, &bob_out, |_| {}).await
			})
		};

		// Alice's session: its client (the attacker) holds the session's key and never pays.
		let alice_state = dir.path().join("alice");
		let client = CdnClient::new(chain.clone(), &alice_state);
		let mut attack = client.open_session(&Alice.pair().into(), &dave, UNIT, 1_000).await.unwrap();
		attack.endpoint = endpoint.clone();
		let key = SessionKeys::new(&alice_state).for_session(attack.session_id, &attack.terms.client_key).unwrap();
		let (provider, attack_id) = (attack.terms.provider, attack.session_id);
		let capability =
			|nonce: [u8; 32]| Capability { provider, session_id: attack_id, nonce, expires_at: unix_now() + 300 };

		// Strangers: the session id alone (public on-chain) buys nothing (item 14)…
		let bare = request(
			agent,
			ATTACKER,
			"GET",
			&content,
			&[("x-interlattice-session", attack.session_id.to_string())],
			b"",
		)
		.await;
		assert_eq!(bare.status, 402, "{}", text(&bare));
		// …nor a capability for it signed by another key…
		let forged = signed_capability(&MlDsaKeyPair::generate().unwrap(), capability(fresh_nonce()));
		let answer = request(agent, ATTACKER, "POST", "/token", &[], &forged).await;
		assert_eq!(answer.status, 403, "{}", text(&answer));
		assert!(text(&answer).contains("not signed by the session's key"), "{}", text(&answer));
		// …nor a made-up token, nor a capability seen before, nor one for another provider.
		let made_up =
			request(agent, ATTACKER, "GET", &content, &[("Authorization", format!("Bearer {}", "ab".repeat(32)))], b"")
				.await;
		assert_eq!(made_up.status, 401);
		let once = signed_capability(&key, capability(fresh_nonce()));
		assert_eq!(request(agent, ATTACKER, "POST", "/token", &[], &once).await.status, 200);
		let replayed = request(agent, ATTACKER, "POST", "/token", &[], &once).await;
		assert_eq!(replayed.status, 403);
		assert!(text(&replayed).contains("used already"), "{}", text(&replayed));
		let elsewhere = signed_capability(&key, Capability { provider: [9; 32], ..capability(fresh_nonce()) });
		let answer = request(agent, ATTACKER, "POST", "/token", &[], &elsewhere).await;
		assert_eq!(answer.status, 403);
		assert!(text(&answer).contains("another provider"), "{}", text(&answer));

		let token = client.authorize(&mut attack).await.unwrap();
		let mut bearer = ("Authorization", format!("Bearer {token}"));
		let served =
			|answers: &[Answer]| answers.iter().filter(|a| a.status == 200).map(|a| a.body.len() as u64).sum::<u64>();
		let statuses = |answers: &[Answer]| {
			let mut s: Vec<u16> = answers.iter().map(|a| a.status).collect();
			s.sort_unstable();
			s.dedup();
			s
		};

		// Fills (item 16): an object only the origin has. A `HEAD` without a token answers from
		// the cache and asks the origin nothing; 20 paid requests at once fill it once.
		let filled = interlattice_tests::pseudo_random_bytes(2 << 20, 12);
		let filled_hash = blake3::hash(&filled).to_hex().to_string();
		origin.objects.lock().unwrap().insert(filled_hash.clone(), filled.clone());
		let head = request(agent, ATTACKER, "HEAD", &format!("/content/{filled_hash}"), &[], b"").await;
		assert_eq!(head.status, 404);
		assert_eq!(origin.requests(), 0, "a free HEAD started a fill");
		let slice = format!("/slice/{filled_hash}?start=0&len=1");
		let fills = (0..20).map(|_| request(agent, ATTACKER, "GET", &slice, std::slice::from_ref(&bearer), b""));
		let answers = futures::future::join_all(fills).await;
		let mut taken = served(&answers);
		assert!(answers.iter().any(|a| a.status == 200), "{:?}", statuses(&answers));
		assert_eq!(origin.requests(), 1, "one fill for 20 requests at once");

		// The attacker: 200 requests at once on its one session (item 15). Bytes are reserved
		// before they are sent, so together they get at most the credit.
		let flood = (0..200).map(|_| request(agent, ATTACKER, "GET", &content, std::slice::from_ref(&bearer), b""));
		let answers = futures::future::join_all(flood).await;
		taken += served(&answers);
		assert!(taken > 0 && taken <= CREDIT, "200 requests at once took {taken} bytes, credit {CREDIT}");
		assert!(
			answers.iter().any(|a| a.status != 200),
			"some were refused (429, 402 or the connection cap): {:?}",
			statuses(&answers)
		);
		for a in answers.iter().filter(|a| a.status == 200) {
			assert_eq!(&a.body[..], &movie[..a.body.len()], "what was served is the object");
		}

		// A reconnect loop: new connections and new tokens, one session, one credit (item 7's
		// dCDN form).
		for _ in 0..10 {
			let grant =
				request(agent, ATTACKER, "POST", "/token", &[], &signed_capability(&key, capability(fresh_nonce())))
					.await;
			assert_eq!(grant.status, 200, "{}", text(&grant));
			let token: serde_json::Value = serde_json::from_slice(&grant.body).unwrap();
			// A session holds at most 8 tokens: the newest is the one to use from now on.
			bearer = ("Authorization", format!("Bearer {}", token["token"].as_str().unwrap()));
			let again = request(agent, ATTACKER, "GET", &content, std::slice::from_ref(&bearer), b"").await;
			assert!(again.status == 402 || again.status == 200, "{again:?}");
			taken += if again.status == 200 { again.body.len() as u64 } else { 0 };
		}
		assert!(taken <= CREDIT, "reconnecting took {taken} bytes in all, credit {CREDIT}");

		// A receipt flood (item 17): 100 badly signed receipts at once. None is accepted; the
		// per-session rate limit turns most away before their signature is even checked.
		let receipt = next_receipt(&attack.terms, 1, CREDIT, 0).unwrap();
		let bad = SignedUsageReceipt {
			receipt,
			signature: MlDsaKeyPair::generate().unwrap().sign(&receipt.signing_payload()).unwrap(),
		};
		let bad = serde_json::to_vec(&bad).unwrap();
		let flood =
			(0..100).map(|_| request(agent, ATTACKER, "POST", "/receipts", std::slice::from_ref(&bearer), &bad));
		let answers = futures::future::join_all(flood).await;
		assert!(answers.iter().all(|a| a.status != 200), "a badly signed receipt was accepted");
		assert!(answers.iter().any(|a| a.status == 429), "the rate limit turned some away: {:?}", statuses(&answers));
		assert!(
			answers.iter().any(|a| a.status == 400),
			"the others were checked and refused: {:?}",
			statuses(&answers)
		);

		// A slowloris (item 17): connections that never finish a request head are closed after
		// the handshake timeout (2 s); those beyond the per-address cap at once.
		let mut idle = Vec::new();
		for _ in 0..(MAX_CONNECTIONS_PER_IP + 16) {
			if let Ok(mut s) = connect_from(SLOWLORIS, agent).await {
				let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: a").await;
				idle.push(s);
			}
		}
		let started = std::time::Instant::now();
		for mut s in idle {
			let mut buf = [0u8; 1024];
			let closed = loop {
				match tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
					Ok(Ok(0)) | Ok(Err(_)) => break true,
					Ok(Ok(_)) => continue,
					Err(_) => break false,
				}
			};
			assert!(closed, "a half-open request was still held after {:?}", started.elapsed());
		}

		// Ended sessions get no service (item 8's dCDN form): a session past its expiry, an
		// unknown (or finalized) one, and a session its client closed, whose token stops
		// working once the agent sees it closing.
		let mut short = client.open_session(&Alice.pair().into(), &dave, UNIT, 2).await.unwrap();
		short.endpoint = endpoint.clone();
		let short_key = SessionKeys::new(&alice_state).for_session(short.session_id, &short.terms.client_key).unwrap();
		let expires_at = u64::from(chain.session(short.session_id).await.unwrap().unwrap().expires_at);
		while chain.best_number().await.unwrap() <= expires_at {
			tokio::time::sleep(Duration::from_secs(1)).await;
		}
		let late = Capability { session_id: short.session_id, ..capability(fresh_nonce()) };
		let answer = request(agent, ATTACKER, "POST", "/token", &[], &signed_capability(&short_key, late)).await;
		assert_eq!(answer.status, 403);
		assert!(text(&answer).contains("closed or expired"), "{}", text(&answer));
		let unknown = Capability { session_id: 999_999, ..capability(fresh_nonce()) };
		let answer = request(agent, ATTACKER, "POST", "/token", &[], &signed_capability(&key, unknown)).await;
		assert_eq!(answer.status, 403);
		assert!(text(&answer).contains("does not exist"), "{}", text(&answer));
		let close = interlattice_runtime::RuntimeCall::SessionEscrow(pallet_session_escrow::Call::close_session {
			session_id: attack.session_id,
		});
		chain.submit_and_watch(close, &Alice.pair().into()).await.unwrap();
		let mut refused = None;
		for _ in 0..40 {
			let answer = request(
				agent,
				ATTACKER,
				"GET",
				&format!("/slice/{}?start=0&len=1", published.hash),
				std::slice::from_ref(&bearer),
				b"",
			)
			.await;
			if answer.status == 403 {
				refused = Some(text(&answer));
				break;
			}
			tokio::time::sleep(Duration::from_secs(1)).await;
		}
		let refused = refused.expect("the closed session's token still works after 40 s");
		assert!(refused.contains("closed or expired"), "{refused}");

		// Meanwhile Bob was served: the whole movie, verified, and paid.
		let size = honest.await.unwrap().expect("the honest client's download");
		assert_eq!(size, movie.len() as u64);
		assert_eq!(std::fs::read(&bob_out).unwrap(), movie);
	});
	// What the provider has served and not been paid for, over all sessions: at most the
	// attacker's credit.
	let unpaid = prometheus_value(port, "interlattice_cdn_unpaid_bytes").expect("the agent's metrics");
	assert!(unpaid <= CREDIT as f64, "unpaid bytes {unpaid} exceed the credit {CREDIT}");
}
