//! The accept loop every agent runs: connection limits (everyone together and per IP
//! address), back-off when accepting fails (out of file descriptors), one tracked task per
//! connection, and a stop when the agent stops. A connection over a limit is closed at once,
//! before the agent reads a byte of it.

use std::{
	collections::HashMap,
	future::Future,
	net::{IpAddr, SocketAddr},
	sync::{Arc, Mutex},
	time::Duration,
};

use tokio::{
	net::{TcpListener, TcpStream},
	sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::{lifecycle::Lifecycle, metrics::Metrics};

/// How many connections may be open, in all and from one address.
#[derive(Clone)]
pub struct ConnectionLimits {
	all: Arc<Semaphore>,
	per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
	max_per_ip: usize,
}

/// An admitted connection's place; given back when dropped.
pub struct Admission {
	_all: OwnedSemaphorePermit,
	ip: IpAddr,
	per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Admission {
	fn drop(&mut self) {
		let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
		if let Some(n) = per_ip.get_mut(&self.ip) {
			*n -= 1;
			if *n == 0 {
				per_ip.remove(&self.ip);
			}
		}
	}
}

impl ConnectionLimits {
	/// At most `max` connections, `max_per_ip` of them from one address.
	pub fn new(max: usize, max_per_ip: usize) -> Self {
		ConnectionLimits { all: Arc::new(Semaphore::new(max)), per_ip: Default::default(), max_per_ip }
	}

	/// A place for a connection from `ip`, if the limits allow one now.
	pub fn admit(&self, ip: IpAddr) -> Option<Admission> {
		let all = self.all.clone().try_acquire_owned().ok()?;
		let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
		let n = per_ip.entry(ip).or_default();
		if *n >= self.max_per_ip {
			return None;
		}
		*n += 1;
		Some(Admission { _all: all, ip, per_ip: self.per_ip.clone() })
	}

	/// Connections open now from `ip`.
	pub fn from(&self, ip: IpAddr) -> usize {
		self.per_ip.lock().unwrap_or_else(|p| p.into_inner()).get(&ip).copied().unwrap_or(0)
	}
}

/// Accepts connections on `listener` until the agent stops, admitting each within `limits`
/// and running `serve` for it on a tracked task.
pub async fn accept_loop<F, Fut>(
	listener: TcpListener,
	limits: ConnectionLimits,
	life: Lifecycle,
	metrics: Metrics,
	serve: F,
) where
	F: Fn(TcpStream, SocketAddr, Admission) -> Fut + Send + Sync + 'static,
	Fut: Future<Output = ()> + Send + 'static,
{
	let mut backoff = Duration::from_millis(10);
	loop {
		let accepted = tokio::select! {
			a = listener.accept() => a,
			_ = life.token.cancelled() => return,
		};
		let (stream, peer) = match accepted {
			Ok(a) => {
				backoff = Duration::from_millis(10);
				a
			},
			Err(e) => {
				// Out of file descriptors and the like: wait, then try again.
				tracing::warn!(error = %e, ?backoff, "accept failed");
				tokio::select! {
					_ = tokio::time::sleep(backoff) => {},
					_ = life.token.cancelled() => return,
				}
				backoff = (backoff * 2).min(Duration::from_secs(1));
				continue;
			},
		};
		let Some(admission) = limits.admit(peer.ip()) else {
			metrics.connections_refused.inc();
			tracing::debug!(%peer, "connection refused: limits");
			drop(stream);
			continue;
		};
		let _ = stream.set_nodelay(true);
		let connections = metrics.connections.clone();
		connections.inc();
		let task = serve(stream, peer, admission);
		life.spawn(async move {
			task.await;
			connections.dec();
		});
	}
}

#[cfg(test)]
mod tests {
	use super::*;

	#[test]
	fn limits_hold_in_all_and_per_address_and_come_back() {
		let limits = ConnectionLimits::new(3, 2);
		let a: IpAddr = "192.0.2.1".parse().unwrap();
		let b: IpAddr = "192.0.2.2".parse().unwrap();
		let first = limits.admit(a).unwrap();
		let _second = limits.admit(a).unwrap();
		assert!(limits.admit(a).is_none(), "two per address");
		let _third = limits.admit(b).unwrap();
		assert!(limits.admit(b).is_none(), "three in all");
		drop(first);
		assert_eq!(limits.from(a), 1);
		let _fourth = limits.admit(b).expect("a place came back");
		assert!(limits.admit(b).is_none() && limits.admit(a).is_none());
	}
}
