//! Starting and stopping real node processes.

use std::{
	fs,
	path::{Path, PathBuf},
	process::{Child, Command, Stdio},
	time::Duration,
};

use crate::{free_port, wait_for, Rpc};

/// Path of the node binary: `$INTERLATTICE_NODE`, else `$CARGO_TARGET_DIR/debug/...`, else
/// the default shared target directory. The test script builds it before the tests run.
pub fn node_binary() -> PathBuf {
	if let Some(p) = std::env::var_os("INTERLATTICE_NODE") {
		return p.into();
	}
	workspace_binary("interlattice-node")
}

/// Path of a binary of this workspace in `$CARGO_TARGET_DIR/debug` (else the default shared
/// target directory). The test script builds every binary before the tests run.
pub fn workspace_binary(name: &str) -> PathBuf {
	let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
		PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/interlattice/target")
	});
	let path = target.join("debug").join(name);
	assert!(
		path.exists(),
		"binary {} not found: build it first (scripts/test.sh does), or set INTERLATTICE_NODE",
		path.display()
	);
	path
}

/// How to start one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
	/// `--chain` value (`dev`, `local`, `testnet` or a file).
	pub chain: String,
	/// Validator name flag (`alice`, `bob`, …), if the node validates.
	pub validator: Option<&'static str>,
	/// Where the database and keystore live; survives restarts of the node.
	pub base_path: PathBuf,
	/// JSON-RPC port on 127.0.0.1.
	pub rpc_port: u16,
	/// libp2p port on 127.0.0.1.
	pub p2p_port: u16,
	/// 32-byte hex libp2p node key (random by default; fixed for a bootnode).
	pub node_key: Option<String>,
	/// Multiaddrs of bootnodes.
	pub bootnodes: Vec<String>,
	/// Prometheus port on 127.0.0.1; `None` disables the metrics endpoint.
	pub prometheus_port: Option<u16>,
	/// Further arguments.
	pub extra: Vec<String>,
}

impl NodeConfig {
	/// A config with fresh ports.
	pub fn new(chain: &str, base_path: &Path) -> Self {
		Self {
			chain: chain.into(),
			validator: None,
			base_path: base_path.to_path_buf(),
			rpc_port: free_port(),
			p2p_port: free_port(),
			node_key: Some(random_node_key()),
			bootnodes: Vec::new(),
			prometheus_port: None,
			extra: Vec::new(),
		}
	}

	fn args(&self) -> Vec<String> {
		let mut args = vec![
			"--chain".into(),
			self.chain.clone(),
			"--base-path".into(),
			self.base_path.display().to_string(),
			"--rpc-port".into(),
			self.rpc_port.to_string(),
			"--listen-addr".into(),
			format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port),
			"--no-telemetry".into(),
			"--no-mdns".into(),
			"--rpc-cors".into(),
			"all".into(),
		];
		match self.prometheus_port {
			Some(port) => args.extend(["--prometheus-port".into(), port.to_string()]),
			None => args.push("--no-prometheus".into()),
		}
		if let Some(v) = self.validator {
			args.push(format!("--{v}"));
		}
		if let Some(key) = &self.node_key {
			args.push("--node-key".into());
			args.push(key.clone());
		}
		for b in &self.bootnodes {
			args.push("--bootnodes".into());
			args.push(b.clone());
		}
		args.extend(self.extra.iter().cloned());
		args
	}
}

/// A fresh libp2p node key (32 random bytes, hex). Validators refuse to start without one.
pub fn random_node_key() -> String {
	use std::io::Read;
	let mut key = [0u8; 32];
	fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)).expect("/dev/urandom is readable");
	hex::encode(key)
}

/// A running node process, killed (SIGKILL, by PID) when dropped.
pub struct Node {
	pub config: NodeConfig,
	pub rpc: Rpc,
	child: Option<Child>,
	log: PathBuf,
}

