//! The client side: find CDN providers, open a paid session, download an object as verified
//! slices (every 1 KiB chunk checked against the BLAKE3 root before it is written), sign
//! receipts as bytes arrive, resume interrupted downloads, publish.
//!
//! **Receipts**: the client signs cumulative receipts for the bytes it *received* on the
//! session (response bodies), at least every `receipt_interval` bytes, and when the agent
//! answers 402. Its per-session state (last sequence, bytes) is written to
//! `<state_dir>/session-<id>.json` before each receipt is sent, so a sequence number is never
//! reused and usage is never signed twice after a crash.

use std::{
	fs::{self, File, OpenOptions},
	io::{self, Read, Write},
	path::{Path, PathBuf},
	sync::Arc,
	time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Request, StatusCode};
use hyper_util::{
	client::legacy::{connect::HttpConnector, Client},
	rt::TokioExecutor,
};
use interlattice_agent_core::account::AccountKey;
use interlattice_agent_core::{
	chain::{ChainClient, Provider, Session},
	is_unlisted,
	meter::next_receipt,
	open_session,
	provider_tls::{self, PinnedProviderKeys},
	revealed_endpoint, session_terms, ChainError, SessionKeys, SessionRequest, SessionTerms,
};
use interlattice_pq_crypto::{keys::MlDsaKeyPair, MlDsaPublicKey, SignedUsageReceipt};
use interlattice_runtime::AccountId;
use pallet_provider_registry::{ProviderFilter, ProviderOrder, ProviderPage, ServiceKind};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
	content::ContentHash,
	protocol::{self, Capability, ErrorBody, Published, SignedCapability, TokenGrant},
};

/// How long the capabilities the client signs (and the tokens they buy) live.
const TOKEN_SECS: u64 = 600;
/// A token this close to its expiry is replaced before use.
const TOKEN_MARGIN_SECS: u64 = 30;
/// How many times a request whose connection broke is sent again (a restarting agent, a
/// pooled connection the agent closed), pausing `RETRY_PAUSE` times the attempt in between.
const TRANSPORT_RETRIES: u64 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(500);

fn unix_now() -> u64 {
	std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
	/// Talking to the chain failed.
	#[error(transparent)]
	Chain(#[from] ChainError),
	/// The agent could not be reached.
	#[error("provider {endpoint}: {message}")]
	Unreachable {
		/// The agent.
		endpoint: String,
		/// What failed.
		message: String,
	},
	/// The agent answered with an error.
	#[error("provider answered {status}: {message}")]
	Refused {
		/// HTTP status.
		status: StatusCode,
		/// Its explanation.
		message: String,
	},
	/// The agent sent bytes that do not match the hash: nothing from it was kept past the
	/// last verified chunk.
	#[error("provider sent content that does not match {hash} at byte {offset}: {detail}")]
	Tampered {
		/// The object.
		hash: ContentHash,
		/// First unverified byte.
		offset: u64,
		/// The verifier's message.
		detail: String,
	},
	/// The session's deposit is used up.
	#[error("the deposit of session {0} is used up: top it up (escrow top_up_deposit) and retry")]
	DepositExhausted(u64),
	/// A local file failed.
	#[error("{path}: {source}")]
	Io {
		/// The file.
		path: PathBuf,
		/// The error.
		source: io::Error,
	},
	/// Something else.
	#[error("{0}")]
	Other(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ClientError + '_ {
	move |source| ClientError::Io { path: path.to_path_buf(), source }
}

/// The client's durable state of one session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
	/// The session.
	pub session_id: u64,
	/// Sequence of the last receipt signed.
	pub sequence: u64,
	/// Bytes received so far on the session.
	pub received: u64,
	/// Bytes covered by the last receipt signed.
	pub signed: u64,
}

/// Download progress.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
	/// Verified bytes of the object written so far.
	pub verified: u64,
	/// The object's length.
	pub size: u64,
	/// Bytes received on the session so far.
	pub received: u64,
	/// Amount signed for so far, in the smallest unit.
	pub signed_amount: u128,
}

