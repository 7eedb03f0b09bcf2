//! The binaries' command lines (this integration test also makes `cargo test` build both
//! binaries, which the end-to-end tests in `tests/` run).

use std::process::Command;

fn help(binary: &str) -> String {
	let out = Command::new(binary).arg("--help").output().unwrap();
	assert!(out.status.success(), "{binary} --help: {out:?}");
	String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_client_and_agent_offer_their_commands() {
	let client = help(env!("CARGO_BIN_EXE_cdn"));
	for command in ["providers", "get", "publish"] {
		assert!(client.contains(command), "{command} missing from:\n{client}");
	}
	assert!(help(env!("CARGO_BIN_EXE_cdn-agent")).contains("--config"));
}

/// Issue 16 item 3: an agent that would settle less often than a quarter of the chain's
/// settlement window (the sample configuration once suggested 3600 s, the whole window) is
/// refused before it serves anything: receipts could expire unsettled.
#[test]
fn the_agent_refuses_a_settle_interval_longer_than_a_quarter_of_the_window() {
	let dir = tempfile::tempdir().unwrap();
	let shipped = include_str!("../../../configs/cdn-agent.toml");
	assert!(shipped.contains("settle_interval_secs = 10"));
	let config = dir.path().join("agent.toml");
	std::fs::write(&config, shipped.replace("settle_interval_secs = 10", "settle_interval_secs = 3600")).unwrap();
	let out =
		Command::new(env!("CARGO_BIN_EXE_cdn-agent")).args(["--config", config.to_str().unwrap()]).output().unwrap();
	assert!(!out.status.success());
	let stderr = String::from_utf8_lossy(&out.stderr);
	assert!(stderr.contains("settle_interval_secs = 3600") && stderr.contains("900"), "{stderr}");
}
