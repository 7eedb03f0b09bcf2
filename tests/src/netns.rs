//! Network namespaces as hosts (tests run as root; see ../shared/NETWORK-TESTS.md): veth
//! links between them, sockets bound inside them, and relays that make the dev node's
//! JSON-RPC on the root namespace's loopback reachable on a namespace's loopback. Every
//! namespace is deleted when its guard drops, also when a test fails.

use std::{
	fs::File,
	io::{Read, Write},
	net::{Shutdown, TcpListener, TcpStream},
	os::fd::AsRawFd,
	process::Command,
	sync::atomic::{AtomicU32, Ordering},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails the calling test with a clear message unless it runs as root (`needs`: what for).
pub fn require_root(needs: &str) {
	// SAFETY: geteuid has no preconditions and cannot fail.
	let euid = unsafe { libc::geteuid() };
	assert!(euid == 0, "this test needs root ({needs}): run the suite as root, e.g. `sudo -E scripts/test.sh`");
}

/// A network namespace, deleted on drop.
pub struct Netns {
	/// Its name (unique per test process and call).
	pub name: String,
}

impl Netns {
	/// Creates a namespace `il<pid>-<n>-<tag>` with loopback up. The tests that use it (and
	/// TUN interfaces, nftables) need root: without it they fail at once, saying so.
	pub fn new(tag: &str) -> Netns {
		require_root("network namespaces, TUN interfaces and nftables");
		let name = format!("il{}-{}-{tag}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
		ip(&["netns", "add", &name]);
		let ns = Netns { name };
		ns.ip(&["link", "set", "lo", "up"]);
		ns
	}

	/// Runs `ip ARGS` inside the namespace; panics on failure.
	pub fn ip(&self, args: &[&str]) -> String {
		ip(&[&["-n", &self.name], args].concat())
	}

	/// A command that runs `program` inside the namespace.
	pub fn command(&self, program: &str) -> Command {
		let mut c = Command::new("ip");
		c.args(["netns", "exec", &self.name, program]);
		c
	}

	/// Runs `f` on a thread that entered the namespace (sockets it creates stay there).
	pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
		let path = format!("/var/run/netns/{}", self.name);
		std::thread::spawn(move || {
			let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
			// SAFETY: a valid namespace file descriptor; only this short-lived thread moves.
			let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
			assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
			f()
		})
		.join()
		.expect("the namespace thread does not panic")
	}

	/// A TCP listener on `addr` inside the namespace.
	pub fn bind(&self, addr: &str) -> TcpListener {
		let addr = addr.to_string();
		self.enter(move || TcpListener::bind(&addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")))
	}

	/// Makes `127.0.0.1:port` inside the namespace reach `127.0.0.1:port` of the root
	/// namespace (the dev node's RPC), relaying every connection.
	pub fn relay_loopback(&self, port: u16) {
		let listener = self.bind(&format!("127.0.0.1:{port}"));
		std::thread::spawn(move || {
			for inside in listener.incoming().flatten() {
				let Ok(outside) = TcpStream::connect(("127.0.0.1", port)) else { continue };
				pipe(inside, outside);
			}
		});
	}
}

impl Drop for Netns {
	fn drop(&mut self) {
		let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
	}
}

fn pipe(a: TcpStream, b: TcpStream) {
	let (mut a_read, mut b_write) = (a.try_clone().unwrap(), b.try_clone().unwrap());
	let (mut b_read, mut a_write) = (b, a);
	std::thread::spawn(move || {
		let _ = std::io::copy(&mut a_read, &mut b_write);
		let _ = b_write.shutdown(Shutdown::Both);
		let _ = a_read.shutdown(Shutdown::Both);
	});
	std::thread::spawn(move || {
		let _ = std::io::copy(&mut b_read, &mut a_write);
		let _ = a_write.shutdown(Shutdown::Both);
		let _ = b_read.shutdown(Shutdown::Both);
	});
}

/// Runs `ip ARGS` in the root namespace; panics with its error output on failure.
pub fn ip(args: &[&str]) -> String {
	let out = Command::new("ip").args(args).output().expect("iproute2 is installed (scripts/setup.sh)");
	assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
	String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Links `a` and `b` with a veth pair: `a_if` with `a_addr` (CIDR) in `a`, `b_if` with
/// `b_addr` in `b`.
pub fn link(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
	a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
	a.ip(&["addr", "add", a_addr, "dev", a_if]);
	a.ip(&["link", "set", a_if, "up"]);
	b.ip(&["addr", "add", b_addr, "dev", b_if]);
	b.ip(&["link", "set", b_if, "up"]);
}

/// A minimal HTTP/1.1 server on `listener` serving `body` at every path, recording each
/// client's address (to check NAT).
pub fn serve_file(listener: TcpListener, body: Vec<u8>) -> std::sync::Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>> {
	let peers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
	let seen = peers.clone();
	let body = std::sync::Arc::new(body);
	std::thread::spawn(move || {
		for stream in listener.incoming().flatten() {
			if let Ok(peer) = stream.peer_addr() {
				seen.lock().unwrap().push(peer);
			}
			let body = body.clone();
			std::thread::spawn(move || {
				let mut stream = stream;
				let mut request = Vec::new();
				let mut buf = [0u8; 1024];
				while !request.windows(4).any(|w| w == b"\r\n\r\n") {
					match stream.read(&mut buf) {
						Ok(0) | Err(_) => return,
						Ok(n) => request.extend_from_slice(&buf[..n]),
					}
				}
				let _ =
					write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
				let _ = stream.write_all(&body);
			});
		}
	});
	peers
}