/// A paid session with one agent.
pub struct PaidSession {
	/// The agent's base URL (`http://host:port`).
	pub endpoint: String,
	/// The on-chain session.
	pub session_id: u64,
	/// What the chain fixed for it (prices, provider, nonce): what receipts name.
	pub terms: SessionTerms,
	key: std::sync::Arc<MlDsaKeyPair>,
	record: SessionRecord,
	record_path: PathBuf,
	/// The agent's bearer token for this session, and its expiry (unix seconds).
	token: Option<(String, u64)>,
	/// Whether the provider's registered service key is pinned for the endpoint's host.
	pinned: bool,
}

/// The client.
pub struct CdnClient {
	http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
	/// The providers' registered service keys `https://` agents must present (unless
	/// [`CdnClient::trust`] chose certificate authorities instead).
	pins: Arc<PinnedProviderKeys>,
	chain: Option<ChainClient>,
	keys: SessionKeys,
	state_dir: PathBuf,
	/// Sign a receipt at least every this many received bytes (default 1 MiB).
	pub receipt_interval: u64,
	/// How long to wait for an answer's head, or for the next piece of a body, before giving
	/// up on a connection (default 30 s; must exceed the agent's payment wait).
	pub idle_timeout: Duration,
}

/// The first `http://` endpoint a provider registered.
pub fn http_endpoint(provider: &Provider) -> Option<String> {
	provider
		.endpoints
		.iter()
		.map(|e| String::from_utf8_lossy(e).into_owned())
		.find(|e| e.starts_with("http://") || e.starts_with("https://"))
		.map(|e| e.trim_end_matches('/').to_string())
}

/// The active CDN providers, cheapest first.
pub async fn cdn_providers(chain: &ChainClient) -> Result<Vec<Provider>, ClientError> {
	let filter = ProviderFilter::<u128> { service: Some(ServiceKind::Cdn), active_only: true, ..Default::default() };
	let page: ProviderPage<AccountId, u128, u32> = chain
		.runtime_call("ProviderRegistryApi_providers", (filter, ProviderOrder::PricePerGibAscending, 0u32, 100u32))
		.await?;
	Ok(page.providers)
}

/// An error and its causes, `a: b: c` (hyper's "client error (Connect)" hides why: a refused
/// certificate, a refused connection).
fn with_causes(e: &dyn std::error::Error) -> String {
	let mut text = e.to_string();
	let mut source = e.source();
	while let Some(s) = source {
		text.push_str(": ");
		text.push_str(&s.to_string());
		source = s.source();
	}
	text
}

/// A connector for `http://` and `https://` agents; `tls` is the TLS configuration for the
/// latter.
fn https_connector(mut tls: rustls::ClientConfig) -> hyper_rustls::HttpsConnector<HttpConnector> {
	// The connector announces the HTTP versions it enables itself.
	tls.alpn_protocols.clear();
	let mut http = HttpConnector::new();
	http.enforce_http(false);
	hyper_rustls::HttpsConnectorBuilder::new()
		.with_tls_config(tls)
		.https_or_http()
		.enable_http1()
		.enable_http2()
		.wrap_connector(http)
}

impl CdnClient {
	/// Trusts the certificates in `ca` (PEM) for `https://` agents instead of their
	/// registered service keys (an agent behind a proxy with its own certificate); the key
	/// exchange still prefers X25519MLKEM768.
	pub fn trust(mut self, ca: &Path) -> Result<Self, crate::tls::TlsError> {
		let config = crate::tls::client_config(ca)?;
		self.http = Client::builder(TokioExecutor::new()).build(https_connector(config));
		self.pins = Arc::new(PinnedProviderKeys::default());
		Ok(self)
	}

	/// Accepts `key` (a provider's registered service key) from `https://` agents at the
	/// host of `endpoint`. Sessions pin their provider's key themselves.
	pub fn pin(&self, endpoint: &str, key: MlDsaPublicKey) {
		self.pins.pin(endpoint, key);
	}

