//! The dCDN end to end on a dev node: the `cdn-agent` binary runs as Dave (the dev chain's
//! bootstrap CDN provider) with an origin behind it; the `cdn` binary publishes a
//! multi-megabyte file, fetches it (and an origin-filled object) through a paid session,
//! verifying every chunk; HTTP semantics are checked with curl; a tampering origin is never
//! cached and a tampering agent is caught at the first bad chunk; the agent is SIGKILLed and
//! restarted with no acknowledged receipt lost; at shutdown it settles, and the chain pays
//! Dave exactly what Alice signed for.

use std::{
	collections::HashMap,
	io::{BufRead, BufReader, Read, Write},
	net::{TcpListener, TcpStream},
	path::{Path, PathBuf},
	process::{Child, Command, Stdio},
	sync::{
		atomic::{AtomicBool, Ordering},
		Arc, Mutex,
	},
	time::Duration,
};

use interlattice_agent_core::chain::ChainClient;
use interlattice_cdn::client::{CdnClient, ClientError, SessionRecord};
use interlattice_tests::{free_port, node::workspace_binary, wait_for, Node};
use pallet_session_escrow::types::max_amount_owed;
use sp_keyring::Sr25519Keyring::Dave;

/// A minimal HTTP origin serving `/objects/<hash>` from memory (optionally lying).
fn start_origin(objects: Arc<Mutex<HashMap<String, Vec<u8>>>>) -> u16 {
	let listener = TcpListener::bind("127.0.0.1:0").unwrap();
	let port = listener.local_addr().unwrap().port();
	std::thread::spawn(move || {
		for stream in listener.incoming().flatten() {
			let objects = objects.clone();
			std::thread::spawn(move || {
				let mut reader = BufReader::new(stream.try_clone().unwrap());
				let mut line = String::new();
				let _ = reader.read_line(&mut line);
				loop {
					let mut header = String::new();
					if reader.read_line(&mut header).unwrap_or(0) <= 2 {
						break;
					}
				}
				let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
				let key = path.trim_start_matches("/objects/").to_string();
				let mut stream = stream;
				match objects.lock().unwrap().get(&key) {
					Some(body) => {
						let _ = write!(
							stream,
							"HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
							body.len()
						);
						let _ = stream.write_all(body);
					},
					None => {
						let _ = stream
							.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
					},
				}
			});
		}
	});
	port
}

/// A tampering agent: a plain-HTTP front (`http://127.0.0.1:port`) that relays to the agent
/// over TLS (HTTP/1.1) and flips one byte of every response body at `at`.
fn start_tampering_proxy(agent_port: u16, at: usize) -> u16 {
	let listener = TcpListener::bind("127.0.0.1:0").unwrap();
	let port = listener.local_addr().unwrap().port();
	listener.set_nonblocking(true).unwrap();
	std::thread::spawn(move || {
		let runtime = tokio::runtime::Runtime::new().unwrap();
		runtime.block_on(async move {
			use tokio::io::{AsyncReadExt, AsyncWriteExt};
			let listener = tokio::net::TcpListener::from_std(listener).unwrap();
			let mut tls = interlattice_agent_core::tls::client_config_authenticated_inside().unwrap();
			tls.alpn_protocols = vec![b"http/1.1".to_vec()];
			let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
			while let Ok((client, _)) = listener.accept().await {
				let connector = connector.clone();
				tokio::spawn(async move {
					let upstream = tokio::net::TcpStream::connect(("127.0.0.1", agent_port)).await.unwrap();
					let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
					let Ok(upstream) = connector.connect(name, upstream).await else { return };
					let (mut u_read, mut u_write) = tokio::io::split(upstream);
					let (mut c_read, mut c_write) = client.into_split();
					tokio::spawn(async move {
						let _ = tokio::io::copy(&mut c_read, &mut u_write).await;
					});
					let mut seen = Vec::new();
					let mut body_start = None;
					let mut buf = vec![0u8; 64 * 1024];
					loop {
						let n = match u_read.read(&mut buf).await {
							Ok(0) | Err(_) => break,
							Ok(n) => n,
						};
						let start = seen.len();
						seen.extend_from_slice(&buf[..n]);
						if body_start.is_none() {
							body_start = seen.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
						}
						if let Some(b) = body_start {
							let target = b + at;
							if (start..start + n).contains(&target) {
								buf[target - start] ^= 0x01;
							}
						}
						if c_write.write_all(&buf[..n]).await.is_err() {
							break;
						}
					}
				});
			}
		});
	});
	port
}

