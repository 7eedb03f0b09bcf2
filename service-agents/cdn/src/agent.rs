//! The provider agent: the HTTP server, sessions and metering, origin fills, publishing,
//! metrics, settlement and graceful shutdown.

use std::{
	collections::HashMap,
	convert::Infallible,
	io::{self, Read, Seek, SeekFrom},
	net::SocketAddr,
	sync::{
		atomic::{AtomicU64, Ordering::Relaxed},
		Arc, Mutex,
	},
	time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::{
	body::{Frame, Incoming},
	header, Method, Request, Response, StatusCode,
};
use hyper_util::{
	client::legacy::{connect::HttpConnector, Client},
	rt::{TokioExecutor, TokioIo},
};
use interlattice_pq_crypto::SignedUsageReceipt;
use interlattice_runtime::AccountId;
use interlattice_settlement::{
	chain::ChainClient, session_terms, Meter, ReceiptError, ReceiptStore, SettleReport, Settler, StoreError,
};
use pallet_provider_registry::ServiceKind;
use sp_core::{sr25519, Pair};
use tokio::{net::TcpListener, sync::mpsc, sync::watch, sync::Notify};

use crate::{
	config::AgentConfig,
	content::{parse_hash, stage, ContentError, ContentHash, ContentStore, Object},
	protocol::{self, parse_range, ErrorBody, Published, RangeRequest, SessionStatus},
};

/// Response body type.
pub type Body = BoxBody<Bytes, io::Error>;

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
	/// Configuration is incomplete or wrong.
	#[error("configuration: {0}")]
	Config(String),
	/// The chain could not be reached or disagrees with the configuration.
	#[error(transparent)]
	Chain(#[from] interlattice_settlement::ChainError),
	/// The receipt store cannot be opened.
	#[error(transparent)]
	Store(#[from] StoreError),
	/// The cache cannot be opened.
	#[error(transparent)]
	Content(#[from] ContentError),
	/// The listening socket cannot be bound.
	#[error("cannot listen on {addr}: {source}")]
	Listen {
		/// The address.
		addr: SocketAddr,
		/// Why.
		source: io::Error,
	},
}

/// The agent's counters, exported at `/metrics`.
#[derive(Default)]
pub struct Metrics {
	requests: AtomicU64,
	bytes_served: AtomicU64,
	cache_hits: AtomicU64,
	cache_misses: AtomicU64,
	origin_mismatches: AtomicU64,
	origin_failures: AtomicU64,
	receipts_accepted: AtomicU64,
	receipts_rejected: AtomicU64,
	receipts_settled: AtomicU64,
	settlement_failures: AtomicU64,
	payment_required: AtomicU64,
}

struct SessionState {
	meter: Mutex<Meter>,
	paid: Notify,
	refreshed: Mutex<Instant>,
}

impl SessionState {
	fn status(&self) -> SessionStatus {
		let meter = self.meter.lock().unwrap_or_else(|p| p.into_inner());
		let due = meter.payment_required();
		SessionStatus {
			session_id: meter.terms().session_id,
			served_bytes: meter.served_bytes(),
			paid_bytes: meter.latest().bytes,
			sequence: meter.latest().sequence,
			amount_due: due.amount_due.to_string(),
			allowance: meter.allowance(),
			deposit_exhausted: due.deposit_exhausted,
		}
	}

	fn allowance(&self) -> u64 {
		self.meter.lock().unwrap_or_else(|p| p.into_inner()).allowance()
	}

	/// Waits up to `wait` for a non-zero allowance; 0 if none came.
	async fn await_allowance(&self, wait: Duration) -> u64 {
		let deadline = tokio::time::Instant::now() + wait;
		loop {
			let notified = self.paid.notified();
			tokio::pin!(notified);
			notified.as_mut().enable();
			let allowance = self.allowance();
			if allowance > 0 {
				return allowance;
			}
			if tokio::time::timeout_at(deadline, notified).await.is_err() {
				return 0;
			}
		}
	}

	fn add_served(&self, n: u64) {
		self.meter.lock().unwrap_or_else(|p| p.into_inner()).add_served(n);
	}
}

/// What every request handler shares.
pub struct Agent {
	config: AgentConfig,
	chain: ChainClient,
	account: sr25519::Pair,
	provider: AccountId,
	content: Mutex<ContentStore>,
	receipts: Arc<Mutex<ReceiptStore>>,
	sessions: Mutex<HashMap<u64, Arc<SessionState>>>,
	metrics: Arc<Metrics>,
	hot: Mutex<HotObjects>,
	origin: Client<HttpConnector, http_body_util::Empty<Bytes>>,
}

/// Bytes of small objects kept in memory.
const HOT_BYTES: usize = 64 << 20;

/// Small objects kept in memory (they are immutable, so this can never serve stale bytes),
/// oldest dropped first beyond [`HOT_BYTES`].
#[derive(Default)]
struct HotObjects {
	objects: HashMap<ContentHash, Bytes>,
	order: std::collections::VecDeque<ContentHash>,
	bytes: usize,
}

impl HotObjects {
	fn get(&self, hash: &ContentHash) -> Option<Bytes> {
		self.objects.get(hash).cloned()
	}

	fn insert(&mut self, hash: ContentHash, bytes: Bytes) {
		if self.objects.contains_key(&hash) {
			return;
		}
		self.bytes += bytes.len();
		self.objects.insert(hash, bytes);
		self.order.push_back(hash);
		while self.bytes > HOT_BYTES {
			let Some(old) = self.order.pop_front() else { break };
			if let Some(b) = self.objects.remove(&old) {
				self.bytes -= b.len();
			}
		}
	}
}

/// The largest receipt body accepted (JSON of a 3.3 KB signature is ~7 KB).
const MAX_RECEIPT_BODY: usize = 32 * 1024;
/// Objects up to this size are read in one piece (fast path for small objects).
const SMALL_OBJECT: u64 = 256 * 1024;
const CHUNK: usize = 256 * 1024;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
	Response::builder()
		.status(status)
		.header(header::CONTENT_TYPE, content_type)
		.body(Full::new(body.into()).map_err(|never| match never {}).boxed())
		.expect("static headers are valid")
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
	full(status, "application/json", serde_json::to_vec(value).expect("serialisable"))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
	json(status, &ErrorBody { error: message.into(), session: None })
}

/// Reads a channel of byte chunks as a blocking `Read` (for hashing request and origin
/// bodies on a blocking thread).
struct ChannelReader {
	rx: mpsc::Receiver<io::Result<Bytes>>,
	buf: Bytes,
}

impl Read for ChannelReader {
	fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
		while self.buf.is_empty() {
			match self.rx.blocking_recv() {
				None => return Ok(0),
				Some(chunk) => self.buf = chunk?,
			}
		}
		let n = out.len().min(self.buf.len());
		out[..n].copy_from_slice(&self.buf.split_to(n));
		Ok(n)
	}
}

/// Feeds an incoming body into a channel; returns the receiving end as a `Read`.
fn body_reader<B>(body: B) -> ChannelReader
where
	B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
	B::Error: std::fmt::Display + Send,
{
	let (tx, rx) = mpsc::channel(8);
	tokio::spawn(async move {
		let mut body = body;
		while let Some(frame) = body.frame().await {
			let item = match frame {
				Ok(f) => match f.into_data() {
					Ok(data) => Ok(data),
					Err(_) => continue,
				},
				Err(e) => Err(io::Error::other(e.to_string())),
			};
			let failed = item.is_err();
			if tx.send(item).await.is_err() || failed {
				return;
			}
		}
	});
	ChannelReader { rx, buf: Bytes::new() }
}

impl Agent {
	/// Connects to the chain, checks the provider's registration, opens the cache and the
	/// receipt store.
	pub async fn new(config: AgentConfig) -> Result<Arc<Self>, AgentError> {
		interlattice_settlement::check_settle_interval(config.payment.settle_interval_secs).map_err(AgentError::Config)?;
		let secret = std::env::var("INTERLATTICE_ACCOUNT").ok().or_else(|| config.provider.account.clone()).ok_or_else(
			|| AgentError::Config("no provider account: set provider.account or INTERLATTICE_ACCOUNT".into()),
		)?;
		let pair = sr25519::Pair::from_string(&secret, None)
			.map_err(|e| AgentError::Config(format!("provider.account is not a valid sr25519 secret URI: {e:?}")))?;
		let provider: AccountId = pair.public().into();
		tracing::info!(rpc = %config.chain.rpc, "connecting to the chain");
		let chain = ChainClient::connect(&config.chain.rpc).await?;
		match chain.provider(&provider).await? {
			None => {
				return Err(AgentError::Config(format!(
					"account {provider} is not a registered provider on this chain: register it first"
				)))
			},
			Some(p) if !p.services.offers(ServiceKind::Cdn) => {
				return Err(AgentError::Config(format!("provider {provider} is registered without the CDN service")))
			},
			Some(p) => {
				let endpoints: Vec<String> = p.endpoints.iter().map(|e| String::from_utf8_lossy(e).into_owned()).collect();
				let listen = config.http.listen.to_string();
				if !endpoints.iter().any(|e| e.contains(&listen)) {
					tracing::warn!(?endpoints, %listen, "no registered endpoint names the listen address; clients may not find this agent");
				}
				if !p.active {
					tracing::warn!("the provider is registered but not active (stake below the minimum?): clients cannot open sessions");
				}
			},
		}
		let content = ContentStore::open(&config.cache.dir, config.cache.max_bytes)?;
		let (objects, used) = content.usage();
		tracing::info!(dir = %config.cache.dir.display(), objects, bytes = used, "cache opened");
		let receipts = ReceiptStore::open(&config.payment.receipts_dir)?;
		tracing::info!(
			dir = %config.payment.receipts_dir.display(),
			unsettled = receipts.unsettled().len(),
			"receipt store opened"
		);
		let origin = Client::builder(TokioExecutor::new()).build_http();
		Ok(Arc::new(Agent {
			config,
			chain,
			account: pair,
			provider,
			content: Mutex::new(content),
			receipts: Arc::new(Mutex::new(receipts)),
			sessions: Mutex::new(HashMap::new()),
			metrics: Arc::new(Metrics::default()),
			hot: Mutex::new(HotObjects::default()),
			origin,
		}))
	}

	fn settler(&self) -> Settler {
		Settler::new(self.chain.clone(), self.account.clone(), self.receipts.clone())
	}

	/// Serves until `shutdown` turns true; then lets in-flight requests finish (bounded by
	/// the grace period) and settles once more.
	pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
		let (settle_stop_tx, settle_stop) = watch::channel(false);
		let settler = self.settler();
		let me = self.clone();
		let interval = Duration::from_secs(self.config.payment.settle_interval_secs.max(1));
		let settlement = tokio::spawn(async move {
			settler.run(interval, settle_stop, move |outcome| me.count_round(outcome)).await;
		});
		let graceful = hyper_util::server::graceful::GracefulShutdown::new();
		let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
		let tls = match &self.config.http.tls {
			Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
				crate::tls::server_config(&t.certificate, &t.private_key).map_err(|e| AgentError::Config(e.to_string()))?,
			))),
			None => None,
		};
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
					let service = hyper::service::service_fn(move |req| {
						let agent = agent.clone();
						async move { Ok::<_, Infallible>(agent.handle(req).await) }
					});
					let builder = builder.clone();
					let watcher = graceful.watcher();
					let tls = tls.clone();
					tokio::spawn(async move {
						let result = match tls {
							None => watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await,
							Some(acceptor) => {
								let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
									Ok(Ok(s)) => s,
									Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
									Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
								};
								watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await
							},
						};
						if let Err(e) = result {
							tracing::debug!(%peer, error = %e, "connection ended with an error");
						}
					});
				},
				_ = shutdown.changed() => break,
			}
		}
		drop(listener);
		tracing::info!("shutting down: finishing in-flight requests");
		let grace = Duration::from_secs(self.config.http.shutdown_grace_secs);
		if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
			tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
		}
		let _ = settle_stop_tx.send(true);
		let _ = settlement.await;
		tracing::info!("stopped");
		Ok(())
	}

	fn count_round(&self, outcome: &Result<SettleReport, interlattice_settlement::SettleError>) {
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

	/// Answers one request.
	pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
		self.metrics.requests.fetch_add(1, Relaxed);
		let path = req.uri().path().to_string();
		let response = match (req.method(), path.as_str()) {
			(&Method::GET, "/health") => full(StatusCode::OK, "text/plain", "ok\n"),
			(&Method::GET, "/metrics") => self.metrics_text(),
			(&Method::POST, protocol::RECEIPTS_PATH) => self.post_receipt(req).await,
			(&Method::POST, protocol::PUBLISH_PATH) => self.publish(req).await,
			(&Method::GET | &Method::HEAD, p) if p.starts_with(protocol::CONTENT_PATH) => {
				let hash = p[protocol::CONTENT_PATH.len()..].to_string();
				self.get_content(req, &hash).await
			},
			(&Method::GET, p) if p.starts_with(protocol::SLICE_PATH) => {
				let hash = p[protocol::SLICE_PATH.len()..].to_string();
				self.get_slice(req, &hash).await
			},
			(_, p)
				if p.starts_with(protocol::CONTENT_PATH) ||
					p.starts_with(protocol::SLICE_PATH) ||
					p == protocol::RECEIPTS_PATH ||
					p == protocol::PUBLISH_PATH =>
			{
				let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
				let allow = if p.starts_with(protocol::CONTENT_PATH) {
					"GET, HEAD"
				} else if p.starts_with(protocol::SLICE_PATH) {
					"GET"
				} else {
					"POST"
				};
				r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
				r
			},
			_ => error(StatusCode::NOT_FOUND, format!("no such endpoint: {path}")),
		};
		response
	}

	fn metrics_text(&self) -> Response<Body> {
		let m = &self.metrics;
		let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
		let unpaid: u64 = sessions.values().map(|s| s.meter.lock().unwrap_or_else(|p| p.into_inner()).unpaid_bytes()).sum();
		let (objects, cache_bytes) = self.content.lock().unwrap_or_else(|p| p.into_inner()).usage();
		let mut out = String::new();
		let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
			out.push_str(&format!("# HELP interlattice_cdn_{name} {help}\n# TYPE interlattice_cdn_{name} {kind}\ninterlattice_cdn_{name} {value}\n"));
		};
		metric("requests_total", "counter", "HTTP requests received.", m.requests.load(Relaxed));
		metric("sessions", "gauge", "Sessions known to this agent.", sessions.len() as u64);
		metric("bytes_served_total", "counter", "Body bytes served.", m.bytes_served.load(Relaxed));
		metric("unpaid_bytes", "gauge", "Bytes served but not yet covered by a receipt, all sessions.", unpaid);
		metric("cache_hits_total", "counter", "Requests answered from the cache.", m.cache_hits.load(Relaxed));
		metric("cache_misses_total", "counter", "Requests for objects not in the cache.", m.cache_misses.load(Relaxed));
		metric("origin_mismatches_total", "counter", "Origin responses refused because their bytes do not match the hash.", m.origin_mismatches.load(Relaxed));
		metric("origin_failures_total", "counter", "Origin fills that failed otherwise (unreachable, not found).", m.origin_failures.load(Relaxed));
		metric("cache_objects", "gauge", "Objects in the cache.", objects as u64);
		metric("cache_bytes", "gauge", "Bytes used by the cache.", cache_bytes);
		metric("receipts_accepted_total", "counter", "Receipts checked, stored and acknowledged.", m.receipts_accepted.load(Relaxed));
		metric("receipts_rejected_total", "counter", "Receipts refused.", m.receipts_rejected.load(Relaxed));
		metric("receipts_settled_total", "counter", "Receipts settled on-chain.", m.receipts_settled.load(Relaxed));
		metric("settlement_failures_total", "counter", "Failed settlement rounds and receipts the chain refused.", m.settlement_failures.load(Relaxed));
		metric("payment_required_total", "counter", "402 answers.", m.payment_required.load(Relaxed));
		full(StatusCode::OK, "text/plain; version=0.0.4", out)
	}

	/// The session a request names, checked on-chain (cached for a few seconds).
	async fn session<B>(&self, req: &Request<B>) -> Result<Option<Arc<SessionState>>, Response<Body>> {
		let Some(value) = req.headers().get(protocol::SESSION_HEADER) else { return Ok(None) };
		let id: u64 = value
			.to_str()
			.ok()
			.and_then(|v| v.trim().parse().ok())
			.ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("{} must be a decimal session id", protocol::SESSION_HEADER)))?;
		let cached = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
		if let Some(state) = &cached {
			if state.refreshed.lock().unwrap_or_else(|p| p.into_inner()).elapsed() < Duration::from_secs(5) {
				return Ok(cached);
			}
		}
		let session = self
			.chain
			.session(id)
			.await
			.map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, format!("cannot check the session on-chain: {e}")))?
			.ok_or_else(|| error(StatusCode::FORBIDDEN, format!("session {id} does not exist on-chain")))?;
		if session.provider != self.provider {
			return Err(error(StatusCode::FORBIDDEN, format!("session {id} is with another provider, not {}", self.provider)));
		}
		if session.service != ServiceKind::Cdn {
			return Err(error(StatusCode::FORBIDDEN, format!("session {id} is not a CDN session")));
		}
		let best = self.chain.best_number().await.unwrap_or(0);
		if session.closing || u64::from(session.expires_at) < best {
			return Err(error(StatusCode::FORBIDDEN, format!("session {id} is closed or expired")));
		}
		let terms = session_terms(&session, self.chain.genesis_hash().0);
		let state = match cached {
			Some(state) => {
				state.meter.lock().unwrap_or_else(|p| p.into_inner()).update_terms(terms);
				*state.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
				state
			},
			None => {
				let stored = self
					.receipts
					.lock()
					.unwrap_or_else(|p| p.into_inner())
					.session(id)
					.map(|s| s.latest.receipt);
				let meter = Meter::new(terms, self.config.payment.credit_limit_bytes, stored);
				let state = Arc::new(SessionState { meter: Mutex::new(meter), paid: Notify::new(), refreshed: Mutex::new(Instant::now()) });
				self.sessions.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_insert(state).clone()
			},
		};
		Ok(Some(state))
	}

	fn payment_required(&self, state: &SessionState) -> Response<Body> {
		self.metrics.payment_required.fetch_add(1, Relaxed);
		let status = state.status();
		let message = if status.deposit_exhausted {
			"the session's deposit is used up: top up the deposit, then send a receipt"
		} else {
			"send a receipt for the bytes served (POST /receipts) to continue"
		};
		json(StatusCode::PAYMENT_REQUIRED, &ErrorBody { error: message.into(), session: Some(status) })
	}

	async fn post_receipt(&self, req: Request<Incoming>) -> Response<Body> {
		let state = match self.session(&req).await {
			Ok(Some(s)) => s,
			Ok(None) => return error(StatusCode::BAD_REQUEST, format!("a receipt needs the {} header", protocol::SESSION_HEADER)),
			Err(r) => return r,
		};
		let body = match http_body_util::Limited::new(req.into_body(), MAX_RECEIPT_BODY).collect().await {
			Ok(b) => b.to_bytes(),
			Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("receipt body: {e}")),
		};
		let signed: SignedUsageReceipt = match serde_json::from_slice(&body) {
			Ok(s) => s,
			Err(e) => {
				self.metrics.receipts_rejected.fetch_add(1, Relaxed);
				return error(StatusCode::BAD_REQUEST, format!("not a signed receipt: {e}"));
			},
		};
		// Verify (the expensive part) without holding the meter's lock.
		let meter = state.meter.lock().unwrap_or_else(|p| p.into_inner()).clone();
		let check = tokio::task::spawn_blocking(move || meter.check_receipt(&signed, 0).map(|_| signed)).await;
		let signed = match check {
			Ok(Ok(s)) => s,
			Ok(Err(e)) => {
				self.metrics.receipts_rejected.fetch_add(1, Relaxed);
				let status = match e {
					ReceiptError::NotNewer { .. } => StatusCode::CONFLICT,
					ReceiptError::ExceedsDeposit { .. } => StatusCode::PAYMENT_REQUIRED,
					_ => StatusCode::BAD_REQUEST,
				};
				return error(status, e.to_string());
			},
			Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("verification task failed: {e}")),
		};
		let receipt = signed.receipt;
		let store = self.receipts.clone();
		let stored = tokio::task::spawn_blocking(move || store.lock().unwrap_or_else(|p| p.into_inner()).record(signed)).await;
		match stored {
			Ok(Ok(())) => {},
			Ok(Err(StoreError::NotNewer { .. })) => return error(StatusCode::CONFLICT, "a newer receipt is stored already"),
			Ok(Err(e)) => {
				tracing::error!(error = %e, "cannot store a receipt");
				return error(StatusCode::INTERNAL_SERVER_ERROR, "the receipt could not be stored; send it again");
			},
			Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("store task failed: {e}")),
		}
		{
			let mut meter = state.meter.lock().unwrap_or_else(|p| p.into_inner());
			if receipt.sequence > meter.latest().sequence {
				meter.accept(receipt);
			}
		}
		state.paid.notify_waiters();
		self.metrics.receipts_accepted.fetch_add(1, Relaxed);
		tracing::debug!(session = receipt.session_id, sequence = receipt.sequence, bytes = receipt.bytes, "receipt acknowledged");
		json(StatusCode::OK, &state.status())
	}

	async fn publish(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
		let token = req
			.headers()
			.get(header::AUTHORIZATION)
			.and_then(|v| v.to_str().ok())
			.and_then(|v| v.strip_prefix("Bearer "))
			.map(str::to_owned);
		let authorised = token.is_some_and(|t| {
			self.config.publish.tokens.iter().any(|allowed| constant_time_eq(allowed.as_bytes(), t.as_bytes()))
		});
		if !authorised {
			// Read (and discard) a bounded part of the upload first, so that an ordinary client
			// sees the answer instead of a connection reset in the middle of its upload.
			let _ = http_body_util::Limited::new(req.into_body(), 16 << 20).collect().await;
			return error(StatusCode::UNAUTHORIZED, "publishing needs an authorised bearer token");
		}
		let pull = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("url="))).map(percent_decode);
		let limit = self.config.cache.max_bytes;
		let staged = match pull {
			Some(url) => match self.fetch_into_stage(&url, None).await {
				Ok(s) => Ok(s),
				Err(e) => return error(StatusCode::BAD_GATEWAY, format!("pulling {url}: {e}")),
			},
			None => {
				let reader = body_reader(req.into_body());
				let tmp = self.content.lock().unwrap_or_else(|p| p.into_inner()).tmp_dir();
				tokio::task::spawn_blocking(move || stage(&tmp, reader, None, limit))
					.await
					.unwrap_or_else(|e| Err(ContentError::Source(io::Error::other(e.to_string()))))
			},
		};
		let committed = staged.and_then(|s| self.content.lock().unwrap_or_else(|p| p.into_inner()).commit(s));
		match committed {
			Ok(object) => json(StatusCode::CREATED, &Published { hash: object.hash.to_hex().to_string(), size: object.size }),
			Err(e @ ContentError::TooLarge { .. }) => error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
			Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
		}
	}

	/// GETs `url` and stages the body (checked against `expected` if given).
	async fn fetch_into_stage(&self, url: &str, expected: Option<ContentHash>) -> Result<crate::content::Staged, FetchError> {
		let uri: hyper::Uri = url.parse().map_err(|e| FetchError::Failed(format!("bad URL: {e}")))?;
		let response = tokio::time::timeout(Duration::from_secs(30), self.origin.get(uri))
			.await
			.map_err(|_| FetchError::Failed("no answer within 30 s".to_string()))?
			.map_err(|e| FetchError::Failed(e.to_string()))?;
		if !response.status().is_success() {
			return Err(FetchError::Failed(format!("answered {}", response.status())));
		}
		let reader = body_reader(response.into_body());
		let tmp = self.content.lock().unwrap_or_else(|p| p.into_inner()).tmp_dir();
		let limit = self.config.cache.max_bytes;
		match tokio::task::spawn_blocking(move || stage(&tmp, reader, expected, limit)).await {
			Ok(Ok(staged)) => Ok(staged),
			Ok(Err(e @ ContentError::HashMismatch { .. })) => Err(FetchError::Mismatch(e.to_string())),
			Ok(Err(e)) => Err(FetchError::Failed(e.to_string())),
			Err(e) => Err(FetchError::Failed(e.to_string())),
		}
	}

	/// The object, from the cache or filled from the origins.
	async fn object(&self, hash: &ContentHash) -> Option<Object> {
		if let Some(o) = self.content.lock().unwrap_or_else(|p| p.into_inner()).get(hash) {
			self.metrics.cache_hits.fetch_add(1, Relaxed);
			return Some(o);
		}
		self.metrics.cache_misses.fetch_add(1, Relaxed);
		for template in &self.config.origins.urls {
			let url = template.replace("{hash}", hash.to_hex().as_str());
			match self.fetch_into_stage(&url, Some(*hash)).await {
				Ok(staged) => match self.content.lock().unwrap_or_else(|p| p.into_inner()).commit(staged) {
					Ok(o) => return Some(o),
					Err(e) => tracing::warn!(%url, error = %e, "cannot cache the origin's object"),
				},
				Err(FetchError::Mismatch(e)) => {
					self.metrics.origin_mismatches.fetch_add(1, Relaxed);
					tracing::warn!(%url, error = %e, "the origin served wrong content; not cached");
				},
				Err(FetchError::Failed(e)) => {
					self.metrics.origin_failures.fetch_add(1, Relaxed);
					tracing::info!(%url, error = %e, "origin fill failed");
				},
			}
		}
		None
	}

	/// Checks the hash and the session; on success the object and the session (None: free).
	async fn prepare(
		&self,
		req: &Request<Incoming>,
		hash: &str,
		needs_payment: bool,
	) -> Result<(Object, Option<Arc<SessionState>>), Response<Body>> {
		let hash = parse_hash(hash).ok_or_else(|| error(StatusCode::BAD_REQUEST, "not a BLAKE3 hash (64 hex digits)"))?;
		let free = self.config.payment.public.iter().any(|p| parse_hash(p) == Some(hash));
		let session = if free { None } else { self.session(req).await? };
		if needs_payment && !free && session.is_none() {
			self.metrics.payment_required.fetch_add(1, Relaxed);
			return Err(error(
				StatusCode::PAYMENT_REQUIRED,
				format!("open a CDN session with provider {} on-chain and name it in the {} header", self.provider, protocol::SESSION_HEADER),
			));
		}
		let object = self.object(&hash).await.ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no object {hash}")))?;
		if let Some(s) = &session {
			if needs_payment && s.allowance() == 0 {
				// Maybe a top-up or a settlement changed things: look again once.
				*s.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now() - Duration::from_secs(60);
				let s = self.session(req).await?.expect("the header is there");
				if s.allowance() == 0 {
					return Err(self.payment_required(&s));
				}
			}
		}
		Ok((object, session))
	}

	async fn get_content(&self, req: Request<Incoming>, hash: &str) -> Response<Body> {
		let head = req.method() == Method::HEAD;
		let (object, session) = match self.prepare(&req, hash, !head).await {
			Ok(v) => v,
			Err(r) => return r,
		};
		let etag = format!("\"{}\"", object.hash.to_hex());
		let builder = Response::builder()
			.header(header::ETAG, &etag)
			.header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
			.header(header::ACCEPT_RANGES, "bytes")
			.header(header::CONTENT_TYPE, "application/octet-stream");
		if req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
			v.split(',').any(|t| t.trim() == etag || t.trim() == "*")
		}) {
			return builder.status(StatusCode::NOT_MODIFIED).body(empty()).expect("valid");
		}
		let range = parse_range(req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()), object.size);
		let (status, first, len, builder) = match range {
			RangeRequest::Full => (StatusCode::OK, 0, object.size, builder),
			RangeRequest::Partial { first, last } => (
				StatusCode::PARTIAL_CONTENT,
				first,
				last - first + 1,
				builder.header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{}", object.size)),
			),
			RangeRequest::Unsatisfiable => {
				return builder
					.status(StatusCode::RANGE_NOT_SATISFIABLE)
					.header(header::CONTENT_RANGE, format!("bytes */{}", object.size))
					.body(empty())
					.expect("valid")
			},
		};
		let builder = builder.status(status).header(header::CONTENT_LENGTH, len);
		if head {
			return builder.body(empty()).expect("valid");
		}
		// Small objects (kept in memory once read) that fit in the session's allowance: one
		// frame.
		if object.size <= SMALL_OBJECT && session.as_ref().is_none_or(|s| s.allowance() >= len) {
			return match self.small_object(&object).await {
				Ok(bytes) => {
					if let Some(s) = &session {
						s.add_served(len);
					}
					self.metrics.bytes_served.fetch_add(len, Relaxed);
					let part = bytes.slice(first as usize..(first + len) as usize);
					builder.body(Full::new(part).map_err(|never| match never {}).boxed()).expect("valid")
				},
				Err(e) => {
					tracing::error!(hash = %object.hash, error = %e, "cannot read a cached object");
					error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the object")
				},
			};
		}
		let path = object.path.clone();
		let reader = move || -> io::Result<Box<dyn Read + Send>> {
			let mut file = std::fs::File::open(&path)?;
			file.seek(SeekFrom::Start(first))?;
			Ok(Box::new(file.take(len)))
		};
		builder.body(self.metered_stream(reader, session)).expect("valid")
	}

	async fn get_slice(&self, req: Request<Incoming>, hash: &str) -> Response<Body> {
		let (object, session) = match self.prepare(&req, hash, true).await {
			Ok(v) => v,
			Err(r) => return r,
		};
		let query = req.uri().query().unwrap_or_default();
		let param = |name: &str| {
			query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).and_then(|v| v.parse::<u64>().ok())
		};
		let (Some(start), Some(len)) = (param("start"), param("len")) else {
			return error(StatusCode::BAD_REQUEST, "a slice needs ?start=<offset>&len=<bytes>");
		};
		if start >= object.size.max(1) && !(start == 0 && object.size == 0) {
			return Response::builder()
				.status(StatusCode::RANGE_NOT_SATISFIABLE)
				.header(header::CONTENT_RANGE, format!("bytes */{}", object.size))
				.body(empty())
				.expect("valid");
		}
		let (path, outboard) = (object.path.clone(), object.outboard.clone());
		let reader = move || -> io::Result<Box<dyn Read + Send>> {
			let content = std::fs::File::open(&path)?;
			let outboard = std::fs::File::open(&outboard)?;
			Ok(Box::new(bao::encode::SliceExtractor::new_outboard(content, outboard, start, len)))
		};
		Response::builder()
			.status(StatusCode::OK)
			.header(header::CONTENT_TYPE, "application/x-bao-slice")
			.header(protocol::CONTENT_SIZE_HEADER, object.size)
			.header(header::ETAG, format!("\"{}\"", object.hash.to_hex()))
			.body(self.metered_stream(reader, session))
			.expect("valid")
	}

	/// A small object's bytes, from memory or read (once) from the cache.
	async fn small_object(&self, object: &Object) -> io::Result<Bytes> {
		if let Some(bytes) = self.hot.lock().unwrap_or_else(|p| p.into_inner()).get(&object.hash) {
			return Ok(bytes);
		}
		let path = object.path.clone();
		let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
			.await
			.map_err(|e| io::Error::other(e.to_string()))??;
		let bytes = Bytes::from(bytes);
		if bytes.len() as u64 != object.size {
			return Err(io::Error::other("the cached file has the wrong length"));
		}
		self.hot.lock().unwrap_or_else(|p| p.into_inner()).insert(object.hash, bytes.clone());
		Ok(bytes)
	}

	/// Streams what `open` reads, chunk by chunk, metering each chunk against the session
	/// (waiting for a receipt when the credit is used up; cutting the response if none comes).
	fn metered_stream(
		&self,
		open: impl FnOnce() -> io::Result<Box<dyn Read + Send>> + Send + 'static,
		session: Option<Arc<SessionState>>,
	) -> Body {
		let (chunks_tx, mut chunks) = mpsc::channel::<io::Result<Bytes>>(4);
		tokio::task::spawn_blocking(move || {
			let mut reader = match open() {
				Ok(r) => r,
				Err(e) => {
					let _ = chunks_tx.blocking_send(Err(e));
					return;
				},
			};
			loop {
				let mut buf = vec![0u8; CHUNK];
				let mut filled = 0;
				while filled < CHUNK {
					match reader.read(&mut buf[filled..]) {
						Ok(0) => break,
						Ok(n) => filled += n,
						Err(e) if e.kind() == io::ErrorKind::Interrupted => {},
						Err(e) => {
							let _ = chunks_tx.blocking_send(Err(e));
							return;
						},
					}
				}
				if filled == 0 {
					return;
				}
				buf.truncate(filled);
				if chunks_tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
					return;
				}
			}
		});
		let (frames_tx, frames) = mpsc::channel::<Result<Frame<Bytes>, io::Error>>(2);
		let wait = Duration::from_millis(self.config.payment.payment_wait_ms);
		let metrics = self.metrics.clone();
		tokio::spawn(async move {
			while let Some(chunk) = chunks.recv().await {
				let mut chunk = match chunk {
					Ok(c) => c,
					Err(e) => {
						let _ = frames_tx.send(Err(e)).await;
						return;
					},
				};
				while !chunk.is_empty() {
					let n = match &session {
						None => chunk.len(),
						Some(s) => {
							let allowance = s.await_allowance(wait).await;
							if allowance == 0 {
								tracing::info!("no receipt within the payment wait; cutting the response");
								let _ = frames_tx.send(Err(io::Error::other("payment required"))).await;
								return;
							}
							chunk.len().min(allowance.min(usize::MAX as u64) as usize)
						},
					};
					let part = chunk.split_to(n);
					if let Some(s) = &session {
						s.add_served(n as u64);
					}
					metrics.bytes_served.fetch_add(n as u64, Relaxed);
					if frames_tx.send(Ok(Frame::data(part))).await.is_err() {
						return;
					}
				}
			}
		});
		let stream = futures::stream::unfold(frames, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
		BodyExt::boxed(StreamBody::new(stream))
	}
}

/// Why a fetch from an origin gave nothing.
#[derive(Debug, thiserror::Error)]
enum FetchError {
	/// The bytes do not hash to the name.
	#[error("{0}")]
	Mismatch(String),
	/// Anything else.
	#[error("{0}")]
	Failed(String),
}

fn empty() -> Body {
	http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
	a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_decode(s: &str) -> String {
	let bytes = s.as_bytes();
	let mut out = Vec::with_capacity(bytes.len());
	let mut i = 0;
	while i < bytes.len() {
		if bytes[i] == b'%' && i + 2 < bytes.len() {
			if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
				out.push(b);
				i += 3;
				continue;
			}
		}
		out.push(bytes[i]);
		i += 1;
	}
	String::from_utf8_lossy(&out).into_owned()
}

/// Binds the configured address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AgentError> {
	TcpListener::bind(addr).await.map_err(|source| AgentError::Listen { addr, source })
}