	/// A client without a chain (free content, publishing): `https://` agents need
	/// [`CdnClient::pin`] or [`CdnClient::trust`].
	pub fn offline(state_dir: &Path) -> Self {
		let pins = Arc::new(PinnedProviderKeys::default());
		let tls = provider_tls::client_config(pins.clone()).expect("ring supports TLS 1.3");
		CdnClient {
			http: Client::builder(TokioExecutor::new()).build(https_connector(tls)),
			pins,
			chain: None,
			keys: SessionKeys::new(state_dir),
			state_dir: state_dir.to_path_buf(),
			receipt_interval: 1 << 20,
			idle_timeout: Duration::from_secs(30),
		}
	}

	/// A client that pays: every session gets a fresh ML-DSA-65 key, kept with the session's
	/// state in `state_dir`.
	pub fn new(chain: ChainClient, state_dir: &Path) -> Self {
		CdnClient { chain: Some(chain), ..Self::offline(state_dir) }
	}

	fn chain(&self) -> Result<&ChainClient, ClientError> {
		self.chain.as_ref().ok_or_else(|| ClientError::Other("this needs a chain connection".into()))
	}

	/// Opens a CDN session with `provider` on-chain, paid by `account`, signed by a fresh
	/// key, and returns it.
	pub async fn open_session(
		&self,
		account: &AccountKey,
		provider: &Provider,
		deposit: u128,
		duration_blocks: u32,
	) -> Result<PaidSession, ClientError> {
		let chain = self.chain()?;
		let unlisted = is_unlisted(provider, ServiceKind::Cdn);
		let listed = http_endpoint(provider);
		if listed.is_none() && !unlisted {
			return Err(ClientError::Other(format!("provider {} registered no http:// endpoint", provider.account)));
		}
		let request =
			SessionRequest { service: ServiceKind::Cdn, max_prices: provider.prices, deposit, duration_blocks };
		let (session, key) = open_session(chain, account, &self.keys, provider, &request)
			.await
			.map_err(|e| ClientError::Other(e.to_string()))?;
		let endpoint = match listed {
			Some(endpoint) => endpoint,
			None => revealed_endpoint(chain, &self.keys, &session, None)
				.await
				.map_err(|e| ClientError::Other(e.to_string()))?
				.trim_end_matches('/')
				.to_string(),
		};
		self.pin(&endpoint, provider.service_key.clone());
		self.with_key(&session, &endpoint, key)
	}

	/// The endpoint the (unlisted) provider of `session` revealed to it (waits for it),
	/// pinned to the provider's registered service key.
	pub async fn revealed_endpoint(&self, session: &Session) -> Result<String, ClientError> {
		let chain = self.chain()?;
		let endpoint = revealed_endpoint(chain, &self.keys, session, None)
			.await
			.map_err(|e| ClientError::Other(e.to_string()))?
			.trim_end_matches('/')
			.to_string();
		let provider = chain
			.provider(&session.provider)
			.await?
			.ok_or_else(|| ClientError::Other("the session's provider is not registered".into()))?;
		self.pin(&endpoint, provider.service_key);
		Ok(endpoint)
	}

	/// Continues an existing on-chain session (its key and state from the state directory).
	pub fn resume_session(&self, session: &Session, endpoint: &str) -> Result<PaidSession, ClientError> {
		let key = self
			.keys
			.for_session(session.session_id, &session.client_key)
			.map_err(|e| ClientError::Other(e.to_string()))?;
		self.with_key(session, endpoint, key)
	}

