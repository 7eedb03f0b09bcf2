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