struct Agent {
	child: Child,
}

impl Agent {
	fn start(config: &Path, port: u16) -> Agent {
		let log = std::fs::File::create(config.with_extension(format!(
			"log.{}",
			std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
		)))
		.unwrap();
		let child = Command::new(workspace_binary("cdn-agent"))
			.args(["--config", config.to_str().unwrap()])
			.stdout(Stdio::from(log.try_clone().unwrap()))
			.stderr(Stdio::from(log))
			.spawn()
			.expect("cdn-agent starts");
		wait_for(Duration::from_secs(60), "the agent to answer", || {
			curl(port, &["-o", "/dev/null", "-w", "%{http_code}", "/health"]).filter(|s| s == "200")
		})
		.unwrap();
		Agent { child }
	}

	fn signal(&mut self, signal: &str) {
		let _ = Command::new("kill").args([signal, &self.child.id().to_string()]).status();
		let _ = self.child.wait();
	}
}

impl Drop for Agent {
	fn drop(&mut self) {
		let _ = self.child.kill();
		let _ = self.child.wait();
	}
}

/// Runs curl against the agent on `port`; the last argument is the path. Stdout.
fn curl(port: u16, args: &[&str]) -> Option<String> {
	curl_bytes(port, args).map(|out| String::from_utf8_lossy(&out).into_owned())
}

fn curl_bytes(port: u16, args: &[&str]) -> Option<Vec<u8>> {
	let (path, rest) = args.split_last().unwrap();
	let out = Command::new("curl")
		// -k: curl gets the agent's self-signed certificate (ours get its service key's).
		.args(["-sk", "--http1.1", "--max-time", "30"])
		.args(rest)
		.arg(format!("https://127.0.0.1:{port}{path}"))
		.output()
		.ok()?;
	Some(out.stdout)
}

fn cdn(args: &[&str]) -> Result<String, String> {
	let out = Command::new(workspace_binary("cdn")).args(args).output().expect("cdn runs");
	if out.status.success() {
		Ok(String::from_utf8_lossy(&out.stdout).into_owned())
	} else {
		Err(String::from_utf8_lossy(&out.stderr).into_owned())
	}
}

fn data(len: usize, seed: u8) -> Vec<u8> {
	interlattice_tests::pseudo_random_bytes(len, seed)
}

fn write_config(dir: &Path, rpc: u16, port: u16, origin: u16) -> PathBuf {
	let path = dir.join("cdn-agent.toml");
	std::fs::write(
		&path,
		format!(
			r#"
[chain]
rpc = "http://127.0.0.1:{rpc}"
[provider]
account = "//Dave"
service_key = "dev:dave"
[http]
listen = "127.0.0.1:{port}"
shutdown_grace_secs = 5
public = ["{public}"]
payment_wait_ms = 2000
[cache]
dir = "{cache}"
max_bytes = 67108864
[origins]
urls = ["http://127.0.0.1:{origin}/objects/{{hash}}"]
[publish]
tokens = ["secret-token"]
[payment]
credit_limit_bytes = 1048576
receipts_dir = "{receipts}"
settle_interval_secs = 900
"#,
			cache = dir.join("cache").display(),
			receipts = dir.join("receipts").display(),
			public = blake3::hash(&data(200_000, 5)).to_hex(),
		),
	)
	.unwrap();
	path
}