	fn with_key(&self, session: &Session, endpoint: &str, key: MlDsaKeyPair) -> Result<PaidSession, ClientError> {
		let chain = self.chain()?;
		fs::create_dir_all(&self.state_dir).map_err(io_err(&self.state_dir))?;
		let record_path = self.state_dir.join(format!("session-{}.json", session.session_id));
		let mut record = match fs::read(&record_path) {
			Ok(bytes) => serde_json::from_slice(&bytes)
				.map_err(|e| ClientError::Other(format!("{}: {e}", record_path.display())))?,
			Err(e) if e.kind() == io::ErrorKind::NotFound => {
				SessionRecord { session_id: session.session_id, ..Default::default() }
			},
			Err(e) => return Err(io_err(&record_path)(e)),
		};
		// Never below what the chain settled.
		record.sequence = record.sequence.max(session.sequence);
		record.signed = record.signed.max(session.bytes);
		record.received = record.received.max(record.signed);
		Ok(PaidSession {
			endpoint: endpoint.to_string(),
			session_id: session.session_id,
			terms: session_terms(session, chain.genesis_hash().0),
			key: Arc::new(key),
			record,
			record_path,
			token: None,
			pinned: false,
		})
	}

	fn save(session: &PaidSession) -> Result<(), ClientError> {
		let tmp = session.record_path.with_extension("json.tmp");
		let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
		file.write_all(&serde_json::to_vec(&session.record).expect("serialisable")).map_err(io_err(&tmp))?;
		file.sync_all().map_err(io_err(&tmp))?;
		fs::rename(&tmp, &session.record_path).map_err(io_err(&session.record_path))
	}

	/// Signs a receipt for everything received and sends it; returns the amount signed.
	pub async fn pay(&self, session: &mut PaidSession) -> Result<u128, ClientError> {
		let receipt = next_receipt(&session.terms, session.record.sequence, session.record.received, 0)
			.ok_or_else(|| ClientError::Other("receipt overflow".into()))?;
		session.record.sequence = receipt.sequence;
		session.record.signed = receipt.bytes;
		Self::save(session)?;
		let signature =
			session.key.sign(&receipt.signing_payload()).map_err(|e| ClientError::Other(format!("{e:?}")))?;
		let body = Bytes::from(serde_json::to_vec(&SignedUsageReceipt { receipt, signature }).expect("serialisable"));
		let (mut reauthorised, mut transport_failures) = (false, 0u64);
		loop {
			let token = self.authorize(session).await?;
			let request = Request::post(format!("{}{}", session.endpoint, protocol::RECEIPTS_PATH))
				.header(header::AUTHORIZATION, format!("Bearer {token}"))
				.header(header::CONTENT_TYPE, "application/json")
				.body(Full::new(body.clone()))
				.expect("valid request");
			let (status, answer) = match self.send(&session.endpoint, request).await {
				Ok(answer) => answer,
				// The connection broke (a restarting agent, a dropped pooled connection): the
				// receipt is saved, send it again a few times with a growing pause.
				Err(e @ ClientError::Unreachable { .. }) if transport_failures < TRANSPORT_RETRIES => {
					transport_failures += 1;
					tracing::info!(error = %e, "sending the receipt failed; retrying");
					tokio::time::sleep(RETRY_PAUSE * transport_failures as u32).await;
					continue;
				},
				Err(e) => return Err(e),
			};
			match status {
				StatusCode::OK => return Ok(receipt.amount),
				// The agent restarted or forgot the token: buy another one, once.
				StatusCode::UNAUTHORIZED if !reauthorised => {
					reauthorised = true;
					session.token = None;
				},
				// Sent again after a broken connection, and the agent already holds it (or a
				// later one): the first copy arrived before the connection broke.
				StatusCode::CONFLICT if transport_failures > 0 => return Ok(receipt.amount),
				_ => return Err(refused(status, &answer)),
			}
		}
	}

