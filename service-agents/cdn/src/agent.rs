//! The dCDN provider agent: the HTTP server (HTTP/1.1 and HTTP/2, optionally TLS) and its
//! routes, on the agent core's sessions, receipt pipeline, settlement, limits, metrics and
//! lifecycle. Paid requests carry a bearer token bought with a capability signed by the
//! session's key ([`crate::tokens`]); objects come from the cache or are filled once
//! ([`crate::fills`]); paid bodies are metered chunk by chunk with reservations
//! ([`crate::metering`]).

use std::{
	collections::HashMap,
	convert::Infallible,
	io::{self, Read, Seek, SeekFrom},
	sync::{Arc, Mutex},
	time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use interlattice_agent_core::{
	identity::Identity,
	lifecycle::Lifecycle,
	limits::{accept_loop, ConnectionLimits},
	receipts::{ReceiptDesk, ReceiptRefusal},
	sessions::{SessionBook, SessionEntry, SessionRefusal},
	start::{self, Payments, StartError},
	upkeep::Upkeep,
	Hold, ReceiptError, Settler,
};
use interlattice_pq_crypto::{keys::MlDsaKeyPair, SignedUsageReceipt};
use interlattice_runtime::AccountId;
use pallet_provider_registry::ServiceKind;
use pallet_session_escrow::types::max_amount_owed;
use tokio::{net::TcpListener, sync::Semaphore};
use tracing::Instrument;

use crate::{
	config::AgentConfig,
	content::{parse_hash, ContentHash, ContentStore, Object},
	fills::{body_reader, FetchError, FillMetrics, Fills},
	metering::{metered_stream, HotObjects, StreamSlot},
	protocol::{self, parse_range, ErrorBody, Published, RangeRequest, SessionStatus, SignedCapability, TokenGrant},
	tokens::Tokens,
};

/// Response body type.
pub type Body = BoxBody<Bytes, io::Error>;

interlattice_agent_core::service_metrics! {
	/// The dCDN's metrics: the core's and its own.
	pub struct CdnMetrics {
		/// HTTP requests received.
		requests: IntCounter = "requests_total",
		/// Body bytes served.
		bytes_served: IntCounter = "bytes_served_total",
		/// Requests answered from the cache.
		cache_hits: IntCounter = "cache_hits_total",
		/// Requests for objects not in the cache.
		cache_misses: IntCounter = "cache_misses_total",
		/// 402 answers.
		payment_required: IntCounter = "payment_required_total",
		/// Objects in the cache.
		cache_objects: IntGauge = "cache_objects",
		/// Bytes used by the cache.
		cache_bytes: IntGauge = "cache_bytes",
		/// Origin responses refused because their bytes do not match the hash.
		origin_mismatches: IntCounter = "origin_mismatches_total",
		/// Origin fills that failed otherwise (unreachable, not found).
		origin_failures: IntCounter = "origin_failures_total",
	}
}

/// The largest receipt or capability body accepted (JSON of a 3.3 KB signature is ~7 KB).
const MAX_SIGNED_BODY: usize = 32 * 1024;
/// Objects up to this size are read in one piece (fast path for small objects).
const SMALL_OBJECT: u64 = 256 * 1024;

pub(crate) fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
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

fn empty() -> Body {
	http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

fn unix_now() -> u64 {
	SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The agent's TLS: its ML-DSA-65 service key's certificate for Interlattice clients (so they
/// authenticate it against the registry, `provider_tls`), the configured certificate or a
/// self-signed one for every other client.
fn tls_acceptor(service_key: &MlDsaKeyPair, config: &AgentConfig) -> Result<tokio_rustls::TlsAcceptor, StartError> {
	let tls_error = |e: crate::tls::TlsError| StartError::Config(format!("http.tls: {e}"));
	let endpoint = config.provider.endpoint.clone().unwrap_or_default();
	let host = interlattice_agent_core::provider_tls::endpoint_host(&endpoint);
	let ordinary = match &config.service.http.tls {
		Some(t) => crate::tls::load_certificate(&t.certificate, &t.private_key).map_err(tls_error)?,
		None => {
			let mut names = vec!["localhost".to_string()];
			if !host.is_empty() && host != "localhost" {
				names.push(host.clone());
			}
			crate::tls::self_signed(names).map_err(tls_error)?
		},
	};
	let key = Arc::new(MlDsaKeyPair::from_seed(*service_key.seed()));
	let name = if host.is_empty() { "interlattice-provider".to_string() } else { host };
	let config = interlattice_agent_core::provider_tls::server_config(key, &name, ordinary).map_err(tls_error)?;
	Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// What every request handler shares.
pub struct Agent {
	config: AgentConfig,
	provider: AccountId,
	content: Arc<Mutex<ContentStore>>,
	fills: Fills,
	hot: Mutex<HotObjects>,
	sessions: Arc<SessionBook>,
	receipts: Arc<ReceiptDesk>,
	settler: Settler,
	tokens: Mutex<Tokens>,
	streams: Mutex<HashMap<u64, Arc<Semaphore>>>,
	tls: Option<tokio_rustls::TlsAcceptor>,
	/// Counters.
	pub metrics: CdnMetrics,
	life: Lifecycle,
}

/// A paid request's session.
type Paid = Option<Arc<SessionEntry>>;

impl Agent {
	/// Connects to the chain, checks the provider's registration, opens the cache and the
	/// receipt store.
	pub async fn new(config: AgentConfig, life: Lifecycle) -> Result<Arc<Self>, StartError> {
		let http = &config.service.http;
		let identity = Identity::load(&config.provider, !http.plain_http).map_err(StartError::Config)?;
		let tls = match (&identity.service_key, http.plain_http) {
			(Some(key), false) => Some(tls_acceptor(key, &config)?),
			_ => None,
		};
		let provider = identity.provider.clone();
		let (chain, _) = start::connect_registered(ServiceKind::Cdn, &config, &identity).await?;
		let content = ContentStore::open(&config.service.cache.dir, config.service.cache.max_bytes)
			.map_err(StartError::service)?;
		let (objects, used) = content.usage();
		tracing::info!(dir = %config.service.cache.dir.display(), objects, bytes = used, "cache opened");
		let content = Arc::new(Mutex::new(content));
		let metrics = CdnMetrics::new("interlattice_cdn");
		let fills = Fills::new(
			content.clone(),
			config.service.origins.urls.clone(),
			config.service.cache.max_concurrent_fills,
			FillMetrics { mismatches: metrics.origin_mismatches.clone(), failures: metrics.origin_failures.clone() },
		);
		let Payments { sessions, receipts, settler } = start::payments(
			ServiceKind::Cdn,
			&config,
			&chain,
			provider.clone(),
			identity.account,
			&metrics.core,
			&life,
		)?;
		Ok(Arc::new(Agent {
			tokens: Mutex::new(Tokens::new(pallet_session_escrow::account_bytes(&provider))),
			config,
			provider,
			content,
			fills,
			hot: Mutex::new(HotObjects::default()),
			sessions,
			receipts,
			settler,
			streams: Mutex::new(HashMap::new()),
			tls,
			metrics,
			life,
		}))
	}

	fn store(&self) -> std::sync::MutexGuard<'_, ContentStore> {
		self.content.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// Serves until the agent stops; then lets in-flight requests finish (bounded by the
	/// grace period) and settles once more.
	pub async fn serve(self: Arc<Self>, listener: TcpListener) -> Result<(), StartError> {
		tracing::info!(listen = %self.config.service.http.listen, "cdn-agent serving");
		let upkeep = {
			let me = self.clone();
			Upkeep::for_agent(&self.config, &self.life, &self.sessions, &self.settler, &self.metrics.core, move || {
				me.tokens.lock().unwrap_or_else(|p| p.into_inner()).prune(unix_now())
			})
		};
		let graceful = Arc::new(hyper_util::server::graceful::GracefulShutdown::new());
		let handshake = Duration::from_secs(self.config.limits.handshake_timeout_secs);
		let idle = Duration::from_secs(self.config.limits.idle_timeout_secs);
		let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
		// No request head within the handshake timeout: the connection is closed (slowloris).
		builder.http1().timer(TokioTimer::new()).header_read_timeout(handshake).keep_alive(true);
		builder
			.http2()
			.timer(TokioTimer::new())
			.keep_alive_interval(Some(idle / 2))
			.keep_alive_timeout(handshake)
			.max_concurrent_streams(64);
		let tls = self.tls.clone();
		let limits =
			ConnectionLimits::new(self.config.limits.max_connections, self.config.limits.max_connections_per_ip);
		let me = self.clone();
		let watcher_source = graceful.clone();
		accept_loop(listener, limits, self.life.clone(), self.metrics.core.clone(), move |stream, peer, admission| {
			let agent = me.clone();
			let service = hyper::service::service_fn(move |req| {
				let agent = agent.clone();
				async move { Ok::<_, Infallible>(agent.handle(req).await) }
			});
			let builder = builder.clone();
			let watcher = watcher_source.watcher();
			let tls = tls.clone();
			async move {
				let _admission = admission;
				let result = match tls {
					None => {
						watcher
							.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned())
							.await
					},
					Some(acceptor) => {
						let stream = match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
							Ok(Ok(s)) => s,
							Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
							Err(_) => return tracing::debug!("TLS handshake timed out"),
						};
						watcher
							.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned())
							.await
					},
				};
				if let Err(e) = result {
					tracing::debug!(error = %e, "connection ended with an error");
				}
			}
			.instrument(tracing::info_span!("http", %peer))
		})
		.await;
		tracing::info!("shutting down: finishing in-flight requests");
		let grace = Duration::from_secs(self.config.service.http.shutdown_grace_secs);
		let graceful = Arc::try_unwrap(graceful).map_err(|_| ()).ok();
		if let Some(graceful) = graceful {
			if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
				tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
			}
		}
		self.life.tracker.close();
		let _ = tokio::time::timeout(grace, self.life.tracker.wait()).await;
		upkeep.finish().await;
		tracing::info!("stopped");
		Ok(())
	}

	/// Answers one request.
	pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
		self.metrics.requests.inc();
		let path = req.uri().path().to_string();
		match (req.method(), path.as_str()) {
			(&Method::GET, "/health") => full(StatusCode::OK, "text/plain", "ok\n"),
			(&Method::GET, "/metrics") => self.metrics_text(),
			(&Method::POST, protocol::TOKEN_PATH) => self.post_token(req).await,
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
				if p.starts_with(protocol::CONTENT_PATH)
					|| p.starts_with(protocol::SLICE_PATH)
					|| p == protocol::RECEIPTS_PATH
					|| p == protocol::TOKEN_PATH
					|| p == protocol::PUBLISH_PATH =>
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
		}
	}

	fn metrics_text(&self) -> Response<Body> {
		let (objects, bytes) = self.store().usage();
		self.metrics.cache_objects.set(objects as i64);
		self.metrics.cache_bytes.set(bytes as i64);
		self.metrics.core.unpaid_bytes.set(self.sessions.unpaid_bytes() as i64);
		self.metrics.core.sessions.set(self.sessions.entries().len() as i64);
		full(StatusCode::OK, "text/plain; version=0.0.4", self.metrics.core.encode())
	}

	/// `POST /token`: a capability signed by the session's key buys a bearer token.
	async fn post_token(&self, req: Request<Incoming>) -> Response<Body> {
		let body = match http_body_util::Limited::new(req.into_body(), MAX_SIGNED_BODY).collect().await {
			Ok(b) => b.to_bytes(),
			Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("capability body: {e}")),
		};
		let signed: SignedCapability = match serde_json::from_slice(&body) {
			Ok(s) => s,
			Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a signed capability: {e}")),
		};
		let now = unix_now();
		if let Err(e) = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).check(&signed.capability, now) {
			return error(StatusCode::FORBIDDEN, e.to_string());
		}
		let entry = match self.sessions.get(signed.capability.session_id).await {
			Ok(e) => e,
			Err(SessionRefusal::ChainUnavailable(m)) => return error(StatusCode::SERVICE_UNAVAILABLE, m),
			Err(e) => return error(StatusCode::FORBIDDEN, e.to_string()),
		};
		let key = entry.ledger().terms().client_key.clone();
		let capability = signed.capability;
		let valid =
			tokio::task::spawn_blocking(move || capability.verify(&key, &signed.signature)).await.unwrap_or(false);
		if !valid {
			return error(StatusCode::FORBIDDEN, "the capability is not signed by the session's key");
		}
		let mut token = [0u8; 32];
		if getrandom::fill(&mut token).is_err() {
			return error(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
		}
		if let Err(e) = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).grant(&capability, token, now) {
			return error(StatusCode::FORBIDDEN, e.to_string());
		}
		json(StatusCode::OK, &TokenGrant { token: hex::encode(token), expires_at: capability.expires_at })
	}

	/// The session a request pays from: its bearer token's, checked on-chain (the ledger
	/// refreshes as it needs). `Ok(None)`: no token.
	async fn session<B>(&self, req: &Request<B>) -> Result<Paid, Response<Body>> {
		let Some(value) = req.headers().get(header::AUTHORIZATION) else { return Ok(None) };
		let token = protocol::parse_bearer(value.as_bytes());
		let session_id =
			token.and_then(|t| self.tokens.lock().unwrap_or_else(|p| p.into_inner()).session(&t, unix_now()));
		let Some(session_id) = session_id else {
			return Err(error(
				StatusCode::UNAUTHORIZED,
				format!("unknown or expired token: get one at POST {}", protocol::TOKEN_PATH),
			));
		};
		match self.sessions.get(session_id).await {
			Ok(e) => Ok(Some(e)),
			Err(SessionRefusal::ChainUnavailable(m)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, m)),
			Err(e) => Err(error(StatusCode::FORBIDDEN, e.to_string())),
		}
	}

	fn status(&self, entry: &SessionEntry) -> SessionStatus {
		let now = self.sessions.now();
		let l = entry.ledger();
		let hold = l.allowance(now);
		SessionStatus {
			session_id: entry.id,
			served_bytes: l.served_bytes(),
			paid_bytes: l.latest().bytes,
			sequence: l.latest().sequence,
			amount_due: max_amount_owed(&l.terms().prices, l.served_bytes(), l.seconds(now))
				.unwrap_or(u128::MAX)
				.to_string(),
			allowance: hold.unwrap_or(0),
			deposit_exhausted: matches!(hold, Err(Hold::DepositExhausted)),
		}
	}

	fn payment_required(&self, entry: &SessionEntry) -> Response<Body> {
		self.metrics.payment_required.inc();
		let status = self.status(entry);
		let message = if status.deposit_exhausted {
			"the session's deposit is used up: top up the deposit, then send a receipt"
		} else {
			"send a receipt for the bytes served (POST /receipts) to continue"
		};
		json(StatusCode::PAYMENT_REQUIRED, &ErrorBody { error: message.into(), session: Some(status) })
	}

	async fn post_receipt(&self, req: Request<Incoming>) -> Response<Body> {
		let entry = match self.session(&req).await {
			Ok(Some(s)) => s,
			Ok(None) => {
				return error(
					StatusCode::UNAUTHORIZED,
					format!("a receipt needs the session's bearer token (POST {})", protocol::TOKEN_PATH),
				)
			},
			Err(r) => return r,
		};
		let body = match http_body_util::Limited::new(req.into_body(), MAX_SIGNED_BODY).collect().await {
			Ok(b) => b.to_bytes(),
			Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("receipt body: {e}")),
		};
		let signed: SignedUsageReceipt = match serde_json::from_slice(&body) {
			Ok(s) => s,
			Err(e) => {
				self.metrics.core.receipts_rejected.inc();
				return error(StatusCode::BAD_REQUEST, format!("not a signed receipt: {e}"));
			},
		};
		match self.receipts.accept(&entry, signed, 0, self.sessions.now()).await {
			Ok(_) => json(StatusCode::OK, &self.status(&entry)),
			Err(ReceiptRefusal::Invalid(e)) => {
				let status = match e {
					ReceiptError::NotNewer { .. } => StatusCode::CONFLICT,
					ReceiptError::ExceedsDeposit { .. } => StatusCode::PAYMENT_REQUIRED,
					_ => StatusCode::BAD_REQUEST,
				};
				error(status, e.to_string())
			},
			Err(e @ ReceiptRefusal::TooFast(_)) => error(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
			Err(e @ ReceiptRefusal::NotStored(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
		}
	}

	async fn publish(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
		let token = req
			.headers()
			.get(header::AUTHORIZATION)
			.and_then(|v| v.to_str().ok())
			.and_then(|v| v.strip_prefix("Bearer "))
			.map(str::to_owned);
		let authorised = token.is_some_and(|t| {
			self.config.service.publish.tokens.iter().any(|allowed| constant_time_eq(allowed.as_bytes(), t.as_bytes()))
		});
		if !authorised {
			// Read (and discard) a bounded part of the upload first, so that an ordinary client
			// sees the answer instead of a connection reset in the middle of its upload.
			let _ = http_body_util::Limited::new(req.into_body(), 16 << 20).collect().await;
			return error(StatusCode::UNAUTHORIZED, "publishing needs an authorised bearer token");
		}
		let pull =
			req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("url="))).map(percent_decode);
		let published = match pull {
			Some(url) => {
				self.fills.pull(&url, None).await.map_err(|e| (StatusCode::BAD_GATEWAY, format!("pulling {url}: {e}")))
			},
			None => self.fills.stage_and_commit(body_reader(req.into_body()), None).await.map_err(|e| match e {
				FetchError::Busy => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
				e if e.to_string().contains("exceeds") => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
				e => (StatusCode::BAD_REQUEST, e.to_string()),
			}),
		};
		match published {
			Ok(object) => {
				json(StatusCode::CREATED, &Published { hash: object.hash.to_hex().to_string(), size: object.size })
			},
			Err((status, message)) => error(status, message),
		}
	}

	/// The object, counted as a hit or a miss; filled from the origins if `fill`.
	async fn object(&self, hash: &ContentHash, fill: bool) -> Option<Object> {
		if let Some(o) = self.store().get(hash) {
			self.metrics.cache_hits.inc();
			return Some(o);
		}
		self.metrics.cache_misses.inc();
		if fill {
			self.fills.object(hash).await
		} else {
			None
		}
	}

	/// Checks the hash and the session; on success the object and the session (None: free
	/// or a `HEAD`). A `GET` needs a session unless the object is public; a `HEAD` is free
	/// and answers from the cache, unless it carries a session's token: then a miss is
	/// filled (a paying client learning an object's size), so strangers cannot make the
	/// agent fetch from its origins for nothing.
	async fn prepare(&self, req: &Request<Incoming>, hash: &str, head: bool) -> Result<(Object, Paid), Response<Body>> {
		let hash =
			parse_hash(hash).ok_or_else(|| error(StatusCode::BAD_REQUEST, "not a BLAKE3 hash (64 hex digits)"))?;
		let free = self.config.service.http.public.iter().any(|p| parse_hash(p) == Some(hash));
		let session = if free { None } else { self.session(req).await? };
		if !head && !free && session.is_none() {
			self.metrics.payment_required.inc();
			return Err(error(
				StatusCode::PAYMENT_REQUIRED,
				format!(
					"open a CDN session with provider {} on-chain, get a token at POST {} and send it as a bearer token",
					self.provider,
					protocol::TOKEN_PATH
				),
			));
		}
		let not_found = || error(StatusCode::NOT_FOUND, format!("no object {hash}"));
		if head {
			let object = self.object(&hash, session.is_some()).await.ok_or_else(not_found)?;
			return Ok((object, None));
		}
		// A session without credit gets no fill either.
		if let Some(s) = &session {
			if s.ledger().allowance(self.sessions.now()).is_err() {
				// A top-up or a settlement may have changed things: look again once.
				let _ = self.sessions.refresh(s).await;
				if s.ledger().allowance(self.sessions.now()).is_err() {
					return Err(self.payment_required(s));
				}
			}
		}
		let object = self.object(&hash, true).await.ok_or_else(not_found)?;
		Ok((object, session))
	}

	fn stream_slot(&self, session: &Paid) -> Result<Option<StreamSlot>, Response<Body>> {
		let Some(s) = session else { return Ok(None) };
		let limit = self.config.service.http.max_streams_per_session;
		let semaphore = self
			.streams
			.lock()
			.unwrap_or_else(|p| p.into_inner())
			.entry(s.id)
			.or_insert_with(|| Arc::new(Semaphore::new(limit)))
			.clone();
		match semaphore.try_acquire_owned() {
			Ok(permit) => Ok(Some(StreamSlot::new(s.clone(), permit))),
			Err(_) => {
				Err(error(StatusCode::TOO_MANY_REQUESTS, format!("at most {limit} paid responses at once per session")))
			},
		}
	}

	async fn get_content(&self, req: Request<Incoming>, hash: &str) -> Response<Body> {
		let head = req.method() == Method::HEAD;
		let (object, session) = match self.prepare(&req, hash, head).await {
			Ok(v) => v,
			Err(r) => return r,
		};
		let etag = format!("\"{}\"", object.hash.to_hex());
		let builder = Response::builder()
			.header(header::ETAG, &etag)
			.header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
			.header(header::ACCEPT_RANGES, "bytes")
			.header(header::CONTENT_TYPE, "application/octet-stream");
		if req
			.headers()
			.get(header::IF_NONE_MATCH)
			.and_then(|v| v.to_str().ok())
			.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
		{
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
		let slot = match self.stream_slot(&session) {
			Ok(s) => s,
			Err(r) => return r,
		};
		// Small objects, paid in one reservation: one frame.
		if object.size <= SMALL_OBJECT {
			let reserved = match &slot {
				None => Some(0),
				Some(s) => s.reserve_all(len, self.sessions.now()),
			};
			if let Some(reserved) = reserved {
				return match self.small_object(&object).await {
					Ok(bytes) => {
						if let Some(s) = &slot {
							s.release(reserved, len);
						}
						self.metrics.bytes_served.inc_by(len);
						let part = bytes.slice(first as usize..(first + len) as usize);
						builder.body(Full::new(part).map_err(|never| match never {}).boxed()).expect("valid")
					},
					Err(e) => {
						if let Some(s) = &slot {
							s.release(reserved, 0);
						}
						tracing::error!(hash = %object.hash, error = %e, "cannot read a cached object");
						error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the object")
					},
				};
			}
		}
		let path = object.path.clone();
		let reader = move || -> io::Result<Box<dyn Read + Send>> {
			let mut file = std::fs::File::open(&path)?;
			file.seek(SeekFrom::Start(first))?;
			Ok(Box::new(file.take(len)))
		};
		builder.body(self.metered(reader, slot)).expect("valid")
	}

	async fn get_slice(&self, req: Request<Incoming>, hash: &str) -> Response<Body> {
		let (object, session) = match self.prepare(&req, hash, false).await {
			Ok(v) => v,
			Err(r) => return r,
		};
		let query = req.uri().query().unwrap_or_default();
		let param = |name: &str| {
			query
				.split('&')
				.find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
				.and_then(|v| v.parse::<u64>().ok())
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
		let slot = match self.stream_slot(&session) {
			Ok(s) => s,
			Err(r) => return r,
		};
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
			.body(self.metered(reader, slot))
			.expect("valid")
	}

	fn metered(
		&self,
		open: impl FnOnce() -> io::Result<Box<dyn Read + Send>> + Send + 'static,
		slot: Option<StreamSlot>,
	) -> Body {
		metered_stream(
			open,
			slot,
			Duration::from_millis(self.config.service.http.payment_wait_ms),
			self.sessions_clock(),
			self.metrics.bytes_served.clone(),
		)
	}

	fn sessions_clock(&self) -> crate::metering::Clock {
		crate::metering::Clock::new(self.sessions.epoch())
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
