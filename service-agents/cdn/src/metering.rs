//! Paid response bodies: read chunk by chunk off the async threads, and for each chunk the
//! bytes are **reserved** in the session's ledger before they are sent and settled with what
//! was sent: however many of a session's responses stream at once, together they never go
//! past the session's credit. When the credit is used up the stream waits for a receipt (up to
//! the payment wait), then is cut. Plus the in-memory copies of small objects.

use std::{
	collections::HashMap,
	io::{self, Read},
	sync::Arc,
	time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use interlattice_agent_core::{sessions::SessionEntry, Hold};
use prometheus::IntCounter;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::{agent::Body, content::ContentHash};

/// Chunk size of paid streams.
pub const CHUNK: usize = 256 * 1024;
/// Bytes of small objects kept in memory.
const HOT_BYTES: usize = 64 << 20;

/// The ledgers' clock: `now` as the session book counts it.
#[derive(Clone, Copy)]
pub struct Clock {
	epoch: Instant,
}

impl Clock {
	/// A clock counting from `epoch` (the session book's).
	pub fn new(epoch: Instant) -> Self {
		Clock { epoch }
	}

	/// Now.
	pub fn now(&self) -> Duration {
		self.epoch.elapsed()
	}
}

/// A paid response's place among its session's streams, and its reservations.
pub struct StreamSlot {
	entry: Arc<SessionEntry>,
	_permit: OwnedSemaphorePermit,
}

impl StreamSlot {
	/// A slot of `entry`'s session (the permit is one of its stream places).
	pub fn new(entry: Arc<SessionEntry>, permit: OwnedSemaphorePermit) -> Self {
		StreamSlot { entry, _permit: permit }
	}

	/// Reserves up to `wanted` bytes.
	pub fn reserve(&self, wanted: u64, now: Duration) -> Result<u64, Hold> {
		self.entry.ledger().reserve(wanted, now)
	}

	/// Reserves exactly `len` bytes, or nothing.
	pub fn reserve_all(&self, len: u64, now: Duration) -> Option<u64> {
		let mut ledger = self.entry.ledger();
		match ledger.reserve(len, now) {
			Ok(granted) if granted == len => Some(len),
			Ok(granted) => {
				ledger.release(granted, 0);
				None
			},
			Err(_) => None,
		}
	}

	/// Ends a reservation of `reserved` bytes of which `sent` were sent.
	pub fn release(&self, reserved: u64, sent: u64) {
		self.entry.ledger().release(reserved, sent);
	}
}

/// Streams what `open` reads, chunk by chunk, each chunk reserved against the session's
/// credit (`slot`; none for free objects) before it is sent; waits up to `wait` for a receipt
/// when the credit is used up, then cuts the response.
pub fn metered_stream(
	open: impl FnOnce() -> io::Result<Box<dyn Read + Send>> + Send + 'static,
	slot: Option<StreamSlot>,
	wait: Duration,
	clock: Clock,
	served: IntCounter,
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
				let granted = match &slot {
					None => chunk.len() as u64,
					Some(s) => match reserve_or_wait(s, chunk.len() as u64, wait, clock).await {
						Some(n) => n,
						None => {
							tracing::info!(
								session = s.entry.id,
								"no receipt within the payment wait; cutting the response"
							);
							let _ = frames_tx.send(Err(io::Error::other("payment required"))).await;
							return;
						},
					},
				};
				let part = chunk.split_to(granted as usize);
				let sent = frames_tx.send(Ok(Frame::data(part))).await.is_ok();
				if let Some(s) = &slot {
					s.release(granted, if sent { granted } else { 0 });
				}
				if !sent {
					return;
				}
				served.inc_by(granted);
			}
		}
	});
	let stream = futures::stream::unfold(frames, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
	BodyExt::boxed(StreamBody::new(stream))
}

/// Reserves up to `wanted` bytes, waiting up to `wait` for a receipt to move the credit.
async fn reserve_or_wait(slot: &StreamSlot, wanted: u64, wait: Duration, clock: Clock) -> Option<u64> {
	let deadline = tokio::time::Instant::now() + wait;
	loop {
		let notified = slot.entry.paid.notified();
		tokio::pin!(notified);
		notified.as_mut().enable();
		match slot.reserve(wanted, clock.now()) {
			Ok(n) => return Some(n),
			Err(Hold::Ended) => return None,
			Err(_) => {},
		}
		if tokio::time::timeout_at(deadline, notified).await.is_err() {
			return None;
		}
	}
}

/// Small objects kept in memory (they are immutable, so this can never serve stale bytes),
/// oldest dropped first beyond 64 MiB.
#[derive(Default)]
pub struct HotObjects {
	objects: HashMap<ContentHash, Bytes>,
	order: std::collections::VecDeque<ContentHash>,
	bytes: usize,
}

impl HotObjects {
	/// The object's bytes, if kept.
	pub fn get(&self, hash: &ContentHash) -> Option<Bytes> {
		self.objects.get(hash).cloned()
	}

	/// Keeps `bytes` of `hash`.
	pub fn insert(&mut self, hash: ContentHash, bytes: Bytes) {
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