	/// The session's bearer token at its agent: the one held, or a new one bought with a
	/// capability signed by the session's key (`POST /token`).
	pub async fn authorize(&self, session: &mut PaidSession) -> Result<String, ClientError> {
		if !session.pinned {
			// The agent must present the key its provider registered (looked up once).
			let provider = AccountId::from(session.terms.provider);
			let registered =
				self.chain()?.provider(&provider).await?.ok_or_else(|| {
					ClientError::Other(format!("the session's provider {provider} is not registered"))
				})?;
			self.pin(&session.endpoint, registered.service_key);
			session.pinned = true;
		}
		let now = unix_now();
		if let Some((token, expires_at)) = &session.token {
			if *expires_at > now + TOKEN_MARGIN_SECS {
				return Ok(token.clone());
			}
		}
		let mut transport_failures = 0u64;
		let (capability, status, body) = loop {
			// A fresh capability (and nonce) for every attempt.
			let mut nonce = [0u8; 32];
			getrandom::fill(&mut nonce).map_err(|e| ClientError::Other(format!("no randomness: {e}")))?;
			let capability = Capability {
				provider: session.terms.provider,
				session_id: session.session_id,
				nonce,
				expires_at: now + TOKEN_SECS,
			};
			let signature =
				session.key.sign(&capability.signing_payload()).map_err(|e| ClientError::Other(format!("{e:?}")))?;
			let request = Request::post(format!("{}{}", session.endpoint, protocol::TOKEN_PATH))
				.header(header::CONTENT_TYPE, "application/json")
				.body(Full::new(Bytes::from(
					serde_json::to_vec(&SignedCapability { capability, signature }).expect("serialisable"),
				)))
				.expect("valid request");
			match self.send(&session.endpoint, request).await {
				Ok((status, body)) => break (capability, status, body),
				Err(e @ ClientError::Unreachable { .. }) if transport_failures < TRANSPORT_RETRIES => {
					transport_failures += 1;
					tracing::info!(error = %e, "buying a token failed; retrying");
					tokio::time::sleep(RETRY_PAUSE * transport_failures as u32).await;
				},
				Err(e) => return Err(e),
			}
		};
		if status != StatusCode::OK {
			return Err(refused(status, &body));
		}
		let grant: TokenGrant =
			serde_json::from_slice(&body).map_err(|e| ClientError::Other(format!("token answer: {e}")))?;
		session.token = Some((grant.token.clone(), grant.expires_at.min(capability.expires_at)));
		Ok(grant.token)
	}