impl Node {
	/// Starts the node and waits until its JSON-RPC answers.
	pub fn start(config: NodeConfig) -> Result<Self, String> {
		fs::create_dir_all(&config.base_path).map_err(|e| e.to_string())?;
		let log = config.base_path.join(format!(
			"node-{}.log",
			std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
		));
		let log_file = fs::File::create(&log).map_err(|e| e.to_string())?;
		let child = Command::new(node_binary())
			.args(config.args())
			.stdout(Stdio::from(log_file.try_clone().map_err(|e| e.to_string())?))
			.stderr(Stdio::from(log_file))
			.spawn()
			.map_err(|e| format!("cannot start the node: {e}"))?;
		let rpc = Rpc { port: config.rpc_port };
		let mut node = Node { config, rpc, child: Some(child), log };
		node.wait(Duration::from_secs(120), "JSON-RPC to answer", |n| n.rpc.best_number())?;
		Ok(node)
	}

	/// A single-validator development chain (`--chain dev`, Alice authoring) under `base_path`,
	/// started and past block 1: what most end-to-end tests run against.
	pub fn start_dev(base_path: &Path) -> Self {
		let mut config = NodeConfig::new("dev", base_path);
		config.validator = Some("alice");
		let mut node = Node::start(config).expect("dev node starts");
		node.wait(Duration::from_secs(60), "block 1", |n| n.rpc.best_number().filter(|&b| b >= 1)).unwrap();
		node
	}

	/// Waits for `check`; on time-out the error carries the tail of the node's log.
	pub fn wait<T>(
		&mut self,
		timeout: Duration,
		what: &str,
		mut check: impl FnMut(&Self) -> Option<T>,
	) -> Result<T, String> {
		let result = {
			let this = &*self;
			let r = wait_for(timeout, what, || {
				if this.has_exited() {
					return Some(None);
				}
				check(this).map(Some)
			});
			match r {
				Ok(Some(v)) => Ok(v),
				Ok(None) => Err(format!("the node exited while waiting for {what}")),
				Err(e) => Err(e),
			}
		};
		result.map_err(|e| format!("{e}\n--- node log tail ---\n{}", self.log_tail(40)))
	}

	fn has_exited(&self) -> bool {
		// `try_wait` needs `&mut`; a zero-signal probe tells whether the PID still lives.
		self.child.as_ref().is_none_or(|c| !Path::new(&format!("/proc/{}", c.id())).exists())
	}

	/// The last `lines` lines of the node's log.
	pub fn log_tail(&self, lines: usize) -> String {
		let text = fs::read_to_string(&self.log).unwrap_or_default();
		let all: Vec<&str> = text.lines().collect();
		all[all.len().saturating_sub(lines)..].join("\n")
	}

	/// Kills the process with SIGKILL (no chance to flush anything) and reaps it.
	pub fn kill(&mut self) {
		if let Some(mut child) = self.child.take() {
			let _ = child.kill();
			let _ = child.wait();
		}
	}

	/// Stops the process with SIGTERM and waits for it to exit (up to 30 s, then SIGKILL).
	pub fn stop(&mut self) {
		if let Some(mut child) = self.child.take() {
			let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
			for _ in 0..120 {
				if let Ok(Some(_)) = child.try_wait() {
					return;
				}
				std::thread::sleep(Duration::from_millis(250));
			}
			let _ = child.kill();
			let _ = child.wait();
		}
	}

	/// Starts the same node again, on the same base path and ports.
	pub fn restart(mut self) -> Result<Self, String> {
		self.kill();
		let config = self.config.clone();
		drop(self);
		Node::start(config)
	}

	/// The libp2p multiaddr other nodes can dial, given this node's peer id.
	pub fn multiaddr(&self, peer_id: &str) -> String {
		format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", self.config.p2p_port)
	}
}

impl Drop for Node {
	fn drop(&mut self) {
		self.kill();
	}
}

/// The peer id of a 32-byte hex node key, as the node itself computes it.
pub fn peer_id_of(node_key_hex: &str, dir: &Path) -> Result<String, String> {
	let file = dir.join("node-key");
	fs::write(&file, node_key_hex).map_err(|e| e.to_string())?;
	let out = Command::new(node_binary())
		.args(["key", "inspect-node-key", "--file"])
		.arg(&file)
		.output()
		.map_err(|e| e.to_string())?;
	if !out.status.success() {
		return Err(String::from_utf8_lossy(&out.stderr).into_owned());
	}
	Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