/// A dev node, an origin and a `cdn-agent` (as Dave) in front of it.
struct World {
	dir: tempfile::TempDir,
	_node: Node,
	rpc_url: String,
	runtime: tokio::runtime::Runtime,
	chain: ChainClient,
	origin_objects: Arc<Mutex<HashMap<String, Vec<u8>>>>,
	origin: u16,
	port: u16,
	config: PathBuf,
	endpoint: String,
}

fn world() -> (World, Agent) {
	let dir = tempfile::tempdir().unwrap();
	let node = Node::start_dev(&dir.path().join("node"));
	let rpc_url = format!("http://127.0.0.1:{}", node.config.rpc_port);
	let runtime = tokio::runtime::Runtime::new().unwrap();
	let chain = runtime.block_on(ChainClient::connect(&rpc_url)).unwrap();
	let origin_objects = Arc::new(Mutex::new(HashMap::new()));
	let origin = start_origin(origin_objects.clone());
	let port = free_port();
	let config = write_config(dir.path(), node.config.rpc_port, port, origin);
	let agent = Agent::start(&config, port);
	let endpoint = format!("https://127.0.0.1:{port}");
	(World { dir, _node: node, rpc_url, runtime, chain, origin_objects, origin, port, config, endpoint }, agent)
}

#[test]
fn publish_fetch_verify_pay_settle_and_survive_tampering_and_crashes() {
	let (w, mut agent) = world();
	let World { dir, rpc_url, runtime, chain, origin_objects, origin, port, config, endpoint, .. } = &w;
	let (origin, port) = (*origin, *port);

	// An agent whose account is not a registered CDN provider refuses to start, saying why.
	let stranger = dir.path().join("stranger.toml");
	std::fs::write(
		&stranger,
		std::fs::read_to_string(config)
			.unwrap()
			.replace("//Dave", "//Ferdie")
			.replace(&format!("127.0.0.1:{port}\""), &format!("127.0.0.1:{}\"", free_port())),
	)
	.unwrap();
	let refused =
		Command::new(workspace_binary("cdn-agent")).args(["--config", stranger.to_str().unwrap()]).output().unwrap();
	assert!(!refused.status.success());
	assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a registered provider"), "{refused:?}");

	// Publish a 5 MiB file with the CLI (a wrong token is refused).
	let file = dir.path().join("movie.bin");
	let movie = data(5 << 20, 1);
	std::fs::write(&file, &movie).unwrap();
	// TLS by default: the CLI accepts the agent only with Dave's registered service key.
	let dave = Dave.to_account_id().to_string();
	let publish = |token: &str, provider: &str| {
		let file = file.to_str().unwrap();
		cdn(&["publish", file, "--rpc", rpc_url, "--endpoint", endpoint, "--token", token, "--provider", provider])
	};
	let err = publish("wrong", &dave).unwrap_err();
	assert!(err.contains("401"), "{err}");
	// A client that expects another provider's key at this address refuses the agent before
	// sending the token.
	let offline = CdnClient::offline(&dir.path().join("pinned-wrong"));
	offline.pin(endpoint, interlattice_pq_crypto::keys::MlDsaKeyPair::dev("charlie").public().clone());
	let err = runtime.block_on(offline.publish(endpoint, "secret-token", &file)).unwrap_err().to_string();
	assert!(err.contains("not its provider's registered service key"), "{err}");
	let hash = publish("secret-token", &dave).unwrap();
	let hash = hash.trim().to_string();
	assert_eq!(hash, blake3::hash(&movie).to_hex().as_str());

	// A slowloris at the TLS layer: connections that never finish a ClientHello (nothing, or
	// a record header only) are closed at the handshake timeout (10 s), not held.
	let silent: Vec<TcpStream> = [&[][..], &[0x16, 0x03, 0x01, 0x02, 0x00][..]]
		.iter()
		.map(|bytes| {
			let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
			stream.write_all(bytes).unwrap();
			stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
			stream
		})
		.collect();
	let started = std::time::Instant::now();
	for mut stream in silent {
		let mut buf = [0u8; 64];
		match stream.read(&mut buf) {
			Ok(0) | Err(_) => {},
			Ok(n) => panic!("the agent answered an unfinished handshake: {:02x?}", &buf[..n]),
		}
	}
	assert!(started.elapsed() < Duration::from_secs(20), "held for {:?}", started.elapsed());

	// HTTP semantics, with curl.
	let status = |args: &[&str]| curl(port, &[&["-o", "/dev/null", "-w", "%{http_code}"], args].concat()).unwrap();
	let content = format!("/content/{hash}");
	assert_eq!(status(&[&content]), "402", "no session, no content");
	let head = curl(port, &["-I", &content]).unwrap().to_lowercase();
	assert!(head.starts_with("http/1.1 200"), "{head}");
	assert!(head.contains(&format!("etag: \"{hash}\"")), "{head}");
	assert!(
		head.contains("content-length: 5242880") && head.contains("immutable") && head.contains("accept-ranges: bytes"),
		"{head}"
	);
	assert_eq!(status(&["-I", &format!("/content/{}", "0".repeat(64))]), "404");
	assert_eq!(status(&["/content/not-a-hash"]), "400");
	assert_eq!(status(&["-X", "DELETE", &content]), "405");
	assert_eq!(status(&["-H", &format!("If-None-Match: \"{hash}\""), "-I", &content]), "304");
	assert_eq!(
		status(&["-H", &format!("Authorization: Bearer {}", "00".repeat(32)), &content]),
		"401",
		"unknown token"
	);
	assert_eq!(status(&["-H", "x-interlattice-session: 0", &content]), "402", "a session id alone buys nothing");
	let version =
		curl(port, &["--http2-prior-knowledge", "-I", "-o", "/dev/null", "-w", "%{http_version}", &content]).unwrap();
	assert_eq!(version, "2", "HTTP/2 on the same port");

	// The agent pulls a URL for an authorised publisher.
	let pulled = data(200_000, 5);
	origin_objects.lock().unwrap().insert("pulled".into(), pulled.clone());
	let answer = curl(
		port,
		&[
			"-X",
			"POST",
			"-H",
			"Authorization: Bearer secret-token",
			&format!("/publish?url=http%3A%2F%2F127.0.0.1%3A{origin}%2Fobjects%2Fpulled"),
		],
	)
	.unwrap();
	assert!(answer.contains(blake3::hash(&pulled).to_hex().as_str()), "{answer}");
	// It is configured public: served without a session.
	let public = curl_bytes(port, &[&format!("/content/{}", blake3::hash(&pulled).to_hex())]).unwrap();
	assert_eq!(public, pulled);

	// Alice fetches it with the CLI through a paid session (receipts every 1 MiB).
	let state = dir.path().join("client");
	let out = dir.path().join("movie.out");
	let got = cdn(&[
		"get",
		&hash,
		"--rpc",
		rpc_url,
		"--state-dir",
		state.to_str().unwrap(),
		"--account",
		"//Alice",
		"--endpoint",
		endpoint,
		"-o",
		out.to_str().unwrap(),
	])
	.unwrap();
	assert_eq!(std::fs::read(&out).unwrap(), movie, "the download is the file");
	let session_id: u64 = got.split_whitespace().last().unwrap().parse().unwrap();
	// Other HTTP clients use the session with a bearer token from `cdn token`.
	let token = cdn(&[
		"token",
		"--rpc",
		rpc_url,
		"--state-dir",
		state.to_str().unwrap(),
		"--session",
		&session_id.to_string(),
		"--endpoint",
		endpoint,
	])
	.unwrap();
	let session = format!("Authorization: Bearer {}", token.trim());

	// Ranges within the paid session, with curl.
	let range = curl(port, &["-H", &session, "-H", "Range: bytes=10-19", "-D", "-", &content]).unwrap();
	assert!(range.starts_with("HTTP/1.1 206"), "{range}");
	assert!(range.to_lowercase().contains("content-range: bytes 10-19/5242880"), "{range}");
	let body = curl_bytes(port, &["-H", &session, "-H", "Range: bytes=10-19", &content]).unwrap();
	assert_eq!(body, &movie[10..20]);
	let suffix = curl_bytes(port, &["-H", &session, "-H", "Range: bytes=-5", &content]).unwrap();
	assert_eq!(suffix, &movie[movie.len() - 5..]);
	assert_eq!(status(&["-H", &session, "-H", "Range: bytes=6000000-", &content]), "416");

	// An origin-filled object: the agent fetches it on a miss and checks the hash.
	let small = data(300_000, 2);
	let small_hash = blake3::hash(&small).to_hex().to_string();
	origin_objects.lock().unwrap().insert(small_hash.clone(), small.clone());
	let small_out = dir.path().join("small.out");
	cdn(&[
		"get",
		&small_hash,
		"--rpc",
		rpc_url,
		"--state-dir",
		state.to_str().unwrap(),
		"--account",
		"//Alice",
		"--endpoint",
		endpoint,
		"--session",
		&session_id.to_string(),
		"-o",
		small_out.to_str().unwrap(),
	])
	.unwrap();
	assert_eq!(std::fs::read(&small_out).unwrap(), small);

	// A tampering origin: the bytes do not hash to the name; never cached, never served.
	let fake = data(100_000, 3);
	let fake_hash = blake3::hash(&data(100_000, 4)).to_hex().to_string();
	origin_objects.lock().unwrap().insert(fake_hash.clone(), fake);
	assert_eq!(status(&["-H", &session, &format!("/content/{fake_hash}")]), "404");
	let metrics = curl(port, &["/metrics"]).unwrap();
	assert!(metrics.contains("interlattice_cdn_origin_mismatches_total 1"), "{metrics}");
	assert!(!dir.path().join("cache/objects").join(&fake_hash).exists());

	// Alice's session stops paying (curl signs nothing): the agent serves at most the 1 MiB
	// credit, cuts the response after the 2 s payment wait, and answers the next request
	// with 402 and what is owed.
	let taken = curl_bytes(port, &["-H", &session, &content]).unwrap();
	assert!(!taken.is_empty() && taken.len() <= 1 << 20, "{} bytes on credit", taken.len());
	assert_eq!(&taken[..], &movie[..taken.len()]);
	let owed = curl(port, &["-H", &session, "-w", "\n%{http_code}", &content]).unwrap();
	assert!(owed.ends_with("402"), "{owed}");
	assert!(owed.contains("amountDue") && owed.contains("POST /receipts"), "{owed}");

	// Ranges from two sources in parallel, each paid through its own session (the CLI with
	// the provider named twice; the dev chain has one CDN provider).
	let dave = sp_core::crypto::Ss58Codec::to_ss58check_with_version(
		&Dave.to_account_id(),
		interlattice_runtime::SS58_PREFIX.into(),
	);
	let parallel_out = dir.path().join("parallel.out");
	let got = cdn(&[
		"get",
		&hash,
		"--rpc",
		rpc_url,
		"--state-dir",
		state.to_str().unwrap(),
		"--account",
		"//Alice",
		"--provider",
		&dave,
		"--provider",
		&dave,
		"--endpoint",
		endpoint,
		"--endpoint",
		endpoint,
		"-o",
		parallel_out.to_str().unwrap(),
	])
	.unwrap();
	let ids: Vec<u64> = got.split("sessions").nth(1).unwrap().split_whitespace().map(|s| s.parse().unwrap()).collect();
	assert_eq!(ids.len(), 2, "{got}");
	let sessions: Vec<_> =
		ids.iter().map(|&session_id| runtime.block_on(chain.session(session_id)).unwrap().unwrap()).collect();
	assert_eq!(std::fs::read(&parallel_out).unwrap(), movie, "the file is whole and verified");
	for s in &sessions {
		let record: SessionRecord =
			serde_json::from_slice(&std::fs::read(state.join(format!("session-{}.json", s.session_id))).unwrap())
				.unwrap();
		assert!(record.signed >= (movie.len() / 2) as u64, "each session paid for its half: {record:?}");
	}

	// A tampering agent (a proxy flipping one byte 100,000 bytes into the body): the client
	// stops at the first bad chunk, keeping only verified bytes.
	let proxy = start_tampering_proxy(port, 100_000);
	let client = CdnClient::new(chain.clone(), &state);
	let on_chain = runtime.block_on(chain.session(session_id)).unwrap().unwrap();
	let mut paid = client.resume_session(&on_chain, &format!("http://127.0.0.1:{proxy}")).unwrap();
	let tampered_out = dir.path().join("tampered.out");
	let root = interlattice_cdn::content::parse_hash(&hash).unwrap();
	match runtime.block_on(client.get(&mut paid, &root, &tampered_out, |_| {})) {
		Err(ClientError::Tampered { offset, .. }) => {
			assert!(offset < 100_000, "stopped before the flipped byte: {offset}");
			let part = std::fs::read(dir.path().join("tampered.out.part")).unwrap();
			assert_eq!(part.len() as u64, offset);
			assert_eq!(&part[..], &movie[..part.len()], "only verified bytes were kept");
		},
		other => panic!("tampering not detected: {other:?}"),
	}
	assert!(!tampered_out.exists());

	// The agent crashes (SIGKILL): acknowledged receipts are on disk; after a restart a
	// replay of the last one is refused as not newer and the settlement pays for it.
	let record: SessionRecord =
		serde_json::from_slice(&std::fs::read(state.join(format!("session-{session_id}.json"))).unwrap()).unwrap();
	assert!(record.sequence >= 5, "receipts every MiB: {record:?}");
	let dave_before = runtime.block_on(chain.free_balance(&Dave.to_account_id())).unwrap();
	agent.signal("-KILL");
	let mut agent = Agent::start(config, port);
	// Tokens do not survive a restart: the old one is refused, a new one is bought.
	assert_eq!(status(&["-H", &session, "-X", "POST", "-d", "{}", "/receipts"]), "401");
	let token = cdn(&[
		"token",
		"--rpc",
		rpc_url,
		"--state-dir",
		state.to_str().unwrap(),
		"--session",
		&session_id.to_string(),
		"--endpoint",
		endpoint,
	])
	.unwrap();
	let session = format!("Authorization: Bearer {}", token.trim());
	let answer = curl(port, &["-H", &session, "-X", "POST", "-d", "{}", "/receipts"]).unwrap();
	assert!(answer.contains("not a signed receipt"), "{answer}");

	// Graceful stop: the final settlement round pays Dave for exactly what Alice signed.
	agent.signal("-TERM");
	let settled = runtime.block_on(chain.session(session_id)).unwrap().unwrap();
	assert_eq!(settled.sequence, record.sequence, "the last acknowledged receipt settled");
	assert_eq!(settled.bytes, record.signed);
	let owed = max_amount_owed(&settled.prices, record.signed, 0).unwrap();
	assert_eq!(settled.settled, owed, "paid exactly the signed usage");
	// Dave's balance moved by what he was paid less the settlement's transaction fee (at dev
	// prices, a few MiB pay less than the fee of one settlement: see docs/cdn-protocol.md);
	// the exact balance accounting is checked in tests/settlement.rs.
	let dave_after = runtime.block_on(chain.free_balance(&Dave.to_account_id())).unwrap();
	assert_ne!(dave_after, dave_before);
	// Alice's session still holds the rest of her deposit.
	assert_eq!(settled.deposit - settled.settled, interlattice_runtime::UNIT - owed);
}