	/// Sends `request`, waiting at most the idle timeout for the answer's head.
	async fn request(
		&self,
		endpoint: &str,
		request: Request<Full<Bytes>>,
	) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
		let unreachable = |message: String| ClientError::Unreachable { endpoint: endpoint.to_string(), message };
		tokio::time::timeout(self.idle_timeout, self.http.request(request))
			.await
			.map_err(|_| unreachable(format!("no answer within {:?}", self.idle_timeout)))?
			.map_err(|e| unreachable(with_causes(&e)))
	}

	async fn send(&self, endpoint: &str, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), ClientError> {
		let response = self.request(endpoint, request).await?;
		let status = response.status();
		let body = response
			.into_body()
			.collect()
			.await
			.map_err(|e| ClientError::Unreachable { endpoint: endpoint.to_string(), message: with_causes(&e) })?
			.to_bytes();
		Ok((status, body))
	}

	/// The length of object `hash` at `endpoint` (a `HEAD`, which is free; with a session's
	/// `token` the agent fills the object from its origins if it does not hold it yet).
	pub async fn size(&self, endpoint: &str, hash: &ContentHash, token: Option<&str>) -> Result<u64, ClientError> {
		let mut request = Request::head(format!("{endpoint}{}{}", protocol::CONTENT_PATH, hash.to_hex()));
		if let Some(token) = token {
			request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
		}
		let request = request.body(Full::new(Bytes::new())).expect("valid request");
		let response = self.request(endpoint, request).await?;
		if response.status() != StatusCode::OK {
			let status = response.status();
			let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
			return Err(if body.is_empty() {
				ClientError::Refused { status, message: format!("HEAD {hash}") }
			} else {
				refused(status, &body)
			});
		}
		response
			.headers()
			.get(header::CONTENT_LENGTH)
			.and_then(|v| v.to_str().ok())
			.and_then(|v| v.parse().ok())
			.ok_or_else(|| ClientError::Other("no Content-Length".into()))
	}

	/// [`Self::size`] through a paid session (re-authorising once if the agent forgot its
	/// token).
	async fn paid_size(&self, session: &mut PaidSession, hash: &ContentHash) -> Result<u64, ClientError> {
		let token = self.authorize(session).await?;
		match self.size(&session.endpoint, hash, Some(&token)).await {
			Err(ClientError::Refused { status: StatusCode::UNAUTHORIZED, .. }) => {
				session.token = None;
				let token = self.authorize(session).await?;
				self.size(&session.endpoint, hash, Some(&token)).await
			},
			other => other,
		}
	}

	/// Downloads `hash` from the session's agent into `out`, verifying every chunk, paying as
	/// it goes; resumes from `out.part` if an earlier download was interrupted. Returns the
	/// object's length.
	pub async fn get(
		&self,
		session: &mut PaidSession,
		hash: &ContentHash,
		out: &Path,
		mut progress: impl FnMut(Progress) + Send,
	) -> Result<u64, ClientError> {
		let size = self.paid_size(session, hash).await?;
		let part = PathBuf::from(format!("{}.part", out.display()));
		self.fetch_range(session, hash, 0, size, &part, &mut progress).await?;
		finish_download(hash, &part, out)?;
		Ok(size)
	}

	/// Downloads `hash` from several agents at once, one contiguous range each (in
	/// `out.part0`, `out.part1`, …, each resumable), each paid from its own session; then
	/// joins and checks the whole. `progress` sees the total verified so far.
	pub async fn get_from_many(
		&self,
		sessions: &mut [PaidSession],
		hash: &ContentHash,
		out: &Path,
		progress: impl Fn(Progress) + Sync,
	) -> Result<u64, ClientError> {
		let first = sessions.first_mut().ok_or_else(|| ClientError::Other("no provider".into()))?;
		let size = self.paid_size(first, hash).await?;
		let n = sessions.len() as u64;
		// Ranges on 1 KiB chunk boundaries (any boundary works; chunk-aligned ones waste no
		// verification bytes).
		let step = size.div_ceil(n).div_ceil(1024) * 1024;
		let verified: Vec<std::sync::atomic::AtomicU64> = (0..n).map(|_| Default::default()).collect();
		let signed: Vec<std::sync::atomic::AtomicU64> = (0..n).map(|_| Default::default()).collect();
		let parts: Vec<PathBuf> = (0..n).map(|i| PathBuf::from(format!("{}.part{i}", out.display()))).collect();
		let downloads = sessions.iter_mut().enumerate().map(|(i, session)| {
			let (start, end) = ((i as u64 * step).min(size), ((i as u64 + 1) * step).min(size));
			let (part, verified, signed, progress) = (&parts[i], &verified, &signed, &progress);
			async move {
				let mut report = |p: Progress| {
					use std::sync::atomic::Ordering::Relaxed;
					verified[i].store(p.verified, Relaxed);
					signed[i].store(p.signed_amount as u64, Relaxed);
					progress(Progress {
						verified: verified.iter().map(|v| v.load(Relaxed)).sum(),
						size,
						received: p.received,
						signed_amount: signed.iter().map(|v| u128::from(v.load(Relaxed))).sum(),
					});
				};
				self.fetch_range(session, hash, start, end, part, &mut report).await
			}
		});
		for result in futures::future::join_all(downloads).await {
			result?;
		}
		let joined = PathBuf::from(format!("{}.part", out.display()));
		let mut whole = File::create(&joined).map_err(io_err(&joined))?;
		for part in &parts {
			let mut piece = File::open(part).map_err(io_err(part))?;
			io::copy(&mut piece, &mut whole).map_err(io_err(&joined))?;
		}
		drop(whole);
		finish_download(hash, &joined, out)?;
		for part in &parts {
			let _ = fs::remove_file(part);
		}
		Ok(size)
	}

	/// Downloads bytes `start..end` of `hash` into `part` (appending; resuming from its
	/// length), verifying every chunk and paying from `session`.
	async fn fetch_range(
		&self,
		session: &mut PaidSession,
		hash: &ContentHash,
		start: u64,
		end: u64,
		part: &Path,
		progress: &mut (dyn FnMut(Progress) + Send),
	) -> Result<(), ClientError> {
		let part = part.to_path_buf();
		let size = end - start;
		let file = OpenOptions::new().create(true).append(true).open(&part).map_err(io_err(&part))?;
		let mut offset = start + file.metadata().map_err(io_err(&part))?.len().min(size);
		let mut signed_amount = 0u128;
		let mut stalls = 0;
		let mut retries = 0u64;
		let mut reauthorised = false;
		while offset < end {
			let token = self.authorize(session).await?;
			let url = format!(
				"{}{}{}?start={offset}&len={}",
				session.endpoint,
				protocol::SLICE_PATH,
				hash.to_hex(),
				end - offset
			);
			let request = Request::get(url)
				.header(header::AUTHORIZATION, format!("Bearer {token}"))
				.body(Full::new(Bytes::new()))
				.expect("valid request");
			let response = match self.request(&session.endpoint, request).await {
				Ok(r) => r,
				// A few retries with a growing pause: a restarting agent or a dropped pooled connection.
				Err(e) if retries < TRANSPORT_RETRIES => {
					retries += 1;
					tracing::info!(error = %e, "request failed; retrying");
					tokio::time::sleep(RETRY_PAUSE * retries as u32).await;
					continue;
				},
				Err(e) => return Err(e),
			};
			match response.status() {
				StatusCode::OK => {},
				// The agent restarted or forgot the token: buy another one, once in a row.
				StatusCode::UNAUTHORIZED if !reauthorised => {
					reauthorised = true;
					session.token = None;
					continue;
				},
				StatusCode::PAYMENT_REQUIRED => {
					let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
					let answer: Option<ErrorBody> = serde_json::from_slice(&body).ok();
					if answer.as_ref().and_then(|a| a.session.as_ref()).is_some_and(|s| s.deposit_exhausted) {
						return Err(ClientError::DepositExhausted(session.session_id));
					}
					if session.record.signed >= session.record.received {
						// Everything received is paid for: the agent counts bytes that never
						// arrived (a cut connection). Pay for at most one more receipt interval.
						let claimed = answer.and_then(|a| a.session).map(|s| s.served_bytes).unwrap_or(0);
						let tolerated = session.record.received + self.receipt_interval;
						if claimed <= session.record.received || claimed > tolerated || stalls > 0 {
							return Err(refused(StatusCode::PAYMENT_REQUIRED, &body));
						}
						session.record.received = claimed;
						stalls += 1;
					}
					signed_amount = self.pay(session).await?;
					continue;
				},
				status => {
					let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
					return Err(refused(status, &body));
				},
			}
			stalls = 0;
			retries = 0;
			reauthorised = false;
			// Verify on a blocking thread while the body streams in.
			let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
			let verify_file = file.try_clone().map_err(io_err(&part))?;
			let (root, slice_start, len) = (*hash, offset, end - offset);
			let verifier = tokio::task::spawn_blocking(move || verify_slice(rx, verify_file, root, slice_start, len));
			let mut body = response.into_body();
			let mut since_receipt = 0u64;
			loop {
				let next = tokio::time::timeout(self.idle_timeout, body.frame()).await;
				let frame = match next {
					Err(_) => {
						let _ = tx.send(Err(io::Error::other("the agent stopped sending"))).await;
						break;
					},
					Ok(None) => break,
					Ok(Some(Ok(frame))) => frame,
					Ok(Some(Err(e))) => {
						let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
						break;
					},
				};
				let Ok(data) = frame.into_data() else { continue };
				let n = data.len() as u64;
				if tx.send(Ok(data)).await.is_err() {
					break; // the verifier stopped: a bad chunk
				}
				session.record.received += n;
				since_receipt += n;
				if since_receipt >= self.receipt_interval {
					since_receipt = 0;
					signed_amount = self.pay(session).await?;
				}
			}
			drop(tx);
			let (verified, failure) = verifier.await.map_err(|e| ClientError::Other(e.to_string()))?;
			offset += verified;
			progress(Progress { verified: offset - start, size, received: session.record.received, signed_amount });
			if let Some(e) = failure {
				if e.kind() == io::ErrorKind::InvalidData {
					return Err(ClientError::Tampered { hash: *hash, offset, detail: e.to_string() });
				}
				if e.kind() != io::ErrorKind::UnexpectedEof && e.kind() != io::ErrorKind::Other {
					return Err(io_err(&part)(e));
				}
				tracing::info!(offset, error = %e, "the download was cut; resuming");
				tokio::time::sleep(Duration::from_millis(100)).await;
			}
		}
		if session.record.received > session.record.signed {
			signed_amount = self.pay(session).await?;
		}
		progress(Progress { verified: offset - start, size, received: session.record.received, signed_amount });
		file.sync_all().map_err(io_err(&part))
	}

	/// Publishes `file` to the agent at `endpoint` with bearer `token`.
	pub async fn publish(&self, endpoint: &str, token: &str, file: &Path) -> Result<Published, ClientError> {
		let bytes = fs::read(file).map_err(io_err(file))?;
		let request = Request::post(format!("{endpoint}{}", protocol::PUBLISH_PATH))
			.header(header::AUTHORIZATION, format!("Bearer {token}"))
			.body(Full::new(Bytes::from(bytes)))
			.expect("valid request");
		let (status, body) = self.send(endpoint, request).await?;
		if status != StatusCode::CREATED {
			return Err(refused(status, &body));
		}
		serde_json::from_slice(&body).map_err(|e| ClientError::Other(format!("publish answer: {e}")))
	}
}

