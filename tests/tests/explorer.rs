//! The explorer page (`explorer/`, docs/explorer.md) in a real browser: Debian's headless
//! Chromium, driven by `puppeteer-core` (pinned in `tests/js/package-lock.json`, installed by
//! `scripts/setup.sh`), opens the page served by `explorer/serve.mjs` against a dev node.
//! `tests/js/explorer-check.mjs` reads the node's JSON-RPC itself and checks that the page's
//! provider total and rows are `registry_providers`' answer, that the world map is drawn and
//! shaded, that a country filter (DE) narrows the list to that country, that a provider
//! registered meanwhile (JP, signed with `@polkadot/api`) appears and the total goes up by one
//! without a reload (through `registry_subscribeProviders`), with the markup a hostile provider
//! put in its region shown as text and never run, and that a session opened meanwhile
//! shows among the client's sessions with its deposit, settled amount and state. The
//! screenshot it takes is kept as a test artifact: `$INTERLATTICE_ARTIFACTS/explorer.png`, else
//! `<target dir>/artifacts/explorer.png`.

use std::{
	fs,
	io::{self, BufRead, BufReader},
	path::{Path, PathBuf},
	process::{Child, Command, Stdio},
	sync::mpsc,
	time::Duration,
};

use interlattice_tests::Node;

/// Chromium's window in the check (`defaultViewport`): the screenshot's width.
const VIEWPORT_WIDTH: u32 = 1440;

fn repo_dir(name: &str) -> PathBuf {
	Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// `tests/js`, with puppeteer-core and @polkadot/api installed.
fn node_js() -> PathBuf {
	let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
	for package in ["puppeteer-core", "@polkadot/api"] {
		assert!(
			root.join("node_modules").join(package).exists(),
			"{package} is not installed in {}: run scripts/setup.sh",
			root.display()
		);
	}
	root
}

/// Where the screenshot is kept: `$INTERLATTICE_ARTIFACTS`, else `artifacts/` in the target
/// directory (`$CARGO_TARGET_DIR`, else the shared one scripts/env.sh names).
fn artifact(name: &str) -> PathBuf {
	let dir = match std::env::var_os("INTERLATTICE_ARTIFACTS") {
		Some(dir) => PathBuf::from(dir),
		None => std::env::var_os("CARGO_TARGET_DIR")
			.map(PathBuf::from)
			.unwrap_or_else(|| {
				PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/interlattice/target")
			})
			.join("artifacts"),
	};
	std::path::absolute(dir.join(name)).expect("the artifact path can be made absolute")
}

/// `node explorer/serve.mjs` on a port the system chose; killed (by PID) when dropped.
struct Explorer {
	child: Child,
	log: PathBuf,
	url: String,
}

impl Explorer {
	/// Starts the server; its first line on stdout, `explorer: http://127.0.0.1:PORT/`, says
	/// where it listens.
	fn start(dir: &Path) -> Self {
		let root = repo_dir("explorer");
		assert!(
			root.join("node_modules/world-atlas").exists(),
			"the explorer's npm packages are not installed in {}: run scripts/setup.sh",
			root.display()
		);
		let log = dir.join("explorer.log");
		let mut child = Command::new("node")
			.arg(root.join("serve.mjs"))
			.args(["--port", "0", "--host", "127.0.0.1"])
			.stdout(Stdio::piped())
			.stderr(Stdio::from(fs::File::create(&log).unwrap()))
			.spawn()
			.expect("node (Node.js) runs: scripts/setup.sh installs it");
		let stdout = child.stdout.take().expect("stdout is piped");
		let (tx, rx) = mpsc::channel();
		std::thread::spawn(move || {
			let mut reader = BufReader::new(stdout);
			let mut line = String::new();
			let _ = reader.read_line(&mut line);
			let _ = tx.send(line);
			// Whatever else it prints must not fill the pipe.
			let _ = io::copy(&mut reader, &mut io::sink());
		});
		let mut explorer = Explorer { child, log, url: String::new() };
		let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
		match line.trim().strip_prefix("explorer: ") {
			Some(url) if url.starts_with("http://127.0.0.1:") && url.ends_with('/') => explorer.url = url.to_string(),
			_ => {
				explorer.kill();
				panic!(
					"explorer/serve.mjs did not say where it listens (first line {line:?}); its stderr:\n{}",
					explorer.stderr()
				);
			},
		}
		explorer
	}

	fn stderr(&self) -> String {
		fs::read_to_string(&self.log).unwrap_or_default()
	}

	fn kill(&mut self) {
		let _ = self.child.kill();
		let _ = self.child.wait();
	}
}

impl Drop for Explorer {
	fn drop(&mut self) {
		self.kill();
	}
}

#[test]
fn explorer_page_lists_filters_and_follows_the_registry_in_chromium() {
	let js = node_js();
	let chromium = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
	assert!(chromium.exists(), "{} not found: install Debian's chromium (or set CHROMIUM)", chromium.display());
	let dir = tempfile::tempdir().unwrap();
	let node = Node::start_dev(&dir.path().join("node"));
	let explorer = Explorer::start(dir.path());
	let ws = format!("ws://127.0.0.1:{}", node.rpc.port);
	let page = format!("{}?rpc={ws}", explorer.url);
	let screenshot = artifact("explorer.png");
	let _ = fs::remove_file(&screenshot);

	let out = Command::new("node")
		.arg(js.join("explorer-check.mjs"))
		.arg(&page)
		.arg(&ws)
		.arg(&screenshot)
		.env("CHROMIUM", &chromium)
		.current_dir(&js)
		.output()
		.expect("node (Node.js) runs: scripts/setup.sh installs it");
	let stdout = String::from_utf8_lossy(&out.stdout);
	let stderr = String::from_utf8_lossy(&out.stderr);
	eprintln!("{stdout}");
	assert!(
		out.status.success(),
		"the explorer check failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- explorer/serve.mjs ---\n{}",
		out.status,
		explorer.stderr()
	);
	let said = format!("screenshot: {}", screenshot.display());
	assert!(stdout.lines().any(|l| l == said), "the check did not say `{said}`:\n{stdout}");

	// The screenshot: a PNG of the whole page, at the window's width and at least its height.
	let png = fs::read(&screenshot).unwrap_or_else(|e| panic!("{}: {e}", screenshot.display()));
	assert_eq!(png.get(..8), Some(&b"\x89PNG\r\n\x1a\n"[..]), "{} is not a PNG", screenshot.display());
	assert_eq!(png.get(12..16), Some(&b"IHDR"[..]), "{}: no IHDR chunk first", screenshot.display());
	let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
	let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
	assert_eq!(width, VIEWPORT_WIDTH, "screenshot width");
	assert!(height >= 800, "the screenshot is {width}×{height}: the whole page is taller");
	assert!(png.len() > 50_000, "the screenshot is {} bytes: too small to show the map and the lists", png.len());
	eprintln!("screenshot kept: {} ({width}×{height}, {} bytes)", screenshot.display(), png.len());
}