/// A proxy that passes everything through, except that once `pause_after` bytes of one
/// upstream answer have been forwarded it stops forwarding that connection until `release`
/// is set, and then drops it (as if the agent behind it had died mid-response).
fn start_pausing_proxy(agent_port: u16, pause_after: usize, paused: Arc<AtomicBool>, release: Arc<AtomicBool>) -> u16 {
	let listener = TcpListener::bind("127.0.0.1:0").unwrap();
	let port = listener.local_addr().unwrap().port();
	std::thread::spawn(move || {
		for client in listener.incoming().flatten() {
			let (paused, release) = (paused.clone(), release.clone());
			std::thread::spawn(move || {
				let Ok(upstream) = TcpStream::connect(("127.0.0.1", agent_port)) else { return };
				let (mut c_read, mut u_write) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
				std::thread::spawn(move || {
					let _ = std::io::copy(&mut c_read, &mut u_write);
				});
				let (mut u_read, mut c_write) = (upstream, client);
				let mut forwarded = 0;
				let mut buf = vec![0u8; 64 * 1024];
				loop {
					let n = match u_read.read(&mut buf) {
						Ok(0) | Err(_) => {
							// The agent went away: so does the client's connection.
							let _ = c_write.shutdown(std::net::Shutdown::Both);
							break;
						},
						Ok(n) => n,
					};
					if c_write.write_all(&buf[..n]).is_err() {
						break;
					}
					forwarded += n;
					if forwarded >= pause_after && !paused.swap(true, Ordering::SeqCst) {
						while !release.load(Ordering::SeqCst) {
							std::thread::sleep(Duration::from_millis(20));
						}
						let _ = c_write.shutdown(std::net::Shutdown::Both);
						return;
					}
				}
			});
		}
	});
	port
}