/// Checks the whole downloaded file against its name (belt and braces: every chunk was
/// verified already) and moves it into place.
fn finish_download(hash: &ContentHash, part: &Path, out: &Path) -> Result<(), ClientError> {
	let actual = hash_file(part).map_err(io_err(part))?;
	if actual != *hash {
		return Err(ClientError::Tampered { hash: *hash, offset: 0, detail: format!("the file hashes to {actual}") });
	}
	fs::rename(part, out).map_err(io_err(out))
}

fn refused(status: StatusCode, body: &[u8]) -> ClientError {
	let message = serde_json::from_slice::<ErrorBody>(body)
		.map(|b| b.error)
		.unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
	ClientError::Refused { status, message }
}

fn hash_file(path: &Path) -> io::Result<ContentHash> {
	let mut hasher = blake3::Hasher::new();
	let mut file = File::open(path)?;
	let mut buf = vec![0u8; 1 << 20];
	loop {
		let n = file.read(&mut buf)?;
		if n == 0 {
			return Ok(hasher.finalize());
		}
		hasher.update(&buf[..n]);
	}
}

/// Decodes a bao slice arriving through `rx`, appending verified bytes to `out`; returns how
/// many verified bytes were written and the error that stopped it, if any.
fn verify_slice(
	rx: mpsc::Receiver<io::Result<Bytes>>,
	mut out: File,
	root: ContentHash,
	start: u64,
	len: u64,
) -> (u64, Option<io::Error>) {
	struct Rx(mpsc::Receiver<io::Result<Bytes>>, Bytes);
	impl Read for Rx {
		fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
			while self.1.is_empty() {
				match self.0.blocking_recv() {
					None => return Ok(0),
					Some(chunk) => self.1 = chunk?,
				}
			}
			let n = buf.len().min(self.1.len());
			buf[..n].copy_from_slice(&self.1.split_to(n));
			Ok(n)
		}
	}
	let mut decoder = bao::decode::SliceDecoder::new(Rx(rx, Bytes::new()), &root, start, len);
	let mut written = 0u64;
	let mut buf = vec![0u8; 64 * 1024];
	loop {
		match decoder.read(&mut buf) {
			Ok(0) => return (written, None),
			Ok(n) => {
				if let Err(e) = out.write_all(&buf[..n]) {
					return (written, Some(e));
				}
				written += n as u64;
			},
			Err(e) if e.kind() == io::ErrorKind::Interrupted => {},
			Err(e) => return (written, Some(e)),
		}
	}
}
