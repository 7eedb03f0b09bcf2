//! Helpers for the end-to-end tests: start the real `interlattice-node` binary on loopback,
//! talk to it over JSON-RPC (plain HTTP, so malformed requests can be sent too), build and
//! sign extrinsics with the runtime's own types, and read storage.
//!
//! Every process a test starts is owned by a [`Node`] and killed by PID when it is dropped,
//! also when the test fails. Logs go to a file in the node's base path and their tail is
//! printed when a wait times out.

pub mod chain;
pub mod netns;
pub mod node;
pub mod origin;
pub mod reference;
pub mod rpc;
pub mod spec;
pub mod throughput;

pub use node::{Node, NodeConfig};
pub use rpc::{Rpc, RpcError};

use std::time::{Duration, Instant};

/// Polls `check` every 250 ms until it returns `Some`, or fails after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T, String> {
	let start = Instant::now();
	loop {
		if let Some(v) = check() {
			return Ok(v);
		}
		if start.elapsed() > timeout {
			return Err(format!("timed out after {timeout:?} waiting for {what}"));
		}
		std::thread::sleep(Duration::from_millis(250));
	}
}

/// A free TCP port on 127.0.0.1 (bound once and released; good enough for tests that start a
/// handful of processes).
pub fn free_port() -> u16 {
	std::net::TcpListener::bind("127.0.0.1:0")
		.and_then(|l| l.local_addr())
		.map(|a| a.port())
		.expect("the OS hands out an ephemeral port")
}

/// The Prometheus exposition served at `http://127.0.0.1:port/metrics`.
pub fn prometheus_text(port: u16) -> Option<String> {
	use std::io::{Read, Write};
	let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
	s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
	let mut body = String::new();
	s.read_to_string(&mut body).ok()?;
	Some(body)
}

/// The value of metric `name` at `http://127.0.0.1:port/metrics` (its first series, whatever
/// its labels).
pub fn prometheus_value(port: u16, name: &str) -> Option<f64> {
	prometheus_text(port)?.lines().find_map(|l| {
		let rest = l.strip_prefix(name)?;
		if !(rest.starts_with(' ') || rest.starts_with('{')) {
			return None;
		}
		rest.split_whitespace().last()?.parse().ok()
	})
}

/// The number after flag `name` on the command line (`--runs 30`), else `default`. For the
/// benchmark examples.
pub fn number_arg(name: &str, default: usize) -> usize {
	let args: Vec<String> = std::env::args().collect();
	args.iter()
		.position(|a| a == name)
		.and_then(|i| args.get(i + 1))
		.map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
		.unwrap_or(default)
}

/// `len` deterministic pseudo-random bytes (xorshift32 seeded by `seed`): test content that
/// compresses badly and differs per seed.
pub fn pseudo_random_bytes(len: usize, seed: u8) -> Vec<u8> {
	let mut x = seed as u32 | 1;
	(0..len)
		.map(|_| {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			x as u8
		})
		.collect()
}
