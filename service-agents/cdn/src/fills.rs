//! Getting objects into the cache from the origins, once: a fill per object however many
//! requests want it at once (the others wait for it and read the cache), a bounded number of
//! fills at a time, and every fill's staged bytes reserved against the cache's bound first, so
//! that fills and uploads can never fill the disk.

use std::{
	collections::HashMap,
	io::{self, Read},
	sync::{Arc, Mutex},
	time::Duration,
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use prometheus::IntCounter;
use tokio::sync::{mpsc, Semaphore};

use crate::content::{stage, ContentError, ContentHash, ContentStore, Object, Staged};

/// Why a fill or an upload gave nothing.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
	/// The bytes do not hash to the name.
	#[error("{0}")]
	Mismatch(String),
	/// Too much is being staged already.
	#[error("too many objects are being fetched or uploaded at once; try again")]
	Busy,
	/// Anything else.
	#[error("{0}")]
	Failed(String),
}

/// Reads a channel of byte chunks as a blocking `Read` (for hashing request and origin
/// bodies on a blocking thread).
pub struct ChannelReader {
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

/// Feeds an incoming body into a channel; returns the receiving end as a `Read`. The feeding
/// task ends with the body.
pub fn body_reader<B>(body: B) -> ChannelReader
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

/// Counters of fills.
#[derive(Clone)]
pub struct FillMetrics {
	/// Origin responses refused because their bytes do not match the hash.
	pub mismatches: IntCounter,
	/// Fills that failed otherwise.
	pub failures: IntCounter,
}

/// The fills of one agent.
pub struct Fills {
	content: Arc<Mutex<ContentStore>>,
	origin: Client<HttpConnector, http_body_util::Empty<Bytes>>,
	urls: Vec<String>,
	running: Semaphore,
	/// Bytes one staging may reserve: the bound shared by the fills that may run at once.
	slice: u64,
	in_flight: Mutex<HashMap<ContentHash, Arc<tokio::sync::Mutex<()>>>>,
	metrics: FillMetrics,
}

impl Fills {
	/// Fills into `content` from `urls` (templates with `{hash}`), at most `max_running` at
	/// once.
	pub fn new(content: Arc<Mutex<ContentStore>>, urls: Vec<String>, max_running: usize, metrics: FillMetrics) -> Self {
		let max_bytes = content.lock().unwrap_or_else(|p| p.into_inner()).max_bytes();
		Fills {
			content,
			origin: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
			urls,
			running: Semaphore::new(max_running.max(1)),
			slice: max_bytes / max_running.max(1) as u64,
			in_flight: Mutex::new(HashMap::new()),
			metrics,
		}
	}

	fn store(&self) -> std::sync::MutexGuard<'_, ContentStore> {
		self.content.lock().unwrap_or_else(|p| p.into_inner())
	}

	/// Stages what `reader` yields (checked against `expected` if given) within a staging
	/// reservation, and caches it.
	pub async fn stage_and_commit(
		&self,
		reader: ChannelReader,
		expected: Option<ContentHash>,
	) -> Result<Object, FetchError> {
		let _running = self.running.acquire().await.map_err(|_| FetchError::Busy)?;
		let reserved = self
			.store()
			.begin_staging(self.slice)
			.map_err(|e| FetchError::Failed(e.to_string()))?
			.ok_or(FetchError::Busy)?;
		let tmp = self.store().tmp_dir();
		// The staged object plus its outboard (~1/16 more) must fit the reservation.
		let limit = reserved - reserved / 16;
		let staged: Result<Staged, ContentError> =
			tokio::task::spawn_blocking(move || stage(&tmp, reader, expected, limit))
				.await
				.unwrap_or_else(|e| Err(ContentError::Source(io::Error::other(e.to_string()))));
		let committed = staged.and_then(|s| self.store().commit(s));
		self.store().end_staging(reserved);
		match committed {
			Ok(o) => Ok(o),
			Err(e @ ContentError::HashMismatch { .. }) => Err(FetchError::Mismatch(e.to_string())),
			Err(e) => Err(FetchError::Failed(e.to_string())),
		}
	}

	/// GETs `url` and caches the body (checked against `expected` if given).
	pub async fn pull(&self, url: &str, expected: Option<ContentHash>) -> Result<Object, FetchError> {
		let uri: hyper::Uri = url.parse().map_err(|e| FetchError::Failed(format!("bad URL: {e}")))?;
		let response = tokio::time::timeout(Duration::from_secs(30), self.origin.get(uri))
			.await
			.map_err(|_| FetchError::Failed("no answer within 30 s".to_string()))?
			.map_err(|e| FetchError::Failed(e.to_string()))?;
		if !response.status().is_success() {
			return Err(FetchError::Failed(format!("answered {}", response.status())));
		}
		self.stage_and_commit(body_reader(response.into_body()), expected).await
	}

	/// The object, from the cache, or filled from the origins (once, whoever else asks).
	pub async fn object(&self, hash: &ContentHash) -> Option<Object> {
		if let Some(o) = self.store().get(hash) {
			return Some(o);
		}
		if self.urls.is_empty() {
			return None;
		}
		let turn = self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).entry(*hash).or_default().clone();
		let filled = {
			let _one = turn.lock().await;
			// Someone else's fill may have finished while we waited.
			let cached = self.store().get(hash);
			match cached {
				Some(o) => Some(o),
				None => self.fill(hash).await,
			}
		};
		let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
		if Arc::strong_count(&turn) == 2 {
			in_flight.remove(hash);
		}
		filled
	}

	async fn fill(&self, hash: &ContentHash) -> Option<Object> {
		for template in &self.urls {
			let url = template.replace("{hash}", hash.to_hex().as_str());
			match self.pull(&url, Some(*hash)).await {
				Ok(o) => return Some(o),
				Err(FetchError::Mismatch(e)) => {
					self.metrics.mismatches.inc();
					tracing::warn!(%url, error = %e, "the origin served wrong content; not cached");
				},
				Err(e) => {
					self.metrics.failures.inc();
					tracing::info!(%url, error = %e, "origin fill failed");
				},
			}
		}
		None
	}
}
