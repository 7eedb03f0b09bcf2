//! The README's first command and its walkthrough, end to end: `scripts/run-dev.sh` runs in a
//! network namespace of its own (so its fixed ports and the dVPN agent's TUN interface and
//! NAT table touch nothing else), the README's walkthrough block runs verbatim against it,
//! Ctrl-C (SIGINT) stops everything cleanly, and a second run resumes the same chain.

use std::{
	path::{Path, PathBuf},
	process::{Child, Command, Stdio},
	time::Duration,
};

use interlattice_tests::{netns::Netns, wait_for};

fn root() -> PathBuf {
	Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The walkthrough block of the README.
fn walkthrough() -> String {
	let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
	let block = readme
		.split("<!-- walkthrough:begin -->")
		.nth(1)
		.and_then(|rest| rest.split("<!-- walkthrough:end -->").next())
		.expect("the README has a walkthrough block");
	block.trim().trim_start_matches("```sh").trim_end_matches("```").to_string()
}

struct RunDev {
	child: Child,
	log: PathBuf,
}

impl RunDev {
	fn start(ns: &Netns, data: &Path, log: PathBuf) -> RunDev {
		let file = std::fs::File::create(&log).unwrap();
		let child = ns
			.command("bash")
			.arg("scripts/run-dev.sh")
			.current_dir(root())
			.env("INTERLATTICE_DATA", data)
			// The test suite's `cargo test` built everything and holds the build lock.
			.env("INTERLATTICE_SKIP_BUILD", "1")
			.stdin(Stdio::null())
			.stdout(Stdio::from(file.try_clone().unwrap()))
			.stderr(Stdio::from(file))
			.spawn()
			.unwrap();
		let run = RunDev { child, log };
		wait_for(Duration::from_secs(180), "run-dev.sh to be ready", || {
			run.log().contains("[run] ready at block").then_some(())
		})
		.unwrap_or_else(|e| panic!("{e}\n{}", run.log()));
		run
	}

	fn log(&self) -> String {
		std::fs::read_to_string(&self.log).unwrap_or_default()
	}

	fn ready_block(&self) -> u64 {
		let log = self.log();
		log.split("[run] ready at block ")
			.nth(1)
			.and_then(|s| s.split('.').next())
			.and_then(|n| n.parse().ok())
			.unwrap()
	}

	/// Ctrl-C, as a terminal would send it to the script.
	fn interrupt(&mut self) {
		let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
		let status = wait_for(Duration::from_secs(90), "run-dev.sh to stop", || self.child.try_wait().unwrap());
		status.unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
	}
}

impl Drop for RunDev {
	fn drop(&mut self) {
		if self.child.try_wait().ok().flatten().is_none() {
			let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
			let _ = wait_for(Duration::from_secs(60), "run-dev.sh to stop", || self.child.try_wait().ok().flatten());
			let _ = self.child.kill();
		}
	}
}

#[test]
fn run_dev_serves_the_walkthrough_stops_cleanly_and_resumes() {
	let ns = Netns::new("product");
	let data = tempfile::tempdir().unwrap();
	let mut run = RunDev::start(&ns, data.path(), data.path().join("run-1.log"));
	let banner = run.log();
	for line in ["http://127.0.0.1:9944", "dCDN agent (Dave)", "dVPN agent (Charlie)", "Ctrl-C stops everything"] {
		assert!(banner.contains(line), "{line} missing from:\n{banner}");
	}

	// The README's walkthrough, verbatim.
	let out = ns.command("bash").args(["-euo", "pipefail", "-c", &walkthrough()]).current_dir(root()).output().unwrap();
	let stdout = String::from_utf8_lossy(&out.stdout);
	assert!(
		out.status.success(),
		"the walkthrough failed:\n{stdout}\n{}\n{}",
		String::from_utf8_lossy(&out.stderr),
		run.log()
	);
	assert!(stdout.contains("\"services\":\"cdn\""), "Dave serves the dCDN: {stdout}");
	// Charlie serves both: its dCDN agent registered its endpoint next to the dVPN's.
	let charlie =
		stdout.lines().find(|l| l.contains("127.0.0.1:7310")).unwrap_or_else(|| panic!("no dVPN provider: {stdout}"));
	assert!(charlie.contains("\"services\":\"both\"") && charlie.contains("https://127.0.0.1:7321"), "{charlie}");
	assert!(stdout.contains("https://127.0.0.1:7320"), "{stdout}");
	assert!(stdout.contains("the copy is identical"), "{stdout}");
	assert!(stdout.contains("3 packets transmitted, 3 received"), "pings through the tunnel: {stdout}");
	// The provider settled the VPN session and closed it (finalized: no longer listed).
	let closed = stdout
		.lines()
		.find(|l| l.contains("closed by the provider: paid"))
		.unwrap_or_else(|| panic!("not closed: {stdout}"));
	assert!(!closed.contains("paid 0.000000 LAT"), "the provider was paid: {closed}");
	// The CDN session settled the download (3,000,000 bytes and more: receipts per MiB).
	let session =
		stdout.lines().find(|l| l.contains("\"service\":\"cdn\"")).unwrap_or_else(|| panic!("no session in {stdout}"));
	assert!(!session.contains("\"settled\":\"0\""), "the agent settled the receipts: {session}");

	// Ctrl-C: the agents stop (settling), then the node; the dVPN interface and NAT are gone.
	run.interrupt();
	let log = run.log();
	for line in [
		"vpn-agent stopped",
		"cdn-agent stopped",
		"cdn-agent-charlie stopped",
		"node stopped",
		"run scripts/run-dev.sh again",
	] {
		assert!(log.contains(line), "{line} missing from:\n{log}");
	}
	assert!(!Command::new("ip").args(["-n", &ns.name, "link", "show", "ilvpn0"]).output().unwrap().status.success());
	let tables = ns.command("nft").args(["list", "tables"]).output().unwrap();
	assert!(!String::from_utf8_lossy(&tables.stdout).contains("interlattice"), "the NAT table is removed");
	let first = run.ready_block();

	// A second run resumes the same chain (and finds its providers registered as configured).
	let mut again = RunDev::start(&ns, data.path(), data.path().join("run-2.log"));
	assert!(again.ready_block() > first, "resumed at #{} after #{first}", again.ready_block());
	assert!(again.log().contains("is registered as configured; nothing to do"), "{}", again.log());
	// A port in use is reported, not fought over.
	let clash = ns
		.command("bash")
		.arg("scripts/run-dev.sh")
		.current_dir(root())
		.env("INTERLATTICE_DATA", data.path())
		.env("INTERLATTICE_SKIP_BUILD", "1")
		.output()
		.unwrap();
	assert!(!clash.status.success());
	assert!(String::from_utf8_lossy(&clash.stderr).contains("is in use"), "{}", String::from_utf8_lossy(&clash.stderr));
	again.interrupt();
}