#[test]
fn an_agent_killed_mid_download_restarts_and_the_download_resumes_without_losing_receipts() {
	let (w, mut agent) = world();
	let World { dir, rpc_url, runtime, chain, port, config, endpoint, .. } = &w;
	let port = *port;

	let file = dir.path().join("big.bin");
	let big = data(12 << 20, 7);
	std::fs::write(&file, &big).unwrap();
	let dave = Dave.to_account_id().to_string();
	let hash = cdn(&[
		"publish",
		file.to_str().unwrap(),
		"--rpc",
		rpc_url,
		"--endpoint",
		endpoint,
		"--token",
		"secret-token",
		"--provider",
		&dave,
	])
	.unwrap();
	let hash = hash.trim().to_string();

	// Alice downloads through a proxy that holds the response after 6 MiB.
	let (paused, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
	let proxy = start_pausing_proxy(port, 6 << 20, paused.clone(), release.clone());
	let state = dir.path().join("client");
	let out = dir.path().join("big.out");
	let get = Command::new(workspace_binary("cdn"))
		.args([
			"get",
			&hash,
			"--rpc",
			rpc_url,
			"--state-dir",
			state.to_str().unwrap(),
			"--account",
			"//Alice",
			"--endpoint",
			&format!("https://127.0.0.1:{proxy}"),
			"-o",
			out.to_str().unwrap(),
		])
		.stdout(Stdio::piped())
		.stderr(Stdio::piped())
		.spawn()
		.unwrap();
	wait_for(Duration::from_secs(60), "the download to reach 6 MiB", || paused.load(Ordering::SeqCst).then_some(()))
		.unwrap();

	// The agent dies with receipts acknowledged, and comes back.
	let session_file = std::fs::read_dir(&state)
		.unwrap()
		.flatten()
		.map(|e| e.path())
		.find(|p| p.extension().is_some_and(|e| e == "json"))
		.expect("the client keeps its session state");
	let before: SessionRecord = serde_json::from_slice(&std::fs::read(&session_file).unwrap()).unwrap();
	assert!(before.sequence >= 3, "receipts were acknowledged before the crash: {before:?}");
	agent.signal("-KILL");
	let mut agent = Agent::start(config, port);
	release.store(true, Ordering::SeqCst);

	// The client notices the cut, resumes from its verified bytes, and finishes.
	let output = get.wait_with_output().unwrap();
	assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
	assert_eq!(std::fs::read(&out).unwrap(), big, "the resumed download is the file");

	// Every receipt settles: the chain holds the client's last one.
	agent.signal("-TERM");
	let record: SessionRecord = serde_json::from_slice(&std::fs::read(&session_file).unwrap()).unwrap();
	assert!(record.sequence > before.sequence);
	let session = runtime.block_on(chain.session(record.session_id)).unwrap().unwrap();
	assert_eq!((session.sequence, session.bytes), (record.sequence, record.signed));
	assert_eq!(session.settled, max_amount_owed(&session.prices, record.signed, 0).unwrap());
	assert!(record.signed >= 12 << 20, "at least the object was paid for: {record:?}");
}

#[test]
fn tls_prefers_the_hybrid_post_quantum_key_exchange_and_serves_paid_downloads() {
	let dir = tempfile::tempdir().unwrap();
	let node = Node::start_dev(&dir.path().join("node"));
	let rpc_url = format!("http://127.0.0.1:{}", node.config.rpc_port);

	// A self-signed certificate for localhost and 127.0.0.1.
	let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]);
	params.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
	let cert = rcgen::Certificate::from_params(params).unwrap();
	let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
	std::fs::write(&cert_pem, cert.serialize_pem().unwrap()).unwrap();
	std::fs::write(&key_pem, cert.serialize_private_key_pem()).unwrap();
	let port = free_port();
	let config = write_config(dir.path(), node.config.rpc_port, port, free_port());
	let mut text = std::fs::read_to_string(&config).unwrap();
	text.push_str(&format!(
		"[http.tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
		cert_pem.display(),
		key_pem.display()
	));
	std::fs::write(&config, text).unwrap();
	let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
	let child = Command::new(workspace_binary("cdn-agent"))
		.args(["--config", config.to_str().unwrap()])
		.stdout(Stdio::from(log.try_clone().unwrap()))
		.stderr(Stdio::from(log))
		.spawn()
		.unwrap();
	let _agent = Agent { child };
	let https = format!("https://localhost:{port}");
	let curl_tls = |args: &[&str]| {
		let out =
			Command::new("curl").args(["-sS", "--cacert", cert_pem.to_str().unwrap()]).args(args).output().unwrap();
		String::from_utf8_lossy(&out.stdout).into_owned()
	};
	wait_for(Duration::from_secs(60), "the TLS agent", || {
		(curl_tls(&["-o", "/dev/null", "-w", "%{http_code}", &format!("{https}/health")]) == "200").then_some(())
	})
	.unwrap_or_else(|e| panic!("{e}\n{}", std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()));
	// curl (OpenSSL 3.0, no ML-KEM) still connects: the classical X25519 fallback.

	// A rustls client with our provider negotiates X25519MLKEM768 and HTTP/2.
	let runtime = tokio::runtime::Runtime::new().unwrap();
	let (group, alpn) = runtime.block_on(async {
		let config = interlattice_cdn::tls::client_config(&cert_pem).unwrap();
		let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
		let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
		let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
		let tls = connector.connect(name, tcp).await.unwrap();
		let (_, conn) = tls.get_ref();
		(conn.negotiated_key_exchange_group().map(|g| g.name()), conn.alpn_protocol().map(|p| p.to_vec()))
	});
	assert_eq!(group, Some(rustls::NamedGroup::X25519MLKEM768));
	assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

	// The CLI publishes and fetches over TLS, paid and verified.
	let file = dir.path().join("tls.bin");
	let content = data(1_500_000, 9);
	std::fs::write(&file, &content).unwrap();
	let ca = cert_pem.to_str().unwrap();
	let hash =
		cdn(&["publish", file.to_str().unwrap(), "--endpoint", &https, "--token", "secret-token", "--ca", ca]).unwrap();
	let out = dir.path().join("tls.out");
	let state = dir.path().join("client");
	cdn(&[
		"get",
		hash.trim(),
		"--rpc",
		&rpc_url,
		"--state-dir",
		state.to_str().unwrap(),
		"--account",
		"//Alice",
		"--endpoint",
		&https,
		"--ca",
		ca,
		"-o",
		out.to_str().unwrap(),
	])
	.unwrap();
	assert_eq!(std::fs::read(&out).unwrap(), content);
	// Without trusting the certificate, the client refuses the agent.
	let refused =
		cdn(&["publish", file.to_str().unwrap(), "--rpc", &rpc_url, "--endpoint", &https, "--token", "secret-token"])
			.unwrap_err();
	assert!(refused.to_lowercase().contains("certificate"), "{refused}");
}
